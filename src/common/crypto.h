/* Thin helpers over nettle for the encodings and hashes several components need: base64
 * (standard alphabet, with or without padding), SHA-256, HMAC-SHA256, constant-time comparison;
 * and random bytes from the kernel. Nothing here is hand-written cryptography. (nettle, not
 * OpenSSL's libcrypto: decision 0008.) */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define SHA256_LEN 32

/* Returns a NUL-terminated base64 string (free() it). pad=false drops trailing '='. */
char *base64_encode(const void *data, size_t len, bool pad);

/* Decodes standard base64 (padding optional, no whitespace, no stray bits in the last
 * character). Returns 0 and a malloc'd buffer in *ret (NUL-terminated for convenience) with
 * its length, or -EINVAL on malformed input. */
int base64_decode(const char *s, size_t slen, unsigned char **ret, size_t *ret_len);

void sha256(const void *data, size_t len, unsigned char out[SHA256_LEN]);
/* Lowercase hex of the SHA-256 of data; out must hold 2*SHA256_LEN+1 bytes. */
void sha256_hex(const void *data, size_t len, char out[2 * SHA256_LEN + 1]);

/* Incremental SHA-256 for data that arrives in pieces. final() writes the digest and frees
 * the context. */
struct sha256_stream;
struct sha256_stream *sha256_stream_new(void);
void sha256_stream_update(struct sha256_stream *s, const void *data, size_t len);
void sha256_stream_final(struct sha256_stream *s, unsigned char out[SHA256_LEN]);
/* HMAC-SHA256 under key (any length) of the concatenation of parts. */
void hmac_sha256(const void *key, size_t keylen, const struct iovec *parts, size_t nparts,
                 unsigned char out[SHA256_LEN]);
/* Lowercase hex of a digest; out must hold 2*SHA256_LEN+1 bytes. */
void sha256_to_hex(const unsigned char digest[SHA256_LEN], char out[2 * SHA256_LEN + 1]);

/* Compares two byte strings in time independent of where they differ. */
bool memeq_consttime(const void *a, size_t alen, const void *b, size_t blen);

/* Fills buf from the kernel CSPRNG. Returns 0 or -errno. */
int random_bytes(void *buf, size_t len);
/* Writes 2*nbytes lowercase hex characters of fresh randomness plus a NUL into out. */
int random_hex(char *out, size_t nbytes);
/* Writes len uniformly drawn characters of [a-z0-9] plus a NUL into out (E2B-style ids). */
int random_alnum(char *out, size_t len);
/* Writes a version 4 UUID (36 characters) plus a NUL into out. */
#define UUID_STRING_LEN 36
int random_uuid4(char out[UUID_STRING_LEN + 1]);
