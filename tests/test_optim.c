/* AdamW, the warm-up + cosine schedule and gradient clipping against values
 * computed here in double from PyTorch's documented update rules. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "optim.h"

static void test_schedule(void **state)
{
    (void)state;
    assert_float_equal(optim_lr_cosine(1.0f, 0, 10, 110), 0.1f, 1e-7);
    assert_float_equal(optim_lr_cosine(1.0f, 9, 10, 110), 1.0f, 1e-7);
    assert_float_equal(optim_lr_cosine(1.0f, 10, 10, 110), 1.0f, 1e-7);
    assert_float_equal(optim_lr_cosine(1.0f, 60, 10, 110), 0.5f, 1e-6);
    assert_float_equal(optim_lr_cosine(1.0f, 110, 10, 110), 0.0f, 1e-7);
    assert_float_equal(optim_lr_cosine(2.0f, 35, 10, 110),
                       (float)(0.5 * (1 + cos(M_PI * 25.0 / 100.0)) * 2.0), 1e-6);
}

/* Two tensors of a tiny table; only the second is trained. */
static void test_adamw_two_steps(void **state)
{
    (void)state;
    VitArch a;
    assert_int_equal(vit_arch_by_name("vit_tiny", &a), TD_OK);
    ParamTable t;
    assert_int_equal(params_table_build(&a, &t), TD_OK);
    float *p = calloc(t.total, sizeof *p), *g = calloc(t.total, sizeof *g);
    unsigned char *mask = calloc((size_t)t.count, 1);
    const int trained = PARAM_CLASS_EMB;
    mask[trained] = 1;
    for (size_t i = 0; i < t.total; i++) {
        p[i] = 0.5f + 0.001f * (float)(i % 97);
        g[i] = (float)((int)(i % 13) - 6) * 0.1f;
    }
    float *before = malloc(t.total * sizeof *before);
    for (size_t i = 0; i < t.total; i++)
        before[i] = p[i];
    AdamWConfig cfg = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};
    AdamW o;
    assert_int_equal(adamw_init(&o, &cfg, t.total), TD_OK);
    adamw_step(&o, &t, mask, p, g, 0.5f, cfg.lr); /* the gradient scaled by 0.5, as clipping does */
    adamw_step(&o, &t, mask, p, g, 0.5f, 0.5f * cfg.lr);
    const ParamInfo *pi = &t.info[trained];
    for (size_t k = 0; k < pi->numel; k++) {
        double x = before[pi->offset + k], gk = 0.5 * g[pi->offset + k], m = 0, v = 0;
        const double lrs[2] = {1e-2, 0.5e-2};
        for (int s = 1; s <= 2; s++) {
            double lr = lrs[s - 1];
            x *= 1 - lr * 0.1;
            m = 0.9 * m + 0.1 * gk;
            v = 0.999 * v + 0.001 * gk * gk;
            double mh = m / (1 - pow(0.9, s)), vh = v / (1 - pow(0.999, s));
            x -= lr * mh / (sqrt(vh) + 1e-8);
        }
        assert_true(fabs(x - p[pi->offset + k]) < 1e-6);
    }
    for (int i = 0; i < t.count; i++) {
        if (i == trained)
            continue;
        for (size_t k = 0; k < t.info[i].numel; k++)
            assert_true(p[t.info[i].offset + k] == before[t.info[i].offset + k]);
    }
    adamw_free(&o);
    free(p), free(g), free(mask), free(before);
    params_table_free(&t);
}

static void test_clip(void **state)
{
    (void)state;
    VitArch a;
    assert_int_equal(vit_arch_by_name("vit_tiny", &a), TD_OK);
    ParamTable t;
    assert_int_equal(params_table_build(&a, &t), TD_OK);
    float *g = calloc(t.total, sizeof *g);
    unsigned char *mask = calloc((size_t)t.count, 1);
    mask[PARAM_LN_PRE_W] = mask[PARAM_LN_PRE_B] = 1;
    g[t.info[PARAM_LN_PRE_W].offset] = 3.0f;
    g[t.info[PARAM_LN_PRE_B].offset] = 4.0f;
    g[t.info[PARAM_CLASS_EMB].offset] = 100.0f; /* not selected: not counted, not scaled */
    double ss = optim_grad_sumsq(&t, mask, g);
    assert_float_equal(ss, 25.0, 1e-12);
    assert_float_equal(optim_clip_factor(sqrt(ss), 1.0f), 0.2f, 1e-6);
    assert_float_equal(optim_clip_factor(0.5, 1.0f), 1.0f, 0);   /* below the limit */
    assert_float_equal(optim_clip_factor(sqrt(ss), 0.0f), 1.0f, 0); /* no clipping */
    /* a whole tensor: the partial sums of the blocked pass */
    for (size_t k = 0; k < t.info[PARAM_LN_PRE_W].numel; k++)
        g[t.info[PARAM_LN_PRE_W].offset + k] = 0.5f + (float)k;
    double want = 16.0; /* 4^2 of ln_pre.bias[0] */
    for (size_t k = 0; k < t.info[PARAM_LN_PRE_W].numel; k++)
        want += (0.5 + (double)k) * (0.5 + (double)k);
    assert_float_equal(optim_grad_sumsq(&t, mask, g), want, 1e-9 * want);
    free(g), free(mask);
    params_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_schedule),
                                       cmocka_unit_test(test_adamw_two_steps),
                                       cmocka_unit_test(test_clip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
