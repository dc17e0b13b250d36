/* Row 3 of the threat model (runc CVE-2021-30465): a racer renames symlinks over the mount
 * targets of a template while sandboxes start from it. A process on the host keeps swapping
 * the template's dev, dev/shm, dev/pts, proc, sys, tmp, usr, opt and opt/hutch between the real
 * directory and a symlink to /, /etc or a host directory holding a canary, by
 * renameat2(RENAME_EXCHANGE) and by plain rename(2) of a prepared symlink onto the name and
 * back. Meanwhile sandboxes are created from the template, up to 200 or 20 s. Each create either
 * fails cleanly (an error, nothing left of the sandbox) or starts a sandbox whose view is right:
 * the probe's `view` checks every mount of the runtime and that there is no other, then writes a
 * marker through every path a redirected mount would have led onto the host. Afterwards the host
 * is checked: no new mount where a sandbox's would land, no marker in /, /etc, the canary
 * directory or the template, the canary directory unchanged, / and /etc not replaced. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "priv-util.h"
#include "tap.h"

#include "common/banned.h"

#define MAX_CREATES 200
#define MAX_SECONDS 20

/* The template's mount targets (and /tmp, which a template might make a symlink) the racer
 * swaps, as parent directory and name. */
static const char *const race_targets[][2] = {
    { "", "dev" }, { "dev", "shm" },   { "dev", "pts" }, { "", "proc" }, { "", "sys" },
    { "", "tmp" }, { "opt", "hutch" }, { "", "usr" },    { "", "opt" },
};
#define N_TARGETS (sizeof(race_targets) / sizeof(race_targets[0]))
#define N_LINKS 3

struct race_shared {
    volatile int stop;
    volatile unsigned long swaps;
    volatile int error; /* errno of a failed rename */
    char what[160];
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void pause_us(uint64_t *s, unsigned max_us)
{
    struct timespec ts = { 0, (long)(rnd(s) % max_us) * 1000 };
    nanosleep(&ts, NULL);
}

static void link_name(char *out, size_t size, const char *name, unsigned k)
{
    snprintf(out, size, ".%s.l%u", name, k);
}

/* The racer: swaps until told to stop, and always finishes a swap with the directory back in
 * place, so the template is whole when it exits. Exit 0, or 1 with sh->error set. */
static _Noreturn void racer(const char *tpl, struct race_shared *sh, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    int parents[N_TARGETS];
    for (size_t i = 0; i < N_TARGETS; i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", tpl, race_targets[i][0]);
        parents[i] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (parents[i] < 0) {
            sh->error = errno;
            snprintf(sh->what, sizeof(sh->what), "open %.120s", path);
            _exit(1);
        }
    }
    uint64_t seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull | 1;
    while (!sh->stop) {
        size_t t = (size_t)(rnd(&seed) % N_TARGETS);
        unsigned k = (unsigned)(rnd(&seed) % N_LINKS);
        int p = parents[t];
        const char *name = race_targets[t][1];
        char lnk[64], away[64];
        link_name(lnk, sizeof(lnk), name, k);
        snprintf(away, sizeof(away), ".%s.away", name);
        int r;
        if (rnd(&seed) & 1) {
            /* Atomic: the name is a directory, then at once a symlink, then a directory. */
            r = renameat2(p, name, p, lnk, RENAME_EXCHANGE);
            if (r == 0) {
                pause_us(&seed, 500);
                r = renameat2(p, name, p, lnk, RENAME_EXCHANGE);
            }
        } else {
            /* rename(2) of the prepared symlink onto the name, and back: in between, the
             * name does not exist for a moment. */
            r = renameat(p, name, p, away);
            if (r == 0 && (r = renameat(p, lnk, p, name)) == 0) {
                pause_us(&seed, 500);
                r = renameat(p, name, p, lnk);
            }
            if (r == 0)
                r = renameat(p, away, p, name);
        }
        if (r < 0) {
            sh->error = errno;
            snprintf(sh->what, sizeof(sh->what), "swap %s/%s", race_targets[t][0], name);
            _exit(1);
        }
        sh->swaps++;
        pause_us(&seed, 300);
    }
    _exit(0);
}

static char *slurp(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return strdup("");
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf && (n = read(fd, buf + len, cap - 1 - len)) > 0) {
        len += (size_t)n;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    close(fd);
    if (buf)
        buf[len] = '\0';
    return buf;
}

static bool under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/');
}

/* Fails on every mount the host's mountinfo gained where a redirected sandbox mount would land:
 * on /, /etc, /tmp, /dev, /proc, /sys, the runtime's directory or the test's own. New mounts
 * elsewhere are printed only: other programs on this machine (ip netns of a concurrent test)
 * may mount meanwhile. */
static void assert_no_new_mounts(const char *before, const char *test_dir)
{
    char *now = slurp("/proc/self/mountinfo");
    ASSERT_TRUE(now != NULL);
    int bad = 0;
    for (char *l = now; *l;) {
        size_t k = strcspn(l, "\n");
        char line[2048], mp[1024] = "";
        snprintf(line, sizeof(line), "%.*s\n", (int)k, l);
        if (!strstr(before, line)) {
            sscanf(line, "%*s %*s %*s %*s %1023s", mp);
            bool suspect = !strcmp(mp, "/") || under(mp, "/etc") || under(mp, "/tmp") || under(mp, "/dev") ||
                           under(mp, "/proc") || under(mp, "/sys") || under(mp, "/run/hutch") ||
                           under(mp, test_dir);
            printf("# new host mount%s: %s", suspect ? " where a sandbox's would land" : "", line);
            bad += suspect;
        }
        l += k + (l[k] == '\n');
    }
    free(now);
    ASSERT_EQ(bad, 0);
}

/* The names in dir, sorted, one per line. */
static void listing(const char *dir, char *out, size_t size)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (len + strlen(names[i]->d_name) + 2 < size)
            len += (size_t)snprintf(out + len, size - len, "%s\n", names[i]->d_name);
        free(names[i]);
    }
    if (n >= 0)
        free(names);
}

/* What the runtime or the probe create in a mount target or through one: the host's / and
 * /etc must not gain any of these. */
static bool suspicious(const char *name, const char *marker)
{
    static const char *const names[] = { "null", "zero", "full", "random", "urandom", "tty",    "pts",
                                         "shm",  "ptmx", "fd",   "stdin",  "stdout",  "stderr", "rw",
                                         "l0",   "l1",   "l2",   "u0",     "u1",      "u2",     "self" };
    if (!strcmp(name, marker))
        return true;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i]))
            return true;
    return false;
}

static void assert_no_suspicious_additions(const char *dir, const char *before, const char *marker)
{
    static char now[1 << 16];
    listing(dir, now, sizeof(now));
    for (char *l = now; *l;) {
        size_t k = strcspn(l, "\n");
        char name[300], needle[310];
        snprintf(name, sizeof(name), "%.*s", (int)k, l);
        snprintf(needle, sizeof(needle), "\n%s\n", name);
        /* before starts with a newline so that every name is found whole */
        if (!strstr(before, needle)) {
            printf("# %s gained %s\n", dir, name);
            if (suspicious(name, marker))
                tap_fail(__FILE__, __LINE__, "%s/%s appeared on the host", dir, name);
        }
        l += k + (l[k] == '\n');
    }
}

static void write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_OK(fd);
    ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static bool same_inode_state(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_nlink == b->st_nlink &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

TEST(row03_symlink_race_on_mount_targets)
{
    struct priv_env env;
    priv_env_init(&env);
    char marker[64];
    snprintf(marker, sizeof(marker), "hutch-race-%d", (int)getpid());

    /* A host directory with a canary: the third symlink target, checked to the nanosecond. */
    char victim[400], canary[450], sub[450];
    snprintf(victim, sizeof(victim), "%s/victim", env.dir);
    snprintf(canary, sizeof(canary), "%s/canary", victim);
    snprintf(sub, sizeof(sub), "%s/sub", victim);
    ASSERT_OK(mkdir(victim, 0755));
    ASSERT_OK(mkdir(sub, 0755));
    write_text(canary, "untouched\n");

    /* The template: mount points for dev/shm and dev/pts too, and N_LINKS prepared symlinks
     * beside every target. */
    for (size_t i = 0; i < N_TARGETS; i++) {
        char dir[700], path[800];
        snprintf(dir, sizeof(dir), "%s/%s", env.tpl, race_targets[i][0]);
        snprintf(path, sizeof(path), "%s/%s", dir, race_targets[i][1]);
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            tap_fail(__FILE__, __LINE__, "mkdir %s: %s", path, strerror(errno));
        const char *to[N_LINKS] = { "/", "/etc", victim };
        for (unsigned k = 0; k < N_LINKS; k++) {
            char lnk[64];
            link_name(lnk, sizeof(lnk), race_targets[i][1], k);
            snprintf(path, sizeof(path), "%s/%s", dir, lnk);
            ASSERT_OK(symlink(to[k], path));
        }
    }

    /* The host before. */
    char *mounts_before = slurp("/proc/self/mountinfo");
    ASSERT_TRUE(mounts_before != NULL);
    static char root_before[1 << 16], etc_before[1 << 16], victim_before[4096], victim_after[4096];
    root_before[0] = etc_before[0] = '\n';
    listing("/", root_before + 1, sizeof(root_before) - 1);
    listing("/etc", etc_before + 1, sizeof(etc_before) - 1);
    listing(victim, victim_before, sizeof(victim_before));
    struct stat st_root, st_etc, st_victim, st_sub, st_canary, now;
    ASSERT_OK(stat("/", &st_root));
    ASSERT_OK(stat("/etc", &st_etc));
    ASSERT_OK(stat(victim, &st_victim));
    ASSERT_OK(stat(sub, &st_sub));
    ASSERT_OK(stat(canary, &st_canary));

    struct race_shared *sh =
        mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(sh != MAP_FAILED);
    memset(sh, 0, sizeof(*sh));
    fflush(stdout);
    pid_t self = getpid();
    pid_t rp = fork();
    ASSERT_OK(rp);
    if (rp == 0)
        racer(env.tpl, sh, self);
    /* The race is on before the first create. */
    for (int i = 0; i < 1000 && sh->swaps < 20 && !sh->error; i++)
        usleep(1000);

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int creates = 0, started = 0, failed = 0, shown = 0;
    int by_errno[4] = { 0 }; /* ELOOP, ENOENT, ENOTDIR, other */
    static struct priv_result res;
    while (creates < MAX_CREATES && seconds_since(&t0) < MAX_SECONDS && !sh->error) {
        struct runtime_spec spec;
        priv_spec_init(&env, &spec, (const char *const[]){ PROBE, "view", marker, NULL });
        priv_run(&env, &spec, &res);
        creates++;
        if (res.create_r < 0 || res.start_r < 0) {
            /* A clean failure: an error with its reason, nothing of the sandbox left. */
            int e = res.create_r < 0 ? -res.create_r : -res.start_r;
            by_errno[e == ELOOP ? 0 : e == ENOENT ? 1 : e == ENOTDIR ? 2 : 3]++;
            failed++;
            if (shown < 6 || (e != ELOOP && e != ENOENT && e != ENOTDIR)) {
                printf("# create %d failed: %s (%s)\n", creates, res.err.msg, strerror(e));
                shown++;
            }
            ASSERT_TRUE(res.err.msg[0] != '\0');
            ASSERT_FALSE(priv_cgroup_exists(spec.id));
            ASSERT_EQ(priv_count_procs_in_range(priv_slot_uid(&env, spec.slot)), 0);
            continue;
        }
        started++;
        if (!WIFEXITED(res.status) || WEXITSTATUS(res.status) != 0 || !strstr(res.out, "view ok\n")) {
            sh->stop = 1;
            printf("# sandbox %d started with a wrong view (status 0x%x):\n", creates, res.status);
            for (char *l = res.out; *l;) {
                size_t k = strcspn(l, "\n");
                printf("#   %.*s\n", (int)k, l);
                l += k + (l[k] == '\n');
            }
            tap_fail(__FILE__, __LINE__, "a racer changed a sandbox's view");
        }
    }
    double elapsed = seconds_since(&t0);
    sh->stop = 1;
    int rst;
    ASSERT_EQ(waitpid(rp, &rst, 0), rp);
    if (sh->error)
        tap_fail(__FILE__, __LINE__, "racer: %s: %s", sh->what, strerror(sh->error));
    ASSERT_TRUE(WIFEXITED(rst) && WEXITSTATUS(rst) == 0);
    printf("# %d creates in %.1f s while the racer made %lu swaps: %d started with the right view, "
           "%d failed cleanly (ELOOP %d, ENOENT %d, ENOTDIR %d, other %d)\n",
           creates, elapsed, sh->swaps, started, failed, by_errno[0], by_errno[1], by_errno[2], by_errno[3]);
    ASSERT_TRUE(creates > 0);
    ASSERT_TRUE(sh->swaps > 0);

    /* The template is whole again: a sandbox starts from it with the right view. */
    struct runtime_spec spec;
    priv_spec_init(&env, &spec, (const char *const[]){ PROBE, "view", marker, NULL });
    priv_run(&env, &spec, &res);
    if (res.create_r < 0 || res.start_r < 0)
        tap_fail(__FILE__, __LINE__, "after the race: %s", res.err.msg);
    ASSERT_EQ(WEXITSTATUS(res.status), 0);
    if (!strstr(res.out, "view ok\n"))
        tap_fail(__FILE__, __LINE__, "after the race: %s", res.out);

    /* The host: no mount was added, nothing written where a redirected mount would lead. */
    assert_no_new_mounts(mounts_before, env.dir);
    free(mounts_before);
    const char *const where[] = { "/", "/etc", victim, sub, env.tpl, env.probe_dir };
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        char path[700];
        snprintf(path, sizeof(path), "%s/%s", where[i], marker);
        if (access(path, F_OK) == 0)
            tap_fail(__FILE__, __LINE__, "%s exists on the host", path);
    }
    static const char *const tpl_dirs[] = { "tmp", "etc", "root", "dev", "dev/shm", "opt/hutch" };
    for (size_t i = 0; i < sizeof(tpl_dirs) / sizeof(tpl_dirs[0]); i++) {
        char path[700];
        snprintf(path, sizeof(path), "%s/%s/%s", env.tpl, tpl_dirs[i], marker);
        if (access(path, F_OK) == 0)
            tap_fail(__FILE__, __LINE__, "%s exists in the template", path);
    }
    listing(victim, victim_after, sizeof(victim_after));
    ASSERT_STREQ(victim_after, victim_before);
    ASSERT_OK(stat(victim, &now));
    ASSERT_TRUE(same_inode_state(&now, &st_victim));
    ASSERT_OK(stat(sub, &now));
    ASSERT_TRUE(same_inode_state(&now, &st_sub));
    ASSERT_OK(stat(canary, &now));
    ASSERT_TRUE(same_inode_state(&now, &st_canary));
    char *text = slurp(canary);
    ASSERT_STREQ(text, "untouched\n");
    free(text);
    /* / and /etc are the host's, where other programs may work meanwhile: the same inodes, and
     * no name appeared in them that the runtime or the probe would have made. */
    ASSERT_OK(stat("/", &now));
    ASSERT_TRUE(now.st_ino == st_root.st_ino && now.st_dev == st_root.st_dev);
    if (!same_inode_state(&now, &st_root))
        printf("# note: / changed meanwhile (by another program?)\n");
    ASSERT_OK(stat("/etc", &now));
    ASSERT_TRUE(now.st_ino == st_etc.st_ino && now.st_dev == st_etc.st_dev);
    if (!same_inode_state(&now, &st_etc))
        printf("# note: /etc changed meanwhile (by another program?)\n");
    assert_no_suspicious_additions("/", root_before, marker);
    assert_no_suspicious_additions("/etc", etc_before, marker);
    munmap(sh, sizeof(*sh));
    priv_env_release(&env);
}
