/* See http-get.h. interpd's only HTTP client: it used libcurl for this one GET, which brought
 * some twenty more shared objects (TLS, Kerberos, LDAP, SSH, ...) into every sandbox's interpd,
 * each with its relocated pages private to the process (about 0.5 MiB per sandbox). */
#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "interpd/http-get.h"
#include "common/banned.h"

#define REQUEST_MAX 4096

struct answer {
    struct buf *body;
    bool too_long;
    bool complete;
};

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct answer *a = p->data;
    if (buf_append(a->body, at, len) < 0) {
        a->too_long = true;
        return 1;
    }
    return 0;
}

static int on_complete(http_parser *p)
{
    struct answer *a = p->data;
    a->complete = true;
    return 0;
}

/* Milliseconds left until deadline (CLOCK_MONOTONIC usec), at least 0. */
static int ms_left(usec_t deadline)
{
    usec_t now = now_usec(CLOCK_MONOTONIC);
    return now >= deadline ? 0 : (int)((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
}

/* Waits for events on fd until deadline: 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, usec_t deadline)
{
    for (;;) {
        struct pollfd pf = { .fd = fd, .events = events };
        int n = poll(&pf, 1, ms_left(deadline));
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int connect_one(const struct addrinfo *ai, usec_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        r = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, deadline) : -errno;
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            r = -errno;
        else if (r == 0 && soerr)
            r = -soerr;
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

static int open_connection(const char *host, unsigned port, usec_t deadline, struct error_record *err)
{
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *ais = NULL;
    int g = getaddrinfo(host, service, &hints, &ais);
    if (g != 0)
        return error_set(err, g == EAI_SYSTEM ? errno : EHOSTUNREACH, "%s: %s", host, gai_strerror(g));
    int r = -EHOSTUNREACH;
    for (const struct addrinfo *ai = ais; ai; ai = ai->ai_next) {
        r = connect_one(ai, deadline);
        if (r >= 0 || r == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(ais);
    if (r < 0)
        return error_set(err, -r, "%s port %u: %s", host, port, strerror(-r));
    return r;
}

static int send_all(int fd, const char *data, size_t len, usec_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r < 0)
                return r;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Copies field f of u (from url) into out; false when it does not fit. */
static bool url_field(const char *url, const struct http_parser_url *u, enum http_parser_url_fields f,
                      char *out, size_t size)
{
    size_t len = (u->field_set & (1u << f)) ? u->field_data[f].len : 0;
    if (len >= size)
        return false;
    memcpy(out, url + u->field_data[f].off, len);
    out[len] = '\0';
    return true;
}

/* The request head for url, or NULL when url or header is not acceptable. */
static char *request_head(const char *url, const char *header, char *host, size_t host_size, unsigned *port)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    char schema[8], path[REQUEST_MAX / 2], query[REQUEST_MAX / 4];
    if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 ||
        !url_field(url, &u, UF_SCHEMA, schema, sizeof(schema)) || strcmp(schema, "http") != 0 ||
        !url_field(url, &u, UF_HOST, host, host_size) || !host[0] ||
        !url_field(url, &u, UF_PATH, path, sizeof(path)) ||
        !url_field(url, &u, UF_QUERY, query, sizeof(query)) || (u.field_set & (1u << UF_USERINFO)))
        return NULL;
    if (header && (strpbrk(header, "\r\n") || !strchr(header, ':') || strlen(header) > REQUEST_MAX / 4))
        return NULL;
    *port = (u.field_set & (1u << UF_PORT)) ? u.port : 80;
    bool v6 = strchr(host, ':') != NULL;
    return xasprintf("GET %s%s%s HTTP/1.1\r\nHost: %s%s%s:%u\r\n%s%sConnection: close\r\n\r\n",
                     path[0] ? path : "/", query[0] ? "?" : "", query, v6 ? "[" : "", host, v6 ? "]" : "",
                     *port, header ? header : "", header ? "\r\n" : "");
}

int http_get(const char *url, const char *header, int timeout_ms, unsigned *ret_status, struct buf *body,
             struct error_record *err)
{
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + (usec_t)timeout_ms * USEC_PER_MSEC;
    char host[256];
    unsigned port;
    _cleanup_free_ char *head = request_head(url, header, host, sizeof(host), &port);
    if (!head)
        return error_set(err, EINVAL, "%s: not an http:// URL with a host (or a bad header)", url);
    _cleanup_close_ int fd = open_connection(host, port, deadline, err);
    if (fd < 0)
        return fd;
    int r = send_all(fd, head, strlen(head), deadline);
    if (r < 0)
        return error_set(err, -r, "%s: sending the request: %s", url, strerror(-r));

    struct answer a = { .body = body };
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &a;
    const http_parser_settings settings = { .on_body = on_body, .on_message_complete = on_complete };
    while (!a.complete) {
        char in[8192];
        ssize_t n = recv(fd, in, sizeof(in), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            r = errno == EAGAIN ? wait_fd(fd, POLLIN, deadline) : 0;
            if (r < 0)
                return error_set(err, -r, "%s: waiting for the answer: %s", url, strerror(-r));
            continue;
        }
        if (n < 0)
            return error_set(err, errno, "%s: reading the answer: %s", url, strerror(errno));
        /* n == 0 tells the parser the connection closed (the end of a body without a length). */
        size_t used = http_parser_execute(&p, &settings, in, (size_t)n);
        if (a.too_long)
            return error_set(err, ENOBUFS, "%s: the answer's body is longer than %zu bytes", url, body->max);
        if (!a.complete && (HTTP_PARSER_ERRNO(&p) != HPE_OK || used != (size_t)n))
            return error_set(err, EBADMSG, "%s: not an HTTP answer: %s", url,
                             http_errno_description(HTTP_PARSER_ERRNO(&p)));
        if (n == 0 && !a.complete)
            return error_set(err, EBADMSG, "%s: the connection closed before the answer ended", url);
    }
    *ret_status = p.status_code;
    return 0;
}
