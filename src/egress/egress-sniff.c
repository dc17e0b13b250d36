/* The name a proxied connection is for, from its first bytes: the SNI of a TLS ClientHello
 * (parsed by OpenSSL: a server-side SSL over a memory BIO whose servername callback captures
 * the name and then fails the handshake) or the Host header of an HTTP/1 request head (parsed by
 * libhttp-parser). Stateless: each call parses everything read so far, so a partial head simply
 * asks for more. */
#include <errno.h>
#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/net-util.h"
#include "egress/egress.h"
#include "common/banned.h"

#define TLS_HANDSHAKE_RECORD 0x16

static SSL_CTX *ctx;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

struct tls_state {
    bool called;
    char name[256];
    bool too_long;
};

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    struct tls_state *st = SSL_get_app_data(ssl);
    const char *sn = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    st->called = true;
    if (sn) {
        size_t n = strlen(sn);
        if (n >= sizeof(st->name))
            st->too_long = true;
        else
            memcpy(st->name, sn, n + 1);
    }
    /* Everything needed is known: end the handshake here. */
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void ctx_init(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c)
        return;
    /* Any version a client may offer: the hello is only read, never answered. */
    SSL_CTX_set_security_level(c, 0);
    SSL_CTX_set_min_proto_version(c, 0);
    SSL_CTX_set_max_proto_version(c, 0);
    SSL_CTX_set_tlsext_servername_callback(c, on_servername);
    ctx = c;
}

static int sniff_tls(const unsigned char *buf, size_t len, char *name, size_t size)
{
    pthread_once(&ctx_once, ctx_init);
    if (!ctx)
        return -ENOMEM;
    struct tls_state st = { 0 };
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new_mem_buf(buf, (int)len), *wb = BIO_new(BIO_s_mem());
    if (!ssl || !rb || !wb) {
        SSL_free(ssl);
        BIO_free(rb);
        BIO_free(wb);
        return -ENOMEM;
    }
    /* The end of what was read so far is "more to come", not EOF. */
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_app_data(ssl, &st);
    SSL_set_accept_state(ssl);
    int r = SSL_do_handshake(ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
    SSL_free(ssl);
    ERR_clear_error();
    if (st.called) {
        if (!st.name[0] || st.too_long)
            return -ENOENT;
        return net_domain_normalize(st.name, name, size) < 0 ? -ENOENT : 1;
    }
    if (e == SSL_ERROR_WANT_READ)
        return len >= EGRESS_HEAD_MAX ? -E2BIG : 0;
    return -EPROTO;
}

struct http_state {
    bool in_host, origin_form, done;
    int hosts;
    char host[256];
    size_t host_len;
    bool host_too_long;
};

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_state *st = p->data;
    st->origin_form = len > 0 && at[0] == '/';
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_state *st = p->data;
    st->in_host = len == 4 && strncasecmp(at, "host", 4) == 0;
    if (st->in_host)
        st->hosts++;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_state *st = p->data;
    if (!st->in_host)
        return 0;
    if (st->host_len + len >= sizeof(st->host)) {
        st->host_too_long = true;
        return 0;
    }
    memcpy(st->host + st->host_len, at, len);
    st->host_len += len;
    st->host[st->host_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_state *st = p->data;
    st->done = true;
    http_parser_pause(p, 1);
    return 0;
}

/* Host's value as a name: optional whitespace around it, an optional :port after it. */
static int host_name(const struct http_state *st, char *name, size_t size)
{
    const char *h = st->host;
    size_t n = st->host_len;
    while (n && (*h == ' ' || *h == '\t'))
        h++, n--;
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    if (n == 0 || h[0] == '[')
        return -ENOENT;
    const char *colon = memchr(h, ':', n);
    if (colon) {
        for (const char *d = colon + 1; d < h + n; d++)
            if (*d < '0' || *d > '9')
                return -ENOENT;
        n = (size_t)(colon - h);
    }
    char tmp[256];
    memcpy(tmp, h, n);
    tmp[n] = '\0';
    return net_domain_normalize(tmp, name, size) < 0 ? -ENOENT : 1;
}

static int sniff_http(const unsigned char *buf, size_t len, char *name, size_t size)
{
    static const http_parser_settings settings = {
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
    };
    struct http_state st = { 0 };
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &st;
    http_parser_execute(&p, &settings, (const char *)buf, len);
    enum http_errno he = HTTP_PARSER_ERRNO(&p);
    if (st.done) {
        if (st.hosts != 1 || st.host_too_long || !st.origin_form)
            return -ENOENT;
        return host_name(&st, name, size);
    }
    if (he != HPE_OK)
        return -EPROTO;
    return len >= EGRESS_HEAD_MAX ? -E2BIG : 0;
}

int egress_sniff(const unsigned char *buf, size_t len, bool *ret_tls, char *name, size_t size)
{
    if (len == 0)
        return 0;
    bool tls = buf[0] == TLS_HANDSHAKE_RECORD;
    *ret_tls = tls;
    return tls ? sniff_tls(buf, len, name, size) : sniff_http(buf, len, name, size);
}
