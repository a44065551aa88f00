/* hf_import: a Hugging Face CLIP checkpoint (model.safetensors, F32, F16 or
 * BF16, with config.json beside it when there is one) -> a tadist model file
 * (model_io.h). The architecture comes from config.json's vision_config, or
 * from the tensor shapes without one; text-tower tensors are skipped unless
 * text is set (then config.json is required and the tower goes under /text).
 * Used by `tadist import` and by model.hf_import. Single process. */
#ifndef TD_HF_IMPORT_H
#define TD_HF_IMPORT_H

#include "status.h"

typedef struct {
    const char *src;  /* model.safetensors, or a folder holding it */
    const char *out;  /* the tadist model file to write */
    const char *act;  /* quick_gelu (NULL) or gelu, only without config.json */
    int heads;        /* attention heads: required without config.json, checked against it
                         otherwise (0: not given) */
    int text;         /* also store the text tower under /text */
} HfImportOpts;

/* Reads o->src and writes o->out; logs what it imported. Errors name the
 * file at fault. */
TdStatus hf_import(const HfImportOpts *o);

#endif
