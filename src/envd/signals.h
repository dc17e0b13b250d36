/* envd's signal handling and pid 1 duties. SIGCHLD, SIGTERM, SIGINT and SIGHUP are blocked in
 * every thread and taken synchronously by one loop (sigwaitinfo), which reaps children and
 * ends envd in order on SIGTERM/SIGINT. SIGPIPE is ignored (children get it back). */
#pragma once

#include <stdbool.h>

#include "common/time-util.h"

/* Blocks the signals above in the calling thread and ignores SIGPIPE; call it before any
 * thread is created so that all inherit the mask. With subreaper (or when envd is pid 1, where
 * it is implicit) orphans of envd's children are reparented to envd and reaped. Returns 0 or
 * -errno. */
int envd_signals_setup(bool subreaper);

/* Runs on the calling thread until SIGTERM or SIGINT arrives, reaping on SIGCHLD. Returns the
 * terminating signal. */
int envd_signals_loop(void);

/* SIGKILLs every process envd started and keeps reaping until none runs or timeout passes.
 * Returns the number still running. */
size_t envd_signals_kill_children(usec_t timeout);
