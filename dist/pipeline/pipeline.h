/* pipeline: the stages a configuration asks for (run.stages), in order:
 * pretrain -> finetune -> single -> addition -> negation -> disentangle ->
 * kernel -> report. This is the one place where stages are called from; a
 * configuration with sweep.axes runs them once per sweep run (sweep.h). */
#ifndef TD_PIPELINE_H
#define TD_PIPELINE_H

#include "config.h"
#include "status.h"

/* Collective over MPI_COMM_WORLD; cfg is the same on every rank (config_load).
 * Returns a status agreed across ranks. */
TdStatus pipeline_run(const TdConfig *cfg);

/* The stages of run.stages except skip (NULL = none), collective over the run
 * communicator g_rt.comm (one sweep run, or the whole job). */
TdStatus pipeline_stages(const TdConfig *cfg, const char *skip);

#endif
