#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The format's own limit on the header (safetensors refuses more than 100 MB). */
#define ST_HEADER_MAX ((uint64_t)100 * 1000 * 1000)

typedef struct {
    const char *name;
    int size;
} StDtype;

/* Every dtype of the format with a whole-byte element; the rest are unknown. */
static const StDtype k_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8},
};

static int dtype_size(const char *name)
{
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (strcmp(k_dtypes[i].name, name) == 0)
            return k_dtypes[i].size;
    return 0;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_uint(const cJSON *j, uint64_t *v)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0) || d != floor(d))
        return 0;
    *v = (uint64_t)d;
    return 1;
}

static TdStatus parse_entry(const StFile *f, const cJSON *e, StTensor *t)
{
    const char *p = f->path, *n = e->string;
    for (const char *c = n; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return td_fail(TD_ERR_FORMAT, "%s: a tensor name contains control characters", p);
    if (!cJSON_IsObject(e))
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", p, n);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return td_fail(TD_ERR_FORMAT,
                       "%s: tensor '%s': needs a string dtype and arrays shape and data_offsets",
                       p, n);
    t->elem_size = dtype_size(dt->valuestring);
    if (!t->elem_size)
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.32s'", p, n,
                       dt->valuestring);
    snprintf(t->dtype, sizeof t->dtype, "%s", dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s': %d dimensions (at most %d)", p, n, nd,
                       ST_MAX_DIMS);
    t->ndim = nd;
    t->numel = 1;
    int k = 0;
    for (const cJSON *d = sh->child; d; d = d->next, k++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return td_fail(TD_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a size", p, n, k);
        t->shape[k] = (int64_t)v;
        if (__builtin_mul_overflow(t->numel, (size_t)v, &t->numel))
            return td_fail(TD_ERR_FORMAT, "%s: tensor '%s': shape overflows", p, n);
    }
    uint64_t b, en;
    if (cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &b) ||
        !json_uint(off->child->next, &en))
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s': data_offsets must be two sizes", p, n);
    if (b > en || en > f->data_size)
        return td_fail(TD_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] outside the data area "
                       "(%zu bytes)",
                       p, n, (unsigned long long)b, (unsigned long long)en, f->data_size);
    size_t bytes;
    if (__builtin_mul_overflow(t->numel, (size_t)t->elem_size, &bytes) || bytes != en - b)
        return td_fail(TD_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but shape "
                       "and dtype %s need %zu x %d",
                       p, n, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)(en - b), t->dtype, t->numel, t->elem_size);
    t->begin = (size_t)b;
    t->end = (size_t)en;
    t->name = strdup(n);
    if (!t->name)
        return td_fail(TD_ERR_NOMEM, "%s: out of memory", p);
    return TD_OK;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

static TdStatus check_duplicates(const StFile *f)
{
    if (f->count < 2)
        return TD_OK;
    const StTensor **sorted;
    TD_ALLOC(sorted, f->count);
    for (int i = 0; i < f->count; i++)
        sorted[i] = &f->tensors[i];
    qsort(sorted, (size_t)f->count, sizeof *sorted, cmp_tensor_name);
    TdStatus s = TD_OK;
    for (int i = 1; i < f->count && s == TD_OK; i++)
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
            s = td_fail(TD_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", f->path,
                        sorted[i]->name);
    free((void *)sorted);
    return s;
}

static TdStatus parse_header(StFile *f, const char *json, size_t len)
{
    if (memchr(json, '\0', len))
        return td_fail(TD_ERR_FORMAT, "%s: safetensors header contains a NUL byte", f->path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root)
        return td_fail(TD_ERR_FORMAT, "%s: safetensors header is not valid JSON (at byte %ld)",
                       f->path, end ? (long)(end - json) + 8 : -1L);
    TdStatus s = TD_OK;
    for (const char *q = end; q < json + len && s == TD_OK; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
            s = td_fail(TD_ERR_FORMAT, "%s: safetensors header has trailing bytes after the JSON",
                        f->path);
    if (s == TD_OK && !cJSON_IsObject(root))
        s = td_fail(TD_ERR_FORMAT, "%s: safetensors header is not a JSON object", f->path);
    int n = 0;
    if (s == TD_OK)
        for (const cJSON *e = root->child; e; e = e->next)
            n += strcmp(e->string, "__metadata__") != 0;
    if (s == TD_OK) {
        f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
        if (!f->tensors)
            s = td_fail(TD_ERR_NOMEM, "%s: out of memory for %d tensors", f->path, n);
    }
    for (const cJSON *e = s == TD_OK ? root->child : NULL; e && s == TD_OK; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0)
            continue;
        s = parse_entry(f, e, &f->tensors[f->count]);
        if (s == TD_OK)
            f->count++;
    }
    cJSON_Delete(root);
    if (s == TD_OK)
        s = check_duplicates(f);
    return s;
}

static TdStatus map_file(const char *path, StFile *f)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    TdStatus s = TD_OK;
    if (fstat(fd, &st) != 0)
        s = td_fail(TD_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = td_fail(TD_ERR_IO, "%s: not a regular file", path);
    else if (st.st_size < 8)
        s = td_fail(TD_ERR_FORMAT, "%s: %lld bytes is too short for a safetensors file", path,
                    (long long)st.st_size);
    if (s == TD_OK) {
        f->map_size = (size_t)st.st_size;
        f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            s = td_fail(TD_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        }
    }
    close(fd);
    return s;
}

TdStatus st_open(const char *path, StFile *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    TdStatus s = map_file(path, f);
    if (s != TD_OK)
        return s;
    const unsigned char *b = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    if (hlen > ST_HEADER_MAX || hlen > f->map_size - 8)
        s = td_fail(TD_ERR_FORMAT,
                    "%s: header length %llu runs past the end of the file (%zu bytes; truncated "
                    "or not safetensors)",
                    path, (unsigned long long)hlen, f->map_size);
    if (s == TD_OK) {
        f->data = b + 8 + hlen;
        f->data_size = f->map_size - 8 - (size_t)hlen;
        s = parse_header(f, (const char *)b + 8, (size_t)hlen);
    }
    if (s != TD_OK)
        st_close(f);
    return s;
}

void st_close(StFile *f)
{
    for (int i = 0; i < f->count; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    if (f->map)
        munmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

static float bits_to_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

float st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf, or NaN with its payload kept */
        return bits_to_f32(sign | 0x7f800000u | mant << 13);
    if (exp == 0) {
        if (mant == 0)
            return bits_to_f32(sign);
        /* subnormal mant * 2^-24: renormalise into a float32 normal */
        int shift = 0;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            shift++;
        }
        return bits_to_f32(sign | (uint32_t)(113 - shift) << 23 | (mant & 0x3ffu) << 13);
    }
    return bits_to_f32(sign | (exp + 112) << 23 | mant << 13);
}

float st_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

TdStatus st_read_f32(const StFile *f, const StTensor *t, float *out)
{
    const unsigned char *p = f->data + t->begin;
    /* bytes are decoded explicitly: the data area need not be aligned */
    if (strcmp(t->dtype, "F32") == 0) {
        for (size_t i = 0; i < t->numel; i++, p += 4)
            out[i] = bits_to_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                 (uint32_t)p[3] << 24);
    } else if (strcmp(t->dtype, "F16") == 0) {
        for (size_t i = 0; i < t->numel; i++, p += 2)
            out[i] = st_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    } else if (strcmp(t->dtype, "BF16") == 0) {
        for (size_t i = 0; i < t->numel; i++, p += 2)
            out[i] = st_bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
    } else {
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16)",
                       f->path, t->name, t->dtype);
    }
    return TD_OK;
}
