/* The control plane's HTTP API: E2B's REST surface (/sandboxes, /v2/sandboxes, /templates, ...)
 * served by libmicrohttpd on one port, with API-key authentication against the store.
 *
 * Invariants: every 2xx carries a JSON body or Content-Length: 0 (the SDK parses any other 2xx
 * as JSON); every error is `{"code": <status>, "message": "..."}` with the status also in
 * `code` (the SDK reads the body's code, not the HTTP status); request bodies are read up to
 * API_MAX_BODY, chunked or not, except on routes with a body sink (uploads), which stream
 * theirs and set their own limit (API_MAX_UPLOAD for template files). */
#pragma once

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/error.h"
#include "egress/egress.h"
#include "gateway/gateway.h"
#include "orchestrator/orchestrator.h"

#define API_MAX_BODY (1u << 20)
/* The largest COPY upload of a template build (a gzip'd tar, streamed to disk). */
#define API_MAX_UPLOAD (1ull << 30)
/* The template every server has (e2b-compat 5.1): the host's base, ready from the start. */
#define API_BUILTIN_TEMPLATE "base"
#define API_DEFAULT_LISTEN "127.0.0.1:3000"
#define API_MAX_PARAMS 4

struct api_config {
    const char *listen;    /* "ADDR:PORT" */
    const char *state_dir; /* holds hutch.db */
    const char *domain;    /* for <port>-<id>.<domain> routing; NULL when unset */
    /* How the gateway reaches a port inside a sandbox (see gw_connect_cb); NULL: through the
     * orchestrator, which the server then starts (with orch below). Tests set it to reach a
     * plain local server instead, and then no orchestrator runs. */
    gw_connect_cb sandbox_connect;
    void *sandbox_connect_userdata;
    /* The orchestrator's settings (state_dir and on_gone are filled in by the server). */
    struct orch_config orch;
    /* The egress proxy for domain names in network.allowOut (started with the orchestrator;
     * net_pool is filled in from orch). */
    struct egress_config egress;
};

struct api_server;

/* Opens the store, binds the listener and starts serving on MHD's threads. Returns 0 and the
 * server, or -errno with err filled (address in use, unusable state dir, ...). */
int api_server_start(const struct api_config *cfg, struct api_server **ret, struct error_record *err);
/* The port actually bound (useful with port 0). */
uint16_t api_server_port(const struct api_server *s);
/* Stops accepting, waits for in-flight requests, frees everything. Accepts NULL. */
void api_server_stop(struct api_server *s);

/* One request as a handler sees it. */
struct api_request {
    struct api_server *server;
    struct orch *server_orch; /* NULL when the server runs without one (gateway tests) */
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    const char *params[API_MAX_PARAMS]; /* the {name} segments of the route, in order */
    struct buf body;                    /* the whole request body, NUL-terminated */
    /* Routes with a body sink: what its begin returned, and the first failure of its write
     * (0 when none; the rest of the body was then read and dropped). body stays empty. */
    void *sink_ctx;
    int sink_error;
};

/* A route handler queues exactly one response and returns MHD's result. */
typedef enum MHD_Result (*api_handler_cb)(struct api_request *req);

/* A route whose body is streamed rather than buffered. begin runs once the headers are in,
 * before any of the body is read (a public route authenticates itself here): it either
 * queues a response (an error; *ret_answered true) and returns MHD's result, or sets *ret_ctx
 * and accepts the body. write gets each piece in order and returns 0 or -errno. The route's
 * handler then runs as usual, with req->sink_ctx and req->sink_error, and free(ctx) runs when
 * the request ends, however it ends (a client gone mid-body included). */
struct api_body_sink {
    enum MHD_Result (*begin)(struct api_request *req, void **ret_ctx, bool *ret_answered);
    int (*write)(void *ctx, const void *data, size_t len);
    void (*free)(void *ctx);
};

struct api_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/sandboxes/{id}/timeout": a {…} segment matches one path segment */
    api_handler_cb handler;
    bool public;                      /* no API key needed */
    bool needs_orch;                  /* answers 503 when the server runs without an orchestrator */
    const struct api_body_sink *sink; /* NULL: the body is buffered (API_MAX_BODY) */
};

/* The route table (exposed for the test that checks it against the OpenAPI document). */
size_t api_routes(const struct api_route **ret);

/* Matches path against pattern, filling params with pointers into a copy the caller owns
 * (segments are written into scratch, which must hold strlen(path)+1 bytes). Returns true on a
 * match. Exposed for tests. */
bool api_route_match(const char *pattern, const char *path, char *scratch, const char **params);

/* Handlers. */
enum MHD_Result api_health(struct api_request *req);
enum MHD_Result api_teams(struct api_request *req);
enum MHD_Result api_sandbox_create_v1(struct api_request *req);
enum MHD_Result api_sandbox_create_v2(struct api_request *req);
enum MHD_Result api_sandbox_get(struct api_request *req);
enum MHD_Result api_sandbox_kill(struct api_request *req);
enum MHD_Result api_sandbox_timeout(struct api_request *req);
enum MHD_Result api_sandbox_refreshes(struct api_request *req);
enum MHD_Result api_sandbox_connect(struct api_request *req);
enum MHD_Result api_sandbox_list_v1(struct api_request *req);
enum MHD_Result api_sandbox_list_v2(struct api_request *req);
enum MHD_Result api_sandbox_metrics(struct api_request *req);
enum MHD_Result api_sandbox_logs_v1(struct api_request *req);
enum MHD_Result api_sandbox_logs_v2(struct api_request *req);
enum MHD_Result api_sandbox_pause(struct api_request *req);
enum MHD_Result api_sandbox_resume(struct api_request *req);
enum MHD_Result api_sandbox_network(struct api_request *req);
enum MHD_Result api_sandbox_snapshot(struct api_request *req);
enum MHD_Result api_sandbox_fork(struct api_request *req);
/* templates.c (e2b-compat 2.7, and the snapshot listing of 2.3) */
enum MHD_Result api_template_request_build(struct api_request *req);
enum MHD_Result api_template_file_link(struct api_request *req);
enum MHD_Result api_template_file_upload(struct api_request *req);
enum MHD_Result api_template_build_start(struct api_request *req);
enum MHD_Result api_template_build_status(struct api_request *req);
enum MHD_Result api_template_alias(struct api_request *req);
enum MHD_Result api_template_tags_assign(struct api_request *req);
enum MHD_Result api_template_tags_delete(struct api_request *req);
enum MHD_Result api_template_tags_list(struct api_request *req);
enum MHD_Result api_template_list_v1(struct api_request *req);
enum MHD_Result api_template_list_v2(struct api_request *req);
enum MHD_Result api_template_get(struct api_request *req);
enum MHD_Result api_template_delete(struct api_request *req);
enum MHD_Result api_template_update_v2(struct api_request *req);
enum MHD_Result api_snapshot_list(struct api_request *req);

/* Queues the error response for a -errno failure of the orchestrator or store (ENOENT 404,
 * EINVAL 400, EEXIST/EALREADY 409, EOPNOTSUPP 501, EAGAIN/ENOSPC 503, else 500). */
enum MHD_Result api_queue_failure(struct api_request *req, int r, const struct error_record *err);

/* Parses the request body as a JSON object; on failure queues a 400 and returns NULL with
 * *ret_result set to what the handler must return. An empty body gives an empty object. */
json_t *api_request_json(struct api_request *req, enum MHD_Result *ret_result);
