/* The sandbox's seccomp filter: Docker's default profile (an allow list; anything else fails
 * with EPERM) for x86_64, minus what the threat model removes whole: io_uring, keyrings, the
 * mount API old and new, unshare/setns, namespace flags on clone (clone3 fails with ENOSYS so
 * that libc falls back to clone, whose flags the filter can see), AF_ALG and AF_VSOCK sockets,
 * TIOCSTI and TIOCLINUX (compared on the low 32 bits, as the kernel truncates the request), and
 * opting into KSM (madvise MADV_MERGEABLE, prctl PR_SET_MEMORY_MERGE): merged pages are a timing
 * side channel between processes (CVE-2015-2877), and the sandbox does not choose to open one.
 * Every other architecture (i386 through int 0x80, x32 numbers) kills the process.
 *
 * Compiled once per plan in the parent; the child only installs the BPF. */
#include <errno.h>
#include <pthread.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "runtime/ns/ns.h"

#include "common/banned.h"

/* Docker's default allow list (moby profiles/seccomp/default.json), x86_64 entries, without
 * io_uring_*, and with ptrace/process_vm_* (Docker allows them on kernels >= 4.8; the pid
 * namespace confines them) and chroot (CAP_SYS_CHROOT is in the container set). Names libseccomp
 * does not know are skipped. */
static const char *const allowed[] = {
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chroot",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "modify_ldt",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
};

/* Socket families a sandbox may open; AF_PACKET also needs CAP_NET_RAW, which it lacks. */
static const int allowed_families[] = { AF_UNIX, AF_INET, AF_INET6, AF_NETLINK };
/* Families answered with EAFNOSUPPORT (so probes see "not there", not "forbidden"). */
static const int refused_families[] = { AF_ALG, AF_VSOCK };

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67 /* Linux 6.4; Debian 12's headers are older */
#endif

/* Calls allowed but for some values of one 32-bit argument (the kernel reads an int there and
 * ignores the register's upper half), each refused with its own errno: madvise and prctl as a
 * kernel without KSM answers, TIOCSTI and TIOCLINUX as Linux 6.2 without legacy TIOCSTI. */
static const struct {
    int nr;
    unsigned arg;
    scmp_datum_t value;
    int errnum;
} refused_values[] = {
    { __NR_madvise, 2, MADV_MERGEABLE, EINVAL },
    { __NR_prctl, 0, PR_SET_MEMORY_MERGE, EINVAL },
    { __NR_ioctl, 1, TIOCSTI, EIO },
    { __NR_ioctl, 1, TIOCLINUX, EIO },
};

/* Namespace flags a plain clone may not carry: the sandbox creates no namespaces. */
#define NS_CLONE_NS_FLAGS                                                                                    \
    (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |            \
     CLONE_NEWNET)

static void ctx_releasep(scmp_filter_ctx *ctx)
{
    if (*ctx)
        seccomp_release(*ctx);
}

static int build(scmp_filter_ctx ctx, struct error_record *err)
{
    int r;
    for (size_t i = 0; i < ARRAY_SIZE(allowed); i++) {
        int nr = seccomp_syscall_resolve_name(allowed[i]);
        if (nr == __NR_SCMP_ERROR)
            continue;
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (r < 0)
            return error_set_errno(err, r, "seccomp: allow %s", allowed[i]);
    }
    /* libseccomp 2.5 compares all 64 bits, also in its _32 macros: `12 | 1ul << 32` is neither
     * equal to 12 nor below it, and the kernel reads it as 12. So a refused value is matched
     * on its low half (MASKED_EQ), which the filter checks before the allowed ranges around it;
     * tests/attacks tries the high-bit forms from inside. */
    for (size_t i = 0; i < ARRAY_SIZE(refused_values); i++) {
        struct scmp_arg_cmp low_half = { refused_values[i].arg, SCMP_CMP_MASKED_EQ, 0xffffffff,
                                         refused_values[i].value };
        r = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(refused_values[i].errnum), refused_values[i].nr, 1,
                                   &low_half);
        if (r < 0)
            return error_set_errno(err, r, "seccomp: refuse %llu of syscall %d",
                                   (unsigned long long)refused_values[i].value, refused_values[i].nr);
    }
    static const struct {
        int nr;
        unsigned arg;
        scmp_datum_t value;
    } allowed_around[] = {
        { __NR_madvise, 2, MADV_MERGEABLE },
        { __NR_prctl, 0, PR_SET_MEMORY_MERGE },
    };
    for (size_t i = 0; i < ARRAY_SIZE(allowed_around); i++) {
        struct scmp_arg_cmp below = { allowed_around[i].arg, SCMP_CMP_LT, allowed_around[i].value, 0 };
        struct scmp_arg_cmp above = { allowed_around[i].arg, SCMP_CMP_GT, allowed_around[i].value, 0 };
        r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, allowed_around[i].nr, 1, &below);
        if (r >= 0)
            r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, allowed_around[i].nr, 1, &above);
        if (r < 0)
            return error_set_errno(err, r, "seccomp: allow syscall %d", allowed_around[i].nr);
    }
    static const unsigned long personalities[] = { 0, 8, 0x20000, 0x20008, 0xffffffff };
    for (size_t i = 0; i < ARRAY_SIZE(personalities); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1,
                             SCMP_A0(SCMP_CMP_EQ, personalities[i]));
        if (r < 0)
            return error_set_errno(err, r, "seccomp: personality");
    }
    for (size_t i = 0; i < ARRAY_SIZE(allowed_families); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)allowed_families[i]));
        if (r < 0)
            return error_set_errno(err, r, "seccomp: socket");
    }
    for (size_t i = 0; i < ARRAY_SIZE(refused_families); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)refused_families[i]));
        if (r < 0)
            return error_set_errno(err, r, "seccomp: socket");
    }
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, NS_CLONE_NS_FLAGS, 0));
    if (r < 0)
        return error_set_errno(err, r, "seccomp: clone");
    r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (r < 0)
        return error_set_errno(err, r, "seccomp: clone3");
    /* ioctl: everything but the terminal injection requests TIOCSTI (0x5412) and TIOCLINUX
     * (0x541C), refused above with their high-bit forms. */
    struct {
        enum scmp_compare op;
        scmp_datum_t v;
    } ranges[] = { { SCMP_CMP_LT, TIOCSTI }, { SCMP_CMP_GT, TIOCLINUX } };
    for (size_t i = 0; i < ARRAY_SIZE(ranges); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(ranges[i].op, ranges[i].v));
        if (r < 0)
            return error_set_errno(err, r, "seccomp: ioctl range");
    }
    for (unsigned long req = TIOCSTI + 1; req < TIOCLINUX; req++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, req));
        if (r < 0)
            return error_set_errno(err, r, "seccomp: ioctl");
    }
    return 0;
}

static int compile(struct sock_fprog *ret, struct error_record *err)
{
    _cleanup_(ctx_releasep) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx)
        return error_set(err, ENOMEM, "seccomp_init failed");
    /* Only the native arch is in the filter; i386 (int 0x80) and x32 (nr | 0x40000000, which
     * libseccomp checks on x86_64) end in the bad-arch action. */
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r < 0)
        return error_set_errno(err, r, "seccomp: bad-arch action");
    /* no_new_privs is the caller's decision (ns-caps.c), not libseccomp's. */
    r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (r < 0)
        return error_set_errno(err, r, "seccomp: nnp attr");
    r = build(ctx, err);
    if (r < 0)
        return r;

    _cleanup_close_ int fd = memfd_create("hutch-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, errno, "memfd_create");
    r = seccomp_export_bpf(ctx, fd);
    if (r < 0)
        return error_set_errno(err, r, "seccomp_export_bpf");
    struct stat st;
    if (fstat(fd, &st) < 0)
        return error_set_errno(err, errno, "fstat");
    if (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
        st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS)
        return error_set(err, E2BIG, "seccomp program of %lld bytes", (long long)st.st_size);
    struct sock_filter *insns = xmalloc((size_t)st.st_size);
    ssize_t n = pread(fd, insns, (size_t)st.st_size, 0);
    if (n != st.st_size) {
        free(insns);
        return error_set(err, EIO, "short read of the seccomp program");
    }
    ret->filter = insns;
    ret->len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
    return 0;
}

/* The filter is the same for every sandbox: compile it once per process, hand out copies. */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sock_fprog cache;

int ns_seccomp_compile(struct sock_fprog *ret, struct error_record *err)
{
    pthread_mutex_lock(&cache_lock);
    int r = cache.filter ? 0 : compile(&cache, err);
    if (r >= 0) {
        size_t size = cache.len * sizeof(struct sock_filter);
        ret->filter = xmalloc(size);
        memcpy(ret->filter, cache.filter, size);
        ret->len = cache.len;
    }
    pthread_mutex_unlock(&cache_lock);
    return r;
}

int ns_seccomp_load(const struct sock_fprog *prog, struct error_record *err)
{
    /* TSYNC is not needed: the child is single-threaded. */
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) < 0)
        return error_set_errno(err, errno, "seccomp(SET_MODE_FILTER)");
    return 0;
}
