/* heads: one classification head per task, fixed before fine-tuning.
 *
 * Sources (heads.source):
 *   prototype  row c = normalise(mean over task train images of class c of
 *              normalise(f(x; theta0)))
 *   probe      prototypes, then heads.probe_steps full-batch Adam steps
 *              (lr 1e-3, deterministic) of softmax regression with logits
 *              logit_scale * feat @ head^T on the frozen normalised theta0
 *              train features
 *   file       heads.file, one float32 dataset /<task> [C, E] per task (the
 *              layout heads_write produces)
 *   zeroshot   CLIP class-name prompts through the model file's text tower
 *              (zeroshot.h; heads.vocab, heads.merges, heads.templates)
 *
 * Heads file (heads_write): /<task> float32 [C, E]; root attributes
 * format = "tadist-heads-1", source, logit_scale, base_checksum. */
#ifndef TD_HEADS_H
#define TD_HEADS_H

#include "config.h"
#include "model_io.h"
#include "status.h"

typedef struct {
    int tasks, E;
    int *classes;   /* (tasks) C_t */
    float **w;      /* (tasks) each (C_t, E) */
} HeadSet;

/* Builds (or reads) every task's head. Collective over the run communicator (g_rt.comm): theta0
 * features are computed data-parallel over all ranks. Every rank gets every
 * head; the status is agreed. */
TdStatus heads_build(const TdConfig *cfg, const VitModel *theta0, HeadSet *h);
void heads_free(HeadSet *h);

/* The head (C,E) of a task outside data.tasks (the negation's control) when
 * heads.source = zeroshot: its class names through the prompt templates and
 * the text tower, as every task's; *built = 0 for the other sources (the
 * caller fits its own). Collective: rank 0 builds it, every rank gets it. */
TdStatus heads_build_text(const TdConfig *cfg, const char *task_path, const char *task, int C,
                          int E, float *w, int *built);

/* Rank 0 writes path (atomic); others return TD_OK. Status agreed over WORLD. */
TdStatus heads_write(const char *path, const TdConfig *cfg, const VitModel *theta0,
                     const HeadSet *h);
/* The same with the root attribute source given (e.g. "finetuned:attn"), and
 * only the tasks t with include[t] != 0 (include NULL: all). Rank 0's h is
 * written. */
TdStatus heads_write_as(const char *path, const TdConfig *cfg, const VitModel *theta0,
                        const HeadSet *h, const char *source, const unsigned char *include);

/* "<data.dir>/<task>.h5" */
void heads_task_path(const TdConfig *cfg, int t, char *buf, size_t n);

#endif
