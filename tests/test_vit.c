/* test_vit: the whole encoder (kernels/vit) and the trainable sets.
 *
 * A small random CLIP tower (vit_tiny, batch 2, LayerNorm parameters and
 * biases perturbed away from 1 / 0 so that every term shows), a unit-norm
 * head and labels; loss = mean cross-entropy of scale * normalize(f(x)) @ head^T.
 * - backward against central differences of the loss (double accumulation)
 *   on a sample of entries of every tensor;
 * - jvp against central differences of the embeddings, and the identity
 *   <u, J v> = <J^T u, v> over the whole parameter vector;
 * - a trainable subset: exactly its tensors get gradients (equal to the
 *   full-mode ones), every other gradient buffer stays exactly zero;
 * - ntk: f_lin(theta0) == f(theta0) bit for bit, f_lin - f is second order in
 *   delta, and the ntk gradient (backward at theta0 with dL/df_lin) matches
 *   central differences of the linearised loss. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "params.h"
#include "rng.h"
#include "test_arrays.h"
#include "trainable.h"
#include "vit.h"

#define FD_EPS 2e-2f /* step of the fourth-order stencil */
#define FD_SAMPLES 12 /* entries per tensor checked by finite differences */
/* Float forward passes (loss ~ 10, logit scale 100): rounding of L, ~1e-6,
 * over the stencil's 12h/8 leaves a few 1e-4 of noise relative to the largest
 * sampled entry (measured worst 7e-4); a wrong term gives O(1). */
#define GRAD_TOL 3e-3
#define JVP_TOL 1e-3
#define DOT_TOL 1e-5

typedef struct {
    VitArch a;
    ParamTable t;
    float *params;
    VitWork w;
    VitHead h;
    int B, C, E;
    float scale;
    float *pixels, *head, *embeds, *dembeds;
    int *labels;
    TdRng rng;
} Net;

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static int net_setup(void **state)
{
    Net *n = calloc(1, sizeof *n);
    assert_non_null(n);
    assert_int_equal(vit_arch_by_name("vit_tiny", &n->a), TD_OK);
    assert_int_equal(params_table_build(&n->a, &n->t), TD_OK);
    n->B = 2;
    n->C = 5;
    n->E = n->a.out_dim;
    n->scale = 100.0f;
    rng_seed(&n->rng, 1234);
    n->params = fzeros(n->t.total);
    params_init_random(&n->a, &n->t, n->params, 7);
    for (int i = 0; i < n->t.count; i++) /* LayerNorm and biases away from 1 / 0 */
        if (n->t.info[i].ndim == 1)
            for (size_t j = 0; j < n->t.info[i].numel; j++)
                n->params[n->t.info[i].offset + j] += (float)(0.1 * rng_normal(&n->rng));
    assert_int_equal(vit_work_alloc(&n->w, &n->a, &n->t, n->B), TD_OK);
    assert_int_equal(vit_head_alloc(&n->h, n->B, n->E, n->C), TD_OK);
    const size_t npix = (size_t)n->B * n->a.channels * n->a.image * n->a.image;
    n->pixels = fzeros(npix);
    fill_randn(&n->rng, n->pixels, npix, 1.0);
    n->head = fzeros((size_t)n->C * n->E);
    fill_randn(&n->rng, n->head, (size_t)n->C * n->E, 1.0);
    for (int c = 0; c < n->C; c++) {
        float *r = n->head + (size_t)c * n->E;
        double nr = sqrt(dot_d(r, r, (size_t)n->E));
        for (int e = 0; e < n->E; e++)
            r[e] = (float)(r[e] / nr);
    }
    n->labels = calloc((size_t)n->B, sizeof(int));
    assert_non_null(n->labels);
    for (int b = 0; b < n->B; b++)
        n->labels[b] = (int)rng_below(&n->rng, (uint64_t)n->C);
    n->embeds = fzeros((size_t)n->B * n->E);
    n->dembeds = fzeros((size_t)n->B * n->E);
    *state = n;
    return 0;
}

static int net_teardown(void **state)
{
    Net *n = *state;
    free(n->params);
    free(n->pixels);
    free(n->head);
    free(n->labels);
    free(n->embeds);
    free(n->dembeds);
    vit_work_free(&n->w);
    vit_head_free(&n->h);
    params_table_free(&n->t);
    free(n);
    return 0;
}

static double net_loss(Net *n, const float *params)
{
    vit_forward(params, &n->w, n->pixels, n->B, n->embeds);
    return vit_head_loss(&n->h, n->embeds, n->head, n->scale, n->labels, n->B, n->C, NULL, NULL,
                         NULL);
}

/* grads (zeroed here) = dL/dparams for the tensors in mask (NULL: all). */
static double net_grads(Net *n, const float *params, float *grads, const unsigned char *mask)
{
    memset(grads, 0, n->t.total * sizeof(float));
    vit_forward(params, &n->w, n->pixels, n->B, n->embeds);
    double loss = vit_head_loss(&n->h, n->embeds, n->head, n->scale, n->labels, n->B, n->C,
                                NULL, n->dembeds, NULL);
    vit_backward(&n->w, n->dembeds, grads, mask);
    return loss;
}

/* max|a - b| / max|b| */
static double rel_err_d(const double *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs(a[i] - b[i]));
        den = fmax(den, fabs(b[i]));
    }
    return den > 0.0 ? num / den : num;
}

/* ------------------------------------------------------------- gradients */

/* dL/dx at *x by the fourth-order central stencil
 * (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h: its truncation error
 * (h^4) stays far below float rounding of L, so h can be large enough that
 * the rounding noise, divided by h, is small. */
static double fd_derivative(Net *n, float *x)
{
    const float x0 = *x;
    double l[4];
    const float steps[4] = {FD_EPS, -FD_EPS, 2 * FD_EPS, -2 * FD_EPS};
    for (int k = 0; k < 4; k++) {
        *x = x0 + steps[k];
        l[k] = net_loss(n, n->params);
    }
    *x = x0;
    return (8.0 * (l[0] - l[1]) - (l[2] - l[3])) / (12.0 * FD_EPS);
}

static void test_backward_fd(void **state)
{
    Net *n = *state;
    float *g = fzeros(n->t.total);
    net_grads(n, n->params, g, NULL);
    double worst = 0.0;
    for (int i = 0; i < n->t.count; i++) {
        const ParamInfo *p = &n->t.info[i];
        float *x = n->params + p->offset;
        double an[FD_SAMPLES], nu[FD_SAMPLES];
        int m = 0;
        for (; m < FD_SAMPLES && (size_t)m < p->numel; m++) {
            size_t j = m == 0 ? 0 : m == 1 ? p->numel - 1 : rng_below(&n->rng, p->numel);
            nu[m] = fd_derivative(n, x + j);
            an[m] = g[p->offset + j];
        }
        double e = rel_err_d(an, nu, (size_t)m);
        printf("  grad %-44s rel err %.2e\n", p->name, e);
        worst = fmax(worst, e);
        if (!(e <= GRAD_TOL))
            fail_msg("gradient of %s off by %.3e relative (tolerance %.1e)", p->name, e,
                     GRAD_TOL);
    }
    printf("  worst gradient error %.2e\n", worst);
    free(g);
}

/* ------------------------------------------------------------------- jvp */

static void test_jvp_fd_and_dot(void **state)
{
    Net *n = *state;
    const size_t BE = (size_t)n->B * n->E;
    float *v = fzeros(n->t.total), *tp = fzeros(n->t.total), *tm = fzeros(n->t.total);
    float *jv = fzeros(BE), *fp = fzeros(BE), *fm = fzeros(BE), *u = fzeros(BE);
    float *jtu = fzeros(n->t.total);
    /* a direction scaled like each tensor, so no tensor dominates */
    for (int i = 0; i < n->t.count; i++) {
        const ParamInfo *p = &n->t.info[i];
        double ss = dot_d(n->params + p->offset, n->params + p->offset, p->numel);
        double sd = ss > 0 ? sqrt(ss / p->numel) : 1.0;
        fill_randn(&n->rng, v + p->offset, p->numel, sd);
    }
    vit_forward(n->params, &n->w, n->pixels, n->B, n->embeds);
    vit_jvp(n->params, &n->w, v, NULL, n->B, jv);
    const float e = 1e-3f;
    for (size_t k = 0; k < n->t.total; k++) {
        tp[k] = n->params[k] + e * v[k];
        tm[k] = n->params[k] - e * v[k];
    }
    vit_forward(tp, &n->w, n->pixels, n->B, fp);
    vit_forward(tm, &n->w, n->pixels, n->B, fm);
    double *a = calloc(BE, sizeof(double)), *num = calloc(BE, sizeof(double));
    assert_non_null(a);
    assert_non_null(num);
    for (size_t k = 0; k < BE; k++) {
        a[k] = jv[k];
        num[k] = ((double)fp[k] - fm[k]) / (2.0 * e);
    }
    double ej = rel_err_d(a, num, BE);
    printf("  jvp vs central differences: rel err %.2e\n", ej);
    if (!(ej <= JVP_TOL))
        fail_msg("jvp off by %.3e relative (tolerance %.1e)", ej, JVP_TOL);

    /* <u, J v> = <J^T u, v>: backward at the same point with dembeds = u */
    fill_randn(&n->rng, u, BE, 1.0);
    vit_forward(n->params, &n->w, n->pixels, n->B, n->embeds);
    vit_jvp(n->params, &n->w, v, NULL, n->B, jv);
    vit_backward(&n->w, u, jtu, NULL);
    double lhs = dot_d(u, jv, BE), rhs = dot_d(jtu, v, n->t.total);
    double ed = fabs(lhs - rhs) / fmax(fabs(lhs), fabs(rhs));
    printf("  <u,Jv> = %.9g, <J^T u,v> = %.9g, rel diff %.2e\n", lhs, rhs, ed);
    if (!(ed <= DOT_TOL))
        fail_msg("<u,Jv> and <J^T u,v> differ by %.3e relative", ed);

    /* a masked-out tangent is never read: NaN there changes nothing */
    unsigned char *mask = calloc((size_t)n->t.count, 1);
    assert_non_null(mask);
    assert_int_equal(trainable_mask(&n->t, "attn_bias", mask), TD_OK);
    memset(tp, 0, n->t.total * sizeof(float));
    for (int i = 0; i < n->t.count; i++) {
        const ParamInfo *p = &n->t.info[i];
        for (size_t j = 0; j < p->numel; j++) {
            tm[p->offset + j] = mask[i] ? v[p->offset + j] : NAN;
            tp[p->offset + j] = mask[i] ? v[p->offset + j] : 0.0f;
        }
    }
    vit_jvp(n->params, &n->w, tp, NULL, n->B, fp);
    vit_jvp(n->params, &n->w, tm, mask, n->B, fm);
    assert_memory_equal(fp, fm, BE * sizeof(float));
    free(mask);
    free(a);
    free(num);
    free(v);
    free(tp);
    free(tm);
    free(jv);
    free(fp);
    free(fm);
    free(u);
    free(jtu);
}

/* ------------------------------------------------------------ trainable */

static int all_zero(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f || signbit(x[i]))
            return 0;
    return 1;
}

/* The gradients of a subset: nonzero on its tensors and equal to the full
 * backward's there; every other float of the buffer (padding too) exactly 0. */
static void check_subset(Net *n, const char *spec, const float *full)
{
    unsigned char *mask = calloc((size_t)n->t.count, 1);
    float *g = fzeros(n->t.total);
    assert_non_null(mask);
    assert_int_equal(trainable_mask(&n->t, spec, mask), TD_OK);
    net_grads(n, n->params, g, mask);
    size_t pos = 0;
    for (int i = 0; i < n->t.count; i++) {
        const ParamInfo *p = &n->t.info[i];
        if (!all_zero(g + pos, p->offset - pos))
            fail_msg("%s: padding before %s received a gradient", spec, p->name);
        const float *gi = g + p->offset, *fi = full + p->offset;
        if (!mask[i]) {
            if (!all_zero(gi, p->numel))
                fail_msg("%s: frozen tensor %s received a gradient", spec, p->name);
        } else {
            if (all_zero(gi, p->numel))
                fail_msg("%s: trainable tensor %s has no gradient", spec, p->name);
            double num = 0.0, den = 0.0;
            for (size_t j = 0; j < p->numel; j++) {
                num = fmax(num, fabs((double)gi[j] - fi[j]));
                den = fmax(den, fabs((double)fi[j]));
            }
            if (num > 1e-6 * den)
                fail_msg("%s: gradient of %s differs from the full backward by %.3e", spec,
                         p->name, num / den);
        }
        pos = p->offset + p->numel;
    }
    assert_true(all_zero(g + pos, n->t.total - pos));
    free(g);
    free(mask);
}

static void test_trainable_subsets(void **state)
{
    Net *n = *state;
    float *full = fzeros(n->t.total);
    net_grads(n, n->params, full, NULL);
    const char *specs[] = {"attn", "attn_bias", "mlp", "linear", "proj",
                           "ln_post.*,transformer.resblocks.1.*", "positional_embedding",
                           "conv1.weight", "transformer.resblocks.0.ln_1.bias"};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++)
        check_subset(n, specs[k], full);
    free(full);
}

/* attn mode: exactly in_proj_weight and out_proj.weight of every block get
 * gradients; a plain SGD step on the whole flat buffer moves nothing else. */
static void test_attn_mode(void **state)
{
    Net *n = *state;
    unsigned char *mask = calloc((size_t)n->t.count, 1);
    float *g = fzeros(n->t.total), *theta = fzeros(n->t.total);
    assert_non_null(mask);
    assert_int_equal(trainable_mask(&n->t, "attn", mask), TD_OK);
    for (int i = 0; i < n->t.count; i++) {
        const char *nm = n->t.info[i].name;
        int want = strstr(nm, "attn.in_proj_weight") || strstr(nm, "attn.out_proj.weight");
        assert_int_equal(mask[i], want);
    }
    net_grads(n, n->params, g, mask);
    /* the forward told the mask keeps no MLP input (VitWork.trainable): the
     * same gradients, bit for bit; and a no_grad forward the same embeddings */
    float *g2 = fzeros(n->t.total), *e = fzeros((size_t)n->B * n->E);
    n->w.trainable = mask;
    net_grads(n, n->params, g2, mask);
    for (int l = 0; l < n->a.layers; l++)
        assert_int_equal(n->w.mlp_kept[l], 0);
    assert_memory_equal(g, g2, n->t.total * sizeof(float));
    memcpy(e, n->embeds, (size_t)n->B * n->E * sizeof(float));
    n->w.trainable = NULL;
    n->w.no_grad = 1;
    vit_forward(n->params, &n->w, n->pixels, n->B, n->embeds);
    n->w.no_grad = 0;
    assert_memory_equal(e, n->embeds, (size_t)n->B * n->E * sizeof(float));
    free(g2), free(e);
    memcpy(theta, n->params, n->t.total * sizeof(float));
    for (size_t k = 0; k < n->t.total; k++)
        theta[k] -= 0.1f * g[k];
    for (int i = 0; i < n->t.count; i++) {
        const ParamInfo *p = &n->t.info[i];
        int same = memcmp(theta + p->offset, n->params + p->offset, p->numel * sizeof(float)) == 0;
        if (mask[i] == same)
            fail_msg("attn step: %s %s", p->name, same ? "did not move" : "moved");
    }
    /* the paper's count for ViT-B/32 */
    VitArch b32;
    ParamTable tb;
    assert_int_equal(vit_arch_by_name("vit_b32", &b32), TD_OK);
    assert_int_equal(params_table_build(&b32, &tb), TD_OK);
    unsigned char *mb = calloc((size_t)tb.count, 1);
    assert_non_null(mb);
    assert_int_equal(trainable_mask(&tb, "attn", mb), TD_OK);
    assert_int_equal(trainable_count(&tb, mb), 28311552);
    assert_int_equal(trainable_mask(&tb, "full", mb), TD_OK);
    assert_int_equal(trainable_count(&tb, mb), 87849216);
    free(mb);
    params_table_free(&tb);
    free(mask);
    free(g);
    free(theta);
}

static void test_trainable_errors(void **state)
{
    Net *n = *state;
    unsigned char *mask = calloc((size_t)n->t.count, 1);
    assert_non_null(mask);
    assert_int_equal(trainable_mask(&n->t, "atn", mask), TD_ERR_CONFIG);
    td_error_clear();
    assert_int_equal(trainable_mask(&n->t, "attn,transformer.resblocks.9.*", mask), TD_ERR_CONFIG);
    assert_non_null(strstr(td_error_message(), "resblocks.9"));
    td_error_clear();
    assert_int_equal(trainable_mask(&n->t, "", mask), TD_ERR_CONFIG);
    td_error_clear();
    assert_int_equal(trainable_mask(&n->t, " attn , mlp ", mask), TD_OK);
    VitArch a = n->a;
    size_t want = (size_t)a.layers * (4 * a.width * a.width + 2 * a.width * a.mlp);
    assert_int_equal(trainable_count(&n->t, mask), want);
    free(mask);
}

/* ------------------------------------------------------------------- ntk */

static double ntk_loss(Net *n, const float *delta, float *out, float *dout)
{
    vit_ntk_forward(n->params, &n->w, delta, NULL, n->pixels, n->B, out, NULL);
    return vit_head_loss(&n->h, out, n->head, n->scale, n->labels, n->B, n->C, NULL, dout,
                         NULL);
}

static void test_ntk(void **state)
{
    Net *n = *state;
    const size_t BE = (size_t)n->B * n->E, P = n->t.total;
    float *delta = fzeros(P), *dir = fzeros(P), *theta = fzeros(P), *g = fzeros(P);
    float *flin = fzeros(BE), *f0 = fzeros(BE), *f = fzeros(BE), *dout = fzeros(BE);

    /* at theta0 the linearised model is the model, bit for bit */
    vit_forward(n->params, &n->w, n->pixels, n->B, f);
    vit_ntk_forward(n->params, &n->w, delta, NULL, n->pixels, n->B, flin, f0);
    assert_memory_equal(flin, f, BE * sizeof(float));
    assert_memory_equal(f0, f, BE * sizeof(float));

    /* f_lin(theta0 + s d) - f(theta0 + s d) = O(s^2): halving s quarters it */
    for (int i = 0; i < n->t.count; i++) {
        const ParamInfo *p = &n->t.info[i];
        double ss = dot_d(n->params + p->offset, n->params + p->offset, p->numel);
        fill_randn(&n->rng, dir + p->offset, p->numel, ss > 0 ? sqrt(ss / p->numel) : 1.0);
    }
    double err[2], first[2];
    const double s0 = 4e-2;
    for (int k = 0; k < 2; k++) {
        double s = s0 / (1 << k);
        for (size_t j = 0; j < P; j++) {
            delta[j] = (float)(s * dir[j]);
            theta[j] = n->params[j] + delta[j];
        }
        vit_ntk_forward(n->params, &n->w, delta, NULL, n->pixels, n->B, flin, f0);
        vit_forward(theta, &n->w, n->pixels, n->B, f);
        double e = 0.0, d = 0.0;
        for (size_t j = 0; j < BE; j++) {
            e = fmax(e, fabs((double)flin[j] - f[j]));
            d = fmax(d, fabs((double)f[j] - f0[j]));
        }
        err[k] = e;
        first[k] = d;
        printf("  s = %.3g: max|f_lin - f| = %.3e, max|f - f0| = %.3e\n", s, e, d);
    }
    double ratio = err[0] / err[1];
    printf("  second-order ratio %.2f (4 expected)\n", ratio);
    assert_true(ratio > 3.0 && ratio < 5.0);
    assert_true(err[0] < 0.1 * first[0]);

    /* ntk gradient: backward at theta0 with dL/df_lin, against central
     * differences of the linearised loss along dir (exact: f_lin is affine) */
    for (size_t j = 0; j < P; j++)
        delta[j] = (float)(s0 * dir[j]);
    memset(g, 0, P * sizeof(float));
    ntk_loss(n, delta, flin, dout);
    vit_backward(&n->w, dout, g, NULL);
    double analytic = dot_d(g, dir, P);
    /* the activations backward used are theta0's: jvp left them intact */
    float *g2 = fzeros(P);
    vit_forward(n->params, &n->w, n->pixels, n->B, f);
    vit_backward(&n->w, dout, g2, NULL);
    assert_memory_equal(g, g2, P * sizeof(float));
    free(g2);
    /* fourth-order stencil along dir: f_lin is affine, the loss is not */
    const double e = 1e-2, steps[4] = {e, -e, 2 * e, -2 * e};
    double l[4];
    float *dp = fzeros(P);
    for (int k = 0; k < 4; k++) {
        for (size_t j = 0; j < P; j++)
            dp[j] = (float)(delta[j] + steps[k] * dir[j]);
        l[k] = ntk_loss(n, dp, flin, NULL);
    }
    double numeric = (8.0 * (l[0] - l[1]) - (l[2] - l[3])) / (12.0 * e);
    double rel = fabs(analytic - numeric) / fabs(numeric);
    printf("  ntk directional derivative: backward %.8g, differences %.8g, rel %.2e\n",
           analytic, numeric, rel);
    assert_true(rel < 1e-4);
    free(dp);
    free(delta);
    free(dir);
    free(theta);
    free(g);
    free(flin);
    free(f0);
    free(f);
    free(dout);
}

/* ------------------------------------------------ class-token-only last block */

/* The default forward runs the last block's out_proj and MLP on the class
 * tokens only; with all_tokens it runs them on every token, as `tadist check`
 * needs. Embeddings, every gradient and the jvp must agree (the products have
 * other row counts, so OpenBLAS may sum in another order: not bit for bit). */
static void test_last_block_cls_only(void **state)
{
    Net *n = *state;
    const size_t P = n->t.total, BE = (size_t)n->B * n->E;
    float *g[2], *e[2], *tv[2];
    float *dir = fzeros(P);
    fill_randn(&n->rng, dir, P, 1e-2);
    for (int all = 0; all < 2; all++) {
        g[all] = fzeros(P), e[all] = fzeros(BE), tv[all] = fzeros(BE);
        n->w.all_tokens = all;
        net_grads(n, n->params, g[all], NULL);
        memcpy(e[all], n->embeds, BE * sizeof(float));
        vit_jvp(n->params, &n->w, dir, NULL, n->B, tv[all]);
        const float *last = vit_hidden(&n->w, n->a.layers);
        if (all)
            assert_non_null(last);
        else
            assert_null(last);
    }
    n->w.all_tokens = 0;
    double we = 0, wg = 0, wj = 0, me = 0, mg = 0, mj = 0;
    for (size_t i = 0; i < BE; i++) {
        we = fmax(we, fabs(e[0][i] - e[1][i])), me = fmax(me, fabs(e[1][i]));
        wj = fmax(wj, fabs(tv[0][i] - tv[1][i])), mj = fmax(mj, fabs(tv[1][i]));
    }
    for (size_t i = 0; i < P; i++)
        wg = fmax(wg, fabs(g[0][i] - g[1][i])), mg = fmax(mg, fabs(g[1][i]));
    printf("  class tokens only vs every token: embeds %.2e, grads %.2e, jvp %.2e (relative)\n",
           we / me, wg / mg, wj / mj);
    assert_true(me > 0 && mg > 0 && mj > 0);
    assert_true(we / me < 1e-5 && wg / mg < 1e-5 && wj / mj < 1e-5);
    for (int all = 0; all < 2; all++)
        free(g[all]), free(e[all]), free(tv[all]);
    free(dir);
}

/* A batch split into parts gives bit-identical embeddings, with the last block
 * on the class tokens only as on every token: ranks hold parts of a batch, and
 * the class-token rows are padded (vit_cls_rows) so that their products run
 * with OpenBLAS's same kernel at every part size. */
/* The engine runs fixed-size micro-batches (dist/stages/train_step.h). Within one,
 * an image's embedding must not depend on the other images: the same first
 * four images, with four other images, with four zero images (the padding of
 * a short micro-batch) or with themselves repeated, give the same bits. Every
 * product keeps rows apart, attention is per image, LayerNorm per row; the
 * call shapes are the same, so this holds on any BLAS kernel. */
static void test_batch_mates_bitwise(void **state)
{
    Net *n = *state;
    const int B = 8, E = n->E, H = 4;
    const size_t npix = (size_t)n->a.channels * n->a.image * n->a.image;
    VitWork w;
    assert_int_equal(vit_work_alloc(&w, &n->a, &n->t, B), TD_OK);
    float *pix = fzeros(B * npix), *ref = fzeros((size_t)B * E), *out = fzeros((size_t)B * E);
    for (int all = 0; all < 2; all++) {
        w.all_tokens = all;
        fill_randn(&n->rng, pix, B * npix, 1.0);
        vit_forward(n->params, &w, pix, B, ref);
        for (int mates = 0; mates < 3; mates++) {
            float *rest = pix + (size_t)H * npix;
            if (mates == 0)
                fill_randn(&n->rng, rest, (size_t)(B - H) * npix, 1.0);
            else if (mates == 1)
                memset(rest, 0, (size_t)(B - H) * npix * sizeof *rest);
            else
                memcpy(rest, pix, (size_t)H * npix * sizeof *rest);
            vit_forward(n->params, &w, pix, B, out);
            int differ = 0;
            for (int i = 0; i < H * E; i++)
                differ += ref[i] != out[i];
            printf("  %s, batch-mates %s: %d of %d embedding values differ\n",
                   all ? "every token" : "class tokens only",
                   mates == 0 ? "other images" : mates == 1 ? "zero images" : "repeats", differ,
                   H * E);
            assert_int_equal(differ, 0);
        }
    }
    vit_work_free(&w);
    free(pix), free(ref), free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backward_fd),     cmocka_unit_test(test_jvp_fd_and_dot),
        cmocka_unit_test(test_trainable_subsets), cmocka_unit_test(test_attn_mode),
        cmocka_unit_test(test_trainable_errors), cmocka_unit_test(test_ntk),
        cmocka_unit_test(test_last_block_cls_only), cmocka_unit_test(test_batch_mates_bitwise),
    };
    return cmocka_run_group_tests(tests, net_setup, net_teardown);
}
