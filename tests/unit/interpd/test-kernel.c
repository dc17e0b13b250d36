/* Kernelspecs and the kernel lifecycle: lookup in a temporary search path, a kernel process that
 * dies during startup, and (when Debian's ipykernel is installed) a real python kernel driven
 * through execution_*: output mapping, interrupt, death, and no process left behind. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/fs-util.h"
#include "interpd/execute.h"
#include "interpd/kernel.h"
#include "tap.h"

static char root[] = "/tmp/interpd-unit-XXXXXX";

static void write_spec(const char *name, const char *json)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/kernels/%s", root, name);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/kernels/%s/kernel.json", root, name);
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    fputs(json, f);
    fclose(f);
}

static const char *const *setup_dirs(void)
{
    static char kernels[64];
    static const char *dirs[2];
    ASSERT_TRUE(mkdtemp(root) != NULL);
    snprintf(kernels, sizeof(kernels), "%s/kernels", root);
    ASSERT_EQ(mkdir(kernels, 0700), 0);
    dirs[0] = kernels;
    return dirs;
}

TEST(language_table)
{
    ASSERT_STREQ(kernel_name_for_language("python"), "python3");
    ASSERT_STREQ(kernel_name_for_language("r"), "ir");
    ASSERT_STREQ(kernel_name_for_language("javascript"), "deno");
    ASSERT_STREQ(kernel_name_for_language("typescript"), "deno");
    ASSERT_STREQ(kernel_name_for_language("bash"), "bash");
    ASSERT_TRUE(kernel_name_for_language("cobol") == NULL);
}

TEST(kernelspec_lookup)
{
    const char *const *dirs = setup_dirs();
    write_spec(
        "good",
        "{\"argv\":[\"x\",\"{connection_file}\"],\"env\":{\"A\":\"b\"},\"interrupt_mode\":\"message\"}");
    write_spec("noargv", "{\"display_name\":\"x\"}");
    write_spec("badjson", "{");
    struct kernelspec *ks = NULL;
    struct error_record err = { 0 };
    ASSERT_OK(kernelspec_find(dirs, "good", &ks, &err));
    ASSERT_STREQ(ks->argv[1], "{connection_file}");
    ASSERT_TRUE(ks->argv[2] == NULL);
    ASSERT_FALSE(ks->interrupt_signal);
    ASSERT_STREQ(json_string_value(json_object_get(ks->env, "A")), "b");
    kernelspec_free(ks);
    ASSERT_EQ(kernelspec_find(dirs, "noargv", &ks, &err), -EINVAL);
    ASSERT_EQ(kernelspec_find(dirs, "badjson", &ks, &err), -EINVAL);
    ASSERT_EQ(kernelspec_find(dirs, "missing", &ks, &err), -ENOENT);
    char *list = kernelspec_list_installed(dirs);
    ASSERT_TRUE(strstr(list, "good") && strstr(list, "noargv"));
    free(list);
    rm_rf(root);
}

TEST(kernel_dying_at_startup)
{
    const char *const *dirs = setup_dirs();
    write_spec("dies", "{\"argv\":[\"/bin/sh\",\"-c\",\"exit 7\",\"{connection_file}\"]}");
    write_spec("absent", "{\"argv\":[\"/nonexistent/kernel\"]}");
    struct kernelspec *ks;
    struct error_record err = { 0 };
    ASSERT_OK(kernelspec_find(dirs, "dies", &ks, &err));
    void *zctx = zmq_ctx_new();
    struct kernel_opts opts = { .cwd = root, .runtime_dir = root, .start_timeout = 10 * USEC_PER_SEC };
    struct kernel *k = NULL;
    ASSERT_EQ(kernel_start(zctx, ks, &opts, &k, &err), -ESRCH);
    ASSERT_TRUE(strstr(err.msg, "exited with status 7") != NULL);
    kernelspec_free(ks);
    ASSERT_OK(kernelspec_find(dirs, "absent", &ks, &err));
    ASSERT_EQ(kernel_start(zctx, ks, &opts, &k, &err), -ENOENT);
    kernelspec_free(ks);
    zmq_ctx_term(zctx);
    rm_rf(root);
}

/* Runs code to its end; returns the lines as one JSON array. */
static json_t *run(struct kernel *k, const char *code)
{
    struct execution x;
    ASSERT_OK(execution_start(&x, k, code, false));
    json_t *lines = json_array();
    for (;;) {
        json_t *line = NULL;
        int r = execution_next(&x, 30 * USEC_PER_SEC, &line);
        ASSERT_TRUE(r != EXECUTION_TIMEOUT);
        ASSERT_OK(r);
        if (r == EXECUTION_END)
            break;
        json_array_append_new(lines, line);
    }
    execution_release(&x);
    return lines;
}

static const char *find_type(json_t *lines, const char *type, const char *field)
{
    size_t i;
    json_t *l;
    json_array_foreach (lines, i, l) {
        if (strcmp(json_string_value(json_object_get(l, "type")), type) == 0)
            return json_string_value(json_object_get(l, field));
    }
    return NULL;
}

TEST(real_python_kernel)
{
    const char *dirs[] = { "/usr/share/jupyter/kernels", NULL };
    struct kernelspec *ks;
    struct error_record err = { 0 };
    if (kernelspec_find(dirs, "python3", &ks, &err) < 0)
        SKIP("no python3 kernelspec");
    ASSERT_TRUE(mkdtemp(root) != NULL);
    void *zctx = zmq_ctx_new();
    char *const env[] = { (char *)"HUTCH_UNIT=yes", (char *)"PYDEVD_DISABLE_FILE_VALIDATION=1", NULL };
    struct kernel_opts opts = {
        .cwd = "/", .runtime_dir = root, .extra_env = env, .start_timeout = 60 * USEC_PER_SEC
    };
    struct kernel *k;
    ASSERT_OK(kernel_start(zctx, ks, &opts, &k, &err));
    kernelspec_free(ks);

    json_t *lines = run(k, "import os; print('out'); os.environ['HUTCH_UNIT']");
    ASSERT_STREQ(find_type(lines, "stdout", "text"), "out\n");
    ASSERT_STREQ(find_type(lines, "result", "text"), "yes");
    json_decref(lines);

    ASSERT_OK(execution_run_silent(k, "silent_x = 5", 10 * USEC_PER_SEC, &err));
    ASSERT_EQ(execution_run_silent(k, "raise ValueError('nope')", 10 * USEC_PER_SEC, &err), -EREMOTEIO);
    ASSERT_STREQ(err.msg, "ValueError: nope");

    /* Interrupt a sleep: it ends with KeyboardInterrupt well before the sleep would. */
    struct execution x;
    ASSERT_OK(execution_start(&x, k, "import time; time.sleep(30)", false));
    json_t *line = NULL;
    ASSERT_EQ(execution_next(&x, 10 * USEC_PER_SEC, &line), EXECUTION_LINE); /* number_of_executions */
    json_decref(line);
    usleep(300 * 1000);
    ASSERT_OK(kernel_interrupt(k));
    bool interrupted = false;
    for (;;) {
        line = NULL;
        int r = execution_next(&x, 10 * USEC_PER_SEC, &line);
        ASSERT_TRUE(r == EXECUTION_LINE || r == EXECUTION_END);
        if (r == EXECUTION_END)
            break;
        const char *name = json_string_value(json_object_get(line, "name"));
        if (name && strcmp(name, "KeyboardInterrupt") == 0)
            interrupted = true;
        json_decref(line);
    }
    execution_release(&x);
    ASSERT_TRUE(interrupted);

    /* Death during an execution: a KernelDied error, then the end. */
    lines = run(k, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)");
    ASSERT_STREQ(find_type(lines, "error", "name"), "KernelDied");
    ASSERT_TRUE(strstr(find_type(lines, "error", "value"), "signal 9") != NULL);
    json_decref(lines);
    ASSERT_FALSE(kernel_alive(k));
    kernel_free(k);
    zmq_ctx_term(zctx);
    rm_rf(root);
}
