/* multipart/form-data upload bodies, parsed by libmicrohttpd's post processor (which streams
 * each part and gives its filename), turned into begin/write/end calls on a part sink.
 *
 * The post processor has no "part ended" callback: a part ends when the next one begins, or,
 * for the last one, when the post processor confirms the closing boundary at destruction. It
 * may also call the iterator for a part with offset 0 more than once (first with no bytes
 * while it cannot yet see past the headers), so a call at offset 0 is a new part only when
 * the current part already received bytes or the field name or filename changed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "envd/fs/fs.h"
#include "common/banned.h"

/* Internal buffer of the post processor: the longest part header line it can hold. */
#define MULTIPART_BUFFER 65536

struct fs_multipart {
    struct MHD_PostProcessor *pp;
    const struct fs_part_sink *sink;
    void *cls;
    bool in_part;   /* a file part is open on the sink */
    bool skipping;  /* the current part is not a file part */
    bool have_part; /* some part (file or not) was seen */
    uint64_t part_bytes;
    char *key;      /* field name of the current part */
    char *filename; /* its filename */
    int error;      /* sticky -errno */
    struct error_record err;
};

static bool str_eq_null(const char *a, const char *b)
{
    return (!a && !b) || (a && b && streq(a, b));
}

static enum MHD_Result iterate(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size)
{
    struct fs_multipart *m = cls;
    if (m->error)
        return MHD_NO;
    bool new_part =
        !m->have_part ||
        (off == 0 && (m->part_bytes > 0 || !str_eq_null(key, m->key) || !str_eq_null(filename, m->filename)));
    if (new_part) {
        if (m->in_part) {
            m->in_part = false;
            int r = m->sink->end(m->cls, &m->err);
            if (r < 0) {
                m->error = r;
                return MHD_NO;
            }
        }
        free(m->key);
        free(m->filename);
        m->key = key ? xstrdup(key) : NULL;
        m->filename = filename ? xstrdup(filename) : NULL;
        m->have_part = true;
        m->part_bytes = 0;
        m->skipping = !key || !streq(key, "file");
        if (!m->skipping) {
            int r = m->sink->begin(m->cls, filename, &m->err);
            if (r < 0) {
                m->error = r;
                return MHD_NO;
            }
            m->in_part = true;
        }
    }
    m->part_bytes += size;
    if (m->skipping || size == 0)
        return MHD_YES;
    int r = m->sink->write(m->cls, data, size, &m->err);
    if (r < 0) {
        m->error = r;
        return MHD_NO;
    }
    return MHD_YES;
}

int fs_multipart_new(struct MHD_Connection *conn, const struct fs_part_sink *sink, void *cls,
                     struct fs_multipart **ret, struct error_record *err)
{
    struct fs_multipart *m = xcalloc(1, sizeof(*m));
    m->sink = sink;
    m->cls = cls;
    m->pp = MHD_create_post_processor(conn, MULTIPART_BUFFER, iterate, m);
    if (!m->pp) {
        free(m);
        return error_set(err, EINVAL, "malformed multipart/form-data Content-Type");
    }
    *ret = m;
    return 0;
}

static int fail(struct fs_multipart *m, struct error_record *err)
{
    if (err)
        *err = m->err;
    return m->error;
}

int fs_multipart_feed(struct fs_multipart *m, const char *data, size_t len, struct error_record *err)
{
    if (m->error)
        return fail(m, err);
    if (len == 0)
        return 0;
    if (MHD_post_process(m->pp, data, len) != MHD_YES) {
        if (!m->error) {
            m->error = -EINVAL;
            error_set(&m->err, EINVAL, "malformed multipart body");
        }
        return fail(m, err);
    }
    return 0;
}

int fs_multipart_finish(struct fs_multipart *m, struct error_record *err)
{
    if (m->error)
        return fail(m, err);
    struct MHD_PostProcessor *pp = m->pp;
    m->pp = NULL;
    if (MHD_destroy_post_processor(pp) != MHD_YES || m->error) {
        if (!m->error) {
            m->error = -EINVAL;
            error_set(&m->err, EINVAL, "malformed multipart body: incomplete or no closing boundary");
        }
        return fail(m, err);
    }
    if (m->in_part) {
        m->in_part = false;
        int r = m->sink->end(m->cls, &m->err);
        if (r < 0) {
            m->error = r;
            return fail(m, err);
        }
    }
    return 0;
}

void fs_multipart_free(struct fs_multipart *m)
{
    if (!m)
        return;
    if (m->pp)
        MHD_destroy_post_processor(m->pp);
    if (m->in_part)
        m->sink->abort(m->cls);
    free(m->key);
    free(m->filename);
    free(m);
}
