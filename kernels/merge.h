/* merge: the numerics of merging task vectors, one chunk of a flat buffer at a
 * time. Single-process, no MPI: dist/merge.c streams tensors through these
 * and sums the double accumulators over ranks.
 *
 * Methods (docs/METHOD.md, "Merge methods beyond plain addition"):
 *   sum / mean  acc += w_t * tau_t; mean divides by the number of tasks
 *   TIES        trim each tau_t to its top-k% magnitudes (one threshold per task
 *               over the model, or per tensor), elect the sign of sum_t w_t*trim_t,
 *               then sum or average the entries that agree with it
 *   DARE        drop each entry with probability p, scale the rest by 1/(1-p);
 *               the coin of entry i of task t is a pure function of
 *               (seed, t, i), i the index in table layout, so a result does
 *               not depend on how the model is cut into chunks or ranks
 *   negation    a coefficient of -alpha on one task vector
 * Accumulators are double so that a sum over ranks in any order rounds to the
 * same float. Ties at the top-k threshold are all kept. */
#ifndef TD_MERGE_H
#define TD_MERGE_H

#include <stddef.h>
#include <stdint.h>

/* acc[i] += w * x[i] */
void merge_accum(double *acc, const float *x, double w, size_t n);

/* out[i] = (float)(scale * acc[i]) */
void merge_to_float(float *out, const double *acc, double scale, size_t n);

/* Entries kept by top-k%: round(k/100 * n), within [0, n]. */
size_t merge_topk_count(size_t n, double k_percent);

/* The keep-th largest |x[i]| over x (n): the threshold of top-k. keep = 0
 * gives +inf (nothing kept), keep >= n gives 0 (everything). scratch holds n
 * floats (overwritten). Expected O(n) selection. */
float merge_kth_largest_abs(const float *x, size_t n, size_t keep, float *scratch);

/* Zeroes every x[i] with |x[i]| < thr; returns how many are non-zero after. */
size_t merge_trim(float *x, size_t n, float thr);

/* DARE on x[0..n) whose first entry has global index first (table layout). */
void merge_dare(float *x, size_t n, double p, uint64_t seed, uint64_t task, uint64_t first);

/* The uniform number in [0,1) of entry index of task (seed, task): the DARE coin. */
double merge_dare_uniform(uint64_t seed, uint64_t task, uint64_t index);

/* TIES disjoint step for one task: v = w * x[i]; where v != 0 and has the
 * sign of elect[i] (elect[i] != 0): sum[i] += v, cnt[i] += 1. */
void merge_ties_agree(double *sum, double *cnt, const double *elect, const float *x, double w,
                      size_t n);

/* out[i] = mean ? sum[i] / cnt[i] (0 where cnt is 0) : sum[i]. */
void merge_ties_finish(float *out, const double *sum, const double *cnt, size_t n, int mean);

#endif
