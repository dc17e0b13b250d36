/* The HTTP details of a /files download, following what Go's net/http and mime packages do
 * for the real envd: Content-Type by extension, Content-Disposition formatting, the choice of
 * Content-Encoding from Accept-Encoding, single byte ranges and HTTP dates. Pure functions. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/buf.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "envd/fs/fs.h"
#include "common/banned.h"

static const struct {
    const char *ext;
    const char *type;
} mime_types[] = {
    /* Go's built-in table first, then the common entries of /etc/mime.types (Go appends
     * "; charset=utf-8" to text types). */
    { ".avif", "image/avif" },
    { ".css", "text/css; charset=utf-8" },
    { ".gif", "image/gif" },
    { ".htm", "text/html; charset=utf-8" },
    { ".html", "text/html; charset=utf-8" },
    { ".jpeg", "image/jpeg" },
    { ".jpg", "image/jpeg" },
    { ".js", "text/javascript; charset=utf-8" },
    { ".json", "application/json" },
    { ".mjs", "text/javascript; charset=utf-8" },
    { ".pdf", "application/pdf" },
    { ".png", "image/png" },
    { ".svg", "image/svg+xml" },
    { ".wasm", "application/wasm" },
    { ".webp", "image/webp" },
    { ".xml", "text/xml; charset=utf-8" },
    { ".txt", "text/plain; charset=utf-8" },
    { ".text", "text/plain; charset=utf-8" },
    { ".log", "text/plain; charset=utf-8" },
    { ".csv", "text/csv; charset=utf-8" },
    { ".tsv", "text/tab-separated-values; charset=utf-8" },
    { ".md", "text/markdown; charset=utf-8" },
    { ".py", "text/x-python; charset=utf-8" },
    { ".c", "text/x-csrc; charset=utf-8" },
    { ".h", "text/x-chdr; charset=utf-8" },
    { ".sh", "application/x-sh" },
    { ".ico", "image/vnd.microsoft.icon" },
    { ".bmp", "image/bmp" },
    { ".tif", "image/tiff" },
    { ".tiff", "image/tiff" },
    { ".mp3", "audio/mpeg" },
    { ".wav", "audio/x-wav" },
    { ".ogg", "audio/ogg" },
    { ".mp4", "video/mp4" },
    { ".webm", "video/webm" },
    { ".zip", "application/zip" },
    { ".gz", "application/gzip" },
    { ".tgz", "application/x-gtar-compressed" },
    { ".tar", "application/x-tar" },
    { ".bz2", "application/x-bzip2" },
    { ".xz", "application/x-xz" },
    { ".7z", "application/x-7z-compressed" },
    { ".yaml", "application/yaml" },
    { ".yml", "application/yaml" },
    { ".toml", "application/toml" },
    { ".ipynb", "application/x-ipynb+json" },
    { ".woff", "font/woff" },
    { ".woff2", "font/woff2" },
    { ".ttf", "font/ttf" },
    { ".otf", "font/otf" },
};

const char *fs_content_type_by_name(const char *name)
{
    if (!name)
        return NULL;
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (!dot)
        return NULL;
    for (size_t i = 0; i < ARRAY_SIZE(mime_types); i++)
        if (strcasecmp(dot, mime_types[i].ext) == 0)
            return mime_types[i].type;
    return NULL;
}

const char *fs_content_type_sniff(const void *data, size_t len)
{
    const unsigned char *p = data;
    /* A multi-byte sequence cut by the sniff window is still text. */
    size_t check = len;
    for (size_t back = 0; back < 3 && check > 0 && (p[check - 1] & 0xc0) == 0x80; back++)
        check--;
    if (check > 0 && p[check - 1] >= 0xc0)
        check--;
    for (size_t i = 0; i < check; i++) {
        unsigned char c = p[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b)
            return "application/octet-stream";
    }
    if (!utf8_is_valid(data, check))
        return "application/octet-stream";
    return "text/plain; charset=utf-8";
}

static bool is_tspecial(unsigned char c)
{
    return strchr("()<>@,;:\\\"/[]?=", c) != NULL && c != '\0';
}

static bool is_token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !is_tspecial(c);
}

char *fs_content_disposition(const char *filename)
{
    struct buf b;
    buf_init(&b, 3 * strlen(filename) + 64);
    buf_append_str(&b, "inline; filename");
    bool need_enc = false, token = *filename != '\0';
    for (const unsigned char *p = (const unsigned char *)filename; *p; p++) {
        if ((*p < 0x20 || *p > 0x7e) && *p != '\t')
            need_enc = true;
        if (!is_token_char(*p))
            token = false;
    }
    if (need_enc) {
        static const char hex[] = "0123456789ABCDEF";
        buf_append_str(&b, "*=utf-8''");
        for (const unsigned char *p = (const unsigned char *)filename; *p; p++) {
            unsigned char c = *p;
            if (c <= ' ' || c >= 0x7f || c == '*' || c == '\'' || c == '%' || is_tspecial(c)) {
                char e[3] = { '%', hex[c >> 4], hex[c & 15] };
                buf_append(&b, e, 3);
            } else {
                buf_append(&b, (const char *)p, 1);
            }
        }
    } else if (token) {
        buf_append_str(&b, "=");
        buf_append_str(&b, filename);
    } else {
        buf_append_str(&b, "=\"");
        for (const char *p = filename; *p; p++) {
            if (*p == '"' || *p == '\\')
                buf_append(&b, "\\", 1);
            buf_append(&b, p, 1);
        }
        buf_append_str(&b, "\"");
    }
    return buf_steal(&b);
}

struct coding {
    char name[32];
    double q;
};

#define MAX_CODINGS 32

/* Splits an Accept-Encoding value into at most MAX_CODINGS lowercased codings with q. */
static size_t parse_codings(const char *header, struct coding *out)
{
    size_t n = 0;
    const char *p = header;
    while (*p && n < MAX_CODINGS) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[128];
        size_t il = len < sizeof(item) - 1 ? len : sizeof(item) - 1;
        memcpy(item, p, il);
        item[il] = '\0';
        p = end ? end + 1 : p + len;

        double q = 1.0;
        char *semi = strchr(item, ';');
        if (semi) {
            *semi = '\0';
            for (char *param = semi + 1; param && *param;) {
                char *next = strchr(param, ';');
                if (next)
                    *next++ = '\0';
                while (*param == ' ' || *param == '\t')
                    param++;
                if ((param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
                    char *e;
                    double v = strtod(param + 2, &e);
                    while (*e == ' ' || *e == '\t')
                        e++;
                    if (e != param + 2 && *e == '\0')
                        q = v;
                }
                param = next;
            }
        }
        char *s = item;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t sl = strlen(s);
        while (sl > 0 && (s[sl - 1] == ' ' || s[sl - 1] == '\t'))
            s[--sl] = '\0';
        if (sl == 0 || sl >= sizeof(out[n].name))
            continue;
        for (size_t i = 0; i < sl; i++)
            out[n].name[i] = (char)tolower((unsigned char)s[i]);
        out[n].name[sl] = '\0';
        out[n].q = q;
        n++;
    }
    return n;
}

static bool identity_rejected(const struct coding *c, size_t n)
{
    bool rejected = false, accepted = false, wildcard_rejected = false;
    for (size_t i = 0; i < n; i++) {
        if (streq(c[i].name, "identity")) {
            if (c[i].q == 0)
                rejected = true;
            else
                accepted = true;
        } else if (streq(c[i].name, "*") && c[i].q == 0) {
            wildcard_rejected = true;
        }
    }
    return rejected || (wildcard_rejected && !accepted);
}

bool fs_identity_acceptable(const char *header)
{
    if (!header || !*header)
        return true;
    struct coding c[MAX_CODINGS];
    size_t n = parse_codings(header, c);
    return !identity_rejected(c, n);
}

int fs_accept_encoding(const char *header, enum fs_encoding *ret)
{
    if (!header || !*header) {
        *ret = FS_ENCODING_IDENTITY;
        return 0;
    }
    struct coding c[MAX_CODINGS];
    size_t n = parse_codings(header, c);
    bool id_rejected = identity_rejected(c, n);
    /* Highest q first, keeping the header's order among equals (a stable sort, as Go's). */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && c[j].q > c[j - 1].q; j--) {
            struct coding t = c[j];
            c[j] = c[j - 1];
            c[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        if (c[i].q <= 0)
            continue;
        if (streq(c[i].name, "identity")) {
            *ret = FS_ENCODING_IDENTITY;
            return 0;
        }
        if (streq(c[i].name, "*")) {
            *ret = id_rejected ? FS_ENCODING_GZIP : FS_ENCODING_IDENTITY;
            return 0;
        }
        if (streq(c[i].name, "gzip")) {
            *ret = FS_ENCODING_GZIP;
            return 0;
        }
    }
    if (!id_rejected) {
        *ret = FS_ENCODING_IDENTITY;
        return 0;
    }
    return -EINVAL;
}

static int parse_pos(const char *s, size_t len, uint64_t *ret)
{
    char tmp[32];
    if (len == 0 || len >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    uint64_t v;
    if (parse_uint64(tmp, &v) < 0 || v > INT64_MAX)
        return -EINVAL;
    *ret = v;
    return 0;
}

int fs_parse_range(const char *header, uint64_t size, uint64_t *ret_start, uint64_t *ret_end)
{
    if (!header || !*header)
        return 0;
    if (strncmp(header, "bytes=", 6) != 0)
        return -ERANGE;
    size_t valid = 0;
    bool no_overlap = false;
    uint64_t start = 0, end = 0;
    for (const char *p = header + 6; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p;
        p = comma ? comma + 1 : p + len;
        while (len > 0 && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 0)
            continue;
        const char *dash = memchr(s, '-', len);
        if (!dash)
            return -ERANGE;
        size_t sl = (size_t)(dash - s), el = len - sl - 1;
        const char *es = dash + 1;
        while (sl > 0 && (s[sl - 1] == ' ' || s[sl - 1] == '\t'))
            sl--;
        while (el > 0 && (*es == ' ' || *es == '\t'))
            es++, el--;
        uint64_t a, b;
        if (sl == 0) {
            if (parse_pos(es, el, &b) < 0)
                return -ERANGE;
            if (b == 0) {
                no_overlap = true;
                continue;
            }
            if (b > size)
                b = size;
            if (size == 0) {
                no_overlap = true;
                continue;
            }
            a = size - b;
            b = size - 1;
        } else {
            if (parse_pos(s, sl, &a) < 0)
                return -ERANGE;
            if (a >= size) {
                no_overlap = true;
                continue;
            }
            if (el == 0) {
                b = size - 1;
            } else {
                if (parse_pos(es, el, &b) < 0 || a > b)
                    return -ERANGE;
                if (b >= size)
                    b = size - 1;
            }
        }
        if (valid++ == 0) {
            start = a;
            end = b;
        }
    }
    if (valid == 0)
        return no_overlap ? -ERANGE : 0;
    if (valid > 1)
        return 0; /* several ranges: served whole, which RFC 9110 allows */
    *ret_start = start;
    *ret_end = end;
    return 1;
}

int fs_parse_http_date(const char *s, time_t *ret)
{
    static const char *const formats[] = {
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
    };
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
        struct tm tm = { 0 };
        const char *end = strptime(s, formats[i], &tm);
        if (end && *end == '\0') {
            *ret = timegm(&tm);
            return 0;
        }
    }
    return -EINVAL;
}

void fs_format_http_date(time_t t, char *out, size_t size)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
