/* params: every parameter of a ViT encoder in ONE contiguous float buffer,
 * walked through a table of names, shapes and offsets. A task vector, an
 * optimizer step and a reduction over the model are each one flat loop.
 *
 * Names follow open_clip's visual tower; linear weights are [out, in] applied
 * as x @ W^T + b; `proj` is [D, E] applied as x @ proj. The table order is
 * fixed (see ParamIndex), so kernels address tensors by index, not by name. */
#ifndef TD_PARAMS_H
#define TD_PARAMS_H

#include <stddef.h>

#include "rng.h"
#include "status.h"
#include "vit_arch.h"

#define TD_PARAM_NAME_MAX 64
#define TD_PARAM_MAX_DIMS 4

typedef struct {
    char name[TD_PARAM_NAME_MAX];
    int ndim;
    int shape[TD_PARAM_MAX_DIMS];
    size_t offset; /* in floats, from the start of the buffer */
    size_t numel;
    int block;     /* transformer block, or -1 outside the blocks */
} ParamInfo;

typedef struct {
    int count;
    ParamInfo *info;
    size_t total; /* floats in the whole buffer */
} ParamTable;

/* Fixed order of the table. Tensors of block l are at
 * PARAM_BLOCKS_BEGIN + l * PARAM_PER_BLOCK + field. */
enum {
    PARAM_CONV1_W = 0,  /* [D, 3, P, P] */
    PARAM_CLASS_EMB,    /* [D] */
    PARAM_POS_EMB,      /* [T, D] */
    PARAM_LN_PRE_W,     /* [D] */
    PARAM_LN_PRE_B,     /* [D] */
    PARAM_BLOCKS_BEGIN
};
enum {
    BLK_LN1_W = 0, /* [D] */
    BLK_LN1_B,     /* [D] */
    BLK_QKV_W,     /* attn.in_proj_weight  [3D, D] rows q, k, v */
    BLK_QKV_B,     /* attn.in_proj_bias    [3D] */
    BLK_OUT_W,     /* attn.out_proj.weight [D, D] */
    BLK_OUT_B,     /* attn.out_proj.bias   [D] */
    BLK_LN2_W,     /* [D] */
    BLK_LN2_B,     /* [D] */
    BLK_FC_W,      /* mlp.c_fc.weight      [F, D] */
    BLK_FC_B,      /* mlp.c_fc.bias        [F] */
    BLK_PROJ_W,    /* mlp.c_proj.weight    [D, F] */
    BLK_PROJ_B,    /* mlp.c_proj.bias      [D] */
    PARAM_PER_BLOCK
};
/* After the blocks: ln_post.weight [D], ln_post.bias [D], proj [D, E]. */
static inline int params_block_index(int layer, int field)
{
    return PARAM_BLOCKS_BEGIN + layer * PARAM_PER_BLOCK + field;
}
static inline int params_ln_post_w(const VitArch *a) { return PARAM_BLOCKS_BEGIN + a->layers * PARAM_PER_BLOCK; }
static inline int params_ln_post_b(const VitArch *a) { return params_ln_post_w(a) + 1; }
static inline int params_proj(const VitArch *a) { return params_ln_post_w(a) + 2; }

TdStatus params_table_build(const VitArch *a, ParamTable *t);
void params_table_free(ParamTable *t);
/* Index of the tensor called name, or -1. */
int params_find(const ParamTable *t, const char *name);

/* Pointer to tensor i inside a flat buffer laid out by t. */
static inline float *params_at(const ParamTable *t, float *buf, int i) { return buf + t->info[i].offset; }
static inline const float *params_at_c(const ParamTable *t, const float *buf, int i)
{
    return buf + t->info[i].offset;
}

/* Fills buf with CLIP-style random initialisation (open_clip's scheme:
 * normal(0, D^-0.5) embeddings, attention and MLP weights scaled by depth,
 * LayerNorm weight 1 / bias 0, proj normal(0, D^-0.5)); deterministic in seed. */
void params_init_random(const VitArch *a, const ParamTable *t, float *buf, unsigned long long seed);
/* x[i] = std * N(0,1) draws of r, i < n. */
void params_fill_normal(TdRng *r, float *x, size_t n, double std);

#endif
