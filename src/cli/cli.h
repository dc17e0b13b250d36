/* What the hutch subcommands share. Each subcommand is `int cmd_<name>(int argc, char **argv)`
 * with argv[0] the subcommand's name; it returns the process exit status (0 ok, 1 failure,
 * 2 usage error). */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "hutch/hutch.h"

#define HUTCH_DEFAULT_STATE_DIR "/var/lib/hutch"

/* The state directory: --state-dir, else $HUTCH_STATE_DIR, else the default. */
const char *cli_state_dir(const char *option);

/* The options every client command takes: where the server is, the key, the output format.
 * Defaults come from E2B_API_URL and E2B_API_KEY, then http://127.0.0.1:3000. */
enum {
    CLI_OPT_API_URL = 0x100,
    CLI_OPT_API_KEY,
    CLI_OPT_JSON,
    CLI_OPT_HELP,
    CLI_OPT_FIRST_OWN, /* a command's own long-only options start here */
};
#define CLI_CONN_OPTIONS                                                                                     \
    { "api-url", required_argument, NULL, CLI_OPT_API_URL },                                                 \
        { "api-key", required_argument, NULL, CLI_OPT_API_KEY },                                             \
        { "json", no_argument, NULL, CLI_OPT_JSON },                                                         \
    {                                                                                                        \
        "help", no_argument, NULL, 'h'                                                                       \
    }
#define CLI_CONN_USAGE                                                                                       \
    "Connection: --api-url URL (E2B_API_URL), --api-key KEY (E2B_API_KEY); --json for scripts.\n"

struct cli_conn {
    const char *api_url;
    const char *api_key;
    bool json;
};

/* Takes one of the shared options (getopt's c and optarg); false when c is not one. */
bool cli_conn_option(struct cli_conn *conn, int c, const char *arg);

/* A client for conn; prints the failure and returns NULL when none can be made. */
struct hutch_client *cli_client(const struct cli_conn *conn);

/* Prints "hutch <what>: <message>" for a failed call and returns the exit status 1. */
int cli_fail(struct hutch_client *client, const char *what, enum hutch_code code);

/* Parses "KEY=VALUE" (the pointers point into arg, which is modified). Returns 0 or -EINVAL. */
int cli_parse_kv(char *arg, struct hutch_kv *ret);

/* Appends a KEY=VALUE argument to a growing array; prints the error and returns false when
 * it is malformed. */
bool cli_kv_push(const char *cmd, char *arg, struct hutch_kv **kv, size_t *n);

/* Writes all of data to fd (retrying short writes); returns 0 or -errno. */
int cli_write_all(int fd, const void *data, size_t len);

/* Runs a process in a sandbox with the terminal attached: output to stdout/stderr as it comes,
 * local stdin forwarded when forward_stdin (at its end: stdin closed, or Ctrl-D on a pty),
 * a pty sized like the local terminal and resized on SIGWINCH, raw mode when opts->pty and
 * stdin is a terminal (restored on every exit path). SIGINT/SIGTERM/SIGHUP end the remote
 * process: SIGTERM, then SIGKILL on a second one; on a pty SIGKILL at once, and hutch then
 * exits with 128 + the signal it got. Returns the exit status for hutch to exit
 * with: the process's (128+N when killed by signal N), 124 when opts->timeout_ms ran out (as
 * timeout(1)), or 1 after printing the failure. */
int cli_run_remote(struct hutch_client *client, const char *cmd, const char *sandbox_id,
                   const char *const *argv, struct hutch_exec_options *opts, bool forward_stdin);

int cmd_key(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_sandbox(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_shell(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_template(int argc, char **argv);
