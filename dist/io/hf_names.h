/* hf_names: how a Hugging Face CLIP vision tower maps onto tadist's tensors.
 *
 * Each tadist tensor is made of one to three Hugging Face tensors:
 *   attn.in_proj_weight [3D,D] = rows of q_proj.weight, k_proj.weight, v_proj.weight
 *   attn.in_proj_bias   [3D]   = q_proj.bias, k_proj.bias, v_proj.bias
 *   proj [D,E]                 = visual_projection.weight [E,D] transposed
 *   conv1.weight               = vision_model.embeddings.patch_embedding.weight
 *   positional_embedding       = vision_model.embeddings.position_embedding.weight
 *   ln_pre.*                   = vision_model.pre_layrnorm.* (sic)
 *   ... and so on, one to one. Used by import, export and check. */
#ifndef TD_HF_NAMES_H
#define TD_HF_NAMES_H

#include <stdint.h>

#include "params.h"

typedef struct {
    char name[128];   /* Hugging Face key, e.g. vision_model.encoder.layers.0.self_attn.q_proj.weight */
    size_t offset;    /* where this piece starts inside the tadist tensor, in floats */
    size_t numel;     /* floats in the piece */
    int transpose;    /* 1: the HF tensor is the transpose of the tadist tensor (proj) */
} HfPiece;

/* Fills pieces (up to 3) for tadist tensor index i of table t; returns how many. */
int hf_pieces(const VitArch *a, const ParamTable *t, int i, HfPiece pieces[3]);

/* The shape of Hugging Face piece pc (one of npieces) of tadist tensor p, into
 * shape; returns its rank (p->ndim). */
int hf_piece_shape(const ParamInfo *p, int npieces, const HfPiece *pc, int64_t *shape);

#endif
