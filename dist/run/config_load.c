/* config_load: the configuration schema table, loading (defaults, file,
 * --set), validation, checks across options and sweeps (config.h). The
 * text output is config_print.c; the table and helpers both use are
 * config_schema.h. */
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

/* ---- the schema table ------------------------------------------------------ */

#define CFG_ROW(sec, type, name, def, limits, doc)                                            \
    {#sec "." #name, CFG_##type, offsetof(TdConfig, sec.name),                                 \
     sizeof(((TdConfig *)0)->sec.name), def, limits, doc},

const CfgRow k_rows[] = {
    TD_CONFIG_RUN(CFG_ROW)
    TD_CONFIG_MODEL(CFG_ROW)
    TD_CONFIG_DATA(CFG_ROW)
    TD_CONFIG_HEADS(CFG_ROW)
    TD_CONFIG_PRETRAIN(CFG_ROW)
    TD_CONFIG_FINETUNE(CFG_ROW)
    TD_CONFIG_MERGE(CFG_ROW)
    TD_CONFIG_MERGE_ALPHA(CFG_ROW)
    TD_CONFIG_MERGE_TIES(CFG_ROW)
    TD_CONFIG_MERGE_DARE(CFG_ROW)
    TD_CONFIG_MERGE_ADAMERGING(CFG_ROW)
    TD_CONFIG_MERGE_SURROGATE(CFG_ROW)
    TD_CONFIG_EVAL(CFG_ROW)
    TD_CONFIG_NEGATION(CFG_ROW)
    TD_CONFIG_DISENTANGLE(CFG_ROW)
    TD_CONFIG_BLAS(CFG_ROW)
    TD_CONFIG_SWEEP(CFG_ROW)
};
enum { N_ROWS = sizeof k_rows / sizeof k_rows[0] };
const int k_nrows = N_ROWS;

const CfgRow *row_find(const char *key)
{
    for (int i = 0; i < N_ROWS; i++)
        if (strcmp(k_rows[i].key, key) == 0)
            return &k_rows[i];
    return NULL;
}

/* True when key names a section ("merge", "merge.ties"): a prefix of some row. */
int is_section(const char *key)
{
    size_t n = strlen(key);
    for (int i = 0; i < N_ROWS; i++)
        if (strncmp(k_rows[i].key, key, n) == 0 && k_rows[i].key[n] == '.')
            return 1;
    return 0;
}

static int num_count(CfgType t) { return t == CFG_NUM2 ? 2 : 3; }

/* ---- errors ------------------------------------------------------------------ */

TdStatus bad(const char *where, const CfgRow *r, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return td_fail(TD_ERR_CONFIG, "%s: %s: %s", where, r->key, msg);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[128], cur[128];
    if (la >= 127 || lb >= 127)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

/* The known key or section closest to key, when it is close enough to be a typo. */
static const char *suggest(const char *key, char *buf, size_t n)
{
    size_t best = (size_t)-1;
    buf[0] = '\0';
    for (int i = 0; i < N_ROWS; i++) {
        char cand[TD_CFG_STR_MAX];
        snprintf(cand, sizeof cand, "%s", k_rows[i].key);
        for (;;) { /* the key, then each enclosing section */
            size_t d = edit_distance(key, cand);
            if (d < best) {
                best = d;
                snprintf(buf, n, "%s", cand);
            }
            char *dot = strrchr(cand, '.');
            if (!dot)
                break;
            *dot = '\0';
        }
    }
    size_t allowed = strlen(key) / 4 > 2 ? strlen(key) / 4 : 2;
    return (best >= 1 && best <= allowed) ? buf : NULL;
}

static TdStatus unknown_key(const char *where, const char *key)
{
    char near[TD_CFG_STR_MAX];
    if (suggest(key, near, sizeof near))
        return td_fail(TD_ERR_CONFIG, "%s: unknown key '%s' (did you mean '%s'?)", where, key,
                       near);
    return td_fail(TD_ERR_CONFIG,
                   "%s: unknown key '%s' (config/reference.cfg lists every option)", where, key);
}

/* ---- limits ------------------------------------------------------------------- */


/* "[lo,hi]" with ( ) for open ends; NULL = any finite value. */
int range_parse(const char *s, Range *r)
{
    *r = (Range){-INFINITY, INFINITY, 1, 1};
    if (!s)
        return 1;
    char *end;
    if (*s != '[' && *s != '(')
        return 0;
    r->lo_open = *s == '(';
    r->lo = strtod(s + 1, &end);
    if (*end != ',')
        return 0;
    r->hi = strtod(end + 1, &end);
    if ((*end != ']' && *end != ')') || end[1])
        return 0;
    r->hi_open = *end == ')';
    return r->lo <= r->hi;
}

static int in_range(const Range *r, double x)
{
    if (!isfinite(x))
        return 0;
    if (r->lo_open ? !(x > r->lo) : !(x >= r->lo))
        return 0;
    return r->hi_open ? x < r->hi : x <= r->hi;
}

static void fmt_plain(double x, char *buf, size_t n);

/* "> 0", "in [0, 1)", "<= 4096", "finite". */
void range_describe(const Range *r, char *buf, size_t n)
{
    char lo[40], hi[40];
    fmt_plain(r->lo, lo, sizeof lo);
    fmt_plain(r->hi, hi, sizeof hi);
    if (isinf(r->lo) && isinf(r->hi))
        snprintf(buf, n, "a finite number");
    else if (isinf(r->hi))
        snprintf(buf, n, "%s %s", r->lo_open ? ">" : ">=", lo);
    else if (isinf(r->lo))
        snprintf(buf, n, "%s %s", r->hi_open ? "<" : "<=", hi);
    else
        snprintf(buf, n, "in %c%s, %s%c", r->lo_open ? '(' : '[', lo, hi, r->hi_open ? ')' : ']');
}

/* Is word one of "a|b|c"? */
static int is_choice(const char *choices, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0)
            return 1;
        p += len + (bar != NULL);
    }
    return 0;
}

/* ---- values as text ------------------------------------------------------------ */

/* Shortest text that reads back as exactly x, always with a '.' or an exponent
 * so that libconfig reads it as a float. */
static void fmt_double(double x, char *buf, size_t n)
{
    if (isinf(x)) {
        snprintf(buf, n, "%s", x > 0 ? "inf" : "-inf");
        return;
    }
    if (x == floor(x) && fabs(x) < 1e15) { /* 20.0, not 2e+01 */
        snprintf(buf, n, "%.1f", x);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    if (!strpbrk(buf, ".eEn"))
        strncat(buf, ".0", n - strlen(buf) - 1);
}

/* As fmt_double, without a trailing ".0": for messages. */
static void fmt_plain(double x, char *buf, size_t n)
{
    fmt_double(x, buf, n);
    size_t len = strlen(buf);
    if (len > 2 && strcmp(buf + len - 2, ".0") == 0)
        buf[len - 2] = '\0';
}

void append(char *buf, size_t n, const char *s)
{
    size_t len = strlen(buf);
    if (len + 1 < n)
        snprintf(buf + len, n - len, "%s", s);
}

static void append_quoted(char *buf, size_t n, const char *s)
{
    append(buf, n, "\"");
    for (const char *p = s; *p; p++) {
        char c[3] = {*p, 0, 0};
        if (*p == '"' || *p == '\\')
            c[0] = '\\', c[1] = *p;
        append(buf, n, c);
    }
    append(buf, n, "\"");
}

/* A field's value in libconfig syntax; strings quoted only when quote is set. */
void value_format(const CfgRow *r, const void *f, int quote, char *buf, size_t n)
{
    buf[0] = '\0';
    switch (r->type) {
    case CFG_INT:
        snprintf(buf, n, "%d", *(const int *)f);
        return;
    case CFG_FLOAT:
        fmt_double(*(const double *)f, buf, n);
        return;
    case CFG_BOOL:
        snprintf(buf, n, "%s", *(const int *)f ? "true" : "false");
        return;
    case CFG_STR:
    case CFG_ENUM:
        if (quote)
            append_quoted(buf, n, f);
        else
            snprintf(buf, n, "%s", (const char *)f);
        return;
    case CFG_CHOICES:
    case CFG_NAMES: {
        const TdCfgNames *l = f;
        append(buf, n, "[");
        for (int i = 0; i < l->count; i++) {
            append(buf, n, i ? ", " : "");
            append_quoted(buf, n, l->item[i]);
        }
        append(buf, n, "]");
        return;
    }
    case CFG_NUM2:
    case CFG_NUM3: {
        append(buf, n, "[");
        for (int i = 0; i < num_count(r->type); i++) {
            char x[40];
            fmt_double(((const double *)f)[i], x, sizeof x);
            append(buf, n, i ? ", " : "");
            append(buf, n, x);
        }
        append(buf, n, "]");
        return;
    }
    case CFG_NUMS: {
        const TdCfgNums *l = f;
        append(buf, n, "[");
        for (int i = 0; i < l->count; i++) {
            char x[40];
            fmt_double(l->v[i], x, sizeof x);
            append(buf, n, i ? ", " : "");
            append(buf, n, x);
        }
        append(buf, n, "]");
        return;
    }
    }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A string in text form: "quoted" (with \" and \\) or taken as written. */
static int unquote(char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] != '"')
        return 1;
    if (n < 2 || s[n - 1] != '"')
        return 0;
    char *w = s;
    for (const char *p = s + 1; p < s + n - 1; p++) {
        if (*p == '\\' && p + 1 < s + n - 1)
            p++;
        *w++ = *p;
    }
    *w = '\0';
    return 1;
}

/* Splits "[a, b]", "(a, b)" or "a,b" into at most max items; "" and "[]" give none. */
static int split_list(char *text, char **items, int max, int *count)
{
    char *s = trim(text);
    size_t n = strlen(s);
    if (n && ((s[0] == '[' && s[n - 1] == ']') || (s[0] == '(' && s[n - 1] == ')'))) {
        s[n - 1] = '\0';
        s = trim(s + 1);
    }
    *count = 0;
    if (!*s)
        return 1;
    for (char *p = s;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (*count >= max)
            return 0;
        items[(*count)++] = trim(p);
        if (!comma)
            return 1;
        p = comma + 1;
    }
}

static TdStatus parse_double(const CfgRow *r, const char *where, const char *s, double *x)
{
    char *end;
    errno = 0;
    *x = strtod(s, &end);
    if (end == s || *end || errno)
        return bad(where, r, "expected a number, got '%s'", s);
    return TD_OK;
}

static TdStatus store_name(const CfgRow *r, const char *where, char *dst, size_t cap,
                           const char *s)
{
    if (strlen(s) >= cap)
        return bad(where, r, "'%.40s...' is longer than %zu characters", s, cap - 1);
    snprintf(dst, cap, "%s", s);
    return TD_OK;
}

/* Sets a field from its text form (a default or a --set value). */
TdStatus value_from_text(const CfgRow *r, void *f, const char *text, const char *where)
{
    char copy[4096];
    if (strlen(text) >= sizeof copy)
        return bad(where, r, "value too long");
    snprintf(copy, sizeof copy, "%s", text);
    char *s = trim(copy);
    memset(f, 0, r->size);
    switch (r->type) {
    case CFG_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (end == s || *end || errno)
            return bad(where, r, "expected an integer, got '%s'", s);
        if (x < INT_MIN || x > INT_MAX)
            return bad(where, r, "%s does not fit in an int", s);
        *(int *)f = (int)x;
        return TD_OK;
    }
    case CFG_FLOAT:
        return parse_double(r, where, s, f);
    case CFG_BOOL:
        if (strcasecmp(s, "true") != 0 && strcasecmp(s, "false") != 0)
            return bad(where, r, "expected true or false, got '%s'", s);
        *(int *)f = strcasecmp(s, "true") == 0;
        return TD_OK;
    case CFG_STR:
    case CFG_ENUM:
        if (!unquote(s))
            return bad(where, r, "unterminated string %s", s);
        return store_name(r, where, f, r->size, s);
    case CFG_CHOICES:
    case CFG_NAMES: {
        TdCfgNames *l = f;
        char *items[TD_CFG_LIST_MAX];
        if (!split_list(s, items, TD_CFG_LIST_MAX, &l->count))
            return bad(where, r, "more than %d entries", TD_CFG_LIST_MAX);
        for (int i = 0; i < l->count; i++) {
            if (!unquote(items[i]))
                return bad(where, r, "unterminated string %s", items[i]);
            TD_TRY(store_name(r, where, l->item[i], TD_CFG_NAME_MAX, items[i]));
        }
        return TD_OK;
    }
    case CFG_NUM2:
    case CFG_NUM3: {
        char *items[4];
        int count;
        if (!split_list(s, items, 4, &count) || count != num_count(r->type))
            return bad(where, r, "expected %d numbers like [0.5, 1.0], got '%s'",
                       num_count(r->type), text);
        for (int i = 0; i < count; i++)
            TD_TRY(parse_double(r, where, items[i], (double *)f + i));
        return TD_OK;
    }
    case CFG_NUMS: {
        TdCfgNums *l = f;
        char *items[TD_CFG_LIST_MAX];
        if (!split_list(s, items, TD_CFG_LIST_MAX, &l->count))
            return bad(where, r, "more than %d entries", TD_CFG_LIST_MAX);
        for (int i = 0; i < l->count; i++)
            TD_TRY(parse_double(r, where, items[i], &l->v[i]));
        return TD_OK;
    }
    }
    return td_fail(TD_ERR_INTERNAL, "bad schema type for %s", r->key);
}

/* ---- values from a libconfig setting ------------------------------------------- */

static const char *type_name(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_GROUP: return "a group { }";
    case CONFIG_TYPE_ARRAY: return "an array [ ]";
    case CONFIG_TYPE_LIST: return "a list ( )";
    default: return "nothing";
    }
}

static int is_number(const config_setting_t *s)
{
    int t = config_setting_type(s);
    return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 || t == CONFIG_TYPE_FLOAT;
}

static int is_sequence(const config_setting_t *s)
{
    int t = config_setting_type(s);
    return t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST;
}

static TdStatus value_from_setting(const CfgRow *r, void *f, const config_setting_t *s,
                                   const char *where)
{
    int t = config_setting_type(s);
    memset(f, 0, r->size);
    switch (r->type) {
    case CFG_INT: {
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
            return bad(where, r, "expected an integer, got %s", type_name(s));
        long long x = config_setting_get_int64(s);
        if (x < INT_MIN || x > INT_MAX)
            return bad(where, r, "%lld does not fit in an int", x);
        *(int *)f = (int)x;
        return TD_OK;
    }
    case CFG_FLOAT:
        if (!is_number(s))
            return bad(where, r, "expected a number, got %s", type_name(s));
        *(double *)f = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
                                              : (double)config_setting_get_int64(s);
        return TD_OK;
    case CFG_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            return bad(where, r, "expected true or false, got %s", type_name(s));
        *(int *)f = config_setting_get_bool(s) != 0;
        return TD_OK;
    case CFG_STR:
    case CFG_ENUM:
        if (t != CONFIG_TYPE_STRING)
            return bad(where, r, "expected a string in double quotes, got %s", type_name(s));
        return store_name(r, where, f, r->size, config_setting_get_string(s));
    case CFG_CHOICES:
    case CFG_NAMES: {
        TdCfgNames *l = f;
        int n = is_sequence(s) ? config_setting_length(s) : -1;
        if (n < 0)
            return bad(where, r, "expected a list of strings like [\"a\", \"b\"], got %s",
                       type_name(s));
        if (n > TD_CFG_LIST_MAX)
            return bad(where, r, "more than %d entries", TD_CFG_LIST_MAX);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_STRING)
                return bad(where, r, "entry %d: expected a string, got %s", i + 1, type_name(e));
            TD_TRY(store_name(r, where, l->item[i], TD_CFG_NAME_MAX,
                              config_setting_get_string(e)));
        }
        l->count = n;
        return TD_OK;
    }
    case CFG_NUM2:
    case CFG_NUM3: {
        int want = num_count(r->type);
        if (!is_sequence(s) || config_setting_length(s) != want)
            return bad(where, r, "expected %d numbers like [0.5, 1.0], got %s", want,
                       is_sequence(s) ? "a different count" : type_name(s));
        for (int i = 0; i < want; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (!is_number(e))
                return bad(where, r, "entry %d: expected a number, got %s", i + 1, type_name(e));
            ((double *)f)[i] = config_setting_type(e) == CONFIG_TYPE_FLOAT
                                   ? config_setting_get_float(e)
                                   : (double)config_setting_get_int64(e);
        }
        return TD_OK;
    }
    case CFG_NUMS: {
        TdCfgNums *l = f;
        int n = is_sequence(s) ? config_setting_length(s) : -1;
        if (n < 0)
            return bad(where, r, "expected a list of numbers like [10, 20], got %s", type_name(s));
        if (n > TD_CFG_LIST_MAX)
            return bad(where, r, "more than %d entries", TD_CFG_LIST_MAX);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (!is_number(e))
                return bad(where, r, "entry %d: expected a number, got %s", i + 1, type_name(e));
            l->v[i] = config_setting_type(e) == CONFIG_TYPE_FLOAT
                          ? config_setting_get_float(e)
                          : (double)config_setting_get_int64(e);
        }
        l->count = n;
        return TD_OK;
    }
    }
    return td_fail(TD_ERR_INTERNAL, "bad schema type for %s", r->key);
}

/* ---- validation of one value --------------------------------------------------- */

static TdStatus check_number(const CfgRow *r, double x, const char *where, const char *what)
{
    Range rg;
    if (!range_parse(r->limits, &rg))
        return td_fail(TD_ERR_INTERNAL, "schema: bad range '%s' for %s", r->limits, r->key);
    if (in_range(&rg, x))
        return TD_OK;
    char want[96], got[40];
    range_describe(&rg, want, sizeof want);
    fmt_plain(x, got, sizeof got);
    return bad(where, r, "%smust be %s, got %s", what, want, got);
}

static TdStatus value_check(const CfgRow *r, const void *f, const char *where)
{
    switch (r->type) {
    case CFG_INT:
        return check_number(r, *(const int *)f, where, "");
    case CFG_FLOAT:
        return check_number(r, *(const double *)f, where, "");
    case CFG_NUM2:
    case CFG_NUM3:
        for (int i = 0; i < num_count(r->type); i++) {
            char what[32];
            snprintf(what, sizeof what, "entry %d ", i + 1);
            TD_TRY(check_number(r, ((const double *)f)[i], where, what));
        }
        return TD_OK;
    case CFG_NUMS: {
        const TdCfgNums *l = f;
        for (int i = 0; i < l->count; i++) {
            char what[32];
            snprintf(what, sizeof what, "entry %d ", i + 1);
            TD_TRY(check_number(r, l->v[i], where, what));
            for (int j = 0; j < i; j++)
                if (l->v[i] == l->v[j])
                    return bad(where, r, "entry %d repeats entry %d", i + 1, j + 1);
        }
        return TD_OK;
    }
    case CFG_ENUM:
        if (!is_choice(r->limits, f))
            return bad(where, r, "'%s' is not one of %s", (const char *)f, r->limits);
        return TD_OK;
    case CFG_CHOICES:
    case CFG_NAMES: {
        const TdCfgNames *l = f;
        if (r->type == CFG_CHOICES && l->count == 0)
            return bad(where, r, "needs at least one of %s", r->limits);
        for (int i = 0; i < l->count; i++) {
            if (r->type == CFG_CHOICES && !is_choice(r->limits, l->item[i]))
                return bad(where, r, "'%s' is not one of %s", l->item[i], r->limits);
            if (!l->item[i][0])
                return bad(where, r, "entry %d is empty", i + 1);
            for (int j = 0; j < i; j++)
                if (strcmp(l->item[i], l->item[j]) == 0)
                    return bad(where, r, "'%s' is listed twice", l->item[i]);
        }
        return TD_OK;
    }
    case CFG_BOOL:
    case CFG_STR:
        return TD_OK;
    }
    return TD_OK;
}

/* ---- loading on one rank ----------------------------------------------------------- */

/* Where each option's effective value came from: "" for the default. */
typedef struct {
    TdConfig *cfg;
    char origin[N_ROWS][320];
} Loader;

static TdStatus set_row_text(Loader *L, const CfgRow *r, const char *text, const char *where)
{
    void *f = field_of(L->cfg, r);
    TD_TRY(value_from_text(r, f, text, where));
    TD_TRY(value_check(r, f, where));
    snprintf(L->origin[r - k_rows], sizeof L->origin[0], "%s", where);
    return TD_OK;
}

static TdStatus load_defaults(Loader *L)
{
    memset(L->cfg, 0, sizeof *L->cfg);
    for (int i = 0; i < N_ROWS; i++)
        TD_TRY(set_row_text(L, &k_rows[i], k_rows[i].def, "default"));
    memset(L->origin, 0, sizeof L->origin);
    return TD_OK;
}

static TdStatus load_group(Loader *L, const config_setting_t *g, const char *section,
                           const char *path)
{
    for (int i = 0; i < config_setting_length(g); i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        char key[TD_CFG_STR_MAX], where[320];
        snprintf(key, sizeof key, "%s%s%s", section, *section ? "." : "",
                 config_setting_name(s));
        const char *file = config_setting_source_file(s);
        snprintf(where, sizeof where, "%s:%u", file ? file : path,
                 config_setting_source_line(s));
        const CfgRow *r = row_find(key);
        if (r) {
            void *f = field_of(L->cfg, r);
            TD_TRY(value_from_setting(r, f, s, where));
            TD_TRY(value_check(r, f, where));
            snprintf(L->origin[r - k_rows], sizeof L->origin[0], "%s", where);
        } else if (is_section(key)) {
            if (!config_setting_is_group(s))
                return td_fail(TD_ERR_CONFIG, "%s: %s: is a section; write %s = { ... };",
                               where, key, config_setting_name(s));
            TD_TRY(load_group(L, s, key, path));
        } else {
            return unknown_key(where, key);
        }
    }
    return TD_OK;
}

static TdStatus load_file(Loader *L, const char *path)
{
    FILE *probe = fopen(path, "r");
    if (!probe)
        return td_fail(TD_ERR_IO, "cannot read configuration '%s': %s", path, strerror(errno));
    fclose(probe);

    char dir[TD_CFG_STR_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir] = '\0'; /* keep "/" for a file at the root */
    else
        snprintf(dir, sizeof dir, ".");
    config_t c;
    config_init(&c);
    config_set_include_dir(&c, dir); /* @include "x.cfg" is relative to this file */
    TdStatus s = TD_OK;
    if (config_read_file(&c, path) != CONFIG_TRUE) {
        const char *file = config_error_file(&c);
        s = td_fail(config_error_type(&c) == CONFIG_ERR_FILE_IO ? TD_ERR_IO : TD_ERR_CONFIG,
                    "%s:%d: syntax error: %s", file ? file : path, config_error_line(&c),
                    config_error_text(&c));
    } else {
        s = load_group(L, config_root_setting(&c), "", path);
    }
    config_destroy(&c);
    return s;
}

static TdStatus apply_set(Loader *L, const char *arg)
{
    char where[320], key[TD_CFG_STR_MAX];
    snprintf(where, sizeof where, "--set %s", arg);
    const char *eq = strchr(arg, '=');
    if (!eq)
        return td_fail(TD_ERR_ARG, "%s: expected key=value, e.g. --set finetune.lr=3e-5", where);
    snprintf(key, sizeof key, "%.*s", (int)(eq - arg), arg);
    char *k = trim(key);
    const CfgRow *r = row_find(k);
    if (!r)
        return unknown_key(where, k);
    return set_row_text(L, r, eq + 1, where);
}

/* ---- checks across options ------------------------------------------------------ */

/* Blames a's origin (file:line or --set) when the user set it, else b's. */
static TdStatus cross_fail(const Loader *L, const char *a, const char *b, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static TdStatus cross_fail(const Loader *L, const char *a, const char *b, const char *fmt, ...)
{
    const CfgRow *ra = row_find(a), *rb = b ? row_find(b) : NULL;
    const CfgRow *r = (!L->origin[ra - k_rows][0] && rb && L->origin[rb - k_rows][0]) ? rb : ra;
    const char *where = L->origin[r - k_rows][0] ? L->origin[r - k_rows] : "default";
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return td_fail(TD_ERR_CONFIG, "%s: %s: %s", where, r->key, msg);
}

static int stage_on(const TdConfig *c, const char *stage)
{
    return config_names_contains(&c->run.stages, stage);
}

static TdStatus check_pairs(const Loader *L)
{
    const TdConfig *c = L->cfg;
    for (int i = 0; i < c->disentangle.pairs.count; i++) {
        const char *p = c->disentangle.pairs.item[i];
        const char *colon = strchr(p, ':');
        char a[TD_CFG_NAME_MAX];
        snprintf(a, sizeof a, "%.*s", colon ? (int)(colon - p) : 0, p);
        if (!colon || !config_names_contains(&c->data.tasks, a) ||
            !config_names_contains(&c->data.tasks, colon + 1) || strcmp(a, colon + 1) == 0)
            return cross_fail(L, "disentangle.pairs", "data.tasks",
                              "'%s' is not a pair \"a:b\" of two different tasks of data.tasks",
                              p);
    }
    if (stage_on(c, "disentangle") && c->disentangle.pairs.count == 0 && c->data.tasks.count < 2)
        return cross_fail(L, "disentangle.pairs", "data.tasks",
                          "the disentangle stage needs two tasks (pairs = [] means every pair)");
    return TD_OK;
}

/* ---- sweeps -------------------------------------------------------------------------- */

/* Keys an axis may vary: what a fine-tuning run or its merge depends on, never
 * theta0, the data, the stages or where outputs go. */
static int sweepable(const char *key)
{
    return strncmp(key, "finetune.", 9) == 0 || strncmp(key, "merge.", 6) == 0 ||
           strcmp(key, "run.seed") == 0 || strcmp(key, "data.augment") == 0 ||
           strcmp(key, "data.crop_scale") == 0;
}

/* where: how errors name sweep.axes (its file:line, or "default"). */
static TdStatus sweep_parse_at(const TdConfig *cfg, TdSweep *sw, const char *where)
{
    const CfgRow *ra = row_find("sweep.axes");
    memset(sw, 0, sizeof *sw);
    sw->runs = 1;
    if (cfg->sweep.axes.count > TD_SWEEP_MAX_AXES)
        return bad(where, ra, "more than %d axes", TD_SWEEP_MAX_AXES);
    TdConfig *scratch = malloc(sizeof *scratch);
    if (!scratch)
        return td_fail(TD_ERR_NOMEM, "out of memory");
    TdStatus st = TD_OK;
    for (int a = 0; a < cfg->sweep.axes.count && st == TD_OK; a++) {
        char text[TD_CFG_NAME_MAX];
        snprintf(text, sizeof text, "%s", cfg->sweep.axes.item[a]);
        char *eq = strchr(text, '=');
        if (!eq) {
            st = bad(where, ra, "entry '%s' is not \"key = v1 | v2 | ...\"", text);
            break;
        }
        *eq = '\0';
        char *key = trim(text);
        const CfgRow *r = row_find(key);
        if (!r) {
            st = unknown_key(where, key);
            break;
        }
        if (!sweepable(key)) {
            st = bad(where, ra, "'%s' cannot be swept (finetune.*, merge.*, run.seed, "
                                "data.augment, data.crop_scale can)", key);
            break;
        }
        for (int b = 0; b < a; b++)
            if (strcmp(sw->key[b], key) == 0)
                st = bad(where, ra, "'%s' has two axes", key);
        snprintf(sw->key[a], sizeof sw->key[a], "%s", key);
        int n = 0;
        for (char *p = eq + 1; st == TD_OK;) {
            char *bar = strchr(p, '|');
            if (bar)
                *bar = '\0';
            char *v = trim(p);
            char at[TD_CFG_STR_MAX + 64];
            snprintf(at, sizeof at, "%s (sweep.axes)", where);
            if (!*v)
                st = bad(where, ra, "an empty value in the axis of '%s'", key);
            else if (n >= TD_CFG_LIST_MAX)
                st = bad(where, ra, "more than %d values for '%s'", TD_CFG_LIST_MAX, key);
            else if ((st = value_from_text(r, field_of(scratch, r), v, at)) == TD_OK &&
                     (st = value_check(r, field_of(scratch, r), at)) == TD_OK) {
                for (int j = 0; j < n; j++)
                    if (strcmp(sw->val[a][j], v) == 0)
                        st = bad(where, ra, "'%s' is listed twice for '%s'", v, key);
                snprintf(sw->val[a][n++], TD_CFG_NAME_MAX, "%s", v);
            }
            if (!bar)
                break;
            p = bar + 1;
        }
        sw->nvals[a] = n;
        sw->naxes = a + 1;
        if (st == TD_OK && (sw->runs *= n) > TD_SWEEP_MAX_RUNS)
            st = bad(where, ra, "more than %d runs", TD_SWEEP_MAX_RUNS);
    }
    free(scratch);
    return st;
}

TdStatus config_sweep_parse(const TdConfig *cfg, TdSweep *sw)
{
    return sweep_parse_at(cfg, sw, "sweep.axes");
}

void config_sweep_coords(const TdSweep *sw, long r, int coord[TD_SWEEP_MAX_AXES])
{
    for (int a = sw->naxes - 1; a >= 0; a--) {
        coord[a] = (int)(r % sw->nvals[a]);
        r /= sw->nvals[a];
    }
}

static TdStatus check_cross(const Loader *L);

TdStatus config_sweep_derive(const TdConfig *base, const TdSweep *sw, long r, TdConfig *out)
{
    Loader *L;
    TD_ALLOC(L, 1);
    *out = *base;
    L->cfg = out;
    memset(&out->sweep.axes, 0, sizeof out->sweep.axes);
    int coord[TD_SWEEP_MAX_AXES];
    config_sweep_coords(sw, r, coord);
    TdStatus s = TD_OK;
    for (int a = 0; a < sw->naxes && s == TD_OK; a++) {
        char where[TD_CFG_STR_MAX + 64];
        snprintf(where, sizeof where, "sweep run %ld: %s = %s", r, sw->key[a],
                 sw->val[a][coord[a]]);
        s = set_row_text(L, row_find(sw->key[a]), sw->val[a][coord[a]], where);
    }
    if (s == TD_OK)
        s = check_cross(L);
    free(L);
    return s;
}

static TdStatus check_sweep(const Loader *L)
{
    const TdConfig *c = L->cfg;
    if (c->sweep.axes.count == 0)
        return TD_OK;
    const char *where = L->origin[row_find("sweep.axes") - k_rows];
    TdSweep *sw;
    TD_ALLOC(sw, 1);
    TdStatus s = sweep_parse_at(c, sw, where[0] ? where : "default");
    static const char *need[] = {"finetune", "single", "addition"};
    for (int i = 0; i < 3 && s == TD_OK; i++)
        if (!stage_on(c, need[i]))
            s = cross_fail(L, "run.stages", "sweep.axes",
                           "a sweep needs the %s stage (each run reports single-task and merged "
                           "accuracy)", need[i]);
    const char *hk = c->sweep.heads;
    if (s == TD_OK && !config_names_contains(&c->eval.heads, hk))
        s = cross_fail(L, "sweep.heads", "eval.heads", "'%s' is not in eval.heads", hk);
    /* every run's configuration must be valid before any run starts */
    TdConfig *tmp = malloc(sizeof *tmp);
    for (long r = 0; s == TD_OK && r < sw->runs; r++)
        s = tmp ? config_sweep_derive(c, sw, r, tmp) : td_fail(TD_ERR_NOMEM, "out of memory");
    free(tmp);
    free(sw);
    return s;
}

static TdStatus check_cross(const Loader *L)
{
    const TdConfig *c = L->cfg;
    if (c->finetune.warmup > c->finetune.steps)
        return cross_fail(L, "finetune.warmup", "finetune.steps",
                          "warm-up of %d steps is longer than finetune.steps = %d",
                          c->finetune.warmup, c->finetune.steps);
    if (c->merge.alpha.start > c->merge.alpha.stop)
        return cross_fail(L, "merge.alpha.start", "merge.alpha.stop",
                          "start %g is after stop %g", c->merge.alpha.start, c->merge.alpha.stop);
    if ((c->merge.alpha.stop - c->merge.alpha.start) / c->merge.alpha.step > 10000)
        return cross_fail(L, "merge.alpha.step", NULL, "more than 10000 grid points");
    if (!(c->merge.bounds[0] <= c->merge.bounds[1]))
        return cross_fail(L, "merge.bounds", NULL, "the first entry is above the second");
    if (c->merge.search.count > 1 && config_names_contains(&c->merge.search, "none"))
        return cross_fail(L, "merge.search", NULL, "\"none\" cannot be listed with searches");
    if (!(c->disentangle.min < c->disentangle.max))
        return cross_fail(L, "disentangle.min", "disentangle.max", "min %g is not below max %g",
                          c->disentangle.min, c->disentangle.max);
    if (c->data.crop_scale[0] > c->data.crop_scale[1])
        return cross_fail(L, "data.crop_scale", NULL, "the first entry is above the second");
    if (strcmp(c->heads.source, "file") == 0 && !c->heads.file[0])
        return cross_fail(L, "heads.file", "heads.source",
                          "heads.source = \"file\" needs heads.file");
    VitArch arch;
    if (c->model.arch[0] && vit_arch_by_name(c->model.arch, &arch) != TD_OK) {
        td_error_clear(); /* replaced by a message that names the key */
        return cross_fail(L, "model.arch", NULL, "unknown architecture '%s' (known: %s)",
                          c->model.arch, vit_arch_names());
    }
    if (c->model.random && !c->model.arch[0])
        return cross_fail(L, "model.random", "model.arch",
                          "model.random = true needs model.arch (the architecture to make)");
    if (c->data.tasks.count == 0 &&
        (stage_on(c, "finetune") || stage_on(c, "single") || stage_on(c, "addition")))
        return cross_fail(L, "data.tasks", "run.stages", "the stages asked for need tasks");
    for (int i = 0; i < c->negation.targets.count; i++)
        if (!config_names_contains(&c->data.tasks, c->negation.targets.item[i]))
            return cross_fail(L, "negation.targets", "data.tasks", "'%s' is not in data.tasks",
                              c->negation.targets.item[i]);
    if (stage_on(c, "negation") && !c->negation.control[0])
        return cross_fail(L, "negation.control", "run.stages",
                          "the negation stage needs negation.control, the task whose accuracy "
                          "is kept");
    if (config_names_contains(&c->eval.heads, "finetuned") && !c->finetune.train_heads)
        return cross_fail(L, "eval.heads", "finetune.train_heads",
                          "\"finetuned\" heads need finetune.train_heads = true");
    TD_TRY(check_pairs(L));
    return check_sweep(L);
}

static TdStatus load_all(Loader *L, const char *path, const CliList *sets)
{
    TD_TRY(load_defaults(L));
    if (path)
        TD_TRY(load_file(L, path));
    for (int i = 0; sets && i < sets->count; i++)
        TD_TRY(apply_set(L, sets->items[i]));
    return check_cross(L);
}

TdStatus config_load_local(const char *path, const CliList *sets, TdConfig *out)
{
    Loader *L;
    TD_ALLOC(L, 1);
    L->cfg = out;
    TdStatus s = load_all(L, path, sets);
    free(L);
    return s;
}

TdStatus config_load(const char *path, const CliList *sets, TdConfig *out)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    memset(out, 0, sizeof *out);
    TdStatus s = rank == 0 ? config_load_local(path, sets, out) : TD_OK;
    TD_TRY(runtime_agree(MPI_COMM_WORLD, s));
    /* TdConfig is plain fixed-size fields: its bytes are the configuration */
    if (MPI_Bcast(out, (int)sizeof *out, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        s = td_fail(TD_ERR_MPI, "broadcasting the configuration failed");
    return runtime_agree(MPI_COMM_WORLD, s);
}

