/*
 * rill bench ring: the rings against ck_ring (Concurrency Kit) in the same
 * process, every case across two cores (threads pinned to CPUs 0 and 1).
 *
 * - spsc_u64: 8-byte items one at a time; the clock runs from the start
 *   barrier until the consumer holds all N (consumed, not just enqueued).
 * - spsc_u64_batch32: the same items moved 32 at a time. ck_ring has no
 *   batch enqueue or dequeue (only one-at-a-time calls and a one-slot
 *   reserve/commit), so its row is its one-at-a-time loop over the batch.
 * - mpsc_2p: two producers, records of an 8-byte payload; ck's row is
 *   ck_ring_enqueue_mpsc / ck_ring_dequeue_mpsc of pointer-sized values.
 *   Two CPUs for three threads: producer i runs on CPU i and the consumer
 *   on CPU 1 beside producer 1, yielding whenever it finds nothing. (With
 *   both producers on one CPU, ck's producers, which publish in ticket
 *   order and spin without yielding while an earlier one is preempted,
 *   advanced one scheduler tick at a time and the case never finished.)
 * - spsc_pingpong: round trip of one 8-byte item over two rings (CPU 0 to
 *   CPU 1 and back), each sample one round trip.
 *
 * Every consumer checks each item's value, rill and ck alike, so neither
 * can skip the reads.
 */
#include <ck_ring.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "rill/ring.h"

#define SLOTS  1024u /* SPSC rings, both kinds */
#define BATCH  32u
#define MBYTES 65536u /* rill MPSC data bytes: 4096 records of 16 bytes, as ck's 4096 slots */
#define MSLOTS 4096u

typedef enum { RILL, CK } impl_k;

typedef struct ring_set {
  impl_k k;
  rill_ring_spsc_t *s, *s2; /* s2: the way back for ping-pong */
  rill_ring_mpsc_t *m;
  ck_ring_t ck, ck2, ckm;
  ck_ring_buffer_t *ckb, *ckb2, *ckmb;
} ring_set_t;

typedef struct run {
  ring_set_t *rs;
  uint64_t n;          /* items in all */
  bench_barrier_t bar; /* the start barrier */
  _Atomic uint32_t id; /* producer ids */
  uint64_t t0, t1;
} run_t;

/* ---- SPSC one at a time, and in batches -------------------------------- */

static void *spsc_prod(void *arg) {
  run_t *x = arg;
  ring_set_t *rs = x->rs;
  bench_barrier_wait(&x->bar, 0);
  for (uint64_t i = 0; i < x->n; i++) {
    unsigned spins = 0;
    if (rs->k == RILL)
      while (RILL_UNLIKELY(rill_ring_spsc_push_u64(rs->s, i) != 0))
        bench_wait_step(&x->bar, &spins);
    else
      while (RILL_UNLIKELY(!ck_ring_enqueue_spsc(&rs->ck, rs->ckb, (void *)(uintptr_t)i)))
        bench_wait_step(&x->bar, &spins);
  }
  return NULL;
}

static void *spsc_cons(void *arg) {
  run_t *x = arg;
  ring_set_t *rs = x->rs;
  bench_barrier_wait(&x->bar, 1);
  x->t0 = rill_time_ns();
  for (uint64_t i = 0; i < x->n; i++) {
    unsigned spins = 0;
    uint64_t v;
    if (rs->k == RILL) {
      while (RILL_UNLIKELY(rill_ring_spsc_pop_u64(rs->s, &v) != 0))
        bench_wait_step(&x->bar, &spins);
    } else {
      void *p;
      while (RILL_UNLIKELY(!ck_ring_dequeue_spsc(&rs->ck, rs->ckb, &p)))
        bench_wait_step(&x->bar, &spins);
      v = (uintptr_t)p;
    }
    if (RILL_UNLIKELY(v != i))
      bench_die("spsc: item %" PRIu64 " arrived as %" PRIu64, i, v);
  }
  x->t1 = rill_time_ns();
  return NULL;
}

static void *batch_prod(void *arg) {
  run_t *x = arg;
  ring_set_t *rs = x->rs;
  uint64_t b[BATCH];
  bench_barrier_wait(&x->bar, 0);
  for (uint64_t i = 0; i < x->n;) {
    uint64_t want = x->n - i < BATCH ? x->n - i : BATCH;
    for (uint64_t j = 0; j < want; j++)
      b[j] = i + j;
    unsigned spins = 0;
    for (uint64_t done = 0; done < want;) {
      size_t k;
      if (rs->k == RILL) {
        k = rill_ring_spsc_push_n(rs->s, b + done, want - done);
      } else {
        for (k = 0; done + k < want; k++)
          if (!ck_ring_enqueue_spsc(&rs->ck, rs->ckb, (void *)(uintptr_t)b[done + k]))
            break;
      }
      done += k;
      if (!k)
        bench_wait_step(&x->bar, &spins);
    }
    i += want;
  }
  return NULL;
}

static void *batch_cons(void *arg) {
  run_t *x = arg;
  ring_set_t *rs = x->rs;
  uint64_t b[BATCH];
  bench_barrier_wait(&x->bar, 1);
  x->t0 = rill_time_ns();
  unsigned spins = 0;
  for (uint64_t i = 0; i < x->n;) {
    size_t k;
    if (rs->k == RILL) {
      k = rill_ring_spsc_pop_n(rs->s, b, BATCH);
    } else {
      void *p;
      for (k = 0; k < BATCH && ck_ring_dequeue_spsc(&rs->ck, rs->ckb, &p); k++)
        b[k] = (uintptr_t)p;
    }
    if (!k) {
      bench_wait_step(&x->bar, &spins);
      continue;
    }
    for (size_t j = 0; j < k; j++)
      if (RILL_UNLIKELY(b[j] != i + j))
        bench_die("spsc batch: item %" PRIu64 " arrived as %" PRIu64, i + j, b[j]);
    i += k;
  }
  x->t1 = rill_time_ns();
  return NULL;
}

/* ---- MPSC, two producers ----------------------------------------------- */

static void *mpsc_prod(void *arg) {
  run_t *x = arg;
  ring_set_t *rs = x->rs;
  uint64_t id = atomic_fetch_add(&x->id, 1);
  uint64_t n = x->n / 2;
  bench_barrier_wait(&x->bar, (int)id);
  for (uint64_t i = 0; i < n; i++) {
    uint64_t v = id << 40 | i;
    unsigned spins = 0;
    if (rs->k == RILL) {
      void *p;
      int rc;
      while (RILL_UNLIKELY((rc = rill_ring_mpsc_reserve(rs->m, 8, 1, &p)) == RILL_EAGAIN))
        bench_wait_step(&x->bar, &spins);
      if (rc != 0)
        bench_die("mpsc claim: %s", rill_strerror(rc));
      memcpy(p, &v, 8);
      rill_ring_mpsc_commit(rs->m, p);
    } else {
      while (RILL_UNLIKELY(!ck_ring_enqueue_mpsc(&rs->ckm, rs->ckmb, (void *)(uintptr_t)v)))
        bench_wait_step(&x->bar, &spins);
    }
  }
  return NULL;
}

typedef struct mseen {
  uint64_t next[2];
  uint64_t got;
} mseen_t;

static inline void mpsc_check(mseen_t *s, uint64_t v) {
  uint64_t id = v >> 40, i = v & ((1ull << 40) - 1);
  if (RILL_UNLIKELY(id > 1 || s->next[id] != i))
    bench_die("mpsc: producer %" PRIu64 " item %" PRIu64 " out of order", id, i);
  s->next[id]++;
  s->got++;
}

static void mpsc_handler(void *ctx, int32_t type, const void *data, size_t len) {
  (void)type, (void)len;
  uint64_t v;
  memcpy(&v, data, 8);
  mpsc_check(ctx, v);
}

static void *mpsc_cons(void *arg) {
  run_t *x = arg;
  ring_set_t *rs = x->rs;
  mseen_t s = {{0, 0}, 0};
  uint64_t want = x->n / 2 * 2;
  bench_barrier_wait(&x->bar, 1);
  x->t0 = rill_time_ns();
  unsigned spins = 0;
  while (s.got < want) {
    if (rs->k == RILL) {
      int n = rill_ring_mpsc_read(rs->m, mpsc_handler, &s, 256);
      if (n < 0)
        bench_die("mpsc read: %s", rill_strerror(n));
      if (n == 0)
        bench_wait_step(&x->bar, &spins);
    } else {
      void *p;
      if (ck_ring_dequeue_mpsc(&rs->ckm, rs->ckmb, &p))
        mpsc_check(&s, (uintptr_t)p);
      else
        bench_wait_step(&x->bar, &spins);
    }
  }
  x->t1 = rill_time_ns();
  return NULL;
}

/* Thread start and join stay outside the clock. */
static uint64_t cross(void *arg, uint64_t n, void *(*prod)(void *), void *(*cons)(void *),
                      int nprod) {
  run_t x = {.rs = arg, .n = n};
  bench_barrier_init(&x.bar, nprod + 1, bench_ncpu() < 2 || nprod > 1);
  atomic_init(&x.id, 0);
  pthread_t t[3];
  if (pthread_create(&t[0], NULL, cons, &x) != 0)
    bench_die("pthread_create failed");
  for (int i = 0; i < nprod; i++)
    if (pthread_create(&t[1 + i], NULL, prod, &x) != 0)
      bench_die("pthread_create failed");
  for (int i = 0; i <= nprod; i++)
    pthread_join(t[i], NULL);
  return x.t1 - x.t0;
}

static uint64_t spsc_run(void *a, uint64_t n) { return cross(a, n, spsc_prod, spsc_cons, 1); }
static uint64_t batch_run(void *a, uint64_t n) { return cross(a, n, batch_prod, batch_cons, 1); }
static uint64_t mpsc_run(void *a, uint64_t n) {
  return cross(a, n < 2 ? 2 : n, mpsc_prod, mpsc_cons, 2);
}

/* ---- ping-pong ----------------------------------------------------------- */

#define STOP UINT64_MAX

static inline void pp_send(ring_set_t *rs, bool back, uint64_t v) {
  if (rs->k == RILL) {
    while (rill_ring_spsc_push_u64(back ? rs->s2 : rs->s, v) != 0)
      bench_relax();
  } else {
    while (!ck_ring_enqueue_spsc(back ? &rs->ck2 : &rs->ck, back ? rs->ckb2 : rs->ckb,
                                 (void *)(uintptr_t)v))
      bench_relax();
  }
}

static inline uint64_t pp_recv(ring_set_t *rs, bool back, bool yield) {
  unsigned spins = 0;
  if (rs->k == RILL) {
    uint64_t v;
    while (rill_ring_spsc_pop_u64(back ? rs->s2 : rs->s, &v) != 0)
      if (++spins > 4096 && yield)
        sched_yield();
      else
        bench_relax();
    return v;
  }
  void *p;
  while (!ck_ring_dequeue_spsc(back ? &rs->ck2 : &rs->ck, back ? rs->ckb2 : rs->ckb, &p))
    if (++spins > 4096 && yield)
      sched_yield();
    else
      bench_relax();
  return (uintptr_t)p;
}

typedef struct pong {
  ring_set_t *rs;
  bool share;
} pong_t;

static void *ponger(void *arg) {
  pong_t *p = arg;
  if (bench_pin_cpu(1) != 0)
    p->share = true;
  for (;;) {
    uint64_t v = pp_recv(p->rs, false, p->share);
    pp_send(p->rs, true, v);
    if (v == STOP)
      return NULL;
  }
}

static void pingpong(void *arg, uint64_t iters, rill_hist_t *h) {
  ring_set_t *rs = arg;
  pong_t p = {rs, bench_ncpu() < 2};
  pthread_t t;
  if (bench_pin_cpu(0) != 0)
    p.share = true;
  if (pthread_create(&t, NULL, ponger, &p) != 0)
    bench_die("pthread_create failed");
  /* One round trip untimed: the ponger is up and spinning. */
  pp_send(rs, false, 0);
  pp_recv(rs, true, p.share);
  for (uint64_t i = 1; i <= iters; i++) {
    uint64_t t0 = rill_time_ns();
    pp_send(rs, false, i);
    uint64_t v = pp_recv(rs, true, p.share);
    uint64_t t1 = rill_time_ns();
    if (RILL_UNLIKELY(v != i))
      bench_die("ping-pong: sent %" PRIu64 ", got %" PRIu64 " back", i, v);
    rill_hist_record(h, t1 - t0);
  }
  pp_send(rs, false, STOP);
  pp_recv(rs, true, p.share);
  pthread_join(t, NULL);
  /* The harness runs on unpinned afterwards. */
  bench_unpin();
}

/* ---- setup and goals ------------------------------------------------------ */

static ck_ring_buffer_t *ck_buf(unsigned n) {
  ck_ring_buffer_t *b = aligned_alloc(RILL_CACHELINE, n * sizeof *b);
  if (!b)
    bench_die("out of memory");
  memset(b, 0, n * sizeof *b);
  return b;
}

static void set_init(ring_set_t *rs, impl_k k) {
  memset(rs, 0, sizeof *rs);
  rs->k = k;
  int rc;
  if (k == RILL) {
    if ((rc = rill_ring_spsc_create(&rs->s, SLOTS, 8)) != 0 ||
        (rc = rill_ring_spsc_create(&rs->s2, SLOTS, 8)) != 0 ||
        (rc = rill_ring_mpsc_create(&rs->m, MBYTES)) != 0)
      bench_die("ring create: %s", rill_strerror(rc));
  } else {
    /* ck keeps one slot empty: a ring of 1025 would need 2048 slots, so
     * both kinds get 1024 and ck holds 1023. */
    ck_ring_init(&rs->ck, SLOTS);
    ck_ring_init(&rs->ck2, SLOTS);
    ck_ring_init(&rs->ckm, MSLOTS);
    rs->ckb = ck_buf(SLOTS);
    rs->ckb2 = ck_buf(SLOTS);
    rs->ckmb = ck_buf(MSLOTS);
  }
}

static void set_fini(ring_set_t *rs) {
  rill_ring_spsc_destroy(rs->s);
  rill_ring_spsc_destroy(rs->s2);
  rill_ring_mpsc_destroy(rs->m);
  free(rs->ckb);
  free(rs->ckb2);
  free(rs->ckmb);
}

static int ring_run(bench_ctx_t *b) {
  static ring_set_t r, c;
  /* Every thread of every case pins itself (CPUs 0 and 1). */
  bench_set_pin(b, BENCH_PIN_OWN);
  bench_note(b,
             "each case pins its threads, rill's and ck's alike: the producer (pinger) on CPU 0, "
             "the consumer (ponger) on CPU 1; mpsc_2p as below");
  set_init(&r, RILL);
  set_init(&c, CK);
  if (bench_ncpu() < 2)
    bench_note(b, "one CPU: the cross-core cases run on one core, taking turns");
  bench_note(b, "ck_ring has no batch enqueue/dequeue: its spsc_u64_batch32 row moves each batch "
                "one item at a time");
  bench_note(b, "mpsc_2p: producers on CPUs 0 and 1, the consumer on CPU 1 too (it yields when "
                "idle); rill moves records (8-byte header, 8-byte payload), ck pointer-sized "
                "values");
  const bench_impl_t spsc[] = {{.name = "rill_spsc", .run_timed = spsc_run, .arg = &r},
                               {.name = "ck_ring", .run_timed = spsc_run, .arg = &c}};
  const bench_impl_t batch[] = {{.name = "rill_spsc", .run_timed = batch_run, .arg = &r},
                                {.name = "ck_ring", .run_timed = batch_run, .arg = &c}};
  const bench_impl_t mpsc[] = {{.name = "rill_mpsc", .run_timed = mpsc_run, .arg = &r},
                               {.name = "ck_ring", .run_timed = mpsc_run, .arg = &c}};
  const bench_impl_t pp[] = {{.name = "rill_spsc", .run_lat = pingpong, .arg = &r},
                             {.name = "ck_ring", .run_lat = pingpong, .arg = &c}};
  bench_run(b, &(bench_case_t){"spsc_u64", 8, 1, spsc, 2});
  bench_run(b, &(bench_case_t){"spsc_u64_batch32", 8, 1, batch, 2});
  bench_run(b, &(bench_case_t){"mpsc_2p", 8, 1, mpsc, 2});
  bench_run(b, &(bench_case_t){"spsc_pingpong", 8, 1, pp, 2});
  if (bench_want(b, "spsc_u64"))
    bench_goal(b, "SPSC 8 B one at a time vs ck_ring",
               bench_ratio(b, "spsc_u64", 8, "ck_ring", "rill_spsc"), true, 1.0, "x");
  if (bench_want(b, "spsc_u64_batch32"))
    bench_goal(b, "SPSC 8 B batches of 32 vs ck_ring",
               bench_ratio(b, "spsc_u64_batch32", 8, "ck_ring", "rill_spsc"), true, 1.5, "x");
  set_fini(&r);
  set_fini(&c);
  return 0;
}

const bench_suite_t bench_suite_ring = {
    .name = "ring",
    .about = "SPSC, MPSC and ping-pong across two cores vs ck_ring",
    .run = ring_run,
};
