/* sweep: a study as a set of runs (sweep.axes in the configuration).
 *
 * The product of the axes' values is a list of runs r = 0 .. R-1 (the last
 * axis varies fastest). Each is the configuration with those values applied
 * (config_sweep_derive), run through the stages of run.stages, in its own
 * directory:
 *   <out_dir>/<name>/                  the sweep (study.md, results.json, ...)
 *   <out_dir>/<name>/heads.h5          theta0's heads, built once, used by every run
 *   <out_dir>/<name>/runs/rNNN/        one run: results.json, task vectors, report
 * The ranks split into groups of sweep.ranks_per_run; a group takes the next
 * pending run from a counter on world rank 0 (MPI one-sided), so fast runs do
 * not wait for slow ones. A run is done when its results.json has
 * sweep_run.done = true; a rerun of the same configuration skips done runs and
 * resumes the others from their checkpoints and search journals. A failed run
 * is reported and the others go on.
 *
 * The study (sweep_study) reads every done run's results.json and writes
 * <out_dir>/<name>/study.md with figures and tables (see sweep_study). */
#ifndef TD_SWEEP_H
#define TD_SWEEP_H

#include "config.h"
#include "status.h"

/* Collective over MPI_COMM_WORLD; agreed status. */
TdStatus sweep_run(const TdConfig *cfg);

/* The across-run analysis of a sweep directory: per configuration (every axis
 * but run.seed, and the mode), the mean and 95% interval over seeds of
 * single-task accuracy, merged absolute and normalised accuracy (first of
 * merge.methods, sweep.heads), chosen alpha, task-vector norm, disentanglement
 * error and training time; frontier figures of merged accuracy against
 * single-task accuracy and against task-vector norm; and, for each pair of
 * modes, the difference in merged accuracy at matched single-task accuracy,
 * interpolated along each mode's sweep seed by seed. Writes study.md,
 * results.json key "study", tables/study_*.csv and figures/frontier_*.svg.
 * Single-process (world rank 0). */
TdStatus sweep_study(const TdConfig *cfg, const TdSweep *sw);

#endif
