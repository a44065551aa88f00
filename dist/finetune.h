/* finetune: the finetune stage - theta0 fine-tuned on every task, once per
 * finetune.modes entry, and the task vectors tau_t = theta_t - theta0.
 *
 * Layout: P ranks, T tasks, G = min(P, T) groups; rank r is in group
 * r*G/P (contiguous ranks), group g trains tasks g, g+G, ... in turn, data
 * parallel inside the group: each rank forwards and backwards its slice of the
 * global batch (task_loader.h), the loss is normalised by the GLOBAL batch,
 * and the gradients of the trained tensors (one packed buffer) are summed
 * with MPI_Allreduce every step. Results depend on P only through the order
 * of that sum.
 *
 * Modes (trainable.h): full, attn, attn_bias, mlp, linear train those tensors
 * of f(x; theta); ntk trains every tensor of the linearised model
 * f(x; theta0) + J(theta0)(theta - theta0). AdamW with decoupled weight
 * decay on theta, warm-up then finetune.schedule, global gradient-norm clip.
 * Heads (heads.h) are fixed before fine-tuning and frozen.
 *
 * Files under <run.out_dir>/<run.name>/:
 *   heads.h5                 the heads (heads.h layout)
 *   task_vectors_<mode>.h5   written collectively (parallel HDF5) by all ranks:
 *     /  attributes format = "tadist-task-vectors-1", mode, base_checksum,
 *        base_model, heads (heads.source), logit_scale, lr, weight_decay,
 *        batch, steps, warmup, schedule, grad_clip, seed
 *     /<task>/<tensor name>  float32, the tensor's shape (params.h names):
 *        tau on the trained tensors only
 *     /<task> attributes status ("ok", "nan", "interrupted"), steps_done,
 *        seed (the task's data seed), acc_val, acc_test, acc_theta0_val,
 *        acc_theta0_test, final_loss
 *   ckpt/<mode>_<task>.h5    every finetune.checkpoint_every steps: the packed
 *        trained tensors, AdamW moments and the step (attributes step,
 *        config_hash); a rerun with the same settings resumes from it
 *   metrics/<mode>_<task>.jsonl  one JSON object per logged step
 * A NaN or Inf loss (or gradient) stops that task; the others finish; the
 * stage then fails naming the task and step. */
#ifndef TD_FINETUNE_H
#define TD_FINETUNE_H

#include "config.h"
#include "status.h"

/* Collective over MPI_COMM_WORLD; returns an agreed status. */
TdStatus finetune_stage(const TdConfig *cfg);

#endif
