/* The gateway inside a real `hutch serve` listener, forwarding to a real HTTP server (an
 * in-process libmicrohttpd upstream standing in for envd), driven by libcurl as a client. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api.h"
#include "common/crypto.h"
#include "tap.h"

/* ---- upstream ---- */

static int release_pipe[2]; /* /stream's last chunk waits for a byte on it */

struct upload {
    struct sha256_stream *sha;
    size_t size;
};

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    static const char *parts[] = { "first,", "second" };
    size_t i = (size_t)(uintptr_t)cls;
    (void)i;
    if (pos == 0) {
        memcpy(buf, parts[0], 6);
        return 6;
    }
    if (pos == 6) {
        char c;
        if (read(release_pipe[0], &c, 1) != 1)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        memcpy(buf, parts[1], 6);
        return 6;
    }
    return MHD_CONTENT_READER_END_OF_STREAM;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "X-Upstream", "yes");
    MHD_add_response_header(r, "Connection", "close-me-not"); /* hop-by-hop: must not pass */
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result upstream(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                const char *version, const char *data, size_t *size, void **req_cls)
{
    if (!*req_cls) {
        struct upload *u = calloc(1, sizeof(*u));
        u->sha = sha256_stream_new();
        *req_cls = u;
        return MHD_YES;
    }
    struct upload *u = *req_cls;
    if (*size) {
        sha256_stream_update(u->sha, data, *size);
        u->size += *size;
        *size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/echo") == 0) {
        unsigned char d[SHA256_LEN];
        sha256_stream_final(u->sha, d);
        u->sha = NULL;
        char hex[2 * SHA256_LEN + 1];
        sha256_to_hex(d, hex);
        const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "path");
        const char *tok = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Access-Token");
        const char *sid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "E2b-Sandbox-Id");
        json_t *j =
            json_pack("{s:s, s:I, s:s, s:s?, s:s?, s:b}", "method", method, "size", (json_int_t)u->size,
                      "sha256", hex, "path", q, "token", tok, "routing_header_seen", sid != NULL);
        char *s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        enum MHD_Result ret = respond_text(c, 200, s);
        free(s);
        return ret;
    }
    if (strcmp(url, "/stream") == 0) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64, stream_cb, NULL, NULL);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(url, "/empty") == 0)
        return respond_text(c, 200, "");
    if (strcmp(url, "/nocontent") == 0) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        enum MHD_Result ret = MHD_queue_response(c, 204, r);
        MHD_destroy_response(r);
        return ret;
    }
    return respond_text(c, 404, "{\"code\":404}");
}

static void upstream_done(void *cls, struct MHD_Connection *c, void **req_cls,
                          enum MHD_RequestTerminationCode t)
{
    struct upload *u = *req_cls;
    if (u && u->sha) {
        unsigned char d[SHA256_LEN];
        sha256_stream_final(u->sha, d);
    }
    free(u);
    *req_cls = NULL;
}

static uint16_t upstream_port;
static char port_header[64];

static void start_upstream(void)
{
    ASSERT_EQ(pipe(release_pipe), 0);
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                         upstream, NULL, MHD_OPTION_NOTIFY_COMPLETED, upstream_done, NULL, MHD_OPTION_END);
    ASSERT_TRUE(d != NULL);
    upstream_port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    snprintf(port_header, sizeof(port_header), "E2b-Sandbox-Port: %u", (unsigned)upstream_port);
}

/* The sandbox connector. The test's "sandboxes" share the host's netns, so the socket is a
 * plain one; the ports the requests name are the upstream's (see to_up) or a closed one. */
static int connector(void *userdata, const char *id, uint16_t port, struct error_record *err)
{
    if (strcmp(id, "up") != 0 && strcmp(id, "closed") != 0)
        return error_set(err, ENOENT, "no sandbox %s", id);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return error_set_errno(err, errno, "socket");
    return fd;
}

static uint16_t start_gateway(void)
{
    start_upstream();
    char dir[] = "/tmp/hutch-test-gw-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    struct api_config cfg = {
        .listen = "127.0.0.1:0",
        .state_dir = strdup(dir),
        .domain = "sbx.test",
        .sandbox_connect = connector,
    };
    struct api_server *s;
    struct error_record err = { 0 };
    if (api_server_start(&cfg, &s, &err) < 0)
        tap_fail(__FILE__, __LINE__, "api_server_start: %s", err.msg);
    return api_server_port(s);
}

/* ---- client ---- */

struct reply {
    long status;
    char body[65536];
    size_t len;
    char headers[8192];
    size_t hlen;
    int release_after_first; /* write to release_pipe once some body arrived */
};

static size_t on_body(char *p, size_t s, size_t n, void *ud)
{
    struct reply *r = ud;
    size_t k = s * n;
    if (r->len + k >= sizeof(r->body))
        return 0;
    memcpy(r->body + r->len, p, k);
    r->len += k;
    r->body[r->len] = '\0';
    if (r->release_after_first) {
        r->release_after_first = 0;
        ASSERT_EQ(write(release_pipe[1], "x", 1), 1);
    }
    return k;
}

static size_t on_hdr(char *p, size_t s, size_t n, void *ud)
{
    struct reply *r = ud;
    size_t k = s * n;
    if (r->hlen + k < sizeof(r->headers)) {
        memcpy(r->headers + r->hlen, p, k);
        r->hlen += k;
        r->headers[r->hlen] = '\0';
    }
    return k;
}

struct upload_src {
    size_t left;
    struct sha256_stream *sha;
};

static size_t on_read(char *p, size_t s, size_t n, void *ud)
{
    struct upload_src *u = ud;
    size_t k = s * n < u->left ? s * n : u->left;
    for (size_t i = 0; i < k; i++)
        p[i] = (char)((u->left - i) * 7);
    sha256_stream_update(u->sha, p, k);
    u->left -= k;
    return k;
}

static void request(uint16_t port, const char *method, const char *path, const char *const *headers,
                    struct upload_src *up, struct reply *r)
{
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_hdr);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    struct curl_slist *h = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (up) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, up);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        tap_fail(__FILE__, __LINE__, "request %s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

/* Fails with the body in the message, which says why the gateway answered what it did. */
#define ASSERT_STATUS(r, want)                                                                               \
    do {                                                                                                     \
        if ((r).status != (want))                                                                            \
            tap_fail(__FILE__, __LINE__, "status %ld, expected %d: %s", (r).status, (want), (r).body);       \
    } while (0)

static const char *to_up[] = { "E2b-Sandbox-Id: up", port_header, "X-Access-Token: tok", NULL };

TEST(forwards_request_and_response)
{
    uint16_t port = start_gateway();
    struct reply r = { 0 };
    request(port, "GET", "/echo?path=%2Fhome%2Fuser%2Fa%20b.txt", to_up, NULL, &r);
    ASSERT_STATUS(r, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    ASSERT_TRUE(j != NULL);
    ASSERT_STREQ(json_string_value(json_object_get(j, "method")), "GET");
    ASSERT_STREQ(json_string_value(json_object_get(j, "path")), "/home/user/a b.txt");
    ASSERT_STREQ(json_string_value(json_object_get(j, "token")), "tok");
    ASSERT_TRUE(json_is_false(json_object_get(j, "routing_header_seen")));
    ASSERT_TRUE(strstr(r.headers, "X-Upstream: yes") != NULL);
    ASSERT_TRUE(strstr(r.headers, "close-me-not") == NULL);
    json_decref(j);
}

TEST(streams_a_large_chunked_upload)
{
    uint16_t port = start_gateway();
    struct upload_src up = { .left = 24u << 20, .sha = sha256_stream_new() };
    struct reply r = { 0 };
    request(port, "POST", "/echo", to_up, &up, &r);
    ASSERT_STATUS(r, 200);
    unsigned char d[SHA256_LEN];
    sha256_stream_final(up.sha, d);
    char hex[2 * SHA256_LEN + 1];
    sha256_to_hex(d, hex);
    json_t *j = json_loads(r.body, 0, NULL);
    ASSERT_EQ(json_integer_value(json_object_get(j, "size")), 24 << 20);
    ASSERT_STREQ(json_string_value(json_object_get(j, "sha256")), hex);
    json_decref(j);
}

TEST(response_is_streamed_before_upstream_finishes)
{
    /* The upstream sends its second part only after the client has received the first: if
     * the gateway buffered the response, this would hang (and time out). */
    uint16_t port = start_gateway();
    struct reply r = { .release_after_first = 1 };
    request(port, "GET", "/stream", to_up, NULL, &r);
    ASSERT_STATUS(r, 200);
    ASSERT_STREQ(r.body, "first,second");
}

TEST(empty_bodies_keep_their_framing)
{
    uint16_t port = start_gateway();
    struct reply r = { 0 };
    request(port, "GET", "/empty", to_up, NULL, &r);
    ASSERT_STATUS(r, 200);
    ASSERT_TRUE(strstr(r.headers, "Content-Length: 0") != NULL);
    struct reply r2 = { 0 };
    request(port, "POST", "/nocontent", to_up, NULL, &r2);
    ASSERT_STATUS(r2, 204);
}

TEST(unknown_sandbox_and_closed_port_are_502)
{
    uint16_t port = start_gateway();
    const char *missing[] = { "E2b-Sandbox-Id: gone", "E2b-Sandbox-Port: 49983", NULL };
    struct reply r = { 0 };
    request(port, "GET", "/health", missing, NULL, &r);
    ASSERT_STATUS(r, 502);
    json_t *j = json_loads(r.body, 0, NULL);
    ASSERT_EQ(json_integer_value(json_object_get(j, "code")), 502);
    ASSERT_STREQ(json_string_value(json_object_get(j, "sandboxId")), "gone");
    json_decref(j);

    const char *closed[] = { "E2b-Sandbox-Id: closed", "E2b-Sandbox-Port: 1", NULL };
    struct reply r2 = { 0 };
    request(port, "GET", "/", closed, NULL, &r2);
    ASSERT_STATUS(r2, 502);
    ASSERT_TRUE(strstr(r2.body, "port is not open") != NULL);
}

TEST(host_routing_reaches_the_sandbox)
{
    uint16_t port = start_gateway();
    char host[64];
    snprintf(host, sizeof(host), "Host: %u-up.sbx.test", (unsigned)upstream_port);
    const char *h[] = { host, NULL };
    struct reply r = { 0 };
    request(port, "GET", "/echo", h, NULL, &r);
    ASSERT_STATUS(r, 200);
    ASSERT_TRUE(strstr(r.body, "\"method\":\"GET\"") != NULL);
}

TEST(internal_routes_are_refused)
{
    uint16_t port = start_gateway();
    const char *envd[] = { "E2b-Sandbox-Id: up", "E2b-Sandbox-Port: 49983", NULL };
    struct reply r = { 0 };
    request(port, "POST", "/init", envd, NULL, &r);
    ASSERT_STATUS(r, 403);
    struct reply r2 = { 0 };
    request(port, "POST", "/%69nit", envd, NULL, &r2);
    ASSERT_STATUS(r2, 403);
}

TEST(half_routed_is_400_and_control_plane_unaffected)
{
    uint16_t port = start_gateway();
    const char *h[] = { "E2b-Sandbox-Id: up", NULL };
    struct reply r = { 0 };
    request(port, "GET", "/health", h, NULL, &r);
    ASSERT_STATUS(r, 400);
    struct reply r2 = { 0 };
    request(port, "GET", "/health", NULL, NULL, &r2);
    ASSERT_STATUS(r2, 200);
    ASSERT_STREQ(r2.body, "Health check successful");
}

TEST(connections_are_reused)
{
    uint16_t port = start_gateway();
    for (int i = 0; i < 20; i++) {
        struct reply r = { 0 };
        request(port, "GET", "/echo", to_up, NULL, &r);
        ASSERT_STATUS(r, 200);
    }
}
