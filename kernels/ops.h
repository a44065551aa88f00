/* ops: the layers of a CLIP ViT, each as forward / backward / jvp.
 *
 * Conventions (after llm.c):
 * - argument order: outputs, then values saved for backward, then inputs and
 *   weights, then sizes;
 * - backward ADDS into every gradient buffer (+=); a NULL gradient pointer
 *   means "not needed" and its work is skipped (this is how a trainable set
 *   restricts the backward pass);
 * - jvp computes the forward-mode tangent of the output for tangents on the
 *   inputs and weights; a NULL tangent means zero (and skips its work); the
 *   tangent output is OVERWRITTEN (=), not accumulated;
 * - row-major everywhere; linear weights are [OC, C], applied as x @ W^T + b.
 * Size letters: see vit_arch.h. N = number of rows (e.g. B*T).
 * Every matrix product goes through cblas_sgemm, except those of the _mx
 * forward ops below given an MmBf16 (oneDNN, bf16). */
#ifndef TD_OPS_H
#define TD_OPS_H

#include <stddef.h>

#include "vit_arch.h"

typedef struct MmBf16 MmBf16; /* mm_bf16.h */

/* ---- how a product (M,N,K) is split over the thread pool ----
 * Returns the number of pieces (1 = one cblas_sgemm call) and sets *by_cols
 * (1: pieces are column ranges of C, 0: row ranges). A function of the shape
 * only: the thread count never changes which call computes an element. */
int gemm_plan(int M, int N, int K, int rows_only, int *by_cols);

/* ---- linear: out (N,OC) = in (N,C) @ w^T (OC,C) + b (OC) ---- */
void op_linear_fwd(float *out, const float *in, const float *w, const float *b, int N, int C,
                   int OC);
void op_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in,
                   const float *w, int N, int C, int OC);
void op_linear_jvp(float *tout, const float *in, const float *tin, const float *w,
                   const float *tw, const float *tb, int N, int C, int OC);
/* din (N,C) = dout @ w, OVERWRITTEN (op_linear_bwd's din into a zeroed buffer). */
void op_linear_din(float *din, const float *dout, const float *w, int N, int C, int OC);

/* ---- matmul without transpose, for `proj`: out (N,OC) = in (N,C) @ w (C,OC) ---- */
void op_matmul_fwd(float *out, const float *in, const float *w, int N, int C, int OC);
void op_matmul_bwd(float *din, float *dw, const float *dout, const float *in, const float *w,
                   int N, int C, int OC);
void op_matmul_jvp(float *tout, const float *in, const float *tin, const float *w,
                   const float *tw, int N, int C, int OC);

/* ---- patch embedding as a GEMM ----
 * im2col: img (B,CH,S,S) -> cols (B*G*G, CH*P*P), column order (ch, ky, kx),
 * the flattening of conv1.weight [D,CH,P,P]; then op_linear with no bias. */
void op_im2col(float *cols, const float *img, int B, int CH, int S, int P);

/* ---- token assembly: x (B,T,D): x[b,0] = cls + pos[0]; x[b,1+p] = patches[b,p] + pos[1+p] ---- */
void op_embed_fwd(float *x, const float *patches, const float *cls, const float *pos, int B,
                  int T, int D);
void op_embed_bwd(float *dpatches, float *dcls, float *dpos, const float *dx, int B, int T, int D);
void op_embed_jvp(float *tx, const float *tpatches, const float *tcls, const float *tpos, int B,
                  int T, int D);

/* ---- LayerNorm over the last dim C; mean and rstd (N) are saved for backward ---- */
void op_layernorm_fwd(float *out, float *mean, float *rstd, const float *in, const float *w,
                      const float *b, int N, int C, float eps);
void op_layernorm_bwd(float *din, float *dw, float *db, const float *dout, const float *in,
                      const float *w, const float *mean, const float *rstd, int N, int C);
void op_layernorm_jvp(float *tout, const float *in, const float *tin, const float *w,
                      const float *tw, const float *tb, const float *mean, const float *rstd,
                      int N, int C);

/* ---- multi-head self-attention core (no mask, scale 1/sqrt(HD)) ----
 * qkv (B,T,3D): per token [q | k | v], head h uses columns h*HD..(h+1)*HD of each.
 * out (B,T,D): heads concatenated. att (B,NH,T,T): softmax probabilities, saved.
 * scratch: at least op_attention_scratch(T, D) floats, caller-owned. */
size_t op_attention_scratch(int T, int D);
void op_attention_fwd(float *out, float *att, const float *qkv, int B, int T, int D, int NH);
void op_attention_bwd(float *dqkv, const float *dout, const float *qkv, const float *att,
                      float *scratch, int B, int T, int D, int NH);
/* As op_attention_bwd into a zeroed dqkv, but dqkv is OVERWRITTEN (never read). */
void op_attention_bwd_set(float *dqkv, const float *dout, const float *qkv, const float *att,
                          float *scratch, int B, int T, int D, int NH);
void op_attention_jvp(float *tout, const float *qkv, const float *tqkv, const float *att,
                      float *scratch, int B, int T, int D, int NH);

/* ---- the same attention for the class token's query only (token 0 of each
 * image) over every key and value: all that the last block needs when only
 * the class token goes on. out (B,D): the class tokens' heads concatenated;
 * att (B,NH,T): their softmax probabilities, saved. bwd: dqkv (B,T,3D)
 * OVERWRITTEN: q of token 0, k and v of every token, 0 for the other q.
 * scratch: op_attention_scratch(T, D) floats, as above. ---- */
void op_attention_cls_fwd(float *out, float *att, const float *qkv, int B, int T, int D, int NH);
void op_attention_cls_bwd_set(float *dqkv, const float *dout, const float *qkv, const float *att,
                              float *scratch, int B, int T, int D, int NH);
void op_attention_cls_jvp(float *tout, const float *qkv, const float *tqkv, const float *att,
                          float *scratch, int B, int T, int D, int NH);

/* ---- activations, elementwise over n values ----
 * fwd: out = act(in), and deriv = act'(in) when deriv is not NULL. The
 * backward and the jvp take that derivative (saved in place of the input):
 * bwd din += deriv * dout, jvp tout = deriv * tin. */
void op_act_fwd(float *out, float *deriv, const float *in, size_t n, TdAct act);
void op_act_bwd(float *din, const float *dout, const float *deriv, size_t n);
void op_act_jvp(float *tout, const float *deriv, const float *tin, size_t n);

/* ---- residual: x += y (n values); its backward is identity, its jvp a sum ---- */
void op_add_inplace(float *x, const float *y, size_t n);

/* ---- class-token gather: out (B,D) = x[b,0,:] of x (B,T,D) ---- */
void op_cls_gather(float *out, const float *x, int B, int T, int D);
void op_cls_scatter_add(float *dx, const float *dout, int B, int T, int D);

/* ---- L2 normalisation of each row: out = x / ||x||; norm (N) saved ---- */
void op_l2norm_fwd(float *out, float *norm, const float *x, int N, int C);
/* The evaluation's scoring of one feature row (dist/stages/evaluate.c, the
 * linear surrogate): op_l2norm_row normalises f (n) in place, the squared
 * norm summed in double and its inverse square root rounded to float (a zero
 * row stays zero); op_head_score returns the first index of the largest
 * h_c . f over head (C, E), each dot product in double, and when ce is not
 * NULL stores the cross-entropy of the logits scale * h f against label
 * (a running log-sum-exp over the same dot products). */
void op_l2norm_row(float *f, int n);
int op_head_score(const float *f, const float *head, int C, int E, double scale, int label,
                  double *ce);
void op_l2norm_bwd(float *dx, const float *dout, const float *out, const float *norm, int N, int C);
void op_l2norm_jvp(float *tout, const float *tx, const float *out, const float *norm, int N, int C);

/* ---- head logits: logits (N,K) = scale * xn (N,E) @ head^T (K,E) ---- */
void op_logits_fwd(float *logits, const float *xn, const float *head, float scale, int N, int E,
                   int K);
void op_logits_bwd(float *dxn, float *dhead, const float *dlogits, const float *xn,
                   const float *head, float scale, int N, int E, int K);

/* ---- mean prediction entropy ----
 * Returns mean_n H(softmax(z_n)), H(p) = -sum_k p_k log p_k (accumulated in
 * double); writes dlogits = dL/dlogits when not NULL (already divided by N):
 * dH/dz_k = -p_k (log p_k + H). Labels are never needed (AdaMerging's
 * test-time objective). */
double op_entropy_fwd_bwd(float *dlogits, const float *logits, int N, int K);

/* ---- mean cross-entropy with label smoothing eps (0 = none) ----
 * Returns the loss (accumulated in double); writes dlogits = dL/dlogits when
 * not NULL (already divided by N). A label outside [0, K) gives NaN: callers
 * validate labels when they load a data set. */
double op_xent_fwd_bwd(float *dlogits, const float *logits, const int *labels, int N, int K,
                       float smoothing);

/* ---- fused pairs: a linear layer and the elementwise pass next to it, done
 * on each GEMM piece's rows while they are in cache. Bit for bit the separate
 * ops. ----
 * act_out (N,OC) = act(in @ w^T + b), and deriv (N,OC) = act'(the same) when
 * deriv is not NULL (c_fc, then the activation) */
void op_linear_act_fwd(float *act_out, float *deriv, const float *in, const float *w,
                       const float *b, int N, int C, int OC, TdAct act);
/* out (N,OC) = (in @ w^T + b) + res; then, when ln_out is not NULL,
 * ln_out, ln_mean, ln_rstd = op_layernorm_fwd(out; ln_w, ln_b, eps)
 * (out_proj or c_proj, the residual add, the next LayerNorm) */
void op_linear_res_ln_fwd(float *out, float *ln_out, float *ln_mean, float *ln_rstd,
                          const float *in, const float *w, const float *b, const float *res,
                          const float *ln_w, const float *ln_b, float eps, int N, int C, int OC);
/* dpre (N,C) = deriv * (dout (N,OC) @ w (OC,C)), OVERWRITTEN: the input
 * gradient of a linear layer whose input was act(pre), with deriv = act'(pre)
 * from op_linear_act_fwd (c_proj, then the activation's backward). Weight
 * gradients: op_linear_bwd(NULL, dw, db, ...). */
void op_linear_bwd_act(float *dpre, const float *dout, const float *w, const float *deriv, int N,
                       int C, int OC);
/* dln (N,C) = dout @ w (OVERWRITTEN), then, when dres is not NULL, dres +=
 * the input gradient of the LayerNorm (ln_w, mean, rstd of input ln_in) that
 * produced the linear layer's input, as op_layernorm_bwd(dres, NULL, NULL, dln, ...).
 * LayerNorm parameter gradients: op_layernorm_bwd(NULL, dw, db, dln, ...). */
void op_linear_bwd_ln(float *dres, float *dln, const float *dout, const float *w,
                      const float *ln_in, const float *ln_w, const float *mean,
                      const float *rstd, int N, int C, int OC);

/* ---- the forward linear ops with their product in bf16 ----
 * op_linear_fwd, op_linear_act_fwd and op_linear_res_ln_fwd, the same
 * arguments plus mx: NULL is exactly the op above (fp32, OpenBLAS); otherwise
 * the product runs in bf16 with fp32 accumulation on oneDNN (mm_bf16.h), its
 * weight read from mx's copy (w must point into the parameters bound to mx),
 * and the bias, activation, residual add and LayerNorm stay fp32 as above
 * (hook passes over the same pieces, before and after the one product). */
void op_linear_fwd_mx(float *out, const float *in, const float *w, const float *b, int N, int C,
                      int OC, MmBf16 *mx);
void op_linear_act_fwd_mx(float *act_out, float *deriv, const float *in, const float *w,
                          const float *b, int N, int C, int OC, TdAct act, MmBf16 *mx);
void op_linear_res_ln_fwd_mx(float *out, float *ln_out, float *ln_mean, float *ln_rstd,
                             const float *in, const float *w, const float *b, const float *res,
                             const float *ln_w, const float *ln_b, float eps, int N, int C,
                             int OC, MmBf16 *mx);

#endif
