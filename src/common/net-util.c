/* See net-util.h. */
#include "common/net-util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>

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

bool net_peer_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    if (poll(&p, 1, 0) <= 0)
        return false;
    return p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL);
}
