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
 * already has (NULL for the first /init), which envd requires to accept a new one. presock: a
 * socket made earlier with rt->socket() (taken over and closed), or -1 to make one now. */
int orch_envd_init(const struct runtime_ops *rt, struct runtime_sandbox *sb, int presock, const json_t *body,
                   const char *current_token, struct error_record *err);
/* A kept-alive connection to envd (made, and checked with /health, by _open; a connection
 * envd closed meanwhile is made again): a warm-pool hand-over's /init then costs neither a
 * connect nor a new connection thread in envd. */
struct orch_envd_conn;
int orch_envd_conn_open(const struct runtime_ops *rt, struct runtime_sandbox *sb, struct orch_envd_conn **ret,
                        struct error_record *err);
int orch_envd_conn_init(struct orch_envd_conn *k, const json_t *body, const char *current_token,
                        struct error_record *err);
void orch_envd_conn_free(struct orch_envd_conn *k);

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

/* ---- templates and layers (template.c) ---- */

#define ORCH_MAX_LAYERS 120 /* below the runtime's limit, leaving room for envd and saved layers */
#define ORCH_LAYER_ID_MAX 128
#define ORCH_MAX_TARGETS 8

/* A stack of read-only layers, top first, with their ids (as the store names them), host
 * paths and targets. */
struct orch_stack {
    char *ids[ORCH_MAX_LAYERS];
    char *paths[ORCH_MAX_LAYERS];
    char *targets[ORCH_MAX_LAYERS];
    size_t n;
};
/* The host path of a layer id, or NULL when the id is malformed. */
char *orch_layer_path(const struct orch *o, const char *id);
int orch_stack_push(const struct orch *o, struct orch_stack *st, const char *id, const char *target,
                    struct error_record *err);
/* Appends the entries of a store layer list (JSON) to st. */
int orch_stack_from_json(const struct orch *o, const char *json, struct orch_stack *st,
                         struct error_record *err);
json_t *orch_stack_to_json(const struct orch_stack *st);
void orch_stack_copy(const struct orch_stack *src, struct orch_stack *dst);
void orch_stack_release(struct orch_stack *st);
/* The distinct targets of st: "/" first, then in order of first appearance. This is the order
 * of orch_stack_layers(), so the runtime's export_layer names its directories "0", "1", ...
 * after these. */
size_t orch_stack_targets(const struct orch_stack *st, const char **ret, size_t max);
/* st as runtime layers grouped by target in that order (paths borrowed from st). */
size_t orch_stack_layers(const struct orch_stack *st, struct runtime_layer *ret, size_t max);

/* A template build, resolved: what sandboxes are made from. */
struct orch_template {
    char ref[STORE_TEMPLATE_ID_MAX + 1 + STORE_TAG_MAX + 1]; /* as the create named it */
    char template_id[STORE_TEMPLATE_ID_MAX + 1];
    char build_id[STORE_BUILD_ID_MAX + 1];
    struct orch_stack stack;
    char *user;
    uid_t uid;
    gid_t gid;
    char *home;
    char *workdir;
    json_t *env;
    char *start_cmd; /* NULL: none */
    char *ready_cmd;
    struct orch_limits limits; /* the template's defaults; zeros: the server's */
};
int orch_template_load(struct orch *o, const char *ref, struct orch_template **ret, struct error_record *err);
int orch_template_from_build(const struct orch *o, const struct store_build *b, struct orch_template **ret,
                             struct error_record *err);
struct orch_template *orch_template_dup(const struct orch_template *t);
/* t's settings as a build's config JSON (user, uid, gid, home, workdir, env, start/ready). */
json_t *orch_template_config_json(const struct orch_template *t);
void orch_template_free(struct orch_template *t);

/* Removes layer directories nothing uses any more: no build, no sandbox record, no live or
 * pooled sandbox. Does nothing while a build runs or a layer is being saved (their layers are
 * not recorded yet). Returns how many were removed. */
int orch_layers_gc(struct orch *o, struct error_record *err);
/* Around writing a layer outside a build until the store records it (a pause, a snapshot):
 * no layer GC meanwhile. */
void orch_layers_saving_begin(struct orch *o);
void orch_layers_saving_end(struct orch *o);

/* orchestrator.c: references to sandboxes for the other files. */
struct sandbox;
struct sandbox *orch_sandbox_ref(struct orch *o, const char *id);
void orch_sandbox_unref(struct orch *o, struct sandbox *s);
/* With s->op_lock held: writes s's writable layer as the layer directory id (s frozen for
 * the copy) and returns the stack that reproduces its filesystem: that layer over s's own. */
int orch_sandbox_save_layer(struct orch *o, struct sandbox *s, const char *id, struct orch_stack *ret,
                            struct error_record *err);
/* The HTTP status the API gives a -errno (as api_queue_failure). */
int orch_errno_to_status(int r);

/* orchestrator.c: boot() and the teardown, for pool.c. */
int orch_boot(struct orch *o, const struct orch_template *t, const struct orch_create *req,
              struct sandbox **ret, struct error_record *err);
void orch_sandbox_destroy(struct orch *o, struct sandbox *s);

/* pool.c */
bool orch_pool_compatible(const struct orch *o, const struct orch_template *t, const struct orch_create *req);
/* Records a create of ref for the demand that sizes its pool. */
void orch_pool_note_create(struct orch *o, const char *ref);
/* A pooled sandbox of ref at t's build, handed over to req (new token, env vars), or NULL. */
struct sandbox *orch_pool_take(struct orch *o, const char *ref, const struct orch_template *t,
                               const struct orch_create *req);
int orch_pool_start(struct orch *o, struct error_record *err);
/* Joins the pool thread and ends every pooled sandbox. */
void orch_pool_stop(struct orch *o);

/* metrics.c */
struct orch_spawns {
    char template_id[STORE_TEMPLATE_ID_MAX + 1];
    uint64_t count;
    int64_t last_ms;
};
/* Counts a create from a template for its statistics, written to the store later. */
void orch_note_spawn(struct orch *o, const char *template_id, int64_t at_ms);

struct metrics_ring;
void orch_metrics_ring_free(struct metrics_ring *m);
int orch_metrics_start(struct orch *o, struct error_record *err);
void orch_metrics_stop(struct orch *o);

/* build.c */
bool orch_image_is_host(const char *image);
int orch_image_debian_suite(const char *image, char ret[32]);
/* orchestrator.c: boots a sandbox from t the way a create does (start and ready commands
 * included), then removes it. */
int orch_template_check(struct orch *o, const struct orch_template *t, struct error_record *err);

/* envd-bundle.c: where every sandbox sees the bundle, and how envd is started from it: through
 * the bundle's own dynamic loader (lib/ld.so, a link to the host loader's real name), which
 * searches only the bundle's lib/ and ignores the template's /etc/ld.so.cache. These are loader
 * options, not environment variables, so nothing of the bundle reaches what envd starts.
 * --argv0 keeps envd's argv[0] its own path. Use as the first elements of the argv array. */
#define ORCH_ENVD_MOUNT "/opt/hutch"
#define ORCH_ENVD_ARGV_PREFIX                                                                                \
    ORCH_ENVD_MOUNT "/lib/ld.so", "--inhibit-cache", "--library-path", ORCH_ENVD_MOUNT "/lib", "--argv0",    \
        ORCH_ENVD_MOUNT "/envd", ORCH_ENVD_MOUNT "/envd"
/* The same for interpd, as one shell-quoted string (a template's start command). */
#define ORCH_INTERPD_COMMAND                                                                                 \
    ORCH_ENVD_MOUNT "/lib/ld.so --inhibit-cache --library-path " ORCH_ENVD_MOUNT                             \
                    "/lib --argv0 " ORCH_ENVD_MOUNT "/interpd " ORCH_ENVD_MOUNT "/interpd"
/* What code-interpreter-v1's Python kernel has imported before its sandbox is created: as
 * interpd's --preload code, and as the kernel fork server's list (with hutch's kernel modules,
 * which interpd's setup then only installs: importing them in each kernel cost 0.2-0.45 MiB of
 * private memory per kernel). */
#define ORCH_CODE_INTERPRETER_IMPORTS "numpy, pandas, matplotlib, matplotlib.pyplot"
#define ORCH_CODE_INTERPRETER_MODULES                                                                        \
    ORCH_CODE_INTERPRETER_IMPORTS ", hutch_display, hutch_iostream, hutch_dispatch"
/* Builds dest_dir (which must not exist): dest_dir/envd (a copy of envd_path) and dest_dir/lib/
 * with every shared object envd loads and the dynamic loader, as `envd_path --list-libraries`
 * reports them (the loader first); with interpd_path also dest_dir/interpd, its objects in the
 * same lib/, and dest_dir/python/ (the .py files of python/ beside interpd). Runs the programs
 * (posix_spawn, so safe in a threaded process) and blocks until the copies are made. Returns 0,
 * or -errno with err filled and dest_dir removed (unless it existed before). */
int orch_envd_bundle(const char *envd_path, const char *interpd_path, const char *dest_dir,
                     struct error_record *err);

/* ---- the orchestrator's state, shared by its files ---- */

#define ENVD_VERSION "0.6.13"
#define DEFAULT_USER "user"
#define DEFAULT_WORKDIR "/home/user"
#define SANDBOX_ID_LEN 20
#define ENVD_START_TIMEOUT (10 * USEC_PER_SEC)
#define PIDS_MAX 4096
#define MAX_SLOTS 4096
#define PATH_ENV "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct sandbox {
    struct sandbox *next;
    char id[SANDBOX_ID_LEN + 1];
    char template_id[STORE_TEMPLATE_ID_MAX + 1];
    char alias[STORE_TEMPLATE_ID_MAX + 1]; /* the name the create used, without its tag */
    char token[2 * 32 + 1];
    unsigned slot;
    int slot_fd; /* holds the slot (see slots.c) */
    struct orch_limits limits;
    int64_t started_at_ms;
    int64_t end_at_ms;
    bool pause_on_timeout;
    bool pause_filesystem_on_timeout; /* autoPauseMemory:false */
    bool auto_resume;
    bool paused;        /* under orch.lock; frozen in place while rt, else only on disk */
    uint32_t timeout_s; /* the create's timeout, given again on an automatic resume */
    /* What it was made with, to start it again from disk after a pause. */
    struct orch_template *tpl;
    struct orch_stack stack; /* the lower layers of rt, top first */
    json_t *env_vars;        /* the create's sandbox-wide env vars, or NULL */
    bool online;
    bool deny_internet;
    json_t *allow_out, *deny_out; /* arrays of strings, or NULL */
    bool saved;                   /* a pause wrote a layer for it (collected when it goes) */
    /* network.httpsPorts, 0-terminated */
    uint16_t https_ports[RUNTIME_HTTPS_PORTS_MAX + 1];
    /* Ingress, fixed at create: the traffic access token ("" = public) and maskRequestHost. */
    char traffic_token[ORCH_TRAFFIC_TOKEN_MAX + 1];
    char mask_host[ORCH_MASK_HOST_MAX + 1];
    char pool_ref[STORE_TEMPLATE_ID_MAX + 1 + STORE_TAG_MAX + 1]; /* while pooled: the pool's */
    uint64_t pool_memory;             /* while pooled: its memory use when it joined */
    struct orch_envd_conn *pool_conn; /* while pooled: kept open for the hand-over's /init */
    bool pool_boot;                   /* being started by the pool thread */
    /* Serialises what changes rt (pause, resume, snapshot, kill) between request threads. */
    pthread_mutex_t op_lock;
    struct runtime_sandbox *rt;   /* NULL while paused to disk only */
    struct log_sink *log;         /* envd's stdout and stderr */
    struct metrics_ring *metrics; /* usage history (metrics.c); under orch.lock */
    uint64_t last_cpu_usec;       /* the previous stats sample, for cpuUsedPct; under orch.lock */
    usec_t last_sample;
    int refs;  /* the table's one, plus one per in-flight user; under orch.lock */
    bool gone; /* removed from the table; destroyed when refs drops to 0 */
};

struct orch {
    struct orch_config cfg;
    char *state_dir;
    char *envd_dir; /* holds the envd copy, mounted at /opt/hutch */

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

    /* Warm pools (pool.c): started sandboxes not yet handed out (not in the table or the store),
     * and per template its demand. */
    struct sandbox *pool;
    struct pool_entry *pools;
    int64_t pool_last_take_ms; /* the last hand-over (the refill waits a moment after it) */
    size_t n_pooled;
    size_t n_pool_creating;
    uint64_t pool_hits;
    pthread_t pool_thread;
    bool pool_started;
    pthread_cond_t pool_wake;

    /* Creates per template not yet in the store (metrics.c), under lock. */
    struct orch_spawns spawns[16];
    size_t n_spawns;

    bool has_code_interpreter; /* the builtin code-interpreter-v1 is registered */
    /* The kernel fork server (forkserver.c), started on first use; under lock. */
    struct orch_forkserver *forkserver;
    bool forkserver_failed;

    /* The metrics sampler (metrics.c). */
    pthread_t metrics_thread;
    bool metrics_started;
    pthread_cond_t metrics_wake;

    /* Template builds in flight (under lock); layer GC waits for none, orch_free for all. */
    size_t n_building;
    pthread_cond_t builds_done;
    /* Layers being written outside builds (pauses, snapshots) and not in the store yet, and
     * how many such writes ever began (under lock): layer GC runs only when none was in
     * flight from its scan of the store to its removal (orch_layers_saving_begin/end). */
    size_t n_saving;
    uint64_t saving_gen;

    /* Counters for /metrics, under lock. */
    uint64_t creates, create_failures, timeouts;
    uint64_t create_bucket[ORCH_CREATE_BUCKETS + 1]; /* per bucket, not cumulative */
    usec_t create_usec_sum;
};

/* forkserver.c: the kernel fork server (src/forkserver/forkserver.h). */
struct orch_forkserver;
/* Starts it from a sealed memfd copy of binary, with bundle_dir (the envd bundle) as its
 * /opt/hutch and preload (comma-separated modules) imported. Returns at once: it says ready
 * later, in the background. Any thread may start it: it ends when its socket's other end
 * closes (this process's exit included), not with the starting thread. */
int orch_forkserver_start(const char *binary, const char *bundle_dir, const char *preload, bool memory_merge,
                          struct orch_forkserver **ret, struct error_record *err);
/* Whether this host can merge the kernels' pages (orch_config.kernel_memory_merge): Linux 6.4
 * or later built with KSM. Warns when KSM is not running. Returns 0 or -EOPNOTSUPP with err. */
int orch_forkserver_check_memory_merge(struct error_record *err);
/* Closes its socket (it exits), waits up to 2 s, kills and reaps it. Accepts NULL. */
void orch_forkserver_stop(struct orch_forkserver *fs);

struct orch_kernel_request {
    const char *user; /* the sandbox user's name (for its supplementary groups) */
    const char *dir;  /* inside the sandbox: created 0700, the kernel's files */
    const char *cwd;  /* inside the sandbox */
    uid_t uid;        /* inside the sandbox */
    gid_t gid;
    char *const *env;                /* NULL-terminated KEY=VALUE */
    const struct runtime_join *join; /* from the runtime's join_handle (fds stay the caller's) */
};
/* Asks for a Python kernel in the sandbox; blocks until its process is in the sandbox
 * (interpd, given INTERPD_ADOPT_KERNEL, finds it in req->dir): first until the fork server is
 * ready (at most 60 s after its start), then at most 10 s. Returns 0 or -errno with err filled
 * (-EAGAIN: it never got ready). Thread-safe. */
int orch_forkserver_spawn(struct orch_forkserver *fs, const struct orch_kernel_request *req,
                          struct error_record *err);
