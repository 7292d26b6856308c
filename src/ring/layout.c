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

/* The rings of variable-length records (mpsc, bcast) share their geometry:
 * a power-of-two data area, and a largest payload of an eighth of it less
 * a record header. */
static uint32_t record_max_payload(uint64_t capacity, uint32_t rec_hdr) {
  return (uint32_t)(capacity / 8 - rec_hdr);
}

int rill__ring_init_records(const char *kind, uint32_t magic, uint32_t rec_hdr, void *mem,
                            size_t bytes, uint64_t capacity) {
  int rc = rill__ring_check_mem(kind, mem, bytes);
  if (rc)
    return rc;
  size_t need = rill__ring_record_bytes(capacity);
  if (!need)
    return rill__err(RILL_EINVAL, "ring %s: capacity %llu is not a power of two in 256..2^32", kind,
                     (unsigned long long)capacity);
  if (bytes < need)
    return rill__err(RILL_EINVAL, "ring %s: %zu bytes, the capacity needs %zu", kind, bytes, need);
  rill__ring_format(mem, magic, capacity, record_max_payload(capacity, rec_hdr), need);
  /* Every record header starts as "not written yet". */
  memset((uint8_t *)mem + RILL_RING_DATA_OFF, 0, capacity);
  return 0;
}

int rill__ring_alloc(const char *kind, size_t need, void **mem) {
  *mem = rill__aligned(RILL_CACHELINE, need);
  if (!*mem)
    return rill__err(RILL_ENOMEM, "ring %s: no memory for %zu bytes", kind, need);
  return 0;
}

int rill__ring_create_records(const char *kind, uint32_t magic, uint32_t rec_hdr, uint64_t capacity,
                              void **mem) {
  *mem = NULL;
  size_t need = rill__ring_record_bytes(capacity);
  if (!need)
    return rill__err(RILL_EINVAL, "ring %s: capacity %llu is not a power of two in 256..2^32", kind,
                     (unsigned long long)capacity);
  int rc = rill__ring_alloc(kind, need, mem);
  if (rc)
    return rc;
  rc = rill__ring_init_records(kind, magic, rec_hdr, *mem, need, capacity);
  if (rc) {
    rill__free(*mem);
    *mem = NULL;
  }
  return rc;
}

int rill__ring_read_records_hdr(const char *kind, uint32_t magic, uint32_t rec_hdr, const void *mem,
                                size_t bytes, struct rill__ring_hdr *h) {
  int rc = rill__ring_read_hdr(kind, mem, bytes, magic, h);
  if (rc)
    return rc;
  size_t need = rill__ring_record_bytes(h->capacity);
  if (!need || need != h->total || h->item_size != record_max_payload(h->capacity, rec_hdr))
    return rill__err(RILL_ECORRUPT, "ring %s: capacity %llu, max payload %u, %llu bytes", kind,
                     (unsigned long long)h->capacity, h->item_size, (unsigned long long)h->total);
  return 0;
}
