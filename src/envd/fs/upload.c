/* POST /files: multipart/form-data (one part per file, the part's filename the target path
 * unless the `path` query is set) or a raw application/octet-stream body (optionally
 * Content-Encoding: gzip, inflated as it streams).
 *
 * Each file is written, with the user's identity, to an unnamed O_TMPFILE in its target
 * directory (a named temporary file where the filesystem has no O_TMPFILE), given a temporary
 * name only once complete and renamed over the target, so a failed or cut upload never leaves
 * a half file under the target name, and an envd killed mid-upload leaves no file at all. Missing parent
 * directories are created (0755 less umask, owned by the user); files are created 0666 less umask, owned by
 * the user (an overwritten file keeps its permission bits). A final symlink is followed only to an existing
 * regular file; a dangling or other symlink is replaced, never written through. X-Metadata-*
 * headers become the file's complete user.e2b.* set.
 *
 * Nothing is buffered beyond one body piece and WRITE_BUFFER bytes of the file being written:
 * the decompressed size is not capped here, the disk (or the sandbox's disk limit) is the
 * bound, and running out of it answers 507 with the temporary file removed. Errors after the
 * body started are answered once the body ends, since MHD cannot respond in the middle of one. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/http-util.h"
#include "common/json-util.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "envd/envd.h"
#include "envd/fs/files.h"
#include "envd/fs/fs.h"
#include "common/banned.h"

#define INFLATE_CHUNK (64u * 1024)
/* Body pieces arrive at most MHD's read buffer (64 KiB) at a time. Each write() costs a pass
 * through the page cache's dirty throttling and a timestamp update (a journal transaction on
 * ext4), so pieces are gathered into this much before they are written: a 256 MiB upload with
 * curl to ext4 on loopback went from 1.08 to 1.84 GB/s (median of 7). */
#define WRITE_BUFFER (1u << 20)
/* Body bytes a refused upload reads and drops before closing the connection instead. */
#define UPLOAD_MAX_DISCARD (8u << 20)
/* Files one multipart request may carry. */
#define UPLOAD_MAX_FILES 10000

struct upload_file {
    char *path;   /* the target as requested (resolved), shown in the response */
    char *target; /* the name renamed over: path, or the file a final symlink points at */
    int dirfd;
    char *base;   /* target's name in dirfd */
    char tmp[64]; /* temporary name in dirfd, once it has one */
    bool named;   /* tmp exists in dirfd (not an unnamed O_TMPFILE) */
    int fd;
    bool keep_mode;
    mode_t mode;
    char *wbuf; /* WRITE_BUFFER bytes, mapped on the first write, unmapped by file_free() */
    size_t wlen;
};

struct files_upload {
    struct MHD_Connection *conn;
    struct envd_user user;
    char *query_path; /* resolved `path` query or NULL */
    json_t *metadata; /* object or NULL */
    json_t *result;   /* array of written files */
    json_t *seen;     /* paths of this request, as an object used as a set */
    bool raw;
    bool gzip;
    bool z_live;
    bool z_member_done; /* the last gzip member ended and no byte of another was read */
    z_stream z;
    unsigned char *zout;
    struct fs_multipart *mp;
    struct upload_file *cur;
    uint64_t discarded; /* body bytes dropped after an error */
    unsigned status;    /* first error, answered at the end */
    char msg[ERROR_MSG_MAX + 64];
};

static int set_error(struct files_upload *u, unsigned status, const char *fmt, ...) _printf_(3, 4);
static int set_error(struct files_upload *u, unsigned status, const char *fmt, ...)
{
    if (u->status == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(u->msg, sizeof(u->msg), fmt, ap);
        va_end(ap);
        u->status = status;
    }
    return -EIO;
}

static void file_free(struct upload_file *f)
{
    if (!f)
        return;
    if (f->wbuf)
        munmap(f->wbuf, WRITE_BUFFER);
    safe_close(f->fd);
    if (f->named)
        unlinkat(f->dirfd, f->tmp, 0);
    safe_close(f->dirfd);
    free(f->path);
    free(f->target);
    free(f->base);
    free(f);
}

/* Gives f a fresh temporary name in its directory: links the unnamed file fd there, or
 * (fd < 0) creates a new named file as f->fd. */
static int name_temp(struct upload_file *f, int fd)
{
    for (int tries = 0; tries < 8; tries++) {
        char hex[17];
        int r = random_hex(hex, 8);
        if (r < 0)
            return r;
        snprintf(f->tmp, sizeof(f->tmp), FS_UPLOAD_TEMP_PREFIX "%s", hex);
        if (fd < 0) {
            f->fd = openat(f->dirfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
            r = f->fd < 0 ? -errno : 0;
        } else {
            /* Through /proc/self/fd: linkat's AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH,
             * which a user's identity lacks. Our own fd directory is open to us whatever the
             * fsuid. */
            char proc[64];
            snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
            r = linkat(AT_FDCWD, proc, f->dirfd, f->tmp, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
        }
        if (r == 0) {
            f->named = true;
            return 0;
        }
        if (r != -EEXIST)
            return r;
    }
    return -EEXIST;
}

/* Opens the temporary file for path (resolved), as the user. */
static int file_open(struct files_upload *u, const char *path, struct upload_file **ret)
{
    if (streq(path, "/"))
        return set_error(u, MHD_HTTP_BAD_REQUEST, "path '/' is a directory");
    struct upload_file *f = xcalloc(1, sizeof(*f));
    f->fd = -1;
    f->dirfd = -1;
    f->path = xstrdup(path);
    f->target = xstrdup(path);

    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        /* Follow only to an existing regular file (bounded by the user's permissions, since
         * this runs as the user); anything else replaces the link itself. */
        char *real = realpath(path, NULL);
        struct stat tst;
        if (real && stat(real, &tst) == 0 && S_ISREG(tst.st_mode)) {
            free(f->target);
            f->target = real;
        } else {
            free(real);
        }
    }
    char *slash = strrchr(f->target, '/');
    _cleanup_free_ char *dir =
        slash == f->target ? xstrdup("/") : xstrndup(f->target, (size_t)(slash - f->target));
    f->base = xstrdup(slash + 1);

    int r = fs_mkdir_p(dir, 0755, NULL);
    if (r < 0 && r != -EEXIST) {
        file_free(f);
        if (r == -ENOTDIR)
            return set_error(u, MHD_HTTP_BAD_REQUEST,
                             "error ensuring directories for '%s': a parent is not a directory", path);
        return set_error(u, fs_errno_to_http_status(r), "error ensuring directories for '%s': %s", path,
                         errno_to_string(-r));
    }
    /* O_PATH: a user may write into a directory the user cannot list. */
    f->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (f->dirfd < 0) {
        r = -errno;
        file_free(f);
        return set_error(u, r == -ENOTDIR ? MHD_HTTP_BAD_REQUEST : fs_errno_to_http_status(r),
                         "error opening directory of '%s': %s", path, errno_to_string(-r));
    }
    if (fstatat(f->dirfd, f->base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISDIR(st.st_mode)) {
            file_free(f);
            return set_error(u, MHD_HTTP_BAD_REQUEST, "path is a directory: %s", path);
        }
        if (S_ISREG(st.st_mode)) {
            f->keep_mode = true;
            f->mode = st.st_mode & 0777;
        }
    }
    f->fd = openat(f->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (f->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
        r = name_temp(f, -1); /* no O_TMPFILE here: a named temporary file */
    else
        r = f->fd < 0 ? -errno : 0;
    if (r < 0) {
        file_free(f);
        return set_error(u, fs_errno_to_http_status(r), "error opening file '%s': %s", path,
                         errno_to_string(-r));
    }
    *ret = f;
    return 0;
}

static int write_all(struct files_upload *u, struct upload_file *f, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(f->fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            if (e == ENOSPC || e == EDQUOT || e == EFBIG)
                return set_error(u, MHD_HTTP_INSUFFICIENT_STORAGE,
                                 "not enough disk space available writing '%s'", f->path);
            return set_error(u, fs_errno_to_http_status(e), "error writing file '%s': %s", f->path,
                             errno_to_string(e));
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes what file_write() gathered. */
static int file_flush(struct files_upload *u, struct upload_file *f)
{
    size_t n = f->wlen;
    f->wlen = 0;
    return n ? write_all(u, f, f->wbuf, n) : 0;
}

/* Appends to f through its write buffer, mapped (not malloc'd) so that an envd done with an
 * upload gives the memory back at once. */
static int file_write(struct files_upload *u, struct upload_file *f, const char *data, size_t len)
{
    if (!f->wbuf) {
        void *b = mmap(NULL, WRITE_BUFFER, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED)
            return write_all(u, f, data, len);
        f->wbuf = b;
    }
    while (len > 0) {
        size_t n = MIN(len, WRITE_BUFFER - f->wlen);
        memcpy(f->wbuf + f->wlen, data, n);
        f->wlen += n;
        data += n;
        len -= n;
        if (f->wlen == WRITE_BUFFER) {
            int r = file_flush(u, f);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* Watchers expect a write event under the file's own name once it was written (E2B's envd
 * writes in place; its SDK tests wait for that event), but the data went to a file that had
 * no name then. Truncating the placed file to its own size raises IN_MODIFY under its name
 * and changes nothing else; the inode is checked first, so a file that replaced ours in the
 * meantime is left alone. A file the user cannot open for writing gets no event. */
static void touch_written(struct upload_file *f, const struct stat *mine)
{
    int fd = openat(f->dirfd, f->base, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_ino == mine->st_ino && st.st_dev == mine->st_dev && S_ISREG(st.st_mode))
        if (ftruncate(fd, st.st_size) < 0)
            log_debug("no write event for '%s': %s", f->path, errno_to_string(errno));
    close(fd);
}

/* Completes f: metadata, mode, rename over the target. Frees f. As the user. */
static int file_commit(struct files_upload *u, struct upload_file *f)
{
    int r = file_flush(u, f);
    if (r < 0) {
        file_free(f);
        return r;
    }
    r = fs_metadata_write_fd(f->fd, u->metadata);
    if (r == -EOPNOTSUPP)
        log_warn("filesystem does not support xattrs; metadata of '%s' not stored", f->path);
    else if (r == -ENOSPC || r == -EDQUOT || r == -E2BIG)
        r = set_error(u, MHD_HTTP_INSUFFICIENT_STORAGE, "not enough space for file metadata of '%s'",
                      f->path);
    else if (r < 0)
        r = set_error(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "error writing file metadata of '%s': %s", f->path,
                      errno_to_string(-r));
    if (r < 0 && r != -EOPNOTSUPP) {
        file_free(f);
        return r;
    }
    if (f->keep_mode)
        (void)fchmod(f->fd, f->mode);
    _cleanup_json_ json_t *md = NULL;
    (void)fs_metadata_read_fd(f->fd, &md);
    /* A new name: link the complete file there directly (one create event for watchers).
     * An existing one (or a race creating it): a temporary name, then rename over it. */
    bool placed = false;
    if (!f->named) {
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
        placed = linkat(AT_FDCWD, proc, f->dirfd, f->base, AT_SYMLINK_FOLLOW) == 0;
        if (!placed && (r = name_temp(f, f->fd)) < 0) {
            file_free(f);
            return set_error(u, fs_errno_to_http_status(r), "error naming the uploaded file: %s",
                             errno_to_string(-r));
        }
    }
    struct stat mine;
    bool have_mine = fstat(f->fd, &mine) == 0;
    r = close(TAKE_FD(f->fd)) < 0 ? -errno : 0;
    if ((r == -ENOSPC || r == -EDQUOT) && !placed) {
        file_free(f);
        return set_error(u, MHD_HTTP_INSUFFICIENT_STORAGE, "not enough disk space available");
    }
    if (!placed && renameat(f->dirfd, f->tmp, f->dirfd, f->base) < 0) {
        int e = errno;
        file_free(f);
        return set_error(u, e == EISDIR ? MHD_HTTP_BAD_REQUEST : fs_errno_to_http_status(e),
                         "error writing file: %s", errno_to_string(e));
    }
    f->named = false;
    if (have_mine)
        touch_written(f, &mine);
    const char *slash = strrchr(f->path, '/');
    json_t *entry =
        json_pack("{s:s, s:s, s:s}", "path", f->path, "name", slash ? slash + 1 : f->path, "type", "file");
    if (entry && md && json_object_size(md) > 0)
        json_object_set(entry, "metadata", md);
    if (entry)
        json_array_append_new(u->result, entry);
    file_free(f);
    return 0;
}

/* ---- the part sink ---- */

static int part_begin(void *cls, const char *filename, struct error_record *err)
{
    struct files_upload *u = cls;
    if (json_array_size(u->result) >= UPLOAD_MAX_FILES)
        return set_error(u, MHD_HTTP_BAD_REQUEST, "more than %d files in one upload", UPLOAD_MAX_FILES);
    _cleanup_free_ char *path = NULL;
    if (u->query_path) {
        path = xstrdup(u->query_path);
    } else {
        if (!filename || !*filename)
            return set_error(u, MHD_HTTP_BAD_REQUEST,
                             "a file part has no filename and no path query was given");
        struct error_record e;
        if (envd_resolve_path(&u->user, filename, &path, &e) < 0)
            return set_error(u, MHD_HTTP_BAD_REQUEST, "error resolving path: %s", e.msg);
    }
    if (json_object_get(u->seen, path))
        return set_error(u, MHD_HTTP_BAD_REQUEST,
                         "you cannot upload multiple files to the same path '%s' in one upload request",
                         path);
    json_object_set_new(u->seen, path, json_true());
    return file_open(u, path, &u->cur);
}

static int part_write(void *cls, const char *data, size_t len, struct error_record *err)
{
    struct files_upload *u = cls;
    return u->cur ? file_write(u, u->cur, data, len) : -EIO;
}

static int part_end(void *cls, struct error_record *err)
{
    struct files_upload *u = cls;
    struct upload_file *f = TAKE_PTR(u->cur);
    return f ? file_commit(u, f) : 0;
}

static void part_abort(void *cls)
{
    struct files_upload *u = cls;
    file_free(TAKE_PTR(u->cur));
}

static const struct fs_part_sink upload_sink = {
    .begin = part_begin,
    .write = part_write,
    .end = part_end,
    .abort = part_abort,
};

/* ---- the request ---- */

static enum MHD_Result collect_metadata(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    fs_metadata_add_header(cls, key, value);
    return MHD_YES;
}

/* The media type of a Content-Type value, lowercased, without parameters. */
static void media_type(const char *ct, char *out, size_t size)
{
    size_t w = 0;
    if (ct) {
        while (*ct == ' ' || *ct == '\t')
            ct++;
        for (; *ct && *ct != ';' && w + 1 < size; ct++)
            out[w++] = (char)((*ct >= 'A' && *ct <= 'Z') ? *ct + 32 : *ct);
    }
    while (w > 0 && (out[w - 1] == ' ' || out[w - 1] == '\t'))
        w--;
    out[w] = '\0';
}

static struct files_upload *upload_new(struct MHD_Connection *conn)
{
    struct files_upload *u = xcalloc(1, sizeof(*u));
    u->conn = conn;
    u->result = json_array();
    u->seen = json_object();
    return u;
}

struct files_upload *files_upload_failed(struct MHD_Connection *conn, const struct files_error *e)
{
    struct files_upload *u = upload_new(conn);
    set_error(u, e->status, "%s", e->msg);
    return u;
}

struct files_upload *files_upload_start(struct files_ctx *ctx)
{
    struct MHD_Connection *conn = ctx->conn;
    struct files_upload *u = upload_new(conn);
    _cleanup_json_ json_t *md = json_object();
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_metadata, md);
    struct error_record e;
    if (fs_metadata_validate(md, &e) < 0) {
        set_error(u, MHD_HTTP_BAD_REQUEST, "invalid metadata: %s", e.msg);
        return u;
    }
    char mt[128];
    media_type(http_header(conn, MHD_HTTP_HEADER_CONTENT_TYPE), mt, sizeof(mt));
    bool raw = streq(mt, "application/octet-stream");
    if (!raw && strncmp(mt, "multipart/", 10) != 0) {
        set_error(u, MHD_HTTP_BAD_REQUEST,
                  "unsupported content type: %s, expected multipart/form-data or application/octet-stream",
                  http_header(conn, MHD_HTTP_HEADER_CONTENT_TYPE) ?: "(none)");
        return u;
    }
    bool gzip = false;
    const char *ce = http_header(conn, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (ce && *ce) {
        char enc[32];
        media_type(ce, enc, sizeof(enc));
        if (streq(enc, "gzip")) {
            gzip = true;
        } else if (!streq(enc, "identity")) {
            set_error(u, MHD_HTTP_BAD_REQUEST,
                      "error decompressing request body: unsupported Content-Encoding: %s, supported: [gzip]",
                      ce);
            return u;
        }
    }
    if (gzip && !raw) {
        set_error(u, MHD_HTTP_BAD_REQUEST,
                  "Content-Encoding: gzip is supported for octet-stream bodies only");
        return u;
    }
    if (raw && !ctx->path) {
        set_error(u, MHD_HTTP_BAD_REQUEST, "path query parameter is required for raw body upload");
        return u;
    }

    u->user = ctx->user;
    u->query_path = TAKE_PTR(ctx->path);
    u->metadata = json_object_size(md) > 0 ? TAKE_PTR(md) : NULL;
    u->raw = raw;
    u->gzip = gzip;

    if (envd_as_user(&u->user) < 0) {
        set_error(u, MHD_HTTP_FORBIDDEN, "cannot act as user '%s'", u->user.name);
        return u;
    }
    if (raw) {
        json_object_set_new(u->seen, u->query_path, json_true());
        (void)file_open(u, u->query_path, &u->cur);
        if (gzip && !u->status) {
            u->zout = xmalloc(INFLATE_CHUNK);
            if (inflateInit2(&u->z, 15 + 16) != Z_OK)
                set_error(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot start gzip decoding");
            else
                u->z_live = true;
        }
    } else if (fs_multipart_new(conn, &upload_sink, u, &u->mp, &e) < 0) {
        set_error(u, MHD_HTTP_BAD_REQUEST, "error parsing multipart form: %s", e.msg);
    }
    envd_as_root();
    return u;
}

static void feed_raw(struct files_upload *u, const char *data, size_t len)
{
    if (!u->gzip) {
        (void)file_write(u, u->cur, data, len);
        return;
    }
    if (!u->z_live) {
        set_error(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "gzip decoding is not running");
        return;
    }
    u->z.next_in = (unsigned char *)data;
    u->z.avail_in = (uInt)len;
    while (u->z.avail_in > 0 && !u->status) {
        u->z.next_out = u->zout;
        u->z.avail_out = INFLATE_CHUNK;
        int r = inflate(&u->z, Z_NO_FLUSH);
        if (r == Z_OK || r == Z_BUF_ERROR)
            u->z_member_done = u->z_member_done && INFLATE_CHUNK == u->z.avail_out && u->z.total_in == 0;
        size_t have = INFLATE_CHUNK - u->z.avail_out;
        if (have > 0 && file_write(u, u->cur, (const char *)u->zout, have) < 0)
            return;
        if (r == Z_STREAM_END) {
            /* A gzip file may hold several members; the body may end after any of them. */
            u->z_member_done = true;
            if (inflateReset(&u->z) != Z_OK) {
                set_error(u, MHD_HTTP_BAD_REQUEST, "error decompressing request body");
                return;
            }
            continue;
        }
        if (r != Z_OK && !(r == Z_BUF_ERROR && have > 0)) {
            set_error(u, MHD_HTTP_BAD_REQUEST, "error decompressing request body: %s",
                      u->z.msg ? u->z.msg : "invalid gzip data");
            return;
        }
    }
}

bool files_upload_feed(struct files_upload *u, const char *data, size_t len)
{
    if (u->status) {
        /* Discard the rest of a failed upload, up to a bound. */
        u->discarded += len;
        return u->discarded <= UPLOAD_MAX_DISCARD;
    }
    if (u->raw) {
        /* Bytes go to the already open file: no identity needed until it is dropped. */
        feed_raw(u, data, len);
        if (u->status && u->cur) {
            bool as_user = envd_as_user(&u->user) == 0;
            file_free(TAKE_PTR(u->cur));
            if (as_user)
                envd_as_root();
        }
        return true;
    }
    if (envd_as_user(&u->user) < 0) {
        set_error(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot act as user '%s'", u->user.name);
        return true;
    }
    {
        struct error_record e;
        if (fs_multipart_feed(u->mp, data, len, &e) < 0 && !u->status)
            set_error(u, MHD_HTTP_BAD_REQUEST, "error reading form: %s", e.msg);
    }
    if (u->status)
        file_free(TAKE_PTR(u->cur));
    envd_as_root();
    return true;
}

enum MHD_Result files_upload_finish(struct files_upload *u)
{
    if (!u->status && envd_as_user(&u->user) < 0)
        set_error(u, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot act as user '%s'", u->user.name);
    if (!u->status) {
        if (u->raw) {
            if (u->z_live && !u->z_member_done)
                set_error(u, MHD_HTTP_BAD_REQUEST,
                          "error decompressing request body: unexpected end of gzip data");
            else if (u->cur)
                (void)file_commit(u, TAKE_PTR(u->cur));
        } else {
            struct error_record e;
            if (fs_multipart_finish(u->mp, &e) < 0 && !u->status)
                set_error(u, MHD_HTTP_BAD_REQUEST, "error reading form: %s", e.msg);
            else if (!u->status && json_array_size(u->result) == 0)
                set_error(u, MHD_HTTP_BAD_REQUEST, "no file part (form field 'file') in the multipart body");
        }
    }
    file_free(TAKE_PTR(u->cur));
    fs_multipart_free(TAKE_PTR(u->mp));
    envd_as_root();
    if (u->status) {
        log_info("POST /files: %u %s", u->status, u->msg);
        return http_queue_error(u->conn, u->status, "%s", u->msg);
    }
    return http_queue_json(u->conn, MHD_HTTP_OK, u->result);
}

void files_upload_free(struct files_upload *u)
{
    if (!u)
        return;
    if (u->cur || u->mp) {
        /* Cut off mid-body: drop temporary files as the user that made them. */
        bool as_user = envd_as_user(&u->user) == 0;
        fs_multipart_free(TAKE_PTR(u->mp));
        file_free(TAKE_PTR(u->cur));
        if (as_user)
            envd_as_root();
    }
    if (u->z_live)
        inflateEnd(&u->z);
    free(u->zout);
    free(u->query_path);
    json_decref(u->metadata);
    json_decref(u->result);
    json_decref(u->seen);
    free(u);
}
