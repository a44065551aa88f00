/* The kernels' own thread pool: results are bit-identical whatever the number
 * of threads (forward, backward, JVP of a whole encoder), and par_for covers
 * every index exactly once.
 *
 * The construction behind it, checked directly: linked with
 * -Wl,--wrap=cblas_sgemm (tests/repro.cmake), every cblas_sgemm call the
 * engine makes is recorded, and the multiset of call shapes (transposes, M,
 * N, K, leading dimensions) must be the same at every thread count. A kernel
 * may round differently for different shapes; the same shape on the same
 * operands gives the same bits on any kernel, so this is what makes the
 * results independent of the thread count whichever kernel OpenBLAS runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include <cblas.h>
#include <pthread.h>

#include "ops.h"
#include "optim.h"
#include "parallel.h"
#include "params.h"
#include "rng.h"
#include "vit.h"

/* ---- every cblas_sgemm call, recorded ---- */

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc;
} Shape;

enum { MAX_CALLS = 1 << 20 };
static Shape *g_calls;
static size_t g_ncalls;
static int g_recording;
static pthread_mutex_t g_calls_lock = PTHREAD_MUTEX_INITIALIZER;

void __real_cblas_sgemm(const enum CBLAS_ORDER o, const enum CBLAS_TRANSPOSE ta,
                        const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N,
                        const blasint K, const float alpha, const float *A, const blasint lda,
                        const float *B, const blasint ldb, const float beta, float *C,
                        const blasint ldc);
void __wrap_cblas_sgemm(const enum CBLAS_ORDER o, const enum CBLAS_TRANSPOSE ta,
                        const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N,
                        const blasint K, const float alpha, const float *A, const blasint lda,
                        const float *B, const blasint ldb, const float beta, float *C,
                        const blasint ldc);
void __wrap_cblas_sgemm(const enum CBLAS_ORDER o, const enum CBLAS_TRANSPOSE ta,
                        const enum CBLAS_TRANSPOSE tb, const blasint M, const blasint N,
                        const blasint K, const float alpha, const float *A, const blasint lda,
                        const float *B, const blasint ldb, const float beta, float *C,
                        const blasint ldc)
{
    if (__atomic_load_n(&g_recording, __ATOMIC_RELAXED)) {
        pthread_mutex_lock(&g_calls_lock);
        if (g_ncalls < MAX_CALLS)
            g_calls[g_ncalls++] = (Shape){ta == CblasTrans, tb == CblasTrans, M, N, K,
                                          lda, ldb, ldc};
        pthread_mutex_unlock(&g_calls_lock);
    }
    __real_cblas_sgemm(o, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static int cmp_shape(const void *a, const void *b) { return memcmp(a, b, sizeof(Shape)); }

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
    Shape *calls; /* sorted */
    size_t ncalls;
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
    g_ncalls = 0;
    __atomic_store_n(&g_recording, 1, __ATOMIC_RELAXED);
    vit_forward(p, &w, pix, B, o->emb);
    vit_jvp(p, &w, tan, NULL, B, o->temb);
    vit_backward(&w, demb, o->grads, NULL);
    __atomic_store_n(&g_recording, 0, __ATOMIC_RELAXED);
    assert_true(g_ncalls > 0 && g_ncalls < MAX_CALLS);
    o->ncalls = g_ncalls;
    o->calls = malloc(g_ncalls * sizeof(Shape));
    memcpy(o->calls, g_calls, g_ncalls * sizeof(Shape));
    qsort(o->calls, o->ncalls, sizeof(Shape), cmp_shape);
    vit_work_free(&w);
    par_set_threads(1);
    free(p), free(tan), free(pix), free(demb);
    params_table_free(&t);
}

static void check_same(const char *arch, int B)
{
    VitArch a;
    ParamTable t;
    vit_arch_by_name(arch, &a);
    params_table_build(&a, &t);
    Outs one;
    run_model(arch, B, 1, &one);
    for (int th = 2; th <= 4; th++) {
        Outs many;
        run_model(arch, B, th, &many);
        printf("  %s batch %d: %zu cblas_sgemm calls at 1 thread, %zu at %d\n", arch, B,
               one.ncalls, many.ncalls, th);
        assert_int_equal(one.ncalls, many.ncalls);
        assert_memory_equal(one.calls, many.calls, one.ncalls * sizeof(Shape));
        assert_memory_equal(one.emb, many.emb, (size_t)B * a.out_dim * sizeof(float));
        assert_memory_equal(one.temb, many.temb, (size_t)B * a.out_dim * sizeof(float));
        assert_memory_equal(one.grads, many.grads, t.total * sizeof(float));
        free(many.emb), free(many.temb), free(many.grads), free(many.calls);
    }
    free(one.emb), free(one.temb), free(one.grads), free(one.calls);
    params_table_free(&t);
}

/* ViT-B/32's products are large enough to be split into several pieces
 * (gemm_plan): the split must not follow the thread count. */
static void test_plan_ignores_threads(void **state)
{
    (void)state;
    const int shapes[][3] = {{800, 2304, 768}, {800, 768, 768}, {800, 3072, 768},
                             {800, 768, 3072}, {768, 768, 800}, {16, 512, 768}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int rows_only = 0; rows_only < 2; rows_only++) {
            int bc1, bcn;
            par_set_threads(1);
            int p1 = gemm_plan(shapes[i][0], shapes[i][1], shapes[i][2], rows_only, &bc1);
            for (int th = 2; th <= 8; th++) {
                par_set_threads(th);
                int pn = gemm_plan(shapes[i][0], shapes[i][1], shapes[i][2], rows_only, &bcn);
                assert_int_equal(p1, pn);
                assert_int_equal(bc1, bcn);
            }
        }
    par_set_threads(1);
}

static void test_vit_tiny_threads(void **state)
{
    (void)state;
    check_same("vit_tiny", 5);
}

static void test_vit_small28_threads(void **state)
{
    (void)state;
    check_same("vit_small28", 16); /* 800 rows: products split in pieces */
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
                                       cmocka_unit_test(test_plan_ignores_threads),
                                       cmocka_unit_test(test_optim_threads)};
    g_calls = malloc(MAX_CALLS * sizeof *g_calls);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
