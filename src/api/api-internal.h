/* What the API's files share and nothing outside src/api/ may use. */
#pragma once

#include "api/api.h"
#include "gateway/gateway.h"

struct gw *api_server_gateway(struct api_server *s);

enum MHD_Result api_openapi(struct api_request *req);
enum MHD_Result api_metrics(struct api_request *req);
