/* mm_bf16: bf16 products with fp32 accumulation through oneDNN (see mm_bf16.h).
 *
 * A product is split into par_threads() pieces of whole 16-row units, run on
 * the pool (parallel.h), each piece one oneDNN call on its thread alone:
 * oneDNN's Debian build runs on OpenMP, whose team would spin on the cores
 * that the pool needs between products (measured: the demo's forward at two
 * threads 6x slower than fp32 on a busy machine), so each piece sets its
 * thread's OpenMP thread count to 1 and no team is ever started. Primitives
 * are kept per shape, with user scratchpads (one per pool thread). */
#include "mm_bf16.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"

/* ------------------------------------------------------------ conversions */

/* Branch-free, so that the conversion loops vectorise. */
static inline uint16_t bf16_of(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    const uint32_t nearest = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; /* ties to even */
    const uint32_t quiet = (u >> 16) | 0x40u; /* NaN stays NaN (rounding could make it inf) */
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : nearest);
}

uint16_t mm_bf16_from_f32(float x) { return bf16_of(x); }

float mm_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

typedef struct {
    uint16_t *dst;
    const float *src;
    size_t cols, ld; /* row length converted, and the source's row stride */
} Conv;

static void conv_rows(void *ctx, size_t r0, size_t r1, int tid)
{
    const Conv *c = ctx;
    (void)tid;
    for (size_t r = r0; r < r1; r++) {
        uint16_t *restrict d = c->dst + r * c->cols;
        const float *restrict s = c->src + r * c->ld;
        for (size_t k = 0; k < c->cols; k++)
            d[k] = bf16_of(s[k]);
    }
}

/* dst (rows, cols) contiguous = bf16(src (rows, cols; row stride ld)), on the pool */
static void convert(uint16_t *dst, const float *src, size_t rows, size_t cols, size_t ld)
{
    Conv c = {dst, src, cols, ld};
    size_t min_rows = cols ? (16384 + cols - 1) / cols : 1;
    par_for(rows, min_rows, conv_rows, &c);
}

/* ------------------------------------------------------------ the engine */

static struct {
    pthread_once_t once;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int isa;
} s_dnnl = {.once = PTHREAD_ONCE_INIT};

static void fatal(const char *what, dnnl_status_t st)
{
    fprintf(stderr, "mm_bf16: oneDNN %s failed (dnnl_status %d)\n", what, (int)st);
    abort();
}

#define DNNL_CHECK(call)                     \
    do {                                     \
        dnnl_status_t st_ = (call);          \
        if (st_ != dnnl_success)             \
            fatal(#call, st_);               \
    } while (0)

static void dnnl_start(void)
{
    DNNL_CHECK(dnnl_engine_create(&s_dnnl.engine, dnnl_cpu, 0));
    DNNL_CHECK(dnnl_stream_create(&s_dnnl.stream, s_dnnl.engine, dnnl_stream_default_flags));
    s_dnnl.isa = (int)dnnl_get_effective_cpu_isa();
}

static void dnnl_ensure(void) { pthread_once(&s_dnnl.once, dnnl_start); }

int mm_bf16_native(void)
{
    /* dnnl_cpu_isa_t values are bit sets: each ISA includes the bits of those
     * it extends, and avx512_core_amx extends avx512_core_bf16 */
    const int want = (int)dnnl_cpu_isa_avx512_core_bf16;
    return ((int)dnnl_get_effective_cpu_isa() & want) == want;
}

const char *mm_bf16_isa(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2: return "avx2";
    default: return "pre-avx2";
    }
}

/* ------------------------------------------------------------ primitives */

typedef struct {
    int M, N, K, lda, ldw, ldc, accumulate;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a, w, c, scratch;
} Prim;

/* Kept primitives: made on first use, never destroyed while the process runs
 * (a forward has a handful of shapes), so that a piece may run one while
 * another thread makes the next. A shape past the table is made for its call
 * alone. */
enum { PRIM_CACHE = 64 };
static Prim s_prims[PRIM_CACHE];
static int s_nprims;
static pthread_mutex_t s_prim_lock = PTHREAD_MUTEX_INITIALIZER;

static Prim prim_make(int M, int N, int K, int lda, int ldw, int ldc, int accumulate)
{
    Prim p = {M, N, K, lda, ldw, ldc, accumulate, NULL, {0}, {0}, {0}, {0}};
    dnnl_dims_t da = {M, K}, sa = {lda, 1};
    dnnl_dims_t dw = {K, N}, sw = {1, ldw}; /* W^T: (K,N) over W's rows */
    dnnl_dims_t dc = {M, N}, sc = {ldc, 1};
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(&p.a, 2, da, dnnl_bf16, sa));
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(&p.w, 2, dw, dnnl_bf16, sw));
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(&p.c, 2, dc, dnnl_f32, sc));
    dnnl_matmul_desc_t md;
    DNNL_CHECK(dnnl_matmul_desc_init(&md, &p.a, &p.w, NULL, &p.c));
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t ops = NULL;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    /* the caller's scratchpad: pieces run one primitive on several threads at once */
    DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (accumulate) { /* beta = 1: C += the product */
        DNNL_CHECK(dnnl_post_ops_create(&ops));
        DNNL_CHECK(dnnl_post_ops_append_sum(ops, 1.0f));
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, ops));
    }
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, &md, attr, s_dnnl.engine, NULL));
    p.scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    DNNL_CHECK(dnnl_primitive_create(&p.prim, pd));
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    if (ops)
        dnnl_post_ops_destroy(ops);
    return p;
}

/* The kept primitive of a shape (made now if new), or, with the table full,
 * *own made for this call (then *fresh = 1: the caller destroys it). */
static const Prim *prim_get(int M, int N, int K, int lda, int ldw, int ldc, int accumulate,
                            Prim *own, int *fresh)
{
    *fresh = 0;
    pthread_mutex_lock(&s_prim_lock);
    const Prim *found = NULL;
    for (int i = 0; i < s_nprims && !found; i++) {
        const Prim *p = &s_prims[i];
        if (p->M == M && p->N == N && p->K == K && p->lda == lda && p->ldw == ldw &&
            p->ldc == ldc && p->accumulate == accumulate)
            found = p;
    }
    if (!found && s_nprims < PRIM_CACHE) {
        s_prims[s_nprims] = prim_make(M, N, K, lda, ldw, ldc, accumulate);
        found = &s_prims[s_nprims++];
    }
    pthread_mutex_unlock(&s_prim_lock);
    if (found)
        return found;
    *own = prim_make(M, N, K, lda, ldw, ldc, accumulate);
    *fresh = 1;
    return own;
}

/* ------------------------------------------------------------ the product */

TdStatus mm_bf16_alloc(MmBf16 *m, size_t n, size_t a_cap)
{
    memset(m, 0, sizeof *m);
    m->w = td_aligned_calloc((n ? n : 1) * sizeof *m->w);
    m->a = td_aligned_calloc((a_cap ? a_cap : 1) * sizeof *m->a);
    if (!m->w || !m->a) {
        mm_bf16_free(m);
        return td_fail(TD_ERR_NOMEM, "mm_bf16: no memory for a bf16 copy of %zu weights", n);
    }
    m->n = n;
    m->a_cap = a_cap;
    return TD_OK;
}

void mm_bf16_free(MmBf16 *m)
{
    td_free(m->w);
    td_free(m->a);
    for (int t = 0; t < TD_PAR_MAX_THREADS; t++)
        td_free(m->scratch[t]);
    memset(m, 0, sizeof *m);
}

void mm_bf16_bind(MmBf16 *m, const float *src, const size_t *off, const size_t *len, int count)
{
    for (int i = 0; i < count; i++) {
        if (off[i] + len[i] > m->n) {
            fprintf(stderr, "mm_bf16: range [%zu, %zu) outside a copy of %zu weights\n", off[i],
                    off[i] + len[i], m->n);
            abort();
        }
        convert(m->w + off[i], src + off[i], 1, len[i], len[i]);
    }
    m->src = src;
}

const uint16_t *mm_bf16_weight(const MmBf16 *m, const float *w)
{
    if (!m->src || w < m->src || w >= m->src + m->n) {
        fprintf(stderr, "mm_bf16: a bf16 product asked for a weight outside the parameters "
                        "bound to its copy (bind the parameters before the forward)\n");
        abort();
    }
    return m->w + (w - m->src);
}

/* One piece of a product: rows [r0, r1) of C, on the calling thread. */
typedef struct {
    MmBf16 *m;
    int M, N, K, ldw, ldc, pieces;
    const uint16_t *W;
    float *C;
    int accumulate;
} Piece;

static void piece_run(void *ctx, size_t i0, size_t i1, int tid)
{
    const Piece *g = ctx;
    omp_set_num_threads(1); /* oneDNN on this thread alone: no OpenMP team */
    for (size_t i = i0; i < i1; i++) {
        const size_t units = ((size_t)g->M + 15) / 16;
        const int r0 = (int)(i * units / (size_t)g->pieces * 16);
        int r1 = (int)((i + 1) * units / (size_t)g->pieces * 16);
        r1 = r1 < g->M ? r1 : g->M;
        if (r0 >= r1)
            continue;
        Prim own;
        int fresh;
        const Prim *p = prim_get(r1 - r0, g->N, g->K, g->K, g->ldw, g->ldc, g->accumulate, &own,
                                 &fresh);
        MmBf16 *m = g->m;
        const size_t need = dnnl_memory_desc_get_size(&p->scratch);
        if (need > m->scratch_cap[tid]) {
            td_free(m->scratch[tid]);
            m->scratch[tid] = td_aligned_calloc(need);
            m->scratch_cap[tid] = m->scratch[tid] ? need : 0;
            if (!m->scratch[tid]) {
                fprintf(stderr, "mm_bf16: no memory for a scratchpad of %zu bytes\n", need);
                abort();
            }
        }
        dnnl_memory_t ma, mw, mc, ms;
        DNNL_CHECK(dnnl_memory_create(&ma, &p->a, s_dnnl.engine, m->a + (size_t)r0 * g->K));
        DNNL_CHECK(dnnl_memory_create(&mw, &p->w, s_dnnl.engine, (void *)g->W));
        DNNL_CHECK(dnnl_memory_create(&mc, &p->c, s_dnnl.engine, g->C + (size_t)r0 * g->ldc));
        DNNL_CHECK(dnnl_memory_create(&ms, &p->scratch, s_dnnl.engine, m->scratch[tid]));
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma},
                                   {DNNL_ARG_WEIGHTS, mw},
                                   {DNNL_ARG_DST, mc},
                                   {DNNL_ARG_SCRATCHPAD, ms}};
        DNNL_CHECK(dnnl_primitive_execute(p->prim, s_dnnl.stream, 4, args));
        dnnl_memory_destroy(ma);
        dnnl_memory_destroy(mw);
        dnnl_memory_destroy(mc);
        dnnl_memory_destroy(ms);
        if (fresh)
            dnnl_primitive_destroy(own.prim);
    }
}

void mm_bf16_gemm_nt(MmBf16 *m, int M, int N, int K, const float *A, int lda, const uint16_t *W,
                     int ldw, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if ((size_t)M * K > m->a_cap || (beta != 0.0f && beta != 1.0f)) {
        fprintf(stderr, "mm_bf16: product (%d,%d,%d) beta %g outside the copy's room (%zu)\n", M,
                N, K, (double)beta, m->a_cap);
        abort();
    }
    dnnl_ensure();
    convert(m->a, A, (size_t)M, (size_t)K, (size_t)lda);
    /* one piece of whole 16-row units per thread */
    const int units = (M + 15) / 16, threads = par_threads();
    Piece g = {m, M, N, K, ldw, ldc, threads < units ? threads : units, W, C, beta != 0.0f};
    par_for((size_t)g.pieces, 1, piece_run, &g);
    DNNL_CHECK(dnnl_stream_wait(s_dnnl.stream));
}
