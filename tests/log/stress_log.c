/*
 * The log under threads: appenders (one, then several under group commit)
 * while readers read single records and ranges, a tail waiter follows,
 * a subscriber calls back, and retention drops segments under them all.
 * Every record read must be exactly the bytes its sequence implies;
 * retention may only make reads say RILL_ENOENT below first. Runs under
 * TSan, where Criterion cannot.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/log.h"
#include "stress.h"

#define RECORDS (200000 / SCALE)

static char dir[64];

/* Record content: its length and bytes follow from the value v it carries
 * in its first 8 bytes (for one appender, v is the sequence number). */
static uint32_t len_of(uint64_t v) { return (uint32_t)(8 + v % 120); }

static void fill(uint8_t *b, uint64_t v) {
  memcpy(b, &v, 8);
  for (uint32_t k = 8; k < len_of(v); k++)
    b[k] = (uint8_t)(v + k);
}

static void check(const rill_log_record_t *r, bool seq_is_value) {
  uint64_t v;
  CHECK(r->payload.len >= 8, "record %llu: %zu bytes", (unsigned long long)r->seq, r->payload.len);
  memcpy(&v, r->payload.data, 8);
  if (seq_is_value)
    CHECK(v == r->seq, "record %llu carries %llu", (unsigned long long)r->seq,
          (unsigned long long)v);
  uint8_t want[128];
  fill(want, v);
  CHECK(r->payload.len == len_of(v) && !memcmp(r->payload.data, want, len_of(v)),
        "record %llu: wrong bytes", (unsigned long long)r->seq);
}

typedef struct {
  rill_log_t *l;
  int done; /* atomic */
  bool seq_is_value;
  uint64_t reads, enoent;
} ctx_t;

static void *reader(void *arg) {
  ctx_t *x = arg;
  uint64_t rng = (uint64_t)(uintptr_t)&rng;
  while (!__atomic_load_n(&x->done, __ATOMIC_ACQUIRE)) {
    uint64_t next = rill_log_next(x->l), first = rill_log_first(x->l);
    if (next == first)
      continue;
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t seq = first + (rng >> 33) % (next - first);
    rill_log_record_t recs[16];
    size_t n = 0;
    int rc = rng & 1 ? rill_log_read_range(x->l, seq, 16, 1024, recs, &n)
                     : rill_log_read(x->l, seq, &recs[0]);
    if (!(rng & 1) && rc == 0)
      n = 1;
    CHECK(rc == 0 || rc == RILL_ENOENT, "read %llu: %s", (unsigned long long)seq, rill_errmsg());
    __atomic_fetch_add(&x->enoent, rc == RILL_ENOENT, __ATOMIC_RELAXED); /* readers share x */
    for (size_t k = 0; k < n; k++) {
      check(&recs[k], x->seq_is_value);
      rill_buf_release(&recs[k].payload);
    }
    __atomic_fetch_add(&x->reads, n, __ATOMIC_RELAXED);
  }
  return NULL;
}

/* Follows the log with rill_log_wait, reading every record in order. */
static void *tailer(void *arg) {
  ctx_t *x = arg;
  uint64_t seq = 0;
  while (seq < RECORDS) {
    int rc = rill_log_wait(x->l, seq, 5000000000ull);
    CHECK(rc == 0, "wait: %s", rill_strerror(rc));
    rill_log_record_t recs[32];
    size_t n;
    if (seq < rill_log_first(x->l))
      seq = rill_log_first(x->l); /* retention passed us: allowed, and known */
    rc = rill_log_read_range(x->l, seq, 32, SIZE_MAX, recs, &n);
    if (rc == RILL_ENOENT)
      continue;
    CHECK(rc == 0 && n > 0, "tail read %llu: %s", (unsigned long long)seq, rill_errmsg());
    for (size_t k = 0; k < n; k++) {
      CHECK(recs[k].seq == seq + k, "tail order");
      check(&recs[k], x->seq_is_value);
      rill_buf_release(&recs[k].payload);
    }
    seq += n;
  }
  return NULL;
}

typedef struct {
  uint64_t next, lost;
} sub_t;

static void on_recs(void *ctx, const rill_log_record_t *recs, size_t n, uint64_t lost) {
  sub_t *s = ctx;
  s->lost += lost;
  s->next += lost;
  for (size_t k = 0; k < n; k++) {
    CHECK(recs[k].seq == s->next, "subscriber order: %llu after %llu",
          (unsigned long long)recs[k].seq, (unsigned long long)s->next);
    check(&recs[k], true);
    s->next++;
  }
}

static void one_writer_readers_tail_subscriber_retention(void) {
  rill_log_t *l;
  CHECK(rill_log_open(
            &l, dir, "a",
            &(rill_log_opts_t){.segment_bytes = 256 << 10, .retain_count = RECORDS / 4}) == 0,
        "open: %s", rill_errmsg());
  ctx_t x = {.l = l, .seq_is_value = true};
  sub_t sub = {0};
  rill_log_sub_t *s;
  CHECK(rill_log_subscribe(&s, l, 0, on_recs, &sub) == 0, "subscribe");
  pthread_t rt[2], tt;
  for (int i = 0; i < 2; i++)
    CHECK(pthread_create(&rt[i], NULL, reader, &x) == 0, "pthread_create");
  CHECK(pthread_create(&tt, NULL, tailer, &x) == 0, "pthread_create");
  uint8_t b[128];
  for (uint64_t i = 0; i < RECORDS; i++) {
    fill(b, i);
    uint64_t seq;
    CHECK(rill_log_append(l, b, len_of(i), &seq) == 0 && seq == i, "append %llu: %s",
          (unsigned long long)i, rill_errmsg());
  }
  pthread_join(tt, NULL);
  __atomic_store_n(&x.done, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < 2; i++)
    pthread_join(rt[i], NULL);
  uint64_t next = rill_log_unsubscribe(s);
  CHECK(rill_log_first(l) > 0, "retention ran");
  CHECK(sub.lost < (uint64_t)RECORDS, "subscriber lost everything");
  printf("     %llu reads (%llu below first), subscriber at %llu, lost %llu to retention\n",
         (unsigned long long)x.reads, (unsigned long long)x.enoent, (unsigned long long)next,
         (unsigned long long)sub.lost);
  CHECK(rill_log_close(l) == 0, "close");
}

typedef struct {
  rill_log_t *l;
  uint64_t base;
} app_t;

#define PER_APPENDER (2000 / SCALE)

static void *appender(void *arg) {
  app_t *a = arg;
  uint8_t b[128];
  for (uint64_t i = 0; i < PER_APPENDER; i++) {
    uint64_t v = a->base + i, seq;
    fill(b, v);
    CHECK(rill_log_append(a->l, b, len_of(v), &seq) == 0, "append: %s", rill_errmsg());
    CHECK(rill_log_durable(a->l) > seq, "group commit returned before durable");
  }
  return NULL;
}

static void group_commit_appenders_and_readers(void) {
  rill_log_t *l;
  CHECK(rill_log_open(&l, dir, "g",
                      &(rill_log_opts_t){.segment_bytes = 64 << 10, .sync = RILL_LOG_SYNC_GROUP}) ==
            0,
        "open: %s", rill_errmsg());
  ctx_t x = {.l = l, .seq_is_value = false};
  pthread_t rt, at[4];
  app_t a[4];
  CHECK(pthread_create(&rt, NULL, reader, &x) == 0, "pthread_create");
  for (int i = 0; i < 4; i++) {
    a[i] = (app_t){l, (uint64_t)i << 40};
    CHECK(pthread_create(&at[i], NULL, appender, &a[i]) == 0, "pthread_create");
  }
  for (int i = 0; i < 4; i++)
    pthread_join(at[i], NULL);
  __atomic_store_n(&x.done, 1, __ATOMIC_RELEASE);
  pthread_join(rt, NULL);
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  CHECK(st.next == 4 * PER_APPENDER, "records: %llu", (unsigned long long)st.next);
  printf("     %d appends in %llu syncs, %llu reads\n", 4 * PER_APPENDER,
         (unsigned long long)st.syncs, (unsigned long long)x.reads);
  CHECK(rill_log_close(l) == 0, "close");
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/rill-stress-log-XXXXXX");
  CHECK(mkdtemp(dir), "mkdtemp");
  const stress_case_t cases[] = {
      {"one_writer_readers_tail_subscriber_retention",
       one_writer_readers_tail_subscriber_retention},
      {"group_commit_appenders_and_readers", group_commit_appenders_and_readers},
  };
  int rc = stress_run(cases, (int)(sizeof cases / sizeof cases[0]));
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    return 1;
  return rc;
}
