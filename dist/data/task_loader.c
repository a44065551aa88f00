#include "task_loader.h"

#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "rng.h"
#include "runtime.h"

enum { SALT_SHUFFLE = 0x73687566, SALT_CROP = 0x63726f70 };

static void make_order(TaskLoader *L)
{
    const int64_t full = L->info.split[L->o.split].n;
    for (int64_t i = 0; i < L->n; i++)
        L->order[i] = L->n < full ? i * full / L->n : i; /* evenly spaced when limited */
    if (!L->o.train)
        return;
    TdRng r;
    rng_seed(&r, rng_derive(L->o.seed ^ SALT_SHUFFLE, (uint64_t)L->epoch, 0));
    rng_shuffle(&r, L->order, L->n);
}

static TdStatus open_local(TaskLoader *L)
{
    TD_TRY(task_read_header(L->o.path, &L->info));
    if (L->o.split < 0 || L->o.split >= TASK_NSPLITS)
        return td_fail(TD_ERR_ARG, "loader: bad split %d", L->o.split);
    if (L->o.global_batch < 1 || L->o.image_size < 1)
        return td_fail(TD_ERR_ARG, "loader: batch %d and image size %d must be positive",
                       L->o.global_batch, L->o.image_size);
    const char *sp = k_task_split_names[L->o.split];
    L->n = L->info.split[L->o.split].n;
    if (L->n == 0)
        return td_fail(TD_ERR_ARG, "%s: split %s is empty", L->o.path, sp);
    if (!L->o.train && L->o.limit > 0 && L->o.limit < L->n)
        L->n = L->o.limit;
    L->batches = L->o.train ? L->n / L->o.global_batch
                            : (L->n + L->o.global_batch - 1) / L->o.global_batch;
    if (L->batches == 0)
        return td_fail(TD_ERR_ARG, "%s: split %s has %lld images, fewer than one batch of %d",
                       L->o.path, sp, (long long)L->n, L->o.global_batch);
    int m = loader_local_max(L);
    TD_ALLOC(L->order, L->n);
    TD_ALLOC(L->raw, (int64_t)m * task_image_bytes(&L->info));
    TD_ALLOC(L->sorted, m);
    TD_ALLOC(L->rawlab, m);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char dn[64];
    L->file = H5Fopen(L->o.path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (L->file < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot open", L->o.path);
    snprintf(dn, sizeof dn, "%s/images", sp);
    if ((L->dimages = H5Dopen2(L->file, dn, H5P_DEFAULT)) < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot open /%s", L->o.path, dn);
    snprintf(dn, sizeof dn, "%s/labels", sp);
    if ((L->dlabels = H5Dopen2(L->file, dn, H5P_DEFAULT)) < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot open /%s", L->o.path, dn);
    L->epoch = 0;
    L->batch = 0;
    make_order(L);
    return TD_OK;
}

TdStatus loader_open(TaskLoader *L, MPI_Comm comm, const LoaderOpts *o)
{
    memset(L, 0, sizeof *L);
    L->file = L->dimages = L->dlabels = -1;
    L->comm = comm;
    L->o = *o;
    MPI_Comm_rank(comm, &L->rank);
    MPI_Comm_size(comm, &L->size);
    TdStatus s = runtime_agree(comm, open_local(L));
    if (s != TD_OK)
        loader_close(L);
    return s;
}

void loader_close(TaskLoader *L)
{
    if (L->dlabels >= 0)
        H5Dclose(L->dlabels);
    if (L->dimages >= 0)
        H5Dclose(L->dimages);
    if (L->file >= 0)
        H5Fclose(L->file);
    free(L->order);
    free(L->raw);
    free(L->sorted);
    free(L->rawlab);
    task_free(&L->info);
    memset(L, 0, sizeof *L);
    L->file = L->dimages = L->dlabels = -1;
}

static int loader_unit(const TaskLoader *L) { return L->o.unit > 0 ? L->o.unit : 1; }

int loader_local_max(const TaskLoader *L)
{
    int u = loader_unit(L), units = (L->o.global_batch + u - 1) / u;
    return (units + L->size - 1) / L->size * u;
}

void loader_seek(TaskLoader *L, int epoch, int64_t batch)
{
    if (epoch != L->epoch) {
        L->epoch = epoch;
        make_order(L);
    }
    L->batch = batch;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Reads the m images and labels with split indices sorted[0..m) (increasing)
 * into raw / rawlab, in that order, as one hyperslab union per dataset. */
static TdStatus read_rows(TaskLoader *L, int m)
{
    const TaskData *t = &L->info;
    hsize_t cnt[4] = {1, (hsize_t)t->height, (hsize_t)t->width, (hsize_t)t->channels};
    hsize_t mdim[4] = {(hsize_t)m, cnt[1], cnt[2], cnt[3]};
    hid_t fs = -1, ms = -1, ls = -1, lms = -1;
    TdStatus s = TD_OK;
    if ((fs = H5Dget_space(L->dimages)) < 0 || (ls = H5Dget_space(L->dlabels)) < 0 ||
        H5Sselect_none(fs) < 0 || H5Sselect_none(ls) < 0)
        s = td_fail(TD_ERR_HDF5, "%s: dataspace of split %s", L->o.path,
                    k_task_split_names[L->o.split]);
    for (int i = 0; i < m && s == TD_OK; i++) {
        hsize_t st[4] = {(hsize_t)L->sorted[i], 0, 0, 0}, one = 1;
        if (H5Sselect_hyperslab(fs, H5S_SELECT_OR, st, NULL, cnt, NULL) < 0 ||
            H5Sselect_hyperslab(ls, H5S_SELECT_OR, st, NULL, &one, NULL) < 0)
            s = td_fail(TD_ERR_HDF5, "%s: selecting record %lld", L->o.path,
                        (long long)L->sorted[i]);
    }
    hsize_t lm = (hsize_t)m;
    if (s == TD_OK && ((ms = H5Screate_simple(4, mdim, NULL)) < 0 ||
                       (lms = H5Screate_simple(1, &lm, NULL)) < 0))
        s = td_fail(TD_ERR_HDF5, "memory dataspace");
    if (s == TD_OK && (H5Dread(L->dimages, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, L->raw) < 0 ||
                       H5Dread(L->dlabels, H5T_NATIVE_INT32, lms, ls, H5P_DEFAULT, L->rawlab) < 0))
        s = td_fail(TD_ERR_HDF5, "%s: cannot read records %lld..%lld of split %s (corrupt file?)",
                    L->o.path, (long long)L->sorted[0], (long long)L->sorted[m - 1],
                    k_task_split_names[L->o.split]);
    if (lms >= 0)
        H5Sclose(lms);
    if (ms >= 0)
        H5Sclose(ms);
    if (ls >= 0)
        H5Sclose(ls);
    if (fs >= 0)
        H5Sclose(fs);
    return s;
}

static TdStatus next_units(TaskLoader *L, int u0, int u1, float *x, int32_t *y, LoaderBatch *b);

TdStatus loader_next(TaskLoader *L, float *x, int32_t *y, LoaderBatch *b)
{
    return next_units(L, -1, -1, x, y, b);
}

TdStatus loader_next_units(TaskLoader *L, int u0, int u1, float *x, int32_t *y, LoaderBatch *b)
{
    return next_units(L, u0 < 0 ? 0 : u0, u1 < u0 ? u0 : u1, x, y, b);
}

/* u0 < 0: this rank's share of the units, else units [u0, u1). */
static TdStatus next_units(TaskLoader *L, int u0, int u1, float *x, int32_t *y, LoaderBatch *b)
{
    int B = L->o.global_batch;
    if (L->batch >= L->batches) {
        L->batch = 0;
        if (!L->o.train) { /* end of the eval pass */
            memset(b, 0, sizeof *b);
            b->epoch = L->epoch;
            b->batch = L->batches;
            L->epoch++;
            return TD_OK;
        }
        L->epoch++;
        make_order(L);
    }
    int64_t first = L->batch * B;
    int ng = (int)(L->n - first < B ? L->n - first : B);
    int u = loader_unit(L), units = (ng + u - 1) / u;
    int lo = (int)((int64_t)units * L->rank / L->size) * u,
        hi = (int)((int64_t)units * (L->rank + 1) / L->size) * u;
    if (u0 >= 0) {
        lo = u0 * u;
        hi = u1 * u;
    }
    lo = lo < ng ? lo : ng;
    hi = hi < ng ? hi : ng;
    b->epoch = L->epoch;
    b->batch = L->batch;
    b->nglobal = ng;
    b->offset = lo;
    b->nlocal = hi - lo;
    b->indices = L->order + first;
    L->batch++;
    int m = hi - lo;
    if (m == 0)
        return TD_OK;
    for (int i = 0; i < m; i++)
        L->sorted[i] = b->indices[lo + i];
    qsort(L->sorted, (size_t)m, sizeof *L->sorted, cmp_i64);
    TD_TRY(read_rows(L, m));
    const TaskData *t = &L->info;
    int S = L->o.image_size;
    int64_t ib = task_image_bytes(t), plane = 3 * (int64_t)S * S;
    for (int i = 0; i < m; i++) {
        int64_t idx = b->indices[lo + i];
        const int64_t *at = bsearch(&idx, L->sorted, (size_t)m, sizeof *L->sorted, cmp_i64);
        int64_t k = at - L->sorted;
        const uint8_t *src = L->raw + k * ib;
        if (L->rawlab[k] < 0 || L->rawlab[k] >= t->num_classes)
            return td_fail(TD_ERR_FORMAT, "%s: %s record %lld: label %d out of range [0, %d)",
                           L->o.path, k_task_split_names[L->o.split], (long long)idx,
                           (int)L->rawlab[k], t->num_classes);
        y[i] = L->rawlab[k];
        if (L->o.train && !L->o.no_crop) {
            TdRng r;
            ImageCrop crop;
            rng_seed(&r, rng_derive(L->o.seed ^ SALT_CROP, (uint64_t)L->epoch,
                                    (uint64_t)(first + lo + i)));
            if (L->o.crop_scale[1] > 0)
                image_rrc_params(&r, t->height, t->width, L->o.crop_scale[0], L->o.crop_scale[1],
                                 3.0 / 4.0, 4.0 / 3.0, &crop);
            else
                image_train_crop(&r, t->height, t->width, &crop);
            TD_TRY(image_preprocess(x + i * plane, src, t->height, t->width, t->channels, S,
                                    &crop));
        } else {
            TD_TRY(image_preprocess(x + i * plane, src, t->height, t->width, t->channels, S,
                                    NULL));
        }
    }
    return TD_OK;
}
