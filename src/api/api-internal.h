/* What the API's files share and nothing outside src/api/ may use. */
#pragma once

#include "api/api.h"
#include "gateway/gateway.h"

struct gw *api_server_gateway(struct api_server *s);
/* The egress proxy (NULL when the server runs without an orchestrator). */
struct egress *api_server_egress(struct api_server *s);
const char *api_server_state_dir(const struct api_server *s);
/* The server's own store connection (also used for key checks): hold it briefly. */
struct store *api_store_lock(struct api_server *s);
void api_store_unlock(struct api_server *s);
/* The random key this server signs template upload URLs with (drawn at start). */
const unsigned char *api_server_upload_secret(const struct api_server *s, size_t *ret_len);

/* templates.c: the streamed body of PUT /upload/templates/{id}/files/{hash}. */
extern const struct api_body_sink api_template_upload_sink;
/* Removes what uploads cut short by a crash left in the file cache (at start, before any
 * upload can be under way). */
void api_template_cache_clean(const char *state_dir);
/* E2B's SnapshotInfo {snapshotID, names} of a snapshot (store lock held); for the snapshot
 * listing and for whatever creates snapshots, so both answer alike. */
struct store_template;
int api_snapshot_info(struct store *st, const struct store_template *t, json_t **ret,
                      struct error_record *err);

enum MHD_Result api_openapi(struct api_request *req);
enum MHD_Result api_metrics(struct api_request *req);
