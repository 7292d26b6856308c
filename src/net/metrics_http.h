/*
 * The metrics endpoint's request parser (private), apart from its sockets
 * so that fuzz/fuzz_metrics_http.c can drive it as the endpoint does:
 * rill__metrics_http_end over what has arrived, after each read, then
 * rill__metrics_http_parse once the headers have ended. A request that
 * fills RILL__METRICS_MAX_REQUEST bytes without ending is refused (431)
 * before either sees more.
 */
#ifndef RILL_NET_METRICS_HTTP_H
#define RILL_NET_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/** Where the headers in in[0, len) end: the index just past the empty
 *  line (CRLF or a bare LF) that ends them, 0 while they have not. Looks
 *  at the bytes from `from` on: a caller reading in pieces passes 3 short
 *  of what it had before, and the result is the same as from 0. */
size_t rill__metrics_http_end(const char *in, size_t from, size_t len);

/** The status a request gets from its first line, in in[0, len): 200 for
 *  a GET or HEAD of /metrics (a query allowed; *head says which), 405 for
 *  another method, 404 for another target, 400 for anything malformed
 *  (no line end, a NUL, a version other than HTTP/1.0 or 1.1). Writes a
 *  NUL into in, at the end of that line. */
int rill__metrics_http_parse(char *in, size_t len, bool *head);

#endif /* RILL_NET_METRICS_HTTP_H */
