/* The -errno convention and the fixed-size error record.
 *
 * Functions that can fail return int: >= 0 success, -errno failure. Where a failure must reach a
 * person or cross a process boundary (runtime child -> parent, handler -> HTTP error), the caller
 * also passes a struct error_record that the callee fills: no allocation, safe after fork(),
 * small enough to send in one write(). */
#pragma once

#include <errno.h>
#include <stdarg.h>

#include "common/macro.h"

#define ERROR_MSG_MAX 256
/* errnum recorded when a caller passes 0, which would otherwise read as success. */
#define EIO_FALLBACK EIO

struct error_record {
    int errnum;              /* positive errno value, 0 when no error was recorded */
    char msg[ERROR_MSG_MAX]; /* NUL-terminated, human-readable, truncated to fit */
};

/* Records errnum (positive or negative) and a formatted message in err (which may be NULL).
 * Returns -abs(errnum), so a caller can `return error_set(err, ENOENT, "...")`.
 * Async-signal-safety: uses vsnprintf, so avoid after fork() in a multi-threaded parent when the
 * format has floating point; integer and string formats are safe in practice (glibc). */
int error_set(struct error_record *err, int errnum, const char *fmt, ...) _printf_(3, 4);
int error_setv(struct error_record *err, int errnum, const char *fmt, va_list ap) _printf_(3, 0);

/* Like error_set, appending ": <strerror(errnum)>" to the message. */
int error_set_errno(struct error_record *err, int errnum, const char *fmt, ...) _printf_(3, 4);

static inline void error_clear(struct error_record *err)
{
    if (err) {
        err->errnum = 0;
        err->msg[0] = '\0';
    }
}

/* Thread-safe strerror into a static-per-thread buffer. */
const char *errno_to_string(int errnum);
