/* See json-util.h. */
#include "common/json-util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "common/banned.h"

int json_parse_object(const char *data, size_t len, json_t **ret, struct error_record *err)
{
    json_error_t jerr;
    json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        return error_set(err, EINVAL, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                         jerr.text);
    if (!json_is_object(v)) {
        json_decref(v);
        return error_set(err, EINVAL, "expected a JSON object");
    }
    *ret = v;
    return 0;
}

const char *json_get_string(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *json_get_string_or(const json_t *obj, const char *key, const char *def)
{
    const char *s = json_get_string(obj, key);
    return s ? s : def;
}

char *json_dump_compact(const json_t *v, size_t *ret_len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        abort();
    if (ret_len)
        *ret_len = strlen(s);
    return s;
}
