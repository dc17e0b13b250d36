/* What the hutch subcommands share. Each subcommand is `int cmd_<name>(int argc, char **argv)`
 * with argv[0] the subcommand's name; it returns the process exit status (0 ok, 1 failure,
 * 2 usage error). */
#pragma once

#define HUTCH_DEFAULT_STATE_DIR "/var/lib/hutch"

/* The state directory: --state-dir, else $HUTCH_STATE_DIR, else the default. */
const char *cli_state_dir(const char *option);

int cmd_key(int argc, char **argv);
int cmd_serve(int argc, char **argv);
