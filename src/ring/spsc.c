/*
 * SPSC ring: fixed-size slots in flat memory. The hot paths are inline in
 * rill/ring.h; this file makes, checks and frees handles.
 *
 * Indexes are 64-bit counts of slots moved since init (they never wrap in
 * practice); a slot is data + (index & mask) * slot_size. The producer owns
 * {tail, head_cache} on one line, the consumer {head, tail_cache} on
 * another, so each side writes only its own line.
 */
#include <string.h>

#include "core/internal.h"
#include "ring/layout.h"

struct rill_ring_spsc {
  struct rill__ring_spsc h; /* first: the inline paths cast to it */
  void *mem;
  bool owned; /* mem came from _create */
};

size_t rill_ring_spsc_bytes(uint64_t slots, uint32_t slot_size) {
  if (!RILL__IS_POW2(slots) || slots < 2 || slots > RILL_RING_SPSC_MAX_SLOTS)
    return 0;
  if (slot_size == 0 || slot_size % 8 || slot_size > RILL_RING_SPSC_MAX_SLOT_SIZE)
    return 0;
  return (size_t)(RILL_RING_DATA_OFF + slots * slot_size);
}

/* owned: mem came from _create, and is freed here if the handle cannot be
 * made. */
static int make_handle(rill_ring_spsc_t **out, void *mem, uint64_t slots, uint32_t slot_size,
                       bool owned) {
  rill_ring_spsc_t *r = rill__malloc(sizeof *r);
  if (!r) {
    if (owned)
      rill__free(mem);
    return rill__err(RILL_ENOMEM, "ring spsc: no memory for the handle");
  }
  uint8_t *base = mem;
  r->h.prod = (struct rill__ring_spsc_prod *)(void *)(base + RILL_RING_PROD_OFF);
  r->h.cons = (struct rill__ring_spsc_cons *)(void *)(base + RILL_RING_CONS_OFF);
  r->h.data = base + RILL_RING_DATA_OFF;
  r->h.mask = slots - 1;
  r->h.slot_size = slot_size;
  r->mem = mem;
  r->owned = owned;
  *out = r;
  return 0;
}

int rill_ring_spsc_format(rill_ring_spsc_t **out, void *mem, size_t bytes, uint64_t slots,
                          uint32_t slot_size) {
  if (!out)
    return rill__err(RILL_EINVAL, "ring spsc: out is NULL");
  *out = NULL;
  int rc = rill__ring_check_mem("spsc", mem, bytes);
  if (rc)
    return rc;
  size_t need = rill_ring_spsc_bytes(slots, slot_size);
  if (!need)
    return rill__err(RILL_EINVAL,
                     "ring spsc: %llu slots of %u bytes (slots a power of two in 2..2^32, "
                     "size a multiple of 8 up to 65536)",
                     (unsigned long long)slots, slot_size);
  if (bytes < need)
    return rill__err(RILL_EINVAL, "ring spsc: %zu bytes, the geometry needs %zu", bytes, need);
  rill__ring_format(mem, RILL_RING_SPSC_MAGIC, slots, slot_size, need);
  return make_handle(out, mem, slots, slot_size, false);
}

int rill_ring_spsc_attach(rill_ring_spsc_t **out, void *mem, size_t bytes) {
  if (!out)
    return rill__err(RILL_EINVAL, "ring spsc: out is NULL");
  *out = NULL;
  struct rill__ring_hdr h;
  int rc = rill__ring_read_hdr("spsc", mem, bytes, RILL_RING_SPSC_MAGIC, &h);
  if (rc)
    return rc;
  size_t need = rill_ring_spsc_bytes(h.capacity, h.item_size);
  if (!need || need != h.total)
    return rill__err(RILL_ECORRUPT, "ring spsc: geometry %llu x %u does not match %llu bytes",
                     (unsigned long long)h.capacity, h.item_size, (unsigned long long)h.total);
  /* Indexes of a live ring: read head, then tail, then head again. tail is
   * never behind any head read before it, and never more than a ring ahead
   * of any head read after it, whatever the two sides do meanwhile. */
  uint8_t *base = mem;
  const struct rill__ring_spsc_prod *p = (const void *)(base + RILL_RING_PROD_OFF);
  const struct rill__ring_spsc_cons *c = (const void *)(base + RILL_RING_CONS_OFF);
  uint64_t h1 = __atomic_load_n(&c->head, __ATOMIC_ACQUIRE);
  uint64_t t = __atomic_load_n(&p->tail, __ATOMIC_ACQUIRE);
  uint64_t h2 = __atomic_load_n(&c->head, __ATOMIC_ACQUIRE);
  if (t < h1 || t - h2 > h.capacity)
    return rill__err(RILL_ECORRUPT, "ring spsc: head %llu and tail %llu cannot be",
                     (unsigned long long)h2, (unsigned long long)t);
  return make_handle(out, mem, h.capacity, h.item_size, false);
}

int rill_ring_spsc_create(rill_ring_spsc_t **out, uint64_t slots, uint32_t slot_size) {
  if (!out)
    return rill__err(RILL_EINVAL, "ring spsc: out is NULL");
  *out = NULL;
  size_t need = rill_ring_spsc_bytes(slots, slot_size);
  if (!need)
    return rill__err(RILL_EINVAL, "ring spsc: %llu slots of %u bytes is not a valid geometry",
                     (unsigned long long)slots, slot_size);
  void *mem;
  int rc = rill__ring_alloc("spsc", need, &mem);
  if (rc)
    return rc;
  rill__ring_format(mem, RILL_RING_SPSC_MAGIC, slots, slot_size, need);
  return make_handle(out, mem, slots, slot_size, true);
}

void rill_ring_spsc_destroy(rill_ring_spsc_t *r) {
  if (!r)
    return;
  if (r->owned)
    rill__free(r->mem);
  rill__free(r);
}

uint64_t rill_ring_spsc_capacity(const rill_ring_spsc_t *r) { return r->h.mask + 1; }

uint32_t rill_ring_spsc_slot_size(const rill_ring_spsc_t *r) { return r->h.slot_size; }

uint64_t rill_ring_spsc_size(const rill_ring_spsc_t *r) {
  uint64_t head = __atomic_load_n(&r->h.cons->head, __ATOMIC_ACQUIRE);
  uint64_t tail = __atomic_load_n(&r->h.prod->tail, __ATOMIC_ACQUIRE);
  uint64_t n = tail - head;
  return n > r->h.mask + 1 ? 0 : n; /* head read first: tail - head >= 0 */
}
