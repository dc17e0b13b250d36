#include <stdlib.h>

#include "gateway/gateway.h"
#include "tap.h"

TEST(header_routing)
{
    struct gw_target t;
    ASSERT_EQ(gw_route(NULL, "abc123", "49983", "localhost", &t), GW_ROUTED);
    ASSERT_STREQ(t.sandbox_id, "abc123");
    ASSERT_EQ(t.port, 49983);
    ASSERT_EQ(gw_route("e2b.test", "abc", "8080", "3000-other.e2b.test", &t), GW_ROUTED);
    ASSERT_STREQ(t.sandbox_id, "abc");
    ASSERT_EQ(t.port, 8080);
}

TEST(one_header_alone_is_a_bad_request)
{
    struct gw_target t;
    ASSERT_EQ(gw_route(NULL, "abc", NULL, NULL, &t), GW_BAD_ROUTE);
    ASSERT_STREQ(t.error, "missing header E2b-Sandbox-Port");
    ASSERT_EQ(gw_route(NULL, NULL, "49983", NULL, &t), GW_BAD_ROUTE);
    ASSERT_STREQ(t.error, "missing header E2b-Sandbox-Id");
}

TEST(bad_ids_and_ports)
{
    struct gw_target t;
    const char *ids[] = { "",
                          "ABC",
                          "a/b",
                          "a..b",
                          "a b",
                          "x-y",
                          "0123456789012345678901234567890123456789012345678901234567890123456789" };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        ASSERT_EQ(gw_route(NULL, ids[i], "80", NULL, &t), GW_BAD_ROUTE);
    const char *ports[] = { "", "0", "65536", "-1", "80a", "+80", "999999" };
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
        ASSERT_EQ(gw_route(NULL, "abc", ports[i], NULL, &t), GW_BAD_ROUTE);
}

TEST(host_routing)
{
    struct gw_target t;
    ASSERT_EQ(gw_route("sbx.example", NULL, NULL, "8080-abc123.sbx.example", &t), GW_ROUTED);
    ASSERT_STREQ(t.sandbox_id, "abc123");
    ASSERT_EQ(t.port, 8080);
    ASSERT_EQ(gw_route("sbx.example", NULL, NULL, "49983-z9.SBX.example:3000", &t), GW_ROUTED);
    ASSERT_STREQ(t.sandbox_id, "z9");
    ASSERT_EQ(gw_route("sbx.example", NULL, NULL, "api.sbx.example", &t), GW_NOT_SANDBOX_TRAFFIC);
    ASSERT_EQ(gw_route("sbx.example", NULL, NULL, "127.0.0.1:3000", &t), GW_NOT_SANDBOX_TRAFFIC);
    ASSERT_EQ(gw_route("sbx.example", NULL, NULL, "8080-abc.evil.example", &t), GW_NOT_SANDBOX_TRAFFIC);
    ASSERT_EQ(gw_route("sbx.example", NULL, NULL, "8080-abc.xsbx.example", &t), GW_NOT_SANDBOX_TRAFFIC);
    ASSERT_EQ(gw_route("sbx.example", NULL, NULL, "99999-abc.sbx.example", &t), GW_BAD_ROUTE);
    ASSERT_EQ(gw_route(NULL, NULL, NULL, "8080-abc.sbx.example", &t), GW_NOT_SANDBOX_TRAFFIC);
}

TEST(internal_paths_only_on_envd_port)
{
    ASSERT_TRUE(gw_path_is_internal(49983, "/init"));
    ASSERT_TRUE(gw_path_is_internal(49983, "//init/"));
    ASSERT_TRUE(gw_path_is_internal(49983, "/INIT"));
    ASSERT_TRUE(gw_path_is_internal(49983, "/freeze"));
    ASSERT_TRUE(gw_path_is_internal(49983, "/upgrade"));
    ASSERT_FALSE(gw_path_is_internal(49983, "/initx"));
    ASSERT_FALSE(gw_path_is_internal(49983, "/files"));
    ASSERT_FALSE(gw_path_is_internal(49983, "/process.Process/Start"));
    ASSERT_FALSE(gw_path_is_internal(8080, "/init"));
}

TEST(mask_host_replaces_every_port_placeholder)
{
    char *h = gw_mask_host("example.test:${PORT}", 8000);
    ASSERT_STREQ(h, "example.test:8000");
    free(h);
    h = gw_mask_host("${PORT}.a.test:${PORT}", 3);
    ASSERT_STREQ(h, "3.a.test:3");
    free(h);
    h = gw_mask_host("plain.test", 65535);
    ASSERT_STREQ(h, "plain.test");
    free(h);
    h = gw_mask_host("${PORT", 80);
    ASSERT_STREQ(h, "${PORT");
    free(h);
}
