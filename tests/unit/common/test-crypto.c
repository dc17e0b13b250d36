#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto.h"
#include "tap.h"

TEST(base64_roundtrip_all_lengths)
{
    unsigned char data[64];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof(data); len++) {
        for (int pad = 0; pad <= 1; pad++) {
            char *enc = base64_encode(data, len, pad);
            unsigned char *dec;
            size_t dec_len;
            ASSERT_OK(base64_decode(enc, strlen(enc), &dec, &dec_len));
            ASSERT_EQ(dec_len, len);
            ASSERT_MEMEQ(dec, data, len);
            free(enc);
            free(dec);
        }
    }
}

TEST(base64_known_vectors)
{
    char *e = base64_encode("hello\n", 6, true);
    ASSERT_STREQ(e, "aGVsbG8K");
    free(e);
    e = base64_encode("hi", 2, true);
    ASSERT_STREQ(e, "aGk=");
    free(e);
    e = base64_encode("hi", 2, false);
    ASSERT_STREQ(e, "aGk");
    free(e);
}

TEST(base64_rejects_malformed)
{
    unsigned char *d;
    size_t n;
    /* "aGl=" and "aGl": stray bits in the last character (canonical is "aGk="); "-_" is the
     * URL-safe alphabet. */
    const char *bad[] = { "a", "ab=c", "a===", "!!!!", "aGk= ", "aGk=aGk=", "aG\n=", "aGl=", "aGl", "ab-_" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ(base64_decode(bad[i], strlen(bad[i]), &d, &n), -EINVAL);
}

TEST(base64_decodes_without_padding_and_embedded_nul)
{
    unsigned char *d;
    size_t n;
    ASSERT_OK(base64_decode("aGk", 3, &d, &n));
    ASSERT_EQ(n, 2u);
    ASSERT_MEMEQ(d, "hi", 2);
    ASSERT_EQ(d[2], 0); /* NUL-terminated */
    free(d);
    ASSERT_OK(base64_decode("AGEA", 4, &d, &n));
    ASSERT_EQ(n, 3u);
    ASSERT_MEMEQ(d, "\0a\0", 3);
    free(d);
    ASSERT_OK(base64_decode("", 0, &d, &n));
    ASSERT_EQ(n, 0u);
    free(d);
}

/* RFC 4231's test cases 1, 2 and 6 (a key longer than the block), parts split anywhere. */
TEST(hmac_sha256_rfc4231)
{
    unsigned char key1[20], key6[131], mac[SHA256_LEN];
    char hex[2 * SHA256_LEN + 1];
    memset(key1, 0x0b, sizeof(key1));
    memset(key6, 0xaa, sizeof(key6));
    struct iovec one = { .iov_base = (void *)"Hi There", .iov_len = 8 };
    hmac_sha256(key1, sizeof(key1), &one, 1, mac);
    sha256_to_hex(mac, hex);
    ASSERT_STREQ(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    struct iovec split[3] = { { (void *)"what do ya", 10 },
                              { (void *)"", 0 },
                              { (void *)" want for nothing?", 18 } };
    hmac_sha256("Jefe", 4, split, 3, mac);
    sha256_to_hex(mac, hex);
    ASSERT_STREQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    const char *msg6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    struct iovec six = { .iov_base = (void *)msg6, .iov_len = strlen(msg6) };
    hmac_sha256(key6, sizeof(key6), &six, 1, mac);
    sha256_to_hex(mac, hex);
    ASSERT_STREQ(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(sha256_vector)
{
    char hex[2 * SHA256_LEN + 1];
    sha256_hex("abc", 3, hex);
    ASSERT_STREQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(sha256_stream_matches_one_shot)
{
    char data[1000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 13);
    unsigned char a[SHA256_LEN], b[SHA256_LEN];
    sha256(data, sizeof(data), a);
    struct sha256_stream *s = sha256_stream_new();
    sha256_stream_update(s, data, 1);
    sha256_stream_update(s, data + 1, 500);
    sha256_stream_update(s, data + 501, sizeof(data) - 501);
    sha256_stream_final(s, b);
    ASSERT_MEMEQ(a, b, SHA256_LEN);
    char hex[2 * SHA256_LEN + 1];
    sha256_to_hex(a, hex);
    ASSERT_EQ(strlen(hex), 64);
}

TEST(consttime_compare)
{
    ASSERT_TRUE(memeq_consttime("abc", 3, "abc", 3));
    ASSERT_FALSE(memeq_consttime("abc", 3, "abd", 3));
    ASSERT_FALSE(memeq_consttime("abc", 3, "abcd", 4));
}

TEST(random_hex_is_fresh)
{
    char a[33], b[33];
    ASSERT_OK(random_hex(a, 16));
    ASSERT_OK(random_hex(b, 16));
    ASSERT_EQ(strlen(a), 32);
    ASSERT_TRUE(strcmp(a, b) != 0);
}
