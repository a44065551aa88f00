/* text_io: the text tower inside a tadist model file, and its import from a
 * Hugging Face CLIP checkpoint.
 *
 * Layout (added to MODEL.h5 by `tadist import --text`; the vision tower at
 * the root is untouched, so model_read ignores this group):
 *   /text                  group; attributes format = "tadist-text-1", width,
 *                          layers, heads, mlp, ctx, vocab, out_dim, eos_id (int32),
 *                          activation ("quick_gelu" | "gelu"), ln_eps (float)
 *   /text/<name>           one float32 dataset per tensor, open_clip text names
 *                          (token_embedding.weight, positional_embedding,
 *                          transformer.resblocks.N...., ln_final.*, text_projection),
 *                          shapes as in kernels/text.h.
 * Hugging Face -> tadist: text_model.embeddings.{token,position}_embedding.weight,
 * encoder.layers.N.{layer_norm1, layer_norm2, self_attn.{q,k,v}_proj (stacked
 * into attn.in_proj_*), self_attn.out_proj, mlp.fc1 (c_fc), mlp.fc2 (c_proj)},
 * final_layer_norm (ln_final), text_projection.weight [E,D] (transposed).
 * Single-process (any rank, independent HDF5 I/O). */
#ifndef TD_TEXT_IO_H
#define TD_TEXT_IO_H

#include "params.h"
#include "safetensors.h"
#include "status.h"
#include "text.h"

typedef struct {
    TextArch arch;
    ParamTable table;
    float *params; /* table.total floats, td_aligned_calloc */
} TextModel;

TdStatus text_model_alloc(TextModel *m, const TextArch *a);
void text_model_free(TextModel *m);

/* Reads /text of MODEL.h5; a file without it is an error that says how to make one. */
TdStatus text_model_read(const char *path, TextModel *m);
/* Adds /text to the existing MODEL.h5 atomically: the file is copied to
 * "<path>.tmp.<pid>", the group written there, and the copy renamed onto path. */
TdStatus text_model_add(const char *path, const TextModel *m);

/* Text architecture from config.json (text_config of a CLIPModel; missing
 * fields take CLIPTextConfig's defaults; projection_dim from the top level). */
TdStatus text_arch_from_config(const char *cfg_path, TextArch *a);
/* Fills m (allocated for arch) from the text_model.* and text_projection.weight
 * tensors of f; a missing or misshapen tensor is an error naming it. */
TdStatus text_import_st(const StFile *f, TextModel *m);

#endif
