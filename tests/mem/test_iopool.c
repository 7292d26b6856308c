#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/internal.h"
#include "rill/mem.h"

static rill_iopool_t *mk_pool(size_t buf_size, uint32_t count, uint32_t flags) {
  rill_iopool_t *p = NULL;
  rill_iopool_opts_t o = {.buf_size = buf_size, .count = count, .flags = flags};
  int rc = rill_iopool_create(&p, &o);
  cr_assert_eq(rc, 0, "create: %s (%s)", rill_strerror(rc), rill_errmsg());
  cr_assert_not_null(p);
  return p;
}

static uint32_t nfree(const rill_iopool_t *p) {
  rill_iopool_stats_t st;
  rill_iopool_stats(p, &st);
  return st.free;
}

Test(iopool, defaults_and_layout) {
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  rill_iopool_t *p = NULL;
  cr_assert_eq(rill_iopool_create(&p, NULL), 0, "%s", rill_errmsg());
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.maps - c0.maps, 1, "one mapping, counted");
  cr_expect_geq(c1.bytes_mapped - c0.bytes_mapped, (uint64_t)64 * 65536);
  rill_iopool_stats_t st;
  rill_iopool_stats(p, &st);
  cr_expect_eq(st.buf_size, 65536);
  cr_expect_eq(st.count, 64);
  cr_expect_eq(st.free, 64);
  cr_expect_eq(st.bytes, (size_t)64 * 65536);
  cr_expect_eq(rill_iopool_bytes(p), st.bytes);
  cr_expect_eq(rill_iopool_buf_size(p), 65536);
  cr_expect_eq((uintptr_t)rill_iopool_base(p) % 4096, 0);
  cr_assert_eq(rill_iopool_destroy(p), 0);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.unmaps - c0.unmaps, 1);
  cr_expect_eq(c1.allocs - c0.allocs, c1.frees - c0.frees, "destroy leaked");
  cr_expect_eq(rill_iopool_destroy(NULL), 0);
}

static void expect_einval(rill_iopool_opts_t o, const char *what) {
  rill_iopool_t *p = (rill_iopool_t *)0x1;
  rill_errmsg_clear();
  int rc = rill_iopool_create(&p, &o);
  cr_expect_eq(rc, RILL_EINVAL, "%s: got %d", what, rc);
  cr_expect_null(p, "%s: out must be NULL on failure", what);
  cr_expect_neq(rill_errmsg()[0], '\0', "%s: no detail", what);
}

Test(iopool, create_rejects_bad_options) {
  expect_einval((rill_iopool_opts_t){.buf_size = 1000}, "size not a page multiple");
  expect_einval((rill_iopool_opts_t){.buf_size = 4097}, "size not a page multiple");
  expect_einval((rill_iopool_opts_t){.buf_size = SIZE_MAX}, "SIZE_MAX");
  expect_einval((rill_iopool_opts_t){.count = (1u << 24) + 1}, "too many buffers");
  expect_einval((rill_iopool_opts_t){.count = UINT32_MAX}, "UINT32_MAX buffers");
  expect_einval((rill_iopool_opts_t){.flags = 0x80}, "unknown flag");
  expect_einval((rill_iopool_opts_t){.buf_size = 4096, .flags = RILL_IOPOOL_HUGE_REQUIRED},
                "huge pages need 2 MiB buffers");
  expect_einval((rill_iopool_opts_t){.buf_size = SIZE_MAX & ~(size_t)4095, .count = 4},
                "size overflow");
  expect_einval((rill_iopool_opts_t){.buf_size = (size_t)1 << 40, .count = 1 << 20},
                "more than the address space");
  cr_expect_eq(rill_iopool_create(NULL, NULL), RILL_EINVAL);
}

Test(iopool, huge_pages_are_used_or_refused_cleanly) {
  rill_iopool_t *p = NULL;
  rill_errmsg_clear();
  rill_iopool_opts_t o = {.buf_size = 2 << 20, .count = 2, .flags = RILL_IOPOOL_HUGE_REQUIRED};
  int rc = rill_iopool_create(&p, &o);
  if (rc == 0) {
    rill_iopool_stats_t st;
    rill_iopool_stats(p, &st);
    cr_expect(st.huge);
    cr_expect_eq(rill_iopool_destroy(p), 0);
  } else {
    cr_expect_eq(rc, RILL_ENOMEM, "got %d", rc);
    cr_expect_neq(rill_errmsg()[0], '\0');
    cr_expect_null(p);
  }
  /* Plain HUGE always works, on huge pages or not; so with small buffers. */
  size_t sizes[] = {2 << 20, 4096};
  for (int i = 0; i < 2; i++) {
    p = mk_pool(sizes[i], 3, RILL_IOPOOL_HUGE);
    void *b;
    cr_assert_eq(rill_iopool_get(p, &b, NULL), 0);
    memset(b, 1, sizes[i]);
    cr_assert_eq(rill_iopool_put(p, b), 0);
    cr_expect_eq(rill_iopool_destroy(p), 0);
  }
}

Test(iopool, locked_pools_lock_or_say_why) {
  rill_iopool_t *p = NULL;
  rill_errmsg_clear();
  int rc = rill_iopool_create(
      &p, &(rill_iopool_opts_t){.buf_size = 4096, .count = 16, .flags = RILL_IOPOOL_LOCKED});
  if (rc == 0) {
    cr_expect_eq(rill_iopool_destroy(p), 0);
  } else {
    cr_expect(rc == RILL_EPERM || rc == RILL_ENOMEM, "got %d", rc);
    cr_expect(strstr(rill_errmsg(), "mlock") != NULL, "detail: '%s'", rill_errmsg());
  }
  /* Far past any default RLIMIT_MEMLOCK: refused unless privileged, and
   * the refusal leaks nothing. */
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  rc = rill_iopool_create(
      &p, &(rill_iopool_opts_t){.buf_size = 1 << 20, .count = 64, .flags = RILL_IOPOOL_LOCKED});
  rill_mem_counters_thread(&c1);
  if (rc == 0) {
    cr_expect_eq(rill_iopool_destroy(p), 0);
  } else {
    cr_expect(rc == RILL_EPERM || rc == RILL_ENOMEM, "got %d", rc);
    cr_expect(strstr(rill_errmsg(), "mlock") != NULL, "detail: '%s'", rill_errmsg());
    cr_expect_eq(c1.allocs - c0.allocs, c1.frees - c0.frees, "failed create leaked");
    cr_expect_eq(c1.maps - c0.maps, c1.unmaps - c0.unmaps, "failed create kept its mapping");
  }
}

Test(iopool, get_all_then_eagain_then_put_all) {
  enum { N = 16 };
  rill_iopool_t *p = mk_pool(8192, N, 0);
  uint8_t *base = rill_iopool_base(p);
  void *bufs[N];
  bool seen[N] = {0};
  for (int i = 0; i < N; i++) {
    uint32_t idx = UINT32_MAX;
    cr_assert_eq(rill_iopool_get(p, &bufs[i], &idx), 0);
    cr_assert_lt(idx, N);
    cr_assert(!seen[idx], "index %u handed out twice", idx);
    seen[idx] = true;
    cr_expect_eq(bufs[i], base + (size_t)idx * 8192);
    cr_expect_eq(rill_iopool_index(p, bufs[i]), (int)idx);
    memset(bufs[i], i, 8192);
  }
  cr_expect_eq(nfree(p), 0);
  void *b = (void *)0x1;
  rill_errmsg_clear();
  cr_expect_eq(rill_iopool_get(p, &b, NULL), RILL_EAGAIN);
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_eq(b, (void *)0x1);
  rill_buf_t v = {(rill__buf_store_t *)0x1, NULL, 0};
  cr_expect_eq(rill_iopool_get_buf(p, &v), RILL_EAGAIN);
  cr_expect_null(v.store);
  int bad = 0;
  for (int i = 0; i < N; i++)
    for (int k = 0; k < 8192; k += 512)
      bad += ((uint8_t *)bufs[i])[k] != i;
  cr_expect_eq(bad, 0, "buffers overwritten");

  rill_errmsg_clear();
  cr_expect_eq(rill_iopool_destroy(p), RILL_EBUSY, "buffers are out");
  cr_expect_neq(rill_errmsg()[0], '\0');
  for (int i = 0; i < N; i++)
    cr_assert_eq(rill_iopool_put(p, bufs[i]), 0);
  cr_expect_eq(nfree(p), N);
  cr_assert_eq(rill_iopool_get(p, &b, NULL), 0, "usable after a refused destroy");
  cr_assert_eq(rill_iopool_put(p, b), 0);
  cr_expect_eq(rill_iopool_destroy(p), 0);
}

Test(iopool, foreign_and_double_puts_are_refused_without_harm) {
  rill_iopool_t *p = mk_pool(4096, 4, 0);
  uint8_t *base = rill_iopool_base(p);
  int local;
  void *foreign[] = {NULL,        base + 1,        base + 4095, base + 4096 + 8,
                     base - 4096, base + 4 * 4096, &local,      (void *)UINTPTR_MAX};
  for (size_t i = 0; i < sizeof foreign / sizeof *foreign; i++) {
    rill_errmsg_clear();
    cr_expect_eq(rill_iopool_put(p, foreign[i]), RILL_EFOREIGN, "pointer %zu", i);
    cr_expect_neq(rill_errmsg()[0], '\0');
    cr_expect_eq(rill_iopool_index(p, foreign[i]), RILL_EFOREIGN);
  }
  cr_expect_eq(nfree(p), 4);

  /* A buffer never got, then one put twice. */
  rill_errmsg_clear();
  cr_expect_eq(rill_iopool_put(p, base), RILL_EDOUBLE);
  cr_expect_neq(rill_errmsg()[0], '\0');
  void *b;
  cr_assert_eq(rill_iopool_get(p, &b, NULL), 0);
  cr_assert_eq(rill_iopool_put(p, b), 0);
  cr_expect_eq(rill_iopool_put(p, b), RILL_EDOUBLE);
  cr_expect_eq(nfree(p), 4);

  /* The free list is intact: four distinct buffers, then EAGAIN. */
  void *all[4];
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(rill_iopool_get(p, &all[i], NULL), 0);
    for (int j = 0; j < i; j++)
      cr_assert_neq(all[i], all[j]);
  }
  cr_expect_eq(rill_iopool_get(p, &b, NULL), RILL_EAGAIN);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(rill_iopool_put(p, all[i]), 0);
  cr_expect_eq(rill_iopool_get(NULL, &b, NULL), RILL_EINVAL);
  cr_expect_eq(rill_iopool_get(p, NULL, NULL), RILL_EINVAL);
  cr_expect_eq(rill_iopool_destroy(p), 0);
}

Test(iopool, get_buf_views_return_the_buffer_on_last_release) {
  rill_iopool_t *p = mk_pool(4096, 2, 0);
  rill_buf_t a, b, s;
  cr_assert_eq(rill_iopool_get_buf(p, &a), 0);
  cr_expect_eq(a.len, 4096);
  cr_expect_eq(rill_iopool_index(p, a.data) >= 0, true);
  cr_expect_eq(nfree(p), 1);
  uint8_t *w;
  cr_assert_eq(rill_buf_try_mut(&a, &w), 0);
  memcpy(w, "hello", 5);
  cr_assert_eq(rill_buf_clone(&b, &a), 0);
  cr_assert_eq(rill_buf_slice(&s, &a, 1, 4), 0);
  cr_expect_eq(memcmp(s.data, "ello", 4), 0);

  /* The pool's own put refuses a buffer its views still hold. */
  rill_errmsg_clear();
  cr_expect_eq(rill_iopool_put(p, a.data), RILL_EBUSY);
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_eq(rill_iopool_destroy(p), RILL_EBUSY);

  rill_buf_release(&a);
  rill_buf_release(&b);
  cr_expect_eq(nfree(p), 1, "returned before the last view");
  rill_buf_release(&s);
  cr_expect_eq(nfree(p), 2);

  /* Back in the pool: both buffers can be had again, as views or not. */
  void *raw;
  cr_assert_eq(rill_iopool_get_buf(p, &a), 0);
  cr_assert_eq(rill_iopool_get(p, &raw, NULL), 0);
  cr_expect_neq(raw, (void *)a.data);
  cr_expect_eq(rill_iopool_get_buf(p, &b), RILL_EAGAIN);
  cr_expect_eq(rill_iopool_put(p, raw), 0);
  rill_buf_release(&a);
  cr_expect_eq(rill_iopool_destroy(p), 0);
}

#ifdef RILL__ASAN
Test(iopool, free_buffers_are_poisoned) {
  rill_iopool_t *p = mk_pool(4096, 2, 0);
  uint8_t *b;
  cr_assert_eq(rill_iopool_get(p, (void **)&b, NULL), 0);
  cr_expect_eq(__asan_region_is_poisoned(b, 4096), NULL);
  cr_assert_eq(rill_iopool_put(p, b), 0);
  cr_expect(__asan_address_is_poisoned(b));
  cr_expect(__asan_address_is_poisoned(b + 4095));
  cr_expect_eq(rill_iopool_destroy(p), 0);
}
#endif

/* Threads get and put as fast as they can from a small pool; each claims a
 * buffer in a shared table when it gets it, so a buffer handed out twice
 * is caught, and checks its own mark in the buffer before putting. */
enum { STRESS_BUFS = 8, STRESS_ITERS = 50000 };

struct stress {
  rill_iopool_t *p;
  atomic_int owner[STRESS_BUFS];
  atomic_long twice, corrupt, eagain;
};

struct worker {
  struct stress *s;
  int id;
};

static void *stress_worker(void *arg) {
  struct worker *w = arg;
  struct stress *s = w->s;
  for (int i = 0; i < STRESS_ITERS; i++) {
    bool as_view = (i & 3) == 0;
    rill_buf_t v = RILL_BUF_EMPTY;
    uint8_t *b;
    uint32_t idx;
    int rc;
    if (as_view) {
      rc = rill_iopool_get_buf(s->p, &v);
      b = v.data;
      idx = rc == 0 ? (uint32_t)rill_iopool_index(s->p, b) : 0;
    } else {
      rc = rill_iopool_get(s->p, (void **)&b, &idx);
    }
    if (rc == RILL_EAGAIN) {
      atomic_fetch_add(&s->eagain, 1);
      continue;
    }
    int expect = 0;
    if (!atomic_compare_exchange_strong(&s->owner[idx], &expect, w->id)) {
      atomic_fetch_add(&s->twice, 1);
      continue;
    }
    memset(b, w->id, 64);
    b[4095] = (uint8_t)w->id;
    for (int k = 0; k < 64; k++)
      if (b[k] != w->id)
        atomic_fetch_add(&s->corrupt, 1);
    if (b[4095] != w->id)
      atomic_fetch_add(&s->corrupt, 1);
    atomic_store(&s->owner[idx], 0);
    if (as_view)
      rill_buf_release(&v);
    else if (rill_iopool_put(s->p, b) != 0)
      atomic_fetch_add(&s->corrupt, 1);
  }
  return NULL;
}

static void run_stress(int nthreads) {
  static struct stress s;
  memset(&s, 0, sizeof s);
  s.p = mk_pool(4096, STRESS_BUFS, 0);
  pthread_t th[4];
  struct worker w[4];
  for (int t = 0; t < nthreads; t++) {
    w[t] = (struct worker){&s, t + 1};
    cr_assert_eq(pthread_create(&th[t], NULL, stress_worker, &w[t]), 0);
  }
  for (int t = 0; t < nthreads; t++)
    pthread_join(th[t], NULL);
  cr_expect_eq(atomic_load(&s.twice), 0, "a buffer was handed out twice");
  cr_expect_eq(atomic_load(&s.corrupt), 0, "a buffer was written by two threads");
  cr_expect_eq(nfree(s.p), STRESS_BUFS);
  /* Every buffer is back exactly once. */
  void *b[STRESS_BUFS];
  for (int i = 0; i < STRESS_BUFS; i++)
    cr_assert_eq(rill_iopool_get(s.p, &b[i], NULL), 0);
  void *x;
  cr_expect_eq(rill_iopool_get(s.p, &x, NULL), RILL_EAGAIN);
  for (int i = 0; i < STRESS_BUFS; i++)
    cr_assert_eq(rill_iopool_put(s.p, b[i]), 0);
  cr_expect_eq(rill_iopool_destroy(s.p), 0);
}

Test(iopool, two_threads_never_share_a_buffer) { run_stress(2); }
Test(iopool, four_threads_never_share_a_buffer) { run_stress(4); }

/* Fewer buffers than threads: the stack is empty often and EAGAIN races
 * with puts. */
Test(iopool, contended_single_buffer) {
  static struct stress s;
  memset(&s, 0, sizeof s);
  s.p = mk_pool(4096, 1, 0);
  pthread_t th[3];
  struct worker w[3];
  for (int t = 0; t < 3; t++) {
    w[t] = (struct worker){&s, t + 1};
    cr_assert_eq(pthread_create(&th[t], NULL, stress_worker, &w[t]), 0);
  }
  for (int t = 0; t < 3; t++)
    pthread_join(th[t], NULL);
  cr_expect_eq(atomic_load(&s.twice), 0);
  cr_expect_eq(atomic_load(&s.corrupt), 0);
  cr_expect_eq(nfree(s.p), 1);
  cr_expect_eq(rill_iopool_destroy(s.p), 0);
}

Test(iopool, get_put_and_views_allocate_nothing) {
  rill_iopool_t *p = mk_pool(4096, 4, 0);
  uint64_t before = rill_mem_allocs_thread();
  uintptr_t acc = 0;
  for (int i = 0; i < 1000000; i++) {
    void *b;
    uint32_t idx;
    if (rill_iopool_get(p, &b, &idx) != 0 || rill_iopool_put(p, b) != 0)
      cr_assert_fail("get/put %d: %s", i, rill_errmsg());
    acc += idx;
  }
  for (int i = 0; i < 1000000; i++) {
    rill_buf_t v, c;
    if (rill_iopool_get_buf(p, &v) != 0 || rill_buf_clone(&c, &v) != 0)
      cr_assert_fail("get_buf %d: %s", i, rill_errmsg());
    acc += v.len;
    rill_buf_release(&v);
    rill_buf_release(&c);
  }
  uint64_t after = rill_mem_allocs_thread();
  cr_expect_eq(after - before, 0, "%llu allocations in 2,000,000 pool round trips",
               (unsigned long long)(after - before));
  cr_expect_gt(acc, 0);
  cr_expect_eq(nfree(p), 4);
  cr_expect_eq(rill_iopool_destroy(p), 0);
}
