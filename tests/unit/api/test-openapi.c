/* The served OpenAPI document lists exactly the routes the server has, so it cannot drift. */
#include <jansson.h>
#include <stdlib.h>

#include "api/api.h"
#include "tap.h"

extern const char api_openapi_json[];
extern const size_t api_openapi_json_len;

/* "/sandboxes/{id}/logs" and "/sandboxes/{sandboxID}/logs" -> "/sandboxes/{}/logs" */
static void normalize(const char *in, char *out, size_t size)
{
    size_t w = 0;
    for (const char *p = in; *p && w + 3 < size; p++) {
        out[w++] = *p;
        if (*p == '{') {
            while (*p && *p != '}')
                p++;
            out[w++] = '}';
            if (!*p)
                break;
        }
    }
    out[w] = '\0';
}

static json_t *load(void)
{
    json_error_t e;
    json_t *doc = json_loadb(api_openapi_json, api_openapi_json_len, 0, &e);
    if (!doc)
        tap_fail(__FILE__, __LINE__, "openapi.json: %s at line %d", e.text, e.line);
    return doc;
}

static char *lower(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

TEST(every_route_is_documented)
{
    json_t *doc = load();
    json_t *paths = json_object_get(doc, "paths");
    ASSERT_TRUE(json_is_object(paths));
    const struct api_route *routes;
    size_t n = api_routes(&routes);
    ASSERT_GE(n, 10);
    for (size_t i = 0; i < n; i++) {
        char want[256];
        normalize(routes[i].pattern, want, sizeof(want));
        json_t *item = NULL;
        const char *key;
        json_t *v;
        json_object_foreach (paths, key, v) {
            char got[256];
            normalize(key, got, sizeof(got));
            if (strcmp(got, want) == 0)
                item = v;
        }
        if (!item)
            tap_fail(__FILE__, __LINE__, "%s is not in openapi.json", routes[i].pattern);
        char *m = lower(routes[i].method);
        if (!json_object_get(item, m))
            tap_fail(__FILE__, __LINE__, "%s %s is not in openapi.json", routes[i].method, routes[i].pattern);
        free(m);
    }
    json_decref(doc);
}

TEST(every_documented_operation_exists)
{
    json_t *doc = load();
    const struct api_route *routes;
    size_t n = api_routes(&routes);
    const char *key;
    json_t *item;
    json_object_foreach (json_object_get(doc, "paths"), key, item) {
        char got[256];
        normalize(key, got, sizeof(got));
        const char *method;
        json_t *op;
        json_object_foreach (item, method, op) {
            if (strcmp(method, "parameters") == 0)
                continue;
            bool found = false;
            for (size_t i = 0; i < n && !found; i++) {
                char want[256];
                normalize(routes[i].pattern, want, sizeof(want));
                char *m = lower(routes[i].method);
                found = strcmp(want, got) == 0 && strcmp(m, method) == 0;
                free(m);
            }
            if (!found)
                tap_fail(__FILE__, __LINE__, "openapi.json documents %s %s, which the server lacks", method,
                         key);
        }
    }
    json_decref(doc);
}
