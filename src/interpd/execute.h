/* One execution on a kernel: an execute_request, and the mapping of the kernel's replies to the
 * NDJSON lines of E2B's /execute (e2b-compat §4.3).
 *
 * Invariant: only messages whose parent is this execution's request are looked at; the
 * execution ends when both its execute_reply (shell) and its status "idle" (iopub) arrived, or
 * when the kernel process dies (then an "error" line with name KernelDied comes first). The
 * caller serializes executions on one kernel (execute_* uses the kernel's sockets). The
 * end_of_execution and keepalive lines belong to the HTTP layer. */
#pragma once
#include <jansson.h>
#include <stdbool.h>

#include "common/error.h"
#include "common/time-util.h"
#include "interpd/kernel.h"

struct execution {
    struct kernel *kernel;
    char msg_id[37];
    bool got_reply, got_idle, sent_count, died;
    bool reply_ok;        /* execute_reply status was "ok" */
    usec_t grace_until;   /* for a kernel with late output: when to stop waiting for more */
    json_t *pending;      /* array of lines not yet handed out */
    char error_text[256]; /* "ename: evalue" of the last error, for silent runs */
};

/* Sends execute_request {code, silent, store_history, allow_stdin false}. Returns 0 or -errno. */
int execution_start(struct execution *x, struct kernel *k, const char *code, bool silent);
void execution_release(struct execution *x);

enum {
    EXECUTION_TIMEOUT = 0,
    EXECUTION_LINE = 1,
    EXECUTION_END = 2,
};
/* Waits up to timeout. Returns EXECUTION_LINE with a new reference in *ret_line, EXECUTION_TIMEOUT,
 * EXECUTION_END (nothing more; x->died tells whether the kernel died), or -errno. */
int execution_next(struct execution *x, usec_t timeout, json_t **ret_line);

/* Feeds one message to the execution (pure; what execution_next does with each message it
 * receives). Messages for other requests are ignored. */
void execution_handle(struct execution *x, enum kernel_channel ch, const struct jmsg *m);

/* Maps a MIME bundle to a "result" line (§4.3 table). New reference; never NULL. */
json_t *execution_result_line(const json_t *data, bool is_main_result);

/* Runs code silently to its end, discarding output. Returns 0, -ETIMEDOUT, -ESRCH (the kernel
 * died), -EREMOTEIO (the code raised: err holds "ename: evalue"), or -errno. */
int execution_run_silent(struct kernel *k, const char *code, usec_t timeout, struct error_record *err);
