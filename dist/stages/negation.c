/* negation: the negation stage - theta0 - alpha tau_t, keeping a control task
 * above a share of theta0's accuracy (search.h). */
#include "search_mode.h"
#include "sur_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "results.h"
#include "runtime.h"

/* ---- negation ---- */

/* The control task: data.tasks member (its frozen head), else a task file
 * (negation.control as a path, or <data.dir>/<control>.h5) whose head is a
 * zero-shot head when heads.source = zeroshot (ImageNet's role in the paper),
 * else the prototypes of theta0's train features. */
static TdStatus control_setup(ModeRun *r, float **own_head)
{
    const TdConfig *cfg = r->cfg;
    const char *c = cfg->negation.control;
    int C = r->ntasks;
    *own_head = NULL;
    if (!c[0])
        return td_fail(TD_ERR_CONFIG, "negation stage: set negation.control (a task whose "
                                      "accuracy must be kept)");
    for (int k = 0; k < cfg->negation.targets.count; k++)
        if (!config_names_contains(&cfg->data.tasks, cfg->negation.targets.item[k]))
            return td_fail(TD_ERR_CONFIG, "negation.targets: '%s' is not in data.tasks",
                           cfg->negation.targets.item[k]);
    for (int j = 0; j < cfg->data.tasks.count; j++)
        if (strcmp(cfg->data.tasks.item[j], c) == 0) {
            memcpy(r->paths[C], r->paths[j], sizeof r->paths[C]);
            r->head[C] = r->head[j];
            r->classes[C] = r->classes[j];
            return TD_OK;
        }
    size_t l = strlen(c);
    if (strchr(c, '/') || (l > 3 && strcmp(c + l - 3, ".h5") == 0))
        snprintf(r->paths[C], sizeof r->paths[C], "%s", c);
    else
        snprintf(r->paths[C], sizeof r->paths[C], "%s/%s.h5", cfg->data.dir, c);
    if (access(r->paths[C], R_OK) != 0)
        return td_fail(TD_ERR_CONFIG,
                       "negation.control '%s' is neither a task of data.tasks nor a readable task "
                       "file (%s)",
                       c, r->paths[C]);
    TaskData td;
    TD_TRY(task_read_header(r->paths[C], &td));
    r->classes[C] = td.num_classes;
    task_free(&td);
    return TD_OK;
}

static TdStatus control_head(ModeRun *r, float **own)
{
    int C = r->ntasks, E = r->m.arch.out_dim;
    if (r->head[C])
        return TD_OK;
    *own = calloc((size_t)r->classes[C] * E, sizeof **own);
    int built = 0;
    TdStatus s = *own ? TD_OK : td_fail(TD_ERR_NOMEM, "negation: out of memory");
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK)
        s = heads_build_text(r->cfg, r->paths[C], r->cfg->negation.control, r->classes[C], E,
                             *own, &built);
    if (s != TD_OK || built) {
        r->head[C] = *own;
        return s;
    }
    EvalEncoder enc = {&r->m, NULL, NULL, NULL};
    float *f = NULL;
    int32_t *y = NULL;
    int64_t n = 0;
    s = eval_features(g_rt.comm, &enc, r->paths[C], TASK_TRAIN, r->cfg->eval.batch,
                      r->cfg->eval.limit, &f, &y, &n);
    if (s == TD_OK)
        mode_protos(f, y, n, E, r->classes[C], *own);
    free(f);
    free(y);
    r->head[C] = *own;
    return runtime_agree(g_rt.comm, s);
}

static TdStatus world_acc(ModeRun *r, double c, int which, int split, double *acc)
{
    EvalEncoder enc = mode_encoder(r, c);
    return eval_accuracy(g_rt.comm, &enc, r->paths[which], split, r->cfg->eval.batch,
                         r->cfg->eval.limit, r->head[which], r->classes[which], acc);
}

static TdStatus negate_one(ModeRun *r, int j, double c0_val, double c0_test)
{
    const TdConfig *cfg = r->cfg;
    int A = search_alpha_count(cfg), C = r->ntasks;
    const char *task = cfg->data.tasks.item[j];
    MergeSpec spec;
    memset(&spec, 0, sizeof spec);
    spec.ntasks = 1;
    spec.task[0] = tv_task_index(&r->tv, task);
    spec.coef[0] = 1.0;
    TD_TRY(merge_collective(g_rt.comm, &r->tv, &r->m, &spec, r->tau));
    r->cur = NAN;
    char journal[800], key[40], what[200];
    snprintf(journal, sizeof journal, "%s/search/negation_%s_%s.jsonl", r->run_dir, r->mode, task);
    snprintf(what, sizeof what, "negation|%s|%s", task, r->paths[C]);
    mode_search_key(r, what, key);
    double *val = calloc((size_t)A * 2, sizeof *val);
    TdStatus s = runtime_agree(g_rt.comm, val ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory"));
    PoolSpec ps = {.journal = journal, .key = key, .nitems = A * 2, .stop_after = cfg->merge.stop_after};
    int which[2] = {j, C}; /* item = alpha index * 2 + (0 target, 1 control) */
    char stag[300];
    snprintf(stag, sizeof stag, "negation_%s_%s_val", r->mode, task);
    if (s == TD_OK)
        s = sur_alpha_grid(r, which, 2, &ps, stag, val);
    if (s != TD_OK) {
        free(val);
        return s;
    }
    /* lowest target val accuracy with control kept; the smallest alpha on ties */
    double floor_acc = cfg->negation.threshold * c0_val;
    int best = -1;
    for (int a = 0; a < A; a++)
        if (val[2 * a + 1] >= floor_acc && (best < 0 || val[2 * a] < val[2 * best]))
            best = a;
    double alpha = best >= 0 ? search_alpha(cfg, best) : 0.0;
    if (best < 0)
        td_log("negation %s/%s: no alpha keeps the control accuracy: alpha 0", r->mode, task);
    double tt = 0, ct = 0;
    s = world_acc(r, alpha, j, TASK_TEST, &tt);
    if (s == TD_OK)
        s = world_acc(r, alpha, C, TASK_TEST, &ct);
    int ti = spec.task[0];
    if (s == TD_OK && g_rt.rank == 0) {
        char gp[300], kp[300], ap[300];
        snprintf(gp, sizeof gp, "/%s/negation/%s/val_acc", r->mode, task);
        snprintf(ap, sizeof ap, "/%s/negation/%s/alpha", r->mode, task);
        size_t dims[2] = {(size_t)A, 2};
        s = results_grid_write(r->run_dir, gp, val, 2, dims, "alpha,target|control");
        double *al = calloc((size_t)A, sizeof *al); /* the grid's axis beside it */
        for (int a = 0; al && a < A; a++)
            al[a] = search_alpha(cfg, a);
        if (s == TD_OK)
            s = al ? results_grid_write(r->run_dir, ap, al, 1, dims, "alpha")
                   : td_fail(TD_ERR_NOMEM, "negation: out of memory");
        free(al);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "alpha", alpha);
        cJSON_AddNumberToObject(o, "alpha_index", best); /* -1: none kept the control */
        cJSON_AddNumberToObject(o, "target_test", tt);
        cJSON_AddNumberToObject(o, "control_test", ct);
        cJSON_AddNumberToObject(o, "theta0_target_test", r->tv.t0_test[ti]);
        cJSON_AddNumberToObject(o, "theta0_control_test", c0_test);
        cJSON_AddNumberToObject(o, "target_val", best >= 0 ? val[2 * best] : r->tv.t0_val[ti]);
        cJSON_AddNumberToObject(o, "control_val", best >= 0 ? val[2 * best + 1] : c0_val);
        cJSON_AddNumberToObject(o, "theta0_control_val", c0_val);
        cJSON_AddStringToObject(o, "control", cfg->negation.control);
        cJSON_AddNumberToObject(o, "threshold", cfg->negation.threshold);
        cJSON_AddStringToObject(o, "grid", gp);
        snprintf(kp, sizeof kp, "modes.%s.negation.%s", r->mode, task);
        if (s == TD_OK)
            s = results_set(r->run_dir, kp, o);
        else
            cJSON_Delete(o);
        td_log("negation %s/%s: alpha %.4g, target test %.4f (theta0 %.4f), control %s test %.4f "
               "(theta0 %.4f)",
               r->mode, task, alpha, tt, r->tv.t0_test[ti], cfg->negation.control, ct, c0_test);
    }
    free(val);
    return runtime_agree(g_rt.comm, s);
}

TdStatus negation_stage(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    for (int k = 0; k < cfg->finetune.modes.count && s == TD_OK; k++) {
        ModeRun r;
        float *own = NULL;
        s = mode_open(&r, cfg, cfg->finetune.modes.item[k]);
        if (s == TD_OK)
            s = runtime_agree(g_rt.comm, mode_tasks(&r));
        if (s == TD_OK)
            s = runtime_agree(g_rt.comm, control_setup(&r, &own));
        if (s == TD_OK)
            s = control_head(&r, &own);
        double c0v = 0, c0t = 0;
        r.sign = -1;
        memset(r.tau, 0, s == TD_OK ? r.m.table.total * sizeof(float) : 0);
        r.cur = NAN;
        if (s == TD_OK)
            s = world_acc(&r, 0.0, r.ntasks, TASK_VAL, &c0v);
        if (s == TD_OK)
            s = world_acc(&r, 0.0, r.ntasks, TASK_TEST, &c0t);
        for (int j = 0; j < cfg->data.tasks.count && s == TD_OK; j++) {
            const char *task = cfg->data.tasks.item[j];
            if (cfg->negation.targets.count && !config_names_contains(&cfg->negation.targets, task))
                continue;
            if (strcmp(task, cfg->negation.control) == 0)
                continue;
            s = negate_one(&r, j, c0v, c0t);
        }
        free(own);
        mode_free(&r);
    }
    return s;
}
