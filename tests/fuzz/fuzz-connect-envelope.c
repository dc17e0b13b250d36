/* libFuzzer target: Connect envelope framing as envd reads it, both as a server-stream
 * request (exactly one envelope) and as a client stream (envelopes one after another). */
#include <stddef.h>
#include <stdint.h>

#include "envd/connect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *msg = NULL;
    struct connect_error err;
    if (connect_parse_stream_request(data, size, &msg, &err) == 0)
        json_decref(msg);

    size_t off = 0;
    for (;;) {
        uint8_t flags;
        const char *payload;
        size_t len;
        int n = connect_envelope_next(data + off, size - off, &flags, &payload, &len, &err);
        if (n <= 0)
            break;
        if (connect_parse_unary_request(payload, len, &msg, &err) == 0)
            json_decref(msg);
        off += (size_t)n;
    }
    return 0;
}
