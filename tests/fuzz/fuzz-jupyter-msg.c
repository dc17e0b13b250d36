/* libFuzzer target: Jupyter messages as interpd receives them from a kernel. The input is split
 * into frames at each "\n--\n" (so corpus files stay readable); the frames are decoded under the
 * key "fuzz-key" and, when they verify, the message is mapped to NDJSON lines the way an
 * execution does. A second pass decodes with an empty key, which skips the signature check so
 * the JSON and mapping paths are reached without a valid HMAC. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "interpd/execute.h"
#include "interpd/jupyter-msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run(const struct jmsg_frame *frames, size_t n, const char *key)
{
    struct jmsg m;
    struct error_record err;
    if (jmsg_decode(frames, n, key, strlen(key), &m, &err) < 0)
        return;
    struct execution x = { .pending = json_array() };
    if (m.parent_id && strlen(m.parent_id) < sizeof(x.msg_id))
        memcpy(x.msg_id, m.parent_id, strlen(m.parent_id) + 1);
    execution_handle(&x, KERNEL_IOPUB, &m);
    execution_handle(&x, KERNEL_SHELL, &m);
    execution_release(&x);
    jmsg_release(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jmsg_frame frames[JMSG_FRAMES_MAX + 2];
    size_t n = 0;
    const uint8_t *p = data, *end = data + size;
    while (n < JMSG_FRAMES_MAX + 2) {
        const uint8_t *sep = memmem(p, (size_t)(end - p), "\n--\n", 4);
        const uint8_t *stop = sep ? sep : end;
        frames[n++] = (struct jmsg_frame){ p, (size_t)(stop - p) };
        if (!sep)
            break;
        p = sep + 4;
    }
    run(frames, n, "fuzz-key");
    run(frames, n, "");
    return 0;
}
