/* http_get against a real loopback server (a thread here) that records the request and sends a
 * scripted answer: bodies by length, chunks and close; statuses; answers too long, malformed,
 * cut short or never sent; refused connections and bad URLs. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/time-util.h"
#include "interpd/http-get.h"
#include "tap.h"

struct server {
    int listen_fd;
    unsigned port;
    const char *answer; /* sent after the request head; NULL: send nothing, wait for the peer */
    char request[4096];
    pthread_t thread;
};

static void *serve_one(void *arg)
{
    struct server *s = arg;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t len = 0;
    while (len < sizeof(s->request) - 1 && !strstr(s->request, "\r\n\r\n")) {
        ssize_t n = read(fd, s->request + len, sizeof(s->request) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        s->request[len] = '\0';
    }
    if (s->answer) {
        if (write(fd, s->answer, strlen(s->answer)) < 0)
            perror("write");
    } else {
        char c;
        while (read(fd, &c, 1) > 0) /* until the client gives up */
            ;
    }
    close(fd);
    return NULL;
}

static void server_start(struct server *s, const char *answer)
{
    memset(s, 0, sizeof(*s));
    s->answer = answer;
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(s->listen_fd, 1) < 0 || getsockname(s->listen_fd, (struct sockaddr *)&a, &alen) < 0 ||
        pthread_create(&s->thread, NULL, serve_one, s) != 0)
        tap_fail(__FILE__, __LINE__, "loopback server: %s", strerror(errno));
    s->port = ntohs(a.sin_port);
}

static void server_stop(struct server *s)
{
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}

/* One exchange: the server, and what http_get gave back. */
struct exchange {
    struct server s;
    struct buf body;
    unsigned status;
};

/* GETs path (with header, or none) from a server that answers with answer, into x (whose body
 * holds at most body_max bytes); returns http_get's result. */
static int get(struct exchange *x, size_t body_max, const char *answer, const char *path, const char *header)
{
    buf_init(&x->body, body_max);
    x->status = 0;
    server_start(&x->s, answer);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", x->s.port, path);
    struct error_record err = { 0 };
    int r = http_get(url, header, 2000, &x->status, &x->body, &err);
    server_stop(&x->s);
    if (r < 0)
        fprintf(stderr, "# http_get: %s\n", err.msg);
    return r;
}

TEST(sends_a_get_with_host_header_and_close_and_reads_a_sized_body)
{
    struct exchange x;
    ASSERT_OK(get(&x, 1024, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"A\":\"1\"}", "/envs?x=1",
                  "X-Access-Token: t0k"));
    ASSERT_EQ(x.status, 200u);
    ASSERT_STREQ(x.body.data, "{\"A\":\"1\"}");
    char want[256];
    snprintf(
        want, sizeof(want),
        "GET /envs?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Access-Token: t0k\r\nConnection: close\r\n\r\n",
        x.s.port);
    ASSERT_STREQ(x.s.request, want);
    buf_release(&x.body);
}

TEST(chunked_and_close_delimited_bodies_and_other_statuses)
{
    struct exchange x;
    ASSERT_OK(
        get(&x, 1024,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\":2}\n\r\n0\r\n\r\n",
            "/", NULL));
    ASSERT_STREQ(x.body.data, "{\"a\":2}\n");
    char want[128];
    snprintf(want, sizeof(want), "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n",
             x.s.port);
    ASSERT_STREQ(x.s.request, want); /* no extra header line */
    buf_release(&x.body);
    ASSERT_OK(get(&x, 1024, "HTTP/1.0 200 OK\r\n\r\nuntil close", "", NULL));
    ASSERT_STREQ(x.body.data, "until close");
    ASSERT_TRUE(strncmp(x.s.request, "GET / HTTP/1.1\r\n", 16) == 0); /* an empty path is / */
    buf_release(&x.body);
    ASSERT_OK(get(&x, 1024, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno", "/envs", NULL));
    ASSERT_EQ(x.status, 401u);
    ASSERT_STREQ(x.body.data, "no");
    buf_release(&x.body);
}

TEST(a_body_over_the_buffers_maximum_fails)
{
    struct exchange x;
    ASSERT_EQ(get(&x, 8, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789", "/", NULL), -ENOBUFS);
    buf_release(&x.body);
}

TEST(malformed_or_cut_short_answers_fail)
{
    const char *answers[] = { "SSH-2.0-OpenSSH\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                              "HTTP/1.1 200 OK\r\nContent-Le", "" };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        struct exchange x;
        ASSERT_EQ(get(&x, 1024, answers[i], "/", NULL), -EBADMSG);
        buf_release(&x.body);
    }
}

TEST(a_server_that_never_answers_times_out)
{
    struct server s;
    struct buf b;
    buf_init(&b, 1024);
    unsigned status = 0;
    usec_t t0 = now_usec(CLOCK_MONOTONIC);
    /* The server waits for the client to close; http_get must give up on its own. */
    server_start(&s, NULL);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/envs", s.port);
    struct error_record err = { 0 };
    ASSERT_EQ(http_get(url, NULL, 200, &status, &b, &err), -ETIMEDOUT);
    usec_t took = now_usec(CLOCK_MONOTONIC) - t0;
    server_stop(&s);
    ASSERT_GE(took, 190 * USEC_PER_MSEC);
    ASSERT_TRUE(took < 5 * USEC_PER_SEC);
    buf_release(&b);
}

TEST(refused_connections_and_names)
{
    /* A port that was just free: nothing listens there. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    ASSERT_OK(bind(fd, (struct sockaddr *)&a, sizeof(a)));
    ASSERT_OK(getsockname(fd, (struct sockaddr *)&a, &alen));
    close(fd);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/envs", ntohs(a.sin_port));
    struct buf b;
    buf_init(&b, 1024);
    unsigned status = 0;
    struct error_record err = { 0 };
    ASSERT_EQ(http_get(url, NULL, 2000, &status, &b, &err), -ECONNREFUSED);
    ASSERT_TRUE(strstr(err.msg, "127.0.0.1") != NULL);
    /* A name is resolved: localhost is in every /etc/hosts. */
    struct server s;
    server_start(&s, "HTTP/1.1 204 No Content\r\n\r\n");
    snprintf(url, sizeof(url), "http://localhost:%u/envs", s.port);
    int r = http_get(url, NULL, 2000, &status, &b, &err);
    server_stop(&s);
    if (r < 0)
        fprintf(stderr, "# localhost: %s\n", err.msg);
    ASSERT_OK(r);
    ASSERT_EQ(status, 204u);
    ASSERT_EQ(b.len, 0u);
    buf_release(&b);
}

TEST(bad_urls_and_headers_are_refused_before_connecting)
{
    struct buf b;
    buf_init(&b, 1024);
    unsigned status = 0;
    struct error_record err = { 0 };
    const char *bad[] = { "https://127.0.0.1/envs",    "127.0.0.1:49983/envs", "http:///envs",
                          "http://u:p@127.0.0.1/envs", "ftp://127.0.0.1/",     "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ(http_get(bad[i], NULL, 2000, &status, &b, &err), -EINVAL);
    ASSERT_EQ(http_get("http://127.0.0.1:1/envs", "X-Access-Token: a\r\nX-Evil: 1", 2000, &status, &b, &err),
              -EINVAL);
    ASSERT_EQ(http_get("http://127.0.0.1:1/envs", "no colon", 2000, &status, &b, &err), -EINVAL);
    buf_release(&b);
}
