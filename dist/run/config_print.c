/* config_print: the configuration as text - the canonical dump, the
 * documented reference file, one value, and the schema check (config.h). */
#include "config.h"
#include "config_schema.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "vit_arch.h"

/* ---- output ------------------------------------------------------------------------ */

static void limits_describe(const CfgRow *r, char *buf, size_t n)
{
    Range rg;
    buf[0] = '\0';
    switch (r->type) {
    case CFG_INT:
    case CFG_FLOAT:
    case CFG_NUM2:
    case CFG_NUM3:
    case CFG_NUMS:
        if (r->limits && range_parse(r->limits, &rg)) {
            char d[96];
            range_describe(&rg, d, sizeof d);
            snprintf(buf, n, r->type == CFG_NUM2 || r->type == CFG_NUM3 || r->type == CFG_NUMS
                                 ? "; each %s" : "; %s",
                     d);
        }
        return;
    case CFG_ENUM:
        snprintf(buf, n, "; one of %s", r->limits);
        return;
    case CFG_CHOICES:
        snprintf(buf, n, "; one or more of %s", r->limits);
        return;
    default:
        return;
    }
}

/* The sections enclosing a key: "merge.ties.k" -> {merge, ties}. */
typedef struct {
    int n;
    char part[4][TD_CFG_NAME_MAX];
} Sections;

static void sections_of(const char *key, Sections *s)
{
    s->n = 0;
    for (const char *p = key, *dot; (dot = strchr(p, '.')) != NULL && s->n < 4; p = dot + 1)
        snprintf(s->part[s->n++], TD_CFG_NAME_MAX, "%.*s", (int)(dot - p), p);
}

static void emit_row(const TdConfig *cfg, const CfgRow *r, int depth, FILE *f, int with_doc)
{
    TdConfig *defaults = NULL;
    if (!cfg) { /* the reference shows defaults, which are known to parse */
        defaults = calloc(1, sizeof *defaults);
        if (!defaults)
            return;
        value_from_text(r, field_of(defaults, r), r->def, "default");
        cfg = defaults;
    }
    char value[4096], line[4400];
    value_format(r, cfield_of(cfg, r), 1, value, sizeof value);
    snprintf(line, sizeof line, "%*s%s = %s;", 2 * depth, "", strrchr(r->key, '.') + 1, value);
    if (with_doc) {
        char lim[160];
        limits_describe(r, lim, sizeof lim);
        fprintf(f, "%-44s # %s%s\n", line, r->doc, lim);
    } else {
        fprintf(f, "%s\n", line);
    }
    free(defaults);
}

/* Writes every row inside its nested groups; with_doc adds the descriptions. */
static void emit(const TdConfig *cfg, FILE *f, int with_doc)
{
    Sections open = {0};
    for (int i = 0; i <= k_nrows; i++) {
        Sections want = {0};
        if (i < k_nrows)
            sections_of(k_rows[i].key, &want);
        int common = 0;
        while (common < open.n && common < want.n &&
               strcmp(open.part[common], want.part[common]) == 0)
            common++;
        while (open.n > common) {
            open.n--;
            fprintf(f, "%*s};\n", 2 * open.n, "");
        }
        if (i == k_nrows)
            break;
        for (; open.n < want.n; open.n++) {
            if (open.n == 0 && with_doc)
                fputc('\n', f);
            fprintf(f, "%*s%s = {\n", 2 * open.n, "", want.part[open.n]);
            memcpy(open.part[open.n], want.part[open.n], TD_CFG_NAME_MAX);
        }
        emit_row(cfg, &k_rows[i], open.n, f, with_doc);
    }
}

void config_print(const TdConfig *cfg, FILE *f)
{
    fprintf(f, "# tadist effective configuration: every option, defaults included\n");
    emit(cfg, f, 0);
    fflush(f);
}

void config_print_reference(FILE *f)
{
    fprintf(f,
            "# tadist reference configuration: every option at its default, documented.\n"
            "# Written by `tadist --print-reference`; edit config.h, not this file.\n"
            "#\n"
            "# Run: mpirun -n N tadist CONFIG.cfg [--set key=value]... [--print-config]\n"
            "# A file needs only the options it changes; every other one takes the default\n"
            "# shown here. Unknown keys, wrong types and out-of-range values are errors.\n"
            "#\n"
            "# --set key=value overrides one option after the file (repeatable, in order).\n"
            "# The value is written as in this file; in addition a string may be left\n"
            "# unquoted and a list may be written without brackets, as a comma list:\n"
            "#   --set finetune.lr=3e-5  --set run.name=trial  --set finetune.modes=full,attn\n"
            "#   --set 'finetune.modes=[\"full\", \"attn\"]'  --set data.crop_scale=0.8,1.0\n"
            "# Lists [ ] hold one type: write [0.5, 1.0], not [0.5, 1].\n"
            "# Relative paths are relative to the directory tadist runs in.\n");
    emit(NULL, f, 1);
    fflush(f);
}

TdStatus config_value_text(const TdConfig *cfg, const char *key, char *buf, size_t n)
{
    const CfgRow *r = row_find(key);
    if (!r)
        return td_fail(TD_ERR_ARG, "unknown configuration key '%s'", key);
    value_format(r, cfield_of(cfg, r), 0, buf, n);
    return TD_OK;
}

int config_names_contains(const TdCfgNames *l, const char *name)
{
    for (int i = 0; i < l->count; i++)
        if (strcmp(l->item[i], name) == 0)
            return 1;
    return 0;
}

TdStatus config_schema_check(void)
{
    for (int i = 0; i < k_nrows; i++) {
        const CfgRow *r = &k_rows[i];
        Range rg;
        if (!strchr(r->key, '.') || row_find(r->key) != r || is_section(r->key))
            return td_fail(TD_ERR_INTERNAL, "schema: key %s is not unique", r->key);
        if ((r->type == CFG_INT || r->type == CFG_FLOAT || r->type == CFG_NUM2 ||
             r->type == CFG_NUM3 || r->type == CFG_NUMS) && !range_parse(r->limits, &rg))
            return td_fail(TD_ERR_INTERNAL, "schema: %s: bad range '%s'", r->key, r->limits);
        if ((r->type == CFG_ENUM || r->type == CFG_CHOICES) && !r->limits)
            return td_fail(TD_ERR_INTERNAL, "schema: %s needs its choices", r->key);
        /* a section's rows must be adjacent, or the dump would open it twice */
        Sections sec;
        sections_of(r->key, &sec);
        char prefix[TD_CFG_STR_MAX] = "";
        for (int d = 0; d < sec.n; d++) {
            append(prefix, sizeof prefix, sec.part[d]);
            append(prefix, sizeof prefix, ".");
            size_t n = strlen(prefix);
            int first = i;
            while (first > 0 && strncmp(k_rows[first - 1].key, prefix, n) == 0)
                first--;
            for (int j = 0; j < first; j++)
                if (strncmp(k_rows[j].key, prefix, n) == 0)
                    return td_fail(TD_ERR_INTERNAL, "schema: rows of section %.*s are not adjacent",
                                   (int)n - 1, prefix);
        }
    }
    TdConfig c;
    return config_load_local(NULL, NULL, &c);
}
