/* GET/POST /files (e2b-compat 3.8): access (X-Access-Token, or a URL signature standing in
 * for it), the run-as user (`username` query, else Basic auth or the default user), and the
 * dispatch to download.c and upload.c. Errors are `{"code": <status>, "message": "..."}`. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/http-util.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "envd/envd.h"
#include "envd/fs/files.h"
#include "common/file-signature.h"
#include "envd/fs/fs.h"
#include "common/banned.h"

unsigned fs_errno_to_http_status(int errnum)
{
    switch (abs(errnum)) {
    case ENOENT:
        return MHD_HTTP_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return MHD_HTTP_FORBIDDEN;
    case EINVAL:
    case ENAMETOOLONG:
    case EISDIR:
    case ENOTDIR:
    case EEXIST:
    case ELOOP:
    case EBADMSG:
        return MHD_HTTP_BAD_REQUEST;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return MHD_HTTP_INSUFFICIENT_STORAGE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

int files_fail(struct files_error *e, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    e->status = status;
    return -1;
}

/* The query values used here must not hide a NUL (a "%00" would cut the path short). */
static int check_query(struct MHD_Connection *conn, struct files_error *fe)
{
    static const char *const names[] = { "path", "username", "signature", "signature_expiration" };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        const char *v;
        size_t len;
        if (MHD_lookup_connection_value_n(conn, MHD_GET_ARGUMENT_KIND, names[i], strlen(names[i]), &v,
                                          &len) == MHD_YES &&
            v && strlen(v) != len)
            return files_fail(fe, MHD_HTTP_BAD_REQUEST, "query parameter '%s' contains a NUL byte", names[i]);
    }
    return 0;
}

/* Access per envd's validateSigning: no token set, the right X-Access-Token, or a valid and
 * unexpired signature for this path, operation and user. */
static int check_access(struct MHD_Connection *conn, const char *op, struct files_error *fe)
{
    _cleanup_free_ char *tok = envd_settings_access_token();
    if (!tok)
        return 0;
    const char *hdr = http_header(conn, "X-Access-Token");
    if (hdr && *hdr) {
        bool ok = envd_request_has_token(conn);
        explicit_bzero(tok, strlen(tok));
        if (ok)
            return 0;
        return files_fail(fe, MHD_HTTP_UNAUTHORIZED, "access token present in header but does not match");
    }
    const char *path = http_query(conn, "path");
    enum file_sign_result r =
        file_signature_check(http_query(conn, "signature"), http_query(conn, "signature_expiration"),
                             path ? path : "", op, http_query(conn, "username"), tok, time(NULL));
    explicit_bzero(tok, strlen(tok));
    switch (r) {
    case FILE_SIGN_OK:
        return 0;
    case FILE_SIGN_MISSING:
        return files_fail(fe, MHD_HTTP_UNAUTHORIZED, "missing signature query parameter");
    case FILE_SIGN_EXPIRED:
        return files_fail(fe, MHD_HTTP_UNAUTHORIZED, "signature is already expired");
    case FILE_SIGN_BAD_EXPIRATION:
        return files_fail(fe, MHD_HTTP_BAD_REQUEST, "invalid signature_expiration: must be an integer");
    default:
        return files_fail(fe, MHD_HTTP_UNAUTHORIZED, "invalid signature");
    }
}

/* The user and the resolved `path` query. */
static int request_context(struct MHD_Connection *conn, struct files_ctx *ctx, struct files_error *fe)
{
    ctx->conn = conn;
    const char *username = http_query(conn, "username");
    if (username && *username) {
        struct error_record e;
        int r = envd_user_lookup(username, &ctx->user, &e);
        if (r < 0)
            return files_fail(fe, r == -ENOENT ? MHD_HTTP_UNAUTHORIZED : MHD_HTTP_INTERNAL_SERVER_ERROR,
                              "error looking up user '%s': %s", username, e.msg);
    } else {
        struct connect_error e;
        if (envd_request_user(conn, &ctx->user, &e) < 0)
            return files_fail(fe,
                              e.code == CONNECT_UNAUTHENTICATED ? MHD_HTTP_UNAUTHORIZED
                                                                : MHD_HTTP_INTERNAL_SERVER_ERROR,
                              "%s", e.msg);
    }
    const char *path = http_query(conn, "path");
    if (path) {
        struct error_record e;
        if (envd_resolve_path(&ctx->user, path, &ctx->path, &e) < 0)
            return files_fail(fe, MHD_HTTP_BAD_REQUEST, "error resolving path: %s", e.msg);
    }
    return 0;
}

/* What *req_cls holds for a POST between calls. */
struct files_state {
    struct files_upload *upload;
};

enum MHD_Result envd_files_request(struct MHD_Connection *conn, const char *method, const char *upload_data,
                                   size_t *upload_data_size, void **req_cls)
{
    struct files_state *st = *req_cls;
    if (st) {
        /* A POST body piece, or its end. */
        if (*upload_data_size > 0) {
            bool keep = files_upload_feed(st->upload, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return keep ? MHD_YES : MHD_NO;
        }
        return files_upload_finish(st->upload);
    }

    bool get = streq(method, MHD_HTTP_METHOD_GET), head = streq(method, MHD_HTTP_METHOD_HEAD);
    bool post = streq(method, MHD_HTTP_METHOD_POST);
    if (!get && !head && !post)
        return http_queue_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed on /files", method);

    struct files_error fe = { 0 };
    struct files_ctx ctx = { 0 };
    int r = check_query(conn, &fe);
    if (r == 0)
        r = check_access(conn, post ? "write" : "read", &fe);
    if (r == 0)
        r = request_context(conn, &ctx, &fe);
    if (!post) {
        enum MHD_Result mr =
            r < 0 ? http_queue_error(conn, fe.status, "%s", fe.msg) : files_download(&ctx, head);
        free(ctx.path);
        return mr;
    }
    st = xcalloc(1, sizeof(*st));
    st->upload = r < 0 ? files_upload_failed(conn, &fe) : files_upload_start(&ctx);
    free(ctx.path);
    *req_cls = st;
    return MHD_YES;
}

void envd_files_request_completed(void *req_cls)
{
    struct files_state *st = req_cls;
    if (!st)
        return;
    files_upload_free(st->upload);
    free(st);
}
