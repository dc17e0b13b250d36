/* Mapping kernel messages to E2B's NDJSON lines (execution_handle), without a kernel. */
#include <string.h>

#include "interpd/execute.h"
#include "tap.h"

static struct jmsg msg(const char *type, const char *parent, const char *content_json)
{
    json_t *parent_header = json_pack("{s:s}", "msg_id", parent);
    struct jmsg m;
    jmsg_build(&m, "s", "u", type, parent_header, json_loads(content_json, 0, NULL));
    json_decref(parent_header);
    return m;
}

static void feed(struct execution *x, enum kernel_channel ch, const char *type, const char *parent,
                 const char *content)
{
    struct jmsg m = msg(type, parent, content);
    execution_handle(x, ch, &m);
    jmsg_release(&m);
}

static struct execution new_execution(void)
{
    struct execution x = { .pending = json_array() };
    memcpy(x.msg_id, "req", 4);
    return x;
}

static const char *line_type(struct execution *x, size_t i)
{
    return json_string_value(json_object_get(json_array_get(x->pending, i), "type"));
}

TEST(full_execution)
{
    struct execution x = new_execution();
    feed(&x, KERNEL_IOPUB, "status", "req", "{\"execution_state\":\"busy\"}");
    feed(&x, KERNEL_IOPUB, "execute_input", "req", "{\"code\":\"1+1\",\"execution_count\":7}");
    feed(&x, KERNEL_IOPUB, "stream", "req", "{\"name\":\"stdout\",\"text\":\"hi\\n\"}");
    feed(&x, KERNEL_IOPUB, "stream", "req", "{\"name\":\"stderr\",\"text\":\"oops\\n\"}");
    feed(&x, KERNEL_IOPUB, "stream", "other", "{\"name\":\"stdout\",\"text\":\"not mine\"}");
    feed(&x, KERNEL_IOPUB, "execute_result", "req",
         "{\"data\":{\"text/plain\":\"'quoted'\"},\"execution_count\":7}");
    ASSERT_FALSE(x.got_idle);
    feed(&x, KERNEL_IOPUB, "status", "req", "{\"execution_state\":\"idle\"}");
    feed(&x, KERNEL_SHELL, "execute_reply", "req", "{\"status\":\"ok\",\"execution_count\":7}");
    ASSERT_TRUE(x.got_idle && x.got_reply && x.reply_ok);
    ASSERT_EQ(json_array_size(x.pending), 4);
    ASSERT_STREQ(line_type(&x, 0), "number_of_executions");
    ASSERT_EQ(json_integer_value(json_object_get(json_array_get(x.pending, 0), "execution_count")), 7);
    ASSERT_STREQ(line_type(&x, 1), "stdout");
    ASSERT_STREQ(json_string_value(json_object_get(json_array_get(x.pending, 1), "text")), "hi\n");
    ASSERT_TRUE(json_is_string(json_object_get(json_array_get(x.pending, 1), "timestamp")));
    ASSERT_STREQ(line_type(&x, 2), "stderr");
    json_t *r = json_array_get(x.pending, 3);
    ASSERT_STREQ(line_type(&x, 3), "result");
    ASSERT_TRUE(json_is_true(json_object_get(r, "is_main_result")));
    ASSERT_STREQ(json_string_value(json_object_get(r, "text")), "quoted");
    execution_release(&x);
}

TEST(mime_mapping)
{
    json_t *data =
        json_loads("{\"text/plain\":\"x\",\"text/html\":\"<b>\",\"image/png\":\"iVBO\",\"application/json\":"
                   "{\"a\":1},\"e2b/data\":{\"c\":[1]},\"e2b/chart\":{\"type\":\"line\"},"
                   "\"application/vnd.custom\":\"?\",\"text/markdown\":\"m\",\"image/svg+xml\":\"<svg>\"}",
                   0, NULL);
    json_t *line = execution_result_line(data, false);
    ASSERT_TRUE(json_is_false(json_object_get(line, "is_main_result")));
    ASSERT_STREQ(json_string_value(json_object_get(line, "html")), "<b>");
    ASSERT_STREQ(json_string_value(json_object_get(line, "png")), "iVBO");
    ASSERT_STREQ(json_string_value(json_object_get(line, "markdown")), "m");
    ASSERT_STREQ(json_string_value(json_object_get(line, "svg")), "<svg>");
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(line, "json"), "a")), 1);
    ASSERT_TRUE(json_is_array(json_object_get(json_object_get(line, "data"), "c")));
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(line, "chart"), "type")), "line");
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(line, "extra"), "application/vnd.custom")),
                 "?");
    ASSERT_STREQ(json_string_value(json_object_get(line, "text")), "x");
    json_decref(line);
    json_decref(data);
}

TEST(error_line_joins_traceback)
{
    struct execution x = new_execution();
    feed(&x, KERNEL_IOPUB, "error", "req",
         "{\"ename\":\"ZeroDivisionError\",\"evalue\":\"division by "
         "zero\",\"traceback\":[\"a\",\"b\",\"c\"]}");
    feed(&x, KERNEL_SHELL, "execute_reply", "req", "{\"status\":\"error\",\"execution_count\":2}");
    ASSERT_FALSE(x.reply_ok);
    json_t *e = json_array_get(x.pending, 0);
    ASSERT_STREQ(line_type(&x, 0), "error");
    ASSERT_STREQ(json_string_value(json_object_get(e, "name")), "ZeroDivisionError");
    ASSERT_STREQ(json_string_value(json_object_get(e, "value")), "division by zero");
    ASSERT_STREQ(json_string_value(json_object_get(e, "traceback")), "a\nb\nc");
    ASSERT_STREQ(x.error_text, "ZeroDivisionError: division by zero");
    /* No execute_input (a silent run): the count comes from the reply. */
    ASSERT_STREQ(line_type(&x, 1), "number_of_executions");
    execution_release(&x);
}

TEST(malformed_messages_are_ignored)
{
    struct execution x = new_execution();
    feed(&x, KERNEL_IOPUB, "stream", "req", "{\"name\":\"stdout\"}");
    feed(&x, KERNEL_IOPUB, "execute_result", "req", "{\"data\":\"nope\"}");
    feed(&x, KERNEL_IOPUB, "error", "req", "{\"traceback\":\"not a list\"}");
    feed(&x, KERNEL_IOPUB, "status", "req", "{}");
    ASSERT_EQ(json_array_size(x.pending), 1); /* only the error, with empty fields */
    ASSERT_STREQ(json_string_value(json_object_get(json_array_get(x.pending, 0), "traceback")), "");
    ASSERT_FALSE(x.got_idle);
    execution_release(&x);
}
