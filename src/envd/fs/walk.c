/* Tree operations of the filesystem service: mkdir -p, remove -r and the depth-limited
 * listing. They run with the caller's identity (the request user's, see fs.h) and never follow
 * a symlink below the path they were given: removal walks by directory fd with O_NOFOLLOW,
 * listing descends only into entries that lstat() calls directories. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/xalloc.h"
#include "envd/fs/fs.h"
#include "common/banned.h"

/* Deepest tree fs_remove_all() enters: one directory fd is held per level. */
#define REMOVE_MAX_DEPTH 256

int fs_mkdir_p(const char *path, mode_t mode, bool *ret_is_dir)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (ret_is_dir)
            *ret_is_dir = S_ISDIR(st.st_mode);
        return -EEXIST;
    }
    if (errno != ENOENT)
        return -errno;

    size_t len = strlen(path);
    if (len == 0 || len >= PATH_MAX)
        return -EINVAL;
    _cleanup_free_ char *p = xstrdup(path);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = '\0';
    /* Create each missing component from the top; an existing one must be a directory. */
    for (char *s = p + 1;; s++) {
        bool last = *s == '\0';
        if (*s != '/' && !last)
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, mode) < 0) {
            int e = errno;
            if (e != EEXIST) {
                *s = saved;
                return -e;
            }
            if (stat(p, &st) < 0) {
                e = errno;
                *s = saved;
                return -e;
            }
            if (!S_ISDIR(st.st_mode)) {
                *s = saved;
                return -ENOTDIR;
            }
            if (last) {
                if (ret_is_dir)
                    *ret_is_dir = true;
                return -EEXIST; /* created concurrently */
            }
        }
        *s = saved;
        if (last)
            break;
    }
    return 0;
}

static int remove_dir_contents(int dfd, unsigned depth)
{
    if (depth > REMOVE_MAX_DEPTH)
        return -ELOOP;
    int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
    if (dup_fd < 0)
        return -errno;
    DIR *d = fdopendir(dup_fd);
    if (!d) {
        int e = errno;
        close(dup_fd);
        return -e;
    }
    int r = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0 && r == 0)
                r = -errno;
            break;
        }
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        if (unlinkat(dfd, de->d_name, 0) == 0 || errno == ENOENT)
            continue;
        if (errno != EISDIR && errno != EPERM) {
            if (r == 0)
                r = -errno;
            continue;
        }
        int cfd = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd < 0) {
            /* EPERM from unlinkat on something that is not a directory is a real EPERM. */
            if (r == 0)
                r = errno == ENOTDIR || errno == ELOOP ? -EPERM : -errno;
            continue;
        }
        int k = remove_dir_contents(cfd, depth + 1);
        close(cfd);
        if (k < 0 && r == 0)
            r = k;
        if (unlinkat(dfd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
            r = -errno;
    }
    closedir(d);
    return r;
}

int fs_remove_all(const char *path)
{
    if (!path || !*path || streq(path, "/"))
        return -EINVAL;
    if (unlink(path) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : (errno == ENOTDIR || errno == ELOOP) ? -EPERM : -errno;
    int r = remove_dir_contents(dfd, 1);
    close(dfd);
    if (rmdir(path) < 0 && errno != ENOENT)
        return r < 0 ? r : -errno;
    return 0;
}

static int list_level(const char *dir, const char *shown, unsigned depth, unsigned max_depth,
                      size_t max_entries, json_t *entries, struct fs_name_cache *names)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (depth > 1 ? O_NOFOLLOW : 0));
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d)
        return -errno;
    TAKE_FD(fd);
    /* Sorted like Go's WalkDir (lexical by name), and so that the listing is stable. */
    struct dirent **list = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                r = -errno;
            break;
        }
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        if (n + json_array_size(entries) >= max_entries) {
            r = -E2BIG; /* bounded before sorting, whatever the directory holds */
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            list = xreallocarray(list, cap, sizeof(*list));
        }
        size_t sz = offsetof(struct dirent, d_name) + strlen(de->d_name) + 1;
        list[n] = xmalloc(sz < sizeof(struct dirent) ? sizeof(struct dirent) : sz);
        memcpy(list[n], de, sz);
        n++;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(list[j]->d_name, list[j - 1]->d_name) < 0; j--) {
            struct dirent *t = list[j];
            list[j] = list[j - 1];
            list[j - 1] = t;
        }

    for (size_t i = 0; i < n && r == 0; i++) {
        const char *nm = list[i]->d_name;
        _cleanup_free_ char *real = xasprintf("%s%s%s", dir, streq(dir, "/") ? "" : "/", nm);
        _cleanup_free_ char *show = xasprintf("%s%s%s", shown, streq(shown, "/") ? "" : "/", nm);
        json_t *e = NULL;
        if (json_array_size(entries) >= max_entries) {
            r = -E2BIG;
            break;
        }
        if (fs_entry_info(real, names, &e) < 0)
            continue; /* gone since readdir, as envd skips such entries */
        json_object_set_new(e, "path", json_string(show) ?: json_string("\xef\xbf\xbd"));
        json_array_append_new(entries, e);
        struct stat st;
        if (depth < max_depth && lstat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
            int k = list_level(real, show, depth + 1, max_depth, max_entries, entries, names);
            if (k == -E2BIG)
                r = k;
            /* Other failures (an unreadable subdirectory) leave it listed but not entered. */
        }
    }
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return r;
}

int fs_list_dir(const char *dir, const char *shown_dir, unsigned depth, size_t max_entries, json_t *entries)
{
    struct fs_name_cache names = { 0 };
    if (depth == 0)
        depth = 1;
    return list_level(dir, shown_dir, 1, depth, max_entries, entries, &names);
}
