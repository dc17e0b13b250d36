#include <errno.h>
#include <stdlib.h>

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
    const char *bad[] = { "a", "ab=c", "a===", "!!!!", "aGk= ", "aGk=aGk=", "aG\n=" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ(base64_decode(bad[i], strlen(bad[i]), &d, &n), -EINVAL);
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
