/* A remote process with the local terminal attached, for `hutch exec` and `hutch shell`.
 *
 * Two threads, each with its own libhutch client (a client is used by one thread at a time):
 * the runner blocks in hutch_exec() and writes output as it arrives; the main thread polls
 * local stdin, a self-pipe that signal handlers write to, and a pipe on which the runner
 * announces the process's start and end, and sends input, resizes and signals. The terminal is
 * put back in its original mode on every way out, signals included. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/macro.h"
#include "common/banned.h"

#define INPUT_MAX (32u << 10)

static int signal_pipe[2] = { -1, -1 };
static struct termios saved_termios;
static volatile sig_atomic_t termios_saved;

static void restore_terminal(void)
{
    if (termios_saved) {
        tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
        termios_saved = 0;
    }
}

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(signal_pipe[1], &b, 1) < 0) {
        /* The pipe is full: enough signals are already pending. */
    }
    errno = saved;
}

/* A fatal signal that arrives while the terminal is raw (SIGQUIT, say, from kill) must not
 * leave it raw: restore, then die of it. */
static void on_fatal(int sig)
{
    restore_terminal();
    signal(sig, SIG_DFL);
    raise(sig);
}

struct runner {
    struct hutch_client *client;
    const char *sandbox_id;
    const char *const *argv;
    struct hutch_exec_options *opts;
    int notify; /* write end: 's' started, 'e' ended */
    uint32_t pid;
    enum hutch_code code;
    int exit_code;
};

static volatile sig_atomic_t output_closed;

static int to_fd(int fd, const void *data, size_t len)
{
    /* Whoever reads our output has gone (hutch exec ... | head): stop, as a local command
     * would on SIGPIPE. */
    if (cli_write_all(fd, data, len) == -EPIPE) {
        output_closed = 1;
        return 1;
    }
    return 0;
}

static int on_stdout(void *userdata, const void *data, size_t len)
{
    return to_fd(STDOUT_FILENO, data, len);
}

static int on_stderr(void *userdata, const void *data, size_t len)
{
    return to_fd(STDERR_FILENO, data, len);
}

static void on_start(void *userdata, uint32_t pid)
{
    struct runner *r = userdata;
    r->pid = pid;
    char b = 's';
    if (write(r->notify, &b, 1) < 0)
        abort();
}

static void *run(void *userdata)
{
    struct runner *r = userdata;
    r->code = hutch_exec(r->client, r->sandbox_id, r->argv, r->opts, &r->exit_code);
    char b = 'e';
    if (write(r->notify, &b, 1) < 0)
        abort();
    return NULL;
}

static bool window_size(uint16_t *cols, uint16_t *rows)
{
    struct winsize ws;
    for (int fd = 0; fd <= 2; fd++)
        if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
            *cols = ws.ws_col;
            *rows = ws.ws_row;
            return true;
        }
    return false;
}

static void install(int sig, void (*handler)(int))
{
    struct sigaction sa = { .sa_handler = handler };
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, NULL);
}

int cli_run_remote(struct hutch_client *client, const char *cmd, const char *sandbox_id,
                   const char *const *argv, struct hutch_exec_options *opts, bool forward_stdin)
{
    /* Fetch the access token once, here, so that both clients have it. */
    struct hutch_sandbox_info info = { 0 };
    enum hutch_code code = hutch_sandbox_info(client, sandbox_id, &info);
    if (code != HUTCH_OK)
        return cli_fail(client, cmd, code);
    hutch_sandbox_info_release(&info);
    struct hutch_client *control = hutch_client_dup(client);
    if (!control) {
        fprintf(stderr, "hutch %s: out of memory\n", cmd);
        return 1;
    }

    int notify[2];
    if (pipe2(notify, O_CLOEXEC) < 0 || pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        fprintf(stderr, "hutch %s: pipe: %s\n", cmd, strerror(errno));
        hutch_client_free(control);
        return 1;
    }

    if (opts->pty && !opts->cols)
        window_size(&opts->cols, &opts->rows);
    opts->on_start = on_start;
    opts->on_stdout = on_stdout;
    opts->on_stderr = on_stderr;
    opts->on_pty = on_stdout;
    if (forward_stdin && !opts->pty)
        opts->stdin_open = true;
    struct runner r = {
        .client = client,
        .sandbox_id = sandbox_id,
        .argv = argv,
        .opts = opts,
        .notify = notify[1],
    };
    opts->userdata = &r;

    bool raw = opts->pty && forward_stdin && isatty(STDIN_FILENO);
    if (raw && tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
        struct termios t = saved_termios;
        cfmakeraw(&t);
        termios_saved = 1;
        atexit(restore_terminal);
        tcsetattr(STDIN_FILENO, TCSADRAIN, &t);
    }

    /* The runner thread takes no signals: they all reach the main thread's handlers. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    int err = pthread_create(&thread, NULL, run, &r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        restore_terminal();
        fprintf(stderr, "hutch %s: cannot start a thread: %s\n", cmd, strerror(err));
        hutch_client_free(control);
        return 1;
    }
    install(SIGWINCH, on_signal);
    install(SIGINT, on_signal);
    install(SIGTERM, on_signal);
    install(SIGHUP, on_signal);
    install(SIGQUIT, on_fatal);
    signal(SIGPIPE, SIG_IGN);

    bool started = false, ended = false, stdin_open = forward_stdin;
    int signals_seen = 0, exit_signal = 0;
    while (!ended) {
        struct pollfd fds[3] = {
            { .fd = notify[0], .events = POLLIN },
            { .fd = signal_pipe[0], .events = POLLIN },
            { .fd = started && stdin_open ? STDIN_FILENO : -1, .events = POLLIN },
        };
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0].revents) {
            char b;
            if (read(notify[0], &b, 1) == 1) {
                if (b == 's')
                    started = true;
                else
                    ended = true;
            }
        }
        if (fds[1].revents) {
            unsigned char sig;
            while (read(signal_pipe[0], &sig, 1) == 1) {
                if (sig == SIGWINCH) {
                    uint16_t cols, rows;
                    if (started && opts->pty && window_size(&cols, &rows))
                        hutch_process_resize(control, sandbox_id, r.pid, cols, rows);
                    continue;
                }
                exit_signal = sig;
                if (!started) {
                    /* Nothing to stop yet; the process would start unattended. */
                    restore_terminal();
                    _exit(128 + sig);
                }
                /* An interactive shell ignores SIGTERM, and the SDK ends a pty with SIGKILL. */
                hutch_process_signal(control, sandbox_id, r.pid,
                                     ++signals_seen > 1 || opts->pty ? SIGKILL : SIGTERM);
            }
        }
        if (fds[2].revents && !ended) {
            char data[INPUT_MAX];
            ssize_t n = read(STDIN_FILENO, data, sizeof(data));
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n > 0) {
                code = hutch_process_send_input(control, sandbox_id, r.pid, data, (size_t)n, opts->pty);
                if (code != HUTCH_OK && code != HUTCH_E_NOT_FOUND && code != HUTCH_E_INVALID) {
                    restore_terminal();
                    cli_fail(control, cmd, code);
                }
            } else {
                /* End of input: EOF for the process too (Ctrl-D on a terminal). */
                stdin_open = false;
                if (opts->pty)
                    hutch_process_send_input(control, sandbox_id, r.pid, "\x04", 1, true);
                else
                    hutch_process_close_stdin(control, sandbox_id, r.pid);
            }
        }
    }
    pthread_join(thread, NULL);
    restore_terminal();
    hutch_client_free(control);
    close(notify[0]);
    close(notify[1]);
    if (r.code == HUTCH_E_ABORTED && output_closed) {
        hutch_process_signal(client, sandbox_id, r.pid, SIGKILL);
        return 128 + SIGPIPE;
    }
    if (r.code == HUTCH_E_TIMEOUT && opts->timeout_ms) {
        /* As timeout(1) reports it. */
        cli_fail(client, cmd, r.code);
        return 124;
    }
    if (r.code != HUTCH_OK)
        return cli_fail(client, cmd, r.code);
    /* Killed on our behalf: report the signal we got, as if it had killed hutch. */
    if (exit_signal && opts->pty)
        return 128 + exit_signal;
    return r.exit_code & 0xff;
}
