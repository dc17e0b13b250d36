/* See crypto.h. */
#include "common/crypto.h"

#include <errno.h>
#include <nettle/base64.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "common/xalloc.h"
#include "common/banned.h"

char *base64_encode(const void *data, size_t len, bool pad)
{
    if (len > SIZE_MAX / 8 - 8)
        abort();
    char *out = xmalloc(BASE64_ENCODE_LENGTH(len) + BASE64_ENCODE_FINAL_LENGTH + 1);
    struct base64_encode_ctx ctx;
    base64_encode_init(&ctx);
    size_t w = base64_encode_update(&ctx, out, len, data);
    w += base64_encode_final(&ctx, out + w);
    if (!pad)
        while (w > 0 && out[w - 1] == '=')
            w--;
    out[w] = '\0';
    return out;
}

/* Whether c is in the standard alphabet: nettle's decoder would skip white space, which this
 * decoder refuses. */
static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int base64_decode(const char *s, size_t slen, unsigned char **ret, size_t *ret_len)
{
    /* Padding is optional here but must be right when present: check it and the alphabet, then
     * let nettle decode, with the padding it requires added when the input had none. nettle
     * refuses bits left over in the last character (a non-canonical encoding, RFC 4648 3.5). */
    size_t data_len = slen;
    while (data_len > 0 && s[data_len - 1] == '=')
        data_len--;
    if (slen - data_len > 2 || (slen != data_len && slen % 4 != 0) || data_len % 4 == 1)
        return -EINVAL;
    for (size_t i = 0; i < data_len; i++)
        if (!b64_char(s[i]))
            return -EINVAL;
    static const char padding[] = "==";
    size_t pad = (4 - data_len % 4) % 4;
    size_t cap = BASE64_DECODE_LENGTH(data_len + pad);
    unsigned char *out = xmalloc(cap + 1);
    struct base64_decode_ctx ctx;
    base64_decode_init(&ctx);
    size_t w = cap, w_pad = 0;
    bool ok = base64_decode_update(&ctx, &w, out, data_len, s);
    if (ok && pad) {
        w_pad = cap - w;
        ok = base64_decode_update(&ctx, &w_pad, out + w, pad, padding);
    }
    if (!ok || !base64_decode_final(&ctx)) {
        free(out);
        return -EINVAL;
    }
    w += w_pad;
    out[w] = '\0';
    *ret = out;
    *ret_len = w;
    return 0;
}

void sha256(const void *data, size_t len, unsigned char out[SHA256_LEN])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, len, data);
    sha256_digest(&ctx, SHA256_LEN, out);
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

struct sha256_stream {
    struct sha256_ctx ctx;
};

struct sha256_stream *sha256_stream_new(void)
{
    struct sha256_stream *s = xmalloc(sizeof(*s));
    sha256_init(&s->ctx);
    return s;
}

void sha256_stream_update(struct sha256_stream *s, const void *data, size_t len)
{
    sha256_update(&s->ctx, len, data);
}

void sha256_stream_final(struct sha256_stream *s, unsigned char out[SHA256_LEN])
{
    sha256_digest(&s->ctx, SHA256_LEN, out);
    free(s);
}

void hmac_sha256(const void *key, size_t keylen, const struct iovec *parts, size_t nparts,
                 unsigned char out[SHA256_LEN])
{
    struct hmac_sha256_ctx ctx;
    hmac_sha256_set_key(&ctx, keylen, key);
    for (size_t i = 0; i < nparts; i++)
        hmac_sha256_update(&ctx, parts[i].iov_len, parts[i].iov_base);
    hmac_sha256_digest(&ctx, SHA256_LEN, out);
}

bool memeq_consttime(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return false;
    return memeql_sec(a, b, alen) != 0;
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
