/* See orchestrator.h. */
#include "orchestrator/orchestrator.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/file-signature.h"
#include "common/fs-util.h"
#include "common/json-util.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "template/layer.h"
#include "common/banned.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

const unsigned orch_create_bucket_ms[ORCH_CREATE_BUCKETS] = { 10,  25,   50,   100,  250,
                                                              500, 1000, 2500, 5000, 10000 };

static void count_create(struct orch *o, bool ok, usec_t took)
{
    size_t b = 0;
    while (b < ORCH_CREATE_BUCKETS && took > (usec_t)orch_create_bucket_ms[b] * USEC_PER_MSEC)
        b++;
    pthread_mutex_lock(&o->lock);
    if (ok) {
        o->creates++;
        o->create_bucket[b]++;
        o->create_usec_sum += took;
    } else {
        o->create_failures++;
    }
    pthread_mutex_unlock(&o->lock);
}

void orch_get_metrics(struct orch *o, struct orch_metrics *ret)
{
    *ret = (struct orch_metrics){ 0 };
    pthread_mutex_lock(&o->lock);
    for (struct sandbox *s = o->sandboxes; s; s = s->next)
        ret->paused += s->paused;
    ret->running = o->n_sandboxes - ret->paused;
    ret->creating = o->n_creating;
    ret->pooled = o->n_pooled;
    ret->pool_hits = o->pool_hits;
    ret->creates = o->creates;
    ret->create_failures = o->create_failures;
    ret->timeouts = o->timeouts;
    uint64_t cum = 0;
    for (size_t b = 0; b <= ORCH_CREATE_BUCKETS; b++) {
        cum += o->create_bucket[b];
        ret->create_bucket[b] = cum;
    }
    ret->create_seconds_sum = (double)o->create_usec_sum / (double)USEC_PER_SEC;
    pthread_mutex_unlock(&o->lock);
}

static int64_t now_ms(void)
{
    return (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC);
}

/* ---- references ---- */

static struct sandbox *find_locked(struct orch *o, const char *id)
{
    for (struct sandbox *s = o->sandboxes; s; s = s->next)
        if (streq(s->id, id))
            return s;
    return NULL;
}

/* Takes a reference to a running sandbox, or NULL. */
static struct sandbox *sandbox_get(struct orch *o, const char *id)
{
    pthread_mutex_lock(&o->lock);
    struct sandbox *s = find_locked(o, id);
    if (s)
        s->refs++;
    pthread_mutex_unlock(&o->lock);
    return s;
}

static void sandbox_free(struct orch *o, struct sandbox *s)
{
    if (s->rt)
        o->cfg.runtime->destroy(s->rt);
    /* Only now, with the sandbox gone, may another one use its uid range. */
    safe_close(s->slot_fd);
    orch_envd_conn_free(s->pool_conn);
    orch_logs_sink_unref(s->log);
    /* Its saved layers (from pauses) are unused once its record is gone too. */
    bool saved = s->saved;
    for (size_t i = 0; i < s->stack.n && !saved; i++)
        saved = str_startswith(s->stack.ids[i], "s-");
    if (saved && s->gone) {
        struct error_record e = { 0 };
        orch_stack_release(&s->stack);
        orch_layers_gc(o, &e);
    }
    orch_template_free(s->tpl);
    orch_metrics_ring_free(s->metrics);
    orch_stack_release(&s->stack);
    json_decref(s->env_vars);
    json_decref(s->allow_out);
    json_decref(s->deny_out);
    pthread_mutex_destroy(&s->op_lock);
    free(s);
}

static void sandbox_put(struct orch *o, struct sandbox *s)
{
    pthread_mutex_lock(&o->lock);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&o->lock);
    if (last)
        sandbox_free(o, s);
}

/* Removes a sandbox from the table (so no new reference can be taken) and drops the table's
 * reference. Returns false when it was already gone. */
static bool sandbox_unlink(struct orch *o, struct sandbox *s)
{
    pthread_mutex_lock(&o->lock);
    bool was = !s->gone;
    if (was) {
        for (struct sandbox **p = &o->sandboxes; *p; p = &(*p)->next)
            if (*p == s) {
                *p = s->next;
                break;
            }
        s->gone = true;
        o->n_sandboxes--;
    }
    pthread_mutex_unlock(&o->lock);
    if (was)
        sandbox_put(o, s);
    return was;
}

struct sandbox *orch_sandbox_ref(struct orch *o, const char *id)
{
    return sandbox_get(o, id);
}

void orch_sandbox_unref(struct orch *o, struct sandbox *s)
{
    sandbox_put(o, s);
}

/* ---- the Sandbox JSON ---- */

static json_t *sandbox_json(const struct sandbox *s)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:s?}", "sandboxID", s->id, "templateID",
                          s->template_id, "alias", s->alias, "clientID", ORCH_CLIENT_ID, "envdVersion",
                          ENVD_VERSION, "envdAccessToken", s->token, "domain", "trafficAccessToken",
                          s->traffic_token[0] ? s->traffic_token : NULL);
    if (!j)
        abort();
    return j;
}

/* ---- create ---- */

static int check_string_map(const json_t *m, const char *what, struct error_record *err)
{
    if (!m)
        return 0;
    if (!json_is_object(m))
        return error_set(err, EINVAL, "%s must be an object of strings", what);
    if (json_object_size(m) > 256)
        return error_set(err, EINVAL, "%s has more than 256 entries", what);
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)m, k, v) {
        if (!json_is_string(v))
            return error_set(err, EINVAL, "%s.%s must be a string", what, k);
        if (strlen(k) == 0 || strlen(k) > 256 || json_string_length(v) > 8192)
            return error_set(err, EINVAL, "%s: keys are 1..256 bytes, values at most 8192", what);
    }
    return 0;
}

/* Counts a sandbox being started against the server's maximum and claims a host slot for it. */
static int reserve(struct orch *o, struct sandbox *s, struct error_record *err)
{
    uint32_t max = o->cfg.max_sandboxes ? o->cfg.max_sandboxes : 256;
    int r = 0;
    struct sandbox *evicted = NULL;
    pthread_mutex_lock(&o->lock);
    if (o->stopping) {
        r = error_set(err, EAGAIN, "the server is shutting down");
    } else if (o->n_sandboxes + o->n_creating + o->n_pooled >= max) {
        /* Pooled sandboxes only ever take room that no create needs: a create at capacity
         * makes room by ending one (the pool thread's own creates do not). */
        if (o->pool && !s->pool_boot) {
            evicted = o->pool;
            o->pool = evicted->next;
            o->n_pooled--;
            o->n_creating++;
        } else {
            r = error_set(err, EAGAIN, "this server runs its maximum of %u sandboxes", max);
        }
    } else {
        o->n_creating++;
    }
    pthread_mutex_unlock(&o->lock);
    if (evicted)
        sandbox_free(o, evicted);
    if (r < 0)
        return r;
    r = orch_slot_claim(MAX_SLOTS, &s->slot, &s->slot_fd, err);
    /* The slot is ours alone now: whatever a server killed mid-create left for it (its veth)
     * would make this create fail. */
    if (r >= 0 && o->cfg.runtime == &runtime_ns_ops &&
        runtime_ns_slot_reset(&o->cfg.runtime_config, s->slot) < 0)
        r = error_set(err, EBUSY, "slot %u holds leftovers that could not be removed", s->slot);
    if (r < 0) {
        s->slot_fd = safe_close(s->slot_fd);
        pthread_mutex_lock(&o->lock);
        o->n_creating--;
        pthread_mutex_unlock(&o->lock);
    }
    return r;
}

static void unreserve(struct orch *o)
{
    pthread_mutex_lock(&o->lock);
    o->n_creating--;
    pthread_mutex_unlock(&o->lock);
}

static char **strv_from_json(const json_t *a)
{
    if (!json_is_array(a) || json_array_size(a) == 0)
        return NULL;
    char **v = xcalloc(json_array_size(a) + 1, sizeof(char *));
    size_t i, n = 0;
    json_t *e;
    json_array_foreach (a, i, e)
        if (json_is_string(e))
            v[n++] = xstrdup(json_string_value(e));
    return v;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* The environment of a process the orchestrator starts as the template's user: PATH, HOME,
 * USER, then the template's env, then the sandbox's own env vars. */
static char **user_env(const struct sandbox *s, const char *extra)
{
    const struct orch_template *t = s->tpl;
    size_t n = 5 + json_object_size(t->env) + json_object_size(s->env_vars);
    char **env = xcalloc(n + 1, sizeof(char *));
    size_t i = 0;
    env[i++] = xstrdup(PATH_ENV);
    env[i++] = xasprintf("HOME=%s", t->home);
    env[i++] = xasprintf("USER=%s", t->user);
    env[i++] = xstrdup("LANG=C.UTF-8");
    const json_t *maps[] = { t->env, s->env_vars };
    for (size_t m = 0; m < ARRAY_SIZE(maps); m++) {
        const char *k;
        json_t *v;
        json_object_foreach ((json_t *)maps[m], k, v)
            env[i++] = xasprintf("%s=%s", k, json_string_value(v));
    }
    if (extra)
        env[i++] = xstrdup(extra);
    return env;
}

/* Runs argv as the template's user in the sandbox and waits for it; returns its wait status.
 * extra_env (NULL: none) is added to user_env(). */
static int exec_and_wait(struct orch *o, struct sandbox *s, const char *const *argv, const char *extra_env,
                         int out_fd, usec_t timeout, struct error_record *err)
{
    char **env = user_env(s, extra_env);
    struct runtime_exec ex = {
        .argv = argv,
        .env = (const char *const *)env,
        .cwd = s->tpl->workdir,
        .uid = s->tpl->uid,
        .gid = s->tpl->gid,
        .stdin_fd = -1,
        .stdout_fd = out_fd,
        .stderr_fd = out_fd,
    };
    int pidfd = o->cfg.runtime->exec(s->rt, &ex, err);
    strv_free(env);
    if (pidfd < 0)
        return pidfd;
    struct pollfd p = { .fd = pidfd, .events = POLLIN };
    int ms = (int)MIN(timeout / USEC_PER_MSEC, (usec_t)INT32_MAX);
    int r = poll(&p, 1, ms);
    if (r == 0) {
        /* Too slow: it is killed with the rest when the sandbox goes, or gets SIGKILL now. */
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    }
    siginfo_t si = { 0 };
    r = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED);
    close(pidfd);
    if (r < 0)
        return error_set_errno(err, errno, "waiting for a command in the sandbox");
    if (p.revents == 0)
        return -ETIMEDOUT;
    return si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0) : W_EXITCODE(0, si.si_status);
}

/* code-interpreter-v1's Python kernel from the fork server, for its interpd to adopt. Returns
 * the INTERPD_ADOPT_KERNEL=<dir> entry for the start command's env, or NULL: then interpd
 * starts a kernel of its own, as in any template derived from this one (whose layers may hold
 * other versions of the libraries the fork server has imported). */
static char *kernel_from_forkserver(struct orch *o, struct sandbox *s)
{
    if (!o->has_code_interpreter || !o->cfg.forkserver_path ||
        !streq(s->template_id, ORCH_CODE_INTERPRETER_TEMPLATE))
        return NULL;
    /* Started on first use: a server that never runs the code interpreter never pays for its
     * imports (two or three seconds of CPU, ~45 MiB). */
    pthread_mutex_lock(&o->lock);
    if (!o->forkserver && !o->forkserver_failed) {
        struct error_record ferr = { 0 };
        if (orch_forkserver_start(o->cfg.forkserver_path, o->envd_dir, ORCH_CODE_INTERPRETER_MODULES,
                                  o->cfg.kernel_memory_merge, &o->forkserver, &ferr) < 0) {
            o->forkserver_failed = true;
            log_warn("no kernel fork server: %s", ferr.msg);
        }
    }
    struct orch_forkserver *fs = o->forkserver;
    pthread_mutex_unlock(&o->lock);
    if (!fs)
        return NULL;
    char name[17];
    if (random_alnum(name, sizeof(name) - 1) < 0)
        return NULL;
    _cleanup_free_ char *dir = xasprintf("/tmp/.hutch-kernel-%s", name);
    struct error_record err = { 0 };
    struct runtime_join j;
    int r = o->cfg.runtime->join_handle(s->rt, &j, &err);
    if (r < 0) {
        log_warn("sandbox %s: no kernel from the fork server: %s", s->id, err.msg);
        return NULL;
    }
    char **env = user_env(s, "PYDEVD_DISABLE_FILE_VALIDATION=1");
    struct orch_kernel_request req = { .user = s->tpl->user,
                                       .dir = dir,
                                       .cwd = s->tpl->home,
                                       .uid = s->tpl->uid,
                                       .gid = s->tpl->gid,
                                       .env = env,
                                       .join = &j };
    r = orch_forkserver_spawn(fs, &req, &err);
    strv_free(env);
    for (size_t i = 0; i < j.n_fds; i++)
        close(j.fds[i]);
    if (r < 0) {
        log_warn("sandbox %s: no kernel from the fork server: %s", s->id, err.msg);
        return NULL;
    }
    return xasprintf("INTERPD_ADOPT_KERNEL=%s", dir);
}

/* §5.3: the template's start command runs in the background (envd, pid 1, adopts it), then its
 * ready command is run until it exits 0. Output goes to the sandbox's log. */
static int start_and_ready(struct orch *o, struct sandbox *s, int log_fd, struct error_record *err)
{
    const struct orch_template *t = s->tpl;
    if (t->start_cmd) {
        const char *argv[] = { "/bin/sh", "-c",         "/bin/sh -c \"$1\" </dev/null & exit 0",
                               "sh",      t->start_cmd, NULL };
        _cleanup_free_ char *adopt = kernel_from_forkserver(o, s);
        int st = exec_and_wait(o, s, argv, adopt, log_fd, 10 * USEC_PER_SEC, err);
        if (st < 0)
            return st == -ETIMEDOUT ? error_set(err, ETIMEDOUT, "the start command did not start") : st;
    }
    if (!t->ready_cmd)
        return 0;
    usec_t timeout = (usec_t)(o->cfg.ready_timeout_s ? o->cfg.ready_timeout_s : 600) * USEC_PER_SEC;
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout, wait = 5 * USEC_PER_MSEC;
    const char *argv[] = { "/bin/sh", "-c", t->ready_cmd, NULL };
    for (;;) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= deadline)
            return error_set(err, ETIMEDOUT, "the ready command '%s' did not pass within %llu s",
                             t->ready_cmd, (unsigned long long)(timeout / USEC_PER_SEC));
        int st = exec_and_wait(o, s, argv, NULL, -1, deadline - now, err);
        if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            return 0;
        if (st < 0 && st != -ETIMEDOUT)
            return st;
        pthread_mutex_lock(&o->lock);
        bool stopping = o->stopping;
        pthread_mutex_unlock(&o->lock);
        if (stopping)
            return error_set(err, ECANCELED, "the server is shutting down");
        usleep((useconds_t)MIN(wait, deadline - MIN(deadline, now_usec(CLOCK_MONOTONIC))));
        wait = MIN(wait * 2, 500 * USEC_PER_MSEC);
    }
}

/* Starts s's runtime sandbox from its settings (template, layers, limits, network, env vars):
 * envd up and initialised, the start command running and the ready command passed. s holds a
 * slot. On failure s->rt is whatever is left to destroy. */
static int start_sandbox(struct orch *o, struct sandbox *s, struct error_record *err)
{
    /* A sandbox started again from disk gets a new log: the old one ended with its processes. */
    _cleanup_close_ int log_fd = -1;
    struct log_sink *old_log = TAKE_PTR(s->log);
    orch_logs_sink_unref(old_log);
    int r = orch_logs_new_sink(o->logs, &s->log, &log_fd, err);
    if (r < 0)
        return r;

    const struct orch_template *t = s->tpl;
    const char *argv[] = { ORCH_ENVD_ARGV_PREFIX,
                           "--listen",
                           "127.0.0.1:49983",
                           "--default-user",
                           t->user,
                           "--default-workdir",
                           t->workdir,
                           NULL };
    /* envd logs JSON lines, which the logs endpoint hands out as structured entries. */
    const char *env[] = { PATH_ENV, "HOME=/root", "LANG=C.UTF-8", "HUTCH_LOG_FORMAT=json", NULL };
    struct runtime_layer layers[ORCH_MAX_LAYERS + 1];
    size_t n_layers = orch_stack_layers(&s->stack, layers, ORCH_MAX_LAYERS);
    layers[n_layers++] = (struct runtime_layer){ o->envd_dir, ORCH_ENVD_MOUNT };
    char **allow_out = strv_from_json(s->allow_out), **deny_out = strv_from_json(s->deny_out);
    struct runtime_spec spec = {
        .id = s->id,
        .slot = s->slot,
        .layers = layers,
        .n_layers = n_layers,
        .limits = {
            .memory_bytes = (uint64_t)s->limits.memory_mb << 20,
            .disk_bytes = (uint64_t)s->limits.disk_mb << 20,
            .cpu_millis = s->limits.cpu_count * 1000,
            .pids_max = PIDS_MAX,
        },
        .net = s->online ? RUNTIME_NET_ONLINE : RUNTIME_NET_OFFLINE,
        .allow_out = (const char *const *)allow_out,
        .deny_out = (const char *const *)deny_out,
        .https_ports = s->https_ports,
        .deny_internet = s->deny_internet,
        .argv = argv,
        .env = env,
        .cwd = "/",
        .uid = 0,
        .gid = 0,
        /* E2B's base template lets `user` sudo; setuid then reaches only the sandbox's own,
         * unprivileged root (its own user namespace and uid range). */
        .allow_setuid = true,
        .stdin_fd = -1,
        .stdout_fd = log_fd,
        .stderr_fd = log_fd,
    };
    const struct runtime_ops *rt = o->cfg.runtime;
    r = rt->create(&o->cfg.runtime_config, &spec, &s->rt, err);
    strv_free(allow_out);
    strv_free(deny_out);
    if (r < 0)
        return r;
    r = rt->start(s->rt, err);
    if (r < 0)
        return r;
    r = orch_envd_wait_healthy(rt, s->rt, ENVD_START_TIMEOUT, err);
    if (r < 0)
        return r;

    json_t *envs = json_deep_copy(t->env);
    if (s->env_vars)
        json_object_update(envs, s->env_vars);
    json_t *init = json_pack("{s:o, s:s, s:s, s:s}", "envVars", envs, "accessToken", s->token, "defaultUser",
                             t->user, "defaultWorkdir", t->workdir);
    if (!init)
        abort();
    r = orch_envd_init(rt, s->rt, -1, init, NULL, err);
    json_decref(init);
    if (r < 0)
        return r;
    r = start_and_ready(o, s, log_fd, err);
    /* Only the sandbox holds the log's write end from now on: the log ends when it does. */
    return r;
}

static void set_template_names(struct sandbox *s, const struct orch_template *t)
{
    str_copy(s->template_id, sizeof(s->template_id), t->template_id);
    const char *ref = t->ref[0] ? t->ref : t->template_id;
    str_copy(s->alias, sizeof(s->alias), ref);
    char *colon = strchr(s->alias, ':');
    if (colon)
        *colon = '\0';
}

static void set_https_ports(struct sandbox *s, const uint16_t *ports)
{
    memset(s->https_ports, 0, sizeof(s->https_ports));
    for (size_t i = 0; ports && ports[i] && i < RUNTIME_HTTPS_PORTS_MAX; i++)
        s->https_ports[i] = ports[i];
}

static json_t *https_ports_json(const struct sandbox *s)
{
    if (!s->https_ports[0])
        return NULL;
    json_t *a = json_array();
    for (size_t i = 0; s->https_ports[i]; i++)
        json_array_append_new(a, json_integer(s->https_ports[i]));
    return a;
}

/* Fills s's settings for req from template t (taking a copy of it). */
static void sandbox_settings(struct orch *o, struct sandbox *s, const struct orch_template *t,
                             const struct orch_create *req)
{
    s->limits = o->cfg.defaults;
    const struct orch_limits *pick[] = { &t->limits, &req->limits };
    for (size_t i = 0; i < ARRAY_SIZE(pick); i++) {
        if (pick[i]->cpu_count)
            s->limits.cpu_count = MIN(pick[i]->cpu_count, o->cfg.maximums.cpu_count);
        if (pick[i]->memory_mb)
            s->limits.memory_mb = MIN(pick[i]->memory_mb, o->cfg.maximums.memory_mb);
        if (pick[i]->disk_mb)
            s->limits.disk_mb = MIN(pick[i]->disk_mb, o->cfg.maximums.disk_mb);
    }
    s->tpl = orch_template_dup(t);
    orch_stack_copy(&t->stack, &s->stack);
    set_template_names(s, t);
    s->env_vars = req->env_vars ? json_deep_copy(req->env_vars) : NULL;
    s->online = req->allow_internet_access || (req->allow_out && req->allow_out[0]);
    s->deny_internet = !req->allow_internet_access;
    for (int k = 0; k < 2; k++) {
        const char *const *v = k ? req->deny_out : req->allow_out;
        if (!v || !v[0])
            continue;
        json_t *a = json_array();
        for (size_t i = 0; v[i]; i++)
            json_array_append_new(a, json_string(v[i]));
        if (k)
            s->deny_out = a;
        else
            s->allow_out = a;
    }
    set_https_ports(s, req->https_ports);
}

static struct sandbox *sandbox_new(void)
{
    struct sandbox *s = xcalloc(1, sizeof(*s));
    s->slot_fd = -1;
    s->refs = 1;
    pthread_mutex_init(&s->op_lock, NULL);
    return s;
}

/* Starts a sandbox for req from t: a slot, a fresh id and token, envd up and initialised, the
 * template's start and ready commands done. It is in no table yet; on failure nothing of it is
 * left. */
static int boot(struct orch *o, const struct orch_template *t, const struct orch_create *req, bool for_pool,
                struct sandbox **ret, struct error_record *err)
{
    struct sandbox *s = sandbox_new();
    s->pool_boot = for_pool;
    int r = reserve(o, s, err);
    if (r < 0) {
        sandbox_free(o, s);
        return r;
    }
    sandbox_settings(o, s, t, req);
    if (random_alnum(s->id, SANDBOX_ID_LEN) < 0 || random_hex(s->token, 32) < 0)
        abort();
    r = start_sandbox(o, s, err);
    unreserve(o);
    if (r < 0) {
        sandbox_free(o, s);
        return r;
    }
    *ret = s;
    return 0;
}

int orch_errno_to_status(int r)
{
    switch (-r) {
    case ENOENT:
        return 404;
    case EINVAL:
        return 400;
    case EEXIST:
    case EALREADY:
        return 409;
    case EOPNOTSUPP:
        return 501;
    case EAGAIN:
    case ENOSPC:
        return 503;
    default:
        return 500;
    }
}

int orch_boot(struct orch *o, const struct orch_template *t, const struct orch_create *req,
              struct sandbox **ret, struct error_record *err)
{
    return boot(o, t, req, true, ret, err);
}

void orch_sandbox_destroy(struct orch *o, struct sandbox *s)
{
    sandbox_free(o, s);
}

int orch_template_check(struct orch *o, const struct orch_template *t, struct error_record *err)
{
    const struct orch_create req = { .allow_internet_access = true };
    struct sandbox *s = NULL;
    int r = boot(o, t, &req, false, &s, err);
    if (r >= 0)
        sandbox_free(o, s);
    return r;
}

/* The restore record: what starting s again from disk needs besides its layers. */
static char *restore_json(const struct sandbox *s)
{
    const struct orch_template *t = s->tpl;
    json_t *tj = json_pack("{s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:O, s:s?, s:s?}", "templateID",
                           t->template_id, "buildID", t->build_id, "user", t->user, "uid", (json_int_t)t->uid,
                           "gid", (json_int_t)t->gid, "home", t->home, "workdir", t->workdir, "env", t->env,
                           "startCmd", t->start_cmd, "readyCmd", t->ready_cmd);
    json_t *j = json_pack("{s:o, s:O?, s:b, s:b, s:O?, s:O?, s:o?, s:s?, s:s?, s:i, s:b}", "template", tj,
                          "envVars", s->env_vars, "online", s->online, "denyInternet", s->deny_internet,
                          "allowOut", s->allow_out, "denyOut", s->deny_out, "httpsPorts", https_ports_json(s),
                          "trafficAccessToken", s->traffic_token[0] ? s->traffic_token : NULL,
                          "maskRequestHost", s->mask_host[0] ? s->mask_host : NULL, "timeout",
                          (json_int_t)s->timeout_s, "autoPauseMemory", !s->pause_filesystem_on_timeout);
    if (!j)
        abort();
    char *out = json_dump_compact(j, NULL);
    json_decref(j);
    return out;
}

int orch_sandbox_create(struct orch *o, const struct orch_create *req, json_t **ret, struct error_record *err)
{
    const char *ref = req->template_id && *req->template_id ? req->template_id : ORCH_DEFAULT_TEMPLATE;
    uint32_t max_timeout = o->cfg.max_timeout_s ? o->cfg.max_timeout_s : 24 * 3600;
    /* A server whose maximum is below E2B's default of 300 s gives its maximum by default. */
    uint32_t default_timeout = MIN(o->cfg.default_timeout_s ? o->cfg.default_timeout_s : 300u, max_timeout);
    uint32_t timeout = req->timeout_s ? req->timeout_s : default_timeout;
    if (timeout > max_timeout)
        return error_set(err, EINVAL, "timeout %u s is above this server's maximum of %u s", timeout,
                         max_timeout);
    const struct orch_limits *max = &o->cfg.maximums;
    if (req->limits.cpu_count > max->cpu_count || req->limits.memory_mb > max->memory_mb ||
        req->limits.disk_mb > max->disk_mb)
        return error_set(err, EINVAL,
                         "limits above this server's maximums (%u vCPUs, %u MiB memory, %u MiB disk)",
                         max->cpu_count, max->memory_mb, max->disk_mb);
    if ((req->limits.memory_mb && req->limits.memory_mb < 64) ||
        (req->limits.disk_mb && req->limits.disk_mb < 16))
        return error_set(err, EINVAL, "memoryMB must be at least 64 and diskSizeMB at least 16");
    int r = check_string_map(req->metadata, "metadata", err);
    if (r < 0)
        return r;
    r = check_string_map(req->env_vars, "envVars", err);
    if (r < 0)
        return r;

    usec_t began = now_usec(CLOCK_MONOTONIC);
    struct orch_template *t = NULL;
    r = orch_template_load(o, ref, &t, err);
    if (r < 0)
        return r;
    struct sandbox *s = NULL;
    if (orch_pool_compatible(o, t, req)) {
        orch_pool_note_create(o, ref);
        s = orch_pool_take(o, ref, t, req);
        if (s)
            set_template_names(s, t);
    }
    if (!s) {
        r = boot(o, t, req, false, &s, err);
        if (r < 0) {
            orch_template_free(t);
            count_create(o, false, 0);
            return r;
        }
    }
    /* Ingress settings only concern the gateway: a pooled sandbox takes them as well. */
    if (req->require_traffic_token && random_hex(s->traffic_token, 32) < 0)
        abort();
    if (req->mask_request_host)
        str_copy(s->mask_host, sizeof(s->mask_host), req->mask_request_host);
    s->pause_on_timeout = req->auto_pause;
    s->pause_filesystem_on_timeout = req->auto_pause_filesystem;
    s->auto_resume = req->auto_resume;
    s->timeout_s = timeout;
    s->started_at_ms = now_ms();
    s->last_sample = now_usec(CLOCK_MONOTONIC);
    s->end_at_ms = s->started_at_ms + (int64_t)timeout * 1000;

    _cleanup_free_ char *metadata = req->metadata ? json_dump_compact(req->metadata, NULL) : xstrdup("{}");
    struct store_sandbox rec = {
        .state = STORE_SANDBOX_RUNNING,
        .started_at_ms = s->started_at_ms,
        .end_at_ms = s->end_at_ms,
        .cpu_count = s->limits.cpu_count,
        .memory_mb = s->limits.memory_mb,
        .disk_mb = s->limits.disk_mb,
        .metadata_json = metadata,
        .pause_on_timeout = s->pause_on_timeout,
        .auto_resume = s->auto_resume,
        .slot = s->slot,
    };
    str_copy(rec.id, sizeof(rec.id), s->id);
    str_copy(rec.template_id, sizeof(rec.template_id), s->template_id);
    str_copy(rec.alias, sizeof(rec.alias), s->alias);
    str_copy(rec.envd_version, sizeof(rec.envd_version), ENVD_VERSION);
    str_copy(rec.envd_access_token, sizeof(rec.envd_access_token), s->token);
    json_t *layers = orch_stack_to_json(&s->stack);
    _cleanup_free_ char *layers_s = json_dump_compact(layers, NULL);
    json_decref(layers);
    _cleanup_free_ char *restore = restore_json(s);
    rec.layers_json = layers_s;
    rec.restore_json = restore;
    pthread_mutex_lock(&o->store_lock);
    r = store_sandbox_insert(o->store, &rec, err);
    pthread_mutex_unlock(&o->store_lock);
    if (r >= 0)
        orch_note_spawn(o, t->template_id, s->started_at_ms);
    orch_template_free(t);

    pthread_mutex_lock(&o->lock);
    if (r >= 0) {
        s->next = o->sandboxes;
        o->sandboxes = s;
        o->n_sandboxes++;
        pthread_cond_signal(&o->timer_wake);
    }
    pthread_mutex_unlock(&o->lock);
    count_create(o, r >= 0, now_usec(CLOCK_MONOTONIC) - began);
    if (r < 0) {
        sandbox_free(o, s); /* the same teardown as a kill */
        return r;
    }
    *ret = sandbox_json(s);
    return 0;
}

/* ---- kill, timeouts ---- */

static int kill_sandbox(struct orch *o, struct sandbox *s, struct error_record *err)
{
    pthread_mutex_lock(&o->store_lock);
    int r = store_sandbox_delete(o->store, s->id, err);
    pthread_mutex_unlock(&o->store_lock);
    if (o->cfg.on_gone)
        o->cfg.on_gone(o->cfg.on_gone_userdata, s->id);
    sandbox_unlink(o, s);
    return r == -ENOENT ? 0 : r;
}

int orch_sandbox_kill(struct orch *o, const char *id, struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    int r = kill_sandbox(o, s, err);
    sandbox_put(o, s);
    return r;
}

int orch_sandbox_set_timeout(struct orch *o, const char *id, uint32_t timeout_s, bool extend_only,
                             struct error_record *err)
{
    uint32_t max_timeout = o->cfg.max_timeout_s ? o->cfg.max_timeout_s : 24 * 3600;
    if (timeout_s > max_timeout)
        return error_set(err, EINVAL, "timeout %u s is above this server's maximum of %u s", timeout_s,
                         max_timeout);
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    int64_t end = now_ms() + (int64_t)timeout_s * 1000;
    pthread_mutex_lock(&o->lock);
    if (!extend_only || end > s->end_at_ms)
        s->end_at_ms = end;
    end = s->end_at_ms;
    pthread_cond_signal(&o->timer_wake);
    pthread_mutex_unlock(&o->lock);
    pthread_mutex_lock(&o->store_lock);
    int r = store_sandbox_set_end(o->store, id, end, err);
    pthread_mutex_unlock(&o->store_lock);
    sandbox_put(o, s);
    return r;
}

/* ---- pause and resume ----
 *
 * A pause always writes the sandbox's writable layer to disk (a new layer on top of its
 * stack, recorded in the store), so a paused sandbox survives a restart of the server or the
 * machine. Where capacity allows it also stays frozen in memory ("memory" mode): resume then
 * thaws it and its processes go on as they were. Otherwise ("filesystem" mode) the runtime
 * sandbox is removed, and resume starts a new one on the saved layers, with the template's
 * start command running again. */

/* Writes s's writable layer (s frozen) as the layer directory `id` and returns the stack a
 * start from disk would use: that layer over s->stack. */
static int save_layer(struct orch *o, struct sandbox *s, const char *id, struct orch_stack *ret,
                      struct error_record *err)
{
    _cleanup_free_ char *layers = xasprintf("%s/layers", o->state_dir);
    if (mkdir(layers, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "creating %s", layers);
    _cleanup_free_ char *tmp = xasprintf("%s/.tmp-%s", layers, id);
    _cleanup_free_ char *dir = xasprintf("%s/%s", layers, id);
    int r = o->cfg.runtime->export_layer(s->rt, tmp, err);
    if (r < 0)
        return r;
    if (rename(tmp, dir) < 0) {
        r = error_set_errno(err, errno, "installing layer %s", id);
        rm_rf(tmp);
        return r;
    }
    const char *targets[ORCH_MAX_TARGETS];
    size_t n = orch_stack_targets(&s->stack, targets, ORCH_MAX_TARGETS);
    struct orch_stack st = { 0 };
    for (size_t i = 0; i < n && r >= 0; i++) {
        _cleanup_free_ char *lid = xasprintf("%s/%zu", id, i);
        _cleanup_free_ char *path = orch_layer_path(o, lid);
        struct stat sst;
        /* A target the sandbox did not change adds nothing. */
        if (stat(path, &sst) == 0)
            r = orch_stack_push(o, &st, lid, targets[i], err);
    }
    if (r >= 0 && st.n + s->stack.n > ORCH_MAX_LAYERS)
        r = error_set(err, E2BIG, "sandbox %s has too many saved layers", s->id);
    if (r < 0) {
        orch_stack_release(&st);
        return r;
    }
    orch_stack_copy(&s->stack, &st);
    *ret = st;
    return 0;
}

static int save_layer_random(struct orch *o, struct sandbox *s, struct orch_stack *ret,
                             struct error_record *err)
{
    char rnd[9], id[64];
    if (random_hex(rnd, 4) < 0)
        abort();
    snprintf(id, sizeof(id), "s-%s-%s", s->id, rnd);
    return save_layer(o, s, id, ret, err);
}

int orch_sandbox_save_layer(struct orch *o, struct sandbox *s, const char *id, struct orch_stack *ret,
                            struct error_record *err)
{
    if (!s->rt) {
        /* Paused to disk: its layers are its whole filesystem already. */
        orch_stack_copy(&s->stack, ret);
        return 0;
    }
    pthread_mutex_lock(&o->lock);
    bool paused = s->paused;
    pthread_mutex_unlock(&o->lock);
    int r = paused ? 0 : o->cfg.runtime->freeze(s->rt);
    if (r < 0)
        return error_set_errno(err, r, "freezing sandbox %s", s->id);
    r = save_layer(o, s, id, ret, err);
    if (!paused)
        o->cfg.runtime->thaw(s->rt);
    return r;
}

/* A sandbox resumed from disk again and again would stack one saved layer per target per
 * cycle. Past SQUASH_AT saved layers, the saved ones are merged into one new layer per target
 * (a hard-link clone of the lowest, with the others applied on top in order): the layers it
 * replaces may be shared with snapshots, so none of them is changed. */
#define SQUASH_AT 6

static bool is_saved_layer(const char *id)
{
    return str_startswith(id, "s-");
}

static int squash_saved(struct orch *o, struct sandbox *s, struct orch_stack *st, struct error_record *err)
{
    size_t n_saved = 0;
    while (n_saved < st->n && is_saved_layer(st->ids[n_saved]))
        n_saved++;
    if (n_saved < SQUASH_AT)
        return 0;
    /* The targets, in the numbering of the layers below (the template's). */
    struct orch_stack below = { 0 };
    for (size_t i = n_saved; i < st->n; i++)
        orch_stack_push(o, &below, st->ids[i], st->targets[i], err);
    const char *targets[ORCH_MAX_TARGETS];
    size_t nt = orch_stack_targets(&below, targets, ORCH_MAX_TARGETS);
    char rnd[9], id[64];
    if (random_hex(rnd, 4) < 0)
        abort();
    snprintf(id, sizeof(id), "s-%s-%s", s->id, rnd);
    _cleanup_free_ char *tmp = xasprintf("%s/layers/.tmp-%s", o->state_dir, id);
    _cleanup_free_ char *dir = xasprintf("%s/layers/%s", o->state_dir, id);
    int r = mkdir(tmp, 0700) < 0 ? error_set_errno(err, errno, "creating %s", tmp) : 0;
    struct orch_stack top = { 0 };
    for (size_t t = 0; t < nt && r >= 0; t++) {
        _cleanup_free_ char *dest = xasprintf("%s/%zu", tmp, t);
        bool started = false;
        /* Bottom (oldest) first. */
        for (size_t k = n_saved; k-- > 0 && r >= 0;) {
            if (!streq(st->targets[k], targets[t]))
                continue;
            if (!started) {
                r = layer_clone_linked(st->paths[k], dest, err);
                started = true;
                continue;
            }
            _cleanup_free_ char *scratch = xasprintf("%s/diff", tmp);
            rm_rf(scratch);
            r = layer_clone_linked(st->paths[k], scratch, err);
            if (r >= 0)
                r = layer_apply_diff(dest, scratch, err);
            rm_rf(scratch);
        }
        if (r >= 0 && started) {
            _cleanup_free_ char *lid = xasprintf("%s/%zu", id, t);
            top.ids[top.n] = xstrdup(lid);
            top.paths[top.n] = xasprintf("%s/%zu", dir, t);
            top.targets[top.n] = xstrdup(targets[t]);
            top.n++;
        }
    }
    if (r >= 0 && rename(tmp, dir) < 0)
        r = error_set_errno(err, errno, "installing layer %s", id);
    if (r < 0) {
        rm_rf(tmp);
        orch_stack_release(&top);
        orch_stack_release(&below);
        return r;
    }
    orch_stack_copy(&below, &top);
    orch_stack_release(&below);
    orch_stack_release(st);
    *st = top;
    return 1;
}

static size_t paused_in_memory(struct orch *o)
{
    size_t n = 0;
    pthread_mutex_lock(&o->lock);
    for (struct sandbox *x = o->sandboxes; x; x = x->next)
        n += x->paused && x->rt;
    pthread_mutex_unlock(&o->lock);
    return n;
}

/* With s->op_lock held. */
static int pause_op(struct orch *o, struct sandbox *s, bool keep_memory, struct error_record *err)
{
    pthread_mutex_lock(&o->lock);
    bool already = s->paused;
    pthread_mutex_unlock(&o->lock);
    if (already)
        return error_set(err, EALREADY, "sandbox %s is already paused", s->id);
    int r = o->cfg.runtime->freeze(s->rt);
    if (r < 0)
        return error_set_errno(err, r, "freezing sandbox %s", s->id);
    /* Its pooled connections would only hang now. */
    if (o->cfg.on_gone)
        o->cfg.on_gone(o->cfg.on_gone_userdata, s->id);
    struct orch_stack saved = { 0 };
    /* From the export until the store has the layer, a collection would take it for garbage. */
    orch_layers_saving_begin(o);
    r = save_layer_random(o, s, &saved, err);
    if (r < 0) {
        orch_layers_saving_end(o);
        o->cfg.runtime->thaw(s->rt);
        return r;
    }
    uint32_t max_mem = o->cfg.max_paused_in_memory ? o->cfg.max_paused_in_memory : 64;
    bool memory = keep_memory && !o->cfg.pause_filesystem_only && paused_in_memory(o) < max_mem;
    /* Only a sandbox that has been started from disk has saved layers below its writable one;
     * a failed squash leaves the (longer) stack, which works as well. */
    struct error_record squash_err = { 0 };
    squash_saved(o, s, &saved, &squash_err);
    json_t *j = orch_stack_to_json(&saved);
    _cleanup_free_ char *layers = json_dump_compact(j, NULL);
    json_decref(j);
    pthread_mutex_lock(&o->store_lock);
    r = store_sandbox_set_paused(o->store, s->id, memory ? "memory" : "filesystem", layers, err);
    pthread_mutex_unlock(&o->store_lock);
    orch_layers_saving_end(o);
    if (r < 0) {
        orch_stack_release(&saved);
        o->cfg.runtime->thaw(s->rt);
        return r;
    }
    if (!memory) {
        /* Everything it needs is on disk: its runtime sandbox and slot go. */
        struct runtime_sandbox *rt = s->rt;
        pthread_mutex_lock(&o->lock);
        s->rt = NULL;
        pthread_mutex_unlock(&o->lock);
        o->cfg.runtime->destroy(rt);
        s->slot_fd = safe_close(s->slot_fd);
        orch_stack_release(&s->stack);
        s->stack = saved;
    } else {
        orch_stack_release(&saved);
    }
    pthread_mutex_lock(&o->lock);
    s->paused = true;
    s->saved = true;
    pthread_mutex_unlock(&o->lock);
    struct error_record e = { 0 };
    orch_layers_gc(o, &e);
    return 0;
}

int orch_sandbox_pause(struct orch *o, const char *id, bool keep_memory, struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    pthread_mutex_lock(&s->op_lock);
    int r = pause_op(o, s, keep_memory, err);
    pthread_mutex_unlock(&s->op_lock);
    sandbox_put(o, s);
    return r;
}

/* Starts a sandbox paused to disk again, on its saved layers. With s->op_lock held. */
static int start_from_disk(struct orch *o, struct sandbox *s, struct error_record *err)
{
    for (size_t i = 0; i < s->stack.n; i++) {
        struct stat st;
        if (stat(s->stack.paths[i], &st) < 0)
            return error_set(err, EIO, "sandbox %s cannot resume: its layer %s is gone", s->id,
                             s->stack.ids[i]);
    }
    int r = reserve(o, s, err);
    if (r < 0)
        return r;
    r = start_sandbox(o, s, err);
    unreserve(o);
    if (r < 0) {
        struct runtime_sandbox *rt = s->rt;
        pthread_mutex_lock(&o->lock);
        s->rt = NULL;
        pthread_mutex_unlock(&o->lock);
        o->cfg.runtime->destroy(rt);
        s->slot_fd = safe_close(s->slot_fd);
    }
    return r;
}

/* With s->op_lock held. Returns 1 when s was paused and now runs, 0 when it ran already. */
static int resume_op(struct orch *o, struct sandbox *s, uint32_t timeout_s, bool keep_memory,
                     struct error_record *err)
{
    pthread_mutex_lock(&o->lock);
    bool was_paused = s->paused;
    pthread_mutex_unlock(&o->lock);
    if (was_paused && s->rt && !keep_memory) {
        /* Reboot: drop what is in memory and start from what the pause saved (its record
         * already names those layers). */
        struct store_sandbox rec = { 0 };
        pthread_mutex_lock(&o->store_lock);
        int r = store_sandbox_get(o->store, s->id, &rec, err);
        pthread_mutex_unlock(&o->store_lock);
        struct orch_stack saved = { 0 };
        if (r >= 0)
            r = orch_stack_from_json(o, rec.layers_json, &saved, err);
        store_sandbox_release(&rec);
        if (r < 0) {
            orch_stack_release(&saved);
            return r;
        }
        struct runtime_sandbox *rt = s->rt;
        pthread_mutex_lock(&o->lock);
        s->rt = NULL;
        pthread_mutex_unlock(&o->lock);
        o->cfg.runtime->destroy(rt);
        s->slot_fd = safe_close(s->slot_fd);
        orch_stack_release(&s->stack);
        s->stack = saved;
    }
    if (was_paused) {
        int r = s->rt ? o->cfg.runtime->thaw(s->rt) : start_from_disk(o, s, err);
        if (r < 0)
            return err->msg[0] ? r : error_set_errno(err, r, "resuming sandbox %s", s->id);
        pthread_mutex_lock(&o->lock);
        s->paused = false;
        s->last_sample = now_usec(CLOCK_MONOTONIC);
        s->last_cpu_usec = 0;
        pthread_mutex_unlock(&o->lock);
        pthread_mutex_lock(&o->store_lock);
        r = store_sandbox_set_state(o->store, s->id, STORE_SANDBOX_RUNNING, err);
        pthread_mutex_unlock(&o->store_lock);
        if (r < 0)
            return r;
    }
    /* Resuming sets the end afresh; connecting to a running sandbox only ever extends it. */
    int r = orch_sandbox_set_timeout(o, s->id, timeout_s ? timeout_s : 300, !was_paused, err);
    return r < 0 ? r : was_paused ? 1 : 0;
}

int orch_sandbox_resume(struct orch *o, const char *id, uint32_t timeout_s, bool keep_memory,
                        struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    pthread_mutex_lock(&s->op_lock);
    int r = resume_op(o, s, timeout_s, keep_memory, err);
    pthread_mutex_unlock(&s->op_lock);
    sandbox_put(o, s);
    return r;
}

static void *timer_main(void *arg)
{
    struct orch *o = arg;
    pthread_mutex_lock(&o->lock);
    while (!o->stopping) {
        int64_t now = now_ms(), next = INT64_MAX;
        struct sandbox *expired = NULL;
        for (struct sandbox *s = o->sandboxes; s; s = s->next) {
            if (s->paused)
                continue;
            if (s->end_at_ms <= now && !expired) {
                expired = s;
                s->refs++;
            } else if (s->end_at_ms < next) {
                next = s->end_at_ms;
            }
        }
        if (expired) {
            o->timeouts++;
            pthread_mutex_unlock(&o->lock);
            struct error_record err = { 0 };
            bool paused = false;
            if (expired->pause_on_timeout) {
                pthread_mutex_lock(&expired->op_lock);
                paused = pause_op(o, expired, !expired->pause_filesystem_on_timeout, &err) >= 0;
                pthread_mutex_unlock(&expired->op_lock);
            }
            if (!paused)
                kill_sandbox(o, expired, &err);
            sandbox_put(o, expired);
            pthread_mutex_lock(&o->lock);
            continue;
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&o->timer_wake, &o->lock);
        } else {
            struct timespec ts = { .tv_sec = next / 1000, .tv_nsec = (next % 1000) * 1000000 };
            pthread_cond_timedwait(&o->timer_wake, &o->lock, &ts);
        }
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

/* ---- queries ---- */

int orch_sandbox_pause_mode(struct orch *o, const char *id, char *ret, struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    pthread_mutex_lock(&o->lock);
    str_copy(ret, 16, !s->paused ? "" : s->rt ? "memory" : "filesystem");
    pthread_mutex_unlock(&o->lock);
    sandbox_put(o, s);
    return 0;
}

int orch_sandbox_connect_info(struct orch *o, const char *id, json_t **ret, struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    *ret = sandbox_json(s);
    sandbox_put(o, s);
    return 0;
}

int orch_sandbox_stats(struct orch *o, const char *id, struct runtime_stats *ret,
                       struct orch_limits *ret_limits, double *ret_cpu_pct, struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    pthread_mutex_lock(&s->op_lock);
    int r = s->rt ? o->cfg.runtime->stats(s->rt, ret) : -EAGAIN;
    pthread_mutex_unlock(&s->op_lock);
    if (r == -EAGAIN) {
        error_set(err, EAGAIN, "sandbox %s is paused", id);
    } else if (r < 0) {
        error_set_errno(err, r, "reading the usage of sandbox %s", id);
    } else {
        *ret_limits = s->limits;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        pthread_mutex_lock(&o->lock);
        usec_t wall = now - s->last_sample;
        uint64_t cpu = ret->cpu_usec >= s->last_cpu_usec ? ret->cpu_usec - s->last_cpu_usec : 0;
        s->last_sample = now;
        s->last_cpu_usec = ret->cpu_usec;
        pthread_mutex_unlock(&o->lock);
        double pct =
            wall > 0 && s->limits.cpu_count ? 100.0 * (double)cpu / (double)wall / s->limits.cpu_count : 0;
        *ret_cpu_pct = pct > 100.0 ? 100.0 : pct;
    }
    sandbox_put(o, s);
    return r;
}

int orch_sandbox_by_signature(struct orch *o, const char *path, const char *op, const char *user,
                              const char *expiration, const char *signature, char *ret_id)
{
    int r = -ENOENT;
    pthread_mutex_lock(&o->lock);
    for (struct sandbox *s = o->sandboxes; s; s = s->next) {
        enum file_sign_result k =
            file_signature_check(signature, expiration, path ? path : "", op, user, s->token, time(NULL));
        /* An expired one is still routed: envd then says that it expired. */
        if (k == FILE_SIGN_OK || k == FILE_SIGN_EXPIRED) {
            str_copy(ret_id, STORE_SANDBOX_ID_MAX + 1, s->id);
            r = 0;
            break;
        }
    }
    pthread_mutex_unlock(&o->lock);
    return r;
}

int orch_sandbox_logs(struct orch *o, const char *id, int64_t since_ms, size_t limit, orch_log_line_cb cb,
                      void *userdata, struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    int r = orch_logs_read(s->log, since_ms, limit, cb, userdata);
    sandbox_put(o, s);
    return r;
}

int orch_sandbox_set_network(struct orch *o, const char *id, bool allow_internet_access,
                             const char *const *allow_out, const char *const *deny_out,
                             const uint16_t *https_ports, struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    pthread_mutex_lock(&s->op_lock);
    uint16_t kept[RUNTIME_HTTPS_PORTS_MAX + 1];
    if (!https_ports) {
        memcpy(kept, s->https_ports, sizeof(kept));
        https_ports = kept;
    }
    int r = s->online || !s->rt ? 0 : error_set(err, EOPNOTSUPP, "sandbox %s was created offline", id);
    if (r >= 0 && s->rt)
        r = o->cfg.runtime->set_egress(s->rt, allow_out, deny_out, https_ports, !allow_internet_access, err);
    if (r >= 0) {
        /* Kept for a start from disk after a pause. */
        json_t *lists[2] = { NULL, NULL };
        for (int k = 0; k < 2; k++) {
            const char *const *v = k ? deny_out : allow_out;
            if (v && v[0]) {
                lists[k] = json_array();
                for (size_t i = 0; v[i]; i++)
                    json_array_append_new(lists[k], json_string(v[i]));
            }
        }
        json_decref(s->allow_out);
        json_decref(s->deny_out);
        s->allow_out = lists[0];
        s->deny_out = lists[1];
        set_https_ports(s, https_ports);
        s->deny_internet = !allow_internet_access;
        /* And for a start after a restart of the server. */
        _cleanup_free_ char *restore = restore_json(s);
        pthread_mutex_lock(&o->store_lock);
        r = store_sandbox_set_restore(o->store, id, restore, err);
        pthread_mutex_unlock(&o->store_lock);
    }
    pthread_mutex_unlock(&s->op_lock);
    sandbox_put(o, s);
    return r;
}

int orch_sandbox_ingress(struct orch *o, const char *id, char *ret_token, size_t token_size,
                         char *ret_mask_host, size_t mask_size)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return -ENOENT;
    str_copy(ret_token, token_size, s->traffic_token);
    str_copy(ret_mask_host, mask_size, s->mask_host);
    sandbox_put(o, s);
    return 0;
}

int orch_sandbox_socket(void *userdata, const char *id, uint16_t port, struct error_record *err)
{
    struct orch *o = userdata;
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    pthread_mutex_lock(&s->op_lock);
    pthread_mutex_lock(&o->lock);
    bool paused = s->paused;
    pthread_mutex_unlock(&o->lock);
    int fd = 0;
    if (paused)
        fd = s->auto_resume ? resume_op(o, s, s->timeout_s, true, err)
                            : error_set(err, EAGAIN, "sandbox %s is paused", id);
    if (fd >= 0)
        fd = s->rt ? o->cfg.runtime->socket(s->rt, err) : error_set(err, EAGAIN, "sandbox %s is paused", id);
    pthread_mutex_unlock(&s->op_lock);
    sandbox_put(o, s);
    return fd;
}

struct store *orch_store_lock(struct orch *o)
{
    pthread_mutex_lock(&o->store_lock);
    return o->store;
}

void orch_store_unlock(struct orch *o)
{
    pthread_mutex_unlock(&o->store_lock);
}

/* ---- setup and teardown ---- */

/* Sandboxes recorded as running by a previous server cannot be adopted: their runtime handles
 * died with it, and with them their writable layers. Their records are forgotten (the runtime
 * removes what is left on the host). Paused ones are on disk: they come back as paused
 * ("filesystem" mode) and resume from their saved layers. */
struct stale {
    char **ids;
    size_t n;
};

static int note_stale(const struct store_sandbox *sb, void *userdata)
{
    struct stale *st = userdata;
    st->ids = xreallocarray(st->ids, st->n + 1, sizeof(char *));
    st->ids[st->n++] = xstrdup(sb->id);
    return 1;
}

/* A sandbox paused by an earlier server, back in the table (no runtime sandbox, no slot). */
static int adopt_paused(struct orch *o, const struct store_sandbox *rec, struct error_record *err)
{
    json_error_t jerr;
    json_t *restore = json_loads(rec->restore_json ? rec->restore_json : "{}", 0, &jerr);
    json_t *tj = json_object_get(restore, "template");
    if (!json_is_object(tj)) {
        json_decref(restore);
        return error_set(err, EIO, "sandbox %s has no restore record", rec->id);
    }
    _cleanup_free_ char *config = json_dump_compact(tj, NULL);
    struct store_build b = { .layers_json = rec->layers_json, .config_json = config };
    str_copy(b.template_id, sizeof(b.template_id), json_get_string_or(tj, "templateID", rec->template_id));
    str_copy(b.id, sizeof(b.id), json_get_string_or(tj, "buildID", ""));
    struct sandbox *s = sandbox_new();
    int r = orch_template_from_build(o, &b, &s->tpl, err);
    if (r < 0) {
        json_decref(restore);
        sandbox_free(o, s);
        return r;
    }
    str_copy(s->tpl->ref, sizeof(s->tpl->ref), rec->alias[0] ? rec->alias : rec->template_id);
    orch_stack_copy(&s->tpl->stack, &s->stack);
    str_copy(s->id, sizeof(s->id), rec->id);
    str_copy(s->template_id, sizeof(s->template_id), rec->template_id);
    str_copy(s->alias, sizeof(s->alias), rec->alias);
    str_copy(s->token, sizeof(s->token), rec->envd_access_token);
    s->limits = (struct orch_limits){ rec->cpu_count, rec->memory_mb, rec->disk_mb };
    s->started_at_ms = rec->started_at_ms;
    s->end_at_ms = rec->end_at_ms;
    s->pause_on_timeout = rec->pause_on_timeout;
    s->auto_resume = rec->auto_resume;
    s->paused = true;
    json_t *env = json_object_get(restore, "envVars");
    s->env_vars = json_is_object(env) ? json_incref(env) : NULL;
    s->online = json_is_true(json_object_get(restore, "online"));
    s->deny_internet = json_is_true(json_object_get(restore, "denyInternet"));
    json_t *a = json_object_get(restore, "allowOut"), *d = json_object_get(restore, "denyOut");
    s->allow_out = json_is_array(a) ? json_incref(a) : NULL;
    s->deny_out = json_is_array(d) ? json_incref(d) : NULL;
    json_t *hp = json_object_get(restore, "httpsPorts"), *p;
    size_t i;
    json_array_foreach (hp, i, p)
        if (i < RUNTIME_HTTPS_PORTS_MAX && json_integer_value(p) > 0 && json_integer_value(p) <= UINT16_MAX)
            s->https_ports[i] = (uint16_t)json_integer_value(p);
    const char *tat = json_string_value(json_object_get(restore, "trafficAccessToken"));
    const char *mask = json_string_value(json_object_get(restore, "maskRequestHost"));
    str_copy(s->traffic_token, sizeof(s->traffic_token), tat ? tat : "");
    str_copy(s->mask_host, sizeof(s->mask_host), mask ? mask : "");
    s->timeout_s = (uint32_t)json_integer_value(json_object_get(restore, "timeout"));
    s->pause_filesystem_on_timeout = json_is_false(json_object_get(restore, "autoPauseMemory"));
    json_decref(restore);
    pthread_mutex_lock(&o->lock);
    s->next = o->sandboxes;
    o->sandboxes = s;
    o->n_sandboxes++;
    pthread_mutex_unlock(&o->lock);
    return 0;
}

static int reconcile(struct orch *o, struct error_record *err)
{
    if (o->cfg.runtime == &runtime_ns_ops && runtime_ns_check_host(err) < 0)
        return -EOPNOTSUPP;
    int r = o->cfg.runtime == &runtime_ns_ops ? runtime_ns_cleanup(&o->cfg.runtime_config) : 0;
    if (r < 0)
        return error_set_errno(err, r, "removing sandboxes left by a previous run");
    struct stale st = { 0 };
    struct store_sandbox_query q = { .states = 1u << STORE_SANDBOX_RUNNING | 1u << STORE_SANDBOX_PAUSED };
    char next[STORE_CURSOR_MAX];
    do {
        r = store_sandbox_list(o->store, &q, 1000, note_stale, &st, next, err);
        q.cursor = next;
    } while (r >= 0 && next[0]);
    for (size_t i = 0; r >= 0 && i < st.n; i++) {
        struct store_sandbox rec = { 0 };
        if (store_sandbox_get(o->store, st.ids[i], &rec, err) < 0)
            continue;
        struct error_record e = { 0 };
        bool keep = rec.state == STORE_SANDBOX_PAUSED && rec.pause_mode[0] && adopt_paused(o, &rec, &e) >= 0;
        if (keep && streq(rec.pause_mode, "memory"))
            store_sandbox_set_paused(o->store, rec.id, "filesystem", NULL, &e);
        if (!keep)
            store_sandbox_delete(o->store, rec.id, &e);
        store_sandbox_release(&rec);
    }
    for (size_t i = 0; i < st.n; i++)
        free(st.ids[i]);
    free(st.ids);
    if (r >= 0)
        r = store_build_fail_unfinished(o->store, "the server stopped during the build", now_ms(), err);
    if (r >= 0) {
        /* Layers of those builds, and saved layers of sandboxes that are gone. */
        r = orch_layers_gc(o, err);
    }
    return r < 0 ? r : 0;
}

/* The server's own templates, in the store so that the API lists them and creates resolve
 * them like any other: `base` (the host's /usr and a generated /etc) and, where interpd is
 * bundled and the host has Jupyter's Python kernel, `code-interpreter-v1` (base plus interpd
 * started by the template, its Python kernel warm with numpy, pandas and matplotlib before
 * the sandbox counts as created or joins a pool). */
static int register_builtin_templates(struct orch *o, struct error_record *err)
{
    static const char layers[] = "[{\"layer\":\"host-base\",\"target\":\"/\"},"
                                 "{\"layer\":\"host-usr\",\"target\":\"/usr\"}]";
    json_t *config = json_pack("{s:s, s:i, s:i, s:s, s:s, s:{}}", "user", DEFAULT_USER, "uid", 1000, "gid",
                               1000, "home", DEFAULT_WORKDIR, "workdir", DEFAULT_WORKDIR, "env");
    _cleanup_free_ char *base = json_dump_compact(config, NULL);
    pthread_mutex_lock(&o->store_lock);
    int r = store_template_ensure_builtin(o->store, ORCH_DEFAULT_TEMPLATE, ORCH_DEFAULT_TEMPLATE, layers,
                                          base, ENVD_VERSION, err);
    pthread_mutex_unlock(&o->store_lock);
    struct stat st;
    _cleanup_free_ char *interpd = xasprintf("%s/interpd", o->envd_dir);
    if (r >= 0 && stat(interpd, &st) == 0 &&
        stat("/usr/share/jupyter/kernels/python3/kernel.json", &st) == 0) {
        /* exec: the start command's shell becomes interpd instead of waiting beside it in every
         * sandbox (dash runs the last command of -c in a child). */
        json_object_set_new(config, "startCmd",
                            json_string("exec " ORCH_INTERPD_COMMAND
                                        " --listen 0.0.0.0:49999 --python-lib " ORCH_ENVD_MOUNT
                                        "/python --preload 'import " ORCH_CODE_INTERPRETER_IMPORTS "'"));
        json_object_set_new(config, "readyCmd",
                            json_string("curl -sf -o /dev/null http://127.0.0.1:49999/health"));
        _cleanup_free_ char *ci = json_dump_compact(config, NULL);
        pthread_mutex_lock(&o->store_lock);
        r = store_template_ensure_builtin(o->store, ORCH_CODE_INTERPRETER_TEMPLATE,
                                          ORCH_CODE_INTERPRETER_TEMPLATE, layers, ci, ENVD_VERSION, err);
        pthread_mutex_unlock(&o->store_lock);
        o->has_code_interpreter = r >= 0;
    }
    json_decref(config);
    return r;
}

static int prepare_templates(struct orch *o, struct error_record *err)
{
    _cleanup_free_ char *templates = xasprintf("%s/templates", o->state_dir);
    _cleanup_free_ char *layers = xasprintf("%s/layers", o->state_dir);
    _cleanup_free_ char *cache = xasprintf("%s/cache", o->state_dir);
    const char *dirs[] = { templates, layers, cache };
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
        if (mkdir(dirs[i], 0700) < 0 && errno != EEXIST)
            return error_set_errno(err, errno, "creating %s", dirs[i]);

    /* The base template's "/" layer is generated once; the host's /usr is the other layer. A
     * half-built one from a crash is rebuilt (it is written to a temporary name first). */
    /* Made afresh at every start: it follows the host's /usr (the other layer, live), whose
     * packages may have changed since the last start. No sandbox of this state dir runs now;
     * paused ones come back on the new one. */
    _cleanup_free_ char *base = xasprintf("%s/base", templates);
    {
        _cleanup_free_ char *tmp = xasprintf("%s/.base.new", templates);
        _cleanup_free_ char *old = xasprintf("%s/.base.old", templates);
        rm_rf(tmp);
        rm_rf(old);
        int r = runtime_base_template_build(tmp, err);
        if (r < 0)
            return r;
        _cleanup_free_ char *opt = xasprintf("%s/opt", tmp);
        _cleanup_free_ char *mnt = xasprintf("%s/opt/hutch", tmp);
        if ((mkdir(opt, 0755) < 0 && errno != EEXIST) || mkdir(mnt, 0755) < 0)
            return error_set_errno(err, errno, "creating %s", mnt);
        if (rename(base, old) < 0 && errno != ENOENT)
            return error_set_errno(err, errno, "replacing the base template");
        if (rename(tmp, base) < 0)
            return error_set_errno(err, errno, "installing the base template");
        rm_rf(old);
    }

    /* envd is copied, not bind-mounted from where it was built: the sandbox sees only the
     * bundle (envd with its own libraries and loader, so that it runs on any template), and a
     * rebuild cannot change it under running sandboxes. Built aside, then renamed into place. */
    o->envd_dir = xasprintf("%s/envd", o->state_dir);
    _cleanup_free_ char *envd_new = xasprintf("%s/envd.new", o->state_dir);
    rm_rf(envd_new);
    int r = orch_envd_bundle(o->cfg.envd_path, o->cfg.interpd_path, envd_new, err);
    if (r < 0)
        return r;
    rm_rf(o->envd_dir);
    if (rename(envd_new, o->envd_dir) < 0)
        return error_set_errno(err, errno, "installing %s", o->envd_dir);

    r = register_builtin_templates(o, err);
    if (r < 0)
        return r;

    return 0;
}

int orch_new(const struct orch_config *cfg, struct orch **ret, struct error_record *err)
{
    struct orch *o = xcalloc(1, sizeof(*o));
    o->cfg = *cfg;
    o->cfg.warm_pool_enabled = cfg->warm_pool || cfg->pool_memory_mb;
    if (!o->cfg.runtime)
        o->cfg.runtime = &runtime_ns_ops;
    /* Several instances may share a host (each with its own state dir): each gets its own
     * cgroup parent and run dir, named after its state dir, so that reconciling one never
     * touches another's sandboxes. */
    char tag[2 * SHA256_LEN + 1];
    _cleanup_free_ char *real = realpath(cfg->state_dir, NULL);
    sha256_hex(real ? real : cfg->state_dir, strlen(real ? real : cfg->state_dir), tag);
    snprintf(o->cgroup_parent, sizeof(o->cgroup_parent), "hutch-%.12s", tag);
    snprintf(o->run_dir, sizeof(o->run_dir), ORCH_RUN_DIR "/%.12s", tag);
    if (!o->cfg.runtime_config.cgroup_parent)
        o->cfg.runtime_config.cgroup_parent = o->cgroup_parent;
    if (!o->cfg.runtime_config.run_dir)
        o->cfg.runtime_config.run_dir = o->run_dir;
    /* Kernels before 6.6 keep writable layers in ext4 images: unnamed files on the state dir's
     * disk, not in /run's memory. */
    if (!o->cfg.runtime_config.disk_dir)
        o->cfg.runtime_config.disk_dir = cfg->state_dir;
    if (!o->cfg.defaults.cpu_count)
        o->cfg.defaults.cpu_count = 2;
    if (!o->cfg.defaults.memory_mb)
        o->cfg.defaults.memory_mb = 512;
    if (!o->cfg.defaults.disk_mb)
        o->cfg.defaults.disk_mb = 1024;
    if (!o->cfg.maximums.cpu_count)
        o->cfg.maximums.cpu_count = MAX(8u, o->cfg.defaults.cpu_count);
    if (!o->cfg.maximums.memory_mb)
        o->cfg.maximums.memory_mb = MAX(8192u, o->cfg.defaults.memory_mb);
    if (!o->cfg.maximums.disk_mb)
        o->cfg.maximums.disk_mb = MAX(20480u, o->cfg.defaults.disk_mb);
    o->state_dir = xstrdup(cfg->state_dir);
    pthread_mutex_init(&o->lock, NULL);
    pthread_mutex_init(&o->store_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_REALTIME);
    pthread_cond_init(&o->timer_wake, &ca);
    pthread_cond_init(&o->pool_wake, &ca);
    pthread_cond_init(&o->builds_done, &ca);
    pthread_cond_init(&o->metrics_wake, &ca);
    pthread_condattr_destroy(&ca);

    int r = 0;
    if (o->cfg.defaults.cpu_count > o->cfg.maximums.cpu_count ||
        o->cfg.defaults.memory_mb > o->cfg.maximums.memory_mb ||
        o->cfg.defaults.disk_mb > o->cfg.maximums.disk_mb)
        r = error_set(err, EINVAL, "the default sandbox limits exceed the maximums");
    if (r >= 0 && o->cfg.kernel_memory_merge)
        r = o->cfg.forkserver_path
                ? orch_forkserver_check_memory_merge(err)
                : error_set(err, EINVAL, "kernel memory merging needs the kernel fork server");
    if (r >= 0)
        r = store_open(o->state_dir, &o->store, err);
    if (r >= 0 && mkdir(ORCH_RUN_DIR, 0755) < 0 && errno != EEXIST)
        r = error_set_errno(err, errno, "creating %s", ORCH_RUN_DIR);
    if (r >= 0)
        r = prepare_templates(o, err);
    if (r >= 0)
        r = orch_logs_start(&o->logs, err);
    if (r >= 0)
        r = reconcile(o, err);
    if (r >= 0) {
        r = -pthread_create(&o->timer, NULL, timer_main, o);
        if (r < 0)
            error_set_errno(err, r, "starting the timeout thread");
        else
            o->timer_started = true;
    }
    if (r >= 0)
        r = orch_pool_start(o, err);
    if (r >= 0)
        r = orch_metrics_start(o, err);
    if (r < 0) {
        orch_free(o);
        return r;
    }
    *ret = o;
    return 0;
}

void orch_free(struct orch *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->lock);
    o->stopping = true;
    pthread_cond_signal(&o->timer_wake);
    pthread_cond_signal(&o->pool_wake);
    pthread_mutex_unlock(&o->lock);
    if (o->timer_started)
        pthread_join(o->timer, NULL);
    orch_pool_stop(o);
    orch_metrics_stop(o);
    orch_flush_template_stats(o);
    /* Builds notice `stopping` between steps and in their waits. */
    pthread_mutex_lock(&o->lock);
    while (o->n_building)
        pthread_cond_wait(&o->builds_done, &o->lock);
    pthread_mutex_unlock(&o->lock);
    /* Running sandboxes do not outlive the server that owns their runtime handles. Paused ones
     * are on disk and stay paused: a later server resumes them from there. */
    for (;;) {
        pthread_mutex_lock(&o->lock);
        struct sandbox *s = o->sandboxes;
        if (s)
            s->refs++;
        bool paused = s && s->paused;
        pthread_mutex_unlock(&o->lock);
        if (!s)
            break;
        struct error_record err = { 0 };
        if (paused) {
            if (s->rt) {
                pthread_mutex_lock(&o->store_lock);
                store_sandbox_set_paused(o->store, s->id, "filesystem", NULL, &err);
                pthread_mutex_unlock(&o->store_lock);
            }
            sandbox_unlink(o, s);
        } else {
            kill_sandbox(o, s, &err);
        }
        sandbox_put(o, s);
    }
    orch_forkserver_stop(o->forkserver);
    orch_logs_stop(o->logs);
    store_free(o->store);
    /* Every sandbox is gone: nothing of this instance stays on the host but its state dir. */
    if (o->cfg.runtime == &runtime_ns_ops)
        runtime_ns_release(&o->cfg.runtime_config);
    if (o->cfg.runtime_config.run_dir == o->run_dir)
        rmdir(o->run_dir);
    pthread_cond_destroy(&o->timer_wake);
    pthread_cond_destroy(&o->pool_wake);
    pthread_cond_destroy(&o->builds_done);
    pthread_cond_destroy(&o->metrics_wake);
    pthread_mutex_destroy(&o->lock);
    pthread_mutex_destroy(&o->store_lock);
    free(o->envd_dir);
    free(o->state_dir);
    free(o);
}
