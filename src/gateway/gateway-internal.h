/* What the gateway's files share. */
#pragma once

#include "gateway/gateway.h"

/* Queues the contract's 502 {sandboxId, message, code}. connect_r -ENOENT and -ECONNREFUSED
 * give the standard messages; otherwise detail is the message. */
enum MHD_Result gw_queue_502(struct gw *gw, struct MHD_Connection *conn, const struct gw_target *t,
                             int connect_r, const char *detail);

/* A blocking TCP connection to 127.0.0.1:port in the sandbox (for upgrades, which bypass curl).
 * -ENOENT: no such sandbox; -ECONNREFUSED: nothing listens. */
int gw_open_upstream(struct gw *gw, const struct gw_target *t, struct error_record *err);

/* True for request headers that end at the gateway: the routing headers and the traffic access
 * token. */
bool gw_header_is_own(const char *name);

/* upgrade.c: the whole exchange for a request with an Upgrade header. host: the Host to send
 * instead of the client's (network.maskRequestHost, the client's then going as
 * X-Forwarded-Host), or NULL. */
enum MHD_Result gw_upgrade(struct gw *gw, const struct gw_target *t, struct MHD_Connection *conn,
                           const char *raw_uri, const char *method, const char *host);
