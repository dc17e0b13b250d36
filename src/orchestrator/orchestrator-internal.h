/* What the orchestrator's files share. */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/time-util.h"
#include "orchestrator/orchestrator.h"
#include "runtime/runtime.h"
#include "store/store.h"

/* envd-client.c: polls envd's /health inside the sandbox until it answers 204. */
int orch_envd_wait_healthy(const struct runtime_ops *rt, struct runtime_sandbox *sb, usec_t timeout,
                           struct error_record *err);
/* envd-client.c: POST /init with body (an object); current_token is the access token envd
 * already has (NULL for the first /init), which envd requires to accept a new one. */
int orch_envd_init(const struct runtime_ops *rt, struct runtime_sandbox *sb, const json_t *body,
                   const char *current_token, struct error_record *err);

/* Where hutch keeps host-wide runtime state (tmpfs: gone at reboot, as the sandboxes are). */
#define ORCH_RUN_DIR "/run/hutch"

/* slots.c: claims the lowest free host-wide slot below max; the slot is held until *ret_fd is
 * closed. -EAGAIN when none is free. */
int orch_slot_claim(unsigned max, unsigned *ret_slot, int *ret_fd, struct error_record *err);

/* logs.c: the sandboxes' output, kept in memory (see the file's comment). */
struct log_collector;
struct log_sink;
int orch_logs_start(struct log_collector **ret, struct error_record *err);
void orch_logs_stop(struct log_collector *c);
/* A new sink with its pipe: *ret_write_fd is the write end, for the sandbox's stdout and
 * stderr (the caller closes its copy once the runtime has dup'ed it). */
int orch_logs_new_sink(struct log_collector *c, struct log_sink **ret, int *ret_write_fd,
                       struct error_record *err);
void orch_logs_sink_unref(struct log_sink *s);
/* Calls cb for up to limit lines received at or after since_ms, oldest first. */
int orch_logs_read(struct log_sink *s, int64_t since_ms, size_t limit, orch_log_line_cb cb, void *userdata);

/* ---- the orchestrator's state, shared by its files ---- */

#define ENVD_VERSION "0.6.13"
#define ENVD_IN_SANDBOX "/opt/hutch/envd"
#define DEFAULT_USER "user"
#define DEFAULT_WORKDIR "/home/user"
#define SANDBOX_ID_LEN 20
#define ENVD_START_TIMEOUT (10 * USEC_PER_SEC)
#define PIDS_MAX 4096
#define MAX_SLOTS 4096

struct sandbox {
    struct sandbox *next;
    char id[SANDBOX_ID_LEN + 1];
    char template_id[STORE_TEMPLATE_ID_MAX + 1];
    char token[2 * 32 + 1];
    unsigned slot;
    int slot_fd; /* holds the slot (see slots.c) */
    struct orch_limits limits;
    int64_t started_at_ms;
    int64_t end_at_ms;
    bool pause_on_timeout;
    bool auto_resume;
    bool paused;        /* frozen in place; under orch.lock */
    uint32_t timeout_s; /* the create's timeout, given again on an automatic resume */
    struct runtime_sandbox *rt;
    struct log_sink *log;   /* envd's stdout and stderr */
    uint64_t last_cpu_usec; /* the previous stats sample, for cpuUsedPct; under orch.lock */
    usec_t last_sample;
    int refs;  /* the table's one, plus one per in-flight user; under orch.lock */
    bool gone; /* removed from the table; destroyed when refs drops to 0 */
};

struct orch {
    struct orch_config cfg;
    char *state_dir;
    char *template_dir; /* the base template's "/" layer */
    char *envd_dir;     /* holds the envd copy, mounted at /opt/hutch */
    struct runtime_layer layers[3];

    pthread_mutex_t lock;
    pthread_cond_t timer_wake;
    pthread_t timer;
    bool timer_started;
    bool stopping;
    struct sandbox *sandboxes;
    size_t n_sandboxes;
    size_t n_creating;
    char cgroup_parent[64]; /* per instance: instances never touch each other's sandboxes */
    char run_dir[64];

    pthread_mutex_t store_lock;
    struct store *store;

    struct log_collector *logs;

    /* The warm pool: started sandboxes not yet handed out (not in the table or the store). */
    struct sandbox *pool;
    size_t n_pooled;
    size_t n_pool_creating;
    uint64_t pool_hits;
    pthread_t pool_thread;
    bool pool_started;
    pthread_cond_t pool_wake;

    /* Counters for /metrics, under lock. */
    uint64_t creates, create_failures, timeouts;
    uint64_t create_bucket[ORCH_CREATE_BUCKETS + 1]; /* per bucket, not cumulative */
    usec_t create_usec_sum;
};

/* envd-bundle.c: where every sandbox sees the bundle, and how envd is started from it: through
 * the bundle's own dynamic loader (lib/ld.so, a link to the host loader's real name), which
 * searches only the bundle's lib/ and ignores the template's /etc/ld.so.cache. These are loader
 * options, not environment variables, so nothing of the bundle reaches what envd starts.
 * --argv0 keeps envd's argv[0] its own path. Use as the first elements of the argv array. */
#define ORCH_ENVD_MOUNT "/opt/hutch"
#define ORCH_ENVD_ARGV_PREFIX                                                                                \
    ORCH_ENVD_MOUNT "/lib/ld.so", "--inhibit-cache", "--library-path", ORCH_ENVD_MOUNT "/lib", "--argv0",    \
        ORCH_ENVD_MOUNT "/envd", ORCH_ENVD_MOUNT "/envd"
/* Builds dest_dir (which must not exist): dest_dir/envd (a copy of envd_path) and dest_dir/lib/
 * with every shared object envd loads and the dynamic loader, as `envd_path --list-libraries`
 * reports them (the loader first). Runs envd (posix_spawn, so safe in a threaded process) and
 * blocks until the copies are made. Returns 0, or -errno with err filled and dest_dir removed
 * (unless it existed before). */
int orch_envd_bundle(const char *envd_path, const char *dest_dir, struct error_record *err);
