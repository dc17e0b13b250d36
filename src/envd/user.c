/* Users and paths: who a request runs as, how its paths resolve (e2b-compat 3.7), and the
 * per-thread filesystem identity switch.
 *
 * Invariant: envd_as_user()/envd_as_root() change only the calling thread's credentials. They
 * use raw syscalls because glibc's setgroups()/setfsuid() wrappers (the setxid broadcast)
 * would change every thread of envd. */
#include "envd/envd.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/http-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "envd/passwd.h"
#include "common/banned.h"

int envd_user_lookup(const char *name, struct envd_user *ret, struct error_record *err)
{
    if (!name || !*name)
        return error_set(err, ENOENT, "empty user name");
    if (strlen(name) >= sizeof(ret->name))
        return error_set(err, ENOENT, "user name too long");
    int r = envd_passwd_lookup("/etc/passwd", "/etc/group", name, ret);
    if (r == -ENOENT)
        return error_set(err, ENOENT, "user '%s' does not exist", name);
    if (r == -ENAMETOOLONG)
        return error_set(err, ENAMETOOLONG, "user '%s': name or home too long", name);
    if (r < 0)
        return error_set_errno(err, -r, "looking up user '%s'", name);
    return 0;
}

int envd_parse_basic_auth(const char *header, char *ret_name, size_t size)
{
    if (!header || strncasecmp(header, "Basic ", 6) != 0)
        return -EINVAL;
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    size_t len = strlen(b64);
    while (len > 0 && b64[len - 1] == ' ')
        len--;
    if (len == 0 || len > 4096)
        return -EINVAL;
    _cleanup_free_ unsigned char *dec = NULL;
    size_t dlen;
    if (base64_decode(b64, len, &dec, &dlen) < 0)
        return -EINVAL;
    const unsigned char *colon = memchr(dec, ':', dlen);
    if (!colon)
        return -EINVAL;
    size_t nlen = (size_t)(colon - dec);
    if (nlen == 0 || nlen >= size || memchr(dec, '\0', nlen))
        return -EINVAL;
    memcpy(ret_name, dec, nlen);
    ret_name[nlen] = '\0';
    return 0;
}

int envd_request_user(struct MHD_Connection *conn, struct envd_user *ret, struct connect_error *err)
{
    const char *auth = conn ? http_header(conn, "Authorization") : NULL;
    char name[64];
    _cleanup_free_ char *def = NULL;
    const char *user;
    if (auth) {
        if (envd_parse_basic_auth(auth, name, sizeof(name)) < 0)
            return connect_error_set(err, CONNECT_UNAUTHENTICATED, "invalid Authorization header");
        user = name;
    } else {
        def = envd_settings_default_user();
        if (!def)
            return connect_error_set(err, CONNECT_UNAUTHENTICATED, "no user given and no default user");
        user = def;
    }
    struct error_record e;
    int r = envd_user_lookup(user, ret, &e);
    if (r == -ENOENT)
        return connect_error_set(err, CONNECT_UNAUTHENTICATED, "invalid username: '%s'", user);
    if (r < 0)
        return connect_error_set(err, CONNECT_INTERNAL, "%s", e.msg);
    return 0;
}

char *envd_path_clean(const char *path)
{
    size_t n = strlen(path);
    bool rooted = path[0] == '/';
    char *out = xmalloc(n + 2);
    size_t w = 0, dotdot = 0; /* dotdot: where ".." can no longer backtrack */
    if (rooted) {
        out[w++] = '/';
        dotdot = 1;
    }
    for (size_t r = 0; r < n;) {
        if (path[r] == '/') {
            r++;
        } else if (path[r] == '.' && (r + 1 == n || path[r + 1] == '/')) {
            r++;
        } else if (path[r] == '.' && path[r + 1] == '.' && (r + 2 == n || path[r + 2] == '/')) {
            r += 2;
            if (w > dotdot) {
                w--;
                while (w > dotdot && out[w] != '/')
                    w--;
            } else if (!rooted) {
                if (w > 0)
                    out[w++] = '/';
                out[w++] = '.';
                out[w++] = '.';
                dotdot = w;
            }
        } else {
            if ((rooted && w != 1) || (!rooted && w != 0))
                out[w++] = '/';
            for (; r < n && path[r] != '/'; r++)
                out[w++] = path[r];
        }
    }
    if (w == 0)
        out[w++] = '.';
    out[w] = '\0';
    return out;
}

int envd_resolve_path(const struct envd_user *user, const char *path, char **ret, struct error_record *err)
{
    _cleanup_free_ char *def = NULL;
    if (!path || !*path) {
        def = envd_settings_default_workdir();
        path = def ? def : "";
    }
    size_t len = strlen(path);
    if (len >= PATH_MAX)
        return error_set(err, EINVAL, "path too long");
    if (!utf8_is_valid(path, len))
        return error_set(err, EINVAL, "path is not valid UTF-8");

    _cleanup_free_ char *joined = NULL;
    if (path[0] == '~') {
        if (path[1] != '\0' && path[1] != '/')
            return error_set(err, EINVAL, "cannot expand user-specific home dir in '%s'", path);
        joined = xasprintf("%s/%s", user->home, path + 1);
    } else if (path[0] != '/') {
        joined = xasprintf("%s/%s", user->home, path);
    } else {
        joined = xstrdup(path);
    }
    char *clean = envd_path_clean(joined);
    if (clean[0] != '/') { /* a relative home: make it absolute from / */
        char *abs = xasprintf("/%s", clean);
        free(clean);
        clean = envd_path_clean(abs);
        free(abs);
    }
    if (strlen(clean) >= PATH_MAX) {
        free(clean);
        return error_set(err, EINVAL, "path too long");
    }
    *ret = clean;
    return 0;
}

/* The identity envd_as_root() returns to: envd's own, captured once. */
static pthread_once_t self_once = PTHREAD_ONCE_INIT;
static uid_t self_uid;
static gid_t self_gid;
static gid_t self_groups[256];
static int self_n_groups;

static void self_capture(void)
{
    self_uid = geteuid();
    self_gid = getegid();
    int n = getgroups((int)ARRAY_SIZE(self_groups), self_groups);
    self_n_groups = n < 0 ? 0 : n;
}

int envd_as_user(const struct envd_user *user)
{
    pthread_once(&self_once, self_capture);
    if (self_uid != 0)
        return user->uid == self_uid ? 0 : -EPERM; /* unprivileged envd acts only as itself */
    /* Groups and fsgid first, while fsuid 0 still carries the capabilities to change them. */
    if (syscall(SYS_setgroups, (size_t)user->n_groups, user->groups) < 0)
        return -errno;
    syscall(SYS_setfsgid, user->gid);
    syscall(SYS_setfsuid, user->uid);
    /* setfsuid/setfsgid report no errors: read the values back (an invalid id changes nothing
     * and returns the current one). */
    if ((uid_t)syscall(SYS_setfsuid, (uid_t)-1) != user->uid ||
        (gid_t)syscall(SYS_setfsgid, (gid_t)-1) != user->gid) {
        envd_as_root();
        return -EPERM;
    }
    return 0;
}

void envd_as_root(void)
{
    pthread_once(&self_once, self_capture);
    if (self_uid != 0)
        return;
    syscall(SYS_setfsuid, self_uid);
    syscall(SYS_setfsgid, self_gid);
    syscall(SYS_setgroups, (size_t)self_n_groups, self_groups);
}
