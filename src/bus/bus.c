/*
 * The bus: lock-free ingest into per-producer SPSC rings, sharded workers
 * draining them into batches for a sink.
 *
 * A slot is a 16-byte header {u64 ts_ns, u32 len, u32 0} and the payload
 * inline, padded to 8 bytes. The worker hands the sink pointers into the
 * slots (peek) and gives them back (release) only after on_batch returns,
 * so nothing is copied between publish and the sink.
 *
 * Producer publication (who the workers drain). The bus keeps a list of
 * producers under `lock`, touched only by open, close-after-shutdown,
 * stats and the worker that frees a drained producer. Open appends with a
 * sequence number and then bumps `gen` with a release store. Each worker
 * keeps its own array of producers and the last gen it saw; its hot loop
 * does one acquire load of gen, and only when it changed takes the lock
 * and adds the producers with a sequence above the highest it has. The
 * release/acquire pair on gen makes the appended node (and its rings)
 * visible to the worker before it reads them; the lock covers the list
 * walk itself.
 *
 * Retirement. rill_bus_producer_destroy stores `closed` with release after
 * the producer's last push, so a worker that loads it with acquire and
 * then finds the producer's rings for its shards empty has seen every
 * event: it drops the producer from its array and decrements
 * `workers_left` (acq_rel). The worker that takes it to zero is the last
 * one that can hold a pointer to the producer, so it unlinks it under the
 * lock, folds its counters into the bus's retired totals and frees it.
 * Workers never re-add it: it is below their highest sequence.
 *
 * Counters are single-writer: the producer (its padded block) or the worker
 * (its own), stored with relaxed atomics so stats may read them meanwhile.
 *
 * Drop-oldest. An SPSC ring's head belongs to its consumer, and the worker
 * delivers slots in place, so a producer that wants to discard the oldest
 * event must never take a slot the worker is reading. A DROP_OLDEST bus
 * keeps, per producer per shard, a 64-bit `claim` beside the ring: the
 * first slot nobody has taken. The worker takes a batch from claim c to
 * c + got (got <= tail - c), reads [c, c + got) in place, and gives them
 * back with a fetch_add of head (not the ring's plain store, since the
 * producer adds to head too). The ring module gives these moves
 * (src/ring/spsc_shared.h: head and tail loads, slots by position, a take
 * from a claim's position, an add to head); the claim and the protocol
 * are the bus's. A producer whose ring is full loads head h
 * and claim c; only when c == h (no batch in flight) it CASes claim from h
 * to h + 1, discards slot h (releasing its buf reference), adds 1 to head
 * and counts dropped_oldest; then it writes at tail as usual. When c != h
 * the worker is delivering from this ring: the producer waits until the
 * batch is given back (at most one on_batch call) and tries again.
 *
 * The worker does not CAS the claim from c to c + got: a producer dropping
 * at full speed moves the claim between the worker's load and its CAS, and
 * the stress test saw a worker starve that way (16 batches in 2 s). It
 * sets a busy bit with fetch_or instead, which always succeeds, works out
 * got from the claim it returned, and stores c + got. A busy claim is
 * never equal to a head, so producers treat it as a batch in flight.
 *
 * Why it is safe. Every step of claim (by either side) is followed by the
 * same step of head by the same side, so head <= claim, and the ranges
 * taken are disjoint and consecutive because only the busy worker or a
 * producer CAS that found the claim idle moves it. While the worker holds
 * [c, c + got), claim is c + got and head <= c; the producer's CAS needs
 * claim == head, so it cannot take anything until the worker adds got;
 * head therefore stays <= c, the producer writes only below head + slots
 * <= c + slots, and no slot of [c, c + got) is overwritten. Counts are
 * exact because a slot is either in one worker range (delivered once) or
 * in one producer range (dropped once), never both: whichever moved the
 * claim past it decided. No ABA: claim only grows, except for the worker's
 * undo of a batch it decided to hold (claim back to c, which it may store
 * plainly: claim != head meanwhile, so no producer CAS can succeed). And a
 * producer CAS from h that succeeds is safe whatever claim did in between:
 * head only grows and was h, and head <= claim == h, so head == claim at
 * that instant, which means no batch is in flight.
 *
 * Sleeping. Nobody naps on a timer any more; both sides sleep on futexes.
 *
 * A producer that must wait (BLOCK with its ring full, DROP_OLDEST with a
 * batch in flight) spins a little, then raises `waiting` in its own line
 * with a seq_cst exchange, loads head (and claim) again with seq_cst and
 * sleeps on its `wake` word up to its deadline. On such a bus the worker
 * gives slots back (head, or the claim it undoes) with seq_cst
 * read-modify-writes or stores and then loads the flags of the producers it
 * took from with seq_cst, and bumps `wake` for those that wait. All four
 * accesses of this store-then-load pattern are seq_cst, so in their single
 * total order one side always sees the other and no wakeup is lost. There
 * are no standalone fences: ThreadSanitizer does not model them, and with
 * the accesses themselves seq_cst it checks the code that ships. On x86
 * the exchange and the read-modify-write are the locked instructions a
 * fence would have cost, and a seq_cst load is a plain load; the worker
 * pays one locked add per ring it gives back to instead of a plain store
 * plus one mfence per batch.
 *
 * An idle worker spins 64 passes, then raises `sleeping` in its doorbell
 * with a seq_cst exchange (a full barrier on x86, as the fence it replaces
 * was), makes one more pass and sleeps on the doorbell's `ring` word. A
 * publish loads its shard's `sleeping` after committing and, when it is
 * up, bumps `ring`. Exact wakeups would need a seq_cst fence in every
 * publish between the tail store and that load. Measured (release build,
 * 2-core VM, publish of 64 bytes in a loop against a draining worker,
 * alternating 200k-publish chunks with and without a seq_cst fence plus
 * the flag load), the best chunks went from 6.5 to 6.8 ns when most
 * events were dropped and from 25.9 to 26.6 and 30.3 to 31.8 ns when every
 * event was written (BLOCK), and chunk means rose by 2 to 14 ns on this
 * noisy box: at or over the 1 to 2 ns we allow the hot path.
 * So the producer's load is relaxed and unfenced, and the worker's sleep
 * is bounded (IDLE_SLEEP_NS, 500 us): a wakeup lost in the store buffer's
 * window, rare, costs at most that much latency. Close bumps every
 * worker's and every producer's word after setting stop, so a closing bus
 * wakes everyone at once.
 */
#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "rill/bus.h"
#include "rill/mem.h"
#include "rill/ring.h"
#include "ring/spsc_shared.h"

#define SLOT_HDR 16u

/* Longest an idle worker sleeps: what a lost doorbell can cost (see
 * "Sleeping" above). */
#define IDLE_SLEEP_NS 500000u

/* Longest a DROP_OLDEST producer sleeps waiting for a batch in flight
 * before it looks again (the worker's wakeup is the normal way out). */
#define OLDEST_SLEEP_NS 1000000u

struct slot_hdr {
  uint64_t ts;
  uint32_t len;
  uint32_t flags; /* SLOT_REF */
};

/* The slot holds a rill_buf_t (a reference of its own) after the header
 * instead of the payload: events over slot_payload and rill_buf_t ingest.
 * Slots are at least that big whatever slot_payload says. */
#define SLOT_REF 1u

/* What a producer publishes: bytes to copy inline, or (ref != NULL) a buf
 * to reference; len is the payload's length either way. */
struct item {
  const void *data;
  uint32_t len;
  const rill_buf_t *ref;
};

/* Drops the buf reference a slot may hold. Called by whoever discards the
 * slot: the worker after on_batch, a producer dropping the oldest, and
 * producer_free for what was never delivered. */
static void slot_release(uint8_t *sl) {
  struct slot_hdr h;
  memcpy(&h, sl, sizeof h);
  if (h.flags & SLOT_REF) {
    rill_buf_t b;
    memcpy(&b, sl + SLOT_HDR, sizeof b);
    rill_buf_release(&b);
  }
}

/* Written only by the producer thread; on their own cache lines. */
struct prod_counters {
  uint64_t ingested;
  uint64_t dropped_newest;
  uint64_t dropped_sampled;
  uint64_t failed_full;
  uint64_t blocked_timeouts;
  uint64_t dropped_oldest;
  uint64_t sample_ctr; /* events seen in the current stretch of pressure */
} __attribute__((aligned(64)));

/* A blocked producer's wakeup, on its own line: the worker reads `waiting`
 * after each batch it gives back, and must not pull the producer's hot
 * counters line for it. */
struct prod_wait {
  uint32_t waiting; /* the producer is about to sleep, or sleeps, on wake */
  uint32_t wake;    /* futex word: bumped to wake it */
} __attribute__((aligned(64)));

/* An idle worker's doorbell, on its own line: producers read `sleeping`
 * after every publish. */
struct doorbell {
  uint32_t sleeping; /* the worker is about to sleep, or sleeps, on ring */
  uint32_t ring;     /* futex word: bumped to wake it */
} __attribute__((aligned(64)));

/* DROP_OLDEST: the first slot of a ring not yet taken by the worker (see
 * "Drop-oldest" above). Written by the worker (fetch_or and store per
 * batch) and by the producer (CAS per drop), so each sits on its own line
 * away from the producer's hot counters. */
struct claim {
  uint64_t v;
} __attribute__((aligned(64)));

/* Set in a claim while the worker works out its take (indexes never reach
 * 2^63). */
#define CLAIM_BUSY ((uint64_t)1 << 63)

struct rill_bus_producer {
  struct prod_counters c; /* first: the producer's hot line */
  struct prod_wait wt;
  rill_bus_t *bus;
  rill_ring_spsc_t **rings; /* one per shard */
  struct claim *claim;      /* DROP_OLDEST only: one per shard, else NULL */
  uint16_t *group;          /* batch publish: shard -> its group, GROUP_NONE between calls */
  uint64_t seq;             /* open order, from 1 */
  int closed;               /* release by close, acquire by workers */
  uint32_t workers_left;    /* workers that have not retired it yet */
  struct rill_bus_producer *next, *prev;
};

struct worker {
  rill_bus_t *bus;
  uint32_t idx;
  pthread_t tid;
  bool started;
  /* Written only by this worker. */
  uint64_t delivered __attribute__((aligned(64)));
  uint64_t batches;
  /* Private to the worker thread. */
  rill_bus_producer_t **prods;
  size_t *take;
  uint64_t *from; /* DROP_OLDEST: where each take starts (its claim) */
  bool *closed_seen;
  size_t nprods, cap;
  uint64_t gen_seen, max_seq;
  rill_bus_event_t *ev;
  uint8_t **refs;      /* the batch's slots that hold a buf reference */
  uint64_t hold_until; /* a held batch is due then; UINT64_MAX for none */
  struct doorbell bell;
};

struct rill_bus {
  rill_bus_opts_t o;
  rill_bus_sink_t sink;
  uint32_t slot_size;
  uint64_t *shard_seq; /* next seq per shard; written by its worker only */
  struct worker *w;
  struct doorbell **bell; /* per shard: its worker's doorbell */
  bool wake_producers;    /* BLOCK or DROP_OLDEST: producers may sleep */
  /* Shutdown flags: release by close, acquire by workers and producers. */
  int stop;  /* ingest closed; workers drain and exit */
  int abort; /* workers exit after the current batch */
  int closed_done;
  uint64_t gen; /* bumped (release) after each open */
  pthread_mutex_t lock;
  rill_bus_producer_t *head; /* open producers and closed ones not yet freed */
  uint64_t next_seq;
  bool joined;
  struct prod_counters retired; /* counters of freed producers */
};

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

/* ---- helpers ----------------------------------------------------------- */

static void nap(long ns) {
  struct timespec ts = {0, ns};
  nanosleep(&ts, NULL);
}

/* Sleeps while *addr == val, at most ns; wakeups may be spurious. */
/* After a publish to shard: wakes its worker if it sleeps. Relaxed and
 * without a fence on purpose (see "Sleeping" at the top): a miss costs at
 * most IDLE_SLEEP_NS. The exchange lets one producer make the syscall. */
static inline void doorbell_ring(rill_bus_t *bus, uint32_t shard) {
  struct doorbell *d = bus->bell[shard];
  if (RILL_UNLIKELY(__atomic_load_n(&d->sleeping, __ATOMIC_RELAXED)) &&
      __atomic_exchange_n(&d->sleeping, 0, __ATOMIC_RELAXED))
    rill__futex_bump(&d->ring);
}

/* Wakes every worker (close: stop or abort was just set). */
static void wake_workers(rill_bus_t *bus) {
  for (uint32_t i = 0; i < bus->o.workers; i++)
    rill__futex_bump(&bus->w[i].bell.ring);
}

/* A producer about to sleep: raises its flag and returns the wake word to
 * sleep on. The caller then checks its condition again and either sleeps
 * (producer_sleep) or lowers the flag (producer_unarm). */
static uint32_t producer_arm(rill_bus_producer_t *p) {
  /* Acquire: pairs with futex_bump, so a bump we see comes with the room
   * (or stop) it announced. Loaded before the condition is checked, so a
   * bump after the check changes the word and the futex does not sleep. */
  uint32_t w0 = __atomic_load_n(&p->wt.wake, __ATOMIC_ACQUIRE);
  /* seq_cst: our flag store and the caller's next seq_cst load of head (or
   * claim) against the worker's seq_cst give-back and its seq_cst load of
   * the flag (worker_wake_producers): of the two, one sees the other.
   * Either we find the room, or it finds the flag and wakes us. */
  (void)__atomic_exchange_n(&p->wt.waiting, 1, __ATOMIC_SEQ_CST);
  return w0;
}

static void producer_unarm(rill_bus_producer_t *p) {
  __atomic_store_n(&p->wt.waiting, 0, __ATOMIC_RELAXED);
}

static void producer_sleep(rill_bus_producer_t *p, uint32_t w0, uint64_t ns) {
  rill__futex_wait(&p->wt.wake, w0, ns);
  producer_unarm(p);
}

/* Wakes every producer (close: stop was just set). Under bus->lock, so
 * none is freed meanwhile. Unconditional: close is not a hot path, and it
 * needs no fence then (the bump after stop is enough, see producer_arm). */
static void wake_producers_locked(rill_bus_t *bus) {
  for (rill_bus_producer_t *p = bus->head; p; p = p->next)
    rill__futex_bump(&p->wt.wake);
}

static inline void cnt_inc(uint64_t *c) {
  __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

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
static void producer_retire_locked(rill_bus_t *bus, rill_bus_producer_t *p) {
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
  for (size_t i = 0; i < w->nprods; i++) {
    w->take[i] = 0;
    if (n == max)
      continue;
    size_t got = 0;
    const uint8_t *sl = worker_take(w, i, s, max - n, &got);
    for (size_t j = 0; j < got; j++, sl += bus->slot_size) {
      const struct slot_hdr *h = (const void *)sl;
      const void *data = sl + SLOT_HDR;
      if (RILL_UNLIKELY(h->flags & SLOT_REF)) {
        rill_buf_t b;
        memcpy(&b, sl + SLOT_HDR, sizeof b);
        data = b.data;
        w->refs[nrefs++] = (uint8_t *)sl;
      }
      w->ev[n++] = (rill_bus_event_t){data, h->len, s, 0, h->ts};
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
  uint64_t seq = bus->shard_seq[s];
  for (size_t i = 0; i < n; i++)
    w->ev[i].seq = seq++;
  bus->shard_seq[s] = seq;
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
      producer_retire_locked(bus, p);
      pthread_mutex_unlock(&bus->lock);
    }
  }
}

static void *worker_main(void *arg) {
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
    /* Acquire: pairs with open's release of gen (see the file comment). */
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

/* ---- create, close, destroy -------------------------------------------- */

static int check_opts(rill_bus_opts_t *o) {
  if (!o->shards)
    o->shards = 4;
  if (!o->ring_slots)
    o->ring_slots = 4096;
  if (!o->slot_payload)
    o->slot_payload = 120;
  if (!o->block_timeout_ns)
    o->block_timeout_ns = 1000000000ull;
  if (!o->sample_n)
    o->sample_n = 10;
  if (!o->workers)
    o->workers = 1;
  if (!o->batch_min)
    o->batch_min = 1;
  if (!o->batch_max)
    o->batch_max = o->batch_min > 256 ? o->batch_min : 256;
  if (!o->max_delay_ns)
    o->max_delay_ns = 1000000;
  if (!o->linger_ns)
    o->linger_ns = 2000;
  if (!o->max_payload)
    o->max_payload = 16u << 20;
  if (o->shards > RILL_BUS_MAX_SHARDS)
    return rill__err(RILL_EINVAL, "bus: shards %u not in 1..%u", o->shards, RILL_BUS_MAX_SHARDS);
  if (!RILL__IS_POW2(o->ring_slots) || o->ring_slots < 2)
    return rill__err(RILL_EINVAL, "bus: ring_slots %u is not a power of two >= 2", o->ring_slots);
  if (o->slot_payload > RILL_RING_SPSC_MAX_SLOT_SIZE - SLOT_HDR)
    return rill__err(RILL_EINVAL, "bus: slot_payload %u over %u", o->slot_payload,
                     RILL_RING_SPSC_MAX_SLOT_SIZE - SLOT_HDR);
  if (o->max_payload < o->slot_payload)
    return rill__err(RILL_EINVAL, "bus: max_payload %u below slot_payload %u", o->max_payload,
                     o->slot_payload);
  if ((unsigned)o->policy > RILL_BUS_DROP_OLDEST)
    return rill__err(RILL_EINVAL, "bus: unknown policy %d", (int)o->policy);
  if (o->workers > o->shards)
    return rill__err(RILL_EINVAL, "bus: workers %u not in 1..shards (%u)", o->workers, o->shards);
  if (!o->sink || !o->sink->on_batch)
    return rill__err(RILL_EINVAL, "bus: no sink or no on_batch");
  if (o->batch_max < o->batch_min)
    return rill__err(RILL_EINVAL, "bus: batch_max %u below batch_min %u", o->batch_max,
                     o->batch_min);
  return 0;
}

/* Frees the n workers' arrays and the workers (create's undo, destroy). */
static void workers_free(rill_bus_t *bus, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    rill__free(bus->w[i].ev);
    rill__free(bus->w[i].refs);
    rill__free(bus->w[i].prods);
    rill__free(bus->w[i].take);
    rill__free(bus->w[i].from);
    rill__free(bus->w[i].closed_seen);
  }
  rill__free(bus->w);
}

int rill_bus_create(rill_bus_t **out, const rill_bus_opts_t *opts) {
  if (!out || !opts)
    return rill__err(RILL_EINVAL, "bus: NULL out or opts");
  rill_bus_opts_t o = *opts;
  int rc = check_opts(&o);
  if (rc)
    return rc;
  rill_bus_t *bus = rill__calloc(1, sizeof *bus);
  if (!bus)
    return rill__err(RILL_ENOMEM, "bus: no memory for the bus");
  bus->o = o;
  bus->sink = *o.sink;
  bus->o.sink = &bus->sink;
  /* Room for a buf reference however small slot_payload is. */
  uint32_t inline_max = o.slot_payload > sizeof(rill_buf_t) ? o.slot_payload : sizeof(rill_buf_t);
  bus->slot_size = SLOT_HDR + RILL__ALIGN_UP(inline_max, 8u);
  bus->wake_producers = o.policy == RILL_BUS_BLOCK || o.policy == RILL_BUS_DROP_OLDEST;
  rc = RILL_ENOMEM;
  bus->shard_seq = rill__calloc(o.shards, sizeof *bus->shard_seq);
  if (!bus->shard_seq)
    goto undo_bus;
  bus->bell = rill__calloc(o.shards, sizeof *bus->bell);
  if (!bus->bell)
    goto undo_seq;
  bus->w = rill__aligned(64, RILL__ALIGN_UP(o.workers * sizeof *bus->w, (size_t)64));
  if (!bus->w)
    goto undo_bell;
  memset(bus->w, 0, o.workers * sizeof *bus->w);
  for (uint32_t s = 0; s < o.shards; s++)
    bus->bell[s] = &bus->w[s % o.workers].bell;
  for (uint32_t i = 0; i < o.workers; i++) {
    bus->w[i].bus = bus;
    bus->w[i].idx = i;
    bus->w[i].ev = rill__malloc(o.batch_max * sizeof(rill_bus_event_t));
    if (!bus->w[i].ev)
      goto undo_workers;
    bus->w[i].refs = rill__malloc(o.batch_max * sizeof(uint8_t *));
    if (!bus->w[i].refs)
      goto undo_workers;
  }
  pthread_mutex_init(&bus->lock, NULL);
  for (uint32_t i = 0; i < o.workers; i++) {
    int e = pthread_create(&bus->w[i].tid, NULL, worker_main, &bus->w[i]);
    if (e) {
      rc = rill__err(-e, "bus: pthread_create failed");
      goto undo_threads;
    }
    bus->w[i].started = true;
  }
  *out = bus;
  return 0;
undo_threads:
  __atomic_store_n(&bus->abort, 1, __ATOMIC_RELEASE);
  wake_workers(bus);
  for (uint32_t i = 0; i < o.workers; i++)
    if (bus->w[i].started)
      pthread_join(bus->w[i].tid, NULL);
  pthread_mutex_destroy(&bus->lock);
undo_workers:
  workers_free(bus, o.workers);
undo_bell:
  rill__free(bus->bell);
undo_seq:
  rill__free(bus->shard_seq);
undo_bus:
  rill__free(bus);
  if (rc == RILL_ENOMEM)
    rill__err(rc, "bus: no memory");
  return rc;
}

static uint64_t undelivered_locked(rill_bus_t *bus) {
  uint64_t left = 0;
  for (rill_bus_producer_t *p = bus->head; p; p = p->next)
    for (uint32_t s = 0; s < bus->o.shards; s++)
      left += rill_ring_spsc_size(p->rings[s]);
  return left;
}

int rill_bus_shutdown(rill_bus_t *bus, uint64_t timeout_ns, uint64_t *left) {
  if (left)
    *left = 0;
  if (!bus)
    return rill__err(RILL_EINVAL, "bus: NULL bus");
  if (__atomic_exchange_n(&bus->closed_done, 1, __ATOMIC_ACQ_REL))
    return rill__err(RILL_ECLOSED, "bus: shut down twice");
  /* Release: pairs with the workers' acquire; see worker_main. */
  __atomic_store_n(&bus->stop, 1, __ATOMIC_RELEASE);
  /* Sleeping workers drain now, blocked producers return RILL_ECLOSED. */
  wake_workers(bus);
  pthread_mutex_lock(&bus->lock);
  wake_producers_locked(bus);
  pthread_mutex_unlock(&bus->lock);
  uint64_t deadline = rill__deadline(rill_time_ns(), timeout_ns);
  /* Wait for the workers to finish draining, up to the deadline; then tell
   * the rest to stop after their current batch. */
  for (uint32_t i = 0; i < bus->o.workers; i++) {
    if (!bus->w[i].started)
      continue;
    bool done = false;
    while (!done && !__atomic_load_n(&bus->abort, __ATOMIC_RELAXED)) {
      done = pthread_tryjoin_np(bus->w[i].tid, NULL) == 0;
      if (!done && rill_time_ns() >= deadline) {
        __atomic_store_n(&bus->abort, 1, __ATOMIC_RELEASE);
        wake_workers(bus);
      } else if (!done)
        nap(100000);
    }
    if (!done)
      pthread_join(bus->w[i].tid, NULL);
    bus->w[i].started = false;
  }
  pthread_mutex_lock(&bus->lock);
  __atomic_store_n(&bus->joined, true, __ATOMIC_RELAXED);
  uint64_t n = undelivered_locked(bus);
  pthread_mutex_unlock(&bus->lock);
  if (bus->sink.flush)
    bus->sink.flush(bus->sink.ctx);
  if (bus->sink.close)
    bus->sink.close(bus->sink.ctx);
  if (left)
    *left = n;
  if (n)
    return rill__err(RILL_ETIMEDOUT, "bus: shutdown left %llu events undelivered",
                     (unsigned long long)n);
  return 0;
}

void rill_bus_destroy(rill_bus_t *bus) {
  if (!bus)
    return;
  if (!__atomic_load_n(&bus->closed_done, __ATOMIC_ACQUIRE))
    rill_bus_shutdown(bus, 1000000000ull, NULL);
  while (bus->head)
    producer_retire_locked(bus, bus->head);
  pthread_mutex_destroy(&bus->lock);
  workers_free(bus, bus->o.workers);
  rill__free(bus->bell);
  rill__free(bus->shard_seq);
  rill__free(bus);
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
    producer_retire_locked(bus, p);
  } else {
    /* Release: every push before this is visible to a worker that sees
     * closed with acquire; from then on the workers own p. */
    __atomic_store_n(&p->closed, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&bus->lock);
}

/* The slow path: the ring for the shard is full, or under pressure for
 * SAMPLE. Applies the policy. */
static int publish_full(rill_bus_producer_t *p, uint32_t shard, const struct item *it);

/* An event into a reserved slot: its header, then its payload inline. */
static inline void write_slot(uint8_t *sl, uint64_t ts, const void *data, uint32_t len) {
  struct slot_hdr h = {ts, len, 0};
  memcpy(sl, &h, sizeof h);
  if (len)
    memcpy(sl + SLOT_HDR, data, len);
}

/* One event into the next slot of the shard's ring, and the doorbell.
 * RILL_EAGAIN when full; the error of rill_buf_clone (nothing pushed). */
static inline int push_slot(rill_bus_producer_t *p, uint32_t shard, const struct item *it) {
  rill_ring_spsc_t *r = p->rings[shard];
  size_t got;
  uint8_t *sl = rill_ring_spsc_reserve(r, 1, &got);
  if (RILL_UNLIKELY(!got))
    return RILL_EAGAIN;
  if (RILL_LIKELY(!it->ref)) {
    write_slot(sl, rill_time_ns(), it->data, it->len);
  } else {
    /* The slot holds a reference of its own, released by whoever takes
     * the slot last (slot_release). */
    rill_buf_t v;
    int rc = rill_buf_clone(&v, it->ref);
    if (RILL_UNLIKELY(rc))
      return rc;
    struct slot_hdr h = {rill_time_ns(), it->len, SLOT_REF};
    memcpy(sl, &h, sizeof h);
    memcpy(sl + SLOT_HDR, &v, sizeof v);
  }
  rill_ring_spsc_commit(r, 1);
  doorbell_ring(p->bus, shard);
  return 0;
}

/* Publishes one event (inline, or by reference when it->ref) to shard. */
static int publish_item(rill_bus_producer_t *p, uint32_t shard, const struct item *it) {
  rill_bus_t *bus = p->bus;
  /* Relaxed: a flag that only stops ingest; close documents that
   * publishes must not race with it. */
  if (RILL_UNLIKELY(__atomic_load_n(&bus->stop, __ATOMIC_RELAXED)))
    return rill__err(RILL_ECLOSED, "bus: publish after shutdown");
  rill_ring_spsc_t *r = p->rings[shard];
  if (RILL_UNLIKELY(bus->o.policy == RILL_BUS_SAMPLE)) {
    uint64_t q = rill__ring_spsc_slots(r) / 4;
    if (!rill__ring_spsc_has_room(r, q ? q : 1))
      return publish_full(p, shard, it);
    p->c.sample_ctr = 0;
  }
  int rc = push_slot(p, shard, it);
  if (RILL_LIKELY(rc == 0)) {
    cnt_inc(&p->c.ingested);
    return 0;
  }
  if (RILL_UNLIKELY(rc != RILL_EAGAIN))
    return rc;
  return publish_full(p, shard, it);
}

/* Publishes len bytes at data: inline up to slot_payload, else copied into
 * a new buf (an allocation) sent by reference, up to max_payload. */
static int publish_to(rill_bus_producer_t *p, uint32_t shard, const void *data, uint32_t len) {
  rill_bus_t *bus = p->bus;
  if (RILL_LIKELY(len <= bus->o.slot_payload))
    return publish_item(p, shard, &(struct item){data, len, NULL});
  if (len > bus->o.max_payload)
    return rill__err(RILL_EMSGSIZE, "bus: payload %u over max_payload %u", len, bus->o.max_payload);
  if (__atomic_load_n(&bus->stop, __ATOMIC_RELAXED)) /* spare the copy */
    return rill__err(RILL_ECLOSED, "bus: publish after shutdown");
  rill_buf_t b;
  int rc = rill_buf_copy(&b, data, len);
  if (rc)
    return rc;
  rc = publish_item(p, shard, &(struct item){NULL, len, &b});
  rill_buf_release(&b); /* the slot has its own reference, if it got in */
  return rc;
}

/* One push of a publish that waits for room (DROP_OLDEST, BLOCK): 0 once
 * the item is in (counted), RILL_EAGAIN while the ring is full, or the
 * error; RILL_ECLOSED, saying what we were doing, once the bus shuts down. */
static inline int push_or_stop(rill_bus_producer_t *p, uint32_t shard, const struct item *it,
                               const char *doing) {
  int rc = push_slot(p, shard, it);
  if (rc == 0) {
    cnt_inc(&p->c.ingested);
    return 0;
  }
  if (rc != RILL_EAGAIN)
    return rc;
  /* Acquire: pairs with close's release; close then wakes us. */
  if (__atomic_load_n(&p->bus->stop, __ATOMIC_ACQUIRE))
    return rill__err(RILL_ECLOSED, "bus: shut down while %s", doing);
  return RILL_EAGAIN;
}

/* DROP_OLDEST with the ring full: discards the oldest slot not taken by
 * the worker (see "Drop-oldest" at the top), then pushes. */
static int publish_drop_oldest(rill_bus_producer_t *p, uint32_t shard, const struct item *it) {
  rill_bus_t *bus = p->bus;
  rill_ring_spsc_t *r = p->rings[shard];
  struct claim *cl = &p->claim[shard];
  for (unsigned spins = 0;; spins++) {
    int rc = push_or_stop(p, shard, it, "dropping the oldest");
    if (rc != RILL_EAGAIN)
      return rc;
    /* Relaxed: our own index. Acquire on head: pairs with the worker's
     * release (fetch_add), so its reads of the slots it gave back are done
     * before we reuse one. */
    uint64_t tail = rill__ring_spsc_tail(r, __ATOMIC_RELAXED);
    uint64_t h = rill__ring_spsc_head(r, __ATOMIC_ACQUIRE);
    if (!rill__ring_spsc_full(r, h, tail))
      continue; /* the worker gave slots back meanwhile: push again */
    uint64_t c = h;
    /* Acquire: pairs with the worker's release store when it undoes a
     * held claim, so its reads of slot h are done before we reuse it.
     * Release: pairs with the worker's acquire load of claim, so the tail
     * it loads next is at least ours (tail >= claim). */
    if (__atomic_compare_exchange_n(&cl->v, &c, h + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      /* Slot h is ours alone now: the worker's next take starts at h + 1.
       * Its buf reference, if any, goes with it. Release: as for the
       * worker's give-back, so the head a later acquire load sees covers
       * everything done to slot h. */
      slot_release(rill__ring_spsc_slot(r, h));
      rill__ring_spsc_head_add(r, 1, __ATOMIC_RELEASE);
      cnt_inc(&p->c.dropped_oldest);
      spins = 0;
      continue; /* one slot is free: the push succeeds */
    }
    /* c != h: the worker is delivering a batch from this ring. Wait for it
     * to give the slots back (at most one on_batch call): spin a little,
     * then sleep until the worker wakes us (worker_wake_producers). */
    if (spins < 128) {
      rill__cpu_relax();
      continue;
    }
    uint32_t w0 = producer_arm(p);
    /* seq_cst: loaded after the flag went up, in producer_arm's pattern
     * (and acquire, as above). */
    h = rill__ring_spsc_head(r, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&cl->v, __ATOMIC_SEQ_CST) != h &&
        !__atomic_load_n(&bus->stop, __ATOMIC_ACQUIRE))
      producer_sleep(p, w0, OLDEST_SLEEP_NS); /* bounded: see the constant */
    else
      producer_unarm(p);
  }
}

static int publish_full(rill_bus_producer_t *p, uint32_t shard, const struct item *it) {
  rill_bus_t *bus = p->bus;
  rill_ring_spsc_t *r = p->rings[shard];
  switch (bus->o.policy) {
  case RILL_BUS_DROP_OLDEST: return publish_drop_oldest(p, shard, it);
  case RILL_BUS_DROP_NEWEST:
    cnt_inc(&p->c.ingested);
    cnt_inc(&p->c.dropped_newest);
    return 0;
  case RILL_BUS_FAIL:
    cnt_inc(&p->c.ingested);
    cnt_inc(&p->c.failed_full);
    return rill__err(RILL_EFULL, "bus: ring full");
  case RILL_BUS_SAMPLE: {
    if (p->c.sample_ctr++ % bus->o.sample_n != 0) {
      cnt_inc(&p->c.ingested);
      cnt_inc(&p->c.dropped_sampled);
      return 0;
    }
    int rc = push_slot(p, shard, it);
    if (rc && rc != RILL_EAGAIN)
      return rc; /* not ingested: the buf refused another reference */
    cnt_inc(&p->c.ingested);
    if (rc)
      cnt_inc(&p->c.dropped_newest);
    return 0;
  }
  case RILL_BUS_BLOCK:
  default: {
    uint64_t deadline = rill__deadline(rill_time_ns(), bus->o.block_timeout_ns);
    for (unsigned spins = 0;; spins++) {
      int rc = push_or_stop(p, shard, it, "blocked");
      if (rc != RILL_EAGAIN)
        return rc;
      if (spins < 128) {
        rill__cpu_relax();
        continue;
      }
      uint64_t now = rill_time_ns();
      if (now >= deadline) {
        cnt_inc(&p->c.ingested);
        cnt_inc(&p->c.blocked_timeouts);
        return rill__err(RILL_ETIMEDOUT, "bus: blocked past the timeout");
      }
      /* Sleep until the worker gives slots of this ring back, close, or
       * the deadline. */
      uint32_t w0 = producer_arm(p);
      /* seq_cst: head loaded after the flag went up, in producer_arm's
       * pattern (and acquire, as the ring's own load: the room we see was
       * read out by the worker). Relaxed tail: ours. */
      uint64_t head = rill__ring_spsc_head(r, __ATOMIC_SEQ_CST);
      uint64_t tail = rill__ring_spsc_tail(r, __ATOMIC_RELAXED);
      if (rill__ring_spsc_full(r, head, tail) && !__atomic_load_n(&bus->stop, __ATOMIC_ACQUIRE))
        producer_sleep(p, w0, deadline - now);
      else
        producer_unarm(p);
    }
  }
  }
}

int rill_bus_publish(rill_bus_producer_t *p, const void *data, uint32_t len) {
  uint32_t shard = rill_hash_reduce(rill_hash64(data, len), p->bus->o.shards);
  return publish_to(p, shard, data, len);
}

int rill_bus_publish_key(rill_bus_producer_t *p, uint64_t key, const void *data, uint32_t len) {
  return publish_to(p, (uint32_t)(key % p->bus->o.shards), data, len);
}

int rill_bus_publish_buf(rill_bus_producer_t *p, const rill_buf_t *b) {
  if (!p || !b)
    return rill__err(RILL_EINVAL, "bus: NULL producer or buf");
  uint32_t shard = rill_hash_reduce(rill_hash64(b->data, b->len), p->bus->o.shards);
  return rill_bus_publish_buf_key(p, shard, b);
}

int rill_bus_publish_buf_key(rill_bus_producer_t *p, uint64_t key, const rill_buf_t *b) {
  if (!p || !b)
    return rill__err(RILL_EINVAL, "bus: NULL producer or buf");
  rill_bus_t *bus = p->bus;
  if (b->len > bus->o.max_payload)
    return rill__err(RILL_EMSGSIZE, "bus: buf of %zu bytes over max_payload %u", b->len,
                     bus->o.max_payload);
  return publish_item(p, (uint32_t)(key % bus->o.shards),
                      &(struct item){NULL, (uint32_t)b->len, b});
}

/* Copies a run of events bound for one shard with one reserve and one
 * commit per contiguous stretch of free slots. Returns how many it pushed
 * (fewer when the ring filled up). */
static size_t push_run(rill_bus_t *bus, uint32_t shard, rill_ring_spsc_t *r, const rill_iov_t *iov,
                       size_t n, uint64_t ts) {
  size_t pushed = 0;
  while (pushed < n) {
    size_t got;
    uint8_t *sl = rill_ring_spsc_reserve(r, n - pushed, &got);
    if (!got)
      break;
    for (size_t k = 0; k < got; k++, sl += bus->slot_size)
      write_slot(sl, ts, iov[pushed + k].data, iov[pushed + k].len);
    rill_ring_spsc_commit(r, got);
    pushed += got;
  }
  if (pushed)
    doorbell_ring(bus, shard);
  return pushed;
}

/* Events a grouped chunk of a batch publish takes at most. */
#define GROUP_CHUNK 64u
#define GROUP_NONE  UINT16_MAX

/* A chunk of a batch publish, grouped by shard: one reserve and commit
 * (and one doorbell) per shard instead of per run of neighbours, which
 * hashed events seldom are (4 shards: a run averages 4/3 events). Events
 * keep their order within each shard, the only order the bus promises.
 * Taken only when every event fits inline and every group fits in its
 * ring, checked before anything is written, so the chunk is all or
 * nothing and `done` stays a prefix; otherwise false, nothing written, and
 * the caller takes the in-order path with its policies. */
static bool publish_grouped(rill_bus_producer_t *p, const rill_iov_t *iov, size_t n, uint64_t ts) {
  rill_bus_t *bus = p->bus;
  uint16_t shard_of[GROUP_CHUNK], count[GROUP_CHUNK];
  uint32_t shards[GROUP_CHUNK];
  size_t ng = 0;
  bool ok = true;
  for (size_t k = 0; k < n; k++) {
    if (iov[k].len > bus->o.slot_payload) {
      ok = false;
      break;
    }
    uint32_t s = rill_hash_reduce(rill_hash64(iov[k].data, iov[k].len), bus->o.shards);
    if (p->group[s] == GROUP_NONE) {
      p->group[s] = (uint16_t)ng;
      shards[ng] = s;
      count[ng++] = 0;
    }
    shard_of[k] = p->group[s];
    count[p->group[s]]++;
  }
  for (size_t g = 0; g < ng && ok; g++) {
    ok = rill__ring_spsc_has_room(p->rings[shards[g]], count[g]);
  }
  for (size_t g = 0; g < ng; g++)
    p->group[shards[g]] = GROUP_NONE;
  if (!ok)
    return false;
  /* Gather each group's events in order and push them: they fit, and only
   * this thread adds to these rings. */
  rill_iov_t mine[GROUP_CHUNK];
  for (size_t g = 0; g < ng; g++) {
    size_t m = 0;
    for (size_t k = 0; k < n && m < count[g]; k++)
      if (shard_of[k] == g)
        mine[m++] = iov[k];
    size_t pushed = push_run(bus, shards[g], p->rings[shards[g]], mine, m, ts);
    (void)pushed;
    assert(pushed == m);
  }
  __atomic_store_n(&p->c.ingested, p->c.ingested + n, __ATOMIC_RELAXED);
  return true;
}

int rill_bus_publish_batch(rill_bus_producer_t *p, const rill_iov_t *iov, size_t n, size_t *done) {
  rill_bus_t *bus = p->bus;
  size_t i = 0;
  int rc = 0;
  if (RILL_UNLIKELY(__atomic_load_n(&bus->stop, __ATOMIC_RELAXED))) {
    rc = rill__err(RILL_ECLOSED, "bus: publish after shutdown");
    goto out;
  }
  uint64_t ts = rill_time_ns();
  if (bus->o.policy != RILL_BUS_SAMPLE && bus->o.shards > 1) {
    while (i < n) {
      size_t m = n - i < GROUP_CHUNK ? n - i : GROUP_CHUNK;
      if (!publish_grouped(p, iov + i, m, ts))
        break;
      i += m;
    }
  }
  uint32_t shard =
      i < n ? rill_hash_reduce(rill_hash64(iov[i].data, iov[i].len), bus->o.shards) : 0;
  while (i < n) {
    /* The run: events from i on that go to the same shard and fit. The
     * shard of iov[i] is known already (it ended the previous run). */
    size_t j = i;
    uint32_t next = shard;
    while (j < n && iov[j].len <= bus->o.slot_payload) {
      if (j > i) {
        next = rill_hash_reduce(rill_hash64(iov[j].data, iov[j].len), bus->o.shards);
        if (next != shard)
          break;
      }
      j++;
    }
    rill_ring_spsc_t *r = p->rings[shard];
    size_t k = i;
    if (bus->o.policy != RILL_BUS_SAMPLE) {
      k += push_run(bus, shard, r, iov + i, j - i, ts);
      __atomic_store_n(&p->c.ingested, p->c.ingested + (k - i), __ATOMIC_RELAXED);
    }
    /* What did not fit (or every event under SAMPLE) takes the one-event
     * path and its policy. */
    for (; k < j; k++) {
      rc = publish_to(p, shard, iov[k].data, iov[k].len);
      if (rc) {
        i = k;
        goto out;
      }
    }
    if (j < n && iov[j].len > bus->o.slot_payload) {
      /* Over the slot: alone, copied into a buf and sent by reference
       * (publish_to). Its shard is known when it started the run. */
      uint32_t big =
          j == i ? shard : rill_hash_reduce(rill_hash64(iov[j].data, iov[j].len), bus->o.shards);
      i = j;
      rc = publish_to(p, big, iov[j].data, iov[j].len);
      if (rc)
        goto out;
      j++;
      if (j < n)
        next = rill_hash_reduce(rill_hash64(iov[j].data, iov[j].len), bus->o.shards);
    }
    i = j;
    shard = next;
  }
out:
  if (done)
    *done = i;
  return rc;
}

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
