/*
 * The ring header every kind starts with, and its checks. See
 * docs/FORMATS.md ("Rings").
 */
#include <string.h>

#include "core/internal.h"
#include "ring/layout.h"

_Static_assert(sizeof(struct rill__ring_hdr) == 64, "the ring header is one cache line");
_Static_assert(RILL_RING_DATA_OFF % RILL_CACHELINE == 0, "data starts on a line");

int rill__ring_check_mem(const char *kind, const void *mem, size_t bytes) {
  if (!mem)
    return rill__err(RILL_EINVAL, "ring %s: mem is NULL", kind);
  if ((uintptr_t)mem % RILL_CACHELINE)
    return rill__err(RILL_EINVAL, "ring %s: mem %p is not 64-byte aligned", kind, mem);
  if (bytes < RILL_RING_DATA_OFF)
    return rill__err(RILL_EINVAL, "ring %s: %zu bytes cannot hold the header", kind, bytes);
  return 0;
}

void rill__ring_format(void *mem, uint32_t magic, uint64_t capacity, uint32_t item_size,
                       uint64_t total) {
  memset(mem, 0, RILL_RING_DATA_OFF);
  struct rill__ring_hdr *h = mem;
  h->magic = magic;
  h->version = RILL_RING_VERSION;
  h->data_off = RILL_RING_DATA_OFF;
  h->capacity = capacity;
  h->item_size = item_size;
  h->flags = 0;
  h->total = total;
}

int rill__ring_read_hdr(const char *kind, const void *mem, size_t bytes, uint32_t magic,
                        struct rill__ring_hdr *h) {
  int rc = rill__ring_check_mem(kind, mem, bytes);
  if (rc)
    return rc;
  memcpy(h, mem, sizeof *h);
  if (h->magic != magic)
    return rill__err(RILL_EVERSION, "ring %s: magic 0x%08x, not 0x%08x", kind, h->magic, magic);
  if (h->version != RILL_RING_VERSION)
    return rill__err(RILL_EVERSION, "ring %s: version %u, this build knows %u", kind,
                     (unsigned)h->version, RILL_RING_VERSION);
  if (h->data_off != RILL_RING_DATA_OFF)
    return rill__err(RILL_ECORRUPT, "ring %s: data offset %u, not %u", kind, (unsigned)h->data_off,
                     RILL_RING_DATA_OFF);
  if (h->flags != 0)
    return rill__err(RILL_ECORRUPT, "ring %s: unknown flags 0x%x", kind, h->flags);
  if (h->total > bytes)
    return rill__err(RILL_ECORRUPT, "ring %s: layout of %llu bytes in %zu", kind,
                     (unsigned long long)h->total, bytes);
  return 0;
}

size_t rill__ring_record_bytes(uint64_t capacity) {
  if (!RILL__IS_POW2(capacity) || capacity < RILL_RING_MIN_CAPACITY ||
      capacity > RILL_RING_MAX_CAPACITY)
    return 0;
  return (size_t)(RILL_RING_DATA_OFF + capacity);
}
