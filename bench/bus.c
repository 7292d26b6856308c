/*
 * rill bench bus: the sharded event bus against ZeroMQ inproc PUSH/PULL
 * (libzmq) in the same process run, with the same 64-byte events.
 *
 * rill's bus: 4 shards, 1 worker, RILL_BUS_BLOCK (no event is lost), the
 * counting sink, the library's defaults for everything else (rings of 4096
 * slots of up to 120 bytes per producer and shard). Events carry a running
 * counter in their first 8 bytes, so xxh3 spreads them over the shards.
 *
 * ZeroMQ: one context, a PULL socket bound on inproc:// and PUSH sockets
 * connected to it; one zmq_send of 64 bytes per event, one zmq_recv per
 * event in the puller, which counts messages and bytes as the counting
 * sink does. ZMQ_SNDHWM and ZMQ_RCVHWM are raised to ZMQ_HWM (see there).
 * Where rill publishes batches, ZeroMQ is shown both ways:
 * "zmq_packed64" packs the same batch of 64 events into one message, as a
 * user batching over ZeroMQ does (one zmq_send of the 4 KiB the events
 * were written into; one zmq_msg_recv, then the puller walks the message
 * and consumes every event: counts it, its bytes, and reads its counter),
 * on a socket pair of its own whose high-water marks hold as many events
 * as ZMQ_HWM messages do; "zmq_unbatched" is the one-message-per-event
 * loop of e2e_1p. Packing, like rill's batch call, holds the first event
 * of a batch back until the 64th is written: both trade latency for
 * throughput alike, and the one-at-a-time cases show the latency.
 *
 * CPUs: producers and pushers run on CPU 0 (the second of two producers on
 * CPU 1); the bus's worker and the puller on CPU 1. The worker inherits
 * the CPU of the thread that creates the bus, which is why the suite pins
 * itself to CPU 1 before creating it.
 *
 * - e2e_1p: one producer publishes N events one at a time; the clock runs
 *   from the start until the sink has counted all N (consumed, not just
 *   enqueued) or the puller has received all N.
 * - e2e_batch: rill_bus_publish_batch, 64 events a call, timed the same
 *   way; ZeroMQ packed 64 events a message, and one message an event.
 *   "rill_bus_key" publishes each batch as one stream's, with
 *   rill_bus_publish_batch_key (one key a batch, so no hash an event: the
 *   batch goes to one shard, as a packed ZeroMQ message goes down one
 *   pipe), on a bus whose slots are sized to the 64-byte events.
 * - burst_batch: the batch API into the rings: bursts of 8192 events, 64
 *   a call (zmq: 64 a message, or one message an event), timed while
 *   publishing only, each burst meeting empty rings (zmq: an empty pipe)
 *   while the worker (the puller) drains on the other CPU. e2e_batch is
 *   the same API sustained and consumed.
 * - ingest_lat: each publish (or zmq_send) timed alone, while the worker
 *   (or the puller) drains on the other CPU; publishing does not wait for
 *   anything but room, so the tail shows when the rings were full.
 * - e2e_2p: two producers (two PUSH sockets into one PULL for ZeroMQ),
 *   N events in all, timed until the last one is consumed.
 *
 * The bus and the sockets are created once for the suite (the second
 * producer and PUSH socket at the first e2e_2p run), outside every clock;
 * the next run starts only after the previous one drained.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bench.h"
#include "rill/bus.h"

#define EV     64u /* event bytes */
#define BATCH  64u /* events per rill_bus_publish_batch */
#define SHARDS 4u
#define NPROD  2u
/* ZeroMQ's default high-water marks (1000 messages each side) leave its
 * pipe a small fraction of the 16,384 events one rill producer's rings
 * hold; a throughput user raises them, and at 8192 each side the inproc
 * pipe (the two marks added) holds what rill's rings do. */
#define ZMQ_HWM 8192

typedef enum { RILL, ZMQ } impl_k;

typedef struct bus_set {
  impl_k k;
  bool packed; /* zmq: BATCH events a message where rill publishes batches */
  bool keyed;  /* rill: a batch's events share a key (rill_bus_publish_batch_key) */
  /* rill */
  rill_bus_t *bus;
  rill_bus_producer_t *p[NPROD];
  rill_bus_counters_t *cnt;
  uint64_t sent; /* events published since create: what the sink must reach */
  /* zmq */
  void *zctx, *pull, *push[NPROD];
  const char *endpoint;
  int hwm; /* messages, each side */
  /* Both: the next event's counter, so no two events are alike. */
  uint64_t seq;
} bus_set_t;

typedef struct run {
  bus_set_t *bs;
  uint64_t n;          /* events in all */
  uint64_t base;       /* the first event's counter */
  int nprod;           /* producer threads */
  bench_barrier_t bar; /* the start barrier */
  _Atomic uint32_t id; /* producer ids */
  bool batch;
  uint64_t t0, t1;
} run_t;

/* An event: its counter, then filler. The counter is what the hash sees
 * change; the filler makes it the full 64 bytes. */
static inline void ev_fill(uint8_t *e, uint64_t v) {
  memcpy(e, &v, 8);
  memset(e + 8, 0x5a, EV - 8);
}

static void zmq_die(const char *what) { bench_die("%s: %s", what, zmq_strerror(zmq_errno())); }

static inline void zsend(void *sock, const uint8_t *e) {
  while (RILL_UNLIKELY(zmq_send(sock, e, EV, 0) != (int)EV))
    if (zmq_errno() != EINTR)
      zmq_die("zmq_send");
}

/* A batch packed into one message: the events, back to back. */
static inline void zsend_packed(void *sock, const uint8_t *e, size_t n) {
  while (RILL_UNLIKELY(zmq_send(sock, e, n * EV, 0) != (int)(n * EV)))
    if (zmq_errno() != EINTR)
      zmq_die("zmq_send");
}

static inline void rsend(rill_bus_producer_t *p, const uint8_t *e) {
  int rc = rill_bus_publish(p, e, EV);
  if (RILL_UNLIKELY(rc != 0))
    bench_die("rill_bus_publish: %s", rill_strerror(rc));
}

/* ---- end to end: producers, the sink or the puller ------------------------ */

static void publish_one_by_one(run_t *x, uint32_t id, uint64_t first, uint64_t n) {
  bus_set_t *bs = x->bs;
  uint8_t e[EV];
  ev_fill(e, 0);
  for (uint64_t i = 0; i < n; i++) {
    uint64_t v = first + i;
    memcpy(e, &v, 8);
    if (bs->k == RILL)
      rsend(bs->p[id], e);
    else
      zsend(bs->push[id], e);
  }
}

static void publish_batched(run_t *x, uint32_t id, uint64_t first, uint64_t n) {
  bus_set_t *bs = x->bs;
  /* Back to back, as a user packing for ZeroMQ writes them. */
  uint8_t e[BATCH][EV];
  rill_iov_t iov[BATCH];
  for (uint32_t j = 0; j < BATCH; j++) {
    ev_fill(e[j], 0);
    iov[j] = (rill_iov_t){e[j], EV};
  }
  for (uint64_t i = 0; i < n;) {
    uint64_t want = n - i < BATCH ? n - i : BATCH;
    for (uint64_t j = 0; j < want; j++) {
      uint64_t v = first + i + j;
      memcpy(e[j], &v, 8);
    }
    if (bs->k == RILL) {
      size_t done = 0;
      /* Keyed: the batch is one stream's; batch by batch the streams take turns. */
      int rc = bs->keyed
                   ? rill_bus_publish_batch_key(bs->p[id], (first + i) / BATCH, iov, want, &done)
                   : rill_bus_publish_batch(bs->p[id], iov, want, &done);
      if (RILL_UNLIKELY(rc != 0 || done != want))
        bench_die("rill_bus_publish_batch: %s (%zu of %" PRIu64 " done)", rill_strerror(rc), done,
                  want);
    } else if (bs->packed) {
      zsend_packed(bs->push[id], e[0], want);
    } else {
      for (uint64_t j = 0; j < want; j++)
        zsend(bs->push[id], e[j]);
    }
    i += want;
  }
}

/* The counting sink's total, read while the worker adds to it. */
static inline uint64_t sink_events(const bus_set_t *bs) {
  return __atomic_load_n(&bs->cnt->events, __ATOMIC_RELAXED);
}

static void *producer(void *arg) {
  run_t *x = arg;
  bus_set_t *bs = x->bs;
  uint32_t id = atomic_fetch_add(&x->id, 1);
  /* Producer i takes events [base + i*share, ...): each its own range. */
  uint64_t share = x->n / (uint64_t)x->nprod;
  uint64_t n = id + 1 == (uint32_t)x->nprod ? x->n - share * id : share;
  bench_barrier_wait(&x->bar, (int)id);
  if (id == 0)
    x->t0 = rill_time_ns();
  if (x->batch)
    publish_batched(x, id, x->base + share * id, n);
  else
    publish_one_by_one(x, id, x->base + share * id, n);
  /* rill's clock stops when the sink has counted every event; producer 0,
   * alone on CPU 0, watches for it (the other leaves CPU 1 to the worker). */
  if (bs->k == RILL && id == 0) {
    unsigned spins = 0;
    while (sink_events(bs) < bs->sent)
      bench_wait_step(&x->bar, &spins);
    x->t1 = rill_time_ns();
  }
  return NULL;
}

/* Receives n messages of EV bytes, as the counting sink counts them. */
static uint64_t pull_n(void *pull, uint64_t n) {
  uint8_t buf[EV * 2];
  uint64_t bytes = 0;
  for (uint64_t i = 0; i < n; i++) {
    int got;
    while (RILL_UNLIKELY((got = zmq_recv(pull, buf, sizeof buf, 0)) < 0))
      if (zmq_errno() != EINTR)
        zmq_die("zmq_recv");
    if (RILL_UNLIKELY(got != (int)EV))
      bench_die("zmq: a message of %d bytes, not %u", got, EV);
    bytes += (uint64_t)got;
  }
  return bytes;
}

/* Receives packed messages until n events have come, and consumes each
 * event: counts it and its bytes, as the counting sink does, and reads its
 * counter, as a consumer reads what it unpacks. Publishes the running
 * count to *got when got is not NULL. */
static uint64_t pull_packed(void *pull, uint64_t n, _Atomic uint64_t *got) {
  uint64_t events = 0, bytes = 0, sum = 0;
  zmq_msg_t m;
  zmq_msg_init(&m);
  while (events < n) {
    while (RILL_UNLIKELY(zmq_msg_recv(&m, pull, 0) < 0))
      if (zmq_errno() != EINTR)
        zmq_die("zmq_msg_recv");
    const uint8_t *d = zmq_msg_data(&m);
    size_t len = zmq_msg_size(&m);
    if (RILL_UNLIKELY(len == 0 || len % EV != 0 || len > BATCH * EV))
      bench_die("zmq: a packed message of %zu bytes", len);
    for (size_t off = 0; off < len; off += EV) {
      uint64_t v;
      memcpy(&v, d + off, 8);
      sum += v;
      events++;
      bytes += EV;
    }
    if (got)
      atomic_store_explicit(got, events, memory_order_release);
  }
  zmq_msg_close(&m);
  if (RILL_UNLIKELY(events != n))
    bench_die("zmq: %" PRIu64 " events received, not %" PRIu64, events, n);
  bench_black_box((void *)(uintptr_t)sum);
  return bytes;
}

static void *puller(void *arg) {
  run_t *x = arg;
  bench_barrier_wait(&x->bar, 1);
  void *pull = x->bs->pull;
  bench_black_box(
      (void *)(uintptr_t)(x->bs->packed ? pull_packed(pull, x->n, NULL) : pull_n(pull, x->n)));
  x->t1 = rill_time_ns();
  return NULL;
}

/* The second producer (or PUSH socket) exists only from the first e2e_2p
 * run on, so the one-producer cases drain one producer's rings, as a bus
 * with one producer does. Opened outside the clock; the first run at any
 * count is calibration, which the harness does not keep. */
static void second_open(bus_set_t *bs) {
  int rc;
  if (bs->k == RILL && !bs->p[1] && (rc = rill_bus_producer_create(&bs->p[1], bs->bus)) != 0)
    bench_die("rill_bus_producer_create: %s", rill_strerror(rc));
  if (bs->k == ZMQ && !bs->push[1]) {
    if (!(bs->push[1] = zmq_socket(bs->zctx, ZMQ_PUSH)) ||
        zmq_setsockopt(bs->push[1], ZMQ_SNDHWM, &bs->hwm, sizeof bs->hwm) != 0 ||
        zmq_connect(bs->push[1], bs->endpoint) != 0)
      zmq_die("zmq_connect");
  }
}

/* Thread start and join stay outside the clock. */
static uint64_t e2e(void *arg, uint64_t n, int nprod, bool batch) {
  bus_set_t *bs = arg;
  if (n < (uint64_t)nprod)
    n = (uint64_t)nprod;
  run_t x = {.bs = bs, .n = n, .base = bs->seq, .nprod = nprod, .batch = batch};
  bs->seq += n;
  bool pulls = bs->k == ZMQ;
  bench_barrier_init(&x.bar, nprod + pulls, bench_ncpu() < 2 || nprod > 1);
  atomic_init(&x.id, 0);
  if (bs->k == RILL)
    bs->sent += n;
  if (nprod > 1)
    second_open(bs);
  pthread_t t[NPROD + 1];
  if (pulls && pthread_create(&t[nprod], NULL, puller, &x) != 0)
    bench_die("pthread_create failed");
  for (int i = 0; i < nprod; i++)
    if (pthread_create(&t[i], NULL, producer, &x) != 0)
      bench_die("pthread_create failed");
  for (int i = 0; i < nprod + pulls; i++)
    pthread_join(t[i], NULL);
  return x.t1 - x.t0;
}

static uint64_t e2e_1p(void *a, uint64_t n) { return e2e(a, n, 1, false); }
static uint64_t e2e_batch(void *a, uint64_t n) { return e2e(a, n, 1, true); }
static uint64_t e2e_2p(void *a, uint64_t n) { return e2e(a, n, 2, false); }

/* ---- ingest latency --------------------------------------------------------- */

typedef struct lat_pull {
  void *pull;
  uint64_t n;
} lat_pull_t;

static void *lat_puller(void *arg) {
  lat_pull_t *lp = arg;
  bench_pin_cpu(1);
  pull_n(lp->pull, lp->n);
  return NULL;
}

static void lat_run(void *arg, uint64_t iters, rill_hist_t *h) {
  bus_set_t *bs = arg;
  /* The worker (or the puller) is on CPU 1; the publisher takes CPU 0. */
  bench_pin_cpu(0);
  lat_pull_t lp = {bs->pull, iters};
  pthread_t t;
  if (bs->k == ZMQ && pthread_create(&t, NULL, lat_puller, &lp) != 0)
    bench_die("pthread_create failed");
  uint8_t e[EV];
  ev_fill(e, 0);
  for (uint64_t i = 0; i < iters; i++) {
    uint64_t v = bs->seq++;
    memcpy(e, &v, 8);
    uint64_t t0 = rill_time_ns();
    if (bs->k == RILL)
      rsend(bs->p[0], e);
    else
      zsend(bs->push[0], e);
    rill_hist_record(h, rill_time_ns() - t0);
  }
  if (bs->k == ZMQ) {
    pthread_join(t, NULL);
  } else {
    /* Drained before the next run, so no run starts with full rings. */
    bs->sent += iters;
    while (sink_events(bs) < bs->sent)
      sched_yield();
  }
  bench_unpin();
}

/* ---- bursts into the rings ---------------------------------------------------- */

/* A burst fits in what the rings (or zmq's pipe) hold with room to spare:
 * 4 shards of 4096 slots, 8192 + 8192 messages. */
#define BURST 8192u

typedef struct burst_pull {
  void *pull;
  bool packed;
  uint64_t n;
  _Atomic uint64_t got; /* events */
} burst_pull_t;

static void *burst_puller(void *arg) {
  burst_pull_t *bp = arg;
  bench_pin_cpu(1);
  if (bp->packed) {
    pull_packed(bp->pull, bp->n, &bp->got);
    return NULL;
  }
  uint8_t buf[EV * 2];
  for (uint64_t i = 0; i < bp->n; i++) {
    while (zmq_recv(bp->pull, buf, sizeof buf, 0) < 0)
      if (zmq_errno() != EINTR)
        zmq_die("zmq_recv");
    atomic_store_explicit(&bp->got, i + 1, memory_order_release);
  }
  return NULL;
}

/* The batch API into the rings: bursts of BURST events published 64 a
 * call while the worker (or the puller) drains on the other CPU; the
 * clock runs only while publishing, and each burst starts once the last
 * one was consumed, so it meets empty rings as a microburst would. */
static uint64_t burst_batch(void *arg, uint64_t n) {
  bus_set_t *bs = arg;
  bench_pin_cpu(0);
  burst_pull_t bp = {.pull = bs->pull, .packed = bs->packed, .n = n};
  atomic_init(&bp.got, 0);
  pthread_t t;
  if (bs->k == ZMQ && pthread_create(&t, NULL, burst_puller, &bp) != 0)
    bench_die("pthread_create failed");
  run_t x = {.bs = bs};
  uint64_t timed = 0;
  for (uint64_t i = 0; i < n;) {
    uint64_t m = n - i < BURST ? n - i : BURST;
    uint64_t t0 = rill_time_ns();
    publish_batched(&x, 0, bs->seq, m);
    timed += rill_time_ns() - t0;
    bs->seq += m;
    i += m;
    if (bs->k == RILL) {
      bs->sent += m;
      while (sink_events(bs) < bs->sent)
        sched_yield();
    } else {
      while (atomic_load_explicit(&bp.got, memory_order_acquire) < i)
        sched_yield();
    }
  }
  if (bs->k == ZMQ)
    pthread_join(t, NULL);
  bench_unpin();
  return timed;
}

/* ---- setup and goals ---------------------------------------------------------- */

static void set_init(bus_set_t *bs, impl_k k, bool packed, bool keyed) {
  memset(bs, 0, sizeof *bs);
  bs->k = k;
  bs->packed = packed;
  bs->keyed = keyed;
  if (k == RILL) {
    static rill_bus_counters_t cnts[2];
    static rill_bus_sink_t sinks[2];
    rill_bus_sink_t *sink = &sinks[keyed];
    rill_bus_sink_counting(sink, &cnts[keyed]);
    bs->cnt = &cnts[keyed];
    rill_bus_opts_t o = {.shards = SHARDS, .workers = 1, .policy = RILL_BUS_BLOCK, .sink = sink};
    /* Keyed, the bus is also sized to its events, as a user who knows
     * them sets it up: a 64-byte slot payload rather than the default
     * 120, so a slot takes 80 bytes rather than 136. */
    if (keyed)
      o.slot_payload = EV;
    int rc = rill_bus_create(&bs->bus, &o);
    if (rc != 0)
      bench_die("rill_bus_create: %s: %s", rill_strerror(rc), rill_errmsg());
    if ((rc = rill_bus_producer_create(&bs->p[0], bs->bus)) != 0)
      bench_die("rill_bus_producer_create: %s", rill_strerror(rc));
    return;
  }
  /* Packed, a message is BATCH events: the same events fill the pipe. */
  bs->hwm = packed ? ZMQ_HWM / (int)BATCH : ZMQ_HWM;
  bs->endpoint = packed ? "inproc://rill-bench-bus-packed" : "inproc://rill-bench-bus";
  if (!(bs->zctx = zmq_ctx_new()) || !(bs->pull = zmq_socket(bs->zctx, ZMQ_PULL)))
    zmq_die("zmq_socket");
  if (zmq_setsockopt(bs->pull, ZMQ_RCVHWM, &bs->hwm, sizeof bs->hwm) != 0 ||
      zmq_bind(bs->pull, bs->endpoint) != 0)
    zmq_die("zmq_bind");
  if (!(bs->push[0] = zmq_socket(bs->zctx, ZMQ_PUSH)) ||
      zmq_setsockopt(bs->push[0], ZMQ_SNDHWM, &bs->hwm, sizeof bs->hwm) != 0 ||
      zmq_connect(bs->push[0], bs->endpoint) != 0)
    zmq_die("zmq_connect");
}

static void set_fini(bench_ctx_t *b, bus_set_t *bs) {
  if (bs->k == ZMQ) {
    int linger = 0;
    for (unsigned i = 0; i < NPROD && bs->push[i]; i++) {
      zmq_setsockopt(bs->push[i], ZMQ_LINGER, &linger, sizeof linger);
      zmq_close(bs->push[i]);
    }
    zmq_close(bs->pull);
    zmq_ctx_term(bs->zctx);
    return;
  }
  for (unsigned i = 0; i < NPROD; i++)
    rill_bus_producer_destroy(bs->p[i]);
  uint64_t left = 0;
  int rc = rill_bus_shutdown(bs->bus, 1000000000ull, &left);
  const rill_bus_counters_t *c = bs->cnt;
  if (rc != 0 || c->events != bs->sent || c->bytes != bs->sent * EV)
    bench_die("bus: close %s, %" PRIu64 " left; the sink counted %" PRIu64 " events and %" PRIu64
              " bytes of %" PRIu64 " published",
              rill_strerror(rc), left, c->events, c->bytes, bs->sent);
  char spread[128] = "";
  for (unsigned s = 0, at = 0; s < SHARDS && at < sizeof spread; s++)
    at += (unsigned)snprintf(spread + at, sizeof spread - at, "%s%.1f%%", s ? " " : "",
                             100.0 * (double)c->shard_events[s] / (double)c->events);
  bench_note(b, "rill: the sink counted all %" PRIu64 " events, per shard %s", c->events, spread);
  rill_bus_destroy(bs->bus);
}

static void goal_rate(bench_ctx_t *b, const char *what, const char *c, double limit) {
  if (bench_want(b, c))
    bench_goal(b, what, bench_rate_m(b, c, EV, "rill_bus"), true, limit, "M/s");
}

static void goal_zmq(bench_ctx_t *b, const char *what, const char *c, const char *zmq,
                     const char *rill, double limit) {
  if (bench_want(b, c))
    bench_goal(b, what, bench_ratio(b, c, EV, zmq, rill), true, limit, "x");
}

static int bus_run(bench_ctx_t *b) {
  static bus_set_t r, rk, z, zp;
  /* Every thread of a case is pinned by the case or by its set-up, the
   * same CPUs for rill and ZeroMQ (see the top). */
  bench_set_pin(b, BENCH_PIN_OWN);
  /* The bus's worker starts on this thread's CPU: CPU 1 (see the top). */
  if (bench_pin_cpu(1) != 0 || bench_ncpu() < 2)
    bench_note(b, "fewer than two CPUs: producers, worker and puller take turns on one");
  set_init(&r, RILL, false, false);
  set_init(&rk, RILL, false, true);
  set_init(&z, ZMQ, false, false);
  set_init(&zp, ZMQ, true, false);
  bench_note(b,
             "rill: %u shards, 1 worker, RILL_BUS_BLOCK, counting sink; zmq %d.%d.%d inproc "
             "PUSH/PULL, SNDHWM = RCVHWM = %d",
             SHARDS, ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH, ZMQ_HWM);
  bench_note(b,
             "batch cases: zmq_packed64 packs %u events a message (SNDHWM = RCVHWM = %d "
             "messages), the puller unpacks and consumes each; zmq_unbatched sends one "
             "message an event",
             BATCH, zp.hwm);
  bench_note(b,
             "batch cases: rill_bus_key publishes each batch with rill_bus_publish_batch_key "
             "(one key a batch, no hash an event) on a bus of %u-byte slot payloads",
             (unsigned)EV);
  const bench_impl_t one[] = {{.name = "rill_bus", .run_timed = e2e_1p, .arg = &r},
                              {.name = "zmq_inproc", .run_timed = e2e_1p, .arg = &z}};
  const bench_impl_t batch[] = {{.name = "rill_bus", .run_timed = e2e_batch, .arg = &r},
                                {.name = "rill_bus_key", .run_timed = e2e_batch, .arg = &rk},
                                {.name = "zmq_packed64", .run_timed = e2e_batch, .arg = &zp},
                                {.name = "zmq_unbatched", .run_timed = e2e_batch, .arg = &z}};
  const bench_impl_t burst[] = {{.name = "rill_bus", .run_timed = burst_batch, .arg = &r},
                                {.name = "rill_bus_key", .run_timed = burst_batch, .arg = &rk},
                                {.name = "zmq_packed64", .run_timed = burst_batch, .arg = &zp},
                                {.name = "zmq_unbatched", .run_timed = burst_batch, .arg = &z}};
  const bench_impl_t lat[] = {{.name = "rill_bus", .run_lat = lat_run, .arg = &r},
                              {.name = "zmq_inproc", .run_lat = lat_run, .arg = &z}};
  const bench_impl_t two[] = {{.name = "rill_bus", .run_timed = e2e_2p, .arg = &r},
                              {.name = "zmq_inproc", .run_timed = e2e_2p, .arg = &z}};
  bench_run(b, &(bench_case_t){"e2e_1p", EV, 1, one, 2});
  bench_run(b, &(bench_case_t){"e2e_batch", EV, 1, batch, 4});
  bench_run(b, &(bench_case_t){"burst_batch", EV, 1, burst, 4});
  bench_run(b, &(bench_case_t){"ingest_lat", EV, 1, lat, 2});
  bench_run(b, &(bench_case_t){"e2e_2p", EV, 1, two, 2});

  goal_rate(b, "1 producer, 64 B, end to end into the counting sink", "e2e_1p", 25);
  goal_rate(b, "batch publish, 64 B, into the rings (bursts)", "burst_batch", 100);
  bench_goal(b, "ingest latency p99", bench_result_q(b, "ingest_lat", EV, "rill_bus", 99), false,
             250, " ns");
  bench_goal(b, "ingest latency p99.9", bench_result_q(b, "ingest_lat", EV, "rill_bus", 999), false,
             1000, " ns");
  goal_zmq(b, "1 producer end to end vs zmq inproc", "e2e_1p", "zmq_inproc", "rill_bus", 5.0);
  goal_zmq(b, "batch end to end vs zmq packing 64 a message", "e2e_batch", "zmq_packed64",
           "rill_bus", 2.0);
  goal_zmq(b, "keyed batch end to end vs zmq packing 64 a message", "e2e_batch", "zmq_packed64",
           "rill_bus_key", 2.0);
  goal_zmq(b, "batch into the rings vs zmq packing 64 a message", "burst_batch", "zmq_packed64",
           "rill_bus", 2.0);
  goal_zmq(b, "keyed batch into the rings vs zmq packing 64 a message", "burst_batch",
           "zmq_packed64", "rill_bus_key", 2.0);
  goal_zmq(b, "2 producers end to end vs zmq inproc", "e2e_2p", "zmq_inproc", "rill_bus", 5.0);
  set_fini(b, &r);
  set_fini(b, &rk);
  set_fini(b, &z);
  set_fini(b, &zp);
  return 0;
}

const bench_suite_t bench_suite_bus = {
    .name = "bus",
    .about = "the sharded event bus, 64-byte events end to end, vs ZeroMQ inproc PUSH/PULL "
             "(batches packed 64 a message, and one message an event)",
    .run = bus_run,
};
