/* The `host` base template's own layer: the host's /usr is mounted read-only at /usr as a
 * second layer, and this layer supplies what surrounds it on a Debian 12 merged-usr system:
 * the bin/lib/lib64/sbin symlinks, mount-point directories and a small generated /etc (no
 * host secrets: only root, `user` 1000 and nobody exist). Everything is created relative to a
 * directory fd, never by joining paths. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "runtime/runtime.h"

#include "common/banned.h"

struct tpl_file {
    const char *path;
    mode_t mode;
    const char *content;
};

static const struct tpl_file files[] = {
    { "etc/passwd", 0644,
      "root:x:0:0:root:/root:/bin/bash\n"
      "user:x:1000:1000:user:/home/user:/bin/bash\n"
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" },
    { "etc/group", 0644,
      "root:x:0:\ntty:x:5:\nsudo:x:27:user\nusers:x:100:user\nuser:x:1000:\nnogroup:x:65534:\n" },
    { "etc/shadow", 0640,
      "root:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n" },
    { "etc/hosts", 0644, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" },
    { "etc/resolv.conf", 0644, "nameserver 1.1.1.1\nnameserver 8.8.8.8\n" },
    { "etc/nsswitch.conf", 0644,
      "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
      "protocols: files\nservices: files\nethers: files\nrpc: files\n" },
    { "etc/profile", 0644,
      "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
      "[ -d /etc/profile.d ] && for f in /etc/profile.d/*.sh; do [ -r \"$f\" ] && . \"$f\"; done\n" },
    { "etc/shells", 0644, "/bin/sh\n/bin/bash\n/usr/bin/sh\n/usr/bin/bash\n" },
    { "etc/hostname", 0644, "sandbox\n" },
    /* E2B's base lets `user` sudo without a password. sudo takes no password from anyone here
     * (auth is pam_deny), so only NOPASSWD rules can ever grant anything; setuid reaches only
     * the sandbox's own, unprivileged root. */
    { "etc/sudoers", 0440,
      "Defaults env_reset\n"
      "Defaults secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n"
      "Defaults !lecture, !syslog\n"
      "root ALL=(ALL:ALL) ALL\n"
      "%sudo ALL=(ALL:ALL) NOPASSWD: ALL\n" },
    { "etc/pam.d/sudo", 0644,
      "auth required pam_deny.so\naccount required pam_permit.so\nsession required pam_permit.so\n" },
    { "etc/pam.d/other", 0644,
      "auth required pam_deny.so\naccount required pam_deny.so\npassword required pam_deny.so\nsession "
      "required pam_deny.so\n" },
};

static const struct {
    const char *path;
    mode_t mode;
} dirs[] = {
    { "usr", 0755 },       { "etc", 0755 },       { "proc", 0555 },     { "sys", 0555 },
    { "dev", 0755 },       { "tmp", 01777 },      { "root", 0700 },     { "home", 0755 },
    { "home/user", 0755 }, { "var", 0755 },       { "var/tmp", 01777 }, { "var/lib", 0755 },
    { "var/log", 0755 },   { "var/cache", 0755 }, { "run", 0755 },      { "mnt", 0755 },
    { "opt", 0755 },       { "srv", 0755 },       { "media", 0755 },    { "etc/profile.d", 0755 },
    { "etc/pam.d", 0755 },
};

static const char *const usr_links[][2] = {
    { "usr/bin", "bin" },
    { "usr/lib", "lib" },
    { "usr/lib64", "lib64" },
    { "usr/sbin", "sbin" },
};

static int write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Debian's alternatives are symlinks in /etc/alternatives pointing into /usr: copy the links
 * (never the files) so that e.g. /usr/bin/awk resolves. */
static int copy_alternatives(int root, struct error_record *err)
{
    DIR *d = opendir("/etc/alternatives");
    if (!d)
        return 0;
    if (mkdirat(root, "etc/alternatives", 0755) < 0) {
        closedir(d);
        return error_set_errno(err, errno, "mkdir etc/alternatives");
    }
    _cleanup_close_ int alt = openat(root, "etc/alternatives", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct dirent *de;
    int r = 0;
    while (alt >= 0 && (de = readdir(d))) {
        if (de->d_type != DT_LNK)
            continue;
        char target[PATH_MAX];
        ssize_t n = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (symlinkat(target, alt, de->d_name) < 0) {
            r = error_set_errno(err, errno, "symlink etc/alternatives/%s", de->d_name);
            break;
        }
    }
    closedir(d);
    return r;
}

/* Configuration that software in the host's /usr reads from /etc (Debian keeps it there, often
 * behind a symlink from /usr: /usr/lib/R/etc -> /etc/R, matplotlib's rc file, the CA
 * certificates TLS clients load). All public, none of it secret; copied as it is on the host,
 * symlinks as symlinks, nothing followed. */
static const char *const host_etc[] = {
    "R",          "matplotlibrc", "ssl/certs", "ca-certificates.conf",
    "python3",    "python3.11",   "localtime", "timezone",
    "mime.types", "jupyter",      "fonts",
};

#define HOST_ETC_MAX_DEPTH 8
#define HOST_ETC_MAX_FILE (4u << 20)

/* Copies src_dir/name into dst_dir/name: directories recursively, regular files up to
 * HOST_ETC_MAX_FILE, symlinks as links; anything else is skipped. */
static int copy_etc_entry(int src_dir, int dst_dir, const char *name, unsigned depth,
                          struct error_record *err)
{
    struct stat st;
    if (fstatat(src_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : error_set_errno(err, errno, "stat /etc/.../%s", name);
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(src_dir, name, target, sizeof(target) - 1);
        if (n <= 0)
            return 0;
        target[n] = '\0';
        return symlinkat(target, dst_dir, name) < 0 && errno != EEXIST
                   ? error_set_errno(err, errno, "symlink etc/.../%s", name)
                   : 0;
    }
    if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > HOST_ETC_MAX_FILE)
            return 0;
        _cleanup_close_ int in = openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_close_ int out =
            openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 07777);
        if (in < 0 || out < 0)
            return error_set_errno(err, errno, "copy etc/.../%s", name);
        char buf[65536];
        for (;;) {
            ssize_t n = read(in, buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return error_set_errno(err, errno, "read /etc/.../%s", name);
            if (n == 0)
                break;
            int r = write_all(out, buf, (size_t)n);
            if (r < 0)
                return error_set_errno(err, r, "write etc/.../%s", name);
        }
        return fchmod(out, st.st_mode & 07777) < 0 ? error_set_errno(err, errno, "chmod etc/.../%s", name)
                                                   : 0;
    }
    if (!S_ISDIR(st.st_mode) || depth >= HOST_ETC_MAX_DEPTH)
        return 0;
    if (mkdirat(dst_dir, name, st.st_mode & 07777) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "mkdir etc/.../%s", name);
    _cleanup_close_ int in = openat(src_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    _cleanup_close_ int out = openat(dst_dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0 || out < 0)
        return error_set_errno(err, errno, "open etc/.../%s", name);
    DIR *d = fdopendir(in);
    if (!d)
        return error_set_errno(err, errno, "list /etc/.../%s", name);
    in = -1;
    int r = 0;
    struct dirent *de;
    while (r >= 0 && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            r = copy_etc_entry(dirfd(d), out, de->d_name, depth + 1, err);
    closedir(d);
    return r;
}

static int copy_host_etc(int root, struct error_record *err)
{
    _cleanup_close_ int src = open("/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int dst = openat(root, "etc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0 || dst < 0)
        return error_set_errno(err, errno, "open etc");
    for (size_t i = 0; i < ARRAY_SIZE(host_etc); i++) {
        /* "ssl/certs": the parents are made as plain directories. */
        char path[64];
        snprintf(path, sizeof(path), "%s", host_etc[i]);
        char *slash = strrchr(path, '/');
        _cleanup_close_ int s = -1, d = -1;
        const char *name = path;
        if (slash) {
            *slash = '\0';
            name = slash + 1;
            if (mkdirat(dst, path, 0755) < 0 && errno != EEXIST)
                return error_set_errno(err, errno, "mkdir etc/%s", path);
            s = openat(src, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            d = openat(dst, path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (s < 0 || d < 0)
                continue;
        }
        int r = copy_etc_entry(slash ? s : src, slash ? d : dst, name, 0, err);
        if (r < 0)
            return r;
    }
    return 0;
}

int runtime_base_template_build(const char *dir, struct error_record *err)
{
    if (!dir || dir[0] != '/')
        return error_set(err, EINVAL, "template directory must be absolute");
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "mkdir %s", dir);
    _cleanup_close_ int root = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        return error_set_errno(err, errno, "open %s", dir);
    if (fchmod(root, 0755) < 0)
        return error_set_errno(err, errno, "chmod %s", dir);
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        if (mkdirat(root, dirs[i].path, dirs[i].mode) < 0)
            return error_set_errno(err, errno, "mkdir %s", dirs[i].path);
        /* mkdir honours the umask; the sticky and world bits must be exact. */
        if (fchmodat(root, dirs[i].path, dirs[i].mode, 0) < 0)
            return error_set_errno(err, errno, "chmod %s", dirs[i].path);
    }
    if (fchownat(root, "home/user", 1000, 1000, AT_SYMLINK_NOFOLLOW) < 0)
        return error_set_errno(err, errno, "chown home/user");
    for (size_t i = 0; i < ARRAY_SIZE(usr_links); i++)
        if (symlinkat(usr_links[i][0], root, usr_links[i][1]) < 0)
            return error_set_errno(err, errno, "symlink %s", usr_links[i][1]);
    if (symlinkat("../usr/lib/os-release", root, "etc/os-release") < 0)
        return error_set_errno(err, errno, "symlink etc/os-release");
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        _cleanup_close_ int fd =
            openat(root, files[i].path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, files[i].mode);
        if (fd < 0)
            return error_set_errno(err, errno, "create %s", files[i].path);
        int r = write_all(fd, files[i].content, strlen(files[i].content));
        if (r < 0 || fchmod(fd, files[i].mode) < 0)
            return error_set_errno(err, r < 0 ? r : errno, "write %s", files[i].path);
    }
    int r = copy_alternatives(root, err);
    return r < 0 ? r : copy_host_etc(root, err);
}
