/* The sandbox's root filesystem, built by the child inside its own user and mount namespaces
 * with the new mount API, and by file descriptor:
 *   - a tmpfs of disk_bytes (charged to the sandbox's memory cgroup), or on kernels before 6.6
 *     the parent's ext4 image (ns-disk.c), holds one upper/work pair per layer target; a full
 *     disk is ENOSPC;
 *   - one overlay per target ("/" first), lower = the template's layers, idmapped by the parent
 *     onto the sandbox's uid range, read-only, with `userxattr`; overlay takes its layers as
 *     paths inside a private staging tmpfs (see mount_overlay);
 *   - /proc a fresh procfs (checked with fstatfs) with Docker's masked and read-only paths,
 *     /dev a small tmpfs with host device nodes bind-mounted after a type and rdev check, a new
 *     devpts instance and a /dev/shm tmpfs, /sys an empty read-only tmpfs;
 *   - pivot_root into the new root and detach the old one.
 * Every mount target inside the new root is opened with openat2(RESOLVE_IN_ROOT |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) and mounted on through that fd (move_mount with
 * MOVE_MOUNT_T_EMPTY_PATH): a template whose /proc, /dev or /tmp is a symlink fails to start
 * instead of redirecting a mount onto the host. No allocation: this runs in the child. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "runtime/ns/ns.h"

#include "common/banned.h"

#define RESOLVE_SAFE (RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

static int openat2_safe(int dirfd, const char *path, int flags, uint64_t resolve)
{
    struct open_how how = { .flags = (uint64_t)flags | O_CLOEXEC, .resolve = resolve };
    int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    return fd < 0 ? -errno : fd;
}

int ns_mount_idmapped_layer(int layer_fd, int userns_fd, bool allow_setuid, struct error_record *err)
{
    _cleanup_close_ int fd = open_tree(layer_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (fd < 0)
        return error_set_errno(err, errno, "open_tree(layer)");
    struct mount_attr attr = {
        .attr_set =
            MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | (allow_setuid ? 0 : MOUNT_ATTR_NOSUID),
        .userns_fd = (uint64_t)userns_fd,
    };
    if (mount_setattr(fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        return error_set_errno(err, errno, "mount_setattr(idmap layer)");
    return TAKE_FD(fd);
}

/* fsopen + options + fsmount; returns the detached mount's fd. opts: NULL-terminated key,value
 * pairs; a NULL value sets a flag. */
static int new_fs(const char *type, const char *const *opts, unsigned attrs, struct error_record *err)
{
    _cleanup_close_ int fs = fsopen(type, FSOPEN_CLOEXEC);
    if (fs < 0)
        return error_set_errno(err, errno, "fsopen(%s)", type);
    for (size_t i = 0; opts && opts[i]; i += 2) {
        int r = opts[i + 1] ? fsconfig(fs, FSCONFIG_SET_STRING, opts[i], opts[i + 1], 0)
                            : fsconfig(fs, FSCONFIG_SET_FLAG, opts[i], NULL, 0);
        if (r < 0)
            return error_set_errno(err, errno, "%s: option %s", type, opts[i]);
    }
    if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return error_set_errno(err, errno, "%s: create", type);
    int mnt = fsmount(fs, FSMOUNT_CLOEXEC, attrs);
    if (mnt < 0)
        return error_set_errno(err, errno, "fsmount(%s)", type);
    return mnt;
}

/* Mounts mnt_fd onto dirfd/path resolved inside root (path relative to dirfd). */
static int attach(int mnt_fd, int dirfd, const char *path, bool want_dir, struct error_record *err)
{
    int target = openat2_safe(dirfd, path, O_PATH | (want_dir ? O_DIRECTORY : 0), RESOLVE_SAFE);
    if (target < 0)
        return error_set_errno(err, target, "mount target %s", path);
    int r = move_mount(mnt_fd, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int e = errno;
    close(target);
    if (r < 0)
        return error_set_errno(err, e, "move_mount onto %s", path);
    return 0;
}

/* Overlay gets its layers as paths relative to the staging directory, the caller's working
 * directory: "l3:l4" (lower, topmost first), "rw/u0/upper", "rw/u0/work". Paths, not file
 * descriptors (FSCONFIG_SET_FD for layers needs Linux >= 6.13), so that the runtime works on
 * older kernels too; they cannot be redirected: the staging tmpfs is this namespace's own, mode
 * 0700, and holds only what ns_mount_rootfs put there. The layers go in one `lowerdir` string
 * (every kernel) when they fit in the 255 bytes fsconfig takes, else one `lowerdir+` per layer
 * (Linux >= 6.8; about 50 layers and more). */
static int mount_overlay(const struct ns_mount_plan *m, size_t index, size_t first_layer, int upper_fs,
                         bool allow_setuid, struct error_record *err)
{
    char dir[32];
    snprintf(dir, sizeof(dir), "u%zu", index);
    if (mkdirat(upper_fs, dir, 0755) < 0)
        return error_set_errno(err, errno, "mkdir %s", dir);
    _cleanup_close_ int d = openat(upper_fs, dir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (d < 0 || mkdirat(d, "upper", 0755) < 0 || mkdirat(d, "work", 0700) < 0)
        return error_set_errno(err, errno, "upper dirs");

    _cleanup_close_ int fs = fsopen("overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return error_set_errno(err, errno, "fsopen(overlay)");
    char lower[256], upper[48], work[48];
    size_t len = 0;
    bool fits = true;
    for (size_t i = 0; i < m->n_layers && fits; i++) {
        int n = snprintf(lower + len, sizeof(lower) - len, "%sl%zu", i ? ":" : "", first_layer + i);
        fits = n >= 0 && (size_t)n < sizeof(lower) - len;
        len += fits ? (size_t)n : 0;
    }
    if (fits) {
        if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir", lower, 0) < 0)
            return error_set_errno(err, errno, "overlay %s: lowerdir", m->target);
    } else {
        for (size_t i = 0; i < m->n_layers; i++) {
            snprintf(lower, sizeof(lower), "l%zu", first_layer + i);
            if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", lower, 0) < 0)
                return error_set_errno(err, errno, "overlay %s: lowerdir+ (%zu layers need Linux >= 6.8)",
                                       m->target, m->n_layers);
        }
    }
    snprintf(upper, sizeof(upper), "rw/%s/upper", dir);
    snprintf(work, sizeof(work), "rw/%s/work", dir);
    if (fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "workdir", work, 0) < 0)
        return error_set_errno(err, errno, "overlay %s: upper/work", m->target);
    /* Inside a user namespace overlay keeps its metadata in user.* xattrs. */
    if (fsconfig(fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0)
        return error_set_errno(err, errno, "overlay: userxattr");
    if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return error_set_errno(err, errno, "overlay %s: create%s", m->target,
                               fits ? "" : " (more than about 50 layers at one path need Linux >= 6.8)");
    int mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | (allow_setuid ? 0 : MOUNT_ATTR_NOSUID));
    if (mnt < 0)
        return error_set_errno(err, errno, "fsmount(overlay %s)", m->target);
    return mnt;
}

/* Attaches a detached mount at a new directory `name` of the staging tmpfs. */
static int stage(int mnt_fd, int staging, const char *name, struct error_record *err)
{
    if (mkdirat(staging, name, 0700) < 0)
        return error_set_errno(err, errno, "mkdir staging %s", name);
    return attach(mnt_fd, staging, name, true, err);
}

/* Docker's masked paths (plus kmsg) and read-only paths, relative to /proc. Files are masked
 * with a bind of an empty read-only file (stage_mask), directories with an empty read-only
 * tmpfs. */
static const char *const proc_masked[] = {
    "asound",      "acpi",        "kcore", "keys", "latency_stats", "timer_list",
    "timer_stats", "sched_debug", "scsi",  "kmsg", "sysrq-trigger",
};
static const char *const proc_readonly[] = { "bus", "fs", "irq", "sys" };

/* mask_dir: a read-only tmpfs attached below the staging directory holding one empty file,
 * "empty" (mode 0444), which each masked file gets a bind of: reading it gives nothing, writing
 * fails (EROFS), as Docker's /dev/null masks cannot (a device node stays writable on a read-only
 * mount, so a write to a masked sysrq-trigger would seem to succeed). Cloned from an attached
 * mount each time: before Linux 6.15 open_tree cannot clone a detached one. */
static int mask_proc(int proc_fd, int mask_dir, struct error_record *err)
{
    for (size_t i = 0; i < ARRAY_SIZE(proc_masked); i++) {
        struct stat st;
        if (fstatat(proc_fd, proc_masked[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            return error_set_errno(err, errno, "stat /proc/%s", proc_masked[i]);
        }
        _cleanup_close_ int m = -1;
        if (S_ISDIR(st.st_mode)) {
            static const char *const opts[] = { "size", "4096", "mode", "0555", NULL };
            m = new_fs("tmpfs", opts,
                       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
            if (m < 0)
                return m;
        } else {
            m = open_tree(mask_dir, "empty", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
            if (m < 0)
                return error_set_errno(err, errno, "clone the mask file");
        }
        int r = attach(m, proc_fd, proc_masked[i], S_ISDIR(st.st_mode), err);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < ARRAY_SIZE(proc_readonly); i++) {
        _cleanup_close_ int m =
            open_tree(proc_fd, proc_readonly[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
        if (m < 0) {
            if (errno == ENOENT)
                continue;
            return error_set_errno(err, errno, "clone /proc/%s", proc_readonly[i]);
        }
        struct mount_attr attr = {
            .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        };
        if (mount_setattr(m, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
            return error_set_errno(err, errno, "read-only /proc/%s", proc_readonly[i]);
        int r = attach(m, proc_fd, proc_readonly[i], true, err);
        if (r < 0)
            return r;
    }
    return 0;
}

struct host_dev {
    const char *name;
    unsigned major, minor;
};
static const struct host_dev host_devs[] = {
    { "null", 1, 3 },   { "zero", 1, 5 },    { "full", 1, 7 },
    { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
};

/* A new empty file dirfd/name (a bind mount target or source); never follows a symlink. */
static int create_empty_file(int dirfd, const char *name, mode_t mode, struct error_record *err)
{
    int f = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (f < 0)
        return error_set_errno(err, errno, "create %s", name);
    close(f);
    return 0;
}

/* Binds the host's /dev/<name> onto a fresh file in the sandbox's /dev after checking that it
 * is the character device it should be. */
static int bind_host_dev(int dev_fd, const struct host_dev *d, struct error_record *err)
{
    char path[64];
    snprintf(path, sizeof(path), "/dev/%s", d->name);
    _cleanup_close_ int src =
        open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
    if (src < 0)
        return error_set_errno(err, errno, "clone host %s", path);
    struct stat st;
    if (fstat(src, &st) < 0)
        return error_set_errno(err, errno, "stat host %s", path);
    if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != d->major || minor(st.st_rdev) != d->minor)
        return error_set(err, EPERM, "host %s is not the device %u:%u", path, d->major, d->minor);
    struct mount_attr attr = { .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC };
    if (mount_setattr(src, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        return error_set_errno(err, errno, "mount_setattr %s", path);
    int r = create_empty_file(dev_fd, d->name, 0666, err);
    return r < 0 ? r : attach(src, dev_fd, d->name, false, err);
}

static int setup_dev(int root_fd, struct error_record *err)
{
    static const char *const dev_opts[] = { "size", "65536", "mode", "0755", "nr_inodes", "64", NULL };
    /* nodev on the tmpfs itself: the device nodes are separate bind mounts with their own
     * flags, so nothing created in /dev later (mknod is refused anyway) can be a device. */
    _cleanup_close_ int devmnt =
        new_fs("tmpfs", dev_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODEV, err);
    if (devmnt < 0)
        return devmnt;
    int r = attach(devmnt, root_fd, "dev", true, err);
    if (r < 0)
        return r;
    _cleanup_close_ int dev = openat2_safe(root_fd, "dev", O_PATH | O_DIRECTORY, RESOLVE_SAFE);
    if (dev < 0)
        return error_set_errno(err, dev, "open /dev");
    struct statfs sfs;
    if (fstatfs(dev, &sfs) < 0 || sfs.f_type != TMPFS_MAGIC)
        return error_set(err, EPERM, "/dev is not the runtime's tmpfs");
    for (size_t i = 0; i < ARRAY_SIZE(host_devs); i++) {
        r = bind_host_dev(dev, &host_devs[i], err);
        if (r < 0)
            return r;
    }
    if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0)
        return error_set_errno(err, errno, "mkdir /dev/pts, /dev/shm");
    static const char *const pts_opts[] = { "newinstance", NULL,  "ptmxmode", "0666", "mode",
                                            "0620",        "gid", "5",        NULL };
    _cleanup_close_ int pts = new_fs("devpts", pts_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, err);
    if (pts < 0)
        return pts;
    if ((r = attach(pts, dev, "pts", true, err)) < 0)
        return r;
    static const char *const shm_opts[] = { "size", "67108864", "mode", "1777", NULL };
    _cleanup_close_ int shm =
        new_fs("tmpfs", shm_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
    if (shm < 0)
        return shm;
    if ((r = attach(shm, dev, "shm", true, err)) < 0)
        return r;
    static const char *const links[][2] = {
        { "pts/ptmx", "ptmx" },          { "/proc/self/fd", "fd" },       { "/proc/self/fd/0", "stdin" },
        { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(links); i++)
        if (symlinkat(links[i][0], dev, links[i][1]) < 0)
            return error_set_errno(err, errno, "symlink /dev/%s", links[i][1]);
    return 0;
}

/* The source of mask_proc's file masks: a read-only tmpfs at staging/mask with one empty file. */
static int stage_mask(int staging, struct error_record *err)
{
    static const char *const opts[] = { "size", "4096", "mode", "0555", "nr_inodes", "2", NULL };
    _cleanup_close_ int m =
        new_fs("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
    if (m < 0)
        return m;
    int r = stage(m, staging, "mask", err);
    if (r < 0)
        return r;
    _cleanup_close_ int dir = openat(staging, "mask", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dir < 0)
        return error_set_errno(err, errno, "open staged mask");
    r = create_empty_file(dir, "empty", 0444, err);
    if (r < 0)
        return r;
    struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY };
    if (mount_setattr(dir, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0)
        return error_set_errno(err, errno, "read-only mask tmpfs");
    return TAKE_FD(dir);
}

int ns_mount_rootfs(const struct ns_plan *plan, const int *layer_fds, int rw_mnt, int *ret_rw_fd,
                    struct error_record *err)
{
    /* Nothing the sandbox mounts may propagate back to the host (the copy of the host's mount
     * tree this namespace starts with is shared with it otherwise). */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return error_set_errno(err, errno, "make / private");

    /* A staging tmpfs on the attach point: overlay clones its layers privately, which it may
     * only do for mounts in this namespace, so the parent's detached idmapped layers and the
     * writable tmpfs are attached below it first. The overlay root is then stacked on top, and
     * the staging tree leaves with the old root after pivot_root. */
    static const char *const staging_opts[] = { "size", "65536", "mode", "0700", "nr_inodes", "256", NULL };
    /* The staging tmpfs holds its root, "rw", "mask" and one directory per layer. */
    _Static_assert(NS_MAX_LAYERS + 3 <= 256, "staging tmpfs nr_inodes too small for NS_MAX_LAYERS");
    _cleanup_close_ int staging_mnt =
        new_fs("tmpfs", staging_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
    if (staging_mnt < 0)
        return staging_mnt;
    if (move_mount(staging_mnt, "", AT_FDCWD, plan->root_dir, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return error_set_errno(err, errno, "move_mount staging onto %s", plan->root_dir);
    _cleanup_close_ int staging = open(plan->root_dir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (staging < 0)
        return error_set_errno(err, errno, "open staging");

    _cleanup_close_ int upper_mnt = -1;
    if (rw_mnt < 0) {
        char size[32], inodes[32];
        snprintf(size, sizeof(size), "%llu", (unsigned long long)plan->limits.disk_bytes);
        snprintf(inodes, sizeof(inodes), "%llu", (unsigned long long)ns_disk_inodes(plan->limits.disk_bytes));
        const char *const upper_opts[] = { "size", size, "nr_inodes", inodes, "mode", "0755", NULL };
        upper_mnt = new_fs("tmpfs", upper_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err);
        if (upper_mnt < 0)
            return upper_mnt;
    }
    int r = stage(rw_mnt < 0 ? upper_mnt : rw_mnt, staging, "rw", err);
    if (r < 0)
        return r;
    _cleanup_close_ int upper = openat(staging, "rw", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (upper < 0)
        return error_set_errno(err, errno, "open staged rw");

    _cleanup_close_ int mask = stage_mask(staging, err);
    if (mask < 0)
        return mask;

    size_t total = 0;
    for (size_t i = 0; i < plan->n_mounts; i++)
        total += plan->mounts[i].n_layers;
    for (size_t i = 0; i < total && r >= 0; i++) {
        char name[32];
        snprintf(name, sizeof(name), "l%zu", i);
        r = stage(layer_fds[i], staging, name, err);
    }
    if (r < 0)
        return r;
    /* Overlay resolves its layer paths from here (mount_overlay); this stays the working
     * directory after the root overlay covers the staging tmpfs. */
    if (fchdir(staging) < 0)
        return error_set_errno(err, errno, "chdir staging");

    _cleanup_close_ int root = -1;
    size_t first_layer = 0;
    for (size_t i = 0; i < plan->n_mounts && r >= 0; i++) {
        const struct ns_mount_plan *m = &plan->mounts[i];
        int ovl = mount_overlay(m, i, first_layer, upper, plan->allow_setuid, err);
        first_layer += m->n_layers;
        if (ovl < 0) {
            r = ovl;
            break;
        }
        if (i == 0) {
            if (move_mount(ovl, "", AT_FDCWD, plan->root_dir, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                r = error_set_errno(err, errno, "move_mount root onto %s", plan->root_dir);
            else if ((root = open(plan->root_dir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0)
                r = error_set_errno(err, errno, "open new root");
            else {
                struct statfs sfs;
                if (fstatfs(root, &sfs) < 0 || sfs.f_type != OVERLAYFS_SUPER_MAGIC)
                    r = error_set(err, EPERM, "new root is not the sandbox's overlay");
            }
        } else {
            r = attach(ovl, root, m->target, true, err);
        }
        close(ovl);
    }
    if (r < 0)
        return r;

    r = setup_dev(root, err);
    if (r < 0)
        return r;

    _cleanup_close_ int procmnt =
        new_fs("proc", NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
    if (procmnt < 0)
        return procmnt;
    if ((r = attach(procmnt, root, "proc", true, err)) < 0)
        return r;
    _cleanup_close_ int proc = openat2_safe(root, "proc", O_PATH | O_DIRECTORY, RESOLVE_SAFE);
    if (proc < 0)
        return error_set_errno(err, proc, "open /proc");
    struct statfs sfs;
    if (fstatfs(proc, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC)
        return error_set(err, EPERM, "/proc is not the sandbox's procfs");
    if ((r = mask_proc(proc, mask, err)) < 0)
        return r;

    static const char *const sys_opts[] = { "size", "4096", "mode", "0555", NULL };
    _cleanup_close_ int sys = new_fs(
        "tmpfs", sys_opts, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
    if (sys < 0)
        return sys;
    if ((r = attach(sys, root, "sys", true, err)) < 0)
        return r;

    /* The writable tmpfs leaves this namespace with the staging tree below; an fd keeps it
     * reachable for the parent (export), which walks it by fd only. */
    _cleanup_close_ int rw = fcntl(upper, F_DUPFD_CLOEXEC, 3);
    if (rw < 0)
        return error_set_errno(err, errno, "dup rw");

    /* pivot_root(".", "."): the old root ends up stacked under the new one, and detaching "."
     * removes it (and every host mount below it) from this namespace. */
    if (fchdir(root) < 0)
        return error_set_errno(err, errno, "chdir new root");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return error_set_errno(err, errno, "pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        return error_set_errno(err, errno, "detach old root");
    if (chdir("/") < 0)
        return error_set_errno(err, errno, "chdir /");
    *ret_rw_fd = TAKE_FD(rw);
    return 0;
}
