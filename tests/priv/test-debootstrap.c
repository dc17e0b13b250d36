/* The debian:bookworm base (src/template/debootstrap.c) as root, for real: one debootstrap into
 * a fresh cache (it downloads ~40 MB: skipped when the mirror cannot be reached), two builders at
 * once, the result run with chroot, and the cached tree returned at once afterwards. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fs-util.h"
#include "tap.h"
#include "template/debootstrap.h"

#include "common/banned.h"

struct log_count {
    unsigned lines;
    bool success_line;
};

static void count_line(const char *line, void *userdata)
{
    struct log_count *c = userdata;
    c->lines++;
    if (strstr(line, "Base system installed successfully"))
        c->success_line = true;
}

static void make_cache(char *dir, size_t size)
{
    snprintf(dir, size, "/var/tmp/hutch-debootstrap-XXXXXX");
    if (!mkdtemp(dir))
        tap_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
}

static bool mirror_reachable(void)
{
    if (getenv("HUTCH_DEBIAN_MIRROR"))
        return true;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    if (getaddrinfo("deb.debian.org", "80", &hints, &ai) != 0)
        return false;
    bool ok = false;
    for (struct addrinfo *a = ai; a && !ok; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = { .tv_sec = 5 };
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs argv chrooted into root; returns the wait status. */
static int run_chrooted(const char *root, const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (chroot(root) < 0 || chdir("/") < 0)
            _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    return status;
}

static bool file_holds(const char *path, const char *content)
{
    char buf[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return streq(buf, content);
}

TEST(unsupported_suite_is_einval)
{
    char cache[64];
    make_cache(cache, sizeof(cache));
    const char *bad[] = { "sid", "bullseye", "", "../bookworm", "bookworm/" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *path = NULL;
        struct error_record err;
        ASSERT_EQ(template_debootstrap(cache, bad[i], NULL, NULL, &path, &err), -EINVAL);
        ASSERT_TRUE(path == NULL);
        ASSERT_TRUE(strstr(err.msg, "bookworm") != NULL);
    }
    char sub[96];
    snprintf(sub, sizeof(sub), "%s/debootstrap", cache);
    ASSERT_EQ(access(sub, F_OK), -1);
    rm_rf(cache);
}

TEST(bookworm_is_built_once_and_runs)
{
    if (geteuid() != 0)
        SKIP("needs root");
    if (access("/usr/sbin/debootstrap", X_OK) < 0)
        SKIP("debootstrap is not installed (scripts/install-deps)");
    if (!mirror_reachable())
        SKIP("deb.debian.org cannot be reached (set HUTCH_DEBIAN_MIRROR)");
    char cache[64];
    make_cache(cache, sizeof(cache));

    /* A second builder at the same time: it waits for the lock and finds the first one's tree
     * (or, started late, finds it at once); either way only one of them runs debootstrap. */
    pid_t pid = fork();
    if (pid == 0) {
        struct log_count c = { 0 };
        char *path = NULL;
        struct error_record err;
        if (template_debootstrap(cache, "bookworm", count_line, &c, &path, &err) < 0) {
            fprintf(stderr, "# second builder: %s\n", err.msg);
            _exit(2);
        }
        _exit(c.lines ? 1 : 0);
    }

    struct log_count c = { 0 };
    char *path = NULL;
    struct error_record err = { 0 };
    int r = template_debootstrap(cache, "bookworm", count_line, &c, &path, &err);
    if (r < 0)
        tap_fail(__FILE__, __LINE__, "template_debootstrap: %s", err.msg);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_TRUE(WEXITSTATUS(status) <= 1);
    /* Exactly one of the two saw debootstrap's output. */
    ASSERT_EQ((c.lines > 0) + WEXITSTATUS(status), 1);
    if (c.lines > 0)
        ASSERT_TRUE(c.success_line);

    char want[96];
    snprintf(want, sizeof(want), "%s/debootstrap/bookworm", cache);
    ASSERT_STREQ(path, want);
    free(path);

    const char *true_argv[] = { "/bin/true", NULL };
    status = run_chrooted(want, true_argv);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    const char *apt_argv[] = { "/usr/bin/apt-get", "--version", NULL };
    status = run_chrooted(want, apt_argv);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    char p[160];
    struct stat st;
    snprintf(p, sizeof(p), "%s/opt/hutch", want);
    ASSERT_EQ(stat(p, &st), 0);
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    ASSERT_EQ(st.st_mode & 07777, 0755);
    snprintf(p, sizeof(p), "%s/etc/resolv.conf", want);
    ASSERT_TRUE(file_holds(p, "nameserver 1.1.1.1\nnameserver 8.8.8.8\n"));
    snprintf(p, sizeof(p), "%s/etc/hostname", want);
    ASSERT_TRUE(file_holds(p, "sandbox\n"));
    /* apt's lists stay (apt-get install works without an update), the downloaded packages go. */
    const char *count_argv[] = { "/bin/sh", "-c",
                                 "ls /var/lib/apt/lists | grep -q _Packages && "
                                 "! ls /var/cache/apt/archives | grep -q '[.]deb$'",
                                 NULL };
    status = run_chrooted(want, count_argv);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    snprintf(p, sizeof(p), "%s/debootstrap/.bookworm.new", cache);
    ASSERT_EQ(access(p, F_OK), -1);

    /* Cached: returned at once, without running anything. */
    struct log_count again = { 0 };
    double t0 = now_s();
    r = template_debootstrap(cache, "bookworm", count_line, &again, &path, &err);
    ASSERT_OK(r);
    ASSERT_TRUE(now_s() - t0 < 1.0);
    ASSERT_EQ(again.lines, 0);
    ASSERT_STREQ(path, want);
    free(path);
    ASSERT_OK(rm_rf(cache));
}
