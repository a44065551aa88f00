/* tadist: task arithmetic for Vision Transformers, under MPI.
 *
 *   tadist CONFIG [--set key=value]...   run the pipeline a configuration describes
 *   tadist import | init | check | bench | data ...   tools; `tadist CMD --help` */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "runtime.h"

typedef struct {
    const char *name;
    TdStatus (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command k_commands[] = {
    {"import", cmd_import, "convert a Hugging Face CLIP model.safetensors to a tadist model file"},
    {"init", cmd_init, "write a randomly initialised encoder of a named architecture"},
    {"check", cmd_check, "compare the engine against a reference file (outputs, gradients, JVPs)"},
    {"bench", cmd_bench, "measure images/s and memory of forward and training steps"},
    {"data", cmd_data, "import and build task data sets"},
    {"merge", cmd_merge, "merge task vectors into a model file (merge.* options)"},
    {"export", cmd_export, "write a tadist model file as Hugging Face safetensors"},
    {"zeroshot", cmd_zeroshot, "build zero-shot heads from class names through the text tower"},
};

static void usage(void)
{
    printf("usage: tadist CONFIG.cfg [--set key=value]...\n"
           "       tadist COMMAND [options]   (tadist COMMAND --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        printf("  %-8s %s\n", k_commands[i].name, k_commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    /* Output meant for files or pipes must not start with the start-up log line. */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--print-reference") == 0 || strcmp(argv[i], "--print-config") == 0)
            setenv("TADIST_QUIET", "1", 1);
    runtime_init(&argc, &argv);
    TdStatus s = TD_OK;
    const Command *cmd = NULL;
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (strcmp(argv[1], k_commands[i].name) == 0)
            cmd = &k_commands[i];
    if (cmd)
        s = cmd->run(argc - 2, argv + 2);
    else
        s = cmd_run(argc - 1, argv + 1);
    return runtime_finish(s);
}
