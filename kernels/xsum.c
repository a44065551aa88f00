#include "xsum.h"

#include <math.h>

float xsum_max_abs(const float *x, size_t n)
{
    /* m stays finite unless an entry is inf; a NaN fails both comparisons, so
     * count the entries that are not finite separately (x - x is NaN for inf
     * and NaN alone) */
    float m = 0.0f;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m;
        bad |= (x[i] - x[i]) != 0.0f;
    }
    return bad ? INFINITY : m;
}

int xsum_exponent(float max_abs, long terms)
{
    if (!(max_abs > 0.0f))
        return 0;
    int ex, tb = 0;
    frexpf(max_abs, &ex); /* max_abs < 2^ex */
    while (tb < 62 && (1L << tb) < terms)
        tb++;             /* terms <= 2^tb */
    return 62 - tb - ex;  /* max_abs * 2^e * terms < 2^(ex + e + tb) = 2^62 */
}

void xsum_add(int64_t *restrict acc, const float *restrict x, size_t n, int e)
{
    const float s = ldexpf(1.0f, e > 127 ? 127 : e);
    if (e > 127) { /* every entry is tiny: scale in two exact steps */
        const float s2 = ldexpf(1.0f, e - 127);
        for (size_t i = 0; i < n; i++)
            acc[i] += (int64_t)(x[i] * s * s2);
        return;
    }
    for (size_t i = 0; i < n; i++)
        acc[i] += (int64_t)(x[i] * s);
}

void xsum_result(float *restrict out, const int64_t *restrict acc, size_t n, int e)
{
    if (e >= -126 && e <= 126) { /* 2^-e is a normal float: one exact multiply */
        const float s = ldexpf(1.0f, -e);
        for (size_t i = 0; i < n; i++)
            out[i] = (float)acc[i] * s;
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = ldexpf((float)acc[i], -e);
}
