/*
 * Bus semantics with one producer: options, sizes, the backpressure
 * policies' exact counts against a stalled sink, close, and allocation.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

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
} rec_t;

static void rec_batch(void *ctx, const rill_event_t *ev, size_t n) {
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
    }
  }
  __atomic_fetch_add(&r->n, n, __ATOMIC_RELEASE);
}
static void rec_flush(void *ctx) { ((rec_t *)ctx)->flushed++; }
static void rec_close(void *ctx) { ((rec_t *)ctx)->closed++; }

static rill_sink_t rec_sink(rec_t *r) {
  memset(r, 0, sizeof *r);
  return (rill_sink_t){rec_batch, rec_flush, rec_close, r};
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
  rill_sink_counters_t c;
  rill_sink_t sink;
  rill_sink_counting(&sink, &c);
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
  rill_sink_t sink = rec_sink(&r);
  rill_bus_t *bus;
  cr_assert_eq(
      rill_bus_create(
          &bus,
          &(rill_bus_opts_t){.sink = &sink, .shards = 4, .workers = 2, .policy = RILL_BUS_BLOCK}),
      0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_open(bus, &p), 0);
  for (uint32_t i = 1; i <= 20000; i++)
    cr_assert_eq(rill_bus_publish_key(p, i, &i, 4), 0);
  uint64_t left = 99;
  cr_assert_eq(rill_bus_close(bus, 5000000000ull, &left), 0);
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
  cr_expect_eq(rill_bus_close(bus, 0, NULL), RILL_ECLOSED);
  rill_bus_producer_t *q = NULL;
  cr_expect_eq(rill_bus_producer_open(bus, &q), RILL_ECLOSED);
  rill_bus_producer_close(p);
  rill_bus_destroy(bus);
}

Test(bus, counting_sink_and_hash_shards) {
  rill_sink_counters_t c;
  rill_sink_t sink;
  rill_sink_counting(&sink, &c);
  rill_bus_t *bus;
  cr_assert_eq(
      rill_bus_create(
          &bus,
          &(rill_bus_opts_t){.sink = &sink, .shards = 8, .workers = 3, .policy = RILL_BUS_BLOCK}),
      0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_open(bus, &p), 0);
  char buf[120];
  memset(buf, 'x', sizeof buf);
  for (uint32_t i = 0; i < 10000; i++) {
    memcpy(buf, &i, 4);
    cr_assert_eq(rill_bus_publish(p, buf, 8 + i % 100), 0);
  }
  cr_expect_eq(rill_bus_publish(p, buf, 121), RILL_EMSGSIZE);
  cr_expect_neq(rill_errmsg()[0], '\0');
  rill_bus_producer_close(p); /* closed while running: still delivered */
  cr_assert_eq(rill_bus_close(bus, 5000000000ull, NULL), 0);
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
static rill_bus_t *stalled(rec_t *r, rill_sink_t *sink, rill_bus_policy_t pol, uint32_t slots,
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
  cr_assert_eq(rill_bus_producer_open(bus, p), 0);
  uint32_t v = 0;
  cr_assert_eq(rill_bus_publish(*p, &v, 4), 0);
  wait_entered(r, 1);
  return bus;
}

static void unstall_close(rill_bus_t *bus, rec_t *r, uint64_t expect_delivered) {
  __atomic_store_n(&r->stall, 0, __ATOMIC_RELEASE);
  uint64_t left = 1;
  cr_assert_eq(rill_bus_close(bus, 5000000000ull, &left), 0);
  cr_expect_eq(left, 0);
  cr_expect_eq(r->n, expect_delivered);
  cr_expect_eq(r->bad, 0);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.delivered, expect_delivered);
  cr_expect_eq(st.ingested, st.delivered + st.dropped_newest + st.dropped_sampled + st.failed_full +
                                st.blocked_timeouts);
  rill_bus_destroy(bus);
}

Test(bus, drop_newest_exact) {
  rec_t r;
  rill_sink_t sink;
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
  rill_sink_t sink;
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
  rill_sink_t sink;
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
  rill_sink_t sink;
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
  rill_sink_t sink;
  rill_bus_producer_t *p;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_DROP_NEWEST, 8, &p);
  for (uint32_t i = 1; i <= 5; i++)
    cr_assert_eq(rill_bus_publish(p, &i, 4), 0);
  /* The sink stays stalled for 200 ms; close gives up after 10 ms, so the
   * worker stops after the stalled batch and 5 events are left. */
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, unstall_later, &r), 0);
  uint64_t left = 0;
  cr_expect_eq(rill_bus_close(bus, 10000000, &left), RILL_ETIMEDOUT);
  pthread_join(t, NULL);
  cr_expect_eq(r.n, 1);
  cr_expect_eq(left, 5);
  cr_expect_eq(r.flushed, 1);
  rill_bus_destroy(bus);
}

Test(bus, zero_allocations_per_event) {
  rill_sink_counters_t c;
  rill_sink_t sink;
  rill_sink_counting(&sink, &c);
  rill_bus_t *bus;
  cr_assert_eq(
      rill_bus_create(
          &bus, &(rill_bus_opts_t){.sink = &sink, .shards = 4, .policy = RILL_BUS_DROP_NEWEST}),
      0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_open(bus, &p), 0);
  char buf[64] = {0};
  uint64_t before = rill_mem_allocs_thread();
  for (uint32_t i = 0; i < 1000000; i++) {
    memcpy(buf, &i, 4);
    cr_assert_eq(rill_bus_publish(p, buf, sizeof buf), 0);
  }
  cr_expect_eq(rill_mem_allocs_thread(), before);
  cr_assert_eq(rill_bus_close(bus, 5000000000ull, NULL), 0);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 1000000);
  cr_expect_eq(c.events + st.dropped_newest, 1000000);
  rill_bus_destroy(bus);
}

Test(bus, publish_batch_in_order) {
  rec_t r;
  rill_sink_t sink = rec_sink(&r);
  rill_bus_t *bus;
  cr_assert_eq(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                        .shards = 4,
                                                        .workers = 2,
                                                        .ring_slots = 64,
                                                        .policy = RILL_BUS_BLOCK}),
               0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_open(bus, &p), 0);
  static uint32_t vals[1000];
  static rill_bus_iov_t iov[1000];
  char big[200] = {0};
  for (uint32_t i = 0; i < 1000; i++) {
    vals[i] = i + 1;
    iov[i] = (rill_bus_iov_t){&vals[i], 4};
  }
  iov[500] = (rill_bus_iov_t){big, sizeof big};
  size_t done = 0;
  cr_expect_eq(rill_bus_publish_batch(p, iov, 1000, &done), RILL_EMSGSIZE);
  cr_expect_eq(done, 500);
  cr_expect_eq(rill_bus_publish_batch(p, iov + 501, 499, &done), 0);
  cr_expect_eq(done, 499);
  cr_assert_eq(rill_bus_close(bus, 5000000000ull, NULL), 0);
  cr_expect_eq(r.n, 999);
  cr_expect_eq(r.bad, 0);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.ingested, 999);
  cr_expect_eq(rill_bus_publish_batch(p, iov, 1, &done), RILL_ECLOSED);
  cr_expect_eq(done, 0);
  rill_bus_destroy(bus);
}

Test(bus, publish_batch_policies) {
  rec_t r;
  rill_sink_t sink;
  rill_bus_producer_t *p;
  static uint32_t vals[20];
  rill_bus_iov_t iov[20];
  for (uint32_t i = 0; i < 20; i++) {
    vals[i] = i + 1;
    iov[i] = (rill_bus_iov_t){&vals[i], 4};
  }
  size_t done = 0;
  rill_bus_t *bus = stalled(&r, &sink, RILL_BUS_DROP_NEWEST, 8, &p);
  cr_expect_eq(rill_bus_publish_batch(p, iov, 20, &done), 0);
  cr_expect_eq(done, 20);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  cr_expect_eq(st.dropped_newest, 13);
  cr_expect_eq(st.ingested, 21);
  unstall_close(bus, &r, 8);

  bus = stalled(&r, &sink, RILL_BUS_FAIL, 8, &p);
  cr_expect_eq(rill_bus_publish_batch(p, iov, 20, &done), RILL_EFULL);
  cr_expect_eq(done, 7);
  unstall_close(bus, &r, 8);
}
