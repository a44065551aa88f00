/* text: CLIP's text tower (Hugging Face CLIPTextModel + text_projection),
 * forward only, built from ops.h and ops_causal.h.
 *
 *   ids (B,T) -> token_embedding[ids] + positional_embedding[:T] -> L pre-LN
 *   blocks with CAUSAL attention
 *     x += out_proj(causal_attn(ln_1(x) @ in_proj^T + b));  x += c_proj(act(c_fc(ln_2(x))))
 *   -> ln_final -> the token at the first position of eos_id -> @ text_projection
 *   -> text embeddings (B,E), not normalised.
 *
 * Parameters live in ONE buffer laid out by a ParamTable (params.h) with
 * open_clip's text names: token_embedding.weight [V,D], positional_embedding
 * [CTX,D], transformer.resblocks.N.* (the BLK_* fields of params.h, the same
 * as the image tower's), ln_final.{weight,bias} [D], text_projection [D,E]
 * applied as x @ text_projection. open_clip names keep one naming scheme
 * across both towers of a model file.
 *
 * Size letters: vit_arch.h, plus V vocabulary, CTX context length (T <= CTX).
 * Single-process; BLAS threads do the parallel work. */
#ifndef TD_TEXT_H
#define TD_TEXT_H

#include <stddef.h>

#include "params.h"
#include "status.h"
#include "vit_arch.h"

typedef struct {
    int width;   /* D */
    int layers;  /* L */
    int heads;   /* NH */
    int mlp;     /* F */
    int ctx;     /* CTX, max_position_embeddings */
    int vocab;   /* V */
    int out_dim; /* E */
    int eos_id;  /* pooling token; 2 means Hugging Face's legacy rule: the highest id */
    TdAct act;
    float ln_eps;
} TextArch;

enum { TEXT_TOKEN_EMB = 0, /* [V, D] */
       TEXT_POS_EMB,       /* [CTX, D] */
       TEXT_BLOCKS_BEGIN };
static inline int text_block_index(int layer, int field)
{
    return TEXT_BLOCKS_BEGIN + layer * PARAM_PER_BLOCK + field;
}
static inline int text_ln_final_w(const TextArch *a) { return TEXT_BLOCKS_BEGIN + a->layers * PARAM_PER_BLOCK; }
static inline int text_ln_final_b(const TextArch *a) { return text_ln_final_w(a) + 1; }
static inline int text_proj(const TextArch *a) { return text_ln_final_w(a) + 2; }

/* The shape fields of a named text tower (width, layers, heads, mlp, ctx,
 * act, ln_eps); vocab, out_dim and eos_id are the caller's (tokenizer, image
 * tower). text_demo: width 128, 2 layers, 4 heads, mlp 512, ctx 16. */
TdStatus text_arch_by_name(const char *name, int vocab, int eos_id, int out_dim, TextArch *a);

/* Positivity, heads dividing width, eos_id inside the vocabulary; the message names the field. */
TdStatus text_arch_validate(const TextArch *a);
TdStatus text_table_build(const TextArch *a, ParamTable *t);

/* CLIP's initialisation of a text tower (open_clip's init_parameters): token
 * embeddings N(0, 0.02), positional N(0, 0.01), in_proj N(0, D^-1/2), out_proj
 * and c_proj N(0, D^-1/2 (2L)^-1/2), c_fc N(0, (2D)^-1/2), text_projection
 * N(0, D^-1/2), LayerNorm weights 1, every bias 0. Tensor i draws from its own
 * stream of seed, so the result is a pure function of (arch, seed). */
void text_params_init_random(const TextArch *a, const ParamTable *t, float *buf,
                             unsigned long long seed);

/* Forward-only workspace for batches up to max_batch of up to CTX tokens:
 * one allocation, activations of one block at a time. */
typedef struct {
    TextArch arch;
    const ParamTable *table; /* borrowed */
    int max_batch;
    float *x;      /* (N, D) residual stream */
    float *ln;     /* (N, D) */
    float *qkv;    /* (N, 3D) */
    float *att;    /* (B, NH, CTX, CTX) */
    float *atty;   /* (N, D) */
    float *fc;     /* (N, F) */
    float *fca;    /* (N, F) */
    float *mean;   /* (N) */
    float *rstd;   /* (N) */
    float *pooled; /* (B, D) ln_final output at the pooling token */
    float *memory;
} TextWork;

TdStatus text_work_alloc(TextWork *w, const TextArch *a, const ParamTable *table, int max_batch);
void text_work_free(TextWork *w);

/* Position that pools row ids (T): the first eos_id (position 0 when there is
 * none, as in Hugging Face), or the first highest id when eos_id is 2. */
int text_pool_position(const TextArch *a, const int *ids, int T);

/* embeds (B,E) = text tower of ids (B,T), B <= max_batch, T <= CTX. An id
 * outside [0, V) is an error naming the row and position. */
TdStatus text_forward(const float *params, TextWork *w, const int *ids, int B, int T,
                      float *embeds);

#endif
