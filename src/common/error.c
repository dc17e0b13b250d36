/* See error.h. */
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

int error_setv(struct error_record *err, int errnum, const char *fmt, va_list ap)
{
    errnum = abs(errnum);
    if (errnum == 0)
        errnum = EIO_FALLBACK;
    if (err) {
        err->errnum = errnum;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    }
    return -errnum;
}

int error_set(struct error_record *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = error_setv(err, errnum, fmt, ap);
    va_end(ap);
    return r;
}

int error_set_errno(struct error_record *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = error_setv(err, errnum, fmt, ap);
    va_end(ap);
    if (err) {
        size_t len = strlen(err->msg);
        snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", errno_to_string(errnum));
    }
    return r;
}

const char *errno_to_string(int errnum)
{
    static __thread char buf[128];
    return strerror_r(abs(errnum), buf, sizeof(buf));
}
