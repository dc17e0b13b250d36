/* The Hutchfile parser (src/client/hutchfile.c): every instruction, continuations, ARG
 * substitution, the exec form, errors with their line numbers, and the limits. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "hutch/hutch.h"
#include "tap.h"

static json_t *parse_args(const char *text, const struct hutch_kv *args, size_t n)
{
    char *spec = NULL;
    struct hutch_hutchfile_error err = { 0 };
    enum hutch_code code = hutch_hutchfile_parse(text, strlen(text), args, n, &spec, &err);
    if (code != HUTCH_OK)
        tap_fail(__FILE__, __LINE__, "parse failed: line %u: %s", err.line, err.message);
    json_t *j = json_loads(spec, 0, NULL);
    free(spec);
    ASSERT_TRUE(json_is_object(j));
    return j;
}

static json_t *parse(const char *text)
{
    return parse_args(text, NULL, 0);
}

/* Expects a failure with code at line, its message containing what. */
static void parse_fails(const char *text, size_t len, enum hutch_code code, unsigned line, const char *what)
{
    char *spec = NULL;
    struct hutch_hutchfile_error err = { 0 };
    ASSERT_EQ(hutch_hutchfile_parse(text, len, NULL, 0, &spec, &err), code);
    ASSERT_TRUE(spec == NULL);
    ASSERT_EQ(err.line, line);
    if (!strstr(err.message, what))
        tap_fail(__FILE__, __LINE__, "message \"%s\" does not contain \"%s\"", err.message, what);
}

static void fails(const char *text, unsigned line, const char *what)
{
    parse_fails(text, strlen(text), HUTCH_E_INVALID, line, what);
}

static json_t *step(json_t *spec, size_t i)
{
    json_t *s = json_array_get(json_object_get(spec, "steps"), i);
    ASSERT_TRUE(json_is_object(s));
    return s;
}

static const char *type(json_t *spec, size_t i)
{
    return json_string_value(json_object_get(step(spec, i), "type"));
}

static const char *arg(json_t *spec, size_t i, size_t k)
{
    return json_string_value(json_array_get(json_object_get(step(spec, i), "args"), k));
}

static size_t n_steps(json_t *spec)
{
    return json_array_size(json_object_get(spec, "steps"));
}

static size_t n_args(json_t *spec, size_t i)
{
    return json_array_size(json_object_get(step(spec, i), "args"));
}

static long long line_of(json_t *spec, size_t i)
{
    return json_integer_value(json_object_get(step(spec, i), "line"));
}

static const char *str(json_t *spec, const char *key)
{
    return json_string_value(json_object_get(spec, key));
}

static const char *warning(json_t *spec, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(spec, "warnings"), i), "message"));
}

TEST(every_instruction)
{
    json_t *s = parse("# a template\n"
                      "FROM base\n"
                      "ENV GREETING=hello\n"
                      "RUN apt-get update\n"
                      "COPY app /opt/app\n"
                      "WORKDIR /opt/app\n"
                      "USER user\n"
                      "START python3 -m http.server 8000\n"
                      "READY curl -s localhost:8000\n");
    ASSERT_STREQ(str(s, "fromTemplate"), "base");
    ASSERT_TRUE(json_object_get(s, "fromImage") == NULL);
    /* the prelude goes first once a RUN comes; USER and WORKDIR were given, so no postlude */
    ASSERT_EQ(n_steps(s), 7);
    ASSERT_STREQ(type(s, 0), "USER");
    ASSERT_STREQ(arg(s, 0, 0), "root");
    ASSERT_EQ(line_of(s, 0), 0);
    ASSERT_STREQ(type(s, 1), "WORKDIR");
    ASSERT_STREQ(arg(s, 1, 0), "/");
    ASSERT_STREQ(type(s, 2), "ENV");
    ASSERT_STREQ(arg(s, 2, 0), "GREETING");
    ASSERT_STREQ(arg(s, 2, 1), "hello");
    ASSERT_EQ(line_of(s, 2), 3);
    ASSERT_STREQ(type(s, 3), "RUN");
    ASSERT_STREQ(arg(s, 3, 0), "apt-get update");
    ASSERT_EQ(n_args(s, 3), 1);
    ASSERT_EQ(line_of(s, 3), 4);
    ASSERT_STREQ(type(s, 4), "COPY");
    ASSERT_EQ(n_args(s, 4), 4);
    ASSERT_STREQ(arg(s, 4, 0), "app");
    ASSERT_STREQ(arg(s, 4, 1), "/opt/app");
    ASSERT_STREQ(arg(s, 4, 2), "");
    ASSERT_STREQ(arg(s, 4, 3), "");
    ASSERT_TRUE(json_is_false(json_object_get(step(s, 4), "force")));
    ASSERT_STREQ(type(s, 5), "WORKDIR");
    ASSERT_STREQ(arg(s, 5, 0), "/opt/app");
    ASSERT_STREQ(type(s, 6), "USER");
    ASSERT_STREQ(arg(s, 6, 0), "user");
    ASSERT_STREQ(str(s, "startCmd"), "python3 -m http.server 8000");
    ASSERT_STREQ(str(s, "readyCmd"), "curl -s localhost:8000");
    ASSERT_EQ(json_array_size(json_object_get(s, "warnings")), 0);
    json_decref(s);
}

TEST(instructions_are_case_insensitive_and_the_postlude_restores_user_and_home)
{
    json_t *s = parse("from base\nrun true\n");
    ASSERT_EQ(n_steps(s), 5);
    ASSERT_STREQ(type(s, 2), "RUN");
    ASSERT_STREQ(type(s, 3), "USER");
    ASSERT_STREQ(arg(s, 3, 0), "user");
    ASSERT_STREQ(type(s, 4), "WORKDIR");
    ASSERT_STREQ(arg(s, 4, 0), "/home/user");
    json_decref(s);
    /* a USER before the first RUN stays after the prelude */
    s = parse("FROM base\nUSER user\nRUN whoami\n");
    ASSERT_EQ(n_steps(s), 5);
    ASSERT_STREQ(arg(s, 0, 0), "root");
    ASSERT_STREQ(type(s, 2), "USER");
    ASSERT_STREQ(arg(s, 2, 0), "user");
    ASSERT_STREQ(type(s, 3), "RUN");
    ASSERT_STREQ(type(s, 4), "WORKDIR");
    ASSERT_STREQ(arg(s, 4, 0), "/home/user");
    json_decref(s);
    /* no step that depends on the user: nothing added */
    s = parse("FROM base\nENV A=1\n");
    ASSERT_EQ(n_steps(s), 1);
    json_decref(s);
}

TEST(from_bases)
{
    static const struct {
        const char *from, *key, *value;
    } cases[] = {
        { "host", "fromTemplate", "base" },
        { "base", "fromTemplate", "base" },
        { "e2bdev/base", "fromTemplate", "base" },
        { "debian:bookworm", "fromImage", "debian:bookworm" },
        { "debian:12", "fromImage", "debian:bookworm" },
        { "ubuntu:22.04", "fromImage", "ubuntu:22.04" },
        { "ghcr.io/x/y:1", "fromImage", "ghcr.io/x/y:1" },
        { "template:mine", "fromTemplate", "mine" },
        { "mine:v2", "fromTemplate", "mine:v2" },
        { "./rootfs/alpine.tar.gz", "fromTarball", "rootfs/alpine.tar.gz" },
        { "rootfs.tar", "fromTarball", "rootfs.tar" },
        { "./a.tgz", "fromTarball", "a.tgz" },
        { "--platform=linux/amd64 base AS build", "fromTemplate", "base" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "FROM %s\n", cases[i].from);
        json_t *s = parse(text);
        ASSERT_STREQ(str(s, cases[i].key), cases[i].value);
        ASSERT_EQ(json_object_size(s), 3); /* the base, steps, warnings */
        json_decref(s);
    }
    fails("FROM ../outside.tar\n", 1, "leaves the context");
    fails("FROM /abs/rootfs.tar\n", 1, "absolute");
    fails("FROM ./dir\n", 1, "tarball ends in");
    fails("FROM template:\n", 1, "needs a template name");
    fails("FROM\n", 1, "needs a base");
    fails("FROM a b\n", 1, "one base");
    fails("FROM --squash base\n", 1, "unknown flag");
    fails("FROM base\nRUN true\nFROM base\n", 3, "multi-stage");
    fails("RUN true\n", 1, "before FROM");
    fails("# nothing\n\n", 0, "no FROM");
    fails("", 0, "no FROM");
}

TEST(comments_blank_lines_and_continuations)
{
    json_t *s = parse("\n"
                      "  # indented comment\n"
                      "FROM base\r\n"
                      "RUN apt-get update && \\\n"
                      "    # a comment inside is dropped\n"
                      "\n"
                      "    apt-get install -y \\   \n"
                      "      curl\n"
                      "RUN echo a\\\n"
                      "b\n"
                      "   ENV X=1 \\\n"
                      "       Y=2\n");
    ASSERT_STREQ(type(s, 2), "RUN");
    ASSERT_STREQ(arg(s, 2, 0), "apt-get update && apt-get install -y curl");
    ASSERT_EQ(line_of(s, 2), 4);
    ASSERT_STREQ(arg(s, 3, 0), "echo ab");
    ASSERT_EQ(line_of(s, 3), 9);
    ASSERT_STREQ(type(s, 4), "ENV");
    ASSERT_EQ(n_args(s, 4), 4);
    ASSERT_STREQ(arg(s, 4, 2), "Y");
    ASSERT_STREQ(arg(s, 4, 3), "2");
    ASSERT_EQ(line_of(s, 4), 11);
    json_decref(s);
    /* a continuation at the very end ends the instruction */
    s = parse("FROM base\nRUN true \\");
    ASSERT_STREQ(arg(s, 2, 0), "true");
    json_decref(s);
}

TEST(env_forms_and_quotes)
{
    json_t *s = parse("FROM base\n"
                      "ENV A=1 B=\"two words\" C='lit $A' D=x\\ y\n"
                      "ENV OLD the rest  of the line\n"
                      "ENV E=$A F=${B}! G=\"$A\" H='$A' I=\\$A J=$UNKNOWN\n"
                      "ENV PATH=/opt/bin:$PATH\n");
    ASSERT_STREQ(type(s, 0), "ENV");
    ASSERT_EQ(n_args(s, 0), 8);
    ASSERT_STREQ(arg(s, 0, 3), "two words");
    ASSERT_STREQ(arg(s, 0, 5), "lit $A");
    ASSERT_STREQ(arg(s, 0, 7), "x y");
    ASSERT_STREQ(arg(s, 1, 0), "OLD");
    ASSERT_STREQ(arg(s, 1, 1), "the rest  of the line");
    ASSERT_STREQ(arg(s, 2, 1), "1");
    ASSERT_STREQ(arg(s, 2, 3), "two words!");
    ASSERT_STREQ(arg(s, 2, 5), "1");
    ASSERT_STREQ(arg(s, 2, 7), "$A");
    ASSERT_STREQ(arg(s, 2, 9), "$A");
    ASSERT_STREQ(arg(s, 2, 11), "$UNKNOWN");
    ASSERT_STREQ(arg(s, 3, 1), "/opt/bin:$PATH");
    json_decref(s);
    fails("FROM base\nENV\n", 2, "needs an argument");
    fails("FROM base\nENV A=1 B\n", 2, "not NAME=VALUE");
    fails("FROM base\nENV 1A=x\n", 2, "not NAME=VALUE");
    fails("FROM base\nENV ONLY\n", 2, "needs a value");
    fails("FROM base\nENV A=\"open\n", 2, "unterminated double quote");
    fails("FROM base\nENV A='open\n", 2, "unterminated single quote");
}

TEST(arg_substitution_and_build_args)
{
    const char *text = "ARG BASE=base\n"
                       "FROM $BASE\n"
                       "ARG VERSION=1.0\n"
                       "ARG EMPTY\n"
                       "ARG DIR=/opt\n"
                       "RUN echo $VERSION ${VERSION} '$VERSION' \\$VERSION \"$VERSION\" [$EMPTY] $HOME\n"
                       "WORKDIR ${DIR}/app\n"
                       "COPY src-$VERSION $DIR/\n"
                       "ENV V=$VERSION\n"
                       "START serve --version=$VERSION\n";
    json_t *s = parse(text);
    ASSERT_STREQ(str(s, "fromTemplate"), "base");
    ASSERT_STREQ(arg(s, 2, 0), "echo 1.0 1.0 '$VERSION' \\$VERSION \"1.0\" [] $HOME");
    ASSERT_STREQ(arg(s, 3, 0), "/opt/app");
    ASSERT_STREQ(arg(s, 4, 0), "src-1.0");
    ASSERT_STREQ(arg(s, 4, 1), "/opt/");
    ASSERT_STREQ(arg(s, 5, 1), "1.0");
    ASSERT_STREQ(str(s, "startCmd"), "serve --version=1.0");
    json_decref(s);

    struct hutch_kv args[] = { { "VERSION", "2.5" }, { "BASE", "debian:bookworm" }, { "NOPE", "x" } };
    s = parse_args(text, args, 3);
    ASSERT_STREQ(str(s, "fromImage"), "debian:bookworm");
    ASSERT_STREQ(arg(s, 2, 0), "echo 2.5 2.5 '$VERSION' \\$VERSION \"2.5\" [] $HOME");
    ASSERT_STREQ(arg(s, 4, 0), "src-2.5");
    ASSERT_TRUE(strstr(warning(s, 0), "NOPE") != NULL);
    json_decref(s);

    /* an ENV of the same name is the shell's business in RUN, and wins over the ARG */
    s = parse("FROM base\nARG X=arg\nENV X=env\nARG X=again\nRUN echo $X\nWORKDIR /$X\n");
    ASSERT_STREQ(arg(s, 3, 0), "echo $X");
    ASSERT_STREQ(arg(s, 4, 0), "/env");
    json_decref(s);

    fails("FROM base\nARG\n", 2, "needs a name");
    fails("FROM base\nARG 9x=1\n", 2, "not a valid name");
    struct hutch_kv bad[] = { { "1BAD", "x" } };
    char *spec = NULL;
    struct hutch_hutchfile_error err = { 0 };
    ASSERT_EQ(hutch_hutchfile_parse("FROM base\n", 10, bad, 1, &spec, &err), HUTCH_E_INVALID);
    ASSERT_TRUE(strstr(err.message, "build argument") != NULL);
}

TEST(exec_forms)
{
    json_t *s = parse("FROM base\n"
                      "RUN [\"echo\", \"hello world\", \"it's\", \"$HOME\", \"\"]\n"
                      "RUN [not json\n"
                      "CMD [\"python3\", \"-m\", \"http.server\"]\n");
    ASSERT_STREQ(arg(s, 2, 0), "echo 'hello world' 'it'\\''s' '$HOME' ''");
    ASSERT_STREQ(arg(s, 3, 0), "[not json");
    ASSERT_STREQ(str(s, "startCmd"), "python3 -m http.server");
    ASSERT_STREQ(str(s, "readyCmd"), "sleep 20");
    json_decref(s);
    fails("FROM base\nRUN []\n", 2, "needs a command");
    fails("FROM base\nRUN --mount=type=cache,target=/x true\n", 2, "not supported");
    fails("FROM base\nRUN <<EOF\n", 2, "heredocs");
}

TEST(start_ready_cmd_entrypoint)
{
    /* CMD and ENTRYPOINT, as E2B's fromDockerfile: the start command, ready after 20 s */
    json_t *s = parse("FROM base\nENTRYPOINT /serve\n");
    ASSERT_STREQ(str(s, "startCmd"), "/serve");
    ASSERT_STREQ(str(s, "readyCmd"), "sleep 20");
    json_decref(s);
    /* READY wins, before or after */
    s = parse("FROM base\nREADY test -f /ok\nCMD /serve\n");
    ASSERT_STREQ(str(s, "readyCmd"), "test -f /ok");
    json_decref(s);
    s = parse("FROM base\nCMD /serve\nREADY test -f /ok\n");
    ASSERT_STREQ(str(s, "readyCmd"), "test -f /ok");
    json_decref(s);
    /* START has no ready command of its own; the last start command wins, with a warning */
    s = parse("FROM base\nCMD /a\nSTART /b\n");
    ASSERT_STREQ(str(s, "startCmd"), "/b");
    ASSERT_TRUE(json_object_get(s, "readyCmd") == NULL);
    ASSERT_TRUE(strstr(warning(s, 0), "line 2") != NULL);
    ASSERT_EQ(json_integer_value(json_object_get(json_array_get(json_object_get(s, "warnings"), 0), "line")),
              3);
    json_decref(s);
    s = parse("FROM base\nREADY [\"pgrep\", \"x\"]\n");
    ASSERT_TRUE(json_object_get(s, "startCmd") == NULL);
    ASSERT_STREQ(str(s, "readyCmd"), "pgrep x");
    json_decref(s);
    fails("FROM base\nSTART\n", 2, "needs an argument");
}

TEST(copy_and_add)
{
    json_t *s = parse("FROM base\n"
                      "COPY --chown=user:staff --chmod=0755 ./bin/tool /usr/local/bin/\n"
                      "ADD a b c/ /dest/\n"
                      "COPY [\"with space\", \"/d e/\"]\n"
                      "COPY . /app\n"
                      "COPY ./x//y/./ /z\n"
                      "COPY *.json /cfg/\n"
                      "COPY --link l /l\n");
    ASSERT_STREQ(type(s, 2), "COPY");
    ASSERT_STREQ(arg(s, 2, 0), "bin/tool");
    ASSERT_STREQ(arg(s, 2, 1), "/usr/local/bin/");
    ASSERT_STREQ(arg(s, 2, 2), "user");
    ASSERT_STREQ(arg(s, 2, 3), "0755");
    ASSERT_STREQ(arg(s, 3, 0), "a");
    ASSERT_STREQ(arg(s, 4, 0), "b");
    ASSERT_STREQ(arg(s, 5, 0), "c");
    ASSERT_STREQ(arg(s, 5, 1), "/dest/");
    ASSERT_EQ(line_of(s, 5), 3);
    ASSERT_STREQ(arg(s, 6, 0), "with space");
    ASSERT_STREQ(arg(s, 6, 1), "/d e/");
    ASSERT_STREQ(arg(s, 7, 0), ".");
    ASSERT_STREQ(arg(s, 8, 0), "x/y");
    ASSERT_STREQ(arg(s, 9, 0), "*.json");
    ASSERT_STREQ(arg(s, 10, 0), "l");
    ASSERT_TRUE(strstr(warning(s, 0), "--link") != NULL);
    json_decref(s);
    fails("FROM base\nCOPY only\n", 2, "a source and a destination");
    fails("FROM base\nCOPY a b /dest\n", 2, "ending in /");
    fails("FROM base\nCOPY ../secret /x\n", 2, "leaves the context");
    fails("FROM base\nCOPY a/../../secret /x\n", 2, "leaves the context");
    fails("FROM base\nCOPY /etc/passwd /x\n", 2, "absolute");
    fails("FROM base\nADD https://example.com/x.tar /x\n", 2, "only local files");
    fails("FROM base\nCOPY --from=build /a /b\n", 2, "multi-stage");
    fails("FROM base\nCOPY --chmod=999 a /b\n", 2, "octal");
    fails("FROM base\nCOPY --chown= a /b\n", 2, "needs a user");
    fails("FROM base\nCOPY --bogus a /b\n", 2, "unknown flag");
}

TEST(workdir_and_user)
{
    json_t *s = parse("FROM base\nWORKDIR \"/my dir\"\nUSER 1000:1000\n");
    /* an absolute WORKDIR needs no prelude */
    ASSERT_EQ(n_steps(s), 2);
    ASSERT_STREQ(arg(s, 0, 0), "/my dir");
    ASSERT_STREQ(arg(s, 1, 0), "1000:1000");
    json_decref(s);
    s = parse("FROM base\nWORKDIR rel\n");
    ASSERT_STREQ(arg(s, 0, 0), "root");
    ASSERT_STREQ(arg(s, 2, 0), "rel");
    ASSERT_STREQ(arg(s, 3, 0), "user"); /* USER was not given */
    json_decref(s);
    fails("FROM base\nUSER a b\n", 2, "one argument");
}

TEST(ignored_and_unknown_instructions)
{
    json_t *s = parse("FROM base\nEXPOSE 8080\nVOLUME /data\nLABEL a=b\nMAINTAINER me\n");
    ASSERT_EQ(json_array_size(json_object_get(s, "warnings")), 4);
    ASSERT_STREQ(warning(s, 0), "EXPOSE is ignored");
    ASSERT_EQ(json_integer_value(json_object_get(json_array_get(json_object_get(s, "warnings"), 2), "line")),
              4);
    ASSERT_EQ(n_steps(s), 0);
    json_decref(s);
    fails("FROM base\nRUN true\nFROBNICATE now\n", 3, "unknown instruction FROBNICATE");
    fails("FROM base\nSHELL [\"/bin/sh\"]\n", 2, "not supported");
    fails("FROM base\nONBUILD RUN x\n", 2, "not supported");
}

TEST(bad_bytes)
{
    static const char bad_utf8[] = "FROM base\nRUN \xff\n";
    static const char nul[] = "FROM base\n\nRUN a\0b\n";
    parse_fails(bad_utf8, sizeof(bad_utf8) - 1, HUTCH_E_INVALID, 2, "UTF-8");
    parse_fails(nul, sizeof(nul) - 1, HUTCH_E_INVALID, 3, "NUL");
    char *spec = NULL;
    ASSERT_EQ(hutch_hutchfile_parse(NULL, 0, NULL, 0, &spec, NULL), HUTCH_E_INVALID); /* no FROM */
    ASSERT_EQ(hutch_hutchfile_parse("FROM base", 9, NULL, 0, NULL, NULL), HUTCH_E_INVALID);
}

TEST(limits)
{
    /* the file */
    size_t big = HUTCH_HUTCHFILE_MAX_SIZE + 1;
    char *text = malloc(big);
    memset(text, '#', big);
    parse_fails(text, big, HUTCH_E_LIMIT, 0, "larger than");
    free(text);

    /* one line */
    size_t n = HUTCH_HUTCHFILE_MAX_LINE + 16;
    text = malloc(n + 100000);
    int off = snprintf(text, 32, "FROM base\nRUN ");
    memset(text + off, 'x', n);
    text[off + n] = '\n';
    parse_fails(text, (size_t)off + n + 1, HUTCH_E_LIMIT, 2, "longer than");
    /* one instruction of continued lines, each short */
    size_t pos = (size_t)off;
    for (int i = 0; i < 40; i++) {
        memset(text + pos, 'y', 2000);
        pos += 2000;
        memcpy(text + pos, "\\\n", 2);
        pos += 2;
    }
    text[pos++] = '\n';
    parse_fails(text, pos, HUTCH_E_LIMIT, 2, "longer than");
    free(text);

    /* steps: 256 are fine, 257 are not */
    char *many = malloc(16 * 300 + 32);
    pos = (size_t)snprintf(many, 32, "FROM base\n");
    for (int i = 0; i < HUTCH_HUTCHFILE_MAX_STEPS; i++)
        pos += (size_t)snprintf(many + pos, 16, "ENV A%d=1\n", i % 1000);
    char *spec = NULL;
    ASSERT_EQ(hutch_hutchfile_parse(many, pos, NULL, 0, &spec, NULL), HUTCH_OK);
    free(spec);
    pos += (size_t)snprintf(many + pos, 16, "ENV LAST=1\n");
    parse_fails(many, pos, HUTCH_E_LIMIT, HUTCH_HUTCHFILE_MAX_STEPS + 2, "build steps");
    free(many);

    /* substitution cannot blow a line up without bound */
    char *b = malloc(80 + 60000 + 200);
    pos = (size_t)snprintf(b, 80, "FROM base\nARG A=");
    memset(b + pos, 'v', 60000);
    pos += 60000;
    pos += (size_t)snprintf(b + pos, 200, "\nRUN $A$A$A$A$A$A$A$A$A$A\n");
    parse_fails(b, pos, HUTCH_E_LIMIT, 3, "after substitution");
    free(b);
}
