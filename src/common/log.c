/* See log.h. */
#include "common/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/banned.h"

static const char *log_program = "hutch";
static enum log_level log_threshold = LOG_LEVEL_INFO;
static enum log_format log_fmt = LOG_FORMAT_TEXT;

static const char *const level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

static const char *const format_names[] = {
    [LOG_FORMAT_TEXT] = "text",
    [LOG_FORMAT_JSON] = "json",
};

const char *log_level_to_string(enum log_level level)
{
    if ((size_t)level >= ARRAY_SIZE(level_names))
        return NULL;
    return level_names[level];
}

int log_level_from_string(const char *s)
{
    for (size_t i = 0; s && i < ARRAY_SIZE(level_names); i++)
        if (streq(s, level_names[i]))
            return (int)i;
    return -EINVAL;
}

const char *log_format_to_string(enum log_format format)
{
    if ((size_t)format >= ARRAY_SIZE(format_names))
        return NULL;
    return format_names[format];
}

int log_format_from_string(const char *s)
{
    for (size_t i = 0; s && i < ARRAY_SIZE(format_names); i++)
        if (streq(s, format_names[i]))
            return (int)i;
    return -EINVAL;
}

void log_setup(const char *program, enum log_level level, enum log_format format)
{
    if (program)
        log_program = program;
    log_threshold = level;
    log_fmt = format;
}

void log_setup_from_env(const char *program)
{
    if (program)
        log_program = program;
    const char *lv = getenv("HUTCH_LOG_LEVEL");
    const char *fm = getenv("HUTCH_LOG_FORMAT");
    if (lv) {
        int l = log_level_from_string(lv);
        if (l < 0)
            log_warn("ignoring HUTCH_LOG_LEVEL=%s (want error, warn, info or debug)", lv);
        else
            log_threshold = (enum log_level)l;
    }
    if (fm) {
        int f = log_format_from_string(fm);
        if (f < 0)
            log_warn("ignoring HUTCH_LOG_FORMAT=%s (want text or json)", fm);
        else
            log_fmt = (enum log_format)f;
    }
}

enum log_level log_get_level(void)
{
    return log_threshold;
}

static void write_line(const char *line, size_t len)
{
    /* One write per line, so lines from threads never interleave mid-line. */
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        line += n;
        len -= (size_t)n;
    }
}

static void emit(enum log_level level, const char *file, int line, const char *msg)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[64];
    snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));

    if (log_fmt == LOG_FORMAT_JSON) {
        char src[256];
        snprintf(src, sizeof(src), "%s:%d", file, line);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "ts", stamp, "level", level_names[level],
                              "program", log_program, "msg", msg, "src", src, "pid", (int)getpid());
        if (!o)
            o = json_pack("{s:s, s:s, s:s, s:s}", "ts", stamp, "level", level_names[level], "program",
                          log_program, "msg", "(message not valid UTF-8)");
        if (!o)
            return;
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(o);
        if (!s)
            return;
        size_t n = strlen(s);
        char *withnl = realloc(s, n + 2);
        if (!withnl) {
            free(s);
            return;
        }
        withnl[n] = '\n';
        withnl[n + 1] = '\0';
        write_line(withnl, n + 1);
        free(withnl);
        return;
    }

    char buf[4096];
    int n = snprintf(buf, sizeof(buf), "%s %s[%d] %s: %s\n", stamp, log_program, (int)getpid(),
                     level_names[level], msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(buf)) {
        n = sizeof(buf) - 1;
        buf[n - 1] = '\n';
    }
    write_line(buf, (size_t)n);
}

void log_emit(enum log_level level, const char *file, int line, const char *fmt, ...)
{
    if (level > log_threshold)
        return;
    int saved = errno;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, file, line, msg);
    errno = saved;
}

int log_emit_errno(enum log_level level, int errnum, const char *file, int line, const char *fmt, ...)
{
    errnum = abs(errnum);
    if (level > log_threshold)
        return -errnum;
    int saved = errno;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", errno_to_string(errnum));
    emit(level, file, line, msg);
    errno = saved;
    return -errnum;
}
