#include "commands.h"

/* Placeholder until this command is implemented in this session. */
TdStatus cmd_data(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return td_fail(TD_ERR_INTERNAL, "command 'data' is not built yet");
}
