/*
 * Attaches every ring kind to arbitrary bytes. attach must refuse what it
 * cannot trust; what it accepts must survive a few bounded pops and reads
 * (MPSC and bcast record headers come from the bytes too). Never a crash,
 * never a hang.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rill/ring.h"

static void on_record(void *ctx, int32_t type, const void *data, size_t len) {
  (void)type;
  uint64_t *sum = ctx;
  const uint8_t *p = data;
  for (size_t i = 0; i < len; i++) /* touch every byte: ASan checks the bounds */
    *sum += p[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20))
    return 0;
  /* An input whose first four bytes are no ring's magic gets one stamped
   * over them (its last byte picks which) half the time, so the fuzzer
   * reaches past the magic check without guessing it. */
  size_t n = size;
  uint8_t *mem = aligned_alloc(64, (n + 63) & ~(size_t)63);
  if (!mem)
    return 0;
  memcpy(mem, data, n);
  static const uint32_t magic[] = {RILL_RING_SPSC_MAGIC, RILL_RING_MPSC_MAGIC,
                                   RILL_RING_BCAST_MAGIC};
  uint32_t m0 = 0;
  if (n >= 4)
    memcpy(&m0, data, 4);
  if (n >= 4 && m0 != magic[0] && m0 != magic[1] && m0 != magic[2] && data[n - 1] % 6 < 3)
    memcpy(mem, &magic[data[n - 1] % 6], 4);
  uint64_t sum = 0;

  rill_ring_spsc_t *s = NULL;
  if (rill_ring_spsc_attach(&s, mem, n) == 0) {
    uint8_t item[RILL_RING_SPSC_MAX_SLOT_SIZE];
    uint64_t v, b[16];
    size_t got;
    for (int i = 0; i < 4; i++) {
      if (rill_ring_spsc_pop(s, item) == 0)
        sum += item[0];
      if (rill_ring_spsc_slot_size(s) == 8) {
        if (rill_ring_spsc_pop_u64(s, &v) == 0)
          sum += v;
        sum += rill_ring_spsc_pop_n(s, b, 16);
      }
      const uint8_t *p = rill_ring_spsc_peek(s, 3, &got);
      if (p) {
        sum += p[got * rill_ring_spsc_slot_size(s) - 1];
        rill_ring_spsc_release(s, got);
      }
    }
    sum += rill_ring_spsc_push(s, item) == 0;
    rill_ring_spsc_destroy(s);
  }

  rill_ring_mpsc_t *m = NULL;
  if (rill_ring_mpsc_attach(&m, mem, n) == 0) {
    for (int i = 0; i < 4; i++) {
      rill_ring_mpsc_read(m, on_record, &sum, 16);
      rill_ring_mpsc_unblock(m);
    }
    void *p;
    if (rill_ring_mpsc_reserve(m, 8, 1, &p) == 0) {
      memset(p, 1, 8);
      rill_ring_mpsc_commit(m, p);
    }
    rill_ring_mpsc_read(m, on_record, &sum, 16);
    rill_ring_mpsc_destroy(m);
  }

  rill_ring_bcast_t *b = NULL;
  if (rill_ring_bcast_attach(&b, mem, n) == 0) {
    rill_ring_bcast_reader_t rd;
    uint8_t buf[256];
    size_t len;
    int32_t type;
    rill_ring_bcast_join_oldest(b, &rd);
    for (int i = 0; i < 16; i++)
      if (rill_ring_bcast_read(b, &rd, buf, sizeof buf, &len, &type) == 0)
        sum += len;
    rill_ring_bcast_write(b, 1, "fuzz", 4);
    rill_ring_bcast_join(b, &rd);
    rill_ring_bcast_read(b, &rd, buf, sizeof buf, &len, &type);
    rill_ring_bcast_destroy(b);
  }
  free(mem);
  return (int)(sum & 0);
}
