/* GET/POST /files (e2b-compat 3.8): access (X-Access-Token, or a URL signature standing in
 * for it), the run-as user (`username` query, else Basic auth or the default user), and the
 * dispatch to download.c and upload.c. Errors are `{"code": <status>, "message": "..."}`. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/http-util.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "envd/envd.h"
#include "envd/fs/files.h"
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

/* Access per envd's validateSigning: no token set, the right X-Access-Token, or a valid and
 * unexpired signature for this path, operation and user. Returns 0 or queues a 401/400 and
 * returns -1 with *ret_mhd set. */
static int check_access(struct MHD_Connection *conn, const char *op, enum MHD_Result *ret_mhd)
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
        explicit_bzero(tok, strlen(tok));
        *ret_mhd = http_queue_error(conn, MHD_HTTP_UNAUTHORIZED, "access token present in header but does not match");
        return -1;
    }
    const char *path = http_query(conn, "path");
    enum fs_sign_result r = fs_signature_check(http_query(conn, "signature"), http_query(conn, "signature_expiration"),
                                               path ? path : "", op, http_query(conn, "username"), tok, time(NULL));
    explicit_bzero(tok, strlen(tok));
    switch (r) {
    case FS_SIGN_OK:
        return 0;
    case FS_SIGN_MISSING:
        *ret_mhd = http_queue_error(conn, MHD_HTTP_UNAUTHORIZED, "missing signature query parameter");
        return -1;
    case FS_SIGN_EXPIRED:
        *ret_mhd = http_queue_error(conn, MHD_HTTP_UNAUTHORIZED, "signature is already expired");
        return -1;
    case FS_SIGN_BAD_EXPIRATION:
        *ret_mhd = http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "invalid signature_expiration: must be an integer");
        return -1;
    default:
        *ret_mhd = http_queue_error(conn, MHD_HTTP_UNAUTHORIZED, "invalid signature");
        return -1;
    }
}

/* The user and the resolved `path` query. Returns 0 or queues an error. */
static int request_context(struct MHD_Connection *conn, struct files_ctx *ctx, enum MHD_Result *ret_mhd)
{
    ctx->conn = conn;
    const char *username = http_query(conn, "username");
    if (username && *username) {
        struct error_record e;
        int r = envd_user_lookup(username, &ctx->user, &e);
        if (r < 0) {
            *ret_mhd = http_queue_error(conn, r == -ENOENT ? MHD_HTTP_UNAUTHORIZED : MHD_HTTP_INTERNAL_SERVER_ERROR,
                                        "error looking up user '%s': %s", username, e.msg);
            return -1;
        }
    } else {
        struct connect_error e;
        if (envd_request_user(conn, &ctx->user, &e) < 0) {
            *ret_mhd = http_queue_error(conn, e.code == CONNECT_UNAUTHENTICATED ? MHD_HTTP_UNAUTHORIZED
                                                                                 : MHD_HTTP_INTERNAL_SERVER_ERROR,
                                        "%s", e.msg);
            return -1;
        }
    }
    const char *path = http_query(conn, "path");
    if (path) {
        struct error_record e;
        if (envd_resolve_path(&ctx->user, path, &ctx->path, &e) < 0) {
            *ret_mhd = http_queue_error(conn, MHD_HTTP_BAD_REQUEST, "error resolving path: %s", e.msg);
            return -1;
        }
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
            files_upload_feed(st->upload, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return MHD_YES;
        }
        return files_upload_finish(st->upload);
    }

    bool get = streq(method, MHD_HTTP_METHOD_GET), head = streq(method, MHD_HTTP_METHOD_HEAD);
    bool post = streq(method, MHD_HTTP_METHOD_POST);
    if (!get && !head && !post)
        return http_queue_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed on /files", method);

    enum MHD_Result mr;
    if (check_access(conn, post ? "write" : "read", &mr) < 0)
        return mr;
    struct files_ctx ctx = { 0 };
    if (request_context(conn, &ctx, &mr) < 0) {
        free(ctx.path);
        return mr;
    }
    if (!post) {
        mr = files_download(&ctx, head);
        free(ctx.path);
        return mr;
    }
    struct files_upload *u = NULL;
    mr = files_upload_start(&ctx, &u);
    free(ctx.path);
    if (!u)
        return mr;
    st = xcalloc(1, sizeof(*st));
    st->upload = u;
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
