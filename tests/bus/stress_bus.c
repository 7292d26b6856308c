/*
 * The bus under threads: 1, 2, 4 and 8 producers with BLOCK and no loss,
 * producers opening and closing while the workers run, and exact
 * accounting under DROP_NEWEST and DROP_OLDEST (a slow sink, so producers
 * drop while the worker delivers from the same rings in place), and bufs
 * by reference, each released exactly once whether delivered or dropped. The sink checks
 * per-producer per-shard order (each payload carries its producer id and a counter) and the
 * per-shard sequence numbers.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "rill/bus.h"
#include "stress.h"

#define SHARDS   8
#define MAX_PIDS 1024

struct payload {
  uint32_t pid;
  uint32_t pad;
  uint64_t ctr;
};

/* Checking sink. last[pid][shard] and next_seq[shard] are touched only by
 * the worker owning the shard, so they need no atomics. */
typedef struct {
  uint64_t last[MAX_PIDS][SHARDS]; /* counter + 1 of the last event seen */
  uint64_t next_seq[SHARDS];
  uint64_t events; /* atomic */
  int slow;        /* nap in each batch */
} check_t;

static void check_batch(void *ctx, const rill_bus_event_t *ev, size_t n) {
  check_t *c = ctx;
  for (size_t i = 0; i < n; i++) {
    uint32_t s = ev[i].shard;
    CHECK(s < SHARDS, "shard %u", s);
    CHECK(ev[i].seq == c->next_seq[s], "shard %u seq %llu want %llu", s,
          (unsigned long long)ev[i].seq, (unsigned long long)c->next_seq[s]);
    c->next_seq[s]++;
    CHECK(ev[i].len == sizeof(struct payload), "len %u", ev[i].len);
    struct payload pl;
    memcpy(&pl, ev[i].data, sizeof pl);
    CHECK(pl.pid < MAX_PIDS, "pid %u", pl.pid);
    CHECK(pl.ctr + 1 > c->last[pl.pid][s], "pid %u shard %u: %llu after %llu", pl.pid, s,
          (unsigned long long)pl.ctr, (unsigned long long)c->last[pl.pid][s] - 1);
    c->last[pl.pid][s] = pl.ctr + 1;
  }
  __atomic_fetch_add(&c->events, n, __ATOMIC_RELAXED);
  if (c->slow) {
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
}

static check_t chk;

typedef struct {
  rill_bus_t *bus;
  uint32_t pid0;
  uint32_t rounds; /* open, publish, close this many times */
  uint64_t events; /* per round */
  int expect_all;  /* every publish must return 0 */
  int batch;       /* publish in batches of 16: 1 hashed, 2 keyed */
  uint64_t ok;
} prod_arg_t;

static int buf_mode; /* publish each event as a wrapped heap buf */
static uint64_t buf_released;

static void free_payload(void *ctx, void *data, size_t len) {
  (void)ctx, (void)len;
  free(data);
  __atomic_fetch_add(&buf_released, 1, __ATOMIC_RELAXED);
}

/* One event by reference: a heap copy wrapped with a counting release.
 * Our view goes at once; the slot's goes when delivered or dropped. */
static int publish_wrapped(rill_bus_producer_t *p, const struct payload *pl) {
  struct payload *h = malloc(sizeof *h);
  CHECK(h, "malloc");
  *h = *pl;
  rill_buf_t b;
  CHECK(rill_buf_wrap(&b, h, sizeof *h, 0, free_payload, NULL) == 0, "wrap");
  int rc = rill_bus_publish_buf(p, &b);
  rill_buf_release(&b);
  return rc;
}

static void *producer(void *arg) {
  prod_arg_t *a = arg;
  for (uint32_t r = 0; r < a->rounds; r++) {
    rill_bus_producer_t *p;
    CHECK(rill_bus_producer_create(&p, a->bus) == 0, "open: %s", rill_errmsg());
    struct payload pl = {a->pid0 + r, 0, 0};
    if (a->batch) {
      struct payload b[16];
      rill_iov_t iov[16];
      for (uint64_t i = 0; i < a->events; i += 16) {
        size_t n = a->events - i < 16 ? (size_t)(a->events - i) : 16, done = 0;
        for (size_t k = 0; k < n; k++) {
          b[k] = (struct payload){a->pid0 + r, 0, i + k};
          iov[k] = (rill_iov_t){&b[k], sizeof b[k]};
        }
        /* batch 2: keyed, the key moving from batch to batch */
        int rc = a->batch == 2 ? rill_bus_publish_batch_key(p, i / 16 + r, iov, n, &done)
                               : rill_bus_publish_batch(p, iov, n, &done);
        CHECK(rc == 0 && done == n, "publish_batch: %d %s", rc, rill_errmsg());
        a->ok += n;
      }
      rill_bus_producer_destroy(p);
      continue;
    }
    for (uint64_t i = 0; i < a->events; i++) {
      pl.ctr = i;
      int rc = buf_mode ? publish_wrapped(p, &pl) : rill_bus_publish(p, &pl, sizeof pl);
      if (a->expect_all)
        CHECK(rc == 0, "publish: %d %s", rc, rill_errmsg());
      a->ok += rc == 0;
    }
    rill_bus_producer_destroy(p);
  }
  return NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int batch_mode;

static void run(int nprod, uint32_t rounds, uint64_t events, rill_bus_policy_t pol,
                uint32_t workers, uint32_t ring_slots, int slow, const char *name) {
  memset(&chk, 0, sizeof chk);
  chk.slow = slow;
  rill_bus_sink_t sink = {check_batch, NULL, NULL, &chk};
  rill_bus_t *bus;
  CHECK(rill_bus_create(&bus, &(rill_bus_opts_t){.sink = &sink,
                                                 .shards = SHARDS,
                                                 .workers = workers,
                                                 .ring_slots = ring_slots,
                                                 .policy = pol,
                                                 .block_timeout_ns = 10000000000ull,
                                                 .batch_max = 64}) == 0,
        "create: %s", rill_errmsg());
  prod_arg_t a[8];
  pthread_t t[8];
  double t0 = now_s();
  for (int i = 0; i < nprod; i++) {
    a[i] = (prod_arg_t){
        bus, (uint32_t)i * rounds, rounds, events, pol == RILL_BUS_BLOCK, batch_mode, 0};
    CHECK(pthread_create(&t[i], NULL, producer, &a[i]) == 0, "pthread_create");
  }
  uint64_t ok = 0;
  for (int i = 0; i < nprod; i++) {
    pthread_join(t[i], NULL);
    ok += a[i].ok;
  }
  uint64_t left = 1;
  CHECK(rill_bus_shutdown(bus, 10000000000ull, &left) == 0, "close: %s", rill_errmsg());
  double dt = now_s() - t0;
  CHECK(left == 0, "left %llu", (unsigned long long)left);
  rill_bus_stats_t st = {0};
  rill_bus_stats(bus, &st);
  uint64_t total = (uint64_t)nprod * rounds * events;
  uint64_t dropped = st.dropped_newest + st.dropped_sampled + st.failed_full + st.blocked_timeouts +
                     st.dropped_oldest;
  CHECK(st.ingested == total, "ingested %llu of %llu", (unsigned long long)st.ingested,
        (unsigned long long)total);
  CHECK(st.ingested == st.delivered + dropped, "ingested %llu delivered %llu dropped %llu",
        (unsigned long long)st.ingested, (unsigned long long)st.delivered,
        (unsigned long long)dropped);
  CHECK(chk.events == st.delivered, "sink %llu delivered %llu", (unsigned long long)chk.events,
        (unsigned long long)st.delivered);
  CHECK(pol != RILL_BUS_BLOCK || ok == st.delivered, "ok %llu delivered %llu",
        (unsigned long long)ok, (unsigned long long)st.delivered);
  if (pol == RILL_BUS_BLOCK)
    CHECK(dropped == 0 && st.delivered == total, "lost %llu", (unsigned long long)dropped);
  if (pol == RILL_BUS_DROP_OLDEST) {
    /* Every publish returns 0; each is delivered once (the sink checks
     * strictly rising counters per producer per shard) or dropped once. */
    CHECK(ok == total, "ok %llu of %llu", (unsigned long long)ok, (unsigned long long)total);
    CHECK(st.delivered + st.dropped_oldest == total, "delivered %llu + dropped_oldest %llu",
          (unsigned long long)st.delivered, (unsigned long long)st.dropped_oldest);
    CHECK(st.dropped_oldest == dropped, "other drops under DROP_OLDEST");
  }
  uint64_t seqs = 0;
  for (int s = 0; s < SHARDS; s++)
    seqs += chk.next_seq[s];
  CHECK(seqs == st.delivered, "seqs %llu", (unsigned long long)seqs);
  printf("     %s: %llu events, %llu dropped, %llu batches, %.1f M events/s\n", name,
         (unsigned long long)total, (unsigned long long)dropped, (unsigned long long)st.batches,
         (double)st.delivered / dt / 1e6);
  rill_bus_destroy(bus);
  if (buf_mode) /* every reference the bus took is gone, whatever its fate */
    CHECK(buf_released == total, "released %llu of %llu bufs", (unsigned long long)buf_released,
          (unsigned long long)total);
}

#define EV (400000 / SCALE)

static void block_1(void) { run(1, 1, EV, RILL_BUS_BLOCK, 2, 1024, 0, "block 1p"); }
static void block_2(void) { run(2, 1, EV, RILL_BUS_BLOCK, 2, 1024, 0, "block 2p"); }
static void block_4(void) { run(4, 1, EV / 2, RILL_BUS_BLOCK, 4, 256, 0, "block 4p"); }
static void block_8(void) { run(8, 1, EV / 4, RILL_BUS_BLOCK, 3, 64, 0, "block 8p"); }
static void block_slow(void) { run(4, 1, EV / 16, RILL_BUS_BLOCK, 2, 16, 1, "block 4p slow sink"); }
static void churn(void) { run(4, 100, EV / 400, RILL_BUS_BLOCK, 2, 64, 0, "churn 4x100"); }
static void batch_4(void) {
  batch_mode = 1;
  run(4, 1, EV / 2, RILL_BUS_BLOCK, 2, 256, 0, "batch 4p");
  batch_mode = 0;
}
static void drops(void) { run(4, 4, EV / 16, RILL_BUS_DROP_NEWEST, 2, 16, 1, "drop 4p"); }
static void oldest_2(void) { run(2, 2, EV / 8, RILL_BUS_DROP_OLDEST, 1, 16, 1, "drop-oldest 2p"); }
static void oldest_4(void) { run(4, 4, EV / 16, RILL_BUS_DROP_OLDEST, 2, 8, 1, "drop-oldest 4p"); }
static void bufs_oldest(void) {
  buf_mode = 1;
  buf_released = 0;
  run(4, 2, EV / 16, RILL_BUS_DROP_OLDEST, 2, 16, 1, "bufs drop-oldest 4p");
  buf_mode = 0;
}
static void bufs_block(void) {
  buf_mode = 1;
  buf_released = 0;
  run(4, 1, EV / 8, RILL_BUS_BLOCK, 3, 64, 0, "bufs block 4p");
  buf_mode = 0;
}
static void batch_key_4(void) {
  batch_mode = 2;
  run(4, 1, EV / 2, RILL_BUS_BLOCK, 2, 256, 0, "keyed batch 4p");
  batch_mode = 0;
}
static void oldest_batch_key(void) {
  batch_mode = 2;
  run(3, 2, EV / 8, RILL_BUS_DROP_OLDEST, 2, 16, 1, "drop-oldest keyed batch 3p");
  batch_mode = 0;
}
static void oldest_batch(void) {
  batch_mode = 1;
  run(3, 2, EV / 8, RILL_BUS_DROP_OLDEST, 2, 16, 1, "drop-oldest batch 3p");
  batch_mode = 0;
}

int main(void) {
  static const stress_case_t cases[] = {
      {"block, 1 producer", block_1},
      {"block, 2 producers", block_2},
      {"block, 4 producers", block_4},
      {"block, 8 producers", block_8},
      {"block, 4 producers asleep on a slow sink", block_slow},
      {"open/close while running", churn},
      {"batch publish, 4 producers", batch_4},
      {"drop-newest accounting", drops},
      {"drop-oldest, 2 producers, slow sink", oldest_2},
      {"drop-oldest, 4 producers, slow sink", oldest_4},
      {"drop-oldest, batch publish, 3 producers", oldest_batch},
      {"keyed batch publish, 4 producers", batch_key_4},
      {"drop-oldest, keyed batch publish, 3 producers", oldest_batch_key},
      {"bufs by reference, drop-oldest, 4 producers", bufs_oldest},
      {"bufs by reference, block, 4 producers", bufs_block},
  };
  return stress_run(cases, (int)(sizeof cases / sizeof cases[0]));
}
