#include "optim.h"

#include <math.h>

TdStatus adamw_init(AdamW *o, const AdamWConfig *cfg, size_t total)
{
    o->cfg = *cfg;
    o->step = 0;
    o->total = total;
    o->m = td_aligned_calloc(total * sizeof(float));
    o->v = td_aligned_calloc(total * sizeof(float));
    if (!o->m || !o->v) {
        adamw_free(o);
        return TD_ERR_NOMEM;
    }
    return TD_OK;
}

void adamw_free(AdamW *o)
{
    td_free(o->m);
    td_free(o->v);
    o->m = o->v = NULL;
}

void adamw_step(AdamW *o, const ParamTable *t, const unsigned char *mask, float *params,
                const float *grads, float lr)
{
    o->step++;
    const float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    const float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
    const float step_size = lr / bc1, bc2_sqrt = sqrtf(bc2), decay = 1.0f - lr * o->cfg.weight_decay;
    for (int i = 0; i < t->count; i++) {
        if (!mask[i])
            continue;
        const size_t off = t->info[i].offset, n = t->info[i].numel;
        float *restrict p = params + off, *restrict m = o->m + off, *restrict v = o->v + off;
        const float *restrict g = grads + off;
        for (size_t k = 0; k < n; k++) {
            m[k] = b1 * m[k] + (1.0f - b1) * g[k];
            v[k] = b2 * v[k] + (1.0f - b2) * g[k] * g[k];
            p[k] = p[k] * decay - step_size * m[k] / (sqrtf(v[k]) / bc2_sqrt + eps);
        }
    }
}

float optim_lr_cosine(float base_lr, long step, long warmup, long steps)
{
    if (step < warmup)
        return base_lr * (float)(step + 1) / (float)warmup;
    long decay_steps = steps - warmup;
    if (decay_steps <= 0)
        return base_lr;
    double progress = (double)(step - warmup) / (double)decay_steps;
    if (progress > 1.0)
        progress = 1.0;
    return (float)(0.5 * (1.0 + cos(M_PI * progress)) * base_lr);
}

double optim_grad_sumsq(const ParamTable *t, const unsigned char *mask, const float *grads)
{
    double s = 0.0;
    for (int i = 0; i < t->count; i++) {
        if (!mask[i])
            continue;
        const float *g = grads + t->info[i].offset;
        for (size_t k = 0; k < t->info[i].numel; k++)
            s += (double)g[k] * g[k];
    }
    return s;
}

float optim_clip_scale(const ParamTable *t, const unsigned char *mask, float *grads, double norm,
                       float max_norm)
{
    if (!(max_norm > 0.0f) || norm <= max_norm)
        return 1.0f;
    float f = (float)(max_norm / (norm + 1e-6));
    for (int i = 0; i < t->count; i++) {
        if (!mask[i])
            continue;
        float *g = grads + t->info[i].offset;
        for (size_t k = 0; k < t->info[i].numel; k++)
            g[k] *= f;
    }
    return f;
}
