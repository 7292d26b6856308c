#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/internal.h"
#include "rill/mem.h"

/* Criterion reports every passing assertion to its runner (ctest runs with
 * --full-stats), so loops test plainly and assert only on failure. */
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      cr_assert_fail(__VA_ARGS__);                                                                 \
  } while (0)

static rill_arena_t mk_arena(size_t chunk, size_t max) {
  rill_arena_t a;
  rill_arena_opts_t o = {.chunk_bytes = chunk, .max_bytes = max};
  int rc = rill_arena_init(&a, &o);
  cr_assert_eq(rc, 0, "init: %s (%s)", rill_strerror(rc), rill_errmsg());
  return a;
}

static void *must_alloc(rill_arena_t *a, size_t size, size_t align) {
  void *p = NULL;
  int rc = rill_arena_alloc_aligned(a, size, align, &p);
  CHECK(rc == 0, "alloc %zu/%zu: %s (%s)", size, align, rill_strerror(rc), rill_errmsg());
  CHECK(p != NULL && (uintptr_t)p % align == 0, "alloc %zu/%zu misaligned: %p", size, align, p);
  return p;
}

static rill_arena_stats_t stats(const rill_arena_t *a) {
  rill_arena_stats_t st;
  rill_arena_stats(a, &st);
  return st;
}

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

Test(arena, init_defaults_allocates_nothing) {
  uint64_t before = rill_mem_allocs_thread();
  rill_arena_t a;
  cr_assert_eq(rill_arena_init(&a, NULL), 0);
  cr_expect_eq(a.chunk_bytes, (size_t)64 << 10);
  cr_expect_eq(a.max_bytes, 0);
  rill_arena_stats_t st = stats(&a);
  cr_expect_eq(st.used, 0);
  cr_expect_eq(st.held, 0);
  cr_expect_eq(st.chunks, 0);
  cr_expect_eq(rill_mem_allocs_thread(), before);
  /* A zeroed opts means the defaults too. */
  rill_arena_fini(&a);
  cr_assert_eq(rill_arena_init(&a, &(rill_arena_opts_t){0}), 0);
  cr_expect_eq(a.chunk_bytes, (size_t)64 << 10);
  rill_arena_fini(&a);
}

Test(arena, init_rejects_absurd_chunk_sizes) {
  size_t bad[] = {1, 16, 255, SIZE_MAX, SIZE_MAX / 2, (size_t)1 << 41};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    rill_arena_t a;
    rill_errmsg_clear();
    int rc = rill_arena_init(&a, &(rill_arena_opts_t){.chunk_bytes = bad[i]});
    cr_expect_eq(rc, RILL_EINVAL, "chunk_bytes %zu: got %d", bad[i], rc);
    cr_expect(strstr(rill_errmsg(), "chunk_bytes") != NULL, "no detail: '%s'", rill_errmsg());
  }
  cr_expect_eq(rill_arena_init(NULL, NULL), RILL_EINVAL);
}

Test(arena, allocations_are_aligned_distinct_and_writable) {
  rill_arena_t a = mk_arena(4096, 0);
  enum { N = 13 * 20 };
  uint8_t *p[N];
  size_t sz[N];
  for (int i = 0; i < N; i++) {
    size_t align = (size_t)1 << (i % 13);
    sz[i] = (size_t)(i * 7 % 300) + 1;
    p[i] = must_alloc(&a, sz[i], align);
    memset(p[i], i & 0xff, sz[i]);
  }
  for (int i = 0; i < N; i++)
    for (size_t b = 0; b < sz[i]; b++)
      CHECK(p[i][b] == (i & 0xff), "allocation %d overwritten", i);
  /* The 16-byte default. */
  void *q = NULL;
  cr_assert_eq(rill_arena_alloc(&a, 3, &q), 0);
  cr_expect_eq((uintptr_t)q % 16, 0);
  rill_arena_fini(&a);
}

Test(arena, bad_input_is_an_error_not_a_crash) {
  rill_arena_t a = mk_arena(4096, 0);
  void *sentinel = (void *)0x1234, *p = sentinel;

  rill_errmsg_clear();
  cr_expect_eq(rill_arena_alloc(&a, 0, &p), RILL_EINVAL);
  cr_expect(strstr(rill_errmsg(), "size") != NULL, "detail: '%s'", rill_errmsg());

  size_t aligns[] = {0, 3, 24, 100, 8192, (size_t)1 << 40, SIZE_MAX};
  for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
    rill_errmsg_clear();
    cr_expect_eq(rill_arena_alloc_aligned(&a, 8, aligns[i], &p), RILL_EINVAL, "align %zu",
                 aligns[i]);
    cr_expect(strstr(rill_errmsg(), "alignment") != NULL, "detail: '%s'", rill_errmsg());
  }
  size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX / 2, (size_t)1 << 41};
  for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
    rill_errmsg_clear();
    cr_expect_eq(rill_arena_alloc_aligned(&a, huge[i], 4096, &p), RILL_ENOMEM, "size %zu", huge[i]);
    cr_expect_neq(rill_errmsg()[0], '\0', "size %zu: no detail", huge[i]);
  }
  cr_expect_eq(p, sentinel, "a failed alloc wrote its out pointer");
  cr_expect_eq(stats(&a).held, 0, "a failed alloc kept memory");
  /* Still usable, and a failed alloc after some memory changes nothing. */
  must_alloc(&a, 100, 8);
  rill_arena_stats_t st = stats(&a);
  cr_expect_eq(rill_arena_alloc(&a, SIZE_MAX, &p), RILL_ENOMEM);
  rill_arena_stats_t st2 = stats(&a);
  cr_expect_eq(st.used, st2.used);
  cr_expect_eq(st.held, st2.held);
  cr_expect_eq(st.chunks, st2.chunks);
  must_alloc(&a, 100, 8);
  rill_arena_fini(&a);
}

Test(arena, large_allocation_gets_a_chunk_of_its_own) {
  rill_arena_t a = mk_arena(4096, 0);
  must_alloc(&a, 64, 16);
  cr_expect_eq(stats(&a).chunks, 1);
  cr_expect_eq(stats(&a).held, 4096);
  uint8_t *big = must_alloc(&a, 100000, 4096);
  memset(big, 0xab, 100000);
  rill_arena_stats_t st = stats(&a);
  cr_expect_eq(st.chunks, 2);
  cr_expect_geq(st.held, 4096 + 100000);
  cr_expect_lt(st.held, 4096 + 100000 + 8192, "big chunk is oversized: %zu", st.held);
  uint8_t *small = must_alloc(&a, 64, 16);
  memset(small, 1, 64);
  for (size_t i = 0; i < 100000; i++)
    CHECK(big[i] == 0xab, "byte %zu of the big allocation overwritten", i);
  rill_arena_fini(&a);
}

Test(arena, cap_says_enomem_and_recovers) {
  rill_arena_t a = mk_arena(4096, 16384);
  void *p;
  int n = 0, rc;
  while ((rc = rill_arena_alloc(&a, 1000, &p)) == 0)
    n++;
  cr_expect_eq(rc, RILL_ENOMEM);
  cr_expect(strstr(rill_errmsg(), "cap") != NULL, "detail: '%s'", rill_errmsg());
  cr_expect_geq(n, 12, "only %d allocations fit under the cap", n);
  cr_expect_leq(stats(&a).held, 16384);

  /* After a reset the same allocations fit again, with no new memory. */
  rill_arena_reset(&a);
  uint64_t before = rill_mem_allocs_thread();
  for (int i = 0; i < n; i++)
    must_alloc(&a, 1000, 16);
  cr_expect_eq(rill_mem_allocs_thread(), before);

  /* An allocation no chunk holds: the spares go so that it fits. */
  rill_arena_reset(&a);
  uint8_t *q = must_alloc(&a, 12000, 16);
  memset(q, 7, 12000);
  cr_expect_leq(stats(&a).held, 16384);

  /* Larger than the cap: refused, arena intact. */
  cr_expect_eq(rill_arena_alloc(&a, 20000, &p), RILL_ENOMEM);
  cr_expect_eq(q[11999], 7);
  rill_arena_fini(&a);
}

Test(arena, reset_keeps_chunks_and_replays_them_in_order) {
  rill_arena_t a = mk_arena(4096, 0);
  enum { N = 100 };
  void *first[N];
  for (int i = 0; i < N; i++)
    first[i] = must_alloc(&a, 1000, 16);
  rill_arena_stats_t st = stats(&a);
  cr_expect_geq(st.chunks, 25);
  cr_expect_geq(st.used, (size_t)N * 1000);

  rill_arena_reset(&a);
  rill_arena_stats_t st2 = stats(&a);
  cr_expect_eq(st2.used, 0);
  cr_expect_eq(st2.held, st.held);
  cr_expect_eq(st2.chunks, st.chunks);

  uint64_t before = rill_mem_allocs_thread();
  for (int i = 0; i < N; i++)
    CHECK(must_alloc(&a, 1000, 16) == first[i], "allocation %d moved after reset", i);
  cr_expect_eq(rill_mem_allocs_thread(), before);
  cr_expect_eq(stats(&a).used, st.used);
  rill_arena_fini(&a);
}

Test(arena, trim_frees_spares_only) {
  rill_arena_t a = mk_arena(4096, 0);
  for (int i = 0; i < 40; i++)
    must_alloc(&a, 1000, 16);
  size_t chunks = stats(&a).chunks;
  /* Nothing is spare yet. */
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  rill_arena_trim(&a);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.frees, c0.frees);
  cr_expect_eq(stats(&a).chunks, chunks);

  rill_arena_reset(&a);
  rill_arena_trim(&a);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.frees - c0.frees, chunks - 1, "the first chunk stays current");
  cr_expect_eq(stats(&a).chunks, 1);
  cr_expect_eq(stats(&a).held, 4096);
  must_alloc(&a, 1000, 16);
  rill_arena_fini(&a);
}

Test(arena, fini_frees_everything_and_allows_init_again) {
  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  rill_arena_t a = mk_arena(4096, 0);
  for (int i = 0; i < 40; i++)
    must_alloc(&a, 1000, 16);
  rill_arena_mark_t m = rill_arena_mark(&a);
  for (int i = 0; i < 40; i++)
    must_alloc(&a, 1000, 16);
  cr_assert_eq(rill_arena_rewind(&a, m), 0); /* some chunks now spare */
  rill_arena_fini(&a);
  rill_mem_counters_thread(&c1);
  cr_expect_eq(c1.allocs - c0.allocs, c1.frees - c0.frees, "fini leaked chunks");
  rill_arena_stats_t st = stats(&a);
  cr_expect_eq(st.held + st.chunks + st.used, 0);
  rill_arena_fini(&a); /* twice is harmless */
  a = mk_arena(8192, 0);
  must_alloc(&a, 100, 16);
  cr_expect_eq(stats(&a).held, 8192);
  rill_arena_fini(&a);
}

Test(arena, rewind_takes_back_to_the_mark) {
  rill_arena_t a = mk_arena(4096, 0);
  rill_arena_mark_t m0 = rill_arena_mark(&a);
  uint8_t *keep = must_alloc(&a, 500, 16);
  memset(keep, 0x5a, 500);
  rill_arena_mark_t m1 = rill_arena_mark(&a);
  size_t used1 = stats(&a).used;
  void *after1 = must_alloc(&a, 100, 16);
  for (int i = 0; i < 30; i++)
    must_alloc(&a, 1000, 16);
  size_t chunks = stats(&a).chunks;
  cr_expect_gt(chunks, 5);

  cr_assert_eq(rill_arena_rewind(&a, m1), 0);
  cr_expect_eq(stats(&a).used, used1);
  cr_expect_eq(stats(&a).chunks, chunks, "rewind must keep the chunks");
  for (int i = 0; i < 500; i++)
    CHECK(keep[i] == 0x5a, "byte %d before the mark overwritten", i);
  /* The same memory comes back, from the spare chunks: nothing allocated. */
  uint64_t before = rill_mem_allocs_thread();
  cr_expect_eq(must_alloc(&a, 100, 16), after1);
  for (int i = 0; i < 30; i++)
    must_alloc(&a, 1000, 16);
  cr_expect_eq(rill_mem_allocs_thread(), before);

  /* Rewinding to the same mark twice is fine; so is the mark of the empty
   * arena, which takes everything back. */
  cr_assert_eq(rill_arena_rewind(&a, m1), 0);
  cr_assert_eq(rill_arena_rewind(&a, m1), 0);
  cr_assert_eq(rill_arena_rewind(&a, m0), 0);
  cr_expect_eq(stats(&a).used, 0);
  cr_expect_eq(must_alloc(&a, 500, 16), keep);
  rill_arena_fini(&a);
}

Test(arena, rewind_refuses_marks_it_cannot_honour) {
  rill_arena_t a = mk_arena(4096, 0), b = mk_arena(4096, 0);
  must_alloc(&b, 100, 16);
  rill_arena_mark_t mb = rill_arena_mark(&b);

  must_alloc(&a, 100, 16);
  rill_arena_mark_t m1 = rill_arena_mark(&a);
  must_alloc(&a, 100, 16);
  rill_arena_mark_t m2 = rill_arena_mark(&a); /* same chunk as m1, further on */
  for (int i = 0; i < 10; i++)
    must_alloc(&a, 1000, 16);
  rill_arena_mark_t m3 = rill_arena_mark(&a); /* a later chunk */
  must_alloc(&a, 100, 16);

  rill_arena_stats_t st = stats(&a);
  rill_errmsg_clear();
  cr_expect_eq(rill_arena_rewind(&a, mb), RILL_EINVAL, "mark from another arena");
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_eq(rill_arena_rewind(&a, (rill_arena_mark_t){NULL, (uint8_t *)0x1000}), RILL_EINVAL);
  cr_expect_eq(rill_arena_rewind(&a, (rill_arena_mark_t){m1.chunk, m1.cur - 4096}), RILL_EINVAL,
               "position before its chunk");
  rill_arena_stats_t st2 = stats(&a);
  cr_expect_eq(st.used, st2.used, "a refused rewind changed the arena");
  cr_expect_eq(st.chunks, st2.chunks);

  cr_assert_eq(rill_arena_rewind(&a, m1), 0);
  rill_errmsg_clear();
  cr_expect_eq(rill_arena_rewind(&a, m2), RILL_EINVAL, "mark passed by an earlier rewind");
  cr_expect_neq(rill_errmsg()[0], '\0');
  cr_expect_eq(rill_arena_rewind(&a, m3), RILL_EINVAL, "mark on a chunk now spare");

  /* Reset passes every mark but the start of the first chunk. */
  for (int i = 0; i < 10; i++)
    must_alloc(&a, 1000, 16);
  rill_arena_mark_t m4 = rill_arena_mark(&a);
  rill_arena_reset(&a);
  cr_expect_eq(rill_arena_rewind(&a, m4), RILL_EINVAL, "mark passed by a reset");
  cr_expect_eq(rill_arena_rewind(&a, m2), RILL_EINVAL, "mark passed by a reset");
  cr_expect_eq(rill_arena_rewind(&b, m1), RILL_EINVAL, "mark from another arena");
  cr_expect_eq(rill_arena_rewind(NULL, m1), RILL_EINVAL);
  rill_arena_fini(&a);
  rill_arena_fini(&b);
}

#ifdef RILL__ASAN
Test(arena, memory_taken_back_is_poisoned) {
  rill_arena_t a = mk_arena(4096, 0);
  uint8_t *p = must_alloc(&a, 100, 16);
  cr_expect_eq(__asan_address_is_poisoned(p), 0);
  cr_expect_eq(__asan_address_is_poisoned(p + 99), 0);
  cr_expect_neq(__asan_address_is_poisoned(p + 112), 0, "unallocated tail is open");
  rill_arena_mark_t m = rill_arena_mark(&a);
  uint8_t *q = must_alloc(&a, 100, 16);
  uint8_t *r = must_alloc(&a, 10000, 16); /* a fresh chunk */
  cr_expect_eq(__asan_address_is_poisoned(r + 9999), 0);
  cr_assert_eq(rill_arena_rewind(&a, m), 0);
  cr_expect_neq(__asan_address_is_poisoned(q), 0);
  cr_expect_neq(__asan_address_is_poisoned(r), 0);
  cr_expect_eq(__asan_address_is_poisoned(p + 99), 0);
  rill_arena_reset(&a);
  cr_expect_neq(__asan_address_is_poisoned(p), 0);
  rill_arena_fini(&a);
}
#endif

/* Random allocs, marks, rewinds and resets against a model of what should
 * be live: every live allocation keeps its pattern until rewound. */
#define LIVE_MAX 4096
#define MARK_MAX 64

struct live {
  uint8_t *p;
  size_t size;
  uint64_t id;
};

static void fill(const struct live *l) {
  uint8_t b = (uint8_t)(l->id * 0x9d);
  memset(l->p, b, l->size);
  memcpy(l->p, &l->id, l->size < 8 ? l->size : 8);
}

static void check(const struct live *l) {
  uint8_t b = (uint8_t)(l->id * 0x9d);
  uint8_t head[8];
  memset(head, b, sizeof head);
  memcpy(head, &l->id, l->size < 8 ? l->size : 8);
  size_t h = l->size < 8 ? l->size : 8;
  CHECK(memcmp(l->p, head, h) == 0, "allocation %llu: head overwritten", (unsigned long long)l->id);
  for (size_t i = h; i < l->size; i++)
    CHECK(l->p[i] == b, "allocation %llu: byte %zu overwritten", (unsigned long long)l->id, i);
}

Test(arena, random_sequence_matches_shadow_model) {
  static struct live live[LIVE_MAX];
  struct {
    rill_arena_mark_t m;
    size_t nlive, used;
  } marks[MARK_MAX];
  size_t nlive = 0, nmarks = 0;
  uint64_t id = 0;
  rill_arena_t a = mk_arena(4096, 0);
  rng = 42;

  for (int op = 0; op < 60000; op++) {
    unsigned r = (unsigned)(rnd() % 100);
    if (r < 60 && nlive < LIVE_MAX) {
      size_t size = rnd() % 20 == 0 ? 4000 + rnd() % 16000 : 1 + rnd() % 300;
      size_t align = (size_t)1 << (rnd() % 4 == 0 ? rnd() % 13 : rnd() % 5);
      struct live *l = &live[nlive++];
      l->p = must_alloc(&a, size, align);
      l->size = size;
      l->id = ++id;
      fill(l);
    } else if (r < 72 && nmarks < MARK_MAX) {
      marks[nmarks].m = rill_arena_mark(&a);
      marks[nmarks].nlive = nlive;
      marks[nmarks].used = stats(&a).used;
      nmarks++;
    } else if (r < 88 && nmarks) {
      size_t k = rnd() % nmarks;
      int rc = rill_arena_rewind(&a, marks[k].m);
      CHECK(rc == 0, "op %d: rewind to mark %zu: %s", op, k, rill_errmsg());
      CHECK(stats(&a).used == marks[k].used, "op %d: used after rewind", op);
#ifdef RILL__ASAN
      for (size_t i = marks[k].nlive; i < nlive; i++)
        CHECK(__asan_address_is_poisoned(live[i].p), "op %d: rewound memory still open", op);
#endif
      nlive = marks[k].nlive;
      nmarks = k + 1; /* marks after k were passed; k itself stays valid */
      for (size_t i = 0; i < nlive; i++)
        check(&live[i]);
    } else if (r < 90) {
      rill_arena_reset(&a);
      nlive = nmarks = 0;
      CHECK(stats(&a).used == 0, "op %d: used after reset", op);
      if (rnd() % 4 == 0)
        rill_arena_trim(&a);
    } else {
      size_t sum = 0;
      for (size_t i = 0; i < nlive; i++) {
        check(&live[i]);
        sum += live[i].size;
      }
      rill_arena_stats_t st = stats(&a);
      CHECK(st.used >= sum, "op %d: used %zu below live bytes %zu", op, st.used, sum);
      CHECK(st.used <= st.held, "op %d: used %zu above held %zu", op, st.used, st.held);
    }
  }
  for (size_t i = 0; i < nlive; i++)
    check(&live[i]);
  rill_arena_fini(&a);
}

Test(arena, hot_path_allocates_nothing_after_warm_up) {
  rill_arena_t a = mk_arena(0, 0);
  enum { ROUND = 1000, ROUNDS = 1000 };
  for (int i = 0; i < ROUND; i++)
    must_alloc(&a, (size_t)(i * 37 % 200) + 1, 16);
  rill_arena_reset(&a);

  rill_mem_counters_t c0, c1;
  rill_mem_counters_thread(&c0);
  uint64_t before = rill_mem_allocs_thread();
  uintptr_t acc = 0;
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < ROUND; i++) {
      void *p;
      CHECK(rill_arena_alloc(&a, (size_t)(i * 37 % 200) + 1, &p) == 0, "alloc failed: %s",
            rill_errmsg());
      acc += (uintptr_t)p;
    }
    rill_arena_reset(&a);
  }
  uint64_t after = rill_mem_allocs_thread();
  rill_mem_counters_thread(&c1);
  cr_expect_eq(after - before, 0, "%llu allocations in 1,000,000 arena allocs",
               (unsigned long long)(after - before));
  cr_expect_eq(c1.frees, c0.frees);
  cr_expect_neq(acc, 0);
  rill_arena_fini(&a);
}
