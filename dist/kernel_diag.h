/* kernel_diag: the kernel stage - how far each fine-tuned encoder is from
 * its own linearisation ("kernel behaviour", Ortiz-Jimenez et al. 2023).
 *
 * For every finetune.modes entry and task t, on the first eval.limit (0 =
 * all) test images of t, scored with t's frozen head:
 *   acc_nonlinear   accuracy of the mode's fine-tuned model: f(x; theta0 + tau_t)
 *                   for full/attn/..., and for ntk the model ntk trained, which
 *                   is the linearised one (so there it equals acc_linearised)
 *   acc_linearised  accuracy of f(x; theta0) + J(theta0) tau_t
 *   disagreement    fraction of the images where the two argmaxes differ
 *   images          number of images evaluated
 * and for ntk only, the same task vector pushed through the non-linear
 * network: acc_plain = acc of f(x; theta0 + tau_t), disagreement_plain =
 * its disagreement with the linearised model.
 * Evaluation is data-parallel over the run communicator (g_rt.comm) (eval.batch per pass).
 * results.json: modes.<mode>.kernel.<task> = {those keys}. */
#ifndef TD_KERNEL_DIAG_H
#define TD_KERNEL_DIAG_H

#include "config.h"
#include "status.h"

/* Collective over the run communicator (g_rt.comm); returns an agreed status. */
TdStatus kernel_stage(const TdConfig *cfg);

#endif
