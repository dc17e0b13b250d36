/* hutch serve's end of the kernel fork server (src/forkserver/forkserver.h): starting it, asking
 * it for a kernel in a sandbox, stopping it.
 *
 * The fork server is executed from a sealed memfd copy of its binary: its children live inside
 * sandboxes, and their /proc/self/exe must lead to no host file (runc's CVE-2019-5736 came
 * from one that did). It imports for a second or two; until it says "ready" (a thread waits for
 * that), sandboxes start their kernels themselves. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/log.h"
#include "common/net-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"

#include "common/banned.h"

#define READY_TIMEOUT_MS (60 * 1000)
#define REPLY_TIMEOUT_MS (10 * 1000)
#define REPLY_MAX 512
#define KSM_RUN "/sys/kernel/mm/ksm/run"

struct orch_forkserver {
    int sock;
    pid_t pid;
    int pidfd;
    pthread_t waiter;
    bool waiter_started;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* ready or failed set */
    bool ready, failed;
};

static int sealed_copy(const char *path, struct error_record *err)
{
    _cleanup_close_ int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return error_set_errno(err, errno, "open %s", path);
    struct stat st;
    if (fstat(src, &st) < 0)
        return error_set_errno(err, errno, "stat %s", path);
    int fd = memfd_create("kernel-forkserver", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return error_set_errno(err, errno, "memfd_create");
    for (off_t done = 0; done < st.st_size;) {
        ssize_t n = sendfile(fd, src, NULL, (size_t)(st.st_size - done));
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            return error_set_errno(err, e, "copying %s", path);
        }
        done += n;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
        int e = errno;
        close(fd);
        return error_set_errno(err, e, "sealing the copy of %s", path);
    }
    return fd;
}

static void *wait_ready(void *arg)
{
    struct orch_forkserver *fs = arg;
    struct pollfd p = { .fd = fs->sock, .events = POLLIN };
    char buf[16];
    ssize_t n = -1;
    if (poll(&p, 1, READY_TIMEOUT_MS) > 0)
        n = recv(fs->sock, buf, sizeof(buf), 0);
    pthread_mutex_lock(&fs->lock);
    if (n == 5 && memcmp(buf, "ready", 5) == 0)
        fs->ready = true;
    else
        fs->failed = true;
    pthread_cond_broadcast(&fs->changed);
    pthread_mutex_unlock(&fs->lock);
    if (n == 5 && memcmp(buf, "ready", 5) == 0)
        log_info("kernel fork server ready (pid %d)", (int)fs->pid);
    else
        log_warn("the kernel fork server did not start; sandboxes start their own kernels");
    return NULL;
}

#ifndef PR_GET_MEMORY_MERGE
#define PR_GET_MEMORY_MERGE 68 /* Linux 6.4; Debian 12's headers are older */
#endif

int orch_forkserver_check_memory_merge(struct error_record *err)
{
    /* EINVAL from a kernel before 6.4 and from one built without KSM alike. */
    if (prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0) < 0)
        return error_set(err, EOPNOTSUPP,
                         "kernel memory merging needs Linux 6.4 or later built with KSM "
                         "(CONFIG_KSM)");
    /* Not an error: KSM may be switched on later (ksmtuned does so under memory pressure). */
    char run[8] = "";
    _cleanup_close_ int fd = open(KSM_RUN, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, run, sizeof(run) - 1) <= 0 || run[0] != '1')
        log_warn("kernel memory merging: KSM is not running (%s is not 1): the kernels' pages are "
                 "marked mergeable, but nothing merges until it is; see docs/operations.md",
                 KSM_RUN);
    return 0;
}

int orch_forkserver_start(const char *binary, const char *bundle_dir, const char *preload, bool memory_merge,
                          struct orch_forkserver **ret, struct error_record *err)
{
    _cleanup_close_ int exe = sealed_copy(binary, err);
    if (exe < 0)
        return exe;
    _cleanup_close_ int bundle = open(bundle_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (bundle < 0)
        return error_set_errno(err, errno, "open %s", bundle_dir);
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return error_set_errno(err, errno, "socketpair");
    char *argv[] = {
        (char *)"kernel-forkserver",
        (char *)"--sock-fd",
        (char *)"3",
        (char *)"--bundle-fd",
        (char *)"4",
        (char *)"--preload",
        (char *)preload,
        memory_merge ? (char *)"--memory-merge" : NULL,
        NULL,
    };
    char *envp[] = { NULL };
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sp[0]);
        close(sp[1]);
        return error_set_errno(err, e, "fork");
    }
    if (pid == 0) {
        /* Only async-signal-safe calls here: the server is multi-threaded. */
        if (dup2(sp[1], 3) < 0 || dup2(bundle, 4) < 0)
            _exit(127);
        /* Marked, not closed: exe itself is one of them until execveat has it. */
        close_range(5, ~0U, CLOSE_RANGE_CLOEXEC);
        syscall(SYS_execveat, exe, "", argv, envp, AT_EMPTY_PATH);
        _exit(127);
    }
    close(sp[1]);
    struct orch_forkserver *fs = xcalloc(1, sizeof(*fs));
    fs->sock = sp[0];
    fs->pid = pid;
    fs->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    pthread_mutex_init(&fs->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fs->changed, &ca);
    pthread_condattr_destroy(&ca);
    int r = pthread_create(&fs->waiter, NULL, wait_ready, fs);
    if (r != 0) {
        orch_forkserver_stop(fs);
        return error_set_errno(err, r, "pthread_create");
    }
    fs->waiter_started = true;
    *ret = fs;
    return 0;
}

static int send_request(struct orch_forkserver *fs, const char *json, size_t len, const int *fds, size_t nfds,
                        struct error_record *err)
{
    pthread_mutex_lock(&fs->lock);
    int r = net_send_fds(fs->sock, json, len, fds, nfds);
    pthread_mutex_unlock(&fs->lock);
    return r < 0 ? error_set_errno(err, -r, "sending to the kernel fork server") : 0;
}

static int read_reply(int fd, struct error_record *err)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int pr = poll(&p, 1, REPLY_TIMEOUT_MS);
    if (pr <= 0)
        return error_set(err, ETIMEDOUT, "the kernel fork server did not answer");
    char buf[REPLY_MAX + 1];
    ssize_t n = recv(fd, buf, REPLY_MAX, 0);
    if (n <= 0)
        return error_set(err, EIO, "the kernel fork server's child ended without an answer");
    buf[n] = '\0';
    if (str_startswith(buf, "ok "))
        return 0;
    int errnum = EIO, off = 0;
    if (sscanf(buf, "error %d %n", &errnum, &off) >= 1 && off > 0)
        return error_set(err, errnum > 0 && errnum < 4096 ? errnum : EIO, "%s", buf + off);
    return error_set(err, EIO, "the kernel fork server answered '%.64s'", buf);
}

int orch_forkserver_spawn(struct orch_forkserver *fs, const struct orch_kernel_request *req,
                          struct error_record *err)
{
    /* The first requests after the start wait for the imports (the waiter thread gives up
     * after READY_TIMEOUT_MS and says so). */
    pthread_mutex_lock(&fs->lock);
    while (!fs->ready && !fs->failed)
        pthread_cond_wait(&fs->changed, &fs->lock);
    bool ready = fs->ready;
    pthread_mutex_unlock(&fs->lock);
    if (!ready)
        return error_set(err, EAGAIN, "the kernel fork server did not start");
    json_t *env = json_array();
    for (size_t i = 0; req->env[i]; i++)
        json_array_append_new(env, json_string(req->env[i]));
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:b, s:o}", "user", req->user, "dir", req->dir, "cwd",
                  req->cwd, "uid", (int)req->uid, "gid", (int)req->gid, "nofile",
                  (json_int_t)req->join->limits.nofile, "allow_setuid", req->join->allow_setuid, "env", env);
    if (!o)
        return error_set(err, EINVAL, "env is not UTF-8");
    size_t len;
    _cleanup_free_ char *json = json_dump_compact(o, &len);
    json_decref(o);
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return error_set_errno(err, errno, "socketpair");
    int fds[1 + RUNTIME_JOIN_MAX_FDS];
    fds[0] = sp[1];
    memcpy(fds + 1, req->join->fds, req->join->n_fds * sizeof(int));
    int r = send_request(fs, json, len, fds, 1 + req->join->n_fds, err);
    /* The env may hold the sandbox's secrets: no copy of it stays in this process's heap. */
    explicit_bzero(json, len);
    close(sp[1]);
    if (r >= 0)
        r = read_reply(sp[0], err);
    close(sp[0]);
    return r;
}

void orch_forkserver_stop(struct orch_forkserver *fs)
{
    if (!fs)
        return;
    /* EOF ends it; its kernels live on in their sandboxes, which end them. */
    shutdown(fs->sock, SHUT_RDWR);
    if (fs->pidfd >= 0) {
        struct pollfd p = { .fd = fs->pidfd, .events = POLLIN };
        if (poll(&p, 1, 2000) <= 0)
            syscall(SYS_pidfd_send_signal, fs->pidfd, SIGKILL, NULL, 0);
    } else {
        kill(fs->pid, SIGKILL);
    }
    while (waitpid(fs->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (fs->waiter_started)
        pthread_join(fs->waiter, NULL);
    close(fs->sock);
    if (fs->pidfd >= 0)
        close(fs->pidfd);
    pthread_mutex_destroy(&fs->lock);
    pthread_cond_destroy(&fs->changed);
    free(fs);
}
