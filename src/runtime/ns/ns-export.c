/* export_layer of the namespace backend: the host copies a sandbox's writable layer (the overlay
 * upper directories u<index>/upper on its tmpfs, reached through the fd that the child sent with
 * READY) into a host directory that can be a lower layer of any sandbox.
 *
 * The source tree is written by the sandbox, so it is walked by fd only: every entry is a single
 * name looked up with openat(O_NOFOLLOW) or fstatat(AT_SYMLINK_NOFOLLOW) below a directory fd
 * already checked to be a directory of the writable tmpfs; symlinks are read and recreated, never
 * followed; a file is opened O_NONBLOCK and checked again after the open (a fifo swapped in
 * cannot block the copy, a device cannot be opened: the tmpfs is nodev); depth is bounded. The
 * destination is written by host root below a fresh 0700 directory, so no one else reaches it
 * while it is incomplete; owners are set before modes (chown clears setuid bits) and directory
 * times after their contents. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "runtime/ns/ns.h"

#include "common/banned.h"

#define OVERLAY_XATTR_PREFIX "user.overlay."
#define OVERLAY_OPAQUE_XATTR "user.overlay.opaque"
#define XATTR_BUF 65536 /* XATTR_LIST_MAX and XATTR_SIZE_MAX */
#define OVERFLOW_ID 65534

struct export_ctx {
    uid_t host_uid; /* the sandbox's root on the host */
    dev_t dev;      /* the writable tmpfs: the walk never leaves it */
    /* What the copy may still write to the host. The tmpfs bounds its data and inodes, but not
     * hard links (each becomes a copy) nor a sparse file's size (holes are kept). */
    uint64_t bytes_left;
    uint64_t entries_left;
    char *xattr_list;
    char *xattr_value;
    char *link; /* PATH_MAX + 1 */
    struct error_record *err;
};

/* Sandbox ids are host ids in [host_uid, host_uid + 65536); anything else (impossible for the
 * sandbox to create) becomes the overflow id rather than a host id. */
static uid_t shift_id(const struct export_ctx *c, uint32_t id)
{
    return id >= c->host_uid && id - c->host_uid < NS_UID_RANGE ? id - c->host_uid : OVERFLOW_ID;
}

static bool keep_xattr(const char *name)
{
    if (!str_startswith(name, "user."))
        return false;
    return !str_startswith(name, OVERLAY_XATTR_PREFIX) || streq(name, OVERLAY_OPAQUE_XATTR);
}

static int copy_xattrs(struct export_ctx *c, int src, int dst, const char *name)
{
    ssize_t n = flistxattr(src, c->xattr_list, XATTR_BUF);
    if (n < 0)
        return errno == EOPNOTSUPP ? 0 : error_set_errno(c->err, errno, "list xattrs of %s", name);
    for (const char *k = c->xattr_list; k < c->xattr_list + n; k += strlen(k) + 1) {
        if (!keep_xattr(k))
            continue;
        ssize_t v = fgetxattr(src, k, c->xattr_value, XATTR_BUF);
        if (v < 0 && errno == ENODATA)
            continue;
        if (v < 0)
            return error_set_errno(c->err, errno, "read xattr %s of %s", k, name);
        if (fsetxattr(dst, k, c->xattr_value, (size_t)v, 0) < 0)
            return error_set_errno(c->err, errno, "write xattr %s of %s", k, name);
    }
    return 0;
}

static int set_attrs_fd(struct export_ctx *c, int dst, const struct stat *st, const char *name)
{
    if (fchown(dst, shift_id(c, st->st_uid), shift_id(c, st->st_gid)) < 0)
        return error_set_errno(c->err, errno, "chown %s", name);
    if (fchmod(dst, st->st_mode & 07777) < 0)
        return error_set_errno(c->err, errno, "chmod %s", name);
    struct timespec ts[2] = { st->st_atim, st->st_mtim };
    if (futimens(dst, ts) < 0)
        return error_set_errno(c->err, errno, "set times of %s", name);
    return 0;
}

/* For entries that are not opened (symlinks, fifos, whiteouts), by name in our own directory. */
static int set_attrs_at(struct export_ctx *c, int ddir, const char *name, const struct stat *st)
{
    if (fchownat(ddir, name, shift_id(c, st->st_uid), shift_id(c, st->st_gid), AT_SYMLINK_NOFOLLOW) < 0)
        return error_set_errno(c->err, errno, "chown %s", name);
    if (!S_ISLNK(st->st_mode) && fchmodat(ddir, name, st->st_mode & 07777, 0) < 0)
        return error_set_errno(c->err, errno, "chmod %s", name);
    struct timespec ts[2] = { st->st_atim, st->st_mtim };
    if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return error_set_errno(c->err, errno, "set times of %s", name);
    return 0;
}

static int over_budget(struct export_ctx *c)
{
    return error_set(c->err, EFBIG,
                     "the export would write more than twice the sandbox's disk limit "
                     "(hard links are copied)");
}

/* Copies [from, to) of in to the same offsets of out. */
static int copy_range(struct export_ctx *c, int in, int out, off_t from, off_t to, const char *name)
{
    if ((uint64_t)(to - from) > c->bytes_left)
        return over_budget(c);
    c->bytes_left -= (uint64_t)(to - from);
    off_t in_off = from, out_off = from;
    bool use_cfr = true;
    while (in_off < to) {
        size_t want = (size_t)MIN(to - in_off, (off_t)1 << 30);
        ssize_t n;
        if (use_cfr) {
            n = copy_file_range(in, &in_off, out, &out_off, want, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) {
                use_cfr = false;
                continue;
            }
        } else {
            if (lseek(out, out_off, SEEK_SET) < 0)
                return error_set_errno(c->err, errno, "seek in the copy of %s", name);
            n = sendfile(out, in, &in_off, want);
            if (n > 0)
                out_off += n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error_set_errno(c->err, errno, "copy %s", name);
        if (n == 0) /* truncated while copied */
            break;
    }
    return 0;
}

/* Copies the data segments of the first size bytes of in (holes stay holes, so a sparse file
 * costs what it holds), then sets out's size. */
static int copy_data(struct export_ctx *c, int in, int out, off_t size, const char *name)
{
    for (off_t pos = 0; pos < size;) {
        off_t data = lseek(in, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;
        if (data < 0)
            return error_set_errno(c->err, errno, "SEEK_DATA in %s", name);
        if (data >= size)
            break;
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return error_set_errno(c->err, errno, "SEEK_HOLE in %s", name);
        hole = MIN(hole, size);
        int r = copy_range(c, in, out, data, hole, name);
        if (r < 0)
            return r;
        pos = hole;
    }
    if (ftruncate(out, size) < 0)
        return error_set_errno(c->err, errno, "truncate the copy of %s", name);
    return 0;
}

static int changed(struct export_ctx *c, const char *name)
{
    return error_set(c->err, EBUSY, "%s changed while it was copied (freeze the sandbox first)", name);
}

static int copy_regular(struct export_ctx *c, int sdir, int ddir, const char *name)
{
    _cleanup_close_ int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (in < 0)
        return errno == ENOENT  ? 0
               : errno == ELOOP ? changed(c, name)
                                : error_set_errno(c->err, errno, "open %s", name);
    struct stat st;
    if (fstat(in, &st) < 0)
        return error_set_errno(c->err, errno, "stat %s", name);
    if (!S_ISREG(st.st_mode) || st.st_dev != c->dev)
        return changed(c, name);
    _cleanup_close_ int out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0)
        return error_set_errno(c->err, errno, "create %s", name);
    int r = copy_data(c, in, out, st.st_size, name);
    if (r >= 0)
        r = copy_xattrs(c, in, out, name);
    if (r >= 0)
        r = set_attrs_fd(c, out, &st, name);
    return r;
}

static int copy_entry(struct export_ctx *c, int sdir, int ddir, const char *name, unsigned depth);

/* Copies directory sname below sdir to a new directory dname below ddir, depth levels below the
 * layer's root. */
static int copy_dir(struct export_ctx *c, int sdir, const char *sname, int ddir, const char *dname,
                    unsigned depth)
{
    if (depth > RUNTIME_EXPORT_MAX_DEPTH)
        return error_set(c->err, ELOOP, "the layer is deeper than %d directory levels",
                         RUNTIME_EXPORT_MAX_DEPTH);
    int fd = openat(sdir, sname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0 && (errno == ENOTDIR || errno == ELOOP))
        return changed(c, sname);
    if (fd < 0)
        return error_set_errno(c->err, errno, "open directory %s", sname);
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return error_set_errno(c->err, e, "fdopendir %s", sname);
    }
    int src = dirfd(d);
    struct stat st;
    int r = 0;
    _cleanup_close_ int dst = -1;
    if (fstat(src, &st) < 0)
        r = error_set_errno(c->err, errno, "stat %s", sname);
    else if (!S_ISDIR(st.st_mode) || st.st_dev != c->dev)
        r = error_set(c->err, EXDEV, "%s is not a directory of the writable layer", sname);
    else if (mkdirat(ddir, dname, 0700) < 0)
        r = error_set_errno(c->err, errno, "mkdir %s", dname);
    else if ((dst = openat(ddir, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        r = error_set_errno(c->err, errno, "open %s", dname);
    else
        r = copy_xattrs(c, src, dst, sname);
    while (r >= 0) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0)
                r = error_set_errno(c->err, errno, "read directory %s", sname);
            break;
        }
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        r = copy_entry(c, src, dst, de->d_name, depth);
    }
    if (r >= 0)
        r = set_attrs_fd(c, dst, &st, dname);
    closedir(d);
    return r;
}

static int copy_entry(struct export_ctx *c, int sdir, int ddir, const char *name, unsigned depth)
{
    struct stat st;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : error_set_errno(c->err, errno, "stat %s", name);
    if (c->entries_left == 0)
        return over_budget(c);
    c->entries_left--;
    switch (st.st_mode & S_IFMT) {
    case S_IFDIR:
        return copy_dir(c, sdir, name, ddir, name, depth + 1);
    case S_IFREG:
        return copy_regular(c, sdir, ddir, name);
    case S_IFLNK: {
        ssize_t n = readlinkat(sdir, name, c->link, PATH_MAX);
        if (n < 0)
            return errno == ENOENT   ? 0
                   : errno == EINVAL ? changed(c, name)
                                     : error_set_errno(c->err, errno, "readlink %s", name);
        c->link[n] = '\0';
        if (symlinkat(c->link, ddir, name) < 0)
            return error_set_errno(c->err, errno, "symlink %s", name);
        return set_attrs_at(c, ddir, name, &st);
    }
    case S_IFIFO:
        if (mknodat(ddir, name, S_IFIFO | 0600, 0) < 0)
            return error_set_errno(c->err, errno, "mkfifo %s", name);
        return set_attrs_at(c, ddir, name, &st);
    case S_IFCHR:
        /* Overlay's whiteout; a real device cannot exist here (mknod is not allowed inside). */
        if (st.st_rdev != makedev(0, 0))
            return 0;
        if (mknodat(ddir, name, S_IFCHR | 0000, makedev(0, 0)) < 0)
            return error_set_errno(c->err, errno, "whiteout %s", name);
        return set_attrs_at(c, ddir, name, &st);
    default: /* sockets, block devices */
        return 0;
    }
}

int ns_export_layer(const struct ns_plan *plan, int rw_fd, const char *dest_dir, struct error_record *err)
{
    struct stat st;
    if (fstat(rw_fd, &st) < 0)
        return error_set_errno(err, errno, "stat the writable layer");
    if (mkdir(dest_dir, 0700) < 0)
        return error_set_errno(err, errno, "mkdir %s", dest_dir);
    /* As many inodes as ns-mount.c gives the tmpfs, and as much data as its size, twice. */
    struct export_ctx c = {
        .host_uid = plan->host_uid,
        .dev = st.st_dev,
        .bytes_left = 2 * plan->limits.disk_bytes,
        .entries_left = 2 * ns_disk_inodes(plan->limits.disk_bytes),
        .xattr_list = xmalloc(XATTR_BUF),
        .xattr_value = xmalloc(XATTR_BUF),
        .link = xmalloc(PATH_MAX + 1),
        .err = err,
    };
    int r = 0;
    _cleanup_close_ int dest = open(dest_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dest < 0)
        r = error_set_errno(err, errno, "open %s", dest_dir);
    /* mkdir's mode went through the umask; say exactly what the contract says. */
    else if (fchmod(dest, 0700) < 0)
        r = error_set_errno(err, errno, "chmod %s", dest_dir);
    for (size_t i = 0; i < plan->n_mounts && r >= 0; i++) {
        char u[32], out[32];
        snprintf(u, sizeof(u), "u%zu", i);
        snprintf(out, sizeof(out), "%zu", i);
        _cleanup_close_ int ufd = openat(rw_fd, u, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (ufd < 0)
            r = error_set_errno(err, errno, "open %s of the writable layer", u);
        else
            r = copy_dir(&c, ufd, "upper", dest, out, 0);
    }
    free(c.xattr_list);
    free(c.xattr_value);
    free(c.link);
    if (r < 0)
        rm_rf(dest_dir);
    return r;
}
