/* hutch sandbox create|list|info|kill|pause|resume|timeout: the sandbox lifecycle through the
 * control plane, as tables for people or the server's JSON (--json) for scripts. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/macro.h"
#include "common/strutil.h"
#include "common/banned.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: hutch sandbox create [--template T] [--timeout S] [--env K=V]... [--metadata K=V]...\n"
               "       hutch sandbox list [--state running,paused] [--metadata K=V]... [--template T]\n"
               "       hutch sandbox info ID\n"
               "       hutch sandbox kill ID...\n"
               "       hutch sandbox pause ID\n"
               "       hutch sandbox resume ID [--timeout S]\n"
               "       hutch sandbox timeout ID S\n\n"
               "create prints the new sandbox's id (--json: the server's answer).\n" CLI_CONN_USAGE);
}

enum { OPT_TEMPLATE = CLI_OPT_FIRST_OWN, OPT_TIMEOUT, OPT_ENV, OPT_METADATA, OPT_STATE };

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static char *metadata_text(const struct hutch_sandbox_info *s)
{
    struct buf b;
    buf_init(&b, 1u << 20);
    for (size_t i = 0; i < s->n_metadata; i++)
        buf_printf(&b, "%s%s=%s", i ? "," : "", s->metadata[i].key, s->metadata[i].value);
    return buf_steal(&b);
}

static void print_json(const char *json)
{
    printf("%s\n", json ? json : "{}");
}

static int do_create(struct hutch_client *client, const struct cli_conn *conn,
                     const struct hutch_sandbox_create_options *opts)
{
    struct hutch_sandbox_info info = { 0 };
    enum hutch_code code = hutch_sandbox_create(client, opts, &info);
    if (code != HUTCH_OK)
        return cli_fail(client, "sandbox create", code);
    if (conn->json)
        print_json(info.json);
    else
        printf("%s\n", info.sandbox_id);
    hutch_sandbox_info_release(&info);
    return 0;
}

static int do_list(struct hutch_client *client, const struct cli_conn *conn,
                   const struct hutch_sandbox_list_options *opts)
{
    struct hutch_sandbox_info *items;
    size_t n;
    enum hutch_code code = hutch_sandbox_list(client, opts, &items, &n);
    if (code != HUTCH_OK)
        return cli_fail(client, "sandbox list", code);
    if (conn->json) {
        printf("[");
        for (size_t i = 0; i < n; i++)
            printf("%s%s", i ? "," : "", items[i].json);
        printf("]\n");
    } else {
        printf("%-22s  %-12s  %-8s  %-20s  %-20s  %s\n", "SANDBOX ID", "TEMPLATE", "STATE", "STARTED", "ENDS",
               "METADATA");
        for (size_t i = 0; i < n; i++) {
            _cleanup_free_ char *meta = metadata_text(&items[i]);
            printf("%-22s  %-12s  %-8s  %-20s  %-20s  %s\n", items[i].sandbox_id,
                   or_dash(items[i].alias ? items[i].alias : items[i].template_id), or_dash(items[i].state),
                   or_dash(items[i].started_at), or_dash(items[i].end_at), or_dash(meta));
        }
    }
    hutch_sandbox_info_array_free(items, n);
    return 0;
}

static int do_info(struct hutch_client *client, const struct cli_conn *conn, const char *id)
{
    struct hutch_sandbox_info s = { 0 };
    enum hutch_code code = hutch_sandbox_info(client, id, &s);
    if (code != HUTCH_OK)
        return cli_fail(client, "sandbox info", code);
    if (conn->json) {
        print_json(s.json);
    } else {
        _cleanup_free_ char *meta = metadata_text(&s);
        const char *alias = s.alias && !streq_ptr(s.alias, s.template_id) ? s.alias : NULL;
        printf("Sandbox ID:    %s\n"
               "Template:      %s%s%s%s\n"
               "State:         %s\n"
               "Started:       %s\n"
               "Ends:          %s\n"
               "CPUs:          %d\n"
               "Memory:        %d MiB\n"
               "Disk:          %d MiB\n"
               "envd version:  %s\n"
               "Metadata:      %s\n",
               s.sandbox_id, or_dash(s.template_id), alias ? " (" : "", alias ? alias : "", alias ? ")" : "",
               or_dash(s.state), or_dash(s.started_at), or_dash(s.end_at), s.cpu_count, s.memory_mb,
               s.disk_size_mb, or_dash(s.envd_version), or_dash(meta));
    }
    hutch_sandbox_info_release(&s);
    return 0;
}

/* kill, pause, resume, timeout: say what was done (JSON with --json). */
static void report(const struct cli_conn *conn, const char *id, const char *done)
{
    if (conn->json) {
        json_t *j = json_pack("{s:s, s:s}", "sandboxID", id, "result", done);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(j);
    } else {
        printf("%s %s\n", done, id);
    }
}

static bool parse_seconds(const char *arg, unsigned *ret)
{
    uint32_t v;
    if (parse_uint32(arg, &v) < 0 || v == 0) {
        fprintf(stderr, "hutch sandbox: '%s' is not a number of seconds\n", arg);
        return false;
    }
    *ret = v;
    return true;
}

int cmd_sandbox(int argc, char **argv)
{
    static const struct option options[] = {
        { "template", required_argument, NULL, OPT_TEMPLATE },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "env", required_argument, NULL, OPT_ENV },
        { "metadata", required_argument, NULL, OPT_METADATA },
        { "state", required_argument, NULL, OPT_STATE },
        CLI_CONN_OPTIONS,
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
    static const char *const verbs[] = { "create", "list",  "ls",     "info",   "kill",
                                         "rm",     "pause", "resume", "timeout" };
    bool known = false;
    for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
        known |= streq(verb, verbs[i]);
    if (!known) {
        fprintf(stderr, "hutch sandbox: unknown action '%s'\n", verb);
        usage(stderr);
        return 2;
    }
    if (streq(verb, "ls"))
        verb = "list";
    if (streq(verb, "rm"))
        verb = "kill";

    struct cli_conn conn = { 0 };
    struct hutch_sandbox_create_options create = { 0 };
    struct hutch_sandbox_list_options list = { 0 };
    _cleanup_free_ struct hutch_kv *env = NULL, *meta = NULL;
    size_t n_env = 0, n_meta = 0;
    bool has_template = false, has_timeout = false, has_state = false;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
        if (cli_conn_option(&conn, c, optarg))
            continue;
        switch (c) {
        case OPT_TEMPLATE:
            create.template_id = list.template_id = optarg;
            has_template = true;
            break;
        case OPT_TIMEOUT:
            if (!parse_seconds(optarg, &create.timeout_s))
                return 2;
            has_timeout = true;
            break;
        case OPT_ENV:
            if (!cli_kv_push("sandbox", optarg, &env, &n_env))
                return 2;
            break;
        case OPT_METADATA:
            if (!cli_kv_push("sandbox", optarg, &meta, &n_meta))
                return 2;
            break;
        case OPT_STATE:
            list.state = optarg;
            has_state = true;
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
    bool is_create = streq(verb, "create"), is_list = streq(verb, "list");
    bool wrong = (has_template && !is_create && !is_list) || (n_env && !is_create) ||
                 (n_meta && !is_create && !is_list) || (has_state && !is_list) ||
                 (has_timeout && !is_create && !streq(verb, "resume"));
    if (is_create || is_list)
        wrong |= rest != 0;
    else if (streq(verb, "timeout"))
        wrong |= rest != 2;
    else if (streq(verb, "kill"))
        wrong |= rest < 1;
    else
        wrong |= rest != 1;
    if (wrong) {
        fprintf(stderr, "hutch sandbox %s: wrong arguments\n", verb);
        usage(stderr);
        return 2;
    }
    unsigned seconds = 0;
    if (streq(verb, "timeout") && !parse_seconds(argv[optind + 1], &seconds))
        return 2;
    if (has_state) {
        for (const char *p = list.state; *p;) {
            size_t n = strcspn(p, ",");
            if (!((n == 7 && !strncmp(p, "running", 7)) || (n == 6 && !strncmp(p, "paused", 6)))) {
                fprintf(stderr,
                        "hutch sandbox list: --state takes running, paused or both, comma-separated\n");
                return 2;
            }
            p += n + (p[n] == ',');
        }
    }
    create.env = env;
    create.n_env = n_env;
    create.metadata = list.metadata = meta;
    create.n_metadata = list.n_metadata = n_meta;

    struct hutch_client *client = cli_client(&conn);
    if (!client)
        return 1;
    int status = 0;
    const char *id = rest > 0 ? argv[optind] : NULL;
    enum hutch_code code;
    if (is_create) {
        status = do_create(client, &conn, &create);
    } else if (is_list) {
        status = do_list(client, &conn, &list);
    } else if (streq(verb, "info")) {
        status = do_info(client, &conn, id);
    } else if (streq(verb, "kill")) {
        for (int i = optind; i < argc; i++) {
            code = hutch_sandbox_kill(client, argv[i]);
            if (code != HUTCH_OK)
                status = cli_fail(client, "sandbox kill", code);
            else
                report(&conn, argv[i], "killed");
        }
    } else if (streq(verb, "pause")) {
        code = hutch_sandbox_pause(client, id);
        if (code != HUTCH_OK)
            status = cli_fail(client, "sandbox pause", code);
        else
            report(&conn, id, "paused");
    } else if (streq(verb, "resume")) {
        code = hutch_sandbox_resume(client, id, create.timeout_s);
        if (code != HUTCH_OK)
            status = cli_fail(client, "sandbox resume", code);
        else
            report(&conn, id, "resumed");
    } else {
        code = hutch_sandbox_set_timeout(client, id, seconds);
        if (code != HUTCH_OK)
            status = cli_fail(client, "sandbox timeout", code);
        else
            report(&conn, id, "timeout set");
    }
    hutch_client_free(client);
    return status;
}
