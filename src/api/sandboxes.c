/* The sandbox endpoints of E2B's REST API (e2b-compat §2.3, §2.4, §2.6): create (v1 and v2),
 * get, kill, timeout, refreshes, connect (v1 and v2), list (v1 and v2), metrics. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "common/http-util.h"
#include "common/json-util.h"
#include "common/macro.h"
#include "common/net-util.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "orchestrator/orchestrator.h"
#include "common/banned.h"

#define LIST_DEFAULT_LIMIT 100
#define LIST_MAX_LIMIT 1000
#define V1_DEFAULT_TIMEOUT_S 15

enum MHD_Result api_queue_failure(struct api_request *req, int r, const struct error_record *err)
{
    unsigned status;
    switch (-r) {
    case ENOENT:
        status = MHD_HTTP_NOT_FOUND;
        break;
    case EINVAL:
        status = MHD_HTTP_BAD_REQUEST;
        break;
    case EEXIST:
    case EALREADY:
        status = MHD_HTTP_CONFLICT;
        break;
    case EOPNOTSUPP:
        status = MHD_HTTP_NOT_IMPLEMENTED;
        break;
    case EAGAIN:
    case ENOSPC:
        status = MHD_HTTP_SERVICE_UNAVAILABLE;
        break;
    default:
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        break;
    }
    return http_queue_error(req->conn, status, "%s", err->msg[0] ? err->msg : errno_to_string(r));
}

/* Reads an optional integer member in [min, max]; 0 when absent. */
static int get_uint(const json_t *body, const char *key, uint32_t min, uint32_t max, uint32_t *ret,
                    struct error_record *err)
{
    json_t *v = json_object_get(body, key);
    *ret = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min ||
        json_integer_value(v) > (json_int_t)max)
        return error_set(err, EINVAL, "%s must be an integer from %" PRIu32 " to %" PRIu32, key, min, max);
    *ret = (uint32_t)json_integer_value(v);
    return 0;
}

static int get_bool(const json_t *body, const char *key, bool def, bool *ret, struct error_record *err)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) {
        *ret = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return error_set(err, EINVAL, "%s must be a boolean", key);
    *ret = json_is_true(v);
    return 0;
}

#define MAX_CIDRS 64

/* Fills a NULL-terminated list (pointers into the JSON) from an array of strings: addresses
 * and CIDRs (checked by the runtime), and with names, domain names ("example.com",
 * "*.example.com"). */
static int string_list(const json_t *a, const char *what, bool names, const char **out,
                       struct error_record *err)
{
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a) || json_array_size(a) > MAX_CIDRS)
        return error_set(err, EINVAL, "network.%s must be an array of at most %d entries", what, MAX_CIDRS);
    size_t i;
    json_t *v;
    json_array_foreach (a, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 255)
            return error_set(err, EINVAL, "network.%s[%zu] must be an address, a CIDR%s", what, i,
                             names ? " or a domain name" : "");
        if (!names && net_domain_pattern_valid(json_string_value(v)))
            return error_set(err, EINVAL, "network.%s[%zu]: domain names are supported in allowOut only",
                             what, i);
        out[i] = json_string_value(v);
    }
    return 0;
}

/* network.httpsPorts: TCP ports (besides 443) where allowOut's names are checked by TLS SNI.
 * Fills a 0-terminated list. */
static int https_ports(const json_t *a, uint16_t *out, struct error_record *err)
{
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a) || json_array_size(a) > RUNTIME_HTTPS_PORTS_MAX)
        return error_set(err, EINVAL, "network.httpsPorts must be an array of at most %d ports",
                         RUNTIME_HTTPS_PORTS_MAX);
    size_t i;
    json_t *v;
    json_array_foreach (a, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
            return error_set(err, EINVAL, "network.httpsPorts[%zu] must be a port from 1 to 65535", i);
        out[i] = (uint16_t)json_integer_value(v);
        if (out[i] == 80)
            return error_set(err, EINVAL,
                             "network.httpsPorts: port 80 is HTTP's (checked by Host), not a TLS port");
        for (size_t k = 0; k < i; k++)
            if (out[k] == out[i])
                return error_set(err, EINVAL, "network.httpsPorts: port %u is listed twice",
                                 (unsigned)out[i]);
    }
    return 0;
}

/* `network` of NewSandboxV2: allowOut (addresses, CIDRs, domain names), denyOut (addresses,
 * CIDRs) and httpsPorts (TLS ports for allowOut's names) are enforced; what hutch cannot do (an
 * upstream egress proxy, per-host rules) is refused rather than ignored. */
static int parse_network(const json_t *n, const char **allow, const char **deny, uint16_t *https,
                         struct error_record *err)
{
    if (!n || json_is_null(n))
        return 0;
    if (!json_is_object(n))
        return error_set(err, EINVAL, "network must be an object");
    json_t *proxy = json_object_get(n, "egressProxy"), *rules = json_object_get(n, "rules");
    if ((proxy && !json_is_null(proxy)) || (rules && !json_is_null(rules) && json_object_size(rules) > 0))
        return error_set(err, EOPNOTSUPP, "network.egressProxy and network.rules are not supported");
    int r = string_list(json_object_get(n, "allowOut"), "allowOut", true, allow, err);
    if (r >= 0)
        r = string_list(json_object_get(n, "denyOut"), "denyOut", false, deny, err);
    if (r >= 0)
        r = https_ports(json_object_get(n, "httpsPorts"), https, err);
    return r;
}

/* network.maskRequestHost as E2B takes it: a host name or address, optionally with ":port";
 * `${PORT}` (the port the request is for) may stand anywhere. ASCII only, no spaces or control
 * characters (it becomes a header line). */
static bool mask_host_valid(const char *mask)
{
    static const char placeholder[] = "${PORT}";
    char s[ORCH_MASK_HOST_MAX + 1];
    size_t n = 0;
    for (const char *p = mask; *p;) {
        if (strncmp(p, placeholder, sizeof(placeholder) - 1) == 0) {
            s[n++] = '1';
            p += sizeof(placeholder) - 1;
        } else {
            s[n++] = *p++;
        }
    }
    s[n] = '\0';
    char *host = s, *port = NULL;
    if (s[0] == '[') { /* [IPv6]:port */
        char *end = strchr(s, ']');
        if (!end || end == s + 1)
            return false;
        *end = '\0';
        host = s + 1;
        if (end[1] == ':')
            port = end + 2;
        else if (end[1])
            return false;
        for (const char *p = host; *p; p++)
            if (!strchr("0123456789abcdefABCDEF:.", *p))
                return false;
    } else {
        char *colon = strchr(s, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
        if (!*host || strlen(host) > 253)
            return false;
        for (const char *p = host; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '-' || *p == '.' || *p == '_'))
                return false;
    }
    if (port) {
        uint64_t v;
        if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port) ||
            parse_uint64(port, &v) < 0 || v == 0 || v > 65535)
            return false;
    }
    return true;
}

/* The ingress half of `network` (create only: E2B's network update has neither):
 * allowPublicTraffic (default true) and maskRequestHost. */
static int parse_ingress(const json_t *n, struct orch_create *c, struct error_record *err)
{
    if (!json_is_object(n))
        return 0;
    bool public_traffic = true;
    int r = get_bool(n, "allowPublicTraffic", true, &public_traffic, err);
    if (r < 0)
        return error_set(err, EINVAL, "network.allowPublicTraffic must be a boolean");
    c->require_traffic_token = !public_traffic;
    json_t *m = json_object_get(n, "maskRequestHost");
    if (!m || json_is_null(m))
        return 0;
    if (!json_is_string(m) || json_string_length(m) == 0 || json_string_length(m) > ORCH_MASK_HOST_MAX)
        return error_set(err, EINVAL, "network.maskRequestHost must be a string of 1 to %d bytes",
                         ORCH_MASK_HOST_MAX);
    if (strlen(json_string_value(m)) != json_string_length(m) || !mask_host_valid(json_string_value(m)))
        return error_set(err, EINVAL,
                         "mask request host is not valid: %s (a host name or address, optionally with "
                         ":port, in ASCII; ${PORT} stands for the port)",
                         json_string_value(m));
    c->mask_request_host = json_string_value(m);
    return 0;
}

static enum MHD_Result create(struct api_request *req, uint32_t default_timeout)
{
    enum MHD_Result ret;
    json_auto_t *body = api_request_json(req, &ret);
    if (!body)
        return ret;
    struct error_record err = { 0 };
    struct orch_create c = { 0 };
    json_t *tpl = json_object_get(body, "templateID");
    if (!json_is_string(tpl) || json_string_length(tpl) == 0)
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "templateID (a string) is required");
    c.template_id = json_string_value(tpl);
    int r = get_uint(body, "timeout", 1, UINT32_MAX, &c.timeout_s, &err);
    if (r >= 0 && !c.timeout_s)
        c.timeout_s = default_timeout;
    if (r >= 0)
        r = get_bool(body, "allow_internet_access", true, &c.allow_internet_access, &err);
    if (r >= 0)
        r = get_bool(body, "autoPause", false, &c.auto_pause, &err);
    json_t *auto_resume = json_object_get(body, "autoResume");
    if (r >= 0 && auto_resume && !json_is_null(auto_resume)) {
        if (!json_is_object(auto_resume))
            r = error_set(&err, EINVAL, "autoResume must be an object {enabled: bool}");
        else
            r = get_bool(auto_resume, "enabled", false, &c.auto_resume, &err);
    }
    /* e2b-compat 2.6: autoPauseMemory:false, a filesystem-only pause at the timeout, which no
     * traffic can resume transparently. */
    bool auto_pause_memory = true;
    if (r >= 0)
        r = get_bool(body, "autoPauseMemory", true, &auto_pause_memory, &err);
    if (r >= 0 && !auto_pause_memory && c.auto_resume)
        r = error_set(&err, EINVAL, "autoPauseMemory false cannot be combined with autoResume");
    c.auto_pause_filesystem = !auto_pause_memory;
    /* hutch's extension: per-sandbox resources, within the server's maximums. */
    if (r >= 0)
        r = get_uint(body, "cpuCount", 1, 1024, &c.limits.cpu_count, &err);
    if (r >= 0)
        r = get_uint(body, "memoryMB", 1, 1 << 22, &c.limits.memory_mb, &err);
    if (r >= 0)
        r = get_uint(body, "diskSizeMB", 1, 1 << 24, &c.limits.disk_mb, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    const char *allow[MAX_CIDRS + 1] = { 0 }, *deny[MAX_CIDRS + 1] = { 0 };
    uint16_t https[RUNTIME_HTTPS_PORTS_MAX + 1] = { 0 };
    if (r >= 0)
        r = parse_network(json_object_get(body, "network"), allow, deny, https, &err);
    if (r >= 0)
        r = parse_ingress(json_object_get(body, "network"), &c, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    c.allow_out = allow;
    c.deny_out = deny;
    c.https_ports = https;
    c.metadata = json_object_get(body, "metadata");
    c.env_vars = json_object_get(body, "envVars");
    if (json_is_null(c.metadata))
        c.metadata = NULL;
    if (json_is_null(c.env_vars))
        c.env_vars = NULL;

    json_t *sandbox;
    usec_t began = now_usec(CLOCK_MONOTONIC);
    r = orch_sandbox_create(req->server_orch, &c, &sandbox, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    /* The server's own share of the create (W3C Server-Timing), for clients and benchmarks
     * that separate it from the network and client time. */
    char timing[64];
    snprintf(timing, sizeof(timing), "create;dur=%.3f",
             (double)(now_usec(CLOCK_MONOTONIC) - began) / (double)USEC_PER_MSEC);
    ret = http_queue_json_with_header(req->conn, MHD_HTTP_CREATED, sandbox, "Server-Timing", timing);
    json_decref(sandbox);
    return ret;
}

enum MHD_Result api_sandbox_create_v2(struct api_request *req)
{
    return create(req, 0);
}

enum MHD_Result api_sandbox_create_v1(struct api_request *req)
{
    return create(req, V1_DEFAULT_TIMEOUT_S);
}

enum MHD_Result api_sandbox_kill(struct api_request *req)
{
    struct error_record err = { 0 };
    int r = orch_sandbox_kill(req->server_orch, req->params[0], &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    return http_queue_empty(req->conn, MHD_HTTP_NO_CONTENT);
}

/* The body member `field` (seconds) moves the sandbox's end to now + that: required and free to
 * shorten for setTimeout (§2.6); optional (300 s) and only ever extending for refreshes. */
static enum MHD_Result move_end(struct api_request *req, const char *field, bool required, bool extend_only)
{
    enum MHD_Result ret;
    json_auto_t *body = api_request_json(req, &ret);
    if (!body)
        return ret;
    struct error_record err = { 0 };
    uint32_t timeout;
    int r = get_uint(body, field, 1, UINT32_MAX, &timeout, &err);
    if (r >= 0 && !timeout) {
        if (required)
            return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "%s (seconds, > 0) is required", field);
        timeout = 300;
    }
    if (r >= 0)
        r = orch_sandbox_set_timeout(req->server_orch, req->params[0], timeout, extend_only, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    return http_queue_empty(req->conn, MHD_HTTP_NO_CONTENT);
}

enum MHD_Result api_sandbox_timeout(struct api_request *req)
{
    return move_end(req, "timeout", true, false);
}

enum MHD_Result api_sandbox_refreshes(struct api_request *req)
{
    /* Old SDKs' keep-alive. */
    return move_end(req, "duration", false, true);
}

/* Connect (v1, v2) and the deprecated resume: a paused sandbox resumes (201) with its end set
 * to now + timeout; a running one only has its end extended (200; resume answers 409). */
static enum MHD_Result resume(struct api_request *req, bool is_resume)
{
    enum MHD_Result ret;
    json_auto_t *body = api_request_json(req, &ret);
    if (!body)
        return ret;
    struct error_record err = { 0 };
    uint32_t timeout;
    int r = get_uint(body, "timeout", 1, UINT32_MAX, &timeout, &err);
    /* memory:false (the SDK's onResume 'reboot'): a sandbox paused in memory starts again from
     * its saved filesystem instead of being thawed. */
    json_t *memory = json_object_get(body, "memory");
    if (r >= 0 && memory && !json_is_boolean(memory) && !json_is_null(memory))
        r = error_set(&err, EINVAL, "memory must be a boolean");
    if (r >= 0)
        r = orch_sandbox_resume(req->server_orch, req->params[0], timeout, !json_is_false(memory), &err);
    if (r == 0 && is_resume)
        return http_queue_error(req->conn, MHD_HTTP_CONFLICT, "sandbox %s is already running",
                                req->params[0]);
    json_t *sandbox = NULL;
    bool resumed = r == 1;
    if (r >= 0)
        r = orch_sandbox_connect_info(req->server_orch, req->params[0], &sandbox, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    ret = http_queue_json(req->conn, resumed ? MHD_HTTP_CREATED : MHD_HTTP_OK, sandbox);
    json_decref(sandbox);
    return ret;
}

enum MHD_Result api_sandbox_connect(struct api_request *req)
{
    return resume(req, false);
}

enum MHD_Result api_sandbox_resume(struct api_request *req)
{
    return resume(req, true);
}

enum MHD_Result api_sandbox_pause(struct api_request *req)
{
    enum MHD_Result mr;
    json_t *body = api_request_json(req, &mr);
    if (!body)
        return mr;
    json_t *memory = json_object_get(body, "memory");
    if (memory && !json_is_boolean(memory) && !json_is_null(memory)) {
        json_decref(body);
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "memory must be a boolean");
    }
    /* E2B's keepMemory: true unless the client says false. */
    bool keep_memory = !json_is_false(memory);
    json_decref(body);
    struct error_record err = { 0 };
    int r = orch_sandbox_pause(req->server_orch, req->params[0], keep_memory, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    return http_queue_empty(req->conn, MHD_HTTP_NO_CONTENT);
}

/* ---- get and list ---- */

/* SandboxDetail's `network` (SandboxNetworkConfig), from the sandbox's restore record. */
static json_t *detail_network(const struct store_sandbox *sb)
{
    json_auto_t *restore = json_loads(sb->restore_json ? sb->restore_json : "{}", 0, NULL);
    json_t *n = json_pack("{s:b}", "allowPublicTraffic",
                          !json_is_string(json_object_get(restore, "trafficAccessToken")));
    static const char *const keys[] = { "allowOut", "denyOut", "httpsPorts", "maskRequestHost" };
    for (size_t i = 0; n && i < ARRAY_SIZE(keys); i++) {
        json_t *v = json_object_get(restore, keys[i]);
        if (v && !json_is_null(v))
            json_object_set(n, keys[i], v);
    }
    if (!n)
        abort();
    return n;
}

static json_t *listed_json(const struct store_sandbox *sb, bool detail)
{
    char started[32], end[32];
    format_rfc3339((time_t)(sb->started_at_ms / 1000), started, sizeof(started));
    format_rfc3339((time_t)(sb->end_at_ms / 1000), end, sizeof(end));
    json_t *metadata = json_loads(sb->metadata_json ? sb->metadata_json : "{}", 0, NULL);
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:o}", "sandboxID", sb->id,
                  "templateID", sb->template_id, "alias", sb->alias, "clientID", ORCH_CLIENT_ID, "startedAt",
                  started, "endAt", end, "cpuCount", (int)sb->cpu_count, "memoryMB", (int)sb->memory_mb,
                  "diskSizeMB", (int)sb->disk_mb, "state", store_sandbox_state_to_string(sb->state),
                  "envdVersion", sb->envd_version, "metadata", metadata ? metadata : json_object());
    if (!j)
        abort();
    if (detail) {
        json_object_set_new(j, "envdAccessToken", json_string(sb->envd_access_token));
        json_object_set_new(j, "domain", json_null());
        /* hutch's own: how a paused sandbox is kept ("memory": frozen in place, its processes
         * resume too; "filesystem": its files only, the start command runs again). */
        if (sb->state == STORE_SANDBOX_PAUSED)
            json_object_set_new(j, "pauseMode", json_string(sb->pause_mode[0] ? sb->pause_mode : "memory"));
        json_object_set_new(j, "lifecycle",
                            json_pack("{s:s, s:b}", "onTimeout", sb->pause_on_timeout ? "pause" : "kill",
                                      "autoResume", sb->auto_resume));
        json_object_set_new(j, "network", detail_network(sb));
    }
    return j;
}

enum MHD_Result api_sandbox_get(struct api_request *req)
{
    struct error_record err = { 0 };
    struct store_sandbox sb;
    struct store *store = orch_store_lock(req->server_orch);
    int r = store_sandbox_get(store, req->params[0], &sb, &err);
    orch_store_unlock(req->server_orch);
    if (r >= 0 && sb.state == STORE_SANDBOX_KILLED) {
        store_sandbox_release(&sb);
        r = error_set(&err, ENOENT, "sandbox %s not found", req->params[0]);
    }
    if (r < 0)
        return api_queue_failure(req, r, &err);
    json_t *j = listed_json(&sb, true);
    store_sandbox_release(&sb);
    enum MHD_Result ret = http_queue_json(req->conn, MHD_HTTP_OK, j);
    json_decref(j);
    return ret;
}

#define MAX_FILTER_PAIRS 32

struct list_ctx {
    json_t *items;
    const char *keys[MAX_FILTER_PAIRS];
    const char *values[MAX_FILTER_PAIRS];
    size_t n_pairs;
};

static int take_if_matches(const struct store_sandbox *sb, void *userdata)
{
    struct list_ctx *c = userdata;
    json_t *m = json_loads(sb->metadata_json ? sb->metadata_json : "{}", 0, NULL);
    bool ok = true;
    for (size_t i = 0; ok && i < c->n_pairs; i++) {
        const char *v = json_string_value(json_object_get(m, c->keys[i]));
        ok = v && streq(v, c->values[i]);
    }
    json_decref(m);
    if (!ok)
        return 0;
    json_array_append_new(c->items, listed_json(sb, false));
    return 1;
}

/* Decodes `metadata` as infra does (§2.5): the parameter (already decoded once by MHD) is
 * unescaped again, split on '&' and '=', and each key and value unescaped. Pairs point into
 * buf, which the caller owns. */
static int parse_metadata_filter(char *buf, struct list_ctx *c, struct error_record *err)
{
    MHD_http_unescape(buf);
    char *save = NULL;
    for (char *pair = strtok_r(buf, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(pair, '=');
        if (!eq || strchr(eq + 1, '='))
            return error_set(err, EINVAL, "invalid metadata filter '%s': want key=value pairs joined by &",
                             pair);
        if (c->n_pairs == MAX_FILTER_PAIRS)
            return error_set(err, EINVAL, "at most %d metadata filters", MAX_FILTER_PAIRS);
        *eq = '\0';
        MHD_http_unescape(pair);
        MHD_http_unescape(eq + 1);
        c->keys[c->n_pairs] = pair;
        c->values[c->n_pairs] = eq + 1;
        c->n_pairs++;
    }
    return 0;
}

static int parse_states(const char *s, unsigned *ret, struct error_record *err)
{
    *ret = 0;
    char buf[128];
    if (str_copy(buf, sizeof(buf), s) < 0)
        return error_set(err, EINVAL, "invalid state filter");
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int st = store_sandbox_state_from_string(t);
        if (st < 0 || st == STORE_SANDBOX_KILLED)
            return error_set(err, EINVAL, "invalid state '%s' (want running or paused)", t);
        *ret |= 1u << st;
    }
    if (!*ret)
        return error_set(err, EINVAL, "invalid state filter");
    return 0;
}

static enum MHD_Result list(struct api_request *req, bool v2)
{
    struct error_record err = { 0 };
    struct list_ctx c = { .items = json_array() };
    struct store_sandbox_query q = { .states = 1u << STORE_SANDBOX_RUNNING };
    unsigned limit = LIST_MAX_LIMIT;
    char *meta_buf = NULL;
    int r = 0;

    const char *meta = http_query(req->conn, "metadata");
    if (meta) {
        meta_buf = strdup(meta);
        if (!meta_buf)
            abort();
        r = parse_metadata_filter(meta_buf, &c, &err);
    }
    if (v2 && r >= 0) {
        q.states |= 1u << STORE_SANDBOX_PAUSED;
        const char *state = http_query(req->conn, "state");
        if (state)
            r = parse_states(state, &q.states, &err);
        const char *order = http_query(req->conn, "order");
        if (r >= 0 && order) {
            if (streq(order, "asc"))
                q.ascending = true;
            else if (!streq(order, "desc"))
                r = error_set(&err, EINVAL, "order must be asc or desc");
        }
        const char *lim = http_query(req->conn, "limit");
        limit = LIST_DEFAULT_LIMIT;
        uint32_t n;
        if (r >= 0 && lim && (parse_uint32(lim, &n) < 0 || n == 0 || n > LIST_MAX_LIMIT))
            r = error_set(&err, EINVAL, "limit must be from 1 to %d", LIST_MAX_LIMIT);
        else if (lim)
            limit = n;
        const char *after = http_query(req->conn, "startedAfter");
        if (r >= 0 && after) {
            struct tm tm = { 0 };
            const char *end = strptime(after, "%Y-%m-%dT%H:%M:%S", &tm);
            if (!end)
                r = error_set(&err, EINVAL, "startedAfter must be an RFC 3339 time");
            else
                q.started_after_ms = (int64_t)timegm(&tm) * 1000;
        }
        q.template_id = http_query(req->conn, "template");
        q.cursor = http_query(req->conn, "nextToken");
        if (q.cursor && !*q.cursor)
            q.cursor = NULL;
    }

    char next[STORE_CURSOR_MAX] = "";
    if (r >= 0) {
        struct store *store = orch_store_lock(req->server_orch);
        r = store_sandbox_list(store, &q, limit, take_if_matches, &c, next, &err);
        orch_store_unlock(req->server_orch);
    }
    enum MHD_Result ret;
    if (r < 0) {
        ret = api_queue_failure(req, r, &err);
    } else {
        bool more = v2 && next[0];
        ret =
            http_queue_json_with_header(req->conn, MHD_HTTP_OK, c.items, more ? "X-Next-Token" : NULL, next);
    }
    free(meta_buf);
    json_decref(c.items);
    return ret;
}

enum MHD_Result api_sandbox_list_v1(struct api_request *req)
{
    return list(req, false);
}

enum MHD_Result api_sandbox_list_v2(struct api_request *req)
{
    return list(req, true);
}

static json_t *metric_json(int64_t at, double cpu_pct, uint64_t mem, uint64_t disk,
                           const struct orch_limits *lim)
{
    char ts[32];
    format_rfc3339((time_t)at, ts, sizeof(ts));
    /* The page cache is not reported apart from used memory (memCache 0). */
    json_t *m =
        json_pack("{s:s, s:I, s:i, s:f, s:I, s:I, s:I, s:I, s:I}", "timestamp", ts, "timestampUnix",
                  (json_int_t)at, "cpuCount", (int)lim->cpu_count, "cpuUsedPct", cpu_pct, "memUsed",
                  (json_int_t)mem, "memTotal", (json_int_t)lim->memory_mb << 20, "memCache", (json_int_t)0,
                  "diskUsed", (json_int_t)disk, "diskTotal", (json_int_t)lim->disk_mb << 20);
    if (!m)
        abort();
    return m;
}

static int add_metric(const struct orch_metric_sample *x, const struct orch_limits *lim, void *userdata)
{
    json_array_append_new(userdata, metric_json(x->at, x->cpu_pct, x->memory_bytes, x->disk_bytes, lim));
    return 0;
}

static int query_time(struct api_request *req, const char *key, int64_t *ret, struct error_record *err)
{
    const char *v = http_query(req->conn, key);
    *ret = 0;
    if (v && *v && parse_int64(v, ret) < 0)
        return error_set(err, EINVAL, "%s must be a unix time in seconds", key);
    return 0;
}

/* The sandbox's usage every 5 s within start..end (unix seconds, the last hour kept), oldest
 * first, and, when the range reaches now, a sample taken now. */
enum MHD_Result api_sandbox_metrics(struct api_request *req)
{
    struct error_record err = { 0 };
    int64_t start, end;
    int r = query_time(req, "start", &start, &err);
    if (r >= 0)
        r = query_time(req, "end", &end, &err);
    json_t *series = json_array();
    if (r >= 0)
        r = orch_sandbox_metrics(req->server_orch, req->params[0], start, end, add_metric, series, &err);
    time_t now = time(NULL);
    if (r >= 0 && (end <= 0 || end >= now)) {
        struct runtime_stats st;
        struct orch_limits lim;
        double cpu_pct;
        struct error_record e2 = { 0 };
        /* A sandbox paused to disk has no current usage: its history is all there is. */
        if (orch_sandbox_stats(req->server_orch, req->params[0], &st, &lim, &cpu_pct, &e2) >= 0)
            json_array_append_new(series, metric_json(now, cpu_pct, st.memory_bytes, st.disk_bytes, &lim));
    }
    if (r < 0) {
        json_decref(series);
        return api_queue_failure(req, r, &err);
    }
    enum MHD_Result ret = http_queue_json(req->conn, MHD_HTTP_OK, series);
    json_decref(series);
    return ret;
}

enum MHD_Result api_sandbox_network(struct api_request *req)
{
    enum MHD_Result ret;
    json_auto_t *body = api_request_json(req, &ret);
    if (!body)
        return ret;
    struct error_record err = { 0 };
    bool allow_internet = true;
    const char *allow[MAX_CIDRS + 1] = { 0 }, *deny[MAX_CIDRS + 1] = { 0 };
    uint16_t https[RUNTIME_HTTPS_PORTS_MAX + 1] = { 0 };
    /* The body is the whole new config: what it leaves out is the default (internet access
     * on, no lists), except httpsPorts, kept unless the body has it (E2B's SDKs send no
     * httpsPorts here: an update would otherwise always drop them). */
    int r = get_bool(body, "allow_internet_access", true, &allow_internet, &err);
    if (r >= 0)
        r = parse_network(body, allow, deny, https, &err);
    if (r >= 0)
        r = orch_sandbox_set_network(req->server_orch, req->params[0], allow_internet, allow, deny,
                                     json_object_get(body, "httpsPorts") ? https : NULL, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    return http_queue_empty(req->conn, MHD_HTTP_NO_CONTENT);
}

/* ---- snapshots and forks ---- */

enum MHD_Result api_sandbox_snapshot(struct api_request *req)
{
    enum MHD_Result mr;
    json_t *body = api_request_json(req, &mr);
    if (!body)
        return mr;
    json_t *name = json_object_get(body, "name");
    if (name && !json_is_string(name) && !json_is_null(name)) {
        json_decref(body);
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "name must be a string");
    }
    char id[STORE_TEMPLATE_ID_MAX + 1];
    struct error_record err = { 0 };
    int r = orch_sandbox_snapshot(req->server_orch, req->params[0], json_string_value(name), false, id, &err);
    json_t *names = json_array();
    if (r >= 0 && json_string_value(name) && *json_string_value(name))
        json_array_append_new(names, json_string(json_string_value(name)));
    json_decref(body);
    if (r < 0) {
        json_decref(names);
        return api_queue_failure(req, r, &err);
    }
    json_t *j = json_pack("{s:s, s:o}", "snapshotID", id, "names", names);
    enum MHD_Result res = http_queue_json(req->conn, MHD_HTTP_CREATED, j);
    json_decref(j);
    return res;
}

enum MHD_Result api_sandbox_fork(struct api_request *req)
{
    enum MHD_Result mr;
    json_t *body = api_request_json(req, &mr);
    if (!body)
        return mr;
    uint32_t timeout = 0, count = 0;
    struct error_record err = { 0 };
    int r = get_uint(body, "timeout", 1, UINT32_MAX, &timeout, &err);
    if (r >= 0)
        r = get_uint(body, "count", 1, 64, &count, &err);
    json_decref(body);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    json_t *results = NULL;
    r = orch_sandbox_fork(req->server_orch, req->params[0], count ? count : 1, timeout, &results, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    enum MHD_Result res = http_queue_json(req->conn, MHD_HTTP_CREATED, results);
    json_decref(results);
    return res;
}
