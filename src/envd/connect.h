/* The Connect protocol (connectrpc.com), JSON codec, over HTTP/1.1: what envd's RPC services
 * are written against. A service registers methods; the protocol layer parses the request
 * (unary body or one 5-byte-framed envelope), enforces size limits, maps errors to Connect
 * codes and HTTP statuses, and for server streams writes envelopes as they come, keepalives
 * when idle, and the end-of-stream envelope.
 *
 * Threading: every call runs on the thread of its HTTP connection; a stream's next() may block
 * for up to the wait it is given. */
#pragma once

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/macro.h"
#include "common/time-util.h"

/* Largest request message accepted (body of a unary call, payload of an envelope). */
#define CONNECT_MAX_MESSAGE (4u << 20)

enum connect_code {
    CONNECT_OK = 0,
    CONNECT_CANCELED,
    CONNECT_UNKNOWN,
    CONNECT_INVALID_ARGUMENT,
    CONNECT_DEADLINE_EXCEEDED,
    CONNECT_NOT_FOUND,
    CONNECT_ALREADY_EXISTS,
    CONNECT_PERMISSION_DENIED,
    CONNECT_RESOURCE_EXHAUSTED,
    CONNECT_FAILED_PRECONDITION,
    CONNECT_ABORTED,
    CONNECT_OUT_OF_RANGE,
    CONNECT_UNIMPLEMENTED,
    CONNECT_INTERNAL,
    CONNECT_UNAVAILABLE,
    CONNECT_DATA_LOSS,
    CONNECT_UNAUTHENTICATED,
};

/* "not_found" etc.; NULL for an out-of-range value. */
const char *connect_code_to_string(enum connect_code code);
/* HTTP status of a unary error with this code (Connect's mapping: not_found 404, ...). */
unsigned connect_code_to_http_status(enum connect_code code);

struct connect_error {
    enum connect_code code;
    char msg[ERROR_MSG_MAX];
};

/* Fills err (may be NULL) and returns -1, for `return connect_error_set(err, ...)`. */
int connect_error_set(struct connect_error *err, enum connect_code code, const char *fmt, ...) _printf_(3, 4);

/* What a handler knows about the call besides its request message. */
struct connect_call {
    struct MHD_Connection *conn; /* for headers (Authorization, ...) */
    const char *path;            /* "/process.Process/Start" */
    bool has_timeout;            /* Connect-Timeout-Ms was sent */
    uint64_t timeout_ms;         /* its value; 0 when absent */
    usec_t deadline;             /* CLOCK_MONOTONIC deadline, USEC_INFINITY when none */
    usec_t keepalive_interval;   /* from Keepalive-Ping-Interval (seconds), default 90 s */
};

/* A unary handler: on success returns 0 and a new reference in *ret_resp (a JSON object, `{}`
 * allowed); on failure returns -1 with err filled. req is borrowed. */
typedef int (*connect_unary_cb)(struct connect_call *call, json_t *req, json_t **ret_resp,
                                struct connect_error *err);

/* next() results of a server stream. */
enum connect_next {
    CONNECT_NEXT_MESSAGE = 1, /* *ret_msg holds a message (new reference) to send */
    CONNECT_NEXT_IDLE = 0,    /* nothing arrived within `wait`; the layer may send a keepalive */
    CONNECT_NEXT_END = 2,     /* the stream is complete; the layer sends end-of-stream `{}` */
    CONNECT_NEXT_ERROR = -1,  /* err is filled; the layer sends an end-of-stream error */
};

/* A server stream, pulled by the protocol layer. next() waits at most `wait` microseconds.
 * free() is called exactly once, when the stream ends or the client goes away. */
struct connect_stream_ops {
    enum connect_next (*next)(void *state, usec_t wait, json_t **ret_msg, struct connect_error *err);
    void (*free)(void *state);
    /* The message sent when the stream is idle for keepalive_interval; NULL sends none. */
    const char *keepalive_json;
};

/* A streaming handler: validates req and, on success, returns 0 with the stream in
 * *ret_ops and *ret_state. The first message (for example Start's `start` event) should be ready
 * at once: clients time out waiting for it. On failure returns -1 with err filled; the layer
 * then answers 200 with only an end-of-stream error, as connect-go does. */
typedef int (*connect_stream_cb)(struct connect_call *call, json_t *req,
                                 const struct connect_stream_ops **ret_ops, void **ret_state,
                                 struct connect_error *err);

struct connect_method {
    const char *path;       /* "/package.Service/Method" */
    connect_unary_cb unary; /* exactly one of unary and stream is set */
    connect_stream_cb stream;
};
