/* cli: the small option parser every subcommand uses.
 * Options are "--name value" or "--name=value" (or "-o value" when short is
 * set); positional arguments are collected in order. Unknown options and
 * missing values are TD_ERR_ARG errors that name the option. */
#ifndef TD_CLI_H
#define TD_CLI_H

#include "status.h"

typedef enum { CLI_STR, CLI_INT, CLI_DOUBLE, CLI_FLAG, CLI_LIST } CliKind;

typedef struct {
    const char *name;  /* long name without "--" */
    char short_name;   /* 0 for none */
    CliKind kind;
    void *dest;        /* const char **, int *, double *, int * (flag), CliList * */
    const char *help;
} CliOption;

/* Repeatable option values (e.g. --set a=b --set c=d). */
typedef struct {
    int count;
    const char *items[64];
} CliList;

/* Parses argv[0..argc) against opts (terminated by a {NULL} entry). Positional
 * arguments go to pos (at most max_pos; more is an error); *npos gets their count. */
TdStatus cli_parse(const char *cmd, int argc, char **argv, const CliOption *opts,
                   const char **pos, int max_pos, int *npos);

/* Prints usage of a command's options to stdout. */
void cli_usage(const char *usage_line, const CliOption *opts);

#endif
