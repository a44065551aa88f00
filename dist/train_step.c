#include "train_step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "parallel.h"
#include "runtime.h"

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
    td_free(T->grads), td_free(T->delta);
    memset(T, 0, sizeof *T);
}

static TdStatus trainer_alloc(DpTrainer *T, const DpSpec *p)
{
    const VitArch *a = &p->m->arch;
    int nl = loader_local_max(&T->L), S = a->image, E = a->out_dim, nb = nl > 0 ? nl : 1;
    size_t head = (size_t)p->classes * E;
    TD_TRY(vit_work_alloc(&T->w, a, &p->m->table, nb));
    TD_TRY(vit_head_alloc(&T->h, nb, E, p->classes));
    TD_ALLOC(T->x, (size_t)nb * 3 * S * S);
    TD_ALLOC(T->emb, (size_t)nb * E);
    TD_ALLOC(T->demb, (size_t)nb * E);
    TD_ALLOC(T->y, nb);
    TD_ALLOC(T->packed, p->ntrain + head + 1);
    TD_ALLOC(T->dhead, head + 1);
    T->grads = td_aligned_calloc(p->m->table.total * sizeof(float));
    T->delta = td_aligned_calloc(p->m->table.total * sizeof(float));
    if (!T->grads || !T->delta)
        return td_fail(TD_ERR_NOMEM, "training: out of memory");
    return TD_OK;
}

TdStatus dp_trainer_open(DpTrainer *T, MPI_Comm comm, const LoaderOpts *lo, const DpSpec *spec)
{
    memset(T, 0, sizeof *T);
    TD_TRY(loader_open(&T->L, comm, lo));
    return runtime_agree(comm, trainer_alloc(T, spec));
}

TdStatus dp_step(DpTrainer *T, MPI_Comm comm, const DpSpec *p, const float *theta,
                 const float *head, float scale, double *loss)
{
    const ParamTable *tab = &p->m->table;
    int size = 1;
    MPI_Comm_size(comm, &size);
    LoaderBatch b;
    TD_TRY(runtime_agree(comm, loader_next(&T->L, T->x, T->y, &b)));
    for (int i = 0; i < tab->count; i++)
        if (p->mask[i])
            par_zero(T->grads + tab->info[i].offset, tab->info[i].numel);
    int nl = b.nlocal, E = p->m->arch.out_dim, C = p->classes;
    size_t nhead = p->train_head ? (size_t)C * E : 0;
    if (nhead)
        memset(T->dhead, 0, nhead * sizeof(float));
    double lsum = 0;
    T->h.smoothing = p->label_smoothing;
    if (nl > 0) {
        T->w.trainable = p->mask; /* the forward keeps what this backward reads */
        if (p->ntk) {
            dp_masked_diff(tab, p->mask, theta, p->m->params, T->delta);
            vit_ntk_forward(p->m->params, &T->w, T->delta, p->mask, T->x, nl, T->emb, NULL);
        } else {
            vit_forward(theta, &T->w, T->x, nl, T->emb);
        }
        double l = vit_head_loss(&T->h, T->emb, head, scale, T->y, nl, C, NULL, T->demb,
                                 nhead ? T->dhead : NULL);
        float frac = (float)nl / (float)b.nglobal; /* mean over the GLOBAL batch */
        for (size_t k = 0; k < (size_t)nl * E; k++)
            T->demb[k] *= frac;
        for (size_t k = 0; k < nhead; k++)
            T->dhead[k] *= frac;
        vit_backward(&T->w, T->demb, T->grads, p->mask);
        lsum = l * frac;
    }
    if (size > 1) {
        dp_pack(tab, p->mask, T->grads, T->packed);
        if (nhead)
            memcpy(T->packed + p->ntrain, T->dhead, nhead * sizeof(float));
        if (MPI_Allreduce(MPI_IN_PLACE, T->packed, (int)(p->ntrain + nhead), MPI_FLOAT, MPI_SUM,
                          comm) != MPI_SUCCESS ||
            MPI_Allreduce(MPI_IN_PLACE, &lsum, 1, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS)
            return td_fail(TD_ERR_MPI, "training: gradient MPI_Allreduce failed");
        dp_unpack(tab, p->mask, T->packed, T->grads);
        if (nhead)
            memcpy(T->dhead, T->packed + p->ntrain, nhead * sizeof(float));
    }
    *loss = lsum;
    return TD_OK;
}
