/* See orchestrator-internal.h: the control plane's own calls to envd inside a sandbox (health
 * while it starts, /init), over a socket the runtime makes in the sandbox's netns. These calls
 * never pass through the gateway, which refuses /init. */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "common/banned.h"

#define ENVD_URL "http://127.0.0.1:49983"
#define RESPONSE_MAX (64u << 10)

struct call {
    const struct runtime_ops *rt;
    struct runtime_sandbox *sb;
    int presock; /* a socket made earlier in the sandbox's netns, handed to curl; -1: none */
    struct error_record socket_err;
    struct buf response;
};

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct call *c = clientp;
    if (c->presock >= 0) {
        int fd = c->presock;
        c->presock = -1;
        return fd;
    }
    int fd = c->rt->socket(c->sb, &c->socket_err);
    return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
    struct call *c = userdata;
    return buf_append(&c->response, p, size * n) < 0 ? 0 : size * n;
}

/* One envd connection: a curl handle, reused so that its keep-alive connection is too. */
struct orch_envd_conn {
    struct call c;
    CURL *easy;
};

static struct orch_envd_conn *conn_new(const struct runtime_ops *rt, struct runtime_sandbox *sb, int presock)
{
    struct orch_envd_conn *k = xcalloc(1, sizeof(*k));
    k->c = (struct call){ .rt = rt, .sb = sb, .presock = presock };
    buf_init(&k->c.response, RESPONSE_MAX);
    k->easy = curl_easy_init();
    if (!k->easy)
        abort();
    curl_easy_setopt(k->easy, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(k->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(k->easy, CURLOPT_OPENSOCKETDATA, &k->c);
    curl_easy_setopt(k->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(k->easy, CURLOPT_WRITEDATA, &k->c);
    curl_easy_setopt(k->easy, CURLOPT_NOSIGNAL, 1L);
    return k;
}

void orch_envd_conn_free(struct orch_envd_conn *k)
{
    if (!k)
        return;
    curl_easy_cleanup(k->easy);
    buf_release(&k->c.response);
    /* Never handed to curl (it failed before connecting): ours to close. */
    safe_close(k->c.presock);
    free(k);
}

static int conn_request(struct orch_envd_conn *k, const char *method, const char *path, const char *body,
                        const char *token, long timeout_ms, long *ret_status, struct error_record *err)
{
    CURL *e = k->easy;
    buf_reset(&k->c.response);
    error_clear(&k->c.socket_err);
    _cleanup_free_ char *url = xasprintf(ENVD_URL "%s", path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    _cleanup_free_ char *token_header = token ? xasprintf("X-Access-Token: %s", token) : NULL;
    if (token_header)
        h = curl_slist_append(h, token_header);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(e);
    int r = 0;
    if (rc != CURLE_OK)
        r = error_set(err, rc == CURLE_COULDNT_CONNECT ? ECONNREFUSED : EIO, "envd %s %s: %s%s%s", method,
                      path, curl_easy_strerror(rc), k->c.socket_err.errnum ? ": " : "", k->c.socket_err.msg);
    else
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, ret_status);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    return r;
}

static int request(const struct runtime_ops *rt, struct runtime_sandbox *sb, int presock, const char *method,
                   const char *path, const char *body, const char *token, long timeout_ms, long *ret_status,
                   struct error_record *err)
{
    struct orch_envd_conn *k = conn_new(rt, sb, presock);
    int r = conn_request(k, method, path, body, token, timeout_ms, ret_status, err);
    orch_envd_conn_free(k);
    return r;
}

int orch_envd_wait_healthy(const struct runtime_ops *rt, struct runtime_sandbox *sb, usec_t timeout,
                           struct error_record *err)
{
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
    struct error_record last = { 0 };
    for (;;) {
        long status = 0;
        error_clear(&last);
        if (request(rt, sb, -1, "GET", "/health", NULL, NULL, 1000, &status, &last) == 0 && status == 204)
            return 0;
        if (now_usec(CLOCK_MONOTONIC) >= deadline)
            return error_set(err, ETIMEDOUT, "envd did not become healthy: %s",
                             last.errnum ? last.msg : "unexpected status");
        /* envd binds within milliseconds of exec; poll briskly. */
        struct timespec ts = { 0, 2 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

int orch_envd_init(const struct runtime_ops *rt, struct runtime_sandbox *sb, int presock, const json_t *body,
                   const char *current_token, struct error_record *err)
{
    _cleanup_free_ char *s = json_dump_compact(body, NULL);
    long status = 0;
    int r = request(rt, sb, presock, "POST", "/init", s, current_token, 5000, &status, err);
    if (r < 0)
        return r;
    if (status != 204 && status != 200)
        return error_set(err, EIO, "envd /init answered %ld", status);
    return 0;
}

int orch_envd_conn_open(const struct runtime_ops *rt, struct runtime_sandbox *sb, struct orch_envd_conn **ret,
                        struct error_record *err)
{
    struct orch_envd_conn *k = conn_new(rt, sb, -1);
    long status = 0;
    int r = conn_request(k, "GET", "/health", NULL, NULL, 5000, &status, err);
    if (r >= 0 && status != 204)
        r = error_set(err, EIO, "envd /health answered %ld", status);
    if (r < 0) {
        orch_envd_conn_free(k);
        return r;
    }
    *ret = k;
    return 0;
}

int orch_envd_conn_init(struct orch_envd_conn *k, const json_t *body, const char *current_token,
                        struct error_record *err)
{
    _cleanup_free_ char *s = json_dump_compact(body, NULL);
    long status = 0;
    int r = conn_request(k, "POST", "/init", s, current_token, 5000, &status, err);
    if (r < 0)
        return r;
    if (status != 204 && status != 200)
        return error_set(err, EIO, "envd /init answered %ld", status);
    return 0;
}
