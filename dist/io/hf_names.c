#include "hf_names.h"

#include <stdio.h>
#include <string.h>

static void piece(HfPiece *p, size_t offset, size_t numel, int transpose, const char *fmt,
                  const char *a, const char *b)
{
    snprintf(p->name, sizeof p->name, fmt, a, b);
    p->offset = offset;
    p->numel = numel;
    p->transpose = transpose;
}

/* The Hugging Face sub-name of each one-to-one field of a block. */
static const char *block_field(int field)
{
    switch (field) {
    case BLK_LN1_W: return "layer_norm1.weight";
    case BLK_LN1_B: return "layer_norm1.bias";
    case BLK_OUT_W: return "self_attn.out_proj.weight";
    case BLK_OUT_B: return "self_attn.out_proj.bias";
    case BLK_LN2_W: return "layer_norm2.weight";
    case BLK_LN2_B: return "layer_norm2.bias";
    case BLK_FC_W: return "mlp.fc1.weight";
    case BLK_FC_B: return "mlp.fc1.bias";
    case BLK_PROJ_W: return "mlp.fc2.weight";
    case BLK_PROJ_B: return "mlp.fc2.bias";
    default: return NULL;
    }
}

int hf_pieces(const VitArch *a, const ParamTable *t, int i, HfPiece pieces[3])
{
    if (i < 0 || i >= t->count)
        return 0;
    const size_t n = t->info[i].numel;
    static const char *top[] = {
        [PARAM_CONV1_W] = "vision_model.embeddings.patch_embedding.weight",
        [PARAM_CLASS_EMB] = "vision_model.embeddings.class_embedding",
        [PARAM_POS_EMB] = "vision_model.embeddings.position_embedding.weight",
        [PARAM_LN_PRE_W] = "vision_model.pre_layrnorm.weight",
        [PARAM_LN_PRE_B] = "vision_model.pre_layrnorm.bias",
    };
    if (i < PARAM_BLOCKS_BEGIN) {
        piece(&pieces[0], 0, n, 0, "%s%s", top[i], "");
        return 1;
    }
    if (i == params_ln_post_w(a) || i == params_ln_post_b(a)) {
        piece(&pieces[0], 0, n, 0, "vision_model.post_layernorm.%s%s",
              i == params_ln_post_w(a) ? "weight" : "bias", "");
        return 1;
    }
    if (i == params_proj(a)) {
        piece(&pieces[0], 0, n, 1, "%s%s", "visual_projection.weight", "");
        return 1;
    }
    const int layer = t->info[i].block, field = (i - PARAM_BLOCKS_BEGIN) % PARAM_PER_BLOCK;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "vision_model.encoder.layers.%d.", layer);
    if (field == BLK_QKV_W || field == BLK_QKV_B) {
        /* in_proj stacks q, k, v along its first axis: three equal row blocks */
        static const char *qkv[3] = {"q_proj", "k_proj", "v_proj"};
        const char *kind = field == BLK_QKV_W ? "weight" : "bias";
        for (int k = 0; k < 3; k++) {
            char sub[32];
            snprintf(sub, sizeof sub, "self_attn.%s.%s", qkv[k], kind);
            piece(&pieces[k], (size_t)k * (n / 3), n / 3, 0, "%s%s", prefix, sub);
        }
        return 3;
    }
    piece(&pieces[0], 0, n, 0, "%s%s", prefix, block_field(field));
    return 1;
}

int hf_piece_shape(const ParamInfo *p, int npieces, const HfPiece *pc, int64_t *shape)
{
    for (int d = 0; d < p->ndim; d++)
        shape[d] = p->shape[d];
    if (npieces == 3)
        shape[0] /= 3;
    if (pc->transpose) {
        shape[0] = p->shape[1];
        shape[1] = p->shape[0];
    }
    return p->ndim;
}
