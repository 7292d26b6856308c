/*
 * The log's behaviour through its API: append in every form and read back,
 * segments rolling, reopening, the writer lock, read-only opens, range
 * reads with budgets, slices outliving the log, tail waits, sync policies,
 * and no allocation per append.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rill/bus.h"
#include "rill/log.h"

static char dir[64];

static void mkdir_tmp(void) {
  snprintf(dir, sizeof dir, "/tmp/rill-test-log-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(log, .init = mkdir_tmp, .fini = rm_tmp);

/* Record i: i % 300 + 1 bytes of a pattern that depends on i. */
static uint32_t rec_len(uint64_t i) { return (uint32_t)(i % 300 + 1); }

static void rec_fill(uint8_t *b, uint64_t i) {
  for (uint32_t k = 0; k < rec_len(i); k++)
    b[k] = (uint8_t)(i * 31 + k);
}

static void expect_rec(const rill_log_record_t *r, uint64_t i) {
  uint8_t b[512];
  rec_fill(b, i);
  cr_assert_eq(r->seq, i);
  cr_assert_eq(r->payload.len, rec_len(i), "record %llu: %zu bytes", (unsigned long long)i,
               r->payload.len);
  cr_assert_eq(memcmp(r->payload.data, b, rec_len(i)), 0, "record %llu differs",
               (unsigned long long)i);
}

static rill_log_t *open_log(rill_log_opts_t o) {
  rill_log_t *l = NULL;
  int rc = rill_log_open(&l, dir, "t", &o);
  cr_assert_eq(rc, 0, "open: %s", rill_errmsg());
  return l;
}

static void append_n(rill_log_t *l, uint64_t from, uint64_t to) {
  uint8_t b[512];
  for (uint64_t i = from; i < to; i++) {
    rec_fill(b, i);
    uint64_t seq;
    cr_assert_eq(rill_log_append(l, b, rec_len(i), &seq), 0, "append: %s", rill_errmsg());
    cr_assert_eq(seq, i);
  }
}

static void read_all_len(rill_log_t *l, uint64_t n, uint32_t len) {
  for (uint64_t i = 0; i < n; i++) {
    rill_log_record_t r;
    cr_assert_eq(rill_log_read(l, i, &r), 0, "read %llu: %s", (unsigned long long)i, rill_errmsg());
    cr_assert_eq(r.payload.len, len);
    rill_buf_release(&r.payload);
  }
}

static void read_all(rill_log_t *l, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    rill_log_record_t r;
    cr_assert_eq(rill_log_read(l, i, &r), 0, "read %llu: %s", (unsigned long long)i, rill_errmsg());
    expect_rec(&r, i);
    rill_buf_release(&r.payload);
  }
}

/* Records [0, n) read 64 at a time with rill_log_read_range. */
static void read_all_ranges(rill_log_t *l, uint64_t n) {
  rill_log_record_t out[64];
  size_t got;
  for (uint64_t seq = 0; seq < n; seq += got) {
    cr_assert_eq(rill_log_read_range(l, seq, 64, SIZE_MAX, out, &got), 0, "%s", rill_errmsg());
    cr_assert_gt(got, 0);
    for (size_t k = 0; k < got; k++) {
      expect_rec(&out[k], seq + k);
      rill_buf_release(&out[k].payload);
    }
  }
}

Test(log, bad_names_and_options) {
  rill_log_t *l = NULL;
  const char *bad[] = {"", ".hidden", "a/b", "sp ace", "é"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_expect_eq(rill_log_open(&l, dir, bad[i], NULL), RILL_EINVAL, "topic '%s'", bad[i]);
  cr_expect_eq(rill_log_open(&l, dir, "t", &(rill_log_opts_t){.segment_bytes = 5000}), RILL_EINVAL);
  cr_expect_eq(rill_log_open(&l, dir, "t", &(rill_log_opts_t){.segment_bytes = 4096}), RILL_EINVAL);
  cr_expect_eq(rill_log_open(&l, dir, "t", &(rill_log_opts_t){.sync = (rill_log_sync_t)9}),
               RILL_EINVAL);
  cr_expect_eq(rill_log_open(&l, dir, "missing", &(rill_log_opts_t){.no_create = true}),
               RILL_ENOENT);
  cr_expect_null(l);
}

Test(log, append_read_reopen) {
  rill_log_t *l = open_log((rill_log_opts_t){0});
  cr_expect_eq(rill_log_first(l), 0);
  cr_expect_eq(rill_log_next(l), 0);
  rill_log_record_t r;
  cr_expect_eq(rill_log_read(l, 0, &r), RILL_ENOENT);
  append_n(l, 0, 2000);
  cr_expect_eq(rill_log_next(l), 2000);
  read_all(l, 2000);
  cr_expect_eq(rill_log_read(l, 2000, &r), RILL_ENOENT);
  cr_assert_eq(rill_log_close(l), 0);
  l = open_log((rill_log_opts_t){0});
  cr_expect_eq(rill_log_next(l), 2000);
  cr_expect_eq(rill_log_durable(l), 2000);
  read_all(l, 2000);
  append_n(l, 2000, 2100);
  read_all(l, 2100);
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  cr_expect_eq(st.recovered_torn, 0);
  cr_expect_eq(st.segments, 1);
  cr_assert_eq(rill_log_close(l), 0);
}

/* Bytes the topic's files take on disk (allocated blocks). */
static uint64_t topic_blocks(void) {
  char p[128];
  snprintf(p, sizeof p, "%s/t", dir);
  DIR *d = opendir(p);
  cr_assert_not_null(d);
  uint64_t total = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char f[400];
    struct stat st;
    snprintf(f, sizeof f, "%s/%s", p, e->d_name);
    if (e->d_name[0] != '.' && stat(f, &st) == 0)
      total += (uint64_t)st.st_blocks * 512;
  }
  closedir(d);
  return total;
}

/* A topic takes disk as records come, not a whole segment up front: a new
 * topic with one record on the default 128 MiB segments used to take
 * 129 MiB (the segment and a 1 MiB index, preallocated). */
Test(log, disk_grows_with_the_records) {
  rill_log_t *l = open_log((rill_log_opts_t){0});
  append_n(l, 0, 1);
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  uint64_t used = topic_blocks();
  cr_expect_lt(used, 256u << 10, "a one-record topic takes %llu bytes", (unsigned long long)used);
  cr_expect_lt(st.disk_bytes, 256u << 10);
  cr_expect_geq(st.disk_bytes, st.bytes);
  /* About 3 MiB of records: the files follow, within a factor of two. */
  uint64_t n = 20000;
  append_n(l, 1, n);
  rill_log_stats(l, &st);
  cr_expect_eq(st.segments, 1);
  cr_expect_geq(st.disk_bytes, st.bytes);
  cr_expect_lt(st.disk_bytes, 2 * st.bytes + (256u << 10), "%llu bytes on disk for %llu",
               (unsigned long long)st.disk_bytes, (unsigned long long)st.bytes);
  cr_expect_lt(topic_blocks(), 2 * st.bytes + (256u << 10));
  cr_assert_eq(rill_log_close(l), 0);
  /* Reopened (a file shorter than the segment size), then a reader. */
  l = open_log((rill_log_opts_t){0});
  cr_expect_eq(rill_log_next(l), n);
  read_all(l, n);
  append_n(l, n, n + 10);
  cr_assert_eq(rill_log_close(l), 0);
  l = open_log((rill_log_opts_t){.read_only = true});
  read_all(l, n + 10);
  rill_log_close(l);
}

/* The disk budget: two logs share one; growth past its limit is refused
 * before anything is written, naming the limit; what was appended stays
 * readable; retention gives the bytes back and appends work again; the
 * budget always equals what the files hold. */
Test(log, budget_bounds_the_files) {
  rill_log_budget_t b = {.limit = 400 << 10, .what = "test's max_disk"};
  rill_log_opts_t o = {.segment_bytes = 64 << 10, .budget = &b};
  rill_log_t *l = open_log(o), *m = NULL;
  cr_assert_eq(rill_log_open(&m, dir, "u", &o), 0, "%s", rill_errmsg());
  rill_log_stats_t st, sm;
  rill_log_stats(l, &st);
  rill_log_stats(m, &sm);
  cr_expect_eq(rill_log_budget_used(&b), st.disk_bytes + sm.disk_bytes);
  static const uint8_t rec[1000];
  uint64_t n = 0;
  int rc;
  while ((rc = rill_log_append(l, rec, 1000, NULL)) == 0)
    n++;
  cr_assert_eq(rc, RILL_ENOSPC, "%d: %s", rc, rill_errmsg());
  cr_expect_not_null(strstr(rill_errmsg(), "test's max_disk (409600 bytes) is reached"), "%s",
                     rill_errmsg());
  cr_expect_eq(rill_log_next(l), n, "nothing of the refused record");
  rill_log_stats(l, &st);
  rill_log_stats(m, &sm);
  cr_expect_eq(rill_log_budget_used(&b), st.disk_bytes + sm.disk_bytes);
  cr_expect_leq(rill_log_budget_used(&b), b.limit);
  cr_expect_gt(n, 200, "only %llu records fit", (unsigned long long)n);
  /* The other log is held to it too. */
  for (int i = 0; i < 200 && (rc = rill_log_append(m, rec, 1000, NULL)) == 0; i++)
    ;
  cr_expect_eq(rc, RILL_ENOSPC);
  cr_expect_leq(rill_log_budget_used(&b), b.limit);
  for (uint64_t i = 0; i < n; i++) {
    rill_log_record_t r;
    cr_assert_eq(rill_log_read(l, i, &r), 0, "read %llu: %s", (unsigned long long)i, rill_errmsg());
    rill_buf_release(&r.payload);
  }
  cr_assert_eq(rill_log_close(l), 0);
  /* Reopened with retention: dropping segments gives their bytes back
   * (the reopen charges nothing: the files were counted when grown). */
  uint64_t before = rill_log_budget_used(&b);
  o.retain_count = 1;
  l = open_log(o);
  cr_expect_eq(rill_log_budget_used(&b), before);
  cr_assert_eq(rill_log_retain(l), 0);
  cr_expect_lt(rill_log_budget_used(&b), before);
  rill_log_stats(l, &st);
  rill_log_stats(m, &sm);
  cr_expect_eq(rill_log_budget_used(&b), st.disk_bytes + sm.disk_bytes);
  cr_expect_eq(rill_log_append(l, rec, 1000, NULL), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_log_close(l), 0);
  cr_assert_eq(rill_log_close(m), 0);
}

/* A batch the budget cuts short in the middle stores none of it: the
 * records before the one refused room are taken back, so a publisher can
 * send the whole batch again. */
Test(log, batch_refused_by_the_budget_is_all_or_nothing) {
  /* Exactly a new topic's first allocation: the segment's 64 KiB and the
   * index's 4 KiB; nothing can grow after. */
  rill_log_budget_t b = {.limit = (64 + 4) << 10};
  rill_log_t *l = open_log((rill_log_opts_t){.segment_bytes = 256 << 10, .budget = &b});
  static const uint8_t rec[1000];
  for (int i = 0; i < 50; i++)
    cr_assert_eq(rill_log_append(l, rec, sizeof rec, NULL), 0, "%s", rill_errmsg());
  rill_iov_t batch[20];
  for (int i = 0; i < 20; i++)
    batch[i] = (rill_iov_t){rec, sizeof rec};
  uint64_t first = 0;
  size_t done = 99;
  cr_assert_eq(rill_log_append_batch(l, batch, 20, &first, &done), RILL_ENOSPC, "%s",
               rill_errmsg());
  cr_expect_eq(done, 0);
  cr_expect_eq(rill_log_next(l), 50);
  rill_log_record_t r;
  cr_expect_eq(rill_log_read(l, 50, &r), RILL_ENOENT);
  /* What fits still goes, at the sequence the refused batch would have had. */
  cr_assert_eq(rill_log_append_batch(l, batch, 5, &first, &done), 0, "%s", rill_errmsg());
  cr_expect_eq(first, 50);
  cr_assert_eq(rill_log_close(l), 0);
  l = open_log((rill_log_opts_t){.segment_bytes = 256 << 10});
  cr_expect_eq(rill_log_next(l), 55);
  read_all_len(l, 55, sizeof rec);
  cr_assert_eq(rill_log_close(l), 0);
}

/* A topic whose next segment the budget refuses drops the old segments
 * its retention allows, and the append goes on: retention runs after a
 * roll, and a refused roll never comes. */
Test(log, retention_makes_room_when_the_budget_is_full) {
  rill_log_budget_t b = {.limit = 1 << 20};
  rill_log_t *l =
      open_log((rill_log_opts_t){.segment_bytes = 64 << 10, .retain_count = 50, .budget = &b});
  static const uint8_t rec[1000];
  /* Two segments: at the roll, the first was still needed (fewer than 50
   * records after it); now it is not. */
  rill_log_stats_t st;
  uint64_t n = 0;
  for (;; n++) {
    rill_log_stats(l, &st);
    if (st.segments == 2 && st.next - 62 >= 55)
      break;
    cr_assert_eq(rill_log_append(l, rec, sizeof rec, NULL), 0, "%s", rill_errmsg());
  }
  cr_assert_eq(st.first, 0);
  rill_log_budget_charge(&b, b.limit - rill_log_budget_used(&b)); /* others took the rest */
  for (int i = 0; i < 20; i++)
    cr_assert_eq(rill_log_append(l, rec, sizeof rec, NULL), 0, "append %d: %s", i, rill_errmsg());
  rill_log_stats(l, &st);
  cr_expect_gt(st.first, 0, "nothing dropped");
  cr_expect_leq(rill_log_budget_used(&b), b.limit);
  /* Batches too (small enough that the segment they start leaves the
   * 50 records retain_count keeps in the one before). */
  rill_iov_t batch[10];
  for (int i = 0; i < 10; i++)
    batch[i] = (rill_iov_t){rec, sizeof rec};
  for (int k = 0; k < 20; k++)
    cr_assert_eq(rill_log_append_batch(l, batch, 10, NULL, NULL), 0, "batch %d: %s", k,
                 rill_errmsg());
  cr_assert_eq(rill_log_close(l), 0);
}

static uint64_t wall_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* A record's timestamp is CLOCK_REALTIME at append (read at most 1 ms
 * before, moved on by the TSC in between), across pauses long enough to
 * re-read it: not an offset taken at open that drifts and misses steps. */
Test(log, timestamps_are_the_wall_clock) {
  rill_log_t *l = open_log((rill_log_opts_t){0});
  const uint64_t slack = 1000000; /* WALL_ANCHOR_NS */
  for (uint64_t i = 0; i < 40; i++) {
    uint64_t before = wall_now();
    append_n(l, i, i + 1);
    uint64_t after = wall_now();
    rill_log_record_t r;
    cr_assert_eq(rill_log_read(l, i, &r), 0);
    cr_expect(r.ts_ns + slack >= before && r.ts_ns <= after + slack,
              "record %llu: ts %llu outside [%llu, %llu]", (unsigned long long)i,
              (unsigned long long)r.ts_ns, (unsigned long long)before, (unsigned long long)after);
    rill_buf_release(&r.payload);
    if (i % 8 == 7)
      usleep(1500); /* past the anchor's age: the wall clock is read again */
  }
  cr_assert_eq(rill_log_close(l), 0);
}

Test(log, segments_roll_and_reopen) {
  rill_log_t *l = open_log((rill_log_opts_t){.segment_bytes = 64 << 10});
  append_n(l, 0, 3000); /* ~ 480 KB of records: several 64 KiB segments */
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  cr_expect_geq(st.segments, 7);
  read_all(l, 3000);
  cr_assert_eq(rill_log_close(l), 0);
  /* The topic keeps its segment size whatever a later open asks. */
  l = open_log((rill_log_opts_t){.segment_bytes = 1 << 20});
  cr_expect_eq(rill_log_next(l), 3000);
  read_all(l, 3000);
  cr_expect_eq(rill_log_max_payload(l), (64 << 10) - 64 - 32);
  static uint8_t big[(64 << 10)];
  cr_expect_eq(rill_log_append(l, big, rill_log_max_payload(l) + 1, NULL), RILL_EMSGSIZE);
  cr_expect_eq(rill_log_append(l, big, rill_log_max_payload(l), NULL), 0);
  cr_assert_eq(rill_log_close(l), 0);
}

Test(log, appendv_batch_reserve) {
  rill_log_t *l = open_log((rill_log_opts_t){.segment_bytes = 64 << 10});
  uint8_t b[512];
  rec_fill(b, 0);
  rill_iov_t parts[3] = {{b, 1}, {NULL, 0}, {b + 1, rec_len(0) - 1}};
  uint64_t seq;
  cr_assert_eq(rill_log_appendv(l, parts, 3, &seq), 0);
  cr_expect_eq(seq, 0);
  static uint8_t bufs[600][512];
  rill_iov_t recs[600];
  for (uint64_t i = 1; i <= 600; i++) {
    rec_fill(bufs[i - 1], i);
    recs[i - 1] = (rill_iov_t){bufs[i - 1], rec_len(i)};
  }
  uint64_t first;
  size_t done;
  cr_assert_eq(rill_log_append_batch(l, recs, 600, &first, &done), 0); /* rolls inside */
  cr_expect_eq(first, 1);
  cr_expect_eq(done, 600);
  void *p;
  cr_assert_eq(rill_log_reserve(l, rec_len(601), &p), 0);
  rec_fill(p, 601);
  cr_assert_eq(rill_log_commit(l, &seq), 0);
  cr_expect_eq(seq, 601);
  cr_assert_eq(rill_log_reserve(l, 100, &p), 0);
  memset(p, 0xee, 100);
  cr_assert_eq(rill_log_cancel(l), 0);
  cr_expect_eq(rill_log_cancel(l), RILL_EINVAL);
  append_n(l, 602, 700);
  read_all(l, 700);
  cr_expect_eq(rill_log_commit(l, &seq), RILL_EINVAL);
  cr_assert_eq(rill_log_close(l), 0);
  l = open_log((rill_log_opts_t){0});
  read_all(l, 700);
  cr_assert_eq(rill_log_close(l), 0);
}

Test(log, one_writer_many_readers) {
  rill_log_t *w = open_log((rill_log_opts_t){0});
  append_n(w, 0, 100);
  rill_log_t *w2 = NULL;
  cr_expect_eq(rill_log_open(&w2, dir, "t", NULL), RILL_EBUSY, "a second writer");
  cr_expect_null(w2);
  rill_log_t *r = NULL;
  cr_assert_eq(rill_log_open(&r, dir, "t", &(rill_log_opts_t){.read_only = true}), 0, "%s",
               rill_errmsg());
  cr_expect_eq(rill_log_next(r), 100);
  read_all(r, 100);
  cr_expect_eq(rill_log_append(r, "x", 1, NULL), RILL_EPERM);
  cr_assert_eq(rill_log_close(r), 0);
  cr_assert_eq(rill_log_close(w), 0);
  cr_assert_eq(rill_log_open(&w2, dir, "t", NULL), 0, "the lock went with close");
  cr_assert_eq(rill_log_close(w2), 0);
}

Test(log, range_budgets) {
  rill_log_t *l = open_log((rill_log_opts_t){.segment_bytes = 64 << 10});
  append_n(l, 0, 1000);
  rill_log_record_t out[64];
  size_t n;
  cr_assert_eq(rill_log_read_range(l, 10, 64, SIZE_MAX, out, &n), 0);
  cr_expect_eq(n, 64);
  for (size_t k = 0; k < n; k++) {
    expect_rec(&out[k], 10 + k);
    rill_buf_release(&out[k].payload);
  }
  /* Budget: records 300.. are 1, 2, ... bytes; 10 bytes take 1+2+3+4. */
  cr_assert_eq(rill_log_read_range(l, 300, 64, 10, out, &n), 0);
  cr_expect_eq(n, 4);
  for (size_t k = 0; k < n; k++)
    rill_buf_release(&out[k].payload);
  /* One record larger than the budget still comes, alone. */
  cr_assert_eq(rill_log_read_range(l, 299, 64, 10, out, &n), 0);
  cr_expect_eq(n, 1);
  cr_expect_eq(out[0].payload.len, 300);
  rill_buf_release(&out[0].payload);
  /* Across segment boundaries, to the end. */
  read_all_ranges(l, 1000);
  cr_expect_eq(rill_log_read_range(l, 1000, 64, SIZE_MAX, out, &n), RILL_ENOENT);
  cr_expect_eq(n, 0);
  cr_assert_eq(rill_log_close(l), 0);
}

/* A slice keeps its segment mapped after the log is closed. */
Test(log, slices_outlive_the_log) {
  rill_log_t *l = open_log((rill_log_opts_t){0});
  append_n(l, 0, 10);
  rill_log_record_t r;
  cr_assert_eq(rill_log_read(l, 7, &r), 0);
  cr_assert_eq(rill_log_close(l), 0);
  expect_rec(&r, 7); /* ASan would see a read of unmapped memory */
  cr_expect_eq(rill_buf_refs(&r.payload), 1);
  rill_buf_release(&r.payload);
}

typedef struct {
  rill_log_t *l;
  uint64_t from;
  int rc;
  uint64_t next_seen;
} waiter_t;

static void *wait_thread(void *arg) {
  waiter_t *w = arg;
  w->rc = rill_log_wait(w->l, w->from, 10000000000ull);
  w->next_seen = rill_log_next(w->l);
  return NULL;
}

Test(log, tail_waits) {
  rill_log_t *l = open_log((rill_log_opts_t){0});
  append_n(l, 0, 5);
  cr_expect_eq(rill_log_wait(l, 4, 0), 0, "record 4 is there");
  cr_expect_eq(rill_log_wait(l, 5, 1000000), RILL_ETIMEDOUT);
  waiter_t w = {l, 5, -1, 0};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, wait_thread, &w), 0);
  usleep(100000); /* let it reach its futex; the test holds either way */
  append_n(l, 5, 6);
  pthread_join(t, NULL);
  cr_expect_eq(w.rc, 0);
  cr_expect_geq(w.next_seen, 6);
  /* Close wakes a waiter with RILL_ECLOSED. */
  waiter_t w2 = {l, 100, -1, 0};
  cr_assert_eq(pthread_create(&t, NULL, wait_thread, &w2), 0);
  usleep(100000);
  cr_assert_eq(rill_log_close(l), 0);
  pthread_join(t, NULL);
  cr_expect_eq(w2.rc, RILL_ECLOSED);
}

Test(log, sync_policies_move_durable) {
  rill_log_t *l = open_log((rill_log_opts_t){.sync = RILL_LOG_SYNC_EVERY_N, .sync_every = 10});
  append_n(l, 0, 9);
  cr_expect_eq(rill_log_durable(l), 0);
  append_n(l, 9, 10);
  cr_expect_eq(rill_log_durable(l), 10);
  append_n(l, 10, 15);
  cr_expect_eq(rill_log_durable(l), 10);
  cr_assert_eq(rill_log_sync(l), 0);
  cr_expect_eq(rill_log_durable(l), 15);
  cr_assert_eq(rill_log_close(l), 0);
  l = open_log((rill_log_opts_t){.sync = RILL_LOG_SYNC_GROUP});
  append_n(l, 15, 20);
  cr_expect_eq(rill_log_durable(l), 20, "group commit returns durable");
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  cr_expect_geq(st.syncs, 5);
  cr_assert_eq(rill_log_close(l), 0);
}

typedef struct {
  rill_log_t *l;
  int id;
} app_t;

static void *group_appender(void *arg) {
  app_t *a = arg;
  for (int i = 0; i < 50; i++) {
    uint64_t v = (uint64_t)a->id << 32 | (uint64_t)i, seq;
    cr_assert_eq(rill_log_append(a->l, &v, sizeof v, &seq), 0);
    cr_assert_gt(rill_log_durable(a->l), seq, "returned before durable");
  }
  return NULL;
}

/* Concurrent appenders under group commit: each record once, each
 * appender's in order, fewer syncs than appends once they overlap. */
Test(log, group_commit_concurrent) {
  rill_log_t *l = open_log((rill_log_opts_t){.sync = RILL_LOG_SYNC_GROUP});
  pthread_t t[4];
  app_t a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (app_t){l, i};
    cr_assert_eq(pthread_create(&t[i], NULL, group_appender, &a[i]), 0);
  }
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  cr_expect_eq(rill_log_next(l), 200);
  int last[4] = {-1, -1, -1, -1};
  for (uint64_t s = 0; s < 200; s++) {
    rill_log_record_t r;
    cr_assert_eq(rill_log_read(l, s, &r), 0);
    uint64_t v;
    memcpy(&v, r.payload.data, 8);
    int id = (int)(v >> 32), i = (int)(uint32_t)v;
    cr_assert(id >= 0 && id < 4);
    cr_assert_eq(i, last[id] + 1, "appender %d: %d after %d", id, i, last[id]);
    last[id] = i;
    rill_buf_release(&r.payload);
  }
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  cr_expect_leq(st.syncs, 200);
  cr_assert_eq(rill_log_close(l), 0);
}

Test(log, appending_allocates_nothing) {
  rill_log_t *l = open_log((rill_log_opts_t){0});
  uint8_t b[64] = {0};
  append_n(l, 0, 1);
  uint64_t before = rill_mem_allocs_thread();
  for (int i = 0; i < 100000; i++)
    cr_assert_eq(rill_log_append(l, b, sizeof b, NULL), 0);
  cr_expect_eq(rill_mem_allocs_thread(), before);
  rill_log_record_t out[32];
  size_t n;
  before = rill_mem_allocs_thread();
  for (uint64_t s = 1; s < 100001; s += n) {
    cr_assert_eq(rill_log_read_range(l, s, 32, SIZE_MAX, out, &n), 0);
    for (size_t k = 0; k < n; k++)
      rill_buf_release(&out[k].payload);
  }
  cr_expect_eq(rill_mem_allocs_thread(), before);
  cr_assert_eq(rill_log_close(l), 0);
}

/* A read-only open follows a writer with refresh, into new segments. */
/* A successor the writer is still creating (the file there, nothing in
 * it yet) is not damage to a reader following it: refresh waits for it. */
Test(log, refresh_waits_for_a_segment_being_created) {
  rill_log_t *w = open_log((rill_log_opts_t){.segment_bytes = 64 << 10});
  append_n(w, 0, 100);
  cr_assert_eq(rill_log_close(w), 0);
  rill_log_t *r = NULL;
  cr_assert_eq(rill_log_open(&r, dir, "t", &(rill_log_opts_t){.read_only = true}), 0, "%s",
               rill_errmsg());
  char p[128];
  snprintf(p, sizeof p, "%s/t/%020llu.seg", dir, 100ull);
  for (int form = 0; form < 2; form++) {
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fclose(f);
    if (form == 1)
      cr_assert_eq(truncate(p, 64 << 10), 0); /* grown, header not yet written */
    cr_expect_eq(rill_log_refresh(r), 0, "form %d: %s", form, rill_errmsg());
    cr_expect_eq(rill_log_next(r), 100);
    cr_assert_eq(unlink(p), 0);
  }
  read_all(r, 100);
  cr_assert_eq(rill_log_close(r), 0);
}

Test(log, reader_follows_writer_with_refresh) {
  rill_log_t *w = open_log((rill_log_opts_t){.segment_bytes = 64 << 10});
  append_n(w, 0, 100);
  rill_log_t *r = NULL;
  cr_assert_eq(rill_log_open(&r, dir, "t", &(rill_log_opts_t){.read_only = true}), 0, "%s",
               rill_errmsg());
  cr_expect_eq(rill_log_next(r), 100);
  append_n(w, 100, 2000); /* several rolls */
  cr_expect_eq(rill_log_next(r), 100, "nothing new before refresh");
  cr_assert_eq(rill_log_refresh(r), 0, "%s", rill_errmsg());
  cr_expect_eq(rill_log_next(r), 2000);
  read_all(r, 2000);
  read_all_ranges(r, 2000);
  cr_expect_eq(rill_log_refresh(w), 0);
  cr_assert_eq(rill_log_close(w), 0);
  cr_assert_eq(rill_log_refresh(r), 0);
  cr_expect_eq(rill_log_next(r), 2000);
  cr_assert_eq(rill_log_close(r), 0);
}

/* Retention drops whole segments from the front, keeps at least what it
 * was asked to, leaves slices valid, survives a reopen. */
Test(log, retention_by_count_bytes_and_age) {
  rill_log_t *l = open_log((rill_log_opts_t){.segment_bytes = 64 << 10, .retain_count = 1000});
  append_n(l, 0, 200);
  rill_log_record_t early;
  cr_assert_eq(rill_log_read(l, 3, &early), 0);
  append_n(l, 200, 5000);
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  uint64_t first = rill_log_first(l);
  cr_expect_gt(first, 0, "old segments went");
  cr_expect_geq(rill_log_next(l) - first, 1000, "at least retain_count kept");
  cr_expect_lt(rill_log_next(l) - first, 1000 + 300, "no more than a segment's worth over");
  rill_log_record_t r;
  cr_expect_eq(rill_log_read(l, first - 1, &r), RILL_ENOENT);
  cr_assert_eq(rill_log_read(l, first, &r), 0);
  expect_rec(&r, first);
  rill_buf_release(&r.payload);
  expect_rec(&early, 3); /* its segment is gone from the topic, not from us */
  rill_buf_release(&early.payload);
  cr_assert_eq(rill_log_close(l), 0);
  l = open_log((rill_log_opts_t){0});
  cr_expect_eq(rill_log_first(l), first);
  cr_expect_eq(rill_log_next(l), 5000);
  cr_assert_eq(rill_log_close(l), 0);
  /* By bytes, applied on demand. */
  l = open_log((rill_log_opts_t){.retain_bytes = 100 << 10});
  cr_assert_eq(rill_log_retain(l), 0);
  rill_log_stats(l, &st);
  cr_expect_geq(st.bytes, 100 << 10);
  cr_expect_lt(st.bytes, (100 << 10) + (64 << 10));
  cr_assert_eq(rill_log_close(l), 0);
  /* By age: every sealed segment is older than 1 ns. */
  l = open_log((rill_log_opts_t){.retain_age_ns = 1});
  cr_assert_eq(rill_log_retain(l), 0);
  rill_log_stats(l, &st);
  cr_expect_eq(st.segments, 1);
  cr_assert_eq(rill_log_close(l), 0);
}

/* Bus events persist through the log sink and read back in order per
 * shard: the consumer's half of "poll them back". */
Test(log, bus_log_sink) {
  rill_log_t *l = open_log((rill_log_opts_t){.segment_bytes = 64 << 10});
  rill_bus_log_sink_t ls;
  rill_bus_sink_t sink;
  rill_bus_sink_log(&sink, &ls, l);
  rill_bus_t *bus;
  cr_assert_eq(
      rill_bus_create(
          &bus,
          &(rill_bus_opts_t){.shards = 4, .workers = 2, .sink = &sink, .policy = RILL_BUS_BLOCK}),
      0);
  rill_bus_producer_t *p;
  cr_assert_eq(rill_bus_producer_create(&p, bus), 0);
  for (uint32_t i = 0; i < 10000; i++) {
    uint32_t v[2] = {i % 4, i};
    cr_assert_eq(rill_bus_publish_key(p, i % 4, v, sizeof v), 0);
  }
  cr_assert_eq(rill_bus_shutdown(bus, 5000000000ull, NULL), 0);
  rill_bus_destroy(bus);
  cr_expect_eq(ls.appended, 10000);
  cr_expect_eq(ls.failed, 0);
  cr_expect_eq(rill_log_next(l), 10000);
  cr_expect_eq(rill_log_durable(l), 10000, "flush synced");
  int64_t last[4] = {-1, -1, -1, -1};
  for (uint64_t s = 0; s < 10000; s++) {
    rill_log_record_t r;
    cr_assert_eq(rill_log_read(l, s, &r), 0);
    uint32_t v[2];
    cr_assert_eq(r.payload.len, sizeof v);
    memcpy(v, r.payload.data, sizeof v);
    cr_assert_gt((int64_t)v[1], last[v[0]], "shard %u out of order", v[0]);
    last[v[0]] = v[1];
    rill_buf_release(&r.payload);
  }
  cr_assert_eq(rill_log_close(l), 0);
}

typedef struct {
  uint64_t next, lost, calls;
  int bad;
} subctx_t;

static void on_records(void *ctx, const rill_log_record_t *recs, size_t n, uint64_t lost) {
  subctx_t *c = ctx;
  c->lost += lost;
  c->next += lost;
  for (size_t k = 0; k < n; k++) {
    if (recs[k].seq != c->next || recs[k].payload.len != rec_len(recs[k].seq))
      c->bad++;
    c->next = recs[k].seq + 1;
  }
  __atomic_fetch_add(&c->calls, 1, __ATOMIC_RELEASE);
}

/* A subscriber gets every record in order; one that fell behind retention
 * is told how many it lost. */
Test(log, subscriber_callbacks) {
  rill_log_t *l = open_log((rill_log_opts_t){0});
  subctx_t c = {0};
  rill_log_sub_t *s;
  cr_assert_eq(rill_log_subscribe(&s, l, 0, on_records, &c), 0);
  append_n(l, 0, 3000);
  while (__atomic_load_n(&c.next, __ATOMIC_ACQUIRE) < 3000)
    usleep(1000);
  cr_expect_eq(rill_log_unsubscribe(s), 3000);
  cr_expect_eq(c.bad, 0);
  cr_expect_eq(c.lost, 0);
  /* The subscriber gave back every reference it took (a run of a segment's
   * records at a time): only the log's own and this read's remain. */
  rill_log_record_t r;
  cr_assert_eq(rill_log_read(l, 0, &r), 0);
  cr_expect_eq(rill_buf_refs(&r.payload), 2);
  rill_buf_release(&r.payload);
  cr_assert_eq(rill_log_close(l), 0);
  /* Behind retention: subscribe from 0 after the old segments went. */
  /* A topic of its own: "t" keeps the 128 MiB segments it was made with. */
  cr_assert_eq(rill_log_open(&l, dir, "u",
                             &(rill_log_opts_t){.segment_bytes = 64 << 10, .retain_count = 500}),
               0);
  uint8_t b[512];
  for (uint64_t i = 0; i < 6000; i++) {
    rec_fill(b, i);
    cr_assert_eq(rill_log_append(l, b, rec_len(i), NULL), 0);
  }
  uint64_t first = rill_log_first(l);
  cr_assert_gt(first, 0);
  subctx_t d = {0};
  cr_assert_eq(rill_log_subscribe(&s, l, 0, on_records, &d), 0);
  while (__atomic_load_n(&d.next, __ATOMIC_ACQUIRE) < 6000)
    usleep(1000);
  rill_log_unsubscribe(s);
  cr_expect_eq(d.lost, first, "told exactly what retention took");
  cr_expect_eq(d.bad, 0);
  cr_assert_eq(rill_log_close(l), 0);
}

/* A cursor reads every record once, says EAGAIN at the end and picks up
 * what comes later, and is told what retention took from under it. */
Test(log, iterator) {
  rill_log_t *l = open_log((rill_log_opts_t){.segment_bytes = 64 << 10, .retain_count = 400});
  append_n(l, 0, 100);
  rill_log_iter_t it;
  rill_log_iter_init(&it, l, 0);
  rill_log_record_t r;
  for (uint64_t i = 0; i < 100; i++) {
    cr_assert_eq(rill_log_iter_next(&it, &r), 0);
    expect_rec(&r, i);
    rill_buf_release(&r.payload);
  }
  cr_expect_eq(rill_log_iter_next(&it, &r), RILL_EAGAIN);
  append_n(l, 100, 3000);
  cr_assert_eq(rill_log_iter_next(&it, &r), RILL_ELAGGED);
  cr_expect_eq(it.lost, rill_log_first(l) - 100);
  cr_expect_eq(it.next, rill_log_first(l));
  uint64_t got = 0;
  int rc;
  while ((rc = rill_log_iter_next(&it, &r)) == 0) {
    expect_rec(&r, r.seq);
    rill_buf_release(&r.payload);
    got++;
  }
  cr_expect_eq(rc, RILL_EAGAIN);
  cr_expect_eq(100 + it.lost + got, 3000);
  cr_assert_eq(rill_log_close(l), 0);
}
/* The writer lock holds across processes: a child that opens the topic
 * for writing while the parent holds it gets RILL_EBUSY, and succeeds once
 * the parent closed it. */
Test(log, second_writer_in_another_process_is_refused) {
  rill_log_t *l = open_log((rill_log_opts_t){0});
  append_n(l, 0, 10);
  for (int round = 0; round < 2; round++) {
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
      rill_log_t *c = NULL;
      int rc = rill_log_open(&c, dir, "t", NULL);
      if (rc == 0) {
        uint64_t next = rill_log_next(c);
        rill_log_close(c);
        _exit(next == 10 ? 0 : 3);
      }
      _exit(rc == RILL_EBUSY ? 1 : 2);
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st));
    if (round == 0) {
      cr_expect_eq(WEXITSTATUS(st), 1, "while held: EBUSY in the child");
      cr_assert_eq(rill_log_close(l), 0);
    } else {
      cr_expect_eq(WEXITSTATUS(st), 0, "after close: the child writes");
    }
  }
}
