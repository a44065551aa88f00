/* safetensors: a validating reader of Hugging Face .safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {...}}, then the data area; offsets are relative to it.
 * st_open checks the whole header before anything is read (header length
 * against the file size, JSON syntax, dtype, shape, offsets inside the data area
 * and equal to numel * dtype size, duplicate names); every error is one line
 * naming the file and, where there is one, the tensor. The file is mapped
 * read-only. Single-process: no MPI. */
#ifndef TD_SAFETENSORS_H
#define TD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    char dtype[16];   /* as in the file: F32, F16, BF16, I64, ... */
    int elem_size;    /* bytes per element */
    int ndim;         /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    size_t begin, end; /* byte range inside the data area */
} StTensor;

typedef struct {
    char path[512];
    void *map;        /* whole file, read-only */
    size_t map_size;
    const unsigned char *data; /* start of the data area */
    size_t data_size;
    int count;
    StTensor *tensors; /* in header order */
} StFile;

/* Opens and validates path; on failure *f holds nothing to close. */
TdStatus st_open(const char *path, StFile *f);
void st_close(StFile *f);

/* The tensor called name, or NULL. */
const StTensor *st_find(const StFile *f, const char *name);

/* Converts tensor t (F32, F16 or BF16) to float32 into out[t->numel]. Other
 * dtypes are an error naming the file and tensor. */
TdStatus st_read_f32(const StFile *f, const StTensor *t, float *out);

/* Exact conversions of IEEE binary16 and bfloat16 bit patterns (subnormals,
 * infinities and NaN payloads preserved). */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);

#endif
