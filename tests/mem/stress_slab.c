/*
 * Slabs under several threads: cross-thread puts, many threads getting and
 * putting at random, caches flushed at thread exit, ids reused after
 * destroy. Plain C so that it runs under TSan (see tests/stress.h).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "rill/mem.h"
#include "stress.h"

static rill_slab_t *mk(size_t size, size_t max) {
  rill_slab_t *s = NULL;
  rill_slab_opts_t o = {.obj_size = size, .max_objects = max, .name = "stress"};
  int rc = rill_slab_create(&s, &o);
  CHECK(rc == 0, "create: %s (%s)", rill_strerror(rc), rill_errmsg());
  return s;
}

/* ---- producers get, consumers put ---------------------------------------- */

enum { QLEN = 1024 };

struct lane {
  rill_slab_t *s;
  _Atomic(void *) q[QLEN]; /* SPSC: NULL marks an empty slot */
  int n;
};

static void *consume(void *arg) {
  struct lane *l = arg;
  for (int i = 0; i < l->n; i++) {
    void *p;
    while (!(p = atomic_exchange_explicit(&l->q[i % QLEN], NULL, memory_order_acquire)))
      sched_yield();
    CHECK(*(uint64_t *)p == (uint64_t)i, "object %d corrupted in transit", i);
    int rc = rill_slab_put(l->s, p);
    CHECK(rc == 0, "put: %s", rill_strerror(rc));
  }
  return NULL;
}

static void *produce(void *arg) {
  struct lane *l = arg;
  for (int i = 0; i < l->n; i++) {
    void *p;
    int rc = rill_slab_get(l->s, &p);
    CHECK(rc == 0, "get: %s", rill_strerror(rc));
    *(uint64_t *)p = (uint64_t)i;
    while (atomic_load_explicit(&l->q[i % QLEN], memory_order_acquire) != NULL)
      sched_yield();
    atomic_store_explicit(&l->q[i % QLEN], p, memory_order_release);
  }
  return NULL;
}

/* pairs producer/consumer pairs share one slab. */
static void producers_and_consumers(int pairs) {
  rill_slab_t *s = mk(64, 0);
  struct lane *lanes = calloc((size_t)pairs, sizeof *lanes);
  pthread_t *th = calloc((size_t)pairs * 2, sizeof *th);
  for (int i = 0; i < pairs; i++) {
    lanes[i].s = s;
    lanes[i].n = 100000;
    pthread_create(&th[2 * i], NULL, consume, &lanes[i]);
    pthread_create(&th[2 * i + 1], NULL, produce, &lanes[i]);
  }
  for (int i = 0; i < 2 * pairs; i++)
    pthread_join(th[i], NULL);
  rill_slab_stats_t st;
  rill_slab_stats(s, &st);
  CHECK(st.in_use == 0, "%zu objects still out", st.in_use);
  CHECK(st.cached == 0, "exited threads left %zu objects in caches", st.cached);
  /* Objects flowed back through the depot instead of the slab growing
   * for every get: 100,000 gets per producer, a few thousand objects. */
  CHECK(st.capacity < (size_t)pairs * 20000, "capacity %zu: objects did not flow back",
        st.capacity);
  free(th);
  free(lanes);
  rill_slab_destroy(s);
}

static void one_pair(void) { producers_and_consumers(1); }
static void four_pairs(void) { producers_and_consumers(4); }

/* ---- random gets and puts, ownership tracked ------------------------------ */

struct worker {
  rill_slab_t *s;
  atomic_uchar *owned; /* one flag per object index */
  size_t stride;
  uintptr_t base;
  unsigned seed;
};

static size_t index_of(const struct worker *w, void *p) {
  return ((uintptr_t)p - w->base) / w->stride;
}

static void *random_worker(void *arg) {
  struct worker *w = arg;
  enum { HOLD = 256 };
  void *held[HOLD] = {0};
  unsigned seed = w->seed;
  for (int step = 0; step < 100000; step++) {
    int i = rand_r(&seed) % HOLD;
    if (held[i]) {
      CHECK(atomic_exchange(&w->owned[index_of(w, held[i])], 0) == 1, "freed while not owned");
      CHECK(rill_slab_put(w->s, held[i]) == 0, "put");
      held[i] = NULL;
    } else {
      CHECK(rill_slab_get(w->s, &held[i]) == 0, "get: %s", rill_errmsg());
      CHECK(atomic_exchange(&w->owned[index_of(w, held[i])], 1) == 0, "object %zu handed out twice",
            index_of(w, held[i]));
    }
  }
  for (int i = 0; i < HOLD; i++)
    if (held[i]) {
      atomic_store(&w->owned[index_of(w, held[i])], 0);
      CHECK(rill_slab_put(w->s, held[i]) == 0, "put");
    }
  return NULL;
}

static void threads_never_share_an_object(int nthreads) {
  enum { MAXOBJ = 1 << 16 };
  rill_slab_t *s = mk(32, MAXOBJ);
  void *first;
  CHECK(rill_slab_get(s, &first) == 0, "get");
  /* A fresh slab hands out the lowest address of its range first. */
  uintptr_t base = (uintptr_t)first;
  CHECK(rill_slab_put(s, first) == 0, "put");
  rill_slab_flush(s);
  rill_slab_stats_t st;
  rill_slab_stats(s, &st);
  atomic_uchar *owned = calloc(MAXOBJ, 1);
  struct worker w[8];
  pthread_t th[8];
  for (int i = 0; i < nthreads; i++) {
    w[i] = (struct worker){s, owned, st.stride, base, 77u + (unsigned)i};
    pthread_create(&th[i], NULL, random_worker, &w[i]);
  }
  for (int i = 0; i < nthreads; i++)
    pthread_join(th[i], NULL);
  rill_slab_stats(s, &st);
  CHECK(st.in_use == 0, "%zu still out", st.in_use);
  CHECK(st.cached == 0, "exited threads left %zu objects in caches", st.cached);
  free(owned);
  rill_slab_destroy(s);
}

static void two_random(void) { threads_never_share_an_object(2); }
static void eight_random(void) { threads_never_share_an_object(8); }

/* ---- a slab destroyed while a thread still has a cache for it ------------- */

struct reuse {
  rill_slab_t *s;
  pthread_barrier_t bar;
  void *got;
};

static void *reuse_thread(void *arg) {
  struct reuse *r = arg;
  void *p;
  CHECK(rill_slab_get(r->s, &p) == 0, "get"); /* makes this thread's cache */
  CHECK(rill_slab_put(r->s, p) == 0, "put");
  pthread_barrier_wait(&r->bar); /* the main thread destroys it, makes another */
  pthread_barrier_wait(&r->bar);
  CHECK(rill_slab_get(r->s, &r->got) == 0, "get");
  return NULL;
}

static void destroyed_slab_leaves_no_stale_cache(void) {
  struct reuse r = {.s = mk(64, 0)};
  pthread_barrier_init(&r.bar, NULL, 2);
  pthread_t t;
  pthread_create(&t, NULL, reuse_thread, &r);
  pthread_barrier_wait(&r.bar);
  rill_slab_destroy(r.s);
  r.s = mk(64, 0); /* takes the id just freed */
  pthread_barrier_wait(&r.bar);
  pthread_join(t, NULL);
  CHECK(rill_slab_owns(r.s, r.got), "the thread got %p from a dead slab's cache", r.got);
  CHECK(rill_slab_put(r.s, r.got) == 0, "put");
  rill_slab_destroy(r.s);
  pthread_barrier_destroy(&r.bar);
}

int main(void) {
  static const stress_case_t cases[] = {
      {"slab: one producer, one consumer", one_pair},
      {"slab: four producers, four consumers", four_pairs},
      {"slab: two threads at random, no object shared", two_random},
      {"slab: eight threads at random, no object shared", eight_random},
      {"slab: destroyed slab leaves no stale cache", destroyed_slab_leaves_no_stale_cache},
  };
  return stress_run(cases, (int)(sizeof cases / sizeof *cases));
}
