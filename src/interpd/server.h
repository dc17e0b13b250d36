/* interpd's HTTP server: E2B's code-interpreter API (e2b-compat §4.2) over libmicrohttpd, one
 * thread per connection. /execute streams NDJSON straight from the kernel: the response's
 * reader callback pulls the next line from the execution, so at most one line is buffered and
 * a slow client slows the kernel's reader instead of growing memory. */
#pragma once
#include "common/error.h"
#include "interpd/contexts.h"

struct interpd_server;

/* Listens on cfg->listen and serves cfg until stopped. cfg and cs must outlive the server.
 * Returns 0 or -errno with err filled. */
int interpd_server_start(const struct interpd_config *cfg, struct contexts *cs, struct interpd_server **ret,
                         struct error_record *err);
/* Ends every stream in flight (their executions end as their kernels were killed before this
 * by contexts_shutdown()) and stops the daemon. Accepts NULL. */
void interpd_server_stop(struct interpd_server *s);
