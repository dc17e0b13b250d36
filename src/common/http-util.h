/* Helpers over libmicrohttpd shared by every HTTP server in hutch (API, gateway, envd,
 * interpd): JSON responses, the {code, message} error body, and header lookups. */
#pragma once

#include <jansson.h>
#include <microhttpd.h>

#include "common/macro.h"

#define HTTP_JSON_CONTENT_TYPE "application/json; charset=utf-8"

/* Queues a response with the serialized JSON value (not consumed) and status. Returns MHD's
 * result. */
enum MHD_Result http_queue_json(struct MHD_Connection *c, unsigned status, const json_t *body);
/* The same with one extra response header (header NULL: none). */
enum MHD_Result http_queue_json_with_header(struct MHD_Connection *c, unsigned status, const json_t *body,
                                            const char *header, const char *value);

/* Queues `{"code": status, "message": "..."}`, the error body of E2B's REST API and of envd's
 * plain HTTP endpoints. */
enum MHD_Result http_queue_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    _printf_(3, 4);

/* Queues an empty response (Content-Length: 0) with status. */
enum MHD_Result http_queue_empty(struct MHD_Connection *c, unsigned status);

/* A request header's value, or NULL. */
const char *http_header(struct MHD_Connection *c, const char *name);
/* A query argument's value, or NULL. */
const char *http_query(struct MHD_Connection *c, const char *name);
