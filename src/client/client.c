/* libhutch's client object: settings, error codes and messages, and the HTTP exchanges every
 * other file builds on. One curl easy handle per client, reset between transfers, so that
 * connections to the server are reused. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "client/client-internal.h"
#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define DEFAULT_TIMEOUT_MS 60000
#define CONNECT_TIMEOUT_MS 10000

HUTCH_EXPORT const char *hutch_strerror(enum hutch_code code)
{
    switch (code) {
    case HUTCH_OK:
        return "success";
    case HUTCH_E_INVALID:
        return "invalid argument";
    case HUTCH_E_AUTH:
        return "not authorized";
    case HUTCH_E_NOT_FOUND:
        return "not found";
    case HUTCH_E_CONFLICT:
        return "conflict with the current state";
    case HUTCH_E_UNAVAILABLE:
        return "unavailable";
    case HUTCH_E_TIMEOUT:
        return "timed out";
    case HUTCH_E_SERVER:
        return "server error";
    case HUTCH_E_NETWORK:
        return "network error";
    case HUTCH_E_NOMEM:
        return "out of memory";
    case HUTCH_E_UNSUPPORTED:
        return "not supported by the server";
    case HUTCH_E_LIMIT:
        return "limit reached";
    case HUTCH_E_IO:
        return "local I/O error";
    case HUTCH_E_ABORTED:
        return "aborted";
    }
    return "unknown error";
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *url_dup(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    return xstrndup(url, n);
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

HUTCH_EXPORT struct hutch_client *hutch_client_new(const char *api_url, const char *api_key)
{
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK)
        return NULL;
    CURL *curl = curl_easy_init();
    if (!curl)
        return NULL;
    struct hutch_client *c = xcalloc(1, sizeof(*c));
    c->curl = curl;
    c->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (!api_url || !*api_url)
        api_url = env_nonempty("E2B_API_URL");
    c->api_url = url_dup(api_url ? api_url : HUTCH_DEFAULT_API_URL);
    const char *sandbox_url = env_nonempty("E2B_SANDBOX_URL");
    c->sandbox_url = sandbox_url ? url_dup(sandbox_url) : NULL;
    if (!api_key || !*api_key)
        api_key = env_nonempty("E2B_API_KEY");
    c->api_key = api_key ? xstrdup(api_key) : NULL;
    return c;
}

HUTCH_EXPORT struct hutch_client *hutch_client_dup(const struct hutch_client *client)
{
    if (!client)
        return NULL;
    CURL *curl = curl_easy_init();
    if (!curl)
        return NULL;
    struct hutch_client *c = xcalloc(1, sizeof(*c));
    c->curl = curl;
    c->timeout_ms = client->timeout_ms;
    c->api_url = xstrdup(client->api_url);
    c->sandbox_url = client->sandbox_url ? xstrdup(client->sandbox_url) : NULL;
    c->api_key = client->api_key ? xstrdup(client->api_key) : NULL;
    for (size_t i = 0; i < CLIENT_TOKEN_CACHE; i++)
        if (client->tokens[i].sandbox_id)
            client_token_remember(c, client->tokens[i].sandbox_id, client->tokens[i].token);
    return c;
}

HUTCH_EXPORT void hutch_client_free(struct hutch_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    for (size_t i = 0; i < CLIENT_TOKEN_CACHE; i++) {
        free(c->tokens[i].sandbox_id);
        free(c->tokens[i].token);
    }
    free(c->api_url);
    free(c->sandbox_url);
    free(c->api_key);
    free(c);
}

HUTCH_EXPORT enum hutch_code hutch_client_set_sandbox_url(struct hutch_client *c, const char *url)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    free(c->sandbox_url);
    c->sandbox_url = url && *url ? url_dup(url) : NULL;
    return HUTCH_OK;
}

HUTCH_EXPORT void hutch_client_set_timeout(struct hutch_client *c, unsigned timeout_ms)
{
    if (c)
        c->timeout_ms = timeout_ms;
}

HUTCH_EXPORT const char *hutch_client_api_url(const struct hutch_client *c)
{
    return c ? c->api_url : "";
}

HUTCH_EXPORT const char *hutch_client_sandbox_url(const struct hutch_client *c)
{
    return c ? client_sandbox_base(c) : "";
}

HUTCH_EXPORT const char *hutch_client_last_message(const struct hutch_client *c)
{
    return c ? c->message : "";
}

HUTCH_EXPORT int hutch_client_last_status(const struct hutch_client *c)
{
    return c ? (int)c->last_status : 0;
}

const char *client_sandbox_base(const struct hutch_client *c)
{
    return c->sandbox_url ? c->sandbox_url : c->api_url;
}

void client_begin(struct hutch_client *c)
{
    c->message[0] = '\0';
    c->last_status = 0;
}

enum hutch_code client_fail(struct hutch_client *c, enum hutch_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof(c->message), fmt, ap);
    va_end(ap);
    return code;
}

enum hutch_code client_code_from_status(long status)
{
    switch (status) {
    case 400:
    case 405:
    case 406:
    case 411:
    case 415:
    case 416:
    case 422:
        return HUTCH_E_INVALID;
    case 401:
    case 403:
        return HUTCH_E_AUTH;
    case 404:
    case 410:
        return HUTCH_E_NOT_FOUND;
    case 409:
    case 412:
        return HUTCH_E_CONFLICT;
    case 408:
    case 504:
        return HUTCH_E_TIMEOUT;
    case 413:
    case 429:
    case 507:
        return HUTCH_E_LIMIT;
    case 501:
        return HUTCH_E_UNSUPPORTED;
    case 502:
    case 503:
        return HUTCH_E_UNAVAILABLE;
    default:
        return status >= 400 && status < 500 ? HUTCH_E_INVALID : HUTCH_E_SERVER;
    }
}

enum hutch_code client_code_from_connect(const char *name)
{
    static const struct {
        const char *name;
        enum hutch_code code;
    } map[] = {
        { "invalid_argument", HUTCH_E_INVALID }, { "failed_precondition", HUTCH_E_INVALID },
        { "out_of_range", HUTCH_E_INVALID },     { "unauthenticated", HUTCH_E_AUTH },
        { "permission_denied", HUTCH_E_AUTH },   { "not_found", HUTCH_E_NOT_FOUND },
        { "already_exists", HUTCH_E_CONFLICT },  { "aborted", HUTCH_E_CONFLICT },
        { "resource_exhausted", HUTCH_E_LIMIT }, { "unimplemented", HUTCH_E_UNSUPPORTED },
        { "unavailable", HUTCH_E_UNAVAILABLE },  { "deadline_exceeded", HUTCH_E_TIMEOUT },
        { "canceled", HUTCH_E_TIMEOUT },
    };
    if (name)
        for (size_t i = 0; i < ARRAY_SIZE(map); i++)
            if (streq(name, map[i].name))
                return map[i].code;
    return HUTCH_E_SERVER;
}

enum hutch_code client_code_from_curl(CURLcode r)
{
    switch (r) {
    case CURLE_OK:
        return HUTCH_OK;
    case CURLE_OUT_OF_MEMORY:
        return HUTCH_E_NOMEM;
    case CURLE_OPERATION_TIMEDOUT:
        return HUTCH_E_TIMEOUT;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return HUTCH_E_INVALID;
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_WRITE_ERROR:
        return HUTCH_E_ABORTED;
    case CURLE_READ_ERROR:
        return HUTCH_E_IO;
    default:
        return HUTCH_E_NETWORK;
    }
}

enum hutch_code client_fail_http(struct hutch_client *c, long status, const char *body, size_t len,
                                 const char *what)
{
    enum hutch_code code = client_code_from_status(status);
    json_t *j = len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    const char *msg = NULL;
    if (json_is_object(j)) {
        msg = json_get_string(j, "message");
        /* Connect's error body names its code; it is more precise than the status. */
        const char *connect_code = json_get_string(j, "code");
        if (connect_code)
            code = client_code_from_connect(connect_code);
    }
    if (msg && *msg) {
        client_fail(c, code, "%s", msg);
    } else if (len > 0 && !j && utf8_is_valid(body, len) && !memchr(body, '\0', len)) {
        size_t n = len;
        while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == '\r'))
            n--;
        client_fail(c, code, "%s: HTTP %ld: %.*s", what, status, (int)MIN(n, 512u), body);
    } else {
        client_fail(c, code, "%s: HTTP %ld", what, status);
    }
    json_decref(j);
    return code;
}

char *client_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (!e)
        abort();
    char *r = xstrdup(e);
    curl_free(e);
    return r;
}

void client_header_add(struct curl_slist **headers, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *h = xvasprintf(fmt, ap);
    va_end(ap);
    struct curl_slist *l = curl_slist_append(*headers, h);
    if (!l)
        abort();
    *headers = l;
}

CURL *client_curl(struct hutch_client *c)
{
    curl_easy_reset(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "libhutch/" HUTCH_VERSION);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    return c->curl;
}

static size_t write_to_buf(char *data, size_t size, size_t n, void *userdata)
{
    struct buf *b = userdata;
    if (buf_append(b, data, size * n) < 0)
        return 0;
    return size * n;
}

struct header_capture {
    char *next_token;
};

static size_t capture_header(char *data, size_t size, size_t n, void *userdata)
{
    struct header_capture *h = userdata;
    size_t len = size * n;
    static const char name[] = "x-next-token:";
    if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        const char *v = data + sizeof(name) - 1;
        const char *end = data + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        free(h->next_token);
        h->next_token = end > v ? xstrndup(v, (size_t)(end - v)) : NULL;
    }
    return len;
}

enum hutch_code client_api_request(struct hutch_client *c, const char *method, const char *path,
                                   const json_t *body, long *ret_status, json_t **ret_json,
                                   char **ret_next_token)
{
    if (!c->api_key)
        return client_fail(c, HUTCH_E_AUTH,
                           "no API key: set E2B_API_KEY or pass one (an admin creates keys with `hutch key "
                           "create`)");
    CURL *curl = client_curl(c);
    _cleanup_free_ char *url = xasprintf("%s%s", c->api_url, path);
    _cleanup_slist_ struct curl_slist *headers = NULL;
    client_header_add(&headers, "X-API-KEY: %s", c->api_key);
    client_header_add(&headers, "Accept: application/json");
    client_header_add(&headers, "Expect:");
    _cleanup_free_ char *payload = NULL;
    if (body) {
        size_t len;
        payload = json_dump_compact(body, &len);
        client_header_add(&headers, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (streq(method, "GET"))
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    else if (!body && (streq(method, "POST") || streq(method, "PUT"))) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    struct buf resp;
    buf_init(&resp, CLIENT_MAX_RESPONSE);
    struct header_capture hc = { 0 };
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_to_buf);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, capture_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &hc);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);

    CURLcode r = curl_easy_perform(curl);
    enum hutch_code code = HUTCH_OK;
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    c->last_status = status;
    if (r == CURLE_WRITE_ERROR) {
        code = client_fail(c, HUTCH_E_LIMIT, "%s %s: the answer is larger than %u bytes", method, path,
                           CLIENT_MAX_RESPONSE);
    } else if (r != CURLE_OK) {
        code = client_fail(c, client_code_from_curl(r), "%s: %s", c->api_url,
                           *errbuf ? errbuf : curl_easy_strerror(r));
    } else if (status < 200 || status >= 300) {
        code = client_fail_http(c, status, resp.data, resp.len, path);
    } else {
        json_t *j = NULL;
        if (resp.len > 0) {
            j = json_loadb(resp.data, resp.len, 0, NULL);
            if (!j)
                code = client_fail(c, HUTCH_E_SERVER, "%s %s: the server's answer is not JSON", method, path);
        }
        if (code == HUTCH_OK) {
            if (ret_status)
                *ret_status = status;
            if (ret_json)
                *ret_json = j;
            else
                json_decref(j);
            if (ret_next_token)
                *ret_next_token = TAKE_PTR(hc.next_token);
        }
    }
    free(hc.next_token);
    buf_release(&resp);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    return code;
}

void client_token_remember(struct hutch_client *c, const char *sandbox_id, const char *token)
{
    client_token_forget(c, sandbox_id);
    struct token_entry *e = &c->tokens[c->next_token_slot];
    c->next_token_slot = (c->next_token_slot + 1) % CLIENT_TOKEN_CACHE;
    free(e->sandbox_id);
    free(e->token);
    e->sandbox_id = xstrdup(sandbox_id);
    e->token = token ? xstrdup(token) : NULL;
}

void client_token_forget(struct hutch_client *c, const char *sandbox_id)
{
    for (size_t i = 0; i < CLIENT_TOKEN_CACHE; i++) {
        struct token_entry *e = &c->tokens[i];
        if (e->sandbox_id && streq(e->sandbox_id, sandbox_id)) {
            free(e->sandbox_id);
            free(e->token);
            e->sandbox_id = e->token = NULL;
        }
    }
}

static const struct token_entry *token_lookup(const struct hutch_client *c, const char *sandbox_id)
{
    for (size_t i = 0; i < CLIENT_TOKEN_CACHE; i++)
        if (c->tokens[i].sandbox_id && streq(c->tokens[i].sandbox_id, sandbox_id))
            return &c->tokens[i];
    return NULL;
}

bool client_id_valid(const char *id)
{
    /* Sandbox ids are short and alphanumeric; refusing anything else keeps ids from breaking
     * the paths and headers they go into. */
    if (!id || !*id || strlen(id) > 128)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_'))
            return false;
    return true;
}

enum hutch_code client_envd_headers(struct hutch_client *c, const char *sandbox_id, const char *user,
                                    struct curl_slist **headers)
{
    if (!client_id_valid(sandbox_id))
        return client_fail(c, HUTCH_E_INVALID, "invalid sandbox id '%s'", sandbox_id ? sandbox_id : "(null)");
    const struct token_entry *e = token_lookup(c, sandbox_id);
    if (!e) {
        struct hutch_sandbox_info info = { 0 };
        enum hutch_code code = hutch_sandbox_info(c, sandbox_id, &info);
        if (code != HUTCH_OK)
            return code;
        hutch_sandbox_info_release(&info);
        e = token_lookup(c, sandbox_id);
        assert(e);
    }
    client_header_add(headers, "E2b-Sandbox-Id: %s", sandbox_id);
    client_header_add(headers, "E2b-Sandbox-Port: %d", HUTCH_ENVD_PORT);
    if (e->token)
        client_header_add(headers, "X-Access-Token: %s", e->token);
    if (user) {
        _cleanup_free_ char *cred = xasprintf("%s:", user);
        _cleanup_free_ char *b64 = base64_encode(cred, strlen(cred), true);
        client_header_add(headers, "Authorization: Basic %s", b64);
    }
    return HUTCH_OK;
}

enum hutch_code client_connect_unary(struct hutch_client *c, const char *sandbox_id, const char *path,
                                     const json_t *req, json_t **ret_resp)
{
    _cleanup_slist_ struct curl_slist *headers = NULL;
    enum hutch_code code = client_envd_headers(c, sandbox_id, NULL, &headers);
    if (code != HUTCH_OK)
        return code;
    client_header_add(&headers, "Content-Type: application/json");
    client_header_add(&headers, "Connect-Protocol-Version: 1");
    client_header_add(&headers, "Expect:");
    CURL *curl = client_curl(c);
    _cleanup_free_ char *url = xasprintf("%s%s", client_sandbox_base(c), path);
    size_t len;
    _cleanup_free_ char *payload = json_dump_compact(req, &len);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    struct buf resp;
    buf_init(&resp, CLIENT_MAX_ERROR_BODY);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_to_buf);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode r = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    c->last_status = status;
    if (r == CURLE_WRITE_ERROR)
        code = client_fail(c, HUTCH_E_LIMIT, "%s: the answer is too large", path);
    else if (r != CURLE_OK)
        code = client_fail(c, client_code_from_curl(r), "%s: %s", client_sandbox_base(c),
                           *errbuf ? errbuf : curl_easy_strerror(r));
    else if (status != 200)
        code = client_fail_http(c, status, resp.data, resp.len, path);
    else if (ret_resp) {
        json_t *j = json_loadb(resp.data, resp.len, 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            code = client_fail(c, HUTCH_E_SERVER, "%s: the answer is not a JSON object", path);
        } else {
            *ret_resp = j;
        }
    }
    buf_release(&resp);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    return code;
}

size_t client_upload_read(char *dest, size_t size, size_t n, void *userdata)
{
    struct client_upload *u = userdata;
    for (;;) {
        ssize_t k = read(u->fd, dest, size * n);
        if (k >= 0)
            return (size_t)k;
        if (errno != EINTR) {
            u->read_errno = errno;
            return CURL_READFUNC_ABORT;
        }
    }
}

size_t client_collect_bounded(char *data, size_t size, size_t n, void *userdata)
{
    struct buf *b = userdata;
    buf_append(b, data, MIN(size * n, b->max - b->len));
    return size * n;
}
