/* Bounded growable byte buffer (after curl's dynbuf). Every buffer has a maximum set at init:
 * appending past it fails with -ENOBUFS and leaves the contents unchanged, so a peer that
 * controls the size can never make hutch grow without bound. The data is always
 * NUL-terminated (the terminator is not counted in len). */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "common/macro.h"

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

void buf_init(struct buf *b, size_t max);
/* Frees the data; the buffer may be reused after buf_init(). */
void buf_release(struct buf *b);
/* Empties the buffer, keeping its allocation. */
void buf_reset(struct buf *b);

/* Return 0, or -ENOBUFS when the result would exceed b->max. */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) _printf_(2, 3);

/* Removes the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);

/* Hands the data to the caller (free() it); the buffer is left empty. Never NULL. */
char *buf_steal(struct buf *b);
