/* GET /sandboxes/{id}/logs (v1, what `e2b sandbox logs` calls) and GET /v2/sandboxes/{id}/logs:
 * the output of the sandbox's envd, which logs JSON lines (ts, level, msg, and context). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "common/http-util.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "orchestrator/orchestrator.h"
#include "common/banned.h"

#define LOGS_DEFAULT_LIMIT 1000
#define LOGS_MAX_LIMIT 1000

struct collect {
    json_t *logs;    /* v1 `logs`: {timestamp, line} */
    json_t *entries; /* `logEntries` / v2 `logs`: {timestamp, level, message, fields} */
    const char *level;
    const char *search;
};

static int levels_rank(const char *level)
{
    static const char *const order[] = { "debug", "info", "warn", "error" };
    for (int i = 0; i < 4; i++)
        if (streq(level, order[i]))
            return i;
    return 1;
}

static int collect_line(int64_t at_ms, const char *line, void *userdata)
{
    struct collect *c = userdata;
    char stamp[40];
    struct timespec ts = { .tv_sec = at_ms / 1000, .tv_nsec = (at_ms % 1000) * 1000000 };
    format_rfc3339_ns(&ts, stamp, sizeof(stamp));

    /* A line that is not one of envd's JSON lines (a crash message, say) is still shown. */
    json_t *parsed = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
    const char *level = "info", *message = line, *when = stamp;
    json_t *fields = json_object();
    if (json_is_object(parsed)) {
        level = json_get_string_or(parsed, "level", level);
        message = json_get_string_or(parsed, "msg", message);
        when = json_get_string_or(parsed, "ts", when);
        const char *k;
        json_t *v;
        json_object_foreach (parsed, k, v) {
            if (streq(k, "level") || streq(k, "msg") || streq(k, "ts"))
                continue;
            if (json_is_string(v))
                json_object_set(fields, k, v);
            else {
                char *dumped = json_dump_compact(v, NULL);
                json_object_set_new(fields, k, json_string(dumped));
                free(dumped);
            }
        }
    }
    bool keep =
        (!c->level || levels_rank(level) >= levels_rank(c->level)) && (!c->search || strstr(line, c->search));
    if (keep) {
        if (c->logs)
            json_array_append_new(c->logs, json_pack("{s:s, s:s}", "timestamp", when, "line", line));
        json_array_append_new(c->entries, json_pack("{s:s, s:s, s:s, s:O}", "timestamp", when, "level", level,
                                                    "message", message, "fields", fields));
    }
    json_decref(fields);
    json_decref(parsed);
    return 0;
}

static enum MHD_Result logs(struct api_request *req, bool v2)
{
    struct error_record err = { 0 };
    int64_t since = 0;
    uint32_t limit = LOGS_DEFAULT_LIMIT;
    const char *start = http_query(req->conn, v2 ? "cursor" : "start");
    const char *lim = http_query(req->conn, "limit");
    if (start && (parse_int64(start, &since) < 0 || since < 0))
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "%s must be a time in unix milliseconds",
                                v2 ? "cursor" : "start");
    if (lim && (parse_uint32(lim, &limit) < 0 || limit == 0 || limit > LOGS_MAX_LIMIT))
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "limit must be from 1 to %d",
                                LOGS_MAX_LIMIT);
    struct collect c = { .entries = json_array() };
    if (!v2)
        c.logs = json_array();
    if (v2) {
        const char *dir = http_query(req->conn, "direction");
        if (dir && !streq(dir, "forward")) {
            json_decref(c.entries);
            return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "only direction=forward is supported");
        }
        c.level = http_query(req->conn, "level");
        c.search = http_query(req->conn, "search");
    }
    int r = orch_sandbox_logs(req->server_orch, req->params[0], since, limit, collect_line, &c, &err);
    enum MHD_Result ret;
    if (r < 0) {
        ret = api_queue_failure(req, r, &err);
    } else {
        json_t *body = v2 ? json_pack("{s:O}", "logs", c.entries)
                          : json_pack("{s:O, s:O}", "logs", c.logs, "logEntries", c.entries);
        ret = http_queue_json(req->conn, MHD_HTTP_OK, body);
        json_decref(body);
    }
    json_decref(c.entries);
    json_decref(c.logs);
    return ret;
}

enum MHD_Result api_sandbox_logs_v1(struct api_request *req)
{
    return logs(req, false);
}

enum MHD_Result api_sandbox_logs_v2(struct api_request *req)
{
    return logs(req, true);
}
