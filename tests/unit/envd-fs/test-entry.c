/* EntryInfo: Go's FileMode strings, proto3 timestamps and JSON, and fs_entry_info() on real
 * files, directories and symlinks. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/json-util.h"
#include "envd/fs/fs.h"
#include "tap.h"

static void mode_is(mode_t m, const char *want)
{
    char s[FS_MODE_STRING_MAX];
    fs_mode_string(m, s);
    ASSERT_STREQ(s, want);
}

TEST(mode_string_matches_go)
{
    mode_is(S_IFREG | 0644, "-rw-r--r--");
    mode_is(S_IFREG | 0600, "-rw-------");
    mode_is(S_IFDIR | 0755, "drwxr-xr-x");
    mode_is(S_IFLNK | 0777, "Lrwxrwxrwx");
    mode_is(S_IFDIR | 01777, "dtrwxrwxrwx");
    mode_is(S_IFREG | 04755, "urwxr-xr-x");
    mode_is(S_IFREG | 06755, "ugrwxr-xr-x");
    mode_is(S_IFDIR | 02775, "dgrwxrwxr-x");
    mode_is(S_IFCHR | 0666, "Dcrw-rw-rw-");
    mode_is(S_IFBLK | 0660, "Drw-rw----");
    mode_is(S_IFIFO | 0644, "prw-r--r--");
    mode_is(S_IFSOCK | 0755, "Srwxr-xr-x");
    mode_is(S_IFREG | 0, "----------");
}

TEST(timestamp_uses_go_fraction_widths)
{
    char s[48];
    struct timespec ts = { .tv_sec = 1767225600, .tv_nsec = 0 };
    fs_format_timestamp(&ts, s, sizeof(s));
    ASSERT_STREQ(s, "2026-01-01T00:00:00Z");
    ts.tv_nsec = 120000000;
    fs_format_timestamp(&ts, s, sizeof(s));
    ASSERT_STREQ(s, "2026-01-01T00:00:00.120Z");
    ts.tv_nsec = 123456000;
    fs_format_timestamp(&ts, s, sizeof(s));
    ASSERT_STREQ(s, "2026-01-01T00:00:00.123456Z");
    ts.tv_nsec = 123456789;
    fs_format_timestamp(&ts, s, sizeof(s));
    ASSERT_STREQ(s, "2026-01-01T00:00:00.123456789Z");
}

TEST(entry_json_from_facts)
{
    struct fs_entry_facts f = {
        .name = "x.txt", .path = "/home/user/x.txt", .owner = "user", .group = "user"
    };
    f.lst.st_mode = S_IFREG | 0644;
    f.lst.st_size = 1234;
    f.lst.st_mtim.tv_sec = 1767225600;
    json_t *md = json_pack("{s:s}", "k", "v");
    f.metadata = md;
    json_t *e = fs_entry_json(&f);
    char *s = json_dump_compact(e, NULL);
    ASSERT_STREQ(
        s, "{\"name\":\"x.txt\",\"type\":\"FILE_TYPE_FILE\",\"path\":\"/home/user/x.txt\",\"size\":\"1234\","
           "\"mode\":420,\"permissions\":\"-rw-r--r--\",\"owner\":\"user\",\"group\":\"user\","
           "\"modifiedTime\":\"2026-01-01T00:00:00Z\",\"metadata\":{\"k\":\"v\"}}");
    free(s);
    json_decref(e);
    json_decref(md);
}

TEST(entry_json_omits_zero_values_and_describes_symlinks)
{
    struct fs_entry_facts f = { .name = "l", .path = "/t/l", .owner = "root", .group = "root" };
    f.lst.st_mode = S_IFLNK | 0777;
    f.is_symlink = true;
    f.target_ok = true;
    f.target.st_mode = S_IFDIR | 0750;
    f.symlink_target = "/t/dir";
    json_t *e = fs_entry_json(&f);
    ASSERT_STREQ(json_get_string(e, "type"), "FILE_TYPE_DIRECTORY");
    ASSERT_EQ(json_integer_value(json_object_get(e, "mode")), 0750);
    ASSERT_STREQ(json_get_string(e, "permissions"), "Lrwxrwxrwx");
    ASSERT_STREQ(json_get_string(e, "symlinkTarget"), "/t/dir");
    ASSERT_TRUE(json_object_get(e, "size") == NULL);
    ASSERT_TRUE(json_object_get(e, "modifiedTime") == NULL);
    ASSERT_TRUE(json_object_get(e, "metadata") == NULL);
    json_decref(e);

    f.target_ok = false; /* dangling: no type, so the SDK drops it from listings */
    e = fs_entry_json(&f);
    ASSERT_TRUE(json_object_get(e, "type") == NULL);
    ASSERT_TRUE(json_object_get(e, "mode") == NULL);
    json_decref(e);
}

static char *tmpdir(void)
{
    char t[] = "/tmp/test-envd-fs-XXXXXX";
    ASSERT_TRUE(mkdtemp(t) != NULL);
    return strdup(t);
}

static void rm_rf(const char *d)
{
    ASSERT_OK(fs_remove_all(d));
}

TEST(entry_info_of_real_files)
{
    char *d = tmpdir();
    char p[256], l[256], dl[256];
    snprintf(p, sizeof(p), "%s/f.txt", d);
    snprintf(l, sizeof(l), "%s/link", d);
    snprintf(dl, sizeof(dl), "%s/dangling", d);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "hello", 5), 5);
    ASSERT_OK(fchmod(fd, 0640));
    bool have_xattr = fsetxattr(fd, "user.e2b.color", "blue", 4, 0) == 0;
    close(fd);
    ASSERT_OK(symlink(p, l));
    ASSERT_OK(symlink("/nonexistent/target", dl));

    json_t *e;
    ASSERT_OK(fs_entry_info(p, NULL, &e));
    ASSERT_STREQ(json_get_string(e, "name"), "f.txt");
    ASSERT_STREQ(json_get_string(e, "path"), p);
    ASSERT_STREQ(json_get_string(e, "size"), "5");
    ASSERT_EQ(json_integer_value(json_object_get(e, "mode")), 0640);
    ASSERT_STREQ(json_get_string(e, "permissions"), "-rw-r-----");
    ASSERT_STREQ(json_get_string(e, "owner"), getuid() == 0 ? "root" : json_get_string(e, "owner"));
    if (have_xattr)
        ASSERT_STREQ(json_get_string(json_object_get(e, "metadata"), "color"), "blue");
    json_decref(e);

    ASSERT_OK(fs_entry_info(l, NULL, &e));
    ASSERT_STREQ(json_get_string(e, "type"), "FILE_TYPE_FILE");
    ASSERT_STREQ(json_get_string(e, "permissions"), "Lrwxrwxrwx");
    ASSERT_STREQ(json_get_string(e, "symlinkTarget"), p);
    ASSERT_EQ(json_integer_value(json_object_get(e, "mode")), 0640);
    json_decref(e);

    ASSERT_OK(fs_entry_info(dl, NULL, &e));
    ASSERT_TRUE(json_object_get(e, "type") == NULL);
    ASSERT_STREQ(json_get_string(e, "symlinkTarget"), dl);
    json_decref(e);

    ASSERT_EQ(fs_entry_info("/nonexistent/x", NULL, &e), -ENOENT);
    rm_rf(d);
    free(d);
}
