/*
 * The bus's log sink: each delivered batch becomes one append_batch, so a
 * batch costs one lock and, under a sync policy, one sync.
 */
#include "core/internal.h"
#include "rill/bus.h"
#include "rill/log.h"

#define CHUNK 64u

static void sink_batch(void *ctx, const rill_bus_event_t *ev, size_t n) {
  rill_bus_log_sink_t *s = ctx;
  for (size_t i = 0; i < n;) {
    rill_iov_t recs[CHUNK];
    size_t m = n - i < CHUNK ? n - i : CHUNK, done = 0;
    for (size_t k = 0; k < m; k++)
      recs[k] = (rill_iov_t){ev[i + k].data, ev[i + k].len};
    int rc = rill_log_append_batch(s->log, recs, m, NULL, &done);
    __atomic_fetch_add(&s->appended, done, __ATOMIC_RELAXED);
    if (rc) {
      /* A sync error leaves the records appended; anything else did not
       * append the rest of the chunk. */
      __atomic_fetch_add(&s->failed, m - done, __ATOMIC_RELAXED);
      __atomic_store_n(&s->last_error, rc, __ATOMIC_RELAXED);
    }
    i += m;
  }
}

static void sink_flush(void *ctx) {
  rill_bus_log_sink_t *s = ctx;
  int rc = rill_log_sync(s->log);
  if (rc)
    __atomic_store_n(&s->last_error, rc, __ATOMIC_RELAXED);
}

void rill_bus_sink_log(rill_bus_sink_t *sink, rill_bus_log_sink_t *s, rill_log_t *l) {
  *s = (rill_bus_log_sink_t){.log = l};
  *sink = (rill_bus_sink_t){sink_batch, sink_flush, NULL, s};
}
