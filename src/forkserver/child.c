/* One request of the fork server, in the child forked for it (forkserver-internal.h): the
 * request is parsed here, never in the fork server itself, and the kernel's process is in the
 * sandbox, confined like any process of it, before a line of Python runs on its behalf. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <grp.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "forkserver/forkserver-internal.h"
#include "runtime/runtime.h"

#include "common/banned.h"

#define ENV_MAX 4096
#define NGROUPS_MAX_JOIN 64
#define PATH_MAX_LEN 4096

struct request {
    const char *user; /* for its supplementary groups, from the sandbox's /etc/group */
    const char *dir;
    const char *cwd;
    uid_t uid;
    gid_t gid;
    uint32_t nofile;
    bool allow_setuid;
    char **env;
};

void forkserver_reply_error(int reply_fd, int errnum, const char *fmt, ...)
{
    char msg[FORKSERVER_REPLY_MAX - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char line[FORKSERVER_REPLY_MAX];
    int n = snprintf(line, sizeof(line), "error %d %s", errnum > 0 ? errnum : EIO, msg);
    if (n > 0)
        (void)send(reply_fd, line, (size_t)MIN(n, (int)sizeof(line) - 1), MSG_NOSIGNAL);
}

static bool absolute_path(const char *p)
{
    return p && p[0] == '/' && strlen(p) < PATH_MAX_LEN && !strstr(p, "/../") && !str_endswith(p, "/..");
}

static int parse(json_t *o, struct request *r, struct error_record *err)
{
    json_t *env = json_object_get(o, "env");
    json_int_t uid = json_integer_value(json_object_get(o, "uid"));
    json_int_t gid = json_integer_value(json_object_get(o, "gid"));
    json_int_t nofile = json_integer_value(json_object_get(o, "nofile"));
    r->user = json_get_string(o, "user");
    r->dir = json_get_string(o, "dir");
    r->cwd = json_get_string(o, "cwd");
    r->allow_setuid = json_is_true(json_object_get(o, "allow_setuid"));
    if (!r->user || !r->user[0] || strlen(r->user) > 64)
        return error_set(err, EINVAL, "user must be a name");
    if (!absolute_path(r->dir) || !absolute_path(r->cwd))
        return error_set(err, EINVAL, "dir and cwd must be absolute paths");
    if (uid < 0 || uid > 65535 || gid < 0 || gid > 65535 || nofile < 0 || nofile > (1 << 20))
        return error_set(err, EINVAL, "uid, gid or nofile out of range");
    if (!json_is_array(env) || json_array_size(env) > ENV_MAX)
        return error_set(err, EINVAL, "env must be an array of at most %d strings", ENV_MAX);
    r->uid = (uid_t)uid;
    r->gid = (gid_t)gid;
    r->nofile = (uint32_t)nofile;
    r->env = xcalloc(json_array_size(env) + 1, sizeof(char *));
    size_t i;
    json_t *e;
    json_array_foreach (env, i, e) {
        if (!json_is_string(e) || !strchr(json_string_value(e), '='))
            return error_set(err, EINVAL, "env[%zu] is not KEY=VALUE", i);
        r->env[i] = (char *)json_string_value(e);
    }
    return 0;
}

_noreturn_ void forkserver_child(int server_sock, char *req, size_t len, const int *fds, size_t nfds)
{
    close(server_sock);
    int reply = fds[0];
    struct error_record err;
    error_clear(&err);
    json_error_t jerr;
    json_t *o = json_loadb(req, len, JSON_REJECT_DUPLICATES, &jerr);
    explicit_bzero(req, len);
    struct request r = { 0 };
    if (!json_is_object(o)) {
        forkserver_reply_error(reply, EINVAL, "request is not a JSON object: %s", jerr.text);
        _exit(1);
    }
    if (parse(o, &r, &err) < 0 || nfds - 1 > RUNTIME_JOIN_MAX_FDS) {
        forkserver_reply_error(reply, EINVAL, "%s", err.msg[0] ? err.msg : "too many fds");
        _exit(1);
    }
    struct runtime_join j = { .n_fds = nfds - 1,
                              .limits = { .nofile = r.nofile },
                              .allow_setuid = r.allow_setuid };
    memcpy(j.fds, fds + 1, (nfds - 1) * sizeof(int));
    if (runtime_ns_join_enter(&j, &err) < 0) {
        forkserver_reply_error(reply, err.errnum, "%s", err.msg);
        _exit(1);
    }
    /* Looked up inside: the sandbox's /etc/group (as interpd's own kernels inherit from envd). */
    gid_t groups[NGROUPS_MAX_JOIN];
    int n_groups = NGROUPS_MAX_JOIN;
    if (getgrouplist(r.user, r.gid, groups, &n_groups) < 0)
        n_groups = 0;
    PyOS_BeforeFork();
    pid_t pid = fork();
    if (pid < 0) {
        forkserver_reply_error(reply, errno, "fork into the sandbox's pid namespace failed");
        _exit(1);
    }
    if (pid > 0)
        _exit(0); /* the kernel's process is adopted by the sandbox's init */
    PyOS_AfterFork_Child();
    if (runtime_ns_join_finish(&j, r.uid, r.gid, groups, (size_t)n_groups, r.cwd, reply, &err) < 0) {
        forkserver_reply_error(reply, err.errnum, "%s", err.msg);
        _exit(1);
    }
    char ok[32];
    int n = snprintf(ok, sizeof(ok), "ok %d", (int)getpid());
    (void)send(reply, ok, (size_t)n, MSG_NOSIGNAL);
    close(reply);
    int rc = forkserver_run_kernel(r.dir, r.env, r.cwd, &err);
    _exit(rc < 0 ? 1 : 0);
}
