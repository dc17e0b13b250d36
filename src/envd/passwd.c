/* envd's user database: /etc/passwd and /etc/group read directly, as E2B's envd reads them (Go's
 * os/user without cgo), not through NSS.
 *
 * Why not getpwnam_r(): NSS loads the modules that the sandbox's /etc/nsswitch.conf names
 * (systemd, sss, ldap, ...) with dlopen() from the template, into an envd that runs on the host's
 * bundled libc; and even where that works it maps them and their libraries into envd for good
 * (libnss_systemd pulls in libcap and libm: 0.6 MiB of envd's idle RSS) and re-reads
 * nsswitch.conf on every request.
 *
 * The lines are parsed by glibc's own parser of the files format (fgetpwent_r, fgetgrent_r: the
 * "files" module's, without NSS); the first matching entry wins. A line longer than
 * LINE_MAX_BYTES is skipped whole (the files belong to the sandbox, so their size is not
 * trusted). */
#include "envd/passwd.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define LINE_MAX_BYTES (1u << 20)

/* Past the rest of the current line; false at the end of the file. */
static bool skip_line(FILE *f)
{
    int c;
    while ((c = getc(f)) != EOF && c != '\n')
        ;
    return c != EOF;
}

/* After fgetpwent_r/fgetgrent_r said ERANGE (they rewind to the line's start): a bigger buffer,
 * up to LINE_MAX_BYTES, or past the line. false at the end of the file. */
static bool grow_or_skip(FILE *f, char **buf, size_t *cap)
{
    if (*cap >= LINE_MAX_BYTES)
        return skip_line(f);
    *cap *= 2;
    *buf = xrealloc(*buf, *cap);
    return true;
}

/* What fgetpwent_r/fgetgrent_r's result e means: 1 an entry, 0 the end, -errno. */
static int entry_result(FILE *f, int e, bool got)
{
    if (e == 0 && got)
        return 1;
    return e == 0 || e == ENOENT ? (ferror(f) ? -EIO : 0) : -e;
}

static int next_passwd(FILE *f, char **buf, size_t *cap, struct passwd *pw, struct passwd **ret)
{
    int e;
    while ((e = fgetpwent_r(f, pw, *buf, *cap, ret)) == ERANGE)
        if (!grow_or_skip(f, buf, cap))
            return 0;
    return entry_result(f, e, *ret != NULL);
}

static int next_group(FILE *f, char **buf, size_t *cap, struct group *gr, struct group **ret)
{
    int e;
    while ((e = fgetgrent_r(f, gr, *buf, *cap, ret)) == ERANGE)
        if (!grow_or_skip(f, buf, cap))
            return 0;
    return entry_result(f, e, *ret != NULL);
}

int envd_passwd_lookup(const char *passwd, const char *group, const char *name, struct envd_user *ret)
{
    struct envd_user u = { .n_groups = 0 };
    size_t cap = 4096;
    _cleanup_free_ char *buf = xmalloc(cap);
    {
        _cleanup_fclose_ FILE *f = fopen(passwd, "re");
        if (!f)
            return -errno;
        struct passwd pw, *p = NULL;
        int r;
        while ((r = next_passwd(f, &buf, &cap, &pw, &p)) > 0 && !streq(p->pw_name, name))
            ;
        if (r <= 0)
            return r < 0 ? r : -ENOENT;
        u.uid = p->pw_uid;
        u.gid = p->pw_gid;
        if (str_copy(u.name, sizeof(u.name), p->pw_name) < 0 ||
            str_copy(u.home, sizeof(u.home), p->pw_dir && *p->pw_dir ? p->pw_dir : "/") < 0)
            return -ENAMETOOLONG;
    }

    /* The primary group first, then the groups that list the user, as getgrouplist(), at most
     * ARRAY_SIZE(u.groups) (the first ones). A group file that cannot be read leaves the
     * primary group only. */
    u.groups[0] = u.gid;
    u.n_groups = 1;
    _cleanup_fclose_ FILE *f = fopen(group, "re");
    struct group gr, *g = NULL;
    while (f && u.n_groups < (int)ARRAY_SIZE(u.groups) && next_group(f, &buf, &cap, &gr, &g) > 0) {
        bool member = false, seen = false;
        for (char **m = g->gr_mem; m && *m && !member; m++)
            member = streq(*m, u.name);
        for (int i = 0; i < u.n_groups && member; i++)
            seen = seen || u.groups[i] == g->gr_gid;
        if (member && !seen)
            u.groups[u.n_groups++] = g->gr_gid;
    }
    *ret = u;
    return 0;
}

int envd_passwd_user_name(const char *passwd, unsigned uid, char *out, size_t size)
{
    _cleanup_fclose_ FILE *f = fopen(passwd, "re");
    if (!f)
        return -errno;
    size_t cap = 4096;
    _cleanup_free_ char *buf = xmalloc(cap);
    struct passwd pw, *p = NULL;
    int r;
    while ((r = next_passwd(f, &buf, &cap, &pw, &p)) > 0)
        if (p->pw_uid == (uid_t)uid)
            return str_copy(out, size, p->pw_name) < 0 ? -ENAMETOOLONG : 0;
    return r < 0 ? r : -ENOENT;
}

int envd_passwd_group_name(const char *group, unsigned gid, char *out, size_t size)
{
    _cleanup_fclose_ FILE *f = fopen(group, "re");
    if (!f)
        return -errno;
    size_t cap = 4096;
    _cleanup_free_ char *buf = xmalloc(cap);
    struct group gr, *g = NULL;
    int r;
    while ((r = next_group(f, &buf, &cap, &gr, &g)) > 0)
        if (g->gr_gid == (gid_t)gid)
            return str_copy(out, size, g->gr_name) < 0 ? -ENAMETOOLONG : 0;
    return r < 0 ? r : -ENOENT;
}
