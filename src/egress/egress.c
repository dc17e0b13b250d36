/* See egress.h. One accept thread; one detached thread per proxied connection (each bounded in
 * time until its name is known, and in number per sandbox and in all). A connection is linked
 * into its sandbox's list while its fds are open: forget shuts them down under the lock, and a
 * connection thread unlinks itself under the lock before it closes them, so an fd number is
 * never shut down after it was reused. */
#include "egress/egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/netfilter_ipv4.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/net-util.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define PIN_MAX_ADDRS 8
#define RESOLVE_MAX_ADDRS 16
#define RELAY_BUF (64u * 1024) /* the default pipe capacity */
#define CONN_STACK (256u * 1024)
#define FORGET_WAIT_MS 5000
#define HOST_MAX_ADDRS 256

struct pin {
    char name[254];
    struct sockaddr_storage addrs[PIN_MAX_ADDRS];
    size_t n;
};

struct sbx;

/* One direction of the relay: from -> pipe -> to, by splice (no copy through user space); at
 * most a pipe's capacity (RELAY_BUF) is in flight. */
struct half {
    int from, to;
    int pipe[2];
    size_t len; /* bytes in the pipe */
    bool eof, shut;
};

struct conn {
    struct conn *prev, *next;
    struct egress *e;
    struct sbx *sb;
    int client, upstream;
    unsigned char head[EGRESS_HEAD_MAX];
    struct half up, down;
};

struct sbx {
    struct sbx *next;
    char id[64];
    uint32_t ip;
    char **domains;
    uint16_t tls_ports[EGRESS_MAX_TLS_PORTS + 1]; /* 0-terminated */
    unsigned conns, refs;
    bool gone;
    struct conn *list;
};

struct egress {
    int listen_fd, stop_fd;
    uint16_t port;
    bool thread_started;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct sbx *sandboxes;
    unsigned total, max_per;
    uint64_t proxied, refused, unreachable; /* under lock */
    uint32_t pool_net, pool_mask;           /* host order */
    struct pin *pins;
    size_t n_pins;
    /* The host's own addresses, read again at most once a second (getifaddrs is a netlink
     * dump: most of a proxied connection's set-up cost otherwise). */
    pthread_mutex_t host_lock;
    usec_t host_at;
    struct sockaddr_storage host[HOST_MAX_ADDRS];
    size_t n_host;
};

static void strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

/* Caller holds the lock. */
static void sbx_unref(struct sbx *sb)
{
    if (--sb->refs > 0)
        return;
    strv_free(sb->domains);
    free(sb);
}

/* Caller holds the lock: unlinks sb from the table and shuts its connections down. */
static void sbx_remove(struct egress *e, struct sbx *sb)
{
    for (struct sbx **p = &e->sandboxes; *p; p = &(*p)->next)
        if (*p == sb) {
            *p = sb->next;
            break;
        }
    sb->gone = true;
    for (struct conn *c = sb->list; c; c = c->next) {
        shutdown(c->client, SHUT_RDWR);
        if (c->upstream >= 0)
            shutdown(c->upstream, SHUT_RDWR);
    }
}

static int parse_pin(const char *spec, struct pin *pins, size_t *n_pins, struct error_record *err)
{
    const char *colon = strchr(spec, ':');
    char name[254], addr[INET6_ADDRSTRLEN + 2];
    if (!colon || (size_t)(colon - spec) >= sizeof(name) || strlen(colon + 1) >= sizeof(addr))
        return error_set(err, EINVAL, "--egress-resolve wants NAME:ADDRESS, not \"%s\"", spec);
    memcpy(name, spec, (size_t)(colon - spec));
    name[colon - spec] = '\0';
    str_copy(addr, sizeof(addr), colon + 1);
    char norm[254];
    if (net_domain_normalize(name, norm, sizeof(norm)) < 0)
        return error_set(err, EINVAL, "--egress-resolve: \"%s\" is not a host name", name);
    size_t alen = strlen(addr);
    if (alen >= 2 && addr[0] == '[' && addr[alen - 1] == ']') {
        memmove(addr, addr + 1, alen - 2);
        addr[alen - 2] = '\0';
    }
    struct sockaddr_storage ss = { 0 };
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1)
        in4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1)
        in6->sin6_family = AF_INET6;
    else
        return error_set(err, EINVAL, "--egress-resolve: \"%s\" is not an IP address", addr);
    struct pin *p = NULL;
    for (size_t i = 0; i < *n_pins; i++)
        if (streq(pins[i].name, norm))
            p = &pins[i];
    if (!p) {
        p = &pins[(*n_pins)++];
        str_copy(p->name, sizeof(p->name), norm);
    }
    if (p->n == PIN_MAX_ADDRS)
        return error_set(err, E2BIG, "--egress-resolve: more than %d addresses for %s", PIN_MAX_ADDRS, norm);
    p->addrs[p->n++] = ss;
    return 0;
}

/* ---- one connection ---- */

static bool is_gone(struct conn *c)
{
    pthread_mutex_lock(&c->e->lock);
    bool gone = c->sb->gone;
    pthread_mutex_unlock(&c->e->lock);
    return gone;
}

/* What a redirected connection to port may be: 1 HTTP or TLS (80, 443), 2 TLS only (one of the
 * sandbox's TLS ports), 0 nothing (a port it no longer has). */
static int port_kind(struct conn *c, uint16_t port)
{
    if (port == 80 || port == 443)
        return 1;
    int kind = 0;
    pthread_mutex_lock(&c->e->lock);
    for (size_t i = 0; !c->sb->gone && c->sb->tls_ports[i] && !kind; i++)
        if (c->sb->tls_ports[i] == port)
            kind = 2;
    pthread_mutex_unlock(&c->e->lock);
    return kind;
}

static bool name_allowed(struct conn *c, const char *name)
{
    bool ok = false;
    pthread_mutex_lock(&c->e->lock);
    for (char **d = c->sb->domains; !c->sb->gone && d && *d && !ok; d++)
        ok = net_domain_match(*d, name);
    pthread_mutex_unlock(&c->e->lock);
    return ok;
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                  sizeof(struct in6_addr)) == 0;
}

/* Copies the host's addresses into out; -errno when they cannot be read (then nothing may be
 * connected to: the check would be blind). */
static int host_addresses(struct egress *e, struct sockaddr_storage *out, size_t *ret_n)
{
    pthread_mutex_lock(&e->host_lock);
    usec_t now = now_usec(CLOCK_MONOTONIC);
    int r = 0;
    if (e->host_at == 0 || now - e->host_at > USEC_PER_SEC) {
        struct ifaddrs *ifs = NULL;
        if (getifaddrs(&ifs) < 0) {
            r = -errno;
        } else {
            size_t n = 0;
            for (struct ifaddrs *i = ifs; i && n < HOST_MAX_ADDRS; i = i->ifa_next)
                if (i->ifa_addr &&
                    (i->ifa_addr->sa_family == AF_INET || i->ifa_addr->sa_family == AF_INET6)) {
                    memset(&e->host[n], 0, sizeof(e->host[n]));
                    memcpy(&e->host[n], i->ifa_addr,
                           i->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                             : sizeof(struct sockaddr_in6));
                    n++;
                }
            freeifaddrs(ifs);
            e->n_host = n;
            e->host_at = now;
        }
    }
    if (r == 0) {
        memcpy(out, e->host, e->n_host * sizeof(e->host[0]));
        *ret_n = e->n_host;
    }
    pthread_mutex_unlock(&e->host_lock);
    return r;
}

/* Never a destination: the always-blocked ranges, the sandbox pool, the host's own addresses. */
static bool destination_blocked(const struct egress *e, const struct sockaddr *sa,
                                const struct sockaddr_storage *host, size_t n_host)
{
    if (net_addr_blocked(sa))
        return true;
    if (sa->sa_family == AF_INET &&
        (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) & e->pool_mask) == e->pool_net)
        return true;
    for (size_t i = 0; i < n_host; i++)
        if (same_addr((const struct sockaddr *)&host[i], sa))
            return true;
    return false;
}

/* The addresses name resolves to that may be connected to: pins, else getaddrinfo. */
static size_t resolve(struct egress *e, const char *name, struct sockaddr_storage *out, size_t max)
{
    size_t n = 0, n_host = 0;
    struct sockaddr_storage *host = xmalloc(HOST_MAX_ADDRS * sizeof(*host));
    if (host_addresses(e, host, &n_host) < 0) {
        free(host);
        return 0;
    }
    for (size_t i = 0; i < e->n_pins; i++)
        if (streq(e->pins[i].name, name)) {
            for (size_t k = 0; k < e->pins[i].n && n < max; k++)
                if (!destination_blocked(e, (const struct sockaddr *)&e->pins[i].addrs[k], host, n_host))
                    out[n++] = e->pins[i].addrs[k];
            free(host);
            return n;
        }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    if (getaddrinfo(name, NULL, &hints, &res) == 0) {
        for (struct addrinfo *a = res; a && n < max; a = a->ai_next) {
            if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) || a->ai_addrlen > sizeof(out[0]) ||
                destination_blocked(e, a->ai_addr, host, n_host))
                continue;
            memset(&out[n], 0, sizeof(out[n]));
            memcpy(&out[n], a->ai_addr, a->ai_addrlen);
            n++;
        }
        freeaddrinfo(res);
    }
    free(host);
    return n;
}

static void send_all_nb(int fd, const char *data, size_t len, int timeout_ms)
{
    usec_t end = now_usec(CLOCK_MONOTONIC) + (usec_t)timeout_ms * 1000;
    while (len > 0) {
        ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
        if (w > 0) {
            data += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= end)
            return;
        struct pollfd p = { fd, POLLOUT, 0 };
        poll(&p, 1, (int)((end - now) / 1000) + 1);
    }
}

static void http_refuse(int fd, unsigned status, const char *reason, const char *msg)
{
    char resp[512];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 %u %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, reason, strlen(msg), msg);
    if (n > 0 && (size_t)n < sizeof(resp))
        send_all_nb(fd, resp, (size_t)n, 1000);
    /* Read what the client still sends (briefly, boundedly) before the close: closing with
     * unread data resets the connection, and the client would lose the answer. */
    shutdown(fd, SHUT_WR);
    char sink[4096];
    size_t drained = 0;
    usec_t end = now_usec(CLOCK_MONOTONIC) + USEC_PER_SEC;
    while (drained < 64 * 1024 && now_usec(CLOCK_MONOTONIC) < end) {
        struct pollfd p = { fd, POLLIN, 0 };
        ssize_t got;
        if (poll(&p, 1, 100) <= 0 || (got = recv(fd, sink, sizeof(sink), 0)) <= 0)
            break;
        drained += (size_t)got;
    }
}

/* Reads until the name is known; returns egress_sniff's result, or -ETIMEDOUT/-EIO. With
 * tls_only, bytes that do not start a TLS handshake record are -EPROTO before any parsing. */
static int read_head(int fd, unsigned char *buf, size_t *len, bool tls_only, bool *tls, char *name,
                     size_t size)
{
    usec_t end = now_usec(CLOCK_MONOTONIC) + (usec_t)EGRESS_FIRST_BYTES_TIMEOUT_MS * 1000;
    /* Each read parses everything so far again: a peer sending a byte at a time would make that
     * quadratic, so the head must come in at most EGRESS_HEAD_MAX_READS pieces. */
    for (unsigned reads = 0;; reads++) {
        if (tls_only && *len > 0 && buf[0] != EGRESS_TLS_HANDSHAKE_RECORD)
            return -EPROTO;
        int r = egress_sniff(buf, *len, tls, name, size);
        if (r != 0)
            return r;
        if (reads == EGRESS_HEAD_MAX_READS)
            return -E2BIG;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= end)
            return -ETIMEDOUT;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, (int)((end - now) / 1000) + 1) < 0 && errno != EINTR)
            return -EIO;
        ssize_t n = recv(fd, buf + *len, EGRESS_HEAD_MAX - *len, 0);
        if (n == 0)
            return -EIO;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -EIO;
        }
        *len += (size_t)n;
    }
}

/* Connects c->upstream (set under the lock, so that forget can shut it down) to sa. */
static int connect_upstream(struct conn *c, const struct sockaddr_storage *sa)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    pthread_mutex_lock(&c->e->lock);
    bool gone = c->sb->gone;
    if (!gone)
        c->upstream = fd;
    pthread_mutex_unlock(&c->e->lock);
    if (gone) {
        close(fd);
        return -ECONNABORTED;
    }
    socklen_t len = sa->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (connect(fd, (const struct sockaddr *)sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -errno;
    /* In slices: a shutdown does not wake a connect in progress, the gone flag does. */
    for (int waited = 0; waited < EGRESS_CONNECT_TIMEOUT_MS; waited += 200) {
        struct pollfd p = { fd, POLLOUT, 0 };
        int r = poll(&p, 1, 200);
        if (r > 0) {
            int soerr = 0;
            socklen_t l = sizeof(soerr);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
            return soerr ? -soerr : 0;
        }
        if (is_gone(c))
            return -ECONNABORTED;
    }
    return -ETIMEDOUT;
}

/* Moves bytes one way until that would block, at most 64 rounds so that one busy direction
 * does not starve the other (the sockets and the pipe are non-blocking); false on an error.
 * Writing right after a read saves a poll per pipeful. */
static bool pump(struct half *h)
{
    for (int round = 0; round < 64; round++) {
        bool progress = false;
        if (h->len < RELAY_BUF && !h->eof) {
            ssize_t n = splice(h->from, NULL, h->pipe[1], NULL, RELAY_BUF - h->len,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                h->len += (size_t)n;
                progress = true;
            } else if (n == 0) {
                h->eof = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                return false;
            }
        }
        if (h->len > 0) {
            ssize_t w = splice(h->pipe[0], NULL, h->to, NULL, h->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (w > 0) {
                h->len -= (size_t)w;
                progress = true;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                return false;
            }
        }
        if (!progress)
            break;
    }
    if (h->eof && h->len == 0 && !h->shut) {
        shutdown(h->to, SHUT_WR);
        h->shut = true;
    }
    return true;
}

static void relay(struct conn *c)
{
    int client = c->client, upstream = c->upstream;
    struct half *up = &c->up, *down = &c->down;
    up->from = down->to = client;
    up->to = down->from = upstream;
    if (pipe2(up->pipe, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(down->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return;
    for (;;) {
        if (up->shut && down->shut)
            return;
        struct pollfd p[2] = {
            { client, (short)((!up->eof && up->len < RELAY_BUF ? POLLIN : 0) | (down->len ? POLLOUT : 0)),
              0 },
            { upstream, (short)((!down->eof && down->len < RELAY_BUF ? POLLIN : 0) | (up->len ? POLLOUT : 0)),
              0 },
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        /* An error or hang-up on a side nothing waits to read from: nothing more can pass. */
        for (int i = 0; i < 2; i++)
            if ((p[i].revents & (POLLERR | POLLNVAL)) ||
                ((p[i].revents & POLLHUP) && !(p[i].events & POLLIN) && !(p[i].revents & POLLIN)))
                return;
        if (!pump(up) || !pump(down))
            return;
    }
}

enum outcome { PROXIED, REFUSED, UNREACHABLE };

static enum outcome serve_conn(struct conn *c)
{
    struct sockaddr_in orig, local;
    socklen_t l = sizeof(orig), ll = sizeof(local);
    /* Only connections nftables redirected: a direct one to the listener has no other
     * original destination than the listener itself. */
    if (getsockopt(c->client, SOL_IP, SO_ORIGINAL_DST, &orig, &l) < 0 || orig.sin_family != AF_INET ||
        getsockname(c->client, (struct sockaddr *)&local, &ll) < 0 ||
        (orig.sin_addr.s_addr == local.sin_addr.s_addr && orig.sin_port == local.sin_port))
        return REFUSED;
    int kind = port_kind(c, ntohs(orig.sin_port));
    if (kind == 0)
        return REFUSED;
    unsigned char *head = c->head;
    size_t len = 0;
    bool tls = false;
    char name[256];
    int r = read_head(c->client, head, &len, kind == 2, &tls, name, sizeof(name));
    if (r < 0) {
        if (!tls && kind == 1 && (r == -ENOENT || r == -E2BIG))
            http_refuse(c->client, 403, "Forbidden", "hutch: no allowed host name in this request\n");
        return REFUSED;
    }
    if (!name_allowed(c, name)) {
        if (!tls) {
            char msg[400];
            snprintf(msg, sizeof(msg), "hutch: %s is not in this sandbox's network.allowOut\n", name);
            http_refuse(c->client, 403, "Forbidden", msg);
        }
        return REFUSED;
    }
    struct sockaddr_storage addrs[RESOLVE_MAX_ADDRS];
    size_t n = resolve(c->e, name, addrs, RESOLVE_MAX_ADDRS);
    if (n == 0) {
        if (!tls)
            http_refuse(c->client, 502, "Bad Gateway", "hutch: the name resolves to no reachable address\n");
        return UNREACHABLE;
    }
    /* The sandbox's own choice of address only as a preference among the name's own. */
    struct sockaddr_storage *pick = &addrs[0];
    for (size_t i = 0; i < n; i++)
        if (same_addr((const struct sockaddr *)&addrs[i], (const struct sockaddr *)&orig))
            pick = &addrs[i];
    if (pick->ss_family == AF_INET)
        ((struct sockaddr_in *)pick)->sin_port = orig.sin_port;
    else
        ((struct sockaddr_in6 *)pick)->sin6_port = orig.sin_port;
    if (connect_upstream(c, pick) < 0) {
        if (!tls)
            http_refuse(c->client, 502, "Bad Gateway", "hutch: could not connect to the upstream\n");
        return UNREACHABLE;
    }
    send_all_nb(c->upstream, (const char *)head, len, EGRESS_CONNECT_TIMEOUT_MS);
    relay(c);
    return PROXIED;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    enum outcome o = serve_conn(c);
    struct egress *e = c->e;
    pthread_mutex_lock(&e->lock);
    if (o == PROXIED)
        e->proxied++;
    else if (o == REFUSED)
        e->refused++;
    else
        e->unreachable++;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->sb->list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->sb->conns--;
    sbx_unref(c->sb);
    e->total--;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
    close(c->client);
    if (c->upstream >= 0)
        close(c->upstream);
    for (int i = 0; i < 2; i++) {
        safe_close(c->up.pipe[i]);
        safe_close(c->down.pipe[i]);
    }
    free(c);
    return NULL;
}

/* Returns false when out of fds or memory: the caller backs off instead of spinning on a
 * listener that stays readable. */
static bool accept_one(struct egress *e)
{
    struct sockaddr_in peer;
    socklen_t pl = sizeof(peer);
    int fd = accept4(e->listen_fd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return errno != EMFILE && errno != ENFILE && errno != ENOBUFS && errno != ENOMEM;
    pthread_mutex_lock(&e->lock);
    struct sbx *sb = NULL;
    if (peer.sin_family == AF_INET)
        for (struct sbx *s = e->sandboxes; s && !sb; s = s->next)
            if (s->ip == peer.sin_addr.s_addr)
                sb = s;
    if (!sb || sb->conns >= e->max_per || e->total >= EGRESS_MAX_CONNS_TOTAL) {
        pthread_mutex_unlock(&e->lock);
        close(fd);
        return true;
    }
    struct conn *c = xmalloc(sizeof(*c));
    c->prev = NULL;
    c->next = sb->list;
    c->e = e;
    c->sb = sb;
    c->client = fd;
    c->upstream = -1;
    c->up = (struct half){ .pipe = { -1, -1 } };
    c->down = (struct half){ .pipe = { -1, -1 } };
    if (sb->list)
        sb->list->prev = c;
    sb->list = c;
    sb->conns++;
    sb->refs++;
    e->total++;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, CONN_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int r = pthread_create(&t, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        sb->list = c->next;
        if (c->next)
            c->next->prev = NULL;
        sb->conns--;
        sbx_unref(sb);
        e->total--;
        free(c);
        close(fd);
    }
    pthread_mutex_unlock(&e->lock);
    return r == 0;
}

static void *accept_main(void *arg)
{
    struct egress *e = arg;
    for (;;) {
        struct pollfd p[2] = { { e->listen_fd, POLLIN, 0 }, { e->stop_fd, POLLIN, 0 } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return NULL;
        if (p[1].revents)
            return NULL;
        if ((p[0].revents & POLLIN) && !accept_one(e)) {
            struct pollfd stop = { e->stop_fd, POLLIN, 0 };
            poll(&stop, 1, 100);
        }
    }
}

/* ---- the public face ---- */

int egress_new(const struct egress_config *cfg, struct egress **ret, struct error_record *err)
{
    struct egress *e = xcalloc(1, sizeof(*e));
    e->listen_fd = e->stop_fd = -1;
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->host_lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    e->max_per = cfg->max_conns_per_sandbox ? cfg->max_conns_per_sandbox : EGRESS_DEFAULT_MAX_CONNS;
    int r = 0;
    size_t n = 0;
    while (cfg->resolve && cfg->resolve[n])
        n++;
    if (n > EGRESS_MAX_RESOLVE) {
        r = error_set(err, E2BIG, "at most %d --egress-resolve entries", EGRESS_MAX_RESOLVE);
        goto fail;
    }
    e->pins = xcalloc(n ? n : 1, sizeof(*e->pins));
    for (size_t i = 0; i < n; i++)
        if ((r = parse_pin(cfg->resolve[i], e->pins, &e->n_pins, err)) < 0)
            goto fail;
    if (cfg->net_pool) {
        char ip[INET_ADDRSTRLEN];
        const char *slash = strchr(cfg->net_pool, '/');
        uint32_t prefix;
        struct in_addr a;
        if (!slash || (size_t)(slash - cfg->net_pool) >= sizeof(ip) || parse_uint32(slash + 1, &prefix) < 0 ||
            prefix > 32) {
            r = error_set(err, EINVAL, "invalid network pool \"%s\"", cfg->net_pool);
            goto fail;
        }
        memcpy(ip, cfg->net_pool, (size_t)(slash - cfg->net_pool));
        ip[slash - cfg->net_pool] = '\0';
        if (inet_pton(AF_INET, ip, &a) != 1) {
            r = error_set(err, EINVAL, "invalid network pool \"%s\"", cfg->net_pool);
            goto fail;
        }
        e->pool_mask = prefix ? (uint32_t)(0xffffffffull << (32 - prefix)) : 0;
        e->pool_net = ntohl(a.s_addr) & e->pool_mask;
    } else {
        e->pool_mask = 0xffffffffu; /* matches nothing but 0.0.0.0, which is blocked anyway */
    }
    /* Every host address: the redirect goes to the sandbox link's host end, one per slot. The
     * peer check in accept_one and SO_ORIGINAL_DST keep anyone else out. */
    e->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (e->listen_fd < 0) {
        r = error_set_errno(err, errno, "egress proxy socket");
        goto fail;
    }
    int one = 1;
    setsockopt(e->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(cfg->port) };
    socklen_t sl = sizeof(sa);
    if (bind(e->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(e->listen_fd, 512) < 0 ||
        getsockname(e->listen_fd, (struct sockaddr *)&sa, &sl) < 0) {
        r = error_set_errno(err, errno, "egress proxy listener on port %u", (unsigned)cfg->port);
        goto fail;
    }
    e->port = ntohs(sa.sin_port);
    e->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (e->stop_fd < 0) {
        r = error_set_errno(err, errno, "eventfd");
        goto fail;
    }
    r = pthread_create(&e->thread, NULL, accept_main, e);
    if (r != 0) {
        r = error_set_errno(err, r, "egress proxy thread");
        goto fail;
    }
    e->thread_started = true;
    *ret = e;
    return 0;
fail:
    egress_free(e);
    return r;
}

uint16_t egress_port(const struct egress *e)
{
    return e->port;
}

static struct sbx *find_id(struct egress *e, const char *id)
{
    for (struct sbx *s = e->sandboxes; s; s = s->next)
        if (streq(s->id, id))
            return s;
    return NULL;
}

int egress_sandbox_set(struct egress *e, const char *id, uint32_t sandbox_ip, const char *const *domains,
                       const uint16_t *tls_ports, struct error_record *err)
{
    uint16_t ports[EGRESS_MAX_TLS_PORTS + 1] = { 0 };
    size_t k = 0;
    for (; tls_ports && tls_ports[k]; k++) {
        if (k == EGRESS_MAX_TLS_PORTS)
            return error_set(err, EINVAL, "more than %d TLS ports", EGRESS_MAX_TLS_PORTS);
        if (tls_ports[k] == 80)
            return error_set(err, EINVAL, "port 80 cannot be a TLS port");
        ports[k] = tls_ports[k];
    }
    size_t n = 0;
    while (domains && domains[n]) {
        if (!net_domain_pattern_valid(domains[n]))
            return error_set(err, EINVAL, "\"%s\" is not a domain name", domains[n]);
        n++;
    }
    if (n == 0) {
        egress_sandbox_forget(e, id);
        return 0;
    }
    if (strlen(id) >= sizeof(((struct sbx *)NULL)->id))
        return error_set(err, EINVAL, "sandbox id too long");
    char **copy = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        copy[i] = xstrdup(domains[i]);
    pthread_mutex_lock(&e->lock);
    int r = 0;
    for (struct sbx *s = e->sandboxes; s; s = s->next)
        if (s->ip == sandbox_ip && !streq(s->id, id))
            r = error_set(err, EEXIST, "address already used by sandbox %s", s->id);
    struct sbx *sb = r < 0 ? NULL : find_id(e, id);
    if (r >= 0 && !sb) {
        sb = xcalloc(1, sizeof(*sb));
        str_copy(sb->id, sizeof(sb->id), id);
        sb->refs = 1;
        sb->next = e->sandboxes;
        e->sandboxes = sb;
    }
    if (sb) {
        sb->ip = sandbox_ip;
        strv_free(sb->domains);
        sb->domains = TAKE_PTR(copy);
        memcpy(sb->tls_ports, ports, sizeof(ports));
    }
    pthread_mutex_unlock(&e->lock);
    strv_free(copy);
    return r;
}

void egress_sandbox_forget(struct egress *e, const char *id)
{
    pthread_mutex_lock(&e->lock);
    struct sbx *sb = find_id(e, id);
    if (!sb) {
        pthread_mutex_unlock(&e->lock);
        return;
    }
    sbx_remove(e, sb);
    sb->refs++;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += FORGET_WAIT_MS / 1000;
    while (sb->conns > 0)
        if (pthread_cond_timedwait(&e->cond, &e->lock, &until) == ETIMEDOUT)
            break;
    sbx_unref(sb); /* the table's reference */
    sbx_unref(sb); /* ours */
    pthread_mutex_unlock(&e->lock);
}

void egress_get_metrics(struct egress *e, struct egress_metrics *ret)
{
    pthread_mutex_lock(&e->lock);
    *ret = (struct egress_metrics){ e->total, e->proxied, e->refused, e->unreachable };
    pthread_mutex_unlock(&e->lock);
}

void egress_free(struct egress *e)
{
    if (!e)
        return;
    if (e->thread_started) {
        uint64_t one = 1;
        if (write(e->stop_fd, &one, sizeof(one)) != sizeof(one))
            abort();
        pthread_join(e->thread, NULL);
    }
    pthread_mutex_lock(&e->lock);
    while (e->sandboxes) {
        struct sbx *sb = e->sandboxes;
        sbx_remove(e, sb);
        sbx_unref(sb);
    }
    /* Connection threads use e until they end; every socket is shut down, so only one still
     * inside the resolver can keep this waiting. */
    while (e->total > 0)
        pthread_cond_wait(&e->cond, &e->lock);
    pthread_mutex_unlock(&e->lock);
    safe_close(e->listen_fd);
    safe_close(e->stop_fd);
    pthread_mutex_destroy(&e->lock);
    pthread_mutex_destroy(&e->host_lock);
    pthread_cond_destroy(&e->cond);
    free(e->pins);
    free(e);
}
