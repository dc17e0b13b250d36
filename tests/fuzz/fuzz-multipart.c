/* libFuzzer target: multipart/form-data upload bodies through libmicrohttpd's post processor
 * and envd's part handling (src/envd/fs/multipart.c), as POST /files receives them.
 *
 * Input: the first line is the Content-Type value, the rest the body. A real MHD daemon (no
 * listening socket, driven by MHD_run) takes the request over a socketpair, so the post
 * processor sees exactly what a connection gives it, in pieces. The sink checks the part
 * protocol: write() only inside a part, end()/abort() only after begin(), and never touches
 * the disk. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "envd/fs/fs.h"
#include "common/banned.h"

#define MAX_ROUNDS 200000

struct sink_state {
    bool open;
    size_t parts;
    uint64_t bytes;
};

static int s_begin(void *cls, const char *filename, struct error_record *err)
{
    struct sink_state *s = cls;
    if (s->open)
        abort();
    if (filename)
        (void)strlen(filename);
    s->open = true;
    s->parts++;
    /* Refuse a duplicate-looking part now and then, as the real sink does. */
    if (filename && strcmp(filename, "dup") == 0 && s->parts > 1)
        return error_set(err, EINVAL, "duplicate");
    return 0;
}

static int s_write(void *cls, const char *data, size_t len, struct error_record *err)
{
    struct sink_state *s = cls;
    if (!s->open || (len > 0 && !data))
        abort();
    /* Touch every byte so that ASan checks the whole range. */
    unsigned char sum = 0;
    for (size_t i = 0; i < len; i++)
        sum ^= (unsigned char)data[i];
    s->bytes += len + (sum & 0);
    return 0;
}

static int s_end(void *cls, struct error_record *err)
{
    struct sink_state *s = cls;
    if (!s->open)
        abort();
    s->open = false;
    return 0;
}

static void s_abort(void *cls)
{
    struct sink_state *s = cls;
    if (!s->open)
        abort();
    s->open = false;
}

static const struct fs_part_sink sink = { s_begin, s_write, s_end, s_abort };

struct req {
    struct fs_multipart *mp;
    struct sink_state st;
    bool failed;
};

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *data, size_t *size, void **req_cls)
{
    struct req *r = *req_cls;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            abort();
        *req_cls = r;
        if (fs_multipart_new(conn, &sink, &r->st, &r->mp, NULL) < 0)
            r->failed = true;
        return MHD_YES;
    }
    if (*size > 0) {
        if (!r->failed && fs_multipart_feed(r->mp, data, *size, NULL) < 0)
            r->failed = true;
        *size = 0;
        return MHD_YES;
    }
    if (!r->failed && fs_multipart_finish(r->mp, NULL) < 0)
        r->failed = true;
    if (r->st.open && !r->failed)
        abort(); /* a finished body leaves no part open */
    if (getenv("FUZZ_MULTIPART_VERBOSE"))
        fprintf(stderr, "parts=%zu bytes=%llu %s\n", r->st.parts, (unsigned long long)r->st.bytes,
                r->failed ? "failed" : "ok");
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, r->failed ? 400 : 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct req *r = *req_cls;
    if (!r)
        return;
    fs_multipart_free(r->mp);
    free(r);
    *req_cls = NULL;
}

static struct MHD_Daemon *daemon_get(void)
{
    static struct MHD_Daemon *d;
    if (!d) {
        d = MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, handler, NULL,
                             MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                             (size_t)(256 * 1024), MHD_OPTION_END);
        if (!d)
            abort();
    }
    return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t ct_len = nl ? (size_t)(nl - data) : 0;
    const uint8_t *body = nl ? nl + 1 : data;
    size_t body_len = size - (size_t)(body - data);
    if (ct_len > 4096)
        return 0;

    char ct[4097];
    for (size_t i = 0; i < ct_len; i++)
        ct[i] = (data[i] == '\r' || data[i] == '\0') ? ' ' : (char)data[i];
    ct[ct_len] = '\0';
    if (ct_len == 0)
        snprintf(ct, sizeof(ct), "multipart/form-data; boundary=b");

    char head[4300];
    int hl = snprintf(head, sizeof(head),
                      "POST /files HTTP/1.1\r\nHost: fuzz\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      ct, body_len);
    size_t req_len = (size_t)hl + body_len;
    uint8_t *req = malloc(req_len ? req_len : 1);
    if (!req)
        abort();
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, body, body_len);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        abort();
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct MHD_Daemon *d = daemon_get();
    if (MHD_add_connection(d, sv[0], (const struct sockaddr *)&addr, sizeof(addr)) != MHD_YES)
        abort();
    size_t sent = 0;
    char buf[4096];
    bool closed = false;
    for (int round = 0; round < MAX_ROUNDS && !closed; round++) {
        if (sent < req_len) {
            ssize_t n = send(sv[1], req + sent, req_len - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                sent = req_len; /* MHD closed early: stop sending */
        }
        MHD_run(d);
        for (;;) {
            ssize_t n = recv(sv[1], buf, sizeof(buf), 0);
            if (n > 0)
                continue;
            if (n == 0 || errno != EAGAIN)
                closed = true;
            break;
        }
    }
    close(sv[1]);
    /* Let MHD notice the close and release the connection before the next input. */
    for (int i = 0; i < 16; i++)
        MHD_run(d);
    free(req);
    return 0;
}
