/* libhutch: file transfer with envd's /files endpoint (e2b-compat §3.8) through the gateway.
 * Uploads are octet-stream bodies read from the fd as curl sends them (with Content-Length
 * for a regular file, chunked otherwise); downloads are written to the fd as they arrive.
 * Neither holds the file in memory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client-internal.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/xalloc.h"
#include "common/banned.h"

/* A transfer that moves no byte for this long is dead. */
#define TRANSFER_SILENCE_S 120

static char *files_url(const struct hutch_client *c, const char *remote_path, const char *user)
{
    _cleanup_free_ char *p = client_escape(remote_path);
    if (!user)
        return xasprintf("%s/files?path=%s", client_sandbox_base(c), p);
    _cleanup_free_ char *u = client_escape(user);
    return xasprintf("%s/files?path=%s&username=%s", client_sandbox_base(c), p, u);
}

static bool path_ok(struct hutch_client *c, const char *sandbox_id, const char *remote_path)
{
    return sandbox_id && *sandbox_id && remote_path && *remote_path;
}

/* Runs a /files transfer set up on curl (URL, headers, body callbacks) and turns its outcome
 * into a code and message: a local I/O error (*local_errno, set by the callbacks) first, then a
 * transport error, then the server's answer (its body is in error_body). */
static enum hutch_code transfer(struct hutch_client *c, CURL *curl, const int *local_errno,
                                const char *local_what, const struct buf *error_body, const char *remote_path)
{
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)TRANSFER_SILENCE_S);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode r = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    c->last_status = status;
    enum hutch_code code = HUTCH_OK;
    if (*local_errno)
        code = client_fail(c, HUTCH_E_IO, "%s: %s", local_what, errno_to_string(*local_errno));
    else if (r != CURLE_OK)
        code = client_fail(c, client_code_from_curl(r), "%s: %s", client_sandbox_base(c),
                           *errbuf ? errbuf : curl_easy_strerror(r));
    else if (status != 200)
        code = client_fail_http(c, status, error_body->data, error_body->len, remote_path);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    return code;
}

HUTCH_EXPORT enum hutch_code hutch_file_upload_fd(struct hutch_client *c, const char *sandbox_id, int fd,
                                                  const char *remote_path, const char *user)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    if (!path_ok(c, sandbox_id, remote_path) || fd < 0)
        return client_fail(c, HUTCH_E_INVALID, "upload needs a sandbox id, a remote path and an open fd");
    struct stat st;
    if (fstat(fd, &st) < 0)
        return client_fail(c, HUTCH_E_IO, "fstat: %s", errno_to_string(errno));
    if (S_ISDIR(st.st_mode))
        return client_fail(c, HUTCH_E_INVALID, "cannot upload a directory");
    _cleanup_slist_ struct curl_slist *headers = NULL;
    enum hutch_code code = client_envd_headers(c, sandbox_id, NULL, &headers);
    if (code != HUTCH_OK)
        return code;
    client_header_add(&headers, "Content-Type: application/octet-stream");
    client_header_add(&headers, "Expect:");

    CURL *curl = client_curl(c);
    _cleanup_free_ char *url = files_url(c, remote_path, user);
    struct client_upload u = { .fd = fd };
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, client_upload_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, &u);
    off_t pos = S_ISREG(st.st_mode) ? lseek(fd, 0, SEEK_CUR) : -1;
    if (pos >= 0 && pos <= st.st_size)
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(st.st_size - pos));
    else
        client_header_add(&headers, "Transfer-Encoding: chunked");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    struct buf resp;
    buf_init(&resp, CLIENT_MAX_ERROR_BODY);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, client_collect_bounded);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
    code = transfer(c, curl, &u.read_errno, "reading the local file", &resp, remote_path);
    buf_release(&resp);
    return code;
}

HUTCH_EXPORT enum hutch_code hutch_file_upload(struct hutch_client *c, const char *sandbox_id,
                                               const char *local_path, const char *remote_path,
                                               const char *user)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    if (!local_path)
        return client_fail(c, HUTCH_E_INVALID, "no local path");
    _cleanup_close_ int fd = open(local_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return client_fail(c, HUTCH_E_IO, "%s: %s", local_path, errno_to_string(errno));
    return hutch_file_upload_fd(c, sandbox_id, fd, remote_path, user);
}

struct download {
    struct hutch_client *c;
    int fd;
    bool checked_status;
    long status;
    int write_errno;
    struct buf error_body;
};

static size_t download_write(char *data, size_t size, size_t n, void *userdata)
{
    struct download *d = userdata;
    size_t len = size * n;
    if (!d->checked_status) {
        curl_easy_getinfo(d->c->curl, CURLINFO_RESPONSE_CODE, &d->status);
        d->checked_status = true;
    }
    if (d->status != 200)
        return client_collect_bounded(data, size, n, &d->error_body);
    size_t done = 0;
    while (done < len) {
        ssize_t k = write(d->fd, data + done, len - done);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            d->write_errno = errno;
            return CURL_WRITEFUNC_ERROR;
        }
        done += (size_t)k;
    }
    return len;
}

HUTCH_EXPORT enum hutch_code hutch_file_download_fd(struct hutch_client *c, const char *sandbox_id,
                                                    const char *remote_path, int fd, const char *user)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    if (!path_ok(c, sandbox_id, remote_path) || fd < 0)
        return client_fail(c, HUTCH_E_INVALID, "download needs a sandbox id, a remote path and an open fd");
    _cleanup_slist_ struct curl_slist *headers = NULL;
    enum hutch_code code = client_envd_headers(c, sandbox_id, NULL, &headers);
    if (code != HUTCH_OK)
        return code;
    CURL *curl = client_curl(c);
    _cleanup_free_ char *url = files_url(c, remote_path, user);
    struct download d = { .c = c, .fd = fd };
    buf_init(&d.error_body, CLIENT_MAX_ERROR_BODY);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, download_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &d);
    code = transfer(c, curl, &d.write_errno, "writing the local file", &d.error_body, remote_path);
    buf_release(&d.error_body);
    return code;
}

/* The process's umask without changing it (umask(2) would, racing other threads). */
static mode_t current_umask(void)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    while (f && fgets(line, sizeof(line), f)) {
        unsigned m;
        if (sscanf(line, "Umask: %o", &m) == 1)
            return (mode_t)m;
    }
    return 022;
}

HUTCH_EXPORT enum hutch_code hutch_file_download(struct hutch_client *c, const char *sandbox_id,
                                                 const char *remote_path, const char *local_path,
                                                 const char *user)
{
    if (!c)
        return HUTCH_E_INVALID;
    client_begin(c);
    if (!local_path || !*local_path)
        return client_fail(c, HUTCH_E_INVALID, "no local path");
    struct stat st;
    mode_t mode = 0666 & ~current_umask();
    if (stat(local_path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return client_fail(c, HUTCH_E_INVALID, "%s is a directory", local_path);
        mode = st.st_mode & 07777;
    }
    _cleanup_free_ char *tmp = xasprintf("%s.hutch-XXXXXX", local_path);
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return client_fail(c, HUTCH_E_IO, "%s: %s", local_path, errno_to_string(errno));
    enum hutch_code code = hutch_file_download_fd(c, sandbox_id, remote_path, fd, user);
    if (code == HUTCH_OK && fchmod(fd, mode) < 0)
        code = client_fail(c, HUTCH_E_IO, "%s: %s", local_path, errno_to_string(errno));
    if (code == HUTCH_OK && rename(tmp, local_path) < 0)
        code = client_fail(c, HUTCH_E_IO, "%s: %s", local_path, errno_to_string(errno));
    if (code != HUTCH_OK)
        unlink(tmp);
    return code;
}
