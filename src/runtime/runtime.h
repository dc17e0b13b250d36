/* The runtime interface (ARCHITECTURE §3): one struct of function pointers that the orchestrator
 * drives without knowing which backend sits behind it. A backend turns a runtime_spec into a
 * running sandbox and tears it down without a trace.
 *
 * Invariants every backend keeps:
 * - create() validates the whole spec before any kernel object exists, and a failed create()
 *   leaves nothing behind (it runs the same teardown as destroy()).
 * - destroy() always completes and frees the sandbox; what it could not remove is reported by
 *   its return value, never left for the caller to do.
 * - Functions return >= 0 on success and -errno on failure; where the failure has a story (a
 *   step inside the sandbox failed), err (which may be NULL) gets errno + message.
 * - Library code never logs. Calls block; none is safe in a forked child. Calls on one sandbox
 *   are not synchronised with each other; different sandboxes may be used from different
 *   threads at once.
 * - The ns backend's processes are children of the caller: the caller must not reap children
 *   it did not start (no waitpid(-1), no SIGCHLD set to SIG_IGN). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "common/time-util.h"

/* A read-only layer: the host directory `source` appears at `target` inside the sandbox. Layers
 * sharing a target stack as overlay lower layers, the first one on top; every target gets a
 * writable upper on the sandbox's own size-limited writable layer. One layer must target "/". */
struct runtime_layer {
    const char *source;
    const char *target;
};

struct runtime_limits {
    uint64_t memory_bytes; /* RAM for the workload; 0 = no limit */
    uint64_t disk_bytes;   /* size of the writable layer; required (> 0) */
    uint32_t cpu_millis;   /* CPU time per second of wall time, 1000 = one CPU; 0 = no limit */
    uint32_t pids_max;     /* tasks in the sandbox; 0 = no limit */
    uint32_t nofile;       /* RLIMIT_NOFILE; 0 = the backend's default */
};

enum runtime_net_mode {
    RUNTIME_NET_OFFLINE, /* own network namespace with loopback only */
    RUNTIME_NET_ONLINE,  /* a veth to the host, NAT, egress filtered by the lists below */
};

#define RUNTIME_HTTPS_PORTS_MAX 16

struct runtime_spec {
    const char *id; /* [a-z0-9-], 1..48 characters, unique on the host */
    unsigned slot;  /* selects the sandbox's host uid/gid range (base + 65536 * slot) and its
                     * network /30; the caller keeps slots unique among live sandboxes */
    const struct runtime_layer *layers;
    size_t n_layers;
    struct runtime_limits limits;
    enum runtime_net_mode net;
    /* Online only. Egress: private, link-local, metadata and host addresses are always
     * blocked; then allow_out (CIDRs) is accepted, deny_out (CIDRs) dropped, and the rest is
     * accepted unless deny_internet (E2B's allow_internet_access: false). NULL = empty.
     * allow_out may also hold domain names (net_domain_pattern_valid()) when the config has
     * an egress proxy: TCP to ports 80, 443 and https_ports that the rules above would drop
     * then goes to it. */
    const char *const *allow_out;
    const char *const *deny_out;
    /* E2B's network.httpsPorts: further TCP ports (0-terminated, at most RUNTIME_HTTPS_PORTS_MAX,
     * no duplicates, never 80; 443 is implied) that go to the egress proxy like 443, where only
     * a TLS ClientHello is accepted. No effect without domain names in allow_out. NULL = none. */
    const uint16_t *https_ports;
    bool deny_internet;
    const char *hostname;    /* NULL = id */
    const char *const *argv; /* the sandbox's first process (envd in production); argv[0] is a
                              * path inside the sandbox or a name searched in its PATH */
    const char *const *env;  /* "K=V" entries, NULL-terminated; NULL = a minimal PATH only */
    const char *cwd;         /* inside the sandbox; NULL = "/" */
    uid_t uid;               /* inside the sandbox, 0..65535 */
    gid_t gid;
    bool allow_setuid;                  /* template lets `user` sudo: no no_new_privs, setuid honoured */
    int stdin_fd, stdout_fd, stderr_fd; /* dup'ed into the sandbox; -1 = /dev/null */
};

/* A process started in a running sandbox by exec(). */
struct runtime_exec {
    const char *const *argv;
    const char *const *env;
    const char *cwd;
    uid_t uid;
    gid_t gid;
    int stdin_fd, stdout_fd, stderr_fd;
};

/* What a process outside the runtime needs to join a running sandbox (hutch's kernel fork
 * server, whose children must keep the memory they were forked with, so cannot be exec()'d). */
#define RUNTIME_JOIN_MAX_FDS 8
struct runtime_join {
    /* [0]: a pidfd of the sandbox's first process (its namespaces); then the sandbox's
     * cgroup.procs files, open for writing (one per cgroup v1 hierarchy, one on v2). */
    int fds[RUNTIME_JOIN_MAX_FDS];
    size_t n_fds;
    struct runtime_limits limits; /* the rlimits every sandbox process gets */
    bool allow_setuid;            /* the no_new_privs rule of the sandbox's processes */
};

struct runtime_stats {
    uint64_t cpu_usec;     /* CPU time consumed by the whole sandbox */
    uint64_t memory_bytes; /* memory charged to it now (writable layer included) */
    uint64_t disk_bytes;   /* bytes used on the writable layer */
    uint64_t pids;         /* tasks now */
};

/* The egress proxy that domain names in allow_out need (hutch serve's, src/egress/): a TCP
 * listener on every host address. set is called with the sandbox's domains (NULL when none)
 * and its https_ports other than 443 (0-terminated, NULL when none: on those only TLS is
 * accepted) before nftables redirects anything to port, forget when the sandbox is destroyed;
 * both block briefly and are called from the thread that creates, reconfigures or destroys
 * the sandbox. */
struct runtime_egress {
    uint16_t port;
    void *userdata;
    int (*set)(void *userdata, const char *id, uint32_t sandbox_ip, const char *const *domains,
               const uint16_t *tls_ports, struct error_record *err);
    void (*forget)(void *userdata, const char *id);
};

/* What holds a sandbox's writable layer (overlay's upper directories). */
enum runtime_writable_layer {
    RUNTIME_LAYER_AUTO,  /* tmpfs where the kernel's tmpfs has user xattrs (Linux >= 6.6), else ext4 */
    RUNTIME_LAYER_TMPFS, /* a tmpfs of disk_bytes, charged to the sandbox's memory cgroup */
    RUNTIME_LAYER_EXT4,  /* an ext4 image of disk_bytes on a loop device, in disk_dir */
};

struct runtime_config {
    const char *run_dir;                 /* host directory for runtime attach points; default /run/hutch */
    uid_t uid_base;                      /* host uid/gid of slot 0's root; default 0x10000000 */
    const char *cgroup_parent;           /* name of the cgroup under the caller's own one; default hutch */
    const char *net_pool;                /* IPv4 CIDR of sandbox links, a /30 per slot; default
                                          * 10.200.0.0/16; must not overlap any host address */
    int cgroup_version;                  /* 0 = detect (v2 when it has the memory and pids controllers,
                                          * else v1); 1 or 2 to force one (tests, hybrid hosts) */
    const struct runtime_egress *egress; /* NULL: domain names in allow_out are refused */
    enum runtime_writable_layer writable_layer;
    const char *disk_dir; /* where RUNTIME_LAYER_EXT4 images live (unnamed O_TMPFILEs, gone with
                           * their sandbox); default /var/tmp */
};

struct runtime_sandbox;

/* Directory levels below a layer's root that export_layer copies (each level holds two fds). */
#define RUNTIME_EXPORT_MAX_DEPTH 256

struct runtime_ops {
    const char *name;
    /* Builds the sandbox up to the point where its first process is about to exec. */
    int (*create)(const struct runtime_config *cfg, const struct runtime_spec *spec,
                  struct runtime_sandbox **ret, struct error_record *err);
    /* Lets the first process exec; returns once it has (or failed to, with err). */
    int (*start)(struct runtime_sandbox *sb, struct error_record *err);
    /* Returns a connected stream socket (O_CLOEXEC) to 127.0.0.1:port inside the sandbox. */
    int (*connect)(struct runtime_sandbox *sb, uint16_t port, struct error_record *err);
    /* Returns a new, unconnected TCP socket (AF_INET, O_CLOEXEC) in the sandbox's network
     * namespace, for callers that connect themselves (libcurl in the gateway). */
    int (*socket)(struct runtime_sandbox *sb, struct error_record *err);
    /* Replaces the egress policy of an online sandbox (the same rules as at create: allow_out,
     * deny_out, https_ports, deny_internet; private, link-local, metadata and host addresses
     * stay blocked), atomically. -EOPNOTSUPP for an offline sandbox; -EINVAL (err filled) for a
     * bad CIDR or port list. */
    int (*set_egress)(struct runtime_sandbox *sb, const char *const *allow_out, const char *const *deny_out,
                      const uint16_t *https_ports, bool deny_internet, struct error_record *err);
    /* Starts a process inside the running sandbox; returns a pidfd (O_CLOEXEC) for it. The
     * process is a child of the caller: reap it with waitid(P_PIDFD, ...). */
    int (*exec)(struct runtime_sandbox *sb, const struct runtime_exec *ex, struct error_record *err);
    /* Fills ret for a process outside the runtime that joins this sandbox with
     * runtime_ns_join_enter() and runtime_ns_join_finish(). The fds are new (O_CLOEXEC) and
     * the caller's to pass on and close. -ESRCH when not running, -EBUSY when frozen. */
    int (*join_handle)(struct runtime_sandbox *sb, struct runtime_join *ret, struct error_record *err);
    /* Stops every process of the sandbox (cgroup freezer) / lets them run again. exec() into a
     * frozen sandbox fails with EBUSY; destroy() of a frozen one works. */
    int (*freeze)(struct runtime_sandbox *sb);
    int (*thaw)(struct runtime_sandbox *sb);
    /* ns backend: the same as freeze/thaw for now (processes and the writable layer stay in
     * memory; surviving a restart of the owner needs a persistent writable layer). */
    int (*pause)(struct runtime_sandbox *sb);
    int (*resume)(struct runtime_sandbox *sb);
    /* Waits up to timeout for the first process to exit; returns its wait status (>= 0),
     * -ETIMEDOUT, or -errno. */
    int (*wait)(struct runtime_sandbox *sb, usec_t timeout);
    int (*stats)(struct runtime_sandbox *sb, struct runtime_stats *ret);
    /* Copies the sandbox's writable layer into dest_dir (created with mode 0700; must not exist):
     * one subdirectory per distinct layer target, named "0", "1", ... in the order the targets
     * first appear in spec.layers, holding that target's overlay upper directory: regular files,
     * directories, symlinks, fifos, overlay whiteouts (char 0/0) and opaque markers (the
     * user.overlay.opaque xattr), with owners shifted from the sandbox's uid/gid range back to
     * 0..65535 (so the result can be a lower layer of any sandbox, idmapped like a template layer),
     * modes (setuid bits included), mtimes and user.* xattrs other than overlay's own bookkeeping
     * (keep only user.overlay.opaque). Anything else (sockets, device nodes other than 0/0) is
     * skipped. Hard links become separate copies. Call it on a frozen sandbox for a consistent copy.
     * Returns 0 or -errno with err filled; on failure dest_dir is removed.
     * ns backend: the tree is written by the sandbox and read by fd only, never following a
     * symlink or crossing a mount; a tree deeper than RUNTIME_EXPORT_MAX_DEPTH levels fails with
     * ELOOP. It works until destroy(), also after the sandbox's processes have exited. */
    int (*export_layer)(struct runtime_sandbox *sb, const char *dest_dir, struct error_record *err);
    /* Kills everything and removes every trace; always frees sb (NULL is accepted). Returns 0,
     * or the first -errno of a step that could not complete (the rest still ran). */
    int (*destroy)(struct runtime_sandbox *sb);
};

extern const struct runtime_ops runtime_ns_ops;

/* Whether this kernel can run the namespace backend's sandboxes (Linux >= 6.1, the oldest one
 * tested); every create checks it too. Returns 0, or -EOPNOTSUPP with the reason in err. */
int runtime_ns_check_host(struct error_record *err);

/* Removes what a crashed owner left: every sandbox cgroup under the hutch parent (its processes
 * killed first) and its nftables chain and sets (the veth died with its network namespace).
 * Returns the number of sandboxes removed, or -errno. */
int runtime_ns_cleanup(const struct runtime_config *cfg);

/* For an owner that is done with every sandbox: removes the now empty parent cgroups of cfg
 * and the run_dir attach point (directories only a live sandbox needs). Whatever still holds a
 * sandbox is left as it is. Returns 0 or the first unexpected -errno. */
int runtime_ns_release(const struct runtime_config *cfg);

/* For whoever has just acquired a slot exclusively: removes what a dead former holder of the
 * slot left on the host (an online sandbox's veth and nftables objects, when its owner was
 * killed in the middle of a create). Never call it for a slot another live sandbox may hold.
 * Returns 0 or -errno. */
int runtime_ns_slot_reset(const struct runtime_config *cfg, unsigned slot);

/* Joining a sandbox from outside the runtime, in two steps around a fork(), for a process that
 * must keep its memory (a kernel fork server's child). The joining process must be
 * single-threaded and have effective uid 0 in the host's user namespace; it needs no
 * capability there (the sandbox's user namespace is owned by that uid).
 * enter: moves the caller into the sandbox's cgroup, then its user namespace, then its mount,
 *        pid (for its children), network, uts, ipc, cgroup and time namespaces.
 * The caller then forks; in the child (pid N of the sandbox):
 * finish: the sandbox's root, rlimits, a new session, stdin/stdout/stderr on /dev/null, the
 *        sandbox's bounding set, no_new_privs rule and seccomp filter, uid/gid and the
 *        supplementary groups (gid alone when n_groups is 0), cwd: what a process started by
 *        exec() has, without an execve. fds 3 and up are closed except keep_fd (-1 for none). */
int runtime_ns_join_enter(const struct runtime_join *j, struct error_record *err);
/* Optional, before any fork: compiles what finish loads (the seccomp filter) into this
 * process's cache, so that the children of a fork server only copy the result instead of each
 * building it on the heap they share with it. */
int runtime_ns_join_prepare(struct error_record *err);
int runtime_ns_join_finish(const struct runtime_join *j, uid_t uid, gid_t gid, const gid_t *groups,
                           size_t n_groups, const char *cwd, int keep_fd, struct error_record *err);

/* Writes the root filesystem layer of the `host` base template under dir (created if missing,
 * must be empty): merged-usr symlinks (bin, lib, lib64, sbin -> usr/...), mount-point
 * directories, and a small generated /etc (passwd and group with root and `user` 1000, hosts,
 * resolv.conf, nsswitch.conf, ...). The template is this layer at "/" plus the host's /usr as a
 * second layer at "/usr". */
int runtime_base_template_build(const char *dir, struct error_record *err);
