/* Directory watches over inotify: the WatchDir server stream and the polling watchers
 * (CreateWatcher / GetWatcherEvents / RemoveWatcher).
 *
 * A watch holds one inotify fd. Recursive watches add a watch for every subdirectory at start
 * and for each directory created or moved in later (as fsnotify, which envd uses, does).
 * Event names are relative to the watched directory. WatchDirResponse's oneof sits directly in
 * the message, so its JSON is {"start":{}}, {"filesystem":{...}} or {"keepalive":{}} (unlike
 * the process events, which are wrapped in an "event" field). Watches are added and entries read
 * with the watch's user's identity, so a user cannot watch what the user cannot read.
 *
 * Uploads' own temporary files (an unnamed O_TMPFILE, or FS_UPLOAD_TEMP_PREFIX names) are not
 * reported: watchers see a complete file appear under its name, then a write to it.
 *
 * Bounds: FS_WATCH_MAX_WDS inotify watches per watch, FS_MAX_WATCHERS polling watchers, and
 * FS_WATCHER_MAX_EVENTS buffered events per polling watcher (more is an overflow error, as
 * the kernel's own queue overflow is). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/json-util.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "envd/fs/fs.h"
#include "envd/fs/service.h"
#include "common/banned.h"

#define FS_WATCH_MAX_WDS 8192
#define FS_MAX_WATCHERS 64
#define FS_WATCHER_MAX_EVENTS 4096
#define FS_WATCH_SCAN_DEPTH 64

struct wd_entry {
    int wd;
    char *rel; /* "" for the watched directory itself */
};

struct fs_watch {
    int fd;
    char *root;
    bool recursive;
    bool include_entry;
    struct envd_user user;
    struct wd_entry *wds;
    size_t n_wds, cap_wds;
    /* Raw inotify bytes read but not yet turned into messages. */
    _Alignas(struct inotify_event) char buf[32768];
    size_t buf_len, buf_off;
    /* Messages of one inotify event not yet handed out. */
    json_t *pending[5];
    size_t n_pending, pending_off;
};

static void watch_free(struct fs_watch *w)
{
    if (!w)
        return;
    safe_close(w->fd);
    for (size_t i = 0; i < w->n_wds; i++)
        free(w->wds[i].rel);
    free(w->wds);
    for (size_t i = w->pending_off; i < w->n_pending; i++)
        json_decref(w->pending[i]);
    free(w->root);
    free(w);
}

static const char *wd_rel(struct fs_watch *w, int wd)
{
    for (size_t i = 0; i < w->n_wds; i++)
        if (w->wds[i].wd == wd)
            return w->wds[i].rel;
    return NULL;
}

static void wd_forget(struct fs_watch *w, int wd)
{
    for (size_t i = 0; i < w->n_wds; i++)
        if (w->wds[i].wd == wd) {
            free(w->wds[i].rel);
            w->wds[i] = w->wds[--w->n_wds];
            return;
        }
}

/* Removes the watches of rel and everything under it. */
static void watch_drop_tree(struct fs_watch *w, const char *rel)
{
    size_t len = strlen(rel);
    for (size_t i = 0; i < w->n_wds;) {
        const char *r = w->wds[i].rel;
        if (*r && strncmp(r, rel, len) == 0 && (r[len] == '\0' || r[len] == '/')) {
            inotify_rm_watch(w->fd, w->wds[i].wd);
            wd_forget(w, w->wds[i].wd);
            continue; /* wd_forget moved the last entry here */
        }
        i++;
    }
}

/* Adds a watch for root/rel; with recursive also for its subdirectories. Runs as the user. */
static int watch_add(struct fs_watch *w, const char *rel, unsigned depth)
{
    _cleanup_free_ char *path =
        *rel ? xasprintf("%s/%s", streq(w->root, "/") ? "" : w->root, rel) : xstrdup(w->root);
    if (w->n_wds >= FS_WATCH_MAX_WDS)
        return -ENOSPC;
    int wd = inotify_add_watch(w->fd, path, FS_WATCH_MASK | IN_ONLYDIR | IN_DONT_FOLLOW);
    if (wd < 0)
        return -errno;
    const char *known = wd_rel(w, wd);
    if (known) {
        /* The same directory again (a move within the tree): keep the newest name. */
        wd_forget(w, wd);
    }
    if (w->n_wds == w->cap_wds) {
        w->cap_wds = w->cap_wds ? 2 * w->cap_wds : 16;
        w->wds = xreallocarray(w->wds, w->cap_wds, sizeof(*w->wds));
    }
    w->wds[w->n_wds++] = (struct wd_entry){ .wd = wd, .rel = xstrdup(rel) };
    if (!w->recursive || depth >= FS_WATCH_SCAN_DEPTH)
        return 0;

    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return 0; /* unreadable: watched, not entered */
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        bool is_dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        }
        if (!is_dir)
            continue;
        _cleanup_free_ char *child = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        if (watch_add(w, child, depth + 1) == -ENOSPC)
            break;
    }
    closedir(d);
    return 0;
}

/* Opens a watch on root, which the caller checked is a directory. Runs as the user. */
static int watch_open(const char *root, bool recursive, bool include_entry, const struct envd_user *user,
                      struct fs_watch **ret)
{
    struct fs_watch *w = xcalloc(1, sizeof(*w));
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        int e = errno;
        free(w);
        return -e;
    }
    w->root = xstrdup(root);
    w->recursive = recursive;
    w->include_entry = include_entry;
    w->user = *user;
    int r = watch_add(w, "", 0);
    if (r < 0) {
        watch_free(w);
        return r;
    }
    *ret = w;
    return 0;
}

/* The kernel names the dentry of an unnamed O_TMPFILE "#<inode>" and reports writes to it on
 * its directory (uploads are written so). Such a file has no name anyone can open: its
 * modify/attrib events are dropped when no entry of that name exists. */
static bool is_unlinked_tmpfile(struct fs_watch *w, const char *rel, const char *name, uint32_t mask)
{
    if (name[0] != '#' || !name[1] || (mask & ~(IN_MODIFY | IN_ATTRIB | IN_ISDIR)) != 0)
        return false;
    for (const char *p = name + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    _cleanup_free_ char *path = *rel ? xasprintf("%s/%s/%s", streq(w->root, "/") ? "" : w->root, rel, name)
                                     : xasprintf("%s/%s", streq(w->root, "/") ? "" : w->root, name);
    struct stat st;
    return lstat(path, &st) < 0 && errno == ENOENT;
}

/* Turns one inotify event into pending messages. Returns 0, or -EOVERFLOW when the kernel's
 * queue overflowed (events were lost). */
static int watch_expand(struct fs_watch *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW)
        return -EOVERFLOW;
    if (ev->mask & IN_IGNORED) {
        wd_forget(w, ev->wd);
        return 0;
    }
    const char *rel = wd_rel(w, ev->wd);
    if (!rel)
        return 0;
    /* A subdirectory's own delete/move is already reported by its parent's watch. */
    if (*rel && (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)))
        return 0;
    const char *name = ev->len > 0 ? ev->name : "";
    if (is_unlinked_tmpfile(w, rel, name, ev->mask) ||
        strncmp(name, FS_UPLOAD_TEMP_PREFIX, strlen(FS_UPLOAD_TEMP_PREFIX)) == 0)
        return 0;
    _cleanup_free_ char *full_rel = NULL;
    if (*rel && *name)
        full_rel = xasprintf("%s/%s", rel, name);
    else
        full_rel = xstrdup(*rel ? rel : *name ? name : ".");

    if (w->recursive && (ev->mask & IN_ISDIR) && (ev->mask & IN_MOVED_FROM))
        watch_drop_tree(w, full_rel); /* moved away: its names are stale; re-added if moved in */
    if (w->recursive && (ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)))
        (void)watch_add(w, full_rel, 0);

    enum fs_event_type types[5];
    size_t n = fs_event_types_from_mask(ev->mask, types);
    _cleanup_json_ json_t *entry = NULL;
    bool tried = false;
    w->n_pending = w->pending_off = 0;
    for (size_t i = 0; i < n; i++) {
        bool carries =
            types[i] == FS_EVENT_CREATE || types[i] == FS_EVENT_WRITE || types[i] == FS_EVENT_CHMOD;
        if (w->include_entry && carries && !tried) {
            tried = true;
            _cleanup_free_ char *full =
                streq(full_rel, ".") ? xstrdup(w->root)
                                     : xasprintf("%s/%s", streq(w->root, "/") ? "" : w->root, full_rel);
            (void)fs_entry_info(full, NULL, &entry); /* gone already: no entry, as envd */
        }
        w->pending[w->n_pending++] = fs_event_json(full_rel, types[i], carries ? entry : NULL);
    }
    return 0;
}

/* The next event message of w: 1 and a new reference, 0 when none is ready, or -errno. Runs as
 * the user. */
static int watch_next(struct fs_watch *w, json_t **ret)
{
    for (;;) {
        if (w->pending_off < w->n_pending) {
            *ret = w->pending[w->pending_off];
            w->pending[w->pending_off++] = NULL;
            return 1;
        }
        if (w->buf_off >= w->buf_len) {
            ssize_t n = read(w->fd, w->buf, sizeof(w->buf));
            if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
            if (n == 0)
                return 0;
            w->buf_len = (size_t)n;
            w->buf_off = 0;
        }
        const struct inotify_event *ev = (const struct inotify_event *)(w->buf + w->buf_off);
        if (w->buf_len - w->buf_off < sizeof(*ev) || w->buf_len - w->buf_off < sizeof(*ev) + ev->len)
            return -EIO;
        w->buf_off += sizeof(*ev) + ev->len;
        int r = watch_expand(w, ev);
        if (r < 0)
            return r;
    }
}

/* NFS, CIFS/SMB and FUSE, as envd's IsPathOnNetworkMount. */
static bool is_network_fs(unsigned long type)
{
    switch (type) {
    case 0x6969:     /* NFS_SUPER_MAGIC */
    case 0xFF534D42: /* CIFS_MAGIC_NUMBER */
    case 0x517B:     /* SMB_SUPER_MAGIC */
    case 0xFE534D42: /* SMB2_MAGIC_NUMBER */
    case 0x65735546: /* FUSE_SUPER_MAGIC */
        return true;
    default:
        return false;
    }
}

/* Resolves and checks the directory of a WatchDir/CreateWatcher request and opens the watch,
 * as the user. */
static int watch_from_request(struct connect_call *call, json_t *req, struct fs_watch **ret,
                              struct connect_error *err)
{
    const char *p;
    bool recursive, include_entry, allow_network;
    struct envd_user user;
    _cleanup_free_ char *path = NULL;
    if (fs_req_string(req, "path", NULL, &p, err) < 0 ||
        fs_req_bool(req, "recursive", NULL, &recursive, err) < 0 ||
        fs_req_bool(req, "includeEntry", "include_entry", &include_entry, err) < 0 ||
        fs_req_bool(req, "allowNetworkMounts", "allow_network_mounts", &allow_network, err) < 0 ||
        fs_req_user_path(call, p, &user, &path, err) < 0 || fs_become(&user, err) < 0)
        return -1;
    int r;
    struct stat st;
    if (stat(path, &st) < 0) {
        r = errno == ENOENT ? connect_error_set(err, CONNECT_NOT_FOUND, "path %s not found", path)
                            : fs_connect_errno(err, -errno, "error statting path", path);
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        r = connect_error_set(err, CONNECT_INVALID_ARGUMENT, "path %s not a directory", path);
        goto out;
    }
    if (!allow_network) {
        /* inotify sees only local changes there (envd refuses these unless asked). */
        struct statfs sf;
        if (statfs(path, &sf) < 0) {
            r = fs_connect_errno(err, -errno, "error checking mount status of", path);
            goto out;
        }
        if (is_network_fs(sf.f_type)) {
            r = connect_error_set(err, CONNECT_INVALID_ARGUMENT,
                                  "cannot watch path on network filesystem: %s", path);
            goto out;
        }
    }
    r = watch_open(path, recursive, include_entry, &user, ret);
    if (r < 0)
        r = fs_connect_errno(err, r, "error adding path to watcher", path);
out:
    envd_as_root();
    return r < 0 ? -1 : 0;
}

/* ---- WatchDir: a server stream ---- */

struct watch_stream {
    struct fs_watch *w;
    bool started;
};

static enum connect_next stream_next(void *state, usec_t wait, json_t **ret_msg, struct connect_error *err)
{
    struct watch_stream *s = state;
    if (!s->started) {
        s->started = true;
        *ret_msg = json_pack("{s:{}}", "start");
        return CONNECT_NEXT_MESSAGE;
    }
    for (int round = 0; round < 2; round++) {
        json_t *ev = NULL;
        if (envd_as_user(&s->w->user) < 0) {
            connect_error_set(err, CONNECT_INTERNAL, "cannot act as user '%s'", s->w->user.name);
            return CONNECT_NEXT_ERROR;
        }
        int r = watch_next(s->w, &ev);
        envd_as_root();
        if (r == 1) {
            *ret_msg = json_pack("{s:o}", "filesystem", ev);
            return CONNECT_NEXT_MESSAGE;
        }
        if (r == -EOVERFLOW) {
            connect_error_set(err, CONNECT_INTERNAL, "watcher error: event queue overflow");
            return CONNECT_NEXT_ERROR;
        }
        if (r < 0) {
            connect_error_set(err, CONNECT_INTERNAL, "watcher error: %s", errno_to_string(-r));
            return CONNECT_NEXT_ERROR;
        }
        if (round == 1)
            break;
        struct pollfd pfd = { .fd = s->w->fd, .events = POLLIN };
        int ms = (int)MIN(wait / 1000, (usec_t)60000);
        int k = poll(&pfd, 1, ms);
        if (k <= 0)
            break;
    }
    return CONNECT_NEXT_IDLE;
}

static void stream_free(void *state)
{
    struct watch_stream *s = state;
    watch_free(s->w);
    free(s);
}

static const struct connect_stream_ops watch_stream_ops = {
    .next = stream_next,
    .free = stream_free,
    .keepalive_json = "{\"keepalive\":{}}",
};

int fs_watch_dir(struct connect_call *call, json_t *req, const struct connect_stream_ops **ret_ops,
                 void **ret_state, struct connect_error *err)
{
    struct fs_watch *w;
    if (watch_from_request(call, req, &w, err) < 0)
        return -1;
    struct watch_stream *s = xcalloc(1, sizeof(*s));
    s->w = w;
    *ret_ops = &watch_stream_ops;
    *ret_state = s;
    return 0;
}

/* ---- polling watchers ---- */

struct watcher {
    char id[40];
    uint64_t serial;
    struct fs_watch *w;
    json_t *events; /* array */
    char error[ERROR_MSG_MAX];
};

static pthread_mutex_t watchers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct watcher *watchers[FS_MAX_WATCHERS];
static uint64_t watcher_serial;
static int watch_epoll = -1;
static bool watch_thread_started;

/* Moves ready events of one watcher into its buffer. Called with watchers_lock held. */
static void watcher_drain(struct watcher *wt)
{
    if (wt->error[0])
        return;
    if (envd_as_user(&wt->w->user) < 0) {
        snprintf(wt->error, sizeof(wt->error), "cannot act as user '%s'", wt->w->user.name);
        return;
    }
    for (;;) {
        json_t *ev = NULL;
        int r = watch_next(wt->w, &ev);
        if (r == 0)
            break;
        if (r < 0) {
            snprintf(wt->error, sizeof(wt->error), "watcher error: %s",
                     r == -EOVERFLOW ? "event queue overflow" : errno_to_string(-r));
            break;
        }
        if (json_array_size(wt->events) >= FS_WATCHER_MAX_EVENTS) {
            json_decref(ev);
            snprintf(wt->error, sizeof(wt->error),
                     "watcher error: more than %d events buffered; poll more often", FS_WATCHER_MAX_EVENTS);
            break;
        }
        json_array_append_new(wt->events, ev);
    }
    envd_as_root();
}

static void *watch_thread(void *arg)
{
    for (;;) {
        struct epoll_event evs[16];
        int n = epoll_wait(watch_epoll, evs, (int)ARRAY_SIZE(evs), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error_errno(errno, "filesystem watchers: epoll_wait");
            return NULL;
        }
        pthread_mutex_lock(&watchers_lock);
        for (int i = 0; i < n; i++)
            for (size_t k = 0; k < FS_MAX_WATCHERS; k++)
                if (watchers[k] && watchers[k]->serial == evs[i].data.u64) {
                    watcher_drain(watchers[k]);
                    /* A failed watcher stops being polled; its error waits for the client. */
                    if (watchers[k]->error[0])
                        epoll_ctl(watch_epoll, EPOLL_CTL_DEL, watchers[k]->w->fd, NULL);
                }
        pthread_mutex_unlock(&watchers_lock);
    }
    return NULL;
}

static int ensure_thread(void)
{
    if (watch_thread_started)
        return 0;
    if (watch_epoll < 0) {
        watch_epoll = epoll_create1(EPOLL_CLOEXEC);
        if (watch_epoll < 0)
            return -errno;
    }
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int r = pthread_create(&t, &attr, watch_thread, NULL);
    pthread_attr_destroy(&attr);
    if (r != 0)
        return -r;
    watch_thread_started = true;
    return 0;
}

static void watcher_free(struct watcher *wt)
{
    if (!wt)
        return;
    watch_free(wt->w);
    json_decref(wt->events);
    free(wt);
}

int fs_create_watcher(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err)
{
    struct fs_watch *w;
    if (watch_from_request(call, req, &w, err) < 0)
        return -1;
    struct watcher *wt = xcalloc(1, sizeof(*wt));
    wt->w = w;
    wt->events = json_array();
    char hex[17];
    if (random_hex(hex, 8) < 0) {
        watcher_free(wt);
        return connect_error_set(err, CONNECT_INTERNAL, "no randomness for a watcher id");
    }
    snprintf(wt->id, sizeof(wt->id), "w%s", hex);

    pthread_mutex_lock(&watchers_lock);
    int r = ensure_thread();
    size_t slot = FS_MAX_WATCHERS;
    for (size_t k = 0; k < FS_MAX_WATCHERS && r == 0; k++)
        if (!watchers[k]) {
            slot = k;
            break;
        }
    if (r == 0 && slot == FS_MAX_WATCHERS)
        r = -EMFILE;
    if (r == 0) {
        wt->serial = ++watcher_serial;
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = wt->serial };
        if (epoll_ctl(watch_epoll, EPOLL_CTL_ADD, w->fd, &ev) < 0)
            r = -errno;
    }
    if (r == 0)
        watchers[slot] = wt;
    pthread_mutex_unlock(&watchers_lock);
    if (r == -EMFILE) {
        watcher_free(wt);
        return connect_error_set(err, CONNECT_RESOURCE_EXHAUSTED, "too many watchers (at most %d)",
                                 FS_MAX_WATCHERS);
    }
    if (r < 0) {
        watcher_free(wt);
        return connect_error_set(err, CONNECT_INTERNAL, "cannot start watcher: %s", errno_to_string(-r));
    }
    *ret_resp = json_pack("{s:s}", "watcherId", wt->id);
    return 0;
}

static struct watcher **find_watcher(const char *id)
{
    for (size_t k = 0; k < FS_MAX_WATCHERS; k++)
        if (watchers[k] && streq(watchers[k]->id, id))
            return &watchers[k];
    return NULL;
}

int fs_get_watcher_events(struct connect_call *call, json_t *req, json_t **ret_resp,
                          struct connect_error *err)
{
    const char *id;
    if (fs_req_string(req, "watcherId", "watcher_id", &id, err) < 0)
        return -1;
    pthread_mutex_lock(&watchers_lock);
    struct watcher **slot = find_watcher(id);
    int r = 0;
    if (!slot) {
        r = connect_error_set(err, CONNECT_NOT_FOUND, "watcher with id %s not found", id);
    } else {
        struct watcher *wt = *slot;
        watcher_drain(wt); /* what happened just before this call, too */
        if (wt->error[0]) {
            r = connect_error_set(err, CONNECT_INTERNAL, "%s", wt->error);
        } else {
            *ret_resp = json_pack("{s:o}", "events", wt->events);
            wt->events = json_array();
        }
    }
    pthread_mutex_unlock(&watchers_lock);
    return r;
}

int fs_remove_watcher(struct connect_call *call, json_t *req, json_t **ret_resp, struct connect_error *err)
{
    const char *id;
    if (fs_req_string(req, "watcherId", "watcher_id", &id, err) < 0)
        return -1;
    pthread_mutex_lock(&watchers_lock);
    struct watcher **slot = find_watcher(id);
    struct watcher *wt = slot ? *slot : NULL;
    if (slot) {
        *slot = NULL;
        epoll_ctl(watch_epoll, EPOLL_CTL_DEL, wt->w->fd, NULL);
    }
    pthread_mutex_unlock(&watchers_lock);
    if (!wt)
        return connect_error_set(err, CONNECT_NOT_FOUND, "watcher with id %s not found", id);
    watcher_free(wt);
    *ret_resp = json_object();
    return 0;
}

void fs_watchers_shutdown(void)
{
    pthread_mutex_lock(&watchers_lock);
    for (size_t k = 0; k < FS_MAX_WATCHERS; k++) {
        if (!watchers[k])
            continue;
        epoll_ctl(watch_epoll, EPOLL_CTL_DEL, watchers[k]->w->fd, NULL);
        watcher_free(watchers[k]);
        watchers[k] = NULL;
    }
    pthread_mutex_unlock(&watchers_lock);
}
