/* The orchestrator: the lifecycle of sandboxes. It turns an API request into a runtime spec,
 * starts envd as the sandbox's first process, initialises it (/init: env vars, access token,
 * default user and workdir), records the sandbox in the store, and kills it when its timeout
 * passes. It is the only owner of runtime handles.
 *
 * State machine: creating -> running -> killed (pause/resume: issue 6). A sandbox is in the
 * store only once it is running; a failed create leaves nothing (the runtime tears down what it
 * built). Reconcile on start: records that say running but have no live sandbox (a previous
 * `hutch serve` died) are marked killed, and the runtime removes anything left on the host.
 *
 * Thread-safety: every function may be called from any request thread concurrently. Errors:
 * -errno with err filled; the API maps ENOENT to 404, EINVAL to 400, EEXIST/EALREADY to 409,
 * EOPNOTSUPP to 501, EAGAIN/ENOSPC to 503. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "runtime/runtime.h"
#include "store/store.h"

#define ORCH_CLIENT_ID "hutch"
#define ORCH_DEFAULT_TEMPLATE "base"
#define ORCH_CODE_INTERPRETER_TEMPLATE "code-interpreter-v1"

struct orch_limits {
    uint32_t cpu_count;
    uint32_t memory_mb;
    uint32_t disk_mb;
};

struct orch_config {
    const char *state_dir; /* templates/, sandboxes/ and the store live here */
    const char *envd_path; /* host path of the envd binary that runs inside sandboxes */
    /* host path of interpd, the code interpreter, bundled beside envd (with the python/ dir
     * beside it) for the code-interpreter-v1 template; NULL: none */
    const char *interpd_path;
    /* host path of kernel-forkserver: code-interpreter-v1's Python kernels are forked from one
     * process that imported their libraries, sharing its memory (src/forkserver/). NULL: each
     * sandbox's interpd starts its own. */
    const char *forkserver_path;
    /* The fork server's kernels ask the host kernel's KSM to merge their identical pages
     * (PR_SET_MEMORY_MERGE, Linux 6.4): the pages each kernel copies on write are mostly the
     * same in every kernel. Off by default: merged pages are a timing side channel between
     * sandboxes (docs/decisions/0006-kernel-memory-merge.md). Needs forkserver_path. */
    bool kernel_memory_merge;
    const struct runtime_ops *runtime;
    struct runtime_config runtime_config;
    uint32_t default_timeout_s;  /* 0: 300, as E2B */
    uint32_t max_timeout_s;      /* 0: 24 h */
    struct orch_limits defaults; /* zeros: E2B's 2 vCPUs, 512 MiB, 1 GiB */
    struct orch_limits maximums; /* what a request may ask for; zeros: 8 vCPUs, 8 GiB, 20 GiB */
    uint32_t max_sandboxes;      /* 0: 256 */
    /* Sandboxes of `base` kept started (envd up and initialised) for creates that ask for the
     * defaults (limits, internet access, no allow/deny lists): such a create is a hand-over of
     * a few milliseconds. Refilled in the background. 0: no pool. */
    uint32_t warm_pool;
    /* Warm pools for every template, each sized by its recent demand (creates in the last
     * minute, at most 16) and by warm_pool for `base`, all within pool_memory_mb (0: 2048).
     * On when warm_pool or pool_memory_mb is set. */
    uint32_t pool_memory_mb;
    bool warm_pool_enabled; /* filled in by orch_new */
    /* How long a template's ready command may take to pass, at build and at create; 0: 600 s. */
    uint32_t ready_timeout_s;
    /* Paused sandboxes kept frozen in memory (their processes resume too); beyond this a pause
     * keeps the filesystem only. 0: 64, unless pause_filesystem_only (every pause keeps the
     * filesystem only). */
    uint32_t max_paused_in_memory;
    bool pause_filesystem_only;
    /* Called (on any thread) when a sandbox stops running, so that the gateway drops its
     * pooled connections into it (they would keep its network namespace alive). */
    void (*on_gone)(void *userdata, const char *id);
    void *on_gone_userdata;
};

struct orch;

/* Prepares the state directory (the `base` template, the envd copy), reconciles the store
 * with the host, and starts the timeout thread. */
int orch_new(const struct orch_config *cfg, struct orch **ret, struct error_record *err);
/* Kills every running sandbox and frees everything (NULL accepted). */
void orch_free(struct orch *o);

#define ORCH_MASK_HOST_MAX 255
#define ORCH_TRAFFIC_TOKEN_MAX 64

struct orch_create {
    const char *template_id;
    uint32_t timeout_s;     /* 0: the default */
    const json_t *metadata; /* object of strings, or NULL */
    const json_t *env_vars; /* object of strings, or NULL */
    /* Egress (e2b-compat 2.4): with internet access or an allow list the sandbox is online
     * (veth + NAT, filtered on the host); without either it is offline (loopback only).
     * Private, link-local, metadata and host addresses stay blocked in any case. */
    bool allow_internet_access;
    bool auto_resume;             /* a paused sandbox resumes when traffic reaches it */
    const char *const *allow_out; /* CIDRs or addresses, NULL-terminated; NULL = none */
    const char *const *deny_out;
    /* network.httpsPorts: TLS ports besides 443 for allow_out's domain names (0-terminated,
     * at most RUNTIME_HTTPS_PORTS_MAX; NULL = none). Kept even without names. */
    const uint16_t *https_ports;
    /* Ingress (e2b-compat 2, network.allowPublicTraffic false): the sandbox gets a random
     * traffic access token that the gateway requires on its ports other than envd's. */
    bool require_traffic_token;
    /* network.maskRequestHost: the Host the gateway forwards to those ports (`${PORT}` stands
     * for the port), at most ORCH_MASK_HOST_MAX bytes; NULL: the client's. Validated by the API. */
    const char *mask_request_host;
    bool auto_pause;
    /* E2B's autoPauseMemory:false: the timeout pause keeps the filesystem only (the
     * "filesystem" mode of a pause with memory:false). */
    bool auto_pause_filesystem;
    struct orch_limits limits; /* zeros: the server's defaults; each within the maximums */
};

/* Creates a sandbox; on success *ret is the `Sandbox` JSON of the API (a new reference). */
int orch_sandbox_create(struct orch *o, const struct orch_create *req, json_t **ret,
                        struct error_record *err);
/* Kills a running sandbox and forgets it. -ENOENT when there is none. */
int orch_sandbox_kill(struct orch *o, const char *id, struct error_record *err);
/* Sets the sandbox's end to now + timeout_s. With extend_only, a later end is kept (connect). */
int orch_sandbox_set_timeout(struct orch *o, const char *id, uint32_t timeout_s, bool extend_only,
                             struct error_record *err);
/* The `Sandbox` JSON of a running or paused sandbox. */
int orch_sandbox_connect_info(struct orch *o, const char *id, json_t **ret, struct error_record *err);
/* How a paused sandbox is kept: "memory", "filesystem", or "" when it is not paused. Writes
 * into ret (16 bytes). -ENOENT when unknown. */
int orch_sandbox_pause_mode(struct orch *o, const char *id, char *ret, struct error_record *err);

/* Pause writes the sandbox's writable layer to disk as a new layer (so the pause survives a
 * restart of the server or the machine) and, with keep_memory and while fewer than
 * max_paused_in_memory are, keeps it frozen in memory ("memory" mode: its processes resume as
 * they were); otherwise its processes end ("filesystem" mode: resume starts it again on its
 * saved layers, the template's start command included). A paused sandbox does not time out
 * and answers no traffic (unless it resumes on traffic). -ENOENT unknown, -EALREADY already
 * paused. */
int orch_sandbox_pause(struct orch *o, const char *id, bool keep_memory, struct error_record *err);
/* Resumes a paused sandbox with a new end of now + timeout_s (0: 300 s): thawed when it is
 * paused in memory (unless keep_memory is false: then its processes end and it starts again
 * from its saved filesystem), else started again on its saved layers. Returns 1 when it was
 * paused and now runs, 0 when it was running already (its end is then only extended). */
int orch_sandbox_resume(struct orch *o, const char *id, uint32_t timeout_s, bool keep_memory,
                        struct error_record *err);
/* Current usage of a running sandbox, its limits, and its CPU use in percent of its CPUs
 * averaged since the previous call (or since it started). */
int orch_sandbox_stats(struct orch *o, const char *id, struct runtime_stats *ret,
                       struct orch_limits *ret_limits, double *ret_cpu_pct, struct error_record *err);

/* A sample of a sandbox's usage history (taken every 5 s while it runs, the last hour kept). */
struct orch_metric_sample {
    int64_t at; /* unix seconds */
    double cpu_pct;
    uint64_t memory_bytes;
    uint64_t disk_bytes;
};
typedef int (*orch_metric_cb)(const struct orch_metric_sample *m, const struct orch_limits *limits,
                              void *userdata);
/* Calls cb for the samples taken between start and end (unix seconds; <= 0: unbounded), oldest
 * first. Returns how many, or -errno (-ENOENT unknown sandbox). */
int orch_sandbox_metrics(struct orch *o, const char *id, int64_t start, int64_t end, orch_metric_cb cb,
                         void *userdata, struct error_record *err);

/* The running sandbox whose access token makes `signature` a valid (possibly expired) URL
 * signature of /files for path, op ("read" or "write"), user and expiration (raw query values,
 * NULL when absent): how a signed upload/download URL, which names no sandbox, is routed.
 * One SHA-256 per running sandbox. Writes the id (STORE_SANDBOX_ID_MAX + 1 bytes) or returns
 * -ENOENT. */
int orch_sandbox_by_signature(struct orch *o, const char *path, const char *op, const char *user,
                              const char *expiration, const char *signature, char *ret_id);

/* envd's output lines (the last 1000, each at most 4 KiB) received at or after since_ms, up
 * to limit, oldest first: cb(at_ms, line, userdata); a negative return stops the walk. */
typedef int (*orch_log_line_cb)(int64_t at_ms, const char *line, void *userdata);
int orch_sandbox_logs(struct orch *o, const char *id, int64_t since_ms, size_t limit, orch_log_line_cb cb,
                      void *userdata, struct error_record *err);

/* Replaces the egress policy of a running or paused sandbox (e2b-compat: PUT
 * /sandboxes/{id}/network). https_ports as in orch_create, but NULL keeps the sandbox's (an
 * empty list clears them). -EOPNOTSUPP for a sandbox created offline. */
int orch_sandbox_set_network(struct orch *o, const char *id, bool allow_internet_access,
                             const char *const *allow_out, const char *const *deny_out,
                             const uint16_t *https_ports, struct error_record *err);

/* For the gateway: what it enforces on the sandbox's inbound traffic, copied into the caller's
 * buffers: the traffic access token ("" when public traffic is allowed; token_size at least
 * ORCH_TRAFFIC_TOKEN_MAX + 1) and network.maskRequestHost ("" when none; mask_size at least
 * ORCH_MASK_HOST_MAX + 1). Both are fixed at create, so this never waits for the sandbox's
 * operations (a paused sandbox answers too). -ENOENT when unknown. */
int orch_sandbox_ingress(struct orch *o, const char *id, char *ret_token, size_t token_size,
                         char *ret_mask_host, size_t mask_size);

/* For the gateway (gw_connect_cb): a new TCP socket in the sandbox's network namespace. */
int orch_sandbox_socket(void *orch, const char *id, uint16_t port, struct error_record *err);

/* Counters for the server's /metrics. Buckets are upper bounds in milliseconds. */
#define ORCH_CREATE_BUCKETS 10
extern const unsigned orch_create_bucket_ms[ORCH_CREATE_BUCKETS];
struct orch_metrics {
    uint64_t running;
    uint64_t paused;
    uint64_t creating;
    uint64_t pooled;
    uint64_t pool_hits; /* creates served from the pool */
    uint64_t creates;   /* succeeded */
    uint64_t create_failures;
    uint64_t timeouts;                               /* sandboxes killed by their timeout */
    uint64_t create_bucket[ORCH_CREATE_BUCKETS + 1]; /* cumulative counts per bucket; last: +Inf */
    double create_seconds_sum;
};
void orch_get_metrics(struct orch *o, struct orch_metrics *ret);

/* Starts building template_id's build build_id from spec (a TemplateBuildStartV2 object,
 * already validated for shape by the API) in the background; progress and logs go to the
 * store (status building -> ready | error). -EINVAL with err for a spec the builder
 * cannot build (unknown base image, ...). */
int orch_template_build_start(struct orch *o, const char *template_id, const char *build_id,
                              const json_t *spec, struct error_record *err);
/* Removes a template or snapshot (its names, tags, builds) and frees its layers once no
 * sandbox uses them. -ENOENT when unknown. */
int orch_template_delete(struct orch *o, const char *template_id, struct error_record *err);

/* createSnapshot: the sandbox's current filesystem as a new template (a snapshot; its processes
 * are not part of it). name (optional) becomes one of its names; a name that is already a
 * snapshot's gets a new build of that snapshot instead (-EEXIST for a template's name). hidden
 * leaves it out of the sandbox's snapshot list. Writes its id (STORE_TEMPLATE_ID_MAX + 1
 * bytes). */
int orch_sandbox_snapshot(struct orch *o, const char *id, const char *name, bool hidden, char *ret_id,
                          struct error_record *err);
/* Sandbox.fork: count new sandboxes from the sandbox's current filesystem, each with its env
 * vars, network and limits. *ret: the API's SandboxForkResult array ({sandbox} or {error}). */
int orch_sandbox_fork(struct orch *o, const char *id, unsigned count, uint32_t timeout_s, json_t **ret,
                      struct error_record *err);

/* Writes the templates' spawn statistics counted since the last write (a create counts them in
 * memory; the metrics sampler writes them every 5 s): for readers that want them current. */
void orch_flush_template_stats(struct orch *o);

/* The store, for read-only queries by the API (list, get). The caller holds orch_store_lock. */
struct store *orch_store_lock(struct orch *o);
void orch_store_unlock(struct orch *o);
