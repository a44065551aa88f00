/* test_arrays: array helpers the engine's cmocka tests share (test_vit,
 * test_bf16). Include after <cmocka.h>. */
#ifndef TD_TEST_ARRAYS_H
#define TD_TEST_ARRAYS_H

#include <stdlib.h>

#include "rng.h"

/* n zeroed floats (at least one), or the test fails. */
static inline float *fzeros(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

/* x[0..n) = sd * standard normal draws of r. */
static inline void fill_randn(TdRng *r, float *x, size_t n, double sd)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(sd * rng_normal(r));
}

#endif
