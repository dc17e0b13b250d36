/* envd's user database: /etc/passwd and /etc/group read directly, as E2B's envd reads them (Go's
 * os/user without cgo), not through NSS.
 *
 * Why not getpwnam_r(): NSS loads the modules that the sandbox's /etc/nsswitch.conf names
 * (systemd, sss, ldap, ...) with dlopen() from the template, into an envd that runs on the host's
 * bundled libc; and even where that works it maps them and their libraries into envd for good
 * (libnss_systemd pulls in libcap and libm: 0.6 MiB of envd's idle RSS) and re-reads
 * nsswitch.conf on every request.
 *
 * The format is the one glibc's files module reads: one entry a line, fields split by ':',
 * leading blanks ignored, empty lines and '#' comments skipped, the first matching entry wins. A
 * line longer than LINE_MAX_BYTES is skipped whole (the files belong to the sandbox, so their
 * size is not trusted). */
#include "envd/passwd.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define LINE_MAX_BYTES (1u << 20)
#define FIELDS_MAX 8

/* One line split in place into at most FIELDS_MAX fields (the last one keeps any further ':'). */
struct line {
    char *field[FIELDS_MAX];
    size_t n;
};

/* Calls cb for every entry of file until cb returns non-zero, which is returned; 0 when cb
 * never stopped; -errno when the file cannot be read. */
static int for_each_line(const char *file, int (*cb)(const struct line *l, void *userdata), void *userdata)
{
    _cleanup_fclose_ FILE *f = fopen(file, "re");
    if (!f)
        return -errno;
    size_t cap = 4096;
    _cleanup_free_ char *buf = xmalloc(cap);
    for (;;) {
        size_t len = 0;
        bool skip = false, eof = false;
        for (;;) {
            if (!fgets(buf + len, (int)(cap - len), f)) {
                eof = true;
                break;
            }
            len += strlen(buf + len);
            if (len > 0 && buf[len - 1] == '\n')
                break;
            if (len + 1 < cap) /* no newline and room left: the file's last line */
                continue;
            if (cap >= LINE_MAX_BYTES) {
                skip = true;
                len = 0;
                continue;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        if (ferror(f))
            return -EIO;
        if (eof && len == 0)
            return 0;
        if (skip) {
            if (eof)
                return 0;
            continue;
        }
        if (buf[len - 1] == '\n')
            buf[--len] = '\0';
        char *p = buf;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        struct line l = { .n = 0 };
        l.field[l.n++] = p;
        for (char *c = strchr(p, ':'); c && l.n < FIELDS_MAX; c = strchr(c + 1, ':')) {
            *c = '\0';
            l.field[l.n++] = c + 1;
        }
        int r = cb(&l, userdata);
        if (r != 0)
            return r;
        if (eof)
            return 0;
    }
}

/* A decimal id as the files hold it: digits only, within uid_t/gid_t, not the -1 "no id". */
static int parse_id(const char *s, unsigned *ret)
{
    if (!*s)
        return -EINVAL;
    unsigned long long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
        if (v >= UINT_MAX)
            return -ERANGE;
    }
    *ret = (unsigned)v;
    return 0;
}

struct by_name {
    const char *name;
    struct envd_user *user;
    int error;
};

static int match_user(const struct line *l, void *userdata)
{
    struct by_name *q = userdata;
    /* name:password:uid:gid:gecos:home:shell */
    if (l->n < 6 || !streq(l->field[0], q->name))
        return 0;
    unsigned uid, gid;
    if (parse_id(l->field[2], &uid) < 0 || parse_id(l->field[3], &gid) < 0)
        return 0;
    struct envd_user *u = q->user;
    u->uid = uid;
    u->gid = gid;
    if (str_copy(u->name, sizeof(u->name), l->field[0]) < 0 ||
        str_copy(u->home, sizeof(u->home), *l->field[5] ? l->field[5] : "/") < 0)
        q->error = -ENAMETOOLONG;
    return 1;
}

struct groups_of {
    const char *name;
    gid_t *groups;
    int max, n;
};

static int match_member(const struct line *l, void *userdata)
{
    struct groups_of *q = userdata;
    /* name:password:gid:member,member,... */
    unsigned gid;
    if (l->n < 4 || parse_id(l->field[2], &gid) < 0)
        return 0;
    bool member = false;
    for (char *m = l->field[3]; m && !member;) {
        char *comma = strchr(m, ',');
        size_t len = comma ? (size_t)(comma - m) : strlen(m);
        member = len == strlen(q->name) && memcmp(m, q->name, len) == 0;
        m = comma ? comma + 1 : NULL;
    }
    if (!member)
        return 0;
    for (int i = 0; i < q->n; i++)
        if (q->groups[i] == (gid_t)gid)
            return 0;
    if (q->n < q->max)
        q->groups[q->n++] = (gid_t)gid;
    return q->n < q->max ? 0 : 1; /* more groups than we keep: the first ones */
}

int envd_passwd_lookup(const char *passwd, const char *group, const char *name, struct envd_user *ret)
{
    struct envd_user u = { .n_groups = 0 };
    struct by_name q = { .name = name, .user = &u };
    int r = for_each_line(passwd, match_user, &q);
    if (r < 0)
        return r;
    if (r == 0)
        return -ENOENT;
    if (q.error < 0)
        return q.error;

    /* The primary group first, then the groups that list the user, as getgrouplist(). A group
     * file that cannot be read leaves the primary group only. */
    struct groups_of g = { .name = u.name, .groups = u.groups, .max = (int)ARRAY_SIZE(u.groups), .n = 1 };
    u.groups[0] = u.gid;
    (void)for_each_line(group, match_member, &g);
    u.n_groups = g.n;
    *ret = u;
    return 0;
}

struct by_id {
    unsigned id;
    char *out;
    size_t size;
};

static int match_id(const struct line *l, void *userdata)
{
    struct by_id *q = userdata;
    /* Both files: name:password:id:... */
    unsigned id;
    if (l->n < 3 || parse_id(l->field[2], &id) < 0 || id != q->id)
        return 0;
    return str_copy(q->out, q->size, l->field[0]) < 0 ? -ENAMETOOLONG : 1;
}

int envd_passwd_name_of(const char *file, unsigned id, char *out, size_t size)
{
    struct by_id q = { .id = id, .out = out, .size = size };
    int r = for_each_line(file, match_id, &q);
    if (r < 0)
        return r;
    return r == 0 ? -ENOENT : 0;
}
