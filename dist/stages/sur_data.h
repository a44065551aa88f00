/* sur_data: the linear surrogate's tensors (kernels/surrogate.h) of a task
 * split, computed with the engine's JVP over the ranks and kept on disk.
 *
 * For directions j = t * G + g of a coefficient structure (coef.h) over rows
 * (task t's packed vector, restricted to group g's tensors), every image x of
 * every task of data.tasks gets U(x) = [f0(x); J(theta0) tau_j(x) ...]
 * ((1 + T*G) x E). Images are dealt over the ranks in whole micro-batches
 * (each run at its full size, so U does not depend on the rank count); every
 * micro-batch costs one forward and T*G JVPs at theta0. Each rank writes its
 * images' rows into <run_dir>/surrogate/<tag>.h5 (parallel HDF5, MPI-IO,
 * /<task>/u (n, 1+T*G, E) and /<task>/labels), then every rank reads the
 * whole file back. The file's attribute "key" hashes theta0's checksum, the
 * rows, the structure, the split, the image limit and the task files; a later
 * call (another stage, another run of the same run directory) with the same
 * key reads the file instead of computing it. */
#ifndef TD_SUR_DATA_H
#define TD_SUR_DATA_H

#include "coef.h"
#include "search_mode.h"

typedef struct {
    int T, R, E;                    /* tasks, rows per image (1 + directions), embedding */
    int which[TV_MAX_TASKS + 1];    /* task k's index in r's item layout (paths, head) */
    int64_t n[TV_MAX_TASKS + 1];    /* images of each task */
    float *u[TV_MAX_TASKS + 1];     /* (n, R, E) */
    int32_t *y[TV_MAX_TASKS + 1];   /* (n) labels */
    double seconds;                 /* computing them (0: read from disk) */
} SurData;

/* The tensors of split (limit images, eval.limit style) of the tasks which
 * (nw indices into r's item layout, r->paths; NULL: every task of data.tasks),
 * for rows in structure cs (cs->T rows). tag names the file. Collective over
 * g_rt.comm, agreed. */
TdStatus sur_data_get(ModeRun *r, const CoefSpace *cs, const float *const *rows, const int *which,
                      int nw, int split, int64_t limit, const char *tag, SurData *d);

/* The val accuracies of the tasks which (nw indices into r's item layout,
 * r->paths) at every alpha of the merge.alpha grid, encoder mode_encoder(r,
 * alpha): val[a * nw + i]. ntk (with merge.surrogate.ntk): exact through the
 * linear surrogate (sur_line_acc), its tensors tagged tag; otherwise through
 * the work pool ps, one item per (alpha, task) on one rank. The same values
 * on every rank. Collective over g_rt.comm, agreed. */
TdStatus sur_alpha_grid(ModeRun *r, const int *which, int nw, const PoolSpec *ps,
                        const char *tag, double *val);

/* Exact ntk line searches through the surrogate (sur_alpha_grid): acc[a *
 * nw + i] = the split accuracy of task which[i] (its head r->head[which[i]])
 * under the linearised model at theta0 + r->sign * alpha_a * r->tau, for every
 * alpha_a of the merge.alpha grid, as mode_encoder and eval_accuracy give it
 * (argmax, first on ties), from one forward and one JVP per image (tensors
 * tagged tag, reused by key). The same values on every rank. Collective over
 * g_rt.comm, agreed. */
TdStatus sur_line_acc(ModeRun *r, const int *which, int nw, int split, const char *tag,
                      double *acc);
void sur_data_free(SurData *d);

/* Task k's projections through head (C, E), with the directions tied to the
 * K coefficients of cs summed: p (n, 1 + K, C). Local. */
TdStatus sur_data_project(const SurData *d, const CoefSpace *cs, int k, const float *head, int C,
                          float **p);

/* Every image of split (at most limit, evenly spaced as eval.limit) of the task
 * file path: U (n, 1 + ndir, E) = [f0(x); J(theta0) dirs[0](x); ...], the
 * unnormalised embeddings of m and its JVPs along dirs (table layout, zero
 * outside mask), computed over g_rt.comm in whole micro-batches of batch and
 * gathered on every rank in the split's order. The disentanglement grids of
 * ntk vectors: f_lin(a1, a2) = U0 + a1 U1 + a2 U2. Collective, agreed. */
TdStatus sur_rows_gather(const VitModel *m, const unsigned char *mask, const char *path, int split,
                         int batch, int64_t limit, const float *const *dirs, int ndir, float **U,
                         int64_t *n);

#endif
