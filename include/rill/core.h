/*
 * rill core: errors, clocks, hashing and the latency histogram.
 *
 * Every rill function that can fail returns an int: 0 on success or a
 * negative RILL_E* code. The codes that mirror an errno value are that errno
 * negated (as in libuv and liburing), so a failed syscall's errno passes
 * through unchanged; the rest are rill's own and lie below -4000.
 * rill_errmsg() gives the calling thread's detail of its most recent error.
 */
#ifndef RILL_CORE_H
#define RILL_CORE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RILL_LIKELY(x)   __builtin_expect(!!(x), 1)
#define RILL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RILL_INLINE      static inline __attribute__((always_inline))
#else
#define RILL_LIKELY(x)   (x)
#define RILL_UNLIKELY(x) (x)
#define RILL_INLINE      static inline
#endif

/* One cache line on the machines rill targets; counters written by different
 * threads are kept this far apart. */
#define RILL_CACHELINE 64

/* ---- errors ------------------------------------------------------------ */

#define RILL_EPERM      (-EPERM)
#define RILL_ENOENT     (-ENOENT)
#define RILL_EINTR      (-EINTR)
#define RILL_EIO        (-EIO)
#define RILL_EBADF      (-EBADF)
#define RILL_EAGAIN     (-EAGAIN)
#define RILL_ENOMEM     (-ENOMEM)
#define RILL_EACCES     (-EACCES)
#define RILL_EBUSY      (-EBUSY)
#define RILL_EEXIST     (-EEXIST)
#define RILL_EINVAL     (-EINVAL)
#define RILL_ENOSPC     (-ENOSPC)
#define RILL_ERANGE     (-ERANGE)
#define RILL_ENOSYS     (-ENOSYS)
#define RILL_EMSGSIZE   (-EMSGSIZE)
#define RILL_EPROTO     (-EPROTO)
#define RILL_ENOTSUP    (-ENOTSUP)
#define RILL_ETIMEDOUT  (-ETIMEDOUT)
#define RILL_ECONNRESET (-ECONNRESET)
#define RILL_ECANCELED  (-ECANCELED)
#define RILL_ENOBUFS    (-ENOBUFS)
#define RILL_EPIPE      (-EPIPE) /* nobody is there to receive what is sent */

/* rill's own codes. */
#define RILL_ECORRUPT (-4001) /* stored or received bytes fail a check */
#define RILL_EVERSION (-4002) /* wrong magic or unsupported version */
#define RILL_ECLOSED  (-4003) /* the object was closed or shut down */
#define RILL_ELAGGED  (-4004) /* a reader fell behind and lost records */
#define RILL_EDOUBLE  (-4005) /* an object was released twice */
#define RILL_EFOREIGN (-4006) /* a pointer that this object never gave out */
#define RILL_EFULL    (-4007) /* no room, and the policy says not to wait */

/** Name and short description of an error code ("ENOMEM: out of memory").
 *  Never NULL; unknown codes get a generic text. */
const char *rill_strerror(int err);

/** The calling thread's detail of its most recent rill error, for example
 *  "slab: object 0x7f.. was put twice". Empty when none was recorded. The
 *  text stays valid until the thread's next failing rill call. */
const char *rill_errmsg(void);

/** Clears the calling thread's error detail. */
void rill_errmsg_clear(void);

/* ---- bytes and time ---------------------------------------------------- */

/** A piece of bytes: one event of a batch publish, one record of a log
 *  batch, one piece of a vectored log append or broadcast-ring write. */
typedef struct rill_iov {
  const void *data;
  uint32_t len;
} rill_iov_t;

/** A timeout_ns that waits with no bound. Every timeout in rill is in
 *  nanoseconds; 0 tries once without waiting. */
#define RILL_FOREVER UINT64_MAX

/* ---- clocks ------------------------------------------------------------ */

/* The TSC fast path: a calibrated (tsc * mult) >> shift + base. Filled on
 * the first rill_time_ns() (or by rill_time_init()); until then, and when
 * the TSC is not invariant or calibration fails, usable is 0 and
 * rill_time_ns() takes the out-of-line path. */
typedef struct rill_tsc_cal {
  uint64_t mult;
  uint32_t shift;
  uint32_t usable; /* atomic: stored last, with release */
  uint64_t tsc0;
  uint64_t ns0;
} rill_tsc_cal_t;

extern rill_tsc_cal_t rill__tsc;

/** Calibrates the TSC against CLOCK_MONOTONIC (2 ms). Loading librill does
 *  not: the first rill_time_ns() does, once, whichever thread gets there
 *  first. Call this to pay that cost at a moment of your choosing, or again
 *  (for example after a CPU frequency change) from a single thread while no
 *  other thread reads the clock. */
void rill_time_init(void);

/** Nanoseconds from CLOCK_MONOTONIC through the vDSO. The reference clock. */
uint64_t rill_time_mono_ns(void);

/* The first rill_time_ns() (it calibrates), and every one without a usable
 * TSC. */
uint64_t rill__time_ns_slow(void);

#if defined(__x86_64__)
/* rill_time_ns() once rill__tsc is known usable. */
RILL_INLINE uint64_t rill__time_tsc_ns(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  uint64_t d = (((uint64_t)hi << 32) | lo) - rill__tsc.tsc0;
  /* __extension__: __int128 is GNU C, and a user's -std=c99 -pedantic
   * must not see it as theirs. */
  return rill__tsc.ns0 +
         __extension__(uint64_t)(((unsigned __int128)d * rill__tsc.mult) >> rill__tsc.shift);
}
#endif

/** Monotonic nanoseconds; the TSC when it is invariant (about 8 ns a read),
 *  else CLOCK_MONOTONIC. Same epoch as rill_time_mono_ns(), within the
 *  calibration error (a few parts per million). The first call in a process
 *  calibrates the TSC (2 ms). */
RILL_INLINE uint64_t rill_time_ns(void) {
#if defined(__x86_64__)
  /* Acquire: pairs with the release store that ends calibration, so the
   * fields read next are the calibrated ones. A plain load on x86. */
  if (RILL_LIKELY(__atomic_load_n(&rill__tsc.usable, __ATOMIC_ACQUIRE)))
    return rill__time_tsc_ns();
#endif
  return rill__time_ns_slow();
}

/** Milliseconds from CLOCK_MONOTONIC_COARSE: a few ns a read, a resolution of
 *  one scheduler tick. For timeouts and ages, not for measuring. */
uint64_t rill_time_coarse_ms(void);

/** Wall-clock nanoseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t rill_time_wall_ns(void);

/* ---- hashing ----------------------------------------------------------- */

/** xxh3 64-bit hash of len bytes (XXH3_64bits: the values libxxhash gives). */
uint64_t rill_hash64(const void *data, size_t len);

/** xxh3 64-bit hash with a seed. */
uint64_t rill_hash64_seed(const void *data, size_t len, uint64_t seed);

/** CRC32C (Castagnoli) of len bytes, continuing from crc (0 to start):
 *  rill_crc32c(rill_crc32c(0, a, n), b, m) is the CRC of a then b. SSE4.2's
 *  crc32 instruction when the CPU has it, tables otherwise. */
uint32_t rill_crc32c(uint32_t crc, const void *data, size_t len);

/** Maps a 64-bit hash onto [0, n) with Lemire's multiply-shift reduction:
 *  the high 64 bits of hash * n. No division, no bias worth measuring for
 *  n far below 2^64, and it uses the hash's high bits, which xxh3 mixes
 *  fully. n == 0 gives 0. */
RILL_INLINE uint32_t rill_hash_reduce(uint64_t hash, uint32_t n) {
  return __extension__(uint32_t)(((unsigned __int128)hash * n) >> 64);
}

/* ---- latency histogram ------------------------------------------------- */

/* Log-linear buckets, each holding the values in (low - 1, high]: 0 and 1
 * share bucket 0, values up to 2^RILL_HIST_SUB_BITS are exact; above, each
 * power of two is split into 2^RILL_HIST_SUB_BITS equal buckets, so a
 * recorded value is known to within 1/32 (3.1%) of itself, over the whole
 * range of uint64_t. Upper bounds are inclusive and round (64, 1024,
 * 1088, ...), so a count of the values at or under a bound (Prometheus's
 * `le`) is exact. Fixed size, no allocation: embed it or put it on the
 * stack.
 *
 * Threads: one writer (rill_hist_record); any thread may read it
 * meanwhile with rill_hist_merge into a private copy (every word is
 * written and read with relaxed atomics, so a copy may miss the latest
 * values, never tear one). */
#define RILL_HIST_SUB_BITS 5
#define RILL_HIST_SUB      (1u << RILL_HIST_SUB_BITS)
#define RILL_HIST_BUCKETS  ((64 - RILL_HIST_SUB_BITS + 1) * RILL_HIST_SUB)

typedef struct rill_hist {
  uint64_t count;
  uint64_t min;
  uint64_t max;
  uint64_t sum; /* saturates at UINT64_MAX */
  uint64_t bucket[RILL_HIST_BUCKETS];
} rill_hist_t;

/** Empties a histogram. */
void rill_hist_init(rill_hist_t *h);

/** Bucket index of a value. Exposed for the inline recorder. */
RILL_INLINE uint32_t rill_hist_index(uint64_t v) {
  /* Classify v - 1 into [low, high) buckets: (low, high] ones for v. */
  v -= v != 0;
  if (v < RILL_HIST_SUB)
    return (uint32_t)v;
  uint32_t msb = 63u - (uint32_t)__builtin_clzll(v);
  uint32_t shift = msb - RILL_HIST_SUB_BITS;
  /* The top SUB_BITS+1 bits of v: 1 (the msb) then the sub-bucket. */
  return ((shift + 1) << RILL_HIST_SUB_BITS) + (uint32_t)((v >> shift) & (RILL_HIST_SUB - 1));
}

/** Records one value. Only the histogram's one writer may call it: plain
 *  increments made of relaxed loads and stores (no locked instruction),
 *  so that a reader on another thread never sees a torn word. Give each
 *  writing thread its own histogram and merge them. */
RILL_INLINE void rill_hist_record(rill_hist_t *h, uint64_t v) {
  uint64_t *b = &h->bucket[rill_hist_index(v)];
  __atomic_store_n(b, __atomic_load_n(b, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
  __atomic_store_n(&h->count, __atomic_load_n(&h->count, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
  if (v < __atomic_load_n(&h->min, __ATOMIC_RELAXED))
    __atomic_store_n(&h->min, v, __ATOMIC_RELAXED);
  if (v > __atomic_load_n(&h->max, __ATOMIC_RELAXED))
    __atomic_store_n(&h->max, v, __ATOMIC_RELAXED);
  uint64_t s0 = __atomic_load_n(&h->sum, __ATOMIC_RELAXED), s = s0 + v;
  __atomic_store_n(&h->sum, s < s0 ? UINT64_MAX : s, __ATOMIC_RELAXED);
}

/** Adds src's counts into dst. src may be recorded into by its writer
 *  meanwhile (read with relaxed loads: the copy may miss the latest
 *  values); dst must be the caller's alone. */
void rill_hist_merge(rill_hist_t *dst, const rill_hist_t *src);

/** The value at quantile q (0.0..1.0, e.g. 0.99): the upper bound of the
 *  bucket holding it, clamped to the recorded min and max, so the answer is
 *  at most 3.1% above the exact one and never outside what was recorded.
 *  0 for an empty histogram; q outside [0, 1] is clamped. */
uint64_t rill_hist_quantile(const rill_hist_t *h, double q);

/** Mean of the recorded values (0 when empty). */
double rill_hist_mean(const rill_hist_t *h);

/** The lowest value that lands in bucket i (i < RILL_HIST_BUCKETS). */
uint64_t rill_hist_bucket_low(uint32_t i);

/** The highest value that lands in bucket i (i < RILL_HIST_BUCKETS). */
uint64_t rill_hist_bucket_high(uint32_t i);

#ifdef __cplusplus
}
#endif
#endif /* RILL_CORE_H */
