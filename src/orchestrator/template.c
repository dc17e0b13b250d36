/* See orchestrator-internal.h: what a sandbox is made from. A template build in the store names
 * its layers by id ([{"layer", "target"}], top first) and its settings (user, workdir, env,
 * start and ready commands); this file turns them into runtime layers with host paths.
 *
 * Layer ids and where they live (never a path from a request: ids are checked, then mapped):
 *   host-base             <state>/templates/base (the generated "/" of the `host` base)
 *   host-usr              the host's /usr
 *   debootstrap/<suite>   <state>/cache/debootstrap/<suite>
 *   anything else         <state>/layers/<id>, where id is [a-z0-9-]+ with at most one "/"
 * Layers are written once and never modified, so templates, snapshots and sandboxes share
 * them; a layer directory goes away only when nothing in the store names it (orch_layers_gc). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs-util.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "common/banned.h"

static bool layer_id_valid(const char *id)
{
    size_t n = strlen(id), slashes = 0;
    if (n == 0 || n > ORCH_LAYER_ID_MAX || id[0] == '/' || id[n - 1] == '/')
        return false;
    for (const char *p = id; *p; p++) {
        if (*p == '/') {
            if (++slashes > 1)
                return false;
        } else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            return false;
        }
    }
    return true;
}

char *orch_layer_path(const struct orch *o, const char *id)
{
    if (!layer_id_valid(id))
        return NULL;
    if (streq(id, "host-base"))
        return xasprintf("%s/templates/base", o->state_dir);
    if (streq(id, "host-usr"))
        return xstrdup("/usr");
    if (str_startswith(id, "debootstrap/"))
        return xasprintf("%s/cache/%s", o->state_dir, id);
    return xasprintf("%s/layers/%s", o->state_dir, id);
}

static bool target_valid(const char *t)
{
    if (t[0] != '/' || strlen(t) > 256 || strstr(t, "//") || strstr(t, "/./") || strstr(t, "/../"))
        return false;
    size_t n = strlen(t);
    return n == 1 || (t[n - 1] != '/' && !str_endswith(t, "/..") && !str_endswith(t, "/."));
}

void orch_stack_release(struct orch_stack *st)
{
    for (size_t i = 0; i < st->n; i++) {
        free(st->ids[i]);
        free(st->paths[i]);
        free(st->targets[i]);
    }
    st->n = 0;
}

int orch_stack_push(const struct orch *o, struct orch_stack *st, const char *id, const char *target,
                    struct error_record *err)
{
    if (st->n >= ORCH_MAX_LAYERS)
        return error_set(err, E2BIG, "more than %d layers", ORCH_MAX_LAYERS);
    if (!target_valid(target))
        return error_set(err, EINVAL, "bad layer target '%s'", target);
    char *path = orch_layer_path(o, id);
    if (!path)
        return error_set(err, EINVAL, "bad layer id '%s'", id);
    st->ids[st->n] = xstrdup(id);
    st->paths[st->n] = path;
    st->targets[st->n] = xstrdup(target);
    st->n++;
    return 0;
}

int orch_stack_from_json(const struct orch *o, const char *json, struct orch_stack *st,
                         struct error_record *err)
{
    json_error_t jerr;
    json_t *a = json_loads(json ? json : "[]", 0, &jerr);
    if (!a || !json_is_array(a)) {
        json_decref(a);
        return error_set(err, EIO, "a layer list in the store is not a JSON array");
    }
    int r = 0;
    size_t i;
    json_t *e;
    json_array_foreach (a, i, e) {
        const char *id = json_get_string(e, "layer"), *target = json_get_string(e, "target");
        r = id && target ? orch_stack_push(o, st, id, target, err)
                         : error_set(err, EIO, "a layer entry in the store lacks layer or target");
        if (r < 0)
            break;
    }
    json_decref(a);
    return r;
}

json_t *orch_stack_to_json(const struct orch_stack *st)
{
    json_t *a = json_array();
    for (size_t i = 0; i < st->n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s}", "layer", st->ids[i], "target", st->targets[i]));
    return a;
}

void orch_stack_copy(const struct orch_stack *src, struct orch_stack *dst)
{
    for (size_t i = 0; i < src->n; i++) {
        dst->ids[dst->n] = xstrdup(src->ids[i]);
        dst->paths[dst->n] = xstrdup(src->paths[i]);
        dst->targets[dst->n] = xstrdup(src->targets[i]);
        dst->n++;
    }
}

size_t orch_stack_targets(const struct orch_stack *st, const char **ret, size_t max)
{
    /* "/" first (the runtime mounts it first), then the others in order of first appearance. */
    size_t n = 0;
    if (max > 0)
        ret[n++] = "/";
    for (size_t i = 0; i < st->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = streq(ret[j], st->targets[i]);
        if (!seen && n < max)
            ret[n++] = st->targets[i];
    }
    return n;
}

size_t orch_stack_layers(const struct orch_stack *st, struct runtime_layer *ret, size_t max)
{
    const char *targets[ORCH_MAX_TARGETS];
    size_t nt = orch_stack_targets(st, targets, ORCH_MAX_TARGETS), n = 0;
    for (size_t t = 0; t < nt; t++)
        for (size_t i = 0; i < st->n; i++)
            if (streq(st->targets[i], targets[t]) && n < max)
                ret[n++] = (struct runtime_layer){ st->paths[i], st->targets[i] };
    return n;
}

static char *config_string(const json_t *c, const char *key)
{
    const char *v = json_get_string(c, key);
    return v && *v ? xstrdup(v) : NULL;
}

int orch_template_from_build(const struct orch *o, const struct store_build *b, struct orch_template **ret,
                             struct error_record *err)
{
    struct orch_template *t = xcalloc(1, sizeof(*t));
    str_copy(t->template_id, sizeof(t->template_id), b->template_id);
    str_copy(t->build_id, sizeof(t->build_id), b->id);
    t->limits = (struct orch_limits){ b->cpu_count, b->memory_mb, b->disk_mb };
    int r = orch_stack_from_json(o, b->layers_json, &t->stack, err);
    json_t *c = NULL;
    if (r >= 0) {
        json_error_t jerr;
        c = json_loads(b->config_json ? b->config_json : "{}", 0, &jerr);
        if (!json_is_object(c))
            r = error_set(err, EIO, "template %s has a malformed configuration", b->template_id);
    }
    if (r >= 0) {
        t->user = xstrdup(json_get_string_or(c, "user", "root"));
        t->uid = (uid_t)json_integer_value(json_object_get(c, "uid"));
        t->gid = (gid_t)json_integer_value(json_object_get(c, "gid"));
        const char *home = json_get_string(c, "home");
        t->home = home ? xstrdup(home) : t->uid == 0 ? xstrdup("/root") : xasprintf("/home/%s", t->user);
        t->workdir = xstrdup(json_get_string_or(c, "workdir", t->home));
        t->start_cmd = config_string(c, "startCmd");
        t->ready_cmd = config_string(c, "readyCmd");
        json_t *env = json_object_get(c, "env");
        t->env = json_is_object(env) ? json_incref(env) : json_object();
        if (t->uid > 65535 || t->gid > 65535)
            r = error_set(err, EIO, "template %s runs as an id outside the sandbox's range", b->template_id);
    }
    json_decref(c);
    if (r < 0) {
        orch_template_free(t);
        return r;
    }
    *ret = t;
    return 0;
}

int orch_template_load(struct orch *o, const char *ref, struct orch_template **ret, struct error_record *err)
{
    struct store_template tpl;
    struct store_build b = { 0 };
    pthread_mutex_lock(&o->store_lock);
    int r = store_template_resolve(o->store, ref, &tpl, &b, err);
    pthread_mutex_unlock(&o->store_lock);
    if (r == -ENOENT)
        return error_set(err, ENOENT, "template '%s' not found", ref);
    if (r == -EAGAIN)
        return error_set(err, EINVAL, "template '%s' has no ready build", ref);
    if (r < 0)
        return r;
    r = orch_template_from_build(o, &b, ret, err);
    if (r >= 0)
        str_copy((*ret)->ref, sizeof((*ret)->ref), ref);
    store_build_release(&b);
    return r;
}

struct orch_template *orch_template_dup(const struct orch_template *t)
{
    struct orch_template *d = xcalloc(1, sizeof(*d));
    memcpy(d->ref, t->ref, sizeof(d->ref));
    memcpy(d->template_id, t->template_id, sizeof(d->template_id));
    memcpy(d->build_id, t->build_id, sizeof(d->build_id));
    orch_stack_copy(&t->stack, &d->stack);
    d->user = xstrdup(t->user);
    d->uid = t->uid;
    d->gid = t->gid;
    d->home = xstrdup(t->home);
    d->workdir = xstrdup(t->workdir);
    d->env = json_deep_copy(t->env);
    d->start_cmd = t->start_cmd ? xstrdup(t->start_cmd) : NULL;
    d->ready_cmd = t->ready_cmd ? xstrdup(t->ready_cmd) : NULL;
    d->limits = t->limits;
    return d;
}

json_t *orch_template_config_json(const struct orch_template *t)
{
    json_t *c = json_pack("{s:s, s:i, s:i, s:s, s:s, s:O, s:s?, s:s?}", "user", t->user, "uid",
                          (json_int_t)t->uid, "gid", (json_int_t)t->gid, "home", t->home, "workdir",
                          t->workdir, "env", t->env, "startCmd", t->start_cmd, "readyCmd", t->ready_cmd);
    if (!c)
        abort();
    return c;
}

void orch_template_free(struct orch_template *t)
{
    if (!t)
        return;
    orch_stack_release(&t->stack);
    free(t->user);
    free(t->home);
    free(t->workdir);
    free(t->start_cmd);
    free(t->ready_cmd);
    json_decref(t->env);
    free(t);
}

/* ---- garbage collection of layer directories ---- */

struct in_use {
    char **ids;
    size_t n, cap;
};

static int note_in_use(const char *id, void *userdata)
{
    struct in_use *u = userdata;
    /* A stack names "<dir>/<n>": the directory is what is kept or removed. */
    const char *slash = strchr(id, '/');
    size_t len = slash ? (size_t)(slash - id) : strlen(id);
    if (u->n == u->cap) {
        u->cap = u->cap ? 2 * u->cap : 64;
        u->ids = xreallocarray(u->ids, u->cap, sizeof(*u->ids));
    }
    u->ids[u->n++] = xstrndup(id, len);
    return 0;
}

/* Moves what nothing in u names out of the way (renamed to ".trash-<name>", which a create can
 * no longer open) and returns the paths to remove; removing them (rm_rf of whole layers) is
 * left to the caller, outside the lock. */
static char **unused_to_trash(struct orch *o, const struct in_use *u)
{
    _cleanup_free_ char *dir = xasprintf("%s/layers", o->state_dir);
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char **trash = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        bool used = false;
        for (size_t i = 0; i < u->n && !used; i++)
            used = streq(u->ids[i], de->d_name);
        if (used)
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, de->d_name);
        char *t =
            str_startswith(de->d_name, ".trash-") ? xstrdup(p) : xasprintf("%s/.trash-%s", dir, de->d_name);
        if (!streq(p, t) && rename(p, t) < 0) {
            free(t);
            continue;
        }
        trash = xreallocarray(trash, n + 2, sizeof(char *));
        trash[n++] = t;
        trash[n] = NULL;
    }
    closedir(d);
    return trash;
}

void orch_layers_saving_begin(struct orch *o)
{
    pthread_mutex_lock(&o->lock);
    o->n_saving++;
    o->saving_gen++;
    pthread_mutex_unlock(&o->lock);
}

void orch_layers_saving_end(struct orch *o)
{
    pthread_mutex_lock(&o->lock);
    o->n_saving--;
    pthread_mutex_unlock(&o->lock);
}

int orch_layers_gc(struct orch *o, struct error_record *err)
{
    struct in_use u = { 0 };
    pthread_mutex_lock(&o->lock);
    bool busy = o->n_building > 0 || o->n_saving > 0;
    uint64_t gen = o->saving_gen;
    pthread_mutex_unlock(&o->lock);
    if (busy)
        return 0;
    pthread_mutex_lock(&o->store_lock);
    int r = store_build_layers_in_use(o->store, note_in_use, &u, err);
    if (r >= 0)
        r = store_sandbox_layers_in_use(o->store, note_in_use, &u, err);
    pthread_mutex_unlock(&o->store_lock);
    if (r >= 0) {
        /* Under the lock: a create between the scan and the removal would otherwise take a
         * layer that is being removed. */
        pthread_mutex_lock(&o->lock);
        for (int pass = 0; pass < 2; pass++)
            for (struct sandbox *s = pass ? o->pool : o->sandboxes; s; s = s->next)
                for (size_t i = 0; i < s->stack.n; i++)
                    note_in_use(s->stack.ids[i], &u);
        /* A save that began after the scan may have recorded its layer since, unseen. */
        char **trash = o->n_building || o->n_saving || o->saving_gen != gen ? NULL : unused_to_trash(o, &u);
        pthread_mutex_unlock(&o->lock);
        r = 0;
        for (size_t i = 0; trash && trash[i]; i++) {
            if (rm_rf(trash[i]) >= 0)
                r++;
            free(trash[i]);
        }
        free(trash);
    }
    for (size_t i = 0; i < u.n; i++)
        free(u.ids[i]);
    free(u.ids);
    return r;
}
