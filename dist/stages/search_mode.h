/* search_mode: what the stages built on the coefficient search (single.c,
 * addition.c, negation.c; search.h says what each does) share for one
 * finetune.modes entry: theta0, the task vectors and heads, the encoder at a
 * coefficient, the head sets that score it and the single-task accuracies that
 * normalise them. Internal to dist/stages/. */
#ifndef TD_SEARCH_MODE_H
#define TD_SEARCH_MODE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "config.h"
#include "evaluate.h"
#include "heads.h"
#include "model_io.h"
#include "search.h"
#include "status.h"
#include "task_io.h"
#include "task_merge.h"

/* The shared state of a stage for one mode. */
typedef struct {
    const TdConfig *cfg;
    const char *mode;
    char run_dir[600];
    VitModel m;       /* theta0 */
    TvInfo tv;
    HeadSet heads;    /* the frozen heads of heads.h5, in data.tasks order */
    int ntk;
    float *tau;       /* (table total) merged direction */
    float *buf;       /* (table total) theta or the ntk delta for the current coefficient */
    double cur;       /* coefficient buf was built for (NaN: none, or tau changed) */
    double sign;      /* +1 addition, -1 negation */
    int item_batch;   /* per-rank batch of a single-rank evaluation */
    /* the item layout of the current search */
    int ntasks;
    char paths[TV_MAX_TASKS + 1][600];
    const float *head[TV_MAX_TASKS + 1];
    int classes[TV_MAX_TASKS + 1];
    float *ft[TV_MAX_TASKS]; /* fine-tuned heads (heads_<mode>.h5), NULL where none */
    int ft_found;            /* the file exists */
    int tau_task;            /* single-task pool: the task whose own tau_t tau holds (-1: none) */
} ModeRun;

/* Head sets, in the order of HeadScores and SingleAcc; their names in
 * results.json. */
enum { HS_THETA0, HS_REFIT, HS_FINETUNED, HS_N };
extern const char *const k_head_set[HS_N];

/* Test features of the current encoder, once per task, scored by every head set. */
typedef struct {
    double abs[HS_N][TV_MAX_TASKS]; /* [head set][task]; NaN: no such head */
} HeadScores;

/* Single-task accuracies of the fine-tuned encoders theta0 + tau_t (ntk: the
 * linearised model), one per head set in use: the denominators of normalised
 * accuracy. A head set is only ever divided by its own single-task accuracy:
 * refit heads of a merged encoder by refit heads of theta_t, and so on. */
typedef struct {
    int use[HS_N];                     /* measured */
    double acc[HS_N][2][TV_MAX_TASKS]; /* [head set][0 val, 1 test][task]; NaN: not measured */
} SingleAcc;

/* Opens mode's stage state: theta0, <run_dir>/task_vectors_<mode>.h5, the
 * frozen heads of heads.h5, buffers, <run_dir>/search/. Collective over
 * g_rt.comm, agreed. mode_free releases it (also after a failed open). */
TdStatus mode_open(ModeRun *r, const TdConfig *cfg, const char *mode);
void mode_free(ModeRun *r);

/* The encoder theta0 + sign * c * tau (ntk: the linearised model along it). */
EvalEncoder mode_encoder(ModeRun *r, double c);

/* Hex XXH64 of what a search's values depend on. */
void mode_search_key(const ModeRun *r, const char *what, char out[40]);

/* w (C,E) = the unit-norm class means of feat (n,E) with labels y: refit heads. */
void mode_protos(const float *feat, const int32_t *y, int64_t n, int E, int C, float *w);

/* Test features of the encoder at alpha, once per task, scored by every head
 * set (refit: prototypes of its train features, when asked). */
TdStatus mode_score_heads(ModeRun *r, double alpha, int refit, HeadScores *hs);

/* A head set's scores: abs[t] and, normalised, abs[t] / single[t], single
 * being the same head set's single-task test accuracy. Tasks without a head
 * (NaN) are left out of the means and listed under "missing"; a task whose
 * single-task accuracy is 0 has no normalised accuracy (null), and then
 * neither has the mean. */
cJSON *mode_head_json(const ModeRun *r, int set, const double *abs, const double *single);

/* The "heads" object of a result at the encoder mode_encoder(r, c): every
 * head set of eval.heads scored on test, each normalised by its own
 * single-task test accuracy (rank 0; NULL elsewhere), logged as what.
 * Collective. */
TdStatus mode_heads_result(ModeRun *r, double c, const SingleAcc *sa, const char *what,
                           cJSON **out);

/* The task layout of data.tasks: paths, frozen heads, classes. */
TdStatus mode_tasks(ModeRun *r);

/* The fine-tuned heads <run_dir>/heads_<mode>.h5, on every rank, when the file
 * exists (r->ft_found); listed in eval.heads, a missing file is an error.
 * After mode_tasks. Collective, agreed. */
TdStatus mode_ft_heads_load(ModeRun *r);

/* The single-task accuracies of mode r with every head set in use - theta0
 * (always: the alpha search scores with it), refit (eval.heads), finetuned
 * (wherever heads_<mode>.h5 has the task) - through the pool, journal
 * search/single_<mode>.jsonl: the single stage measures them, and the
 * addition stage, run after it, finds them all in the journal (or measures
 * what is missing when run alone). Records modes.<mode>.single. After
 * mode_tasks and mode_ft_heads_load; collective, agreed. */
TdStatus single_measure(ModeRun *r, SingleAcc *sa);

/* mode_open, mode_tasks, mode_ft_heads_load and single_measure: mode r ready
 * to be scored, with its single-task accuracies in sa. Collective, agreed;
 * mode_free r afterwards whatever the status. */
TdStatus single_open(ModeRun *r, const TdConfig *cfg, const char *mode, SingleAcc *sa);

#endif
