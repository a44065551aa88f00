/* The linear surrogate's numerics (kernels/surrogate.h) against direct
 * computations: projections as dot products; the Gray-code screening against
 * scoring every candidate from scratch in double (sur_correct), chunk by chunk
 * and whole; the scores of one coefficient vector (sur_scores) against the
 * embedding formed, normalised and scored directly, and against the argmax
 * of the projections (sur_correct); AdaMerging's objective on the surrogate
 * (sur_objective) against a direct computation and its gradient against
 * central differences; Spearman's rho against a hand-computed
 * example. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "surrogate.h"

static double frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2 - 1;
}

static void test_project(void **state)
{
    (void)state;
    enum { N = 3, R = 4, E = 5, C = 2 };
    float u[N * R * E], h[C * E], p[N * R * C];
    uint64_t s = 1;
    for (int i = 0; i < N * R * E; i++)
        u[i] = (float)frand(&s);
    for (int i = 0; i < C * E; i++)
        h[i] = (float)frand(&s);
    sur_project(u, N, R, E, h, C, p);
    for (int i = 0; i < N; i++)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                double want = 0;
                for (int e = 0; e < E; e++)
                    want += (double)u[(i * R + r) * E + e] * h[c * E + e];
                assert_true(fabs(p[(i * R + r) * C + c] - want) < 1e-6);
            }
}

/* Uniform values in [-1, 1) for u (nu) and h (nh), labels in [0, C) for y
 * (ny), from the stream s. */
static void random_case(float *u, int nu, float *h, int nh, int32_t *y, int ny, int C,
                        uint64_t *s)
{
    for (int i = 0; i < nu; i++)
        u[i] = (float)frand(s);
    for (int i = 0; i < nh; i++)
        h[i] = (float)frand(s);
    for (int i = 0; i < ny; i++)
        y[i] = (int32_t)((frand(s) + 1) * 2.5) % C;
}

static void test_scores(void **state)
{
    (void)state;
    enum { N = 50, R = 4, E = 6, C = 5 };
    static float u[N * R * E], h[C * E], p[N * R * C];
    int32_t y[N];
    uint64_t s = 3;
    random_case(u, N * R * E, h, C * E, y, N, C, &s);
    const double a[R - 1] = {0.3, -1.2, 0.7}, scale = 7.5;
    int64_t ok;
    double ce;
    assert_int_equal(sur_scores(u, y, N, R, E, h, C, scale, a, &ok, &ce), TD_OK);
    int64_t want_ok = 0;
    double want_ce = 0;
    for (int i = 0; i < N; i++) {
        double f[E], nn = 0, z[C], zmax = -INFINITY, se = 0;
        for (int e = 0; e < E; e++) {
            f[e] = u[(i * R) * E + e];
            for (int r = 1; r < R; r++)
                f[e] += a[r - 1] * u[(i * R + r) * E + e];
            nn += f[e] * f[e];
        }
        int best = 0;
        for (int c = 0; c < C; c++) {
            z[c] = 0;
            for (int e = 0; e < E; e++)
                z[c] += f[e] / sqrt(nn) * h[c * E + e];
            if (z[c] > z[best])
                best = c;
            zmax = fmax(zmax, scale * z[c]);
        }
        for (int c = 0; c < C; c++)
            se += exp(scale * z[c] - zmax);
        want_ce += zmax + log(se) - scale * z[y[i]];
        want_ok += best == y[i];
    }
    assert_int_equal(ok, want_ok);
    assert_true(fabs(ce - want_ce) < 1e-5 * fabs(want_ce));
    /* the argmax does not depend on the normalisation: as the projections' */
    sur_project(u, N, R, E, h, C, p);
    assert_int_equal(ok, sur_correct(p, y, N, R, C, a));
    assert_true(ok > 0 && ok < N); /* the case is not degenerate */
}

/* sur_objective: the value against a direct computation, the gradient
 * against central differences of the value, for the entropy and the
 * cross-entropy, over a subset of images. */
static void test_objective(void **state)
{
    (void)state;
    enum { N = 30, R = 4, E = 6, C = 5, M = 7 };
    static float u[N * R * E], h[C * E];
    int32_t y[N];
    const int64_t idx[M] = {3, 0, 17, 29, 8, 8, 21};
    uint64_t s = 11;
    random_case(u, N * R * E, h, C * E, y, N, C, &s);
    const double a[R - 1] = {0.4, -0.3, 0.9}, scale = 6.0, w = 1.0 / M;
    for (int ce = 0; ce < 2; ce++) {
        const int32_t *yy = ce ? y : NULL;
        double loss = 0, ga[R - 1] = {0};
        assert_int_equal(sur_objective(u, yy, idx, M, R, E, h, C, scale, a, w, &loss, ga), TD_OK);
        double want = 0; /* direct: softmax of scale * cosine */
        for (int q = 0; q < M; q++) {
            const int i = (int)idx[q];
            double f[E], nn = 0, z[C], se = 0, zm = -INFINITY;
            for (int e = 0; e < E; e++) {
                f[e] = u[(i * R) * E + e];
                for (int r = 1; r < R; r++)
                    f[e] += a[r - 1] * u[(i * R + r) * E + e];
                nn += f[e] * f[e];
            }
            for (int c = 0; c < C; c++) {
                z[c] = 0;
                for (int e = 0; e < E; e++)
                    z[c] += scale * f[e] / sqrt(nn) * h[c * E + e];
                zm = fmax(zm, z[c]);
            }
            for (int c = 0; c < C; c++)
                se += exp(z[c] - zm);
            double v = 0;
            for (int c = 0; c < C; c++) {
                const double p = exp(z[c] - zm) / se;
                v -= ce ? (c == y[i] ? log(p) : 0) : p * log(p);
            }
            want += w * v;
        }
        assert_true(fabs(loss - want) < 1e-12 * fmax(1, fabs(want)));
        for (int j = 0; j < R - 1; j++) {
            const double hh = 1e-5;
            double ap[R - 1], am[R - 1], lp = 0, lm = 0, gd[R - 1] = {0};
            memcpy(ap, a, sizeof ap);
            memcpy(am, a, sizeof am);
            ap[j] += hh;
            am[j] -= hh;
            sur_objective(u, yy, idx, M, R, E, h, C, scale, ap, w, &lp, gd);
            sur_objective(u, yy, idx, M, R, E, h, C, scale, am, w, &lm, gd);
            const double fd = (lp - lm) / (2 * hh);
            assert_true(fabs(ga[j] - fd) < 1e-6 * fmax(1, fabs(fd)));
            assert_true(fabs(ga[j]) > 1e-4); /* the case is not degenerate */
        }
    }
}

enum { K = 3, A = 4, T = 2, NI = 40, C = 3, R = 1 + K };

/* Two tasks of random projections; scores of all A^K candidates from scratch. */
static void problem(float *p, int32_t *y, SurTask *tk, double *all, const double *vals)
{
    uint64_t s = 7;
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < NI * R * C; i++)
            p[t * NI * R * C + i] = (float)frand(&s);
        for (int i = 0; i < NI; i++)
            y[t * NI + i] = (int32_t)((frand(&s) + 1) * 1.5) % C;
        tk[t] = (SurTask){NI, C, p + t * NI * R * C, y + t * NI, 1.0 / (t + 1)};
    }
    int total = 1;
    for (int j = 0; j < K; j++)
        total *= A;
    for (int idx = 0; idx < total; idx++) {
        double a[K];
        for (int j = 0, q = idx; j < K; j++, q /= A)
            a[j] = vals[q % A];
        all[idx] = 0;
        for (int t = 0; t < T; t++)
            all[idx] += (double)sur_correct(tk[t].p, tk[t].y, NI, R, C, a) / NI * tk[t].weight;
    }
}

static void test_grid_against_scratch(void **state)
{
    (void)state;
    static float p[T * NI * R * C];
    static int32_t y[T * NI];
    SurTask tk[T];
    const double vals[A] = {0.0, 0.3, 0.7, 1.2}; /* unequal steps */
    enum { TOTAL = A * A * A };
    double all[TOTAL];
    problem(p, y, tk, all, vals);
    SurGrid *g = NULL;
    assert_int_equal(sur_grid_create(&g, tk, T, K, vals, A), TD_OK);
    for (int fixed = 0; fixed <= K; fixed++) {
        SurCand top[TOTAL];
        int ntop = 0, chunks = 1, per = 1;
        for (int j = 0; j < fixed; j++)
            chunks *= A;
        per = TOTAL / chunks;
        uint64_t visited = 0;
        for (int c = chunks - 1; c >= 0; c--) /* any order: the same candidates */
            visited += sur_grid_chunk(g, (uint64_t)c * per, fixed, top, TOTAL, &ntop);
        assert_int_equal(visited, TOTAL);
        assert_int_equal(ntop, TOTAL);
        int seen[TOTAL] = {0};
        for (int i = 0; i < ntop; i++) {
            assert_true(top[i].index < TOTAL);
            seen[top[i].index]++;
            assert_true(fabs(top[i].score - all[top[i].index]) < 1e-12);
            if (i > 0) /* best first, the smaller index on ties */
                assert_true(top[i - 1].score > top[i].score ||
                            (top[i - 1].score == top[i].score &&
                             top[i - 1].index < top[i].index));
        }
        for (int i = 0; i < TOTAL; i++)
            assert_int_equal(seen[i], 1);
    }
    /* a small top: the best 5 of all */
    SurCand top5[5];
    int n5 = 0;
    sur_grid_chunk(g, 0, 0, top5, 5, &n5);
    assert_int_equal(n5, 5);
    double sorted[TOTAL];
    memcpy(sorted, all, sizeof sorted);
    for (int i = 0; i < 5; i++) {
        int b = 0;
        for (int j = 1; j < TOTAL; j++)
            if (sorted[j] > sorted[b])
                b = j;
        assert_true(fabs(top5[i].score - sorted[b]) < 1e-12);
        sorted[b] = -1;
    }
    sur_grid_free(g);
    assert_int_not_equal(sur_grid_create(&g, tk, T, K, (double[]){0, 1, 1, 2}, A), TD_OK);
}

static void test_spearman(void **state)
{
    (void)state;
    const double x[5] = {1, 2, 3, 4, 5}, y[5] = {5, 6, 7, 8, 7};
    /* ranks of y: 1, 2, 3.5, 5, 3.5: rho = 8 / sqrt(10 * 9.5) */
    assert_true(fabs(sur_spearman(x, y, 5) - 8 / sqrt(95.0)) < 1e-12);
    const double z[4] = {4, 3, 2, 1}, w[4] = {10, 20, 30, 40};
    assert_true(fabs(sur_spearman(z, w, 4) + 1) < 1e-12);
    assert_true(isnan(sur_spearman(x, y, 1)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_project),
        cmocka_unit_test(test_scores),
        cmocka_unit_test(test_objective),
        cmocka_unit_test(test_grid_against_scratch),
        cmocka_unit_test(test_spearman),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
