/* See debootstrap.h. The cache's invariant: cache_dir/debootstrap/<suite> exists only complete.
 * It is built as .<suite>.new under the builders' flock and renamed into place; a .new found by
 * the lock's next holder is a crashed build and is removed first. */
#include "template/debootstrap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs-util.h"
#include "common/spawn-util.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define DEBOOTSTRAP "/usr/sbin/debootstrap"
#define DEFAULT_MIRROR "http://deb.debian.org/debian"
#define BUILD_TIMEOUT (30 * 60 * USEC_PER_SEC)
#define LINE_MAX_LEN 4096

extern char **environ;

static const char *const suites[] = { "bookworm" };

/* What a sandbox gets instead of the build host's files (debootstrap copies the host's
 * resolv.conf and hostname); the same as the `host` base template's (runtime/base-template.c). */
static const struct {
    const char *name;
    const char *content;
} etc_files[] = {
    { "resolv.conf", "nameserver 1.1.1.1\nnameserver 8.8.8.8\n" },
    { "hostname", "sandbox\n" },
    { "hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" },
};

/* Mounts debootstrap makes inside the target while it runs; it removes them itself unless it was
 * killed. */
static const char *const target_mounts[] = { "dev/pts", "dev/shm", "dev", "proc", "sys" };

static void remove_tree(const char *dir)
{
    for (size_t i = 0; i < ARRAY_SIZE(target_mounts); i++) {
        _cleanup_free_ char *m = xasprintf("%s/%s", dir, target_mounts[i]);
        (void)umount2(m, MNT_DETACH | UMOUNT_NOFOLLOW);
    }
    rm_rf(dir);
}

struct line_buf {
    char buf[LINE_MAX_LEN + 1];
    size_t len;
    template_log_cb cb;
    void *userdata;
};

static void line_flush(struct line_buf *l)
{
    if (l->len && l->buf[l->len - 1] == '\r')
        l->len--;
    l->buf[l->len] = '\0';
    if (l->cb)
        l->cb(l->buf, l->userdata);
    l->len = 0;
}

static void line_feed(struct line_buf *l, const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            line_flush(l);
            continue;
        }
        if (l->len == LINE_MAX_LEN)
            line_flush(l);
        l->buf[l->len++] = data[i];
    }
}

/* Runs debootstrap into target, its output (stdout and stderr) to log_cb line by line. It runs
 * in a process group of its own, so that a timeout kills its downloads and chroots too. */
static int run_debootstrap(const char *suite, const char *target, const char *mirror, template_log_cb log_cb,
                           void *userdata, struct error_record *err)
{
    if (access(DEBOOTSTRAP, X_OK) < 0)
        return error_set_errno(err, errno, "%s (apt-get install debootstrap)", DEBOOTSTRAP);
    /* The caller's environment (proxies), with a PATH that has the sbin directories
     * debootstrap needs (chroot, ldconfig). */
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    _cleanup_free_ char **envp = xcalloc(n_env + 2, sizeof(*envp));
    size_t k = 0;
    envp[k++] = (char *)"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (size_t i = 0; i < n_env; i++)
        if (!str_startswith(environ[i], "PATH="))
            envp[k++] = environ[i];
    envp[k] = NULL;

    char *argv[] = { (char *)DEBOOTSTRAP, (char *)"--variant=minbase",
                     (char *)suite,       (char *)target,
                     (char *)mirror,      NULL };
    pid_t pid;
    _cleanup_close_ int rd = -1;
    int r = spawn_piped(DEBOOTSTRAP, argv, envp, SPAWN_STDERR_TOO | SPAWN_OWN_PGROUP, &pid, &rd);
    if (r < 0)
        return error_set_errno(err, r, "running %s", DEBOOTSTRAP);

    _cleanup_free_ struct line_buf *lines = xcalloc(1, sizeof(*lines));
    lines->cb = log_cb;
    lines->userdata = userdata;
    int fail = 0; /* -ETIMEDOUT, or the -errno of a failed poll or read */
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + BUILD_TIMEOUT;
    for (;;) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= deadline) {
            fail = -ETIMEDOUT;
            break;
        }
        struct pollfd p = { .fd = rd, .events = POLLIN };
        int m = poll(&p, 1, (int)MIN((deadline - now) / USEC_PER_MSEC + 1, (usec_t)60000));
        if (m < 0 && errno != EINTR) {
            fail = -errno;
            break;
        }
        if (m <= 0)
            continue;
        char chunk[4096];
        ssize_t n = read(rd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail = -errno;
            break;
        }
        if (n == 0)
            break; /* EOF: debootstrap and everything it started are done with the pipe */
        line_feed(lines, chunk, (size_t)n);
    }
    if (lines->len)
        line_flush(lines);
    if (fail)
        kill(-pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return error_set_errno(err, errno, "waiting for debootstrap");
    if (fail == -ETIMEDOUT)
        return error_set(err, ETIMEDOUT, "debootstrap %s did not finish in 30 minutes", suite);
    if (fail)
        return error_set_errno(err, fail, "reading the output of debootstrap");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return error_set(err, EIO, "debootstrap %s failed (wait status %d); see its output", suite, status);
    return 0;
}

static int write_file_at(int dir, const char *name, const char *content)
{
    if (unlinkat(dir, name, 0) < 0 && errno != ENOENT)
        return -errno;
    _cleanup_close_ int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    size_t len = strlen(content);
    if (write(fd, content, len) != (ssize_t)len)
        return errno ? -errno : -EIO;
    return fchmod(fd, 0644) < 0 ? -errno : 0;
}

/* As `apt-get clean`: the packages debootstrap downloaded stay in apt's cache (~30 MB) that no
 * template needs. */
static int remove_downloaded_debs(int root)
{
    int fd = openat(root, "var/cache/apt/archives", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_type == DT_REG && str_endswith(de->d_name, ".deb") &&
            unlinkat(dirfd(d), de->d_name, 0) < 0 && r == 0)
            r = -errno;
    closedir(d);
    return r;
}

/* Makes a fresh debootstrap tree a sandbox root: envd's mount point, the sandbox's own /etc
 * files, no downloaded packages. */
static int finish_tree(const char *dir, struct error_record *err)
{
    _cleanup_close_ int root = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        return error_set_errno(err, errno, "open %s", dir);
    if (fchmod(root, 0755) < 0)
        return error_set_errno(err, errno, "chmod %s", dir);
    if (mkdirat(root, "opt", 0755) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "mkdir opt");
    _cleanup_close_ int opt = openat(root, "opt", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (opt < 0)
        return error_set_errno(err, errno, "open opt");
    if ((mkdirat(opt, "hutch", 0755) < 0 && errno != EEXIST) || fchmodat(opt, "hutch", 0755, 0) < 0)
        return error_set_errno(err, errno, "mkdir opt/hutch");
    _cleanup_close_ int etc = openat(root, "etc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (etc < 0)
        return error_set_errno(err, errno, "open etc");
    for (size_t i = 0; i < ARRAY_SIZE(etc_files); i++) {
        int r = write_file_at(etc, etc_files[i].name, etc_files[i].content);
        if (r < 0)
            return error_set_errno(err, r, "writing etc/%s", etc_files[i].name);
    }
    int r = remove_downloaded_debs(root);
    if (r < 0)
        return error_set_errno(err, r, "removing var/cache/apt/archives/*.deb");
    return 0;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int template_debootstrap(const char *cache_dir, const char *suite, template_log_cb log_cb, void *userdata,
                         char **ret_path, struct error_record *err)
{
    if (!cache_dir || !cache_dir[0] || !suite || !ret_path)
        return error_set(err, EINVAL, "debootstrap: missing argument");
    bool known = false;
    for (size_t i = 0; i < ARRAY_SIZE(suites); i++)
        known = known || streq(suite, suites[i]);
    if (!known)
        return error_set(err, EINVAL, "unsupported Debian suite \"%.64s\" (supported: bookworm)", suite);

    _cleanup_free_ char *dir = xasprintf("%s/debootstrap", cache_dir);
    _cleanup_free_ char *final = xasprintf("%s/%s", dir, suite);
    if (is_dir(final)) {
        *ret_path = TAKE_PTR(final);
        return 0;
    }
    if (mkdir(cache_dir, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "creating %s", cache_dir);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "creating %s", dir);

    _cleanup_free_ char *lock_path = xasprintf("%s/.%s.lock", dir, suite);
    _cleanup_close_ int lock = open(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lock < 0)
        return error_set_errno(err, errno, "opening %s", lock_path);
    while (flock(lock, LOCK_EX) < 0)
        if (errno != EINTR)
            return error_set_errno(err, errno, "locking %s", lock_path);
    /* The previous holder may have built it while this one waited. */
    if (is_dir(final)) {
        *ret_path = TAKE_PTR(final);
        return 0;
    }

    _cleanup_free_ char *tmp = xasprintf("%s/.%s.new", dir, suite);
    remove_tree(tmp);
    const char *mirror = secure_getenv("HUTCH_DEBIAN_MIRROR");
    if (!mirror || !mirror[0])
        mirror = DEFAULT_MIRROR;
    int r = run_debootstrap(suite, tmp, mirror, log_cb, userdata, err);
    if (r >= 0)
        r = finish_tree(tmp, err);
    if (r >= 0 && rename(tmp, final) < 0)
        r = error_set_errno(err, errno, "installing %s", final);
    if (r < 0) {
        remove_tree(tmp);
        return r;
    }
    *ret_path = TAKE_PTR(final);
    return 0;
}
