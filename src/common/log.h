/* Logging to stderr: levels, and either text lines or JSON lines (one object per line, for log
 * collectors). Library code does not log (CONVENTIONS); request handlers and mains do, once per
 * failure, with context. Thread-safe: each line is written with one write(). */
#pragma once

#include "common/macro.h"

enum log_level {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

enum log_format {
    LOG_FORMAT_TEXT,
    LOG_FORMAT_JSON,
};

/* Sets the process-wide threshold, format and the program name printed on each line.
 * `program` must outlive all logging (a string literal or argv[0]). */
void log_setup(const char *program, enum log_level level, enum log_format format);

/* Reads HUTCH_LOG_LEVEL (error|warn|info|debug) and HUTCH_LOG_FORMAT (text|json). Invalid
 * values are ignored with a warning. */
void log_setup_from_env(const char *program);

enum log_level log_get_level(void);

const char *log_level_to_string(enum log_level level);
/* Returns the level, or -EINVAL for an unknown name. */
int log_level_from_string(const char *s);
const char *log_format_to_string(enum log_format format);
int log_format_from_string(const char *s);

void log_emit(enum log_level level, const char *file, int line, const char *fmt, ...) _printf_(4, 5);

/* Logs with ": <strerror>" appended and returns -abs(errnum), for `return log_errno(r, ...)`. */
int log_emit_errno(enum log_level level, int errnum, const char *file, int line, const char *fmt, ...)
    _printf_(5, 6);

#define log_error(...) log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_emit(LOG_LEVEL_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_emit(LOG_LEVEL_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...)                                                                                       \
    do {                                                                                                     \
        if (log_get_level() >= LOG_LEVEL_DEBUG)                                                              \
            log_emit(LOG_LEVEL_DEBUG, __FILE__, __LINE__, __VA_ARGS__);                                      \
    } while (0)
#define log_error_errno(e, ...) log_emit_errno(LOG_LEVEL_ERROR, (e), __FILE__, __LINE__, __VA_ARGS__)
#define log_warn_errno(e, ...) log_emit_errno(LOG_LEVEL_WARN, (e), __FILE__, __LINE__, __VA_ARGS__)
