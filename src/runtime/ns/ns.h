/* Internal interface of the namespace backend. One kernel facility per file:
 *   ns-plan.c     spec -> validated plan (everything decided and allocated before clone3)
 *   ns-clone.c    the sandbox object, clone3, the parent/child protocol, exec, connect, destroy
 *   ns-mount.c    root filesystem (overlay on a size-limited tmpfs, /proc, /dev, pivot_root)
 *   ns-cgroup.c   v1 and v2 handlers behind struct ns_cgroup_ops
 *   ns-seccomp.c  the filter, compiled to BPF at plan time
 *   ns-caps.c     bounding set, identity switch, capabilities, rlimits
 *   ns-net.c      loopback over rtnetlink
 *   ns-export.c   copying the writable layer out (export_layer)
 * Functions marked "child" run in the forked sandbox child: no allocation, no locks, no logging;
 * they return -errno and fill an error_record. */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "runtime/runtime.h"

/* Templates built in many steps stack one layer per step. Every layer fd travels in one
 * SCM_RIGHTS message (the kernel's limit is 253 fds) and gets a directory on the staging tmpfs. */
#define NS_MAX_LAYERS 128
#define NS_MAX_MOUNTS 8 /* distinct layer targets */
#define NS_ID_MAX 48
#define NS_UID_RANGE 65536u

struct ns_mount_plan {
    char *target;                 /* "/" or a normalised absolute path */
    int layer_fds[NS_MAX_LAYERS]; /* O_PATH dirs, top first */
    size_t n_layers;
};

struct ns_plan {
    char id[NS_ID_MAX + 1];
    char hostname[65];
    uid_t host_uid; /* host uid and gid of the sandbox's root */
    struct ns_mount_plan mounts[NS_MAX_MOUNTS];
    size_t n_mounts;
    struct runtime_limits limits;
    enum runtime_net_mode net;
    char **argv;
    char **env;
    char *cwd;
    char *path; /* PATH used to find argv[0] */
    uid_t uid;
    gid_t gid;
    bool allow_setuid;
    bool disk_ext4;     /* the writable layer is an ext4 image (ns-disk.c), not a tmpfs */
    int stdio[3];       /* borrowed from the spec; -1 = /dev/null */
    char root_dir[256]; /* host attach point for the new root, inside the private mntns */
    /* online network */
    uint32_t host_ip, sandbox_ip; /* network order; the /30 of the slot: .1 host, .2 sandbox */
    char veth[16];                /* host end; the sandbox end is eth0 */
    char net_pool[32];            /* normalised pool CIDR */
    char **allow_out, **deny_out; /* validated, normalised CIDRs */
    char **domains;               /* allow_out's domain names (NULL: none) */
    /* https_ports without 443, 0-terminated: redirected to the proxy like 443 (with domains) */
    uint16_t https_ports[RUNTIME_HTTPS_PORTS_MAX + 1];
    /* The config's egress proxy for those names; NULL: none. */
    const struct runtime_egress *egress;
    bool deny_internet;
    struct sock_fprog seccomp;
};

/* ns-plan.c */
int ns_plan_new(const struct runtime_config *cfg, const struct runtime_spec *spec, struct ns_plan **ret,
                struct error_record *err);
void ns_plan_free(struct ns_plan *plan);
int ns_config_run_dir(const struct runtime_config *cfg, char *out, size_t size);
/* A kernel release ("6.12.117+deb13-cloud-amd64") as NS_KERNEL_VERSION(6, 12); 0 when it does
 * not start with major.minor. */
#define NS_KERNEL_VERSION(major, minor) ((unsigned)(major) << 16 | (unsigned)(minor))
unsigned ns_kernel_version(const char *release);
uid_t ns_config_uid_base(const struct runtime_config *cfg);
/* Validates a spec's https_ports (at most RUNTIME_HTTPS_PORTS_MAX, no duplicates, not 80) and
 * copies it without 443 into ret (0-terminated). -EINVAL with err filled. */
int ns_plan_https_ports(const uint16_t *in, uint16_t ret[RUNTIME_HTTPS_PORTS_MAX + 1],
                        struct error_record *err);
/* Validates argv/env/cwd and copies them (exec() shares it). */
int ns_plan_strv(const char *const *in, bool need_one, size_t max, char ***ret);
void ns_strv_free(char **v);

/* ns-seccomp.c: compiles the filter; prog->filter is malloc'd. */
int ns_seccomp_compile(struct sock_fprog *ret, struct error_record *err);
/* child: installs it (needs CAP_SYS_ADMIN in the user namespace or no_new_privs). */
int ns_seccomp_load(const struct sock_fprog *prog, struct error_record *err);

/* ns-caps.c, child: drops the bounding set to the container set, switches to uid/gid inside
 * (supplementary groups: groups, or gid alone when n_groups is 0), leaves the container set
 * (uid 0) or none, sets no_new_privs when !allow_setuid. seccomp is loaded in the middle, while CAP_SYS_ADMIN
 * is still held. */
int ns_caps_apply(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups, bool allow_setuid,
                  const struct sock_fprog *seccomp, struct error_record *err);
/* child: root inside (the sandbox's own root) as the first step after the maps are written. */
int ns_caps_become_root(struct error_record *err);
int ns_rlimits_apply(const struct runtime_limits *l, struct error_record *err);

/* ns-net.c */
/* child: brings lo up; online: eth0 gets the sandbox address, comes up, default route. */
int ns_net_child_setup(const struct ns_plan *plan, struct error_record *err);
/* parent, plan time: validates and normalises a CIDR list ("a.b.c.d/n", IPv4 or IPv6). */
int ns_net_cidrs(const char *const *in, char ***ret, struct error_record *err);
/* parent, plan time: splits an allow list into CIDRs (as ns_net_cidrs) and domain names
 * (net_domain_pattern_valid(), lowercased); names without an egress proxy are EINVAL. */
int ns_net_allow_list(const struct runtime_egress *egress, const char *const *in, char ***ret_cidrs,
                      char ***ret_domains, struct error_record *err);
/* parent: replaces an online sandbox's egress policy (the proxy's names first, then nftables,
 * in one transaction); plan->domains follows. */
int ns_net_sandbox_policy(struct ns_plan *plan, const char *const *allow_out, const char *const *deny_out,
                          const uint16_t *https_ports, bool deny_internet, struct error_record *err);
/* parent: tells the egress proxy, if any, that the sandbox is gone. */
void ns_net_egress_forget(const struct ns_plan *plan);
/* parent, plan time: the slot's /30 out of the pool, checked against the host's addresses. */
int ns_net_plan_addresses(const struct runtime_config *cfg, unsigned slot, struct ns_plan *plan,
                          struct error_record *err);
/* parent: veth pair (peer eth0 into netns_fd), host address, nftables sets and chain.
 * *ret_veth_made is set once the veth exists (so that a failed add removes only its own). */
int ns_net_sandbox_add(const struct ns_plan *plan, int netns_fd, bool *ret_veth_made,
                       struct error_record *err);
/* parent: removes the nftables objects of sandbox id and, when veth is not NULL, that veth (if
 * still there). */
int ns_net_sandbox_del(const char *id, const char *veth);
/* Removes what a dead owner of slot left on the host: its veth and nftables objects. */
int ns_net_slot_reset(const struct runtime_config *cfg, unsigned slot);

/* ns-nft.c: one table "inet hutch" (libnftables, loaded with dlopen: no process spawned, no
 * build dependency beyond the runtime library). Base chains and the always-blocked sets are
 * (re)installed idempotently on first use; each sandbox adds a chain and two interval sets. */
int ns_nft_sandbox_add(const struct ns_plan *plan, struct error_record *err);
int ns_nft_sandbox_del(const char *id);
/* The chain name (the sandbox id, '-' as '_') that the map sends veth's traffic to: 1 and the
 * name in ret_name when there is one, 0 when not, or -errno. */
int ns_nft_veth_owner(const char *veth, char *ret_name, size_t size);
/* Replaces an online sandbox's egress policy (lists already validated by ns_net_cidrs, ports
 * by ns_plan_https_ports); with domains, TCP to ports 80, 443 and https_ports that the policy
 * would drop is redirected to the egress proxy's port and DNS to the base template's resolvers
 * is allowed. */
int ns_nft_sandbox_policy(const struct ns_plan *plan, char **allow, bool domains, char **deny,
                          const uint16_t *https_ports, bool deny_internet, struct error_record *err);

/* The writable tmpfs's inodes: one per 4 KiB of disk, at least 4096 (an inode bomb ends in
 * ENOSPC too). */
static inline uint64_t ns_disk_inodes(uint64_t disk_bytes)
{
    return disk_bytes / 4096 < 4096 ? 4096 : disk_bytes / 4096;
}

/* ns-disk.c: parent: makes the ext4 writable layer of disk_bytes whose root belongs to the
 * sandbox's root; returns its detached mount's fd (the loop device detaches when it is gone). */
int ns_disk_ext4_new(const struct runtime_config *cfg, const struct ns_plan *plan, struct error_record *err);

/* ns-mount.c */
/* parent: an idmapped (host 0..65535 -> the sandbox range), read-only, nosuid, nodev clone of
 * layer_fd, detached; returns its fd. */
int ns_mount_idmapped_layer(int layer_fd, int userns_fd, bool allow_setuid, struct error_record *err);
/* child: builds the whole root filesystem and pivots into it. layer_fds are the idmapped
 * layers of plan->mounts in order; rw_mnt the parent's ext4 writable layer (plan->disk_ext4)
 * or -1 for a tmpfs made here. *ret_rw_fd gets an O_PATH fd of the writable layer's root
 * (u<index>/{upper,work} per mount of the plan), for the parent to copy the layer out. */
int ns_mount_rootfs(const struct ns_plan *plan, const int *layer_fds, int rw_mnt, int *ret_rw_fd,
                    struct error_record *err);

/* ns-export.c, parent: copies the upper directories below rw_fd (the writable tmpfs of a
 * sandbox of plan) into dest_dir; see export_layer in runtime.h. */
int ns_export_layer(const struct ns_plan *plan, int rw_fd, const char *dest_dir, struct error_record *err);

/* ns-cgroup.c */
struct ns_cgroup;
struct ns_cgroup_ops {
    const char *name;
    /* Fills cg->dirs for sandbox `name` under the caller's own cgroup + "/" + parent. */
    int (*paths)(struct ns_cgroup *cg, const char *parent, const char *name);
    /* Lists the sandbox names under parent: calls cb for each; returns how many. */
    int (*list)(const char *parent, void (*cb)(const char *name, void *userdata), void *userdata);
    /* mkdir + limits; the parent cgroup is created when missing. */
    int (*create)(struct ns_cgroup *cg, const struct runtime_limits *l);
    int (*attach)(struct ns_cgroup *cg, pid_t pid);
    int (*freeze)(struct ns_cgroup *cg, bool frozen);
    int (*kill)(struct ns_cgroup *cg);
    int (*stats)(struct ns_cgroup *cg, struct runtime_stats *ret);
    int (*populated)(struct ns_cgroup *cg); /* 1 populated, 0 empty, -errno */
    int (*remove)(struct ns_cgroup *cg);    /* rmdir, retried while the kernel still tears down */
};
extern const struct ns_cgroup_ops ns_cgroup_v1_ops;
extern const struct ns_cgroup_ops ns_cgroup_v2_ops;

enum { NS_CG_MEMORY, NS_CG_CPU, NS_CG_CPUACCT, NS_CG_PIDS, NS_CG_FREEZER, NS_CG_DEVICES, NS_CG_MAX };

struct ns_cgroup {
    const struct ns_cgroup_ops *ops;
    /* v1: the sandbox's directory in each controller's hierarchy ("" where the controller is
     * absent); v2: dirs[0] only. */
    char dirs[NS_CG_MAX][256];
    int v2_fd;            /* v2: O_PATH of the sandbox cgroup (for CLONE_INTO_CGROUP); else -1 */
    bool made[NS_CG_MAX]; /* directories this object created (a failed create removes only these) */
};

/* v2: where the processes of the caller's own cgroup move when that cgroup must enable
 * controllers for its children (v2 lets a non-root cgroup hold processes or delegate controllers,
 * not both). Paths are computed as if the caller were still in the parent of this leaf. */
#define NS_CGROUP_V2_LEAF "hutch-supervisor"

/* Picks v2 when the caller's v2 cgroup has the memory and pids controllers, v1 otherwise;
 * version 1 or 2 forces one (NULL when that hierarchy is not mounted). */
const struct ns_cgroup_ops *ns_cgroup_detect(int version);
int ns_cgroup_new(const struct ns_cgroup_ops *ops, const char *parent, const char *name,
                  const struct runtime_limits *l, struct ns_cgroup **ret);
/* Kills the tree, waits for it to empty, removes the cgroup, frees cg (NULL accepted). */
int ns_cgroup_destroy(struct ns_cgroup *cg);
/* Removes every leftover sandbox cgroup under parent; returns how many. */
int ns_cgroup_cleanup(const struct ns_cgroup_ops *ops, const char *parent);
/* Removes parent's own (empty) directories; one still in use is left. */
int ns_cgroup_remove_parent(const struct ns_cgroup_ops *ops, const char *parent);
