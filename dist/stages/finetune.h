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
 * The loss is the cross-entropy of logit_scale * cos(feature, head row),
 * label-smoothed by finetune.label_smoothing (targets (1-eps) one-hot + eps/C).
 * Train-time crops: data.augment (false = the eval preprocessing) and
 * data.crop_scale (task_loader.h).
 *
 * Heads (heads.h) are fixed before fine-tuning (heads.h5). They stay frozen
 * unless finetune.train_heads: then each task's head (C,E) starts from its
 * fixed head and is trained jointly with the encoder - its gradient is summed
 * in the same MPI_Allreduce as the encoder's (train_step.h), counts in the
 * global norm that grad_clip clips, and gets its own AdamW with the encoder's
 * lr, betas, eps and weight decay (no row renormalisation); it is saved in
 * the checkpoints. acc_val / acc_test are then measured with the trained
 * head (acc_theta0_* always with the fixed one). At the end of a mode each
 * group's rank 0 contributes its tasks' heads to one MPI_Allreduce over WORLD
 * and world rank 0 writes heads_<mode>.h5 (before the task-vector file).
 *
 * Files under <run.out_dir>/<run.name>/:
 *   heads.h5                 the heads (heads.h layout)
 *   heads_<mode>.h5          finetune.train_heads only: the trained heads, heads.h
 *        layout (/<task> float32 [C,E]; root attributes format = "tadist-heads-1",
 *        source = "finetuned:<mode>", logit_scale, base_checksum); tasks that
 *        did not finish (NaN) are left out
 *   task_vectors_<mode>.h5   written collectively (parallel HDF5) by all ranks:
 *     /  attributes format = "tadist-task-vectors-1", mode, base_checksum,
 *        base_model, heads (heads.source), logit_scale, lr, weight_decay,
 *        batch, steps, warmup, schedule, grad_clip, seed, label_smoothing,
 *        augment, train_heads (0/1), heads_file (the heads file in the run
 *        directory that scores these task vectors: "heads.h5", or
 *        "heads_<mode>.h5" with train_heads)
 *     /<task>/<tensor name>  float32, the tensor's shape (params.h names):
 *        tau on the trained tensors only
 *     /<task> attributes status ("ok", "nan", "interrupted"), steps_done,
 *        seed (the task's data seed), acc_val, acc_test, acc_theta0_val,
 *        acc_theta0_test, final_loss
 *   ckpt/<mode>_<task>.h5    every finetune.checkpoint_every steps: the packed
 *        trained tensors, AdamW moments and the step (attributes step,
 *        config_hash), with train_heads the head and its moments too; a rerun
 *        with the same settings resumes from it (tests/finetune/kill_resume.sh
 *        kills a run with SIGKILL to check)
 *   metrics/<mode>_<task>.jsonl  one JSON object per logged step
 * A NaN or Inf loss (or gradient) stops that task; the others finish; the
 * stage then fails naming the task and step. */
#ifndef TD_FINETUNE_H
#define TD_FINETUNE_H

#include "config.h"
#include "status.h"

/* Collective over the run communicator (g_rt.comm); returns an agreed status. */
TdStatus finetune_stage(const TdConfig *cfg);

#endif
