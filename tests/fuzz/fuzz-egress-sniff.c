/* libFuzzer target: the first bytes a sandbox sends through the egress proxy
 * (src/egress/egress-sniff.c): a TLS ClientHello through OpenSSL's server-side parsing, or an
 * HTTP/1 request head through libhttp-parser. Every prefix is fed as the proxy does while bytes
 * arrive; a name, when one comes out, must be a valid normalised host name. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/net-util.h"
#include "egress/egress.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > EGRESS_HEAD_MAX)
        size = EGRESS_HEAD_MAX;
    /* A few prefixes, then the whole: the proxy calls it after every read. */
    size_t steps[] = { size / 3, size / 2, size };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char name[256];
        bool tls = false;
        int r = egress_sniff(data, steps[i], &tls, name, sizeof(name));
        if (r == 1) {
            char again[256];
            if (net_domain_normalize(name, again, sizeof(again)) < 0 || strcmp(name, again) != 0)
                abort();
        } else if (r != 0 && r != -EPROTO && r != -ENOENT && r != -E2BIG) {
            abort();
        }
    }
    return 0;
}
