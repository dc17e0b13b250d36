/* See store.h: API keys. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/crypto.h"
#include "common/strutil.h"
#include "store/store-internal.h"
#include "store/store.h"
#include "common/banned.h"

bool store_key_is_well_formed(const char *key)
{
    if (!key || strlen(key) != STORE_KEY_LEN || !str_startswith(key, STORE_KEY_PREFIX))
        return false;
    for (const char *p = key + strlen(STORE_KEY_PREFIX); *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

int store_key_create(struct store *s, const char *name, char *ret_key, struct store_key *ret,
                     struct error_record *err)
{
    struct store_key k = { 0 };
    if (!name)
        name = "";
    if (strlen(name) > STORE_KEY_NAME_MAX || !utf8_is_valid(name, strlen(name)))
        return error_set(err, EINVAL, "key name must be valid UTF-8 of at most %d bytes", STORE_KEY_NAME_MAX);
    str_copy(k.name, sizeof(k.name), name);

    char key[STORE_KEY_LEN + 1];
    memcpy(key, STORE_KEY_PREFIX, strlen(STORE_KEY_PREFIX));
    int r = random_hex(key + strlen(STORE_KEY_PREFIX), STORE_KEY_HEX_LEN / 2);
    if (r < 0)
        return error_set_errno(err, r, "generating a key");
    memcpy(k.id, "key_", 4);
    r = random_hex(k.id + 4, 4);
    if (r < 0)
        return error_set_errno(err, r, "generating a key id");
    snprintf(k.hint, sizeof(k.hint), "e2b_...%s", key + STORE_KEY_LEN - 4);
    k.created_at = (int64_t)time(NULL);

    char hash[2 * SHA256_LEN + 1];
    sha256_hex(key, STORE_KEY_LEN, hash);

    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO api_keys (id, name, key_sha256, hint, created_at) "
                                "VALUES (?1, ?2, ?3, ?4, ?5)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "creating a key");
    sqlite3_bind_text(st, 1, k.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k.name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, k.hint, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, k.created_at);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_error(s, rc, err, "creating a key");

    memcpy(ret_key, key, sizeof(key));
    if (ret)
        *ret = k;
    return 0;
}

static void row_to_key(sqlite3_stmt *st, struct store_key *k)
{
    *k = (struct store_key){ 0 };
    str_copy(k->id, sizeof(k->id), (const char *)sqlite3_column_text(st, 0));
    str_copy(k->name, sizeof(k->name), (const char *)sqlite3_column_text(st, 1));
    str_copy(k->hint, sizeof(k->hint), (const char *)sqlite3_column_text(st, 2));
    k->created_at = sqlite3_column_int64(st, 3);
    k->revoked_at = sqlite3_column_int64(st, 4);
}

int store_key_list(struct store *s, store_key_cb cb, void *userdata, struct error_record *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT id, name, hint, created_at, revoked_at FROM api_keys "
                                "ORDER BY created_at, rowid",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "listing keys");
    int r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_key k;
        row_to_key(st, &k);
        r = cb(&k, userdata);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = store_sqlite_error(s, rc, err, "listing keys");
    sqlite3_finalize(st);
    return r;
}

int store_key_revoke(struct store *s, const char *id, struct error_record *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "SELECT revoked_at FROM api_keys WHERE id = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "revoking a key");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    int64_t revoked = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return error_set(err, ENOENT, "no key with id '%s'", id);
    if (rc != SQLITE_ROW)
        return store_sqlite_error(s, rc, err, "revoking a key");
    if (revoked)
        return error_set(err, EALREADY, "key '%s' is already revoked", id);

    rc = sqlite3_prepare_v2(s->db, "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at = 0", -1,
                            &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "revoking a key");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
    rc = sqlite3_step(st);
    int changed = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store_sqlite_error(s, rc, err, "revoking a key");
    if (changed == 0) /* revoked by someone else in between */
        return error_set(err, EALREADY, "key '%s' is already revoked", id);
    return 0;
}

int store_key_verify(struct store *s, const char *key, struct error_record *err)
{
    if (!store_key_is_well_formed(key))
        return 0;
    char hash[2 * SHA256_LEN + 1];
    sha256_hex(key, STORE_KEY_LEN, hash);
    sqlite3_stmt *st;
    /* Looked up by the hash: an index probe on a value the caller cannot steer toward a
     * particular row, so the lookup's timing says nothing useful about stored keys. */
    int rc =
        sqlite3_prepare_v2(s->db, "SELECT revoked_at FROM api_keys WHERE key_sha256 = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "checking a key");
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    int r;
    if (rc == SQLITE_ROW)
        r = sqlite3_column_int64(st, 0) == 0 ? 1 : 0;
    else if (rc == SQLITE_DONE)
        r = 0;
    else
        r = store_sqlite_error(s, rc, err, "checking a key");
    sqlite3_finalize(st);
    return r;
}
