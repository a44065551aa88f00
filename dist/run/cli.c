#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static TdStatus set_value(const char *cmd, const CliOption *o, const char *v)
{
    char *end;
    switch (o->kind) {
    case CLI_STR:
        *(const char **)o->dest = v;
        return TD_OK;
    case CLI_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || *end || end == v || x < -2147483647L || x > 2147483647L)
            return td_fail(TD_ERR_ARG, "%s: --%s expects an integer, got '%s'", cmd, o->name, v);
        *(int *)o->dest = (int)x;
        return TD_OK;
    }
    case CLI_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || *end || end == v)
            return td_fail(TD_ERR_ARG, "%s: --%s expects a number, got '%s'", cmd, o->name, v);
        *(double *)o->dest = x;
        return TD_OK;
    }
    case CLI_LIST: {
        CliList *l = o->dest;
        if (l->count >= (int)(sizeof l->items / sizeof l->items[0]))
            return td_fail(TD_ERR_ARG, "%s: too many --%s options", cmd, o->name);
        l->items[l->count++] = v;
        return TD_OK;
    }
    case CLI_FLAG:
        break;
    }
    return td_fail(TD_ERR_INTERNAL, "%s: bad option kind for --%s", cmd, o->name);
}

static const CliOption *find(const CliOption *opts, const char *name, size_t len, char short_name)
{
    for (const CliOption *o = opts; o->name; o++) {
        if (short_name ? o->short_name == short_name
                       : (strlen(o->name) == len && strncmp(o->name, name, len) == 0))
            return o;
    }
    return NULL;
}

TdStatus cli_parse(const char *cmd, int argc, char **argv, const CliOption *opts,
                   const char **pos, int max_pos, int *npos)
{
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const CliOption *o = NULL;
        const char *inline_val = NULL;
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            o = find(opts, a + 2, len, 0);
            if (eq)
                inline_val = eq + 1;
        } else if (a[0] == '-' && a[1] && !a[2] && !(a[1] >= '0' && a[1] <= '9')) {
            o = find(opts, NULL, 0, a[1]);
        } else {
            if (*npos >= max_pos)
                return td_fail(TD_ERR_ARG, "%s: unexpected argument '%s'", cmd, a);
            pos[(*npos)++] = a;
            continue;
        }
        if (!o)
            return td_fail(TD_ERR_ARG, "%s: unknown option '%s' (see tadist %s --help)", cmd, a,
                           cmd);
        if (o->kind == CLI_FLAG) {
            if (inline_val)
                return td_fail(TD_ERR_ARG, "%s: --%s takes no value", cmd, o->name);
            *(int *)o->dest = 1;
            continue;
        }
        if (!inline_val) {
            if (i + 1 >= argc)
                return td_fail(TD_ERR_ARG, "%s: option '%s' needs a value", cmd, a);
            inline_val = argv[++i];
        }
        TD_TRY(set_value(cmd, o, inline_val));
    }
    return TD_OK;
}

void cli_usage(const char *usage_line, const CliOption *opts)
{
    printf("usage: %s\n", usage_line);
    for (const CliOption *o = opts; o->name; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s", o->short_name, o->name);
        else
            snprintf(left, sizeof left, "    --%s", o->name);
        printf("  %-24s %s\n", left, o->help ? o->help : "");
    }
}
