/* libhutch: templates through E2B's template build API (e2b-compat §2.7, §5.2): build (create,
 * hash and upload the COPY sources, start, follow the status and logs), list and delete.
 *
 * Invariant: a COPY source is read only from below the context directory. Each path is
 * opened one component at a time relative to the context's fd with O_NOFOLLOW, so neither a
 * ".." nor a symbolic link (in the context or planted there while we read) leads out of it; a
 * symbolic link met as a source or inside a directory is sent as a link, never followed.
 *
 * The tarball base convention (docs/user-guide.md, "Templates"): FROM ./rootfs.tar[.gz] is
 * uploaded through the files endpoint like a COPY, as a gzip'd tar holding one regular file
 * named "rootfs.tar" whose bytes are the tarball exactly as given (plain or compressed: the
 * server detects which), and the build starts with fromImage "tarball:<that upload's hash>". */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client/client-internal.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/error.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define POLL_INTERVAL_MS 200
#define MAX_ENTRIES 1000000
#define MAX_DEPTH 256
#define TARBALL_NAME "rootfs.tar"

/* ---- files of a COPY ---- */

struct entry {
    char *path; /* relative to the context directory, no "./" */
    mode_t mode;
    off_t size;
    time_t mtime;
    char *link; /* a symbolic link's target */
};

struct entries {
    struct entry *items;
    size_t n;
};

static void entries_release(struct entries *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->items[i].path);
        free(e->items[i].link);
    }
    free(e->items);
    e->items = NULL;
    e->n = 0;
}

struct walk {
    struct hutch_client *c;
    const char *what; /* "COPY src" for messages */
    struct entries *out;
};

static char *join(const char *dir, const char *name)
{
    return *dir ? xasprintf("%s/%s", dir, name) : xstrdup(name);
}

static int names_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in directory fd, sorted (so that the hash and the tar do not depend on the
 * order the filesystem lists them in). */
static int list_dir(struct walk *w, int fd, const char *rel, char ***ret, size_t *ret_n)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return client_fail(w->c, HUTCH_E_IO, "%s: %s: %s", w->what, *rel ? rel : ".", errno_to_string(errno));
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return client_fail(w->c, HUTCH_E_IO, "%s: %s: %s", w->what, rel, errno_to_string(errno));
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        names = xreallocarray(names, n + 1, sizeof(*names));
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), names_cmp);
    *ret = names;
    *ret_n = n;
    return HUTCH_OK;
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static enum hutch_code add_entry(struct walk *w, int dirfd, const char *name, const char *rel, int depth);

/* Adds everything below directory rel (opened as fd). */
static enum hutch_code walk_dir(struct walk *w, int fd, const char *rel, int depth)
{
    if (depth > MAX_DEPTH)
        return client_fail(w->c, HUTCH_E_LIMIT, "%s: %s: directories deeper than %d", w->what, rel,
                           MAX_DEPTH);
    char **names;
    size_t n;
    enum hutch_code code = list_dir(w, fd, rel, &names, &n);
    if (code != HUTCH_OK)
        return code;
    for (size_t i = 0; i < n && code == HUTCH_OK; i++) {
        _cleanup_free_ char *child = join(rel, names[i]);
        code = add_entry(w, fd, names[i], child, depth + 1);
    }
    names_free(names, n);
    return code;
}

/* Adds name (in dirfd, at rel in the context) and, for a directory, all below it. Devices,
 * fifos and sockets are skipped: a tar of a build context has no use for them. */
static enum hutch_code add_entry(struct walk *w, int dirfd, const char *name, const char *rel, int depth)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return client_fail(w->c, HUTCH_E_IO, "%s: %s: %s", w->what, rel, errno_to_string(errno));
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
        return HUTCH_OK;
    if (w->out->n >= MAX_ENTRIES)
        return client_fail(w->c, HUTCH_E_LIMIT, "%s: more than %d files", w->what, MAX_ENTRIES);
    _cleanup_free_ char *link = NULL;
    if (S_ISLNK(st.st_mode)) {
        size_t cap = (size_t)MAX(st.st_size, 0) + 2;
        if (cap > 65536)
            return client_fail(w->c, HUTCH_E_LIMIT, "%s: %s: the link's target is too long", w->what, rel);
        link = xmalloc(cap);
        ssize_t k = readlinkat(dirfd, name, link, cap - 1);
        if (k < 0)
            return client_fail(w->c, HUTCH_E_IO, "%s: %s: %s", w->what, rel, errno_to_string(errno));
        link[k] = '\0';
    }
    bool is_root = streq(rel, ".");
    if (!is_root) {
        w->out->items = xreallocarray(w->out->items, w->out->n + 1, sizeof(*w->out->items));
        w->out->items[w->out->n++] = (struct entry){
            .path = xstrdup(rel),
            .mode = st.st_mode,
            .size = S_ISREG(st.st_mode) ? st.st_size : 0,
            .mtime = st.st_mtime,
            .link = TAKE_PTR(link),
        };
    }
    if (!S_ISDIR(st.st_mode))
        return HUTCH_OK;
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return client_fail(w->c, HUTCH_E_IO, "%s: %s: %s", w->what, rel, errno_to_string(errno));
    return walk_dir(w, fd, is_root ? "" : rel, depth);
}

static bool has_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* Matches the components comps[k..] of a source below directory fd (at rel), Docker's way:
 * each component a literal name or a glob (fnmatch; as in Go's filepath.Match, `*` matches a
 * leading dot too), every match added with what is below it. A component before the last
 * must be a real directory, not a symbolic link. */
static enum hutch_code match(struct walk *w, int fd, const char *rel, char **comps, size_t ncomp, size_t k,
                             size_t *matched)
{
    bool last = k + 1 == ncomp;
    char **names = NULL;
    size_t n = 0;
    enum hutch_code code = HUTCH_OK;
    if (has_glob(comps[k])) {
        char **all;
        size_t n_all;
        code = list_dir(w, fd, rel, &all, &n_all);
        if (code != HUTCH_OK)
            return code;
        for (size_t i = 0; i < n_all; i++)
            if (fnmatch(comps[k], all[i], FNM_PATHNAME) == 0) {
                names = xreallocarray(names, n + 1, sizeof(*names));
                names[n++] = TAKE_PTR(all[i]);
            }
        names_free(all, n_all);
    } else {
        struct stat st;
        if (fstatat(fd, comps[k], &st, AT_SYMLINK_NOFOLLOW) == 0) {
            names = xmalloc(sizeof(*names));
            names[n++] = xstrdup(comps[k]);
        }
    }
    for (size_t i = 0; i < n && code == HUTCH_OK; i++) {
        _cleanup_free_ char *child = join(rel, names[i]);
        if (last) {
            code = add_entry(w, fd, names[i], child, 0);
            (*matched)++;
            continue;
        }
        _cleanup_close_ int sub = openat(fd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            if (errno == ELOOP || errno == ENOTDIR) {
                struct stat st;
                if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                    code = client_fail(w->c, HUTCH_E_INVALID,
                                       "%s: %s is a symbolic link; a source may not go through one", w->what,
                                       child);
                continue; /* not a directory: no match below it */
            }
            code = client_fail(w->c, HUTCH_E_IO, "%s: %s: %s", w->what, child, errno_to_string(errno));
            break;
        }
        code = match(w, sub, child, comps, ncomp, k + 1, matched);
    }
    names_free(names, n);
    return code;
}

/* The entries a COPY source names, in a stable order. src is context-relative (the parser
 * checked it; checked again here for specs written by hand). */
static enum hutch_code collect(struct hutch_client *c, int ctx, const char *src, const char *what,
                               struct entries *out)
{
    if (!*src || src[0] == '/')
        return client_fail(c, HUTCH_E_INVALID, "%s: the source must be a path relative to the context", what);
    char **comps = NULL;
    size_t ncomp = 0;
    for (const char *p = src; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            names_free(comps, ncomp);
            return client_fail(c, HUTCH_E_INVALID, "%s: the source leaves the context directory", what);
        }
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            comps = xreallocarray(comps, ncomp + 1, sizeof(*comps));
            comps[ncomp++] = xstrndup(p, n);
        }
        p += n;
        p += strspn(p, "/");
    }
    struct walk w = { .c = c, .what = what, .out = out };
    enum hutch_code code;
    if (ncomp == 0) {
        code = add_entry(&w, ctx, ".", ".", 0);
    } else {
        size_t matched = 0;
        code = match(&w, ctx, "", comps, ncomp, 0, &matched);
        if (code == HUTCH_OK && matched == 0)
            code = client_fail(c, HUTCH_E_INVALID, "%s: no such file in the context directory", what);
    }
    names_free(comps, ncomp);
    if (code != HUTCH_OK)
        entries_release(out);
    return code;
}

/* Opens a collected file for reading, component by component below ctx, following no link. */
static int open_beneath(int ctx, const char *path)
{
    _cleanup_close_ int dir = openat(ctx, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -errno;
    const char *p = path;
    for (;;) {
        size_t n = strcspn(p, "/");
        _cleanup_free_ char *name = xstrndup(p, n);
        bool last = p[n] == '\0';
        /* O_NONBLOCK: a file swapped for a fifo since it was listed must not hang us. */
        int fd =
            openat(dir, name,
                   (last ? O_RDONLY | O_NOCTTY | O_NONBLOCK : O_PATH | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        if (last) {
            struct stat st;
            if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                safe_close(fd);
                return -EINVAL;
            }
            return fd;
        }
        safe_close(dir);
        dir = fd;
        p += n + 1;
    }
}

static void hash_field(struct sha256_stream *h, const char *s)
{
    sha256_stream_update(h, s, strlen(s) + 1);
}

/* filesHash (e2b-compat §5.2; an opaque cache key): SHA-256 over "COPY src dest" and, for each
 * entry in order, its path, mode, size and content (a link's target). */
static enum hutch_code files_hash(struct hutch_client *c, int ctx, const char *head, const struct entries *e,
                                  const char *what, char out[2 * SHA256_LEN + 1])
{
    struct sha256_stream *h = sha256_stream_new();
    hash_field(h, head);
    enum hutch_code code = HUTCH_OK;
    for (size_t i = 0; i < e->n && code == HUTCH_OK; i++) {
        const struct entry *x = &e->items[i];
        char meta[64];
        snprintf(meta, sizeof(meta), "%o %lld", (unsigned)x->mode, (long long)x->size);
        hash_field(h, x->path);
        hash_field(h, meta);
        if (x->link) {
            hash_field(h, x->link);
        } else if (S_ISREG(x->mode)) {
            _cleanup_close_ int fd = open_beneath(ctx, x->path);
            if (fd < 0) {
                code = client_fail(c, HUTCH_E_IO, "%s: %s: %s", what, x->path, errno_to_string(-fd));
                break;
            }
            char buf[65536];
            ssize_t k;
            while ((k = read(fd, buf, sizeof(buf))) > 0)
                sha256_stream_update(h, buf, (size_t)k);
            if (k < 0)
                code = client_fail(c, HUTCH_E_IO, "%s: %s: %s", what, x->path, errno_to_string(errno));
        }
    }
    unsigned char digest[SHA256_LEN];
    sha256_stream_final(h, digest);
    sha256_to_hex(digest, out);
    return code;
}

static int tmpfile_fd(void)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    _cleanup_free_ char *tmp = xasprintf("%s/hutch-upload-XXXXXX", dir);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd >= 0)
        unlink(tmp);
    return fd;
}

/* Writes the entries as a gzip'd tar (libarchive, pax) rooted at the context into a new
 * unlinked temporary file; *ret_fd is left at its start. as_name: store the one entry under
 * this name instead (the tarball base). */
static enum hutch_code write_tar(struct hutch_client *c, int ctx, const struct entries *e,
                                 const char *as_name, const char *what, int *ret_fd)
{
    _cleanup_close_ int fd = tmpfile_fd();
    if (fd < 0)
        return client_fail(c, HUTCH_E_IO, "a temporary file: %s", errno_to_string(errno));
    struct archive *a = archive_write_new();
    if (!a)
        abort();
    enum hutch_code code = HUTCH_OK;
    if (archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
        archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_open_fd(a, fd) != ARCHIVE_OK) {
        code = client_fail(c, HUTCH_E_IO, "%s: libarchive: %s", what, archive_error_string(a));
        archive_write_free(a);
        return code;
    }
    struct archive_entry *ae = archive_entry_new();
    for (size_t i = 0; i < e->n && code == HUTCH_OK; i++) {
        const struct entry *x = &e->items[i];
        archive_entry_clear(ae);
        archive_entry_set_pathname(ae, as_name ? as_name : x->path);
        archive_entry_set_mode(ae, x->mode);
        archive_entry_set_mtime(ae, x->mtime, 0);
        archive_entry_set_size(ae, S_ISREG(x->mode) ? x->size : 0);
        if (x->link)
            archive_entry_set_symlink(ae, x->link);
        _cleanup_close_ int in = -1;
        if (S_ISREG(x->mode)) {
            in = open_beneath(ctx, x->path);
            if (in < 0) {
                code = client_fail(c, HUTCH_E_IO, "%s: %s: %s", what, x->path, errno_to_string(-in));
                break;
            }
        }
        if (archive_write_header(a, ae) != ARCHIVE_OK) {
            code =
                client_fail(c, HUTCH_E_IO, "%s: %s: libarchive: %s", what, x->path, archive_error_string(a));
            break;
        }
        off_t done = 0;
        char buf[65536];
        while (in >= 0 && done < x->size) {
            ssize_t k = read(in, buf, (size_t)MIN((off_t)sizeof(buf), x->size - done));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                code = k < 0 ? client_fail(c, HUTCH_E_IO, "%s: %s: %s", what, x->path, errno_to_string(errno))
                             : client_fail(c, HUTCH_E_IO, "%s: %s changed while it was read", what, x->path);
                break;
            }
            if (archive_write_data(a, buf, (size_t)k) != k) {
                code = client_fail(c, HUTCH_E_IO, "%s: libarchive: %s", what, archive_error_string(a));
                break;
            }
            done += k;
        }
    }
    archive_entry_free(ae);
    if (archive_write_close(a) != ARCHIVE_OK && code == HUTCH_OK)
        code = client_fail(c, HUTCH_E_IO, "%s: libarchive: %s", what, archive_error_string(a));
    archive_write_free(a);
    if (code != HUTCH_OK)
        return code;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return client_fail(c, HUTCH_E_IO, "a temporary file: %s", errno_to_string(errno));
    *ret_fd = TAKE_FD(fd);
    return HUTCH_OK;
}

/* PUT the file at fd to url (absolute, or a path on the API server) with Content-Length and
 * the headers the server asked for, without the API key (the URL may be anyone's store). */
static enum hutch_code put_upload(struct hutch_client *c, const char *url, const json_t *headers, int fd,
                                  const char *what)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return client_fail(c, HUTCH_E_IO, "fstat: %s", errno_to_string(errno));
    _cleanup_free_ char *full = url[0] == '/' ? xasprintf("%s%s", c->api_url, url) : xstrdup(url);
    _cleanup_slist_ struct curl_slist *h = NULL;
    client_header_add(&h, "Expect:");
    client_header_add(&h, "Content-Type: application/gzip");
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)headers, k, v)
        if (json_is_string(v) && !strpbrk(k, "\r\n:") && !strpbrk(json_string_value(v), "\r\n"))
            client_header_add(&h, "%s: %s", k, json_string_value(v));
    CURL *curl = client_curl(c);
    struct client_upload u = { .fd = fd };
    struct buf resp;
    buf_init(&resp, CLIENT_MAX_ERROR_BODY);
    curl_easy_setopt(curl, CURLOPT_URL, full);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, client_upload_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, &u);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, client_collect_bounded);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 120L);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode r = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    c->last_status = status;
    enum hutch_code code = HUTCH_OK;
    if (u.read_errno)
        code = client_fail(c, HUTCH_E_IO, "%s: reading the upload: %s", what, errno_to_string(u.read_errno));
    else if (r != CURLE_OK)
        code = client_fail(c, client_code_from_curl(r), "%s: upload: %s", what,
                           *errbuf ? errbuf : curl_easy_strerror(r));
    else if (status < 200 || status >= 300)
        code = client_fail_http(c, status, resp.data, resp.len, "upload");
    buf_release(&resp);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    return code;
}

/* ---- the build ---- */

struct build {
    struct hutch_client *c;
    const struct hutch_template_build_options *o;
    int ctx;
    char *template_id; /* escaped for paths */
};

static enum hutch_code report(struct build *b, const char *level, const char *step, const char *fmt, ...)
    _printf_(4, 5);

static enum hutch_code report(struct build *b, const char *level, const char *step, const char *fmt, ...)
{
    if (!b->o->on_log)
        return HUTCH_OK;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    struct hutch_build_log e = { .timestamp = "", .level = level, .message = msg, .step = step };
    if (b->o->on_log(b->o->userdata, &e) != 0)
        return client_fail(b->c, HUTCH_E_ABORTED, "the log callback stopped the build");
    return HUTCH_OK;
}

/* The files of one COPY step, or the tarball base: collected and hashed before the server
 * hears of the build (so that a missing or refused source creates nothing there), sent after. */
struct upload {
    struct entries e;
    char *what;          /* "COPY src", for messages */
    char step[32];       /* the step as the logs name it: "3", or "base" */
    const char *as_name; /* the tarball base: its one entry's name in the tar */
    char hash[2 * SHA256_LEN + 1];
};

struct uploads {
    struct upload *items;
    size_t n;
};

static void uploads_release(struct uploads *u)
{
    for (size_t i = 0; i < u->n; i++) {
        entries_release(&u->items[i].e);
        free(u->items[i].what);
    }
    free(u->items);
    u->items = NULL;
    u->n = 0;
}

static enum hutch_code prepare_upload(struct build *b, struct uploads *u, const char *src, const char *head,
                                      const char *step, bool tarball, char **ret_hash)
{
    u->items = xreallocarray(u->items, u->n + 1, sizeof(*u->items));
    struct upload *x = &u->items[u->n++];
    *x = (struct upload){ .what = xasprintf("%s %s", tarball ? "FROM" : "COPY", src) };
    str_copy(x->step, sizeof(x->step), step);
    enum hutch_code code = collect(b->c, b->ctx, src, x->what, &x->e);
    if (code != HUTCH_OK)
        return code;
    if (tarball) {
        if (x->e.n != 1 || !S_ISREG(x->e.items[0].mode))
            return client_fail(b->c, HUTCH_E_INVALID,
                               "%s: not a regular file (a symbolic link is not followed)", x->what);
        x->as_name = TARBALL_NAME;
    }
    code = files_hash(b->c, b->ctx, head, &x->e, x->what, x->hash);
    if (code == HUTCH_OK)
        *ret_hash = x->hash;
    return code;
}

/* Sends the files unless the server has them already. */
static enum hutch_code send_upload(struct build *b, const struct upload *x)
{
    _cleanup_free_ char *path = xasprintf("/templates/%s/files/%s", b->template_id, x->hash);
    _cleanup_json_ json_t *resp = NULL;
    enum hutch_code code = client_api_request(b->c, "GET", path, NULL, NULL, &resp, NULL);
    if (code != HUTCH_OK)
        return code;
    json_t *present = json_object_get(resp, "present");
    if (!json_is_boolean(present))
        return client_fail(b->c, HUTCH_E_SERVER, "%s: the files answer has no 'present'", x->what);
    if (json_is_true(present))
        return report(b, "info", x->step, "%s: %zu files, cached by the server", x->what, x->e.n);
    const char *url = json_get_string(resp, "url");
    if (!url || !*url)
        return client_fail(b->c, HUTCH_E_SERVER, "%s: the files answer has no upload url", x->what);
    _cleanup_close_ int fd = -1;
    code = write_tar(b->c, b->ctx, &x->e, x->as_name, x->what, &fd);
    if (code != HUTCH_OK)
        return code;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return client_fail(b->c, HUTCH_E_IO, "fstat: %s", errno_to_string(errno));
    code = report(b, "info", x->step, "%s: uploading %zu files (%lld bytes compressed)", x->what, x->e.n,
                  (long long)st.st_size);
    if (code != HUTCH_OK)
        return code;
    return put_upload(b->c, url, json_object_get(resp, "headers"), fd, x->what);
}

/* The wire body (TemplateBuildStartV2) of spec: the base, the steps with only the keys the
 * server knows plus each COPY's filesHash, the commands, force; and the uploads it needs. */
static enum hutch_code start_body(struct build *b, const json_t *spec, struct uploads *u, json_t **ret)
{
    _cleanup_json_ json_t *body = json_object();
    const char *tarball = json_get_string(spec, "fromTarball");
    const char *from_image = json_get_string(spec, "fromImage");
    const char *from_template = json_get_string(spec, "fromTemplate");
    if (!!tarball + !!from_image + !!from_template != 1)
        return client_fail(b->c, HUTCH_E_INVALID,
                           "the spec needs exactly one of fromImage, fromTemplate, fromTarball");
    json_t *registry = json_object_get(spec, "fromImageRegistry");
    if (registry)
        json_object_set(body, "fromImageRegistry", registry);
    if (from_image)
        json_object_set_new(body, "fromImage", json_string(from_image));
    if (from_template)
        json_object_set_new(body, "fromTemplate", json_string(from_template));
    enum hutch_code code = HUTCH_OK;
    char *hash;
    if (tarball) {
        code = prepare_upload(b, u, tarball, "FROM " TARBALL_NAME, "base", true, &hash);
        if (code != HUTCH_OK)
            return code;
        json_object_set_new(body, "fromImage", json_sprintf("tarball:%s", hash));
    }
    json_t *steps = json_object_get(spec, "steps");
    if (steps && !json_is_array(steps))
        return client_fail(b->c, HUTCH_E_INVALID, "the spec's steps are not an array");
    json_t *out_steps = json_array();
    json_object_set_new(body, "steps", out_steps);
    size_t i;
    json_t *step;
    json_array_foreach (steps, i, step) {
        const char *type = json_get_string(step, "type");
        json_t *args = json_object_get(step, "args");
        if (!type || !json_is_array(args))
            return client_fail(b->c, HUTCH_E_INVALID, "step %zu: needs a type and args", i + 1);
        json_t *force = json_object_get(step, "force");
        json_t *out = json_pack("{s:s, s:O, s:b}", "type", type, "args", args, "force", json_is_true(force));
        json_array_append_new(out_steps, out);
        if (!streq(type, "COPY"))
            continue;
        const char *src = json_string_value(json_array_get(args, 0));
        const char *dest = json_string_value(json_array_get(args, 1));
        if (!src || !dest)
            return client_fail(b->c, HUTCH_E_INVALID, "step %zu: COPY needs [src, dest, user, mode]", i + 1);
        _cleanup_free_ char *head = xasprintf("COPY %s %s", src, dest);
        char name[32];
        snprintf(name, sizeof(name), "%zu", i + 1);
        code = prepare_upload(b, u, src, head, name, false, &hash);
        if (code != HUTCH_OK)
            return code;
        json_object_set_new(out, "filesHash", json_string(hash));
    }
    static const char *const keep[] = { "startCmd", "readyCmd" };
    for (size_t k = 0; k < ARRAY_SIZE(keep); k++) {
        const char *v = json_get_string(spec, keep[k]);
        if (v)
            json_object_set_new(body, keep[k], json_string(v));
    }
    if (b->o->force || json_is_true(json_object_get(spec, "force")))
        json_object_set_new(body, "force", json_true());
    *ret = TAKE_PTR(body);
    return HUTCH_OK;
}

static char *step_string(const json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return xasprintf("%lld", (long long)json_integer_value(v));
    return NULL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Follows the build until it ends and the server has no log left (e2b-compat §2.7: after
 * ready or error, poll until logEntries comes back empty). */
static enum hutch_code wait_build(struct build *b, const char *build_id,
                                  struct hutch_template_build_result *res)
{
    uint64_t offset = 0;
    for (;;) {
        _cleanup_free_ char *path = xasprintf("/templates/%s/builds/%s/status?logsOffset=%llu",
                                              b->template_id, build_id, (unsigned long long)offset);
        _cleanup_json_ json_t *resp = NULL;
        enum hutch_code code = client_api_request(b->c, "GET", path, NULL, NULL, &resp, NULL);
        if (code != HUTCH_OK)
            return code;
        const char *status = json_get_string(resp, "status");
        json_t *entries = json_object_get(resp, "logEntries");
        if (!status)
            return client_fail(b->c, HUTCH_E_SERVER, "build status: the answer has no status");
        size_t i;
        json_t *e;
        json_array_foreach (entries, i, e) {
            _cleanup_free_ char *step = step_string(json_object_get(e, "step"));
            struct hutch_build_log l = {
                .timestamp = json_get_string_or(e, "timestamp", ""),
                .level = json_get_string_or(e, "level", "info"),
                .message = json_get_string_or(e, "message", ""),
                .step = step,
            };
            if (b->o->on_log && b->o->on_log(b->o->userdata, &l) != 0)
                return client_fail(b->c, HUTCH_E_ABORTED, "the log callback stopped the build");
        }
        size_t got = json_is_array(entries) ? json_array_size(entries) : 0;
        offset += got;
        bool ended = streq(status, "ready") || streq(status, "error");
        if (ended && got == 0) {
            res->ready = streq(status, "ready");
            if (!res->ready) {
                json_t *reason = json_object_get(resp, "reason");
                const char *msg = json_get_string(reason, "message");
                res->reason = xstrdup(msg && *msg ? msg : "the build failed");
                res->reason_step = step_string(json_object_get(reason, "step"));
            }
            return HUTCH_OK;
        }
        if (got == 0)
            sleep_ms(POLL_INTERVAL_MS);
    }
}

static char **string_array(const json_t *a, size_t *ret_n)
{
    *ret_n = 0;
    if (!json_is_array(a) || json_array_size(a) == 0)
        return NULL;
    char **out = xcalloc(json_array_size(a), sizeof(*out));
    size_t i, n = 0;
    json_t *v;
    json_array_foreach ((json_t *)a, i, v)
        if (json_is_string(v))
            out[n++] = xstrdup(json_string_value(v));
    *ret_n = n;
    return out;
}

static void string_array_free(char **a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(a[i]);
    free(a);
}

HUTCH_EXPORT void hutch_template_build_result_release(struct hutch_template_build_result *r)
{
    if (!r)
        return;
    free(r->template_id);
    free(r->build_id);
    string_array_free(r->names, r->n_names);
    free(r->reason);
    free(r->reason_step);
    memset(r, 0, sizeof(*r));
}

HUTCH_EXPORT enum hutch_code hutch_template_build(struct hutch_client *c, const char *name, const char *spec,
                                                  const struct hutch_template_build_options *opts,
                                                  struct hutch_template_build_result *ret_result)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    struct hutch_template_build_options none = { 0 };
    if (!opts)
        opts = &none;
    if (!name || !*name || !utf8_is_valid(name, strlen(name)))
        return client_fail(c, HUTCH_E_INVALID, "a template needs a name");
    if (!spec || !ret_result)
        return client_fail(c, HUTCH_E_INVALID, "no build spec");
    _cleanup_json_ json_t *sp = json_loads(spec, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(sp))
        return client_fail(c, HUTCH_E_INVALID, "the build spec is not a JSON object");
    const char *dir = opts->context_dir && *opts->context_dir ? opts->context_dir : ".";
    _cleanup_close_ int ctx = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ctx < 0)
        return client_fail(c, HUTCH_E_IO, "the context directory %s: %s", dir, errno_to_string(errno));

    /* Everything local first: a source that is missing or refused leaves no template behind. */
    struct build b = { .c = c, .o = opts, .ctx = ctx };
    struct uploads uploads = { 0 };
    _cleanup_json_ json_t *body = NULL;
    enum hutch_code code = start_body(&b, sp, &uploads, &body);
    if (code != HUTCH_OK) {
        uploads_release(&uploads);
        return code;
    }

    _cleanup_json_ json_t *create = json_pack("{s:s}", "name", name);
    if (opts->cpu_count)
        json_object_set_new(create, "cpuCount", json_integer(opts->cpu_count));
    if (opts->memory_mb)
        json_object_set_new(create, "memoryMB", json_integer(opts->memory_mb));
    _cleanup_json_ json_t *created = NULL;
    code = client_api_request(c, "POST", "/v3/templates", create, NULL, &created, NULL);
    const char *template_id = json_get_string(created, "templateID");
    const char *build_id = json_get_string(created, "buildID");
    if (code == HUTCH_OK && (!template_id || !build_id || !*template_id || !*build_id))
        code = client_fail(c, HUTCH_E_SERVER, "create template: the answer has no templateID or buildID");
    if (code != HUTCH_OK) {
        uploads_release(&uploads);
        return code;
    }
    b.template_id = client_escape(template_id);
    _cleanup_free_ char *build_esc = client_escape(build_id);
    for (size_t i = 0; i < uploads.n && code == HUTCH_OK; i++)
        code = send_upload(&b, &uploads.items[i]);
    uploads_release(&uploads);
    if (code == HUTCH_OK) {
        _cleanup_free_ char *path = xasprintf("/v2/templates/%s/builds/%s", b.template_id, build_esc);
        code = client_api_request(c, "POST", path, body, NULL, NULL, NULL);
    }
    struct hutch_template_build_result res = { 0 };
    if (code == HUTCH_OK)
        code = wait_build(&b, build_esc, &res);
    free(b.template_id);
    if (code != HUTCH_OK) {
        hutch_template_build_result_release(&res);
        return code;
    }
    res.template_id = xstrdup(template_id);
    res.build_id = xstrdup(build_id);
    json_t *names = json_object_get(created, "names");
    res.names =
        string_array(json_array_size(names) ? names : json_object_get(created, "aliases"), &res.n_names);
    *ret_result = res;
    return HUTCH_OK;
}

/* ---- list and delete ---- */

static char *dup_member(const json_t *o, const char *key)
{
    const char *s = json_get_string(o, key);
    return s ? xstrdup(s) : NULL;
}

static int int_member(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : 0;
}

HUTCH_EXPORT void hutch_template_info_array_free(struct hutch_template_info *items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++) {
        struct hutch_template_info *t = &items[i];
        free(t->template_id);
        free(t->build_id);
        string_array_free(t->names, t->n_names);
        free(t->build_status);
        free(t->created_at);
        free(t->updated_at);
        free(t->envd_version);
        free(t->json);
    }
    free(items);
}

HUTCH_EXPORT enum hutch_code hutch_template_list(struct hutch_client *c,
                                                 struct hutch_template_info **ret_items, size_t *ret_n)
{
    if (!c || !ret_items || !ret_n)
        return HUTCH_E_INVALID;
    client_begin(c);
    _cleanup_json_ json_t *resp = NULL;
    enum hutch_code code = client_api_request(c, "GET", "/templates", NULL, NULL, &resp, NULL);
    if (code != HUTCH_OK)
        return code;
    if (!json_is_array(resp))
        return client_fail(c, HUTCH_E_SERVER, "template list: the answer is not a JSON array");
    size_t n = 0;
    struct hutch_template_info *items =
        json_array_size(resp) ? xcalloc(json_array_size(resp), sizeof(*items)) : NULL;
    size_t i;
    json_t *o;
    json_array_foreach (resp, i, o) {
        if (!json_is_object(o))
            continue;
        struct hutch_template_info *t = &items[n++];
        t->template_id = dup_member(o, "templateID");
        t->build_id = dup_member(o, "buildID");
        json_t *names = json_object_get(o, "names");
        t->names = string_array(json_array_size(names) ? names : json_object_get(o, "aliases"), &t->n_names);
        t->build_status = dup_member(o, "buildStatus");
        t->cpu_count = int_member(o, "cpuCount");
        t->memory_mb = int_member(o, "memoryMB");
        t->disk_size_mb = int_member(o, "diskSizeMB");
        t->created_at = dup_member(o, "createdAt");
        t->updated_at = dup_member(o, "updatedAt");
        t->is_public = json_is_true(json_object_get(o, "public"));
        t->envd_version = dup_member(o, "envdVersion");
        t->json = json_dump_compact(o, NULL);
    }
    if (n == 0) {
        free(items);
        items = NULL;
    }
    *ret_items = items;
    *ret_n = n;
    return HUTCH_OK;
}

/* True when name is one of t's names, "name" matching "name:default" too. */
static bool has_name(const struct hutch_template_info *t, const char *name)
{
    for (size_t i = 0; i < t->n_names; i++) {
        const char *s = t->names[i];
        size_t n = strlen(name);
        if (streq(s, name) || (strncmp(s, name, n) == 0 && streq(s + n, ":default")))
            return true;
    }
    return false;
}

HUTCH_EXPORT enum hutch_code hutch_template_delete(struct hutch_client *c, const char *id_or_name)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    if (!id_or_name || !*id_or_name || !utf8_is_valid(id_or_name, strlen(id_or_name)))
        return client_fail(c, HUTCH_E_INVALID, "no template id or name");
    struct hutch_template_info *items = NULL;
    size_t n = 0;
    enum hutch_code code = hutch_template_list(c, &items, &n);
    if (code != HUTCH_OK)
        return code;
    _cleanup_free_ char *id = NULL;
    for (size_t i = 0; i < n && !id; i++)
        if (items[i].template_id && streq(items[i].template_id, id_or_name))
            id = xstrdup(items[i].template_id);
    for (size_t i = 0; i < n && !id; i++)
        if (items[i].template_id && has_name(&items[i], id_or_name))
            id = xstrdup(items[i].template_id);
    hutch_template_info_array_free(items, n);
    client_begin(c);
    /* Not in the list: the server may still know it (a snapshot, say); let it answer. */
    _cleanup_free_ char *esc = client_escape(id ? id : id_or_name);
    _cleanup_free_ char *path = xasprintf("/templates/%s", esc);
    return client_api_request(c, "DELETE", path, NULL, NULL, NULL, NULL);
}
