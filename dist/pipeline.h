/* pipeline: the stages a configuration asks for (run.stages), in order:
 * pretrain -> finetune -> single -> addition -> negation -> disentangle.
 * This is the one place where stages are called from; none is implemented
 * yet, and pipeline_run says so. */
#ifndef TD_PIPELINE_H
#define TD_PIPELINE_H

#include "config.h"
#include "status.h"

/* Collective over MPI_COMM_WORLD; cfg is the same on every rank (config_load).
 * Returns a status agreed across ranks. */
TdStatus pipeline_run(const TdConfig *cfg);

#endif
