#include "commands.h"

/* Placeholder until this command is implemented in this session. */
TdStatus cmd_init(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return td_fail(TD_ERR_INTERNAL, "command 'init' is not built yet");
}
