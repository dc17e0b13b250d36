/* Template builds (e2b-compat §5.2, §5.3): a TemplateBuildStartV2 spec becomes a stack of
 * read-only layers plus the settings sandboxes start with.
 *
 * Each RUN, COPY and WORKDIR step runs as the first process of a fresh build sandbox whose
 * lower layers are the stack so far; when it exits 0 its writable layer is exported
 * (runtime export_layer) as the step's layer. ENV and USER only change the settings. A step's
 * layer is named after a hash of everything that determines it (the stack below, the step,
 * the uploaded files' hash, the settings it runs with), so an unchanged step is reused from an
 * earlier build instead of run again, unless the step (or the build) is forced.
 *
 * Nothing from the build's inputs is interpreted on the host: commands run inside the build
 * sandbox, and COPY archives are unpacked there by the template's own tar, reading the upload
 * from stdin. The host only copies the exported layer, which the runtime does by fd without
 * following anything.
 *
 * Finally the template's start and ready commands are checked the way every create will run
 * them (§5.3): a sandbox is booted from the new template and counts as created only once the
 * ready command passes; a ready command that never passes fails the build. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/fs-util.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "template/debootstrap.h"
#include "common/banned.h"

#define BUILD_MAX_STEPS 256
#define BUILD_LINE_MAX 4096
#define BUILD_STEP_TIMEOUT (3600 * USEC_PER_SEC)
#define BUILD_DISK_BYTES (8ULL << 30)
#define BUILD_DEFAULT_MEMORY_MB 2048
#define BUILD_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct build {
    struct orch *o;
    char template_id[STORE_TEMPLATE_ID_MAX + 1];
    char build_id[STORE_BUILD_ID_MAX + 1];
    json_t *spec;
    uint32_t cpu_count, memory_mb, disk_mb;

    struct orch_stack stack; /* the layers so far, top first */
    char key[2 * SHA256_LEN + 1];
    /* The settings so far. */
    char *user;
    uid_t uid;
    gid_t gid;
    char *home;
    char *workdir;
    json_t *env;
    char step[32]; /* the step the log lines belong to */
};

/* ---- logging into the store ---- */

static void build_log(struct build *b, const char *level, const char *fmt, ...) _printf_(3, 4);
static void build_log(struct build *b, const char *level, const char *fmt, ...)
{
    char msg[BUILD_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct error_record err = { 0 };
    pthread_mutex_lock(&b->o->store_lock);
    store_build_log_append(b->o->store, b->build_id, (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC),
                           level, msg, b->step[0] ? b->step : NULL, &err);
    pthread_mutex_unlock(&b->o->store_lock);
}

/* ---- one process in a fresh build sandbox ---- */

struct run {
    const char *const *argv;
    const char *const *env;
    const char *cwd;
    uid_t uid;
    gid_t gid;
    int stdin_fd;           /* -1: /dev/null */
    const char *export_dir; /* where the writable layer goes when the process exits 0; NULL: nowhere */
    struct buf *capture;    /* stdout+stderr collected here instead of logged, when not NULL */
    const struct orch_stack *stack; /* NULL: the build's */
};

/* Splits output into lines for the log (or the capture buffer). */
struct output {
    struct build *b;
    struct buf *capture;
    char line[BUILD_LINE_MAX];
    size_t len;
};

static void output_flush(struct output *out)
{
    if (out->len == 0)
        return;
    out->line[out->len] = '\0';
    if (!out->capture)
        build_log(out->b, "info", "%s", out->line);
    out->len = 0;
}

static void output_feed(struct output *out, const char *data, size_t n)
{
    if (out->capture) {
        /* Only short answers (ids) are captured; more is ignored. */
        buf_append(out->capture, data, MIN(n, (size_t)4096));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n' || data[i] == '\r') {
            output_flush(out);
        } else {
            out->line[out->len++] = data[i];
            if (out->len == sizeof(out->line) - 1)
                output_flush(out);
        }
    }
}

static int run_in_build_sandbox(struct build *b, const struct run *q, int *ret_status,
                                struct error_record *err)
{
    struct orch *o = b->o;
    const struct runtime_ops *rt = o->cfg.runtime;
    const struct orch_stack *st = q->stack ? q->stack : &b->stack;
    unsigned slot;
    _cleanup_close_ int slot_fd = -1;
    int r = orch_slot_claim(MAX_SLOTS, &slot, &slot_fd, err);
    if (r < 0)
        return r;
    if (rt == &runtime_ns_ops && runtime_ns_slot_reset(&o->cfg.runtime_config, slot) < 0)
        return error_set(err, EBUSY, "slot %u holds leftovers that could not be removed", slot);

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0)
        return error_set_errno(err, errno, "pipe");
    _cleanup_close_ int out_r = pipefd[0];
    _cleanup_close_ int out_w = pipefd[1];

    struct runtime_layer layers[ORCH_MAX_LAYERS];
    size_t n_layers = orch_stack_layers(st, layers, ARRAY_SIZE(layers));
    char id[32], rnd[9];
    if (random_hex(rnd, 4) < 0)
        abort();
    snprintf(id, sizeof(id), "build-%s", rnd);
    struct runtime_spec spec = {
        .id = id,
        .slot = slot,
        .layers = layers,
        .n_layers = n_layers,
        .limits = {
            .memory_bytes = (uint64_t)(b->memory_mb ? b->memory_mb : BUILD_DEFAULT_MEMORY_MB) << 20,
            .disk_bytes = BUILD_DISK_BYTES,
            .cpu_millis = (b->cpu_count ? b->cpu_count : 2) * 1000,
            .pids_max = PIDS_MAX,
        },
        /* Builds download packages; the usual egress policy still holds (no private, host or
         * metadata addresses). */
        .net = RUNTIME_NET_ONLINE,
        .argv = q->argv,
        .env = q->env,
        .cwd = q->cwd,
        .uid = q->uid,
        .gid = q->gid,
        .allow_setuid = true,
        .stdin_fd = q->stdin_fd,
        .stdout_fd = out_w,
        .stderr_fd = out_w,
    };
    struct runtime_sandbox *sb = NULL;
    r = rt->create(&o->cfg.runtime_config, &spec, &sb, err);
    if (r < 0)
        return r;
    out_w = safe_close(out_w);
    r = rt->start(sb, err);
    if (r < 0) {
        rt->destroy(sb);
        return r;
    }

    struct output *out = xcalloc(1, sizeof(*out));
    out->b = b;
    out->capture = q->capture;
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + BUILD_STEP_TIMEOUT;
    int status = -ETIMEDOUT;
    bool eof = false;
    for (;;) {
        struct pollfd p = { .fd = out_r, .events = POLLIN };
        if (!eof && poll(&p, 1, 200) > 0) {
            char data[16384];
            ssize_t n = read(out_r, data, sizeof(data));
            if (n > 0)
                output_feed(out, data, (size_t)n);
            else if (n == 0)
                eof = true;
            if (n != 0)
                continue;
        }
        usec_t now = now_usec(CLOCK_MONOTONIC);
        pthread_mutex_lock(&o->lock);
        bool stopping = o->stopping;
        pthread_mutex_unlock(&o->lock);
        if (now >= deadline || stopping) {
            status = stopping ? -ECANCELED : -ETIMEDOUT;
            break;
        }
        /* Output ends when every writer is gone; the first process may exit before that, and
         * its background children die with its pid namespace. */
        status = rt->wait(sb, eof ? deadline - now : 0);
        if (status >= 0 || status != -ETIMEDOUT)
            break;
    }
    for (;;) {
        char data[16384];
        ssize_t n = read(out_r, data, sizeof(data));
        if (n <= 0)
            break;
        output_feed(out, data, (size_t)n);
    }
    output_flush(out);
    free(out);

    if (status == -ECANCELED)
        r = error_set(err, ECANCELED, "the server is shutting down");
    else if (status == -ETIMEDOUT)
        r = error_set(err, ETIMEDOUT, "the step ran longer than %llu s",
                      (unsigned long long)(BUILD_STEP_TIMEOUT / USEC_PER_SEC));
    else if (status < 0)
        r = error_set_errno(err, status, "waiting for the build step");
    else if (q->export_dir && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        r = rt->export_layer(sb, q->export_dir, err);
    int d = rt->destroy(sb);
    if (r >= 0 && d < 0)
        r = error_set_errno(err, d, "removing the build sandbox");
    if (r >= 0)
        *ret_status = status;
    return r;
}

/* ---- settings ---- */

static char **step_env(struct build *b)
{
    size_t n = json_object_size(b->env);
    char **env = xcalloc(n + 6, sizeof(char *));
    size_t i = 0;
    env[i++] = xstrdup(BUILD_PATH);
    env[i++] = xasprintf("HOME=%s", b->home);
    env[i++] = xasprintf("USER=%s", b->user);
    env[i++] = xstrdup("LANG=C.UTF-8");
    const char *k;
    json_t *v;
    json_object_foreach (b->env, k, v)
        env[i++] = xasprintf("%s=%s", k, json_string_value(v));
    return env;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Resolves a user of the image the way its own tools see it (its /etc/passwd, NSS): runs `id`
 * inside a build sandbox. */
static int resolve_user(struct build *b, const char *user, uid_t *ret_uid, gid_t *ret_gid, char **ret_home,
                        struct error_record *err)
{
    const char *argv[] = {
        "/bin/sh",
        "-c",
        "id -u \"$1\" && id -g \"$1\" && { getent passwd \"$1\" || grep \"^$1:\" /etc/passwd; } "
        "| cut -d: -f6",
        "sh",
        user,
        NULL
    };
    const char *env[] = { BUILD_PATH, NULL };
    struct buf cap;
    buf_init(&cap, 8192);
    struct run q = { .argv = argv, .env = env, .cwd = "/", .stdin_fd = -1, .capture = &cap };
    int status;
    int r = run_in_build_sandbox(b, &q, &status, err);
    unsigned long uid = 0, gid = 0;
    char home[512] = "";
    bool ok = r >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && cap.data &&
              sscanf(cap.data, "%lu\n%lu\n%511[^\n]", &uid, &gid, home) >= 2;
    buf_release(&cap);
    if (r < 0)
        return r;
    if (!ok)
        return error_set(err, EINVAL, "user '%s' does not exist in the image", user);
    if (uid > 65535 || gid > 65535)
        return error_set(err, EINVAL, "user '%s' has an id above 65535, outside a sandbox's range", user);
    *ret_uid = (uid_t)uid;
    *ret_gid = (gid_t)gid;
    *ret_home = xstrdup(home[0] == '/' ? home : "/");
    return 0;
}

static json_t *config_json(const struct build *b)
{
    json_t *c = json_pack("{s:s, s:i, s:i, s:s, s:s, s:O}", "user", b->user, "uid", (json_int_t)b->uid, "gid",
                          (json_int_t)b->gid, "home", b->home, "workdir", b->workdir, "env", b->env);
    if (!c)
        abort();
    return c;
}

/* ---- steps ---- */

/* The key of a step's layer: everything that determines its content. */
static void step_key(struct build *b, const json_t *step, char out[2 * SHA256_LEN + 1])
{
    json_t *what = json_pack("{s:s, s:O, s:O, s:o}", "below", b->key, "type", json_object_get(step, "type"),
                             "args", json_object_get(step, "args"), "config", config_json(b));
    const char *fh = json_get_string(step, "filesHash");
    if (fh)
        json_object_set_new(what, "filesHash", json_string(fh));
    _cleanup_free_ char *s = json_dumps(what, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(what);
    sha256_hex(s, strlen(s), out);
}

static bool dir_is_empty(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return true;
    DIR *d = fdopendir(fd);
    if (!d)
        return true;
    fd = -1;
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = streq(de->d_name, ".") || streq(de->d_name, "..");
    closedir(d);
    return empty;
}

/* Puts the layer directory `key` (one subdirectory per target of the stack it was built on)
 * on top of the stack, skipping targets the step did not change. */
static int push_layer(struct build *b, const char *key, struct error_record *err)
{
    const char *targets[ORCH_MAX_TARGETS];
    size_t n = orch_stack_targets(&b->stack, targets, ORCH_MAX_TARGETS);
    struct orch_stack top = { 0 };
    int r = 0;
    for (size_t i = 0; i < n && r >= 0; i++) {
        _cleanup_free_ char *id = xasprintf("%s/%zu", key, i);
        _cleanup_free_ char *path = orch_layer_path(b->o, id);
        if (!dir_is_empty(path))
            r = orch_stack_push(b->o, &top, id, targets[i], err);
    }
    /* New layers go on top: rebuild the stack as top + old. */
    if (r >= 0 && b->stack.n + top.n > ORCH_MAX_LAYERS)
        r = error_set(err, E2BIG, "the template would have more than %d layers", ORCH_MAX_LAYERS);
    if (r >= 0) {
        orch_stack_copy(&b->stack, &top);
        orch_stack_release(&b->stack);
        b->stack = top;
    } else {
        orch_stack_release(&top);
    }
    return r;
}

/* Where this build writes a layer before it is installed as layers/<key>: named after the
 * build too, so that builds running the same step at once do not share it. (What a stopped
 * server leaves there goes with the next layer collection: nothing names it.) */
static char *build_tmp_path(const struct build *b, const char *key, const char *suffix)
{
    return xasprintf("%s/layers/.tmp-%s-%s%s", b->o->state_dir, key, b->build_id, suffix);
}

/* Runs argv in a build sandbox and makes its writable layer the next layer, or reuses the
 * layer of an identical earlier step. */
static int layer_step(struct build *b, const json_t *step, bool force, const char *const *argv,
                      const char *cwd, uid_t uid, gid_t gid, int stdin_fd, struct error_record *err)
{
    char key[2 * SHA256_LEN + 1];
    step_key(b, step, key);
    if (force) {
        /* A forced step gets a layer of its own: the cached one may be in use by sandboxes
         * and other builds, and is never changed. */
        char nonce[17];
        if (random_hex(nonce, 8) < 0)
            abort();
        _cleanup_free_ char *k = xasprintf("%s|forced|%s", key, nonce);
        sha256_hex(k, strlen(k), key);
    }
    _cleanup_free_ char *dir = orch_layer_path(b->o, key);
    struct stat st;
    if (!force && stat(dir, &st) == 0) {
        build_log(b, "info", "cached");
    } else {
        /* Builds run side by side, and two of them may run the same step: each exports into
         * a directory of its own. */
        _cleanup_free_ char *tmp = build_tmp_path(b, key, "");
        rm_rf(tmp);
        char **env = step_env(b);
        struct run q = { .argv = argv,
                         .env = (const char *const *)env,
                         .cwd = cwd ? cwd : b->workdir,
                         .uid = uid,
                         .gid = gid,
                         .stdin_fd = stdin_fd,
                         .export_dir = tmp };
        int status = 0;
        int r = run_in_build_sandbox(b, &q, &status, err);
        strv_free(env);
        if (r < 0) {
            rm_rf(tmp);
            return r;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            rm_rf(tmp);
            return WIFEXITED(status)
                       ? error_set(err, EINVAL, "the command exited with code %d", WEXITSTATUS(status))
                       : error_set(err, EINVAL, "the command was killed by signal %d", WTERMSIG(status));
        }
        if (rename(tmp, dir) < 0) {
            int e = errno;
            rm_rf(tmp);
            /* Another build installed the same step's layer meanwhile: that one is used. */
            if ((e != EEXIST && e != ENOTEMPTY) || stat(dir, &st) < 0)
                return error_set_errno(err, e, "installing layer %s", key);
        }
    }
    memcpy(b->key, key, sizeof(key));
    return push_layer(b, key, err);
}

static const char *arg(const json_t *step, size_t i)
{
    const char *s = json_string_value(json_array_get(json_object_get(step, "args"), i));
    return s ? s : "";
}

static char *join_path(const char *base, const char *p)
{
    if (p[0] == '/')
        return xstrdup(p);
    return xasprintf("%s%s%s", base, str_endswith(base, "/") ? "" : "/", p);
}

/* The copy runs inside the sandbox as root: the upload (a gzip'd tar rooted at the build
 * context) arrives on stdin, is unpacked into a scratch directory, given its owner and mode,
 * and copied into place with Docker's rules (a directory's contents go into dest; a file
 * becomes dest, or goes into it when dest ends in "/" or is a directory). */
static const char copy_script[] =
    "set -e\n"
    "src=$1 dest=$2 owner=$3 mode=$4\n"
    "tmp=$(mktemp -d /tmp/.hutch-copy.XXXXXX)\n"
    "tar -xzf - -C \"$tmp\" --no-same-owner 2>/dev/null || tar -xzf - -C \"$tmp\"\n"
    "chown -R \"$owner\" \"$tmp\"\n"
    "[ -z \"$mode\" ] || chmod -R \"$mode\" \"$tmp\"\n"
    "found=\n"
    "for s in \"$tmp\"/$src; do\n"
    "  [ -e \"$s\" ] || [ -L \"$s\" ] || continue\n"
    "  found=1\n"
    "  if [ -d \"$s\" ] && [ ! -L \"$s\" ]; then\n"
    "    mkdir -p \"$dest\"; cp -a \"$s/.\" \"$dest/\"\n"
    "  else\n"
    "    case $dest in */) mkdir -p \"$dest\" ;; *) [ -d \"$dest\" ] || mkdir -p \"$(dirname \"$dest\")\" ;; "
    "esac\n"
    "    cp -a \"$s\" \"$dest\"\n"
    "  fi\n"
    "done\n"
    "rm -rf \"$tmp\"\n"
    "[ -n \"$found\" ] || { echo \"COPY: $src matches nothing in the uploaded files\" >&2; exit 1; }\n";

static int step_copy(struct build *b, const json_t *step, bool force, struct error_record *err)
{
    const char *hash = json_get_string(step, "filesHash");
    _cleanup_free_ char *path = xasprintf("%s/cache/files/%s.tar.gz", b->o->state_dir, hash ? hash : "");
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return error_set_errno(err, errno, "the files of this COPY were not uploaded");
    const char *src = arg(step, 0);
    _cleanup_free_ char *dest = join_path(b->workdir, arg(step, 1));
    const char *user = arg(step, 2);
    char owner[64];
    if (*user) {
        str_copy(owner, sizeof(owner), user);
    } else {
        snprintf(owner, sizeof(owner), "%u:%u", (unsigned)b->uid, (unsigned)b->gid);
    }
    /* The pattern is matched by the shell against the unpacked upload only. */
    if (!*src || src[0] == '/' || strstr(src, ".."))
        return error_set(err, EINVAL, "COPY source '%s' must be relative to the build context", src);
    const char *argv[] = { "/bin/sh", "-c", copy_script, "sh", src, dest, owner, arg(step, 3), NULL };
    return layer_step(b, step, force, argv, NULL, 0, 0, fd, err);
}

static int step_run(struct build *b, const json_t *step, bool force, struct error_record *err)
{
    const char *cmd = arg(step, 0), *user = arg(step, 1);
    uid_t uid = b->uid;
    gid_t gid = b->gid;
    if (*user && !streq(user, b->user)) {
        _cleanup_free_ char *home = NULL;
        int r = resolve_user(b, user, &uid, &gid, &home, err);
        if (r < 0)
            return r;
    }
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    return layer_step(b, step, force, argv, NULL, uid, gid, -1, err);
}

static int step_workdir(struct build *b, const json_t *step, bool force, struct error_record *err)
{
    _cleanup_free_ char *dir = join_path(b->workdir, arg(step, 0));
    char owner[32];
    snprintf(owner, sizeof(owner), "%u:%u", (unsigned)b->uid, (unsigned)b->gid);
    /* Created for the user who works there (Docker would make it root's); run from "/", since
     * the new directory may not exist yet. */
    const char *argv[] = { "/bin/sh", "-c", "[ -d \"$1\" ] || { mkdir -p \"$1\" && chown \"$2\" \"$1\"; }",
                           "sh",      dir,  owner,
                           NULL };
    int r = layer_step(b, step, force, argv, "/", 0, 0, -1, err);
    free(b->workdir);
    b->workdir = TAKE_PTR(dir);
    return r;
}

static int step_user(struct build *b, const json_t *step, struct error_record *err)
{
    const char *user = arg(step, 0);
    uid_t uid;
    gid_t gid;
    char *home = NULL;
    int r = resolve_user(b, user, &uid, &gid, &home, err);
    if (r < 0)
        return r;
    free(b->user);
    free(b->home);
    b->user = xstrdup(user);
    b->uid = uid;
    b->gid = gid;
    b->home = home;
    return 0;
}

static int step_env_set(struct build *b, const json_t *step, struct error_record *err)
{
    const json_t *args = json_object_get(step, "args");
    if (json_array_size(args) % 2)
        return error_set(err, EINVAL, "ENV needs key, value pairs");
    for (size_t i = 0; i + 1 < json_array_size(args); i += 2) {
        const char *k = arg(step, i);
        if (!*k || strchr(k, '='))
            return error_set(err, EINVAL, "ENV: bad variable name '%s'", k);
        json_object_set_new(b->env, k, json_string(arg(step, i + 1)));
    }
    return 0;
}

/* Images that are not templates get what every sandbox needs: envd's mount point and E2B's
 * default user `user` (1000) with a home, the user commands run as by default. */
static const char provision_script[] =
    "set -e\n"
    "mkdir -p /opt/hutch /tmp /home\n"
    "chmod 1777 /tmp\n"
    "if ! id user >/dev/null 2>&1; then\n"
    "  if command -v useradd >/dev/null 2>&1; then\n"
    "    useradd -m -u 1000 -U -s /bin/bash user || useradd -m -s /bin/sh user\n"
    "  elif adduser -D -u 1000 user 2>/dev/null; then :\n"
    "  else\n"
    "    echo 'user:x:1000:1000:user:/home/user:/bin/sh' >> /etc/passwd\n"
    "    grep -q '^user:' /etc/group 2>/dev/null || echo 'user:x:1000:' >> /etc/group\n"
    "    mkdir -p /home/user && chown 1000:1000 /home/user\n"
    "  fi\n"
    "fi\n";

/* ---- the base ---- */

static int load_base_template(struct build *b, const char *ref, struct error_record *err)
{
    struct orch_template *t = NULL;
    int r = orch_template_load(b->o, ref, &t, err);
    if (r < 0)
        return r;
    orch_stack_copy(&t->stack, &b->stack);
    b->user = xstrdup(t->user);
    b->uid = t->uid;
    b->gid = t->gid;
    b->home = xstrdup(t->home);
    b->workdir = xstrdup(t->workdir);
    b->env = json_deep_copy(t->env);
    orch_template_free(t);
    return 0;
}

static void template_log_line(const char *line, void *userdata)
{
    build_log(userdata, "info", "%s", line);
}

/* The script that unpacks a root filesystem tarball in a build sandbox made from `base`: the
 * upload (a gzip'd tar holding rootfs.tar, see the user guide) arrives on stdin; the tarball's
 * own compression is detected by tar. Device nodes cannot be made in a sandbox and are left
 * out (the runtime gives every sandbox its own /dev). */
static const char unpack_script[] =
    "set -e\n"
    "mkdir -p /rootfs /tmp/.hutch-in\n"
    "tar -xzf - -C /tmp/.hutch-in rootfs.tar\n"
    "tar -xf /tmp/.hutch-in/rootfs.tar -C /rootfs --numeric-owner --same-owner --same-permissions "
    "--exclude=./dev/* --exclude=dev/*\n"
    "rm -rf /tmp/.hutch-in\n"
    "cd /rootfs && mkdir -p proc dev sys tmp etc opt/hutch && chmod 1777 tmp\n";

/* A tarball base: unpacked inside a sandbox of `base` (the host never reads the archive), and
 * its exported /rootfs becomes the template's first layer. */
static int load_tarball(struct build *b, const char *hash, struct error_record *err)
{
    if (strlen(hash) != 2 * SHA256_LEN || strspn(hash, "0123456789abcdef") != 2 * SHA256_LEN)
        return error_set(err, EINVAL, "tarball image: '%s' is not a files hash", hash);
    char key[2 * SHA256_LEN + 1];
    _cleanup_free_ char *what = xasprintf("tarball:%s", hash);
    sha256_hex(what, strlen(what), key);
    _cleanup_free_ char *id = xasprintf("%s/0", key);
    _cleanup_free_ char *dir = xasprintf("%s/layers/%s", b->o->state_dir, key);
    struct stat st;
    if (stat(dir, &st) == 0) {
        build_log(b, "info", "cached");
        return orch_stack_push(b->o, &b->stack, id, "/", err);
    }
    _cleanup_free_ char *upload = xasprintf("%s/cache/files/%s.tar.gz", b->o->state_dir, hash);
    _cleanup_close_ int fd = open(upload, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return error_set_errno(err, errno, "the tarball was not uploaded");
    struct orch_template *host = NULL;
    int r = orch_template_load(b->o, ORCH_DEFAULT_TEMPLATE, &host, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *tmp = build_tmp_path(b, key, "");
    _cleanup_free_ char *out = build_tmp_path(b, key, ".out");
    rm_rf(tmp);
    rm_rf(out);
    const char *argv[] = { "/bin/sh", "-c", unpack_script, NULL };
    const char *env[] = { BUILD_PATH, "HOME=/root", NULL };
    struct run q = {
        .argv = argv, .env = env, .cwd = "/", .stdin_fd = fd, .export_dir = tmp, .stack = &host->stack
    };
    int status = 0;
    r = run_in_build_sandbox(b, &q, &status, err);
    orch_template_free(host);
    if (r >= 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        r = error_set(err, EINVAL, "unpacking the tarball failed (see the log)");
    /* Only the unpacked tree is the layer: <key>/0 is the export's /rootfs. */
    _cleanup_free_ char *rootfs = xasprintf("%s/0/rootfs", tmp);
    _cleanup_free_ char *out0 = xasprintf("%s/0", out);
    if (r >= 0 && (mkdir(out, 0700) < 0 || rename(rootfs, out0) < 0))
        r = error_set_errno(err, errno, "keeping the unpacked tarball");
    if (r >= 0 && rename(out, dir) < 0) {
        int e = errno;
        /* Another build unpacked the same tarball meanwhile: that one is used. */
        if ((e != EEXIST && e != ENOTEMPTY) || stat(dir, &st) < 0)
            r = error_set_errno(err, e, "installing layer %s", key);
    }
    rm_rf(tmp);
    rm_rf(out);
    if (r < 0)
        return r;
    return orch_stack_push(b->o, &b->stack, id, "/", err);
}

/* Images that are not templates: the image's root as the first layer, then what every
 * sandbox needs (provision_script), and E2B's default user. */
static int load_image(struct build *b, const char *image, struct error_record *err)
{
    char suite[32];
    int r;
    if (str_startswith(image, "tarball:")) {
        r = load_tarball(b, image + strlen("tarball:"), err);
    } else if (orch_image_debian_suite(image, suite) >= 0) {
        _cleanup_free_ char *cache = xasprintf("%s/cache", b->o->state_dir);
        _cleanup_free_ char *path = NULL;
        r = template_debootstrap(cache, suite, template_log_line, b, &path, err);
        _cleanup_free_ char *id = xasprintf("debootstrap/%s", suite);
        if (r >= 0)
            r = orch_stack_push(b->o, &b->stack, id, "/", err);
    } else {
        r = error_set(err, EINVAL, "image '%s' is not supported", image);
    }
    if (r < 0)
        return r;
    b->user = xstrdup("root");
    b->home = xstrdup("/root");
    b->workdir = xstrdup("/");
    b->env = json_object();
    sha256_hex(b->stack.ids[0], strlen(b->stack.ids[0]), b->key);

    json_t *step = json_pack("{s:s, s:[s]}", "type", "PROVISION", "args", provision_script);
    const char *argv[] = { "/bin/sh", "-c", provision_script, NULL };
    str_copy(b->step, sizeof(b->step), "base");
    r = layer_step(b, step, false, argv, NULL, 0, 0, -1, err);
    json_decref(step);
    if (r < 0)
        return r;
    free(b->user);
    free(b->home);
    free(b->workdir);
    b->user = xstrdup("user");
    b->uid = 1000;
    b->gid = 1000;
    b->home = xstrdup("/home/user");
    b->workdir = xstrdup("/home/user");
    /* The real ids, in case the image already had a `user`. */
    _cleanup_free_ char *home = NULL;
    r = resolve_user(b, "user", &b->uid, &b->gid, &home, err);
    if (r >= 0) {
        free(b->home);
        b->home = TAKE_PTR(home);
        free(b->workdir);
        b->workdir = xstrdup(b->home);
    }
    return r;
}

static int load_base(struct build *b, struct error_record *err)
{
    const char *from_template = json_get_string(b->spec, "fromTemplate");
    const char *image = json_get_string(b->spec, "fromImage");
    if (from_template)
        return load_base_template(b, from_template, err);
    if (orch_image_is_host(image))
        return load_base_template(b, ORCH_DEFAULT_TEMPLATE, err);
    if (!image)
        return error_set(err, EINVAL, "neither fromImage nor fromTemplate");
    return load_image(b, image, err);
}

bool orch_image_is_host(const char *image)
{
    return image && (streq(image, "host") || streq(image, "base") || streq(image, "e2bdev/base") ||
                     str_startswith(image, "e2bdev/base:"));
}

int orch_image_debian_suite(const char *image, char ret[32])
{
    static const char *const names[][2] = {
        { "debian:bookworm", "bookworm" },
        { "debian:12", "bookworm" },
        { "debian:bookworm-slim", "bookworm" },
        { "debian:12-slim", "bookworm" },
    };
    for (size_t i = 0; image && i < ARRAY_SIZE(names); i++)
        if (streq(image, names[i][0])) {
            str_copy(ret, 32, names[i][1]);
            return 0;
        }
    return -EINVAL;
}

/* ---- the whole build ---- */

static int run_build(struct build *b, char **ret_step, struct error_record *err)
{
    bool force_all = json_is_true(json_object_get(b->spec, "force"));
    str_copy(b->step, sizeof(b->step), "base");
    build_log(b, "info", "Building template %s (build %s)", b->template_id, b->build_id);
    int r = load_base(b, err);
    if (r < 0) {
        *ret_step = xstrdup("base");
        return r;
    }
    if (!b->key[0])
        for (size_t i = 0; i < b->stack.n; i++) {
            char prev[sizeof(b->key)];
            memcpy(prev, b->key, sizeof(prev));
            _cleanup_free_ char *s = xasprintf("%s|%s|%s", prev, b->stack.ids[i], b->stack.targets[i]);
            sha256_hex(s, strlen(s), b->key);
        }

    const json_t *steps = json_object_get(b->spec, "steps");
    size_t i;
    json_t *step;
    json_array_foreach (steps, i, step) {
        snprintf(b->step, sizeof(b->step), "%zu", i + 1);
        const char *type = json_get_string(step, "type");
        _cleanup_free_ char *args = json_dumps(json_object_get(step, "args"), JSON_COMPACT);
        build_log(b, "info", "Step %zu/%zu: %s %s", i + 1, json_array_size(steps), type ? type : "?",
                  args ? args : "[]");
        bool force = force_all || json_is_true(json_object_get(step, "force"));
        if (!type)
            r = error_set(err, EINVAL, "step without a type");
        else if (streq(type, "RUN"))
            r = step_run(b, step, force, err);
        else if (streq(type, "COPY"))
            r = step_copy(b, step, force, err);
        else if (streq(type, "WORKDIR"))
            r = step_workdir(b, step, force, err);
        else if (streq(type, "USER"))
            r = step_user(b, step, err);
        else if (streq(type, "ENV"))
            r = step_env_set(b, step, err);
        else
            r = error_set(err, EINVAL, "unknown step type %s", type);
        if (r < 0) {
            *ret_step = xstrdup(b->step);
            return r;
        }
    }

    str_copy(b->step, sizeof(b->step), "finalize");
    json_t *config = config_json(b);
    const char *start = json_get_string(b->spec, "startCmd"), *ready = json_get_string(b->spec, "readyCmd");
    if (start && *start)
        json_object_set_new(config, "startCmd", json_string(start));
    /* §5.3: without a ready command, `sleep 20` after a start command, else nothing to wait
     * for. */
    if (ready && *ready)
        json_object_set_new(config, "readyCmd", json_string(ready));
    else if (start && *start)
        json_object_set_new(config, "readyCmd", json_string("sleep 20"));
    _cleanup_free_ char *config_s = json_dump_compact(config, NULL);
    json_decref(config);
    json_t *layers = orch_stack_to_json(&b->stack);
    _cleanup_free_ char *layers_s = json_dump_compact(layers, NULL);
    json_decref(layers);

    /* Check the template the way a create uses it: boot a sandbox, run the start command,
     * wait for the ready command. */
    struct store_build rec = { .cpu_count = b->cpu_count, .memory_mb = b->memory_mb, .disk_mb = b->disk_mb };
    str_copy(rec.id, sizeof(rec.id), b->build_id);
    str_copy(rec.template_id, sizeof(rec.template_id), b->template_id);
    rec.layers_json = layers_s;
    rec.config_json = config_s;
    struct orch_template *t = NULL;
    r = orch_template_from_build(b->o, &rec, &t, err);
    if (r >= 0) {
        build_log(b, "info", "Starting a sandbox from the template%s",
                  t->start_cmd ? " (start and ready commands)" : "");
        r = orch_template_check(b->o, t, err);
        orch_template_free(t);
    }
    if (r < 0) {
        *ret_step = xstrdup("finalize");
        return r;
    }
    pthread_mutex_lock(&b->o->store_lock);
    r = store_build_finish(b->o->store, b->build_id, STORE_BUILD_READY, layers_s, config_s, NULL, NULL, err);
    pthread_mutex_unlock(&b->o->store_lock);
    return r;
}

static void build_free(struct build *b)
{
    orch_stack_release(&b->stack);
    json_decref(b->spec);
    json_decref(b->env);
    free(b->user);
    free(b->home);
    free(b->workdir);
    free(b);
}

static void *build_main(void *arg)
{
    struct build *b = arg;
    struct orch *o = b->o;
    struct error_record err = { 0 };
    _cleanup_free_ char *failed_step = NULL;
    usec_t began = now_usec(CLOCK_MONOTONIC);
    int r = run_build(b, &failed_step, &err);
    if (r < 0) {
        build_log(b, "error", "Build failed: %s", err.msg[0] ? err.msg : errno_to_string(r));
        pthread_mutex_lock(&o->store_lock);
        struct error_record e2 = { 0 };
        store_build_finish(o->store, b->build_id, STORE_BUILD_ERROR, NULL, NULL,
                           err.msg[0] ? err.msg : errno_to_string(r), failed_step ? failed_step : "", &e2);
        pthread_mutex_unlock(&o->store_lock);
    } else {
        b->step[0] = '\0';
        build_log(b, "info", "Template %s is ready (%.1f s)", b->template_id,
                  (double)(now_usec(CLOCK_MONOTONIC) - began) / (double)USEC_PER_SEC);
    }
    build_free(b);
    pthread_mutex_lock(&o->lock);
    o->n_building--;
    pthread_cond_broadcast(&o->builds_done);
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

int orch_template_build_start(struct orch *o, const char *template_id, const char *build_id,
                              const json_t *spec, struct error_record *err)
{
    const char *image = json_get_string(spec, "fromImage");
    const char *from_template = json_get_string(spec, "fromTemplate");
    char suite[32];
    if (!from_template && !orch_image_is_host(image) && orch_image_debian_suite(image, suite) < 0 &&
        !str_startswith(image, "tarball:"))
        return error_set(err, EINVAL,
                         "image '%s' is not supported: use a template (fromTemplate), e2bdev/base (the host "
                         "base), debian:bookworm, or a root filesystem tarball (tarball:<files hash>)",
                         image ? image : "");
    if (json_array_size(json_object_get(spec, "steps")) > BUILD_MAX_STEPS)
        return error_set(err, EINVAL, "more than %d steps", BUILD_MAX_STEPS);

    struct store_build rec = { 0 };
    pthread_mutex_lock(&o->store_lock);
    int r = store_build_get(o->store, template_id, build_id, &rec, err);
    if (r >= 0 && rec.status != STORE_BUILD_WAITING)
        r = error_set(err, EALREADY, "build %s has already been started", build_id);
    if (r >= 0)
        r = store_build_set_status(o->store, build_id, STORE_BUILD_BUILDING, err);
    pthread_mutex_unlock(&o->store_lock);
    if (r < 0) {
        store_build_release(&rec);
        return r;
    }

    struct build *b = xcalloc(1, sizeof(*b));
    b->o = o;
    str_copy(b->template_id, sizeof(b->template_id), template_id);
    str_copy(b->build_id, sizeof(b->build_id), build_id);
    b->spec = json_deep_copy(spec);
    b->cpu_count = rec.cpu_count;
    b->memory_mb = rec.memory_mb;
    b->disk_mb = rec.disk_mb;
    store_build_release(&rec);

    pthread_mutex_lock(&o->lock);
    bool stopping = o->stopping;
    if (!stopping)
        o->n_building++;
    pthread_mutex_unlock(&o->lock);
    if (stopping) {
        build_free(b);
        return error_set(err, EAGAIN, "the server is shutting down");
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    r = -pthread_create(&th, &attr, build_main, b);
    pthread_attr_destroy(&attr);
    if (r < 0) {
        pthread_mutex_lock(&o->lock);
        o->n_building--;
        pthread_mutex_unlock(&o->lock);
        build_free(b);
        return error_set_errno(err, r, "starting the build");
    }
    return 0;
}

int orch_template_delete(struct orch *o, const char *template_id, struct error_record *err)
{
    if (streq(template_id, ORCH_DEFAULT_TEMPLATE))
        return error_set(err, EPERM, "the built-in template base cannot be deleted");
    pthread_mutex_lock(&o->store_lock);
    int r = store_template_delete(o->store, template_id, err);
    pthread_mutex_unlock(&o->store_lock);
    if (r < 0)
        return r;
    /* Its layers go unless a sandbox (running, paused, pooled) or another template uses them. */
    struct error_record e = { 0 };
    orch_layers_gc(o, &e);
    return 0;
}
