/*
 * The TSC calibration runs on the first fast-clock read, whichever thread
 * makes it: threads released together all read the clock first, and every
 * one must see a calibrated clock (or the fallback), never a half-written
 * one, with one calibration in all. Also the CRC32C implementation, picked
 * by its first caller. Plain C so that it runs under TSan (see
 * tests/stress.h).
 */
#include <pthread.h>

#include "core/internal.h"
#include "rill/core.h"
#include "stress.h"

enum { THREADS = 8 };

static pthread_barrier_t go;

static void *first_reads(void *arg) {
  (void)arg;
  pthread_barrier_wait(&go);
  uint64_t a = rill_time_ns();
  uint32_t crc = rill_crc32c(0, "123456789", 9);
  uint64_t m = rill_time_mono_ns();
  uint64_t b = rill_time_ns();
  CHECK(b >= a, "the clock went back: %llu then %llu", (unsigned long long)a,
        (unsigned long long)b);
  /* Same epoch as CLOCK_MONOTONIC within the calibration error (far below
   * 1 ms): a half-calibrated clock would be off by seconds or more. */
  CHECK(a <= m + 1000000 && m <= b + 1000000, "fast clock %llu..%llu, monotonic %llu",
        (unsigned long long)a, (unsigned long long)b, (unsigned long long)m);
  CHECK(crc == 0xE3069283u, "crc32c check value: %08x", crc);
  return NULL;
}

static void first_reads_race(void) {
  CHECK(rill__time_calibrations() == 0, "calibrated before the first read");
  pthread_barrier_init(&go, NULL, THREADS);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    CHECK(pthread_create(&t[i], NULL, first_reads, NULL) == 0, "pthread_create");
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&go);
  CHECK(rill__time_calibrations() == 1, "%u calibrations", rill__time_calibrations());
}

int main(void) {
  static const stress_case_t cases[] = {{"first_reads_race", first_reads_race}};
  return stress_run(cases, 1);
}
