/* GET /teams (e2b-compat §2.3): the teams the caller belongs to. A hutch server is one team, so
 * the answer is always one entry: a stable id derived from the server's state directory, the
 * key the caller presented, isDefault true. E2B's CLI asks this with an OAuth access token
 * (Authorization: Bearer) during `e2b auth login`; hutch has no access tokens, so that gets a
 * 401 that says what to use instead. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api-internal.h"
#include "common/crypto.h"
#include "common/http-util.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "store/store.h"
#include "common/banned.h"

#define TEAM_NAME "hutch"

/* A name-based UUID (RFC 9562 version 8) from the state directory's real path: the same
 * server keeps its team id across restarts, two servers on one host get different ones. */
static void team_id(const char *state_dir, char out[37])
{
    char real[PATH_MAX];
    const char *path = realpath(state_dir, real) ? real : state_dir;
    char *seed = xasprintf("hutch team %s", path);
    unsigned char d[SHA256_LEN];
    sha256(seed, strlen(seed), d);
    free(seed);
    d[6] = (unsigned char)((d[6] & 0x0f) | 0x80);
    d[8] = (unsigned char)((d[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0], d[1],
             d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]);
}

enum MHD_Result api_teams(struct api_request *req)
{
    const char *key = http_header(req->conn, "X-API-KEY");
    const char *authz = http_header(req->conn, "Authorization");
    if (!key || !*key) {
        if (authz && *authz)
            return http_queue_error(
                req->conn, MHD_HTTP_UNAUTHORIZED,
                "hutch has no access tokens: authenticate with an API key in the X-API-KEY "
                "header (the server's admin creates one with `hutch key create`; give it "
                "to the CLI and SDK as E2B_API_KEY)");
        return http_queue_error(req->conn, MHD_HTTP_UNAUTHORIZED,
                                "missing API key: send it in the X-API-KEY header (create one with "
                                "`hutch key create`)");
    }
    struct error_record err = { 0 };
    struct store *st = api_store_lock(req->server);
    int r = store_key_verify(st, key, &err);
    api_store_unlock(req->server);
    if (r < 0) {
        log_error("checking an API key: %s", err.msg);
        return http_queue_error(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "internal error checking the API key");
    }
    if (r == 0)
        return http_queue_error(req->conn, MHD_HTTP_UNAUTHORIZED, "invalid API key");
    char id[37];
    team_id(api_server_state_dir(req->server), id);
    json_t *teams =
        json_pack("[{s:s, s:s, s:s, s:b}]", "teamID", id, "name", TEAM_NAME, "apiKey", key, "isDefault", 1);
    if (!teams)
        abort();
    enum MHD_Result ret = http_queue_json(req->conn, MHD_HTTP_OK, teams);
    json_decref(teams);
    return ret;
}
