/* See cli.h. */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/xalloc.h"
#include "common/banned.h"

const char *cli_state_dir(const char *option)
{
    if (option && *option)
        return option;
    const char *env = getenv("HUTCH_STATE_DIR");
    if (env && *env)
        return env;
    return HUTCH_DEFAULT_STATE_DIR;
}

bool cli_conn_option(struct cli_conn *conn, int c, const char *arg)
{
    switch (c) {
    case CLI_OPT_API_URL:
        conn->api_url = arg;
        return true;
    case CLI_OPT_API_KEY:
        conn->api_key = arg;
        return true;
    case CLI_OPT_JSON:
        conn->json = true;
        return true;
    default:
        return false;
    }
}

struct hutch_client *cli_client(const struct cli_conn *conn)
{
    struct hutch_client *c = hutch_client_new(conn->api_url, conn->api_key);
    if (!c)
        fprintf(stderr, "hutch: cannot initialise the HTTP client (libcurl)\n");
    return c;
}

int cli_fail(struct hutch_client *client, const char *what, enum hutch_code code)
{
    const char *msg = hutch_client_last_message(client);
    if (code == HUTCH_E_AUTH && strstr(msg, "no API key"))
        fprintf(stderr,
                "hutch %s: no API key: pass --api-key KEY or set E2B_API_KEY (an admin creates keys "
                "with `hutch key create`)\n",
                what);
    else if (*msg)
        fprintf(stderr, "hutch %s: %s\n", what, msg);
    else
        fprintf(stderr, "hutch %s: %s\n", what, hutch_strerror(code));
    return 1;
}

int cli_parse_kv(char *arg, struct hutch_kv *ret)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return -EINVAL;
    *eq = '\0';
    ret->key = arg;
    ret->value = eq + 1;
    return 0;
}

bool cli_kv_push(const char *cmd, char *arg, struct hutch_kv **kv, size_t *n)
{
    struct hutch_kv one;
    if (cli_parse_kv(arg, &one) < 0) {
        fprintf(stderr, "hutch %s: '%s' is not KEY=VALUE\n", cmd, arg);
        return false;
    }
    *kv = xreallocarray(*kv, *n + 1, sizeof(**kv));
    (*kv)[(*n)++] = one;
    return true;
}

int cli_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}
