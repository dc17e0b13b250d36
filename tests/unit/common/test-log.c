#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

#include "common/log.h"
#include "tap.h"

/* Runs fn with stderr captured into buf. */
static void capture(void (*fn)(void), char *buf, size_t size)
{
    int p[2];
    ASSERT_OK(pipe(p));
    int saved = dup(STDERR_FILENO);
    dup2(p[1], STDERR_FILENO);
    close(p[1]);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = read(p[0], buf, size - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(p[0]);
}

static void log_some(void)
{
    log_debug("hidden %d", 1);
    log_info("shown %d", 2);
    log_error_errno(-ENOENT, "open %s", "x");
}

TEST(text_lines_and_threshold)
{
    char out[4096];
    log_setup("t", LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    capture(log_some, out, sizeof(out));
    ASSERT_TRUE(strstr(out, "hidden") == NULL);
    ASSERT_TRUE(strstr(out, "info: shown 2\n") != NULL);
    ASSERT_TRUE(strstr(out, "error: open x: No such file or directory\n") != NULL);
}

TEST(json_lines_parse)
{
    char out[4096];
    log_setup("t", LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
    capture(log_some, out, sizeof(out));
    int lines = 0;
    for (char *l = out; *l;) {
        char *nl = strchr(l, '\n');
        ASSERT_TRUE(nl != NULL);
        json_error_t je;
        json_t *o = json_loadb(l, (size_t)(nl - l), 0, &je);
        ASSERT_TRUE(o != NULL);
        ASSERT_TRUE(json_is_string(json_object_get(o, "msg")));
        ASSERT_TRUE(json_is_string(json_object_get(o, "level")));
        json_decref(o);
        lines++;
        l = nl + 1;
    }
    ASSERT_EQ(lines, 3);
}

TEST(level_names)
{
    ASSERT_EQ(log_level_from_string("warn"), LOG_LEVEL_WARN);
    ASSERT_EQ(log_level_from_string("loud"), -EINVAL);
    ASSERT_STREQ(log_level_to_string(LOG_LEVEL_DEBUG), "debug");
    ASSERT_EQ(log_format_from_string("json"), LOG_FORMAT_JSON);
}

TEST(errno_return_value)
{
    log_setup("t", LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    int fd = open("/dev/null", O_WRONLY);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    int r = log_error_errno(EPERM, "x");
    dup2(saved, STDERR_FILENO);
    ASSERT_EQ(r, -EPERM);
}
