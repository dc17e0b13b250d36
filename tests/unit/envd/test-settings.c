#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "envd/envd.h"
#include "tap.h"

static int apply(const char *json)
{
    json_error_t e;
    json_t *j = json_loads(json, 0, &e);
    if (!j)
        tap_fail(__FILE__, __LINE__, "bad test JSON: %s", e.text);
    struct error_record err;
    int r = envd_settings_apply_init(j, &err);
    json_decref(j);
    return r;
}

static void check_str(char *got, const char *want)
{
    if (!want) {
        ASSERT_TRUE(got == NULL);
        return;
    }
    ASSERT_STREQ(got, want);
    free(got);
}

TEST(init_sets_and_merges)
{
    envd_settings_init("root");
    check_str(envd_settings_default_user(), "root");
    check_str(envd_settings_access_token(), NULL);
    ASSERT_OK(
        apply("{\"envVars\":{\"A\":\"1\",\"B\":\"2\"},\"accessToken\":\"t\",\"defaultUser\":\"nobody\","
              "\"defaultWorkdir\":\"/tmp\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"hyperloopIP\":\"x\"}"));
    check_str(envd_settings_access_token(), "t");
    check_str(envd_settings_default_user(), "nobody");
    check_str(envd_settings_default_workdir(), "/tmp");
    /* env vars merge; absent fields stay */
    ASSERT_OK(apply("{\"envVars\":{\"B\":\"3\",\"C\":\"4\"}}"));
    json_t *envs = envd_settings_env_vars();
    ASSERT_EQ(json_object_size(envs), 3);
    ASSERT_STREQ(json_string_value(json_object_get(envs, "A")), "1");
    ASSERT_STREQ(json_string_value(json_object_get(envs, "B")), "3");
    json_decref(envs);
    check_str(envd_settings_access_token(), "t");
    /* empty strings clear the token and workdir; an empty user keeps the current one */
    ASSERT_OK(apply("{\"accessToken\":\"\",\"defaultWorkdir\":\"\",\"defaultUser\":\"\"}"));
    check_str(envd_settings_access_token(), NULL);
    check_str(envd_settings_default_workdir(), NULL);
    check_str(envd_settings_default_user(), "nobody");
}

TEST(init_rejects_bad_bodies_atomically)
{
    envd_settings_init("root");
    ASSERT_OK(apply("{\"accessToken\":\"keep\"}"));
    ASSERT_EQ(apply("{\"accessToken\":\"new\",\"envVars\":{\"A\":1}}"), -EINVAL);
    ASSERT_EQ(apply("{\"accessToken\":\"new\",\"envVars\":{\"A=B\":\"1\"}}"), -EINVAL);
    ASSERT_EQ(apply("{\"accessToken\":5}"), -EINVAL);
    ASSERT_EQ(apply("{\"accessToken\":\"new\",\"defaultWorkdir\":\"relative\"}"), -EINVAL);
    ASSERT_EQ(apply("{\"envVars\":[]}"), -EINVAL);
    check_str(envd_settings_access_token(), "keep");
    /* the copy handed out is the caller's own */
    json_t *envs = envd_settings_env_vars();
    json_object_set_new(envs, "MUTATED", json_string("x"));
    json_decref(envs);
    envs = envd_settings_env_vars();
    ASSERT_TRUE(json_object_get(envs, "MUTATED") == NULL);
    json_decref(envs);
}

TEST(token_check_without_connection)
{
    envd_settings_init("root");
    ASSERT_OK(apply("{\"accessToken\":\"\"}"));
    ASSERT_TRUE(envd_request_has_token(NULL));
    ASSERT_OK(apply("{\"accessToken\":\"x\"}"));
    ASSERT_FALSE(envd_request_has_token(NULL));
}
