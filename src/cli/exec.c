/* hutch exec and hutch shell: run a command in a sandbox with output streamed as it comes
 * (exec), or an interactive terminal (shell). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/macro.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

static void usage_exec(FILE *f)
{
    fprintf(f,
            "Usage: hutch exec ID [--user U] [--cwd DIR] [--env K=V]... [--timeout S] [-i] [-t] -- CMD "
            "[ARG]...\n\n"
            "Runs CMD (looked up in PATH) in sandbox ID, streams its stdout and stderr to hutch's as\n"
            "they come, and exits with its exit status (128+N when signal N killed it).\n"
            "  -i, --stdin    forward hutch's stdin to the command (closed at its end)\n"
            "  -t, --tty      run on a pseudo-terminal (output arrives on stdout)\n"
            "  --timeout S    kill the command after S seconds (hutch then exits with 124)\n" CLI_CONN_USAGE);
}

static void usage_shell(FILE *f)
{
    fprintf(f, "Usage: hutch shell ID [--user U] [--cwd DIR] [--env K=V]... [-- CMD [ARG]...]\n\n"
               "An interactive terminal in sandbox ID (default: /bin/bash -i -l): raw mode when stdin\n"
               "is a terminal, resized with the local window. Works with piped stdin too.\n" CLI_CONN_USAGE);
}

enum { OPT_USER = CLI_OPT_FIRST_OWN, OPT_CWD, OPT_ENV, OPT_TIMEOUT };

static int exec_or_shell(int argc, char **argv, bool shell)
{
    static const struct option options[] = {
        { "user", required_argument, NULL, OPT_USER },
        { "cwd", required_argument, NULL, OPT_CWD },
        { "env", required_argument, NULL, OPT_ENV },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "stdin", no_argument, NULL, 'i' },
        { "tty", no_argument, NULL, 't' },
        CLI_CONN_OPTIONS,
        {},
    };
    const char *name = shell ? "shell" : "exec";
    void (*usage)(FILE *) = shell ? usage_shell : usage_exec;
    struct cli_conn conn = { 0 };
    struct hutch_exec_options opts = { 0 };
    _cleanup_free_ struct hutch_kv *env = NULL;
    size_t n_env = 0;
    bool forward_stdin = shell;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, shell ? "h" : "ith", options, NULL)) >= 0) {
        if (cli_conn_option(&conn, c, optarg))
            continue;
        switch (c) {
        case OPT_USER:
            opts.user = optarg;
            break;
        case OPT_CWD:
            opts.cwd = optarg;
            break;
        case OPT_ENV:
            if (!cli_kv_push(name, optarg, &env, &n_env))
                return 2;
            break;
        case OPT_TIMEOUT: {
            uint32_t s;
            if (parse_uint32(optarg, &s) < 0 || s == 0 || s > 86400 * 30) {
                fprintf(stderr, "hutch %s: --timeout wants seconds, not '%s'\n", name, optarg);
                return 2;
            }
            opts.timeout_ms = s * 1000u;
            break;
        }
        case 'i':
            forward_stdin = true;
            break;
        case 't':
            opts.pty = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc || (!shell && optind + 1 >= argc)) {
        fprintf(stderr, "hutch %s: %s\n", name, optind >= argc ? "which sandbox?" : "which command?");
        usage(stderr);
        return 2;
    }
    const char *id = argv[optind++];
    static const char *const default_shell[] = { "/bin/bash", "-i", "-l", NULL };
    const char *const *cmd = optind < argc ? (const char *const *)&argv[optind] : default_shell;
    if (shell) {
        opts.pty = true;
        const char *term = getenv("TERM");
        if (term && *term) {
            struct hutch_kv t = { "TERM", term };
            bool have = false;
            for (size_t i = 0; i < n_env; i++)
                have |= streq(env[i].key, "TERM");
            if (!have) {
                env = xreallocarray(env, n_env + 1, sizeof(*env));
                env[n_env++] = t;
            }
        }
    }
    opts.env = env;
    opts.n_env = n_env;
    struct hutch_client *client = cli_client(&conn);
    if (!client)
        return 1;
    int status = cli_run_remote(client, name, id, cmd, &opts, forward_stdin);
    hutch_client_free(client);
    return status;
}

int cmd_exec(int argc, char **argv)
{
    return exec_or_shell(argc, argv, false);
}

int cmd_shell(int argc, char **argv)
{
    return exec_or_shell(argc, argv, true);
}
