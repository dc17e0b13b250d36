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
};

void store_sandbox_release(struct store_sandbox *sb);

int store_sandbox_insert(struct store *s, const struct store_sandbox *sb, struct error_record *err);
/* -ENOENT when there is no such sandbox. */
int store_sandbox_get(struct store *s, const char *id, struct store_sandbox *ret, struct error_record *err);
int store_sandbox_set_state(struct store *s, const char *id, enum store_sandbox_state state,
                            struct error_record *err);
int store_sandbox_set_end(struct store *s, const char *id, int64_t end_at_ms, struct error_record *err);
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
