/* File metadata: `X-Metadata-<key>` upload headers stored as `user.e2b.<key>` xattrs, read
 * back into EntryInfo.metadata (e2b-compat 3.8). Keys and values are printable ASCII; one
 * upload replaces the whole set. Every size read from the kernel is bounded by its own
 * limits (XATTR_LIST_MAX, XATTR_SIZE_MAX). */
#include <ctype.h>
#include <errno.h>
#include <linux/limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/xattr.h>

#include "common/cleanup.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "envd/fs/fs.h"
#include "common/banned.h"

static bool printable_ascii(const char *s, size_t *ret_bad)
{
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e) {
            *ret_bad = i;
            return false;
        }
    }
    return true;
}

int fs_metadata_validate(const json_t *metadata, struct error_record *err)
{
    if (!metadata)
        return 0;
    if (!json_is_object(metadata))
        return error_set(err, EINVAL, "metadata must be an object");
    size_t total = 0;
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)metadata, k, v) {
        if (!json_is_string(v))
            return error_set(err, EINVAL, "metadata value for key '%s' is not a string", k);
        const char *s = json_string_value(v);
        size_t klen = strlen(k), bad;
        if (klen == 0)
            return error_set(err, EINVAL, "metadata key must not be empty");
        if (klen > FS_METADATA_KEY_MAX)
            return error_set(err, EINVAL, "metadata key exceeds %zu bytes", (size_t)FS_METADATA_KEY_MAX);
        if (!printable_ascii(k, &bad))
            return error_set(err, EINVAL,
                             "metadata key contains non-printable-ASCII byte 0x%02x at offset %zu",
                             (unsigned char)k[bad], bad);
        if (json_string_length(v) != strlen(s))
            return error_set(err, EINVAL, "metadata value for key '%s' contains a NUL byte", k);
        if (!printable_ascii(s, &bad))
            return error_set(
                err, EINVAL,
                "metadata value for key '%s' contains non-printable-ASCII byte 0x%02x at offset %zu", k,
                (unsigned char)s[bad], bad);
        total += strlen(FS_XATTR_PREFIX) + klen + strlen(s);
    }
    if (total > FS_METADATA_TOTAL_MAX)
        return error_set(err, EINVAL, "total metadata size %zu exceeds %d bytes", total,
                         FS_METADATA_TOTAL_MAX);
    return 0;
}

int fs_metadata_add_header(json_t *metadata, const char *name, const char *value)
{
    size_t plen = strlen(FS_METADATA_HEADER_PREFIX);
    if (!name || strncasecmp(name, FS_METADATA_HEADER_PREFIX, plen) != 0)
        return 0;
    const char *key = name + plen;
    if (!*key)
        return 0;
    _cleanup_free_ char *lower = xstrdup(key);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (json_object_get(metadata, lower))
        return 0;
    /* Bytes that are not UTF-8 cannot be held by a JSON string; keep them visible to the
     * validator (which rejects them) as a replacement that is itself not printable ASCII. */
    json_t *v = json_string(value ? value : "");
    if (!v)
        v = json_string("\x7f");
    /* A key that is not UTF-8 likewise. */
    if (json_object_set_new(metadata, lower, v) < 0)
        json_object_set_new(metadata, "\x7f", json_string(""));
    return 1;
}

/* Reads the attribute list with the getter; returns a malloc'd list and its length. */
static int read_list(ssize_t (*list)(const void *obj, char *buf, size_t size), const void *obj, char **ret,
                     size_t *ret_len)
{
    for (int tries = 0; tries < 4; tries++) {
        ssize_t n = list(obj, NULL, 0);
        if (n < 0)
            return -errno;
        if (n == 0) {
            *ret = NULL;
            *ret_len = 0;
            return 0;
        }
        if (n > XATTR_LIST_MAX)
            n = XATTR_LIST_MAX;
        char *buf = xmalloc((size_t)n);
        ssize_t m = list(obj, buf, (size_t)n);
        if (m < 0) {
            int e = errno;
            free(buf);
            if (e == ERANGE)
                continue; /* grew in between */
            return -e;
        }
        *ret = buf;
        *ret_len = (size_t)m;
        return 0;
    }
    return -ERANGE;
}

struct xobj {
    const char *path;
    int fd;
};

static ssize_t xlist(const void *o, char *buf, size_t size)
{
    const struct xobj *x = o;
    return x->path ? listxattr(x->path, buf, size) : flistxattr(x->fd, buf, size);
}

static ssize_t xget(const struct xobj *x, const char *name, void *buf, size_t size)
{
    return x->path ? getxattr(x->path, name, buf, size) : fgetxattr(x->fd, name, buf, size);
}

static int metadata_read(const struct xobj *x, json_t **ret)
{
    *ret = NULL;
    _cleanup_free_ char *list = NULL;
    size_t len;
    int r = read_list(xlist, x, &list, &len);
    if (r == -ENOTSUP || r == -EOPNOTSUPP)
        return 0;
    if (r < 0)
        return r;
    _cleanup_json_ json_t *md = NULL;
    _cleanup_free_ char *val = NULL;
    size_t plen = strlen(FS_XATTR_PREFIX);
    for (size_t off = 0; off < len;) {
        const char *name = list + off;
        size_t nlen = strnlen(name, len - off);
        off += nlen + 1;
        if (nlen <= plen || strncmp(name, FS_XATTR_PREFIX, plen) != 0)
            continue;
        if (!val)
            val = xmalloc(XATTR_SIZE_MAX + 1);
        ssize_t vlen = xget(x, name, val, XATTR_SIZE_MAX);
        if (vlen < 0)
            continue; /* removed in between, or unreadable */
        val[vlen] = '\0';
        const char *key = name + plen;
        if (!utf8_is_valid(key, strlen(key)) || !utf8_is_valid(val, (size_t)vlen) ||
            memchr(val, '\0', (size_t)vlen))
            continue;
        if (!md)
            md = json_object();
        json_object_set_new(md, key, json_stringn(val, (size_t)vlen));
    }
    *ret = TAKE_PTR(md);
    return 0;
}

int fs_metadata_read(const char *path, json_t **ret)
{
    struct xobj x = { .path = path, .fd = -1 };
    return metadata_read(&x, ret);
}

int fs_metadata_read_fd(int fd, json_t **ret)
{
    struct xobj x = { .path = NULL, .fd = fd };
    return metadata_read(&x, ret);
}

int fs_metadata_write_fd(int fd, const json_t *metadata)
{
    struct xobj x = { .path = NULL, .fd = fd };
    _cleanup_free_ char *list = NULL;
    size_t len;
    int r = read_list(xlist, &x, &list, &len);
    if (r == -ENOTSUP || r == -EOPNOTSUPP) {
        /* No xattrs here: fine when there is nothing to store. */
        return metadata && json_object_size(metadata) > 0 ? -EOPNOTSUPP : 0;
    }
    if (r < 0)
        return r;
    size_t plen = strlen(FS_XATTR_PREFIX);
    for (size_t off = 0; off < len;) {
        const char *name = list + off;
        size_t nlen = strnlen(name, len - off);
        off += nlen + 1;
        if (nlen <= plen || strncmp(name, FS_XATTR_PREFIX, plen) != 0)
            continue;
        if (metadata && json_object_get(metadata, name + plen))
            continue;
        if (fremovexattr(fd, name) < 0 && errno != ENODATA)
            return -errno;
    }
    if (!metadata)
        return 0;
    const char *k;
    json_t *v;
    json_object_foreach ((json_t *)metadata, k, v) {
        _cleanup_free_ char *name = xasprintf("%s%s", FS_XATTR_PREFIX, k);
        const char *s = json_string_value(v);
        if (!s)
            return -EINVAL;
        if (fsetxattr(fd, name, s, strlen(s), 0) < 0)
            return -errno;
    }
    return 0;
}
