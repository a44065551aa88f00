#include "pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "clip_tokenizer.h"
#include "evaluate.h"
#include "h5util.h"
#include "model_io.h"
#include "ops.h"
#include "optim.h"
#include "params.h"
#include "rng.h"
#include "runtime.h"
#include "task_io.h"
#include "task_merge.h"
#include "train_ckpt.h"
#include "text_io.h"
#include "train_step.h"
#include "trainable.h"

static void expected_source(const TdConfig *cfg, char *buf, size_t n)
{
    snprintf(buf, n, "pretrain:%.100s/%.60s:steps=%d:seed=%d%s%.40s", cfg->data.dir,
             cfg->pretrain.task, cfg->pretrain.steps, cfg->run.seed,
             cfg->pretrain.text_arch[0] ? ":text=" : "", cfg->pretrain.text_arch);
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

/* The head's class rows hn (C,E) come from its learned parameters w:
 *  - class embeddings (pretrain.text_arch = ""): w (C,E), hn = normalise(w);
 *  - captions (CLIP-style): w = the text projection P (D,E), hn = normalise(Z P)
 *    with Z (C,D) the text tower's ln_final output for each class name (a
 *    caption), computed once: the trunk stays at its random initialisation. */
typedef struct {
    VitModel m;
    unsigned char *mask;
    DpTrainer T;
    AdamW o, oh;          /* encoder, head */
    float *w, *hn, *norm, *dw;
    int C;                /* classes (captions) */
    int D;                /* captions: the text tower's width; 0: class embeddings */
    float *Z, *ec, *dec;  /* captions: (C,D) features, (C,E) embeddings and their gradient */
    TextModel text;       /* captions: the tower written into the model file */
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
    if (p->text.params)
        text_model_free(&p->text);
    free(p->mask), free(p->w), free(p->hn), free(p->norm), free(p->dw);
    free(p->Z), free(p->ec), free(p->dec);
    memset(p, 0, sizeof *p);
}

static void head_forward(Pretrainer *p, int C, int E)
{
    if (p->D) {
        op_matmul_fwd(p->ec, p->Z, p->w, C, p->D, E);
        normalise_rows(p->ec, C, E, p->hn, p->norm);
    } else {
        normalise_rows(p->w, C, E, p->hn, p->norm);
    }
}

/* dw = dL/dw from dhn = dL/dhn (C,E): the class embeddings' gradient. */
static void head_backward(Pretrainer *p, const float *dhn, int C, int E)
{
    normalise_rows_backward(p->hn, p->norm, dhn, C, E, p->dw);
}

/* DpSpec.head_map of the caption head: a micro-batch's dL/dhn (C,E) to dL/dP
 * (D,E), through the rows' normalisation and Z P. */
static void caption_head_map(void *ctx, const float *dhn, float *dP)
{
    Pretrainer *p = ctx;
    const int C = p->C, E = p->m.arch.out_dim;
    normalise_rows_backward(p->hn, p->norm, dhn, C, E, p->dec);
    memset(dP, 0, (size_t)p->D * E * sizeof *dP);
    op_matmul_bwd(NULL, dP, p->dec, p->Z, p->w, C, p->D, E);
}

/* Rank 0: Z (C,D) = the random-init tower's ln_final output for each class name
 * of the task at path (tokenised with heads.vocab / heads.merges). */
static TdStatus caption_features(const TdConfig *cfg, const char *path, const TextModel *tm,
                                 const ClipTokenizer *tok, int C, float *Z)
{
    const int T = tm->arch.ctx, D = tm->arch.width, NB = 256;
    TaskData td;
    TD_TRY(task_read_header(path, &td));
    TextWork w;
    memset(&w, 0, sizeof w);
    int *ids = malloc((size_t)NB * T * sizeof *ids);
    float *emb = malloc((size_t)NB * tm->arch.out_dim * sizeof *emb);
    TdStatus s = ids && emb ? text_work_alloc(&w, &tm->arch, &tm->table, NB)
                            : td_fail(TD_ERR_NOMEM, "pretrain: out of memory for captions");
    int longest = 0;
    for (int c0 = 0; s == TD_OK && c0 < C; c0 += NB) {
        int nb = C - c0 < NB ? C - c0 : NB;
        for (int b = 0; s == TD_OK && b < nb; b++) {
            int *full = NULL, n = 0;
            s = clip_tokenize(tok, td.classes[c0 + b], &full, &n);
            free(full);
            if (s == TD_OK && n > T)
                s = td_fail(TD_ERR_CONFIG, "%s: class %d's caption '%s' is %d tokens, more than "
                                           "the text tower's context %d",
                            path, c0 + b, td.classes[c0 + b], n, T);
            longest = n > longest ? n : longest;
            if (s == TD_OK)
                s = clip_tokenize_ctx(tok, td.classes[c0 + b], T, ids + (size_t)b * T);
        }
        if (s == TD_OK)
            s = text_forward(tm->params, &w, ids, nb, T, emb);
        if (s == TD_OK)
            memcpy(Z + (size_t)c0 * D, w.pooled, (size_t)nb * D * sizeof *Z);
    }
    if (s == TD_OK)
        td_log("pretrain: %d captions of %s embedded by the text tower (%d tokens at most, "
               "e.g. '%s')",
               C, path, longest, td.classes[0]);
    text_work_free(&w);
    free(ids);
    free(emb);
    task_free(&td);
    return s;
}

/* The caption head: the text tower (random init of run.seed), its ln_final
 * features of every class name on every rank, and P = its text projection. */
static TdStatus caption_head_alloc(const TdConfig *cfg, const char *path, Pretrainer *p, int C,
                                   int E)
{
    ClipTokenizer tok;
    memset(&tok, 0, sizeof tok);
    int ids[2] = {0, 0};
    TdStatus s = TD_OK;
    if (!cfg->heads.vocab[0] || !cfg->heads.merges[0])
        s = td_fail(TD_ERR_CONFIG, "pretrain.text_arch = \"%s\" needs heads.vocab and "
                                   "heads.merges (the tokenizer of the captions)",
                    cfg->pretrain.text_arch);
    if (s == TD_OK && g_rt.rank == 0)
        s = clip_tokenizer_load(&tok, cfg->heads.vocab, cfg->heads.merges);
    if (s == TD_OK && g_rt.rank == 0) {
        ids[0] = tok.max_id + 1;
        ids[1] = tok.end_id;
    }
    TD_TRY(runtime_agree(g_rt.comm, s));
    MPI_Bcast(ids, 2, MPI_INT, 0, g_rt.comm);
    TextArch a;
    s = text_arch_by_name(cfg->pretrain.text_arch, ids[0], ids[1], E, &a);
    if (s == TD_OK)
        s = text_model_alloc(&p->text, &a);
    if (s == TD_OK) {
        text_params_init_random(&a, &p->text.table, p->text.params,
                                rng_derive((uint64_t)cfg->run.seed, 0x74657874ULL, 1));
        p->D = a.width;
        p->Z = malloc((size_t)C * a.width * sizeof *p->Z);
        p->ec = malloc((size_t)C * E * sizeof *p->ec);
        p->dec = malloc((size_t)C * E * sizeof *p->dec);
        if (!p->Z || !p->ec || !p->dec)
            s = td_fail(TD_ERR_NOMEM, "pretrain: out of memory for %d captions", C);
    }
    if (s == TD_OK && g_rt.rank == 0)
        s = caption_features(cfg, path, &p->text, &tok, C, p->Z);
    if (g_rt.rank == 0 && tok.vocab.keys)
        clip_tokenizer_free(&tok);
    TD_TRY(runtime_agree(g_rt.comm, s));
    MPI_Bcast(p->Z, (int)((size_t)C * p->D), MPI_FLOAT, 0, g_rt.comm);
    return TD_OK;
}

static TdStatus pt_alloc(Pretrainer *p, const TdConfig *cfg, const char *path, int C)
{
    VitArch a;
    TD_TRY(vit_arch_by_name(cfg->model.arch, &a));
    TD_TRY(model_alloc(&p->m, &a));
    params_init_random(&a, &p->m.table, p->m.params, (uint64_t)cfg->run.seed);
    int E = a.out_dim;
    p->C = C;
    if (cfg->pretrain.text_arch[0])
        TD_TRY(caption_head_alloc(cfg, path, p, C, E));
    size_t nh = (size_t)(p->D ? p->D : C) * E;
    TD_ALLOC(p->mask, p->m.table.count);
    TD_ALLOC(p->w, nh);
    TD_ALLOC(p->hn, (size_t)C * E);
    TD_ALLOC(p->dw, nh);
    TD_ALLOC(p->norm, C);
    TD_TRY(trainable_mask(&p->m.table, "full", p->mask));
    if (p->D) {
        memcpy(p->w, params_at_c(&p->text.table, p->text.params, text_proj(&p->text.arch)),
               nh * sizeof *p->w);
    } else {
        TdRng r;
        rng_seed(&r, rng_derive((uint64_t)cfg->run.seed, 0x70726574ULL, 1)); /* "pret" */
        for (size_t k = 0; k < nh; k++)
            p->w[k] = (float)rng_normal(&r);
    }
    const TdFinetuneConfig *f = &cfg->finetune;
    AdamWConfig oc = {(float)cfg->pretrain.lr, (float)f->beta1, (float)f->beta2, (float)f->eps,
                      (float)cfg->pretrain.weight_decay};
    TD_TRY(adamw_init(&p->o, &oc, p->m.table.total));
    oc.weight_decay = 0;
    TD_TRY(adamw_init(&p->oh, &oc, nh));
    snprintf(p->hinfo.name, sizeof p->hinfo.name, p->D ? "text_projection" : "class_embeddings");
    p->hinfo.ndim = 2;
    p->hinfo.shape[0] = p->D ? p->D : C;
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

/* ---- checkpoints (train_ckpt.h: written collectively by every rank) ---- */

static void pt_ckpt_path(const TdConfig *cfg, char *buf, size_t n)
{
    char dir[700];
    merge_run_dir(cfg, dir, sizeof dir);
    snprintf(buf, n, "%s/ckpt/pretrain.h5", dir);
}

/* What the trajectory depends on: the source string (task, steps, seed, text
 * tower) and every optimisation setting. */
static void pt_ckpt_key(const TdConfig *cfg, int C, char out[20])
{
    const TdPretrainConfig *pc = &cfg->pretrain;
    const TdFinetuneConfig *f = &cfg->finetune;
    char src[256], buf[1024];
    expected_source(cfg, src, sizeof src);
    int n = snprintf(buf, sizeof buf, "%s|%s|%d|%.17g|%d|%d|%.17g|%.17g|%.17g|%.17g|%.17g|%.17g|%d|%d",
                     src, cfg->model.arch, C, pc->lr, pc->batch, pc->warmup, pc->weight_decay,
                     pc->scale, f->beta1, f->beta2, f->eps, f->grad_clip, cfg->data.augment,
                     g_rt.micro_batch);
    if (n >= (int)sizeof buf)
        n = (int)sizeof buf - 1;
    snprintf(out, 20, "%016llx", (unsigned long long)XXH64(buf, (size_t)n, 0));
}

/* Collective over the run communicator. */
static TdStatus pt_ckpt_save(const TdConfig *cfg, const Pretrainer *p, const char *key, size_t nh,
                             long step)
{
    char path[800];
    pt_ckpt_path(cfg, path, sizeof path);
    TdStatus s = TD_OK;
    if (g_rt.rank == 0) {
        char dir[800];
        snprintf(dir, sizeof dir, "%s", path);
        *strrchr(dir, '/') = '\0';
        s = fs_mkdir_p(dir);
    }
    TD_TRY(runtime_agree(g_rt.comm, s));
    CkptWriter w;
    ckpt_write_begin(&w, g_rt.comm, path, key, step);
    const size_t total = p->m.table.total;
    ckpt_write_vec(&w, "theta", p->m.params, total);
    ckpt_write_vec(&w, "adam_m", p->o.m, total);
    ckpt_write_vec(&w, "adam_v", p->o.v, total);
    ckpt_write_vec(&w, "head", p->w, nh);
    ckpt_write_vec(&w, "head_adam_m", p->oh.m, nh);
    ckpt_write_vec(&w, "head_adam_v", p->oh.v, nh);
    return ckpt_write_end(&w, NULL);
}

/* Resumes from the checkpoint when there is one made with these settings;
 * *step = 0 otherwise. Every rank reads it alone. */
static TdStatus pt_ckpt_load(const TdConfig *cfg, Pretrainer *p, const char *key, size_t nh,
                             long *step)
{
    char path[800];
    pt_ckpt_path(cfg, path, sizeof path);
    *step = 0;
    CkptReader rd;
    long st = 0;
    int found = 0;
    TD_TRY(ckpt_read_open(&rd, path, key, &st, &found));
    if (!found)
        return TD_OK;
    const size_t total = p->m.table.total;
    int e = st > cfg->pretrain.steps ||
            ckpt_read_vec(&rd, "theta", p->m.params, total) < 0 ||
            ckpt_read_vec(&rd, "adam_m", p->o.m, total) < 0 ||
            ckpt_read_vec(&rd, "adam_v", p->o.v, total) < 0 ||
            ckpt_read_vec(&rd, "head", p->w, nh) < 0 ||
            ckpt_read_vec(&rd, "head_adam_m", p->oh.m, nh) < 0 ||
            ckpt_read_vec(&rd, "head_adam_v", p->oh.v, nh) < 0;
    ckpt_read_close(&rd);
    if (e)
        return td_fail(TD_ERR_FORMAT, "checkpoint '%s' is damaged; delete it to start over", path);
    *step = p->o.step = p->oh.step = st;
    return TD_OK;
}

static TdStatus train(const TdConfig *cfg, Pretrainer *p, const char *path, int C, double *secs)
{
    const TdPretrainConfig *pc = &cfg->pretrain;
    int E = p->m.arch.out_dim;
    size_t nh = (size_t)(p->D ? p->D : C) * E;
    DpSpec spec = {&p->m, p->mask, trainable_count(&p->m.table, p->mask), 0, C, 1, 0.0f,
                   0, NULL, NULL};
    if (p->D) { /* the exact sum carries dL/dP, not the C caption rows' gradient */
        spec.head_params = nh;
        spec.head_map = caption_head_map;
        spec.head_ctx = p;
    }
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
    char key[20];
    pt_ckpt_key(cfg, C, key);
    long step = 0, saved = 0;
    TD_TRY(runtime_agree(g_rt.comm, pt_ckpt_load(cfg, p, key, nh, &step)));
    if (step > 0) {
        loader_seek(&p->T.L, (int)(step / p->T.L.batches), step % p->T.L.batches);
        td_log("pretrain: resumed from its checkpoint at step %ld of %d", step, pc->steps);
    }
    saved = step;
    CkptClock clk;
    ckpt_clock_start(&clk, pc->checkpoint_every, 0.0);
    double t_start = td_wall(), t_last = t_start, loss = 0, first = NAN;
    long step0 = step, step_last = step;
    int every = cfg->finetune.log_every;
    while (step < pc->steps) {
        if (runtime_stop_requested(g_rt.comm)) { /* between steps: the agreed safe point */
            if (step > saved)
                TD_TRY(pt_ckpt_save(cfg, p, key, nh, step));
            return runtime_stop("while pre-training, at step %ld of %d (checkpoint written: "
                                "rerun to resume)",
                                step, pc->steps);
        }
        head_forward(p, C, E);
        TD_TRY(dp_step(&p->T, g_rt.comm, &spec, p->m.params, p->hn, (float)pc->scale,
                       &loss));
        if (p->D)
            memcpy(p->dw, p->T.dhead, nh * sizeof *p->dw);
        else
            head_backward(p, p->T.dhead, C, E);
        double norm = sqrt(optim_grad_sumsq(&p->m.table, p->mask, p->T.grads) +
                           head_sumsq(p->dw, nh));
        if (!isfinite(loss) || !isfinite(norm))
            return runtime_agree(g_rt.comm,
                                 td_fail(TD_ERR_NUMERIC,
                                         "pretrain: loss became %s at step %ld: stopped (lower "
                                         "pretrain.lr?)",
                                         isnan(loss) || isnan(norm) ? "NaN" : "Inf", step + 1));
        if (step == step0)
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
        if (step < pc->steps && ckpt_clock_due(&clk, g_rt.comm, step, pc->steps)) {
            TD_TRY(pt_ckpt_save(cfg, p, key, nh, step));
            ckpt_clock_reset(&clk);
            saved = step;
        }
        if (pc->stop_after > 0 && step == pc->stop_after && step < pc->steps) {
            if (step > saved)
                TD_TRY(pt_ckpt_save(cfg, p, key, nh, step));
            return runtime_agree(g_rt.comm,
                                 td_fail(TD_ERR_INTERNAL,
                                         "pre-training stopped after step %ld "
                                         "(pretrain.stop_after), as if killed; rerun to resume "
                                         "from the checkpoint",
                                         step));
        }
    }
    *secs = td_wall() - t_start;
    td_log("pretrain: %ld steps in %.1f s, loss %.4f -> %.4f", step - step0, *secs, first, loss);
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
    TdStatus s = runtime_agree(g_rt.comm, pt_alloc(&p, cfg, path, C));
    double secs = 0;
    if (s == TD_OK)
        s = train(cfg, &p, path, C, &secs);
    if (s == TD_OK) {
        head_forward(&p, C, p.m.arch.out_dim);
        EvalEncoder enc = {&p.m, NULL, NULL, NULL};
        double acc[2] = {0, 0};
        s = eval_accuracy(g_rt.comm, &enc, path, TASK_VAL, cfg->eval.batch, cfg->eval.limit,
                          p.hn, C, &acc[0]);
        if (s == TD_OK)
            s = eval_accuracy(g_rt.comm, &enc, path, TASK_TEST, cfg->eval.batch,
                              cfg->eval.limit, p.hn, C, &acc[1]);
        if (s == TD_OK)
            td_log("pretrain: accuracy on %s with the learned %s: val %.4f test %.4f",
                   cfg->pretrain.task, p.D ? "caption embeddings (exact caption)" : "class embeddings",
                   acc[0], acc[1]);
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
            if (w == TD_OK && p.D) { /* the tower, with its learned projection */
                memcpy(params_at(&p.text.table, p.text.params, text_proj(&p.text.arch)), p.w,
                       (size_t)p.D * p.m.arch.out_dim * sizeof *p.w);
                w = text_model_add(cfg->model.path, &p.text);
            }
        }
        s = runtime_agree(g_rt.comm, w);
        if (s == TD_OK && g_rt.rank == 0) { /* the model is the result: its checkpoint goes */
            char ck[800];
            pt_ckpt_path(cfg, ck, sizeof ck);
            unlink(ck);
        }
        if (s == TD_OK)
            td_log("pretrain: wrote %s (checksum %s, %.1f s of training)", cfg->model.path,
                   p.m.checksum, secs);
    }
    pt_free(&p);
    return s;
}
