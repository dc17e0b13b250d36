/* Sandbox cgroups, v1 and v2 behind struct ns_cgroup_ops (crun's handlers). Each sandbox gets
 * one cgroup named after its id under "<the caller's own cgroup>/<parent>" (parent defaults to
 * "hutch"), so that hutch nests inside whatever the host gave it. v1 (this machine): memory,
 * cpu, cpuacct, pids, freezer, devices hierarchies, one directory each. v2 (modern hosts): one
 * directory, controllers enabled in the parent's subtree_control, CLONE_INTO_CGROUP, cgroup.kill;
 * a caller whose own cgroup holds processes (a systemd service with Delegate=yes) moves them into
 * the leaf NS_CGROUP_V2_LEAF first (v2_enable_own).
 *
 * attach() is also called in exec()'s forked helper: it only opens and writes. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "runtime/ns/ns.h"

#include "common/banned.h"

#define CG_ROOT "/sys/fs/cgroup"
#define CG_RETRY_USEC 5000
#define CG_WAIT_USEC (10 * 1000 * 1000)

static const char *const v1_names[NS_CG_MAX] = {
    [NS_CG_MEMORY] = "memory", [NS_CG_CPU] = "cpu",         [NS_CG_CPUACCT] = "cpuacct",
    [NS_CG_PIDS] = "pids",     [NS_CG_FREEZER] = "freezer", [NS_CG_DEVICES] = "devices",
};

static void sleep_usec(long usec)
{
    struct timespec ts = { usec / 1000000, (usec % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static int write_file(const char *dir, const char *file, const char *value)
{
    char path[512];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int r = n < 0 ? -errno : (size_t)n == len ? 0 : -EIO;
    close(fd);
    return r;
}

static int read_file(const char *dir, const char *file, char *out, size_t size)
{
    char path[512];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, out + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == size - 1)
            break;
    }
    close(fd);
    out[len] = '\0';
    return (int)len;
}

static int read_u64(const char *dir, const char *file, uint64_t *ret)
{
    char buf[64];
    int r = read_file(dir, file, buf, sizeof(buf));
    if (r < 0)
        return r;
    buf[strcspn(buf, "\n")] = '\0';
    return parse_uint64(buf, ret);
}

/* Value of "key N" in a flat keyed file (cpu.stat, cgroup.events). */
static int read_key(const char *dir, const char *file, const char *key, uint64_t *ret)
{
    char buf[4096];
    int r = read_file(dir, file, buf, sizeof(buf));
    if (r < 0)
        return r;
    size_t klen = strlen(key);
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return parse_uint64(line + klen + 1, ret);
        line = nl ? nl + 1 : NULL;
    }
    return -ENOENT;
}

/* The caller's own cgroup path in the hierarchy whose /proc/self/cgroup line matches. */
static int own_cgroup(const char *controller, char *out, size_t size)
{
    char buf[4096];
    int r = read_file("/proc/self", "cgroup", buf, sizeof(buf));
    if (r < 0)
        return r;
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2) {
            *c2 = '\0';
            const char *list = c1 + 1;
            bool match = false;
            if (!controller)
                match = list[0] == '\0';
            else
                for (const char *p = list; *p;) {
                    size_t k = strcspn(p, ",");
                    if (k == strlen(controller) && strncmp(p, controller, k) == 0)
                        match = true;
                    p += k;
                    if (*p == ',')
                        p++;
                }
            if (match)
                return str_copy(out, size, streq(c2 + 1, "/") ? "" : c2 + 1);
        }
        line = nl ? nl + 1 : NULL;
    }
    return -ENOENT;
}

static int mkdir_p1(const char *dir)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ---- v1 ---- */

static int v1_base(int c, const char *parent, char *out, size_t size)
{
    char own[256];
    char mnt[128];
    snprintf(mnt, sizeof(mnt), CG_ROOT "/%s", v1_names[c]);
    struct statfs sfs;
    if (statfs(mnt, &sfs) < 0 || sfs.f_type != CGROUP_SUPER_MAGIC) {
        if (c != NS_CG_CPU && c != NS_CG_CPUACCT)
            return -ENOENT;
        snprintf(mnt, sizeof(mnt), CG_ROOT "/cpu,cpuacct");
        if (statfs(mnt, &sfs) < 0 || sfs.f_type != CGROUP_SUPER_MAGIC)
            return -ENOENT;
    }
    int r = own_cgroup(v1_names[c], own, sizeof(own));
    if (r < 0)
        own[0] = '\0';
    if (snprintf(out, size, "%s%s/%s", mnt, own, parent) >= (int)size)
        return -ENAMETOOLONG;
    return 0;
}

static int v1_paths(struct ns_cgroup *cg, const char *parent, const char *name)
{
    for (int c = 0; c < NS_CG_MAX; c++) {
        char base[200];
        cg->dirs[c][0] = '\0';
        if (v1_base(c, parent, base, sizeof(base)) < 0)
            continue;
        /* cpu and cpuacct may share one hierarchy; use it once. */
        snprintf(cg->dirs[c], sizeof(cg->dirs[c]), "%s/%s", base, name);
        if (c == NS_CG_CPUACCT && streq(cg->dirs[c], cg->dirs[NS_CG_CPU]))
            cg->dirs[c][0] = '\0';
    }
    if (!cg->dirs[NS_CG_MEMORY][0] || !cg->dirs[NS_CG_PIDS][0] || !cg->dirs[NS_CG_FREEZER][0])
        return -EOPNOTSUPP;
    return 0;
}

static int list_dir(const char *dir, void (*cb)(const char *, void *), void *userdata)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        cb(de->d_name, userdata);
        n++;
    }
    closedir(d);
    return n;
}

static int v1_list(const char *parent, void (*cb)(const char *, void *), void *userdata)
{
    char base[200];
    int r = v1_base(NS_CG_MEMORY, parent, base, sizeof(base));
    if (r < 0)
        return r;
    return list_dir(base, cb, userdata);
}

static const char *const v1_devices_allowed[] = {
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm",
};

static int v1_create(struct ns_cgroup *cg, const struct runtime_limits *l)
{
    int r;
    for (int c = 0; c < NS_CG_MAX; c++) {
        if (!cg->dirs[c][0])
            continue;
        char parent[256];
        str_copy(parent, sizeof(parent), cg->dirs[c]);
        *strrchr(parent, '/') = '\0';
        if ((r = mkdir_p1(parent)) < 0)
            return r;
        if (mkdir(cg->dirs[c], 0755) < 0)
            return -errno;
        cg->made[c] = true;
    }
    char v[64];
    if (l->memory_bytes) {
        /* The writable layer is a tmpfs charged here, so the limit covers both: the workload
         * keeps memory_bytes however full the disk is, and a full disk is ENOSPC, not OOM. */
        snprintf(v, sizeof(v), "%" PRIu64, l->memory_bytes + l->disk_bytes);
        if ((r = write_file(cg->dirs[NS_CG_MEMORY], "memory.limit_in_bytes", v)) < 0)
            return r;
        /* No swap: memsw equal to the limit (absent when the kernel has no swap accounting). */
        r = write_file(cg->dirs[NS_CG_MEMORY], "memory.memsw.limit_in_bytes", v);
        if (r < 0 && r != -ENOENT)
            return r;
    }
    if (l->pids_max) {
        snprintf(v, sizeof(v), "%" PRIu32, l->pids_max);
        if ((r = write_file(cg->dirs[NS_CG_PIDS], "pids.max", v)) < 0)
            return r;
    }
    if (l->cpu_millis) {
        if (!cg->dirs[NS_CG_CPU][0])
            return -EOPNOTSUPP;
        if ((r = write_file(cg->dirs[NS_CG_CPU], "cpu.cfs_period_us", "100000")) < 0)
            return r;
        snprintf(v, sizeof(v), "%" PRIu64, (uint64_t)l->cpu_millis * 100);
        if ((r = write_file(cg->dirs[NS_CG_CPU], "cpu.cfs_quota_us", v)) < 0)
            return r;
    }
    if (cg->dirs[NS_CG_DEVICES][0]) {
        if ((r = write_file(cg->dirs[NS_CG_DEVICES], "devices.deny", "a")) < 0)
            return r;
        for (size_t i = 0; i < ARRAY_SIZE(v1_devices_allowed); i++)
            if ((r = write_file(cg->dirs[NS_CG_DEVICES], "devices.allow", v1_devices_allowed[i])) < 0)
                return r;
    }
    return 0;
}

static int v1_attach(struct ns_cgroup *cg, pid_t pid)
{
    char v[32];
    snprintf(v, sizeof(v), "%d", (int)pid);
    for (int c = 0; c < NS_CG_MAX; c++) {
        if (!cg->dirs[c][0])
            continue;
        int r = write_file(cg->dirs[c], "cgroup.procs", v);
        if (r < 0)
            return r;
    }
    return 0;
}

static int v1_freeze(struct ns_cgroup *cg, bool frozen)
{
    const char *want = frozen ? "FROZEN" : "THAWED";
    int r = write_file(cg->dirs[NS_CG_FREEZER], "freezer.state", want);
    if (r < 0)
        return r;
    for (long waited = 0; waited < CG_WAIT_USEC; waited += 1000) {
        char buf[32];
        r = read_file(cg->dirs[NS_CG_FREEZER], "freezer.state", buf, sizeof(buf));
        if (r < 0)
            return r;
        if (str_startswith(buf, want))
            return 0;
        /* FREEZING: a task is in an uninterruptible sleep; asking again moves it on. */
        if (frozen)
            write_file(cg->dirs[NS_CG_FREEZER], "freezer.state", want);
        sleep_usec(1000);
    }
    return -ETIMEDOUT;
}

/* Signals every task listed in dir's cgroup.procs; returns how many there were. */
static int kill_listed(const char *dir)
{
    char buf[65536];
    int r = read_file(dir, "cgroup.procs", buf, sizeof(buf));
    if (r < 0)
        return r;
    int n = 0;
    for (char *p = buf; *p;) {
        size_t k = strcspn(p, "\n");
        p[k] = '\0';
        int pid;
        if (k > 0 && parse_int(p, &pid) == 0 && pid > 0) {
            kill(pid, SIGKILL);
            n++;
        }
        p += k + 1;
        if ((size_t)(p - buf) >= (size_t)r)
            break;
    }
    return n;
}

static int v1_kill(struct ns_cgroup *cg)
{
    /* Freeze so that nothing forks between reading the list and the signal, kill every task,
     * then thaw: a frozen task only dies once it runs again. */
    int fr = v1_freeze(cg, true);
    for (int c = 0; c < NS_CG_MAX; c++)
        if (cg->dirs[c][0])
            kill_listed(cg->dirs[c]);
    int r = v1_freeze(cg, false);
    return fr < 0 ? fr : r;
}

static int v1_populated(struct ns_cgroup *cg)
{
    for (int c = 0; c < NS_CG_MAX; c++) {
        if (!cg->dirs[c][0])
            continue;
        char buf[64];
        int r = read_file(cg->dirs[c], "cgroup.procs", buf, sizeof(buf));
        if (r == -ENOENT)
            continue;
        if (r < 0)
            return r;
        if (r > 0)
            return 1;
    }
    return 0;
}

static int v1_stats(struct ns_cgroup *cg, struct runtime_stats *ret)
{
    uint64_t v;
    const char *acct = cg->dirs[NS_CG_CPUACCT][0] ? cg->dirs[NS_CG_CPUACCT] : cg->dirs[NS_CG_CPU];
    if (read_u64(acct, "cpuacct.usage", &v) == 0)
        ret->cpu_usec = v / 1000;
    if (read_u64(cg->dirs[NS_CG_MEMORY], "memory.usage_in_bytes", &v) == 0)
        ret->memory_bytes = v;
    if (read_u64(cg->dirs[NS_CG_PIDS], "pids.current", &v) == 0)
        ret->pids = v;
    return 0;
}

static int rmdir_retry(const char *dir)
{
    for (long waited = 0;; waited += CG_RETRY_USEC) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY || waited >= CG_WAIT_USEC)
            return -errno;
        sleep_usec(CG_RETRY_USEC);
    }
}

static int v1_remove(struct ns_cgroup *cg)
{
    int ret = 0;
    for (int c = 0; c < NS_CG_MAX; c++) {
        if (!cg->dirs[c][0])
            continue;
        int r = rmdir_retry(cg->dirs[c]);
        if (r < 0 && ret == 0)
            ret = r;
    }
    return ret;
}

const struct ns_cgroup_ops ns_cgroup_v1_ops = {
    .name = "v1",
    .paths = v1_paths,
    .list = v1_list,
    .create = v1_create,
    .attach = v1_attach,
    .freeze = v1_freeze,
    .kill = v1_kill,
    .stats = v1_stats,
    .populated = v1_populated,
    .remove = v1_remove,
};

/* ---- v2 ---- */

static int v2_mount(char *out, size_t size)
{
    struct statfs sfs;
    if (statfs(CG_ROOT, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC)
        return str_copy(out, size, CG_ROOT);
    if (statfs(CG_ROOT "/unified", &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC)
        return str_copy(out, size, CG_ROOT "/unified");
    return -ENOENT;
}

/* The caller's own v2 cgroup ("" for the root), the one hutch nests in: once v2_enable_own() has moved
 * the caller into <own>/NS_CGROUP_V2_LEAF, still <own>. */
static void v2_own(char *out, size_t size)
{
    if (own_cgroup(NULL, out, size) < 0) {
        out[0] = '\0';
        return;
    }
    char *slash = strrchr(out, '/');
    if (slash && streq(slash + 1, NS_CGROUP_V2_LEAF))
        *slash = '\0';
}

static int v2_base(const char *parent, char *out, size_t size, char *own_out, size_t own_size)
{
    char mnt[64], own[256];
    int r = v2_mount(mnt, sizeof(mnt));
    if (r < 0)
        return r;
    v2_own(own, sizeof(own));
    if (own_out && snprintf(own_out, own_size, "%s%s", mnt, own) >= (int)own_size)
        return -ENAMETOOLONG;
    if (snprintf(out, size, "%s%s/%s", mnt, own, parent) >= (int)size)
        return -ENAMETOOLONG;
    return 0;
}

static int v2_paths(struct ns_cgroup *cg, const char *parent, const char *name)
{
    char base[200];
    int r = v2_base(parent, base, sizeof(base), NULL, 0);
    if (r < 0)
        return r;
    for (int c = 0; c < NS_CG_MAX; c++)
        cg->dirs[c][0] = '\0';
    snprintf(cg->dirs[0], sizeof(cg->dirs[0]), "%s/%s", base, name);
    return 0;
}

static int v2_list(const char *parent, void (*cb)(const char *, void *), void *userdata)
{
    char base[200];
    int r = v2_base(parent, base, sizeof(base), NULL, 0);
    if (r < 0)
        return r;
    return list_dir(base, cb, userdata);
}

static const char *const v2_controllers[] = { "+memory", "+pids", "+cpu" };

/* Enables the limit controllers for dir's children, one at a time: a host may delegate some and
 * not others (one write of all three fails as a whole, ENOENT), and a limit whose controller is
 * missing fails later, as EOPNOTSUPP, only when it is asked for. Returns -EBUSY when dir holds
 * processes (v2's "no internal processes" rule; the root is exempt), else 0. */
static int v2_enable_controllers(const char *dir)
{
    for (size_t i = 0; i < ARRAY_SIZE(v2_controllers); i++)
        if (write_file(dir, "cgroup.subtree_control", v2_controllers[i]) == -EBUSY)
            return -EBUSY;
    return 0;
}

/* The caller's own cgroup enables the controllers for the sandboxes below it. A supervisor that
 * gives hutch a cgroup of its own (systemd Delegate=yes, a container's cgroup namespace) starts
 * hutch's process in that very cgroup, where the kernel refuses to enable controllers (EBUSY):
 * every process of it then moves into the leaf <own>/NS_CGROUP_V2_LEAF, as systemd asks of
 * delegated services, and the controllers are enabled. Paths stay those of <own> (v2_own()). */
static int v2_enable_own(const char *own)
{
    int r = v2_enable_controllers(own);
    if (r != -EBUSY)
        return r;
    char leaf[320];
    if (snprintf(leaf, sizeof(leaf), "%s/" NS_CGROUP_V2_LEAF, own) >= (int)sizeof(leaf))
        return -ENAMETOOLONG;
    int m = mkdir_p1(leaf);
    if (m < 0)
        return m;
    /* A few rounds: a process may fork while the list is read. */
    for (int round = 0; round < 8 && r == -EBUSY; round++) {
        char buf[65536];
        int n = read_file(own, "cgroup.procs", buf, sizeof(buf));
        if (n < 0)
            return n;
        for (char *p = buf; *p;) {
            size_t k = strcspn(p, "\n");
            char c = p[k];
            p[k] = '\0';
            int pid;
            /* A process that exited meanwhile: ESRCH. */
            if (k > 0 && parse_int(p, &pid) == 0 && pid > 0) {
                int w = write_file(leaf, "cgroup.procs", p);
                if (w < 0 && w != -ESRCH)
                    return w;
            }
            if (!c)
                break;
            p += k + 1;
        }
        r = v2_enable_controllers(own);
    }
    return r;
}

static int v2_create(struct ns_cgroup *cg, const struct runtime_limits *l)
{
    char parent[256], own[256];
    str_copy(parent, sizeof(parent), cg->dirs[0]);
    *strrchr(parent, '/') = '\0';
    int r = mkdir_p1(parent);
    if (r < 0)
        return r;
    const char *p = strrchr(parent, '/');
    size_t own_len = (size_t)(p - parent);
    memcpy(own, parent, own_len);
    own[own_len] = '\0';
    /* Delegation: the controllers must be enabled on every level down to the sandbox, from the
     * caller's own cgroup (v2_enable_own) through the parent. A controller the host did not
     * delegate shows up below as a missing limit file: EOPNOTSUPP. */
    bool want_limits = l->memory_bytes || l->pids_max || l->cpu_millis;
    if (want_limits) {
        if ((r = v2_enable_own(own)) < 0)
            return r;
        v2_enable_controllers(parent);
    }
    if (mkdir(cg->dirs[0], 0755) < 0)
        return -errno;
    cg->made[0] = true;
    char v[64];
    if (l->memory_bytes) {
        snprintf(v, sizeof(v), "%" PRIu64, l->memory_bytes + l->disk_bytes);
        if ((r = write_file(cg->dirs[0], "memory.max", v)) < 0)
            return r == -ENOENT ? -EOPNOTSUPP : r;
        r = write_file(cg->dirs[0], "memory.swap.max", "0");
        if (r < 0 && r != -ENOENT)
            return r;
    }
    if (l->pids_max) {
        snprintf(v, sizeof(v), "%" PRIu32, l->pids_max);
        if ((r = write_file(cg->dirs[0], "pids.max", v)) < 0)
            return r == -ENOENT ? -EOPNOTSUPP : r;
    }
    if (l->cpu_millis) {
        snprintf(v, sizeof(v), "%" PRIu64 " 100000", (uint64_t)l->cpu_millis * 100);
        if ((r = write_file(cg->dirs[0], "cpu.max", v)) < 0)
            return r == -ENOENT ? -EOPNOTSUPP : r;
    }
    cg->v2_fd = open(cg->dirs[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cg->v2_fd < 0)
        return -errno;
    return 0;
}

static int v2_attach(struct ns_cgroup *cg, pid_t pid)
{
    char v[32];
    snprintf(v, sizeof(v), "%d", (int)pid);
    return write_file(cg->dirs[0], "cgroup.procs", v);
}

static int v2_freeze(struct ns_cgroup *cg, bool frozen)
{
    int r = write_file(cg->dirs[0], "cgroup.freeze", frozen ? "1" : "0");
    if (r < 0)
        return r;
    for (long waited = 0; waited < CG_WAIT_USEC; waited += 200) {
        uint64_t v;
        r = read_key(cg->dirs[0], "cgroup.events", "frozen", &v);
        if (r < 0)
            return r;
        if (v == (frozen ? 1u : 0u))
            return 0;
        sleep_usec(200);
    }
    return -ETIMEDOUT;
}

static int v2_kill(struct ns_cgroup *cg)
{
    int r = write_file(cg->dirs[0], "cgroup.kill", "1");
    if (r == -ENOENT) { /* before 5.14 */
        kill_listed(cg->dirs[0]);
        return 0;
    }
    return r;
}

static int v2_populated(struct ns_cgroup *cg)
{
    uint64_t v;
    int r = read_key(cg->dirs[0], "cgroup.events", "populated", &v);
    return r < 0 ? r : v != 0;
}

static int v2_stats(struct ns_cgroup *cg, struct runtime_stats *ret)
{
    uint64_t v;
    if (read_key(cg->dirs[0], "cpu.stat", "usage_usec", &v) == 0)
        ret->cpu_usec = v;
    if (read_u64(cg->dirs[0], "memory.current", &v) == 0)
        ret->memory_bytes = v;
    if (read_u64(cg->dirs[0], "pids.current", &v) == 0)
        ret->pids = v;
    return 0;
}

static int v2_remove(struct ns_cgroup *cg)
{
    cg->v2_fd = safe_close(cg->v2_fd);
    return rmdir_retry(cg->dirs[0]);
}

const struct ns_cgroup_ops ns_cgroup_v2_ops = {
    .name = "v2",
    .paths = v2_paths,
    .list = v2_list,
    .create = v2_create,
    .attach = v2_attach,
    .freeze = v2_freeze,
    .kill = v2_kill,
    .stats = v2_stats,
    .populated = v2_populated,
    .remove = v2_remove,
};

/* ---- common ---- */

const struct ns_cgroup_ops *ns_cgroup_detect(int version)
{
    char mnt[64], own[256], dir[320], buf[512];
    struct statfs sfs;
    if (version == 2)
        return v2_mount(mnt, sizeof(mnt)) == 0 ? &ns_cgroup_v2_ops : NULL;
    if (version == 1)
        return statfs(CG_ROOT "/memory", &sfs) == 0 && sfs.f_type == CGROUP_SUPER_MAGIC ? &ns_cgroup_v1_ops
                                                                                        : NULL;
    if (v2_mount(mnt, sizeof(mnt)) == 0) {
        v2_own(own, sizeof(own));
        snprintf(dir, sizeof(dir), "%s%s", mnt, own);
        if (read_file(dir, "cgroup.controllers", buf, sizeof(buf)) >= 0) {
            bool mem = false, pids = false;
            for (char *p = buf; *p;) {
                size_t k = strcspn(p, " \n");
                if (k == 6 && strncmp(p, "memory", 6) == 0)
                    mem = true;
                if (k == 4 && strncmp(p, "pids", 4) == 0)
                    pids = true;
                p += k;
                while (*p == ' ' || *p == '\n')
                    p++;
            }
            if (mem && pids)
                return &ns_cgroup_v2_ops;
        }
    }
    if (statfs(CG_ROOT "/memory", &sfs) == 0 && sfs.f_type == CGROUP_SUPER_MAGIC)
        return &ns_cgroup_v1_ops;
    return NULL;
}

int ns_cgroup_new(const struct ns_cgroup_ops *ops, const char *parent, const char *name,
                  const struct runtime_limits *l, struct ns_cgroup **ret)
{
    struct ns_cgroup *cg = xcalloc(1, sizeof(*cg));
    cg->ops = ops;
    cg->v2_fd = -1;
    int r = ops->paths(cg, parent, name);
    if (r < 0) {
        free(cg);
        return r;
    }
    r = ops->create(cg, l);
    if (r < 0) {
        /* Only what this call made, and it holds no process yet: a directory that existed
         * (another sandbox with this id) is not ours to kill or remove. */
        for (int c = 0; c < NS_CG_MAX; c++)
            if (cg->made[c])
                rmdir(cg->dirs[c]);
        safe_close(cg->v2_fd);
        free(cg);
        return r;
    }
    *ret = cg;
    return 0;
}

int ns_cgroup_destroy(struct ns_cgroup *cg)
{
    if (!cg)
        return 0;
    int ret = 0;
    for (long waited = 0;; waited += CG_RETRY_USEC) {
        int p = cg->ops->populated(cg);
        if (p == -ENOENT || p == 0)
            break;
        if (p < 0) {
            ret = p;
            break;
        }
        if (waited >= CG_WAIT_USEC) {
            ret = -EBUSY;
            break;
        }
        cg->ops->kill(cg);
        sleep_usec(waited == 0 ? 200 : CG_RETRY_USEC);
    }
    int r = cg->ops->remove(cg);
    if (r < 0 && ret == 0)
        ret = r;
    safe_close(cg->v2_fd);
    free(cg);
    return ret;
}

struct cleanup_ctx {
    const struct ns_cgroup_ops *ops;
    const char *parent;
    int removed;
    int error;
};

static void cleanup_one(const char *name, void *userdata)
{
    struct cleanup_ctx *ctx = userdata;
    struct ns_cgroup *cg = xcalloc(1, sizeof(*cg));
    cg->ops = ctx->ops;
    cg->v2_fd = -1;
    if (ctx->ops->paths(cg, ctx->parent, name) < 0) {
        free(cg);
        return;
    }
    int r = ns_cgroup_destroy(cg);
    if (r < 0 && ctx->error == 0)
        ctx->error = r;
    else if (r == 0)
        ctx->removed++;
}

int ns_cgroup_cleanup(const struct ns_cgroup_ops *ops, const char *parent)
{
    struct cleanup_ctx ctx = { ops, parent, 0, 0 };
    int r = ops->list(parent, cleanup_one, &ctx);
    if (r < 0)
        return r;
    return ctx.error < 0 ? ctx.error : ctx.removed;
}

int ns_cgroup_remove_parent(const struct ns_cgroup_ops *ops, const char *parent)
{
    /* paths() of "<parent>" under "." names the parent's own directory in each hierarchy. */
    struct ns_cgroup cg = { .ops = ops, .v2_fd = -1 };
    int r = ops->paths(&cg, ".", parent);
    if (r < 0)
        return r == -EOPNOTSUPP ? 0 : r;
    for (int c = 0; c < NS_CG_MAX; c++)
        if (cg.dirs[c][0] && rmdir(cg.dirs[c]) < 0 && errno != ENOENT && errno != EBUSY &&
            errno != ENOTEMPTY && r == 0)
            r = -errno;
    return r;
}
