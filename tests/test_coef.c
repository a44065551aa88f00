/* Merge coefficients with a structure (kernels/coef.h) and the entropy
 * objective (ops.h op_entropy_fwd_bwd): every function against a direct
 * computation written here, in double, from the definitions:
 *   theta = base + sum_t sum_g a[t,g] tau[t,g],  dL/da[t,g] = <dL/dtheta|g, tau[t,g]>,
 *   H(softmax z) = -sum p log p, its gradient by central differences,
 *   Adam as in Kingma & Ba (bias-corrected), then clamped. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coef.h"
#include "ops.h"

typedef struct {
    VitArch a;
    ParamTable t;
    unsigned char *mask;
} Tiny;

/* vit_tiny, with the attention tensors and the projection in the mask. */
static void tiny_open(Tiny *x)
{
    assert_int_equal(vit_arch_by_name("vit_tiny", &x->a), TD_OK);
    assert_int_equal(params_table_build(&x->a, &x->t), TD_OK);
    x->mask = calloc((size_t)x->t.count, 1);
    for (int l = 0; l < x->a.layers; l++) {
        x->mask[params_block_index(l, BLK_QKV_W)] = 1;
        x->mask[params_block_index(l, BLK_OUT_B)] = 1;
    }
    x->mask[params_proj(&x->a)] = 1;
}

static void tiny_close(Tiny *x)
{
    free(x->mask);
    params_table_free(&x->t);
}

static void test_space_sizes(void **state)
{
    (void)state;
    Tiny x;
    tiny_open(&x);
    const int T = 3, L = x.a.layers;
    CoefSpace s;
    assert_int_equal(coef_space_init(&s, &x.t, x.mask, COEF_UNIFORM, T), TD_OK);
    assert_int_equal(s.K, 1);
    assert_int_equal(s.G, 1);
    coef_space_free(&s);
    assert_int_equal(coef_space_init(&s, &x.t, x.mask, COEF_TASK, T), TD_OK);
    assert_int_equal(s.K, T);
    coef_space_free(&s);
    assert_int_equal(coef_space_init(&s, &x.t, x.mask, COEF_BLOCK, T), TD_OK);
    assert_int_equal(s.G, L + 1);
    assert_int_equal(s.K, T * (L + 1));
    assert_int_equal(s.ntensors, 2 * L + 1);
    size_t want = x.t.info[params_proj(&x.a)].numel;
    for (int l = 0; l < L; l++)
        want += x.t.info[params_block_index(l, BLK_QKV_W)].numel +
                x.t.info[params_block_index(l, BLK_OUT_B)].numel;
    assert_int_equal(coef_row_size(&s), want);
    /* block l's tensors are group l; proj (outside the blocks) is the last */
    for (int k = 0; k < s.ntensors; k++) {
        int b = x.t.info[s.tensor[k]].block;
        assert_int_equal(s.group[k], b >= 0 ? b : L);
    }
    char name[32];
    coef_group_name(&s, 0, name, sizeof name);
    assert_string_equal(name, "block0");
    coef_group_name(&s, L, name, sizeof name);
    assert_string_equal(name, "rest");
    coef_space_free(&s);
    assert_int_not_equal(coef_space_init(&s, &x.t, x.mask, 7, T), TD_OK);
    assert_int_not_equal(coef_space_init(&s, &x.t, x.mask, COEF_TASK, COEF_MAX_TASKS + 1), TD_OK);
    assert_int_equal(coef_kind_from_name("block"), COEF_BLOCK);
    assert_int_equal(coef_kind_from_name("blocks"), -1);
    tiny_close(&x);
}

static void test_expand_reduce(void **state)
{
    (void)state;
    Tiny x;
    tiny_open(&x);
    const int T = 3;
    for (int kind = COEF_UNIFORM; kind <= COEF_BLOCK; kind++) {
        CoefSpace s;
        assert_int_equal(coef_space_init(&s, &x.t, x.mask, kind, T), TD_OK);
        double c[64], a[256], ga[256], gc[64];
        for (int k = 0; k < s.K; k++)
            c[k] = 0.1 * (k + 1);
        coef_expand(&s, c, a);
        for (int t = 0; t < T; t++)
            for (int g = 0; g < s.G; g++) {
                double want = kind == COEF_UNIFORM ? c[0] : kind == COEF_TASK ? c[t] : c[t * s.G + g];
                assert_true(a[t * s.G + g] == want);
                ga[t * s.G + g] = 1.0 + t + 10.0 * g;
            }
        /* the chain rule: gc[k] sums the entries of a tied to c[k] */
        coef_reduce(&s, ga, gc);
        for (int k = 0; k < s.K; k++) {
            double want = 0;
            for (int t = 0; t < T; t++)
                for (int g = 0; g < s.G; g++) {
                    int tied = kind == COEF_UNIFORM ? 0 : kind == COEF_TASK ? t : t * s.G + g;
                    want += tied == k ? ga[t * s.G + g] : 0;
                }
            assert_true(fabs(gc[k] - want) < 1e-12);
        }
        coef_space_free(&s);
    }
    tiny_close(&x);
}

/* combine and grad against direct loops over the table, in double */
static void test_combine_and_grad(void **state)
{
    (void)state;
    Tiny x;
    tiny_open(&x);
    const int T = 3;
    CoefSpace s;
    assert_int_equal(coef_space_init(&s, &x.t, x.mask, COEF_BLOCK, T), TD_OK);
    const size_t n = coef_row_size(&s), P = x.t.total;
    float *rows[3], *base = malloc(P * sizeof *base), *out = malloc(P * sizeof *out);
    float *grad = malloc(P * sizeof *grad);
    for (int t = 0; t < T; t++) {
        rows[t] = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            rows[t][i] = (float)sin(0.37 * (double)i + t) * 0.01f;
    }
    for (size_t i = 0; i < P; i++) {
        base[i] = (float)cos(0.11 * (double)i);
        out[i] = -7.0f;
        grad[i] = (float)sin(0.05 * (double)i + 1.0);
    }
    double a[64];
    for (int k = 0; k < s.K; k++)
        a[k] = 0.3 + 0.05 * k;
    coef_combine(&s, (const float *const *)rows, a, base, out);
    double ga[64];
    coef_grad(&s, (const float *const *)rows, grad, ga);
    double gwant[64] = {0};
    size_t packed = 0;
    for (int i = 0; i < x.t.count; i++) {
        const ParamInfo *pi = &x.t.info[i];
        if (!x.mask[i]) { /* untouched */
            for (size_t e = 0; e < pi->numel; e++)
                assert_true(out[pi->offset + e] == -7.0f);
            continue;
        }
        int g = pi->block >= 0 ? pi->block : x.a.layers;
        for (size_t e = 0; e < pi->numel; e++, packed++) {
            double v = base[pi->offset + e];
            for (int t = 0; t < T; t++) {
                v += a[t * s.G + g] * rows[t][packed];
                gwant[t * s.G + g] += (double)grad[pi->offset + e] * rows[t][packed];
            }
            assert_true(out[pi->offset + e] == (float)v);
        }
    }
    assert_int_equal(packed, n);
    for (int k = 0; k < T * s.G; k++)
        assert_true(fabs(ga[k] - gwant[k]) <= 1e-12 * (1 + fabs(gwant[k])));
    for (int t = 0; t < T; t++)
        free(rows[t]);
    free(base), free(out), free(grad);
    coef_space_free(&s);
    tiny_close(&x);
}

static void test_adam_clamped(void **state)
{
    (void)state;
    double x[3] = {0.5, 0.0, 0.99}, m[3] = {0}, v[3] = {0};
    const double g[3] = {0.2, 1.0, -3.0};
    double want[3], mw[3] = {0}, vw[3] = {0};
    memcpy(want, x, sizeof want);
    for (long s = 1; s <= 3; s++) {
        coef_adam_step(x, g, m, v, 3, s, 0.01, 0.9, 0.999, 1e-8, 0.0, 1.0);
        for (int i = 0; i < 3; i++) {
            mw[i] = 0.9 * mw[i] + 0.1 * g[i];
            vw[i] = 0.999 * vw[i] + 0.001 * g[i] * g[i];
            double y = want[i] - 0.01 * (mw[i] / (1 - pow(0.9, s))) /
                                     (sqrt(vw[i] / (1 - pow(0.999, s))) + 1e-8);
            want[i] = y < 0 ? 0 : y > 1 ? 1 : y;
        }
    }
    for (int i = 0; i < 3; i++)
        assert_true(fabs(x[i] - want[i]) < 1e-15);
    assert_true(x[1] == 0.0); /* a positive gradient pushed it below the box */
    assert_true(x[2] == 1.0);
}

/* op_entropy_fwd_bwd: the value from its definition, the gradient by central
 * differences of the value */
static void test_entropy(void **state)
{
    (void)state;
    enum { N = 3, K = 5 };
    float z[N * K], dz[N * K];
    for (int i = 0; i < N * K; i++)
        z[i] = (float)(2.0 * sin(1.3 * i));
    double h = op_entropy_fwd_bwd(dz, z, N, K), want = 0;
    for (int n = 0; n < N; n++) {
        double se = 0;
        for (int k = 0; k < K; k++)
            se += exp(z[n * K + k]);
        for (int k = 0; k < K; k++) {
            double p = exp(z[n * K + k]) / se;
            want -= p * log(p) / N;
        }
    }
    assert_true(fabs(h - want) < 1e-12);
    for (int i = 0; i < N * K; i++) {
        float zp[N * K], zm[N * K];
        memcpy(zp, z, sizeof z);
        memcpy(zm, z, sizeof z);
        const float e = 1e-2f;
        zp[i] += e;
        zm[i] -= e;
        double fd = (op_entropy_fwd_bwd(NULL, zp, N, K) - op_entropy_fwd_bwd(NULL, zm, N, K)) /
                    (double)(zp[i] - zm[i]);
        assert_true(fabs(fd - dz[i]) < 2e-4);
    }
    /* a uniform prediction: H = log K, no gradient */
    float u[K] = {1, 1, 1, 1, 1}, du[K];
    assert_true(fabs(op_entropy_fwd_bwd(du, u, 1, K) - log(K)) < 1e-12);
    for (int k = 0; k < K; k++)
        assert_true(fabs(du[k]) < 1e-7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_sizes),
        cmocka_unit_test(test_expand_reduce),
        cmocka_unit_test(test_combine_and_grad),
        cmocka_unit_test(test_adam_clamped),
        cmocka_unit_test(test_entropy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
