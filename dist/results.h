/* results: where every number a run reports is kept.
 *
 *   <run_dir>/results.json   one JSON document, updated stage by stage
 *   <run_dir>/grids.h5       every grid (accuracy against alpha, disentanglement
 *                            maps, ...) as float64 datasets at HDF5 paths
 *
 * results.json layout (stages fill their own parts; keys are plain names):
 *   { "run": name, "tasks": [..],
 *     "modes": { "<mode>": {
 *         "train_seconds": s, "tv_norm": { "<task>": |tau|_2 },
 *         "single":   { "<task>": {"val", "test", "theta0_val", "theta0_test"} },
 *         "addition": { "<method>": { "alpha": a, "grid": "<grids.h5 path>",
 *                        "heads": { "<head set>": { "abs_test", "norm_test",
 *                                   "per_task": { "<task>": {"abs", "norm"} } } } } },
 *         "negation": { "<task>": {"alpha", "target_test", "control_test",
 *                                  "theta0_target_test", "theta0_control_test"} },
 *         "disentangle": { "<t1>+<t2>": {"grid": path, "mean_err_pred", "mean_err_repr"} },
 *         "kernel": { "<task>": {"acc_nonlinear", "acc_linearised", "disagreement"} } } } }
 * Head sets: "theta0" (the frozen heads), "finetuned" (when trained), "refit"
 * (prototypes refit on the merged encoder's own features).
 *
 * Single-process: call on one rank (rank 0); files are replaced atomically. */
#ifndef TD_RESULTS_H
#define TD_RESULTS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "status.h"

/* Sets the value at a dotted key path ("modes.attn.single.mnist"), creating
 * objects on the way and replacing what was there; takes ownership of value
 * (also on failure). Reads and rewrites results.json atomically. */
TdStatus results_set(const char *run_dir, const char *key_path, cJSON *value);

/* Reads results.json (an empty object when the file does not exist); free
 * with cJSON_Delete. */
TdStatus results_load(const char *run_dir, cJSON **root);

/* Writes a float64 grid of rank ndim (<= 4) at an HDF5 path in grids.h5
 * ("/attn/addition/sum/val_norm"), creating groups, replacing an existing
 * dataset. axes (may be NULL) names each dimension, stored as attribute
 * "axes" ("alpha,task"). */
TdStatus results_grid_write(const char *run_dir, const char *dset_path, const double *data,
                            int ndim, const size_t *dims, const char *axes);

/* Reads a grid written by results_grid_write; *data is malloc'ed. */
TdStatus results_grid_read(const char *run_dir, const char *dset_path, double **data, int *ndim,
                           size_t dims[4]);

#endif
