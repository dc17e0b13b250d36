#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "envd/envd.h"
#include "tap.h"

static void check_clean(const char *in, const char *out)
{
    char *c = envd_path_clean(in);
    ASSERT_STREQ(c, out);
    free(c);
}

TEST(path_clean_matches_go)
{
    check_clean("/", "/");
    check_clean("//a//b/", "/a/b");
    check_clean("/a/./b/../c", "/a/c");
    check_clean("/../..", "/");
    check_clean("/a/b/../../..", "/");
    check_clean("a/../..", "..");
    check_clean("a/../../b", "../b");
    check_clean("", ".");
    check_clean("./", ".");
    check_clean("/a/..b/.c", "/a/..b/.c");
}

static struct envd_user user_home(const char *home)
{
    struct envd_user u = { .uid = 1000, .gid = 1000 };
    snprintf(u.home, sizeof(u.home), "%s", home);
    snprintf(u.name, sizeof(u.name), "user");
    return u;
}

static void check_resolve(const struct envd_user *u, const char *in, const char *out)
{
    char *r = NULL;
    struct error_record e;
    ASSERT_OK(envd_resolve_path(u, in, &r, &e));
    ASSERT_STREQ(r, out);
    free(r);
}

TEST(resolve_path_rules)
{
    envd_settings_init("root");
    struct envd_user u = user_home("/home/user");
    check_resolve(&u, "", "/home/user");
    check_resolve(&u, NULL, "/home/user");
    check_resolve(&u, "~", "/home/user");
    check_resolve(&u, "~/x/../y", "/home/user/y");
    check_resolve(&u, "rel/a", "/home/user/rel/a");
    check_resolve(&u, "../../../etc", "/etc");
    check_resolve(&u, "/tmp//x/", "/tmp/x");

    json_t *init = json_pack("{s:s}", "defaultWorkdir", "/work");
    ASSERT_OK(envd_settings_apply_init(init, NULL));
    json_decref(init);
    check_resolve(&u, "", "/work");
    check_resolve(&u, "rel", "/home/user/rel"); /* relative joins home, not the workdir */

    char *r = NULL;
    struct error_record e;
    ASSERT_EQ(envd_resolve_path(&u, "~root/x", &r, &e), -EINVAL);
    ASSERT_EQ(envd_resolve_path(&u, "/a\xff", &r, &e), -EINVAL);
    char *longp = malloc(5000);
    memset(longp, 'a', 4999);
    longp[0] = '/';
    longp[4999] = '\0';
    ASSERT_EQ(envd_resolve_path(&u, longp, &r, &e), -EINVAL);
    free(longp);
}

TEST(basic_auth_parsing)
{
    char name[64];
    ASSERT_OK(envd_parse_basic_auth("Basic cm9vdDo=", name, sizeof(name))); /* "root:" */
    ASSERT_STREQ(name, "root");
    ASSERT_OK(envd_parse_basic_auth("basic dXNlcjpwdw==", name, sizeof(name))); /* "user:pw" */
    ASSERT_STREQ(name, "user");
    ASSERT_EQ(envd_parse_basic_auth("Bearer cm9vdDo=", name, sizeof(name)), -EINVAL);
    ASSERT_EQ(envd_parse_basic_auth("Basic !!!", name, sizeof(name)), -EINVAL);
    ASSERT_EQ(envd_parse_basic_auth("Basic cm9vdA==", name, sizeof(name)), -EINVAL); /* no ':' */
    ASSERT_EQ(envd_parse_basic_auth("Basic Og==", name, sizeof(name)), -EINVAL);     /* ":" */
    ASSERT_EQ(envd_parse_basic_auth("Basic ", name, sizeof(name)), -EINVAL);
    char small[3];
    ASSERT_EQ(envd_parse_basic_auth("Basic cm9vdDo=", small, sizeof(small)), -EINVAL);
}

TEST(user_lookup)
{
    struct envd_user u;
    struct error_record e;
    ASSERT_OK(envd_user_lookup("root", &u, &e));
    ASSERT_EQ(u.uid, 0);
    ASSERT_STREQ(u.home, "/root");
    ASSERT_GE(u.n_groups, 1);
    ASSERT_EQ(envd_user_lookup("no-such-user-hutch", &u, &e), -ENOENT);
    ASSERT_EQ(envd_user_lookup("", &u, &e), -ENOENT);
}

static int go_pipe[2];

static void *other_thread_fsuid(void *arg)
{
    char c;
    if (read(go_pipe[0], &c, 1) != 1)
        return NULL;
    /* setfsuid(-1) fails and returns the current fsuid. */
    *(uid_t *)arg = (uid_t)syscall(SYS_setfsuid, (uid_t)-1);
    return NULL;
}

TEST(as_user_is_per_thread)
{
    if (geteuid() != 0)
        SKIP("needs root");
    struct envd_user nobody;
    ASSERT_OK(envd_user_lookup("nobody", &nobody, NULL));
    /* A thread that exists before the switch keeps root's identity (a new thread would
     * inherit its creator's). */
    uid_t other = 12345;
    pthread_t t;
    ASSERT_OK(pipe2(go_pipe, O_CLOEXEC));
    ASSERT_OK(-pthread_create(&t, NULL, other_thread_fsuid, &other));
    ASSERT_OK(envd_as_user(&nobody));
    ASSERT_EQ((uid_t)syscall(SYS_setfsuid, (uid_t)-1), nobody.uid);
    ASSERT_EQ(write(go_pipe[1], "x", 1), 1);
    pthread_join(t, NULL);
    ASSERT_EQ(other, 0);
    /* nobody cannot create files in a root-only directory. */
    char dir[] = "/tmp/envd-test-XXXXXX";
    envd_as_root();
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    chmod(dir, 0700);
    ASSERT_OK(envd_as_user(&nobody));
    char path[64];
    snprintf(path, sizeof(path), "%s/f", dir);
    ASSERT_EQ(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600), -1);
    ASSERT_EQ(errno, EACCES);
    envd_as_root();
    ASSERT_EQ((uid_t)syscall(SYS_setfsuid, (uid_t)-1), 0);
    rmdir(dir);
}

TEST(request_user_default_and_unknown)
{
    envd_settings_init("root");
    struct envd_user u;
    struct connect_error err;
    ASSERT_OK(envd_request_user(NULL, &u, &err));
    ASSERT_STREQ(u.name, "root");
    envd_settings_init("no-such-user-hutch");
    ASSERT_EQ(envd_request_user(NULL, &u, &err), -1);
    ASSERT_EQ(err.code, CONNECT_UNAUTHENTICATED);
}
