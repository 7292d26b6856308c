/*
 * The workers: each drains its shards from every producer's ring into
 * batches, calls the sink, gives the slots back and wakes the producers
 * that wait; idle, it sleeps on its doorbell (see "Drop-oldest" and
 * "Sleeping" in bus_internal.h).
 */
#include <sched.h>
#include <string.h>

#include "bus/bus_internal.h"

/* Longest an idle worker sleeps: what a lost doorbell can cost (see
 * "Sleeping" in bus_internal.h). */
#define IDLE_SLEEP_NS 500000u

/* ---- workers ----------------------------------------------------------- */

/* Adds the producers opened since the worker last looked: counts them,
 * makes room, then adds them, so a failed allocation changes nothing and
 * is retried on the next pass (gen_seen is not advanced). */
static int worker_refresh(struct worker *w) {
  rill_bus_t *bus = w->bus;
  int rc = 0;
  uint64_t seen = w->max_seq; /* the list is newest first */
  pthread_mutex_lock(&bus->lock);
  size_t add = 0;
  for (rill_bus_producer_t *p = bus->head; p && p->seq > seen; p = p->next)
    add++;
  if (w->nprods + add > w->cap) {
    size_t cap = w->cap ? w->cap : 16;
    while (cap < w->nprods + add)
      cap *= 2;
    rill_bus_producer_t **np = rill__realloc(w->prods, cap * sizeof *np);
    if (!np)
      goto out_nomem;
    w->prods = np;
    size_t *nt = rill__realloc(w->take, cap * sizeof *nt);
    if (!nt)
      goto out_nomem;
    w->take = nt;
    uint64_t *nf = rill__realloc(w->from, cap * sizeof *nf);
    if (!nf)
      goto out_nomem;
    w->from = nf;
    bool *nc = rill__realloc(w->closed_seen, cap * sizeof *nc);
    if (!nc)
      goto out_nomem;
    w->closed_seen = nc;
    w->cap = cap;
  }
  for (rill_bus_producer_t *p = bus->head; p && p->seq > seen; p = p->next) {
    w->prods[w->nprods++] = p;
    if (p->seq > w->max_seq)
      w->max_seq = p->seq;
  }
  goto out;
out_nomem:
  rc = RILL_ENOMEM;
out:
  pthread_mutex_unlock(&bus->lock);
  return rc;
}

/* DROP_OLDEST: takes up to want slots of ring s, from its claim to the
 * wrap or the tail, by moving the claim past them. Returns how many;
 * *from is the first. Only this worker takes from the ring, so the busy
 * bit it sets is never set already. */
static size_t claim_take(rill_ring_spsc_t *r, struct claim *cl, size_t want, uint64_t *from) {
  /* A look without the RMW first, so an idle pass over empty rings costs
   * loads only. Relaxed: a hint, checked again below. */
  uint64_t c = __atomic_load_n(&cl->v, __ATOMIC_RELAXED);
  if (rill__ring_spsc_avail_at(r, c, 1) == 0)
    return 0;
  /* Acquire: pairs with the producer's CAS (acq_rel) of a drop, so the
   * tail we load next is at least the one it saw, and tail >= claim. The
   * bit makes every producer CAS fail until we store the claim below. */
  c = __atomic_fetch_or(&cl->v, CLAIM_BUSY, __ATOMIC_ACQUIRE);
  /* Acquire load of tail inside (when the cache is short): the slots'
   * bytes are visible before we read them. */
  uint64_t k = rill__ring_spsc_avail_at(r, c, want);
  /* Relaxed: nothing to publish (we have not read the slots yet); the
   * store only ends the busy window, with [c, c + k) ours. */
  __atomic_store_n(&cl->v, c + k, __ATOMIC_RELAXED);
  *from = c;
  return (size_t)k;
}

/* The first of got slots taken from producer i's ring for shard s. */
static const uint8_t *worker_take(struct worker *w, size_t i, uint32_t s, size_t want,
                                  size_t *got) {
  rill_bus_producer_t *p = w->prods[i];
  if (!p->claim)
    return rill_ring_spsc_peek(p->rings[s], want, got);
  *got = claim_take(p->rings[s], &p->claim[s], want, &w->from[i]);
  return *got ? rill__ring_spsc_slot(p->rings[s], w->from[i]) : NULL;
}

/* Gives back the slots of producer i's ring for shard s after on_batch. */
static void worker_give_back(struct worker *w, size_t i, uint32_t s) {
  rill_bus_producer_t *p = w->prods[i];
  if (!w->bus->wake_producers) {
    /* Nobody sleeps on this bus: the ring's release store of head. */
    rill_ring_spsc_release(p->rings[s], w->take[i]);
    return;
  }
  /* seq_cst: our reads of the slots complete before the producer, which
   * loads head with acquire, overwrites them (the release half); and this
   * store of head against our seq_cst loads of the flags next
   * (worker_wake_producers), the other half of producer_arm's pattern.
   * A fetch_add, not a store: on a DROP_OLDEST bus the producer adds to
   * head too, for its drops; on a BLOCK bus we are head's only writer and
   * it is just the locked instruction the pattern needs. */
  rill__ring_spsc_head_add(p->rings[s], w->take[i], __ATOMIC_SEQ_CST);
}

/* After giving back slots (or undoing a claim): wakes the producers of
 * those rings that wait for room, or for the batch, on a BLOCK or
 * DROP_OLDEST bus. */
static void worker_wake_producers(struct worker *w) {
  for (size_t i = 0; i < w->nprods; i++) {
    rill_bus_producer_t *p = w->prods[i];
    /* seq_cst: after our seq_cst give-back of head (or claim) above, in the
     * total order that also holds the producer's seq_cst flag exchange and
     * head load (producer_arm), so one of us sees the other. A plain load
     * on x86. The exchange lets one worker make the syscall when several
     * give back to the same producer (relaxed: the futex bump publishes). */
    if (w->take[i] && __atomic_load_n(&p->wt.waiting, __ATOMIC_SEQ_CST) &&
        __atomic_exchange_n(&p->wt.waiting, 0, __ATOMIC_RELAXED))
      rill__futex_bump(&p->wt.wake);
  }
}

/* One batch for shard s from every producer's ring. Returns the events
 * delivered; *held says a short batch was left waiting for more. */
static size_t worker_shard(struct worker *w, uint32_t s, bool stopping, bool *held) {
  rill_bus_t *bus = w->bus;
  size_t n = 0, max = bus->o.batch_max, nrefs = 0;
  /* Numbered as they are gathered: a batch held back is numbered again
   * on the pass that delivers it, since shard_seq moves only then. */
  uint64_t seq = bus->shard_seq[s];
  /* In locals: the stores into ev would otherwise make the compiler load
   * both again for every event. */
  rill_bus_event_t *ev = w->ev;
  size_t slot_size = bus->slot_size;
  for (size_t i = 0; i < w->nprods; i++) {
    w->take[i] = 0;
    if (n == max)
      continue;
    size_t got = 0;
    const uint8_t *sl = worker_take(w, i, s, max - n, &got);
    for (size_t j = 0; j < got; j++, sl += slot_size) {
      const struct slot_hdr *h = (const void *)sl;
      const void *data = sl + SLOT_HDR;
      if (RILL_UNLIKELY(h->flags & SLOT_REF)) {
        rill_buf_t b;
        memcpy(&b, sl + SLOT_HDR, sizeof b);
        data = b.data;
        w->refs[nrefs++] = (uint8_t *)sl;
      }
      ev[n] = (rill_bus_event_t){data, h->len, s, seq + n, h->ts};
      n++;
    }
    w->take[i] = got;
  }
  if (n == 0)
    return 0;
  if (n < bus->o.batch_min && !stopping && rill_time_ns() - w->ev[0].ts_ns < bus->o.max_delay_ns) {
    *held = true; /* not given back: the next pass sees them again */
    if (w->ev[0].ts_ns + bus->o.max_delay_ns < w->hold_until)
      w->hold_until = w->ev[0].ts_ns + bus->o.max_delay_ns;
    if (bus->o.policy == RILL_BUS_DROP_OLDEST) {
      for (size_t i = 0; i < w->nprods; i++)
        if (w->take[i])
          /* Undo the claim, so a producer may drop these meanwhile. A
           * plain store: claim != head until now, so no producer CAS
           * moved it. seq_cst: our reads of the slots above complete
           * before a producer that takes them (CAS, acquire) reuses them,
           * and the store is ordered before our seq_cst loads of the
           * flags (worker_wake_producers) as producer_arm's pattern needs. */
          __atomic_store_n(&w->prods[i]->claim[s].v, w->from[i], __ATOMIC_SEQ_CST);
      worker_wake_producers(w); /* a producer may wait for that claim */
    }
    return 0;
  }
  bus->shard_seq[s] = seq + n;
  bus->sink.on_batch(bus->sink.ctx, w->ev, n);
  /* The sink is done with the bytes: drop the slots' references before
   * the slots go back (the producer may then overwrite them). */
  for (size_t k = 0; k < nrefs; k++)
    slot_release(w->refs[k]);
  for (size_t i = 0; i < w->nprods; i++)
    if (w->take[i])
      worker_give_back(w, i, s);
  if (bus->wake_producers)
    worker_wake_producers(w);
  __atomic_store_n(&w->delivered, w->delivered + n, __ATOMIC_RELAXED);
  __atomic_store_n(&w->batches, w->batches + 1, __ATOMIC_RELAXED);
  return n;
}

/* Drops the closed producers whose rings for this worker's shards are
 * empty; the last worker to drop one frees it. */
static void worker_retire(struct worker *w) {
  rill_bus_t *bus = w->bus;
  uint32_t nw = bus->o.workers;
  for (size_t i = 0; i < w->nprods;) {
    rill_bus_producer_t *p = w->prods[i];
    bool empty = w->closed_seen[i];
    for (uint32_t s = w->idx; empty && s < bus->o.shards; s += nw)
      empty = rill_ring_spsc_size(p->rings[s]) == 0;
    if (!empty) {
      i++;
      continue;
    }
    w->prods[i] = w->prods[--w->nprods];
    w->closed_seen[i] = w->closed_seen[w->nprods];
    /* acq_rel: our reads of its rings happen before whoever frees it. */
    if (__atomic_sub_fetch(&p->workers_left, 1, __ATOMIC_ACQ_REL) == 0) {
      pthread_mutex_lock(&bus->lock);
      rill__bus_producer_retire_locked(bus, p);
      pthread_mutex_unlock(&bus->lock);
    }
  }
}

void *rill__bus_worker_main(void *arg) {
  struct worker *w = arg;
  rill_bus_t *bus = w->bus;
  unsigned idle = 0;
  bool armed = false; /* the doorbell flag is up */
  size_t linger_below = bus->o.linger_ns == RILL_BUS_LINGER_NONE ? 0 : bus->o.batch_max / 8 + 1;
  uint32_t bell0 = 0; /* the doorbell word when it went up */
  for (;;) {
    /* Acquire: everything opened or published before close set stop is
     * visible below, so an empty pass after seeing stop is final. */
    bool stopping = __atomic_load_n(&bus->stop, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&bus->abort, __ATOMIC_ACQUIRE))
      break;
    /* Acquire: pairs with open's release of gen (see bus_internal.h). */
    uint64_t gen = __atomic_load_n(&bus->gen, __ATOMIC_ACQUIRE);
    if (gen != w->gen_seen && worker_refresh(w) == 0)
      w->gen_seen = gen;
    /* Acquire: pairs with producer_close's release; the producer's pushes
     * are visible to the drain below, so empty rings then mean done. */
    for (size_t i = 0; i < w->nprods; i++)
      w->closed_seen[i] = __atomic_load_n(&w->prods[i]->closed, __ATOMIC_ACQUIRE);
    size_t did = 0;
    bool held = false;
    w->hold_until = UINT64_MAX;
    for (uint32_t s = w->idx; s < bus->o.shards; s += bus->o.workers)
      did += worker_shard(w, s, stopping, &held);
    worker_retire(w);
    if (did) {
      idle = 0;
      if (armed) {
        __atomic_store_n(&w->bell.sleeping, 0, __ATOMIC_RELAXED);
        armed = false;
      }
      /* Linger (see rill_bus_opts_t.linger_ns): wait without touching the
       * producers' lines, so the next pass takes a batch that crosses the
       * cores once instead of chasing the producer slot by slot. */
      if (did < linger_below && !stopping) {
        uint64_t until = rill_time_ns() + bus->o.linger_ns;
        while (rill_time_ns() < until && !__atomic_load_n(&bus->stop, __ATOMIC_RELAXED))
          sched_yield();
      }
      continue;
    }
    if (stopping && !held)
      break;
    if (++idle < 64) {
      rill__cpu_relax();
      continue;
    }
    if (!armed) {
      /* Acquire: pairs with futex_bump, so what a bump we see announced
       * (a push, stop) is visible to the pass below. Loaded before the
       * pass, so a bump after it changes the word and we do not sleep. */
      bell0 = __atomic_load_n(&w->bell.ring, __ATOMIC_ACQUIRE);
      /* seq_cst exchange: a full barrier on x86, so our flag store is
       * visible before the pass's loads of the tails. The producers do not
       * order their tail store before their load of the flag
       * (doorbell_ring), so a wakeup can still be lost, rarely; the sleep
       * below is bounded for that. */
      (void)__atomic_exchange_n(&w->bell.sleeping, 1, __ATOMIC_SEQ_CST);
      armed = true;
      continue; /* one more pass with the flag up, then sleep */
    }
    uint64_t ns = IDLE_SLEEP_NS;
    if (held) {
      uint64_t now = rill_time_ns();
      if (w->hold_until <= now)
        continue;
      if (w->hold_until - now < ns)
        ns = w->hold_until - now;
    }
    rill__futex_wait(&w->bell.ring, bell0, ns);
    /* Down before the next pass: producers stop making syscalls. */
    __atomic_store_n(&w->bell.sleeping, 0, __ATOMIC_RELAXED);
    armed = false;
  }
  return NULL;
}
