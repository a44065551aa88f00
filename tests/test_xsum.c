/* kernels/xsum: exact sums whose bits do not depend on the order or grouping
 * of the terms (how a step's gradient is summed over micro-batches and ranks:
 * dist/stages/train_step.h).
 * Claims: (1) any grouping and order of the same terms gives the same bits;
 * (2) the result is the exact sum rounded once, up to the truncation of
 * terms below the fixed-point unit, checked against a long double sum with
 * that bound; (3) sums of terms that are multiples of the unit are exact;
 * (4) a non-finite term is reported by xsum_max_abs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "rng.h"
#include "xsum.h"

enum { TERMS = 24, N = 4099 };

/* Terms spanning 2^-40 .. 2^10, random signs, some exact cancellations. */
static float *make_terms(TdRng *r)
{
    float *x = malloc((size_t)TERMS * N * sizeof *x);
    for (int t = 0; t < TERMS; t++)
        for (int i = 0; i < N; i++) {
            double e = -40.0 + 50.0 * rng_uniform(r);
            float v = (float)ldexp(1.0 + rng_uniform(r), (int)e);
            x[(size_t)t * N + i] = rng_uniform(r) < 0.5 ? -v : v;
        }
    for (int i = 0; i < N; i += 7) /* term 1 cancels term 0 exactly */
        x[(size_t)N + i] = -x[i];
    return x;
}

static int exponent_of(const float *x)
{
    float m = 0;
    for (int t = 0; t < TERMS; t++) {
        float mt = xsum_max_abs(x + (size_t)t * N, N);
        m = mt > m ? mt : m;
    }
    return xsum_exponent(m, TERMS);
}

static void test_any_grouping_same_bits(void **state)
{
    (void)state;
    TdRng r;
    rng_seed(&r, 11);
    float *x = make_terms(&r);
    const int e = exponent_of(x);
    int64_t *ref = calloc(N, sizeof *ref), *part = calloc(N, sizeof *part),
            *tot = calloc(N, sizeof *tot);
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    for (int t = 0; t < TERMS; t++)
        xsum_add(ref, x + (size_t)t * N, N, e);
    xsum_result(a, ref, N, e);
    for (int trial = 0; trial < 20; trial++) {
        /* a random order, cut into 1..6 groups ("ranks"), each summed alone,
         * then the group sums added in a random order */
        int perm[TERMS], cut[TERMS + 1], groups = 1 + (int)rng_below(&r, 6);
        for (int t = 0; t < TERMS; t++)
            perm[t] = t;
        for (int t = TERMS - 1; t > 0; t--) {
            int j = (int)rng_below(&r, (uint64_t)t + 1), v = perm[t];
            perm[t] = perm[j], perm[j] = v;
        }
        for (int g = 0; g <= groups; g++)
            cut[g] = g * TERMS / groups;
        memset(tot, 0, N * sizeof *tot);
        for (int g = groups - 1; g >= 0; g--) {
            memset(part, 0, N * sizeof *part);
            for (int k = cut[g]; k < cut[g + 1]; k++)
                xsum_add(part, x + (size_t)perm[k] * N, N, e);
            for (int i = 0; i < N; i++)
                tot[i] += part[i];
        }
        xsum_result(b, tot, N, e);
        assert_memory_equal(a, b, N * sizeof *a);
    }
    /* a plain float sum in two orders differs somewhere: the test's terms are
     * hard enough to tell an exact sum from a rounded one */
    int differ = 0;
    for (int i = 0; i < N; i++) {
        float f = 0, g = 0;
        for (int t = 0; t < TERMS; t++)
            f += x[(size_t)t * N + i];
        for (int t = TERMS - 1; t >= 0; t--)
            g += x[(size_t)t * N + i];
        differ += f != g;
    }
    printf("  plain float sums forwards and backwards differ in %d of %d entries; the exact "
           "sums in none\n", differ, N);
    assert_true(differ > 0);
    free(x), free(ref), free(part), free(tot), free(a), free(b);
}

static void test_close_to_exact(void **state)
{
    (void)state;
    TdRng r;
    rng_seed(&r, 12);
    float *x = make_terms(&r);
    const int e = exponent_of(x);
    int64_t *acc = calloc(N, sizeof *acc);
    float *out = malloc(N * sizeof *out);
    for (int t = 0; t < TERMS; t++)
        xsum_add(acc, x + (size_t)t * N, N, e);
    xsum_result(out, acc, N, e);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        long double s = 0; /* 64-bit mantissa: exact for these 24 terms of 50 binades? not
                              always, so allow its own rounding too */
        for (int t = 0; t < TERMS; t++)
            s += x[(size_t)t * N + i];
        /* truncation: each term loses less than one unit 2^-e; then one rounding
         * to float (half an ulp of the result) */
        long double bound = TERMS * ldexpl(1.0L, -e) + 0.5L * ldexpl(1.0L, ilogbl(s) - 23) +
                            fabsl(s) * ldexpl(1.0L, -60);
        long double d = fabsl((long double)out[i] - s);
        if (s != 0 && d / fabsl(s) > worst)
            worst = (double)(d / fabsl(s));
        assert_true(d <= bound || (s == 0 && d <= TERMS * ldexpl(1.0L, -e)));
    }
    printf("  unit 2^-%d; worst relative error against a long double sum %.3g\n", e, worst);
    free(x), free(acc), free(out);
}

static void test_exact_multiples(void **state)
{
    (void)state;
    /* integers: exact in fixed point; their float sum is the exact integer sum
     * rounded once */
    const int n = 1000;
    float *x = malloc(n * sizeof *x);
    int64_t acc = 0, want = 0;
    TdRng r;
    rng_seed(&r, 13);
    float m = 0;
    for (int i = 0; i < n; i++) {
        x[i] = (float)((int64_t)rng_below(&r, 1u << 24) - (1 << 23));
        want += (int64_t)x[i];
        m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    }
    int e = xsum_exponent(m, n);
    for (int i = 0; i < n; i++)
        xsum_add(&acc, x + i, 1, e);
    float got;
    xsum_result(&got, &acc, 1, e);
    assert_true(got == (float)want);
    /* all zeros */
    assert_int_equal(xsum_exponent(0.0f, 5), 0);
    free(x);
}

static void test_non_finite(void **state)
{
    (void)state;
    float v[4] = {1.0f, -2.0f, 3.0f, 0.5f};
    assert_true(xsum_max_abs(v, 4) == 3.0f);
    v[2] = NAN;
    assert_true(isinf(xsum_max_abs(v, 4)));
    v[2] = -INFINITY;
    assert_true(isinf(xsum_max_abs(v, 4)));
    /* the scale keeps the largest term below 2^62 / terms */
    for (int terms = 1; terms < 100; terms += 7) {
        int e = xsum_exponent(3.0e-7f, terms);
        assert_true(ldexp(3.0e-7, e) * terms < ldexp(1.0, 62));
        assert_true(ldexp(3.0e-7, e) * terms >= ldexp(1.0, 60));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_any_grouping_same_bits), cmocka_unit_test(test_close_to_exact),
        cmocka_unit_test(test_exact_multiples), cmocka_unit_test(test_non_finite)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
