/* A static probe run inside sandboxes by tests/priv and tests/attacks. `hutch-probe NAME [ARGS]`
 * runs one helper or one attack. Attacks exit 0 when the attack FAILED (the sandbox held) and
 * 1 when it succeeded, printing what happened; helpers (listen, membomb, forkbomb, ticker)
 * serve the mechanism tests; `view MARKER` (row 3) and `egress ALLOWED DENIED DENIED6 PORT`
 * (row 19) serve tests/attacks/test-race and test-egress. Statically linked and built without
 * sanitizers so it runs in any root filesystem and is killed only by what it provokes. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/keyctl.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "common/banned.h"

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#define X32_BIT 0x40000000

static int failures;

/* readlink into buf (size bytes), NUL-terminated; "" when it fails. */
static void read_link(const char *path, char *buf, size_t size)
{
    ssize_t n = readlink(path, buf, size - 1);
    buf[n > 0 ? n : 0] = '\0';
}

/* Records an attack step that must not succeed. */
static void expect_fail(const char *what, long r)
{
    if (r >= 0) {
        printf("ESCAPE: %s succeeded (%ld)\n", what, r);
        failures++;
    } else {
        printf("held: %s: %s\n", what, strerror(errno));
    }
}

static void expect(const char *what, int ok)
{
    if (!ok) {
        printf("ESCAPE: %s\n", what);
        failures++;
    } else {
        printf("held: %s\n", what);
    }
}

/* Runs fn in a child and reports how it ended: exit code, or 128 + signal. */
static int in_child(void (*fn)(void))
{
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        fn();
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

/* ---- helpers ---- */

static int cmd_listen(int port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 4) < 0) {
        printf("listen: %s\n", strerror(errno));
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    int c = accept(s, NULL, NULL);
    if (c < 0)
        return 3;
    const char msg[] = "hello from inside\n";
    if (write(c, msg, sizeof(msg) - 1) < 0)
        return 4;
    close(c);
    return 0;
}

/* Connects to ip:port with a 2 s timeout; prints "connected: <first line>" or "failed: ...". */
static int cmd_connect(const char *ip, int port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
        return 2;
    int r = connect(s, (struct sockaddr *)&sa, sizeof(sa));
    if (r < 0 && errno == EINPROGRESS) {
        struct pollfd p = { .fd = s, .events = POLLOUT };
        if (poll(&p, 1, 2000) <= 0) {
            printf("failed %s:%d: timeout\n", ip, port);
            return 1;
        }
        int e = 0;
        socklen_t len = sizeof(e);
        getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &len);
        errno = e;
        r = e ? -1 : 0;
    }
    if (r < 0) {
        printf("failed %s:%d: %s\n", ip, port, strerror(errno));
        return 1;
    }
    char buf[128] = "";
    struct pollfd p = { .fd = s, .events = POLLIN };
    ssize_t n = poll(&p, 1, 2000) > 0 ? read(s, buf, sizeof(buf) - 1) : -1;
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    printf("connected %s:%d: %s\n", ip, port, buf);
    return 0;
}

/* 17: exhaustion inside the sandbox ends in an error, not in a host problem. */
static int cmd_exhaust(const char *what)
{
    long n = 0;
    int e = 0;
    if (!strcmp(what, "inodes")) {
        mkdir("/tmp/inodes", 0755);
        for (;; n++) {
            char path[64];
            snprintf(path, sizeof(path), "/tmp/inodes/%ld", n);
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (fd < 0) {
                e = errno;
                break;
            }
            close(fd);
        }
    } else if (!strcmp(what, "shm") || !strcmp(what, "disk")) {
        int fd = open(!strcmp(what, "shm") ? "/dev/shm/bomb" : "/bomb", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        static char block[1 << 16];
        memset(block, 'x', sizeof(block));
        for (;; n++)
            if (write(fd, block, sizeof(block)) < 0) {
                e = errno;
                break;
            }
        close(fd);
    } else if (!strcmp(what, "fds")) {
        for (;; n++)
            if (open("/dev/null", O_RDONLY) < 0) {
                e = errno;
                break;
            }
    } else {
        return 2;
    }
    printf("%s exhausted after %ld: %s\n", what, n, strerror(e));
    return (e == ENOSPC || e == EMFILE || e == ENFILE) ? 0 : 1;
}

/* A neighbour's view of the machine: n sleeps of 1 ms, and how late the wakeups were. */
static int cmd_latency(int n)
{
    long worst = 0, total = 0;
    for (int i = 0; i < n; i++) {
        struct timespec a, b, d = { 0, 1000 * 1000 };
        clock_gettime(CLOCK_MONOTONIC, &a);
        nanosleep(&d, NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        long late = (b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 - 1000;
        total += late;
        if (late > worst)
            worst = late;
    }
    printf("latency: %d sleeps of 1 ms, mean %ld us late, worst %ld us late\n", n, n ? total / n : 0, worst);
    return 0;
}

static _Noreturn void cmd_membomb(void)
{
    for (size_t total = 0;; total += 1 << 20) {
        char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("mmap failed after %zu MiB\n", total >> 20);
            exit(2);
        }
        memset(p, 1, 1 << 20);
    }
}

static int cmd_forkbomb(void)
{
    int n = 0;
    for (int i = 0; i < 100000; i++) {
        pid_t p = fork();
        if (p < 0) {
            printf("fork failed after %d: %s\n", n, strerror(errno));
            fflush(stdout);
            kill(0, SIGKILL);
            return 0;
        }
        if (p == 0) {
            pause();
            _exit(0);
        }
        n++;
    }
    printf("fork never failed (%d)\n", n);
    fflush(stdout);
    kill(0, SIGKILL);
    return 1;
}

static _Noreturn void cmd_ticker(void)
{
    for (unsigned long i = 0;; i++) {
        printf("%lu\n", i);
        fflush(stdout);
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

/* ---- attacks (threat-model rows) ---- */

/* 1: host processes and /proc/<pid>/exe. */
static int atk_proc_exe(void)
{
    char self_ns[64] = "";
    read_link("/proc/self/ns/pid", self_ns, sizeof(self_ns));
    DIR *d = opendir("/proc");
    struct dirent *de;
    int pids = 0;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        pids++;
        char path[300], ns[64] = "";
        snprintf(path, sizeof(path), "/proc/%s/ns/pid", de->d_name);
        read_link(path, ns, sizeof(ns));
        if (ns[0] && strcmp(ns, self_ns) != 0) {
            printf("ESCAPE: pid %s is in another pid namespace\n", de->d_name);
            failures++;
        }
        snprintf(path, sizeof(path), "/proc/%s/exe", de->d_name);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            printf("ESCAPE: opened %s for writing\n", path);
            failures++;
            close(fd);
        }
    }
    if (d)
        closedir(d);
    printf("held: %d pids visible, all in the sandbox's pid namespace\n", pids);
    return failures != 0;
}

/* 2: leaked fds (CVE-2024-21626). */
static int atk_fds(void)
{
    for (int fd = 3; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            char path[64], target[256] = "";
            snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
            read_link(path, target, sizeof(target));
            printf("ESCAPE: fd %d is open (%s)\n", fd, target);
            failures++;
        }
    }
    char cwd[4096];
    expect("cwd inside the root", getcwd(cwd, sizeof(cwd)) && cwd[0] == '/');
    return failures != 0;
}

static int atk_mknod(void)
{
    expect_fail("mknod /tmp/sda b 8 0", mknod("/tmp/sda", S_IFBLK | 0600, makedev(8, 0)));
    expect_fail("mknod /tmp/mem c 1 1", mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1)));
    static const char *const devs[] = { "/dev/kvm", "/dev/mem",  "/dev/fuse",        "/dev/net/tun",
                                        "/dev/vda", "/dev/kmsg", "/dev/loop-control" };
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
        expect_fail(devs[i], open(devs[i], O_RDWR | O_CLOEXEC));
    return failures != 0;
}

static int atk_mount(void)
{
    expect_fail("mount tmpfs", mount("none", "/mnt", "tmpfs", 0, NULL));
    expect_fail("mount cgroup (release_agent)", mount("cgroup", "/mnt", "cgroup", 0, "memory"));
    expect_fail("umount /proc", umount2("/proc", MNT_DETACH));
    expect_fail("remount / rw", mount(NULL, "/usr", NULL, MS_REMOUNT | MS_BIND, NULL));
    expect_fail("fsopen overlay", syscall(SYS_fsopen, "overlay", 0));
    expect_fail("fsopen tmpfs", syscall(SYS_fsopen, "tmpfs", 0));
    expect_fail("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/", 1));
    expect_fail("fspick", syscall(SYS_fspick, AT_FDCWD, "/", 0));
    expect_fail("move_mount", syscall(SYS_move_mount, AT_FDCWD, "/proc", AT_FDCWD, "/mnt", 0));
    expect_fail("mount_setattr", syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, NULL, 0));
    expect_fail("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    expect_fail("chroot escape via pivot", syscall(SYS_pivot_root, ".", "."));
    return failures != 0;
}

static int atk_userns(void)
{
    expect_fail("unshare(CLONE_NEWUSER)", unshare(CLONE_NEWUSER));
    expect_fail("unshare(CLONE_NEWNS)", unshare(CLONE_NEWNS));
    expect_fail("unshare(CLONE_NEWNET)", unshare(CLONE_NEWNET));
    expect_fail("unshare(CLONE_NEWCGROUP)", unshare(CLONE_NEWCGROUP));
    struct {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    } args = { .flags = CLONE_NEWUSER, .exit_signal = SIGCHLD };
    long r = syscall(SYS_clone3, &args, sizeof(args));
    if (r == 0)
        _exit(0);
    expect("clone3(CLONE_NEWUSER) fails with ENOSYS", r < 0 && errno == ENOSYS);
    r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0);
    expect_fail("clone(CLONE_NEWUSER)", r);
    r = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0);
    expect_fail("clone(CLONE_NEWNS)", r);
    int fd = open("/proc/1/ns/mnt", O_RDONLY | O_CLOEXEC);
    expect_fail("setns", fd >= 0 ? setns(fd, 0) : -1);
    return failures != 0;
}

static int atk_sockets(void)
{
    expect_fail("socket(AF_ALG)", socket(AF_ALG, SOCK_SEQPACKET, 0));
    expect_fail("socket(AF_VSOCK)", socket(AF_VSOCK, SOCK_STREAM, 0));
    expect_fail("socket(AF_PACKET)", socket(AF_PACKET, SOCK_RAW, 0));
    expect_fail("raw socket", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    expect_fail("socket(AF_KEY)", socket(15, SOCK_RAW, 2));
    return failures != 0;
}

static int atk_io_uring(void)
{
    char params[120] = { 0 };
    expect_fail("io_uring_setup", syscall(425, 8, params));
    expect_fail("io_uring_enter", syscall(426, 0, 0, 0, 0, NULL, 0));
    expect_fail("io_uring_register", syscall(427, 0, 0, NULL, 0));
    return failures != 0;
}

static int atk_keyring(void)
{
    expect_fail("keyctl(GET_KEYRING_ID)",
                syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    expect_fail("add_key", syscall(SYS_add_key, "user", "hutch", "x", 1, KEY_SPEC_SESSION_KEYRING));
    expect_fail("request_key", syscall(SYS_request_key, "user", "hutch", NULL, 0));
    return failures != 0;
}

static int atk_tiocsti(void)
{
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) {
        printf("no ptmx: %s\n", strerror(errno));
        return 1;
    }
    int unlock = 0;
    ioctl(m, TIOCSPTLCK, &unlock);
    int n;
    ioctl(m, TIOCGPTN, &n);
    char name[64];
    snprintf(name, sizeof(name), "/dev/pts/%d", n);
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) {
        printf("open %s: %s\n", name, strerror(errno));
        return 1;
    }
    char c = 'x';
    expect_fail("ioctl(TIOCSTI)", syscall(SYS_ioctl, s, TIOCSTI, &c));
    expect_fail("ioctl(TIOCSTI | 1<<32)", syscall(SYS_ioctl, s, (unsigned long)TIOCSTI | (1ul << 32), &c));
    char sub = 2;
    expect_fail("ioctl(TIOCLINUX)", syscall(SYS_ioctl, s, TIOCLINUX, &sub));
    expect_fail("ioctl(TIOCLINUX | 1<<32)",
                syscall(SYS_ioctl, s, (unsigned long)TIOCLINUX | (1ul << 32), &sub));
    /* Other terminal ioctls still work. */
    struct termios t;
    expect("tcgetattr on the pty works", tcgetattr(s, &t) == 0);
    /* The kernel refuses TIOCSTI on a terminal that is not the caller's controlling one by
     * itself; on a pipe it answers ENOTTY. The filter answers EIO before the kernel sees the
     * call: that is how the high-bit forms are shown to stop at the filter. */
    int p[2];
    if (pipe(p) < 0) {
        printf("pipe: %s\n", strerror(errno));
        return 1;
    }
    static const struct {
        const char *what;
        unsigned long req;
    } refused[] = {
        { "TIOCSTI", TIOCSTI },
        { "TIOCSTI | 1<<32", TIOCSTI | (1ul << 32) },
        { "TIOCLINUX", TIOCLINUX },
        { "TIOCLINUX | 1<<32", TIOCLINUX | (1ul << 32) },
        { "TIOCSTI | 0xdead<<32", TIOCSTI | (0xdeadul << 32) },
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        errno = 0;
        long r = syscall(SYS_ioctl, p[0], refused[i].req, &c);
        int e = errno;
        char what[96];
        snprintf(what, sizeof(what), "ioctl(pipe, %s) stopped by the filter (EIO; got %s)", refused[i].what,
                 r < 0 ? strerror(e) : "success");
        expect(what, r < 0 && e == EIO);
    }
    int avail = -1;
    expect("FIONREAD on the pipe works", ioctl(p[0], FIONREAD, &avail) == 0 && avail == 0);
    return failures != 0;
}

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

/* Row 14: the sandbox must not opt its memory into KSM, whose merged pages are a timing side
 * channel to every other process whose pages are mergeable (CVE-2015-2877). Each way in, also
 * with garbage in the upper half of the int argument, which the kernel ignores. */
static int atk_ksm(void)
{
    size_t len = 64 * 4096;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        printf("mmap: %s\n", strerror(errno));
        return 1;
    }
    memset(m, 0x5a, len);
    expect_fail("madvise(MADV_MERGEABLE)", syscall(SYS_madvise, m, len, (long)MADV_MERGEABLE));
    expect_fail("madvise(MADV_MERGEABLE | 1<<32)",
                syscall(SYS_madvise, m, len, (long)MADV_MERGEABLE | (1l << 32)));
    expect_fail("prctl(PR_SET_MEMORY_MERGE, 1)",
                syscall(SYS_prctl, (long)PR_SET_MEMORY_MERGE, 1l, 0l, 0l, 0l));
    expect_fail("prctl(PR_SET_MEMORY_MERGE | 1<<32, 1)",
                syscall(SYS_prctl, (long)PR_SET_MEMORY_MERGE | (1l << 32), 1l, 0l, 0l, 0l));
    /* Where the kernel has KSM, it says whether anything of this process became mergeable. */
    FILE *f = fopen("/proc/self/ksm_stat", "re");
    if (f) {
        char line[128];
        while (fgets(line, sizeof(line), f))
            if (!strncmp(line, "ksm_mergeable:", 14) || !strncmp(line, "ksm_merge_any:", 14)) {
                char what[160];
                snprintf(what, sizeof(what), "/proc/self/ksm_stat says no: %.*s", (int)strcspn(line, "\n"),
                         line);
                expect(what, strstr(line, "no") != NULL);
            }
        fclose(f);
    }
    /* The calls themselves stay usable. */
    expect("madvise(MADV_DONTNEED) works", madvise(m, len, MADV_DONTNEED) == 0 && m[0] == 0);
    expect("madvise(MADV_UNMERGEABLE) works", madvise(m, len, MADV_UNMERGEABLE) == 0 || errno == EINVAL);
    expect("prctl(PR_SET_NAME) works", prctl(PR_SET_NAME, "probe-ksm", 0, 0, 0) == 0);
    munmap(m, len);
    return failures != 0;
}

static void x32_getpid(void)
{
    syscall(X32_BIT | SYS_getpid);
    _exit(0);
}

static void x32_mount(void)
{
    syscall(X32_BIT | SYS_mount, "none", "/mnt", "tmpfs", 0, NULL);
    _exit(0);
}

static void i386_getpid(void)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
    _exit(0);
}

static int atk_abi(void)
{
    expect("x32 getpid kills the process with SIGSYS", in_child(x32_getpid) == 128 + SIGSYS);
    expect("x32 mount kills the process with SIGSYS", in_child(x32_mount) == 128 + SIGSYS);
    expect("int 0x80 kills the process with SIGSYS", in_child(i386_getpid) == 128 + SIGSYS);
    return failures != 0;
}

static int write_str(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, s, strlen(s));
    int e = errno;
    close(fd);
    errno = e;
    return n < 0 ? -1 : (int)n;
}

static int atk_proc_writes(void)
{
    expect_fail("write /proc/sysrq-trigger", write_str("/proc/sysrq-trigger", "h"));
    /* Masked like sysrq-trigger (absent where the kernel has no magic SysRq): a write to a
     * masked file must fail, not vanish into a /dev/null bind. */
    expect_fail("write /proc/timer_list", write_str("/proc/timer_list", "x"));
    expect_fail("write /proc/sys/kernel/core_pattern", write_str("/proc/sys/kernel/core_pattern", "|/tmp/x"));
    expect_fail("write /proc/sys/kernel/modprobe", write_str("/proc/sys/kernel/modprobe", "/tmp/x"));
    expect_fail("write /proc/sys/vm/drop_caches", write_str("/proc/sys/vm/drop_caches", "3"));
    expect_fail("write /sys/kernel/uevent_helper", write_str("/sys/kernel/uevent_helper", "/tmp/x"));
    expect_fail("write /proc/sys/kernel/hostname", write_str("/proc/sys/kernel/hostname", "pwned"));
    return failures != 0;
}

static int atk_info_leaks(void)
{
    static const char *const files[] = { "/proc/kcore",
                                         "/proc/keys",
                                         "/proc/timer_list",
                                         "/proc/sched_debug",
                                         "/proc/kmsg",
                                         "/sys/class/powercap/intel-rapl:0/energy_uj",
                                         "/sys/firmware/dmi/tables/DMI" };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        int fd = open(files[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            printf("held: %s: %s\n", files[i], strerror(errno));
            continue;
        }
        char buf[64];
        ssize_t n = read(fd, buf, sizeof(buf));
        close(fd);
        if (n > 0) {
            printf("ESCAPE: read %zd bytes from %s\n", n, files[i]);
            failures++;
        } else {
            printf("held: %s reads nothing\n", files[i]);
        }
    }
    return failures != 0;
}

static int atk_ptrace(void)
{
    int visible = 0;
    for (pid_t p = 1; p < 65536; p++)
        if (kill(p, 0) == 0 || errno == EPERM)
            visible++;
    int listed = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] >= '1' && de->d_name[0] <= '9')
            listed++;
    if (d)
        closedir(d);
    expect("kill(pid, 0) finds only the sandbox's processes", visible <= listed + 1);
    printf("visible %d listed %d\n", visible, listed);
    expect_fail("ptrace(ATTACH) of a pid outside", ptrace(PTRACE_ATTACH, 30000, 0, 0));
    return failures != 0;
}

static void segv(void)
{
    struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
    setrlimit(RLIMIT_CORE, &rl);
    raise(SIGSEGV);
}

static int atk_core(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_CORE, &rl);
    expect("RLIMIT_CORE is 0/0", rl.rlim_cur == 0 && rl.rlim_max == 0);
    struct rlimit up = { RLIM_INFINITY, RLIM_INFINITY };
    expect_fail("raise RLIMIT_CORE", setrlimit(RLIMIT_CORE, &up));
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        segv();
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    expect("SIGSEGV leaves no core", WIFSIGNALED(st) && !WCOREDUMP(st));
    return failures != 0;
}

static int atk_privs(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    unsigned long long bnd = ~0ull, eff = ~0ull;
    int nnp = -1, seccomp = -1;
    while (f && fgets(line, sizeof(line), f)) {
        sscanf(line, "CapBnd: %llx", &bnd);
        sscanf(line, "CapEff: %llx", &eff);
        sscanf(line, "NoNewPrivs: %d", &nnp);
        sscanf(line, "Seccomp: %d", &seccomp);
    }
    if (f)
        fclose(f);
    printf("CapBnd %llx CapEff %llx NoNewPrivs %d Seccomp %d\n", bnd, eff, nnp, seccomp);
    const unsigned long long forbidden = (1ull << 21) /* SYS_ADMIN */ | (1ull << 13) /* NET_RAW */ |
                                         (1ull << 27) /* MKNOD */ | (1ull << 12) /* NET_ADMIN */ |
                                         (1ull << 16) /* SYS_MODULE */ | (1ull << 17) /* RAWIO */ |
                                         (1ull << 19) /* SYS_PTRACE */ | (1ull << 25) /* SYS_TIME */;
    expect("bounding set without admin capabilities", (bnd & forbidden) == 0);
    expect("seccomp filter active", seccomp == 2);
    expect_fail("bpf", syscall(SYS_bpf, 0, NULL, 0));
    expect_fail("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    expect_fail("init_module", syscall(SYS_finit_module, 0, "", 0));
    expect_fail("sethostname", sethostname("x", 1));
    expect_fail("settimeofday", syscall(SYS_settimeofday, NULL, NULL));
    return failures != 0;
}

static int atk_network(void)
{
    FILE *f = fopen("/proc/net/dev", "re");
    char line[256];
    int ifaces = 0, lo = 0;
    while (f && fgets(line, sizeof(line), f)) {
        if (strchr(line, ':')) {
            ifaces++;
            if (strstr(line, "lo:"))
                lo = 1;
        }
    }
    if (f)
        fclose(f);
    expect("only lo exists", ifaces == 1 && lo);
    static const char *const addrs[] = { "169.254.169.254", "10.0.0.1", "192.168.0.1", "172.17.0.1",
                                         "8.8.8.8" };
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80) };
        inet_pton(AF_INET, addrs[i], &sa.sin_addr);
        char what[64];
        snprintf(what, sizeof(what), "connect %s:80", addrs[i]);
        expect_fail(what, connect(s, (struct sockaddr *)&sa, sizeof(sa)));
        close(s);
    }
    return failures != 0;
}

/* 14: SysV IPC and abstract sockets; "plant" in one sandbox, "probe" in another. */
static int cmd_ipc(const char *mode)
{
    key_t key = 0x4875;
    if (strcmp(mode, "plant") == 0) {
        int id = shmget(key, 4096, IPC_CREAT | 0666);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        memcpy(sa.sun_path + 1, "hutch-ipc", 9);
        int b = bind(s, (struct sockaddr *)&sa, sizeof(sa_family_t) + 10);
        listen(s, 1);
        printf("planted shm %d bind %d\n", id, b);
        printf("ready\n");
        fflush(stdout);
        pause();
        return 0;
    }
    expect_fail("shmget of the neighbour's key", shmget(key, 0, 0));
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path + 1, "hutch-ipc", 9);
    expect_fail("connect to the neighbour's abstract socket",
                connect(s, (struct sockaddr *)&sa, sizeof(sa_family_t) + 10));
    return failures != 0;
}

/* ---- row 3: the sandbox's view while a host racer swaps the template's mount targets ---- */

static int fs_is(const char *path, unsigned long magic)
{
    struct statfs s;
    return statfs(path, &s) == 0 && (unsigned long)s.f_type == magic;
}

/* True when mount point mp is one the runtime makes: /, the layer targets, /dev, /proc, /sys
 * and what lies below those three. */
static int expected_mount_point(const char *mp)
{
    static const char *const exact[] = { "/", "/usr", "/opt/hutch", "/sys" };
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (!strcmp(mp, exact[i]))
            return 1;
    return !strcmp(mp, "/dev") || !strncmp(mp, "/dev/", 5) || !strcmp(mp, "/proc") ||
           !strncmp(mp, "/proc/", 6);
}

/* 3: run by tests/attacks/test-race while a racer on the host swaps the template's mount
 * targets (dev, proc, sys, opt/hutch, tmp) between directories and symlinks to /, /etc or a
 * host directory. A sandbox that started at all must have every mount of the runtime where it
 * belongs and none anywhere else; then it writes `marker` through every path a redirected
 * mount would have sent onto the host, which the test looks for there afterwards. */
static int cmd_view(const char *marker)
{
    expect("/ is the sandbox's overlay", fs_is("/", OVERLAYFS_SUPER_MAGIC));
    expect("/dev is a tmpfs", fs_is("/dev", TMPFS_MAGIC));
    expect("/dev/pts is devpts", fs_is("/dev/pts", DEVPTS_SUPER_MAGIC));
    expect("/dev/shm is a tmpfs", fs_is("/dev/shm", TMPFS_MAGIC));
    expect("/proc is procfs", fs_is("/proc", PROC_SUPER_MAGIC));
    expect("/sys is a tmpfs", fs_is("/sys", TMPFS_MAGIC));
    expect("/opt/hutch is an overlay", fs_is("/opt/hutch", OVERLAYFS_SUPER_MAGIC));
    struct stat st;
    expect("/dev/null is the device 1:3", stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode) &&
                                              major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
    expect("/opt/hutch/hutch-probe is there", access("/opt/hutch/hutch-probe", X_OK) == 0);
    char self[64] = "";
    read_link("/proc/self", self, sizeof(self));
    expect("/proc is this sandbox's pid namespace", (int)strtol(self, NULL, 10) == (int)getpid());
    DIR *d = opendir("/sys");
    int entries = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        entries += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    if (d)
        closedir(d);
    expect("/sys is empty", d && entries == 0);
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[1024];
    int mounts = 0;
    while (f && fgets(line, sizeof(line), f)) {
        char mp[512];
        if (sscanf(line, "%*s %*s %*s %*s %511s", mp) != 1)
            continue;
        mounts++;
        if (!expected_mount_point(mp)) {
            printf("ESCAPE: unexpected mount point %s\n", mp);
            failures++;
        }
    }
    if (f)
        fclose(f);
    expect("mountinfo lists the runtime's mounts", mounts > 0);
    static const char *const dirs[] = { "/", "/tmp", "/etc", "/dev/shm", "/opt/hutch", "/root" };
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", strcmp(dirs[i], "/") ? dirs[i] : "", marker);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            if (write(fd, "pwned\n", 6) < 0)
                printf("write %s: %s\n", path, strerror(errno));
            close(fd);
        }
    }
    if (!failures)
        printf("view ok\n");
    return failures != 0;
}

/* ---- row 19: egress allow-list bypass ---- */

static socklen_t sockaddr_of(const char *ip, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        return sizeof(*s4);
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        return sizeof(*s6);
    }
    return 0;
}

/* A TCP connect to ip:port within 1 s, optionally from the (foreign) source address src
 * bound with IP_FREEBIND; returns the socket's final result (0 connected, -1 and errno). */
static const char *tcp_device; /* SO_BINDTODEVICE for tcp_try and dgram_send, when set */

static int tcp_try(const char *ip, int port, const char *src)
{
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of(ip, port, &ss);
    if (!len) {
        errno = EINVAL;
        return -1;
    }
    int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -1;
    if (tcp_device &&
        setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, tcp_device, (socklen_t)strlen(tcp_device)) < 0)
        printf("SO_BINDTODEVICE %s: %s\n", tcp_device, strerror(errno));
    if (src) {
        int one = 1;
        struct sockaddr_storage from;
        socklen_t flen = sockaddr_of(src, 0, &from);
        if (setsockopt(s, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0 ||
            bind(s, (struct sockaddr *)&from, flen) < 0) {
            int e = errno;
            close(s);
            errno = e;
            return -1;
        }
    }
    int r = connect(s, (struct sockaddr *)&ss, len);
    if (r < 0 && errno == EINPROGRESS) {
        struct pollfd p = { .fd = s, .events = POLLOUT };
        if (poll(&p, 1, 1000) <= 0) {
            close(s);
            errno = ETIMEDOUT;
            return -1;
        }
        int e = 0;
        socklen_t elen = sizeof(e);
        getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &elen);
        r = e ? -1 : 0;
        errno = e;
    }
    int e = errno;
    close(s);
    errno = e;
    return r;
}

/* Sends one datagram (UDP, or an ICMP echo over a ping socket); whether it arrived only the
 * world side can tell, so this reports and does not judge. */
static void dgram_send(const char *what, int proto, const char *ip, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of(ip, port, &ss);
    int s = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, proto);
    if (s < 0) {
        printf("held: %s to %s: socket: %s\n", what, ip, strerror(errno));
        return;
    }
    if (tcp_device &&
        setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, tcp_device, (socklen_t)strlen(tcp_device)) < 0)
        printf("SO_BINDTODEVICE %s: %s\n", tcp_device, strerror(errno));
    char msg[64] = "hutch-egress";
    size_t n = strlen(msg);
    if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
        struct icmphdr *h = (struct icmphdr *)msg;
        memset(h, 0, sizeof(*h));
        h->type = proto == IPPROTO_ICMP ? ICMP_ECHO : 128;
        n = sizeof(*h) + 8;
    }
    ssize_t r = sendto(s, msg, n, 0, (struct sockaddr *)&ss, len);
    printf("%s to %s:%d: %s (the world side decides)\n", what, ip, port, r < 0 ? strerror(errno) : "sent");
    close(s);
}

/* One rtnetlink request with an ack; returns the kernel's answer (0 or -errno). */
static int nl_request(struct nlmsghdr *n)
{
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0)
        return -errno;
    n->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    n->nlmsg_seq = 1;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(s, n, n->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    char buf[4096];
    struct pollfd p = { .fd = s, .events = POLLIN };
    ssize_t len = poll(&p, 1, 2000) > 0 ? recv(s, buf, sizeof(buf), 0) : -1;
    close(s);
    if (len < (ssize_t)(sizeof(struct nlmsghdr) + sizeof(struct nlmsgerr)))
        return -EIO;
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (h->nlmsg_type != NLMSG_ERROR)
        return -EIO;
    return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
}

static void nl_attr(struct nlmsghdr *n, unsigned short type, const void *data, size_t len)
{
    struct rtattr *a = (struct rtattr *)((char *)n + NLMSG_ALIGN(n->nlmsg_len));
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len)
        memcpy(RTA_DATA(a), data, len);
    n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

static void expect_nl(const char *what, int r)
{
    errno = -r;
    expect_fail(what, r < 0 ? -1 : 0);
}

/* The network configuration the sandbox sees: IPv4 routes, eth0's address, flags and MTU, and
 * every IPv6 address with its interface and prefix (not its flags, which change as duplicate
 * address detection completes, nor the IPv6 routes the kernel derives from them). */
static void net_state(char *buf, size_t size)
{
    size_t len = 0;
    int fd = open("/proc/net/route", O_RDONLY | O_CLOEXEC);
    ssize_t n;
    while (fd >= 0 && len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
        len += (size_t)n;
    if (fd >= 0)
        close(fd);
    buf[len] = '\0';
    FILE *f = fopen("/proc/net/if_inet6", "re");
    char addr[40], ifname[32];
    unsigned idx, plen, scope, flags;
    while (f && fscanf(f, "%39s %x %x %x %x %31s", addr, &idx, &plen, &scope, &flags, ifname) == 6 &&
           len + 100 < size)
        len += (size_t)snprintf(buf + len, size - len, "inet6 %s/%u %s\n", addr, plen, ifname);
    if (f)
        fclose(f);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
    if (s >= 0 && ioctl(s, SIOCGIFADDR, &ifr) == 0 && len + 32 < size)
        len += (size_t)snprintf(buf + len, size - len, "eth0 %s",
                                inet_ntoa(((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr));
    if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && len + 32 < size)
        len += (size_t)snprintf(buf + len, size - len, " flags %#x", (unsigned)ifr.ifr_flags);
    if (s >= 0 && ioctl(s, SIOCGIFMTU, &ifr) == 0 && len + 32 < size)
        len += (size_t)snprintf(buf + len, size - len, " mtu %d\n", ifr.ifr_mtu);
    if (s >= 0)
        close(s);
    buf[len] = '\0';
}

/* 19: from inside an online sandbox whose allow list holds `allowed` but not `denied` (nor
 * `denied6`), every way around the list by address, protocol or configuration. TCP attempts
 * are judged here; datagrams (UDP, ICMP) only by the test's world, which records every packet
 * that reaches it. */
static int cmd_egress(const char *allowed, const char *denied, const char *denied6, int port)
{
    static char before[8192], after[8192];
    net_state(before, sizeof(before));
    printf("sandbox network:\n%s", before);

    /* An IP literal outside the list, directly and through a v4-mapped IPv6 socket. */
    char what[160], mapped[80];
    snprintf(what, sizeof(what), "tcp to the denied literal %s:%d", denied, port);
    expect_fail(what, tcp_try(denied, port, NULL));
    snprintf(mapped, sizeof(mapped), "::ffff:%s", denied);
    snprintf(what, sizeof(what), "tcp to [%s]:%d", mapped, port);
    expect_fail(what, tcp_try(mapped, port, NULL));
    /* IPv6, whatever the sandbox has of it. */
    snprintf(what, sizeof(what), "tcp to [%s]:%d", denied6, port);
    expect_fail(what, tcp_try(denied6, port, NULL));
    /* Another port of the denied address, and a spoofed source address (IP_FREEBIND needs no
     * capability): the host drops what does not come from the sandbox's own address. */
    snprintf(what, sizeof(what), "tcp to %s:22", denied);
    expect_fail(what, tcp_try(denied, 22, NULL));
    snprintf(what, sizeof(what), "tcp from the spoofed source %s to %s:%d", allowed, denied, port);
    expect_fail(what, tcp_try(denied, port, allowed));
    snprintf(what, sizeof(what), "tcp from the spoofed source %s to %s:%d", denied, allowed, port);
    expect_fail(what, tcp_try(allowed, port, denied));

    /* Past the routing table: bound to eth0, a destination without a route counts as on-link
     * (no capability needed); what is not the host's own address gets no neighbour answer. */
    tcp_device = "eth0";
    snprintf(what, sizeof(what), "tcp bound to eth0 to %s:%d", denied, port);
    expect_fail(what, tcp_try(denied, port, NULL));
    snprintf(what, sizeof(what), "tcp bound to eth0 to [%s]:%d", denied6, port);
    expect_fail(what, tcp_try(denied6, port, NULL));
    dgram_send("udp bound to eth0", IPPROTO_UDP, denied, 53);
    dgram_send("udp6 bound to eth0", IPPROTO_UDP, denied6, 53);
    tcp_device = NULL;

    /* UDP and ICMP tunnels. */
    dgram_send("udp", IPPROTO_UDP, denied, 53);
    dgram_send("udp", IPPROTO_UDP, denied, port);
    dgram_send("udp", IPPROTO_UDP, mapped, 53);
    dgram_send("udp6", IPPROTO_UDP, denied6, 53);
    dgram_send("udp-lite", IPPROTO_UDPLITE, denied, port);
    dgram_send("icmp echo (ping socket)", IPPROTO_ICMP, denied, 0);
    dgram_send("icmpv6 echo (ping socket)", IPPROTO_ICMPV6, denied6, 0);

    /* Raw sockets: no CAP_NET_RAW. */
    expect_fail("socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    expect_fail("socket(AF_INET, SOCK_RAW, IPPROTO_UDP)", socket(AF_INET, SOCK_RAW, IPPROTO_UDP));
    expect_fail("socket(AF_INET, SOCK_RAW, IPPROTO_RAW)", socket(AF_INET, SOCK_RAW, IPPROTO_RAW));
    expect_fail("socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)", socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6));
    expect_fail("socket(AF_PACKET, SOCK_RAW)", socket(AF_PACKET, SOCK_RAW, htons(0x0003)));
    expect_fail("socket(AF_PACKET, SOCK_DGRAM)", socket(AF_PACKET, SOCK_DGRAM, htons(0x0800)));
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    expect_fail("setsockopt(IP_TRANSPARENT)", setsockopt(t, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one)));
    expect_fail("setsockopt(SO_MARK)", setsockopt(t, SOL_SOCKET, SO_MARK, &one, sizeof(one)));
    close(t);

    /* The sandbox's own address, routes and links: no CAP_NET_ADMIN. */
    int eth0 = (int)if_nametoindex("eth0");
    expect("eth0 exists", eth0 > 0);
    struct in_addr a;
    inet_pton(AF_INET, denied, &a);
    struct {
        struct nlmsghdr n;
        union {
            struct ifaddrmsg ifa;
            struct rtmsg rt;
            struct ifinfomsg ifi;
        } u;
        char attrs[256];
    } req;

    memset(&req, 0, sizeof(req));
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    req.n.nlmsg_type = RTM_NEWADDR;
    req.n.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
    req.u.ifa = (struct ifaddrmsg){ .ifa_family = AF_INET, .ifa_prefixlen = 24, .ifa_index = (unsigned)eth0 };
    nl_attr(&req.n, IFA_LOCAL, &a, sizeof(a));
    nl_attr(&req.n, IFA_ADDRESS, &a, sizeof(a));
    expect_nl("rtnetlink: add an address to eth0", nl_request(&req.n));

    memset(&req, 0, sizeof(req));
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
    req.n.nlmsg_type = RTM_NEWROUTE;
    req.n.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
    req.u.rt = (struct rtmsg){ .rtm_family = AF_INET,
                               .rtm_dst_len = 32,
                               .rtm_table = RT_TABLE_MAIN,
                               .rtm_protocol = RTPROT_BOOT,
                               .rtm_scope = RT_SCOPE_LINK,
                               .rtm_type = RTN_UNICAST };
    nl_attr(&req.n, RTA_DST, &a, sizeof(a));
    nl_attr(&req.n, RTA_OIF, &eth0, sizeof(eth0));
    expect_nl("rtnetlink: add a route", nl_request(&req.n));

    memset(&req, 0, sizeof(req));
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
    req.n.nlmsg_type = RTM_DELROUTE;
    req.u.rt =
        (struct rtmsg){ .rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_scope = RT_SCOPE_NOWHERE };
    expect_nl("rtnetlink: delete the default route", nl_request(&req.n));

    memset(&req, 0, sizeof(req));
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    req.n.nlmsg_type = RTM_NEWLINK;
    req.u.ifi = (struct ifinfomsg){ .ifi_family = AF_UNSPEC, .ifi_index = eth0, .ifi_change = IFF_UP };
    expect_nl("rtnetlink: set eth0 down", nl_request(&req.n));

    memset(&req, 0, sizeof(req));
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    req.n.nlmsg_type = RTM_NEWLINK;
    req.n.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
    req.u.ifi = (struct ifinfomsg){ .ifi_family = AF_UNSPEC };
    nl_attr(&req.n, IFLA_IFNAME, "hx0", 4);
    struct rtattr *linkinfo = (struct rtattr *)((char *)&req.n + NLMSG_ALIGN(req.n.nlmsg_len));
    nl_attr(&req.n, IFLA_LINKINFO, NULL, 0);
    nl_attr(&req.n, IFLA_INFO_KIND, "dummy", 6);
    linkinfo->rta_len = (unsigned short)((char *)&req.n + req.n.nlmsg_len - (char *)linkinfo);
    expect_nl("rtnetlink: create a dummy link", nl_request(&req.n));

    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    sin->sin_addr = a;
    expect_fail("ioctl(SIOCSIFADDR eth0)", ioctl(s, SIOCSIFADDR, &ifr));
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
    expect_fail("ioctl(SIOCSIFFLAGS eth0 down)", ioctl(s, SIOCSIFFLAGS, &ifr));
    close(s);
    expect_fail("write /proc/sys/net/ipv4/ping_group_range",
                write_str("/proc/sys/net/ipv4/ping_group_range", "0 2147483647"));
    expect_fail("write /proc/sys/net/ipv6/conf/all/disable_ipv6",
                write_str("/proc/sys/net/ipv6/conf/all/disable_ipv6", "0"));
    expect_fail("write /proc/sys/net/ipv4/conf/all/route_localnet",
                write_str("/proc/sys/net/ipv4/conf/all/route_localnet", "1"));

    net_state(after, sizeof(after));
    expect("addresses and routes unchanged", strcmp(before, after) == 0);
    if (strcmp(before, after))
        printf("now:\n%s", after);
    return failures != 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        return 2;
    const char *c = argv[1];
    if (!strcmp(c, "listen"))
        return cmd_listen(argc > 2 ? (int)strtol(argv[2], NULL, 10) : 8080);
    if (!strcmp(c, "membomb"))
        cmd_membomb();
    if (!strcmp(c, "forkbomb"))
        return cmd_forkbomb();
    if (!strcmp(c, "ticker"))
        cmd_ticker();
    if (!strcmp(c, "connect") && argc > 3)
        return cmd_connect(argv[2], (int)strtol(argv[3], NULL, 10));
    if (!strcmp(c, "latency"))
        return cmd_latency(argc > 2 ? (int)strtol(argv[2], NULL, 10) : 200);
    if (!strcmp(c, "exhaust") && argc > 2)
        return cmd_exhaust(argv[2]);
    if (!strcmp(c, "ipc"))
        return cmd_ipc(argc > 2 ? argv[2] : "probe");
    if (!strcmp(c, "view") && argc > 2)
        return cmd_view(argv[2]);
    if (!strcmp(c, "egress") && argc > 5)
        return cmd_egress(argv[2], argv[3], argv[4], (int)strtol(argv[5], NULL, 10));
    static const struct {
        const char *name;
        int (*fn)(void);
    } attacks[] = {
        { "proc-exe", atk_proc_exe },
        { "fds", atk_fds },
        { "mknod", atk_mknod },
        { "mount", atk_mount },
        { "userns", atk_userns },
        { "sockets", atk_sockets },
        { "io-uring", atk_io_uring },
        { "keyring", atk_keyring },
        { "tiocsti", atk_tiocsti },
        { "ksm", atk_ksm },
        { "abi", atk_abi },
        { "proc-writes", atk_proc_writes },
        { "info-leaks", atk_info_leaks },
        { "ptrace", atk_ptrace },
        { "core", atk_core },
        { "privs", atk_privs },
        { "network", atk_network },
    };
    if (!strcmp(c, "all")) {
        for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
            printf("== %s\n", attacks[i].name);
            attacks[i].fn();
        }
        return failures != 0;
    }
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++)
        if (!strcmp(c, attacks[i].name))
            return attacks[i].fn();
    printf("unknown probe %s\n", c);
    return 2;
}
