/* See gateway.h: deciding whether a request is sandbox traffic, and which of envd's paths only
 * the control plane may use. Pure functions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/strutil.h"
#include "common/xalloc.h"
#include "gateway/gateway-internal.h"
#include "common/banned.h"

static bool valid_sandbox_id(const char *s, size_t len)
{
    if (len == 0 || len > GW_SANDBOX_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

static bool parse_port(const char *s, size_t len, uint16_t *ret)
{
    if (len == 0 || len > 5)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *ret = (uint16_t)v;
    return true;
}

static enum gw_route_result bad(struct gw_target *t, const char *msg)
{
    snprintf(t->error, sizeof(t->error), "%s", msg);
    return GW_BAD_ROUTE;
}

enum gw_route_result gw_route(const char *domain, const char *id_header, const char *port_header,
                              const char *host_header, struct gw_target *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (id_header || port_header) {
        if (!id_header)
            return bad(ret, "missing header E2b-Sandbox-Id");
        if (!port_header)
            return bad(ret, "missing header E2b-Sandbox-Port");
        if (!valid_sandbox_id(id_header, strlen(id_header)))
            return bad(ret, "invalid sandbox id in E2b-Sandbox-Id");
        if (!parse_port(port_header, strlen(port_header), &ret->port))
            return bad(ret, "invalid port in E2b-Sandbox-Port");
        memcpy(ret->sandbox_id, id_header, strlen(id_header) + 1);
        return GW_ROUTED;
    }
    if (!domain || !*domain || !host_header)
        return GW_NOT_SANDBOX_TRAFFIC;

    /* Host: <port>-<id>.<domain>[:<listen port>] */
    size_t host_len = strcspn(host_header, ":");
    size_t dlen = strlen(domain);
    if (host_len <= dlen + 1 || host_header[host_len - dlen - 1] != '.' ||
        strncasecmp(host_header + host_len - dlen, domain, dlen) != 0)
        return GW_NOT_SANDBOX_TRAFFIC;
    size_t label_len = host_len - dlen - 1;
    const char *dash = memchr(host_header, '-', label_len);
    if (!dash)
        return GW_NOT_SANDBOX_TRAFFIC;
    size_t port_len = (size_t)(dash - host_header);
    const char *id = dash + 1;
    size_t id_len = label_len - port_len - 1;
    if (!parse_port(host_header, port_len, &ret->port) || !valid_sandbox_id(id, id_len))
        return bad(ret, "host does not name a sandbox as <port>-<sandbox id>.<domain>");
    memcpy(ret->sandbox_id, id, id_len);
    ret->sandbox_id[id_len] = '\0';
    return GW_ROUTED;
}

bool gw_path_is_internal(uint16_t port, const char *path)
{
    static const char *const internal[] = {
        "init", "freeze", "unfreeze", "fsfreeze", "fsthaw", "collapse", "upgrade",
    };
    if (port != GW_ENVD_PORT)
        return false;
    /* Compare the first non-empty segment, so "//init/" and "/init/x" are caught too. */
    while (*path == '/')
        path++;
    size_t n = strcspn(path, "/?");
    for (size_t i = 0; i < ARRAY_SIZE(internal); i++)
        if (strlen(internal[i]) == n && strncasecmp(path, internal[i], n) == 0)
            return true;
    return false;
}

char *gw_mask_host(const char *mask, uint16_t port)
{
    static const char placeholder[] = "${PORT}";
    char num[8];
    snprintf(num, sizeof(num), "%u", (unsigned)port);
    size_t n = 0;
    for (const char *p = mask; (p = strstr(p, placeholder)); p += sizeof(placeholder) - 1)
        n++;
    char *out = xmalloc(strlen(mask) + n * strlen(num) + 1), *o = out;
    for (const char *p = mask;;) {
        const char *hit = strstr(p, placeholder);
        size_t k = hit ? (size_t)(hit - p) : strlen(p);
        memcpy(o, p, k);
        o += k;
        if (!hit)
            break;
        memcpy(o, num, strlen(num));
        o += strlen(num);
        p = hit + sizeof(placeholder) - 1;
    }
    *o = '\0';
    return out;
}

bool gw_header_is_own(const char *name)
{
    return strcasecmp(name, "E2b-Sandbox-Id") == 0 || strcasecmp(name, "E2b-Sandbox-Port") == 0 ||
           strcasecmp(name, GW_TRAFFIC_TOKEN_HEADER) == 0;
}
