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
 *         "single":   { "<task>": {"val", "test", "theta0_val", "theta0_test", "status",
 *                        "heads": { "<head set>": {"val", "test"} } } },
 *         "addition": { "<method>": { "alpha": a, "alpha_index": i, "grid": "<grids.h5 path>",
 *                        "norm_val", "norm_val_by",
 *                        "heads": { "<head set>": { "abs_test", "norm_test", "normalised_by",
 *                                   "per_task": { "<task>": {"abs", "norm"} } } } } },
 *         "negation": { "<task>": {"alpha", "alpha_index", "target_test", "control_test",
 *                                  "theta0_target_test", "theta0_control_test", "target_val",
 *                                  "control_val", "theta0_control_val", "threshold", ...} },
 *         "disentangle": { "<t1>+<t2>": {"grid": path, "mean_err_pred", "mean_err_repr"} },
 *         "kernel": { "<task>": {"acc_nonlinear", "acc_linearised", "disagreement",
 *                                "feature_gap", "feature_shift", "trained", "images"} } } } }
 * Head sets: "theta0" (the frozen heads), "finetuned" (when trained), "refit"
 * (prototypes refit on the encoder's own train features).
 * single: "val", "test" are the finetune stage's figures for theta_t with the
 * head it trained with (the trained head under finetune.train_heads, else the
 * frozen one); "heads.<head set>" are theta0 + tau_t's accuracies with each
 * head set in use (the single stage). Normalised accuracy is always
 * merged / single-task accuracy of the SAME head set: per_task.<task>.norm =
 * per_task.<task>.abs / single.<task>.heads.<head set>.test ("normalised_by"
 * names that key), and norm_val (the alpha search, frozen heads) divides by
 * single.<task>.heads.theta0.val ("norm_val_by").
 *
 * Single-process: call on one rank (rank 0); both files are replaced
 * atomically (written under a temporary name, then renamed), so a killed run
 * never leaves either half-written. */
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
