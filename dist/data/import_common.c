#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "task_import.h"

int import_count_classes(const char *list)
{
    if (!list || !*list)
        return 0;
    int n = 1;
    for (const char *p = list; *p; p++)
        n += (*p == ',');
    return n;
}

TdStatus import_set_classes(TaskData *t, const char *list, const char *what)
{
    int n = import_count_classes(list);
    if (n != t->num_classes)
        return td_fail(TD_ERR_ARG, "%s: %d class names given for %d classes", what, n,
                       t->num_classes);
    const char *p = list;
    for (int k = 0; k < n; k++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len >= TASK_CLASS_LEN)
            return td_fail(TD_ERR_ARG, "%s: class name %d is empty or longer than %d characters",
                           what, k, TASK_CLASS_LEN - 1);
        memcpy(t->classes[k], p, len);
        t->classes[k][len] = '\0';
        p = e ? e + 1 : p + len;
    }
    return TD_OK;
}

TdStatus import_finish(TaskData *t, int has_test, const ImportOpts *o)
{
    if (!has_test) {
        if (!(o->test_fraction > 0.0 && o->test_fraction < 1.0))
            return td_fail(TD_ERR_ARG, "%s: test fraction %g must be in (0, 1)", t->name,
                           o->test_fraction);
        int64_t n = t->split[TASK_TRAIN].n;
        int64_t nt = (int64_t)llround(o->test_fraction * (double)n);
        TD_TRY(task_carve(t, TASK_TRAIN, TASK_TEST, nt, o->seed, 0x74657374 /* "test" */));
    }
    return task_make_val(t, o->seed);
}

TdStatus import_path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return td_fail(TD_ERR_ARG, "path too long: %s/%s", a, b);
    return TD_OK;
}

void import_fmt(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}
