/* Metrics history (e2b-compat §2.3 getMetrics): every METRICS_INTERVAL each running sandbox's
 * usage is sampled into a ring of its own (the last METRICS_KEPT samples, an hour), so that
 * `GET /sandboxes/{id}/metrics?start=&end=` answers with a series, as E2B does, instead of one
 * sample taken at the request. CPU use is the share of the sandbox's CPUs used between two
 * samples. The ring lives and dies with the sandbox object (nothing on disk). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/macro.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "common/banned.h"

#define METRICS_INTERVAL_S 5
#define METRICS_KEPT 720

struct metrics_ring {
    struct orch_metric_sample s[METRICS_KEPT];
    size_t next, n;
    uint64_t prev_cpu_usec;
    usec_t prev_at;
};

void orch_metrics_ring_free(struct metrics_ring *m)
{
    free(m);
}

/* Takes a sample of s (a reference held). */
static void sample(struct orch *o, struct sandbox *s)
{
    struct runtime_stats st;
    pthread_mutex_lock(&s->op_lock);
    pthread_mutex_lock(&o->lock);
    bool running = s->rt && !s->paused;
    pthread_mutex_unlock(&o->lock);
    int r = running ? o->cfg.runtime->stats(s->rt, &st) : -EAGAIN;
    pthread_mutex_unlock(&s->op_lock);
    if (r < 0)
        return;
    usec_t now = now_usec(CLOCK_MONOTONIC);
    pthread_mutex_lock(&o->lock);
    if (!s->metrics)
        s->metrics = xcalloc(1, sizeof(*s->metrics));
    struct metrics_ring *m = s->metrics;
    double pct = 0;
    if (m->prev_at && now > m->prev_at && s->limits.cpu_count && st.cpu_usec >= m->prev_cpu_usec)
        pct = 100.0 * (double)(st.cpu_usec - m->prev_cpu_usec) / (double)(now - m->prev_at) /
              s->limits.cpu_count;
    m->prev_at = now;
    m->prev_cpu_usec = st.cpu_usec;
    m->s[m->next] = (struct orch_metric_sample){
        .at = time(NULL),
        .cpu_pct = pct > 100.0 ? 100.0 : pct,
        .memory_bytes = st.memory_bytes,
        .disk_bytes = st.disk_bytes,
    };
    m->next = (m->next + 1) % METRICS_KEPT;
    if (m->n < METRICS_KEPT)
        m->n++;
    pthread_mutex_unlock(&o->lock);
}

/* Template statistics (spawn_count, last_spawned_at) are counted in memory and written by the
 * sampler every few seconds: a create from a warm pool should not wait for a second write
 * transaction for them. */
void orch_note_spawn(struct orch *o, const char *template_id, int64_t at_ms)
{
    pthread_mutex_lock(&o->lock);
    size_t i = 0;
    while (i < o->n_spawns && strcmp(o->spawns[i].template_id, template_id))
        i++;
    bool full = i == ARRAY_SIZE(o->spawns);
    if (!full) {
        if (i == o->n_spawns) {
            snprintf(o->spawns[i].template_id, sizeof(o->spawns[i].template_id), "%s", template_id);
            o->spawns[i].count = 0;
            o->n_spawns++;
        }
        o->spawns[i].count++;
        o->spawns[i].last_ms = MAX(o->spawns[i].last_ms, at_ms);
    }
    pthread_mutex_unlock(&o->lock);
    if (full) {
        struct error_record err = { 0 };
        pthread_mutex_lock(&o->store_lock);
        store_template_spawned(o->store, template_id, 1, at_ms, &err);
        pthread_mutex_unlock(&o->store_lock);
    }
}

void orch_flush_template_stats(struct orch *o)
{
    struct orch_spawns copy[ARRAY_SIZE(o->spawns)];
    pthread_mutex_lock(&o->lock);
    size_t n = o->n_spawns;
    memcpy(copy, o->spawns, n * sizeof(copy[0]));
    o->n_spawns = 0;
    pthread_mutex_unlock(&o->lock);
    if (!n)
        return;
    struct error_record err = { 0 };
    pthread_mutex_lock(&o->store_lock);
    for (size_t i = 0; i < n; i++) {
        error_clear(&err);
        /* A template deleted meanwhile has nothing left to count. */
        store_template_spawned(o->store, copy[i].template_id, copy[i].count, copy[i].last_ms, &err);
    }
    pthread_mutex_unlock(&o->store_lock);
}

static void *metrics_main(void *arg)
{
    struct orch *o = arg;
    pthread_mutex_lock(&o->lock);
    while (!o->stopping) {
        /* Snapshot the ids, then sample each without holding the table lock. */
        size_t n = 0;
        for (struct sandbox *s = o->sandboxes; s; s = s->next)
            n++;
        struct sandbox **list = xcalloc(n ? n : 1, sizeof(*list));
        n = 0;
        for (struct sandbox *s = o->sandboxes; s; s = s->next) {
            s->refs++;
            list[n++] = s;
        }
        pthread_mutex_unlock(&o->lock);
        for (size_t i = 0; i < n; i++) {
            sample(o, list[i]);
            orch_sandbox_unref(o, list[i]);
        }
        free(list);
        orch_flush_template_stats(o);
        pthread_mutex_lock(&o->lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += METRICS_INTERVAL_S;
        while (!o->stopping && pthread_cond_timedwait(&o->metrics_wake, &o->lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

int orch_metrics_start(struct orch *o, struct error_record *err)
{
    int r = -pthread_create(&o->metrics_thread, NULL, metrics_main, o);
    if (r < 0)
        return error_set_errno(err, r, "starting the metrics sampler");
    o->metrics_started = true;
    return 0;
}

void orch_metrics_stop(struct orch *o)
{
    if (!o->metrics_started)
        return;
    pthread_mutex_lock(&o->lock);
    pthread_cond_broadcast(&o->metrics_wake);
    pthread_mutex_unlock(&o->lock);
    pthread_join(o->metrics_thread, NULL);
    o->metrics_started = false;
}

int orch_sandbox_metrics(struct orch *o, const char *id, int64_t start, int64_t end, orch_metric_cb cb,
                         void *userdata, struct error_record *err)
{
    struct sandbox *s = orch_sandbox_ref(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    /* Copied out under the lock; the callback runs without it. */
    struct orch_metric_sample *copy = NULL;
    size_t n = 0;
    pthread_mutex_lock(&o->lock);
    struct metrics_ring *m = s->metrics;
    if (m && m->n) {
        copy = xcalloc(m->n, sizeof(*copy));
        size_t first = (m->next + METRICS_KEPT - m->n) % METRICS_KEPT;
        for (size_t i = 0; i < m->n; i++) {
            const struct orch_metric_sample *x = &m->s[(first + i) % METRICS_KEPT];
            if ((start <= 0 || x->at >= start) && (end <= 0 || x->at <= end))
                copy[n++] = *x;
        }
    }
    struct orch_limits limits = s->limits;
    pthread_mutex_unlock(&o->lock);
    orch_sandbox_unref(o, s);
    int r = 0;
    for (size_t i = 0; i < n && r >= 0; i++)
        r = cb(&copy[i], &limits, userdata);
    free(copy);
    return r < 0 ? r : (int)n;
}
