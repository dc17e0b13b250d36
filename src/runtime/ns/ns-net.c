/* Network of an offline sandbox: its own network namespace with only `lo`, brought up over
 * rtnetlink (libmnl) from inside the namespace, never by running ip(8). */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "runtime/ns/ns.h"

#include "common/banned.h"

int ns_net_loopback_up(struct error_record *err)
{
    /* Stack buffers only: this runs in the sandbox child. */
    char buf[8192];
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl)
        return error_set_errno(err, errno, "netlink socket");
    int r = 0;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        r = error_set_errno(err, errno, "netlink bind");
        goto out;
    }
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    unsigned seq = (unsigned)time(NULL);
    nlh->nlmsg_seq = seq;
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = 1; /* lo is always ifindex 1 in a new network namespace */
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        r = error_set_errno(err, errno, "netlink send");
        goto out;
    }
    ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
    if (n < 0) {
        r = error_set_errno(err, errno, "netlink recv");
        goto out;
    }
    if (mnl_cb_run(buf, (size_t)n, seq, mnl_socket_get_portid(nl), NULL, NULL) < 0)
        r = error_set_errno(err, errno, "RTM_NEWLINK lo up");
out:
    mnl_socket_close(nl);
    return r;
}
