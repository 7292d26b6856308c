/*
 * Host names and addresses (addr.h): getaddrinfo, with the host's IPv6
 * brackets taken off, its errors as RILL_E* codes, and addresses written
 * back as "HOST:PORT" for messages and logs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "net/addr.h"

int rill__addr_resolve(const char *host, uint16_t port, bool passive, const char *who,
                       struct addrinfo **out) {
  *out = NULL;
  if (!host)
    return rill__err(RILL_EINVAL, "%s: no host", who);
  size_t n = strlen(host);
  const char *h = host;
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']') { /* "[::1]", as in "[::1]:7450" */
    h++;
    n -= 2;
  }
  if (!n || n > RILL__HOST_MAX)
    return rill__err(RILL_EINVAL, "%s: '%.*s' is not a host name, an IPv4 or an IPv6 address", who,
                     RILL__HOST_MAX, host);
  char name[RILL__HOST_MAX + 1], serv[8];
  memcpy(name, h, n);
  name[n] = 0;
  snprintf(serv, sizeof serv, "%u", port);
  /* getaddrinfo takes inet_aton's shorthands ("1.2.3" is 1.2.0.3, "10" is
   * 0.0.0.10): what looks like an IPv4 address must be one, dotted quad. */
  struct in_addr v4;
  if (strspn(name, "0123456789.") == n && inet_pton(AF_INET, name, &v4) != 1)
    return rill__err(RILL_EINVAL, "%s: '%s' is not an IPv4 address", who, name);
  /* No AI_ADDRCONFIG: it drops IPv6 answers on a host whose only IPv6
   * address is the loopback, which would refuse "::1" there. */
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
  int rc = getaddrinfo(name, serv, &hints, out);
  if (rc == 0)
    return 0;
  *out = NULL;
  int e = errno;
  if (rc == EAI_SYSTEM)
    return rill__err(e ? -e : RILL_EIO, "%s: cannot resolve '%s': %s", who, name, strerror(e));
  int code = rc == EAI_AGAIN ? RILL_EAGAIN : rc == EAI_MEMORY ? RILL_ENOMEM : RILL_EINVAL;
  return rill__err(code, "%s: cannot resolve '%s': %s", who, name, gai_strerror(rc));
}

int rill__addr_listen(const struct addrinfo *ai, int backlog, int flags, const char *who, int *fd,
                      uint16_t *port) {
  int rc = rill__err(RILL_EINVAL, "%s: no address to listen on", who);
  int lfd = -1;
  for (; ai && lfd < 0; ai = ai->ai_next) {
    lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    int one = 1;
    if (lfd >= 0 && !setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) &&
        !bind(lfd, ai->ai_addr, ai->ai_addrlen) && !listen(lfd, backlog))
      break;
    char a[RILL__ADDR_STR];
    rc = rill__err_errno("%s: listen on %s", who, rill__addr_str(ai->ai_addr, a, sizeof a));
    if (lfd >= 0)
      close(lfd);
    lfd = -1;
  }
  if (lfd < 0)
    return rc;
  struct sockaddr_storage sa;
  socklen_t sl = sizeof sa;
  if (getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
    rc = rill__err_errno("%s: getsockname", who);
    close(lfd);
    return rc;
  }
  *port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                         : ((struct sockaddr_in *)&sa)->sin_port);
  *fd = lfd;
  return 0;
}

int rill__addr_split(const char *hostport, char host[RILL__HOST_MAX + 1], uint16_t *port,
                     const char *who) {
  if (!hostport)
    return rill__err(RILL_EINVAL, "%s: no HOST:PORT", who);
  const char *h = hostport, *colon;
  size_t hl;
  if (hostport[0] == '[') {
    const char *close = strchr(hostport, ']');
    colon = close ? close + 1 : NULL;
    h = hostport + 1;
    hl = close ? (size_t)(close - h) : 0;
  } else {
    colon = strrchr(hostport, ':');
    hl = colon ? (size_t)(colon - hostport) : 0;
    if (memchr(hostport, ':', hl)) /* "::1:9450" could be either: IPv6 goes in brackets */
      colon = NULL;
  }
  if (!colon || *colon != ':' || hl == 0 || hl > RILL__HOST_MAX)
    return rill__err(RILL_EINVAL,
                     "%s: '%s' is not HOST:PORT (an IPv6 host in brackets: [::1]:PORT)", who,
                     hostport);
  char *end;
  errno = 0;
  unsigned long p = strtoul(colon + 1, &end, 10);
  if (!colon[1] || *end || errno || p > 65535 || colon[1] == '-' || colon[1] == '+')
    return rill__err(RILL_EINVAL, "%s: '%s': the port is not 0..65535", who, hostport);
  memcpy(host, h, hl);
  host[hl] = 0;
  *port = (uint16_t)p;
  return 0;
}

const char *rill__addr_join(const char *host, uint16_t port, char *buf, size_t cap) {
  bool v6 = strchr(host, ':') && host[0] != '[';
  snprintf(buf, cap, v6 ? "[%s]:%u" : "%s:%u", host, port);
  return buf;
}

const char *rill__addr_str(const struct sockaddr *sa, char *buf, size_t cap) {
  char ip[INET6_ADDRSTRLEN];
  const void *a = NULL;
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    a = &((const struct sockaddr_in *)sa)->sin_addr;
    port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  }
  if (!a || !inet_ntop(sa->sa_family, a, ip, sizeof ip)) {
    snprintf(buf, cap, "(unknown)");
    return buf;
  }
  return rill__addr_join(ip, port, buf, cap);
}
