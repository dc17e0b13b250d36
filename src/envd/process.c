/* process.Process: Start, Connect, List, SendInput, StreamInput, SendSignal, Update,
 * CloseStdin (e2b-compat 3.6), over a table of the processes envd started.
 *
 * Invariants (see process.h): waitpid runs under the table lock, and a child reaped before
 * its insertion leaves its status in early_exits for the spawner, so no exit status is lost.
 * Children are started vfork-style (spawn()) and make only raw system calls until execve. One pump thread per
 * process reads its output and hands events to each attached subscriber's queue; a full queue blocks the pump
 * (and so the process, through its pipe) for at most SUB_BLOCK_MAX, after which that subscriber is cut off
 * with resource_exhausted: a slow client bounds envd's memory instead of growing it. Output
 * while nobody is attached is dropped. A finished process keeps its start and end events for a
 * late Connect; at most RETAIN_MAX of them, for at most RETAIN_USEC. */
#include "envd/process.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/json-util.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define CHUNK_MAX (32u << 10)
#define SUB_QUEUE_BYTES (4u << 20)
#define SUB_QUEUE_LEN 1024
#define SUB_BLOCK_MAX (10 * USEC_PER_SEC)
#define RETAIN_MAX 64
#define RETAIN_USEC (10 * 60 * USEC_PER_SEC)
#define PROCS_MAX 4096
#define ARGS_MAX 65536
#define ENVS_MAX 4096
#define INPUT_WRITE_TIMEOUT_MS 10000
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char keepalive_json[] = "{\"event\":{\"keepalive\":{}}}";

struct sub;

struct proc {
    struct proc *next; /* the table */
    unsigned refs;     /* table, pump, subscribers and in-flight calls; under table_lock */
    pid_t pid;
    char *tag;
    json_t *config; /* ProcessConfig as requested, for List */
    bool is_pty;
    pthread_mutex_t in_lock; /* serializes input and CloseStdin */
    int in_fd;               /* stdin pipe or the pty master; -1 once closed */
    int pty_fd;              /* the pty master (for resize), -1 without a pty */
    int out_fd, err_fd;      /* owned by the pump */
    usec_t deadline;         /* CLOCK_MONOTONIC; USEC_INFINITY for none */
    bool killed_at_deadline;
    bool exited; /* reaped, wstatus valid */
    int wstatus;
    bool finished; /* end event built; no more output */
    json_t *end_event;
    usec_t finished_at;
    struct sub **subs;
    size_t n_subs, cap_subs;
};

struct sub {
    unsigned refs; /* the stream and a pump that is delivering; under table_lock */
    struct proc *proc;
    pthread_cond_t cond; /* queue changed: items added, taken, or closed */
    json_t **q;
    size_t head, len;
    size_t bytes;
    bool ended;      /* the end event is queued: after it, END */
    bool closed;     /* the stream is gone */
    bool overflowed; /* cut off for not reading */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t table_cond; /* a process exited; CLOCK_MONOTONIC */
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static struct proc *table;

static void table_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&table_cond, &a);
    pthread_condattr_destroy(&a);
}

static void lock_table(void)
{
    pthread_once(&table_once, table_init);
    pthread_mutex_lock(&table_lock);
}

static void cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

static struct timespec abs_mono(usec_t at)
{
    return (struct timespec){ .tv_sec = (time_t)(at / USEC_PER_SEC),
                              .tv_nsec = (long)(at % USEC_PER_SEC) * 1000 };
}

/* Waits on c until signalled or `at` (CLOCK_MONOTONIC, USEC_INFINITY for none). */
static void cond_wait_until(pthread_cond_t *c, usec_t at)
{
    if (at == USEC_INFINITY) {
        pthread_cond_wait(c, &table_lock);
    } else {
        struct timespec ts = abs_mono(at);
        pthread_cond_timedwait(c, &table_lock, &ts);
    }
}

void envd_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, envd_strv_free)

/* ---- procs and subscribers (table_lock held) ---- */

static void proc_unref_locked(struct proc *p)
{
    assert(p->refs > 0);
    if (--p->refs > 0)
        return;
    free(p->tag);
    json_decref(p->config);
    json_decref(p->end_event);
    safe_close(p->in_fd != p->pty_fd ? p->in_fd : -1);
    safe_close(p->pty_fd);
    safe_close(p->out_fd);
    safe_close(p->err_fd);
    pthread_mutex_destroy(&p->in_lock);
    free(p->subs);
    free(p);
}

static void table_remove_locked(struct proc *p)
{
    for (struct proc **pp = &table; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            p->next = NULL;
            proc_unref_locked(p);
            return;
        }
}

/* Drops finished processes beyond RETAIN_MAX or older than RETAIN_USEC (a finished process is
 * reaped: its pump reaped it, or waited for the main thread's reaper to). */
static void prune_locked(void)
{
    usec_t now = now_usec(CLOCK_MONOTONIC);
    size_t kept = 0;
    for (struct proc **pp = &table; *pp;) {
        struct proc *p = *pp;
        if (p->finished && p->exited && (kept >= RETAIN_MAX || now - p->finished_at > RETAIN_USEC)) {
            *pp = p->next;
            p->next = NULL;
            proc_unref_locked(p);
            continue;
        }
        if (p->finished)
            kept++;
        pp = &p->next;
    }
}

static void sub_unref_locked(struct sub *s)
{
    assert(s->refs > 0);
    if (--s->refs > 0)
        return;
    for (size_t i = 0; i < s->len; i++)
        json_decref(s->q[(s->head + i) % SUB_QUEUE_LEN]);
    free(s->q);
    pthread_cond_destroy(&s->cond);
    if (s->proc)
        proc_unref_locked(s->proc);
    free(s);
}

static size_t event_size(json_t *ev)
{
    /* Approximate: a data event's size is its base64 payload. */
    json_t *data = json_object_get(json_object_get(ev, "event"), "data");
    const char *k;
    json_t *v;
    size_t n = 64;
    json_object_foreach (data, k, v)
        n += json_string_length(v);
    return n;
}

/* Queues ev (a new reference is taken) on s, waiting up to SUB_BLOCK_MAX for room. */
static void sub_push_locked(struct sub *s, json_t *ev)
{
    size_t sz = event_size(ev);
    usec_t until = now_usec(CLOCK_MONOTONIC) + SUB_BLOCK_MAX;
    while (!s->closed && !s->overflowed &&
           (s->len == SUB_QUEUE_LEN || (s->len > 0 && s->bytes + sz > SUB_QUEUE_BYTES))) {
        if (now_usec(CLOCK_MONOTONIC) >= until) {
            s->overflowed = true;
            pthread_cond_broadcast(&s->cond);
            return;
        }
        cond_wait_until(&s->cond, until);
    }
    if (s->closed || s->overflowed)
        return;
    s->q[(s->head + s->len) % SUB_QUEUE_LEN] = json_incref(ev);
    s->len++;
    s->bytes += sz;
    pthread_cond_broadcast(&s->cond);
}

static struct sub *sub_new_locked(struct proc *p)
{
    struct sub *s = xcalloc(1, sizeof(*s));
    s->refs = 1;
    s->proc = p;
    p->refs++;
    s->q = xcalloc(SUB_QUEUE_LEN, sizeof(*s->q));
    cond_init_mono(&s->cond);
    return s;
}

static json_t *start_event(pid_t pid)
{
    json_t *j = json_pack("{s:{s:{s:I}}}", "event", "start", "pid", (json_int_t)pid);
    if (!j)
        abort();
    return j;
}

/* Attaches a new subscriber whose first event is start; a finished process replays its end. */
static struct sub *attach_locked(struct proc *p)
{
    struct sub *s = sub_new_locked(p);
    json_t *start = start_event(p->pid);
    sub_push_locked(s, start);
    json_decref(start);
    if (p->finished) {
        sub_push_locked(s, p->end_event);
        s->ended = true;
        return s;
    }
    if (p->n_subs == p->cap_subs) {
        p->cap_subs = p->cap_subs ? 2 * p->cap_subs : 4;
        p->subs = xreallocarray(p->subs, p->cap_subs, sizeof(*p->subs));
    }
    p->subs[p->n_subs++] = s;
    s->refs++; /* the proc's list */
    return s;
}

static void detach_locked(struct sub *s)
{
    struct proc *p = s->proc;
    for (size_t i = 0; i < p->n_subs; i++)
        if (p->subs[i] == s) {
            p->subs[i] = p->subs[--p->n_subs];
            sub_unref_locked(s);
            return;
        }
}

/* Hands ev to every attached subscriber; with `end`, detaches them all after it. */
static void deliver_locked(struct proc *p, json_t *ev, bool end)
{
    size_t n = p->n_subs;
    if (n == 0)
        return;
    /* Snapshot with references: pushing may wait and let the list change. */
    struct sub **snap = xreallocarray(NULL, n, sizeof(*snap));
    for (size_t i = 0; i < n; i++) {
        snap[i] = p->subs[i];
        snap[i]->refs++;
    }
    for (size_t i = 0; i < n; i++) {
        sub_push_locked(snap[i], ev);
        if (end) {
            snap[i]->ended = true;
            pthread_cond_broadcast(&snap[i]->cond);
        }
        if (snap[i]->overflowed)
            detach_locked(snap[i]);
    }
    if (end)
        while (p->n_subs > 0)
            detach_locked(p->subs[0]);
    for (size_t i = 0; i < n; i++)
        sub_unref_locked(snap[i]);
    free(snap);
}

/* ---- the stream of a subscriber (Start and Connect) ---- */

static enum connect_next sub_next(void *state, usec_t wait, json_t **ret_msg, struct connect_error *err)
{
    struct sub *s = state;
    lock_table();
    usec_t until = now_usec(CLOCK_MONOTONIC) + wait;
    for (;;) {
        if (s->len > 0) {
            json_t *ev = s->q[s->head];
            s->head = (s->head + 1) % SUB_QUEUE_LEN;
            s->len--;
            s->bytes -= MIN(s->bytes, event_size(ev));
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&table_lock);
            *ret_msg = ev;
            return CONNECT_NEXT_MESSAGE;
        }
        if (s->overflowed) {
            pthread_mutex_unlock(&table_lock);
            connect_error_set(err, CONNECT_RESOURCE_EXHAUSTED,
                              "client did not read the process output in time");
            return CONNECT_NEXT_ERROR;
        }
        if (s->ended) {
            pthread_mutex_unlock(&table_lock);
            return CONNECT_NEXT_END;
        }
        if (now_usec(CLOCK_MONOTONIC) >= until)
            break;
        cond_wait_until(&s->cond, until);
    }
    pthread_mutex_unlock(&table_lock);
    return CONNECT_NEXT_IDLE;
}

static void sub_free(void *state)
{
    struct sub *s = state;
    lock_table();
    s->closed = true;
    pthread_cond_broadcast(&s->cond);
    if (s->proc)
        detach_locked(s);
    sub_unref_locked(s);
    pthread_mutex_unlock(&table_lock);
}

static const struct connect_stream_ops sub_ops = {
    .next = sub_next,
    .free = sub_free,
    .keepalive_json = keepalive_json,
};

/* ---- events ---- */

const char *envd_go_signal_name(int sig)
{
    static const char *const names[] = {
        [SIGHUP] = "hangup",
        [SIGINT] = "interrupt",
        [SIGQUIT] = "quit",
        [SIGILL] = "illegal instruction",
        [SIGTRAP] = "trace/breakpoint trap",
        [SIGABRT] = "aborted",
        [SIGBUS] = "bus error",
        [SIGFPE] = "floating point exception",
        [SIGKILL] = "killed",
        [SIGUSR1] = "user defined signal 1",
        [SIGSEGV] = "segmentation fault",
        [SIGUSR2] = "user defined signal 2",
        [SIGPIPE] = "broken pipe",
        [SIGALRM] = "alarm clock",
        [SIGTERM] = "terminated",
        [SIGSTKFLT] = "stack fault",
        [SIGCHLD] = "child exited",
        [SIGCONT] = "continued",
        [SIGSTOP] = "stopped (signal)",
        [SIGTSTP] = "stopped",
        [SIGTTIN] = "stopped (tty input)",
        [SIGTTOU] = "stopped (tty output)",
        [SIGURG] = "urgent I/O condition",
        [SIGXCPU] = "CPU time limit exceeded",
        [SIGXFSZ] = "file size limit exceeded",
        [SIGVTALRM] = "virtual timer expired",
        [SIGPROF] = "profiling timer expired",
        [SIGWINCH] = "window changed",
        [SIGIO] = "I/O possible",
        [SIGPWR] = "power failure",
        [SIGSYS] = "bad system call",
    };
    if (sig <= 0 || (size_t)sig >= ARRAY_SIZE(names))
        return NULL;
    return names[sig];
}

json_t *envd_process_end_event(int wstatus)
{
    json_t *end = json_object();
    char status[96];
    if (WIFEXITED(wstatus)) {
        int code = WEXITSTATUS(wstatus);
        snprintf(status, sizeof(status), "exit status %d", code);
        if (code != 0)
            json_object_set_new(end, "exitCode", json_integer(code));
        json_object_set_new(end, "exited", json_true());
        json_object_set_new(end, "status", json_string(status));
        if (code != 0)
            json_object_set_new(end, "error", json_string(status));
    } else {
        int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
        const char *name = envd_go_signal_name(sig);
        char num[32];
        if (!name) {
            snprintf(num, sizeof(num), "signal %d", sig);
            name = num;
        }
        snprintf(status, sizeof(status), "signal: %s%s", name,
                 WIFSIGNALED(wstatus) && WCOREDUMP(wstatus) ? " (core dumped)" : "");
        json_object_set_new(end, "exitCode", json_integer(-1));
        json_object_set_new(end, "status", json_string(status));
        json_object_set_new(end, "error", json_string(status));
    }
    json_t *j = json_pack("{s:{s:o}}", "event", "end", end);
    if (!j)
        abort();
    return j;
}

static json_t *data_event(const char *stream, const void *data, size_t len)
{
    _cleanup_free_ char *b64 = base64_encode(data, len, true);
    /* base64 is ASCII by construction: jansson's UTF-8 check of each chunk (a pass over up to
     * 43 KiB) would find nothing. */
    json_t *j = json_pack("{s:{s:{s:o}}}", "event", "data", stream, json_string_nocheck(b64));
    if (!j)
        abort();
    return j;
}

/* ---- the pump ---- */

/* Reaps p's child if it has exited, so that the end event need not wait for the main thread's
 * turn on a busy CPU as well as the pump's, and so that no zombie of it is left once the end
 * event is out (a client that checks the pid right after it must find it gone). Under the
 * table lock, as the main thread's reaper (envd_process_reap) reaps under it: while p->exited
 * is false the pid is still this child's, and once it is true the reaper never sees the pid. */
static void reap_if_exited_locked(struct proc *p)
{
    int wstatus;
    if (p->exited || waitpid(p->pid, &wstatus, WNOHANG) != p->pid)
        return;
    p->exited = true;
    p->wstatus = wstatus;
    pthread_cond_broadcast(&table_cond);
}

static void *pump_main(void *arg)
{
    struct proc *p = arg;
    envd_as_root(); /* a thread inherits its creator's filesystem identity */
    struct pollfd fds[2];
    const char *names[2];
    int n = 0;
    if (p->is_pty) {
        fds[n] = (struct pollfd){ .fd = p->pty_fd, .events = POLLIN };
        names[n++] = "pty";
    } else {
        fds[n] = (struct pollfd){ .fd = p->out_fd, .events = POLLIN };
        names[n++] = "stdout";
        fds[n] = (struct pollfd){ .fd = p->err_fd, .events = POLLIN };
        names[n++] = "stderr";
    }
    _cleanup_free_ char *chunk = xmalloc(CHUNK_MAX);
    int open_fds = n;
    while (open_fds > 0) {
        int timeout = -1;
        if (p->deadline != USEC_INFINITY && !p->killed_at_deadline) {
            usec_t now = now_usec(CLOCK_MONOTONIC);
            if (now >= p->deadline) {
                kill(-p->pid, SIGKILL);
                p->killed_at_deadline = true;
            } else {
                timeout = (int)MIN((p->deadline - now + 999) / 1000, (usec_t)INT_MAX);
            }
        }
        int r = poll(fds, (nfds_t)n, timeout);
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; r > 0 && i < n; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t k = read(fds[i].fd, chunk, CHUNK_MAX);
            if (k < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (k <= 0) { /* EOF, or EIO from a pty whose other side is all closed */
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            json_t *ev = data_event(names[i], chunk, (size_t)k);
            lock_table();
            deliver_locked(p, ev, false);
            pthread_mutex_unlock(&table_lock);
            json_decref(ev);
        }
    }

    lock_table();
    reap_if_exited_locked(p);
    while (!p->exited) {
        if (p->deadline != USEC_INFINITY && !p->killed_at_deadline &&
            now_usec(CLOCK_MONOTONIC) >= p->deadline) {
            kill(-p->pid, SIGKILL);
            p->killed_at_deadline = true;
        }
        cond_wait_until(&table_cond, p->killed_at_deadline ? USEC_INFINITY : p->deadline);
    }
    p->end_event = envd_process_end_event(p->wstatus);
    p->finished = true;
    p->finished_at = now_usec(CLOCK_MONOTONIC);
    json_t *end = json_incref(p->end_event);
    deliver_locked(p, end, true);
    json_decref(end);
    pthread_mutex_unlock(&table_lock);

    /* A retained process keeps no descriptors. Not under the table lock: an input write may
     * hold in_lock for a while. The pump's reference keeps p alive. */
    pthread_mutex_lock(&p->in_lock);
    if (p->in_fd != p->pty_fd)
        safe_close(p->in_fd);
    p->in_fd = -1;
    p->pty_fd = safe_close(p->pty_fd);
    pthread_mutex_unlock(&p->in_lock);
    p->out_fd = safe_close(p->out_fd);
    p->err_fd = safe_close(p->err_fd);

    lock_table();
    prune_locked();
    proc_unref_locked(p);
    pthread_mutex_unlock(&table_lock);
    return NULL;
}

/* Gives up on a process that never got a pump: a Connect that attached to it in the meantime
 * gets an end (as for exit 127) instead of waiting forever, and the table lets it go. */
static void abandon_locked(struct proc *p)
{
    p->end_event = envd_process_end_event(127 << 8);
    p->finished = true;
    p->finished_at = now_usec(CLOCK_MONOTONIC);
    json_t *end = json_incref(p->end_event);
    deliver_locked(p, end, true);
    json_decref(end);
    table_remove_locked(p);
}

/* ---- reaping ---- */

/* Exit statuses of children reaped while not in the table, numbered by reap_seq: a child exits
 * between spawn() and its insertion (or is an orphan that envd as pid 1 adopted). A spawner
 * claims an entry only if it was recorded after its spawn began: the pid cannot have been
 * reaped for anyone else since then, because it was the new child's all along. */
#define EARLY_EXITS 1024
static struct {
    pid_t pid;
    int wstatus;
    uint64_t seq;
} early_exits[EARLY_EXITS];
static uint64_t reap_seq;

static void claim_early_exit_locked(struct proc *p, uint64_t since)
{
    for (size_t i = 0; i < EARLY_EXITS; i++)
        if (early_exits[i].seq > since && early_exits[i].pid == p->pid) {
            p->exited = true;
            p->wstatus = early_exits[i].wstatus;
            early_exits[i].pid = 0;
            log_debug("pid %d was reaped before its insertion", (int)p->pid);
            return;
        }
}

void envd_process_reap(void)
{
    lock_table();
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0)
            break;
        bool known = false;
        for (struct proc *p = table; p; p = p->next)
            if (p->pid == pid && !p->exited) {
                p->exited = true;
                p->wstatus = st;
                pthread_cond_broadcast(&table_cond);
                known = true;
                break;
            }
        if (!known) {
            reap_seq++;
            early_exits[reap_seq % EARLY_EXITS].pid = pid;
            early_exits[reap_seq % EARLY_EXITS].wstatus = st;
            early_exits[reap_seq % EARLY_EXITS].seq = reap_seq;
        }
    }
    pthread_mutex_unlock(&table_lock);
}

void envd_process_kill_all(void)
{
    lock_table();
    for (struct proc *p = table; p; p = p->next)
        if (!p->finished)
            kill(-p->pid, SIGKILL);
    pthread_mutex_unlock(&table_lock);
}

size_t envd_process_running(void)
{
    size_t n = 0;
    lock_table();
    for (struct proc *p = table; p; p = p->next)
        if (!p->exited)
            n++;
    pthread_mutex_unlock(&table_lock);
    return n;
}

/* ---- request parsing ---- */

char **envd_process_build_env(const struct envd_user *user, const char *path, const json_t *sandbox_envs,
                              const json_t *req_envs, int *ret_err)
{
    size_t cap = 4 + json_object_size(sandbox_envs) + json_object_size(req_envs) + 1;
    _cleanup_(envd_strv_freep) char **env = xcalloc(cap, sizeof(char *));
    size_t n = 0;
    const char *base[][2] = {
        { "PATH", path && *path ? path : DEFAULT_PATH },
        { "HOME", user->home },
        { "USER", user->name },
        { "LOGNAME", user->name },
    };
    const json_t *layers[] = { sandbox_envs, req_envs };
    for (size_t i = 0; i < ARRAY_SIZE(base); i++)
        env[n++] = xasprintf("%s=%s", base[i][0], base[i][1]);
    for (size_t l = 0; l < ARRAY_SIZE(layers); l++) {
        const char *k;
        json_t *v;
        json_object_foreach ((json_t *)layers[l], k, v) {
            if (!*k || strchr(k, '=') || !json_is_string(v) ||
                memchr(json_string_value(v), '\0', json_string_length(v))) {
                *ret_err = -EINVAL;
                return NULL;
            }
            char *kv = xasprintf("%s=%s", k, json_string_value(v));
            size_t klen = strlen(k);
            size_t j;
            for (j = 0; j < n; j++)
                if (strncmp(env[j], kv, klen + 1) == 0)
                    break;
            if (j < n) {
                free(env[j]);
                env[j] = kv;
            } else {
                env[n++] = kv;
            }
        }
    }
    return TAKE_PTR(env);
}

static int get_selector(const json_t *req, pid_t *ret_pid, const char **ret_tag, struct connect_error *err)
{
    json_t *sel = json_object_get(req, "process");
    if (!json_is_object(sel))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "process selector is required");
    json_t *pid = json_object_get(sel, "pid");
    json_t *tag = json_object_get(sel, "tag");
    if (pid && !json_is_null(pid)) {
        uint32_t v;
        if (json_is_integer(pid) && json_integer_value(pid) >= 0 && json_integer_value(pid) <= UINT32_MAX)
            v = (uint32_t)json_integer_value(pid);
        else if (!json_is_string(pid) || parse_uint32(json_string_value(pid), &v) < 0)
            return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "invalid pid");
        *ret_pid = (pid_t)v;
        *ret_tag = NULL;
        return 0;
    }
    if (json_is_string(tag)) {
        *ret_pid = 0;
        *ret_tag = json_string_value(tag);
        return 0;
    }
    return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "process selector needs a pid or a tag");
}

/* Finds a process by selector and takes a reference; running ones first, then (when
 * include_finished) retained finished ones. */
static struct proc *find_locked(pid_t pid, const char *tag, bool include_finished)
{
    for (int pass = 0; pass < (include_finished ? 2 : 1); pass++)
        for (struct proc *p = table; p; p = p->next) {
            if (p->finished != (pass == 1))
                continue;
            if (tag ? (p->tag && streq(p->tag, tag)) : p->pid == pid) {
                p->refs++;
                return p;
            }
        }
    return NULL;
}

static int lookup(const json_t *req, bool include_finished, struct proc **ret, struct connect_error *err)
{
    pid_t pid = 0;
    const char *tag;
    if (get_selector(req, &pid, &tag, err) < 0)
        return -1;
    lock_table();
    prune_locked();
    struct proc *p = find_locked(pid, tag, include_finished);
    pthread_mutex_unlock(&table_lock);
    if (!p) {
        if (tag)
            return connect_error_set(err, CONNECT_NOT_FOUND, "process with tag %.100s not found", tag);
        return connect_error_set(err, CONNECT_NOT_FOUND, "process with pid %u not found", (unsigned)pid);
    }
    *ret = p;
    return 0;
}

static void proc_unref(struct proc *p)
{
    lock_table();
    proc_unref_locked(p);
    pthread_mutex_unlock(&table_lock);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct proc *, proc_unref)

static int get_pty_size(const json_t *pty, struct winsize *ws, struct connect_error *err)
{
    json_t *size = json_object_get(pty, "size");
    *ws = (struct winsize){ .ws_col = 80, .ws_row = 24 };
    if (!size || json_is_null(size))
        return 0;
    if (!json_is_object(size))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "pty.size must be an object");
    const char *keys[] = { "cols", "rows" };
    unsigned short *dst[] = { &ws->ws_col, &ws->ws_row };
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(size, keys[i]);
        if (!v || json_is_null(v))
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
            return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "invalid pty.size.%s", keys[i]);
        *dst[i] = (unsigned short)json_integer_value(v);
    }
    return 0;
}

/* Decodes a ProcessInput: exactly one of stdin and pty, base64. */
static int get_input(const json_t *input, bool *ret_pty, unsigned char **ret, size_t *ret_len,
                     struct connect_error *err)
{
    if (!json_is_object(input))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "input is required");
    json_t *v = json_object_get(input, "stdin");
    bool pty = false;
    if (!v || json_is_null(v)) {
        v = json_object_get(input, "pty");
        pty = true;
    }
    if (!v || json_is_null(v)) {
        *ret = NULL;
        *ret_len = 0;
        *ret_pty = false;
        return 0;
    }
    if (!json_is_string(v) || base64_decode(json_string_value(v), json_string_length(v), ret, ret_len) < 0)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "input is not valid base64");
    *ret_pty = pty;
    return 0;
}

/* ---- Start ---- */

struct spawn_plan {
    char *file;  /* resolved executable */
    char **argv; /* NULL-terminated */
    char **envp;
    char *cwd;
    struct envd_user user;
    bool switch_user;
    int in_r, out_w, err_w; /* child ends; in_r may be /dev/null */
    int pty_slave;
};

struct spawn_args {
    const struct spawn_plan *pl;
    int errpipe;
};

static void plan_release(struct spawn_plan *pl)
{
    free(pl->file);
    envd_strv_free(pl->argv);
    envd_strv_free(pl->envp);
    free(pl->cwd);
    safe_close(pl->in_r);
    safe_close(pl->out_w);
    safe_close(pl->err_w);
    safe_close(pl->pty_slave);
}

static char *find_executable(const char *cmd, char **envp)
{
    if (strchr(cmd, '/'))
        return xstrdup(cmd);
    const char *path = DEFAULT_PATH;
    for (char **e = envp; *e; e++)
        if (str_startswith(*e, "PATH="))
            path = *e + 5;
    for (const char *p = path;;) {
        size_t n = strcspn(p, ":");
        _cleanup_free_ char *cand = n ? xasprintf("%.*s/%s", (int)n, p, cmd) : xasprintf("./%s", cmd);
        if (access(cand, X_OK) == 0)
            return TAKE_PTR(cand);
        if (!p[n])
            break;
        p += n + 1;
    }
    return xstrdup(cmd); /* execve reports ENOENT */
}

/* The kernel's struct sigaction (x86-64 and arm64 alike), for raw rt_sigaction. */
struct kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

/* Child code is not instrumented by ASan: its stack redzones would be written to shadow memory
 * that envd shares with the child, and outlive the stack. */
#define CHILD_CODE __attribute__((no_sanitize_address, noinline))

CHILD_CODE static int raw_dup2(int from, int to)
{
    if (from == to) /* dup3 refuses this; the fd only needs to lose CLOEXEC */
        return (int)syscall(SYS_fcntl, to, F_SETFD, 0);
    return (int)syscall(SYS_dup3, from, to, 0);
}

/* The child of spawn(): it shares envd's memory until execve (CLONE_VM | CLONE_VFORK), with
 * envd's thread suspended. So it makes raw system calls only: no libc state, no locks, no
 * sanitizer interceptors (which could touch state shared with the parent), no allocation. */
CHILD_CODE static int child_main(void *arg)
{
    const struct spawn_args *a = arg;
    const struct spawn_plan *pl = a->pl;
    struct kernel_sigaction dfl = { .handler = SIG_DFL };
    uint64_t none = 0;
    /* ignored signals would stay ignored across exec; handled ones are reset by it */
    for (int sig = 1; sig <= 64; sig++)
        syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(uint64_t));
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(uint64_t)) < 0 ||
        syscall(SYS_setsid) < 0)
        goto fail;
    if (pl->pty_slave >= 0) {
        if (syscall(SYS_ioctl, pl->pty_slave, TIOCSCTTY, 0) < 0)
            goto fail;
        for (int fd = 0; fd < 3; fd++)
            if (raw_dup2(pl->pty_slave, fd) < 0)
                goto fail;
    } else if (raw_dup2(pl->in_r, 0) < 0 || raw_dup2(pl->out_w, 1) < 0 || raw_dup2(pl->err_w, 2) < 0) {
        goto fail;
    }
    if (pl->switch_user) {
        if (syscall(SYS_setgroups, (size_t)pl->user.n_groups, pl->user.groups) < 0 ||
            syscall(SYS_setresgid, pl->user.gid, pl->user.gid, pl->user.gid) < 0 ||
            syscall(SYS_setresuid, pl->user.uid, pl->user.uid, pl->user.uid) < 0)
            goto fail;
    }
    if (syscall(SYS_chdir, pl->cwd) < 0)
        goto fail;
    /* errpipe is CLOEXEC; everything else but 0, 1, 2 must not leak into the child. */
    if (a->errpipe > 3)
        syscall(SYS_close_range, 3u, (unsigned)a->errpipe - 1, 0u);
    syscall(SYS_close_range, (unsigned)a->errpipe + 1, ~0u, 0u);
    syscall(SYS_execve, pl->file, pl->argv, pl->envp);
fail:;
    int e = errno; /* glibc's syscall() sets it, in the suspended parent thread's TLS */
    syscall(SYS_write, a->errpipe, &e, sizeof(e));
    syscall(SYS_exit_group, 127);
    return 127;
}

/* Starts the child as vfork does (no copy of envd's address space, no copy-on-write faults
 * afterwards), with its own stack. Returns the pid or -errno. */
static pid_t spawn(const struct spawn_plan *pl, int errpipe)
{
    const size_t stack_size = 256u << 10;
    void *stack =
        mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return -errno;
    struct spawn_args a = { .pl = pl, .errpipe = errpipe };
    pid_t pid = clone(child_main, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    int e = errno;
#ifdef __SANITIZE_ADDRESS__
    /* Whatever the clone wrapper left in the shadow of the stack must not outlive it. */
    __asan_unpoison_memory_region(stack, stack_size);
#endif
    munmap(stack, stack_size);
    return pid < 0 ? -e : pid;
}

static int build_plan(struct connect_call *call, const json_t *req, struct spawn_plan *pl, struct winsize *ws,
                      bool *ret_pty, bool *ret_stdin, struct connect_error *err)
{
    const json_t *proc = json_object_get(req, "process");
    if (!json_is_object(proc))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "process is required");
    const char *cmd = json_get_string(proc, "cmd");
    if (!cmd || !*cmd)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "process.cmd is required");
    json_t *args = json_object_get(proc, "args");
    if (args && !json_is_null(args) && (!json_is_array(args) || json_array_size(args) > ARGS_MAX))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "process.args must be an array of strings");
    json_t *envs = json_object_get(proc, "envs");
    if (envs && json_is_null(envs))
        envs = NULL;
    if (envs && (!json_is_object(envs) || json_object_size(envs) > ENVS_MAX))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "process.envs must be an object of strings");
    json_t *cwd = json_object_get(proc, "cwd");
    if (cwd && !json_is_null(cwd) && !json_is_string(cwd))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "process.cwd must be a string");
    json_t *pty = json_object_get(req, "pty");
    *ret_pty = pty && !json_is_null(pty);
    if (*ret_pty && !json_is_object(pty))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "pty must be an object");
    if (*ret_pty && get_pty_size(pty, ws, err) < 0)
        return -1;
    json_t *in = json_object_get(req, "stdin");
    if (in && !json_is_null(in) && !json_is_boolean(in))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "stdin must be a boolean");
    *ret_stdin = !in || json_is_null(in) || json_is_true(in); /* absent means open */
    json_t *tag = json_object_get(req, "tag");
    if (tag && !json_is_null(tag) && !json_is_string(tag))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "tag must be a string");

    if (envd_request_user(call->conn, &pl->user, err) < 0)
        return -1;
    if (geteuid() == 0)
        pl->switch_user = true;
    else if (pl->user.uid != geteuid())
        return connect_error_set(err, CONNECT_PERMISSION_DENIED, "envd is not root: cannot run as '%s'",
                                 pl->user.name);

    struct error_record e;
    if (envd_resolve_path(&pl->user, cwd ? json_string_value(cwd) : NULL, &pl->cwd, &e) < 0)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "invalid cwd: %s", e.msg);
    struct stat st;
    if (stat(pl->cwd, &st) < 0 || !S_ISDIR(st.st_mode))
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "cwd '%s' does not exist", pl->cwd);

    size_t nargs = json_array_size(args);
    pl->argv = xcalloc(nargs + 2, sizeof(char *));
    pl->argv[0] = xstrdup(cmd);
    for (size_t i = 0; i < nargs; i++) {
        json_t *a = json_array_get(args, i);
        if (!json_is_string(a) || memchr(json_string_value(a), '\0', json_string_length(a)))
            return connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                     "process.args must be an array of strings");
        pl->argv[i + 1] = xstrdup(json_string_value(a));
    }
    _cleanup_json_ json_t *sandbox_envs = envd_settings_env_vars();
    int r = 0;
    pl->envp = envd_process_build_env(&pl->user, getenv("PATH"), sandbox_envs, envs, &r);
    if (!pl->envp)
        return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "invalid env var in process.envs");
    pl->file = find_executable(cmd, pl->envp);
    return 0;
}

static int open_pty(struct spawn_plan *pl, const struct winsize *ws, int *ret_master,
                    struct connect_error *err)
{
    _cleanup_close_ int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    char name[128];
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof(name)) != 0)
        return connect_error_set(err, CONNECT_INTERNAL, "cannot open a pty: %s", errno_to_string(errno));
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0)
        return connect_error_set(err, CONNECT_INTERNAL, "cannot open %s: %s", name, errno_to_string(errno));
    pl->pty_slave = s;
    ioctl(m, TIOCSWINSZ, ws);
    if (pl->switch_user && fchown(s, pl->user.uid, (gid_t)-1) < 0)
        return connect_error_set(err, CONNECT_INTERNAL, "cannot chown %s: %s", name, errno_to_string(errno));
    *ret_master = TAKE_FD(m);
    return 0;
}

static int start_stream(struct connect_call *call, json_t *req, const struct connect_stream_ops **ret_ops,
                        void **ret_state, struct connect_error *err)
{
    struct spawn_plan pl = { .in_r = -1, .out_w = -1, .err_w = -1, .pty_slave = -1 };
    _cleanup_close_ int master = -1, in_w = -1, out_r = -1, err_r = -1, errpipe_r = -1, errpipe_w = -1;
    struct winsize ws;
    bool is_pty = false, want_stdin = false;
    int rc = -1;

    if (build_plan(call, req, &pl, &ws, &is_pty, &want_stdin, err) < 0)
        goto out;
    if (is_pty) {
        if (open_pty(&pl, &ws, &master, err) < 0)
            goto out;
    } else {
        int p[2];
        if (want_stdin) {
            if (pipe2(p, O_CLOEXEC) < 0)
                goto fail_errno;
            pl.in_r = p[0];
            in_w = p[1];
        } else if ((pl.in_r = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
            goto fail_errno;
        }
        if (pipe2(p, O_CLOEXEC) < 0)
            goto fail_errno;
        out_r = p[0];
        pl.out_w = p[1];
        if (pipe2(p, O_CLOEXEC) < 0)
            goto fail_errno;
        err_r = p[0];
        pl.err_w = p[1];
    }
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0)
        goto fail_errno;
    errpipe_r = ep[0];
    errpipe_w = ep[1];

    struct proc *p = xcalloc(1, sizeof(*p));
    p->refs = 1; /* the table */
    p->is_pty = is_pty;
    p->in_fd = p->pty_fd = p->out_fd = p->err_fd = -1;
    pthread_mutex_init(&p->in_lock, NULL);
    json_t *tag = json_object_get(req, "tag");
    p->tag = json_is_string(tag) ? xstrdup(json_string_value(tag)) : NULL;
    p->config = json_deep_copy(json_object_get(req, "process"));
    p->deadline = call->has_timeout && call->timeout_ms > 0 ? call->deadline : USEC_INFINITY;

    lock_table();
    size_t running = 0;
    for (struct proc *q = table; q; q = q->next)
        running += !q->finished;
    if (running >= PROCS_MAX) {
        pthread_mutex_unlock(&table_lock);
        proc_unref(p);
        connect_error_set(err, CONNECT_RESOURCE_EXHAUSTED, "too many processes");
        goto out;
    }
    uint64_t seq = reap_seq;
    pthread_mutex_unlock(&table_lock);

    /* Not under the table lock: this thread waits here until the child has exec'd. */
    pid_t pid = spawn(&pl, errpipe_w);
    if (pid < 0) {
        proc_unref(p);
        connect_error_set(err, CONNECT_INTERNAL, "cannot start a process: %s", errno_to_string(-pid));
        goto out;
    }
    lock_table();
    p->pid = pid;
    p->next = table;
    table = p;
    /* The reaper may have been quicker than this insertion. */
    claim_early_exit_locked(p, seq);
    pthread_mutex_unlock(&table_lock);

    /* The child's ends belong to it now. */
    plan_release(&pl);
    pl = (struct spawn_plan){ .in_r = -1, .out_w = -1, .err_w = -1, .pty_slave = -1 };
    errpipe_w = safe_close(errpipe_w);
    int child_errno = 0;
    ssize_t k;
    do
        k = read(errpipe_r, &child_errno, sizeof(child_errno));
    while (k < 0 && errno == EINTR);
    if (k > 0) {
        lock_table();
        abandon_locked(p); /* the reaper collects the child's _exit(127) */
        pthread_mutex_unlock(&table_lock);
        connect_error_set(err, CONNECT_INTERNAL, "error starting process '%s': %s",
                          json_get_string(json_object_get(req, "process"), "cmd"),
                          errno_to_string(child_errno));
        goto out;
    }

    if (is_pty) {
        p->pty_fd = TAKE_FD(master);
        p->in_fd = p->pty_fd;
        fcntl(p->pty_fd, F_SETFL, fcntl(p->pty_fd, F_GETFL) | O_NONBLOCK);
    } else {
        p->in_fd = TAKE_FD(in_w);
        if (p->in_fd >= 0)
            fcntl(p->in_fd, F_SETFL, fcntl(p->in_fd, F_GETFL) | O_NONBLOCK);
        p->out_fd = TAKE_FD(out_r);
        p->err_fd = TAKE_FD(err_r);
    }

    lock_table();
    struct sub *s = attach_locked(p);
    p->refs++; /* the pump */
    pthread_mutex_unlock(&table_lock);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256u << 10);
    pthread_t t;
    int e = pthread_create(&t, &attr, pump_main, p);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        /* Without a pump nobody reads its output: kill it rather than leave it hanging. */
        log_error("cannot start the output thread of pid %d: %s", (int)pid, errno_to_string(e));
        kill(-pid, SIGKILL);
        sub_free(s);
        lock_table();
        proc_unref_locked(p);
        abandon_locked(p);
        pthread_mutex_unlock(&table_lock);
        connect_error_set(err, CONNECT_INTERNAL, "cannot start the output thread");
        goto out;
    }
    log_debug("started pid %d (%s)", (int)pid, json_string_value(json_object_get(p->config, "cmd")));
    *ret_ops = &sub_ops;
    *ret_state = s;
    rc = 0;
    goto out;

fail_errno:
    connect_error_set(err, CONNECT_INTERNAL, "cannot set up the process's stdio: %s", errno_to_string(errno));
out:
    plan_release(&pl);
    return rc;
}

/* ---- Connect ---- */

static int connect_stream(struct connect_call *call, json_t *req, const struct connect_stream_ops **ret_ops,
                          void **ret_state, struct connect_error *err)
{
    struct proc *p;
    if (lookup(req, true, &p, err) < 0)
        return -1;
    lock_table();
    struct sub *s = attach_locked(p);
    proc_unref_locked(p); /* the subscriber holds its own */
    pthread_mutex_unlock(&table_lock);
    *ret_ops = &sub_ops;
    *ret_state = s;
    return 0;
}

/* ---- unary calls ---- */

static int list_call(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err)
{
    json_t *arr = json_array();
    lock_table();
    for (struct proc *p = table; p; p = p->next) {
        if (p->finished)
            continue;
        json_t *info = json_pack("{s:O, s:I}", "config", p->config, "pid", (json_int_t)p->pid);
        if (!info)
            abort();
        if (p->tag)
            json_object_set_new(info, "tag", json_string(p->tag));
        json_array_append_new(arr, info);
    }
    pthread_mutex_unlock(&table_lock);
    *ret_resp = json_pack("{s:o}", "processes", arr);
    return 0;
}

/* Writes all of data to the process's input, waiting up to INPUT_WRITE_TIMEOUT_MS for room. */
static int write_input(struct proc *p, bool pty, const unsigned char *data, size_t len,
                       struct connect_error *err)
{
    if (pty != p->is_pty)
        return connect_error_set(err, CONNECT_FAILED_PRECONDITION,
                                 pty ? "process is not a pty" : "process is a pty: send pty input");
    pthread_mutex_lock(&p->in_lock);
    int rc = 0;
    usec_t until = now_usec(CLOCK_MONOTONIC) + INPUT_WRITE_TIMEOUT_MS * USEC_PER_MSEC;
    if (p->in_fd < 0) {
        rc = connect_error_set(err, CONNECT_FAILED_PRECONDITION, "stdin not enabled or closed");
        goto out;
    }
    for (size_t off = 0; off < len;) {
        ssize_t k = write(p->in_fd, data + off, len - off);
        if (k > 0) {
            off += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN) {
            usec_t now = now_usec(CLOCK_MONOTONIC);
            if (now >= until) {
                rc =
                    connect_error_set(err, CONNECT_DEADLINE_EXCEEDED, "the process is not reading its input");
                goto out;
            }
            struct pollfd pfd = { .fd = p->in_fd, .events = POLLOUT };
            poll(&pfd, 1, (int)((until - now + 999) / 1000));
            continue;
        }
        rc = connect_error_set(err, CONNECT_FAILED_PRECONDITION, "cannot write input: %s",
                               errno_to_string(k < 0 ? errno : EIO));
        goto out;
    }
out:
    pthread_mutex_unlock(&p->in_lock);
    return rc;
}

static int send_input_call(struct connect_call *call, json_t *req, json_t **ret_resp,
                           struct connect_error *err)
{
    _cleanup_(proc_unrefp) struct proc *p = NULL;
    bool pty;
    _cleanup_free_ unsigned char *data = NULL;
    size_t len;
    if (get_input(json_object_get(req, "input"), &pty, &data, &len, err) < 0)
        return -1;
    if (lookup(req, false, &p, err) < 0)
        return -1;
    if (data && write_input(p, pty, data, len, err) < 0)
        return -1;
    *ret_resp = json_object();
    return 0;
}

static int parse_signal(json_t *v, int *ret, struct connect_error *err)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (streq(s, "SIGNAL_SIGKILL"))
            *ret = SIGKILL;
        else if (streq(s, "SIGNAL_SIGTERM"))
            *ret = SIGTERM;
        else if (streq(s, "SIGNAL_UNSPECIFIED"))
            *ret = 0;
        else
            return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "invalid signal %.64s", s);
        return 0;
    }
    if (json_is_integer(v)) {
        *ret = (int)MIN(MAX(json_integer_value(v), -1), 1000);
        return 0;
    }
    if (!v || json_is_null(v)) {
        *ret = 0;
        return 0;
    }
    return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "invalid signal");
}

static int send_signal_call(struct connect_call *call, json_t *req, json_t **ret_resp,
                            struct connect_error *err)
{
    _cleanup_(proc_unrefp) struct proc *p = NULL;
    int sig = 0;
    if (parse_signal(json_object_get(req, "signal"), &sig, err) < 0)
        return -1;
    if (lookup(req, false, &p, err) < 0)
        return -1;
    if (sig != SIGKILL && sig != SIGTERM)
        return connect_error_set(err, CONNECT_UNIMPLEMENTED, "invalid signal: %d", sig);
    lock_table();
    /* Signal its whole process group (it runs in its own session, so a background job that
     * holds its output goes too). The group id stays reserved while any member lives, so this
     * is safe even after the leader was reaped; the leader alone only while it is unreaped. */
    if (kill(-p->pid, sig) < 0 && !p->exited)
        kill(p->pid, sig);
    pthread_mutex_unlock(&table_lock);
    *ret_resp = json_object();
    return 0;
}

static int update_call(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err)
{
    _cleanup_(proc_unrefp) struct proc *p = NULL;
    json_t *pty = json_object_get(req, "pty");
    struct winsize ws;
    if (pty && !json_is_null(pty) && (!json_is_object(pty) || get_pty_size(pty, &ws, err) < 0))
        return pty && json_is_object(pty) ? -1
                                          : connect_error_set(err, CONNECT_INVALID_ARGUMENT, "invalid pty");
    if (lookup(req, false, &p, err) < 0)
        return -1;
    if (pty && !json_is_null(pty)) {
        if (!p->is_pty)
            return connect_error_set(err, CONNECT_FAILED_PRECONDITION, "process is not a pty");
        pthread_mutex_lock(&p->in_lock);
        int r = p->pty_fd >= 0 ? ioctl(p->pty_fd, TIOCSWINSZ, &ws) : -1;
        int e = errno;
        pthread_mutex_unlock(&p->in_lock);
        if (r < 0)
            return connect_error_set(err, CONNECT_INTERNAL, "cannot resize the pty: %s", errno_to_string(e));
    }
    *ret_resp = json_object();
    return 0;
}

static int close_stdin_call(struct connect_call *call, json_t *req, json_t **ret_resp,
                            struct connect_error *err)
{
    _cleanup_(proc_unrefp) struct proc *p = NULL;
    if (lookup(req, false, &p, err) < 0)
        return -1;
    if (p->is_pty)
        return connect_error_set(err, CONNECT_FAILED_PRECONDITION,
                                 "cannot close stdin of a pty: send Ctrl-D (0x04) instead");
    pthread_mutex_lock(&p->in_lock);
    p->in_fd = safe_close(p->in_fd);
    pthread_mutex_unlock(&p->in_lock);
    *ret_resp = json_object();
    return 0;
}

/* ---- StreamInput (client streaming) ---- */

struct input_stream {
    struct proc *proc;
};

static int input_message(void *state, json_t *msg, struct connect_error *err)
{
    struct input_stream *s = state;
    json_t *start = json_object_get(msg, "start");
    json_t *data = json_object_get(msg, "data");
    if (start && !json_is_null(start)) {
        if (s->proc)
            return connect_error_set(err, CONNECT_INVALID_ARGUMENT, "start sent twice");
        return lookup(start, false, &s->proc, err);
    }
    if (data && !json_is_null(data)) {
        if (!s->proc)
            return connect_error_set(err, CONNECT_FAILED_PRECONDITION, "data before start");
        bool pty;
        _cleanup_free_ unsigned char *bytes = NULL;
        size_t len;
        if (get_input(json_object_get(data, "input"), &pty, &bytes, &len, err) < 0)
            return -1;
        return bytes ? write_input(s->proc, pty, bytes, len, err) : 0;
    }
    return 0; /* keepalive, or an empty event */
}

static int input_finish(void *state, json_t **ret_resp, struct connect_error *err)
{
    *ret_resp = json_object();
    return 0;
}

static void input_free(void *state)
{
    struct input_stream *s = state;
    if (s->proc)
        proc_unref(s->proc);
    free(s);
}

static const struct connect_client_stream_ops input_ops = {
    .message = input_message,
    .finish = input_finish,
    .free = input_free,
};

static int stream_input_open(struct connect_call *call, const struct connect_client_stream_ops **ret_ops,
                             void **ret_state, struct connect_error *err)
{
    *ret_ops = &input_ops;
    *ret_state = xcalloc(1, sizeof(struct input_stream));
    return 0;
}

const struct connect_method envd_process_methods[] = {
    { .path = "/process.Process/Start", .stream = start_stream },
    { .path = "/process.Process/Connect", .stream = connect_stream },
    { .path = "/process.Process/List", .unary = list_call },
    { .path = "/process.Process/SendInput", .unary = send_input_call },
    { .path = "/process.Process/StreamInput", .client_stream = stream_input_open },
    { .path = "/process.Process/SendSignal", .unary = send_signal_call },
    { .path = "/process.Process/Update", .unary = update_call },
    { .path = "/process.Process/CloseStdin", .unary = close_stdin_call },
    { .path = NULL },
};
