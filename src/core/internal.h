/*
 * Private helpers shared by every rill module. Not installed.
 */
#ifndef RILL_INTERNAL_H
#define RILL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rill/core.h"

/* Records the calling thread's error detail and returns err, so a failing
 * path reads `return rill__err(RILL_EINVAL, "slab: obj_size is 0");`. */
int rill__err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* rill__err() with the text of errno appended; returns -errno. */
int rill__err_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The counting allocator: every heap byte rill uses comes from here. */
void *rill__malloc(size_t size);
void *rill__calloc(size_t n, size_t size);
void *rill__realloc(void *p, size_t size);
void *rill__aligned(size_t align, size_t size);
void rill__free(void *p);

/* Counts mappings made outside the heap (mmap, or committing reserved
 * address space), so the counters cover every way rill takes memory. */
void rill__count_map(size_t bytes);
void rill__count_unmap(size_t bytes);

/* The table-driven CRC32C, which rill_crc32c uses without SSE4.2: exposed
 * so tests can check the two against each other. */
uint32_t rill__crc32c_sw(uint32_t crc, const void *data, size_t len);

/* ASan poisoning (src/mem/poison.c): on when the ASan runtime is in the
 * process, decided by librill and never by rill/mem.h's includer. While it
 * is on, the mem modules keep the header's inline fast paths out of the way
 * so that only library code poisons and unpoisons. */
bool rill__poisoning(void);
void rill__poison(const void *p, size_t n);
void rill__unpoison(const void *p, size_t n);
#define RILL__POISON(p, n)   rill__poison((p), (n))
#define RILL__UNPOISON(p, n) rill__unpoison((p), (n))

/* This build of librill (and of the tests) is instrumented by ASan. */
#if defined(__SANITIZE_ADDRESS__)
#define RILL__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RILL__ASAN 1
#endif
#endif
#ifdef RILL__ASAN
#include <sanitizer/asan_interface.h>
#endif

/* TSC calibrations run in this process so far: 0 until the first
 * rill_time_ns() or rill_time_init(), which tests use to show that loading
 * the library does not calibrate. */
unsigned rill__time_calibrations(void);

/* A topic or service name: 1..max bytes of [A-Za-z0-9._-], not starting
 * with '.'. */
bool rill__name_ok(const void *name, size_t len, size_t max);

/* now + timeout_ns, saturating: RILL_FOREVER (and any timeout that would
 * pass UINT64_MAX) is a deadline never reached. */
static inline uint64_t rill__deadline(uint64_t now, uint64_t timeout_ns) {
  return timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
}

/* Sleeps while *addr == val, at most ns (spurious and early returns are
 * fine: callers re-check their condition). */
void rill__futex_wait(uint32_t *addr, uint32_t val, uint64_t ns);

/* Bumps *addr and wakes every sleeper on it. Release: what the caller did
 * before is visible to a sleeper that loads the word with acquire and sees
 * the bump. */
void rill__futex_bump(uint32_t *addr);

/* The same two for a word in memory shared between processes (MAP_SHARED):
 * without FUTEX_PRIVATE_FLAG, so a waker in another process finds the
 * sleeper. */
void rill__futex_wait_shared(uint32_t *addr, uint32_t val, uint64_t ns);
void rill__futex_bump_shared(uint32_t *addr);

/* Little-endian integers in byte buffers, for every on-disk and wire
 * format, whatever the alignment. On a little-endian host each is one
 * unaligned load or store (memcpy); elsewhere byte by byte. (gcc 12 did
 * not merge the byte stores of a whole frame header into wide ones: 40
 * instructions for 24 bytes.) */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RILL__LE_PUT(bits)                                                                         \
  static inline void rill__put##bits(uint8_t *p, uint##bits##_t v) { memcpy(p, &v, sizeof v); }
#define RILL__LE_GET(bits)                                                                         \
  static inline uint##bits##_t rill__get##bits(const uint8_t *p) {                                 \
    uint##bits##_t v;                                                                              \
    memcpy(&v, p, sizeof v);                                                                       \
    return v;                                                                                      \
  }
#else
#define RILL__LE_PUT(bits)                                                                         \
  static inline void rill__put##bits(uint8_t *p, uint##bits##_t v) {                               \
    for (unsigned i = 0; i < bits / 8; i++)                                                        \
      p[i] = (uint8_t)(v >> (8 * i));                                                              \
  }
#define RILL__LE_GET(bits)                                                                         \
  static inline uint##bits##_t rill__get##bits(const uint8_t *p) {                                 \
    uint##bits##_t v = 0;                                                                          \
    for (unsigned i = 0; i < bits / 8; i++)                                                        \
      v |= (uint##bits##_t)((uint##bits##_t)p[i] << (8 * i));                                      \
    return v;                                                                                      \
  }
#endif
RILL__LE_PUT(16)
RILL__LE_PUT(32)
RILL__LE_PUT(64)
RILL__LE_GET(16)
RILL__LE_GET(32)
RILL__LE_GET(64)

#define RILL__ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define RILL__IS_POW2(x)     ((x) != 0 && ((x) & ((x)-1)) == 0)

/* One pause in a spin loop: lets the other hyperthread run and saves power. */
static inline void rill__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

#endif
