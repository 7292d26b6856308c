/*
 * An SPSC ring whose consumer side is shared (private to librill).
 *
 * The bus's DROP_OLDEST lets a producer whose ring is full discard the
 * oldest item the consumer has not taken yet, so two threads move the
 * ring's head. Who may take which slot is decided outside the ring (the
 * bus's claim word: src/bus/bus_internal.h, "Drop-oldest"); the ring gives the
 * moves that decision needs, so that no code outside src/ring touches its
 * indexes or geometry:
 *  - head and tail loaded with the order the caller's protocol needs;
 *  - the slot at a position, and the contiguous filled slots from a
 *    position that is not the consumer's head (what a claim points at);
 *  - giving slots back with a read-modify-write of head rather than the
 *    plain ring's release store, since two threads add to it.
 * Everything here is inline: these are the bus's publish and drain paths.
 */
#ifndef RILL_RING_SPSC_SHARED_H
#define RILL_RING_SPSC_SHARED_H

#include <stdbool.h>
#include <stdint.h>

#include "rill/ring.h"

static inline struct rill__ring_spsc *rill__ring_spsc_of(const rill_ring_spsc_t *r) {
  return (struct rill__ring_spsc *)r;
}

/** Slots the ring holds. */
static inline uint64_t rill__ring_spsc_slots(const rill_ring_spsc_t *r) {
  return rill__ring_spsc_of(r)->mask + 1;
}

/** head: slots given back since format; loaded with `order`. */
static inline uint64_t rill__ring_spsc_head(const rill_ring_spsc_t *r, int order) {
  return __atomic_load_n(&rill__ring_spsc_of(r)->cons->head, order);
}

/** tail: slots pushed since format; loaded with `order`. */
static inline uint64_t rill__ring_spsc_tail(const rill_ring_spsc_t *r, int order) {
  return __atomic_load_n(&rill__ring_spsc_of(r)->prod->tail, order);
}

/** The slot of position pos. */
static inline uint8_t *rill__ring_spsc_slot(const rill_ring_spsc_t *r, uint64_t pos) {
  struct rill__ring_spsc *s = rill__ring_spsc_of(r);
  return s->data + (pos & s->mask) * s->slot_size;
}

/** True when head and tail (loaded by the caller) say every slot is full. */
static inline bool rill__ring_spsc_full(const rill_ring_spsc_t *r, uint64_t head, uint64_t tail) {
  return tail - head > rill__ring_spsc_of(r)->mask;
}

/** Producer: true when at least n slots are free (its cached view of head
 *  first, the real one, with acquire, only when that says no). */
static inline bool rill__ring_spsc_has_room(rill_ring_spsc_t *r, uint64_t n) {
  struct rill__ring_spsc *s = rill__ring_spsc_of(r);
  /* Relaxed: the producer's own index. */
  uint64_t tail = __atomic_load_n(&s->prod->tail, __ATOMIC_RELAXED);
  return rill__ring_spsc_free(s, tail, n) >= n;
}

/** Consumer: how many filled slots, up to want, lie contiguous from pos
 *  (a position between head and tail: the consumer's own, or a claim's),
 *  stopping at the wrap. Loads tail with acquire when its cached copy is
 *  short, so the slots' bytes are visible before they are read. */
static inline uint64_t rill__ring_spsc_avail_at(rill_ring_spsc_t *r, uint64_t pos, uint64_t want) {
  struct rill__ring_spsc *s = rill__ring_spsc_of(r);
  uint64_t k = rill__ring_spsc_avail(s, pos, want);
  uint64_t first = s->mask + 1 - (pos & s->mask);
  if (k > first)
    k = first;
  return k < want ? k : want;
}

/** Gives n slots back by adding to head with a read-modify-write of order
 *  `order` (release at least: the reads of those slots are done before a
 *  producer that loads head with acquire reuses them). For a ring whose
 *  head more than one thread moves; a plain consumer uses
 *  rill_ring_spsc_release. */
static inline void rill__ring_spsc_head_add(rill_ring_spsc_t *r, uint64_t n, int order) {
  __atomic_fetch_add(&rill__ring_spsc_of(r)->cons->head, n, order);
}

/** Producer: the slot at tail when one is free, else NULL (head loaded
 *  with acquire only when the cached head says full, as push does); *tail
 *  gets tail, for rill__ring_spsc_publish. One push in two steps without
 *  commit's second look at the indexes: the bus's one-event publish. */
static inline uint8_t *rill__ring_spsc_next(rill_ring_spsc_t *r, uint64_t *tail) {
  struct rill__ring_spsc *s = rill__ring_spsc_of(r);
  /* Relaxed: the producer's own index. */
  uint64_t t = __atomic_load_n(&s->prod->tail, __ATOMIC_RELAXED);
  if (RILL_UNLIKELY(rill__ring_spsc_free(s, t, 1) == 0))
    return NULL;
  *tail = t;
  return s->data + (t & s->mask) * s->slot_size;
}

/** Producer: publishes the slot rill__ring_spsc_next returned, with a
 *  release store of tail: its bytes are visible before tail covers it. */
static inline void rill__ring_spsc_publish(rill_ring_spsc_t *r, uint64_t tail) {
  __atomic_store_n(&rill__ring_spsc_of(r)->prod->tail, tail + 1, __ATOMIC_RELEASE);
}

/*
 * A producer that writes several slots before it publishes them (the bus's
 * batch publish, which spreads one call over several rings): it takes
 * free slots one at a time, each a pointer computed from cached geometry,
 * and publishes all it took with one release store of tail. Slots past
 * tail are the producer's alone until that store, so nothing is ordered
 * before it.
 */
typedef struct rill__ring_spsc_writer {
  rill_ring_spsc_t *r;
  uint8_t *data;
  uint64_t mask;
  uint64_t size;
  uint64_t pos; /* the next slot's position; tail until the first take */
  uint64_t end; /* free slots known, from the cached head, end below this */
} rill__ring_spsc_writer_t;

/** Starts writing at the ring's tail. */
static inline void rill__ring_spsc_writer_begin(rill__ring_spsc_writer_t *w, rill_ring_spsc_t *r) {
  struct rill__ring_spsc *s = rill__ring_spsc_of(r);
  w->r = r;
  w->data = s->data;
  w->mask = s->mask;
  w->size = s->slot_size;
  /* Relaxed: the producer's own index. */
  w->pos = __atomic_load_n(&s->prod->tail, __ATOMIC_RELAXED);
  /* The cached head only: no load of the consumer's line until it says
   * full (the acquire load is in rill__ring_spsc_free, at the first
   * take that needs it). */
  uint64_t used = w->pos - s->prod->head_cache;
  w->end = used <= s->mask ? w->pos + s->mask + 1 - used : w->pos;
}

/** The next free slot, or NULL when the ring is full (head loaded with
 *  acquire then, so slots given back are seen). */
static inline uint8_t *rill__ring_spsc_writer_take(rill__ring_spsc_writer_t *w) {
  if (RILL_UNLIKELY(w->pos == w->end)) {
    w->end = w->pos + rill__ring_spsc_free(rill__ring_spsc_of(w->r), w->pos, 1);
    if (w->pos == w->end)
      return NULL;
  }
  return w->data + (w->pos++ & w->mask) * w->size;
}

/** Up to want free slots that lie contiguous from the writer's position
 *  (they stop at the wrap); *at gets the first. The caller writes some of
 *  them and takes those with rill__ring_spsc_writer_advance. 0 when the
 *  ring is full. */
static inline uint64_t rill__ring_spsc_writer_span(rill__ring_spsc_writer_t *w, uint64_t want,
                                                   uint8_t **at) {
  if (RILL_UNLIKELY(w->pos == w->end))
    w->end = w->pos + rill__ring_spsc_free(rill__ring_spsc_of(w->r), w->pos, want);
  uint64_t k = w->end - w->pos, first = w->mask + 1 - (w->pos & w->mask);
  if (k > first)
    k = first;
  if (k > want)
    k = want;
  *at = w->data + (w->pos & w->mask) * w->size;
  return k;
}

/** Takes the first k slots of the last span. */
static inline void rill__ring_spsc_writer_advance(rill__ring_spsc_writer_t *w, uint64_t k) {
  w->pos += k;
}

/** Publishes every slot taken since begin (or the last publish) with one
 *  release store of tail: their bytes are visible before tail covers them. */
static inline void rill__ring_spsc_writer_publish(rill__ring_spsc_writer_t *w) {
  __atomic_store_n(&rill__ring_spsc_of(w->r)->prod->tail, w->pos, __ATOMIC_RELEASE);
}

#endif /* RILL_RING_SPSC_SHARED_H */
