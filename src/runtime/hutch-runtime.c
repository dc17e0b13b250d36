/* hutch-runtime: the namespace backend from the command line, for people and tests.
 *
 *   hutch-runtime build-base DIR
 *   hutch-runtime run [--base DIR | --layer SRC:TARGET ...] [--memory MIB] [--disk MIB]
 *                     [--pids N] [--cpu MILLIS] [--uid N] [--gid N] [--cwd DIR] [--hostname H]
 *                     [--online [--allow CIDR]... [--deny CIDR]... [--no-internet]] [--setuid]
 *                     [--slot N] [--id ID] [--writable-layer tmpfs|ext4] -- CMD [ARG...]
 *   hutch-runtime cleanup
 *   hutch-runtime bench [--base DIR] [--count N] [--writable-layer tmpfs|ext4]
 *
 * `run` uses this terminal's stdin/stdout/stderr and exits with the command's status. With
 * --base, the layers are DIR at / and the host's /usr at /usr (the `host` template).
 * --writable-layer picks what holds the sandbox's writable layer instead of the kernel's default
 * (tmpfs from Linux 6.6, an ext4 image on a loop device before). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "runtime/runtime.h"

#include "common/banned.h"

#define MAX_LIST 64

static int usage(void)
{
    fprintf(stderr, "usage: hutch-runtime build-base DIR\n"
                    "       hutch-runtime run [--base DIR | --layer SRC:TARGET...] [limits] -- CMD...\n"
                    "       hutch-runtime cleanup\n"
                    "       hutch-runtime bench [--base DIR] [--count N]\n");
    return 2;
}

static int parse_u32_opt(const char *name, const char *s, uint32_t *ret)
{
    if (parse_uint32(s, ret) < 0) {
        log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, "--%s: not a number: %s", name, s);
        return -EINVAL;
    }
    return 0;
}

struct opts {
    struct runtime_spec spec;
    struct runtime_layer layers[16];
    char *layer_src[16];
    const char *allow[MAX_LIST + 1], *deny[MAX_LIST + 1];
    size_t n_allow, n_deny;
    const char *base;
    uint32_t count;
    char id[64];
    enum runtime_writable_layer writable_layer;
};

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        { "base", required_argument, NULL, 'b' },
        { "layer", required_argument, NULL, 'l' },
        { "memory", required_argument, NULL, 'm' },
        { "disk", required_argument, NULL, 'd' },
        { "pids", required_argument, NULL, 'p' },
        { "cpu", required_argument, NULL, 'c' },
        { "uid", required_argument, NULL, 'u' },
        { "gid", required_argument, NULL, 'g' },
        { "cwd", required_argument, NULL, 'w' },
        { "hostname", required_argument, NULL, 'h' },
        { "online", no_argument, NULL, 'o' },
        { "allow", required_argument, NULL, 'A' },
        { "deny", required_argument, NULL, 'D' },
        { "no-internet", no_argument, NULL, 'N' },
        { "setuid", no_argument, NULL, 's' },
        { "slot", required_argument, NULL, 'S' },
        { "id", required_argument, NULL, 'i' },
        { "count", required_argument, NULL, 'n' },
        { "writable-layer", required_argument, NULL, 'W' },
        {},
    };
    struct runtime_spec *s = &o->spec;
    s->limits.memory_bytes = 512ull << 20;
    s->limits.disk_bytes = 1024ull << 20;
    s->limits.pids_max = 1024;
    s->stdin_fd = 0;
    s->stdout_fd = 1;
    s->stderr_fd = 2;
    s->slot = (unsigned)getpid() % 4000u;
    snprintf(o->id, sizeof(o->id), "run-%d", (int)getpid());
    s->id = o->id;
    o->count = 200;
    uint32_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) >= 0) {
        switch (c) {
        case 'b':
            o->base = optarg;
            break;
        case 'l': {
            char *colon = strchr(optarg, ':');
            if (!colon || s->n_layers == 16)
                return usage();
            *colon = '\0';
            o->layers[s->n_layers++] = (struct runtime_layer){ optarg, colon + 1 };
            break;
        }
        case 'm':
        case 'd':
            if (parse_u32_opt(c == 'm' ? "memory" : "disk", optarg, &v) < 0)
                return 2;
            *(c == 'm' ? &s->limits.memory_bytes : &s->limits.disk_bytes) = (uint64_t)v << 20;
            break;
        case 'p':
            if (parse_u32_opt("pids", optarg, &s->limits.pids_max) < 0)
                return 2;
            break;
        case 'c':
            if (parse_u32_opt("cpu", optarg, &s->limits.cpu_millis) < 0)
                return 2;
            break;
        case 'u':
        case 'g':
        case 'S':
        case 'n':
            if (parse_u32_opt("number", optarg, &v) < 0)
                return 2;
            if (c == 'u')
                s->uid = v;
            else if (c == 'g')
                s->gid = v;
            else if (c == 'S')
                s->slot = v;
            else
                o->count = v;
            break;
        case 'w':
            s->cwd = optarg;
            break;
        case 'h':
            s->hostname = optarg;
            break;
        case 'o':
            s->net = RUNTIME_NET_ONLINE;
            break;
        case 'A':
        case 'D':
            if ((c == 'A' ? o->n_allow : o->n_deny) == MAX_LIST)
                return usage();
            if (c == 'A')
                o->allow[o->n_allow++] = optarg;
            else
                o->deny[o->n_deny++] = optarg;
            break;
        case 'N':
            s->deny_internet = true;
            break;
        case 's':
            s->allow_setuid = true;
            break;
        case 'i':
            s->id = optarg;
            break;
        case 'W':
            if (streq(optarg, "tmpfs"))
                o->writable_layer = RUNTIME_LAYER_TMPFS;
            else if (streq(optarg, "ext4"))
                o->writable_layer = RUNTIME_LAYER_EXT4;
            else
                return usage();
            break;
        default:
            return usage();
        }
    }
    if (o->base) {
        /* The base's two layers come first: "/" must be mounted before anything inside it. */
        if (s->n_layers > 14)
            return usage();
        memmove(o->layers + 2, o->layers, s->n_layers * sizeof(o->layers[0]));
        o->layers[0] = (struct runtime_layer){ o->base, "/" };
        o->layers[1] = (struct runtime_layer){ "/usr", "/usr" };
        s->n_layers += 2;
    }
    s->layers = o->layers;
    s->allow_out = o->allow;
    s->deny_out = o->deny;
    s->argv = (const char *const *)(argv + optind);
    return 0;
}

static int cmd_run(struct opts *o)
{
    if (!o->spec.argv[0])
        return usage();
    struct runtime_config cfg = { .writable_layer = o->writable_layer };
    struct runtime_sandbox *sb = NULL;
    struct error_record err;
    error_clear(&err);
    int r = runtime_ns_ops.create(&cfg, &o->spec, &sb, &err);
    if (r < 0) {
        log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, "create: %s", err.msg);
        return 125;
    }
    r = runtime_ns_ops.start(sb, &err);
    if (r < 0) {
        log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, "start: %s", err.msg);
        runtime_ns_ops.destroy(sb);
        return 126;
    }
    int st = runtime_ns_ops.wait(sb, USEC_INFINITY);
    r = runtime_ns_ops.destroy(sb);
    if (r < 0)
        log_emit_errno(LOG_LEVEL_WARN, r, __FILE__, __LINE__, "destroy");
    if (st < 0)
        return 125;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Removes the temporary base template bench made (files, symlinks and directories only). */
static void rm_rf_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        unlinkat(dirfd, name, 0);
        return;
    }
    DIR *d = fdopendir(fd);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            rm_rf_at(fd, de->d_name);
    if (d)
        closedir(d);
    else
        close(fd);
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

static int cmp_usec(const void *a, const void *b)
{
    usec_t x = *(const usec_t *)a, y = *(const usec_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, usec_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_usec);
    printf("| %-28s | %8.2f | %8.2f | %8.2f |\n", what, (double)v[n / 2] / 1000.0,
           (double)v[n * 9 / 10] / 1000.0, (double)v[n * 99 / 100] / 1000.0);
}

/* Cold create-to-first-output and destroy, then the memory of an idle sandbox. */
static int cmd_bench(struct opts *o)
{
    char tmp[] = "/tmp/hutch-bench-XXXXXX";
    const char *base = o->base;
    struct error_record err;
    error_clear(&err);
    if (!base) {
        if (!mkdtemp(tmp))
            return log_emit_errno(LOG_LEVEL_ERROR, errno, __FILE__, __LINE__, "mkdtemp"), 1;
        if (runtime_base_template_build(tmp, &err) < 0) {
            log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, "base template: %s", err.msg);
            return 1;
        }
        base = tmp;
    }
    struct runtime_layer layers[2] = { { base, "/" }, { "/usr", "/usr" } };
    size_t n = o->count ? o->count : 1;
    usec_t *create = calloc(n, sizeof(usec_t)), *destroy = calloc(n, sizeof(usec_t));
    usec_t *kill_destroy = calloc(n, sizeof(usec_t));
    if (!create || !destroy || !kill_destroy)
        return 1;
    struct runtime_config cfg = { .writable_layer = o->writable_layer };
    for (size_t i = 0; i < n; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
            return 1;
        struct runtime_spec spec = o->spec;
        char id[64];
        snprintf(id, sizeof(id), "bench-%d-%zu", (int)getpid(), i);
        spec.id = id;
        spec.layers = layers;
        spec.n_layers = 2;
        spec.argv = (const char *const[]){ "/bin/echo", "ok", NULL };
        spec.stdin_fd = -1;
        spec.stdout_fd = p[1];
        spec.stderr_fd = -1;
        struct runtime_sandbox *sb = NULL;
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        if (runtime_ns_ops.create(&cfg, &spec, &sb, &err) < 0 || runtime_ns_ops.start(sb, &err) < 0) {
            log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, "sandbox: %s", err.msg);
            return 1;
        }
        close(p[1]);
        char buf[8];
        if (read(p[0], buf, sizeof(buf)) <= 0)
            return 1;
        create[i] = now_usec(CLOCK_MONOTONIC) - t0;
        close(p[0]);
        runtime_ns_ops.wait(sb, USEC_INFINITY);
        t0 = now_usec(CLOCK_MONOTONIC);
        runtime_ns_ops.destroy(sb);
        destroy[i] = now_usec(CLOCK_MONOTONIC) - t0;

        /* The same, with the workload still running: destroy kills it. */
        spec.argv = (const char *const[]){ "/bin/sleep", "1000", NULL };
        spec.stdout_fd = -1;
        if (runtime_ns_ops.create(&cfg, &spec, &sb, &err) < 0 || runtime_ns_ops.start(sb, &err) < 0) {
            log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, "sandbox: %s", err.msg);
            return 1;
        }
        t0 = now_usec(CLOCK_MONOTONIC);
        runtime_ns_ops.destroy(sb);
        kill_destroy[i] = now_usec(CLOCK_MONOTONIC) - t0;
    }
    /* bubblewrap with comparable mounts, measured in the same run (it pays for its own exec). */
    usec_t *bwrap = calloc(n, sizeof(usec_t));
    bool have_bwrap = bwrap && access("/usr/bin/bwrap", X_OK) == 0;
    for (size_t i = 0; have_bwrap && i < n; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
            return 1;
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], 1);
            execl("/usr/bin/bwrap", "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
                  "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                  "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin", "--ro-bind", base,
                  "/base", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/echo", "ok",
                  (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        char buf[8];
        ssize_t got = read(p[0], buf, sizeof(buf));
        bwrap[i] = now_usec(CLOCK_MONOTONIC) - t0;
        close(p[0]);
        int wst;
        waitpid(pid, &wst, 0);
        if (got <= 0)
            have_bwrap = false;
    }

    printf("| %-28s | %8s | %8s | %8s |\n|---|---|---|---|\n", "ns backend (ms)", "p50", "p90", "p99");
    report("create + exec + first output", create, n);
    if (have_bwrap)
        report("bwrap --unshare-all, same", bwrap, n);
    free(bwrap);
    report("destroy (after exit)", destroy, n);
    report("destroy (running: kill)", kill_destroy, n);

    /* An idle sandbox: memory charged to its cgroup (processes, page tables, kernel objects,
     * its tmpfs), with `sleep` as the workload. */
    struct runtime_spec spec = o->spec;
    spec.id = "bench-idle";
    spec.layers = layers;
    spec.n_layers = 2;
    spec.argv = (const char *const[]){ "/bin/sleep", "1000", NULL };
    spec.stdin_fd = spec.stdout_fd = spec.stderr_fd = -1;
    struct runtime_sandbox *sb = NULL;
    if (runtime_ns_ops.create(&cfg, &spec, &sb, &err) < 0 || runtime_ns_ops.start(sb, &err) < 0) {
        log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, "idle sandbox: %s", err.msg);
        return 1;
    }
    struct timespec ts = { 0, 200 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    struct runtime_stats st;
    if (runtime_ns_ops.stats(sb, &st) == 0)
        printf("\nidle sandbox (sleep): memory charged %.1f KiB, pids %llu, disk %llu bytes\n",
               (double)st.memory_bytes / 1024.0, (unsigned long long)st.pids,
               (unsigned long long)st.disk_bytes);
    runtime_ns_ops.destroy(sb);
    free(create);
    free(destroy);
    free(kill_destroy);
    if (!o->base)
        rm_rf_at(AT_FDCWD, tmp);
    printf("(n = %zu)\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    log_setup_from_env("hutch-runtime");
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    if (streq(cmd, "build-base")) {
        if (argc != 3)
            return usage();
        struct error_record err;
        error_clear(&err);
        if (runtime_base_template_build(argv[2], &err) < 0) {
            log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, "%s", err.msg);
            return 1;
        }
        return 0;
    }
    if (streq(cmd, "cleanup")) {
        struct runtime_config cfg = { 0 };
        int r = runtime_ns_cleanup(&cfg);
        if (r < 0)
            return log_emit_errno(LOG_LEVEL_ERROR, r, __FILE__, __LINE__, "cleanup"), 1;
        printf("removed %d sandbox(es)\n", r);
        return 0;
    }
    static struct opts o;
    int r = parse(argc - 1, argv + 1, &o);
    if (r != 0)
        return r;
    if (streq(cmd, "run"))
        return cmd_run(&o);
    if (streq(cmd, "bench"))
        return cmd_bench(&o);
    return usage();
}
