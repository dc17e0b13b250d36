/* hutch: the command-line entry point. Subcommands are dispatched from a table; each lives in
 * its own file (serve, key, sandbox, exec and shell, cp, logs); the client commands use
 * libhutch, like any other program would. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cli/cli.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/banned.h"

static int cmd_version(int argc, char **argv)
{
    printf("hutch %s\n", HUTCH_VERSION);
    return 0;
}

static int cmd_help(int argc, char **argv);

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    { "serve", cmd_serve, "serve the E2B-compatible API" },
    { "key", cmd_key, "create, list and revoke API keys" },
    { "sandbox", cmd_sandbox, "create, list, inspect, kill, pause and resume sandboxes" },
    { "exec", cmd_exec, "run a command in a sandbox" },
    { "shell", cmd_shell, "open an interactive terminal in a sandbox" },
    { "cp", cmd_cp, "copy a file into or out of a sandbox" },
    { "logs", cmd_logs, "print a sandbox's log" },
    { "template", cmd_template, "build templates from Hutchfiles, list and delete them" },
    { "version", cmd_version, "print the version and exit" },
    { "help", cmd_help, "show this help" },
};

static int cmd_help(int argc, char **argv)
{
    printf("Usage: hutch COMMAND [ARGS...]\n\n"
           "hutch runs untrusted code in isolated sandboxes and speaks E2B's wire protocols.\n\n"
           "Commands:\n");
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].summary);
    printf("\nThe in-sandbox agent is a separate program: envd --help.\n");
    return 0;
}

int main(int argc, char **argv)
{
    log_setup_from_env("hutch");
    if (argc < 2) {
        cmd_help(argc, argv);
        return 2;
    }
    const char *name = argv[1];
    if (streq(name, "--version") || streq(name, "-V"))
        name = "version";
    else if (streq(name, "--help") || streq(name, "-h"))
        name = "help";
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (streq(name, commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "hutch: unknown command '%s' (see 'hutch help')\n", name);
    return 2;
}
