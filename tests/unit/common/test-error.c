#include <errno.h>

#include "common/error.h"
#include "tap.h"

TEST(set_returns_negative_errno)
{
    struct error_record e;
    error_clear(&e);
    ASSERT_EQ(error_set(&e, ENOENT, "no %s", "file"), -ENOENT);
    ASSERT_EQ(e.errnum, ENOENT);
    ASSERT_STREQ(e.msg, "no file");
    ASSERT_EQ(error_set(&e, -EPERM, "x"), -EPERM);
    ASSERT_EQ(e.errnum, EPERM);
}

TEST(null_record_is_allowed)
{
    ASSERT_EQ(error_set(NULL, EINVAL, "ignored"), -EINVAL);
}

TEST(zero_errnum_still_fails)
{
    struct error_record e;
    ASSERT_TRUE(error_set(&e, 0, "oops") < 0);
    ASSERT_TRUE(e.errnum > 0);
}

TEST(errno_message_appended)
{
    struct error_record e;
    error_set_errno(&e, ENOENT, "open %s", "/x");
    ASSERT_STREQ(e.msg, "open /x: No such file or directory");
}

TEST(long_message_truncated)
{
    struct error_record e;
    char big[1000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    error_set(&e, EIO, "%s", big);
    ASSERT_EQ(strlen(e.msg), ERROR_MSG_MAX - 1);
}
