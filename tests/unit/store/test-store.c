#include <errno.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store-test.h"
#include "tap.h"

struct collect {
    int n;
    struct store_key keys[8];
};

static int collect_cb(const struct store_key *k, void *ud)
{
    struct collect *c = ud;
    if (c->n < 8)
        c->keys[c->n] = *k;
    c->n++;
    return 0;
}

TEST(create_verify_revoke)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char key[STORE_KEY_LEN + 1];
    struct store_key k;
    ASSERT_OK(store_key_create(s, "ci", key, &k, &e));
    ASSERT_TRUE(store_key_is_well_formed(key));
    ASSERT_EQ(strlen(key), STORE_KEY_LEN);
    ASSERT_EQ(strncmp(key, "e2b_", 4), 0);
    ASSERT_EQ(store_key_verify(s, key, &e), 1);

    char other[STORE_KEY_LEN + 1];
    memcpy(other, key, sizeof(other));
    other[STORE_KEY_LEN - 1] = other[STORE_KEY_LEN - 1] == 'a' ? 'b' : 'a';
    ASSERT_EQ(store_key_verify(s, other, &e), 0);
    ASSERT_EQ(store_key_verify(s, "e2b_", &e), 0);
    ASSERT_EQ(store_key_verify(s, "", &e), 0);

    ASSERT_OK(store_key_revoke(s, k.id, &e));
    ASSERT_EQ(store_key_verify(s, key, &e), 0);
    ASSERT_EQ(store_key_revoke(s, k.id, &e), -EALREADY);
    ASSERT_EQ(store_key_revoke(s, "key_nothere", &e), -ENOENT);
    ASSERT_TRUE(strstr(e.msg, "key_nothere") != NULL);
    store_free(s);
}

TEST(key_is_not_stored_in_clear)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char key[STORE_KEY_LEN + 1];
    ASSERT_OK(store_key_create(s, NULL, key, NULL, &e));
    store_free(s);

    char path[128];
    snprintf(path, sizeof(path), "%s/hutch.db", tap_tmpdir());
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT count(*) FROM api_keys WHERE id = ?1 OR name = ?1 OR "
                                 "key_sha256 = ?1 OR hint = ?1 OR instr(key_sha256, ?2) > 0",
                                 -1, &st, NULL),
              SQLITE_OK);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key + 4, -1, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(db);

    struct stat sb;
    ASSERT_OK(stat(path, &sb));
    ASSERT_EQ(sb.st_mode & 0077, 0);
    ASSERT_OK(stat(tap_tmpdir(), &sb));
    ASSERT_EQ(sb.st_mode & 0077, 0);
}

TEST(list_in_creation_order_and_reopen_keeps_data)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char key[STORE_KEY_LEN + 1];
    ASSERT_OK(store_key_create(s, "first", key, NULL, &e));
    ASSERT_OK(store_key_create(s, "second", key, NULL, &e));
    store_free(s);
    ASSERT_OK(store_open(tap_tmpdir(), &s, &e));
    struct collect c = { 0 };
    ASSERT_OK(store_key_list(s, collect_cb, &c, &e));
    ASSERT_EQ(c.n, 2);
    ASSERT_STREQ(c.keys[0].name, "first");
    ASSERT_STREQ(c.keys[1].name, "second");
    ASSERT_EQ(strncmp(c.keys[0].hint, "e2b_...", 7), 0);
    store_free(s);
}

TEST(bad_names_rejected)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    char key[STORE_KEY_LEN + 1];
    char big[STORE_KEY_NAME_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ASSERT_EQ(store_key_create(s, big, key, NULL, &e), -EINVAL);
    ASSERT_EQ(store_key_create(s, "\xff\xfe", key, NULL, &e), -EINVAL);
    store_free(s);
}

TEST(newer_schema_is_refused)
{
    struct store *s = store_test_open();
    store_free(s);
    char path[128];
    snprintf(path, sizeof(path), "%s/hutch.db", tap_tmpdir());
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct error_record e = { 0 };
    ASSERT_EQ(store_open(tap_tmpdir(), &s, &e), -EPROTO);
    ASSERT_TRUE(strstr(e.msg, "newer") != NULL);
}

TEST(state_dir_that_is_a_file_is_refused)
{
    struct error_record e = { 0 };
    struct store *s;
    ASSERT_EQ(store_open("/etc/hostname", &s, &e), -ENOTDIR);
}

TEST(well_formed_keys)
{
    ASSERT_TRUE(store_key_is_well_formed("e2b_0123456789abcdef0123456789abcdef01234567"));
    ASSERT_FALSE(store_key_is_well_formed("e2b_0123456789ABCDEF0123456789abcdef01234567"));
    ASSERT_FALSE(store_key_is_well_formed("e2b_0123"));
    ASSERT_FALSE(store_key_is_well_formed("xyz_0123456789abcdef0123456789abcdef01234567"));
    ASSERT_FALSE(store_key_is_well_formed(NULL));
}

static void insert(struct store *s, const char *id, int64_t started, enum store_sandbox_state state,
                   const char *tpl)
{
    struct store_sandbox sb = { .state = state,
                                .started_at_ms = started,
                                .end_at_ms = started + 1000,
                                .cpu_count = 2,
                                .memory_mb = 512,
                                .disk_mb = 1024,
                                .metadata_json = (char *)"{}" };
    snprintf(sb.id, sizeof(sb.id), "%s", id);
    snprintf(sb.template_id, sizeof(sb.template_id), "%s", tpl);
    snprintf(sb.envd_version, sizeof(sb.envd_version), "0.6.13");
    struct error_record e = { 0 };
    ASSERT_OK(store_sandbox_insert(s, &sb, &e));
}

struct ids {
    char list[16][STORE_SANDBOX_ID_MAX + 1];
    int n;
    const char *skip;
};

static int collect_ids(const struct store_sandbox *sb, void *ud)
{
    struct ids *c = ud;
    if (c->skip && strcmp(sb->id, c->skip) == 0)
        return 0;
    snprintf(c->list[c->n++], sizeof(c->list[0]), "%s", sb->id);
    return 1;
}

TEST(sandboxes_round_trip)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    insert(s, "aaa", 1000, STORE_SANDBOX_RUNNING, "base");
    struct store_sandbox got;
    ASSERT_OK(store_sandbox_get(s, "aaa", &got, &e));
    ASSERT_STREQ(got.template_id, "base");
    ASSERT_EQ(got.started_at_ms, 1000);
    ASSERT_STREQ(got.metadata_json, "{}");
    store_sandbox_release(&got);
    ASSERT_OK(store_sandbox_set_end(s, "aaa", 5000, &e));
    ASSERT_OK(store_sandbox_set_state(s, "aaa", STORE_SANDBOX_PAUSED, &e));
    ASSERT_OK(store_sandbox_get(s, "aaa", &got, &e));
    ASSERT_EQ(got.end_at_ms, 5000);
    ASSERT_EQ(got.state, STORE_SANDBOX_PAUSED);
    store_sandbox_release(&got);
    ASSERT_OK(store_sandbox_delete(s, "aaa", &e));
    ASSERT_EQ(store_sandbox_get(s, "aaa", &got, &e), -ENOENT);
    ASSERT_EQ(store_sandbox_delete(s, "aaa", &e), -ENOENT);
    ASSERT_EQ(store_sandbox_set_end(s, "aaa", 1, &e), -ENOENT);
    store_free(s);
}

TEST(sandboxes_pages_filters_and_order)
{
    struct store *s = store_test_open();
    struct error_record e = { 0 };
    insert(s, "s1", 100, STORE_SANDBOX_RUNNING, "base");
    insert(s, "s2", 200, STORE_SANDBOX_PAUSED, "base");
    insert(s, "s3", 300, STORE_SANDBOX_RUNNING, "other");
    insert(s, "s4", 300, STORE_SANDBOX_RUNNING, "base"); /* same start: the id breaks the tie */
    insert(s, "s5", 500, STORE_SANDBOX_KILLED, "base");

    struct store_sandbox_query q = { .states = 1u << STORE_SANDBOX_RUNNING | 1u << STORE_SANDBOX_PAUSED };
    char next[STORE_CURSOR_MAX];
    struct ids c = { 0 };
    ASSERT_OK(store_sandbox_list(s, &q, 2, collect_ids, &c, next, &e));
    ASSERT_EQ(c.n, 2);
    ASSERT_STREQ(c.list[0], "s4");
    ASSERT_STREQ(c.list[1], "s3");
    ASSERT_TRUE(next[0] != '\0');
    q.cursor = next;
    char next2[STORE_CURSOR_MAX];
    ASSERT_OK(store_sandbox_list(s, &q, 2, collect_ids, &c, next2, &e));
    ASSERT_EQ(c.n, 4);
    ASSERT_STREQ(c.list[2], "s2");
    ASSERT_STREQ(c.list[3], "s1");
    ASSERT_STREQ(next2, "");

    struct store_sandbox_query asc = { .states = 1u << STORE_SANDBOX_RUNNING,
                                       .ascending = true,
                                       .template_id = "base",
                                       .started_after_ms = 100 };
    struct ids c2 = { 0 };
    ASSERT_OK(store_sandbox_list(s, &asc, 10, collect_ids, &c2, next, &e));
    ASSERT_EQ(c2.n, 1);
    ASSERT_STREQ(c2.list[0], "s4");

    /* a filter that skips entries still fills the page */
    struct ids c3 = { .skip = "s4" };
    q.cursor = NULL;
    ASSERT_OK(store_sandbox_list(s, &q, 2, collect_ids, &c3, next, &e));
    ASSERT_EQ(c3.n, 2);
    ASSERT_STREQ(c3.list[0], "s3");
    ASSERT_STREQ(c3.list[1], "s2");

    const char *bad[] = { "x", "_s1", "12_", "12_S1", "12_s/1", "99999999999999999999999_s1" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        q.cursor = bad[i];
        ASSERT_EQ(store_sandbox_list(s, &q, 2, collect_ids, &c3, next, &e), -EINVAL);
    }
    store_free(s);
}
