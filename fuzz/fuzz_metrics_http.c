/*
 * Arbitrary bytes as what a scraper sends the metrics endpoint: read in
 * pieces whose sizes the input's first byte picks, into a buffer of the
 * endpoint's size, the end of the headers looked for after each piece as
 * the endpoint does, then the request line parsed from an exact-size copy
 * of what arrived (ASan sees a read past it). The piecewise end must be
 * the one a scan of all the bytes finds, a status one of the five the
 * endpoint answers, and a 200 only for a GET or HEAD of /metrics.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/metrics.h"
#include "net/metrics_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t seed = data[0];
  data++, size--;
  char buf[RILL__METRICS_MAX_REQUEST] = {0};
  size_t have = 0, end = 0, at = 0;
  while (!end && have < sizeof buf && at < size) {
    /* Pieces of 1 to 16 bytes, or 8 times that, as the seed's bits say. */
    size_t piece = 1 + ((seed + at) & 15);
    if (seed & 0x80)
      piece *= 8;
    if (piece > size - at)
      piece = size - at;
    if (piece > sizeof buf - have)
      piece = sizeof buf - have;
    memcpy(buf + have, data + at, piece);
    size_t from = have > 3 ? have - 3 : 0;
    have += piece;
    at += piece;
    end = rill__metrics_http_end(buf, from, have);
  }
  size_t whole = rill__metrics_http_end(buf, 0, have);
  if (end != whole || end > have || (end && (end < 2 || buf[end - 1] != '\n')))
    abort();
  if (!end)
    return 0; /* still waiting, or 431 */

  char *in = malloc(have);
  if (!in)
    return 0;
  memcpy(in, buf, have);
  bool head = false;
  int status = rill__metrics_http_parse(in, have, &head);
  if (status != 200 && status != 400 && status != 404 && status != 405)
    abort();
  if (status == 200) {
    const char *target = head ? buf + 5 : buf + 4;
    if (memcmp(buf, head ? "HEAD " : "GET ", head ? 5 : 4) || memcmp(target, "/metrics", 8) ||
        (target[8] != ' ' && target[8] != '?'))
      abort();
  }
  free(in);
  return 0;
}
