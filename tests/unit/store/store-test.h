/* What the store's unit tests share: a store in the test's own scratch directory (removed by
 * the TAP runner once the test has ended). */
#pragma once

#include "store/store.h"
#include "tap.h"

static inline struct store *store_test_open(void)
{
    struct store *s;
    struct error_record e = { 0 };
    int r = store_open(tap_tmpdir(), &s, &e);
    if (r < 0)
        tap_fail(__FILE__, __LINE__, "store_open: %s", e.msg);
    return s;
}
