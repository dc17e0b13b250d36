/* One execution: see execute.h. The MIME table follows E2B's server (api/models/result.py). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/json-util.h"
#include "common/xalloc.h"
#include "interpd/execute.h"
#include "common/banned.h"

/* How long an execution on a kernel with late output waits after idle for more. */
#define LATE_OUTPUT_GRACE (20 * USEC_PER_MSEC)

int execution_start(struct execution *x, struct kernel *k, const char *code, bool silent)
{
    *x = (struct execution){ .kernel = k, .pending = json_array() };
    /* stop_on_error false: after a failed (non-silent) execution ipykernel would otherwise abort
     * every execute_request that reaches it before its deferred stop_aborting callback runs
     * (kernelbase.py _abort_queues, stop_on_error_timeout 0): an "aborted" reply with no output.
     * interpd never queues requests in a kernel (the gate serializes them), so there is nothing
     * to abort, and the next request (the silent env restore, or the user's next code sent at
     * once) would race that callback and be dropped. */
    json_t *content =
        json_pack("{s:s, s:b, s:b, s:{}, s:b, s:b}", "code", code, "silent", silent, "store_history", !silent,
                  "user_expressions", "allow_stdin", 0, "stop_on_error", 0);
    if (!content)
        return -EINVAL; /* code was not valid UTF-8 */
    return kernel_send(k, KERNEL_SHELL, "execute_request", content, x->msg_id);
}

void execution_release(struct execution *x)
{
    json_decref(x->pending);
    x->pending = NULL;
}

static const struct {
    const char *mime, *field;
} mime_fields[] = {
    { "text/plain", "text" },        { "text/html", "html" },
    { "text/markdown", "markdown" }, { "image/svg+xml", "svg" },
    { "image/png", "png" },          { "image/jpeg", "jpeg" },
    { "application/pdf", "pdf" },    { "text/latex", "latex" },
    { "application/json", "json" },  { "application/javascript", "javascript" },
    { "e2b/data", "data" },          { "e2b/chart", "chart" },
};

json_t *execution_result_line(const json_t *data, bool is_main_result)
{
    json_t *line = json_pack("{s:s, s:b}", "type", "result", "is_main_result", is_main_result);
    json_t *extra = NULL;
    const char *mime;
    json_t *v;
    json_object_foreach ((json_t *)data, mime, v) {
        const char *field = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(mime_fields); i++)
            if (streq(mime, mime_fields[i].mime))
                field = mime_fields[i].field;
        if (!field) {
            if (!extra)
                extra = json_object();
            json_object_set(extra, mime, v);
            continue;
        }
        const char *s = json_string_value(v);
        if (streq(field, "text") && s) {
            /* E2B strips one pair of surrounding single quotes (the repr of a Python str). */
            size_t len = strlen(s);
            if (len >= 2 && s[0] == '\'' && s[len - 1] == '\'') {
                json_object_set_new(line, field, json_stringn(s + 1, len - 2));
                continue;
            }
        }
        json_object_set(line, field, v);
    }
    if (extra)
        json_object_set_new(line, "extra", extra);
    return line;
}

static void push(struct execution *x, json_t *line)
{
    json_array_append_new(x->pending, line);
}

static void push_count(struct execution *x, const json_t *content)
{
    json_t *c = json_object_get(content, "execution_count");
    if (x->sent_count || !json_is_integer(c))
        return;
    x->sent_count = true;
    push(x,
         json_pack("{s:s, s:I}", "type", "number_of_executions", "execution_count", json_integer_value(c)));
}

static char *join_traceback(const json_t *tb)
{
    if (!json_is_array(tb))
        return xstrdup("");
    size_t n = json_array_size(tb), total = 1;
    for (size_t i = 0; i < n; i++)
        total +=
            (json_string_value(json_array_get(tb, i)) ? json_string_length(json_array_get(tb, i)) : 0) + 1;
    char *out = xmalloc(total), *p = out;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(tb, i);
        if (!json_is_string(e))
            continue;
        if (p != out)
            *p++ = '\n';
        memcpy(p, json_string_value(e), json_string_length(e));
        p += json_string_length(e);
    }
    *p = '\0';
    return out;
}

void execution_handle(struct execution *x, enum kernel_channel ch, const struct jmsg *m)
{
    if (!m->parent_id || !streq(m->parent_id, x->msg_id))
        return;
    const json_t *c = m->content;
    if (ch == KERNEL_SHELL) {
        if (streq(m->msg_type, "execute_reply")) {
            x->got_reply = true;
            x->reply_ok = streq_ptr(json_get_string(c, "status"), "ok");
            if (!x->reply_ok && !x->error_text[0])
                if (snprintf(x->error_text, sizeof(x->error_text), "%s: %s",
                             json_get_string_or(c, "ename", "Error"),
                             json_get_string_or(c, "evalue", "")) < 0)
                    x->error_text[0] = '\0';
            push_count(x, c);
        }
        return;
    }
    if (streq(m->msg_type, "status")) {
        if (streq_ptr(json_get_string(c, "execution_state"), "idle"))
            x->got_idle = true;
    } else if (streq(m->msg_type, "execute_input")) {
        push_count(x, c);
    } else if (streq(m->msg_type, "stream")) {
        const char *name = json_get_string(c, "name"), *text = json_get_string(c, "text");
        if (!text || !name)
            return;
        char ts[48];
        jmsg_iso_now(ts, sizeof(ts));
        push(x, json_pack("{s:s, s:s, s:s}", "type", streq(name, "stderr") ? "stderr" : "stdout", "text",
                          text, "timestamp", ts));
    } else if (streq(m->msg_type, "execute_result") || streq(m->msg_type, "display_data")) {
        const json_t *data = json_object_get(c, "data");
        if (json_is_object(data))
            push(x, execution_result_line(data, streq(m->msg_type, "execute_result")));
    } else if (streq(m->msg_type, "error")) {
        const char *ename = json_get_string_or(c, "ename", ""), *evalue = json_get_string_or(c, "evalue", "");
        char *tb = join_traceback(json_object_get(c, "traceback"));
        if (snprintf(x->error_text, sizeof(x->error_text), "%s: %s", ename, evalue) < 0)
            x->error_text[0] = '\0';
        push(x, json_pack("{s:s, s:s, s:s, s:s%}", "type", "error", "name", ename, "value", evalue,
                          "traceback", tb, strlen(tb)));
        free(tb);
    }
}

int execution_next(struct execution *x, usec_t timeout, json_t **ret_line)
{
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
    for (;;) {
        if (json_array_size(x->pending) > 0) {
            *ret_line = json_incref(json_array_get(x->pending, 0));
            json_array_remove(x->pending, 0);
            return EXECUTION_LINE;
        }
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (x->died)
            return EXECUTION_END;
        if (x->got_reply && x->got_idle) {
            /* Jupyter kernels send an execution's output before its idle status; Deno's may
             * not, so its executions wait a moment longer for stragglers. */
            if (!kernel_late_output(x->kernel))
                return EXECUTION_END;
            if (!x->grace_until)
                x->grace_until = now + LATE_OUTPUT_GRACE;
            if (now >= x->grace_until)
                return EXECUTION_END;
            deadline = MIN(deadline, x->grace_until);
        }
        if (now >= deadline)
            return x->grace_until && now >= x->grace_until ? EXECUTION_END : EXECUTION_TIMEOUT;
        struct jmsg m;
        enum kernel_channel ch;
        int r = kernel_next(x->kernel, deadline - now, &m, &ch);
        if (r == -ESRCH) {
            char how[128], value[256];
            x->died = true;
            snprintf(value, sizeof(value),
                     "the kernel process %s during the execution; the context's kernel restarts on its next "
                     "execution and its state is lost",
                     kernel_exit_string(x->kernel, how, sizeof(how)));
            if (snprintf(x->error_text, sizeof(x->error_text), "KernelDied: %s", value) < 0)
                x->error_text[0] = '\0';
            push(x, json_pack("{s:s, s:s, s:s, s:s}", "type", "error", "name", "KernelDied", "value", value,
                              "traceback", ""));
            continue;
        }
        if (r < 0)
            return r;
        if (r == 0)
            continue;
        execution_handle(x, ch, &m);
        jmsg_release(&m);
    }
}

int execution_run_silent(struct kernel *k, const char *code, usec_t timeout, struct error_record *err)
{
    struct execution x;
    int r = execution_start(&x, k, code, true);
    if (r < 0) {
        execution_release(&x);
        return error_set_errno(err, r, "cannot send execute_request");
    }
    usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
    for (;;) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= deadline) {
            r = error_set(err, ETIMEDOUT, "timed out");
            break;
        }
        json_t *line = NULL;
        r = execution_next(&x, deadline - now, &line);
        json_decref(line);
        if (r == EXECUTION_END) {
            if (x.died)
                r = error_set(err, ESRCH, "%s", x.error_text);
            else if (!x.reply_ok)
                r = error_set(err, EREMOTEIO, "%s", x.error_text[0] ? x.error_text : "the code failed");
            else
                r = 0;
            break;
        }
        if (r < 0) {
            error_set_errno(err, r, "cannot receive from the kernel");
            break;
        }
    }
    execution_release(&x);
    return r;
}
