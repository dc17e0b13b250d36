/* hutch cp: copy one file into or out of a sandbox, streamed (never held in memory).
 * ID:PATH names a path in sandbox ID; anything else is local ("-" is stdin or stdout; a local
 * path with a colon can be written ./a:b). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/macro.h"
#include "common/xalloc.h"
#include "common/banned.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: hutch cp [--user U] LOCAL ID:REMOTE\n"
               "       hutch cp [--user U] ID:REMOTE LOCAL\n\n"
               "Copies a file into or out of sandbox ID. LOCAL may be - (stdin or stdout). A REMOTE\n"
               "ending in / (or a LOCAL directory) receives the file under its own name. Relative\n"
               "REMOTE paths are in the user's home.\n" CLI_CONN_USAGE);
}

enum { OPT_USER = CLI_OPT_FIRST_OWN };

/* "ID:PATH" with an id of letters, digits, - and _: splits it. */
static bool split_remote(const char *arg, char **ret_id, const char **ret_path)
{
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg)
        return false;
    for (const char *p = arg; p < colon; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_'))
            return false;
    *ret_id = xstrndup(arg, (size_t)(colon - arg));
    *ret_path = colon + 1;
    return true;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cmd_cp(int argc, char **argv)
{
    static const struct option options[] = {
        { "user", required_argument, NULL, OPT_USER },
        CLI_CONN_OPTIONS,
        {},
    };
    struct cli_conn conn = { 0 };
    const char *user = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
        if (cli_conn_option(&conn, c, optarg))
            continue;
        switch (c) {
        case OPT_USER:
            user = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    const char *src = argv[optind], *dst = argv[optind + 1];
    _cleanup_free_ char *src_id = NULL, *dst_id = NULL;
    const char *src_path = NULL, *dst_path = NULL;
    bool src_remote = split_remote(src, &src_id, &src_path);
    bool dst_remote = split_remote(dst, &dst_id, &dst_path);
    if (src_remote == dst_remote) {
        fprintf(stderr, "hutch cp: exactly one of the two paths must be ID:PATH in a sandbox\n");
        usage(stderr);
        return 2;
    }
    if ((src_remote && !*src_path) || (dst_remote && !*dst_path)) {
        fprintf(stderr, "hutch cp: no path after the sandbox id\n");
        return 2;
    }

    struct hutch_client *client = cli_client(&conn);
    if (!client)
        return 1;
    enum hutch_code code;
    _cleanup_free_ char *target = NULL;
    if (dst_remote) {
        if (dst_path[strlen(dst_path) - 1] == '/') {
            if (streq(src, "-")) {
                fprintf(stderr, "hutch cp: give a file name to upload stdin to\n");
                hutch_client_free(client);
                return 2;
            }
            target = xasprintf("%s%s", dst_path, base_name(src));
        }
        if (streq(src, "-"))
            code = hutch_file_upload_fd(client, dst_id, STDIN_FILENO, dst_path, user);
        else
            code = hutch_file_upload(client, dst_id, src, target ? target : dst_path, user);
    } else {
        struct stat st;
        if (!streq(dst, "-") && stat(dst, &st) == 0 && S_ISDIR(st.st_mode))
            target = xasprintf("%s/%s", dst, base_name(src_path));
        if (streq(dst, "-")) {
            code = hutch_file_download_fd(client, src_id, src_path, STDOUT_FILENO, user);
        } else {
            code = hutch_file_download(client, src_id, src_path, target ? target : dst, user);
        }
    }
    int status = code == HUTCH_OK ? 0 : cli_fail(client, "cp", code);
    hutch_client_free(client);
    return status;
}
