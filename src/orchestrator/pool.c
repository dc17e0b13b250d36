/* Warm pools: sandboxes started ahead of demand, per template build, so that a create is a
 * hand-over of a few milliseconds instead of a boot (envd up, the template's start command
 * running and its ready command passed).
 *
 * Each template that has been asked for gets a pool entry. Its target size is the larger of
 * what the server was configured with (--warm-pool, for `base`) and its recent demand: the
 * number of creates of it in the last POOL_DEMAND_WINDOW, capped at POOL_MAX_PER_TEMPLATE. A
 * template nobody asked for in that window shrinks back to its configured size. All pooled
 * sandboxes together stay within a memory budget (--pool-memory-mb), measured from each
 * pooled sandbox's own usage. One thread fills the pools, one sandbox at a time.
 *
 * A pooled sandbox is started exactly as a create with the template's defaults would start it
 * (online, no allow/deny lists, the template's limits). It shares nothing with the others: its
 * own id, hostname, access token and random state (a fresh process tree, not a copy of a
 * snapshot). The hand-over gives it a new token and the request's env vars through envd's
 * /init, so no one who could reach it while pooled can reach it afterwards. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "common/banned.h"

#define POOL_DEMAND_WINDOW_MS (60 * 1000)
#define POOL_MAX_PER_TEMPLATE 16
#define POOL_DEMAND_SLOTS 64 /* creates remembered per template */
#define POOL_DEFAULT_MEMORY_MB 2048
#define POOL_MAX_ENTRIES 64 /* templates tracked */
#define POOL_REFILL_DELAY_MS 200

struct pool_entry {
    struct pool_entry *next;
    char ref[STORE_TEMPLATE_ID_MAX + 1 + STORE_TAG_MAX + 1]; /* as creates name it */
    char build_id[STORE_BUILD_ID_MAX + 1];                   /* of the sandboxes in the pool */
    unsigned configured;
    int64_t creates[POOL_DEMAND_SLOTS]; /* ring of recent create times (ms) */
    size_t next_create;
    unsigned creating;
    int64_t last_failure_ms;
};

static int64_t now_ms(void)
{
    return (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC);
}

static unsigned target_locked(const struct pool_entry *e, int64_t now)
{
    unsigned recent = 0;
    for (size_t i = 0; i < POOL_DEMAND_SLOTS; i++)
        recent += e->creates[i] && now - e->creates[i] < POOL_DEMAND_WINDOW_MS;
    unsigned demand = MIN(recent, (unsigned)POOL_MAX_PER_TEMPLATE);
    return MAX(e->configured, demand);
}

static unsigned pooled_locked(const struct orch *o, const struct pool_entry *e)
{
    unsigned n = 0;
    for (const struct sandbox *s = o->pool; s; s = s->next)
        n += streq(s->pool_ref, e->ref);
    return n;
}

static uint64_t pool_memory_locked(const struct orch *o)
{
    uint64_t sum = 0;
    for (const struct sandbox *s = o->pool; s; s = s->next)
        sum += s->pool_memory;
    return sum;
}

static struct pool_entry *entry_locked(struct orch *o, const char *ref, bool create)
{
    size_t n = 0;
    for (struct pool_entry *e = o->pools; e; e = e->next, n++)
        if (streq(e->ref, ref))
            return e;
    if (!create || n >= POOL_MAX_ENTRIES)
        return NULL;
    struct pool_entry *e = xcalloc(1, sizeof(*e));
    str_copy(e->ref, sizeof(e->ref), ref);
    e->next = o->pools;
    o->pools = e;
    return e;
}

static bool same_or_default(uint32_t asked, uint32_t dflt)
{
    return asked == 0 || asked == dflt;
}

bool orch_pool_compatible(const struct orch *o, const struct orch_template *t, const struct orch_create *req)
{
    struct orch_limits d = o->cfg.defaults;
    if (t->limits.cpu_count)
        d.cpu_count = t->limits.cpu_count;
    if (t->limits.memory_mb)
        d.memory_mb = t->limits.memory_mb;
    if (t->limits.disk_mb)
        d.disk_mb = t->limits.disk_mb;
    return o->cfg.warm_pool_enabled && req->allow_internet_access && !(req->allow_out && req->allow_out[0]) &&
           !(req->deny_out && req->deny_out[0]) && !(req->https_ports && req->https_ports[0]) &&
           same_or_default(req->limits.cpu_count, d.cpu_count) &&
           same_or_default(req->limits.memory_mb, d.memory_mb) &&
           same_or_default(req->limits.disk_mb, d.disk_mb);
}

void orch_pool_note_create(struct orch *o, const char *ref)
{
    pthread_mutex_lock(&o->lock);
    struct pool_entry *e = entry_locked(o, ref, true);
    if (e) {
        e->creates[e->next_create] = now_ms();
        e->next_create = (e->next_create + 1) % POOL_DEMAND_SLOTS;
        pthread_cond_signal(&o->pool_wake);
    }
    pthread_mutex_unlock(&o->lock);
}

struct sandbox *orch_pool_take(struct orch *o, const char *ref, const struct orch_template *t,
                               const struct orch_create *req)
{
    pthread_mutex_lock(&o->lock);
    struct sandbox **p = &o->pool, *s = NULL;
    for (; *p; p = &(*p)->next)
        if (streq((*p)->pool_ref, ref) && streq((*p)->tpl->build_id, t->build_id)) {
            s = *p;
            *p = s->next;
            s->next = NULL;
            o->n_pooled--;
            break;
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
    /* The connection made when it joined the pool spares the hand-over a connect (a trip into
     * the netns) and envd a new connection thread. */
    int r = s->pool_conn ? orch_envd_conn_init(s->pool_conn, init, old, &e)
                         : orch_envd_init(o->cfg.runtime, s->rt, -1, init, old, &e);
    orch_envd_conn_free(TAKE_PTR(s->pool_conn));
    json_decref(init);
    explicit_bzero(old, sizeof(old));
    /* The refill starts only now, and a moment later (POOL_REFILL_DELAY_MS): on a small host
     * its boot would compete with this hand-over and with the first requests to the sandbox,
     * which come right after it. */
    pthread_mutex_lock(&o->lock);
    o->pool_last_take_ms = now_ms();
    pthread_cond_signal(&o->pool_wake);
    pthread_mutex_unlock(&o->lock);
    if (r < 0) {
        orch_sandbox_destroy(o, s);
        return NULL;
    }
    s->env_vars = req->env_vars ? json_deep_copy(req->env_vars) : NULL;
    pthread_mutex_lock(&o->lock);
    o->pool_hits++;
    pthread_mutex_unlock(&o->lock);
    return s;
}

/* With o->lock held: the entry most in need of a sandbox, or NULL. */
static struct pool_entry *neediest_locked(struct orch *o, int64_t now)
{
    struct pool_entry *best = NULL;
    long best_gap = 0;
    for (struct pool_entry *e = o->pools; e; e = e->next) {
        /* A template that failed to start is retried after a pause, not in a loop. */
        if (e->last_failure_ms && now - e->last_failure_ms < 5000)
            continue;
        long gap = (long)target_locked(e, now) - (long)(pooled_locked(o, e) + e->creating);
        if (gap > best_gap) {
            best = e;
            best_gap = gap;
        }
    }
    return best;
}

/* With o->lock held: removes one pooled sandbox that is beyond its template's target or of a
 * build that is not the template's current one any more (the caller frees it). */
static struct sandbox *surplus_locked(struct orch *o, int64_t now)
{
    for (struct pool_entry *e = o->pools; e; e = e->next) {
        unsigned pooled = pooled_locked(o, e), target = target_locked(e, now);
        for (struct sandbox **p = &o->pool; *p; p = &(*p)->next) {
            struct sandbox *s = *p;
            if (!streq(s->pool_ref, e->ref))
                continue;
            if (pooled > target || (e->build_id[0] && !streq(s->tpl->build_id, e->build_id))) {
                *p = s->next;
                o->n_pooled--;
                return s;
            }
        }
    }
    return NULL;
}

static void *pool_main(void *arg)
{
    struct orch *o = arg;
    uint64_t budget = (uint64_t)(o->cfg.pool_memory_mb ? o->cfg.pool_memory_mb : POOL_DEFAULT_MEMORY_MB)
                      << 20;
    pthread_mutex_lock(&o->lock);
    while (!o->stopping) {
        int64_t now = now_ms();
        struct sandbox *extra = surplus_locked(o, now);
        if (extra) {
            pthread_mutex_unlock(&o->lock);
            orch_sandbox_destroy(o, extra);
            pthread_mutex_lock(&o->lock);
            continue;
        }
        if (now - o->pool_last_take_ms < POOL_REFILL_DELAY_MS) {
            int64_t at = o->pool_last_take_ms + POOL_REFILL_DELAY_MS;
            struct timespec ts = { .tv_sec = at / 1000, .tv_nsec = (at % 1000) * 1000000 };
            pthread_cond_timedwait(&o->pool_wake, &o->lock, &ts);
            continue;
        }
        struct pool_entry *e = neediest_locked(o, now);
        if (!e || pool_memory_locked(o) >= budget) {
            /* Demand decays with time: look again in a while even without news. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&o->pool_wake, &o->lock, &ts);
            continue;
        }
        e->creating++;
        o->n_pool_creating++;
        char ref[sizeof(e->ref)];
        memcpy(ref, e->ref, sizeof(ref));
        pthread_mutex_unlock(&o->lock);

        struct sandbox *s = NULL;
        struct error_record err = { 0 };
        struct orch_template *t = NULL;
        const struct orch_create pooled = { .template_id = ref, .allow_internet_access = true };
        int r = orch_template_load(o, ref, &t, &err);
        if (r >= 0 && !orch_pool_compatible(o, t, &pooled))
            r = -EINVAL;
        if (r >= 0)
            r = orch_boot(o, t, &pooled, &s, &err);
        struct runtime_stats st = { 0 };
        if (r >= 0 && o->cfg.runtime->stats(s->rt, &st) >= 0)
            s->pool_memory = st.memory_bytes;
        if (r >= 0 && orch_envd_conn_open(o->cfg.runtime, s->rt, &s->pool_conn, &err) < 0)
            s->pool_conn = NULL; /* the hand-over then connects itself */

        pthread_mutex_lock(&o->lock);
        e = entry_locked(o, ref, false);
        o->n_pool_creating--;
        if (e) {
            e->creating--;
            if (t)
                str_copy(e->build_id, sizeof(e->build_id), t->build_id);
            e->last_failure_ms = r < 0 ? now_ms() : 0;
        }
        if (r >= 0 && e && !o->stopping) {
            str_copy(s->pool_ref, sizeof(s->pool_ref), ref);
            s->next = o->pool;
            o->pool = s;
            o->n_pooled++;
            s = NULL;
        }
        pthread_mutex_unlock(&o->lock);
        orch_template_free(t);
        if (s)
            orch_sandbox_destroy(o, s);
        pthread_mutex_lock(&o->lock);
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

int orch_pool_start(struct orch *o, struct error_record *err)
{
    if (!o->cfg.warm_pool_enabled)
        return 0;
    if (o->cfg.warm_pool) {
        pthread_mutex_lock(&o->lock);
        struct pool_entry *e = entry_locked(o, ORCH_DEFAULT_TEMPLATE, true);
        e->configured = o->cfg.warm_pool;
        pthread_mutex_unlock(&o->lock);
    }
    int r = -pthread_create(&o->pool_thread, NULL, pool_main, o);
    if (r < 0)
        return error_set_errno(err, r, "starting the warm pool");
    o->pool_started = true;
    return 0;
}

void orch_pool_stop(struct orch *o)
{
    if (o->pool_started)
        pthread_join(o->pool_thread, NULL);
    o->pool_started = false;
    for (;;) {
        pthread_mutex_lock(&o->lock);
        struct sandbox *s = o->pool;
        if (s) {
            o->pool = s->next;
            o->n_pooled--;
        }
        pthread_mutex_unlock(&o->lock);
        if (!s)
            break;
        orch_sandbox_destroy(o, s);
    }
    while (o->pools) {
        struct pool_entry *e = o->pools;
        o->pools = e->next;
        free(e);
    }
}
