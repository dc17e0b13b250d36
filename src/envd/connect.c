/* The Connect protocol (JSON codec) over libmicrohttpd: see connect.h.
 *
 * Invariant: every peer-controlled size is bounded (a request message by CONNECT_MAX_MESSAGE),
 * and a stream's free() runs exactly once, from MHD's free callback of the response or from
 * the request-completed path when no response took ownership of the stream. */
#include "envd/connect.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/net-util.h"
#include "common/banned.h"

#define DEFAULT_KEEPALIVE (90 * USEC_PER_SEC)
/* How long a stream waits in next() at most before it looks at the deadline, the keepalive
 * timer, the peer and the shutdown flag again. */
#define POLL_SLICE (250 * USEC_PER_MSEC)
/* A body that went over its limit is read and dropped up to this much more, so that the
 * client can still receive the error; past it the connection is closed. */
#define DISCARD_MAX (64u << 20)
#define STREAM_BLOCK_SIZE (64u << 10)
/* How much a stream gathers from messages that are already waiting before it writes. */
#define BATCH_MAX (64u << 10)
/* Largest message a stream sends. */
#define STREAM_MESSAGE_MAX (16u << 20)

static atomic_bool shutting_down;

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

json_t *connect_error_to_json(const struct connect_error *err)
{
    const char *code = connect_code_to_string(err->code);
    if (!code || err->code == CONNECT_OK)
        code = "unknown";
    const char *msg = utf8_is_valid(err->msg, strlen(err->msg)) ? err->msg : "(message not valid UTF-8)";
    json_t *j = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (!j)
        abort();
    return j;
}

int connect_envelope_next(const void *data, size_t len, uint8_t *ret_flags, const char **ret_payload,
                          size_t *ret_len, struct connect_error *err)
{
    const unsigned char *p = data;
    if (len < CONNECT_ENVELOPE_HEADER)
        return 0;
    uint32_t n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    if (n > CONNECT_MAX_MESSAGE)
        return connect_error_set(err, CONNECT_RESOURCE_EXHAUSTED,
                                 "message size %u is larger than configured max %u", n, CONNECT_MAX_MESSAGE);
    if (p[0] & CONNECT_FLAG_COMPRESSED)
        return connect_error_set(err, CONNECT_INTERNAL,
                                 "protocol error: sent compressed message without compression support");
    if (len - CONNECT_ENVELOPE_HEADER < n)
        return 0;
    *ret_flags = p[0];
    *ret_payload = (const char *)p + CONNECT_ENVELOPE_HEADER;
    *ret_len = n;
    return (int)(CONNECT_ENVELOPE_HEADER + n);
}

int connect_envelope_append(struct buf *b, uint8_t flags, const void *payload, size_t len)
{
    if (len > UINT32_MAX)
        return -ENOBUFS;
    unsigned char h[CONNECT_ENVELOPE_HEADER] = { flags, (unsigned char)(len >> 24),
                                                 (unsigned char)(len >> 16), (unsigned char)(len >> 8),
                                                 (unsigned char)len };
    size_t old = b->len;
    int r = buf_append(b, h, sizeof(h));
    if (r >= 0)
        r = buf_append(b, payload, len);
    if (r < 0)
        b->len = old;
    return r;
}

static int parse_message(const char *data, size_t len, json_t **ret, struct connect_error *err)
{
    if (len > CONNECT_MAX_MESSAGE)
        return connect_error_set(err, CONNECT_RESOURCE_EXHAUSTED,
                                 "message size %zu is larger than configured max %u", len,
                                 CONNECT_MAX_MESSAGE);
    if (len == 0)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                 "zero-length payload is not a valid JSON object");
    if (!utf8_is_valid(data, len))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "unmarshal message: invalid UTF-8");
    struct error_record e;
    if (json_parse_object(data, len, ret, &e) < 0)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "unmarshal message: %s", e.msg);
    return 0;
}

int connect_parse_unary_request(const void *body, size_t len, json_t **ret, struct connect_error *err)
{
    return parse_message(body, len, ret, err);
}

int connect_parse_stream_request(const void *body, size_t len, json_t **ret, struct connect_error *err)
{
    uint8_t flags = 0;
    const char *payload = NULL;
    size_t plen = 0;
    int n = connect_envelope_next(body, len, &flags, &payload, &plen, err);
    if (n < 0)
        return -1;
    if (n == 0) {
        if (len == 0)
            return connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                     "protocol error: missing request message");
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                 "protocol error: incomplete envelope: got %zu bytes", len);
    }
    if (flags & CONNECT_FLAG_END_STREAM)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                 "protocol error: unexpected end-of-stream envelope");
    if (flags != 0)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                 "protocol error: invalid envelope flags 0x%02x", flags);
    if ((size_t)n != len)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                 "protocol error: expected only one message, but got more data");
    return parse_message(payload, plen, ret, err);
}

void connect_shutdown(void)
{
    atomic_store(&shutting_down, true);
}

/* ---- HTTP glue ---- */

enum kind {
    KIND_UNARY,
    KIND_STREAM,
    KIND_CLIENT_STREAM,
};

/* Per-request state, in MHD's req_cls slot given by the server. */
struct request {
    const struct connect_method *method;
    enum kind kind;
    struct connect_call call;
    struct buf body;
    size_t discarded;
    bool failed; /* err holds the answer; the rest of the body is dropped */
    struct connect_error err;
    /* client streams */
    const struct connect_client_stream_ops *cs_ops;
    void *cs_state;
};

/* A server stream being written, owned by its MHD response. */
struct stream {
    const struct connect_stream_ops *ops;
    void *state;
    struct buf out;
    size_t out_pos;
    bool done;
    int fd; /* the client's socket, to notice a peer that went away while idle */
    usec_t deadline;
    usec_t keepalive_interval;
    usec_t last_sent;
};

static const char *content_type_base(const char *ct, char *out, size_t size)
{
    if (!ct)
        return NULL;
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    if (n >= size)
        n = size - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(ct[i] >= 'A' && ct[i] <= 'Z' ? ct[i] + 32 : ct[i]);
    out[n] = '\0';
    return out;
}

static enum MHD_Result queue_unary_error(struct MHD_Connection *conn, const struct connect_error *err,
                                         unsigned status_override)
{
    json_t *j = connect_error_to_json(err);
    size_t len;
    char *s = json_dump_compact(j, &len);
    json_decref(j);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, s, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(
        conn, status_override ? status_override : connect_code_to_http_status(err->code), r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result queue_unary_ok(struct MHD_Connection *conn, const json_t *resp)
{
    size_t len;
    char *s = json_dump_compact(resp, &len);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, s, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* A complete streamed answer in one buffer: an optional message, then end-of-stream. */
static enum MHD_Result queue_envelopes(struct MHD_Connection *conn, const json_t *msg,
                                       const struct connect_error *err)
{
    struct buf b;
    buf_init(&b, 2 * CONNECT_MAX_MESSAGE);
    if (msg) {
        size_t len;
        _cleanup_free_ char *s = json_dump_compact(msg, &len);
        if (connect_envelope_append(&b, 0, s, len) < 0) {
            buf_release(&b);
            return MHD_NO;
        }
    }
    json_t *end = err ? json_pack("{s:o}", "error", connect_error_to_json(err)) : json_object();
    size_t len;
    _cleanup_free_ char *s = json_dump_compact(end, &len);
    json_decref(end);
    connect_envelope_append(&b, CONNECT_FLAG_END_STREAM, s, len);
    size_t total = b.len;
    struct MHD_Response *r = MHD_create_response_from_buffer(total, buf_steal(&b), MHD_RESPMEM_MUST_FREE);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/connect+json");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static void stream_append_json(struct stream *s, uint8_t flags, const char *json, size_t len)
{
    /* The out buffer is drained before new messages are pulled: it holds at most BATCH_MAX
     * bytes plus one message and the end of the stream. A message too big for it ends the
     * stream with an error instead (the buffer keeps room for that). */
    if (len > STREAM_MESSAGE_MAX || connect_envelope_append(&s->out, flags, json, len) < 0) {
        static const char too_big[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"response message too large\"}}";
        if (connect_envelope_append(&s->out, CONNECT_FLAG_END_STREAM, too_big, sizeof(too_big) - 1) < 0)
            abort();
        s->done = true;
    }
    s->last_sent = now_usec(CLOCK_MONOTONIC);
}

static void stream_end(struct stream *s, const struct connect_error *err)
{
    if (s->done)
        return;
    json_t *end = err ? json_pack("{s:o}", "error", connect_error_to_json(err)) : json_object();
    size_t len;
    _cleanup_free_ char *j = json_dump_compact(end, &len);
    json_decref(end);
    stream_append_json(s, CONNECT_FLAG_END_STREAM, j, len);
    s->done = true;
}

/* After a message, takes what else is ready at once (up to BATCH_MAX bytes, and the end of the
 * stream), so that a burst goes out in one write instead of one per envelope. */
static void stream_batch(struct stream *s)
{
    while (!s->done && s->out.len < BATCH_MAX) {
        struct connect_error err = { 0 };
        json_t *msg = NULL;
        enum connect_next r = s->ops->next(s->state, 0, &msg, &err);
        if (r == CONNECT_NEXT_IDLE)
            return;
        if (r == CONNECT_NEXT_END) {
            stream_end(s, NULL);
        } else if (r == CONNECT_NEXT_ERROR) {
            stream_end(s, &err);
        } else if (now_usec(CLOCK_MONOTONIC) >= s->deadline) {
            json_decref(msg);
            connect_error_set(&err, CONNECT_DEADLINE_EXCEEDED, "the operation timed out");
            stream_end(s, &err);
        } else {
            size_t len;
            _cleanup_free_ char *j = json_dump_compact(msg, &len);
            json_decref(msg);
            stream_append_json(s, 0, j, len);
        }
    }
}

/* Fills s->out with the next envelope, or returns false when the client is gone. */
static bool stream_produce(struct stream *s)
{
    for (;;) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        struct connect_error err = { 0 };
        if (now >= s->deadline) {
            connect_error_set(&err, CONNECT_DEADLINE_EXCEEDED, "the operation timed out");
            stream_end(s, &err);
            return true;
        }
        if (atomic_load(&shutting_down))
            return false;
        usec_t wait = POLL_SLICE;
        if (s->ops->keepalive_json) {
            usec_t due = s->last_sent + s->keepalive_interval;
            wait = MIN(wait, due > now ? due - now : 0);
        }
        if (s->deadline != USEC_INFINITY)
            wait = MIN(wait, s->deadline - now);

        json_t *msg = NULL;
        enum connect_next r = s->ops->next(s->state, wait, &msg, &err);
        switch (r) {
        case CONNECT_NEXT_MESSAGE: {
            if (now_usec(CLOCK_MONOTONIC) >= s->deadline) {
                json_decref(msg);
                continue; /* the deadline wins over a message produced after it */
            }
            size_t len;
            _cleanup_free_ char *j = json_dump_compact(msg, &len);
            json_decref(msg);
            stream_append_json(s, 0, j, len);
            stream_batch(s);
            return true;
        }
        case CONNECT_NEXT_END:
            stream_end(s, NULL);
            return true;
        case CONNECT_NEXT_ERROR:
            stream_end(s, &err);
            return true;
        case CONNECT_NEXT_IDLE:
            break;
        }
        if (net_peer_gone(s->fd))
            return false;
        now = now_usec(CLOCK_MONOTONIC);
        if (s->ops->keepalive_json && now >= s->last_sent + s->keepalive_interval) {
            stream_append_json(s, 0, s->ops->keepalive_json, strlen(s->ops->keepalive_json));
            return true;
        }
    }
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *dst, size_t max)
{
    struct stream *s = cls;
    if (s->out_pos == s->out.len) {
        buf_reset(&s->out);
        s->out_pos = 0;
        if (s->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_produce(s))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = MIN(max, s->out.len - s->out_pos);
    memcpy(dst, s->out.data + s->out_pos, n);
    s->out_pos += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    s->ops->free(s->state);
    buf_release(&s->out);
    free(s);
}

static enum MHD_Result start_stream(struct MHD_Connection *conn, struct request *req, json_t *msg)
{
    const struct connect_stream_ops *ops = NULL;
    void *state = NULL;
    struct connect_error err = { 0 };
    if (req->method->stream(&req->call, msg, &ops, &state, &err) < 0)
        return queue_envelopes(conn, NULL, &err);

    struct stream *s = xcalloc(1, sizeof(*s));
    s->ops = ops;
    s->state = state;
    buf_init(&s->out, BATCH_MAX + STREAM_MESSAGE_MAX + 4096);
    s->deadline = req->call.deadline;
    s->keepalive_interval = req->call.keepalive_interval;
    s->last_sent = now_usec(CLOCK_MONOTONIC);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    s->fd = ci ? ci->connect_fd : -1;

    /* Once the response exists, MHD calls stream_free exactly once (when it is destroyed, also
     * if queueing fails); before that, this function does. */
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK_SIZE, stream_reader, s, stream_free);
    if (!r) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/connect+json");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static int parse_headers(struct MHD_Connection *conn, struct connect_call *call, struct connect_error *err)
{
    call->deadline = USEC_INFINITY;
    call->keepalive_interval = DEFAULT_KEEPALIVE;
    const char *t = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connect-Timeout-Ms");
    if (t) {
        uint64_t ms;
        if (strlen(t) > 10 || parse_uint64(t, &ms) < 0)
            return connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                     "protocol error: invalid timeout \"%.16s\"", t);
        call->has_timeout = true;
        call->timeout_ms = ms;
        /* 0 means no limit, as envd treats a process lifetime of 0. */
        if (ms > 0)
            call->deadline = now_usec(CLOCK_MONOTONIC) + ms * USEC_PER_MSEC;
    }
    const char *k = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Keepalive-Ping-Interval");
    uint64_t secs;
    if (k && parse_uint64(k, &secs) >= 0 && secs > 0 && secs <= 86400)
        call->keepalive_interval = secs * USEC_PER_SEC;
    return 0;
}

static enum MHD_Result first_call(struct MHD_Connection *conn, const struct connect_method *method,
                                  const char *url, const char *http_method, void **cls)
{
    struct connect_error err = { 0 };
    if (!method) {
        connect_error_set(&err, CONNECT_UNIMPLEMENTED, "%.200s is not implemented", url);
        return queue_unary_error(conn, &err, MHD_HTTP_NOT_FOUND);
    }
    if (!streq(http_method, "POST")) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, "Allow", "POST");
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, r);
        MHD_destroy_response(r);
        return ret;
    }

    enum kind kind = method->unary ? KIND_UNARY : method->stream ? KIND_STREAM : KIND_CLIENT_STREAM;
    const char *want = kind == KIND_UNARY ? "application/json" : "application/connect+json";
    char ct[64];
    const char *got = content_type_base(
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE), ct, sizeof(ct));
    if (!got || !streq(got, want)) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, "Accept-Post", want);
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, r);
        MHD_destroy_response(r);
        return ret;
    }

    struct request *req = xcalloc(1, sizeof(*req));
    req->method = method;
    req->kind = kind;
    req->call.conn = conn;
    req->call.path = method->path;
    buf_init(&req->body, CONNECT_MAX_MESSAGE + CONNECT_ENVELOPE_HEADER);
    *cls = req;

    if (parse_headers(conn, &req->call, &req->err) < 0) {
        req->failed = true;
    } else {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t n;
        if (kind != KIND_CLIENT_STREAM && cl && parse_uint64(cl, &n) >= 0 &&
            n > CONNECT_MAX_MESSAGE + (kind == KIND_STREAM ? CONNECT_ENVELOPE_HEADER : 0)) {
            connect_error_set(&req->err, CONNECT_RESOURCE_EXHAUSTED,
                              "request body of %" PRIu64 " bytes is larger than configured max %u", n,
                              CONNECT_MAX_MESSAGE);
            /* Answer now; MHD closes the connection instead of reading the body. */
            return kind == KIND_UNARY ? queue_unary_error(conn, &req->err, 0)
                                      : queue_envelopes(conn, NULL, &req->err);
        }
        if (kind == KIND_CLIENT_STREAM &&
            method->client_stream(&req->call, &req->cs_ops, &req->cs_state, &req->err) < 0)
            req->failed = true;
    }
    return MHD_YES;
}

/* Feeds the client-stream messages complete in req->body to the handler. */
static void client_stream_feed(struct request *req)
{
    size_t off = 0;
    while (!req->failed) {
        uint8_t flags = 0;
        const char *payload = NULL;
        size_t plen = 0;
        int n = connect_envelope_next(req->body.data + off, req->body.len - off, &flags, &payload, &plen,
                                      &req->err);
        if (n < 0) {
            req->failed = true;
            break;
        }
        if (n == 0)
            break;
        off += (size_t)n;
        if (flags & CONNECT_FLAG_END_STREAM) {
            connect_error_set(&req->err, CONNECT_INVALID_ARGUMENT,
                              "protocol error: unexpected end-of-stream envelope");
            req->failed = true;
            break;
        }
        json_t *msg = NULL;
        if (parse_message(payload, plen, &msg, &req->err) < 0 ||
            req->cs_ops->message(req->cs_state, msg, &req->err) < 0)
            req->failed = true;
        json_decref(msg);
    }
    if (off > 0)
        buf_consume(&req->body, off);
}

static enum MHD_Result final_call(struct MHD_Connection *conn, struct request *req)
{
    if (req->failed) {
        if (req->kind == KIND_UNARY)
            return queue_unary_error(conn, &req->err, 0);
        return queue_envelopes(conn, NULL, &req->err);
    }
    _cleanup_json_ json_t *msg = NULL;
    struct connect_error err = { 0 };
    switch (req->kind) {
    case KIND_UNARY: {
        if (connect_parse_unary_request(req->body.data, req->body.len, &msg, &err) < 0)
            return queue_unary_error(conn, &err, 0);
        _cleanup_json_ json_t *resp = NULL;
        if (req->method->unary(&req->call, msg, &resp, &err) < 0)
            return queue_unary_error(conn, &err, 0);
        return queue_unary_ok(conn, resp);
    }
    case KIND_STREAM:
        if (connect_parse_stream_request(req->body.data, req->body.len, &msg, &err) < 0)
            return queue_envelopes(conn, NULL, &err);
        return start_stream(conn, req, msg);
    case KIND_CLIENT_STREAM: {
        if (req->body.len > 0) {
            connect_error_set(&err, CONNECT_INVALID_ARGUMENT,
                              "protocol error: incomplete envelope at end of body");
            return queue_envelopes(conn, NULL, &err);
        }
        _cleanup_json_ json_t *resp = NULL;
        if (req->cs_ops->finish(req->cs_state, &resp, &err) < 0)
            return queue_envelopes(conn, NULL, &err);
        return queue_envelopes(conn, resp, NULL);
    }
    }
    return MHD_NO;
}

enum MHD_Result connect_handle(struct MHD_Connection *conn, const struct connect_method *method,
                               const char *url, const char *http_method, const char *upload_data,
                               size_t *upload_data_size, void **cls)
{
    struct request *req = *cls;
    if (!req)
        return first_call(conn, method, url, http_method, cls);

    if (*upload_data_size == 0)
        return final_call(conn, req);

    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (req->failed) {
        req->discarded += n;
        return req->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    if (buf_append(&req->body, upload_data, n) < 0) {
        connect_error_set(&req->err, CONNECT_RESOURCE_EXHAUSTED,
                          "request body is larger than configured max %u", CONNECT_MAX_MESSAGE);
        req->failed = true;
        buf_release(&req->body);
        return MHD_YES;
    }
    if (req->kind == KIND_STREAM && req->body.len >= CONNECT_ENVELOPE_HEADER) {
        /* A header that promises too much is an error before its payload arrives. */
        uint8_t flags = 0;
        const char *payload = NULL;
        size_t plen = 0;
        if (connect_envelope_next(req->body.data, req->body.len, &flags, &payload, &plen, &req->err) < 0) {
            req->failed = true;
            buf_release(&req->body);
        }
    }
    if (req->kind == KIND_CLIENT_STREAM)
        client_stream_feed(req);
    return MHD_YES;
}

void connect_request_completed(void *cls)
{
    struct request *req = cls;
    if (!req)
        return;
    if (req->cs_ops)
        req->cs_ops->free(req->cs_state);
    buf_release(&req->body);
    free(req);
}
