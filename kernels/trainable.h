/* trainable: which encoder tensors a fine-tuning mode trains, as a per-tensor
 * mask over a ParamTable (1 = trained). The heads are not part of the table:
 * whether they train is the caller's separate flag.
 *
 * A spec is a comma-separated list; each item is a named set or an fnmatch(3)
 * glob over tensor names (open_clip names, see params.h). Named sets:
 *   full       every tensor
 *   attn       attn.in_proj_weight and attn.out_proj.weight of every block
 *              (the paper's method; 28,311,552 elements for ViT-B/32)
 *   attn_bias  attn plus attn.in_proj_bias and attn.out_proj.bias
 *   mlp        mlp.c_fc.weight and mlp.c_proj.weight
 *   linear     every linear weight in the blocks (attn and mlp together)
 * e.g. "attn,transformer.resblocks.11.ln_*". */
#ifndef TD_TRAINABLE_H
#define TD_TRAINABLE_H

#include <stddef.h>

#include "params.h"
#include "status.h"

/* Fills mask (t->count entries). An empty spec, an unknown set name or a
 * pattern that matches no tensor is a TD_ERR_CONFIG error naming the item. */
TdStatus trainable_mask(const ParamTable *t, const char *spec, unsigned char *mask);

/* Number of parameter elements (not tensors) with mask[i] set. */
size_t trainable_count(const ParamTable *t, const unsigned char *mask);

/* The named sets, for messages and --help: "full, attn, attn_bias, mlp, linear". */
const char *trainable_sets(void);

#endif
