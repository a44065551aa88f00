#include "params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static void set_info(ParamInfo *p, const char *name, int block, int ndim, const int *shape)
{
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    p->block = block;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
}

#define SHAPE(...) ((const int[]){__VA_ARGS__})

TdStatus params_table_build(const VitArch *a, ParamTable *t)
{
    TD_TRY(vit_arch_validate(a));
    const int D = a->width, P = a->patch, F = a->mlp, E = a->out_dim, T = vit_arch_tokens(a);
    t->count = PARAM_BLOCKS_BEGIN + a->layers * PARAM_PER_BLOCK + 3;
    TD_ALLOC(t->info, t->count);
    ParamInfo *p = t->info;
    set_info(&p[PARAM_CONV1_W], "conv1.weight", -1, 4, SHAPE(D, a->channels, P, P));
    set_info(&p[PARAM_CLASS_EMB], "class_embedding", -1, 1, SHAPE(D));
    set_info(&p[PARAM_POS_EMB], "positional_embedding", -1, 2, SHAPE(T, D));
    set_info(&p[PARAM_LN_PRE_W], "ln_pre.weight", -1, 1, SHAPE(D));
    set_info(&p[PARAM_LN_PRE_B], "ln_pre.bias", -1, 1, SHAPE(D));
    static const char *fields[PARAM_PER_BLOCK] = {
        "ln_1.weight",          "ln_1.bias",          "attn.in_proj_weight",
        "attn.in_proj_bias",    "attn.out_proj.weight", "attn.out_proj.bias",
        "ln_2.weight",          "ln_2.bias",          "mlp.c_fc.weight",
        "mlp.c_fc.bias",        "mlp.c_proj.weight",  "mlp.c_proj.bias"};
    for (int l = 0; l < a->layers; l++) {
        const int *shapes[PARAM_PER_BLOCK] = {SHAPE(D),    SHAPE(D), SHAPE(3 * D, D), SHAPE(3 * D),
                                              SHAPE(D, D), SHAPE(D), SHAPE(D),        SHAPE(D),
                                              SHAPE(F, D), SHAPE(F), SHAPE(D, F),     SHAPE(D)};
        static const int ndims[PARAM_PER_BLOCK] = {1, 1, 2, 1, 2, 1, 1, 1, 2, 1, 2, 1};
        for (int f = 0; f < PARAM_PER_BLOCK; f++) {
            char name[TD_PARAM_NAME_MAX];
            snprintf(name, sizeof name, "transformer.resblocks.%d.%s", l, fields[f]);
            set_info(&p[params_block_index(l, f)], name, l, ndims[f], shapes[f]);
        }
    }
    set_info(&p[params_ln_post_w(a)], "ln_post.weight", -1, 1, SHAPE(D));
    set_info(&p[params_ln_post_b(a)], "ln_post.bias", -1, 1, SHAPE(D));
    set_info(&p[params_proj(a)], "proj", -1, 2, SHAPE(D, E));
    size_t off = 0;
    for (int i = 0; i < t->count; i++) {
        /* keep every tensor 16-float (64-byte) aligned for vector loads */
        p[i].offset = off;
        off += (p[i].numel + 15) / 16 * 16;
    }
    t->total = off;
    return TD_OK;
}

void params_table_free(ParamTable *t)
{
    free(t->info);
    t->info = NULL;
    t->count = 0;
    t->total = 0;
}

int params_find(const ParamTable *t, const char *name)
{
    for (int i = 0; i < t->count; i++)
        if (strcmp(t->info[i].name, name) == 0)
            return i;
    return -1;
}

void params_fill_normal(TdRng *r, float *x, size_t n, double std)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(std * rng_normal(r));
}

static void fill_const(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

void params_init_random(const VitArch *a, const ParamTable *t, float *buf, unsigned long long seed)
{
    const double D = a->width, L = a->layers;
    const double attn_std = pow(D, -0.5), proj_std = pow(D, -0.5) * pow(2.0 * L, -0.5);
    const double fc_std = pow(2.0 * D, -0.5);
    memset(buf, 0, t->total * sizeof(float));
    for (int i = 0; i < t->count; i++) {
        const ParamInfo *p = &t->info[i];
        float *x = buf + p->offset;
        TdRng r;
        rng_seed(&r, rng_derive(seed, (uint64_t)i, 0));
        int field = p->block >= 0 ? (i - PARAM_BLOCKS_BEGIN) % PARAM_PER_BLOCK : -1;
        if (i == PARAM_CONV1_W) {
            params_fill_normal(&r, x, p->numel, pow(a->channels * a->patch * a->patch, -0.5));
        } else if (i == PARAM_CLASS_EMB || i == PARAM_POS_EMB || i == params_proj(a)) {
            params_fill_normal(&r, x, p->numel, pow(D, -0.5));
        } else if (field == BLK_QKV_W) {
            params_fill_normal(&r, x, p->numel, attn_std);
        } else if (field == BLK_OUT_W || field == BLK_PROJ_W) {
            params_fill_normal(&r, x, p->numel, proj_std);
        } else if (field == BLK_FC_W) {
            params_fill_normal(&r, x, p->numel, fc_std);
        } else if (p->ndim == 1 && strstr(p->name, ".weight") &&
                   (strstr(p->name, "ln_") != NULL)) {
            fill_const(x, p->numel, 1.0f);
        }
        /* biases and LayerNorm biases stay zero */
    }
}
