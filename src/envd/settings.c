/* envd's process-wide settings (default user and workdir, sandbox-wide env vars, access token),
 * set at start and changed by /init.
 *
 * Invariant: every read copies under the lock, so a concurrent /init never frees a string a
 * request is still using. */
#include "envd/envd.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/http-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define INIT_MAX_ENV_VARS 4096
#define INIT_MAX_STRING 65536

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct envd_settings settings;

void envd_settings_init(const char *default_user)
{
    pthread_mutex_lock(&lock);
    free(settings.default_user);
    settings.default_user = default_user ? xstrdup(default_user) : NULL;
    if (!settings.env_vars)
        settings.env_vars = json_object();
    pthread_mutex_unlock(&lock);
}

char *envd_settings_access_token(void)
{
    pthread_mutex_lock(&lock);
    char *r = settings.access_token ? xstrdup(settings.access_token) : NULL;
    pthread_mutex_unlock(&lock);
    return r;
}

char *envd_settings_default_user(void)
{
    pthread_mutex_lock(&lock);
    char *r = settings.default_user ? xstrdup(settings.default_user) : NULL;
    pthread_mutex_unlock(&lock);
    return r;
}

char *envd_settings_default_workdir(void)
{
    pthread_mutex_lock(&lock);
    char *r = settings.default_workdir ? xstrdup(settings.default_workdir) : NULL;
    pthread_mutex_unlock(&lock);
    return r;
}

json_t *envd_settings_env_vars(void)
{
    pthread_mutex_lock(&lock);
    json_t *r = settings.env_vars ? json_deep_copy(settings.env_vars) : json_object();
    pthread_mutex_unlock(&lock);
    if (!r)
        abort();
    return r;
}

static int check_string(const json_t *v, const char *field, struct error_record *err)
{
    if (!json_is_string(v))
        return error_set(err, EINVAL, "%s must be a string", field);
    if (json_string_length(v) > INIT_MAX_STRING || memchr(json_string_value(v), '\0', json_string_length(v)))
        return error_set(err, EINVAL, "%s is too long or holds NUL", field);
    return 0;
}

int envd_settings_apply_init(const json_t *body, struct error_record *err)
{
    if (!json_is_object(body))
        return error_set(err, EINVAL, "expected a JSON object");

    /* Validate everything first, then apply: a bad body changes nothing. */
    const json_t *envs = json_object_get(body, "envVars");
    if (envs && !json_is_null(envs)) {
        if (!json_is_object(envs))
            return error_set(err, EINVAL, "envVars must be an object");
        if (json_object_size(envs) > INIT_MAX_ENV_VARS)
            return error_set(err, EINVAL, "too many envVars");
        const char *k;
        json_t *v;
        json_object_foreach ((json_t *)envs, k, v) {
            if (!*k || strchr(k, '=') || strlen(k) > INIT_MAX_STRING)
                return error_set(err, EINVAL, "invalid env var name");
            if (check_string(v, "envVars values", err) < 0)
                return -EINVAL;
        }
    } else {
        envs = NULL;
    }
    static const char *const fields[] = { "accessToken", "defaultUser", "defaultWorkdir" };
    const json_t *vals[ARRAY_SIZE(fields)];
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        vals[i] = json_object_get(body, fields[i]);
        if (vals[i] && json_is_null(vals[i]))
            vals[i] = NULL;
        if (vals[i] && check_string(vals[i], fields[i], err) < 0)
            return -EINVAL;
    }
    if (vals[1] && json_string_length(vals[1]) == 0)
        vals[1] = NULL; /* an empty default user keeps the current one */
    if (vals[2] && json_string_value(vals[2])[0] != '\0' && json_string_value(vals[2])[0] != '/')
        return error_set(err, EINVAL, "defaultWorkdir must be absolute");

    pthread_mutex_lock(&lock);
    if (envs) {
        if (!settings.env_vars)
            settings.env_vars = json_object();
        json_object_update(settings.env_vars, (json_t *)envs);
    }
    char **dst[] = { &settings.access_token, &settings.default_user, &settings.default_workdir };
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        if (!vals[i])
            continue;
        free(*dst[i]);
        /* An empty token or workdir clears it. */
        *dst[i] = json_string_length(vals[i]) ? xstrdup(json_string_value(vals[i])) : NULL;
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

bool envd_request_has_token(struct MHD_Connection *conn)
{
    _cleanup_free_ char *token = envd_settings_access_token();
    if (!token)
        return true;
    const char *given = conn ? http_header(conn, "X-Access-Token") : NULL;
    if (!given)
        return false;
    return memeq_consttime(given, strlen(given), token, strlen(token));
}
