/* Replays a fuzz target's corpus through the normal (sanitized) build, one TAP test per file:
 * `replay-<name> DIR`. A crash, sanitizer report or hang in LLVMFuzzerTestOneInput fails the
 * file's test. libFuzzer itself is not needed, so this runs under gcc in CI. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_INPUT (16u << 20)
#define REPLAY_TIMEOUT_S 30

static int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < 0 || (size_t)st.st_size > REPLAY_MAX_INPUT) {
        close(fd);
        return -EFBIG;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *data = malloc(len ? len : 1);
    if (!data) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, data + got, len - got);
        if (n <= 0) {
            free(data);
            close(fd);
            return n < 0 ? -errno : -EIO;
        }
        got += (size_t)n;
    }
    close(fd);
    *ret = data;
    *ret_len = len;
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    DIR *d = opendir(argv[1]);
    if (!d) {
        printf("1..0 # SKIP no corpus at %s\n", argv[1]);
        return 0;
    }
    char *names[4096];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < sizeof(names) / sizeof(names[0]))
        if (de->d_name[0] != '.')
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp);

    printf("TAP version 13\n1..%zu\n", n);
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], names[i]);
        uint8_t *data = NULL;
        size_t len = 0;
        int r = read_file(path, &data, &len);
        if (r < 0) {
            printf("not ok %zu - %s # read: %s\n", i + 1, names[i], strerror(-r));
            failed++;
            continue;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(REPLAY_TIMEOUT_S);
            LLVMFuzzerTestOneInput(data, len);
            _exit(0);
        }
        free(data);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            printf("ok %zu - %s\n", i + 1, names[i]);
        } else {
            printf("not ok %zu - %s # status 0x%x\n", i + 1, names[i], status);
            failed++;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    return failed ? 1 : 0;
}
