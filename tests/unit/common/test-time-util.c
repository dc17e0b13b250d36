#include "common/time-util.h"
#include "tap.h"

TEST(rfc3339)
{
    char b[40];
    format_rfc3339(0, b, sizeof(b));
    ASSERT_STREQ(b, "1970-01-01T00:00:00Z");
    format_rfc3339(1767225600, b, sizeof(b));
    ASSERT_STREQ(b, "2026-01-01T00:00:00Z");
    struct timespec ts = { .tv_sec = 1767225600, .tv_nsec = 5 };
    format_rfc3339_ns(&ts, b, sizeof(b));
    ASSERT_STREQ(b, "2026-01-01T00:00:00.000000005Z");
}

TEST(monotonic_advances)
{
    usec_t a = now_usec(CLOCK_MONOTONIC);
    usec_t b = now_usec(CLOCK_MONOTONIC);
    ASSERT_TRUE(b >= a);
}
