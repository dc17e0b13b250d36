/* Plan validation and the pieces of the backend that need no sandbox: everything here is
 * decided before clone3, so a bad request must fail here with EINVAL/ERANGE and nothing made. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "priv-util.h"
#include "runtime/ns/ns.h"
#include "tap.h"

#include "common/banned.h"

static struct runtime_layer layers[] = { { "/tmp", "/" }, { "/usr", "/usr" } };

static void spec_ok(struct runtime_spec *s)
{
    memset(s, 0, sizeof(*s));
    s->id = "plan-test";
    s->layers = layers;
    s->n_layers = 2;
    s->limits.disk_bytes = 16u << 20;
    static const char *const argv[] = { "/bin/true", NULL };
    s->argv = argv;
    s->stdin_fd = s->stdout_fd = s->stderr_fd = -1;
}

static int plan(const struct runtime_spec *s, struct error_record *err)
{
    struct ns_plan *p = NULL;
    struct runtime_config cfg = { .run_dir = "/tmp/hutch-plan-test" };
    int r = ns_plan_new(&cfg, s, &p, err);
    ns_plan_free(p);
    return r;
}

TEST(plan_accepts_a_good_spec)
{
    if (geteuid() != 0)
        SKIP("needs root");
    struct runtime_spec s;
    spec_ok(&s);
    struct error_record err;
    error_clear(&err);
    ASSERT_OK(plan(&s, &err));
    struct ns_plan *p = NULL;
    struct runtime_config cfg = { .run_dir = "/tmp/hutch-plan-test", .uid_base = 200000 };
    s.slot = 3;
    ASSERT_OK(ns_plan_new(&cfg, &s, &p, &err));
    ASSERT_EQ(p->host_uid, 200000 + 3 * 65536);
    ASSERT_EQ(p->n_mounts, 2);
    ASSERT_STREQ(p->mounts[0].target, "/");
    ASSERT_STREQ(p->mounts[1].target, "/usr");
    ASSERT_STREQ(p->hostname, "plan-test");
    ASSERT_TRUE(p->seccomp.len > 100);
    ASSERT_STREQ(p->path, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    ns_plan_free(p);
    rmdir("/tmp/hutch-plan-test/root");
    rmdir("/tmp/hutch-plan-test");
}

TEST(plan_rejects_bad_specs)
{
    if (geteuid() != 0)
        SKIP("needs root");
    struct runtime_spec s;
    struct error_record err;
#define REJECT(expected, ...)                                                                                \
    do {                                                                                                     \
        spec_ok(&s);                                                                                         \
        __VA_ARGS__;                                                                                         \
        error_clear(&err);                                                                                   \
        int r_ = plan(&s, &err);                                                                             \
        if (r_ != -(expected))                                                                               \
            tap_fail(__FILE__, __LINE__, "%s: got %d (%s), expected %d", #__VA_ARGS__, r_, err.msg,          \
                     -(expected));                                                                           \
    } while (0)
    REJECT(EINVAL, s.id = "");
    REJECT(EINVAL, s.id = "UPPER");
    REJECT(EINVAL, s.id = "a/b");
    REJECT(EINVAL, s.id = "a-very-long-id-that-is-longer-than-forty-eight-characters");
    REJECT(EINVAL, s.hostname = "bad host");
    REJECT(ERANGE, s.slot = 5000);
    REJECT(ERANGE, s.uid = 65536);
    REJECT(EINVAL, s.limits.disk_bytes = 0);
    REJECT(EINVAL, s.limits.memory_bytes = 1024);
    REJECT(EINVAL, s.argv = (const char *const[]){ NULL });
    REJECT(EINVAL, s.argv = (const char *const[]){ "", NULL });
    REJECT(EINVAL, s.env = (const char *const[]){ "NOEQUALS", NULL });
    REJECT(EINVAL, s.env = (const char *const[]){ "=value", NULL });
    REJECT(EINVAL, s.cwd = "relative");
    REJECT(EINVAL, s.n_layers = 0);
    REJECT(EINVAL, layers[0].target = "/usr/../etc"; s.layers = layers);
    layers[0].target = "/";
    static struct runtime_layer first_not_root[] = { { "/usr", "/usr" }, { "/tmp", "/" } };
    REJECT(EINVAL, s.layers = first_not_root);
    static struct runtime_layer relative[] = { { "tmp", "/" } };
    REJECT(EINVAL, s.layers = relative; s.n_layers = 1);
    static struct runtime_layer missing[] = { { "/no/such/layer", "/" } };
    REJECT(ENOENT, s.layers = missing; s.n_layers = 1);
    REJECT(EBADF, s.stdout_fd = 999);
    REJECT(EINVAL, s.net = (enum runtime_net_mode)7);
    REJECT(EINVAL, s.net = RUNTIME_NET_ONLINE; s.allow_out = (const char *const[]){ "10.0.0.0/33", NULL });
    REJECT(EINVAL, s.net = RUNTIME_NET_ONLINE; s.deny_out = (const char *const[]){ "1.2.3.4/8 drop", NULL });
    REJECT(EINVAL, s.net = RUNTIME_NET_ONLINE; s.https_ports = (const uint16_t[]){ 8443, 80, 0 });
    REJECT(EINVAL, s.net = RUNTIME_NET_ONLINE; s.https_ports = (const uint16_t[]){ 8443, 9443, 8443, 0 });
#undef REJECT
    rmdir("/tmp/hutch-plan-test/root");
    rmdir("/tmp/hutch-plan-test");
}

TEST(cidrs_are_normalised)
{
    char **v = NULL;
    struct error_record err;
    ASSERT_OK(ns_net_cidrs(
        (const char *const[]){ "10.1.2.3/8", "1.2.3.4", "2001:db8::1/32", "::1", "0.0.0.0/0", NULL }, &v,
        &err));
    ASSERT_STREQ(v[0], "10.0.0.0/8");
    ASSERT_STREQ(v[1], "1.2.3.4/32");
    ASSERT_STREQ(v[2], "2001:db8::/32");
    ASSERT_STREQ(v[3], "::1/128");
    ASSERT_STREQ(v[4], "0.0.0.0/0");
    ASSERT_TRUE(v[5] == NULL);
    ns_strv_free(v);
    static const char *const bad[] = { "",       "1.2.3",           "1.2.3.4/",  "1.2.3.4/-1", "1.2.3.4/8x",
                                       "::/129", "1.2.3.4/8;flush", "a.b.c.d/8", "1.2.3.4 /8" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = NULL;
        if (ns_net_cidrs((const char *const[]){ bad[i], NULL }, &v, &err) != -EINVAL)
            tap_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
    }
}

TEST(https_ports_are_checked_and_443_left_out)
{
    uint16_t out[RUNTIME_HTTPS_PORTS_MAX + 1];
    struct error_record err;
    ASSERT_OK(ns_plan_https_ports((const uint16_t[]){ 8443, 443, 3000, 0 }, out, &err));
    ASSERT_EQ(out[0], 8443);
    ASSERT_EQ(out[1], 3000);
    ASSERT_EQ(out[2], 0);
    ASSERT_OK(ns_plan_https_ports(NULL, out, &err));
    ASSERT_EQ(out[0], 0);
    uint16_t many[RUNTIME_HTTPS_PORTS_MAX + 2] = { 0 };
    for (size_t i = 0; i < RUNTIME_HTTPS_PORTS_MAX; i++)
        many[i] = (uint16_t)(1000 + i);
    ASSERT_OK(ns_plan_https_ports(many, out, &err));
    ASSERT_EQ(out[RUNTIME_HTTPS_PORTS_MAX - 1], 1000 + RUNTIME_HTTPS_PORTS_MAX - 1);
    many[RUNTIME_HTTPS_PORTS_MAX] = 2000;
    ASSERT_EQ(ns_plan_https_ports(many, out, &err), -EINVAL);
    ASSERT_EQ(ns_plan_https_ports((const uint16_t[]){ 80, 0 }, out, &err), -EINVAL);
    ASSERT_EQ(ns_plan_https_ports((const uint16_t[]){ 1, 1, 0 }, out, &err), -EINVAL);
}

TEST(network_pool_slots)
{
    struct ns_plan p;
    memset(&p, 0, sizeof(p));
    struct error_record err;
    struct runtime_config cfg = { .net_pool = "10.200.0.0/16" };
    ASSERT_OK(ns_net_plan_addresses(&cfg, 1, &p, &err));
    ASSERT_EQ(p.host_ip, htonl(0x0ac80005u));
    ASSERT_EQ(p.sandbox_ip, htonl(0x0ac80006u));
    ASSERT_STREQ(p.veth, "hv1");
    ASSERT_STREQ(p.net_pool, "10.200.0.0/16");
    cfg.net_pool = "10.200.0.0/30";
    ASSERT_EQ(ns_net_plan_addresses(&cfg, 1, &p, &err), -ERANGE);
    cfg.net_pool = "10.200.0.0";
    ASSERT_EQ(ns_net_plan_addresses(&cfg, 0, &p, &err), -EINVAL);
    /* A pool over the host's own network is refused. */
    cfg.net_pool = "127.0.0.0/8";
    ASSERT_EQ(ns_net_plan_addresses(&cfg, 0, &p, &err), -EADDRINUSE);
}

TEST(kernel_releases)
{
    ASSERT_EQ(ns_kernel_version("6.1.0-27-amd64"), NS_KERNEL_VERSION(6, 1));
    ASSERT_EQ(ns_kernel_version("5.15.0-91-generic"), NS_KERNEL_VERSION(5, 15));
    ASSERT_EQ(ns_kernel_version("5.14.0-427.el9.x86_64"), NS_KERNEL_VERSION(5, 14));
    ASSERT_EQ(ns_kernel_version("6.12.117+deb13-cloud-amd64"), NS_KERNEL_VERSION(6, 12));
    ASSERT_EQ(ns_kernel_version("7.3.4+deb13-cloud-amd64"), NS_KERNEL_VERSION(7, 3));
    ASSERT_EQ(ns_kernel_version("6.6"), NS_KERNEL_VERSION(6, 6));
    /* Ordered as versions: 6.10 is after 6.9, 7.0 after 6.99. */
    ASSERT_TRUE(ns_kernel_version("6.10.0") > ns_kernel_version("6.9.12"));
    ASSERT_TRUE(ns_kernel_version("7.0") > ns_kernel_version("6.99"));
    ASSERT_EQ(ns_kernel_version("6"), 0u);
    ASSERT_EQ(ns_kernel_version(""), 0u);
    ASSERT_EQ(ns_kernel_version("x.y"), 0u);
    ASSERT_EQ(ns_kernel_version(NULL), 0u);
    /* This host runs sandboxes (the other tests), so it passes its own check. */
    struct error_record err;
    ASSERT_OK(runtime_ns_check_host(&err));
}
