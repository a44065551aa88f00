/* pretrain: the pretrain stage - the project's own theta0.
 *
 * When pretrain.enabled is true and model.path does not exist, every rank
 * (the run communicator (g_rt.comm), one data-parallel group: train_step.h) trains an encoder
 * of model.arch from params_init_random(run.seed) on data.dir/<pretrain.task>.h5:
 * full training, a cosine classifier head (logits = pretrain.scale *
 * cos(feature, class embedding), class embeddings learned jointly, no weight
 * decay on them), AdamW (pretrain.lr, pretrain.weight_decay, finetune.beta1/
 * beta2/eps), linear warm-up then cosine decay, global gradient-norm clip at
 * finetune.grad_clip, the loader's train-time random crops. Progress every
 * finetune.log_every steps. The result goes to model.path atomically
 * (model_write) with source "pretrain:<data.dir>/<task>:steps=N:seed=S"; the class
 * embeddings are not kept (fine-tuning builds its own heads).
 *
 * Cached: when model.path exists the stage only logs its source and returns,
 * so a rerun (or a later job) reuses it; delete the file to retrain. A
 * file whose source is not the one these settings would write is still used,
 * with a warning. The trajectory depends on the rank count only through the
 * order of the gradient sum. */
#ifndef TD_PRETRAIN_H
#define TD_PRETRAIN_H

#include "config.h"
#include "status.h"

/* Collective over the run communicator (g_rt.comm); returns an agreed status. */
TdStatus pretrain_stage(const TdConfig *cfg);

#endif
