/* xsum: exact sums of float arrays whose result does not depend on the order
 * of the terms or on how they are grouped.
 *
 * A float sum rounds after every addition, so a gradient summed over ranks in
 * another order (another rank count, another MPI reduction tree) differs in
 * its last bits, and AdamW turns last-bit differences into visibly different
 * task vectors within a few hundred steps. Here every term is converted to
 * 64-bit fixed point with one scale 2^e shared by all terms of a tensor:
 *
 *   q = trunc(x * 2^e)           (x * 2^e is exact: a power-of-two scaling)
 *   sum = (float)(sum of q) * 2^-e
 *
 * Integer addition is associative, so any grouping (per rank, then
 * MPI_Allreduce with MPI_INT64_T) gives the same bits. e comes from the
 * largest |x| over ALL terms (xsum_exponent), which the caller agrees on
 * first (a max is order-independent too). Terms smaller than 2^-e are
 * truncated: with `terms` addends the largest uses 62 - ceil(log2(terms))
 * bits, so an entry 2^-30 below the largest still keeps all 24 bits of its
 * mantissa. Single-process; no MPI here. */
#ifndef TD_XSUM_H
#define TD_XSUM_H

#include <stddef.h>
#include <stdint.h>

/* Largest |x[i]|; +inf when any entry is not finite (NaN included), so that a
 * caller's max over parts still reports it. */
float xsum_max_abs(const float *x, size_t n);

/* The scale exponent e for terms whose largest magnitude is max_abs (finite,
 * >= 0) and whose count is at most terms (>= 1): max_abs * 2^e * terms < 2^62.
 * 0 when max_abs is 0. */
int xsum_exponent(float max_abs, long terms);

/* acc[i] += trunc(x[i] * 2^e). */
void xsum_add(int64_t *acc, const float *x, size_t n, int e);

/* out[i] = acc[i] * 2^-e, rounded once to float. */
void xsum_result(float *out, const int64_t *acc, size_t n, int e);

#endif
