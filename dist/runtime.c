#include "runtime.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "parallel.h"
#include "rng.h"

Runtime g_rt;
static double g_t0;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double td_wall(void) { return now() - g_t0; }

/* Debian's OpenBLAS 0.3.21 names some AVX-512 CPUs "Prescott" and then runs
 * SSE3 kernels, about 7x slower for sgemm. The core type is read when the
 * library loads, so the only fix from inside is to set it and exec again. */
static const char *wanted_coretype(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    return NULL;
}

static int core_is_generic(const char *core)
{
    static const char *generic[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                    "Atom",     "Katmai", "Northwood", "Banias"};
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        if (strcasecmp(core, generic[i]) == 0)
            return 1;
    return 0;
}

static void fix_blas_coretype(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || getenv("TADIST_BLAS_REEXEC"))
        return; /* the user chose, or we already tried */
    const char *want = wanted_coretype();
    /* TADIST_TEST_BLAS_CORE pretends OpenBLAS named another core: the test of this path */
    const char *core = getenv("TADIST_TEST_BLAS_CORE");
    if (!core || !*core)
        core = openblas_get_corename();
    if (!want || !core || !core_is_generic(core))
        return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("TADIST_BLAS_REEXEC", core, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernel, and say so later */
    unsetenv("OPENBLAS_CORETYPE");
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

void runtime_init(int *argc, char ***argv)
{
    fix_blas_coretype(*argv);
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

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int def = (int)(cores / g_rt.node_size);
    runtime_set_threads(env_int("TADIST_BLAS_THREADS", def < 1 ? 1 : def));
    snprintf(g_rt.blas_core, sizeof g_rt.blas_core, "%s", openblas_get_corename());

    TdStatus s = runtime_agree(MPI_COMM_WORLD, blas_self_check());
    if (s != TD_OK)
        exit(runtime_finish(s));
    const char *was = getenv("TADIST_BLAS_REEXEC");
    if (was && g_rt.rank == 0 && getenv("TADIST_QUIET") == NULL)
        td_log("OpenBLAS detected this CPU as %s; running with OPENBLAS_CORETYPE=%s", was,
               getenv("OPENBLAS_CORETYPE"));
    if (getenv("TADIST_QUIET") == NULL)
        td_log("%d rank(s), %d per node; BLAS core %s, %d thread(s) per rank", g_rt.size,
               g_rt.node_size, g_rt.blas_core, g_rt.blas_threads);
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

int runtime_finish(TdStatus s)
{
    if (s == TD_OK) {
        MPI_Finalize();
        return 0;
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
