#include "pipeline.h"

#include <string.h>

#include "disentangle.h"
#include "finetune.h"
#include "kernel_diag.h"
#include "pretrain.h"
#include "report.h"
#include "runtime.h"
#include "search.h"

/* Stages in pipeline order; each is collective over the run communicator
 * (g_rt.comm) and returns an agreed status. */
typedef struct {
    const char *name;
    const char *what;
    TdStatus (*run)(const TdConfig *cfg);
} Stage;

static const Stage k_stages[] = {
    {"pretrain", "pre-train theta0 on pretrain.task when model.path is missing (cached)",
     pretrain_stage},
    {"finetune", "fine-tune theta0 on each task, once per finetune.modes entry", finetune_stage},
    {"single", "single-task accuracy of each fine-tuned encoder (normalisation)", single_stage},
    {"addition", "merge task vectors (merge.methods), pick alpha on val, test", addition_stage},
    {"negation", "subtract each task vector, keeping the control task's accuracy", negation_stage},
    {"disentangle", "weight disentanglement error over the disentangle grid", disentangle_stage},
    {"kernel", "fine-tuned encoders against their linearisation f0 + J tau", kernel_stage},
    {"report", "report.md, figures and tables from results.json and grids.h5", report_stage},
};

TdStatus pipeline_stages(const TdConfig *cfg, const char *skip)
{
    TD_TRY(report_note_command(cfg)); /* the report names the commands behind a run */
    for (size_t i = 0; i < sizeof k_stages / sizeof k_stages[0]; i++) {
        const Stage *st = &k_stages[i];
        if (config_names_contains(&cfg->run.stages, st->name) &&
            !(skip && strcmp(skip, st->name) == 0))
            TD_TRY(st->run(cfg));
    }
    return TD_OK;
}
