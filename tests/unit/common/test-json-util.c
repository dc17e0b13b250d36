#include <errno.h>

#include "common/json-util.h"
#include "tap.h"

TEST(parse_object)
{
    _cleanup_json_ json_t *o = NULL;
    struct error_record e;
    const char *s = "{\"a\":\"b\",\"n\":1}";
    ASSERT_OK(json_parse_object(s, strlen(s), &o, &e));
    ASSERT_STREQ(json_get_string(o, "a"), "b");
    ASSERT_TRUE(json_get_string(o, "n") == NULL);
    ASSERT_STREQ(json_get_string_or(o, "missing", "def"), "def");
}

TEST(rejects_non_objects_and_garbage)
{
    json_t *o = NULL;
    struct error_record e;
    ASSERT_EQ(json_parse_object("[1]", 3, &o, &e), -EINVAL);
    ASSERT_EQ(json_parse_object("{", 1, &o, &e), -EINVAL);
    ASSERT_TRUE(strstr(e.msg, "invalid JSON") != NULL);
    ASSERT_EQ(json_parse_object("{\"a\":1,\"a\":2}", 13, &o, &e), -EINVAL);
    /* invalid UTF-8 inside a string */
    ASSERT_EQ(json_parse_object("{\"a\":\"\xff\"}", 9, &o, &e), -EINVAL);
    /* embedded NUL */
    ASSERT_EQ(json_parse_object("{}\0", 3, &o, &e), -EINVAL);
}

TEST(dump_compact)
{
    _cleanup_json_ json_t *o = json_pack("{s:i}", "x", 1);
    size_t n;
    char *s = json_dump_compact(o, &n);
    ASSERT_STREQ(s, "{\"x\":1}");
    ASSERT_EQ(n, 7);
    free(s);
}
