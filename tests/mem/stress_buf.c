/*
 * Refcounted bufs under several threads: clone and release racing on one
 * storage, the last release racing between threads, views handed from one
 * thread to another. Plain C so that it runs under TSan (see tests/stress.h),
 * which checks that every access through a view happens before the storage
 * is freed or its release callback runs.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "rill/mem.h"
#include "stress.h"

/* ---- clone and release churn on one storage -------------------------------- */

enum { CHURN_THREADS = 4, CHURN_ITERS = 200000 };

struct churn {
  atomic_int calls;
  int all_marked;
};

static void churn_release(void *ctx, void *data, size_t len) {
  struct churn *c = ctx;
  const uint8_t *slot = data;
  int ok = len == CHURN_THREADS;
  for (size_t i = 0; i < len; i++)
    ok &= slot[i] == 1;
  c->all_marked = ok; /* read by main after join */
  atomic_fetch_add(&c->calls, 1);
}

static void *churn_thread(void *arg) {
  rill_buf_t mine = *(rill_buf_t *)arg;
  for (int i = 0; i < CHURN_ITERS; i++) {
    rill_buf_t c, s;
    CHECK(rill_buf_clone(&c, &mine) == 0, "clone: %s", rill_errmsg());
    CHECK(rill_buf_slice(&s, &c, 0, 1) == 0, "slice: %s", rill_errmsg());
    CHECK(rill_buf_refs(&s) >= 3, "count %u below the views this thread holds", rill_buf_refs(&s));
    rill_buf_release(&c);
    rill_buf_release(&s);
  }
  mine.data[0] = 1; /* this thread's slot */
  rill_buf_release(&mine);
  return NULL;
}

static void clone_release_churn(void) {
  static uint8_t slots[CHURN_THREADS];
  memset(slots, 0, sizeof slots);
  struct churn c = {0};
  rill_buf_t root, view[CHURN_THREADS];
  CHECK(rill_buf_wrap(&root, slots, sizeof slots, 0, churn_release, &c) == 0, "wrap");
  for (int t = 0; t < CHURN_THREADS; t++)
    CHECK(rill_buf_slice(&view[t], &root, (size_t)t, 1) == 0, "slice");
  pthread_t th[CHURN_THREADS];
  for (int t = 0; t < CHURN_THREADS; t++)
    pthread_create(&th[t], NULL, churn_thread, &view[t]);
  rill_buf_release(&root);
  for (int t = 0; t < CHURN_THREADS; t++)
    pthread_join(th[t], NULL);
  CHECK(atomic_load(&c.calls) == 1, "release ran %d times", atomic_load(&c.calls));
  CHECK(c.all_marked, "the release callback missed a thread's write");
}

/* ---- the last release races between threads, round after round ----------- */

enum { RACE_THREADS = 3, RACE_ROUNDS = 5000 };

struct race {
  pthread_barrier_t start, done;
  rill_buf_t view[RACE_THREADS];
  atomic_int calls;
};

static void race_release(void *ctx, void *data, size_t len) {
  struct race *r = ctx;
  const uint8_t *b = data;
  for (size_t i = 0; i < len; i++)
    CHECK(b[i] == (uint8_t)(i + 1), "byte %zu not written when release ran", i);
  free(data);
  atomic_fetch_add(&r->calls, 1);
}

struct racer {
  struct race *r;
  int id;
};

static void *race_thread(void *arg) {
  struct racer *me = arg;
  for (int round = 0; round < RACE_ROUNDS; round++) {
    pthread_barrier_wait(&me->r->start);
    rill_buf_t *v = &me->r->view[me->id];
    v->data[me->id] = (uint8_t)(me->id + 1);
    rill_buf_release(v);
    pthread_barrier_wait(&me->r->done);
  }
  return NULL;
}

static void last_release_races(void) {
  static struct race r;
  memset(&r, 0, sizeof r);
  pthread_barrier_init(&r.start, NULL, RACE_THREADS + 1);
  pthread_barrier_init(&r.done, NULL, RACE_THREADS + 1);
  struct racer who[RACE_THREADS];
  pthread_t th[RACE_THREADS];
  for (int t = 0; t < RACE_THREADS; t++) {
    who[t] = (struct racer){&r, t};
    pthread_create(&th[t], NULL, race_thread, &who[t]);
  }
  for (int round = 0; round < RACE_ROUNDS; round++) {
    uint8_t *mem = malloc(RACE_THREADS);
    rill_buf_t root;
    CHECK(rill_buf_wrap(&root, mem, RACE_THREADS, 0, race_release, &r) == 0, "wrap");
    for (int t = 0; t < RACE_THREADS; t++)
      CHECK(rill_buf_clone(&r.view[t], &root) == 0, "clone");
    rill_buf_release(&root);
    pthread_barrier_wait(&r.start);
    pthread_barrier_wait(&r.done);
    CHECK(atomic_load(&r.calls) == round + 1, "round %d: release ran %d times in all", round,
          atomic_load(&r.calls));
  }
  for (int t = 0; t < RACE_THREADS; t++)
    pthread_join(th[t], NULL);
  pthread_barrier_destroy(&r.start);
  pthread_barrier_destroy(&r.done);
}

/* ---- views handed to another thread ------------------------------------------ */

enum { QLEN = 256, HANDOFFS = 100000 };

struct lane {
  _Atomic(rill__buf_store_t *) store[QLEN]; /* NULL marks an empty slot */
  uint8_t *data[QLEN];
  size_t len[QLEN];
};

static void *consumer(void *arg) {
  struct lane *l = arg;
  for (int i = 0; i < HANDOFFS; i++) {
    rill__buf_store_t *s;
    while (!(s = atomic_load_explicit(&l->store[i % QLEN], memory_order_acquire)))
      sched_yield();
    rill_buf_t v = {s, l->data[i % QLEN], l->len[i % QLEN]};
    atomic_store_explicit(&l->store[i % QLEN], NULL, memory_order_release);
    uint64_t got;
    memcpy(&got, v.data, sizeof got);
    CHECK(got == (uint64_t)i, "view %d carries %llu", i, (unsigned long long)got);
    rill_buf_release(&v); /* often the last view: frees what the producer allocated */
  }
  return NULL;
}

static void views_cross_threads(void) {
  static struct lane l;
  memset(&l, 0, sizeof l);
  pthread_t th;
  pthread_create(&th, NULL, consumer, &l);
  for (int i = 0; i < HANDOFFS; i++) {
    rill_buf_t b, s;
    CHECK(rill_buf_alloc(&b, 64) == 0, "alloc");
    uint64_t v = (uint64_t)i;
    memcpy(b.data + 8, &v, sizeof v);
    CHECK(rill_buf_slice(&s, &b, 8, 8) == 0, "slice");
    while (atomic_load_explicit(&l.store[i % QLEN], memory_order_acquire) != NULL)
      sched_yield();
    l.data[i % QLEN] = s.data;
    l.len[i % QLEN] = s.len;
    atomic_store_explicit(&l.store[i % QLEN], s.store, memory_order_release);
    /* Read after the handoff, racing the consumer's read and release. */
    uint64_t back;
    memcpy(&back, b.data + 8, sizeof back);
    CHECK(back == v, "handoff %d: the producer's view changed", i);
    rill_buf_release(&b);
  }
  pthread_join(th, NULL);
}

int main(void) {
  static const stress_case_t cases[] = {
      {"buf: four threads clone and release one storage", clone_release_churn},
      {"buf: the last release races between three threads", last_release_races},
      {"buf: views handed to another thread", views_cross_threads},
  };
  return stress_run(cases, (int)(sizeof cases / sizeof *cases));
}
