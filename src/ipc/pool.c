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

int rill__ipc_pool_check(const char *name, const struct rill__ipc_geom *g, uint64_t seq, uint32_t c,
                         uint32_t idx, uint32_t len, uint64_t owner) {
  if (!g->nclasses)
    return rill__err(RILL_ECORRUPT,
                     "ipc route %s: message %llu says it is in a pool, there is none", name,
                     (unsigned long long)seq);
  if (c >= g->nclasses || idx >= g->cls[c].chunks)
    return rill__err(RILL_ECORRUPT,
                     "ipc route %s: message %llu names chunk %u of class %u; there are %u classes",
                     name, (unsigned long long)seq, idx, c, g->nclasses);
  /* No lower bound: a message may take a larger class than it needs. The
   * upper one keeps a reader inside the chunk. */
  if (len > g->cls[c].size)
    return rill__err(RILL_ECORRUPT,
                     "ipc route %s: pooled message %llu says %u bytes, its chunk holds %u", name,
                     (unsigned long long)seq, len, g->cls[c].size);
  if (owner != seq + 1)
    return rill__err(RILL_ECORRUPT, "ipc route %s: chunk %u:%u holds message %lld, not %llu", name,
                     c, idx, (long long)owner - 1, (unsigned long long)seq);
  return 0;
}
