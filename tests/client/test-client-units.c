/* Unit tests of libhutch's internals: the Connect envelope reader (fed in every split a
 * network can produce), the mapping of HTTP statuses and Connect codes to hutch codes, and the
 * names of the codes. */
#include <errno.h>
#include <string.h>

#include "tap.h"
#include "client/client-internal.h"
#include "common/banned.h"

struct seen {
    int n;
    uint8_t flags[8];
    char payload[8][64];
    size_t len[8];
};

static int collect(void *userdata, uint8_t flags, const char *payload, size_t len)
{
    struct seen *s = userdata;
    if (s->n == 8)
        return -ENOSPC;
    s->flags[s->n] = flags;
    memcpy(s->payload[s->n], payload, len < 64 ? len : 64);
    s->len[s->n] = len;
    s->n++;
    return 0;
}

static size_t envelope(char *out, uint8_t flags, const char *payload)
{
    size_t n = strlen(payload);
    out[0] = (char)flags;
    out[1] = (char)(n >> 24);
    out[2] = (char)(n >> 16);
    out[3] = (char)(n >> 8);
    out[4] = (char)n;
    memcpy(out + 5, payload, n);
    return 5 + n;
}

/* Three envelopes (one empty) in one stream. */
static size_t stream(char *out)
{
    size_t n = envelope(out, 0, "{\"event\":{\"start\":{\"pid\":7}}}");
    n += envelope(out + n, 0, "");
    n += envelope(out + n, 2, "{}");
    return n;
}

static void check_stream(const struct seen *s)
{
    ASSERT_EQ(s->n, 3);
    ASSERT_EQ(s->len[0], strlen("{\"event\":{\"start\":{\"pid\":7}}}"));
    ASSERT_TRUE(memcmp(s->payload[0], "{\"event\"", 8) == 0);
    ASSERT_EQ(s->len[1], 0);
    ASSERT_EQ(s->flags[2], 2);
    ASSERT_EQ(s->len[2], 2);
}

TEST(envelopes_in_one_piece)
{
    char buf[256];
    size_t n = stream(buf);
    struct envelope_reader r;
    envelope_reader_init(&r);
    struct seen s = { 0 };
    ASSERT_EQ(envelope_feed(&r, buf, n, collect, &s), 0);
    check_stream(&s);
    ASSERT_TRUE(envelope_reader_idle(&r));
    envelope_reader_release(&r);
}

TEST(envelopes_split_at_every_byte)
{
    char buf[256];
    size_t n = stream(buf);
    for (size_t cut = 0; cut <= n; cut++) {
        struct envelope_reader r;
        envelope_reader_init(&r);
        struct seen s = { 0 };
        ASSERT_EQ(envelope_feed(&r, buf, cut, collect, &s), 0);
        ASSERT_EQ(envelope_feed(&r, buf + cut, n - cut, collect, &s), 0);
        check_stream(&s);
        envelope_reader_release(&r);
    }
    struct envelope_reader r;
    envelope_reader_init(&r);
    struct seen s = { 0 };
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(envelope_feed(&r, buf + i, 1, collect, &s), 0);
    check_stream(&s);
    envelope_reader_release(&r);
}

TEST(envelope_too_large_is_refused_before_buffering)
{
    char hdr[5] = { 0, 0x7f, 0, 0, 0 };
    struct envelope_reader r;
    envelope_reader_init(&r);
    struct seen s = { 0 };
    ASSERT_EQ(envelope_feed(&r, hdr, sizeof(hdr), collect, &s), -EMSGSIZE);
    ASSERT_EQ(s.n, 0);
    envelope_reader_release(&r);
}

TEST(a_partial_envelope_is_not_idle)
{
    char buf[64];
    size_t n = envelope(buf, 0, "{}");
    struct envelope_reader r;
    envelope_reader_init(&r);
    struct seen s = { 0 };
    ASSERT_EQ(envelope_feed(&r, buf, n - 1, collect, &s), 0);
    ASSERT_FALSE(envelope_reader_idle(&r));
    ASSERT_EQ(s.n, 0);
    envelope_reader_release(&r);
}

TEST(codes_from_http_status)
{
    ASSERT_EQ(client_code_from_status(400), HUTCH_E_INVALID);
    ASSERT_EQ(client_code_from_status(401), HUTCH_E_AUTH);
    ASSERT_EQ(client_code_from_status(403), HUTCH_E_AUTH);
    ASSERT_EQ(client_code_from_status(404), HUTCH_E_NOT_FOUND);
    ASSERT_EQ(client_code_from_status(409), HUTCH_E_CONFLICT);
    ASSERT_EQ(client_code_from_status(413), HUTCH_E_LIMIT);
    ASSERT_EQ(client_code_from_status(429), HUTCH_E_LIMIT);
    ASSERT_EQ(client_code_from_status(500), HUTCH_E_SERVER);
    ASSERT_EQ(client_code_from_status(501), HUTCH_E_UNSUPPORTED);
    ASSERT_EQ(client_code_from_status(502), HUTCH_E_UNAVAILABLE);
    ASSERT_EQ(client_code_from_status(503), HUTCH_E_UNAVAILABLE);
    ASSERT_EQ(client_code_from_status(504), HUTCH_E_TIMEOUT);
    ASSERT_EQ(client_code_from_status(418), HUTCH_E_INVALID);
}

TEST(codes_from_connect)
{
    ASSERT_EQ(client_code_from_connect("not_found"), HUTCH_E_NOT_FOUND);
    ASSERT_EQ(client_code_from_connect("invalid_argument"), HUTCH_E_INVALID);
    ASSERT_EQ(client_code_from_connect("unauthenticated"), HUTCH_E_AUTH);
    ASSERT_EQ(client_code_from_connect("deadline_exceeded"), HUTCH_E_TIMEOUT);
    ASSERT_EQ(client_code_from_connect("unavailable"), HUTCH_E_UNAVAILABLE);
    ASSERT_EQ(client_code_from_connect("unimplemented"), HUTCH_E_UNSUPPORTED);
    ASSERT_EQ(client_code_from_connect("whatever"), HUTCH_E_SERVER);
    ASSERT_EQ(client_code_from_connect(NULL), HUTCH_E_SERVER);
}

TEST(every_code_has_a_distinct_name)
{
    for (int a = HUTCH_OK; a <= HUTCH_E_ABORTED; a++) {
        ASSERT_TRUE(strcmp(hutch_strerror((enum hutch_code)a), "unknown error") != 0);
        for (int b = a + 1; b <= HUTCH_E_ABORTED; b++)
            ASSERT_TRUE(strcmp(hutch_strerror((enum hutch_code)a), hutch_strerror((enum hutch_code)b)) != 0);
    }
    ASSERT_TRUE(strcmp(hutch_strerror((enum hutch_code) - 1), "unknown error") == 0);
}

TEST(client_defaults_and_last_message)
{
    unsetenv("E2B_API_URL");
    unsetenv("E2B_SANDBOX_URL");
    unsetenv("E2B_API_KEY");
    struct hutch_client *c = hutch_client_new(NULL, NULL);
    ASSERT_TRUE(c != NULL);
    ASSERT_TRUE(strcmp(hutch_client_api_url(c), HUTCH_DEFAULT_API_URL) == 0);
    ASSERT_TRUE(strcmp(hutch_client_sandbox_url(c), HUTCH_DEFAULT_API_URL) == 0);
    ASSERT_TRUE(strcmp(hutch_client_last_message(c), "") == 0);
    ASSERT_EQ(hutch_sandbox_kill(c, "abc"), HUTCH_E_AUTH);
    ASSERT_TRUE(strstr(hutch_client_last_message(c), "E2B_API_KEY") != NULL);
    ASSERT_EQ(hutch_client_set_sandbox_url(c, "http://h:1/"), HUTCH_OK);
    ASSERT_TRUE(strcmp(hutch_client_sandbox_url(c), "http://h:1") == 0);
    hutch_client_free(c);

    setenv("E2B_API_URL", "http://api:9/", 1);
    setenv("E2B_SANDBOX_URL", "http://sbx:8", 1);
    c = hutch_client_new(NULL, "e2b_1");
    ASSERT_TRUE(strcmp(hutch_client_api_url(c), "http://api:9") == 0);
    ASSERT_TRUE(strcmp(hutch_client_sandbox_url(c), "http://sbx:8") == 0);
    ASSERT_EQ(hutch_sandbox_kill(c, "a/b"), HUTCH_E_INVALID);
    struct hutch_client *d = hutch_client_dup(c);
    ASSERT_TRUE(strcmp(hutch_client_sandbox_url(d), "http://sbx:8") == 0);
    hutch_client_free(d);
    hutch_client_free(c);
    hutch_client_free(NULL);
}

TEST(malformed_ids_never_reach_a_request)
{
    struct hutch_client *c = hutch_client_new("http://127.0.0.1:1", "e2b_1");
    const char *argv[] = { "true", NULL };
    ASSERT_EQ(hutch_exec(c, "a\r\nX-Evil: 1", argv, NULL, NULL), HUTCH_E_INVALID);
    ASSERT_EQ(hutch_process_signal(c, "a b", 1, 15), HUTCH_E_INVALID);
    ASSERT_EQ(hutch_file_upload(c, "../x", "/dev/null", "/tmp/x", NULL), HUTCH_E_INVALID);
    ASSERT_EQ(hutch_sandbox_info(c, "", NULL), HUTCH_E_INVALID);
    ASSERT_TRUE(strstr(hutch_client_last_message(c), "invalid sandbox id") != NULL);
    hutch_client_free(c);
}
