/* The /files endpoints' internals shared by files.c (dispatch, access, user), download.c and
 * upload.c. */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "common/error.h"
#include "envd/envd.h"

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
/* Validates the request and either returns a new upload in *ret (MHD_YES) or queues an error
 * response. Takes ctx->path. */
enum MHD_Result files_upload_start(struct files_ctx *ctx, struct files_upload **ret);
void files_upload_feed(struct files_upload *u, const char *data, size_t len);
/* Queues the response (the written files, or the first error). */
enum MHD_Result files_upload_finish(struct files_upload *u);
void files_upload_free(struct files_upload *u);
