/* The kernels' own thread pool: results are bit-identical whatever the number
 * of threads (forward, backward, JVP of a whole encoder), and par_for covers
 * every index exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "optim.h"
#include "parallel.h"
#include "params.h"
#include "rng.h"
#include "vit.h"

static void count_range(void *ctx, size_t b, size_t e, int tid)
{
    unsigned char *hits = ctx;
    for (size_t i = b; i < e; i++)
        hits[i]++;
}

static void test_par_for_covers(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 2, 7, 100, 4097};
    for (int th = 1; th <= 4; th++) {
        par_set_threads(th);
        assert_int_equal(par_threads(), th);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            unsigned char *hits = calloc(sizes[k], 1);
            par_for(sizes[k], 1, count_range, hits);
            for (size_t i = 0; i < sizes[k]; i++)
                assert_int_equal(hits[i], 1);
            free(hits);
        }
    }
    par_set_threads(1);
}

typedef struct {
    float *emb, *grads, *temb;
} Outs;

static void run_model(const char *arch_name, int B, int threads, Outs *o)
{
    VitArch a;
    assert_int_equal(vit_arch_by_name(arch_name, &a), TD_OK);
    a.act = TD_ACT_QUICK_GELU;
    ParamTable t;
    assert_int_equal(params_table_build(&a, &t), TD_OK);
    float *p = calloc(t.total, sizeof *p), *tan = calloc(t.total, sizeof *tan);
    params_init_random(&a, &t, p, 7);
    TdRng r;
    rng_seed(&r, 9);
    for (size_t i = 0; i < t.total; i++)
        tan[i] = (float)rng_normal(&r) * 0.01f;
    size_t npix = (size_t)B * a.channels * a.image * a.image;
    float *pix = malloc(npix * sizeof *pix), *demb = malloc((size_t)B * a.out_dim * sizeof *demb);
    for (size_t i = 0; i < npix; i++)
        pix[i] = (float)rng_normal(&r);
    for (int i = 0; i < B * a.out_dim; i++)
        demb[i] = (float)rng_normal(&r);
    o->emb = malloc((size_t)B * a.out_dim * sizeof(float));
    o->temb = malloc((size_t)B * a.out_dim * sizeof(float));
    o->grads = calloc(t.total, sizeof(float));
    par_set_threads(threads);
    VitWork w;
    assert_int_equal(vit_work_alloc(&w, &a, &t, B), TD_OK);
    vit_forward(p, &w, pix, B, o->emb);
    vit_jvp(p, &w, tan, NULL, B, o->temb);
    vit_backward(&w, demb, o->grads, NULL);
    vit_work_free(&w);
    par_set_threads(1);
    free(p), free(tan), free(pix), free(demb);
    params_table_free(&t);
}

static void check_same(const char *arch, int B)
{
    Outs one, many;
    VitArch a;
    ParamTable t;
    vit_arch_by_name(arch, &a);
    params_table_build(&a, &t);
    run_model(arch, B, 1, &one);
    run_model(arch, B, 3, &many);
    assert_memory_equal(one.emb, many.emb, (size_t)B * a.out_dim * sizeof(float));
    assert_memory_equal(one.temb, many.temb, (size_t)B * a.out_dim * sizeof(float));
    assert_memory_equal(one.grads, many.grads, t.total * sizeof(float));
    free(one.emb), free(one.temb), free(one.grads);
    free(many.emb), free(many.temb), free(many.grads);
    params_table_free(&t);
}

static void test_vit_tiny_threads(void **state)
{
    (void)state;
    check_same("vit_tiny", 5);
}

static void test_vit_small28_threads(void **state)
{
    (void)state;
    check_same("vit_small28", 3);
}

/* AdamW, the gradient norm and clipping: the same bits at 1 and 3 threads. */
static void optim_once(int threads, float *p, double *norm)
{
    VitArch a;
    vit_arch_by_name("vit_small28", &a);
    ParamTable t;
    params_table_build(&a, &t);
    float *g = calloc(t.total, sizeof *g);
    unsigned char *mask = malloc((size_t)t.count);
    memset(mask, 1, (size_t)t.count);
    TdRng r;
    rng_seed(&r, 5);
    for (size_t i = 0; i < t.total; i++) {
        p[i] = (float)rng_normal(&r);
        g[i] = (float)rng_normal(&r);
    }
    par_set_threads(threads);
    AdamWConfig cfg = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f};
    AdamW o;
    assert_int_equal(adamw_init(&o, &cfg, t.total), TD_OK);
    *norm = sqrt(optim_grad_sumsq(&t, mask, g));
    const float clip = optim_clip_factor(*norm, 1.0f);
    adamw_step(&o, &t, mask, p, g, clip, 1e-3f);
    adamw_step(&o, &t, mask, p, g, clip, 1e-3f);
    par_set_threads(1);
    adamw_free(&o);
    free(g), free(mask);
    params_table_free(&t);
}

static void test_optim_threads(void **state)
{
    (void)state;
    VitArch a;
    vit_arch_by_name("vit_small28", &a);
    ParamTable t;
    params_table_build(&a, &t);
    float *p1 = malloc(t.total * sizeof *p1), *p3 = malloc(t.total * sizeof *p3);
    double n1, n3;
    optim_once(1, p1, &n1);
    optim_once(3, p3, &n3);
    assert_memory_equal(&n1, &n3, sizeof n1);
    assert_memory_equal(p1, p3, t.total * sizeof *p1);
    free(p1), free(p3);
    params_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_par_for_covers),
                                       cmocka_unit_test(test_vit_tiny_threads),
                                       cmocka_unit_test(test_vit_small28_threads),
                                       cmocka_unit_test(test_optim_threads)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
