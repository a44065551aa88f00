/* coef_search: the addition stage's coefficient searches (merge.search x
 * merge.coefficients; docs/METHOD.md, "Coefficient searches"), run for each
 * merge method after its uniform alpha grid.
 *
 * The merged encoder is theta0 + sum_t sum_g a[t,g] tau[t,g] (ntk: the
 * linearised model along that direction), tau[t,g] being task t's term of
 * the method's merge (task_merge.h merge_rows: TIES and DARE applied first)
 * on the tensors of group g, and a tied to K free coefficients by the
 * structure (kernels/coef.h). The T rows are held once per node in a shared
 * buffer (runtime.h SharedBuf).
 *
 * Black-box searches (coef_search.c) optimise merge.objective on the val
 * splits with the frozen heads: norm_acc (mean normalised accuracy, the
 * uniform grid's criterion) or val_ce (mean cross-entropy). A candidate is
 * evaluated through the work pool, one item per task (candidate x task, each
 * on one rank); the items of all candidates of a search share one journal
 * search/coef_<mode>_<method>_<search>_<structure>.jsonl, so a killed search
 * replays its optimiser from the values on disk and resumes where it was.
 * ntk vectors (merge.surrogate.ntk, the default) are scored instead through
 * the linear surrogate, exact for them: one forward and T x G JVPs per val
 * image, once for every search of the structure (coef_sur_tensors), then each
 * candidate costs (1 + T x G) x E multiply-adds per image.
 *   random      merge.budget vectors, each coefficient a seeded draw from the
 *               merge.alpha grid (one pool)
 *   coordinate  one coefficient swept over the merge.alpha grid at a time from
 *               the uniform choice, the best kept; rounds until a round
 *               improves nothing or the budget is spent
 *   bobyqa, sbplx, crs2  NLopt's optimisers within merge.bounds from the
 *               uniform choice, one candidate at a time, at most merge.budget
 *   cmaes       CMA-ES (kernels/cmaes.h) from the uniform choice, sigma0 a
 *               quarter of the box; each generation's population in one pool
 * Every search evaluates its start (the uniform alpha for every coefficient)
 * first and returns the best candidate evaluated (the first on ties).
 *
 * Learned coefficients (coef_learn.c, merge.search = adamerging; Yang et al.,
 * ICLR 2024): Adam on the coefficients, from merge.adamerging.init, clamped to
 * merge.bounds, minimising the sum over tasks of the mean entropy of the
 * merged model's predictions (each task's frozen head) on its TEST inputs,
 * labels never read (test-time adaptation), or of the mean cross-entropy on
 * val. The
 * gradient of every coefficient comes from one backward at the merged
 * weights: dL/da[t,g] = <dL/dtheta restricted to g, tau[t,g]>. A step takes
 * merge.adamerging.batch images of every task (a seeded shuffle, eval
 * preprocessing), cut into micro-batches that are dealt over all ranks; each
 * micro-batch's T x G gradient lands in its own slot, the slots are summed
 * over ranks (exact: one term each) and then in order, so a step is the same
 * bits at any rank count. Checkpoints (step, coefficients, Adam's moments,
 * the objective trace) in search/adamerging_<mode>_<method>_<structure>.json.
 *
 * Each result, in results.json modes.<mode>.coef_search.<method>.<search>_<structure>,
 * and grids.h5 /<mode>/coef_search/<method>/<search>_<structure>/{coef, trace}
 * (black-box also candidates, values): the coefficients, the objective
 * after each step or evaluation, the chosen encoder's mean normalised val
 * accuracy and every head set's test accuracy (as the addition stage's). */
#ifndef TD_COEF_SEARCH_H
#define TD_COEF_SEARCH_H

#include "coef.h"
#include "runtime.h"
#include "search_mode.h"
#include "sur_data.h"

/* One method's coefficient searches. */
typedef struct {
    ModeRun *r;
    const char *method;
    const MergeSpec *spec;
    SharedBuf sb;                      /* the rows, once per node */
    size_t n;                          /* floats per row */
    const float *rows[TV_MAX_TASKS];   /* spec task order = data.tasks order */
    double nval[TV_MAX_TASKS];         /* normalisers: frozen heads' single-task val accuracy */
    double ualpha, unorm;              /* the uniform alpha search's choice and score */
    CoefSpace cs;                      /* the current structure */
    const char *search;                /* the current search */
} CoefRun;

/* What one search found. */
typedef struct {
    double *c;            /* (K) the chosen coefficients */
    double *trace;        /* (iterations) objective after each step / evaluation */
    int iterations;
    double objective;     /* the chosen coefficients' objective */
    const char *objective_name, *split;
    double *cand;         /* black-box: (evaluations x K) every candidate, in order */
    double *vals;         /* black-box: (evaluations x T) their per-task values */
    double seconds;
    cJSON *extra;         /* more fields of the record (moved into it), or NULL */
} CoefResult;

/* Every merge.search x merge.coefficients pair for one method, after its
 * uniform alpha search chose ualpha with mean normalised val unorm (nval:
 * its normalisers); records each result. Collective over g_rt.comm, agreed. */
TdStatus coef_searches(ModeRun *r, const char *method, const MergeSpec *spec, double ualpha,
                       double unorm, const double *nval, const SingleAcc *sa);

/* r->tau = the direction of coefficients c (K) in the current structure, so
 * that mode_encoder(r, 1.0) is the merged encoder. Local. */
void coef_apply(CoefRun *cr, const double *c);

/* Opens the rows of spec (collective, agreed) / releases them. */
TdStatus coef_run_open(CoefRun *cr, ModeRun *r, const char *method, const MergeSpec *spec);
void coef_run_close(CoefRun *cr);

/* The exact mean normalised val accuracy (frozen heads) of the m candidates X
 * (m x K), through the work pool (ntk included: an independent check of the
 * surrogate), journal search/coef_<mode>_<method>_<tag>.jsonl keyed by what.
 * Collective, agreed. */
TdStatus coef_verify(CoefRun *cr, const double *X, int m, const char *tag, const char *what,
                     double *norm_val);

/* The surrogate's tensors of cr's current structure on split (TASK_VAL or
 * TASK_TEST, at most eval.limit images per task; sur_data.h, tag
 * <mode>_<method>_<structure>_<split>). The val ones are shared by the
 * screening and the black-box searches of ntk vectors, which score every
 * candidate through them instead of the pool when merge.surrogate.ntk is set
 * (no journal; the same values at any rank count). Collective, agreed. */
TdStatus coef_sur_tensors(CoefRun *cr, int split, SurData *d);

/* ---- screening through the linear surrogate (coef_screen.c) ----
 * merge.search = surrogate: the val tensors of the structure (sur_data.h),
 * every vector of the merge.surrogate.values grid (Gray order, chunks dealt
 * over the ranks through a one-sided counter, a journal of finished chunks) or
 * merge.surrogate.samples random ones, the top_k re-evaluated exactly; the
 * choice is the exact best. Records the screening's figures in res->extra. */
TdStatus coef_screen(CoefRun *cr, CoefResult *res);

/* ---- learned coefficients (coef_learn.c) ---- */

typedef struct CoefLearn CoefLearn;

/* The state of a learned search in cr's current structure: loaders, the
 * engine's workspace, buffers. Collective, agreed. */
TdStatus coef_learn_open(CoefLearn **L, CoefRun *cr);
void coef_learn_close(CoefLearn *L);
/* The objective of coefficients c on the batches of 0-based step, and its
 * gradient gc (K; NULL: not computed). Collective; the same bits at any rank
 * count. */
TdStatus coef_learn_objective(CoefLearn *L, const double *c, long step, double *loss,
                              double *gc);
/* The whole search, resumable; res->c and the trace allocated here. */
TdStatus coef_learn_run(CoefLearn *L, CoefResult *res);

#endif
