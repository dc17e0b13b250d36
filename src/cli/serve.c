/* hutch serve: the control plane on one port, until SIGINT or SIGTERM. */
#include <getopt.h>
#include <limits.h>
#include <unistd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "common/macro.h"
#include "common/strutil.h"
#include "store/store.h"
#include "common/banned.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: hutch serve [OPTIONS]\n\n"
            "Serves E2B's control-plane API and all sandbox traffic on one port.\n\n"
            "  --listen ADDR:PORT        default %s\n"
            "  --state-dir DIR           default $HUTCH_STATE_DIR or %s\n"
            "  --domain DOMAIN           route Host <port>-<sandbox id>.DOMAIN to sandboxes\n"
            "  --envd PATH               the envd to run in sandboxes (default: beside hutch)\n"
            "  --interpd PATH            the code interpreter for code-interpreter-v1 (default:\n"
            "                            beside hutch, when there)\n"
            "  --kernel-fork-server PATH|off\n"
            "                            code-interpreter-v1's Python kernels are forked from one\n"
            "                            process that imported their libraries (default: the\n"
            "                            kernel-forkserver beside hutch, when there); off: each\n"
            "                            sandbox starts its own\n"
            "  --kernel-memory-merge     ask KSM to merge the identical pages of those kernels\n"
            "                            (Linux 6.4+, KSM running): less memory per sandbox, but a\n"
            "                            timing side channel between sandboxes; see operations.md\n"
            "  --default-cpus N          per sandbox when a request names none (default 2)\n"
            "  --default-memory-mb N     (default 512)\n"
            "  --default-disk-mb N       size of the writable layer (default 1024)\n"
            "  --max-cpus N, --max-memory-mb N, --max-disk-mb N\n"
            "                            the most a request may ask for (8, 8192, 20480)\n"
            "  --max-timeout S           longest sandbox timeout in seconds (default 86400)\n"
            "  --max-sandboxes N         running at once on this server (default 256)\n"
            "  --net-pool CIDR           addresses of online sandboxes' links (default 10.200.0.0/16)\n"
            "  --egress-port PORT        the egress proxy's port on the host, for domain names in\n"
            "                            network.allowOut (default: any free port)\n"
            "  --egress-resolve NAME:ADDR  the egress proxy resolves NAME to ADDR instead of asking\n"
            "                            DNS (repeatable; like curl's --resolve)\n"
            "  --warm-pool N             keep N base sandboxes started for fast creates (default 0);\n"
            "                            with it (or --pool-memory-mb) every template gets a pool\n"
            "                            sized by its creates in the last minute (at most 16)\n"
            "  --pool-memory-mb N        memory all pooled sandboxes may use together (default 2048)\n"
            "  --ready-timeout S         how long a template's ready command may take (default 600)\n"
            "  --max-paused-in-memory N  paused sandboxes kept frozen in memory; beyond, a pause\n"
            "                            keeps the filesystem only (default 64)\n",
            API_DEFAULT_LISTEN, HUTCH_DEFAULT_STATE_DIR);
}

enum {
    OPT_DEFAULT_CPUS = 256,
    OPT_KERNEL_FORK_SERVER,
    OPT_KERNEL_MEMORY_MERGE,
    OPT_DEFAULT_MEMORY,
    OPT_DEFAULT_DISK,
    OPT_MAX_CPUS,
    OPT_MAX_MEMORY,
    OPT_MAX_DISK,
    OPT_MAX_TIMEOUT,
    OPT_MAX_SANDBOXES,
    OPT_NET_POOL,
    OPT_WARM_POOL,
    OPT_READY_TIMEOUT,
    OPT_POOL_MEMORY,
    OPT_MAX_PAUSED_IN_MEMORY,
    OPT_EGRESS_PORT,
    OPT_EGRESS_RESOLVE,
};

/* Parses a positive number for a server limit; false (with a message) when it is not one. */
static bool positive(const char *opt, const char *s, uint32_t *ret)
{
    if (parse_uint32(s, ret) < 0 || *ret == 0) {
        fprintf(stderr, "hutch serve: --%s needs a positive number, not '%s'\n", opt, s);
        return false;
    }
    return true;
}

static int count_key(const struct store_key *k, void *userdata)
{
    if (!k->revoked_at)
        ++*(int *)userdata;
    return 0;
}

/* The first thing a new admin needs is a key; say how to get one when there is none. */
static void hint_if_no_keys(const char *state_dir)
{
    struct store *store;
    struct error_record err = { 0 };
    if (store_open(state_dir, &store, &err) < 0)
        return;
    int n = 0;
    store_key_list(store, count_key, &n, &err);
    store_free(store);
    if (n == 0)
        log_info("no API key yet: create one with `hutch key create --state-dir %s` and give it to clients "
                 "as E2B_API_KEY",
                 state_dir);
}

/* hutch, envd and interpd are built and installed side by side. */
static char *beside_self(const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return xstrdup(name);
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    return xasprintf("%s/%s", self, name);
}

int cmd_serve(int argc, char **argv)
{
    static const struct option options[] = {
        { "listen", required_argument, NULL, 'l' },
        { "state-dir", required_argument, NULL, 's' },
        { "domain", required_argument, NULL, 'd' },
        { "envd", required_argument, NULL, 'e' },
        { "interpd", required_argument, NULL, 'i' },
        { "kernel-fork-server", required_argument, NULL, OPT_KERNEL_FORK_SERVER },
        { "kernel-memory-merge", no_argument, NULL, OPT_KERNEL_MEMORY_MERGE },
        { "default-cpus", required_argument, NULL, OPT_DEFAULT_CPUS },
        { "default-memory-mb", required_argument, NULL, OPT_DEFAULT_MEMORY },
        { "default-disk-mb", required_argument, NULL, OPT_DEFAULT_DISK },
        { "max-cpus", required_argument, NULL, OPT_MAX_CPUS },
        { "max-memory-mb", required_argument, NULL, OPT_MAX_MEMORY },
        { "max-disk-mb", required_argument, NULL, OPT_MAX_DISK },
        { "max-timeout", required_argument, NULL, OPT_MAX_TIMEOUT },
        { "max-sandboxes", required_argument, NULL, OPT_MAX_SANDBOXES },
        { "net-pool", required_argument, NULL, OPT_NET_POOL },
        { "warm-pool", required_argument, NULL, OPT_WARM_POOL },
        { "ready-timeout", required_argument, NULL, OPT_READY_TIMEOUT },
        { "pool-memory-mb", required_argument, NULL, OPT_POOL_MEMORY },
        { "max-paused-in-memory", required_argument, NULL, OPT_MAX_PAUSED_IN_MEMORY },
        { "egress-port", required_argument, NULL, OPT_EGRESS_PORT },
        { "egress-resolve", required_argument, NULL, OPT_EGRESS_RESOLVE },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    struct api_config cfg = { .listen = API_DEFAULT_LISTEN };
    const char *state_dir = NULL;
    int c;
    optind = 1;
    _cleanup_free_ char *default_envd = beside_self("envd");
    cfg.orch.envd_path = default_envd;
    /* The code interpreter is optional: without it there is no code-interpreter-v1 template. */
    _cleanup_free_ char *default_interpd = beside_self("interpd");
    cfg.orch.interpd_path = access(default_interpd, X_OK) == 0 ? default_interpd : NULL;
    const char *resolve[EGRESS_MAX_RESOLVE + 1] = { 0 };
    size_t n_resolve = 0;
    cfg.egress.resolve = resolve;
    _cleanup_free_ char *default_forkserver = beside_self("kernel-forkserver");
    cfg.orch.forkserver_path = access(default_forkserver, X_OK) == 0 ? default_forkserver : NULL;
    while ((c = getopt_long(argc, argv, "l:s:d:e:i:h", options, NULL)) >= 0) {
        switch (c) {
        case 'l':
            cfg.listen = optarg;
            break;
        case 's':
            state_dir = optarg;
            break;
        case 'd':
            cfg.domain = optarg;
            break;
        case 'e':
            cfg.orch.envd_path = optarg;
            break;
        case 'i':
            cfg.orch.interpd_path = optarg;
            break;
        case OPT_KERNEL_FORK_SERVER:
            cfg.orch.forkserver_path = streq(optarg, "off") ? NULL : optarg;
            break;
        case OPT_KERNEL_MEMORY_MERGE:
            cfg.orch.kernel_memory_merge = true;
            break;
        case OPT_DEFAULT_CPUS:
            if (!positive("default-cpus", optarg, &cfg.orch.defaults.cpu_count))
                return 2;
            break;
        case OPT_DEFAULT_MEMORY:
            if (!positive("default-memory-mb", optarg, &cfg.orch.defaults.memory_mb))
                return 2;
            break;
        case OPT_DEFAULT_DISK:
            if (!positive("default-disk-mb", optarg, &cfg.orch.defaults.disk_mb))
                return 2;
            break;
        case OPT_MAX_CPUS:
            if (!positive("max-cpus", optarg, &cfg.orch.maximums.cpu_count))
                return 2;
            break;
        case OPT_MAX_MEMORY:
            if (!positive("max-memory-mb", optarg, &cfg.orch.maximums.memory_mb))
                return 2;
            break;
        case OPT_MAX_DISK:
            if (!positive("max-disk-mb", optarg, &cfg.orch.maximums.disk_mb))
                return 2;
            break;
        case OPT_MAX_TIMEOUT:
            if (!positive("max-timeout", optarg, &cfg.orch.max_timeout_s))
                return 2;
            break;
        case OPT_MAX_SANDBOXES:
            if (!positive("max-sandboxes", optarg, &cfg.orch.max_sandboxes))
                return 2;
            break;
        case OPT_NET_POOL:
            cfg.orch.runtime_config.net_pool = optarg;
            break;
        case OPT_WARM_POOL:
            if (parse_uint32(optarg, &cfg.orch.warm_pool) < 0 || cfg.orch.warm_pool > 1024) {
                fprintf(stderr, "hutch serve: --warm-pool wants a number from 0 to 1024, not '%s'\n", optarg);
                return 2;
            }
            break;
        case OPT_POOL_MEMORY:
            if (!positive("pool-memory-mb", optarg, &cfg.orch.pool_memory_mb))
                return 2;
            break;
        case OPT_READY_TIMEOUT:
            if (!positive("ready-timeout", optarg, &cfg.orch.ready_timeout_s))
                return 2;
            break;
        case OPT_MAX_PAUSED_IN_MEMORY:
            /* 0 is meaningful: every pause keeps the filesystem only. */
            if (parse_uint32(optarg, &cfg.orch.max_paused_in_memory) < 0) {
                fprintf(stderr, "hutch serve: --max-paused-in-memory wants a number, not '%s'\n", optarg);
                return 2;
            }
            cfg.orch.pause_filesystem_only = cfg.orch.max_paused_in_memory == 0;
            break;
        case OPT_EGRESS_PORT: {
            uint32_t port;
            if (parse_uint32(optarg, &port) < 0 || port > 65535) {
                fprintf(stderr, "hutch serve: --egress-port wants a port number, not '%s'\n", optarg);
                return 2;
            }
            cfg.egress.port = (uint16_t)port;
            break;
        }
        case OPT_EGRESS_RESOLVE:
            if (n_resolve == EGRESS_MAX_RESOLVE) {
                fprintf(stderr, "hutch serve: at most %d --egress-resolve\n", EGRESS_MAX_RESOLVE);
                return 2;
            }
            resolve[n_resolve++] = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    cfg.state_dir = cli_state_dir(state_dir);

    /* Block the stop signals before any thread starts, so that only sigwait() sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct api_server *server;
    struct error_record err = { 0 };
    if (api_server_start(&cfg, &server, &err) < 0) {
        log_error("hutch serve: %s", err.msg);
        return 1;
    }
    log_info("serving the E2B API on http://%s (state in %s, port %u)", cfg.listen, cfg.state_dir,
             (unsigned)api_server_port(server));
    hint_if_no_keys(cfg.state_dir);

    int sig;
    sigwait(&stop, &sig);
    log_info("received %s, stopping", strsignal(sig));
    api_server_stop(server);
    return 0;
}
