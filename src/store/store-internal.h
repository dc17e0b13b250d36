/* What the store's files share and nothing outside src/store/ may use. */
#pragma once

#include <sqlite3.h>

#include "common/error.h"

struct store {
    sqlite3 *db;
};

/* Maps a SQLite result code to -errno and fills err with what and SQLite's message. */
int store_sqlite_error(struct store *s, int rc, struct error_record *err, const char *what);
