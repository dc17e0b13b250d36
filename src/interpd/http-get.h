/* A plain HTTP/1.1 GET to one of hutch's own services in the sandbox (interpd asking envd for
 * /envs): one request per connection, the answer read with http-parser, bounded in size and
 * time. Not a general client: http:// only, no redirects, no TLS, no proxies. */
#pragma once
#include <stddef.h>

#include "common/buf.h"
#include "common/error.h"

/* GETs url ("http://HOST[:PORT]/PATH[?QUERY]", HOST a name or address, port 80 by default)
 * with one extra header line (header "Name: value", or NULL), within timeout_ms in all.
 * Returns 0 with the status in *ret_status and the body appended to body (whose maximum
 * bounds it: a longer body fails with -ENOBUFS); or -EINVAL (a bad url or header),
 * -ECONNREFUSED and other connect errors, -ETIMEDOUT, -EBADMSG (not an HTTP answer, or cut
 * short), with err filled. */
int http_get(const char *url, const char *header, int timeout_ms, unsigned *ret_status, struct buf *body,
             struct error_record *err);
