/* envd's shared state and the services it is built from.
 *
 * envd is the agent inside every sandbox (port 49983): process and filesystem RPC over the
 * Connect protocol, the /files HTTP endpoints, /health, /envs, /metrics and /init. It runs as
 * the sandbox's pid 1 (reaping orphans, supervising its children) or standalone on a host for
 * tests. Invariant: every request runs as a resolved user (Basic auth or the default user);
 * filesystem work is done with that user's fsuid/fsgid/groups on the request's own thread. */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"
#include "envd/connect.h"

#define ENVD_VERSION "0.6.13"
#define ENVD_DEFAULT_PORT 49983

/* Process-wide settings, changed by /init. Read them through the accessors below: they copy
 * under the lock, so a concurrent /init never frees a string a request is using. */
struct envd_settings {
    char *access_token;    /* NULL: no token required */
    char *default_user;    /* run-as user when a request names none */
    char *default_workdir; /* NULL: the user's home */
    json_t *env_vars;      /* object of sandbox-wide env vars (strings) */
};

void envd_settings_init(const char *default_user);
/* Each returns a malloc'd copy (free() it) or NULL. */
char *envd_settings_access_token(void);
char *envd_settings_default_user(void);
char *envd_settings_default_workdir(void);
/* A new reference to a copy of the env vars object. */
json_t *envd_settings_env_vars(void);
/* Applies an /init body. Fields absent from it are left unchanged. Returns 0 or -EINVAL. */
int envd_settings_apply_init(const json_t *body, struct error_record *err);

/* A user a request runs as. */
struct envd_user {
    uid_t uid;
    gid_t gid;
    char name[64];
    char home[512];
    gid_t groups[64];
    int n_groups;
};

/* Looks a user up by name in the (sandbox's) /etc/passwd and /etc/group (envd/passwd.h).
 * Returns 0, -ENOENT for an unknown user, or another -errno. */
int envd_user_lookup(const char *name, struct envd_user *ret, struct error_record *err);

/* The run-as user of an HTTP request: `Authorization: Basic base64("<name>:")`, or the default
 * user when absent. An unknown user or a malformed header is a CONNECT_UNAUTHENTICATED error. */
int envd_request_user(struct MHD_Connection *conn, struct envd_user *ret, struct connect_error *err);

/* Expands a request path as envd does: empty -> default workdir (or home), "~" and "~/x" ->
 * home, relative -> joined to home. Rejects NUL-free paths longer than PATH_MAX and paths with
 * invalid UTF-8. Returns 0 and a malloc'd absolute path (lexically cleaned) or -EINVAL. */
int envd_resolve_path(const struct envd_user *user, const char *path, char **ret, struct error_record *err);

/* Parses an Authorization header value `Basic base64("<name>:<password>")` (scheme case-insensitive)
 * and copies the name into ret_name (size bytes). Returns 0, or -EINVAL when the header is not
 * Basic, not base64, has no ':', an empty or over-long name, or a name with NUL or ':' bytes. */
int envd_parse_basic_auth(const char *header, char *ret_name, size_t size);

/* Lexically cleans an absolute path as Go's filepath.Clean does ("//a/./b/../c/" -> "/a/c").
 * Returns a malloc'd string. */
char *envd_path_clean(const char *path);

/* Switches the calling thread's filesystem identity (fsuid, fsgid, supplementary groups) to
 * user, so that permission checks are the user's own; envd_as_root() switches back. Both act
 * on this thread only (raw syscalls, not glibc's all-thread setxid broadcast). */
int envd_as_user(const struct envd_user *user);
void envd_as_root(void);

/* Service method tables, terminated by an entry with path NULL. */
extern const struct connect_method envd_process_methods[];
extern const struct connect_method envd_filesystem_methods[];

/* The /files endpoints (GET download, POST upload), called by the HTTP server with MHD's
 * access-handler arguments. They check the access token themselves, since a URL signature may
 * stand in for it (e2b-compat 3.8). */
enum MHD_Result envd_files_request(struct MHD_Connection *conn, const char *method, const char *upload_data,
                                   size_t *upload_data_size, void **req_cls);
/* POST /files/compose (e2b-compat 3.8): concatenates source_paths, in order, into destination
 * (replaced whole, only once complete) and deletes the sources, all with the user's own
 * permissions (the body's `username`, else the request's user). Queues the answer: 200
 * {path, name, type}, or 400/401/404/507 JSON. */
enum MHD_Result envd_files_compose(struct MHD_Connection *conn, const char *body, size_t len);

/* Releases what envd_files_request kept in *req_cls (MHD's request-completed callback). */
void envd_files_request_completed(void *req_cls);

/* Checks X-Access-Token against the token set by /init (constant time). True when no token is
 * set or it matches. */
bool envd_request_has_token(struct MHD_Connection *conn);
