#include "ops_causal.h"

#include <cblas.h>
#include <math.h>

/* Softmax of row t over its first t+1 entries (accumulated in double, max
 * subtracted); the masked entries become exact zeros. */
static void softmax_causal_rows(float *p, int T)
{
    for (int t = 0; t < T; t++) {
        float *row = p + (size_t)t * T;
        float mx = row[0];
        for (int j = 1; j <= t; j++)
            mx = row[j] > mx ? row[j] : mx;
        double sum = 0.0;
        for (int j = 0; j <= t; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j <= t; j++)
            row[j] *= inv;
        for (int j = t + 1; j < T; j++)
            row[j] = 0.0f;
    }
}

void op_attention_causal_fwd(float *out, float *att, const float *qkv, int B, int T, int D,
                             int NH)
{
    // out (B,T,D), att (B,NH,T,T), qkv (B,T,3D); q/k/v of a head addressed with ld 3D
    int HD = D / NH, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)HD);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * HD;
            const float *k = q + D, *v = q + 2 * D;
            float *p = att + ((size_t)b * NH + h) * T * T;
            float *o = out + (size_t)b * T * D + (size_t)h * HD;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, scale, q, ld, k, ld,
                        0.0f, p, T);
            softmax_causal_rows(p, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f, p, T, v, ld,
                        0.0f, o, D);
        }
}
