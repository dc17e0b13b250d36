/* URL signatures: the SDK's exact form (vectors from its getSignature() algorithm, computed
 * with Node's crypto), and the checks: missing, wrong, expired, malformed expiration. */
#include <stdlib.h>

#include "common/file-signature.h"
#include "tap.h"

TEST(signature_matches_sdk_vectors)
{
    char *s = file_signature("/home/user/x.txt", "read", NULL, "tok123", false, 0);
    ASSERT_STREQ(s, "v1_Rb7zm5r+4GlfZDdRF1hHG2SpHuolxyovo25Fgc1ZJ0Y");
    free(s);
    s = file_signature("/home/user/x.txt", "write", "user", "tok123", true, 1700000000);
    ASSERT_STREQ(s, "v1_K0qMOBg7nN+muK1oOf9oSMI1Umo+qJaPJ0SBamlH+Ps");
    free(s);
}

TEST(signature_check)
{
    const char *p = "/home/user/x.txt";
    ASSERT_EQ(file_signature_check("v1_Rb7zm5r+4GlfZDdRF1hHG2SpHuolxyovo25Fgc1ZJ0Y", NULL, p, "read", NULL,
                                   "tok123", 0),
              FILE_SIGN_OK);
    /* The same signature for another operation, user, path or token is invalid. */
    ASSERT_EQ(file_signature_check("v1_Rb7zm5r+4GlfZDdRF1hHG2SpHuolxyovo25Fgc1ZJ0Y", NULL, p, "write", NULL,
                                   "tok123", 0),
              FILE_SIGN_INVALID);
    ASSERT_EQ(file_signature_check("v1_Rb7zm5r+4GlfZDdRF1hHG2SpHuolxyovo25Fgc1ZJ0Y", NULL, p, "read", "root",
                                   "tok123", 0),
              FILE_SIGN_INVALID);
    ASSERT_EQ(file_signature_check("v1_Rb7zm5r+4GlfZDdRF1hHG2SpHuolxyovo25Fgc1ZJ0Y", NULL, "/etc/shadow",
                                   "read", NULL, "tok123", 0),
              FILE_SIGN_INVALID);
    ASSERT_EQ(file_signature_check("v1_Rb7zm5r+4GlfZDdRF1hHG2SpHuolxyovo25Fgc1ZJ0Y", NULL, p, "read", NULL,
                                   "tok124", 0),
              FILE_SIGN_INVALID);
    ASSERT_EQ(file_signature_check(NULL, NULL, p, "read", NULL, "tok123", 0), FILE_SIGN_MISSING);
    ASSERT_EQ(file_signature_check("", NULL, p, "read", NULL, "tok123", 0), FILE_SIGN_INVALID);

    const char *w = "v1_K0qMOBg7nN+muK1oOf9oSMI1Umo+qJaPJ0SBamlH+Ps";
    ASSERT_EQ(file_signature_check(w, "1700000000", p, "write", "user", "tok123", 1699999999), FILE_SIGN_OK);
    ASSERT_EQ(file_signature_check(w, "1700000000", p, "write", "user", "tok123", 1700000000), FILE_SIGN_OK);
    ASSERT_EQ(file_signature_check(w, "1700000000", p, "write", "user", "tok123", 1700000001),
              FILE_SIGN_EXPIRED);
    /* Moving the expiration invalidates the signature rather than extending it. */
    ASSERT_EQ(file_signature_check(w, "1800000000", p, "write", "user", "tok123", 1700000001),
              FILE_SIGN_INVALID);
    ASSERT_EQ(file_signature_check(w, NULL, p, "write", "user", "tok123", 0), FILE_SIGN_INVALID);
    ASSERT_EQ(file_signature_check(w, "17e8", p, "write", "user", "tok123", 0), FILE_SIGN_BAD_EXPIRATION);
    ASSERT_EQ(file_signature_check(w, "", p, "write", "user", "tok123", 0), FILE_SIGN_BAD_EXPIRATION);
}
