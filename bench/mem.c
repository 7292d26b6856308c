/*
 * rill bench mem: slab, arena and buf against the allocators a user would
 * otherwise reach for (glibc, mimalloc, jemalloc), all in this process.
 *
 * mimalloc and jemalloc are dlopen'd RTLD_LOCAL and called through dlsym'd
 * pointers, never linked: linking either one replaces malloc for the whole
 * process, and the glibc rows would then be measuring someone else.
 *
 * Every loop is written once, as an always-inline template over get and
 * put functions, and instantiated per implementation, so rill and each
 * peer run the same instructions around the allocator calls; glibc's
 * instance calls malloc and free directly.
 *
 * glibc is shown two ways where it matters. "glibc" is glibc as it comes:
 * when the free memory at the top of its heap passes M_TRIM_THRESHOLD
 * (128 KiB), free() gives it back to the kernel, and the next round
 * faults it in again, page by page. Every case that frees more than that
 * in a round pays this each round (get_put_n100k, get_lat_n100k,
 * cross_thread and arena_alloc_reset, from 256 B up). "glibc_notrim" is
 * glibc as services that allocate in rounds are run: mallopt() with
 * M_TRIM_THRESHOLD -1 (never trim, as mallopt(3) documents) and
 * M_MMAP_THRESHOLD fixed at its 128 KiB default, so the heap stays
 * faulted in. The cases where one object is live (get_put_hot,
 * get_put_n1, buf_slice_clone), and every case at 48 and 64 B (see
 * glibc_trims), never trim, and show glibc once.
 *
 * arena_alloc_reset also has the arenas users write or reach for instead
 * of rill's: glibc's obstack (chunks of 64 KiB, as rill's arena, from
 * glibc's malloc; reset is obstack_free to a mark taken first), over glibc
 * both ways from 256 B up, and "bump_block", the few lines a user writes:
 * a pointer into one block big enough for the round, checked against its
 * end, set back to the start to reset.
 */
#include <dlfcn.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <obstack.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "rill/mem.h"

#define TEMPLATE static inline __attribute__((always_inline))

static const size_t sizes[] = {48, 64, 256, 1024, 4096};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

#define N_HELD    100000u /* get_put_n100k, get_lat_n100k */
#define ARENA_K   1000u   /* allocations between arena resets */
#define BUF_BYTES 65536u  /* the buffer buf_slice_clone slices */
#define XQ_CAP    1024u   /* cross_thread's queue; a power of two */

/* ---- peers ------------------------------------------------------------- */

typedef struct peer {
  const char *name;
  void *(*malloc_fn)(size_t);
  void (*free_fn)(void *);
  bool direct; /* glibc: the loops call malloc and free by name */
  bool notrim; /* glibc with trimming off, in the cases where it trims */
} peer_t;

#define MAX_PEERS 4
static peer_t peers[MAX_PEERS];
static size_t n_peers;
static bool peers_loaded;

static void load_peer(bench_ctx_t *b, const char *name, const char *lib, const char *m,
                      const char *f) {
  void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    bench_note(b, "%s skipped: %s", name, dlerror());
    return;
  }
  peer_t p = {name, (void *(*)(size_t))dlsym(h, m), (void (*)(void *))dlsym(h, f), false, false};
  /* dlsym on a handle searches the library's dependencies too; make sure
   * the symbol is the library's own and not glibc's. */
  Dl_info di;
  if (!p.malloc_fn || !p.free_fn || !dladdr((void *)p.malloc_fn, &di) || !di.dli_fname ||
      !strstr(di.dli_fname, lib)) {
    bench_note(b, "%s skipped: %s in %s is not the library's own", name, m, lib);
    return;
  }
  void *t = p.malloc_fn(64);
  if (!t) {
    bench_note(b, "%s skipped: its malloc failed", name);
    return;
  }
  p.free_fn(t);
  peers[n_peers++] = p;
}

static void load_peers(bench_ctx_t *b) {
  if (peers_loaded)
    return;
  peers_loaded = true;
  peers[n_peers++] = (peer_t){"glibc", malloc, free, true, false};
  peers[n_peers++] = (peer_t){"glibc_notrim", malloc, free, true, true};
  const char *t = getenv("GLIBC_TUNABLES");
  if (t && strstr(t, "glibc.malloc."))
    bench_note(b, "GLIBC_TUNABLES sets glibc.malloc tunables: the glibc rows are not glibc as it "
                  "comes, and glibc_notrim's runs end with mallopt's defaults");
  load_peer(b, "mimalloc", "libmimalloc.so.2", "mi_malloc", "mi_free");
  load_peer(b, "jemalloc", "libjemalloc.so.2", "malloc", "free");
}

/* ---- what every loop works on ------------------------------------------ */

typedef struct bump bump_t;

typedef struct mcase {
  size_t size;
  rill_slab_t *slab;
  void *(*m)(size_t);
  void (*f)(void *);
  void **ptrs; /* N_HELD (or ARENA_K) slots, shared by the implementations */
  rill_arena_t *arena;
  struct obstack *ob;
  void *ob_mark; /* where ob starts: an obstack_free to it empties ob */
  bump_t *bump;
  const rill_buf_t *big;
  uint64_t held; /* objects held per round in the get_put_n cases */
} mcase_t;

typedef void *(*get_fn)(const mcase_t *c);
typedef void (*put_fn)(const mcase_t *c, void *p);

TEMPLATE void *get_rill(const mcase_t *c) {
  void *p;
  int rc = rill_slab_get(c->slab, &p);
  if (RILL_UNLIKELY(rc != 0))
    bench_die("rill_slab_get: %s", rill_strerror(rc));
  return p;
}

TEMPLATE void put_rill(const mcase_t *c, void *p) {
  int rc = rill_slab_put(c->slab, p);
  if (RILL_UNLIKELY(rc != 0))
    bench_die("rill_slab_put: %s", rill_strerror(rc));
}

TEMPLATE void *get_glibc(const mcase_t *c) {
  void *p = malloc(c->size);
  if (RILL_UNLIKELY(!p))
    bench_die("malloc(%zu) failed", c->size);
  return p;
}

TEMPLATE void put_glibc(const mcase_t *c, void *p) {
  (void)c;
  free(p);
}

TEMPLATE void *get_dl(const mcase_t *c) {
  void *p = c->m(c->size);
  if (RILL_UNLIKELY(!p))
    bench_die("malloc(%zu) failed", c->size);
  return p;
}

TEMPLATE void put_dl(const mcase_t *c, void *p) { c->f(p); }

/* Instantiates loop for the slab and both kinds of peer: loop##_rill,
 * loop##_glibc, loop##_dl. */
#define INSTANTIATE(loop)                                                                          \
  static void loop##_rill(void *a, uint64_t n) { loop(a, n, get_rill, put_rill); }                 \
  INSTANTIATE_PEERS(loop)
#define INSTANTIATE_PEERS(loop)                                                                    \
  static void loop##_glibc(void *a, uint64_t n) { loop(a, n, get_glibc, put_glibc); }              \
  static void loop##_dl(void *a, uint64_t n) { loop(a, n, get_dl, put_dl); }
/* loop##_notrim: glibc_notrim's instance, which times itself. */
#define INSTANTIATE_NOTRIM(loop)                                                                   \
  static uint64_t loop##_notrim(void *a, uint64_t n) { return notrim_timed(loop##_glibc, a, n); }

/* ---- glibc without trimming ---------------------------------------------- */

/* mallopt() is process-wide, so glibc_notrim sets it only for its own runs
 * and puts glibc's defaults (mallopt(3)) back at the end of each: the
 * harness interleaves the rows run by run, and the rows that run in
 * between ("glibc", obstack, and rill's own, whose chunks and tables come
 * from glibc's malloc) must meet glibc as it comes. Setting either
 * parameter also stops glibc sliding its mmap threshold up for the rest of
 * the process, which no call can undo; it slides only when a block that
 * glibc mmap'd (128 KiB or more) is freed, and no row here frees one
 * (bump_block's block is mmap'd directly for that reason). The suites
 * that `rill bench all` runs after this one inherit it; `make
 * bench-report` runs each suite in a process of its own. */
#define GLIBC_TRIM_DEFAULT    (128 * 1024)
#define GLIBC_MMAP_DEFAULT    (128 * 1024)
#define GLIBC_TOP_PAD_DEFAULT (128 * 1024)
/* The largest request glibc keeps in its fastbins (M_MXFAST's default):
 * freed objects it never merges back into the heap on free(). */
#define GLIBC_MAX_FAST_REQ 120u

/* Whether glibc as it comes can trim in a case of this size: objects of
 * fastbin sizes it never merges back into the heap, so it never trims
 * (strace counted none at 48 and 64 B), and there glibc_notrim would only
 * measure a side effect of mallopt(), which merges the fastbins each call
 * (10-12 ns a pair at 48 B against 22-27 for "glibc": a fresh top each
 * run, not trimming). */
static bool glibc_trims(size_t size) { return size > GLIBC_MAX_FAST_REQ; }

static void notrim_begin(void) {
  if (!mallopt(M_TRIM_THRESHOLD, -1) || !mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_DEFAULT))
    bench_die("mallopt failed");
}

/* Also trims the heap's top where glibc's free() would have at the end of
 * the row's last round (a round gave back more than the threshold, past
 * the pad glibc keeps there): on a heap this row left faulted in, the
 * first round of a "glibc" run would fault nothing (at 4 KiB a run of
 * get_put_n100k is one round). */
static void notrim_end(void) {
  if (!mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_DEFAULT) ||
      !mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_DEFAULT))
    bench_die("mallopt failed");
  if (mallinfo2().keepcost > GLIBC_TOP_PAD_DEFAULT + GLIBC_TRIM_DEFAULT)
    malloc_trim(GLIBC_TOP_PAD_DEFAULT);
}

/* Rounds run before the clock: the "glibc" row, run in between on the
 * same heap, trimmed it, which a process run this way never does, and the
 * first round faults it all in again (at 4 KiB, 400 MB for get_put_n100k:
 * more than the run's other rounds together). One round is not enough on
 * this VM: with no page fault left, the next rounds of a heap just faulted
 * back in still ran 2-4x slower (1 KiB get_put_n100k: 120-220 ns a pair,
 * against 30-60 after three rounds or a 100 ms pause; the host taking back
 * the pages the guest freed, we think), a cost of the trims of the row
 * beside it, not of glibc run without trimming. */
#define NOTRIM_WARM_ROUNDS 3

static uint64_t notrim_timed(void (*loop)(void *, uint64_t), void *arg, uint64_t iters) {
  notrim_begin();
  for (int i = 0; i < NOTRIM_WARM_ROUNDS; i++)
    loop(arg, 1);
  uint64_t t0 = rill_time_ns();
  loop(arg, iters);
  uint64_t t = rill_time_ns() - t0;
  notrim_end();
  return t;
}

/* ---- get_put_hot, get_put_n1, get_put_n100k ---------------------------- */

TEMPLATE void hot(void *arg, uint64_t iters, get_fn get, put_fn put) {
  const mcase_t *c = arg;
  for (uint64_t i = 0; i < iters; i++) {
    void *p = get(c);
    bench_black_box(p);
    put(c, p);
  }
}
INSTANTIATE(hot)

/* One iteration: get c->held objects, then put them all back, in the order
 * they came. The objects are not written: this is the allocator alone. */
TEMPLATE void held(void *arg, uint64_t iters, get_fn get, put_fn put) {
  const mcase_t *c = arg;
  void **ptrs = c->ptrs;
  for (uint64_t r = 0; r < iters; r++) {
    uint64_t n = c->held;
    for (uint64_t i = 0; i < n; i++) {
      void *p = get(c);
      bench_black_box(p);
      ptrs[i] = p;
    }
    for (uint64_t i = 0; i < n; i++)
      put(c, ptrs[i]);
  }
}
INSTANTIATE(held)
INSTANTIATE_NOTRIM(held)

/* ---- get_lat_n100k: each get of a 100k fill timed on its own ------------ */

TEMPLATE void lat(void *arg, uint64_t iters, rill_hist_t *h, get_fn get, put_fn put) {
  const mcase_t *c = arg;
  void **ptrs = c->ptrs;
  for (uint64_t r = 0; r < iters; r++) {
    for (uint64_t i = 0; i < N_HELD; i++) {
      uint64_t t0 = rill_time_ns();
      void *p = get(c);
      bench_black_box(p);
      uint64_t t1 = rill_time_ns();
      ptrs[i] = p;
      rill_hist_record(h, t1 - t0);
    }
    for (uint64_t i = 0; i < N_HELD; i++)
      put(c, ptrs[i]);
  }
}
static void lat_rill(void *a, uint64_t n, rill_hist_t *h) { lat(a, n, h, get_rill, put_rill); }
static void lat_glibc(void *a, uint64_t n, rill_hist_t *h) { lat(a, n, h, get_glibc, put_glibc); }
static void lat_dl(void *a, uint64_t n, rill_hist_t *h) { lat(a, n, h, get_dl, put_dl); }

/* Only gets are sampled, so the rounds that fault the heap back in (see
 * notrim_timed) need no clock of their own. */
static void lat_notrim(void *a, uint64_t n, rill_hist_t *h) {
  notrim_begin();
  for (int i = 0; i < NOTRIM_WARM_ROUNDS; i++)
    held_glibc(a, 1);
  lat(a, n, h, get_glibc, put_glibc);
  notrim_end();
}

/* ---- cross_thread ------------------------------------------------------- */

/* The transport: a bounded single-producer single-consumer ring, the same
 * for every implementation. Each side caches the other's index and reads
 * the shared one only when its cached view says full (or empty). */
typedef struct xq {
  _Alignas(RILL_CACHELINE) _Atomic uint64_t head; /* next slot to read; the consumer's */
  _Alignas(RILL_CACHELINE) _Atomic uint64_t tail; /* next slot to write; the producer's */
  _Alignas(RILL_CACHELINE) void *slot[XQ_CAP];
} xq_t;

typedef struct xrun {
  const mcase_t *c;
  xq_t *q;
  uint64_t n;
  _Atomic int ready;
  atomic_bool share; /* a thread could not be pinned: both may be on one CPU */
  uint64_t t0, t1;
} xrun_t;

/* A spin-wait step. Threads on CPUs of their own only spin; threads that
 * may share a CPU yield after a while, as spinning there only keeps the
 * awaited thread off the CPU. */
static inline void xwait(const xrun_t *x, unsigned *spins) {
  bench_relax();
  if (++*spins > 1024 && atomic_load_explicit(&x->share, memory_order_relaxed))
    sched_yield();
}

/* Pins the thread, sets its allocator up with one get and put (a new
 * thread's first call builds its caches, in every allocator: that is not
 * the steady state measured here), then waits for the other thread. */
TEMPLATE void xrun_start(xrun_t *x, int cpu, get_fn get, put_fn put) {
  if (bench_pin_cpu(cpu) != 0)
    atomic_store(&x->share, true);
  put(x->c, get(x->c));
  atomic_fetch_add(&x->ready, 1);
  for (unsigned spins = 0; atomic_load(&x->ready) < 2;)
    xwait(x, &spins);
}

TEMPLATE void produce(xrun_t *x, get_fn get, put_fn put) {
  const mcase_t *c = x->c;
  xq_t *q = x->q;
  uint64_t tail = 0, head = 0;
  xrun_start(x, 0, get, put);
  x->t0 = rill_time_ns();
  for (uint64_t i = 0; i < x->n; i++) {
    void *p = get(c);
    bench_black_box(p);
    for (unsigned spins = 0; tail - head == XQ_CAP;) {
      head = atomic_load_explicit(&q->head, memory_order_acquire);
      if (tail - head != XQ_CAP)
        break;
      xwait(x, &spins);
    }
    q->slot[tail & (XQ_CAP - 1)] = p;
    atomic_store_explicit(&q->tail, ++tail, memory_order_release);
  }
}

TEMPLATE void consume(xrun_t *x, get_fn get, put_fn put) {
  const mcase_t *c = x->c;
  xq_t *q = x->q;
  uint64_t head = 0, tail = 0;
  xrun_start(x, 1, get, put);
  for (uint64_t i = 0; i < x->n; i++) {
    for (unsigned spins = 0; head == tail;) {
      tail = atomic_load_explicit(&q->tail, memory_order_acquire);
      if (head != tail)
        break;
      xwait(x, &spins);
    }
    void *p = q->slot[head & (XQ_CAP - 1)];
    atomic_store_explicit(&q->head, ++head, memory_order_release);
    put(c, p);
  }
  x->t1 = rill_time_ns();
}

#define INSTANTIATE_X(kind)                                                                        \
  static void *produce_##kind(void *x) {                                                           \
    produce(x, get_##kind, put_##kind);                                                            \
    return NULL;                                                                                   \
  }                                                                                                \
  static void *consume_##kind(void *x) {                                                           \
    consume(x, get_##kind, put_##kind);                                                            \
    return NULL;                                                                                   \
  }                                                                                                \
  static uint64_t cross_##kind(void *a, uint64_t n) {                                              \
    return cross_run(a, n, produce_##kind, consume_##kind);                                        \
  }

/* Thread start and join are outside the clock: it runs from the
 * producer's first get to the consumer's last put. */
static uint64_t cross_run(void *arg, uint64_t n, void *(*prod)(void *), void *(*cons)(void *)) {
  const mcase_t *c = arg;
  xq_t *q = aligned_alloc(RILL_CACHELINE, sizeof *q);
  if (!q)
    bench_die("out of memory");
  atomic_init(&q->head, 0);
  atomic_init(&q->tail, 0);
  xrun_t x = {.c = c, .q = q, .n = n};
  atomic_init(&x.ready, 0);
  atomic_init(&x.share, bench_ncpu() < 2);
  pthread_t tp, tc;
  if (pthread_create(&tc, NULL, cons, &x) != 0 || pthread_create(&tp, NULL, prod, &x) != 0)
    bench_die("pthread_create failed");
  pthread_join(tp, NULL);
  pthread_join(tc, NULL);
  free(q);
  return x.t1 - x.t0;
}
INSTANTIATE_X(rill)
INSTANTIATE_X(glibc)
INSTANTIATE_X(dl)

/* No round before the clock here: at most XQ_CAP objects are in flight, so
 * what a trim left to fault in is at most 4 MB, a small part of a run. */
static uint64_t cross_notrim(void *a, uint64_t n) {
  notrim_begin();
  uint64_t t = cross_glibc(a, n);
  notrim_end();
  return t;
}

/* ---- arena_alloc_reset -------------------------------------------------- */

/* The arenas: K allocations then one reset, which the K share. Written
 * once over alloc and reset, as the get/put loops are. */
typedef void *(*alloc_fn)(const mcase_t *c);
typedef void (*reset_fn)(const mcase_t *c);

TEMPLATE void arena_loop(void *arg, uint64_t iters, alloc_fn alloc, reset_fn reset) {
  const mcase_t *c = arg;
  for (uint64_t r = 0; r < iters; r++) {
    for (uint32_t k = 0; k < ARENA_K; k++) {
      void *p = alloc(c);
      bench_black_box(p);
    }
    reset(c);
  }
}

TEMPLATE void *alloc_rill(const mcase_t *c) {
  void *p;
  int rc = rill_arena_alloc(c->arena, c->size, &p);
  if (RILL_UNLIKELY(rc != 0))
    bench_die("rill_arena_alloc: %s", rill_strerror(rc));
  return p;
}

TEMPLATE void reset_rill(const mcase_t *c) { rill_arena_reset(c->arena); }

/* glibc's obstack: obstack_alloc, and obstack_free to the mark taken when
 * it was made, which keeps the first chunk and frees the others. */
#define obstack_chunk_alloc malloc
#define obstack_chunk_free  free
#define OBSTACK_CHUNK       65536u /* rill's arena's default chunk */

TEMPLATE void *alloc_obstack(const mcase_t *c) { return obstack_alloc(c->ob, c->size); }

TEMPLATE void reset_obstack(const mcase_t *c) { obstack_free(c->ob, c->ob_mark); }

/* The arena a user writes in a few lines: one block that holds a round,
 * a pointer into it, checked against the end and set back to reset. */
struct bump {
  uint8_t *start, *cur, *end;
};

TEMPLATE void *alloc_bump(const mcase_t *c) {
  bump_t *a = c->bump;
  size_t n = (c->size + 15) & ~(size_t)15;
  if (RILL_UNLIKELY((size_t)(a->end - a->cur) < n))
    bench_die("bump_block: the block is full");
  void *p = a->cur;
  a->cur += n;
  return p;
}

TEMPLATE void reset_bump(const mcase_t *c) { c->bump->cur = c->bump->start; }

static void arena_rill(void *a, uint64_t n) { arena_loop(a, n, alloc_rill, reset_rill); }
static void arena_obstack(void *a, uint64_t n) { arena_loop(a, n, alloc_obstack, reset_obstack); }
static void arena_bump(void *a, uint64_t n) { arena_loop(a, n, alloc_bump, reset_bump); }
static uint64_t arena_obstack_notrim(void *a, uint64_t n) {
  return notrim_timed(arena_obstack, a, n);
}

/* A peer: K mallocs, then K frees, which the pointers must be kept for. */
TEMPLATE void arena_peer(void *arg, uint64_t iters, get_fn get, put_fn put) {
  const mcase_t *c = arg;
  void **ptrs = c->ptrs;
  for (uint64_t r = 0; r < iters; r++) {
    for (uint32_t k = 0; k < ARENA_K; k++) {
      void *p = get(c);
      bench_black_box(p);
      ptrs[k] = p;
    }
    for (uint32_t k = 0; k < ARENA_K; k++)
      put(c, ptrs[k]);
  }
}
INSTANTIATE_PEERS(arena_peer)
INSTANTIATE_NOTRIM(arena_peer)

/* ---- buf_slice_clone ---------------------------------------------------- */

/* The offset walks the buffer in 1 KiB steps below 32 KiB, so neither side
 * reads the same bytes every time, and off + size stays in the 64 KiB. */
#define BUF_OFF(i) (((size_t)(i) << 10) & 32767u)

static void buf_rill(void *arg, uint64_t iters) {
  const mcase_t *c = arg;
  for (uint64_t i = 0; i < iters; i++) {
    rill_buf_t s, k;
    int rc = rill_buf_slice(&s, c->big, BUF_OFF(i), c->size);
    if (RILL_LIKELY(rc == 0))
      rc = rill_buf_clone(&k, &s);
    if (RILL_UNLIKELY(rc != 0))
      bench_die("rill_buf_slice/clone: %s", rill_strerror(rc));
    bench_black_box(k.data);
    rill_buf_release(&s);
    rill_buf_release(&k);
  }
}

/* Without shared, counted storage, a view that outlives the buffer is a
 * copy. */
TEMPLATE void buf_peer(void *arg, uint64_t iters, get_fn get, put_fn put) {
  const mcase_t *c = arg;
  const uint8_t *src = c->big->data;
  for (uint64_t i = 0; i < iters; i++) {
    void *p = get(c);
    memcpy(p, src + BUF_OFF(i), c->size);
    bench_black_box(p);
    put(c, p);
  }
}
INSTANTIATE_PEERS(buf_peer)

/* ---- the suite ---------------------------------------------------------- */

typedef struct mset {
  mcase_t rill;
  mcase_t peer[MAX_PEERS];
  bench_impl_t impl[MAX_PEERS + 4]; /* + rill, and arena_alloc_reset's other arenas */
  size_t n;
  void *resident[MAX_PEERS + 1]; /* peers' first, then the slab's */
} mset_t;

/* rill's case and one per peer, all sharing the pointer array. */
static void mset_init(mset_t *s, size_t size, void **ptrs) {
  memset(s, 0, sizeof *s);
  s->rill = (mcase_t){.size = size, .ptrs = ptrs};
  for (size_t i = 0; i < n_peers; i++)
    s->peer[i] =
        (mcase_t){.size = size, .m = peers[i].malloc_fn, .f = peers[i].free_fn, .ptrs = ptrs};
}

/* While a case runs, every implementation holds one more object of the
 * case's size, got before and put after. A program's heap is never empty;
 * and without it, mimalloc retires its page on each free in a loop that
 * holds one object (about 9 ns a pair on this machine against 5.5 ns with
 * the page kept): a cost of the benchmark's setting, not of mimalloc.
 * Neither glibc, jemalloc nor the slab notices. */
static void mset_hold(mset_t *s) {
  for (size_t i = 0; i < n_peers; i++)
    s->resident[i] = get_dl(&s->peer[i]);
  if (s->rill.slab)
    s->resident[n_peers] = get_rill(&s->rill);
}

static void mset_unhold(mset_t *s) {
  for (size_t i = 0; i < n_peers; i++)
    put_dl(&s->peer[i], s->resident[i]);
  if (s->rill.slab)
    put_rill(&s->rill, s->resident[n_peers]);
}

static void mset_add(mset_t *s, const char *name, void (*run)(void *, uint64_t), mcase_t *arg) {
  s->impl[s->n++] = (bench_impl_t){.name = name, .run = run, .arg = arg};
}

/* Adds the peers with the glibc or the dlsym'd instance of a loop, in the
 * cases where glibc does not trim (so without glibc_notrim). */
#define ADD_PEERS(s, field, loop)                                                                  \
  do {                                                                                             \
    for (size_t i_ = 0; i_ < n_peers; i_++) {                                                      \
      if (peers[i_].notrim)                                                                        \
        continue;                                                                                  \
      (s)->impl[(s)->n++] = (bench_impl_t){                                                        \
          .name = peers[i_].name,                                                                  \
          .field = peers[i_].direct ? loop##_glibc : loop##_dl,                                    \
          .arg = &(s)->peer[i_],                                                                   \
      };                                                                                           \
    }                                                                                              \
  } while (0)

/* The same in the cases where glibc trims: glibc_notrim too, with
 * loop##_notrim in nfield, where the case's size is one glibc merges back
 * into its heap (see glibc_trims). */
#define ADD_PEERS_NOTRIM(s, field, loop, nfield)                                                   \
  do {                                                                                             \
    for (size_t i_ = 0; i_ < n_peers; i_++) {                                                      \
      if (peers[i_].notrim && !glibc_trims((s)->peer[i_].size))                                    \
        continue;                                                                                  \
      bench_impl_t *im_ = &(s)->impl[(s)->n++];                                                    \
      *im_ = (bench_impl_t){.name = peers[i_].name, .arg = &(s)->peer[i_]};                        \
      if (peers[i_].notrim)                                                                        \
        im_->nfield = loop##_notrim;                                                               \
      else                                                                                         \
        im_->field = peers[i_].direct ? loop##_glibc : loop##_dl;                                  \
    }                                                                                              \
  } while (0)

static rill_slab_t *slab_new(size_t size) {
  rill_slab_opts_t o = {.obj_size = size, .flags = RILL_SLAB_UNCHECKED, .name = "bench"};
  rill_slab_t *s;
  int rc = rill_slab_create(&s, &o);
  if (rc != 0)
    bench_die("rill_slab_create(%zu): %s: %s", size, rill_strerror(rc), rill_errmsg());
  return s;
}

static void slab_free(rill_slab_t *s) {
  rill_slab_flush(s);
  rill_slab_destroy(s);
}

/* The cases that use a slab: a fresh one per case and size, so no case
 * inherits another's committed chunks or depot. */
enum slab_case { HOT, HELD_1, HELD_N, LAT, CROSS };
static const char *const slab_case_name[] = {"get_put_hot", "get_put_n1", "get_put_n100k",
                                             "get_lat_n100k", "cross_thread"};

static uint64_t slab_case_build(mset_t *s, enum slab_case k, size_t size, void **ptrs) {
  mset_init(s, size, ptrs);
  s->rill.slab = slab_new(size);
  uint64_t ops = 1;
  switch (k) {
  case HOT:
    mset_add(s, "rill_slab", hot_rill, &s->rill);
    ADD_PEERS(s, run, hot);
    break;
  case HELD_1:
  case HELD_N:
    ops = k == HELD_1 ? 1 : N_HELD;
    s->rill.held = ops;
    for (size_t i = 0; i < n_peers; i++)
      s->peer[i].held = ops;
    mset_add(s, "rill_slab", held_rill, &s->rill);
    if (k == HELD_1)
      ADD_PEERS(s, run, held);
    else
      ADD_PEERS_NOTRIM(s, run, held, run_timed);
    break;
  case LAT:
    ops = N_HELD;
    /* glibc_notrim's warm-up round is a held round of N_HELD. */
    for (size_t i = 0; i < n_peers; i++)
      s->peer[i].held = N_HELD;
    s->impl[s->n++] = (bench_impl_t){.name = "rill_slab", .run_lat = lat_rill, .arg = &s->rill};
    ADD_PEERS_NOTRIM(s, run_lat, lat, run_lat);
    break;
  case CROSS:
    s->impl[s->n++] = (bench_impl_t){.name = "rill_slab", .run_timed = cross_rill, .arg = &s->rill};
    ADD_PEERS_NOTRIM(s, run_timed, cross, run_timed);
    break;
  }
  /* The threads of cross_thread are new each run: an object held here
   * would sit in another thread's heap. */
  if (k != CROSS)
    mset_hold(s);
  return ops;
}

/* Runs the given slab cases at one size as a set, interleaved. */
static void run_slab_cases(bench_ctx_t *b, const enum slab_case *k, size_t nk, size_t size,
                           void **ptrs) {
  mset_t s[2];
  bench_case_t c[2] = {{0}};
  size_t n = 0;
  for (size_t i = 0; i < nk && i < 2; i++) {
    if (!bench_want(b, slab_case_name[k[i]]))
      continue;
    uint64_t ops = slab_case_build(&s[n], k[i], size, ptrs);
    c[n] = (bench_case_t){slab_case_name[k[i]], size, ops, s[n].impl, s[n].n};
    n++;
  }
  bench_run_set(b, c, n);
  for (size_t i = 0; i < n; i++) {
    if (s[i].impl[0].run_timed == NULL)
      mset_unhold(&s[i]);
    slab_free(s[i].rill.slab);
  }
}

static void run_arena_case(bench_ctx_t *b, size_t size, void **ptrs) {
  if (!bench_want(b, "arena_alloc_reset"))
    return;
  mset_t s;
  rill_arena_t arena;
  int rc = rill_arena_init(&arena, NULL);
  if (rc != 0)
    bench_die("rill_arena_init: %s", rill_strerror(rc));
  /* mmap'd rather than malloc'd: freeing a block this size would slide
   * glibc's thresholds up for the glibc rows of the later cases. */
  size_t block = ARENA_K * ((size + 15) & ~(size_t)15);
  uint8_t *mem = mmap(NULL, block, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED)
    bench_die("mmap(%zu) failed", block);
  bump_t bump = {mem, mem, mem + block};
  struct obstack ob[2];
  mcase_t obc[2], bumpc = {.size = size, .bump = &bump};
  for (int i = 0; i < 2; i++) {
    if (!obstack_begin(&ob[i], OBSTACK_CHUNK))
      bench_die("obstack_begin failed");
    obc[i] = (mcase_t){.size = size, .ob = &ob[i], .ob_mark = obstack_alloc(&ob[i], 0)};
  }
  mset_init(&s, size, ptrs);
  s.rill.arena = &arena;
  mset_add(&s, "rill_arena", arena_rill, &s.rill);
  mset_add(&s, "bump_block", arena_bump, &bumpc);
  mset_add(&s, "obstack", arena_obstack, &obc[0]);
  if (glibc_trims(size))
    s.impl[s.n++] =
        (bench_impl_t){.name = "obstack_notrim", .run_timed = arena_obstack_notrim, .arg = &obc[1]};
  ADD_PEERS_NOTRIM(&s, run, arena_peer, run_timed);
  mset_hold(&s);
  bench_run(b, &(bench_case_t){"arena_alloc_reset", size, ARENA_K, s.impl, s.n});
  mset_unhold(&s);
  for (int i = 0; i < 2; i++)
    obstack_free(&ob[i], NULL);
  munmap(mem, block);
  rill_arena_fini(&arena);
}

static void run_buf_case(bench_ctx_t *b, size_t size, void **ptrs, const rill_buf_t *big) {
  if (!bench_want(b, "buf_slice_clone"))
    return;
  mset_t s;
  mset_init(&s, size, ptrs);
  s.rill.big = big;
  for (size_t i = 0; i < n_peers; i++)
    s.peer[i].big = big;
  mset_add(&s, "rill_buf", buf_rill, &s.rill);
  ADD_PEERS(&s, run, buf_peer);
  mset_hold(&s);
  bench_run(b, &(bench_case_t){"buf_slice_clone", size, 1, s.impl, s.n});
  mset_unhold(&s);
}

/* The goals of the mem issue, each against the figure just measured.
 * Goals whose cases --filter left out are not listed. */
static void goals(bench_ctx_t *b) {
  char what[96];
  for (size_t i = 0; i < N_SIZES && bench_want(b, "get_put_hot"); i++) {
    size_t z = sizes[i];
    snprintf(what, sizeof what, "slab get+put hot vs glibc, %zu B", z);
    bench_goal(b, what, bench_ratio(b, "get_put_hot", z, "glibc", "rill_slab"), true, 5, "x");
    snprintf(what, sizeof what, "slab get+put hot vs mimalloc, %zu B", z);
    bench_goal(b, what, bench_ratio(b, "get_put_hot", z, "mimalloc", "rill_slab"), true, 1.5, "x");
  }
  for (size_t i = 0; i < N_SIZES && bench_want(b, "get_put_n1") && bench_want(b, "get_put_n100k");
       i++) {
    size_t z = sizes[i];
    snprintf(what, sizeof what, "slab N=100k vs N=1 get+put, %zu B", z);
    double n1 = bench_result(b, "get_put_n1", z, "rill_slab");
    double big = bench_result(b, "get_put_n100k", z, "rill_slab");
    bench_goal(b, what, big / n1, false, 1.2, "x");
  }
  if (bench_want(b, "arena_alloc_reset"))
    bench_goal(b, "arena alloc, 48 B (ns per allocation)",
               bench_result(b, "arena_alloc_reset", 48, "rill_arena"), false, 2, " ns");
}

static int mem_run(bench_ctx_t *b) {
  load_peers(b);
  void **ptrs = calloc(N_HELD, sizeof *ptrs);
  if (!ptrs)
    bench_die("out of memory");
  rill_buf_t big = RILL_BUF_EMPTY;
  if (bench_want(b, "buf_slice_clone")) {
    int rc = rill_buf_alloc(&big, BUF_BYTES);
    if (rc != 0)
      bench_die("rill_buf_alloc: %s", rill_strerror(rc));
    memset(big.data, 0x5a, big.len);
  }
  /* get_put_n1 and get_put_n100k run as a set: the goal compares them. */
  static const enum slab_case sets[][2] = {{HOT}, {HELD_1, HELD_N}, {LAT}, {CROSS}};
  static const size_t set_len[] = {1, 2, 1, 1};
  for (size_t k = 0; k < 4; k++)
    for (size_t i = 0; i < N_SIZES; i++)
      run_slab_cases(b, sets[k], set_len[k], sizes[i], ptrs);
  for (size_t i = 0; i < N_SIZES; i++)
    run_arena_case(b, sizes[i], ptrs);
  for (size_t i = 0; i < N_SIZES; i++)
    run_buf_case(b, sizes[i], ptrs, &big);
  goals(b);
  rill_buf_release(&big);
  free(ptrs);
  return 0;
}

const bench_suite_t bench_suite_mem = {
    .name = "mem",
    .about = "slab, arena and buf vs glibc malloc (as it comes and without trimming), mimalloc "
             "and jemalloc; the arena also vs obstack and a bump block",
    .run = mem_run,
};
