#include "finetune.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "evaluate.h"
#include "h5util.h"
#include "heads.h"
#include "model_io.h"
#include "optim.h"
#include "results.h"
#include "rng.h"
#include "runtime.h"
#include "task_loader.h"
#include "train_ckpt.h"
#include "train_step.h"
#include "trainable.h"
#include "vit.h"

/* FT_STOPPED: a signal stopped it (runtime.h), its checkpoint written */
enum { FT_OK = 0, FT_NAN = 1, FT_INTERRUPTED = 2, FT_STOPPED = 3 };
/* Per-task results, summed over WORLD from each group's rank 0. */
enum {
    R_STATUS, R_STEPS, R_FAIL_STEP, R_ACC_VAL, R_ACC_TEST, R_LOSS, R_T0_VAL, R_T0_TEST,
    R_TV_NORM, /* L2 norm of the task vector */
    R_N
};

typedef struct {
    const TdConfig *cfg;
    const VitModel *m;     /* theta0 */
    const HeadSet *heads;
    const char *mode;
    int ntk;
    unsigned char *mask;   /* (table count) */
    size_t ntrain;         /* trained elements */
    char run_dir[600];
} FtRun;

/* ---- small helpers ---- */

static float schedule_lr(const TdFinetuneConfig *f, long step)
{
    return dp_schedule_lr(f->schedule, f->lr, step, f->warmup, f->steps);
}

static uint64_t task_seed(const TdConfig *cfg, int t)
{
    return rng_derive((uint64_t)cfg->run.seed, 0x7461736bULL, (uint64_t)t);
}

/* Hash of everything a checkpoint's trajectory depends on. */
static void config_hash(const FtRun *r, int t, char out[20])
{
    const TdFinetuneConfig *f = &r->cfg->finetune;
    char buf[2048];
    int n = snprintf(buf, sizeof buf,
                     "%s|%s|%s|%.17g|%.17g|%.17g|%.17g|%.17g|%d|%d|%d|%s|%.17g|%d|%s|%.17g|%d",
                     r->mode, r->cfg->data.tasks.item[t], r->m->checksum, f->lr, f->weight_decay,
                     f->beta1, f->beta2, f->eps, f->batch, f->steps, f->warmup, f->schedule,
                     f->grad_clip, r->cfg->run.seed, r->cfg->heads.source,
                     r->cfg->heads.logit_scale, r->heads->classes[t]);
    /* Settings added later: only when not at their default, so that the
     * checkpoints of runs made before them keep their hash. */
    const TdDataConfig *d = &r->cfg->data;
    if (f->label_smoothing != 0 && n > 0 && n < (int)sizeof buf)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|ls=%.17g", f->label_smoothing);
    if (f->train_heads && n > 0 && n < (int)sizeof buf)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|train_heads");
    if (!d->augment && n > 0 && n < (int)sizeof buf)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|no_augment");
    else if ((d->crop_scale[0] != 0.9 || d->crop_scale[1] != 1.0) && n > 0 && n < (int)sizeof buf)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|crop=%.17g,%.17g", d->crop_scale[0],
                      d->crop_scale[1]);
    if (n >= (int)sizeof buf)
        n = (int)sizeof buf - 1;
    uint64_t h = XXH64(buf, (size_t)n, 0);
    h ^= XXH64(r->heads->w[t], (size_t)r->heads->classes[t] * r->heads->E * sizeof(float), 1);
    snprintf(out, 20, "%016llx", (unsigned long long)h);
}

/* ---- checkpoints (train_ckpt.h: written collectively by the group) ---- */

static void ckpt_path(const FtRun *r, int t, char *buf, size_t n)
{
    snprintf(buf, n, "%s/ckpt/%s_%s.h5", r->run_dir, r->mode, r->cfg->data.tasks.item[t]);
}

/* The trained head of one task (finetune.train_heads): its values, AdamW and a
 * one-tensor table for adamw_step. */
typedef struct {
    float *w, *g;      /* (C,E) */
    AdamW o;
    ParamInfo info;
    ParamTable tab;
    unsigned char mask;
    size_t n;
} FtHead;

/* Collective over the group gcomm; *secs: the write's wall time. */
static TdStatus ckpt_save(const FtRun *r, int t, MPI_Comm gcomm, long step, double loss,
                          const float *theta, const AdamW *o, const FtHead *hd, float *scratch,
                          double *secs)
{
    char path[700], hash[20];
    ckpt_path(r, t, path, sizeof path);
    config_hash(r, t, hash);
    CkptWriter w;
    ckpt_write_begin(&w, gcomm, path, hash, step);
    ckpt_write_f64(&w, "loss", loss); /* the last step's, reported for a finished task */
    const float *v[3] = {theta, o->m, o->v};
    const char *nm[3] = {"theta", "adam_m", "adam_v"};
    for (int k = 0; k < 3; k++) {
        dp_pack(&r->m->table, r->mask, v[k], scratch);
        ckpt_write_vec(&w, nm[k], scratch, r->ntrain);
    }
    if (hd) {
        ckpt_write_vec(&w, "head", hd->w, hd->n);
        ckpt_write_vec(&w, "head_adam_m", hd->o.m, hd->n);
        ckpt_write_vec(&w, "head_adam_v", hd->o.v, hd->n);
    }
    return ckpt_write_end(&w, secs);
}

/* Resumes from the checkpoint when present and made with the same settings;
 * *step = 0 otherwise. Any rank of the group (independent reads). */
static TdStatus ckpt_load(const FtRun *r, int t, float *theta, AdamW *o, FtHead *hd,
                          float *scratch, long *step, double *loss)
{
    char path[700], hash[20];
    *step = 0;
    ckpt_path(r, t, path, sizeof path);
    config_hash(r, t, hash);
    CkptReader rd;
    long st = 0;
    int found = 0;
    TD_TRY(ckpt_read_open(&rd, path, hash, &st, &found));
    if (!found)
        return TD_OK;
    int e = st > r->cfg->finetune.steps ? -1 : 0;
    float *mv[3] = {theta, o->m, o->v};
    const char *nm[3] = {"theta", "adam_m", "adam_v"};
    for (int k = 0; k < 3 && e == 0; k++) {
        e = ckpt_read_vec(&rd, nm[k], scratch, r->ntrain);
        if (e == 0)
            dp_unpack(&r->m->table, r->mask, scratch, mv[k]);
    }
    if (hd && e == 0)
        e = ckpt_read_vec(&rd, "head", hd->w, hd->n) < 0 ||
                    ckpt_read_vec(&rd, "head_adam_m", hd->o.m, hd->n) < 0 ||
                    ckpt_read_vec(&rd, "head_adam_v", hd->o.v, hd->n) < 0
                ? -1 : 0;
    ckpt_read_f64(&rd, "loss", loss); /* older checkpoints have none */
    ckpt_read_close(&rd);
    if (e < 0)
        return td_fail(TD_ERR_FORMAT, "checkpoint '%s' is damaged; delete it to start over", path);
    *step = st;
    o->step = st;
    if (hd)
        hd->o.step = st;
    return TD_OK;
}

/* ---- one task, one group ---- */

typedef struct {
    DpTrainer dp;  /* loader, workspace, gradients (train_step.h) */
    AdamW o;
    FtHead head;   /* finetune.train_heads */
    FILE *metrics;
} Trainer;

static void trainer_free(Trainer *T)
{
    dp_trainer_free(&T->dp);
    adamw_free(&T->o);
    adamw_free(&T->head.o);
    free(T->head.g);
    if (T->metrics)
        fclose(T->metrics);
    memset(T, 0, sizeof *T);
}

static DpSpec ft_spec(const FtRun *r, int t)
{
    DpSpec p = {r->m,
                r->mask,
                r->ntrain,
                r->ntk,
                r->heads->classes[t],
                r->cfg->finetune.train_heads,
                (float)r->cfg->finetune.label_smoothing,
                0,
                NULL,
                NULL};
    return p;
}

/* head: in theta0's head, out the trained one (train_heads), or NULL. */
static TdStatus trainer_alloc(Trainer *T, const FtRun *r, int t, int grank, float *head)
{
    const TdFinetuneConfig *f = &r->cfg->finetune;
    const char *task = r->cfg->data.tasks.item[t];
    AdamWConfig oc = {(float)f->lr, (float)f->beta1, (float)f->beta2, (float)f->eps,
                      (float)f->weight_decay};
    TD_TRY(adamw_init(&T->o, &oc, r->m->table.total));
    if (head) {
        FtHead *h = &T->head;
        int C = r->heads->classes[t], E = r->heads->E;
        h->n = (size_t)C * E;
        h->w = head;
        TD_ALLOC(h->g, h->n);
        TD_TRY(adamw_init(&h->o, &oc, h->n)); /* the encoder's lr and weight decay */
        snprintf(h->info.name, sizeof h->info.name, "head");
        h->info.ndim = 2;
        h->info.shape[0] = C;
        h->info.shape[1] = E;
        h->info.numel = h->n;
        h->info.block = -1;
        h->tab = (ParamTable){1, &h->info, h->n};
        h->mask = 1;
    }
    if (grank == 0) {
        char path[700];
        snprintf(path, sizeof path, "%s/metrics/%s_%s.jsonl", r->run_dir, r->mode, task);
        T->metrics = fopen(path, "a");
        if (!T->metrics)
            return td_fail(TD_ERR_IO, "cannot open metrics file '%s'", path);
    }
    return TD_OK;
}

/* Trains task t in group gcomm: theta (in: theta0, out: theta_t) and res;
 * with finetune.train_heads, head (C,E) too (in: the fixed head, out: the
 * trained one; NULL otherwise). */
static TdStatus train_task(const FtRun *r, int t, MPI_Comm gcomm, float *theta, float *head,
                           double *res)
{
    const TdFinetuneConfig *f = &r->cfg->finetune;
    const char *task = r->cfg->data.tasks.item[t];
    int grank;
    MPI_Comm_rank(gcomm, &grank);
    char path[600];
    heads_task_path(r->cfg, t, path, sizeof path);
    Trainer T;
    memset(&T, 0, sizeof T);
    const TdDataConfig *dc = &r->cfg->data;
    LoaderOpts lo = {path, TASK_TRAIN, f->batch, r->m->arch.image, task_seed(r->cfg, t), 1,
                     !dc->augment, {dc->crop_scale[0], dc->crop_scale[1]}, 0, 0};
    DpSpec spec = ft_spec(r, t);
    FtHead *hd = head ? &T.head : NULL;
    TdStatus s = dp_trainer_open(&T.dp, gcomm, &lo, &spec);
    if (s == TD_OK)
        s = runtime_agree(gcomm, trainer_alloc(&T, r, t, grank, head));
    long step = 0;
    double loss = 0;
    if (s == TD_OK)
        s = runtime_agree(gcomm, ckpt_load(r, t, theta, &T.o, hd, T.dp.packed, &step, &loss));
    if (s != TD_OK) {
        trainer_free(&T);
        return s;
    }
    if (step > 0)
        td_log_rank("%s/%s: resuming from checkpoint at step %ld", r->mode, task, step);
    loader_seek(&T.dp.L, (int)(step / T.dp.L.batches), step % T.dp.L.batches);
    res[R_STATUS] = FT_OK;
    double t_last = td_wall(), t_start = t_last;
    long step_last = step, step_start = step, saved = step;
    double ckpt_secs = 0, ckpt_max = 0; /* the checkpoints' cost, logged at the end */
    int ckpts = 0;
    CkptClock clk; /* finetune.checkpoint_every / checkpoint_minutes */
    ckpt_clock_start(&clk, f->checkpoint_every, f->checkpoint_minutes);
    while (step < f->steps) {
        if (runtime_stop_requested(gcomm)) { /* between steps: the agreed safe point */
            res[R_STATUS] = FT_STOPPED;
            break;
        }
        s = dp_step(&T.dp, gcomm, &spec, theta, head ? head : r->heads->w[t],
                    (float)r->cfg->heads.logit_scale, &loss);
        if (s != TD_OK)
            break;
        double sumsq = optim_grad_sumsq(&r->m->table, r->mask, T.dp.grads);
        if (hd) { /* the head's gradient counts in the global norm */
            memcpy(hd->g, T.dp.dhead, hd->n * sizeof(float));
            sumsq += optim_grad_sumsq(&hd->tab, &hd->mask, hd->g);
        }
        double norm = sqrt(sumsq);
        if (!isfinite(loss) || !isfinite(norm)) {
            res[R_STATUS] = FT_NAN;
            res[R_FAIL_STEP] = (double)(step + 1);
            if (grank == 0)
                td_log_rank("task %s (%s): loss became %s at step %ld: stopped", task, r->mode,
                            isnan(loss) || isnan(norm) ? "NaN" : "Inf", step + 1);
            break;
        }
        const float clip = optim_clip_factor(norm, (float)f->grad_clip);
        float lr = schedule_lr(f, step);
        adamw_step(&T.o, &r->m->table, r->mask, theta, T.dp.grads, clip, lr);
        if (hd)
            adamw_step(&hd->o, &hd->tab, &hd->mask, hd->w, hd->g, clip, lr);
        step++;
        if (grank == 0 && (step % f->log_every == 0 || step == f->steps)) {
            double now = td_wall(), ips = (double)(step - step_last) * f->batch / (now - t_last + 1e-9);
            double per = (now - t_start) / (double)(step - step_start);
            char eta[32];
            dp_fmt_eta(per * (double)(f->steps - step), eta, sizeof eta);
            td_log_rank("%s/%s step %ld/%d loss %.4f lr %.3g grad %.3g %.1f img/s ETA %s",
                        r->mode, task, step, f->steps, loss, lr, norm, ips, eta);
            fprintf(T.metrics,
                    "{\"task\":\"%s\",\"mode\":\"%s\",\"step\":%ld,\"loss\":%.6g,\"lr\":%.6g,"
                    "\"grad_norm\":%.6g,\"images_per_s\":%.4g,\"time_s\":%.3f}\n",
                    task, r->mode, step, loss, lr, norm, ips, now);
            fflush(T.metrics);
            t_last = now;
            step_last = step;
        }
        if (ckpt_clock_due(&clk, gcomm, step, f->steps)) {
            double secs = 0;
            s = ckpt_save(r, t, gcomm, step, loss, theta, &T.o, hd, T.dp.packed, &secs);
            if (s != TD_OK)
                break;
            ckpt_clock_reset(&clk);
            saved = step;
            ckpt_secs += secs;
            ckpt_max = secs > ckpt_max ? secs : ckpt_max;
            ckpts++;
            if (grank == 0 && step != f->steps &&
                !(f->checkpoint_every > 0 && step % f->checkpoint_every == 0))
                td_log_rank("%s/%s: checkpoint at step %ld (finetune.checkpoint_minutes), "
                            "written in %.3f s", r->mode, task, step, secs);
        }
        if (f->stop_after > 0 && step == f->stop_after && step < f->steps) {
            res[R_STATUS] = FT_INTERRUPTED;
            if (grank == 0)
                td_log_rank("%s/%s: stopping after step %ld (finetune.stop_after), as if killed",
                            r->mode, task, step);
            break;
        }
    }
    if (s == TD_OK && res[R_STATUS] == FT_STOPPED) {
        double secs = 0;
        if (step > saved) /* a signal asks for one, checkpoints on or off */
            s = ckpt_save(r, t, gcomm, step, loss, theta, &T.o, hd, T.dp.packed, &secs);
        if (s == TD_OK && grank == 0)
            td_log_rank("%s/%s: stopped at step %ld of %d; %s", r->mode, task, step, f->steps,
                        step > saved ? "checkpoint written" : "its checkpoint is up to date");
        if (s == TD_OK && step > saved) {
            ckpt_secs += secs;
            ckpt_max = secs > ckpt_max ? secs : ckpt_max;
            ckpts++;
        }
    }
    if (grank == 0 && ckpts > 0)
        td_log_rank("%s/%s: %d checkpoint(s), %.3f s writing them (at most %.3f s each; %.1f%% "
                    "of %.1f s)",
                    r->mode, task, ckpts, ckpt_secs, ckpt_max,
                    100.0 * ckpt_secs / (td_wall() - t_start + 1e-9), td_wall() - t_start);
    res[R_STEPS] = (double)step;
    res[R_LOSS] = loss;
    trainer_free(&T);
    return s;
}

/* Single-task val/test accuracy of the fine-tuned encoder with head (the
 * fixed head, or the trained one), over the group. */
static TdStatus evaluate_task(const FtRun *r, int t, MPI_Comm gcomm, const float *theta,
                              const float *head, float *delta, double *res)
{
    char path[600];
    heads_task_path(r->cfg, t, path, sizeof path);
    EvalEncoder enc = {r->m, theta, NULL, NULL};
    if (r->ntk) {
        dp_masked_diff(&r->m->table, r->mask, theta, r->m->params, delta);
        enc = (EvalEncoder){r->m, NULL, delta, r->mask};
    }
    const TdEvalConfig *e = &r->cfg->eval;
    TD_TRY(eval_accuracy(gcomm, &enc, path, TASK_VAL, e->batch, e->limit, head,
                         r->heads->classes[t], &res[R_ACC_VAL]));
    TD_TRY(eval_accuracy(gcomm, &enc, path, TASK_TEST, e->batch, e->limit, head,
                         r->heads->classes[t], &res[R_ACC_TEST]));
    return TD_OK;
}

/* ---- the task-vector file (collective over WORLD) ---- */

static int group_root(int g, int G, int P)
{
    for (int r = 0; r < P; r++)
        if ((long)r * G / P == g)
            return r;
    return 0;
}

/* s, or r when s is TD_OK: the first failure of a run of calls that are all
 * made even after one fails. */
static TdStatus tv_keep(TdStatus s, TdStatus r)
{
    return s != TD_OK ? s : r;
}

static TdStatus tv_write(const FtRun *r, const double *res, float **tv, int G)
{
    const TdConfig *cfg = r->cfg;
    const ParamTable *tab = &r->m->table;
    int P = g_rt.size, T = cfg->data.tasks.count;
    char path[700], tmp[720];
    snprintf(path, sizeof path, "%s/task_vectors_%s.h5", r->run_dir, r->mode);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = h5u_create_mpio(g_rt.comm, tmp);
    if (f < 0)
        return runtime_agree(g_rt.comm,
                             td_fail(TD_ERR_IO, "cannot create task-vector file '%s'", tmp));
    const TdFinetuneConfig *fc = &cfg->finetune;
    /* Every rank makes every call below, with the same values, whether an
     * earlier one failed or not: under MPI-IO, creating attributes, groups and
     * datasets is collective. s keeps the first failure; it is agreed once the
     * file is closed. */
    TdStatus s = h5u_attr_write_str(f, tmp, "format", "tadist-task-vectors-1");
    s = tv_keep(s, h5u_attr_write_str(f, tmp, "mode", r->mode));
    s = tv_keep(s, h5u_attr_write_str(f, tmp, "base_checksum", r->m->checksum));
    s = tv_keep(s, h5u_attr_write_str(f, tmp, "base_model", cfg->model.path));
    s = tv_keep(s, h5u_attr_write_str(f, tmp, "heads", cfg->heads.source));
    s = tv_keep(s, h5u_attr_write_str(f, tmp, "schedule", fc->schedule));
    s = tv_keep(s, h5u_attr_write_f64(f, tmp, "logit_scale", cfg->heads.logit_scale));
    s = tv_keep(s, h5u_attr_write_f64(f, tmp, "lr", fc->lr));
    s = tv_keep(s, h5u_attr_write_f64(f, tmp, "weight_decay", fc->weight_decay));
    s = tv_keep(s, h5u_attr_write_f64(f, tmp, "grad_clip", fc->grad_clip));
    s = tv_keep(s, h5u_attr_write_i64(f, tmp, "batch", (long long)fc->batch));
    s = tv_keep(s, h5u_attr_write_i64(f, tmp, "steps", (long long)fc->steps));
    s = tv_keep(s, h5u_attr_write_i64(f, tmp, "warmup", (long long)fc->warmup));
    s = tv_keep(s, h5u_attr_write_i64(f, tmp, "seed", (long long)cfg->run.seed));
    s = tv_keep(s, h5u_attr_write_f64(f, tmp, "label_smoothing", fc->label_smoothing));
    s = tv_keep(s, h5u_attr_write_i64(f, tmp, "augment", (long long)cfg->data.augment));
    s = tv_keep(s, h5u_attr_write_i64(f, tmp, "train_heads", (long long)fc->train_heads));
    if (fc->train_heads) {
        char hf[64];
        snprintf(hf, sizeof hf, "heads_%s.h5", r->mode);
        s = tv_keep(s, h5u_attr_write_str(f, tmp, "heads_file", hf));
    } else {
        s = tv_keep(s, h5u_attr_write_str(f, tmp, "heads_file", "heads.h5"));
    }
    for (int t = 0; t < T; t++) {
        const double *q = res + (size_t)t * R_N;
        const char *name = cfg->data.tasks.item[t];
        int owner = group_root(t % G, G, P);
        char what[sizeof tmp + TD_CFG_NAME_MAX + 16];
        snprintf(what, sizeof what, "%s, task '%s'", tmp, name);
        hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) { /* metadata, the same on every rank: all of them stop here */
            s = tv_keep(s, td_fail(TD_ERR_HDF5, "%s: cannot create the group", what));
            break;
        }
        int st = (int)q[R_STATUS];
        const char *status = st == FT_OK ? "ok" : st == FT_NAN ? "nan" : "interrupted";
        s = tv_keep(s, h5u_attr_write_str(g, what, "status", status));
        s = tv_keep(s, h5u_attr_write_i64(g, what, "steps_done", (long long)q[R_STEPS]));
        s = tv_keep(s, h5u_attr_write_i64(g, what, "seed", (long long)(task_seed(cfg, t) >> 11)));
        s = tv_keep(s, h5u_attr_write_f64(g, what, "acc_val", q[R_ACC_VAL]));
        s = tv_keep(s, h5u_attr_write_f64(g, what, "acc_test", q[R_ACC_TEST]));
        s = tv_keep(s, h5u_attr_write_f64(g, what, "acc_theta0_val", q[R_T0_VAL]));
        s = tv_keep(s, h5u_attr_write_f64(g, what, "acc_theta0_test", q[R_T0_TEST]));
        s = tv_keep(s, h5u_attr_write_f64(g, what, "final_loss", q[R_LOSS]));
        size_t off = 0;
        for (int i = 0; i < tab->count && st == FT_OK; i++) {
            if (!r->mask[i])
                continue;
            const ParamInfo *pi = &tab->info[i];
            hsize_t dims[TD_PARAM_MAX_DIMS];
            for (int k = 0; k < pi->ndim; k++)
                dims[k] = (hsize_t)pi->shape[k];
            hid_t sp = H5Screate_simple(pi->ndim, dims, NULL);
            hid_t d = H5Dcreate2(g, pi->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                 H5P_DEFAULT);
            if (d < 0)
                s = tv_keep(s, td_fail(TD_ERR_HDF5, "%s: cannot create dataset '%s'", what,
                                       pi->name));
            else if (g_rt.rank == owner && tv[t] && /* independent transfer by the owner */
                     H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, tv[t] + off) < 0)
                s = tv_keep(s, td_fail(TD_ERR_HDF5, "%s: cannot write dataset '%s'", what,
                                       pi->name));
            if (d >= 0)
                H5Dclose(d);
            H5Sclose(sp);
            off += pi->numel;
        }
        H5Gclose(g);
    }
    if (H5Fclose(f) < 0)
        s = tv_keep(s, td_fail(TD_ERR_HDF5, "cannot write task-vector file '%s'", tmp));
    TD_TRY(runtime_agree(g_rt.comm, s));
    if (g_rt.rank == 0 && rename(tmp, path) != 0)
        s = td_fail(TD_ERR_IO, "cannot rename '%s' to '%s'", tmp, path);
    TD_TRY(runtime_agree(g_rt.comm, s));
    td_log("task vectors (%s): %s", r->mode, path);
    return TD_OK;
}

/* ---- the trained heads of a mode (finetune.train_heads) ---- */

/* Gathers every task's trained head (its slot in all, filled by the group's
 * rank 0, zero elsewhere) to every rank with one MPI_Allreduce, then world
 * rank 0 writes <run_dir>/heads_<mode>.h5 (heads.h layout; tasks that did not
 * finish are left out). Collective over WORLD. */
static TdStatus trained_heads_write(const FtRun *r, const double *res, float *all, size_t total)
{
    const TdConfig *cfg = r->cfg;
    int T = cfg->data.tasks.count;
    if (MPI_Allreduce(MPI_IN_PLACE, all, (int)total, MPI_FLOAT, MPI_SUM, g_rt.comm) !=
        MPI_SUCCESS)
        return runtime_agree(g_rt.comm,
                             td_fail(TD_ERR_MPI, "MPI_Allreduce of the trained heads failed"));
    HeadSet h = {T, r->heads->E, r->heads->classes, NULL};
    float **w = calloc((size_t)T, sizeof *w);
    unsigned char *ok = calloc((size_t)T, 1);
    TdStatus s = w && ok ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory");
    size_t off = 0;
    for (int t = 0; t < T && s == TD_OK; t++) {
        w[t] = all + off;
        off += (size_t)r->heads->classes[t] * r->heads->E;
        ok[t] = res[(size_t)t * R_N + R_STATUS] == FT_OK;
    }
    h.w = w;
    s = runtime_agree(g_rt.comm, s);
    char path[700], source[96];
    snprintf(path, sizeof path, "%s/heads_%s.h5", r->run_dir, r->mode);
    snprintf(source, sizeof source, "finetuned:%s", r->mode);
    if (s == TD_OK)
        s = heads_write_as(path, cfg, r->m, &h, source, ok);
    if (s == TD_OK)
        td_log("trained heads (%s): %s", r->mode, path);
    free(w);
    free(ok);
    return s;
}

/* ---- one mode over every task ---- */

static TdStatus run_mode(FtRun *r, const double *theta0_acc)
{
    const TdConfig *cfg = r->cfg;
    int P = g_rt.size, T = cfg->data.tasks.count, G = P < T ? P : T;
    int color = (int)((long)g_rt.rank * G / P);
    const ParamTable *tab = &r->m->table;
    TdStatus s = trainable_mask(tab, r->ntk ? "full" : r->mode, r->mask);
    r->ntrain = s == TD_OK ? trainable_count(tab, r->mask) : 0;
    TD_TRY(runtime_agree(g_rt.comm, s));
    const double t_mode = td_wall();
    td_log("fine-tuning mode %s: %zu trained parameters, %d task(s), %d group(s) of ~%d rank(s)",
           r->mode, r->ntrain, T, G, P / G);
    MPI_Comm gcomm;
    if (MPI_Comm_split(g_rt.comm, color, g_rt.rank, &gcomm) != MPI_SUCCESS)
        return runtime_agree(g_rt.comm, td_fail(TD_ERR_MPI, "MPI_Comm_split failed"));
    int grank;
    MPI_Comm_rank(gcomm, &grank);
    double *res = calloc((size_t)T * R_N, sizeof *res);
    float **tv = calloc((size_t)T, sizeof *tv);
    float *theta = td_aligned_calloc(tab->total * sizeof(float));
    float *delta = td_aligned_calloc(tab->total * sizeof(float));
    /* finetune.train_heads: every task's head back to back (heads_all), and
     * where each starts */
    int th = cfg->finetune.train_heads;
    size_t heads_total = 0, *hoff = calloc((size_t)T + 1, sizeof *hoff);
    for (int t = 0; t < T && hoff; t++)
        hoff[t + 1] = heads_total += (size_t)r->heads->classes[t] * r->heads->E;
    float *heads_all = th ? calloc(heads_total + 1, sizeof(float)) : NULL;
    float *head = th ? malloc((heads_total + 1) * sizeof(float)) : NULL;
    s = (res && tv && theta && delta && hoff && (!th || (heads_all && head)))
            ? TD_OK : td_fail(TD_ERR_NOMEM, "fine-tuning: out of memory");
    for (int t = color; t < T && s == TD_OK; t += G) {
        double q[R_N] = {0};
        memcpy(theta, r->m->params, tab->total * sizeof(float));
        if (th)
            memcpy(head, r->heads->w[t], (hoff[t + 1] - hoff[t]) * sizeof(float));
        s = train_task(r, t, gcomm, theta, head, q);
        if (s == TD_OK && q[R_STATUS] == FT_OK)
            s = evaluate_task(r, t, gcomm, theta, th ? head : r->heads->w[t], delta, q);
        if (s == TD_OK && grank == 0 && th && q[R_STATUS] == FT_OK)
            memcpy(heads_all + hoff[t], head, (hoff[t + 1] - hoff[t]) * sizeof(float));
        if (s == TD_OK && grank == 0) {
            q[R_T0_VAL] = theta0_acc[2 * t];
            q[R_T0_TEST] = theta0_acc[2 * t + 1];
            memcpy(res + (size_t)t * R_N, q, sizeof q);
            for (int u = t + G; q[R_STATUS] == FT_STOPPED && u < T; u += G)
                res[(size_t)u * R_N + R_STATUS] = FT_STOPPED; /* not started: the rerun's */
            if (q[R_STATUS] == FT_OK) {
                tv[t] = malloc(r->ntrain * sizeof(float));
                if (!tv[t])
                    s = td_fail(TD_ERR_NOMEM, "fine-tuning: out of memory");
                else {
                    dp_masked_diff(tab, r->mask, theta, r->m->params, delta);
                    dp_pack(tab, r->mask, delta, tv[t]);
                    double ss = 0;
                    for (size_t i = 0; i < r->ntrain; i++)
                        ss += (double)tv[t][i] * tv[t][i];
                    q[R_TV_NORM] = sqrt(ss);
                    res[(size_t)t * R_N + R_TV_NORM] = q[R_TV_NORM];
                }
            }
        }
        if (q[R_STATUS] == FT_STOPPED) /* agreed in the group: its other tasks wait too */
            break;
    }
    MPI_Comm_free(&gcomm);
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK) { /* wall time of the mode on all ranks, training and its evaluation */
        double secs = td_wall() - t_mode;
        char key[128];
        snprintf(key, sizeof key, "modes.%s.train_seconds", r->mode);
        TdStatus w = g_rt.rank == 0 ? results_set(r->run_dir, key, cJSON_CreateNumber(secs)) : TD_OK;
        s = runtime_agree(g_rt.comm, w);
        td_log("fine-tuning mode %s: %.1f s on %d rank(s)", r->mode, secs, g_rt.size);
    }
    if (s == TD_OK &&
        MPI_Allreduce(MPI_IN_PLACE, res, T * R_N, MPI_DOUBLE, MPI_SUM, g_rt.comm) != MPI_SUCCESS)
        s = runtime_agree(g_rt.comm, td_fail(TD_ERR_MPI, "MPI_Allreduce of results failed"));
    if (s == TD_OK) { /* task-vector norms, for studies (sweep.h) */
        cJSON *norms = g_rt.rank == 0 ? cJSON_CreateObject() : NULL;
        for (int t = 0; t < T && norms; t++)
            if (res[(size_t)t * R_N + R_STATUS] == FT_OK)
                cJSON_AddNumberToObject(norms, cfg->data.tasks.item[t],
                                        res[(size_t)t * R_N + R_TV_NORM]);
        char key[128];
        snprintf(key, sizeof key, "modes.%s.tv_norm", r->mode);
        s = runtime_agree(g_rt.comm, norms ? results_set(r->run_dir, key, norms) : TD_OK);
    }
    int nan = 0, intr = 0, stopped = 0;
    char failed[1024] = "";
    for (int t = 0; t < T && s == TD_OK; t++) {
        const double *q = res + (size_t)t * R_N;
        const char *name = cfg->data.tasks.item[t];
        if (q[R_STATUS] == FT_NAN) {
            nan++;
            size_t l = strlen(failed);
            snprintf(failed + l, sizeof failed - l, "%s%s (step %ld)", l ? ", " : "", name,
                     (long)q[R_FAIL_STEP]);
            td_log("%s/%s: FAILED, loss became NaN/Inf at step %ld", r->mode, name,
                   (long)q[R_FAIL_STEP]);
        } else if (q[R_STATUS] == FT_INTERRUPTED) {
            intr++;
        } else if (q[R_STATUS] == FT_STOPPED) {
            stopped++;
        } else {
            td_log("%s/%s: %ld steps, loss %.4f; accuracy val %.4f test %.4f (theta0 head: val "
                   "%.4f test %.4f); |tau| %.4g",
                   r->mode, name, (long)q[R_STEPS], q[R_LOSS], q[R_ACC_VAL], q[R_ACC_TEST],
                   q[R_T0_VAL], q[R_T0_TEST], q[R_TV_NORM]);
        }
    }
    if (s == TD_OK && stopped) /* no task vectors: a rerun resumes from the checkpoints */
        s = runtime_stop("while fine-tuning mode %s (%d task(s) not finished)", r->mode, stopped);
    if (s == TD_OK && intr)
        s = runtime_agree(g_rt.comm,
                          td_fail(TD_ERR_INTERNAL,
                                  "%d task(s) stopped at finetune.stop_after = %d as if killed; "
                                  "rerun to resume from the checkpoints",
                                  intr, cfg->finetune.stop_after));
    if (s == TD_OK && th) /* before the task-vector file, which names it */
        s = trained_heads_write(r, res, heads_all, heads_total);
    if (s == TD_OK)
        s = tv_write(r, res, tv, G);
    if (s == TD_OK && nan)
        s = runtime_agree(g_rt.comm,
                          td_fail(TD_ERR_NUMERIC, "mode %s: %d task(s) stopped on a NaN/Inf loss: %s",
                                  r->mode, nan, failed));
    for (int t = 0; t < T && tv; t++)
        free(tv[t]);
    free(tv);
    free(res);
    free(hoff);
    free(heads_all);
    free(head);
    td_free(theta);
    td_free(delta);
    return s;
}

/* ---- the stage ---- */

/* theta0: model.path, or (model.random only) a random encoder of model.arch
 * written there first. */
static TdStatus load_theta0(const TdConfig *cfg, VitModel *m)
{
    const char *path = cfg->model.path;
    TdStatus s = TD_OK;
    if (g_rt.rank == 0 && access(path, F_OK) != 0) {
        VitArch a;
        if (!cfg->model.arch[0])
            s = td_fail(TD_ERR_IO,
                        "base model '%s' not found (model.path): import one (tadist import) or "
                        "set model.arch and model.random = true to start from a random encoder",
                        path);
        else if (!cfg->model.random)
            s = td_fail(TD_ERR_IO,
                        "base model '%s' not found (model.path): a mistyped path? Import one "
                        "(tadist import), let the pretrain stage train it (pretrain.enabled), or "
                        "set model.random = true to start from a random %s encoder",
                        path, cfg->model.arch);
        else if ((s = vit_arch_by_name(cfg->model.arch, &a)) == TD_OK &&
                 (s = model_alloc(m, &a)) == TD_OK) {
            params_init_random(&a, &m->table, m->params, (uint64_t)cfg->run.seed);
            snprintf(m->source, sizeof m->source, "random init (%.64s, seed %d)", cfg->model.arch,
                     cfg->run.seed);
            s = model_write(path, m);
            model_free(m);
            if (s == TD_OK)
                td_log("wrote a random %s encoder to %s", cfg->model.arch, path);
        }
    }
    TD_TRY(runtime_agree(g_rt.comm, s));
    return runtime_agree(g_rt.comm, model_read(path, m));
}

static TdStatus check_inputs(const TdConfig *cfg)
{
    const TdFinetuneConfig *f = &cfg->finetune;
    if (cfg->data.tasks.count == 0)
        return td_fail(TD_ERR_CONFIG, "data.tasks is empty: nothing to fine-tune");
    for (int t = 0; t < cfg->data.tasks.count; t++) {
        char path[600];
        TaskData td;
        heads_task_path(cfg, t, path, sizeof path);
        TD_TRY(task_read_header(path, &td));
        int64_t n = td.split[TASK_TRAIN].n, nv = td.split[TASK_VAL].n;
        task_free(&td);
        if (n < f->batch)
            return td_fail(TD_ERR_CONFIG,
                           "task %s: %lld train images, fewer than one batch (finetune.batch = %d)",
                           cfg->data.tasks.item[t], (long long)n, f->batch);
        if (nv == 0)
            return td_fail(TD_ERR_FORMAT, "task %s (%s): empty val split", cfg->data.tasks.item[t],
                           path);
    }
    return TD_OK;
}

TdStatus finetune_stage(const TdConfig *cfg)
{
    FtRun r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    snprintf(r.run_dir, sizeof r.run_dir, "%s/%s", cfg->run.out_dir, cfg->run.name);
    TdStatus s = check_inputs(cfg);
    if (s == TD_OK && g_rt.rank == 0) {
        char d[700];
        s = fs_mkdir_p(r.run_dir);
        snprintf(d, sizeof d, "%s/ckpt", r.run_dir);
        if (s == TD_OK)
            s = fs_mkdir_p(d);
        snprintf(d, sizeof d, "%s/metrics", r.run_dir);
        if (s == TD_OK)
            s = fs_mkdir_p(d);
    }
    TD_TRY(runtime_agree(g_rt.comm, s));
    VitModel m;
    memset(&m, 0, sizeof m);
    TD_TRY(load_theta0(cfg, &m));
    r.m = &m;
    HeadSet heads;
    memset(&heads, 0, sizeof heads);
    int T = cfg->data.tasks.count;
    double *t0 = calloc((size_t)2 * T, sizeof *t0);
    s = runtime_agree(g_rt.comm, t0 ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory"));
    if (s == TD_OK)
        s = heads_build(cfg, &m, &heads);
    r.heads = &heads;
    if (s == TD_OK) {
        char hp[700];
        snprintf(hp, sizeof hp, "%s/heads.h5", r.run_dir);
        s = heads_write(hp, cfg, &m, &heads);
    }
    EvalEncoder enc = {&m, NULL, NULL, NULL};
    for (int t = 0; t < T && s == TD_OK; t++) {
        char path[600];
        heads_task_path(cfg, t, path, sizeof path);
        s = eval_accuracy(g_rt.comm, &enc, path, TASK_VAL, cfg->eval.batch, cfg->eval.limit,
                          heads.w[t], heads.classes[t], &t0[2 * t]);
        if (s == TD_OK)
            s = eval_accuracy(g_rt.comm, &enc, path, TASK_TEST, cfg->eval.batch,
                              cfg->eval.limit, heads.w[t], heads.classes[t], &t0[2 * t + 1]);
        if (s == TD_OK)
            td_log("theta0 with %s head on %s: val %.4f test %.4f", cfg->heads.source,
                   cfg->data.tasks.item[t], t0[2 * t], t0[2 * t + 1]);
    }
    r.mask = calloc((size_t)m.table.count, 1);
    if (s == TD_OK)
        s = runtime_agree(g_rt.comm, r.mask ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory"));
    for (int i = 0; i < cfg->finetune.modes.count && s == TD_OK; i++) {
        r.mode = cfg->finetune.modes.item[i];
        r.ntk = strcmp(r.mode, "ntk") == 0;
        s = run_mode(&r, t0);
    }
    free(r.mask);
    free(t0);
    heads_free(&heads);
    model_free(&m);
    return s;
}
