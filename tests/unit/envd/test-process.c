#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "envd/process.h"
#include "tap.h"

static char *end_of(int wstatus)
{
    json_t *j = envd_process_end_event(wstatus);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

/* Builds wait statuses as the kernel does. */
#define EXITED(n) ((n) << 8)
#define SIGNALED(s) (s)

TEST(end_event_formats)
{
    char *s = end_of(EXITED(0));
    ASSERT_STREQ(s, "{\"event\":{\"end\":{\"exited\":true,\"status\":\"exit status 0\"}}}");
    free(s);
    s = end_of(EXITED(3));
    ASSERT_STREQ(s, "{\"event\":{\"end\":{\"error\":\"exit status 3\",\"exitCode\":3,\"exited\":true,"
                    "\"status\":\"exit status 3\"}}}");
    free(s);
    s = end_of(SIGNALED(SIGKILL));
    ASSERT_STREQ(
        s,
        "{\"event\":{\"end\":{\"error\":\"signal: killed\",\"exitCode\":-1,\"status\":\"signal: killed\"}}}");
    free(s);
    s = end_of(SIGNALED(SIGTERM));
    ASSERT_TRUE(strstr(s, "\"status\":\"signal: terminated\"") != NULL);
    free(s);
    s = end_of(SIGNALED(SIGSEGV) | 0x80);
    ASSERT_TRUE(strstr(s, "\"status\":\"signal: segmentation fault (core dumped)\"") != NULL);
    free(s);
    s = end_of(SIGNALED(40));
    ASSERT_TRUE(strstr(s, "\"status\":\"signal: signal 40\"") != NULL);
    free(s);
}

TEST(go_signal_names)
{
    ASSERT_STREQ(envd_go_signal_name(SIGINT), "interrupt");
    ASSERT_STREQ(envd_go_signal_name(SIGHUP), "hangup");
    ASSERT_STREQ(envd_go_signal_name(SIGABRT), "aborted");
    ASSERT_STREQ(envd_go_signal_name(SIGPIPE), "broken pipe");
    ASSERT_TRUE(envd_go_signal_name(0) == NULL);
    ASSERT_TRUE(envd_go_signal_name(64) == NULL);
}

static const char *get(char **env, const char *name)
{
    size_t n = strlen(name);
    for (; *env; env++)
        if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
            return *env + n + 1;
    return NULL;
}

static size_t count(char **env)
{
    size_t n = 0;
    while (env[n])
        n++;
    return n;
}

TEST(env_layering)
{
    struct envd_user u = { .uid = 1000, .gid = 1000 };
    snprintf(u.name, sizeof(u.name), "user");
    snprintf(u.home, sizeof(u.home), "/home/user");
    json_t *sandbox = json_pack("{s:s, s:s, s:s}", "A", "sandbox", "B", "sandbox", "HOME", "/override");
    json_t *req = json_pack("{s:s, s:s}", "B", "request", "C", "c=d");
    int err = 0;
    char **env = envd_process_build_env(&u, "/bin:/usr/bin", sandbox, req, &err);
    ASSERT_TRUE(env != NULL);
    ASSERT_STREQ(get(env, "PATH"), "/bin:/usr/bin");
    ASSERT_STREQ(get(env, "HOME"), "/override"); /* sandbox envs beat envd's */
    ASSERT_STREQ(get(env, "USER"), "user");
    ASSERT_STREQ(get(env, "LOGNAME"), "user");
    ASSERT_STREQ(get(env, "A"), "sandbox");
    ASSERT_STREQ(get(env, "B"), "request"); /* request envs beat sandbox ones */
    ASSERT_STREQ(get(env, "C"), "c=d");
    ASSERT_EQ(count(env), 7); /* no duplicates */
    ASSERT_STREQ(env[0], "PATH=/bin:/usr/bin");
    envd_strv_free(env);

    env = envd_process_build_env(&u, NULL, NULL, NULL, &err);
    ASSERT_TRUE(get(env, "PATH") != NULL && strlen(get(env, "PATH")) > 0);
    ASSERT_EQ(count(env), 4);
    envd_strv_free(env);

    json_t *bad = json_pack("{s:s}", "X=Y", "v");
    ASSERT_TRUE(envd_process_build_env(&u, NULL, NULL, bad, &err) == NULL);
    ASSERT_EQ(err, -EINVAL);
    json_decref(bad);
    bad = json_pack("{s:i}", "X", 1);
    ASSERT_TRUE(envd_process_build_env(&u, NULL, NULL, bad, &err) == NULL);
    json_decref(bad);
    bad = json_pack("{s:s}", "", "v");
    ASSERT_TRUE(envd_process_build_env(&u, NULL, NULL, bad, &err) == NULL);
    json_decref(bad);
    json_decref(sandbox);
    json_decref(req);
}
