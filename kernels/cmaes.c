#include "cmaes.h"

/* Bit-identical results need every double operation rounded once, as written:
 * no x87 excess precision, no fused multiply-add contraction. GCC contracts
 * by default only outside ISO C mode; clang within expressions. */
#include <float.h>
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "cmaes.c needs FLT_EVAL_METHOD == 0 (e.g. SSE2 doubles, not x87) for its determinism"
#endif
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

struct CmaEs {
    int n, lambda, mu;
    /* strategy parameters (Table 1) */
    double *w; /* lambda recombination weights, by rank */
    double sum_w, mueff, cm, cs, ds, cc, c1, cmu, chin;
    /* state */
    double sigma0, sigma;
    double *m, *ps, *pc;
    double *C;   /* n x n, row-major, symmetric */
    double *B;   /* n x n, column j = eigenvector j */
    double *D;   /* n, square roots of the eigenvalues */
    double cond; /* max / min eigenvalue */
    double decay; /* (1 - cs)^(2 (gen + 1)) for h_sigma */
    long gen;
    int asked;
    double *lo, *hi; /* NULL when unbounded */
    double *al, *au; /* margins of the boundary transformation */
    double *xg;      /* lambda x n samples of this generation (search space) */
    double *x;       /* the same mapped into the box: the candidates */
    double *y;       /* lambda x n steps (x - m) / sigma, in tell */
    int *order;
    double *t1, *t2, *t3, *A; /* scratch: n, n, n, n x n */
    double *wo;                /* lambda: weights of this generation's rank-mu update */
    TdRng rng;
    int has_spare;
    double spare;
    /* bookkeeping */
    double best_f, *best_x;
    double tol_fun, tol_x;
    double *fhist; /* ring of each generation's best f */
    int fhist_len;
    double last_min, last_max; /* this generation's f range (INFINITY if NaN) */
    int nonfinite;
};

/* ---- deterministic elementary functions: only + - * / and exact scaling ---- */

static const double LN2_HI = 6.93147180369123816490e-01; /* 32 bits: k * LN2_HI exact */
static const double LN2_LO = 1.90821492927058770002e-10;
static const double INV_LN2 = 1.44269504088896338700e+00;

/* Natural log of a positive finite x: x = 2^e m, m in [sqrt(1/2), sqrt(2)),
 * log m = 2 atanh(f), f = (m - 1) / (m + 1), |f| < 0.172, by its series to
 * f^25 (remainder < 1e-19 relative). */
static double det_log(double x)
{
    int e;
    double m = frexp(x, &e);
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e -= 1;
    }
    double f = (m - 1.0) / (m + 1.0);
    double s = f * f;
    double p = 1.0 / 25.0;
    for (int k = 11; k >= 0; k--)
        p = p * s + 1.0 / (double)(2 * k + 1);
    double de = (double)e;
    return de * LN2_HI + (de * LN2_LO + 2.0 * f * p);
}

/* e^x: x = k ln2 + r, |r| <= ln2/2, e^r by its Taylor series to r^24. */
static double det_exp(double x)
{
    if (x != x)
        return x;
    if (x > 709.0)
        return INFINITY;
    if (x < -745.0)
        return 0.0;
    double kf = floor(x * INV_LN2 + 0.5);
    double r = (x - kf * LN2_HI) - kf * LN2_LO;
    double p = 1.0;
    for (int j = 24; j >= 1; j--)
        p = 1.0 + r * p / (double)j;
    return ldexp(p, (int)kf);
}

/* Standard normal: Marsaglia's polar method on rng_uniform, both values used. */
static double det_normal(CmaEs *es)
{
    if (es->has_spare) {
        es->has_spare = 0;
        return es->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * rng_uniform(&es->rng) - 1.0;
        v = 2.0 * rng_uniform(&es->rng) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double k = sqrt(-2.0 * det_log(s) / s);
    es->spare = v * k;
    es->has_spare = 1;
    return u * k;
}

/* Cyclic Jacobi eigendecomposition of the symmetric n x n matrix A (row-major,
 * destroyed): eigenvalues in d, eigenvectors in the columns of V. A pair is
 * annihilated unless |a_pq| <= eps sqrt(|a_pp a_qq|) (then it is set to zero:
 * a relative perturbation below rounding, which keeps small eigenvalues of a
 * positive definite matrix accurate); sweeps run until none rotates. */
static void jacobi_eigen(int n, double *A, double *V, double *d)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            V[(size_t)i * n + j] = i == j ? 1.0 : 0.0;
    for (int sweep = 0; sweep < 100; sweep++) {
        int rotated = 0;
        for (int p = 0; p < n - 1; p++) {
            for (int q = p + 1; q < n; q++) {
                double apq = A[(size_t)p * n + q];
                if (apq == 0.0)
                    continue;
                double app = A[(size_t)p * n + p], aqq = A[(size_t)q * n + q];
                if (fabs(apq) <= DBL_EPSILON * sqrt(fabs(app)) * sqrt(fabs(aqq))) {
                    A[(size_t)p * n + q] = A[(size_t)q * n + p] = 0.0;
                    continue;
                }
                double theta = (aqq - app) / (2.0 * apq);
                double t;
                if (fabs(theta) > 1e150)
                    t = 0.5 / theta;
                else
                    t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c, tau = s / (1.0 + c);
                A[(size_t)p * n + p] = app - t * apq;
                A[(size_t)q * n + q] = aqq + t * apq;
                A[(size_t)p * n + q] = A[(size_t)q * n + p] = 0.0;
                for (int r = 0; r < n; r++) {
                    if (r == p || r == q)
                        continue;
                    double arp = A[(size_t)r * n + p], arq = A[(size_t)r * n + q];
                    double nrp = arp - s * (arq + tau * arp);
                    double nrq = arq + s * (arp - tau * arq);
                    A[(size_t)r * n + p] = A[(size_t)p * n + r] = nrp;
                    A[(size_t)r * n + q] = A[(size_t)q * n + r] = nrq;
                }
                for (int r = 0; r < n; r++) {
                    double vrp = V[(size_t)r * n + p], vrq = V[(size_t)r * n + q];
                    V[(size_t)r * n + p] = vrp - s * (vrq + tau * vrp);
                    V[(size_t)r * n + q] = vrq + s * (vrp - tau * vrq);
                }
                rotated = 1;
            }
        }
        if (!rotated)
            break;
    }
    for (int i = 0; i < n; i++)
        d[i] = A[(size_t)i * n + i];
}

/* B, D (and cond) from C; flags a C that is no longer usable. */
static void decompose(CmaEs *es)
{
    int n = es->n;
    for (size_t i = 0; i < (size_t)n * n; i++)
        if (!isfinite(es->C[i])) {
            es->nonfinite = 1; /* keep the last B, D */
            return;
        }
    memcpy(es->A, es->C, (size_t)n * n * sizeof *es->A);
    double *d = es->t1;
    jacobi_eigen(n, es->A, es->B, d);
    double dmax = 0.0, dmin = INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(d[i])) {
            es->nonfinite = 1;
            return;
        }
        if (d[i] > dmax)
            dmax = d[i];
    }
    if (!(dmax > 0.0)) {
        es->nonfinite = 1;
        return;
    }
    double floor_ev = dmax * DBL_EPSILON * DBL_EPSILON; /* numerically <= 0 */
    for (int i = 0; i < n; i++) {
        double ev = d[i] > floor_ev ? d[i] : floor_ev;
        if (ev < dmin)
            dmin = ev;
        es->D[i] = sqrt(ev);
    }
    es->cond = dmax / dmin;
}

/* ---- boundary transformation (Hansen's, as in c-cmaes and pycma) ---- */

/* Maps a search-space coordinate into [lb, ub]: periodic with period
 * 2 (ub - lb + al + au) when both bounds are finite, mirrored at lb - al and
 * ub + au, quadratic on [lb - al, lb + al] and [ub - au, ub + au] (so lb and ub
 * are attained, at lb - al and ub + au), the identity in between. */
static double to_box(double x, double lb, double ub, double al, double au)
{
    int has_lb = isfinite(lb), has_ub = isfinite(ub);
    if (has_lb && has_ub) {
        double xlow = lb - 2.0 * al - (ub - lb) / 2.0, xup = ub + 2.0 * au + (ub - lb) / 2.0;
        double r = 2.0 * (ub - lb + al + au);
        if (x < xlow)
            x += r * (1.0 + floor((xlow - x) / r));
        if (x > xup)
            x -= r * (1.0 + floor((x - xup) / r));
    }
    if (has_lb && x < lb - al)
        x = 2.0 * (lb - al) - x;
    if (has_ub && x > ub + au)
        x = 2.0 * (ub + au) - x;
    if (has_lb && x < lb + al) {
        double d = x - (lb - al);
        x = lb + d * d / (4.0 * al);
    } else if (has_ub && x > ub - au) {
        double d = x - (ub + au);
        x = ub - d * d / (4.0 * au);
    }
    if (x < lb) /* rounding */
        x = lb;
    if (x > ub)
        x = ub;
    return x;
}

/* A search-space point that to_box maps to x in [lb, ub]. */
static double from_box(double x, double lb, double ub, double al, double au)
{
    if (isfinite(lb) && x < lb + al)
        return (lb - al) + 2.0 * sqrt(al * (x - lb));
    if (isfinite(ub) && x > ub - au)
        return (ub + au) - 2.0 * sqrt(au * (ub - x));
    return x;
}

/* ---- creation ---- */

TdStatus cmaes_create(CmaEs **out, int n, const double *x0, double sigma0, int lambda,
                      uint64_t seed, const double *lo, const double *hi)
{
    if (!out)
        return td_fail(TD_ERR_ARG, "cmaes: no place for the result (es == NULL)");
    *out = NULL;
    if (n < 1)
        return td_fail(TD_ERR_ARG, "cmaes: dimension n = %d, must be >= 1", n);
    if (!x0)
        return td_fail(TD_ERR_ARG, "cmaes: no initial mean x0 (NULL)");
    if (!(sigma0 > 0.0) || !isfinite(sigma0))
        return td_fail(TD_ERR_ARG, "cmaes: initial step size sigma0 = %g, must be > 0 and finite",
                       sigma0);
    if (lambda < 0 || lambda == 1)
        return td_fail(TD_ERR_ARG, "cmaes: population size lambda = %d, must be >= 2 (0: default)",
                       lambda);
    if ((lo == NULL) != (hi == NULL))
        return td_fail(TD_ERR_ARG, "cmaes: give both bounds lo and hi, or neither (%s is NULL)",
                       lo ? "hi" : "lo");
    for (int i = 0; i < n; i++) {
        if (!isfinite(x0[i]))
            return td_fail(TD_ERR_ARG, "cmaes: x0[%d] = %g is not finite", i, x0[i]);
        if (lo) {
            if (isnan(lo[i]) || isnan(hi[i]))
                return td_fail(TD_ERR_ARG, "cmaes: bound %d is NaN", i);
            if (lo[i] > hi[i])
                return td_fail(TD_ERR_ARG, "cmaes: lo[%d] = %g > hi[%d] = %g", i, lo[i], i, hi[i]);
            if (lo[i] == hi[i])
                return td_fail(TD_ERR_ARG,
                               "cmaes: lo[%d] == hi[%d] = %g: a fixed coordinate has nothing to "
                               "search, leave it out of x",
                               i, i, lo[i]);
            if (x0[i] < lo[i] || x0[i] > hi[i])
                return td_fail(TD_ERR_ARG, "cmaes: x0[%d] = %g outside [lo, hi] = [%g, %g]", i,
                               x0[i], lo[i], hi[i]);
        }
    }
    if (lambda == 0)
        lambda = 4 + (int)floor(3.0 * det_log((double)n));
    if (n > 46340 || lambda > 1000000)
        return td_fail(TD_ERR_ARG, "cmaes: n = %d or lambda = %d too large", n, lambda);

    CmaEs *es = calloc(1, sizeof *es);
    if (!es)
        return td_fail(TD_ERR_NOMEM, "cmaes: out of memory");
    size_t nn = (size_t)n * n, ln = (size_t)lambda * n;
    es->n = n;
    es->lambda = lambda;
    es->mu = lambda / 2;
    es->fhist_len = 10 + (30 * n + lambda - 1) / lambda;
    es->w = calloc((size_t)lambda, sizeof *es->w);
    es->m = calloc((size_t)n, sizeof(double));
    es->ps = calloc((size_t)n, sizeof(double));
    es->pc = calloc((size_t)n, sizeof(double));
    es->C = calloc(nn, sizeof(double));
    es->B = calloc(nn, sizeof(double));
    es->A = calloc(nn, sizeof(double));
    es->D = calloc((size_t)n, sizeof(double));
    es->x = calloc(ln, sizeof(double));
    es->y = calloc(ln, sizeof(double));
    es->order = calloc((size_t)lambda, sizeof(int));
    es->t1 = calloc((size_t)n, sizeof(double));
    es->t2 = calloc((size_t)n, sizeof(double));
    es->t3 = calloc((size_t)n, sizeof(double));
    es->wo = calloc((size_t)lambda, sizeof(double));
    es->best_x = calloc((size_t)n, sizeof(double));
    es->fhist = calloc((size_t)es->fhist_len, sizeof(double));
    es->xg = calloc(ln, sizeof(double));
    if (lo) {
        es->lo = calloc((size_t)n, sizeof(double));
        es->hi = calloc((size_t)n, sizeof(double));
        es->al = calloc((size_t)n, sizeof(double));
        es->au = calloc((size_t)n, sizeof(double));
    }
    if (!es->w || !es->m || !es->ps || !es->pc || !es->C || !es->B || !es->A || !es->D ||
        !es->x || !es->y || !es->order || !es->t1 || !es->t2 || !es->t3 || !es->wo || !es->best_x || !es->fhist ||
        !es->xg || (lo && (!es->lo || !es->hi || !es->al || !es->au))) {
        cmaes_free(es);
        return td_fail(TD_ERR_NOMEM, "cmaes: out of memory (n = %d, lambda = %d)", n, lambda);
    }

    /* Table 1: weights, mu_eff, learning rates. */
    int mu = es->mu;
    double lw0 = det_log(((double)lambda + 1.0) / 2.0);
    double spos = 0.0, spos2 = 0.0, sneg = 0.0, sneg2 = 0.0;
    for (int i = 0; i < lambda; i++) {
        double wp = lw0 - det_log((double)(i + 1));
        es->w[i] = wp;
        if (i < mu) {
            spos += wp;
            spos2 += wp * wp;
        } else if (wp < 0.0) {
            sneg += -wp;
            sneg2 += wp * wp;
        }
    }
    double nd = (double)n;
    es->mueff = spos * spos / spos2;
    double mueff_neg = sneg2 > 0.0 ? sneg * sneg / sneg2 : 0.0;
    double mueff = es->mueff;
    es->cm = 1.0;
    es->cs = (mueff + 2.0) / (nd + mueff + 5.0);
    double dsq = sqrt((mueff - 1.0) / (nd + 1.0)) - 1.0;
    es->ds = 1.0 + 2.0 * (dsq > 0.0 ? dsq : 0.0) + es->cs;
    es->cc = (4.0 + mueff / nd) / (nd + 4.0 + 2.0 * mueff / nd);
    es->c1 = 2.0 / ((nd + 1.3) * (nd + 1.3) + mueff);
    double cmu = 2.0 * (mueff - 2.0 + 1.0 / mueff) / ((nd + 2.0) * (nd + 2.0) + mueff);
    if (cmu > 1.0 - es->c1)
        cmu = 1.0 - es->c1;
    if (cmu < 0.0)
        cmu = 0.0;
    es->cmu = cmu;
    double alpha_neg = 1.0 + 2.0 * mueff_neg / (mueff + 2.0); /* alpha_mueff^- */
    if (cmu > 0.0) {
        double a_mu = 1.0 + es->c1 / cmu;
        double a_posdef = (1.0 - es->c1 - cmu) / (nd * cmu);
        if (a_mu < alpha_neg)
            alpha_neg = a_mu;
        if (a_posdef < alpha_neg)
            alpha_neg = a_posdef;
    }
    es->sum_w = 0.0;
    for (int i = 0; i < lambda; i++) {
        if (i < mu)
            es->w[i] = es->w[i] / spos;
        else if (es->w[i] < 0.0)
            es->w[i] = alpha_neg * es->w[i] / sneg;
        else
            es->w[i] = 0.0; /* the middle rank of an odd lambda: ln 1 = 0 */
        es->sum_w += es->w[i];
    }
    es->chin = sqrt(nd) * (1.0 - 1.0 / (4.0 * nd) + 1.0 / (21.0 * nd * nd));

    es->sigma0 = es->sigma = sigma0;
    memcpy(es->m, x0, (size_t)n * sizeof(double));
    if (lo) {
        memcpy(es->lo, lo, (size_t)n * sizeof(double));
        memcpy(es->hi, hi, (size_t)n * sizeof(double));
        for (int i = 0; i < n; i++) {
            double half = (hi[i] - lo[i]) / 2.0; /* may be +INFINITY */
            double a = (1.0 + fabs(lo[i])) / 20.0, b = (1.0 + fabs(hi[i])) / 20.0;
            es->al[i] = a < half ? a : half;
            es->au[i] = b < half ? b : half;
            es->m[i] = from_box(x0[i], lo[i], hi[i], es->al[i], es->au[i]);
        }
    }
    memcpy(es->best_x, x0, (size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) {
        es->C[(size_t)i * n + i] = 1.0;
        es->B[(size_t)i * n + i] = 1.0;
        es->D[i] = 1.0;
    }
    es->cond = 1.0;
    es->decay = (1.0 - es->cs) * (1.0 - es->cs);
    rng_seed(&es->rng, seed);
    es->best_f = INFINITY;
    es->tol_fun = 1e-12;
    es->tol_x = 1e-12 * sigma0;
    es->last_min = es->last_max = INFINITY;
    *out = es;
    return TD_OK;
}

void cmaes_free(CmaEs *es)
{
    if (!es)
        return;
    free(es->w);
    free(es->m);
    free(es->ps);
    free(es->pc);
    free(es->C);
    free(es->B);
    free(es->A);
    free(es->D);
    free(es->x);
    free(es->y);
    free(es->order);
    free(es->t1);
    free(es->t2);
    free(es->t3);
    free(es->wo);
    free(es->best_x);
    free(es->fhist);
    free(es->xg);
    free(es->lo);
    free(es->hi);
    free(es->al);
    free(es->au);
    free(es);
}

TdStatus cmaes_set_tolerances(CmaEs *es, double tol_fun, double tol_x)
{
    if (!(tol_fun >= 0.0) || !(tol_x >= 0.0))
        return td_fail(TD_ERR_ARG, "cmaes: tolerances tol_fun = %g, tol_x = %g must be >= 0",
                       tol_fun, tol_x);
    es->tol_fun = tol_fun;
    es->tol_x = tol_x;
    return TD_OK;
}

int cmaes_dim(const CmaEs *es) { return es->n; }
int cmaes_lambda(const CmaEs *es) { return es->lambda; }
long cmaes_generation(const CmaEs *es) { return es->gen; }
long cmaes_evaluations(const CmaEs *es) { return es->gen * (long)es->lambda; }
double cmaes_sigma(const CmaEs *es) { return es->sigma; }
double cmaes_condition(const CmaEs *es) { return es->cond; }

void cmaes_mean(const CmaEs *es, double *m)
{
    for (int i = 0; i < es->n; i++)
        m[i] = es->lo ? to_box(es->m[i], es->lo[i], es->hi[i], es->al[i], es->au[i]) : es->m[i];
}

double cmaes_best(const CmaEs *es, double *x)
{
    if (x)
        memcpy(x, es->best_x, (size_t)es->n * sizeof(double));
    return es->best_f;
}

/* ---- ask / tell ---- */

static void sample(CmaEs *es)
{
    int n = es->n;
    double *z = es->t1;
    for (int k = 0; k < es->lambda; k++) {
        for (int i = 0; i < n; i++)
            z[i] = es->D[i] * det_normal(es);
        double *xk = es->x + (size_t)k * n, *gk = es->xg + (size_t)k * n;
        for (int r = 0; r < n; r++) {
            const double *br = es->B + (size_t)r * n;
            double yr = 0.0;
            for (int c = 0; c < n; c++)
                yr += br[c] * z[c];
            gk[r] = es->m[r] + es->sigma * yr;
            xk[r] = es->lo ? to_box(gk[r], es->lo[r], es->hi[r], es->al[r], es->au[r]) : gk[r];
        }
    }
    es->asked = 1;
}

void cmaes_ask(CmaEs *es, double *x)
{
    if (!es->asked)
        sample(es);
    memcpy(x, es->x, (size_t)es->lambda * es->n * sizeof(double));
}

/* a ranks before b: smaller f, NaN last, equal values by index. */
static int ranks_before(const double *f, int a, int b)
{
    double fa = f[a], fb = f[b];
    int na = isnan(fa), nb = isnan(fb);
    if (na != nb)
        return nb;
    if (!na) {
        if (fa < fb)
            return 1;
        if (fa > fb)
            return 0;
    }
    return a < b;
}

/* C^(-1/2) v = B D^-1 B^T v into out (uses t2). */
static void inv_sqrt_c(CmaEs *es, const double *v, double *out)
{
    int n = es->n;
    double *t = es->t2;
    for (int j = 0; j < n; j++) {
        double s = 0.0;
        for (int r = 0; r < n; r++)
            s += es->B[(size_t)r * n + j] * v[r];
        t[j] = s / es->D[j];
    }
    for (int r = 0; r < n; r++) {
        const double *br = es->B + (size_t)r * n;
        double s = 0.0;
        for (int j = 0; j < n; j++)
            s += br[j] * t[j];
        out[r] = s;
    }
}

void cmaes_tell(CmaEs *es, const double *f)
{
    int n = es->n, lambda = es->lambda, mu = es->mu;
    if (!es->asked)
        sample(es);

    /* rank (insertion sort: stable, and the order is total anyway) */
    int *ord = es->order;
    for (int k = 0; k < lambda; k++) {
        int j = k;
        while (j > 0 && ranks_before(f, k, ord[j - 1])) {
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = k;
    }
    for (int k = 0; k < lambda; k++)
        if (f[k] < es->best_f) {
            es->best_f = f[k];
            memcpy(es->best_x, es->x + (size_t)k * n, (size_t)n * sizeof(double));
        }
    double fmin = f[ord[0]], fmax = f[ord[lambda - 1]];
    es->fhist[es->gen % es->fhist_len] = fmin;
    if (isnan(fmin) || isnan(fmax)) {
        es->last_min = es->last_max = INFINITY;
    } else {
        es->last_min = fmin;
        es->last_max = fmax;
    }

    /* steps of the samples (in the search space), and their weighted mean */
    for (int k = 0; k < lambda; k++)
        for (int i = 0; i < n; i++)
            es->y[(size_t)k * n + i] = (es->xg[(size_t)k * n + i] - es->m[i]) / es->sigma;
    double *yw = es->t1;
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int r = 0; r < mu; r++)
            s += es->w[r] * es->y[(size_t)ord[r] * n + i];
        yw[i] = s;
    }
    for (int i = 0; i < n; i++)
        es->m[i] += es->cm * es->sigma * yw[i];

    /* step-size path, h_sigma, covariance path */
    double *cy = es->t3;
    inv_sqrt_c(es, yw, cy);
    double kps = sqrt(es->cs * (2.0 - es->cs) * es->mueff), ps2 = 0.0;
    for (int i = 0; i < n; i++) {
        es->ps[i] = (1.0 - es->cs) * es->ps[i] + kps * cy[i];
        ps2 += es->ps[i] * es->ps[i];
    }
    double psn = sqrt(ps2);
    int hsig = psn / sqrt(1.0 - es->decay) < (1.4 + 2.0 / ((double)n + 1.0)) * es->chin;
    es->decay *= (1.0 - es->cs) * (1.0 - es->cs);
    double kpc = sqrt(es->cc * (2.0 - es->cc) * es->mueff);
    for (int i = 0; i < n; i++)
        es->pc[i] = (1.0 - es->cc) * es->pc[i] + (hsig ? kpc * yw[i] : 0.0);

    /* weights of the rank-mu update: negative ones rescaled by n / |C^-1/2 y|^2 */
    double *wo = es->wo;
    for (int r = 0; r < lambda; r++) {
        double wr = es->w[r];
        if (wr < 0.0) {
            inv_sqrt_c(es, es->y + (size_t)ord[r] * n, cy);
            double q = 0.0;
            for (int i = 0; i < n; i++)
                q += cy[i] * cy[i];
            wr = q > 0.0 ? wr * (double)n / q : 0.0;
        }
        wo[r] = wr;
    }
    /* C = (1 + c1 delta(h) - c1 - cmu sum w) C + c1 pc pc^T + cmu sum wo_r y_r y_r^T */
    double delta = hsig ? 0.0 : es->cc * (2.0 - es->cc);
    double keep = 1.0 + es->c1 * delta - es->c1 - es->cmu * es->sum_w;
    for (int i = 0; i < n; i++) {
        for (int j = i; j < n; j++) {
            double s = 0.0;
            for (int r = 0; r < lambda; r++) {
                if (wo[r] == 0.0)
                    continue;
                const double *yr = es->y + (size_t)ord[r] * n;
                s += wo[r] * yr[i] * yr[j];
            }
            double v = keep * es->C[(size_t)i * n + j] + es->c1 * es->pc[i] * es->pc[j] +
                       es->cmu * s;
            es->C[(size_t)i * n + j] = v;
            es->C[(size_t)j * n + i] = v;
        }
    }

    es->sigma *= det_exp((es->cs / es->ds) * (psn / es->chin - 1.0));
    if (!isfinite(es->sigma) || !(es->sigma > 0.0))
        es->nonfinite = 1;
    decompose(es);
    es->gen++;
    es->asked = 0;
}

unsigned cmaes_stop(const CmaEs *es)
{
    int n = es->n;
    unsigned s = 0;
    if (es->nonfinite)
        return CMAES_STOP_NONFINITE;
    for (int i = 0; i < n; i++)
        if (!isfinite(es->m[i]))
            return CMAES_STOP_NONFINITE;
    if (es->gen >= es->fhist_len) {
        double lo = es->last_min, hi = es->last_max;
        for (int g = 0; g < es->fhist_len; g++) {
            double v = es->fhist[g];
            if (isnan(v)) {
                lo = -INFINITY;
                break;
            }
            if (v < lo)
                lo = v;
            if (v > hi)
                hi = v;
        }
        if (hi - lo < es->tol_fun)
            s |= CMAES_STOP_TOLFUN;
    }
    int small = 1;
    double dmax = 0.0;
    for (int i = 0; i < n && small; i++)
        if (!(es->sigma * fabs(es->pc[i]) < es->tol_x) ||
            !(es->sigma * sqrt(es->C[(size_t)i * n + i]) < es->tol_x))
            small = 0;
    if (small)
        s |= CMAES_STOP_TOLX;
    if (es->cond > 1e14)
        s |= CMAES_STOP_CONDITION;
    int axis = (int)(es->gen % n), noeffect = 1;
    for (int i = 0; i < n && noeffect; i++) {
        double mi = es->m[i];
        if (mi + 0.1 * es->sigma * es->D[axis] * es->B[(size_t)i * n + axis] != mi)
            noeffect = 0;
    }
    if (noeffect)
        s |= CMAES_STOP_NOEFFECTAXIS;
    for (int i = 0; i < n; i++) {
        double mi = es->m[i];
        if (mi + 0.2 * es->sigma * sqrt(es->C[(size_t)i * n + i]) == mi) {
            s |= CMAES_STOP_NOEFFECTCOORD;
            break;
        }
    }
    for (int i = 0; i < n; i++)
        if (es->D[i] > dmax)
            dmax = es->D[i];
    if (es->sigma * dmax > 1e4 * es->sigma0)
        s |= CMAES_STOP_TOLXUP;
    return s;
}

const char *cmaes_stop_name(unsigned bit)
{
    switch (bit) {
    case CMAES_STOP_TOLFUN: return "tolfun";
    case CMAES_STOP_TOLX: return "tolx";
    case CMAES_STOP_CONDITION: return "condition";
    case CMAES_STOP_NOEFFECTAXIS: return "noeffectaxis";
    case CMAES_STOP_NOEFFECTCOORD: return "noeffectcoord";
    case CMAES_STOP_TOLXUP: return "tolxup";
    case CMAES_STOP_NONFINITE: return "nonfinite";
    default: return "";
    }
}
