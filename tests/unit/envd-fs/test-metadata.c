/* X-Metadata-* headers: parsing, validation, and the xattr round trip. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/json-util.h"
#include "envd/fs/fs.h"
#include "tap.h"

TEST(headers_to_metadata)
{
    json_t *md = json_object();
    ASSERT_EQ(fs_metadata_add_header(md, "X-Metadata-Owner", "alice"), 1);
    ASSERT_EQ(fs_metadata_add_header(md, "x-metadata-OWNER", "bob"), 0); /* first wins */
    ASSERT_EQ(fs_metadata_add_header(md, "X-Metadata-", "x"), 0);
    ASSERT_EQ(fs_metadata_add_header(md, "Content-Type", "x"), 0);
    ASSERT_EQ(fs_metadata_add_header(md, "X-Metadata-Project", "hutch v1"), 1);
    ASSERT_EQ(json_object_size(md), 2u);
    ASSERT_STREQ(json_get_string(md, "owner"), "alice");
    ASSERT_STREQ(json_get_string(md, "project"), "hutch v1");
    ASSERT_OK(fs_metadata_validate(md, NULL));
    json_decref(md);
}

TEST(metadata_validation)
{
    struct error_record e;
    json_t *md = json_object();
    fs_metadata_add_header(md, "X-Metadata-K", "caf\xc3\xa9");
    ASSERT_EQ(fs_metadata_validate(md, &e), -EINVAL);
    ASSERT_TRUE(strstr(e.msg, "non-printable-ASCII") != NULL);
    json_decref(md);

    md = json_object();
    fs_metadata_add_header(md, "X-Metadata-K", "\xff\xfe"); /* not even UTF-8 */
    ASSERT_EQ(fs_metadata_validate(md, &e), -EINVAL);
    json_decref(md);

    md = json_object();
    fs_metadata_add_header(md, "X-Metadata-K", "tab\there");
    ASSERT_EQ(fs_metadata_validate(md, &e), -EINVAL);
    json_decref(md);

    md = json_object();
    char big[FS_METADATA_TOTAL_MAX + 10];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    json_object_set_new(md, "k", json_string(big));
    ASSERT_EQ(fs_metadata_validate(md, &e), -EINVAL);
    json_decref(md);

    md = json_object();
    char key[FS_METADATA_KEY_MAX + 2];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    json_object_set_new(md, key, json_string("v"));
    ASSERT_EQ(fs_metadata_validate(md, &e), -EINVAL);
    json_decref(md);
}

TEST(xattr_round_trip_replaces_the_set)
{
    char path[] = "/tmp/test-envd-md-XXXXXX";
    int fd = mkostemp(path, O_CLOEXEC);
    ASSERT_GE(fd, 0);
    unlink(path);
    if (fsetxattr(fd, "user.other", "x", 1, 0) < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) {
        close(fd);
        SKIP("no user xattrs on /tmp");
    }
    json_t *md = json_pack("{s:s, s:s}", "a", "1", "b", "2");
    ASSERT_OK(fs_metadata_write_fd(fd, md));
    json_decref(md);
    md = json_pack("{s:s}", "b", "3");
    ASSERT_OK(fs_metadata_write_fd(fd, md));
    json_decref(md);
    json_t *got;
    ASSERT_OK(fs_metadata_read_fd(fd, &got));
    char *s = json_dump_compact(got, NULL);
    ASSERT_STREQ(s, "{\"b\":\"3\"}");
    free(s);
    json_decref(got);
    /* Other xattrs are not ours to touch. */
    char v[4];
    ASSERT_EQ(fgetxattr(fd, "user.other", v, sizeof(v)), 1);
    ASSERT_OK(fs_metadata_write_fd(fd, NULL));
    ASSERT_OK(fs_metadata_read_fd(fd, &got));
    ASSERT_TRUE(got == NULL);
    close(fd);
}
