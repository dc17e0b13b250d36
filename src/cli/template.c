/* hutch template build|list|delete: templates from Hutchfiles through libhutch, which speaks
 * E2B's template build API; the build's log streams to stdout as it comes, with the current
 * step on the terminal's last line when stderr is one. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/macro.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: hutch template build [-f HUTCHFILE] [--context DIR] [--name NAME[:TAG]] [--build-arg "
            "K=V]...\n"
            "                            [--cpu N] [--memory-mb N] [--force] [--quiet] [--dry-run]\n"
            "       hutch template list\n"
            "       hutch template delete ID|NAME...\n\n"
            "build reads HUTCHFILE (default DIR/Hutchfile, else ./Hutchfile; - is stdin); COPY sources are\n"
            "taken from DIR (default: the Hutchfile's directory). The name defaults to DIR's name. The\n"
            "build's log goes to stdout (stderr with --json; --quiet hides it); a failed build exits 1.\n"
            "--dry-run prints the build spec the Hutchfile makes and contacts no server.\n" CLI_CONN_USAGE);
}

enum {
    OPT_CONTEXT = CLI_OPT_FIRST_OWN,
    OPT_NAME,
    OPT_BUILD_ARG,
    OPT_CPU,
    OPT_MEMORY,
    OPT_QUIET,
    OPT_FORCE,
    OPT_DRY_RUN,
};

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static char *names_text(char **names, size_t n)
{
    struct buf b;
    buf_init(&b, 1u << 20);
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s%s", i ? "," : "", names[i]);
    return buf_steal(&b);
}

/* Reads all of fd, at most max bytes plus one (so that the parser reports the limit). */
static int read_all(int fd, size_t max, struct buf *out)
{
    buf_init(out, max + 1);
    char chunk[65536];
    for (;;) {
        ssize_t k = read(fd, chunk, sizeof(chunk));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return 0;
        if (buf_append(out, chunk, MIN((size_t)k, out->max - out->len)) < 0 || out->len > max)
            return 0;
    }
}

/* A template name from a directory's name: lowercase letters, digits, '-' and '_'. */
static char *name_from_dir(const char *dir)
{
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return NULL;
    const char *base = strrchr(real, '/');
    base = base && base[1] ? base + 1 : "template";
    /* The server's names start with a letter or digit. */
    while (*base && !((*base >= 'a' && *base <= 'z') || (*base >= 'A' && *base <= 'Z') ||
                      (*base >= '0' && *base <= '9')))
        base++;
    char *name = xstrdup(*base ? base : "template");
    for (char *c = name; *c; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
        else if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
            *c = '-';
    }
    return name;
}

struct progress {
    bool quiet;
    bool json; /* the log goes to stderr, leaving stdout to the result */
    bool tty;  /* stderr is a terminal: keep the current step on its last line */
    bool status_shown;
    const json_t *steps;
    size_t total;
    char *current;
};

static void status_clear(struct progress *p)
{
    if (p->status_shown) {
        fputs("\r\033[K", stderr);
        p->status_shown = false;
    }
}

/* "RUN apt-get install…" for step n (1-based) of the spec. */
/* "RUN apt-get install…" for step n (1-based) of the spec, NULL for a named step ("base");
 * *ret_line (when not NULL) is its Hutchfile line, 0 for a step the parser added. */
static char *step_text(const json_t *steps, const char *step, long long *ret_line)
{
    uint32_t n;
    if (!step || parse_uint32(step, &n) < 0 || n == 0 || n > json_array_size(steps))
        return NULL;
    const json_t *s = json_array_get(steps, n - 1);
    const char *type = json_string_value(json_object_get(s, "type"));
    const char *arg = json_string_value(json_array_get(json_object_get(s, "args"), 0));
    if (ret_line)
        *ret_line = (long long)json_integer_value(json_object_get(s, "line"));
    return xasprintf("%s %.60s%s", type ? type : "?", arg ? arg : "", arg && strlen(arg) > 60 ? "..." : "");
}

static void status_show(struct progress *p)
{
    if (!p->tty || p->quiet || !p->current)
        return;
    uint32_t n;
    _cleanup_free_ char *what = step_text(p->steps, p->current, NULL);
    if (parse_uint32(p->current, &n) == 0 && what)
        fprintf(stderr, "\r\033[K\033[1mstep %u/%zu\033[0m %s", n, p->total, what);
    else
        fprintf(stderr, "\r\033[K\033[1m%s\033[0m", p->current);
    p->status_shown = true;
    fflush(stderr);
}

static int on_log(void *userdata, const struct hutch_build_log *e)
{
    struct progress *p = userdata;
    if (e->step && !streq_ptr(e->step, p->current)) {
        free(p->current);
        p->current = xstrdup(e->step);
    }
    if (p->quiet)
        return 0;
    FILE *out = p->json ? stderr : stdout;
    status_clear(p);
    if (e->step)
        fprintf(out, "[%s] %s\n", e->step, e->message);
    else
        fprintf(out, "%s\n", e->message);
    fflush(out);
    status_show(p);
    return 0;
}

struct build_args {
    const char *file;
    const char *context;
    const char *name;
    struct hutch_kv *build_args;
    size_t n_build_args;
    struct hutch_template_build_options opts;
    bool quiet;
    bool dry_run;
};

static int do_build(struct hutch_client *client, const struct cli_conn *conn, struct build_args *a)
{
    /* The file and the context default to each other's place, as docker build's do. */
    _cleanup_free_ char *file = NULL, *context = NULL;
    if (a->file)
        file = xstrdup(a->file);
    else if (a->context)
        file = xasprintf("%s/Hutchfile", a->context);
    else
        file = xstrdup("Hutchfile");
    if (a->context) {
        context = xstrdup(a->context);
    } else if (streq(file, "-")) {
        context = xstrdup(".");
    } else {
        _cleanup_free_ char *copy = xstrdup(file);
        context = xstrdup(dirname(copy));
    }
    const char *shown = streq(file, "-") ? "<stdin>" : file;

    _cleanup_close_ int fd =
        streq(file, "-") ? dup(STDIN_FILENO) : open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "hutch template build: %s: %s\n", shown, strerror(errno));
        return 1;
    }
    struct buf text;
    int r = read_all(fd, HUTCH_HUTCHFILE_MAX_SIZE, &text);
    if (r < 0) {
        fprintf(stderr, "hutch template build: %s: %s\n", shown, strerror(-r));
        buf_release(&text);
        return 1;
    }
    char *spec = NULL;
    struct hutch_hutchfile_error err = { 0 };
    enum hutch_code code =
        hutch_hutchfile_parse(text.data, text.len, a->build_args, a->n_build_args, &spec, &err);
    buf_release(&text);
    if (code != HUTCH_OK) {
        if (err.line)
            fprintf(stderr, "hutch template build: %s:%u: %s\n", shown, err.line, err.message);
        else
            fprintf(stderr, "hutch template build: %s: %s\n", shown, err.message);
        return 1;
    }
    _cleanup_json_ json_t *parsed = json_loads(spec, 0, NULL);
    size_t i;
    json_t *w;
    json_array_foreach (json_object_get(parsed, "warnings"), i, w) {
        json_int_t line = json_integer_value(json_object_get(w, "line"));
        const char *msg = json_string_value(json_object_get(w, "message"));
        if (line > 0)
            fprintf(stderr, "%s:%lld: warning: %s\n", shown, (long long)line, msg ? msg : "");
        else
            fprintf(stderr, "%s: warning: %s\n", shown, msg ? msg : "");
    }

    if (a->dry_run) {
        printf("%s\n", spec);
        free(spec);
        return 0;
    }
    _cleanup_free_ char *name = a->name ? xstrdup(a->name) : name_from_dir(context);
    if (!name) {
        fprintf(stderr, "hutch template build: %s: %s\n", context, strerror(errno));
        free(spec);
        return 1;
    }
    struct progress p = {
        .quiet = a->quiet,
        .json = conn->json,
        .tty = isatty(STDERR_FILENO),
        .steps = json_object_get(parsed, "steps"),
        .total = json_array_size(json_object_get(parsed, "steps")),
    };
    a->opts.context_dir = context;
    a->opts.on_log = on_log;
    a->opts.userdata = &p;
    struct hutch_template_build_result res = { 0 };
    code = hutch_template_build(client, name, spec, &a->opts, &res);
    free(spec);
    status_clear(&p);
    free(p.current);
    if (code != HUTCH_OK)
        return cli_fail(client, "template build", code);
    _cleanup_free_ char *names = names_text(res.names, res.n_names);
    int status = 0;
    if (conn->json) {
        json_t *names_json = json_array();
        for (size_t k = 0; k < res.n_names; k++)
            json_array_append_new(names_json, json_string(res.names[k]));
        json_t *j = json_pack("{s:s, s:s, s:o, s:s, s:s?, s:s?}", "templateID", res.template_id, "buildID",
                              res.build_id, "names", names_json, "status", res.ready ? "ready" : "error",
                              "reason", res.reason, "step", res.reason_step);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(j);
    } else if (res.ready) {
        printf("template %s ready: %s\n", res.template_id, or_dash(names));
    }
    if (!res.ready) {
        /* hutch template build: Hutchfile:7: step 4/9 (RUN make) failed: exited with code 2 */
        long long line = 0;
        _cleanup_free_ char *what = step_text(p.steps, res.reason_step, &line);
        _cleanup_free_ char *where = line > 0 ? xasprintf("%s:%lld: ", shown, line) : xstrdup("");
        if (what)
            fprintf(stderr, "hutch template build: %sstep %s/%zu (%s) failed: %s\n", where, res.reason_step,
                    p.total, what, res.reason);
        else if (res.reason_step && *res.reason_step)
            fprintf(stderr, "hutch template build: step %s failed: %s\n", res.reason_step, res.reason);
        else
            fprintf(stderr, "hutch template build: the build failed: %s\n", res.reason);
        status = 1;
    }
    hutch_template_build_result_release(&res);
    return status;
}

static int do_list(struct hutch_client *client, const struct cli_conn *conn)
{
    struct hutch_template_info *items;
    size_t n;
    enum hutch_code code = hutch_template_list(client, &items, &n);
    if (code != HUTCH_OK)
        return cli_fail(client, "template list", code);
    if (conn->json) {
        printf("[");
        for (size_t i = 0; i < n; i++)
            printf("%s%s", i ? "," : "", items[i].json);
        printf("]\n");
    } else {
        printf("%-22s  %-30s  %-8s  %3s  %8s  %s\n", "ID", "NAMES", "STATUS", "CPU", "MEMORY", "CREATED");
        for (size_t i = 0; i < n; i++) {
            _cleanup_free_ char *names = names_text(items[i].names, items[i].n_names);
            char mem[32] = "-";
            if (items[i].memory_mb)
                snprintf(mem, sizeof(mem), "%d MiB", items[i].memory_mb);
            printf("%-22s  %-30s  %-8s  %3d  %8s  %s\n", or_dash(items[i].template_id), or_dash(names),
                   or_dash(items[i].build_status), items[i].cpu_count, mem, or_dash(items[i].created_at));
        }
    }
    hutch_template_info_array_free(items, n);
    return 0;
}

static bool parse_count(const char *what, const char *arg, unsigned *ret)
{
    uint32_t v;
    if (parse_uint32(arg, &v) < 0 || v == 0) {
        fprintf(stderr, "hutch template build: %s '%s' is not a positive number\n", what, arg);
        return false;
    }
    *ret = v;
    return true;
}

int cmd_template(int argc, char **argv)
{
    static const struct option options[] = {
        { "file", required_argument, NULL, 'f' },
        { "context", required_argument, NULL, OPT_CONTEXT },
        { "name", required_argument, NULL, OPT_NAME },
        { "build-arg", required_argument, NULL, OPT_BUILD_ARG },
        { "cpu", required_argument, NULL, OPT_CPU },
        { "memory-mb", required_argument, NULL, OPT_MEMORY },
        { "quiet", no_argument, NULL, OPT_QUIET },
        { "force", no_argument, NULL, OPT_FORCE },
        { "dry-run", no_argument, NULL, OPT_DRY_RUN },
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
    if (streq(verb, "ls"))
        verb = "list";
    if (streq(verb, "rm"))
        verb = "delete";
    if (!streq(verb, "build") && !streq(verb, "list") && !streq(verb, "delete")) {
        fprintf(stderr, "hutch template: unknown action '%s'\n", verb);
        usage(stderr);
        return 2;
    }
    struct cli_conn conn = { 0 };
    struct build_args b = { 0 };
    _cleanup_free_ struct hutch_kv *kv = NULL;
    bool build_only = false;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "hf:q", options, NULL)) >= 0) {
        if (cli_conn_option(&conn, c, optarg))
            continue;
        switch (c) {
        case 'f':
            b.file = optarg;
            break;
        case OPT_CONTEXT:
            b.context = optarg;
            break;
        case OPT_NAME:
            b.name = optarg;
            break;
        case OPT_BUILD_ARG:
            if (!cli_kv_push("template build", optarg, &kv, &b.n_build_args))
                return 2;
            break;
        case OPT_CPU:
            if (!parse_count("--cpu", optarg, &b.opts.cpu_count))
                return 2;
            break;
        case OPT_MEMORY:
            if (!parse_count("--memory-mb", optarg, &b.opts.memory_mb))
                return 2;
            break;
        case 'q':
        case OPT_QUIET:
            b.quiet = true;
            break;
        case OPT_FORCE:
            b.opts.force = true;
            break;
        case OPT_DRY_RUN:
            b.dry_run = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (c != 'h')
            build_only = true;
    }
    b.build_args = kv;
    int rest = argc - optind;
    bool is_build = streq(verb, "build");
    bool wrong = (build_only && !is_build) || (is_build && rest != 0) || (streq(verb, "list") && rest != 0) ||
                 (streq(verb, "delete") && rest < 1);
    if (wrong) {
        fprintf(stderr, "hutch template %s: wrong arguments\n", verb);
        usage(stderr);
        return 2;
    }
    if (is_build && b.dry_run)
        return do_build(NULL, &conn, &b);
    struct hutch_client *client = cli_client(&conn);
    if (!client)
        return 1;
    int status = 0;
    if (is_build) {
        status = do_build(client, &conn, &b);
    } else if (streq(verb, "list")) {
        status = do_list(client, &conn);
    } else {
        for (int i = optind; i < argc; i++) {
            enum hutch_code code = hutch_template_delete(client, argv[i]);
            if (code != HUTCH_OK) {
                status = cli_fail(client, "template delete", code);
                continue;
            }
            if (conn.json) {
                json_t *j = json_pack("{s:s, s:s}", "template", argv[i], "result", "deleted");
                char *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
                printf("%s\n", out ? out : "{}");
                free(out);
                json_decref(j);
            } else
                printf("deleted %s\n", argv[i]);
        }
    }
    hutch_client_free(client);
    return status;
}
