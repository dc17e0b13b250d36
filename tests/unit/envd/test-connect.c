#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "envd/connect.h"
#include "envd/server.h"
#include "tap.h"

static size_t make_env(char *out, uint8_t flags, const char *payload)
{
    size_t n = strlen(payload);
    out[0] = (char)flags;
    out[1] = (char)(n >> 24);
    out[2] = (char)(n >> 16);
    out[3] = (char)(n >> 8);
    out[4] = (char)n;
    memcpy(out + 5, payload, n);
    return n + 5;
}

TEST(code_names_and_statuses)
{
    ASSERT_STREQ(connect_code_to_string(CONNECT_NOT_FOUND), "not_found");
    ASSERT_STREQ(connect_code_to_string(CONNECT_DEADLINE_EXCEEDED), "deadline_exceeded");
    ASSERT_STREQ(connect_code_to_string(CONNECT_UNAUTHENTICATED), "unauthenticated");
    ASSERT_TRUE(connect_code_to_string((enum connect_code)99) == NULL);
    struct {
        enum connect_code c;
        unsigned status;
    } map[] = {
        { CONNECT_INVALID_ARGUMENT, 400 },
        { CONNECT_UNAUTHENTICATED, 401 },
        { CONNECT_PERMISSION_DENIED, 403 },
        { CONNECT_NOT_FOUND, 404 },
        { CONNECT_ALREADY_EXISTS, 409 },
        { CONNECT_RESOURCE_EXHAUSTED, 429 },
        { CONNECT_FAILED_PRECONDITION, 400 },
        { CONNECT_INTERNAL, 500 },
        { CONNECT_UNKNOWN, 500 },
        { CONNECT_UNIMPLEMENTED, 501 },
        { CONNECT_UNAVAILABLE, 503 },
        { CONNECT_DEADLINE_EXCEEDED, 504 },
        { CONNECT_CANCELED, 499 },
        { CONNECT_ABORTED, 409 },
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        ASSERT_EQ(connect_code_to_http_status(map[i].c), map[i].status);
}

TEST(error_json)
{
    struct connect_error err;
    ASSERT_EQ(connect_error_set(&err, CONNECT_NOT_FOUND, "process with pid %d not found", 7), -1);
    json_t *j = connect_error_to_json(&err);
    ASSERT_STREQ(json_string_value(json_object_get(j, "code")), "not_found");
    ASSERT_STREQ(json_string_value(json_object_get(j, "message")), "process with pid 7 not found");
    json_decref(j);
    connect_error_set(&err, CONNECT_INTERNAL, "bad \xff byte");
    j = connect_error_to_json(&err);
    ASSERT_TRUE(json_string_value(json_object_get(j, "message")) != NULL);
    json_decref(j);
}

TEST(envelope_complete_partial_and_limits)
{
    char b[64];
    size_t n = make_env(b, 0, "{\"a\":1}");
    uint8_t flags;
    const char *p;
    size_t len;
    struct connect_error err;
    ASSERT_EQ(connect_envelope_next(b, n, &flags, &p, &len, &err), (int)n);
    ASSERT_EQ(flags, 0);
    ASSERT_EQ(len, 7);
    ASSERT_MEMEQ(p, "{\"a\":1}", 7);
    /* every proper prefix needs more bytes */
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(connect_envelope_next(b, k, &flags, &p, &len, &err), 0);
    /* end-of-stream flag is reported, not rejected, by the framer */
    n = make_env(b, CONNECT_FLAG_END_STREAM, "{}");
    ASSERT_EQ(connect_envelope_next(b, n, &flags, &p, &len, &err), (int)n);
    ASSERT_EQ(flags, CONNECT_FLAG_END_STREAM);
    /* compressed */
    n = make_env(b, CONNECT_FLAG_COMPRESSED, "{}");
    ASSERT_EQ(connect_envelope_next(b, n, &flags, &p, &len, &err), -1);
    ASSERT_EQ(err.code, CONNECT_INTERNAL);
    /* oversized: known from the header alone */
    unsigned char big[5] = { 0, 0, 0x40, 0, 1 }; /* 4 MiB + 1 */
    ASSERT_EQ(connect_envelope_next(big, 5, &flags, &p, &len, &err), -1);
    ASSERT_EQ(err.code, CONNECT_RESOURCE_EXHAUSTED);
    unsigned char max[5] = { 0, 0, 0x40, 0, 0 }; /* exactly the max: wait for it */
    ASSERT_EQ(connect_envelope_next(max, 5, &flags, &p, &len, &err), 0);
}

TEST(envelope_append_roundtrip)
{
    struct buf b;
    buf_init(&b, 64);
    ASSERT_OK(connect_envelope_append(&b, 2, "{}", 2));
    ASSERT_EQ(b.len, 7);
    ASSERT_MEMEQ(b.data, "\x02\x00\x00\x00\x02{}", 7);
    char big[100] = { 0 };
    ASSERT_EQ(connect_envelope_append(&b, 0, big, sizeof(big)), -ENOBUFS);
    ASSERT_EQ(b.len, 7); /* unchanged */
    buf_release(&b);
}

TEST(stream_request_parsing)
{
    char b[128];
    json_t *j = NULL;
    struct connect_error err;
    size_t n = make_env(b, 0, "{\"process\":{\"cmd\":\"x\"}}");
    ASSERT_OK(connect_parse_stream_request(b, n, &j, &err));
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(j, "process"), "cmd")), "x");
    json_decref(j);

    ASSERT_EQ(connect_parse_stream_request(b, n - 1, &j, &err), -1); /* truncated */
    ASSERT_EQ(err.code, CONNECT_INVALID_ARGUMENT);
    ASSERT_EQ(connect_parse_stream_request(b, 0, &j, &err), -1); /* empty */
    ASSERT_EQ(err.code, CONNECT_INVALID_ARGUMENT);
    memcpy(b + n, b, n); /* two messages */
    ASSERT_EQ(connect_parse_stream_request(b, 2 * n, &j, &err), -1);
    ASSERT_EQ(err.code, CONNECT_INVALID_ARGUMENT);
    n = make_env(b, CONNECT_FLAG_END_STREAM, "{}");
    ASSERT_EQ(connect_parse_stream_request(b, n, &j, &err), -1);
    ASSERT_EQ(err.code, CONNECT_INVALID_ARGUMENT);
    n = make_env(b, 0, "[1]");
    ASSERT_EQ(connect_parse_stream_request(b, n, &j, &err), -1);
    ASSERT_EQ(err.code, CONNECT_INVALID_ARGUMENT);
    n = make_env(b, 0, "{\"a\":\"\xc3\x28\"}");
    ASSERT_EQ(connect_parse_stream_request(b, n, &j, &err), -1);
    ASSERT_EQ(err.code, CONNECT_INVALID_ARGUMENT);
    n = make_env(b, 0, "");
    ASSERT_EQ(connect_parse_stream_request(b, n, &j, &err), -1);
    ASSERT_EQ(err.code, CONNECT_INVALID_ARGUMENT);
}

TEST(unary_request_parsing)
{
    json_t *j = NULL;
    struct connect_error err;
    ASSERT_OK(connect_parse_unary_request("{}", 2, &j, &err));
    ASSERT_TRUE(json_is_object(j));
    json_decref(j);
    ASSERT_EQ(connect_parse_unary_request("{", 1, &j, &err), -1);
    ASSERT_EQ(err.code, CONNECT_INVALID_ARGUMENT);
    ASSERT_EQ(connect_parse_unary_request("{\"a\":1,\"a\":2}", 13, &j, &err), -1);
    ASSERT_EQ(connect_parse_unary_request("\"s\"", 3, &j, &err), -1);
    ASSERT_EQ(connect_parse_unary_request("{}", CONNECT_MAX_MESSAGE + 1ul, &j, &err), -1);
    ASSERT_EQ(err.code, CONNECT_RESOURCE_EXHAUSTED);
}

TEST(routes)
{
    ASSERT_EQ(envd_route_of("/health"), ENVD_ROUTE_HEALTH);
    ASSERT_EQ(envd_route_of("/files"), ENVD_ROUTE_FILES);
    ASSERT_EQ(envd_route_of("/init"), ENVD_ROUTE_INIT);
    ASSERT_EQ(envd_route_of("/envs"), ENVD_ROUTE_ENVS);
    ASSERT_EQ(envd_route_of("/metrics"), ENVD_ROUTE_METRICS);
    ASSERT_EQ(envd_route_of("/process.Process/Start"), ENVD_ROUTE_RPC);
    ASSERT_EQ(envd_route_of("/x.Y/Z"), ENVD_ROUTE_RPC);
    ASSERT_EQ(envd_route_of("/process/Start"), ENVD_ROUTE_NOT_FOUND);
    ASSERT_EQ(envd_route_of("/process.Process/"), ENVD_ROUTE_NOT_FOUND);
    ASSERT_EQ(envd_route_of("/a.B/C/D"), ENVD_ROUTE_NOT_FOUND);
    ASSERT_EQ(envd_route_of("/"), ENVD_ROUTE_NOT_FOUND);
}
