#include "api/api.h"
#include "tap.h"

static bool match(const char *pattern, const char *path, const char **params)
{
    static char scratch[256];
    return api_route_match(pattern, path, scratch, params);
}

TEST(literal_paths)
{
    const char *p[API_MAX_PARAMS] = { 0 };
    ASSERT_TRUE(match("/health", "/health", p));
    ASSERT_FALSE(match("/health", "/health/", p));
    ASSERT_FALSE(match("/health", "/healthz", p));
    ASSERT_FALSE(match("/health", "/", p));
    ASSERT_FALSE(match("/v2/sandboxes", "/v2", p));
}

TEST(parameters)
{
    const char *p[API_MAX_PARAMS] = { 0 };
    ASSERT_TRUE(match("/sandboxes/{id}/timeout", "/sandboxes/abc123/timeout", p));
    ASSERT_STREQ(p[0], "abc123");
    ASSERT_TRUE(match("/templates/{t}/builds/{b}/status", "/templates/x/builds/y/status", p));
    ASSERT_STREQ(p[0], "x");
    ASSERT_STREQ(p[1], "y");
}

TEST(parameter_needs_one_nonempty_segment)
{
    const char *p[API_MAX_PARAMS] = { 0 };
    ASSERT_FALSE(match("/sandboxes/{id}", "/sandboxes/", p));
    ASSERT_FALSE(match("/sandboxes/{id}", "/sandboxes//", p));
    ASSERT_FALSE(match("/sandboxes/{id}", "/sandboxes/a/b", p));
    ASSERT_FALSE(match("/sandboxes/{id}/timeout", "/sandboxes/a", p));
}
