/* kernels/merge: every merge method on hand-made vectors with known answers,
 * top-k selection against a sort, and DARE's determinism, chunk independence
 * and rescaling in expectation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "merge.h"
#include "rng.h"

static void expect_vec(const float *got, const float *want, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol))
            fail_msg("entry %zu: got %.9g, want %.9g", i, (double)got[i], (double)want[i]);
}

static const float k_t1[4] = {1, -2, 3, 0};
static const float k_t2[4] = {0.5f, 2, -1, 4};

static void test_sum_mean_coef_negation(void **state)
{
    (void)state;
    double acc[4] = {0};
    float out[4];
    merge_accum(acc, k_t1, 1.0, 4);
    merge_accum(acc, k_t2, 1.0, 4);
    merge_to_float(out, acc, 1.0, 4);
    const float sum[4] = {1.5f, 0, 2, 4};
    expect_vec(out, sum, 4, 0);
    merge_to_float(out, acc, 0.5, 4); /* weight average */
    const float mean[4] = {0.75f, 0, 1, 2};
    expect_vec(out, mean, 4, 0);
    memset(acc, 0, sizeof acc); /* per-task coefficients 2 and -1 */
    merge_accum(acc, k_t1, 2.0, 4);
    merge_accum(acc, k_t2, -1.0, 4);
    merge_to_float(out, acc, 1.0, 4);
    const float coef[4] = {1.5f, -6, 7, -4};
    expect_vec(out, coef, 4, 0);
    memset(acc, 0, sizeof acc); /* negation: coefficient -alpha */
    merge_accum(acc, k_t1, -0.5, 4);
    merge_to_float(out, acc, 1.0, 4);
    const float neg[4] = {-0.5f, 1, -1.5f, 0};
    expect_vec(out, neg, 4, 0);
}

static void test_topk_hand(void **state)
{
    (void)state;
    float x[6] = {0.1f, -5, 3, -0.2f, 4, 0}, scr[6];
    assert_int_equal(merge_topk_count(6, 50), 3);
    assert_int_equal(merge_topk_count(6, 0), 0);
    assert_int_equal(merge_topk_count(6, 100), 6);
    assert_int_equal(merge_topk_count(10, 25), 3); /* 2.5 rounds up */
    assert_true(merge_kth_largest_abs(x, 6, 3, scr) == 3.0f);
    assert_true(isinf(merge_kth_largest_abs(x, 6, 0, scr)));
    assert_true(merge_kth_largest_abs(x, 6, 6, scr) == 0.0f);
    assert_int_equal(merge_trim(x, 6, 3.0f), 3);
    const float want[6] = {0, -5, 3, 0, 4, 0};
    expect_vec(x, want, 6, 0);
    /* ties at the threshold are all kept */
    float y[5] = {2, -2, 2, 1, 3};
    float t = merge_kth_largest_abs(y, 5, 2, scr);
    assert_true(t == 2.0f);
    assert_int_equal(merge_trim(y, 5, t), 4);
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_topk_against_sort(void **state)
{
    (void)state;
    enum { N = 5001 };
    float *x = malloc(N * sizeof *x), *scr = malloc(N * sizeof *scr), *srt = malloc(N * sizeof *srt);
    TdRng r;
    rng_seed(&r, 42);
    for (int i = 0; i < N; i++) /* many duplicates: values on a coarse grid */
        x[i] = (float)((int)(rng_normal(&r) * 20)) / 8.0f;
    for (int i = 0; i < N; i++)
        srt[i] = fabsf(x[i]);
    qsort(srt, N, sizeof *srt, cmp_desc);
    const size_t keeps[] = {1, 7, 100, 1000, 2500, 4999, 5000};
    for (size_t k = 0; k < sizeof keeps / sizeof keeps[0]; k++) {
        float t = merge_kth_largest_abs(x, N, keeps[k], scr);
        if (t != srt[keeps[k] - 1])
            fail_msg("keep %zu: threshold %g, sorted says %g", keeps[k], t, srt[keeps[k] - 1]);
    }
    free(x), free(scr), free(srt);
}

/* Three tasks, top 75% of each (3 of 4 entries), then elect and combine:
 *   t1 [ 1,-2, 3, .1] -> [ 1,-2, 3, 0]
 *   t2 [-3, 1, 2,-.2] -> [-3, 1, 2, 0]
 *   t3 [ 1,-1,-4, .3] -> [ 1,-1,-4, 0]
 * elected sum [-1,-2,1,0]: entry 0 keeps t2 (-3), entry 1 t1 and t3 (-2,-1),
 * entry 2 t1 and t2 (3,2), entry 3 nothing. */
static void test_ties_hand(void **state)
{
    (void)state;
    float t[3][4] = {{1, -2, 3, 0.1f}, {-3, 1, 2, -0.2f}, {1, -1, -4, 0.3f}}, scr[4];
    double elect[4] = {0}, sum[4] = {0}, cnt[4] = {0};
    for (int k = 0; k < 3; k++) {
        float thr = merge_kth_largest_abs(t[k], 4, merge_topk_count(4, 75), scr);
        merge_trim(t[k], 4, thr);
        merge_accum(elect, t[k], 1.0, 4);
    }
    const float t1[4] = {1, -2, 3, 0};
    expect_vec(t[0], t1, 4, 0);
    for (int k = 0; k < 3; k++)
        merge_ties_agree(sum, cnt, elect, t[k], 1.0, 4);
    float out[4];
    merge_ties_finish(out, sum, cnt, 4, 1);
    const float mean[4] = {-3, -1.5f, 2.5f, 0};
    expect_vec(out, mean, 4, 0);
    merge_ties_finish(out, sum, cnt, 4, 0);
    const float dsum[4] = {-3, -3, 5, 0};
    expect_vec(out, dsum, 4, 0);
    /* a coefficient of 2 on t3 changes the election of entry 2: 3 + 2 - 8 < 0 */
    memset(elect, 0, sizeof elect), memset(sum, 0, sizeof sum), memset(cnt, 0, sizeof cnt);
    const double w[3] = {1, 1, 2};
    for (int k = 0; k < 3; k++)
        merge_accum(elect, t[k], w[k], 4);
    for (int k = 0; k < 3; k++)
        merge_ties_agree(sum, cnt, elect, t[k], w[k], 4);
    merge_ties_finish(out, sum, cnt, 4, 1);
    const float wmean[4] = {0, -2, -8, 0}; /* entry 0 ties at 0: no sign elected */
    expect_vec(out, wmean, 4, 0);
}

/* Global top-k (one threshold over both tensors) against per-tensor top-k. */
static void test_ties_scope(void **state)
{
    (void)state;
    float all[6] = {1, -2, 3, 0.1f, 0.5f, 0.05f}, scr[6];
    float g = merge_kth_largest_abs(all, 6, merge_topk_count(6, 50), scr);
    assert_true(g == 1.0f);
    float a[4] = {1, -2, 3, 0.1f}, b[2] = {0.5f, 0.05f};
    float ga[4], gb[2];
    memcpy(ga, a, sizeof a), memcpy(gb, b, sizeof b);
    merge_trim(ga, 4, g);
    merge_trim(gb, 2, g);
    const float wga[4] = {1, -2, 3, 0}, wgb[2] = {0, 0};
    expect_vec(ga, wga, 4, 0);
    expect_vec(gb, wgb, 2, 0);
    merge_trim(a, 4, merge_kth_largest_abs(a, 4, merge_topk_count(4, 50), scr));
    merge_trim(b, 2, merge_kth_largest_abs(b, 2, merge_topk_count(2, 50), scr));
    const float wa[4] = {0, -2, 3, 0}, wb[2] = {0.5f, 0};
    expect_vec(a, wa, 4, 0);
    expect_vec(b, wb, 2, 0);
}

static void test_dare(void **state)
{
    (void)state;
    enum { N = 200000 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (int i = 0; i < N; i++)
        x[i] = y[i] = 1.0f;
    const double p = 0.3;
    merge_dare(x, N, p, 7, 2, 1000);
    /* the same coins in two chunks with their global offsets */
    merge_dare(y, 12345, p, 7, 2, 1000);
    merge_dare(y + 12345, N - 12345, p, 7, 2, 1000 + 12345);
    assert_memory_equal(x, y, N * sizeof *x);
    double mean = 0;
    int zeros = 0;
    for (int i = 0; i < N; i++) {
        mean += x[i];
        zeros += x[i] == 0;
        if (x[i] != 0 && fabsf(x[i] - (float)(1 / (1 - p))) > 1e-6f)
            fail_msg("kept entry %d is %g, not 1/(1-p)", i, (double)x[i]);
    }
    mean /= N;
    /* E = 1; sd of the mean is sqrt(p/(1-p)/N) ~ 0.0015 */
    if (fabs(mean - 1.0) > 0.01 || fabs((double)zeros / N - p) > 0.01)
        fail_msg("DARE mean %.4f (want 1), dropped %.4f (want %.2f)", mean, (double)zeros / N, p);
    /* another seed or task draws other coins */
    for (int i = 0; i < N; i++)
        y[i] = 1.0f;
    merge_dare(y, N, p, 8, 2, 1000);
    assert_true(memcmp(x, y, N * sizeof *x) != 0);
    for (int i = 0; i < N; i++)
        y[i] = 1.0f;
    merge_dare(y, N, p, 7, 3, 1000);
    assert_true(memcmp(x, y, N * sizeof *x) != 0);
    /* p = 0 leaves the vector alone */
    memcpy(y, x, N * sizeof *x);
    merge_dare(y, N, 0.0, 7, 2, 0);
    assert_memory_equal(x, y, N * sizeof *x);
    free(x), free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_mean_coef_negation), cmocka_unit_test(test_topk_hand),
        cmocka_unit_test(test_topk_against_sort),      cmocka_unit_test(test_ties_hand),
        cmocka_unit_test(test_ties_scope),             cmocka_unit_test(test_dare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
