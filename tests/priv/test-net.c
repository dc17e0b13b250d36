/* Online networking against a "world" network namespace the test creates (203.0.113.0/24,
 * TEST-NET-3, behind a veth on the host): egress reaches it through NAT unless the lists say
 * otherwise; private, link-local, metadata and host addresses and the sandbox's own gateway stay
 * blocked even when allowed; neighbours cannot reach each other; destroy removes the veth and
 * the nftables objects. Traffic only ever goes to namespaces this test made. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "priv-util.h"
#include "runtime/ns/ns.h"
#include "tap.h"

#include "common/banned.h"

static char world_ns[64], world_link[16];
static pid_t world_server = -1;

static void sh(const char *cmd)
{
    int st = priv_sh(cmd);
    if (st != 0)
        tap_fail(__FILE__, __LINE__, "`%s` failed (%d)", cmd, st);
}

static void world_down(void)
{
    if (world_server > 0) {
        kill(world_server, SIGKILL);
        waitpid(world_server, NULL, 0);
    }
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ip link del %s 2>/dev/null; ip netns del %s 2>/dev/null", world_link,
             world_ns);
    priv_sh(cmd);
}

/* The world: a netns with 203.0.113.2 serving "world" on ports 8080 and 8081. */
static void world_up(void)
{
    if (priv_sh("command -v ip >/dev/null") != 0)
        SKIP("the test needs ip(8) to build its world namespace");
    snprintf(world_ns, sizeof(world_ns), "hutch-world-%d", (int)getpid());
    snprintf(world_link, sizeof(world_link), "hw%d", (int)getpid() % 100000);
    char cmd[1024];
    snprintf(
        cmd, sizeof(cmd),
        "ip netns add %s && ip link add %s type veth peer name wv0 netns %s && "
        "ip addr add 203.0.113.1/24 dev %s && ip link set %s up && "
        "ip -n %s addr add 203.0.113.2/24 dev wv0 && ip -n %s link set wv0 up && ip -n %s link set lo up",
        world_ns, world_link, world_ns, world_link, world_link, world_ns, world_ns, world_ns);
    char undo[256];
    snprintf(undo, sizeof(undo),
             "ip netns pids %s 2>/dev/null | xargs -r kill -9; ip link del %s 2>/dev/null; "
             "ip netns del %s 2>/dev/null; true",
             world_ns, world_link, world_ns);
    priv_on_cleanup(undo);
    sh(cmd);
    world_server = fork();
    if (world_server == 0) {
        char path[128];
        snprintf(path, sizeof(path), "/run/netns/%s", world_ns);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
            _exit(1);
        int socks[2];
        for (int i = 0; i < 2; i++) {
            socks[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)(8080 + i)) };
            inet_pton(AF_INET, "203.0.113.2", &sa.sin_addr);
            if (bind(socks[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(socks[i], 16) < 0)
                _exit(2);
        }
        for (;;) {
            fd_set fds;
            FD_ZERO(&fds);
            FD_SET(socks[0], &fds);
            FD_SET(socks[1], &fds);
            if (select(socks[1] + 1, &fds, NULL, NULL, NULL) <= 0)
                continue;
            for (int i = 0; i < 2; i++)
                if (FD_ISSET(socks[i], &fds)) {
                    int c = accept(socks[i], NULL, NULL);
                    if (c >= 0) {
                        if (write(c, "world\n", 6) < 0)
                            _exit(3);
                        close(c);
                    }
                }
        }
    }
    usleep(100 * 1000);
}

/* Runs `hutch-probe connect ip port` for each target in one online sandbox. */
static void probe_targets(struct priv_env *env, struct runtime_spec *spec, const char *script,
                          struct priv_result *res)
{
    const char *const argv[] = { "/bin/sh", "-c", script, NULL };
    spec->argv = argv;
    priv_run(env, spec, res);
    if (res->create_r < 0 || res->start_r < 0)
        tap_fail(__FILE__, __LINE__, "sandbox: %s", res->err.msg);
}

static void assert_has(const char *out, const char *needle)
{
    if (!strstr(out, needle))
        tap_fail(__FILE__, __LINE__, "expected \"%s\" in:\n%s", needle, out);
}

static bool nft_has(const char *needle)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "nft list ruleset 2>/dev/null | grep -q '%s'", needle);
    return priv_sh(cmd) == 0;
}

TEST(online_egress_policy)
{
    struct priv_env env;
    priv_env_init(&env);
    world_up();
    struct runtime_spec spec;
    static struct priv_result res;
    char script[2048], gw[INET_ADDRSTRLEN];

    /* Default: the internet (the world) is reachable, everything private is not. */
    priv_spec_init(&env, &spec, NULL);
    spec.net = RUNTIME_NET_ONLINE;
    struct in_addr g = { htonl(0x0ac80000u + 4u * spec.slot + 1) };
    inet_ntop(AF_INET, &g, gw, sizeof(gw));
    snprintf(script, sizeof(script),
             "grep -c : /proc/net/dev; " PROBE " connect 203.0.113.2 8080; " PROBE " connect %s 22; " PROBE
             " connect 169.254.169.254 80; " PROBE " connect 192.0.2.2 22; " PROBE
             " connect 203.0.113.1 22; " PROBE " connect 127.0.0.1 1; true",
             gw);
    probe_targets(&env, &spec, script, &res);
    printf("%s", res.out);
    assert_has(res.out, "connected 203.0.113.2:8080: world");
    char want[128];
    snprintf(want, sizeof(want), "failed %s:22", gw);
    assert_has(res.out, want);
    assert_has(res.out, "failed 169.254.169.254:80");
    assert_has(res.out, "failed 192.0.2.2:22");
    assert_has(res.out, "failed 203.0.113.1:22");
    ASSERT_FALSE(if_nametoindex(spec.id) > 0);

    /* deny_out wins over the default; a bare address is a /32. */
    priv_spec_init(&env, &spec, NULL);
    spec.net = RUNTIME_NET_ONLINE;
    spec.deny_out = (const char *const[]){ "203.0.113.2", NULL };
    snprintf(script, sizeof(script), PROBE " connect 203.0.113.2 8080; true");
    probe_targets(&env, &spec, script, &res);
    printf("%s", res.out);
    assert_has(res.out, "failed 203.0.113.2:8080");

    /* No internet, an allow list: only the allowed address, and allowing a private range
     * (or everything) does not open it. */
    priv_spec_init(&env, &spec, NULL);
    spec.net = RUNTIME_NET_ONLINE;
    spec.deny_internet = true;
    spec.allow_out = (const char *const[]){ "203.0.113.2/32", "10.0.0.0/8", "0.0.0.0/0", NULL };
    g.s_addr = htonl(0x0ac80000u + 4u * spec.slot + 1);
    inet_ntop(AF_INET, &g, gw, sizeof(gw));
    snprintf(script, sizeof(script),
             PROBE " connect 203.0.113.2 8080; " PROBE " connect %s 22; " PROBE
                   " connect 169.254.169.254 80; true",
             gw);
    probe_targets(&env, &spec, script, &res);
    printf("%s", res.out);
    assert_has(res.out, "connected 203.0.113.2:8080: world");
    snprintf(want, sizeof(want), "failed %s:22", gw);
    assert_has(res.out, want);
    assert_has(res.out, "failed 169.254.169.254:80");

    priv_spec_init(&env, &spec, NULL);
    spec.net = RUNTIME_NET_ONLINE;
    spec.deny_internet = true;
    snprintf(script, sizeof(script), PROBE " connect 203.0.113.2 8080; true");
    probe_targets(&env, &spec, script, &res);
    printf("%s", res.out);
    assert_has(res.out, "failed 203.0.113.2:8080");

    /* Invalid CIDRs never reach nftables. */
    priv_spec_init(&env, &spec, (const char *const[]){ "/bin/true", NULL });
    spec.net = RUNTIME_NET_ONLINE;
    spec.allow_out = (const char *const[]){ "1.2.3.4/8; flush ruleset", NULL };
    struct runtime_sandbox *sb = NULL;
    struct error_record err;
    ASSERT_EQ(runtime_ns_ops.create(&env.cfg, &spec, &sb, &err), -EINVAL);
    world_down();
    priv_env_release(&env);
}

TEST(online_neighbours_and_teardown)
{
    struct priv_env env;
    priv_env_init(&env);
    world_up();
    struct runtime_spec a;
    priv_spec_init(&env, &a, (const char *const[]){ PROBE, "listen", "8080", NULL });
    a.net = RUNTIME_NET_ONLINE;
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    a.stdout_fd = p[1];
    struct runtime_sandbox *sa = NULL;
    struct error_record err;
    if (runtime_ns_ops.create(&env.cfg, &a, &sa, &err) < 0)
        tap_fail(__FILE__, __LINE__, "create: %s", err.msg);
    close(p[1]);
    ASSERT_OK(runtime_ns_ops.start(sa, &err));
    static char buf[4096];
    ASSERT_TRUE(priv_read_until(p[0], "ready\n", buf, sizeof(buf), 10000));
    char veth[16];
    snprintf(veth, sizeof(veth), "hv%u", a.slot);
    ASSERT_TRUE(if_nametoindex(veth) > 0);
    char chain[80];
    snprintf(chain, sizeof(chain), "sb_%s", a.id);
    for (char *c = chain; *c; c++)
        if (*c == '-')
            *c = '_';
    ASSERT_TRUE(nft_has(chain));

    /* A second sandbox on A's slot fails (its veth name is taken) and leaves A's veth and
     * chain alone. */
    struct runtime_spec dup;
    priv_spec_init(&env, &dup, (const char *const[]){ "/bin/true", NULL });
    dup.net = RUNTIME_NET_ONLINE;
    dup.slot = a.slot;
    struct runtime_sandbox *sdup = NULL;
    ASSERT_EQ(runtime_ns_ops.create(&env.cfg, &dup, &sdup, &err), -EEXIST);
    ASSERT_TRUE(if_nametoindex(veth) > 0);
    ASSERT_TRUE(nft_has(chain));

    /* B, online, cannot reach A's listener on A's address. */
    struct runtime_spec b;
    static struct priv_result res;
    priv_spec_init(&env, &b, NULL);
    b.net = RUNTIME_NET_ONLINE;
    char script[256], aip[INET_ADDRSTRLEN];
    struct in_addr ai = { htonl(0x0ac80000u + 4u * a.slot + 2) };
    inet_ntop(AF_INET, &ai, aip, sizeof(aip));
    snprintf(script, sizeof(script), PROBE " connect %s 8080; true", aip);
    probe_targets(&env, &b, script, &res);
    printf("%s", res.out);
    char want[64];
    snprintf(want, sizeof(want), "failed %s:8080", aip);
    assert_has(res.out, want);
    /* The host cannot either (only connect(), through setns, reaches inside). */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(8080), .sin_addr = ai };
    struct timeval tv = { 1, 0 };
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ASSERT_TRUE(connect(s, (struct sockaddr *)&sin, sizeof(sin)) < 0);
    close(s);
    int fd = runtime_ns_ops.connect(sa, 8080, &err);
    ASSERT_OK(fd);
    ASSERT_TRUE(priv_read_all(fd, buf, sizeof(buf), 5000) > 0);
    ASSERT_STREQ(buf, "hello from inside\n");
    close(fd);

    ASSERT_OK(runtime_ns_ops.destroy(sa));
    close(p[0]);
    ASSERT_EQ(if_nametoindex(veth), 0);
    ASSERT_FALSE(nft_has(chain));
    ASSERT_FALSE(priv_cgroup_exists(a.id));
    world_down();
    priv_env_release(&env);
}

TEST(online_cleanup_after_owner_killed)
{
    struct priv_env env;
    priv_env_init(&env);
    struct runtime_spec spec;
    priv_spec_init(&env, &spec, (const char *const[]){ "/bin/sleep", "1000", NULL });
    spec.net = RUNTIME_NET_ONLINE;
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    pid_t owner = fork();
    if (owner == 0) {
        struct runtime_sandbox *sb = NULL;
        struct error_record err;
        if (runtime_ns_ops.create(&env.cfg, &spec, &sb, &err) < 0 || runtime_ns_ops.start(sb, &err) < 0)
            _exit(1);
        if (write(p[1], "x", 1) < 0)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char c;
    ASSERT_EQ(read(p[0], &c, 1), 1);
    close(p[0]);
    kill(owner, SIGKILL);
    waitpid(owner, NULL, 0);
    char veth[16], chain[80];
    snprintf(veth, sizeof(veth), "hv%u", spec.slot);
    snprintf(chain, sizeof(chain), "sb_%s", spec.id);
    for (char *q = chain; *q; q++)
        if (*q == '-')
            *q = '_';
    ASSERT_TRUE(if_nametoindex(veth) > 0);
    ASSERT_TRUE(nft_has(chain));
    ASSERT_TRUE(runtime_ns_cleanup(&env.cfg) >= 1);
    ASSERT_FALSE(nft_has(chain));
    ASSERT_FALSE(priv_cgroup_exists(spec.id));
    ASSERT_EQ(priv_count_procs_in_range(priv_slot_uid(&env, spec.slot)), 0);
    /* The veth died with the sandbox's network namespace (asynchronously in the kernel). */
    for (int i = 0; i < 100 && if_nametoindex(veth) > 0; i++)
        usleep(20 * 1000);
    ASSERT_EQ(if_nametoindex(veth), 0);
    priv_env_release(&env);
}

TEST(online_after_ruleset_flushed)
{
    struct priv_env env;
    priv_env_init(&env);
    world_up();
    struct runtime_spec spec;
    static struct priv_result res;
    priv_spec_init(&env, &spec, NULL);
    spec.net = RUNTIME_NET_ONLINE;
    probe_targets(&env, &spec, PROBE " connect 203.0.113.2 8080; true", &res);
    assert_has(res.out, "connected 203.0.113.2:8080: world");
    /* An operator flushes nftables: the next sandbox reinstalls the base, filters included. */
    sh("nft delete table inet hutch");
    priv_spec_init(&env, &spec, NULL);
    spec.net = RUNTIME_NET_ONLINE;
    probe_targets(&env, &spec, PROBE " connect 203.0.113.2 8080; " PROBE " connect 169.254.169.254 80; true",
                  &res);
    printf("%s", res.out);
    assert_has(res.out, "connected 203.0.113.2:8080: world");
    assert_has(res.out, "failed 169.254.169.254:80");
    world_down();
    priv_env_release(&env);
}
