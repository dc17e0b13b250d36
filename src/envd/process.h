/* envd's process service (process.Process, e2b-compat 3.4 and 3.6) and its process table.
 *
 * Invariants: no exit status is lost to a race. The reaper waits for children under the table
 * lock; a child that it reaps before its spawner has put it in the table is kept in a small
 * numbered list that the spawner checks on insertion. Each process has one pump thread that
 * reads its output and fans it out to the attached subscribers' bounded queues; the `end`
 * event is sent only after the output pipes drain. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/time-util.h"
#include "envd/envd.h"

/* Reaps every child that has exited (waitpid(-1, WNOHANG) until none is left): records the
 * status of envd's own processes and silently reaps others (orphans when envd is pid 1 or a
 * subreaper). Called by the signal loop on SIGCHLD. */
void envd_process_reap(void);

/* SIGKILLs the process group of every running process (shutdown). */
void envd_process_kill_all(void);
/* Number of processes that have not yet exited. */
size_t envd_process_running(void);

/* The `end` event of a wait status, as Go's ProcessState: {"event":{"end":{...}}}. */
json_t *envd_process_end_event(int wstatus);
/* Go's name of a signal ("killed", "terminated", ...), or NULL when Go prints "signal N". */
const char *envd_go_signal_name(int sig);

/* The environment of a new process (e2b-compat 3.6): PATH (path, or a default when NULL or
 * empty), HOME, USER, LOGNAME of user, then sandbox_envs, then req_envs; later values replace
 * earlier ones in place. Returns a NULL-terminated malloc'd array (free with envd_strv_free) or
 * NULL with -EINVAL in *ret_err when a name is empty or holds '=' or a value is not a string. */
char **envd_process_build_env(const struct envd_user *user, const char *path, const json_t *sandbox_envs,
                              const json_t *req_envs, int *ret_err);
void envd_strv_free(char **v);
