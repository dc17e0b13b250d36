/* mkdir -p, remove -r (never through a symlink) and the depth-limited listing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json-util.h"
#include "envd/fs/fs.h"
#include "tap.h"

static char *tmpdir(void)
{
    char t[] = "/tmp/test-envd-walk-XXXXXX";
    ASSERT_TRUE(mkdtemp(t) != NULL);
    return strdup(t);
}

static void touch(const char *dir, const char *name)
{
    char p[1100];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    close(fd);
}

TEST(mkdir_p)
{
    char *d = tmpdir();
    char p[512];
    snprintf(p, sizeof(p), "%s/a/b/c", d);
    ASSERT_OK(fs_mkdir_p(p, 0755, NULL));
    struct stat st;
    ASSERT_OK(stat(p, &st));
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    bool is_dir = false;
    ASSERT_EQ(fs_mkdir_p(p, 0755, &is_dir), -EEXIST);
    ASSERT_TRUE(is_dir);
    touch(d, "file");
    snprintf(p, sizeof(p), "%s/file", d);
    ASSERT_EQ(fs_mkdir_p(p, 0755, &is_dir), -EEXIST);
    ASSERT_FALSE(is_dir);
    snprintf(p, sizeof(p), "%s/file/sub", d);
    ASSERT_EQ(fs_mkdir_p(p, 0755, NULL), -ENOTDIR);
    ASSERT_OK(fs_remove_all(d));
    free(d);
}

TEST(remove_all_does_not_follow_symlinks)
{
    char *d = tmpdir(), *outside = tmpdir();
    char p[512], link[512];
    touch(outside, "keep");
    snprintf(p, sizeof(p), "%s/x/y", d);
    ASSERT_OK(fs_mkdir_p(p, 0755, NULL));
    touch(p, "f");
    snprintf(link, sizeof(link), "%s/x/y/out", d);
    ASSERT_OK(symlink(outside, link));
    snprintf(p, sizeof(p), "%s/x", d);
    ASSERT_OK(fs_remove_all(p));
    ASSERT_EQ(access(p, F_OK), -1);
    snprintf(p, sizeof(p), "%s/keep", outside);
    ASSERT_OK(access(p, F_OK));
    /* Removing a symlink to a directory removes the link only. */
    snprintf(link, sizeof(link), "%s/l", d);
    ASSERT_OK(symlink(outside, link));
    ASSERT_OK(fs_remove_all(link));
    ASSERT_OK(access(p, F_OK));
    /* Missing is fine; "/" is refused. */
    ASSERT_OK(fs_remove_all(link));
    ASSERT_EQ(fs_remove_all("/"), -EINVAL);
    ASSERT_OK(fs_remove_all(d));
    ASSERT_OK(fs_remove_all(outside));
    free(d);
    free(outside);
}

static bool has_path(json_t *entries, const char *path)
{
    size_t i;
    json_t *e;
    json_array_foreach (entries, i, e)
        if (streq(json_get_string(e, "path"), path))
            return true;
    return false;
}

TEST(list_dir_depth_and_symlinks)
{
    char *d = tmpdir();
    char p[512], q[512];
    snprintf(p, sizeof(p), "%s/a/b", d);
    ASSERT_OK(fs_mkdir_p(p, 0755, NULL));
    touch(d, "top.txt");
    snprintf(p, sizeof(p), "%s/a", d);
    touch(p, "mid.txt");
    snprintf(p, sizeof(p), "%s/a/b", d);
    touch(p, "deep.txt");
    snprintf(p, sizeof(p), "%s/loop", d);
    ASSERT_OK(symlink(d, p)); /* never entered */

    json_t *e = json_array();
    ASSERT_OK(fs_list_dir(d, "/shown", 1, 1000, e));
    ASSERT_EQ(json_array_size(e), 3u);
    ASSERT_TRUE(has_path(e, "/shown/a"));
    ASSERT_TRUE(has_path(e, "/shown/top.txt"));
    ASSERT_TRUE(has_path(e, "/shown/loop"));
    json_decref(e);

    e = json_array();
    ASSERT_OK(fs_list_dir(d, "/shown", 0, 1000, e)); /* 0 means 1 */
    ASSERT_EQ(json_array_size(e), 3u);
    json_decref(e);

    e = json_array();
    ASSERT_OK(fs_list_dir(d, d, 2, 1000, e));
    ASSERT_EQ(json_array_size(e), 5u);
    snprintf(q, sizeof(q), "%s/a/mid.txt", d);
    ASSERT_TRUE(has_path(e, q));
    snprintf(q, sizeof(q), "%s/a/b", d);
    ASSERT_TRUE(has_path(e, q));
    json_decref(e);

    e = json_array();
    ASSERT_OK(fs_list_dir(d, d, 10, 1000, e));
    ASSERT_EQ(json_array_size(e), 6u);
    /* Pre-order, lexical: a, a/b, a/b/deep.txt, a/mid.txt, loop, top.txt. */
    ASSERT_STREQ(json_get_string(json_array_get(e, 0), "name"), "a");
    ASSERT_STREQ(json_get_string(json_array_get(e, 1), "name"), "b");
    ASSERT_STREQ(json_get_string(json_array_get(e, 2), "name"), "deep.txt");
    ASSERT_STREQ(json_get_string(json_array_get(e, 5), "name"), "top.txt");
    json_decref(e);

    /* Bounded: 6 entries do not fit in 5, in one directory or across levels. */
    e = json_array();
    ASSERT_EQ(fs_list_dir(d, d, 10, 5, e), -E2BIG);
    json_decref(e);
    e = json_array();
    ASSERT_EQ(fs_list_dir(d, d, 1, 2, e), -E2BIG);
    json_decref(e);
    e = json_array();
    ASSERT_OK(fs_list_dir(d, d, 10, 6, e));
    ASSERT_EQ(json_array_size(e), 6u);
    json_decref(e);

    snprintf(p, sizeof(p), "%s/top.txt", d);
    e = json_array();
    ASSERT_EQ(fs_list_dir(p, p, 1, 1000, e), -ENOTDIR);
    json_decref(e);
    ASSERT_OK(fs_remove_all(d));
    free(d);
}
