/* Host-side layer operations (src/template/layer.c) as root: clones by hard links, diffs applied
 * in place, disk usage, hostile trees. Semantics are checked against the kernel: the same layers
 * are mounted as a real overlay (lower layers only, `userxattr` like the sandboxes' overlays)
 * before and after, and the merged views must print the same. Mounts live in a private mount
 * namespace of the test process and die with it. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "priv-util.h"
#include "tap.h"
#include "template/layer.h"

#include "common/banned.h"

struct fx {
    struct priv_env env;
    char view[400]; /* the view script */
};

static void fx_init(struct fx *f)
{
    priv_env_init(&f->env);
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        tap_fail(__FILE__, __LINE__, "private mount namespace: %s", strerror(errno));
    snprintf(f->view, sizeof(f->view), "%s/view.py", f->env.dir);
    priv_write_view_script(f->view);
}

/* Runs a shell script in dir with helpers: setx FILE NAME VALUE (an xattr, not following
 * symlinks), wh NAME (an overlay whiteout), opaque DIR, sock NAME (a unix socket). */
static void sh_in(const char *dir, const char *script)
{
    static char cmd[16384];
    snprintf(
        cmd, sizeof(cmd),
        "set -e; umask 022; mkdir -p '%s'; cd '%s'; "
        "setx() { /usr/bin/python3 -c 'import os,sys; os.setxattr(sys.argv[1], sys.argv[2], "
        "sys.argv[3].encode(), follow_symlinks=False)' \"$@\"; }; "
        "wh() { mknod \"$1\" c 0 0; }; opaque() { setx \"$1\" user.overlay.opaque y; }; "
        "sock() { /usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "
        "\"$1\"; }; %s",
        dir, dir, script);
    int r = priv_sh(cmd);
    if (r != 0)
        tap_fail(__FILE__, __LINE__, "fixture script failed (%d): %s", r, script);
}

/* The view of dir (a layer or a mount) into out. */
static void view(struct fx *f, const char *dir, char *out, size_t size)
{
    char file[512], cmd[1400];
    snprintf(file, sizeof(file), "%s/view.out", f->env.dir);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' '%s' > '%s'", f->view, dir, file);
    if (priv_sh(cmd) != 0)
        tap_fail(__FILE__, __LINE__, "view of %s failed", dir);
    if (priv_read_file(file, out, size) < 0)
        tap_fail(__FILE__, __LINE__, "read %s", file);
}

/* The view of an overlay of lowers ("a:b:c", top first). */
static void overlay_view(struct fx *f, const char *lowers, char *out, size_t size)
{
    char mnt[400], opts[2048];
    snprintf(mnt, sizeof(mnt), "%s/mnt", f->env.dir);
    mkdir(mnt, 0755);
    snprintf(opts, sizeof(opts), "lowerdir=%s,userxattr", lowers);
    if (mount("overlay", mnt, "overlay", MS_RDONLY, opts) < 0)
        tap_fail(__FILE__, __LINE__, "mount overlay %s: %s", opts, strerror(errno));
    view(f, mnt, out, size);
    if (umount2(mnt, 0) < 0)
        tap_fail(__FILE__, __LINE__, "umount: %s", strerror(errno));
}

static void assert_same_view(const char *a, const char *b)
{
    if (strcmp(a, b) != 0)
        tap_fail(__FILE__, __LINE__, "views differ:\n--- before\n%s--- after\n%s", a, b);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        tap_fail(__FILE__, __LINE__, "expected \"%s\" in:\n%s", needle, hay);
}

static ino_t ino_of(const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    struct stat st;
    if (lstat(p, &st) < 0)
        tap_fail(__FILE__, __LINE__, "stat %s: %s", p, strerror(errno));
    return st.st_ino;
}

static bool exists(const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

static char va[262144], vb[262144];

/* Removes the line that starts at the newline of `start` from a view. */
static void drop_line(char *v, const char *start)
{
    char *a = strstr(v, start);
    if (!a)
        tap_fail(__FILE__, __LINE__, "no \"%s\" in:\n%s", start + 1, v);
    char *e = strchr(a + 1, '\n');
    memmove(a, e, strlen(e) + 1);
}

/* A layer with everything a layer may hold. */
static const char rich_layer[] = "mkdir -m 0750 a; echo data > a/f; chown 1000:1001 a a/f; setx a user.k v; "
                                 "setx a trusted.t x; setx a/f user.file 1; "
                                 "ln -s /etc/shadow s; mkfifo p; chmod 0640 p; wh w; "
                                 "mkdir o; echo hidden-below > o/inner; opaque o; "
                                 "printf 'x' > su; chmod 4755 su; ln a/f hard; "
                                 "touch -h -d '2001-02-03 04:05:06' s a/f; touch -d '2002-01-01' a";

TEST(clone_linked_shares_files_and_recreates_the_rest)
{
    struct fx f;
    fx_init(&f);
    char src[512], dst[512];
    snprintf(src, sizeof(src), "%s/src", f.env.dir);
    snprintf(dst, sizeof(dst), "%s/dst", f.env.dir);
    sh_in(src, rich_layer);
    sh_in(src, "sock sock");
    struct error_record err;
    error_clear(&err);
    int r = layer_clone_linked(src, dst, &err);
    if (r < 0)
        printf("# %s\n", err.msg);
    ASSERT_OK(r);
    view(&f, src, va, sizeof(va));
    view(&f, dst, vb, sizeof(vb));
    printf("# %s", vb);
    assert_same_view(va, vb);
    assert_contains(vb, "/w 20644 0:0");
    assert_contains(vb, " dev 0,0\n");
    assert_contains(vb, "/su 104755 0:0");
    assert_contains(vb, "/a 40750 1000:1001");
    assert_contains(vb, "trusted.t=78");
    assert_contains(vb, " -> /etc/shadow\n");
    /* Files are shared, the rest is new; sockets are skipped. */
    ASSERT_EQ(ino_of(src, "a/f"), ino_of(dst, "a/f"));
    ASSERT_EQ(ino_of(src, "su"), ino_of(dst, "su"));
    ASSERT_EQ(ino_of(src, "hard"), ino_of(dst, "hard"));
    ASSERT_NE(ino_of(src, "a"), ino_of(dst, "a"));
    ASSERT_NE(ino_of(src, "w"), ino_of(dst, "w"));
    ASSERT_TRUE(exists(src, "sock"));
    ASSERT_FALSE(exists(dst, "sock"));

    /* dst must not exist, and an existing one is left alone. */
    ASSERT_EQ(layer_clone_linked(src, dst, &err), -EEXIST);
    ASSERT_TRUE(exists(dst, "a/f"));
    /* A failure removes what it made. */
    char bad[512];
    snprintf(bad, sizeof(bad), "%s/bad", f.env.dir);
    ASSERT_EQ(layer_clone_linked("/no/such/layer", bad, &err), -ENOENT);
    ASSERT_FALSE(exists(f.env.dir, "bad"));
    priv_env_release(&f.env);
}

/* bottom: a layer below base that apply_diff never sees; base: a clone of a template layer;
 * diff: an upper directory the way overlay writes it. */
static void diff_fixture(const char *bottom, const char *tpl, const char *diff)
{
    sh_in(bottom, "mkdir d gone nd sub; echo b > d/a; echo b > d/bot; echo b > gone/x; echo b > nd/bot; "
                  "echo b > wb; echo b > sub/bot; mkdir fd; echo b > fd/bot; echo b > lnk; mkdir rl; "
                  "echo b > rl/bot");
    sh_in(tpl, "mkdir d gone sub dd; echo base > d/a; echo base > d/c; echo base > gone/y; echo base > f; "
               "echo base > nd; echo base > dd/in; wh wb; echo base > sub/keep; setx sub user.old 1; "
               "wh fd; ln -s /tmp lnk; mkdir -m 0700 rl; echo base > rl/mine; opaque rl; "
               "touch -d '2003-01-01' sub d");
    sh_in(diff, "mkdir d gone nd sub newdir rl; wh d/a; echo diff > d/new; echo n > gone/n; opaque gone; "
                "echo diff > f; echo q > nd/q; echo diff > dd; chmod 0711 sub; chown 1000:1000 sub; "
                "setx sub user.x 1; echo diff > sub/add; mkdir -m 0700 newdir/deep; chown 1000:1000 newdir; "
                "wh newdir/deep/gone; ln -s /etc/passwd l; mkfifo fifo; printf s > su; chmod 4755 su; "
                "mkdir fd; echo d > fd/new; wh lnk; mkdir lnk2; echo d > rl/d; "
                "touch -d '2004-05-06' sub d newdir");
}

TEST(apply_diff_gives_the_overlay_view)
{
    struct fx f;
    fx_init(&f);
    char bottom[512], tpl[512], base[512], diff[512], lowers[2048];
    snprintf(bottom, sizeof(bottom), "%s/bottom", f.env.dir);
    snprintf(tpl, sizeof(tpl), "%s/tpl", f.env.dir);
    snprintf(base, sizeof(base), "%s/applied", f.env.dir);
    snprintf(diff, sizeof(diff), "%s/diff", f.env.dir);
    diff_fixture(bottom, tpl, diff);
    struct error_record err;
    error_clear(&err);
    ASSERT_OK(layer_clone_linked(tpl, base, &err));
    static char tpl_before[262144], tpl_after[262144];
    view(&f, tpl, tpl_before, sizeof(tpl_before));

    snprintf(lowers, sizeof(lowers), "%s:%s:%s", diff, base, bottom);
    overlay_view(&f, lowers, va, sizeof(va));
    int r = layer_apply_diff(base, diff, &err);
    if (r < 0)
        printf("# %s\n", err.msg);
    ASSERT_OK(r);
    snprintf(lowers, sizeof(lowers), "%s:%s", base, bottom);
    overlay_view(&f, lowers, vb, sizeof(vb));
    printf("# merged view after apply:\n# %s", vb);
    assert_same_view(va, vb);

    /* The points of the exercise, spelled out. */
    assert_contains(vb, "\n/d/bot ");           /* merged with the layer below */
    ASSERT_TRUE(strstr(vb, "\n/d/a ") == NULL); /* deleted stays deleted, below base too */
    ASSERT_TRUE(strstr(vb, "\n/gone/x ") == NULL && strstr(vb, "\n/gone/y ") == NULL);
    assert_contains(vb, "\n/gone/n ");
    assert_contains(vb, "\n/sub 40711 1000:1000 ");
    assert_contains(vb, " user.x=31\n");
    assert_contains(vb, "\n/sub/keep ");
    assert_contains(vb, "\n/su 104755 0:0");
    assert_contains(vb, "\n/l 120777 0:0");
    ASSERT_TRUE(strstr(vb, "\n/fd/bot ") == NULL); /* a directory over base's whiteout */
    ASSERT_TRUE(strstr(vb, "\n/nd/bot ") == NULL); /* a directory over base's file */
    ASSERT_TRUE(strstr(vb, "\n/rl/bot ") == NULL); /* base's opaque marker stays */
    assert_contains(vb, "\n/rl/mine ");
    /* The diff is consumed; the template the base was cloned from is untouched. */
    ASSERT_FALSE(exists(diff, "d"));
    ASSERT_FALSE(exists(diff, "f"));
    view(&f, tpl, tpl_after, sizeof(tpl_after));
    assert_same_view(tpl_before, tpl_after);
    /* In the base the whiteout is still there for the layers below. */
    struct stat st;
    char p[1024];
    snprintf(p, sizeof(p), "%s/d/a", base);
    ASSERT_OK(lstat(p, &st));
    ASSERT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
    /* Running it again on what is left (nothing) changes nothing. */
    ASSERT_OK(layer_apply_diff(base, diff, &err));
    overlay_view(&f, lowers, va, sizeof(va));
    assert_same_view(vb, va);
    priv_env_release(&f.env);
}

TEST(apply_diff_resumes_after_an_interruption)
{
    struct fx f;
    fx_init(&f);
    char bottom[512], tpl[512], base[512], diff[512], lowers[2048];
    snprintf(bottom, sizeof(bottom), "%s/bottom", f.env.dir);
    snprintf(tpl, sizeof(tpl), "%s/tpl", f.env.dir);
    snprintf(base, sizeof(base), "%s/applied", f.env.dir);
    snprintf(diff, sizeof(diff), "%s/diff", f.env.dir);
    diff_fixture(bottom, tpl, diff);
    struct error_record err;
    ASSERT_OK(layer_clone_linked(tpl, base, &err));
    snprintf(lowers, sizeof(lowers), "%s:%s:%s", diff, base, bottom);
    overlay_view(&f, lowers, va, sizeof(va));
    /* What a run killed midway leaves: some entries moved, an opaque directory's target half
     * removed, a merged directory's entries moved but not its attributes. */
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "set -e; mv '%s/f' '%s/f'; rm '%s/gone/y'; mv '%s/sub/add' '%s/sub/add'; "
             "rm '%s/d/a'",
             diff, base, base, diff, base, base);
    ASSERT_EQ(priv_sh(cmd), 0);
    ASSERT_OK(layer_apply_diff(base, diff, &err));
    snprintf(lowers, sizeof(lowers), "%s:%s", base, bottom);
    overlay_view(&f, lowers, vb, sizeof(vb));
    /* The entries moved by hand above went without the record of the diff directories' times
     * that a real run writes before it moves anything: the root's and /sub's lines are
     * compared without them. */
    assert_contains(vb, "\n/sub 40711 1000:1000 ");
    drop_line(va, "\n/sub 40711");
    drop_line(vb, "\n/sub 40711");
    ASSERT_TRUE(strchr(va, '\n') && strchr(vb, '\n'));
    assert_same_view(strchr(va, '\n'), strchr(vb, '\n'));
    priv_env_release(&f.env);
}

TEST(disk_usage_shares_linked_blocks)
{
    struct fx f;
    fx_init(&f);
    char src[512], dst[512];
    snprintf(src, sizeof(src), "%s/src", f.env.dir);
    snprintf(dst, sizeof(dst), "%s/dst", f.env.dir);
    sh_in(src, "mkdir d; dd if=/dev/urandom of=d/big bs=1M count=4 2>/dev/null; echo x > small; ln -s big l");
    struct error_record err;
    uint64_t before = 0, a = 0, b = 0;
    ASSERT_OK(layer_disk_usage(src, &before, &err));
    printf("# alone: %llu\n", (unsigned long long)before);
    ASSERT_TRUE(before >= (4u << 20) && before < (4u << 20) + (64u << 10));
    ASSERT_OK(layer_clone_linked(src, dst, &err));
    ASSERT_OK(layer_disk_usage(src, &a, &err));
    ASSERT_OK(layer_disk_usage(dst, &b, &err));
    printf("# shared: %llu + %llu\n", (unsigned long long)a, (unsigned long long)b);
    ASSERT_TRUE(a >= (2u << 20) && a < (2u << 20) + (64u << 10));
    ASSERT_TRUE(b >= (2u << 20) && b < (2u << 20) + (64u << 10));
    ASSERT_EQ(layer_disk_usage("/no/such/layer", &a, &err), -ENOENT);
    priv_env_release(&f.env);
}

TEST(hostile_layers_touch_nothing_outside)
{
    struct fx f;
    fx_init(&f);
    char outside[512], base[512], diff[512], deep[512], dst[512];
    snprintf(outside, sizeof(outside), "%s/outside", f.env.dir);
    snprintf(base, sizeof(base), "%s/applied", f.env.dir);
    snprintf(diff, sizeof(diff), "%s/diff", f.env.dir);
    snprintf(deep, sizeof(deep), "%s/deep", f.env.dir);
    snprintf(dst, sizeof(dst), "%s/dst", f.env.dir);
    sh_in(outside, "echo keep > victim; mkdir sub; echo keep > sub/victim");
    /* base's entries are symlinks to a host directory; the diff writes through those names. */
    char script[2048];
    snprintf(script, sizeof(script), "ln -s '%s' x; ln -s '%s' y; ln -s '%s/victim' z", outside, outside,
             outside);
    sh_in(base, script);
    sh_in(diff, "mkdir x y; echo evil > x/victim; mkdir y/sub; echo evil > y/sub/victim; wh y/sub/gone; "
                "echo evil > z; mkdir w; wh w/victim");
    static char host_before[65536], host_after[65536];
    view(&f, outside, host_before, sizeof(host_before));
    struct error_record err;
    int r = layer_apply_diff(base, diff, &err);
    if (r < 0)
        printf("# %s\n", err.msg);
    ASSERT_OK(r);
    view(&f, outside, host_after, sizeof(host_after));
    assert_same_view(host_before, host_after);
    struct stat st;
    char p[1024];
    snprintf(p, sizeof(p), "%s/x", base);
    ASSERT_OK(lstat(p, &st));
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    ASSERT_EQ(getxattr(p, "user.overlay.opaque", p + 600, 8), 1);
    snprintf(p, sizeof(p), "%s/z", base);
    ASSERT_OK(lstat(p, &st));
    ASSERT_TRUE(S_ISREG(st.st_mode));

    /* Cloning, measuring and applying a tree deeper than the bound fails cleanly. */
    sh_in(deep, "i=0; while [ $i -lt 300 ]; do mkdir d; cd d; i=$((i+1)); done; echo bottom > f");
    ASSERT_EQ(layer_clone_linked(deep, dst, &err), -ELOOP);
    printf("# %s\n", err.msg);
    ASSERT_FALSE(exists(f.env.dir, "dst"));
    uint64_t bytes;
    ASSERT_EQ(layer_disk_usage(deep, &bytes, &err), -ELOOP);
    priv_env_release(&f.env);
}
