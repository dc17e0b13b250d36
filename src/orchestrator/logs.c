/* See orchestrator-internal.h: collecting what a sandbox's envd writes to stdout and stderr.
 *
 * The output goes into a pipe, not a file: a file on the host would grow without bound under a
 * chatty (or hostile) sandbox, outside its disk limit. One thread reads every pipe (epoll) and
 * keeps the last LOG_MAX_LINES lines of each sandbox in memory, each cut to LOG_MAX_LINE
 * bytes. A sink is shared by its sandbox and the collector and freed by whichever lets go
 * last. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/time-util.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator-internal.h"
#include "common/banned.h"

#define LOG_MAX_LINES 1000
#define LOG_MAX_LINE 4096

struct log_line {
    int64_t at_ms;
    char *text;
};

struct log_sink {
    struct log_sink *next; /* in the collector's list while registered; under collector.lock */
    struct log_sink *prev;
    pthread_mutex_t lock;
    int refs;
    int fd; /* read end; -1 once the collector is done with it */
    struct log_line lines[LOG_MAX_LINES];
    size_t first, count; /* a ring */
    char partial[LOG_MAX_LINE + 1];
    size_t partial_len;
    bool partial_cut; /* the current line was longer than LOG_MAX_LINE */
};

struct log_collector {
    pthread_mutex_t lock;
    struct log_sink *sinks; /* registered: the collector holds a reference to each */
    int epfd;
    int wake[2]; /* a byte here stops the thread */
    pthread_t thread;
};

static void sink_unref(struct log_sink *s)
{
    pthread_mutex_lock(&s->lock);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (!last)
        return;
    for (size_t i = 0; i < s->count; i++)
        free(s->lines[(s->first + i) % LOG_MAX_LINES].text);
    safe_close(s->fd);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void push_line(struct log_sink *s, const char *text, size_t len)
{
    if (len == 0)
        return;
    size_t slot = (s->first + s->count) % LOG_MAX_LINES;
    if (s->count == LOG_MAX_LINES) {
        free(s->lines[s->first].text);
        s->first = (s->first + 1) % LOG_MAX_LINES;
        s->count--;
    }
    s->lines[slot].text = xstrndup(text, len);
    s->lines[slot].at_ms = (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC);
    s->count++;
}

/* Appends bytes to the sink, ending lines at '\n'. Called with s->lock held. */
static void feed(struct log_sink *s, const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            push_line(s, s->partial, s->partial_len);
            s->partial_len = 0;
            s->partial_cut = false;
        } else if (s->partial_len < LOG_MAX_LINE) {
            s->partial[s->partial_len++] = data[i];
        } else {
            s->partial_cut = true;
        }
    }
}

static void unregister(struct log_collector *c, struct log_sink *s)
{
    pthread_mutex_lock(&c->lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        c->sinks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&c->lock);
}

static void *collector_main(void *arg)
{
    struct log_collector *c = arg;
    struct epoll_event ev[32];
    char buf[16384];
    for (;;) {
        int n = epoll_wait(c->epfd, ev, 32, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return NULL;
        for (int i = 0; i < n; i++) {
            struct log_sink *s = ev[i].data.ptr;
            if (!s)
                return NULL; /* the wake pipe */
            ssize_t k = read(s->fd, buf, sizeof(buf));
            if (k < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            pthread_mutex_lock(&s->lock);
            if (k > 0) {
                feed(s, buf, (size_t)k);
                pthread_mutex_unlock(&s->lock);
                continue;
            }
            /* EOF or error: every writer (the sandbox's processes) is gone. */
            push_line(s, s->partial, s->partial_len);
            s->partial_len = 0;
            epoll_ctl(c->epfd, EPOLL_CTL_DEL, s->fd, NULL);
            s->fd = safe_close(s->fd);
            pthread_mutex_unlock(&s->lock);
            unregister(c, s);
            sink_unref(s);
        }
    }
}

int orch_logs_start(struct log_collector **ret, struct error_record *err)
{
    struct log_collector *c = xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->epfd < 0 || pipe2(c->wake, O_CLOEXEC) < 0) {
        int r = error_set_errno(err, errno, "log collector");
        safe_close(c->epfd);
        free(c);
        return r;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->wake[0], &ev);
    int r = pthread_create(&c->thread, NULL, collector_main, c);
    if (r != 0) {
        close(c->wake[0]);
        close(c->wake[1]);
        close(c->epfd);
        free(c);
        return error_set_errno(err, r, "starting the log collector");
    }
    *ret = c;
    return 0;
}

void orch_logs_stop(struct log_collector *c)
{
    if (!c)
        return;
    ssize_t k _unused_ = write(c->wake[1], "x", 1);
    pthread_join(c->thread, NULL);
    /* Sinks whose end the thread had not seen yet: drop the collector's references. */
    while (c->sinks) {
        struct log_sink *s = c->sinks;
        c->sinks = s->next;
        pthread_mutex_lock(&s->lock);
        s->fd = safe_close(s->fd);
        pthread_mutex_unlock(&s->lock);
        sink_unref(s);
    }
    pthread_mutex_destroy(&c->lock);
    close(c->wake[0]);
    close(c->wake[1]);
    close(c->epfd);
    free(c);
}

int orch_logs_new_sink(struct log_collector *c, struct log_sink **ret, int *ret_write_fd,
                       struct error_record *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return error_set_errno(err, errno, "pipe for sandbox output");
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    struct log_sink *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->refs = 2; /* the sandbox's and the collector's */
    s->fd = p[0];
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
        int r = error_set_errno(err, errno, "epoll_ctl");
        close(p[0]);
        close(p[1]);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return r;
    }
    pthread_mutex_lock(&c->lock);
    s->next = c->sinks;
    if (c->sinks)
        c->sinks->prev = s;
    c->sinks = s;
    pthread_mutex_unlock(&c->lock);
    *ret = s;
    *ret_write_fd = p[1];
    return 0;
}

void orch_logs_sink_unref(struct log_sink *s)
{
    if (s)
        sink_unref(s);
}

int orch_logs_read(struct log_sink *s, int64_t since_ms, size_t limit, orch_log_line_cb cb, void *userdata)
{
    pthread_mutex_lock(&s->lock);
    size_t sent = 0;
    int r = 0;
    for (size_t i = 0; i < s->count && sent < limit; i++) {
        const struct log_line *l = &s->lines[(s->first + i) % LOG_MAX_LINES];
        if (l->at_ms < since_ms)
            continue;
        r = cb(l->at_ms, l->text, userdata);
        if (r < 0)
            break;
        sent++;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}
