/* kernels/cmaes against CMA-ES's published behaviour on standard functions in
 * 10-D, and its contract: bit-identical candidates for the same seed and
 * values, stable ranking of ties, candidates inside the box, the default
 * population size, argument checks.
 *
 * Published figures used (the only ones found for a default full-covariance
 * CMA-ES in 10-D with evaluations to a target): CMA-ES/libcmaes issue #88
 * (E. Benazera, 2015-01-24; setup in libcmaes tests/tpa-tests.cc): active
 * CMA-ES with libcmaes's defaults (Hansen's parameters; its negative weights
 * are set slightly differently from Table 1 of the tutorial), x0 uniform in
 * [-4, 4]^10, sigma0 = 1/n = 0.1 (libcmaes's automatic values), target
 * f <= 1e-8, evaluations counted at the end of the generation that reaches
 * it: sphere 1525 (mean of 50 runs). Same setup, issue #106 (2015-01-31):
 * Rosenbrock 5565 (one run). No published figure for the full CMA-ES on the
 * 1e6 ellipsoid was found; its range comes from two implementations of the
 * Table 1 algorithm measured in that setup (this one: median 4270 over 50
 * seeds; CyberAgent's cmaes 0.9.1, python3-cmaes: median 4380), plus the
 * published property that C learns the inverse Hessian (Hansen & Ostermeier
 * 2001; tutorial Sect. 3): its condition number ends near 1e6. The runs also
 * go on to the 1e-10 of Hansen & Ostermeier's experiments. Each function runs
 * 11 fixed seeds and checks the median, so one odd run does not fail the test
 * but a slower or broken update does; the sampling is deterministic, so the
 * test is too. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cmaes.h"
#include "rng.h"

/* the checksum's objective must round as written, as in kernels/cmaes.c */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define N10 10
#define RUNS 11
/* FNV-1a of the candidates of trajectory(42, 60): changes only with a
 * deliberate change to the sampling or the update. */
#define CMAES_TEST_CHECKSUM 0xd49510c76d8be505ULL

static double f_sphere(const double *x, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += x[i] * x[i];
    return s;
}

/* condition 1e6: coefficients 1e6^(i/(n-1)) */
static double f_elli(const double *x, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += pow(1e6, (double)i / (double)(n - 1)) * x[i] * x[i];
    return s;
}

static double f_rosen(const double *x, int n)
{
    double s = 0.0;
    for (int i = 0; i < n - 1; i++) {
        double a = x[i] * x[i] - x[i + 1], b = x[i] - 1.0;
        s += 100.0 * a * a + b * b;
    }
    return s;
}

typedef double (*Objective)(const double *x, int n);

/* One run in the libcmaes setup (x0 uniform in [-4, 4]^n from its own stream,
 * sigma0 = 1/n, default lambda). at[t]: evaluations at the end of the first
 * generation whose best value is <= targets[t], -1 when never. Runs until the
 * last target, a stop condition or max_evals. Returns the final condition
 * number of C. */
static double run(Objective f, int n, uint64_t seed, const double *targets, int nt, long *at,
                  long max_evals)
{
    double x0[64];
    TdRng r;
    rng_seed(&r, rng_derive(2015, seed, 0));
    for (int i = 0; i < n; i++)
        x0[i] = 8.0 * rng_uniform(&r) - 4.0;
    CmaEs *es = NULL;
    assert_int_equal(cmaes_create(&es, n, x0, 1.0 / n, 0, seed, NULL, NULL), TD_OK);
    int lambda = cmaes_lambda(es);
    double *x = malloc(sizeof(double) * (size_t)lambda * n), *fx = malloc(sizeof(double) * lambda);
    for (int t = 0; t < nt; t++)
        at[t] = -1;
    while (at[nt - 1] < 0 && cmaes_evaluations(es) < max_evals && !cmaes_stop(es)) {
        cmaes_ask(es, x);
        double best = INFINITY;
        for (int k = 0; k < lambda; k++) {
            fx[k] = f(x + (size_t)k * n, n);
            if (fx[k] < best)
                best = fx[k];
        }
        cmaes_tell(es, fx);
        for (int t = 0; t < nt; t++)
            if (at[t] < 0 && best <= targets[t])
                at[t] = cmaes_evaluations(es);
    }
    double cond = cmaes_condition(es);
    free(x), free(fx);
    cmaes_free(es);
    return cond;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long median_long(long *v, int k)
{
    qsort(v, (size_t)k, sizeof *v, cmp_long);
    return v[k / 2];
}

static double median_double(double *v, int k)
{
    qsort(v, (size_t)k, sizeof *v, cmp_double);
    return v[k / 2];
}

/* Sphere: median evaluations to 1e-8 within [0.8, 1.25] x 1525 (libcmaes
 * #88); every run goes on to 1e-10; and the convergence is linear (Hansen &
 * Ostermeier 2001; Auger & Hansen 2005): once adapted, each decade of f costs
 * the same, so 1e-7 -> 1e-10 takes about as long as 1e-4 -> 1e-7. */
static void test_sphere_published(void **state)
{
    (void)state;
    const double targets[] = {1e-4, 1e-7, 1e-8, 1e-10};
    long e8[RUNS];
    double ratio[RUNS];
    for (int r = 0; r < RUNS; r++) {
        long at[4];
        run(f_sphere, N10, 100 + r, targets, 4, at, 20000);
        if (at[3] < 0)
            fail_msg("sphere seed %d did not reach 1e-10", 100 + r);
        e8[r] = at[2];
        ratio[r] = (double)(at[3] - at[1]) / (double)(at[1] - at[0]);
    }
    long med = median_long(e8, RUNS);
    double rmed = median_double(ratio, RUNS);
    print_message("sphere 10-D: median %ld evaluations to 1e-8 (published mean 1525); "
                  "decades 7-10 / 4-7 cost ratio %.2f\n", med, rmed);
    if (med < 1220 || med > 1906)
        fail_msg("sphere: median %ld evaluations to 1e-8, published 1525 (want 1220..1906)", med);
    if (rmed < 0.75 || rmed > 1.33)
        fail_msg("sphere: convergence not linear, cost ratio of decades %.2f", rmed);
}

/* Ellipsoid, condition 1e6: median evaluations to 1e-8 within 20% of the
 * 4270..4380 measured by two Table 1 implementations (no published figure
 * found); every run reaches 1e-10; C's condition number near the Hessian's
 * 1e6 (C ~ H^-1). */
static void test_ellipsoid(void **state)
{
    (void)state;
    const double targets[] = {1e-8, 1e-10};
    long e8[RUNS];
    double cond[RUNS];
    for (int r = 0; r < RUNS; r++) {
        long at[2];
        cond[r] = run(f_elli, N10, 200 + r, targets, 2, at, 40000);
        if (at[1] < 0)
            fail_msg("ellipsoid seed %d did not reach 1e-10", 200 + r);
        e8[r] = at[0];
    }
    long med = median_long(e8, RUNS);
    double cmed = median_double(cond, RUNS);
    print_message("ellipsoid 10-D: median %ld evaluations to 1e-8; cond(C) %.3g\n", med, cmed);
    if (med < 3460 || med > 5260)
        fail_msg("ellipsoid: median %ld evaluations to 1e-8 (want 3460..5260)", med);
    if (cmed < 3e5 || cmed > 3e6)
        fail_msg("ellipsoid: cond(C) %.3g, want about 1e6 (C ~ inverse Hessian)", cmed);
}

/* Rosenbrock: most runs find the global optimum from x0 in [-4, 4]^n (the
 * others end in the local one near x_1 = -1), and those that do need a median
 * within [0.8, 1.25] x 5565 evaluations (libcmaes #106) to 1e-8, then 1e-10. */
static void test_rosenbrock(void **state)
{
    (void)state;
    const double targets[] = {1e-8, 1e-10};
    long e8[RUNS];
    int ok = 0;
    for (int r = 0; r < RUNS; r++) {
        long at[2];
        run(f_rosen, N10, 300 + r, targets, 2, at, 40000);
        if (at[0] >= 0) {
            if (at[1] < 0)
                fail_msg("rosenbrock seed %d reached 1e-8 but not 1e-10", 300 + r);
            e8[ok++] = at[0];
        }
    }
    assert_true(ok > 0);
    long med = median_long(e8, ok);
    print_message("rosenbrock 10-D: %d/%d runs solved, median %ld evaluations to 1e-8 "
                  "(published 5565)\n", ok, RUNS, med);
    if (ok < 7)
        fail_msg("rosenbrock: only %d of %d runs reached 1e-8", ok, RUNS);
    if (med < 4452 || med > 6956)
        fail_msg("rosenbrock: median %ld evaluations to 1e-8, published 5565 (want 4452..6956)",
                 med);
}

static void test_lambda_default(void **state)
{
    (void)state;
    double x0[200] = {0};
    for (int n = 1; n <= 200; n++) {
        CmaEs *es = NULL;
        assert_int_equal(cmaes_create(&es, n, x0, 1.0, 0, 1, NULL, NULL), TD_OK);
        assert_int_equal(cmaes_lambda(es), 4 + (int)floor(3.0 * log((double)n)));
        assert_int_equal(cmaes_dim(es), n);
        cmaes_free(es);
    }
    const int want[][2] = {{1, 4}, {2, 6}, {3, 7}, {10, 10}, {20, 12}, {120, 18}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CmaEs *es = NULL;
        assert_int_equal(cmaes_create(&es, want[i][0], x0, 1.0, 0, 1, NULL, NULL), TD_OK);
        assert_int_equal(cmaes_lambda(es), want[i][1]);
        cmaes_free(es);
    }
    CmaEs *es = NULL;
    assert_int_equal(cmaes_create(&es, 10, x0, 1.0, 33, 1, NULL, NULL), TD_OK);
    assert_int_equal(cmaes_lambda(es), 33);
    assert_int_equal(cmaes_generation(es), 0);
    assert_int_equal(cmaes_evaluations(es), 0);
    double xb[10];
    assert_true(isinf(cmaes_best(es, xb)));
    assert_memory_equal(xb, x0, sizeof xb);
    cmaes_free(es);
}

/* G generations of Rosenbrock in n = 7 (the objective uses + - * only, so it
 * is bit-identical everywhere too); every candidate appended to out. */
static void trajectory(uint64_t seed, int G, double *out)
{
    const int n = 7;
    double x0[7] = {0.5, -1.0, 2.0, 0.0, 0.25, -0.75, 1.5};
    CmaEs *es = NULL;
    assert_int_equal(cmaes_create(&es, n, x0, 0.7, 0, seed, NULL, NULL), TD_OK);
    int lambda = cmaes_lambda(es);
    double fx[64];
    for (int g = 0; g < G; g++) {
        double *x = out + (size_t)g * lambda * n;
        cmaes_ask(es, x);
        for (int k = 0; k < lambda; k++)
            fx[k] = f_rosen(x + (size_t)k * n, n);
        cmaes_tell(es, fx);
    }
    cmaes_free(es);
}

static uint64_t fnv1a(const void *p, size_t bytes)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < bytes; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Same seed and values: bit-identical candidates; another seed: others; ask
 * twice: the same candidates; and a checksum of 60 generations fixed here, so
 * a machine, compiler or OpenBLAS kernel that rounds differently (FMA
 * contraction, x87, another libm) fails rather than drifting silently. */
static void test_determinism(void **state)
{
    (void)state;
    const int G = 60, lambda = 9, n = 7; /* 4 + floor(3 ln 7) = 9 */
    size_t count = (size_t)G * lambda * n;
    double *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
    trajectory(42, G, a);
    trajectory(42, G, b);
    assert_memory_equal(a, b, count * sizeof *a);
    trajectory(43, G, b);
    assert_true(memcmp(a, b, count * sizeof *a) != 0);
    uint64_t h = fnv1a(a, count * sizeof *a);
    print_message("determinism checksum 0x%016llx\n", (unsigned long long)h);
    assert_true(h == CMAES_TEST_CHECKSUM);

    double x0[3] = {1, 2, 3}, x1[3 * 7], x2[3 * 7];
    CmaEs *es = NULL;
    assert_int_equal(cmaes_create(&es, 3, x0, 0.5, 0, 9, NULL, NULL), TD_OK);
    assert_int_equal(cmaes_lambda(es), 7);
    cmaes_ask(es, x1);
    cmaes_ask(es, x2);
    assert_memory_equal(x1, x2, sizeof x1);
    double fx[7];
    for (int k = 0; k < 7; k++)
        fx[k] = f_sphere(x1 + 3 * k, 3);
    cmaes_tell(es, fx);
    assert_int_equal(cmaes_generation(es), 1);
    assert_int_equal(cmaes_evaluations(es), 7);
    cmaes_ask(es, x2);
    assert_true(memcmp(x1, x2, sizeof x1) != 0);
    /* best so far: the lowest value told, with its candidate */
    int kb = 0;
    for (int k = 1; k < 7; k++)
        if (fx[k] < fx[kb])
            kb = k;
    double xb[3];
    assert_true(cmaes_best(es, xb) == fx[kb]);
    assert_memory_equal(xb, x1 + 3 * kb, sizeof xb);
    cmaes_free(es);
    free(a), free(b);
}

/* Runs G generations of a 5-D strategy with the values fv(generation, k) and
 * returns the candidates of generation G + 1. */
typedef void (*Values)(const double *x, int lambda, double *f);

static void after(Values fv, int G, double *next)
{
    double x0[5] = {0.1, 0.2, 0.3, 0.4, 0.5}, x[8 * 5], f[8];
    CmaEs *es = NULL;
    assert_int_equal(cmaes_create(&es, 5, x0, 0.3, 8, 77, NULL, NULL), TD_OK);
    for (int g = 0; g < G; g++) {
        cmaes_ask(es, x);
        fv(x, 8, f);
        cmaes_tell(es, f);
    }
    cmaes_ask(es, next);
    cmaes_free(es);
}

/* ties: pairs (0,1), (2,3), ... share a value; the pair's order is the index */
static void v_ties(const double *x, int lambda, double *f)
{
    for (int k = 0; k < lambda; k++)
        f[k] = f_sphere(x + 5 * (k / 2 * 2), 5);
}
/* the same order made explicit: the lower index slightly better */
static void v_ties_broken(const double *x, int lambda, double *f)
{
    v_ties(x, lambda, f);
    for (int k = 0; k < lambda; k++)
        f[k] = f[k] * (1.0 + 1e-9 * (k % 2));
}
/* the opposite order */
static void v_ties_reversed(const double *x, int lambda, double *f)
{
    v_ties(x, lambda, f);
    for (int k = 0; k < lambda; k++)
        f[k] = f[k] * (1.0 - 1e-9 * (k % 2));
}
/* NaN ranks last, after +INFINITY */
static void v_nan(const double *x, int lambda, double *f)
{
    for (int k = 0; k < lambda; k++)
        f[k] = f_sphere(x + 5 * k, 5);
    f[1] = NAN;
    f[4] = INFINITY;
}
static void v_nan_as_max(const double *x, int lambda, double *f)
{
    v_nan(x, lambda, f);
    f[1] = INFINITY; /* equal to f[4], so index 4 first: not NaN's order */
}
static void v_nan_explicit(const double *x, int lambda, double *f)
{
    for (int k = 0; k < lambda; k++)
        f[k] = f_sphere(x + 5 * k, 5);
    f[1] = DBL_MAX; /* after everything finite ... */
    f[4] = DBL_MAX / 2.0; /* ... and after the +INFINITY stand-in */
}

static void test_ties_and_nan(void **state)
{
    (void)state;
    double a[40], b[40];
    after(v_ties, 12, a);
    after(v_ties_broken, 12, b);
    assert_memory_equal(a, b, sizeof a);
    after(v_ties_reversed, 12, b);
    assert_true(memcmp(a, b, sizeof a) != 0);
    after(v_nan, 12, a);
    after(v_nan_explicit, 12, b);
    assert_memory_equal(a, b, sizeof a);
    after(v_nan_as_max, 12, b);
    assert_true(memcmp(a, b, sizeof a) != 0);
}

/* Box [0, 1]^4 x [-inf, 0.8]: the minimum of sum (x_i - c_i)^2 on the box
 * lies on bounds in three coordinates (one of them one-sided). Every candidate
 * and the reported mean stay inside; the constrained optimum is found. */
static void test_bounds(void **state)
{
    (void)state;
    enum { n = 5 };
    const double c[n] = {-1.0, 0.5, 2.0, 0.3, 0.9};
    const double lo[n] = {0, 0, 0, 0, -INFINITY}, hi[n] = {1, 1, 1, 1, 0.8};
    const double opt[n] = {0.0, 0.5, 1.0, 0.3, 0.8};
    double fopt = 0.0;
    for (int i = 0; i < n; i++)
        fopt += (opt[i] - c[i]) * (opt[i] - c[i]);
    const double x0[n] = {0.0, 1.0, 0.5, 0.5, -3.0}; /* on bounds is allowed */
    CmaEs *es = NULL;
    assert_int_equal(cmaes_create(&es, n, x0, 0.3, 0, 5, lo, hi), TD_OK);
    int lambda = cmaes_lambda(es), outside = 0;
    double x[16 * n], f[16], m[n];
    cmaes_mean(es, m);
    for (int i = 0; i < n; i++)
        assert_true(fabs(m[i] - x0[i]) < 1e-12); /* the mapped mean starts at x0 */
    while (cmaes_evaluations(es) < 5000 && !cmaes_stop(es)) {
        cmaes_ask(es, x);
        for (int k = 0; k < lambda; k++) {
            f[k] = 0.0;
            for (int i = 0; i < n; i++) {
                double v = x[k * n + i];
                outside += v < lo[i] || v > hi[i];
                f[k] += (v - c[i]) * (v - c[i]);
            }
        }
        cmaes_tell(es, f);
        cmaes_mean(es, m);
        for (int i = 0; i < n; i++)
            outside += m[i] < lo[i] || m[i] > hi[i];
    }
    assert_int_equal(outside, 0);
    double xb[n];
    double fb = cmaes_best(es, xb);
    print_message("bounds: best f - f* = %.3g after %ld evaluations\n", fb - fopt,
                  cmaes_evaluations(es));
    assert_true(fb - fopt < 1e-10);
    for (int i = 0; i < n; i++)
        assert_true(fabs(xb[i] - opt[i]) < 1e-5);
    cmaes_free(es);
}

/* Stops: the sphere ends on the f or x tolerance; a function of x_0 alone
 * lets C grow in the other directions until a condition / divergence test. */
static void test_stop(void **state)
{
    (void)state;
    double x0[4] = {1, 1, 1, 1}, x[8 * 4], f[8];
    CmaEs *es = NULL;
    assert_int_equal(cmaes_create(&es, 4, x0, 1.0, 0, 3, NULL, NULL), TD_OK);
    int lambda = cmaes_lambda(es);
    unsigned s = 0;
    while (!(s = cmaes_stop(es)) && cmaes_evaluations(es) < 20000) {
        cmaes_ask(es, x);
        for (int k = 0; k < lambda; k++)
            f[k] = f_sphere(x + 4 * k, 4);
        cmaes_tell(es, f);
    }
    print_message("sphere stop 0x%x after %ld evaluations, f %.3g\n", s, cmaes_evaluations(es),
                  cmaes_best(es, NULL));
    assert_true(s & (CMAES_STOP_TOLFUN | CMAES_STOP_TOLX));
    assert_true(cmaes_best(es, NULL) < 1e-12);
    assert_true(cmaes_sigma(es) < 1e-5);
    cmaes_free(es);

    assert_int_equal(cmaes_create(&es, 4, x0, 1.0, 0, 3, NULL, NULL), TD_OK);
    s = 0;
    while (!(s = cmaes_stop(es)) && cmaes_evaluations(es) < 200000) {
        cmaes_ask(es, x);
        for (int k = 0; k < lambda; k++)
            f[k] = x[4 * k] * x[4 * k];
        cmaes_tell(es, f);
    }
    print_message("x_0^2 stop 0x%x after %ld evaluations, cond %.3g\n", s, cmaes_evaluations(es),
                  cmaes_condition(es));
    assert_true(s & (CMAES_STOP_CONDITION | CMAES_STOP_TOLXUP | CMAES_STOP_TOLFUN));
    cmaes_free(es);

    assert_string_equal(cmaes_stop_name(CMAES_STOP_TOLFUN), "tolfun");
    assert_string_equal(cmaes_stop_name(CMAES_STOP_CONDITION), "condition");
    assert_string_equal(cmaes_stop_name(0), "");
}

static void expect_arg_error(TdStatus s, CmaEs *es, const char *word)
{
    assert_int_equal(s, TD_ERR_ARG);
    assert_null(es);
    if (!strstr(td_error_message(), word))
        fail_msg("error message \"%s\" does not name \"%s\"", td_error_message(), word);
    td_error_clear();
}

static void test_invalid_args(void **state)
{
    (void)state;
    double x0[3] = {0.5, 0.5, 0.5}, lo[3] = {0, 0, 0}, hi[3] = {1, 1, 1}, bad_hi[3] = {1, -1, 1};
    CmaEs *es = NULL;
    td_error_clear();
/* es starts non-NULL: a failing create must reset it */
#define EXPECT_ARG_ERROR(call, word)       \
    do {                                   \
        es = (CmaEs *)x0;                  \
        TdStatus st_ = (call);             \
        expect_arg_error(st_, es, (word)); \
    } while (0)
    EXPECT_ARG_ERROR(cmaes_create(&es, 0, x0, 1.0, 0, 1, NULL, NULL), "dimension n = 0");
    EXPECT_ARG_ERROR(cmaes_create(&es, -2, x0, 1.0, 0, 1, NULL, NULL), "dimension n = -2");
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, x0, 0.0, 0, 1, NULL, NULL), "sigma0");
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, x0, -1.0, 0, 1, NULL, NULL), "sigma0");
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, x0, NAN, 0, 1, NULL, NULL), "sigma0");
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, x0, INFINITY, 0, 1, NULL, NULL), "sigma0");
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, x0, 1.0, 0, 1, lo, bad_hi), "lo[1] = 0 > hi[1] = -1");
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, x0, 1.0, 0, 1, lo, NULL), "both bounds");
    double fixed_hi[3] = {1, 1, 0};
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, x0, 1.0, 0, 1, lo, fixed_hi), "fixed coordinate");
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, x0, 1.0, 1, 1, NULL, NULL), "lambda = 1");
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, x0, 1.0, -4, 1, NULL, NULL), "lambda = -4");
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, NULL, 1.0, 0, 1, NULL, NULL), "x0");
    double far[3] = {0.5, 2.0, 0.5};
    EXPECT_ARG_ERROR(cmaes_create(&es, 3, far, 1.0, 0, 1, lo, hi), "x0[1] = 2 outside");
    assert_int_equal(cmaes_create(&es, 3, x0, 1.0, 0, 1, lo, hi), TD_OK);
    assert_int_equal(cmaes_set_tolerances(es, -1.0, 0.0), TD_ERR_ARG);
    td_error_clear();
    assert_int_equal(cmaes_set_tolerances(es, 1e-9, 1e-9), TD_OK);
    cmaes_free(es);
    cmaes_free(NULL);
#undef EXPECT_ARG_ERROR
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sphere_published), cmocka_unit_test(test_ellipsoid),
        cmocka_unit_test(test_rosenbrock),       cmocka_unit_test(test_lambda_default),
        cmocka_unit_test(test_determinism),      cmocka_unit_test(test_ties_and_nan),
        cmocka_unit_test(test_bounds),           cmocka_unit_test(test_stop),
        cmocka_unit_test(test_invalid_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
