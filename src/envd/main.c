/* envd: parses options, sets up signals and settings, serves until SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <link.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/self-libs.h"
#include "common/xalloc.h"
#include "envd/envd.h"
#include "envd/passwd.h"
#include "envd/server.h"
#include "envd/signals.h"
#include "common/banned.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: envd [OPTIONS]\n"
            "The agent inside a hutch sandbox: E2B's envd protocols on one port.\n\n"
            "  --listen ADDR:PORT       where to listen (default 0.0.0.0:%d)\n"
            "  --default-user NAME      run-as user when a request names none (default: envd's own)\n"
            "  --default-workdir DIR    working directory for requests without one (default: home)\n"
            "  --access-token TOKEN     require X-Access-Token (also settable by /init)\n"
            "  --init                   reap orphans as pid 1 does (implied when envd is pid 1)\n"
            "  --list-libraries         print the dynamic loader, then every shared object loaded\n"
            "  --help, --version\n",
            ENVD_DEFAULT_PORT);
}

/* Children get 0, 1 and 2 from pipes by dup2(); make sure envd's own are taken, so that a pipe
 * never lands on one of them. */
static void ensure_stdio(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            _exit(1);
}

/* As a sandbox's pid 1: make the sandbox's own host name resolve (sudo and many tools look it
 * up), since the template's /etc/hosts cannot know it. The file lives on the sandbox's writable
 * layer. */
static void hosts_add_own_name(void)
{
    char name[HOST_NAME_MAX + 1];
    if (gethostname(name, sizeof(name)) < 0 || !name[0])
        return;
    _cleanup_close_ int fd = open("/etc/hosts", O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_warn_errno(errno, "cannot open /etc/hosts");
        return;
    }
    char buf[65536];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    for (char *p = strstr(buf, name); p; p = strstr(p + 1, name)) {
        bool starts = p == buf || p[-1] == ' ' || p[-1] == '\t';
        char after = p[strlen(name)];
        if (starts && (after == '\0' || after == '\n' || after == ' ' || after == '\t'))
            return;
    }
    char line[HOST_NAME_MAX + 32];
    int len =
        snprintf(line, sizeof(line), "%s127.0.1.1\t%s\n", n > 0 && buf[n - 1] != '\n' ? "\n" : "", name);
    if (write(fd, line, (size_t)len) != len)
        log_warn_errno(errno, "cannot add %s to /etc/hosts", name);
}

/* For the orchestrator's bundle (orch_envd_bundle()). */
static int list_libraries(void)
{
    if (self_libs_print(stdout) < 0) {
        fprintf(stderr, "envd: no program interpreter (statically linked?)\n");
        return 1;
    }
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}

int main(int argc, char **argv)
{
    enum {
        OPT_LISTEN = 256,
        OPT_USER,
        OPT_WORKDIR,
        OPT_TOKEN,
        OPT_INIT,
        OPT_LIST_LIBRARIES,
        OPT_HELP,
        OPT_VERSION
    };
    static const struct option opts[] = {
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "default-user", required_argument, NULL, OPT_USER },
        { "default-workdir", required_argument, NULL, OPT_WORKDIR },
        { "access-token", required_argument, NULL, OPT_TOKEN },
        { "init", no_argument, NULL, OPT_INIT },
        { "list-libraries", no_argument, NULL, OPT_LIST_LIBRARIES },
        { "help", no_argument, NULL, OPT_HELP },
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 },
    };
    ensure_stdio();
    /* glibc gives each new thread a malloc arena of its own (up to 8 per CPU), and an arena
     * keeps what it once held: after a burst of concurrent requests envd stayed 1.6 MiB larger
     * than with two arenas, which its short, small allocations do not contend for. Before any
     * thread exists. */
    mallopt(M_ARENA_MAX, 2);
    log_setup_from_env("envd");

    _cleanup_free_ char *listen = xasprintf("0.0.0.0:%d", ENVD_DEFAULT_PORT);
    const char *user = NULL, *workdir = NULL, *token = NULL;
    bool init = getpid() == 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN:
            free(listen);
            listen = xstrdup(optarg);
            break;
        case OPT_USER:
            user = optarg;
            break;
        case OPT_WORKDIR:
            workdir = optarg;
            break;
        case OPT_TOKEN:
            token = optarg;
            break;
        case OPT_INIT:
            init = true;
            break;
        case OPT_LIST_LIBRARIES:
            return list_libraries();
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_VERSION:
            /* Not ENVD_VERSION: the control plane advertises that once every gate it opens works. */
            printf("envd (hutch %s)\n", HUTCH_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }

    char self[sizeof(((struct envd_user *)NULL)->name)];
    if (!user) {
        if (envd_passwd_user_name("/etc/passwd", (unsigned)geteuid(), self, sizeof(self)) < 0) {
            log_error("cannot find the name of uid %u; pass --default-user", (unsigned)geteuid());
            return 1;
        }
        user = self;
    }
    struct envd_user u;
    struct error_record err;
    if (envd_user_lookup(user, &u, &err) < 0) {
        log_error("default user: %s", err.msg);
        return 1;
    }
    envd_settings_init(user);
    json_t *initial = json_object();
    if (workdir)
        json_object_set_new(initial, "defaultWorkdir", json_string(workdir));
    if (token)
        json_object_set_new(initial, "accessToken", json_string(token));
    int r = envd_settings_apply_init(initial, &err);
    json_decref(initial);
    if (r < 0) {
        log_error("%s", err.msg);
        return 1;
    }

    if (getpid() == 1)
        hosts_add_own_name();
    r = envd_signals_setup(init);
    if (r < 0) {
        log_error_errno(r, "cannot set up signal handling");
        return 1;
    }
    struct envd_server *srv;
    if (envd_server_start(listen, &srv, &err) < 0) {
        log_error("%s", err.msg);
        return 1;
    }
    log_info("listening on %s (default user %s%s)", listen, user, init ? ", init" : "");

    int sig = envd_signals_loop();
    log_info("signal %d: shutting down", sig);
    size_t left = envd_signals_kill_children(3 * USEC_PER_SEC);
    if (left)
        log_warn("%zu processes did not exit", left);
    envd_server_stop(srv);
    return 0;
}
