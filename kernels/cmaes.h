/* cmaes: the (mu/mu_w, lambda)-CMA-ES of Hansen, "The CMA Evolution Strategy:
 * A Tutorial", arXiv:1604.00772 (Figure 6 with the defaults of Table 1), as a
 * single-process ask/tell kernel: the caller asks for a generation's lambda
 * candidates, evaluates them however it likes (e.g. spread over MPI ranks) and
 * tells their values back. Minimises.
 *
 * Algorithm (one generation): z_k ~ N(0, I), y_k = B D z_k, x_k = m + sigma y_k
 * (C = B D^2 B^T); sort by f (stable: equal values keep index order, NaN ranks
 * last); m += c_m sigma <y>_w; cumulative step-size adaptation (p_sigma, sigma);
 * rank-one (p_c, with h_sigma) plus rank-mu update of C using all lambda
 * weights (the negative, "active" ones with the rescaling w°_i of Table 1).
 *
 * Default strategy parameters (Table 1; n = dimension):
 *   lambda = 4 + floor(3 ln n), mu = floor(lambda / 2),
 *   w'_i = ln((lambda + 1) / 2) - ln i, positive ones normalised to sum 1,
 *   mu_eff = (sum w_+)^2 / sum w_+^2, c_m = 1,
 *   c_sigma = (mu_eff + 2) / (n + mu_eff + 5),
 *   d_sigma = 1 + 2 max(0, sqrt((mu_eff - 1) / (n + 1)) - 1) + c_sigma,
 *   c_c = (4 + mu_eff / n) / (n + 4 + 2 mu_eff / n),
 *   c_1 = 2 / ((n + 1.3)^2 + mu_eff),
 *   c_mu = min(1 - c_1, 2 (mu_eff - 2 + 1/mu_eff) / ((n + 2)^2 + mu_eff)),
 *   negative weights scaled to sum -min(1 + c_1/c_mu, 1 + 2 mu_eff^- /
 *   (mu_eff + 2), (1 - c_1 - c_mu) / (n c_mu)),
 *   E||N(0,I)|| ~ sqrt(n) (1 - 1/(4n) + 1/(21 n^2)).
 * C is decomposed every generation (cyclic Jacobi).
 *
 * Bounds [lo, hi] (both NULL: unbounded; lo_i < hi_i; an entry may be
 * -/+INFINITY): Hansen's boundary transformation (as in c-cmaes's
 * boundary_transformation.c and pycma's BoundTransform). The strategy searches
 * an unbounded space; each coordinate is mapped into [lo_i, hi_i] by a map that
 * is the identity on [lo_i + a_l, hi_i - a_u], quadratic on the margins
 * (a_l = min((hi_i - lo_i) / 2, (1 + |lo_i|) / 20), a_u likewise with hi_i),
 * so that the bounds themselves are attained, and mirrored (periodic when both
 * bounds are finite) beyond. ask returns the mapped points, which are what the
 * caller evaluates; the update uses their unmapped samples, so the step-size
 * and covariance adaptation see an unconstrained problem and an optimum on a
 * bound is approached at the usual linear rate. x0 is mapped back (inverse of
 * the margin map); cmaes_mean reports the mapped mean. A fixed coordinate
 * (lo_i == hi_i) is an error: leave it out of x.
 *
 * Determinism: no BLAS/LAPACK and no libm transcendentals. Normals come from
 * xoshiro256** (rng.h, rng_uniform) through Marsaglia's polar method with this
 * file's own log; exp, log and the eigendecomposition are this file's own,
 * built only from + - * / and sqrt (all correctly rounded in IEEE-754) in fixed
 * loop orders. So the same (seed, n, x0, sigma0, lambda, bounds) and the same
 * sequence of told f values give bit-identical candidates on any machine with
 * IEEE-754 binary64 arithmetic evaluated in double (FLT_EVAL_METHOD 0, checked
 * at compile time) and no FMA contraction (turned off in cmaes.c; the test
 * checks a checksum of the candidates). All state lives in the CmaEs object. */
#ifndef TD_CMAES_H
#define TD_CMAES_H

#include <stdint.h>

#include "status.h"

typedef struct CmaEs CmaEs;

/* Stop conditions, a bit set (cmaes_stop); defaults after Hansen's tutorial,
 * Appendix B.3. */
enum {
    CMAES_STOP_TOLFUN = 1u << 0,  /* best f of the last 10 + ceil(30 n / lambda)
                                     generations and all f of the last one span
                                     less than tol_fun (default 1e-12) */
    CMAES_STOP_TOLX = 1u << 1,    /* sigma * sqrt(C_ii) and sigma * p_c,i below
                                     tol_x for all i (default 1e-12 * sigma0) */
    CMAES_STOP_CONDITION = 1u << 2, /* condition number of C above 1e14 */
    CMAES_STOP_NOEFFECTAXIS = 1u << 3, /* m + 0.1 sigma sqrt(d_i) b_i == m */
    CMAES_STOP_NOEFFECTCOORD = 1u << 4, /* m_i + 0.2 sigma sqrt(C_ii) == m_i */
    CMAES_STOP_TOLXUP = 1u << 5,  /* sigma * max(d_i) grew over 1e4 * sigma0 */
    CMAES_STOP_NONFINITE = 1u << 6 /* m, sigma or C no longer finite */
};

/* Creates the strategy: dimension n >= 1, mean x0 (n values, inside the box
 * when bounded), initial step size sigma0 > 0, population lambda (0: the
 * default 4 + floor(3 ln n); otherwise >= 2), seed of the normal stream, and
 * either both bounds lo, hi (n values each, lo_i < hi_i) or both NULL. Errors
 * (TD_ERR_ARG) name the bad argument. */
TdStatus cmaes_create(CmaEs **es, int n, const double *x0, double sigma0, int lambda,
                      uint64_t seed, const double *lo, const double *hi);
void cmaes_free(CmaEs *es);

/* Overrides the tolerances of CMAES_STOP_TOLFUN and CMAES_STOP_TOLX (>= 0). */
TdStatus cmaes_set_tolerances(CmaEs *es, double tol_fun, double tol_x);

int cmaes_dim(const CmaEs *es);
int cmaes_lambda(const CmaEs *es);

/* The generation's lambda candidates, row-major lambda x n, inside [lo, hi]
 * when bounded. Calling it again before cmaes_tell returns the same
 * candidates (it draws nothing new). */
void cmaes_ask(CmaEs *es, double *x);
/* The candidates' values in ask order (lambda values, minimised; NaN ranks
 * after +INFINITY). Updates the distribution and ends the generation. A tell
 * without an ask first asks implicitly. */
void cmaes_tell(CmaEs *es, const double *f);

/* Completed generations (tells) and evaluations (lambda per generation). */
long cmaes_generation(const CmaEs *es);
long cmaes_evaluations(const CmaEs *es);
/* The lowest told f so far (+INFINITY before the first tell; the first of
 * equal values wins) and, when x is not NULL, its candidate (x0 before). */
double cmaes_best(const CmaEs *es, double *x);
/* The current mean (n values; mapped into the box when bounded), step size
 * sigma, and the condition number of C (largest over smallest eigenvalue, as
 * of the last decomposition); sigma and C live in the search space. */
void cmaes_mean(const CmaEs *es, double *m);
double cmaes_sigma(const CmaEs *es);
double cmaes_condition(const CmaEs *es);
/* The stop conditions met now (0: none), CMAES_STOP_* bits. */
unsigned cmaes_stop(const CmaEs *es);
/* Name of one CMAES_STOP_* bit ("tolfun", "tolx", ...), "" otherwise. */
const char *cmaes_stop_name(unsigned bit);

#endif
