#include <errno.h>

#include "common/buf.h"
#include "tap.h"

TEST(append_and_terminate)
{
    struct buf b;
    buf_init(&b, 100);
    ASSERT_OK(buf_append(&b, "abc", 3));
    ASSERT_OK(buf_append_str(&b, "def"));
    ASSERT_EQ(b.len, 6);
    ASSERT_STREQ(b.data, "abcdef");
    buf_release(&b);
}

TEST(limit_is_enforced_and_contents_kept)
{
    struct buf b;
    buf_init(&b, 8);
    ASSERT_OK(buf_append(&b, "12345678", 8));
    ASSERT_EQ(buf_append(&b, "9", 1), -ENOBUFS);
    ASSERT_EQ(b.len, 8);
    ASSERT_STREQ(b.data, "12345678");
    buf_release(&b);
}

TEST(huge_length_does_not_overflow)
{
    struct buf b;
    buf_init(&b, 16);
    ASSERT_OK(buf_append(&b, "x", 1));
    ASSERT_EQ(buf_append(&b, "y", SIZE_MAX), -ENOBUFS);
    ASSERT_EQ(b.len, 1);
    buf_release(&b);
}

TEST(printf_and_consume)
{
    struct buf b;
    buf_init(&b, 64);
    ASSERT_OK(buf_printf(&b, "%d-%s", 42, "x"));
    ASSERT_STREQ(b.data, "42-x");
    buf_consume(&b, 3);
    ASSERT_STREQ(b.data, "x");
    ASSERT_EQ(buf_printf(&b, "%070d", 1), -ENOBUFS);
    char *s = buf_steal(&b);
    ASSERT_STREQ(s, "x");
    free(s);
    ASSERT_EQ(b.len, 0);
}

TEST(steal_empty_is_not_null)
{
    struct buf b;
    buf_init(&b, 4);
    char *s = buf_steal(&b);
    ASSERT_TRUE(s != NULL);
    ASSERT_STREQ(s, "");
    free(s);
}
