/* study: what the analysis stages (disentangle, kernel, report) share - the
 * run directory, theta0 with the run's frozen heads, task vectors read back
 * from task_vectors_<mode>.h5 (finetune.h layout), and the small numerics of
 * comparing two encoders' outputs on the same inputs.
 *
 * Representation measure (the head-free variant of the disentanglement
 * error): for an L2-normalised feature z (E entries) let
 *   p(z) = softmax(logit_scale * z)            over the E feature entries,
 * i.e. the feature read as a distribution with the same temperature the heads
 * use (heads.logit_scale; 100 in CLIP, so entries of a unit vector in 512
 * dimensions give logits of order 100/sqrt(512) ~ 4). The symmetric KL of two
 * features is KL(p(a)||p(b)) + KL(p(b)||p(a)) = sum_k (p_k(a) - p_k(b)) *
 * (log p_k(a) - log p_k(b)), computed in double with log-sum-exp. It is 0
 * exactly when the two features are equal and does not depend on any head. */
#ifndef TD_STUDY_H
#define TD_STUDY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "heads.h"
#include "model_io.h"
#include "status.h"

/* "<run.out_dir>/<run.name>" */
void study_run_dir(const TdConfig *cfg, char *buf, size_t n);

/* theta0 (model.path) and the heads the run fine-tuned with
 * (<run_dir>/heads.h5, written by the finetune stage). Collective over
 * the run communicator (g_rt.comm); agreed status. */
TdStatus study_open(const TdConfig *cfg, VitModel *theta0, HeadSet *heads);

/* Reads task t's vector of one mode into tau (table layout, theta0's table;
 * zero outside the trained tensors) and mask (1 = tensor present in the file).
 * Any rank, independent read. A task whose fine-tuning did not finish
 * (status attribute other than "ok") is an error naming the file and task. */
TdStatus study_tv_read(const char *run_dir, const char *mode, const char *task,
                       const VitModel *theta0, float *tau, unsigned char *mask);

/* Index of name in data.tasks, or -1. */
int study_task_index(const TdConfig *cfg, const char *name);

/* Class with the largest logit of feature z (E) under head (C,E); ties go to
 * the lower class (same rule as evaluate.c). */
int study_argmax(const float *z, const float *head, int C, int E);

/* Symmetric KL of the softmaxes of scale*a and scale*b (see above). */
double study_symkl(const float *a, const float *b, int E, double scale);

#endif
