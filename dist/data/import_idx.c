/* IDX files (MNIST, Fashion-MNIST), plain or gzipped: zlib's gzread reads both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "task_import.h"

void idx_free(IdxArray *a)
{
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* A gzip stream gzread could not finish: the trailer's CRC or length does
 * not match, the file is cut, or the deflate data is damaged. zlib's own
 * message ("incorrect data check") is kept in brackets, without the path
 * that gzerror puts in front of it. */
static TdStatus gz_corrupt(gzFile g, const char *path)
{
    int errnum;
    const char *msg = gzerror(g, &errnum);
    size_t len = strlen(path);
    if (msg && strncmp(msg, path, len) == 0 && strncmp(msg + len, ": ", 2) == 0)
        msg += len + 2;
    if (!msg || !*msg)
        msg = "unexpected end of file";
    const char *what = strstr(msg, "data check")     ? "CRC mismatch"
                       : strstr(msg, "length check") ? "length mismatch"
                       : strstr(msg, "end of file")  ? "truncated file"
                                                     : "damaged data";
    return td_fail(TD_ERR_FORMAT, "%s: corrupt gzip stream: %s (%s)", path, what, msg);
}

/* Reads exactly n bytes into buf (a header field: small, fixed size). */
static TdStatus gz_exact(gzFile g, void *buf, int n, const char *path, const char *what)
{
    int r = gzread(g, buf, (unsigned)n);
    if (r < 0)
        return gz_corrupt(g, path);
    if (r < n)
        return td_fail(TD_ERR_FORMAT, "%s: truncated %s (%d of %d bytes)", path, what, r, n);
    return TD_OK;
}

/* "truncated" with the record the data ends in, for both plain and gzipped files. */
static TdStatus data_truncated(const IdxArray *a, const char *path, int64_t got, int64_t n)
{
    return td_fail(TD_ERR_FORMAT,
                   "%s: truncated: data ends in record %lld of %lld (%lld of %lld bytes)", path,
                   (long long)(got / a->record), (long long)a->count, (long long)got,
                   (long long)n);
}

/* Reads the n data bytes the header claims. The buffer grows with what the
 * stream really holds (doubling from 1 MiB), so a gzipped header claiming
 * terabytes costs no more memory than its real contents before it is found
 * truncated; plain files were checked against their size already. */
static TdStatus read_data(gzFile g, const char *path, IdxArray *a, int64_t n)
{
    int64_t cap = n < (1 << 20) ? n : (1 << 20), got = 0;
    TD_ALLOC(a->data, cap > 0 ? cap : 1);
    for (;;) {
        while (got < cap) {
            int64_t want = cap - got > (1 << 30) ? (1 << 30) : cap - got;
            int r = gzread(g, a->data + got, (unsigned)want);
            if (r < 0)
                return gz_corrupt(g, path);
            if (r == 0)
                break;
            got += r;
        }
        if (got < cap || cap == n)
            break;
        int64_t grown = cap > n / 2 ? n : 2 * cap;
        uint8_t *p = realloc(a->data, (size_t)grown);
        if (!p)
            return td_fail(TD_ERR_NOMEM, "%s: out of memory reading %lld bytes of IDX data", path,
                           (long long)grown);
        a->data = p;
        cap = grown;
    }
    if (got < n) {
        int errnum;
        gzerror(g, &errnum);
        if (errnum != Z_OK) /* the gzip stream itself ended early */
            return gz_corrupt(g, path);
        return data_truncated(a, path, got, n);
    }
    return TD_OK;
}

static TdStatus idx_read_open(gzFile g, const char *path, IdxArray *a)
{
    unsigned char hdr[4];
    TD_TRY(gz_exact(g, hdr, 4, path, "header"));
    if (hdr[0] != 0 || hdr[1] != 0)
        return td_fail(TD_ERR_FORMAT, "%s: not an IDX file (magic %02x %02x %02x %02x)", path,
                       hdr[0], hdr[1], hdr[2], hdr[3]);
    a->type = hdr[2];
    a->esize = a->type == 0x08 ? 1 : a->type == 0x0B ? 2 : a->type == 0x0C ? 4 : 0;
    if (!a->esize)
        return td_fail(TD_ERR_FORMAT, "%s: IDX element type 0x%02x; supported: uint8 (0x08), "
                       "int16 (0x0B), int32 (0x0C)", path, hdr[2]);
    a->ndim = hdr[3];
    if (a->ndim < 1 || a->ndim > 4)
        return td_fail(TD_ERR_FORMAT, "%s: IDX with %d dimensions (1 to 4 supported)", path,
                       a->ndim);
    unsigned char d[16];
    TD_TRY(gz_exact(g, d, 4 * a->ndim, path, "dimensions"));
    a->record = a->esize;
    for (int i = 0; i < a->ndim; i++) {
        uint32_t v = (uint32_t)d[4 * i] << 24 | (uint32_t)d[4 * i + 1] << 16 |
                     (uint32_t)d[4 * i + 2] << 8 | d[4 * i + 3];
        if (v > (1u << 28) || (i > 0 && (v == 0 || v > 65536)))
            return td_fail(TD_ERR_FORMAT, "%s: implausible IDX dimension %d = %u", path, i, v);
        a->dims[i] = (int)v;
        if (i > 0)
            a->record *= v; /* at most 4 * 65536^3 = 2^50: no overflow */
    }
    a->count = a->dims[0];
    /* count (up to 2^28) times record (up to 2^50) can overflow int64 */
    int64_t n;
    if (__builtin_mul_overflow(a->count, a->record, &n))
        return td_fail(TD_ERR_FORMAT, "%s: IDX header claims %lld records of %lld bytes: more "
                       "than any file holds", path, (long long)a->count, (long long)a->record);
    /* A plain file's size is known: a header claiming more (or less) than the
     * file holds is an error before anything is allocated. gzdirect is valid
     * after the first read. */
    struct stat st;
    if (gzdirect(g) && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        int64_t have = (int64_t)st.st_size - (4 + 4 * a->ndim);
        if (have < n)
            return data_truncated(a, path, have, n);
        if (have > n)
            return td_fail(TD_ERR_FORMAT, "%s: trailing bytes after %lld records", path,
                           (long long)a->count);
    }
    TD_TRY(read_data(g, path, a, n));
    unsigned char extra;
    int r = gzread(g, &extra, 1); /* also makes zlib check the gzip trailer (CRC, length) */
    if (r > 0)
        return td_fail(TD_ERR_FORMAT, "%s: trailing bytes after %lld records", path,
                       (long long)a->count);
    int errnum;
    gzerror(g, &errnum);
    if (r < 0 || errnum != Z_OK) /* Z_BUF_ERROR: the stream ended inside the trailer */
        return gz_corrupt(g, path);
    return TD_OK;
}

TdStatus idx_read(const char *path, IdxArray *a)
{
    memset(a, 0, sizeof *a);
    gzFile g = gzopen(path, "rb");
    if (!g)
        return td_fail(TD_ERR_IO, "%s: cannot open IDX file", path);
    TdStatus s = idx_read_open(g, path, a);
    gzclose(g); /* its only error (a cut stream) was checked in idx_read_open */
    if (s != TD_OK)
        idx_free(a);
    return s;
}

int64_t idx_value(const IdxArray *a, int64_t i)
{
    const uint8_t *p = a->data + i * a->esize;
    if (a->esize == 1)
        return p[0];
    if (a->esize == 2)
        return (int16_t)(p[0] << 8 | p[1]);
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

/* Reads one images/labels pair and checks that they fit together. */
static TdStatus read_pair(const char *ipath, const char *lpath, IdxArray *im, IdxArray *lb)
{
    TD_TRY(idx_read(ipath, im));
    TD_TRY(idx_read(lpath, lb));
    if (im->type != 0x08)
        return td_fail(TD_ERR_FORMAT, "%s: images must be unsigned bytes (IDX type 0x08)", ipath);
    if (im->ndim < 3)
        return td_fail(TD_ERR_FORMAT, "%s: images need [N,H,W] or [N,H,W,C], got %d dimensions",
                       ipath, im->ndim);
    if (im->ndim == 4 && im->dims[3] != 1 && im->dims[3] != 3)
        return td_fail(TD_ERR_FORMAT, "%s: %d channels (1 or 3 supported)", ipath, im->dims[3]);
    if (lb->ndim != 1)
        return td_fail(TD_ERR_FORMAT, "%s: labels need one dimension, got %d", lpath, lb->ndim);
    if (lb->count != im->count)
        return td_fail(TD_ERR_FORMAT, "%s: %lld labels for %lld images in %s", lpath,
                       (long long)lb->count, (long long)im->count, ipath);
    return TD_OK;
}

static TdStatus fill_split(TaskData *t, int sp, const IdxArray *im, const IdxArray *lb,
                           const char *ipath, const char *lpath, int check_k)
{
    int C = im->ndim == 4 ? im->dims[3] : 1;
    if (im->dims[1] != t->height || im->dims[2] != t->width || C != t->channels)
        return td_fail(TD_ERR_FORMAT, "%s: images are %dx%dx%d, the train images %dx%dx%d", ipath,
                       im->dims[1], im->dims[2], C, t->height, t->width, t->channels);
    for (int64_t i = 0; i < lb->count; i++) {
        int64_t y = idx_value(lb, i);
        if (y < 0 || (check_k && y >= t->num_classes))
            return td_fail(TD_ERR_FORMAT, "%s: record %lld: label %lld out of range [0, %d)", lpath,
                           (long long)i, (long long)y, t->num_classes);
    }
    TD_TRY(task_split_alloc(t, sp, im->count));
    memcpy(t->split[sp].images, im->data, (size_t)(im->count * im->record));
    for (int64_t i = 0; i < lb->count; i++)
        t->split[sp].labels[i] = (int32_t)idx_value(lb, i);
    return TD_OK;
}

static TdStatus import_idx_arrays(TaskData *t, IdxArray a[4], const char *paths[4],
                                  const ImportOpts *o)
{
    TD_TRY(read_pair(paths[0], paths[1], &a[0], &a[1]));
    TD_TRY(read_pair(paths[2], paths[3], &a[2], &a[3]));
    int K = import_count_classes(o->classes), check_k = K > 0;
    if (!check_k)
        for (int j = 1; j < 4; j += 2)
            for (int64_t i = 0; i < a[j].count; i++) {
                int64_t y = idx_value(&a[j], i);
                if (y < 0 || y >= TASK_MAX_CLASSES)
                    return td_fail(TD_ERR_FORMAT, "%s: record %lld: label %lld out of range "
                                   "[0, %d)", paths[j], (long long)i, (long long)y,
                                   TASK_MAX_CLASSES);
                K = (int)y + 1 > K ? (int)y + 1 : K;
            }
    char source[TASK_SOURCE_LEN];
    import_fmt(source, sizeof source, "IDX %s, %s", paths[0], paths[2]);
    TD_TRY(task_init(t, o->name, source, o->seed, a[0].dims[1], a[0].dims[2],
                     a[0].ndim == 4 ? a[0].dims[3] : 1, K < 2 ? 2 : K));
    if (check_k)
        TD_TRY(import_set_classes(t, o->classes, "--classes"));
    TD_TRY(fill_split(t, TASK_TRAIN, &a[0], &a[1], paths[0], paths[1], check_k));
    TD_TRY(fill_split(t, TASK_TEST, &a[2], &a[3], paths[2], paths[3], check_k));
    for (int k = 0; k < t->num_classes; k++) { /* an empty class names the labels file */
        int64_t c = 0;
        for (int64_t i = 0; i < t->split[TASK_TRAIN].n; i++)
            c += t->split[TASK_TRAIN].labels[i] == k;
        if (c == 0)
            return td_fail(TD_ERR_FORMAT, "%s: class %d ('%s') has no images (empty class)",
                           paths[1], k, t->classes[k]);
    }
    return import_finish(t, 1, o);
}

TdStatus import_idx(TaskData *t, const char *train_images, const char *train_labels,
                    const char *test_images, const char *test_labels, const ImportOpts *o)
{
    memset(t, 0, sizeof *t);
    IdxArray a[4] = {{0}};
    const char *paths[4] = {train_images, train_labels, test_images, test_labels};
    TdStatus s = import_idx_arrays(t, a, paths, o);
    for (int i = 0; i < 4; i++)
        idx_free(&a[i]);
    if (s != TD_OK)
        task_free(t);
    return s;
}
