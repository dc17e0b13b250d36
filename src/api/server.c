/* See api.h: the listener, the request lifecycle (route, read body, authenticate, dispatch)
 * and the route table.
 *
 * libmicrohttpd runs one thread per connection: handlers may block (on the store, on a
 * sandbox) without stalling other clients. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api-internal.h"
#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/http-util.h"
#include "common/json-util.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "store/store.h"
#include "common/banned.h"

#define API_MAX_CONNECTIONS 1024
#define API_CONNECTION_TIMEOUT_S 300
#define API_LISTEN_BACKLOG 512

struct api_server {
    struct MHD_Daemon *daemon;
    struct gw *gateway;
    struct orch *orch;
    char *domain;
    int listen_fd;
    uint16_t port;
    /* One store connection shared by all request threads: SQLite connections are not to be
     * used from two threads at once, and key checks are short. */
    pthread_mutex_t store_lock;
    struct store *store;
    char *state_dir;
    unsigned char upload_secret[32];
    struct egress *egress;
    struct runtime_egress egress_hooks; /* what the runtime calls it through */
};

/* The runtime's default sandbox pool (runtime_config.net_pool). */
#define API_DEFAULT_NET_POOL "10.200.0.0/16"

static const struct api_route routes[] = {
    { "GET", "/health", api_health, .public = true },
    { "GET", "/openapi.json", api_openapi, .public = true },
    { "GET", "/metrics", api_metrics, .public = true },
    { "POST", "/v2/sandboxes", api_sandbox_create_v2, .needs_orch = true },
    { "POST", "/sandboxes", api_sandbox_create_v1, .needs_orch = true },
    { "GET", "/v2/sandboxes", api_sandbox_list_v2, .needs_orch = true },
    { "GET", "/sandboxes", api_sandbox_list_v1, .needs_orch = true },
    { "GET", "/sandboxes/{id}", api_sandbox_get, .needs_orch = true },
    { "DELETE", "/sandboxes/{id}", api_sandbox_kill, .needs_orch = true },
    { "POST", "/sandboxes/{id}/timeout", api_sandbox_timeout, .needs_orch = true },
    { "POST", "/sandboxes/{id}/refreshes", api_sandbox_refreshes, .needs_orch = true },
    { "POST", "/sandboxes/{id}/connect", api_sandbox_connect, .needs_orch = true },
    { "POST", "/v2/sandboxes/{id}/connect", api_sandbox_connect, .needs_orch = true },
    { "GET", "/sandboxes/{id}/metrics", api_sandbox_metrics, .needs_orch = true },
    { "GET", "/sandboxes/{id}/logs", api_sandbox_logs_v1, .needs_orch = true },
    { "GET", "/v2/sandboxes/{id}/logs", api_sandbox_logs_v2, .needs_orch = true },
    { "POST", "/sandboxes/{id}/pause", api_sandbox_pause, .needs_orch = true },
    { "POST", "/sandboxes/{id}/resume", api_sandbox_resume, .needs_orch = true },
    { "PUT", "/sandboxes/{id}/network", api_sandbox_network, .needs_orch = true },
    { "POST", "/sandboxes/{id}/snapshots", api_sandbox_snapshot, .needs_orch = true },
    { "POST", "/sandboxes/{id}/fork", api_sandbox_fork, .needs_orch = true },
    /* Templates. The first match wins: literal segments come before {templateID}. */
    { "POST", "/v3/templates", api_template_request_build },
    { "GET", "/templates", api_template_list_v1 },
    { "GET", "/v2/templates", api_template_list_v2 },
    { "POST", "/templates/tags", api_template_tags_assign },
    { "DELETE", "/templates/tags", api_template_tags_delete },
    { "GET", "/templates/aliases/{alias}", api_template_alias },
    { "GET", "/templates/{templateID}", api_template_get },
    { "DELETE", "/templates/{templateID}", api_template_delete, .needs_orch = true },
    { "PATCH", "/v2/templates/{templateID}", api_template_update_v2 },
    { "GET", "/templates/{templateID}/tags", api_template_tags_list },
    { "GET", "/templates/{templateID}/files/{hash}", api_template_file_link },
    { "POST", "/v2/templates/{templateID}/builds/{buildID}", api_template_build_start, .needs_orch = true },
    { "GET", "/templates/{templateID}/builds/{buildID}/status", api_template_build_status },
    /* The upload URL that GET .../files/{hash} hands out: no API key (the SDK sends none), a
     * signed token instead, checked by the sink before any of the body is read. */
    { "PUT", "/upload/templates/{templateID}/files/{hash}", api_template_file_upload, .public = true,
      .sink = &api_template_upload_sink },
    { "GET", "/snapshots", api_snapshot_list },
    /* Authenticates itself: a Bearer token gets its own explanation. */
    { "GET", "/teams", api_teams, .public = true },
};

/* Per-request state, allocated when MHD has read the request line (uri_logged) and freed when
 * the request completes. */
struct request_state {
    struct api_request req;
    char *raw_uri; /* the request target as sent, query included */
    bool started;
    const struct api_route *route;
    char *scratch;
    bool body_too_large;
    bool answered;        /* a sink's begin queued the response */
    bool method_mismatch; /* the path exists, with another method */
    /* Sandbox traffic goes to the gateway instead. */
    bool to_gateway;
    struct gw_target target;
    void *gateway_request;
};

json_t *api_request_json(struct api_request *req, enum MHD_Result *ret_result)
{
    if (req->body.len == 0)
        return json_object();
    json_t *v;
    struct error_record err = { 0 };
    if (json_parse_object(req->body.data, req->body.len, &v, &err) < 0) {
        *ret_result = http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "request body: %s", err.msg);
        return NULL;
    }
    return v;
}

static void find_route(struct request_state *st, const char *method, const char *path)
{
    st->scratch = xmalloc(strlen(path) + 1);
    for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
        const char *params[API_MAX_PARAMS] = { 0 };
        if (!api_route_match(routes[i].pattern, path, st->scratch, params))
            continue;
        if (!streq(routes[i].method, method)) {
            st->method_mismatch = true;
            continue;
        }
        st->route = &routes[i];
        memcpy(st->req.params, params, sizeof(params));
        return;
    }
}

static enum MHD_Result check_api_key(struct api_server *s, struct MHD_Connection *conn, bool *ret_ok)
{
    const char *key = http_header(conn, "X-API-KEY");
    *ret_ok = false;
    if (!key || !*key)
        return http_queue_error(conn, MHD_HTTP_UNAUTHORIZED,
                                "missing API key: send it in the X-API-KEY header (create one with "
                                "`hutch key create`)");
    struct error_record err = { 0 };
    pthread_mutex_lock(&s->store_lock);
    int r = store_key_verify(s->store, key, &err);
    pthread_mutex_unlock(&s->store_lock);
    if (r < 0) {
        log_error("checking an API key: %s", err.msg);
        return http_queue_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error checking the API key");
    }
    if (r == 0)
        return http_queue_error(conn, MHD_HTTP_UNAUTHORIZED, "invalid API key");
    *ret_ok = true;
    return MHD_YES;
}

/* A signed /files URL (the SDK's uploadUrl()/downloadUrl()) names no sandbox: it goes to the
 * one whose access token produced the signature (e2b-compat 1.5). */
enum signed_url { NOT_SIGNED, SIGNED_ROUTED, SIGNED_UNKNOWN };

static enum signed_url route_signed_url(struct api_server *s, struct request_state *st,
                                        struct MHD_Connection *conn, const char *url, const char *method)
{
    const char *signature = http_query(conn, "signature");
    if (!s->orch || !signature || !streq(url, "/files"))
        return NOT_SIGNED;
    const char *op = streq(method, "GET") || streq(method, "HEAD") ? "read"
                     : streq(method, "POST")                       ? "write"
                                                                   : NULL;
    if (!op)
        return NOT_SIGNED;
    char id[STORE_SANDBOX_ID_MAX + 1];
    if (orch_sandbox_by_signature(s->orch, http_query(conn, "path"), op, http_query(conn, "username"),
                                  http_query(conn, "signature_expiration"), signature, id) < 0)
        return SIGNED_UNKNOWN;
    memset(&st->target, 0, sizeof(st->target));
    str_copy(st->target.sandbox_id, sizeof(st->target.sandbox_id), id);
    st->target.port = GW_ENVD_PORT;
    return SIGNED_ROUTED;
}

/* MHD calls this with the raw request target before it decodes anything; what it returns
 * becomes the request's *req_cls. The gateway forwards this target byte for byte. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct request_state *st = xcalloc(1, sizeof(*st));
    st->raw_uri = xstrdup(uri);
    return st;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct api_server *s = cls;
    struct request_state *st = *req_cls;
    assert(st);

    if (st->to_gateway)
        return gw_handle(s->gateway, &st->target, conn, url, st->raw_uri, method, upload_data,
                         upload_data_size, &st->gateway_request);

    if (!st->started) {
        st->started = true;
        switch (gw_route(s->domain, http_header(conn, "E2b-Sandbox-Id"),
                         http_header(conn, "E2b-Sandbox-Port"), http_header(conn, MHD_HTTP_HEADER_HOST),
                         &st->target)) {
        case GW_BAD_ROUTE:
            gw_count_bad_route(s->gateway);
            return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "%s", st->target.error);
        case GW_ROUTED:
            st->to_gateway = true;
            return gw_handle(s->gateway, &st->target, conn, url, st->raw_uri, method, upload_data,
                             upload_data_size, &st->gateway_request);
        case GW_NOT_SANDBOX_TRAFFIC:
            switch (route_signed_url(s, st, conn, url, method)) {
            case SIGNED_ROUTED:
                st->to_gateway = true;
                return gw_handle(s->gateway, &st->target, conn, url, st->raw_uri, method, upload_data,
                                 upload_data_size, &st->gateway_request);
            case SIGNED_UNKNOWN:
                return http_queue_error(conn, MHD_HTTP_UNAUTHORIZED, "invalid signature");
            case NOT_SIGNED:
                break;
            }
            break;
        }
        st->req.server = s;
        st->req.conn = conn;
        st->req.method = method;
        st->req.path = url;
        buf_init(&st->req.body, API_MAX_BODY);
        find_route(st, method, url);
        if (st->route && st->route->sink) {
            enum MHD_Result ret;
            if (!st->route->public) {
                bool ok;
                ret = check_api_key(s, conn, &ok);
                if (!ok) {
                    st->answered = true;
                    return ret;
                }
            }
            ret = st->route->sink->begin(&st->req, &st->req.sink_ctx, &st->answered);
            if (st->answered)
                return ret;
        }
        return MHD_YES;
    }

    if (st->answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (st->route && st->route->sink) {
            /* After a failure the rest is read and dropped, so the client hears why. */
            if (!st->req.sink_error)
                st->req.sink_error = st->route->sink->write(st->req.sink_ctx, upload_data, *upload_data_size);
        } else if (!st->body_too_large && buf_append(&st->req.body, upload_data, *upload_data_size) < 0) {
            /* Past the limit the rest is read and dropped so the client still gets the 413. */
            st->body_too_large = true;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (st->body_too_large)
        return http_queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body is larger than %u bytes",
                                API_MAX_BODY);
    if (!st->route) {
        if (st->method_mismatch)
            return http_queue_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s is not allowed on %s",
                                    method, url);
        return http_queue_error(conn, MHD_HTTP_NOT_FOUND, "no such endpoint: %s %s", method, url);
    }
    if (!st->route->public) {
        bool ok;
        enum MHD_Result ret = check_api_key(s, conn, &ok);
        if (!ok)
            return ret;
    }
    if (st->route->needs_orch && !s->orch)
        return http_queue_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "this server runs no sandboxes");
    st->req.server_orch = s->orch;
    return st->route->handler(&st->req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request_state *st = *req_cls;
    if (!st)
        return;
    gw_request_completed(st->gateway_request);
    if (st->route && st->route->sink)
        st->route->sink->free(st->req.sink_ctx);
    free(st->raw_uri);
    buf_release(&st->req.body);
    free(st->scratch);
    free(st);
    *req_cls = NULL;
}

_printf_(2, 0) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_warn("http: %s", msg);
}

/* Binds "ADDR:PORT" or "[V6ADDR]:PORT" (numeric only: a listen address is configuration,
 * not something to resolve). */
static int bind_listen(const char *listen_addr, int *ret_fd, uint16_t *ret_port, struct error_record *err)
{
    char host[128];
    const char *colon = strrchr(listen_addr, ':');
    if (!colon || colon == listen_addr || (size_t)(colon - listen_addr) >= sizeof(host))
        return error_set(err, EINVAL, "listen address '%s' is not ADDR:PORT", listen_addr);
    memcpy(host, listen_addr, (size_t)(colon - listen_addr));
    host[colon - listen_addr] = '\0';
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    uint32_t port;
    if (parse_uint32(colon + 1, &port) < 0 || port > 65535)
        return error_set(err, EINVAL, "listen address '%s' has no valid port", listen_addr);

    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai;
    int rc = getaddrinfo(h, colon + 1, &hints, &ai);
    if (rc != 0)
        return error_set(err, EINVAL, "listen address '%s': %s", listen_addr, gai_strerror(rc));
    _cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return error_set_errno(err, errno, "socket");
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        int e = errno;
        freeaddrinfo(ai);
        return error_set_errno(err, e, "binding %s", listen_addr);
    }
    freeaddrinfo(ai);
    if (listen(fd, API_LISTEN_BACKLOG) < 0)
        return error_set_errno(err, errno, "listening on %s", listen_addr);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return error_set_errno(err, errno, "getsockname");
    *ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *ret_fd = TAKE_FD(fd);
    return 0;
}

static void forget_in_gateway(void *userdata, const char *id)
{
    struct api_server *s = userdata;
    gw_forget_sandbox(s->gateway, id);
}

static int sandbox_ingress(void *userdata, const char *id, struct gw_ingress *ret)
{
    _Static_assert(GW_TRAFFIC_TOKEN_MAX == ORCH_TRAFFIC_TOKEN_MAX && GW_MASK_HOST_MAX == ORCH_MASK_HOST_MAX,
                   "the gateway holds what the orchestrator keeps");
    return orch_sandbox_ingress(userdata, id, ret->traffic_token, sizeof(ret->traffic_token), ret->mask_host,
                                sizeof(ret->mask_host));
}

static int egress_set(void *userdata, const char *id, uint32_t sandbox_ip, const char *const *domains,
                      const uint16_t *tls_ports, struct error_record *err)
{
    return egress_sandbox_set(userdata, id, sandbox_ip, domains, tls_ports, err);
}

static void egress_forget(void *userdata, const char *id)
{
    egress_sandbox_forget(userdata, id);
}

int api_server_start(const struct api_config *cfg, struct api_server **ret, struct error_record *err)
{
    struct api_server *s = xcalloc(1, sizeof(*s));
    s->listen_fd = -1;
    pthread_mutex_init(&s->store_lock, NULL);
    s->state_dir = xstrdup(cfg->state_dir);
    int r = store_open(cfg->state_dir, &s->store, err);
    if (r < 0)
        goto fail;
    r = random_bytes(s->upload_secret, sizeof(s->upload_secret));
    if (r < 0) {
        error_set_errno(err, r, "drawing the upload secret");
        goto fail;
    }
    api_template_cache_clean(s->state_dir);
    s->domain = cfg->domain ? xstrdup(cfg->domain) : NULL;
    struct gw_config gwc = {
        .connect = cfg->sandbox_connect,
        .userdata = cfg->sandbox_connect_userdata,
        .domain = s->domain,
    };
    /* The gateway comes first: the orchestrator's on_gone hook uses it. */
    r = gw_new(&gwc, &s->gateway);
    if (r < 0)
        goto fail;
    if (!cfg->sandbox_connect) {
        struct egress_config ec = cfg->egress;
        ec.net_pool =
            cfg->orch.runtime_config.net_pool ? cfg->orch.runtime_config.net_pool : API_DEFAULT_NET_POOL;
        r = egress_new(&ec, &s->egress, err);
        if (r < 0)
            goto fail;
        s->egress_hooks = (struct runtime_egress){
            .port = egress_port(s->egress),
            .userdata = s->egress,
            .set = egress_set,
            .forget = egress_forget,
        };
        struct orch_config oc = cfg->orch;
        oc.runtime_config.egress = &s->egress_hooks;
        oc.state_dir = cfg->state_dir;
        oc.on_gone = forget_in_gateway;
        oc.on_gone_userdata = s;
        r = orch_new(&oc, &s->orch, err);
        if (r < 0)
            goto fail;
        gw_set_connect(s->gateway, orch_sandbox_socket, s->orch);
        gw_set_ingress(s->gateway, sandbox_ingress, s->orch);
    }
    r = bind_listen(cfg->listen ? cfg->listen : API_DEFAULT_LISTEN, &s->listen_fd, &s->port, err);
    if (r < 0)
        goto fail;
    s->daemon =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                             MHD_ALLOW_UPGRADE,
                         0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                         MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)API_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned)API_CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    if (!s->daemon) {
        r = error_set(err, EIO, "could not start the HTTP server");
        goto fail;
    }
    *ret = s;
    return 0;
fail:
    api_server_stop(s);
    return r;
}

struct gw *api_server_gateway(struct api_server *s)
{
    return s->gateway;
}

struct egress *api_server_egress(struct api_server *s)
{
    return s->egress;
}

const char *api_server_state_dir(const struct api_server *s)
{
    return s->state_dir;
}

struct store *api_store_lock(struct api_server *s)
{
    pthread_mutex_lock(&s->store_lock);
    return s->store;
}

void api_store_unlock(struct api_server *s)
{
    pthread_mutex_unlock(&s->store_lock);
}

const unsigned char *api_server_upload_secret(const struct api_server *s, size_t *ret_len)
{
    *ret_len = sizeof(s->upload_secret);
    return s->upload_secret;
}

size_t api_routes(const struct api_route **ret)
{
    *ret = routes;
    return ARRAY_SIZE(routes);
}

uint16_t api_server_port(const struct api_server *s)
{
    return s->port;
}

void api_server_stop(struct api_server *s)
{
    if (!s)
        return;
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    /* After the listener: no request can reach a sandbox while they are killed. */
    orch_free(s->orch);
    /* After the orchestrator: its sandboxes' proxied connections went with them. */
    egress_free(s->egress);
    /* MHD does not close a socket it was given. */
    safe_close(s->listen_fd);
    gw_free(s->gateway);
    free(s->domain);
    store_free(s->store);
    pthread_mutex_destroy(&s->store_lock);
    free(s->state_dir);
    explicit_bzero(s->upload_secret, sizeof(s->upload_secret));
    free(s);
}
