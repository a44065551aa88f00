#include "runtime.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "parallel.h"
#include "rng.h"

Runtime g_rt = {.micro_batch = TD_MICRO_BATCH_DEFAULT};
static double g_t0;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double td_wall(void) { return now() - g_t0; }

RuntimeCpu runtime_cpu_flags(void)
{
    __builtin_cpu_init();
    return (RuntimeCpu){.avx2 = __builtin_cpu_supports("avx2"),
                        .fma = __builtin_cpu_supports("fma"),
                        .avx512f = __builtin_cpu_supports("avx512f"),
                        .avx512bw = __builtin_cpu_supports("avx512bw"),
                        .avx512vl = __builtin_cpu_supports("avx512vl")};
}

/* How far each of OpenBLAS's x86-64 kernels (openblas_get_corename's names)
 * uses the vector units: 0 SSE only, 1 AVX, 2 AVX2 + FMA, 3 AVX-512. A kernel
 * of a lower tier is taken to be the slower one on a CPU that runs a higher
 * tier (measured for Haswell against SkylakeX: README, BLAS and threads); names
 * not listed are unknown (-1), and nothing is claimed about them. */
static const struct {
    const char *name;
    int tier;
} k_kernels[] = {
    {"Katmai", 0},      {"Coppermine", 0}, {"Northwood", 0},    {"Prescott", 0},
    {"Banias", 0},      {"Atom", 0},       {"Core2", 0},        {"Penryn", 0},
    {"Dunnington", 0},  {"Nehalem", 0},    {"Athlon", 0},       {"Opteron", 0},
    {"Opteron_SSE3", 0}, {"Barcelona", 0}, {"Nano", 0},         {"Bobcat", 0},
    {"Sandybridge", 1}, {"Bulldozer", 1},  {"Piledriver", 1},   {"Steamroller", 1},
    {"Excavator", 1},   {"Haswell", 2},    {"Zen", 2},          {"SkylakeX", 3},
    {"Cooperlake", 3},  {"SapphireRapids", 3},
};

/* OPENBLAS_CORETYPE is matched without regard to case, so the names are too. */
static int kernel_tier(const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < sizeof k_kernels / sizeof k_kernels[0]; i++)
        if (strcasecmp(name, k_kernels[i].name) == 0)
            return k_kernels[i].tier;
    return -1;
}

/* The kernel tadist would run on cpu: the best of the two it knows to be
 * right for sgemm there, or NULL (no AVX2: nothing better to offer). */
static const char *best_kernel(RuntimeCpu cpu)
{
    if (cpu.avx512f && cpu.avx512bw && cpu.avx512vl)
        return "SkylakeX";
    if (cpu.avx2 && cpu.fma)
        return "Haswell";
    return NULL;
}

RuntimeBlasPlan runtime_blas_plan(const char *user_coretype, bool reexeced, const char *core,
                                  RuntimeCpu cpu)
{
    const RuntimeBlasPlan keep = {RUNTIME_BLAS_KEEP, NULL};
    const char *best = best_kernel(cpu);
    if (reexeced || !best)
        return keep; /* we already tried (never loop), or there is nothing better */
    if (user_coretype) {
        /* The user's (or the site's) choice stands: older OpenBLAS builds crash
         * on some CPUs, which is why machines set it. Judge the kernel OpenBLAS
         * runs, which is the value set unless OpenBLAS did not know that name. */
        int t = kernel_tier(core && *core ? core : user_coretype);
        if (t >= 0 && t < kernel_tier(best))
            return (RuntimeBlasPlan){RUNTIME_BLAS_HINT, best};
        return keep;
    }
    /* Only a generic (SSE) kernel counts as a wrong detection: a slower AVX one
     * may be what the CPU does best among the kernels this OpenBLAS knows. */
    if (kernel_tier(core) == 0)
        return (RuntimeBlasPlan){RUNTIME_BLAS_REEXEC, best};
    return keep;
}

void runtime_blas_hint(char *buf, size_t size, const char *user_coretype, const char *core,
                       const char *faster)
{
    if (!user_coretype)
        user_coretype = "";
    char running[96] = "";
    if (core && *core && strcasecmp(core, user_coretype) != 0)
        snprintf(running, sizeof running, " (OpenBLAS runs %s)", core);
    const char *ran = core && *core ? core : user_coretype;
    /* Only the pair that was measured gets figures (README, BLAS and threads). */
    char cost[160] = "";
    if (strcasecmp(ran, "Haswell") == 0 && strcmp(faster, "SkylakeX") == 0)
        snprintf(cost, sizeof cost,
                 ", which ran ViT-B/32 1.5x (forward) to 2.1x (ntk step) as fast as Haswell "
                 "on a 2-core AMD EPYC Zen 5");
    snprintf(buf, size,
             "OPENBLAS_CORETYPE=%s is set%s; this CPU also supports %s%s (unset "
             "OPENBLAS_CORETYPE or set it to %s to use it)",
             user_coretype, running, faster, cost, faster);
}

/* Set by runtime_blas_start for runtime_init's log lines, which need MPI. */
static RuntimeBlasPlan g_blas_plan;
static int g_reexec_errno;

/* Before MPI_Init: acts on the plan for this process's real inputs. Debian's
 * OpenBLAS 0.3.21 names some AVX-512 CPUs "Prescott" and then runs SSE3
 * kernels, about 7x slower for sgemm. The core type is read when the library
 * loads, so the only fix from inside is to set it and exec again. Returns only
 * when it keeps the kernel (or the exec failed). */
static void runtime_blas_start(char **argv)
{
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *core = openblas_get_corename();
    g_blas_plan =
        runtime_blas_plan(user, getenv("TADIST_BLAS_REEXEC") != NULL, core, runtime_cpu_flags());
    if (g_blas_plan.action != RUNTIME_BLAS_REEXEC)
        return;
    setenv("OPENBLAS_CORETYPE", g_blas_plan.kernel, 1);
    setenv("TADIST_BLAS_REEXEC", core, 1); /* the core detected, for the log line */
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernel, and say so later */
    g_reexec_errno = errno;
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("TADIST_BLAS_REEXEC");
}

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    char *end;
    long x = strtol(v, &end, 10);
    return (*end == '\0' && x > 0 && x < 4096) ? (int)x : fallback;
}

/* sgemm against a naive double product: catches a broken or mis-detected kernel. */
static TdStatus blas_self_check(void)
{
    enum { M = 67, N = 45, K = 71 };
    static float a[M * K], b[K * N], c[M * N];
    TdRng r;
    rng_seed(&r, 12345);
    for (int i = 0; i < M * K; i++)
        a[i] = (float)rng_normal(&r);
    for (int i = 0; i < K * N; i++)
        b[i] = (float)rng_normal(&r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    double worst = 0.0, scale = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += (double)a[i * K + k] * b[k * N + j];
            worst = fmax(worst, fabs(s - c[i * N + j]));
            scale = fmax(scale, fabs(s));
        }
    if (!(worst <= 1e-5 * scale))
        return td_fail(TD_ERR_NUMERIC,
                       "BLAS self-check failed: sgemm (core %s) differs from a naive product by "
                       "%.3g relative; set OPENBLAS_CORETYPE to a kernel this CPU supports",
                       openblas_get_corename(), worst / scale);
    return TD_OK;
}

/* Rank 0's start-up lines: the kernel OpenBLAS runs and why, ranks, threads. */
static void log_startup(void)
{
    const char *was = getenv("TADIST_BLAS_REEXEC");
    if (was)
        td_log("OpenBLAS detected this CPU as %s; running with OPENBLAS_CORETYPE=%s", was,
               getenv("OPENBLAS_CORETYPE"));
    if (g_reexec_errno)
        td_log("OpenBLAS runs %s, slow on this CPU; re-executing with OPENBLAS_CORETYPE=%s "
               "failed (%s)",
               g_rt.blas_core, g_blas_plan.kernel, strerror(g_reexec_errno));
    td_log("%d rank(s), %d per node; BLAS core %s, %d thread(s) per rank", g_rt.size,
           g_rt.node_size, g_rt.blas_core, g_rt.blas_threads);
    if (g_blas_plan.action == RUNTIME_BLAS_HINT) {
        char hint[512];
        runtime_blas_hint(hint, sizeof hint, getenv("OPENBLAS_CORETYPE"), g_rt.blas_core,
                          g_blas_plan.kernel);
        td_log("%s", hint);
    }
}

/* ---- graceful stop ---- */

static volatile sig_atomic_t g_stop_sig; /* the handler's only write */
static int g_stop_agreed;                /* a runtime_stop_requested said yes */

static void stop_handler(int sig) { g_stop_sig = sig; }

static void stop_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stop_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* reads, writes and MPI's polls carry on */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int runtime_stop_signal(void) { return (int)g_stop_sig; }

bool runtime_stop_requested(MPI_Comm comm)
{
    /* the signal's number (SIGUSR1 10, SIGTERM 15), 1 = agreed before, 0 = none */
    int mine = g_stop_sig ? (int)g_stop_sig : g_stop_agreed, any = 0, rank;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any == 0)
        return false;
    MPI_Comm_rank(comm, &rank);
    if (!g_stop_agreed && rank == 0)
        td_log_rank("stop requested (%s): finishing the current step, then writing checkpoints",
                    any == SIGTERM ? "SIGTERM" : any == SIGUSR1 ? "SIGUSR1" : "signal");
    g_stop_agreed = 1;
    return true;
}

TdStatus runtime_stop(const char *fmt, ...)
{
    char what[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    g_stop_agreed = 1;
    int sig = (int)g_stop_sig;
    return td_fail(TD_STOPPED, "stopped on %s %s; run the same command again to resume",
                   sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1" : "a signal", what);
}

void runtime_init(int *argc, char ***argv)
{
    stop_install(); /* first: a signal during start-up (a batch job's warning) is kept, not fatal */
    runtime_blas_start(*argv);
    g_t0 = now();
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rt.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_rt.size);
    g_rt.world_rank = g_rt.rank;
    g_rt.world_size = g_rt.size;
    g_rt.comm = MPI_COMM_WORLD;
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rt.rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &g_rt.node_rank);
    MPI_Comm_size(node, &g_rt.node_size);
    MPI_Comm_free(&node);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    stop_install(); /* after MPI_Init, so that these handlers are the ones in place */

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int def = (int)(cores / g_rt.node_size);
    runtime_set_threads(env_int("TADIST_BLAS_THREADS", def < 1 ? 1 : def));
    snprintf(g_rt.blas_core, sizeof g_rt.blas_core, "%s", openblas_get_corename());

    TdStatus s = runtime_agree(MPI_COMM_WORLD, blas_self_check());
    if (s != TD_OK)
        exit(runtime_finish(s));
    if (getenv("TADIST_QUIET") == NULL)
        log_startup();
}

void runtime_set_threads(int n)
{
    g_rt.blas_threads = n;
    par_set_threads(n); /* the pool; it also sets OpenBLAS to one thread (parallel.h) */
}

void runtime_finalize(void) { MPI_Finalize(); }

void runtime_enter_group(MPI_Comm comm, const char *tag)
{
    g_rt.comm = comm;
    MPI_Comm_rank(comm, &g_rt.rank);
    MPI_Comm_size(comm, &g_rt.size);
    snprintf(g_rt.tag, sizeof g_rt.tag, "%s", tag ? tag : "");
}

void runtime_leave_group(void)
{
    g_rt.comm = MPI_COMM_WORLD;
    g_rt.rank = g_rt.world_rank;
    g_rt.size = g_rt.world_size;
    g_rt.tag[0] = '\0';
}

void runtime_idle_barrier(MPI_Comm comm)
{
    MPI_Request req;
    MPI_Ibarrier(comm, &req);
    int done = 0;
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    while (!done) {
        struct timespec ts = {0, 20 * 1000 * 1000}; /* 20 ms */
        nanosleep(&ts, NULL);
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    }
}

TdStatus runtime_agree(MPI_Comm comm, TdStatus s)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int mine = (s != TD_OK) ? rank : size, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size)
        return TD_OK;
    /* everyone learns the first failing rank's message and code */
    char msg[1024];
    int code = (int)s;
    if (rank == first) {
        int world;
        MPI_Comm_rank(MPI_COMM_WORLD, &world);
        snprintf(msg, sizeof msg, "rank %d: %s", world, td_error_message());
    }
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, first, comm);
    MPI_Bcast(&code, 1, MPI_INT, first, comm);
    td_error_clear();
    return td_fail((TdStatus)code, "%s", msg);
}

TdStatus runtime_shared_alloc(MPI_Comm comm, size_t bytes, SharedBuf *b)
{
    memset(b, 0, sizeof *b);
    b->win = MPI_WIN_NULL;
    b->node = MPI_COMM_NULL;
    TdStatus s = TD_OK;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &b->node) !=
        MPI_SUCCESS)
        s = td_fail(TD_ERR_MPI, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) failed");
    if (s == TD_OK) {
        MPI_Comm_rank(b->node, &b->node_rank);
        MPI_Aint mine = b->node_rank == 0 ? (MPI_Aint)(bytes ? bytes : 1) : 0;
        void *base = NULL;
        if (MPI_Win_allocate_shared(mine, 1, MPI_INFO_NULL, b->node, &base, &b->win) !=
            MPI_SUCCESS)
            s = td_fail(TD_ERR_NOMEM, "cannot allocate a shared buffer of %zu bytes on this node",
                        bytes);
    }
    if (s == TD_OK) {
        MPI_Aint sz;
        int disp;
        MPI_Win_shared_query(b->win, 0, &sz, &disp, &b->base);
        b->bytes = bytes;
        if (b->node_rank == 0)
            memset(b->base, 0, bytes);
        runtime_shared_sync(b);
    }
    return runtime_agree(comm, s);
}

void runtime_shared_sync(SharedBuf *b)
{
    /* the unified memory model: a fence orders the node's loads and stores */
    MPI_Win_fence(0, b->win);
}

void runtime_shared_free(SharedBuf *b)
{
    if (b->win != MPI_WIN_NULL)
        MPI_Win_free(&b->win);
    if (b->node != MPI_COMM_NULL)
        MPI_Comm_free(&b->node);
    memset(b, 0, sizeof *b);
    b->win = MPI_WIN_NULL;
    b->node = MPI_COMM_NULL;
}

int runtime_finish(TdStatus s)
{
    if (s == TD_OK) {
        MPI_Finalize();
        return 0;
    }
    /* A stop anywhere in the job makes it a stopped run, whatever message
     * travelled (a sweep reports its stopped runs as failed ones). */
    int stopped = s == TD_STOPPED || g_stop_agreed;
    MPI_Allreduce(MPI_IN_PLACE, &stopped, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (stopped) {
        if (g_rt.world_rank == 0) {
            fprintf(stderr, "tadist: %s%s (exit status %d)\n", s == TD_STOPPED ? "" : "stopped: ",
                    td_error_message(), TD_EXIT_STOPPED);
            fflush(stderr);
        }
        MPI_Finalize();
        return TD_EXIT_STOPPED;
    }
    if (g_rt.rank == 0) {
        fprintf(stderr, "tadist: error: %s\n", td_error_message());
        if (getenv("TADIST_DEBUG"))
            fprintf(stderr, "tadist:   at %s\n", td_error_where());
        fflush(stderr);
    }
    MPI_Finalize();
    return 1 + (int)s % 100;
}

_Noreturn void runtime_abort(TdStatus code)
{
    fprintf(stderr, "tadist: error on rank %d: %s\n", g_rt.world_rank, td_error_message());
    if (getenv("TADIST_DEBUG"))
        fprintf(stderr, "tadist:   at %s\n", td_error_where());
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1 + (int)code % 100);
    exit(1);
}

static void vlog(int tag_rank, const char *fmt, va_list ap)
{
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    if (tag_rank)
        fprintf(stdout, "[%8.1fs rank %d%s%s] %s\n", td_wall(), g_rt.world_rank,
                g_rt.tag[0] ? " " : "", g_rt.tag, line);
    else
        fprintf(stdout, "[%8.1fs%s%s] %s\n", td_wall(), g_rt.tag[0] ? " " : "", g_rt.tag, line);
    fflush(stdout);
}

void td_log(const char *fmt, ...)
{
    if (g_rt.rank != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(0, fmt, ap);
    va_end(ap);
}

void td_log_rank(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(1, fmt, ap);
    va_end(ap);
}

double runtime_peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}
