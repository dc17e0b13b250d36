/* The gateway: sandbox traffic on the control plane's port. A request that carries
 * `E2b-Sandbox-Id` + `E2b-Sandbox-Port` (or a Host of `<port>-<id>.<domain>`) is forwarded to
 * that port inside that sandbox, over a stream socket the caller's connector provides (the
 * runtime's connect(), which reaches 127.0.0.1:port inside the sandbox's netns).
 *
 * Bodies stream both ways as they come, with bounded buffers and backpressure: a 256 MiB upload
 * never sits in memory, and each Connect envelope reaches the client as soon as envd writes it.
 * Upstream connections are pooled per sandbox and port (libcurl's connection cache, keyed by a
 * per-sandbox host name, so a connection can never be reused for another sandbox).
 *
 * Invariants: envd's internal routes (/init and the pause machinery) are never reachable
 * through the gateway; hop-by-hop headers, the routing headers and the traffic access token
 * header are not forwarded; an unknown sandbox or a closed port answers 502
 * `{"sandboxId","message","code":502}` (e2b-compat 1.4). A sandbox with a traffic access token
 * (network.allowPublicTraffic false) answers 403 on every port but envd's to a request without
 * `E2B-Traffic-Access-Token: <token>`, before anything reaches it (or resumes it). */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

#define GW_ENVD_PORT 49983
#define GW_INTERPRETER_PORT 49999
#define GW_SANDBOX_ID_MAX 64

/* Returns a new, unconnected TCP socket (AF_INET, SOCK_STREAM, O_CLOEXEC) that lives in the
 * sandbox's network namespace; the gateway connects it to 127.0.0.1:port, which is then the
 * sandbox's own loopback (a socket keeps the netns it was created in). Ownership passes to the
 * gateway. Returns -ENOENT when the sandbox does not exist or is not running, or another -errno
 * with err filled. Called on request threads, concurrently.
 *
 * Why not a connected socket: libcurl 7.88 always connect()s the socket it is given
 * (CURL_SOCKOPT_ALREADY_CONNECTED is ignored by its connection filters), so it must make the
 * connection itself. */
typedef int (*gw_connect_cb)(void *userdata, const char *sandbox_id, uint16_t port, struct error_record *err);

#define GW_TRAFFIC_TOKEN_HEADER "e2b-traffic-access-token"
#define GW_TRAFFIC_TOKEN_MAX 64
#define GW_MASK_HOST_MAX 255

/* What the gateway enforces on a sandbox's traffic to ports other than envd's. */
struct gw_ingress {
    char traffic_token[GW_TRAFFIC_TOKEN_MAX + 1]; /* "": public */
    char mask_host[GW_MASK_HOST_MAX + 1];         /* "": the client's Host; `${PORT}` = the port */
};

/* Fills ret for the sandbox; -ENOENT when it does not exist. Called on request threads,
 * concurrently; must not wait for the sandbox (it runs before a paused one is resumed). */
typedef int (*gw_ingress_cb)(void *userdata, const char *sandbox_id, struct gw_ingress *ret);

struct gw_config {
    gw_connect_cb connect;
    void *userdata;
    const char *domain; /* routes Host `<port>-<id>.<domain>`; NULL: header routing only */
};

struct gw;

int gw_new(const struct gw_config *cfg, struct gw **ret);
/* Sets the connector after creation (before the first request). */
void gw_set_connect(struct gw *gw, gw_connect_cb connect, void *userdata);
/* Sets the ingress lookup (before the first request); without one every sandbox is public. */
void gw_set_ingress(struct gw *gw, gw_ingress_cb ingress, void *userdata);
void gw_free(struct gw *gw);

enum gw_route_result {
    GW_NOT_SANDBOX_TRAFFIC, /* for the control plane */
    GW_ROUTED,              /* sandbox id and port filled */
    GW_BAD_ROUTE,           /* sandbox traffic, but malformed: answer 400 with the message */
};

struct gw_target {
    char sandbox_id[GW_SANDBOX_ID_MAX + 1];
    uint16_t port;
    char error[128]; /* for GW_BAD_ROUTE */
};

/* Decides from the request headers whether this is sandbox traffic. Pure: exposed for tests. */
enum gw_route_result gw_route(const char *domain, const char *id_header, const char *port_header,
                              const char *host_header, struct gw_target *ret);

/* Handles a routed request, with libmicrohttpd's access-handler arguments plus the request
 * target exactly as the client sent it (raw_uri, query included, forwarded byte for byte; from
 * MHD_OPTION_URI_LOG_CALLBACK) and MHD's decoded path (for the internal-route check). *req_cls
 * must be NULL on the first call for the request and is owned by the gateway afterwards; call
 * gw_request_completed() from the request-completed callback. Blocks the calling thread while
 * the upstream works (libmicrohttpd's thread-per-connection mode). */
enum MHD_Result gw_handle(struct gw *gw, const struct gw_target *target, struct MHD_Connection *conn,
                          const char *path, const char *raw_uri, const char *method, const char *upload_data,
                          size_t *upload_data_size, void **req_cls);
void gw_request_completed(void *req_cls);

/* Counters for the server's /metrics. */
struct gw_metrics {
    uint64_t requests;    /* routed requests */
    uint64_t bad_routes;  /* 400: half routed or malformed */
    uint64_t refused;     /* 403: internal routes, missing or wrong traffic access token */
    uint64_t unreachable; /* 502: sandbox gone, port closed, upstream failed */
};
void gw_get_metrics(struct gw *gw, struct gw_metrics *ret);
/* Counts a request that gw_route() refused (the caller answers it). */
void gw_count_bad_route(struct gw *gw);

/* Drops the pooled upstream connections of a sandbox (call when it stops running). */
void gw_forget_sandbox(struct gw *gw, const char *sandbox_id);

/* The Host to forward for a request to port under mask (gw_ingress.mask_host): every `${PORT}`
 * replaced by the port. Returns a new string. Pure: exposed for tests. */
char *gw_mask_host(const char *mask, uint16_t port);

/* True for envd paths that only the control plane may call (/init, /freeze, ...). */
bool gw_path_is_internal(uint16_t port, const char *path);
