#include "kernel_diag.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "results.h"
#include "runtime.h"
#include "study.h"
#include "task_io.h"

typedef struct {
    float *feat;
    int32_t *y;
    int64_t n;
} Feats;

static void feats_free(Feats *f)
{
    free(f->feat);
    free(f->y);
    memset(f, 0, sizeof *f);
}

static TdStatus feats_of(const TdConfig *cfg, const EvalEncoder *enc, const char *path, Feats *f)
{
    memset(f, 0, sizeof *f);
    return eval_features(g_rt.comm, enc, path, TASK_TEST, cfg->eval.batch, cfg->eval.limit,
                         &f->feat, &f->y, &f->n);
}

/* Fraction of rows whose argmax under head differs between a and b. */
static double disagreement(const Feats *a, const Feats *b, const float *head, int C, int E)
{
    int64_t d = 0;
    for (int64_t i = 0; i < a->n; i++)
        d += study_argmax(a->feat + i * E, head, C, E) != study_argmax(b->feat + i * E, head, C, E);
    return a->n ? (double)d / (double)a->n : 0.0;
}

/* One mode and task: every rank computes, rank 0 records. */
static TdStatus diag_task(const TdConfig *cfg, const VitModel *m, const HeadSet *h,
                          const char *mode, int t, float *tau, float *theta,
                          unsigned char *mask, const char *run_dir)
{
    const char *task = cfg->data.tasks.item[t];
    TD_TRY(runtime_agree(g_rt.comm, study_tv_read(run_dir, mode, task, m, tau, mask)));
    const ParamTable *tab = &m->table;
    for (size_t k = 0; k < tab->total; k++)
        theta[k] = m->params[k] + tau[k];
    char path[600];
    heads_task_path(cfg, t, path, sizeof path);
    int ntk = strcmp(mode, "ntk") == 0, E = m->arch.out_dim, C = h->classes[t];
    const float *head = h->w[t];
    EvalEncoder lin = {m, NULL, tau, mask}, plain = {m, theta, NULL, NULL};
    Feats fl, fp;
    memset(&fp, 0, sizeof fp);
    TD_TRY(feats_of(cfg, &lin, path, &fl));
    TdStatus s = feats_of(cfg, &plain, path, &fp);
    if (s != TD_OK || fp.n != fl.n) {
        feats_free(&fl);
        feats_free(&fp);
        return s != TD_OK ? s : td_fail(TD_ERR_INTERNAL, "kernel: image counts differ");
    }
    /* the model the mode trained: the linearised one for ntk */
    const Feats *model = ntk ? &fl : &fp;
    double acc_model = eval_head_accuracy(model->feat, model->y, model->n, E, head, C);
    double acc_lin = eval_head_accuracy(fl.feat, fl.y, fl.n, E, head, C);
    double acc_plain = eval_head_accuracy(fp.feat, fp.y, fp.n, E, head, C);
    double dis = disagreement(model, &fl, head, C, E), dis_plain = disagreement(&fp, &fl, head, C, E);
    td_log("kernel %s/%s: accuracy model %.4f, linearised %.4f, disagreement %.4f%s", mode, task,
           acc_model, acc_lin, dis, ntk ? " (ntk: the model is its linearisation)" : "");
    if (g_rt.rank == 0) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddNumberToObject(o, "acc_nonlinear", acc_model);
            cJSON_AddNumberToObject(o, "acc_linearised", acc_lin);
            cJSON_AddNumberToObject(o, "disagreement", dis);
            cJSON_AddNumberToObject(o, "images", (double)fl.n);
            if (ntk) {
                cJSON_AddNumberToObject(o, "acc_plain", acc_plain);
                cJSON_AddNumberToObject(o, "disagreement_plain", dis_plain);
            }
        }
        char key[300];
        snprintf(key, sizeof key, "modes.%s.kernel.%s", mode, task);
        s = o ? results_set(run_dir, key, o) : td_fail(TD_ERR_NOMEM, "kernel: out of memory");
    }
    feats_free(&fl);
    feats_free(&fp);
    return runtime_agree(g_rt.comm, s);
}

TdStatus kernel_stage(const TdConfig *cfg)
{
    VitModel m;
    HeadSet h;
    TD_TRY(study_open(cfg, &m, &h));
    char run_dir[600];
    study_run_dir(cfg, run_dir, sizeof run_dir);
    size_t bytes = m.table.total * sizeof(float);
    float *tau = td_aligned_calloc(bytes), *theta = td_aligned_calloc(bytes);
    unsigned char *mask = calloc((size_t)m.table.count, 1);
    TdStatus s = runtime_agree(g_rt.comm, tau && theta && mask
                                                   ? TD_OK : td_fail(TD_ERR_NOMEM, "kernel: out of memory"));
    for (int i = 0; i < cfg->finetune.modes.count && s == TD_OK; i++)
        for (int t = 0; t < cfg->data.tasks.count && s == TD_OK; t++)
            s = diag_task(cfg, &m, &h, cfg->finetune.modes.item[i], t, tau, theta, mask, run_dir);
    td_free(tau);
    td_free(theta);
    free(mask);
    heads_free(&h);
    model_free(&m);
    return s;
}
