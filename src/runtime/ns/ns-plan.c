/* Plan, then apply: every decision about a sandbox is made here, in the parent, before clone3.
 * The plan owns copies of every string, the layer directories as O_PATH fds (so that a path
 * swapped after validation changes nothing) and the compiled seccomp program; the child only
 * reads it. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "runtime/ns/ns.h"

#include "common/banned.h"

#define NS_DEFAULT_RUN_DIR "/run/hutch"
#define NS_DEFAULT_UID_BASE 0x10000000u
#define NS_MAX_SLOTS 4096u
#define NS_MAX_ARGS 4096
#define NS_MAX_ARG_LEN 65536
#define NS_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define NS_MIN_MEMORY (8u << 20)
#define NS_DEFAULT_NOFILE 65536

unsigned ns_kernel_version(const char *release)
{
    unsigned major = 0, minor = 0;
    if (!release || sscanf(release, "%u.%u", &major, &minor) != 2 || major > 0xffff || minor > 0xffff)
        return 0;
    return NS_KERNEL_VERSION(major, minor);
}

/* The running kernel's version, read once: every create asks (runtime_ns_check_host,
 * writable_layer_ext4). Racing first callers compute the same value. */
static unsigned running_kernel_version(void)
{
    static unsigned version;
    unsigned v = __atomic_load_n(&version, __ATOMIC_RELAXED);
    if (v == 0) {
        struct utsname u;
        v = uname(&u) == 0 ? ns_kernel_version(u.release) : 0;
        __atomic_store_n(&version, v, __ATOMIC_RELAXED);
    }
    return v;
}

/* Linux 6.1: the oldest kernel the runtime is tested on (Debian 12's; tests/vm/cgroup2-check).
 * What it needs from there: overlay in user namespaces (5.11), idmapped mounts (5.12 for ext4,
 * xfs, btrfs; 6.3 for tmpfs), LOOP_CONFIGURE (5.8), cgroup.kill (5.14). */
int runtime_ns_check_host(struct error_record *err)
{
    if (running_kernel_version() >= NS_KERNEL_VERSION(6, 1))
        return 0;
    struct utsname u;
    if (uname(&u) < 0)
        return error_set_errno(err, errno, "uname");
    return error_set(err, EOPNOTSUPP,
                     "Linux %s is not supported: sandboxes need 6.1 or newer (see Host requirements "
                     "in docs/operations.md)",
                     u.release);
}

/* tmpfs has user xattrs, which overlay needs of its upper filesystem inside a user namespace
 * (`userxattr`: whiteouts, opaque directories), since Linux 6.6; before, the writable layer is
 * an ext4 image (ns-disk.c). */
static bool writable_layer_ext4(const struct runtime_config *cfg)
{
    enum runtime_writable_layer w = cfg ? cfg->writable_layer : RUNTIME_LAYER_AUTO;
    if (w == RUNTIME_LAYER_AUTO)
        return running_kernel_version() < NS_KERNEL_VERSION(6, 6);
    return w == RUNTIME_LAYER_EXT4;
}

int ns_config_run_dir(const struct runtime_config *cfg, char *out, size_t size)
{
    const char *d = cfg && cfg->run_dir ? cfg->run_dir : NS_DEFAULT_RUN_DIR;
    if (d[0] != '/')
        return -EINVAL;
    return str_copy(out, size, d);
}

uid_t ns_config_uid_base(const struct runtime_config *cfg)
{
    return cfg && cfg->uid_base ? cfg->uid_base : NS_DEFAULT_UID_BASE;
}

void ns_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

int ns_plan_strv(const char *const *in, bool need_one, size_t max, char ***ret)
{
    size_t n = 0;
    if (in)
        while (in[n]) {
            if (strlen(in[n]) > NS_MAX_ARG_LEN)
                return -E2BIG;
            if (++n > max)
                return -E2BIG;
        }
    if (need_one && (n == 0 || in[0][0] == '\0'))
        return -EINVAL;
    char **v = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        v[i] = xstrdup(in[i]);
    *ret = v;
    return 0;
}

int ns_plan_https_ports(const uint16_t *in, uint16_t ret[RUNTIME_HTTPS_PORTS_MAX + 1],
                        struct error_record *err)
{
    uint16_t out[RUNTIME_HTTPS_PORTS_MAX + 1] = { 0 };
    size_t n = 0, k = 0;
    for (; in && in[n]; n++) {
        if (n == RUNTIME_HTTPS_PORTS_MAX)
            return error_set(err, EINVAL, "more than %d https ports", RUNTIME_HTTPS_PORTS_MAX);
        /* Port 80 is HTTP's: the proxy reads a Host there, and a TLS-only rule would break it. */
        if (in[n] == 80)
            return error_set(err, EINVAL, "port 80 cannot be an https port");
        for (size_t i = 0; i < n; i++)
            if (in[i] == in[n])
                return error_set(err, EINVAL, "https port %u listed twice", (unsigned)in[n]);
        if (in[n] != 443)
            out[k++] = in[n];
    }
    memcpy(ret, out, sizeof(out));
    return 0;
}

/* An absolute path without empty, "." or ".." components and without a trailing slash. */
static int normalise_target(const char *in, char **ret)
{
    if (!in || in[0] != '/' || strlen(in) > 1024)
        return -EINVAL;
    if (streq(in, "/")) {
        *ret = xstrdup("/");
        return 0;
    }
    const char *p = in;
    while (*p) {
        if (*p != '/')
            return -EINVAL;
        p++;
        size_t k = strcspn(p, "/");
        if (k == 0 || (k == 1 && p[0] == '.') || (k == 2 && p[0] == '.' && p[1] == '.'))
            return -EINVAL;
        p += k;
    }
    *ret = xstrdup(in);
    return 0;
}

static bool id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > NS_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)id[i]) || isdigit((unsigned char)id[i]) || id[i] == '-'))
            return false;
    return true;
}

static bool hostname_valid(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 64 || h[0] == '-' || h[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)h[i]) || h[i] == '-' || h[i] == '.'))
            return false;
    return true;
}

void ns_plan_free(struct ns_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->n_mounts; i++) {
        for (size_t j = 0; j < plan->mounts[i].n_layers; j++)
            safe_close(plan->mounts[i].layer_fds[j]);
        free(plan->mounts[i].target);
    }
    ns_strv_free(plan->argv);
    ns_strv_free(plan->env);
    free(plan->cwd);
    free(plan->path);
    ns_strv_free(plan->allow_out);
    ns_strv_free(plan->deny_out);
    ns_strv_free(plan->domains);
    free(plan->seccomp.filter);
    free(plan);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct ns_plan *, ns_plan_free);

static int plan_layers(struct ns_plan *plan, const struct runtime_spec *spec, struct error_record *err)
{
    if (spec->n_layers == 0 || spec->n_layers > NS_MAX_LAYERS || !spec->layers)
        return error_set(err, EINVAL, "between 1 and %d layers required", NS_MAX_LAYERS);
    for (size_t i = 0; i < spec->n_layers; i++) {
        const struct runtime_layer *l = &spec->layers[i];
        _cleanup_free_ char *target = NULL;
        if (!l->source || l->source[0] != '/')
            return error_set(err, EINVAL, "layer %zu: source must be an absolute path", i);
        if (normalise_target(l->target, &target) < 0)
            return error_set(err, EINVAL, "layer %zu: bad target \"%s\"", i,
                             l->target ? l->target : "(null)");
        struct ns_mount_plan *m = NULL;
        for (size_t j = 0; j < plan->n_mounts; j++)
            if (streq(plan->mounts[j].target, target))
                m = &plan->mounts[j];
        if (!m) {
            if (plan->n_mounts == NS_MAX_MOUNTS)
                return error_set(err, E2BIG, "too many distinct layer targets");
            /* Targets are mounted in plan order, so a parent target must come first. */
            if (plan->n_mounts == 0 && !streq(target, "/"))
                return error_set(err, EINVAL, "the first layer must target /");
            m = &plan->mounts[plan->n_mounts++];
            m->target = TAKE_PTR(target);
        }
        int fd = open(l->source, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return error_set_errno(err, errno, "layer %zu: open %s", i, l->source);
        m->layer_fds[m->n_layers++] = fd;
    }
    return 0;
}

int ns_plan_new(const struct runtime_config *cfg, const struct runtime_spec *spec, struct ns_plan **ret,
                struct error_record *err)
{
    if (!spec)
        return error_set(err, EINVAL, "no spec");
    if (!id_valid(spec->id))
        return error_set(err, EINVAL, "sandbox id must be 1..%d of [a-z0-9-]", NS_ID_MAX);
    if (spec->net != RUNTIME_NET_OFFLINE && spec->net != RUNTIME_NET_ONLINE)
        return error_set(err, EINVAL, "unknown network mode");
    if (spec->slot >= NS_MAX_SLOTS)
        return error_set(err, ERANGE, "slot %u out of range", spec->slot);
    if (spec->uid >= NS_UID_RANGE || spec->gid >= NS_UID_RANGE)
        return error_set(err, ERANGE, "uid/gid must be below %u", NS_UID_RANGE);

    _cleanup_(ns_plan_freep) struct ns_plan *plan = xcalloc(1, sizeof(*plan));
    str_copy(plan->id, sizeof(plan->id), spec->id);
    const char *hn = spec->hostname ? spec->hostname : spec->id;
    if (!hostname_valid(hn))
        return error_set(err, EINVAL, "invalid hostname");
    str_copy(plan->hostname, sizeof(plan->hostname), hn);

    uid_t base = ns_config_uid_base(cfg);
    uint64_t host = (uint64_t)base + (uint64_t)NS_UID_RANGE * spec->slot;
    if (base == 0 || host + NS_UID_RANGE > UINT32_MAX)
        return error_set(err, ERANGE, "uid range of slot %u out of bounds", spec->slot);
    plan->host_uid = (uid_t)host;

    const struct runtime_limits *l = &spec->limits;
    if (l->disk_bytes < (1u << 20))
        return error_set(err, EINVAL, "a disk limit of at least 1 MiB is required");
    if (l->memory_bytes && l->memory_bytes < NS_MIN_MEMORY)
        return error_set(err, EINVAL, "memory limit below %u bytes", NS_MIN_MEMORY);
    if (l->cpu_millis > 1000000)
        return error_set(err, ERANGE, "cpu limit out of range");
    plan->limits = *l;
    if (!plan->limits.nofile)
        plan->limits.nofile = NS_DEFAULT_NOFILE;
    plan->net = spec->net;
    if (plan->net == RUNTIME_NET_ONLINE) {
        int rn = ns_net_plan_addresses(cfg, spec->slot, plan, err);
        if (rn < 0)
            return rn;
        plan->egress = cfg ? cfg->egress : NULL;
        if ((rn = ns_net_allow_list(plan->egress, spec->allow_out, &plan->allow_out, &plan->domains, err)) <
                0 ||
            (rn = ns_net_cidrs(spec->deny_out, &plan->deny_out, err)) < 0 ||
            (rn = ns_plan_https_ports(spec->https_ports, plan->https_ports, err)) < 0)
            return rn;
        plan->deny_internet = spec->deny_internet;
    }

    int r = plan_layers(plan, spec, err);
    if (r < 0)
        return r;
    plan->disk_ext4 = writable_layer_ext4(cfg);

    if (ns_plan_strv(spec->argv, true, NS_MAX_ARGS, &plan->argv) < 0)
        return error_set(err, EINVAL, "argv must be a non-empty list of bounded strings");
    static const char *const default_env[] = { "PATH=" NS_DEFAULT_PATH, NULL };
    if (ns_plan_strv(spec->env ? spec->env : default_env, false, NS_MAX_ARGS, &plan->env) < 0)
        return error_set(err, E2BIG, "environment too large");
    for (char **e = plan->env; *e; e++) {
        if (!strchr(*e, '=') || (*e)[0] == '=')
            return error_set(err, EINVAL, "environment entry without a name: \"%s\"", *e);
        if (str_startswith(*e, "PATH=") && !plan->path)
            plan->path = xstrdup(*e + 5);
    }
    if (!plan->path)
        plan->path = xstrdup(NS_DEFAULT_PATH);
    const char *cwd = spec->cwd ? spec->cwd : "/";
    if (cwd[0] != '/' || strlen(cwd) >= 4096)
        return error_set(err, EINVAL, "cwd must be an absolute path inside the sandbox");
    plan->cwd = xstrdup(cwd);
    plan->uid = spec->uid;
    plan->gid = spec->gid;
    plan->allow_setuid = spec->allow_setuid;
    plan->stdio[0] = spec->stdin_fd;
    plan->stdio[1] = spec->stdout_fd;
    plan->stdio[2] = spec->stderr_fd;
    for (int i = 0; i < 3; i++)
        if (plan->stdio[i] >= 0 && fcntl(plan->stdio[i], F_GETFD) < 0)
            return error_set_errno(err, errno, "stdio fd %d", plan->stdio[i]);

    char run_dir[200];
    if (ns_config_run_dir(cfg, run_dir, sizeof(run_dir)) < 0)
        return error_set(err, EINVAL, "run_dir must be a short absolute path");
    /* The attach point of every sandbox's new root: shared, empty, and only ever mounted on
     * inside a sandbox's private mount namespace, so the host never sees a mount there. */
    if (mkdir(run_dir, 0755) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "mkdir %s", run_dir);
    snprintf(plan->root_dir, sizeof(plan->root_dir), "%s/root", run_dir);
    if (mkdir(plan->root_dir, 0755) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "mkdir %s", plan->root_dir);
    /* The sandbox's root, unmapped host uid 0 looks like nobody to it, must be able to search
     * both to mount there: set the modes explicitly, whatever the caller's umask was. */
    if (chmod(run_dir, 0755) < 0 || chmod(plan->root_dir, 0755) < 0)
        return error_set_errno(err, errno, "chmod %s", plan->root_dir);

    r = ns_seccomp_compile(&plan->seccomp, err);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(plan);
    return 0;
}
