/* See store.h: sandbox records. The orchestrator owns the live sandboxes; these rows are what
 * the API lists and what a restarted server reconciles against. */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "store/store-internal.h"
#include "store/store.h"
#include "common/banned.h"

static const char *const state_names[] = {
    [STORE_SANDBOX_RUNNING] = "running",
    [STORE_SANDBOX_PAUSED] = "paused",
    [STORE_SANDBOX_KILLED] = "killed",
};

const char *store_sandbox_state_to_string(enum store_sandbox_state s)
{
    return (unsigned)s < _STORE_SANDBOX_STATE_MAX ? state_names[s] : NULL;
}

int store_sandbox_state_from_string(const char *s)
{
    for (int i = 0; i < _STORE_SANDBOX_STATE_MAX; i++)
        if (s && streq(s, state_names[i]))
            return i;
    return -EINVAL;
}

void store_sandbox_release(struct store_sandbox *sb)
{
    free(sb->metadata_json);
    free(sb->layers_json);
    free(sb->restore_json);
    sb->metadata_json = sb->layers_json = sb->restore_json = NULL;
}

#define COLUMNS                                                                                              \
    "id, template_id, alias, state, started_at, end_at, cpu_count, memory_mb, disk_mb, envd_version, "       \
    "envd_access_token, metadata, on_timeout, slot, auto_resume, layers, restore, pause_mode"

static void row_to_sandbox(sqlite3_stmt *st, struct store_sandbox *sb)
{
    *sb = (struct store_sandbox){ 0 };
    str_copy(sb->id, sizeof(sb->id), (const char *)sqlite3_column_text(st, 0));
    str_copy(sb->template_id, sizeof(sb->template_id), (const char *)sqlite3_column_text(st, 1));
    str_copy(sb->alias, sizeof(sb->alias), (const char *)sqlite3_column_text(st, 2));
    int state = store_sandbox_state_from_string((const char *)sqlite3_column_text(st, 3));
    sb->state = state < 0 ? STORE_SANDBOX_KILLED : (enum store_sandbox_state)state;
    sb->started_at_ms = sqlite3_column_int64(st, 4);
    sb->end_at_ms = sqlite3_column_int64(st, 5);
    sb->cpu_count = (uint32_t)sqlite3_column_int64(st, 6);
    sb->memory_mb = (uint32_t)sqlite3_column_int64(st, 7);
    sb->disk_mb = (uint32_t)sqlite3_column_int64(st, 8);
    str_copy(sb->envd_version, sizeof(sb->envd_version), (const char *)sqlite3_column_text(st, 9));
    str_copy(sb->envd_access_token, sizeof(sb->envd_access_token), (const char *)sqlite3_column_text(st, 10));
    sb->metadata_json = xstrdup((const char *)sqlite3_column_text(st, 11));
    sb->pause_on_timeout = streq((const char *)sqlite3_column_text(st, 12), "pause");
    sb->slot = (uint32_t)sqlite3_column_int64(st, 13);
    sb->auto_resume = sqlite3_column_int64(st, 14) != 0;
    sb->layers_json = xstrdup((const char *)sqlite3_column_text(st, 15));
    sb->restore_json = xstrdup((const char *)sqlite3_column_text(st, 16));
    str_copy(sb->pause_mode, sizeof(sb->pause_mode), (const char *)sqlite3_column_text(st, 17));
}

int store_sandbox_insert(struct store *s, const struct store_sandbox *sb, struct error_record *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(
        s->db,
        "INSERT INTO sandboxes (" COLUMNS ") VALUES "
        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "recording a sandbox");
    sqlite3_bind_text(st, 1, sb->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sb->template_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sb->alias, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, store_sandbox_state_to_string(sb->state), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, sb->started_at_ms);
    sqlite3_bind_int64(st, 6, sb->end_at_ms);
    sqlite3_bind_int64(st, 7, sb->cpu_count);
    sqlite3_bind_int64(st, 8, sb->memory_mb);
    sqlite3_bind_int64(st, 9, sb->disk_mb);
    sqlite3_bind_text(st, 10, sb->envd_version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, sb->envd_access_token, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 12, sb->metadata_json ? sb->metadata_json : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 13, sb->pause_on_timeout ? "pause" : "kill", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 14, sb->slot);
    sqlite3_bind_int64(st, 15, sb->auto_resume);
    sqlite3_bind_text(st, 16, sb->layers_json ? sb->layers_json : "[]", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 17, sb->restore_json ? sb->restore_json : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 18, sb->pause_mode, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_error(s, rc, err, "recording a sandbox");
    return 0;
}

int store_sandbox_get(struct store *s, const char *id, struct store_sandbox *ret, struct error_record *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "SELECT " COLUMNS " FROM sandboxes WHERE id = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "reading a sandbox");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW)
        row_to_sandbox(st, ret);
    else if (rc == SQLITE_DONE)
        r = error_set(err, ENOENT, "sandbox %s not found", id);
    else
        r = store_sqlite_error(s, rc, err, "reading a sandbox");
    sqlite3_finalize(st);
    return r;
}

/* Runs an UPDATE or DELETE on one sandbox (?1 its id, ?2 if present the new value); -ENOENT
 * when no row matched. */
static int change_one(struct store *s, const char *sql, const char *id, const char *text, int64_t num,
                      struct error_record *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "updating a sandbox");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_bind_parameter_count(st) >= 2) {
        if (text)
            sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(st, 2, num);
    }
    rc = sqlite3_step(st);
    int changed = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_error(s, rc, err, "updating a sandbox");
    if (changed == 0)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    return 0;
}

int store_sandbox_set_state(struct store *s, const char *id, enum store_sandbox_state state,
                            struct error_record *err)
{
    return change_one(s, "UPDATE sandboxes SET state = ?2 WHERE id = ?1", id,
                      store_sandbox_state_to_string(state), 0, err);
}

int store_sandbox_set_end(struct store *s, const char *id, int64_t end_at_ms, struct error_record *err)
{
    return change_one(s, "UPDATE sandboxes SET end_at = ?2 WHERE id = ?1", id, NULL, end_at_ms, err);
}

int store_sandbox_set_restore(struct store *s, const char *id, const char *restore_json,
                              struct error_record *err)
{
    return change_one(s, "UPDATE sandboxes SET restore = ?2 WHERE id = ?1", id, restore_json, 0, err);
}

int store_sandbox_set_paused(struct store *s, const char *id, const char *mode, const char *layers_json,
                             struct error_record *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db,
                                "UPDATE sandboxes SET state = 'paused', pause_mode = ?2, "
                                "layers = coalesce(?3, layers) WHERE id = ?1",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "recording a pause");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, mode, -1, SQLITE_STATIC);
    if (layers_json)
        sqlite3_bind_text(st, 3, layers_json, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    rc = sqlite3_step(st);
    int changed = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_error(s, rc, err, "recording a pause");
    return changed ? 0 : error_set(err, ENOENT, "sandbox %s not found", id);
}

int store_sandbox_layers_in_use(struct store *s, int (*cb)(const char *layer_id, void *userdata),
                                void *userdata, struct error_record *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT DISTINCT json_extract(j.value, '$.layer') FROM sandboxes, "
                                "json_each(sandboxes.layers) AS j",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "listing the layers of sandboxes");
    int r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (id && (r = cb(id, userdata)) != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_sqlite_error(s, rc, err, "listing the layers of sandboxes");
    sqlite3_finalize(st);
    return r;
}

int store_sandbox_delete(struct store *s, const char *id, struct error_record *err)
{
    return change_one(s, "DELETE FROM sandboxes WHERE id = ?1", id, NULL, 0, err);
}

/* A cursor is "<started_at_ms>_<id>": the sort key of the last entry of the previous page. */
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
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9')))
            return -EINVAL;
    memcpy(ret_id, id, n + 1);
    return 0;
}

int store_sandbox_list(struct store *s, const struct store_sandbox_query *q, unsigned limit,
                       store_sandbox_cb cb, void *userdata, char *ret_next, struct error_record *err)
{
    int64_t cursor_ms = 0;
    char cursor_id[STORE_SANDBOX_ID_MAX + 1] = "";
    if (q->cursor && parse_cursor(q->cursor, &cursor_ms, cursor_id, sizeof(cursor_id)) < 0)
        return error_set(err, EINVAL, "invalid nextToken");

    struct buf sql;
    buf_init(&sql, 1024);
    buf_append_str(&sql, "SELECT " COLUMNS " FROM sandboxes WHERE state IN ('-'");
    for (int i = 0; i < _STORE_SANDBOX_STATE_MAX; i++)
        if (q->states & (1u << i))
            buf_printf(&sql, ", '%s'", state_names[i]);
    buf_append_str(&sql, ") AND started_at > ?1 AND (?2 IS NULL OR template_id = ?2 OR alias = ?2)");
    if (q->cursor)
        buf_append_str(&sql, q->ascending ? " AND (started_at, id) > (?3, ?4)"
                                          : " AND (started_at, id) < (?3, ?4)");
    buf_append_str(&sql, q->ascending ? " ORDER BY started_at, id" : " ORDER BY started_at DESC, id DESC");

    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql.data, -1, &st, NULL);
    buf_release(&sql);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "listing sandboxes");
    sqlite3_bind_int64(st, 1, q->started_after_ms);
    if (q->template_id)
        sqlite3_bind_text(st, 2, q->template_id, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 2);
    if (q->cursor) {
        sqlite3_bind_int64(st, 3, cursor_ms);
        sqlite3_bind_text(st, 4, cursor_id, -1, SQLITE_TRANSIENT);
    }

    ret_next[0] = '\0';
    unsigned taken = 0;
    int r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (taken == limit) {
            /* Another row exists: the page is full and the listing goes on. */
            break;
        }
        struct store_sandbox sb;
        row_to_sandbox(st, &sb);
        r = cb(&sb, userdata);
        if (r > 0) {
            taken++;
            snprintf(ret_next, STORE_CURSOR_MAX, "%" PRId64 "_%s", sb.started_at_ms, sb.id);
        }
        store_sandbox_release(&sb);
        if (r < 0)
            break;
    }
    if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = store_sqlite_error(s, rc, err, "listing sandboxes");
    if (rc != SQLITE_ROW)
        ret_next[0] = '\0'; /* the scan ended: nothing follows */
    sqlite3_finalize(st);
    return r < 0 ? r : 0;
}
