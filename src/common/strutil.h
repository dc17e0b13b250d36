/* String and number helpers that the banned functions would otherwise tempt. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Copies src into dst (size bytes, NUL-terminated). Returns 0, or -ENAMETOOLONG if src was
 * truncated. */
int str_copy(char *dst, size_t size, const char *src);

bool str_startswith(const char *s, const char *prefix);
bool str_endswith(const char *s, const char *suffix);

/* Strict decimal parsers: the whole string must be a number in range; no sign for unsigned,
 * no leading or trailing spaces. Return 0 and write *ret, or -EINVAL / -ERANGE. */
int parse_uint64(const char *s, uint64_t *ret);
int parse_int64(const char *s, int64_t *ret);
int parse_uint32(const char *s, uint32_t *ret);
int parse_int(const char *s, int *ret);

/* True when the len bytes at s are valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_is_valid(const char *s, size_t len);
