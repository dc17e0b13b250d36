/* Socket helpers shared by the daemons (envd, interpd) and the gateway. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Parses a listen address "HOST:PORT", "[V6ADDR]:PORT" or ":PORT" (any IPv4 address), numeric
 * hosts only (a listen address is configuration, not a name to resolve). Returns 0 or -EINVAL. */
int net_parse_address(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len);

/* Whether the peer of a connected stream socket has closed it (or half-closed its side: HTTP
 * clients do not do that), without reading or blocking: for a server that streams an answer
 * and would otherwise notice only when a write fails. */
bool net_peer_gone(int fd);

/* The kernel's limit on fds in one SCM_RIGHTS message (SCM_MAX_FD). */
#define NET_MAX_FDS 253

/* Sends data (len > 0) and nfds fds (at most NET_MAX_FDS) as one message on a SOCK_SEQPACKET or
 * stream socket; EINTR is retried, SIGPIPE never raised. Returns 0 when all of data went, -EIO
 * when part of it did, -EINVAL for too many fds, or -errno. No allocation: safe in a forked
 * child. */
int net_send_fds(int sock, const void *data, size_t len, const int *fds, size_t nfds);
/* Receives one message into buf and its fds (O_CLOEXEC) into fds, at most max (the rest are
 * closed). Returns the byte count (0: EOF), -EBADMSG when the message or its fds did not fit,
 * or -errno; *ret_nfds is always set (fds received before a -EBADMSG are the caller's to close).
 * EINTR is retried. No allocation. */
ssize_t net_recv_fds(int sock, void *buf, size_t size, int *fds, size_t max, size_t *ret_nfds);

/* Egress names (E2B's domain entries in network.allowOut): "example.com" (that name only) or
 * "*.example.com" (any name below it, not example.com itself). Letters, digits, '-' and '.',
 * labels of 1..63 characters, at most 253 in all, at least one letter (an address is never a
 * name), case-insensitive, one trailing dot ignored. */
bool net_domain_pattern_valid(const char *pattern);
/* Normalises a host name a client sent (Host header, TLS SNI) into out (lowercase, no trailing
 * dot); -EINVAL when it is not a valid name by the rules above (an address, a port, a
 * wildcard). */
int net_domain_normalize(const char *name, char *out, size_t size);
/* Whether the normalised name matches the pattern. */
bool net_domain_match(const char *pattern, const char *name);

/* The destinations no sandbox may reach whatever its policy: unspecified, private (RFC 1918),
 * CGNAT, loopback, link-local (cloud metadata), IETF protocol assignments, 6to4 relay,
 * benchmarking, multicast, reserved; IPv6 unspecified/loopback, v4-mapped, NAT64, discard,
 * documentation, ULA, link-local, multicast. The runtime's nftables sets and the egress
 * proxy's checks are built from these same tables. */
extern const char *const net_blocked4[];
extern const size_t net_n_blocked4;
extern const char *const net_blocked6[];
extern const size_t net_n_blocked6;
/* Whether sa (AF_INET or AF_INET6) is in those tables. */
bool net_addr_blocked(const struct sockaddr *sa);
