/* See spawn-util.h. */
#include "common/spawn-util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include "common/banned.h"

int spawn_piped(const char *path, char *const argv[], char *const envp[], unsigned flags, pid_t *ret_pid,
                int *ret_fd)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    short attr_flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (flags & SPAWN_OWN_PGROUP) {
        posix_spawnattr_setpgroup(&attr, 0);
        attr_flags |= POSIX_SPAWN_SETPGROUP;
    }
    posix_spawnattr_setflags(&attr, attr_flags);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    if (flags & SPAWN_STDERR_TOO)
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
    int r = posix_spawn(ret_pid, path, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fds[1]);
    if (r != 0) {
        close(fds[0]);
        return -r;
    }
    *ret_fd = fds[0];
    return 0;
}
