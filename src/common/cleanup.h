/* Scope-bound cleanup (after systemd): a variable declared with one of these attributes is
 * released when it goes out of scope, and TAKE_PTR / TAKE_FD hand ownership on without a
 * double release. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void freep(void *p)
{
    free(*(void **)p);
}

/* Closes fd unless negative, keeping errno intact; always returns -1 so that
 * `fd = safe_close(fd);` leaves fd invalid. */
static inline int safe_close(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return -1;
}

static inline void closep(int *fd)
{
    safe_close(*fd);
}

static inline void fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Defines `name##p(type **)` calling `func(*p)` when *p is not NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                              \
    static inline void func##p(type *p)                                                                      \
    {                                                                                                        \
        if (*p)                                                                                              \
            func(*p);                                                                                        \
    }

#define TAKE_PTR(p)                                                                                          \
    ({                                                                                                       \
        __typeof__(p) take_ptr_ = (p);                                                                       \
        (p) = NULL;                                                                                          \
        take_ptr_;                                                                                           \
    })

#define TAKE_FD(fd)                                                                                          \
    ({                                                                                                       \
        int take_fd_ = (fd);                                                                                 \
        (fd) = -1;                                                                                           \
        take_fd_;                                                                                            \
    })
