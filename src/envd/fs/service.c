/* filesystem.Filesystem over Connect: Stat, MakeDir, Move, ListDir, Remove (this file) and
 * WatchDir, CreateWatcher, GetWatcherEvents, RemoveWatcher (watch.c).
 *
 * Each handler resolves the run-as user and the path as envd does, then does its filesystem
 * work between envd_as_user() and envd_as_root() on the request's thread, so that the kernel
 * checks the user's own permissions. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "envd/envd.h"
#include "envd/fs/fs.h"
#include "envd/fs/service.h"
#include "common/banned.h"

enum connect_code fs_errno_to_connect(int errnum)
{
    switch (abs(errnum)) {
    case ENOENT:
    case ENOTDIR:
        return CONNECT_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return CONNECT_PERMISSION_DENIED;
    case ELOOP:
        return CONNECT_FAILED_PRECONDITION;
    case EEXIST:
    case ENOTEMPTY:
        return CONNECT_ALREADY_EXISTS;
    case EINVAL:
    case ENAMETOOLONG:
    case EISDIR:
        return CONNECT_INVALID_ARGUMENT;
    case ENOSPC:
    case EDQUOT:
    case E2BIG:
    case EMFILE:
    case ENFILE:
        return CONNECT_RESOURCE_EXHAUSTED;
    default:
        return CONNECT_INTERNAL;
    }
}

int fs_connect_errno(struct connect_error *err, int errnum, const char *what, const char *path)
{
    int e = abs(errnum);
    if (e == ELOOP)
        return connect_error_set(err, CONNECT_FAILED_PRECONDITION,
                                 "cyclic symlink or chain of too many links at '%s'", path);
    return connect_error_set(err, fs_errno_to_connect(e), "%s '%s': %s", what, path, errno_to_string(e));
}

int fs_req_string(const json_t *req, const char *camel, const char *snake, const char **ret,
                  struct connect_error *err)
{
    json_t *v = json_object_get(req, camel);
    if (!v && snake)
        v = json_object_get(req, snake);
    if (!v || json_is_null(v)) {
        *ret = "";
        return 0;
    }
    if (!json_is_string(v))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "field '%s' must be a string", camel);
    *ret = json_string_value(v);
    if (strlen(*ret) != json_string_length(v))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "field '%s' contains a NUL byte", camel);
    return 0;
}

int fs_req_bool(const json_t *req, const char *camel, const char *snake, bool *ret, struct connect_error *err)
{
    json_t *v = json_object_get(req, camel);
    if (!v && snake)
        v = json_object_get(req, snake);
    if (!v || json_is_null(v)) {
        *ret = false;
        return 0;
    }
    if (!json_is_boolean(v))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "field '%s' must be a boolean", camel);
    *ret = json_is_true(v);
    return 0;
}

static int req_uint32(const json_t *req, const char *name, uint32_t *ret, struct connect_error *err)
{
    json_t *v = json_object_get(req, name);
    *ret = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > UINT32_MAX)
            return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "field '%s' is out of range", name);
        *ret = (uint32_t)i;
        return 0;
    }
    if (json_is_string(v) && parse_uint32(json_string_value(v), ret) == 0)
        return 0;
    return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "field '%s' must be a uint32", name);
}

int fs_req_user_path(struct connect_call *call, const char *path, struct envd_user *user, char **ret_path,
                     struct connect_error *err)
{
    if (envd_request_user(call->conn, user, err) < 0)
        return -1;
    struct error_record e;
    if (envd_resolve_path(user, path, ret_path, &e) < 0)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "%s", e.msg);
    return 0;
}

int fs_become(const struct envd_user *user, struct connect_error *err)
{
    int r = envd_as_user(user);
    if (r < 0)
        return connect_error_set(err, CONNECT_PERMISSION_DENIED, "cannot act as user '%s': %s", user->name,
                                 errno_to_string(-r));
    return 0;
}

static int reply_entry(const char *path, json_t **ret_resp, struct connect_error *err)
{
    json_t *entry;
    int r = fs_entry_info(path, NULL, &entry);
    if (r < 0)
        return fs_connect_errno(err, r, "cannot stat", path);
    *ret_resp = json_pack("{s:o}", "entry", entry);
    return 0;
}

static int fs_stat(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err)
{
    const char *p;
    struct envd_user user;
    _cleanup_free_ char *path = NULL;
    if (fs_req_string(req, "path", NULL, &p, err) < 0 || fs_req_user_path(call, p, &user, &path, err) < 0 ||
        fs_become(&user, err) < 0)
        return -1;
    int r = reply_entry(path, ret_resp, err);
    envd_as_root();
    return r;
}

static int fs_make_dir(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err)
{
    const char *p;
    struct envd_user user;
    _cleanup_free_ char *path = NULL;
    if (fs_req_string(req, "path", NULL, &p, err) < 0 || fs_req_user_path(call, p, &user, &path, err) < 0 ||
        fs_become(&user, err) < 0)
        return -1;
    bool is_dir = false;
    int r = fs_mkdir_p(path, 0755, &is_dir);
    if (r == -EEXIST)
        r = is_dir ? connect_error_set(err, CONNECT_ALREADY_EXISTS, "directory already exists: %s", path)
                   : connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                       "path already exists but it is not a directory: %s", path);
    else if (r == -ENOTDIR)
        r = connect_error_set(err, CONNECT_INVALID_ARGUMENT, "a parent of '%s' is not a directory", path);
    else if (r < 0)
        r = fs_connect_errno(err, r, "cannot create directory", path);
    else
        r = reply_entry(path, ret_resp, err);
    envd_as_root();
    return r;
}

static int fs_move(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err)
{
    const char *s, *d;
    struct envd_user user;
    _cleanup_free_ char *src = NULL, *dst = NULL, *parent = NULL;
    if (fs_req_string(req, "source", NULL, &s, err) < 0 ||
        fs_req_string(req, "destination", NULL, &d, err) < 0 ||
        fs_req_user_path(call, s, &user, &src, err) < 0)
        return -1;
    struct error_record e;
    if (envd_resolve_path(&user, d, &dst, &e) < 0)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "%s", e.msg);
    if (fs_become(&user, err) < 0)
        return -1;
    int r;
    struct stat st;
    if (lstat(src, &st) < 0) {
        r = errno == ENOENT ? connect_error_set(err, CONNECT_NOT_FOUND, "source file not found: %s", src)
                            : fs_connect_errno(err, -errno, "cannot stat", src);
        goto out;
    }
    parent = xstrdup(dst);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        r = fs_mkdir_p(parent, 0755, NULL);
        if (r < 0 && r != -EEXIST) {
            r = fs_connect_errno(err, r, "cannot create directory", parent);
            goto out;
        }
    }
    if (rename(src, dst) < 0) {
        r = errno == ENOENT ? connect_error_set(err, CONNECT_NOT_FOUND, "source file not found: %s", src)
                            : fs_connect_errno(err, -errno, "cannot move to", dst);
        goto out;
    }
    r = reply_entry(dst, ret_resp, err);
out:
    envd_as_root();
    return r;
}

static int fs_list_dir_rpc(struct connect_call *call, json_t *req, json_t **ret_resp,
                           struct connect_error *err)
{
    const char *p;
    uint32_t depth;
    struct envd_user user;
    _cleanup_free_ char *path = NULL;
    if (fs_req_string(req, "path", NULL, &p, err) < 0 || req_uint32(req, "depth", &depth, err) < 0 ||
        fs_req_user_path(call, p, &user, &path, err) < 0 || fs_become(&user, err) < 0)
        return -1;
    int r;
    _cleanup_json_ json_t *entries = NULL;
    _cleanup_free_ char *real = realpath(path, NULL);
    struct stat st;
    if (!real) {
        r = errno == ENOENT ? connect_error_set(err, CONNECT_NOT_FOUND, "path not found: %s", path)
                            : fs_connect_errno(err, -errno, "cannot resolve", path);
        goto out;
    }
    if (stat(real, &st) < 0) {
        r = fs_connect_errno(err, -errno, "cannot stat", path);
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        r = connect_error_set(err, CONNECT_INVALID_ARGUMENT, "path is not a directory: %s", path);
        goto out;
    }
    entries = json_array();
    r = fs_list_dir(real, path, depth, FS_LIST_MAX_ENTRIES, entries);
    if (r == -E2BIG) {
        r = connect_error_set(err, CONNECT_RESOURCE_EXHAUSTED, "more than %d entries under %s",
                              FS_LIST_MAX_ENTRIES, path);
        goto out;
    }
    if (r < 0) {
        r = fs_connect_errno(err, r, "cannot read directory", path);
        goto out;
    }
    *ret_resp = json_pack("{s:O}", "entries", entries);
    r = 0;
out:
    envd_as_root();
    return r;
}

static int fs_remove(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err)
{
    const char *p;
    struct envd_user user;
    _cleanup_free_ char *path = NULL;
    if (fs_req_string(req, "path", NULL, &p, err) < 0 || fs_req_user_path(call, p, &user, &path, err) < 0)
        return -1;
    if (streq(path, "/"))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "refusing to remove /");
    if (fs_become(&user, err) < 0)
        return -1;
    int r = fs_remove_all(path);
    envd_as_root();
    if (r == -ELOOP)
        return connect_error_set(err, CONNECT_FAILED_PRECONDITION, "directory tree under %s is too deep",
                                 path);
    if (r < 0)
        return fs_connect_errno(err, r, "error removing file or directory", path);
    *ret_resp = json_object();
    return 0;
}

const struct connect_method envd_filesystem_methods[] = {
    { .path = "/filesystem.Filesystem/Stat", .unary = fs_stat },
    { .path = "/filesystem.Filesystem/MakeDir", .unary = fs_make_dir },
    { .path = "/filesystem.Filesystem/Move", .unary = fs_move },
    { .path = "/filesystem.Filesystem/ListDir", .unary = fs_list_dir_rpc },
    { .path = "/filesystem.Filesystem/Remove", .unary = fs_remove },
    { .path = "/filesystem.Filesystem/WatchDir", .stream = fs_watch_dir },
    { .path = "/filesystem.Filesystem/CreateWatcher", .unary = fs_create_watcher },
    { .path = "/filesystem.Filesystem/GetWatcherEvents", .unary = fs_get_watcher_events },
    { .path = "/filesystem.Filesystem/RemoveWatcher", .unary = fs_remove_watcher },
    { .path = NULL },
};
