/* kernel_diag: the kernel stage - how far each fine-tuned encoder is from
 * its own linearisation ("kernel behaviour", Ortiz-Jimenez et al. 2023).
 *
 * For every finetune.modes entry and task t, on eval.limit test images of t
 * (evenly spaced over the split, task_loader.h; 0 = all), scored with t's
 * frozen head, the task vector tau_t goes through both models:
 *   acc_nonlinear   accuracy of the network at the fine-tuned weights,
 *                   f(x; theta0 + tau_t)
 *   acc_linearised  accuracy of its linearisation f(x; theta0) + J(theta0) tau_t
 *   disagreement    fraction of the images where the two argmaxes differ
 *   feature_gap     mean over the images of |f(x; theta0 + tau_t) - lin(x)|,
 *                   both L2-normalised features (so in [0, 2])
 *   feature_shift   mean of |lin(x) - f(x; theta0)|: how far the linearised
 *                   model moved the features, the scale feature_gap compares with
 *   trained         "linearised" for ntk (its task vectors were trained through
 *                   f0 + J tau, and acc_linearised is the fine-tuned model's
 *                   accuracy), "non-linear" otherwise (acc_nonlinear is)
 *   images          number of images evaluated
 * The same definitions hold for every mode: for ntk, acc_nonlinear and the
 * disagreement say how far the linearised model that was trained is from
 * the network the same weights give.
 * Evaluation is data-parallel over the run communicator (g_rt.comm) (eval.batch per pass).
 * results.json: modes.<mode>.kernel.<task> = {those keys}. */
#ifndef TD_KERNEL_DIAG_H
#define TD_KERNEL_DIAG_H

#include "config.h"
#include "status.h"

/* Collective over the run communicator (g_rt.comm); returns an agreed status. */
TdStatus kernel_stage(const TdConfig *cfg);

#endif
