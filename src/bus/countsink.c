/*
 * The counting sink: counts events, bytes and batches per shard, for tests
 * and benches that need a sink and no data.
 */
#include <string.h>

#include "bus/bus_internal.h"

/* ---- counting sink ----------------------------------------------------- */

static void counting_batch(void *ctx, const rill_bus_event_t *ev, size_t n) {
  rill_bus_counters_t *c = ctx;
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; i++)
    bytes += ev[i].len;
  /* One batch is one shard. */
  __atomic_fetch_add(&c->shard_events[ev[0].shard], n, __ATOMIC_RELAXED);
  __atomic_fetch_add(&c->shard_bytes[ev[0].shard], bytes, __ATOMIC_RELAXED);
  __atomic_fetch_add(&c->events, n, __ATOMIC_RELAXED);
  __atomic_fetch_add(&c->bytes, bytes, __ATOMIC_RELAXED);
  __atomic_fetch_add(&c->batches, 1, __ATOMIC_RELAXED);
}

static void counting_flush(void *ctx) {
  __atomic_fetch_add(&((rill_bus_counters_t *)ctx)->flushes, 1, __ATOMIC_RELAXED);
}

static void counting_close(void *ctx) {
  __atomic_fetch_add(&((rill_bus_counters_t *)ctx)->closes, 1, __ATOMIC_RELAXED);
}

void rill_bus_sink_counting(rill_bus_sink_t *sink, rill_bus_counters_t *c) {
  memset(c, 0, sizeof *c);
  sink->on_batch = counting_batch;
  sink->flush = counting_flush;
  sink->close = counting_close;
  sink->ctx = c;
}
