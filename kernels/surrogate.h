/* surrogate: the linear surrogate of a merged model (docs/METHOD.md,
 * "Linear surrogate"), single-process numerics.
 *
 * For an input x, U(x) holds R = 1 + K rows of E values: row 0 is f0(x) =
 * f(x; theta0), row 1 + j is J(theta0) tau_j(x), the JVP along the j-th
 * direction of a coefficient structure (coef.h: j = t * G + g). The merged
 * model along coefficients a (K) is, to first order (exactly for ntk task
 * vectors, whose model is linearised),
 *     f(x; a) = f0(x) + sum_j a_j J tau_j(x).
 * A head h (C, E) scores L2-normalised features; the argmax of h f(x; a) does
 * not depend on the normalisation, so accuracy needs only the projections
 *     P(x) = U(x) h^T   (R x C):   logits(a) ~ P_0 + sum_j a_j P_j.
 *
 * Exhaustive screening (sur_grid_*): every vector of a per-coefficient grid
 * v_0 < ... < v_{A-1}, visited in reflected mixed-radix Gray order, so each
 * step moves one coefficient by one grid point and updates every image's
 * logits by one precomputed difference. The logits are held in 32-bit fixed
 * point (one scale per task, chosen so no sum can overflow): every update is
 * an exact integer addition, so a candidate's predictions do not depend on the
 * path that reached it, on the chunk, or on the rank.
 *
 * The two fastest coefficients are scored as a block: at each step of the
 * Gray walk over the others, an image whose label stays ahead of (or behind)
 * some class over the whole range those two can add is counted for all A^2
 * combinations at once; only the undecided images are scored combination by
 * combination. The counts are exactly those of scoring every candidate. */
#ifndef TD_SURROGATE_H
#define TD_SURROGATE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* p (n, R, C) = u (n, R, E) @ head^T, each dot product in double. */
void sur_project(const float *u, int64_t n, int R, int E, const float *head, int C, float *p);

/* Images whose argmax of P_0 + sum_j a_j P_j (first index on ties) is their
 * label; logits in double. */
int64_t sur_correct(const float *p, const int32_t *y, int64_t n, int R, int C, const double *a);

/* Scores of the merged model along a (R - 1 directions) on n images, as
 * the evaluation scores a real encoder (dist/stages/evaluate.c): each image's
 * embedding f = U_0 + sum_j a_j U_j (summed in double, rounded to float), L2
 * normalised and rounded to float, then the logits h f in double. *correct:
 * images whose argmax (first index on ties) is their label; *ce_sum (NULL:
 * not computed): the summed cross-entropy of scale * h f. Exact for ntk task
 * vectors up to float rounding, first order otherwise; no projection. */
TdStatus sur_scores(const float *u, const int32_t *y, int64_t n, int R, int E, const float *head,
                int C, double scale, const double *a, int64_t *correct, double *ce_sum);

/* AdaMerging's objective on the surrogate, for the m images idx (indices
 * into u; NULL: 0 .. m-1) of one task, with its gradient: each image's
 * embedding f = U_0 + sum_j a_j U_j, g = f / |f|, logits z = scale * h g;
 * y NULL: the entropy of softmax(z) (labels never read), else the
 * cross-entropy with label y[i]. Adds w times the sum of the images' values
 * to *loss and w times its gradient in a (R - 1) to ga. Double throughout. */
TdStatus sur_objective(const float *u, const int32_t *y, const int64_t *idx, int64_t m, int R,
                       int E, const float *head, int C, double scale, const double *a, double w,
                       double *loss, double *ga);

/* The images of one task, for the Gray-code enumeration. */
typedef struct {
    int64_t n;
    int C;
    const float *p;     /* (n, R, C) projections */
    const int32_t *y;   /* (n) labels */
    double weight;      /* its score: correct / n * weight (1 / (T * normaliser)) */
} SurTask;

typedef struct SurGrid SurGrid;

/* K coefficients on the grid vals (A values, increasing) over the tasks.
 * R = 1 + K. */
TdStatus sur_grid_create(SurGrid **g, const SurTask *tasks, int ntasks, int K, const double *vals,
                         int A);
void sur_grid_free(SurGrid *g);

/* A candidate: grid indices encoded in base A, coefficient 0 least
 * significant. */
typedef struct {
    double score;    /* sum over tasks of correct_k / n_k * weight_k */
    uint64_t index;
} SurCand;

/* Visits every candidate whose `fixed` most significant digits equal those of
 * prefix (the chunk), in Gray order, and keeps the top candidates in top
 * (capacity k; by score, then the smaller index), merged with what top
 * already holds (*ntop of them). Returns the candidates visited. */
uint64_t sur_grid_chunk(SurGrid *g, uint64_t prefix, int fixed, SurCand *top, int k, int *ntop);

/* The share of images that sur_grid_chunk had to score candidate by
 * candidate so far (the rest were decided for a whole block of A^2
 * candidates by the range of their margins); NaN before any block. */
double sur_grid_undecided(const SurGrid *g);

/* Merges candidate c into top (capacity k, *ntop held), keeping the best k. */
void sur_top_add(SurCand *top, int k, int *ntop, SurCand c);
/* Sorts top best first. */
void sur_top_sort(SurCand *top, int ntop);

/* Spearman's rank correlation of x and y (n), ties given their mean rank. */
double sur_spearman(const double *x, const double *y, int n);

#endif
