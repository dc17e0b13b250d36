/* The sandbox object of the namespace backend: clone3 into new user, pid, mount, net, uts, ipc
 * and time namespaces (cgroup namespace unshared by the child once it sits in its cgroup), the
 * parent/child protocol, exec into a running sandbox, connect, and the one teardown that both a
 * failed create and destroy run.
 *
 * Parent/child protocol (SOCK_SEQPACKET, one struct ns_msg per message):
 *   parent: clone3 -> write uid/gid maps -> attach to cgroup (v1; v2 uses CLONE_INTO_CGROUP)
 *           -> idmap the layers onto the child's user namespace -> GO (layer fds attached)
 *   child:  root inside -> cgroup ns -> hostname -> lo up -> root filesystem -> rlimits ->
 *           setsid -> READY (the writable tmpfs's fd attached)
 *   parent: (start) START
 *   child:  stdio -> caps, no_new_privs, seccomp -> uid/gid -> cwd -> close_range -> execve
 *   A failing step sends ERROR (errno + message) instead and exits; a successful execve closes
 *   the child's end (O_CLOEXEC), which the parent reads as EOF.
 * The child closes every inherited fd but its socket and stdio at once, so that a sibling
 * sandbox's setup never holds another's socket open. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/net-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "runtime/ns/ns.h"

#include "common/banned.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

#define NS_CLONE_FLAGS                                                                                       \
    (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWTIME)
#define NS_SETNS_FLAGS (NS_CLONE_FLAGS | CLONE_NEWCGROUP)
#define NS_SETUP_TIMEOUT_SEC 30

/* GO carries every layer fd and, with plan->disk_ext4, the writable layer's mount last, in one
 * SCM_RIGHTS message; the kernel takes at most 253. */
#define NS_MAX_GO_FDS (NS_MAX_LAYERS + 1)
_Static_assert(NS_MAX_GO_FDS <= NET_MAX_FDS, "NS_MAX_LAYERS exceeds SCM_MAX_FD");

/* struct clone_args of <linux/sched.h>, which clashes with glibc's <sched.h>. */
struct ns_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
        cgroup;
};

enum ns_msg_type {
    NS_MSG_GO = 1,
    NS_MSG_READY,
    NS_MSG_START,
    NS_MSG_ERROR,
    NS_MSG_PIDFD,
};

struct ns_msg {
    uint32_t type;
    struct error_record err;
};

struct runtime_sandbox {
    struct ns_plan *plan;
    struct ns_cgroup *cg;
    pid_t pid;
    int pidfd;
    int sock;
    int netns_fd;
    int rw_fd;          /* O_PATH root of the writable layer (export_layer) */
    uint64_t disk_base; /* bytes the empty ext4 writable layer already uses (stats) */
    bool started;
    bool reaped;
    bool net_added; /* online: nftables objects may exist */
    bool veth_made; /* online: the host veth is ours */
    bool frozen;
    int status;
};

static pid_t clone3_pidfd(uint64_t flags, int *ret_pidfd, int cgroup_fd, int exit_signal)
{
    struct ns_clone_args args = {
        .flags = flags | CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)ret_pidfd,
        .exit_signal = (uint64_t)exit_signal,
    };
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

static int send_msg(int sock, uint32_t type, const struct error_record *err, const int *fds, size_t nfds)
{
    struct ns_msg msg = { .type = type };
    if (err)
        msg.err = *err;
    return net_send_fds(sock, &msg, sizeof(msg), fds, nfds);
}

/* Returns 1 with a message, 0 on EOF, -errno. Received fds are O_CLOEXEC. */
static int recv_msg(int sock, struct ns_msg *msg, int *fds, size_t max_fds, size_t *ret_nfds)
{
    size_t got = 0;
    ssize_t n = net_recv_fds(sock, msg, sizeof(*msg), fds, fds ? max_fds : 0, &got);
    if (ret_nfds)
        *ret_nfds = got;
    if (n <= 0)
        return (int)n;
    if ((size_t)n != sizeof(*msg))
        return -EBADMSG;
    msg->err.msg[sizeof(msg->err.msg) - 1] = '\0';
    return 1;
}

/* Closes every fd except those in keep (at most 8). */
static void close_fds_except(const int *keep, size_t n)
{
    int k[8];
    size_t m = 0;
    for (size_t i = 0; i < n && m < ARRAY_SIZE(k); i++)
        if (keep[i] >= 0)
            k[m++] = keep[i];
    for (size_t i = 1; i < m; i++)
        for (size_t j = i; j > 0 && k[j - 1] > k[j]; j--) {
            int t = k[j];
            k[j] = k[j - 1];
            k[j - 1] = t;
        }
    unsigned lo = 0;
    for (size_t i = 0; i < m; i++) {
        if ((unsigned)k[i] > lo)
            close_range(lo, (unsigned)k[i] - 1, 0);
        lo = (unsigned)k[i] + 1;
    }
    close_range(lo, ~0U, 0);
}

/* Moves fd to a number >= 3 so that setting up stdio cannot clobber it. */
static int fd_above_stdio(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return n < 0 ? fd : n;
}

static int setup_stdio(const int stdio[3], struct error_record *err)
{
    /* Every sandbox process starts with the same umask, whatever the caller's is. */
    umask(022);
    int tmp[3];
    int null_fd = -1;
    for (int i = 0; i < 3; i++) {
        int src = stdio[i];
        if (src < 0) {
            if (null_fd < 0)
                null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (null_fd < 0)
                return error_set_errno(err, errno, "open /dev/null");
            src = null_fd;
        }
        tmp[i] = fcntl(src, F_DUPFD_CLOEXEC, 3);
        if (tmp[i] < 0)
            return error_set_errno(err, errno, "dup stdio %d", i);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(tmp[i], i) < 0)
            return error_set_errno(err, errno, "dup2 stdio %d", i);
        close(tmp[i]);
    }
    if (null_fd >= 0)
        close(null_fd);
    return 0;
}

struct exec_params {
    char *const *argv;
    char *const *env;
    const char *cwd;
    const char *path;
    uid_t uid;
    gid_t gid;
    bool allow_setuid;
    const struct sock_fprog *seccomp;
    const int *stdio;
};

/* The last steps of every sandbox process: only returns on failure. */
static int exec_finish(const struct exec_params *p, struct error_record *err)
{
    int r = setup_stdio(p->stdio, err);
    if (r < 0)
        return r;
    r = ns_caps_apply(p->uid, p->gid, NULL, 0, p->allow_setuid, p->seccomp, err);
    if (r < 0)
        return r;
    if (chdir(p->cwd) < 0)
        return error_set_errno(err, errno, "chdir %s", p->cwd);
    /* The workload outlives its creator: PR_SET_PDEATHSIG follows the creating *thread*, and
     * a server creates sandboxes from request threads. A sandbox whose owner died is adopted or
     * removed by the owner's successor (runtime_ns_cleanup()). */
    if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0)
        return error_set_errno(err, errno, "PR_SET_PDEATHSIG");
    /* Nothing of the runtime's survives exec; the sync socket stays open until then so that
     * an execve failure can still be reported. */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        return error_set_errno(err, errno, "close_range");
    const char *name = p->argv[0];
    if (strchr(name, '/')) {
        execve(name, p->argv, p->env);
        return error_set_errno(err, errno, "execve %s", name);
    }
    int saved = ENOENT;
    char buf[4096];
    for (const char *s = p->path; *s;) {
        size_t k = strcspn(s, ":");
        if (k > 0 && k + 1 + strlen(name) < sizeof(buf)) {
            memcpy(buf, s, k);
            buf[k] = '/';
            memcpy(buf + k + 1, name, strlen(name) + 1);
            execve(buf, p->argv, p->env);
            if (errno != ENOENT && errno != ENOTDIR)
                saved = errno;
        }
        s += k;
        if (*s == ':')
            s++;
    }
    return error_set_errno(err, saved, "execve %s", name);
}

static _noreturn_ void child_main(const struct ns_plan *plan, int sock)
{
    struct error_record err;
    error_clear(&err);
    /* The runtime's code runs here with the host's binary mapped: no one may ptrace it or open
     * its /proc/<pid>/exe, and until it execs it dies with its creator. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    sock = fd_above_stdio(sock);
    int keep[4] = { sock, plan->stdio[0], plan->stdio[1], plan->stdio[2] };
    close_fds_except(keep, ARRAY_SIZE(keep));

    struct ns_msg msg;
    int fds[NS_MAX_GO_FDS];
    size_t nfds = 0;
    if (recv_msg(sock, &msg, fds, NS_MAX_GO_FDS, &nfds) <= 0 || msg.type != NS_MSG_GO)
        _exit(126);
    int rw_mnt = plan->disk_ext4 && nfds > 0 ? fds[nfds - 1] : -1;
    if (ns_caps_become_root(&err) < 0)
        goto fail;
    /* The parent has put us in the sandbox's cgroup: it becomes the root of our view. */
    if (unshare(CLONE_NEWCGROUP) < 0) {
        error_set_errno(&err, errno, "unshare(CLONE_NEWCGROUP)");
        goto fail;
    }
    if (sethostname(plan->hostname, strlen(plan->hostname)) < 0) {
        error_set_errno(&err, errno, "sethostname");
        goto fail;
    }
    if (ns_net_child_setup(plan, &err) < 0)
        goto fail;
    int rw_fd = -1;
    if (ns_mount_rootfs(plan, fds, rw_mnt, &rw_fd, &err) < 0)
        goto fail;
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    if (ns_rlimits_apply(&plan->limits, &err) < 0)
        goto fail;
    /* A new session without a controlling terminal: nothing to inject keystrokes into. */
    if (setsid() < 0) {
        error_set_errno(&err, errno, "setsid");
        goto fail;
    }
    if (send_msg(sock, NS_MSG_READY, NULL, &rw_fd, 1) < 0)
        _exit(126);
    close(rw_fd);
    if (recv_msg(sock, &msg, NULL, 0, NULL) <= 0 || msg.type != NS_MSG_START)
        _exit(126);
    struct exec_params p = {
        .argv = plan->argv,
        .env = plan->env,
        .cwd = plan->cwd,
        .path = plan->path,
        .uid = plan->uid,
        .gid = plan->gid,
        .allow_setuid = plan->allow_setuid,
        .seccomp = &plan->seccomp,
        .stdio = plan->stdio,
    };
    exec_finish(&p, &err);
fail:
    send_msg(sock, NS_MSG_ERROR, &err, NULL, 0);
    _exit(127);
}

static int write_map(pid_t pid, const char *file, uid_t host)
{
    char path[64], map[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    int len = snprintf(map, sizeof(map), "0 %u %u\n", (unsigned)host, NS_UID_RANGE);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, map, (size_t)len) != len)
        return -errno;
    return 0;
}

static int open_ns(pid_t pid, const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Reads the child's answer: READY with the writable tmpfs's fd (or, after START, EOF =
 * exec'd) or ERROR. */
static int await_child(struct runtime_sandbox *sb, uint32_t want, struct error_record *err)
{
    struct ns_msg msg;
    int fd = -1;
    size_t nfds = 0;
    int r = recv_msg(sb->sock, &msg, &fd, 1, &nfds);
    if (r == 0 && want == 0)
        return 0;
    if (r > 0 && msg.type == want && want == NS_MSG_READY) {
        struct statfs sfs;
        if (nfds != 1 || fstatfs(fd, &sfs) < 0 ||
            sfs.f_type != (sb->plan->disk_ext4 ? EXT4_SUPER_MAGIC : TMPFS_MAGIC)) {
            safe_close(fd);
            return error_set(err, EPROTO, "sandbox setup: READY without the writable layer");
        }
        sb->rw_fd = fd;
        return 0;
    }
    safe_close(fd);
    if (r > 0 && msg.type == want)
        return 0;
    if (r > 0 && msg.type == NS_MSG_ERROR) {
        if (err)
            *err = msg.err;
        return -(msg.err.errnum ? msg.err.errnum : EIO);
    }
    if (r < 0)
        return error_set_errno(err, r, "sandbox setup: reading from the child");
    return error_set(err, ECHILD, "sandbox child exited during setup");
}

static int sandbox_destroy(struct runtime_sandbox *sb);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct runtime_sandbox *, sandbox_destroy);

/* Bytes in use on a file system, as df counts them. */
static uint64_t statfs_used_bytes(const struct statfs *sfs)
{
    return (uint64_t)(sfs->f_blocks - sfs->f_bfree) * (uint64_t)sfs->f_bsize;
}

static int send_layers(const struct runtime_config *cfg, struct runtime_sandbox *sb, struct error_record *err)
{
    _cleanup_close_ int userns = open_ns(sb->pid, "user");
    if (userns < 0)
        return error_set_errno(err, userns, "open the child's user namespace");
    int fds[NS_MAX_GO_FDS];
    size_t n = 0;
    int r = 0;
    for (size_t i = 0; i < sb->plan->n_mounts && r >= 0; i++)
        for (size_t j = 0; j < sb->plan->mounts[i].n_layers && r >= 0; j++) {
            int fd = ns_mount_idmapped_layer(sb->plan->mounts[i].layer_fds[j], userns, sb->plan->allow_setuid,
                                             err);
            if (fd < 0)
                r = fd;
            else
                fds[n++] = fd;
        }
    if (r >= 0 && sb->plan->disk_ext4) {
        int fd = ns_disk_ext4_new(cfg, sb->plan, err);
        struct statfs sfs;
        if (fd < 0)
            r = fd;
        else if (fstatfs(fd, &sfs) < 0)
            r = error_set_errno(err, errno, "statfs the writable layer");
        else
            sb->disk_base = statfs_used_bytes(&sfs);
        if (fd >= 0)
            fds[n++] = fd;
    }
    if (r >= 0) {
        r = send_msg(sb->sock, NS_MSG_GO, NULL, fds, n);
        if (r < 0)
            error_set_errno(err, r, "send GO to the child");
    }
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    return r;
}

static int sandbox_create(const struct runtime_config *cfg, const struct runtime_spec *spec,
                          struct runtime_sandbox **ret, struct error_record *err)
{
    _cleanup_(sandbox_destroyp) struct runtime_sandbox *sb = xcalloc(1, sizeof(*sb));
    sb->pid = -1;
    sb->pidfd = sb->sock = sb->netns_fd = sb->rw_fd = -1;
    int r = runtime_ns_check_host(err);
    if (r < 0)
        return r;
    r = ns_plan_new(cfg, spec, &sb->plan, err);
    if (r < 0)
        return r;
    const struct ns_cgroup_ops *ops = ns_cgroup_detect(cfg ? cfg->cgroup_version : 0);
    if (!ops)
        return error_set(err, EOPNOTSUPP, "no usable cgroup hierarchy");
    const char *parent = cfg && cfg->cgroup_parent ? cfg->cgroup_parent : "hutch";
    r = ns_cgroup_new(ops, parent, sb->plan->id, &sb->plan->limits, &sb->cg);
    if (r < 0)
        return error_set_errno(err, r, "cgroup %s/%s (%s)", parent, sb->plan->id, ops->name);

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return error_set_errno(err, errno, "socketpair");
    /* Without CLONE_VM the child is a plain copy of this process, and ASan's shadow memory is
     * copied with it; the child stays single-threaded, calls no allocator (see ns-caps.c and
     * ns-net.c for why) and ends in execve or _exit, so ASan never needs its runtime (or the
     * host's filesystem, gone after pivot_root) there. */
    pid_t pid = clone3_pidfd(NS_CLONE_FLAGS, &sb->pidfd, sb->cg->v2_fd, SIGCHLD);
    if (pid == 0) {
        close(sp[0]);
        child_main(sb->plan, sp[1]);
    }
    close(sp[1]);
    sb->sock = sp[0];
    if (pid < 0) {
        sb->pidfd = -1;
        return error_set_errno(err, errno, "clone3");
    }
    sb->pid = pid;
    struct timeval tv = { NS_SETUP_TIMEOUT_SEC, 0 };
    setsockopt(sb->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    if ((r = write_map(pid, "uid_map", sb->plan->host_uid)) < 0 ||
        (r = write_map(pid, "gid_map", sb->plan->host_uid)) < 0)
        return error_set_errno(err, r, "write the child's id maps");
    if (sb->cg->v2_fd < 0 && (r = sb->cg->ops->attach(sb->cg, pid)) < 0)
        return error_set_errno(err, r, "attach the child to its cgroup");
    sb->netns_fd = open_ns(pid, "net");
    if (sb->netns_fd < 0)
        return error_set_errno(err, sb->netns_fd, "open the sandbox's network namespace");
    if (sb->plan->net == RUNTIME_NET_ONLINE) {
        sb->net_added = true;
        if ((r = ns_net_sandbox_add(sb->plan, sb->netns_fd, &sb->veth_made, err)) < 0)
            return r;
    }
    if ((r = send_layers(cfg, sb, err)) < 0)
        return r;
    if ((r = await_child(sb, NS_MSG_READY, err)) < 0)
        return r;
    *ret = TAKE_PTR(sb);
    return 0;
}

static int sandbox_start(struct runtime_sandbox *sb, struct error_record *err)
{
    if (!sb || sb->started)
        return error_set(err, EALREADY, "sandbox already started");
    int r = send_msg(sb->sock, NS_MSG_START, NULL, NULL, 0);
    if (r < 0)
        return error_set_errno(err, r, "send START");
    r = await_child(sb, 0, err);
    sb->sock = safe_close(sb->sock);
    if (r < 0)
        return r;
    sb->started = true;
    return 0;
}

static int sandbox_wait(struct runtime_sandbox *sb, usec_t timeout)
{
    if (sb->reaped)
        return sb->status;
    struct pollfd pfd = { .fd = sb->pidfd, .events = POLLIN };
    int ms = timeout == USEC_INFINITY ? -1 : (int)MIN(timeout / 1000, (usec_t)INT32_MAX);
    int r;
    do
        r = poll(&pfd, 1, ms);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    int status;
    pid_t p;
    do
        p = waitpid(sb->pid, &status, 0);
    while (p < 0 && errno == EINTR);
    if (p < 0)
        return -errno;
    sb->reaped = true;
    sb->status = status;
    return status;
}

static int sandbox_destroy(struct runtime_sandbox *sb)
{
    if (!sb)
        return 0;
    int ret = 0;
    if (sb->pidfd >= 0 && !sb->reaped) {
        /* Killing init kills the pid namespace: the kernel SIGKILLs every other member and init
         * only becomes a zombie once they are all gone (exec'd processes are members too). A
         * frozen sandbox must be thawed for its tasks to die. Bounded: if it does not end, the
         * cgroup kill below takes over. */
        pidfd_send_signal(sb->pidfd, SIGKILL, NULL, 0);
        if (sb->cg)
            sb->cg->ops->freeze(sb->cg, false);
        struct pollfd pfd = { .fd = sb->pidfd, .events = POLLIN };
        if (poll(&pfd, 1, 10000) == 1 && waitpid(sb->pid, &sb->status, 0) == sb->pid)
            sb->reaped = true;
    }
    /* The last reference to the writable tmpfs once the sandbox's mounts are gone. */
    sb->rw_fd = safe_close(sb->rw_fd);
    if (sb->cg) {
        int r = ns_cgroup_destroy(sb->cg);
        if (r < 0)
            ret = r;
    }
    if (sb->net_added) {
        ns_net_egress_forget(sb->plan);
        int r = ns_net_sandbox_del(sb->plan->id, sb->veth_made ? sb->plan->veth : NULL);
        if (r < 0 && ret == 0)
            ret = r;
    }
    if (sb->pid > 0 && !sb->reaped) {
        pid_t p;
        do
            p = waitpid(sb->pid, &sb->status, 0);
        while (p < 0 && errno == EINTR);
        sb->reaped = true;
    }
    safe_close(sb->pidfd);
    safe_close(sb->sock);
    safe_close(sb->netns_fd);
    ns_plan_free(sb->plan);
    free(sb);
    return ret;
}

static int sandbox_freeze(struct runtime_sandbox *sb)
{
    int r = sb->cg->ops->freeze(sb->cg, true);
    if (r >= 0)
        sb->frozen = true;
    return r;
}

static int sandbox_thaw(struct runtime_sandbox *sb)
{
    int r = sb->cg->ops->freeze(sb->cg, false);
    if (r >= 0)
        sb->frozen = false;
    return r;
}

static int sandbox_export_layer(struct runtime_sandbox *sb, const char *dest_dir, struct error_record *err)
{
    if (!sb || !dest_dir)
        return error_set(err, EINVAL, "no sandbox or destination");
    if (sb->rw_fd < 0)
        return error_set(err, ESRCH, "sandbox %s has no writable layer", sb->plan->id);
    return ns_export_layer(sb->plan, sb->rw_fd, dest_dir, err);
}

static int sandbox_join_handle(struct runtime_sandbox *sb, struct runtime_join *ret, struct error_record *err)
{
    if (!sb->started || sb->reaped)
        return error_set(err, ESRCH, "sandbox is not running");
    if (sb->frozen)
        return error_set(err, EBUSY, "sandbox is frozen");
    struct runtime_join j = { .limits = sb->plan->limits, .allow_setuid = sb->plan->allow_setuid };
    int r = 0;
    j.fds[j.n_fds] = fcntl(sb->pidfd, F_DUPFD_CLOEXEC, 3);
    if (j.fds[j.n_fds] < 0)
        r = error_set_errno(err, errno, "dup pidfd");
    else
        j.n_fds++;
    for (int c = 0; r >= 0 && c < NS_CG_MAX; c++) {
        if (!sb->cg->dirs[c][0])
            continue;
        if (j.n_fds == RUNTIME_JOIN_MAX_FDS) {
            r = error_set(err, E2BIG, "too many cgroup hierarchies");
            break;
        }
        char path[300];
        snprintf(path, sizeof(path), "%s/cgroup.procs", sb->cg->dirs[c]);
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            r = error_set_errno(err, errno, "open %s", path);
        else
            j.fds[j.n_fds++] = fd;
    }
    if (r < 0) {
        for (size_t i = 0; i < j.n_fds; i++)
            close(j.fds[i]);
        return r;
    }
    *ret = j;
    return 0;
}

static int sandbox_stats(struct runtime_sandbox *sb, struct runtime_stats *ret)
{
    struct runtime_stats s = { 0 };
    int r = sb->cg->ops->stats(sb->cg, &s);
    if (r < 0)
        return r;
    /* The root overlay reports its upper filesystem: the size-limited writable layer. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/root/", (int)sb->pid);
    struct statfs sfs;
    if (!sb->reaped && statfs(path, &sfs) == 0) {
        uint64_t used = statfs_used_bytes(&sfs);
        /* An ext4 layer starts with its own metadata in use: only what the sandbox added. */
        s.disk_bytes = used > sb->disk_base ? used - sb->disk_base : 0;
    }
    *ret = s;
    return 0;
}

struct connect_job {
    int netns_fd;
    uint16_t port;
    int fd;
    int error;
};

/* Runs on its own thread: setns changes only this thread's network namespace, and the socket
 * keeps the namespace it was created in after the thread is gone. */
static void *connect_thread(void *arg)
{
    struct connect_job *job = arg;
    if (setns(job->netns_fd, CLONE_NEWNET) < 0) {
        job->error = errno;
        return NULL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        job->error = errno;
        return NULL;
    }
    if (job->port == 0) { /* socket() only: the caller connects */
        job->fd = fd;
        return NULL;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(job->port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int r;
    do
        r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        job->error = errno;
        close(fd);
        return NULL;
    }
    job->fd = fd;
    return NULL;
}

static int sandbox_connect(struct runtime_sandbox *sb, uint16_t port, struct error_record *err)
{
    if (port == 0)
        return error_set(err, EINVAL, "port 0");
    struct connect_job job = { sb->netns_fd, port, -1, 0 };
    pthread_t t;
    int r = pthread_create(&t, NULL, connect_thread, &job);
    if (r != 0)
        return error_set_errno(err, r, "pthread_create");
    pthread_join(t, NULL);
    if (job.fd < 0)
        return error_set_errno(err, job.error, "connect to 127.0.0.1:%u in sandbox %s", port, sb->plan->id);
    return job.fd;
}

static int sandbox_set_egress(struct runtime_sandbox *sb, const char *const *allow_out,
                              const char *const *deny_out, const uint16_t *https_ports, bool deny_internet,
                              struct error_record *err)
{
    if (sb->plan->net != RUNTIME_NET_ONLINE)
        return error_set(err, EOPNOTSUPP, "sandbox %s is offline: it has no network to configure",
                         sb->plan->id);
    return ns_net_sandbox_policy(sb->plan, allow_out, deny_out, https_ports, deny_internet, err);
}

static int sandbox_socket(struct runtime_sandbox *sb, struct error_record *err)
{
    struct connect_job job = { sb->netns_fd, 0, -1, 0 };
    pthread_t t;
    int r = pthread_create(&t, NULL, connect_thread, &job);
    if (r != 0)
        return error_set_errno(err, r, "pthread_create");
    pthread_join(t, NULL);
    if (job.fd < 0)
        return error_set_errno(err, job.error, "socket in sandbox %s", sb->plan->id);
    return job.fd;
}

/* exec(): forked helper -> attach to the cgroup -> setns into all namespaces at once (pidfd)
 * -> clone3(CLONE_PARENT) so the new process is the caller's child and pid N in the sandbox
 * -> its pidfd back to the caller -> the new process finishes like the sandbox's init. */
static _noreturn_ void exec_helper(struct runtime_sandbox *sb, const struct exec_params *p, int sock)
{
    struct error_record err;
    error_clear(&err);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    sock = fd_above_stdio(sock);
    int keep[5] = { sock, sb->pidfd, p->stdio[0], p->stdio[1], p->stdio[2] };
    close_fds_except(keep, ARRAY_SIZE(keep));
    int r = sb->cg->ops->attach(sb->cg, getpid());
    if (r < 0) {
        error_set_errno(&err, r, "attach to the sandbox's cgroup");
        goto fail;
    }
    if (setns(sb->pidfd, NS_SETNS_FLAGS) < 0) {
        error_set_errno(&err, errno, "setns into the sandbox");
        goto fail;
    }
    int pidfd = -1;
    pid_t pid = clone3_pidfd(CLONE_PARENT, &pidfd, -1, 0);
    if (pid < 0) {
        error_set_errno(&err, errno, "clone3 into the sandbox");
        goto fail;
    }
    if (pid == 0) {
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        close(sb->pidfd);
        if (ns_caps_become_root(&err) < 0 || ns_rlimits_apply(&sb->plan->limits, &err) < 0)
            goto fail;
        if (setsid() < 0) {
            error_set_errno(&err, errno, "setsid");
            goto fail;
        }
        exec_finish(p, &err);
        goto fail;
    }
    send_msg(sock, NS_MSG_PIDFD, NULL, &pidfd, 1);
    _exit(0);
fail:
    send_msg(sock, NS_MSG_ERROR, &err, NULL, 0);
    _exit(127);
}

static int sandbox_exec(struct runtime_sandbox *sb, const struct runtime_exec *ex, struct error_record *err)
{
    if (!sb->started || sb->reaped)
        return error_set(err, ESRCH, "sandbox is not running");
    /* The helper joins the sandbox's cgroup, and would freeze with it. */
    if (sb->frozen)
        return error_set(err, EBUSY, "sandbox is frozen");
    if (ex->uid >= NS_UID_RANGE || ex->gid >= NS_UID_RANGE)
        return error_set(err, ERANGE, "uid/gid out of range");
    const char *cwd = ex->cwd ? ex->cwd : "/";
    if (cwd[0] != '/')
        return error_set(err, EINVAL, "cwd must be absolute");
    char **argv = NULL, **env = NULL;
    if (ns_plan_strv(ex->argv, true, 4096, &argv) < 0)
        return error_set(err, EINVAL, "bad argv");
    if (ns_plan_strv(ex->env ? ex->env : (const char *const *)sb->plan->env, false, 4096, &env) < 0) {
        ns_strv_free(argv);
        return error_set(err, EINVAL, "bad env");
    }
    const char *path = sb->plan->path;
    for (char **e = env; *e; e++)
        if (str_startswith(*e, "PATH="))
            path = *e + 5;
    int stdio[3] = { ex->stdin_fd, ex->stdout_fd, ex->stderr_fd };
    struct exec_params p = {
        .argv = argv,
        .env = env,
        .cwd = cwd,
        .path = path,
        .uid = ex->uid,
        .gid = ex->gid,
        .allow_setuid = sb->plan->allow_setuid,
        .seccomp = &sb->plan->seccomp,
        .stdio = stdio,
    };
    int ret = -EIO;
    int sp[2] = { -1, -1 };
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        ret = error_set_errno(err, errno, "socketpair");
        goto out;
    }
    pid_t helper = fork();
    if (helper < 0) {
        ret = error_set_errno(err, errno, "fork");
        goto out;
    }
    if (helper == 0) {
        close(sp[0]);
        exec_helper(sb, &p, sp[1]);
    }
    sp[1] = safe_close(sp[1]);
    struct ns_msg msg;
    int pidfd = -1;
    size_t n = 0;
    int r = recv_msg(sp[0], &msg, &pidfd, 1, &n);
    if (r > 0 && msg.type == NS_MSG_PIDFD && n == 1) {
        /* EOF once the new process has exec'd; an ERROR from it otherwise. */
        r = recv_msg(sp[0], &msg, NULL, 0, NULL);
        if (r == 0) {
            ret = pidfd;
        } else {
            ret = r > 0 && msg.type == NS_MSG_ERROR ? -(msg.err.errnum ? msg.err.errnum : EIO) : -EIO;
            if (err && r > 0)
                *err = msg.err;
            siginfo_t si;
            waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
            close(pidfd);
        }
    } else if (r > 0 && msg.type == NS_MSG_ERROR) {
        if (err)
            *err = msg.err;
        ret = -(msg.err.errnum ? msg.err.errnum : EIO);
    } else {
        ret = error_set(err, EIO, "exec helper died");
    }
    int st;
    while (waitpid(helper, &st, 0) < 0 && errno == EINTR)
        ;
out:
    safe_close(sp[0]);
    safe_close(sp[1]);
    ns_strv_free(argv);
    ns_strv_free(env);
    return ret;
}

const struct runtime_ops runtime_ns_ops = {
    .name = "ns",
    .create = sandbox_create,
    .start = sandbox_start,
    .connect = sandbox_connect,
    .socket = sandbox_socket,
    .set_egress = sandbox_set_egress,
    .exec = sandbox_exec,
    .join_handle = sandbox_join_handle,
    .freeze = sandbox_freeze,
    .thaw = sandbox_thaw,
    .pause = sandbox_freeze,
    .resume = sandbox_thaw,
    .wait = sandbox_wait,
    .stats = sandbox_stats,
    .export_layer = sandbox_export_layer,
    .destroy = sandbox_destroy,
};

static void cleanup_net(const char *name, void *userdata)
{
    int *ret = userdata;
    int r = ns_net_sandbox_del(name, NULL);
    if (r < 0 && *ret == 0)
        *ret = r;
}

int runtime_ns_cleanup(const struct runtime_config *cfg)
{
    const struct ns_cgroup_ops *ops = ns_cgroup_detect(cfg ? cfg->cgroup_version : 0);
    if (!ops)
        return -EOPNOTSUPP;
    const char *parent = cfg && cfg->cgroup_parent ? cfg->cgroup_parent : "hutch";
    /* A sandbox's cgroup is its record: the nftables objects of every leftover go first (its
     * veth died with its network namespace). */
    int net_r = 0;
    ops->list(parent, cleanup_net, &net_r);
    int r = ns_cgroup_cleanup(ops, parent);
    return r < 0 ? r : net_r < 0 ? net_r : r;
}

int runtime_ns_release(const struct runtime_config *cfg)
{
    const struct ns_cgroup_ops *ops = ns_cgroup_detect(cfg ? cfg->cgroup_version : 0);
    int r = ops ? ns_cgroup_remove_parent(ops, cfg && cfg->cgroup_parent ? cfg->cgroup_parent : "hutch") : 0;
    char run_dir[200], root[256];
    if (ns_config_run_dir(cfg, run_dir, sizeof(run_dir)) == 0) {
        snprintf(root, sizeof(root), "%s/root", run_dir);
        if (rmdir(root) < 0 && errno != ENOENT && errno != EBUSY && errno != ENOTEMPTY && r == 0)
            r = -errno;
    }
    return r;
}

int runtime_ns_slot_reset(const struct runtime_config *cfg, unsigned slot)
{
    return ns_net_slot_reset(cfg, slot);
}
