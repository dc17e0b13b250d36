/* What the files of libhutch share: the client object, its error reporting, and one HTTP
 * exchange over the client's reused curl handle (so that connections are kept alive).
 *
 * Invariant: every public entry point starts with client_begin(), which clears the last
 * message, and every failure goes through client_fail() or a client_http_*() call that
 * records the server's message; so hutch_client_last_message() always describes the latest
 * call. */
#pragma once

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hutch/hutch.h"
#include "common/buf.h"
#include "common/macro.h"

#define CLIENT_MESSAGE_MAX 1024
/* Bounds on what a server may make the client hold: control-plane answers (a list of many
 * sandboxes) and error bodies. */
#define CLIENT_MAX_RESPONSE (64u << 20)
#define CLIENT_MAX_ERROR_BODY (64u << 10)
#define CLIENT_TOKEN_CACHE 16

struct token_entry {
    char *sandbox_id;
    char *token; /* NULL: the sandbox has no access token */
};

struct hutch_client {
    char *api_url;     /* without a trailing slash */
    char *sandbox_url; /* without a trailing slash; NULL: api_url */
    char *api_key;     /* NULL when none */
    unsigned timeout_ms;
    CURL *curl;
    long last_status;
    char message[CLIENT_MESSAGE_MAX];
    struct token_entry tokens[CLIENT_TOKEN_CACHE];
    size_t next_token_slot;
};

/* Clears the last message and status at the start of a public call. */
void client_begin(struct hutch_client *c);

/* Records a formatted message and returns code. */
enum hutch_code client_fail(struct hutch_client *c, enum hutch_code code, const char *fmt, ...)
    _printf_(3, 4);

/* The code of an HTTP error status. */
enum hutch_code client_code_from_status(long status);
/* The code of a Connect error code name ("not_found"); HUTCH_E_SERVER when unknown. */
enum hutch_code client_code_from_connect(const char *name);
/* The code of a failed curl transfer. */
enum hutch_code client_code_from_curl(CURLcode r);

/* Records the failure of an HTTP error response: the message of a JSON body
 * ({"code", "message"} of the API and envd, Connect's {"code": "not_found", "message"}), else
 * the body's text, else the status. Returns the code. */
enum hutch_code client_fail_http(struct hutch_client *c, long status, const char *body, size_t len,
                                 const char *what);

/* True for a plausible sandbox id: 1..128 letters, digits, '-' and '_'. */
bool client_id_valid(const char *id);

/* The sandbox-traffic base URL. */
const char *client_sandbox_base(const struct hutch_client *c);

/* Percent-encodes s for a URL path segment or query value (malloc'd). */
char *client_escape(const char *s);

/* A control-plane request: method and path (joined to the API URL, query included), an
 * optional JSON body. On a 2xx answer returns HUTCH_OK with the status in *ret_status and the
 * parsed body (or NULL when empty) in *ret_json, and X-Next-Token's value (malloc'd, NULL
 * when absent) in *ret_next_token when that is not NULL. Any other answer is a failure with
 * the server's message recorded. Needs an API key. */
enum hutch_code client_api_request(struct hutch_client *c, const char *method, const char *path,
                                   const json_t *body, long *ret_status, json_t **ret_json,
                                   char **ret_next_token);

/* Resets the client's curl handle for a new transfer and sets what every transfer shares
 * (connect timeout, no signals, error buffer). */
CURL *client_curl(struct hutch_client *c);

/* The envd headers for sandbox_id (HUTCH_E_INVALID for a malformed id): routing headers, the access token
 * (fetched with GET /sandboxes/{id} unless cached), and Basic auth for user when not NULL. Appends to
 * *headers. */
enum hutch_code client_envd_headers(struct hutch_client *c, const char *sandbox_id, const char *user,
                                    struct curl_slist **headers);

/* Remembers the access token of a sandbox (token NULL: it has none), or forgets it. */
void client_token_remember(struct hutch_client *c, const char *sandbox_id, const char *token);
void client_token_forget(struct hutch_client *c, const char *sandbox_id);

/* Appends a header built from a format to the list; aborts on OOM. */
void client_header_add(struct curl_slist **headers, const char *fmt, ...) _printf_(2, 3);

/* curl callbacks shared by uploads: the request body read from an fd (CURLOPT_READDATA a struct
 * client_upload; a read error is kept in read_errno and aborts the transfer), and an answer
 * collected into a struct buf up to its maximum, the rest dropped (CURLOPT_WRITEDATA the buf;
 * for error bodies, which are only ever shown). */
struct client_upload {
    int fd;
    int read_errno;
};
size_t client_upload_read(char *dest, size_t size, size_t n, void *userdata);
size_t client_collect_bounded(char *data, size_t size, size_t n, void *userdata);

/* A unary Connect call to envd (JSON codec): POST sandbox_url + path with body req. On
 * success returns HUTCH_OK and, when ret_resp is not NULL, the response object. */
enum hutch_code client_connect_unary(struct hutch_client *c, const char *sandbox_id, const char *path,
                                     const json_t *req, json_t **ret_resp);

/* Connect envelopes (e2b-compat §3.3): 1 flags byte (0x01 compressed, 0x02 end of stream),
 * a 4-byte big-endian length, the payload. The reader buffers one envelope at a time. */
#define ENVELOPE_HEADER 5
#define ENVELOPE_MAX (8u << 20)

struct envelope_reader {
    struct buf buf;
};

/* Called for each complete envelope; a negative return stops envelope_feed() with it. */
typedef int (*envelope_cb)(void *userdata, uint8_t flags, const char *payload, size_t len);

void envelope_reader_init(struct envelope_reader *r);
void envelope_reader_release(struct envelope_reader *r);
/* Consumes len bytes of a stream, calling cb for each envelope they complete. Returns 0,
 * -EMSGSIZE for an envelope longer than ENVELOPE_MAX, or cb's negative result. */
int envelope_feed(struct envelope_reader *r, const char *data, size_t len, envelope_cb cb, void *userdata);
/* True when no partial envelope is buffered. */
bool envelope_reader_idle(const struct envelope_reader *r);

static inline void curl_slist_freep(struct curl_slist **l)
{
    curl_slist_free_all(*l);
}
#define _cleanup_slist_ __attribute__((cleanup(curl_slist_freep)))
