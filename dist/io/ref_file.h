/* ref_file: a reference file computed by Hugging Face transformers for one
 * CLIP vision tower (format: tests/fixtures README in the shared fixtures,
 * "ref.h5"), read into tadist's layout for `tadist check`.
 *
 * Sizes come from the file: the architecture from the vision_* attributes,
 * B and the channel count from pixel_values, C from head. grads/<HF name> and
 * tangent/<HF name> are assembled into flat buffers in table layout
 * (q/k/v stacked into in_proj rows, visual_projection.weight transposed into
 * proj) via hf_names.h. Single-process (any rank, independent HDF5 I/O). */
#ifndef TD_REF_FILE_H
#define TD_REF_FILE_H

#include "params.h"
#include "status.h"
#include "vit_arch.h"

typedef struct {
    VitArch arch;
    ParamTable table;  /* built from arch */
    double logit_scale;
    int batch;         /* B */
    int classes;       /* C */
    float *pixels;     /* (B,CH,S,S) */
    float *hidden;     /* (L+1,B,T,D); 0: after ln_pre, l: output of block l-1 */
    float *pooled;     /* (B,D) */
    float *embeds;     /* (B,E) image_embeds */
    float *head;       /* (C,E) */
    int *labels;       /* (B) */
    float *logits;     /* (B,C) */
    double loss;
    float *grads;      /* table.total floats: d loss / d parameter */
    float *tangent;    /* table.total floats */
    float *jvp_all;    /* (B,E) J . tangent */
    float *jvp_attn;   /* (B,E) J . tangent restricted to the attention q/k/v/out weights+biases */
} RefFile;

/* Reads REF.h5; a missing dataset or attribute, or a shape that disagrees
 * with the architecture, is a TD_ERR_FORMAT error naming the file and item. */
TdStatus ref_read(const char *path, RefFile *r);
void ref_free(RefFile *r);

#endif
