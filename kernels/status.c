#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[1024];
static _Thread_local char g_where[256];
static _Thread_local TdStatus g_code = TD_OK;

TdStatus td_fail_at(TdStatus code, const char *file, int line, const char *func,
                    const char *fmt, ...)
{
    if (g_code != TD_OK) /* keep the first, most specific message */
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    snprintf(g_where, sizeof g_where, "%s:%d (%s)", file, line, func);
    g_code = code;
    return code;
}

const char *td_error_message(void) { return g_msg; }
const char *td_error_where(void) { return g_where; }
TdStatus td_error_code(void) { return g_code; }

void td_error_clear(void)
{
    g_msg[0] = '\0';
    g_where[0] = '\0';
    g_code = TD_OK;
}

void *td_calloc_at(size_t n, size_t size, const char *file, int line, const char *func)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        td_fail_at(TD_ERR_NOMEM, file, line, func, "out of memory allocating %zu x %zu bytes", n,
                   size);
    return p;
}

void *td_aligned_calloc(size_t bytes)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        td_fail(TD_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

void td_free(void *p) { free(p); }
