/* The TAP runner behind tap.h: forks one child per test, maps its exit to ok / not ok / skip,
 * and prints the plan first. A test may be chosen by name: `test-foo NAME`. */
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#define TAP_MAX_TESTS 512
#define TAP_SKIP_EXIT 77

static struct {
    const char *name;
    tap_test_cb fn;
} tests[TAP_MAX_TESTS];
static size_t n_tests;
/* The running test's scratch directory (tap_tmpdir()): made by the runner before the test's
 * child starts and removed after it ends, however it ends (tests leave with _exit). */
static char scratch[64];

/* Prints a test's captured output as TAP diagnostics, one "# " line each. */
static void print_diagnostics(char *out)
{
    for (char *line = out; *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (*line)
            printf("%s%s\n", line[0] == '#' ? "" : "# ", line);
        if (!nl)
            break;
        line = nl + 1;
    }
}

void tap_register(const char *name, tap_test_cb fn)
{
    if (n_tests == TAP_MAX_TESTS) {
        fprintf(stderr, "tap: too many tests\n");
        abort();
    }
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

void tap_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    printf("# %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    _exit(1);
}

void tap_skip(const char *fmt, ...)
{
    /* The reason travels to the parent on stdout, marked so the parent can print it. */
    va_list ap;
    printf("#SKIPREASON ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    _exit(TAP_SKIP_EXIT);
}

const char *tap_tmpdir(void)
{
    if (!scratch[0])
        tap_fail(__FILE__, __LINE__, "no scratch directory for this test");
    return scratch;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path);
}

static int run_one(size_t i, size_t num)
{
    snprintf(scratch, sizeof(scratch), "/tmp/hutch-tap-XXXXXX");
    if (!mkdtemp(scratch))
        scratch[0] = '\0';
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        printf("not ok %zu - %s # pipe: %s\n", num, tests[i].name, strerror(errno));
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        printf("not ok %zu - %s # fork: %s\n", num, tests[i].name, strerror(errno));
        return 1;
    }
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        close(pipefd[0]);
        tests[i].fn();
        fflush(stdout);
        _exit(0);
    }
    close(pipefd[1]);
    char out[8192];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(pipefd[0], out + len, sizeof(out) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(out) - 1) {
            /* Keep draining so the child never blocks on a full pipe. */
            char sink[4096];
            while (read(pipefd[0], sink, sizeof(sink)) > 0)
                ;
            break;
        }
    }
    out[len] = '\0';
    close(pipefd[0]);

    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (scratch[0])
        nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    scratch[0] = '\0';
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok %zu - %s\n", num, tests[i].name);
        /* HUTCH_TAP_VERBOSE=1: what passing tests printed too (figures, e.g. tests/vm). */
        if (getenv("HUTCH_TAP_VERBOSE"))
            print_diagnostics(out);
        return 0;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == TAP_SKIP_EXIT) {
        const char *reason = strstr(out, "#SKIPREASON ");
        char why[512] = "skipped";
        if (reason) {
            reason += strlen("#SKIPREASON ");
            size_t k = strcspn(reason, "\n");
            if (k >= sizeof(why))
                k = sizeof(why) - 1;
            memcpy(why, reason, k);
            why[k] = '\0';
        }
        printf("ok %zu - %s # SKIP %s\n", num, tests[i].name, why);
        return 0;
    }
    /* Print what the test said (its assertion message) as TAP diagnostics. */
    print_diagnostics(out);
    if (WIFSIGNALED(status))
        printf("not ok %zu - %s # killed by signal %d (%s)\n", num, tests[i].name, WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else
        printf("not ok %zu - %s # exit status %d\n", num, tests[i].name, WEXITSTATUS(status));
    return 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *only = argc > 1 ? argv[1] : NULL;
    size_t planned = 0;
    for (size_t i = 0; i < n_tests; i++)
        if (!only || strcmp(only, tests[i].name) == 0)
            planned++;
    printf("TAP version 13\n1..%zu\n", planned);
    int failed = 0;
    size_t num = 0;
    for (size_t i = 0; i < n_tests; i++)
        if (!only || strcmp(only, tests[i].name) == 0)
            failed += run_one(i, ++num);
    return failed ? 1 : 0;
}
