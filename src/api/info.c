/* GET /metrics (Prometheus text format 0.0.4) and GET /openapi.json (the API's OpenAPI 3
 * document, embedded at build time from openapi/openapi.json). Both are public: a scraper or a
 * code generator has no API key, and neither says anything about any one sandbox. */
#include <stdio.h>
#include <string.h>

#include "api/api-internal.h"
#include "common/buf.h"
#include "common/http-util.h"
#include "gateway/gateway.h"
#include "orchestrator/orchestrator.h"
#include "common/banned.h"

#define METRICS_MAX (64u << 10)

extern const char api_openapi_json[];
extern const size_t api_openapi_json_len;

static enum MHD_Result respond(struct MHD_Connection *conn, const char *type, const char *data, size_t len,
                               enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, mode);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result api_openapi(struct api_request *req)
{
    return respond(req->conn, HTTP_JSON_CONTENT_TYPE, api_openapi_json, api_openapi_json_len,
                   MHD_RESPMEM_PERSISTENT);
}

static void counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
               (unsigned long long)v);
}

enum MHD_Result api_metrics(struct api_request *req)
{
    struct buf b;
    buf_init(&b, METRICS_MAX);
    struct gw_metrics g;
    gw_get_metrics(api_server_gateway(req->server), &g);
    if (req->server_orch) {
        struct orch_metrics m;
        orch_get_metrics(req->server_orch, &m);
        buf_printf(&b,
                   "# HELP hutch_sandboxes Sandboxes of this server by state.\n"
                   "# TYPE hutch_sandboxes gauge\n"
                   "hutch_sandboxes{state=\"creating\"} %llu\n"
                   "hutch_sandboxes{state=\"running\"} %llu\n"
                   "hutch_sandboxes{state=\"paused\"} %llu\n",
                   (unsigned long long)m.creating, (unsigned long long)m.running,
                   (unsigned long long)m.paused);
        buf_printf(&b,
                   "# HELP hutch_warm_pool_sandboxes Started sandboxes waiting to be handed out.\n"
                   "# TYPE hutch_warm_pool_sandboxes gauge\nhutch_warm_pool_sandboxes %llu\n",
                   (unsigned long long)m.pooled);
        counter(&b, "hutch_warm_pool_hits_total", "Creates served from the warm pool.", m.pool_hits);
        counter(&b, "hutch_sandbox_creates_total", "Sandboxes created.", m.creates);
        counter(&b, "hutch_sandbox_create_failures_total", "Sandbox creates that failed.", m.create_failures);
        counter(&b, "hutch_sandbox_timeouts_total", "Sandboxes ended by their timeout.", m.timeouts);
        buf_printf(
            &b, "# HELP hutch_sandbox_create_seconds Time to create a sandbox, envd ready and initialised.\n"
                "# TYPE hutch_sandbox_create_seconds histogram\n");
        for (size_t i = 0; i < ORCH_CREATE_BUCKETS; i++)
            buf_printf(&b, "hutch_sandbox_create_seconds_bucket{le=\"%g\"} %llu\n",
                       orch_create_bucket_ms[i] / 1000.0, (unsigned long long)m.create_bucket[i]);
        buf_printf(&b, "hutch_sandbox_create_seconds_bucket{le=\"+Inf\"} %llu\n",
                   (unsigned long long)m.create_bucket[ORCH_CREATE_BUCKETS]);
        buf_printf(&b, "hutch_sandbox_create_seconds_sum %.6f\nhutch_sandbox_create_seconds_count %llu\n",
                   m.create_seconds_sum, (unsigned long long)m.create_bucket[ORCH_CREATE_BUCKETS]);
    }
    counter(&b, "hutch_gateway_requests_total", "Requests routed to a sandbox.", g.requests);
    counter(&b, "hutch_gateway_bad_routes_total", "Sandbox requests refused as malformed (400).",
            g.bad_routes);
    counter(&b, "hutch_gateway_refused_total", "Requests for envd's internal routes (403).", g.refused);
    counter(&b, "hutch_gateway_unreachable_total",
            "Requests whose sandbox or port could not be reached (502).", g.unreachable);
    struct egress *eg = api_server_egress(req->server);
    if (eg) {
        struct egress_metrics em;
        egress_get_metrics(eg, &em);
        buf_printf(&b,
                   "# HELP hutch_egress_connections Sandbox connections open through the egress proxy.\n"
                   "# TYPE hutch_egress_connections gauge\nhutch_egress_connections %llu\n",
                   (unsigned long long)em.active);
        counter(&b, "hutch_egress_proxied_total", "Connections the egress proxy passed to an allowed name.",
                em.proxied);
        counter(&b, "hutch_egress_refused_total",
                "Connections the egress proxy closed: no name, a name not allowed, or not HTTP/TLS.",
                em.refused);
        counter(&b, "hutch_egress_unreachable_total",
                "Allowed names the egress proxy could not resolve to a usable address or connect to.",
                em.unreachable);
    }
    size_t len = b.len;
    return respond(req->conn, "text/plain; version=0.0.4; charset=utf-8", buf_steal(&b), len,
                   MHD_RESPMEM_MUST_FREE);
}
