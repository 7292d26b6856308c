/*
 * The route's chunk pool: messages over a slot's payload, one copy into
 * shared memory, read in place by every receiver (docs/FORMATS.md, "IPC
 * route segment", "Pool").
 *
 * Size classes: a message takes the smallest class that holds it, or a
 * larger one whose next chunk is free already when the smaller class's is
 * not (route.c decides; a class's chunks are only ever taken in turn).
 *
 * No refcount and no free list: the sender takes each class's chunks in
 * turn (its pooled message k takes chunk k % chunks), and the chunk's owner word
 * says which message it last held. Receivers finish with messages in seq
 * order and the route already tracks the lowest live cursor for slot
 * reuse, so the chunk of message o is free once that cursor is past o:
 * the sender waits for that as it waits for a slot (a tighter bound on
 * the same cursors). A receiver that dies holding a view of a chunk holds
 * it back until the sender reaps it, as it would a slot; a sender that dies
 * after filling a chunk and before publishing its message leaves an owner
 * of seq + 1 for a seq not published, which the next sender takes for free.
 */
#include "core/internal.h"
#include "ipc/segment.h"

uint32_t rill__ipc_pool_pick(uint8_t *base, const struct rill__ipc_geom *g, uint32_t c, uint64_t k,
                             uint64_t seq, uint64_t *limit, uint64_t *old) {
  uint32_t idx = (uint32_t)(k % g->cls[c].chunks);
  /* Relaxed: only a sender writes the owner word, and a sender that took
   * the route over acquired head (and the marks) after its predecessor's
   * last stores. */
  uint64_t owner = __atomic_load_n(&rill__ipc_chunk_at(base, g, c, idx)->owner, __ATOMIC_RELAXED);
  *old = 0;
  /* owner - 1 >= seq: never published (its sender died before the mark),
   * or scribbled; either way no receiver can hold it. */
  if (owner && owner - 1 < seq) {
    uint64_t need = seq - (owner - 1); /* every cursor above owner - 1 */
    if (need < *limit)
      *limit = need;
    *old = owner;
  }
  return idx;
}

int rill__ipc_pool_check(const char *kind, const char *name, const struct rill__ipc_class *cls,
                         uint32_t n, uint64_t seq, uint32_t c, uint32_t idx, uint32_t len,
                         uint64_t owner) {
  if (!n)
    return rill__err(RILL_ECORRUPT, "ipc %s %s: message %llu says it is in a pool, there is none",
                     kind, name, (unsigned long long)seq);
  if (c >= n || idx >= cls[c].chunks)
    return rill__err(RILL_ECORRUPT,
                     "ipc %s %s: message %llu names chunk %u of class %u; there are %u classes",
                     kind, name, (unsigned long long)seq, idx, c, n);
  /* No lower bound: a message may take a larger class than it needs. The
   * upper one keeps a reader inside the chunk. */
  if (len > cls[c].size)
    return rill__err(RILL_ECORRUPT,
                     "ipc %s %s: pooled message %llu says %u bytes, its chunk holds %u", kind, name,
                     (unsigned long long)seq, len, cls[c].size);
  if (owner != seq + 1)
    return rill__err(RILL_ECORRUPT, "ipc %s %s: chunk %u:%u holds message %lld, not %llu", kind,
                     name, c, idx, (long long)owner - 1, (unsigned long long)seq);
  return 0;
}

void rill__ipc_pool_layout(struct rill__ipc_class *cls, uint32_t n, uint64_t *end,
                           uint32_t *max_message, uint32_t *chunks) {
  *max_message = 0;
  *chunks = 0;
  /* Each class starts on a page: a receiver's reads of one class never
   * share a page with the sender's writes to the next. */
  for (uint32_t c = 0; c < n; c++) {
    cls[c].stride = RILL__IPC_CHUNK_HDR + RILL__ALIGN_UP((uint64_t)cls[c].size, (uint64_t)64);
    cls[c].off = RILL__ALIGN_UP(*end, (uint64_t)RILL__IPC_PAGE);
    *end = cls[c].off + (uint64_t)cls[c].chunks * cls[c].stride;
    *max_message = cls[c].size;
    *chunks += cls[c].chunks;
  }
}

enum { CLASS_OK, CLASS_BAD_SIZE, CLASS_BAD_CHUNKS };

/* One class's size and chunks against the rules; the class before's size
 * (or the slot payload) is floor. */
static int class_wrong(uint32_t size, uint32_t chunks, uint32_t floor) {
  if (size <= floor || size > RILL__IPC_MAX_MESSAGE)
    return CLASS_BAD_SIZE;
  if (chunks < 1 || chunks > RILL__IPC_MAX_CHUNKS)
    return CLASS_BAD_CHUNKS;
  return CLASS_OK;
}

int rill__ipc_classes_opts(const char *kind, const char *name, const rill_ipc_class_t *pool,
                           uint32_t inline_max, struct rill__ipc_class *cls, uint32_t *n) {
  *n = 0;
  while (*n < RILL_IPC_MAX_CLASSES && (pool[*n].size || pool[*n].chunks)) {
    uint32_t c = (*n)++;
    uint32_t floor = c ? pool[c - 1].size : inline_max;
    int bad = class_wrong(pool[c].size, pool[c].chunks, floor);
    if (bad == CLASS_BAD_SIZE)
      return rill__err(RILL_EINVAL,
                       "ipc %s %s: pool class %u of %u bytes, not over %u%s and at most 1 GiB",
                       kind, name, c, pool[c].size, floor,
                       c ? " (the class before: sizes ascend)" : " (the slot payload)");
    if (bad)
      return rill__err(RILL_EINVAL, "ipc %s %s: pool class %u with %u chunks, not 1..2^20", kind,
                       name, c, pool[c].chunks);
    cls[c] = (struct rill__ipc_class){.size = pool[c].size, .chunks = pool[c].chunks};
  }
  return 0;
}

int rill__ipc_classes_check(const char *kind, const char *name, const uint8_t *tbl, uint32_t n,
                            uint32_t inline_max, uint32_t max_message,
                            struct rill__ipc_class *cls) {
  if (n < 1 || n > RILL_IPC_MAX_CLASSES)
    return rill__err(RILL_ECORRUPT, "ipc %s %s: %u pool classes, not in 1..%u", kind, name, n,
                     RILL_IPC_MAX_CLASSES);
  for (uint32_t c = 0; c < n; c++) {
    uint32_t size = rill__get32(tbl + 8 * c), chunks = rill__get32(tbl + 8 * c + 4);
    uint32_t floor = c ? cls[c - 1].size : inline_max;
    int bad = class_wrong(size, chunks, floor);
    if (bad == CLASS_BAD_SIZE)
      return rill__err(RILL_ECORRUPT,
                       "ipc %s %s: pool class %u of %u bytes, not over %u and at most 1 GiB", kind,
                       name, c, size, floor);
    if (bad)
      return rill__err(RILL_ECORRUPT, "ipc %s %s: pool class %u has %u chunks, not 1..2^20", kind,
                       name, c, chunks);
    cls[c] = (struct rill__ipc_class){.size = size, .chunks = chunks};
  }
  if (max_message != cls[n - 1].size)
    return rill__err(RILL_ECORRUPT, "ipc %s %s: max message %u, its largest class is %u", kind,
                     name, max_message, cls[n - 1].size);
  return 0;
}

int rill__ipc_classes_agree(const char *kind, const char *name, const rill_ipc_class_t *pool,
                            const struct rill__ipc_class *cls, uint32_t n) {
  if (!pool[0].size && !pool[0].chunks)
    return 0;
  for (uint32_t c = 0; c < RILL_IPC_MAX_CLASSES; c++) {
    uint32_t size = c < n ? cls[c].size : 0, chunks = c < n ? cls[c].chunks : 0;
    if (pool[c].size != size || pool[c].chunks != chunks)
      return rill__err(RILL_EINVAL,
                       "ipc %s %s: exists with pool class %u of %u chunks of %u bytes; asked "
                       "for %u of %u",
                       kind, name, c, chunks, size, pool[c].chunks, pool[c].size);
    if (!size)
      break;
  }
  return 0;
}
