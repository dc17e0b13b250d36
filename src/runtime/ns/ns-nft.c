/* Egress policy and NAT of online sandboxes: one nftables table, "inet hutch".
 *
 *   forward:     iifname "hv*" -> vmap @sandboxes (veth name : jump sb_<id>); unknown veths drop;
 *                to a veth: only established/related
 *   input:       iifname "hv*": TCP that prerouting redirected (to the egress proxy) accept,
 *                the rest drop   (no other host service is reachable from a sandbox)
 *   prerouting:  iifname "hv*" -> vmap @egress (veth name : jump px_<id>)
 *   postrouting: ip saddr <pool> oifname != "hv*" masquerade
 *   sb_<id>:     blocked (private, link-local, metadata, multicast, host addresses, the pool)
 *                drop -> source not the sandbox's address drop -> [with domains: DNS to the
 *                base template's resolvers accept] -> allow set accept -> deny set drop ->
 *                accept, or drop when internet access is denied
 *   px_<id>:     empty, or with domain names in the allow list: from the sandbox's address, not
 *                to the allow set, TCP to ports 80/443 (and the sandbox's https ports) that
 *                sb_<id> would drop -> redirect to the egress proxy's port (the address of the
 *                veth's host end)
 *
 * libnftables is loaded with dlopen (its ABI is stable and only the runtime library is
 * installed here, not its headers); commands are built only from validated, re-formatted
 * addresses and [a-z0-9_] names, and each batch is one atomic transaction. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/net-util.h"
#include "common/strutil.h"
#include "runtime/ns/ns.h"

#include "common/banned.h"

struct nft_ctx;
static struct {
    bool loaded;
    struct nft_ctx *(*ctx_new)(uint32_t flags);
    void (*ctx_free)(struct nft_ctx *ctx);
    int (*run)(struct nft_ctx *ctx, const char *buf);
    int (*buffer_output)(struct nft_ctx *ctx);
    int (*buffer_error)(struct nft_ctx *ctx);
    const char *(*get_output)(struct nft_ctx *ctx);
    const char *(*get_error)(struct nft_ctx *ctx);
} nft;
static pthread_mutex_t nft_lock = PTHREAD_MUTEX_INITIALIZER;
static bool base_installed;

static int nft_load(void)
{
    if (nft.loaded)
        return 0;
    void *h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return -ENOSYS;
    nft.ctx_new = (struct nft_ctx * (*)(uint32_t)) dlsym(h, "nft_ctx_new");
    nft.ctx_free = (void (*)(struct nft_ctx *))dlsym(h, "nft_ctx_free");
    nft.run = (int (*)(struct nft_ctx *, const char *))dlsym(h, "nft_run_cmd_from_buffer");
    nft.buffer_output = (int (*)(struct nft_ctx *))dlsym(h, "nft_ctx_buffer_output");
    nft.buffer_error = (int (*)(struct nft_ctx *))dlsym(h, "nft_ctx_buffer_error");
    nft.get_output = (const char *(*)(struct nft_ctx *))dlsym(h, "nft_ctx_get_output_buffer");
    nft.get_error = (const char *(*)(struct nft_ctx *))dlsym(h, "nft_ctx_get_error_buffer");
    if (!nft.ctx_new || !nft.ctx_free || !nft.run || !nft.buffer_output || !nft.buffer_error ||
        !nft.get_output || !nft.get_error)
        return -ENOSYS;
    nft.loaded = true;
    return 0;
}

/* Runs one batch (atomic); on failure copies nft's first error line into err. With out, the
 * command's output is copied there. Caller holds nft_lock. */
static int nft_run(const char *cmds, struct buf *out, struct error_record *err)
{
    int r = nft_load();
    if (r < 0)
        return error_set(err, ENOSYS, "libnftables.so.1 not available");
    struct nft_ctx *ctx = nft.ctx_new(0);
    if (!ctx)
        return error_set(err, ENOMEM, "nft_ctx_new");
    nft.buffer_output(ctx);
    nft.buffer_error(ctx);
    r = nft.run(ctx, cmds);
    if (r != 0) {
        const char *e = nft.get_error(ctx);
        char line[200] = "";
        if (e) {
            size_t k = strcspn(e, "\n");
            if (k >= sizeof(line))
                k = sizeof(line) - 1;
            memcpy(line, e, k);
            line[k] = '\0';
        }
        r = error_set(err, EINVAL, "nftables: %s", line);
    } else if (out) {
        const char *o = nft.get_output(ctx);
        if (o && buf_append_str(out, o) < 0)
            r = error_set(err, ENOBUFS, "nftables output too large");
    }
    nft.ctx_free(ctx);
    return r;
}

/* What a sandbox with domain names may resolve them with: the nameservers of the base
 * template's resolv.conf (E2B allows 8.8.8.8 the same way). */
#define DNS_RESOLVERS "1.1.1.1, 8.8.8.8"
#define EGRESS_PORTS "80, 443"

static int base_ruleset(struct buf *b, const char *pool)
{
    int r = 0;
    r |= buf_append_str(b, "add table inet hutch\n"
                           "add set inet hutch blocked4 { type ipv4_addr; flags interval; auto-merge; }\n"
                           "add set inet hutch blocked6 { type ipv6_addr; flags interval; auto-merge; }\n"
                           "flush set inet hutch blocked4\nflush set inet hutch blocked6\n");
    r |= buf_append_str(b, "add element inet hutch blocked4 { ");
    for (size_t i = 0; i < net_n_blocked4; i++)
        r |= buf_printf(b, "%s, ", net_blocked4[i]);
    r |= buf_printf(b, "%s", pool);
    /* The host's own addresses: not even a public one is a way into the host. */
    struct ifaddrs *ifs = NULL;
    char v6[8192] = "";
    size_t v6len = 0;
    if (getifaddrs(&ifs) == 0) {
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            char ip[INET6_ADDRSTRLEN];
            if (!i->ifa_addr)
                continue;
            if (i->ifa_addr->sa_family == AF_INET) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip, sizeof(ip));
                r |= buf_printf(b, ", %s/32", ip);
            } else if (i->ifa_addr->sa_family == AF_INET6 && v6len + 64 < sizeof(v6)) {
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, ip, sizeof(ip));
                v6len += (size_t)snprintf(v6 + v6len, sizeof(v6) - v6len, ", %s/128", ip);
            }
        }
        freeifaddrs(ifs);
    }
    r |= buf_append_str(b, " }\nadd element inet hutch blocked6 { ");
    for (size_t i = 0; i < net_n_blocked6; i++)
        r |= buf_printf(b, "%s%s", i ? ", " : "", net_blocked6[i]);
    r |= buf_printf(b, "%s }\n", v6);
    r |= buf_printf(
        b,
        "add map inet hutch sandboxes { type ifname : verdict; }\n"
        "add map inet hutch egress { type ifname : verdict; }\n"
        "add chain inet hutch forward { type filter hook forward priority 0; policy accept; }\n"
        "add chain inet hutch input { type filter hook input priority 0; policy accept; }\n"
        "add chain inet hutch prerouting { type nat hook prerouting priority -100; policy accept; }\n"
        "add chain inet hutch postrouting { type nat hook postrouting priority 100; policy accept; }\n"
        "flush chain inet hutch forward\nflush chain inet hutch input\n"
        "flush chain inet hutch prerouting\nflush chain inet hutch postrouting\n"
        "add rule inet hutch forward iifname \"hv*\" iifname vmap @sandboxes\n"
        "add rule inet hutch forward iifname \"hv*\" drop\n"
        "add rule inet hutch forward oifname \"hv*\" ct state established,related accept\n"
        "add rule inet hutch forward oifname \"hv*\" drop\n"
        "add rule inet hutch prerouting iifname \"hv*\" iifname vmap @egress\n"
        /* Only what a px_<id> chain redirected: the egress proxy's connections. */
        "add rule inet hutch input iifname \"hv*\" meta nfproto ipv4 meta l4proto tcp ct status dnat accept\n"
        "add rule inet hutch input iifname \"hv*\" drop\n"
        "add rule inet hutch postrouting ip saddr %s oifname != \"hv*\" masquerade\n",
        pool);
    return r < 0 ? -ENOBUFS : 0;
}

static int ensure_base(const struct ns_plan *plan, struct error_record *err)
{
    if (base_installed)
        return 0;
    const char *pool = plan->net_pool;
    struct buf b;
    buf_init(&b, 1 << 20);
    int r = base_ruleset(&b, pool);
    if (r < 0) {
        buf_release(&b);
        return error_set(err, ENOBUFS, "nftables ruleset too large");
    }
    r = nft_run(b.data, NULL, err);
    buf_release(&b);
    if (r < 0)
        return r;
    /* Forwarding is what makes a veth a way out; NAT and the filters above bound it. */
    FILE *f = fopen("/proc/sys/net/ipv4/ip_forward", "we");
    if (!f || fputs("1", f) < 0 || fclose(f) != 0)
        return error_set_errno(err, errno, "enable ip_forward");
    base_installed = true;
    return 0;
}

/* nftables names: the id with '-' -> '_' ([a-z0-9_] only, checked by the plan). */
static void nft_name(const char *id, char *out, size_t size)
{
    snprintf(out, size, "%s", id);
    for (char *p = out; *p; p++)
        if (*p == '-')
            *p = '_';
}

static int append_elements(struct buf *b, const char *set, char **cidrs, int family)
{
    bool first = true;
    int r = 0;
    for (char **c = cidrs; c && *c; c++) {
        if ((strchr(*c, ':') ? AF_INET6 : AF_INET) != family)
            continue;
        r |= buf_printf(b, "%s%s", first ? "add element inet hutch " : ", ", first ? set : *c);
        if (first)
            r |= buf_printf(b, " { %s", *c);
        first = false;
    }
    if (!first)
        r |= buf_append_str(b, " }\n");
    return r;
}

/* The sandbox's chain: always-blocked ranges first, then its own source address only, then
 * its allow list, its deny list, and the default. Sandboxes get no IPv6 address or route, so
 * no IPv6 packet of theirs may leave at all (with no address to check a source against, a
 * spoofed one must not pass should a route ever appear); the v6 sets stay for when they do. */
static int append_rules(struct buf *b, const char *n, const char *ip, bool domains, bool deny_internet)
{
    int r = buf_printf(b,
                       "add rule inet hutch sb_%s ip daddr @blocked4 drop\n"
                       "add rule inet hutch sb_%s ip6 daddr @blocked6 drop\n"
                       "add rule inet hutch sb_%s meta nfproto ipv6 drop\n"
                       "add rule inet hutch sb_%s meta nfproto ipv4 ip saddr != %s drop\n",
                       n, n, n, n, ip);
    if (domains)
        r |= buf_printf(b,
                        "add rule inet hutch sb_%s ip daddr { " DNS_RESOLVERS " } meta l4proto { tcp, udp } "
                        "th dport 53 accept\n",
                        n);
    return r | buf_printf(b,
                          "add rule inet hutch sb_%s ip daddr @a4_%s accept\n"
                          "add rule inet hutch sb_%s ip6 daddr @a6_%s accept\n"
                          "add rule inet hutch sb_%s ip daddr @d4_%s drop\n"
                          "add rule inet hutch sb_%s ip6 daddr @d6_%s drop\n"
                          "add rule inet hutch sb_%s %s\n",
                          n, n, n, n, n, n, n, n, n, deny_internet ? "drop" : "accept");
}

/* The redirect to the egress proxy: only TCP to 80/443 (and https_ports, 0-terminated, 443 and
 * 80 already left out by the plan) that sb_<n> would drop (the deny set, or everything without
 * internet access), never what the allow set lets through directly. */
static int append_redirect(struct buf *b, const char *n, const char *ip, uint16_t port,
                           const uint16_t *https_ports, bool deny_internet)
{
    char ports[16 + RUNTIME_HTTPS_PORTS_MAX * 8] = EGRESS_PORTS;
    for (size_t i = 0; https_ports && https_ports[i] && i < RUNTIME_HTTPS_PORTS_MAX; i++)
        snprintf(ports + strlen(ports), sizeof(ports) - strlen(ports), ", %u", (unsigned)https_ports[i]);
    /* IPv4 only: sandboxes have no IPv6 beyond link-local, and nothing of theirs is redirected. */
    int r = buf_printf(b,
                       "add rule inet hutch px_%s meta nfproto != ipv4 return\n"
                       "add rule inet hutch px_%s ip saddr != %s return\n"
                       "add rule inet hutch px_%s ip daddr @a4_%s return\n",
                       n, n, ip, n, n);
    if (deny_internet)
        return r | buf_printf(b, "add rule inet hutch px_%s tcp dport { %s } redirect to :%u\n", n, ports,
                              (unsigned)port);
    return r | buf_printf(b, "add rule inet hutch px_%s ip daddr @d4_%s tcp dport { %s } redirect to :%u\n",
                          n, n, ports, (unsigned)port);
}

static int append_lists(struct buf *b, const char *n, char **allow, char **deny)
{
    char set[80];
    int w = 0;
    snprintf(set, sizeof(set), "a4_%s", n);
    w |= append_elements(b, set, allow, AF_INET);
    snprintf(set, sizeof(set), "a6_%s", n);
    w |= append_elements(b, set, allow, AF_INET6);
    snprintf(set, sizeof(set), "d4_%s", n);
    w |= append_elements(b, set, deny, AF_INET);
    snprintf(set, sizeof(set), "d6_%s", n);
    w |= append_elements(b, set, deny, AF_INET6);
    return w;
}

int ns_nft_sandbox_policy(const struct ns_plan *plan, char **allow, bool domains, char **deny,
                          const uint16_t *https_ports, bool deny_internet, struct error_record *err)
{
    char n[NS_ID_MAX + 1], ip[INET_ADDRSTRLEN];
    nft_name(plan->id, n, sizeof(n));
    struct in_addr a = { plan->sandbox_ip };
    inet_ntop(AF_INET, &a, ip, sizeof(ip));
    struct buf b;
    buf_init(&b, 1 << 20);
    /* One transaction: the sandbox never sees a moment without a policy. */
    int w = 0;
    static const char *const kinds[] = { "a4", "a6", "d4", "d6" };
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
        w |= buf_printf(&b, "flush set inet hutch %s_%s\n", kinds[i], n);
    w |= append_lists(&b, n, allow, deny);
    w |= buf_printf(&b, "flush chain inet hutch sb_%s\n", n);
    w |= append_rules(&b, n, ip, domains && plan->egress, deny_internet);
    w |= buf_printf(&b, "flush chain inet hutch px_%s\n", n);
    if (domains && plan->egress)
        w |= append_redirect(&b, n, ip, plan->egress->port, https_ports, deny_internet);
    pthread_mutex_lock(&nft_lock);
    int r = w < 0 ? error_set(err, ENOBUFS, "nftables batch too large") : nft_run(b.data, NULL, err);
    pthread_mutex_unlock(&nft_lock);
    buf_release(&b);
    return r;
}

int ns_nft_sandbox_add(const struct ns_plan *plan, struct error_record *err)
{
    char n[NS_ID_MAX + 1], ip[INET_ADDRSTRLEN];
    nft_name(plan->id, n, sizeof(n));
    struct in_addr a = { plan->sandbox_ip };
    inet_ntop(AF_INET, &a, ip, sizeof(ip));
    pthread_mutex_lock(&nft_lock);
    int r = ensure_base(plan, err);
    if (r < 0)
        goto out;
    struct buf b;
    buf_init(&b, 1 << 20);
    int w = 0;
    static const char *const kinds[] = { "a4", "a6", "d4", "d6" };
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
        w |= buf_printf(&b, "add set inet hutch %s_%s { type %s; flags interval; auto-merge; }\n", kinds[i],
                        n, kinds[i][1] == '4' ? "ipv4_addr" : "ipv6_addr");
    w |= append_lists(&b, n, plan->allow_out, plan->deny_out);
    bool domains = plan->domains && plan->egress;
    w |= buf_printf(&b, "add chain inet hutch sb_%s\n", n);
    w |= append_rules(&b, n, ip, domains, plan->deny_internet);
    w |= buf_printf(&b, "add chain inet hutch px_%s\n", n);
    if (domains)
        w |= append_redirect(&b, n, ip, plan->egress->port, plan->https_ports, plan->deny_internet);
    w |= buf_printf(&b, "add element inet hutch egress { \"%s\" : jump px_%s }\n", plan->veth, n);
    w |= buf_printf(&b, "add element inet hutch sandboxes { \"%s\" : jump sb_%s }\n", plan->veth, n);
    if (w < 0) {
        r = error_set(err, ENOBUFS, "nftables batch too large");
    } else {
        r = nft_run(b.data, NULL, err);
        if (r < 0) {
            /* Someone flushed the ruleset under us: install the base again, once. */
            base_installed = false;
            if (ensure_base(plan, err) >= 0)
                r = nft_run(b.data, NULL, err);
        }
    }
    buf_release(&b);
out:
    pthread_mutex_unlock(&nft_lock);
    return r;
}

/* Finds the veth whose map element jumps to sb_<n>, from `list map` output. */
static bool find_veth(const char *listing, const char *n, char *out, size_t size)
{
    char needle[96];
    snprintf(needle, sizeof(needle), ": jump sb_%s", n);
    for (const char *p = strstr(listing, needle); p; p = strstr(p + 1, needle)) {
        char after = p[strlen(needle)];
        if (after != ',' && after != ' ' && after != '\n' && after != '\0' && after != '}')
            continue;
        const char *q = p;
        while (q > listing && *q != '"')
            q--;
        const char *start = q - 1;
        while (start > listing && *start != '"')
            start--;
        if (*start != '"' || q <= start + 1 || (size_t)(q - start - 1) >= size)
            return false;
        memcpy(out, start + 1, (size_t)(q - start - 1));
        out[q - start - 1] = '\0';
        return true;
    }
    return false;
}

int ns_nft_veth_owner(const char *veth, char *ret_name, size_t size)
{
    pthread_mutex_lock(&nft_lock);
    struct buf listing;
    buf_init(&listing, 4 << 20);
    int r = nft_run("list map inet hutch sandboxes\n", &listing, NULL);
    if (r < 0) {
        r = 0; /* no table, no element */
        goto out;
    }
    char needle[48];
    snprintf(needle, sizeof(needle), "\"%s\" : jump sb_", veth);
    const char *p = strstr(listing.data, needle);
    r = 0;
    if (p) {
        p += strlen(needle);
        size_t n = strcspn(p, ", \n}");
        if (n > 0 && n < size) {
            memcpy(ret_name, p, n);
            ret_name[n] = '\0';
            r = 1;
        }
    }
out:
    buf_release(&listing);
    pthread_mutex_unlock(&nft_lock);
    return r;
}

int ns_nft_sandbox_del(const char *id)
{
    char n[NS_ID_MAX + 1];
    nft_name(id, n, sizeof(n));
    pthread_mutex_lock(&nft_lock);
    struct buf listing, b;
    buf_init(&listing, 4 << 20);
    buf_init(&b, 1 << 16);
    int r = nft_run("list map inet hutch sandboxes\n", &listing, NULL);
    if (r < 0) {
        r = 0; /* no table: nothing of this sandbox can exist */
        goto out;
    }
    char veth[16];
    bool has_veth = find_veth(listing.data, n, veth, sizeof(veth));
    static const char *const kinds[] = { "a4", "a6", "d4", "d6" };
    /* First all of it in one transaction: each commit costs the kernel an RCU grace period
     * (10-20 ms on a small VM), so one batch instead of six makes destroying an online sandbox
     * several times faster. A batch fails whole when any object is missing (a sandbox torn
     * down half-built), and then each object goes on its own below. */
    if (has_veth)
        buf_printf(&b,
                   "delete element inet hutch sandboxes { \"%s\" }\n"
                   "delete element inet hutch egress { \"%s\" }\n",
                   veth, veth);
    buf_printf(&b, "flush chain inet hutch sb_%s\ndelete chain inet hutch sb_%s\n", n, n);
    buf_printf(&b, "flush chain inet hutch px_%s\ndelete chain inet hutch px_%s\n", n, n);
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
        buf_printf(&b, "delete set inet hutch %s_%s\n", kinds[i], n);
    if (nft_run(b.data, NULL, NULL) == 0) {
        r = 0;
        goto out;
    }
    buf_reset(&b);
    if (has_veth) {
        buf_printf(&b, "delete element inet hutch sandboxes { \"%s\" }\n", veth);
        r = nft_run(b.data, NULL, NULL);
        buf_reset(&b);
        buf_printf(&b, "delete element inet hutch egress { \"%s\" }\n", veth);
        nft_run(b.data, NULL, NULL);
    }
    buf_reset(&b);
    buf_printf(&b, "flush chain inet hutch sb_%s\ndelete chain inet hutch sb_%s\n", n, n);
    nft_run(b.data, NULL, NULL);
    buf_reset(&b);
    buf_printf(&b, "flush chain inet hutch px_%s\ndelete chain inet hutch px_%s\n", n, n);
    nft_run(b.data, NULL, NULL);
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
        buf_reset(&b);
        buf_printf(&b, "delete set inet hutch %s_%s\n", kinds[i], n);
        nft_run(b.data, NULL, NULL);
    }
    /* What is left decides the result. */
    buf_reset(&listing);
    buf_reset(&b);
    buf_printf(&b, "list chain inet hutch sb_%s\n", n);
    if (nft_run(b.data, NULL, NULL) == 0)
        r = -EBUSY;
    buf_reset(&b);
    buf_printf(&b, "list chain inet hutch px_%s\n", n);
    if (nft_run(b.data, NULL, NULL) == 0)
        r = -EBUSY;
out:
    buf_release(&listing);
    buf_release(&b);
    pthread_mutex_unlock(&nft_lock);
    return r;
}
