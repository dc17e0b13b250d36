/* Between the fork server's loop (forkserver.c) and the child it forks per request (child.c). */
#pragma once

#include <stddef.h>

#include "common/error.h"
#include "common/macro.h"
#include "forkserver/forkserver.h"

/* Sends "error <errno> <message>" on a request's reply socket. */
void forkserver_reply_error(int reply_fd, int errnum, const char *fmt, ...) _printf_(3, 4);
/* In the child forked for one request: parses it, joins the sandbox, forks the kernel's process
 * into its pid namespace and exits; the kernel's process replies and runs the kernel. fds[0] is
 * the reply socket, the rest the join handle. Never returns. */
_noreturn_ void forkserver_child(int server_sock, char *req, size_t len, const int *fds, size_t nfds);
/* hutch_forkserver.run_kernel(dir, env, cwd): returns only when the kernel has ended (0) or
 * could not start (-EIO, the Python error printed to stderr, /dev/null by then). */
int forkserver_run_kernel(const char *dir, char *const *env, const char *cwd, struct error_record *err);
