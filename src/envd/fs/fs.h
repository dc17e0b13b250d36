/* envd's filesystem service (filesystem.Filesystem over Connect) and the /files endpoints:
 * the module's internal interfaces.
 *
 * Invariant: every filesystem access made for a request runs under the request user's
 * fsuid/fsgid/groups (envd_as_user on the request's own thread, envd_as_root after), so the
 * kernel's permission checks are the boundary: a user cannot read, write, list or watch what
 * the user could not reach from a shell. Nothing here joins a peer-supplied path onto another
 * without the core's envd_resolve_path(), and nothing buffers a whole file in memory.
 *
 * The pure helpers (entry formatting, signatures, MIME, ranges, metadata validation, inotify
 * mapping, tree walks) touch no envd state and are unit-tested on their own. */
#pragma once

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "common/error.h"
#include "common/macro.h"

/* ---- EntryInfo (entry.c) ---- */

enum fs_file_type {
    FS_FILE_TYPE_UNSPECIFIED = 0,
    FS_FILE_TYPE_FILE = 1,
    FS_FILE_TYPE_DIRECTORY = 2,
    FS_FILE_TYPE_SYMLINK = 3,
};

/* "FILE_TYPE_FILE" etc. (proto3 JSON enum names). */
const char *fs_file_type_to_string(enum fs_file_type t);

/* Go's FileMode.String() of an lstat() st_mode: "-rw-r--r--", "drwxr-xr-x", "Lrwxrwxrwx",
 * "dtrwxrwxrwx", "urwxr-xr-x", "Dcrw-rw-rw-". out must hold FS_MODE_STRING_MAX bytes. */
#define FS_MODE_STRING_MAX 24
void fs_mode_string(mode_t mode, char out[FS_MODE_STRING_MAX]);

/* A proto3 JSON Timestamp as Go's protojson writes it: UTC, fractional seconds with 0, 3, 6
 * or 9 digits. out must hold at least 40 bytes. */
void fs_format_timestamp(const struct timespec *ts, char *out, size_t size);

/* Caches uid/gid -> name lookups for one request (a ListDir of many entries). */
struct fs_name_cache {
    struct {
        bool valid;
        unsigned id;
        char name[64];
    } users[4], groups[4];
    unsigned next_user, next_group;
};

/* The facts an EntryInfo is built from; fs_entry_json() is pure over these. */
struct fs_entry_facts {
    const char *name;
    const char *path;
    struct stat lst;            /* lstat() of path */
    bool is_symlink;            /* S_ISLNK(lst.st_mode) */
    bool target_ok;             /* for a symlink: stat() of the target succeeded */
    struct stat target;         /* valid when target_ok */
    const char *symlink_target; /* resolved target path (or path itself), for symlinks */
    const char *owner;
    const char *group;
    json_t *metadata; /* object or NULL; borrowed */
};

/* The EntryInfo JSON object (proto3 JSON: zero values omitted, size as a string). */
json_t *fs_entry_json(const struct fs_entry_facts *f);

/* Builds the EntryInfo of path (lstat, not following a final symlink; for a symlink the
 * target's type and permission bits, and its fully resolved path). Runs with the caller's
 * current identity. names may be NULL. Returns 0 and a new reference, or -errno from lstat. */
int fs_entry_info(const char *path, struct fs_name_cache *names, json_t **ret);

/* ---- metadata (metadata.c) ---- */

#define FS_XATTR_PREFIX "user.e2b."
#define FS_METADATA_KEY_MAX (255 - (sizeof(FS_XATTR_PREFIX) - 1))
#define FS_METADATA_TOTAL_MAX 4096
#define FS_METADATA_HEADER_PREFIX "X-Metadata-"

/* Validates a metadata set (object of strings): keys non-empty and at most
 * FS_METADATA_KEY_MAX bytes, keys and values printable ASCII (0x20-0x7e), total size within
 * FS_METADATA_TOTAL_MAX. Returns 0 or -EINVAL with the reason in err. */
int fs_metadata_validate(const json_t *metadata, struct error_record *err);

/* Adds one header to a metadata set if its name starts (case-insensitively) with
 * X-Metadata-; the key is lowercased, an empty key is ignored, the first value of a key wins.
 * Returns 1 when added, 0 when not a metadata header. */
int fs_metadata_add_header(json_t *metadata, const char *name, const char *value);

/* Reads user.e2b.* xattrs of path (following symlinks) into a new object with the prefix
 * stripped, skipping entries that are not UTF-8. *ret is NULL when there are none or the
 * filesystem has no xattrs. Returns 0 or -errno. */
int fs_metadata_read(const char *path, json_t **ret);
/* The same through an open fd. */
int fs_metadata_read_fd(int fd, json_t **ret);

/* Replaces the user.e2b.* set of the open file with metadata (may be NULL: clears it).
 * Returns 0, -EOPNOTSUPP when the filesystem has no user xattrs, or another -errno. */
int fs_metadata_write_fd(int fd, const json_t *metadata);

/* ---- HTTP helpers (mime.c) ---- */

/* Content-Type for a file name by its extension (case-insensitive), or NULL when unknown. */
const char *fs_content_type_by_name(const char *name);
/* Content-Type sniffed from a file's first bytes: text/plain for UTF-8 text without control
 * bytes, else application/octet-stream. */
const char *fs_content_type_sniff(const void *data, size_t len);

/* `inline; filename=...` as Go's mime.FormatMediaType writes it (token, quoted string, or
 * RFC 2231 filename*=utf-8''...). Returns a malloc'd string. */
char *fs_content_disposition(const char *filename);

enum fs_encoding {
    FS_ENCODING_IDENTITY,
    FS_ENCODING_GZIP,
};

/* Chooses the response encoding from an Accept-Encoding value (NULL: identity). Returns 0
 * with *ret set, or -EINVAL when no acceptable encoding exists (406). */
int fs_accept_encoding(const char *header, enum fs_encoding *ret);
/* Whether identity is acceptable per Accept-Encoding (not excluded by q=0). */
bool fs_identity_acceptable(const char *header);

/* Parses a Range header against a file of size bytes. Returns 1 with [*ret_start, *ret_end]
 * (inclusive) for one satisfiable range, 0 when the header should be ignored (absent,
 * malformed, not bytes, several ranges), -ERANGE when unsatisfiable (416). */
int fs_parse_range(const char *header, uint64_t size, uint64_t *ret_start, uint64_t *ret_end);

/* Parses an HTTP date (IMF-fixdate, RFC 850, asctime). Returns 0 or -EINVAL. */
int fs_parse_http_date(const char *s, time_t *ret);
/* IMF-fixdate; out must hold 30 bytes. */
void fs_format_http_date(time_t t, char *out, size_t size);

/* ---- inotify events (event.c) ---- */

enum fs_event_type {
    FS_EVENT_UNSPECIFIED = 0,
    FS_EVENT_CREATE = 1,
    FS_EVENT_WRITE = 2,
    FS_EVENT_REMOVE = 3,
    FS_EVENT_RENAME = 4,
    FS_EVENT_CHMOD = 5,
};

const char *fs_event_type_to_string(enum fs_event_type t);

/* The inotify mask every watch uses. */
#define FS_WATCH_MASK                                                                                        \
    (IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_ATTRIB | IN_MODIFY | IN_MOVE_SELF | IN_DELETE |            \
     IN_DELETE_SELF)

/* The event types of one inotify mask, in the order envd sends them (create, rename, chmod,
 * write, remove). Returns how many were written to out (at most 5). */
size_t fs_event_types_from_mask(uint32_t mask, enum fs_event_type out[5]);

/* A FilesystemEvent JSON object; entry may be NULL (it is borrowed). */
json_t *fs_event_json(const char *name, enum fs_event_type type, json_t *entry);

/* ---- tree operations (walk.c), all with the caller's current identity ---- */

/* Creates path and its missing parents with mode (umask applies). Returns 0, -EEXIST when
 * path exists (directory or not: *ret_is_dir tells), or -errno (-ENOTDIR when a parent is
 * not a directory). ret_is_dir may be NULL. */
int fs_mkdir_p(const char *path, mode_t mode, bool *ret_is_dir);

/* Removes path and everything under it without following symlinks (os.RemoveAll): a missing
 * path is success. Returns 0 or -errno; -ELOOP when the tree is deeper than the walk
 * allows. */
int fs_remove_all(const char *path);

#define FS_LIST_MAX_ENTRIES 100000

/* Appends the EntryInfo of every entry under dir, down to depth levels (1: the entries of
 * dir), not following symlinks, not including dir. Each entry's path is shown under
 * shown_dir (the path as requested, before symlinks were resolved). Unreadable
 * subdirectories are listed but not entered. Returns 0, -E2BIG when there are more than
 * max_entries (found before any is looked at in a directory too large), or -errno for dir
 * itself. */
int fs_list_dir(const char *dir, const char *shown_dir, unsigned depth, size_t max_entries, json_t *entries);

/* ---- multipart bodies (multipart.c) ---- */

/* Receives the file parts of a multipart/form-data body (form field "file"; other fields are
 * skipped). begin() opens a part, write() gets its bytes in order, end() closes it after its
 * closing boundary was seen; abort() drops a part that never completed. Each returns 0 or
 * -errno with err filled. */
struct fs_part_sink {
    int (*begin)(void *cls, const char *filename, struct error_record *err);
    int (*write)(void *cls, const char *data, size_t len, struct error_record *err);
    int (*end)(void *cls, struct error_record *err);
    void (*abort)(void *cls);
};

struct fs_multipart;

/* Starts parsing the body of conn (whose Content-Type must be multipart/form-data with a
 * boundary). Returns 0 or -EINVAL. */
int fs_multipart_new(struct MHD_Connection *conn, const struct fs_part_sink *sink, void *cls,
                     struct fs_multipart **ret, struct error_record *err);
/* Feeds body bytes. After the first failure every call returns that error again. */
int fs_multipart_feed(struct fs_multipart *m, const char *data, size_t len, struct error_record *err);
/* The body is complete: checks the closing boundary and ends the last part. */
int fs_multipart_finish(struct fs_multipart *m, struct error_record *err);
/* Frees m; a part still open is aborted. Accepts NULL. */
void fs_multipart_free(struct fs_multipart *m);

/* Names of uploads' temporary files (upload.c); watchers do not report them. */
#define FS_UPLOAD_TEMP_PREFIX ".hutch-upload-"

/* ---- HTTP status of an errno from a file operation ---- */
unsigned fs_errno_to_http_status(int errnum);

/* ---- watchers (watch.c) ---- */

/* Closes every polling watcher (for tests and shutdown). */
void fs_watchers_shutdown(void);
