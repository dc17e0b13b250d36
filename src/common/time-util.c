/* See time-util.h. */
#include "common/time-util.h"

#include <stdio.h>

#include "common/banned.h"

usec_t now_usec(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (usec_t)ts.tv_sec * USEC_PER_SEC + (usec_t)ts.tv_nsec / 1000;
}

void format_rfc3339(time_t t, char *out, size_t size)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void format_rfc3339_ns(const struct timespec *ts, char *out, size_t size)
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    if (ts->tv_nsec == 0) {
        strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return;
    }
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%09ldZ", base, ts->tv_nsec);
}
