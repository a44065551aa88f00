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
 * Every matrix product goes through cblas_sgemm. */
#ifndef TD_OPS_H
#define TD_OPS_H

#include <stddef.h>

#include "vit_arch.h"

/* ---- linear: out (N,OC) = in (N,C) @ w^T (OC,C) + b (OC) ---- */
void op_linear_fwd(float *out, const float *in, const float *w, const float *b, int N, int C,
                   int OC);
void op_linear_bwd(float *din, float *dw, float *db, const float *dout, const float *in,
                   const float *w, int N, int C, int OC);
void op_linear_jvp(float *tout, const float *in, const float *tin, const float *w,
                   const float *tw, const float *tb, int N, int C, int OC);

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
void op_attention_jvp(float *tout, const float *qkv, const float *tqkv, const float *att,
                      float *scratch, int B, int T, int D, int NH);

/* ---- activations, elementwise over n values ---- */
void op_act_fwd(float *out, const float *in, size_t n, TdAct act);
void op_act_bwd(float *din, const float *dout, const float *in, size_t n, TdAct act);
void op_act_jvp(float *tout, const float *in, const float *tin, size_t n, TdAct act);

/* ---- residual: x += y (n values); its backward is identity, its jvp a sum ---- */
void op_add_inplace(float *x, const float *y, size_t n);

/* ---- class-token gather: out (B,D) = x[b,0,:] of x (B,T,D) ---- */
void op_cls_gather(float *out, const float *x, int B, int T, int D);
void op_cls_scatter_add(float *dx, const float *dout, int B, int T, int D);

/* ---- L2 normalisation of each row: out = x / ||x||; norm (N) saved ---- */
void op_l2norm_fwd(float *out, float *norm, const float *x, int N, int C);
void op_l2norm_bwd(float *dx, const float *dout, const float *out, const float *norm, int N, int C);
void op_l2norm_jvp(float *tout, const float *tx, const float *out, const float *norm, int N, int C);

/* ---- head logits: logits (N,K) = scale * xn (N,E) @ head^T (K,E) ---- */
void op_logits_fwd(float *logits, const float *xn, const float *head, float scale, int N, int E,
                   int K);
void op_logits_bwd(float *dxn, float *dhead, const float *dlogits, const float *xn,
                   const float *head, float scale, int N, int E, int K);

/* ---- mean cross-entropy with label smoothing eps (0 = none) ----
 * Returns the loss (accumulated in double); writes dlogits = dL/dlogits when
 * not NULL (already divided by N). A label outside [0, K) gives NaN: callers
 * validate labels when they load a data set. */
double op_xent_fwd_bwd(float *dlogits, const float *logits, const int *labels, int N, int K,
                       float smoothing);

#endif
