/* The Connect protocol (JSON codec) over libmicrohttpd: see connect.h.
 *
 * Invariant: every peer-controlled size is bounded (a request message by CONNECT_MAX_MESSAGE),
 * and a stream's free() runs exactly once, from MHD's free callback of the response or from
 * the request-completed path when no response took ownership of the stream. */
#include "envd/connect.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/banned.h"

static const struct {
    const char *name;
    unsigned status;
} codes[] = {
    [CONNECT_OK] = { "ok", 200 },
    [CONNECT_CANCELED] = { "canceled", 499 },
    [CONNECT_UNKNOWN] = { "unknown", 500 },
    [CONNECT_INVALID_ARGUMENT] = { "invalid_argument", 400 },
    [CONNECT_DEADLINE_EXCEEDED] = { "deadline_exceeded", 504 },
    [CONNECT_NOT_FOUND] = { "not_found", 404 },
    [CONNECT_ALREADY_EXISTS] = { "already_exists", 409 },
    [CONNECT_PERMISSION_DENIED] = { "permission_denied", 403 },
    [CONNECT_RESOURCE_EXHAUSTED] = { "resource_exhausted", 429 },
    [CONNECT_FAILED_PRECONDITION] = { "failed_precondition", 400 },
    [CONNECT_ABORTED] = { "aborted", 409 },
    [CONNECT_OUT_OF_RANGE] = { "out_of_range", 400 },
    [CONNECT_UNIMPLEMENTED] = { "unimplemented", 501 },
    [CONNECT_INTERNAL] = { "internal", 500 },
    [CONNECT_UNAVAILABLE] = { "unavailable", 503 },
    [CONNECT_DATA_LOSS] = { "data_loss", 500 },
    [CONNECT_UNAUTHENTICATED] = { "unauthenticated", 401 },
};

const char *connect_code_to_string(enum connect_code code)
{
    if ((unsigned)code >= ARRAY_SIZE(codes))
        return NULL;
    return codes[code].name;
}

unsigned connect_code_to_http_status(enum connect_code code)
{
    if ((unsigned)code >= ARRAY_SIZE(codes))
        return 500;
    return codes[code].status;
}

int connect_error_set(struct connect_error *err, enum connect_code code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return -1;
}
