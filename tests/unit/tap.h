/* A small TAP test harness. Each TEST() runs in its own forked child, so a test that unshares,
 * loads seccomp or crashes cannot poison the next. A failed assertion prints both values and
 * fails only its test. A test calls SKIP("reason") to report itself skipped (exit code 77).
 *
 *   TEST(buf_grows) { ... ASSERT_EQ(b.len, 3u); ... }
 *
 * tap.c provides main(); a test file holds only tests. */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*tap_test_cb)(void);

void tap_register(const char *name, tap_test_cb fn);
_Noreturn void tap_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void tap_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An empty directory of the running test's own, removed once the test has ended. */
const char *tap_tmpdir(void);

#define TEST(name)                                                                                           \
    static void test_##name(void);                                                                           \
    __attribute__((constructor)) static void register_##name(void)                                           \
    {                                                                                                        \
        tap_register(#name, test_##name);                                                                    \
    }                                                                                                        \
    static void test_##name(void)

#define SKIP(...) tap_skip(__VA_ARGS__)

#define ASSERT_TRUE(e)                                                                                       \
    do {                                                                                                     \
        if (!(e))                                                                                            \
            tap_fail(__FILE__, __LINE__, "expected true: %s", #e);                                           \
    } while (0)

#define ASSERT_FALSE(e)                                                                                      \
    do {                                                                                                     \
        if (e)                                                                                               \
            tap_fail(__FILE__, __LINE__, "expected false: %s", #e);                                          \
    } while (0)

#define ASSERT_EQ(a, b)                                                                                      \
    do {                                                                                                     \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                                                     \
        if (a_ != b_)                                                                                        \
            tap_fail(__FILE__, __LINE__, "%s == %s: got %jd, expected %jd", #a, #b, a_, b_);                 \
    } while (0)

#define ASSERT_NE(a, b)                                                                                      \
    do {                                                                                                     \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                                                     \
        if (a_ == b_)                                                                                        \
            tap_fail(__FILE__, __LINE__, "%s != %s: both are %jd", #a, #b, a_);                              \
    } while (0)

#define ASSERT_GE(a, b)                                                                                      \
    do {                                                                                                     \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                                                     \
        if (a_ < b_)                                                                                         \
            tap_fail(__FILE__, __LINE__, "%s >= %s: got %jd < %jd", #a, #b, a_, b_);                         \
    } while (0)

/* r >= 0, the success of the -errno convention; prints the errno name on failure. */
#define ASSERT_OK(r)                                                                                         \
    do {                                                                                                     \
        intmax_t r_ = (intmax_t)(r);                                                                         \
        if (r_ < 0)                                                                                          \
            tap_fail(__FILE__, __LINE__, "%s: got %jd (%s), expected >= 0", #r, r_, strerror((int)-r_));     \
    } while (0)

#define ASSERT_STREQ(a, b)                                                                                   \
    do {                                                                                                     \
        const char *a_ = (a), *b_ = (b);                                                                     \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                               \
            tap_fail(__FILE__, __LINE__, "%s == %s: got \"%s\", expected \"%s\"", #a, #b,                    \
                     a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                                \
    } while (0)

#define ASSERT_MEMEQ(a, b, n)                                                                                \
    do {                                                                                                     \
        if (memcmp((a), (b), (n)) != 0)                                                                      \
            tap_fail(__FILE__, __LINE__, "%s and %s differ in their first %zu bytes", #a, #b, (size_t)(n));  \
    } while (0)
