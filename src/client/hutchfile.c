/* libhutch: the Hutchfile parser. A Hutchfile is a Dockerfile subset (docs/user-guide.md,
 * "Templates"); hutch_hutchfile_parse() turns one into a build spec: the JSON body of E2B's
 * TemplateBuildStartV2 (e2b-compat §5.2) whose COPY steps are not hashed yet, plus keys only
 * the client reads (fromTarball, each step's line, warnings).
 *
 * Semantics follow E2B's fromDockerfile where it has some (CMD/ENTRYPOINT become the start
 * command with the ready command "sleep 20"; the steps run as root in / unless USER and
 * WORKDIR say otherwise, and the template ends as user in /home/user unless they did), and
 * Docker's otherwise (quotes, escapes, continuations, exec form, ARG).
 *
 * Invariant: the input is untrusted bytes (this is fuzzed). Everything the parser grows is
 * bounded (HUTCH_HUTCHFILE_MAX_* and the limits below), and a failure frees all it made. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "hutch/hutch.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/macro.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* Text after substitution and quoting may grow past what was written; this bounds it. */
#define MAX_EXPANDED (256u << 10)
#define MAX_VARS 1024
#define MAX_WARNINGS 256

struct var {
    char *name;
    char *value;
    bool is_env; /* ENV: the shell of a RUN sees it; ARG: only substitution does */
};

struct parser {
    struct hutch_hutchfile_error *err;
    enum hutch_code code;
    unsigned line; /* the first line of the instruction being parsed */
    json_t *spec;
    json_t *steps;
    json_t *warnings;
    struct var *vars;
    size_t n_vars;
    const struct hutch_kv *build_args;
    size_t n_build_args;
    bool *build_arg_used;
    bool have_from;
    bool prelude; /* the USER root / WORKDIR / steps were added */
    bool user_set;
    bool workdir_set;
    unsigned start_line;
    bool ready_set; /* by READY */
};

static int fail(struct parser *p, enum hutch_code code, const char *fmt, ...) _printf_(3, 4);

static int fail(struct parser *p, enum hutch_code code, const char *fmt, ...)
{
    p->code = code;
    if (p->err) {
        va_list ap;
        va_start(ap, fmt);
        p->err->line = p->line;
        vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void warn(struct parser *p, unsigned line, const char *fmt, ...) _printf_(3, 4);

static void warn(struct parser *p, unsigned line, const char *fmt, ...)
{
    if (json_array_size(p->warnings) >= MAX_WARNINGS)
        return;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    json_t *w = json_pack("{s:I, s:s?}", "line", (json_int_t)line, "message", msg);
    if (w)
        json_array_append_new(p->warnings, w);
}

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || !is_name_start(s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_name_char(s[i]))
            return false;
    return true;
}

static struct var *var_find(struct parser *p, const char *name, size_t n)
{
    for (size_t i = 0; i < p->n_vars; i++)
        if (strlen(p->vars[i].name) == n && memcmp(p->vars[i].name, name, n) == 0)
            return &p->vars[i];
    return NULL;
}

static int var_set(struct parser *p, const char *name, const char *value, bool is_env)
{
    struct var *v = var_find(p, name, strlen(name));
    if (!v) {
        if (p->n_vars >= MAX_VARS)
            return fail(p, HUTCH_E_LIMIT, "more than %d ARG and ENV names", MAX_VARS);
        p->vars = xreallocarray(p->vars, p->n_vars + 1, sizeof(*p->vars));
        v = &p->vars[p->n_vars++];
        v->name = xstrdup(name);
        v->value = NULL;
    }
    free(v->value);
    v->value = xstrdup(value);
    v->is_env = is_env;
    return 0;
}

static int append(struct parser *p, struct buf *b, const void *data, size_t len)
{
    if (buf_append(b, data, len) < 0)
        return fail(p, HUTCH_E_LIMIT, "longer than %u KiB after substitution", MAX_EXPANDED >> 10);
    return 0;
}

/* Appends the value of the variable reference at s (which starts with '$'), or the reference
 * itself when it names no variable the context knows; sets *used to the bytes it spans.
 * all_vars: ARG and ENV names (Dockerfile substitution); else ARG names only (the shell of a
 * RUN sees ENV names in its environment). */
static int expand_var(struct parser *p, struct buf *out, const char *s, bool all_vars, size_t *used)
{
    const char *name;
    size_t n, span;
    if (s[1] == '{') {
        const char *close = strchr(s + 2, '}');
        name = s + 2;
        n = close ? (size_t)(close - name) : 0;
        span = close ? n + 3 : 1;
        if (!close || !valid_name(name, n)) {
            *used = 1;
            return append(p, out, "$", 1);
        }
    } else {
        name = s + 1;
        n = 0;
        while (is_name_char(name[n]))
            n++;
        if (n == 0 || !is_name_start(name[0])) {
            *used = 1;
            return append(p, out, "$", 1);
        }
        span = n + 1;
    }
    *used = span;
    struct var *v = var_find(p, name, n);
    if (!v || (!all_vars && v->is_env))
        return append(p, out, s, span);
    return append(p, out, v->value, strlen(v->value));
}

static int push_word(struct parser *p, json_t *words, const struct buf *w)
{
    /* The text was checked to be UTF-8 and substitution only joins whole strings, but a
     * string jansson refuses must still fail cleanly. */
    json_t *s = json_stringn(w->data, w->len);
    if (!s)
        return fail(p, HUTCH_E_INVALID, "not valid UTF-8");
    json_array_append_new(words, s);
    return 0;
}

/* Docker's word processing of an instruction's arguments: whitespace separates words
 * (when split), '...' is literal, "..." keeps spaces and takes \" \\ \$ as escapes, a
 * backslash outside quotes escapes the next character, and $name / ${name} of an ARG or ENV
 * name are substituted. Returns a new JSON array of the words. */
static int process_words(struct parser *p, const char *s, bool split, json_t **ret)
{
    _cleanup_json_ json_t *words = json_array();
    struct buf w;
    buf_init(&w, MAX_EXPANDED);
    bool in_word = false;
    int r = 0;
    size_t i = 0;
    while (s[i] && r == 0) {
        char c = s[i];
        if (split && (c == ' ' || c == '\t')) {
            if (in_word) {
                r = push_word(p, words, &w);
                buf_reset(&w);
            }
            in_word = false;
            i++;
            continue;
        }
        in_word = true;
        if (c == '\'') {
            const char *close = strchr(s + i + 1, '\'');
            if (!close) {
                r = fail(p, HUTCH_E_INVALID, "unterminated single quote");
                break;
            }
            r = append(p, &w, s + i + 1, (size_t)(close - (s + i + 1)));
            i = (size_t)(close - s) + 1;
        } else if (c == '"') {
            i++;
            while (s[i] && s[i] != '"' && r == 0) {
                if (s[i] == '\\' && (s[i + 1] == '"' || s[i + 1] == '\\' || s[i + 1] == '$')) {
                    r = append(p, &w, s + i + 1, 1);
                    i += 2;
                } else if (s[i] == '$') {
                    size_t used;
                    r = expand_var(p, &w, s + i, true, &used);
                    i += used;
                } else {
                    r = append(p, &w, s + i, 1);
                    i++;
                }
            }
            if (r < 0)
                break;
            if (s[i] != '"') {
                r = fail(p, HUTCH_E_INVALID, "unterminated double quote");
                break;
            }
            i++;
        } else if (c == '\\' && s[i + 1]) {
            r = append(p, &w, s + i + 1, 1);
            i += 2;
        } else if (c == '$') {
            size_t used;
            r = expand_var(p, &w, s + i, true, &used);
            i += used;
        } else {
            r = append(p, &w, s + i, 1);
            i++;
        }
    }
    if (r == 0 && in_word)
        r = push_word(p, words, &w);
    buf_release(&w);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(words);
    return 0;
}

/* A shell command as written (RUN, START, READY, CMD, ENTRYPOINT): only ARG names are
 * substituted, where the shell would expand them (not inside '...' nor after a backslash);
 * everything else reaches the shell untouched. */
static int substitute_shell(struct parser *p, const char *s, char **ret)
{
    struct buf out;
    buf_init(&out, MAX_EXPANDED);
    bool in_double = false;
    int r = 0;
    size_t i = 0;
    while (s[i] && r == 0) {
        char c = s[i];
        if (c == '\\') {
            size_t n = s[i + 1] ? 2 : 1;
            r = append(p, &out, s + i, n);
            i += n;
        } else if (c == '\'' && !in_double) {
            const char *close = strchr(s + i + 1, '\'');
            size_t n = close ? (size_t)(close - (s + i)) + 1 : strlen(s + i);
            r = append(p, &out, s + i, n);
            i += n;
        } else if (c == '$') {
            size_t used;
            r = expand_var(p, &out, s + i, false, &used);
            i += used;
        } else {
            if (c == '"')
                in_double = !in_double;
            r = append(p, &out, s + i, 1);
            i++;
        }
    }
    if (r < 0) {
        buf_release(&out);
        return r;
    }
    *ret = buf_steal(&out);
    return 0;
}

/* Variables (ARG and ENV names) substituted in s, and nothing else: a word of an exec form. */
static int substitute_vars(struct parser *p, const char *s, char **ret)
{
    struct buf out;
    buf_init(&out, MAX_EXPANDED);
    int r = 0;
    for (size_t i = 0; s[i] && r == 0;) {
        if (s[i] == '$') {
            size_t used;
            r = expand_var(p, &out, s + i, true, &used);
            i += used;
        } else {
            r = append(p, &out, s + i, 1);
            i++;
        }
    }
    if (r < 0) {
        buf_release(&out);
        return r;
    }
    *ret = buf_steal(&out);
    return 0;
}

static bool shell_safe(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(is_name_char(*s) || strchr("@%+=:,./-", *s)))
            return false;
    return true;
}

/* The exec form (a JSON array of strings) as one shell command: each word quoted where it
 * needs to be, so that the shell passes exactly these words. *ret is NULL when s is not the
 * exec form (Docker then reads it as the shell form). */
static int exec_form(struct parser *p, const char *s, char **ret)
{
    *ret = NULL;
    if (s[0] != '[')
        return 0;
    _cleanup_json_ json_t *a = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_array(a))
        return 0;
    size_t i;
    json_t *v;
    json_array_foreach (a, i, v)
        if (!json_is_string(v) || memchr(json_string_value(v), '\0', json_string_length(v)))
            return 0;
    struct buf out;
    buf_init(&out, MAX_EXPANDED);
    int r = 0;
    json_array_foreach (a, i, v) {
        const char *w = json_string_value(v);
        if (i > 0)
            r = r ?: append(p, &out, " ", 1);
        if (shell_safe(w)) {
            r = r ?: append(p, &out, w, strlen(w));
            continue;
        }
        r = r ?: append(p, &out, "'", 1);
        for (const char *c = w; *c && r == 0; c++)
            r = *c == '\'' ? append(p, &out, "'\\''", 4) : append(p, &out, c, 1);
        r = r ?: append(p, &out, "'", 1);
    }
    if (r < 0) {
        buf_release(&out);
        return r;
    }
    *ret = buf_steal(&out);
    return 0;
}

/* A command in either form; an empty one is an error. */
static int command(struct parser *p, const char *kw, const char *args, char **ret)
{
    char *cmd;
    if (exec_form(p, args, &cmd) < 0)
        return -1;
    if (!cmd && substitute_shell(p, args, &cmd) < 0)
        return -1;
    if (!*cmd) {
        free(cmd);
        return fail(p, HUTCH_E_INVALID, "%s needs a command", kw);
    }
    *ret = cmd;
    return 0;
}

/* Adds a step at index (SIZE_MAX: at the end). own: made by an instruction of the Hutchfile
 * (its line is recorded), else added by the parser (line 0). */
static int insert_step(struct parser *p, size_t index, const char *type, json_t *args, bool own)
{
    /* The steps the parser adds count too: the limit is the server's (e2b-compat has none,
     * hutch serve takes 256). */
    if (json_array_size(p->steps) >= HUTCH_HUTCHFILE_MAX_STEPS) {
        json_decref(args);
        return fail(p, HUTCH_E_LIMIT, "more than %d build steps", HUTCH_HUTCHFILE_MAX_STEPS);
    }
    json_t *step = json_pack("{s:s, s:o, s:b, s:I}", "type", type, "args", args, "force", 0, "line",
                             (json_int_t)(own ? p->line : 0));
    if (!step)
        return fail(p, HUTCH_E_INVALID, "not valid UTF-8");
    if (index == SIZE_MAX)
        json_array_append_new(p->steps, step);
    else
        json_array_insert_new(p->steps, index, step);
    return 0;
}

static int add_step(struct parser *p, const char *type, json_t *args, bool own)
{
    return insert_step(p, SIZE_MAX, type, args, own);
}

static int add_step1(struct parser *p, const char *type, const char *arg, bool own)
{
    json_t *a = json_pack("[s]", arg);
    if (!a)
        return fail(p, HUTCH_E_INVALID, "not valid UTF-8");
    return add_step(p, type, a, own);
}

/* E2B's fromDockerfile runs the steps as root in / (Docker's defaults) and leaves the
 * template as user in /home/user unless USER or WORKDIR said otherwise. The prelude is added
 * once a step whose meaning depends on the user or directory comes, and goes first, before
 * any USER or WORKDIR of the Hutchfile (before only ENV steps, which do not care). */
static int need_prelude(struct parser *p)
{
    if (p->prelude)
        return 0;
    p->prelude = true;
    if (insert_step(p, 0, "USER", json_pack("[s]", "root"), false) < 0 ||
        insert_step(p, 1, "WORKDIR", json_pack("[s]", "/"), false) < 0)
        return -1;
    return 0;
}

/* A context-relative path from a COPY source or a tarball base: refused when absolute or
 * when it climbs out with "..". Returns it normalized ("./a//b/" is "a/b", "./" is "."). */
static int context_path(struct parser *p, const char *kw, const char *s, char **ret)
{
    if (!*s)
        return fail(p, HUTCH_E_INVALID, "%s: an empty path", kw);
    if (s[0] == '/')
        return fail(p, HUTCH_E_INVALID,
                    "%s %s: an absolute path; sources are relative to the context directory", kw, s);
    struct buf out;
    buf_init(&out, MAX_EXPANDED);
    const char *c = s;
    while (*c) {
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            buf_release(&out);
            return fail(p, HUTCH_E_INVALID, "%s %s: the path leaves the context directory", kw, s);
        }
        if (n > 0 && !(n == 1 && c[0] == '.')) {
            if (out.len)
                buf_append(&out, "/", 1);
            buf_append(&out, c, n);
        }
        c += n;
        while (*c == '/')
            c++;
    }
    if (!out.len)
        buf_append(&out, ".", 1);
    *ret = buf_steal(&out);
    return 0;
}

static bool is_tarball(const char *s)
{
    return str_endswith(s, ".tar") || str_endswith(s, ".tar.gz") || str_endswith(s, ".tgz");
}

/* Docker Hub images people write FROM with; a base named so is an image, not a template. */
static bool is_docker_image(const char *image)
{
    static const char *const official[] = {
        "debian",     "ubuntu",         "alpine",      "python",          "node",      "golang",
        "rust",       "fedora",         "centos",      "busybox",         "archlinux", "amazonlinux",
        "rockylinux", "almalinux",      "openjdk",     "eclipse-temurin", "ruby",      "php",
        "perl",       "buildpack-deps", "oraclelinux", "opensuse",
    };
    if (strchr(image, '/') || strchr(image, '@'))
        return true;
    size_t n = strcspn(image, ":");
    for (size_t i = 0; i < ARRAY_SIZE(official); i++)
        if (strlen(official[i]) == n && memcmp(official[i], image, n) == 0)
            return true;
    return false;
}

static int do_from(struct parser *p, const char *args)
{
    if (p->have_from)
        return fail(p, HUTCH_E_INVALID, "a second FROM: multi-stage builds are not supported");
    p->have_from = true;
    _cleanup_json_ json_t *w = NULL;
    if (process_words(p, args, true, &w) < 0)
        return -1;
    size_t i = 0, n = json_array_size(w);
    while (i < n && str_startswith(json_string_value(json_array_get(w, i)), "--")) {
        if (!str_startswith(json_string_value(json_array_get(w, i)), "--platform="))
            return fail(p, HUTCH_E_INVALID, "FROM: unknown flag %s", json_string_value(json_array_get(w, i)));
        warn(p, p->line, "FROM --platform is ignored");
        i++;
    }
    if (i >= n)
        return fail(p, HUTCH_E_INVALID, "FROM needs a base");
    const char *image = json_string_value(json_array_get(w, i));
    if (n - i == 3 && strcasecmp(json_string_value(json_array_get(w, i + 1)), "AS") == 0)
        n -= 2; /* a stage name means nothing with one stage */
    if (n - i != 1)
        return fail(p, HUTCH_E_INVALID, "FROM takes one base (and optionally AS name)");
    if (!*image)
        return fail(p, HUTCH_E_INVALID, "FROM needs a base");

    if (streq(image, "host") || streq(image, "base") || streq(image, "e2bdev/base") ||
        streq(image, "e2bdev/base:latest")) {
        json_object_set_new(p->spec, "fromTemplate", json_string("base"));
        return 0;
    }
    if (str_startswith(image, "template:")) {
        if (!image[9])
            return fail(p, HUTCH_E_INVALID, "FROM template: needs a template name");
        json_object_set_new(p->spec, "fromTemplate", json_string(image + 9));
        return 0;
    }
    if (str_startswith(image, "./") || str_startswith(image, "../") || image[0] == '/' ||
        (is_tarball(image) && !is_docker_image(image))) {
        if (!is_tarball(image))
            return fail(p, HUTCH_E_INVALID,
                        "FROM %s: a root filesystem tarball ends in .tar, .tar.gz or .tgz", image);
        _cleanup_free_ char *path = NULL;
        if (context_path(p, "FROM", image, &path) < 0)
            return -1;
        json_object_set_new(p->spec, "fromTarball", json_string(path));
        return 0;
    }
    if (streq(image, "debian:bookworm") || streq(image, "debian:12")) {
        json_object_set_new(p->spec, "fromImage", json_string("debian:bookworm"));
        return 0;
    }
    if (is_docker_image(image)) {
        json_object_set_new(p->spec, "fromImage", json_string(image));
        return 0;
    }
    json_object_set_new(p->spec, "fromTemplate", json_string(image));
    return 0;
}

static const struct hutch_kv *build_arg(struct parser *p, const char *name)
{
    for (size_t i = 0; i < p->n_build_args; i++)
        if (streq(p->build_args[i].key, name)) {
            p->build_arg_used[i] = true;
            return &p->build_args[i];
        }
    return NULL;
}

static int do_arg(struct parser *p, const char *args)
{
    _cleanup_json_ json_t *w = NULL;
    if (process_words(p, args, true, &w) < 0)
        return -1;
    if (json_array_size(w) == 0)
        return fail(p, HUTCH_E_INVALID, "ARG needs a name");
    size_t i;
    json_t *v;
    json_array_foreach (w, i, v) {
        const char *s = json_string_value(v);
        size_t n = strcspn(s, "=");
        if (!valid_name(s, n))
            return fail(p, HUTCH_E_INVALID, "ARG: '%.*s' is not a valid name", (int)MIN(n, 128u), s);
        _cleanup_free_ char *name = xstrndup(s, n);
        const struct hutch_kv *given = build_arg(p, name);
        struct var *old = var_find(p, name, n);
        if (old && old->is_env)
            continue; /* Docker: an ENV of the same name wins over an ARG */
        if (var_set(p, name, given ? given->value : s[n] == '=' ? s + n + 1 : "", false) < 0)
            return -1;
    }
    return 0;
}

static int do_env(struct parser *p, const char *args)
{
    _cleanup_json_ json_t *w = NULL;
    if (process_words(p, args, true, &w) < 0)
        return -1;
    if (json_array_size(w) == 0)
        return fail(p, HUTCH_E_INVALID, "ENV needs NAME=VALUE");
    const char *first = json_string_value(json_array_get(w, 0));
    json_t *kv = json_array();
    if (!strchr(first, '=')) {
        /* The old form: ENV NAME the rest of the line is the value */
        if (!valid_name(first, strlen(first))) {
            json_decref(kv);
            return fail(p, HUTCH_E_INVALID, "ENV: '%.128s' is not a valid name", first);
        }
        size_t skip = strcspn(args, " \t");
        skip += strspn(args + skip, " \t");
        if (!args[skip]) {
            json_decref(kv);
            return fail(p, HUTCH_E_INVALID, "ENV %.128s needs a value", first);
        }
        _cleanup_json_ json_t *value = NULL;
        if (process_words(p, args + skip, false, &value) < 0) {
            json_decref(kv);
            return -1;
        }
        const char *val = json_array_size(value) ? json_string_value(json_array_get(value, 0)) : "";
        json_array_append_new(kv, json_string(first));
        json_array_append_new(kv, json_string(val));
    } else {
        size_t i;
        json_t *v;
        json_array_foreach (w, i, v) {
            const char *s = json_string_value(v);
            size_t n = strcspn(s, "=");
            if (!s[n] || !valid_name(s, n)) {
                json_decref(kv);
                return fail(p, HUTCH_E_INVALID, "ENV: '%.128s' is not NAME=VALUE", s);
            }
            json_array_append_new(kv, json_stringn(s, n));
            json_array_append_new(kv, json_string(s + n + 1));
        }
    }
    /* Later lines see the new values (ENV A=1 B=$A uses the old A, as Docker does). */
    for (size_t i = 0; i + 1 < json_array_size(kv); i += 2)
        if (var_set(p, json_string_value(json_array_get(kv, i)), json_string_value(json_array_get(kv, i + 1)),
                    true) < 0) {
            json_decref(kv);
            return -1;
        }
    return add_step(p, "ENV", kv, true);
}

static int do_copy(struct parser *p, const char *kw, const char *args)
{
    _cleanup_free_ char *chown = NULL, *chmod = NULL;
    /* Flags come first, as in Docker. */
    while (str_startswith(args, "--")) {
        size_t n = strcspn(args, " \t");
        _cleanup_free_ char *flag = xstrndup(args, n);
        _cleanup_json_ json_t *fw = NULL;
        if (process_words(p, flag, false, &fw) < 0)
            return -1;
        const char *f = json_array_size(fw) ? json_string_value(json_array_get(fw, 0)) : "";
        if (str_startswith(f, "--chown=")) {
            const char *user = f + 8;
            if (!*user)
                return fail(p, HUTCH_E_INVALID, "%s --chown= needs a user", kw);
            free(chown);
            /* The group follows the user on the server, as E2B's COPY takes a user only. */
            chown = xstrndup(user, strcspn(user, ":"));
        } else if (str_startswith(f, "--chmod=")) {
            const char *m = f + 8;
            size_t len = strlen(m);
            if (len < 3 || len > 4 || strspn(m, "01234567") != len)
                return fail(p, HUTCH_E_INVALID, "%s --chmod=%.16s: the mode is 3 or 4 octal digits", kw, m);
            free(chmod);
            chmod = xstrdup(m);
        } else if (str_startswith(f, "--from=")) {
            return fail(p, HUTCH_E_INVALID, "%s --from: multi-stage builds are not supported", kw);
        } else if (streq(f, "--link")) {
            warn(p, p->line, "%s --link is ignored", kw);
        } else {
            return fail(p, HUTCH_E_INVALID, "%s: unknown flag %.64s", kw, f);
        }
        args += n;
        args += strspn(args, " \t");
    }
    _cleanup_json_ json_t *w = NULL;
    _cleanup_json_ json_t *ef = args[0] == '[' ? json_loads(args, JSON_REJECT_DUPLICATES, NULL) : NULL;
    bool exec = json_is_array(ef);
    size_t i;
    json_t *v;
    if (exec) {
        json_array_foreach (ef, i, v)
            if (!json_is_string(v) || memchr(json_string_value(v), '\0', json_string_length(v)))
                exec = false;
    }
    if (exec) {
        /* Each element is one word, taken literally but for variables (as Docker does). */
        w = json_array();
        json_array_foreach (ef, i, v) {
            _cleanup_free_ char *word = NULL;
            if (substitute_vars(p, json_string_value(v), &word) < 0)
                return -1;
            json_t *js = json_string(word);
            if (!js)
                return fail(p, HUTCH_E_INVALID, "not valid UTF-8");
            json_array_append_new(w, js);
        }
    } else if (process_words(p, args, true, &w) < 0) {
        return -1;
    }
    size_t n = json_array_size(w);
    if (n < 2)
        return fail(p, HUTCH_E_INVALID, "%s needs a source and a destination", kw);
    const char *dest = json_string_value(json_array_get(w, n - 1));
    if (!*dest)
        return fail(p, HUTCH_E_INVALID, "%s needs a destination", kw);
    if (n > 2 && !str_endswith(dest, "/"))
        return fail(p, HUTCH_E_INVALID, "%s with several sources needs a destination ending in /", kw);
    for (i = 0; i + 1 < n; i++) {
        const char *src = json_string_value(json_array_get(w, i));
        if (strstr(src, "://") || str_startswith(src, "git@"))
            return fail(p, HUTCH_E_INVALID, "%s %.256s: only local files can be copied (use RUN curl)", kw,
                        src);
        _cleanup_free_ char *path = NULL;
        if (context_path(p, kw, src, &path) < 0 || need_prelude(p) < 0)
            return -1;
        json_t *a = json_pack("[s, s, s, s]", path, dest, chown ? chown : "", chmod ? chmod : "");
        if (!a)
            return fail(p, HUTCH_E_INVALID, "not valid UTF-8");
        if (add_step(p, "COPY", a, true) < 0)
            return -1;
    }
    return 0;
}

static int do_single(struct parser *p, const char *kw, const char *args, bool split)
{
    _cleanup_json_ json_t *w = NULL;
    if (process_words(p, args, split, &w) < 0)
        return -1;
    if (json_array_size(w) != 1 || !*json_string_value(json_array_get(w, 0)))
        return fail(p, HUTCH_E_INVALID, "%s takes one argument", kw);
    const char *value = json_string_value(json_array_get(w, 0));
    if (streq(kw, "WORKDIR")) {
        if (value[0] != '/' && need_prelude(p) < 0)
            return -1;
        p->workdir_set = true;
    } else {
        p->user_set = true;
    }
    return add_step1(p, kw, value, true);
}

static int set_start(struct parser *p, const char *kw, const char *args, bool from_docker)
{
    _cleanup_free_ char *cmd = NULL;
    if (command(p, kw, args, &cmd) < 0)
        return -1;
    if (p->start_line)
        warn(p, p->line, "%s replaces the start command of line %u", kw, p->start_line);
    p->start_line = p->line;
    json_object_set_new(p->spec, "startCmd", json_string(cmd));
    /* E2B's fromDockerfile: CMD and ENTRYPOINT wait 20 s for the program to be ready; START
     * leaves it to READY or the server's default. */
    if (!p->ready_set) {
        if (from_docker)
            json_object_set_new(p->spec, "readyCmd", json_string("sleep 20"));
        else
            json_object_del(p->spec, "readyCmd");
    }
    return 0;
}

static int instruction(struct parser *p, const char *kw, const char *args)
{
    if (streq(kw, "FROM"))
        return do_from(p, args);
    if (streq(kw, "ARG"))
        return do_arg(p, args);
    static const char *const ignored[] = { "EXPOSE",     "VOLUME",     "LABEL",
                                           "MAINTAINER", "STOPSIGNAL", "HEALTHCHECK" };
    for (size_t i = 0; i < ARRAY_SIZE(ignored); i++)
        if (streq(kw, ignored[i])) {
            warn(p, p->line, "%s is ignored", kw);
            return 0;
        }
    static const char *const known[] = { "RUN",  "COPY",  "ADD",   "ENV", "WORKDIR",
                                         "USER", "START", "READY", "CMD", "ENTRYPOINT" };
    bool is_known = false;
    for (size_t i = 0; i < ARRAY_SIZE(known); i++)
        is_known |= streq(kw, known[i]);
    if (!is_known) {
        if (streq(kw, "SHELL") || streq(kw, "ONBUILD"))
            return fail(p, HUTCH_E_INVALID, "%s is not supported", kw);
        return fail(p, HUTCH_E_INVALID, "unknown instruction %.64s", kw);
    }
    if (!p->have_from)
        return fail(p, HUTCH_E_INVALID, "%s before FROM (only ARG may come before FROM)", kw);
    if (!*args)
        return fail(p, HUTCH_E_INVALID, "%s needs an argument", kw);
    if (streq(kw, "RUN")) {
        if (str_startswith(args, "--"))
            return fail(p, HUTCH_E_INVALID, "RUN flags (%.32s) are not supported", args);
        if (strstr(args, "<<") == args)
            return fail(p, HUTCH_E_INVALID, "RUN heredocs are not supported");
        _cleanup_free_ char *cmd = NULL;
        if (command(p, kw, args, &cmd) < 0 || need_prelude(p) < 0)
            return -1;
        return add_step1(p, "RUN", cmd, true);
    }
    if (streq(kw, "COPY") || streq(kw, "ADD"))
        return do_copy(p, kw, args);
    if (streq(kw, "ENV"))
        return do_env(p, args);
    if (streq(kw, "WORKDIR"))
        return do_single(p, kw, args, false);
    if (streq(kw, "USER"))
        return do_single(p, kw, args, true);
    if (streq(kw, "START"))
        return set_start(p, kw, args, false);
    if (streq(kw, "CMD") || streq(kw, "ENTRYPOINT"))
        return set_start(p, kw, args, true);
    /* READY */
    _cleanup_free_ char *cmd = NULL;
    if (command(p, kw, args, &cmd) < 0)
        return -1;
    p->ready_set = true;
    json_object_set_new(p->spec, "readyCmd", json_string(cmd));
    return 0;
}

/* Reads the next instruction from *pos: comments and blank lines skipped, continuation lines
 * (a trailing backslash) joined, leading and trailing blanks trimmed. *ret_got is false at
 * the end. Sets p->line to its first line. */
static int next_instruction(struct parser *p, const char *text, size_t len, size_t *pos, unsigned *lineno,
                            struct buf *out, bool *ret_got)
{
    buf_reset(out);
    bool cont = false;
    while (*pos < len) {
        const char *s = text + *pos;
        const char *nl = memchr(s, '\n', len - *pos);
        size_t n = nl ? (size_t)(nl - s) : len - *pos;
        *pos += n + (nl ? 1 : 0);
        (*lineno)++;
        if (!cont)
            p->line = *lineno;
        if (n > HUTCH_HUTCHFILE_MAX_LINE) {
            p->line = *lineno;
            return fail(p, HUTCH_E_LIMIT, "a line longer than %u KiB", HUTCH_HUTCHFILE_MAX_LINE >> 10);
        }
        if (n > 0 && s[n - 1] == '\r')
            n--;
        size_t i = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        /* Docker skips comments and blank lines inside a continuation too. */
        if (i == n || s[i] == '#')
            continue;
        size_t e = n;
        while (e > i && (s[e - 1] == ' ' || s[e - 1] == '\t'))
            e--;
        bool more = s[e - 1] == '\\';
        if (more)
            e--;
        if (buf_append(out, s + i, e - i) < 0)
            return fail(p, HUTCH_E_LIMIT, "an instruction longer than %u KiB",
                        HUTCH_HUTCHFILE_MAX_LINE >> 10);
        cont = true;
        if (!more)
            break;
    }
    while (out->len > 0 && (out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\t'))
        out->data[--out->len] = '\0';
    *ret_got = cont;
    return 0;
}

static int check_text(struct parser *p, const char *text, size_t len)
{
    if (len > HUTCH_HUTCHFILE_MAX_SIZE)
        return fail(p, HUTCH_E_LIMIT, "larger than %u KiB", HUTCH_HUTCHFILE_MAX_SIZE >> 10);
    const char *nul = memchr(text, '\0', len);
    size_t good = nul ? (size_t)(nul - text) : len;
    if (!nul && utf8_is_valid(text, len))
        return 0;
    /* Name the line of the first bad byte. */
    size_t hi = good;
    if (!nul) {
        /* The longest valid prefix, found line by line. */
        size_t start = 0;
        while (start < len) {
            const char *nl = memchr(text + start, '\n', len - start);
            size_t end = nl ? (size_t)(nl - text) : len;
            if (!utf8_is_valid(text + start, end - start))
                break;
            start = end + 1;
        }
        hi = MIN(start, len);
    }
    unsigned line = 1;
    for (size_t i = 0; i < hi; i++)
        line += text[i] == '\n';
    p->line = line;
    return fail(p, HUTCH_E_INVALID, nul ? "a NUL byte" : "not valid UTF-8");
}

static void parser_release(struct parser *p)
{
    for (size_t i = 0; i < p->n_vars; i++) {
        free(p->vars[i].name);
        free(p->vars[i].value);
    }
    free(p->vars);
    free(p->build_arg_used);
    json_decref(p->spec);
}

static int parse(struct parser *p, const char *text, size_t len)
{
    for (size_t i = 0; i < p->n_build_args; i++) {
        const char *k = p->build_args[i].key;
        if (!k || !valid_name(k, strlen(k)) || !p->build_args[i].value ||
            !utf8_is_valid(p->build_args[i].value, strlen(p->build_args[i].value)))
            return fail(p, HUTCH_E_INVALID, "build argument %.64s: not NAME=VALUE in UTF-8",
                        k ? k : "(null)");
    }
    if (check_text(p, text, len) < 0)
        return -1;
    size_t pos = 0;
    unsigned lineno = 0;
    struct buf ins;
    buf_init(&ins, HUTCH_HUTCHFILE_MAX_LINE);
    int r = 0;
    for (;;) {
        bool got = false;
        r = next_instruction(p, text, len, &pos, &lineno, &ins, &got);
        if (r < 0 || !got)
            break;
        size_t n = strcspn(ins.data, " \t");
        _cleanup_free_ char *kw = xstrndup(ins.data, n);
        for (char *c = kw; *c; c++)
            if (*c >= 'a' && *c <= 'z')
                *c = (char)(*c - 'a' + 'A');
        const char *args = ins.data + n;
        args += strspn(args, " \t");
        r = instruction(p, kw, args);
        if (r < 0)
            break;
    }
    buf_release(&ins);
    if (r < 0)
        return r;
    p->line = 0;
    if (!p->have_from)
        return fail(p, HUTCH_E_INVALID, "no FROM instruction");
    if (p->prelude) {
        if (!p->user_set && add_step1(p, "USER", "user", false) < 0)
            return -1;
        if (!p->workdir_set && add_step1(p, "WORKDIR", "/home/user", false) < 0)
            return -1;
    }
    for (size_t i = 0; i < p->n_build_args; i++)
        if (!p->build_arg_used[i])
            warn(p, 0, "build argument %s is not used (no ARG %s)", p->build_args[i].key,
                 p->build_args[i].key);
    return 0;
}

HUTCH_EXPORT enum hutch_code hutch_hutchfile_parse(const char *text, size_t len,
                                                   const struct hutch_kv *build_args, size_t n_build_args,
                                                   char **ret_spec, struct hutch_hutchfile_error *err)
{
    struct parser p = {
        .err = err,
        .code = HUTCH_OK,
        .build_args = build_args,
        .n_build_args = n_build_args,
    };
    if ((!text && len > 0) || !ret_spec || (n_build_args > 0 && !build_args)) {
        fail(&p, HUTCH_E_INVALID, "invalid arguments");
        return HUTCH_E_INVALID;
    }
    p.spec = json_object();
    p.steps = json_array();
    p.warnings = json_array();
    json_object_set_new(p.spec, "steps", p.steps);
    json_object_set_new(p.spec, "warnings", p.warnings);
    p.build_arg_used = n_build_args ? xcalloc(n_build_args, sizeof(bool)) : NULL;
    if (parse(&p, text ? text : "", len) < 0) {
        parser_release(&p);
        return p.code;
    }
    *ret_spec = json_dump_compact(p.spec, NULL);
    parser_release(&p);
    return HUTCH_OK;
}
