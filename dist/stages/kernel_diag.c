#include "kernel_diag.h"

#include <math.h>
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

/* Mean over rows of the Euclidean distance between a's and b's features. */
static double mean_dist(const Feats *a, const Feats *b, int E)
{
    double sum = 0;
    for (int64_t i = 0; i < a->n; i++) {
        double s2 = 0;
        for (int k = 0; k < E; k++) {
            double d = (double)a->feat[i * E + k] - b->feat[i * E + k];
            s2 += d * d;
        }
        sum += sqrt(s2);
    }
    return a->n ? sum / (double)a->n : 0.0;
}

/* One mode and task: every rank computes, rank 0 records. f0 holds theta0's
 * features of the task (computed here when empty, then kept for the other
 * modes). */
static TdStatus diag_task(const TdConfig *cfg, const VitModel *m, const HeadSet *h,
                          const char *mode, int t, float *tau, float *theta,
                          unsigned char *mask, const char *run_dir, Feats *f0)
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
    /* The same tau through both models, whichever the mode trained: ntk's
     * task vectors were trained through f0 + J tau, the others through
     * f(theta0 + tau); either way the question is how far apart the two are. */
    EvalEncoder lin = {m, NULL, tau, mask}, plain = {m, theta, NULL, NULL};
    EvalEncoder base = {m, NULL, NULL, NULL};
    Feats fl, fp;
    memset(&fp, 0, sizeof fp);
    if (!f0->feat)
        TD_TRY(feats_of(cfg, &base, path, f0));
    TD_TRY(feats_of(cfg, &lin, path, &fl));
    TdStatus s = feats_of(cfg, &plain, path, &fp);
    if (s != TD_OK || fp.n != fl.n || f0->n != fl.n) {
        feats_free(&fl);
        feats_free(&fp);
        return s != TD_OK ? s : td_fail(TD_ERR_INTERNAL, "kernel: image counts differ");
    }
    double acc_nl = eval_head_accuracy(fp.feat, fp.y, fp.n, E, head, C);
    double acc_lin = eval_head_accuracy(fl.feat, fl.y, fl.n, E, head, C);
    double dis = disagreement(&fp, &fl, head, C, E);
    double gap = mean_dist(&fp, &fl, E), shift = mean_dist(&fl, f0, E);
    td_log("kernel %s/%s: accuracy f(theta0 + tau) %.4f, f0 + J tau %.4f, disagreement %.4f; "
           "feature gap %.4g, shift %.4g (%s trained)",
           mode, task, acc_nl, acc_lin, dis, gap, shift, ntk ? "linearised" : "non-linear");
    if (g_rt.rank == 0) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddNumberToObject(o, "acc_nonlinear", acc_nl);
            cJSON_AddNumberToObject(o, "acc_linearised", acc_lin);
            cJSON_AddNumberToObject(o, "disagreement", dis);
            cJSON_AddNumberToObject(o, "feature_gap", gap);
            cJSON_AddNumberToObject(o, "feature_shift", shift);
            cJSON_AddStringToObject(o, "trained", ntk ? "linearised" : "non-linear");
            cJSON_AddNumberToObject(o, "images", (double)fl.n);
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
    int T = cfg->data.tasks.count;
    Feats *f0 = calloc((size_t)T + 1, sizeof *f0); /* theta0's, per task, shared by the modes */
    TdStatus s = tau && theta && mask && f0 ? TD_OK
                                            : td_fail(TD_ERR_NOMEM, "kernel: out of memory");
    s = runtime_agree(g_rt.comm, s);
    for (int i = 0; i < cfg->finetune.modes.count && s == TD_OK; i++)
        for (int t = 0; t < T && s == TD_OK; t++)
            s = diag_task(cfg, &m, &h, cfg->finetune.modes.item[i], t, tau, theta, mask, run_dir,
                          &f0[t]);
    for (int t = 0; f0 && t < T; t++)
        feats_free(&f0[t]);
    free(f0);
    td_free(tau);
    td_free(theta);
    free(mask);
    heads_free(&h);
    model_free(&m);
    return s;
}
