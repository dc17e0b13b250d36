/* URL signatures of envd's /files endpoints (e2b-compat 3.8): what lets a holder of a URL,
 * and nothing else, read or write one path in one sandbox. envd checks them; the control
 * plane uses them to route a signed URL that carries no sandbox id to its sandbox. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* "v1_" + base64_std_nopad(sha256("<path>:<op>:<user>:<token>[:<expiration>]")). has_exp
 * selects the form with the expiration. Returns a malloc'd string. */
char *file_signature(const char *path, const char *op, const char *user, const char *token, bool has_exp,
                     int64_t expiration);

enum file_sign_result {
    FILE_SIGN_OK = 0,
    FILE_SIGN_MISSING,        /* no signature given */
    FILE_SIGN_INVALID,        /* does not match */
    FILE_SIGN_EXPIRED,        /* matches, but the expiration is past */
    FILE_SIGN_BAD_EXPIRATION, /* signature_expiration is not an integer */
};

/* Checks a request's signature (constant-time compare). signature, user and expiration are
 * the raw query values (NULL when absent); path is the raw `path` query ("" when absent). */
enum file_sign_result file_signature_check(const char *signature, const char *expiration, const char *path,
                                           const char *op, const char *user, const char *token, time_t now);
