#include "optim.h"

#include <math.h>
#include <stdlib.h>

#include "parallel.h"

/* Element loops over big tensors run on the kernels' thread pool; every
 * element is updated by the same arithmetic whatever the thread count. */
enum { OPT_CHUNK = 16384, SUMSQ_LANES = 8 };

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

typedef struct {
    float *p, *m, *v;
    const float *g;
    float gscale, b1, b2, eps, step_size, bc2_sqrt, decay;
} AdamArgs;

static void adamw_range(void *ctx, size_t k0, size_t k1, int tid)
{
    const AdamArgs *a = ctx;
    float *restrict p = a->p, *restrict m = a->m, *restrict v = a->v;
    const float *restrict g = a->g;
    const float b1 = a->b1, b2 = a->b2, gs = a->gscale;
    (void)tid;
    for (size_t k = k0; k < k1; k++) {
        const float gk = g[k] * gs;
        m[k] = b1 * m[k] + (1.0f - b1) * gk;
        v[k] = b2 * v[k] + (1.0f - b2) * gk * gk;
        p[k] = p[k] * a->decay - a->step_size * m[k] / (sqrtf(v[k]) / a->bc2_sqrt + a->eps);
    }
}

void adamw_step(AdamW *o, const ParamTable *t, const unsigned char *mask, float *params,
                const float *grads, float gscale, float lr)
{
    o->step++;
    const float b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    const float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
    AdamArgs a = {.gscale = gscale, .b1 = b1, .b2 = b2, .eps = o->cfg.eps, .step_size = lr / bc1,
                  .bc2_sqrt = sqrtf(bc2), .decay = 1.0f - lr * o->cfg.weight_decay};
    for (int i = 0; i < t->count; i++) {
        if (!mask[i])
            continue;
        const size_t off = t->info[i].offset;
        a.p = params + off, a.m = o->m + off, a.v = o->v + off, a.g = grads + off;
        par_for(t->info[i].numel, OPT_CHUNK, adamw_range, &a);
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

/* Sums of squares per fixed block of OPT_CHUNK elements (blocks do not depend
 * on the thread count), added up in block order afterwards: deterministic. */
typedef struct {
    const float *g;
    size_t n;
    double *block;
} SumsqArgs;

static void sumsq_blocks(void *ctx, size_t b0, size_t b1, int tid)
{
    const SumsqArgs *a = ctx;
    for (size_t b = b0; b < b1; b++) {
        size_t k0 = b * OPT_CHUNK, k1 = k0 + OPT_CHUNK < a->n ? k0 + OPT_CHUNK : a->n;
        /* SUMSQ_LANES partial sums: one chain of dependent adds would make this
         * pass latency-bound (each add waits for the last) */
        const float *restrict g = a->g + k0;
        const size_t groups = (k1 - k0) / SUMSQ_LANES;
        double acc[SUMSQ_LANES] = {0}, s = 0.0;
        for (size_t q = 0; q < groups; q++) /* this shape vectorises */
            for (size_t j = 0; j < SUMSQ_LANES; j++) {
                double x = g[q * SUMSQ_LANES + j];
                acc[j] += x * x;
            }
        for (size_t k = groups * SUMSQ_LANES; k < k1 - k0; k++)
            s += (double)g[k] * g[k];
        for (size_t j = 0; j < SUMSQ_LANES; j++)
            s += acc[j];
        a->block[b] = s;
    }
}

double optim_grad_sumsq(const ParamTable *t, const unsigned char *mask, const float *grads)
{
    double s = 0.0;
    for (int i = 0; i < t->count; i++) {
        if (!mask[i])
            continue;
        const size_t n = t->info[i].numel, nb = (n + OPT_CHUNK - 1) / OPT_CHUNK;
        double stack[64], *block = nb <= 64 ? stack : malloc(nb * sizeof *block);
        const float *g = grads + t->info[i].offset;
        if (!block) { /* no memory for the partial sums: one serial pass */
            for (size_t k = 0; k < n; k++)
                s += (double)g[k] * g[k];
            continue;
        }
        SumsqArgs a = {g, n, block};
        par_for(nb, 1, sumsq_blocks, &a);
        for (size_t b = 0; b < nb; b++)
            s += block[b];
        if (block != stack)
            free(block);
    }
    return s;
}

float optim_clip_factor(double norm, float max_norm)
{
    if (!(max_norm > 0.0f) || !(norm > max_norm))
        return 1.0f;
    return (float)(max_norm / (norm + 1e-6));
}
