/* model_io: the tadist model file (HDF5) and the in-memory encoder.
 *
 * Layout of MODEL.h5 (documented for users in README.md, "Model files"):
 *   /                      attributes: format = "tadist-vit-1", width, layers,
 *                          heads, patch, image, mlp, out_dim, channels,
 *                          activation ("quick_gelu" | "gelu"), ln_eps,
 *                          source (free text: where the weights came from),
 *                          checksum (hex digest of the parameter values, in
 *                          table order, as little-endian float32)
 *   /<name>                one float32 dataset per tensor, open_clip names
 *                          (conv1.weight, ..., transformer.resblocks.N.attn.in_proj_weight,
 *                          ..., proj), shapes as in params.h.
 * Files are written to "<path>.tmp.<pid>" and renamed, never left half-written. */
#ifndef TD_MODEL_IO_H
#define TD_MODEL_IO_H

#include "params.h"
#include "status.h"
#include "vit_arch.h"

typedef struct {
    VitArch arch;
    ParamTable table;
    float *params;        /* table.total floats, 64-byte aligned (td_aligned_calloc) */
    char source[256];
    char checksum[40];    /* hex digest of params, see model_checksum */
} VitModel;

/* Allocates a zeroed model of architecture a. */
TdStatus model_alloc(VitModel *m, const VitArch *a);
void model_free(VitModel *m);

/* Reads MODEL.h5 (any process, independent I/O). Missing file, missing
 * tensor, wrong shape or a checksum mismatch are errors naming the file and tensor. */
TdStatus model_read(const char *path, VitModel *m);
/* Writes MODEL.h5 atomically (temporary name, then rename); recomputes checksum. */
TdStatus model_write(const char *path, VitModel *m);

/* vit_arch_validate plus bounds that keep every size in params.c from
 * overflowing; the message starts with what (a file name). */
TdStatus model_arch_check(const char *what, const VitArch *a);

/* Number of parameters (sum of numel, not the padded buffer length). */
size_t model_numel(const VitModel *m);
/* One-line description of an architecture, e.g. "width 768, 12 layers, ...". */
void model_describe(const VitArch *a, char *buf, size_t cap);

/* Hex digest of the parameter values (XXH3-128 of the tensors in table order). */
void model_checksum(const VitModel *m, char out[40]);

#endif
