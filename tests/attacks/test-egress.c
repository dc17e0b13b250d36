/* Row 19 of the threat model: egress allow-list bypass. An online sandbox whose policy lets it
 * reach one address of a "world" network namespace (made by this test, behind a veth on the
 * host) tries, as its root, every way around the list: an IP literal outside it, the same
 * address through a v4-mapped IPv6 socket, IPv6, UDP and ICMP, raw and packet sockets, a spoofed
 * source address, an /etc/hosts entry that points an allowed name at a denied address, a
 * DNS-rebinding-like sequence (the same name first resolving to the allowed address, then to a
 * denied one; there is no DNS server, /etc/hosts changes model it), and changing its own address,
 * routes and links. The world records every IP packet that reaches it on an AF_PACKET socket,
 * so datagrams that the sandbox cannot judge (UDP, ICMP) are judged there: nothing may arrive at
 * a denied address, nothing with a source other than the host's NAT address. Traffic only ever
 * goes to namespaces this test made (198.51.100.0/24 and 3fff:0:113::/64, documentation ranges
 * routed here onto the test's veth), never to a real external address: the sandbox resolves only
 * through its files, never DNS. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "priv-util.h"
#include "tap.h"

#include "common/banned.h"

#define ALLOWED "198.51.100.2"
#define DENIED "198.51.100.3"
#define HOST_NAT "198.51.100.1"
#define ALLOWED6 "3fff:0:113::2"
#define DENIED6 "3fff:0:113::3"
#define WORLD6_PREFIX "3fff:0:113::"

static char world_ns[64], world_link[16];
static pid_t world_pid = -1;
static int world_log = -1; /* the recorder's lines */

static void sh(const char *cmd)
{
    int st = priv_sh(cmd);
    if (st != 0)
        tap_fail(__FILE__, __LINE__, "`%s` failed (%d)", cmd, st);
}

/* The recorder, inside the world: answers "world\n" on port 8080 (IPv4 and IPv6, every world
 * address) and writes one line per IP packet that arrives on wv0, e.g.
 * "v4 p=6 src=198.51.100.1 dst=198.51.100.2 dport=8080". IPv6 neighbour discovery and multicast
 * listener messages are the link's own chatter and left out. */
static _Noreturn void recorder(int out)
{
    int pkt = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ALL));
    struct sockaddr_ll ll = { .sll_family = AF_PACKET,
                              .sll_protocol = htons(ETH_P_ALL),
                              .sll_ifindex = (int)if_nametoindex("wv0") };
    if (pkt < 0 || bind(pkt, (struct sockaddr *)&ll, sizeof(ll)) < 0)
        _exit(2);
    int l4 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int l6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(8080) };
    struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(8080) };
    if (bind(l4, (struct sockaddr *)&s4, sizeof(s4)) < 0 || listen(l4, 16) < 0 ||
        bind(l6, (struct sockaddr *)&s6, sizeof(s6)) < 0 || listen(l6, 16) < 0)
        _exit(3);
    if (write(out, "ready\n", 6) != 6)
        _exit(4);
    for (;;) {
        struct pollfd p[3] = { { .fd = pkt, .events = POLLIN },
                               { .fd = l4, .events = POLLIN },
                               { .fd = l6, .events = POLLIN } };
        if (poll(p, 3, -1) <= 0)
            continue;
        for (int i = 1; i < 3; i++)
            if (p[i].revents & POLLIN) {
                int c = accept(p[i].fd, NULL, NULL);
                if (c >= 0) {
                    if (write(c, "world\n", 6) < 0)
                        _exit(5);
                    close(c);
                }
            }
        if (!(p[0].revents & POLLIN))
            continue;
        /* SOCK_DGRAM: the frame without its link header, the IP header aligned. */
        _Alignas(16) unsigned char buf[2048];
        struct sockaddr_ll from;
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(pkt, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
        if (n < 1 || from.sll_pkttype == PACKET_OUTGOING)
            continue;
        unsigned type = ntohs(from.sll_protocol);
        char line[256], src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
        int len = 0;
        if (type == ETH_P_IP && n >= 20) {
            const struct iphdr *ip = (const struct iphdr *)buf;
            inet_ntop(AF_INET, &ip->saddr, src, sizeof(src));
            inet_ntop(AF_INET, &ip->daddr, dst, sizeof(dst));
            const unsigned char *l4h = buf + ip->ihl * 4;
            int dport = (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) && l4h + 4 <= buf + n
                            ? l4h[2] << 8 | l4h[3]
                            : -1;
            len = snprintf(line, sizeof(line), "v4 p=%d src=%s dst=%s dport=%d\n", ip->protocol, src, dst,
                           dport);
        } else if (type == ETH_P_IPV6 && n >= 40) {
            const struct ip6_hdr *ip6 = (const struct ip6_hdr *)buf;
            int nxt = ip6->ip6_nxt;
            const unsigned char *l4h = buf + 40;
            if (nxt == IPPROTO_ICMPV6 && l4h < buf + n &&
                ((l4h[0] >= ND_ROUTER_SOLICIT && l4h[0] <= ND_REDIRECT) || l4h[0] == 143 ||
                 l4h[0] == MLD_LISTENER_QUERY || l4h[0] == MLD_LISTENER_REPORT))
                continue;
            if (ip6->ip6_dst.s6_addr[0] == 0xff)
                continue;
            inet_ntop(AF_INET6, &ip6->ip6_src, src, sizeof(src));
            inet_ntop(AF_INET6, &ip6->ip6_dst, dst, sizeof(dst));
            int dport =
                (nxt == IPPROTO_TCP || nxt == IPPROTO_UDP) && l4h + 4 <= buf + n ? l4h[2] << 8 | l4h[3] : -1;
            len = snprintf(line, sizeof(line), "v6 p=%d src=%s dst=%s dport=%d\n", nxt, src, dst, dport);
        }
        if (len > 0 && write(out, line, (size_t)len) != len)
            _exit(6);
    }
}

static void world_down(void)
{
    if (world_pid > 0) {
        kill(world_pid, SIGKILL);
        waitpid(world_pid, NULL, 0);
        world_pid = -1;
    }
    if (world_log >= 0)
        close(world_log);
    world_log = -1;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ip link del %s 2>/dev/null; ip netns del %s 2>/dev/null; true", world_link,
             world_ns);
    priv_sh(cmd);
}

/* The world: a netns behind the veth `he<pid>` (host 198.51.100.1, 3fff:0:113::1) holding
 * the allowed address .2 and the denied .3 (and ::2, ::3), with the recorder. */
static void world_up(void)
{
    if (priv_sh("command -v ip >/dev/null") != 0)
        tap_fail(__FILE__, __LINE__, "the test needs ip(8) to build its world namespace");
    snprintf(world_ns, sizeof(world_ns), "hutch-egress-%d", (int)getpid());
    snprintf(world_link, sizeof(world_link), "he%d", (int)getpid() % 100000);
    char undo[256];
    snprintf(undo, sizeof(undo),
             "ip netns pids %s 2>/dev/null | xargs -r kill -9; ip link del %s 2>/dev/null; "
             "ip netns del %s 2>/dev/null; true",
             world_ns, world_link, world_ns);
    priv_on_cleanup(undo);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "set -e; ip netns add %1$s; ip link add %2$s type veth peer name wv0 netns %1$s; "
             "ip addr add " HOST_NAT "/24 dev %2$s; ip addr add " WORLD6_PREFIX "1/64 dev %2$s nodad; "
             "ip link set %2$s up; ip -n %1$s link set lo up; "
             "ip -n %1$s addr add " ALLOWED "/24 dev wv0; ip -n %1$s addr add " DENIED "/24 dev wv0; "
             "ip -n %1$s addr add " ALLOWED6 "/64 dev wv0 nodad; ip -n %1$s addr add " DENIED6
             "/64 dev wv0 nodad; ip -n %1$s link set wv0 up",
             world_ns, world_link);
    sh(cmd);
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    fflush(stdout);
    world_pid = fork();
    ASSERT_OK(world_pid);
    if (world_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        char path[128];
        snprintf(path, sizeof(path), "/run/netns/%s", world_ns);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
            _exit(1);
        recorder(p[1]);
    }
    close(p[1]);
    world_log = p[0];
    static char buf[64];
    if (!priv_read_until(world_log, "ready\n", buf, sizeof(buf), 10000))
        tap_fail(__FILE__, __LINE__, "the world's recorder did not start");
}

/* What the world recorded since the last call (waits a moment for stragglers). */
static void world_collect(char *buf, size_t size)
{
    usleep(200 * 1000);
    priv_read_all(world_log, buf, size, 300);
}

/* Number of recorded lines that contain every one of the (up to two) needles. */
static int world_count(const char *log, const char *a, const char *b)
{
    int n = 0;
    for (const char *l = log; *l;) {
        size_t k = strcspn(l, "\n");
        char line[256];
        snprintf(line, sizeof(line), "%.*s", (int)k, l);
        if (strstr(line, a) && (!b || strstr(line, b)))
            n++;
        l += k + (l[k] == '\n');
    }
    return n;
}

/* Lines whose IPv4 source is not the host's NAT address: a spoofed packet got through. */
static int world_foreign_sources(const char *log)
{
    int n = 0;
    for (const char *l = log; *l;) {
        size_t k = strcspn(l, "\n");
        if (!strncmp(l, "v4 ", 3)) {
            const char *s = strstr(l, "src=");
            if (s && s < l + k && strncmp(s + 4, HOST_NAT " ", strlen(HOST_NAT) + 1) != 0)
                n++;
        }
        l += k + (l[k] == '\n');
    }
    return n;
}

static void print_log(const char *what, const char *log)
{
    printf("# %s:\n", what);
    for (const char *l = log; *l;) {
        size_t k = strcspn(l, "\n");
        printf("#   %.*s\n", (int)k, l);
        l += k + (l[k] == '\n');
    }
}

static void host_send(int family, int type, int proto, const char *ip, int port, const void *msg, size_t len)
{
    struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
    int s = socket(family, type | SOCK_CLOEXEC, proto);
    ASSERT_OK(s);
    if (family == AF_INET)
        ASSERT_EQ(inet_pton(AF_INET, ip, &s4.sin_addr), 1);
    else
        ASSERT_EQ(inet_pton(AF_INET6, ip, &s6.sin6_addr), 1);
    ssize_t r = family == AF_INET ? sendto(s, msg, len, 0, (struct sockaddr *)&s4, sizeof(s4))
                                  : sendto(s, msg, len, 0, (struct sockaddr *)&s6, sizeof(s6));
    ASSERT_EQ(r, (ssize_t)len);
    close(s);
}

/* The recorder sees every kind of packet the sandbox will try, sent here from the host: so
 * "nothing recorded" later means nothing arrived. */
static void world_self_check(void)
{
    static char log[65536];
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(8080) };
    inet_pton(AF_INET, DENIED, &sa.sin_addr);
    ASSERT_OK(connect(s, (struct sockaddr *)&sa, sizeof(sa)));
    char buf[16] = "";
    ASSERT_TRUE(priv_read_all(s, buf, sizeof(buf), 2000) > 0);
    ASSERT_STREQ(buf, "world\n");
    close(s);
    host_send(AF_INET, SOCK_DGRAM, 0, DENIED, 53, "x", 1);
    struct icmphdr echo = { .type = ICMP_ECHO };
    host_send(AF_INET, SOCK_RAW, IPPROTO_ICMP, DENIED, 0, &echo, sizeof(echo));
    host_send(AF_INET6, SOCK_DGRAM, 0, DENIED6, 53, "x", 1);
    world_collect(log, sizeof(log));
    ASSERT_TRUE(world_count(log, "v4 p=6 ", "dst=" DENIED " dport=8080") > 0);
    ASSERT_TRUE(world_count(log, "v4 p=17 ", "dst=" DENIED " dport=53") > 0);
    ASSERT_TRUE(world_count(log, "v4 p=1 ", "dst=" DENIED " ") > 0);
    ASSERT_TRUE(world_count(log, "v6 p=17 ", "dst=" DENIED6 " dport=53") > 0);
}

/* What runs inside, as the sandbox's root. Name resolution goes through the C library
 * (getent, NSS) with files only, so nothing ever asks a real DNS server. */
static const char script[] =
    "echo 'hosts: files' > /etc/nsswitch.conf; echo 'nameserver " ALLOWED "' > /etc/resolv.conf\n"
    /* The allowed address works: the policy is not simply "offline". */
    PROBE " connect " ALLOWED " 8080\n" PROBE " egress " ALLOWED " " DENIED " " DENIED6
    " 8080; echo egress=$?\n"
    /* An allowed name pointed at a denied address. */
    "printf '127.0.0.1 localhost\\n" DENIED " allowed.test\\n' > /etc/hosts\n"
    "set -- $(getent ahostsv4 allowed.test); echo resolved=$1; " PROBE " connect $1 8080\n"
    /* Rebinding: the same name, first the allowed address, then a denied one. */
    "printf '127.0.0.1 localhost\\n" ALLOWED " rebind.test\\n' > /etc/hosts\n"
    "set -- $(getent ahostsv4 rebind.test); echo first=$1; " PROBE " connect $1 8080\n"
    "printf '127.0.0.1 localhost\\n" DENIED " rebind.test\\n' > /etc/hosts\n"
    "set -- $(getent ahostsv4 rebind.test); echo second=$1; " PROBE " connect $1 8080\n"
    "true\n";

/* Checks that do not stop at the first failure: the sandbox's output and the world's log are
 * printed once, with every condition that failed (TAP keeps only the first 8 KiB a test prints,
 * so nothing is printed when all is well). */
static char failed_checks[2048];

static void check(bool ok, const char *what)
{
    if (!ok)
        snprintf(failed_checks + strlen(failed_checks), sizeof(failed_checks) - strlen(failed_checks),
                 "  %s\n", what);
}

static void run_bypasses(struct priv_env *env, struct runtime_spec *spec, const char *policy)
{
    static struct priv_result res;
    static char log[65536];
    const char *const argv[] = { "/bin/sh", "-c", script, NULL };
    spec->argv = argv;
    spec->net = RUNTIME_NET_ONLINE;
    priv_run(env, spec, &res);
    if (res.create_r < 0 || res.start_r < 0)
        tap_fail(__FILE__, __LINE__, "sandbox (%s): %s", policy, res.err.msg);
    world_collect(log, sizeof(log));
    failed_checks[0] = '\0';

    /* Inside: every attempt failed, the controls worked, the names resolved as planted. */
    const char *first = strstr(res.out, "connected " ALLOWED ":8080: world\n");
    check(first != NULL, "the allowed address was reachable");
    check(first && strstr(first + 1, "connected " ALLOWED ":8080: world\n"),
          "the rebinding name reached the allowed address first");
    check(strstr(res.out, "egress=0\n") && !strstr(res.out, "ESCAPE"), "every attempt of the probe failed");
    check(strstr(res.out, "resolved=" DENIED "\n"), "/etc/hosts pointed the allowed name at " DENIED);
    check(strstr(res.out, "first=" ALLOWED "\n"), "the rebinding name resolved to " ALLOWED " first");
    check(strstr(res.out, "second=" DENIED "\n"), "the rebinding name resolved to " DENIED " then");
    check(strstr(res.out, "failed " DENIED ":8080"), "connects by name to " DENIED " failed");
    check(!strstr(res.out, "connected " DENIED), "nothing connected to " DENIED);

    /* The world: the allowed connections arrived (from the NAT address), nothing else did:
     * no packet to a denied address, no IPv6, no UDP or ICMP, no spoofed source. */
    check(world_count(log, "v4 p=6 src=" HOST_NAT " dst=" ALLOWED " dport=8080", NULL) > 0,
          "the world saw the allowed connections");
    check(world_count(log, "dst=" DENIED " ", NULL) == 0, "no packet reached " DENIED);
    check(world_count(log, "v6 ", NULL) == 0, "no IPv6 packet reached the world");
    check(world_count(log, "p=17 ", NULL) == 0, "no UDP reached the world");
    check(world_count(log, "p=1 ", NULL) == 0, "no ICMP reached the world");
    check(world_foreign_sources(log) == 0, "no packet with a spoofed source reached the world");
    if (failed_checks[0]) {
        printf("# policy: %s\n", policy);
        print_log("the sandbox said", res.out);
        print_log("the world saw", log);
        tap_fail(__FILE__, __LINE__, "%s: failed:\n%s", policy, failed_checks);
    }
}

TEST(row19_egress_allow_list_bypass)
{
    struct priv_env env;
    priv_env_init(&env);
    world_up();
    world_self_check();
    struct runtime_spec spec;

    /* E2B's allow list: no internet but the allowed address. */
    priv_spec_init(&env, &spec, NULL);
    spec.deny_internet = true;
    spec.allow_out = (const char *const[]){ ALLOWED "/32", NULL };
    run_bypasses(&env, &spec, "deny_internet, allow_out " ALLOWED "/32");
    ASSERT_FALSE(priv_cgroup_exists(spec.id));

    /* A deny list: the internet, but not the denied addresses. */
    priv_spec_init(&env, &spec, NULL);
    spec.deny_out = (const char *const[]){ DENIED "/32", DENIED6 "/128", NULL };
    run_bypasses(&env, &spec, "deny_out " DENIED "/32 " DENIED6 "/128");
    ASSERT_FALSE(priv_cgroup_exists(spec.id));

    world_down();
    priv_env_release(&env);
}
