/* search: the coefficient search and the stages built on it - single,
 * addition and negation (docs/METHOD.md, "Evaluation"). Code: search_pool.c
 * (the pool, the journal, the alpha grid), single.c, addition.c, negation.c,
 * and search_mode.h/.c (their shared state for one mode).
 *
 * The work pool: items (e.g. alpha index x task) are handed out one at a time
 * from an MPI-3 one-sided counter on rank 0 of comm (MPI_Fetch_and_op), so a
 * rank that finishes early takes the next item (dynamic load balancing). Each
 * item runs on one rank alone (MPI_COMM_SELF evaluation) and is appended, as
 * one line written with one write(2) to a file opened O_APPEND, to a journal
 * <run_dir>/search/<stage>_<mode>[_<method>].jsonl whose first line is a key
 * of everything the values depend on. A rerun with the same key skips the
 * items already there, so a killed search resumes from what is on disk
 * (tests/search/kill_resume.sh kills one with SIGKILL at a random moment); a
 * journal with another key is started over, and a line that is not exactly
 * one whole record (cut by a kill) is ignored. merge.stop_after = K ends the
 * run's searches after K items run by this process over all of them, as if
 * killed (resume test). On SIGTERM/SIGUSR1 (runtime.h) a rank takes no
 * further item, the journal is flushed (fsync), and after the pool every rank
 * returns TD_STOPPED (exit 75); the rerun resumes from the journal.
 *
 * Stages (collective over the run communicator (g_rt.comm), agreed status), per finetune.modes
 * entry, all reading <run_dir>/task_vectors_<mode>.h5 and heads.h5:
 *   single    the single-task accuracy of each fine-tuned encoder theta0 +
 *             tau_t (ntk: linearised) on val and test with every head set in
 *             use - "theta0" (the frozen heads), "refit" (eval.heads: the
 *             prototypes of theta_t's own train features), "finetuned" (where
 *             heads_<mode>.h5 has the task) - through the pool (items task x
 *             head set x split, journal single_<mode>); results.json
 *             modes.<mode>.single.<task>.heads.<head set>.{val,test}, beside
 *             the finetune stage's own figures (val, test, theta0_*). These are
 *             the normalisers: a head set is only ever divided by its own.
 *   addition  first the single-task accuracies as above (read back from the
 *             single stage's journal; measured when the stage did not run),
 *             then per merge.methods entry: tau_merged (task_merge.h), the
 *             alpha grid x val splits through the pool, scored with the frozen
 *             heads, alpha by mean normalised val accuracy (normaliser: the
 *             frozen heads' single-task val accuracy, also when the finetune
 *             stage trained heads), then test features once per task, scored
 *             by each head set of eval.heads: "theta0" (frozen), "refit"
 *             (prototypes of the merged encoder's train features), "finetuned"
 *             (<run_dir>/heads_<mode>.h5, /<task> float32 [C,E], read whenever
 *             the file exists; listing "finetuned" in eval.heads makes a
 *             missing file an error), each normalised by its own single-task
 *             test accuracy.
 *             With merge.ties.k_grid / merge.dare.p_grid the merge is redone
 *             per grid point, each with its own alpha search (journal
 *             addition_<mode>_<method>_g<i>, grids /<mode>/addition/<method>/g<i>),
 *             and the best (point, alpha) on val is scored on test.
 *             merge.search then searches per-task or per-block
 *             coefficients for the method at that point (coef_search.h):
 *             results modes.<mode>.coef_search.<method>.<search>_<structure>
 *   negation  per target: theta0 - alpha tau_t, alpha minimising target val
 *             accuracy with control val accuracy >= negation.threshold times
 *             theta0's (the smallest on ties; none: alpha 0, alpha_index -1);
 *             target and control test accuracy at that alpha; grids
 *             /<mode>/negation/<task>/{val_acc, alpha}
 * ntk task vectors are evaluated through the linearised model
 * f0 + J(theta0)(alpha tau). Grids go to grids.h5 under /<mode>/<stage>/... */
#ifndef TD_SEARCH_H
#define TD_SEARCH_H

#include <mpi.h>

#include "config.h"
#include "status.h"

/* Evaluates item on this rank alone; *value is what the journal keeps. */
typedef TdStatus (*PoolItemFn)(void *ctx, int item, double *value);

typedef struct {
    const char *journal; /* path of the journal */
    const char *key;     /* identity of the search (no quotes or newlines) */
    int nitems;
    int stop_after;      /* > 0: stop after this many items of this run, as if killed */
    int first, count;    /* run items [first, first + count) only; count 0: all */
    int quiet;           /* no balance line (a caller that logs its own progress) */
} PoolSpec;

/* Runs every item of the range not already in the journal; values (nitems,
 * of which the range is filled) on every rank. A search that decides its
 * next items from the values of the last ones (a sequential optimiser) calls
 * it once per batch on one journal of all its items. Collective over comm;
 * the status is agreed. */
TdStatus search_pool(MPI_Comm comm, const PoolSpec *p, PoolItemFn fn, void *ctx,
                     double *values);

/* The merge.alpha grid: count, and the i-th value. */
int search_alpha_count(const TdConfig *cfg);
double search_alpha(const TdConfig *cfg, int i);

/* The alpha grid index of task's coefficient in candidate cand of the random
 * per-task search (merge.coef_search = random): a pure function of (seed,
 * cand, task), uniform over [0, nalpha). */
int search_random_coef(int seed, int cand, int task, int nalpha);

/* Index of the best alpha: the largest mean over tasks of vals (alphas x
 * tasks) / norm[t] (norm NULL: 1); the first on ties. */
int search_choose_alpha(const double *vals, int nalpha, int ntasks, const double *norm);

TdStatus single_stage(const TdConfig *cfg);
TdStatus addition_stage(const TdConfig *cfg);
TdStatus negation_stage(const TdConfig *cfg);

#endif
