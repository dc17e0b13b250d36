/* GET /files: streams one regular file, never holding it in memory. The file is opened with
 * the user's identity; the body then comes from the fd (sendfile for identity, a zlib deflate
 * callback for gzip). Supports one byte range (206/416) and conditional requests (ETag,
 * Last-Modified: 304), which like envd's http.ServeContent are served without compression. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/cleanup.h"
#include "common/http-util.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "envd/envd.h"
#include "envd/fs/files.h"
#include "envd/fs/fs.h"
#include "common/banned.h"

#define GZ_IN_CHUNK (64u * 1024)
#define GZ_BLOCK (64u * 1024)

struct gz_reader {
    int fd;
    z_stream z;
    bool eof;
    bool done;
    unsigned char in[GZ_IN_CHUNK];
};

static ssize_t gz_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct gz_reader *g = cls;
    if (g->done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    g->z.next_out = (unsigned char *)buf;
    g->z.avail_out = (uInt)MIN(max, (size_t)UINT32_MAX);
    /* Produce at least one byte per call (0 would make MHD call again at once). */
    while (g->z.avail_out > 0) {
        if (g->z.avail_in == 0 && !g->eof) {
            ssize_t n = read(g->fd, g->in, sizeof(g->in));
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (n == 0)
                g->eof = true;
            g->z.next_in = g->in;
            g->z.avail_in = (uInt)n;
        }
        int r = deflate(&g->z, g->eof ? Z_FINISH : Z_NO_FLUSH);
        if (r == Z_STREAM_END) {
            g->done = true;
            break;
        }
        if (r != Z_OK && r != Z_BUF_ERROR)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (g->z.avail_out < max && g->z.avail_in == 0 && !g->eof)
            break; /* something to send; read more next time */
    }
    size_t produced = max - g->z.avail_out;
    if (produced == 0)
        return g->done ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    return (ssize_t)produced;
}

static void gz_free(void *cls)
{
    struct gz_reader *g = cls;
    deflateEnd(&g->z);
    safe_close(g->fd);
    free(g);
}

static void etag_of(const struct stat *st, char *out, size_t size)
{
    snprintf(out, size, "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st->st_size,
             (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec);
}

/* Whether an If-None-Match / If-Match list names etag ("*" matches anything). Weak
 * comparison: W/ prefixes are ignored. */
static bool etag_listed(const char *list, const char *etag)
{
    size_t elen = strlen(etag);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *end = p;
        if (*p == '"') {
            end = strchr(p + 1, '"');
            end = end ? end + 1 : p + strlen(p);
        } else {
            while (*end && *end != ',')
                end++;
        }
        if ((size_t)(end - p) == elen && memcmp(p, etag, elen) == 0)
            return true;
        p = end;
    }
    return false;
}

static void add_common_headers(struct MHD_Response *r, const char *disposition, const char *etag,
                               const char *last_modified)
{
    MHD_add_response_header(r, "Vary", "Accept-Encoding");
    MHD_add_response_header(r, "Accept-Ranges", "bytes");
    MHD_add_response_header(r, "Content-Disposition", disposition);
    MHD_add_response_header(r, "ETag", etag);
    MHD_add_response_header(r, "Last-Modified", last_modified);
}

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r)
{
    if (!r)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result files_download(struct files_ctx *ctx, bool head)
{
    (void)head;
    struct MHD_Connection *conn = ctx->conn;
    const char *path = ctx->path;
    if (!path) {
        struct error_record e;
        if (envd_resolve_path(&ctx->user, "", &ctx->path, &e) < 0)
            return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "error resolving path: %s", e.msg);
        path = ctx->path;
    }
    if (envd_as_user(&ctx->user) < 0)
        return http_queue_error(conn, MHD_HTTP_FORBIDDEN, "cannot act as user '%s'", ctx->user.name);
    struct stat st;
    int r = stat(path, &st) < 0 ? -errno : 0;
    _cleanup_close_ int fd = -1;
    if (r == 0 && !S_ISDIR(st.st_mode)) {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 || fstat(fd, &st) < 0)
            r = -errno;
    }
    envd_as_root();
    if (r == -ENOENT || r == -ENOTDIR)
        return http_queue_error(conn, MHD_HTTP_NOT_FOUND, "path '%s' does not exist", path);
    if (r == -ELOOP)
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "path '%s': too many levels of symbolic links",
                                path);
    if (r < 0)
        return http_queue_error(conn, fs_errno_to_http_status(r), "error opening file '%s': %s", path,
                                errno_to_string(-r));
    if (S_ISDIR(st.st_mode))
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "path '%s' is a directory", path);
    if (!S_ISREG(st.st_mode))
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "path '%s' is not a regular file", path);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);

    const char *accept = http_header(conn, "Accept-Encoding");
    enum fs_encoding enc;
    if (fs_accept_encoding(accept, &enc) < 0)
        return http_queue_error(
            conn, MHD_HTTP_NOT_ACCEPTABLE,
            "error parsing Accept-Encoding: no acceptable encoding found, supported: [gzip]");
    const char *range = http_header(conn, "Range");
    const char *if_none_match = http_header(conn, "If-None-Match");
    const char *if_modified_since = http_header(conn, "If-Modified-Since");
    const char *if_range = http_header(conn, "If-Range");
    if (range || if_none_match || if_modified_since || if_range || http_header(conn, "If-Match") ||
        http_header(conn, "If-Unmodified-Since")) {
        if (!fs_identity_acceptable(accept))
            return http_queue_error(conn, MHD_HTTP_NOT_ACCEPTABLE,
                                    "identity encoding not acceptable for Range or conditional request");
        enc = FS_ENCODING_IDENTITY;
    }

    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    _cleanup_free_ char *disposition = fs_content_disposition(base);
    char etag[64], last_modified[40];
    etag_of(&st, etag, sizeof(etag));
    fs_format_http_date(st.st_mtim.tv_sec, last_modified, sizeof(last_modified));
    const char *ctype = fs_content_type_by_name(base);
    if (!ctype) {
        char sniff[512];
        ssize_t n = pread(fd, sniff, sizeof(sniff), 0);
        ctype = fs_content_type_sniff(sniff, n > 0 ? (size_t)n : 0);
    }
    uint64_t size = (uint64_t)st.st_size;

    /* Preconditions as http.ServeContent checks them (RFC 9110 13.2.2): If-Match, else
     * If-Unmodified-Since (412); then If-None-Match, else If-Modified-Since (304). */
    const char *if_match = http_header(conn, "If-Match");
    const char *if_unmodified_since = http_header(conn, "If-Unmodified-Since");
    bool failed = false;
    if (if_match) {
        failed = !etag_listed(if_match, etag);
    } else if (if_unmodified_since) {
        time_t ius;
        if (fs_parse_http_date(if_unmodified_since, &ius) == 0 && st.st_mtim.tv_sec > ius)
            failed = true;
    }
    if (failed) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp)
            add_common_headers(resp, disposition, etag, last_modified);
        return queue(conn, MHD_HTTP_PRECONDITION_FAILED, resp);
    }

    bool not_modified = false;
    if (if_none_match) {
        not_modified = etag_listed(if_none_match, etag);
    } else if (if_modified_since) {
        time_t ims;
        if (fs_parse_http_date(if_modified_since, &ims) == 0 && st.st_mtim.tv_sec <= ims)
            not_modified = true;
    }
    if (not_modified) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp)
            add_common_headers(resp, disposition, etag, last_modified);
        return queue(conn, MHD_HTTP_NOT_MODIFIED, resp);
    }

    if (range && if_range) {
        /* A range only while the representation is the one the client has. */
        time_t t;
        bool same = if_range[0] == '"' ? streq(if_range, etag)
                                       : fs_parse_http_date(if_range, &t) == 0 && t == st.st_mtim.tv_sec;
        if (!same)
            range = NULL;
    }
    uint64_t a = 0, b = 0;
    int rr = fs_parse_range(range, size, &a, &b);
    if (rr == -ERANGE) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp) {
            char cr[64];
            snprintf(cr, sizeof(cr), "bytes */%" PRIu64, size);
            MHD_add_response_header(resp, "Content-Range", cr);
            add_common_headers(resp, disposition, etag, last_modified);
        }
        return queue(conn, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
    }

    struct MHD_Response *resp;
    unsigned status = MHD_HTTP_OK;
    if (size == 0) {
        /* MHD answers HEAD from the same response without its body. */
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else if (rr == 1) {
        resp = MHD_create_response_from_fd_at_offset64(b - a + 1, fd, a);
        if (resp) {
            TAKE_FD(fd);
            char cr[96];
            snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, a, b, size);
            MHD_add_response_header(resp, "Content-Range", cr);
        }
        status = MHD_HTTP_PARTIAL_CONTENT;
    } else if (enc == FS_ENCODING_GZIP) {
        struct gz_reader *g = xcalloc(1, sizeof(*g));
        if (deflateInit2(&g->z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(g);
            return http_queue_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot start gzip");
        }
        g->fd = TAKE_FD(fd);
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, GZ_BLOCK, gz_read, g, gz_free);
        if (!resp)
            gz_free(g);
        else
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    } else {
        resp = MHD_create_response_from_fd_at_offset64(size, fd, 0);
        if (resp)
            TAKE_FD(fd);
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    add_common_headers(resp, disposition, etag, last_modified);
    return queue(conn, status, resp);
}
