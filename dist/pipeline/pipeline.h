/* pipeline: the stages a configuration asks for (run.stages), in order:
 * pretrain -> finetune -> single -> addition -> negation -> disentangle ->
 * kernel -> report. This is the one place where stages are called from:
 * `tadist CONFIG` (commands/cmd_config.c) runs them once, or once per sweep
 * run when the configuration has sweep.axes (sweep.h). */
#ifndef TD_PIPELINE_H
#define TD_PIPELINE_H

#include "config.h"
#include "status.h"

/* The stages of run.stages except skip (NULL = none), collective over the run
 * communicator g_rt.comm (one sweep run, or the whole job). */
TdStatus pipeline_stages(const TdConfig *cfg, const char *skip);

#endif
