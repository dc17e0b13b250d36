#include <errno.h>
#include <stdint.h>

#include "common/strutil.h"
#include "tap.h"

TEST(copy_truncates_with_error)
{
    char b[4];
    ASSERT_OK(str_copy(b, sizeof(b), "abc"));
    ASSERT_STREQ(b, "abc");
    ASSERT_EQ(str_copy(b, sizeof(b), "abcd"), -ENAMETOOLONG);
    ASSERT_STREQ(b, "abc");
}

TEST(prefix_suffix)
{
    ASSERT_TRUE(str_startswith("hello", "he"));
    ASSERT_FALSE(str_startswith("he", "hello"));
    ASSERT_TRUE(str_endswith("hello", "llo"));
    ASSERT_FALSE(str_endswith("lo", "hello"));
}

TEST(parse_numbers_strictly)
{
    uint64_t u;
    int64_t s;
    uint32_t u32;
    int i;
    ASSERT_OK(parse_uint64("18446744073709551615", &u));
    ASSERT_TRUE(u == UINT64_MAX);
    ASSERT_EQ(parse_uint64("18446744073709551616", &u), -ERANGE);
    ASSERT_EQ(parse_uint64("-1", &u), -EINVAL);
    ASSERT_EQ(parse_uint64(" 1", &u), -EINVAL);
    ASSERT_EQ(parse_uint64("1 ", &u), -EINVAL);
    ASSERT_EQ(parse_uint64("", &u), -EINVAL);
    ASSERT_OK(parse_int64("-42", &s));
    ASSERT_EQ(s, -42);
    ASSERT_EQ(parse_int64("-", &s), -EINVAL);
    ASSERT_EQ(parse_uint32("4294967296", &u32), -ERANGE);
    ASSERT_OK(parse_int("2147483647", &i));
    ASSERT_EQ(parse_int("2147483648", &i), -ERANGE);
}

TEST(utf8_validation)
{
    ASSERT_TRUE(utf8_is_valid("plain", 5));
    ASSERT_TRUE(utf8_is_valid("\xc3\xa9", 2));          /* é */
    ASSERT_TRUE(utf8_is_valid("\xf0\x9f\x98\x80", 4));  /* emoji */
    ASSERT_FALSE(utf8_is_valid("\xc0\xaf", 2));         /* overlong */
    ASSERT_FALSE(utf8_is_valid("\xed\xa0\x80", 3));     /* surrogate */
    ASSERT_FALSE(utf8_is_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ASSERT_FALSE(utf8_is_valid("\xe2\x82", 2));         /* truncated */
    ASSERT_FALSE(utf8_is_valid("\xff", 1));
}
