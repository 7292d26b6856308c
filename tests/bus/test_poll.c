/*
 * The memory sink and poll: per-shard and merged order, filters, cursors
 * saved and loaded back (a consumer restart), hostile saved cursors, laps
 * counted exactly, omitted events, the tee, and no allocation per poll.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "rill/bus.h"
#include "rill/mem.h"

#define SHARDS 4

typedef struct {
  rill_bus_memsink_t *ms;
  rill_bus_t *bus;
  rill_bus_producer_t *p;
  rill_bus_sink_t sink;
} rig_t;

static void rig_open(rig_t *g, uint64_t window, uint32_t slot_payload, rill_bus_sink_t *next) {
  memset(g, 0, sizeof *g);
  rill_bus_memsink_opts_t mo = {.shards = SHARDS, .window_bytes = window, .next = next};
  cr_assert_eq(rill_bus_memsink_create(&g->ms, &mo), 0, "%s", rill_errmsg());
  rill_bus_sink_memsink(&g->sink, g->ms);
  rill_bus_opts_t o = {.shards = SHARDS,
                       .sink = &g->sink,
                       .policy = RILL_BUS_BLOCK,
                       .slot_payload = slot_payload,
                       .ring_slots = 4096};
  cr_assert_eq(rill_bus_create(&g->bus, &o), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_bus_producer_create(&g->p, g->bus), 0);
}

/* Closes the bus (everything published is then in the windows). */
static void rig_drain(rig_t *g) { cr_assert_eq(rill_bus_shutdown(g->bus, 5000000000ull, NULL), 0); }

static void rig_free(rig_t *g) {
  rill_bus_destroy(g->bus);
  rill_bus_memsink_destroy(g->ms);
}

/* Event i: {"i":i,"k":i%3}, to shard i % SHARDS. */
static void publish_n(rig_t *g, int from, int to) {
  for (int i = from; i < to; i++) {
    char buf[64];
    int len = snprintf(buf, sizeof buf, "{\"i\":%d,\"k\":%d}", i, i % 3);
    cr_assert_eq(rill_bus_publish_key(g->p, (uint64_t)i, buf, (uint32_t)len), 0);
  }
}

static int event_i(const rill_bus_event_t *e) {
  int i = -1;
  char buf[64];
  cr_assert_lt(e->len, sizeof buf);
  memcpy(buf, e->data, e->len);
  buf[e->len] = 0;
  cr_assert_eq(sscanf(buf, "{\"i\":%d,", &i), 1, "payload %s", buf);
  return i;
}

/* Polls until nothing is new; marks seen[i]; checks per-shard sequence
 * order (dense unless laps or filters) and, for the time order, that
 * timestamps never go back. Returns the events seen. */
static size_t drain_cursor(rill_bus_cursor_t *c, const rill_filter_t *f, rill_bus_order_t order,
                           size_t limit, int *seen, int max_i, uint64_t *last_seq) {
  rill_bus_event_t ev[256];
  size_t total = 0;
  uint64_t last_ts = 0;
  for (;;) {
    size_t n = 99;
    int rc = rill_bus_poll(c, f, order, ev, limit, &n);
    cr_assert(rc == 0 || rc == RILL_ELAGGED, "poll: %s", rill_errmsg());
    cr_assert_leq(n, limit);
    if (n == 0 && rc == 0)
      return total;
    for (size_t k = 0; k < n; k++) {
      int i = event_i(&ev[k]);
      cr_assert(i >= 0 && i < max_i);
      cr_assert_eq(ev[k].shard, (uint32_t)(i % SHARDS));
      cr_assert_eq(seen[i], 0, "event %d twice", i);
      seen[i] = 1;
      uint32_t s = ev[k].shard;
      if (last_seq[s] != UINT64_MAX)
        cr_assert_gt(ev[k].seq, last_seq[s], "shard %u out of order", s);
      last_seq[s] = ev[k].seq;
      if (order == RILL_BUS_ORDER_TIME) {
        cr_assert_geq(ev[k].ts_ns, last_ts, "time order broken at %d", i);
        last_ts = ev[k].ts_ns;
      }
    }
    total += n;
  }
}

static void reset_seq(uint64_t *last_seq) {
  for (int s = 0; s < SHARDS; s++)
    last_seq[s] = UINT64_MAX;
}

Test(poll, bad_options) {
  rill_bus_memsink_t *ms = NULL;
  cr_expect_eq(rill_bus_memsink_create(&ms, &(rill_bus_memsink_opts_t){.shards = 0}), RILL_EINVAL);
  cr_expect_eq(rill_bus_memsink_create(&ms, &(rill_bus_memsink_opts_t){.shards = 1025}),
               RILL_EINVAL);
  cr_expect_eq(
      rill_bus_memsink_create(&ms, &(rill_bus_memsink_opts_t){.shards = 1, .window_bytes = 5000}),
      RILL_EINVAL);
  cr_expect_eq(
      rill_bus_memsink_create(&ms, &(rill_bus_memsink_opts_t){.shards = 1, .window_bytes = 2048}),
      RILL_EINVAL);
  rill_bus_sink_t half = {0};
  cr_expect_eq(rill_bus_memsink_create(&ms, &(rill_bus_memsink_opts_t){.shards = 1, .next = &half}),
               RILL_EINVAL);
  cr_expect_null(ms);
  cr_assert_eq(rill_bus_memsink_create(&ms, &(rill_bus_memsink_opts_t){.shards = 2}), 0);
  cr_expect_eq(rill_bus_memsink_max_payload(ms), (1u << 20) / 8 - 32);
  rill_bus_cursor_t *c = NULL;
  cr_expect_eq(rill_bus_cursor_create(&c, ms, (rill_bus_from_t)7), RILL_EINVAL);
  cr_assert_eq(rill_bus_cursor_create(&c, ms, RILL_BUS_FROM_OLDEST), 0);
  rill_bus_event_t ev[4];
  size_t n;
  cr_expect_eq(rill_bus_poll(c, NULL, (rill_bus_order_t)5, ev, 4, &n), RILL_EINVAL);
  cr_expect_eq(rill_bus_poll(c, NULL, RILL_BUS_ORDER_SHARD, ev, 4, &n), 0);
  cr_expect_eq(n, 0);
  rill_bus_cursor_destroy(c);
  rill_bus_memsink_destroy(ms);
}

Test(poll, shard_order_every_event_once) {
  rig_t g;
  rig_open(&g, 0, 0, NULL);
  publish_n(&g, 0, 5000);
  rig_drain(&g);
  rill_bus_memsink_stats_t st;
  rill_bus_memsink_stats(g.ms, &st);
  cr_expect_eq(st.retained, 5000);
  cr_expect_eq(st.omitted, 0);
  for (size_t limit = 1; limit <= 256; limit *= 4) {
    rill_bus_cursor_t *c;
    cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_OLDEST), 0);
    static int seen[5000];
    uint64_t last[SHARDS];
    memset(seen, 0, sizeof seen);
    reset_seq(last);
    cr_expect_eq(drain_cursor(c, NULL, RILL_BUS_ORDER_SHARD, limit, seen, 5000, last), 5000);
    for (int s = 0; s < SHARDS; s++) {
      cr_expect_eq(last[s], 1249, "shard %d: seq dense from 0", s);
      cr_expect_eq(rill_bus_cursor_next_seq(c, (uint32_t)s), 1250);
    }
    cr_expect_eq(rill_bus_cursor_lost(c), 0);
    rill_bus_cursor_destroy(c);
  }
  rig_free(&g);
}

Test(poll, time_order_merges_shards) {
  rig_t g;
  rig_open(&g, 0, 0, NULL);
  /* One producer, keys in a scrambled order: merged by time, the events
   * come back in publish order (ties, if the clock gave any, by shard). */
  for (int i = 0; i < 3000; i++) {
    char buf[64];
    int len = snprintf(buf, sizeof buf, "{\"i\":%d,\"k\":%d}", i, i % 3);
    cr_assert_eq(rill_bus_publish_key(g.p, (uint64_t)i, buf, (uint32_t)len), 0);
  }
  rig_drain(&g);
  for (size_t limit = 1; limit <= 256; limit *= 16) {
    rill_bus_cursor_t *c;
    cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_OLDEST), 0);
    rill_bus_event_t ev[256];
    uint64_t last_ts = 0;
    int last_i = -1;
    size_t total = 0, n;
    do {
      cr_assert_eq(rill_bus_poll(c, NULL, RILL_BUS_ORDER_TIME, ev, limit, &n), 0);
      for (size_t k = 0; k < n; k++) {
        int i = event_i(&ev[k]);
        cr_assert_geq(ev[k].ts_ns, last_ts);
        if (ev[k].ts_ns > last_ts)
          cr_assert_gt(i, last_i, "publish order broken: %d after %d", i, last_i);
        last_ts = ev[k].ts_ns;
        last_i = i;
      }
      total += n;
    } while (n);
    cr_expect_eq(total, 3000);
    rill_bus_cursor_destroy(c);
  }
  rig_free(&g);
}

Test(poll, filter_in_both_orders) {
  rig_t g;
  rig_open(&g, 0, 0, NULL);
  publish_n(&g, 0, 3000);
  rig_drain(&g);
  rill_filter_t *f;
  const char *q = "{\"k\":1}";
  cr_assert_eq(rill_filter_compile(&f, q, strlen(q)), 0);
  for (int order = 0; order < 2; order++) {
    rill_bus_cursor_t *c;
    cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_OLDEST), 0);
    static int seen[3000];
    uint64_t last[SHARDS];
    memset(seen, 0, sizeof seen);
    reset_seq(last);
    size_t got = drain_cursor(c, f, (rill_bus_order_t)order, 64, seen, 3000, last);
    cr_expect_eq(got, 1000);
    for (int i = 0; i < 3000; i++)
      cr_assert_eq(seen[i], i % 3 == 1, "event %d", i);
    /* Rejected events are passed, not left pending. */
    for (int s = 0; s < SHARDS; s++)
      cr_expect_eq(rill_bus_cursor_next_seq(c, (uint32_t)s), 750);
    rill_bus_cursor_destroy(c);
  }
  rill_filter_destroy(f);
  rig_free(&g);
}

Test(poll, from_now_sees_only_later_events) {
  rig_t g;
  rig_open(&g, 0, 0, NULL);
  publish_n(&g, 0, 100);
  /* Let the worker deliver the first hundred before the cursor joins. */
  rill_bus_memsink_stats_t st = {0};
  while (st.retained < 100)
    rill_bus_memsink_stats(g.ms, &st);
  rill_bus_cursor_t *c;
  cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_NOW), 0);
  publish_n(&g, 100, 200);
  rig_drain(&g);
  static int seen[200];
  uint64_t last[SHARDS];
  reset_seq(last);
  cr_expect_eq(drain_cursor(c, NULL, RILL_BUS_ORDER_SHARD, 64, seen, 200, last), 100);
  for (int i = 0; i < 200; i++)
    cr_assert_eq(seen[i], i >= 100, "event %d", i);
  rill_bus_cursor_destroy(c);
  rig_free(&g);
}

/* A consumer that stops and starts again from its saved cursor sees every
 * event exactly once: some before the restart, the rest after, including
 * events published while it was down. */
Test(poll, cursor_resumes_after_consumer_restart) {
  rig_t g;
  rig_open(&g, 0, 0, NULL);
  publish_n(&g, 0, 2000);
  rill_bus_memsink_stats_t st = {0};
  while (st.retained < 2000)
    rill_bus_memsink_stats(g.ms, &st);
  static int seen[4000];
  uint64_t last[SHARDS];
  reset_seq(last);
  rill_bus_cursor_t *c;
  cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_OLDEST), 0);
  rill_bus_event_t ev[100];
  size_t n, first = 0;
  for (int k = 0; k < 7; k++) {
    cr_assert_eq(rill_bus_poll(c, NULL, RILL_BUS_ORDER_TIME, ev, 100, &n), 0);
    for (size_t j = 0; j < n; j++) {
      int i = event_i(&ev[j]);
      cr_assert_eq(seen[i], 0);
      seen[i] = 1;
      last[ev[j].shard] = ev[j].seq;
    }
    first += n;
  }
  cr_expect_eq(first, 700);
  uint8_t saved[256];
  size_t len = 0;
  cr_expect_eq(rill_bus_cursor_save(c, saved, 10, &len), RILL_ENOBUFS);
  cr_expect_eq(len, 32 + 16 * SHARDS);
  cr_assert_eq(rill_bus_cursor_save(c, saved, sizeof saved, &len), 0);
  cr_expect_eq(len, rill_bus_cursor_size(c));
  rill_bus_cursor_destroy(c); /* the consumer goes away */
  publish_n(&g, 2000, 4000);
  rig_drain(&g);
  cr_assert_eq(rill_bus_cursor_load(&c, g.ms, saved, len), 0, "%s", rill_errmsg());
  size_t rest = drain_cursor(c, NULL, RILL_BUS_ORDER_SHARD, 64, seen, 4000, last);
  cr_expect_eq(first + rest, 4000);
  for (int i = 0; i < 4000; i++)
    cr_assert_eq(seen[i], 1, "event %d", i);
  cr_expect_eq(rill_bus_cursor_lost(c), 0);
  rill_bus_cursor_destroy(c);
  rig_free(&g);
}

Test(poll, hostile_saved_cursors) {
  rig_t g;
  rig_open(&g, 0, 0, NULL);
  publish_n(&g, 0, 40);
  rig_drain(&g);
  rill_bus_cursor_t *c;
  cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_OLDEST), 0);
  rill_bus_event_t ev[8];
  size_t n;
  cr_assert_eq(rill_bus_poll(c, NULL, RILL_BUS_ORDER_SHARD, ev, 8, &n), 0);
  uint8_t good[96], b[96];
  size_t len;
  cr_assert_eq(rill_bus_cursor_save(c, good, sizeof good, &len), 0);
  rill_bus_cursor_destroy(c);
  rill_bus_cursor_t *out = (void *)1;
  /* Every single-bit flip is refused, never loaded as some other position. */
  for (size_t bit = 0; bit < len * 8; bit++) {
    memcpy(b, good, len);
    b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    int rc = rill_bus_cursor_load(&out, g.ms, b, len);
    cr_assert(rc == RILL_EVERSION || rc == RILL_ECORRUPT || rc == RILL_EINVAL, "bit %zu: %d", bit,
              rc);
    cr_assert_null(out);
  }
  for (size_t l = 0; l < len; l++)
    cr_assert_eq(rill_bus_cursor_load(&out, g.ms, good, l) < 0, 1, "truncated to %zu", l);
  /* Another sink, the same shape: refused by identity. */
  rill_bus_memsink_t *other;
  cr_assert_eq(rill_bus_memsink_create(&other, &(rill_bus_memsink_opts_t){.shards = SHARDS}), 0);
  cr_expect_eq(rill_bus_cursor_load(&out, other, good, len), RILL_EINVAL);
  rill_bus_memsink_destroy(other);
  rill_bus_memsink_t *narrow;
  cr_assert_eq(rill_bus_memsink_create(&narrow, &(rill_bus_memsink_opts_t){.shards = 2}), 0);
  cr_expect_eq(rill_bus_cursor_load(&out, narrow, good, len), RILL_EINVAL);
  rill_bus_memsink_destroy(narrow);
  /* A well-formed save of a position off the record grid: loads (the
   * checksum is right) but poll says the window holds no such record. */
  cr_assert_eq(rill_bus_cursor_load(&c, g.ms, good, len), 0);
  memcpy(b, good, len);
  uint64_t pos;
  memcpy(&pos, b + 24, 8);
  pos += 32; /* into the payload of shard 0's next record */
  memcpy(b + 24, &pos, 8);
  uint64_t sum = rill_hash64(b, len - 8);
  memcpy(b + len - 8, &sum, 8);
  rill_bus_cursor_destroy(c);
  cr_assert_eq(rill_bus_cursor_load(&c, g.ms, b, len), 0);
  cr_expect_eq(rill_bus_poll(c, NULL, RILL_BUS_ORDER_SHARD, ev, 8, &n), RILL_ECORRUPT);
  rill_bus_cursor_destroy(c);
  rig_free(&g);
}

/* Sets shard s's position and seq in a saved cursor and rights its
 * checksum: what a hostile save (or a damaged one whose hash was redone)
 * looks like. */
static void forge_cursor(uint8_t *b, size_t len, uint32_t s, uint64_t pos, uint64_t seq) {
  memcpy(b + 24 + 16 * s, &pos, 8);
  memcpy(b + 32 + 16 * s, &seq, 8);
  uint64_t sum = rill_hash64(b, len - 8);
  memcpy(b + len - 8, &sum, 8);
}

/* A position is held to what the window has been written, like the seq:
 * one past the writer's end, or one with fewer bytes before the end than
 * the records its seq leaves there take, never came from this sink (and
 * a position past the end used to load, then poll as a lapped cursor). */
Test(poll, saved_cursor_position_past_the_writer_is_refused) {
  rig_t g;
  rig_open(&g, 0, 0, NULL);
  publish_n(&g, 0, 40);
  rig_drain(&g);
  rill_bus_cursor_t *c;
  cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_OLDEST), 0);
  uint8_t good[96], b[96];
  size_t len;
  cr_assert_eq(rill_bus_cursor_save(c, good, sizeof good, &len), 0);
  rill_bus_cursor_destroy(c);
  /* Shard 0's end: a cursor that read everything. */
  cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_NOW), 0);
  uint8_t end[96];
  cr_assert_eq(rill_bus_cursor_save(c, end, sizeof end, &len), 0);
  rill_bus_cursor_destroy(c);
  uint64_t tail, written;
  memcpy(&tail, end + 24, 8);
  memcpy(&written, end + 32, 8);
  cr_assert_eq(written, 10);
  struct {
    uint64_t pos, seq;
    int rc;
  } cases[] = {
      {tail, written, 0},                  /* the end itself */
      {0, 0, 0},                           /* the start */
      {tail + 16, written, RILL_ECORRUPT}, /* past the end */
      {tail + 16, 0, RILL_ECORRUPT},       /* past the end, seq at the start */
      {UINT64_MAX & ~15ull, 0, RILL_ECORRUPT},
      {tail - 16, 0, RILL_ECORRUPT}, /* 10 records cannot fit in 16 bytes */
      {tail, 0, RILL_ECORRUPT},      /* at the end with records still to read */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    memcpy(b, good, len);
    forge_cursor(b, len, 0, cases[i].pos, cases[i].seq);
    rill_bus_cursor_t *out = NULL;
    int rc = rill_bus_cursor_load(&out, g.ms, b, len);
    cr_expect_eq(rc, cases[i].rc, "case %zu (pos %llu, seq %llu): %d %s", i,
                 (unsigned long long)cases[i].pos, (unsigned long long)cases[i].seq, rc,
                 rill_errmsg());
    rill_bus_cursor_destroy(out);
  }
  rig_free(&g);
}

Test(poll, lapped_cursor_counts_exactly_what_it_lost) {
  rig_t g;
  rig_open(&g, 4096, 0, NULL);
  rill_bus_cursor_t *c;
  cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_OLDEST), 0);
  /* All to shard 0; each record is 32 + 16..32 bytes: 4096 holds ~100. */
  for (int i = 0; i < 1000; i++) {
    char buf[64];
    int len = snprintf(buf, sizeof buf, "{\"i\":%d,\"k\":%d}", i * SHARDS, 0);
    cr_assert_eq(rill_bus_publish_key(g.p, 0, buf, (uint32_t)len), 0);
  }
  rig_drain(&g);
  rill_bus_event_t ev[256];
  size_t n, got = 0;
  int rc = rill_bus_poll(c, NULL, RILL_BUS_ORDER_SHARD, ev, 256, &n);
  cr_expect_eq(rc, RILL_ELAGGED);
  cr_assert_gt(n, 0);
  got += n;
  uint64_t first_seq = ev[0].seq;
  cr_expect_eq(rill_bus_cursor_lost(c), first_seq);
  cr_expect_eq(event_i(&ev[0]), (int)first_seq * SHARDS);
  for (;;) {
    cr_assert_eq(rill_bus_poll(c, NULL, RILL_BUS_ORDER_SHARD, ev, 256, &n), 0);
    if (!n)
      break;
    got += n;
  }
  cr_expect_eq(got + rill_bus_cursor_lost(c), 1000);
  cr_expect_eq(rill_bus_cursor_next_seq(c, 0), 1000);
  rill_bus_cursor_destroy(c);
  rig_free(&g);
}

Test(poll, events_too_large_for_the_window_are_omitted_and_counted) {
  rig_t g;
  rig_open(&g, 4096, 1000, NULL);
  size_t max = rill_bus_memsink_max_payload(g.ms);
  cr_assert_eq(max, 4096 / 8 - 32);
  static char big[1000];
  memset(big, 'x', sizeof big);
  cr_assert_eq(rill_bus_publish_key(g.p, 0, "{\"i\":0}", 7), 0);
  cr_assert_eq(rill_bus_publish_key(g.p, 0, big, (uint32_t)max + 1), 0);
  cr_assert_eq(rill_bus_publish_key(g.p, 0, big, (uint32_t)max), 0);
  rig_drain(&g);
  rill_bus_memsink_stats_t st;
  rill_bus_memsink_stats(g.ms, &st);
  cr_expect_eq(st.retained, 2);
  cr_expect_eq(st.omitted, 1);
  rill_bus_cursor_t *c;
  cr_assert_eq(rill_bus_cursor_create(&c, g.ms, RILL_BUS_FROM_OLDEST), 0);
  rill_bus_event_t ev[4];
  size_t n;
  cr_assert_eq(rill_bus_poll(c, NULL, RILL_BUS_ORDER_SHARD, ev, 4, &n), 0);
  cr_assert_eq(n, 2);
  cr_expect_eq(ev[0].seq, 0);
  cr_expect_eq(ev[1].seq, 2, "the omitted event leaves a gap in seq");
  cr_expect_eq(ev[1].len, max);
  cr_expect_eq(memcmp(ev[1].data, big, max), 0);
  rill_bus_cursor_destroy(c);
  rig_free(&g);
}

Test(poll, tee_passes_every_batch_on) {
  rill_bus_counters_t cnt;
  rill_bus_sink_t counting;
  rill_bus_sink_counting(&counting, &cnt);
  rig_t g;
  rig_open(&g, 0, 0, &counting);
  publish_n(&g, 0, 1000);
  rig_drain(&g);
  cr_expect_eq(cnt.events, 1000);
  cr_expect_eq(cnt.flushes, 1);
  cr_expect_eq(cnt.closes, 1);
  rig_free(&g);
}

Test(poll, polling_allocates_nothing) {
  rig_t g;
  rig_open(&g, 0, 0, NULL);
  publish_n(&g, 0, 4000);
  rig_drain(&g);
  rill_filter_t *f;
  const char *q = "{\"k\":{\"$ne\":2}}";
  cr_assert_eq(rill_filter_compile(&f, q, strlen(q)), 0);
  rill_bus_cursor_t *a, *b;
  cr_assert_eq(rill_bus_cursor_create(&a, g.ms, RILL_BUS_FROM_OLDEST), 0);
  cr_assert_eq(rill_bus_cursor_create(&b, g.ms, RILL_BUS_FROM_OLDEST), 0);
  rill_bus_event_t ev[32];
  size_t n, total = 0;
  uint64_t before = rill_mem_allocs_thread();
  for (int k = 0; k < 200; k++) {
    cr_assert_eq(rill_bus_poll(a, f, RILL_BUS_ORDER_SHARD, ev, 32, &n), 0);
    total += n;
    cr_assert_eq(rill_bus_poll(b, NULL, RILL_BUS_ORDER_TIME, ev, 32, &n), 0);
    total += n;
  }
  cr_expect_eq(rill_mem_allocs_thread(), before);
  cr_expect_eq(total, 2667 + 4000);
  rill_bus_cursor_destroy(a);
  rill_bus_cursor_destroy(b);
  rill_filter_destroy(f);
  rig_free(&g);
}
