/* The `debian:<suite>` base of templates: a minimal Debian root filesystem made by debootstrap,
 * built once per suite into the cache and shared read-only by every template built on it. */
#pragma once

#include "common/error.h"

/* One line of a tool's output (without its newline), as it arrives. */
typedef void (*template_log_cb)(const char *line, void *userdata);

/* Makes sure cache_dir/debootstrap/<suite> holds a minimal Debian root filesystem
 * (`debootstrap --variant=minbase <suite>` from deb.debian.org, or the mirror in
 * HUTCH_DEBIAN_MIRROR), building it on first use, and returns its path in *ret_path (malloc'd).
 * Supported suites: bookworm (others: -EINVAL).
 *
 * A tree appears under its final name only when complete (it is built under a temporary name and
 * renamed), so an existing one is returned at once; builders are serialised by a flock on
 * cache_dir/debootstrap/.<suite>.lock, and a later one finds the tree its predecessor made. The
 * tree has /opt/hutch (envd's mount point) and a sandbox's /etc/resolv.conf, /etc/hostname and
 * /etc/hosts instead of the host's, and no downloaded .deb files; apt's lists and sources are
 * debootstrap's (so a RUN step can `apt-get install` at once).
 *
 * Blocks for the whole build (minutes: debootstrap downloads ~40 MB), calling log_cb (may be
 * NULL) with each line debootstrap prints, on the calling thread. Needs root. Not for a forked
 * child. Returns 0 or -errno with err filled. */
int template_debootstrap(const char *cache_dir, const char *suite, template_log_cb log_cb, void *userdata,
                         char **ret_path, struct error_record *err);
