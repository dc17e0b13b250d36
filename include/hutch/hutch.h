/* libhutch: the C client library of hutch, the self-hosted sandbox platform that speaks E2B's
 * wire protocols. It talks to `hutch serve` (or any E2B-compatible control plane) over HTTP:
 * the REST API for sandboxes, and envd's Connect protocol and /files endpoint, through the
 * gateway, for processes and files inside a sandbox.
 *
 * Conventions of this header:
 * - Every function that can fail returns an enum hutch_code: HUTCH_OK (0) on success, a
 *   stable non-zero code otherwise. hutch_strerror() names a code; after a failure,
 *   hutch_client_last_message() holds the detail, with the server's own message when the
 *   server sent one (as curl's error buffer does).
 * - Output parameters are named ret_*, and are written only on success.
 * - Strings in results are owned by the result and freed by its *_release() or *_free()
 *   function; strings passed in are borrowed for the duration of the call.
 * - Every call blocks until its request completes (or, for hutch_exec, until the process ends).
 *
 * Thread compatibility: a struct hutch_client is not thread-safe; use one client from one
 * thread at a time. Distinct clients may be used concurrently from different threads
 * (hutch_client_dup() gives a second client with the same settings, e.g. to send input to a
 * process from one thread while another thread runs hutch_exec()). The library keeps no
 * global state besides libcurl's one-time global initialisation, which the first
 * hutch_client_new() performs.
 *
 * ABI: the numeric values of enum hutch_code never change. Until version 1.0, option and
 * result structs may gain fields at their end: zero-initialise option structs
 * (`struct hutch_exec_options o = { 0 };`) and set only the fields you need. */
#ifndef HUTCH_HUTCH_H
#define HUTCH_HUTCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HUTCH_EXPORT __attribute__((visibility("default")))
#else
#define HUTCH_EXPORT
#endif

/* The port of envd, the agent inside every sandbox. */
#define HUTCH_ENVD_PORT 49983
/* Where hutch_client_new() points when neither an argument nor E2B_API_URL says otherwise. */
#define HUTCH_DEFAULT_API_URL "http://127.0.0.1:3000"

/* Result codes. Stable: values are never renumbered or reused. */
enum hutch_code {
    HUTCH_OK = 0,
    HUTCH_E_INVALID = 1,      /* a bad argument, or the server refused the request (400) */
    HUTCH_E_AUTH = 2,         /* no API key, or the key or access token was refused (401, 403) */
    HUTCH_E_NOT_FOUND = 3,    /* no such sandbox, process, file or template (404) */
    HUTCH_E_CONFLICT = 4,     /* the state does not allow it, e.g. already paused (409) */
    HUTCH_E_UNAVAILABLE = 5,  /* the sandbox is not running, or the server is busy (502, 503) */
    HUTCH_E_TIMEOUT = 6,      /* a deadline passed (504, a process timeout, a client timeout) */
    HUTCH_E_SERVER = 7,       /* the server failed (500) or answered something unexpected */
    HUTCH_E_NETWORK = 8,      /* no connection, or it broke mid-request */
    HUTCH_E_NOMEM = 9,        /* out of memory */
    HUTCH_E_UNSUPPORTED = 10, /* the server does not implement this (501) */
    HUTCH_E_LIMIT = 11,       /* a limit was reached: rate, size, quota (413, 429, 507) */
    HUTCH_E_IO = 12,          /* a local file could not be read or written */
    HUTCH_E_ABORTED = 13,     /* a callback asked to stop */
};

/* A short description of code ("not found"); never NULL, also for unknown values. */
HUTCH_EXPORT const char *hutch_strerror(enum hutch_code code);

/* A key-value pair, used for environment variables and metadata. */
struct hutch_kv {
    const char *key;
    const char *value;
};

/* ---- client ---- */

struct hutch_client;

/* Creates a client. api_url: the control plane's base URL; NULL means $E2B_API_URL, else
 * HUTCH_DEFAULT_API_URL. api_key: sent as X-API-KEY; NULL means $E2B_API_KEY; when there is
 * none, every API call fails with HUTCH_E_AUTH without a request. Sandbox traffic (processes,
 * files) goes to $E2B_SANDBOX_URL when set, else to the API URL (hutch serves both on one
 * port); see hutch_client_set_sandbox_url(). Returns NULL only when out of memory or when
 * libcurl cannot be initialised. Free with hutch_client_free(). */
HUTCH_EXPORT struct hutch_client *hutch_client_new(const char *api_url, const char *api_key);

/* A new client with the same URLs, key, timeout and cached sandbox access tokens, for use from
 * another thread. NULL when out of memory. */
HUTCH_EXPORT struct hutch_client *hutch_client_dup(const struct hutch_client *client);

/* Frees the client and closes its connections. Accepts NULL. */
HUTCH_EXPORT void hutch_client_free(struct hutch_client *client);

/* Overrides the base URL of sandbox traffic (NULL restores the default above). */
HUTCH_EXPORT enum hutch_code hutch_client_set_sandbox_url(struct hutch_client *client, const char *url);

/* Sets the limit on each control-plane request and each unary process call (input, signal,
 * resize), in milliseconds (default 60000; 0: no limit). Process streams and file transfers
 * have no overall limit (see hutch_exec_options.timeout_ms); they fail with HUTCH_E_TIMEOUT
 * when nothing at all arrives for two minutes (a live stream gets keepalives). */
HUTCH_EXPORT void hutch_client_set_timeout(struct hutch_client *client, unsigned timeout_ms);

/* The base URLs in use (owned by the client, valid until the next set_* call or free). */
HUTCH_EXPORT const char *hutch_client_api_url(const struct hutch_client *client);
HUTCH_EXPORT const char *hutch_client_sandbox_url(const struct hutch_client *client);

/* A human-readable description of the client's last failure: the server's message when it
 * sent one ("sandbox 'x' not found"), else what went wrong locally. "" after a success. Owned
 * by the client, valid until its next call. Never NULL. */
HUTCH_EXPORT const char *hutch_client_last_message(const struct hutch_client *client);

/* The HTTP status of the last response (0 when none arrived). */
HUTCH_EXPORT int hutch_client_last_status(const struct hutch_client *client);

/* ---- sandboxes ---- */

/* What the server says about a sandbox. Fields the answer lacks are NULL or 0: create's answer
 * has the ids, envd version and access token but no state, times or resources. */
struct hutch_sandbox_info {
    char *sandbox_id;
    char *template_id;
    char *alias;     /* template alias, or NULL */
    char *client_id; /* deprecated by E2B, always present */
    char *envd_version;
    char *envd_access_token; /* NULL when the sandbox has none (never in a list) */
    char *state;             /* "running" or "paused" */
    char *started_at;        /* RFC 3339 */
    char *end_at;            /* RFC 3339: when the timeout kills (or pauses) it */
    int cpu_count;
    int memory_mb;
    int disk_size_mb;
    struct hutch_kv *metadata; /* n_metadata pairs; strings owned by this struct */
    size_t n_metadata;
    char *json; /* the object exactly as the server sent it (compact JSON), for scripts */
};

/* Frees what info holds (not info itself) and zeroes it. Accepts NULL and a zeroed struct. */
HUTCH_EXPORT void hutch_sandbox_info_release(struct hutch_sandbox_info *info);
/* Releases n entries and frees the array (as returned by hutch_sandbox_list()). Accepts NULL. */
HUTCH_EXPORT void hutch_sandbox_info_array_free(struct hutch_sandbox_info *items, size_t n);

struct hutch_sandbox_create_options {
    const char *template_id;    /* NULL: "base" */
    unsigned timeout_s;         /* seconds until it is killed; 0: the server's default (300) */
    const struct hutch_kv *env; /* sandbox-wide environment variables, n_env of them */
    size_t n_env;
    const struct hutch_kv *metadata; /* n_metadata of them */
    size_t n_metadata;
    bool auto_pause; /* pause instead of kill at the timeout (where the server supports it) */
};

/* Creates a sandbox (POST /v2/sandboxes) and waits until it runs. opts may be NULL (all
 * defaults). On success fills *ret_info (release it with hutch_sandbox_info_release()); its
 * access token is also remembered by the client for later process and file calls. */
HUTCH_EXPORT enum hutch_code hutch_sandbox_create(struct hutch_client *client,
                                                  const struct hutch_sandbox_create_options *opts,
                                                  struct hutch_sandbox_info *ret_info);

struct hutch_sandbox_list_options {
    const char *state;               /* "running", "paused" or "running,paused"; NULL: both */
    const struct hutch_kv *metadata; /* only sandboxes with all these pairs */
    size_t n_metadata;
    const char *template_id; /* NULL: any */
};

/* Lists sandboxes (GET /v2/sandboxes), following pagination until the end, newest first.
 * opts may be NULL. On success *ret_items is a malloc'd array of *ret_n entries (NULL when
 * 0); free it with hutch_sandbox_info_array_free(). */
HUTCH_EXPORT enum hutch_code hutch_sandbox_list(struct hutch_client *client,
                                                const struct hutch_sandbox_list_options *opts,
                                                struct hutch_sandbox_info **ret_items, size_t *ret_n);

/* Details of one sandbox (GET /sandboxes/{id}), access token included (and remembered). */
HUTCH_EXPORT enum hutch_code hutch_sandbox_info(struct hutch_client *client, const char *sandbox_id,
                                                struct hutch_sandbox_info *ret_info);

/* Kills a sandbox (DELETE /sandboxes/{id}). HUTCH_E_NOT_FOUND when it does not exist. */
HUTCH_EXPORT enum hutch_code hutch_sandbox_kill(struct hutch_client *client, const char *sandbox_id);

/* Sets the sandbox to end timeout_s seconds from now (longer or shorter than before). */
HUTCH_EXPORT enum hutch_code hutch_sandbox_set_timeout(struct hutch_client *client, const char *sandbox_id,
                                                       unsigned timeout_s);

/* Pauses a running sandbox (POST /sandboxes/{id}/pause). HUTCH_E_CONFLICT when it is already
 * paused, HUTCH_E_UNSUPPORTED when the server cannot pause (hutch answers 501 for now). */
HUTCH_EXPORT enum hutch_code hutch_sandbox_pause(struct hutch_client *client, const char *sandbox_id);

/* Resumes a paused sandbox (POST /sandboxes/{id}/resume) with a new timeout (0: the server's
 * default). HUTCH_E_CONFLICT when it is already running; HUTCH_E_UNSUPPORTED or
 * HUTCH_E_NOT_FOUND from servers without pause. */
HUTCH_EXPORT enum hutch_code hutch_sandbox_resume(struct hutch_client *client, const char *sandbox_id,
                                                  unsigned timeout_s);

/* One line of a sandbox's log. */
struct hutch_log_entry {
    char *timestamp; /* RFC 3339 */
    char *level;     /* "debug", "info", "warn" or "error" */
    char *message;
    struct hutch_kv *fields; /* structured context, n_fields pairs, owned by the entry */
    size_t n_fields;
    char *line; /* the raw line as logged */
};

/* Reads a sandbox's log (GET /sandboxes/{id}/logs): entries at or after start_ms (unix
 * milliseconds; 0: from the beginning), at most limit of them (0: the server's default).
 * On success *ret_entries is a malloc'd array of *ret_n entries (NULL when 0); free it with
 * hutch_log_entry_array_free(). */
HUTCH_EXPORT enum hutch_code hutch_sandbox_logs(struct hutch_client *client, const char *sandbox_id,
                                                int64_t start_ms, unsigned limit,
                                                struct hutch_log_entry **ret_entries, size_t *ret_n);
HUTCH_EXPORT void hutch_log_entry_array_free(struct hutch_log_entry *entries, size_t n);

/* ---- processes ---- */

/* Receives output as it arrives. Return 0 to go on; anything else ends hutch_exec() with
 * HUTCH_E_ABORTED (the remote process keeps running; kill it with hutch_process_signal()). */
typedef int (*hutch_output_cb)(void *userdata, const void *data, size_t len);
/* Called once, when the process has started, with its pid inside the sandbox (the handle for
 * hutch_process_*()). */
typedef void (*hutch_start_cb)(void *userdata, uint32_t pid);

struct hutch_exec_options {
    const char *user;           /* run as this user; NULL: the sandbox's default ("user") */
    const char *cwd;            /* NULL: the user's home */
    const struct hutch_kv *env; /* added to the sandbox-wide environment, n_env of them */
    size_t n_env;
    bool pty;            /* run on a pseudo-terminal of cols x rows (output arrives as on_pty) */
    uint16_t cols;       /* 0: 80 */
    uint16_t rows;       /* 0: 24 */
    bool stdin_open;     /* keep stdin open for hutch_process_send_input() (always so for a pty) */
    unsigned timeout_ms; /* kill the process after this long; 0: no limit */
    const char *tag;     /* optional tag to find the process by */
    hutch_start_cb on_start;
    hutch_output_cb on_stdout; /* NULL: discard */
    hutch_output_cb on_stderr; /* NULL: discard */
    hutch_output_cb on_pty;    /* NULL: discard */
    void *userdata;            /* passed to the callbacks */
};

/* Runs argv[0] with arguments argv[1..] (a NULL-terminated array; argv[0] is looked up in
 * PATH) inside the sandbox, streaming its output to the callbacks as it comes (Connect server
 * stream /process.Process/Start through the gateway), and blocks until it ends. opts may be
 * NULL. On success *ret_exit_code (may be NULL) is the exit status, or 128+N when signal N
 * killed the process, as a shell reports it. A process that could not start is a failure with
 * envd's message: HUTCH_E_INVALID for a bad cwd, HUTCH_E_AUTH for an unknown user,
 * HUTCH_E_SERVER for a program that cannot be executed (envd reports that as internal). */
HUTCH_EXPORT enum hutch_code hutch_exec(struct hutch_client *client, const char *sandbox_id,
                                        const char *const *argv, const struct hutch_exec_options *opts,
                                        int *ret_exit_code);

/* Runs a shell command line the way E2B's SDK does (`/bin/bash -l -c command`). Otherwise as
 * hutch_exec(). */
HUTCH_EXPORT enum hutch_code hutch_exec_command(struct hutch_client *client, const char *sandbox_id,
                                                const char *command, const struct hutch_exec_options *opts,
                                                int *ret_exit_code);

/* Writes len bytes to the stdin of process pid (or its terminal when pty is true). The
 * process must have been started with stdin_open or pty. */
HUTCH_EXPORT enum hutch_code hutch_process_send_input(struct hutch_client *client, const char *sandbox_id,
                                                      uint32_t pid, const void *data, size_t len, bool pty);

/* Closes the stdin of process pid (not for a pty: send Ctrl-D, 0x04, instead). */
HUTCH_EXPORT enum hutch_code hutch_process_close_stdin(struct hutch_client *client, const char *sandbox_id,
                                                       uint32_t pid);

/* Sends SIGTERM or SIGKILL (the only two envd delivers; others give HUTCH_E_INVALID) to the
 * process group of pid. */
HUTCH_EXPORT enum hutch_code hutch_process_signal(struct hutch_client *client, const char *sandbox_id,
                                                  uint32_t pid, int signum);

/* Resizes the pseudo-terminal of process pid. */
HUTCH_EXPORT enum hutch_code hutch_process_resize(struct hutch_client *client, const char *sandbox_id,
                                                  uint32_t pid, uint16_t cols, uint16_t rows);

/* ---- files ---- */

/* Uploads everything readable from fd (to its end) to remote_path in the sandbox (POST
 * /files, streamed: the file is never held in memory), as user (NULL: the default user).
 * Missing parent directories are created; an existing file is replaced. The fd's offset
 * advances; the fd stays open. */
HUTCH_EXPORT enum hutch_code hutch_file_upload_fd(struct hutch_client *client, const char *sandbox_id, int fd,
                                                  const char *remote_path, const char *user);
/* The same from the local file local_path (HUTCH_E_IO when it cannot be opened). */
HUTCH_EXPORT enum hutch_code hutch_file_upload(struct hutch_client *client, const char *sandbox_id,
                                               const char *local_path, const char *remote_path,
                                               const char *user);

/* Downloads remote_path from the sandbox (GET /files, streamed) and writes it to fd. On failure
 * part of the file may have been written. */
HUTCH_EXPORT enum hutch_code hutch_file_download_fd(struct hutch_client *client, const char *sandbox_id,
                                                    const char *remote_path, int fd, const char *user);
/* The same into local_path, which appears complete or not at all (written to a temporary name
 * in the same directory, then renamed); created with mode 0666 & ~umask when new. */
HUTCH_EXPORT enum hutch_code hutch_file_download(struct hutch_client *client, const char *sandbox_id,
                                                 const char *remote_path, const char *local_path,
                                                 const char *user);

/* ---- templates ---- */

/* Limits on a Hutchfile: its size, one line as written (continuations joined), and the
 * number of build steps it makes (the USER and WORKDIR steps the parser adds included). */
#define HUTCH_HUTCHFILE_MAX_SIZE (1u << 20)
#define HUTCH_HUTCHFILE_MAX_LINE (64u << 10)
#define HUTCH_HUTCHFILE_MAX_STEPS 256

/* Where and why a Hutchfile was refused. line is 1-based (the first line of the instruction;
 * 0 when the failure concerns the whole file, such as a missing FROM); message says what is
 * wrong without a file name, so that a caller prints "Hutchfile:3: unknown instruction X". */
struct hutch_hutchfile_error {
    unsigned line;
    char message[512];
};

/* Parses a Hutchfile (a Dockerfile subset: docs/user-guide.md, "Templates") of len bytes.
 * build_args (n_build_args pairs) override the defaults of its ARG instructions. Touches no
 * file and no network: COPY sources are checked only as paths (relative, inside the context).
 *
 * On success *ret_spec is a malloc'd JSON object (free() it), the build spec that
 * hutch_template_build() takes: the body of E2B's TemplateBuildStartV2 (e2b-compat §5.2),
 *   {"fromTemplate": "base"} or {"fromImage": "debian:bookworm"} or
 *   {"fromTarball": "rootfs/alpine.tar.gz"} (a path in the context directory),
 *   "steps": [{"type": "RUN"|"COPY"|"ENV"|"WORKDIR"|"USER", "args": [...], "force": false,
 *              "line": N}, ...],
 *   "startCmd"?, "readyCmd"?, "warnings": [{"line": N, "message": "..."}]
 * where "line" is the step's line in the Hutchfile (0 for a step the parser adds), and
 * "fromTarball", "line" and "warnings" are for the client only. The COPY steps are the list
 * of files to upload; hutch_template_build() adds their filesHash.
 * On failure returns HUTCH_E_INVALID (a syntax error) or HUTCH_E_LIMIT (a limit above) and,
 * when err is not NULL, fills *err. Safe on any bytes (it is fuzzed). */
HUTCH_EXPORT enum hutch_code hutch_hutchfile_parse(const char *text, size_t len,
                                                   const struct hutch_kv *build_args, size_t n_build_args,
                                                   char **ret_spec, struct hutch_hutchfile_error *err);

/* One line of a build's log, as the server sent it (strings borrowed for the callback's
 * duration). hutch_template_build() also reports its own steps (uploads) this way, with
 * level "info" and an empty timestamp. */
struct hutch_build_log {
    const char *timestamp; /* RFC 3339, or "" */
    const char *level;     /* "debug", "info", "warn" or "error" */
    const char *message;
    const char *step; /* the step as the server names it ("base", "1", ..., "finalize"), or NULL */
};
/* Return 0 to go on; anything else ends hutch_template_build() with HUTCH_E_ABORTED (the
 * build goes on on the server). */
typedef int (*hutch_build_log_cb)(void *userdata, const struct hutch_build_log *entry);

struct hutch_template_build_options {
    const char *context_dir;   /* where COPY sources and a FROM tarball are; NULL: "." */
    unsigned cpu_count;        /* the template's sandboxes' CPUs; 0: the server's default */
    unsigned memory_mb;        /* and memory; 0: the server's default */
    bool force;                /* build every step again, ignoring the server's cache */
    hutch_build_log_cb on_log; /* NULL: logs are not reported */
    void *userdata;
};

/* How a build ended. */
struct hutch_template_build_result {
    char *template_id;
    char *build_id;
    char **names; /* n_names names of the template ("name:tag" as the server reports them) */
    size_t n_names;
    bool ready;        /* true: the template is built and usable */
    char *reason;      /* when !ready: why the build failed (NULL when ready) */
    char *reason_step; /* when !ready: the failing step as the server names it, or NULL */
};
/* Frees what result holds (not result itself) and zeroes it. Accepts NULL. */
HUTCH_EXPORT void hutch_template_build_result_release(struct hutch_template_build_result *result);

/* Builds a template named name ("name" or "name:tag") from spec (the JSON of
 * hutch_hutchfile_parse(), or a TemplateBuildStartV2 body written by hand) through E2B's
 * template build API (e2b-compat §2.7): the files of every COPY step are collected and hashed
 * first (a missing or refused source fails before the server hears of the build); then POST
 * /v3/templates; for each COPY, GET /templates/{id}/files/{hash} and, unless the server has
 * them, a PUT of a gzip'd tar of them to the URL it returns; POST
 * /v2/templates/{id}/builds/{buildID}; then GET .../status every 200 ms, passing each log line
 * to opts->on_log, until the build ends.
 * COPY sources are read from the context directory without following symbolic links out of
 * it (a symbolic link is sent as one); a source outside it is refused. A tarball base is
 * uploaded like a COPY (see docs/user-guide.md, "Templates").
 * Returns HUTCH_OK when the build ran to its end, ready or failed: *ret_result says which.
 * opts may be NULL. Blocks for the whole build. */
HUTCH_EXPORT enum hutch_code hutch_template_build(struct hutch_client *client, const char *name,
                                                  const char *spec,
                                                  const struct hutch_template_build_options *opts,
                                                  struct hutch_template_build_result *ret_result);

/* What the server says about a template (GET /templates). */
struct hutch_template_info {
    char *template_id;
    char *build_id; /* its latest build */
    char **names;   /* n_names names (else its aliases) */
    size_t n_names;
    char *build_status; /* "waiting", "building", "ready", "error" (as the server names them) */
    int cpu_count;
    int memory_mb;
    int disk_size_mb;
    char *created_at; /* RFC 3339 */
    char *updated_at;
    bool is_public;
    char *envd_version;
    char *json; /* the object exactly as the server sent it (compact JSON) */
};
/* Releases n entries and frees the array. Accepts NULL. */
HUTCH_EXPORT void hutch_template_info_array_free(struct hutch_template_info *items, size_t n);

/* Lists the templates the key can see (GET /templates). On success *ret_items is a malloc'd
 * array of *ret_n entries (NULL when 0). */
HUTCH_EXPORT enum hutch_code hutch_template_list(struct hutch_client *client,
                                                 struct hutch_template_info **ret_items, size_t *ret_n);

/* Deletes a template (DELETE /templates/{id}) named by its id or one of its names (a name is
 * looked up in the list first). HUTCH_E_NOT_FOUND when there is no such template. */
HUTCH_EXPORT enum hutch_code hutch_template_delete(struct hutch_client *client, const char *id_or_name);

#ifdef __cplusplus
}
#endif

#endif /* HUTCH_HUTCH_H */
