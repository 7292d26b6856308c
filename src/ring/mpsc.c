/*
 * MPSC ring: variable-length records, many producers, one consumer, in
 * flat memory (after Aeron's many-to-one ring buffer).
 *
 * A record is {int32 length, int32 type} and the payload, 8-aligned;
 * length counts the header, the record takes ALIGN8(length) bytes and never
 * crosses the end of the data (a padding record fills the rest first).
 * Length 0 means "not written yet", negative means "claimed, being written"
 * and positive means "committed" (or padding, by its type).
 *
 * Claiming is one CAS loop on the tail, not a fetch-add: a fetch-add would
 * have to be undone when the ring turns out full or when the record must
 * wrap, and with other producers adding meanwhile it cannot be. The CAS
 * checks room and reserves the padding and the record in one step, and in
 * the common case succeeds first time (Aeron's publications can fetch-add
 * because their terms are append-only and rotate instead of wrapping).
 *
 * Memory orders, all in one place:
 *  - consumer: zeroes what it read, then release-stores head;
 *  - producer: acquire-loads head (and passes it on through head_cache with
 *    release/acquire), so the zeroing happens before it writes the room;
 *  - producer: writes payload and type, then release-stores length > 0;
 *  - consumer: acquire-loads length, then reads type and payload.
 * The tail CAS itself orders nothing (relaxed): producers never read each
 * other's records.
 */
#include <string.h>

#include "core/internal.h"
#include "ring/layout.h"

struct rill__ring_mpsc_prod {
  uint64_t tail;       /* bytes claimed since init; CAS'd by producers */
  uint64_t head_cache; /* some producer's last view of cons.head */
};

struct rill__ring_mpsc_cons {
  uint64_t head; /* bytes consumed since init; written by the consumer */
};

struct rill_ring_mpsc {
  struct rill__ring_mpsc_prod *prod;
  struct rill__ring_mpsc_cons *cons;
  uint8_t *data;
  uint64_t cap, mask;
  size_t max_payload;
  void *mem;
  bool owned;
};

#define HDR 8u

static inline int32_t *len_at(const rill_ring_mpsc_t *r, uint64_t off) {
  return (int32_t *)(void *)(r->data + off);
}
static inline int32_t *type_at(const rill_ring_mpsc_t *r, uint64_t off) {
  return (int32_t *)(void *)(r->data + off + 4);
}

size_t rill_ring_mpsc_bytes(uint64_t capacity) { return rill__ring_record_bytes(capacity); }

/* owned: mem came from _create, and is freed here if the handle cannot be
 * made. */
static int make_handle(rill_ring_mpsc_t **out, void *mem, uint64_t cap, bool owned) {
  rill_ring_mpsc_t *r = rill__malloc(sizeof *r);
  if (!r) {
    if (owned)
      rill__free(mem);
    return rill__err(RILL_ENOMEM, "ring mpsc: no memory for the handle");
  }
  uint8_t *base = mem;
  r->prod = (void *)(base + RILL_RING_PROD_OFF);
  r->cons = (void *)(base + RILL_RING_CONS_OFF);
  r->data = base + RILL_RING_DATA_OFF;
  r->cap = cap;
  r->mask = cap - 1;
  r->max_payload = (size_t)(cap / 8 - HDR);
  r->mem = mem;
  r->owned = owned;
  *out = r;
  return 0;
}

int rill_ring_mpsc_format(rill_ring_mpsc_t **out, void *mem, size_t bytes, uint64_t capacity) {
  if (!out)
    return rill__err(RILL_EINVAL, "ring mpsc: out is NULL");
  *out = NULL;
  int rc = rill__ring_init_records("mpsc", RILL_RING_MPSC_MAGIC, HDR, mem, bytes, capacity);
  if (rc)
    return rc;
  return make_handle(out, mem, capacity, false);
}

int rill_ring_mpsc_attach(rill_ring_mpsc_t **out, void *mem, size_t bytes) {
  if (!out)
    return rill__err(RILL_EINVAL, "ring mpsc: out is NULL");
  *out = NULL;
  struct rill__ring_hdr h;
  int rc = rill__ring_read_records_hdr("mpsc", RILL_RING_MPSC_MAGIC, HDR, mem, bytes, &h);
  if (rc)
    return rc;
  /* As for SPSC: head, tail, head again bound a live ring's tail. */
  uint8_t *base = mem;
  const struct rill__ring_mpsc_prod *p = (const void *)(base + RILL_RING_PROD_OFF);
  const struct rill__ring_mpsc_cons *c = (const void *)(base + RILL_RING_CONS_OFF);
  uint64_t h1 = __atomic_load_n(&c->head, __ATOMIC_ACQUIRE);
  uint64_t t = __atomic_load_n(&p->tail, __ATOMIC_ACQUIRE);
  uint64_t h2 = __atomic_load_n(&c->head, __ATOMIC_ACQUIRE);
  uint64_t hc = __atomic_load_n(&p->head_cache, __ATOMIC_ACQUIRE);
  if (t < h1 || t - h2 > h.capacity || (t | h2) % RILL_RING_ALIGN || hc > t)
    return rill__err(RILL_ECORRUPT, "ring mpsc: head %llu, tail %llu, cached head %llu cannot be",
                     (unsigned long long)h2, (unsigned long long)t, (unsigned long long)hc);
  return make_handle(out, mem, h.capacity, false);
}

int rill_ring_mpsc_create(rill_ring_mpsc_t **out, uint64_t capacity) {
  if (!out)
    return rill__err(RILL_EINVAL, "ring mpsc: out is NULL");
  *out = NULL;
  void *mem;
  int rc = rill__ring_create_records("mpsc", RILL_RING_MPSC_MAGIC, HDR, capacity, &mem);
  if (rc)
    return rc;
  return make_handle(out, mem, capacity, true);
}

void rill_ring_mpsc_destroy(rill_ring_mpsc_t *r) {
  if (!r)
    return;
  if (r->owned)
    rill__free(r->mem);
  rill__free(r);
}

size_t rill_ring_mpsc_max_payload(const rill_ring_mpsc_t *r) { return r->max_payload; }

uint64_t rill_ring_mpsc_capacity(const rill_ring_mpsc_t *r) { return r->cap; }

uint64_t rill_ring_mpsc_used(const rill_ring_mpsc_t *r) {
  uint64_t head = __atomic_load_n(&r->cons->head, __ATOMIC_ACQUIRE);
  uint64_t tail = __atomic_load_n(&r->prod->tail, __ATOMIC_ACQUIRE);
  return tail - head > r->cap ? 0 : tail - head;
}

int rill_ring_mpsc_reserve(rill_ring_mpsc_t *r, size_t len, int32_t type, void **out) {
  *out = NULL;
  if (RILL_UNLIKELY(type < 0))
    return rill__err(RILL_EINVAL, "ring mpsc: record type %d is reserved", (int)type);
  if (RILL_UNLIKELY(len > r->max_payload))
    return rill__err(RILL_EMSGSIZE, "ring mpsc: %zu bytes, the ring takes at most %zu", len,
                     r->max_payload);
  const uint64_t cap = r->cap;
  const uint64_t rec = RILL__RING_ALIGN8(len + HDR);
  /* Acquire: pairs with the release below in another producer (or ours),
   * which passed on the consumer's head: the zeroing before that head
   * happens before our writes into the room. */
  uint64_t head = __atomic_load_n(&r->prod->head_cache, __ATOMIC_ACQUIRE);
  uint64_t tail = __atomic_load_n(&r->prod->tail, __ATOMIC_RELAXED);
  uint64_t off, need;
  for (;;) {
    if (RILL_UNLIKELY(tail % RILL_RING_ALIGN)) /* only a peer's scribbling does this */
      return rill__err(RILL_ECORRUPT, "ring mpsc: tail %llu is not 8-aligned",
                       (unsigned long long)tail);
    off = tail & r->mask;
    uint64_t to_end = cap - off;
    need = rec <= to_end ? rec : to_end + rec;
    if (RILL_UNLIKELY(tail - head > cap || need > cap - (tail - head))) {
      /* Acquire: pairs with the consumer's release of head (see above). */
      head = __atomic_load_n(&r->cons->head, __ATOMIC_ACQUIRE);
      if (tail - head > cap || need > cap - (tail - head))
        return RILL_EAGAIN; /* full: no detail recorded, it is not a fault */
      /* Release: hands the consumer's zeroing on to the producers that
       * acquire head_cache. */
      __atomic_store_n(&r->prod->head_cache, head, __ATOMIC_RELEASE);
    }
    /* Relaxed: the CAS reserves bytes and publishes nothing; on failure it
     * reloads tail and we check room again. */
    if (__atomic_compare_exchange_n(&r->prod->tail, &tail, tail + need, true, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
      break;
  }
  if (need != rec) {
    /* Wrap: pad to the end, the record starts at 0. Release: the padding's
     * type is written before the consumer can see its length. */
    __atomic_store_n(type_at(r, off), RILL_RING_PADDING, __ATOMIC_RELAXED);
    __atomic_store_n(len_at(r, off), (int32_t)(cap - off), __ATOMIC_RELEASE);
    off = 0;
  }
  /* Mark the record claimed with a CAS from "not written": if the consumer
   * unblocked this room meanwhile (we stalled right here for longer than
   * its patience), the CAS fails and the claim is off. The type is written
   * only once the mark is ours, so unblock's padding type cannot be
   * overwritten. */
  int32_t zero = 0;
  if (RILL_UNLIKELY(!__atomic_compare_exchange_n(len_at(r, off), &zero, -(int32_t)(len + HDR),
                                                 false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)))
    return rill__err(RILL_ECANCELED, "ring mpsc: the consumer unblocked this claim first");
  __atomic_store_n(type_at(r, off), type, __ATOMIC_RELAXED);
  *out = r->data + off + HDR;
  return 0;
}

/* The header offset of a payload pointer from claim, and its (negative)
 * length; RILL_EFOREIGN or RILL_ECANCELED when it is not a live claim. */
static int claimed(rill_ring_mpsc_t *r, void *p, uint64_t *off, int32_t *len, const char *what) {
  uintptr_t a = (uintptr_t)p, d = (uintptr_t)r->data;
  if (!p || a < d + HDR || a - d - HDR >= r->cap || (a - d) % RILL_RING_ALIGN)
    return rill__err(RILL_EFOREIGN, "ring mpsc: %s of %p, not a record of this ring", what, p);
  *off = a - d - HDR;
  *len = __atomic_load_n(len_at(r, *off), __ATOMIC_RELAXED);
  if (*len > 0 && __atomic_load_n(type_at(r, *off), __ATOMIC_RELAXED) == RILL_RING_PADDING)
    return rill__err(RILL_ECANCELED, "ring mpsc: %s of a record the consumer unblocked", what);
  if (*len >= 0 || -(int64_t)*len < (int64_t)HDR ||
      (uint64_t)(-(int64_t)*len) > r->max_payload + HDR)
    return rill__err(RILL_EFOREIGN, "ring mpsc: %s of %p, not a claimed record", what, p);
  return 0;
}

static int finish(rill_ring_mpsc_t *r, void *p, bool keep) {
  uint64_t off = 0;
  int32_t len = 0;
  int rc = claimed(r, p, &off, &len, keep ? "commit" : "cancel");
  if (rc)
    return rc;
  if (!keep)
    __atomic_store_n(type_at(r, off), RILL_RING_PADDING, __ATOMIC_RELAXED);
  /* Release: the payload and type written in place are visible before the
   * consumer's acquire load sees the positive length. A CAS rather than a
   * store, so that losing to unblock is noticed. */
  if (!__atomic_compare_exchange_n(len_at(r, off), &len, -len, false, __ATOMIC_RELEASE,
                                   __ATOMIC_RELAXED))
    return rill__err(RILL_ECANCELED, "ring mpsc: the consumer unblocked this record first");
  return 0;
}

int rill_ring_mpsc_commit(rill_ring_mpsc_t *r, void *p) { return finish(r, p, true); }

int rill_ring_mpsc_cancel(rill_ring_mpsc_t *r, void *p) { return finish(r, p, false); }

int rill_ring_mpsc_write(rill_ring_mpsc_t *r, int32_t type, const void *data, size_t len) {
  void *p;
  int rc = rill_ring_mpsc_reserve(r, len, type, &p);
  if (rc)
    return rc;
  memcpy(p, data, len);
  return finish(r, p, true);
}

/* Zeroes [from, from + n) of the data, across the wrap. */
static void zero_range(rill_ring_mpsc_t *r, uint64_t from, uint64_t n) {
  uint64_t off = from & r->mask, first = r->cap - off;
  if (first > n)
    first = n;
  memset(r->data + off, 0, first);
  memset(r->data, 0, n - first);
}

int rill_ring_mpsc_read(rill_ring_mpsc_t *r, rill_ring_mpsc_read_cb handler, void *ctx,
                        size_t limit) {
  const uint64_t head = __atomic_load_n(&r->cons->head, __ATOMIC_RELAXED);
  uint64_t pos = head;
  int count = 0, rc = 0;
  if (RILL_UNLIKELY(head % RILL_RING_ALIGN))
    return rill__err(RILL_ECORRUPT, "ring mpsc: head %llu is not 8-aligned",
                     (unsigned long long)head);
  if (limit > INT32_MAX)
    limit = INT32_MAX;
  while ((size_t)count < limit && pos - head < r->cap) {
    uint64_t off = pos & r->mask;
    /* Acquire: pairs with commit's (or the padding's) release of the
     * length, so the type and payload are visible. */
    int32_t len = __atomic_load_n(len_at(r, off), __ATOMIC_ACQUIRE);
    if (len <= 0)
      break; /* not written, or claimed and not committed */
    int32_t type = __atomic_load_n(type_at(r, off), __ATOMIC_RELAXED);
    uint64_t span = RILL__RING_ALIGN8((uint64_t)len);
    bool pad = type == RILL_RING_PADDING;
    if ((uint64_t)len < HDR || span > r->cap - off || span > r->cap - (pos - head) ||
        (!pad && (type < 0 || (uint64_t)len - HDR > r->max_payload))) {
      rc = rill__err(RILL_ECORRUPT, "ring mpsc: record at %llu has length %d, type %d",
                     (unsigned long long)pos, (int)len, (int)type);
      break;
    }
    if (!pad) {
      handler(ctx, type, r->data + off + HDR, (size_t)len - HDR);
      count++;
    }
    pos += span;
  }
  if (pos != head) {
    zero_range(r, head, pos - head);
    /* Release: our reads and the zeroing complete before producers, which
     * acquire head, reuse the room. */
    __atomic_store_n(&r->cons->head, pos, __ATOMIC_RELEASE);
  }
  return rc ? rc : count;
}

int rill_ring_mpsc_unblock(rill_ring_mpsc_t *r) {
  uint64_t head = __atomic_load_n(&r->cons->head, __ATOMIC_RELAXED);
  uint64_t tail = __atomic_load_n(&r->prod->tail, __ATOMIC_ACQUIRE);
  if (tail == head || tail - head > r->cap)
    return 0;
  if ((head | tail) % RILL_RING_ALIGN)
    return rill__err(RILL_ECORRUPT, "ring mpsc: head %llu or tail %llu is not 8-aligned",
                     (unsigned long long)head, (unsigned long long)tail);
  uint64_t off = head & r->mask;
  int32_t len = __atomic_load_n(len_at(r, off), __ATOMIC_ACQUIRE);
  if (len > 0)
    return 0; /* committed: read will take it */
  if (len < 0) {
    /* Claimed, never committed: the producer's own length becomes
     * padding's. If it commits first, the CAS fails and nothing changes. */
    uint64_t span = RILL__RING_ALIGN8((uint64_t)(-(int64_t)len));
    if (span < HDR || span > r->cap - off)
      return rill__err(RILL_ECORRUPT, "ring mpsc: claimed record at %llu has length %d",
                       (unsigned long long)head, (int)len);
    if (!__atomic_compare_exchange_n(len_at(r, off), &len, -len, false, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
      return 0;
    __atomic_store_n(type_at(r, off), RILL_RING_PADDING, __ATOMIC_RELAXED);
    return 1;
  }
  /* Not even marked: the producer died (or stalls) between its tail CAS
   * and the mark. Its room is still zero, so pad from head to the first
   * non-zero word (the next record's mark), the end of the data, or tail.
   * The mark goes on with a CAS from 0, which the producer's own mark
   * CAS then loses. */
  uint64_t limit = tail - head, gap = HDR;
  if (limit > r->cap - off)
    limit = r->cap - off;
  if (limit > r->max_payload + HDR) /* no record is longer */
    limit = r->max_payload + HDR;
  while (gap < limit &&
         __atomic_load_n((uint64_t *)(void *)(r->data + off + gap), __ATOMIC_RELAXED) == 0)
    gap += RILL_RING_ALIGN;
  int32_t zero = 0;
  if (!__atomic_compare_exchange_n(len_at(r, off), &zero, (int32_t)gap, false, __ATOMIC_RELAXED,
                                   __ATOMIC_RELAXED))
    return 0;
  __atomic_store_n(type_at(r, off), RILL_RING_PADDING, __ATOMIC_RELAXED);
  return 1;
}
