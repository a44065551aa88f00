#include "parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

/* Workers and the caller spin this long for the next job (or the last
 * worker) before they sleep: the step's loops and products follow each other
 * within microseconds, and a futex wake-up costs tens of them. Nothing spins
 * for longer, so an idle pool takes no CPU. */
#define SPIN_NS 50000L

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct {
    pthread_t thread;
    int started;
    unsigned long seen; /* last job done; starts at the job count when created */
} Worker;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    int threads;          /* including the caller */
    Worker w[TD_PAR_MAX_THREADS];
    unsigned long job;    /* generation: bumped per par_for */
    int pending;          /* workers still busy with the current job */
    int quit;
    ParFn fn;
    void *ctx;
    size_t n, chunk;      /* items, and items per range */
} g = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .wake = PTHREAD_COND_INITIALIZER,
       .done = PTHREAD_COND_INITIALIZER,
       .threads = 1};

static void run_range(int tid)
{
    size_t begin = (size_t)tid * g.chunk;
    if (begin >= g.n)
        return;
    size_t end = begin + g.chunk < g.n ? begin + g.chunk : g.n;
    g.fn(g.ctx, begin, end, tid);
}

/* g.job and g.pending are read without the lock while spinning (atomics).
 * g.job is only bumped under the lock, and the worker that brings g.pending
 * to zero takes the lock before it signals, so a sleeper never misses its
 * wake-up. */
static void *worker_main(void *arg)
{
    int tid = (int)(size_t)arg;
    pthread_mutex_lock(&g.lock);
    unsigned long seen = g.w[tid].seen;
    for (;;) {
        if (!g.quit && __atomic_load_n(&g.job, __ATOMIC_ACQUIRE) == seen) {
            pthread_mutex_unlock(&g.lock);
            long until = now_ns() + SPIN_NS;
            int spins = 0;
            while (__atomic_load_n(&g.job, __ATOMIC_ACQUIRE) == seen &&
                   !__atomic_load_n(&g.quit, __ATOMIC_RELAXED)) {
                cpu_relax();
                if (++spins % 64 == 0 && now_ns() > until)
                    break;
            }
            pthread_mutex_lock(&g.lock);
        }
        while (!g.quit && g.job == seen)
            pthread_cond_wait(&g.wake, &g.lock);
        if (g.quit)
            break;
        seen = g.job;
        pthread_mutex_unlock(&g.lock);
        run_range(tid);
        if (__atomic_sub_fetch(&g.pending, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_mutex_lock(&g.lock);
            pthread_cond_signal(&g.done);
        } else {
            pthread_mutex_lock(&g.lock);
        }
    }
    pthread_mutex_unlock(&g.lock);
    return NULL;
}

static void stop_workers(void)
{
    pthread_mutex_lock(&g.lock);
    __atomic_store_n(&g.quit, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&g.wake);
    pthread_mutex_unlock(&g.lock);
    for (int i = 1; i < g.threads; i++)
        if (g.w[i].started)
            pthread_join(g.w[i].thread, NULL);
    for (int i = 1; i < g.threads; i++)
        g.w[i].started = 0;
    g.quit = 0;
    g.threads = 1;
}

/* OpenBLAS on one thread from the start, in every program that links the
 * kernels, not only after par_set_threads: its own threading splits a
 * product by the thread count, and the results of a product must not depend
 * on it (ops.c: gemm_plan). A program that never sets up the pool (a test
 * tool, say) still computes the same bits as tadist. */
__attribute__((constructor)) static void blas_one_thread(void) { openblas_set_num_threads(1); }

void par_set_threads(int n)
{
    if (n < 1)
        n = 1;
    if (n > TD_PAR_MAX_THREADS)
        n = TD_PAR_MAX_THREADS;
    /* The pool runs the large products itself (ops.c splits them), so
     * OpenBLAS gets one thread: its own workers spin for a long while after
     * each threaded call and would take the cores the pool's loops need. */
    openblas_set_num_threads(1);
    if (n == g.threads)
        return;
    stop_workers();
    int ok = 1;
    for (int i = 1; i < n && ok; i++) {
        g.threads = i; /* only started workers count if one fails to start */
        g.w[i].seen = g.job; /* a new worker must not run a job that is already over */
        ok = pthread_create(&g.w[i].thread, NULL, worker_main, (void *)(size_t)i) == 0;
        g.w[i].started = ok;
        if (ok)
            g.threads = i + 1;
    }
}

int par_threads(void) { return g.threads; }

void par_for(size_t n, size_t min_chunk, ParFn fn, void *ctx)
{
    if (n == 0)
        return;
    size_t parts = (size_t)g.threads;
    if (min_chunk < 1)
        min_chunk = 1;
    if (parts > 1 && n / parts < min_chunk)
        parts = n / min_chunk > 1 ? n / min_chunk : 1;
    if (parts <= 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&g.lock);
    g.fn = fn;
    g.ctx = ctx;
    g.n = n;
    g.chunk = (n + parts - 1) / parts;
    __atomic_store_n(&g.pending, g.threads - 1, __ATOMIC_RELAXED);
    __atomic_store_n(&g.job, g.job + 1, __ATOMIC_RELEASE); /* publishes the fields above */
    pthread_cond_broadcast(&g.wake);
    pthread_mutex_unlock(&g.lock);
    run_range(0);
    long until = now_ns() + SPIN_NS;
    int spins = 0;
    while (__atomic_load_n(&g.pending, __ATOMIC_ACQUIRE) > 0) {
        cpu_relax();
        if (++spins % 64 == 0 && now_ns() > until)
            break;
    }
    if (__atomic_load_n(&g.pending, __ATOMIC_ACQUIRE) > 0) {
        pthread_mutex_lock(&g.lock);
        while (__atomic_load_n(&g.pending, __ATOMIC_ACQUIRE) > 0)
            pthread_cond_wait(&g.done, &g.lock);
        pthread_mutex_unlock(&g.lock);
    }
}

static void zero_range(void *ctx, size_t b, size_t e, int tid)
{
    memset((float *)ctx + b, 0, (e - b) * sizeof(float));
}

void par_zero(float *x, size_t n) { par_for(n, 1 << 16, zero_range, x); }
