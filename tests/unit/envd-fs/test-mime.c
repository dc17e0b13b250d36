/* Download HTTP details: Content-Type, Content-Disposition (Go's mime.FormatMediaType),
 * Accept-Encoding negotiation, byte ranges and HTTP dates. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "envd/fs/fs.h"
#include "tap.h"

TEST(content_type_by_extension)
{
    ASSERT_STREQ(fs_content_type_by_name("/a/b.json"), "application/json");
    ASSERT_STREQ(fs_content_type_by_name("x.TXT"), "text/plain; charset=utf-8");
    ASSERT_STREQ(fs_content_type_by_name("/a.dir/pic.PNG"), "image/png");
    ASSERT_STREQ(fs_content_type_by_name("index.html"), "text/html; charset=utf-8");
    ASSERT_TRUE(fs_content_type_by_name("/a.dir/noext") == NULL);
    ASSERT_TRUE(fs_content_type_by_name("x.unknownext") == NULL);
    ASSERT_STREQ(fs_content_type_sniff("hello\nworld\t\xc3\xa9", 14), "text/plain; charset=utf-8");
    ASSERT_STREQ(fs_content_type_sniff("\x7f"
                                       "ELF\x02\x01\x01\x00",
                                       8),
                 "application/octet-stream");
    ASSERT_STREQ(fs_content_type_sniff("ok \xff\xfe", 5), "application/octet-stream");
    /* A UTF-8 sequence cut by the sniff window is still text. */
    ASSERT_STREQ(fs_content_type_sniff("abc\xe2\x82", 5), "text/plain; charset=utf-8");
    ASSERT_STREQ(fs_content_type_sniff("", 0), "text/plain; charset=utf-8");
}

static void disposition_is(const char *name, const char *want)
{
    char *s = fs_content_disposition(name);
    ASSERT_STREQ(s, want);
    free(s);
}

TEST(content_disposition_quotes_safely)
{
    disposition_is("report.txt", "inline; filename=report.txt");
    disposition_is("my file.txt", "inline; filename=\"my file.txt\"");
    disposition_is("a\"b\\c", "inline; filename=\"a\\\"b\\\\c\"");
    disposition_is("x;y=z", "inline; filename=\"x;y=z\"");
    disposition_is("\xe2\x82\xac.txt", "inline; filename*=utf-8''%E2%82%AC.txt");
    /* CR/LF can never end up in the header. */
    disposition_is("a\r\nSet-Cookie: x", "inline; filename*=utf-8''a%0D%0ASet-Cookie%3A%20x");
    disposition_is("", "inline; filename=\"\"");
}

static int enc(const char *h)
{
    enum fs_encoding e = (enum fs_encoding) - 1;
    int r = fs_accept_encoding(h, &e);
    return r < 0 ? -1 : (int)e;
}

TEST(accept_encoding)
{
    ASSERT_EQ(enc(NULL), FS_ENCODING_IDENTITY);
    ASSERT_EQ(enc(""), FS_ENCODING_IDENTITY);
    ASSERT_EQ(enc("gzip, deflate"), FS_ENCODING_GZIP);
    ASSERT_EQ(enc("GZIP"), FS_ENCODING_GZIP);
    ASSERT_EQ(enc("deflate, br"), FS_ENCODING_IDENTITY);
    ASSERT_EQ(enc("gzip;q=0.5, identity"), FS_ENCODING_IDENTITY);
    ASSERT_EQ(enc("identity;q=0.1, gzip;q=0.9"), FS_ENCODING_GZIP);
    ASSERT_EQ(enc("gzip;q=0"), FS_ENCODING_IDENTITY);
    ASSERT_EQ(enc("*"), FS_ENCODING_IDENTITY);
    ASSERT_EQ(enc("identity;q=0, *"), FS_ENCODING_GZIP);
    ASSERT_EQ(enc("br, identity;q=0"), -1);
    ASSERT_EQ(enc("*;q=0"), -1);
    ASSERT_TRUE(fs_identity_acceptable("gzip"));
    ASSERT_FALSE(fs_identity_acceptable("gzip, identity;q=0"));
    ASSERT_FALSE(fs_identity_acceptable("*;q=0"));
    ASSERT_TRUE(fs_identity_acceptable("*;q=0, identity"));
}

static int range(const char *h, uint64_t size, uint64_t *a, uint64_t *b)
{
    *a = *b = 999;
    return fs_parse_range(h, size, a, b);
}

TEST(byte_ranges)
{
    uint64_t a, b;
    ASSERT_EQ(range(NULL, 100, &a, &b), 0);
    ASSERT_EQ(range("bytes=0-9", 100, &a, &b), 1);
    ASSERT_EQ(a, 0);
    ASSERT_EQ(b, 9);
    ASSERT_EQ(range("bytes=90-", 100, &a, &b), 1);
    ASSERT_EQ(a, 90);
    ASSERT_EQ(b, 99);
    ASSERT_EQ(range("bytes=-10", 100, &a, &b), 1);
    ASSERT_EQ(a, 90);
    ASSERT_EQ(b, 99);
    ASSERT_EQ(range("bytes=-1000", 100, &a, &b), 1);
    ASSERT_EQ(a, 0);
    ASSERT_EQ(range("bytes=50-5000", 100, &a, &b), 1);
    ASSERT_EQ(b, 99);
    ASSERT_EQ(range("bytes=100-", 100, &a, &b), -ERANGE);
    ASSERT_EQ(range("bytes=0-", 0, &a, &b), -ERANGE);
    ASSERT_EQ(range("bytes=5-1", 100, &a, &b), -ERANGE);
    ASSERT_EQ(range("bytes=x-1", 100, &a, &b), -ERANGE);
    ASSERT_EQ(range("items=0-1", 100, &a, &b), -ERANGE);
    ASSERT_EQ(range("bytes=-99999999999999999999999", 100, &a, &b), -ERANGE);
    /* Several ranges: served whole. One unsatisfiable among good ones is dropped. */
    ASSERT_EQ(range("bytes=0-1, 5-6", 100, &a, &b), 0);
    ASSERT_EQ(range("bytes=200-300, 5-6", 100, &a, &b), 1);
    ASSERT_EQ(a, 5);
    ASSERT_EQ(b, 6);
}

TEST(http_dates)
{
    char s[40];
    fs_format_http_date(1767225600, s, sizeof(s));
    ASSERT_STREQ(s, "Thu, 01 Jan 2026 00:00:00 GMT");
    time_t t;
    ASSERT_OK(fs_parse_http_date(s, &t));
    ASSERT_EQ(t, 1767225600);
    ASSERT_OK(fs_parse_http_date("Thursday, 01-Jan-26 00:00:00 GMT", &t));
    ASSERT_EQ(t, 1767225600);
    ASSERT_OK(fs_parse_http_date("Thu Jan  1 00:00:00 2026", &t));
    ASSERT_EQ(t, 1767225600);
    ASSERT_EQ(fs_parse_http_date("yesterday", &t), -EINVAL);
    ASSERT_EQ(fs_parse_http_date("Thu, 01 Jan 2026 00:00:00 GMT trailing", &t), -EINVAL);
}
