#include "commands.h"

/* Placeholder until this command is implemented in this session. */
TdStatus cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return td_fail(TD_ERR_INTERNAL, "command 'run' is not built yet");
}
