/* libhutch: the sandbox endpoints of the control plane (e2b-compat §2): create, list, info,
 * kill, timeout, pause, resume and logs. Answers are parsed into the public structs; each
 * keeps the server's JSON too, so that scripts see every field. */
#include <stdlib.h>
#include <string.h>

#include "client/client-internal.h"
#include "common/cleanup.h"
#include "common/buf.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define MAX_PAGES 10000

static char *dup_member(const json_t *obj, const char *key)
{
    const char *s = json_get_string(obj, key);
    return s ? xstrdup(s) : NULL;
}

static int int_member(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : 0;
}

/* A JSON object of strings as an array of pairs whose strings the array owns. Values that are
 * not strings are kept as their JSON text. */
static struct hutch_kv *kv_from_object(const json_t *obj, size_t *ret_n)
{
    *ret_n = 0;
    if (!json_is_object(obj) || json_object_size(obj) == 0)
        return NULL;
    struct hutch_kv *kv = xcalloc(json_object_size(obj), sizeof(*kv));
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)obj, k, v) {
        kv[n].key = xstrdup(k);
        kv[n].value = json_is_string(v) ? xstrdup(json_string_value(v)) : json_dump_compact(v, NULL);
        n++;
    }
    *ret_n = n;
    return kv;
}

static void kv_free(struct hutch_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)kv[i].key);
        free((char *)kv[i].value);
    }
    free(kv);
}

static void info_from_json(const json_t *j, struct hutch_sandbox_info *info)
{
    memset(info, 0, sizeof(*info));
    info->sandbox_id = dup_member(j, "sandboxID");
    info->template_id = dup_member(j, "templateID");
    info->alias = dup_member(j, "alias");
    info->client_id = dup_member(j, "clientID");
    info->envd_version = dup_member(j, "envdVersion");
    info->envd_access_token = dup_member(j, "envdAccessToken");
    info->state = dup_member(j, "state");
    info->started_at = dup_member(j, "startedAt");
    info->end_at = dup_member(j, "endAt");
    info->cpu_count = int_member(j, "cpuCount");
    info->memory_mb = int_member(j, "memoryMB");
    info->disk_size_mb = int_member(j, "diskSizeMB");
    info->metadata = kv_from_object(json_object_get(j, "metadata"), &info->n_metadata);
    info->json = json_dump_compact(j, NULL);
}

HUTCH_EXPORT void hutch_sandbox_info_release(struct hutch_sandbox_info *info)
{
    if (!info)
        return;
    free(info->sandbox_id);
    free(info->template_id);
    free(info->alias);
    free(info->client_id);
    free(info->envd_version);
    free(info->envd_access_token);
    free(info->state);
    free(info->started_at);
    free(info->end_at);
    kv_free(info->metadata, info->n_metadata);
    free(info->json);
    memset(info, 0, sizeof(*info));
}

HUTCH_EXPORT void hutch_sandbox_info_array_free(struct hutch_sandbox_info *items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++)
        hutch_sandbox_info_release(&items[i]);
    free(items);
}

#define CHECK_ID(c, id)                                                                                      \
    do {                                                                                                     \
        if (!client_id_valid(id))                                                                            \
            return client_fail((c), HUTCH_E_INVALID, "invalid sandbox id '%s'", (id) ? (id) : "(null)");     \
    } while (0)

static json_t *kv_to_object(const struct hutch_kv *kv, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        if (kv[i].key && kv[i].value)
            json_object_set_new(o, kv[i].key, json_string(kv[i].value));
    return o;
}

static bool kv_valid(const struct hutch_kv *kv, size_t n)
{
    if (n > 0 && !kv)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!kv[i].key || !*kv[i].key || !kv[i].value || !utf8_is_valid(kv[i].key, strlen(kv[i].key)) ||
            !utf8_is_valid(kv[i].value, strlen(kv[i].value)))
            return false;
    return true;
}

HUTCH_EXPORT enum hutch_code hutch_sandbox_create(struct hutch_client *c,
                                                  const struct hutch_sandbox_create_options *opts,
                                                  struct hutch_sandbox_info *ret_info)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    struct hutch_sandbox_create_options none = { 0 };
    if (!opts)
        opts = &none;
    if (!kv_valid(opts->env, opts->n_env) || !kv_valid(opts->metadata, opts->n_metadata))
        return client_fail(c, HUTCH_E_INVALID, "env and metadata need non-empty UTF-8 keys and UTF-8 values");
    _cleanup_json_ json_t *body = json_pack(
        "{s:s}", "templateID", opts->template_id && *opts->template_id ? opts->template_id : "base");
    if (!body || !json_is_string(json_object_get(body, "templateID")))
        return client_fail(c, HUTCH_E_INVALID, "the template id is not valid UTF-8");
    if (opts->timeout_s)
        json_object_set_new(body, "timeout", json_integer(opts->timeout_s));
    if (opts->n_env)
        json_object_set_new(body, "envVars", kv_to_object(opts->env, opts->n_env));
    if (opts->n_metadata)
        json_object_set_new(body, "metadata", kv_to_object(opts->metadata, opts->n_metadata));
    if (opts->auto_pause)
        json_object_set_new(body, "autoPause", json_true());
    _cleanup_json_ json_t *resp = NULL;
    enum hutch_code code = client_api_request(c, "POST", "/v2/sandboxes", body, NULL, &resp, NULL);
    if (code != HUTCH_OK)
        return code;
    if (!json_is_object(resp) || !json_get_string(resp, "sandboxID"))
        return client_fail(c, HUTCH_E_SERVER, "create: the answer has no sandboxID");
    client_token_remember(c, json_get_string(resp, "sandboxID"), json_get_string(resp, "envdAccessToken"));
    if (ret_info)
        info_from_json(resp, ret_info);
    return HUTCH_OK;
}

/* The metadata filter, encoded as E2B's SDK does (e2b-compat §2.5): key=value pairs with each
 * side escaped, joined by '&', and the whole escaped again as one query value. */
static char *metadata_query(const struct hutch_kv *kv, size_t n)
{
    struct buf inner;
    buf_init(&inner, 1u << 20);
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *k = client_escape(kv[i].key);
        _cleanup_free_ char *v = client_escape(kv[i].value);
        buf_printf(&inner, "%s%s=%s", i ? "&" : "", k, v);
    }
    char *q = client_escape(inner.data);
    buf_release(&inner);
    return q;
}

HUTCH_EXPORT enum hutch_code hutch_sandbox_list(struct hutch_client *c,
                                                const struct hutch_sandbox_list_options *opts,
                                                struct hutch_sandbox_info **ret_items, size_t *ret_n)
{
    if (!c || !ret_items || !ret_n)
        return HUTCH_E_INVALID;
    client_begin(c);
    struct hutch_sandbox_list_options none = { 0 };
    if (!opts)
        opts = &none;
    if (!kv_valid(opts->metadata, opts->n_metadata))
        return client_fail(c, HUTCH_E_INVALID, "metadata filters need non-empty keys and values");
    struct buf q;
    buf_init(&q, 4u << 20);
    buf_append_str(&q, "/v2/sandboxes?limit=100");
    if (opts->state && *opts->state) {
        _cleanup_free_ char *s = client_escape(opts->state);
        buf_printf(&q, "&state=%s", s);
    }
    if (opts->n_metadata) {
        _cleanup_free_ char *m = metadata_query(opts->metadata, opts->n_metadata);
        buf_printf(&q, "&metadata=%s", m);
    }
    if (opts->template_id && *opts->template_id) {
        _cleanup_free_ char *t = client_escape(opts->template_id);
        buf_printf(&q, "&template=%s", t);
    }
    size_t base_len = q.len;

    struct hutch_sandbox_info *items = NULL;
    size_t n = 0;
    enum hutch_code code = HUTCH_OK;
    _cleanup_free_ char *next = NULL;
    for (int page = 0; page < MAX_PAGES; page++) {
        if (next) {
            _cleanup_free_ char *t = client_escape(next);
            buf_printf(&q, "&nextToken=%s", t);
        }
        _cleanup_json_ json_t *resp = NULL;
        free(TAKE_PTR(next));
        code = client_api_request(c, "GET", q.data, NULL, NULL, &resp, &next);
        q.len = base_len;
        q.data[q.len] = '\0';
        if (code != HUTCH_OK)
            break;
        if (!json_is_array(resp)) {
            code = client_fail(c, HUTCH_E_SERVER, "list: the answer is not a JSON array");
            break;
        }
        size_t i;
        json_t *item;
        items = xreallocarray(items, n + json_array_size(resp), sizeof(*items));
        json_array_foreach (resp, i, item)
            if (json_is_object(item))
                info_from_json(item, &items[n++]);
        if (!next || !*next)
            break;
    }
    buf_release(&q);
    if (code != HUTCH_OK) {
        hutch_sandbox_info_array_free(items, n);
        return code;
    }
    if (n == 0) {
        free(items);
        items = NULL;
    }
    *ret_items = items;
    *ret_n = n;
    return HUTCH_OK;
}

HUTCH_EXPORT enum hutch_code hutch_sandbox_info(struct hutch_client *c, const char *sandbox_id,
                                                struct hutch_sandbox_info *ret_info)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    CHECK_ID(c, sandbox_id);
    _cleanup_free_ char *path = xasprintf("/sandboxes/%s", sandbox_id);
    _cleanup_json_ json_t *resp = NULL;
    enum hutch_code code = client_api_request(c, "GET", path, NULL, NULL, &resp, NULL);
    if (code != HUTCH_OK)
        return code;
    if (!json_is_object(resp))
        return client_fail(c, HUTCH_E_SERVER, "info: the answer is not a JSON object");
    client_token_remember(c, sandbox_id, json_get_string(resp, "envdAccessToken"));
    if (ret_info)
        info_from_json(resp, ret_info);
    return HUTCH_OK;
}

HUTCH_EXPORT enum hutch_code hutch_sandbox_kill(struct hutch_client *c, const char *sandbox_id)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    CHECK_ID(c, sandbox_id);
    _cleanup_free_ char *path = xasprintf("/sandboxes/%s", sandbox_id);
    enum hutch_code code = client_api_request(c, "DELETE", path, NULL, NULL, NULL, NULL);
    if (code == HUTCH_OK || code == HUTCH_E_NOT_FOUND)
        client_token_forget(c, sandbox_id);
    return code;
}

HUTCH_EXPORT enum hutch_code hutch_sandbox_set_timeout(struct hutch_client *c, const char *sandbox_id,
                                                       unsigned timeout_s)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    CHECK_ID(c, sandbox_id);
    if (timeout_s == 0)
        return client_fail(c, HUTCH_E_INVALID, "the timeout must be at least 1 second");
    _cleanup_free_ char *path = xasprintf("/sandboxes/%s/timeout", sandbox_id);
    _cleanup_json_ json_t *body = json_pack("{s:I}", "timeout", (json_int_t)timeout_s);
    return client_api_request(c, "POST", path, body, NULL, NULL, NULL);
}

HUTCH_EXPORT enum hutch_code hutch_sandbox_pause(struct hutch_client *c, const char *sandbox_id)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    CHECK_ID(c, sandbox_id);
    _cleanup_free_ char *path = xasprintf("/sandboxes/%s/pause", sandbox_id);
    _cleanup_json_ json_t *body = json_object();
    return client_api_request(c, "POST", path, body, NULL, NULL, NULL);
}

HUTCH_EXPORT enum hutch_code hutch_sandbox_resume(struct hutch_client *c, const char *sandbox_id,
                                                  unsigned timeout_s)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    CHECK_ID(c, sandbox_id);
    _cleanup_free_ char *path = xasprintf("/sandboxes/%s/resume", sandbox_id);
    _cleanup_json_ json_t *body = json_object();
    if (timeout_s)
        json_object_set_new(body, "timeout", json_integer(timeout_s));
    return client_api_request(c, "POST", path, body, NULL, NULL, NULL);
}

HUTCH_EXPORT void hutch_log_entry_array_free(struct hutch_log_entry *entries, size_t n)
{
    if (!entries)
        return;
    for (size_t i = 0; i < n; i++) {
        free(entries[i].timestamp);
        free(entries[i].level);
        free(entries[i].message);
        free(entries[i].line);
        kv_free(entries[i].fields, entries[i].n_fields);
    }
    free(entries);
}

HUTCH_EXPORT enum hutch_code hutch_sandbox_logs(struct hutch_client *c, const char *sandbox_id,
                                                int64_t start_ms, unsigned limit,
                                                struct hutch_log_entry **ret_entries, size_t *ret_n)
{
    if (!c || !ret_entries || !ret_n)
        return HUTCH_E_INVALID;
    client_begin(c);
    CHECK_ID(c, sandbox_id);
    if (start_ms < 0)
        return client_fail(c, HUTCH_E_INVALID, "the start time must not be negative");
    struct buf path;
    buf_init(&path, 4096);
    buf_printf(&path, "/sandboxes/%s/logs?start=%lld", sandbox_id, (long long)start_ms);
    if (limit)
        buf_printf(&path, "&limit=%u", limit);
    _cleanup_json_ json_t *resp = NULL;
    enum hutch_code code = client_api_request(c, "GET", path.data, NULL, NULL, &resp, NULL);
    buf_release(&path);
    if (code != HUTCH_OK)
        return code;
    json_t *entries = json_object_get(resp, "logEntries");
    json_t *lines = json_object_get(resp, "logs");
    if (!json_is_array(entries) && !json_is_array(lines))
        return client_fail(c, HUTCH_E_SERVER, "logs: the answer has neither logs nor logEntries");
    /* logEntries is the structured form of logs, entry for entry; an older server sends only
     * logs. */
    bool structured = json_is_array(entries);
    size_t n = structured ? json_array_size(entries) : json_array_size(lines);
    bool paired = json_is_array(lines) && json_array_size(lines) == n;
    struct hutch_log_entry *out = n ? xcalloc(n, sizeof(*out)) : NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *e = structured ? json_array_get(entries, i) : NULL;
        json_t *l = paired ? json_array_get(lines, i) : NULL;
        out[i].timestamp = dup_member(e ? e : l, "timestamp");
        out[i].level = e ? dup_member(e, "level") : NULL;
        out[i].message = e ? dup_member(e, "message") : dup_member(l, "line");
        out[i].line = l ? dup_member(l, "line") : NULL;
        if (e)
            out[i].fields = kv_from_object(json_object_get(e, "fields"), &out[i].n_fields);
        if (!out[i].timestamp)
            out[i].timestamp = xstrdup("");
        if (!out[i].level)
            out[i].level = xstrdup("info");
        if (!out[i].message)
            out[i].message = xstrdup(out[i].line ? out[i].line : "");
        if (!out[i].line)
            out[i].line = xstrdup(out[i].message);
    }
    *ret_entries = out;
    *ret_n = n;
    return HUTCH_OK;
}
