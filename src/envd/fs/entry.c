/* EntryInfo as envd reports it (e2b-compat 3.5): Go's FileMode string of the lstat mode,
 * permission bits of the target for symlinks, owner and group names, RFC 3339 times, and the
 * user.e2b.* metadata. fs_entry_json() is pure; fs_entry_info() gathers the facts. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "envd/fs/fs.h"
#include "envd/passwd.h"
#include "common/banned.h"

const char *fs_file_type_to_string(enum fs_file_type t)
{
    switch (t) {
    case FS_FILE_TYPE_FILE:
        return "FILE_TYPE_FILE";
    case FS_FILE_TYPE_DIRECTORY:
        return "FILE_TYPE_DIRECTORY";
    case FS_FILE_TYPE_SYMLINK:
        return "FILE_TYPE_SYMLINK";
    default:
        return "FILE_TYPE_UNSPECIFIED";
    }
}

void fs_mode_string(mode_t mode, char out[FS_MODE_STRING_MAX])
{
    /* Go's os.FileMode bits, most significant first: "dalTLDpSugct?". Only the ones a Linux
     * stat can set are derived here (a, l, T and ? never are). */
    size_t w = 0;
    switch (mode & S_IFMT) {
    case S_IFDIR:
        out[w++] = 'd';
        break;
    case S_IFLNK:
        out[w++] = 'L';
        break;
    case S_IFBLK:
        out[w++] = 'D';
        break;
    case S_IFCHR:
        out[w++] = 'D'; /* ModeDevice | ModeCharDevice: "D" here, "c" below */
        break;
    case S_IFIFO:
        out[w++] = 'p';
        break;
    case S_IFSOCK:
        out[w++] = 'S';
        break;
    default:
        break;
    }
    if (mode & S_ISUID)
        out[w++] = 'u';
    if (mode & S_ISGID)
        out[w++] = 'g';
    if ((mode & S_IFMT) == S_IFCHR)
        out[w++] = 'c';
    if (mode & S_ISVTX)
        out[w++] = 't';
    if (w == 0)
        out[w++] = '-';
    static const char rwx[] = "rwxrwxrwx";
    for (int i = 0; i < 9; i++)
        out[w++] = (mode & (1u << (8 - i))) ? rwx[i] : '-';
    out[w] = '\0';
}

void fs_format_timestamp(const struct timespec *ts, char *out, size_t size)
{
    struct tm tm;
    time_t sec = ts->tv_sec;
    gmtime_r(&sec, &tm);
    char base[40];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    long ns = ts->tv_nsec;
    if (ns <= 0 || ns >= 1000000000L)
        snprintf(out, size, "%sZ", base);
    else if (ns % 1000000 == 0)
        snprintf(out, size, "%s.%03ldZ", base, ns / 1000000);
    else if (ns % 1000 == 0)
        snprintf(out, size, "%s.%06ldZ", base, ns / 1000);
    else
        snprintf(out, size, "%s.%09ldZ", base, ns);
}

static enum fs_file_type type_of(mode_t mode)
{
    if (S_ISREG(mode))
        return FS_FILE_TYPE_FILE;
    if (S_ISDIR(mode))
        return FS_FILE_TYPE_DIRECTORY;
    if (S_ISLNK(mode))
        return FS_FILE_TYPE_SYMLINK;
    return FS_FILE_TYPE_UNSPECIFIED;
}

json_t *fs_entry_json(const struct fs_entry_facts *f)
{
    json_t *o = json_object();
    enum fs_file_type type;
    unsigned mode;
    if (f->is_symlink) {
        type = f->target_ok ? type_of(f->target.st_mode) : FS_FILE_TYPE_UNSPECIFIED;
        mode = f->target_ok ? (unsigned)(f->target.st_mode & 0777) : 0;
    } else {
        type = type_of(f->lst.st_mode);
        mode = (unsigned)(f->lst.st_mode & 0777);
    }
    char perms[FS_MODE_STRING_MAX];
    fs_mode_string(f->lst.st_mode, perms);
    char mtime[48];
    fs_format_timestamp(&f->lst.st_mtim, mtime, sizeof(mtime));

    /* jansson refuses strings that are not UTF-8; a name that is not is shown escaped rather
     * than failing the whole listing. */
    json_object_set_new(o, "name", json_string(f->name) ?: json_string("\xef\xbf\xbd"));
    if (type != FS_FILE_TYPE_UNSPECIFIED)
        json_object_set_new(o, "type", json_string(fs_file_type_to_string(type)));
    json_object_set_new(o, "path", json_string(f->path) ?: json_string("\xef\xbf\xbd"));
    if (f->lst.st_size != 0) {
        char size[32];
        snprintf(size, sizeof(size), "%lld", (long long)f->lst.st_size);
        json_object_set_new(o, "size", json_string(size));
    }
    if (mode != 0)
        json_object_set_new(o, "mode", json_integer(mode));
    json_object_set_new(o, "permissions", json_string(perms));
    if (f->owner && *f->owner)
        json_object_set_new(o, "owner", json_string(f->owner) ?: json_string(""));
    if (f->group && *f->group)
        json_object_set_new(o, "group", json_string(f->group) ?: json_string(""));
    if (f->lst.st_mtim.tv_sec != 0 || f->lst.st_mtim.tv_nsec != 0)
        json_object_set_new(o, "modifiedTime", json_string(mtime));
    if (f->is_symlink && f->symlink_target) {
        json_t *t = json_string(f->symlink_target);
        if (t)
            json_object_set_new(o, "symlinkTarget", t);
    }
    if (f->metadata && json_object_size(f->metadata) > 0)
        json_object_set(o, "metadata", f->metadata);
    return o;
}

static void lookup_name(bool user, unsigned id, char *out, size_t size)
{
    /* Go's envd falls back to the number when the id has no name. */
    if ((user ? envd_passwd_user_name("/etc/passwd", id, out, size)
              : envd_passwd_group_name("/etc/group", id, out, size)) < 0)
        snprintf(out, size, "%u", id);
}

static const char *cached_name(struct fs_name_cache *c, bool user, unsigned id, char *scratch, size_t size)
{
    if (!c) {
        lookup_name(user, id, scratch, size);
        return scratch;
    }
    __typeof__(c->users[0]) *slots = user ? c->users : c->groups;
    unsigned *next = user ? &c->next_user : &c->next_group;
    for (size_t i = 0; i < ARRAY_SIZE(c->users); i++)
        if (slots[i].valid && slots[i].id == id)
            return slots[i].name;
    unsigned i = *next % ARRAY_SIZE(c->users);
    *next = i + 1;
    lookup_name(user, id, slots[i].name, sizeof(slots[i].name));
    slots[i].valid = true;
    slots[i].id = id;
    return slots[i].name;
}

int fs_entry_info(const char *path, struct fs_name_cache *names, json_t **ret)
{
    struct fs_entry_facts f = { .path = path };
    if (lstat(path, &f.lst) < 0)
        return -errno;
    const char *slash = strrchr(path, '/');
    f.name = slash && slash[1] ? slash + 1 : path;

    _cleanup_free_ char *target = NULL;
    if (S_ISLNK(f.lst.st_mode)) {
        f.is_symlink = true;
        target = realpath(path, NULL);
        f.symlink_target = target ? target : path;
        f.target_ok = stat(path, &f.target) == 0;
    }
    char owner[64], group[64];
    f.owner = cached_name(names, true, f.lst.st_uid, owner, sizeof(owner));
    f.group = cached_name(names, false, f.lst.st_gid, group, sizeof(group));

    _cleanup_json_ json_t *md = NULL;
    if (!S_ISLNK(f.lst.st_mode) || f.target_ok)
        (void)fs_metadata_read(path, &md); /* best effort, as envd */
    f.metadata = md;
    *ret = fs_entry_json(&f);
    return 0;
}
