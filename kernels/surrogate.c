/* surrogate: the linear surrogate of a merged model (surrogate.h). */
#include "surrogate.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

void sur_project(const float *u, int64_t n, int R, int E, const float *head, int C, float *p)
{
    for (int64_t i = 0; i < n; i++)
        for (int r = 0; r < R; r++) {
            const float *x = u + ((size_t)i * R + r) * E;
            float *o = p + ((size_t)i * R + r) * C;
            for (int c = 0; c < C; c++) {
                const float *h = head + (size_t)c * E;
                double s = 0;
                for (int e = 0; e < E; e++)
                    s += (double)x[e] * h[e];
                o[c] = (float)s;
            }
        }
}

int64_t sur_correct(const float *p, const int32_t *y, int64_t n, int R, int C, const double *a)
{
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *q = p + (size_t)i * R * C;
        int best = 0;
        double bv = -INFINITY;
        for (int c = 0; c < C; c++) {
            double z = q[c];
            for (int r = 1; r < R; r++)
                z += a[r - 1] * q[(size_t)r * C + c];
            if (z > bv) {
                bv = z;
                best = c;
            }
        }
        ok += best == y[i];
    }
    return ok;
}

TdStatus sur_scores(const float *u, const int32_t *y, int64_t n, int R, int E, const float *head,
                int C, double scale, const double *a, int64_t *correct, double *ce_sum)
{
    int64_t ok = 0;
    double ce = 0;
    float *f = malloc((size_t)E * sizeof *f);
    double *acc = malloc((size_t)E * sizeof *acc);
    if (!f || !acc) {
        free(f);
        free(acc);
        return td_fail(TD_ERR_NOMEM, "surrogate scores: out of memory (%d values)", E);
    }
    for (int64_t i = 0; i < n; i++) {
        const float *q = u + (size_t)i * R * E;
        for (int k = 0; k < E; k++)
            acc[k] = q[k];
        for (int r = 1; r < R; r++) {
            const double ar = a[r - 1];
            const float *qr = q + (size_t)r * E;
            if (ar != 0)
                for (int k = 0; k < E; k++)
                    acc[k] += ar * qr[k];
        }
        for (int k = 0; k < E; k++)
            f[k] = (float)acc[k];
        op_l2norm_row(f, E);
        double v = 0;
        ok += op_head_score(f, head, C, E, scale, y[i], ce_sum ? &v : NULL) == y[i];
        ce += v;
    }
    free(f);
    free(acc);
    *correct = ok;
    if (ce_sum)
        *ce_sum = ce;
    return TD_OK;
}

TdStatus sur_objective(const float *u, const int32_t *y, const int64_t *idx, int64_t m, int R,
                       int E, const float *head, int C, double scale, const double *a, double w,
                       double *loss, double *ga)
{
    double *buf = malloc(((size_t)3 * E + 2 * (size_t)C) * sizeof *buf);
    if (!buf)
        return td_fail(TD_ERR_NOMEM, "surrogate objective: out of memory (%d values)", E);
    double *f = buf, *g = f + E, *dg = g + E, *z = dg + E, *dz = z + C;
    double sum = 0;
    for (int64_t q = 0; q < m; q++) {
        const int64_t i = idx ? idx[q] : q;
        const float *U = u + (size_t)i * R * E;
        for (int k = 0; k < E; k++)
            f[k] = U[k];
        for (int r = 1; r < R; r++)
            if (a[r - 1] != 0)
                for (int k = 0; k < E; k++)
                    f[k] += a[r - 1] * U[(size_t)r * E + k];
        double nn = 0;
        for (int k = 0; k < E; k++)
            nn += f[k] * f[k];
        const double nrm = sqrt(nn), inv = nrm > 0 ? 1.0 / nrm : 0.0;
        for (int k = 0; k < E; k++)
            g[k] = f[k] * inv;
        double zmax = -INFINITY;
        for (int c = 0; c < C; c++) {
            double v = 0;
            for (int k = 0; k < E; k++)
                v += g[k] * head[(size_t)c * E + k];
            z[c] = scale * v;
            zmax = z[c] > zmax ? z[c] : zmax;
        }
        double se = 0;
        for (int c = 0; c < C; c++)
            se += exp(z[c] - zmax);
        const double lse = zmax + log(se);
        double val;
        if (y) { /* cross-entropy: dz = p - onehot */
            val = lse - z[y[i]];
            for (int c = 0; c < C; c++)
                dz[c] = exp(z[c] - lse) - (c == y[i]);
        } else { /* entropy H = -sum p log p: dH/dz_c = -p_c (log p_c + H) */
            double H = 0;
            for (int c = 0; c < C; c++) {
                const double lp = z[c] - lse, p = exp(lp);
                H -= p * lp;
            }
            val = H;
            for (int c = 0; c < C; c++) {
                const double lp = z[c] - lse;
                dz[c] = -exp(lp) * (lp + H);
            }
        }
        sum += val;
        /* dL/dg = scale * h^T dz; dL/df = (dg - g <g, dg>) / |f|; dL/da_j = <dL/df, U_j> */
        double gd = 0;
        for (int k = 0; k < E; k++) {
            double v = 0;
            for (int c = 0; c < C; c++)
                v += dz[c] * head[(size_t)c * E + k];
            dg[k] = scale * v;
            gd += g[k] * dg[k];
        }
        for (int k = 0; k < E; k++)
            dg[k] = (dg[k] - g[k] * gd) * inv;
        for (int r = 1; r < R; r++) {
            double v = 0;
            for (int k = 0; k < E; k++)
                v += dg[k] * U[(size_t)r * E + k];
            ga[r - 1] += w * v;
        }
    }
    *loss += w * sum;
    free(buf);
    return TD_OK;
}

/* ---- exhaustive screening ---- */

/* Coefficients scored as one block: A^SUR_INNER combinations per step of
 * the Gray walk over the others. */
#define SUR_INNER 2
/* Combinations of the fastest coefficient scored side by side (A at most). */
#define SUR_LANES 16

typedef struct {
    int64_t n;
    int C;
    double w;          /* weight / n */
    const int32_t *y;
    int32_t *L;        /* (C, n) current logits, class-major */
    int32_t *Ly;       /* (n) the label's logit */
    int32_t *Q0;       /* (C, n) every coefficient at v_0 */
    int32_t *Q0y;      /* (n) */
    int32_t *D;        /* (K, A-1, C, n) moving coefficient j from grid point a to a+1 */
    int32_t *Dy;       /* (K, A-1, n) */
    uint8_t *ok;       /* (n) */
    /* the inner block (coefficients 0 .. SUR_INNER-1, every combination of
     * their grid points at once; only when A <= SUR_LANES): */
    int32_t *blk;      /* (n, SUR_INNER, C, SUR_LANES) moving coefficient j from v_0 to
                          v_a (lane a; lanes past A: 0), one image's together */
    int32_t *lo, *hi;  /* (C, n) the range of (label - class) logit over the block */
    int32_t *mlo, *mhi; /* (n) the least margin over the classes at lo, at hi */
    int32_t *unc;      /* (n) images the block's range leaves undecided */
    int64_t *cnt;      /* (A^SUR_INNER) correct images per combination */
    uint64_t undecided, judged; /* images scored one by one / all, over blocks */
} GridTask;

struct SurGrid {
    int ntasks, K, A;
    GridTask *t;
    uint64_t *pow;     /* (K + 1) A^j */
    int m;             /* inner coefficients of the current chunk */
};

void sur_grid_free(SurGrid *g)
{
    if (!g)
        return;
    for (int k = 0; k < g->ntasks && g->t; k++) {
        GridTask *t = &g->t[k];
        free(t->L), free(t->Ly), free(t->Q0), free(t->Q0y), free(t->D), free(t->Dy), free(t->ok);
        free(t->blk), free(t->lo), free(t->hi), free(t->unc), free(t->cnt), free(t->mlo);
        free(t->mhi);
    }
    free(g->t);
    free(g->pow);
    free(g);
}

static TdStatus grid_task(GridTask *t, const SurTask *s, int K, const double *vals, int A)
{
    const int64_t n = s->n;
    const int C = s->C, R = 1 + K;
    t->n = n;
    t->C = C;
    t->w = n > 0 ? s->weight / (double)n : 0.0;
    t->y = s->y;
    size_t cn = (size_t)C * n, steps = (size_t)K * (A - 1);
    t->L = malloc((cn + 1) * sizeof *t->L);
    t->Ly = malloc(((size_t)n + 1) * sizeof *t->Ly);
    t->Q0 = malloc((cn + 1) * sizeof *t->Q0);
    t->Q0y = malloc(((size_t)n + 1) * sizeof *t->Q0y);
    t->D = malloc((steps * cn + 1) * sizeof *t->D);
    t->Dy = malloc((steps * n + 1) * sizeof *t->Dy);
    t->ok = malloc((size_t)n + 1);
    const int inner = K < SUR_INNER ? K : SUR_INNER;
    size_t Q = 1;
    for (int j = 0; j < SUR_INNER; j++)
        Q *= (size_t)A;
    t->lo = malloc((cn + 1) * sizeof *t->lo);
    t->hi = malloc((cn + 1) * sizeof *t->hi);
    t->mlo = malloc(((size_t)n + 1) * sizeof *t->mlo);
    t->mhi = malloc(((size_t)n + 1) * sizeof *t->mhi);
    t->unc = malloc(((size_t)n + 1) * sizeof *t->unc);
    t->cnt = malloc((Q + 1) * sizeof *t->cnt);
    t->blk = A <= SUR_LANES ? malloc(((size_t)n * SUR_INNER * C * SUR_LANES + 1) * sizeof *t->blk)
                            : NULL;
    if (!t->L || !t->Ly || !t->Q0 || !t->Q0y || !t->D || !t->Dy || !t->ok || !t->lo || !t->hi ||
        !t->mlo || !t->mhi || !t->unc || !t->cnt || (A <= SUR_LANES && !t->blk))
        return td_fail(TD_ERR_NOMEM, "surrogate grid: out of memory (%zu steps x %zu logits)",
                       steps, cn);
    /* the scale: no reachable logit exceeds 2^28 in magnitude, nor any sum of
     * moves, so a margin plus the moves of a block stays within int32 */
    double bound = 1e-30;
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            const float *q = s->p + (size_t)i * R * C + c;
            double b = fabs(q[0]);
            for (int j = 0; j < K; j++)
                b += fabs(vals[0] * q[(size_t)(1 + j) * C]) +
                     fabs((vals[A - 1] - vals[0]) * q[(size_t)(1 + j) * C]);
            bound = b > bound ? b : bound;
        }
    const double scale = ldexp(1.0, (int)floor(log2(ldexp(1.0, 28) / bound)));
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            const float *q = s->p + (size_t)i * R * C + c;
            double z = q[0];
            for (int j = 0; j < K; j++)
                z += vals[0] * q[(size_t)(1 + j) * C];
            int32_t v = (int32_t)llround(z * scale);
            t->Q0[(size_t)c * n + i] = v;
            if (c == s->y[i])
                t->Q0y[i] = v;
            for (int j = 0; j < K; j++)
                for (int a = 0; a + 1 < A; a++) {
                    size_t st = (size_t)j * (A - 1) + a;
                    int32_t d = (int32_t)llround((vals[a + 1] - vals[a]) * q[(size_t)(1 + j) * C] *
                                                 scale);
                    t->D[st * cn + (size_t)c * n + i] = d;
                    if (c == s->y[i])
                        t->Dy[st * n + i] = d;
                }
        }
    if (t->blk) { /* the inner block's moves from v_0: exact sums of the same steps */
        memset(t->blk, 0, (size_t)n * SUR_INNER * C * SUR_LANES * sizeof *t->blk);
        for (int j = 0; j < inner; j++)
            for (int c = 0; c < C; c++)
                for (int64_t i = 0; i < n; i++) {
                    int32_t *dst = t->blk + (((size_t)i * SUR_INNER + j) * C + c) * SUR_LANES;
                    for (int a = 1; a < A; a++)
                        dst[a] = dst[a - 1] +
                                 t->D[((size_t)j * (A - 1) + a - 1) * cn + (size_t)c * n + i];
                }
    }
    return TD_OK;
}

TdStatus sur_grid_create(SurGrid **out, const SurTask *tasks, int ntasks, int K, const double *vals,
                         int A)
{
    *out = NULL;
    if (K < 1 || K > 64 || A < 2 || ntasks < 1)
        return td_fail(TD_ERR_ARG, "surrogate grid: %d coefficient(s), %d value(s), %d task(s)", K,
                       A, ntasks);
    for (int a = 0; a + 1 < A; a++)
        if (!(vals[a] < vals[a + 1]))
            return td_fail(TD_ERR_ARG, "surrogate grid: the values must increase");
    for (int k = 0; k < ntasks; k++)
        if (tasks[k].C < 1 || tasks[k].C > 4096)
            return td_fail(TD_ERR_ARG, "surrogate grid: task %d has %d classes (1 to 4096)", k,
                           tasks[k].C);
    double total = pow((double)A, (double)K);
    if (total > 1.8e19)
        return td_fail(TD_ERR_ARG, "surrogate grid: %d^%d candidates do not fit 64 bits", A, K);
    SurGrid *g = calloc(1, sizeof *g);
    if (!g)
        return td_fail(TD_ERR_NOMEM, "surrogate grid: out of memory");
    g->ntasks = ntasks;
    g->K = K;
    g->A = A;
    g->t = calloc((size_t)ntasks, sizeof *g->t);
    g->pow = malloc(((size_t)K + 1) * sizeof *g->pow);
    TdStatus s = g->t && g->pow ? TD_OK : td_fail(TD_ERR_NOMEM, "surrogate grid: out of memory");
    for (int j = 0; s == TD_OK && j <= K; j++)
        g->pow[j] = j == 0 ? 1 : g->pow[j - 1] * (uint64_t)A;
    for (int k = 0; s == TD_OK && k < ntasks; k++)
        s = grid_task(&g->t[k], &tasks[k], K, vals, A);
    if (s != TD_OK) {
        sur_grid_free(g);
        return s;
    }
    *out = g;
    return TD_OK;
}

/* Adds (sign +1) or subtracts step st's differences to every task's logits. */
static void grid_move(SurGrid *g, size_t st, int sign)
{
    for (int k = 0; k < g->ntasks; k++) {
        GridTask *t = &g->t[k];
        const size_t cn = (size_t)t->C * t->n;
        const int32_t *d = t->D + st * cn, *dy = t->Dy + st * t->n;
        int32_t *L = t->L, *Ly = t->Ly;
        if (sign > 0) {
            for (size_t i = 0; i < cn; i++)
                L[i] += d[i];
            for (int64_t i = 0; i < t->n; i++)
                Ly[i] += dy[i];
        } else {
            for (size_t i = 0; i < cn; i++)
                L[i] -= d[i];
            for (int64_t i = 0; i < t->n; i++)
                Ly[i] -= dy[i];
        }
    }
}

/* The score of the current logits: argmax (first on ties) against the label. */
static double grid_score(SurGrid *g)
{
    double score = 0;
    for (int k = 0; k < g->ntasks; k++) {
        GridTask *t = &g->t[k];
        const int64_t n = t->n;
        uint8_t *ok = t->ok;
        const int32_t *Ly = t->Ly, *y = t->y;
        for (int64_t i = 0; i < n; i++)
            ok[i] = 1;
        for (int c = 0; c < t->C; c++) {
            const int32_t *Lc = t->L + (size_t)c * n;
            /* correct iff the label's logit beats every class before it and
             * is not below any after it (argmax takes the first maximum) */
            for (int64_t i = 0; i < n; i++)
                ok[i] &= (uint8_t)((Ly[i] > Lc[i]) | ((c >= y[i]) & (Ly[i] == Lc[i])));
        }
        int64_t cnt = 0;
        for (int64_t i = 0; i < n; i++)
            cnt += ok[i];
        score += (double)cnt * t->w;
    }
    return score;
}

static int cand_better(SurCand a, SurCand b)
{
    return a.score > b.score || (a.score == b.score && a.index < b.index);
}

void sur_top_add(SurCand *top, int k, int *ntop, SurCand c)
{
    int n = *ntop;
    if (n == k && !cand_better(c, top[n - 1]))
        return;
    int at = n < k ? n : k - 1; /* sorted best first: insert, dropping the worst when full */
    while (at > 0 && cand_better(c, top[at - 1])) {
        top[at] = top[at - 1];
        at--;
    }
    top[at] = c;
    if (n < k)
        *ntop = n + 1;
}

static int cmp_cand(const void *pa, const void *pb)
{
    SurCand a = *(const SurCand *)pa, b = *(const SurCand *)pb;
    return cand_better(a, b) ? -1 : cand_better(b, a) ? 1 : 0;
}

void sur_top_sort(SurCand *top, int ntop) { qsort(top, (size_t)ntop, sizeof *top, cmp_cand); }

/* The range of (label logit - class c logit) that the inner block of m
 * coefficients can add, image by image: the sum over its coefficients of each
 * one's least and greatest move (the coefficients move independently). */
static void block_range(SurGrid *g, int m)
{
    for (int k = 0; k < g->ntasks; k++) {
        GridTask *t = &g->t[k];
        const int64_t n = t->n;
        const int C = t->C;
        for (int c = 0; c < C; c++)
            for (int64_t i = 0; i < n; i++) {
                int64_t lo = 0, hi = 0;
                for (int j = 0; j < m; j++) {
                    const int32_t *b = t->blk + ((size_t)i * SUR_INNER + j) * C * SUR_LANES;
                    const int32_t *by = b + (size_t)t->y[i] * SUR_LANES, *bc = b + (size_t)c * SUR_LANES;
                    int64_t mn = INT64_MAX, mx = INT64_MIN;
                    for (int a = 0; a < g->A; a++) {
                        const int64_t v = (int64_t)by[a] - bc[a];
                        mn = v < mn ? v : mn;
                        mx = v > mx ? v : mx;
                    }
                    lo += mn;
                    hi += mx;
                }
                /* within int32: the moves of one logit sum to at most 2^28 */
                t->lo[(size_t)c * n + i] = (int32_t)lo;
                t->hi[(size_t)c * n + i] = (int32_t)hi;
            }
    }
}

/* Task t's correct images for every combination q of the inner block (m
 * coefficients, Q = A^m combinations; coefficient 0 fastest) at the current
 * logits (the block at v_0): cnt[q]. An image that is correct, or wrong, at
 * every combination (its margin against every class stays on one side over
 * the block's range) costs one pass over its classes; only the undecided
 * ones are scored combination by combination. Every test is on exact
 * integers, so the counts are those grid_score gives at each combination. */
static void block_counts(GridTask *t, int A, int m, int Q)
{
    const int64_t n = t->n;
    const int C = t->C;
    const int32_t *L = t->L, *Ly = t->Ly, *y = t->y;
    int64_t certain = 0;
    int nu = 0;
    int32_t *mlo = t->mlo, *mhi = t->mhi;
    for (int64_t i = 0; i < n; i++)
        mlo[i] = mhi[i] = INT32_MAX;
    for (int c = 0; c < C; c++) {
        const int32_t *Lc = L + (size_t)c * n;
        const int32_t *lo = t->lo + (size_t)c * n, *hi = t->hi + (size_t)c * n;
        for (int64_t i = 0; i < n; i++) {
            /* the margin against c: label > c, or label == c when c comes
             * after it (argmax takes the first maximum), i.e. M + tie > 0;
             * c == y always passes (M = lo = hi = 0, tie = 1). Within int32:
             * |logit| and every sum of moves stay below 2^28. */
            const int32_t M = Ly[i] - Lc[i] + (c >= y[i]);
            const int32_t a = M + lo[i], b = M + hi[i];
            mlo[i] = a < mlo[i] ? a : mlo[i];
            mhi[i] = b < mhi[i] ? b : mhi[i];
        }
    }
    for (int64_t i = 0; i < n; i++) {
        if (mhi[i] <= 0) /* some class beats the label everywhere in the block */
            continue;
        if (mlo[i] > 0) /* the label beats every class everywhere */
            certain++;
        else
            t->unc[nu++] = (int32_t)i;
    }
    for (int q = 0; q < Q; q++)
        t->cnt[q] = certain;
    t->undecided += (uint64_t)nu;
    t->judged += (uint64_t)n;
    /* side by side over coefficient 0's grid points (lanes), coefficient 1
     * (when in the block) by a1: correct at a lane iff the label beats
     * every class there, with argmax's tie rule */
    const int A1 = m == 2 ? A : 1;
    const size_t per = (size_t)SUR_INNER * C * SUR_LANES; /* int32 per image */
    for (int u = 0; u < nu; u++) {
        const int64_t i = t->unc[u];
        const int yi = y[i];
        if (u + 4 < nu) { /* the undecided images are sparse: fetch ahead */
            const char *nx = (const char *)(t->blk + (size_t)t->unc[u + 4] * per);
            for (size_t off = 0; off < per * sizeof(int32_t); off += 64)
                __builtin_prefetch(nx + off);
        }
        const int32_t *b0 = t->blk + (size_t)i * per;
        const int32_t *b1 = b0 + (size_t)C * SUR_LANES;
        const int32_t *b0y = b0 + (size_t)yi * SUR_LANES, *b1y = b1 + (size_t)yi * SUR_LANES;
        /* the least margin over the classes (argmax's tie rule folded
         * in), for every combination: mn[a1][lane] */
        int32_t mn[SUR_LANES][SUR_LANES];
        for (int a1 = 0; a1 < A1; a1++)
            for (int l = 0; l < SUR_LANES; l++)
                mn[a1][l] = INT32_MAX;
        for (int c = 0; c < C; c++) {
            if (c == yi)
                continue;
            const int32_t *b0c = b0 + (size_t)c * SUR_LANES, *b1c = b1 + (size_t)c * SUR_LANES;
            const int32_t bc = Ly[i] - L[(size_t)c * n + i] + (c > yi);
            int32_t d0[SUR_LANES];
            for (int l = 0; l < SUR_LANES; l++)
                d0[l] = b0y[l] - b0c[l];
            for (int a1 = 0; a1 < A1; a1++) {
                const int32_t base = bc + (m == 2 ? b1y[a1] - b1c[a1] : 0);
                for (int l = 0; l < SUR_LANES; l++) {
                    const int32_t v = base + d0[l];
                    mn[a1][l] = v < mn[a1][l] ? v : mn[a1][l];
                }
            }
        }
        for (int a1 = 0; a1 < A1; a1++) {
            int64_t *cq = t->cnt + (size_t)a1 * A;
            for (int l = 0; l < A; l++)
                cq[l] += mn[a1][l] > 0;
        }
    }
}

double sur_grid_undecided(const SurGrid *g)
{
    uint64_t u = 0, n = 0;
    for (int k = 0; k < g->ntasks; k++)
        u += g->t[k].undecided, n += g->t[k].judged;
    return n ? (double)u / (double)n : NAN;
}

uint64_t sur_grid_chunk(SurGrid *g, uint64_t prefix, int fixed, SurCand *top, int k, int *ntop)
{
    const int K = g->K, A = g->A, free_digits = K - fixed;
    /* the block: the fastest SUR_INNER free coefficients, when their grid
     * fits the lanes; else every candidate is scored alone (m = 0) */
    const int m = A > SUR_LANES ? 0 : free_digits < SUR_INNER ? free_digits : SUR_INNER;
    int Q = 1;
    for (int j = 0; j < m; j++)
        Q *= A;
    int d[64], o[64];
    /* the start: free digits 0, fixed digits from prefix; logits from scratch */
    uint64_t index = 0;
    for (int j = 0; j < K; j++) {
        d[j] = j < free_digits ? 0 : (int)((prefix / g->pow[j]) % (uint64_t)A);
        o[j] = 1;
        index += (uint64_t)d[j] * g->pow[j];
    }
    for (int t = 0; t < g->ntasks; t++) {
        GridTask *gt = &g->t[t];
        memcpy(gt->L, gt->Q0, (size_t)gt->C * gt->n * sizeof *gt->L);
        memcpy(gt->Ly, gt->Q0y, (size_t)gt->n * sizeof *gt->Ly);
    }
    for (int j = 0; j < K; j++)
        for (int a = 0; a < d[j]; a++)
            grid_move(g, (size_t)j * (A - 1) + a, +1);
    if (m > 0 && g->m != m) {
        block_range(g, m);
        g->m = m;
    }
    uint64_t visited = 0;
    for (;;) {
        /* the inner block: every combination of coefficients 0 .. m-1 */
        if (m == 0) {
            SurCand c = {grid_score(g), index};
            sur_top_add(top, k, ntop, c);
        } else {
            for (int t = 0; t < g->ntasks; t++)
                block_counts(&g->t[t], A, m, Q);
            for (int q = 0; q < Q; q++) {
                double score = 0;
                for (int t = 0; t < g->ntasks; t++) /* grid_score's sum, in its order */
                    score += (double)g->t[t].cnt[q] * g->t[t].w;
                uint64_t at = index;
                for (int j = 0, rest = q; j < m; j++, rest /= A)
                    at += (uint64_t)(rest % A) * g->pow[j];
                sur_top_add(top, k, ntop, (SurCand){score, at});
            }
        }
        visited += (uint64_t)Q;
        int j = m; /* the reflected Gray step over the outer digits */
        while (j < free_digits && (d[j] + o[j] < 0 || d[j] + o[j] >= A)) {
            o[j] = -o[j];
            j++;
        }
        if (j == free_digits)
            break;
        if (o[j] > 0) {
            grid_move(g, (size_t)j * (A - 1) + d[j], +1);
            index += g->pow[j];
        } else {
            grid_move(g, (size_t)j * (A - 1) + d[j] - 1, -1);
            index -= g->pow[j];
        }
        d[j] += o[j];
    }
    return visited;
}

/* ---- rank correlation ---- */

typedef struct {
    double v;
    int i;
} Ranked;

static int cmp_ranked(const void *pa, const void *pb)
{
    const Ranked *a = pa, *b = pb;
    return a->v < b->v ? -1 : a->v > b->v ? 1 : a->i - b->i;
}

static void ranks(const double *x, int n, double *r, Ranked *s)
{
    for (int i = 0; i < n; i++)
        s[i] = (Ranked){x[i], i};
    qsort(s, (size_t)n, sizeof *s, cmp_ranked);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && s[j + 1].v == s[i].v)
            j++;
        for (int m = i; m <= j; m++)
            r[s[m].i] = 0.5 * (i + j) + 1;
        i = j + 1;
    }
}

double sur_spearman(const double *x, const double *y, int n)
{
    if (n < 2)
        return NAN;
    double *rx = malloc((size_t)n * sizeof *rx), *ry = malloc((size_t)n * sizeof *ry);
    Ranked *s = malloc((size_t)n * sizeof *s);
    double out = NAN;
    if (rx && ry && s) {
        ranks(x, n, rx, s);
        ranks(y, n, ry, s);
        double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++) {
            mx += rx[i] / n;
            my += ry[i] / n;
        }
        for (int i = 0; i < n; i++) {
            sxy += (rx[i] - mx) * (ry[i] - my);
            sxx += (rx[i] - mx) * (rx[i] - mx);
            syy += (ry[i] - my) * (ry[i] - my);
        }
        out = sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
    }
    free(rx), free(ry), free(s);
    return out;
}
