/* vit_arch: the shape of a CLIP-style ViT image encoder, and the named ones.
 *
 * Size letters used across kernels/:
 *   B batch, S image side, P patch side, G = S/P patches per side,
 *   T = G*G + 1 tokens, D width, NH heads, HD = D/NH head dim, F MLP width,
 *   E output (projection) dim, L blocks, C classes. */
#ifndef TD_VIT_ARCH_H
#define TD_VIT_ARCH_H

#include "status.h"

typedef enum { TD_ACT_QUICK_GELU = 0, TD_ACT_GELU = 1 } TdAct;

typedef struct {
    int width;    /* D */
    int layers;   /* L */
    int heads;    /* NH */
    int patch;    /* P */
    int image;    /* S */
    int mlp;      /* F */
    int out_dim;  /* E */
    int channels; /* input channels, 3 */
    TdAct act;
    float ln_eps;
} VitArch;

/* Fills *a with a named architecture (vit_b32, vit_b16, vit_l14, vit_tiny, ...). */
TdStatus vit_arch_by_name(const char *name, VitArch *a);
/* Comma-separated list of known names, for error messages and --help. */
const char *vit_arch_names(void);
/* Checks divisibility and positivity; message names the offending field. */
TdStatus vit_arch_validate(const VitArch *a);

static inline int vit_arch_tokens(const VitArch *a)
{
    int g = a->image / a->patch;
    return g * g + 1;
}

const char *vit_act_name(TdAct act);
TdStatus vit_act_parse(const char *name, TdAct *act);

#endif
