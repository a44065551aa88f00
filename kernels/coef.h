/* coef: merge coefficients with a structure (docs/METHOD.md, "Coefficient
 * searches"). The merged model is
 *     theta = theta0 + sum_t sum_g a[t,g] tau[t,g]
 * where tau[t,g] is task t's (processed: TIES, DARE) task vector restricted
 * to the tensors of group g. The structure ties the T x G entries of a to K
 * free coefficients c:
 *   uniform  K = 1       one coefficient for everything (G = 1)
 *   task     K = T       one per task (G = 1)
 *   block    K = T * G   one per task and group; G = L + 1 groups: transformer
 *                        block l is group l, every other tensor (conv1,
 *                        embeddings, ln_pre, ln_post, proj) group L ("rest")
 * The task vectors are held packed: row t holds the tensors of a mask, back
 * to back in table order (dist/stages/train_step.h dp_pack).
 * Sums run in double, task by task in order, and round once, so a result
 * does not depend on who computes it. Single-process, no MPI. */
#ifndef TD_COEF_H
#define TD_COEF_H

#include <stddef.h>

#include "params.h"
#include "status.h"

enum { COEF_UNIFORM = 0, COEF_TASK, COEF_BLOCK };
enum { COEF_MAX_TASKS = 64 };

typedef struct {
    int kind;      /* COEF_UNIFORM | COEF_TASK | COEF_BLOCK */
    int T, G, K;   /* tasks, groups, free coefficients */
    int ntensors;  /* tensors of the mask */
    int *tensor;   /* (ntensors) their table indices, in order */
    int *group;    /* (ntensors) their groups */
    size_t *toff;  /* (ntensors) their offsets in table layout */
    size_t *off;   /* (ntensors + 1) their offsets in a packed row */
} CoefSpace;

/* "uniform" | "task" | "block" -> COEF_*, or -1. */
int coef_kind_from_name(const char *name);
const char *coef_kind_name(int kind);

/* The space of kind over the tensors with mask[i] != 0 of table t, for T tasks
 * (1 <= T <= COEF_MAX_TASKS). */
TdStatus coef_space_init(CoefSpace *s, const ParamTable *t, const unsigned char *mask, int kind,
                         int T);
void coef_space_free(CoefSpace *s);

/* Floats in one packed row. */
static inline size_t coef_row_size(const CoefSpace *s) { return s->off[s->ntensors]; }

/* Name of group g ("block3", "rest", "all"), into buf. */
void coef_group_name(const CoefSpace *s, int g, char *buf, size_t n);

/* a (T x G) from c (K): every entry of a is the coefficient it is tied to. */
void coef_expand(const CoefSpace *s, const double *c, double *a);
/* gc (K) from ga (T x G): the gradient of c, each entry the sum of the
 * entries of ga tied to it, summed in (t, g) order. */
void coef_reduce(const CoefSpace *s, const double *ga, double *gc);

/* out (table layout) = base + sum_t sum_g a[t,g] rows[t] on the mask's
 * tensors, each entry summed in double over t in order, then rounded once;
 * base NULL counts as zero. Entries outside the mask are left untouched. */
void coef_combine(const CoefSpace *s, const float *const *rows, const double *a,
                  const float *base, float *out);

/* ga (T x G) = <grad restricted to group g, rows[t]>: the gradient of a
 * loss L(theta(a)) w.r.t. a, given grad = dL/dtheta (table layout). Each dot
 * product in double, in index order. */
void coef_grad(const CoefSpace *s, const float *const *rows, const float *grad, double *ga);

/* Adam on a small double vector x (n): bias-corrected, step is the 1-based
 * count of this update; then x is clamped into [lo, hi]. */
void coef_adam_step(double *x, const double *g, double *m, double *v, size_t n, long step,
                    double lr, double beta1, double beta2, double eps, double lo, double hi);

#endif
