/* task_merge: collective merging of task vectors (the task_vectors_<mode>.h5 files
 * of finetune.h) into one direction tau_merged in table layout, and the
 * `tadist merge` / `tadist export` commands.
 *
 * The tasks of a merge are dealt over the ranks of comm (task j to rank
 * j % size). Tensor by tensor, each rank reads its tasks' tensors, applies
 * DARE and the TIES trim, and adds w_t * tau_t into a double accumulator that
 * one MPI_Allreduce sums; TIES needs a second Allreduce of the agreeing sums
 * and counts. Global top-k thresholds are computed first, each rank for its
 * own tasks. Memory: a few tensors per rank, plus one task vector and its
 * magnitudes for global TIES. Every rank ends with the same tau_merged.
 * The encoder is then theta0 + alpha * tau_merged (or, for ntk task vectors,
 * the linearised model f0 + J(theta0) (alpha * tau_merged)). */
#ifndef TD_TASK_MERGE_H
#define TD_TASK_MERGE_H

#include <mpi.h>

#include "config.h"
#include "model_io.h"
#include "status.h"

enum { TV_MAX_TASKS = TD_CFG_LIST_MAX };

/* What a task-vector file holds (attributes and which tensors are present). */
typedef struct {
    char path[700];
    char mode[64];
    char base_checksum[40];
    int ntasks;
    char task[TV_MAX_TASKS][TD_CFG_NAME_MAX];
    char status[TV_MAX_TASKS][16];
    double acc_val[TV_MAX_TASKS], acc_test[TV_MAX_TASKS];
    double t0_val[TV_MAX_TASKS], t0_test[TV_MAX_TASKS];
    unsigned char *mask; /* (table count) tensors stored for the tasks */
} TvInfo;

/* Reads the attributes of path and which tensors of table it holds; any
 * process (independent HDF5). Errors name the file. */
TdStatus tv_info_read(const char *path, const ParamTable *table, TvInfo *tv);
void tv_info_free(TvInfo *tv);
/* Index of task name in tv, or -1. */
int tv_task_index(const TvInfo *tv, const char *name);
/* "<run.out_dir>/<run.name>" and "<run_dir>/task_vectors_<mode>.h5" */
void merge_run_dir(const TdConfig *cfg, char *buf, size_t n);
void merge_tv_path(const TdConfig *cfg, const char *mode, char *buf, size_t n);

/* One merge: which tasks of the file, their coefficients, and the method. */
typedef struct {
    int ntasks;
    int task[TV_MAX_TASKS];    /* indices into TvInfo */
    double coef[TV_MAX_TASKS]; /* w_t (1 for plain task arithmetic) */
    int mean;                  /* divide by ntasks (weight average; TIES: disjoint mean) */
    int ties;                  /* trim + elect + disjoint combine */
    double ties_k;             /* percent kept */
    int ties_global;           /* one threshold per task over the model, else per tensor */
    double dare_p;             /* 0 = no DARE */
    unsigned long long dare_seed;
} MergeSpec;

/* The spec of merge.methods entry `method` over every task of data.tasks
 * (each must be in tv), coefficients 1. */
TdStatus merge_spec_from_config(const TdConfig *cfg, const char *method, const TvInfo *tv,
                                MergeSpec *spec);

/* tau (table layout, table.total floats): the merged task vector on every
 * rank, zero outside tv->mask. Collective over comm; the status is agreed. */
TdStatus merge_collective(MPI_Comm comm, const TvInfo *tv, const VitModel *theta0,
                          const MergeSpec *spec, float *tau);

/* The per-task terms of merge(spec), for searches over per-task (and
 * per-block) coefficients (kernels/coef.h): row j (spec task j) is that task
 * vector packed over tv->mask (table order), with DARE applied, for TIES
 * trimmed and kept only where it agrees with the elected sign (divided by the
 * number of agreeing tasks with combine = mean), divided by ntasks for mean,
 * times spec->coef[j]. So sum_j rows[j] is merge_collective(spec) up to
 * rounding, and a coefficient a_j scales task j's share of that merge (the
 * AdaMerging++ order: TIES and DARE first). rows (spec->ntasks x n floats,
 * n = the mask's elements) is written on the ranks with write != 0 (one per
 * node, for a shared buffer); collective over comm, the status agreed. */
TdStatus merge_rows(MPI_Comm comm, const TvInfo *tv, const VitModel *theta0,
                    const MergeSpec *spec, float *rows, int write);

#endif
