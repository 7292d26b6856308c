#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "rill/mem.h"

static rill_slab_t *mk(size_t size, size_t max, uint32_t flags) {
  rill_slab_t *s = NULL;
  rill_slab_opts_t o = {.obj_size = size, .max_objects = max, .flags = flags, .name = "t"};
  int rc = rill_slab_create(&s, &o);
  cr_assert_eq(rc, 0, "create: %s (%s)", rill_strerror(rc), rill_errmsg());
  return s;
}

static void expect_einval(rill_slab_opts_t o, const char *what) {
  rill_slab_t *s = (rill_slab_t *)0x1;
  rill_errmsg_clear();
  int rc = rill_slab_create(&s, &o);
  cr_expect_eq(rc, RILL_EINVAL, "%s: got %d", what, rc);
  cr_expect_null(s, "%s: out must be NULL on failure", what);
  cr_expect_neq(rill_errmsg()[0], '\0', "%s: no detail", what);
}

Test(slab, create_rejects_bad_options) {
  expect_einval((rill_slab_opts_t){.obj_size = 0}, "zero size");
  expect_einval((rill_slab_opts_t){.obj_size = RILL_SLAB_MAX_OBJ + 1}, "huge size");
  expect_einval((rill_slab_opts_t){.obj_size = SIZE_MAX}, "SIZE_MAX");
  expect_einval((rill_slab_opts_t){.obj_size = 64, .align = 24}, "align not a power of two");
  expect_einval((rill_slab_opts_t){.obj_size = 64, .align = 4}, "align below 8");
  expect_einval((rill_slab_opts_t){.obj_size = 64, .align = 8192}, "align above 4096");
  expect_einval((rill_slab_opts_t){.obj_size = 64, .flags = 0x80}, "unknown flag");
  expect_einval((rill_slab_opts_t){.obj_size = 4096, .max_objects = SIZE_MAX / 2},
                "cap beyond the address limit");
  rill_slab_t *s = NULL;
  cr_expect_eq(rill_slab_create(&s, NULL), RILL_EINVAL);
  cr_expect_eq(rill_slab_create(NULL, &(rill_slab_opts_t){.obj_size = 8}), RILL_EINVAL);
}

Test(slab, objects_are_distinct_aligned_and_whole) {
  size_t sizes[] = {1, 8, 17, 48, 64, 100, 256, 1000, 4096, 5000};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    rill_slab_t *s = mk(sizes[k], 0, 0);
    enum { N = 300 };
    uint8_t *p[N];
    for (int i = 0; i < N; i++) {
      cr_assert_eq(rill_slab_get(s, (void **)&p[i]), 0);
      cr_assert_eq((uintptr_t)p[i] % (sizes[k] < 16 ? 8 : 16), 0, "size %zu misaligned", sizes[k]);
      memset(p[i], i & 0xff, sizes[k]);
      cr_assert(rill_slab_owns(s, p[i]));
    }
    for (int i = 0; i < N; i++)
      for (size_t b = 0; b < sizes[k]; b++)
        cr_assert_eq(p[i][b], i & 0xff, "size %zu: object %d overwritten", sizes[k], i);
    for (int i = 0; i < N; i++)
      cr_assert_eq(rill_slab_put(s, p[i]), 0);
    rill_slab_stats_t st;
    rill_slab_stats(s, &st);
    cr_expect_eq(st.in_use, 0);
    cr_expect_geq(st.capacity, N);
    rill_slab_destroy(s);
  }
}

Test(slab, custom_alignment) {
  rill_slab_t *s = NULL;
  rill_slab_opts_t o = {.obj_size = 100, .align = 256};
  cr_assert_eq(rill_slab_create(&s, &o), 0);
  for (int i = 0; i < 50; i++) {
    void *p;
    cr_assert_eq(rill_slab_get(s, &p), 0);
    cr_assert_eq((uintptr_t)p % 256, 0);
  }
  rill_slab_stats_t st;
  rill_slab_stats(s, &st);
  cr_expect_eq(st.stride, 256);
  cr_expect_eq(st.in_use, 50);
  rill_slab_destroy(s);
}

Test(slab, foreign_pointers_are_refused_without_harm) {
  rill_slab_t *s = mk(48, 0, 0), *other = mk(48, 0, 0);
  void *a, *b;
  cr_assert_eq(rill_slab_get(s, &a), 0);
  cr_assert_eq(rill_slab_get(other, &b), 0);
  void *heap = malloc(48);
  int stack;
  void *bad[] = {NULL, (char *)a + 1, (char *)a + 47, heap, &stack, b, (void *)(uintptr_t)-64};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    rill_errmsg_clear();
    cr_expect_eq(rill_slab_put(s, bad[i]), RILL_EFOREIGN, "bad[%zu] accepted", i);
    cr_expect_neq(rill_errmsg()[0], '\0');
    cr_expect_not(rill_slab_owns(s, bad[i]));
  }
  rill_slab_stats_t st;
  rill_slab_stats(s, &st);
  cr_expect_eq(st.in_use, 1, "a refused put changed the books");
  cr_expect_eq(rill_slab_put(s, a), 0);
  cr_expect_eq(rill_slab_put(other, b), 0);
  free(heap);
  rill_slab_destroy(s);
  rill_slab_destroy(other);
}

Test(slab, checked_mode_catches_double_put) {
  rill_slab_t *s = mk(64, 0, RILL_SLAB_CHECKED);
  void *p, *q;
  cr_assert_eq(rill_slab_get(s, &p), 0);
  cr_assert_eq(rill_slab_get(s, &q), 0);
  cr_expect_eq(rill_slab_put(s, p), 0);
  rill_errmsg_clear();
  cr_expect_eq(rill_slab_put(s, p), RILL_EDOUBLE);
  cr_expect(strstr(rill_errmsg(), "twice") != NULL, "detail: %s", rill_errmsg());
  /* An object carved but never handed out is free: putting it is a double put. */
  rill_slab_stats_t st;
  rill_slab_stats(s, &st);
  uint8_t *never = (uint8_t *)q + st.stride * 10;
  cr_expect_eq(rill_slab_put(s, never), RILL_EDOUBLE);
  cr_expect_eq(rill_slab_put(s, q), 0);
  rill_slab_stats(s, &st);
  cr_expect_eq(st.in_use, 0);
  /* Still usable, and the two objects come back exactly once each. */
  void *x, *y;
  cr_assert_eq(rill_slab_get(s, &x), 0);
  cr_assert_eq(rill_slab_get(s, &y), 0);
  cr_expect_neq(x, y);
  rill_slab_destroy(s);
}

Test(slab, hard_cap_says_enomem_then_recovers) {
  rill_slab_t *s = mk(128, 100, 0);
  void *p[100], *extra;
  for (int i = 0; i < 100; i++)
    cr_assert_eq(rill_slab_get(s, &p[i]), 0, "get %d", i);
  rill_errmsg_clear();
  cr_expect_eq(rill_slab_get(s, &extra), RILL_ENOMEM);
  cr_expect(strstr(rill_errmsg(), "cap") != NULL, "detail: %s", rill_errmsg());
  cr_expect_eq(rill_slab_put(s, p[42]), 0);
  cr_expect_eq(rill_slab_get(s, &extra), 0);
  cr_expect_eq(extra, p[42]);
  rill_slab_stats_t st;
  rill_slab_stats(s, &st);
  cr_expect_eq(st.capacity, 100);
  cr_expect_eq(st.max_objects, 100);
  rill_slab_destroy(s);
}

Test(slab, grows_in_chunks) {
  rill_slab_t *s = NULL;
  rill_slab_opts_t o = {.obj_size = 64, .chunk_bytes = 4096};
  cr_assert_eq(rill_slab_create(&s, &o), 0);
  rill_slab_stats_t st;
  rill_slab_stats(s, &st);
  cr_expect_eq(st.capacity, 0, "memory committed before the first get");
  void *p[1000];
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(rill_slab_get(s, &p[i]), 0);
  rill_slab_stats(s, &st);
  cr_expect_geq(st.chunks, 1000 / 64);
  cr_expect_eq(st.in_use, 1000);
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(rill_slab_put(s, p[i]), 0);
  rill_slab_destroy(s);
}

/* A shadow model: random gets and puts, each live object stamped with its
 * slot, checked on put and at the end; a slab that handed out overlapping
 * or duplicate memory shows up as a broken stamp. */
static void shadow_run(uint32_t flags, unsigned seed) {
  enum { SLOTS = 2000, STEPS = 200000 };
  rill_slab_t *s = mk(40, 0, flags);
  uint64_t *live[SLOTS] = {0};
  size_t nlive = 0;
  srand(seed);
  for (int step = 0; step < STEPS; step++) {
    int i = rand() % SLOTS;
    if (live[i]) {
      for (int w = 0; w < 5; w++)
        cr_assert_eq(live[i][w], (uint64_t)i * 5 + w, "stamp of slot %d broken", i);
      cr_assert_eq(rill_slab_put(s, live[i]), 0);
      live[i] = NULL;
      nlive--;
    } else {
      cr_assert_eq(rill_slab_get(s, (void **)&live[i]), 0);
      for (int w = 0; w < 5; w++)
        live[i][w] = (uint64_t)i * 5 + w;
      nlive++;
    }
    if (step % 50000 == 0) {
      rill_slab_stats_t st;
      rill_slab_stats(s, &st);
      cr_assert_eq(st.in_use, nlive);
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (live[i])
      for (int w = 0; w < 5; w++)
        cr_assert_eq(live[i][w], (uint64_t)i * 5 + w);
  rill_slab_destroy(s);
}

Test(slab, random_sequence_matches_shadow_model) { shadow_run(RILL_SLAB_UNCHECKED, 1); }
Test(slab, random_sequence_matches_shadow_model_checked) { shadow_run(RILL_SLAB_CHECKED, 2); }

Test(slab, hot_path_allocates_nothing) {
  rill_slab_t *s = mk(64, 0, RILL_SLAB_UNCHECKED);
  void *p[200];
  /* Warm up: the thread's cache and enough chunks for the pattern below. */
  for (int i = 0; i < 200; i++)
    cr_assert_eq(rill_slab_get(s, &p[i]), 0);
  for (int i = 0; i < 200; i++)
    cr_assert_eq(rill_slab_put(s, p[i]), 0);
  uint64_t before = rill_mem_allocs_thread();
  for (int r = 0; r < 1000000; r++) {
    void *q;
    cr_assert_eq(rill_slab_get(s, &q), 0);
    cr_assert_eq(rill_slab_put(s, q), 0);
  }
  /* Batches through the depot too: 200 out and back, 5,000 times. */
  for (int r = 0; r < 5000; r++) {
    for (int i = 0; i < 200; i++)
      rill_slab_get(s, &p[i]);
    for (int i = 0; i < 200; i++)
      rill_slab_put(s, p[i]);
  }
  cr_expect_eq(rill_mem_allocs_thread() - before, 0, "%llu allocations on the hot path",
               (unsigned long long)(rill_mem_allocs_thread() - before));
  rill_slab_destroy(s);
}

Test(slab, flush_returns_cached_objects_to_the_depot) {
  rill_slab_t *s = mk(64, 0, RILL_SLAB_UNCHECKED);
  void *p[10];
  for (int i = 0; i < 10; i++)
    rill_slab_get(s, &p[i]);
  for (int i = 0; i < 10; i++)
    rill_slab_put(s, p[i]);
  rill_slab_stats_t a, b;
  rill_slab_stats(s, &a);
  cr_expect_gt(a.cached, 0);
  rill_slab_flush(s);
  rill_slab_stats(s, &b);
  cr_expect_eq(b.cached, 0);
  cr_expect_eq(b.depot, a.depot + a.cached);
  rill_slab_destroy(s);
}

Test(slab, more_slabs_than_cache_ids_still_work) {
  enum { N = 4200 };
  rill_slab_t **s = calloc(N, sizeof *s);
  for (int i = 0; i < N; i++)
    s[i] = mk(16, 8, 0);
  for (int i = 0; i < N; i += 7) {
    void *p, *q;
    cr_assert_eq(rill_slab_get(s[i], &p), 0, "slab %d", i);
    cr_assert_eq(rill_slab_get(s[i], &q), 0);
    cr_assert_neq(p, q);
    cr_assert_eq(rill_slab_put(s[i], p), 0);
    cr_assert_eq(rill_slab_put(s[i], q), 0);
    cr_assert_eq(rill_slab_put(s[i], (char *)q + 1), RILL_EFOREIGN);
  }
  for (int i = 0; i < N; i++)
    rill_slab_destroy(s[i]);
  free(s);
}

#ifdef RILL__ASAN
/* Under ASan a freed object is poisoned: touching it is reported. */
Test(slab, use_after_put_is_reported_under_asan, .signal = SIGABRT) {
  rill_slab_t *s = mk(64, 0, RILL_SLAB_UNCHECKED);
  volatile uint8_t *p;
  rill_slab_get(s, (void **)&p);
  rill_slab_put(s, (void *)p);
  p[3] = 1;
}
#endif

#ifdef RILL__ASAN
/* ASan's report must end in abort() for the test above to see SIGABRT,
 * however the binary is started. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "abort_on_error=1"; }
#endif

/* The one-comparison ownership test against plain arithmetic, near object
 * starts, at every byte of a few objects, below the base and far above. */
Test(slab, ownership_test_matches_division) {
  size_t sizes[] = {8, 24, 40, 48, 56, 72, 100, 1000, 4096, 5000};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    rill_slab_t *s = mk(sizes[k], 0, 0);
    void *p;
    cr_assert_eq(rill_slab_get(s, &p), 0);
    rill_slab_stats_t st;
    rill_slab_stats(s, &st);
    uintptr_t base = (uintptr_t)p;
    uintptr_t end = base + st.capacity * st.stride;
    for (uintptr_t a = base - 3 * st.stride; a < base + 5 * st.stride; a++) {
      bool want = a >= base && a < end && (a - base) % st.stride == 0;
      cr_assert_eq(rill_slab_owns(s, (void *)a), want, "stride %zu, offset %td", st.stride,
                   (ptrdiff_t)(a - base));
    }
    for (uintptr_t a = end - 2 * st.stride; a < end + 2 * st.stride; a += 8) {
      bool want = a < end && (a - base) % st.stride == 0;
      cr_assert_eq(rill_slab_owns(s, (void *)a), want, "stride %zu near the end", st.stride);
    }
    uintptr_t far[] = {0, 8, base ^ ((uintptr_t)1 << 46), UINTPTR_MAX - 7,
                       base + ((uintptr_t)st.stride << 40)};
    for (size_t i = 0; i < sizeof far / sizeof *far; i++)
      cr_assert_not(rill_slab_owns(s, (void *)far[i]), "stride %zu: %#lx", st.stride,
                    (unsigned long)far[i]);
    rill_slab_destroy(s);
  }
}
