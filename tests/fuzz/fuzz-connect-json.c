/* libFuzzer target: a unary Connect request body through JSON parsing and every unary
 * process.Process handler's request validation. The process table is empty, so no handler
 * can reach a real process (selectors end in not_found). */
#include <stddef.h>
#include <stdint.h>

#include "envd/connect.h"
#include "envd/envd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *req = NULL;
    struct connect_error err;
    if (connect_parse_unary_request(data, size, &req, &err) < 0) {
        json_decref(connect_error_to_json(&err));
        return 0;
    }
    struct connect_call call = { .deadline = UINT64_MAX };
    for (const struct connect_method *m = envd_process_methods; m->path; m++) {
        if (!m->unary)
            continue;
        json_t *resp = NULL;
        call.path = m->path;
        if (m->unary(&call, req, &resp, &err) == 0)
            json_decref(resp);
        else
            json_decref(connect_error_to_json(&err));
    }
    json_decref(req);
    return 0;
}
