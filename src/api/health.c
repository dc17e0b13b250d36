/* GET /health: the control plane's liveness probe (E2B answers 200 with a short text). */
#include "api/api.h"
#include "common/banned.h"

enum MHD_Result api_health(struct api_request *req)
{
    static const char body[] = "Health check successful";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(req->conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}
