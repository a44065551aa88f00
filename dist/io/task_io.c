#include "task_io.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "h5util.h"
#include "rng.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "task_checksum hashes labels and counts as little-endian bytes"
#endif

const char *const k_task_split_names[TASK_NSPLITS] = {"train", "val", "test"};
static const char k_format[] = "tadist-task-1";

TdStatus task_init(TaskData *t, const char *name, const char *source, uint64_t seed, int H, int W,
                   int C, int K)
{
    memset(t, 0, sizeof *t);
    if (H < 1 || W < 1 || H > 4096 || W > 4096 || (C != 1 && C != 3))
        return td_fail(TD_ERR_ARG, "task %s: bad image shape %dx%dx%d (C must be 1 or 3)", name, H,
                       W, C);
    if (K < 2 || K > TASK_MAX_CLASSES)
        return td_fail(TD_ERR_ARG, "task %s: %d classes (need 2..%d)", name, K, TASK_MAX_CLASSES);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->source, sizeof t->source, "%s", source);
    t->seed = seed;
    t->height = H;
    t->width = W;
    t->channels = C;
    t->num_classes = K;
    TD_ALLOC(t->classes, K);
    for (int k = 0; k < K; k++)
        snprintf(t->classes[k], TASK_CLASS_LEN, "%d", k);
    return TD_OK;
}

TdStatus task_split_alloc(TaskData *t, int s, int64_t n)
{
    TaskSplit *p = &t->split[s];
    free(p->images);
    free(p->labels);
    p->images = NULL;
    p->labels = NULL;
    p->n = n;
    TD_ALLOC(p->images, n * task_image_bytes(t));
    TD_ALLOC(p->labels, n);
    return TD_OK;
}

void task_free(TaskData *t)
{
    for (int s = 0; s < TASK_NSPLITS; s++) {
        free(t->split[s].images);
        free(t->split[s].labels);
    }
    free(t->classes);
    memset(t, 0, sizeof *t);
}

int64_t task_val_count(int64_t n)
{
    int64_t v = n / 10;
    return v > TASK_VAL_MAX ? TASK_VAL_MAX : v;
}

TdStatus task_carve(TaskData *t, int from, int to, int64_t count, uint64_t seed, uint64_t salt)
{
    TaskSplit *src = &t->split[from];
    int64_t n = src->n, ib = task_image_bytes(t);
    if (count < 0 || count > n || from == to || t->split[to].n != 0)
        return td_fail(TD_ERR_INTERNAL, "task %s: cannot move %lld of %lld images from %s to %s",
                       t->name, (long long)count, (long long)n, k_task_split_names[from],
                       k_task_split_names[to]);
    /* the first `count` entries of a seeded permutation move */
    int64_t *perm;
    char *moved;
    TD_ALLOC(perm, n);
    moved = calloc((size_t)(n ? n : 1), 1);
    if (!moved) {
        free(perm);
        return td_fail(TD_ERR_NOMEM, "out of memory splitting %s", t->name);
    }
    TdRng r;
    rng_seed(&r, rng_derive(seed, salt, (uint64_t)n));
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = 0; i < count; i++) { /* partial Fisher-Yates */
        int64_t j = i + (int64_t)rng_below(&r, (uint64_t)(n - i));
        int64_t x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
        moved[perm[i]] = 1;
    }
    free(perm);
    TaskSplit old = *src;
    memset(src, 0, sizeof *src);
    TdStatus s = task_split_alloc(t, from, n - count);
    if (s == TD_OK)
        s = task_split_alloc(t, to, count);
    if (s == TD_OK) {
        int64_t a = 0, b = 0;
        for (int64_t i = 0; i < n; i++) {
            TaskSplit *d = moved[i] ? &t->split[to] : src;
            int64_t k = moved[i] ? b++ : a++;
            memcpy(d->images + k * ib, old.images + i * ib, (size_t)ib);
            d->labels[k] = old.labels[i];
        }
    }
    free(old.images);
    free(old.labels);
    free(moved);
    return s;
}

TdStatus task_make_val(TaskData *t, uint64_t seed)
{
    return task_carve(t, TASK_TRAIN, TASK_VAL, task_val_count(t->split[TASK_TRAIN].n), seed,
                      0x76616c /* "val" */);
}

TdStatus task_validate(const TaskData *t, const char *what)
{
    int64_t *count;
    TD_ALLOC(count, t->num_classes);
    TdStatus s = TD_OK;
    for (int sp = 0; sp < TASK_NSPLITS && s == TD_OK; sp++) {
        const TaskSplit *p = &t->split[sp];
        for (int64_t i = 0; i < p->n; i++) {
            int32_t y = p->labels[i];
            if (y < 0 || y >= t->num_classes) {
                s = td_fail(TD_ERR_FORMAT, "%s: %s record %lld: label %d out of range [0, %d)",
                            what, k_task_split_names[sp], (long long)i, (int)y, t->num_classes);
                break;
            }
            if (sp == TASK_TRAIN)
                count[y]++;
        }
    }
    for (int k = 0; k < t->num_classes && s == TD_OK && !t->captions; k++)
        if (count[k] == 0)
            s = td_fail(TD_ERR_FORMAT, "%s: class %d ('%s') has no train images", what, k,
                        t->classes[k]);
    if (s == TD_OK && (t->split[TASK_TRAIN].n == 0 || t->split[TASK_TEST].n == 0))
        s = td_fail(TD_ERR_FORMAT, "%s: the train and test splits must not be empty", what);
    free(count);
    return s;
}

void task_checksum(const TaskData *t, char out[40])
{
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_128bits_reset(&st);
    for (int sp = 0; sp < TASK_NSPLITS; sp++) {
        const TaskSplit *p = &t->split[sp];
        uint64_t n = (uint64_t)p->n;
        XXH3_128bits_update(&st, &n, sizeof n);
        if (p->n > 0) {
            XXH3_128bits_update(&st, p->images, (size_t)(p->n * task_image_bytes(t)));
            XXH3_128bits_update(&st, p->labels, (size_t)p->n * sizeof *p->labels);
        }
    }
    for (int k = 0; k < t->num_classes; k++) /* each name with its NUL */
        XXH3_128bits_update(&st, t->classes[k], strnlen(t->classes[k], TASK_CLASS_LEN - 1) + 1);
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    snprintf(out, 40, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
}

/* ---- HDF5 helpers: every call checked, errors name the file and object ---- */

#define H5CHK(expr, ...)                                  \
    do {                                                  \
        if ((expr) < 0) {                                 \
            s = td_fail(TD_ERR_HDF5, __VA_ARGS__);        \
            goto done;                                    \
        }                                                 \
    } while (0)

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static void h5_close(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0)
        fn(*id);
    *id = -1;
}

static TdStatus write_split(hid_t file, const TaskData *t, int sp, const char *path)
{
    TdStatus s = TD_OK;
    const TaskSplit *p = &t->split[sp];
    const char *nm = k_task_split_names[sp];
    hid_t g = -1, space = -1, dcpl = -1, d = -1;
    hsize_t dims[4] = {(hsize_t)p->n, (hsize_t)t->height, (hsize_t)t->width,
                       (hsize_t)t->channels};
    H5CHK(g = H5Gcreate2(file, nm, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "%s: cannot create /%s",
          path, nm);
    H5CHK(space = H5Screate_simple(4, dims, NULL), "%s: /%s/images dataspace", path, nm);
    /* contiguous and uncompressed: a loader reads scattered single images, and
     * per-image chunks cost about 40x more per read (measured) */
    H5CHK(dcpl = H5Pcreate(H5P_DATASET_CREATE), "%s: property list", path);
    H5CHK(H5Pset_layout(dcpl, H5D_CONTIGUOUS), "%s: /%s/images layout", path, nm);
    H5CHK(d = H5Dcreate2(g, "images", H5T_NATIVE_UINT8, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
          "%s: cannot create /%s/images", path, nm);
    if (p->n > 0)
        H5CHK(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->images),
              "%s: cannot write /%s/images", path, nm);
    h5_close(&d, H5Dclose);
    h5_close(&space, H5Sclose);
    H5CHK(space = H5Screate_simple(1, dims, NULL), "%s: /%s/labels dataspace", path, nm);
    H5CHK(d = H5Dcreate2(g, "labels", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
          "%s: cannot create /%s/labels", path, nm);
    if (p->n > 0)
        H5CHK(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->labels),
              "%s: cannot write /%s/labels", path, nm);
done:
    h5_close(&d, H5Dclose);
    h5_close(&dcpl, H5Pclose);
    h5_close(&space, H5Sclose);
    h5_close(&g, H5Gclose);
    return s;
}

static TdStatus write_classes(hid_t file, const TaskData *t, const char *path)
{
    TdStatus s = TD_OK;
    hid_t st = -1, space = -1, d = -1;
    hsize_t n = (hsize_t)t->num_classes;
    size_t len = 1; /* the longest name and its NUL */
    for (int k = 0; k < t->num_classes; k++)
        len = strlen(t->classes[k]) + 1 > len ? strlen(t->classes[k]) + 1 : len;
    char *buf = calloc((size_t)t->num_classes, len);
    if (!buf)
        return td_fail(TD_ERR_NOMEM, "out of memory writing %s", path);
    for (int k = 0; k < t->num_classes; k++)
        memcpy(buf + k * len, t->classes[k], strlen(t->classes[k]));
    H5CHK(st = H5Tcopy(H5T_C_S1), "%s: string type", path);
    H5CHK(H5Tset_size(st, len), "%s: string type", path);
    H5CHK(H5Tset_strpad(st, H5T_STR_NULLTERM), "%s: string type", path);
    H5CHK(space = H5Screate_simple(1, &n, NULL), "%s: /classes dataspace", path);
    H5CHK(d = H5Dcreate2(file, "classes", st, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
          "%s: cannot create /classes", path);
    H5CHK(H5Dwrite(d, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "%s: cannot write /classes", path);
done:
    free(buf);
    h5_close(&d, H5Dclose);
    h5_close(&space, H5Sclose);
    h5_close(&st, H5Tclose);
    return s;
}

static TdStatus write_file(hid_t f, const TaskData *t, const char *path)
{
    int32_t hwck[4] = {t->height, t->width, t->channels, t->num_classes};
    static const char *hwck_names[4] = {"height", "width", "channels", "num_classes"};
    TD_TRY(h5u_attr_write_str(f, path, "format", k_format));
    TD_TRY(h5u_attr_write_str(f, path, "name", t->name));
    TD_TRY(h5u_attr_write_str(f, path, "source", t->source));
    TD_TRY(h5u_attr_write(f, path, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &t->seed));
    for (int i = 0; i < 4; i++)
        TD_TRY(h5u_attr_write(f, path, hwck_names[i], H5T_STD_I32LE, H5T_NATIVE_INT32,
                              &hwck[i]));
    if (t->captions) {
        int32_t one = 1;
        TD_TRY(h5u_attr_write(f, path, "captions", H5T_STD_I32LE, H5T_NATIVE_INT32, &one));
    }
    TD_TRY(write_classes(f, t, path));
    char sum[40];
    task_checksum(t, sum);
    TD_TRY(h5u_attr_write_str(f, path, "checksum", sum));
    for (int sp = 0; sp < TASK_NSPLITS; sp++)
        TD_TRY(write_split(f, t, sp, path));
    return TD_OK;
}

TdStatus task_write(const char *path, const TaskData *t)
{
    TD_TRY(task_validate(t, path));
    h5_quiet();
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    hid_t fcpl = h5u_sealed_fcpl();
    hid_t f = fcpl >= 0 ? H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT) : -1;
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (f < 0)
        return td_fail(TD_ERR_IO, "%s: cannot create (directory missing or not writable?)", tmp);
    TdStatus s = write_file(f, t, path);
    if (H5Fclose(f) < 0 && s == TD_OK)
        s = td_fail(TD_ERR_HDF5, "%s: cannot close", tmp);
    if (s == TD_OK)
        s = h5u_seal(tmp);
    if (s == TD_OK && rename(tmp, path) != 0)
        s = td_fail(TD_ERR_IO, "%s: cannot rename to %s", tmp, path);
    if (s != TD_OK)
        unlink(tmp);
    return s;
}

/* ---- reading ---- */

static TdStatus read_classes(hid_t f, TaskData *t, const char *path)
{
    TdStatus s = TD_OK;
    hid_t d = -1, ft = -1, space = -1, mt = -1;
    char *buf = NULL;
    H5CHK(d = H5Dopen2(f, "classes", H5P_DEFAULT), "%s: missing /classes", path);
    H5CHK(ft = H5Dget_type(d), "%s: /classes type", path);
    H5CHK(space = H5Dget_space(d), "%s: /classes dataspace", path);
    if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) ||
        H5Sget_simple_extent_npoints(space) != t->num_classes) {
        s = td_fail(TD_ERR_FORMAT, "%s: /classes must hold %d fixed-length strings", path,
                    t->num_classes);
        goto done;
    }
    size_t len = H5Tget_size(ft);
    buf = calloc((size_t)t->num_classes, len + 1);
    if (!buf) {
        s = td_fail(TD_ERR_NOMEM, "out of memory");
        goto done;
    }
    H5CHK(mt = H5Tcopy(ft), "%s: /classes type", path);
    H5CHK(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "%s: cannot read /classes", path);
    for (int k = 0; k < t->num_classes; k++) {
        size_t n = strnlen(buf + k * len, len);
        if (n >= TASK_CLASS_LEN)
            n = TASK_CLASS_LEN - 1;
        memcpy(t->classes[k], buf + k * len, n);
        t->classes[k][n] = '\0';
    }
done:
    free(buf);
    h5_close(&mt, H5Tclose);
    h5_close(&space, H5Sclose);
    h5_close(&ft, H5Tclose);
    h5_close(&d, H5Dclose);
    return s;
}

/* Opens /<split>/images and /<split>/labels, checks their shapes against the
 * header and returns the count; reads the data when want_data. */
static TdStatus read_split(hid_t f, TaskData *t, int sp, int want_data, const char *path)
{
    TdStatus s = TD_OK;
    const char *nm = k_task_split_names[sp];
    char dn[64];
    hid_t di = -1, dl = -1, si = -1, sl = -1;
    hsize_t dims[4] = {0}, ldim = 0;
    snprintf(dn, sizeof dn, "%s/images", nm);
    H5CHK(di = H5Dopen2(f, dn, H5P_DEFAULT), "%s: missing /%s", path, dn);
    H5CHK(si = H5Dget_space(di), "%s: /%s dataspace", path, dn);
    if (H5Sget_simple_extent_ndims(si) != 4 || H5Sget_simple_extent_dims(si, dims, NULL) < 0 ||
        dims[1] != (hsize_t)t->height || dims[2] != (hsize_t)t->width ||
        dims[3] != (hsize_t)t->channels) {
        s = td_fail(TD_ERR_FORMAT, "%s: /%s must be uint8 [N,%d,%d,%d]", path, dn, t->height,
                    t->width, t->channels);
        goto done;
    }
    snprintf(dn, sizeof dn, "%s/labels", nm);
    H5CHK(dl = H5Dopen2(f, dn, H5P_DEFAULT), "%s: missing /%s", path, dn);
    H5CHK(sl = H5Dget_space(dl), "%s: /%s dataspace", path, dn);
    if (H5Sget_simple_extent_ndims(sl) != 1 || H5Sget_simple_extent_dims(sl, &ldim, NULL) < 0 ||
        ldim != dims[0]) {
        s = td_fail(TD_ERR_FORMAT, "%s: /%s has %llu labels for %llu images", path, dn,
                    (unsigned long long)ldim, (unsigned long long)dims[0]);
        goto done;
    }
    t->split[sp].n = (int64_t)dims[0];
    if (want_data) {
        if ((s = task_split_alloc(t, sp, (int64_t)dims[0])) != TD_OK)
            goto done;
        if (dims[0] > 0) {
            H5CHK(H5Dread(di, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                          t->split[sp].images),
                  "%s: cannot read /%s/images (file truncated or corrupt?)", path, nm);
            H5CHK(H5Dread(dl, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                          t->split[sp].labels),
                  "%s: cannot read /%s/labels (file truncated or corrupt?)", path, nm);
        }
    }
done:
    h5_close(&sl, H5Sclose);
    h5_close(&si, H5Sclose);
    h5_close(&dl, H5Dclose);
    h5_close(&di, H5Dclose);
    return s;
}

static TdStatus read_file(hid_t f, TaskData *t, int want_data, const char *path)
{
    TD_TRY(h5u_check_format(f, path, k_format, "tadist task file"));
    char name[TASK_NAME_LEN], source[TASK_SOURCE_LEN];
    uint64_t seed;
    int32_t v[4];
    static const char *names[4] = {"height", "width", "channels", "num_classes"};
    TD_TRY(h5u_attr_read_str(f, path, "name", name, sizeof name));
    TD_TRY(h5u_attr_read_str(f, path, "source", source, sizeof source));
    TD_TRY(h5u_attr_read(f, path, "seed", H5T_NATIVE_UINT64, &seed));
    for (int i = 0; i < 4; i++)
        TD_TRY(h5u_attr_read(f, path, names[i], H5T_NATIVE_INT32, &v[i]));
    TdStatus s = task_init(t, name, source, seed, v[0], v[1], v[2], v[3]);
    if (s != TD_OK)
        return td_fail(TD_ERR_FORMAT, "%s: bad header", path);
    if (h5u_attr_exists(f, "captions")) {
        int32_t c = 0;
        TD_TRY(h5u_attr_read(f, path, "captions", H5T_NATIVE_INT32, &c));
        t->captions = c != 0;
    }
    TD_TRY(read_classes(f, t, path));
    for (int sp = 0; sp < TASK_NSPLITS; sp++)
        TD_TRY(read_split(f, t, sp, want_data, path));
    if (!want_data)
        return TD_OK;
    /* the values' checksum, when the file has one (files before it do not) */
    if (h5u_attr_exists(f, "checksum")) {
        char stored[40], got[40];
        TD_TRY(h5u_attr_read_str(f, path, "checksum", stored, sizeof stored));
        task_checksum(t, got);
        if (strcmp(stored, got) != 0)
            return td_fail(TD_ERR_FORMAT,
                           "%s: checksum mismatch: the file says %s, its images, labels and "
                           "class names hash to %s (corrupted or edited)",
                           path, stored, got);
    }
    return task_validate(t, path);
}

static TdStatus read_any(const char *path, TaskData *t, int want_data)
{
    memset(t, 0, sizeof *t);
    h5_quiet();
    if (access(path, R_OK) != 0)
        return td_fail(TD_ERR_IO,
                       "%s: cannot read task file: %s (task files are made by `tadist data`, "
                       "and docs/TASK_DATA.md says how to convert data sets, the paper's eight "
                       "included)",
                       path, strerror(errno));
    /* superblock, size and seal, before libhdf5 parses a byte (h5util.h) */
    TD_TRY(h5u_check_file(path));
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return td_fail(TD_ERR_FORMAT, "%s: not a readable HDF5 file (truncated or corrupt?)", path);
    TdStatus s = read_file(f, t, want_data, path);
    H5Fclose(f);
    if (s != TD_OK)
        task_free(t);
    return s;
}

TdStatus task_read(const char *path, TaskData *t) { return read_any(path, t, 1); }
TdStatus task_read_header(const char *path, TaskData *t) { return read_any(path, t, 0); }

void task_print_summary_header(void)
{
    printf("%-16s %7s %8s %6s %6s  %-8s  %s\n", "task", "classes", "train", "val", "test", "HxWxC",
           "source");
}

void task_print_summary(const TaskData *t)
{
    char shape[32];
    snprintf(shape, sizeof shape, "%dx%dx%d", t->height, t->width, t->channels);
    printf("%-16s %7d %8lld %6lld %6lld  %-8s  %.60s\n", t->name, t->num_classes,
           (long long)t->split[TASK_TRAIN].n, (long long)t->split[TASK_VAL].n,
           (long long)t->split[TASK_TEST].n, shape, t->source);
}
