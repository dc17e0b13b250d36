/* Language-specific code run by interpd: see snippets.h. */
#include <string.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/json-util.h"
#include "common/xalloc.h"
#include "interpd/snippets.h"
#include "common/banned.h"

bool snippet_env_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 256 || (name[0] >= '0' && name[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

static char *vars_b64(const json_t *vars)
{
    size_t len;
    _cleanup_free_ char *j = json_dump_compact(vars, &len);
    return base64_encode(j, len, true);
}

static bool is_js(const char *language)
{
    return streq(language, "javascript") || streq(language, "typescript");
}

#define JS_DECODE                                                                                            \
    "JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(\"%s\"), (c) => c.charCodeAt(0))))"
#define JS_ENV                                                                                               \
    "(typeof Deno !== \"undefined\" ? { get: (k) => Deno.env.get(k), set: (k, v) => Deno.env.set(k, v), "    \
    "del: (k) => Deno.env.delete(k) } : { get: (k) => process.env[k], set: (k, v) => { process.env[k] = v; " \
    "}, del: (k) => { delete process.env[k]; } })"

/* A bash word that is exactly s: single quotes, with ' written as '\''. */
static void bash_quote(struct buf *b, const char *s)
{
    (void)buf_append_str(b, "'");
    for (; *s; s++) {
        if (*s == '\'')
            (void)buf_append_str(b, "'\\''");
        else
            (void)buf_append(b, s, 1);
    }
    (void)buf_append_str(b, "'");
}

static char *bash_env(const json_t *vars, bool save)
{
    struct buf b;
    buf_init(&b, 64 << 20);
    if (save)
        (void)buf_append_str(&b, "__hutch_env_restore=''\n");
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)vars, k, v) {
        if (save)
            (void)buf_printf(
                &b,
                "if [ -n \"${%s+x}\" ]; then __hutch_env_restore+=\"export %s=$(printf %%q \"$%s\");\"; "
                "else __hutch_env_restore+='unset %s;'; fi\n",
                k, k, k, k);
        (void)buf_printf(&b, "export %s=", k);
        bash_quote(&b, json_string_value(v) ? json_string_value(v) : "");
        (void)buf_append_str(&b, "\n");
    }
    return buf_steal(&b);
}

char *snippet_env_set(const char *language, const json_t *vars)
{
    if (streq(language, "bash"))
        return bash_env(vars, true);
    _cleanup_free_ char *b64 = vars_b64(vars);
    if (streq(language, "python"))
        return xasprintf(
            "(lambda os, new: (setattr(os, '_hutch_env_saved', {k: os.environ.get(k) for k in new}), "
            "os.environ.update(new)))(__import__('os'), "
            "__import__('json').loads(__import__('base64').b64decode('%s')))",
            b64);
    if (streq(language, "r"))
        return xasprintf(
            "invisible(local({new <- jsonlite::fromJSON(rawToChar(jsonlite::base64_dec(\"%s\"))); "
            "assign(\".hutch_env_saved\", Sys.getenv(names(new), unset = NA, names = TRUE), "
            "envir = globalenv()); do.call(Sys.setenv, new)}))",
            b64);
    if (is_js(language))
        return xasprintf(
            "{ const __n = " JS_DECODE "; const __e = " JS_ENV "; globalThis.__hutchEnvSaved = "
            "Object.fromEntries(Object.keys(__n).map((k) => [k, __e.get(k)])); for (const [k, v] of "
            "Object.entries(__n)) __e.set(k, v); }",
            b64);
    return NULL;
}

char *snippet_env_restore(const char *language)
{
    if (streq(language, "bash"))
        return xstrdup("eval \"$__hutch_env_restore\"; unset __hutch_env_restore\n");
    if (streq(language, "python"))
        return xstrdup("(lambda os: [os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v) "
                       "for k, v in os.__dict__.pop('_hutch_env_saved', {}).items()])(__import__('os'))");
    if (streq(language, "r"))
        return xstrdup("invisible(local({old <- get0(\".hutch_env_saved\", envir = globalenv(), ifnotfound = "
                       "character()); for (k in names(old)) { if (is.na(old[[k]])) Sys.unsetenv(k) else "
                       "do.call(Sys.setenv, stats::setNames(list(old[[k]]), k)) }; "
                       "if (exists(\".hutch_env_saved\", envir = globalenv())) rm(\".hutch_env_saved\", "
                       "envir = globalenv())}))");
    if (is_js(language))
        return xstrdup("{ const __e = " JS_ENV
                       "; for (const [k, v] of Object.entries(globalThis.__hutchEnvSaved "
                       "?? {})) { if (v === undefined) __e.del(k); else __e.set(k, v); } delete "
                       "globalThis.__hutchEnvSaved; }");
    return NULL;
}

char *snippet_env_apply(const char *language, const json_t *vars)
{
    if (streq(language, "bash"))
        return bash_env(vars, false);
    _cleanup_free_ char *b64 = vars_b64(vars);
    if (streq(language, "python"))
        return xasprintf("__import__('os').environ.update(__import__('json').loads(__import__('base64')."
                         "b64decode('%s')))",
                         b64);
    if (streq(language, "r"))
        return xasprintf(
            "invisible(do.call(Sys.setenv, jsonlite::fromJSON(rawToChar(jsonlite::base64_dec(\"%s\")))))",
            b64);
    if (is_js(language))
        return xasprintf("{ const __n = " JS_DECODE "; const __e = " JS_ENV
                         "; for (const [k, v] of Object.entries(__n)) __e.set(k, v); }",
                         b64);
    return NULL;
}

char *snippet_python_setup(const char *python_lib)
{
    _cleanup_json_ json_t *dir = json_pack("{s:s}", "d", python_lib);
    if (!dir)
        return NULL;
    _cleanup_free_ char *b64 = vars_b64(dir);
    /* The program runs with its own globals: nothing leaks into the user's namespace. */
    static const char program[] = "import base64, importlib.util, json, sys\n"
                                  "d = json.loads(base64.b64decode(B))['d']\n"
                                  "if d not in sys.path:\n"
                                  "    sys.path.insert(0, d)\n"
                                  "if importlib.util.find_spec('hutch_display') is not None:\n"
                                  "    import hutch_display\n"
                                  "    hutch_display.register()\n"
                                  "if importlib.util.find_spec('hutch_iostream') is not None:\n"
                                  "    import hutch_iostream\n"
                                  "    hutch_iostream.install()\n"
                                  "if importlib.util.find_spec('hutch_dispatch') is not None:\n"
                                  "    import hutch_dispatch\n"
                                  "    hutch_dispatch.install()\n";
    _cleanup_free_ char *prog64 = base64_encode(program, strlen(program), true);
    return xasprintf("exec(__import__('base64').b64decode('%s').decode(), {'B': '%s'})", prog64, b64);
}
