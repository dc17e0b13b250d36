/* The Jupyter wire protocol without a kernel: signing (a known-answer vector computed with
 * Python's hmac), verification, framing with identities, parse errors and limits; and one
 * round trip over a real zmq socket pair. */
#include <errno.h>
#include <string.h>
#include <zmq.h>

#include "interpd/jupyter-msg.h"
#include "tap.h"

#define KEY "secret-key"
#define F(s)                                                                                                 \
    (struct jmsg_frame)                                                                                      \
    {                                                                                                        \
        s, strlen(s)                                                                                         \
    }

/* /usr/bin/python3 -c 'import hmac,hashlib; h=hmac.new(b"secret-key",digestmod=hashlib.sha256);
 *   [h.update(f) for f in [b"{\"msg_id\":\"a\",\"msg_type\":\"t\"}", b"{}", b"{}",
 *   b"{\"code\":\"1+1\"}"]]; print(h.hexdigest())' */
#define KAT_SIG "803f53b752f31df5513ba9183a6de86cb22467e625d9f24071e76713efea5f19"
#define KAT_HEADER "{\"msg_id\":\"a\",\"msg_type\":\"t\"}"
#define KAT_CONTENT "{\"code\":\"1+1\"}"

TEST(sign_known_answer)
{
    struct jmsg_frame f[4] = { F(KAT_HEADER), F("{}"), F("{}"), F(KAT_CONTENT) };
    char sig[JMSG_SIG_HEX_LEN + 1];
    jmsg_sign(KEY, strlen(KEY), f, sig);
    ASSERT_STREQ(sig, KAT_SIG);
}

TEST(sign_empty_key_is_unsigned)
{
    struct jmsg_frame f[4] = { F(KAT_HEADER), F("{}"), F("{}"), F(KAT_CONTENT) };
    char sig[JMSG_SIG_HEX_LEN + 1];
    jmsg_sign("", 0, f, sig);
    ASSERT_STREQ(sig, "");
}

TEST(decode_known_message_with_identities)
{
    struct jmsg_frame f[] = { F("ident-1"), F("ident-2"), F(JMSG_DELIMITER), F(KAT_SIG),       F(KAT_HEADER),
                              F("{}"),      F("{}"),      F(KAT_CONTENT),    F("extra-buffer") };
    struct jmsg m;
    struct error_record err = { 0 };
    ASSERT_OK(jmsg_decode(f, sizeof(f) / sizeof(f[0]), KEY, strlen(KEY), &m, &err));
    ASSERT_STREQ(m.msg_type, "t");
    ASSERT_STREQ(m.msg_id, "a");
    ASSERT_TRUE(m.parent_id == NULL);
    ASSERT_STREQ(json_string_value(json_object_get(m.content, "code")), "1+1");
    jmsg_release(&m);
}

TEST(decode_rejects_changed_frame)
{
    struct jmsg_frame f[] = { F(JMSG_DELIMITER), F(KAT_SIG), F(KAT_HEADER),
                              F("{}"),           F("{}"),    F("{\"code\":\"1+2\"}") };
    struct jmsg m;
    struct error_record err = { 0 };
    ASSERT_EQ(jmsg_decode(f, 6, KEY, strlen(KEY), &m, &err), -EPERM);
    ASSERT_TRUE(strstr(err.msg, "signature") != NULL);
    /* The right frames under another key fail too, and so does a truncated signature. */
    struct jmsg_frame g[] = {
        F(JMSG_DELIMITER), F(KAT_SIG), F(KAT_HEADER), F("{}"), F("{}"), F(KAT_CONTENT)
    };
    ASSERT_EQ(jmsg_decode(g, 6, "other", 5, &m, &err), -EPERM);
    g[1].len = 63;
    ASSERT_EQ(jmsg_decode(g, 6, KEY, strlen(KEY), &m, &err), -EPERM);
}

TEST(decode_missing_frames)
{
    struct jmsg m;
    struct error_record err = { 0 };
    struct jmsg_frame nodelim[] = { F(KAT_SIG), F(KAT_HEADER), F("{}"), F("{}"), F(KAT_CONTENT) };
    ASSERT_EQ(jmsg_decode(nodelim, 5, KEY, strlen(KEY), &m, &err), -EBADMSG);
    struct jmsg_frame short_[] = { F(JMSG_DELIMITER), F(KAT_SIG), F(KAT_HEADER), F("{}"), F("{}") };
    ASSERT_EQ(jmsg_decode(short_, 5, KEY, strlen(KEY), &m, &err), -EBADMSG);
    ASSERT_EQ(jmsg_decode(NULL, 0, KEY, strlen(KEY), &m, &err), -EBADMSG);
}

static void sign4(const char *h, const char *p, const char *md, const char *c, char sig[JMSG_SIG_HEX_LEN + 1])
{
    struct jmsg_frame f[4] = { F(h), F(p), F(md), F(c) };
    jmsg_sign(KEY, strlen(KEY), f, sig);
}

TEST(decode_bad_json)
{
    struct jmsg m;
    struct error_record err = { 0 };
    const char *cases[][4] = {
        { "{not json", "{}", "{}", "{}" },
        { KAT_HEADER, "[]", "{}", "{}" },
        { KAT_HEADER, "{}", "{}", "\"str\"" },
        { "{\"msg_id\":\"a\"}", "{}", "{}", "{}" },                /* no msg_type */
        { "{\"msg_id\":1,\"msg_type\":\"t\"}", "{}", "{}", "{}" }, /* msg_id not a string */
        { KAT_HEADER, "{}", "{}", "{\"a\":1,\"a\":2}" },           /* duplicate keys */
        { KAT_HEADER, "{}", "{}", "{\"a\":\"\xff\"}" },            /* invalid UTF-8 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char sig[JMSG_SIG_HEX_LEN + 1];
        sign4(cases[i][0], cases[i][1], cases[i][2], cases[i][3], sig);
        struct jmsg_frame f[] = { F(JMSG_DELIMITER), F(sig),         F(cases[i][0]),
                                  F(cases[i][1]),    F(cases[i][2]), F(cases[i][3]) };
        ASSERT_EQ(jmsg_decode(f, 6, KEY, strlen(KEY), &m, &err), -EBADMSG);
    }
}

TEST(decode_limits)
{
    struct jmsg m;
    struct error_record err = { 0 };
    struct jmsg_frame f[JMSG_FRAMES_MAX + 1];
    for (size_t i = 0; i < JMSG_FRAMES_MAX + 1; i++)
        f[i] = F("x");
    ASSERT_EQ(jmsg_decode(f, JMSG_FRAMES_MAX + 1, KEY, strlen(KEY), &m, &err), -E2BIG);
    /* An oversized frame is refused before any HMAC or JSON work (its bytes are never read). */
    struct jmsg_frame big[] = {
        F(JMSG_DELIMITER), F(KAT_SIG), F(KAT_HEADER), F("{}"), F("{}"), F(KAT_CONTENT)
    };
    big[5].len = JMSG_FRAME_MAX + 1;
    ASSERT_EQ(jmsg_decode(big, 6, KEY, strlen(KEY), &m, &err), -E2BIG);
}

TEST(build_encode_decode_round_trip)
{
    json_t *parent = json_pack("{s:s}", "msg_id", "parent-id");
    struct jmsg m;
    jmsg_build(&m, "session-1", "user", "execute_request", parent, json_pack("{s:s}", "code", "x = 1"));
    json_decref(parent);
    ASSERT_STREQ(m.msg_type, "execute_request");
    ASSERT_EQ(strlen(m.msg_id), 36);
    ASSERT_EQ(m.msg_id[14], '4'); /* a version 4 UUID */
    ASSERT_STREQ(json_string_value(json_object_get(m.header, "version")), "5.3");
    ASSERT_STREQ(json_string_value(json_object_get(m.header, "session")), "session-1");
    const char *date = json_string_value(json_object_get(m.header, "date"));
    ASSERT_TRUE(date && strlen(date) == 27 && date[26] == 'Z');

    struct jmsg_wire w;
    ASSERT_OK(jmsg_encode(&m, KEY, strlen(KEY), &w));
    struct jmsg_frame f[] = { F("id"),
                              F(JMSG_DELIMITER),
                              F(w.sig),
                              { w.frames[0], w.lens[0] },
                              { w.frames[1], w.lens[1] },
                              { w.frames[2], w.lens[2] },
                              { w.frames[3], w.lens[3] } };
    struct jmsg back;
    struct error_record err = { 0 };
    ASSERT_OK(jmsg_decode(f, 7, KEY, strlen(KEY), &back, &err));
    ASSERT_STREQ(back.msg_id, m.msg_id);
    ASSERT_STREQ(back.parent_id, "parent-id");
    ASSERT_TRUE(json_equal(back.content, m.content));
    jmsg_release(&back);
    jmsg_wire_release(&w);
    jmsg_release(&m);
}

TEST(send_recv_over_zmq_with_identities)
{
    void *ctx = zmq_ctx_new();
    void *a = zmq_socket(ctx, ZMQ_PAIR), *b = zmq_socket(ctx, ZMQ_PAIR);
    ASSERT_OK(zmq_bind(a, "inproc://t"));
    ASSERT_OK(zmq_connect(b, "inproc://t"));
    struct jmsg m, got;
    struct error_record err = { 0 };
    ASSERT_EQ(jmsg_recv(b, KEY, strlen(KEY), &got, &err), 0); /* nothing queued: no blocking */
    jmsg_build(&m, "s", "u", "kernel_info_request", NULL, NULL);
    struct jmsg_frame ids[] = { F("route-a"), F("route-b") };
    ASSERT_OK(jmsg_send(a, &m, KEY, strlen(KEY), ids, 2));
    ASSERT_EQ(jmsg_recv(b, KEY, strlen(KEY), &got, &err), 1);
    ASSERT_STREQ(got.msg_id, m.msg_id);
    ASSERT_STREQ(got.msg_type, "kernel_info_request");
    jmsg_release(&got);
    /* Under the wrong key the message is consumed and refused. */
    ASSERT_OK(jmsg_send(a, &m, "wrong", 5, NULL, 0));
    ASSERT_EQ(jmsg_recv(b, KEY, strlen(KEY), &got, &err), -EPERM);
    ASSERT_EQ(jmsg_recv(b, KEY, strlen(KEY), &got, &err), 0);
    jmsg_release(&m);
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
}
