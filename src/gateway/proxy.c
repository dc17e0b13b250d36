/* See gateway.h: forwarding one request upstream with libcurl's multi interface, driven from
 * the request's own libmicrohttpd thread.
 *
 * Flow: the first call builds the upstream request; body chunks from the client go into a
 * bounded buffer that curl's read callback drains (when it is full, the thread drives curl
 * until it has room: backpressure, not growth); when the client's body is complete the thread
 * drives curl until the upstream's response headers arrive, then queues a response whose
 * content reader drives curl for each piece of the body. Upstream data beyond the download
 * buffer pauses the transfer until the client has taken some. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/http-util.h"
#include "common/json-util.h"
#include "common/macro.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "gateway/gateway-internal.h"
#include "common/net-util.h"
#include "common/banned.h"

#define UPLOAD_BUFFER (1u << 20)
#define DOWNLOAD_BUFFER (1u << 20)
/* How long the upstream may take to start its response (a user's slow web app included). */
#define HEADERS_TIMEOUT (300 * USEC_PER_SEC)
#define POLL_MS 1000
#define POOL_MAX_IDLE 128

/* Idle upstream connections live in curl multi handles (a multi owns its connection cache), one
 * per sandbox and port, handed to one request at a time. */
struct pool_entry {
    char key[GW_SANDBOX_ID_MAX + 8];
    CURLM *multi;
    usec_t idle_since;
};

struct gw {
    struct gw_config cfg;
    gw_ingress_cb ingress;
    void *ingress_userdata;
    _Atomic uint64_t requests, bad_routes, refused, unreachable;
    pthread_mutex_t lock;
    struct pool_entry pool[POOL_MAX_IDLE];
    size_t n_pool;
};

struct gw_request {
    struct gw *gw;
    struct gw_target target;
    char key[GW_SANDBOX_ID_MAX + 8];
    CURL *easy;
    CURLM *multi;
    struct curl_slist *headers;
    struct curl_slist *resolve;
    char *host; /* network.maskRequestHost for this port, or NULL */
    int connect_r;
    struct error_record connect_err;

    struct buf up;
    size_t up_off;
    bool up_done;
    bool up_paused;

    struct buf down;
    size_t down_off;
    bool down_paused;

    bool headers_done;
    bool finished;
    CURLcode result;
    int client_fd;
};

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int gw_new(const struct gw_config *cfg, struct gw **ret)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    /* curl_global_init is not thread-safe in curl 7.88: once, before any request thread. */
    pthread_once(&once, global_init);
    struct gw *gw = xcalloc(1, sizeof(*gw));
    gw->cfg = *cfg;
    pthread_mutex_init(&gw->lock, NULL);
    *ret = gw;
    return 0;
}

void gw_set_connect(struct gw *gw, gw_connect_cb connect, void *userdata)
{
    gw->cfg.connect = connect;
    gw->cfg.userdata = userdata;
}

void gw_set_ingress(struct gw *gw, gw_ingress_cb ingress, void *userdata)
{
    gw->ingress = ingress;
    gw->ingress_userdata = userdata;
}

void gw_get_metrics(struct gw *gw, struct gw_metrics *ret)
{
    ret->requests = gw->requests;
    ret->bad_routes = gw->bad_routes;
    ret->refused = gw->refused;
    ret->unreachable = gw->unreachable;
}

void gw_count_bad_route(struct gw *gw)
{
    gw->bad_routes++;
}

void gw_free(struct gw *gw)
{
    if (!gw)
        return;
    for (size_t i = 0; i < gw->n_pool; i++)
        curl_multi_cleanup(gw->pool[i].multi);
    pthread_mutex_destroy(&gw->lock);
    free(gw);
}

static CURLM *pool_take(struct gw *gw, const char *key)
{
    CURLM *m = NULL;
    pthread_mutex_lock(&gw->lock);
    for (size_t i = gw->n_pool; i-- > 0;) {
        if (streq(gw->pool[i].key, key)) {
            m = gw->pool[i].multi;
            gw->pool[i] = gw->pool[--gw->n_pool];
            break;
        }
    }
    pthread_mutex_unlock(&gw->lock);
    return m ? m : curl_multi_init();
}

static void pool_give(struct gw *gw, const char *key, CURLM *m)
{
    CURLM *evict = NULL;
    pthread_mutex_lock(&gw->lock);
    if (gw->n_pool == POOL_MAX_IDLE) {
        /* Full: drop the entry idle the longest. */
        size_t oldest = 0;
        for (size_t i = 1; i < gw->n_pool; i++)
            if (gw->pool[i].idle_since < gw->pool[oldest].idle_since)
                oldest = i;
        evict = gw->pool[oldest].multi;
        gw->pool[oldest] = gw->pool[--gw->n_pool];
    }
    struct pool_entry *e = &gw->pool[gw->n_pool++];
    str_copy(e->key, sizeof(e->key), key);
    e->multi = m;
    e->idle_since = now_usec(CLOCK_MONOTONIC);
    pthread_mutex_unlock(&gw->lock);
    if (evict)
        curl_multi_cleanup(evict);
}

void gw_forget_sandbox(struct gw *gw, const char *sandbox_id)
{
    CURLM *drop[POOL_MAX_IDLE];
    size_t n = 0;
    size_t idlen = strlen(sandbox_id);
    pthread_mutex_lock(&gw->lock);
    for (size_t i = gw->n_pool; i-- > 0;) {
        if (strncmp(gw->pool[i].key, sandbox_id, idlen) == 0 && gw->pool[i].key[idlen] == ':') {
            drop[n++] = gw->pool[i].multi;
            gw->pool[i] = gw->pool[--gw->n_pool];
        }
    }
    pthread_mutex_unlock(&gw->lock);
    for (size_t i = 0; i < n; i++)
        curl_multi_cleanup(drop[i]);
}

/* ---- curl callbacks ---- */

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct gw_request *r = clientp;
    int fd = r->gw->cfg.connect(r->gw->cfg.userdata, r->target.sandbox_id, r->target.port, &r->connect_err);
    if (fd < 0) {
        r->connect_r = fd;
        return CURL_SOCKET_BAD;
    }
    return fd;
}

static size_t read_upload(char *dst, size_t size, size_t nmemb, void *userdata)
{
    struct gw_request *r = userdata;
    size_t want = size * nmemb;
    size_t have = r->up.len - r->up_off;
    if (have == 0) {
        if (r->up_done)
            return 0;
        r->up_paused = true;
        return CURL_READFUNC_PAUSE;
    }
    size_t n = MIN(want, have);
    memcpy(dst, r->up.data + r->up_off, n);
    r->up_off += n;
    if (r->up_off == r->up.len) {
        buf_reset(&r->up);
        r->up_off = 0;
    }
    return n;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata)
{
    struct gw_request *r = userdata;
    size_t n = size * nmemb;
    /* An empty line ends a header block; 1xx blocks (100 Continue) are followed by the real one. */
    if (n <= 2 && (n == 0 || line[0] == '\r' || line[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200)
            r->headers_done = true;
    }
    return n;
}

static size_t write_download(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct gw_request *r = userdata;
    size_t n = size * nmemb;
    if (r->down.len + n > DOWNLOAD_BUFFER) {
        r->down_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (buf_append(&r->down, data, n) < 0) {
        r->down_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return n;
}

/* ---- driving the transfer ---- */

static void collect_done(struct gw_request *r)
{
    int left;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(r->multi, &left)))
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == r->easy) {
            r->finished = true;
            r->result = msg->data.result;
        }
}

static size_t progress_mark(const struct gw_request *r)
{
    return r->down.len + r->up_off + (r->headers_done ? 1 : 0);
}

/* Runs curl; waits up to timeout_ms for its sockets only when a run made no progress. Curl may
 * hold data it read before a pause in its own buffer, which no poll would announce, so it is
 * always given a chance to deliver first. */
static void drive(struct gw_request *r, int timeout_ms)
{
    int running;
    size_t before = progress_mark(r);
    curl_multi_perform(r->multi, &running);
    collect_done(r);
    if (r->finished || timeout_ms <= 0 || progress_mark(r) != before)
        return;
    curl_multi_poll(r->multi, NULL, 0, timeout_ms, NULL);
    curl_multi_perform(r->multi, &running);
    collect_done(r);
}

static void unpause_upload(struct gw_request *r)
{
    if (r->up_paused) {
        r->up_paused = false;
        curl_easy_pause(r->easy, CURLPAUSE_CONT);
    }
}

/* ---- building the upstream request ---- */

static bool hop_by_hop(const char *name)
{
    static const char *const names[] = {
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
        "TE",         "Trailer",    "Trailers",           "Transfer-Encoding",   "Upgrade",
    };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

static enum MHD_Result add_request_header(void *cls, enum MHD_ValueKind kind, const char *name,
                                          const char *value)
{
    struct gw_request *r = cls;
    /* Framing headers are curl's to write for the upstream leg; the gateway's own end here. */
    if (hop_by_hop(name) || strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Expect") == 0 ||
        gw_header_is_own(name))
        return MHD_YES;
    /* A masked Host: the sandbox sees the mask, and the client's Host as X-Forwarded-Host. */
    bool host = r->host && strcasecmp(name, "Host") == 0;
    if (r->host && strcasecmp(name, "X-Forwarded-Host") == 0)
        return MHD_YES;
    _cleanup_free_ char *line = xasprintf("%s: %s", host ? "X-Forwarded-Host" : name, value ? value : "");
    r->headers = curl_slist_append(r->headers, line);
    return MHD_YES;
}

static bool request_has_body(struct MHD_Connection *conn)
{
    if (http_header(conn, "Transfer-Encoding"))
        return true;
    const char *cl = http_header(conn, "Content-Length");
    uint64_t n;
    return cl && parse_uint64(cl, &n) == 0 && n > 0;
}

static void setup_easy(struct gw_request *r, struct MHD_Connection *conn, const char *raw_uri,
                       const char *method)
{
    CURL *e = r->easy;
    /* The host name is the pool key: curl reuses a connection only for the same host, so a
     * connection to one sandbox can never carry another's request. It never reaches DNS:
     * CURLOPT_RESOLVE pins it, and open_socket() makes the actual connection. */
    char host[GW_SANDBOX_ID_MAX + 32];
    snprintf(host, sizeof(host), "sbx-%s.hutch.invalid", r->target.sandbox_id);
    _cleanup_free_ char *resolve = xasprintf("%s:%u:127.0.0.1", host, (unsigned)r->target.port);
    r->resolve = curl_slist_append(NULL, resolve);
    _cleanup_free_ char *url = xasprintf("http://%s:%u%s", host, (unsigned)r->target.port, raw_uri);

    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_RESOLVE, r->resolve);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_download);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);

    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_request_header, r);
    if (r->host) {
        _cleanup_free_ char *line = xasprintf("Host: %s", r->host);
        r->headers = curl_slist_append(r->headers, line);
    }
    /* No "Expect: 100-continue" round trip for uploads; the client's Host (or the mask) stays. */
    r->headers = curl_slist_append(r->headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);

    if (streq(method, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (request_has_body(conn)) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, read_upload);
        curl_easy_setopt(e, CURLOPT_READDATA, r);
        const char *cl = http_header(conn, "Content-Length");
        uint64_t n;
        if (!http_header(conn, "Transfer-Encoding") && cl && parse_uint64(cl, &n) == 0)
            curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)n);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    } else if (!streq(method, "GET")) {
        /* A bodiless POST still says Content-Length: 0, as the client did. */
        if (streq(method, "POST") || streq(method, "PUT") || streq(method, "PATCH")) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
        }
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
}

/* ---- the response ---- */

enum MHD_Result gw_queue_502(struct gw *gw, struct MHD_Connection *conn, const struct gw_target *t,
                             int connect_r, const char *detail)
{
    gw->unreachable++;
    const char *why = connect_r == -ENOENT         ? "sandbox not found"
                      : connect_r == -ECONNREFUSED ? "port is not open in the sandbox"
                                                   : detail;
    json_t *body = json_pack("{s:s, s:s, s:i}", "sandboxId", t->sandbox_id, "message", why, "code", 502);
    enum MHD_Result ret = http_queue_json(conn, MHD_HTTP_BAD_GATEWAY, body);
    json_decref(body);
    return ret;
}

/* The 403 of a sandbox secured with a traffic access token (E2B's wording). */
static enum MHD_Result queue_token_403(struct gw *gw, struct MHD_Connection *conn, const struct gw_target *t,
                                       bool missing)
{
    gw->refused++;
    char msg[160];
    if (missing)
        snprintf(msg, sizeof(msg),
                 "Sandbox is secured with traffic access token. Token header '%s' is missing",
                 GW_TRAFFIC_TOKEN_HEADER);
    else
        snprintf(msg, sizeof(msg),
                 "Sandbox is secured with traffic access token. Provided token in header '%s' is invalid",
                 GW_TRAFFIC_TOKEN_HEADER);
    json_t *body = json_pack("{s:s, s:s, s:i}", "sandboxId", t->sandbox_id, "message", msg, "code", 403);
    enum MHD_Result ret = http_queue_json(conn, MHD_HTTP_FORBIDDEN, body);
    json_decref(body);
    return ret;
}

static enum MHD_Result queue_502(struct gw_request *r, struct MHD_Connection *conn)
{
    char detail[ERROR_MSG_MAX + 64];
    int connect_r = r->connect_r;
    if (connect_r < 0)
        snprintf(detail, sizeof(detail), "cannot reach the sandbox: %s", r->connect_err.msg);
    else if (r->result == CURLE_COULDNT_CONNECT)
        connect_r = -ECONNREFUSED;
    else
        snprintf(detail, sizeof(detail), "upstream error: %s", curl_easy_strerror(r->result));
    return gw_queue_502(r->gw, conn, &r->target, connect_r, detail);
}

int gw_open_upstream(struct gw *gw, const struct gw_target *t, struct error_record *err)
{
    int fd = gw->cfg.connect(gw->cfg.userdata, t->sandbox_id, t->port, err);
    if (fd < 0)
        return fd;
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(t->port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int r;
    do
        r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        r = -errno;
        close(fd);
        return r == -ECONNREFUSED ? r : error_set_errno(err, -r, "connecting to port %u", (unsigned)t->port);
    }
    return fd;
}

/* MHD asks for the next piece of the answer. While waiting for the sandbox it also checks
 * whether the client closed its connection (or the server is stopping, which shuts the
 * connections down): otherwise only a failed write would tell, which may be long after
 * (interpd sends a keepalive every 5 s), and meanwhile the sandbox-side request (a kernel
 * execution) would go on and a stop of the server would wait for it. */
static ssize_t read_body(void *cls, uint64_t pos, char *dst, size_t max)
{
    struct gw_request *r = cls;
    for (;;) {
        size_t have = r->down.len - r->down_off;
        if (have > 0) {
            size_t n = MIN(have, max);
            memcpy(dst, r->down.data + r->down_off, n);
            r->down_off += n;
            if (r->down_off == r->down.len) {
                buf_reset(&r->down);
                r->down_off = 0;
            }
            if (r->down_paused && r->down.len == 0) {
                r->down_paused = false;
                curl_easy_pause(r->easy, CURLPAUSE_CONT);
            }
            return (ssize_t)n;
        }
        if (r->finished)
            return r->result == CURLE_OK ? MHD_CONTENT_READER_END_OF_STREAM
                                         : MHD_CONTENT_READER_END_WITH_ERROR;
        if (net_peer_gone(r->client_fd))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        drive(r, POLL_MS);
    }
}

static enum MHD_Result queue_response(struct gw_request *r, struct MHD_Connection *conn, const char *method)
{
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);

    uint64_t size = MHD_SIZE_UNKNOWN;
    struct curl_header *h;
    if (status == 204 || status == 304 || streq(method, "HEAD"))
        size = 0;
    else if (curl_easy_header(r->easy, "Content-Length", 0, CURLH_HEADER, -1, &h) == CURLHE_OK) {
        uint64_t n;
        if (parse_uint64(h->value, &n) == 0)
            size = n;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->client_fd = ci ? ci->connect_fd : -1;
    struct MHD_Response *resp = MHD_create_response_from_callback(size, 64 * 1024, read_body, r, NULL);
    if (!resp)
        return MHD_NO;
    struct curl_header *prev = NULL;
    while ((h = curl_easy_nextheader(r->easy, CURLH_HEADER, -1, prev))) {
        prev = h;
        if (hop_by_hop(h->name) || strcasecmp(h->name, "Content-Length") == 0)
            continue;
        MHD_add_response_header(resp, h->name, h->value);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result gw_handle(struct gw *gw, const struct gw_target *target, struct MHD_Connection *conn,
                          const char *path, const char *raw_uri, const char *method, const char *upload_data,
                          size_t *upload_data_size, void **req_cls)
{
    struct gw_request *r = *req_cls;
    if (!r) {
        gw->requests++;
        if (gw_path_is_internal(target->port, path)) {
            gw->refused++;
            return http_queue_error(conn, MHD_HTTP_FORBIDDEN, "%s is internal to the sandbox", path);
        }
        /* envd checks its own X-Access-Token; every other port is the gateway's to guard. */
        struct gw_ingress in = { 0 };
        if (target->port != GW_ENVD_PORT && gw->ingress) {
            int ir = gw->ingress(gw->ingress_userdata, target->sandbox_id, &in);
            if (ir < 0)
                return gw_queue_502(gw, conn, target, ir, "cannot look the sandbox up");
            if (in.traffic_token[0]) {
                const char *tok = http_header(conn, GW_TRAFFIC_TOKEN_HEADER);
                if (!tok || !*tok)
                    return queue_token_403(gw, conn, target, true);
                if (!memeq_consttime(tok, strlen(tok), in.traffic_token, strlen(in.traffic_token)))
                    return queue_token_403(gw, conn, target, false);
            }
        }
        _cleanup_free_ char *host = in.mask_host[0] ? gw_mask_host(in.mask_host, target->port) : NULL;
        if (http_header(conn, MHD_HTTP_HEADER_UPGRADE))
            return gw_upgrade(gw, target, conn, raw_uri, method, host);
        r = xcalloc(1, sizeof(*r));
        r->gw = gw;
        r->host = TAKE_PTR(host);
        r->target = *target;
        snprintf(r->key, sizeof(r->key), "%s:%u", target->sandbox_id, (unsigned)target->port);
        buf_init(&r->up, UPLOAD_BUFFER);
        buf_init(&r->down, DOWNLOAD_BUFFER);
        r->easy = curl_easy_init();
        r->multi = pool_take(gw, r->key);
        if (!r->easy || !r->multi)
            abort();
        setup_easy(r, conn, raw_uri, method);
        curl_multi_add_handle(r->multi, r->easy);
        *req_cls = r;
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        /* Backpressure: while the buffer cannot take the chunk, let curl send what it holds. */
        while (!r->finished && r->up.len + n > UPLOAD_BUFFER) {
            unpause_upload(r);
            drive(r, POLL_MS);
        }
        if (!r->finished)
            buf_append(&r->up, upload_data, n);
        unpause_upload(r);
        drive(r, 0);
        *upload_data_size = 0;
        return MHD_YES;
    }

    r->up_done = true;
    unpause_upload(r);
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + HEADERS_TIMEOUT;
    while (!r->headers_done && !r->finished && now_usec(CLOCK_MONOTONIC) < deadline)
        drive(r, POLL_MS);
    if (!r->headers_done) {
        if (!r->finished)
            r->result = CURLE_OPERATION_TIMEDOUT;
        return queue_502(r, conn);
    }
    return queue_response(r, conn, method);
}

void gw_request_completed(void *req_cls)
{
    struct gw_request *r = req_cls;
    if (!r)
        return;
    curl_multi_remove_handle(r->multi, r->easy);
    /* A transfer that completed cleanly leaves a reusable connection in its multi handle; one
     * cut short (the client went away mid-stream) must not be reused. */
    bool reusable = r->finished && r->result == CURLE_OK;
    curl_easy_cleanup(r->easy);
    if (reusable)
        pool_give(r->gw, r->key, r->multi);
    else
        curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->headers);
    curl_slist_free_all(r->resolve);
    free(r->host);
    buf_release(&r->up);
    buf_release(&r->down);
    free(r);
}
