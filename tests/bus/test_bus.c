/*
 * Bus semantics with one producer: options, sizes, the backpressure
 * policies' exact counts against a stalled sink, close, and allocation.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rill/bus.h"
#include "rill/mem.h"

/* A sink that records events and can be stalled: on_batch announces that
 * it entered, then waits until released. */
typedef struct {
  int stall;   /* while set, on_batch waits */
  int entered; /* batches entered */
  uint64_t n;
  uint64_t next_seq[8];
  uint32_t last_val[8];
  int flushed, closed;
  int bad;
  uint32_t vals[256]; /* the first 4-byte payloads delivered, in order */
  uint32_t nvals;
} rec_t;

static void rec_batch(void *ctx, const rill_bus_event_t *ev, size_t n) {
  rec_t *r = ctx;
  __atomic_fetch_add(&r->entered, 1, __ATOMIC_ACQ_REL);
  while (__atomic_load_n(&r->stall, __ATOMIC_ACQUIRE)) {
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  for (size_t i = 0; i < n; i++) {
    uint32_t s = ev[i].shard;
    if (s >= 8 || ev[i].seq != r->next_seq[s] || ev[i].ts_ns == 0)
      r->bad++;
    else
      r->next_seq[s]++;
    if (ev[i].len == 4) {
      uint32_t v;
      memcpy(&v, ev[i].data, 4);
      if (r->next_seq[s] > 1 && v <= r->last_val[s])
        r->bad++; /* FIFO per producer per shard */
      r->last_val[s] = v;
      if (r->nvals < 256)
        r->vals[r->nvals++] = v;
    }
  }
  __atomic_fetch_add(&r->n, n, __ATOMIC_RELEASE);
}
static void rec_flush(void *ctx) { ((rec_t *)ctx)->flushed++; }
static void rec_close(void *ctx) { ((rec_t *)ctx)->closed++; }

static rill_bus_sink_t rec_sink(rec_t *r) {
  memset(r, 0, sizeof *r);
  return (rill_bus_sink_t){rec_batch, rec_flush, rec_close, r};
}

static void wait_entered(rec_t *r, int n) {
  while (__atomic_load_n(&r->entered, __ATOMIC_ACQUIRE) < n) {
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
}

static void expect_einval(rill_bus_opts_t o, const char *what) {
  rill_bus_t *bus = NULL;
  rill_errmsg_clear();
  cr_expect_eq(rill_bus_create(&bus, &o), RILL_EINVAL, "%s", what);
  cr_expect_null(bus);
  cr_expect_neq(rill_errmsg()[0], '\0', "%s: no errmsg", what);
}

Test(bus, bad_options) {
  rill_bus_counters_t c;
  rill_bus_sink_t sink;
  rill_bus_sink_counting(&sink, &c);
  expect_einval((rill_bus_opts_t){.sink = NULL}, "no sink");
  expect_einval((rill_bus_opts_t){.sink = &sink, .shards = 1025}, "shards");
  expect_einval((rill_bus_opts_t){.sink = &sink, .ring_slots = 100}, "ring_slots");
  expect_einval((rill_bus_opts_t){.sink = &sink, .shards = 2, .workers = 3}, "workers");
  expect_einval((rill_bus_opts_t){.sink = &sink, .slot_payload = 70000}, "payload");
  expect_einval((rill_bus_opts_t){.sink = &sink, .policy = (rill_bus_policy_t)9}, "policy");
  expect_einval((rill_bus_opts_t){.sink = &sink, .batch_min = 10, .batch_max = 5}, "batch");
  cr_expect_eq(rill_bus_create(NULL, NULL), RILL_EINVAL);
}

Test(bus, delivers_in_order_and_close_drains) {
  rec_t r;
  rill_bus_sink_t sink = rec_sink(&r);
  rill_bus_t *bus;
  cr_assert_eq(
      rill_bus_create(
          &bus,
          &(rill_bus_opts_t){.sink = &sink, .shards = 4, .workers = 2, .policy = RILL_BUS_BLOCK}),
      0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  for (uint32_t i = 1; i <= 20000; i++)
    cr_assert_eq(rill_bus_publish_key(p, i, &i, 4), 0);
  uint64_t left = 99;
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, &left), 0);
  cr_expect_eq(left, 0);
  cr_expect_eq(r.n, 20000);
  cr_expect_eq(r.bad, 0);
  for (int s = 0; s < 4; s++)
    cr_expect_eq(r.next_seq[s], 5000, "shard %d", s);
  cr_expect_eq(r.flushed, 1);
  cr_expect_eq(r.closed, 1);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 20000);
  cr_expect_eq(st.delivered, 20000);
  cr_expect_geq(st.batches, 1);
  int x = 1;
  cr_expect_eq(rill_bus_publish(p, &x, 4), RILL_ECLOSED);
  cr_expect_eq(rill_bus_shutdown(bus, 0, NULL), RILL_ECLOSED);
  rill_bus_producer_t *q = NULL;
  cr_expect_eq(rill_bus_producer_create(&q, bus), RILL_ECLOSED);
  rill_bus_producer_destroy(p);
  rill_bus_destroy(bus);
}

Test(bus, counting_sink_and_hash_shards) {
  rill_bus_counters_t c;
  rill_bus_sink_t sink;
  rill_bus_sink_counting(&sink, &c);
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                        .shards = 8,
                                                        .workers = 3,
                                                        .policy = RILL_BUS_BLOCK,
                                                        .max_payload = 120}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  char buf[120];
  memset(buf, 'x', sizeof buf);
  for (uint32_t i = 0; i < 10000; i++) {
    memcpy(buf, &i, 4);
    cr_assert_eq(rill_bus_publish(p, buf, 8 + i % 100), 0);
  }
  cr_expect_eq(rill_bus_publish(p, buf, 121), RILL_EMSGSIZE);
  cr_expect_neq(rill_errmsg()[0], '\0');
  rill_bus_producer_destroy(p); /* closed while running: still delivered */
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  cr_expect_eq(c.events, 10000);
  uint64_t sum = 0, bytes = 0;
  int used = 0;
  for (int s = 0; s < 8; s++) {
    sum += c.shard_events[s];
    bytes += c.shard_bytes[s];
    used += c.shard_events[s] > 0;
  }
  cr_expect_eq(sum, 10000);
  cr_expect_eq(bytes, c.bytes);
  cr_expect_eq(used, 8, "the hash spreads over all shards");
  cr_expect_eq(c.flushes, 1);
  cr_expect_eq(c.closes, 1);
  rill_bus_destroy(bus);
}

/* One shard, a ring of `slots`, a sink stalled on the first event: the
 * worker holds that slot, so slots - 1 more fit. */
static rill_bus_t *stalled(rec_t *r, rill_bus_sink_t *sink, rill_bus_policy_t pol, uint32_t slots,
                           rill_bus_producer_t **p) {
  *sink = rec_sink(r);
  r->stall = 1;
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = sink,
                                                        .shards = 1,
                                                        .ring_slots = slots,
                                                        .policy = pol,
                                                        .sample_n = 4,
                                                        .block_timeout_ns = 2000000}),
               0);
  cr_assert_eq(rill_bus_producer_create(p, bus), 0);
  uint32_t v = 0;
  cr_assert_eq(rill_bus_publish(*p, &v, 4), 0);
  wait_entered(r, 1);
  return bus;
}

static void unstall_close(rill_bus_t *bus, rec_t *r, uint64_t expect_delivered) {
  __atomic_store_n(&r->stall, 0, __ATOMIC_RELEASE);
  uint64_t left = 1;
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, &left), 0);
  cr_expect_eq(left, 0);
  cr_expect_eq(r->n, expect_delivered);
  cr_expect_eq(r->bad, 0);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.delivered, expect_delivered);
  cr_expect_eq(st.ingested, st.delivered + st.dropped_newest + st.dropped_sampled + st.failed_full +
                                st.blocked_timeouts + st.dropped_oldest);
  rill_bus_destroy(bus);
}

Test(bus, drop_newest_exact) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_DROP_NEWEST, 8, &p);
  for (uint32_t i = 1; i <= 100; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0);
  rill_bus_stats_t st = {0};
  uint64_t fill[1];
  st.shard_fill = fill;
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 101);
  cr_expect_eq(st.dropped_newest, 93);
  cr_expect_eq(fill[0], 8);
  unstall_close(bus, &r, 8);
}

Test(bus, fail_exact) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_FAIL, 16, &p);
  int ok = 0, full = 0;
  for (uint32_t i = 1; i <= 50; i++) {
    int rc = rill_bus_publish(p, &i, 4);
    ok += rc == 0;
    full += rc == RILL_EFULL;
  }
  cr_expect_eq(ok, 15);
  cr_expect_eq(full, 35);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.failed_full, 35);
  unstall_close(bus, &r, 16);
}

Test(bus, block_times_out) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_BLOCK, 4, &p);
  for (uint32_t i = 1; i <= 3; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0);
  uint32_t v = 4;
  cr_expect_eq(rill_bus_publish(p, &v, 4), RILL_ETIMEDOUT);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.blocked_timeouts, 1);
  unstall_close(bus, &r, 4);
}

Test(bus, sample_exact) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_SAMPLE, 16, &p);
  /* The model: under pressure when fewer than 16/4 slots are free; then
   * the 1st, 5th, 9th... of the stretch are kept (dropped when full). */
  uint64_t used = 1, ctr = 0, kept = 1, sampled = 0, newest = 0;
  for (uint32_t i = 1; i <= 100; i++) {
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0);
    if (16 - used >= 4) {
      ctr = 0;
      used++, kept++;
    } else if (ctr++ % 4 != 0) {
      sampled++;
    } else if (used < 16) {
      used++, kept++;
    } else {
      newest++;
    }
  }
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(kept, 16);
  cr_expect_gt(sampled, 60);
  cr_expect_eq(st.dropped_sampled, sampled);
  cr_expect_eq(st.dropped_newest, newest);
  cr_expect_eq(st.ingested, 101);
  unstall_close(bus, &r, kept);
}

static void *unstall_later(void *arg) {
  struct timespec ts = {0, 200000000};
  nanosleep(&ts, NULL);
  __atomic_store_n(&((rec_t *)arg)->stall, 0, __ATOMIC_RELEASE);
  return NULL;
}

Test(bus, close_times_out_with_left) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_DROP_NEWEST, 8, &p);
  for (uint32_t i = 1; i <= 5; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0);
  /* The sink stays stalled for 200 ms; close gives up after 10 ms, so the
   * worker stops after the stalled batch and 5 events are left. */
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, unstall_later, &r), 0);
  uint64_t left = 0;
  cr_expect_eq(rill_bus_shutdown(bus, 10000000, &left), RILL_ETIMEDOUT);
  pthread_join(t, NULL);
  cr_expect_eq(r.n, 1);
  cr_expect_eq(left, 5);
  cr_expect_eq(r.flushed, 1);
  rill_bus_destroy(bus);
}

Test(bus, zero_allocations_per_event) {
  rill_bus_counters_t c;
  rill_bus_sink_t sink;
  rill_bus_sink_counting(&sink, &c);
  rill_bus_t *bus;
  cr_assert_eq(
      rill_bus_create(
          &bus, &(rill_bus_opts_t){.sink = &sink, .shards = 4, .policy = RILL_BUS_DROP_NEWEST}),
      0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  char buf[64] = {0};
  uint64_t before = rill_mem_allocs_thread();
  for (uint32_t i = 0; i < 1000000; i++) {
    memcpy(buf, &i, 4);
    cr_assert_eq(rill_bus_publish(p, buf, sizeof buf), 0);
  }
  cr_expect_eq(rill_mem_allocs_thread(), before);
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 1000000);
  cr_expect_eq(c.events + st.dropped_newest, 1000000);
  rill_bus_destroy(bus);
}

/* rill_bus_publish_batch or rill_bus_publish_batch_key (key 6). */
typedef int (*batch_fn)(rill_bus_producer_t *p, const rill_iov_t *iov, size_t n, size_t *done);

static int batch_key6(rill_bus_producer_t *p, const rill_iov_t *iov, size_t n, size_t *done) {
  return rill_bus_publish_batch_key(p, 6, iov, n, done);
}

/* 1000 events of 4 bytes through rings of 64 slots that fill many times
 * (BLOCK waits for one event, then the batch goes on), an event over
 * slot_payload by reference in its place (100), one over max_payload
 * stopping the call with done at it (500), then the rest in a call that
 * allocates nothing. The sink checks order per shard and the sequence
 * numbers; r gets what it saw. */
static void batch_in_order(rec_t *r, batch_fn publish) {
  rill_bus_sink_t sink = rec_sink(r);
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                        .shards = 4,
                                                        .workers = 2,
                                                        .ring_slots = 64,
                                                        .slot_payload = 16,
                                                        .max_payload = 150,
                                                        .policy = RILL_BUS_BLOCK}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  static uint32_t vals[1000];
  static rill_iov_t iov[1000];
  static char mid[100], big[200];
  for (uint32_t i = 0; i < 1000; i++) {
    vals[i] = i + 1;
    iov[i] = (rill_iov_t){&vals[i], 4};
  }
  iov[100] = (rill_iov_t){mid, sizeof mid};
  iov[500] = (rill_iov_t){big, sizeof big};
  size_t done = 0;
  cr_expect_eq(publish(p, iov, 1000, &done), RILL_EMSGSIZE);
  cr_expect_eq(done, 500);
  uint64_t before = rill_mem_allocs_thread();
  cr_expect_eq(publish(p, iov + 501, 499, &done), 0);
  cr_expect_eq(done, 499);
  cr_expect_eq(rill_mem_allocs_thread(), before);
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  cr_expect_eq(r->n, 999);
  cr_expect_eq(r->bad, 0);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 999);
  cr_expect_eq(st.delivered, 999);
  cr_expect_eq(publish(p, iov, 1, &done), RILL_ECLOSED);
  cr_expect_eq(done, 0);
  rill_bus_destroy(bus);
}

Test(bus, publish_batch_in_order) {
  rec_t r;
  batch_in_order(&r, rill_bus_publish_batch);
}

/* One key for the whole batch: every event on shard key % shards, in the
 * order published. */
Test(bus, publish_batch_key_in_order) {
  rec_t r;
  batch_in_order(&r, batch_key6);
  cr_expect_eq(r.next_seq[2], 999, "every event on shard 6 %% 4");
  cr_expect_eq(r.nvals, 256);
  for (uint32_t i = 0; i < 256; i++)
    cr_expect_eq(r.vals[i], i < 100 ? i + 1 : i + 2, "event %u", i);
}

/* Batches are written grouped by shard: every event lands on the shard
 * its hash names, none twice, and the steady state allocates nothing. */
Test(bus, publish_batch_groups_by_shard_allocating_nothing) {
  rill_bus_counters_t c;
  rill_bus_sink_t sink;
  rill_bus_sink_counting(&sink, &c);
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                        .shards = 64,
                                                        .workers = 2,
                                                        .ring_slots = 256,
                                                        .linger_ns = RILL_BUS_LINGER_NONE,
                                                        .policy = RILL_BUS_BLOCK}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  static uint64_t vals[64][8];
  rill_iov_t iov[64];
  static uint64_t want[64];
  uint64_t before = rill_mem_allocs_thread();
  for (uint64_t round = 0; round < 2000; round++) {
    size_t n = 1 + round % 64;
    for (size_t k = 0; k < n; k++) {
      vals[k][0] = round * 64 + k;
      iov[k] = (rill_iov_t){vals[k], 8 * (uint32_t)(1 + k % 8)};
      want[rill_hash_reduce(rill_hash64(iov[k].data, iov[k].len), 64)]++;
    }
    size_t done = 0;
    cr_assert_eq(rill_bus_publish_batch(p, iov, n, &done), 0);
    cr_assert_eq(done, n);
  }
  cr_expect_eq(rill_mem_allocs_thread(), before);
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  uint64_t total = 0;
  for (int s = 0; s < 64; s++) {
    cr_expect_eq(c.shard_events[s], want[s], "shard %d", s);
    total += want[s];
  }
  cr_expect_eq(c.events, total);
  rill_bus_destroy(bus);
}

/* A batch over more shards than one pass writes (64) takes several
 * passes: every event still lands once, on its hashed shard. */
Test(bus, publish_batch_wider_than_a_pass) {
  rill_bus_counters_t c;
  rill_bus_sink_t sink;
  rill_bus_sink_counting(&sink, &c);
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                        .shards = 1024,
                                                        .ring_slots = 16,
                                                        .policy = RILL_BUS_BLOCK}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  static uint64_t vals[2000];
  static rill_iov_t iov[2000];
  static uint64_t want[1024];
  for (uint64_t k = 0; k < 2000; k++) {
    vals[k] = k;
    iov[k] = (rill_iov_t){&vals[k], 8};
    want[rill_hash_reduce(rill_hash64(&vals[k], 8), 1024)]++;
  }
  size_t done = 0;
  cr_assert_eq(rill_bus_publish_batch(p, iov, 2000, &done), 0);
  cr_expect_eq(done, 2000);
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  for (int s = 0; s < 1024; s++)
    cr_expect_eq(c.shard_events[s], want[s], "shard %d", s);
  cr_expect_eq(c.events, 2000);
  rill_bus_destroy(bus);
}

/* A batch applies the policy to each event that does not fit. */
static void batch_policies(batch_fn publish) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  static uint32_t vals[20];
  rill_iov_t iov[20];
  for (uint32_t i = 0; i < 20; i++) {
    vals[i] = i + 1;
    iov[i] = (rill_iov_t){&vals[i], 4};
  }
  size_t done = 0;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_DROP_NEWEST, 8, &p);
  cr_expect_eq(publish(p, iov, 20, &done), 0);
  cr_expect_eq(done, 20);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.dropped_newest, 13);
  cr_expect_eq(st.ingested, 21);
  unstall_close(bus, &r, 8);

  bus = stalled(&r, &sink, RILL_BUS_FAIL, 8, &p);
  cr_expect_eq(publish(p, iov, 20, &done), RILL_EFULL);
  cr_expect_eq(done, 7);
  unstall_close(bus, &r, 8);
}

Test(bus, publish_batch_policies) { batch_policies(rill_bus_publish_batch); }

Test(bus, publish_batch_key_policies) { batch_policies(batch_key6); }

/* DROP_OLDEST with nothing in flight: batch_min above the ring holds
 * every batch (the worker takes and gives back its claim) until close, so
 * the ring fills deterministically and each publish past it discards the
 * oldest. The survivors are exactly the newest ring_slots, in order. */
Test(bus, drop_oldest_exact) {
  rec_t r;
  rill_bus_sink_t sink = rec_sink(&r);
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                        .shards = 1,
                                                        .ring_slots = 8,
                                                        .policy = RILL_BUS_DROP_OLDEST,
                                                        .batch_min = 64,
                                                        .max_delay_ns = 60000000000ull}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  for (uint32_t i = 1; i <= 100; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0);
  rill_bus_stats_t st = {0};
  uint64_t fill[1];
  st.shard_fill = fill;
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 100);
  cr_expect_eq(st.dropped_oldest, 92);
  cr_expect_eq(st.delivered, 0);
  cr_expect_eq(fill[0], 8);
  uint64_t left = 1;
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, &left), 0);
  cr_expect_eq(left, 0);
  cr_expect_eq(r.bad, 0);
  cr_assert_eq(r.nvals, 8);
  for (uint32_t i = 0; i < 8; i++)
    cr_expect_eq(r.vals[i], 93 + i, "survivor %u is %u", i, r.vals[i]);
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.delivered, 8);
  cr_expect_eq(st.ingested, st.delivered + st.dropped_oldest);
  rill_bus_producer_destroy(p);
  rill_bus_destroy(bus);
}

/* DROP_OLDEST against a batch in flight: the sink holds event 0 in
 * place, the ring fills, and the next publish waits for that batch (it
 * may not take a slot the worker reads) until a thread lets the sink go;
 * then every publish returns 0 and the counts are exact. */
Test(bus, drop_oldest_waits_for_the_batch_in_flight) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_DROP_OLDEST, 8, &p);
  for (uint32_t i = 1; i <= 7; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, unstall_later, &r), 0);
  for (uint32_t i = 8; i <= 1000; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0);
  /* The first publish past the full ring could not return before the
   * sink was let go. */
  cr_expect_eq(__atomic_load_n(&r.stall, __ATOMIC_ACQUIRE), 0);
  pthread_join(t, NULL);
  uint64_t left = 1;
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, &left), 0);
  cr_expect_eq(left, 0);
  cr_expect_eq(r.bad, 0);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 1001);
  cr_expect_eq(st.delivered, r.n);
  cr_expect_eq(st.delivered + st.dropped_oldest, 1001);
  cr_expect_geq(st.delivered, 8);
  rill_bus_destroy(bus);
}

/* A BLOCK bus whose sink holds event 0 in place; block_timeout_ns long. */
static rill_bus_t *stalled_block(rec_t *r, rill_bus_sink_t *sink, uint64_t timeout_ns,
                                 rill_bus_producer_t **p) {
  *sink = rec_sink(r);
  r->stall = 1;
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = sink,
                                                        .shards = 1,
                                                        .ring_slots = 8,
                                                        .policy = RILL_BUS_BLOCK,
                                                        .block_timeout_ns = timeout_ns}),
               0);
  cr_assert_eq(rill_bus_producer_create(p, bus), 0);
  uint32_t v = 0;
  cr_assert_eq(rill_bus_publish(*p, &v, 4), 0);
  wait_entered(r, 1);
  return bus;
}

/* BLOCK against a paused sink: the producer sleeps on its futex until the
 * worker gives slots back, then goes on; nothing is lost. */
Test(bus, block_sleeps_then_delivers_everything) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled_block(&r, &sink, 10000000000ull, &p);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, unstall_later, &r), 0);
  for (uint32_t i = 1; i <= 5000; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0, "publish %u", i);
  pthread_join(t, NULL);
  uint64_t left = 1;
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, &left), 0);
  cr_expect_eq(left, 0);
  cr_expect_eq(r.n, 5001);
  cr_expect_eq(r.bad, 0);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 5001);
  cr_expect_eq(st.delivered, 5001);
  cr_expect_eq(st.blocked_timeouts, 0);
  rill_bus_destroy(bus);
}

/* RILL_FOREVER as a BLOCK timeout and as shutdown's: both wait for the
 * stalled sink however long it takes, rather than wrapping into a deadline
 * already past (which timed out at once). */
Test(bus, forever_waits_without_bound) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled_block(&r, &sink, RILL_FOREVER, &p);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, unstall_later, &r), 0);
  for (uint32_t i = 1; i <= 100; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0, "publish %u", i);
  pthread_join(t, NULL);
  /* Stall again with events queued: shutdown must wait it out. */
  while (__atomic_load_n(&r.n, __ATOMIC_ACQUIRE) < 101)
    ;
  __atomic_store_n(&r.stall, 1, __ATOMIC_RELEASE);
  int entered = __atomic_load_n(&r.entered, __ATOMIC_ACQUIRE);
  for (uint32_t i = 101; i <= 105; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0);
  wait_entered(&r, entered + 1);
  cr_assert_eq(pthread_create(&t, NULL, unstall_later, &r), 0);
  uint64_t left = 1;
  cr_expect_eq(rill_bus_shutdown(bus, RILL_FOREVER, &left), 0);
  pthread_join(t, NULL);
  cr_expect_eq(left, 0);
  cr_expect_eq(r.n, 106);
  cr_expect_eq(r.bad, 0);
  rill_bus_destroy(bus);
}

typedef struct {
  rill_bus_producer_t *p;
  rec_t *r;
  int about_to_block;
  int rc;
  int returned;
} blocker_t;

static void *blocker(void *arg) {
  blocker_t *b = arg;
  for (uint32_t i = 1; i <= 7; i++) /* the 7 free slots */
    if (rill_bus_publish(b->p, &i, 4) != 0)
      b->rc = 99;
  __atomic_store_n(&b->about_to_block, 1, __ATOMIC_RELEASE);
  uint32_t v = 8;
  int rc = rill_bus_publish(b->p, &v, 4);
  if (!b->rc)
    b->rc = rc;
  __atomic_store_n(&b->returned, 1, __ATOMIC_RELEASE);
  return NULL;
}

/* The sink of close_wakes_a_blocked_producer stays stalled until the
 * blocked producer has returned. */
static void *unstall_after_return(void *arg) {
  blocker_t *b = arg;
  while (!__atomic_load_n(&b->returned, __ATOMIC_ACQUIRE)) {
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  __atomic_store_n(&b->r->stall, 0, __ATOMIC_RELEASE);
  return NULL;
}

/* Close while a BLOCK producer sleeps: close wakes it and it returns
 * RILL_ECLOSED, though its timeout is forever and the sink stays stalled
 * until it has returned, so nothing but close can have woken it. A close
 * that did not wake it would leave shutdown waiting for the stalled sink
 * forever: the alarm turns that into a failure rather than a stuck suite.
 * No clock is asserted on: under load a wake can take any time, so
 * whether shutdown's 10 ms ran out before the sink let go is not fixed,
 * only that what it reports adds up. */
Test(bus, close_wakes_a_blocked_producer) {
  rec_t r;
  rill_bus_sink_t sink;
  blocker_t b = {.r = &r};
  rill_bus_t *bus = stalled_block(&r, &sink, RILL_FOREVER, &b.p);
  pthread_t tb, tu;
  cr_assert_eq(pthread_create(&tb, NULL, blocker, &b), 0);
  while (!__atomic_load_n(&b.about_to_block, __ATOMIC_ACQUIRE)) {
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  struct timespec ts = {0, 20000000}; /* most likely past its spinning: asleep */
  nanosleep(&ts, NULL);
  cr_assert_eq(pthread_create(&tu, NULL, unstall_after_return, &b), 0);
  alarm(60);
  uint64_t left = 99;
  int rc = rill_bus_shutdown(bus, 10000000, &left);
  pthread_join(tb, NULL);
  pthread_join(tu, NULL);
  alarm(0);
  cr_expect_eq(b.rc, RILL_ECLOSED);
  cr_expect(rc == 0 || rc == RILL_ETIMEDOUT, "shutdown: %d", rc);
  cr_expect_eq(rc == 0, left == 0, "shutdown %d with %llu left", rc, (unsigned long long)left);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 8); /* the closed publish is not counted */
  cr_expect_eq(st.delivered + left, 8);
  cr_expect_eq(st.blocked_timeouts, 0);
  rill_bus_destroy(bus);
}

/* An idle worker sleeps on its doorbell: a publish after a quiet spell is
 * still delivered, each time. A worker that never woke would leave the
 * wait below spinning; the alarm turns that into a failure (SIGALRM)
 * rather than a stuck suite. How fast it wakes is the bench's business
 * (`rill bench bus`, ingest_lat), not a test's: under load a wake can
 * take any time. */
Test(bus, idle_worker_wakes_on_publish) {
  alarm(60);
  rec_t r;
  rill_bus_sink_t sink = rec_sink(&r);
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink, .shards = 2, .workers = 2}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  for (uint32_t i = 1; i <= 20; i++) {
    struct timespec ts = {0, 3000000}; /* the workers go to sleep */
    nanosleep(&ts, NULL);
    cr_assert_eq(rill_bus_publish_key(p, i, &i, 4), 0);
    while (__atomic_load_n(&r.n, __ATOMIC_ACQUIRE) < i)
      sched_yield();
  }
  alarm(0);
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  cr_expect_eq(r.n, 20);
  cr_expect_eq(r.bad, 0);
  rill_bus_destroy(bus);
}

/* ---- payloads by reference ---- */

/* A sink that keeps what each event pointed at and checks big payloads
 * against a reference copy. */
#define BIG (1u << 20)
static uint8_t big_ref[BIG];

typedef struct {
  const void *data[64];
  uint32_t len[64];
  uint64_t n;
  int intact; /* big payloads equal to big_ref */
  int bad;
} ptr_t;

static void ptr_batch(void *ctx, const rill_bus_event_t *ev, size_t n) {
  ptr_t *r = ctx;
  for (size_t i = 0; i < n; i++) {
    if (r->n < 64) {
      r->data[r->n] = ev[i].data;
      r->len[r->n] = ev[i].len;
    }
    __atomic_store_n(&r->n, r->n + 1, __ATOMIC_RELEASE); /* polled by the test */
    if (ev[i].len == BIG)
      r->intact += memcmp(ev[i].data, big_ref, BIG) == 0;
  }
}

static void fill_big_ref(void) {
  for (uint32_t i = 0; i < BIG; i++)
    big_ref[i] = (uint8_t)(i * 7 + i / 251);
}

Test(bus, big_payload_arrives_intact) {
  fill_big_ref();
  ptr_t r = {0};
  rill_bus_sink_t sink = {ptr_batch, NULL, NULL, &r};
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                        .shards = 2,
                                                        .policy = RILL_BUS_BLOCK,
                                                        .max_payload = 2 * BIG}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  cr_assert_eq(rill_bus_publish(p, big_ref, BIG), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_bus_publish_key(p, 1, big_ref, BIG), 0);
  /* In a batch, between small events: in order, alone, by reference. */
  uint32_t a = 1, b = 2;
  rill_iov_t iov[3] = {{&a, 4}, {big_ref, BIG}, {&b, 4}};
  size_t done = 0;
  cr_assert_eq(rill_bus_publish_batch(p, iov, 3, &done), 0);
  cr_expect_eq(done, 3);
  static uint8_t huge[2 * BIG + 1];
  cr_expect_eq(rill_bus_publish(p, huge, sizeof huge), RILL_EMSGSIZE);
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  cr_expect_eq(r.n, 5);
  cr_expect_eq(r.intact, 3);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 5);
  cr_expect_eq(st.delivered, 5);
  rill_bus_destroy(bus);
}

Test(bus, max_payload_bounds) {
  rill_bus_counters_t c;
  rill_bus_sink_t sink;
  rill_bus_sink_counting(&sink, &c);
  expect_einval((rill_bus_opts_t){.sink = &sink, .slot_payload = 200, .max_payload = 100},
                "max_payload below slot_payload");
  /* A 1-byte slot still carries a reference. */
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                        .shards = 1,
                                                        .slot_payload = 1,
                                                        .max_payload = 4096,
                                                        .policy = RILL_BUS_BLOCK}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  static char buf[4097];
  for (uint32_t len = 0; len <= 4096; len += 64)
    cr_assert_eq(rill_bus_publish(p, buf, len), 0);
  cr_expect_eq(rill_bus_publish(p, buf, 4097), RILL_EMSGSIZE);
  rill_buf_t b;
  cr_assert_eq(rill_buf_copy(&b, buf, 4097), 0);
  cr_expect_eq(rill_bus_publish_buf(p, &b), RILL_EMSGSIZE);
  cr_expect_eq(rill_bus_publish_buf(p, NULL), RILL_EINVAL);
  rill_buf_release(&b);
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  cr_expect_eq(c.events, 65);
  cr_expect_eq(c.bytes, 64ull * 65 * 64 / 2);
  rill_bus_destroy(bus);
}

/* publish_buf: the sink sees the buf's own bytes (zero copy), and the
 * bus's reference is gone once the event is delivered. */
Test(bus, publish_buf_zero_copy) {
  ptr_t r = {0};
  rill_bus_sink_t sink = {ptr_batch, NULL, NULL, &r};
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink, .shards = 4}), 0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  rill_buf_t small, large;
  cr_assert_eq(rill_buf_copy(&small, "hello", 5), 0);
  cr_assert_eq(rill_buf_alloc(&large, 100000), 0);
  memset(large.data, 'z', large.len);
  cr_assert_eq(rill_bus_publish_buf(p, &small), 0);
  cr_assert_eq(rill_bus_publish_buf_key(p, 3, &large), 0);
  while (__atomic_load_n(&r.n, __ATOMIC_ACQUIRE) < 2)
    ;
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  cr_assert_eq(r.n, 2);
  /* One shard each, so either may come first. */
  int si = r.len[0] == 5 ? 0 : 1;
  cr_expect_eq(r.data[si], (const void *)small.data);
  cr_expect_eq(r.len[si], 5);
  cr_expect_eq(r.data[1 - si], (const void *)large.data);
  cr_expect_eq(r.len[1 - si], 100000);
  cr_expect_eq(rill_buf_refs(&small), 1);
  cr_expect_eq(rill_buf_refs(&large), 1);
  rill_buf_release(&small);
  rill_buf_release(&large);
  rill_bus_destroy(bus);
}

static int released;
static void count_release(void *ctx, void *data, size_t len) {
  (void)ctx, (void)data, (void)len;
  __atomic_fetch_add(&released, 1, __ATOMIC_RELAXED);
}

/* Every path that discards a slot releases its reference: drop-oldest
 * (at once), and delivery. */
Test(bus, drop_oldest_releases_bufs) {
  rec_t r;
  rill_bus_sink_t sink = rec_sink(&r);
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                        .shards = 1,
                                                        .ring_slots = 8,
                                                        .policy = RILL_BUS_DROP_OLDEST,
                                                        .batch_min = 64,
                                                        .max_delay_ns = 60000000000ull}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  released = 0;
  static uint32_t vals[20];
  for (uint32_t i = 0; i < 20; i++) {
    vals[i] = i + 1;
    rill_buf_t b;
    cr_assert_eq(rill_buf_wrap(&b, &vals[i], 4, 0, count_release, NULL), 0);
    cr_assert_eq(rill_bus_publish_buf(p, &b), 0);
    rill_buf_release(&b); /* the slot's reference keeps it */
  }
  cr_expect_eq(__atomic_load_n(&released, __ATOMIC_RELAXED), 12, "the 12 dropped");
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.dropped_oldest, 12);
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  cr_expect_eq(released, 20, "and the 8 delivered");
  cr_expect_eq(r.nvals, 8);
  for (uint32_t i = 0; i < r.nvals; i++)
    cr_expect_eq(r.vals[i], 13 + i);
  rill_bus_destroy(bus);
}

/* A close that times out leaves events in the rings; destroy releases
 * their references. */
Test(bus, destroy_releases_undelivered_bufs) {
  rec_t r;
  rill_bus_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_DROP_NEWEST, 8, &p);
  released = 0;
  static uint32_t vals[5];
  for (uint32_t i = 0; i < 5; i++) {
    vals[i] = i + 1;
    rill_buf_t b;
    cr_assert_eq(rill_buf_wrap(&b, &vals[i], 4, 0, count_release, NULL), 0);
    cr_assert_eq(rill_bus_publish_buf(p, &b), 0);
    rill_buf_release(&b);
  }
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, unstall_later, &r), 0);
  uint64_t left = 0;
  cr_expect_eq(rill_bus_shutdown(bus, 10000000, &left), RILL_ETIMEDOUT);
  pthread_join(t, NULL);
  cr_expect_eq(left, 5);
  cr_expect_eq(released, 0);
  rill_bus_destroy(bus);
  cr_expect_eq(released, 5);
}

/* publish_buf takes a reference, never memory. */
Test(bus, publish_buf_allocates_nothing) {
  rill_bus_counters_t c;
  rill_bus_sink_t sink;
  rill_bus_sink_counting(&sink, &c);
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink, .shards = 4}), 0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  rill_buf_t b;
  cr_assert_eq(rill_buf_alloc(&b, 4096), 0);
  memset(b.data, 1, b.len);
  uint64_t before = rill_mem_allocs_thread();
  for (uint32_t i = 0; i < 200000; i++)
    cr_assert_eq(rill_bus_publish_buf_key(p, i, &b), 0);
  cr_expect_eq(rill_mem_allocs_thread(), before);
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 200000);
  cr_expect_eq(c.events + st.dropped_newest, 200000);
  cr_expect_eq(c.bytes, c.events * 4096);
  cr_expect_eq(rill_buf_refs(&b), 1);
  rill_buf_release(&b);
  rill_bus_destroy(bus);
}
