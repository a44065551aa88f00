/* vit: the whole CLIP ViT image encoder over a batch, built from ops.h.
 *
 *   pixels (B,CH,S,S) -> im2col -> conv1 as a bias-free linear -> + class token,
 *   + positional embedding -> ln_pre -> L pre-LN blocks
 *     x += out_proj(attn(ln_1(x) @ in_proj^T + b));  x += c_proj(act(c_fc(ln_2(x))))
 *   -> class token -> ln_post -> @ proj -> image embeddings (B,E)
 *
 * plus its reverse mode (vit_backward: weight gradients of a trainable subset,
 * no work below the lowest trainable tensor), its forward mode (vit_jvp: the
 * tangent of the embeddings along a direction in parameter space) and the
 * linearised model of ntk fine-tuning (vit_ntk_forward).
 *
 * All activations that backward and jvp reuse live in ONE allocation (VitWork)
 * sized for a maximum batch; a call never allocates. Every GEMM has M = B*T
 * (or B*G*G, or B) rows, so its shape is fixed by the architecture and B
 * (and the pool's split of it by the shape alone: ops.h gemm_plan): called
 * at a fixed B, an image's outputs are the same bits whatever the other
 * images of the batch and the thread count. Single-process.
 * Size letters: vit_arch.h; N = B*T rows of tokens. */
#ifndef TD_VIT_H
#define TD_VIT_H

#include <stddef.h>

#include "mm_bf16.h"
#include "params.h"
#include "status.h"
#include "vit_arch.h"

/* Saved activations, per block arrays are (L, ...) with the batch dim at max_batch.
 * When the last block runs on the class tokens only (VitWork.all_tokens == 0),
 * the cls_* buffers hold its rows after the attention core, one per image,
 * padded with zero rows to vit_cls_rows(B) (R below); res[L] is not written
 * and cls is that block's output.
 * ln1, ln2 and fca could be recomputed from their inputs; they are kept
 * because each is a full pass over (N, D) or (N, F) that backward and jvp
 * would repeat (ViT-B/32, batch 128: about 4 GiB of activations in all).
 * A pointer to a (B, ...) slice of a (max_batch, ...) buffer is its start:
 * the first B rows are contiguous. */
typedef struct {
    float *cols;       /* (B*G*G, CH*P*P) im2col of the pixels: conv1's input */
    float *emb;        /* (N, D) tokens before ln_pre */
    float *lnpre_mean; /* (N) */
    float *lnpre_rstd; /* (N) */
    float *res;        /* (L+1, N, D) residual stream: res[0] after ln_pre, res[l+1] block l out */
    float *ln1;        /* (L, N, D) ln_1 output */
    float *ln1_mean;   /* (L, N) */
    float *ln1_rstd;   /* (L, N) */
    float *qkv;        /* (L, N, 3D) */
    float *att;        /* (L, B, NH, T, T) softmax probabilities; the class-token-only
                          last block keeps (B, NH, T), its class queries' rows */
    float *atty;       /* (L, N, D) heads concatenated, out_proj's input */
    float *mid;        /* (L, N, D) residual after the attention sub-layer */
    float *ln2;        /* (L, N, D) */
    float *ln2_mean;   /* (L, N) */
    float *ln2_rstd;   /* (L, N) */
    float *dact;       /* (L, N, F) the activation's derivative at c_fc's output */
    float *fca;        /* (L, N, F) activation output, c_proj's input */
    float *cls;        /* (R, D) class token of res[L]; the first B rows count */
    float *cls_x;      /* (R, D) the class-token-only last block: its input, */
    float *cls_atty;   /* (R, D)   out_proj's input, */
    float *cls_mid;    /* (R, D)   residual after attention, */
    float *cls_ln2;    /* (R, D)   ln_2 output and its */
    float *cls_ln2_mean; /* (R)     statistics, */
    float *cls_ln2_rstd; /* (R) */
    float *cls_dact;   /* (R, F)   activation derivative and */
    float *cls_fca;    /* (R, F)   activation output */
    float *lnpost_mean; /* (B) */
    float *lnpost_rstd; /* (B) */
    float *pooled;     /* (B, D) ln_post output */
} VitActs;

/* Scratch reused by backward and jvp (nothing in it survives a call). a, b
 * and c hold max(N, R) rows (R: vit_cls_rows). */
typedef struct {
    float *r;    /* (N, D) gradient / tangent of the residual stream */
    float *a;    /* (N, max(F, 3D)) */
    float *b;    /* (N, F) */
    float *c;    /* (N, D) */
    float *d;    /* (N, D) */
    float *att;  /* op_attention_scratch(T, D) */
    float *bd1;  /* (R, D) */
    float *bd2;  /* (R, D) */
    float *be;   /* (B, E) */
} VitScratch;

typedef struct {
    VitArch arch;
    const ParamTable *table; /* borrowed; must outlive the work */
    int max_batch;
    int B;                   /* batch of the last vit_forward, 0 before */
    int all_tokens;          /* set by the caller: 1 runs the whole last block on every
                                token, so that vit_hidden(L) exists (tadist check); 0
                                (the default) runs its attention for the class tokens'
                                queries and its out_proj and MLP on their rows only:
                                the only rows the embeddings depend on */
    int no_grad;             /* set by the caller: 1 when no vit_backward or vit_jvp will
                                follow the forward, which then saves no activation
                                derivative and no MLP input (see trainable) */
    const unsigned char *trainable; /* set by the caller (borrowed): the tensors the
                                vit_backward or vit_jvp after the next forward
                                differentiate; NULL: all. The forward keeps a block's
                                MLP inputs (ln2, fca: read only by the MLP's weight
                                gradients and tangents) only when that block's c_fc or
                                c_proj weight is in it */
    int bf16;                /* set by the caller: 1 runs the forward's linear products
                                (patch embedding, in_proj, out_proj, c_fc, c_proj) in bf16
                                with fp32 accumulation, when no_grad is set too and the CPU
                                runs bf16 natively (vit_bf16_active); the parameters must
                                be bound first (vit_bf16_bind). Backward and jvp stay fp32 */
    MmBf16 *lowp;            /* the bf16 copy of the bound parameters (vit_bf16_bind), owned */
    unsigned char *mlp_kept; /* (L) which blocks' MLP inputs the last forward kept */
    int last_cls_only;       /* how the last forward ran its last block (!all_tokens) */
    const float *params;     /* parameters of the last vit_forward (borrowed) */
    VitActs acts;
    VitScratch scr;
    float *memory;           /* the one allocation behind acts and scr */
    size_t floats;           /* its size */
} VitWork;

/* Rows of the class-token-only last block at batch B: B, padded to a floor
 * of 64 (a product of a few rows is no faster than one of 64). That results
 * do not depend on how a batch is split over ranks comes from the engine
 * running fixed-size micro-batches (dist/stages/train_step.h), not from this. */
int vit_cls_rows(int B);

/* Allocates the workspace of architecture a (table built from a) for batches
 * up to max_batch. */
TdStatus vit_work_alloc(VitWork *w, const VitArch *a, const ParamTable *table, int max_batch);
void vit_work_free(VitWork *w);

/* Whether the next vit_forward (or vit_ntk_forward) runs its linear products
 * in bf16: w->bf16 and w->no_grad set, and mm_bf16_native(). */
int vit_bf16_active(const VitWork *w);

/* Makes the bf16 copy of the linear weights of params (allocated on the first
 * call) that bf16 forwards read; they then accept only this params pointer
 * (another one aborts with a message). params must not change while the copy
 * is in use: bind again after any change (evaluate.c binds once per pass over
 * a split, whose parameters are const). */
TdStatus vit_bf16_bind(VitWork *w, const float *params);

/* Forward pass: embeds (B,E) = f(pixels (B,CH,S,S); params). Saves every
 * activation that backward and jvp need; params must stay unchanged until they
 * have run. B <= max_batch. */
void vit_forward(const float *params, VitWork *w, const float *pixels, int B, float *embeds);

/* Residual stream after ln_pre (level 0) or after block level-1, (B,T,D) of
 * the last forward (level L: NULL unless it ran with all_tokens); and the
 * pooled class token (B,D). */
const float *vit_hidden(const VitWork *w, int level);
const float *vit_pooled(const VitWork *w);

/* Reverse mode of the last forward: ADDS dL/dparam into grads (flat, table
 * layout) for the tensors with trainable[i] != 0 (NULL: all); the others are
 * left untouched, and no gradient is propagated below the lowest trainable
 * tensor. dembeds (B,E) = dL/dembeds. */
void vit_backward(VitWork *w, const float *dembeds, float *grads, const unsigned char *trainable);

/* Forward mode of the last forward: tembeds (B,E) = J(params) . tangent, with
 * tangent flat in table layout; tensors with mask[i] == 0 count as zero
 * tangent and are never read (mask NULL: all). Reuses the saved activations
 * and leaves them intact, so vit_backward may still follow. B must be the
 * batch of the last forward. */
void vit_jvp(const float *params, VitWork *w, const float *tangent, const unsigned char *mask,
             int B, float *tembeds);

/* The linearised model of ntk fine-tuning:
 *   out = f(x; theta0) + J(theta0) . delta,  delta = theta - theta0 (table layout).
 * Runs vit_forward at theta0 (with w->trainable = mask) and vit_jvp along delta. The gradient of a loss
 * of out w.r.t. theta is J(theta0)^T dL/dout: call vit_backward next with
 * dL/dout; it uses the theta0 activations this call saved. If f0 is not NULL
 * it receives f(x; theta0) (B,E). With vit_bf16_active (evaluation: theta0
 * bound, no backward after it), the forward at theta0 runs its products in
 * bf16 and the jvp stays fp32. */
void vit_ntk_forward(const float *theta0, VitWork *w, const float *delta,
                     const unsigned char *mask, const float *pixels, int B, float *out,
                     float *f0);

/* ---- the classification head on top of the encoder ----
 *   feat = embeds / ||embeds||;  logits = scale * feat @ head^T;  loss = mean CE. */
typedef struct {
    int max_batch, E, max_classes;
    float *xn;      /* (B, E) normalised features */
    float *norm;    /* (B) */
    float *dlogits; /* (B, C) */
    float *dxn;     /* (B, E) */
    float *logits;  /* (B, C) when the caller passes none */
    float smoothing; /* label smoothing of the cross-entropy, in [0,1): targets
                        (1-smoothing) one-hot + smoothing/C; 0 after vit_head_alloc */
} VitHead;

TdStatus vit_head_alloc(VitHead *h, int max_batch, int E, int max_classes);
void vit_head_free(VitHead *h);
/* Returns the mean cross-entropy of the logits of embeds (B,E) with head
 * (C,E) against labels (B), label-smoothed by h->smoothing (op_xent_fwd_bwd). Optional outputs: logits (B,C) written; dembeds
 * (B,E) OVERWRITTEN with dL/dembeds; dhead (C,E) += dL/dhead. */
double vit_head_loss(VitHead *h, const float *embeds, const float *head, float scale,
                     const int *labels, int B, int C, float *logits, float *dembeds,
                     float *dhead);

/* As vit_head_loss, with the mean prediction entropy of the logits
 * (op_entropy_fwd_bwd) as the loss: no labels. */
double vit_head_entropy(VitHead *h, const float *embeds, const float *head, float scale, int B,
                        int C, float *logits, float *dembeds);

#endif
