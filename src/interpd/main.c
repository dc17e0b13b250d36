/* interpd: E2B's code interpreter API inside a sandbox, driving Jupyter kernels over libzmq.
 * Parses options, prepares the runtime directory, optionally warms the python kernel, serves
 * until SIGTERM or SIGINT, then kills every kernel before exiting. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "config.h"
#include "common/cleanup.h"
#include "common/fs-util.h"
#include "common/log.h"
#include "common/self-libs.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "interpd/contexts.h"
#include "interpd/execute.h"
#include "interpd/server.h"
#include "common/banned.h"

#define DEFAULT_LISTEN "0.0.0.0:49999"
#define DEFAULT_ENVD_URL "http://127.0.0.1:49983"
#define PRELOAD_TIMEOUT (300 * USEC_PER_SEC)
#define SHUTDOWN_GRACE (2 * USEC_PER_SEC)

static void usage(FILE *f)
{
    fprintf(f, "Usage: interpd [OPTIONS]\n"
               "E2B's code interpreter API (/execute, /contexts) over Jupyter kernels.\n\n"
               "  --listen ADDR:PORT     where to listen (default " DEFAULT_LISTEN ")\n"
               "  --python-lib DIR       added to python kernels' sys.path; hutch_display there is\n"
               "                         registered (default: <interpd's directory>/python)\n"
               "  --preload CODE         start the default python context and run CODE in it\n"
               "                         before listening (e.g. \"import numpy, pandas, matplotlib\")\n"
               "  --default-cwd DIR      cwd of contexts created without one (default: $HOME, else\n"
               "                         /home/user)\n"
               "  --envd-url URL         envd, asked for the sandbox's env vars (http:// only;\n"
               "                         default " DEFAULT_ENVD_URL ")\n"
               "  --kernel-dir DIR       look for kernelspecs only in DIR (repeatable; default: the\n"
               "                         Jupyter search path)\n"
               "  --start-timeout SEC    kernel startup limit (default 60)\n"
               "  --help, --version\n"
               "Environment: INTERPD_ADOPT_KERNEL=DIR, set by hutch serve: the first Python kernel is\n"
               "the one its kernel fork server starts in DIR (kept out of the kernels' environment).\n");
}

static char *default_python_lib(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return xstrdup("/opt/hutch/python");
    exe[n] = '\0';
    return xasprintf("%s/python", dirname(exe));
}

static char *default_cwd(void)
{
    const char *home = getenv("HOME");
    struct stat st;
    if (home && home[0] == '/' && stat(home, &st) == 0 && S_ISDIR(st.st_mode))
        return xstrdup(home);
    return xstrdup("/home/user");
}

static char *make_runtime_dir(void)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (!base || stat(base, &st) < 0 || !S_ISDIR(st.st_mode) || access(base, W_OK) < 0)
        base = getenv("TMPDIR");
    if (!base || !base[0])
        base = "/tmp";
    char *dir = xasprintf("%s/interpd-XXXXXX", base);
    if (!mkdtemp(dir)) { /* mkdtemp creates it 0700 */
        free(dir);
        return NULL;
    }
    return dir;
}

static void preload(struct contexts *cs, const char *code)
{
    struct context *ctx;
    struct error_record err;
    if (contexts_get_default(cs, "python", &ctx, &err) < 0) {
        log_error("preload: cannot start the python kernel: %s", err.msg);
        return;
    }
    usec_t t0 = now_usec(CLOCK_MONOTONIC);
    if (context_gate_acquire(ctx, PRELOAD_TIMEOUT)) {
        /* The sandbox's env waits for the first /execute, which carries the access token. */
        int r = context_prepare(cs, ctx, false, NULL, &err);
        if (r >= 0)
            r = context_run_silent(ctx, code, PRELOAD_TIMEOUT, &err);
        if (r < 0)
            log_warn("preload failed: %s", err.msg);
        else
            log_info("preloaded the python context %s in %llu ms", ctx->id,
                     (unsigned long long)((now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC));
        context_gate_release(ctx);
    }
    context_unref(cs, ctx);
}

int main(int argc, char **argv)
{
    enum {
        OPT_LISTEN = 256,
        OPT_PYTHON_LIB,
        OPT_PRELOAD,
        OPT_CWD,
        OPT_ENVD_URL,
        OPT_KERNEL_DIR,
        OPT_START_TIMEOUT,
        OPT_LIST_LIBRARIES,
        OPT_HELP,
        OPT_VERSION
    };
    static const struct option opts[] = {
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "python-lib", required_argument, NULL, OPT_PYTHON_LIB },
        { "preload", required_argument, NULL, OPT_PRELOAD },
        { "default-cwd", required_argument, NULL, OPT_CWD },
        { "envd-url", required_argument, NULL, OPT_ENVD_URL },
        { "kernel-dir", required_argument, NULL, OPT_KERNEL_DIR },
        { "start-timeout", required_argument, NULL, OPT_START_TIMEOUT },
        { "list-libraries", no_argument, NULL, OPT_LIST_LIBRARIES },
        { "help", no_argument, NULL, OPT_HELP },
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 },
    };
    log_setup_from_env("interpd");

    _cleanup_free_ char *python_lib = default_python_lib();
    _cleanup_free_ char *cwd = default_cwd();
    const char *kernel_dirs[17] = { NULL };
    size_t nkernel_dirs = 0;
    struct interpd_config cfg = {
        .listen = DEFAULT_LISTEN,
        .envd_url = DEFAULT_ENVD_URL,
        .start_timeout = 60 * USEC_PER_SEC,
        .skip_envd = getenv("E2B_LOCAL") != NULL,
    };
    int c;
    uint32_t secs;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN:
            cfg.listen = optarg;
            break;
        case OPT_LIST_LIBRARIES:
            /* For hutch serve's bundle: interpd runs in any template with its own libraries. */
            if (self_libs_print(stdout) < 0) {
                fprintf(stderr, "interpd: no program interpreter (statically linked?)\n");
                return 1;
            }
            return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
        case OPT_PYTHON_LIB:
            free(python_lib);
            python_lib = xstrdup(optarg);
            break;
        case OPT_PRELOAD:
            cfg.preload = optarg;
            break;
        case OPT_CWD:
            free(cwd);
            cwd = xstrdup(optarg);
            break;
        case OPT_ENVD_URL:
            cfg.envd_url = optarg;
            break;
        case OPT_KERNEL_DIR:
            if (nkernel_dirs == ARRAY_SIZE(kernel_dirs) - 1) {
                fprintf(stderr, "interpd: too many --kernel-dir\n");
                return 2;
            }
            kernel_dirs[nkernel_dirs++] = optarg;
            break;
        case OPT_START_TIMEOUT:
            if (parse_uint32(optarg, &secs) < 0 || secs == 0 || secs > 3600) {
                fprintf(stderr, "interpd: invalid --start-timeout '%s'\n", optarg);
                return 2;
            }
            cfg.start_timeout = secs * USEC_PER_SEC;
            break;
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf("interpd (hutch %s)\n", HUTCH_VERSION);
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
    _cleanup_free_ char *adopt =
        getenv("INTERPD_ADOPT_KERNEL") ? xstrdup(getenv("INTERPD_ADOPT_KERNEL")) : NULL;
    unsetenv("INTERPD_ADOPT_KERNEL");
    cfg.adopt_kernel_dir = adopt && adopt[0] == '/' ? adopt : NULL;
    cfg.python_lib = python_lib;
    cfg.default_cwd = cwd;
    cfg.kernel_dirs = nkernel_dirs ? kernel_dirs : kernelspec_default_dirs();

    /* Signals are taken by sigwait() below; every thread (MHD's, libzmq's) inherits the mask. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    _cleanup_free_ char *runtime_dir = make_runtime_dir();
    if (!runtime_dir) {
        log_error_errno(errno, "cannot create a runtime directory");
        return 1;
    }
    cfg.runtime_dir = runtime_dir;
    void *zctx = zmq_ctx_new();
    if (!zctx) {
        log_error_errno(errno, "zmq_ctx_new failed");
        rm_rf(runtime_dir);
        return 1;
    }
    struct contexts *cs = contexts_new(&cfg, zctx);
    if (cfg.preload)
        preload(cs, cfg.preload);

    struct interpd_server *srv;
    struct error_record err;
    int rc = 0;
    if (interpd_server_start(&cfg, cs, &srv, &err) < 0) {
        log_error("%s", err.msg);
        rc = 1;
        srv = NULL;
    } else {
        log_info("listening on %s (python lib %s, default cwd %s%s)", cfg.listen, python_lib, cwd,
                 cfg.skip_envd ? ", E2B_LOCAL" : "");
        int sig;
        sigwait(&mask, &sig);
        log_info("signal %d: shutting down", sig);
    }
    contexts_shutdown(cs, SHUTDOWN_GRACE);
    interpd_server_stop(srv);
    contexts_free(cs);
    zmq_ctx_term(zctx);
    rm_rf(runtime_dir);
    return rc;
}
