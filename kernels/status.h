/* status: error codes and the one error message a failing call leaves behind.
 *
 * Every call that can fail returns TdStatus (0 = success). The first failure
 * records a one-line message (naming the file, tensor, key or record at fault)
 * and the source location; callers propagate the code with TD_TRY. Only main
 * turns an error into an exit or MPI_Abort. No assert() for anything a user can
 * trigger. Single-process: no MPI here. */
#ifndef TD_STATUS_H
#define TD_STATUS_H

#include <stddef.h>

typedef enum {
    TD_OK = 0,
    TD_ERR_ARG,     /* bad argument or option from the user */
    TD_ERR_IO,      /* file missing, unreadable, unwritable */
    TD_ERR_FORMAT,  /* file present but malformed / inconsistent */
    TD_ERR_NOMEM,   /* allocation failed */
    TD_ERR_CONFIG,  /* configuration invalid */
    TD_ERR_NUMERIC, /* NaN/Inf, failed self-check, tolerance exceeded */
    TD_ERR_MPI,     /* MPI call failed */
    TD_ERR_HDF5,    /* HDF5 call failed */
    TD_ERR_INTERNAL
} TdStatus;

/* Records the failure (printf-style message) unless one is already recorded,
 * and returns code so that `return td_fail(...)` reads naturally. */
TdStatus td_fail_at(TdStatus code, const char *file, int line, const char *func,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define td_fail(code, ...) td_fail_at((code), __FILE__, __LINE__, __func__, __VA_ARGS__)

/* The recorded message ("" when none) and where it was recorded. */
const char *td_error_message(void);
const char *td_error_where(void);
TdStatus td_error_code(void);
void td_error_clear(void);

/* Propagate a failing TdStatus. */
#define TD_TRY(expr)                      \
    do {                                  \
        TdStatus td_try_s_ = (expr);      \
        if (td_try_s_ != TD_OK)           \
            return td_try_s_;             \
    } while (0)

/* Checked allocation: TD_ALLOC(p, n) allocates n elements of *p, zeroed. */
void *td_calloc_at(size_t n, size_t size, const char *file, int line, const char *func);
#define TD_ALLOC(p, n)                                                             \
    do {                                                                           \
        (p) = td_calloc_at((size_t)(n), sizeof(*(p)), __FILE__, __LINE__, __func__); \
        if (!(p))                                                                  \
            return TD_ERR_NOMEM;                                                   \
    } while (0)

/* 64-byte aligned, zeroed allocation for big float buffers; free with td_free. */
void *td_aligned_calloc(size_t bytes);
void td_free(void *p);

#endif
