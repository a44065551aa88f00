#include "stats.h"

#include <math.h>
#include <stdlib.h>

/* One step of the modified Lentz method: d and c updated with term num. */
static double lentz_step(double num, double *c, double *d)
{
    const double tiny = 1e-300;
    *d = 1 + num * *d;
    *c = 1 + num / *c;
    if (fabs(*d) < tiny)
        *d = tiny;
    if (fabs(*c) < tiny)
        *c = tiny;
    *d = 1 / *d;
    return *d * *c;
}

/* Continued fraction of the regularised incomplete beta function, evaluated
 * with the modified Lentz method. */
static double beta_cf(double a, double b, double x)
{
    double c = 1, d = 1 - (a + b) * x / (a + 1);
    d = 1 / (fabs(d) < 1e-300 ? 1e-300 : d);
    double h = d;
    for (int m = 1; m <= 500; m++) {
        double m2 = 2.0 * m;
        h *= lentz_step(m * (b - m) * x / ((a + m2 - 1) * (a + m2)), &c, &d);
        double del = lentz_step(-(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1)), &c, &d);
        h *= del;
        if (fabs(del - 1) < 1e-15)
            break;
    }
    return h;
}

/* I_x(a, b) */
static double beta_inc(double a, double b, double x)
{
    if (x <= 0)
        return 0;
    if (x >= 1)
        return 1;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2))
        return exp(lbt) * beta_cf(a, b, x) / a;
    return 1 - exp(lbt) * beta_cf(b, a, 1 - x) / b;
}

double stats_t_cdf(double t, double df)
{
    double tail = 0.5 * beta_inc(df / 2, 0.5, df / (df + t * t)); /* P(T > |t|) */
    return t >= 0 ? 1 - tail : tail;
}

double stats_t_quantile(double p, double df)
{
    double lo = -1e3, hi = 1e3;
    for (int i = 0; i < 200 && hi - lo > 1e-12; i++) {
        double mid = 0.5 * (lo + hi);
        if (stats_t_cdf(mid, df) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

void stats_mean_ci95(const double *x, int n, double *mean, double *half)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    double m = n > 0 ? s / n : NAN;
    *mean = m;
    if (n < 2) {
        *half = NAN;
        return;
    }
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (x[i] - m) * (x[i] - m);
    double sd = sqrt(ss / (n - 1));
    *half = stats_t_quantile(0.975, n - 1) * sd / sqrt((double)n);
}

static int cmp_pair(const void *a, const void *b)
{
    const double *p = a, *q = b;
    return (p[0] > q[0]) - (p[0] < q[0]);
}

int stats_interp(const double *x, const double *y, int n, double at, double *y_at)
{
    double *pt = malloc((size_t)(n > 0 ? n : 1) * 2 * sizeof *pt);
    if (!pt)
        return 0;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i])) {
            pt[2 * m] = x[i];
            pt[2 * m + 1] = y[i];
            m++;
        }
    qsort(pt, (size_t)m, 2 * sizeof *pt, cmp_pair);
    /* average the y of equal x */
    int u = 0;
    for (int i = 0; i < m;) {
        int j = i;
        double s = 0;
        while (j < m && pt[2 * j] == pt[2 * i])
            s += pt[2 * j + 1], j++;
        pt[2 * u] = pt[2 * i];
        pt[2 * u + 1] = s / (j - i);
        u++;
        i = j;
    }
    int ok = 0;
    if (u > 0 && at >= pt[0] && at <= pt[2 * (u - 1)]) {
        ok = 1;
        if (u == 1) {
            *y_at = pt[1];
        } else {
            int k = 0;
            while (k < u - 2 && at > pt[2 * (k + 1)])
                k++;
            double x0 = pt[2 * k], x1 = pt[2 * k + 2], y0 = pt[2 * k + 1], y1 = pt[2 * k + 3];
            *y_at = y0 + (y1 - y0) * (at - x0) / (x1 - x0);
        }
    }
    free(pt);
    return ok;
}
