/* Socket helpers shared by the daemons (envd, interpd) and the gateway. */
#pragma once

#include <stdbool.h>
#include <sys/socket.h>

/* Parses a listen address "HOST:PORT", "[V6ADDR]:PORT" or ":PORT" (any IPv4 address), numeric
 * hosts only (a listen address is configuration, not a name to resolve). Returns 0 or -EINVAL. */
int net_parse_address(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len);

/* Whether the peer of a connected stream socket has closed it (or half-closed its side: HTTP
 * clients do not do that), without reading or blocking: for a server that streams an answer
 * and would otherwise notice only when a write fails. */
bool net_peer_gone(int fd);
