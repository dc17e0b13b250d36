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

#include "common/buf.h"
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

/* A client stream (over HTTP/1.1: a request body of envelopes, handled as they arrive).
 * message() gets each request message (borrowed) and returns 0, or -1 with err filled, which
 * ends the call with that error; finish() runs when the body is complete and returns the one
 * response message like a unary handler. free() is called exactly once. */
struct connect_client_stream_ops {
    int (*message)(void *state, json_t *msg, struct connect_error *err);
    int (*finish)(void *state, json_t **ret_resp, struct connect_error *err);
    void (*free)(void *state);
};

/* Opens a client stream before any message has arrived. Returns 0 with the stream in *ret_ops
 * and *ret_state, or -1 with err filled. */
typedef int (*connect_client_stream_cb)(struct connect_call *call,
                                        const struct connect_client_stream_ops **ret_ops, void **ret_state,
                                        struct connect_error *err);

struct connect_method {
    const char *path;       /* "/package.Service/Method" */
    connect_unary_cb unary; /* exactly one of unary, stream and client_stream is set */
    connect_stream_cb stream;
    connect_client_stream_cb client_stream;
};

/* ---- Framing, exposed for tests and fuzzers ---- */

#define CONNECT_ENVELOPE_HEADER 5
#define CONNECT_FLAG_COMPRESSED 0x01u
#define CONNECT_FLAG_END_STREAM 0x02u

/* Looks at the start of data for one envelope. Returns the number of bytes the whole envelope
 * spans (> 0) and its flags and payload (pointing into data); 0 when more bytes are needed; or
 * -1 with err filled: a payload over CONNECT_MAX_MESSAGE is resource_exhausted (reported as
 * soon as the 5-byte header is there), a compressed one internal (connect-go's answer when no
 * compression was negotiated). */
int connect_envelope_next(const void *data, size_t len, uint8_t *ret_flags, const char **ret_payload,
                          size_t *ret_len, struct connect_error *err);

/* Appends one envelope (flags, big-endian length, payload) to b. Returns 0 or -ENOBUFS. */
int connect_envelope_append(struct buf *b, uint8_t flags, const void *payload, size_t len);

/* Parses the body of a unary call: one JSON object of at most CONNECT_MAX_MESSAGE bytes.
 * Returns 0 and a new reference, or -1 with err (invalid_argument, resource_exhausted). */
int connect_parse_unary_request(const void *body, size_t len, json_t **ret, struct connect_error *err);
/* Parses the body of a server-stream call: exactly one complete, uncompressed message envelope
 * holding a JSON object. Returns 0 and a new reference, or -1 with err. */
int connect_parse_stream_request(const void *body, size_t len, json_t **ret, struct connect_error *err);

/* {"code": "...", "message": "..."} of err, as a unary error body or inside an end-of-stream
 * envelope. Never NULL; a message that is not valid UTF-8 is replaced. */
json_t *connect_error_to_json(const struct connect_error *err);

/* ---- HTTP glue, called by envd's server ---- */

/* Handles one MHD access-handler call for a Connect RPC path. method is the table entry for the
 * path, or NULL when no service has it (answered 404 `unimplemented`). *cls is the per-request
 * slot for the layer's own state (NULL on the first call); release it with
 * connect_request_completed(). */
enum MHD_Result connect_handle(struct MHD_Connection *conn, const struct connect_method *method,
                               const char *url, const char *http_method, const char *upload_data,
                               size_t *upload_data_size, void **cls);
void connect_request_completed(void *cls);

/* Makes every open stream end soon (within about half a second): for an orderly shutdown. */
void connect_shutdown(void);
