/* Kernel lifecycle over libzmq: see kernel.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <zmq.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/fs-util.h"
#include "common/strutil.h"
#include "common/json-util.h"
#include "common/xalloc.h"
#include "interpd/kernel.h"
#include "common/banned.h"

extern char **environ;

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

#define KERNEL_JSON_MAX (1 << 20)
#define IOPUB_HWM 100000

struct kernel {
    pthread_mutex_t lock; /* pid, reaped, status */
    pid_t pid;
    int pidfd;
    bool reaped;
    int status;
    bool interrupt_signal;
    bool late_output; /* may send output after its idle status (Deno) */
    bool adopted;     /* started by the fork server, not our child: its exit status is unknown */
    char *dir;        /* private runtime subdirectory holding the connection file and sockets */
    char key[65];
    char session[37];
    void *shell, *iopub, *control;
};

const char *kernel_name_for_language(const char *language)
{
    static const struct {
        const char *language, *kernel;
    } table[] = {
        { "python", "python3" },  { "r", "ir" },      { "javascript", "deno" },
        { "typescript", "deno" }, { "bash", "bash" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(table); i++)
        if (streq(table[i].language, language))
            return table[i].kernel;
    return NULL;
}

#define DEFAULT_DIRS_MAX 32
static char *default_dirs[DEFAULT_DIRS_MAX + 1];

/* Jupyter's order: $JUPYTER_PATH entries, the user's data dir, then the system dirs. */
static void default_dirs_init(void)
{
    size_t n = 0;
    const char *jp = getenv("JUPYTER_PATH");
    for (const char *p = jp; p && *p && n < DEFAULT_DIRS_MAX - 3;) {
        size_t len = strcspn(p, ":");
        if (len > 0 && p[0] == '/')
            default_dirs[n++] = xasprintf("%.*s/kernels", (int)len, p);
        p += len + (p[len] == ':');
    }
    const char *home = getenv("HOME");
    if (home && home[0] == '/')
        default_dirs[n++] = xasprintf("%s/.local/share/jupyter/kernels", home);
    default_dirs[n++] = xstrdup("/usr/local/share/jupyter/kernels");
    default_dirs[n++] = xstrdup("/usr/share/jupyter/kernels");
}

const char *const *kernelspec_default_dirs(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, default_dirs_init);
    return (const char *const *)default_dirs;
}

void kernelspec_free(struct kernelspec *ks)
{
    if (!ks)
        return;
    free(ks->name);
    free(ks->dir);
    if (ks->argv)
        for (char **a = ks->argv; *a; a++)
            free(*a);
    free(ks->argv);
    json_decref(ks->env);
    free(ks);
}

int kernelspec_find(const char *const *dirs, const char *name, struct kernelspec **ret,
                    struct error_record *err)
{
    for (size_t i = 0; dirs[i]; i++) {
        _cleanup_free_ char *dir = xasprintf("%s/%s", dirs[i], name);
        _cleanup_free_ char *path = xasprintf("%s/kernel.json", dir);
        if (access(path, R_OK) < 0)
            continue;
        json_error_t jerr;
        _cleanup_json_ json_t *spec = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (!spec || !json_is_object(spec))
            return error_set(err, EINVAL, "%s: %s", path, spec ? "not a JSON object" : jerr.text);
        json_t *argv = json_object_get(spec, "argv");
        if (!json_is_array(argv) || json_array_size(argv) == 0 || json_array_size(argv) > 256)
            return error_set(err, EINVAL, "%s: argv is not a non-empty array", path);
        struct kernelspec *ks = xcalloc(1, sizeof(*ks));
        ks->argv = xcalloc(json_array_size(argv) + 1, sizeof(char *));
        for (size_t j = 0; j < json_array_size(argv); j++) {
            const char *a = json_string_value(json_array_get(argv, j));
            if (!a) {
                kernelspec_free(ks);
                return error_set(err, EINVAL, "%s: argv[%zu] is not a string", path, j);
            }
            ks->argv[j] = xstrdup(a);
        }
        json_t *env = json_object_get(spec, "env");
        if (json_is_object(env))
            ks->env = json_incref(env);
        const char *mode = json_get_string(spec, "interrupt_mode");
        ks->interrupt_signal = !mode || !streq(mode, "message");
        ks->name = xstrdup(name);
        ks->dir = TAKE_PTR(dir);
        *ret = ks;
        return 0;
    }
    return -ENOENT;
}

char *kernelspec_list_installed(const char *const *dirs)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    for (size_t i = 0; dirs[i]; i++) {
        _cleanup_(closedirp) DIR *d = opendir(dirs[i]);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            _cleanup_free_ char *p = xasprintf("%s/%s/kernel.json", dirs[i], de->d_name);
            if (access(p, R_OK) < 0)
                continue;
            (void)buf_printf(&b, "%s%s", b.len ? ", " : "", de->d_name);
        }
    }
    return buf_steal(&b);
}

static char *substitute(const char *arg, const char *conn_file, const char *resource_dir)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    for (const char *p = arg; *p;) {
        if (str_startswith(p, "{connection_file}")) {
            (void)buf_append_str(&b, conn_file);
            p += strlen("{connection_file}");
        } else if (str_startswith(p, "{resource_dir}")) {
            (void)buf_append_str(&b, resource_dir);
            p += strlen("{resource_dir}");
        } else {
            (void)buf_append(&b, p++, 1);
        }
    }
    return buf_steal(&b);
}

struct envv {
    char **v;
    size_t n, cap;
};

/* Adds KEY=VALUE (taken), replacing an earlier entry with the same KEY. */
static void env_put(struct envv *e, char *entry)
{
    size_t klen = strcspn(entry, "=");
    for (size_t i = 0; i < e->n; i++)
        if (strncmp(e->v[i], entry, klen) == 0 && e->v[i][klen] == '=') {
            free(e->v[i]);
            e->v[i] = entry;
            return;
        }
    if (e->n + 1 >= e->cap) {
        e->cap = e->cap ? 2 * e->cap : 64;
        e->v = xreallocarray(e->v, e->cap, sizeof(char *));
    }
    e->v[e->n++] = entry;
    e->v[e->n] = NULL;
}

static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* environ, then the spec's env, then extra: later entries replace earlier ones by name. */
static char **build_env(const struct kernelspec *ks, char *const *extra)
{
    struct envv e = { 0 };
    for (char **p = environ; *p; p++)
        env_put(&e, xstrdup(*p));
    if (ks->env) {
        const char *k;
        json_t *v;
        json_object_foreach (ks->env, k, v) {
            if (json_is_string(v))
                env_put(&e, xasprintf("%s=%s", k, json_string_value(v)));
        }
    }
    /* Results are data, not a terminal's output: Deno colours its text/plain reprs unless told
     * not to, and the escapes would reach the client's `text`. */
    if (streq(ks->name, "deno"))
        env_put(&e, xstrdup("NO_COLOR=1"));
    for (char *const *p = extra; p && *p; p++)
        env_put(&e, xstrdup(*p));
    if (!e.v)
        e.v = xcalloc(1, sizeof(char *));
    return e.v;
}

/* Where the kernel binds: transport, ip and the five ports, in Jupyter's order shell, iopub,
 * stdin, control, hb. */
struct endpoints {
    bool tcp;
    char *ip;
    int ports[5];
};

/* Kernels that bind "<transport>://<ip>:<port>" also for ipc, unlike jupyter_client's
 * "ipc://<ip>-<port>" (Deno's runtimelib): they get loopback TCP, as under Jupyter itself. */
static bool needs_tcp(const char *kernel_name)
{
    return streq(kernel_name, "deno");
}

/* Five free loopback ports. The listeners are closed before the kernel binds: a small race
 * that jupyter_client accepts too; a lost race shows as a kernel that fails to start. */
static int pick_tcp_ports(int ports[5])
{
    int fds[5] = { -1, -1, -1, -1, -1 }, r = 0;
    for (int i = 0; i < 5 && r == 0; i++) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &len) < 0)
            r = -errno;
        else
            ports[i] = ntohs(a.sin_port);
    }
    for (int i = 0; i < 5; i++)
        safe_close(fds[i]);
    return r;
}

static char *endpoint(const struct endpoints *e, int index)
{
    return e->tcp ? xasprintf("tcp://%s:%d", e->ip, e->ports[index])
                  : xasprintf("ipc://%s-%d", e->ip, e->ports[index]);
}

static int write_connection_file(const char *path, const struct endpoints *e, const char *key,
                                 const char *name)
{
    _cleanup_json_ json_t *c =
        json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:s}", "transport", e->tcp ? "tcp" : "ipc",
                  "ip", e->ip, "shell_port", e->ports[0], "iopub_port", e->ports[1], "stdin_port",
                  e->ports[2], "control_port", e->ports[3], "hb_port", e->ports[4], "key", key,
                  "signature_scheme", "hmac-sha256", "kernel_name", name);
    size_t len;
    _cleanup_free_ char *text = json_dump_compact(c, &len);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    if (write(fd, text, len) != (ssize_t)len)
        return errno ? -errno : -EIO;
    return 0;
}

static int spawn(const struct kernelspec *ks, const struct kernel_opts *opts, const char *conn_file,
                 pid_t *ret_pid, struct error_record *err)
{
    size_t argc = 0;
    while (ks->argv[argc])
        argc++;
    char **argv = xcalloc(argc + 1, sizeof(char *));
    for (size_t i = 0; i < argc; i++)
        argv[i] = substitute(ks->argv[i], conn_file, ks->dir);
    char **envp = build_env(ks, opts->extra_env);

    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&fa);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    /* Its own process group (interrupts and kills address the whole group), default signal
     * dispositions and an empty mask whatever interpd's threads had. */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (opts->cwd)
        posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);
    pid_t pid;
    int r = posix_spawnp(&pid, argv[0], &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (r != 0)
        error_set_errno(err, r, "cannot start %s (kernel %s, cwd %s)", argv[0], ks->name,
                        opts->cwd ? opts->cwd : ".");
    strv_free(argv);
    strv_free(envp);
    if (r != 0)
        return -r;
    *ret_pid = pid;
    return 0;
}

static void *socket_connect(void *zctx, int type, const struct endpoints *e, int index)
{
    void *s = zmq_socket(zctx, type);
    if (!s)
        return NULL;
    int zero = 0, hwm = IOPUB_HWM;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    if (type == ZMQ_SUB) {
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    }
    _cleanup_free_ char *ep = endpoint(e, index);
    if (zmq_connect(s, ep) < 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

pid_t kernel_pid(const struct kernel *k)
{
    return k->pid;
}

/* Caller holds k->lock. The process is first waited for without reaping, so that the rest of
 * its group (children the kernel left behind) is killed while the zombie leader still pins the
 * group id: the kill can never reach a recycled process group. */
static void reap_locked(struct kernel *k, bool block)
{
    if (k->reaped || k->pid <= 0)
        return;
    siginfo_t si = { 0 };
    if (k->adopted) {
        /* Reaped by the sandbox's init; the pidfd says when it has exited. */
        struct pollfd p = { .fd = k->pidfd, .events = POLLIN };
        if (k->pidfd < 0 || poll(&p, 1, block ? 1000 : 0) > 0)
            k->reaped = true;
        return;
    }
    if (waitid(P_PID, (id_t)k->pid, &si, WEXITED | WNOWAIT | (block ? 0 : WNOHANG)) < 0) {
        if (errno == ECHILD) {
            k->reaped = true;
            k->status = 0;
        }
        return;
    }
    if (si.si_pid != k->pid)
        return;
    kill(-k->pid, SIGKILL);
    int status = 0;
    if (waitpid(k->pid, &status, 0) == k->pid) {
        k->reaped = true;
        k->status = status;
    }
}

bool kernel_alive(struct kernel *k)
{
    pthread_mutex_lock(&k->lock);
    if (k->pidfd >= 0) {
        struct pollfd p = { .fd = k->pidfd, .events = POLLIN };
        if (poll(&p, 1, 0) > 0)
            reap_locked(k, false);
    } else {
        reap_locked(k, false);
    }
    bool alive = !k->reaped;
    pthread_mutex_unlock(&k->lock);
    return alive;
}

void kernel_kill(struct kernel *k, int sig)
{
    pthread_mutex_lock(&k->lock);
    if (!k->reaped && k->pid > 0)
        kill(-k->pid, sig);
    pthread_mutex_unlock(&k->lock);
}

const char *kernel_exit_string(struct kernel *k, char *buf, size_t size)
{
    pthread_mutex_lock(&k->lock);
    if (!k->reaped)
        snprintf(buf, size, "running");
    else if (k->adopted)
        snprintf(buf, size, "exited");
    else if (WIFSIGNALED(k->status))
        snprintf(buf, size, "was killed by signal %d (%s)", WTERMSIG(k->status),
                 strsignal(WTERMSIG(k->status)));
    else
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(k->status));
    pthread_mutex_unlock(&k->lock);
    return buf;
}

void kernel_free(struct kernel *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->lock);
    if (!k->reaped && k->pid > 0) {
        kill(-k->pid, SIGKILL);
        reap_locked(k, true);
    }
    pthread_mutex_unlock(&k->lock);
    if (k->shell)
        zmq_close(k->shell);
    if (k->iopub)
        zmq_close(k->iopub);
    if (k->control)
        zmq_close(k->control);
    safe_close(k->pidfd);
    if (k->dir)
        rm_rf(k->dir);
    free(k->dir);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

int kernel_send(struct kernel *k, enum kernel_channel ch, const char *msg_type, json_t *content,
                char ret_msg_id[37])
{
    struct jmsg m;
    jmsg_build(&m, k->session, "interpd", msg_type, NULL, content);
    void *s = ch == KERNEL_CONTROL ? k->control : k->shell;
    int r = jmsg_send(s, &m, k->key, strlen(k->key), NULL, 0);
    if (r >= 0 && ret_msg_id)
        memcpy(ret_msg_id, m.msg_id, 37);
    jmsg_release(&m);
    return r;
}

int kernel_next(struct kernel *k, usec_t timeout, struct jmsg *ret, enum kernel_channel *ret_ch)
{
    usec_t deadline = timeout == USEC_INFINITY ? USEC_INFINITY : now_usec(CLOCK_MONOTONIC) + timeout;
    for (;;) {
        /* Queued messages first: a kernel's last output arrives before its death is seen. */
        void *socks[2] = { k->iopub, k->shell };
        enum kernel_channel chans[2] = { KERNEL_IOPUB, KERNEL_SHELL };
        for (int i = 0; i < 2; i++) {
            struct error_record err;
            int r;
            while ((r = jmsg_recv(socks[i], k->key, strlen(k->key), ret, &err)) < 0)
                if (r != -EPERM && r != -EBADMSG && r != -E2BIG)
                    return r; /* a bad message is dropped; the next one may be fine */
            if (r > 0) {
                *ret_ch = chans[i];
                return 1;
            }
        }
        if (!kernel_alive(k))
            return -ESRCH;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= deadline)
            return 0;
        long ms = deadline == USEC_INFINITY ? -1 : (long)((deadline - now + 999) / 1000);
        zmq_pollitem_t items[3] = {
            { .socket = k->iopub, .events = ZMQ_POLLIN },
            { .socket = k->shell, .events = ZMQ_POLLIN },
            { .socket = NULL, .fd = k->pidfd, .events = ZMQ_POLLIN },
        };
        if (zmq_poll(items, k->pidfd >= 0 ? 3 : 2, ms) < 0 && errno != EINTR)
            return -errno;
    }
}

int kernel_interrupt(struct kernel *k)
{
    if (k->interrupt_signal) {
        kernel_kill(k, SIGINT);
        return 0;
    }
    /* Drop earlier interrupt replies so the control queue never grows. */
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        int r = zmq_msg_recv(&part, k->control, ZMQ_DONTWAIT);
        zmq_msg_close(&part);
        if (r < 0)
            break;
    }
    return kernel_send(k, KERNEL_CONTROL, "interrupt_request", NULL, NULL);
}

/* Asks kernel_info until the reply arrives on shell and some message with one of our
 * requests as parent arrives on iopub: only then is the SUB socket known to be connected,
 * so the first execution's output cannot be lost (jupyter_client's "nudge"). */
static int handshake(struct kernel *k, usec_t timeout, struct error_record *err)
{
    usec_t start = now_usec(CLOCK_MONOTONIC), last_send = 0;
    bool have_reply = false, have_iopub = false;
    while (!have_reply || !have_iopub) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now - start > timeout)
            return error_set(err, ETIMEDOUT, "the kernel did not answer kernel_info_request within %llu s",
                             (unsigned long long)(timeout / USEC_PER_SEC));
        if (last_send == 0 || (have_reply && now - last_send > 200 * USEC_PER_MSEC)) {
            int r = kernel_send(k, KERNEL_SHELL, "kernel_info_request", NULL, NULL);
            if (r < 0)
                return error_set_errno(err, r, "cannot send kernel_info_request");
            last_send = now;
        }
        struct jmsg m;
        enum kernel_channel ch;
        int r = kernel_next(k, 100 * USEC_PER_MSEC, &m, &ch);
        if (r == -ESRCH) {
            char how[128];
            return error_set(err, ESRCH, "the kernel process %s during startup",
                             kernel_exit_string(k, how, sizeof(how)));
        }
        if (r < 0)
            return error_set_errno(err, r, "cannot receive from the kernel");
        if (r == 0)
            continue;
        if (ch == KERNEL_SHELL && streq(m.msg_type, "kernel_info_reply"))
            have_reply = true;
        else if (ch == KERNEL_IOPUB)
            have_iopub = true;
        jmsg_release(&m);
    }
    return 0;
}

/* The last steps of kernel_start() and kernel_adopt(): the three sockets, then the handshake. */
static int connect_and_handshake(void *zctx, struct kernel *k, const struct endpoints *ep, usec_t timeout,
                                 struct error_record *err)
{
    k->shell = socket_connect(zctx, ZMQ_DEALER, ep, 0);
    k->iopub = socket_connect(zctx, ZMQ_SUB, ep, 1);
    k->control = socket_connect(zctx, ZMQ_DEALER, ep, 3);
    if (!k->shell || !k->iopub || !k->control)
        return error_set_errno(err, errno, "cannot create the zmq sockets");
    return handshake(k, timeout, err);
}

/* One field of an adopted kernel's connection file. */
static int conn_port(const json_t *c, const char *name, int *ret)
{
    json_int_t v = json_integer_value(json_object_get(c, name));
    if (v <= 0 || v > 65535)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

/* dir/connection.json and dir/pid, once both are there (NULL, 0 until then). The directory
 * must be ours and private: the key in it is the kernel's. */
static int read_adopted(const char *dir, struct endpoints *ep, char key[65], pid_t *ret_pid,
                        struct error_record *err)
{
    struct stat st;
    if (lstat(dir, &st) < 0)
        return errno == ENOENT ? 0 : error_set_errno(err, errno, "%s", dir);
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
        return error_set(err, EPERM, "%s is not a private directory of this user", dir);
    _cleanup_free_ char *conn_path = xasprintf("%s/connection.json", dir);
    _cleanup_free_ char *pid_path = xasprintf("%s/pid", dir);
    json_error_t jerr;
    _cleanup_json_ json_t *pid = json_load_file(pid_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!pid)
        return access(pid_path, F_OK) < 0 && errno == ENOENT
                   ? 0
                   : error_set(err, EINVAL, "%s: %s", pid_path, jerr.text);
    _cleanup_json_ json_t *c = json_load_file(conn_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!c)
        return access(conn_path, F_OK) < 0 && errno == ENOENT
                   ? 0
                   : error_set(err, EINVAL, "%s: %s", conn_path, jerr.text);
    const char *transport = json_get_string(c, "transport"), *ip = json_get_string(c, "ip");
    const char *k = json_get_string(c, "key"), *scheme = json_get_string(c, "signature_scheme");
    json_int_t p = json_integer_value(json_object_get(pid, "pid"));
    _cleanup_free_ char *prefix = xasprintf("%s/", dir);
    if (!transport || !streq(transport, "ipc") || !ip || !str_startswith(ip, prefix) || !k ||
        strlen(k) > 64 || !scheme || !streq(scheme, "hmac-sha256") || p <= 1 || p > INT_MAX ||
        conn_port(c, "shell_port", &ep->ports[0]) < 0 || conn_port(c, "iopub_port", &ep->ports[1]) < 0 ||
        conn_port(c, "stdin_port", &ep->ports[2]) < 0 || conn_port(c, "control_port", &ep->ports[3]) < 0 ||
        conn_port(c, "hb_port", &ep->ports[4]) < 0)
        return error_set(err, EINVAL, "%s is not an ipc connection file of this directory", conn_path);
    ep->tcp = false;
    ep->ip = xstrdup(ip);
    memcpy(key, k, strlen(k) + 1);
    *ret_pid = (pid_t)p;
    return 1;
}

int kernel_adopt(void *zctx, const char *dir, const struct kernel_opts *opts, struct kernel **ret,
                 struct error_record *err)
{
    struct endpoints ep = { 0 };
    struct kernel *k = xcalloc(1, sizeof(*k));
    pthread_mutex_init(&k->lock, NULL);
    k->pidfd = -1;
    k->adopted = true;
    k->interrupt_signal = true;
    jmsg_uuid(k->session);
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + opts->start_timeout;
    int r;
    while ((r = read_adopted(dir, &ep, k->key, &k->pid, err)) == 0) {
        if (now_usec(CLOCK_MONOTONIC) >= deadline) {
            r = error_set(err, ETIMEDOUT, "no kernel appeared in %s", dir);
            break;
        }
        usleep(2000);
    }
    if (r < 0) {
        kernel_free(k);
        return r;
    }
    k->dir = xstrdup(dir);
    /* Ours to signal (the same user) and to watch; its group is its own (a new session). */
    char proc[32];
    struct stat st;
    snprintf(proc, sizeof(proc), "/proc/%d", (int)k->pid);
    k->pidfd = (int)syscall(SYS_pidfd_open, k->pid, 0);
    if (k->pidfd < 0 || stat(proc, &st) < 0 || st.st_uid != geteuid()) {
        r = error_set(err, ESRCH, "the kernel process %d is not running as this user", (int)k->pid);
        goto fail;
    }
    r = connect_and_handshake(zctx, k, &ep, opts->start_timeout, err);
    if (r < 0)
        goto fail;
    free(ep.ip);
    *ret = k;
    return 0;
fail:
    free(ep.ip);
    kernel_free(k);
    return r;
}

int kernel_start(void *zctx, const struct kernelspec *ks, const struct kernel_opts *opts, struct kernel **ret,
                 struct error_record *err)
{
    _cleanup_free_ char *conn = NULL;
    struct endpoints ep = { .tcp = needs_tcp(ks->name), .ports = { 1, 2, 3, 4, 5 } };
    struct kernel *k = xcalloc(1, sizeof(*k));
    pthread_mutex_init(&k->lock, NULL);
    k->pidfd = -1;
    k->interrupt_signal = ks->interrupt_signal;
    k->late_output = streq(ks->name, "deno");
    jmsg_uuid(k->session);
    int r = random_hex(k->key, 32);
    if (r < 0) {
        error_set_errno(err, r, "cannot generate a key");
        goto fail;
    }
    k->dir = xasprintf("%s/kXXXXXX", opts->runtime_dir);
    if (!mkdtemp(k->dir)) {
        r = error_set_errno(err, errno, "cannot create a directory in %s", opts->runtime_dir);
        free(k->dir);
        k->dir = NULL;
        goto fail;
    }
    ep.ip = ep.tcp ? xstrdup("127.0.0.1") : xasprintf("%s/k", k->dir);
    if (ep.tcp && (r = pick_tcp_ports(ep.ports)) < 0) {
        error_set_errno(err, r, "cannot pick loopback ports");
        goto fail;
    }
    conn = xasprintf("%s/connection.json", k->dir);
    r = write_connection_file(conn, &ep, k->key, ks->name);
    if (r < 0) {
        error_set_errno(err, r, "cannot write %s", conn);
        goto fail;
    }
    r = spawn(ks, opts, conn, &k->pid, err);
    if (r < 0)
        goto fail;
    /* pidfds are always close-on-exec. Without one (old kernel, seccomp), kernel_alive() still
     * polls waitid() and kernel_next() notices a death within its timeout slice. */
    k->pidfd = (int)syscall(SYS_pidfd_open, k->pid, 0);

    r = connect_and_handshake(zctx, k, &ep, opts->start_timeout, err);
    if (r < 0)
        goto fail;
    free(ep.ip);
    *ret = k;
    return 0;
fail:
    free(ep.ip);
    kernel_free(k);
    return r;
}

bool kernel_late_output(const struct kernel *k)
{
    return k->late_output;
}
