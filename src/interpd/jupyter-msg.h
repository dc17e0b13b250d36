/* The Jupyter messaging protocol (version 5.3) on the wire: building, signing, framing and
 * verifying messages, plus the two thin libzmq calls that move them.
 *
 * A message on a socket is
 *     [identities...] "<IDS|MSG>" signature header parent_header metadata content [buffers...]
 * where signature is the lowercase hex HMAC-SHA256 of the four JSON frames under the
 * connection's key. Invariant: jmsg_decode() hands out only messages whose signature verified
 * (constant-time comparison) and whose four frames are JSON objects within the size limits;
 * everything else is an error, never a partial message. Everything except jmsg_send() and
 * jmsg_recv() is pure and thread-safe, so it is unit-tested and fuzzed without a kernel. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

#define JMSG_DELIMITER "<IDS|MSG>"
#define JMSG_VERSION "5.3"
#define JMSG_SIG_HEX_LEN 64
/* Limits on what a kernel may send: one frame (an image in a display_data can be large), the
 * number of frames (identities + delimiter + 5 + buffers). */
#define JMSG_FRAME_MAX ((size_t)64 << 20)
#define JMSG_FRAMES_MAX 64
#define JMSG_KEY_MAX 1024

struct jmsg {
    json_t *header, *parent_header, *metadata, *content;
    const char *msg_type;  /* header.msg_type, owned by header */
    const char *msg_id;    /* header.msg_id, owned by header */
    const char *parent_id; /* parent_header.msg_id or NULL, owned by parent_header */
};

struct jmsg_frame {
    const void *data;
    size_t len;
};

/* The four signed frames of an encoded message and their signature. */
struct jmsg_wire {
    char *frames[4];
    size_t lens[4];
    char sig[JMSG_SIG_HEX_LEN + 1];
};

/* Writes a fresh random UUID (version 4, lowercase, 36 characters + NUL) into out. */
void jmsg_uuid(char out[37]);

/* The current UTC time as ISO 8601 with microseconds ("2026-01-01T00:00:00.000000Z"); size >= 32. */
void jmsg_iso_now(char *out, size_t size);

/* Builds a request: header {msg_id (new uuid), session, username, date (now, UTC, ISO 8601 with
 * microseconds), msg_type, version}, parent_header (a copy, or {} when NULL), metadata {} and
 * content (stolen; NULL means {}). Never fails (aborts on OOM). jmsg_release() it. */
void jmsg_build(struct jmsg *ret, const char *session, const char *username, const char *msg_type,
                const json_t *parent_header, json_t *content);
void jmsg_release(struct jmsg *m);

/* HMAC-SHA256 over frames[0..3] in order under key, as lowercase hex into out. An empty key
 * means "unsigned" (Jupyter's convention): out is "". */
void jmsg_sign(const void *key, size_t keylen, const struct jmsg_frame frames[4],
               char out[JMSG_SIG_HEX_LEN + 1]);

/* Serializes the four JSON parts compactly and signs them. Returns 0 or -E2BIG (a part over
 * JMSG_FRAME_MAX); jmsg_wire_release() the result. */
int jmsg_encode(const struct jmsg *m, const void *key, size_t keylen, struct jmsg_wire *ret);
void jmsg_wire_release(struct jmsg_wire *w);

/* Decodes the frames of one multipart message: skips identities up to the delimiter, checks the
 * frame count and sizes, verifies the signature, parses the four JSON objects (header must
 * carry string msg_id and msg_type). Buffers after content are ignored. Returns 0 and fills
 * *ret, or -EBADMSG (malformed), -EPERM (bad signature), -E2BIG (too large) with a message in
 * err. ret is written only on success. */
int jmsg_decode(const struct jmsg_frame *frames, size_t n, const void *key, size_t keylen, struct jmsg *ret,
                struct error_record *err);

/* Sends m on a zmq socket as one multipart message, identities first. Blocks only as zmq's
 * send does. Returns 0 or -errno. */
int jmsg_send(void *sock, const struct jmsg *m, const void *key, size_t keylen, const struct jmsg_frame *ids,
              size_t nids);

/* Receives one whole multipart message without blocking (ZMQ_DONTWAIT) and decodes it. Returns
 * 1 and fills *ret, 0 when nothing is queued, or -errno (see jmsg_decode; the bad message is
 * consumed). */
int jmsg_recv(void *sock, const void *key, size_t keylen, struct jmsg *ret, struct error_record *err);
