/* tadist init: a randomly initialised encoder of a named architecture.
 * Rank 0 does the work; the others wait for the agreed status. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "commands.h"
#include "model_io.h"
#include "runtime.h"

static TdStatus parse_seed(const char *text, unsigned long long *seed)
{
    char *end;
    errno = 0;
    *seed = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-')
        return td_fail(TD_ERR_ARG, "init: --seed expects a non-negative integer, got '%s'", text);
    return TD_OK;
}

static TdStatus init_run(const char *arch_name, unsigned long long seed, const char *out)
{
    VitArch a;
    TD_TRY(vit_arch_by_name(arch_name, &a));
    VitModel m;
    TD_TRY(model_alloc(&m, &a));
    params_init_random(&m.arch, &m.table, m.params, seed);
    snprintf(m.source, sizeof m.source, "init:%s:seed=%llu", arch_name, seed);
    TdStatus s = model_write(out, &m);
    if (s == TD_OK) {
        char desc[256];
        model_describe(&m.arch, desc, sizeof desc);
        td_log("init %s seed=%llu: %s; %zu parameters; checksum %s -> %s", arch_name, seed, desc,
               model_numel(&m), m.checksum, out);
    }
    model_free(&m);
    return s;
}

TdStatus cmd_init(int argc, char **argv)
{
    const char *arch = NULL, *seed_text = "0", *out = NULL;
    int help = 0;
    const CliOption opts[] = {{"arch", 0, CLI_STR, &arch, "architecture (required)"},
                              {"seed", 0, CLI_STR, &seed_text, "random seed (default 0)"},
                              {"output", 'o', CLI_STR, &out, "tadist model file to write (required)"},
                              {"help", 'h', CLI_FLAG, &help, "show this help"},
                              {NULL, 0, 0, NULL, NULL}};
    const char *pos[1];
    int npos = 0;
    TdStatus s = cli_parse("init", argc, argv, opts, pos, 0, &npos);
    if (s == TD_OK && help) {
        if (g_rt.rank == 0) {
            cli_usage("tadist init --arch NAME [--seed S] -o MODEL.h5", opts);
            printf("\narchitectures: %s\n", vit_arch_names());
            fflush(stdout);
        }
        return runtime_agree(g_rt.comm, TD_OK);
    }
    unsigned long long seed = 0;
    if (s == TD_OK && !arch)
        s = td_fail(TD_ERR_ARG, "init: --arch NAME is required (known: %s)", vit_arch_names());
    if (s == TD_OK && !out)
        s = td_fail(TD_ERR_ARG, "init: -o MODEL.h5 is required");
    if (s == TD_OK)
        s = parse_seed(seed_text, &seed);
    if (s == TD_OK && g_rt.rank == 0)
        s = init_run(arch, seed, out);
    return runtime_agree(g_rt.comm, s);
}
