/* train_step: the data-parallel training step shared by fine-tuning
 * (finetune.c, one rank group per task) and pre-training (pretrain.c, every
 * rank on one task).
 *
 * Reproducibility by construction. The global batch is cut into micro-batches
 * of g_rt.micro_batch images (blas.micro_batch; the last may be short), and
 * each rank takes whole micro-batches (task_loader.h: LoaderOpts.unit). Each
 * micro-batch runs forward and backward alone, padded with zero images to the
 * full size, so every product has a shape fixed by the model and the
 * micro-batch size (kernels/ops.c: gemm_plan) and a micro-batch's gradient is
 * the same bits on any rank, at any thread count. The step's gradient is the
 * EXACT sum of the micro-batch gradients (kernels/xsum.h: 64-bit fixed point
 * with one scale per tensor, agreed by an MPI_MAX; then one MPI_Allreduce of
 * int64), and the loss is summed in micro-batch order. So a step gives the
 * same bits for any rank count and any thread count. The loss is normalised
 * by the GLOBAL batch. */
#ifndef TD_TRAIN_STEP_H
#define TD_TRAIN_STEP_H

#include <mpi.h>
#include <stddef.h>

#include "model_io.h"
#include "status.h"
#include "task_loader.h"
#include "vit.h"

/* What one step trains. */
typedef struct {
    const VitModel *m;          /* architecture and table; theta0 for ntk */
    const unsigned char *mask;  /* trained tensors (table count) */
    size_t ntrain;              /* their elements (trainable_count) */
    int ntk;                    /* 1: linearised model around m->params */
    int classes;                /* C, rows of the head */
    int train_head;             /* 1: dp_step also returns the summed head gradient */
    float label_smoothing;      /* of the cross-entropy (VitHead.smoothing); 0 = none */
    /* With train_head, optionally: the head's rows are a function of head_params
     * floats (pre-training's text projection), and head_map(head_ctx, dhead,
     * dparams) maps a micro-batch's row gradient dhead (C,E) to theirs (linear
     * in dhead), before the exact sum: the sum then carries head_params floats,
     * not C*E. NULL: the rows are the head's parameters. */
    size_t head_params;
    void (*head_map)(void *head_ctx, const float *dhead, float *dparams);
    void *head_ctx;
} DpSpec;

/* Buffers of one trainer: the loader, the workspace and the gradients. */
typedef struct {
    TaskLoader L;
    VitWork w;              /* sized for one micro-batch */
    VitHead h;
    int mb;                 /* images per micro-batch */
    int units;              /* most micro-batches of one rank in a step */
    int groups;             /* tensors of the exact sum: the trained ones, then the head */
    size_t *goff;           /* (groups + 1) their offsets in a packed gradient */
    float *x, *emb, *demb, *grads, *delta, *packed, *dhead;
    float *ugrad;           /* (units, packed size) each local micro-batch's gradient */
    float *gmax;            /* (groups) largest |gradient| of each tensor */
    int *gexp;              /* (groups) its fixed-point scale exponent */
    int64_t *acc;           /* (packed size) the fixed-point sum */
    double *uloss;          /* (micro-batches of a global batch) their losses */
    int32_t *y;
} DpTrainer;

/* Opens the loader (collective over comm) and allocates the buffers for spec;
 * the status is agreed over comm. */
TdStatus dp_trainer_open(DpTrainer *T, MPI_Comm comm, const LoaderOpts *lo, const DpSpec *spec);
void dp_trainer_free(DpTrainer *T);

/* One global batch, micro-batch by micro-batch: forward, head loss (logits = scale * cos(feature, head
 * row); head (C,E) is used as given; cross-entropy label-smoothed by
 * spec->label_smoothing), backward, gradient sum over comm.
 * Afterwards T->grads holds the summed gradient of the trained tensors (table
 * layout) and, with spec->train_head, T->dhead (C,E) the head's (with a
 * head_map: the head_params floats of its parameters); *loss is the
 * global mean loss. Collective over comm. */
TdStatus dp_step(DpTrainer *T, MPI_Comm comm, const DpSpec *spec, const float *theta,
                 const float *head, float scale, double *loss);

/* The scratch buffer T->packed holds at least ntrain + C*E floats. */

/* Copies the masked tensors of full into out, back to back (and back). */
void dp_pack(const ParamTable *t, const unsigned char *mask, const float *full, float *out);
void dp_unpack(const ParamTable *t, const unsigned char *mask, const float *in, float *full);
/* out = a - b on the masked tensors. */
void dp_masked_diff(const ParamTable *t, const unsigned char *mask, const float *a,
                    const float *b, float *out);

/* Learning rate of 0-based step: linear warm-up (at most steps), then
 * schedule "cosine" | "linear" (to 0 at steps) | "constant". */
float dp_schedule_lr(const char *schedule, double lr, long step, long warmup, long steps);

/* "1h02m", "3m05s", "42s" */
void dp_fmt_eta(double seconds, char *buf, size_t n);

#endif
