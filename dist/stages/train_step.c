#include "train_step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "parallel.h"
#include "runtime.h"
#include "xsum.h"

void dp_pack(const ParamTable *t, const unsigned char *mask, const float *full, float *out)
{
    for (int i = 0; i < t->count; i++)
        if (mask[i]) {
            memcpy(out, full + t->info[i].offset, t->info[i].numel * sizeof *out);
            out += t->info[i].numel;
        }
}

void dp_unpack(const ParamTable *t, const unsigned char *mask, const float *in, float *full)
{
    for (int i = 0; i < t->count; i++)
        if (mask[i]) {
            memcpy(full + t->info[i].offset, in, t->info[i].numel * sizeof *in);
            in += t->info[i].numel;
        }
}

void dp_masked_diff(const ParamTable *t, const unsigned char *mask, const float *a,
                    const float *b, float *out)
{
    for (int i = 0; i < t->count; i++)
        if (mask[i])
            for (size_t k = t->info[i].offset; k < t->info[i].offset + t->info[i].numel; k++)
                out[k] = a[k] - b[k];
}

float dp_schedule_lr(const char *schedule, double lr, long step, long warmup, long steps)
{
    long warm = warmup < steps ? warmup : steps;
    if (strcmp(schedule, "cosine") == 0 || step < warm)
        return optim_lr_cosine((float)lr, step, warm, steps);
    if (strcmp(schedule, "linear") == 0)
        return (float)(lr * (double)(steps - step) / (double)(steps - warm));
    return (float)lr;
}

void dp_fmt_eta(double s, char *buf, size_t n)
{
    if (s >= 3600)
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, n, "%.0fs", s);
}

void dp_trainer_free(DpTrainer *T)
{
    loader_close(&T->L);
    vit_work_free(&T->w);
    vit_head_free(&T->h);
    free(T->x), free(T->emb), free(T->demb), free(T->y), free(T->packed), free(T->dhead);
    free(T->goff), free(T->gmax), free(T->gexp), free(T->uloss);
    td_free(T->grads), td_free(T->delta), td_free(T->ugrad), td_free(T->acc);
    memset(T, 0, sizeof *T);
}

static TdStatus trainer_alloc(DpTrainer *T, const DpSpec *p)
{
    const VitArch *a = &p->m->arch;
    const ParamTable *tab = &p->m->table;
    int mb = T->mb, S = a->image, E = a->out_dim;
    int nl = loader_local_max(&T->L); /* whole micro-batches */
    T->units = nl / mb > 0 ? nl / mb : 1;
    size_t rows = (size_t)p->classes * E, head = p->head_map ? p->head_params : rows;
    size_t npk = p->ntrain + (p->train_head ? head : 0);
    TD_TRY(vit_work_alloc(&T->w, a, tab, mb));
    TD_TRY(vit_head_alloc(&T->h, mb, E, p->classes));
    TD_ALLOC(T->x, (size_t)T->units * mb * 3 * S * S);
    TD_ALLOC(T->emb, (size_t)mb * E);
    TD_ALLOC(T->demb, (size_t)mb * E);
    TD_ALLOC(T->y, (size_t)T->units * mb);
    TD_ALLOC(T->packed, p->ntrain + head + 1);
    TD_ALLOC(T->dhead, (head > rows ? head : rows) + 1);
    TD_ALLOC(T->goff, (size_t)tab->count + 2);
    T->groups = 0;
    T->goff[0] = 0;
    for (int i = 0; i < tab->count; i++)
        if (p->mask[i]) {
            T->goff[T->groups + 1] = T->goff[T->groups] + tab->info[i].numel;
            T->groups++;
        }
    if (p->train_head) {
        T->goff[T->groups + 1] = T->goff[T->groups] + head;
        T->groups++;
    }
    TD_ALLOC(T->gmax, (size_t)T->groups + 1);
    TD_ALLOC(T->gexp, (size_t)T->groups + 1);
    TD_ALLOC(T->uloss, (size_t)(T->L.o.global_batch + mb - 1) / mb);
    T->grads = td_aligned_calloc(tab->total * sizeof(float));
    T->delta = td_aligned_calloc(tab->total * sizeof(float));
    T->ugrad = td_aligned_calloc(((size_t)T->units * npk + 1) * sizeof(float));
    T->acc = td_aligned_calloc((npk + 1) * sizeof(int64_t));
    if (!T->grads || !T->delta || !T->ugrad || !T->acc)
        return td_fail(TD_ERR_NOMEM, "training: out of memory");
    return TD_OK;
}

TdStatus dp_trainer_open(DpTrainer *T, MPI_Comm comm, const LoaderOpts *lo, const DpSpec *spec)
{
    memset(T, 0, sizeof *T);
    T->mb = g_rt.micro_batch;
    LoaderOpts o = *lo;
    o.unit = T->mb; /* ranks take whole micro-batches */
    TD_TRY(loader_open(&T->L, comm, &o));
    return runtime_agree(comm, trainer_alloc(T, spec));
}

/* Forward and backward of micro-batch u of this rank's slice (rows images,
 * padded with zero images to T->mb); its packed gradient goes to
 * T->ugrad[u], its largest entries into T->gmax. Returns its share of the
 * global mean loss. */
static double micro_step(DpTrainer *T, const DpSpec *p, const float *theta, const float *head,
                         float scale, int u, int rows, int nglobal)
{
    const ParamTable *tab = &p->m->table;
    const int mb = T->mb, E = p->m->arch.out_dim, C = p->classes, S = p->m->arch.image;
    const size_t plane = (size_t)3 * S * S, nhead = p->train_head ? (size_t)C * E : 0;
    float *x = T->x + (size_t)u * mb * plane;
    if (rows < mb) /* padding: zero images, whose rows get zero gradient below */
        memset(x + (size_t)rows * plane, 0, (size_t)(mb - rows) * plane * sizeof *x);
    for (int i = 0; i < tab->count; i++)
        if (p->mask[i])
            par_zero(T->grads + tab->info[i].offset, tab->info[i].numel);
    if (nhead)
        memset(T->dhead, 0, nhead * sizeof(float));
    T->w.trainable = p->mask; /* the forward keeps what this backward reads */
    if (p->ntk)
        vit_ntk_forward(p->m->params, &T->w, T->delta, p->mask, x, mb, T->emb, NULL);
    else
        vit_forward(theta, &T->w, x, mb, T->emb);
    double l = vit_head_loss(&T->h, T->emb, head, scale, T->y + (size_t)u * mb, rows, C, NULL,
                             T->demb, nhead ? T->dhead : NULL);
    float frac = (float)rows / (float)nglobal; /* mean over the GLOBAL batch */
    for (size_t k = 0; k < (size_t)rows * E; k++)
        T->demb[k] *= frac;
    memset(T->demb + (size_t)rows * E, 0, (size_t)(mb - rows) * E * sizeof(float));
    for (size_t k = 0; k < nhead; k++)
        T->dhead[k] *= frac;
    vit_backward(&T->w, T->demb, T->grads, p->mask);
    float *g = T->ugrad + (size_t)u * T->goff[T->groups];
    dp_pack(tab, p->mask, T->grads, g);
    if (nhead && p->head_map)
        p->head_map(p->head_ctx, T->dhead, g + p->ntrain);
    else if (nhead)
        memcpy(g + p->ntrain, T->dhead, nhead * sizeof(float));
    for (int k = 0; k < T->groups; k++) {
        float m = xsum_max_abs(g + T->goff[k], T->goff[k + 1] - T->goff[k]);
        T->gmax[k] = m > T->gmax[k] ? m : T->gmax[k];
    }
    return l * frac;
}

TdStatus dp_step(DpTrainer *T, MPI_Comm comm, const DpSpec *p, const float *theta,
                 const float *head, float scale, double *loss)
{
    const ParamTable *tab = &p->m->table;
    int size = 1;
    MPI_Comm_size(comm, &size);
    LoaderBatch b;
    TD_TRY(runtime_agree(comm, loader_next(&T->L, T->x, T->y, &b)));
    const int mb = T->mb, G = T->groups, nl = b.nlocal;
    const int ulocal = (nl + mb - 1) / mb, uglobal = (b.nglobal + mb - 1) / mb, u0 = b.offset / mb;
    const size_t npk = T->goff[G];
    T->h.smoothing = p->label_smoothing;
    if (p->ntk)
        dp_masked_diff(tab, p->mask, theta, p->m->params, T->delta);
    memset(T->uloss, 0, (size_t)uglobal * sizeof *T->uloss);
    for (int k = 0; k < G; k++)
        T->gmax[k] = 0.0f;
    for (int u = 0; u < ulocal; u++) {
        int rows = nl - u * mb < mb ? nl - u * mb : mb;
        T->uloss[u0 + u] = micro_step(T, p, theta, head, scale, u, rows, b.nglobal);
    }
    /* one scale per tensor from its largest entry over every micro-batch */
    if (size > 1 && (MPI_Allreduce(MPI_IN_PLACE, T->gmax, G, MPI_FLOAT, MPI_MAX, comm) !=
                         MPI_SUCCESS ||
                     MPI_Allreduce(MPI_IN_PLACE, T->uloss, uglobal, MPI_DOUBLE, MPI_SUM, comm) !=
                         MPI_SUCCESS))
        return td_fail(TD_ERR_MPI, "training: MPI_Allreduce of gradient maxima failed");
    for (int k = 0; k < G; k++)
        T->gexp[k] = isfinite(T->gmax[k]) ? xsum_exponent(T->gmax[k], uglobal) : 0;
    memset(T->acc, 0, npk * sizeof *T->acc);
    for (int u = 0; u < ulocal; u++)
        for (int k = 0; k < G; k++)
            xsum_add(T->acc + T->goff[k], T->ugrad + (size_t)u * npk + T->goff[k],
                     T->goff[k + 1] - T->goff[k], T->gexp[k]);
    if (size > 1 && MPI_Allreduce(MPI_IN_PLACE, T->acc, (int)npk, MPI_INT64_T, MPI_SUM, comm) !=
                        MPI_SUCCESS)
        return td_fail(TD_ERR_MPI, "training: gradient MPI_Allreduce failed");
    for (int k = 0; k < G; k++) {
        float *out = T->packed + T->goff[k];
        size_t n = T->goff[k + 1] - T->goff[k];
        if (isfinite(T->gmax[k]))
            xsum_result(out, T->acc + T->goff[k], n, T->gexp[k]);
        else /* a non-finite gradient somewhere: the caller's NaN check stops the task */
            for (size_t i = 0; i < n; i++)
                out[i] = NAN;
    }
    dp_unpack(tab, p->mask, T->packed, T->grads);
    if (p->train_head)
        memcpy(T->dhead, T->packed + p->ntrain,
               (p->head_map ? p->head_params : (size_t)p->classes * p->m->arch.out_dim) *
                   sizeof(float));
    double lsum = 0; /* in micro-batch order: each slot came from one rank */
    for (int u = 0; u < uglobal; u++)
        lsum += T->uloss[u];
    *loss = lsum;
    return TD_OK;
}
