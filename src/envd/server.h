/* envd's HTTP server: libmicrohttpd with a thread per connection, routing Connect RPC paths
 * to the process and filesystem method tables, /files to the filesystem engineer's handler,
 * and serving /health, /envs, /metrics and /init itself. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common/error.h"

struct envd_server;

/* Listens on addr ("HOST:PORT", "[V6]:PORT" or ":PORT") and serves in MHD's threads.
 * Returns 0 and the server, or -errno with err filled. */
int envd_server_start(const char *addr, struct envd_server **ret, struct error_record *err);
/* Stops accepting, ends open streams and joins every connection thread. Accepts NULL. */
void envd_server_stop(struct envd_server *s);

/* Answers of the plain endpoints, exposed for tests. */
/* The /metrics object (e2b-compat 3.8), from /proc and statvfs("/"). */
json_t *envd_metrics(void);

/* The route of a request path; RPC paths look like "/pkg.Service/Method". */
enum envd_route {
    ENVD_ROUTE_NOT_FOUND,
    ENVD_ROUTE_HEALTH,
    ENVD_ROUTE_FILES,
    ENVD_ROUTE_INIT,
    ENVD_ROUTE_ENVS,
    ENVD_ROUTE_METRICS,
    ENVD_ROUTE_RPC,
    ENVD_ROUTE_COMPOSE,
};
enum envd_route envd_route_of(const char *url);
