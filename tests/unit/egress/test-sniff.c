/* egress_sniff() and the domain name rules it relies on: what a sandbox's first bytes say. */
#include <errno.h>
#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <string.h>

#include "common/net-util.h"
#include "egress/egress.h"
#include "tap.h"

/* A real ClientHello, from OpenSSL's client side over a memory BIO; sni NULL for none. */
static size_t client_hello(const char *sni, unsigned char *out, size_t size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    SSL_connect(ssl);
    int n = BIO_read(wb, out, (int)size);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return n > 0 ? (size_t)n : 0;
}

static int sniff(const char *s, char *name, bool *tls)
{
    return egress_sniff((const unsigned char *)s, strlen(s), tls, name, 256);
}

TEST(tls_sni_from_a_real_client_hello_byte_by_byte)
{
    unsigned char hello[4096];
    size_t n = client_hello("API.Example.com", hello, sizeof(hello));
    ASSERT_TRUE(n > 100);
    char name[256];
    bool tls = false;
    for (size_t k = 1; k < n; k += 37)
        ASSERT_EQ(egress_sniff(hello, k, &tls, name, sizeof(name)), 0);
    ASSERT_EQ(egress_sniff(hello, n, &tls, name, sizeof(name)), 1);
    ASSERT_TRUE(tls);
    ASSERT_STREQ(name, "api.example.com");
}

TEST(tls_without_usable_sni_or_not_a_hello)
{
    unsigned char hello[4096];
    char name[256];
    bool tls;
    size_t n = client_hello(NULL, hello, sizeof(hello));
    ASSERT_EQ(egress_sniff(hello, n, &tls, name, sizeof(name)), -ENOENT);
    n = client_hello("10.0.0.1", hello, sizeof(hello));
    ASSERT_EQ(egress_sniff(hello, n, &tls, name, sizeof(name)), -ENOENT);
    static const unsigned char junk[] = { 0x16, 0x03, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o' };
    ASSERT_EQ(egress_sniff(junk, sizeof(junk), &tls, name, sizeof(name)), -EPROTO);
    static unsigned char big[EGRESS_HEAD_MAX] = { 0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc };
    ASSERT_TRUE(egress_sniff(big, sizeof(big), &tls, name, sizeof(name)) < 0);
}

TEST(http_host_header)
{
    char name[256];
    bool tls = true;
    ASSERT_EQ(sniff("GET / HTTP/1.1\r\nHost: Allowed.Test:8080\r\nAccept: */*\r\n\r\n", name, &tls), 1);
    ASSERT_FALSE(tls);
    ASSERT_STREQ(name, "allowed.test");
    ASSERT_EQ(sniff("GET /x HTTP/1.1\r\nhost:  a.b.c.  \r\n\r\nbody", name, &tls), 1);
    ASSERT_STREQ(name, "a.b.c");
    ASSERT_EQ(sniff("GET / HTTP/1.1\r\nHost: allowed.test\r\n", name, &tls), 0);
    ASSERT_EQ(sniff("GET / HT", name, &tls), 0);
}

TEST(http_refused_heads)
{
    char name[256];
    bool tls;
    ASSERT_EQ(sniff("GET / HTTP/1.1\r\nX: y\r\n\r\n", name, &tls), -ENOENT);
    ASSERT_EQ(sniff("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", name, &tls), -ENOENT);
    ASSERT_EQ(sniff("GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", name, &tls), -ENOENT);
    ASSERT_EQ(sniff("CONNECT b.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n", name, &tls), -ENOENT);
    ASSERT_EQ(sniff("GET / HTTP/1.1\r\nHost: 1.2.3.4\r\n\r\n", name, &tls), -ENOENT);
    ASSERT_EQ(sniff("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", name, &tls), -ENOENT);
    ASSERT_EQ(sniff("GET / HTTP/1.1\r\nHost: a.test:x\r\n\r\n", name, &tls), -ENOENT);
    ASSERT_EQ(sniff("SSH-2.0-OpenSSH_9\r\n", name, &tls), -EPROTO);
    static char big[EGRESS_HEAD_MAX + 1];
    memset(big, 'a', sizeof(big) - 1);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    ASSERT_EQ(egress_sniff((const unsigned char *)big, EGRESS_HEAD_MAX, &tls, name, sizeof(name)), -E2BIG);
}

TEST(domain_patterns_and_matching)
{
    ASSERT_TRUE(net_domain_pattern_valid("example.com"));
    ASSERT_TRUE(net_domain_pattern_valid("*.example.com"));
    ASSERT_TRUE(net_domain_pattern_valid("localhost"));
    ASSERT_FALSE(net_domain_pattern_valid("1.2.3.4"));
    ASSERT_FALSE(net_domain_pattern_valid("10.0.0.0/8"));
    ASSERT_FALSE(net_domain_pattern_valid("fe80::1"));
    ASSERT_FALSE(net_domain_pattern_valid("a..b"));
    ASSERT_FALSE(net_domain_pattern_valid("-a.b"));
    ASSERT_FALSE(net_domain_pattern_valid("a*.b"));
    ASSERT_FALSE(net_domain_pattern_valid("*"));
    ASSERT_FALSE(net_domain_pattern_valid("bad name"));
    ASSERT_TRUE(net_domain_match("example.com", "example.com"));
    ASSERT_TRUE(net_domain_match("Example.COM.", "example.com"));
    ASSERT_FALSE(net_domain_match("example.com", "a.example.com"));
    ASSERT_TRUE(net_domain_match("*.example.com", "a.example.com"));
    ASSERT_TRUE(net_domain_match("*.example.com", "a.b.example.com"));
    ASSERT_FALSE(net_domain_match("*.example.com", "example.com"));
    ASSERT_FALSE(net_domain_match("*.example.com", "badexample.com"));
}

TEST(blocked_addresses)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    static const char *const blocked[] = { "10.1.2.3",   "127.0.0.1", "169.254.169.254", "192.168.1.1",
                                           "100.64.0.1", "0.0.0.0",   "224.0.0.1" };
    for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++) {
        inet_pton(AF_INET, blocked[i], &a.sin_addr);
        ASSERT_TRUE(net_addr_blocked((struct sockaddr *)&a));
    }
    inet_pton(AF_INET, "93.184.216.34", &a.sin_addr);
    ASSERT_FALSE(net_addr_blocked((struct sockaddr *)&a));
    struct sockaddr_in6 b = { .sin6_family = AF_INET6 };
    inet_pton(AF_INET6, "::ffff:10.0.0.1", &b.sin6_addr);
    ASSERT_TRUE(net_addr_blocked((struct sockaddr *)&b));
    inet_pton(AF_INET6, "fd00::1", &b.sin6_addr);
    ASSERT_TRUE(net_addr_blocked((struct sockaddr *)&b));
    inet_pton(AF_INET6, "2606:4700::1", &b.sin6_addr);
    ASSERT_FALSE(net_addr_blocked((struct sockaddr *)&b));
}
