/* See api.h: path patterns with {param} segments. */
#include <string.h>

#include "api/api.h"
#include "common/banned.h"

bool api_route_match(const char *pattern, const char *path, char *scratch, const char **params)
{
    size_t n_params = 0;
    const char *p = pattern, *q = path;
    char *w = scratch;
    while (*p && *q) {
        if (*p != '/' || *q != '/')
            return false;
        p++;
        q++;
        size_t plen = strcspn(p, "/"), qlen = strcspn(q, "/");
        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            /* A parameter matches one non-empty segment. */
            if (qlen == 0 || n_params == API_MAX_PARAMS)
                return false;
            memcpy(w, q, qlen);
            w[qlen] = '\0';
            params[n_params++] = w;
            w += qlen + 1;
        } else if (plen != qlen || memcmp(p, q, plen) != 0) {
            return false;
        }
        p += plen;
        q += qlen;
    }
    return *p == '\0' && *q == '\0';
}
