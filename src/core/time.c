/*
 * Clocks. The TSC calibration (2 ms of spinning) runs on the first
 * rill_time_ns(), not when the library loads: a process that links librill
 * and never reads the fast clock, or a binding that dlopen()s it, pays
 * nothing. Until then rill__tsc.usable is 0, which sends the inline
 * rill_time_ns() to rill__time_ns_slow(), and that calibrates once.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

rill_tsc_cal_t rill__tsc;

static pthread_once_t cal_once = PTHREAD_ONCE_INIT;
/* Calibrations run so far: how rill_time_init() tells whether pthread_once
 * just ran one, and what tests read through rill__time_calibrations(). */
static unsigned calibrations;

static uint64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rill_time_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
uint64_t rill_time_wall_ns(void) { return clock_ns(CLOCK_REALTIME); }
uint64_t rill_time_coarse_ms(void) { return clock_ns(CLOCK_MONOTONIC_COARSE) / 1000000u; }

#if defined(__x86_64__)
/* A TSC that ticks at a constant rate through frequency and power-state
 * changes (CPUID 0x80000007 EDX bit 8). Without it, ticks are not time. */
static int tsc_invariant(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u)
    return 0;
  __get_cpuid(0x80000007u, &a, &b, &c, &d);
  return (d >> 8) & 1;
}

/* One (tsc, ns) pair, taken where the two reads sit closest together: the
 * clock read is bracketed by two TSC reads and the narrowest bracket of a
 * few tries wins, so a preemption in the middle does not skew the pair. */
static void sample(uint64_t *tsc, uint64_t *ns) {
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 16; i++) {
    uint64_t t0 = __rdtsc();
    uint64_t n = rill_time_mono_ns();
    uint64_t t1 = __rdtsc();
    if (t1 - t0 < best) {
      best = t1 - t0;
      *tsc = t0 + (t1 - t0) / 2;
      *ns = n;
    }
  }
}
#endif

static void calibrate(void) {
  /* Relaxed: usable is the only field readers look at first; it drops to 0
   * before the others change (rill_time_init() documents that nobody reads
   * the clock meanwhile). */
  __atomic_store_n(&rill__tsc.usable, 0, __ATOMIC_RELAXED);
  /* Relaxed: a count for tests and rill_time_init(), which read it after
   * pthread_once (whose own synchronisation orders it). */
  __atomic_fetch_add(&calibrations, 1, __ATOMIC_RELAXED);
#if defined(__x86_64__)
  const char *env = getenv("RILL_TSC");
  if ((env && env[0] == '0') || !tsc_invariant())
    return;
  uint64_t t0 = 0, n0 = 0, t1 = 0, n1 = 0;
  sample(&t0, &n0);
  /* 2 ms between the pairs: a calibration error of a few ppm, paid once,
   * by the first reader of the clock. */
  while (rill_time_mono_ns() - n0 < 2000000u)
    ;
  sample(&t1, &n1);
  if (t1 <= t0 || n1 <= n0)
    return;
  rill__tsc.shift = 32;
  rill__tsc.mult = (uint64_t)((((unsigned __int128)(n1 - n0)) << 32) / (t1 - t0));
  rill__tsc.tsc0 = t1;
  rill__tsc.ns0 = n1;
  /* Release: pairs with the acquire load in rill_time_ns(), so a thread that
   * sees usable also sees mult, shift, tsc0 and ns0 above. A thread that
   * sees 0 instead takes the slow path, whose pthread_once orders the same
   * fields (or finds the TSC unusable). */
  __atomic_store_n(&rill__tsc.usable, rill__tsc.mult != 0, __ATOMIC_RELEASE);
#endif
}

void rill_time_init(void) {
  unsigned before = __atomic_load_n(&calibrations, __ATOMIC_RELAXED);
  pthread_once(&cal_once, calibrate);
  /* The first call calibrated inside pthread_once; any later one is an
   * explicit recalibration. */
  if (__atomic_load_n(&calibrations, __ATOMIC_RELAXED) == before)
    calibrate();
}

uint64_t rill__time_ns_slow(void) {
  pthread_once(&cal_once, calibrate);
#if defined(__x86_64__)
  /* Acquire: as in rill_time_ns(); pthread_once already ordered the fields
   * for the thread that calibrated or waited, this covers a recalibration. */
  if (__atomic_load_n(&rill__tsc.usable, __ATOMIC_ACQUIRE))
    return rill__time_tsc_ns();
#endif
  return rill_time_mono_ns();
}

unsigned rill__time_calibrations(void) { return __atomic_load_n(&calibrations, __ATOMIC_RELAXED); }
