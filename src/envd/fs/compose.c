/* POST /files/compose: see envd.h. Used to assemble a file uploaded in parts. Everything
 * happens with the user's filesystem identity, so composing never reads or writes what the
 * user could not (E2B's own envd opens the sources as root). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/http-util.h"
#include "common/json-util.h"
#include "common/xalloc.h"
#include "envd/envd.h"
#include "envd/fs/fs.h"
#include "common/banned.h"

#define COMPOSE_MAX_SOURCES 10000

/* Appends all of src to dst, in the kernel where it can (copy_file_range). */
static int append(int dst, int src)
{
    for (;;) {
        ssize_t n = copy_file_range(src, NULL, dst, NULL, 1 << 30, 0);
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            return -errno;
        break; /* not supported between these files: copy through user space */
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(src, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(dst, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -errno;
            off += w;
        }
    }
}

static enum MHD_Result fail(struct MHD_Connection *conn, int r, const char *what)
{
    unsigned status = r == -ENOSPC || r == -EDQUOT  ? 507
                      : r == -ENOENT                ? MHD_HTTP_NOT_FOUND
                      : r == -EACCES || r == -EPERM ? MHD_HTTP_FORBIDDEN
                                                    : MHD_HTTP_INTERNAL_SERVER_ERROR;
    if (status == 507)
        return http_queue_error(conn, status, "not enough disk space available");
    return http_queue_error(conn, status, "%s: %s", what, errno_to_string(r));
}

static enum MHD_Result compose(struct MHD_Connection *conn, const struct envd_user *user,
                               const json_t *sources, const char *destination)
{
    struct error_record err = { 0 };
    _cleanup_free_ char *dest = NULL;
    if (envd_resolve_path(user, destination, &dest, &err) < 0)
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "destination: %s", err.msg);

    size_t n = json_array_size(sources);
    int *fds = xcalloc(n, sizeof(int));
    char **paths = xcalloc(n, sizeof(char *));
    enum MHD_Result ret = MHD_NO;
    size_t opened = 0;
    _cleanup_free_ char *tmp = NULL;
    int out = -1;
    for (; opened < n; opened++) {
        const char *src = json_string_value(json_array_get(sources, opened));
        if (envd_resolve_path(user, src, &paths[opened], &err) < 0) {
            ret = http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "source path '%s': %s", src, err.msg);
            goto out;
        }
        if (streq(paths[opened], dest)) {
            ret = http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "source path '%s' cannot be the destination",
                                   src);
            goto out;
        }
        fds[opened] = open(paths[opened], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fds[opened] < 0) {
            ret = errno == ENOENT
                      ? http_queue_error(conn, MHD_HTTP_NOT_FOUND, "source file not found: %s", src)
                      : fail(conn, -errno, src);
            goto out;
        }
        if (fstat(fds[opened], &st) < 0 || !S_ISREG(st.st_mode)) {
            close(fds[opened]);
            ret = http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "source path is not a regular file: %s", src);
            goto out;
        }
    }

    /* The destination's directory exists (made for the user if missing); the result is
     * assembled under a temporary name beside it and renamed over the destination only when
     * complete, so a failure never destroys what was there. */
    char *slash = strrchr(dest, '/');
    if (slash && slash != dest) {
        *slash = '\0';
        int r = fs_mkdir_p(dest, 0755, NULL);
        *slash = '/';
        if (r < 0 && r != -EEXIST) {
            ret = fail(conn, r, "creating the destination's directory");
            goto out;
        }
    }
    char suffix[17];
    if (random_hex(suffix, 8) < 0)
        abort();
    tmp = xasprintf("%s.e2b-compose.%s.tmp", dest, suffix);
    out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (out < 0) {
        ret = fail(conn, -errno, "creating the destination file");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        int r = append(out, fds[i]);
        if (r < 0) {
            unlink(tmp);
            ret = fail(conn, r, "composing");
            goto out;
        }
    }
    if (close(out) < 0 || rename(tmp, dest) < 0) {
        int r = -errno;
        out = -1;
        unlink(tmp);
        ret = fail(conn, r, "finishing the destination file");
        goto out;
    }
    out = -1;
    for (size_t i = 0; i < n; i++)
        unlink(paths[i]);

    const char *name = strrchr(dest, '/');
    json_t *j = json_pack("{s:s, s:s, s:s}", "path", dest, "name", name ? name + 1 : dest, "type", "file");
    ret = j ? http_queue_json(conn, MHD_HTTP_OK, j) : MHD_NO;
    json_decref(j);
out:
    safe_close(out);
    for (size_t i = 0; i < opened; i++)
        safe_close(fds[i]);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(fds);
    free(paths);
    return ret;
}

enum MHD_Result envd_files_compose(struct MHD_Connection *conn, const char *body, size_t len)
{
    json_auto_t *req = NULL;
    struct error_record err = { 0 };
    if (json_parse_object(body ? body : "", len, &req, &err) < 0)
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "invalid request body: %s", err.msg);
    const json_t *sources = json_object_get(req, "source_paths");
    const char *destination = json_get_string(req, "destination");
    if (!json_is_array(sources) || json_array_size(sources) == 0)
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "source_paths must not be empty");
    if (json_array_size(sources) > COMPOSE_MAX_SOURCES)
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "at most %d source_paths", COMPOSE_MAX_SOURCES);
    for (size_t i = 0; i < json_array_size(sources); i++)
        if (!json_is_string(json_array_get(sources, i)))
            return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "source_paths must be strings");
    if (!destination || !*destination)
        return http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "destination is required");

    struct envd_user user;
    const char *username = json_get_string(req, "username");
    if (username) {
        if (envd_user_lookup(username, &user, &err) < 0)
            return http_queue_error(conn, MHD_HTTP_UNAUTHORIZED, "error looking up user '%s': %s", username,
                                    err.msg);
    } else {
        struct connect_error cerr = { 0 };
        if (envd_request_user(conn, &user, &cerr) < 0)
            return http_queue_error(conn, MHD_HTTP_UNAUTHORIZED, "%s", cerr.msg);
    }
    int r = envd_as_user(&user);
    if (r < 0)
        return http_queue_error(conn, MHD_HTTP_FORBIDDEN, "cannot act as user '%s'", user.name);
    enum MHD_Result ret = compose(conn, &user, sources, destination);
    envd_as_root();
    return ret;
}
