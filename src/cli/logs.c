/* hutch logs: a sandbox's log (its envd's output) as lines for people or JSON for scripts. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "common/macro.h"
#include "common/strutil.h"
#include "common/banned.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: hutch logs ID [--start UNIX_MS] [--limit N]\n\n"
               "Prints the log of sandbox ID: time, level, message and context, one entry a line\n"
               "(--json: one JSON array of {timestamp, level, message, fields}).\n" CLI_CONN_USAGE);
}

enum { OPT_START = CLI_OPT_FIRST_OWN, OPT_LIMIT };

static void print_json(const struct hutch_log_entry *e, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *fields = json_object();
        for (size_t k = 0; k < e[i].n_fields; k++)
            json_object_set_new(fields, e[i].fields[k].key, json_string(e[i].fields[k].value));
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:o}", "timestamp", e[i].timestamp, "level",
                                           e[i].level, "message", e[i].message, "fields", fields));
    }
    char *s = json_dumps(a, JSON_COMPACT);
    printf("%s\n", s ? s : "[]");
    free(s);
    json_decref(a);
}

int cmd_logs(int argc, char **argv)
{
    static const struct option options[] = {
        { "start", required_argument, NULL, OPT_START },
        { "limit", required_argument, NULL, OPT_LIMIT },
        CLI_CONN_OPTIONS,
        {},
    };
    struct cli_conn conn = { 0 };
    int64_t start = 0;
    uint32_t limit = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
        if (cli_conn_option(&conn, c, optarg))
            continue;
        switch (c) {
        case OPT_START:
            if (parse_int64(optarg, &start) < 0 || start < 0) {
                fprintf(stderr, "hutch logs: --start wants a time in unix milliseconds\n");
                return 2;
            }
            break;
        case OPT_LIMIT:
            if (parse_uint32(optarg, &limit) < 0 || limit == 0) {
                fprintf(stderr, "hutch logs: --limit wants a positive number\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        usage(stderr);
        return 2;
    }
    struct hutch_client *client = cli_client(&conn);
    if (!client)
        return 1;
    struct hutch_log_entry *e;
    size_t n;
    enum hutch_code code = hutch_sandbox_logs(client, argv[optind], start, limit, &e, &n);
    if (code != HUTCH_OK) {
        int status = cli_fail(client, "logs", code);
        hutch_client_free(client);
        return status;
    }
    if (conn.json) {
        print_json(e, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            printf("%s  %-5s  %s", e[i].timestamp, e[i].level, e[i].message);
            for (size_t k = 0; k < e[i].n_fields; k++)
                printf("  %s=%s", e[i].fields[k].key, e[i].fields[k].value);
            printf("\n");
        }
    }
    hutch_log_entry_array_free(e, n);
    hutch_client_free(client);
    return 0;
}
