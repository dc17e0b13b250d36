/* Sandbox networking over rtnetlink (libmnl), never by running ip(8).
 * Offline: the sandbox's own network namespace with only `lo` up.
 * Online: additionally a veth pair, host end "hv<slot>" with the slot's .1 of a /30 from the
 * pool, sandbox end "eth0" with .2 and a default route through .1; egress filtering and NAT
 * are nftables' (ns-nft.c). The pool is checked against the host's addresses at plan time. */
#include <net/if.h> /* before the linux/ headers, whose libc-compat then defers to it */

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/net-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "runtime/ns/ns.h"

#include "common/banned.h"

#define NS_DEFAULT_POOL "10.200.0.0/16"

/* Parts of this run in the sandbox child, which was made by a raw clone3 (glibc's fork handlers
 * did not run, so malloc's locks may be held by a thread that does not exist there): stack
 * buffers and a plain socket only; libmnl builds and parses messages but does not allocate them. */
struct nl {
    int fd;
    unsigned portid;
    unsigned seq;
    char buf[8192];
};

static int nl_open(struct nl *nl)
{
    nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl->fd < 0)
        return -errno;
    struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
    socklen_t len = sizeof(sa);
    if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(nl->fd, (struct sockaddr *)&sa, &len) < 0) {
        int r = -errno;
        close(nl->fd);
        nl->fd = -1;
        return r;
    }
    nl->portid = sa.nl_pid;
    nl->seq = (unsigned)time(NULL);
    return 0;
}

static void nl_close(struct nl *nl)
{
    if (nl->fd >= 0)
        close(nl->fd);
    nl->fd = -1;
}

static struct nlmsghdr *nl_msg(struct nl *nl, uint16_t type, uint16_t flags)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(nl->buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    nlh->nlmsg_seq = ++nl->seq;
    return nlh;
}

/* Sends nlh and waits for its ACK; returns 0 or -errno from the kernel. */
static int nl_talk(struct nl *nl, struct nlmsghdr *nlh)
{
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    ssize_t n;
    do
        n = sendto(nl->fd, nlh, nlh->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    unsigned seq = nlh->nlmsg_seq;
    char rbuf[8192];
    do
        n = recv(nl->fd, rbuf, sizeof(rbuf), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (mnl_cb_run(rbuf, (size_t)n, seq, nl->portid, NULL, NULL) < 0)
        return -errno;
    return 0;
}

static int link_up(struct nl *nl, int index)
{
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWLINK, 0);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = index;
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    return nl_talk(nl, nlh);
}

static int addr_add(struct nl *nl, int index, uint32_t ip, unsigned prefix)
{
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = (unsigned char)prefix;
    ifa->ifa_index = (unsigned)index;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    mnl_attr_put_u32(nlh, IFA_LOCAL, ip);
    mnl_attr_put_u32(nlh, IFA_ADDRESS, ip);
    return nl_talk(nl, nlh);
}

static int route_default(struct nl *nl, int index, uint32_t gateway)
{
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    struct rtmsg *rt = mnl_nlmsg_put_extra_header(nlh, sizeof(*rt));
    rt->rtm_family = AF_INET;
    rt->rtm_table = RT_TABLE_MAIN;
    rt->rtm_protocol = RTPROT_BOOT;
    rt->rtm_scope = RT_SCOPE_UNIVERSE;
    rt->rtm_type = RTN_UNICAST;
    mnl_attr_put_u32(nlh, RTA_GATEWAY, gateway);
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
    return nl_talk(nl, nlh);
}

int ns_net_child_setup(const struct ns_plan *plan, struct error_record *err)
{
    struct nl nl;
    int r = nl_open(&nl);
    if (r < 0)
        return error_set_errno(err, r, "netlink socket");
    /* lo is always ifindex 1 in a new network namespace. */
    r = link_up(&nl, 1);
    if (r < 0) {
        error_set_errno(err, r, "RTM_NEWLINK lo up");
        goto out;
    }
    if (plan->net == RUNTIME_NET_ONLINE) {
        int index = (int)if_nametoindex("eth0");
        if (index <= 0) {
            r = error_set_errno(err, errno, "eth0 missing");
            goto out;
        }
        if ((r = addr_add(&nl, index, plan->sandbox_ip, 30)) < 0) {
            error_set_errno(err, r, "eth0 address");
            goto out;
        }
        if ((r = link_up(&nl, index)) < 0) {
            error_set_errno(err, r, "eth0 up");
            goto out;
        }
        if ((r = route_default(&nl, index, plan->host_ip)) < 0)
            error_set_errno(err, r, "default route");
    }
out:
    nl_close(&nl);
    return r;
}

static int parse_cidr4(const char *s, uint32_t *ret_net, unsigned *ret_prefix)
{
    char ip[INET_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    if (!slash || (size_t)(slash - s) >= sizeof(ip))
        return -EINVAL;
    memcpy(ip, s, (size_t)(slash - s));
    ip[slash - s] = '\0';
    struct in_addr a;
    uint32_t prefix;
    if (inet_pton(AF_INET, ip, &a) != 1 || parse_uint32(slash + 1, &prefix) < 0 || prefix > 32)
        return -EINVAL;
    *ret_net = ntohl(a.s_addr);
    *ret_prefix = prefix;
    return 0;
}

int ns_net_cidrs(const char *const *in, char ***ret, struct error_record *err)
{
    size_t n = 0;
    while (in && in[n])
        if (++n > 1024)
            return error_set(err, E2BIG, "more than 1024 CIDRs");
    char **v = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        /* Re-formatted from the parsed address: only digits, dots, colons and the prefix ever
         * reach nftables. A bare address means a host. */
        char ip[INET6_ADDRSTRLEN];
        const char *slash = strchr(in[i], '/');
        size_t iplen = slash ? (size_t)(slash - in[i]) : strlen(in[i]);
        uint32_t prefix = 0;
        unsigned char bin[16];
        int family = strchr(in[i], ':') ? AF_INET6 : AF_INET;
        bool ok = iplen < sizeof(ip);
        if (ok) {
            memcpy(ip, in[i], iplen);
            ip[iplen] = '\0';
            ok = inet_pton(family, ip, bin) == 1;
        }
        if (ok && slash)
            ok = parse_uint32(slash + 1, &prefix) == 0 && prefix <= (family == AF_INET ? 32u : 128u);
        else if (ok)
            prefix = family == AF_INET ? 32 : 128;
        if (!ok) {
            ns_strv_free(v);
            return error_set(err, EINVAL, "invalid CIDR \"%s\"", in[i]);
        }
        /* Clear host bits so that nftables accepts the interval. */
        size_t bytes = family == AF_INET ? 4 : 16;
        for (size_t b = 0; b < bytes; b++) {
            unsigned keep = prefix >= (b + 1) * 8 ? 8 : prefix > b * 8 ? prefix - (unsigned)b * 8 : 0;
            bin[b] &= (unsigned char)(0xff00u >> keep);
        }
        inet_ntop(family, bin, ip, sizeof(ip));
        v[i] = xasprintf("%s/%u", ip, prefix);
    }
    *ret = v;
    return 0;
}

int ns_net_allow_list(const struct runtime_egress *egress, const char *const *in, char ***ret_cidrs,
                      char ***ret_domains, struct error_record *err)
{
    size_t n = 0, n_names = 0;
    while (in && in[n]) {
        if (net_domain_pattern_valid(in[n]))
            n_names++;
        if (++n > 1024)
            return error_set(err, E2BIG, "more than 1024 allow entries");
    }
    if (n_names && !egress)
        return error_set(err, EINVAL,
                         "domain names in the allow list need an egress proxy (hutch serve has one)");
    const char **cidrs = xcalloc(n - n_names + 1, sizeof(char *));
    char **names = n_names ? xcalloc(n_names + 1, sizeof(char *)) : NULL;
    size_t c = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        if (!net_domain_pattern_valid(in[i])) {
            cidrs[c++] = in[i];
            continue;
        }
        char *name = xstrdup(in[i]);
        for (char *p = name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        names[d++] = name;
    }
    char **v = NULL;
    int r = ns_net_cidrs(cidrs, &v, err);
    free(cidrs);
    if (r < 0) {
        ns_strv_free(names);
        return r;
    }
    *ret_cidrs = v;
    *ret_domains = names;
    return 0;
}

int ns_net_plan_addresses(const struct runtime_config *cfg, unsigned slot, struct ns_plan *plan,
                          struct error_record *err)
{
    const char *pool = cfg && cfg->net_pool ? cfg->net_pool : NS_DEFAULT_POOL;
    uint32_t net;
    unsigned prefix;
    if (parse_cidr4(pool, &net, &prefix) < 0 || prefix > 30)
        return error_set(err, EINVAL, "invalid network pool \"%s\"", pool);
    uint64_t size = 1ull << (32 - prefix);
    if ((uint64_t)slot * 4 + 4 > size)
        return error_set(err, ERANGE, "slot %u does not fit the network pool %s", slot, pool);
    net &= (uint32_t)(0xffffffffull << (32 - prefix));
    uint32_t base = net + 4u * slot;
    plan->host_ip = htonl(base + 1);
    plan->sandbox_ip = htonl(base + 2);
    snprintf(plan->veth, sizeof(plan->veth), "hv%u", slot);
    struct in_addr na = { htonl(net) };
    char nstr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &na, nstr, sizeof(nstr));
    snprintf(plan->net_pool, sizeof(plan->net_pool), "%s/%u", nstr, prefix);

    /* The pool must not overlap the host's own networks (other sandboxes' host ends aside). */
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0)
        return error_set_errno(err, errno, "getifaddrs");
    int r = 0;
    for (struct ifaddrs *i = ifs; i && r == 0; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || str_startswith(i->ifa_name, "hv"))
            continue;
        uint32_t a = ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
        uint32_t m =
            i->ifa_netmask ? ntohl(((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr) : 0xffffffffu;
        uint32_t pm = (uint32_t)(0xffffffffull << (32 - prefix));
        uint32_t common = m & pm;
        if ((a & common) == (net & common))
            r = error_set(err, EADDRINUSE, "network pool %s overlaps %s on the host", pool, i->ifa_name);
    }
    freeifaddrs(ifs);
    return r;
}

static int veth_create(struct nl *nl, const char *name, int netns_fd)
{
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    struct nlattr *linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    struct nlattr *peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    struct ifinfomsg *pifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*pifi));
    pifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "eth0");
    mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)netns_fd);
    mnl_attr_nest_end(nlh, peer);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, linkinfo);
    return nl_talk(nl, nlh);
}

static int link_del(struct nl *nl, const char *name)
{
    struct nlmsghdr *nlh = nl_msg(nl, RTM_DELLINK, 0);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    return nl_talk(nl, nlh);
}

int ns_net_sandbox_add(const struct ns_plan *plan, int netns_fd, bool *ret_veth_made,
                       struct error_record *err)
{
    struct nl nl;
    int r = nl_open(&nl);
    if (r < 0)
        return error_set_errno(err, r, "netlink socket");
    r = veth_create(&nl, plan->veth, netns_fd);
    if (r < 0) {
        /* EEXIST: another live sandbox has this slot; its veth is not ours to touch. */
        error_set_errno(err, r, "create veth %s", plan->veth);
        goto out;
    }
    *ret_veth_made = true;
    int index = (int)if_nametoindex(plan->veth);
    if (index <= 0) {
        r = error_set_errno(err, errno, "veth %s", plan->veth);
        goto out;
    }
    if ((r = addr_add(&nl, index, plan->host_ip, 30)) < 0 || (r = link_up(&nl, index)) < 0) {
        error_set_errno(err, r, "configure %s", plan->veth);
        goto out;
    }
    /* The proxy knows the sandbox's names before anything is redirected to it. */
    if (plan->domains && plan->egress &&
        (r = plan->egress->set(plan->egress->userdata, plan->id, plan->sandbox_ip,
                               (const char *const *)plan->domains, plan->https_ports, err)) < 0)
        goto out;
    r = ns_nft_sandbox_add(plan, err);
out:
    nl_close(&nl);
    return r;
}

void ns_net_egress_forget(const struct ns_plan *plan)
{
    if (plan->egress)
        plan->egress->forget(plan->egress->userdata, plan->id);
}

int ns_net_sandbox_policy(struct ns_plan *plan, const char *const *allow_out, const char *const *deny_out,
                          const uint16_t *https_ports, bool deny_internet, struct error_record *err)
{
    char **allow = NULL, **names = NULL, **deny = NULL;
    uint16_t ports[RUNTIME_HTTPS_PORTS_MAX + 1];
    int r = ns_net_allow_list(plan->egress, allow_out, &allow, &names, err);
    if (r >= 0)
        r = ns_net_cidrs(deny_out, &deny, err);
    if (r >= 0)
        r = ns_plan_https_ports(https_ports, ports, err);
    bool told = false;
    if (r >= 0 && plan->egress && (names || plan->domains)) {
        r = plan->egress->set(plan->egress->userdata, plan->id, plan->sandbox_ip, (const char *const *)names,
                              ports, err);
        told = r >= 0;
    }
    if (r >= 0)
        r = ns_nft_sandbox_policy(plan, allow, names != NULL, deny, ports, deny_internet, err);
    if (r >= 0) {
        char **old = plan->domains;
        plan->domains = names;
        names = old;
        memcpy(plan->https_ports, ports, sizeof(ports));
    } else if (told) {
        /* nftables kept the old policy: so does the proxy. */
        plan->egress->set(plan->egress->userdata, plan->id, plan->sandbox_ip,
                          (const char *const *)plan->domains, plan->https_ports, NULL);
    }
    ns_strv_free(allow);
    ns_strv_free(names);
    ns_strv_free(deny);
    return r;
}

int ns_net_sandbox_del(const char *id, const char *veth)
{
    int r = ns_nft_sandbox_del(id);
    if (veth && veth[0]) {
        struct nl nl;
        if (nl_open(&nl) == 0) {
            int d = link_del(&nl, veth);
            if (d < 0 && d != -ENODEV && r == 0)
                r = d;
            nl_close(&nl);
        }
    }
    return r;
}

int ns_net_slot_reset(const struct runtime_config *cfg, unsigned slot)
{
    char veth[IFNAMSIZ];
    snprintf(veth, sizeof(veth), "hv%u", slot);
    /* The usual case, no leftover, costs one lookup. */
    if (if_nametoindex(veth) == 0)
        return 0;
    char owner[NS_ID_MAX + 1];
    int r = ns_nft_veth_owner(veth, owner, sizeof(owner));
    if (r > 0)
        r = ns_nft_sandbox_del(owner);
    struct nl nl;
    int k = nl_open(&nl);
    if (k == 0) {
        k = link_del(&nl, veth);
        nl_close(&nl);
    }
    if (k < 0 && k != -ENODEV && r >= 0)
        r = k;
    return r < 0 ? r : 0;
}
