/*
 * CRC32C (Castagnoli), the checksum of the log's records and files: the
 * SSE4.2 crc32 instruction where the CPU has it (8 bytes a step, about a
 * cycle each), else slicing-by-8 tables. Both compute the same function;
 * tests/core checks them against each other and the standard check value.
 *
 * Nothing runs when the library loads: the tables are built by the first
 * table-driven call, and the choice of implementation is made by the first
 * rill_crc32c().
 */
#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "internal.h"

#define POLY 0x82F63B78u /* 0x1EDC6F41 reflected */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void crc_tables(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
    table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

uint32_t rill__crc32c_sw(uint32_t crc, const void *data, size_t len) {
  /* pthread_once orders the tables' stores before our loads, in every
   * thread that gets past it. */
  pthread_once(&table_once, crc_tables);
  const uint8_t *p = data;
  crc = ~crc;
  for (; len >= 8; len -= 8, p += 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    v ^= crc;
    crc = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^ table[5][(v >> 16) & 0xff] ^
          table[4][(v >> 24) & 0xff] ^ table[3][(v >> 32) & 0xff] ^ table[2][(v >> 40) & 0xff] ^
          table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
  }
  while (len--)
    crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
  return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *data,
                                                            size_t len) {
  const uint8_t *p = data;
  uint64_t c = ~crc;
  for (; len >= 8; len -= 8, p += 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
  }
  uint32_t c32 = (uint32_t)c;
  while (len--)
    c32 = __builtin_ia32_crc32qi(c32, *p++);
  return ~c32;
}

/* CPUID leaf 1, ECX bit 20. Asked directly rather than through
 * __builtin_cpu_supports, which links libgcc's CPU model and its
 * constructor into librill. */
static uint32_t (*resolve(void))(uint32_t, const void *, size_t) {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2) ? crc32c_hw : rill__crc32c_sw;
}

static uint32_t crc_first(uint32_t crc, const void *data, size_t len);

/* Starts at crc_first, which picks the implementation and stores it here.
 * Relaxed: every value it ever holds is a function that computes the same
 * CRC, and they touch no data the store would have to publish (the tables
 * have their own pthread_once); threads racing through crc_first all
 * store the same pointer. */
static uint32_t (*crc_fn)(uint32_t, const void *, size_t) = crc_first;

static uint32_t crc_first(uint32_t crc, const void *data, size_t len) {
  uint32_t (*fn)(uint32_t, const void *, size_t) = resolve();
  __atomic_store_n(&crc_fn, fn, __ATOMIC_RELAXED);
  return fn(crc, data, len);
}

uint32_t rill_crc32c(uint32_t crc, const void *data, size_t len) {
  return __atomic_load_n(&crc_fn, __ATOMIC_RELAXED)(crc, data, len);
}
#else
uint32_t rill_crc32c(uint32_t crc, const void *data, size_t len) {
  return rill__crc32c_sw(crc, data, len);
}
#endif
