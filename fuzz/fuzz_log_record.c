/*
 * The log's record decoder on arbitrary bytes taken as a segment: walks
 * the records as recovery does (log_rec_check with its check verified),
 * and also at offsets the input names, with and without the check. A
 * record accepted must lie inside the bytes (ASan sees the buffer's exact
 * end), and sealing its header again from the fields accepted must give
 * back the same header; a walk without the check (forged, in effect) must
 * stay inside too. Then a record sealed from the input's bytes must
 * pass, and must fail once any bit of its header or payload is flipped.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t get64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20))
    return 0;
  /* The segment is exactly the input: nothing past its end is readable. */
  uint8_t *seg = malloc(size ? size : 1);
  if (!seg)
    return 0;
  memcpy(seg, data, size);
  uint64_t base = size >= 16 ? get64(seg + 8) : 0;
  uint64_t off = LOG_HDR, seq = base, sum = 0;
  uint32_t len;
  while (log_rec_check(seg, size, off, seq, true, &len) == 0) {
    if (off + LOG_REC_HDR + len > size)
      __builtin_trap();
    for (uint32_t k = 0; k < len; k++)
      sum += seg[off + LOG_REC_HDR + k];
    /* Sealing again from what was accepted writes the same header. */
    uint64_t ts = get64(seg + off + 16);
    size_t whole = LOG_REC_HDR + (((size_t)len + 7) & ~(size_t)7);
    uint8_t *copy = malloc(whole);
    if (copy) {
      memcpy(copy, seg + off, LOG_REC_HDR + len);
      log_rec_seal(copy, len, seq, ts);
      if (memcmp(copy, seg + off, LOG_REC_HDR) != 0)
        __builtin_trap();
      free(copy);
    }
    off += LOG_REC_HDR + (((uint64_t)len + 7) & ~(uint64_t)7);
    seq++;
  }
  /* The walk again without the check, as if every record's check had been
   * forged right (the fuzzer would almost never get one past the hash):
   * the header's own bounds must still keep every record inside. */
  for (uint64_t o2 = LOG_HDR, s2 = base;
       log_rec_check(seg, size, o2, s2, false, &len) == 0 && s2 - base < 100000; s2++) {
    if (o2 + LOG_REC_HDR + len > size)
      __builtin_trap();
    if (len)
      sum += seg[o2 + LOG_REC_HDR + len - 1];
    o2 += LOG_REC_HDR + (((uint64_t)len + 7) & ~(uint64_t)7);
  }
  /* Arbitrary offsets and sequence numbers, the index's view. */
  for (size_t i = 0; i + 12 <= size && i < 96; i += 12) {
    uint32_t o;
    memcpy(&o, data + i, 4);
    uint64_t s = get64(data + i + 4);
    if (log_rec_check(seg, size, o, s, i % 24 == 0, &len) == 0 &&
        (uint64_t)o + LOG_REC_HDR + len > size)
      __builtin_trap();
  }
  free(seg);
  /* Round trip: the input as a payload, sealed, then one bit flipped. */
  if (size >= 2) {
    uint32_t plen = (uint32_t)(size - 2);
    size_t cap = LOG_HDR + LOG_REC_HDR + (((size_t)plen + 7) & ~(size_t)7);
    uint8_t *s2 = calloc(1, cap);
    if (!s2)
      return 0;
    memcpy(s2 + LOG_HDR + LOG_REC_HDR, data + 2, plen);
    log_rec_seal(s2 + LOG_HDR, plen, 42, sum);
    if (log_rec_check(s2, cap, LOG_HDR, 42, true, &len) != 0 || len != plen)
      __builtin_trap();
    if (memcmp(s2 + LOG_HDR + LOG_REC_HDR, data + 2, plen) != 0)
      __builtin_trap();
    /* Any bit of header or payload: the check (or a field test) fails.
     * The check is 32 bits, so a miss has odds of 2^-32 per run. */
    uint32_t bit = (uint32_t)(data[0] | data[1] << 8) % (8 * (LOG_REC_HDR + plen));
    s2[LOG_HDR + bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (log_rec_check(s2, cap, LOG_HDR, 42, true, &len) == 0)
      __builtin_trap();
    free(s2);
  }
  return 0;
}
