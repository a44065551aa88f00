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
/* One step on the tensors mask selects, with the gradients grads * gscale
 * (gscale: the clipping factor, optim_clip_factor; 1 for none): decoupled
 * weight decay (PyTorch's AdamW: p -= lr*wd*p, then the Adam update with bias
 * correction). Scaling here saves clipping its own pass over the gradients. */
void adamw_step(AdamW *o, const ParamTable *t, const unsigned char *mask, float *params,
                const float *grads, float gscale, float lr);

/* Linear warm-up over `warmup` steps from 0, then cosine decay to 0 at `steps`
 * (the schedule of the task-arithmetic papers). step is 0-based. */
float optim_lr_cosine(float base_lr, long step, long warmup, long steps);

/* Sum of squares of the masked gradient tensors, accumulated in double. */
double optim_grad_sumsq(const ParamTable *t, const unsigned char *mask, const float *grads);
/* The factor that clips a gradient of global norm `norm` to max_norm:
 * max_norm / (norm + 1e-6) when norm > max_norm > 0, else 1 (as PyTorch's
 * clip_grad_norm_). adamw_step applies it. */
float optim_clip_factor(double norm, float max_norm);

#endif
