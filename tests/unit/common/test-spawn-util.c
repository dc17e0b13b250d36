#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/spawn-util.h"
#include "tap.h"

/* Runs `sh -c script` with flags; returns its output (stdout, and stderr with SPAWN_STDERR_TOO)
 * in out and its wait status. */
static int run(const char *script, unsigned flags, char *out, size_t size)
{
    char *argv[] = { (char *)"sh", (char *)"-c", (char *)script, NULL };
    char *envp[] = { (char *)"PATH=/usr/bin:/bin", NULL };
    pid_t pid;
    int fd = -1;
    ASSERT_OK(spawn_piped("/bin/sh", argv, envp, flags, &pid, &fd));
    ASSERT_TRUE(fd > 2);
    size_t len = 0;
    for (ssize_t n; (n = read(fd, out + len, size - 1 - len)) > 0;)
        len += (size_t)n;
    out[len] = '\0';
    close(fd);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    return status;
}

TEST(stdout_in_the_pipe_stderr_only_when_asked)
{
    char out[256];
    /* Without the flag the program's stderr is this test's: quieted for the run. */
    int saved = dup(STDERR_FILENO);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    ASSERT_TRUE(saved >= 0 && null >= 0 && dup2(null, STDERR_FILENO) == STDERR_FILENO);
    int status = run("echo out; echo err >&2", 0, out, sizeof(out));
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(null);
    ASSERT_EQ(status, 0);
    ASSERT_STREQ(out, "out\n");
    ASSERT_EQ(run("echo out; echo err >&2", SPAWN_STDERR_TOO, out, sizeof(out)), 0);
    ASSERT_STREQ(out, "out\nerr\n");
}

TEST(stdin_is_dev_null)
{
    char out[256];
    ASSERT_EQ(run("readlink /proc/self/fd/0; cat", 0, out, sizeof(out)), 0);
    ASSERT_STREQ(out, "/dev/null\n");
}

/* hutch serve's threads block SIGTERM (sigwait) and ignore SIGPIPE: the program gets neither. */
TEST(signals_reset_whatever_the_caller_has)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    ASSERT_OK(sigprocmask(SIG_BLOCK, &block, NULL));
    signal(SIGPIPE, SIG_IGN);
    char out[256];
    ASSERT_EQ(run("grep -E '^Sig(Blk|Ign)' /proc/self/status", 0, out, sizeof(out)), 0);
    unsigned long long blk = ~0ull, ign = ~0ull;
    const char *b = strstr(out, "SigBlk:"), *i = strstr(out, "SigIgn:");
    ASSERT_TRUE(b && i);
    ASSERT_EQ(sscanf(b, "SigBlk: %llx", &blk), 1);
    ASSERT_EQ(sscanf(i, "SigIgn: %llx", &ign), 1);
    ASSERT_EQ(blk, 0ull);
    ASSERT_EQ(ign & (1ull << (SIGPIPE - 1)), 0ull);
}

TEST(own_process_group_when_asked)
{
    char out[256];
    int pid = 0, pgid = 0;
    /* /proc/<pid>/stat: pid (comm) state ppid pgrp ... */
    ASSERT_EQ(run("echo $$ $(cut -d' ' -f5 /proc/$$/stat)", SPAWN_OWN_PGROUP, out, sizeof(out)), 0);
    ASSERT_EQ(sscanf(out, "%d %d", &pid, &pgid), 2);
    ASSERT_EQ(pid, pgid);
    ASSERT_EQ(run("cut -d' ' -f5 /proc/self/stat", 0, out, sizeof(out)), 0);
    ASSERT_EQ(sscanf(out, "%d", &pgid), 1);
    ASSERT_EQ(pgid, (int)getpgrp());
}

TEST(missing_program_is_an_error)
{
    char *argv[] = { (char *)"nope", NULL };
    char *envp[] = { NULL };
    pid_t pid;
    int fd = -1;
    ASSERT_EQ(spawn_piped("/nonexistent/nope", argv, envp, 0, &pid, &fd), -ENOENT);
    ASSERT_EQ(fd, -1);
}
