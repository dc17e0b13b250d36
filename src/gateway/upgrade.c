/* See gateway.h: requests that ask to switch protocols (WebSocket, mostly) are passed through
 * as bytes. The gateway sends the request head to the sandbox's port itself, reads the
 * answer's head with http-parser (libhttp-parser, Debian's packaged parser), and on 101 asks
 * libmicrohttpd for the client's raw socket and copies bytes both ways until either side
 * closes. Any other answer (a 400 from the user's server, say) is relayed as an ordinary
 * response, its body read up to UPGRADE_BODY_MAX. */
#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/http-util.h"
#include "common/xalloc.h"
#include "gateway/gateway-internal.h"
#include "common/banned.h"

#define HEAD_MAX (32u << 10)
#define UPGRADE_BODY_MAX (64u << 10)
#define UPSTREAM_TIMEOUT_MS 30000
#define MAX_HEADERS 64

struct answer {
    unsigned status;
    char *names[MAX_HEADERS];
    char *values[MAX_HEADERS];
    size_t n;
    bool in_value;
    bool too_many;
    bool head_done;
    bool complete;
    struct buf body;
};

static int on_field(http_parser *p, const char *at, size_t len)
{
    struct answer *a = p->data;
    if (a->in_value || a->n == 0) {
        if (a->n == MAX_HEADERS) {
            a->too_many = true;
            return 1;
        }
        a->names[a->n] = xstrdup("");
        a->values[a->n] = xstrdup("");
        a->n++;
        a->in_value = false;
    }
    char **name = &a->names[a->n - 1];
    size_t old = strlen(*name);
    *name = xrealloc(*name, old + len + 1);
    memcpy(*name + old, at, len);
    (*name)[old + len] = '\0';
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct answer *a = p->data;
    a->in_value = true;
    char **value = &a->values[a->n - 1];
    size_t old = strlen(*value);
    *value = xrealloc(*value, old + len + 1);
    memcpy(*value + old, at, len);
    (*value)[old + len] = '\0';
    return 0;
}

static int on_head_done(http_parser *p)
{
    struct answer *a = p->data;
    a->status = p->status_code;
    a->head_done = true;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct answer *a = p->data;
    buf_append(&a->body, at, len); /* beyond the cap the rest is dropped */
    return 0;
}

static int on_complete(http_parser *p)
{
    ((struct answer *)p->data)->complete = true;
    return 0;
}

static void answer_release(struct answer *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->names[i]);
        free(a->values[i]);
    }
    buf_release(&a->body);
}

struct head {
    struct buf buf;
    const char *host; /* the masked Host, or NULL */
};

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
    struct head *h = cls;
    if (gw_header_is_own(name) || (h->host && strcasecmp(name, "X-Forwarded-Host") == 0))
        return MHD_YES;
    bool host = h->host && strcasecmp(name, "Host") == 0;
    buf_printf(&h->buf, "%s: %s\r\n", host ? "X-Forwarded-Host" : name, value ? value : "");
    return MHD_YES;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

struct splice {
    int upstream;
    struct buf pending; /* upstream bytes read past the 101 head */
};

/* Copies from one fd to the other; false when the source closed or failed. */
static bool pump(int from, int to)
{
    char buf[65536];
    ssize_t n = recv(from, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    return write_all(to, buf, (size_t)n) == 0;
}

static void on_upgraded(void *cls, struct MHD_Connection *conn, void *req_cls, const char *extra_in,
                        size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct splice *s = cls;
    /* Thread-per-connection mode: this thread is the connection's own, so it may block here
     * for the life of the upgraded stream. */
    bool ok = write_all(sock, s->pending.data ? s->pending.data : "", s->pending.len) == 0 &&
              write_all(s->upstream, extra_in ? extra_in : "", extra_in_size) == 0;
    while (ok) {
        struct pollfd p[2] = { { .fd = sock, .events = POLLIN }, { .fd = s->upstream, .events = POLLIN } };
        if (poll(p, 2, -1) < 0) {
            ok = errno == EINTR;
            continue;
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
            ok = pump(sock, s->upstream);
        if (ok && p[1].revents & (POLLIN | POLLHUP | POLLERR))
            ok = pump(s->upstream, sock);
    }
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
    close(s->upstream);
    buf_release(&s->pending);
    free(s);
}

static bool hop(const char *name)
{
    return strcasecmp(name, "Connection") == 0 || strcasecmp(name, "Keep-Alive") == 0 ||
           strcasecmp(name, "Transfer-Encoding") == 0 || strcasecmp(name, "Content-Length") == 0;
}

enum MHD_Result gw_upgrade(struct gw *gw, const struct gw_target *t, struct MHD_Connection *conn,
                           const char *raw_uri, const char *method, const char *host)
{
    struct error_record err = { 0 };
    _cleanup_close_ int fd = gw_open_upstream(gw, t, &err);
    if (fd < 0)
        return gw_queue_502(gw, conn, t, fd, err.msg);

    struct head head = { .host = host };
    buf_init(&head.buf, HEAD_MAX);
    buf_printf(&head.buf, "%s %s HTTP/1.1\r\n", method, raw_uri);
    if (host)
        buf_printf(&head.buf, "Host: %s\r\n", host);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header, &head);
    int r = buf_append_str(&head.buf, "\r\n");
    if (r >= 0)
        r = write_all(fd, head.buf.data, head.buf.len);
    buf_release(&head.buf);
    if (r < 0)
        return gw_queue_502(gw, conn, t, 0, "could not send the upgrade request");

    struct answer a = { 0 };
    buf_init(&a.body, UPGRADE_BODY_MAX);
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &a;
    http_parser_settings set = { .on_header_field = on_field,
                                 .on_header_value = on_value,
                                 .on_headers_complete = on_head_done,
                                 .on_body = on_body,
                                 .on_message_complete = on_complete };
    struct buf rest; /* bytes after the head of a 101 */
    buf_init(&rest, HEAD_MAX);
    size_t seen = 0;
    enum MHD_Result ret;
    for (;;) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        char in[8192];
        ssize_t n = poll(&pf, 1, UPSTREAM_TIMEOUT_MS) > 0 ? recv(fd, in, sizeof(in), 0) : -1;
        size_t used = http_parser_execute(&p, &set, in, n > 0 ? (size_t)n : 0);
        seen += n > 0 ? (size_t)n : 0;
        if (a.too_many || seen > HEAD_MAX + UPGRADE_BODY_MAX ||
            (HTTP_PARSER_ERRNO(&p) != HPE_OK && !p.upgrade)) {
            ret = gw_queue_502(gw, conn, t, 0, "malformed answer to an upgrade");
            goto out;
        }
        if (p.upgrade && a.head_done) {
            if (n > 0)
                buf_append(&rest, in + used, (size_t)n - used);
            break;
        }
        if (a.complete || n <= 0)
            break;
    }
    if (!a.head_done) {
        ret = gw_queue_502(gw, conn, t, 0, "no answer to an upgrade");
        goto out;
    }

    struct MHD_Response *resp;
    if (a.status == 101 && p.upgrade) {
        struct splice *s = xcalloc(1, sizeof(*s));
        s->upstream = TAKE_FD(fd);
        s->pending = rest;
        rest = (struct buf){ 0 };
        resp = MHD_create_response_for_upgrade(on_upgraded, s);
        if (!resp) {
            close(s->upstream);
            buf_release(&s->pending);
            free(s);
        }
    } else {
        resp = MHD_create_response_from_buffer(a.body.len, a.body.data, MHD_RESPMEM_MUST_COPY);
    }
    for (size_t i = 0; resp && i < a.n; i++)
        if (!hop(a.names[i]))
            MHD_add_response_header(resp, a.names[i], a.values[i]);
    ret = resp ? MHD_queue_response(conn, a.status, resp) : MHD_NO;
    if (resp)
        MHD_destroy_response(resp);
out:
    buf_release(&rest);
    answer_release(&a);
    return ret;
}
