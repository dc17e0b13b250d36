/* The Jupyter wire protocol: see jupyter-msg.h. HMAC comes from nettle (common/crypto.h),
 * JSON from jansson; nothing here parses or hashes by hand. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <zmq.h>

#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/json-util.h"
#include "common/xalloc.h"
#include "interpd/jupyter-msg.h"
#include "common/banned.h"

void jmsg_uuid(char out[37])
{
    unsigned char b[16];
    if (random_bytes(b, sizeof(b)) < 0)
        abort(); /* the kernel CSPRNG does not fail once the system is up */
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void jmsg_iso_now(char *out, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    if (snprintf(out, size, "%s.%06ldZ", base, ts.tv_nsec / 1000) < 0)
        out[0] = '\0';
}

void jmsg_build(struct jmsg *ret, const char *session, const char *username, const char *msg_type,
                const json_t *parent_header, json_t *content)
{
    char id[37], date[48];
    jmsg_uuid(id);
    jmsg_iso_now(date, sizeof(date));
    json_t *h = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", id, "session", session, "username",
                          username, "date", date, "msg_type", msg_type, "version", JMSG_VERSION);
    if (!h)
        abort();
    *ret = (struct jmsg){
        .header = h,
        .parent_header = parent_header ? json_deep_copy(parent_header) : json_object(),
        .metadata = json_object(),
        .content = content ? content : json_object(),
    };
    ret->msg_type = json_get_string(h, "msg_type");
    ret->msg_id = json_get_string(h, "msg_id");
    ret->parent_id = json_get_string(ret->parent_header, "msg_id");
}

void jmsg_release(struct jmsg *m)
{
    if (!m)
        return;
    json_decref(m->header);
    json_decref(m->parent_header);
    json_decref(m->metadata);
    json_decref(m->content);
    *m = (struct jmsg){ 0 };
}

void jmsg_sign(const void *key, size_t keylen, const struct jmsg_frame frames[4],
               char out[JMSG_SIG_HEX_LEN + 1])
{
    out[0] = '\0';
    if (keylen == 0)
        return;
    struct iovec parts[4];
    for (int i = 0; i < 4; i++)
        parts[i] = (struct iovec){ .iov_base = (void *)frames[i].data, .iov_len = frames[i].len };
    unsigned char md[SHA256_LEN];
    hmac_sha256(key, keylen, parts, 4, md);
    sha256_to_hex(md, out);
}

int jmsg_encode(const struct jmsg *m, const void *key, size_t keylen, struct jmsg_wire *ret)
{
    struct jmsg_wire w = { 0 };
    const json_t *parts[4] = { m->header, m->parent_header, m->metadata, m->content };
    struct jmsg_frame f[4];
    for (int i = 0; i < 4; i++) {
        w.frames[i] = json_dump_compact(parts[i], &w.lens[i]);
        f[i] = (struct jmsg_frame){ w.frames[i], w.lens[i] };
    }
    for (int i = 0; i < 4; i++)
        if (w.lens[i] > JMSG_FRAME_MAX) {
            jmsg_wire_release(&w);
            return -E2BIG;
        }
    jmsg_sign(key, keylen, f, w.sig);
    *ret = w;
    return 0;
}

void jmsg_wire_release(struct jmsg_wire *w)
{
    for (int i = 0; i < 4; i++)
        free(w->frames[i]);
    *w = (struct jmsg_wire){ 0 };
}

static const char *const part_names[4] = { "header", "parent_header", "metadata", "content" };

int jmsg_decode(const struct jmsg_frame *frames, size_t n, const void *key, size_t keylen, struct jmsg *ret,
                struct error_record *err)
{
    if (n > JMSG_FRAMES_MAX)
        return error_set(err, E2BIG, "message has %zu frames (limit %d)", n, JMSG_FRAMES_MAX);
    size_t d = 0;
    while (d < n && !(frames[d].len == strlen(JMSG_DELIMITER) &&
                      memcmp(frames[d].data, JMSG_DELIMITER, frames[d].len) == 0))
        d++;
    if (d == n)
        return error_set(err, EBADMSG, "no %s delimiter among %zu frames", JMSG_DELIMITER, n);
    if (n - d < 6)
        return error_set(err, EBADMSG, "message has %zu frames after the delimiter (need 5)", n - d - 1);
    for (size_t i = 0; i < n; i++)
        if (frames[i].len > JMSG_FRAME_MAX)
            return error_set(err, E2BIG, "frame %zu has %zu bytes (limit %zu)", i, frames[i].len,
                             JMSG_FRAME_MAX);

    const struct jmsg_frame *sig = &frames[d + 1], *parts = &frames[d + 2];
    char want[JMSG_SIG_HEX_LEN + 1];
    jmsg_sign(key, keylen, parts, want);
    if (!memeq_consttime(want, strlen(want), sig->data, sig->len))
        return error_set(err, EPERM, "invalid message signature");

    json_t *j[4] = { NULL };
    int r = 0;
    for (int i = 0; i < 4; i++) {
        json_error_t jerr;
        j[i] = json_loadb(parts[i].data, parts[i].len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j[i] || !json_is_object(j[i])) {
            r = error_set(err, EBADMSG, "%s is not a JSON object%s%s", part_names[i], j[i] ? "" : ": ",
                          j[i] ? "" : jerr.text);
            goto fail;
        }
    }
    const char *msg_id = json_get_string(j[0], "msg_id"), *msg_type = json_get_string(j[0], "msg_type");
    if (!msg_id || !msg_type) {
        r = error_set(err, EBADMSG, "header lacks msg_id or msg_type");
        goto fail;
    }
    *ret = (struct jmsg){
        .header = j[0],
        .parent_header = j[1],
        .metadata = j[2],
        .content = j[3],
        .msg_id = msg_id,
        .msg_type = msg_type,
        .parent_id = json_get_string(j[1], "msg_id"),
    };
    return 0;
fail:
    for (int i = 0; i < 4; i++)
        json_decref(j[i]);
    return r;
}

int jmsg_send(void *sock, const struct jmsg *m, const void *key, size_t keylen, const struct jmsg_frame *ids,
              size_t nids)
{
    struct jmsg_wire w;
    int r = jmsg_encode(m, key, keylen, &w);
    if (r < 0)
        return r;
    struct jmsg_frame all[JMSG_FRAMES_MAX];
    size_t n = 0;
    if (nids > JMSG_FRAMES_MAX - 6) {
        jmsg_wire_release(&w);
        return -E2BIG;
    }
    for (size_t i = 0; i < nids; i++)
        all[n++] = ids[i];
    all[n++] = (struct jmsg_frame){ JMSG_DELIMITER, strlen(JMSG_DELIMITER) };
    all[n++] = (struct jmsg_frame){ w.sig, strlen(w.sig) };
    for (int i = 0; i < 4; i++)
        all[n++] = (struct jmsg_frame){ w.frames[i], w.lens[i] };
    r = 0;
    for (size_t i = 0; i < n; i++) {
        if (zmq_send(sock, all[i].data, all[i].len, i + 1 < n ? ZMQ_SNDMORE : 0) < 0) {
            r = -errno;
            break;
        }
    }
    jmsg_wire_release(&w);
    return r;
}

int jmsg_recv(void *sock, const void *key, size_t keylen, struct jmsg *ret, struct error_record *err)
{
    zmq_msg_t msgs[JMSG_FRAMES_MAX];
    struct jmsg_frame frames[JMSG_FRAMES_MAX];
    size_t n = 0, total = 0;
    int r = 0;
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, n == 0 && total == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int e = errno;
            zmq_msg_close(&part);
            if (total == 0 && e == EAGAIN)
                return 0;
            r = error_set(err, e, "zmq receive failed: %s", zmq_strerror(e));
            break;
        }
        bool more = zmq_msg_more(&part);
        total++;
        /* Frames past the limit are read and dropped so the next message starts cleanly. */
        if (n < JMSG_FRAMES_MAX) {
            msgs[n] = part;
            frames[n] = (struct jmsg_frame){ zmq_msg_data(&msgs[n]), zmq_msg_size(&msgs[n]) };
            n++;
        } else {
            zmq_msg_close(&part);
        }
        if (!more)
            break;
    }
    if (r == 0) {
        if (total > JMSG_FRAMES_MAX)
            r = error_set(err, E2BIG, "message has %zu frames (limit %d)", total, JMSG_FRAMES_MAX);
        else
            r = jmsg_decode(frames, n, key, keylen, ret, err);
    }
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&msgs[i]);
    return r < 0 ? r : 1;
}
