/* parallel: a tiny fork-join pool for the loops BLAS does not run (LayerNorm,
 * activations, softmax, attention over batch x heads) and for the large
 * products themselves, which ops.c splits over the pool.
 *
 * OpenBLAS runs on one thread (par_set_threads sets it): its own workers spin
 * for a long while after each threaded call and would take the cores the
 * pool needs. The pool's workers spin only briefly (about 50 us) between jobs,
 * then SLEEP on a condition variable. Each index range is always done by the
 * same arithmetic in the same order, so results do not depend on the number
 * of threads. par_set_threads(1) (the default) runs every loop on the calling
 * thread. */
#ifndef TD_PARALLEL_H
#define TD_PARALLEL_H

#include <stddef.h>

/* fn does items [begin, end) as worker tid (0 = the caller). */
typedef void (*ParFn)(void *ctx, size_t begin, size_t end, int tid);

/* Sets the number of threads (>= 1, at most TD_PAR_MAX_THREADS), starting or
 * stopping workers, and sets OpenBLAS to one thread. Not thread-safe; call
 * from the main thread. */
#define TD_PAR_MAX_THREADS 16
void par_set_threads(int n);
int par_threads(void);

/* Splits [0, n) into par_threads() contiguous ranges (no range smaller than
 * min_chunk items) and runs them, the caller doing the first. Returns when all
 * are done. Must not be called from inside fn. */
void par_for(size_t n, size_t min_chunk, ParFn fn, void *ctx);

/* x[0..n) = 0 on the pool: zeroing gradient buffers is memory-bound work that
 * one thread cannot saturate. */
void par_zero(float *x, size_t n);

#endif
