/*
 * Bus stats: the workers' counters and the producers', open and retired,
 * summed.
 */
#include <string.h>

#include "bus/bus_internal.h"

/* ---- stats ------------------------------------------------------------- */

void rill_bus_stats(const rill_bus_t *cbus, rill_bus_stats_t *st) {
  /* The lock is taken and given back: the bus is the same after. */
  rill_bus_t *bus = (rill_bus_t *)cbus;
  uint64_t *fill = st->shard_fill;
  memset(st, 0, sizeof *st);
  st->shard_fill = fill;
  if (fill)
    memset(fill, 0, bus->o.shards * sizeof *fill);
  for (uint32_t i = 0; i < bus->o.workers; i++) {
    st->delivered += __atomic_load_n(&bus->w[i].delivered, __ATOMIC_RELAXED);
    st->batches += __atomic_load_n(&bus->w[i].batches, __ATOMIC_RELAXED);
  }
  pthread_mutex_lock(&bus->lock);
  st->ingested = bus->retired.ingested;
  st->dropped_newest = bus->retired.dropped_newest;
  st->dropped_sampled = bus->retired.dropped_sampled;
  st->failed_full = bus->retired.failed_full;
  st->blocked_timeouts = bus->retired.blocked_timeouts;
  st->dropped_oldest = bus->retired.dropped_oldest;
  for (rill_bus_producer_t *p = bus->head; p; p = p->next) {
    st->ingested += __atomic_load_n(&p->c.ingested, __ATOMIC_RELAXED);
    st->dropped_newest += __atomic_load_n(&p->c.dropped_newest, __ATOMIC_RELAXED);
    st->dropped_sampled += __atomic_load_n(&p->c.dropped_sampled, __ATOMIC_RELAXED);
    st->failed_full += __atomic_load_n(&p->c.failed_full, __ATOMIC_RELAXED);
    st->blocked_timeouts += __atomic_load_n(&p->c.blocked_timeouts, __ATOMIC_RELAXED);
    st->dropped_oldest += __atomic_load_n(&p->c.dropped_oldest, __ATOMIC_RELAXED);
    if (fill)
      for (uint32_t s = 0; s < bus->o.shards; s++)
        fill[s] += rill_ring_spsc_size(p->rings[s]);
  }
  pthread_mutex_unlock(&bus->lock);
}
