#include "model_io.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: no allocation to fail */
#include <xxhash.h>

#include "h5util.h"

#define MODEL_FORMAT "tadist-vit-1"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model_checksum hashes the float buffer as little-endian bytes"
#endif

/* Far beyond any CLIP tower, small enough that no size in params.c overflows int. */
#define ARCH_FIELD_MAX (1 << 16)

TdStatus model_arch_check(const char *what, const VitArch *a)
{
    const int f[] = {a->width, a->layers, a->heads, a->patch, a->image, a->mlp, a->out_dim,
                     a->channels};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i] > ARCH_FIELD_MAX)
            return td_fail(TD_ERR_FORMAT, "%s: architecture field %d is implausibly large", what,
                           f[i]);
    if (vit_arch_validate(a) != TD_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", td_error_message());
        TdStatus code = td_error_code();
        td_error_clear();
        return td_fail(code, "%s: %s", what, msg);
    }
    return TD_OK;
}

/* Any vision tower tadist can train fits (ViT-bigG has 1.8e9 parameters);
 * architecture fields that pass model_arch_check can still multiply out to
 * far more (56322 layers of width 768 is 11 GB), which is a corrupt file. */
#define MODEL_MAX_PARAMS ((size_t)1 << 32)

static TdStatus check_total(const char *what, const ParamTable *t)
{
    if (t->total > MODEL_MAX_PARAMS)
        return td_fail(TD_ERR_FORMAT, "%s: architecture has %zu parameters, more than the %zu "
                       "allowed", what, t->total, MODEL_MAX_PARAMS);
    return TD_OK;
}

TdStatus model_alloc(VitModel *m, const VitArch *a)
{
    memset(m, 0, sizeof *m);
    TD_TRY(params_table_build(a, &m->table));
    if (check_total("model", &m->table) != TD_OK) {
        params_table_free(&m->table);
        return td_error_code();
    }
    m->arch = *a;
    m->params = td_aligned_calloc(m->table.total * sizeof(float));
    if (!m->params) {
        params_table_free(&m->table);
        return TD_ERR_NOMEM;
    }
    return TD_OK;
}

void model_free(VitModel *m)
{
    td_free(m->params);
    params_table_free(&m->table);
    memset(m, 0, sizeof *m);
}

size_t model_numel(const VitModel *m)
{
    size_t n = 0;
    for (int i = 0; i < m->table.count; i++)
        n += m->table.info[i].numel;
    return n;
}

void model_describe(const VitArch *a, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "width %d, %d layers, %d heads (head dim %d), patch %d, image %d, mlp %d, out %d, "
             "%s, ln_eps %g",
             a->width, a->layers, a->heads, a->heads ? a->width / a->heads : 0, a->patch,
             a->image, a->mlp, a->out_dim, vit_act_name(a->act), (double)a->ln_eps);
}

void model_checksum(const VitModel *m, char out[40])
{
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_128bits_reset(&st);
    for (int i = 0; i < m->table.count; i++) /* numel only: padding is not part of the model */
        XXH3_128bits_update(&st, m->params + m->table.info[i].offset,
                            m->table.info[i].numel * sizeof(float));
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    snprintf(out, 40, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
}

static TdStatus write_header(hid_t f, const char *path, const VitModel *m)
{
    const VitArch *a = &m->arch;
    const struct {
        const char *name;
        int v;
    } ints[] = {{"width", a->width},     {"layers", a->layers}, {"heads", a->heads},
                {"patch", a->patch},     {"image", a->image},   {"mlp", a->mlp},
                {"out_dim", a->out_dim}, {"channels", a->channels}};
    TD_TRY(h5u_attr_write_str(f, path, "format", MODEL_FORMAT));
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        TD_TRY(h5u_attr_write(f, path, ints[i].name, H5T_STD_I32LE, H5T_NATIVE_INT, &ints[i].v));
    TD_TRY(h5u_attr_write_str(f, path, "activation", vit_act_name(a->act)));
    TD_TRY(h5u_attr_write(f, path, "ln_eps", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &a->ln_eps));
    TD_TRY(h5u_attr_write_str(f, path, "source", m->source));
    TD_TRY(h5u_attr_write_str(f, path, "checksum", m->checksum));
    return TD_OK;
}

static TdStatus read_header(hid_t f, const char *path, VitArch *a, char *source, size_t source_cap,
                            char checksum[40], int *has_checksum)
{
    char act[64];
    TD_TRY(h5u_check_format(f, path, MODEL_FORMAT, "tadist model file"));
    struct {
        const char *name;
        int *v;
    } ints[] = {{"width", &a->width},     {"layers", &a->layers}, {"heads", &a->heads},
                {"patch", &a->patch},     {"image", &a->image},   {"mlp", &a->mlp},
                {"out_dim", &a->out_dim}, {"channels", &a->channels}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        TD_TRY(h5u_attr_read(f, path, ints[i].name, H5T_NATIVE_INT, ints[i].v));
    TD_TRY(h5u_attr_read_str(f, path, "activation", act, sizeof act));
    if (strcmp(act, "gelu") == 0)
        a->act = TD_ACT_GELU;
    else if (strcmp(act, "quick_gelu") == 0)
        a->act = TD_ACT_QUICK_GELU;
    else
        return td_fail(TD_ERR_FORMAT, "%s: activation '%s' is not quick_gelu or gelu", path, act);
    TD_TRY(h5u_attr_read(f, path, "ln_eps", H5T_NATIVE_FLOAT, &a->ln_eps));
    source[0] = '\0';
    if (h5u_attr_exists(f, "source"))
        TD_TRY(h5u_attr_read_str(f, path, "source", source, source_cap));
    *has_checksum = h5u_attr_exists(f, "checksum");
    if (*has_checksum)
        TD_TRY(h5u_attr_read_str(f, path, "checksum", checksum, 40));
    return model_arch_check(path, a);
}

/* ---- tensors ---------------------------------------------------------- */

static TdStatus write_tensor(hid_t f, const char *path, const ParamInfo *p, const float *x)
{
    hsize_t dims[TD_PARAM_MAX_DIMS];
    for (int d = 0; d < p->ndim; d++)
        dims[d] = (hsize_t)p->shape[d];
    hid_t sp = H5Screate_simple(p->ndim, dims, NULL);
    hid_t ds = sp >= 0 ? H5Dcreate2(f, p->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                    H5P_DEFAULT)
                       : -1;
    herr_t w = ds >= 0 ? H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) : -1;
    herr_t c = ds >= 0 ? H5Dclose(ds) : 0;
    if (sp >= 0)
        H5Sclose(sp);
    if (w < 0 || c < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot write tensor '%s'", path, p->name);
    return TD_OK;
}

static TdStatus check_tensor_space(hid_t ds, const char *path, const ParamInfo *p)
{
    hid_t ft = H5Dget_type(ds);
    H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    if (ft >= 0)
        H5Tclose(ft);
    if (cls != H5T_FLOAT)
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s' is not a floating-point dataset", path,
                       p->name);
    hid_t sp = H5Dget_space(ds);
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[TD_PARAM_MAX_DIMS] = {0};
    int ok = nd == p->ndim && H5Sget_simple_extent_dims(sp, dims, NULL) == nd;
    for (int d = 0; ok && d < nd; d++)
        ok = dims[d] == (hsize_t)p->shape[d];
    if (sp >= 0)
        H5Sclose(sp);
    if (!ok) {
        char want[64] = "";
        for (int d = 0, n = 0; d < p->ndim && n >= 0 && (size_t)n < sizeof want; d++)
            n += snprintf(want + n, sizeof want - (size_t)n, d ? ",%d" : "%d", p->shape[d]);
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s' does not have shape [%s]", path, p->name,
                       want);
    }
    return TD_OK;
}

/* Opens tensor p's dataset and checks its type and shape; x NULL: only that. */
static TdStatus read_tensor(hid_t f, const char *path, const ParamInfo *p, float *x)
{
    if (H5Lexists(f, p->name, H5P_DEFAULT) <= 0)
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s' is missing", path, p->name);
    hid_t ds = H5Dopen2(f, p->name, H5P_DEFAULT);
    if (ds < 0)
        return td_fail(TD_ERR_FORMAT, "%s: '%s' is not a dataset", path, p->name);
    TdStatus s = check_tensor_space(ds, path, p);
    if (s == TD_OK && x && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        s = td_fail(TD_ERR_HDF5, "%s: cannot read tensor '%s'", path, p->name);
    H5Dclose(ds);
    return s;
}

/* The shapes the header's attributes claim against the datasets the file
 * holds, before anything the size of the model is allocated: an edited
 * `layers` must not cost gigabytes of zeroed memory to be found out. */
static TdStatus check_tensors(hid_t f, const char *path, const VitArch *a)
{
    ParamTable t;
    TD_TRY(params_table_build(a, &t));
    TdStatus s = check_total(path, &t);
    for (int i = 0; s == TD_OK && i < t.count; i++)
        s = read_tensor(f, path, &t.info[i], NULL);
    params_table_free(&t);
    if (s != TD_OK) { /* say which attributes the datasets contradict */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", td_error_message());
        td_error_clear();
        s = td_fail(s, "%s (the attributes claim width %d, %d layers, mlp %d, patch %d, "
                    "image %d, out_dim %d)", msg, a->width, a->layers, a->mlp, a->patch,
                    a->image, a->out_dim);
    }
    return s;
}

/* ---- files ------------------------------------------------------------ */

TdStatus model_read(const char *path, VitModel *m)
{
    memset(m, 0, sizeof *m);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (access(path, R_OK) != 0)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* superblock, size and seal, before libhdf5 parses a byte (h5util.h) */
    TD_TRY(h5u_check_file(path));
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return td_fail(TD_ERR_FORMAT, "%s: not an HDF5 file", path);
    VitArch a;
    char source[sizeof m->source], stored[40] = "";
    int has_checksum = 0;
    TdStatus s = read_header(f, path, &a, source, sizeof source, stored, &has_checksum);
    if (s == TD_OK)
        s = check_tensors(f, path, &a);
    if (s == TD_OK)
        s = model_alloc(m, &a);
    for (int i = 0; s == TD_OK && i < m->table.count; i++)
        s = read_tensor(f, path, &m->table.info[i], m->params + m->table.info[i].offset);
    if (H5Fclose(f) < 0 && s == TD_OK)
        s = td_fail(TD_ERR_HDF5, "%s: cannot close", path);
    if (s == TD_OK) {
        snprintf(m->source, sizeof m->source, "%s", source);
        model_checksum(m, m->checksum);
        if (has_checksum && strcmp(stored, m->checksum) != 0)
            s = td_fail(TD_ERR_FORMAT,
                        "%s: checksum mismatch: the file says %s, its tensors hash to %s "
                        "(corrupted or edited)",
                        path, stored, m->checksum);
    }
    if (s != TD_OK && m->params)
        model_free(m);
    return s;
}

TdStatus model_write(const char *path, VitModel *m)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    TD_TRY(model_arch_check(path, &m->arch));
    model_checksum(m, m->checksum);
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return td_fail(TD_ERR_ARG, "%s: path too long", path);
    hid_t fcpl = h5u_sealed_fcpl();
    hid_t f = fcpl >= 0 ? H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT) : -1;
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (f < 0) {
        remove(tmp);
        return td_fail(TD_ERR_IO, "%s: cannot create the temporary file %s", path, tmp);
    }
    TdStatus s = write_header(f, path, m);
    for (int i = 0; s == TD_OK && i < m->table.count; i++)
        s = write_tensor(f, path, &m->table.info[i], m->params + m->table.info[i].offset);
    if (H5Fclose(f) < 0 && s == TD_OK)
        s = td_fail(TD_ERR_HDF5, "%s: cannot close the temporary file %s", path, tmp);
    if (s == TD_OK)
        s = h5u_seal(tmp);
    if (s == TD_OK && rename(tmp, path) != 0)
        s = td_fail(TD_ERR_IO, "%s: cannot rename %s onto it: %s", path, tmp, strerror(errno));
    if (s != TD_OK)
        remove(tmp);
    return s;
}
