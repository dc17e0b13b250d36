/* interpd's HTTP API: see server.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/http-util.h"
#include "common/json-util.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "interpd/execute.h"
#include "interpd/server.h"
#include "interpd/snippets.h"
#include "common/net-util.h"
#include "common/banned.h"

#define BODY_MAX ((size_t)16 << 20)
#define CODE_MAX ((size_t)10 << 20)
#define CONNECTION_LIMIT 256
#define CONNECTION_TIMEOUT_S 600
#define KEEPALIVE_INTERVAL (5 * USEC_PER_SEC)
#define POLL_SLICE (200 * USEC_PER_MSEC)
#define STREAM_BLOCK_SIZE (64 * 1024)
#define ENV_TIMEOUT (30 * USEC_PER_SEC)
/* After a client went away: how long the interrupted execution may take to end before the
 * context is handed to the next request anyway (its stale output is filtered by parent id). */
#define DRAIN_TIMEOUT (10 * USEC_PER_SEC)

struct interpd_server {
    struct MHD_Daemon *daemon;
    const struct interpd_config *cfg;
    struct contexts *cs;
    atomic_bool stopping;
};

enum route {
    ROUTE_NONE,
    ROUTE_EXECUTE,
    ROUTE_CONTEXTS_CREATE,
};

struct request {
    enum route route;
    struct buf body;
    bool too_big;
};

enum stream_state {
    STREAM_WAIT_GATE,
    STREAM_RUNNING,
    STREAM_FINISHED,
};

struct stream {
    struct interpd_server *srv;
    struct context *ctx;
    char *code;
    json_t *env_vars; /* object or NULL */
    char *token;
    int fd;
    enum stream_state state;
    bool gate_held, execution_started, env_set;
    struct execution x;
    struct buf out;
    size_t out_pos;
    usec_t last_sent;
};

static enum MHD_Result queue_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    _printf_(3, 4);

static enum MHD_Result queue_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = xvasprintf(fmt, ap);
    va_end(ap);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void emit(struct stream *s, json_t *line)
{
    size_t len;
    _cleanup_free_ char *j = json_dump_compact(line, &len);
    json_decref(line);
    if (buf_append(&s->out, j, len) < 0 || buf_append(&s->out, "\n", 1) < 0) {
        /* A single line larger than the buffer's maximum: say so instead. */
        buf_reset(&s->out);
        (void)buf_append_str(&s->out, "{\"type\":\"error\",\"name\":\"OutputTooLarge\",\"value\":\"an output "
                                      "message exceeded interpd's line limit\",\"traceback\":\"\"}\n");
    }
    s->last_sent = now_usec(CLOCK_MONOTONIC);
}

static void emit_error(struct stream *s, const char *name, const char *value)
{
    emit(s,
         json_pack("{s:s, s:s, s:s, s:s}", "type", "error", "name", name, "value", value, "traceback", ""));
}

/* Gate holder: restores per-request env, releases the gate. Safe to call more than once. */
static void stream_release_context(struct stream *s)
{
    if (!s->gate_held)
        return;
    if (s->execution_started) {
        execution_release(&s->x);
        s->execution_started = false;
    }
    if (s->env_set && s->ctx->kernel && kernel_alive(s->ctx->kernel)) {
        _cleanup_free_ char *code = snippet_env_restore(s->ctx->language);
        struct error_record err;
        if (code && context_run_silent(s->ctx, code, ENV_TIMEOUT, &err) < 0)
            log_warn("context %s: cannot restore the environment: %s", s->ctx->id, err.msg);
    }
    s->env_set = false;
    s->gate_held = false;
    context_gate_release(s->ctx);
}

static void stream_finish(struct stream *s)
{
    stream_release_context(s);
    emit(s, json_pack("{s:s}", "type", "end_of_execution"));
    s->state = STREAM_FINISHED;
}

/* Gate holder: everything before the user's code runs. Returns false after emitting an error. */
static bool stream_begin(struct stream *s)
{
    struct error_record err;
    if (s->ctx->deleted) {
        emit_error(s, "ContextDeleted", "the context was deleted before the execution started");
        return false;
    }
    if (context_prepare(s->srv->cs, s->ctx, true, s->token, &err) < 0) {
        emit_error(s, "KernelError", err.msg);
        return false;
    }
    if (s->env_vars && json_object_size(s->env_vars) > 0) {
        _cleanup_free_ char *code = snippet_env_set(s->ctx->language, s->env_vars);
        if (code) {
            s->env_set = true;
            int r = context_run_silent(s->ctx, code, ENV_TIMEOUT, &err);
            if (r < 0) {
                emit_error(s, "EnvVarsError", err.msg);
                return false;
            }
        }
    }
    int r = execution_start(&s->x, s->ctx->kernel, s->code, false);
    s->execution_started = true;
    if (r < 0) {
        emit_error(s, "KernelError", "cannot send the code to the kernel");
        return false;
    }
    return true;
}

/* Fills s->out with at least one line. Returns false when the stream must be aborted (the
 * client went away, interpd is stopping). */
static bool stream_produce(struct stream *s)
{
    for (;;) {
        if (atomic_load(&s->srv->stopping))
            return false;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        usec_t due = s->last_sent + KEEPALIVE_INTERVAL;
        usec_t wait = MIN(POLL_SLICE, due > now ? due - now : 0);
        if (s->state == STREAM_WAIT_GATE) {
            if (context_gate_acquire(s->ctx, wait)) {
                s->gate_held = true;
                s->state = STREAM_RUNNING;
                if (!stream_begin(s)) {
                    stream_finish(s);
                    return true;
                }
                continue;
            }
        } else if (s->state == STREAM_RUNNING) {
            json_t *line = NULL;
            int r = execution_next(&s->x, wait, &line);
            if (r == EXECUTION_LINE) {
                emit(s, line);
                return true;
            }
            if (r == EXECUTION_END) {
                stream_finish(s);
                return true;
            }
            if (r < 0) {
                emit_error(s, "KernelError", errno_to_string(-r));
                stream_finish(s);
                return true;
            }
        } else {
            return true;
        }
        if (net_peer_gone(s->fd))
            return false;
        if (now_usec(CLOCK_MONOTONIC) >= s->last_sent + KEEPALIVE_INTERVAL) {
            emit(s, json_pack("{s:s}", "type", "keepalive"));
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
        if (s->state == STREAM_FINISHED)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_produce(s))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = MIN(max, s->out.len - s->out_pos);
    memcpy(dst, s->out.data + s->out_pos, n);
    s->out_pos += n;
    return (ssize_t)n;
}

/* The response is gone: finished, or its client went away mid-execution. In the latter case
 * the kernel is interrupted and given DRAIN_TIMEOUT to finish before the gate opens. */
static void stream_free(void *cls)
{
    struct stream *s = cls;
    if (s->gate_held && s->execution_started && s->state == STREAM_RUNNING) {
        log_info("context %s: client went away during an execution; interrupting the kernel", s->ctx->id);
        kernel_interrupt(s->ctx->kernel);
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + DRAIN_TIMEOUT;
        for (;;) {
            usec_t now = now_usec(CLOCK_MONOTONIC);
            if (now >= deadline) {
                log_warn("context %s: the interrupted execution did not end", s->ctx->id);
                break;
            }
            json_t *line = NULL;
            int r = execution_next(&s->x, deadline - now, &line);
            json_decref(line);
            if (r == EXECUTION_END || r < 0)
                break;
        }
    }
    stream_release_context(s);
    context_unref(s->srv->cs, s->ctx);
    free(s->code);
    json_decref(s->env_vars);
    free(s->token);
    buf_release(&s->out);
    free(s);
}

static enum MHD_Result handle_execute(struct interpd_server *srv, struct MHD_Connection *conn,
                                      struct request *req)
{
    _cleanup_json_ json_t *body = NULL;
    struct error_record err;
    if (json_parse_object(req->body.data, req->body.len, &body, &err) < 0)
        return queue_text(conn, MHD_HTTP_BAD_REQUEST, "invalid JSON body: %s", err.msg);
    json_t *code = json_object_get(body, "code");
    if (!json_is_string(code))
        return queue_text(conn, MHD_HTTP_BAD_REQUEST, "\"code\" (a string) is required");
    if (json_string_length(code) > CODE_MAX)
        return queue_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "code is larger than %zu bytes", CODE_MAX);
    json_t *jctx = json_object_get(body, "context_id"), *jlang = json_object_get(body, "language");
    if (json_is_null(jctx))
        jctx = NULL;
    if (json_is_null(jlang))
        jlang = NULL;
    if (jctx && jlang)
        return queue_text(conn, MHD_HTTP_BAD_REQUEST,
                          "Only one of context_id or language can be provided, not both.");
    if ((jctx && !json_is_string(jctx)) || (jlang && !json_is_string(jlang)))
        return queue_text(conn, MHD_HTTP_BAD_REQUEST, "context_id and language must be strings");
    json_t *env = json_object_get(body, "env_vars");
    if (json_is_null(env))
        env = NULL;
    if (env) {
        if (!json_is_object(env))
            return queue_text(conn, MHD_HTTP_BAD_REQUEST, "env_vars must be an object of strings");
        const char *k;
        json_t *v;
        json_object_foreach (env, k, v) {
            if (!json_is_string(v))
                return queue_text(conn, MHD_HTTP_BAD_REQUEST, "env_vars.%.200s is not a string", k);
            if (!snippet_env_name_valid(k))
                return queue_text(conn, MHD_HTTP_BAD_REQUEST, "invalid environment variable name '%.200s'",
                                  k);
        }
    }

    struct context *ctx = NULL;
    if (jctx) {
        ctx = contexts_get(srv->cs, json_string_value(jctx));
        if (!ctx)
            return queue_text(conn, MHD_HTTP_NOT_FOUND, "Context %s not found", json_string_value(jctx));
    } else {
        _cleanup_free_ char *lang = contexts_normalize_language(json_string_value(jlang));
        int r = contexts_get_default(srv->cs, lang, &ctx, &err);
        if (r == -EINVAL || r == -ENOENT)
            return queue_text(conn, MHD_HTTP_BAD_REQUEST, "%s", err.msg);
        if (r < 0) {
            log_error("cannot create the default %s context: %s", lang, err.msg);
            return queue_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot start the %s kernel: %s", lang,
                              err.msg);
        }
    }

    struct stream *s = xcalloc(1, sizeof(*s));
    s->srv = srv;
    s->ctx = ctx;
    s->code = xstrndup(json_string_value(code), json_string_length(code));
    s->env_vars = env ? json_incref(env) : NULL;
    const char *token = http_header(conn, "X-Access-Token");
    s->token = token ? xstrdup(token) : NULL;
    buf_init(&s->out, JMSG_FRAME_MAX * 2);
    s->last_sent = now_usec(CLOCK_MONOTONIC);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    s->fd = ci ? ci->connect_fd : -1;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK_SIZE, stream_reader, s, stream_free);
    if (!r) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle_create(struct interpd_server *srv, struct MHD_Connection *conn,
                                     struct request *req)
{
    _cleanup_json_ json_t *body = NULL;
    struct error_record err;
    if (req->body.len == 0)
        body = json_object();
    else if (json_parse_object(req->body.data, req->body.len, &body, &err) < 0)
        return queue_text(conn, MHD_HTTP_BAD_REQUEST, "invalid JSON body: %s", err.msg);
    json_t *jlang = json_object_get(body, "language"), *jcwd = json_object_get(body, "cwd");
    if ((jlang && !json_is_null(jlang) && !json_is_string(jlang)) ||
        (jcwd && !json_is_null(jcwd) && !json_is_string(jcwd)))
        return queue_text(conn, MHD_HTTP_BAD_REQUEST, "language and cwd must be strings");
    _cleanup_free_ char *lang = contexts_normalize_language(json_string_value(jlang));
    const char *cwd = json_string_value(jcwd);
    if (cwd && cwd[0] != '/')
        return queue_text(conn, MHD_HTTP_BAD_REQUEST, "cwd must be an absolute path");
    struct context *ctx;
    int r = contexts_create(srv->cs, lang, cwd, &ctx, &err);
    if (r == -EINVAL || r == -ENOENT)
        return queue_text(conn, MHD_HTTP_BAD_REQUEST, "%s", err.msg);
    if (r < 0) {
        log_error("cannot create a %s context: %s", lang, err.msg);
        return queue_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot start the %s kernel: %s", lang,
                          err.msg);
    }
    _cleanup_json_ json_t *j = context_to_json(ctx);
    context_unref(srv->cs, ctx);
    return http_queue_json(conn, MHD_HTTP_OK, j);
}

static enum MHD_Result handle_context(struct interpd_server *srv, struct MHD_Connection *conn,
                                      const char *method, const char *rest)
{
    char id[64];
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (idlen == 0 || idlen >= sizeof(id))
        return queue_text(conn, MHD_HTTP_NOT_FOUND, "Not Found");
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    _cleanup_json_ json_t *null = json_null();
    if (!slash && streq(method, "DELETE")) {
        if (contexts_delete(srv->cs, id) < 0)
            return queue_text(conn, MHD_HTTP_NOT_FOUND, "Context %s not found", id);
        return http_queue_json(conn, MHD_HTTP_OK, null);
    }
    if (slash && streq(slash, "/restart") && streq(method, "POST")) {
        struct error_record err;
        int r = contexts_restart(srv->cs, id, &err);
        if (r == -ENOENT)
            return queue_text(conn, MHD_HTTP_NOT_FOUND, "Context %s not found", id);
        if (r < 0) {
            log_error("context %s: restart failed: %s", id, err.msg);
            return queue_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot restart the kernel: %s", err.msg);
        }
        log_info("context %s restarted", id);
        return http_queue_json(conn, MHD_HTTP_OK, null);
    }
    return queue_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed");
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version, const char *upload_data,
                                      size_t *upload_data_size, void **req_cls)
{
    struct interpd_server *srv = cls;
    struct request *req = *req_cls;
    if (!req) {
        req = xcalloc(1, sizeof(*req));
        buf_init(&req->body, BODY_MAX);
        *req_cls = req;
        if (streq(url, "/execute") && streq(method, "POST")) {
            req->route = ROUTE_EXECUTE;
            return MHD_YES;
        }
        if (streq(url, "/contexts") && streq(method, "POST")) {
            req->route = ROUTE_CONTEXTS_CREATE;
            return MHD_YES;
        }
        if (streq(url, "/health") && streq(method, "GET")) {
            _cleanup_json_ json_t *ok = json_string("OK");
            return http_queue_json(conn, MHD_HTTP_OK, ok);
        }
        if (streq(url, "/contexts") && streq(method, "GET")) {
            _cleanup_json_ json_t *list = contexts_list(srv->cs);
            return http_queue_json(conn, MHD_HTTP_OK, list);
        }
        if (str_startswith(url, "/contexts/"))
            return handle_context(srv, conn, method, url + strlen("/contexts/"));
        if (streq(url, "/execute") || streq(url, "/contexts") || streq(url, "/health"))
            return queue_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed");
        return queue_text(conn, MHD_HTTP_NOT_FOUND, "Not Found");
    }
    if (req->route == ROUTE_NONE) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!req->too_big && buf_append(&req->body, upload_data, *upload_data_size) < 0) {
            req->too_big = true;
            buf_release(&req->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    enum route route = req->route;
    req->route = ROUTE_NONE; /* answered */
    if (req->too_big)
        return queue_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than %zu bytes", BODY_MAX);
    return route == ROUTE_EXECUTE ? handle_execute(srv, conn, req) : handle_create(srv, conn, req);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct request *req = *req_cls;
    if (!req)
        return;
    buf_release(&req->body);
    free(req);
    *req_cls = NULL;
}

_printf_(2, 0) static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_debug("microhttpd: %s", msg);
}

int interpd_server_start(const struct interpd_config *cfg, struct contexts *cs, struct interpd_server **ret,
                         struct error_record *err)
{
    struct sockaddr_storage ss;
    if (net_parse_address(cfg->listen, &ss, NULL) < 0)
        return error_set(err, EINVAL, "invalid listen address '%s' (want HOST:PORT)", cfg->listen);
    struct interpd_server *srv = xcalloc(1, sizeof(*srv));
    srv->cfg = cfg;
    srv->cs = cs;
    unsigned flags =
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    srv->daemon =
        MHD_start_daemon(flags, 0, NULL, NULL, access_handler, srv, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
                         MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL, MHD_OPTION_EXTERNAL_LOGGER,
                         mhd_logger, NULL, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!srv->daemon) {
        free(srv);
        return error_set(err, EADDRNOTAVAIL, "cannot listen on %s", cfg->listen);
    }
    *ret = srv;
    return 0;
}

void interpd_server_stop(struct interpd_server *srv)
{
    if (!srv)
        return;
    atomic_store(&srv->stopping, true);
    MHD_stop_daemon(srv->daemon);
    free(srv);
}
