/* libFuzzer target: the Hutchfile parser (src/client/hutchfile.c) on any bytes, with and
 * without build arguments; a spec it accepts must be a JSON object with a steps array. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "hutch/hutch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct hutch_kv args[] = { { "VERSION", "1.2.3" }, { "BASE", "debian:bookworm" } };
    for (size_t n = 0; n <= 2; n += 2) {
        char *spec = NULL;
        struct hutch_hutchfile_error err;
        if (hutch_hutchfile_parse((const char *)data, size, args, n, &spec, &err) != HUTCH_OK)
            continue;
        json_t *j = json_loads(spec, 0, NULL);
        if (!json_is_object(j) || !json_is_array(json_object_get(j, "steps")))
            abort();
        json_decref(j);
        free(spec);
    }
    return 0;
}
