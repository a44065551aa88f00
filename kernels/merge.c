#include "merge.h"

#include <math.h>
#include <string.h>

#include "rng.h"

void merge_accum(double *acc, const float *x, double w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += w * (double)x[i];
}

void merge_to_float(float *out, const double *acc, double scale, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(scale * acc[i]);
}

size_t merge_topk_count(size_t n, double k_percent)
{
    double k = floor(k_percent / 100.0 * (double)n + 0.5);
    if (!(k > 0))
        return 0;
    return k >= (double)n ? n : (size_t)k;
}

static void swapf(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

static float median3(float a, float b, float c)
{
    if (a > b)
        swapf(&a, &b);
    if (b > c)
        swapf(&b, &c);
    return a > b ? a : b;
}

/* Value of rank r (0-based, ascending) in v[0..n), reordering v: quickselect
 * with a three-way partition, so runs of equal values cost nothing. */
static float select_rank(float *v, size_t n, size_t r)
{
    size_t lo = 0, hi = n; /* [lo, hi) holds rank r */
    while (hi - lo > 1) {
        float pivot = median3(v[lo], v[lo + (hi - lo) / 2], v[hi - 1]);
        size_t lt = lo, i = lo, gt = hi; /* [lo,lt) < pivot, [lt,gt) == pivot, [gt,hi) > */
        while (i < gt) {
            if (v[i] < pivot)
                swapf(&v[lt++], &v[i++]);
            else if (v[i] > pivot)
                swapf(&v[i], &v[--gt]);
            else
                i++;
        }
        if (r < lt)
            hi = lt;
        else if (r >= gt)
            lo = gt;
        else
            return pivot;
    }
    return v[r];
}

float merge_kth_largest_abs(const float *x, size_t n, size_t keep, float *scratch)
{
    if (keep == 0)
        return INFINITY;
    if (keep >= n)
        return 0.0f;
    for (size_t i = 0; i < n; i++)
        scratch[i] = fabsf(x[i]);
    return select_rank(scratch, n, n - keep);
}

size_t merge_trim(float *x, size_t n, float thr)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabsf(x[i]) < thr)
            x[i] = 0.0f;
        kept += x[i] != 0.0f;
    }
    return kept;
}

double merge_dare_uniform(uint64_t seed, uint64_t task, uint64_t index)
{
    return (double)(rng_derive(seed, task, index) >> 11) * 0x1.0p-53;
}

void merge_dare(float *x, size_t n, double p, uint64_t seed, uint64_t task, uint64_t first)
{
    if (p <= 0)
        return;
    const float scale = (float)(1.0 / (1.0 - p));
    for (size_t i = 0; i < n; i++)
        x[i] = merge_dare_uniform(seed, task, first + i) < p ? 0.0f : x[i] * scale;
}

void merge_ties_agree(double *sum, double *cnt, const double *elect, const float *x, double w,
                      size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double v = w * (double)x[i];
        if (v != 0 && elect[i] != 0 && (v > 0) == (elect[i] > 0)) {
            sum[i] += v;
            cnt[i] += 1;
        }
    }
}

void merge_ties_finish(float *out, const double *sum, const double *cnt, size_t n, int mean)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(mean ? (cnt[i] > 0 ? sum[i] / cnt[i] : 0.0) : sum[i]);
}
