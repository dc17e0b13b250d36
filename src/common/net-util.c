/* See net-util.h. */
#include "common/net-util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/strutil.h"
#include "common/banned.h"

int net_parse_address(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len)
{
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return -EINVAL;
    uint32_t port;
    if (parse_uint32(colon + 1, &port) < 0 || port > 65535)
        return -EINVAL;
    char host[INET6_ADDRSTRLEN + 2];
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host[hlen - 1] = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
            return -EINVAL;
        len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (hlen == 0)
            s4->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return -EINVAL;
        len = sizeof(*s4);
    }
    *ret = ss;
    if (ret_len)
        *ret_len = len;
    return 0;
}

int net_send_fds(int sock, const void *data, size_t len, const int *fds, size_t nfds)
{
    if (nfds > NET_MAX_FDS)
        return -EINVAL;
    union {
        char buf[CMSG_SPACE(sizeof(int) * NET_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = { (void *)data, len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds > 0) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        if (!c)
            return -EINVAL;
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

ssize_t net_recv_fds(int sock, void *buf, size_t size, int *fds, size_t max, size_t *ret_nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * NET_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = { buf, size };
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)
    };
    *ret_nfds = 0;
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (fds && *ret_nfds < max)
                fds[(*ret_nfds)++] = fd;
            else
                close(fd);
        }
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
        return -EBADMSG;
    return n;
}

bool net_peer_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    if (poll(&p, 1, 0) <= 0)
        return false;
    return p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL);
}

static bool domain_check(const char *s, bool allow_wildcard, char *out, size_t size)
{
    if (allow_wildcard && s[0] == '*' && s[1] == '.')
        s += 2;
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0 || n > 253 || (out && n >= size))
        return false;
    bool letter = false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                   c == '_') {
            if ((c == '-' && label == 0) || ++label > 63)
                return false;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                letter = true;
        } else {
            return false;
        }
        if (out)
            out[i] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    if (label == 0 || s[n - 1] == '-' || !letter)
        return false;
    if (out)
        out[n] = '\0';
    return true;
}

bool net_domain_pattern_valid(const char *pattern)
{
    return pattern && domain_check(pattern, true, NULL, 0);
}

int net_domain_normalize(const char *name, char *out, size_t size)
{
    return name && domain_check(name, false, out, size) ? 0 : -EINVAL;
}

bool net_domain_match(const char *pattern, const char *name)
{
    bool wild = pattern[0] == '*' && pattern[1] == '.';
    const char *p = wild ? pattern + 2 : pattern;
    size_t plen = strlen(p);
    if (plen > 0 && p[plen - 1] == '.')
        plen--;
    size_t nlen = strlen(name);
    if (!wild)
        return nlen == plen && strncasecmp(name, p, plen) == 0;
    /* Below the domain: at least one label, then a dot, then the domain. */
    return nlen > plen + 1 && name[nlen - plen - 1] == '.' && strncasecmp(name + nlen - plen, p, plen) == 0;
}

const char *const net_blocked4[] = {
    "0.0.0.0/8",    "10.0.0.0/8",     "100.64.0.0/10",  "127.0.0.0/8",   "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4",    "240.0.0.0/4",
};
const size_t net_n_blocked4 = sizeof(net_blocked4) / sizeof(net_blocked4[0]);
const char *const net_blocked6[] = {
    "::/127",        "::ffff:0:0/96", "64:ff9b::/96", "100::/64",
    "2001:db8::/32", "fc00::/7",      "fe80::/10",    "ff00::/8",
};
const size_t net_n_blocked6 = sizeof(net_blocked6) / sizeof(net_blocked6[0]);

/* Whether the first prefix bits of a and b agree. */
static bool prefix_equal(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
    size_t full = prefix / 8;
    if (memcmp(a, b, full) != 0)
        return false;
    unsigned rest = prefix % 8;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff00u >> rest);
    return (a[full] & mask) == (b[full] & mask);
}

static bool in_table(int family, const unsigned char *addr, const char *const *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ip[INET6_ADDRSTRLEN];
        const char *slash = strchr(table[i], '/');
        size_t len = (size_t)(slash - table[i]);
        memcpy(ip, table[i], len);
        ip[len] = '\0';
        unsigned char net[16];
        uint32_t prefix;
        if (inet_pton(family, ip, net) == 1 && parse_uint32(slash + 1, &prefix) == 0 &&
            prefix_equal(addr, net, prefix))
            return true;
    }
    return false;
}

bool net_addr_blocked(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return in_table(AF_INET, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr,
                        net_blocked4, net_n_blocked4);
    if (sa->sa_family == AF_INET6)
        return in_table(AF_INET6, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, net_blocked6,
                        net_n_blocked6);
    return true;
}
