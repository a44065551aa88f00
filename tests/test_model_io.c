/* dist/model_io and `tadist import` / `tadist init`.
 *
 * Expected values come from the fixtures' safetensors bytes, read here by a
 * minimal parser of this test's own (cJSON for the header, raw little-endian
 * floats), and from an HF -> open_clip name map written out again below, so a
 * mistake in the importer's reader or in hf_names.c cannot hide itself. */
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>

#include "h5util.h"
#include "model_io.h"

/* ---- small helpers ---------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    assert_int_equal(fread(b, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    b[len] = 0;
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Count of entries in dir whose name starts with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static char g_out[4096], g_err[4096];

/* Runs the tadist binary (a singleton MPI run); stdout/stderr into g_out/g_err. */
static int run_tadist(const char *args)
{
    char cmd[8192], o[600], e[600];
    snprintf(o, sizeof o, "%s/mio_run_%d.out", TADIST_TEST_OUT, (int)getpid());
    snprintf(e, sizeof e, "%s/mio_run_%d.err", TADIST_TEST_OUT, (int)getpid());
    snprintf(cmd, sizeof cmd, "TADIST_QUIET=1 '%s' %s >'%s' 2>'%s'", TADIST_BIN, args, o, e);
    int rc = system(cmd);
    size_t n;
    unsigned char *b = slurp(o, &n);
    snprintf(g_out, sizeof g_out, "%s", (char *)b);
    free(b);
    b = slurp(e, &n);
    snprintf(g_err, sizeof g_err, "%s", (char *)b);
    free(b);
    remove(o);
    remove(e);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 256;
}

/* ---- an independent reading of a safetensors file ---------------------- */

typedef struct {
    unsigned char *bytes;
    size_t size;
    cJSON *header;
    const unsigned char *data;
} RefSt;

static void ref_open(RefSt *r, const char *path)
{
    r->bytes = slurp(path, &r->size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | r->bytes[i];
    assert_true(hl + 8 <= r->size);
    r->header = cJSON_ParseWithLength((const char *)r->bytes + 8, (size_t)hl);
    assert_non_null(r->header);
    r->data = r->bytes + 8 + hl;
}

static void ref_close(RefSt *r)
{
    cJSON_Delete(r->header);
    free(r->bytes);
}

/* The float32 values of an F32 tensor, and its element count. */
static float *ref_tensor(const RefSt *r, const char *name, size_t *numel)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->header, name);
    if (!e)
        fail_msg("fixture lacks %s", name);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "dtype")->valuestring, "F32");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
    size_t en = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    *numel = (en - b) / 4;
    float *x = malloc((*numel ? *numel : 1) * sizeof *x);
    memcpy(x, r->data + b, *numel * 4); /* the host is little-endian, as the file */
    return x;
}

/* HF name(s) for open_clip tensor `name`: mode 0 copy, 1 stack q,k,v, 2 transpose. */
static int hf_source(const char *name, char hf[3][160], int *mode)
{
    static const char *const one[][2] = {
        {"conv1.weight", "vision_model.embeddings.patch_embedding.weight"},
        {"class_embedding", "vision_model.embeddings.class_embedding"},
        {"positional_embedding", "vision_model.embeddings.position_embedding.weight"},
        {"ln_pre.weight", "vision_model.pre_layrnorm.weight"},
        {"ln_pre.bias", "vision_model.pre_layrnorm.bias"},
        {"ln_post.weight", "vision_model.post_layernorm.weight"},
        {"ln_post.bias", "vision_model.post_layernorm.bias"}};
    static const char *const blk[][2] = {
        {"ln_1.weight", "layer_norm1.weight"},          {"ln_1.bias", "layer_norm1.bias"},
        {"attn.out_proj.weight", "self_attn.out_proj.weight"},
        {"attn.out_proj.bias", "self_attn.out_proj.bias"},
        {"ln_2.weight", "layer_norm2.weight"},          {"ln_2.bias", "layer_norm2.bias"},
        {"mlp.c_fc.weight", "mlp.fc1.weight"},          {"mlp.c_fc.bias", "mlp.fc1.bias"},
        {"mlp.c_proj.weight", "mlp.fc2.weight"},        {"mlp.c_proj.bias", "mlp.fc2.bias"}};
    *mode = 0;
    for (size_t i = 0; i < sizeof one / sizeof one[0]; i++)
        if (strcmp(name, one[i][0]) == 0) {
            snprintf(hf[0], 160, "%s", one[i][1]);
            return 1;
        }
    if (strcmp(name, "proj") == 0) {
        *mode = 2;
        snprintf(hf[0], 160, "visual_projection.weight");
        return 1;
    }
    int l, used = 0;
    if (sscanf(name, "transformer.resblocks.%d.%n", &l, &used) != 1 || !used)
        return 0;
    const char *field = name + used;
    if (strncmp(field, "attn.in_proj_", 13) == 0) {
        const char *kind = field + 13; /* weight | bias */
        *mode = 1;
        snprintf(hf[0], 160, "vision_model.encoder.layers.%d.self_attn.q_proj.%s", l, kind);
        snprintf(hf[1], 160, "vision_model.encoder.layers.%d.self_attn.k_proj.%s", l, kind);
        snprintf(hf[2], 160, "vision_model.encoder.layers.%d.self_attn.v_proj.%s", l, kind);
        return 3;
    }
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++)
        if (strcmp(field, blk[i][0]) == 0) {
            snprintf(hf[0], 160, "vision_model.encoder.layers.%d.%s", l, blk[i][1]);
            return 1;
        }
    return 0;
}

/* Reads dataset name of an HDF5 file as float32 (shape into dims). */
static float *h5_tensor(hid_t f, const char *name, int *ndim, hsize_t dims[4])
{
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0)
        fail_msg("model file lacks dataset %s", name);
    hid_t sp = H5Dget_space(ds);
    *ndim = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    float *x = malloc((size_t)n * sizeof *x);
    assert_true(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Sclose(sp);
    H5Dclose(ds);
    return x;
}

/* Builds the open_clip tensor `name` from its HF tensors. */
static float *expected_tensor(const RefSt *r, const char *name, int ndim, const hsize_t *dims,
                              size_t (*count)(const RefSt *, const char *),
                              float (*value)(const RefSt *, const char *, size_t))
{
    char hf[3][160];
    int mode, n = hf_source(name, hf, &mode);
    if (!n)
        fail_msg("no HF source for %s", name);
    size_t total = 1;
    for (int d = 0; d < ndim; d++)
        total *= (size_t)dims[d];
    float *x = malloc(total * sizeof *x);
    size_t at = 0;
    for (int k = 0; k < n; k++) {
        size_t m = count(r, hf[k]);
        if (mode == 2) { /* [E,D] -> [D,E] */
            assert_int_equal(ndim, 2);
            size_t D = (size_t)dims[0], E = (size_t)dims[1];
            assert_int_equal(m, D * E);
            for (size_t dd = 0; dd < D; dd++)
                for (size_t e = 0; e < E; e++)
                    x[dd * E + e] = value(r, hf[k], e * D + dd);
            at = m;
        } else {
            assert_true(at + m <= total);
            for (size_t i = 0; i < m; i++)
                x[at + i] = value(r, hf[k], i);
            at += m;
        }
    }
    assert_int_equal(at, total);
    return x;
}

/* Element access for each dtype the test writes. */
static const cJSON *entry(const RefSt *r, const char *hf, size_t *b, size_t *en)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->header, hf);
    if (!e)
        fail_msg("source lacks %s", hf);
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    *b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
    *en = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    return e;
}

static size_t elem_size(const RefSt *r, const char *hf)
{
    size_t b, en;
    const char *dt = cJSON_GetObjectItemCaseSensitive(entry(r, hf, &b, &en), "dtype")->valuestring;
    return strcmp(dt, "F32") == 0 ? 4 : 2;
}

static size_t count_any(const RefSt *r, const char *hf)
{
    size_t b, en;
    entry(r, hf, &b, &en);
    return (en - b) / elem_size(r, hf);
}

static float from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* binary16 by its definition (NaN payload kept in the top mantissa bits). */
static float ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    if (e == 31)
        return from_bits((uint32_t)s << 31 | 0x7f800000u | (uint32_t)m << 13);
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (float)(s ? -v : v);
}

static float value_any(const RefSt *r, const char *hf, size_t i)
{
    size_t b, en;
    const cJSON *e = entry(r, hf, &b, &en);
    const char *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype")->valuestring;
    const unsigned char *p = r->data + b;
    if (strcmp(dt, "F32") == 0) {
        float x;
        memcpy(&x, p + 4 * i, 4);
        return x;
    }
    uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
    if (strcmp(dt, "BF16") == 0)
        return from_bits((uint32_t)h << 16);
    assert_string_equal(dt, "F16");
    return ref_f16(h);
}

/* Compares every tensor of model file h5 with the HF source; bitwise equal. */
static void compare_with_source(const char *h5, const char *st_path, int expect_tensors)
{
    RefSt r;
    ref_open(&r, st_path);
    VitModel m;
    td_error_clear();
    assert_int_equal(model_read(h5, &m), TD_OK);
    hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    size_t values = 0, differ = 0, nans = 0;
    double maxdiff = 0;
    for (int i = 0; i < m.table.count; i++) {
        int nd;
        hsize_t dims[4];
        float *got = h5_tensor(f, m.table.info[i].name, &nd, dims);
        assert_int_equal(nd, m.table.info[i].ndim);
        for (int d = 0; d < nd; d++)
            assert_int_equal(dims[d], m.table.info[i].shape[d]);
        float *want = expected_tensor(&r, m.table.info[i].name, nd, dims, count_any, value_any);
        for (size_t k = 0; k < m.table.info[i].numel; k++) {
            uint32_t a, b;
            memcpy(&a, &got[k], 4);
            memcpy(&b, &want[k], 4);
            differ += a != b;
            nans += isnan(want[k]);
            if (isfinite(got[k]) && isfinite(want[k]))
                maxdiff = fmax(maxdiff, fabs((double)got[k] - want[k]));
        }
        /* model_read must agree with the raw datasets, too */
        differ += memcmp(got, m.params + m.table.info[i].offset, m.table.info[i].numel * 4) != 0;
        values += m.table.info[i].numel;
        free(got);
        free(want);
    }
    printf("%s: %d tensors, %zu values, %zu bitwise differences (%zu NaN), max |diff| = %g\n", h5,
           m.table.count, values, differ, nans, maxdiff);
    assert_int_equal(m.table.count, expect_tensors);
    assert_int_equal(differ, 0);
    H5Fclose(f);
    model_free(&m);
    ref_close(&r);
}

/* ---- import of the fixtures ------------------------------------------- */

static void test_import_fixtures(void **state)
{
    (void)state;
    struct {
        const char *name;
        int width, layers, heads, patch, image, mlp, out;
        TdAct act;
    } fx[] = {{"clip_tiny_a", 64, 2, 4, 8, 32, 256, 32, TD_ACT_QUICK_GELU},
              {"clip_tiny_b", 128, 2, 2, 16, 64, 512, 48, TD_ACT_GELU}};
    for (int k = 0; k < 2; k++) {
        char src[1024], out[1024], args[4096], st[1100];
        snprintf(src, sizeof src, "%s/%s", TADIST_FIXTURES, fx[k].name);
        snprintf(st, sizeof st, "%s/model.safetensors", src);
        snprintf(out, sizeof out, "%s/mio_%s.h5", TADIST_TEST_OUT, fx[k].name);
        remove(out);
        snprintf(args, sizeof args, "import '%s' -o '%s'", src, out);
        int rc = run_tadist(args);
        printf("%s", g_out);
        if (rc)
            fail_msg("import %s failed (%d): %s", fx[k].name, rc, g_err);
        assert_non_null(strstr(g_out, "parameters"));
        VitModel m;
        assert_int_equal(model_read(out, &m), TD_OK);
        assert_int_equal(m.arch.width, fx[k].width);
        assert_int_equal(m.arch.layers, fx[k].layers);
        assert_int_equal(m.arch.heads, fx[k].heads);
        assert_int_equal(m.arch.width / m.arch.heads, k ? 64 : 16);
        assert_int_equal(m.arch.patch, fx[k].patch);
        assert_int_equal(m.arch.image, fx[k].image);
        assert_int_equal(m.arch.mlp, fx[k].mlp);
        assert_int_equal(m.arch.out_dim, fx[k].out);
        assert_int_equal(m.arch.channels, 3);
        assert_int_equal(m.arch.act, fx[k].act);
        assert_true(m.arch.ln_eps == 1e-5f);
        assert_non_null(strstr(m.source, "model.safetensors"));
        assert_non_null(strstr(g_out, m.checksum));
        model_free(&m);
        compare_with_source(out, st, 5 + 12 * fx[k].layers + 3);
    }
}

/* Without config.json the shapes give the architecture; --heads is required. */
static void test_import_inferred(void **state)
{
    (void)state;
    char dir[1024], path[1100], out[1100], args[4096], cfg_ref[1100];
    snprintf(dir, sizeof dir, "%s/mio_inferred", TADIST_TEST_OUT);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    char src[1100];
    snprintf(src, sizeof src, "%s/clip_tiny_b/model.safetensors", TADIST_FIXTURES);
    size_t n;
    unsigned char *b = slurp(src, &n);
    spit(path, b, n);
    free(b);
    remove(out);
    snprintf(args, sizeof args, "import '%s' -o '%s'", path, out);
    assert_int_not_equal(run_tadist(args), 0);
    printf("without --heads: %s", g_err);
    assert_non_null(strstr(g_err, "--heads"));
    assert_false(exists(out));
    snprintf(args, sizeof args, "import '%s' -o '%s' --heads 2 --act gelu", path, out);
    if (run_tadist(args))
        fail_msg("inferred import failed: %s", g_err);
    VitModel m, ref;
    assert_int_equal(model_read(out, &m), TD_OK);
    snprintf(cfg_ref, sizeof cfg_ref, "%s/mio_clip_tiny_b.h5", TADIST_TEST_OUT);
    assert_int_equal(model_read(cfg_ref, &ref), TD_OK);
    assert_memory_equal(&m.arch, &ref.arch, sizeof m.arch);
    assert_string_equal(m.checksum, ref.checksum);
    model_free(&m);
    model_free(&ref);
}

/* ---- F16 and BF16 sources --------------------------------------------- */

static uint16_t to_half(float x) /* any rounding will do: expected values come from the bits */
{
    _Float16 h = (_Float16)x;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

/* Rewrites a F32 safetensors file with every tensor in dtype (F16 or BF16),
 * plus special values (subnormal, inf, NaN, extremes) at the start of the
 * patch embedding. */
static void convert_file(const char *src, const char *dst, const char *dtype)
{
    RefSt r;
    ref_open(&r, src);
    cJSON *h = cJSON_Duplicate(r.header, 1);
    size_t total = 0;
    for (cJSON *e = h->child; e; e = e->next)
        if (strcmp(e->string, "__metadata__") != 0)
            total += count_any(&r, e->string) * 2;
    unsigned char *data = malloc(total);
    size_t at = 0;
    static const uint16_t special_f16[] = {0x0001, 0x03ff, 0x8001, 0x7c00, 0xfc00,
                                           0x7e01, 0x0400, 0x7bff, 0x8000, 0x0200};
    static const uint16_t special_bf16[] = {0x0001, 0x807f, 0x7f80, 0xff80, 0x7fc1,
                                            0x0080, 0x7f7f, 0x8000, 0x0040, 0xffff};
    const uint16_t *special = strcmp(dtype, "F16") == 0 ? special_f16 : special_bf16;
    for (cJSON *e = h->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0)
            continue;
        size_t m;
        float *x = ref_tensor(&r, e->string, &m);
        for (size_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            uint16_t v = strcmp(dtype, "F16") == 0 ? to_half(x[i]) : (uint16_t)(u >> 16);
            if (strcmp(e->string, "vision_model.embeddings.patch_embedding.weight") == 0 && i < 10)
                v = special[i];
            data[at + 2 * i] = (unsigned char)v;
            data[at + 2 * i + 1] = (unsigned char)(v >> 8);
        }
        free(x);
        cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString(dtype));
        cJSON *off = cJSON_CreateArray();
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(at + 2 * m)));
        cJSON_ReplaceItemInObject(e, "data_offsets", off);
        at += 2 * m;
    }
    char *text = cJSON_PrintUnformatted(h);
    size_t hl = strlen(text);
    FILE *fp = fopen(dst, "wb");
    assert_non_null(fp);
    for (int i = 0; i < 8; i++)
        fputc((int)((uint64_t)hl >> (8 * i)) & 255, fp);
    fwrite(text, 1, hl, fp);
    fwrite(data, 1, total, fp);
    fclose(fp);
    free(text);
    free(data);
    cJSON_Delete(h);
    ref_close(&r);
}

static void copy_file(const char *src, const char *dst)
{
    size_t n;
    unsigned char *b = slurp(src, &n);
    spit(dst, b, n);
    free(b);
}

static void test_import_half_types(void **state)
{
    (void)state;
    const char *types[] = {"F16", "BF16"};
    for (int k = 0; k < 2; k++) {
        char dir[1024], st[1100], cfg[1100], out[1100], src[1100], args[4096];
        snprintf(dir, sizeof dir, "%s/mio_%s", TADIST_TEST_OUT, types[k]);
        mkdir(dir, 0755);
        snprintf(st, sizeof st, "%s/model.safetensors", dir);
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        snprintf(out, sizeof out, "%s/out.h5", dir);
        snprintf(src, sizeof src, "%s/clip_tiny_a/model.safetensors", TADIST_FIXTURES);
        convert_file(src, st, types[k]);
        snprintf(src, sizeof src, "%s/clip_tiny_a/config.json", TADIST_FIXTURES);
        copy_file(src, cfg);
        remove(out);
        snprintf(args, sizeof args, "import '%s' -o '%s'", dir, out);
        if (run_tadist(args))
            fail_msg("import of %s failed: %s", types[k], g_err);
        compare_with_source(out, st, 5 + 12 * 2 + 3);
    }
}

/* ---- corrupt sources: error, one line, no output, no temporary file ---- */

typedef struct {
    const char *name;
    const char *needle; /* must appear in the message */
} Corrupt;

/* Builds a header from the tiny_a fixture, changed by edit. */
static void write_with_header(const char *path, const RefSt *r, const char *text, size_t data_len)
{
    size_t hl = strlen(text);
    FILE *fp = fopen(path, "wb");
    for (int i = 0; i < 8; i++)
        fputc((int)((uint64_t)hl >> (8 * i)) & 255, fp);
    fwrite(text, 1, hl, fp);
    fwrite(r->data, 1, data_len, fp);
    fclose(fp);
}

static void set_offsets(cJSON *e, double b, double en)
{
    cJSON *off = cJSON_CreateArray();
    cJSON_AddItemToArray(off, cJSON_CreateNumber(b));
    cJSON_AddItemToArray(off, cJSON_CreateNumber(en));
    cJSON_ReplaceItemInObject(e, "data_offsets", off);
}

static void make_corrupt(const char *kind, const char *path, const RefSt *r)
{
    size_t data_len = r->size - (size_t)(r->data - r->bytes);
    cJSON *h = cJSON_Duplicate(r->header, 1);
    char *text = NULL;
    cJSON *e;
    if (strcmp(kind, "truncated") == 0) {
        spit(path, r->bytes, r->size * 6 / 10);
    } else if (strcmp(kind, "header_past_eof") == 0) {
        unsigned char *b = malloc(r->size);
        memcpy(b, r->bytes, r->size);
        uint64_t hl = r->size; /* one more than the bytes left after the length */
        for (int i = 0; i < 8; i++)
            b[i] = (unsigned char)(hl >> (8 * i));
        spit(path, b, r->size);
        free(b);
    } else if (strcmp(kind, "offsets_outside") == 0) {
        e = cJSON_GetObjectItemCaseSensitive(h, "vision_model.post_layernorm.weight");
        set_offsets(e, (double)data_len - 64, (double)data_len + 192);
    } else if (strcmp(kind, "offsets_vs_shape") == 0) {
        e = cJSON_GetObjectItemCaseSensitive(h, "vision_model.encoder.layers.1.mlp.fc1.bias");
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        double b = cJSON_GetArrayItem(off, 0)->valuedouble;
        double en = cJSON_GetArrayItem(off, 1)->valuedouble;
        set_offsets(e, b, en - 4);
    } else if (strcmp(kind, "missing_tensor") == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(
            h, "vision_model.encoder.layers.1.self_attn.k_proj.weight");
    } else if (strcmp(kind, "unknown_dtype") == 0) {
        e = cJSON_GetObjectItemCaseSensitive(h, "vision_model.pre_layrnorm.weight");
        cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString("I7"));
    } else if (strcmp(kind, "unsupported_dtype") == 0) {
        e = cJSON_GetObjectItemCaseSensitive(h, "vision_model.pre_layrnorm.bias");
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        double b = cJSON_GetArrayItem(off, 0)->valuedouble;
        double en = cJSON_GetArrayItem(off, 1)->valuedouble;
        cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString("F8_E4M3"));
        set_offsets(e, b, b + (en - b) / 4);
    } else if (strcmp(kind, "wrong_shape") == 0) {
        e = cJSON_GetObjectItemCaseSensitive(h, "visual_projection.weight");
        cJSON *shape = cJSON_CreateArray(); /* [32,64] -> [64,32]: same size, wrong way round */
        cJSON_AddItemToArray(shape, cJSON_CreateNumber(64));
        cJSON_AddItemToArray(shape, cJSON_CreateNumber(32));
        cJSON_ReplaceItemInObject(e, "shape", shape);
    } else if (strcmp(kind, "invalid_json") == 0) {
        text = cJSON_PrintUnformatted(h);
        text[strlen(text) / 2] = '\0';
    } else if (strcmp(kind, "duplicate") == 0) {
        char *all = cJSON_PrintUnformatted(h);
        e = cJSON_GetObjectItemCaseSensitive(h, "vision_model.post_layernorm.bias");
        char *one = cJSON_PrintUnformatted(e);
        text = malloc(strlen(all) + strlen(one) + 64);
        sprintf(text, "{\"vision_model.post_layernorm.bias\":%s,%s", one, all + 1);
        free(all);
        free(one);
    } else if (strcmp(kind, "extra_layer") == 0) {
        e = cJSON_Duplicate(
            cJSON_GetObjectItemCaseSensitive(h, "vision_model.encoder.layers.1.mlp.fc1.bias"), 1);
        cJSON_AddItemToObject(h, "vision_model.encoder.layers.2.mlp.fc1.bias", e);
    } else {
        fail_msg("unknown corruption %s", kind);
    }
    if (!text && strcmp(kind, "truncated") != 0 && strcmp(kind, "header_past_eof") != 0)
        text = cJSON_PrintUnformatted(h);
    if (text) {
        write_with_header(path, r, text, data_len);
        free(text);
    }
    cJSON_Delete(h);
}

static void test_import_corrupt(void **state)
{
    (void)state;
    const Corrupt cases[] = {
        {"truncated", "model.safetensors"},
        {"header_past_eof", "header length"},
        {"offsets_outside", "vision_model.post_layernorm.weight"},
        {"offsets_vs_shape", "vision_model.encoder.layers.1.mlp.fc1.bias"},
        {"missing_tensor", "vision_model.encoder.layers.1.self_attn.k_proj.weight"},
        {"unknown_dtype", "vision_model.pre_layrnorm.weight"},
        {"unsupported_dtype", "vision_model.pre_layrnorm.bias"},
        {"wrong_shape", "visual_projection.weight"},
        {"invalid_json", "JSON"},
        {"duplicate", "vision_model.post_layernorm.bias"},
        {"extra_layer", "vision_model.encoder.layers.2.mlp.fc1.bias"},
    };
    char fx[1100], cfg_src[1100];
    snprintf(fx, sizeof fx, "%s/clip_tiny_a/model.safetensors", TADIST_FIXTURES);
    snprintf(cfg_src, sizeof cfg_src, "%s/clip_tiny_a/config.json", TADIST_FIXTURES);
    RefSt r;
    ref_open(&r, fx);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char dir[1024], st[1100], cfg[1100], out[1100], args[4096];
        snprintf(dir, sizeof dir, "%s/mio_corrupt_%s", TADIST_TEST_OUT, cases[k].name);
        mkdir(dir, 0755);
        snprintf(st, sizeof st, "%s/model.safetensors", dir);
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        snprintf(out, sizeof out, "%s/out.h5", dir);
        copy_file(cfg_src, cfg);
        make_corrupt(cases[k].name, st, &r);
        remove(out);
        snprintf(args, sizeof args, "import '%s' -o '%s'", dir, out);
        int rc = run_tadist(args);
        printf("%-18s rc=%d %s", cases[k].name, rc, g_err);
        assert_int_not_equal(rc, 0);
        char *nl = strchr(g_err, '\n');
        assert_non_null(nl);
        assert_int_equal(nl[1], '\0'); /* exactly one line */
        if (!strstr(g_err, cases[k].needle))
            fail_msg("%s: message lacks '%s'", cases[k].name, cases[k].needle);
        assert_false(exists(out));
        assert_int_equal(count_prefixed(dir, "out.h5.tmp"), 0);
    }
    ref_close(&r);
    /* a destination that cannot be written: error, nothing left behind */
    char args[4096];
    snprintf(args, sizeof args, "import '%s/clip_tiny_a' -o '%s/mio_no_such_dir/out.h5'",
             TADIST_FIXTURES, TADIST_TEST_OUT);
    assert_int_not_equal(run_tadist(args), 0);
    printf("%-18s %s", "unwritable", g_err);
    assert_non_null(strstr(g_err, "mio_no_such_dir/out.h5"));
}

/* ---- model_write / model_read ----------------------------------------- */

static void make_tiny(VitModel *m, unsigned long long seed)
{
    VitArch a;
    assert_int_equal(vit_arch_by_name("vit_tiny", &a), TD_OK);
    a.act = TD_ACT_GELU; /* not the default, so a lost attribute shows */
    a.ln_eps = 1e-6f;
    assert_int_equal(model_alloc(m, &a), TD_OK);
    params_init_random(&m->arch, &m->table, m->params, seed);
    snprintf(m->source, sizeof m->source, "unit test seed=%llu", seed);
}

static void test_round_trip(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/mio_round_trip.h5", TADIST_TEST_OUT);
    VitModel m, back;
    make_tiny(&m, 7);
    assert_int_equal(model_write(path, &m), TD_OK);
    assert_int_equal(count_prefixed(TADIST_TEST_OUT, "mio_round_trip.h5.tmp"), 0);
    assert_int_equal(model_read(path, &back), TD_OK);
    assert_memory_equal(&m.arch, &back.arch, sizeof m.arch);
    assert_string_equal(back.source, m.source);
    assert_string_equal(back.checksum, m.checksum);
    assert_int_equal(strlen(m.checksum), 32);
    assert_int_equal(back.table.total, m.table.total);
    assert_memory_equal(back.params, m.params, m.table.total * sizeof(float));
    /* the checksum covers every value: a one-ulp change moves it */
    char before[40];
    snprintf(before, sizeof before, "%s", m.checksum);
    m.params[m.table.info[params_proj(&m.arch)].offset + 3] =
        nextafterf(m.params[m.table.info[params_proj(&m.arch)].offset + 3], 1.0f);
    model_checksum(&m, m.checksum);
    assert_string_not_equal(before, m.checksum);
    model_free(&m);
    model_free(&back);
}

static void test_checksum_mismatch(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/mio_tamper.h5", TADIST_TEST_OUT);
    VitModel m;
    make_tiny(&m, 11);
    assert_int_equal(model_write(path, &m), TD_OK);
    model_free(&m);
    const char *victim = "transformer.resblocks.1.attn.in_proj_weight";
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    int nd;
    hsize_t dims[4];
    float *x = h5_tensor(f, victim, &nd, dims);
    x[100] += 1e-3f;
    hid_t ds = H5Dopen2(f, victim, H5P_DEFAULT);
    assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(ds);
    H5Fclose(f);
    free(x);
    /* resealed: the whole-file seal would find any edit first (test_seal);
     * these edits must be found by the checks behind it */
    assert_int_equal(h5u_seal(path), TD_OK);
    td_error_clear();
    VitModel back;
    assert_int_not_equal(model_read(path, &back), TD_OK);
    printf("tampered: %s\n", td_error_message());
    assert_non_null(strstr(td_error_message(), "checksum"));
    assert_non_null(strstr(td_error_message(), "mio_tamper.h5"));
    assert_null(back.params);
    /* a missing tensor and a wrong shape are named */
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Ldelete(f, "ln_post.bias", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    assert_int_equal(h5u_seal(path), TD_OK);
    td_error_clear();
    assert_int_not_equal(model_read(path, &back), TD_OK);
    printf("missing: %s\n", td_error_message());
    assert_non_null(strstr(td_error_message(), "'ln_post.bias'"));
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t d1[1] = {7};
    hid_t sp = H5Screate_simple(1, d1, NULL);
    ds = H5Dcreate2(f, "ln_post.bias", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    assert_int_equal(h5u_seal(path), TD_OK);
    td_error_clear();
    assert_int_not_equal(model_read(path, &back), TD_OK);
    printf("wrong shape: %s\n", td_error_message());
    assert_non_null(strstr(td_error_message(), "'ln_post.bias'"));
    /* not a model file at all */
    td_error_clear();
    char fx[1100];
    snprintf(fx, sizeof fx, "%s/clip_tiny_a/ref.h5", TADIST_FIXTURES);
    assert_int_not_equal(model_read(fx, &back), TD_OK);
    printf("ref.h5: %s\n", td_error_message());
    td_error_clear();
    snprintf(fx, sizeof fx, "%s/clip_tiny_a/config.json", TADIST_FIXTURES);
    assert_int_not_equal(model_read(fx, &back), TD_OK);
    printf("config.json: %s\n", td_error_message());
    td_error_clear();
}

/* An edited `layers` attribute (56322: 11 GB of parameters) is found out
 * against the datasets before the model is allocated: the read runs in a
 * child whose address space allows 1 GiB more than it has, so an early
 * allocation would fail as "out of memory" instead of naming the file. */
static void test_header_claims_checked_first(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/mio_layers.h5", TADIST_TEST_OUT);
    VitModel m;
    make_tiny(&m, 5);
    assert_int_equal(model_write(path, &m), TD_OK);
    model_free(&m);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t at = H5Aopen(f, "layers", H5P_DEFAULT);
    int layers = 56322;
    assert_true(at >= 0 && H5Awrite(at, H5T_NATIVE_INT, &layers) >= 0);
    H5Aclose(at);
    H5Fclose(f);
    assert_int_equal(h5u_seal(path), TD_OK); /* past the seal, to the shape checks */
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        long pages = 0;
        FILE *st = fopen("/proc/self/statm", "r");
        if (!st || fscanf(st, "%ld", &pages) != 1)
            _exit(3);
        fclose(st);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (1ul << 30);
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(3);
        VitModel back;
        TdStatus s = model_read(path, &back);
        const char *msg = td_error_message();
        printf("layers 56322: %s\n", msg);
        fflush(stdout);
        _exit(s != TD_OK && strstr(msg, "mio_layers.h5") && strstr(msg, "missing") &&
                      strstr(msg, "56322 layers") && !strchr(msg, '\n')
                  ? 0
                  : 1);
    }
    int rc;
    assert_int_equal(waitpid(pid, &rc, 0), pid);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 0);
}

/* The whole-file seal (h5util.h): a model file is checked with plain stdio
 * before libhdf5 parses it. One flipped byte anywhere, bytes cut or appended,
 * and an edit through HDF5 are each found first and named; a file without a
 * seal (older tadist, other writers) still reads. */
static void flip_byte(const char *path, long at)
{
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    fputc(c ^ 0x01, fp);
    fclose(fp);
}

static void expect_read_error(const char *path, const char *needle)
{
    VitModel back;
    td_error_clear();
    assert_int_not_equal(model_read(path, &back), TD_OK);
    printf("  %s\n", td_error_message());
    assert_non_null(strstr(td_error_message(), path));
    assert_non_null(strstr(td_error_message(), needle));
    assert_null(back.params);
    td_error_clear();
}

static void test_seal(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/mio_seal.h5", TADIST_TEST_OUT);
    VitModel m, back;
    make_tiny(&m, 13);
    assert_int_equal(model_write(path, &m), TD_OK);
    size_t n;
    unsigned char *bytes = slurp(path, &n);
    assert_memory_equal(bytes, "tadist-seal-1\nxxh3-128 ", 23);
    assert_memory_equal(bytes + H5U_USERBLOCK, "\x89HDF\r\n\x1a\n", 8);
    assert_int_equal(model_read(path, &back), TD_OK);
    model_free(&back);
    /* one bit in the root group's object header, in an attribute, in a tensor:
     * each would reach libhdf5's parser without the seal */
    const long at[3] = {H5U_USERBLOCK + 100, (long)n / 3, (long)n - 5};
    for (int i = 0; i < 3; i++) {
        flip_byte(path, at[i]);
        expect_read_error(path, "checksum mismatch: its seal says");
        flip_byte(path, at[i]);
        assert_int_equal(model_read(path, &back), TD_OK);
        model_free(&back);
    }
    /* the seal's own bytes */
    flip_byte(path, 30);
    expect_read_error(path, "checksum mismatch");
    flip_byte(path, 30);
    flip_byte(path, 3); /* no longer a seal: not taken for a file without one */
    expect_read_error(path, "neither blank nor a tadist seal");
    flip_byte(path, 3);
    flip_byte(path, H5U_USERBLOCK + 2); /* the HDF5 signature: the seal covers it too */
    expect_read_error(path, "checksum mismatch");
    flip_byte(path, H5U_USERBLOCK + 2);
    /* cut, and extended */
    assert_int_equal(truncate(path, (off_t)n - 100), 0);
    expect_read_error(path, "truncated: its seal says");
    spit(path, bytes, n);
    FILE *fp = fopen(path, "ab");
    assert_non_null(fp);
    fputc(0, fp);
    fclose(fp);
    expect_read_error(path, "1 bytes more than its seal says");
    /* an edit through HDF5 that is not resealed */
    spit(path, bytes, n);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t a = H5Aopen(f, "heads", H5P_DEFAULT);
    int heads = 1;
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_INT, &heads) >= 0);
    H5Aclose(a);
    H5Fclose(f);
    expect_read_error(path, "(corrupted or edited)");
    free(bytes);

    /* no seal: the superblock's end-of-file address must still be the size
     * (an input that crashed libhdf5's H5Aexists had one byte more) */
    char old[1100];
    snprintf(old, sizeof old, "%s/../fuzz/model_h5/corpus/tiny_import", TADIST_FIXTURES);
    assert_int_equal(model_read(old, &back), TD_OK);
    model_free(&back);
    bytes = slurp(old, &n);
    spit(path, bytes, n - 1);
    expect_read_error(path, "truncated: its HDF5 superblock says the file ends at byte");
    spit(path, bytes, n);
    fp = fopen(path, "ab");
    assert_non_null(fp);
    fputc(0, fp);
    fclose(fp);
    expect_read_error(path, "1 bytes after the end of its HDF5 data");
    bytes[8] = 7; /* superblock version */
    spit(path, bytes, n);
    expect_read_error(path, "HDF5 superblock version 7");
    free(bytes);
    model_free(&m);
}

/* A write that fails at the rename must remove its temporary file. */
static void test_write_failure_cleans_up(void **state)
{
    (void)state;
    char path[1024], blocker[1100];
    snprintf(path, sizeof path, "%s/mio_is_a_dir", TADIST_TEST_OUT);
    mkdir(path, 0755);
    snprintf(blocker, sizeof blocker, "%s/keep", path); /* a non-empty directory: rename fails */
    spit(blocker, "x", 1);
    VitModel m;
    make_tiny(&m, 3);
    td_error_clear();
    assert_int_not_equal(model_write(path, &m), TD_OK);
    printf("rename onto a directory: %s\n", td_error_message());
    assert_non_null(strstr(td_error_message(), "mio_is_a_dir"));
    assert_int_equal(count_prefixed(TADIST_TEST_OUT, "mio_is_a_dir.tmp"), 0);
    td_error_clear();
    model_free(&m);
}

/* ---- tadist init ------------------------------------------------------- */

static size_t printed_count(const char *text)
{
    const char *p = strstr(text, " parameters");
    assert_non_null(p);
    const char *q = p;
    while (q > text && q[-1] >= '0' && q[-1] <= '9')
        q--;
    assert_true(q < p);
    return (size_t)strtoull(q, NULL, 10);
}

static void test_init_counts(void **state)
{
    (void)state;
    char out[1024], args[2048];
    snprintf(out, sizeof out, "%s/mio_init_b32.h5", TADIST_TEST_OUT);
    snprintf(args, sizeof args, "init --arch vit_b32 --seed 5 -o '%s'", out);
    if (run_tadist(args))
        fail_msg("init failed: %s", g_err);
    printf("%s", g_out);
    size_t n = printed_count(g_out);
    printf("vit_b32 printed %zu parameters\n", n);
    assert_int_equal(n, 87849216);
    VitModel m;
    assert_int_equal(model_read(out, &m), TD_OK);
    assert_string_equal(m.source, "init:vit_b32:seed=5");
    size_t numel = 0, attn = 0;
    for (int i = 0; i < m.table.count; i++) {
        numel += m.table.info[i].numel;
        if (strstr(m.table.info[i].name, "attn.in_proj_weight") ||
            strstr(m.table.info[i].name, "attn.out_proj.weight"))
            attn += m.table.info[i].numel;
    }
    printf("vit_b32 table: %zu parameters, attention weights %zu\n", numel, attn);
    assert_int_equal(numel, 87849216);
    assert_int_equal(model_numel(&m), 87849216);
    assert_int_equal(attn, 28311552);
    model_free(&m);
    remove(out);
    /* deterministic in the seed */
    char sums[3][40];
    const int seeds[3] = {1, 1, 2};
    for (int k = 0; k < 3; k++) {
        snprintf(out, sizeof out, "%s/mio_init_tiny%d.h5", TADIST_TEST_OUT, k);
        snprintf(args, sizeof args, "init --arch vit_tiny --seed %d -o '%s'", seeds[k], out);
        assert_int_equal(run_tadist(args), 0);
        assert_int_equal(model_read(out, &m), TD_OK);
        snprintf(sums[k], sizeof sums[k], "%s", m.checksum);
        model_free(&m);
    }
    assert_string_equal(sums[0], sums[1]);
    assert_string_not_equal(sums[0], sums[2]);
    assert_int_not_equal(run_tadist("init --arch vit_nope -o /dev/null"), 0);
    assert_non_null(strstr(g_err, "vit_nope"));
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_checksum_mismatch),
        cmocka_unit_test(test_header_claims_checked_first),
        cmocka_unit_test(test_seal),
        cmocka_unit_test(test_write_failure_cleans_up),
        cmocka_unit_test(test_import_fixtures),
        cmocka_unit_test(test_import_inferred),
        cmocka_unit_test(test_import_half_types),
        cmocka_unit_test(test_import_corrupt),
        cmocka_unit_test(test_init_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
