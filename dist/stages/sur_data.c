/* sur_data: the linear surrogate's tensors of a task split (sur_data.h). */
#include "sur_data.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "h5util.h"
#include "runtime.h"
#include "surrogate.h"
#include "task_loader.h"
#include "vit.h"

void sur_data_free(SurData *d)
{
    for (int t = 0; t < TV_MAX_TASKS + 1; t++) {
        free(d->u[t]);
        free(d->y[t]);
    }
    memset(d, 0, sizeof *d);
}

/* The key of the tensors: everything they depend on. */
static void data_key(const ModeRun *r, const SurData *d, const CoefSpace *cs,
                     const float *const *rows, int split, int64_t limit, char out[40])
{
    XXH64_state_t *h = XXH64_createState();
    XXH64_reset(h, 0);
    char head[1024];
    int n = snprintf(head, sizeof head, "sur1|%s|%d|%d|%d|%d|%lld|%d", r->m.checksum, cs->kind,
                     cs->T, cs->G, split, (long long)limit, g_rt.micro_batch);
    XXH64_update(h, head, (size_t)n);
    for (int t = 0; t < d->T; t++)
        XXH64_update(h, r->paths[d->which[t]], strlen(r->paths[d->which[t]]));
    for (int k = 0; k < cs->ntensors; k++)
        XXH64_update(h, &cs->group[k], sizeof cs->group[k]);
    for (int t = 0; t < cs->T; t++)
        XXH64_update(h, rows[t], coef_row_size(cs) * sizeof(float));
    snprintf(out, 40, "%016llx", (unsigned long long)XXH64_digest(h));
    XXH64_freeState(h);
}

/* Reads every task's tensors of path when its key is key; 1 when read. */
static int data_read(const char *path, const char *key, const ModeRun *r, SurData *d)
{
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    if (f < 0)
        return 0;
    char got[64] = "";
    int ok = h5u_attr_read_str(f, path, "key", got, sizeof got) == TD_OK && !strcmp(got, key);
    td_error_clear();
    for (int t = 0; ok && t < d->T; t++) {
        char p[300];
        snprintf(p, sizeof p, "%d/u", t);
        hid_t ds = -1;
        H5E_BEGIN_TRY { ds = H5Dopen2(f, p, H5P_DEFAULT); } H5E_END_TRY;
        hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
        hsize_t dims[3] = {0, 0, 0};
        ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 3 &&
             H5Sget_simple_extent_dims(sp, dims, NULL) == 3 && dims[1] == (hsize_t)d->R &&
             dims[2] == (hsize_t)d->E;
        if (ok) {
            d->n[t] = (int64_t)dims[0];
            d->u[t] = malloc((size_t)d->n[t] * d->R * d->E * sizeof(float) + 1);
            d->y[t] = malloc((size_t)d->n[t] * sizeof(int32_t) + 1);
            ok = d->u[t] && d->y[t] &&
                 H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->u[t]) >= 0;
        }
        if (sp >= 0)
            H5Sclose(sp);
        if (ds >= 0)
            H5Dclose(ds);
        snprintf(p, sizeof p, "%d/labels", t);
        ds = -1;
        if (ok)
            H5E_BEGIN_TRY { ds = H5Dopen2(f, p, H5P_DEFAULT); } H5E_END_TRY;
        ok = ok && ds >= 0 &&
             H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->y[t]) >= 0;
        if (ds >= 0)
            H5Dclose(ds);
    }
    H5Fclose(f);
    return ok;
}

/* One task: this rank's images of the split, their rows into u (local), the
 * global row of each into at. */
typedef struct {
    float *u;       /* (nmine, R, E) */
    int32_t *y;
    int64_t *at;
    int64_t nmine, cap;
    int64_t total;  /* images of the split (after limit), over every rank */
} Mine;

/* The directions of the rows: direction d's tangent in table layout (buf, table
 * total floats, may be filled by the call) and the mask of the tensors it
 * moves. */
typedef struct {
    int ndir;
    const float *(*tangent)(void *ctx, int d, float *buf);
    const unsigned char *(*mask)(void *ctx, int d);
    void *ctx;
} Dirs;

/* This rank's images of split (limit, in whole micro-batches of batch) of
 * path: [f0; J dir_d ...] of each into out, trainable marking every tensor a
 * direction moves. Collective over g_rt.comm (the loader), agreed. */
static TdStatus split_rows(const VitModel *m, const unsigned char *trainable, const char *path,
                           int split, int batch, int64_t limit, const Dirs *dirs, Mine *out)
{
    const VitArch *A = &m->arch;
    const int mb = g_rt.micro_batch, E = A->out_dim, S = A->image, R = 1 + dirs->ndir;
    const size_t plane = (size_t)3 * S * S;
    batch = (batch + mb - 1) / mb * mb;
    LoaderOpts o = {path, split, batch, S, 0, 0, 0, {0, 0}, limit, mb};
    TaskLoader L;
    VitWork w;
    memset(&w, 0, sizeof w);
    memset(out, 0, sizeof *out);
    TD_TRY(loader_open(&L, g_rt.comm, &o));
    int nloc = loader_local_max(&L);
    float *x = malloc(((size_t)nloc + 1) * plane * sizeof *x);
    float *emb = malloc(((size_t)mb + 1) * E * sizeof *emb);
    int32_t *y = malloc(((size_t)nloc + 1) * sizeof *y);
    float *buf = td_aligned_calloc(m->table.total * sizeof(float));
    TdStatus s = x && emb && y && buf ? vit_work_alloc(&w, A, &m->table, mb)
                                      : td_fail(TD_ERR_NOMEM, "surrogate: out of memory");
    out->total = limit > 0 && limit < L.n ? limit : L.n;
    /* a rank holds at most every image (its share over several batches can
     * exceed an even share by more than one batch) */
    out->cap = out->total + 1;
    out->u = malloc((size_t)out->cap * R * E * sizeof *out->u);
    out->y = malloc((size_t)out->cap * sizeof *out->y);
    out->at = malloc((size_t)out->cap * sizeof *out->at);
    if (s == TD_OK && (!out->u || !out->y || !out->at))
        s = td_fail(TD_ERR_NOMEM, "surrogate: out of memory for %lld rows of %d x %d",
                    (long long)out->cap, R, E);
    s = runtime_agree(g_rt.comm, s);
    while (s == TD_OK) {
        LoaderBatch b;
        s = runtime_agree(g_rt.comm, loader_next(&L, x, y, &b));
        if (s != TD_OK || b.nglobal == 0)
            break;
        for (int u0 = 0; u0 * mb < b.nlocal; u0++) {
            int nrow = b.nlocal - u0 * mb < mb ? b.nlocal - u0 * mb : mb;
            float *xu = x + (size_t)u0 * mb * plane;
            if (nrow < mb)
                memset(xu + (size_t)nrow * plane, 0, (size_t)(mb - nrow) * plane * sizeof *xu);
            w.trainable = trainable;
            w.no_grad = 0;
            vit_forward(m->params, &w, xu, mb, emb);
            float *dst = out->u + (size_t)out->nmine * R * E;
            for (int i = 0; i < nrow; i++)
                memcpy(dst + (size_t)i * R * E, emb + (size_t)i * E, E * sizeof *emb);
            for (int d = 0; d < dirs->ndir; d++) {
                vit_jvp(m->params, &w, dirs->tangent(dirs->ctx, d, buf), dirs->mask(dirs->ctx, d),
                        mb, emb);
                for (int i = 0; i < nrow; i++)
                    memcpy(dst + ((size_t)i * R + 1 + d) * E, emb + (size_t)i * E,
                           E * sizeof *emb);
            }
            for (int i = 0; i < nrow; i++) {
                out->y[out->nmine + i] = y[u0 * mb + i];
                out->at[out->nmine + i] = b.batch * batch + b.offset + u0 * mb + i;
            }
            out->nmine += nrow;
        }
    }
    loader_close(&L);
    vit_work_free(&w);
    free(x), free(emb), free(y);
    td_free(buf);
    return s;
}

/* Directions of a coefficient structure: d = t * G + g, row t (packed)
 * restricted to group g's tensors. */
typedef struct {
    const CoefSpace *cs;
    const float *const *rows;
    const unsigned char *gmask; /* (G, table count) */
    size_t count;
} RowDirs;

static const float *row_tangent(void *ctx, int d, float *buf)
{
    const RowDirs *rd = ctx;
    const CoefSpace *cs = rd->cs;
    if (d % cs->G == 0) /* row t in table layout (outside the mask: never read) */
        for (int q = 0; q < cs->ntensors; q++)
            memcpy(buf + cs->toff[q], rd->rows[d / cs->G] + cs->off[q],
                   (cs->off[q + 1] - cs->off[q]) * sizeof *buf);
    return buf;
}

static const unsigned char *row_mask(void *ctx, int d)
{
    const RowDirs *rd = ctx;
    return rd->gmask + (size_t)(d % rd->cs->G) * rd->count;
}

/* Directions given in table layout, all moving the tensors of one mask. */
typedef struct {
    const float *const *dirs;
    const unsigned char *mask;
} TableDirs;

static const float *table_tangent(void *ctx, int d, float *buf)
{
    (void)buf;
    return ((const TableDirs *)ctx)->dirs[d];
}

static const unsigned char *table_mask(void *ctx, int d)
{
    (void)d;
    return ((const TableDirs *)ctx)->mask;
}

/* Writes every rank's rows of every task into path (collective). */
static TdStatus data_write(const char *path, const char *key, const ModeRun *r, const Mine *mine,
                           int T, const int64_t *n, int R, int E)
{
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = h5u_create_mpio(g_rt.comm, tmp);
    if (f < 0)
        return runtime_agree(g_rt.comm, td_fail(TD_ERR_IO, "surrogate: cannot create '%s'", tmp));
    /* every rank makes every metadata call; s keeps the first failure */
    TdStatus s = h5u_attr_write_str(f, tmp, "format", "tadist-surrogate-1");
    TdStatus s2 = h5u_attr_write_str(f, tmp, "key", key);
    s = s != TD_OK ? s : s2;
    for (int t = 0; t < T; t++) {
        char gname[32];
        snprintf(gname, sizeof gname, "%d", t);
        hid_t g = H5Gcreate2(f, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t dims[3] = {(hsize_t)n[t], (hsize_t)R, (hsize_t)E}, ld[1] = {(hsize_t)n[t]};
        hid_t sp = H5Screate_simple(3, dims, NULL), lsp = H5Screate_simple(1, ld, NULL);
        hid_t du = g >= 0 ? H5Dcreate2(g, "u", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                       H5P_DEFAULT)
                          : -1;
        hid_t dl = g >= 0 ? H5Dcreate2(g, "labels", H5T_STD_I32LE, lsp, H5P_DEFAULT, H5P_DEFAULT,
                                       H5P_DEFAULT)
                          : -1;
        if (du < 0 || dl < 0)
            s = s != TD_OK ? s : td_fail(TD_ERR_HDF5, "surrogate: cannot create datasets in '%s'",
                                         tmp);
        /* this rank's images: runs of consecutive global rows */
        const Mine *m = &mine[t];
        for (int64_t i = 0; du >= 0 && dl >= 0 && i < m->nmine;) {
            int64_t j = i;
            while (j + 1 < m->nmine && m->at[j + 1] == m->at[j] + 1)
                j++;
            hsize_t st[3] = {(hsize_t)m->at[i], 0, 0}, cnt[3] = {(hsize_t)(j - i + 1), (hsize_t)R,
                                                                 (hsize_t)E};
            hid_t fs = H5Dget_space(du), ms = H5Screate_simple(3, cnt, NULL);
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cnt, NULL);
            herr_t e = H5Dwrite(du, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT,
                                m->u + (size_t)i * R * E);
            H5Sclose(fs), H5Sclose(ms);
            fs = H5Dget_space(dl);
            ms = H5Screate_simple(1, cnt, NULL);
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cnt, NULL);
            e |= H5Dwrite(dl, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, m->y + i);
            H5Sclose(fs), H5Sclose(ms);
            if (e < 0)
                s = s != TD_OK ? s : td_fail(TD_ERR_HDF5, "surrogate: cannot write '%s'", tmp);
            i = j + 1;
        }
        if (du >= 0)
            H5Dclose(du);
        if (dl >= 0)
            H5Dclose(dl);
        H5Sclose(sp), H5Sclose(lsp);
        if (g >= 0)
            H5Gclose(g);
    }
    if (H5Fclose(f) < 0 && s == TD_OK)
        s = td_fail(TD_ERR_HDF5, "surrogate: cannot close '%s'", tmp);
    TD_TRY(runtime_agree(g_rt.comm, s));
    if (g_rt.rank == 0 && rename(tmp, path) != 0)
        s = td_fail(TD_ERR_IO, "surrogate: cannot rename '%s'", tmp);
    return runtime_agree(g_rt.comm, s);
}

static void data_init(SurData *d, const ModeRun *r, const CoefSpace *cs, const int *which, int nw)
{
    memset(d, 0, sizeof *d);
    d->T = which ? nw : r->ntasks;
    for (int k = 0; k < d->T; k++)
        d->which[k] = which ? which[k] : k;
    d->R = 1 + cs->T * cs->G;
    d->E = r->m.arch.out_dim;
}

TdStatus sur_data_get(ModeRun *r, const CoefSpace *cs, const float *const *rows, const int *which,
                      int nw, int split, int64_t limit, const char *tag, SurData *d)
{
    data_init(d, r, cs, which, nw);
    char key[40], dir[700], path[1000];
    data_key(r, d, cs, rows, split, limit, key);
    snprintf(dir, sizeof dir, "%s/surrogate", r->run_dir);
    snprintf(path, sizeof path, "%s/%s.h5", dir, tag);
    TdStatus s = g_rt.rank == 0 ? fs_mkdir_p(dir) : TD_OK;
    TD_TRY(runtime_agree(g_rt.comm, s));
    int have = data_read(path, key, r, d), all = 0;
    MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, g_rt.comm);
    if (all) {
        td_log("surrogate %s: reused %s (key %s: the same task vectors, theta0 and images)", tag,
               path, key);
        return TD_OK;
    }
    sur_data_free(d);
    data_init(d, r, cs, which, nw);
    double t0 = td_wall();
    const ParamTable *tab = &r->m.table;
    unsigned char *gmask = calloc((size_t)cs->G * tab->count + 1, 1);
    Mine mine[TV_MAX_TASKS + 1];
    memset(mine, 0, sizeof mine);
    s = gmask ? TD_OK : td_fail(TD_ERR_NOMEM, "surrogate: out of memory");
    for (int q = 0; gmask && q < cs->ntensors; q++)
        gmask[(size_t)cs->group[q] * tab->count + cs->tensor[q]] = 1;
    s = runtime_agree(g_rt.comm, s);
    RowDirs rd = {cs, rows, gmask, (size_t)tab->count};
    Dirs dirs = {cs->T * cs->G, row_tangent, row_mask, &rd};
    for (int k = 0; s == TD_OK && k < d->T; k++) {
        s = split_rows(&r->m, r->tv.mask, r->paths[d->which[k]], split, r->cfg->eval.batch, limit,
                       &dirs, &mine[k]);
        int64_t nk = mine[k].nmine;
        MPI_Allreduce(&nk, &d->n[k], 1, MPI_INT64_T, MPI_SUM, g_rt.comm);
    }
    double tc = td_wall() - t0;
    if (s == TD_OK)
        s = data_write(path, key, r, mine, d->T, d->n, d->R, d->E);
    for (int k = 0; k < TV_MAX_TASKS + 1; k++)
        free(mine[k].u), free(mine[k].y), free(mine[k].at);
    free(gmask);
    TD_TRY(s);
    int ok = data_read(path, key, r, d), all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, g_rt.comm);
    if (!all_ok)
        return runtime_agree(g_rt.comm, td_fail(TD_ERR_IO, "surrogate: cannot read back '%s'",
                                                 path));
    d->seconds = td_wall() - t0;
    int64_t imgs = 0;
    for (int k = 0; k < d->T; k++)
        imgs += d->n[k];
    td_log("surrogate %s: %lld images x %d JVPs in %.1fs (%.1f JVP/s over %d rank(s)), written "
           "and read back in %.1fs: %s",
           tag, (long long)imgs, d->R - 1, tc, (double)imgs * (d->R - 1) / tc, g_rt.size,
           d->seconds - tc, path);
    return TD_OK;
}

TdStatus sur_data_project(const SurData *d, const CoefSpace *cs, int k, const float *head, int C,
                          float **p)
{
    const int64_t n = d->n[k];
    const int R = d->R, K = cs->K;
    float *full = malloc((size_t)n * R * C * sizeof *full + 1);
    *p = malloc((size_t)n * (1 + K) * C * sizeof **p + 1);
    if (!full || !*p) {
        free(full);
        free(*p);
        *p = NULL;
        return td_fail(TD_ERR_NOMEM, "surrogate: out of memory projecting %lld images",
                       (long long)n);
    }
    sur_project(d->u[k], n, R, d->E, head, C, full);
    memset(*p, 0, (size_t)n * (1 + K) * C * sizeof **p);
    for (int64_t i = 0; i < n; i++) {
        const float *src = full + (size_t)i * R * C;
        float *dst = *p + (size_t)i * (1 + K) * C;
        memcpy(dst, src, C * sizeof *dst);
        for (int t = 0; t < cs->T; t++)
            for (int g = 0; g < cs->G; g++) {
                int kk = cs->kind == COEF_UNIFORM ? 0 : cs->kind == COEF_TASK ? t : t * cs->G + g;
                const float *s1 = src + (size_t)(1 + t * cs->G + g) * C;
                float *d1 = dst + (size_t)(1 + kk) * C;
                for (int c = 0; c < C; c++)
                    d1[c] += s1[c];
            }
    }
    free(full);
    return TD_OK;
}

TdStatus sur_line_acc(ModeRun *r, const int *which, int nw, int split, const char *tag,
                      double *acc)
{
    const int A = search_alpha_count(r->cfg);
    CoefSpace cs;
    TD_TRY(runtime_agree(g_rt.comm, coef_space_init(&cs, &r->m.table, r->tv.mask, COEF_UNIFORM, 1)));
    float *row = malloc(coef_row_size(&cs) * sizeof *row + 1);
    TdStatus s = row ? TD_OK : td_fail(TD_ERR_NOMEM, "surrogate: out of memory");
    for (int q = 0; row && q < cs.ntensors; q++) /* r->tau, packed as a coefficient row */
        memcpy(row + cs.off[q], r->tau + cs.toff[q], (cs.off[q + 1] - cs.off[q]) * sizeof *row);
    SurData d;
    memset(&d, 0, sizeof d);
    const float *rows[1] = {row};
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK)
        s = sur_data_get(r, &cs, rows, which, nw, split, r->cfg->eval.limit, tag, &d);
    for (int i = 0; s == TD_OK && i < nw; i++) {
        const int C = r->classes[which[i]];
        const int64_t n = d.n[i];
        float *p = NULL;
        s = sur_data_project(&d, &cs, i, r->head[which[i]], C, &p);
        for (int a = 0; s == TD_OK && a < A; a++) {
            /* mode_encoder's coefficient, rounded to float as there */
            const float k = (float)(r->sign * search_alpha(r->cfg, a));
            int64_t ok = 0;
            for (int64_t j = 0; j < n; j++) {
                const float *p0 = p + (size_t)j * 2 * C, *p1 = p0 + C;
                int best = 0;
                float bv = p0[0] + k * p1[0];
                for (int c = 1; c < C; c++) {
                    float v = p0[c] + k * p1[c];
                    if (v > bv) {
                        bv = v;
                        best = c;
                    }
                }
                ok += best == d.y[i][j];
            }
            acc[(size_t)a * nw + i] = n > 0 ? (double)ok / (double)n : 0.0;
        }
        free(p);
    }
    s = runtime_agree(g_rt.comm, s);
    sur_data_free(&d);
    free(row);
    coef_space_free(&cs);
    return s;
}

TdStatus sur_rows_gather(const VitModel *m, const unsigned char *mask, const char *path, int split,
                         int batch, int64_t limit, const float *const *dirs, int ndir, float **U,
                         int64_t *n)
{
    const int E = m->arch.out_dim, R = 1 + ndir;
    *U = NULL;
    *n = 0;
    TableDirs td = {dirs, mask};
    Dirs dd = {ndir, table_tangent, table_mask, &td};
    Mine mn;
    TdStatus s = split_rows(m, mask, path, split, batch, limit, &dd, &mn);
    const int64_t total = mn.total;
    float *mine = mn.u;
    int64_t *at = mn.at, nm = mn.nmine;
    free(mn.y);
    /* every rank's rows to every rank, each at its global place */
    int *cnt = calloc((size_t)g_rt.size, sizeof *cnt), *dsp = calloc((size_t)g_rt.size, sizeof *dsp);
    int64_t *all_at = NULL;
    float *all = NULL;
    if (s == TD_OK && (!cnt || !dsp))
        s = td_fail(TD_ERR_NOMEM, "surrogate: out of memory");
    s = runtime_agree(g_rt.comm, s);
    int nmi = (int)nm, ntot = 0;
    if (s == TD_OK) {
        MPI_Allgather(&nmi, 1, MPI_INT, cnt, 1, MPI_INT, g_rt.comm);
        for (int q = 0; q < g_rt.size; q++)
            dsp[q] = ntot, ntot += cnt[q];
        all_at = malloc(((size_t)ntot + 1) * sizeof *all_at);
        all = malloc(((size_t)ntot + 1) * R * E * sizeof *all);
        *U = malloc(((size_t)ntot + 1) * R * E * sizeof **U);
        s = runtime_agree(g_rt.comm, all_at && all && *U
                                         ? (ntot == total ? TD_OK
                                                          : td_fail(TD_ERR_INTERNAL,
                                                                    "surrogate: %d images of %s, "
                                                                    "expected %lld",
                                                                    ntot, path, (long long)total))
                                         : td_fail(TD_ERR_NOMEM, "surrogate: out of memory"));
    }
    if (s == TD_OK) {
        MPI_Allgatherv(at, nmi, MPI_INT64_T, all_at, cnt, dsp, MPI_INT64_T, g_rt.comm);
        MPI_Datatype row;
        MPI_Type_contiguous(R * E, MPI_FLOAT, &row);
        MPI_Type_commit(&row);
        MPI_Allgatherv(mine, nmi, row, all, cnt, dsp, row, g_rt.comm);
        MPI_Type_free(&row);
        for (int j = 0; j < ntot; j++) {
            if (all_at[j] < 0 || all_at[j] >= total) {
                s = td_fail(TD_ERR_INTERNAL, "surrogate: image %lld of %s out of range",
                            (long long)all_at[j], path);
                break;
            }
            memcpy(*U + (size_t)all_at[j] * R * E, all + (size_t)j * R * E,
                   (size_t)R * E * sizeof **U);
        }
        s = runtime_agree(g_rt.comm, s);
    }
    free(cnt), free(dsp), free(all_at), free(all), free(mine), free(at);
    if (s != TD_OK) {
        free(*U);
        *U = NULL;
        return s;
    }
    *n = ntot;
    return TD_OK;
}

typedef struct {
    ModeRun *r;
    const int *which;
    int nw;
} GridCtx;

/* Item = alpha index * nw + i: task which[i]'s val accuracy, this rank alone. */
static TdStatus grid_item(void *ctx, int item, double *acc)
{
    const GridCtx *g = ctx;
    ModeRun *r = g->r;
    int a = item / g->nw, k = g->which[item % g->nw];
    EvalEncoder enc = mode_encoder(r, search_alpha(r->cfg, a));
    return eval_accuracy(MPI_COMM_SELF, &enc, r->paths[k], TASK_VAL, r->item_batch,
                         r->cfg->eval.limit, r->head[k], r->classes[k], acc);
}

TdStatus sur_alpha_grid(ModeRun *r, const int *which, int nw, const PoolSpec *ps,
                         const char *tag, double *val)
{
    if (r->ntk && r->cfg->merge.surrogate.ntk) /* one JVP per image, not a forward per alpha */
        return sur_line_acc(r, which, nw, TASK_VAL, tag, val);
    GridCtx g = {r, which, nw};
    return search_pool(g_rt.comm, ps, grid_item, &g, val);
}
