/*
 * Host names and addresses, for the server's listener, its metrics
 * endpoint and the client: a host is a name ("localhost"), an IPv4
 * address, or an IPv6 one, bare ("::1") or in brackets ("[::1]"), and is
 * resolved by getaddrinfo into addresses to try in its order of
 * preference. Where a host and a port come as one string, an IPv6 host
 * is in brackets: "[::1]:7450".
 */
#ifndef RILL_NET_ADDR_H
#define RILL_NET_ADDR_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest host taken: a DNS name is at most 253 characters. */
#define RILL__HOST_MAX 255

/* Room rill__addr_str and rill__addr_join need: "[", an IPv6 address,
 * "]:", a port, or a host of RILL__HOST_MAX and its port. */
#define RILL__ADDR_STR (RILL__HOST_MAX + 16)

#pragma GCC visibility push(hidden)

/* Resolves host and port into stream socket addresses, for bind
 * (passive) or connect; *out is freed with freeaddrinfo. Fails with
 * RILL_EINVAL when asking again will not help (no such name, a host that
 * is not one), RILL_EAGAIN when the resolver may answer later, or
 * RILL_ENOMEM; the message starts with who ("server", "client", ...). */
int rill__addr_resolve(const char *host, uint16_t port, bool passive, const char *who,
                       struct addrinfo **out);

/* A listening socket (with flags: SOCK_NONBLOCK, say) on the first of
 * ai's addresses that binds, with SO_REUSEADDR; *port gets the port it
 * took (the one picked for port 0). An IPv6 address takes IPv4
 * connections too where the system maps them (net.ipv6.bindv6only = 0,
 * Linux's default), so "::" listens on every address. */
int rill__addr_listen(const struct addrinfo *ai, int backlog, int flags, const char *who, int *fd,
                      uint16_t *port);

/* Splits "HOST:PORT" (an IPv6 host in brackets) into host, without its
 * brackets, and port, 0..65535. RILL_EINVAL, naming who, when it is not
 * that. */
int rill__addr_split(const char *hostport, char host[RILL__HOST_MAX + 1], uint16_t *port,
                     const char *who);

/* "HOST:PORT" of host and port, an IPv6 host in brackets, into buf
 * (RILL__ADDR_STR bytes); returns buf. */
const char *rill__addr_join(const char *host, uint16_t port, char *buf, size_t cap);

/* "ADDRESS:PORT" of sa (an IPv6 address in brackets) into buf
 * (RILL__ADDR_STR bytes), or "(unknown)"; returns buf. */
const char *rill__addr_str(const struct sockaddr *sa, char *buf, size_t cap);

#pragma GCC visibility pop

#endif
