/* stats: the small statistics that studies report (single-process, double).
 *
 * Intervals are two-sided 95% Student-t intervals over independent replicates
 * (seeds): mean +- t(0.975, n-1) * sd / sqrt(n), sd with the n-1 divisor.
 * Interpolation is piecewise linear through points sorted by x, never
 * extrapolated. */
#ifndef TD_STATS_H
#define TD_STATS_H

/* Student t cumulative distribution function with df > 0 degrees of freedom. */
double stats_t_cdf(double t, double df);
/* Quantile: the t with stats_t_cdf(t, df) = p, 0 < p < 1 (bisection, |err| < 1e-10). */
double stats_t_quantile(double p, double df);

/* Mean of x (n >= 1) and the half-width of its 95% interval (NaN when n < 2). */
void stats_mean_ci95(const double *x, int n, double *mean, double *half);

/* y at x = at on the curve through (x[i], y[i]) (n points, any order; points
 * with equal x are averaged): 1 and *y_at when min x <= at <= max x, else 0.
 * Non-finite points are ignored. */
int stats_interp(const double *x, const double *y, int n, double at, double *y_at);

#endif
