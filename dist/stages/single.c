/* single: the single stage - single-task accuracy of each fine-tuned encoder
 * with every head set in use, the normalisers of the addition stage (search.h). */
#include "search_mode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "results.h"
#include "runtime.h"

/* ---- single-task accuracies (the single stage; the addition stage's normalisers) ---- */

/* The items of the single-task pool: one row per (task, head set in use),
 * task-major, and item = row * 2 + (0 val, 1 test). Rows, not a fixed
 * task x set layout, so that a head set not in use or a task without a
 * fine-tuned head has no item (a journal keeps only measured values). */
typedef struct {
    ModeRun *r;
    int nrows;
    int task[TV_MAX_TASKS * HS_N], set[TV_MAX_TASKS * HS_N];
    int refit_task; /* task whose refit head refit_w holds on this rank (-1: none) */
    float *refit_w;
} SingleCtx;

/* The merge that is tau_t alone (coefficient 1, no trim, no drop). */
static void own_spec(const ModeRun *r, int t, MergeSpec *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->ntasks = 1;
    sp->task[0] = tv_task_index(&r->tv, r->cfg->data.tasks.item[t]);
    sp->coef[0] = 1.0;
}

/* Item: the accuracy of theta0 + tau_t with one head set on one split, on
 * this rank alone - the same evaluation as a merged encoder's val items
 * (sur_alpha_grid's pool items), so that numerator and denominator are measured alike. Refit:
 * the prototypes of theta_t's own train features, as mode_score_heads refits on
 * the merged encoder's. */
static TdStatus item_single(void *ctx, int item, double *acc)
{
    SingleCtx *c = ctx;
    ModeRun *r = c->r;
    int row = item / 2, split = item % 2 ? TASK_TEST : TASK_VAL;
    int t = c->task[row], k = c->set[row], E = r->m.arch.out_dim;
    if (r->tau_task != t) {
        MergeSpec sp;
        own_spec(r, t, &sp);
        r->tau_task = -1;
        r->cur = NAN;
        TD_TRY(merge_collective(MPI_COMM_SELF, &r->tv, &r->m, &sp, r->tau));
        r->tau_task = t;
    }
    EvalEncoder enc = mode_encoder(r, 1.0);
    const float *head = k == HS_FINETUNED ? r->ft[t] : r->head[t];
    if (k == HS_REFIT) {
        if (c->refit_task != t) {
            float *f = NULL;
            int32_t *y = NULL;
            int64_t n = 0;
            c->refit_task = -1;
            TD_TRY(eval_features(MPI_COMM_SELF, &enc, r->paths[t], TASK_TRAIN, r->item_batch,
                                 r->cfg->eval.limit, &f, &y, &n));
            float *w = realloc(c->refit_w, (size_t)r->classes[t] * E * sizeof *w);
            if (w) {
                c->refit_w = w;
                mode_protos(f, y, n, E, r->classes[t], w);
                c->refit_task = t;
            }
            free(f);
            free(y);
            if (!w)
                return td_fail(TD_ERR_NOMEM, "single: out of memory");
        }
        head = c->refit_w;
    }
    return eval_accuracy(MPI_COMM_SELF, &enc, r->paths[t], split, r->item_batch,
                         r->cfg->eval.limit, head, r->classes[t], acc);
}

/* Hex key of the single-task pool: everything its values depend on - theta0,
 * task files, eval.limit, the rows, the heads, and the task vectors (through
 * one collective merge with coefficients 1, 2, ..., T, so that exchanging two
 * tasks' vectors changes it too). Leaves that merge in r->tau. */
static TdStatus single_key(ModeRun *r, const SingleCtx *c, char out[40])
{
    MergeSpec sp;
    memset(&sp, 0, sizeof sp);
    sp.ntasks = r->ntasks;
    for (int t = 0; t < r->ntasks; t++) {
        sp.task[t] = tv_task_index(&r->tv, r->cfg->data.tasks.item[t]);
        sp.coef[t] = t + 1;
    }
    r->cur = NAN;
    r->tau_task = -1;
    TD_TRY(merge_collective(g_rt.comm, &r->tv, &r->m, &sp, r->tau));
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "single|%s|%s|%d", r->mode, r->m.checksum,
                     r->cfg->eval.limit);
    for (int t = 0; t < r->ntasks && n > 0 && (size_t)n < sizeof buf; t++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|%s", r->paths[t]);
    for (int i = 0; i < c->nrows && n > 0 && (size_t)n < sizeof buf; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|%d:%d", c->task[i], c->set[i]);
    if (*eval_precision_tag() && n > 0 && (size_t)n < sizeof buf) /* fp32 keys as before */
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|%s", eval_precision_tag());
    uint64_t h = XXH64(buf, strlen(buf), 0);
    h ^= XXH64(r->tau, r->m.table.total * sizeof(float), 1);
    int E = r->m.arch.out_dim;
    for (int t = 0; t < r->ntasks; t++) {
        size_t bytes = (size_t)r->classes[t] * E * sizeof(float);
        h ^= XXH64(r->head[t], bytes, 2 + (uint64_t)t);
        if (r->ft[t])
            h ^= XXH64(r->ft[t], bytes, 1000 + (uint64_t)t);
    }
    snprintf(out, 40, "%016llx", (unsigned long long)h);
    return TD_OK;
}

/* Rank 0: modes.<mode>.single in results.json - per task the finetune
 * stage's own figures (val, test: theta_t with the head it was trained with;
 * theta0_val, theta0_test: theta0 with the frozen head) and, under "heads",
 * the single-task accuracy of every head set in use. */
static TdStatus single_record(const ModeRun *r, const SingleAcc *sa)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return td_fail(TD_ERR_NOMEM, "single: out of memory");
    for (int j = 0; j < r->ntasks; j++) {
        int t = tv_task_index(&r->tv, r->cfg->data.tasks.item[j]);
        cJSON *q = cJSON_AddObjectToObject(o, r->tv.task[t]);
        cJSON_AddNumberToObject(q, "val", r->tv.acc_val[t]);
        cJSON_AddNumberToObject(q, "test", r->tv.acc_test[t]);
        cJSON_AddNumberToObject(q, "theta0_val", r->tv.t0_val[t]);
        cJSON_AddNumberToObject(q, "theta0_test", r->tv.t0_test[t]);
        cJSON_AddStringToObject(q, "status", r->tv.status[t]);
        cJSON *h = cJSON_AddObjectToObject(q, "heads");
        for (int k = 0; k < HS_N; k++) {
            if (!sa->use[k] || isnan(sa->acc[k][1][j]))
                continue;
            cJSON *hk = cJSON_AddObjectToObject(h, k_head_set[k]);
            cJSON_AddNumberToObject(hk, "val", sa->acc[k][0][j]);
            cJSON_AddNumberToObject(hk, "test", sa->acc[k][1][j]);
        }
    }
    char key[128];
    snprintf(key, sizeof key, "modes.%s.single", r->mode);
    return results_set(r->run_dir, key, o);
}

/* The single-task accuracies of mode r with every head set in use - theta0
 * (always: the alpha search scores with it), refit (eval.heads), finetuned
 * (wherever heads_<mode>.h5 has the task) - through the pool, journal
 * search/single_<mode>.jsonl: the single stage measures them, and the
 * addition stage, run after it, finds them all in the journal (or measures
 * what is missing when run alone). Records modes.<mode>.single. After
 * mode_tasks and mode_ft_heads_load; collective, agreed. */
TdStatus single_measure(ModeRun *r, SingleAcc *sa)
{
    const TdConfig *cfg = r->cfg;
    memset(sa, 0, sizeof *sa);
    for (int k = 0; k < HS_N; k++)
        for (int i = 0; i < 2; i++)
            for (int t = 0; t < TV_MAX_TASKS; t++)
                sa->acc[k][i][t] = NAN;
    sa->use[HS_THETA0] = 1;
    sa->use[HS_REFIT] = config_names_contains(&cfg->eval.heads, "refit");
    sa->use[HS_FINETUNED] = r->ft_found;
    SingleCtx c;
    memset(&c, 0, sizeof c);
    c.r = r;
    c.refit_task = -1;
    for (int t = 0; t < r->ntasks; t++)
        for (int k = 0; k < HS_N; k++)
            if (sa->use[k] && (k != HS_FINETUNED || r->ft[t])) {
                c.task[c.nrows] = t;
                c.set[c.nrows++] = k;
            }
    char journal[800], key[40];
    snprintf(journal, sizeof journal, "%s/search/single_%s.jsonl", r->run_dir, r->mode);
    TdStatus s = single_key(r, &c, key);
    double *v = calloc((size_t)c.nrows * 2 + 1, sizeof *v);
    s = runtime_agree(g_rt.comm, s == TD_OK && !v ? td_fail(TD_ERR_NOMEM, "out of memory") : s);
    PoolSpec ps = {.journal = journal, .key = key, .nitems = c.nrows * 2, .stop_after = cfg->merge.stop_after};
    double t0 = td_wall();
    if (s == TD_OK)
        s = search_pool(g_rt.comm, &ps, item_single, &c, v);
    r->cur = NAN;
    r->tau_task = -1;
    free(c.refit_w);
    for (int i = 0; s == TD_OK && i < c.nrows; i++) {
        sa->acc[c.set[i]][0][c.task[i]] = v[2 * i];
        sa->acc[c.set[i]][1][c.task[i]] = v[2 * i + 1];
    }
    free(v);
    if (s != TD_OK)
        return s;
    td_log("single %s: %d task x head-set pair(s), val and test, in %.2fs", r->mode, c.nrows,
           td_wall() - t0);
    for (int k = 0; k < HS_N; k++) {
        if (!sa->use[k])
            continue;
        double mv = 0, mt = 0;
        int n = 0;
        for (int t = 0; t < r->ntasks; t++)
            if (!isnan(sa->acc[k][1][t])) {
                mv += sa->acc[k][0][t];
                mt += sa->acc[k][1][t];
                n++;
            }
        td_log("single %s: %s heads, mean val %.4f test %.4f over %d task(s)", r->mode,
               k_head_set[k], n ? mv / n : NAN, n ? mt / n : NAN, n);
    }
    return runtime_agree(g_rt.comm, g_rt.rank == 0 ? single_record(r, sa) : TD_OK);
}

TdStatus single_open(ModeRun *r, const TdConfig *cfg, const char *mode, SingleAcc *sa)
{
    TdStatus s = mode_open(r, cfg, mode);
    if (s == TD_OK)
        s = runtime_agree(g_rt.comm, mode_tasks(r));
    if (s == TD_OK)
        s = mode_ft_heads_load(r);
    if (s == TD_OK)
        s = single_measure(r, sa);
    return s;
}

TdStatus single_stage(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    for (int k = 0; k < cfg->finetune.modes.count && s == TD_OK; k++) {
        ModeRun r;
        SingleAcc sa;
        s = single_open(&r, cfg, cfg->finetune.modes.item[k], &sa);
        mode_free(&r);
    }
    return s;
}
