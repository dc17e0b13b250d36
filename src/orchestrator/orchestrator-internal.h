/* What the orchestrator's files share. */
#pragma once

#include <jansson.h>

#include "common/error.h"
#include "common/time-util.h"
#include "runtime/runtime.h"

/* envd-client.c: polls envd's /health inside the sandbox until it answers 204. */
int orch_envd_wait_healthy(const struct runtime_ops *rt, struct runtime_sandbox *sb, usec_t timeout,
                           struct error_record *err);
/* envd-client.c: POST /init with body (an object). */
int orch_envd_init(const struct runtime_ops *rt, struct runtime_sandbox *sb, const json_t *body,
                   struct error_record *err);

/* Where hutch keeps host-wide runtime state (tmpfs: gone at reboot, as the sandboxes are). */
#define ORCH_RUN_DIR "/run/hutch"

/* slots.c: claims the lowest free host-wide slot below max; the slot is held until *ret_fd is
 * closed. -EAGAIN when none is free. */
int orch_slot_claim(unsigned max, unsigned *ret_slot, int *ret_fd, struct error_record *err);
