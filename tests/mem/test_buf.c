#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rill/mem.h"

/* A release callback that records how it was called. */
struct rel {
  atomic_int calls;
  void *data;
  size_t len;
  uint32_t refs_seen; /* the count when the callback ran */
  rill__buf_store_t *store;
};

static void on_release(void *ctx, void *data, size_t len) {
  struct rel *r = ctx;
  r->data = data;
  r->len = len;
  if (r->store)
    r->refs_seen = __atomic_load_n(&r->store->refs, __ATOMIC_RELAXED);
  atomic_fetch_add(&r->calls, 1);
}

Test(buf, alloc_gives_one_writable_view_and_one_allocation) {
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  rill_buf_t b;
  cr_assert_eq(rill_buf_alloc(&b, 1000), 0);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.allocs - c0.allocs, 1, "header and data must be one allocation");
  cr_expect_not_null(b.store);
  cr_expect_eq(b.len, 1000);
  cr_expect_eq(rill_buf_refs(&b), 1);
  cr_expect_eq((uintptr_t)b.data % 16, 0);
  uint8_t *w = NULL;
  cr_assert_eq(rill_buf_try_mut(&b, &w), 0);
  cr_expect_eq(w, b.data);
  memset(w, 0x11, 1000);
  rill_buf_release(&b);
  cr_expect_null(b.store, "release must empty the view");
  cr_expect_eq(b.len, 0);
  cr_expect_eq(rill_buf_refs(&b), 0);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.frees - c0.frees, 1);
  rill_buf_release(&b); /* releasing the emptied view is a no-op */
  rill_buf_release(NULL);

  cr_assert_eq(rill_buf_alloc(&b, 0), 0, "zero length is fine");
  cr_expect_eq(b.len, 0);
  cr_expect_eq(rill_buf_refs(&b), 1);
  rill_buf_release(&b);
}

Test(buf, absurd_sizes_and_bad_input_are_errors) {
  rill_buf_t b = {(rill__buf_store_t *)0x1, (uint8_t *)0x1, 1};
  size_t huge[] = {SIZE_MAX, SIZE_MAX - 16, SIZE_MAX / 2, (size_t)1 << 41};
  for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
    rill_errmsg_clear();
    cr_expect_eq(rill_buf_alloc(&b, huge[i]), RILL_ENOMEM, "len %zu", huge[i]);
    cr_expect_neq(rill_errmsg()[0], '\0');
    cr_expect_null(b.store, "a failed alloc must leave an empty view");
  }
  cr_expect_eq(rill_buf_alloc(NULL, 10), RILL_EINVAL);
  rill_errmsg_clear();
  cr_expect_eq(rill_buf_copy(&b, NULL, 5), RILL_EINVAL);
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_eq(rill_buf_copy(&b, "x", SIZE_MAX), RILL_ENOMEM);
  cr_expect_eq(rill_buf_wrap(&b, NULL, 5, 0, NULL, NULL), RILL_EINVAL);
  char mem[8];
  rill_errmsg_clear();
  cr_expect_eq(rill_buf_wrap(&b, mem, 8, 0x10, NULL, NULL), RILL_EINVAL, "unknown flag");
  cr_expect(strstr(rill_errmsg(), "flags") != NULL, "detail: '%s'", rill_errmsg());
  cr_expect_null(b.store);
  cr_expect_eq(rill_buf_wrap_store(&b, NULL, 0, 0), RILL_EINVAL);
  cr_expect_eq(rill_buf_clone(NULL, &b), RILL_EINVAL);
  cr_expect_eq(rill_buf_slice(&b, NULL, 0, 0), RILL_EINVAL);
  cr_expect_eq(rill_buf_refs(NULL), 0);
}

Test(buf, copy_holds_its_own_bytes) {
  char src[64];
  for (int i = 0; i < 64; i++)
    src[i] = (char)i;
  rill_buf_t b;
  cr_assert_eq(rill_buf_copy(&b, src, sizeof src), 0);
  memset(src, 0, sizeof src);
  for (int i = 0; i < 64; i++)
    src[i] = (char)i;
  cr_expect_eq(memcmp(b.data, src, 64), 0);
  cr_expect_eq(b.len, 64);
  rill_buf_release(&b);
  cr_assert_eq(rill_buf_copy(&b, NULL, 0), 0, "empty copy");
  cr_expect_eq(b.len, 0);
  rill_buf_release(&b);
}

Test(buf, wrap_calls_release_once_with_the_last_view) {
  static char mem[4096];
  struct rel r = {0};
  rill_buf_t a, b, c, d;
  cr_assert_eq(rill_buf_wrap(&a, mem, sizeof mem, 0, on_release, &r), 0);
  cr_expect_eq(a.data, (uint8_t *)mem);
  cr_assert_eq(rill_buf_clone(&b, &a), 0);
  cr_assert_eq(rill_buf_slice(&c, &a, 100, 200), 0);
  cr_assert_eq(rill_buf_slice(&d, &c, 50, 50), 0);
  cr_expect_eq(rill_buf_refs(&a), 4);
  rill_buf_release(&a);
  rill_buf_release(&c);
  rill_buf_release(&b);
  cr_expect_eq(atomic_load(&r.calls), 0, "released early");
  cr_expect_eq(rill_buf_refs(&d), 1);
  cr_expect_eq(d.data, (uint8_t *)mem + 150);
  rill_buf_release(&d);
  cr_expect_eq(atomic_load(&r.calls), 1);
  cr_expect_eq(r.data, mem, "release gets the whole storage, not the last view");
  cr_expect_eq(r.len, sizeof mem);
  rill_buf_release(&d);
  cr_expect_eq(atomic_load(&r.calls), 1);

  /* No callback, and zero length at NULL: both valid. */
  cr_assert_eq(rill_buf_wrap(&a, NULL, 0, 0, NULL, NULL), 0);
  cr_expect_eq(rill_buf_refs(&a), 1);
  rill_buf_release(&a);
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  cr_assert_eq(rill_buf_wrap(&a, mem, 10, RILL_BUF_RDONLY, NULL, NULL), 0);
  rill_buf_release(&a);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.allocs - c0.allocs, 1);
  cr_expect_eq(c1.frees - c0.frees, 1, "the header wrap allocated must be freed");
}

Test(buf, wrap_store_uses_the_callers_header) {
  static uint8_t mem[1024];
  struct rel r = {0};
  rill__buf_store_t st = {.release = on_release, .ctx = &r, .data = mem, .len = sizeof mem};
  r.store = &st;
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  rill_buf_t b, s;
  cr_assert_eq(rill_buf_wrap_store(&b, &st, 24, 1000), 0);
  cr_expect_eq(b.store, &st);
  cr_expect_eq(b.data, mem + 24);
  cr_expect_eq(b.len, 1000);
  cr_expect_eq(st.refs, 1);
  rill_errmsg_clear();
  rill_buf_t x;
  cr_expect_eq(rill_buf_wrap_store(&x, &st, 0, 1), RILL_EBUSY, "header already in use");
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_null(x.store);
  cr_expect_eq(st.refs, 1);
  cr_assert_eq(rill_buf_slice(&s, &b, 10, 10), 0);
  rill_buf_release(&b);
  rill_buf_release(&s);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.allocs, c0.allocs, "wrap_store must not allocate");
  cr_expect_eq(c1.frees, c0.frees, "the caller's header must not be freed");
  cr_expect_eq(atomic_load(&r.calls), 1);
  cr_expect_eq(r.refs_seen, 0, "the count is 0 when the callback runs, so it may reuse the header");
  cr_expect_eq(r.data, mem);
  cr_expect_eq(r.len, sizeof mem);

  /* Reusable after the last release. */
  cr_assert_eq(rill_buf_wrap_store(&b, &st, 0, sizeof mem), 0);
  rill_buf_release(&b);
  cr_expect_eq(atomic_load(&r.calls), 2);

  /* Bounds and flags are checked. */
  cr_expect_eq(rill_buf_wrap_store(&b, &st, 1025, 0), RILL_ERANGE);
  cr_expect_eq(rill_buf_wrap_store(&b, &st, 1000, 25), RILL_ERANGE);
  cr_expect_eq(rill_buf_wrap_store(&b, &st, SIZE_MAX, 2), RILL_ERANGE);
  cr_expect_eq(st.refs, 0, "a refused wrap must not take a reference");
  st.flags = 0x100;
  cr_expect_eq(rill_buf_wrap_store(&b, &st, 0, 1), RILL_EINVAL);
  st.flags = 0;
  rill__buf_store_t nulldata = {.data = NULL, .len = 10};
  cr_expect_eq(rill_buf_wrap_store(&b, &nulldata, 0, 1), RILL_EINVAL);
}

Test(buf, wrap_store_without_callback_leaves_the_header_alone) {
  /* On the heap, so that freeing it by mistake shows up under ASan as a
   * double free rather than passing silently. */
  rill__buf_store_t *st = calloc(1, sizeof *st);
  static uint8_t mem[64];
  st->data = mem;
  st->len = sizeof mem;
  st->ctx = (void *)0x1;
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  rill_buf_t b, c;
  cr_assert_eq(rill_buf_wrap_store(&b, st, 0, 64), 0);
  cr_assert_eq(rill_buf_clone(&c, &b), 0);
  rill_buf_release(&b);
  rill_buf_release(&c);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.frees, c0.frees);
  cr_expect_eq(st->refs, 0);
  cr_expect_eq(st->data, mem);
  cr_expect_eq(st->ctx, (void *)0x1);
  free(st);
}

Test(buf, empty_views_work_everywhere) {
  rill_buf_t e = RILL_BUF_EMPTY, d = {(rill__buf_store_t *)0x1, NULL, 3};
  cr_expect_eq(rill_buf_clone(&d, &e), 0);
  cr_expect_null(d.store);
  cr_expect_eq(d.len, 0);
  cr_expect_eq(rill_buf_slice(&d, &e, 0, 0), 0);
  cr_expect_null(d.store);
  cr_expect_eq(rill_buf_slice(&d, &e, 0, 1), RILL_ERANGE);
  cr_expect_eq(rill_buf_slice(&d, &e, 1, 0), RILL_ERANGE);
  cr_expect_eq(rill_buf_slice(&e, &e, 0, 0), 0);
  uint8_t *w = (uint8_t *)0x1;
  cr_expect_eq(rill_buf_try_mut(&e, &w), RILL_EINVAL);
  cr_expect_eq(w, (uint8_t *)0x1);
  cr_expect_eq(rill_buf_refs(&e), 0);
  rill_buf_release(&e);
  cr_expect_null(e.store);
}

Test(buf, clone_counts_and_refuses_past_2_pow_31) {
  rill_buf_t a, b;
  cr_assert_eq(rill_buf_alloc(&a, 16), 0);
  cr_assert_eq(rill_buf_clone(&b, &a), 0);
  cr_expect_eq(b.store, a.store);
  cr_expect_eq(b.data, a.data);
  cr_expect_eq(b.len, a.len);
  cr_expect_eq(rill_buf_refs(&a), 2);
  rill_errmsg_clear();
  cr_expect_eq(rill_buf_clone(&a, &a), RILL_EINVAL, "clone onto itself");
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_eq(rill_buf_refs(&a), 2);
  cr_expect_not_null(a.store, "a refused self-clone must leave the view alone");
  rill_buf_release(&b);

  /* Forge a count at the limit rather than take 2^31 references. */
  static uint8_t mem[32];
  rill__buf_store_t st = {.data = mem, .len = sizeof mem};
  rill_buf_t v, w;
  cr_assert_eq(rill_buf_wrap_store(&v, &st, 0, 32), 0);
  st.refs = (uint32_t)1 << 31;
  rill_errmsg_clear();
  cr_expect_eq(rill_buf_clone(&w, &v), RILL_ERANGE);
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_null(w.store);
  cr_expect_eq(st.refs, (uint32_t)1 << 31, "the refused increment must be undone");
  cr_expect_eq(rill_buf_slice(&w, &v, 0, 1), RILL_ERANGE);
  cr_expect_eq(st.refs, (uint32_t)1 << 31);
  st.refs = ((uint32_t)1 << 31) - 1;
  cr_expect_eq(rill_buf_clone(&w, &v), 0, "up to 2^31 is allowed");
  st.refs = 1;
  rill_buf_release(&v);
  cr_expect_eq(st.refs, 0);
  rill_buf_release(&a);
}

Test(buf, slices_of_slices_respect_bounds) {
  rill_buf_t b, s1, s2, s3;
  cr_assert_eq(rill_buf_alloc(&b, 100), 0);
  for (int i = 0; i < 100; i++)
    b.data[i] = (uint8_t)i;
  cr_assert_eq(rill_buf_slice(&s1, &b, 10, 80), 0);
  cr_expect_eq(s1.data[0], 10);
  cr_expect_eq(s1.len, 80);
  cr_assert_eq(rill_buf_slice(&s2, &s1, 70, 10), 0);
  cr_expect_eq(s2.data[0], 80);
  cr_expect_eq(s2.data[9], 89);
  cr_assert_eq(rill_buf_slice(&s3, &s2, 10, 0), 0, "empty slice at the end");
  cr_expect_eq(s3.len, 0);
  cr_expect_eq(rill_buf_refs(&b), 4);

  /* Past the view's end, though within the storage: refused. */
  rill_buf_t bad = {(rill__buf_store_t *)0x1, NULL, 0};
  rill_errmsg_clear();
  cr_expect_eq(rill_buf_slice(&bad, &s2, 0, 11), RILL_ERANGE);
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_null(bad.store);
  cr_expect_eq(rill_buf_slice(&bad, &s2, 11, 0), RILL_ERANGE);
  cr_expect_eq(rill_buf_slice(&bad, &s2, 5, 6), RILL_ERANGE);
  cr_expect_eq(rill_buf_slice(&bad, &s2, SIZE_MAX, 2), RILL_ERANGE, "off + len overflows");
  cr_expect_eq(rill_buf_slice(&bad, &s2, 2, SIZE_MAX), RILL_ERANGE);
  cr_expect_eq(rill_buf_refs(&b), 4, "refused slices must not take references");

  /* In place: narrows, no count change, and refuses without harm. */
  cr_assert_eq(rill_buf_slice(&s1, &s1, 5, 20), 0);
  cr_expect_eq(s1.data[0], 15);
  cr_expect_eq(s1.len, 20);
  cr_expect_eq(rill_buf_refs(&b), 4);
  cr_expect_eq(rill_buf_slice(&s1, &s1, 0, 21), RILL_ERANGE);
  cr_expect_eq(s1.len, 20);
  cr_expect_not_null(s1.store);

  rill_buf_release(&s3);
  rill_buf_release(&s2);
  rill_buf_release(&s1);
  cr_expect_eq(rill_buf_refs(&b), 1);
  rill_buf_release(&b);
}

Test(buf, try_mut_rules) {
  rill_buf_t a, b;
  uint8_t *w = NULL;
  cr_assert_eq(rill_buf_alloc(&a, 8), 0);
  cr_expect_eq(rill_buf_try_mut(&a, &w), 0);
  cr_assert_eq(rill_buf_slice(&b, &a, 4, 4), 0);
  rill_errmsg_clear();
  cr_expect_eq(rill_buf_try_mut(&a, &w), RILL_EBUSY);
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_eq(rill_buf_try_mut(&b, &w), RILL_EBUSY);
  rill_buf_release(&a);
  cr_expect_eq(rill_buf_try_mut(&b, &w), 0, "the last view may write");
  cr_expect_eq(w, b.data);
  cr_expect_eq(rill_buf_try_mut(&b, NULL), RILL_EINVAL);
  rill_buf_release(&b);
  cr_expect_eq(rill_buf_try_mut(&b, &w), RILL_EINVAL, "released view");

  static uint8_t ro[16];
  cr_assert_eq(rill_buf_wrap(&a, ro, sizeof ro, RILL_BUF_RDONLY, NULL, NULL), 0);
  rill_errmsg_clear();
  cr_expect_eq(rill_buf_try_mut(&a, &w), RILL_EPERM, "read-only even when alone");
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_assert_eq(rill_buf_clone(&b, &a), 0);
  cr_expect_eq(rill_buf_try_mut(&a, &w), RILL_EPERM);
  rill_buf_release(&a);
  rill_buf_release(&b);
}

/* Threads clone and release views of one storage; the callback must run
 * once, after every thread's writes (each thread marks its slot before
 * releasing its last view, and the callback checks all slots). */
enum { NTHREADS = 4, ITERS = 100000 };

struct shared {
  atomic_int calls;
  int all_marked;
};

static void check_release(void *ctx, void *data, size_t len) {
  struct shared *s = ctx;
  uint8_t *slots = data;
  int ok = len == NTHREADS;
  for (size_t i = 0; i < len; i++)
    ok &= slots[i] == 1;
  s->all_marked = ok;
  atomic_fetch_add(&s->calls, 1);
}

static void *churn(void *arg) {
  rill_buf_t mine = *(rill_buf_t *)arg; /* ownership moves to this thread */
  intptr_t bad = 0;
  for (int i = 0; i < ITERS; i++) {
    rill_buf_t c, s;
    if (rill_buf_clone(&c, &mine) != 0 || rill_buf_slice(&s, &c, 0, 1) != 0)
      bad++;
    if (rill_buf_refs(&mine) < 2)
      bad++;
    rill_buf_release(&c);
    rill_buf_release(&s);
  }
  /* Slot number is this thread's view offset. */
  mine.data[0] = 1;
  rill_buf_release(&mine);
  return (void *)bad;
}

Test(buf, clone_and_release_from_several_threads) {
  static uint8_t slots[NTHREADS];
  struct shared sh = {0};
  rill_buf_t root, views[NTHREADS];
  cr_assert_eq(rill_buf_wrap(&root, slots, sizeof slots, 0, check_release, &sh), 0);
  for (int t = 0; t < NTHREADS; t++)
    cr_assert_eq(rill_buf_slice(&views[t], &root, (size_t)t, 1), 0);
  pthread_t th[NTHREADS];
  for (int t = 0; t < NTHREADS; t++)
    cr_assert_eq(pthread_create(&th[t], NULL, churn, &views[t]), 0);
  /* The root goes first: the last release happens on one of the threads. */
  rill_buf_release(&root);
  intptr_t bad = 0;
  for (int t = 0; t < NTHREADS; t++) {
    void *r;
    pthread_join(th[t], &r);
    bad += (intptr_t)r;
  }
  cr_expect_eq(bad, 0, "clone, slice or count went wrong %ld times", (long)bad);
  cr_expect_eq(atomic_load(&sh.calls), 1, "release ran %d times", atomic_load(&sh.calls));
  cr_expect(sh.all_marked, "the callback did not see every thread's write");
}

Test(buf, clone_slice_release_allocate_nothing) {
  rill_buf_t b;
  cr_assert_eq(rill_buf_alloc(&b, 256), 0);
  uint64_t before = rill_mem_allocs_thread();
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  size_t acc = 0;
  for (int i = 0; i < 1000000; i++) {
    rill_buf_t c, s;
    if (rill_buf_clone(&c, &b) != 0 || rill_buf_slice(&s, &c, (size_t)(i & 127), 64) != 0)
      cr_assert_fail("iteration %d: %s", i, rill_errmsg()); /* only on failure: see test_arena.c */
    rill_buf_slice(&s, &s, 1, 8);
    acc += s.len;
    rill_buf_release(&s);
    rill_buf_release(&c);
  }
  uint64_t after = rill_mem_allocs_thread();
  rill_mem_counters_thread(&c1);
  cr_expect_eq(after - before, 0, "%llu allocations in 1,000,000 iterations",
               (unsigned long long)(after - before));
  cr_expect_eq(c1.frees, c0.frees);
  cr_expect_eq(acc, (size_t)8 * 1000000);
  cr_expect_eq(rill_buf_refs(&b), 1);
  rill_buf_release(&b);
}
