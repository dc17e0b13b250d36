/* The envd bundle: envd with the host's shared objects and dynamic loader that it runs with, so
 * that it runs in a sandbox of any template (a debootstrap'd Debian, a user's rootfs, busybox)
 * and depends on nothing there. Static linking is no way out: Debian ships no static gnutls or
 * p11-kit.
 *
 * Invariant: the bundle's libraries reach envd alone. envd is started through the bundle's loader
 * with the loader's own --library-path option (ORCH_ENVD_ARGV_PREFIX), which is not
 * LD_LIBRARY_PATH: nothing lands in the environment, so the shells and commands envd starts load
 * the template's own libraries. The list of objects comes from envd itself (`--list-libraries`,
 * from the dynamic linker's own list), so it is exactly what this build of envd loads, sanitizer
 * runtimes included. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs-util.h"
#include "common/spawn-util.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "common/banned.h"

/* envd prints a few dozen paths; anything near this is not envd. */
#define LIST_MAX (64 * 1024)
#define LIST_TIMEOUT (30 * USEC_PER_SEC)
/* The stable name of the loader in lib/, a symlink to its real name (ld-linux-x86-64.so.2 on
 * x86-64), which the C library itself needs (libc.so.6 lists it as a dependency). */
#define LOADER_LINK "ld.so"

extern char **environ;

/* Runs `envd_path --list-libraries` and returns its standard output (NUL-terminated). */
static int list_libraries(const char *envd_path, char **ret, struct error_record *err)
{
    char *argv[] = { (char *)envd_path, (char *)"--list-libraries", NULL };
    pid_t pid;
    _cleanup_close_ int rd = -1;
    int r = spawn_piped(envd_path, argv, environ, 0, &pid, &rd);
    if (r < 0)
        return error_set_errno(err, r, "running %s", envd_path);

    _cleanup_free_ char *buf = xmalloc(LIST_MAX + 1);
    size_t len = 0;
    const char *failure = NULL;
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + LIST_TIMEOUT;
    for (;;) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= deadline) {
            failure = "did not finish in 30 s";
            break;
        }
        struct pollfd p = { .fd = rd, .events = POLLIN };
        int k = poll(&p, 1, (int)((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -errno;
            failure = "cannot be read";
            break;
        }
        if (k == 0)
            continue;
        if (len == LIST_MAX) {
            failure = "printed too much";
            break;
        }
        ssize_t n = read(rd, buf + len, LIST_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            failure = "cannot be read";
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (failure)
        kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return error_set_errno(err, errno, "waiting for %s --list-libraries", envd_path);
    if (failure)
        return r < 0 ? error_set_errno(err, r, "%s --list-libraries: output %s", envd_path, failure)
                     : error_set(err, EIO, "%s --list-libraries: output %s", envd_path, failure);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return error_set(err, EIO, "%s --list-libraries failed (wait status %d)", envd_path, status);
    if (memchr(buf, '\0', len))
        return error_set(err, EINVAL, "%s --list-libraries printed a NUL byte", envd_path);
    buf[len] = '\0';
    *ret = TAKE_PTR(buf);
    return 0;
}

/* Adds the objects of list (the loader on its first line) to dest_dir/lib, which the first
 * program creates. A later program shares what the earlier ones brought when it is the same
 * host file; a different file of the same name is an error (one loader path for all). */
static int add_libraries(const char *program, const char *dest_dir, char *list, bool first,
                         struct error_record *err)
{
    _cleanup_free_ char *lib = xasprintf("%s/lib", dest_dir);
    if (first && (mkdir(lib, 0755) < 0 || chmod(lib, 0755) < 0))
        return error_set_errno(err, errno, "creating %s", lib);

    bool loader = true;
    char *save = NULL;
    for (char *path = strtok_r(list, "\n", &save); path; path = strtok_r(NULL, "\n", &save)) {
        const char *name = strrchr(path, '/');
        if (path[0] != '/' || !name || !name[1] || streq(name, "/.") || streq(name, "/..") ||
            streq(name, "/" LOADER_LINK))
            return error_set(err, EINVAL, "%s --list-libraries: unexpected line \"%.64s\"", program, path);
        name++;
        _cleanup_free_ char *dest = xasprintf("%s/%s", lib, name);
        struct stat st, src;
        if (lstat(dest, &st) == 0) {
            /* Brought by an earlier program: the same file (by size and mtime of what it was
             * copied from) is shared, another one is not allowed. */
            if (!first && stat(path, &src) == 0 && src.st_size == st.st_size) {
                loader = false;
                continue;
            }
            return error_set(err, EEXIST, "two shared objects named %s (one is %s)", name, path);
        }
        if (!first && loader)
            return error_set(err, EINVAL, "%s uses another dynamic loader (%s) than envd", program, path);
        /* By the name the program loads it by (often a symlink to a versioned file): copy_file
         * follows it, so the bundle holds the file under the name the loader looks for. */
        int r = copy_file(path, dest, loader ? 0755 : 0644);
        if (r < 0)
            return error_set_errno(err, r, "copying %s", path);
        if (loader) {
            _cleanup_free_ char *link = xasprintf("%s/" LOADER_LINK, lib);
            if (symlink(name, link) < 0)
                return error_set_errno(err, errno, "creating %s", link);
        }
        loader = false;
    }
    if (loader)
        return error_set(err, EINVAL, "%s --list-libraries printed nothing", program);
    return 0;
}

/* Adds program (as dest_dir/name) with its shared objects to the bundle. */
static int add_program(const char *program, const char *name, const char *dest_dir, bool first,
                       struct error_record *err)
{
    _cleanup_free_ char *list = NULL;
    int r = list_libraries(program, &list, err);
    if (r >= 0)
        r = add_libraries(program, dest_dir, list, first, err);
    _cleanup_free_ char *dest = xasprintf("%s/%s", dest_dir, name);
    if (r >= 0 && (r = copy_file(program, dest, 0755)) < 0)
        error_set_errno(err, r, "copying %s", program);
    return r;
}

/* interpd's Python helpers (python/ beside the interpd binary), for the kernels it starts. */
static int add_python_dir(const char *interpd_path, const char *dest_dir, struct error_record *err)
{
    _cleanup_free_ char *src_dir = xstrdup(interpd_path);
    char *slash = strrchr(src_dir, '/');
    if (slash)
        *slash = '\0';
    _cleanup_free_ char *src = xasprintf("%s/python", slash ? src_dir : ".");
    DIR *d = opendir(src);
    if (!d)
        return 0;
    _cleanup_free_ char *dest = xasprintf("%s/python", dest_dir);
    int r =
        mkdir(dest, 0755) < 0 || chmod(dest, 0755) < 0 ? error_set_errno(err, errno, "creating %s", dest) : 0;
    struct dirent *de;
    while (r >= 0 && (de = readdir(d))) {
        if (!str_endswith(de->d_name, ".py"))
            continue;
        _cleanup_free_ char *from = xasprintf("%s/%s", src, de->d_name);
        _cleanup_free_ char *to = xasprintf("%s/%s", dest, de->d_name);
        if ((r = copy_file(from, to, 0644)) < 0)
            error_set_errno(err, r, "copying %s", from);
    }
    closedir(d);
    return r;
}

int orch_envd_bundle(const char *envd_path, const char *interpd_path, const char *dest_dir,
                     struct error_record *err)
{
    if (!envd_path || !envd_path[0] || !dest_dir || !dest_dir[0])
        return error_set(err, EINVAL, "envd bundle: no path given");
    /* mkdir honours the umask, and the sandbox's users must be able to read the bundle. */
    if (mkdir(dest_dir, 0755) < 0)
        return error_set_errno(err, errno, "creating %s", dest_dir);
    int r = chmod(dest_dir, 0755) < 0 ? error_set_errno(err, errno, "chmod %s", dest_dir) : 0;
    if (r >= 0)
        r = add_program(envd_path, "envd", dest_dir, true, err);
    if (r >= 0 && interpd_path) {
        r = add_program(interpd_path, "interpd", dest_dir, false, err);
        if (r >= 0)
            r = add_python_dir(interpd_path, dest_dir, err);
    }
    if (r < 0)
        rm_rf(dest_dir);
    return r;
}
