/* Layer directories on the host: clone by hard links, apply an exported overlay diff in place,
 * disk usage. Every walk goes by fd, one name at a time, without following symlinks or leaving
 * the layer's filesystem, and at most LAYER_MAX_DEPTH levels deep (see layer.h). */
#include "template/layer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"

#include "common/banned.h"

#define OPAQUE_XATTR "user.overlay.opaque"
/* apply_diff's record of a diff directory's times, written before entries move out of it (which
 * changes them), so that a resumed run still gives base the original times. Never copied. */
#define TIMES_XATTR "user.hutch.apply-times"
#define XATTR_BUF 65536 /* XATTR_LIST_MAX and XATTR_SIZE_MAX */

struct walk {
    dev_t dev; /* the layer's filesystem */
    char *xattr_list, *xattr_list2, *xattr_value;
    char *link; /* PATH_MAX + 1 */
    uint64_t bytes;
    struct error_record *err;
};

static void walk_init(struct walk *w, struct error_record *err)
{
    *w = (struct walk){
        .xattr_list = xmalloc(XATTR_BUF),
        .xattr_list2 = xmalloc(XATTR_BUF),
        .xattr_value = xmalloc(XATTR_BUF),
        .link = xmalloc(PATH_MAX + 1),
        .err = err,
    };
}

static void walk_release(struct walk *w)
{
    free(w->xattr_list);
    free(w->xattr_list2);
    free(w->xattr_value);
    free(w->link);
}

static bool is_whiteout(const struct stat *st)
{
    return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

static int too_deep(struct walk *w)
{
    return error_set(w->err, ELOOP, "layer deeper than %d directory levels", LAYER_MAX_DEPTH);
}

/* Opens directory name below dirfd and checks it is a directory of the layer's filesystem. */
static int open_dir(struct walk *w, int dirfd, const char *name, struct stat *ret_st)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(w->err, errno, "open directory %s", name);
    if (fstat(fd, ret_st) < 0) {
        int e = errno;
        close(fd);
        return error_set_errno(w->err, e, "stat %s", name);
    }
    if (w->dev != 0 && ret_st->st_dev != w->dev) {
        close(fd);
        return error_set(w->err, EXDEV, "%s is on another filesystem than the layer", name);
    }
    return fd;
}

/* Calls cb with every entry of the open directory fd but "." and "..", stopping at the first
 * error; takes fd (one fd per level of a walk). */
typedef int (*entry_cb)(struct walk *w, int dirfd, const char *name, void *userdata);
static int for_each_entry(struct walk *w, int fd, entry_cb cb, void *userdata)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return error_set_errno(w->err, e, "fdopendir");
    }
    int r = 0;
    while (r >= 0) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0)
                r = error_set_errno(w->err, errno, "read directory");
            break;
        }
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        r = cb(w, dirfd(d), de->d_name, userdata);
    }
    closedir(d);
    return r;
}

/* Sets dst's xattrs to src's (both open regular files or directories). With replace, dst's own
 * xattrs that src lacks are removed first, all but overlay's opaque marker. */
static int copy_xattrs(struct walk *w, int src, int dst, bool replace, const char *name)
{
    ssize_t n = flistxattr(src, w->xattr_list, XATTR_BUF);
    if (n < 0)
        return errno == EOPNOTSUPP ? 0 : error_set_errno(w->err, errno, "list xattrs of %s", name);
    if (replace) {
        ssize_t m = flistxattr(dst, w->xattr_list2, XATTR_BUF);
        if (m < 0 && errno != EOPNOTSUPP)
            return error_set_errno(w->err, errno, "list xattrs of %s", name);
        for (const char *k = w->xattr_list2; m > 0 && k < w->xattr_list2 + m; k += strlen(k) + 1) {
            if (streq(k, OPAQUE_XATTR) || streq(k, TIMES_XATTR))
                continue;
            if (fremovexattr(dst, k) < 0 && errno != ENODATA)
                return error_set_errno(w->err, errno, "remove xattr %s of %s", k, name);
        }
    }
    for (const char *k = w->xattr_list; k < w->xattr_list + n; k += strlen(k) + 1) {
        if (streq(k, TIMES_XATTR))
            continue;
        ssize_t v = fgetxattr(src, k, w->xattr_value, XATTR_BUF);
        if (v < 0 && errno == ENODATA)
            continue;
        if (v < 0)
            return error_set_errno(w->err, errno, "read xattr %s of %s", k, name);
        if (fsetxattr(dst, k, w->xattr_value, (size_t)v, 0) < 0 && errno != EOPNOTSUPP)
            return error_set_errno(w->err, errno, "write xattr %s of %s", k, name);
    }
    return 0;
}

/* Owner before mode (chown clears setuid bits), times last. */
static int set_attrs_fd(struct walk *w, int fd, const struct stat *st, const char *name)
{
    if (fchown(fd, st->st_uid, st->st_gid) < 0)
        return error_set_errno(w->err, errno, "chown %s", name);
    if (fchmod(fd, st->st_mode & 07777) < 0)
        return error_set_errno(w->err, errno, "chmod %s", name);
    struct timespec ts[2] = { st->st_atim, st->st_mtim };
    if (futimens(fd, ts) < 0)
        return error_set_errno(w->err, errno, "set times of %s", name);
    return 0;
}

/* For entries created by name in the caller's own directory (symlinks, fifos, whiteouts). */
static int set_attrs_at(struct walk *w, int dirfd, const char *name, const struct stat *st)
{
    if (fchownat(dirfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
        return error_set_errno(w->err, errno, "chown %s", name);
    if (!S_ISLNK(st->st_mode) && fchmodat(dirfd, name, st->st_mode & 07777, 0) < 0)
        return error_set_errno(w->err, errno, "chmod %s", name);
    struct timespec ts[2] = { st->st_atim, st->st_mtim };
    if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return error_set_errno(w->err, errno, "set times of %s", name);
    return 0;
}

/* Removes name below dirfd and everything under it, depth levels below the layer's root. */
static int remove_at(struct walk *w, int dirfd, const char *name, unsigned depth);

static int remove_cb(struct walk *w, int dirfd, const char *name, void *userdata)
{
    return remove_at(w, dirfd, name, *(unsigned *)userdata);
}

static int remove_at(struct walk *w, int dirfd, const char *name, unsigned depth)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : error_set_errno(w->err, errno, "stat %s", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
            return error_set_errno(w->err, errno, "unlink %s", name);
        return 0;
    }
    if (depth + 1 > LAYER_MAX_DEPTH)
        return too_deep(w);
    int fd = open_dir(w, dirfd, name, &st);
    if (fd < 0)
        return fd;
    unsigned child_depth = depth + 1;
    int r = for_each_entry(w, fd, remove_cb, &child_depth);
    if (r < 0)
        return r;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return error_set_errno(w->err, errno, "rmdir %s", name);
    return 0;
}

/* ---- layer_clone_linked ---- */

struct clone_dir {
    int dst;
    unsigned depth;
};

static int clone_dir(struct walk *w, int sdir, const char *sname, int ddir, const char *dname,
                     unsigned depth);

static int clone_entry(struct walk *w, int sdir, const char *name, void *userdata)
{
    const struct clone_dir *cd = userdata;
    struct stat st;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return error_set_errno(w->err, errno, "stat %s", name);
    switch (st.st_mode & S_IFMT) {
    case S_IFDIR:
        return clone_dir(w, sdir, name, cd->dst, name, cd->depth + 1);
    case S_IFREG:
        if (linkat(sdir, name, cd->dst, name, 0) < 0)
            return error_set_errno(w->err, errno, "link %s", name);
        return 0;
    case S_IFLNK: {
        ssize_t n = readlinkat(sdir, name, w->link, PATH_MAX);
        if (n < 0)
            return error_set_errno(w->err, errno, "readlink %s", name);
        w->link[n] = '\0';
        if (symlinkat(w->link, cd->dst, name) < 0)
            return error_set_errno(w->err, errno, "symlink %s", name);
        return set_attrs_at(w, cd->dst, name, &st);
    }
    case S_IFIFO:
        if (mknodat(cd->dst, name, S_IFIFO | 0600, 0) < 0)
            return error_set_errno(w->err, errno, "mkfifo %s", name);
        return set_attrs_at(w, cd->dst, name, &st);
    case S_IFCHR:
        if (!is_whiteout(&st))
            return 0;
        if (mknodat(cd->dst, name, S_IFCHR, makedev(0, 0)) < 0)
            return error_set_errno(w->err, errno, "whiteout %s", name);
        return set_attrs_at(w, cd->dst, name, &st);
    default:
        return 0;
    }
}

static int clone_dir(struct walk *w, int sdir, const char *sname, int ddir, const char *dname, unsigned depth)
{
    if (depth > LAYER_MAX_DEPTH)
        return too_deep(w);
    struct stat st;
    _cleanup_close_ int src = open_dir(w, sdir, sname, &st);
    if (src < 0)
        return src;
    if (mkdirat(ddir, dname, 0700) < 0)
        return error_set_errno(w->err, errno, "mkdir %s", dname);
    _cleanup_close_ int dst = openat(ddir, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dst < 0)
        return error_set_errno(w->err, errno, "open %s", dname);
    int r = copy_xattrs(w, src, dst, false, sname);
    if (r < 0)
        return r;
    struct clone_dir cd = { dst, depth };
    r = for_each_entry(w, TAKE_FD(src), clone_entry, &cd);
    if (r < 0)
        return r;
    return set_attrs_fd(w, dst, &st, dname);
}

int layer_clone_linked(const char *src, const char *dst, struct error_record *err)
{
    struct walk w;
    walk_init(&w, err);
    struct stat st;
    int r;
    if (lstat(src, &st) < 0) {
        r = error_set_errno(err, errno, "stat %s", src);
    } else {
        w.dev = st.st_dev;
        r = clone_dir(&w, AT_FDCWD, src, AT_FDCWD, dst, 0);
        /* Only what this call made goes: an existing dst fails in mkdir, before anything. */
        if (r < 0 && r != -EEXIST)
            rm_rf(dst);
    }
    walk_release(&w);
    return r;
}

/* ---- layer_apply_diff ---- */

static bool is_opaque(struct walk *w, int fd)
{
    char v[8];
    ssize_t n = fgetxattr(fd, OPAQUE_XATTR, v, sizeof(v));
    (void)w;
    return n == 1 && v[0] == 'y';
}

static int apply_dir(struct walk *w, int base, int diff, unsigned depth);

static int move_entry(struct walk *w, int diff, int base, const char *name)
{
    if (renameat(diff, name, base, name) < 0)
        return error_set_errno(w->err, errno, "move %s into the base layer", name);
    return 0;
}

static int apply_entry(struct walk *w, int diff, const char *name, void *userdata)
{
    const struct clone_dir *ad = userdata; /* dst = base */
    int base = ad->dst;
    struct stat sd, sb;
    if (fstatat(diff, name, &sd, AT_SYMLINK_NOFOLLOW) < 0)
        return error_set_errno(w->err, errno, "stat %s", name);
    bool base_exists = true;
    if (fstatat(base, name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno != ENOENT)
            return error_set_errno(w->err, errno, "stat %s in the base layer", name);
        base_exists = false;
    }
    int r;
    if (!S_ISDIR(sd.st_mode)) {
        /* rename replaces a non-directory atomically; a directory must go first. A whiteout
         * moves in too: a layer below base may still have the path. */
        if (base_exists && S_ISDIR(sb.st_mode) && (r = remove_at(w, base, name, ad->depth)) < 0)
            return r;
        return move_entry(w, diff, base, name);
    }
    if (!base_exists)
        return move_entry(w, diff, base, name);
    if (ad->depth + 1 > LAYER_MAX_DEPTH)
        return too_deep(w);
    struct stat st;
    _cleanup_close_ int dfd = open_dir(w, diff, name, &st);
    if (dfd < 0)
        return dfd;
    if (!S_ISDIR(sb.st_mode)) {
        /* In the overlay, base's non-directory hid whatever the layers below had here. */
        if (!is_opaque(w, dfd) && fsetxattr(dfd, OPAQUE_XATTR, "y", 1, 0) < 0)
            return error_set_errno(w->err, errno, "mark %s opaque", name);
        if (unlinkat(base, name, 0) < 0 && errno != ENOENT)
            return error_set_errno(w->err, errno, "unlink %s", name);
        return move_entry(w, diff, base, name);
    }
    if (is_opaque(w, dfd)) {
        if ((r = remove_at(w, base, name, ad->depth)) < 0)
            return r;
        return move_entry(w, diff, base, name);
    }
    _cleanup_close_ int bfd = open_dir(w, base, name, &st);
    if (bfd < 0)
        return bfd;
    if ((r = apply_dir(w, bfd, TAKE_FD(dfd), ad->depth + 1)) < 0)
        return r;
    if (unlinkat(diff, name, AT_REMOVEDIR) < 0)
        return error_set_errno(w->err, errno, "rmdir %s of the diff", name);
    return 0;
}

/* Gives the open directory base the attributes of the open directory diff (taken; base's
 * opaque marker stays) and merges diff's entries into it. diff's times are recorded before
 * entries move out of it, and set on base after they moved in. */
static int apply_dir(struct walk *w, int base, int diff, unsigned depth)
{
    struct stat st;
    if (fstat(diff, &st) < 0) {
        int e = errno;
        close(diff);
        return error_set_errno(w->err, e, "stat a diff directory");
    }
    struct timespec times[2];
    if (fgetxattr(diff, TIMES_XATTR, times, sizeof(times)) == (ssize_t)sizeof(times)) {
        st.st_atim = times[0];
        st.st_mtim = times[1];
    } else {
        times[0] = st.st_atim;
        times[1] = st.st_mtim;
        if (fsetxattr(diff, TIMES_XATTR, times, sizeof(times), 0) < 0 && errno != EOPNOTSUPP) {
            int e = errno;
            close(diff);
            return error_set_errno(w->err, e, "record the times of a diff directory");
        }
    }
    int r = copy_xattrs(w, diff, base, true, "a directory");
    if (r < 0) {
        close(diff);
        return r;
    }
    struct clone_dir ad = { base, depth };
    if ((r = for_each_entry(w, diff, apply_entry, &ad)) < 0)
        return r;
    return set_attrs_fd(w, base, &st, "a directory");
}

int layer_apply_diff(const char *base, const char *diff, struct error_record *err)
{
    struct walk w;
    walk_init(&w, err);
    struct stat st;
    int r;
    _cleanup_close_ int bfd = -1, dfd = -1;
    if ((bfd = open_dir(&w, AT_FDCWD, base, &st)) < 0) {
        r = bfd;
    } else {
        w.dev = st.st_dev;
        if ((dfd = open_dir(&w, AT_FDCWD, diff, &st)) < 0)
            r = dfd;
        else
            r = apply_dir(&w, bfd, TAKE_FD(dfd), 0);
    }
    walk_release(&w);
    return r;
}

/* ---- layer_disk_usage ---- */

static int usage_entry(struct walk *w, int dirfd, const char *name, void *userdata)
{
    unsigned depth = *(unsigned *)userdata;
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return error_set_errno(w->err, errno, "stat %s", name);
    uint64_t bytes = (uint64_t)st.st_blocks * 512;
    if (S_ISREG(st.st_mode) && st.st_nlink > 1)
        bytes /= st.st_nlink;
    w->bytes += bytes;
    if (!S_ISDIR(st.st_mode))
        return 0;
    if (depth + 1 > LAYER_MAX_DEPTH)
        return too_deep(w);
    int fd = open_dir(w, dirfd, name, &st);
    if (fd < 0)
        return fd;
    unsigned child = depth + 1;
    return for_each_entry(w, fd, usage_entry, &child);
}

int layer_disk_usage(const char *dir, uint64_t *ret_bytes, struct error_record *err)
{
    struct walk w;
    walk_init(&w, err);
    struct stat st;
    int r;
    int fd = open_dir(&w, AT_FDCWD, dir, &st);
    if (fd < 0) {
        r = fd;
    } else {
        w.dev = st.st_dev;
        w.bytes = (uint64_t)st.st_blocks * 512;
        unsigned depth = 0;
        r = for_each_entry(&w, fd, usage_entry, &depth);
    }
    if (r >= 0)
        *ret_bytes = w.bytes;
    walk_release(&w);
    return r;
}
