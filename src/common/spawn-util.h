/* Starting a helper program (debootstrap, mke2fs, envd --list-libraries) from a server whose
 * threads block signals and ignore SIGPIPE, with its output in a pipe the caller reads. */
#pragma once

#include <sys/types.h>

enum {
    SPAWN_STDERR_TOO = 1 << 0, /* stderr into the pipe too (else inherited) */
    SPAWN_OWN_PGROUP = 1 << 1, /* a process group of its own, to kill it with its children */
};

/* Starts `path` with argv and envp, stdin from /dev/null and stdout (and with SPAWN_STDERR_TOO
 * stderr) into a pipe whose read end (close-on-exec) goes to *ret_fd. The program starts with
 * no signal blocked and SIGPIPE's default action, whatever the calling thread has (hutch serve
 * waits for SIGTERM in sigwait and ignores SIGPIPE). Returns 0 or -errno. */
int spawn_piped(const char *path, char *const argv[], char *const envp[], unsigned flags, pid_t *ret_pid,
                int *ret_fd);
