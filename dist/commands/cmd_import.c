/* tadist import: a Hugging Face CLIP model.safetensors -> a tadist model file
 * (dist/io/hf_import.h). Rank 0 does the work; the others wait for the agreed
 * status. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "hf_import.h"
#include "runtime.h"

TdStatus cmd_import(int argc, char **argv)
{
    HfImportOpts j = {0};
    int help = 0;
    const CliOption opts[] = {
        {"output", 'o', CLI_STR, &j.out, "tadist model file to write (required)"},
        {"heads", 0, CLI_INT, &j.heads,
         "attention heads; required without config.json, checked against it otherwise"},
        {"act", 0, CLI_STR, &j.act, "quick_gelu (default) or gelu, only without config.json"},
        {"text", 0, CLI_FLAG, &j.text,
         "also store the text tower (text_config of config.json) under /text"},
        {"help", 'h', CLI_FLAG, &help, "show this help"},
        {NULL, 0, 0, NULL, NULL}};
    const char *pos[1];
    int npos = 0;
    TdStatus s = cli_parse("import", argc, argv, opts, pos, 1, &npos);
    if (s == TD_OK && help) {
        if (g_rt.rank == 0) {
            cli_usage("tadist import SRC -o MODEL.h5 [--heads N] [--act NAME] [--text]", opts);
            printf("\nSRC is a Hugging Face CLIP model.safetensors (F32, F16 or BF16), or a folder\n"
                   "holding it. The architecture comes from config.json beside it (vision_config)\n"
                   "when there is one, otherwise from the tensor shapes. Text-tower tensors are\n"
                   "skipped unless --text is given (then config.json is required).\n");
            fflush(stdout);
        }
        return runtime_agree(g_rt.comm, TD_OK);
    }
    if (s == TD_OK && npos != 1)
        s = td_fail(TD_ERR_ARG, "import: expected one SRC (see tadist import --help)");
    if (s == TD_OK && !j.out)
        s = td_fail(TD_ERR_ARG, "import: -o MODEL.h5 is required");
    if (s == TD_OK && g_rt.rank == 0) {
        j.src = pos[0];
        s = hf_import(&j);
    }
    return runtime_agree(g_rt.comm, s);
}
