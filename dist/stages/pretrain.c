#include "pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evaluate.h"
#include "h5util.h"
#include "model_io.h"
#include "optim.h"
#include "params.h"
#include "rng.h"
#include "runtime.h"
#include "task_io.h"
#include "train_step.h"
#include "trainable.h"

static void expected_source(const TdConfig *cfg, char *buf, size_t n)
{
    snprintf(buf, n, "pretrain:%.100s/%.60s:steps=%d:seed=%d", cfg->data.dir, cfg->pretrain.task,
             cfg->pretrain.steps, cfg->run.seed);
}

/* hn = rows of w (C,E) normalised; norms kept for the backward. */
static void normalise_rows(const float *w, int C, int E, float *hn, float *norm)
{
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int k = 0; k < E; k++)
            s += (double)w[(size_t)c * E + k] * w[(size_t)c * E + k];
        norm[c] = (float)sqrt(s) + 1e-12f;
        for (int k = 0; k < E; k++)
            hn[(size_t)c * E + k] = w[(size_t)c * E + k] / norm[c];
    }
}

/* dw = (dhn - hn <hn, dhn>) / |w|, row by row. */
static void normalise_rows_backward(const float *hn, const float *norm, const float *dhn, int C,
                                    int E, float *dw)
{
    for (int c = 0; c < C; c++) {
        const float *h = hn + (size_t)c * E, *d = dhn + (size_t)c * E;
        double dot = 0;
        for (int k = 0; k < E; k++)
            dot += (double)h[k] * d[k];
        for (int k = 0; k < E; k++)
            dw[(size_t)c * E + k] = (d[k] - h[k] * (float)dot) / norm[c];
    }
}

/* Rank 0 looks for model.path; 1 (agreed) when it exists. */
static int model_exists(const TdConfig *cfg)
{
    int have = g_rt.rank == 0 ? access(cfg->model.path, F_OK) == 0 : 0;
    MPI_Bcast(&have, 1, MPI_INT, 0, g_rt.comm);
    return have;
}

static TdStatus log_cached(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    if (g_rt.rank == 0) {
        VitModel m;
        memset(&m, 0, sizeof m);
        s = model_read(cfg->model.path, &m);
        if (s == TD_OK) {
            char want[256];
            expected_source(cfg, want, sizeof want);
            td_log("pretrain: %s exists (source \"%s\"): reused, not retrained (delete it to "
                   "retrain)",
                   cfg->model.path, m.source);
            if (strcmp(m.source, want) != 0)
                td_log("pretrain: WARNING: these settings would have written source \"%s\"",
                       want);
        }
        model_free(&m);
    }
    return runtime_agree(g_rt.comm, s);
}

static TdStatus check_inputs(const TdConfig *cfg, const char *path, int *classes)
{
    if (!cfg->model.arch[0])
        return td_fail(TD_ERR_CONFIG,
                       "pretrain: model.path '%s' is missing and model.arch is empty: set "
                       "model.arch to the architecture to pre-train",
                       cfg->model.path);
    VitArch a;
    TD_TRY(vit_arch_by_name(cfg->model.arch, &a));
    TaskData td;
    TD_TRY(task_read_header(path, &td));
    int64_t n = td.split[TASK_TRAIN].n;
    *classes = td.num_classes;
    task_free(&td);
    if (n < cfg->pretrain.batch)
        return td_fail(TD_ERR_CONFIG,
                       "pretrain task %s: %lld train images, fewer than one batch "
                       "(pretrain.batch = %d)",
                       path, (long long)n, cfg->pretrain.batch);
    return TD_OK;
}

typedef struct {
    VitModel m;
    unsigned char *mask;
    DpTrainer T;
    AdamW o, oh;          /* encoder, head */
    float *w, *hn, *norm, *dw;
    ParamInfo hinfo;
    ParamTable htab;      /* the head as a one-tensor table, for AdamW */
    unsigned char hmask;
} Pretrainer;

static void pt_free(Pretrainer *p)
{
    dp_trainer_free(&p->T);
    adamw_free(&p->o);
    adamw_free(&p->oh);
    model_free(&p->m);
    free(p->mask), free(p->w), free(p->hn), free(p->norm), free(p->dw);
    memset(p, 0, sizeof *p);
}

static TdStatus pt_alloc(Pretrainer *p, const TdConfig *cfg, int C)
{
    VitArch a;
    TD_TRY(vit_arch_by_name(cfg->model.arch, &a));
    TD_TRY(model_alloc(&p->m, &a));
    params_init_random(&a, &p->m.table, p->m.params, (uint64_t)cfg->run.seed);
    int E = a.out_dim;
    size_t nh = (size_t)C * E;
    TD_ALLOC(p->mask, p->m.table.count);
    TD_ALLOC(p->w, nh);
    TD_ALLOC(p->hn, nh);
    TD_ALLOC(p->dw, nh);
    TD_ALLOC(p->norm, C);
    TD_TRY(trainable_mask(&p->m.table, "full", p->mask));
    TdRng r;
    rng_seed(&r, rng_derive((uint64_t)cfg->run.seed, 0x70726574ULL, 1)); /* "pret" */
    for (size_t k = 0; k < nh; k++)
        p->w[k] = (float)rng_normal(&r);
    const TdFinetuneConfig *f = &cfg->finetune;
    AdamWConfig oc = {(float)cfg->pretrain.lr, (float)f->beta1, (float)f->beta2, (float)f->eps,
                      (float)cfg->pretrain.weight_decay};
    TD_TRY(adamw_init(&p->o, &oc, p->m.table.total));
    oc.weight_decay = 0;
    TD_TRY(adamw_init(&p->oh, &oc, nh));
    snprintf(p->hinfo.name, sizeof p->hinfo.name, "class_embeddings");
    p->hinfo.ndim = 2;
    p->hinfo.shape[0] = C;
    p->hinfo.shape[1] = E;
    p->hinfo.numel = nh;
    p->hinfo.block = -1;
    p->htab = (ParamTable){1, &p->hinfo, nh};
    p->hmask = 1;
    return TD_OK;
}

static double head_sumsq(const float *g, size_t n)
{
    double s = 0;
    for (size_t k = 0; k < n; k++)
        s += (double)g[k] * g[k];
    return s;
}

static TdStatus train(const TdConfig *cfg, Pretrainer *p, const char *path, int C, double *secs)
{
    const TdPretrainConfig *pc = &cfg->pretrain;
    int E = p->m.arch.out_dim;
    size_t nh = (size_t)C * E;
    DpSpec spec = {&p->m, p->mask, trainable_count(&p->m.table, p->mask), 0, C, 1, 0.0f};
    LoaderOpts lo = {path,
                     TASK_TRAIN,
                     pc->batch,
                     p->m.arch.image,
                     rng_derive((uint64_t)cfg->run.seed, 0x70726574ULL, 2),
                     1,
                     !cfg->data.augment,
                     {cfg->data.crop_scale[0], cfg->data.crop_scale[1]},
                     0,
                     0};
    TD_TRY(dp_trainer_open(&p->T, g_rt.comm, &lo, &spec));
    td_log("pretrain: %s (%zu parameters) on %s: %d classes, %d steps of batch %d over %d "
           "rank(s), lr %g, scale %g",
           cfg->model.arch, spec.ntrain, path, C, pc->steps, pc->batch, g_rt.size, pc->lr,
           pc->scale);
    double t_start = td_wall(), t_last = t_start, loss = 0, first = NAN;
    long step = 0, step_last = 0;
    int every = cfg->finetune.log_every;
    while (step < pc->steps) {
        normalise_rows(p->w, C, E, p->hn, p->norm);
        TD_TRY(dp_step(&p->T, g_rt.comm, &spec, p->m.params, p->hn, (float)pc->scale,
                       &loss));
        normalise_rows_backward(p->hn, p->norm, p->T.dhead, C, E, p->dw);
        double norm = sqrt(optim_grad_sumsq(&p->m.table, p->mask, p->T.grads) +
                           head_sumsq(p->dw, nh));
        if (!isfinite(loss) || !isfinite(norm))
            return runtime_agree(g_rt.comm,
                                 td_fail(TD_ERR_NUMERIC,
                                         "pretrain: loss became %s at step %ld: stopped (lower "
                                         "pretrain.lr?)",
                                         isnan(loss) || isnan(norm) ? "NaN" : "Inf", step + 1));
        if (step == 0)
            first = loss;
        const float clip = optim_clip_factor(norm, (float)cfg->finetune.grad_clip);
        float lr = dp_schedule_lr("cosine", pc->lr, step, pc->warmup, pc->steps);
        adamw_step(&p->o, &p->m.table, p->mask, p->m.params, p->T.grads, clip, lr);
        adamw_step(&p->oh, &p->htab, &p->hmask, p->w, p->dw, clip, lr);
        step++;
        if (step % every == 0 || step == pc->steps) {
            double now = td_wall(), ips = (double)(step - step_last) * pc->batch / (now - t_last + 1e-9);
            char eta[32];
            dp_fmt_eta((now - t_start) / (double)step * (double)(pc->steps - step), eta,
                       sizeof eta);
            td_log("pretrain step %ld/%d loss %.4f lr %.3g grad %.3g %.1f img/s ETA %s", step,
                   pc->steps, loss, lr, norm, ips, eta);
            t_last = now;
            step_last = step;
        }
    }
    *secs = td_wall() - t_start;
    td_log("pretrain: %ld steps in %.1f s, loss %.4f -> %.4f", step, *secs, first, loss);
    return TD_OK;
}

TdStatus pretrain_stage(const TdConfig *cfg)
{
    if (!cfg->pretrain.enabled) {
        td_log("pretrain: pretrain.enabled = false, skipped (theta0 = %s)", cfg->model.path);
        return TD_OK;
    }
    if (model_exists(cfg))
        return log_cached(cfg);
    char path[600];
    snprintf(path, sizeof path, "%s/%s.h5", cfg->data.dir, cfg->pretrain.task);
    int C = 0;
    TD_TRY(runtime_agree(g_rt.comm, check_inputs(cfg, path, &C)));
    Pretrainer p;
    memset(&p, 0, sizeof p);
    TdStatus s = runtime_agree(g_rt.comm, pt_alloc(&p, cfg, C));
    double secs = 0;
    if (s == TD_OK)
        s = train(cfg, &p, path, C, &secs);
    if (s == TD_OK) {
        normalise_rows(p.w, C, p.m.arch.out_dim, p.hn, p.norm);
        EvalEncoder enc = {&p.m, NULL, NULL, NULL};
        double acc[2] = {0, 0};
        s = eval_accuracy(g_rt.comm, &enc, path, TASK_VAL, cfg->eval.batch, cfg->eval.limit,
                          p.hn, C, &acc[0]);
        if (s == TD_OK)
            s = eval_accuracy(g_rt.comm, &enc, path, TASK_TEST, cfg->eval.batch,
                              cfg->eval.limit, p.hn, C, &acc[1]);
        if (s == TD_OK)
            td_log("pretrain: accuracy on %s with the learned class embeddings: val %.4f test "
                   "%.4f",
                   cfg->pretrain.task, acc[0], acc[1]);
    }
    if (s == TD_OK) {
        TdStatus w = TD_OK;
        if (g_rt.rank == 0) {
            char dir[600];
            snprintf(dir, sizeof dir, "%s", cfg->model.path);
            char *slash = strrchr(dir, '/');
            if (slash && slash != dir) {
                *slash = 0;
                w = fs_mkdir_p(dir);
            }
            expected_source(cfg, p.m.source, sizeof p.m.source);
            if (w == TD_OK)
                w = model_write(cfg->model.path, &p.m);
        }
        s = runtime_agree(g_rt.comm, w);
        if (s == TD_OK)
            td_log("pretrain: wrote %s (checksum %s, %.1f s of training)", cfg->model.path,
                   p.m.checksum, secs);
    }
    pt_free(&p);
    return s;
}
