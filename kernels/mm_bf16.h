/* mm_bf16: matrix products in bf16 with fp32 accumulation, through oneDNN's
 * matmul (Debian's libdnnl-dev, C API), for evaluation forwards only
 * (eval.precision = bf16; training stays fp32 on OpenBLAS).
 *
 *   C (M,N) = A (M,K) @ W^T + beta C     A, C fp32; W (N,K) row-major, bf16
 *
 * A is rounded to bf16 (nearest even) on every call; W is a weight, rounded
 * once: an MmBf16 holds the bf16 copy of a whole parameter vector, made by
 * mm_bf16_bind from one fp32 vector and answering only for pointers into that
 * vector (mm_bf16_weight). A product runs on the pool (parallel.h) in row
 * pieces, one single-threaded oneDNN call each; a row's result does not
 * depend on the piece it falls in (test_bf16 checks 1 against 2 threads bit
 * for bit). Single-process: no MPI, no HDF5. */
#ifndef TD_MM_BF16_H
#define TD_MM_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "parallel.h"
#include "status.h"

/* 1 when oneDNN dispatches bf16 products to native bf16 instructions on this
 * CPU (AVX512_BF16 or AMX: dnnl_get_effective_cpu_isa); 0 elsewhere, where
 * callers keep fp32 (oneDNN would emulate bf16, slower than sgemm). */
int mm_bf16_native(void);
/* The ISA oneDNN runs on this CPU, for the log line ("avx512_core_bf16", ...). */
const char *mm_bf16_isa(void);

/* Round to nearest even, as the hardware converts; NaN stays NaN. */
uint16_t mm_bf16_from_f32(float x);
float mm_bf16_to_f32(uint16_t h);

typedef struct MmBf16 {
    const float *src; /* the fp32 vector the copy was made from (borrowed), NULL: unbound */
    size_t n;         /* its length in floats */
    uint16_t *w;      /* (n) bf16 copy; ranges never converted stay 0 */
    uint16_t *a;      /* (a_cap) the A operand of the running product, in bf16 */
    size_t a_cap;
    void *scratch[TD_PAR_MAX_THREADS]; /* oneDNN's scratchpad of each pool thread */
    size_t scratch_cap[TD_PAR_MAX_THREADS];
} MmBf16;

/* Room for a vector of n floats and A operands of up to a_cap values. */
TdStatus mm_bf16_alloc(MmBf16 *m, size_t n, size_t a_cap);
void mm_bf16_free(MmBf16 *m);

/* Binds m to src: converts the count ranges [off[i], off[i] + len[i]) of
 * src (on the pool). From here until the next bind, mm_bf16_weight answers
 * for pointers into src, from this copy: the caller must not change src while
 * it forwards through m (evaluate.c binds once per evaluation pass, whose
 * parameters are const). */
void mm_bf16_bind(MmBf16 *m, const float *src, const size_t *off, const size_t *len, int count);

/* The bf16 copy of w, a pointer into the bound vector. Aborts with a message
 * when w is not inside it (a forward of parameters that were never bound). */
const uint16_t *mm_bf16_weight(const MmBf16 *m, const float *w);

/* C (M,N) = A (M,K; row stride lda) @ W^T + beta C (row stride ldc), with W
 * (N,K; row stride ldw) bf16, beta 0 or 1. A is converted into m->a (M*K <=
 * a_cap). Aborts with a message if oneDNN refuses the product (an internal
 * error: the shapes are the encoder's). */
void mm_bf16_gemm_nt(MmBf16 *m, int M, int N, int K, const float *A, int lda, const uint16_t *W,
                     int ldw, float beta, float *C, int ldc);

#endif
