/* ops: the layers of a CLIP ViT as forward / backward / jvp (see ops.h).
 *
 * Speed notes. Every product is one cblas_sgemm; backward passes accumulate
 * with beta = 1 straight into the gradient buffers. Elementwise loops are
 * written so that gcc -O3 -march=native vectorises them without -ffast-math:
 * restrict pointers, no calls in inner loops, and row reductions split into
 * LANES independent partial sums (a plain float reduction would stay scalar
 * under strict IEEE ordering). */
#include "ops.h"
#include "mm_bf16.h"
#include "parallel.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LANES 16

/* ------------------------------------------------------------------ helpers */

/* exp for the hot elementwise loops (softmax, sigmoid): Cephes' expf
 * polynomial with 2^n assembled in the exponent bits, on the clamped range
 * [-87.3, 88] (checked against expf in tests/test_ops.c). glibc's expf only
 * vectorises with -ffast-math. */
static inline float fast_expf(float x0)
{
    /* The clamps are written so that a NaN (every comparison false) becomes
     * -87.33654 and the rest runs on a finite value: (int32_t)NaN and the
     * shift of the negative result were undefined behaviour. For every other
     * input (infinities included) they pick what `x < lo ? lo : x` did. The
     * NaN goes back in by the blend at the end, which vectorises like the clamps. */
    float x = x0 > -87.33654f ? x0 : -87.33654f;
    x = x < 88.0f ? x : 88.0f;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick: floorf/rintf do not vectorise
     * while math may trap (gcc's default) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } two_n = {.i = ((int32_t)n + 127) << 23};
    return x0 == x0 ? p * two_n.f : x0;
}

static float sum_f(const float *restrict x, int n)
{
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += x[i + j];
    float s = 0.0f;
    for (; i < n; i++)
        s += x[i];
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    return s;
}

static float dot_f(const float *restrict x, const float *restrict y, int n)
{
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += x[i + j] * y[i + j];
    float s = 0.0f;
    for (; i < n; i++)
        s += x[i] * y[i];
    for (int j = 0; j < LANES; j++)
        s += acc[j];
    return s;
}

/* LANES running maxima, like sum_f: one serial chain of compares was most of
 * the softmax's time. The maximum of a set does not depend on the order it is
 * taken in, except for which of -0 and +0 wins a tie, and x - (+-0) is the
 * same number for every x but -0, whose exp is 1 either way. */
static float max_f(const float *restrict x, int n)
{
    float acc[LANES];
    for (int j = 0; j < LANES; j++)
        acc[j] = -INFINITY;
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    float m = -INFINITY;
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    for (int j = 0; j < LANES; j++)
        m = acc[j] > m ? acc[j] : m;
    return m;
}

/* Each of the N rows of out (N,C) = v (C). */
static void fill_rows(float *restrict out, const float *restrict v, int N, int C)
{
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, v, (size_t)C * sizeof(float));
}

/* acc (C) += sum over the N rows of x (N,C). */
static void add_row_sums(float *restrict acc, const float *restrict x, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *restrict xn = x + (size_t)n * C;
        for (int c = 0; c < C; c++)
            acc[c] += xn[c];
    }
}

/* --------------------------------------------------------------------- GEMM */

/* Large products run on the pool (OpenBLAS itself is set to one thread: see
 * par_set_threads), split along the rows of C or, when B is the larger
 * operand, along its columns. The split is a function of the product's shape
 * alone (gemm_plan), never of the thread count: the pool only decides which
 * thread runs which piece. So every element of C is computed by the same
 * cblas_sgemm call shape, at the same place in it, whatever the number of
 * threads, and results are identical for any thread count on any OpenBLAS
 * kernel (a kernel may round differently for different call shapes, e.g. in
 * its edge tiles or its small-matrix path; it cannot for the same one). Rows
 * depend on the batch, so a caller that needs results independent of how a
 * batch is split keeps M fixed too: the engine always runs micro-batches of a
 * fixed size (dist/stages/train_step.h). Optional hooks run on each piece's block of
 * C right before (pre) and after (post) its product, while it is in cache:
 * this is how bias fills, activations, residual adds and LayerNorms are fused
 * into the products (a hook that needs whole rows sets rows_only). */
typedef void (*BlockHook)(const void *ctx, size_t r0, size_t r1, size_t c0, size_t c1);

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc, pieces, by_cols, rows_only;
    float alpha, beta;
    const float *A, *B;
    float *C;
    BlockHook pre, post;
    const void *hctx;
    MmBf16 *mx;  /* not NULL: the product in bf16 (gemm_run_bf16); B is a weight, tb = 1 */
    int phase;   /* what gemm_block does: GEMM_ALL, or one hook pass of gemm_run_bf16 */
} Gemm;

/* Pieces: at least GEMM_PIECE_MIN multiply-adds and two units each, at most
 * GEMM_MAX_PIECES (enough for 8 threads; 8 divides among 1, 2, 4 and 8 threads
 * evenly). More pieces repack the unsplit operand more often. */
#define GEMM_PIECE_MIN 4.0e6
enum { GEMM_UNIT = 16, /* rows or columns of C per unit of a split */
       GEMM_MAX_PIECES = 8 };
enum { GEMM_ALL = 0, GEMM_PRE, GEMM_POST };

static void gemm_block(const Gemm *g, size_t r0, size_t r1, size_t c0, size_t c1)
{
    if (r0 >= r1 || c0 >= c1)
        return;
    if (g->phase != GEMM_ALL) { /* a hook pass of gemm_run_bf16 */
        BlockHook h = g->phase == GEMM_PRE ? g->pre : g->post;
        h(g->hctx, r0, r1, c0, c1);
        return;
    }
    if (g->pre)
        g->pre(g->hctx, r0, r1, c0, c1);
    const float *A = g->ta ? g->A + r0 : g->A + r0 * (size_t)g->lda;
    const float *B = g->tb ? g->B + c0 * (size_t)g->ldb : g->B + c0;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans,
                g->tb ? CblasTrans : CblasNoTrans, (int)(r1 - r0), (int)(c1 - c0), g->K,
                g->alpha, A, g->lda, B, g->ldb, g->beta, g->C + r0 * (size_t)g->ldc + c0, g->ldc);
    if (g->post)
        g->post(g->hctx, r0, r1, c0, c1);
}

static void gemm_pieces(void *ctx, size_t i0, size_t i1, int tid)
{
    const Gemm *g = ctx;
    const size_t len = (size_t)(g->by_cols ? g->N : g->M);
    const size_t units = (len + GEMM_UNIT - 1) / GEMM_UNIT, p = (size_t)g->pieces;
    for (size_t i = i0; i < i1; i++) {
        size_t a = i * units / p * GEMM_UNIT, b = (i + 1) * units / p * GEMM_UNIT;
        b = b < len ? b : len;
        if (g->by_cols)
            gemm_block(g, 0, (size_t)g->M, a, b);
        else
            gemm_block(g, a, b, 0, (size_t)g->N);
    }
}

int gemm_plan(int M, int N, int K, int rows_only, int *by_cols)
{
    *by_cols = !rows_only && N > M;
    const double work = (double)M * N * K;
    const size_t len = (size_t)(*by_cols ? N : M);
    const size_t units = (len + GEMM_UNIT - 1) / GEMM_UNIT;
    size_t p = GEMM_MAX_PIECES;
    if ((double)p * GEMM_PIECE_MIN > work)
        p = (size_t)(work / GEMM_PIECE_MIN);
    if (p > units / 2) /* at least two units a piece */
        p = units / 2;
    return K > 0 && p > 1 ? (int)p : 1;
}

/* Runs g's pieces on the pool (one on the caller when there is one piece). */
static void gemm_run_pieces(Gemm *g)
{
    if (g->pieces <= 1) {
        gemm_block(g, 0, (size_t)g->M, 0, (size_t)g->N);
        return;
    }
    par_for((size_t)g->pieces, 1, gemm_pieces, g);
}

/* The product in bf16 (mm_bf16.h): one oneDNN call over the whole of C,
 * between a pass of the pre hook and a pass of the post hook, each over the
 * pieces of the fp32 plan (so a rows_only hook still gets whole rows). */
static void gemm_run_bf16(Gemm *g)
{
    g->pieces = gemm_plan(g->M, g->N, g->K, g->rows_only, &g->by_cols);
    if (g->pre) {
        g->phase = GEMM_PRE;
        gemm_run_pieces(g);
    }
    mm_bf16_gemm_nt(g->mx, g->M, g->N, g->K, g->A, g->lda, mm_bf16_weight(g->mx, g->B), g->ldb,
                    g->beta, g->C, g->ldc);
    if (g->post) {
        g->phase = GEMM_POST;
        gemm_run_pieces(g);
    }
    g->phase = GEMM_ALL;
}

static void gemm_run(Gemm *g)
{
    if (g->M <= 0 || g->N <= 0)
        return;
    if (g->mx) {
        gemm_run_bf16(g);
        return;
    }
    g->pieces = gemm_plan(g->M, g->N, g->K, g->rows_only, &g->by_cols);
    gemm_run_pieces(g);
}

/* cblas_sgemm (row-major) on the pool, without hooks. */
static void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc)
{
    Gemm g = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc,
              .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C};
    gemm_run(&g);
}

/* out[r, c0..c1) = v[c0..c1) for the rows r0..r1 of out (.., ld). */
static void fill_block(float *out, const float *v, size_t ld, size_t r0, size_t r1, size_t c0,
                       size_t c1)
{
    for (size_t r = r0; r < r1; r++)
        memcpy(out + r * ld + c0, v + c0, (c1 - c0) * sizeof(float));
}

/* ------------------------------------------------------------------- linear */

typedef struct {
    float *out;
    const float *b;
    int OC;
} BiasFill;

static void bias_fill_block(const void *ctx, size_t r0, size_t r1, size_t c0, size_t c1)
{
    const BiasFill *f = ctx;
    fill_block(f->out, f->b, (size_t)f->OC, r0, r1, c0, c1);
}

void op_linear_fwd(float *out, const float *in, const float *w, const float *b, int N, int C,
                   int OC)
{
    op_linear_fwd_mx(out, in, w, b, N, C, OC, NULL);
}

void op_linear_fwd_mx(float *out, const float *in, const float *w, const float *b, int N, int C,
                      int OC, MmBf16 *mx)
{
    // out (N,OC), in (N,C), w (OC,C), b (OC) or NULL; the bias is filled in piece by piece
    BiasFill f = {out, b, OC};
    Gemm g = {.ta = 0, .tb = 1, .M = N, .N = OC, .K = C, .lda = C, .ldb = C, .ldc = OC,
              .alpha = 1.0f, .beta = b ? 1.0f : 0.0f, .A = in, .B = w, .C = out,
              .pre = b ? bias_fill_block : NULL, .hctx = &f, .mx = mx};
    gemm_run(&g);
}

void op_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in,
                   const float *w, int N, int C, int OC)
{
    // din (N,C) += dout (N,OC) @ w (OC,C)
    if (din)
        gemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, din, C);
    // dw (OC,C) += dout^T (OC,N) @ in (N,C)
    if (dw)
        gemm(1, 0, OC, C, N, 1.0f, dout, OC, in, C, 1.0f, dw, C);
    if (db)
        add_row_sums(db, dout, N, OC);
}

void op_linear_din(float *din, const float *dout, const float *w, int N, int C, int OC)
{
    // din (N,C) = dout (N,OC) @ w (OC,C), overwritten
    gemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, 0.0f, din, C);
}

void op_linear_jvp(float *tout, const float *in, const float *tin, const float *w,
                   const float *tw, const float *tb, int N, int C, int OC)
{
    // tout (N,OC) = tin @ w^T + in @ tw^T + tb
    float beta = 0.0f;
    if (tb) {
        fill_rows(tout, tb, N, OC);
        beta = 1.0f;
    }
    if (tin) {
        gemm(0, 1, N, OC, C, 1.0f, tin, C, w, C, beta, tout, OC);
        beta = 1.0f;
    }
    if (tw) {
        gemm(0, 1, N, OC, C, 1.0f, in, C, tw, C, beta, tout, OC);
        beta = 1.0f;
    }
    if (beta == 0.0f)
        memset(tout, 0, (size_t)N * OC * sizeof(float));
}

/* ------------------------------------------------------------------- matmul */

void op_matmul_fwd(float *out, const float *in, const float *w, int N, int C, int OC)
{
    // out (N,OC) = in (N,C) @ w (C,OC)
    gemm(0, 0, N, OC, C, 1.0f, in, C, w, OC, 0.0f, out, OC);
}

void op_matmul_bwd(float *din, float *dw, const float *dout, const float *in, const float *w,
                   int N, int C, int OC)
{
    // din (N,C) += dout (N,OC) @ w^T (OC,C)
    if (din)
        gemm(0, 1, N, C, OC, 1.0f, dout, OC, w, OC, 1.0f, din, C);
    // dw (C,OC) += in^T (C,N) @ dout (N,OC)
    if (dw)
        gemm(1, 0, C, OC, N, 1.0f, in, C, dout, OC, 1.0f, dw, OC);
}

void op_matmul_jvp(float *tout, const float *in, const float *tin, const float *w,
                   const float *tw, int N, int C, int OC)
{
    float beta = 0.0f;
    if (tin) {
        gemm(0, 0, N, OC, C, 1.0f, tin, C, w, OC, beta, tout, OC);
        beta = 1.0f;
    }
    if (tw) {
        gemm(0, 0, N, OC, C, 1.0f, in, C, tw, OC, beta, tout, OC);
        beta = 1.0f;
    }
    if (beta == 0.0f)
        memset(tout, 0, (size_t)N * OC * sizeof(float));
}

/* ------------------------------------------------------------ patch embedding */

void op_im2col(float *cols, const float *img, int B, int CH, int S, int P)
{
    // cols (B*G*G, CH*P*P), img (B,CH,S,S); a trailing S % P strip is dropped, as by conv1
    int G = S / P;
    size_t K = (size_t)CH * P * P;
    for (int b = 0; b < B; b++)
        for (int gy = 0; gy < G; gy++)
            for (int gx = 0; gx < G; gx++) {
                float *row = cols + ((size_t)(b * G + gy) * G + gx) * K;
                for (int ch = 0; ch < CH; ch++)
                    for (int ky = 0; ky < P; ky++) {
                        const float *src =
                            img + (((size_t)b * CH + ch) * S + (size_t)gy * P + ky) * S +
                            (size_t)gx * P;
                        memcpy(row + ((size_t)ch * P + ky) * P, src, (size_t)P * sizeof(float));
                    }
            }
}

/* ----------------------------------------------------------- token assembly */

void op_embed_fwd(float *x, const float *patches, const float *cls, const float *pos, int B,
                  int T, int D)
{
    // x (B,T,D), patches (B,T-1,D), cls (D), pos (T,D)
    for (int b = 0; b < B; b++) {
        float *restrict xb = x + (size_t)b * T * D;
        const float *restrict pb = patches + (size_t)b * (T - 1) * D;
        for (int d = 0; d < D; d++)
            xb[d] = cls[d] + pos[d];
        for (size_t i = 0; i < (size_t)(T - 1) * D; i++)
            xb[D + i] = pb[i] + pos[D + i];
    }
}

void op_embed_bwd(float *dpatches, float *dcls, float *dpos, const float *dx, int B, int T, int D)
{
    for (int b = 0; b < B; b++) {
        const float *restrict dxb = dx + (size_t)b * T * D;
        if (dcls)
            for (int d = 0; d < D; d++)
                dcls[d] += dxb[d];
        if (dpatches) {
            float *restrict dpb = dpatches + (size_t)b * (T - 1) * D;
            for (size_t i = 0; i < (size_t)(T - 1) * D; i++)
                dpb[i] += dxb[D + i];
        }
        if (dpos)
            for (size_t i = 0; i < (size_t)T * D; i++)
                dpos[i] += dxb[i];
    }
}

void op_embed_jvp(float *tx, const float *tpatches, const float *tcls, const float *tpos, int B,
                  int T, int D)
{
    for (int b = 0; b < B; b++) {
        float *restrict txb = tx + (size_t)b * T * D;
        if (tpos)
            memcpy(txb, tpos, (size_t)T * D * sizeof(float));
        else
            memset(txb, 0, (size_t)T * D * sizeof(float));
        if (tcls)
            for (int d = 0; d < D; d++)
                txb[d] += tcls[d];
        if (tpatches) {
            const float *restrict tpb = tpatches + (size_t)b * (T - 1) * D;
            for (size_t i = 0; i < (size_t)(T - 1) * D; i++)
                txb[D + i] += tpb[i];
        }
    }
}

/* ---------------------------------------------------------------- LayerNorm */

typedef struct {
    float *out, *mean, *rstd, *din, *dw, *db;
    const float *in, *w, *b, *dout, *tin, *tw, *tb, *cmean, *crstd;
    int C;
    float eps;
    size_t b_rows; /* rows, for the column-split passes */
} LnArgs;

static void ln_fwd_rows(void *ctx, size_t n0, size_t n1, int tid)
{
    const LnArgs *a = ctx;
    const int C = a->C;
    for (size_t n = n0; n < n1; n++) {
        const float *restrict x = a->in + n * C;
        float *restrict y = a->out + n * C;
        float m = sum_f(x, C) / (float)C;
        float acc[LANES] = {0};
        int i = 0;
        for (; i + LANES <= C; i += LANES)
            for (int j = 0; j < LANES; j++) {
                float d = x[i + j] - m;
                acc[j] += d * d;
            }
        float v = 0.0f;
        for (; i < C; i++)
            v += (x[i] - m) * (x[i] - m);
        for (int j = 0; j < LANES; j++)
            v += acc[j];
        float s = 1.0f / sqrtf(v / (float)C + a->eps);
        for (int c = 0; c < C; c++)
            y[c] = (x[c] - m) * s * a->w[c] + a->b[c];
        if (a->mean)
            a->mean[n] = m;
        if (a->rstd)
            a->rstd[n] = s;
    }
}

void op_layernorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w,
                      const float *b, int N, int C, float eps)
{
    // out (N,C), mean (N), rstd (N), in (N,C), w (C), b (C); biased variance as in PyTorch
    LnArgs a = {.out = out, .mean = mean, .rstd = rstd, .in = in, .w = w, .b = b, .C = C, .eps = eps};
    par_for((size_t)N, 16, ln_fwd_rows, &a);
}

/* sum(g) and sum(g * xhat) over one row, g = dout * w (or a tangent), xhat = (x - m) * s. */
static void ln_row_moments(const float *restrict g, const float *restrict w,
                           const float *restrict x, float m, float s, int C, float *sum_g,
                           float *sum_gx)
{
    float a1[LANES] = {0}, a2[LANES] = {0};
    int i = 0;
    for (; i + LANES <= C; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float gw = w ? g[i + j] * w[i + j] : g[i + j];
            a1[j] += gw;
            a2[j] += gw * (x[i + j] - m) * s;
        }
    float s1 = 0.0f, s2 = 0.0f;
    for (; i < C; i++) {
        float gw = w ? g[i] * w[i] : g[i];
        s1 += gw;
        s2 += gw * (x[i] - m) * s;
    }
    for (int j = 0; j < LANES; j++) {
        s1 += a1[j];
        s2 += a2[j];
    }
    *sum_g = s1;
    *sum_gx = s2;
}

static void ln_bwd_rows(void *ctx, size_t n0, size_t n1, int tid)
{
    const LnArgs *a = ctx;
    const int C = a->C;
    for (size_t n = n0; n < n1; n++) {
        const float *restrict x = a->in + n * C;
        const float *restrict g = a->dout + n * C;
        float m = a->cmean[n], s = a->crstd[n], sg, sgx;
        ln_row_moments(g, a->w, x, m, s, C, &sg, &sgx);
        float mg = sg / (float)C, mgx = sgx / (float)C;
        float *restrict dx = a->din + n * C;
        for (int c = 0; c < C; c++)
            dx[c] += (g[c] * a->w[c] - mg - (x[c] - m) * s * mgx) * s;
    }
}

/* dw and db sum over rows: split by column so each sum keeps its row order. */
static void ln_bwd_cols(void *ctx, size_t c0, size_t c1, int tid)
{
    const LnArgs *a = ctx;
    const int C = a->C;
    for (size_t n = 0; n < a->b_rows; n++) {
        const float *restrict x = a->in + n * C;
        const float *restrict g = a->dout + n * C;
        float m = a->cmean[n], s = a->crstd[n];
        if (a->dw)
            for (size_t c = c0; c < c1; c++)
                a->dw[c] += g[c] * (x[c] - m) * s;
        if (a->db)
            for (size_t c = c0; c < c1; c++)
                a->db[c] += g[c];
    }
}

void op_layernorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in,
                      const float *w, const float *mean, const float *rstd, int N, int C)
{
    LnArgs a = {.din = din, .dw = dw, .db = db, .dout = dout, .in = in, .w = w, .cmean = mean,
                .crstd = rstd, .C = C, .b_rows = (size_t)N};
    if (din)
        par_for((size_t)N, 16, ln_bwd_rows, &a);
    if (dw || db)
        par_for((size_t)C, 64, ln_bwd_cols, &a);
}

static void ln_jvp_rows(void *ctx, size_t n0, size_t n1, int tid)
{
    // tout = txhat * w + xhat * tw + tb, txhat = s * (tx - mean(tx) - xhat * mean(xhat * tx))
    const LnArgs *a = ctx;
    const int C = a->C;
    for (size_t n = n0; n < n1; n++) {
        const float *restrict x = a->in + n * C;
        float *restrict y = a->out + n * C;
        float m = a->cmean[n], s = a->crstd[n];
        if (a->tin) {
            const float *restrict tx = a->tin + n * C;
            float st, stx;
            ln_row_moments(tx, NULL, x, m, s, C, &st, &stx);
            float mt = st / (float)C, mtx = stx / (float)C;
            for (int c = 0; c < C; c++)
                y[c] = (tx[c] - mt - (x[c] - m) * s * mtx) * s * a->w[c];
        } else {
            memset(y, 0, (size_t)C * sizeof(float));
        }
        if (a->tw)
            for (int c = 0; c < C; c++)
                y[c] += (x[c] - m) * s * a->tw[c];
        if (a->tb)
            for (int c = 0; c < C; c++)
                y[c] += a->tb[c];
    }
}

void op_layernorm_jvp(float *tout, const float *in, const float *tin, const float *w,
                      const float *tw, const float *tb, const float *mean, const float *rstd,
                      int N, int C)
{
    LnArgs a = {.out = tout, .in = in, .tin = tin, .w = w, .tw = tw, .tb = tb, .cmean = mean,
                .crstd = rstd, .C = C};
    par_for((size_t)N, 16, ln_jvp_rows, &a);
}

/* ---------------------------------------------------------------- attention */

size_t op_attention_scratch(int T, int D)
{
    (void)D;
    /* one (T,T) matrix per thread: dP in backward, tS in jvp */
    return (size_t)T * T * TD_PAR_MAX_THREADS;
}

/* In place over n values: x = exp(x). */
static void exp_inplace(float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = fast_expf(x[i]);
}

/* In place: each of the rows of a (rows, n) becomes its softmax. The exp runs
 * as one pass over all rows * n values (rows of n = 50 would leave most of
 * each vector loop to its scalar remainder); the values are those of a
 * row-by-row exp(x - max). */
static void softmax_rows(float *a, int rows, int n)
{
    for (int i = 0; i < rows; i++) {
        float *restrict r = a + (size_t)i * n;
        float m = max_f(r, n);
        for (int j = 0; j < n; j++)
            r[j] -= m;
    }
    exp_inplace(a, (size_t)rows * n);
    for (int i = 0; i < rows; i++) {
        float *restrict r = a + (size_t)i * n;
        float inv = 1.0f / sum_f(r, n);
        for (int j = 0; j < n; j++)
            r[j] *= inv;
    }
}

/* In place over one row of n: g = p * (g - sum(p * g)), the softmax's
 * backward and jvp alike. */
static void softmax_vjp_row(float *restrict g, const float *restrict p, int n)
{
    float d = dot_f(g, p, n);
    for (int j = 0; j < n; j++)
        g[j] = p[j] * (g[j] - d);
}

/* The same for each of the T rows of g and p (T,T). */
static void softmax_vjp_rows(float *g, const float *p, int T)
{
    for (int i = 0; i < T; i++)
        softmax_vjp_row(g + (size_t)i * T, p + (size_t)i * T, T);
}

/* Attention runs one (batch, head) pair at a time; pairs are independent, so
 * they are spread over the pool, each pair's products on one thread. */
typedef struct {
    float *out, *att, *dqkv, *scratch;
    const float *qkv, *tqkv, *dout, *catt;
    int T, D, NH;
    float beta; /* backward: 1 adds into dqkv, 0 overwrites it */
} AttnArgs;

static size_t attn_min_chunk(int T, int D, int NH)
{
    (void)T, (void)D, (void)NH;
    return 1; /* OpenBLAS runs on one thread (par_set_threads): pairs always go to the pool */
}

static void attn_fwd_pairs(void *ctx, size_t i0, size_t i1, int tid)
{
    const AttnArgs *a = ctx;
    const int T = a->T, D = a->D, NH = a->NH, HD = D / NH, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)HD);
    for (size_t i = i0; i < i1; i++) {
        size_t b = i / NH, h = i % NH;
        const float *q = a->qkv + b * T * ld + h * HD;
        const float *k = q + D, *v = q + 2 * D;
        float *p = a->att + i * T * T;
        float *o = a->out + b * T * D + h * HD;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, scale, q, ld, k, ld, 0.0f,
                    p, T);
        softmax_rows(p, T, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f, p, T, v, ld, 0.0f,
                    o, D);
    }
}

void op_attention_fwd(float *out, float *att, const float *qkv, int B, int T, int D, int NH)
{
    // out (B,T,D), att (B,NH,T,T), qkv (B,T,3D); q/k/v of a head addressed with ld 3D
    AttnArgs a = {.out = out, .att = att, .qkv = qkv, .T = T, .D = D, .NH = NH};
    par_for((size_t)B * NH, attn_min_chunk(T, D, NH), attn_fwd_pairs, &a);
}

static void attn_bwd_pairs(void *ctx, size_t i0, size_t i1, int tid)
{
    const AttnArgs *a = ctx;
    const int T = a->T, D = a->D, NH = a->NH, HD = D / NH, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)HD);
    float *dp = a->scratch + (size_t)tid * T * T; /* dP, then dS */
    for (size_t i = i0; i < i1; i++) {
        size_t b = i / NH, h = i % NH, off = b * T * ld + h * HD;
        const float *q = a->qkv + off, *k = q + D, *v = q + 2 * D;
        float *dq = a->dqkv + off, *dk = dq + D, *dv = dq + 2 * D;
        const float *p = a->catt + i * T * T;
        const float *dout_h = a->dout + b * T * D + h * HD;
        // dP = dO V^T, dV += P^T dO
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, 1.0f, dout_h, D, v, ld,
                    0.0f, dp, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HD, T, 1.0f, p, T, dout_h, D,
                    a->beta, dv, ld);
        softmax_vjp_rows(dp, p, T);
        // dQ += scale dS K, dK += scale dS^T Q
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, scale, dp, T, k, ld,
                    a->beta, dq, ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HD, T, scale, dp, T, q, ld,
                    a->beta, dk, ld);
    }
}

void op_attention_bwd(float *dqkv, const float *dout, const float *qkv, const float *att,
                      float *scratch, int B, int T, int D, int NH)
{
    // dqkv (B,T,3D) +=; dout (B,T,D); scratch: op_attention_scratch floats
    if (!dqkv)
        return;
    AttnArgs a = {.dqkv = dqkv, .scratch = scratch, .qkv = qkv, .dout = dout, .catt = att,
                  .T = T, .D = D, .NH = NH, .beta = 1.0f};
    par_for((size_t)B * NH, attn_min_chunk(T, D, NH), attn_bwd_pairs, &a);
}

void op_attention_bwd_set(float *dqkv, const float *dout, const float *qkv, const float *att,
                          float *scratch, int B, int T, int D, int NH)
{
    // dqkv (B,T,3D) =: every element is written once, by its (batch, head) pair
    AttnArgs a = {.dqkv = dqkv, .scratch = scratch, .qkv = qkv, .dout = dout, .catt = att,
                  .T = T, .D = D, .NH = NH, .beta = 0.0f};
    par_for((size_t)B * NH, attn_min_chunk(T, D, NH), attn_bwd_pairs, &a);
}

static void attn_jvp_pairs(void *ctx, size_t i0, size_t i1, int tid)
{
    const AttnArgs *a = ctx;
    const int T = a->T, D = a->D, NH = a->NH, HD = D / NH, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)HD);
    float *ts = a->scratch + (size_t)tid * T * T; /* tS, then tP */
    for (size_t i = i0; i < i1; i++) {
        size_t b = i / NH, h = i % NH, off = b * T * ld + h * HD;
        const float *q = a->qkv + off, *k = q + D, *v = q + 2 * D;
        const float *tq = a->tqkv + off, *tk = tq + D, *tv = tq + 2 * D;
        const float *p = a->catt + i * T * T;
        float *o = a->out + b * T * D + h * HD;
        // tS = scale (tQ K^T + Q tK^T); tP = P * (tS - rowsum(P * tS))
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, scale, tq, ld, k, ld, 0.0f,
                    ts, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, scale, q, ld, tk, ld, 1.0f,
                    ts, T);
        softmax_vjp_rows(ts, p, T);
        // tout = tP V + P tV
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f, ts, T, v, ld, 0.0f,
                    o, D);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f, p, T, tv, ld, 1.0f,
                    o, D);
    }
}

void op_attention_jvp(float *tout, const float *qkv, const float *tqkv, const float *att,
                      float *scratch, int B, int T, int D, int NH)
{
    // tout (B,T,D) =; scratch: op_attention_scratch floats
    if (!tqkv) {
        memset(tout, 0, (size_t)B * T * D * sizeof(float));
        return;
    }
    AttnArgs a = {.out = tout, .scratch = scratch, .qkv = qkv, .tqkv = tqkv, .catt = att,
                  .T = T, .D = D, .NH = NH};
    par_for((size_t)B * NH, attn_min_chunk(T, D, NH), attn_jvp_pairs, &a);
}

/* One (batch, head) pair per item, the class token's query only: a row of
 * scores, its softmax and a weighted sum of values, each O(T HD). */

/* o (HD) = (beta ? o : 0) + sum_j w[j] v_j, v_j at v + j ld */
static void weighted_rows(float *restrict o, const float *restrict w, const float *restrict v,
                          int T, int HD, size_t ld, int beta)
{
    if (!beta)
        memset(o, 0, (size_t)HD * sizeof(float));
    for (int j = 0; j < T; j++) {
        const float wj = w[j], *restrict vj = v + (size_t)j * ld;
        for (int d = 0; d < HD; d++)
            o[d] += wj * vj[d];
    }
}

static void attn_cls_fwd_pairs(void *ctx, size_t i0, size_t i1, int tid)
{
    const AttnArgs *a = ctx;
    const int T = a->T, D = a->D, NH = a->NH, HD = D / NH;
    const size_t ld = 3 * (size_t)D;
    const float scale = 1.0f / sqrtf((float)HD);
    (void)tid;
    for (size_t i = i0; i < i1; i++) {
        size_t b = i / NH, h = i % NH;
        const float *q = a->qkv + b * T * ld + h * HD, *k = q + D, *v = q + 2 * D;
        float *p = a->att + i * T;
        for (int j = 0; j < T; j++)
            p[j] = scale * dot_f(q, k + (size_t)j * ld, HD);
        softmax_rows(p, 1, T);
        weighted_rows(a->out + b * D + h * HD, p, v, T, HD, ld, 0);
    }
}

void op_attention_cls_fwd(float *out, float *att, const float *qkv, int B, int T, int D, int NH)
{
    // out (B,D), att (B,NH,T), qkv (B,T,3D)
    AttnArgs a = {.out = out, .att = att, .qkv = qkv, .T = T, .D = D, .NH = NH};
    par_for((size_t)B * NH, 8, attn_cls_fwd_pairs, &a);
}

static void attn_cls_bwd_pairs(void *ctx, size_t i0, size_t i1, int tid)
{
    const AttnArgs *a = ctx;
    const int T = a->T, D = a->D, NH = a->NH, HD = D / NH;
    const size_t ld = 3 * (size_t)D;
    const float scale = 1.0f / sqrtf((float)HD);
    float *ds = a->scratch + (size_t)tid * T; /* dP, then dS */
    for (size_t i = i0; i < i1; i++) {
        size_t b = i / NH, h = i % NH, off = b * T * ld + h * HD;
        const float *q = a->qkv + off, *k = q + D, *v = q + 2 * D;
        float *dq = a->dqkv + off, *dk = dq + D, *dv = dq + 2 * D;
        const float *p = a->catt + i * T, *dout_h = a->dout + b * D + h * HD;
        for (int j = 0; j < T; j++) { // dP = dO V^T; dV_j = P_j dO
            ds[j] = dot_f(dout_h, v + (size_t)j * ld, HD);
            for (int d = 0; d < HD; d++)
                dv[(size_t)j * ld + d] = p[j] * dout_h[d];
        }
        softmax_vjp_row(ds, p, T);
        weighted_rows(dq, ds, k, T, HD, ld, 0); // dQ = scale dS K; the other queries get 0
        for (int d = 0; d < HD; d++)
            dq[d] *= scale;
        for (int j = 1; j < T; j++)
            memset(dq + (size_t)j * ld, 0, (size_t)HD * sizeof(float));
        for (int j = 0; j < T; j++) // dK_j = scale dS_j Q
            for (int d = 0; d < HD; d++)
                dk[(size_t)j * ld + d] = scale * ds[j] * q[d];
    }
}

void op_attention_cls_bwd_set(float *dqkv, const float *dout, const float *qkv, const float *att,
                              float *scratch, int B, int T, int D, int NH)
{
    // dqkv (B,T,3D) =: every element is written once, by its (batch, head) pair
    AttnArgs a = {.dqkv = dqkv, .scratch = scratch, .qkv = qkv, .dout = dout, .catt = att,
                  .T = T, .D = D, .NH = NH};
    par_for((size_t)B * NH, 8, attn_cls_bwd_pairs, &a);
}

static void attn_cls_jvp_pairs(void *ctx, size_t i0, size_t i1, int tid)
{
    const AttnArgs *a = ctx;
    const int T = a->T, D = a->D, NH = a->NH, HD = D / NH;
    const size_t ld = 3 * (size_t)D;
    const float scale = 1.0f / sqrtf((float)HD);
    float *ts = a->scratch + (size_t)tid * T; /* tS, then tP */
    for (size_t i = i0; i < i1; i++) {
        size_t b = i / NH, h = i % NH, off = b * T * ld + h * HD;
        const float *q = a->qkv + off, *k = q + D, *v = q + 2 * D;
        const float *tq = a->tqkv + off, *tk = tq + D, *tv = tq + 2 * D;
        const float *p = a->catt + i * T;
        float *o = a->out + b * D + h * HD;
        // tS = scale (tQ K^T + Q tK^T); tP = P * (tS - sum(P * tS)); tout = tP V + P tV
        for (int j = 0; j < T; j++)
            ts[j] = scale * (dot_f(tq, k + (size_t)j * ld, HD) + dot_f(q, tk + (size_t)j * ld, HD));
        softmax_vjp_row(ts, p, T);
        weighted_rows(o, ts, v, T, HD, ld, 0);
        weighted_rows(o, p, tv, T, HD, ld, 1);
    }
}

void op_attention_cls_jvp(float *tout, const float *qkv, const float *tqkv, const float *att,
                          float *scratch, int B, int T, int D, int NH)
{
    // tout (B,D) =
    if (!tqkv) {
        memset(tout, 0, (size_t)B * D * sizeof(float));
        return;
    }
    AttnArgs a = {.out = tout, .scratch = scratch, .qkv = qkv, .tqkv = tqkv, .catt = att,
                  .T = T, .D = D, .NH = NH};
    par_for((size_t)B * NH, 8, attn_cls_jvp_pairs, &a);
}

/* -------------------------------------------------------------- activations */

#define QGELU_K 1.702f
#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT2PI 0.39894228040143268f

/* QuickGELU's value x s with s = 1 / (1 + e), e = exp(-k x) (one division
 * for value and derivative), and its derivative s (1 + k x (1 - s)). Exact GELU's value
 * x cdf(x) and derivative cdf(x) + x pdf(x). Each loop below has one of these
 * bodies and no branch, so the QuickGELU loops vectorise. */
#define QGELU_E1(x) (1.0f + fast_expf(-QGELU_K * (x)))
#define QGELU_D(x, s) ((s) * (1.0f + QGELU_K * (x) * (1.0f - (s))))
#define GELU_CDF(x) (0.5f * (1.0f + erff((x) * INV_SQRT2)))
#define GELU_D(x, cdf) ((cdf) + (x) * (INV_SQRT2PI * expf(-0.5f * (x) * (x))))

/* The activation's forward in place over n values of p: y = act(p) and
 * p = act'(p) when y is not NULL, else p = act(p). The backward and the jvp
 * need only act', so the model saves it in place of the activation's input
 * and neither pass evaluates an exp. */
static void act_fwd_inplace(float *restrict y, float *restrict p, size_t n, TdAct act)
{
    if (act == TD_ACT_QUICK_GELU && !y) {
        for (size_t i = 0; i < n; i++)
            p[i] = p[i] * (1.0f / QGELU_E1(p[i]));
    } else if (act == TD_ACT_QUICK_GELU) {
        for (size_t i = 0; i < n; i++) {
            float x = p[i], e1 = QGELU_E1(x), s = 1.0f / e1;
            p[i] = QGELU_D(x, s);
            y[i] = x * s;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float x = p[i], cdf = GELU_CDF(x);
            if (y) {
                p[i] = GELU_D(x, cdf);
                y[i] = x * cdf;
            } else {
                p[i] = x * cdf;
            }
        }
    }
}

typedef struct {
    float *out, *deriv;
    const float *in, *aux; /* in: x (fwd) or act'(x) (bwd, jvp); aux: dout or tin */
    TdAct act;
} ActArgs;

/* Over the range: out = act(in), and deriv = act'(in) when deriv is not NULL. */
static void act_fwd_range(void *ctx, size_t i0, size_t i1, int tid)
{
    const ActArgs *a = ctx;
    float *p = a->deriv ? a->deriv : a->out; /* the in-place loop's buffer */
    (void)tid;
    if (p != a->in)
        memcpy(p + i0, a->in + i0, (i1 - i0) * sizeof(float));
    act_fwd_inplace(a->deriv ? a->out + i0 : NULL, p + i0, i1 - i0, a->act);
}

static void act_bwd_range(void *ctx, size_t i0, size_t i1, int tid)
{
    const ActArgs *a = ctx;
    float *restrict y = a->out;
    const float *restrict d = a->in, *restrict g = a->aux;
    (void)tid;
    for (size_t i = i0; i < i1; i++)
        y[i] += g[i] * d[i];
}

static void act_jvp_range(void *ctx, size_t i0, size_t i1, int tid)
{
    const ActArgs *a = ctx;
    float *restrict y = a->out;
    const float *restrict d = a->in, *restrict t = a->aux;
    (void)tid;
    for (size_t i = i0; i < i1; i++)
        y[i] = t[i] * d[i];
}

enum { ACT_CHUNK = 4096 }; /* elements: below this a thread hand-off costs more than it saves */

void op_act_fwd(float *out, float *deriv, const float *in, size_t n, TdAct act)
{
    ActArgs a = {.out = out, .deriv = deriv, .in = in, .act = act};
    par_for(n, ACT_CHUNK, act_fwd_range, &a);
}

void op_act_bwd(float *din, const float *dout, const float *deriv, size_t n)
{
    if (!din)
        return;
    ActArgs a = {.out = din, .in = deriv, .aux = dout};
    par_for(n, ACT_CHUNK, act_bwd_range, &a);
}

void op_act_jvp(float *tout, const float *deriv, const float *tin, size_t n)
{
    if (!tin) {
        memset(tout, 0, n * sizeof(float));
        return;
    }
    ActArgs a = {.out = tout, .in = deriv, .aux = tin};
    par_for(n, ACT_CHUNK, act_jvp_range, &a);
}

/* ----------------------------------------------------------------- residual */

void op_add_inplace(float *x, const float *y, size_t n)
{
    float *restrict a = x;
    const float *restrict c = y;
    for (size_t i = 0; i < n; i++)
        a[i] += c[i];
}

/* ------------------------------------------------------------ class token */

void op_cls_gather(float *out, const float *x, int B, int T, int D)
{
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * D, x + (size_t)b * T * D, (size_t)D * sizeof(float));
}

void op_cls_scatter_add(float *dx, const float *dout, int B, int T, int D)
{
    if (!dx)
        return;
    for (int b = 0; b < B; b++) {
        float *restrict d = dx + (size_t)b * T * D;
        const float *restrict g = dout + (size_t)b * D;
        for (int i = 0; i < D; i++)
            d[i] += g[i];
    }
}

/* ----------------------------------------------------------------- L2 norm */

/* A zero row maps to zero instead of NaN (as F.normalize's clamp at 1e-12). */
#define L2_MIN_NORM 1e-12f

void op_l2norm_fwd(float *out, float *norm, const float *x, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const float *restrict xr = x + (size_t)n * C;
        float *restrict y = out + (size_t)n * C;
        float nr = sqrtf(dot_f(xr, xr, C));
        float inv = 1.0f / (nr > L2_MIN_NORM ? nr : L2_MIN_NORM);
        for (int c = 0; c < C; c++)
            y[c] = xr[c] * inv;
        if (norm)
            norm[n] = nr;
    }
}

void op_l2norm_bwd(float *dx, const float *dout, const float *out, const float *norm, int N, int C)
{
    // dx += (dout - out <out, dout>) / norm
    if (!dx)
        return;
    for (int n = 0; n < N; n++) {
        const float *restrict g = dout + (size_t)n * C;
        const float *restrict y = out + (size_t)n * C;
        float *restrict d = dx + (size_t)n * C;
        float inv = 1.0f / (norm[n] > L2_MIN_NORM ? norm[n] : L2_MIN_NORM);
        float p = dot_f(y, g, C);
        for (int c = 0; c < C; c++)
            d[c] += (g[c] - y[c] * p) * inv;
    }
}

void op_l2norm_jvp(float *tout, const float *tx, const float *out, const float *norm, int N, int C)
{
    // the Jacobian is symmetric: same form as the backward
    if (!tx) {
        memset(tout, 0, (size_t)N * C * sizeof(float));
        return;
    }
    for (int n = 0; n < N; n++) {
        const float *restrict t = tx + (size_t)n * C;
        const float *restrict y = out + (size_t)n * C;
        float *restrict d = tout + (size_t)n * C;
        float inv = 1.0f / (norm[n] > L2_MIN_NORM ? norm[n] : L2_MIN_NORM);
        float p = dot_f(y, t, C);
        for (int c = 0; c < C; c++)
            d[c] = (t[c] - y[c] * p) * inv;
    }
}

/* ------------------------------------------------------------------ logits */

void op_logits_fwd(float *logits, const float *xn, const float *head, float scale, int N, int E,
                   int K)
{
    // logits (N,K) = scale * xn (N,E) @ head^T (K,E)
    gemm(0, 1, N, K, E, scale, xn, E, head, E, 0.0f, logits, K);
}

void op_logits_bwd(float *dxn, float *dhead, const float *dlogits, const float *xn,
                   const float *head, float scale, int N, int E, int K)
{
    // dxn (N,E) += scale dlogits @ head; dhead (K,E) += scale dlogits^T @ xn
    if (dxn)
        gemm(0, 0, N, E, K, scale, dlogits, K, head, E, 1.0f, dxn, E);
    if (dhead)
        gemm(1, 0, K, E, N, scale, dlogits, K, xn, E, 1.0f, dhead, E);
}

/* ------------------------------------------------------------ cross-entropy */

double op_xent_fwd_bwd(float *dlogits, const float *logits, const int *labels, int N, int K,
                       float smoothing)
{
    // loss = mean_n [ lse(z_n) - sum_k t_nk z_nk ], t = (1-eps) onehot + eps/K.
    // A label outside [0, K) makes the loss NaN (the caller checks isfinite).
    double total = 0.0;
    double off = (double)smoothing / K, on = 1.0 - smoothing + off;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K;
        int y = labels[n];
        if (y < 0 || y >= K)
            return NAN;
        double m = z[0];
        for (int k = 1; k < K; k++)
            m = z[k] > m ? z[k] : m;
        double se = 0.0, sz = 0.0;
        for (int k = 0; k < K; k++) {
            se += exp(z[k] - m);
            sz += z[k];
        }
        double lse = m + log(se);
        total += lse - (off * sz + (on - off) * z[y]);
        if (dlogits) {
            float *dz = dlogits + (size_t)n * K;
            for (int k = 0; k < K; k++) {
                double t = k == y ? on : off;
                dz[k] = (float)((exp(z[k] - lse) - t) / N);
            }
        }
    }
    return total / N;
}

double op_entropy_fwd_bwd(float *dlogits, const float *logits, int N, int K)
{
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K;
        double m = z[0];
        for (int k = 1; k < K; k++)
            m = z[k] > m ? z[k] : m;
        double se = 0.0;
        for (int k = 0; k < K; k++)
            se += exp(z[k] - m);
        double lse = m + log(se), h = 0.0;
        for (int k = 0; k < K; k++) { /* log p_k = z_k - lse */
            double lp = z[k] - lse;
            h -= exp(lp) * lp;
        }
        total += h;
        if (dlogits) {
            float *dz = dlogits + (size_t)n * K;
            for (int k = 0; k < K; k++) {
                double lp = z[k] - lse;
                dz[k] = (float)(-exp(lp) * (lp + h) / N);
            }
        }
    }
    return total / N;
}

/* ------------------------------------------------------- fused layer pairs */

/* Linear layers with the elementwise pass that follows (or precedes) them run
 * as hooks on each GEMM piece's rows: one trip through memory instead of two
 * or three, and on every thread. Each element gets the arithmetic of the
 * separate ops, in the same order. */
typedef struct {
    float *out, *act_out, *ln_out, *ln_mean, *ln_rstd, *dres;
    const float *b, *res, *deriv, *ln_w, *ln_b, *ln_in, *cmean, *crstd;
    int OC, C;
    float eps;
    TdAct act;
} Fused;

static void fused_bias_pre(const void *ctx, size_t r0, size_t r1, size_t c0, size_t c1)
{
    const Fused *f = ctx;
    if (f->b)
        fill_block(f->out, f->b, (size_t)f->OC, r0, r1, c0, c1);
}

/* The product is in f->out (the derivative's buffer, or the activation's when
 * no derivative is kept): the activation, and its derivative in place. */
static void fused_act_post(const void *ctx, size_t r0, size_t r1, size_t c0, size_t c1)
{
    const Fused *f = ctx;
    const size_t OC = (size_t)f->OC;
    float *y = f->act_out == f->out ? NULL : f->act_out;
    if (c0 == 0 && c1 == OC) /* whole rows: one contiguous range */
        act_fwd_inplace(y ? y + r0 * OC : NULL, f->out + r0 * OC, (r1 - r0) * OC, f->act);
    else
        for (size_t r = r0; r < r1; r++)
            act_fwd_inplace(y ? y + r * OC + c0 : NULL, f->out + r * OC + c0, c1 - c0, f->act);
}

static void fused_res_ln_post(const void *ctx, size_t r0, size_t r1, size_t c0, size_t c1)
{
    const Fused *f = ctx;
    const size_t OC = (size_t)f->OC; /* rows_only: c0 = 0, c1 = OC */
    (void)c0, (void)c1;
    float *restrict y = f->out + r0 * OC;
    const float *restrict x = f->res + r0 * OC;
    for (size_t i = 0; i < (r1 - r0) * OC; i++)
        y[i] += x[i];
    if (f->ln_out) {
        LnArgs a = {.out = f->ln_out, .mean = f->ln_mean, .rstd = f->ln_rstd, .in = f->out,
                    .w = f->ln_w, .b = f->ln_b, .C = f->OC, .eps = f->eps};
        ln_fwd_rows(&a, r0, r1, 0);
    }
}

void op_linear_act_fwd(float *act_out, float *deriv, const float *in, const float *w,
                       const float *b, int N, int C, int OC, TdAct act)
{
    op_linear_act_fwd_mx(act_out, deriv, in, w, b, N, C, OC, act, NULL);
}

void op_linear_act_fwd_mx(float *act_out, float *deriv, const float *in, const float *w,
                          const float *b, int N, int C, int OC, TdAct act, MmBf16 *mx)
{
    float *prod = deriv ? deriv : act_out; /* where the product lands */
    Fused f = {.out = prod, .act_out = act_out, .b = b, .OC = OC, .act = act};
    Gemm g = {.ta = 0, .tb = 1, .M = N, .N = OC, .K = C, .lda = C, .ldb = C, .ldc = OC,
              .alpha = 1.0f, .beta = b ? 1.0f : 0.0f, .A = in, .B = w, .C = prod,
              .pre = fused_bias_pre, .post = fused_act_post, .hctx = &f, .mx = mx};
    gemm_run(&g);
}

void op_linear_res_ln_fwd(float *out, float *ln_out, float *ln_mean, float *ln_rstd,
                          const float *in, const float *w, const float *b, const float *res,
                          const float *ln_w, const float *ln_b, float eps, int N, int C, int OC)
{
    op_linear_res_ln_fwd_mx(out, ln_out, ln_mean, ln_rstd, in, w, b, res, ln_w, ln_b, eps, N, C,
                            OC, NULL);
}

void op_linear_res_ln_fwd_mx(float *out, float *ln_out, float *ln_mean, float *ln_rstd,
                             const float *in, const float *w, const float *b, const float *res,
                             const float *ln_w, const float *ln_b, float eps, int N, int C,
                             int OC, MmBf16 *mx)
{
    Fused f = {.out = out, .ln_out = ln_out, .ln_mean = ln_mean, .ln_rstd = ln_rstd, .b = b,
               .res = res, .ln_w = ln_w, .ln_b = ln_b, .OC = OC, .eps = eps};
    Gemm g = {.ta = 0, .tb = 1, .M = N, .N = OC, .K = C, .lda = C, .ldb = C, .ldc = OC,
              .alpha = 1.0f, .beta = b ? 1.0f : 0.0f, .A = in, .B = w, .C = out,
              .pre = fused_bias_pre, .post = fused_res_ln_post, .hctx = &f, .rows_only = 1,
              .mx = mx};
    gemm_run(&g);
}

/* y = act'(x) * y over the block; + 0.0f: the separate ops added into a zeroed buffer */
static void fused_act_bwd_post(const void *ctx, size_t r0, size_t r1, size_t c0, size_t c1)
{
    const Fused *f = ctx;
    const size_t C = (size_t)f->C;
    for (size_t r = r0; r < r1; r++) {
        float *restrict y = f->out + r * C;
        const float *restrict d = f->deriv + r * C;
        for (size_t c = c0; c < c1; c++)
            y[c] = 0.0f + y[c] * d[c];
    }
}

void op_linear_bwd_act(float *dpre, const float *dout, const float *w, const float *deriv, int N,
                       int C, int OC)
{
    Fused f = {.out = dpre, .deriv = deriv, .C = C};
    Gemm g = {.ta = 0, .tb = 0, .M = N, .N = C, .K = OC, .lda = OC, .ldb = C, .ldc = C,
              .alpha = 1.0f, .beta = 0.0f, .A = dout, .B = w, .C = dpre,
              .post = fused_act_bwd_post, .hctx = &f};
    gemm_run(&g);
}

static void fused_ln_bwd_post(const void *ctx, size_t r0, size_t r1, size_t c0, size_t c1)
{
    const Fused *f = ctx; /* rows_only */
    (void)c0, (void)c1;
    LnArgs a = {.din = f->dres, .dout = f->out, .in = f->ln_in, .w = f->ln_w, .cmean = f->cmean,
                .crstd = f->crstd, .C = f->C};
    ln_bwd_rows(&a, r0, r1, 0);
}

void op_linear_bwd_ln(float *dres, float *dln, const float *dout, const float *w,
                      const float *ln_in, const float *ln_w, const float *mean,
                      const float *rstd, int N, int C, int OC)
{
    Fused f = {.out = dln, .dres = dres, .ln_in = ln_in, .ln_w = ln_w, .cmean = mean,
               .crstd = rstd, .C = C};
    Gemm g = {.ta = 0, .tb = 0, .M = N, .N = C, .K = OC, .lda = OC, .ldb = C, .ldc = C,
              .alpha = 1.0f, .beta = 0.0f, .A = dout, .B = w, .C = dln,
              .post = dres ? fused_ln_bwd_post : NULL, .hctx = &f, .rows_only = 1};
    gemm_run(&g);
}

void op_l2norm_row(float *f, int n)
{
    double s = 0;
    for (int k = 0; k < n; k++)
        s += (double)f[k] * f[k];
    const float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (int k = 0; k < n; k++)
        f[k] *= inv;
}

int op_head_score(const float *f, const float *head, int C, int E, double scale, int label,
                  double *ce)
{
    int best = 0;
    double bv = -INFINITY, m = -INFINITY, se = 0, zl = 0;
    for (int c = 0; c < C; c++) {
        double z = 0;
        for (int k = 0; k < E; k++)
            z += (double)f[k] * head[(size_t)c * E + k];
        if (z > bv) {
            bv = z;
            best = c;
        }
        if (!ce)
            continue;
        z *= scale;
        if (c == label)
            zl = z;
        if (z > m) {
            se = se * exp(m - z) + 1.0;
            m = z;
        } else {
            se += exp(z - m);
        }
    }
    if (ce)
        *ce = m + log(se) - zl;
    return best;
}
