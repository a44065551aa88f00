#include "ref_file.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5util.h"
#include "hf_names.h"

#define REF_MAX_DIMS 4
#define REF_FIELD_MAX (1 << 16) /* far beyond any CLIP tower; keeps sizes in int */

/* ---- attributes ------------------------------------------------------- */

static TdStatus attr_int(hid_t f, const char *path, const char *name, int *v)
{
    double x;
    TD_TRY(h5u_attr_read_f64(f, path, name, &x));
    if (!(x >= 1 && x <= REF_FIELD_MAX) || x != (double)(int)x)
        return td_fail(TD_ERR_FORMAT, "%s: attribute '%s' = %g is not a plausible size", path,
                       name, x);
    *v = (int)x;
    return TD_OK;
}

/* ---- datasets --------------------------------------------------------- */

/* Opens dataset name and returns its rank and dims. */
static TdStatus dset_open(hid_t f, const char *path, const char *name, hid_t *ds, int *rank,
                          hsize_t dims[REF_MAX_DIMS])
{
    /* H5Lexists on "grads/x" needs the group to exist first */
    char prefix[512];
    for (const char *p = strchr(name, '/'); p; p = strchr(p + 1, '/')) {
        snprintf(prefix, sizeof prefix, "%.*s", (int)(p - name), name);
        if (H5Lexists(f, prefix, H5P_DEFAULT) <= 0)
            return td_fail(TD_ERR_FORMAT, "%s: group '%s' is missing", path, prefix);
    }
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0)
        return td_fail(TD_ERR_FORMAT, "%s: dataset '%s' is missing", path, name);
    *ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (*ds < 0)
        return td_fail(TD_ERR_FORMAT, "%s: '%s' is not a dataset", path, name);
    hid_t sp = H5Dget_space(*ds);
    *rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (*rank < 0 || *rank > REF_MAX_DIMS) {
        if (sp >= 0)
            H5Sclose(sp);
        H5Dclose(*ds);
        return td_fail(TD_ERR_FORMAT, "%s: '%s' has an unsupported rank", path, name);
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    return TD_OK;
}

/* Reads dataset name of exactly the given shape (rank dims) as mtype into buf. */
static TdStatus dset_read(hid_t f, const char *path, const char *name, int rank,
                          const long *want, hid_t mtype, void *buf)
{
    hid_t ds;
    int got;
    hsize_t dims[REF_MAX_DIMS];
    TD_TRY(dset_open(f, path, name, &ds, &got, dims));
    int ok = got == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = (long)dims[i] == want[i];
    if (!ok) {
        char gs[96] = "", ws[96] = "";
        for (int i = 0; i < got; i++)
            snprintf(gs + strlen(gs), sizeof gs - strlen(gs), "%s%llu", i ? "," : "",
                     (unsigned long long)dims[i]);
        for (int i = 0; i < rank; i++)
            snprintf(ws + strlen(ws), sizeof ws - strlen(ws), "%s%ld", i ? "," : "", want[i]);
        H5Dclose(ds);
        return td_fail(TD_ERR_FORMAT, "%s: '%s' has shape [%s], expected [%s]", path, name, gs,
                       ws);
    }
    herr_t e = H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(ds);
    if (e < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot read '%s'", path, name);
    return TD_OK;
}

static TdStatus read_floats(hid_t f, const char *path, const char *name, int rank,
                            const long *want, float **out)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)want[i];
    float *buf = td_aligned_calloc(n * sizeof(float));
    if (!buf)
        return TD_ERR_NOMEM;
    TdStatus s = dset_read(f, path, name, rank, want, H5T_NATIVE_FLOAT, buf);
    if (s != TD_OK) {
        td_free(buf);
        return s;
    }
    *out = buf;
    return TD_OK;
}

#define SHAPE(...) ((const long[]){__VA_ARGS__})

/* Assembles group/<HF name> for every tensor into buf (table layout). */
static TdStatus read_param_group(hid_t f, const char *path, const char *group, const RefFile *r,
                                 float *buf)
{
    const ParamTable *t = &r->table;
    size_t maxn = 0;
    for (int i = 0; i < t->count; i++)
        maxn = t->info[i].numel > maxn ? t->info[i].numel : maxn;
    float *tmp = malloc(maxn * sizeof(float));
    if (!tmp)
        return td_fail(TD_ERR_NOMEM, "%s: out of memory", path);
    TdStatus s = TD_OK;
    for (int i = 0; s == TD_OK && i < t->count; i++) {
        const ParamInfo *p = &t->info[i];
        HfPiece pc[3];
        int np = hf_pieces(&r->arch, t, i, pc);
        if (np <= 0) {
            s = td_fail(TD_ERR_INTERNAL, "no Hugging Face name for tensor '%s'", p->name);
            break;
        }
        for (int k = 0; s == TD_OK && k < np; k++) {
            char name[640];
            snprintf(name, sizeof name, "%s/%s", group, pc[k].name);
            long want[REF_MAX_DIMS];
            int rank;
            if (pc[k].transpose) { /* HF [cols, rows] of a tadist [rows, cols] */
                rank = 2;
                want[0] = p->shape[1];
                want[1] = p->shape[0];
            } else if (np == 1) {
                rank = p->ndim;
                for (int j = 0; j < rank; j++)
                    want[j] = p->shape[j];
            } else { /* a third of in_proj: [D, D] or [D] */
                rank = p->ndim;
                want[0] = p->shape[0] / np;
                if (rank > 1)
                    want[1] = p->shape[1];
            }
            s = dset_read(f, path, name, rank, want, H5T_NATIVE_FLOAT, tmp);
            if (s != TD_OK)
                break;
            float *dst = buf + p->offset + pc[k].offset;
            if (pc[k].transpose) {
                const size_t R = (size_t)p->shape[0], C = (size_t)p->shape[1];
                for (size_t a = 0; a < R; a++)
                    for (size_t b = 0; b < C; b++)
                        dst[a * C + b] = tmp[b * R + a];
            } else {
                memcpy(dst, tmp, pc[k].numel * sizeof(float));
            }
        }
    }
    free(tmp);
    return s;
}

static TdStatus read_arch(hid_t f, const char *path, VitArch *a, double *logit_scale)
{
    memset(a, 0, sizeof *a);
    TD_TRY(attr_int(f, path, "vision_hidden_size", &a->width));
    TD_TRY(attr_int(f, path, "vision_num_hidden_layers", &a->layers));
    TD_TRY(attr_int(f, path, "vision_num_attention_heads", &a->heads));
    TD_TRY(attr_int(f, path, "vision_intermediate_size", &a->mlp));
    TD_TRY(attr_int(f, path, "vision_image_size", &a->image));
    TD_TRY(attr_int(f, path, "vision_patch_size", &a->patch));
    TD_TRY(attr_int(f, path, "vision_projection_dim", &a->out_dim));
    double eps;
    TD_TRY(h5u_attr_read_f64(f, path, "vision_layer_norm_eps", &eps));
    a->ln_eps = (float)eps;
    char act[64];
    TD_TRY(h5u_attr_read_str(f, path, "vision_hidden_act", act, sizeof act));
    if (vit_act_parse(act, &a->act) != TD_OK) {
        td_error_clear();
        return td_fail(TD_ERR_FORMAT, "%s: vision_hidden_act '%s' is not supported "
                       "(quick_gelu or gelu)", path, act);
    }
    TD_TRY(h5u_attr_read_f64(f, path, "logit_scale", logit_scale));
    return TD_OK;
}

/* pixel_values gives B and the channel count; head gives C. */
static TdStatus read_batch_sizes(hid_t f, const char *path, RefFile *r)
{
    hid_t ds;
    int rank;
    hsize_t d[REF_MAX_DIMS];
    TD_TRY(dset_open(f, path, "pixel_values", &ds, &rank, d));
    H5Dclose(ds);
    if (rank != 4 || d[0] < 1 || d[0] > REF_FIELD_MAX || d[1] < 1 || d[1] > 64)
        return td_fail(TD_ERR_FORMAT, "%s: pixel_values must be [B,CH,S,S]", path);
    if ((int)d[2] != r->arch.image || (int)d[3] != r->arch.image)
        return td_fail(TD_ERR_FORMAT, "%s: pixel_values are %llux%llu, vision_image_size is %d",
                       path, (unsigned long long)d[2], (unsigned long long)d[3], r->arch.image);
    r->batch = (int)d[0];
    r->arch.channels = (int)d[1];
    TD_TRY(dset_open(f, path, "head", &ds, &rank, d));
    H5Dclose(ds);
    if (rank != 2 || d[0] < 1 || d[0] > REF_FIELD_MAX)
        return td_fail(TD_ERR_FORMAT, "%s: head must be [C,E]", path);
    r->classes = (int)d[0];
    return TD_OK;
}

static TdStatus read_all(hid_t f, const char *path, RefFile *r)
{
    TD_TRY(read_arch(f, path, &r->arch, &r->logit_scale));
    TD_TRY(read_batch_sizes(f, path, r));
    if (vit_arch_validate(&r->arch) != TD_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", td_error_message());
        td_error_clear();
        return td_fail(TD_ERR_FORMAT, "%s: %s", path, msg);
    }
    TD_TRY(params_table_build(&r->arch, &r->table));
    const VitArch *a = &r->arch;
    const long B = r->batch, C = r->classes, D = a->width, E = a->out_dim,
               T = vit_arch_tokens(a), S = a->image;
    TD_TRY(read_floats(f, path, "pixel_values", 4, SHAPE(B, a->channels, S, S), &r->pixels));
    TD_TRY(read_floats(f, path, "hidden_states", 4, SHAPE(a->layers + 1, B, T, D), &r->hidden));
    TD_TRY(read_floats(f, path, "pooled", 2, SHAPE(B, D), &r->pooled));
    TD_TRY(read_floats(f, path, "image_embeds", 2, SHAPE(B, E), &r->embeds));
    TD_TRY(read_floats(f, path, "head", 2, SHAPE(C, E), &r->head));
    TD_TRY(read_floats(f, path, "logits", 2, SHAPE(B, C), &r->logits));
    TD_TRY(read_floats(f, path, "jvp_all", 2, SHAPE(B, E), &r->jvp_all));
    TD_TRY(read_floats(f, path, "jvp_attn", 2, SHAPE(B, E), &r->jvp_attn));
    TD_ALLOC(r->labels, B);
    TD_TRY(dset_read(f, path, "labels", 1, SHAPE(B), H5T_NATIVE_INT, r->labels));
    for (long b = 0; b < B; b++)
        if (r->labels[b] < 0 || r->labels[b] >= C)
            return td_fail(TD_ERR_FORMAT, "%s: labels[%ld] = %d is outside [0, %ld)", path, b,
                           r->labels[b], C);
    TD_TRY(dset_read(f, path, "loss", 0, NULL, H5T_NATIVE_DOUBLE, &r->loss));
    r->grads = td_aligned_calloc(r->table.total * sizeof(float));
    r->tangent = td_aligned_calloc(r->table.total * sizeof(float));
    if (!r->grads || !r->tangent)
        return TD_ERR_NOMEM;
    TD_TRY(read_param_group(f, path, "grads", r, r->grads));
    TD_TRY(read_param_group(f, path, "tangent", r, r->tangent));
    return TD_OK;
}

TdStatus ref_read(const char *path, RefFile *r)
{
    memset(r, 0, sizeof *r);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (access(path, R_OK) != 0)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return td_fail(TD_ERR_FORMAT, "%s: not an HDF5 file", path);
    TdStatus s = read_all(f, path, r);
    if (H5Fclose(f) < 0 && s == TD_OK)
        s = td_fail(TD_ERR_HDF5, "%s: cannot close", path);
    if (s != TD_OK)
        ref_free(r);
    return s;
}

void ref_free(RefFile *r)
{
    td_free(r->pixels);
    td_free(r->hidden);
    td_free(r->pooled);
    td_free(r->embeds);
    td_free(r->head);
    td_free(r->logits);
    td_free(r->jvp_all);
    td_free(r->jvp_attn);
    td_free(r->grads);
    td_free(r->tangent);
    free(r->labels);
    params_table_free(&r->table);
    memset(r, 0, sizeof *r);
}
