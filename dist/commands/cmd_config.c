/* The main command: tadist CONFIG.cfg [--set key=value]... [--print-config].
 * Loads and validates the configuration (rank 0 reads, every rank gets a copy),
 * then hands it to the pipeline. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "hf_import.h"
#include "image.h"
#include "mm_bf16.h"
#include "pipeline.h"
#include "runtime.h"
#include "sweep.h"

static const char k_usage[] =
    "tadist CONFIG.cfg [--set key=value]... [--print-config] [--check]\n"
    "       tadist --print-reference   (every option, documented: config/reference.cfg)";

/* blas.threads = 0 keeps runtime_init's choice. */
static void apply_blas_threads(const TdConfig *cfg)
{
    if (cfg->blas.threads <= 0 || cfg->blas.threads == g_rt.blas_threads)
        return;
    runtime_set_threads(cfg->blas.threads);
    td_log("BLAS threads per rank: %d (blas.threads)", g_rt.blas_threads);
}

static void log_plan(const TdConfig *cfg)
{
    char modes[1024], methods[1024];
    config_value_text(cfg, "finetune.modes", modes, sizeof modes);
    config_value_text(cfg, "merge.methods", methods, sizeof methods);
    td_log("run '%s': model %s, %d task(s) from %s, modes %s, merges %s", cfg->run.name,
           cfg->model.path, cfg->data.tasks.count, cfg->data.dir, modes, methods);
    for (int a = 0; a < cfg->sweep.axes.count; a++)
        td_log("sweep axis %d: %s", a + 1, cfg->sweep.axes.item[a]);
}

/* model.hf_import: a missing model.path is imported from that Hugging Face
 * checkpoint before any stage (rank 0; with the text tower when the heads
 * are zero-shot). An existing model.path is used as it is. */
static TdStatus import_base(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    if (cfg->model.hf_import[0] && g_rt.rank == 0 && access(cfg->model.path, F_OK) != 0) {
        td_log("model.path '%s' is missing: importing model.hf_import '%s' into it",
               cfg->model.path, cfg->model.hf_import);
        HfImportOpts o = {.src = cfg->model.hf_import,
                          .out = cfg->model.path,
                          .text = strcmp(cfg->heads.source, "zeroshot") == 0};
        s = hf_import(&o);
    }
    return runtime_agree(g_rt.comm, s);
}

/* The whole job: one run of the stages, or a sweep of runs. Collective over
 * MPI_COMM_WORLD; cfg is the same on every rank (config_load); the status is
 * agreed. */
static TdStatus run_job(const TdConfig *cfg)
{
    log_plan(cfg);
    TD_TRY(import_base(cfg));
    if (cfg->sweep.axes.count > 0)
        return sweep_run(cfg);
    return pipeline_stages(cfg, NULL);
}

TdStatus cmd_run(int argc, char **argv)
{
    CliList sets = {0};
    int print_config = 0, print_reference = 0, check_only = 0, help = 0;
    const CliOption opts[] = {
        {"set", 0, CLI_LIST, &sets,
         "override one option, e.g. --set finetune.lr=3e-5 --set finetune.modes=full,attn"},
        {"print-config", 0, CLI_FLAG, &print_config, "print every effective value (rank 0)"},
        {"check", 0, CLI_FLAG, &check_only, "validate the configuration and stop (run no stage)"},
        {"print-reference", 0, CLI_FLAG, &print_reference,
         "print the documented reference configuration and exit"},
        {"help", 'h', CLI_FLAG, &help, "this help"},
        {NULL, 0, 0, NULL, NULL},
    };
    const char *path = NULL;
    int npos = 0;
    /* argv is the same on every rank, so a parse error is the same everywhere */
    TdStatus s = cli_parse("run", argc, argv, opts, &path, 1, &npos);
    if (s == TD_OK && (help || print_reference)) {
        if (g_rt.rank == 0) {
            if (help)
                cli_usage(k_usage, opts);
            else
                config_print_reference(stdout);
        }
        return TD_OK;
    }
    if (s == TD_OK && npos != 1)
        s = td_fail(TD_ERR_ARG, "run: expected one configuration file; usage: %s", k_usage);
    if (s != TD_OK)
        return runtime_agree(g_rt.comm, s);

    TdConfig cfg;
    TD_TRY(config_load(path, &sets, &cfg)); /* agreed across ranks */
    if (print_config && g_rt.rank == 0)
        config_print(&cfg, stdout);
    td_log("configuration OK: %s%s", path, sets.count ? " with --set overrides" : "");
    if (check_only)
        return TD_OK;
    apply_blas_threads(&cfg);
    g_rt.micro_batch = cfg.blas.micro_batch;
    g_rt.eval_bf16 = strcmp(cfg.eval.precision, "bf16") == 0;
    if (g_rt.eval_bf16 && mm_bf16_native())
        td_log("eval.precision = bf16: evaluation products in bf16 with fp32 accumulation "
               "(oneDNN, %s)", mm_bf16_isa());
    else if (g_rt.eval_bf16)
        td_log("eval.precision = bf16, but this CPU has neither AVX512_BF16 nor AMX (oneDNN "
               "runs %s): evaluation stays fp32", mm_bf16_isa());
    float mean[3], std[3];
    for (int c = 0; c < 3; c++)
        mean[c] = (float)cfg.data.mean[c], std[c] = (float)cfg.data.std[c];
    image_set_normalisation(mean, std); /* every loader of this run normalises alike */
    return run_job(&cfg);
}
