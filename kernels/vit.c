/* vit: the CLIP ViT encoder as a sequence of ops (see vit.h).
 *
 * Table order equals forward order (conv1, class, pos, ln_pre, then per block
 * ln_1, in_proj, out_proj, ln_2, c_fc, c_proj, then ln_post, proj). So "is any
 * trainable tensor below this op?" is one comparison with the lowest trainable
 * index: the op whose first tensor has index i needs its input gradient iff
 * lowest < i. The same holds for tangents in forward mode. */
#include "vit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "parallel.h"

/* Sizes of one architecture at batch B; N = B*T rows of tokens. */
typedef struct {
    int D, L, NH, P, S, F, E, CH, T, GG, K, B, N, NP;
} Dims;

static Dims dims_of(const VitArch *a, int B)
{
    Dims d;
    d.D = a->width;
    d.L = a->layers;
    d.NH = a->heads;
    d.P = a->patch;
    d.S = a->image;
    d.F = a->mlp;
    d.E = a->out_dim;
    d.CH = a->channels;
    d.T = vit_arch_tokens(a);
    d.GG = d.T - 1;
    d.K = d.CH * d.P * d.P;
    d.B = B;
    d.N = B * d.T;
    d.NP = B * d.GG;
    return d;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

enum { CLS_ROWS_MIN = 64 };

int vit_cls_rows(int B) { return B > CLS_ROWS_MIN ? B : CLS_ROWS_MIN; }

TdStatus vit_work_alloc(VitWork *w, const VitArch *a, const ParamTable *table, int max_batch)
{
    memset(w, 0, sizeof *w);
    TD_TRY(vit_arch_validate(a));
    if (max_batch <= 0)
        return td_fail(TD_ERR_ARG, "vit: batch size must be positive (got %d)", max_batch);
    if (table->count != params_proj(a) + 1)
        return td_fail(TD_ERR_INTERNAL, "vit: parameter table has %d tensors, architecture %d",
                       table->count, params_proj(a) + 1);
    Dims d = dims_of(a, max_batch);
    const size_t N = (size_t)d.N, L = (size_t)d.L, D = (size_t)d.D, F = (size_t)d.F;
    const size_t B = (size_t)max_batch, T = (size_t)d.T, R = (size_t)vit_cls_rows(max_batch);
    const size_t NR = max_sz(N, R); /* scratch rows: every token, or the class-token rows */
    VitActs *s = &w->acts;
    VitScratch *c = &w->scr;
    struct {
        float **p;
        size_t n;
    } parts[] = {
        {&s->cols, (size_t)d.NP * d.K},
        {&s->emb, N * D},
        {&s->lnpre_mean, N},
        {&s->lnpre_rstd, N},
        {&s->res, (L + 1) * N * D},
        {&s->ln1, L * N * D},
        {&s->ln1_mean, L * N},
        {&s->ln1_rstd, L * N},
        {&s->qkv, L * N * 3 * D},
        {&s->att, L * B * d.NH * T * T},
        {&s->atty, L * N * D},
        {&s->mid, L * N * D},
        {&s->ln2, L * N * D},
        {&s->ln2_mean, L * N},
        {&s->ln2_rstd, L * N},
        {&s->dact, L * N * F},
        {&s->fca, L * N * F},
        {&s->cls, R * D},
        {&s->cls_x, R * D},
        {&s->cls_atty, R * D},
        {&s->cls_mid, R * D},
        {&s->cls_ln2, R * D},
        {&s->cls_ln2_mean, R},
        {&s->cls_ln2_rstd, R},
        {&s->cls_dact, R * F},
        {&s->cls_fca, R * F},
        {&s->lnpost_mean, B},
        {&s->lnpost_rstd, B},
        {&s->pooled, B * D},
        {&c->r, N * D},
        {&c->a, NR * max_sz(F, 3 * D)},
        {&c->b, NR * F},
        {&c->c, NR * D}, /* also the patches (B*G*G, D) in forward */
        {&c->d, N * D},
        {&c->att, op_attention_scratch(d.T, d.D)},
        {&c->bd1, R * D},
        {&c->bd2, R * D},
        {&c->be, B * (size_t)d.E},
    };
    const size_t nparts = sizeof parts / sizeof parts[0];
    size_t total = 0;
    for (size_t i = 0; i < nparts; i++)
        total += (parts[i].n + 15) / 16 * 16; /* 64-byte aligned pieces */
    w->memory = td_aligned_calloc(total * sizeof(float));
    w->mlp_kept = calloc((size_t)d.L, 1);
    if (!w->memory || !w->mlp_kept) {
        vit_work_free(w);
        return TD_ERR_NOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < nparts; i++) {
        *parts[i].p = w->memory + off;
        off += (parts[i].n + 15) / 16 * 16;
    }
    w->floats = total;
    w->arch = *a;
    w->table = table;
    w->max_batch = max_batch;
    return TD_OK;
}

void vit_work_free(VitWork *w)
{
    if (w->lowp)
        mm_bf16_free(w->lowp);
    free(w->lowp);
    td_free(w->memory);
    free(w->mlp_kept);
    memset(w, 0, sizeof *w);
}

/* Per-block slices of the saved activations. */
typedef struct {
    float *x, *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *mid, *ln2, *ln2_mean, *ln2_rstd,
        *dact, *fca, *out;
} BlockActs;

static BlockActs block_acts(const VitWork *w, int l)
{
    const Dims d = dims_of(&w->arch, w->max_batch);
    const size_t N = (size_t)d.N, D = (size_t)d.D, F = (size_t)d.F, ll = (size_t)l;
    const VitActs *s = &w->acts;
    BlockActs b;
    b.x = s->res + ll * N * D;
    b.out = s->res + (ll + 1) * N * D;
    b.ln1 = s->ln1 + ll * N * D;
    b.ln1_mean = s->ln1_mean + ll * N;
    b.ln1_rstd = s->ln1_rstd + ll * N;
    b.qkv = s->qkv + ll * N * 3 * D;
    b.att = s->att + ll * (size_t)w->max_batch * d.NH * d.T * d.T;
    b.atty = s->atty + ll * N * D;
    b.mid = s->mid + ll * N * D;
    b.ln2 = s->ln2 + ll * N * D;
    b.ln2_mean = s->ln2_mean + ll * N;
    b.ln2_rstd = s->ln2_rstd + ll * N;
    b.dact = s->dact + ll * N * F;
    b.fca = s->fca + ll * N * F;
    return b;
}

/* The class-token-only last block's slices: R rows each (x, atty, mid, ln2,
 * dact, fca; out is cls); the attention core's (ln1, qkv, att) stay the
 * block's own, over every token. */
static BlockActs block_acts_cls(const VitWork *w)
{
    const VitActs *s = &w->acts;
    BlockActs b = block_acts(w, w->arch.layers - 1);
    b.x = s->cls_x;
    b.atty = s->cls_atty;
    b.mid = s->cls_mid;
    b.ln2 = s->cls_ln2;
    b.ln2_mean = s->cls_ln2_mean;
    b.ln2_rstd = s->cls_ln2_rstd;
    b.dact = s->cls_dact;
    b.fca = s->cls_fca;
    b.out = s->cls;
    return b;
}

/* Rows [B, R) of x (R, D) = 0: the padding of the class-token rows. */
static void zero_pad_rows(float *x, int B, int R, int D)
{
    if (R > B)
        memset(x + (size_t)B * D, 0, (size_t)(R - B) * D * sizeof(float));
}

/* ------------------------------------------------------------ bf16 copies */

int vit_bf16_active(const VitWork *w) { return w->bf16 && w->no_grad && mm_bf16_native(); }

TdStatus vit_bf16_bind(VitWork *w, const float *params)
{
    const Dims d = dims_of(&w->arch, w->max_batch);
    const ParamTable *t = w->table;
    if (!w->lowp) {
        /* the largest A operand of a forward product: the patches, or the MLP's
         * input to c_proj over every token (or the class-token rows) */
        const size_t rows = max_sz((size_t)d.N, (size_t)vit_cls_rows(w->max_batch));
        const size_t a_cap = max_sz((size_t)d.NP * d.K, rows * max_sz((size_t)d.F, d.D));
        w->lowp = calloc(1, sizeof *w->lowp);
        if (!w->lowp)
            return TD_ERR_NOMEM;
        TdStatus s = mm_bf16_alloc(w->lowp, t->total, a_cap);
        if (s != TD_OK) {
            free(w->lowp);
            w->lowp = NULL;
            return s;
        }
    }
    enum { FIELDS = 4 };
    static const int field[FIELDS] = {BLK_QKV_W, BLK_OUT_W, BLK_FC_W, BLK_PROJ_W};
    const int count = 1 + FIELDS * d.L;
    size_t *off = malloc((size_t)count * 2 * sizeof *off);
    if (!off)
        return TD_ERR_NOMEM;
    size_t *len = off + count;
    off[0] = t->info[PARAM_CONV1_W].offset;
    len[0] = t->info[PARAM_CONV1_W].numel;
    for (int l = 0; l < d.L; l++)
        for (int f = 0; f < FIELDS; f++) {
            const ParamInfo *p = &t->info[params_block_index(l, field[f])];
            off[1 + l * FIELDS + f] = p->offset;
            len[1 + l * FIELDS + f] = p->numel;
        }
    mm_bf16_bind(w->lowp, params, off, len, count);
    free(off);
    return TD_OK;
}

/* The bf16 copy a forward of params runs on, or NULL (fp32). Aborts when the
 * forward is to run in bf16 and params are not the bound ones. */
static MmBf16 *forward_mx(const VitWork *w, const float *params)
{
    if (!vit_bf16_active(w))
        return NULL;
    if (!w->lowp || w->lowp->src != params) {
        fprintf(stderr, "vit: a bf16 forward of parameters that were not bound (call "
                        "vit_bf16_bind with them first)\n");
        abort();
    }
    return w->lowp;
}

/* ------------------------------------------------------------------ forward */

/* Block l after its attention core, on `rows` rows of the slices a: out_proj
 * of atty plus the residual x into mid, ln_2, the MLP, and its residual into
 * out; when next (block l + 1's slices) is not NULL, that block's ln_1 of out. */
static void block_fwd_upper(const float *params, const VitWork *w, int l, int rows,
                            const BlockActs *a, const BlockActs *next, MmBf16 *mx)
{
    const ParamTable *t = w->table;
    const int D = w->arch.width, F = w->arch.mlp, i0 = params_block_index(l, 0);
    const float eps = w->arch.ln_eps;
#define W(i) params_at_c(t, params, (i))
    op_linear_res_ln_fwd_mx(a->mid, a->ln2, a->ln2_mean, a->ln2_rstd, a->atty,
                            W(i0 + BLK_OUT_W), W(i0 + BLK_OUT_B), a->x, W(i0 + BLK_LN2_W),
                            W(i0 + BLK_LN2_B), eps, rows, D, D, mx);
    op_linear_act_fwd_mx(a->fca, w->no_grad ? NULL : a->dact, a->ln2, W(i0 + BLK_FC_W),
                         W(i0 + BLK_FC_B), rows, D, F, w->arch.act, mx);
    const int n0 = params_block_index(next ? l + 1 : l, 0);
    op_linear_res_ln_fwd_mx(a->out, next ? next->ln1 : NULL, next ? next->ln1_mean : NULL,
                            next ? next->ln1_rstd : NULL, a->fca, W(i0 + BLK_PROJ_W),
                            W(i0 + BLK_PROJ_B), a->mid, W(n0 + BLK_LN1_W), W(n0 + BLK_LN1_B),
                            eps, rows, F, D, mx);
#undef W
}

/* vit_forward, its products in bf16 when mx is not NULL */
static void forward(const float *params, VitWork *w, const float *pixels, int B, float *embeds,
                    MmBf16 *mx)
{
    const ParamTable *t = w->table;
    const Dims d = dims_of(&w->arch, B);
    const float eps = w->arch.ln_eps;
    VitActs *s = &w->acts;
    w->last_cls_only = !w->all_tokens;
#define W(i) params_at_c(t, params, (i))
    float *patches = w->scr.c; /* (B*G*G, D), only until embed */
    op_im2col(s->cols, pixels, B, d.CH, d.S, d.P);
    op_linear_fwd_mx(patches, s->cols, W(PARAM_CONV1_W), NULL, d.NP, d.K, d.D, mx);
    op_embed_fwd(s->emb, patches, W(PARAM_CLASS_EMB), W(PARAM_POS_EMB), B, d.T, d.D);
    op_layernorm_fwd(s->res, s->lnpre_mean, s->lnpre_rstd, s->emb, W(PARAM_LN_PRE_W),
                     W(PARAM_LN_PRE_B), d.N, d.D, eps);
    /* ln_1 of block 0 here; every later LayerNorm is fused into the product
     * before it, with the residual add (op_linear_res_ln_fwd) */
    op_layernorm_fwd(block_acts(w, 0).ln1, block_acts(w, 0).ln1_mean, block_acts(w, 0).ln1_rstd,
                     s->res, W(PARAM_BLOCKS_BEGIN + BLK_LN1_W), W(PARAM_BLOCKS_BEGIN + BLK_LN1_B),
                     d.N, d.D, eps);
    for (int l = 0; l < d.L; l++) {
        BlockActs a = block_acts(w, l);
        const int i0 = params_block_index(l, 0);
        const unsigned char *tr = w->trainable;
        w->mlp_kept[l] = !w->no_grad && (!tr || tr[i0 + BLK_FC_W] || tr[i0 + BLK_PROJ_W]);
        if (!w->mlp_kept[l]) { /* nothing reads them after this block: scratch (stays in cache) */
            a.ln2 = w->scr.c;
            a.fca = w->scr.b;
        }
        op_linear_fwd_mx(a.qkv, a.ln1, W(i0 + BLK_QKV_W), W(i0 + BLK_QKV_B), d.N, d.D, 3 * d.D,
                         mx);
        if (l + 1 < d.L) {
            const BlockActs n = block_acts(w, l + 1);
            op_attention_fwd(a.atty, a.att, a.qkv, B, d.T, d.D, d.NH);
            block_fwd_upper(params, w, l, d.N, &a, &n, mx);
        } else if (!w->last_cls_only) {
            op_attention_fwd(a.atty, a.att, a.qkv, B, d.T, d.D, d.NH);
            block_fwd_upper(params, w, l, d.N, &a, NULL, mx);
            op_cls_gather(s->cls, a.out, B, d.T, d.D);
        } else {
            /* the embeddings depend on the last block's class tokens only: its
             * attention takes their queries, and the rest of the block runs on
             * those rows and writes cls itself */
            const BlockActs ca = block_acts_cls(w);
            const int R = vit_cls_rows(B);
            op_attention_cls_fwd(ca.atty, a.att, a.qkv, B, d.T, d.D, d.NH);
            op_cls_gather(ca.x, a.x, B, d.T, d.D);
            zero_pad_rows(ca.atty, B, R, d.D);
            zero_pad_rows(ca.x, B, R, d.D);
            block_fwd_upper(params, w, l, R, &ca, NULL, mx);
        }
    }
    const int ipost = params_ln_post_w(&w->arch), iproj = params_proj(&w->arch);
    op_layernorm_fwd(s->pooled, s->lnpost_mean, s->lnpost_rstd, s->cls, W(ipost), W(ipost + 1),
                     B, d.D, eps);
    op_matmul_fwd(embeds, s->pooled, W(iproj), B, d.D, d.E);
#undef W
    w->B = B;
    w->params = params;
}

void vit_forward(const float *params, VitWork *w, const float *pixels, int B, float *embeds)
{
    forward(params, w, pixels, B, embeds, forward_mx(w, params));
}

const float *vit_hidden(const VitWork *w, int level)
{
    const Dims d = dims_of(&w->arch, w->max_batch);
    if (level == d.L && w->last_cls_only)
        return NULL;
    return w->acts.res + (size_t)level * d.N * d.D;
}

const float *vit_pooled(const VitWork *w) { return w->acts.pooled; }

/* ----------------------------------------------------------------- backward */

static float *zeroed(float *p, size_t n)
{
    par_zero(p, n);
    return p;
}

/* What one backward pass restricts itself to. */
typedef struct {
    const ParamTable *t;
    const float *params;
    float *grads;
    const unsigned char *trainable;
    int lowest; /* index of the lowest trainable tensor */
} Bwd;

#define W(i) params_at_c(k->t, k->params, (i))
#define G(i) ((!k->trainable || k->trainable[i]) ? params_at(k->t, k->grads, (i)) : NULL)
#define NEED(i) (k->lowest < (i))

/* The contract of VitWork.trainable: a block whose MLP inputs the forward did
 * not keep must not be asked for its MLP weights' gradients or tangents (the
 * class-token-only last block always keeps its own, cls_fca and cls_ln2). */
static void check_mlp_kept(const VitWork *w, int l, int wanted)
{
    if (wanted && !w->mlp_kept[l]) {
        fprintf(stderr, "vit: block %d's MLP weights are differentiated but the forward did "
                        "not keep their inputs (set VitWork.trainable before vit_forward)\n", l);
        abort();
    }
}

/* Block l's MLP and out_proj backward on `rows` rows (every token, or the
 * class tokens of a class-token-only last block): dres = dL/d(block output)
 * on entry, dL/d(mid) on return; datty = dL/d(out_proj's input a->atty).
 * Returns 0 when nothing below needs a gradient. */
static int block_bwd_upper(const Bwd *k, VitWork *w, int l, int rows, float *dres, float *datty,
                           const BlockActs *a)
{
    const int D = w->arch.width, F = w->arch.mlp, i0 = params_block_index(l, 0);
    const VitScratch *c = &w->scr;
    /* Input gradients are written (not added) by the fused ops, so no buffer
     * is zeroed. */
    const int ip = i0 + BLK_PROJ_W, ifc = i0 + BLK_FC_W, il2 = i0 + BLK_LN2_W;
    check_mlp_kept(w, l, a->fca != w->acts.cls_fca && (G(ip) || G(ifc)));
    if (!NEED(ip)) {
        op_linear_bwd(NULL, G(ip), G(ip + 1), dres, a->fca, W(ip), rows, F, D);
        return 0;
    }
    float *dfc = c->b;
    op_linear_bwd_act(dfc, dres, W(ip), a->dact, rows, F, D);
    op_linear_bwd(NULL, G(ip), G(ip + 1), dres, a->fca, W(ip), rows, F, D);
    if (!NEED(ifc)) {
        op_linear_bwd(NULL, G(ifc), G(ifc + 1), dfc, a->ln2, W(ifc), rows, D, F);
        return 0;
    }
    float *dln2 = c->c; /* dres += ln_2's input gradient, fused */
    op_linear_bwd_ln(NEED(il2) ? dres : NULL, dln2, dfc, W(ifc), a->mid, W(il2), a->ln2_mean,
                     a->ln2_rstd, rows, D, F);
    op_linear_bwd(NULL, G(ifc), G(ifc + 1), dfc, a->ln2, W(ifc), rows, D, F);
    op_layernorm_bwd(NULL, G(il2), G(il2 + 1), dln2, a->mid, W(il2), a->ln2_mean, a->ln2_rstd,
                     rows, D);
    if (!NEED(il2))
        return 0;
    const int io = i0 + BLK_OUT_W;
    if (!NEED(io)) {
        op_linear_bwd(NULL, G(io), G(io + 1), dres, a->atty, W(io), rows, D, D);
        return 0;
    }
    op_linear_din(datty, dres, W(io), rows, D, D);
    op_linear_bwd(NULL, G(io), G(io + 1), dres, a->atty, W(io), rows, D, D);
    return 1;
}

/* Block l's in_proj and ln_1 backward on every token: dqkv = dL/d(qkv) in;
 * dres = dL/d(mid) on entry, dL/d(block input) on return. Returns 0 when
 * nothing below needs a gradient. */
static int block_bwd_inproj(const Bwd *k, VitWork *w, int l, float *dres, const float *dqkv,
                            const BlockActs *a)
{
    const Dims d = dims_of(&w->arch, w->B);
    const int i0 = params_block_index(l, 0), iq = i0 + BLK_QKV_W, il1 = i0 + BLK_LN1_W;
    const VitScratch *c = &w->scr;
    if (!NEED(iq)) {
        op_linear_bwd(NULL, G(iq), G(iq + 1), dqkv, a->ln1, W(iq), d.N, d.D, 3 * d.D);
        return 0;
    }
    float *dln1 = c->c; /* dres += ln_1's input gradient, fused */
    op_linear_bwd_ln(NEED(il1) ? dres : NULL, dln1, dqkv, W(iq), a->x, W(il1), a->ln1_mean,
                     a->ln1_rstd, d.N, d.D, 3 * d.D);
    op_linear_bwd(NULL, G(iq), G(iq + 1), dqkv, a->ln1, W(iq), d.N, d.D, 3 * d.D);
    op_layernorm_bwd(NULL, G(il1), G(il1 + 1), dln1, a->x, W(il1), a->ln1_mean, a->ln1_rstd,
                     d.N, d.D);
    return NEED(il1);
}

void vit_backward(VitWork *w, const float *dembeds, float *grads, const unsigned char *trainable)
{
    const ParamTable *t = w->table;
    const Dims d = dims_of(&w->arch, w->B);
    const VitActs *s = &w->acts;
    const VitScratch *c = &w->scr;
    const size_t ND = (size_t)d.N * d.D;
    Bwd kb = {t, w->params, grads, trainable, 0};
    const Bwd *k = &kb;
    while (trainable && kb.lowest < t->count && !trainable[kb.lowest])
        kb.lowest++;
    if (kb.lowest == t->count)
        return;
    const int ipost = params_ln_post_w(&w->arch), iproj = params_proj(&w->arch);
    float *dpooled = NEED(iproj) ? zeroed(c->bd1, (size_t)d.B * d.D) : NULL;
    op_matmul_bwd(dpooled, G(iproj), dembeds, s->pooled, W(iproj), d.B, d.D, d.E);
    if (!dpooled)
        return;
    float *dcls = NEED(ipost) ? zeroed(c->bd2, (size_t)vit_cls_rows(d.B) * d.D) : NULL;
    op_layernorm_bwd(dcls, G(ipost), G(ipost + 1), dpooled, s->cls, W(ipost), s->lnpost_mean,
                     s->lnpost_rstd, d.B, d.D);
    if (!dcls)
        return;
    float *dres = c->r; /* dL/d(residual stream), walking down */
    float *datty = c->d;
    int l = d.L - 1;
    if (w->last_cls_only) {
        /* the last block on its B class-token rows, then its attention core on
         * every token, whose other rows get no gradient from above */
        const BlockActs a = block_acts(w, l), ca = block_acts_cls(w);
        float *datty_cls = c->bd1; /* dpooled is spent */
        if (!block_bwd_upper(k, w, l, vit_cls_rows(d.B), dcls, datty_cls, &ca))
            return;
        op_cls_scatter_add(zeroed(dres, ND), dcls, d.B, d.T, d.D);
        op_attention_cls_bwd_set(c->a, datty_cls, a.qkv, a.att, c->att, d.B, d.T, d.D, d.NH);
        if (!block_bwd_inproj(k, w, l, dres, c->a, &a))
            return;
        l--;
    } else {
        op_cls_scatter_add(zeroed(dres, ND), dcls, d.B, d.T, d.D);
    }
    for (; l >= 0; l--) {
        const BlockActs a = block_acts(w, l);
        if (!block_bwd_upper(k, w, l, d.N, dres, datty, &a))
            return;
        op_attention_bwd_set(c->a, datty, a.qkv, a.att, c->att, d.B, d.T, d.D, d.NH);
        if (!block_bwd_inproj(k, w, l, dres, c->a, &a))
            return;
    }
    /* embeddings: dres = dL/d(ln_pre output) */
    float *demb = NEED(PARAM_LN_PRE_W) ? zeroed(c->c, ND) : NULL;
    op_layernorm_bwd(demb, G(PARAM_LN_PRE_W), G(PARAM_LN_PRE_B), dres, s->emb,
                     W(PARAM_LN_PRE_W), s->lnpre_mean, s->lnpre_rstd, d.N, d.D);
    if (!demb)
        return;
    float *dconv = G(PARAM_CONV1_W);
    float *dpatches = dconv ? zeroed(c->d, (size_t)d.NP * d.D) : NULL;
    op_embed_bwd(dpatches, G(PARAM_CLASS_EMB), G(PARAM_POS_EMB), demb, d.B, d.T, d.D);
    if (dconv)
        op_linear_bwd(NULL, dconv, NULL, dpatches, s->cols, W(PARAM_CONV1_W), d.NP, d.K, d.D);
}
#undef W
#undef G
#undef NEED

/* --------------------------------------------------------------------- jvp */

/* Tangent of block l after its attention core, on `rows` rows of the slices
 * a: tatty (NULL: zero) is the tangent of out_proj's input a->atty, tr the
 * residual stream's, meaningful when live. Returns whether tr is live
 * afterwards. */
static int block_jvp_upper(const float *params, VitWork *w, const float *tangent,
                           const unsigned char *mask, int l, int rows, const float *tatty,
                           float *tr, int live, const BlockActs *a)
{
    const ParamTable *t = w->table;
    const VitScratch *c = &w->scr;
    const int D = w->arch.width, F = w->arch.mlp, i0 = params_block_index(l, 0);
    const size_t RD = (size_t)rows * D, RF = (size_t)rows * F;
#define W(i) params_at_c(t, params, (i))
#define TG(i) ((!mask || mask[i]) ? params_at_c(t, tangent, (i)) : NULL)
    const int io = i0 + BLK_OUT_W;
    if (tatty || TG(io) || TG(io + 1)) {
        float *dst = live ? c->c : tr;
        op_linear_jvp(dst, a->atty, tatty, W(io), TG(io), TG(io + 1), rows, D, D);
        if (live)
            op_add_inplace(tr, dst, RD);
        live = 1;
    }
    /* MLP sub-layer */
    const int il2 = i0 + BLK_LN2_W, ifc = i0 + BLK_FC_W, ip = i0 + BLK_PROJ_W;
    check_mlp_kept(w, l, a->fca != w->acts.cls_fca && (TG(ifc) || TG(ip)));
    float *tln2 = NULL, *tfca = NULL;
    if (live || TG(il2) || TG(il2 + 1)) {
        tln2 = c->c;
        op_layernorm_jvp(tln2, a->mid, live ? tr : NULL, W(il2), TG(il2), TG(il2 + 1),
                         a->ln2_mean, a->ln2_rstd, rows, D);
    }
    if (tln2 || TG(ifc) || TG(ifc + 1)) {
        float *tfc = c->b;
        op_linear_jvp(tfc, a->ln2, tln2, W(ifc), TG(ifc), TG(ifc + 1), rows, D, F);
        tfca = c->a;
        op_act_jvp(tfca, a->dact, tfc, RF);
    }
    if (tfca || TG(ip) || TG(ip + 1)) {
        float *dst = live ? c->c : tr;
        op_linear_jvp(dst, a->fca, tfca, W(ip), TG(ip), TG(ip + 1), rows, F, D);
        if (live)
            op_add_inplace(tr, dst, RD);
        live = 1;
    }
    return live;
#undef W
#undef TG
}

void vit_jvp(const float *params, VitWork *w, const float *tangent, const unsigned char *mask,
             int B, float *tembeds)
{
    const ParamTable *t = w->table;
    const Dims d = dims_of(&w->arch, B);
    const VitActs *s = &w->acts;
    const VitScratch *c = &w->scr;
#define W(i) params_at_c(t, params, (i))
#define TG(i) ((!mask || mask[i]) ? params_at_c(t, tangent, (i)) : NULL)
    /* tr: tangent of the residual stream, meaningful once live (zero before) */
    float *tr = c->r;
    int live = 0;
    if (TG(PARAM_CONV1_W) || TG(PARAM_CLASS_EMB) || TG(PARAM_POS_EMB) || TG(PARAM_LN_PRE_W) ||
        TG(PARAM_LN_PRE_B)) {
        float *tpatches = NULL, *temb = NULL;
        if (TG(PARAM_CONV1_W)) {
            tpatches = c->c;
            op_linear_jvp(tpatches, s->cols, NULL, W(PARAM_CONV1_W), TG(PARAM_CONV1_W), NULL,
                          d.NP, d.K, d.D);
        }
        if (tpatches || TG(PARAM_CLASS_EMB) || TG(PARAM_POS_EMB)) {
            temb = c->d;
            op_embed_jvp(temb, tpatches, TG(PARAM_CLASS_EMB), TG(PARAM_POS_EMB), B, d.T, d.D);
        }
        op_layernorm_jvp(tr, s->emb, temb, W(PARAM_LN_PRE_W), TG(PARAM_LN_PRE_W),
                         TG(PARAM_LN_PRE_B), s->lnpre_mean, s->lnpre_rstd, d.N, d.D);
        live = 1;
    }
    float *tcls = NULL;
    for (int l = 0; l < d.L; l++) {
        const BlockActs a = block_acts(w, l);
        const int i0 = params_block_index(l, 0);
        /* attention sub-layer */
        const int il1 = i0 + BLK_LN1_W, iq = i0 + BLK_QKV_W;
        float *tln = NULL, *tatty = NULL;
        if (live || TG(il1) || TG(il1 + 1)) {
            tln = c->c;
            op_layernorm_jvp(tln, a.x, live ? tr : NULL, W(il1), TG(il1), TG(il1 + 1),
                             a.ln1_mean, a.ln1_rstd, d.N, d.D);
        }
        const int cls_last = l + 1 == d.L && w->last_cls_only;
        const int R = vit_cls_rows(B);
        if (tln || TG(iq) || TG(iq + 1)) {
            float *tqkv = c->a;
            op_linear_jvp(tqkv, a.ln1, tln, W(iq), TG(iq), TG(iq + 1), d.N, d.D, 3 * d.D);
            if (!cls_last) {
                tatty = c->d;
                op_attention_jvp(tatty, a.qkv, tqkv, a.att, c->att, B, d.T, d.D, d.NH);
            } else { /* the class tokens' queries only */
                tatty = c->bd2;
                op_attention_cls_jvp(tatty, a.qkv, tqkv, a.att, c->att, B, d.T, d.D, d.NH);
                zero_pad_rows(tatty, B, R, d.D);
            }
        }
        if (!cls_last) {
            live = block_jvp_upper(params, w, tangent, mask, l, d.N, tatty, tr, live, &a);
            continue;
        }
        /* class-token-only last block: the rest on the class-token rows */
        const BlockActs ca = block_acts_cls(w);
        float *tr_cls = c->bd1;
        if (live) {
            op_cls_gather(tr_cls, tr, B, d.T, d.D);
            zero_pad_rows(tr_cls, B, R, d.D);
        }
        if (block_jvp_upper(params, w, tangent, mask, l, R, tatty, tr_cls, live, &ca))
            tcls = tr_cls;
        live = 0; /* tr is spent */
    }
    const int ipost = params_ln_post_w(&w->arch), iproj = params_proj(&w->arch);
    float *tpooled = NULL;
    if (live) {
        tcls = c->bd1;
        op_cls_gather(tcls, tr, B, d.T, d.D);
    }
    if (tcls || TG(ipost) || TG(ipost + 1)) {
        tpooled = c->bd2;
        op_layernorm_jvp(tpooled, s->cls, tcls, W(ipost), TG(ipost), TG(ipost + 1),
                         s->lnpost_mean, s->lnpost_rstd, B, d.D);
    }
    op_matmul_jvp(tembeds, s->pooled, tpooled, W(iproj), TG(iproj), B, d.D, d.E);
#undef W
#undef TG
}

void vit_ntk_forward(const float *theta0, VitWork *w, const float *delta,
                     const unsigned char *mask, const float *pixels, int B, float *out,
                     float *f0)
{
    float *base = f0 ? f0 : w->scr.be;
    w->trainable = mask; /* what the jvp here and the backward after it differentiate */
    /* an evaluation (no_grad) in bf16: the forward at theta0 in bf16, keeping
     * what the jvp below reads as a forward without no_grad does */
    MmBf16 *mx = forward_mx(w, theta0);
    const int no_grad = w->no_grad;
    w->no_grad = 0;
    forward(theta0, w, pixels, B, base, mx);
    w->no_grad = no_grad;
    vit_jvp(theta0, w, delta, mask, B, out);
    op_add_inplace(out, base, (size_t)B * w->arch.out_dim);
}

/* --------------------------------------------------------------------- head */

TdStatus vit_head_alloc(VitHead *h, int max_batch, int E, int max_classes)
{
    memset(h, 0, sizeof *h);
    if (max_batch <= 0 || E <= 0 || max_classes <= 0)
        return td_fail(TD_ERR_ARG, "head: batch %d, dim %d, classes %d must be positive",
                       max_batch, E, max_classes);
    const size_t B = (size_t)max_batch;
    TD_ALLOC(h->xn, B * E);
    TD_ALLOC(h->norm, B);
    TD_ALLOC(h->dlogits, B * max_classes);
    TD_ALLOC(h->dxn, B * E);
    TD_ALLOC(h->logits, B * max_classes);
    h->max_batch = max_batch;
    h->E = E;
    h->max_classes = max_classes;
    return TD_OK;
}

void vit_head_free(VitHead *h)
{
    free(h->xn);
    free(h->norm);
    free(h->dlogits);
    free(h->dxn);
    free(h->logits);
    memset(h, 0, sizeof *h);
}

/* The head's shared tail: dL/dembeds (and dL/dhead) from h->dlogits. */
static void head_backward(VitHead *h, const float *head, float scale, int B, int C,
                          float *dembeds, float *dhead)
{
    const int E = h->E;
    float *dxn = dembeds ? zeroed(h->dxn, (size_t)B * E) : NULL;
    op_logits_bwd(dxn, dhead, h->dlogits, h->xn, head, scale, B, E, C);
    if (dembeds)
        op_l2norm_bwd(zeroed(dembeds, (size_t)B * E), dxn, h->xn, h->norm, B, E);
}

double vit_head_loss(VitHead *h, const float *embeds, const float *head, float scale,
                     const int *labels, int B, int C, float *logits, float *dembeds,
                     float *dhead)
{
    const int E = h->E;
    float *lg = logits ? logits : h->logits;
    op_l2norm_fwd(h->xn, h->norm, embeds, B, E);
    op_logits_fwd(lg, h->xn, head, scale, B, E, C);
    const int need = dembeds || dhead;
    double loss = op_xent_fwd_bwd(need ? h->dlogits : NULL, lg, labels, B, C, h->smoothing);
    if (need)
        head_backward(h, head, scale, B, C, dembeds, dhead);
    return loss;
}

double vit_head_entropy(VitHead *h, const float *embeds, const float *head, float scale, int B,
                        int C, float *logits, float *dembeds)
{
    const int E = h->E;
    float *lg = logits ? logits : h->logits;
    op_l2norm_fwd(h->xn, h->norm, embeds, B, E);
    op_logits_fwd(lg, h->xn, head, scale, B, E, C);
    double loss = op_entropy_fwd_bwd(dembeds ? h->dlogits : NULL, lg, B, C);
    if (dembeds)
        head_backward(h, head, scale, B, C, dembeds, NULL);
    return loss;
}
