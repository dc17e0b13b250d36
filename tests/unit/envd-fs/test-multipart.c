/* multipart.c over a real libmicrohttpd connection (a socketpair, driven by MHD_run): the
 * parts, their filenames and bytes come out right however the body is split, including one
 * byte at a time (where the post processor reports a part's start before any of its bytes). */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "envd/fs/fs.h"
#include "tap.h"

#define MAX_PARTS 8

struct seen {
    size_t n;
    char name[MAX_PARTS][128];
    char data[MAX_PARTS][256];
    size_t len[MAX_PARTS];
    bool ended[MAX_PARTS];
    bool open;
    int aborted;
    int fail_begin_at; /* 1-based part to refuse, 0: none */
};

static int s_begin(void *cls, const char *filename, struct error_record *err)
{
    struct seen *s = cls;
    if (s->open || s->n == MAX_PARTS)
        abort();
    snprintf(s->name[s->n], sizeof(s->name[0]), "%s", filename ? filename : "(null)");
    s->n++;
    s->open = true;
    if ((int)s->n == s->fail_begin_at)
        return error_set(err, EINVAL, "refused part %zu", s->n);
    return 0;
}

static int s_write(void *cls, const char *data, size_t len, struct error_record *err)
{
    struct seen *s = cls;
    size_t i = s->n - 1;
    if (!s->open || s->len[i] + len >= sizeof(s->data[0]))
        abort();
    memcpy(s->data[i] + s->len[i], data, len);
    s->len[i] += len;
    return 0;
}

static int s_end(void *cls, struct error_record *err)
{
    struct seen *s = cls;
    if (!s->open)
        abort();
    s->ended[s->n - 1] = true;
    s->open = false;
    return 0;
}

static void s_abort(void *cls)
{
    struct seen *s = cls;
    if (!s->open)
        abort();
    s->open = false;
    s->aborted++;
}

static const struct fs_part_sink sink = { s_begin, s_write, s_end, s_abort };

struct req {
    struct fs_multipart *mp;
    int result; /* of new/feed/finish */
    char msg[ERROR_MSG_MAX];
    bool done;
};

static struct seen *current;
static struct req *last;

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *data, size_t *size, void **req_cls)
{
    struct req *r = *req_cls;
    struct error_record e = { 0 };
    if (!r) {
        r = calloc(1, sizeof(*r));
        *req_cls = r;
        last = r;
        r->result = fs_multipart_new(conn, &sink, current, &r->mp, &e);
        snprintf(r->msg, sizeof(r->msg), "%s", e.msg);
        return MHD_YES;
    }
    if (*size > 0) {
        if (r->result == 0) {
            r->result = fs_multipart_feed(r->mp, data, *size, &e);
            snprintf(r->msg, sizeof(r->msg), "%s", e.msg);
        }
        *size = 0;
        return MHD_YES;
    }
    if (r->result == 0) {
        r->result = fs_multipart_finish(r->mp, &e);
        snprintf(r->msg, sizeof(r->msg), "%s", e.msg);
    }
    r->done = true;
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, r->result == 0 ? 200 : 400, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct req *r = *req_cls;
    if (r) {
        fs_multipart_free(r->mp);
        r->mp = NULL;
    }
}

/* Sends the request in pieces of `step` bytes (running MHD after each) and waits for the
 * connection to close. Returns the handler's result. */
static int run(const char *content_type, const char *body, size_t body_len, size_t step, struct seen *s)
{
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, handler, NULL,
                                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    ASSERT_TRUE(d != NULL);
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "POST /files HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      content_type, body_len);
    size_t total = (size_t)hl + body_len;
    char *req = malloc(total);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, body, body_len);

    int sv[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv));
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    current = s;
    last = NULL;
    ASSERT_EQ(MHD_add_connection(d, sv[0], (const struct sockaddr *)&addr, sizeof(addr)), MHD_YES);
    size_t sent = 0;
    bool closed = false;
    char buf[1024];
    for (int round = 0; round < 1000000 && !closed; round++) {
        if (sent < total) {
            ssize_t n = send(sv[1], req + sent, MIN(step, total - sent), MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
        }
        MHD_run(d);
        ssize_t n = recv(sv[1], buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            closed = true;
    }
    ASSERT_TRUE(closed);
    ASSERT_TRUE(last != NULL);
    int result = last->result;
    if (result < 0)
        fprintf(stderr, "# multipart error: %s\n", last->msg);
    close(sv[1]);
    MHD_stop_daemon(d);
    free(last);
    free(req);
    return result;
}

#define CT "multipart/form-data; boundary=XyZzy"

static const char two_files[] =
    "preamble is ignored\r\n"
    "--XyZzy\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"/home/user/a.txt\"\r\n"
    "Content-Type: text/plain\r\n\r\n"
    "alpha\r\nwith a line\r\n"
    "--XyZzy\r\n"
    "Content-Disposition: form-data; name=\"note\"\r\n\r\n"
    "not a file\r\n"
    "--XyZzy\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"b/\xc3\xa9.bin\"\r\n\r\n"
    "\x00\x01--XyZz\r\n-\r\n"
    "--XyZzy\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"empty\"\r\n\r\n"
    "\r\n"
    "--XyZzy--\r\n";

static void check_two_files(const struct seen *s)
{
    ASSERT_EQ(s->n, 3u);
    ASSERT_STREQ(s->name[0], "/home/user/a.txt");
    ASSERT_EQ(s->len[0], 18u);
    ASSERT_MEMEQ(s->data[0], "alpha\r\nwith a line", 18);
    ASSERT_STREQ(s->name[1], "b/\xc3\xa9.bin");
    /* The CRLF before a delimiter belongs to the delimiter. */
    ASSERT_EQ(s->len[1], 11u);
    ASSERT_MEMEQ(s->data[1], "\x00\x01--XyZz\r\n-", 11);
    ASSERT_STREQ(s->name[2], "empty");
    ASSERT_EQ(s->len[2], 0u);
    ASSERT_TRUE(s->ended[0] && s->ended[1] && s->ended[2]);
    ASSERT_EQ(s->aborted, 0);
}

TEST(parts_in_one_piece)
{
    struct seen s = { 0 };
    ASSERT_OK(run(CT, two_files, sizeof(two_files) - 1, 1 << 20, &s));
    check_two_files(&s);
}

TEST(parts_one_byte_at_a_time)
{
    for (size_t step = 1; step <= 7; step++) {
        struct seen s = { 0 };
        ASSERT_OK(run(CT, two_files, sizeof(two_files) - 1, step, &s));
        check_two_files(&s);
    }
}

TEST(empty_part_then_another)
{
    static const char body[] = "--XyZzy\r\n"
                               "Content-Disposition: form-data; name=\"file\"; filename=\"first\"\r\n\r\n"
                               "\r\n--XyZzy\r\n"
                               "Content-Disposition: form-data; name=\"file\"; filename=\"second\"\r\n\r\n"
                               "2\r\n--XyZzy--\r\n";
    for (size_t step = 1; step <= 3; step++) {
        struct seen s = { 0 };
        ASSERT_OK(run(CT, body, sizeof(body) - 1, step, &s));
        ASSERT_EQ(s.n, 2u);
        ASSERT_EQ(s.len[0], 0u);
        ASSERT_STREQ(s.name[1], "second");
        ASSERT_EQ(s.len[1], 1u);
    }
}

TEST(truncated_body_aborts_the_open_part)
{
    static const char body[] = "--XyZzy\r\n"
                               "Content-Disposition: form-data; name=\"file\"; filename=\"cut\"\r\n\r\n"
                               "half of it";
    struct seen s = { 0 };
    ASSERT_EQ(run(CT, body, sizeof(body) - 1, 1 << 20, &s), -EINVAL);
    ASSERT_EQ(s.n, 1u);
    ASSERT_FALSE(s.ended[0]);
    ASSERT_EQ(s.aborted, 1);
}

TEST(refused_part_stops_the_body)
{
    struct seen s = { .fail_begin_at = 2 };
    ASSERT_EQ(run(CT, two_files, sizeof(two_files) - 1, 1 << 20, &s), -EINVAL);
    ASSERT_TRUE(s.ended[0]);
    ASSERT_EQ(s.n, 2u);
}

TEST(bad_content_types)
{
    struct seen s = { 0 };
    ASSERT_EQ(run("multipart/form-data", two_files, sizeof(two_files) - 1, 1 << 20, &s), -EINVAL);
    ASSERT_EQ(s.n, 0u);
    ASSERT_EQ(run("text/plain", "x", 1, 1 << 20, &s), -EINVAL);
    ASSERT_EQ(s.n, 0u);
}
