/*
 * The I/O pool's lock-free free stack under several threads: no buffer is
 * ever handed to two threads at once, and a buffer's contents written by
 * one thread are whole when another gets it. Plain C so that it runs under
 * TSan (see tests/stress.h), which checks the ordering the free stack and
 * the buf refcount promise.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "rill/mem.h"
#include "stress.h"

static rill_iopool_t *mk(size_t buf_size, uint32_t count) {
  rill_iopool_t *p = NULL;
  rill_iopool_opts_t o = {.buf_size = buf_size, .count = count};
  int rc = rill_iopool_create(&p, &o);
  CHECK(rc == 0, "create: %s (%s)", rill_strerror(rc), rill_errmsg());
  return p;
}

static uint32_t nfree(const rill_iopool_t *p) {
  rill_iopool_stats_t st;
  rill_iopool_stats(p, &st);
  return st.free;
}

/* ---- get and put at random, ownership tracked ------------------------------ */

enum { MAX_BUFS = 16, ITERS = 100000 };

/* The ownership table uses relaxed atomics on purpose: it catches a buffer
 * handed out twice without ordering anything itself, so the order between
 * one holder's writes and the next holder's reads comes from the pool
 * alone, and TSan checks it. */
struct shared {
  rill_iopool_t *p;
  atomic_int owner[MAX_BUFS]; /* thread id holding each buffer, 0 when free */
};

static bool claim(atomic_int *o, int *expect, int id) {
  return atomic_compare_exchange_strong_explicit(o, expect, id, memory_order_relaxed,
                                                 memory_order_relaxed);
}

struct worker {
  struct shared *s;
  int id;
  unsigned seed;
};

static void *worker(void *arg) {
  struct worker *w = arg;
  struct shared *s = w->s;
  enum { HOLD = 3 };
  uint8_t *held[HOLD] = {0};
  rill_buf_t view[HOLD] = {RILL_BUF_EMPTY, RILL_BUF_EMPTY, RILL_BUF_EMPTY};
  for (int step = 0; step < ITERS; step++) {
    int k = rand_r(&w->seed) % HOLD;
    if (held[k]) {
      int idx = rill_iopool_index(s->p, held[k]);
      CHECK(idx >= 0, "index: %s", rill_errmsg());
      /* Whole since we wrote it: no other thread had it meanwhile. */
      CHECK(held[k][0] == (uint8_t)w->id && held[k][4095] == (uint8_t)w->id,
            "buffer %d changed while held", idx);
      int me = w->id;
      CHECK(claim(&s->owner[idx], &me, 0), "buffer %d owned by %d", idx, me);
      if (view[k].store)
        rill_buf_release(&view[k]);
      else
        CHECK(rill_iopool_put(s->p, held[k]) == 0, "put: %s", rill_errmsg());
      held[k] = NULL;
      continue;
    }
    int rc;
    uint32_t idx = 0;
    if (rand_r(&w->seed) % 4 == 0) {
      rc = rill_iopool_get_buf(s->p, &view[k]);
      if (rc == 0) {
        held[k] = view[k].data;
        idx = (uint32_t)rill_iopool_index(s->p, held[k]);
      }
    } else {
      rc = rill_iopool_get(s->p, (void **)&held[k], &idx);
    }
    if (rc == RILL_EAGAIN) {
      held[k] = NULL;
      continue;
    }
    CHECK(rc == 0, "get: %s", rill_errmsg());
    int none = 0;
    CHECK(claim(&s->owner[idx], &none, w->id),
          "buffer %u handed to thread %d while thread %d holds it", idx, w->id, none);
    held[k][0] = (uint8_t)w->id;
    held[k][4095] = (uint8_t)w->id;
  }
  for (int k = 0; k < HOLD; k++) {
    if (!held[k])
      continue;
    atomic_store_explicit(&s->owner[rill_iopool_index(s->p, held[k])], 0, memory_order_relaxed);
    if (view[k].store)
      rill_buf_release(&view[k]);
    else
      CHECK(rill_iopool_put(s->p, held[k]) == 0, "put: %s", rill_errmsg());
  }
  return NULL;
}

static void threads_never_share_a_buffer(int nthreads, uint32_t nbufs) {
  static struct shared s;
  memset(&s, 0, sizeof s);
  s.p = mk(4096, nbufs);
  struct worker w[4];
  pthread_t th[4];
  for (int t = 0; t < nthreads; t++) {
    w[t] = (struct worker){&s, t + 1, 1234u + (unsigned)t};
    pthread_create(&th[t], NULL, worker, &w[t]);
  }
  for (int t = 0; t < nthreads; t++)
    pthread_join(th[t], NULL);
  CHECK(nfree(s.p) == nbufs, "%u of %u buffers free at the end", nfree(s.p), nbufs);
  /* Each buffer is on the free stack exactly once. */
  void *b[MAX_BUFS], *x;
  for (uint32_t i = 0; i < nbufs; i++) {
    CHECK(rill_iopool_get(s.p, &b[i], NULL) == 0, "get %u of %u", i, nbufs);
    for (uint32_t j = 0; j < i; j++)
      CHECK(b[i] != b[j], "buffer %p twice on the free stack", b[i]);
  }
  CHECK(rill_iopool_get(s.p, &x, NULL) == RILL_EAGAIN, "more buffers than the pool has");
  for (uint32_t i = 0; i < nbufs; i++)
    CHECK(rill_iopool_put(s.p, b[i]) == 0, "put");
  CHECK(rill_iopool_destroy(s.p) == 0, "destroy: %s", rill_errmsg());
}

static void two_threads(void) { threads_never_share_a_buffer(2, 8); }
static void four_threads(void) { threads_never_share_a_buffer(4, 8); }
static void four_threads_few_buffers(void) { threads_never_share_a_buffer(4, 2); }

/* ---- views of pool buffers handed to another thread ----------------------- */

enum { QLEN = 4, HANDOFFS = 50000 };

struct lane {
  rill_iopool_t *p;
  _Atomic(rill__buf_store_t *) store[QLEN];
  uint8_t *data[QLEN];
};

static void *view_consumer(void *arg) {
  struct lane *l = arg;
  for (int i = 0; i < HANDOFFS; i++) {
    rill__buf_store_t *s;
    while (!(s = atomic_load_explicit(&l->store[i % QLEN], memory_order_acquire)))
      sched_yield();
    rill_buf_t v = {s, l->data[i % QLEN], 4096};
    atomic_store_explicit(&l->store[i % QLEN], NULL, memory_order_release);
    uint32_t got;
    memcpy(&got, v.data + 100, sizeof got);
    CHECK(got == (uint32_t)i, "view %d carries %u", i, got);
    /* Scribble, so that a producer reusing the buffer before this thread
     * is done would show up as a race under TSan. */
    memset(v.data + 100, 0xee, sizeof got);
    rill_buf_release(&v);
  }
  return NULL;
}

static void pool_views_cross_threads(void) {
  static struct lane l;
  memset(&l, 0, sizeof l);
  l.p = mk(4096, 4);
  pthread_t th;
  pthread_create(&th, NULL, view_consumer, &l);
  for (int i = 0; i < HANDOFFS; i++) {
    rill_buf_t b, c;
    int rc;
    while ((rc = rill_iopool_get_buf(l.p, &b)) == RILL_EAGAIN)
      sched_yield();
    CHECK(rc == 0, "get_buf: %s", rill_errmsg());
    uint32_t v = (uint32_t)i;
    memcpy(b.data + 100, &v, sizeof v);
    CHECK(rill_buf_clone(&c, &b) == 0, "clone");
    while (atomic_load_explicit(&l.store[i % QLEN], memory_order_acquire) != NULL)
      sched_yield();
    l.data[i % QLEN] = c.data;
    atomic_store_explicit(&l.store[i % QLEN], c.store, memory_order_release);
    rill_buf_release(&b); /* races the consumer for the last release */
  }
  pthread_join(th, NULL);
  CHECK(nfree(l.p) == 4, "%u of 4 buffers back", nfree(l.p));
  CHECK(rill_iopool_destroy(l.p) == 0, "destroy: %s", rill_errmsg());
}

int main(void) {
  static const stress_case_t cases[] = {
      {"iopool: two threads at random, no buffer shared", two_threads},
      {"iopool: four threads at random, no buffer shared", four_threads},
      {"iopool: four threads, two buffers", four_threads_few_buffers},
      {"iopool: views handed to another thread", pool_views_cross_threads},
  };
  return stress_run(cases, (int)(sizeof cases / sizeof *cases));
}
