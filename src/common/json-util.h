/* Helpers over jansson shared by the API, envd and the clients. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/error.h"

/* jansson >= 2.9 provides json_decrefp(). */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* Parses len bytes that must hold exactly one JSON object (jansson rejects invalid UTF-8 and
 * NUL bytes). Returns 0 and a new reference in *ret, or -EINVAL with the parser's message
 * (line and column) in err. */
int json_parse_object(const char *data, size_t len, json_t **ret, struct error_record *err);

/* Value of a string member, or NULL when absent or not a string. */
const char *json_get_string(const json_t *obj, const char *key);

/* A string member or def when absent or not a string. */
const char *json_get_string_or(const json_t *obj, const char *key, const char *def);

/* Serializes compactly; never NULL (aborts on OOM). free() the result. */
char *json_dump_compact(const json_t *v, size_t *ret_len);
