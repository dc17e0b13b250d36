/* See orchestrator.h. */
#include "orchestrator/orchestrator.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/file-signature.h"
#include "common/fs-util.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "common/banned.h"

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
    orch_logs_sink_unref(s->log);
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

/* ---- the Sandbox JSON ---- */

static json_t *sandbox_json(const struct sandbox *s)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:n}", "sandboxID", s->id, "templateID",
                          s->template_id, "alias", s->template_id, "clientID", ORCH_CLIENT_ID, "envdVersion",
                          ENVD_VERSION, "envdAccessToken", s->token, "domain");
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

static int reserve(struct orch *o, struct sandbox *s, struct error_record *err)
{
    uint32_t max = o->cfg.max_sandboxes ? o->cfg.max_sandboxes : 256;
    int r = 0;
    pthread_mutex_lock(&o->lock);
    if (o->stopping)
        r = error_set(err, EAGAIN, "the server is shutting down");
    else if (o->n_sandboxes + o->n_creating + o->n_pooled >= max)
        r = error_set(err, EAGAIN, "this server runs its maximum of %u sandboxes", max);
    else
        o->n_creating++;
    pthread_mutex_unlock(&o->lock);
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

static int random_id(char out[SANDBOX_ID_LEN + 1])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char raw[SANDBOX_ID_LEN];
    int r = random_bytes(raw, sizeof(raw));
    if (r < 0)
        return r;
    for (size_t i = 0; i < SANDBOX_ID_LEN; i++)
        out[i] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
    out[SANDBOX_ID_LEN] = '\0';
    return 0;
}

static int start_sandbox(struct orch *o, struct sandbox *s, const struct orch_create *req,
                         struct error_record *err)
{
    _cleanup_close_ int log_fd = -1;
    int r = orch_logs_new_sink(o->logs, &s->log, &log_fd, err);
    if (r < 0)
        return r;

    const char *argv[] = { ORCH_ENVD_ARGV_PREFIX, "--listen",          "127.0.0.1:49983", "--default-user",
                           DEFAULT_USER,          "--default-workdir", DEFAULT_WORKDIR,   NULL };
    /* envd logs JSON lines, which the logs endpoint hands out as structured entries. */
    const char *env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
                          "LANG=C.UTF-8", "HUTCH_LOG_FORMAT=json", NULL };
    struct runtime_spec spec = {
        .id = s->id,
        .slot = s->slot,
        .layers = o->layers,
        .n_layers = ARRAY_SIZE(o->layers),
        .limits = {
            .memory_bytes = (uint64_t)s->limits.memory_mb << 20,
            .disk_bytes = (uint64_t)s->limits.disk_mb << 20,
            .cpu_millis = s->limits.cpu_count * 1000,
            .pids_max = PIDS_MAX,
        },
        .net = req->allow_internet_access || (req->allow_out && req->allow_out[0]) ? RUNTIME_NET_ONLINE
                                                                                   : RUNTIME_NET_OFFLINE,
        .allow_out = req->allow_out,
        .deny_out = req->deny_out,
        .deny_internet = !req->allow_internet_access,
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
    if (r < 0)
        return r;
    /* The sandbox holds the write end now; ours would keep the pipe open after it is gone. */
    log_fd = safe_close(log_fd);
    r = rt->start(s->rt, err);
    if (r < 0)
        return r;
    r = orch_envd_wait_healthy(rt, s->rt, ENVD_START_TIMEOUT, err);
    if (r < 0)
        return r;

    json_t *init = json_pack("{s:O?, s:s, s:s, s:s}", "envVars", req->env_vars, "accessToken", s->token,
                             "defaultUser", DEFAULT_USER, "defaultWorkdir", DEFAULT_WORKDIR);
    if (!init)
        abort();
    if (!json_object_get(init, "envVars"))
        json_object_set_new(init, "envVars", json_object());
    r = orch_envd_init(rt, s->rt, init, NULL, err);
    json_decref(init);
    return r;
}

/* Starts a sandbox for req: a slot, a fresh id and token, envd up and initialised. It is in no
 * table yet; on failure nothing of it is left. */
static int boot(struct orch *o, const struct orch_create *req, struct sandbox **ret, struct error_record *err)
{
    struct sandbox *s = xcalloc(1, sizeof(*s));
    s->slot_fd = -1;
    int r = reserve(o, s, err);
    if (r < 0) {
        free(s);
        return r;
    }
    s->refs = 1;
    s->limits = o->cfg.defaults;
    if (req->limits.cpu_count)
        s->limits.cpu_count = req->limits.cpu_count;
    if (req->limits.memory_mb)
        s->limits.memory_mb = req->limits.memory_mb;
    if (req->limits.disk_mb)
        s->limits.disk_mb = req->limits.disk_mb;
    if (random_id(s->id) < 0 || random_hex(s->token, 32) < 0)
        abort();
    r = start_sandbox(o, s, req, err);
    pthread_mutex_lock(&o->lock);
    o->n_creating--;
    pthread_mutex_unlock(&o->lock);
    if (r < 0) {
        sandbox_free(o, s);
        return r;
    }
    *ret = s;
    return 0;
}

/* ---- the warm pool ---- */

static bool same_or_default(uint32_t asked, uint32_t dflt)
{
    return asked == 0 || asked == dflt;
}

/* Pooled sandboxes are started as a plain create would start them: default limits, online,
 * no allow or deny lists, no env vars (those come with the hand-over's /init). */
static bool pool_compatible(const struct orch *o, const struct orch_create *req)
{
    return o->cfg.warm_pool && req->allow_internet_access && !(req->allow_out && req->allow_out[0]) &&
           !(req->deny_out && req->deny_out[0]) &&
           same_or_default(req->limits.cpu_count, o->cfg.defaults.cpu_count) &&
           same_or_default(req->limits.memory_mb, o->cfg.defaults.memory_mb) &&
           same_or_default(req->limits.disk_mb, o->cfg.defaults.disk_mb);
}

/* Hands a pooled sandbox over: a new access token (so that no one who knew the pool's can reach
 * it) and the request's env vars, through envd's /init. NULL when the pool is empty or the
 * hand-over failed (the caller then boots one). */
static struct sandbox *pool_take(struct orch *o, const struct orch_create *req)
{
    pthread_mutex_lock(&o->lock);
    struct sandbox *s = o->pool;
    if (s) {
        o->pool = s->next;
        s->next = NULL;
        o->n_pooled--;
        pthread_cond_signal(&o->pool_wake);
    }
    pthread_mutex_unlock(&o->lock);
    if (!s)
        return NULL;
    char old[sizeof(s->token)];
    memcpy(old, s->token, sizeof(old));
    if (random_hex(s->token, 32) < 0)
        abort();
    json_t *init = json_pack("{s:O?, s:s}", "envVars", req->env_vars, "accessToken", s->token);
    if (!init)
        abort();
    if (!json_object_get(init, "envVars"))
        json_object_del(init, "envVars");
    struct error_record e = { 0 };
    int r = orch_envd_init(o->cfg.runtime, s->rt, init, old, &e);
    json_decref(init);
    explicit_bzero(old, sizeof(old));
    if (r < 0) {
        sandbox_free(o, s);
        return NULL;
    }
    pthread_mutex_lock(&o->lock);
    o->pool_hits++;
    pthread_mutex_unlock(&o->lock);
    return s;
}

static void *pool_main(void *arg)
{
    struct orch *o = arg;
    const struct orch_create pooled = { .allow_internet_access = true };
    pthread_mutex_lock(&o->lock);
    while (!o->stopping) {
        if (o->n_pooled + o->n_pool_creating >= o->cfg.warm_pool) {
            pthread_cond_wait(&o->pool_wake, &o->lock);
            continue;
        }
        o->n_pool_creating++;
        pthread_mutex_unlock(&o->lock);
        struct sandbox *s = NULL;
        struct error_record err = { 0 };
        int r = boot(o, &pooled, &s, &err);
        pthread_mutex_lock(&o->lock);
        o->n_pool_creating--;
        if (r >= 0) {
            s->next = o->pool;
            o->pool = s;
            o->n_pooled++;
        } else {
            /* At capacity, or failing: try again later rather than spin. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&o->pool_wake, &o->lock, &ts);
        }
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

int orch_sandbox_create(struct orch *o, const struct orch_create *req, json_t **ret, struct error_record *err)
{
    const char *tpl = req->template_id && *req->template_id ? req->template_id : ORCH_DEFAULT_TEMPLATE;
    if (!streq(tpl, ORCH_DEFAULT_TEMPLATE))
        return error_set(err, ENOENT, "template '%s' not found (this host has: base)", tpl);
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
    struct sandbox *s = pool_compatible(o, req) ? pool_take(o, req) : NULL;
    if (!s) {
        r = boot(o, req, &s, err);
        if (r < 0) {
            count_create(o, false, 0);
            return r;
        }
    }
    str_copy(s->template_id, sizeof(s->template_id), tpl);
    s->pause_on_timeout = req->auto_pause;
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
    str_copy(rec.alias, sizeof(rec.alias), s->template_id);
    str_copy(rec.envd_version, sizeof(rec.envd_version), ENVD_VERSION);
    str_copy(rec.envd_access_token, sizeof(rec.envd_access_token), s->token);
    pthread_mutex_lock(&o->store_lock);
    r = store_sandbox_insert(o->store, &rec, err);
    pthread_mutex_unlock(&o->store_lock);

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

/* Freezes s (a reference held, orch.lock not held) and records it as paused. */
static int pause_locked_out(struct orch *o, struct sandbox *s, struct error_record *err)
{
    pthread_mutex_lock(&o->lock);
    bool already = s->paused;
    pthread_mutex_unlock(&o->lock);
    if (already)
        return error_set(err, EALREADY, "sandbox %s is already paused", s->id);
    int r = o->cfg.runtime->freeze(s->rt);
    if (r < 0)
        return error_set_errno(err, r, "freezing sandbox %s", s->id);
    pthread_mutex_lock(&o->lock);
    s->paused = true;
    pthread_mutex_unlock(&o->lock);
    /* Its pooled connections would only hang now. */
    if (o->cfg.on_gone)
        o->cfg.on_gone(o->cfg.on_gone_userdata, s->id);
    pthread_mutex_lock(&o->store_lock);
    r = store_sandbox_set_state(o->store, s->id, STORE_SANDBOX_PAUSED, err);
    pthread_mutex_unlock(&o->store_lock);
    return r;
}

int orch_sandbox_pause(struct orch *o, const char *id, struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    int r = pause_locked_out(o, s, err);
    sandbox_put(o, s);
    return r;
}

static int resume_sandbox(struct orch *o, struct sandbox *s, uint32_t timeout_s, struct error_record *err)
{
    pthread_mutex_lock(&o->lock);
    bool was_paused = s->paused;
    pthread_mutex_unlock(&o->lock);
    if (was_paused) {
        int r = o->cfg.runtime->thaw(s->rt);
        if (r < 0)
            return error_set_errno(err, r, "thawing sandbox %s", s->id);
        pthread_mutex_lock(&o->lock);
        s->paused = false;
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

int orch_sandbox_resume(struct orch *o, const char *id, uint32_t timeout_s, struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    int r = resume_sandbox(o, s, timeout_s, err);
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
            if (!expired->pause_on_timeout || pause_locked_out(o, expired, &err) < 0)
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
    int r = o->cfg.runtime->stats(s->rt, ret);
    if (r < 0) {
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
                             struct error_record *err)
{
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    int r = o->cfg.runtime->set_egress(s->rt, allow_out, deny_out, !allow_internet_access, err);
    sandbox_put(o, s);
    return r;
}

int orch_sandbox_socket(void *userdata, const char *id, uint16_t port, struct error_record *err)
{
    struct orch *o = userdata;
    struct sandbox *s = sandbox_get(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    pthread_mutex_lock(&o->lock);
    bool paused = s->paused;
    pthread_mutex_unlock(&o->lock);
    if (paused) {
        int r = s->auto_resume ? resume_sandbox(o, s, s->timeout_s, err)
                               : error_set(err, EAGAIN, "sandbox %s is paused", id);
        if (r < 0) {
            sandbox_put(o, s);
            return r;
        }
    }
    int fd = o->cfg.runtime->socket(s->rt, err);
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
 * died with it. Forget the records; the runtime removes what is left on the host. */
static int forget_stale(const struct store_sandbox *sb, void *userdata)
{
    struct orch *o = userdata;
    /* A paused sandbox was frozen in memory ("memory" mode): it died with that server too. */
    if (sb->state == STORE_SANDBOX_RUNNING || sb->state == STORE_SANDBOX_PAUSED) {
        struct error_record err = { 0 };
        store_sandbox_delete(o->store, sb->id, &err);
    }
    return 0;
}

static int reconcile(struct orch *o, struct error_record *err)
{
    int r = o->cfg.runtime == &runtime_ns_ops ? runtime_ns_cleanup(&o->cfg.runtime_config) : 0;
    if (r < 0)
        return error_set_errno(err, r, "removing sandboxes left by a previous run");
    struct store_sandbox_query q = { .states = 1u << STORE_SANDBOX_RUNNING | 1u << STORE_SANDBOX_PAUSED };
    char next[STORE_CURSOR_MAX];
    do {
        r = store_sandbox_list(o->store, &q, 1000, forget_stale, o, next, err);
        if (r < 0)
            return r;
    } while (next[0]);
    return 0;
}

static int prepare_templates(struct orch *o, struct error_record *err)
{
    _cleanup_free_ char *templates = xasprintf("%s/templates", o->state_dir);
    if (mkdir(templates, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "creating %s", templates);

    /* The base template's "/" layer is generated once; the host's /usr is the other layer. A
     * half-built one from a crash is rebuilt (it is written to a temporary name first). */
    o->template_dir = xasprintf("%s/base", templates);
    struct stat st;
    if (stat(o->template_dir, &st) < 0) {
        _cleanup_free_ char *tmp = xasprintf("%s/.base.new", templates);
        rm_rf(tmp);
        int r = runtime_base_template_build(tmp, err);
        if (r < 0)
            return r;
        _cleanup_free_ char *opt = xasprintf("%s/opt", tmp);
        _cleanup_free_ char *mnt = xasprintf("%s/opt/hutch", tmp);
        if ((mkdir(opt, 0755) < 0 && errno != EEXIST) || mkdir(mnt, 0755) < 0)
            return error_set_errno(err, errno, "creating %s", mnt);
        if (rename(tmp, o->template_dir) < 0)
            return error_set_errno(err, errno, "installing the base template");
    }

    /* envd is copied, not bind-mounted from where it was built: the sandbox sees only the
     * bundle (envd with its own libraries and loader, so that it runs on any template), and a
     * rebuild cannot change it under running sandboxes. Built aside, then renamed into place. */
    o->envd_dir = xasprintf("%s/envd", o->state_dir);
    _cleanup_free_ char *envd_new = xasprintf("%s/envd.new", o->state_dir);
    rm_rf(envd_new);
    int r = orch_envd_bundle(o->cfg.envd_path, envd_new, err);
    if (r < 0)
        return r;
    rm_rf(o->envd_dir);
    if (rename(envd_new, o->envd_dir) < 0)
        return error_set_errno(err, errno, "installing %s", o->envd_dir);

    o->layers[0] = (struct runtime_layer){ o->template_dir, "/" };
    o->layers[1] = (struct runtime_layer){ o->envd_dir, "/opt/hutch" };
    o->layers[2] = (struct runtime_layer){ "/usr", "/usr" };
    return 0;
}

int orch_new(const struct orch_config *cfg, struct orch **ret, struct error_record *err)
{
    struct orch *o = xcalloc(1, sizeof(*o));
    o->cfg = *cfg;
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
    pthread_condattr_destroy(&ca);

    int r = 0;
    if (o->cfg.defaults.cpu_count > o->cfg.maximums.cpu_count ||
        o->cfg.defaults.memory_mb > o->cfg.maximums.memory_mb ||
        o->cfg.defaults.disk_mb > o->cfg.maximums.disk_mb)
        r = error_set(err, EINVAL, "the default sandbox limits exceed the maximums");
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
    if (r >= 0 && o->cfg.warm_pool) {
        r = -pthread_create(&o->pool_thread, NULL, pool_main, o);
        if (r < 0)
            error_set_errno(err, r, "starting the warm pool");
        else
            o->pool_started = true;
    }
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
    if (o->pool_started)
        pthread_join(o->pool_thread, NULL);
    while (o->pool) {
        struct sandbox *s = o->pool;
        o->pool = s->next;
        o->n_pooled--;
        sandbox_free(o, s);
    }
    /* Sandboxes do not outlive the server that owns their runtime handles. */
    for (;;) {
        pthread_mutex_lock(&o->lock);
        struct sandbox *s = o->sandboxes;
        if (s)
            s->refs++;
        pthread_mutex_unlock(&o->lock);
        if (!s)
            break;
        struct error_record err = { 0 };
        kill_sandbox(o, s, &err);
        sandbox_put(o, s);
    }
    orch_logs_stop(o->logs);
    store_free(o->store);
    /* Every sandbox is gone: nothing of this instance stays on the host but its state dir. */
    if (o->cfg.runtime == &runtime_ns_ops)
        runtime_ns_release(&o->cfg.runtime_config);
    if (o->cfg.runtime_config.run_dir == o->run_dir)
        rmdir(o->run_dir);
    pthread_cond_destroy(&o->timer_wake);
    pthread_cond_destroy(&o->pool_wake);
    pthread_mutex_destroy(&o->lock);
    pthread_mutex_destroy(&o->store_lock);
    free(o->template_dir);
    free(o->envd_dir);
    free(o->state_dir);
    free(o);
}
