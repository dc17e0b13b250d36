/* See crypto.h. */
#include "common/crypto.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "common/xalloc.h"
#include "common/banned.h"

/* libsodium asks to be initialised before use (it picks implementations and seeds its own
 * generator, which hutch does not use: random_bytes() reads getrandom). Idempotent. */
static void sodium_once(void)
{
    if (sodium_init() < 0)
        abort();
}

static void sodium_ready(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sodium_once);
}

char *base64_encode(const void *data, size_t len, bool pad)
{
    if (len > (SIZE_MAX / 4) * 3 - 3)
        abort();
    sodium_ready();
    int variant = pad ? sodium_base64_VARIANT_ORIGINAL : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
    size_t out_size = sodium_base64_ENCODED_LEN(len, variant);
    char *out = xmalloc(out_size);
    sodium_bin2base64(out, out_size, data, len, variant);
    return out;
}

int base64_decode(const char *s, size_t slen, unsigned char **ret, size_t *ret_len)
{
    /* Padding is optional here but must be right when present (libsodium's variants either
     * require or forbid it): check it, then decode what precedes it. libsodium refuses any
     * other character, and bits left over in the last character (a non-canonical encoding,
     * RFC 4648 3.5). */
    size_t data_len = slen;
    while (data_len > 0 && s[data_len - 1] == '=')
        data_len--;
    if (slen - data_len > 2 || (slen != data_len && slen % 4 != 0) || data_len % 4 == 1)
        return -EINVAL;
    sodium_ready();
    unsigned char *out = xmalloc(data_len / 4 * 3 + 3);
    size_t w = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, data_len / 4 * 3 + 2, s, data_len, NULL, &w, &end,
                          sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
        end != s + data_len) {
        free(out);
        return -EINVAL;
    }
    out[w] = '\0';
    *ret = out;
    *ret_len = w;
    return 0;
}

void sha256(const void *data, size_t len, unsigned char out[SHA256_LEN])
{
    sodium_ready();
    crypto_hash_sha256(out, data, len);
}

void sha256_to_hex(const unsigned char digest[SHA256_LEN], char out[2 * SHA256_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < SHA256_LEN; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0xf];
    }
    out[2 * SHA256_LEN] = '\0';
}

void sha256_hex(const void *data, size_t len, char out[2 * SHA256_LEN + 1])
{
    unsigned char d[SHA256_LEN];
    sha256(data, len, d);
    sha256_to_hex(d, out);
}

void hmac_sha256(const void *key, size_t keylen, const struct iovec *parts, size_t nparts,
                 unsigned char out[SHA256_LEN])
{
    sodium_ready();
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, key, keylen);
    for (size_t i = 0; i < nparts; i++)
        crypto_auth_hmacsha256_update(&state, parts[i].iov_base, parts[i].iov_len);
    crypto_auth_hmacsha256_final(&state, out);
    sodium_memzero(&state, sizeof(state));
}

bool memeq_consttime(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return false;
    sodium_ready();
    return sodium_memcmp(a, b, alen) == 0;
}

int random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int random_hex(char *out, size_t nbytes)
{
    unsigned char raw[64];
    static const char hex[] = "0123456789abcdef";
    size_t w = 0;
    while (nbytes > 0) {
        size_t n = nbytes < sizeof(raw) ? nbytes : sizeof(raw);
        int r = random_bytes(raw, n);
        if (r < 0)
            return r;
        for (size_t i = 0; i < n; i++) {
            out[w++] = hex[raw[i] >> 4];
            out[w++] = hex[raw[i] & 0xf];
        }
        nbytes -= n;
    }
    out[w] = '\0';
    return 0;
}

int random_alnum(char *out, size_t len)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    size_t n = 0;
    while (n < len) {
        unsigned char b[32];
        int r = random_bytes(b, sizeof(b));
        if (r < 0)
            return r;
        /* Bytes past the last multiple of 36 are drawn again: no bias toward the first letters. */
        for (size_t i = 0; i < sizeof(b) && n < len; i++)
            if (b[i] < 252)
                out[n++] = alphabet[b[i] % 36];
    }
    out[n] = '\0';
    return 0;
}

int random_uuid4(char out[UUID_STRING_LEN + 1])
{
    unsigned char b[16];
    int r = random_bytes(b, sizeof(b));
    if (r < 0)
        return r;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, UUID_STRING_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}
