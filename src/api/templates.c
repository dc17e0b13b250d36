/* The template endpoints of E2B's REST API (e2b-compat §2.7, §5.2) and the snapshot listing of
 * §2.3: build requests (POST /v3/templates), the COPY file cache (GET .../files/{hash} and the
 * upload it hands out), build start and status, names, tags, listing, publishing, deletion.
 *
 * Invariant: a file in the build cache (<state>/cache/files/<hash>.tar.gz) is only ever made
 * whole: it is written under a temporary name and renamed, so a builder never reads half an
 * upload. The upload URL needs no API key (the SDK sends none): it carries an expiring
 * HMAC-SHA256 of its own method and path under a secret this server drew at start, so only a
 * URL this server handed out, for that template and hash, is accepted, and only until it
 * expires (a restart invalidates them all, which costs a client one more GET). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api-internal.h"
#include "common/cleanup.h"
#include "common/crypto.h"
#include "common/http-util.h"
#include "common/json-util.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "orchestrator/orchestrator.h"
#include "store/store.h"
#include "common/banned.h"

#define TEMPLATE_ID_LEN 20
#define FILES_HASH_LEN 64
#define UPLOAD_URL_TTL_S 3600
#define MAX_STEPS 256
#define MAX_TAGS 64
#define STATUS_LOG_MAX 100
#define LIST_MAX 100
#define LIST_V1_MAX 10000
#define ENVD_VERSION_REPORTED "0.6.13"
/* What a template reports for resources it leaves to the server (E2B's defaults). */
#define DEFAULT_CPU_COUNT 2
#define DEFAULT_MEMORY_MB 512
#define DEFAULT_DISK_MB 1024

/* ---- helpers ---- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool tag_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > STORE_TAG_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(s[i]) && !(s[i] >= 'A' && s[i] <= 'Z') && s[i] != '.' && s[i] != '_' &&
            s[i] != '-')
            return false;
    return true;
}

static bool hash_valid(const char *s)
{
    if (strlen(s) != FILES_HASH_LEN)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* Splits "name[:tag]" into buffers of the caller's; the tag is "" when absent. */
static int split_name(const char *in, char *name, char *tag, struct error_record *err)
{
    const char *colon = strchr(in, ':');
    size_t n = colon ? (size_t)(colon - in) : strlen(in);
    if (n > STORE_NAME_MAX)
        return error_set(err, EINVAL, "template name '%.*s...' is longer than %d bytes", 32, in,
                         STORE_NAME_MAX);
    memcpy(name, in, n);
    name[n] = '\0';
    if (!store_name_valid(name))
        return error_set(err, EINVAL,
                         "invalid template name '%s': use lowercase letters, digits, '.', '_' and '-' "
                         "(starting with a letter or digit), at most %d bytes",
                         name, STORE_NAME_MAX);
    tag[0] = '\0';
    if (colon) {
        if (str_copy(tag, STORE_TAG_MAX + 1, colon + 1) < 0 || !tag_valid(tag))
            return error_set(err, EINVAL,
                             "invalid tag '%s': use letters, digits, '.', '_' and '-', 1 to %d bytes",
                             colon + 1, STORE_TAG_MAX);
    }
    return 0;
}

/* RFC 3339 with milliseconds, as E2B's build log timestamps. */
static void format_ms(int64_t ms, char *out, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03dZ", base, (int)(ms % 1000));
}

static json_t *time_json(int64_t ms)
{
    char buf[40];
    format_ms(ms, buf, sizeof(buf));
    return json_string(buf);
}

static enum MHD_Result reply_json(struct api_request *req, unsigned status, json_t *j)
{
    enum MHD_Result ret = http_queue_json(req->conn, status, j);
    json_decref(j);
    return ret;
}

static enum MHD_Result bad_request(struct api_request *req, const struct error_record *err)
{
    return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "%s", err->msg);
}

static int add_name(const char *name, void *userdata)
{
    json_array_append_new(userdata, json_string(name));
    return 0;
}

/* The template's names as a JSON array (store lock held). */
static int names_json(struct store *st, const char *id, json_t **ret, struct error_record *err)
{
    json_t *a = json_array();
    int r = store_template_names(st, id, add_name, a, err);
    if (r < 0) {
        json_decref(a);
        return r;
    }
    *ret = a;
    return 0;
}

/* Looks a path's {templateID} up (an id, or a name with an optional tag) and copies the id. */
static int lookup(struct api_request *req, const char *ref, char *ret_id, struct error_record *err)
{
    struct store *st = api_store_lock(req->server);
    int r = store_template_lookup(st, ref, ret_id, err);
    api_store_unlock(req->server);
    return r;
}

/* ---- POST /v3/templates ---- */

static int get_opt_uint(const json_t *body, const char *key, uint32_t min, uint32_t max, uint32_t *ret,
                        struct error_record *err)
{
    json_t *v = json_object_get(body, key);
    *ret = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min ||
        json_integer_value(v) > (json_int_t)max)
        return error_set(err, EINVAL, "%s must be an integer from %" PRIu32 " to %" PRIu32, key, min, max);
    *ret = (uint32_t)json_integer_value(v);
    return 0;
}

/* Reads `tags` (strings, at most MAX_TAGS) into a NULL-terminated list of pointers into the
 * JSON, after any tag from the name. */
static int read_tags(const json_t *a, const char **out, size_t *n, struct error_record *err)
{
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a) || json_array_size(a) > MAX_TAGS)
        return error_set(err, EINVAL, "tags must be an array of at most %d strings", MAX_TAGS);
    size_t i;
    json_t *v;
    json_array_foreach (a, i, v) {
        if (!json_is_string(v) || !tag_valid(json_string_value(v)))
            return error_set(err, EINVAL,
                             "tags[%zu] must be a tag of letters, digits, '.', '_' and '-' (1 to %d)", i,
                             STORE_TAG_MAX);
        bool dup = false;
        for (size_t k = 0; k < *n && !dup; k++)
            dup = streq(out[k], json_string_value(v));
        if (!dup)
            out[(*n)++] = json_string_value(v);
    }
    return 0;
}

enum MHD_Result api_template_request_build(struct api_request *req)
{
    enum MHD_Result ret;
    json_auto_t *body = api_request_json(req, &ret);
    if (!body)
        return ret;
    struct error_record err = { 0 };
    const char *full = json_get_string(body, "name");
    if (!full)
        full = json_get_string(body, "alias"); /* deprecated spelling */
    if (!full)
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST,
                                "name (a string, \"name[:tag]\") is required");
    char name[STORE_NAME_MAX + 1], tag[STORE_TAG_MAX + 1];
    int r = split_name(full, name, tag, &err);
    const char *tags[MAX_TAGS + 2] = { 0 };
    size_t n_tags = 0;
    if (r >= 0 && tag[0])
        tags[n_tags++] = tag;
    if (r >= 0)
        r = read_tags(json_object_get(body, "tags"), tags, &n_tags, &err);
    if (r >= 0 && n_tags == 0)
        tags[n_tags++] = STORE_DEFAULT_TAG;

    struct store_build b = { .status = STORE_BUILD_WAITING };
    if (r >= 0)
        r = get_opt_uint(body, "cpuCount", 1, 1024, &b.cpu_count, &err);
    if (r >= 0)
        r = get_opt_uint(body, "memoryMB", 128, 1u << 22, &b.memory_mb, &err);
    if (r >= 0 && b.memory_mb % 2 != 0)
        r = error_set(&err, EINVAL, "memoryMB must be an even number");
    if (r >= 0)
        r = get_opt_uint(body, "minFreeDiskMb", 0, 1u << 24, &b.disk_mb, &err);
    if (r < 0)
        return bad_request(req, &err);
    str_copy(b.envd_version, sizeof(b.envd_version), ENVD_VERSION_REPORTED);

    struct store_template t = { 0 };
    if (random_alnum(t.id, TEMPLATE_ID_LEN) < 0 || random_uuid4(b.id) < 0)
        return http_queue_error(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "no randomness for ids");

    char id[STORE_TEMPLATE_ID_MAX + 1];
    json_t *names = NULL;
    struct store_template got = { 0 };
    struct store *st = api_store_lock(req->server);
    r = store_template_request_build(st, name, &t, &b, tags, id, &err);
    if (r >= 0)
        r = store_template_get(st, id, &got, &err);
    if (r >= 0)
        r = names_json(st, id, &names, &err);
    api_store_unlock(req->server);
    if (r < 0)
        return api_queue_failure(req, r, &err);

    json_t *tags_j = json_array();
    for (size_t i = 0; i < n_tags; i++)
        json_array_append_new(tags_j, json_string(tags[i]));
    return reply_json(req, MHD_HTTP_ACCEPTED,
                      json_pack("{s:s, s:s, s:O, s:o, s:o, s:b}", "templateID", id, "buildID", b.id, "names",
                                names, "aliases", names, "tags", tags_j, "public", got.public));
}

/* ---- the COPY file cache ---- */

static char *cache_dir(struct api_request *req)
{
    return xasprintf("%s/cache/files", api_server_state_dir(req->server));
}

/* Opens <state>/cache/files, creating it (and cache/) owner-only when missing. */
static int open_cache_dir(struct api_request *req, struct error_record *err)
{
    _cleanup_free_ char *cache = xasprintf("%s/cache", api_server_state_dir(req->server));
    _cleanup_free_ char *files = cache_dir(req);
    if (mkdir(cache, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "creating %s", cache);
    if (mkdir(files, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, errno, "creating %s", files);
    int fd = open(files, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, errno, "opening %s", files);
    return fd;
}

void api_template_cache_clean(const char *state_dir)
{
    _cleanup_free_ char *files = xasprintf("%s/cache/files", state_dir);
    DIR *d = opendir(files);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] == '.' && strstr(de->d_name, ".tmp-"))
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
}

static bool cached(struct api_request *req, const char *hash)
{
    _cleanup_free_ char *path =
        xasprintf("%s/cache/files/%s.tar.gz", api_server_state_dir(req->server), hash);
    struct stat st;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The upload token of a path valid until `expires`: hex HMAC-SHA256 of "PUT <path> <expires>". */
static void upload_token(struct api_request *req, const char *path, const char *expires,
                         char out[2 * SHA256_LEN + 1])
{
    _cleanup_free_ char *msg = xasprintf("PUT %s %s", path, expires);
    unsigned char mac[SHA256_LEN];
    size_t key_len;
    const unsigned char *key = api_server_upload_secret(req->server, &key_len);
    hmac_sha256(key, key_len, &(struct iovec){ .iov_base = msg, .iov_len = strlen(msg) }, 1, mac);
    sha256_to_hex(mac, out);
}

/* The Host the client used, when it is plainly a host[:port]; else this server's own address. */
static char *base_url(struct api_request *req)
{
    const char *host = http_header(req->conn, MHD_HTTP_HEADER_HOST);
    bool ok = host && *host && strlen(host) < 256;
    for (const char *p = host; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
             *p == '-' || *p == ':' || *p == '[' || *p == ']';
    if (ok)
        return xasprintf("http://%s", host);
    return xasprintf("http://127.0.0.1:%u", (unsigned)api_server_port(req->server));
}

enum MHD_Result api_template_file_link(struct api_request *req)
{
    const char *hash = req->params[1];
    if (!hash_valid(hash))
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "hash must be 64 lowercase hex digits");
    struct error_record err = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    int r = lookup(req, req->params[0], id, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    if (cached(req, hash))
        return reply_json(req, MHD_HTTP_CREATED, json_pack("{s:b}", "present", true));

    char expires[24], token[2 * SHA256_LEN + 1];
    snprintf(expires, sizeof(expires), "%lld", (long long)time(NULL) + UPLOAD_URL_TTL_S);
    _cleanup_free_ char *path = xasprintf("/upload/templates/%s/files/%s", id, hash);
    upload_token(req, path, expires, token);
    _cleanup_free_ char *base = base_url(req);
    _cleanup_free_ char *url = xasprintf("%s%s?expires=%s&token=%s", base, path, expires, token);
    return reply_json(req, MHD_HTTP_CREATED, json_pack("{s:b, s:s}", "present", false, "url", url));
}

/* ---- PUT /upload/templates/{templateID}/files/{hash} (streamed) ---- */

struct upload {
    int dir_fd;
    int fd;
    char tmp_name[FILES_HASH_LEN + 40];
    char final_name[FILES_HASH_LEN + 8];
    uint64_t expected;
    uint64_t received;
    bool committed;
};

static enum MHD_Result upload_begin(struct api_request *req, void **ret_ctx, bool *ret_answered)
{
    *ret_answered = true;
    const char *expires = http_query(req->conn, "expires"), *token = http_query(req->conn, "token");
    int64_t exp;
    char want[2 * SHA256_LEN + 1];
    if (!expires || !token || parse_int64(expires, &exp) < 0)
        return http_queue_error(req->conn, MHD_HTTP_FORBIDDEN,
                                "missing upload token: ask GET /templates/{id}/files/{hash}");
    upload_token(req, req->path, expires, want);
    if (!memeq_consttime(want, strlen(want), token, strlen(token)))
        return http_queue_error(req->conn, MHD_HTTP_FORBIDDEN, "invalid upload token");
    if (exp < (int64_t)time(NULL))
        return http_queue_error(req->conn, MHD_HTTP_FORBIDDEN, "the upload URL has expired");
    const char *hash = req->params[1];
    if (!hash_valid(hash)) /* signed by us, so well-formed; checked again before it names a file */
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "hash must be 64 lowercase hex digits");

    /* The SDK always sends a Content-Length (S3 needs one); knowing the size up front lets
     * an oversized upload be refused before any of it is read. */
    const char *cl = http_header(req->conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t len;
    if (!cl)
        return http_queue_error(req->conn, MHD_HTTP_LENGTH_REQUIRED, "Content-Length is required");
    if (parse_uint64(cl, &len) < 0)
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "invalid Content-Length");
    if (len > API_MAX_UPLOAD)
        return http_queue_error(req->conn, MHD_HTTP_CONTENT_TOO_LARGE, "upload is larger than %llu bytes",
                                (unsigned long long)API_MAX_UPLOAD);
    if (len < 2)
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "the upload must be a gzip'd tar archive");

    struct error_record err = { 0 };
    int dir_fd = open_cache_dir(req, &err);
    if (dir_fd < 0)
        return http_queue_error(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", err.msg);
    struct upload *u = xcalloc(1, sizeof(*u));
    u->dir_fd = dir_fd;
    u->expected = len;
    char rnd[17];
    if (random_hex(rnd, 8) < 0) {
        safe_close(dir_fd);
        free(u);
        return http_queue_error(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "no randomness for a file name");
    }
    snprintf(u->tmp_name, sizeof(u->tmp_name), ".%s.tmp-%s", hash, rnd);
    snprintf(u->final_name, sizeof(u->final_name), "%s.tar.gz", hash);
    u->fd = openat(dir_fd, u->tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (u->fd < 0) {
        int e = errno;
        safe_close(dir_fd);
        free(u);
        return http_queue_error(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "creating the upload file: %s",
                                errno_to_string(e));
    }
    *ret_ctx = u;
    *ret_answered = false;
    return MHD_YES;
}

static int upload_write(void *ctx, const void *data, size_t len)
{
    struct upload *u = ctx;
    const unsigned char *p = data;
    /* gzip's magic, checked as the first bytes arrive: anything else is refused unwritten. */
    static const unsigned char magic[2] = { 0x1f, 0x8b };
    for (size_t i = 0; u->received + i < 2 && i < len; i++)
        if (p[i] != magic[u->received + i])
            return -EBADMSG;
    if (u->received + len > u->expected)
        return -EFBIG;
    while (len > 0) {
        ssize_t n = write(u->fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        u->received += (uint64_t)n;
    }
    return 0;
}

static void upload_free(void *ctx)
{
    struct upload *u = ctx;
    if (!u)
        return;
    safe_close(u->fd);
    if (!u->committed)
        unlinkat(u->dir_fd, u->tmp_name, 0);
    safe_close(u->dir_fd);
    free(u);
}

const struct api_body_sink api_template_upload_sink = {
    .begin = upload_begin,
    .write = upload_write,
    .free = upload_free,
};

enum MHD_Result api_template_file_upload(struct api_request *req)
{
    struct upload *u = req->sink_ctx;
    if (!u) /* begin answered */
        return http_queue_error(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "upload not started");
    if (req->sink_error == -EBADMSG)
        return http_queue_error(
            req->conn, MHD_HTTP_BAD_REQUEST,
            "the upload is not gzip'd (the SDK's COPY with gzip: false is not supported)");
    if (req->sink_error < 0)
        return http_queue_error(req->conn,
                                req->sink_error == -ENOSPC ? MHD_HTTP_INSUFFICIENT_STORAGE
                                                           : MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "writing the upload: %s", errno_to_string(req->sink_error));
    if (u->received != u->expected)
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "the upload ended after %llu of %llu bytes",
                                (unsigned long long)u->received, (unsigned long long)u->expected);
    /* Durable before it is visible: a builder that sees the name reads the whole file. */
    if (fsync(u->fd) < 0 || renameat(u->dir_fd, u->tmp_name, u->dir_fd, u->final_name) < 0)
        return http_queue_error(req->conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "storing the upload: %s",
                                errno_to_string(errno));
    u->committed = true;
    fsync(u->dir_fd);
    return http_queue_empty(req->conn, MHD_HTTP_OK);
}

/* ---- POST /v2/templates/{templateID}/builds/{buildID} ---- */

static const char *const step_types[] = { "RUN", "COPY", "ENV", "WORKDIR", "USER" };

static int check_step(struct api_request *req, const json_t *step, size_t i, struct error_record *err)
{
    if (!json_is_object(step))
        return error_set(err, EINVAL, "steps[%zu] must be an object {type, args}", i);
    const char *type = json_get_string(step, "type");
    bool known = false;
    for (size_t k = 0; type && k < ARRAY_SIZE(step_types) && !known; k++)
        known = streq(type, step_types[k]);
    if (!known)
        return error_set(err, EINVAL, "steps[%zu]: type must be one of RUN, COPY, ENV, WORKDIR, USER", i);
    json_t *args = json_object_get(step, "args");
    if (args && !json_is_null(args)) {
        if (!json_is_array(args))
            return error_set(err, EINVAL, "steps[%zu] (%s): args must be an array of strings", i, type);
        size_t k;
        json_t *a;
        json_array_foreach (args, k, a)
            if (!json_is_string(a))
                return error_set(err, EINVAL, "steps[%zu] (%s): args[%zu] must be a string", i, type, k);
    }
    json_t *force = json_object_get(step, "force");
    if (force && !json_is_null(force) && !json_is_boolean(force))
        return error_set(err, EINVAL, "steps[%zu] (%s): force must be a boolean", i, type);
    json_t *fh = json_object_get(step, "filesHash");
    if (fh && !json_is_null(fh) && !json_is_string(fh))
        return error_set(err, EINVAL, "steps[%zu] (%s): filesHash must be a string", i, type);
    if (streq(type, "COPY")) {
        const char *hash = json_string_value(fh);
        if (!hash || !hash_valid(hash))
            return error_set(err, EINVAL, "steps[%zu] (COPY): filesHash must be 64 lowercase hex digits", i);
        if (!cached(req, hash))
            return error_set(err, EINVAL,
                             "steps[%zu] (COPY): the files %s were never uploaded (GET "
                             "/templates/{id}/files/{hash}, then PUT them)",
                             i, hash);
    }
    return 0;
}

static int check_spec(struct api_request *req, const json_t *spec, struct error_record *err)
{
    json_t *image = json_object_get(spec, "fromImage"), *from = json_object_get(spec, "fromTemplate");
    bool has_image = image && !json_is_null(image), has_from = from && !json_is_null(from);
    if (has_image == has_from)
        return error_set(err, EINVAL, "exactly one of fromImage and fromTemplate is required");
    json_t *base = has_image ? image : from;
    if (!json_is_string(base) || json_string_length(base) == 0 || json_string_length(base) > 512)
        return error_set(err, EINVAL, "%s must be a non-empty string",
                         has_image ? "fromImage" : "fromTemplate");
    static const char *const strings[] = { "startCmd", "readyCmd" };
    for (size_t i = 0; i < ARRAY_SIZE(strings); i++) {
        json_t *v = json_object_get(spec, strings[i]);
        if (v && !json_is_null(v) && !json_is_string(v))
            return error_set(err, EINVAL, "%s must be a string", strings[i]);
    }
    json_t *force = json_object_get(spec, "force");
    if (force && !json_is_null(force) && !json_is_boolean(force))
        return error_set(err, EINVAL, "force must be a boolean");
    json_t *reg = json_object_get(spec, "fromImageRegistry");
    if (reg && !json_is_null(reg) && !json_is_object(reg))
        return error_set(err, EINVAL, "fromImageRegistry must be an object");
    json_t *steps = json_object_get(spec, "steps");
    if (!steps || json_is_null(steps))
        return 0;
    if (!json_is_array(steps) || json_array_size(steps) > MAX_STEPS)
        return error_set(err, EINVAL, "steps must be an array of at most %d steps", MAX_STEPS);
    size_t i;
    json_t *step;
    json_array_foreach (steps, i, step) {
        int r = check_step(req, step, i, err);
        if (r < 0)
            return r;
    }
    return 0;
}

enum MHD_Result api_template_build_start(struct api_request *req)
{
    struct error_record err = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    struct store_build b;
    struct store *st = api_store_lock(req->server);
    int r = store_template_lookup(st, req->params[0], id, &err);
    if (r >= 0)
        r = store_build_get(st, id, req->params[1], &b, &err);
    api_store_unlock(req->server);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    enum store_build_status status = b.status;
    store_build_release(&b);
    if (status != STORE_BUILD_WAITING)
        return http_queue_error(req->conn, MHD_HTTP_CONFLICT, "build %s is %s: a build starts once",
                                req->params[1], store_build_status_to_string(status));

    enum MHD_Result ret;
    json_auto_t *spec = api_request_json(req, &ret);
    if (!spec)
        return ret;
    r = check_spec(req, spec, &err);
    if (r >= 0 && json_get_string(spec, "fromTemplate")) {
        /* Checked here so that the client hears of a typo now, not from a failed build. */
        char base[STORE_TEMPLATE_ID_MAX + 1];
        struct error_record e2 = { 0 };
        if (lookup(req, json_get_string(spec, "fromTemplate"), base, &e2) < 0)
            r = error_set(&err, EINVAL, "fromTemplate: %s", e2.msg);
    }
    if (r < 0)
        return bad_request(req, &err);
    r = orch_template_build_start(req->server_orch, id, req->params[1], spec, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    return http_queue_empty(req->conn, MHD_HTTP_ACCEPTED);
}

/* ---- GET /templates/{templateID}/builds/{buildID}/status ---- */

struct log_page {
    json_t *entries;
    json_t *lines;
};

static int add_log(int64_t at_ms, const char *level, const char *message, const char *step, void *userdata)
{
    struct log_page *p = userdata;
    json_t *e =
        json_pack("{s:o, s:s, s:s}", "timestamp", time_json(at_ms), "level", level, "message", message);
    if (step)
        json_object_set_new(e, "step", json_string(step));
    json_array_append_new(p->entries, e);
    json_array_append_new(p->lines, json_string(message));
    return 0;
}

static int query_uint(struct api_request *req, const char *key, uint64_t max, uint64_t def, uint64_t *ret,
                      struct error_record *err)
{
    const char *v = http_query(req->conn, key);
    *ret = def;
    if (!v || !*v)
        return 0;
    if (parse_uint64(v, ret) < 0 || *ret > max)
        return error_set(err, EINVAL, "%s must be an integer from 0 to %" PRIu64, key, max);
    return 0;
}

enum MHD_Result api_template_build_status(struct api_request *req)
{
    struct error_record err = { 0 };
    uint64_t offset, limit;
    int r = query_uint(req, "logsOffset", INT32_MAX, 0, &offset, &err);
    if (r >= 0)
        r = query_uint(req, "limit", STATUS_LOG_MAX, STATUS_LOG_MAX, &limit, &err);
    const char *level = http_query(req->conn, "level");
    if (level && !*level)
        level = NULL;
    if (r >= 0 && level && !streq(level, "debug") && !streq(level, "info") && !streq(level, "warn") &&
        !streq(level, "error"))
        r = error_set(&err, EINVAL, "level must be debug, info, warn or error");
    if (r < 0)
        return bad_request(req, &err);

    char id[STORE_TEMPLATE_ID_MAX + 1];
    struct store_build b = { 0 };
    struct log_page page = { .entries = json_array(), .lines = json_array() };
    struct store *st = api_store_lock(req->server);
    r = store_template_lookup(st, req->params[0], id, &err);
    if (r >= 0)
        r = store_build_get(st, id, req->params[1], &b, &err);
    if (r >= 0)
        r = store_build_log_read_level(st, req->params[1], level, offset, (unsigned)limit, add_log, &page,
                                       &err);
    api_store_unlock(req->server);
    if (r < 0) {
        store_build_release(&b);
        json_decref(page.entries);
        json_decref(page.lines);
        return api_queue_failure(req, r, &err);
    }
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:o, s:o}", "templateID", id, "buildID", b.id, "status",
                  store_build_status_to_string(b.status), "logs", page.lines, "logEntries", page.entries);
    if (b.status == STORE_BUILD_ERROR) {
        json_t *reason = json_pack("{s:s}", "message", b.reason && *b.reason ? b.reason : "the build failed");
        if (b.reason_step && *b.reason_step)
            json_object_set_new(reason, "step", json_string(b.reason_step));
        json_object_set_new(j, "reason", reason);
    }
    store_build_release(&b);
    return reply_json(req, MHD_HTTP_OK, j);
}

/* ---- names and tags ---- */

enum MHD_Result api_template_alias(struct api_request *req)
{
    struct error_record err = { 0 };
    char name[STORE_NAME_MAX + 1], tag[STORE_TAG_MAX + 1], id[STORE_TEMPLATE_ID_MAX + 1];
    int r = split_name(req->params[0], name, tag, &err);
    if (r < 0)
        return bad_request(req, &err);
    struct store_template t = { 0 };
    struct store *st = api_store_lock(req->server);
    r = store_template_name_lookup(st, name, id, &err);
    if (r >= 0)
        r = store_template_get(st, id, &t, &err);
    api_store_unlock(req->server);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    return reply_json(req, MHD_HTTP_OK, json_pack("{s:s, s:b}", "templateID", t.id, "public", t.public));
}

/* Reads {<name_key>: "name[:tag]", tags: [...]} for the tag endpoints. */
static int tag_request(const json_t *body, const char *name_key, char *name, char *tag, const char **tags,
                       size_t *n_tags, struct error_record *err)
{
    const char *full = json_get_string(body, name_key);
    if (!full)
        return error_set(err, EINVAL, "%s (a string) is required", name_key);
    int r = split_name(full, name, tag, err);
    if (r < 0)
        return r;
    json_t *a = json_object_get(body, "tags");
    if (!json_is_array(a) || json_array_size(a) == 0)
        return error_set(err, EINVAL, "tags must be a non-empty array of strings");
    return read_tags(a, tags, n_tags, err);
}

enum MHD_Result api_template_tags_assign(struct api_request *req)
{
    enum MHD_Result ret;
    json_auto_t *body = api_request_json(req, &ret);
    if (!body)
        return ret;
    struct error_record err = { 0 };
    char name[STORE_NAME_MAX + 1], tag[STORE_TAG_MAX + 1], id[STORE_TEMPLATE_ID_MAX + 1];
    char build_id[STORE_BUILD_ID_MAX + 1];
    const char *tags[MAX_TAGS + 1] = { 0 };
    size_t n = 0;
    int r = tag_request(body, "target", name, tag, tags, &n, &err);
    if (r < 0)
        return bad_request(req, &err);
    struct store *st = api_store_lock(req->server);
    r = store_template_lookup(st, name, id, &err);
    if (r >= 0)
        r = store_tag_get(st, id, tag[0] ? tag : STORE_DEFAULT_TAG, build_id, &err);
    for (size_t i = 0; r >= 0 && i < n; i++)
        r = store_tag_set(st, id, tags[i], build_id, &err);
    api_store_unlock(req->server);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    json_t *tags_j = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(tags_j, json_string(tags[i]));
    return reply_json(req, MHD_HTTP_CREATED, json_pack("{s:s, s:o}", "buildID", build_id, "tags", tags_j));
}

enum MHD_Result api_template_tags_delete(struct api_request *req)
{
    enum MHD_Result ret;
    json_auto_t *body = api_request_json(req, &ret);
    if (!body)
        return ret;
    struct error_record err = { 0 };
    char name[STORE_NAME_MAX + 1], tag[STORE_TAG_MAX + 1], id[STORE_TEMPLATE_ID_MAX + 1];
    char build_id[STORE_BUILD_ID_MAX + 1];
    const char *tags[MAX_TAGS + 1] = { 0 };
    size_t n = 0;
    int r = tag_request(body, "name", name, tag, tags, &n, &err);
    if (r < 0)
        return bad_request(req, &err);
    struct store *st = api_store_lock(req->server);
    r = store_template_lookup(st, name, id, &err);
    /* All or nothing: every tag is checked before any goes. */
    for (size_t i = 0; r >= 0 && i < n; i++)
        r = store_tag_get(st, id, tags[i], build_id, &err);
    for (size_t i = 0; r >= 0 && i < n; i++)
        r = store_tag_remove(st, id, tags[i], &err);
    api_store_unlock(req->server);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    return http_queue_empty(req->conn, MHD_HTTP_NO_CONTENT);
}

static int add_tag(const char *tag, const char *build_id, int64_t created_at_ms, void *userdata)
{
    json_array_append_new(userdata, json_pack("{s:s, s:s, s:o}", "tag", tag, "buildID", build_id, "createdAt",
                                              time_json(created_at_ms)));
    return 0;
}

enum MHD_Result api_template_tags_list(struct api_request *req)
{
    struct error_record err = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    json_t *a = json_array();
    struct store *st = api_store_lock(req->server);
    int r = store_template_lookup(st, req->params[0], id, &err);
    if (r >= 0)
        r = store_tag_list(st, id, add_tag, a, &err);
    api_store_unlock(req->server);
    if (r < 0) {
        json_decref(a);
        return api_queue_failure(req, r, &err);
    }
    return reply_json(req, MHD_HTTP_OK, a);
}

/* ---- listing and getting templates ---- */

struct builds_summary {
    uint64_t count;
    bool have_latest;
    enum store_build_status latest_status;
    char latest_id[STORE_BUILD_ID_MAX + 1];
    json_t *builds; /* NULL: not wanted */
};

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v ? v : def;
}

static json_t *build_json(const struct store_build *b)
{
    json_t *j = json_pack("{s:s, s:s, s:o, s:o, s:i, s:i, s:i, s:s}", "buildID", b->id, "status",
                          store_build_status_to_string(b->status), "createdAt", time_json(b->created_at_ms),
                          "updatedAt", time_json(b->finished_at_ms ? b->finished_at_ms : b->created_at_ms),
                          "cpuCount", (int)or_default(b->cpu_count, DEFAULT_CPU_COUNT), "memoryMB",
                          (int)or_default(b->memory_mb, DEFAULT_MEMORY_MB), "diskSizeMB",
                          (int)or_default(b->disk_mb, DEFAULT_DISK_MB), "envdVersion",
                          b->envd_version[0] ? b->envd_version : ENVD_VERSION_REPORTED);
    if (b->finished_at_ms)
        json_object_set_new(j, "finishedAt", time_json(b->finished_at_ms));
    return j;
}

static int summarize_build(const struct store_build *b, void *userdata)
{
    struct builds_summary *s = userdata;
    if (s->count++ == 0) {
        s->have_latest = true;
        s->latest_status = b->status;
        str_copy(s->latest_id, sizeof(s->latest_id), b->id);
    }
    if (s->builds)
        json_array_append_new(s->builds, build_json(b));
    return 0;
}

/* E2B's `Template` (the 16 required fields) for t (store lock held). Its build is the one of
 * the default tag (the last ready one), else the newest. */
static int template_json(struct store *st, const struct store_template *t, json_t **ret,
                         struct error_record *err)
{
    struct builds_summary sum = { 0 };
    json_t *names = NULL;
    int r = store_build_list(st, t->id, summarize_build, &sum, err);
    if (r >= 0)
        r = names_json(st, t->id, &names, err);
    if (r < 0)
        return r;
    char ready_id[STORE_BUILD_ID_MAX + 1] = "";
    struct store_build b = { 0 };
    bool have_build = false;
    if (store_tag_get(st, t->id, STORE_DEFAULT_TAG, ready_id, NULL) >= 0)
        have_build = store_build_get(st, t->id, ready_id, &b, NULL) >= 0;
    if (!have_build && sum.have_latest)
        have_build = store_build_get(st, t->id, sum.latest_id, &b, NULL) >= 0;
    json_t *j = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:b, s:O, s:o, s:o, s:o, s:n, s:o, s:I, s:I, s:s, s:s}", "templateID",
        t->id, "buildID", have_build ? b.id : "", "cpuCount", (int)or_default(b.cpu_count, DEFAULT_CPU_COUNT),
        "memoryMB", (int)or_default(b.memory_mb, DEFAULT_MEMORY_MB), "diskSizeMB",
        (int)or_default(b.disk_mb, DEFAULT_DISK_MB), "public", t->public, "aliases", names, "names", names,
        "createdAt", time_json(t->created_at_ms), "updatedAt", time_json(t->updated_at_ms), "createdBy",
        "lastSpawnedAt", t->last_spawned_at_ms ? time_json(t->last_spawned_at_ms) : json_null(), "spawnCount",
        (json_int_t)t->spawn_count, "buildCount", (json_int_t)sum.count, "envdVersion", ENVD_VERSION_REPORTED,
        "buildStatus", sum.have_latest ? store_build_status_to_string(sum.latest_status) : "waiting");
    store_build_release(&b);
    if (!j)
        abort();
    *ret = j;
    return 0;
}

struct list_ctx {
    struct store *st;
    json_t *items;
    struct error_record *err;
    const char *only_id; /* snapshots: the `name` filter, resolved */
};

static int take_template(const struct store_template *t, void *userdata)
{
    struct list_ctx *c = userdata;
    json_t *j;
    int r = template_json(c->st, t, &j, c->err);
    if (r < 0)
        return r;
    json_array_append_new(c->items, j);
    return 1;
}

static enum MHD_Result list_templates(struct api_request *req, bool paged)
{
    struct error_record err = { 0 };
    uint64_t limit = paged ? LIST_MAX : LIST_V1_MAX;
    int r = paged ? query_uint(req, "limit", LIST_MAX, LIST_MAX, &limit, &err) : 0;
    if (r >= 0 && limit == 0)
        r = error_set(&err, EINVAL, "limit must be from 1 to %d", LIST_MAX);
    if (r < 0)
        return bad_request(req, &err);
    struct store_template_query q = { .cursor = paged ? http_query(req->conn, "nextToken") : NULL };
    if (q.cursor && !*q.cursor)
        q.cursor = NULL;
    char next[STORE_CURSOR_MAX] = "";
    struct list_ctx c = { .items = json_array(), .err = &err };
    /* Spawn counts are kept in memory and written every few seconds: bring them in first. */
    if (req->server_orch)
        orch_flush_template_stats(req->server_orch);
    c.st = api_store_lock(req->server);
    r = store_template_list(c.st, &q, (unsigned)limit, take_template, &c, next, &err);
    api_store_unlock(req->server);
    if (r < 0) {
        json_decref(c.items);
        return api_queue_failure(req, r, &err);
    }
    enum MHD_Result ret = http_queue_json_with_header(req->conn, MHD_HTTP_OK, c.items,
                                                      paged && next[0] ? "X-Next-Token" : NULL, next);
    json_decref(c.items);
    return ret;
}

enum MHD_Result api_template_list_v1(struct api_request *req)
{
    return list_templates(req, false);
}

enum MHD_Result api_template_list_v2(struct api_request *req)
{
    return list_templates(req, true);
}

enum MHD_Result api_template_get(struct api_request *req)
{
    struct error_record err = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    struct store_template t;
    struct builds_summary sum = { .builds = json_array() };
    json_t *names = NULL;
    if (req->server_orch)
        orch_flush_template_stats(req->server_orch);
    struct store *st = api_store_lock(req->server);
    int r = store_template_lookup(st, req->params[0], id, &err);
    if (r >= 0)
        r = store_template_get(st, id, &t, &err);
    if (r >= 0)
        r = store_build_list(st, id, summarize_build, &sum, &err);
    if (r >= 0)
        r = names_json(st, id, &names, &err);
    api_store_unlock(req->server);
    if (r < 0) {
        json_decref(sum.builds);
        return api_queue_failure(req, r, &err);
    }
    json_t *j = json_pack("{s:s, s:b, s:O, s:o, s:o, s:o, s:o, s:I, s:o}", "templateID", t.id, "public",
                          t.public, "aliases", names, "names", names, "createdAt", time_json(t.created_at_ms),
                          "updatedAt", time_json(t.updated_at_ms), "lastSpawnedAt",
                          t.last_spawned_at_ms ? time_json(t.last_spawned_at_ms) : json_null(), "spawnCount",
                          (json_int_t)t.spawn_count, "builds", sum.builds);
    return reply_json(req, MHD_HTTP_OK, j);
}

enum MHD_Result api_template_delete(struct api_request *req)
{
    struct error_record err = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    int r = lookup(req, req->params[0], id, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    if (streq(id, API_BUILTIN_TEMPLATE))
        return http_queue_error(req->conn, MHD_HTTP_FORBIDDEN, "the built-in template %s cannot be deleted",
                                API_BUILTIN_TEMPLATE);
    r = orch_template_delete(req->server_orch, id, &err);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    return http_queue_empty(req->conn, MHD_HTTP_NO_CONTENT);
}

enum MHD_Result api_template_update_v2(struct api_request *req)
{
    enum MHD_Result ret;
    json_auto_t *body = api_request_json(req, &ret);
    if (!body)
        return ret;
    json_t *pub = json_object_get(body, "public");
    if (pub && !json_is_null(pub) && !json_is_boolean(pub))
        return http_queue_error(req->conn, MHD_HTTP_BAD_REQUEST, "public must be a boolean");
    struct error_record err = { 0 };
    char id[STORE_TEMPLATE_ID_MAX + 1];
    json_t *names = NULL;
    struct store *st = api_store_lock(req->server);
    int r = store_template_lookup(st, req->params[0], id, &err);
    if (r >= 0 && json_is_boolean(pub))
        r = store_template_set_public(st, id, json_is_true(pub), &err);
    if (r >= 0)
        r = names_json(st, id, &names, &err);
    api_store_unlock(req->server);
    if (r < 0)
        return api_queue_failure(req, r, &err);
    return reply_json(req, MHD_HTTP_OK, json_pack("{s:o}", "names", names));
}

/* ---- snapshots ---- */

int api_snapshot_info(struct store *st, const struct store_template *t, json_t **ret,
                      struct error_record *err)
{
    json_t *names;
    int r = names_json(st, t->id, &names, err);
    if (r < 0)
        return r;
    *ret = json_pack("{s:s, s:o}", "snapshotID", t->id, "names", names);
    return 0;
}

static int take_snapshot(const struct store_template *t, void *userdata)
{
    struct list_ctx *c = userdata;
    if (c->only_id && !streq(c->only_id, t->id))
        return 0;
    json_t *j;
    int r = api_snapshot_info(c->st, t, &j, c->err);
    if (r < 0)
        return r;
    json_array_append_new(c->items, j);
    return 1;
}

enum MHD_Result api_snapshot_list(struct api_request *req)
{
    struct error_record err = { 0 };
    uint64_t limit;
    int r = query_uint(req, "limit", LIST_MAX, LIST_MAX, &limit, &err);
    if (r >= 0 && limit == 0)
        r = error_set(&err, EINVAL, "limit must be from 1 to %d", LIST_MAX);
    if (r < 0)
        return bad_request(req, &err);
    struct store_template_query q = {
        .snapshots = true,
        .source_sandbox = http_query(req->conn, "sandboxID"),
        .cursor = http_query(req->conn, "nextToken"),
    };
    if (q.cursor && !*q.cursor)
        q.cursor = NULL;
    if (q.source_sandbox && !*q.source_sandbox)
        q.source_sandbox = NULL;
    const char *name = http_query(req->conn, "name");
    char only[STORE_TEMPLATE_ID_MAX + 1];
    char next[STORE_CURSOR_MAX] = "";
    struct list_ctx c = { .items = json_array(), .err = &err };
    c.st = api_store_lock(req->server);
    if (name && *name) {
        r = store_template_lookup(c.st, name, only, &err);
        c.only_id = only;
    }
    if (r >= 0)
        r = store_template_list(c.st, &q, (unsigned)limit, take_snapshot, &c, next, &err);
    else if (r == -ENOENT)
        r = 0; /* no such name: no snapshots */
    api_store_unlock(req->server);
    if (r < 0) {
        json_decref(c.items);
        return api_queue_failure(req, r, &err);
    }
    enum MHD_Result ret =
        http_queue_json_with_header(req->conn, MHD_HTTP_OK, c.items, next[0] ? "X-Next-Token" : NULL, next);
    json_decref(c.items);
    return ret;
}
