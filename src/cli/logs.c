/* hutch logs: a sandbox's log (its envd's output) as lines for people or JSON for scripts;
 * --follow polls for new entries until the sandbox is gone.
 *
 * Following: the server selects entries by the time it collected them, and shows the time
 * envd stamped them; the two differ by a little. So each poll asks again from a second before
 * the newest stamp seen, and entries already printed (same stamp and line) are skipped. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "common/macro.h"
#include "common/strutil.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "common/banned.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: hutch logs ID [--start UNIX_MS] [--limit N] [-f|--follow]\n\n"
        "Prints the log of sandbox ID: time, level, message and context, one entry a line\n"
        "(--json: one JSON array of {timestamp, level, message, fields}; with --follow, one\n"
        "JSON object a line). --follow keeps printing new entries until the sandbox ends.\n" CLI_CONN_USAGE);
}

enum { OPT_START = CLI_OPT_FIRST_OWN, OPT_LIMIT };

#define FOLLOW_INTERVAL_USEC (1000 * 1000)
#define FOLLOW_OVERLAP_MS 1000
#define FOLLOW_SEEN_MAX 4096

static json_t *entry_json(const struct hutch_log_entry *e)
{
    json_t *fields = json_object();
    for (size_t k = 0; k < e->n_fields; k++)
        json_object_set_new(fields, e->fields[k].key, json_string(e->fields[k].value));
    return json_pack("{s:s, s:s, s:s, s:o}", "timestamp", e->timestamp, "level", e->level, "message",
                     e->message, "fields", fields);
}

static void print_text(const struct hutch_log_entry *e)
{
    printf("%s  %-5s  %s", e->timestamp, e->level, e->message);
    for (size_t k = 0; k < e->n_fields; k++)
        printf("  %s=%s", e->fields[k].key, e->fields[k].value);
    printf("\n");
}

/* "2026-01-01T00:00:00.123Z" (fraction optional, UTC only) in unix milliseconds; -1 when it
 * is not that. */
static int64_t stamp_ms(const char *s)
{
    struct tm tm = { 0 };
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    int64_t ms = (int64_t)timegm(&tm) * 1000;
    if (*p == '.') {
        int64_t scale = 100;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ms += (*p - '0') * scale;
    }
    return *p == 'Z' ? ms : -1;
}

struct seen {
    char *keys[FOLLOW_SEEN_MAX];
    size_t next;
};

/* True when the entry was printed before; otherwise remembers it. */
static bool seen_before(struct seen *s, const struct hutch_log_entry *e)
{
    char *key = xasprintf("%s\t%s", e->timestamp, e->line);
    for (size_t i = 0; i < FOLLOW_SEEN_MAX; i++)
        if (s->keys[i] && streq(s->keys[i], key)) {
            free(key);
            return true;
        }
    free(s->keys[s->next]);
    s->keys[s->next] = key;
    s->next = (s->next + 1) % FOLLOW_SEEN_MAX;
    return false;
}

static int follow(struct hutch_client *client, const char *id, int64_t start, uint32_t limit, bool json)
{
    struct seen seen = { 0 };
    int status = 0;
    bool existed = false;
    for (;;) {
        struct hutch_log_entry *e;
        size_t n;
        enum hutch_code code = hutch_sandbox_logs(client, id, start, limit, &e, &n);
        if (code == HUTCH_E_NOT_FOUND && existed)
            break; /* it ended */
        if (code != HUTCH_OK) {
            status = cli_fail(client, "logs", code);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (seen_before(&seen, &e[i]))
                continue;
            if (json) {
                json_t *j = entry_json(&e[i]);
                char *text = json_dumps(j, JSON_COMPACT);
                printf("%s\n", text ? text : "{}");
                free(text);
                json_decref(j);
            } else {
                print_text(&e[i]);
            }
            int64_t ms = stamp_ms(e[i].timestamp);
            if (ms > start + FOLLOW_OVERLAP_MS)
                start = ms - FOLLOW_OVERLAP_MS;
        }
        existed = true;
        hutch_log_entry_array_free(e, n);
        fflush(stdout);
        usleep(FOLLOW_INTERVAL_USEC);
    }
    for (size_t i = 0; i < FOLLOW_SEEN_MAX; i++)
        free(seen.keys[i]);
    return status;
}

static void print_json(const struct hutch_log_entry *e, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, entry_json(&e[i]));
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
        { "follow", no_argument, NULL, 'f' },
        CLI_CONN_OPTIONS,
        {},
    };
    struct cli_conn conn = { 0 };
    int64_t start = 0;
    uint32_t limit = 0;
    bool follow_on = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "fh", options, NULL)) >= 0) {
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
        case 'f':
            follow_on = true;
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
    if (follow_on) {
        int r = follow(client, argv[optind], start, limit, conn.json);
        hutch_client_free(client);
        return r;
    }
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
        for (size_t i = 0; i < n; i++)
            print_text(&e[i]);
    }
    hutch_log_entry_array_free(e, n);
    hutch_client_free(client);
    return 0;
}
