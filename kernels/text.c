#include "text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "ops_causal.h"
#include "rng.h"

TdStatus text_arch_validate(const TextArch *a)
{
    const struct {
        const char *name;
        int v;
    } f[] = {{"width", a->width}, {"layers", a->layers}, {"heads", a->heads}, {"mlp", a->mlp},
             {"ctx", a->ctx},     {"vocab", a->vocab},   {"out_dim", a->out_dim}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v <= 0 || f[i].v > (1 << 20))
            return td_fail(TD_ERR_ARG, "text tower: %s = %d must be in [1, 2^20]", f[i].name,
                           f[i].v);
    if (a->width % a->heads != 0)
        return td_fail(TD_ERR_ARG, "text tower: width %d is not a multiple of heads %d",
                       a->width, a->heads);
    if (a->eos_id < 0 || a->eos_id >= a->vocab)
        return td_fail(TD_ERR_ARG, "text tower: eos_id %d outside the vocabulary [0, %d)",
                       a->eos_id, a->vocab);
    if (!(a->ln_eps > 0.0f && a->ln_eps < 1.0f))
        return td_fail(TD_ERR_ARG, "text tower: ln_eps %g must be in (0, 1)", (double)a->ln_eps);
    return TD_OK;
}

TdStatus text_arch_by_name(const char *name, int vocab, int eos_id, int out_dim, TextArch *a)
{
    if (strcmp(name, "text_demo") != 0)
        return td_fail(TD_ERR_ARG, "unknown text tower '%s' (known: text_demo)", name);
    *a = (TextArch){128, 2, 4, 512, 16, vocab, out_dim, eos_id, TD_ACT_QUICK_GELU, 1e-5f};
    return text_arch_validate(a);
}

static void set_info(ParamInfo *p, const char *name, int block, int ndim, const int *shape)
{
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    p->block = block;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
}

#define SHAPE(...) ((const int[]){__VA_ARGS__})

TdStatus text_table_build(const TextArch *a, ParamTable *t)
{
    TD_TRY(text_arch_validate(a));
    const int D = a->width, F = a->mlp;
    t->count = TEXT_BLOCKS_BEGIN + a->layers * PARAM_PER_BLOCK + 3;
    TD_ALLOC(t->info, t->count);
    ParamInfo *p = t->info;
    set_info(&p[TEXT_TOKEN_EMB], "token_embedding.weight", -1, 2, SHAPE(a->vocab, D));
    set_info(&p[TEXT_POS_EMB], "positional_embedding", -1, 2, SHAPE(a->ctx, D));
    static const char *fields[PARAM_PER_BLOCK] = {
        "ln_1.weight",       "ln_1.bias",           "attn.in_proj_weight", "attn.in_proj_bias",
        "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight",       "ln_2.bias",
        "mlp.c_fc.weight",   "mlp.c_fc.bias",       "mlp.c_proj.weight",   "mlp.c_proj.bias"};
    static const int ndims[PARAM_PER_BLOCK] = {1, 1, 2, 1, 2, 1, 1, 1, 2, 1, 2, 1};
    for (int l = 0; l < a->layers; l++) {
        const int *shapes[PARAM_PER_BLOCK] = {SHAPE(D),    SHAPE(D), SHAPE(3 * D, D), SHAPE(3 * D),
                                              SHAPE(D, D), SHAPE(D), SHAPE(D),        SHAPE(D),
                                              SHAPE(F, D), SHAPE(F), SHAPE(D, F),     SHAPE(D)};
        for (int f = 0; f < PARAM_PER_BLOCK; f++) {
            char name[TD_PARAM_NAME_MAX];
            snprintf(name, sizeof name, "transformer.resblocks.%d.%s", l, fields[f]);
            set_info(&p[text_block_index(l, f)], name, l, ndims[f], shapes[f]);
        }
    }
    set_info(&p[text_ln_final_w(a)], "ln_final.weight", -1, 1, SHAPE(D));
    set_info(&p[text_ln_final_b(a)], "ln_final.bias", -1, 1, SHAPE(D));
    set_info(&p[text_proj(a)], "text_projection", -1, 2, SHAPE(D, a->out_dim));
    size_t off = 0;
    for (int i = 0; i < t->count; i++) {
        p[i].offset = off; /* 64-byte aligned tensors, as in params.c */
        off += (p[i].numel + 15) / 16 * 16;
    }
    t->total = off;
    return TD_OK;
}

TdStatus text_work_alloc(TextWork *w, const TextArch *a, const ParamTable *table, int max_batch)
{
    memset(w, 0, sizeof *w);
    TD_TRY(text_arch_validate(a));
    if (max_batch <= 0)
        return td_fail(TD_ERR_ARG, "text tower: batch %d must be positive", max_batch);
    const size_t B = (size_t)max_batch, N = B * a->ctx, D = a->width, F = a->mlp;
    const size_t sizes[] = {N * D,     N * D, N * 3 * D, B * a->heads * a->ctx * a->ctx,
                            N * D,     N * F, N * F,     N,
                            N,         B * D};
    float **ptrs[] = {&w->x,  &w->ln,  &w->qkv,  &w->att,  &w->atty,
                      &w->fc, &w->fca, &w->mean, &w->rstd, &w->pooled};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += (sizes[i] + 15) / 16 * 16;
    w->memory = td_aligned_calloc(total * sizeof(float));
    if (!w->memory)
        return td_fail(TD_ERR_NOMEM, "text tower: cannot allocate %zu MiB of activations",
                       total * sizeof(float) >> 20);
    float *p = w->memory;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *ptrs[i] = p;
        p += (sizes[i] + 15) / 16 * 16;
    }
    w->arch = *a;
    w->table = table;
    w->max_batch = max_batch;
    return TD_OK;
}

void text_work_free(TextWork *w)
{
    td_free(w->memory);
    memset(w, 0, sizeof *w);
}

int text_pool_position(const TextArch *a, const int *ids, int T)
{
    int pos = 0;
    if (a->eos_id == 2) { /* transformers' legacy configs: argmax of the ids */
        for (int t = 1; t < T; t++)
            if (ids[t] > ids[pos])
                pos = t;
        return pos;
    }
    for (int t = 0; t < T; t++)
        if (ids[t] == a->eos_id)
            return t;
    return 0;
}

/* One pre-LN block over x (N,D) in place, causal attention within each row. */
static void text_block(TextWork *w, const float *params, int l, int B, int T)
{
    const TextArch *a = &w->arch;
    const ParamTable *tb = w->table;
    const int N = B * T, D = a->width, F = a->mlp;
#define W(f) params_at_c(tb, params, text_block_index(l, f))
    op_layernorm_fwd(w->ln, w->mean, w->rstd, w->x, W(BLK_LN1_W), W(BLK_LN1_B), N, D, a->ln_eps);
    op_linear_fwd(w->qkv, w->ln, W(BLK_QKV_W), W(BLK_QKV_B), N, D, 3 * D);
    op_attention_causal_fwd(w->atty, w->att, w->qkv, B, T, D, a->heads);
    op_linear_fwd(w->ln, w->atty, W(BLK_OUT_W), W(BLK_OUT_B), N, D, D);
    op_add_inplace(w->x, w->ln, (size_t)N * D);
    op_layernorm_fwd(w->ln, w->mean, w->rstd, w->x, W(BLK_LN2_W), W(BLK_LN2_B), N, D, a->ln_eps);
    op_linear_fwd(w->fc, w->ln, W(BLK_FC_W), W(BLK_FC_B), N, D, F);
    op_act_fwd(w->fca, NULL, w->fc, (size_t)N * F, a->act);
    op_linear_fwd(w->ln, w->fca, W(BLK_PROJ_W), W(BLK_PROJ_B), N, F, D);
    op_add_inplace(w->x, w->ln, (size_t)N * D);
#undef W
}

TdStatus text_forward(const float *params, TextWork *w, const int *ids, int B, int T,
                      float *embeds)
{
    const TextArch *a = &w->arch;
    const ParamTable *tb = w->table;
    const int D = a->width;
    if (B <= 0 || B > w->max_batch || T <= 0 || T > a->ctx)
        return td_fail(TD_ERR_ARG, "text tower: batch %d x %d tokens outside [1, %d] x [1, %d]",
                       B, T, w->max_batch, a->ctx);
    const float *tok = params_at_c(tb, params, TEXT_TOKEN_EMB);
    const float *pos = params_at_c(tb, params, TEXT_POS_EMB);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int id = ids[(size_t)b * T + t];
            if (id < 0 || id >= a->vocab)
                return td_fail(TD_ERR_ARG, "text tower: token id %d (row %d, position %d) "
                                           "outside the vocabulary [0, %d)",
                               id, b, t, a->vocab);
            float *x = w->x + ((size_t)b * T + t) * D;
            for (int c = 0; c < D; c++)
                x[c] = tok[(size_t)id * D + c] + pos[(size_t)t * D + c];
        }
    for (int l = 0; l < a->layers; l++)
        text_block(w, params, l, B, T);
    /* ln_final is per token: apply it only to the pooled ones. */
    for (int b = 0; b < B; b++) {
        int p = text_pool_position(a, ids + (size_t)b * T, T);
        memcpy(w->ln + (size_t)b * D, w->x + ((size_t)b * T + p) * D, (size_t)D * sizeof(float));
    }
    op_layernorm_fwd(w->pooled, w->mean, w->rstd, w->ln, params_at_c(tb, params, text_ln_final_w(a)),
                     params_at_c(tb, params, text_ln_final_b(a)), B, D, a->ln_eps);
    op_matmul_fwd(embeds, w->pooled, params_at_c(tb, params, text_proj(a)), B, D, a->out_dim);
    return TD_OK;
}

void text_params_init_random(const TextArch *a, const ParamTable *t, float *buf,
                             unsigned long long seed)
{
    const double D = a->width, L = a->layers;
    const double attn_std = pow(D, -0.5), proj_std = pow(D, -0.5) * pow(2.0 * L, -0.5);
    const double fc_std = pow(2.0 * D, -0.5);
    memset(buf, 0, t->total * sizeof(float));
    for (int i = 0; i < t->count; i++) {
        const ParamInfo *p = &t->info[i];
        float *x = buf + p->offset;
        TdRng r;
        rng_seed(&r, rng_derive(seed, (uint64_t)i, 0x74657874ULL)); /* "text" */
        int field = p->block >= 0 ? (i - TEXT_BLOCKS_BEGIN) % PARAM_PER_BLOCK : -1;
        double std = i == TEXT_TOKEN_EMB ? 0.02
                     : i == TEXT_POS_EMB ? 0.01
                     : i == text_proj(a) || field == BLK_QKV_W ? attn_std
                     : field == BLK_OUT_W || field == BLK_PROJ_W ? proj_std
                     : field == BLK_FC_W ? fc_std
                                         : 0.0;
        if (std > 0.0)
            params_fill_normal(&r, x, p->numel, std);
        else if (i == text_ln_final_w(a) || field == BLK_LN1_W || field == BLK_LN2_W)
            for (size_t k = 0; k < p->numel; k++)
                x[k] = 1.0f;
    }
}
