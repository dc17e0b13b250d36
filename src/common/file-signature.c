/* See file-signature.h. URL signatures for /files (e2b-compat 3.8), so that a third party holding only a URL
 * can read or write one path: "v1_" + base64_std_nopad(sha256("<path>:<op>:<user>:<token>"
 * [":<expiration>"])), the exact form the SDK's getSignature() produces. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "common/file-signature.h"
#include "common/banned.h"

char *file_signature(const char *path, const char *op, const char *user, const char *token, bool has_exp,
                     int64_t expiration)
{
    _cleanup_free_ char *raw = NULL;
    if (has_exp)
        raw = xasprintf("%s:%s:%s:%s:%" PRId64, path ? path : "", op, user ? user : "", token, expiration);
    else
        raw = xasprintf("%s:%s:%s:%s", path ? path : "", op, user ? user : "", token);
    unsigned char digest[SHA256_LEN];
    sha256(raw, strlen(raw), digest);
    explicit_bzero(raw, strlen(raw));
    _cleanup_free_ char *b64 = base64_encode(digest, sizeof(digest), false);
    return xasprintf("v1_%s", b64);
}

enum file_sign_result file_signature_check(const char *signature, const char *expiration, const char *path,
                                           const char *op, const char *user, const char *token, time_t now)
{
    if (!signature)
        return FILE_SIGN_MISSING;
    int64_t exp = 0;
    bool has_exp = expiration != NULL;
    if (has_exp && parse_int64(expiration, &exp) < 0)
        return FILE_SIGN_BAD_EXPIRATION;
    _cleanup_free_ char *want = file_signature(path, op, user, token, has_exp, exp);
    if (!memeq_consttime(want, strlen(want), signature, strlen(signature)))
        return FILE_SIGN_INVALID;
    if (has_exp && exp < (int64_t)now)
        return FILE_SIGN_EXPIRED;
    return FILE_SIGN_OK;
}
