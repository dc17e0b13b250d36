/* The state store: one SQLite database (WAL) in the state directory, `hutch.db`. It holds API
 * keys now and sandboxes, templates, builds and events as the control plane grows. The schema
 * is versioned with `PRAGMA user_version` and migrated forward on open, inside a transaction.
 *
 * Invariant: API keys are never stored in clear; only their SHA-256 (keys are 160 random bits,
 * so a fast hash is the right tool: there is nothing to brute-force).
 *
 * A struct store is used from one thread at a time; open one per thread when needed (SQLite
 * in WAL mode lets readers and one writer share the file, busy_timeout absorbs contention). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "common/error.h"

struct store;

/* Key strings look like E2B's: "e2b_" + 40 lowercase hex digits (the Python SDK checks
 * ^e2b_[0-9a-f]+$). */
#define STORE_KEY_PREFIX "e2b_"
#define STORE_KEY_HEX_LEN 40
#define STORE_KEY_LEN (sizeof(STORE_KEY_PREFIX) - 1 + STORE_KEY_HEX_LEN)
#define STORE_KEY_ID_LEN 12 /* "key_" + 8 hex */
#define STORE_KEY_NAME_MAX 128

/* Opens (creating if needed, mode 0700 for the directory, 0600 for the file) the store in
 * state_dir and migrates it to the current schema. Blocks up to a few seconds when another
 * process holds the write lock. Returns 0 and *ret, or -errno with err filled. */
int store_open(const char *state_dir, struct store **ret, struct error_record *err);
void store_free(struct store *s);

/* The schema version this build writes. */
int store_schema_version(void);

struct store_key {
    char id[STORE_KEY_ID_LEN + 1];
    char name[STORE_KEY_NAME_MAX + 1];
    char hint[16]; /* "e2b_…1a2b": enough to recognise a key, useless to use it */
    int64_t created_at;
    int64_t revoked_at; /* 0 while valid */
};

/* Creates a key. Writes the key itself (shown once, never stored) into ret_key (STORE_KEY_LEN
 * + 1 bytes) and its record into ret (may be NULL). name may be NULL or empty. */
int store_key_create(struct store *s, const char *name, char *ret_key, struct store_key *ret,
                     struct error_record *err);

/* Calls cb for every key, oldest first; a non-zero return from cb stops the walk and is
 * returned. */
typedef int (*store_key_cb)(const struct store_key *key, void *userdata);
int store_key_list(struct store *s, store_key_cb cb, void *userdata, struct error_record *err);

/* Revokes the key with this id. -ENOENT when no such key, -EALREADY when already revoked. */
int store_key_revoke(struct store *s, const char *id, struct error_record *err);

/* Returns 1 when key is a valid, unrevoked key, 0 when it is not, -errno on a store failure. */
int store_key_verify(struct store *s, const char *key, struct error_record *err);

/* True when s is shaped like a key (prefix, length, lowercase hex). */
bool store_key_is_well_formed(const char *key);

/* ---- sandboxes (store-sandboxes.c) ---- */

#define STORE_SANDBOX_ID_MAX 32
#define STORE_TEMPLATE_ID_MAX 128
#define STORE_TOKEN_MAX 64

enum store_sandbox_state {
    STORE_SANDBOX_RUNNING,
    STORE_SANDBOX_PAUSED,
    STORE_SANDBOX_KILLED,
    _STORE_SANDBOX_STATE_MAX,
};

const char *store_sandbox_state_to_string(enum store_sandbox_state s);
int store_sandbox_state_from_string(const char *s);

struct store_sandbox {
    char id[STORE_SANDBOX_ID_MAX + 1];
    char template_id[STORE_TEMPLATE_ID_MAX + 1];
    char alias[STORE_TEMPLATE_ID_MAX + 1];
    enum store_sandbox_state state;
    int64_t started_at_ms;
    int64_t end_at_ms;
    uint32_t cpu_count;
    uint32_t memory_mb;
    uint32_t disk_mb;
    char envd_version[16];
    char envd_access_token[STORE_TOKEN_MAX + 1];
    char *metadata_json; /* a JSON object of strings; owned, see store_sandbox_release() */
    bool pause_on_timeout;
    bool auto_resume;
    uint32_t slot;
    /* Owned (store_sandbox_release()); NULL reads as the default:
     * layers_json: the sandbox's lower layers, top first ("[]");
     * restore_json: what a start from disk needs besides the layers ("{}"). */
    char *layers_json;
    char *restore_json;
    char pause_mode[16]; /* "memory", "filesystem" or "" (never paused) */
};

void store_sandbox_release(struct store_sandbox *sb);

int store_sandbox_insert(struct store *s, const struct store_sandbox *sb, struct error_record *err);
/* -ENOENT when there is no such sandbox. */
int store_sandbox_get(struct store *s, const char *id, struct store_sandbox *ret, struct error_record *err);
int store_sandbox_set_state(struct store *s, const char *id, enum store_sandbox_state state,
                            struct error_record *err);
int store_sandbox_set_end(struct store *s, const char *id, int64_t end_at_ms, struct error_record *err);
/* Replaces the restore record (after a change of the settings it holds, such as the network). */
int store_sandbox_set_restore(struct store *s, const char *id, const char *restore_json,
                              struct error_record *err);
/* Records a pause: state paused, its mode, and (when not NULL) its new lower layers. */
int store_sandbox_set_paused(struct store *s, const char *id, const char *mode, const char *layers_json,
                             struct error_record *err);
/* Every layer id named by a sandbox record. */
int store_sandbox_layers_in_use(struct store *s, int (*cb)(const char *layer_id, void *userdata),
                                void *userdata, struct error_record *err);
int store_sandbox_delete(struct store *s, const char *id, struct error_record *err);

/* One page of a listing. states is a bitmask of 1 << enum store_sandbox_state. The cursor
 * (NULL for the first page) is the opaque token of the previous page's last entry. */
struct store_sandbox_query {
    unsigned states;
    bool ascending;           /* by start time; descending (newest first) by default */
    int64_t started_after_ms; /* 0: no bound */
    const char *template_id;  /* NULL: any */
    const char *cursor;
};

/* Calls cb for the sandboxes of the query in order; cb returns 1 to take the entry (it counts
 * toward the page), 0 to skip it (a metadata filter), or < 0 to stop with that error. Stops
 * after `limit` taken entries; when more may follow, writes the next page's token into
 * ret_next (STORE_CURSOR_MAX bytes, "" when the listing is complete). */
#define STORE_CURSOR_MAX 96
typedef int (*store_sandbox_cb)(const struct store_sandbox *sb, void *userdata);
int store_sandbox_list(struct store *s, const struct store_sandbox_query *q, unsigned limit,
                       store_sandbox_cb cb, void *userdata, char *ret_next, struct error_record *err);

/* ---- templates, builds, names, tags, build logs (store-templates.c) ----
 *
 * A template has an id (20 lowercase alphanumerics, like a sandbox id; the built-in one is
 * "base"), any number of names (E2B's aliases: "name", unique across templates; the tag is not
 * part of a name) and builds. A tag maps (template, tag) to one build. The tag "default" moves
 * to a build when that build becomes ready (store_build_finish); any other tag points at the
 * build it was set to from the moment it is set, ready or not (resolve then says -EAGAIN). A
 * snapshot (createSnapshot, fork) is a template with is_snapshot and the sandbox it was taken
 * from.
 *
 * Times are unix milliseconds. Deleting a template deletes its names, builds, tags and build
 * logs with it (foreign keys, ON DELETE CASCADE). */

#define STORE_BUILD_ID_MAX 36 /* a UUID */
#define STORE_NAME_MAX 128
#define STORE_TAG_MAX 64
#define STORE_DEFAULT_TAG "default"
#define STORE_BUILD_LOG_MAX 10000 /* entries per build, the last one saying the rest was dropped */

enum store_build_status {
    STORE_BUILD_WAITING, /* created by POST /v3/templates, not started */
    STORE_BUILD_BUILDING,
    STORE_BUILD_READY,
    STORE_BUILD_ERROR,
    _STORE_BUILD_STATUS_MAX,
};
const char *store_build_status_to_string(enum store_build_status s); /* "waiting", ... */
int store_build_status_from_string(const char *s);                   /* -EINVAL when unknown */

struct store_template {
    char id[STORE_TEMPLATE_ID_MAX + 1];
    bool is_snapshot;
    char source_sandbox[STORE_SANDBOX_ID_MAX + 1]; /* snapshots only, else "" */
    bool public;
    int64_t created_at_ms;
    int64_t updated_at_ms;
    int64_t last_spawned_at_ms; /* 0: never */
    uint64_t spawn_count;
};

struct store_build {
    char id[STORE_BUILD_ID_MAX + 1];
    char template_id[STORE_TEMPLATE_ID_MAX + 1];
    enum store_build_status status;
    uint32_t cpu_count; /* the template's defaults for its sandboxes; 0: the server's */
    uint32_t memory_mb;
    uint32_t disk_mb;
    char envd_version[16];
    int64_t created_at_ms;
    int64_t finished_at_ms; /* 0 while not ready or failed */
    /* Owned strings (store_build_release()); NULL when unset:
     * layers_json: [{"layer": "<layer id>", "target": "/"}, ...], top first (see
     *   src/template/layer.h for layer ids);
     * config_json: {"user", "uid", "gid", "workdir", "env": {}, "startCmd", "readyCmd"};
     * reason: why the build failed; reason_step: the failing step ("" if none). */
    char *layers_json;
    char *config_json;
    char *reason;
    char *reason_step;
};
/* Frees the owned strings (NULL-safe); the struct may be reused. */
void store_build_release(struct store_build *b);

/* Creates a template row (id, is_snapshot, source_sandbox, public, created_at and updated_at
 * given; 0 times mean now), without names or builds. -EEXIST when the id is taken. */
int store_template_insert(struct store *s, const struct store_template *t, struct error_record *err);
/* -ENOENT when unknown. */
int store_template_get(struct store *s, const char *id, struct store_template *ret, struct error_record *err);
/* Deletes the template, its names, tags, builds and their logs. -ENOENT when unknown. Layer
 * directories are the caller's (orch_template_delete). */
int store_template_delete(struct store *s, const char *id, struct error_record *err);
int store_template_set_public(struct store *s, const char *id, bool public, struct error_record *err);
/* Counts count creates from the template, the last at at_ms (spawn_count, last_spawned_at). */
int store_template_spawned(struct store *s, const char *id, uint64_t count, int64_t at_ms,
                           struct error_record *err);

/* POST /v3/templates in one transaction. When a template is named `name`, it gets a new build
 * b (b->template_id is ignored); otherwise template t (its id chosen by the caller) is created
 * with that name and b as its first build. Each tag of tags (NULL-terminated, may be NULL;
 * "default" is skipped: it moves on its own) points at the new build at once. Writes the
 * template's id into ret_template_id (STORE_TEMPLATE_ID_MAX + 1 bytes). -EEXIST when b's id is
 * taken. */
int store_template_request_build(struct store *s, const char *name, const struct store_template *t,
                                 const struct store_build *b, const char *const *tags, char *ret_template_id,
                                 struct error_record *err);

/* Makes sure a ready template `id` exists with name `name` (both the same for the built-in
 * `base`), one ready build with these layers, config and envd version, and its default tag.
 * Idempotent: an existing template keeps its names and tags; its built-in build takes these
 * layers, config and envd version (a newer server may start it differently). */
int store_template_ensure_builtin(struct store *s, const char *id, const char *name, const char *layers_json,
                                  const char *config_json, const char *envd_version,
                                  struct error_record *err);

/* E2B's template and snapshot names: 1..STORE_NAME_MAX of lowercase letters, digits, '.', '_'
 * and '-', starting with a letter or digit. */
bool store_name_valid(const char *name);

/* Names: -EEXIST when the name belongs to another template (adding a name the template already
 * has is a success). */
int store_template_name_add(struct store *s, const char *template_id, const char *name,
                            struct error_record *err);
/* The template a name belongs to; -ENOENT when none. */
int store_template_name_lookup(struct store *s, const char *name,
                               char *ret_template_id /* STORE_TEMPLATE_ID_MAX + 1 */,
                               struct error_record *err);
/* The template's names in the order they were added; a non-zero return from cb stops the walk
 * and is returned. */
typedef int (*store_name_cb)(const char *name, void *userdata);
int store_template_names(struct store *s, const char *template_id, store_name_cb cb, void *userdata,
                         struct error_record *err);

/* The template a reference names: a template id, else a name; any ":tag" is ignored. Writes
 * STORE_TEMPLATE_ID_MAX + 1 bytes. -ENOENT when none. */
int store_template_lookup(struct store *s, const char *ref, char *ret_template_id, struct error_record *err);

/* Resolves what a create or fromTemplate names: a template id or a name, either optionally
 * ":tag" (default "default"), to the template and its build for that tag (release ret_build).
 * -ENOENT when the template or tag is unknown (or no build of the template is ready, waiting
 * or building); -EAGAIN when the tag's build is not ready yet. */
int store_template_resolve(struct store *s, const char *ref, struct store_template *ret_template,
                           struct store_build *ret_build, struct error_record *err);

/* Builds. store_build_insert: -ENOENT when the template is unknown, -EEXIST when the id is
 * taken; created_at 0 means now. */
int store_build_insert(struct store *s, const struct store_build *b, struct error_record *err);
/* -ENOENT when the template has no such build. Release *ret. */
int store_build_get(struct store *s, const char *template_id, const char *build_id, struct store_build *ret,
                    struct error_record *err);
/* Moves a waiting build to building, atomically: the one caller that gets 0 starts the build.
 * -ENOENT unknown build, -EALREADY when it is not waiting (the status is then in err). */
int store_build_claim(struct store *s, const char *build_id, struct error_record *err);
/* Sets status (and finished_at when ready or error), and, where not NULL, layers_json,
 * config_json, reason and reason_step. A build that becomes ready moves the "default" tag to
 * it; the other tags stay as they are. -ENOENT when unknown. */
int store_build_finish(struct store *s, const char *build_id, enum store_build_status status,
                       const char *layers_json, const char *config_json, const char *reason,
                       const char *reason_step, struct error_record *err);
int store_build_set_status(struct store *s, const char *build_id, enum store_build_status status,
                           struct error_record *err);
/* Marks every build still `building` as failed with reason (a server that stopped in the middle
 * of them). Returns how many. */
int store_build_fail_unfinished(struct store *s, const char *reason, int64_t at_ms, struct error_record *err);
typedef int (*store_build_cb)(const struct store_build *b, void *userdata);
/* The template's builds, newest first; a non-zero return from cb stops the walk and is
 * returned (b is valid during the call only). */
int store_build_list(struct store *s, const char *template_id, store_build_cb cb, void *userdata,
                     struct error_record *err);
/* Every layer id named by any build's layers (for garbage collection of layer directories),
 * each once; a non-zero return from cb stops the walk and is returned. Saved layers of
 * sandboxes are not included. */
typedef int (*store_layer_cb)(const char *layer_id, void *userdata);
int store_build_layers_in_use(struct store *s, store_layer_cb cb, void *userdata, struct error_record *err);

/* Tags. store_tag_set: -ENOENT when build_id is not a build of template_id. store_tag_remove:
 * -ENOENT when the template has no such tag. The list is in order of assignment; a non-zero
 * return from cb stops the walk and is returned. */
int store_tag_set(struct store *s, const char *template_id, const char *tag, const char *build_id,
                  struct error_record *err);
int store_tag_remove(struct store *s, const char *template_id, const char *tag, struct error_record *err);
/* The build a tag points at (STORE_BUILD_ID_MAX + 1 bytes), ready or not; -ENOENT when the
 * template has no such tag. */
int store_tag_get(struct store *s, const char *template_id, const char *tag, char *ret_build_id,
                  struct error_record *err);
typedef int (*store_tag_cb)(const char *tag, const char *build_id, int64_t created_at_ms, void *userdata);
int store_tag_list(struct store *s, const char *template_id, store_tag_cb cb, void *userdata,
                   struct error_record *err);

/* Build logs: at most STORE_BUILD_LOG_MAX entries per build (later ones are dropped, the last
 * kept entry saying so). level: "debug", "info", "warn" or "error"; step may be NULL. -ENOENT
 * when the build is unknown. */
int store_build_log_append(struct store *s, const char *build_id, int64_t at_ms, const char *level,
                           const char *message, const char *step, struct error_record *err);
typedef int (*store_build_log_cb)(int64_t at_ms, const char *level, const char *message, const char *step,
                                  void *userdata);
/* Entries from offset (0-based), up to limit, oldest first; a non-zero return from cb stops
 * the walk and is returned. */
int store_build_log_read(struct store *s, const char *build_id, uint64_t offset, unsigned limit,
                         store_build_log_cb cb, void *userdata, struct error_record *err);
/* The same counting only entries of min_level or above (NULL: all), so that an offset advanced
 * by what one call returned is right for the next. */
int store_build_log_read_level(struct store *s, const char *build_id, const char *min_level, uint64_t offset,
                               unsigned limit, store_build_log_cb cb, void *userdata,
                               struct error_record *err);

struct store_template_query {
    bool snapshots;             /* true: snapshots only; false: templates only */
    const char *source_sandbox; /* snapshots of this sandbox only; NULL: any */
    const char *cursor;         /* NULL for the first page */
};
typedef int (*store_template_cb)(const struct store_template *t, void *userdata);
/* Newest first; paginated like store_sandbox_list (cb returns 1 to take, 0 to skip, < 0 to
 * stop; ret_next: STORE_CURSOR_MAX bytes, "" when complete). -EINVAL for a malformed cursor. */
int store_template_list(struct store *s, const struct store_template_query *q, unsigned limit,
                        store_template_cb cb, void *userdata, char *ret_next, struct error_record *err);
