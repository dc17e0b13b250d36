/* hutch key create|list|revoke: API keys, managed by the host's admin directly on the state
 * directory's store, with or without a running server (SQLite's locking makes both safe). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/error.h"
#include "common/macro.h"
#include "common/time-util.h"
#include "store/store.h"
#include "common/banned.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: hutch key create [--name NAME] [--state-dir DIR]\n"
               "       hutch key list [--state-dir DIR]\n"
               "       hutch key revoke ID [--state-dir DIR]\n\n"
               "Manages the API keys that E2B clients send as X-API-KEY (E2B_API_KEY).\n"
               "create prints the new key once; only its hash is stored.\n");
}

static int print_key(const struct store_key *k, void *userdata)
{
    char created[32];
    format_rfc3339((time_t)k->created_at, created, sizeof(created));
    printf("%-12s  %-14s  %-20s  %-7s  %s\n", k->id, k->hint, created, k->revoked_at ? "revoked" : "valid",
           k->name);
    return 0;
}

int cmd_key(int argc, char **argv)
{
    static const struct option options[] = {
        { "name", required_argument, NULL, 'n' },
        { "state-dir", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (streq(verb, "--help") || streq(verb, "-h") || streq(verb, "help")) {
        usage(stdout);
        return 0;
    }
    const char *name = NULL, *state_dir = NULL;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "n:s:h", options, NULL)) >= 0) {
        switch (c) {
        case 'n':
            name = optarg;
            break;
        case 's':
            state_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int rest = argc - optind;
    bool is_revoke = streq(verb, "revoke");
    if (!streq(verb, "create") && !streq(verb, "list") && !is_revoke) {
        fprintf(stderr, "hutch key: unknown action '%s'\n", verb);
        usage(stderr);
        return 2;
    }
    if ((is_revoke && rest != 1) || (!is_revoke && rest != 0) || (name && !streq(verb, "create"))) {
        usage(stderr);
        return 2;
    }

    struct error_record err = { 0 };
    struct store *store;
    state_dir = cli_state_dir(state_dir);
    if (store_open(state_dir, &store, &err) < 0) {
        fprintf(stderr, "hutch key: %s\n", err.msg);
        return 1;
    }
    int r;
    if (streq(verb, "create")) {
        char key[STORE_KEY_LEN + 1];
        struct store_key k;
        r = store_key_create(store, name, key, &k, &err);
        if (r >= 0) {
            printf("%s\n", key);
            fprintf(stderr, "Created key %s in %s. It is shown only now; store it safely.\n", k.id,
                    state_dir);
        }
    } else if (streq(verb, "list")) {
        printf("%-12s  %-14s  %-20s  %-7s  %s\n", "ID", "KEY", "CREATED", "STATE", "NAME");
        r = store_key_list(store, print_key, NULL, &err);
    } else {
        r = store_key_revoke(store, argv[optind], &err);
        if (r >= 0)
            printf("revoked %s\n", argv[optind]);
    }
    store_free(store);
    if (r < 0) {
        fprintf(stderr, "hutch key: %s\n", err.msg);
        return 1;
    }
    return 0;
}
