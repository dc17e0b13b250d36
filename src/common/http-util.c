/* See http-util.h. */
#include "common/http-util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json-util.h"
#include "common/banned.h"

enum MHD_Result http_queue_json(struct MHD_Connection *c, unsigned status, const json_t *body)
{
    return http_queue_json_with_header(c, status, body, NULL, NULL);
}

enum MHD_Result http_queue_json_with_header(struct MHD_Connection *c, unsigned status, const json_t *body,
                                            const char *header, const char *value)
{
    size_t len;
    char *s = json_dump_compact(body, &len);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, s, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, HTTP_JSON_CONTENT_TYPE);
    if (header)
        MHD_add_response_header(r, header, value);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result http_queue_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *body = json_pack("{s:i, s:s}", "code", (int)status, "message", msg);
    if (!body) /* msg was not valid UTF-8 */
        body = json_pack("{s:i, s:s}", "code", (int)status, "message", "invalid request");
    enum MHD_Result ret = http_queue_json(c, status, body);
    json_decref(body);
    return ret;
}

enum MHD_Result http_queue_empty(struct MHD_Connection *c, unsigned status)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

const char *http_header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

const char *http_query(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}
