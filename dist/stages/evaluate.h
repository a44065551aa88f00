/* evaluate: image features and head accuracy of an encoder over a task split,
 * data-parallel over a communicator (each rank embeds its slice of every
 * global batch, task_loader.h).
 *
 * An encoder is either plain, f(x; params), or linearised (ntk),
 * f(x; theta0) + J(theta0) delta with delta on the tensors of a mask. Heads
 * score L2-normalised features: logits = scale * feat @ head^T (head (C,E)). */
#ifndef TD_EVALUATE_H
#define TD_EVALUATE_H

#include <mpi.h>
#include <stdint.h>

#include "model_io.h"
#include "status.h"

typedef struct {
    const VitModel *model;      /* theta0: architecture, table, and the ntk point */
    const float *params;        /* plain: parameters to evaluate (NULL = theta0) */
    const float *ntk_delta;     /* ntk: delta in table layout, or NULL for plain */
    const unsigned char *ntk_mask; /* tensors of delta that are non-zero */
} EvalEncoder;

/* Embeds every image of one split, normalised, gathered on every rank of comm:
 * feat (n,E) and labels (n), allocated here (free with free()). batch is the
 * global batch of one read (rounded up to whole micro-batches of
 * g_rt.micro_batch images, each embedded alone: features do not depend on
 * batch or rank count); 0 < limit < split size keeps limit images
 * evenly spaced over the split (task_loader.h), so every class stays represented.
 * Collective over comm; the status is agreed. */
TdStatus eval_features(MPI_Comm comm, const EvalEncoder *enc, const char *task_path, int split,
                       int batch, int64_t limit, float **feat, int32_t **labels, int64_t *n);

/* Fraction of the split's images (limit as above, 0 = all) whose argmax logit is
 * their label. Collective over comm; *acc and the status are agreed. */
TdStatus eval_accuracy(MPI_Comm comm, const EvalEncoder *enc, const char *task_path, int split,
                       int batch, int64_t limit, const float *head, int C, double *acc);

/* eval_accuracy, and also *ce: the mean cross-entropy of the logits
 * scale * feat @ head^T against the labels (NULL: not computed). Collective
 * over comm; the values and the status are agreed. */
TdStatus eval_scores(MPI_Comm comm, const EvalEncoder *enc, const char *task_path, int split,
                     int batch, int64_t limit, const float *head, int C, double scale,
                     double *acc, double *ce);

/* Keeps the features of theta0 itself (an EvalEncoder with params == NULL,
 * no ntk delta, and a model whose checksum is checksum) in dir, one file per
 * task file, split and limit, and reads them back in every later call of any
 * process: a sweep embeds theta0's images once for all its runs. dir must
 * exist; "" or NULL turns it off (the default). Process-wide. */
void eval_theta0_cache(const char *dir, const char *checksum);

/* "bf16" when this process's evaluations run their products in bf16
 * (eval.precision = bf16 on a CPU with native bf16), else "": the keys of
 * kept evaluations (journals, theta0's features) add it, so that a run never
 * resumes from values of the other precision, and fp32 keys stay as before. */
const char *eval_precision_tag(void);

/* Accuracy of head (C,E) on normalised features feat (n,E). Local. */
double eval_head_accuracy(const float *feat, const int32_t *labels, int64_t n, int E,
                          const float *head, int C);

#endif
