/* Snapshots and forks (e2b-compat §2.3): a sandbox's current filesystem as a template.
 *
 * A snapshot is the sandbox's writable layer written out as a new layer (the sandbox frozen
 * for the copy, then thawed) on top of the layers the sandbox runs on, recorded as a template
 * with is_snapshot and one ready build carrying the sandbox's settings. Nothing is copied per
 * sandbox created from it: they all stack the same read-only layers. A fork is a snapshot
 * taken for the occasion and `count` creates from it; the snapshot's record goes right after,
 * its layers stay for as long as the forks use them. Processes are not part of a snapshot (no
 * memory snapshots on this backend): the template's start command runs in each new sandbox. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/fs-util.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "common/banned.h"

#define SNAPSHOT_ID_LEN 20
#define FORK_MAX 64

int orch_sandbox_snapshot(struct orch *o, const char *id, const char *name, bool hidden, char *ret_id,
                          struct error_record *err)
{
    if (name && *name && !store_name_valid(name))
        return error_set(err, EINVAL, "snapshot name '%s': lowercase letters, digits, '-', '_', '.'", name);
    struct sandbox *s = orch_sandbox_ref(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    char snap[SNAPSHOT_ID_LEN + 1];
    if (random_alnum(snap, SNAPSHOT_ID_LEN) < 0)
        abort();
    struct orch_stack stack = { 0 };
    /* From the export until the store has the layer, a collection would take it for garbage. */
    orch_layers_saving_begin(o);
    pthread_mutex_lock(&s->op_lock);
    int r = orch_sandbox_save_layer(o, s, snap, &stack, err);
    json_t *config = r >= 0 ? orch_template_config_json(s->tpl) : NULL;
    struct orch_limits limits = s->limits;
    pthread_mutex_unlock(&s->op_lock);
    orch_sandbox_unref(o, s);
    if (r < 0) {
        orch_layers_saving_end(o);
        return r;
    }

    json_t *lj = orch_stack_to_json(&stack);
    _cleanup_free_ char *layers = json_dump_compact(lj, NULL);
    _cleanup_free_ char *config_s = json_dump_compact(config, NULL);
    json_decref(lj);
    json_decref(config);
    orch_stack_release(&stack);
    int64_t now = (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC);
    struct store_template t = { .is_snapshot = true, .created_at_ms = now, .updated_at_ms = now };
    str_copy(t.id, sizeof(t.id), snap);
    str_copy(t.source_sandbox, sizeof(t.source_sandbox), hidden ? "" : id);
    struct store_build b = { .status = STORE_BUILD_WAITING,
                             .cpu_count = limits.cpu_count,
                             .memory_mb = limits.memory_mb,
                             .disk_mb = limits.disk_mb,
                             .created_at_ms = now };
    if (random_uuid4(b.id) < 0)
        abort();
    str_copy(b.template_id, sizeof(b.template_id), snap);
    str_copy(b.envd_version, sizeof(b.envd_version), ENVD_VERSION);
    pthread_mutex_lock(&o->store_lock);
    /* A name that is already a snapshot's gets a new build of that snapshot (its default tag
     * moves to it), as E2B's snapshots do; a template's name is refused. */
    char existing[STORE_TEMPLATE_ID_MAX + 1] = "";
    struct store_template other;
    if (name && *name && store_template_name_lookup(o->store, name, existing, err) >= 0) {
        r = store_template_get(o->store, existing, &other, err);
        if (r >= 0 && !other.is_snapshot)
            r = error_set(err, EEXIST, "the name %s belongs to a template that is not a snapshot", name);
        if (r >= 0)
            str_copy(b.template_id, sizeof(b.template_id), existing);
    } else {
        existing[0] = '\0';
        error_clear(err);
        r = store_template_insert(o->store, &t, err);
        if (r >= 0 && name && *name)
            r = store_template_name_add(o->store, snap, name, err);
    }
    if (r >= 0)
        r = store_build_insert(o->store, &b, err);
    if (r >= 0)
        r = store_build_finish(o->store, b.id, STORE_BUILD_READY, layers, config_s, NULL, NULL, err);
    if (r < 0 && !existing[0]) {
        struct error_record e = { 0 };
        store_template_delete(o->store, snap, &e);
    }
    pthread_mutex_unlock(&o->store_lock);
    orch_layers_saving_end(o);
    if (r < 0) {
        struct error_record e = { 0 };
        orch_layers_gc(o, &e);
        return r;
    }
    str_copy(ret_id, STORE_TEMPLATE_ID_MAX + 1, existing[0] ? existing : snap);
    return 0;
}

int orch_sandbox_fork(struct orch *o, const char *id, unsigned count, uint32_t timeout_s, json_t **ret,
                      struct error_record *err)
{
    if (count == 0 || count > FORK_MAX)
        return error_set(err, EINVAL, "count must be from 1 to %d", FORK_MAX);
    struct sandbox *s = orch_sandbox_ref(o, id);
    if (!s)
        return error_set(err, ENOENT, "sandbox %s not found", id);
    json_t *env_vars = s->env_vars ? json_deep_copy(s->env_vars) : NULL;
    bool internet = !s->deny_internet;
    struct orch_limits limits = s->limits;
    uint16_t https_ports[RUNTIME_HTTPS_PORTS_MAX + 1];
    memcpy(https_ports, s->https_ports, sizeof(https_ports));
    bool require_token = s->traffic_token[0] != '\0';
    char mask_host[ORCH_MASK_HOST_MAX + 1];
    str_copy(mask_host, sizeof(mask_host), s->mask_host);
    char **allow = NULL, **deny = NULL;
    for (int k = 0; k < 2; k++) {
        const json_t *a = k ? s->deny_out : s->allow_out;
        if (!json_is_array(a) || !json_array_size(a))
            continue;
        char **v = xcalloc(json_array_size(a) + 1, sizeof(char *));
        for (size_t i = 0; i < json_array_size(a); i++)
            v[i] = xstrdup(json_string_value(json_array_get(a, i)));
        *(k ? &deny : &allow) = v;
    }
    orch_sandbox_unref(o, s);

    char snap[STORE_TEMPLATE_ID_MAX + 1];
    int r = orch_sandbox_snapshot(o, id, NULL, true, snap, err);
    json_t *results = json_array();
    for (unsigned i = 0; r >= 0 && i < count; i++) {
        struct orch_create req = {
            .template_id = snap,
            .timeout_s = timeout_s,
            .env_vars = env_vars,
            .allow_internet_access = internet,
            .allow_out = (const char *const *)allow,
            .deny_out = (const char *const *)deny,
            .https_ports = https_ports,
            .require_traffic_token = require_token,
            .mask_request_host = mask_host[0] ? mask_host : NULL,
            .limits = limits,
        };
        json_t *sbx = NULL;
        struct error_record e = { 0 };
        int c = orch_sandbox_create(o, &req, &sbx, &e);
        if (c >= 0)
            json_array_append_new(results, json_pack("{s:o}", "sandbox", sbx));
        else
            json_array_append_new(results,
                                  json_pack("{s:{s:i, s:s}}", "error", "code", orch_errno_to_status(c),
                                            "message", e.msg[0] ? e.msg : errno_to_string(c)));
    }
    if (r >= 0) {
        /* The forks hold the layers; the snapshot itself was only the means. */
        struct error_record e = { 0 };
        orch_template_delete(o, snap, &e);
    }
    for (int k = 0; k < 2; k++) {
        char **v = k ? deny : allow;
        for (size_t i = 0; v && v[i]; i++)
            free(v[i]);
        free(v);
    }
    json_decref(env_vars);
    if (r < 0) {
        json_decref(results);
        return r;
    }
    *ret = results;
    return 0;
}
