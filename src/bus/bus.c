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
 * Retirement. rill_bus_producer_close stores `closed` with release after
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
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "rill/bus.h"
#include "rill/ring.h"

#define SLOT_HDR 16u

struct slot_hdr {
  uint64_t ts;
  uint32_t len;
  uint32_t zero;
};

/* Written only by the producer thread; on their own cache lines. */
struct prod_counters {
  uint64_t ingested;
  uint64_t dropped_newest;
  uint64_t dropped_sampled;
  uint64_t failed_full;
  uint64_t blocked_timeouts;
  uint64_t sample_ctr; /* events seen in the current stretch of pressure */
} __attribute__((aligned(64)));

struct rill_bus_producer {
  struct prod_counters c; /* first: the producer's hot line */
  rill_bus_t *bus;
  rill_ring_spsc_t **rings; /* one per shard */
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
  bool *closed_seen;
  size_t nprods, cap;
  uint64_t gen_seen, max_seq;
  rill_event_t *ev;
};

struct rill_bus {
  rill_bus_opts_t o;
  rill_sink_t sink;
  uint32_t slot_size;
  uint64_t *shard_seq; /* next seq per shard; written by its worker only */
  struct worker *w;
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

static void counting_batch(void *ctx, const rill_event_t *ev, size_t n) {
  rill_sink_counters_t *c = ctx;
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
  __atomic_fetch_add(&((rill_sink_counters_t *)ctx)->flushes, 1, __ATOMIC_RELAXED);
}

static void counting_close(void *ctx) {
  __atomic_fetch_add(&((rill_sink_counters_t *)ctx)->closes, 1, __ATOMIC_RELAXED);
}

void rill_sink_counting(rill_sink_t *sink, rill_sink_counters_t *c) {
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

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static inline void cnt_inc(uint64_t *c) {
  __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

static void producer_free(rill_bus_producer_t *p) {
  for (uint32_t s = 0; s < p->bus->o.shards; s++)
    rill_ring_spsc_destroy(p->rings[s]);
  rill__free(p->rings);
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

/* One batch for shard s from every producer's ring. Returns the events
 * delivered; *held says a short batch was left waiting for more. */
static size_t worker_shard(struct worker *w, uint32_t s, bool stopping, bool *held) {
  rill_bus_t *bus = w->bus;
  size_t n = 0, max = bus->o.batch_max;
  for (size_t i = 0; i < w->nprods; i++) {
    w->take[i] = 0;
    if (n == max)
      continue;
    size_t got = 0;
    const uint8_t *sl = rill_ring_spsc_peek(w->prods[i]->rings[s], max - n, &got);
    for (size_t j = 0; j < got; j++, sl += bus->slot_size) {
      const struct slot_hdr *h = (const void *)sl;
      w->ev[n++] = (rill_event_t){sl + SLOT_HDR, h->len, s, 0, h->ts};
    }
    w->take[i] = got;
  }
  if (n == 0)
    return 0;
  if (n < bus->o.batch_min && !stopping && rill_time_ns() - w->ev[0].ts_ns < bus->o.max_delay_ns) {
    *held = true; /* peeked, not released: the next pass sees them again */
    return 0;
  }
  uint64_t seq = bus->shard_seq[s];
  for (size_t i = 0; i < n; i++)
    w->ev[i].seq = seq++;
  bus->shard_seq[s] = seq;
  bus->sink.on_batch(bus->sink.ctx, w->ev, n);
  for (size_t i = 0; i < w->nprods; i++)
    if (w->take[i])
      rill_ring_spsc_release(w->prods[i]->rings[s], w->take[i]);
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
    for (uint32_t s = w->idx; s < bus->o.shards; s += bus->o.workers)
      did += worker_shard(w, s, stopping, &held);
    worker_retire(w);
    if (did) {
      idle = 0;
      continue;
    }
    if (stopping && !held)
      break;
    if (++idle < 64)
      cpu_relax();
    else
      nap(held ? 10000 : 20000);
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
  if (o->shards > RILL_BUS_MAX_SHARDS)
    return rill__err(RILL_EINVAL, "bus: shards %u not in 1..%u", o->shards, RILL_BUS_MAX_SHARDS);
  if (!RILL__IS_POW2(o->ring_slots) || o->ring_slots < 2)
    return rill__err(RILL_EINVAL, "bus: ring_slots %u is not a power of two >= 2", o->ring_slots);
  if (o->slot_payload > RILL_RING_SPSC_MAX_SLOT_SIZE - SLOT_HDR)
    return rill__err(RILL_EINVAL, "bus: slot_payload %u over %u", o->slot_payload,
                     RILL_RING_SPSC_MAX_SLOT_SIZE - SLOT_HDR);
  if ((unsigned)o->policy > RILL_BUS_SAMPLE)
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
  bus->slot_size = SLOT_HDR + RILL__ALIGN_UP(o.slot_payload, 8u);
  rc = RILL_ENOMEM;
  bus->shard_seq = rill__calloc(o.shards, sizeof *bus->shard_seq);
  if (!bus->shard_seq)
    goto undo_bus;
  bus->w = rill__aligned(64, RILL__ALIGN_UP(o.workers * sizeof *bus->w, (size_t)64));
  if (!bus->w)
    goto undo_seq;
  memset(bus->w, 0, o.workers * sizeof *bus->w);
  for (uint32_t i = 0; i < o.workers; i++) {
    bus->w[i].bus = bus;
    bus->w[i].idx = i;
    bus->w[i].ev = rill__malloc(o.batch_max * sizeof(rill_event_t));
    if (!bus->w[i].ev)
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
  for (uint32_t i = 0; i < o.workers; i++)
    if (bus->w[i].started)
      pthread_join(bus->w[i].tid, NULL);
  pthread_mutex_destroy(&bus->lock);
undo_workers:
  for (uint32_t i = 0; i < o.workers; i++) {
    rill__free(bus->w[i].ev);
    rill__free(bus->w[i].prods);
    rill__free(bus->w[i].take);
    rill__free(bus->w[i].closed_seen);
  }
  rill__free(bus->w);
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

int rill_bus_close(rill_bus_t *bus, uint64_t timeout_ns, uint64_t *left) {
  if (left)
    *left = 0;
  if (!bus)
    return rill__err(RILL_EINVAL, "bus: NULL bus");
  if (__atomic_exchange_n(&bus->closed_done, 1, __ATOMIC_ACQ_REL))
    return rill__err(RILL_ECLOSED, "bus: closed twice");
  /* Release: pairs with the workers' acquire; see worker_main. */
  __atomic_store_n(&bus->stop, 1, __ATOMIC_RELEASE);
  uint64_t deadline = rill_time_ns() + timeout_ns;
  /* Wait for the workers to finish draining, up to the deadline; then tell
   * the rest to stop after their current batch. */
  for (uint32_t i = 0; i < bus->o.workers; i++) {
    if (!bus->w[i].started)
      continue;
    bool done = false;
    while (!done && !__atomic_load_n(&bus->abort, __ATOMIC_RELAXED)) {
      done = pthread_tryjoin_np(bus->w[i].tid, NULL) == 0;
      if (!done && rill_time_ns() >= deadline)
        __atomic_store_n(&bus->abort, 1, __ATOMIC_RELEASE);
      else if (!done)
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
    return rill__err(RILL_ETIMEDOUT, "bus: close left %llu events undelivered",
                     (unsigned long long)n);
  return 0;
}

void rill_bus_destroy(rill_bus_t *bus) {
  if (!bus)
    return;
  if (!__atomic_load_n(&bus->closed_done, __ATOMIC_ACQUIRE))
    rill_bus_close(bus, 1000000000ull, NULL);
  while (bus->head)
    producer_retire_locked(bus, bus->head);
  pthread_mutex_destroy(&bus->lock);
  for (uint32_t i = 0; i < bus->o.workers; i++) {
    rill__free(bus->w[i].ev);
    rill__free(bus->w[i].prods);
    rill__free(bus->w[i].take);
    rill__free(bus->w[i].closed_seen);
  }
  rill__free(bus->w);
  rill__free(bus->shard_seq);
  rill__free(bus);
}

/* ---- producers --------------------------------------------------------- */

int rill_bus_producer_open(rill_bus_t *bus, rill_bus_producer_t **out) {
  if (!bus || !out)
    return rill__err(RILL_EINVAL, "bus: NULL bus or out");
  if (__atomic_load_n(&bus->stop, __ATOMIC_ACQUIRE))
    return rill__err(RILL_ECLOSED, "bus: producer_open after close");
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
  for (uint32_t s = 0; s < bus->o.shards; s++) {
    rc = rill_ring_spsc_create(&p->rings[s], bus->o.ring_slots, bus->slot_size);
    if (rc)
      goto undo_rings;
  }
  pthread_mutex_lock(&bus->lock);
  if (bus->joined) {
    pthread_mutex_unlock(&bus->lock);
    rc = rill__err(RILL_ECLOSED, "bus: producer_open after close");
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
  rill__free(p->rings);
undo_p:
  rill__free(p);
  if (rc == RILL_ENOMEM)
    rill__err(rc, "bus: no memory for a producer's rings");
  return rc;
}

void rill_bus_producer_close(rill_bus_producer_t *p) {
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
static int publish_full(rill_bus_producer_t *p, rill_ring_spsc_t *r, const void *data,
                        uint32_t len);

/* An event into a reserved slot: its header, then its payload inline. */
static inline void write_slot(uint8_t *sl, uint64_t ts, const void *data, uint32_t len) {
  struct slot_hdr h = {ts, len, 0};
  memcpy(sl, &h, sizeof h);
  if (len)
    memcpy(sl + SLOT_HDR, data, len);
}

static inline int push_slot(rill_ring_spsc_t *r, const void *data, uint32_t len) {
  size_t got;
  uint8_t *sl = rill_ring_spsc_reserve(r, 1, &got);
  if (RILL_UNLIKELY(!got))
    return RILL_EAGAIN;
  write_slot(sl, rill_time_ns(), data, len);
  rill_ring_spsc_commit(r, 1);
  return 0;
}

static int publish_to(rill_bus_producer_t *p, uint32_t shard, const void *data, uint32_t len) {
  rill_bus_t *bus = p->bus;
  if (RILL_UNLIKELY(len > bus->o.slot_payload))
    return rill__err(RILL_EMSGSIZE, "bus: payload %u over slot_payload %u", len,
                     bus->o.slot_payload);
  /* Relaxed: a flag that only stops ingest; close documents that
   * publishes must not race with it. */
  if (RILL_UNLIKELY(__atomic_load_n(&bus->stop, __ATOMIC_RELAXED)))
    return rill__err(RILL_ECLOSED, "bus: publish after close");
  rill_ring_spsc_t *r = p->rings[shard];
  if (RILL_UNLIKELY(bus->o.policy == RILL_BUS_SAMPLE)) {
    struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
    uint64_t q = (s->mask + 1) / 4;
    uint64_t tail = __atomic_load_n(&s->prod->tail, __ATOMIC_RELAXED);
    if (rill__ring_spsc_free(s, tail, q ? q : 1) < (q ? q : 1))
      return publish_full(p, r, data, len);
    p->c.sample_ctr = 0;
  }
  if (RILL_LIKELY(push_slot(r, data, len) == 0)) {
    cnt_inc(&p->c.ingested);
    return 0;
  }
  return publish_full(p, r, data, len);
}

static int publish_full(rill_bus_producer_t *p, rill_ring_spsc_t *r, const void *data,
                        uint32_t len) {
  rill_bus_t *bus = p->bus;
  switch (bus->o.policy) {
  case RILL_BUS_DROP_NEWEST:
    cnt_inc(&p->c.ingested);
    cnt_inc(&p->c.dropped_newest);
    return 0;
  case RILL_BUS_FAIL:
    cnt_inc(&p->c.ingested);
    cnt_inc(&p->c.failed_full);
    return rill__err(RILL_EFULL, "bus: ring full");
  case RILL_BUS_SAMPLE:
    cnt_inc(&p->c.ingested);
    if (p->c.sample_ctr++ % bus->o.sample_n != 0) {
      cnt_inc(&p->c.dropped_sampled);
      return 0;
    }
    if (push_slot(r, data, len) != 0)
      cnt_inc(&p->c.dropped_newest);
    return 0;
  case RILL_BUS_BLOCK:
  default: {
    uint64_t deadline = rill_time_ns() + bus->o.block_timeout_ns;
    for (unsigned spins = 0;; spins++) {
      if (push_slot(r, data, len) == 0) {
        cnt_inc(&p->c.ingested);
        return 0;
      }
      if (__atomic_load_n(&bus->abort, __ATOMIC_RELAXED) ||
          __atomic_load_n(&bus->joined, __ATOMIC_RELAXED))
        return rill__err(RILL_ECLOSED, "bus: closed while blocked");
      if (spins < 128) {
        cpu_relax();
        continue;
      }
      if (rill_time_ns() >= deadline) {
        cnt_inc(&p->c.ingested);
        cnt_inc(&p->c.blocked_timeouts);
        return rill__err(RILL_ETIMEDOUT, "bus: blocked past the timeout");
      }
      nap(20000);
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

/* Copies a run of events bound for one shard with one reserve and one
 * commit per contiguous stretch of free slots. Returns how many it pushed
 * (fewer when the ring filled up). */
static size_t push_run(rill_bus_t *bus, rill_ring_spsc_t *r, const rill_bus_iov_t *iov, size_t n,
                       uint64_t ts) {
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
  return pushed;
}

int rill_bus_publish_batch(rill_bus_producer_t *p, const rill_bus_iov_t *iov, size_t n,
                           size_t *done) {
  rill_bus_t *bus = p->bus;
  size_t i = 0;
  int rc = 0;
  if (RILL_UNLIKELY(__atomic_load_n(&bus->stop, __ATOMIC_RELAXED))) {
    rc = rill__err(RILL_ECLOSED, "bus: publish after close");
    goto out;
  }
  uint64_t ts = rill_time_ns();
  uint32_t shard = n ? rill_hash_reduce(rill_hash64(iov[0].data, iov[0].len), bus->o.shards) : 0;
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
      k += push_run(bus, r, iov + i, j - i, ts);
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
    i = j;
    if (j < n && iov[j].len > bus->o.slot_payload) {
      rc = rill__err(RILL_EMSGSIZE, "bus: payload %u over slot_payload %u", iov[j].len,
                     bus->o.slot_payload);
      goto out;
    }
    shard = next;
  }
out:
  if (done)
    *done = i;
  return rc;
}

/* ---- stats ------------------------------------------------------------- */

void rill_bus_stats(rill_bus_t *bus, rill_bus_stats_t *st) {
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
  for (rill_bus_producer_t *p = bus->head; p; p = p->next) {
    st->ingested += __atomic_load_n(&p->c.ingested, __ATOMIC_RELAXED);
    st->dropped_newest += __atomic_load_n(&p->c.dropped_newest, __ATOMIC_RELAXED);
    st->dropped_sampled += __atomic_load_n(&p->c.dropped_sampled, __ATOMIC_RELAXED);
    st->failed_full += __atomic_load_n(&p->c.failed_full, __ATOMIC_RELAXED);
    st->blocked_timeouts += __atomic_load_n(&p->c.blocked_timeouts, __ATOMIC_RELAXED);
    if (fill)
      for (uint32_t s = 0; s < bus->o.shards; s++)
        fill[s] += rill_ring_spsc_size(p->rings[s]);
  }
  pthread_mutex_unlock(&bus->lock);
}
