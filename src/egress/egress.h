/* The egress proxy of `hutch serve`: E2B's domain names in network.allowOut.
 *
 * A sandbox whose allow list names domains has its TCP to ports 80 and 443 (and its TLS ports,
 * E2B's network.httpsPorts) that its address policy would drop redirected by nftables to this
 * proxy's listener on the host. For each connection the proxy takes the sandbox from the peer
 * address and the original destination from conntrack (SO_ORIGINAL_DST), reads the first bytes
 * (an HTTP request head: its Host; a TLS ClientHello: its SNI; on a TLS port other than 443
 * only a ClientHello), matches the name against the sandbox's list, resolves the name itself
 * and connects to that resolution on the original port (the original destination when it is
 * among the addresses), never to an address the sandbox chose and never to an always-blocked
 * one (net_addr_blocked(), the network pool, the host's own addresses). Then it relays bytes
 * both ways.
 *
 * Invariants: everything a sandbox controls is bounded (head size, time to the first bytes,
 * connections per sandbox and in all); a connection that does not match is closed (HTTP gets a
 * 403 first); egress_sandbox_forget() shuts every connection of the sandbox down before it
 * returns, so a killed sandbox keeps nothing open on the host. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define EGRESS_HEAD_MAX (16u * 1024)        /* request head or ClientHello bytes read to find the name */
#define EGRESS_HEAD_MAX_READS 64            /* ... in at most this many pieces */
#define EGRESS_FIRST_BYTES_TIMEOUT_MS 10000 /* from accept to the whole head */
#define EGRESS_CONNECT_TIMEOUT_MS 10000     /* to the upstream */
#define EGRESS_DEFAULT_MAX_CONNS 64         /* per sandbox, at once */
#define EGRESS_MAX_CONNS_TOTAL 4096
#define EGRESS_MAX_RESOLVE 64
#define EGRESS_MAX_TLS_PORTS 16          /* per sandbox, besides 443 */
#define EGRESS_TLS_HANDSHAKE_RECORD 0x16 /* the first byte of a ClientHello */

struct egress_config {
    uint16_t port;                  /* listener port on every host address; 0 = any free one */
    const char *net_pool;           /* the sandbox network pool, never a destination */
    const char *const *resolve;     /* "NAME:ADDR" pins (like curl's --resolve), NULL-terminated;
                                     * NAME resolves to those addresses instead of by getaddrinfo */
    unsigned max_conns_per_sandbox; /* 0 = EGRESS_DEFAULT_MAX_CONNS */
};

struct egress;

/* Binds the listener and starts the accept thread. Returns 0 or -errno with err filled (a bad
 * --egress-resolve entry, port in use). */
int egress_new(const struct egress_config *cfg, struct egress **ret, struct error_record *err);
/* The port actually bound. */
uint16_t egress_port(const struct egress *e);
/* Sets the domain patterns (net_domain_pattern_valid()) of the sandbox at sandbox_ip (network
 * order) and its TLS ports besides 443 (0-terminated, NULL = none: redirected connections to
 * those ports must start with a ClientHello; to any other port than 80, 443 and these they are
 * closed), replacing what it had; NULL or empty domains removes the sandbox like forget.
 * Existing connections stay (they were allowed when made). Returns 0, -EINVAL for a bad
 * pattern or port list (port 80, more than EGRESS_MAX_TLS_PORTS), -EEXIST when another sandbox
 * holds that address. Blocks only on a mutex. */
int egress_sandbox_set(struct egress *e, const char *id, uint32_t sandbox_ip, const char *const *domains,
                       const uint16_t *tls_ports, struct error_record *err);
/* Removes the sandbox and shuts its connections down; returns once none is left, or after a
 * few seconds when one is still inside the resolver (it then ends by itself). */
void egress_sandbox_forget(struct egress *e, const char *id);
struct egress_metrics {
    uint64_t active;      /* connections open now */
    uint64_t proxied;     /* connected to an allowed name's address */
    uint64_t refused;     /* closed: no name, a name not allowed, bytes that are neither, too slow */
    uint64_t unreachable; /* an allowed name without a usable address, or its connect failed */
};
/* A snapshot of the counters since egress_new(). */
void egress_get_metrics(struct egress *e, struct egress_metrics *ret);
/* Stops the listener, forgets every sandbox, waits for every connection to end, frees e.
 * Accepts NULL. */
void egress_free(struct egress *e);

/* Reads the name a client's first bytes are for (egress-sniff.c). buf holds everything read
 * so far. Returns 1 with the normalised name in name (*ret_tls says which protocol), 0 when more
 * bytes are needed, -EPROTO when the bytes are neither an HTTP/1 request head nor a TLS
 * ClientHello, -ENOENT when they are but carry no usable name (no SNI, no or several Host
 * headers, an address, a request target that is not origin-form), -E2BIG when len reached
 * EGRESS_HEAD_MAX without a complete head. Thread-safe; allocates only inside OpenSSL. */
int egress_sniff(const unsigned char *buf, size_t len, bool *ret_tls, char *name, size_t size);
