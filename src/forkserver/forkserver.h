/* The kernel fork server: one process per hutch server that imports the code interpreter's
 * Python libraries once and forks a Jupyter kernel into each code-interpreter sandbox, so that
 * the sandboxes' kernels share those pages (copy-on-write) instead of each importing its own.
 *
 * The fork server runs on the host as uid 0 with no capabilities, non-dumpable, in mount,
 * network, ipc and uts namespaces of its own where the host's file systems are read-only and
 * hutch's bundle sits at /opt/hutch (the path sandboxes see). It runs no code from any sandbox
 * and keeps no request's data: each request is parsed only in the child forked for it, and the
 * parent zeroes the bytes it received. The child joins the sandbox with runtime_ns_join_enter(),
 * forks once more (the pid namespace applies to children), and the grandchild finishes the join
 * (runtime_ns_join_finish: identity, bounding set, seccomp, rlimits) before any Python runs.
 *
 * Protocol on the server's socket (SOCK_SEQPACKET, from hutch serve, the only peer):
 *   fork server -> "ready" once the libraries are imported (or it exits non-zero)
 *   request     -> a JSON object {user, dir, uid, gid, cwd, env: ["K=V", ...], nofile, allow_setuid}
 *                  with SCM_RIGHTS fds [reply socket, then struct runtime_join's fds]
 *   reply       <- on the reply socket, from the kernel's process once it is in the sandbox:
 *                  "ok <pid in the sandbox>" or "error <errno> <message>"
 * EOF on the server's socket ends the fork server. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

#define FORKSERVER_REQUEST_MAX (256 * 1024)
#define FORKSERVER_MAX_FDS 9 /* the reply socket and RUNTIME_JOIN_MAX_FDS */
#define FORKSERVER_REPLY_MAX 512

struct forkserver_config {
    int sock;               /* to hutch serve */
    int bundle_fd;          /* O_PATH directory mounted at /opt/hutch */
    const char *python_lib; /* inside that view, put first on sys.path */
    const char *preload;    /* comma-separated modules to import */
    /* Mark every page of this process and of its children mergeable for KSM
     * (PR_SET_MEMORY_MERGE), once the imports are done. */
    bool memory_merge;
};

/* Own namespaces, read-only host, bundle at /opt/hutch, capabilities dropped. Returns 0 or
 * -errno with err filled. */
int forkserver_confine(const struct forkserver_config *cfg, struct error_record *err);
/* Starts Python and imports the kernel's modules and cfg->preload, then freezes the heap (and
 * marks it mergeable with cfg->memory_merge). */
int forkserver_python_init(const struct forkserver_config *cfg, struct error_record *err);
/* Says "ready", then serves requests until EOF. Returns 0 on EOF or -errno. */
int forkserver_serve(const struct forkserver_config *cfg, struct error_record *err);
