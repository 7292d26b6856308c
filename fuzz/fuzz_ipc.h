/*
 * What fuzz_ipc_attach (routes) and fuzz_ipc_chan_attach (channels) share:
 * the raw mode's copy of the input, the live mode's pool, the check every
 * message handed out must pass, the messages a sender sends, and the
 * patches written over the segment in /dev/shm.
 */
#ifndef RILL_FUZZ_IPC_H
#define RILL_FUZZ_IPC_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rill/ipc.h"

/* The raw mode's segment: the input copied into 64-byte-aligned memory
 * (as a mapping would be), with magic and version stamped on when the
 * input's last byte is even, so that the geometry checks are reached.
 * NULL over 1 MiB or without memory; the caller frees it. */
static inline uint8_t *fuzz_ipc_copy(const uint8_t *data, size_t size, uint32_t magic,
                                     uint16_t version) {
  if (size > (1u << 20))
    return NULL;
  uint8_t *mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
  if (!mem)
    return NULL;
  memcpy(mem, data, size);
  if (size >= 8 && data[size - 1] % 2 == 0) {
    memcpy(mem, &magic, 4);
    memcpy(mem + 4, &version, 2);
  }
  return mem;
}

/* The live mode's pool: 0..2 size classes (data[4]), a few chunks each
 * (data[5]), over slots of slot_size bytes. */
static inline void fuzz_ipc_pool(rill_ipc_class_t *pool, uint32_t slot_size, const uint8_t *data) {
  uint32_t inline_max = slot_size - RILL_IPC_SLOT_HDR;
  uint32_t nclasses = (data[4] >> 3) % 3;
  for (uint32_t c = 0; c < nclasses; c++)
    pool[c] = (rill_ipc_class_t){inline_max * (2 + 2 * c), 1 + (data[5] >> (2 * c)) % 4};
}

/* A message handed out must be mapped, whole, and within the route's or
 * channel's largest message. */
static inline void fuzz_ipc_check_msg(const rill_ipc_msg_t *m, uint32_t max) {
  if (m->len > max)
    abort();
  if (!m->len)
    return;
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t a = (uintptr_t)m->data & ~(uintptr_t)(page - 1);
  if (msync((void *)a, (uintptr_t)m->data + m->len - a, MS_ASYNC) != 0)
    abort();
  volatile uint8_t sum = 0;
  for (uint32_t i = 0; i < m->len; i++)
    sum ^= m->data[i];
  (void)sum;
}

/* The i-th message a sender sends, from the input's byte b: its length
 * (at most max and cap), its bytes i. */
static inline uint32_t fuzz_ipc_fill(uint8_t *buf, size_t cap, uint8_t b, size_t i, uint32_t max) {
  uint32_t len = (uint32_t)(b * 131u) % (max + 1);
  if (len > cap)
    len = (uint32_t)cap;
  memset(buf, (int)i, len);
  return len;
}

/* A batch for send_batch: the i-th message (buf, len) and up to three
 * after it, their lengths from b + 1, b + 2...: the count, in v[0..3]. */
static inline uint32_t fuzz_ipc_batch(rill_iov_t v[4], uint8_t *buf, uint32_t len, uint8_t b,
                                      size_t i, uint32_t max) {
  static uint8_t more[3][1 << 12];
  v[0] = (rill_iov_t){buf, len};
  uint32_t k = 1;
  for (; k < 1u + b % 4u; k++)
    v[k] = (rill_iov_t){
        more[k - 1], fuzz_ipc_fill(more[k - 1], sizeof more[k - 1], (uint8_t)(b + k), i + k, max)};
  return k;
}

/* Maps /dev/shm/rill.<name> and writes the input's patches from data[at]
 * on over it, anywhere: (offset / 4: 2 bytes, length - 1: 1 byte, the
 * bytes). The magic stays: without it a new open waits 200 ms for a
 * creator (the unit tests cover that), which would slow the fuzzer down
 * to a crawl; the handles attached never read it again. The mapping, or
 * MAP_FAILED; *total is its length, for munmap. */
static inline uint8_t *fuzz_ipc_patch(const char *name, const uint8_t *data, size_t size, size_t at,
                                      uint32_t magic, size_t *total) {
  uint8_t *seg = MAP_FAILED;
  char path[96];
  snprintf(path, sizeof path, "/dev/shm/rill.%s", name);
  *total = 0;
  FILE *f = fopen(path, "r+");
  if (f) {
    fseek(f, 0, SEEK_END);
    *total = (size_t)ftell(f);
    seg = mmap(NULL, *total, PROT_READ | PROT_WRITE, MAP_SHARED, fileno(f), 0);
    fclose(f);
  }
  if (seg == MAP_FAILED)
    return seg;
  while (at + 3 <= size) {
    size_t off = ((size_t)data[at] | (size_t)data[at + 1] << 8) * 4 % *total;
    size_t n = data[at + 2] % 16 + 1;
    at += 3;
    if (n > size - at)
      n = size - at;
    if (n > *total - off)
      n = *total - off;
    memcpy(seg + off, data + at, n);
    at += n;
  }
  memcpy(seg, &magic, 4);
  return seg;
}

#endif
