/* export_layer of the ns backend as root: a sandbox writes every kind of change, is frozen and
 * exported, and a second sandbox with the export as its top layers must see the same tree
 * (files, contents, owners, modes, xattrs, deletions). A hostile tree (symlinks to host files,
 * nesting deeper than the bound) never makes the export touch a host path. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "priv-util.h"
#include "tap.h"

#include "common/banned.h"

#define SH(...) ((const char *const[]){ "/bin/sh", "-c", __VA_ARGS__, NULL })

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        tap_fail(__FILE__, __LINE__, "expected \"%s\" in:\n%s", needle, hay);
}

/* Runs script as the sandbox's root; returns its exit status, output in out. */
static int exec_sh(struct runtime_sandbox *sb, const char *script, char *out, size_t size)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        tap_fail(__FILE__, __LINE__, "pipe");
    struct runtime_exec ex = { .argv = SH(script), .stdin_fd = -1, .stdout_fd = p[1], .stderr_fd = p[1] };
    struct error_record err;
    error_clear(&err);
    int pidfd = runtime_ns_ops.exec(sb, &ex, &err);
    close(p[1]);
    if (pidfd < 0)
        tap_fail(__FILE__, __LINE__, "exec: %s", err.msg);
    priv_read_all(p[0], out, size, 60000);
    close(p[0]);
    siginfo_t si;
    if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0)
        tap_fail(__FILE__, __LINE__, "waitid");
    close(pidfd);
    return si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
}

static struct runtime_sandbox *start_sleeper(struct priv_env *env, struct runtime_spec *spec)
{
    struct runtime_sandbox *sb = NULL;
    struct error_record err;
    error_clear(&err);
    if (runtime_ns_ops.create(&env->cfg, spec, &sb, &err) < 0 || runtime_ns_ops.start(sb, &err) < 0)
        tap_fail(__FILE__, __LINE__, "sandbox: %s", err.msg);
    return sb;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static void lstat_or_fail(const char *dir, const char *name, struct stat *st)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    if (lstat(p, st) < 0)
        tap_fail(__FILE__, __LINE__, "lstat %s: %s", p, strerror(errno));
}

static const char changes[] =
    "set -e; echo hello > /data/new; chown 1000:1000 /data/new; "
    "mkdir /data/udir; chown 1000:100 /data/udir; chmod 2750 /data/udir; "
    "printf s > /data/suid; chmod 4755 /data/suid; ln -s /etc/passwd /data/link; mkfifo /data/fifo; "
    "rm /data/del; echo more >> /data/keep; rm -rf /ldir; mkdir /ldir; echo fresh > /ldir/only; "
    "/usr/bin/python3 -c \"import os; os.setxattr('/data/new', 'user.test', b'val')\"; "
    "/usr/bin/python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('/data/sock')\"; "
    "ln /data/new /data/hard; mkdir /opt/hutch/added; echo x > /opt/hutch/added/f; "
    "echo usr > /usr/hutch-export-test; rm /usr/bin/yes; touch -d '2005-01-01' /data/udir; echo done";

static const char look[] = "for d in /data /ldir /opt/hutch/added; do /usr/bin/python3 /view.py $d; done; "
                           "test -e /usr/bin/yes && echo yes-present || echo yes-gone; "
                           "cat /usr/hutch-export-test; stat -c '%a %u %g' / /usr /opt/hutch; "
                           "cat /data/keep";

TEST(export_round_trip_gives_the_same_view)
{
    struct priv_env env;
    priv_env_init(&env);
    char lower[512], exp[512], p0[600], p1[600], p2[600];
    snprintf(lower, sizeof(lower), "%s/lower", env.dir);
    snprintf(exp, sizeof(exp), "%s/export", env.dir);
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "set -e; mkdir -p %s/data %s/ldir/sub; echo keep > %s/data/keep; echo del > %s/data/del; "
             "echo a > %s/ldir/a; echo b > %s/ldir/sub/b",
             lower, lower, lower, lower, lower, lower);
    ASSERT_EQ(priv_sh(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s/view.py", lower);
    priv_write_view_script(cmd);

    struct runtime_layer layers1[4] = { { lower, "/" }, env.layers[0], env.layers[1], env.layers[2] };
    struct runtime_spec spec;
    priv_spec_init(&env, &spec, (const char *const[]){ "/bin/sleep", "1000", NULL });
    spec.layers = layers1;
    spec.n_layers = 4;
    struct runtime_sandbox *sb = start_sleeper(&env, &spec);
    static char out[65536], before[65536], after[65536];
    int st = exec_sh(sb, changes, out, sizeof(out));
    printf("# %s", out);
    ASSERT_EQ(st, 0);
    ASSERT_EQ(exec_sh(sb, look, before, sizeof(before)), 0);

    ASSERT_OK(runtime_ns_ops.freeze(sb));
    int fds = count_fds();
    struct error_record err;
    error_clear(&err);
    int r = runtime_ns_ops.export_layer(sb, exp, &err);
    if (r < 0)
        printf("# %s\n", err.msg);
    ASSERT_OK(r);
    ASSERT_EQ(count_fds(), fds);
    /* An existing destination is refused and left alone. */
    ASSERT_EQ(runtime_ns_ops.export_layer(sb, exp, &err), -EEXIST);
    ASSERT_OK(runtime_ns_ops.destroy(sb));

    /* On the host: ids back in 0..65535, whiteouts, opaque markers, no bookkeeping xattrs. */
    snprintf(p0, sizeof(p0), "%s/0", exp);
    snprintf(p1, sizeof(p1), "%s/1", exp);
    snprintf(p2, sizeof(p2), "%s/2", exp);
    struct stat s;
    ASSERT_OK(lstat(exp, &s));
    ASSERT_EQ(s.st_mode & 07777, 0700);
    lstat_or_fail(p0, "data/new", &s);
    ASSERT_EQ(s.st_uid, 1000);
    ASSERT_EQ(s.st_gid, 1000);
    ino_t new_ino = s.st_ino;
    lstat_or_fail(p0, "data/hard", &s);
    ASSERT_NE(s.st_ino, new_ino);
    lstat_or_fail(p0, "data/suid", &s);
    ASSERT_EQ(s.st_mode & 07777, 04755);
    lstat_or_fail(p0, "data/udir", &s);
    ASSERT_EQ(s.st_mode & 07777, 02750);
    ASSERT_EQ(s.st_gid, 100);
    lstat_or_fail(p0, "data/del", &s);
    ASSERT_TRUE(S_ISCHR(s.st_mode) && s.st_rdev == makedev(0, 0));
    lstat_or_fail(p0, "data/fifo", &s);
    ASSERT_TRUE(S_ISFIFO(s.st_mode));
    lstat_or_fail(p0, "data/link", &s);
    ASSERT_TRUE(S_ISLNK(s.st_mode));
    lstat_or_fail(p2, "bin/yes", &s);
    ASSERT_TRUE(S_ISCHR(s.st_mode) && s.st_rdev == makedev(0, 0));
    lstat_or_fail(p1, "added/f", &s);
    lstat_or_fail(p2, "hutch-export-test", &s);
    char path[1024], v[64];
    snprintf(path, sizeof(path), "%s/data/sock", p0);
    ASSERT_TRUE(access(path, F_OK) < 0);
    snprintf(path, sizeof(path), "%s/ldir", p0);
    ASSERT_EQ(lgetxattr(path, "user.overlay.opaque", v, sizeof(v)), 1);
    snprintf(path, sizeof(path), "%s/data/new", p0);
    ASSERT_EQ(lgetxattr(path, "user.test", v, sizeof(v)), 3);
    snprintf(path, sizeof(path), "%s/data/keep", p0);
    static char names[65536];
    ssize_t n = llistxattr(path, names, sizeof(names));
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1)
        if (strncmp(names + i, "user.overlay.", 13) == 0)
            tap_fail(__FILE__, __LINE__, "bookkeeping xattr %s exported", names + i);
    ASSERT_OK(lstat(p0, &s)); /* the upper root of "/" */
    ASSERT_EQ(s.st_uid, 0);

    /* Another slot (another host id range), the export on top of the original layers. */
    struct runtime_layer layers2[7] = {
        { p0, "/" },   { lower, "/" }, env.layers[0], { p1, "/opt/hutch" },
        env.layers[1], { p2, "/usr" }, env.layers[2],
    };
    priv_spec_init(&env, &spec, (const char *const[]){ "/bin/sleep", "1000", NULL });
    spec.layers = layers2;
    spec.n_layers = 7;
    sb = start_sleeper(&env, &spec);
    ASSERT_EQ(exec_sh(sb, look, after, sizeof(after)), 0);
    ASSERT_OK(runtime_ns_ops.destroy(sb));
    printf("# the second sandbox sees:\n# %s", after);
    if (strcmp(before, after) != 0)
        tap_fail(__FILE__, __LINE__, "views differ:\n--- first sandbox\n%s--- second\n%s", before, after);
    assert_contains(after, "yes-gone\n");
    assert_contains(after, "usr\n");
    assert_contains(after, "/only 100644 0:0");
    assert_contains(after, "/new 100644 1000:1000");
    assert_contains(after, "user.test=76616c");
    assert_contains(after, "/suid 104755 0:0");
    assert_contains(after, "keep\nmore\n");
    ASSERT_TRUE(strstr(after, "/sub") == NULL); /* the old /ldir's content stays hidden */
    ASSERT_TRUE(strstr(after, "/del ") == NULL && strstr(after, "\ndel\n") == NULL);
    priv_env_release(&env);
}

TEST(export_of_a_hostile_tree_touches_no_host_path)
{
    struct priv_env env;
    priv_env_init(&env);
    struct runtime_spec spec;
    priv_spec_init(&env, &spec, (const char *const[]){ "/bin/sleep", "1000", NULL });
    struct runtime_sandbox *sb = start_sleeper(&env, &spec);
    static char out[65536];
    ASSERT_EQ(
        exec_sh(sb,
                "set -e; ln -s /etc/shadow /shadow; ln -s / /rootlink; mkdir /trap; ln -s /etc /trap/etc; "
                "ln -s ../../../../../../etc/passwd /trap/up; mkfifo /trap/fifo; "
                "mkdir /deep; cd /deep; i=0; while [ $i -lt 300 ]; do mkdir d; cd d; i=$((i+1)); done; "
                "echo bottom > f",
                out, sizeof(out)),
        0);
    struct stat shadow_before, shadow_after, passwd_before, passwd_after;
    ASSERT_OK(stat("/etc/shadow", &shadow_before));
    ASSERT_OK(stat("/etc/passwd", &passwd_before));
    char exp[512];
    snprintf(exp, sizeof(exp), "%s/export", env.dir);
    int fds = count_fds();
    struct error_record err;
    error_clear(&err);
    /* Deeper than the bound: a clean failure that removes what it wrote. */
    ASSERT_EQ(runtime_ns_ops.export_layer(sb, exp, &err), -ELOOP);
    printf("# %s\n", err.msg);
    assert_contains(err.msg, "deeper");
    ASSERT_TRUE(access(exp, F_OK) < 0);
    ASSERT_EQ(count_fds(), fds);

    ASSERT_EQ(exec_sh(sb,
                      "rm -rf "
                      "/deep/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/"
                      "d/d/d/d/d/d/d/d/d/d; truncate -s 50G /sparse && printf data >> /sparse",
                      out, sizeof(out)),
              0);
    ASSERT_OK(runtime_ns_ops.freeze(sb));
    int r = runtime_ns_ops.export_layer(sb, exp, &err);
    if (r < 0)
        printf("# %s\n", err.msg);
    ASSERT_OK(r);
    ASSERT_EQ(count_fds(), fds);
    /* A sparse file costs what it holds; hard links (each exported as a copy) are bounded. */
    struct stat s;
    char p[1024];
    snprintf(p, sizeof(p), "%s/0/sparse", exp);
    ASSERT_OK(lstat(p, &s));
    ASSERT_EQ(s.st_size, (50ll << 30) + 4);
    ASSERT_TRUE(s.st_blocks < 1024);
    ASSERT_OK(runtime_ns_ops.thaw(sb));
    ASSERT_EQ(
        exec_sh(sb,
                "dd if=/dev/urandom of=/big bs=1M count=20 2>/dev/null; for i in 1 2 3 4 5 6 7; do ln /big "
                "/big$i; done",
                out, sizeof(out)),
        0);
    char exp2[600];
    snprintf(exp2, sizeof(exp2), "%s-2", exp);
    ASSERT_EQ(runtime_ns_ops.export_layer(sb, exp2, &err), -EFBIG);
    printf("# %s\n", err.msg);
    ASSERT_TRUE(access(exp2, F_OK) < 0);
    ASSERT_EQ(count_fds(), fds);
    ASSERT_OK(runtime_ns_ops.destroy(sb));

    char target[256];
    snprintf(p, sizeof(p), "%s/0/shadow", exp);
    ssize_t n = readlink(p, target, sizeof(target) - 1);
    ASSERT_TRUE(n > 0);
    target[n] = '\0';
    ASSERT_STREQ(target, "/etc/shadow");
    snprintf(p, sizeof(p), "%s/0/trap/etc", exp);
    ASSERT_OK(lstat(p, &s));
    ASSERT_TRUE(S_ISLNK(s.st_mode));
    snprintf(p, sizeof(p), "%s/0/deep/d/d/d", exp);
    ASSERT_OK(lstat(p, &s));
    ASSERT_TRUE(S_ISDIR(s.st_mode));
    /* Nothing was written to, or through, the host's files. */
    ASSERT_OK(stat("/etc/shadow", &shadow_after));
    ASSERT_OK(stat("/etc/passwd", &passwd_after));
    ASSERT_EQ(shadow_after.st_ctim.tv_nsec, shadow_before.st_ctim.tv_nsec);
    ASSERT_EQ(shadow_after.st_mtim.tv_sec, shadow_before.st_mtim.tv_sec);
    ASSERT_EQ(passwd_after.st_ctim.tv_nsec, passwd_before.st_ctim.tv_nsec);
    ASSERT_EQ(shadow_after.st_mode, shadow_before.st_mode);
    ASSERT_EQ(shadow_after.st_uid, shadow_before.st_uid);
    priv_env_release(&env);
}
