/* disentangle: the disentangle stage - weight disentanglement error of task
 * pairs on an alpha1 x alpha2 grid, for every finetune.modes entry.
 *
 * For a pair (1,2) with task vectors tau_1, tau_2 of one mode and the grid
 * alpha = linspace(disentangle.min, disentangle.max, disentangle.points):
 *   joint(a1,a2)  = theta0 + a1 tau_1 + a2 tau_2
 *   single_i(a)   = theta0 + a tau_i          (joint with the other alpha 0)
 *   xi_pred(a1,a2) = sum_i  (1/N_i) #{x in D_i : argmax head_i f(x; joint)
 *                                               != argmax head_i f(x; single_i(a_i))}
 *   xi_repr(a1,a2) = sum_i  (1/N_i) sum_{x in D_i} symKL(f(x; joint), f(x; single_i(a_i)))
 * with D_i N_i test images of task i evenly spaced over its test split (the
 * images at positions floor(j * n_i / N_i), j < N_i, of the n_i there,
 * task_loader.h; N_i = disentangle.limit, else eval.limit, else all n_i)
 * and symKL the head-free measure of study.h (softmax of logit_scale times
 * the normalised feature). Every average divides by the number of images
 * actually evaluated (the public code's defect - 16 batches averaged, all
 * batches counted - is not repeated). In ntk mode f is the
 * linearised model f(x; theta0) + J(theta0)(a1 tau_1 + a2 tau_2).
 * By construction xi(0,0) = 0, and the i-th term vanishes when the other
 * alpha is 0 (joint and single are then the same parameters, bit for bit).
 *
 * Work: the 2*points single encoders, then the points^2 joint encoders, are
 * items dealt round-robin to the ranks of the run communicator (g_rt.comm); each item is
 * evaluated alone on MPI_COMM_SELF (disentangle.batch images per forward).
 * The single features are broadcast to every rank (memory: 2*points*N*E
 * floats per rank), the per-item terms summed with one MPI_Allreduce. An item
 * is computed the same way whoever owns it, so the grids do not depend on the
 * rank count.
 *
 * Outputs (results.h), for mode m and pair "<t1>+<t2>" (G = /m/disentangle/<t1>+<t2>):
 *   grids.h5  G/alpha (points)            the grid coefficients
 *             G/pred, G/repr (points, points)   xi, axes "alpha1,alpha2"
 *             G/pred_terms, G/repr_terms (2, points, points)  the two terms
 *   results.json modes.m.disentangle.<t1>+<t2> = {grid: G, mean_err_pred,
 *             mean_err_repr (mean over the WHOLE grid), mean_err_pred_inner,
 *             mean_err_repr_inner (mean over |a1|, |a2| <= 1), images: [N1, N2],
 *             min, max, points} */
#ifndef TD_DISENTANGLE_H
#define TD_DISENTANGLE_H

#include "config.h"
#include "status.h"

/* Collective over the run communicator (g_rt.comm); returns an agreed status. */
TdStatus disentangle_stage(const TdConfig *cfg);

#endif
