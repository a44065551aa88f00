/* config_schema: the schema table built from config.h's option lists and the
 * value helpers shared by config_load.c (loading, validation, sweeps) and
 * config_print.c (the canonical dump, the reference file, the schema check).
 * Internal to dist/run/. */
#ifndef TD_CONFIG_SCHEMA_H
#define TD_CONFIG_SCHEMA_H

#include <stddef.h>

#include "config.h"

typedef enum {
    CFG_INT, CFG_FLOAT, CFG_BOOL, CFG_STR, CFG_ENUM, CFG_CHOICES, CFG_NAMES, CFG_NUM2, CFG_NUM3,
    CFG_NUMS
} CfgType;

typedef struct {
    const char *key;    /* "section.name" */
    CfgType type;
    size_t offset;      /* of the field in TdConfig */
    size_t size;        /* of the field, bytes */
    const char *def;    /* default, in the --set text form */
    const char *limits; /* range or choices, see config.h */
    const char *doc;
} CfgRow;

extern const CfgRow k_rows[]; /* one row per option, in config.h's order */
extern const int k_nrows;

static inline void *field_of(TdConfig *cfg, const CfgRow *r) { return (char *)cfg + r->offset; }
static inline const void *cfield_of(const TdConfig *cfg, const CfgRow *r)
{
    return (const char *)cfg + r->offset;
}

/* The row of "section.name", or NULL. */
const CfgRow *row_find(const char *key);
/* True when key names a section ("merge", "merge.ties"): a prefix of some row. */
int is_section(const char *key);

/* "WHERE: KEY: message": WHERE is file:line, "--set ARG" or "default". */
TdStatus bad(const char *where, const CfgRow *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct {
    double lo, hi;
    int lo_open, hi_open;
} Range;
/* "[lo,hi]" with ( ) for open ends; NULL = any finite value. */
int range_parse(const char *s, Range *r);
/* "> 0", "in [0, 1)", "<= 4096", "finite". */
void range_describe(const Range *r, char *buf, size_t n);

/* The text form of field f of row r (strings quoted when quote), and a
 * bounded strcat. */
void value_format(const CfgRow *r, const void *f, int quote, char *buf, size_t n);
void append(char *buf, size_t n, const char *s);
/* Sets a field from its text form (a default or a --set value). */
TdStatus value_from_text(const CfgRow *r, void *f, const char *text, const char *where);

#endif
