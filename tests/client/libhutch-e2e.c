/* libhutch end to end, through the public header and libhutch.so only: a sandbox's life, a
 * process's output, exit codes, input, signals and terminal size, and a file both ways.
 * Runs against the server in E2B_API_URL with the key in E2B_API_KEY (tests/e2e starts one
 * and runs this program); prints TAP. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hutch/hutch.h"

static int n_test, n_failed;

__attribute__((format(printf, 2, 3))) static void ok(bool cond, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One TAP line, whatever the message holds. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    printf("%s %d - %s\n", cond ? "ok" : "not ok", ++n_test, msg);
    fflush(stdout);
    if (!cond)
        n_failed++;
}

static void check(struct hutch_client *c, enum hutch_code code, enum hutch_code want, const char *what)
{
    ok(code == want, "%s: %s (want %s) %s", what, hutch_strerror(code), hutch_strerror(want),
       hutch_client_last_message(c));
}

/* Output collected by the callbacks. */
struct out {
    char stdout_[65536];
    size_t n_out;
    char stderr_[65536];
    size_t n_err;
    struct hutch_client *control; /* a second client, for calls from the start callback */
    const char *sandbox_id;
    int action;
    enum hutch_code action_code;
};

enum { ACT_NONE, ACT_INPUT, ACT_SIGNAL, ACT_RESIZE };

static int append(char *dst, size_t *n, const void *data, size_t len)
{
    if (*n + len >= 65536)
        return 1;
    memcpy(dst + *n, data, len);
    *n += len;
    dst[*n] = '\0';
    return 0;
}

static int on_stdout(void *userdata, const void *data, size_t len)
{
    struct out *o = userdata;
    return append(o->stdout_, &o->n_out, data, len);
}

static int on_stderr(void *userdata, const void *data, size_t len)
{
    struct out *o = userdata;
    return append(o->stderr_, &o->n_err, data, len);
}

static void on_start(void *userdata, uint32_t pid)
{
    struct out *o = userdata;
    switch (o->action) {
    case ACT_INPUT:
        o->action_code = hutch_process_send_input(o->control, o->sandbox_id, pid, "piped\n", 6, false);
        if (o->action_code == HUTCH_OK)
            o->action_code = hutch_process_close_stdin(o->control, o->sandbox_id, pid);
        break;
    case ACT_SIGNAL:
        o->action_code = hutch_process_signal(o->control, o->sandbox_id, pid, SIGTERM);
        break;
    case ACT_RESIZE:
        o->action_code = hutch_process_resize(o->control, o->sandbox_id, pid, 77, 33);
        if (o->action_code == HUTCH_OK)
            o->action_code = hutch_process_send_input(o->control, o->sandbox_id, pid, "\r", 1, true);
        break;
    }
}

static void reset(struct out *o, struct hutch_exec_options *opts, int action)
{
    o->n_out = o->n_err = 0;
    o->stdout_[0] = o->stderr_[0] = '\0';
    o->action = action;
    o->action_code = HUTCH_OK;
    memset(opts, 0, sizeof(*opts));
    opts->on_stdout = on_stdout;
    opts->on_stderr = on_stderr;
    opts->on_pty = on_stdout;
    opts->on_start = on_start;
    opts->userdata = o;
}

static bool same_files(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int x = fgetc(fa), y = fgetc(fb);
        if (x != y)
            same = false;
        if (x == EOF || y == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    ok(strcmp(hutch_strerror(HUTCH_E_NOT_FOUND), "not found") == 0, "hutch_strerror names codes");
    ok(hutch_strerror((enum hutch_code)999) != NULL, "hutch_strerror of an unknown code");

    /* Without a key (argument or environment) nothing is sent. */
    char *key = getenv("E2B_API_KEY") ? strdup(getenv("E2B_API_KEY")) : NULL;
    unsetenv("E2B_API_KEY");
    struct hutch_client *nokey = hutch_client_new(NULL, NULL);
    if (key)
        setenv("E2B_API_KEY", key, 1);
    free(key);
    struct hutch_sandbox_info *none;
    size_t n_none;
    check(nokey, hutch_sandbox_list(nokey, NULL, &none, &n_none), HUTCH_E_AUTH, "no key");
    ok(strstr(hutch_client_last_message(nokey), "E2B_API_KEY") != NULL, "says how to give one");
    hutch_client_free(nokey);
    struct hutch_client *down = hutch_client_new("http://127.0.0.1:1", "e2b_00");
    check(down, hutch_sandbox_kill(down, "abc"), HUTCH_E_NETWORK, "nothing listening");
    hutch_client_free(down);

    struct hutch_client *c = hutch_client_new(NULL, NULL);
    ok(c != NULL, "client from the environment");
    if (!c)
        return 1;
    struct hutch_sandbox_info info = { 0 };
    check(c, hutch_sandbox_info(c, "nosuchsandbox", &info), HUTCH_E_NOT_FOUND, "info of an unknown sandbox");
    ok(strstr(hutch_client_last_message(c), "not found") != NULL, "the server's message: %s",
       hutch_client_last_message(c));
    check(c, hutch_sandbox_info(c, "../etc", &info), HUTCH_E_INVALID, "a malformed id");

    struct hutch_kv env[] = { { "GREETING", "hi there" } };
    struct hutch_kv meta[] = { { "suite", "libhutch-e2e" } };
    struct hutch_sandbox_create_options co = {
        .timeout_s = 120,
        .env = env,
        .n_env = 1,
        .metadata = meta,
        .n_metadata = 1,
    };
    enum hutch_code code = hutch_sandbox_create(c, &co, &info);
    check(c, code, HUTCH_OK, "create");
    if (code != HUTCH_OK)
        return 1;
    char id[128];
    snprintf(id, sizeof(id), "%s", info.sandbox_id);
    printf("# sandbox %s\n", id);
    ok(info.envd_access_token != NULL, "create returns an access token");
    hutch_sandbox_info_release(&info);

    check(c, hutch_sandbox_info(c, id, &info), HUTCH_OK, "info");
    ok(info.state && strcmp(info.state, "running") == 0, "state running");
    ok(info.n_metadata == 1 && strcmp(info.metadata[0].key, "suite") == 0, "metadata");
    ok(info.json && strstr(info.json, "\"sandboxID\""), "raw JSON kept");
    hutch_sandbox_info_release(&info);

    struct hutch_sandbox_info *items = NULL;
    size_t n = 0;
    struct hutch_sandbox_list_options lo = { .state = "running", .metadata = meta, .n_metadata = 1 };
    check(c, hutch_sandbox_list(c, &lo, &items, &n), HUTCH_OK, "list");
    bool listed = false;
    for (size_t i = 0; i < n; i++)
        listed |= strcmp(items[i].sandbox_id, id) == 0;
    ok(listed, "list by metadata finds it (%zu listed)", n);
    hutch_sandbox_info_array_free(items, n);
    check(c, hutch_sandbox_set_timeout(c, id, 90), HUTCH_OK, "set timeout");

    struct out o = { 0 };
    o.control = hutch_client_dup(c);
    o.sandbox_id = id;
    struct hutch_exec_options opts;
    int exit_code = -1;

    reset(&o, &opts, ACT_NONE);
    const char *argv1[] = { "sh", "-c", "echo out $GREETING; echo err >&2; exit 5", NULL };
    check(c, hutch_exec(c, id, argv1, &opts, &exit_code), HUTCH_OK, "exec");
    ok(exit_code == 5, "exit code %d", exit_code);
    ok(strcmp(o.stdout_, "out hi there\n") == 0, "stdout '%s'", o.stdout_);
    ok(strcmp(o.stderr_, "err\n") == 0, "stderr '%s'", o.stderr_);

    reset(&o, &opts, ACT_NONE);
    struct hutch_kv env2[] = { { "X", "1" } };
    opts.env = env2;
    opts.n_env = 1;
    opts.cwd = "/tmp";
    opts.user = "root";
    check(c, hutch_exec_command(c, id, "echo $X $(pwd) $(id -un)", &opts, &exit_code), HUTCH_OK,
          "exec_command");
    ok(exit_code == 0 && strcmp(o.stdout_, "1 /tmp root\n") == 0, "env, cwd, user: '%s'", o.stdout_);

    reset(&o, &opts, ACT_NONE);
    const char *argv2[] = { "sh", "-c", "kill -KILL $$", NULL };
    check(c, hutch_exec(c, id, argv2, &opts, &exit_code), HUTCH_OK, "exec killed");
    ok(exit_code == 128 + SIGKILL, "signal exit %d", exit_code);

    reset(&o, &opts, ACT_INPUT);
    opts.stdin_open = true;
    const char *argv3[] = { "cat", NULL };
    check(c, hutch_exec(c, id, argv3, &opts, &exit_code), HUTCH_OK, "exec with stdin");
    check(o.control, o.action_code, HUTCH_OK, "send input and close stdin");
    ok(exit_code == 0 && strcmp(o.stdout_, "piped\n") == 0, "cat echoes input: '%s'", o.stdout_);

    reset(&o, &opts, ACT_SIGNAL);
    const char *argv4[] = { "sleep", "100", NULL };
    check(c, hutch_exec(c, id, argv4, &opts, &exit_code), HUTCH_OK, "exec sleep");
    check(o.control, o.action_code, HUTCH_OK, "signal");
    ok(exit_code == 128 + SIGTERM, "terminated: %d", exit_code);

    reset(&o, &opts, ACT_NONE);
    opts.pty = true;
    opts.cols = 100;
    opts.rows = 30;
    const char *argv5[] = { "stty", "size", NULL };
    check(c, hutch_exec(c, id, argv5, &opts, &exit_code), HUTCH_OK, "exec on a pty");
    ok(strcmp(o.stdout_, "30 100\r\n") == 0, "pty size: '%s'", o.stdout_);

    reset(&o, &opts, ACT_RESIZE);
    opts.pty = true;
    const char *argv5b[] = { "sh", "-c", "read x; stty size", NULL };
    check(c, hutch_exec(c, id, argv5b, &opts, &exit_code), HUTCH_OK, "exec on a pty, resized");
    check(o.control, o.action_code, HUTCH_OK, "resize");
    ok(strstr(o.stdout_, "33 77\r\n") != NULL, "resized: '%s'", o.stdout_);

    reset(&o, &opts, ACT_NONE);
    const char *argv6[] = { "no-such-program-here", NULL };
    code = hutch_exec(c, id, argv6, &opts, &exit_code);
    ok(code != HUTCH_OK && strstr(hutch_client_last_message(c), "no-such-program-here"),
       "a missing program fails with envd's message: %s", hutch_client_last_message(c));
    check(c, hutch_process_signal(c, id, 1, SIGHUP), HUTCH_E_INVALID, "only TERM and KILL");

    /* A 3 MiB file with every byte value, there and back. */
    char src[512], back[512];
    snprintf(src, sizeof(src), "%s/libhutch-src.bin", dir);
    snprintf(back, sizeof(back), "%s/libhutch-back.bin", dir);
    FILE *f = fopen(src, "wb");
    for (unsigned i = 0; f && i < 3u << 20; i++)
        fputc((int)((i * 2654435761u) >> 13) & 0xff, f);
    if (f)
        fclose(f);
    check(c, hutch_file_upload(c, id, src, "/tmp/up/libhutch.bin", NULL), HUTCH_OK, "upload");
    check(c, hutch_file_download(c, id, "/tmp/up/libhutch.bin", back, NULL), HUTCH_OK, "download");
    ok(same_files(src, back), "the file came back unchanged");
    reset(&o, &opts, ACT_NONE);
    const char *argv7[] = { "stat", "-c", "%s %U", "/tmp/up/libhutch.bin", NULL };
    check(c, hutch_exec(c, id, argv7, &opts, &exit_code), HUTCH_OK, "stat");
    ok(strcmp(o.stdout_, "3145728 user\n") == 0, "size and owner inside: '%s'", o.stdout_);
    int fd = open(back, O_WRONLY | O_TRUNC | O_CLOEXEC);
    check(c, hutch_file_download_fd(c, id, "/tmp/up/libhutch.bin", fd, NULL), HUTCH_OK, "download to an fd");
    close(fd);
    ok(same_files(src, back), "the fd got the file too");
    check(c, hutch_file_download(c, id, "/nonexistent", back, NULL), HUTCH_E_NOT_FOUND, "download missing");
    ok(same_files(src, back), "a failed download leaves the local file alone");
    check(c, hutch_file_upload(c, id, "/nonexistent/local", "/tmp/x", NULL), HUTCH_E_IO, "upload missing");
    unlink(src);
    unlink(back);

    struct hutch_log_entry *logs = NULL;
    check(c, hutch_sandbox_logs(c, id, 0, 0, &logs, &n), HUTCH_OK, "logs");
    ok(n >= 1 && logs[0].message && logs[0].level, "logs have entries (%zu)", n);
    hutch_log_entry_array_free(logs, n);

    code = hutch_sandbox_pause(c, id);
    ok(code == HUTCH_OK || code == HUTCH_E_UNSUPPORTED, "pause: %s %s", hutch_strerror(code),
       hutch_client_last_message(c));

    check(c, hutch_sandbox_kill(c, id), HUTCH_OK, "kill");
    check(c, hutch_sandbox_kill(c, id), HUTCH_E_NOT_FOUND, "kill again");
    check(c, hutch_sandbox_info(c, id, &info), HUTCH_E_NOT_FOUND, "info after kill");
    reset(&o, &opts, ACT_NONE);
    code = hutch_exec(c, id, argv1, &opts, &exit_code);
    ok(code == HUTCH_E_NOT_FOUND || code == HUTCH_E_UNAVAILABLE, "exec after kill: %s", hutch_strerror(code));

    hutch_client_free(o.control);
    hutch_client_free(c);
    printf("1..%d\n", n_test);
    return n_failed ? 1 : 0;
}
