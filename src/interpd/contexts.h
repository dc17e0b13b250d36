/* Contexts: E2B's code-interpreter contexts, each one Jupyter kernel with a language and a
 * working directory, kept in a registry by id (a UUID, E2B's kernel id).
 *
 * Invariants: a context is reference-counted (the registry holds one reference until DELETE);
 * executions on one context are serialized by its gate, which any thread may release (an
 * execution that ends because its client went away is finished by MHD's cleanup, not by the
 * thread that started it). ctx->kernel is replaced only by a gate holder and only under
 * ctx->kernel_lock, so kill paths (DELETE, restart, shutdown) may signal it from any thread. */
#pragma once
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/error.h"
#include "common/time-util.h"
#include "interpd/kernel.h"

struct interpd_config {
    const char *listen;             /* ADDR:PORT */
    const char *python_lib;         /* directory prepended to Python kernels' sys.path */
    const char *preload;            /* code run in the default python context before serving, or NULL */
    const char *envd_url;           /* base URL of envd (for GET /envs) */
    const char *default_cwd;        /* working directory of contexts created without one */
    const char *runtime_dir;        /* private 0700 directory for connection files and sockets */
    const char *const *kernel_dirs; /* kernelspec search path */
    usec_t start_timeout;           /* kernel_info handshake limit */
    bool skip_envd;                 /* E2B_LOCAL: never ask envd for /envs */
    /* A directory where hutch's kernel fork server starts a Python kernel: the first Python
     * kernel interpd needs is that one (kernel_adopt), when it comes; NULL: none. */
    const char *adopt_kernel_dir;
};

struct context {
    char id[37];
    char *language;
    char *cwd;
    unsigned refs;       /* under the registry lock */
    atomic_bool deleted; /* set once, under the registry lock */

    /* The execution gate: busy while an execution (or a restart) owns the kernel. */
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    bool busy;

    pthread_mutex_t kernel_lock;
    struct kernel *kernel;
    bool envs_applied; /* sandbox-wide env applied to this kernel; gate holder only */
};

struct contexts;

struct contexts *contexts_new(const struct interpd_config *cfg, void *zmq_ctx);
/* Kills every kernel (SIGTERM to each group, then SIGKILL after grace), drops the registry's
 * references. Blocks up to grace. */
void contexts_shutdown(struct contexts *cs, usec_t grace);
void contexts_free(struct contexts *cs);

/* Lowercases, maps js/ts to javascript/typescript; NULL or "" gives python. free() it. */
char *contexts_normalize_language(const char *language);

/* Creates a context and starts its kernel (blocks ~1 s). Returns 0 and a new reference,
 * -EINVAL for an unsupported language, -ENOENT when its kernel is not installed (err names the
 * installed ones), or another -errno from the kernel start (err says why). */
int contexts_create(struct contexts *cs, const char *language, const char *cwd, struct context **ret,
                    struct error_record *err);
/* The default context of a language, created on first use. Same returns as contexts_create. */
int contexts_get_default(struct contexts *cs, const char *language, struct context **ret,
                         struct error_record *err);
/* A new reference, or NULL when unknown. */
struct context *contexts_get(struct contexts *cs, const char *id);
json_t *contexts_list(struct contexts *cs);
/* Removes the context and kills its kernel. -ENOENT when unknown. */
int contexts_delete(struct contexts *cs, const char *id);
/* Kills the kernel, waits for the gate, starts a fresh kernel with the same id. */
int contexts_restart(struct contexts *cs, const char *id, struct error_record *err);

void context_unref(struct contexts *cs, struct context *ctx);
json_t *context_to_json(const struct context *ctx);

/* The gate. acquire waits up to timeout; returns true when acquired. */
bool context_gate_acquire(struct context *ctx, usec_t timeout);
void context_gate_release(struct context *ctx);

/* For the gate holder, before an execution: restarts a dead kernel and, when with_envs is set and
 * this is the kernel's first such execution, applies the sandbox-wide env from envd
 * (access_token forwarded; may be NULL). Returns 0 or -errno with err filled. */
int context_prepare(struct contexts *cs, struct context *ctx, bool with_envs, const char *access_token,
                    struct error_record *err);

/* Runs code silently in the context (gate holder). See execution_run_silent(). */
int context_run_silent(struct context *ctx, const char *code, usec_t timeout, struct error_record *err);
