/* envd's HTTP server and router: see server.h.
 *
 * Access control (e2b-compat 3.8): once /init has set an access token, every request except
 * GET /health and /files (which checks the token or a URL signature itself) needs
 * `X-Access-Token` equal to it, or gets 401. /init itself is open only while no token is set;
 * after that it needs the current token too, so that a process inside the sandbox cannot
 * replace the token, the default user or the env vars (the orchestrator, which holds the token,
 * can still re-init, e.g. after a resume). */
#include "envd/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/http-util.h"
#include "common/json-util.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "envd/envd.h"
#include "common/net-util.h"
#include "common/banned.h"

#define INIT_BODY_MAX (1u << 20)
#define CONNECTION_LIMIT 1024
#define CONNECTION_TIMEOUT_S 600
/* Each connection's MHD memory pool: headers, then the read buffer (half the pool, so uploads
 * arrive 64 KiB per recv()). MHD zeroes the whole pool after every request of a keep-alive
 * connection (MHD_pool_reset), so all of it is resident for as long as the connection lives.
 * A bigger pool does not make uploads faster once they are written in 1 MiB pieces
 * (fs/upload.c: 1.84 GB/s at 128 KiB, 1.79 GB/s at 1 MiB) but costs its size per open
 * connection. */
#define CONNECTION_MEMORY_LIMIT (128u << 10)

static const char unauthorized_msg[] =
    "unauthorized access, please provide a valid access token or method signing if supported";

struct envd_server {
    struct MHD_Daemon *daemon;
};

/* Per-request state in MHD's req_cls. */
struct request {
    enum envd_route route;
    void *cls; /* the Connect layer's or /files' own state */
    struct buf body;
    bool too_big;
};

enum envd_route envd_route_of(const char *url)
{
    if (streq(url, "/health"))
        return ENVD_ROUTE_HEALTH;
    if (streq(url, "/files"))
        return ENVD_ROUTE_FILES;
    if (streq(url, "/files/compose"))
        return ENVD_ROUTE_COMPOSE;
    if (streq(url, "/init"))
        return ENVD_ROUTE_INIT;
    if (streq(url, "/envs"))
        return ENVD_ROUTE_ENVS;
    if (streq(url, "/metrics"))
        return ENVD_ROUTE_METRICS;
    /* "/pkg.Service/Method": one more '/', a '.' in the service part, a non-empty method. */
    const char *slash = url[0] == '/' ? strchr(url + 1, '/') : NULL;
    if (slash && slash > url + 1 && memchr(url + 1, '.', (size_t)(slash - url - 1)) && slash[1] &&
        !strchr(slash + 1, '/'))
        return ENVD_ROUTE_RPC;
    return ENVD_ROUTE_NOT_FOUND;
}

static const struct connect_method *find_method(const char *url)
{
    const struct connect_method *tables[] = { envd_process_methods, envd_filesystem_methods };
    for (size_t t = 0; t < ARRAY_SIZE(tables); t++)
        for (const struct connect_method *m = tables[t]; m->path; m++)
            if (streq(m->path, url))
                return m;
    return NULL;
}

static int read_u64_field(const char *file, const char *key, uint64_t *ret)
{
    _cleanup_fclose_ FILE *f = fopen(file, "re");
    if (!f)
        return -errno;
    char line[256];
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            unsigned long long v;
            if (sscanf(line + klen + 1, "%llu", &v) == 1) {
                *ret = v;
                return 0;
            }
        }
    }
    return -ENOENT;
}

/* CPU use since the previous call (the first call: since boot), as gopsutil's Percent(0). */
static double cpu_used_pct(void)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static unsigned long long prev_total, prev_idle;
    _cleanup_fclose_ FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    unsigned long long v[10] = { 0 };
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7], &v[8], &v[9]) < 4)
        return 0;
    /* guest time is already counted in user and nice */
    unsigned long long total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    unsigned long long idle = v[3] + v[4];
    pthread_mutex_lock(&lock);
    unsigned long long dt = total - prev_total, di = idle - prev_idle;
    prev_total = total;
    prev_idle = idle;
    pthread_mutex_unlock(&lock);
    if (dt == 0 || di > dt)
        return 0;
    double pct = 100.0 * (double)(dt - di) / (double)dt;
    return (double)(long long)(pct * 100 + 0.5) / 100; /* two decimals */
}

json_t *envd_metrics(void)
{
    uint64_t total = 0, free_kb = 0, buffers = 0, cached = 0, sreclaim = 0;
    read_u64_field("/proc/meminfo", "MemTotal", &total);
    read_u64_field("/proc/meminfo", "MemFree", &free_kb);
    read_u64_field("/proc/meminfo", "Buffers", &buffers);
    read_u64_field("/proc/meminfo", "Cached", &cached);
    read_u64_field("/proc/meminfo", "SReclaimable", &sreclaim);
    uint64_t cache = (cached + sreclaim) * 1024;
    total *= 1024;
    uint64_t unused = free_kb * 1024 + buffers * 1024 + cache;
    uint64_t used = total > unused ? total - unused : 0;

    uint64_t disk_total = 0, disk_used = 0;
    struct statvfs sv;
    if (statvfs("/", &sv) == 0) {
        disk_total = (uint64_t)sv.f_blocks * sv.f_frsize;
        disk_used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    json_t *j =
        json_pack("{s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "ts", (json_int_t)time(NULL),
                  "cpu_count", (json_int_t)(ncpu > 0 ? ncpu : 1), "cpu_used_pct", cpu_used_pct(), "mem_total",
                  (json_int_t)total, "mem_used", (json_int_t)used, "mem_cache", (json_int_t)cache,
                  "mem_total_mib", (json_int_t)(total >> 20), "mem_used_mib", (json_int_t)(used >> 20),
                  "disk_used", (json_int_t)disk_used, "disk_total", (json_int_t)disk_total);
    if (!j)
        abort();
    return j;
}

/* Like http_queue_json, with reals printed as short as they are meant (8.58, not 8.5800000000000001). */
static enum MHD_Result queue_metrics(struct MHD_Connection *conn, const json_t *m)
{
    char *s = json_dumps(m, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (!s)
        return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, HTTP_JSON_CONTENT_TYPE);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result answer_init(struct MHD_Connection *conn, struct request *r)
{
    if (r->too_big)
        return http_queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
    json_t *body = NULL;
    struct error_record err;
    if (r->body.len == 0) {
        body = json_object(); /* an empty /init is a no-op, as in envd */
    } else if (json_parse_object(r->body.data, r->body.len, &body, &err) < 0) {
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "%s", err.msg);
    }
    int rc = envd_settings_apply_init(body, &err);
    json_decref(body);
    if (rc < 0)
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "%s", err.msg);
    log_info("/init applied");
    return http_queue_empty(conn, MHD_HTTP_NO_CONTENT);
}

static enum MHD_Result method_not_allowed(struct MHD_Connection *conn, const char *allow)
{
    json_t *body = json_pack("{s:i, s:s}", "code", 405, "message", "method not allowed");
    size_t len;
    char *s = json_dump_compact(body, &len);
    json_decref(body);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, s, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, HTTP_JSON_CONTENT_TYPE);
    MHD_add_response_header(resp, "Allow", allow);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version, const char *upload_data,
                                      size_t *upload_data_size, void **req_cls)
{
    struct request *r = *req_cls;
    if (!r) {
        r = xcalloc(1, sizeof(*r));
        r->route = envd_route_of(url);
        *req_cls = r;
        /* /files checks the token or a signature itself; /init checks it below. */
        if (r->route != ENVD_ROUTE_HEALTH && r->route != ENVD_ROUTE_FILES && !envd_request_has_token(conn)) {
            r->route = ENVD_ROUTE_NOT_FOUND;
            return http_queue_error(conn, MHD_HTTP_UNAUTHORIZED, "%s", unauthorized_msg);
        }
        /* Answers wait for the next call, when MHD has seen the (empty) body: a response queued
         * before that makes MHD close the connection, and clients lose keep-alive. */
        switch (r->route) {
        case ENVD_ROUTE_HEALTH:
        case ENVD_ROUTE_ENVS:
        case ENVD_ROUTE_METRICS:
            return MHD_YES;
        case ENVD_ROUTE_INIT:
        case ENVD_ROUTE_COMPOSE: {
            if (!streq(method, "POST"))
                return method_not_allowed(conn, "POST");
            buf_init(&r->body, INIT_BODY_MAX);
            const char *cl = http_header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
            uint64_t n;
            if (cl && parse_uint64(cl, &n) >= 0 && n > INIT_BODY_MAX)
                return http_queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
            return MHD_YES;
        }
        case ENVD_ROUTE_FILES:
            if (streq(method, "GET") || streq(method, "HEAD"))
                return MHD_YES;
            break;
        case ENVD_ROUTE_RPC:
            return connect_handle(conn, find_method(url), url, method, upload_data, upload_data_size,
                                  &r->cls);
        case ENVD_ROUTE_NOT_FOUND:
            return http_queue_error(conn, MHD_HTTP_NOT_FOUND, "not found");
        }
    }

    switch (r->route) {
    case ENVD_ROUTE_HEALTH:
        if (!streq(method, "GET") && !streq(method, "HEAD"))
            return method_not_allowed(conn, "GET");
        return http_queue_empty(conn, MHD_HTTP_NO_CONTENT);
    case ENVD_ROUTE_ENVS: {
        if (!streq(method, "GET"))
            return method_not_allowed(conn, "GET");
        _cleanup_json_ json_t *envs = envd_settings_env_vars();
        return http_queue_json(conn, MHD_HTTP_OK, envs);
    }
    case ENVD_ROUTE_METRICS: {
        if (!streq(method, "GET"))
            return method_not_allowed(conn, "GET");
        _cleanup_json_ json_t *m = envd_metrics();
        return queue_metrics(conn, m);
    }
    case ENVD_ROUTE_FILES:
        return envd_files_request(conn, method, upload_data, upload_data_size, &r->cls);
    case ENVD_ROUTE_RPC:
        return connect_handle(conn, find_method(url), url, method, upload_data, upload_data_size, &r->cls);
    case ENVD_ROUTE_INIT:
    case ENVD_ROUTE_COMPOSE:
        if (*upload_data_size == 0) {
            if (r->too_big)
                return http_queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
            return r->route == ENVD_ROUTE_INIT ? answer_init(conn, r)
                                               : envd_files_compose(conn, r->body.data, r->body.len);
        }
        if (!r->too_big && buf_append(&r->body, upload_data, *upload_data_size) < 0) {
            r->too_big = true;
            buf_release(&r->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    default:
        /* A request answered on its first call whose body is still arriving: drop it. */
        *upload_data_size = 0;
        return MHD_YES;
    }
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct request *r = *req_cls;
    if (!r)
        return;
    if (r->route == ENVD_ROUTE_RPC)
        connect_request_completed(r->cls);
    else if (r->route == ENVD_ROUTE_FILES)
        envd_files_request_completed(r->cls);
    buf_release(&r->body);
    free(r);
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

int envd_server_start(const char *addr, struct envd_server **ret, struct error_record *err)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    if (net_parse_address(addr, &ss, &slen) < 0)
        return error_set(err, EINVAL, "invalid listen address '%s' (want HOST:PORT)", addr);
    unsigned flags =
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY_LIMIT,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!d)
        return error_set(err, EADDRNOTAVAIL, "cannot listen on %s", addr);
    struct envd_server *s = xcalloc(1, sizeof(*s));
    s->daemon = d;
    *ret = s;
    return 0;
}

void envd_server_stop(struct envd_server *s)
{
    if (!s)
        return;
    connect_shutdown();
    MHD_stop_daemon(s->daemon);
    free(s);
}
