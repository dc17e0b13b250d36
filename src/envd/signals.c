/* See signals.h. The loop is the only place that calls waitpid, through envd_process_reap(),
 * which holds the process table's lock so that a fresh child is always in the table first. */
#include "envd/signals.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/macro.h"
#include "envd/process.h"
#include "common/banned.h"

static sigset_t handled(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

int envd_signals_setup(bool subreaper)
{
    sigset_t set = handled();
    int r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (r != 0)
        return -r;
    struct sigaction ign = { .sa_handler = SIG_IGN };
    if (sigaction(SIGPIPE, &ign, NULL) < 0)
        return -errno;
    if (subreaper && getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        return -errno;
    return 0;
}

int envd_signals_loop(void)
{
    sigset_t set = handled();
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0)
            continue; /* EINTR */
        if (sig == SIGCHLD) {
            envd_process_reap();
            continue;
        }
        if (sig == SIGHUP)
            continue;
        return sig;
    }
}

size_t envd_signals_kill_children(usec_t timeout)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    usec_t until = now_usec(CLOCK_MONOTONIC) + timeout;
    envd_process_kill_all();
    for (;;) {
        envd_process_reap();
        size_t n = envd_process_running();
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (n == 0 || now >= until)
            return n;
        usec_t left = MIN(until - now, 100 * USEC_PER_MSEC);
        struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)left * 1000 };
        sigtimedwait(&set, NULL, &ts);
    }
}
