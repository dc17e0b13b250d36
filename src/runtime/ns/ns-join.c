/* Joining a running sandbox from a process the runtime did not start (runtime.h,
 * runtime_ns_join_enter/finish): the kernel fork server's children, which must keep the memory
 * they were forked with and so cannot be exec()'d like exec()'s processes. The end state is
 * that of a process exec() starts (same cgroup, namespaces, root, rlimits, session, bounding
 * set, no_new_privs rule, seccomp filter and identity), minus the execve. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/ns/ns.h"

#include "common/banned.h"

int runtime_ns_join_enter(const struct runtime_join *j, struct error_record *err)
{
    if (j->n_fds < 1 || j->n_fds > RUNTIME_JOIN_MAX_FDS)
        return error_set(err, EINVAL, "a join handle has a pidfd and cgroup files");
    /* The cgroup first, while still outside: everything the process does from here on is
     * charged to the sandbox and frozen or killed with it. "0" is the writer itself. */
    for (size_t i = 1; i < j->n_fds; i++)
        if (pwrite(j->fds[i], "0", 1, 0) != 1)
            return error_set_errno(err, errno, "joining the sandbox's cgroup");
    /* The user namespace alone first: its owner (host uid 0) gets every capability in it
     * without holding any in the host's, and the other namespaces then check the capabilities
     * of the user namespace the process is now in. */
    if (setns(j->fds[0], CLONE_NEWUSER) < 0)
        return error_set_errno(err, errno, "setns into the sandbox's user namespace");
    if (setns(j->fds[0], CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC |
                             CLONE_NEWCGROUP | CLONE_NEWTIME) < 0)
        return error_set_errno(err, errno, "setns into the sandbox's namespaces");
    return 0;
}

static int stdio_to_null(struct error_record *err)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, errno, "open /dev/null");
    for (int i = 0; i < 3; i++)
        if (dup2(fd, i) < 0)
            return error_set_errno(err, errno, "dup2 /dev/null");
    if (fd > 2)
        close(fd);
    return 0;
}

int runtime_ns_join_prepare(struct error_record *err)
{
    struct sock_fprog seccomp = { 0 };
    int r = ns_seccomp_compile(&seccomp, err);
    free(seccomp.filter);
    return r;
}

int runtime_ns_join_finish(const struct runtime_join *j, uid_t uid, gid_t gid, const gid_t *groups,
                           size_t n_groups, const char *cwd, int keep_fd, struct error_record *err)
{
    if (uid >= NS_UID_RANGE || gid >= NS_UID_RANGE)
        return error_set(err, ERANGE, "uid/gid out of range");
    for (size_t i = 0; i < n_groups; i++)
        if (groups[i] >= NS_UID_RANGE)
            return error_set(err, ERANGE, "group %u out of range", (unsigned)groups[i]);
    if (!cwd || cwd[0] != '/')
        return error_set(err, EINVAL, "cwd must be absolute");
    struct sock_fprog seccomp = { 0 };
    int r = ns_seccomp_compile(&seccomp, err);
    if (r < 0)
        return r;
    /* Fds of the caller's past (the fork server's socket, the join handle) end here. */
    if (keep_fd > 2) {
        close_range(3, (unsigned)keep_fd - 1, 0);
        close_range((unsigned)keep_fd + 1, ~0U, 0);
    } else {
        close_range(3, ~0U, 0);
    }
    r = ns_caps_become_root(err);
    if (r >= 0)
        r = ns_rlimits_apply(&j->limits, err);
    if (r >= 0 && setsid() < 0)
        r = error_set_errno(err, errno, "setsid");
    if (r >= 0)
        r = stdio_to_null(err);
    umask(022);
    if (r >= 0)
        r = ns_caps_apply(uid, gid, groups, n_groups, j->allow_setuid, &seccomp, err);
    free(seccomp.filter);
    if (r >= 0 && chdir(cwd) < 0)
        r = error_set_errno(err, errno, "chdir %s", cwd);
    /* Ownership of its /proc files and ptrace by the sandbox's own user, as for any process of
     * the user's (a uid change made it non-dumpable). */
    if (r >= 0 && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        r = error_set_errno(err, errno, "PR_SET_DUMPABLE");
    return r;
}
