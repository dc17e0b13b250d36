/* libhutch: processes inside a sandbox through envd's Connect service (e2b-compat §3.3-§3.6):
 * Start as a server stream of 5-byte envelopes (JSON codec), and the unary SendInput,
 * CloseStdin, SendSignal and Update. The stream is parsed as it arrives and never held whole:
 * only one envelope at a time is buffered, up to ENVELOPE_MAX. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "client/client-internal.h"
#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/banned.h"

#define KEEPALIVE_INTERVAL_S 30
/* With a keepalive every 30 s, two minutes of silence means the connection is dead. */
#define STREAM_SILENCE_S 120
/* envd accepts request messages up to 4 MiB; input is sent in pieces well below that. */
#define INPUT_CHUNK (512u << 10)

void envelope_reader_init(struct envelope_reader *r)
{
    buf_init(&r->buf, ENVELOPE_HEADER + ENVELOPE_MAX);
}

void envelope_reader_release(struct envelope_reader *r)
{
    buf_release(&r->buf);
}

int envelope_feed(struct envelope_reader *r, const char *data, size_t len, envelope_cb cb, void *userdata)
{
    while (len > 0) {
        size_t have = r->buf.len;
        size_t want = ENVELOPE_HEADER;
        if (have >= ENVELOPE_HEADER) {
            const unsigned char *h = (const unsigned char *)r->buf.data;
            uint32_t plen = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
            if (plen > ENVELOPE_MAX)
                return -EMSGSIZE;
            want = ENVELOPE_HEADER + plen;
        }
        size_t take = MIN(len, want - have);
        if (buf_append(&r->buf, data, take) < 0)
            return -EMSGSIZE;
        data += take;
        len -= take;
        if (r->buf.len < want)
            continue;
        if (want == ENVELOPE_HEADER) {
            /* The header is complete: an empty payload is a complete envelope too. */
            const unsigned char *h = (const unsigned char *)r->buf.data;
            uint32_t plen = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
            if (plen > ENVELOPE_MAX)
                return -EMSGSIZE;
            if (plen > 0)
                continue;
        }
        uint8_t flags = (uint8_t)r->buf.data[0];
        int k = cb(userdata, flags, r->buf.data + ENVELOPE_HEADER, r->buf.len - ENVELOPE_HEADER);
        buf_reset(&r->buf);
        if (k < 0)
            return k;
    }
    return 0;
}

bool envelope_reader_idle(const struct envelope_reader *r)
{
    return r->buf.len == 0;
}

/* The Go names envd gives signals in an end event's status ("signal: killed"). */
static int signal_from_status(const char *status)
{
    static const struct {
        const char *name;
        int sig;
    } names[] = {
        { "hangup", SIGHUP },
        { "interrupt", SIGINT },
        { "quit", SIGQUIT },
        { "illegal instruction", SIGILL },
        { "trace/breakpoint trap", SIGTRAP },
        { "aborted", SIGABRT },
        { "bus error", SIGBUS },
        { "floating point exception", SIGFPE },
        { "killed", SIGKILL },
        { "user defined signal 1", SIGUSR1 },
        { "segmentation fault", SIGSEGV },
        { "user defined signal 2", SIGUSR2 },
        { "broken pipe", SIGPIPE },
        { "alarm clock", SIGALRM },
        { "terminated", SIGTERM },
        { "stack fault", SIGSTKFLT },
        { "CPU time limit exceeded", SIGXCPU },
        { "file size limit exceeded", SIGXFSZ },
        { "virtual timer expired", SIGVTALRM },
        { "profiling timer expired", SIGPROF },
        { "I/O possible", SIGIO },
        { "power failure", SIGPWR },
        { "bad system call", SIGSYS },
    };
    if (!status || !str_startswith(status, "signal: "))
        return 0;
    const char *name = status + strlen("signal: ");
    size_t n = strlen(name);
    const char *core = strstr(name, " (core dumped)");
    if (core)
        n = (size_t)(core - name);
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strlen(names[i].name) == n && memcmp(names[i].name, name, n) == 0)
            return names[i].sig;
    /* envd names a signal Go has no name for "signal N". */
    char num[16];
    if (str_startswith(name, "signal ") && n - strlen("signal ") < sizeof(num)) {
        memcpy(num, name + strlen("signal "), n - strlen("signal "));
        num[n - strlen("signal ")] = '\0';
        int sig;
        if (parse_int(num, &sig) == 0 && sig > 0 && sig < 128)
            return sig;
    }
    return 0;
}

struct exec_state {
    struct hutch_client *c;
    const struct hutch_exec_options *o;
    struct envelope_reader reader;
    bool checked_status;
    long status;
    struct buf error_body;
    bool started, ended, stream_end;
    uint32_t pid;
    int exit_code;
    bool aborted;
    enum hutch_code stream_code; /* an error in the stream itself, HUTCH_OK when none */
};

static int on_data(struct exec_state *s, const json_t *data)
{
    static const char *const kinds[] = { "stdout", "stderr", "pty" };
    hutch_output_cb cbs[] = { s->o->on_stdout, s->o->on_stderr, s->o->on_pty };
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
        const char *b64 = json_get_string(data, kinds[i]);
        if (!b64)
            continue;
        _cleanup_free_ unsigned char *bytes = NULL;
        size_t len;
        if (base64_decode(b64, strlen(b64), &bytes, &len) < 0) {
            s->stream_code = client_fail(s->c, HUTCH_E_SERVER, "process output is not valid base64");
            return -EPROTO;
        }
        if (cbs[i] && len > 0 && cbs[i](s->o->userdata, bytes, len) != 0) {
            s->aborted = true;
            return -ECANCELED;
        }
    }
    return 0;
}

static int on_envelope(void *userdata, uint8_t flags, const char *payload, size_t len)
{
    struct exec_state *s = userdata;
    if (s->stream_end) {
        s->stream_code = client_fail(s->c, HUTCH_E_SERVER, "data after the end of the stream");
        return -EPROTO;
    }
    if (flags & 0x01) {
        s->stream_code = client_fail(s->c, HUTCH_E_SERVER, "compressed envelope, which was not asked for");
        return -EPROTO;
    }
    _cleanup_json_ json_t *msg = json_loadb(payload, len, 0, NULL);
    if (!json_is_object(msg)) {
        s->stream_code = client_fail(s->c, HUTCH_E_SERVER, "a stream message is not a JSON object");
        return -EPROTO;
    }
    if (flags & 0x02) {
        s->stream_end = true;
        json_t *err = json_object_get(msg, "error");
        if (json_is_object(err)) {
            const char *m = json_get_string(err, "message");
            const char *code = json_get_string(err, "code");
            s->stream_code = client_fail(s->c, client_code_from_connect(code), "%s",
                                         m && *m ? m
                                         : code  ? code
                                                 : "the process stream failed");
        }
        return 0;
    }
    json_t *event = json_object_get(msg, "event");
    json_t *v;
    if ((v = json_object_get(event, "start"))) {
        json_t *pid = json_object_get(v, "pid");
        s->pid = json_is_integer(pid) ? (uint32_t)json_integer_value(pid) : 0;
        if (!s->started && s->o->on_start)
            s->o->on_start(s->o->userdata, s->pid);
        s->started = true;
    } else if ((v = json_object_get(event, "data"))) {
        return on_data(s, v);
    } else if ((v = json_object_get(event, "end"))) {
        json_t *code = json_object_get(v, "exitCode");
        if (!code)
            code = json_object_get(v, "exit_code");
        bool exited = json_is_true(json_object_get(v, "exited"));
        const char *status = json_get_string(v, "status");
        if (exited) {
            s->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : 0;
        } else {
            int sig = signal_from_status(status);
            s->exit_code = sig ? 128 + sig : json_is_integer(code) ? (int)json_integer_value(code) : -1;
            if (s->exit_code < 0)
                s->exit_code = 255;
        }
        s->ended = true;
    }
    /* keepalive, and events of later versions, need nothing. */
    return 0;
}

static size_t exec_write(char *data, size_t size, size_t n, void *userdata)
{
    struct exec_state *s = userdata;
    size_t len = size * n;
    if (!s->checked_status) {
        curl_easy_getinfo(s->c->curl, CURLINFO_RESPONSE_CODE, &s->status);
        s->checked_status = true;
    }
    if (s->status != 200) {
        buf_append(&s->error_body, data, MIN(len, s->error_body.max - s->error_body.len));
        return len;
    }
    if (envelope_feed(&s->reader, data, len, on_envelope, s) < 0) {
        if (!s->aborted && s->stream_code == HUTCH_OK)
            s->stream_code =
                client_fail(s->c, HUTCH_E_SERVER, "a stream message is larger than %u bytes", ENVELOPE_MAX);
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

static bool env_has(const struct hutch_kv *env, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (env[i].key && streq(env[i].key, key))
            return true;
    return false;
}

static json_t *start_request(const char *const *argv, const struct hutch_exec_options *o)
{
    json_t *args = json_array();
    for (size_t i = 1; argv[i]; i++)
        json_array_append_new(args, json_string(argv[i]));
    json_t *envs = json_object();
    if (o->pty && !env_has(o->env, o->n_env, "TERM"))
        json_object_set_new(envs, "TERM", json_string("xterm-256color"));
    for (size_t i = 0; i < o->n_env; i++)
        json_object_set_new(envs, o->env[i].key, json_string(o->env[i].value));
    json_t *process = json_pack("{s:s, s:o, s:o}", "cmd", argv[0], "args", args, "envs", envs);
    if (!process)
        return NULL;
    if (o->cwd)
        json_object_set_new(process, "cwd", json_string(o->cwd));
    json_t *req = json_pack("{s:o}", "process", process);
    if (o->pty)
        json_object_set_new(req, "pty",
                            json_pack("{s:{s:i, s:i}}", "size", "cols", o->cols ? o->cols : 80, "rows",
                                      o->rows ? o->rows : 24));
    else
        json_object_set_new(req, "stdin", json_boolean(o->stdin_open));
    if (o->tag)
        json_object_set_new(req, "tag", json_string(o->tag));
    return req;
}

static bool strings_valid(const char *const *argv, const struct hutch_exec_options *o)
{
    for (size_t i = 0; argv[i]; i++)
        if (!utf8_is_valid(argv[i], strlen(argv[i])))
            return false;
    if (o->n_env > 0 && !o->env)
        return false;
    for (size_t i = 0; i < o->n_env; i++)
        if (!o->env[i].key || !*o->env[i].key || !o->env[i].value ||
            !utf8_is_valid(o->env[i].key, strlen(o->env[i].key)) ||
            !utf8_is_valid(o->env[i].value, strlen(o->env[i].value)))
            return false;
    return (!o->cwd || utf8_is_valid(o->cwd, strlen(o->cwd))) && (!o->user || !strchr(o->user, ':')) &&
           (!o->tag || utf8_is_valid(o->tag, strlen(o->tag)));
}

HUTCH_EXPORT enum hutch_code hutch_exec(struct hutch_client *c, const char *sandbox_id,
                                        const char *const *argv, const struct hutch_exec_options *opts,
                                        int *ret_exit_code)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    struct hutch_exec_options none = { 0 };
    if (!opts)
        opts = &none;
    if (!sandbox_id || !*sandbox_id)
        return client_fail(c, HUTCH_E_INVALID, "no sandbox id");
    if (!argv || !argv[0] || !*argv[0])
        return client_fail(c, HUTCH_E_INVALID, "no command to run");
    if (!strings_valid(argv, opts))
        return client_fail(
            c, HUTCH_E_INVALID,
            "arguments, environment, cwd and user must be valid UTF-8 (and env keys non-empty)");

    _cleanup_slist_ struct curl_slist *headers = NULL;
    enum hutch_code code = client_envd_headers(c, sandbox_id, opts->user, &headers);
    if (code != HUTCH_OK)
        return code;
    client_header_add(&headers, "Content-Type: application/connect+json");
    client_header_add(&headers, "Connect-Protocol-Version: 1");
    client_header_add(&headers, "Keepalive-Ping-Interval: %d", KEEPALIVE_INTERVAL_S);
    client_header_add(&headers, "Expect:");
    if (opts->timeout_ms)
        client_header_add(&headers, "Connect-Timeout-Ms: %u", opts->timeout_ms);

    _cleanup_json_ json_t *req = start_request(argv, opts);
    if (!req)
        return client_fail(c, HUTCH_E_INVALID, "could not encode the request");
    size_t plen;
    _cleanup_free_ char *payload = json_dump_compact(req, &plen);
    _cleanup_free_ char *body = xmalloc(ENVELOPE_HEADER + plen);
    body[0] = 0;
    body[1] = (char)(plen >> 24);
    body[2] = (char)(plen >> 16);
    body[3] = (char)(plen >> 8);
    body[4] = (char)plen;
    memcpy(body + ENVELOPE_HEADER, payload, plen);

    struct exec_state s = { .c = c, .o = opts };
    envelope_reader_init(&s.reader);
    buf_init(&s.error_body, CLIENT_MAX_ERROR_BODY);

    CURL *curl = client_curl(c);
    _cleanup_free_ char *url = xasprintf("%s/process.Process/Start", client_sandbox_base(c));
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(ENVELOPE_HEADER + plen));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, exec_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)STREAM_SILENCE_S);
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);

    CURLcode r = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    c->last_status = status;
    if (s.aborted)
        code = client_fail(c, HUTCH_E_ABORTED, "stopped by the output callback (the process may still run)");
    else if (s.stream_code != HUTCH_OK)
        code = s.stream_code;
    else if (r != CURLE_OK)
        code = client_fail(
            c, client_code_from_curl(r) == HUTCH_E_ABORTED ? HUTCH_E_NETWORK : client_code_from_curl(r),
            "%s: %s", client_sandbox_base(c), *errbuf ? errbuf : curl_easy_strerror(r));
    else if (status != 200)
        code = client_fail_http(c, status, s.error_body.data, s.error_body.len, "process.Process/Start");
    else if (!s.ended)
        code = client_fail(c, HUTCH_E_NETWORK, "the process stream ended before the process did");
    else if (ret_exit_code)
        *ret_exit_code = s.exit_code;

    envelope_reader_release(&s.reader);
    buf_release(&s.error_body);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    return code;
}

HUTCH_EXPORT enum hutch_code hutch_exec_command(struct hutch_client *c, const char *sandbox_id,
                                                const char *command, const struct hutch_exec_options *opts,
                                                int *ret_exit_code)
{
    if (!c)
        return HUTCH_E_INVALID;
    if (!command) {
        client_begin(c);
        return client_fail(c, HUTCH_E_INVALID, "no command to run");
    }
    const char *argv[] = { "/bin/bash", "-l", "-c", command, NULL };
    return hutch_exec(c, sandbox_id, argv, opts, ret_exit_code);
}

static json_t *selector(uint32_t pid)
{
    return json_pack("{s:I}", "pid", (json_int_t)pid);
}

static enum hutch_code process_call(struct hutch_client *c, const char *sandbox_id, const char *method,
                                    json_t *req)
{
    if (!sandbox_id || !*sandbox_id)
        return client_fail(c, HUTCH_E_INVALID, "no sandbox id");
    _cleanup_free_ char *path = xasprintf("/process.Process/%s", method);
    return client_connect_unary(c, sandbox_id, path, req, NULL);
}

HUTCH_EXPORT enum hutch_code hutch_process_send_input(struct hutch_client *c, const char *sandbox_id,
                                                      uint32_t pid, const void *data, size_t len, bool pty)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    if (len > 0 && !data)
        return client_fail(c, HUTCH_E_INVALID, "no input data");
    const char *p = data;
    do {
        size_t n = MIN(len, INPUT_CHUNK);
        _cleanup_free_ char *b64 = base64_encode(p, n, true);
        _cleanup_json_ json_t *req =
            json_pack("{s:o, s:{s:s}}", "process", selector(pid), "input", pty ? "pty" : "stdin", b64);
        enum hutch_code code = process_call(c, sandbox_id, "SendInput", req);
        if (code != HUTCH_OK)
            return code;
        p += n;
        len -= n;
    } while (len > 0);
    return HUTCH_OK;
}

HUTCH_EXPORT enum hutch_code hutch_process_close_stdin(struct hutch_client *c, const char *sandbox_id,
                                                       uint32_t pid)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    _cleanup_json_ json_t *req = json_pack("{s:o}", "process", selector(pid));
    return process_call(c, sandbox_id, "CloseStdin", req);
}

HUTCH_EXPORT enum hutch_code hutch_process_signal(struct hutch_client *c, const char *sandbox_id,
                                                  uint32_t pid, int signum)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    const char *name = signum == SIGKILL ? "SIGNAL_SIGKILL" : signum == SIGTERM ? "SIGNAL_SIGTERM" : NULL;
    if (!name)
        return client_fail(c, HUTCH_E_INVALID, "only SIGTERM and SIGKILL can be sent, not %d", signum);
    _cleanup_json_ json_t *req = json_pack("{s:o, s:s}", "process", selector(pid), "signal", name);
    return process_call(c, sandbox_id, "SendSignal", req);
}

HUTCH_EXPORT enum hutch_code hutch_process_resize(struct hutch_client *c, const char *sandbox_id,
                                                  uint32_t pid, uint16_t cols, uint16_t rows)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    if (cols == 0 || rows == 0)
        return client_fail(c, HUTCH_E_INVALID, "a terminal needs at least one column and one row");
    _cleanup_json_ json_t *req = json_pack("{s:o, s:{s:{s:i, s:i}}}", "process", selector(pid), "pty", "size",
                                           "cols", (int)cols, "rows", (int)rows);
    return process_call(c, sandbox_id, "Update", req);
}
