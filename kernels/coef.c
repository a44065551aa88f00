/* coef: merge coefficients with a structure (coef.h). */
#include "coef.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_names[] = {"uniform", "task", "block"};

int coef_kind_from_name(const char *name)
{
    for (int k = 0; k < 3; k++)
        if (strcmp(name, k_names[k]) == 0)
            return k;
    return -1;
}

const char *coef_kind_name(int kind) { return kind >= 0 && kind < 3 ? k_names[kind] : "?"; }

void coef_space_free(CoefSpace *s)
{
    free(s->tensor);
    free(s->group);
    free(s->off);
    free(s->toff);
    memset(s, 0, sizeof *s);
}

TdStatus coef_space_init(CoefSpace *s, const ParamTable *t, const unsigned char *mask, int kind,
                         int T)
{
    memset(s, 0, sizeof *s);
    if (kind < COEF_UNIFORM || kind > COEF_BLOCK || T < 1 || T > COEF_MAX_TASKS)
        return td_fail(TD_ERR_ARG, "coefficients: bad structure %d or task count %d", kind, T);
    int layers = 0;
    for (int i = 0; i < t->count; i++)
        if (t->info[i].block + 1 > layers)
            layers = t->info[i].block + 1;
    s->kind = kind;
    s->T = T;
    s->G = kind == COEF_BLOCK ? layers + 1 : 1;
    s->K = kind == COEF_UNIFORM ? 1 : kind == COEF_TASK ? T : T * s->G;
    int n = 0;
    for (int i = 0; i < t->count; i++)
        n += mask[i] != 0;
    s->tensor = malloc(((size_t)n + 1) * sizeof *s->tensor);
    s->group = malloc(((size_t)n + 1) * sizeof *s->group);
    s->off = malloc(((size_t)n + 1) * sizeof *s->off);
    s->toff = malloc(((size_t)n + 1) * sizeof *s->toff);
    if (!s->tensor || !s->group || !s->off || !s->toff) {
        coef_space_free(s);
        return td_fail(TD_ERR_NOMEM, "coefficients: out of memory");
    }
    s->off[0] = 0;
    for (int i = 0; i < t->count; i++) {
        if (!mask[i])
            continue;
        int k = s->ntensors++;
        s->tensor[k] = i;
        s->group[k] = kind != COEF_BLOCK ? 0 : t->info[i].block >= 0 ? t->info[i].block : layers;
        s->toff[k] = t->info[i].offset;
        s->off[k + 1] = s->off[k] + t->info[i].numel;
    }
    return TD_OK;
}

void coef_group_name(const CoefSpace *s, int g, char *buf, size_t n)
{
    if (s->kind != COEF_BLOCK)
        snprintf(buf, n, "all");
    else if (g == s->G - 1)
        snprintf(buf, n, "rest");
    else
        snprintf(buf, n, "block%d", g);
}

void coef_expand(const CoefSpace *s, const double *c, double *a)
{
    for (int t = 0; t < s->T; t++)
        for (int g = 0; g < s->G; g++)
            a[t * s->G + g] = s->kind == COEF_UNIFORM ? c[0]
                              : s->kind == COEF_TASK  ? c[t]
                                                      : c[t * s->G + g];
}

void coef_reduce(const CoefSpace *s, const double *ga, double *gc)
{
    for (int k = 0; k < s->K; k++)
        gc[k] = 0;
    for (int t = 0; t < s->T; t++)
        for (int g = 0; g < s->G; g++) {
            int k = s->kind == COEF_UNIFORM ? 0 : s->kind == COEF_TASK ? t : t * s->G + g;
            gc[k] += ga[t * s->G + g];
        }
}

void coef_combine(const CoefSpace *s, const float *const *rows, const double *a,
                  const float *base, float *out)
{
    const int T = s->T;
    double w[COEF_MAX_TASKS];
    for (int k = 0; k < s->ntensors; k++) {
        const size_t o = s->off[k], n = s->off[k + 1] - o, to = s->toff[k];
        for (int t = 0; t < T; t++)
            w[t] = a[t * s->G + s->group[k]];
        for (size_t i = 0; i < n; i++) {
            double v = base ? (double)base[to + i] : 0.0;
            for (int t = 0; t < T; t++)
                v += w[t] * (double)rows[t][o + i];
            out[to + i] = (float)v;
        }
    }
}

void coef_grad(const CoefSpace *s, const float *const *rows, const float *grad, double *ga)
{
    for (int i = 0; i < s->T * s->G; i++)
        ga[i] = 0;
    for (int k = 0; k < s->ntensors; k++) {
        const size_t o = s->off[k], n = s->off[k + 1] - o;
        const float *g = grad + s->toff[k];
        for (int t = 0; t < s->T; t++) {
            const float *r = rows[t] + o;
            double d = 0;
            for (size_t i = 0; i < n; i++)
                d += (double)g[i] * (double)r[i];
            ga[t * s->G + s->group[k]] += d;
        }
    }
}

void coef_adam_step(double *x, const double *g, double *m, double *v, size_t n, long step,
                    double lr, double beta1, double beta2, double eps, double lo, double hi)
{
    const double c1 = 1.0 - pow(beta1, (double)step), c2 = 1.0 - pow(beta2, (double)step);
    for (size_t i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
        double y = x[i] - lr * (m[i] / c1) / (sqrt(v[i] / c2) + eps);
        x[i] = y < lo ? lo : y > hi ? hi : y;
    }
}
