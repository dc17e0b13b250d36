/* Host-side operations on layer directories: the read-only directories a template stacks as
 * overlay lower layers, and the overlay upper directories that export_layer (runtime.h) copies
 * out of a sandbox. A layer holds directories, regular files, symlinks, fifos, overlay whiteouts
 * (char 0/0) and opaque directories (the user.overlay.opaque xattr, the `userxattr` form that the
 * ns backend's overlays read), with owners in 0..65535.
 *
 * Layer contents may have been written by hostile code (an exported sandbox): every function
 * here walks by file descriptor, one name at a time (openat with O_NOFOLLOW, fstatat with
 * AT_SYMLINK_NOFOLLOW), never follows a symlink, never leaves the filesystem of the layer's root,
 * and refuses trees deeper than LAYER_MAX_DEPTH levels (ELOOP). The paths given as arguments are
 * the caller's own and are trusted. None of these is safe in a forked child (they allocate);
 * they block on disk I/O. Each returns 0 or -errno with err (may be NULL) filled. */
#pragma once

#include <stdint.h>

#include "common/error.h"

/* Directory levels below a layer's root (the same bound as RUNTIME_EXPORT_MAX_DEPTH, so that
 * whatever export_layer writes can be cloned and applied). */
#define LAYER_MAX_DEPTH 256

/* Makes dst (must not exist) a copy of layer src in which every regular file is a hard link to
 * src's (layers are never modified once written, so sharing file data is safe); directories,
 * symlinks, whiteouts, fifos are recreated with the same owner, mode, times and xattrs (sockets
 * and device nodes other than whiteouts are skipped). src and dst on the same filesystem. On
 * failure dst is removed. */
int layer_clone_linked(const char *src, const char *dst, struct error_record *err);

/* Applies an overlay diff (a layer exported by export_layer, i.e. an upper dir) on top of base,
 * in place, consuming diff (entries are renamed from diff into base; same filesystem): a
 * whiteout removes base's entry and stays as a whiteout (a lower layer below base may have the
 * path); an opaque directory replaces base's directory wholesale; a non-opaque directory is
 * merged recursively (its own owner/mode/xattrs/times win; base's opaque marker stays); a
 * non-opaque directory over a base entry that is not a directory becomes opaque (in the overlay
 * that entry hid any lower directory); anything else replaces base's entry. The directories of
 * base are changed in place, never a regular file's inode, so base may be a layer_clone_linked()
 * clone sharing its files with a template. diff's root directory is left, empty.
 * Idempotent when interrupted and re-run with what is left of diff. */
int layer_apply_diff(const char *base, const char *diff, struct error_record *err);

/* Bytes used by the files of a layer (st_blocks of every entry, the root included), for disk
 * accounting. A regular file with n hard links counts 1/n of its blocks at each link, so that
 * layers sharing data through layer_clone_linked() add up to the disk actually used. */
int layer_disk_usage(const char *dir, uint64_t *ret_bytes, struct error_record *err);
