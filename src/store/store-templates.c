/* See store.h: templates, their names, builds, tags and build logs.
 *
 * Invariant: a tag, a name or a build never outlives its template (foreign keys with ON DELETE
 * CASCADE, enforced since store_open turns foreign_keys on), and the "default" tag points only
 * at a ready build: store_build_finish moves it, nothing else writes it (store_tag_set is for
 * the other tags, and for assigning "default" explicitly through POST /templates/tags). */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/strutil.h"
#include "common/xalloc.h"
#include "store/store-internal.h"
#include "store/store.h"
#include "common/banned.h"

static const char *const build_status_names[] = {
    [STORE_BUILD_WAITING] = "waiting",
    [STORE_BUILD_BUILDING] = "building",
    [STORE_BUILD_READY] = "ready",
    [STORE_BUILD_ERROR] = "error",
};

const char *store_build_status_to_string(enum store_build_status s)
{
    return (unsigned)s < _STORE_BUILD_STATUS_MAX ? build_status_names[s] : NULL;
}

int store_build_status_from_string(const char *s)
{
    for (int i = 0; i < _STORE_BUILD_STATUS_MAX; i++)
        if (s && streq(s, build_status_names[i]))
            return i;
    return -EINVAL;
}

void store_build_release(struct store_build *b)
{
    if (!b)
        return;
    free(b->layers_json);
    free(b->config_json);
    free(b->reason);
    free(b->reason_step);
    b->layers_json = b->config_json = b->reason = b->reason_step = NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? t : "";
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? xstrdup(t) : NULL;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* A failed constraint: a foreign key names something that does not exist (ENOENT); any other
 * (a primary key or unique name) means the row exists (EEXIST). */
static int step_error(struct store *s, int rc, struct error_record *err, const char *what)
{
    if ((rc & 0xff) == SQLITE_CONSTRAINT && sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        return error_set(err, ENOENT, "%s: the template or build does not exist", what);
    return store_sqlite_error(s, rc, err, what);
}

static int prepare(struct store *s, const char *sql, sqlite3_stmt **ret, struct error_record *err,
                   const char *what)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, ret, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, what);
    return 0;
}

/* Runs a prepared statement that returns no rows, finalizes it, and returns the number of rows
 * changed or -errno. */
static int run(struct store *s, sqlite3_stmt *st, struct error_record *err, const char *what)
{
    int rc = sqlite3_step(st);
    int changed = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return step_error(s, rc, err, what);
    return changed;
}

static int exec(struct store *s, const char *sql, struct error_record *err)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, sql);
    return 0;
}

/* IMMEDIATE: the write lock is taken up front, so a transaction that reads and then writes
 * cannot fail halfway on a lock upgrade. */
static int begin(struct store *s, struct error_record *err)
{
    return exec(s, "BEGIN IMMEDIATE", err);
}

static int end(struct store *s, int r, struct error_record *err)
{
    if (r < 0) {
        exec(s, "ROLLBACK", NULL);
        return r;
    }
    int c = exec(s, "COMMIT", err);
    if (c < 0) {
        exec(s, "ROLLBACK", NULL);
        return c;
    }
    return r;
}

/* ---- templates ---- */

#define TEMPLATE_COLUMNS                                                                                     \
    "id, is_snapshot, source_sandbox, public, created_at, updated_at, last_spawned_at, spawn_count"

static void row_to_template(sqlite3_stmt *st, struct store_template *t)
{
    *t = (struct store_template){ 0 };
    str_copy(t->id, sizeof(t->id), col_text(st, 0));
    t->is_snapshot = sqlite3_column_int64(st, 1) != 0;
    str_copy(t->source_sandbox, sizeof(t->source_sandbox), col_text(st, 2));
    t->public = sqlite3_column_int64(st, 3) != 0;
    t->created_at_ms = sqlite3_column_int64(st, 4);
    t->updated_at_ms = sqlite3_column_int64(st, 5);
    t->last_spawned_at_ms = sqlite3_column_int64(st, 6);
    t->spawn_count = (uint64_t)sqlite3_column_int64(st, 7);
}

int store_template_insert(struct store *s, const struct store_template *t, struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s,
                    "INSERT INTO templates (id, is_snapshot, source_sandbox, public, created_at, updated_at) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    &st, err, "recording a template");
    if (r < 0)
        return r;
    int64_t now = now_ms();
    int64_t created = t->created_at_ms ? t->created_at_ms : now;
    sqlite3_bind_text(st, 1, t->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, t->is_snapshot);
    sqlite3_bind_text(st, 3, t->source_sandbox, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, t->public);
    sqlite3_bind_int64(st, 5, created);
    sqlite3_bind_int64(st, 6, t->updated_at_ms ? t->updated_at_ms : created);
    r = run(s, st, err, "recording a template");
    if (r == -EEXIST)
        return error_set(err, EEXIST, "template %s already exists", t->id);
    return r < 0 ? r : 0;
}

int store_template_get(struct store *s, const char *id, struct store_template *ret, struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s, "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE id = ?1", &st, err,
                    "reading a template");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row_to_template(st, ret);
    else if (rc == SQLITE_DONE)
        r = error_set(err, ENOENT, "template '%s' not found", id);
    else
        r = store_sqlite_error(s, rc, err, "reading a template");
    sqlite3_finalize(st);
    return r;
}

/* Runs an UPDATE or DELETE of one template (?1 its id, ?2 and ?3 integers when the statement
 * has them); -ENOENT when no row matched. */
static int change_template(struct store *s, const char *sql, const char *id, int64_t a, int64_t b,
                           struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s, sql, &st, err, "updating a template");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int64(st, 2, a);
    if (sqlite3_bind_parameter_count(st) >= 3)
        sqlite3_bind_int64(st, 3, b);
    r = run(s, st, err, "updating a template");
    if (r == 0)
        return error_set(err, ENOENT, "template '%s' not found", id);
    return r < 0 ? r : 0;
}

int store_template_delete(struct store *s, const char *id, struct error_record *err)
{
    return change_template(s, "DELETE FROM templates WHERE id = ?1", id, 0, 0, err);
}

int store_template_set_public(struct store *s, const char *id, bool public, struct error_record *err)
{
    return change_template(s, "UPDATE templates SET public = ?2, updated_at = ?3 WHERE id = ?1", id, public,
                           now_ms(), err);
}

int store_template_spawned(struct store *s, const char *id, uint64_t count, int64_t at_ms,
                           struct error_record *err)
{
    return change_template(s,
                           "UPDATE templates SET spawn_count = spawn_count + ?3, "
                           "last_spawned_at = max(last_spawned_at, ?2) WHERE id = ?1",
                           id, at_ms, (int64_t)count, err);
}

/* ---- names ---- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool store_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > STORE_NAME_MAX || !is_lower_alnum(name[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(name[i]) && name[i] != '.' && name[i] != '_' && name[i] != '-')
            return false;
    return true;
}

int store_template_name_add(struct store *s, const char *template_id, const char *name,
                            struct error_record *err)
{
    sqlite3_stmt *st;
    /* A name the template already has is kept as it is (DO NOTHING); one held by another
     * template leaves the row unchanged too, which the check below tells apart. */
    int r = prepare(s,
                    "INSERT INTO template_names (name, template_id) VALUES (?1, ?2) "
                    "ON CONFLICT (name) DO NOTHING",
                    &st, err, "naming a template");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, template_id, -1, SQLITE_TRANSIENT);
    r = run(s, st, err, "naming a template");
    if (r != 0)
        return r < 0 ? r : 0;
    char owner[STORE_TEMPLATE_ID_MAX + 1];
    r = store_template_name_lookup(s, name, owner, err);
    if (r < 0)
        return r;
    if (!streq(owner, template_id))
        return error_set(err, EEXIST, "the name '%s' belongs to another template", name);
    return 0;
}

int store_template_name_lookup(struct store *s, const char *name, char *ret_template_id,
                               struct error_record *err)
{
    sqlite3_stmt *st;
    int r =
        prepare(s, "SELECT template_id FROM template_names WHERE name = ?1", &st, err, "looking up a name");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        str_copy(ret_template_id, STORE_TEMPLATE_ID_MAX + 1, col_text(st, 0));
    else if (rc == SQLITE_DONE)
        r = error_set(err, ENOENT, "no template is named '%s'", name);
    else
        r = store_sqlite_error(s, rc, err, "looking up a name");
    sqlite3_finalize(st);
    return r;
}

int store_template_names(struct store *s, const char *template_id, store_name_cb cb, void *userdata,
                         struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s, "SELECT name FROM template_names WHERE template_id = ?1 ORDER BY rowid", &st, err,
                    "listing names");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, template_id, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        r = cb(col_text(st, 0), userdata);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_sqlite_error(s, rc, err, "listing names");
    sqlite3_finalize(st);
    return r;
}

/* Splits "ref[:tag]" into ref (a buffer of the caller's) and the tag (default "default"). */
static int split_ref(const char *ref, char *ret_ref, size_t size, const char **ret_tag,
                     struct error_record *err)
{
    const char *colon = strrchr(ref, ':');
    size_t n = colon ? (size_t)(colon - ref) : strlen(ref);
    if (n == 0 || n >= size || (colon && colon[1] == '\0'))
        return error_set(err, ENOENT, "template '%s' not found", ref);
    memcpy(ret_ref, ref, n);
    ret_ref[n] = '\0';
    *ret_tag = colon ? colon + 1 : STORE_DEFAULT_TAG;
    return 0;
}

static int lookup_plain(struct store *s, const char *ref, char *ret_template_id, struct error_record *err)
{
    struct store_template t;
    int r = store_template_get(s, ref, &t, err);
    if (r == 0) {
        str_copy(ret_template_id, STORE_TEMPLATE_ID_MAX + 1, t.id);
        return 0;
    }
    if (r != -ENOENT)
        return r;
    r = store_template_name_lookup(s, ref, ret_template_id, err);
    if (r == -ENOENT)
        return error_set(err, ENOENT, "template '%s' not found", ref);
    return r;
}

int store_template_lookup(struct store *s, const char *ref, char *ret_template_id, struct error_record *err)
{
    char plain[STORE_NAME_MAX + 1];
    const char *tag;
    int r = split_ref(ref, plain, sizeof(plain), &tag, err);
    if (r < 0)
        return r;
    return lookup_plain(s, plain, ret_template_id, err);
}

/* ---- builds ---- */

#define BUILD_COLUMNS                                                                                        \
    "id, template_id, status, cpu_count, memory_mb, disk_mb, envd_version, created_at, finished_at, "        \
    "layers, config, reason, reason_step"

static void row_to_build(sqlite3_stmt *st, struct store_build *b)
{
    *b = (struct store_build){ 0 };
    str_copy(b->id, sizeof(b->id), col_text(st, 0));
    str_copy(b->template_id, sizeof(b->template_id), col_text(st, 1));
    int status = store_build_status_from_string(col_text(st, 2));
    b->status = status < 0 ? STORE_BUILD_ERROR : (enum store_build_status)status;
    b->cpu_count = (uint32_t)sqlite3_column_int64(st, 3);
    b->memory_mb = (uint32_t)sqlite3_column_int64(st, 4);
    b->disk_mb = (uint32_t)sqlite3_column_int64(st, 5);
    str_copy(b->envd_version, sizeof(b->envd_version), col_text(st, 6));
    b->created_at_ms = sqlite3_column_int64(st, 7);
    b->finished_at_ms = sqlite3_column_int64(st, 8);
    b->layers_json = col_dup(st, 9);
    b->config_json = col_dup(st, 10);
    b->reason = col_dup(st, 11);
    b->reason_step = col_dup(st, 12);
}

int store_build_insert(struct store *s, const struct store_build *b, struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s,
                    "INSERT INTO builds (" BUILD_COLUMNS ") VALUES "
                    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    &st, err, "recording a build");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, b->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, b->template_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, store_build_status_to_string(b->status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, b->cpu_count);
    sqlite3_bind_int64(st, 5, b->memory_mb);
    sqlite3_bind_int64(st, 6, b->disk_mb);
    sqlite3_bind_text(st, 7, b->envd_version, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 8, b->created_at_ms ? b->created_at_ms : now_ms());
    sqlite3_bind_int64(st, 9, b->finished_at_ms);
    bind_text_or_null(st, 10, b->layers_json);
    bind_text_or_null(st, 11, b->config_json);
    bind_text_or_null(st, 12, b->reason);
    bind_text_or_null(st, 13, b->reason_step);
    r = run(s, st, err, "recording a build");
    if (r == -EEXIST)
        return error_set(err, EEXIST, "build %s already exists", b->id);
    if (r == -ENOENT)
        return error_set(err, ENOENT, "template '%s' not found", b->template_id);
    return r < 0 ? r : 0;
}

/* One build by id, of template_id when that is not NULL. */
static int get_build(struct store *s, const char *template_id, const char *build_id, struct store_build *ret,
                     struct error_record *err)
{
    sqlite3_stmt *st;
    int r =
        prepare(s, "SELECT " BUILD_COLUMNS " FROM builds WHERE id = ?1 AND (?2 IS NULL OR template_id = ?2)",
                &st, err, "reading a build");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, build_id, -1, SQLITE_TRANSIENT);
    bind_text_or_null(st, 2, template_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row_to_build(st, ret);
    else if (rc == SQLITE_DONE)
        r = error_set(err, ENOENT, "build %s not found", build_id);
    else
        r = store_sqlite_error(s, rc, err, "reading a build");
    sqlite3_finalize(st);
    return r;
}

int store_build_get(struct store *s, const char *template_id, const char *build_id, struct store_build *ret,
                    struct error_record *err)
{
    return get_build(s, template_id, build_id, ret, err);
}

int store_build_claim(struct store *s, const char *build_id, struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s, "UPDATE builds SET status = 'building' WHERE id = ?1 AND status = 'waiting'", &st, err,
                    "starting a build");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, build_id, -1, SQLITE_TRANSIENT);
    r = run(s, st, err, "starting a build");
    if (r != 0)
        return r < 0 ? r : 0;
    struct store_build b;
    r = get_build(s, NULL, build_id, &b, err);
    if (r < 0)
        return r;
    r = error_set(err, EALREADY, "build %s is %s, not waiting", build_id,
                  store_build_status_to_string(b.status));
    store_build_release(&b);
    return r;
}

static int set_tag(struct store *s, const char *template_id, const char *tag, const char *build_id,
                   struct error_record *err)
{
    sqlite3_stmt *st;
    /* Only a build of this template can carry its tag: the SELECT yields no row otherwise. */
    int r = prepare(s,
                    "INSERT INTO template_tags (template_id, tag, build_id, created_at) "
                    "SELECT ?1, ?2, id, ?4 FROM builds WHERE id = ?3 AND template_id = ?1 "
                    "ON CONFLICT (template_id, tag) DO UPDATE SET build_id = excluded.build_id, "
                    "created_at = excluded.created_at",
                    &st, err, "tagging a build");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, template_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, tag, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, build_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, now_ms());
    r = run(s, st, err, "tagging a build");
    if (r == 0)
        return error_set(err, ENOENT, "build %s of template '%s' not found", build_id, template_id);
    return r < 0 ? r : 0;
}

static int finish(struct store *s, const char *build_id, enum store_build_status status,
                  const char *layers_json, const char *config_json, const char *reason,
                  const char *reason_step, struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s,
                    "UPDATE builds SET status = ?2, "
                    "finished_at = CASE WHEN ?2 IN ('ready', 'error') THEN ?3 ELSE 0 END, "
                    "layers = coalesce(?4, layers), config = coalesce(?5, config), "
                    "reason = coalesce(?6, reason), reason_step = coalesce(?7, reason_step) "
                    "WHERE id = ?1 RETURNING template_id",
                    &st, err, "finishing a build");
    if (r < 0)
        return r;
    int64_t now = now_ms();
    sqlite3_bind_text(st, 1, build_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, store_build_status_to_string(status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    bind_text_or_null(st, 4, layers_json);
    bind_text_or_null(st, 5, config_json);
    bind_text_or_null(st, 6, reason);
    bind_text_or_null(st, 7, reason_step);
    char template_id[STORE_TEMPLATE_ID_MAX + 1] = "";
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        str_copy(template_id, sizeof(template_id), col_text(st, 0));
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_error(s, rc, err, "finishing a build");
    if (!template_id[0])
        return error_set(err, ENOENT, "build %s not found", build_id);
    r = change_template(s, "UPDATE templates SET updated_at = ?2 WHERE id = ?1", template_id, now, 0, err);
    if (r >= 0 && status == STORE_BUILD_READY)
        r = set_tag(s, template_id, STORE_DEFAULT_TAG, build_id, err);
    return r;
}

int store_build_finish(struct store *s, const char *build_id, enum store_build_status status,
                       const char *layers_json, const char *config_json, const char *reason,
                       const char *reason_step, struct error_record *err)
{
    if ((unsigned)status >= _STORE_BUILD_STATUS_MAX)
        return error_set(err, EINVAL, "invalid build status %d", (int)status);
    int r = begin(s, err);
    if (r < 0)
        return r;
    r = finish(s, build_id, status, layers_json, config_json, reason, reason_step, err);
    return end(s, r, err);
}

int store_build_set_status(struct store *s, const char *build_id, enum store_build_status status,
                           struct error_record *err)
{
    return store_build_finish(s, build_id, status, NULL, NULL, NULL, NULL, err);
}

int store_build_list(struct store *s, const char *template_id, store_build_cb cb, void *userdata,
                     struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s,
                    "SELECT " BUILD_COLUMNS " FROM builds WHERE template_id = ?1 "
                    "ORDER BY created_at DESC, rowid DESC",
                    &st, err, "listing builds");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, template_id, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_build b;
        row_to_build(st, &b);
        r = cb(&b, userdata);
        store_build_release(&b);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_sqlite_error(s, rc, err, "listing builds");
    sqlite3_finalize(st);
    return r;
}

int store_build_layers_in_use(struct store *s, store_layer_cb cb, void *userdata, struct error_record *err)
{
    sqlite3_stmt *st;
    /* json_valid first: a malformed row must not make the whole walk fail (json_each raises an
     * error on it), and it protects no layer, which is what its build could use anyway. */
    int r = prepare(s,
                    "SELECT DISTINCT json_extract(j.value, '$.layer') AS layer "
                    "FROM builds AS b, json_each(CASE WHEN json_valid(b.layers) THEN b.layers ELSE '[]' END) "
                    "AS j WHERE json_type(j.value, '$.layer') = 'text' ORDER BY layer",
                    &st, err, "listing layers in use");
    if (r < 0)
        return r;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        r = cb(col_text(st, 0), userdata);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_sqlite_error(s, rc, err, "listing layers in use");
    sqlite3_finalize(st);
    return r;
}

/* ---- tags ---- */

int store_tag_set(struct store *s, const char *template_id, const char *tag, const char *build_id,
                  struct error_record *err)
{
    return set_tag(s, template_id, tag, build_id, err);
}

int store_tag_remove(struct store *s, const char *template_id, const char *tag, struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s, "DELETE FROM template_tags WHERE template_id = ?1 AND tag = ?2", &st, err,
                    "removing a tag");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, template_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, tag, -1, SQLITE_TRANSIENT);
    r = run(s, st, err, "removing a tag");
    if (r == 0)
        return error_set(err, ENOENT, "template '%s' has no tag '%s'", template_id, tag);
    return r < 0 ? r : 0;
}

int store_tag_list(struct store *s, const char *template_id, store_tag_cb cb, void *userdata,
                   struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s,
                    "SELECT tag, build_id, created_at FROM template_tags WHERE template_id = ?1 "
                    "ORDER BY created_at, tag",
                    &st, err, "listing tags");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, template_id, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        r = cb(col_text(st, 0), col_text(st, 1), sqlite3_column_int64(st, 2), userdata);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_sqlite_error(s, rc, err, "listing tags");
    sqlite3_finalize(st);
    return r;
}

/* The build a tag points at; -ENOENT when the template has no such tag. */
static int tag_build(struct store *s, const char *template_id, const char *tag, char *ret_build_id,
                     struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s, "SELECT build_id FROM template_tags WHERE template_id = ?1 AND tag = ?2", &st, err,
                    "reading a tag");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, template_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, tag, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        str_copy(ret_build_id, STORE_BUILD_ID_MAX + 1, col_text(st, 0));
    else if (rc == SQLITE_DONE)
        r = -ENOENT;
    else
        r = store_sqlite_error(s, rc, err, "reading a tag");
    sqlite3_finalize(st);
    return r;
}

int store_tag_get(struct store *s, const char *template_id, const char *tag, char *ret_build_id,
                  struct error_record *err)
{
    int r = tag_build(s, template_id, tag, ret_build_id, err);
    if (r == -ENOENT)
        return error_set(err, ENOENT, "template '%s' has no tag '%s'", template_id, tag);
    return r;
}

/* 1 when the template has a build that is waiting or building, 0 when not. */
static int has_pending_build(struct store *s, const char *template_id, struct error_record *err)
{
    sqlite3_stmt *st;
    int r = prepare(s,
                    "SELECT EXISTS (SELECT 1 FROM builds WHERE template_id = ?1 "
                    "AND status IN ('waiting', 'building'))",
                    &st, err, "reading builds");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, template_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    r = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) != 0 : store_sqlite_error(s, rc, err, "reading builds");
    sqlite3_finalize(st);
    return r;
}

int store_template_resolve(struct store *s, const char *ref, struct store_template *ret_template,
                           struct store_build *ret_build, struct error_record *err)
{
    char plain[STORE_NAME_MAX + 1], id[STORE_TEMPLATE_ID_MAX + 1], build_id[STORE_BUILD_ID_MAX + 1];
    const char *tag;
    int r = split_ref(ref, plain, sizeof(plain), &tag, err);
    if (r >= 0)
        r = lookup_plain(s, plain, id, err);
    if (r < 0)
        return r;
    r = tag_build(s, id, tag, build_id, err);
    if (r == -ENOENT) {
        if (!streq(tag, STORE_DEFAULT_TAG))
            return error_set(err, ENOENT, "template '%s' has no tag '%s'", plain, tag);
        r = has_pending_build(s, id, err);
        if (r < 0)
            return r;
        if (r > 0)
            return error_set(err, EAGAIN, "template '%s' is still building", plain);
        return error_set(err, ENOENT, "template '%s' has no ready build", plain);
    }
    if (r < 0)
        return r;
    struct store_template t;
    struct store_build b;
    r = store_template_get(s, id, &t, err);
    if (r >= 0)
        r = get_build(s, id, build_id, &b, err);
    if (r < 0)
        return r;
    if (b.status != STORE_BUILD_READY) {
        r = error_set(err, b.status == STORE_BUILD_ERROR ? ENOENT : EAGAIN, "build %s of template '%s' is %s",
                      build_id, plain, store_build_status_to_string(b.status));
        store_build_release(&b);
        return r;
    }
    if (ret_template)
        *ret_template = t;
    if (ret_build)
        *ret_build = b;
    else
        store_build_release(&b);
    return 0;
}

/* ---- creating templates ---- */

static int request_build(struct store *s, const char *name, const struct store_template *t,
                         const struct store_build *b, const char *const *tags, char *ret_template_id,
                         struct error_record *err)
{
    char id[STORE_TEMPLATE_ID_MAX + 1];
    int r = store_template_name_lookup(s, name, id, err);
    if (r == -ENOENT) {
        str_copy(id, sizeof(id), t->id);
        r = store_template_insert(s, t, err);
        if (r >= 0)
            r = store_template_name_add(s, id, name, err);
    }
    if (r < 0)
        return r;
    struct store_build nb = *b;
    str_copy(nb.template_id, sizeof(nb.template_id), id);
    r = store_build_insert(s, &nb, err);
    for (size_t i = 0; r >= 0 && tags && tags[i]; i++)
        if (!streq(tags[i], STORE_DEFAULT_TAG))
            r = set_tag(s, id, tags[i], b->id, err);
    if (r >= 0)
        r = change_template(s, "UPDATE templates SET updated_at = ?2 WHERE id = ?1", id, now_ms(), 0, err);
    if (r >= 0)
        str_copy(ret_template_id, STORE_TEMPLATE_ID_MAX + 1, id);
    return r;
}

int store_template_request_build(struct store *s, const char *name, const struct store_template *t,
                                 const struct store_build *b, const char *const *tags, char *ret_template_id,
                                 struct error_record *err)
{
    int r = begin(s, err);
    if (r < 0)
        return r;
    r = request_build(s, name, t, b, tags, ret_template_id, err);
    return end(s, r, err);
}

static int ensure_builtin(struct store *s, const char *id, const char *name, const char *layers_json,
                          const char *config_json, const char *envd_version, struct error_record *err)
{
    struct store_template t;
    int r = store_template_get(s, id, &t, err);
    if (r >= 0) {
        /* The server's own templates follow the server: a newer hutch may start them
         * differently. */
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(
            s->db, "UPDATE builds SET layers = ?2, config = ?3, envd_version = ?4 WHERE id = ?1", -1, &st,
            NULL);
        if (rc != SQLITE_OK)
            return store_sqlite_error(s, rc, err, "updating a built-in template");
        char bid[STORE_BUILD_ID_MAX + 1];
        snprintf(bid, sizeof(bid), "builtin-%s", id);
        sqlite3_bind_text(st, 1, bid, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, layers_json, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, config_json, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, envd_version, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? 0 : store_sqlite_error(s, rc, err, "updating a built-in template");
    }
    if (r != -ENOENT)
        return r;
    t = (struct store_template){ 0 };
    str_copy(t.id, sizeof(t.id), id);
    struct store_build b = {
        .status = STORE_BUILD_WAITING,
        .layers_json = (char *)layers_json,
        .config_json = (char *)config_json,
    };
    str_copy(b.template_id, sizeof(b.template_id), id);
    str_copy(b.envd_version, sizeof(b.envd_version), envd_version);
    /* A build id of its own kind, so it can never collide with a UUID. */
    snprintf(b.id, sizeof(b.id), "builtin-%s", id);
    r = store_template_insert(s, &t, err);
    if (r >= 0) {
        r = store_template_name_add(s, id, name, err);
        if (r == -EEXIST) /* a template of the user's took the name: it keeps it */
            r = 0;
    }
    if (r >= 0)
        r = store_build_insert(s, &b, err);
    if (r >= 0)
        r = finish(s, b.id, STORE_BUILD_READY, NULL, NULL, NULL, NULL, err);
    return r;
}

int store_template_ensure_builtin(struct store *s, const char *id, const char *name, const char *layers_json,
                                  const char *config_json, const char *envd_version, struct error_record *err)
{
    int r = begin(s, err);
    if (r < 0)
        return r;
    r = ensure_builtin(s, id, name, layers_json, config_json, envd_version, err);
    return end(s, r, err);
}

/* ---- build logs ---- */

int store_build_log_append(struct store *s, const char *build_id, int64_t at_ms, const char *level,
                           const char *message, const char *step, struct error_record *err)
{
    sqlite3_stmt *st;
    /* One statement, so two writers of one build cannot both take the same seq; the entry at
     * the cap says what happened to the rest. */
    int r = prepare(s,
                    "INSERT INTO build_logs (build_id, seq, at, level, message, step) "
                    "SELECT ?1, n, ?2, "
                    "CASE WHEN n = ?6 - 1 THEN 'warn' ELSE ?3 END, "
                    "CASE WHEN n = ?6 - 1 THEN 'build log truncated: later entries were dropped' "
                    "ELSE ?4 END, "
                    "CASE WHEN n = ?6 - 1 THEN NULL ELSE ?5 END "
                    "FROM (SELECT coalesce(max(seq) + 1, 0) AS n FROM build_logs WHERE build_id = ?1) "
                    "WHERE n < ?6",
                    &st, err, "appending to a build log");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, build_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, at_ms);
    sqlite3_bind_text(st, 3, level, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, message, -1, SQLITE_TRANSIENT);
    bind_text_or_null(st, 5, step);
    sqlite3_bind_int64(st, 6, STORE_BUILD_LOG_MAX);
    r = run(s, st, err, "appending to a build log");
    if (r == -ENOENT)
        return error_set(err, ENOENT, "build %s not found", build_id);
    return r < 0 ? r : 0;
}

static int level_rank(const char *level)
{
    static const char *const levels[] = { "debug", "info", "warn", "error" };
    for (size_t i = 0; i < ARRAY_SIZE(levels); i++)
        if (streq(level, levels[i]))
            return (int)i;
    return -1;
}

int store_build_log_read_level(struct store *s, const char *build_id, const char *min_level, uint64_t offset,
                               unsigned limit, store_build_log_cb cb, void *userdata,
                               struct error_record *err)
{
    int min = 0;
    if (min_level && (min = level_rank(min_level)) < 0)
        return error_set(err, EINVAL, "unknown log level '%s'", min_level);
    if (offset > INT64_MAX)
        offset = INT64_MAX;
    sqlite3_stmt *st;
    int r = prepare(s,
                    "SELECT at, level, message, step FROM build_logs WHERE build_id = ?1 AND "
                    "(CASE level WHEN 'debug' THEN 0 WHEN 'info' THEN 1 WHEN 'warn' THEN 2 "
                    "WHEN 'error' THEN 3 ELSE 1 END) >= ?2 "
                    "ORDER BY seq LIMIT ?3 OFFSET ?4",
                    &st, err, "reading a build log");
    if (r < 0)
        return r;
    sqlite3_bind_text(st, 1, build_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, min);
    sqlite3_bind_int64(st, 3, limit);
    sqlite3_bind_int64(st, 4, (int64_t)offset);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        r = cb(sqlite3_column_int64(st, 0), col_text(st, 1), col_text(st, 2),
               (const char *)sqlite3_column_text(st, 3), userdata);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_sqlite_error(s, rc, err, "reading a build log");
    sqlite3_finalize(st);
    return r;
}

int store_build_log_read(struct store *s, const char *build_id, uint64_t offset, unsigned limit,
                         store_build_log_cb cb, void *userdata, struct error_record *err)
{
    return store_build_log_read_level(s, build_id, NULL, offset, limit, cb, userdata, err);
}

/* ---- listing ---- */

/* A cursor is "<created_at_ms>_<id>": the sort key of the last entry of the previous page. */
static int parse_cursor(const char *c, int64_t *ret_ms, char *ret_id, size_t id_size)
{
    const char *us = strchr(c, '_');
    if (!us || us == c || (size_t)(us - c) > 20)
        return -EINVAL;
    char num[24];
    memcpy(num, c, (size_t)(us - c));
    num[us - c] = '\0';
    if (parse_int64(num, ret_ms) < 0)
        return -EINVAL;
    const char *id = us + 1;
    size_t n = strlen(id);
    if (n == 0 || n >= id_size)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '-' ||
              id[i] == '_' || id[i] == '.'))
            return -EINVAL;
    memcpy(ret_id, id, n + 1);
    return 0;
}

int store_template_list(struct store *s, const struct store_template_query *q, unsigned limit,
                        store_template_cb cb, void *userdata, char *ret_next, struct error_record *err)
{
    int64_t cursor_ms = 0;
    char cursor_id[STORE_TEMPLATE_ID_MAX + 1] = "";
    if (q->cursor && parse_cursor(q->cursor, &cursor_ms, cursor_id, sizeof(cursor_id)) < 0)
        return error_set(err, EINVAL, "invalid nextToken");
    sqlite3_stmt *st;
    int r = prepare(s,
                    "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE is_snapshot = ?1 "
                    "AND (?2 IS NULL OR source_sandbox = ?2) "
                    "AND (?3 IS NULL OR (created_at, id) < (?3, ?4)) "
                    "ORDER BY created_at DESC, id DESC",
                    &st, err, "listing templates");
    if (r < 0)
        return r;
    sqlite3_bind_int(st, 1, q->snapshots);
    bind_text_or_null(st, 2, q->source_sandbox);
    if (q->cursor) {
        sqlite3_bind_int64(st, 3, cursor_ms);
        sqlite3_bind_text(st, 4, cursor_id, -1, SQLITE_TRANSIENT);
    } else {
        sqlite3_bind_null(st, 3);
        sqlite3_bind_null(st, 4);
    }

    ret_next[0] = '\0';
    unsigned taken = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (taken == limit)
            break; /* another row exists: the page is full and the listing goes on */
        struct store_template t;
        row_to_template(st, &t);
        r = cb(&t, userdata);
        if (r > 0) {
            taken++;
            /* Template ids are 20 characters (STORE_CURSOR_MAX leaves room for far more). */
            char cursor[24 + sizeof(t.id)];
            snprintf(cursor, sizeof(cursor), "%" PRId64 "_%s", t.created_at_ms, t.id);
            str_copy(ret_next, STORE_CURSOR_MAX, cursor);
        }
        if (r < 0)
            break;
    }
    if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = store_sqlite_error(s, rc, err, "listing templates");
    if (rc != SQLITE_ROW)
        ret_next[0] = '\0';
    sqlite3_finalize(st);
    return r < 0 ? r : 0;
}

int store_build_fail_unfinished(struct store *s, const char *reason, int64_t at_ms, struct error_record *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        s->db,
        "UPDATE builds SET status = 'error', reason = ?1, reason_step = '', finished_at = ?2 "
        "WHERE status = 'building'",
        -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "failing unfinished builds");
    sqlite3_bind_text(st, 1, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, at_ms);
    rc = sqlite3_step(st);
    int n = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_error(s, rc, err, "failing unfinished builds");
    return n;
}
