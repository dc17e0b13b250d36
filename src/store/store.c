/* See store.h. Opening, pragmas and schema migrations. */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "store/store-internal.h"
#include "common/banned.h"

/* Each entry moves the schema from version i to i+1. Append only: a released migration is
 * never edited, since databases in the field have already run it. */
static const char *const migrations[] = {
    /* 0 -> 1: API keys. */
    "CREATE TABLE api_keys ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL DEFAULT '',"
    "  key_sha256 TEXT NOT NULL UNIQUE,"
    "  hint TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  revoked_at INTEGER NOT NULL DEFAULT 0"
    ") STRICT;",
    /* 1 -> 2: sandboxes. Times in unix milliseconds; metadata a JSON object of strings. */
    "CREATE TABLE sandboxes ("
    "  id TEXT PRIMARY KEY,"
    "  template_id TEXT NOT NULL,"
    "  alias TEXT NOT NULL DEFAULT '',"
    "  state TEXT NOT NULL CHECK (state IN ('running', 'paused', 'killed')),"
    "  started_at INTEGER NOT NULL,"
    "  end_at INTEGER NOT NULL,"
    "  cpu_count INTEGER NOT NULL,"
    "  memory_mb INTEGER NOT NULL,"
    "  disk_mb INTEGER NOT NULL,"
    "  envd_version TEXT NOT NULL,"
    "  envd_access_token TEXT NOT NULL DEFAULT '',"
    "  metadata TEXT NOT NULL DEFAULT '{}',"
    "  on_timeout TEXT NOT NULL DEFAULT 'kill' CHECK (on_timeout IN ('kill', 'pause')),"
    "  slot INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX sandboxes_by_start ON sandboxes (started_at, id);",
    /* 2 -> 3: whether traffic resumes a paused sandbox. */
    "ALTER TABLE sandboxes ADD COLUMN auto_resume INTEGER NOT NULL DEFAULT 0;",
    /* 3 -> 4: templates, their names, builds, tags and build logs. */
    "CREATE TABLE templates ("
    "  id TEXT PRIMARY KEY,"
    "  is_snapshot INTEGER NOT NULL DEFAULT 0,"
    "  source_sandbox TEXT NOT NULL DEFAULT '',"
    "  public INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  last_spawned_at INTEGER NOT NULL DEFAULT 0,"
    "  spawn_count INTEGER NOT NULL DEFAULT 0"
    ") STRICT;"
    "CREATE INDEX templates_by_creation ON templates (created_at, id);"
    "CREATE TABLE template_names ("
    "  name TEXT PRIMARY KEY,"
    "  template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE"
    ") STRICT;"
    "CREATE TABLE builds ("
    "  id TEXT PRIMARY KEY,"
    "  template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,"
    "  status TEXT NOT NULL CHECK (status IN ('waiting', 'building', 'ready', 'error')),"
    "  cpu_count INTEGER NOT NULL DEFAULT 0,"
    "  memory_mb INTEGER NOT NULL DEFAULT 0,"
    "  disk_mb INTEGER NOT NULL DEFAULT 0,"
    "  envd_version TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  finished_at INTEGER NOT NULL DEFAULT 0,"
    "  layers TEXT,"
    "  config TEXT,"
    "  reason TEXT,"
    "  reason_step TEXT"
    ") STRICT;"
    "CREATE INDEX builds_by_template ON builds (template_id, created_at);"
    "CREATE TABLE template_tags ("
    "  template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,"
    "  tag TEXT NOT NULL,"
    "  build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (template_id, tag)"
    ") STRICT;"
    "CREATE TABLE build_logs ("
    "  build_id TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  level TEXT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  step TEXT,"
    "  PRIMARY KEY (build_id, seq)"
    ") STRICT;",
    /* 4 -> 5: what a sandbox needs to be started again from disk after a pause: its lower
     * layers (JSON, top first: its own saved layers over its template's), what else it was
     * created with (template settings, env vars, network: JSON), and how its last pause was
     * kept ('memory' or 'filesystem'). */
    "ALTER TABLE sandboxes ADD COLUMN layers TEXT NOT NULL DEFAULT '[]';"
    "ALTER TABLE sandboxes ADD COLUMN restore TEXT NOT NULL DEFAULT '{}';"
    "ALTER TABLE sandboxes ADD COLUMN pause_mode TEXT NOT NULL DEFAULT '';",
};

int store_schema_version(void)
{
    return (int)(sizeof(migrations) / sizeof(migrations[0]));
}

int store_sqlite_error(struct store *s, int rc, struct error_record *err, const char *what)
{
    int e = rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? EBUSY
            : rc == SQLITE_FULL                      ? ENOSPC
            : rc == SQLITE_CANTOPEN                  ? EACCES
            : rc == SQLITE_CONSTRAINT                ? EEXIST
            : rc == SQLITE_READONLY                  ? EROFS
                                                     : EIO;
    return error_set(err, e, "%s: %s", what, s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

static int exec_sql(struct store *s, const char *sql, struct error_record *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int r = error_set(err, rc == SQLITE_BUSY ? EBUSY : EIO, "store: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

static int user_version(struct store *s, int *ret, struct error_record *err)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc, err, "reading schema version");
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return store_sqlite_error(s, rc, err, "reading schema version");
    }
    *ret = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

static int migrate(struct store *s, struct error_record *err)
{
    /* BEGIN IMMEDIATE takes the write lock first, so two processes opening a fresh state dir
     * at once cannot both run a migration. */
    int r = exec_sql(s, "BEGIN IMMEDIATE", err);
    if (r < 0)
        return r;
    int version = 0;
    r = user_version(s, &version, err);
    if (r < 0)
        goto fail;
    if (version > store_schema_version()) {
        r = error_set(err, EPROTO, "store: database schema %d is newer than this hutch (%d)", version,
                      store_schema_version());
        goto fail;
    }
    for (int v = version; v < store_schema_version(); v++) {
        r = exec_sql(s, migrations[v], err);
        if (r < 0)
            goto fail;
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
        r = exec_sql(s, pragma, err);
        if (r < 0)
            goto fail;
    }
    return exec_sql(s, "COMMIT", err);
fail:
    exec_sql(s, "ROLLBACK", NULL);
    return r;
}

int store_open(const char *state_dir, struct store **ret, struct error_record *err)
{
    if (mkdir(state_dir, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "creating state directory %s", state_dir);
    struct stat st;
    if (stat(state_dir, &st) < 0)
        return error_set_errno(err, errno, "state directory %s", state_dir);
    if (!S_ISDIR(st.st_mode))
        return error_set(err, ENOTDIR, "state directory %s is not a directory", state_dir);

    _cleanup_free_ char *path = xasprintf("%s/hutch.db", state_dir);
    struct store *s = xcalloc(1, sizeof(*s));
    /* The database holds key hashes and sandbox records: owner-only from its first byte. The
     * file is made here with mode 0600 (SQLite gives its -wal and -shm files the database's
     * mode); changing the umask instead would race other threads creating files. Only when it
     * does not exist yet: closing any fd of a database file drops every POSIX lock this
     * process holds on it, including those of another open store (SQLite's WAL would then be
     * treated as abandoned by the next process that closes the database). */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) {
        int r = error_set_errno(err, errno, "creating %s", path);
        store_free(s);
        return r;
    }
    if (fd >= 0)
        close(fd);
    int rc =
        sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int r = store_sqlite_error(s, rc, err, path);
        store_free(s);
        return r;
    }
    sqlite3_busy_timeout(s->db, 5000);
    int r =
        exec_sql(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;", err);
    if (r >= 0)
        r = migrate(s, err);
    if (r < 0) {
        store_free(s);
        return r;
    }
    *ret = s;
    return 0;
}

void store_free(struct store *s)
{
    if (!s)
        return;
    sqlite3_close_v2(s->db);
    free(s);
}
