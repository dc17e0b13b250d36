/* Clock helpers. All durations in hutch are microseconds (usec_t) unless a name says otherwise. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef uint64_t usec_t;

#define USEC_PER_SEC ((usec_t)1000000)
#define USEC_PER_MSEC ((usec_t)1000)
#define USEC_INFINITY ((usec_t)UINT64_MAX)

usec_t now_usec(clockid_t clock);

/* Formats a UTC time as RFC 3339 with second precision ("2026-01-01T00:00:00Z"), as proto3
 * JSON Timestamps and the E2B API use. out must hold at least 21 bytes. */
void format_rfc3339(time_t t, char *out, size_t size);
/* The same with nanoseconds when non-zero ("...:00.123456789Z"); out >= 31 bytes. */
void format_rfc3339_ns(const struct timespec *ts, char *out, size_t size);
