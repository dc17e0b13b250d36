/* See crypto.h. */
#include "common/crypto.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "common/xalloc.h"
#include "common/banned.h"

char *base64_encode(const void *data, size_t len, bool pad)
{
    if (len > (SIZE_MAX / 4) * 3 - 3)
        abort();
    size_t out_len = 4 * ((len + 2) / 3);
    char *out = xmalloc(out_len + 1);
    /* EVP_EncodeBlock takes an int length; encode in slices that keep it in range. */
    size_t done = 0, w = 0;
    const size_t slice = 3 * (1u << 28);
    while (done < len) {
        size_t n = len - done < slice ? len - done : slice;
        w += (size_t)EVP_EncodeBlock((unsigned char *)out + w, (const unsigned char *)data + done, (int)n);
        done += n;
    }
    out[w] = '\0';
    if (!pad)
        while (w > 0 && out[w - 1] == '=')
            out[--w] = '\0';
    return out;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int base64_decode(const char *s, size_t slen, unsigned char **ret, size_t *ret_len)
{
    /* Validate strictly here (alphabet, padding only at the end, no stray bits count), then let
     * OpenSSL do the decoding of the padded form. */
    size_t data_len = slen;
    while (data_len > 0 && s[data_len - 1] == '=')
        data_len--;
    if (slen - data_len > 2 || (slen != data_len && slen % 4 != 0) || data_len % 4 == 1)
        return -EINVAL;
    for (size_t i = 0; i < data_len; i++)
        if (b64_value((unsigned char)s[i]) < 0)
            return -EINVAL;

    size_t padded_len = (data_len + 3) / 4 * 4;
    char *padded = xmalloc(padded_len + 1);
    memcpy(padded, s, data_len);
    memset(padded + data_len, '=', padded_len - data_len);
    padded[padded_len] = '\0';

    unsigned char *out = xmalloc(padded_len / 4 * 3 + 1);
    size_t w = 0;
    const size_t slice = (size_t)1 << 28; /* multiple of 4, keeps EVP's int in range */
    for (size_t done = 0; done < padded_len;) {
        size_t n = padded_len - done < slice ? padded_len - done : slice;
        int k = EVP_DecodeBlock(out + w, (const unsigned char *)padded + done, (int)n);
        if (k < 0) {
            free(padded);
            free(out);
            return -EINVAL;
        }
        w += (size_t)k;
        done += n;
    }
    free(padded);
    /* EVP_DecodeBlock counts padding bytes as zero output bytes; drop them. */
    w -= padded_len - data_len == 0 ? 0 : (padded_len - data_len);
    out[w] = '\0';
    *ret = out;
    *ret_len = w;
    return 0;
}

void sha256(const void *data, size_t len, unsigned char out[SHA256_LEN])
{
    SHA256(data, len, out);
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

struct sha256_stream *sha256_stream_new(void)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        abort();
    return (struct sha256_stream *)ctx;
}

void sha256_stream_update(struct sha256_stream *s, const void *data, size_t len)
{
    if (EVP_DigestUpdate((EVP_MD_CTX *)s, data, len) != 1)
        abort();
}

void sha256_stream_final(struct sha256_stream *s, unsigned char out[SHA256_LEN])
{
    unsigned int n = SHA256_LEN;
    if (EVP_DigestFinal_ex((EVP_MD_CTX *)s, out, &n) != 1)
        abort();
    EVP_MD_CTX_free((EVP_MD_CTX *)s);
}

bool memeq_consttime(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return false;
    return CRYPTO_memcmp(a, b, alen) == 0;
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
