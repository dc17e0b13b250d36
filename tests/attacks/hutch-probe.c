/* A static probe run inside sandboxes by tests/priv and tests/attacks. `hutch-probe NAME [ARGS]`
 * runs one helper or one attack. Attacks exit 0 when the attack FAILED (the sandbox held) and
 * 1 when it succeeded, printing what happened; helpers (listen, membomb, forkbomb, ticker)
 * serve the mechanism tests. Statically linked and built without sanitizers so it runs in any
 * root filesystem and is killed only by what it provokes. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
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
