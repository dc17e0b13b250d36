/* Allocation that never returns NULL: running out of memory aborts the process (CONVENTIONS:
 * "abort on out-of-memory"), so callers never carry an OOM error path. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "common/macro.h"

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *ptr, size_t size);
/* Grows an array of n elements of size bytes each; aborts on multiplication overflow. */
void *xreallocarray(void *ptr, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) _printf_(1, 2);
char *xvasprintf(const char *fmt, va_list ap) _printf_(1, 0);
