/* kernel-forkserver: hutch serve's kernel fork server (forkserver.h). Started by hutch serve
 * with its socket and the bundle directory as fds; not meant to be run by hand. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/strutil.h"
#include "forkserver/forkserver.h"

#include "common/banned.h"

#if defined(__SANITIZE_ADDRESS__)
/* Sanitized test builds: the kernels are long-lived Python processes inside memory-limited
 * sandboxes; ASan's default quarantine alone would take a quarter of a sandbox's memory, and
 * Python's allocations at exit are not leaks of ours. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0:quarantine_size_mb=8:malloc_context_size=4";
}
#endif

static void usage(FILE *f)
{
    fprintf(f, "Usage: kernel-forkserver --sock-fd N --bundle-fd N [--python-lib DIR] [--preload MODULES]\n"
               "                         [--memory-merge]\n"
               "hutch serve's kernel fork server; see docs/internals/interpd.md.\n");
}

static int parse_fd(const char *s, int *ret)
{
    uint32_t v;
    if (parse_uint32(s, &v) < 0 || v < 3 || v > 1024)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "sock-fd", required_argument, NULL, 's' },
        { "bundle-fd", required_argument, NULL, 'b' },
        { "python-lib", required_argument, NULL, 'p' },
        { "preload", required_argument, NULL, 'l' },
        { "memory-merge", no_argument, NULL, 'm' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct forkserver_config cfg = { .sock = -1, .bundle_fd = -1, .python_lib = "/opt/hutch/python" };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
        case 'b':
            if (parse_fd(optarg, c == 's' ? &cfg.sock : &cfg.bundle_fd) < 0) {
                fprintf(stderr, "kernel-forkserver: bad fd '%s'\n", optarg);
                return 2;
            }
            break;
        case 'p':
            cfg.python_lib = optarg;
            break;
        case 'l':
            cfg.preload = optarg;
            break;
        case 'm':
            cfg.memory_merge = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (cfg.sock < 0 || cfg.bundle_fd < 0 || optind < argc) {
        usage(stderr);
        return 2;
    }
    struct error_record err;
    error_clear(&err);
    int rc = 0;
    if (forkserver_confine(&cfg, &err) < 0 || forkserver_python_init(&cfg, &err) < 0 ||
        forkserver_serve(&cfg, &err) < 0) {
        fprintf(stderr, "kernel-forkserver: %s\n", err.msg);
        rc = 1;
    }
    /* Nothing to flush or finalize: Python's finalization would only walk the imported heap
     * (and a sanitized build's exit handlers the whole address space). */
    fflush(stderr);
    _exit(rc);
}
