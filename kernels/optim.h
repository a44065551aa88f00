/* optim: AdamW over the flat parameter buffer, the learning-rate schedule and
 * gradient-norm clipping. Every update is one loop over the tensors a mask
 * selects (see params.h), so a step touches only the trained parameters. */
#ifndef TD_OPTIM_H
#define TD_OPTIM_H

#include <stddef.h>

#include "params.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} AdamWConfig;

typedef struct {
    AdamWConfig cfg;
    long step;  /* completed steps */
    float *m;   /* first moment, table layout (total floats) */
    float *v;   /* second moment */
    size_t total;
} AdamW;

TdStatus adamw_init(AdamW *o, const AdamWConfig *cfg, size_t total);
void adamw_free(AdamW *o);
/* One step on the tensors mask selects: decoupled weight decay (PyTorch's
 * AdamW: p -= lr*wd*p, then the Adam update with bias correction). */
void adamw_step(AdamW *o, const ParamTable *t, const unsigned char *mask, float *params,
                const float *grads, float lr);

/* Linear warm-up over `warmup` steps from 0, then cosine decay to 0 at `steps`
 * (the schedule of the task-arithmetic papers). step is 0-based. */
float optim_lr_cosine(float base_lr, long step, long warmup, long steps);

/* Sum of squares of the masked gradient tensors, accumulated in double. */
double optim_grad_sumsq(const ParamTable *t, const unsigned char *mask, const float *grads);
/* Scales the masked gradients by min(1, max_norm / norm); returns the factor. */
float optim_clip_scale(const ParamTable *t, const unsigned char *mask, float *grads, double norm,
                       float max_norm);

#endif
