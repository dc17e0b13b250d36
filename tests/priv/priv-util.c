#include "priv-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/ns/ns.h"
#include "tap.h"

#include "common/banned.h"

#ifndef HUTCH_PROBE_PATH
#error "HUTCH_PROBE_PATH must point at the built hutch-probe"
#endif

static int copy_file(const char *from, int dirfd, const char *name, mode_t mode)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0) {
        close(in);
        return -errno;
    }
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    close(in);
    close(out);
    return n < 0 ? -EIO : 0;
}

/* Cleanup commands registered by the test, in memory shared with the guard. */
struct priv_shared {
    int n;
    char cmds[8][512];
};
static struct priv_shared *shared;

void priv_on_cleanup(const char *cmd)
{
    if (shared && shared->n < 8)
        snprintf(shared->cmds[shared->n++], sizeof(shared->cmds[0]), "%s", cmd);
}

static int rm_rf_at(int dirfd, const char *name);

/* The test goes on in a child; this process waits for it and then removes whatever it left,
 * whether it passed or died on a failed assertion: every sandbox under the test cgroup parent
 * (processes, cgroups, nftables objects), the registered fixtures, the temporary directory. */
static void guard(struct priv_env *env)
{
    shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        tap_fail(__FILE__, __LINE__, "mmap: %s", strerror(errno));
    shared->n = 0;
    fflush(stdout);
    pid_t child = fork();
    if (child < 0)
        tap_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
    if (child == 0)
        return;
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR)
        ;
    struct runtime_config cfg = { .cgroup_parent = PRIV_CGROUP_PARENT, .cgroup_version = 1 };
    runtime_ns_cleanup(&cfg);
    cfg.cgroup_version = 2;
    runtime_ns_cleanup(&cfg);
    for (int i = 0; i < shared->n; i++)
        priv_sh(shared->cmds[i]);
    rm_rf_at(AT_FDCWD, env->dir);
    fflush(stdout);
    if (WIFSIGNALED(st)) {
        printf("# test process killed by signal %d (%s)\n", WTERMSIG(st), strsignal(WTERMSIG(st)));
        fflush(stdout);
        _exit(1);
    }
    _exit(WEXITSTATUS(st));
}

void priv_env_init(struct priv_env *env)
{
    if (geteuid() != 0)
        SKIP("needs root");
    if (access("/proc/self/ns/time", F_OK) < 0)
        SKIP("kernel without time namespaces");
    memset(env, 0, sizeof(*env));
    snprintf(env->dir, sizeof(env->dir), "/tmp/hutch-priv-XXXXXX");
    if (!mkdtemp(env->dir))
        tap_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    chmod(env->dir, 0755);
    guard(env);
    snprintf(env->tpl, sizeof(env->tpl), "%s/base", env->dir);
    struct error_record err;
    error_clear(&err);
    int r = runtime_base_template_build(env->tpl, &err);
    if (r < 0)
        tap_fail(__FILE__, __LINE__, "base template: %s", err.msg);
    snprintf(env->probe_dir, sizeof(env->probe_dir), "%s/probe", env->dir);
    mkdir(env->probe_dir, 0755);
    int d = open(env->probe_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    r = copy_file(HUTCH_PROBE_PATH, d, "hutch-probe", 0755);
    close(d);
    if (r < 0)
        tap_fail(__FILE__, __LINE__, "copy probe %s: %s", HUTCH_PROBE_PATH, strerror(-r));
    env->layers[0] = (struct runtime_layer){ env->tpl, "/" };
    env->layers[1] = (struct runtime_layer){ env->probe_dir, "/opt/hutch" };
    env->layers[2] = (struct runtime_layer){ "/usr", "/usr" };
    env->cfg.cgroup_parent = PRIV_CGROUP_PARENT;
    /* HUTCH_TEST_WRITABLE_LAYER=ext4 runs a whole test binary with the ext4 writable layer of
     * kernels before 6.6 (tmpfs where the kernel has it by default). */
    const char *layer = getenv("HUTCH_TEST_WRITABLE_LAYER");
    if (layer && streq(layer, "ext4"))
        env->cfg.writable_layer = RUNTIME_LAYER_EXT4;
    else if (layer && streq(layer, "tmpfs"))
        env->cfg.writable_layer = RUNTIME_LAYER_TMPFS;
    /* The template needs /opt/hutch as a mount point. */
    mkdir(env->tpl, 0755);
    char opt[320];
    snprintf(opt, sizeof(opt), "%s/opt/hutch", env->tpl);
    mkdir(opt, 0755);
}

static int rm_rf_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return unlinkat(dirfd, name, 0);
    DIR *d = fdopendir(fd);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            rm_rf_at(fd, de->d_name);
    if (d)
        closedir(d);
    return unlinkat(dirfd, name, AT_REMOVEDIR);
}

void priv_env_release(struct priv_env *env)
{
    if (env->dir[0])
        rm_rf_at(AT_FDCWD, env->dir);
    env->dir[0] = '\0';
}

uid_t priv_slot_uid(const struct priv_env *env, unsigned slot)
{
    (void)env;
    return 0x10000000u + 65536u * slot;
}

void priv_spec_init(struct priv_env *env, struct runtime_spec *spec, const char *const *argv)
{
    static unsigned counter;
    static char ids[64][32];
    unsigned n = counter++ % 64;
    snprintf(ids[n], sizeof(ids[n]), "t%d-%u", (int)getpid(), n);
    memset(spec, 0, sizeof(*spec));
    spec->id = ids[n];
    spec->slot = (unsigned)(getpid() * 7 + (int)n) % 4000u;
    spec->layers = env->layers;
    spec->n_layers = 3;
    spec->limits.memory_bytes = 256u << 20;
    spec->limits.disk_bytes = 64u << 20;
    spec->limits.pids_max = 256;
    spec->net = RUNTIME_NET_OFFLINE;
    spec->hostname = "sandbox";
    spec->argv = argv;
    spec->stdin_fd = spec->stdout_fd = spec->stderr_fd = -1;
}

int priv_sh(const char *cmd)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

size_t priv_read_all(int fd, char *buf, size_t size, int timeout_ms)
{
    size_t len = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (len + 1 < size) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= timeout_ms)
            break;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, (int)(timeout_ms - elapsed)) <= 0)
            break;
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

bool priv_read_until(int fd, const char *needle, char *buf, size_t size, int timeout_ms)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int waited = 0; waited < timeout_ms && len + 1 < size; waited += 10) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 10) > 0) {
            ssize_t n = read(fd, buf + len, size - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            buf[len] = '\0';
            if (strstr(buf, needle))
                return true;
        }
    }
    return strstr(buf, needle) != NULL;
}

void priv_run(struct priv_env *env, struct runtime_spec *spec, struct priv_result *res)
{
    memset(res, 0, sizeof(*res));
    error_clear(&res->err);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        tap_fail(__FILE__, __LINE__, "pipe");
    spec->stdout_fd = spec->stderr_fd = p[1];
    struct runtime_sandbox *sb = NULL;
    res->create_r = runtime_ns_ops.create(&env->cfg, spec, &sb, &res->err);
    close(p[1]);
    spec->stdout_fd = spec->stderr_fd = -1;
    if (res->create_r < 0) {
        close(p[0]);
        return;
    }
    res->start_r = runtime_ns_ops.start(sb, &res->err);
    if (res->start_r >= 0) {
        /* The pipe's other end is in the sandbox; EOF once all its processes are gone. */
        res->out_len = priv_read_all(p[0], res->out, sizeof(res->out), 60000);
        int st = runtime_ns_ops.wait(sb, 60 * USEC_PER_SEC);
        res->status = st;
    }
    close(p[0]);
    int r = runtime_ns_ops.destroy(sb);
    if (r < 0)
        tap_fail(__FILE__, __LINE__, "destroy: %s", strerror(-r));
}

int priv_count_mounts(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

int priv_count_loop_devices(void)
{
    DIR *d = opendir("/sys/block");
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d))) {
        if (strncmp(de->d_name, "loop", 4) != 0)
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
        if (access(path, F_OK) == 0)
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

int priv_count_procs_in_range(uid_t base)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        char path[300], line[256];
        snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
        FILE *f = fopen(path, "re");
        while (f && fgets(line, sizeof(line), f)) {
            unsigned uid;
            /* A zombie is gone but for its parent's wait (here: the host's init after the
             * owner died); it holds no resources. */
            if (strncmp(line, "State:", 6) == 0 && strchr(line, 'Z'))
                break;
            if (sscanf(line, "Uid: %u", &uid) == 1) {
                if (uid >= base && uid - base < 65536u)
                    n++;
                break;
            }
        }
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

/* The directory of sandbox id in a controller's hierarchy (v1 name, or "unified" for v2). */
static void cgroup_dir(const char *id, const char *ctrl, char *out, size_t size)
{
    char self[4096];
    FILE *f = fopen("/proc/self/cgroup", "re");
    size_t n = f ? fread(self, 1, sizeof(self) - 1, f) : 0;
    if (f)
        fclose(f);
    self[n] = '\0';
    char own[512] = "";
    bool v2 = strcmp(ctrl, "unified") == 0;
    for (char *line = self; line && *line;) {
        char *nl = strchr(line, '\n');
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 && (!nl || c2 < nl)) {
            size_t llen = (size_t)(c2 - c1 - 1);
            if ((v2 && llen == 0) || (!v2 && llen == strlen(ctrl) && !strncmp(c1 + 1, ctrl, llen))) {
                size_t plen = nl ? (size_t)(nl - c2 - 1) : strlen(c2 + 1);
                if (plen >= sizeof(own))
                    plen = sizeof(own) - 1;
                memcpy(own, c2 + 1, plen);
                own[plen] = '\0';
                if (!strcmp(own, "/"))
                    own[0] = '\0';
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    /* The runtime nests in the cgroup that its v2 leaf lies in (ns-cgroup.c v2_enable_own). */
    char *slash = strrchr(own, '/');
    if (v2 && slash && strcmp(slash + 1, NS_CGROUP_V2_LEAF) == 0)
        *slash = '\0';
    /* v2 is /sys/fs/cgroup/unified on a hybrid host, /sys/fs/cgroup itself on a v2-only one. */
    const char *mnt = ctrl;
    if (v2 && priv_cgroup2_only())
        mnt = "";
    snprintf(out, size, "/sys/fs/cgroup%s%s%s/" PRIV_CGROUP_PARENT "/%s", mnt[0] ? "/" : "", mnt, own, id);
}

bool priv_cgroup2_only(void)
{
    struct statfs sfs;
    return statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC;
}

bool priv_cgroup_exists(const char *id)
{
    static const char *const ctrls[] = {
        "memory", "cpu", "cpuacct", "pids", "freezer", "devices", "unified"
    };
    for (size_t i = 0; i < sizeof(ctrls) / sizeof(ctrls[0]); i++) {
        char path[1024];
        cgroup_dir(id, ctrls[i], path, sizeof(path));
        if (access(path, F_OK) == 0)
            return true;
    }
    return false;
}

int priv_cgroup_read(const char *id, const char *controller, const char *file, char *buf, size_t size)
{
    char dir[1024], path[1200];
    cgroup_dir(id, controller, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return (int)n;
}

void priv_write_file(const char *path, const char *content)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (fd < 0)
        tap_fail(__FILE__, __LINE__, "create %s: %s", path, strerror(errno));
    size_t n = strlen(content);
    if (write(fd, content, n) != (ssize_t)n)
        tap_fail(__FILE__, __LINE__, "write %s: %s", path, strerror(errno));
    close(fd);
}

void priv_write_view_script(const char *path)
{
    priv_write_file(path,
                    "import hashlib, os, stat, sys\n"
                    "def walk(p, rel):\n"
                    "    try:\n"
                    "        st = os.lstat(p)\n"
                    "    except FileNotFoundError:\n"
                    "        print(rel + ' listed-but-absent')\n"
                    "        return\n"
                    "    if stat.S_ISSOCK(st.st_mode):\n"
                    "        return\n"
                    "    line = '%s %o %d:%d %d' % (rel, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)\n"
                    "    if stat.S_ISREG(st.st_mode):\n"
                    "        with open(p, 'rb') as f:\n"
                    "            line += ' %d %s' % (st.st_size, hashlib.sha256(f.read()).hexdigest())\n"
                    "    if stat.S_ISLNK(st.st_mode):\n"
                    "        line += ' -> ' + os.readlink(p)\n"
                    "    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):\n"
                    "        line += ' dev %d,%d' % (os.major(st.st_rdev), os.minor(st.st_rdev))\n"
                    "    if not stat.S_ISLNK(st.st_mode):\n"
                    "        for n in sorted(os.listxattr(p, follow_symlinks=False)):\n"
                    "            line += ' %s=%s' % (n, os.getxattr(p, n, follow_symlinks=False).hex())\n"
                    "    print(line)\n"
                    "    if stat.S_ISDIR(st.st_mode):\n"
                    "        for n in sorted(os.listdir(p)):\n"
                    "            walk(os.path.join(p, n), rel + '/' + n)\n"
                    "walk(sys.argv[1], '')\n");
}

ssize_t priv_read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    ssize_t n;
    while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}
