/* The context registry: see contexts.h. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "interpd/contexts.h"
#include "interpd/execute.h"
#include "interpd/http-get.h"
#include "interpd/snippets.h"
#include "common/banned.h"

#define SETUP_TIMEOUT (30 * USEC_PER_SEC)
#define ENVS_MAX (1 << 20)
/* envd is in the same sandbox: an answer takes milliseconds, or envd is not there. */
#define ENVS_TIMEOUT_MS 3000

struct contexts {
    const struct interpd_config *cfg;
    void *zmq_ctx;
    pthread_mutex_t lock; /* the arrays below, refs and deleted of every context */
    struct context **all;
    size_t n, cap;
    /* Default contexts by language; creation is serialized so two first requests for one
     * language make one context. */
    pthread_mutex_t create_lock;
    json_t *defaults;        /* language -> id */
    atomic_bool adopt_tried; /* cfg->adopt_kernel_dir is used once, by the first Python kernel */
};

char *contexts_normalize_language(const char *language)
{
    if (!language || !language[0])
        return xstrdup("python");
    char *l = xstrdup(language);
    for (char *p = l; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (streq(l, "js")) {
        free(l);
        return xstrdup("javascript");
    }
    if (streq(l, "ts")) {
        free(l);
        return xstrdup("typescript");
    }
    return l;
}

struct contexts *contexts_new(const struct interpd_config *cfg, void *zmq_ctx)
{
    struct contexts *cs = xcalloc(1, sizeof(*cs));
    cs->cfg = cfg;
    cs->zmq_ctx = zmq_ctx;
    pthread_mutex_init(&cs->lock, NULL);
    pthread_mutex_init(&cs->create_lock, NULL);
    cs->defaults = json_object();
    return cs;
}

static void context_free(struct context *ctx)
{
    kernel_free(ctx->kernel);
    pthread_mutex_destroy(&ctx->gate_lock);
    pthread_cond_destroy(&ctx->gate_cond);
    pthread_mutex_destroy(&ctx->kernel_lock);
    free(ctx->language);
    free(ctx->cwd);
    free(ctx);
}

void context_unref(struct contexts *cs, struct context *ctx)
{
    if (!ctx)
        return;
    pthread_mutex_lock(&cs->lock);
    bool last = --ctx->refs == 0;
    pthread_mutex_unlock(&cs->lock);
    if (last)
        context_free(ctx);
}

json_t *context_to_json(const struct context *ctx)
{
    return json_pack("{s:s, s:s, s:s}", "id", ctx->id, "language", ctx->language, "cwd", ctx->cwd);
}

bool context_gate_acquire(struct context *ctx, usec_t timeout)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (timeout % USEC_PER_SEC) * 1000;
    ts.tv_sec += (time_t)(timeout / USEC_PER_SEC) + (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&ctx->gate_lock);
    while (ctx->busy)
        if (pthread_cond_timedwait(&ctx->gate_cond, &ctx->gate_lock, &ts) == ETIMEDOUT)
            break;
    bool got = !ctx->busy;
    if (got)
        ctx->busy = true;
    pthread_mutex_unlock(&ctx->gate_lock);
    return got;
}

void context_gate_release(struct context *ctx)
{
    pthread_mutex_lock(&ctx->gate_lock);
    ctx->busy = false;
    pthread_cond_signal(&ctx->gate_cond);
    pthread_mutex_unlock(&ctx->gate_lock);
}

static void set_kernel(struct context *ctx, struct kernel *k)
{
    pthread_mutex_lock(&ctx->kernel_lock);
    struct kernel *old = ctx->kernel;
    ctx->kernel = k;
    pthread_mutex_unlock(&ctx->kernel_lock);
    kernel_free(old);
}

static void kill_kernel(struct context *ctx, int sig)
{
    pthread_mutex_lock(&ctx->kernel_lock);
    if (ctx->kernel)
        kernel_kill(ctx->kernel, sig);
    pthread_mutex_unlock(&ctx->kernel_lock);
}

int context_run_silent(struct context *ctx, const char *code, usec_t timeout, struct error_record *err)
{
    if (!ctx->kernel)
        return error_set(err, ESRCH, "the context has no kernel");
    return execution_run_silent(ctx->kernel, code, timeout, err);
}

/* Gate holder only. Starts a kernel for ctx (replacing a dead one) and runs the language's
 * setup. */
static int start_kernel(struct contexts *cs, struct context *ctx, struct error_record *err)
{
    set_kernel(ctx, NULL);
    ctx->envs_applied = false;
    const char *name = kernel_name_for_language(ctx->language);
    if (!name)
        return error_set(err, EINVAL, "unsupported language '%s'", ctx->language);
    struct kernelspec *ks = NULL;
    int r = kernelspec_find(cs->cfg->kernel_dirs, name, &ks, err);
    if (r == -ENOENT) {
        _cleanup_free_ char *installed = kernelspec_list_installed(cs->cfg->kernel_dirs);
        return error_set(err, ENOENT,
                         "no kernel for language '%s' is installed (kernelspec '%s' not found); installed "
                         "kernels: %s",
                         ctx->language, name, installed[0] ? installed : "none");
    }
    if (r < 0)
        return r;
    char parent[32];
    snprintf(parent, sizeof(parent), "JPY_PARENT_PID=%d", (int)getpid());
    /* ipykernel's debugger warns about frozen modules on every start otherwise. */
    char *const extra[] = { parent, (char *)"PYDEVD_DISABLE_FILE_VALIDATION=1", NULL };
    struct kernel_opts opts = {
        .cwd = ctx->cwd,
        .runtime_dir = cs->cfg->runtime_dir,
        .extra_env = extra,
        .start_timeout = cs->cfg->start_timeout,
    };
    struct kernel *k = NULL;
    r = -ENOENT;
    if (streq(ctx->language, "python") && cs->cfg->adopt_kernel_dir &&
        streq(ctx->cwd, cs->cfg->default_cwd) && !atomic_exchange(&cs->adopt_tried, true)) {
        struct error_record aerr;
        r = kernel_adopt(cs->zmq_ctx, cs->cfg->adopt_kernel_dir, &opts, &k, &aerr);
        if (r < 0)
            log_warn("context %s: the fork server's kernel: %s; starting one", ctx->id, aerr.msg);
    }
    if (r < 0)
        r = kernel_start(cs->zmq_ctx, ks, &opts, &k, err);
    kernelspec_free(ks);
    if (r < 0)
        return r;
    set_kernel(ctx, k);
    if (streq(ctx->language, "python") && cs->cfg->python_lib) {
        _cleanup_free_ char *setup = snippet_python_setup(cs->cfg->python_lib);
        struct error_record serr;
        if (setup && execution_run_silent(k, setup, SETUP_TIMEOUT, &serr) < 0)
            log_warn("context %s: python setup failed: %s", ctx->id, serr.msg);
    }
    log_info("context %s: %s kernel started (pid %d, cwd %s)", ctx->id, ctx->language, (int)kernel_pid(k),
             ctx->cwd);
    return 0;
}

/* GET <envd>/envs: the sandbox-wide environment. Returns 0 and an object of strings, or
 * -errno (unreachable, non-200, not an object). */
static int fetch_envs(const char *base, const char *token, json_t **ret, struct error_record *err)
{
    _cleanup_free_ char *url = xasprintf("%s/envs", base);
    _cleanup_free_ char *hdr = token ? xasprintf("X-Access-Token: %s", token) : NULL;
    struct buf b;
    buf_init(&b, ENVS_MAX);
    unsigned status = 0;
    int r = http_get(url, hdr, ENVS_TIMEOUT_MS, &status, &b, err);
    json_t *j = NULL;
    if (r >= 0 && status != 200)
        r = error_set(err, EIO, "%s: HTTP %u", url, status);
    else if (r >= 0)
        r = json_parse_object(b.data, b.len, &j, err);
    buf_release(&b);
    if (r < 0)
        return r;
    *ret = j;
    return 0;
}

static int apply_envs(struct contexts *cs, struct context *ctx, const char *token, struct error_record *err)
{
    static atomic_bool warned;
    _cleanup_json_ json_t *envs = NULL;
    struct error_record ferr;
    if (fetch_envs(cs->cfg->envd_url, token, &envs, &ferr) < 0) {
        if (!atomic_exchange(&warned, true))
            log_warn("not applying the sandbox's environment variables: %s", ferr.msg);
        return 0;
    }
    /* Only names a shell could export and string values. */
    const char *k;
    json_t *v, *tmp;
    json_object_foreach_safe (envs, tmp, k, v) {
        if (!json_is_string(v) || !snippet_env_name_valid(k))
            json_object_del(envs, k);
    }
    if (json_object_size(envs) == 0)
        return 0;
    _cleanup_free_ char *code = snippet_env_apply(ctx->language, envs);
    if (!code)
        return 0;
    return context_run_silent(ctx, code, SETUP_TIMEOUT, err);
}

int context_prepare(struct contexts *cs, struct context *ctx, bool with_envs, const char *access_token,
                    struct error_record *err)
{
    if (!ctx->kernel || !kernel_alive(ctx->kernel)) {
        if (ctx->kernel)
            log_info("context %s: the kernel died; restarting it", ctx->id);
        int r = start_kernel(cs, ctx, err);
        if (r < 0)
            return r;
    }
    if (with_envs && !ctx->envs_applied) {
        ctx->envs_applied = true;
        if (!cs->cfg->skip_envd) {
            struct error_record aerr;
            if (apply_envs(cs, ctx, access_token, &aerr) < 0)
                log_warn("context %s: cannot apply the sandbox's environment variables: %s", ctx->id,
                         aerr.msg);
        }
    }
    return 0;
}

static int create(struct contexts *cs, const char *language, const char *cwd, struct context **ret,
                  struct error_record *err)
{
    const char *name = kernel_name_for_language(language);
    if (!name) {
        _cleanup_free_ char *installed = kernelspec_list_installed(cs->cfg->kernel_dirs);
        return error_set(err, EINVAL,
                         "unsupported language '%s' (supported: python, r, javascript, typescript, bash; "
                         "installed kernels: %s)",
                         language, installed[0] ? installed : "none");
    }
    struct context *ctx = xcalloc(1, sizeof(*ctx));
    jmsg_uuid(ctx->id);
    ctx->language = xstrdup(language);
    ctx->cwd = xstrdup(cwd && cwd[0] ? cwd : cs->cfg->default_cwd);
    ctx->refs = 1;
    ctx->busy = true; /* nobody can see it yet; released below */
    pthread_mutex_init(&ctx->gate_lock, NULL);
    pthread_cond_init(&ctx->gate_cond, NULL);
    pthread_mutex_init(&ctx->kernel_lock, NULL);
    int r = start_kernel(cs, ctx, err);
    if (r < 0) {
        context_free(ctx);
        return r;
    }
    ctx->busy = false;
    pthread_mutex_lock(&cs->lock);
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? 2 * cs->cap : 16;
        cs->all = xreallocarray(cs->all, cs->cap, sizeof(*cs->all));
    }
    cs->all[cs->n++] = ctx;
    ctx->refs++; /* the caller's */
    pthread_mutex_unlock(&cs->lock);
    *ret = ctx;
    return 0;
}

int contexts_create(struct contexts *cs, const char *language, const char *cwd, struct context **ret,
                    struct error_record *err)
{
    return create(cs, language, cwd, ret, err);
}

struct context *contexts_get(struct contexts *cs, const char *id)
{
    struct context *found = NULL;
    pthread_mutex_lock(&cs->lock);
    for (size_t i = 0; i < cs->n; i++)
        if (streq(cs->all[i]->id, id)) {
            found = cs->all[i];
            found->refs++;
            break;
        }
    pthread_mutex_unlock(&cs->lock);
    return found;
}

int contexts_get_default(struct contexts *cs, const char *language, struct context **ret,
                         struct error_record *err)
{
    pthread_mutex_lock(&cs->create_lock);
    pthread_mutex_lock(&cs->lock);
    const char *id = json_get_string(cs->defaults, language);
    _cleanup_free_ char *idc = id ? xstrdup(id) : NULL;
    pthread_mutex_unlock(&cs->lock);
    struct context *ctx = idc ? contexts_get(cs, idc) : NULL;
    int r = 0;
    if (!ctx) {
        r = create(cs, language, NULL, &ctx, err);
        if (r >= 0) {
            pthread_mutex_lock(&cs->lock);
            json_object_set_new(cs->defaults, language, json_string(ctx->id));
            pthread_mutex_unlock(&cs->lock);
        }
    }
    pthread_mutex_unlock(&cs->create_lock);
    if (r >= 0)
        *ret = ctx;
    return r;
}

json_t *contexts_list(struct contexts *cs)
{
    json_t *a = json_array();
    pthread_mutex_lock(&cs->lock);
    for (size_t i = 0; i < cs->n; i++)
        json_array_append_new(a, context_to_json(cs->all[i]));
    pthread_mutex_unlock(&cs->lock);
    return a;
}

int contexts_delete(struct contexts *cs, const char *id)
{
    struct context *ctx = NULL;
    pthread_mutex_lock(&cs->lock);
    for (size_t i = 0; i < cs->n; i++)
        if (streq(cs->all[i]->id, id)) {
            ctx = cs->all[i];
            cs->all[i] = cs->all[--cs->n];
            ctx->deleted = true;
            break;
        }
    if (ctx) {
        const char *lang;
        json_t *v, *tmp;
        json_object_foreach_safe (cs->defaults, tmp, lang, v) {
            if (streq(json_string_value(v), id))
                json_object_del(cs->defaults, lang);
        }
    }
    pthread_mutex_unlock(&cs->lock);
    if (!ctx)
        return -ENOENT;
    /* An execution in flight sees its kernel die and ends; the last reference frees it. */
    kill_kernel(ctx, SIGKILL);
    log_info("context %s deleted", id);
    context_unref(cs, ctx);
    return 0;
}

int contexts_restart(struct contexts *cs, const char *id, struct error_record *err)
{
    struct context *ctx = contexts_get(cs, id);
    if (!ctx)
        return -ENOENT;
    kill_kernel(ctx, SIGKILL);
    int r;
    if (!context_gate_acquire(ctx, 60 * USEC_PER_SEC)) {
        r = error_set(err, EBUSY, "the context's running execution did not end");
    } else {
        r = start_kernel(cs, ctx, err);
        context_gate_release(ctx);
    }
    context_unref(cs, ctx);
    return r;
}

void contexts_shutdown(struct contexts *cs, usec_t grace)
{
    pthread_mutex_lock(&cs->lock);
    for (size_t i = 0; i < cs->n; i++)
        kill_kernel(cs->all[i], SIGTERM);
    pthread_mutex_unlock(&cs->lock);
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + grace;
    for (;;) {
        bool any = false;
        pthread_mutex_lock(&cs->lock);
        for (size_t i = 0; i < cs->n; i++) {
            pthread_mutex_lock(&cs->all[i]->kernel_lock);
            if (cs->all[i]->kernel && kernel_alive(cs->all[i]->kernel))
                any = true;
            pthread_mutex_unlock(&cs->all[i]->kernel_lock);
        }
        pthread_mutex_unlock(&cs->lock);
        if (!any || now_usec(CLOCK_MONOTONIC) >= deadline)
            break;
        usleep(20 * 1000);
    }
    pthread_mutex_lock(&cs->lock);
    for (size_t i = 0; i < cs->n; i++)
        kill_kernel(cs->all[i], SIGKILL);
    pthread_mutex_unlock(&cs->lock);
}

void contexts_free(struct contexts *cs)
{
    if (!cs)
        return;
    pthread_mutex_lock(&cs->lock);
    struct context **all = cs->all;
    size_t n = cs->n;
    cs->all = NULL;
    cs->n = 0;
    pthread_mutex_unlock(&cs->lock);
    for (size_t i = 0; i < n; i++)
        context_unref(cs, all[i]);
    free(all);
    json_decref(cs->defaults);
    pthread_mutex_destroy(&cs->lock);
    pthread_mutex_destroy(&cs->create_lock);
    free(cs);
}
