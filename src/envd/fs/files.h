/* The /files endpoints' internals shared by files.c (dispatch, access, user), download.c and
 * upload.c. */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "common/error.h"
#include "envd/envd.h"

/* An error to answer: status and message. */
struct files_error {
    unsigned status;
    char msg[ERROR_MSG_MAX + 64];
};

int files_fail(struct files_error *e, unsigned status, const char *fmt, ...) _printf_(3, 4);

/* What a /files request has established before its body is looked at. */
struct files_ctx {
    struct MHD_Connection *conn;
    struct envd_user user;
    char *path; /* the `path` query resolved for the user; NULL when absent */
};

/* GET (and HEAD) /files: queues the whole response. */
enum MHD_Result files_download(struct files_ctx *ctx, bool head);

/* POST /files, called for each piece of MHD's access handler: first (upload_data_size 0 and
 * *state NULL), body pieces, and the last call (upload_data_size 0). */
struct files_upload;
/* Validates the request and returns a new upload. Takes ctx->path. A request refused here
 * still gets an upload, which discards the body and answers the error at its end: a client
 * still sending its body would otherwise see a reset instead of the answer. */
struct files_upload *files_upload_start(struct files_ctx *ctx);
/* An upload that only discards its body and answers e. */
struct files_upload *files_upload_failed(struct MHD_Connection *conn, const struct files_error *e);
/* Returns false when the connection should be closed (a refused body too long to discard). */
bool files_upload_feed(struct files_upload *u, const char *data, size_t len);
/* Queues the response (the written files, or the first error). */
enum MHD_Result files_upload_finish(struct files_upload *u);
void files_upload_free(struct files_upload *u);
