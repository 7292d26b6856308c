/*
 * Rings under real threads: SPSC in order at volume, MPSC with 1 to 8
 * producers (per-producer order, nothing lost), bcast with one writer and
 * three readers (each sees an in-order subsequence, and its loss counts add
 * up exactly). Plain C so that it runs under TSan (see tests/stress.h).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "rill/ring.h"
#include "stress.h"

#if defined(__SANITIZE_THREAD__)
#define SLOW 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SLOW 1
#endif
#endif
#ifndef SLOW
#define SLOW 0
#endif

/* Under TSan every atomic is a call into the runtime: fewer items keep
 * each case within seconds. */
#define SPSC_N  (SLOW ? 2000000u : 10000000u)
#define MPSC_N  (SLOW ? 100000u : 1000000u)
#define BCAST_N (SLOW ? 200000u : 2000000u)

/* ---- SPSC ---------------------------------------------------------------- */

struct spsc_run {
  rill_ring_spsc_t *r;
  uint64_t n;
  int batch;
};

static void *spsc_produce(void *arg) {
  struct spsc_run *x = arg;
  uint64_t i = 0, b[32];
  while (i < x->n) {
    if (x->batch) {
      size_t want = (size_t)(i % 32) + 1, k;
      if (want > x->n - i)
        want = (size_t)(x->n - i);
      for (size_t j = 0; j < want; j++)
        b[j] = i + j;
      if ((i & 1) == 0) {
        k = rill_ring_spsc_push_n(x->r, b, want);
      } else {
        uint64_t *p = rill_ring_spsc_reserve(x->r, want, &k);
        for (size_t j = 0; j < k; j++)
          p[j] = i + j;
        if (k)
          CHECK(rill_ring_spsc_commit(x->r, k) == 0, "commit %zu", k);
      }
      i += k;
      if (!k)
        sched_yield();
    } else if (rill_ring_spsc_push_u64(x->r, i) == 0) {
      i++;
    } else {
      sched_yield();
    }
  }
  return NULL;
}

static void spsc_case(int batch) {
  rill_ring_spsc_t *r = NULL;
  CHECK(rill_ring_spsc_create(&r, 1024, 8) == 0, "create");
  struct spsc_run x = {r, SPSC_N, batch};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, spsc_produce, &x) == 0, "thread");
  uint64_t next = 0, b[32];
  while (next < x.n) {
    if (batch && (next & 1)) {
      size_t got;
      const uint64_t *p = rill_ring_spsc_peek(r, 32, &got);
      for (size_t j = 0; j < got; j++)
        CHECK(p[j] == next + j, "peek: item %llu is %llu", (unsigned long long)(next + j),
              (unsigned long long)p[j]);
      if (got)
        CHECK(rill_ring_spsc_release(r, got) == 0, "release");
      next += got;
      if (!got)
        sched_yield();
    } else if (batch) {
      size_t got = rill_ring_spsc_pop_n(r, b, 17);
      for (size_t j = 0; j < got; j++)
        CHECK(b[j] == next + j, "pop_n: item %llu is %llu", (unsigned long long)(next + j),
              (unsigned long long)b[j]);
      next += got;
      if (!got)
        sched_yield();
    } else {
      uint64_t v;
      if (rill_ring_spsc_pop_u64(r, &v) == 0) {
        CHECK(v == next, "item %llu is %llu", (unsigned long long)next, (unsigned long long)v);
        next++;
      } else {
        sched_yield();
      }
    }
  }
  pthread_join(t, NULL);
  uint64_t v;
  CHECK(rill_ring_spsc_pop_u64(r, &v) == RILL_EAGAIN, "empty at the end");
  rill_ring_spsc_destroy(r);
}

static void spsc_one(void) { spsc_case(0); }
static void spsc_batches(void) { spsc_case(1); }

/* ---- MPSC ---------------------------------------------------------------- */

enum { MAXP = 8 };

struct mpsc_run {
  rill_ring_mpsc_t *r;
  uint32_t id, n;
  _Atomic int *go;
};

static void *mpsc_produce(void *arg) {
  struct mpsc_run *x = arg;
  while (!atomic_load_explicit(x->go, memory_order_acquire))
    sched_yield();
  uint32_t aborted = UINT32_MAX;
  for (uint32_t i = 0; i < x->n;) {
    size_t len = 8 + (i * 7 + x->id) % 41;
    void *p;
    int rc = rill_ring_mpsc_reserve(x->r, len, (int32_t)x->id, &p);
    if (rc == RILL_EAGAIN) {
      sched_yield();
      continue;
    }
    CHECK(rc == 0, "claim: %s", rill_strerror(rc));
    uint8_t *b = p;
    memcpy(b, &i, 4);
    memcpy(b + 4, &x->id, 4);
    for (size_t k = 8; k < len; k++)
      b[k] = (uint8_t)(i + k);
    if (i % 97 == 13 && aborted != i) {
      aborted = i;
      CHECK(rill_ring_mpsc_cancel(x->r, p) == 0, "abort");
      continue; /* the same i again: an aborted record is never seen */
    }
    CHECK(rill_ring_mpsc_commit(x->r, p) == 0, "commit");
    i++;
  }
  return NULL;
}

struct mpsc_seen {
  uint32_t next[MAXP];
  uint64_t total;
};

static void mpsc_check(void *ctx, int32_t type, const void *data, size_t len) {
  struct mpsc_seen *s = ctx;
  uint32_t i, id;
  CHECK(len >= 8, "short record %zu", len);
  memcpy(&i, data, 4);
  memcpy(&id, (const uint8_t *)data + 4, 4);
  CHECK(id < MAXP && (int32_t)id == type, "record of producer %u, type %d", id, (int)type);
  CHECK(i == s->next[id], "producer %u: record %u, expected %u", id, i, s->next[id]);
  CHECK(len == 8 + (i * 7 + id) % 41, "producer %u record %u: length %zu", id, i, len);
  for (size_t k = 8; k < len; k++)
    CHECK(((const uint8_t *)data)[k] == (uint8_t)(i + k), "producer %u record %u torn", id, i);
  s->next[id]++;
  s->total++;
}

static void mpsc_case(int producers) {
  rill_ring_mpsc_t *r = NULL;
  CHECK(rill_ring_mpsc_create(&r, 8192) == 0, "create");
  _Atomic int go = 0;
  struct mpsc_run x[MAXP];
  pthread_t t[MAXP];
  uint32_t per = MPSC_N / (uint32_t)producers;
  for (int p = 0; p < producers; p++) {
    x[p] = (struct mpsc_run){r, (uint32_t)p, per, &go};
    CHECK(pthread_create(&t[p], NULL, mpsc_produce, &x[p]) == 0, "thread");
  }
  atomic_store_explicit(&go, 1, memory_order_release);
  struct mpsc_seen s = {{0}, 0};
  uint64_t want = (uint64_t)per * (uint64_t)producers;
  while (s.total < want) {
    int n = rill_ring_mpsc_read(r, mpsc_check, &s, 64);
    CHECK(n >= 0, "read: %s", rill_strerror(n));
    if (n == 0)
      sched_yield();
  }
  for (int p = 0; p < producers; p++) {
    pthread_join(t[p], NULL);
    CHECK(s.next[p] == per, "producer %d: %u of %u", p, s.next[p], per);
  }
  CHECK(rill_ring_mpsc_used(r) == 0, "ring not empty at the end");
  rill_ring_mpsc_destroy(r);
}

static void mpsc_1(void) { mpsc_case(1); }
static void mpsc_2(void) { mpsc_case(2); }
static void mpsc_4(void) { mpsc_case(4); }
static void mpsc_8(void) { mpsc_case(8); }

/* ---- bcast --------------------------------------------------------------- */

struct bc_reader {
  rill_ring_bcast_t *r;
  _Atomic int *done, *ready;
  int slow; /* yields now and then, so that it is lapped */
  uint64_t read, lost, laps;
};

static void bc_payload(uint8_t *b, uint64_t i, size_t len) {
  memcpy(b, &i, 8);
  for (size_t k = 8; k < len; k++)
    b[k] = (uint8_t)(i * 13 + k);
}

static void *bc_read(void *arg) {
  struct bc_reader *x = arg;
  rill_ring_bcast_reader_t rd;
  rill_ring_bcast_join_oldest(x->r, &rd);
  atomic_fetch_add_explicit(x->ready, 1, memory_order_release);
  uint64_t expect = rd.next_seq;
  uint8_t b[256];
  for (;;) {
    size_t len;
    int32_t type;
    int rc = rill_ring_bcast_read(x->r, &rd, b, sizeof b, &len, &type);
    if (rc == RILL_EAGAIN) {
      if (atomic_load_explicit(x->done, memory_order_acquire) &&
          rill_ring_bcast_read(x->r, &rd, b, sizeof b, &len, &type) == RILL_EAGAIN)
        break;
      sched_yield();
      continue;
    }
    if (rc == RILL_ELAGGED) {
      CHECK(rd.next_seq == expect + rd.lost_records, "lost %llu, but resumed at %llu not %llu",
            (unsigned long long)rd.lost_records, (unsigned long long)rd.next_seq,
            (unsigned long long)(expect + rd.lost_records));
      expect += rd.lost_records;
      x->lost += rd.lost_records;
      x->laps++;
      continue;
    }
    CHECK(rc == 0, "read: %s (%s)", rill_strerror(rc), rill_errmsg());
    uint64_t i;
    memcpy(&i, b, 8);
    CHECK(i == expect, "record %llu, expected %llu", (unsigned long long)i,
          (unsigned long long)expect);
    CHECK(len == 8 + i % 57 && type == (int32_t)(i % 3), "record %llu: length %zu type %d",
          (unsigned long long)i, len, (int)type);
    for (size_t k = 8; k < len; k++)
      CHECK(b[k] == (uint8_t)(i * 13 + k), "record %llu torn at byte %zu", (unsigned long long)i,
            k);
    expect++;
    x->read++;
    if (x->slow && i % 512 == 0)
      sched_yield();
  }
  CHECK(expect == rill_ring_bcast_written(x->r), "reader ended at %llu of %llu",
        (unsigned long long)expect, (unsigned long long)rill_ring_bcast_written(x->r));
  return NULL;
}

static void bcast_1w3r(void) {
  rill_ring_bcast_t *r = NULL;
  CHECK(rill_ring_bcast_create(&r, 16384) == 0, "create");
  _Atomic int done = 0, ready = 0;
  struct bc_reader x[3];
  pthread_t t[3];
  for (int i = 0; i < 3; i++) {
    x[i] = (struct bc_reader){r, &done, &ready, i == 2, 0, 0, 0};
    CHECK(pthread_create(&t[i], NULL, bc_read, &x[i]) == 0, "thread");
  }
  uint8_t b[128];
  while (atomic_load_explicit(&ready, memory_order_acquire) < 3)
    sched_yield();
  for (uint64_t i = 0; i < BCAST_N; i++) {
    size_t len = 8 + i % 57;
    /* Two CPUs, four threads: let the readers run, now and then. */
    if (i % 256 == 0)
      sched_yield();
    bc_payload(b, i, len);
    CHECK(rill_ring_bcast_write(r, (int32_t)(i % 3), b, len) == 0, "write");
  }
  atomic_store_explicit(&done, 1, memory_order_release);
  uint64_t laps = 0;
  for (int i = 0; i < 3; i++) {
    pthread_join(t[i], NULL);
    CHECK(x[i].read + x[i].lost <= BCAST_N, "reader %d: %llu read + %llu lost", i,
          (unsigned long long)x[i].read, (unsigned long long)x[i].lost);
    printf("     reader %d: %llu read, %llu lost in %llu laps\n", i, (unsigned long long)x[i].read,
           (unsigned long long)x[i].lost, (unsigned long long)x[i].laps);
    laps += x[i].laps;
  }
  (void)laps; /* lapping depends on the scheduler; the counts are checked per reader */
  rill_ring_bcast_destroy(r);
}

int main(void) {
  static const stress_case_t cases[] = {
      {"spsc_10M_one_at_a_time", spsc_one},
      {"spsc_10M_batches", spsc_batches},
      {"mpsc_1_producer", mpsc_1},
      {"mpsc_2_producers", mpsc_2},
      {"mpsc_4_producers", mpsc_4},
      {"mpsc_8_producers", mpsc_8},
      {"bcast_1_writer_3_readers", bcast_1w3r},
  };
  return stress_run(cases, (int)(sizeof cases / sizeof cases[0]));
}
