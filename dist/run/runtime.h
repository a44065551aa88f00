/* runtime: process start-up and shutdown shared by every command.
 *
 * runtime_init (collective over MPI_COMM_WORLD) makes sure OpenBLAS runs a
 * kernel that suits the CPU (re-executing the program with OPENBLAS_CORETYPE
 * set when Debian's build would fall back to a generic one; a value the user
 * set is kept, with a hint when the CPU supports a faster kernel: the decision
 * is runtime_blas_plan), initialises MPI,
 * sets the threads per rank (the kernels' pool, which also splits the BLAS calls:
 * kernels/parallel.h) to cores-per-node / ranks-per-node unless the user chose,
 * and checks one sgemm against a naive product. */
#ifndef TD_RUNTIME_H
#define TD_RUNTIME_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "status.h"

typedef struct {
    /* The communicator the current run's stages work over: MPI_COMM_WORLD, or
     * one sweep group's (runtime_enter_group). rank and size are in it; every
     * stage is collective over comm, never over MPI_COMM_WORLD itself. */
    MPI_Comm comm;
    int rank, size;
    int world_rank, world_size;
    char tag[64];              /* prefix of log lines inside a group ("run 3") */
    int node_rank, node_size;  /* among the ranks sharing this node */
    int blas_threads;
    int micro_batch;           /* images per pass of the encoder (blas.micro_batch): the
                                  unit ranks share work in (dist/stages/train_step.h) */
    char blas_core[64];
    int eval_bf16;             /* eval.precision = bf16: evaluation forwards set VitWork.bf16
                                  (evaluate.c; fp32 where the CPU lacks native bf16) */
} Runtime;

extern Runtime g_rt;

/* blas.micro_batch's default, g_rt.micro_batch until a configuration sets it. */
#define TD_MICRO_BATCH_DEFAULT 16

/* Call first thing in main, with main's argc/argv. May not return (re-exec). */
void runtime_init(int *argc, char ***argv);
void runtime_finalize(void);

/* ---- which OpenBLAS kernel (core type) to run --------------------------------
 * runtime_init gathers the inputs (the environment, OpenBLAS's core name, the
 * CPU's flags) and acts on the plan; the decision itself is pure, so that a
 * test can try every case without touching the environment. */

/* The CPU flags OpenBLAS's x86-64 kernels need (as __builtin_cpu_supports
 * reports them: the OS must save the registers too). */
typedef struct {
    bool avx2, fma;                   /* Haswell */
    bool avx512f, avx512bw, avx512vl; /* SkylakeX */
} RuntimeCpu;

typedef enum {
    RUNTIME_BLAS_KEEP,   /* run what OpenBLAS runs, say nothing */
    RUNTIME_BLAS_REEXEC, /* set OPENBLAS_CORETYPE=kernel and execute the program again */
    RUNTIME_BLAS_HINT,   /* keep the kernel the user set; say that `kernel` is faster */
} RuntimeBlasAction;

typedef struct {
    RuntimeBlasAction action;
    const char *kernel; /* REEXEC: the kernel to run; HINT: the faster one; KEEP: NULL */
} RuntimeBlasPlan;

/* user_coretype: OPENBLAS_CORETYPE as found in the environment, NULL when
 * unset (set, even to "", it is never overridden); reexeced: this process is
 * already tadist's re-execution (never plan another); core: the kernel
 * OpenBLAS runs, openblas_get_corename() (NULL = unknown); cpu: this CPU. */
RuntimeBlasPlan runtime_blas_plan(const char *user_coretype, bool reexeced, const char *core,
                                  RuntimeCpu cpu);

/* This CPU's flags. */
RuntimeCpu runtime_cpu_flags(void);

/* The start-up line of a RUNTIME_BLAS_HINT plan, into buf: names the value
 * set, the kernel running (when it differs), the faster one and, for Haswell
 * against SkylakeX, what that cost in a measurement. */
void runtime_blas_hint(char *buf, size_t size, const char *user_coretype, const char *core,
                       const char *faster);

/* Threads per rank for BLAS and for the kernels' own parallel loops. */
void runtime_set_threads(int n);

/* Makes comm (a sub-communicator of MPI_COMM_WORLD) the run communicator of
 * this rank, tagging its log lines with tag ("" = none); runtime_leave_group
 * returns to MPI_COMM_WORLD (it does not free comm). */
void runtime_enter_group(MPI_Comm comm, const char *tag);
void runtime_leave_group(void);

/* Barrier over comm that sleeps while it waits instead of spinning, so that
 * ranks without work leave their cores to the ranks that still compute. */
void runtime_idle_barrier(MPI_Comm comm);

/* Ends the whole job with the recorded error (td_error_message), naming this
 * rank. Use when only some ranks may have failed; MPI_Abort never hangs. */
_Noreturn void runtime_abort(TdStatus code);

/* Collective over comm: true on every rank when s == TD_OK on every rank.
 * Call before the next collective whenever a rank may have failed alone. The
 * ranks that did not fail learn the first failing rank's message. */
TdStatus runtime_agree(MPI_Comm comm, TdStatus s);

/* One buffer per node, shared by the ranks of a communicator that run on
 * that node (an MPI-3 shared-memory window): the node's first rank allocates
 * it, the others map the same memory. Large read-mostly data (the task
 * vectors of a coefficient search) is then held once per node, not once per
 * rank. Writers must be ordered by runtime_shared_sync. */
typedef struct {
    MPI_Comm node;  /* the ranks of comm on this node */
    int node_rank;  /* 0: the rank that allocated the memory */
    MPI_Win win;
    void *base;
    size_t bytes;
} SharedBuf;

/* Collective over comm; the status is agreed. Zeroed memory. */
TdStatus runtime_shared_alloc(MPI_Comm comm, size_t bytes, SharedBuf *b);
/* Collective over the node: every write made before is visible after. */
void runtime_shared_sync(SharedBuf *b);
/* Collective over comm (the communicator of the alloc). */
void runtime_shared_free(SharedBuf *b);

/* ---- graceful stop: SIGTERM and SIGUSR1 --------------------------------------
 * runtime_init installs handlers for SIGTERM (scancel, a batch system's time
 * limit) and SIGUSR1 (Slurm's --signal=B:USR1@T warning, forwarded by the
 * batch script) that only record the signal. The long stages ask at their
 * safe points (between training steps, between work items of a search) with
 * runtime_stop_requested, a collective that is true on every rank of comm
 * once any of them got a signal. They then finish the step they are in, write
 * their checkpoint and return runtime_stop(): every rank ends with
 * TD_EXIT_STOPPED, and the same command run again resumes with nothing that
 * was completed lost. */

/* Exit status of a stopped run: EX_TEMPFAIL, "try again" (jobs/slurm_vit.sbatch
 * requeues the job on it). */
#define TD_EXIT_STOPPED 75
/* The status of a stopped run, through the stages to runtime_finish (outside
 * TdStatus's own codes, which run from 0 to 9). */
#define TD_STOPPED ((TdStatus)75)

/* This rank's signal (SIGTERM, SIGUSR1), 0 = none. Local, no MPI. */
int runtime_stop_signal(void);
/* Collective over comm: true on every rank when any rank of comm got a
 * signal, or has already agreed on a stop. One MPI_Allreduce of an int. */
bool runtime_stop_requested(MPI_Comm comm);
/* Records the stop (TD_STOPPED, a message naming the signal and where the
 * run stopped: printf-style) and returns TD_STOPPED. */
TdStatus runtime_stop(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Ends the program: on success finalizes and returns 0; on failure prints the
 * message once (from the lowest failing rank) and returns an exit code:
 * TD_EXIT_STOPPED when the run stopped on a signal (on any rank of the job),
 * else 1 + the code. The status must already be agreed across ranks
 * (runtime_agree). */
int runtime_finish(TdStatus s);

/* Progress line from rank 0 of the run communicator, with elapsed time:
 * "[  12.3s] message" (inside a group: "[  12.3s run 3] message"). */
void td_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Any-rank line tagged with the world rank: "[  12.3s rank 3] message". */
void td_log_rank(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double td_wall(void); /* seconds since runtime_init */

/* Peak resident memory of this process, in MiB. */
double runtime_peak_rss_mib(void);

#endif
