/* Identity and privilege of sandbox processes: the sandbox root is root only in its own user
 * namespace (an unprivileged host uid range), its bounding set is a container-like set without
 * CAP_MKNOD, CAP_NET_RAW and anything administrative, and no_new_privs is set unless the
 * template lets `user` become root through setuid (E2B's base lets `user` sudo). All functions
 * here run in the sandbox child (or exec's helper) after clone: no allocation. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/ns/ns.h"

/* Raw syscalls, not glibc's wrappers: in a multi-threaded process glibc broadcasts credential
 * changes to every thread it knows of (and takes its thread-list lock to do so). The child of a
 * raw clone3 inherits that list and that lock from the parent, with none of the threads. */
static int sys_setgroups(size_t n, const gid_t *groups)
{
    return (int)syscall(SYS_setgroups, n, groups);
}

static int sys_setresgid(gid_t r, gid_t e, gid_t s)
{
    return (int)syscall(SYS_setresgid, r, e, s);
}

static int sys_setresuid(uid_t r, uid_t e, uid_t s)
{
    return (int)syscall(SYS_setresuid, r, e, s);
}

#include "common/banned.h"

/* Docker's default capability set minus CAP_MKNOD and CAP_NET_RAW. */
static const int keep_caps[] = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,     CAP_SETGID, CAP_SETUID,
    CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL,   CAP_AUDIT_WRITE,
};

static bool kept(int cap)
{
    for (size_t i = 0; i < ARRAY_SIZE(keep_caps); i++)
        if (keep_caps[i] == cap)
            return true;
    return false;
}

int ns_caps_become_root(struct error_record *err)
{
    /* setgroups first: the host's supplementary groups are unmapped here and must go. */
    if (sys_setgroups(0, NULL) < 0)
        return error_set_errno(err, errno, "setgroups");
    if (sys_setresgid(0, 0, 0) < 0)
        return error_set_errno(err, errno, "setresgid(0)");
    if (sys_setresuid(0, 0, 0) < 0)
        return error_set_errno(err, errno, "setresuid(0)");
    return 0;
}

int ns_caps_apply(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups, bool allow_setuid,
                  const struct sock_fprog *seccomp, struct error_record *err)
{
    for (int cap = 0; cap <= 63; cap++) {
        int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (r < 0)
            break; /* past the kernel's last capability */
        if (r == 1 && !kept(cap) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return error_set_errno(err, errno, "PR_CAPBSET_DROP %d", cap);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return error_set_errno(err, errno, "PR_CAP_AMBIENT_CLEAR_ALL");
    if (!allow_setuid && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return error_set_errno(err, errno, "PR_SET_NO_NEW_PRIVS");
    /* Loaded while CAP_SYS_ADMIN (of the sandbox's user namespace) is still held: without
     * no_new_privs the kernel requires it. Everything below is allowed by the filter. */
    int r = ns_seccomp_load(seccomp, err);
    if (r < 0)
        return r;
    if (n_groups == 0) {
        groups = &gid;
        n_groups = 1;
    }
    if (sys_setgroups(n_groups, groups) < 0)
        return error_set_errno(err, errno, "setgroups (%zu groups)", n_groups);
    if (sys_setresgid(gid, gid, gid) < 0)
        return error_set_errno(err, errno, "setresgid(%u)", (unsigned)gid);
    if (sys_setresuid(uid, uid, uid) < 0)
        return error_set_errno(err, errno, "setresuid(%u)", (unsigned)uid);
    if (uid == 0) {
        /* Root inside keeps only the container set (execve would compute the same from the
         * bounding set; being explicit keeps the window before exec narrow too). */
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = { 0 };
        for (size_t i = 0; i < ARRAY_SIZE(keep_caps); i++) {
            data[keep_caps[i] / 32].effective |= 1u << (keep_caps[i] % 32);
            data[keep_caps[i] / 32].permitted |= 1u << (keep_caps[i] % 32);
        }
        if (syscall(SYS_capset, &hdr, data) < 0)
            return error_set_errno(err, errno, "capset");
    }
    return 0;
}

int ns_rlimits_apply(const struct runtime_limits *l, struct error_record *err)
{
    struct rlimit core = { 0, 0 };
    if (setrlimit(RLIMIT_CORE, &core) < 0)
        return error_set_errno(err, errno, "setrlimit(RLIMIT_CORE)");
    /* The host's root lacks CAP_SYS_RESOURCE here, so the hard limit can only go down. */
    struct rlimit cur;
    if (getrlimit(RLIMIT_NOFILE, &cur) < 0)
        return error_set_errno(err, errno, "getrlimit(RLIMIT_NOFILE)");
    rlim_t n = l->nofile;
    if (cur.rlim_max != RLIM_INFINITY && n > cur.rlim_max)
        n = cur.rlim_max;
    struct rlimit nofile = { n, n };
    if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
        return error_set_errno(err, errno, "setrlimit(RLIMIT_NOFILE, %llu)", (unsigned long long)n);
    return 0;
}
