#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm_bf16.h"
#include "ops.h"
#include "runtime.h"
#include "task_loader.h"
#include "vit.h"

/* One eval pass over a split: the loader, the encoder's workspace, buffers. */
typedef struct {
    TaskLoader L;
    VitWork w;               /* sized for one micro-batch */
    int nloc, mb, S, E;
    float *x, *emb;
    int32_t *y;
} EvalPass;

static void pass_close(EvalPass *p)
{
    loader_close(&p->L);
    vit_work_free(&p->w);
    free(p->x);
    free(p->emb);
    free(p->y);
    memset(p, 0, sizeof *p);
}

const char *eval_precision_tag(void) { return g_rt.eval_bf16 && mm_bf16_native() ? "bf16" : ""; }

/* The parameters the pass's forwards run on: theta0 for the linearised model. */
static const float *pass_forward_params(const EvalEncoder *enc)
{
    return enc->params && !enc->ntk_delta ? enc->params : enc->model->params;
}

static TdStatus pass_open_local(EvalPass *p, const EvalEncoder *enc)
{
    const VitArch *a = &enc->model->arch;
    p->nloc = loader_local_max(&p->L); /* whole micro-batches */
    p->S = a->image;
    p->E = a->out_dim;
    TD_TRY(vit_work_alloc(&p->w, a, &enc->model->table, p->mb));
    /* evaluation: no backward follows (vit_ntk_forward keeps what its own jvp
     * reads); eval.precision = bf16 binds the pass's parameters, const for
     * the whole pass, to their bf16 copy once */
    p->w.no_grad = 1;
    p->w.bf16 = g_rt.eval_bf16;
    if (vit_bf16_active(&p->w))
        TD_TRY(vit_bf16_bind(&p->w, pass_forward_params(enc)));
    TD_ALLOC(p->x, (size_t)(p->nloc + 1) * 3 * p->S * p->S);
    TD_ALLOC(p->emb, (size_t)(p->nloc + 1) * p->E);
    TD_ALLOC(p->y, p->nloc + 1);
    return TD_OK;
}

static TdStatus pass_open(EvalPass *p, MPI_Comm comm, const EvalEncoder *enc, const char *path,
                          int split, int batch, int64_t limit)
{
    memset(p, 0, sizeof *p);
    p->mb = g_rt.micro_batch;
    /* ranks take whole micro-batches, each embedded alone at its full size,
     * and a batch is whole micro-batches, so micro-batch k is always images
     * [k mb, (k+1) mb) of the split: an image's features depend neither on the
     * rank count nor on the batch (train_step.h) */
    batch = (batch + p->mb - 1) / p->mb * p->mb;
    LoaderOpts o = {path, split, batch, enc->model->arch.image, 0, 0, 0, {0, 0}, limit, p->mb};
    TD_TRY(loader_open(&p->L, comm, &o));
    return runtime_agree(comm, pass_open_local(p, enc));
}

/* Embeds this rank's slice of the next batch into p->emb (normalised rows).
 * *stop: end of the pass. The caller agrees the status. */
static TdStatus pass_next(EvalPass *p, const EvalEncoder *enc, LoaderBatch *b, int *stop)
{
    TD_TRY(loader_next(&p->L, p->x, p->y, b));
    *stop = b->nglobal == 0;
    if (*stop || b->nlocal == 0)
        return TD_OK;
    const float *theta0 = enc->model->params;
    const size_t plane = (size_t)3 * p->S * p->S;
    for (int u = 0; u * p->mb < b->nlocal; u++) {
        float *x = p->x + (size_t)u * p->mb * plane, *emb = p->emb + (size_t)u * p->mb * p->E;
        int rows = b->nlocal - u * p->mb;
        if (rows < p->mb) /* a short last micro-batch: padded with zero images */
            memset(x + (size_t)rows * plane, 0, (size_t)(p->mb - rows) * plane * sizeof *x);
        if (enc->ntk_delta)
            vit_ntk_forward(theta0, &p->w, enc->ntk_delta, enc->ntk_mask, x, p->mb, emb, NULL);
        else
            vit_forward(pass_forward_params(enc), &p->w, x, p->mb, emb);
    }
    for (int i = 0; i < b->nlocal; i++)
        op_l2norm_row(p->emb + (size_t)i * p->E, p->E);
    return TD_OK;
}


double eval_head_accuracy(const float *feat, const int32_t *labels, int64_t n, int E,
                          const float *head, int C)
{
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++)
        ok += op_head_score(feat + i * E, head, C, E, 1.0, -1, NULL) == labels[i];
    return n ? (double)ok / (double)n : 0.0;
}

static TdStatus features_compute(MPI_Comm comm, const EvalEncoder *enc, const char *task_path,
                                 int split, int batch, int64_t limit, float **feat,
                                 int32_t **labels, int64_t *n);

/* ---- theta0's features, kept on disk (eval_theta0_cache) ---- */

static char s_cache_dir[512], s_cache_sum[40];

void eval_theta0_cache(const char *dir, const char *checksum)
{
    snprintf(s_cache_dir, sizeof s_cache_dir, "%s", dir ? dir : "");
    snprintf(s_cache_sum, sizeof s_cache_sum, "%s", checksum ? checksum : "");
}

static int cacheable(const EvalEncoder *enc)
{
    return s_cache_dir[0] && !enc->params && !enc->ntk_delta &&
           strcmp(enc->model->checksum, s_cache_sum) == 0;
}

static void cache_path(const char *task_path, int split, int64_t limit, char *buf, size_t n)
{
    const char *base = strrchr(task_path, '/');
    base = base ? base + 1 : task_path;
    const char *prec = eval_precision_tag(); /* bf16 features apart from fp32 ones */
    snprintf(buf, n, "%s/%.*s_split%d_limit%lld%s%s.bin", s_cache_dir,
             (int)(strchr(base, '.') ? strchr(base, '.') - base : (long)strlen(base)), base,
             split, (long long)limit, *prec ? "_" : "", prec);
}

/* File: "TDF1", checksum[40], int64 n, int32 E, labels int32[n], features float[n*E]. */
static int cache_read(const char *path, int E, float **feat, int32_t **labels, int64_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char magic[4], sum[40];
    int64_t m = 0;
    int32_t e = 0;
    int ok = fread(magic, 4, 1, f) == 1 && memcmp(magic, "TDF1", 4) == 0 &&
             fread(sum, 40, 1, f) == 1 && memcmp(sum, s_cache_sum, 40) == 0 &&
             fread(&m, sizeof m, 1, f) == 1 && fread(&e, sizeof e, 1, f) == 1 && e == E && m >= 0;
    float *F = ok ? malloc((size_t)(m + 1) * E * sizeof *F) : NULL;
    int32_t *Y = ok ? malloc((size_t)(m + 1) * sizeof *Y) : NULL;
    ok = ok && F && Y && fread(Y, sizeof *Y, (size_t)m, f) == (size_t)m &&
         fread(F, sizeof *F, (size_t)m * E, f) == (size_t)m * E;
    fclose(f);
    if (!ok) {
        free(F);
        free(Y);
        return 0;
    }
    *feat = F, *labels = Y, *n = m;
    return 1;
}

/* Atomic: a temporary name of this rank's, then rename (concurrent writers of
 * the same features leave one whole file). Failures only cost the cache. */
static void cache_write(const char *path, int E, const float *F, const int32_t *Y, int64_t n)
{
    char tmp[760];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, g_rt.world_rank);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return;
    int32_t e = E;
    int ok = fwrite("TDF1", 4, 1, f) == 1 && fwrite(s_cache_sum, 40, 1, f) == 1 &&
             fwrite(&n, sizeof n, 1, f) == 1 && fwrite(&e, sizeof e, 1, f) == 1 &&
             fwrite(Y, sizeof *Y, (size_t)n, f) == (size_t)n &&
             fwrite(F, sizeof *F, (size_t)n * E, f) == (size_t)n * E;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0)
        remove(tmp);
}

TdStatus eval_features(MPI_Comm comm, const EvalEncoder *enc, const char *task_path, int split,
                       int batch, int64_t limit, float **feat, int32_t **labels, int64_t *n)
{
    if (!cacheable(enc))
        return features_compute(comm, enc, task_path, split, batch, limit, feat, labels, n);
    char path[700];
    cache_path(task_path, split, limit, path, sizeof path);
    int rank, E = enc->model->arch.out_dim;
    MPI_Comm_rank(comm, &rank);
    int have = rank == 0 ? access(path, R_OK) == 0 : 0; /* one answer for the whole comm */
    MPI_Bcast(&have, 1, MPI_INT, 0, comm);
    int ok = have ? cache_read(path, E, feat, labels, n) : 0, all;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm);
    if (all)
        return TD_OK;
    if (ok) {
        free(*feat);
        free(*labels);
    }
    TD_TRY(features_compute(comm, enc, task_path, split, batch, limit, feat, labels, n));
    if (rank == 0)
        cache_write(path, E, *feat, *labels, *n);
    return TD_OK;
}

TdStatus eval_accuracy(MPI_Comm comm, const EvalEncoder *enc, const char *task_path, int split,
                       int batch, int64_t limit, const float *head, int C, double *acc)
{
    return eval_scores(comm, enc, task_path, split, batch, limit, head, C, 1.0, acc, NULL);
}

TdStatus eval_scores(MPI_Comm comm, const EvalEncoder *enc, const char *task_path, int split,
                     int batch, int64_t limit, const float *head, int C, double scale,
                     double *acc, double *ce)
{
    if (cacheable(enc)) { /* theta0: through its kept features */
        float *F;
        int32_t *Y;
        int64_t n;
        const int E = enc->model->arch.out_dim;
        TD_TRY(eval_features(comm, enc, task_path, split, batch, limit, &F, &Y, &n));
        int64_t ok = 0;
        double sum = 0;
        for (int64_t i = 0; i < n; i++) {
            double v = 0;
            ok += op_head_score(F + i * E, head, C, E, scale, Y[i], ce ? &v : NULL) == Y[i];
            sum += v;
        }
        *acc = n ? (double)ok / (double)n : 0.0;
        if (ce)
            *ce = n ? sum / (double)n : 0.0;
        free(F);
        free(Y);
        return TD_OK;
    }
    EvalPass p;
    TD_TRY(pass_open(&p, comm, enc, task_path, split, batch, limit));
    long long cnt[2] = {0, 0}; /* correct, seen */
    double cesum = 0;          /* summed in image order within a rank */
    TdStatus s = TD_OK;
    for (;;) {
        LoaderBatch b;
        int stop = 0;
        s = runtime_agree(comm, pass_next(&p, enc, &b, &stop));
        if (s != TD_OK || stop)
            break;
        for (int i = 0; i < b.nlocal; i++) {
            double v = 0;
            cnt[0] += op_head_score(p.emb + (size_t)i * p.E, head, C, p.E, scale, p.y[i],
                                    ce ? &v : NULL) == p.y[i];
            cesum += v;
        }
        cnt[1] += b.nlocal;
    }
    pass_close(&p);
    TD_TRY(s);
    if (MPI_Allreduce(MPI_IN_PLACE, cnt, 2, MPI_LONG_LONG, MPI_SUM, comm) != MPI_SUCCESS ||
        (ce && MPI_Allreduce(MPI_IN_PLACE, &cesum, 1, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS))
        return td_fail(TD_ERR_MPI, "eval_accuracy: MPI_Allreduce failed");
    *acc = cnt[1] ? (double)cnt[0] / (double)cnt[1] : 0.0;
    if (ce)
        *ce = cnt[1] ? cesum / (double)cnt[1] : 0.0;
    return TD_OK;
}

static TdStatus features_compute(MPI_Comm comm, const EvalEncoder *enc, const char *task_path,
                                 int split, int batch, int64_t limit, float **feat,
                                 int32_t **labels, int64_t *n)
{
    EvalPass p;
    TD_TRY(pass_open(&p, comm, enc, task_path, split, batch, limit));
    int64_t total = p.L.n;
    if (limit > 0 && limit < total)
        total = limit;
    int E = p.E, size;
    MPI_Comm_size(comm, &size);
    float *F = calloc((size_t)(total + 1) * E, sizeof *F);
    int32_t *Y = calloc((size_t)total + 1, sizeof *Y);
    int *cnt = calloc((size_t)size, sizeof *cnt), *disp = calloc((size_t)size, sizeof *disp);

    TdStatus s = (F && Y && cnt && disp)
                     ? TD_OK : td_fail(TD_ERR_NOMEM, "eval_features: out of memory");
    s = runtime_agree(comm, s);
    /* each batch: gather the slices in rank order; the global batch is
     * contiguous in the split's file order */
    int64_t at = 0;
    while (s == TD_OK) {
        LoaderBatch b;
        int stop = 0;
        s = runtime_agree(comm, pass_next(&p, enc, &b, &stop));
        if (s != TD_OK || stop)
            break;
        int mine = b.nlocal;
        if (MPI_Allgather(&mine, 1, MPI_INT, cnt, 1, MPI_INT, comm) != MPI_SUCCESS) {
            s = td_fail(TD_ERR_MPI, "eval_features: MPI_Allgather failed");
            break;
        }
        int tot = 0;
        for (int r = 0; r < size; r++) {
            disp[r] = tot;
            tot += cnt[r];
        }
        MPI_Allgatherv(p.y, mine, MPI_INT32_T, Y + at, cnt, disp, MPI_INT32_T, comm);
        for (int r = 0; r < size; r++) {
            cnt[r] *= E;
            disp[r] *= E;
        }
        MPI_Allgatherv(p.emb, mine * E, MPI_FLOAT, F + at * E, cnt, disp, MPI_FLOAT, comm);
        at += tot;
    }
    free(cnt);
    free(disp);
    pass_close(&p);
    if (s != TD_OK) {
        free(F);
        free(Y);
        return s;
    }
    *feat = F;
    *labels = Y;
    *n = at;
    return TD_OK;
}
