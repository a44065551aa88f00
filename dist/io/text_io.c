/* text_io: see text_io.h. */
#include "text_io.h"

#include <cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5util.h"

TdStatus text_model_alloc(TextModel *m, const TextArch *a)
{
    memset(m, 0, sizeof *m);
    TD_TRY(text_table_build(a, &m->table));
    m->arch = *a;
    m->params = td_aligned_calloc(m->table.total * sizeof(float));
    if (!m->params) {
        params_table_free(&m->table);
        return td_fail(TD_ERR_NOMEM, "text tower: cannot allocate %zu parameters",
                       m->table.total);
    }
    return TD_OK;
}

void text_model_free(TextModel *m)
{
    td_free(m->params);
    params_table_free(&m->table);
    memset(m, 0, sizeof *m);
}

/* ---- config.json ------------------------------------------------------- */

static TdStatus json_int(const char *path, const cJSON *o, const char *key, int def, int lo,
                         int *v)
{
    const cJSON *j = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    if (!j || cJSON_IsNull(j)) {
        *v = def;
        return TD_OK;
    }
    double d = cJSON_IsNumber(j) ? j->valuedouble : -1.0;
    if (!(d >= lo && d <= 1e8) || d != (double)(int)d)
        return td_fail(TD_ERR_FORMAT, "%s: text_config '%s' must be an integer >= %d", path, key,
                       lo);
    *v = (int)d;
    return TD_OK;
}

TdStatus text_arch_from_config(const char *cfg_path, TextArch *a)
{
    FILE *fp = fopen(cfg_path, "rb");
    if (!fp)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s (the text tower needs config.json)",
                       cfg_path, strerror(errno));
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    int big = !feof(fp);
    fclose(fp);
    if (big)
        return td_fail(TD_ERR_FORMAT, "%s: over 64 KiB, not a config.json", cfg_path);
    buf[n] = '\0';
    cJSON *root = cJSON_Parse(buf);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return td_fail(TD_ERR_FORMAT, "%s: not a JSON object", cfg_path);
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (!cJSON_IsObject(tc))
        tc = root; /* a CLIPTextModel(WithProjection) config */
    int proj = 512;
    TdStatus s = json_int(cfg_path, root, "projection_dim", 512, 1, &proj);
    if (s == TD_OK)
        s = json_int(cfg_path, tc, "hidden_size", 512, 1, &a->width);
    if (s == TD_OK)
        s = json_int(cfg_path, tc, "num_hidden_layers", 12, 1, &a->layers);
    if (s == TD_OK)
        s = json_int(cfg_path, tc, "num_attention_heads", 8, 1, &a->heads);
    if (s == TD_OK)
        s = json_int(cfg_path, tc, "intermediate_size", 2048, 1, &a->mlp);
    if (s == TD_OK)
        s = json_int(cfg_path, tc, "max_position_embeddings", 77, 1, &a->ctx);
    if (s == TD_OK)
        s = json_int(cfg_path, tc, "vocab_size", 49408, 1, &a->vocab);
    if (s == TD_OK)
        s = json_int(cfg_path, tc, "projection_dim", proj, 1, &a->out_dim);
    if (s == TD_OK)
        s = json_int(cfg_path, tc, "eos_token_id", 49407, 0, &a->eos_id);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(tc, "hidden_act");
    if (s == TD_OK)
        s = act && !cJSON_IsString(act)
                ? td_fail(TD_ERR_FORMAT, "%s: text_config 'hidden_act' is not a string", cfg_path)
                : vit_act_parse(act ? act->valuestring : "quick_gelu", &a->act);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(tc, "layer_norm_eps");
    a->ln_eps = cJSON_IsNumber(eps) ? (float)eps->valuedouble : 1e-5f;
    cJSON_Delete(root);
    TD_TRY(s);
    if (a->eos_id >= a->vocab && a->eos_id == 49407)
        a->eos_id = a->vocab - 1; /* default id of a smaller vocabulary: its highest */
    if (text_arch_validate(a) != TD_OK)
        return td_fail(TD_ERR_FORMAT, "%s: text_config: %s", cfg_path, td_error_message());
    return TD_OK;
}

/* ---- Hugging Face tensors ------------------------------------------------ */

static TdStatus st_piece(const StFile *f, const char *name, const ParamInfo *p, int rows,
                         int transpose, float *dst)
{
    const StTensor *t = st_find(f, name);
    if (!t)
        return td_fail(TD_ERR_FORMAT, "%s: missing tensor '%s' (needed by --text)", f->path, name);
    int64_t want[2] = {rows, p->ndim == 2 ? p->shape[1] : 0};
    if (transpose) {
        want[0] = p->shape[1];
        want[1] = p->shape[0];
    }
    int ok = t->ndim == p->ndim && t->shape[0] == want[0] && (p->ndim == 1 || t->shape[1] == want[1]);
    if (!ok)
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s' does not have the shape the config implies",
                       f->path, name);
    if (!transpose)
        return st_read_f32(f, t, dst);
    float *tmp = malloc(t->numel * sizeof *tmp);
    if (!tmp)
        return td_fail(TD_ERR_NOMEM, "%s: out of memory for '%s'", f->path, name);
    TdStatus s = st_read_f32(f, t, tmp);
    const int R = p->shape[0], C = p->shape[1];
    for (int r = 0; s == TD_OK && r < R; r++)
        for (int c = 0; c < C; c++)
            dst[(size_t)r * C + c] = tmp[(size_t)c * R + r];
    free(tmp);
    return s;
}

static const char *hf_block_field(int field)
{
    static const char *k[PARAM_PER_BLOCK] = {
        [BLK_LN1_W] = "layer_norm1.weight", [BLK_LN1_B] = "layer_norm1.bias",
        [BLK_OUT_W] = "self_attn.out_proj.weight", [BLK_OUT_B] = "self_attn.out_proj.bias",
        [BLK_LN2_W] = "layer_norm2.weight", [BLK_LN2_B] = "layer_norm2.bias",
        [BLK_FC_W] = "mlp.fc1.weight",      [BLK_FC_B] = "mlp.fc1.bias",
        [BLK_PROJ_W] = "mlp.fc2.weight",    [BLK_PROJ_B] = "mlp.fc2.bias"};
    return k[field];
}

TdStatus text_import_st(const StFile *f, TextModel *m)
{
    const TextArch *a = &m->arch;
    const ParamInfo *info = m->table.info;
#define DST(i) (m->params + info[i].offset)
    TD_TRY(st_piece(f, "text_model.embeddings.token_embedding.weight", &info[TEXT_TOKEN_EMB],
                    info[TEXT_TOKEN_EMB].shape[0], 0, DST(TEXT_TOKEN_EMB)));
    TD_TRY(st_piece(f, "text_model.embeddings.position_embedding.weight", &info[TEXT_POS_EMB],
                    info[TEXT_POS_EMB].shape[0], 0, DST(TEXT_POS_EMB)));
    char name[160];
    for (int l = 0; l < a->layers; l++)
        for (int fld = 0; fld < PARAM_PER_BLOCK; fld++) {
            int i = text_block_index(l, fld);
            if (fld == BLK_QKV_W || fld == BLK_QKV_B) {
                static const char *qkv[3] = {"q_proj", "k_proj", "v_proj"};
                size_t third = info[i].numel / 3;
                for (int k = 0; k < 3; k++) {
                    snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.%s.%s", l,
                             qkv[k], fld == BLK_QKV_W ? "weight" : "bias");
                    TD_TRY(st_piece(f, name, &info[i], a->width, 0, DST(i) + k * third));
                }
                continue;
            }
            snprintf(name, sizeof name, "text_model.encoder.layers.%d.%s", l, hf_block_field(fld));
            TD_TRY(st_piece(f, name, &info[i], info[i].shape[0], 0, DST(i)));
        }
    TD_TRY(st_piece(f, "text_model.final_layer_norm.weight", &info[text_ln_final_w(a)],
                    a->width, 0, DST(text_ln_final_w(a))));
    TD_TRY(st_piece(f, "text_model.final_layer_norm.bias", &info[text_ln_final_b(a)], a->width,
                    0, DST(text_ln_final_b(a))));
    TD_TRY(st_piece(f, "text_projection.weight", &info[text_proj(a)], 0, 1, DST(text_proj(a))));
#undef DST
    return TD_OK;
}

/* ---- HDF5 ------------------------------------------------------------------ */

#define TEXT_INT_ATTRS(X)                                                                      \
    X(width) X(layers) X(heads) X(mlp) X(ctx) X(vocab) X(out_dim) X(eos_id)

static TdStatus write_group(hid_t f, const char *path, const TextModel *m)
{
    hid_t g = H5Gcreate2(f, "text", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot create group /text (is there one already?)", path);
    const TextArch *a = &m->arch;
    char what[1100];
    snprintf(what, sizeof what, "%.1000s /text", path);
    TdStatus s = h5u_attr_write_str(g, what, "format", "tadist-text-1");
#define X(field)                                                                               \
    if (s == TD_OK)                                                                            \
        s = h5u_attr_write(g, what, #field, H5T_STD_I32LE, H5T_NATIVE_INT, &a->field);
    TEXT_INT_ATTRS(X)
#undef X
    if (s == TD_OK)
        s = h5u_attr_write_str(g, what, "activation", vit_act_name(a->act));
    if (s == TD_OK)
        s = h5u_attr_write(g, what, "ln_eps", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &a->ln_eps);
    for (int i = 0; s == TD_OK && i < m->table.count; i++) {
        const ParamInfo *p = &m->table.info[i];
        hsize_t dims[TD_PARAM_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++)
            dims[d] = (hsize_t)p->shape[d];
        hid_t sp = H5Screate_simple(p->ndim, dims, NULL);
        hid_t ds = sp >= 0 ? H5Dcreate2(g, p->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                        H5P_DEFAULT)
                           : -1;
        herr_t w = ds >= 0 ? H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                      m->params + p->offset)
                           : -1;
        if (ds >= 0)
            H5Dclose(ds);
        if (sp >= 0)
            H5Sclose(sp);
        if (w < 0)
            s = td_fail(TD_ERR_HDF5, "%s: cannot write tensor /text/%s", path, p->name);
    }
    H5Gclose(g);
    return s;
}

static TdStatus copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s", from, strerror(errno));
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return td_fail(TD_ERR_IO, "%s: cannot create: %s", to, strerror(errno));
    }
    static char buf[1 << 20];
    size_t n;
    int bad = 0;
    while (!bad && (n = fread(buf, 1, sizeof buf, in)) > 0)
        bad = fwrite(buf, 1, n, out) != n;
    bad |= ferror(in);
    fclose(in);
    bad |= fclose(out) != 0;
    return bad ? td_fail(TD_ERR_IO, "cannot copy %s to %s", from, to) : TD_OK;
}

TdStatus text_model_add(const char *path, const TextModel *m)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    TD_TRY(copy_file(path, tmp));
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    TdStatus s = f >= 0 ? write_group(f, path, m)
                        : td_fail(TD_ERR_FORMAT, "%s: not an HDF5 file", path);
    if (f >= 0 && H5Fclose(f) < 0 && s == TD_OK)
        s = td_fail(TD_ERR_HDF5, "%s: cannot close", tmp);
    if (s == TD_OK)
        s = h5u_seal(tmp); /* the model file's seal, renewed (h5util.h) */
    if (s == TD_OK && rename(tmp, path) != 0)
        s = td_fail(TD_ERR_IO, "%s: cannot rename %s onto it: %s", path, tmp, strerror(errno));
    if (s != TD_OK)
        unlink(tmp);
    return s;
}

static TdStatus read_tensor(hid_t g, const char *path, const ParamInfo *p, float *x)
{
    if (H5Lexists(g, p->name, H5P_DEFAULT) <= 0)
        return td_fail(TD_ERR_FORMAT, "%s: tensor /text/%s is missing", path, p->name);
    hid_t ds = H5Dopen2(g, p->name, H5P_DEFAULT);
    hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t dims[TD_PARAM_MAX_DIMS] = {0};
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == p->ndim &&
             H5Sget_simple_extent_dims(sp, dims, NULL) == p->ndim;
    for (int d = 0; ok && d < p->ndim; d++)
        ok = dims[d] == (hsize_t)p->shape[d];
    TdStatus s = ok ? TD_OK
                    : td_fail(TD_ERR_FORMAT, "%s: tensor /text/%s has the wrong shape", path,
                              p->name);
    if (s == TD_OK && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        s = td_fail(TD_ERR_HDF5, "%s: cannot read tensor /text/%s", path, p->name);
    if (sp >= 0)
        H5Sclose(sp);
    if (ds >= 0)
        H5Dclose(ds);
    return s;
}

TdStatus text_model_read(const char *path, TextModel *m)
{
    memset(m, 0, sizeof *m);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (access(path, R_OK) == 0)
        TD_TRY(h5u_check_file(path)); /* superblock, size and seal first (h5util.h) */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return td_fail(access(path, R_OK) != 0 ? TD_ERR_IO : TD_ERR_FORMAT,
                       "%s: cannot open as HDF5", path);
    if (H5Lexists(f, "text", H5P_DEFAULT) <= 0) {
        H5Fclose(f);
        return td_fail(TD_ERR_FORMAT,
                       "%s: no text tower (/text); import the checkpoint with `tadist import "
                       "--text`",
                       path);
    }
    hid_t g = H5Gopen2(f, "text", H5P_DEFAULT);
    TextArch a = {0};
    char act[32] = "", what[1100];
    snprintf(what, sizeof what, "%.1000s /text", path);
    TdStatus s = h5u_check_format(g, what, "tadist-text-1", "tadist text tower");
#define X(field)                                                                               \
    if (s == TD_OK)                                                                            \
        s = h5u_attr_read(g, what, #field, H5T_NATIVE_INT, &a.field);
    TEXT_INT_ATTRS(X)
#undef X
    if (s == TD_OK)
        s = h5u_attr_read_str(g, what, "activation", act, sizeof act);
    if (s == TD_OK)
        s = h5u_attr_read(g, what, "ln_eps", H5T_NATIVE_FLOAT, &a.ln_eps);
    if (s == TD_OK)
        s = vit_act_parse(act, &a.act);
    if (s == TD_OK)
        s = text_model_alloc(m, &a);
    for (int i = 0; s == TD_OK && i < m->table.count; i++)
        s = read_tensor(g, path, &m->table.info[i], m->params + m->table.info[i].offset);
    H5Gclose(g);
    H5Fclose(f);
    if (s != TD_OK && m->params)
        text_model_free(m);
    return s;
}
