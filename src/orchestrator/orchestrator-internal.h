/* What the orchestrator's files share. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/time-util.h"
#include "orchestrator/orchestrator.h"
#include "runtime/runtime.h"

/* envd-client.c: polls envd's /health inside the sandbox until it answers 204. */
int orch_envd_wait_healthy(const struct runtime_ops *rt, struct runtime_sandbox *sb, usec_t timeout,
                           struct error_record *err);
/* envd-client.c: POST /init with body (an object); current_token is the access token envd
 * already has (NULL for the first /init), which envd requires to accept a new one. */
int orch_envd_init(const struct runtime_ops *rt, struct runtime_sandbox *sb, const json_t *body,
                   const char *current_token, struct error_record *err);

/* Where hutch keeps host-wide runtime state (tmpfs: gone at reboot, as the sandboxes are). */
#define ORCH_RUN_DIR "/run/hutch"

/* slots.c: claims the lowest free host-wide slot below max; the slot is held until *ret_fd is
 * closed. -EAGAIN when none is free. */
int orch_slot_claim(unsigned max, unsigned *ret_slot, int *ret_fd, struct error_record *err);

/* logs.c: the sandboxes' output, kept in memory (see the file's comment). */
struct log_collector;
struct log_sink;
int orch_logs_start(struct log_collector **ret, struct error_record *err);
void orch_logs_stop(struct log_collector *c);
/* A new sink with its pipe: *ret_write_fd is the write end, for the sandbox's stdout and
 * stderr (the caller closes its copy once the runtime has dup'ed it). */
int orch_logs_new_sink(struct log_collector *c, struct log_sink **ret, int *ret_write_fd,
                       struct error_record *err);
void orch_logs_sink_unref(struct log_sink *s);
/* Calls cb for up to limit lines received at or after since_ms, oldest first. */
int orch_logs_read(struct log_sink *s, int64_t since_ms, size_t limit, orch_log_line_cb cb, void *userdata);
