/* Filesystem helpers for hutch's own directories (state dir, templates). Paths here come from
 * hutch's configuration, never from a request or a sandbox. */
#pragma once

#include <sys/types.h>

/* Removes path and everything below it without following symlinks (a symlink is removed, not
 * its target) and without crossing into other mounts. A missing path is success. Returns 0 or
 * the first -errno. */
int rm_rf(const char *path);

/* Copies the regular file src to dest (created or truncated with mode), via a temporary name
 * and rename, so dest is never seen half-written. Returns 0 or -errno. */
int copy_file(const char *src, const char *dest, mode_t mode);
