/*
 * Producers: opened into the bus's list, retired by the last worker that
 * drains them (see "Producer publication" and "Retirement" in
 * bus_internal.h).
 */
#include <string.h>

#include "bus/bus_internal.h"

static void producer_free(rill_bus_producer_t *p) {
  for (uint32_t s = 0; s < p->bus->o.shards; s++) {
    /* Undelivered events (a close that timed out, or destroy) may hold
     * buf references. No worker runs on these rings any more (joined, or
     * retired by the last one), so plain reads of the indexes would do;
     * relaxed loads keep TSan's view simple. */
    rill_ring_spsc_t *r = p->rings[s];
    uint64_t h = rill__ring_spsc_head(r, __ATOMIC_RELAXED);
    uint64_t t = rill__ring_spsc_tail(r, __ATOMIC_RELAXED);
    for (; h != t && t - h <= rill__ring_spsc_slots(r); h++)
      slot_release(rill__ring_spsc_slot(r, h));
    rill_ring_spsc_destroy(p->rings[s]);
  }
  rill__free(p->rings);
  rill__free(p->claim);
  rill__free(p->group);
  rill__free(p);
}

/* Under bus->lock: unlinks p, keeps its counters, frees it. */
void rill__bus_producer_retire_locked(rill_bus_t *bus, rill_bus_producer_t *p) {
  if (p->prev)
    p->prev->next = p->next;
  else
    bus->head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  bus->retired.ingested += __atomic_load_n(&p->c.ingested, __ATOMIC_RELAXED);
  bus->retired.dropped_newest += __atomic_load_n(&p->c.dropped_newest, __ATOMIC_RELAXED);
  bus->retired.dropped_sampled += __atomic_load_n(&p->c.dropped_sampled, __ATOMIC_RELAXED);
  bus->retired.failed_full += __atomic_load_n(&p->c.failed_full, __ATOMIC_RELAXED);
  bus->retired.blocked_timeouts += __atomic_load_n(&p->c.blocked_timeouts, __ATOMIC_RELAXED);
  bus->retired.dropped_oldest += __atomic_load_n(&p->c.dropped_oldest, __ATOMIC_RELAXED);
  producer_free(p);
}

/* ---- producers --------------------------------------------------------- */

int rill_bus_producer_create(rill_bus_producer_t **out, rill_bus_t *bus) {
  if (!bus || !out)
    return rill__err(RILL_EINVAL, "bus: NULL bus or out");
  if (__atomic_load_n(&bus->stop, __ATOMIC_ACQUIRE))
    return rill__err(RILL_ECLOSED, "bus: producer_create after shutdown");
  int rc = RILL_ENOMEM;
  rill_bus_producer_t *p = rill__aligned(64, RILL__ALIGN_UP(sizeof *p, (size_t)64));
  if (!p)
    return rill__err(rc, "bus: no memory for a producer");
  memset(p, 0, sizeof *p);
  p->bus = bus;
  p->workers_left = bus->o.workers;
  p->rings = rill__calloc(bus->o.shards, sizeof *p->rings);
  if (!p->rings)
    goto undo_p;
  if (bus->o.policy == RILL_BUS_DROP_OLDEST) {
    size_t cb = bus->o.shards * sizeof *p->claim;
    p->claim = rill__aligned(64, cb);
    if (!p->claim)
      goto undo_rings;
    memset(p->claim, 0, cb);
  }
  p->group = rill__malloc(bus->o.shards * sizeof *p->group);
  if (!p->group)
    goto undo_rings;
  memset(p->group, 0xff, bus->o.shards * sizeof *p->group); /* GROUP_NONE */
  for (uint32_t s = 0; s < bus->o.shards; s++) {
    rc = rill_ring_spsc_create(&p->rings[s], bus->o.ring_slots, bus->slot_size);
    if (rc)
      goto undo_rings;
  }
  pthread_mutex_lock(&bus->lock);
  if (bus->joined) {
    pthread_mutex_unlock(&bus->lock);
    rc = rill__err(RILL_ECLOSED, "bus: producer_create after shutdown");
    goto undo_rings;
  }
  p->seq = ++bus->next_seq;
  p->next = bus->head;
  if (bus->head)
    bus->head->prev = p;
  bus->head = p;
  /* Release: the node and its rings are visible to a worker that loads
   * the new gen with acquire (it then walks the list under the lock). */
  __atomic_store_n(&bus->gen, bus->gen + 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&bus->lock);
  *out = p;
  return 0;
undo_rings:
  for (uint32_t s = 0; s < bus->o.shards; s++)
    rill_ring_spsc_destroy(p->rings[s]);
  rill__free(p->group);
  rill__free(p->claim);
  rill__free(p->rings);
undo_p:
  rill__free(p);
  if (rc == RILL_ENOMEM)
    rill__err(rc, "bus: no memory for a producer's rings");
  return rc;
}

void rill_bus_producer_destroy(rill_bus_producer_t *p) {
  if (!p)
    return;
  rill_bus_t *bus = p->bus;
  pthread_mutex_lock(&bus->lock);
  if (bus->joined) {
    /* No worker runs: nobody else can hold p. */
    rill__bus_producer_retire_locked(bus, p);
  } else {
    /* Release: every push before this is visible to a worker that sees
     * closed with acquire; from then on the workers own p. */
    __atomic_store_n(&p->closed, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&bus->lock);
}
