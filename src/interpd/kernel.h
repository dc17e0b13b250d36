/* Jupyter kernels driven over libzmq: finding a kernelspec for a language, and one kernel's
 * lifecycle (spawn, handshake, messages, interrupt, kill).
 *
 * Invariants: a kernel runs in its own process group with a connection file in a private 0700
 * directory (ipc:// sockets, so a sandbox without network works; only Deno, which names ipc
 * endpoints differently from jupyter_client, gets loopback TCP); the process is watched
 * through a pidfd, so its death is seen by poll() and it is reaped exactly once, by
 * kernel_reap() under the kernel's lock. The zmq sockets are not thread-safe: one thread at a
 * time (the holder of the owning context's execution lock) calls kernel_send/kernel_next/
 * kernel_interrupt; kernel_kill() and kernel_alive() may be called from any thread. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"
#include "common/time-util.h"
#include "interpd/jupyter-msg.h"

struct kernelspec {
    char *name;            /* directory name: python3, ir, deno, bash */
    char *dir;             /* the kernelspec's directory */
    char **argv;           /* NULL-terminated, {connection_file} not yet substituted */
    json_t *env;           /* the spec's "env" object, or NULL */
    bool interrupt_signal; /* interrupt_mode "signal" (the default) rather than "message" */
};

/* The kernelspec name serving a normalized language (python, r, javascript, typescript, bash),
 * or NULL for a language interpd does not know. */
const char *kernel_name_for_language(const char *language);

/* Looks for dirs[i]/<name>/kernel.json in order (dirs NULL-terminated). Returns 0 and a new
 * spec, -ENOENT when none is installed, or -EINVAL for a malformed kernel.json (err says). */
int kernelspec_find(const char *const *dirs, const char *name, struct kernelspec **ret,
                    struct error_record *err);
void kernelspec_free(struct kernelspec *ks);
/* Comma-separated names of the kernelspecs installed in dirs ("" when none). free() it. */
char *kernelspec_list_installed(const char *const *dirs);
/* The standard search path: $JUPYTER_PATH/kernels entries, ~/.local/share/jupyter/kernels,
 * /usr/local/share/jupyter/kernels, /usr/share/jupyter/kernels (NULL-terminated; static
 * storage, computed once). */
const char *const *kernelspec_default_dirs(void);

struct kernel_opts {
    const char *cwd;         /* working directory of the kernel process */
    const char *runtime_dir; /* private 0700 directory; the kernel gets a subdirectory */
    char *const *extra_env;  /* NULL-terminated KEY=VALUE entries added to interpd's environment */
    usec_t start_timeout;    /* for the kernel_info handshake */
};

struct kernel;

/* Spawns the kernel and waits (blocking, up to opts->start_timeout) until it answers
 * kernel_info_request on shell and publishes on iopub. zmq_ctx is the process's zmq context.
 * Returns 0 and the kernel, or -errno with err filled (the process is killed and reaped). */
int kernel_start(void *zmq_ctx, const struct kernelspec *ks, const struct kernel_opts *opts,
                 struct kernel **ret, struct error_record *err);
/* Takes over a Python kernel that hutch's kernel fork server started in this sandbox: waits
 * (up to opts->start_timeout) for dir/pid and dir/connection.json (dir must be a 0700
 * directory of this user; ipc endpoints inside it), then connects and handshakes as
 * kernel_start does. The process is not our child: its death is seen through a pidfd and its
 * exit status is not known. kernel_free() removes dir. Returns 0 or -errno with err filled. */
int kernel_adopt(void *zmq_ctx, const char *dir, const struct kernel_opts *opts, struct kernel **ret,
                 struct error_record *err);
/* Kills the process group (SIGKILL), reaps it, closes the sockets and removes the kernel's
 * runtime subdirectory. Accepts NULL. */
void kernel_free(struct kernel *k);

enum kernel_channel {
    KERNEL_SHELL,
    KERNEL_IOPUB,
    KERNEL_CONTROL,
};

/* Sends a request (msg_type, content stolen) on shell or control. Writes the new msg_id into
 * ret_msg_id when non-NULL. Returns 0 or -errno. */
int kernel_send(struct kernel *k, enum kernel_channel ch, const char *msg_type, json_t *content,
                char ret_msg_id[37]);

/* Waits up to timeout for the next message on shell or iopub. Returns 1 with *ret and *ret_ch
 * filled, 0 on timeout, -ESRCH when the kernel process has exited (reaped), or another -errno.
 * Messages that fail to verify are dropped (logged by the caller through err only when the
 * return is negative). */
int kernel_next(struct kernel *k, usec_t timeout, struct jmsg *ret, enum kernel_channel *ret_ch);

/* Whether the process is still running (reaps it when it is not). Thread-safe. */
bool kernel_alive(struct kernel *k);
/* A description of how the process ended ("exited with status 1", "killed by signal 9"), or
 * "running". Writes into buf. */
const char *kernel_exit_string(struct kernel *k, char *buf, size_t size);
/* Interrupts the running execution: SIGINT to the process group for interrupt_mode signal,
 * else interrupt_request on control. Returns 0 or -errno. */
int kernel_interrupt(struct kernel *k);
/* Sends sig to the kernel's process group unless it was reaped. Thread-safe, never blocks. */
void kernel_kill(struct kernel *k, int sig);
pid_t kernel_pid(const struct kernel *k);
/* Whether the kernel may send an execution's output after its idle status (Deno's sends
 * console.log output from another task, which can land after idle). */
bool kernel_late_output(const struct kernel *k);
