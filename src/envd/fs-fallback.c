/* Weak stand-ins for the filesystem service and /files (src/envd/fs/), so that envd links and
 * answers sensibly while that part is absent: no filesystem methods (their paths get Connect's
 * unimplemented) and /files answers 501. The strong definitions in fs/ replace these; libenvd
 * is linked whole, so the linker always sees both. */
#include "envd/envd.h"

#include "common/http-util.h"
#include "common/banned.h"

__attribute__((weak)) const struct connect_method envd_filesystem_methods[] = {
    { .path = NULL },
};

__attribute__((weak)) enum MHD_Result envd_files_request(struct MHD_Connection *conn, const char *method,
                                                         const char *upload_data, size_t *upload_data_size,
                                                         void **req_cls)
{
    return http_queue_error(conn, MHD_HTTP_NOT_IMPLEMENTED, "the /files endpoints are not built in");
}

__attribute__((weak)) void envd_files_request_completed(void *req_cls)
{
}
