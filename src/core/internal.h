/*
 * Private helpers shared by every rill module. Not installed.
 */
#ifndef RILL_INTERNAL_H
#define RILL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* A topic or service name: 1..max bytes of [A-Za-z0-9._-], not starting
 * with '.'. */
bool rill__name_ok(const void *name, size_t len, size_t max);

/* Sleeps while *addr == val, at most ns (spurious and early returns are
 * fine: callers re-check their condition). */
void rill__futex_wait(uint32_t *addr, uint32_t val, uint64_t ns);

/* Bumps *addr and wakes every sleeper on it. Release: what the caller did
 * before is visible to a sleeper that loads the word with acquire and sees
 * the bump. */
void rill__futex_bump(uint32_t *addr);

/* Little-endian integers in byte buffers, for every on-disk and wire
 * format: byte by byte, so neither alignment nor the host's order
 * matters (compilers turn each into one load or store on x86). */
static inline void rill__put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static inline void rill__put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static inline void rill__put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t rill__get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t rill__get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++)
    v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static inline uint64_t rill__get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

#define RILL__ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define RILL__IS_POW2(x)     ((x) != 0 && ((x) & ((x)-1)) == 0)

#endif
