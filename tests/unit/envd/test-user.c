#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "envd/envd.h"
#include "envd/passwd.h"
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

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ(fputs(text, f) >= 0, 1);
    ASSERT_EQ(fclose(f), 0);
}

TEST(passwd_files_parsing)
{
    char dir[] = "/tmp/envd-passwd-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char passwd[64], group[64];
    snprintf(passwd, sizeof(passwd), "%s/passwd", dir);
    snprintf(group, sizeof(group), "%s/group", dir);
    /* A line over the 1 MiB bound is skipped whole, and the next line still counts. */
    size_t biglen = (2u << 20) + 10;
    char *big = malloc(biglen + 64);
    memset(big, 'x', biglen);
    snprintf(big + biglen, 64, ":x:7:7::/big:/bin/sh\n");
    char *text = malloc(biglen + 1024);
    snprintf(text, biglen + 1024,
             "# comment\n"
             "\n"
             "root:x:0:0:root:/root:/bin/bash\n"
             "  user:x:1000:1001:User:/home/user:/bin/bash\n"
             "user:x:2000:2000:second:/second:/bin/sh\n"
             "badid:x:12a:1::/x:/bin/sh\n"
             "nohome:x:3000:3000:::/bin/sh\n"
             "%s"
             "after:x:4000:4000::/after:/bin/sh",
             big);
    write_file(passwd, text);
    write_file(group, "root:x:0:\n"
                      "users:x:100:other,user\n"
                      "usergroup:x:1001:\n"
                      "dev:x:200:user\n"
                      "again:x:100:user\n"
                      "self:x:1001:user\n"
                      "near:x:300:use,users,user1\n");
    free(big);
    free(text);

    struct envd_user u;
    ASSERT_OK(envd_passwd_lookup(passwd, group, "user", &u));
    ASSERT_EQ(u.uid, 1000); /* the first entry wins */
    ASSERT_EQ(u.gid, 1001);
    ASSERT_STREQ(u.name, "user");
    ASSERT_STREQ(u.home, "/home/user");
    ASSERT_EQ(u.n_groups, 3); /* primary first, then file order, no duplicates */
    ASSERT_EQ(u.groups[0], 1001);
    ASSERT_EQ(u.groups[1], 100);
    ASSERT_EQ(u.groups[2], 200);
    ASSERT_OK(envd_passwd_lookup(passwd, group, "nohome", &u));
    ASSERT_STREQ(u.home, "/");
    ASSERT_EQ(u.n_groups, 1);
    ASSERT_OK(envd_passwd_lookup(passwd, group, "after", &u));
    ASSERT_EQ(u.uid, 4000);
    ASSERT_EQ(envd_passwd_lookup(passwd, group, "badid", &u), -ENOENT);
    ASSERT_EQ(envd_passwd_lookup(passwd, group, "# comment", &u), -ENOENT);
    ASSERT_EQ(envd_passwd_lookup(passwd, group, "use", &u), -ENOENT);
    ASSERT_EQ(envd_passwd_lookup("/nonexistent/passwd", group, "root", &u), -ENOENT);

    char name[64];
    ASSERT_OK(envd_passwd_user_name(passwd, 2000, name, sizeof(name)));
    ASSERT_STREQ(name, "user");
    ASSERT_OK(envd_passwd_user_name(passwd, 1000, name, sizeof(name)));
    ASSERT_STREQ(name, "user");
    ASSERT_OK(envd_passwd_group_name(group, 200, name, sizeof(name)));
    ASSERT_STREQ(name, "dev");
    ASSERT_EQ(envd_passwd_group_name(group, 999, name, sizeof(name)), -ENOENT);
    char small[3];
    ASSERT_EQ(envd_passwd_user_name(passwd, 0, small, sizeof(small)), -ENAMETOOLONG);
    unlink(passwd);
    unlink(group);
    rmdir(dir);
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
