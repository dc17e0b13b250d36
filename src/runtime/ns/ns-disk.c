/* The writable layer on an ext4 image behind a loop device, for kernels whose tmpfs has no user
 * xattrs (before Linux 6.6): overlay inside the sandbox's user namespace keeps whiteouts and
 * opaque directories in user.* xattrs of its upper filesystem (`userxattr`), and ext4 has them
 * on every kernel. ext4 cannot be mounted inside a user namespace, so the parent (host root)
 * makes the filesystem and hands the child a detached mount of it, which the child stages
 * where the tmpfs would be (ns_mount_rootfs).
 *
 * The image is an O_TMPFILE in disk_dir (no name, so nothing is left behind by a crash), sized
 * so that the sandbox can write disk_bytes of data; mke2fs formats it through the loop device,
 * whose root directory belongs to the sandbox's root. The loop device is attached with direct
 * I/O and LO_FLAGS_AUTOCLEAR: it detaches itself when the filesystem is unmounted, which happens
 * when the sandbox's mount namespace dies, and the image's blocks are freed with it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/spawn-util.h"
#include "runtime/ns/ns.h"

#include "common/banned.h"

#define NS_DEFAULT_DISK_DIR "/var/tmp"
#define LOOP_ATTACH_TRIES 16

static const char *const mke2fs_paths[] = { "/usr/sbin/mke2fs", "/sbin/mke2fs" };

/* Bytes of image that hold disk_bytes of data besides its metadata: ext4 without a journal or
 * resize reserve spends its inode table (256 bytes an inode), bitmaps, group descriptors and
 * superblock copies; 1/256 plus 1 MiB covers the rest (measured with mke2fs 1.47 from 1 MiB to
 * 100 GiB: at most 0.4 % and 1 MiB more free than disk_bytes). */
static uint64_t image_bytes(uint64_t disk_bytes)
{
    return disk_bytes + ns_disk_inodes(disk_bytes) * 256 + disk_bytes / 256 + (1u << 20);
}

/* A free loop device attached to image_fd; its fd, and its path in dev_path. */
static int loop_attach(int image_fd, char *dev_path, size_t size, struct error_record *err)
{
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return error_set_errno(err, errno, "open /dev/loop-control");
    for (int tries = 0; tries < LOOP_ATTACH_TRIES; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0)
            return error_set_errno(err, errno, "LOOP_CTL_GET_FREE");
        snprintf(dev_path, size, "/dev/loop%d", n);
        _cleanup_close_ int dev = open(dev_path, O_RDWR | O_CLOEXEC);
        if (dev < 0)
            return error_set_errno(err, errno, "open %s", dev_path);
        /* Direct I/O: the image's blocks are not cached a second time in the host's page cache
         * (ext4 inside already caches them, charged to the sandbox). */
        struct loop_config lc = {
            .fd = (uint32_t)image_fd,
            .info = { .lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO },
        };
        int r = ioctl(dev, LOOP_CONFIGURE, &lc);
        if (r < 0 && errno == EINVAL) {
            /* A disk_dir without O_DIRECT, where the kernel says so instead of falling back. */
            lc.info.lo_flags &= ~(uint32_t)LO_FLAGS_DIRECT_IO;
            r = ioctl(dev, LOOP_CONFIGURE, &lc);
        }
        if (r == 0)
            return TAKE_FD(dev);
        /* Another process took this device between GET_FREE and CONFIGURE: ask again. */
        if (errno != EBUSY)
            return error_set_errno(err, errno, "LOOP_CONFIGURE %s", dev_path);
    }
    return error_set(err, EBUSY, "no free loop device after %d tries", LOOP_ATTACH_TRIES);
}

/* mke2fs on the loop device; its diagnostics go into err. */
static int make_ext4(const char *dev_path, uint64_t disk_bytes, uid_t root_uid, struct error_record *err)
{
    const char *mke2fs = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(mke2fs_paths) && !mke2fs; i++)
        if (access(mke2fs_paths[i], X_OK) == 0)
            mke2fs = mke2fs_paths[i];
    if (!mke2fs)
        return error_set(err, ENOENT, "mke2fs not found (Debian: apt-get install e2fsprogs)");
    char inodes[32], ext[96];
    snprintf(inodes, sizeof(inodes), "%llu", (unsigned long long)ns_disk_inodes(disk_bytes));
    /* The root directory belongs to the sandbox's root, who makes the overlay's upper and work
     * directories in it. No journal: the layer does not outlive its sandbox. */
    snprintf(ext, sizeof(ext), "root_owner=%u:%u,nodiscard,lazy_itable_init=1", (unsigned)root_uid,
             (unsigned)root_uid);
    const char *const argv[] = {
        "mke2fs", "-q", "-F", "-t",   "ext4", "-b", "4096",   "-O", "^has_journal,^resize_inode",
        "-m",     "0",  "-N", inodes, "-E",   ext,  dev_path, NULL,
    };
    static const char *const env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };
    pid_t pid;
    _cleanup_close_ int out = -1;
    int r = spawn_piped(mke2fs, (char *const *)argv, (char *const *)env, SPAWN_STDERR_TOO, &pid, &out);
    if (r < 0)
        return error_set_errno(err, r, "spawn %s", mke2fs);
    /* Read to the end (so that mke2fs never blocks on a full pipe), keeping the start. */
    char msg[512], buf[256];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(out, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t keep = MIN((size_t)n, sizeof(msg) - 1 - len);
        memcpy(msg + len, buf, keep);
        len += keep;
    }
    out = safe_close(out);
    msg[len] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return error_set_errno(err, errno, "waitpid mke2fs");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return error_set(err, EIO, "mke2fs %s failed (status %d): %s", dev_path, status, msg);
    return 0;
}

int ns_disk_ext4_new(const struct runtime_config *cfg, const struct ns_plan *plan, struct error_record *err)
{
    const char *dir = cfg && cfg->disk_dir ? cfg->disk_dir : NS_DEFAULT_DISK_DIR;
    _cleanup_close_ int image = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (image < 0)
        return error_set_errno(err, errno, "O_TMPFILE in %s for the writable layer", dir);
    if (ftruncate(image, (off_t)image_bytes(plan->limits.disk_bytes)) < 0)
        return error_set_errno(err, errno, "size the writable layer's image");
    char dev_path[32];
    _cleanup_close_ int dev = loop_attach(image, dev_path, sizeof(dev_path), err);
    if (dev < 0)
        return dev;
    int r = make_ext4(dev_path, plan->limits.disk_bytes, plan->host_uid, err);
    if (r < 0)
        return r;
    _cleanup_close_ int fs = fsopen("ext4", FSOPEN_CLOEXEC);
    if (fs < 0)
        return error_set_errno(err, errno, "fsopen(ext4)");
    if (fsconfig(fs, FSCONFIG_SET_STRING, "source", dev_path, 0) < 0 ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return error_set_errno(err, errno, "mount ext4 from %s", dev_path);
    int mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (mnt < 0)
        return error_set_errno(err, errno, "fsmount(ext4 %s)", dev_path);
    /* The mount holds the device now; closing ours arms LO_FLAGS_AUTOCLEAR. */
    return mnt;
}
