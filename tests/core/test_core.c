#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"
#include "rill/core.h"

/* ---- errors ------------------------------------------------------------- */

Test(error, every_code_has_its_own_name) {
  int codes[] = {RILL_EPERM,    RILL_ENOENT,   RILL_EINTR,     RILL_EIO,        RILL_EBADF,
                 RILL_EAGAIN,   RILL_ENOMEM,   RILL_EACCES,    RILL_EBUSY,      RILL_EEXIST,
                 RILL_EINVAL,   RILL_ENOSPC,   RILL_ERANGE,    RILL_ENOSYS,     RILL_EMSGSIZE,
                 RILL_EPROTO,   RILL_ENOTSUP,  RILL_ETIMEDOUT, RILL_ECONNRESET, RILL_ECANCELED,
                 RILL_ECORRUPT, RILL_EVERSION, RILL_ECLOSED,   RILL_ELAGGED,    RILL_EDOUBLE,
                 RILL_EFOREIGN, RILL_EFULL};
  size_t n = sizeof codes / sizeof *codes;
  for (size_t i = 0; i < n; i++) {
    cr_expect_lt(codes[i], 0, "code %zu is not negative", i);
    const char *s = rill_strerror(codes[i]);
    cr_expect_eq(s[0], 'E', "%d: %s", codes[i], s);
    cr_expect_null(strstr(s, "EUNKNOWN"), "%d has no name", codes[i]);
    for (size_t j = 0; j < i; j++)
      cr_expect_neq(codes[i], codes[j], "codes %zu and %zu collide", i, j);
  }
  cr_expect_str_eq(rill_strerror(RILL_ENOMEM), "ENOMEM: out of memory");
  cr_expect_not_null(strstr(rill_strerror(-99999), "EUNKNOWN"));
  cr_expect_not_null(strstr(rill_strerror(0), "success"));
  cr_expect_not_null(strstr(rill_strerror(5), "not an error"));
}

Test(error, errno_codes_are_negated_errno) {
  cr_expect_eq(RILL_ENOMEM, -ENOMEM);
  cr_expect_eq(RILL_EAGAIN, -EAGAIN);
  cr_expect_lt(RILL_ECORRUPT, -4000);
}

Test(error, detail_is_recorded_and_returned) {
  rill_errmsg_clear();
  cr_expect_str_empty(rill_errmsg());
  int rc = rill__err(RILL_EINVAL, "thing %d is %s", 7, "wrong");
  cr_expect_eq(rc, RILL_EINVAL);
  cr_expect_str_eq(rill_errmsg(), "thing 7 is wrong");
  /* Longer than the buffer: cut, never overrun. */
  char big[1000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  rill__err(RILL_EIO, "%s", big);
  cr_expect_lt(strlen(rill_errmsg()), sizeof big - 1);
  cr_expect_gt(strlen(rill_errmsg()), 100);
}

Test(error, errno_detail_appends_the_system_text) {
  errno = ENOENT;
  int rc = rill__err_errno("opening %s", "/nope");
  cr_expect_eq(rc, RILL_ENOENT);
  cr_expect_not_null(strstr(rill_errmsg(), "opening /nope: "));
  cr_expect_not_null(strstr(rill_errmsg(), strerror(ENOENT)));
  errno = 0;
  cr_expect_eq(rill__err_errno("no errno"), RILL_EIO, "errno 0 must still be an error");
}

static void *other_thread(void *arg) {
  (void)arg;
  /* A fresh thread has no detail, whatever the main thread recorded. */
  int empty = rill_errmsg()[0] == '\0';
  rill__err(RILL_EBUSY, "from the other thread");
  return (void *)(intptr_t)empty;
}

Test(error, detail_is_per_thread) {
  rill__err(RILL_EINVAL, "from main");
  pthread_t t;
  void *empty;
  pthread_create(&t, NULL, other_thread, NULL);
  pthread_join(t, &empty);
  cr_expect(empty, "the other thread saw main's detail");
  cr_expect_str_eq(rill_errmsg(), "from main");
}

/* ---- clocks --------------------------------------------------------------- */

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

Test(time, fast_clock_never_goes_back) {
  uint64_t prev = rill_time_ns();
  for (int i = 0; i < 1000000; i++) {
    uint64_t now = rill_time_ns();
    cr_assert_geq(now, prev, "went back at read %d", i);
    prev = now;
  }
}

Test(time, fast_clock_agrees_with_clock_monotonic) {
  /* Same epoch: the two clocks read side by side differ by the calibration
   * error, far below a millisecond. */
  uint64_t a = rill_time_mono_ns(), f = rill_time_ns(), b = rill_time_mono_ns();
  cr_expect_geq(f + 1000000, a);
  cr_expect_leq(f, b + 1000000);
  /* Same rate: over 50 ms of sleep they agree within 1%. */
  uint64_t f0 = rill_time_ns(), m0 = rill_time_mono_ns();
  sleep_ms(50);
  uint64_t f1 = rill_time_ns(), m1 = rill_time_mono_ns();
  double ratio = (double)(f1 - f0) / (double)(m1 - m0);
  cr_expect(fabs(ratio - 1.0) < 0.01, "rate off by %f (tsc usable: %u)", ratio - 1.0,
            rill__tsc.usable);
}

Test(time, fallback_without_tsc) {
  setenv("RILL_TSC", "0", 1);
  rill_time_init();
  cr_expect_eq(rill__tsc.usable, 0);
  uint64_t a = rill_time_ns();
  sleep_ms(2);
  uint64_t b = rill_time_ns();
  cr_expect_geq(b - a, 2000000u);
  unsetenv("RILL_TSC");
  rill_time_init();
}

/* Loading librill must not spin 2 ms calibrating (every process that links
 * it paid that, and a binding that dlopen()s it would): the first reader
 * of the fast clock calibrates, once. */
Test(time, no_calibration_until_first_read) {
  cr_assert_eq(rill__time_calibrations(), 0, "the library calibrated the TSC when it loaded");
  (void)rill_time_mono_ns();
  (void)rill_time_coarse_ms();
  cr_expect_eq(rill__time_calibrations(), 0, "the reference clocks need no calibration");
  uint64_t a = rill_time_ns();
  cr_expect_eq(rill__time_calibrations(), 1);
  uint64_t b = rill_time_ns();
  cr_expect_geq(b, a);
  cr_expect_eq(rill__time_calibrations(), 1, "a second read calibrated again");
}

#define FIRST_READERS 8

static void *first_read(void *arg) {
  pthread_barrier_t *go = arg;
  pthread_barrier_wait(go);
  uint64_t a = rill_time_ns(), m = rill_time_mono_ns(), b = rill_time_ns();
  /* Whoever calibrated, every thread reads the one calibrated clock. */
  return (void *)(uintptr_t)(b >= a && m + 1000000 >= a && b + 1000000 >= m);
}

Test(time, first_reads_from_many_threads_calibrate_once) {
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, FIRST_READERS);
  pthread_t t[FIRST_READERS];
  for (int i = 0; i < FIRST_READERS; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, first_read, &go), 0);
  for (int i = 0; i < FIRST_READERS; i++) {
    void *ok;
    pthread_join(t[i], &ok);
    cr_expect(ok != NULL, "thread %d read a clock out of step", i);
  }
  pthread_barrier_destroy(&go);
  cr_expect_eq(rill__time_calibrations(), 1);
}

Test(time, init_recalibrates) {
  rill_time_init();
  cr_expect_eq(rill__time_calibrations(), 1);
  (void)rill_time_ns();
  cr_expect_eq(rill__time_calibrations(), 1);
  rill_time_init();
  cr_expect_eq(rill__time_calibrations(), 2);
}

Test(time, coarse_and_wall_clocks) {
  uint64_t c = rill_time_coarse_ms(), m = rill_time_mono_ns() / 1000000u;
  cr_expect_leq(c, m + 1);
  cr_expect_geq(c + 50, m, "coarse clock %llu ms behind", (unsigned long long)(m - c));
  uint64_t w = rill_time_wall_ns();
  cr_expect_gt(w, (uint64_t)1600000000 * 1000000000u, "wall clock before 2020");
}

/* ---- hashing ------------------------------------------------------------------ */

Test(hash, is_xxh3) {
  /* XXH3_64bits("") from xxHash's own test vectors. */
  cr_expect_eq(rill_hash64("", 0), UINT64_C(0x2D06800538D394C2));
  cr_expect_eq(rill_hash64("abc", 3), rill_hash64("abc", 3));
  cr_expect_neq(rill_hash64("abc", 3), rill_hash64("abd", 3));
  cr_expect_neq(rill_hash64_seed("abc", 3, 1), rill_hash64_seed("abc", 3, 2));
  cr_expect_eq(rill_hash64_seed("abc", 3, 0), rill_hash64("abc", 3));
}

Test(hash, reduce_stays_in_range) {
  cr_expect_eq(rill_hash_reduce(UINT64_MAX, 0), 0);
  cr_expect_eq(rill_hash_reduce(UINT64_MAX, 1), 0);
  cr_expect_eq(rill_hash_reduce(UINT64_MAX, 7), 6);
  cr_expect_eq(rill_hash_reduce(0, 7), 0);
  cr_expect_eq(rill_hash_reduce(UINT64_MAX, UINT32_MAX), UINT32_MAX - 1);
  for (uint32_t n = 1; n < 1000; n += 37)
    for (uint64_t i = 0; i < 1000; i++)
      cr_assert_lt(rill_hash_reduce(rill_hash64(&i, sizeof i), n), n);
}

Test(hash, reduce_spreads_evenly) {
  enum { N = 1000000, B = 16 };
  unsigned count[B] = {0};
  for (uint64_t i = 0; i < N; i++)
    count[rill_hash_reduce(rill_hash64(&i, sizeof i), B)]++;
  for (int b = 0; b < B; b++)
    cr_expect(fabs((double)count[b] - N / B) < 0.02 * N / B, "bucket %d has %u", b, count[b]);
}

/* ---- histogram ------------------------------------------------------------------ */

Test(hist, buckets_tile_the_range) {
  cr_expect_eq(rill_hist_index(0), 0);
  cr_expect_eq(rill_hist_index(1), 0, "0 and 1 share the first bucket");
  cr_expect_eq(rill_hist_index(32), 31);
  /* Upper bounds are inclusive and round: exact `le` counts. */
  cr_expect_eq(rill_hist_bucket_high(31), 32);
  cr_expect_eq(rill_hist_index(1024), rill_hist_index(1009), "(1008, 1024]");
  cr_expect_eq(rill_hist_index(1025), rill_hist_index(1024) + 1);
  cr_expect_eq(rill_hist_bucket_high(rill_hist_index(1024)), 1024);
  cr_expect_eq(rill_hist_index(UINT64_MAX), RILL_HIST_BUCKETS - 1);
  for (uint32_t i = 0; i + 1 < RILL_HIST_BUCKETS; i++) {
    cr_assert_eq(rill_hist_bucket_high(i) + 1, rill_hist_bucket_low(i + 1), "gap after %u", i);
    cr_assert_eq(rill_hist_index(rill_hist_bucket_low(i)), i);
    cr_assert_eq(rill_hist_index(rill_hist_bucket_high(i)), i);
  }
  cr_expect_eq(rill_hist_bucket_high(RILL_HIST_BUCKETS - 1), UINT64_MAX);
  /* Precision: a bucket is at most 1/32 of its lowest value wide. */
  for (uint32_t i = RILL_HIST_SUB; i < RILL_HIST_BUCKETS; i++) {
    double lo = (double)rill_hist_bucket_low(i), hi = (double)rill_hist_bucket_high(i);
    cr_assert_leq((hi - lo) / lo, 1.0 / 32, "bucket %u too wide", i);
  }
}

Test(hist, empty_histogram) {
  rill_hist_t h;
  rill_hist_init(&h);
  cr_expect_eq(rill_hist_quantile(&h, 0.5), 0);
  cr_expect_eq(rill_hist_quantile(&h, 0.99), 0);
  cr_expect_eq(rill_hist_mean(&h), 0.0);
}

Test(hist, quantiles_of_a_uniform_run) {
  static rill_hist_t h;
  rill_hist_init(&h);
  for (uint64_t v = 1; v <= 100000; v++)
    rill_hist_record(&h, v);
  cr_expect_eq(h.count, 100000);
  cr_expect_eq(h.min, 1);
  cr_expect_eq(h.max, 100000);
  double qs[] = {0.5, 0.9, 0.99, 0.999};
  for (int i = 0; i < 4; i++) {
    double exact = qs[i] * 100000, got = (double)rill_hist_quantile(&h, qs[i]);
    cr_expect_geq(got, exact, "q%.3f: %.0f below the exact %.0f", qs[i], got, exact);
    cr_expect_leq(got, exact * (1 + 1.0 / 32), "q%.3f: %.0f vs exact %.0f", qs[i], got, exact);
  }
  cr_expect_eq(rill_hist_quantile(&h, 0.0), 1);
  cr_expect_eq(rill_hist_quantile(&h, 1.0), 100000);
  cr_expect_eq(rill_hist_quantile(&h, 7.0), 100000, "q above 1 is clamped");
  cr_expect_eq(rill_hist_quantile(&h, -1.0), 1, "q below 0 is clamped");
  cr_expect_eq(rill_hist_quantile(&h, NAN), 1);
  cr_expect(fabs(rill_hist_mean(&h) - 50000.5) < 0.01);
}

Test(hist, quantile_never_leaves_the_recorded_range) {
  rill_hist_t h;
  rill_hist_init(&h);
  rill_hist_record(&h, 1000001);
  cr_expect_eq(rill_hist_quantile(&h, 0.5), 1000001, "one value: every quantile is it");
  cr_expect_eq(rill_hist_quantile(&h, 0.999), 1000001);
}

Test(hist, merge_equals_recording_everything_in_one) {
  static rill_hist_t a, b, all;
  rill_hist_init(&a);
  rill_hist_init(&b);
  rill_hist_init(&all);
  srand(3);
  for (int i = 0; i < 100000; i++) {
    uint64_t v = (uint64_t)rand() * (uint64_t)(rand() % 1000 + 1);
    rill_hist_record(i % 3 ? &a : &b, v);
    rill_hist_record(&all, v);
  }
  rill_hist_merge(&a, &b);
  cr_expect_eq(a.count, all.count);
  cr_expect_eq(a.min, all.min);
  cr_expect_eq(a.max, all.max);
  cr_expect_eq(a.sum, all.sum);
  cr_expect_eq(memcmp(a.bucket, all.bucket, sizeof a.bucket), 0);
  rill_hist_t empty;
  rill_hist_init(&empty);
  rill_hist_merge(&a, &empty);
  cr_expect_eq(a.min, all.min, "merging an empty histogram changed min");
}

Test(hist, sum_saturates) {
  rill_hist_t h;
  rill_hist_init(&h);
  rill_hist_record(&h, UINT64_MAX - 1);
  rill_hist_record(&h, 10);
  cr_expect_eq(h.sum, UINT64_MAX);
  cr_expect_eq(h.max, UINT64_MAX - 1);
  cr_expect_eq(rill_hist_quantile(&h, 1.0), UINT64_MAX - 1);
}

/* The standard check value, the hardware and table paths agreeing on every
 * length and alignment, and chaining. */
Test(crc32c, check_value_paths_and_chaining) {
  cr_expect_eq(rill_crc32c(0, "123456789", 9), 0xE3069283u);
  cr_expect_eq(rill__crc32c_sw(0, "123456789", 9), 0xE3069283u);
  cr_expect_eq(rill_crc32c(0, "", 0), 0);
  uint8_t buf[300];
  srand(5);
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (uint8_t)rand();
  for (size_t off = 0; off < 8; off++)
    for (size_t len = 0; len + off <= sizeof buf; len += 7) {
      uint32_t a = rill_crc32c(0, buf + off, len), b = rill__crc32c_sw(0, buf + off, len);
      cr_assert_eq(a, b, "off %zu len %zu", off, len);
      size_t cut = len / 3;
      cr_assert_eq(rill_crc32c(rill_crc32c(0, buf + off, cut), buf + off + cut, len - cut), a);
    }
}
