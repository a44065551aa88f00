/* coef_learn: coefficients learned by gradient, AdaMerging (coef_search.h). */
#include "coef_search.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel.h"
#include "task_loader.h"
#include "train_step.h"
#include "vit.h"

struct CoefLearn {
    CoefRun *cr;
    const TdMergeAdamergingConfig *ac;
    int entropy;              /* objective: 1 entropy (test), 0 cross-entropy (val) */
    int T, mb, upt, U;        /* tasks, micro-batch, units per task, units in all */
    int size, rank, u0, u1;   /* this rank's units [u0, u1) of the task-major list */
    TaskLoader L[TV_MAX_TASKS];
    VitWork w;
    VitHead h;
    float *x;                 /* (upt * mb, 3, S, S) one task's units */
    int32_t *y;
    float *emb, *demb;
    float *theta;             /* (table) theta(c), or the ntk delta */
    float *grads;             /* (table) dL/dtheta of one micro-batch */
    double *a, *ga;           /* (T x G) */
    double *slot;             /* (U x (T*G + 1)) per-unit gradients and losses */
};

void coef_learn_close(CoefLearn *L)
{
    if (!L)
        return;
    for (int t = 0; t < L->T; t++)
        loader_close(&L->L[t]);
    vit_work_free(&L->w);
    vit_head_free(&L->h);
    free(L->x), free(L->y), free(L->emb), free(L->demb), free(L->a), free(L->ga), free(L->slot);
    td_free(L->theta), td_free(L->grads);
    free(L);
}

TdStatus coef_learn_open(CoefLearn **out, CoefRun *cr)
{
    ModeRun *r = cr->r;
    const TdConfig *cfg = r->cfg;
    CoefLearn *L = calloc(1, sizeof *L);
    *out = L;
    if (!L)
        return runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "adamerging: out of memory"));
    L->cr = cr;
    L->ac = &cfg->merge.adamerging;
    L->entropy = strcmp(L->ac->objective, "entropy") == 0;
    L->T = r->ntasks;
    L->mb = g_rt.micro_batch;
    L->upt = (L->ac->batch + L->mb - 1) / L->mb;
    L->U = L->T * L->upt;
    MPI_Comm_size(g_rt.comm, &L->size);
    MPI_Comm_rank(g_rt.comm, &L->rank);
    L->u0 = (int)((int64_t)L->U * L->rank / L->size);
    L->u1 = (int)((int64_t)L->U * (L->rank + 1) / L->size);
    const VitArch *A = &r->m.arch;
    TdStatus s = TD_OK;
    for (int t = 0; t < L->T && s == TD_OK; t++) {
        /* every rank opens every task alone, and reads only its units */
        LoaderOpts o = {.path = r->paths[t],
                        .split = L->entropy ? TASK_TEST : TASK_VAL,
                        .global_batch = L->ac->batch,
                        .image_size = A->image,
                        .seed = (uint64_t)cfg->run.seed * 1000003u + 77u + (uint64_t)t,
                        .train = 1,
                        .no_crop = 1,
                        .unit = L->mb};
        s = loader_open(&L->L[t], MPI_COMM_SELF, &o);
        if (s == TD_OK && L->L[t].batches < 1)
            s = td_fail(TD_ERR_CONFIG, "adamerging: task '%s' has fewer than %d %s images",
                        cfg->data.tasks.item[t], L->ac->batch, L->entropy ? "test" : "val");
    }
    const size_t plane = (size_t)3 * A->image * A->image, TG = (size_t)L->T * cr->cs.G;
    int maxc = 1;
    for (int t = 0; t < L->T; t++)
        maxc = r->classes[t] > maxc ? r->classes[t] : maxc;
    if (s == TD_OK)
        s = vit_work_alloc(&L->w, A, &r->m.table, L->mb);
    if (s == TD_OK)
        s = vit_head_alloc(&L->h, L->mb, A->out_dim, maxc);
    if (s == TD_OK) {
        L->x = calloc((size_t)L->upt * L->mb * plane, sizeof *L->x);
        L->y = calloc((size_t)L->upt * L->mb, sizeof *L->y);
        L->emb = calloc((size_t)L->mb * A->out_dim, sizeof *L->emb);
        L->demb = calloc((size_t)L->mb * A->out_dim, sizeof *L->demb);
        L->a = calloc(TG, sizeof *L->a);
        L->ga = calloc(TG, sizeof *L->ga);
        L->slot = calloc((size_t)L->U * (TG + 1), sizeof *L->slot);
        L->theta = td_aligned_calloc(r->m.table.total * sizeof(float));
        L->grads = td_aligned_calloc(r->m.table.total * sizeof(float));
        if (!L->x || !L->y || !L->emb || !L->demb || !L->a || !L->ga || !L->slot || !L->theta ||
            !L->grads)
            s = td_fail(TD_ERR_NOMEM, "adamerging: out of memory");
    }
    if (s == TD_OK && !r->ntk) /* tensors outside the mask stay theta0's */
        memcpy(L->theta, r->m.params, r->m.table.total * sizeof(float));
    return runtime_agree(g_rt.comm, s);
}

/* Unit k of task t (rows real images from x), at the current weights:
 * forward, objective, backward, and its T x G gradient into slot. */
static void unit_step(CoefLearn *L, int t, const float *x, const int32_t *y, int rows,
                      int nglobal, double *slot)
{
    CoefRun *cr = L->cr;
    ModeRun *r = cr->r;
    const ParamTable *tab = &r->m.table;
    const unsigned char *mask = r->tv.mask;
    const int E = r->m.arch.out_dim, mb = L->mb, C = r->classes[t];
    for (int i = 0; i < tab->count; i++)
        if (mask[i])
            par_zero(L->grads + tab->info[i].offset, tab->info[i].numel);
    L->w.trainable = mask;
    L->w.no_grad = 0;
    if (r->ntk)
        vit_ntk_forward(r->m.params, &L->w, L->theta, mask, x, mb, L->emb, NULL);
    else
        vit_forward(L->theta, &L->w, x, mb, L->emb);
    const float scale = (float)r->cfg->heads.logit_scale;
    double l = L->entropy ? vit_head_entropy(&L->h, L->emb, r->head[t], scale, rows, C, NULL,
                                             L->demb)
                          : vit_head_loss(&L->h, L->emb, r->head[t], scale, y, rows, C, NULL,
                                          L->demb, NULL);
    /* the objective: the sum over tasks of each task's mean over its batch */
    const double frac = (double)rows / nglobal;
    for (size_t k = 0; k < (size_t)rows * E; k++)
        L->demb[k] = (float)(L->demb[k] * frac);
    memset(L->demb + (size_t)rows * E, 0, (size_t)(mb - rows) * E * sizeof(float));
    vit_backward(&L->w, L->demb, L->grads, mask);
    coef_grad(&cr->cs, cr->rows, L->grads, slot);
    slot[(size_t)L->T * cr->cs.G] = l * frac;
}

TdStatus coef_learn_objective(CoefLearn *L, const double *c, long step, double *loss, double *gc)
{
    CoefRun *cr = L->cr;
    ModeRun *r = cr->r;
    const int TG = L->T * cr->cs.G, mb = L->mb;
    const size_t plane = (size_t)3 * r->m.arch.image * r->m.arch.image;
    coef_expand(&cr->cs, c, L->a);
    coef_combine(&cr->cs, cr->rows, L->a, r->ntk ? NULL : r->m.params, L->theta);
    memset(L->slot, 0, (size_t)L->U * (TG + 1) * sizeof *L->slot);
    TdStatus s = TD_OK;
    for (int t = 0; t < L->T && s == TD_OK; t++) {
        int a = L->u0 - t * L->upt, b = L->u1 - t * L->upt; /* this rank's units of task t */
        a = a < 0 ? 0 : a;
        b = b > L->upt ? L->upt : b;
        if (a >= b)
            continue;
        TaskLoader *ld = &L->L[t];
        loader_seek(ld, (int)(step / ld->batches), step % ld->batches);
        LoaderBatch bt;
        s = loader_next_units(ld, a, b, L->x, L->y, &bt);
        for (int k = 0; s == TD_OK && k < b - a; k++) {
            int rows = bt.nlocal - k * mb < mb ? bt.nlocal - k * mb : mb;
            float *x = L->x + (size_t)k * mb * plane;
            if (rows < mb)
                memset(x + (size_t)rows * plane, 0, (size_t)(mb - rows) * plane * sizeof *x);
            unit_step(L, t, x, L->y + (size_t)k * mb, rows, bt.nglobal,
                      L->slot + (size_t)(t * L->upt + a + k) * (TG + 1));
        }
    }
    TD_TRY(runtime_agree(g_rt.comm, s));
    /* one term per slot: the sum over ranks is exact, the sum over slots in order */
    if (L->size > 1 && MPI_Allreduce(MPI_IN_PLACE, L->slot, L->U * (TG + 1), MPI_DOUBLE, MPI_SUM,
                                     g_rt.comm) != MPI_SUCCESS)
        return runtime_agree(g_rt.comm, td_fail(TD_ERR_MPI, "adamerging: MPI_Allreduce failed"));
    memset(L->ga, 0, (size_t)TG * sizeof *L->ga);
    double l = 0;
    for (int u = 0; u < L->U; u++) {
        const double *sl = L->slot + (size_t)u * (TG + 1);
        for (int k = 0; k < TG; k++)
            L->ga[k] += sl[k];
        l += sl[TG];
    }
    *loss = l;
    if (gc)
        coef_reduce(&cr->cs, L->ga, gc);
    return TD_OK;
}

/* ---- checkpoints ---- */

typedef struct {
    long step;       /* completed steps */
    double *c, *m, *v, *trace;
} LearnState;

static cJSON *vec_json(const double *x, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        char b[40];
        snprintf(b, sizeof b, "%.17g", x[i]);
        cJSON_AddItemToArray(a, cJSON_CreateRaw(b));
    }
    return a;
}

static int json_vec(const cJSON *o, const char *name, double *x, int n)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return 0;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (!cJSON_IsNumber(e))
            return 0;
        x[i++] = e->valuedouble;
    }
    return 1;
}

/* Rank 0: writes the state (tmp, then rename). */
static TdStatus ckpt_write(const char *path, const char *key, const LearnState *st, int K)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", key);
    cJSON_AddNumberToObject(o, "step", (double)st->step);
    cJSON_AddItemToObject(o, "c", vec_json(st->c, K));
    cJSON_AddItemToObject(o, "m", vec_json(st->m, K));
    cJSON_AddItemToObject(o, "v", vec_json(st->v, K));
    cJSON_AddItemToObject(o, "trace", vec_json(st->trace, (int)st->step));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = text ? fopen(tmp, "w") : NULL;
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f)
        ok = fclose(f) == 0 && ok;
    free(text);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return td_fail(TD_ERR_IO, "adamerging: cannot write checkpoint '%s': %s", path,
                       strerror(errno));
    }
    return TD_OK;
}

/* Rank 0: the state of path when its key is key (else step 0). */
static void ckpt_read(const char *path, const char *key, LearnState *st, int K, long steps)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = len > 0 ? malloc((size_t)len + 1) : NULL;
    size_t got = text ? fread(text, 1, (size_t)len, f) : 0;
    fclose(f);
    if (!text)
        return;
    text[got] = 0;
    cJSON *o = cJSON_Parse(text);
    free(text);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "key");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "step");
    long step = cJSON_IsNumber(sp) ? (long)sp->valuedouble : -1;
    if (cJSON_IsString(k) && strcmp(k->valuestring, key) == 0 && step > 0 && step <= steps &&
        json_vec(o, "c", st->c, K) && json_vec(o, "m", st->m, K) && json_vec(o, "v", st->v, K) &&
        json_vec(o, "trace", st->trace, (int)step))
        st->step = step;
    else
        td_log("adamerging: checkpoint %s belongs to another search: starting over", path);
    cJSON_Delete(o);
}

TdStatus coef_learn_run(CoefLearn *L, CoefResult *res)
{
    CoefRun *cr = L->cr;
    ModeRun *r = cr->r;
    const TdConfig *cfg = r->cfg;
    const TdMergeAdamergingConfig *ac = L->ac;
    const int K = cr->cs.K;
    const long steps = ac->steps;
    LearnState st = {0};
    st.c = calloc((size_t)K, sizeof *st.c);
    st.m = calloc((size_t)K, sizeof *st.m);
    st.v = calloc((size_t)K, sizeof *st.v);
    st.trace = calloc((size_t)steps + 1, sizeof *st.trace);
    double *g = calloc((size_t)K, sizeof *g);
    TdStatus s = st.c && st.m && st.v && st.trace && g
                     ? TD_OK : td_fail(TD_ERR_NOMEM, "adamerging: out of memory");
    s = runtime_agree(g_rt.comm, s);
    const double lo = cfg->merge.bounds[0], hi = cfg->merge.bounds[1];
    double init = ac->init < lo ? lo : ac->init > hi ? hi : ac->init;
    for (int k = 0; s == TD_OK && k < K; k++)
        st.c[k] = init;
    /* the key: the rows (through r->tau at every coefficient 1) and the settings */
    char path[1200], key[40], what[600];
    snprintf(path, sizeof path, "%s/search/adamerging_%s_%s_%s.json", r->run_dir, r->mode,
             cr->method, coef_kind_name(cr->cs.kind));
    snprintf(what, sizeof what, "adamerging|%s|%s|%s|%.17g|%.17g|%d|%ld|%.17g|%.17g|%.17g|%d|%d",
             cr->method, coef_kind_name(cr->cs.kind), ac->objective, ac->lr, init, ac->batch,
             steps, lo, hi, cfg->heads.logit_scale, L->mb, cfg->run.seed);
    if (s == TD_OK) {
        double *one = calloc((size_t)K, sizeof *one);
        for (int k = 0; one && k < K; k++)
            one[k] = 1.0;
        if (one)
            coef_apply(cr, one);
        free(one);
        mode_search_key(r, what, key);
        if (g_rt.rank == 0 && ac->checkpoint_every > 0)
            ckpt_read(path, key, &st, K, steps);
        MPI_Bcast(&st.step, 1, MPI_LONG, 0, g_rt.comm);
        MPI_Bcast(st.c, K, MPI_DOUBLE, 0, g_rt.comm);
        MPI_Bcast(st.m, K, MPI_DOUBLE, 0, g_rt.comm);
        MPI_Bcast(st.v, K, MPI_DOUBLE, 0, g_rt.comm);
        MPI_Bcast(st.trace, (int)steps, MPI_DOUBLE, 0, g_rt.comm);
        if (st.step > 0)
            td_log("adamerging %s/%s/%s: resuming at step %ld of %ld from %s", r->mode,
                   cr->method, coef_kind_name(cr->cs.kind), st.step, steps, path);
    }
    double t0 = td_wall();
    long first = st.step;
    const int stop_after = cfg->merge.stop_after;
    for (long step = st.step; s == TD_OK && step < steps; step++) {
        double loss = 0;
        s = coef_learn_objective(L, st.c, step, &loss, g);
        if (s != TD_OK)
            break;
        if (!isfinite(loss)) {
            s = runtime_agree(g_rt.comm, td_fail(TD_ERR_NUMERIC,
                                                 "adamerging %s/%s: objective %g at step %ld",
                                                 r->mode, cr->method, loss, step));
            break;
        }
        st.trace[step] = loss;
        coef_adam_step(st.c, g, st.m, st.v, (size_t)K, step + 1, ac->lr, 0.9, 0.999, 1e-8, lo, hi);
        st.step = step + 1;
        long done = st.step - first;
        if (st.step % ac->log_every == 0 || st.step == steps) {
            double el = td_wall() - t0, mean = 0;
            for (int k = 0; k < K; k++)
                mean += st.c[k] / K;
            char eta[32];
            dp_fmt_eta(el / done * (double)(steps - st.step), eta, sizeof eta);
            td_log("adamerging %s/%s/%s: step %ld/%ld objective %.5f (%s) mean coefficient "
                   "%.4f, %.2f steps/s, ETA %s",
                   r->mode, cr->method, coef_kind_name(cr->cs.kind), st.step, steps, loss,
                   ac->objective, mean, done / el, eta);
        }
        /* between steps, the safe point of a graceful stop (runtime.h) */
        bool stop = runtime_stop_requested(g_rt.comm) && st.step < steps;
        int save = ac->checkpoint_every > 0 &&
                   (stop || st.step % ac->checkpoint_every == 0 || st.step == steps);
        if (save) {
            TdStatus w = g_rt.rank == 0 ? ckpt_write(path, key, &st, K) : TD_OK;
            s = runtime_agree(g_rt.comm, w);
        }
        if (s == TD_OK && stop_after > 0 && done >= stop_after) {
            s = runtime_agree(g_rt.comm,
                              td_fail(TD_ERR_INTERNAL,
                                      "adamerging stopped after %d steps (merge.stop_after) as if "
                                      "killed; rerun to resume from %s",
                                      stop_after, path));
        }
        if (s == TD_OK && stop)
            s = runtime_stop("in adamerging at step %ld of %ld (checkpoint %s)", st.step, steps,
                             ac->checkpoint_every > 0 ? path : "off");
    }
    if (s == TD_OK) {
        res->c = st.c;
        res->trace = st.trace;
        st.c = st.trace = NULL;
        res->iterations = (int)steps;
        res->objective = res->trace[steps - 1];
        res->objective_name = ac->objective;
        res->split = L->entropy ? "test (unlabeled: labels never read)" : "val";
        res->seconds = td_wall() - t0;
        if (steps > first)
            td_log("adamerging %s/%s/%s: %ld steps in %.1fs (%.3f steps/s at %d rank(s))",
                   r->mode, cr->method, coef_kind_name(cr->cs.kind), steps - first,
                   res->seconds, (steps - first) / res->seconds, L->size);
    }
    free(st.c), free(st.m), free(st.v), free(st.trace), free(g);
    return s;
}
