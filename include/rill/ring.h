/*
 * rill ring: SPSC, MPSC and broadcast rings over flat memory.
 *
 * Every ring lives in one block of memory the caller may own: a heap block,
 * an mmap'd file or shared memory. The block holds a 64-byte header (magic,
 * version, geometry), then the counters, each side's on its own cache lines
 * (128 bytes apart, so the adjacent-line prefetcher does not pair them),
 * then the data. There are no pointers inside, so two processes can map the
 * same block at different addresses: one formats it with _init, the other
 * checks it with _attach. docs/FORMATS.md ("Rings") gives every byte.
 *
 * A handle (rill_ring_<kind>_t) is private to the process that made it: the
 * geometry is copied into it at _init/_attach, so a peer that later
 * scribbles on the shared header cannot make this process index outside
 * the block. Handles are read-only after creation; one handle may be used by
 * the producer and the consumer threads at once.
 *
 * Full and empty are RILL_EAGAIN for every kind: both are transient, and the
 * caller decides whether to spin, yield or drop.
 */
#ifndef RILL_RING_H
#define RILL_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Magic values (the first four bytes of the block, little-endian u32) and
 * the layout version all three kinds share. */
#define RILL_RING_SPSC_MAGIC  0x43505352u /* "RSPC" */
#define RILL_RING_MPSC_MAGIC  0x43504d52u /* "RMPC" */
#define RILL_RING_BCAST_MAGIC 0x53434252u /* "RBCS" */
#define RILL_RING_VERSION     1u

/* Offsets of the parts of every ring block. */
#define RILL_RING_PROD_OFF 128u /* producer (writer) counters */
#define RILL_RING_CONS_OFF 256u /* consumer counters (unused by bcast) */
#define RILL_RING_DATA_OFF 384u /* slots or records */

/* Record type of padding (wrap filler, aborted claims) in MPSC and bcast
 * rings. User record types are 0..INT32_MAX. */
#define RILL_RING_PADDING (-1)

/* Record alignment in MPSC and bcast rings. */
#define RILL_RING_ALIGN 8u

/* Geometry limits. */
#define RILL_RING_SPSC_MAX_SLOTS     ((uint64_t)1 << 32)
#define RILL_RING_SPSC_MAX_SLOT_SIZE 65536u
#define RILL_RING_MIN_CAPACITY       256u /* MPSC and bcast data bytes */
#define RILL_RING_MAX_CAPACITY       ((uint64_t)1 << 32)

/* ---- shared-memory structures (the documented prefix) ------------------ */

/* The 64-byte header at offset 0 of every ring block. */
struct rill__ring_hdr {
  uint32_t magic;     /* RILL_RING_*_MAGIC */
  uint16_t version;   /* RILL_RING_VERSION */
  uint16_t data_off;  /* RILL_RING_DATA_OFF */
  uint64_t capacity;  /* SPSC: slots; MPSC and bcast: data bytes */
  uint32_t item_size; /* SPSC: slot bytes; MPSC and bcast: max payload */
  uint32_t flags;     /* 0 */
  uint64_t total;     /* bytes the layout spans: data_off + data bytes */
  uint8_t reserved[32];
};

/* The SPSC producer's line: written only by the producer. */
struct rill__ring_spsc_prod {
  uint64_t tail;       /* slots pushed since init; read by the consumer */
  uint64_t head_cache; /* the producer's last view of cons.head */
};

/* The SPSC consumer's line: written only by the consumer. */
struct rill__ring_spsc_cons {
  uint64_t head;       /* slots popped since init; read by the producer */
  uint64_t tail_cache; /* the consumer's last view of prod.tail */
};

/* The private handle of an SPSC ring: its first member, which the inline
 * paths below reach through a cast. */
struct rill__ring_spsc {
  struct rill__ring_spsc_prod *prod;
  struct rill__ring_spsc_cons *cons;
  uint8_t *data;
  uint64_t mask; /* slots - 1 */
  uint32_t slot_size;
};

/* ---- SPSC: fixed-size slots ------------------------------------------- */

/*
 * One producer thread, one consumer thread (in any processes). Items are
 * fixed-size slots (slot_size bytes, a multiple of 8); the slot count is a
 * power of two. Producer calls: push, push_u64, push_n, reserve, commit.
 * Consumer calls: pop, pop_u64, pop_n, peek, release. Either side: size,
 * capacity. Each side reads the other's index only when its cached copy
 * says full (empty), so in steady state a push touches only the producer's
 * line and the slot.
 */
typedef struct rill_ring_spsc rill_ring_spsc_t;

/** Bytes a ring of `slots` slots of `slot_size` bytes needs, or 0 when the
 *  geometry is invalid (slots not a power of two in 2..2^32, slot_size not a
 *  multiple of 8 in 8..65536). */
size_t rill_ring_spsc_bytes(uint64_t slots, uint32_t slot_size);

/** Formats `bytes` bytes at mem (64-byte aligned, at least
 *  rill_ring_spsc_bytes()) as an empty ring and returns a handle on it.
 *  RILL_EINVAL for a bad geometry, size or alignment; RILL_ENOMEM when the
 *  handle cannot be allocated. No other thread or process may use mem
 *  during the call. */
int rill_ring_spsc_format(rill_ring_spsc_t **out, void *mem, size_t bytes, uint64_t slots,
                          uint32_t slot_size);

/** Returns a handle on a ring another handle (maybe in another process)
 *  formatted at mem. Checks the bytes before trusting them: RILL_EVERSION
 *  for a wrong magic or version, RILL_ECORRUPT for a geometry that does not
 *  fit `bytes` or indexes that cannot be, RILL_EINVAL for a NULL or
 *  misaligned mem. The ring may be in use meanwhile. */
int rill_ring_spsc_attach(rill_ring_spsc_t **out, void *mem, size_t bytes);

/** Allocates 64-byte aligned heap memory for a ring and formats it. */
int rill_ring_spsc_create(rill_ring_spsc_t **out, uint64_t slots, uint32_t slot_size);

/** Frees the handle, and the memory too when _create made it. NULL is a
 *  no-op. Neither side may use the handle during or after. */
void rill_ring_spsc_destroy(rill_ring_spsc_t *r);

/** Slots in the ring. */
uint64_t rill_ring_spsc_capacity(const rill_ring_spsc_t *r);

/** Slot size in bytes. */
uint32_t rill_ring_spsc_slot_size(const rill_ring_spsc_t *r);

/** Items in the ring (a snapshot when the other side is running). */
uint64_t rill_ring_spsc_size(const rill_ring_spsc_t *r);

/* Free slots as the producer sees them: refreshes its cached head only
 * when the cache says fewer than `want` are free. */
RILL_INLINE uint64_t rill__ring_spsc_free(struct rill__ring_spsc *s, uint64_t tail, uint64_t want) {
  uint64_t cap = s->mask + 1;
  uint64_t used = tail - s->prod->head_cache;
  if (RILL_UNLIKELY(cap - used < want || used > cap)) {
    /* Acquire: pairs with the consumer's release of head, so its reads of
     * the slots it gave back happen before we overwrite them. */
    uint64_t head = __atomic_load_n(&s->cons->head, __ATOMIC_ACQUIRE);
    s->prod->head_cache = head;
    used = tail - head;
    if (RILL_UNLIKELY(used > cap)) /* a corrupt head: report full */
      return 0;
  }
  return cap - used;
}

/* Items available as the consumer sees them, refreshing its cached tail
 * only when the cache says fewer than `want`. */
RILL_INLINE uint64_t rill__ring_spsc_avail(struct rill__ring_spsc *s, uint64_t head,
                                           uint64_t want) {
  uint64_t avail = s->cons->tail_cache - head;
  if (RILL_UNLIKELY(avail < want || avail > s->mask + 1)) {
    /* Acquire: pairs with the producer's release of tail, so the slot
     * contents it wrote are visible before we read them. */
    uint64_t tail = __atomic_load_n(&s->prod->tail, __ATOMIC_ACQUIRE);
    s->cons->tail_cache = tail;
    avail = tail - head;
    if (RILL_UNLIKELY(avail > s->mask + 1)) /* a corrupt tail: report empty */
      return 0;
  }
  return avail;
}

/** Pushes one item of slot_size bytes. 0, or RILL_EAGAIN when full.
 *  An 8-byte ring copies with one load and store, not a memcpy call. */
RILL_INLINE int rill_ring_spsc_push(rill_ring_spsc_t *r, const void *item) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  /* Relaxed: the producer reads back its own index. */
  uint64_t tail = __atomic_load_n(&s->prod->tail, __ATOMIC_RELAXED);
  if (RILL_UNLIKELY(rill__ring_spsc_free(s, tail, 1) == 0))
    return RILL_EAGAIN;
  uint8_t *dst = s->data + (tail & s->mask) * s->slot_size;
  if (RILL_LIKELY(s->slot_size == 8))
    __builtin_memcpy(dst, item, 8); /* a constant size: one mov each way */
  else
    memcpy(dst, item, s->slot_size);
  /* Release: the slot's bytes are visible before the consumer sees tail. */
  __atomic_store_n(&s->prod->tail, tail + 1, __ATOMIC_RELEASE);
  return 0;
}

/** Pops one item into out (slot_size bytes). 0, or RILL_EAGAIN when empty. */
RILL_INLINE int rill_ring_spsc_pop(rill_ring_spsc_t *r, void *out) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  uint64_t head = __atomic_load_n(&s->cons->head, __ATOMIC_RELAXED);
  if (RILL_UNLIKELY(rill__ring_spsc_avail(s, head, 1) == 0))
    return RILL_EAGAIN;
  const uint8_t *src = s->data + (head & s->mask) * s->slot_size;
  if (RILL_LIKELY(s->slot_size == 8))
    __builtin_memcpy(out, src, 8);
  else
    memcpy(out, src, s->slot_size);
  /* Release: our read of the slot completes before the producer may reuse
   * it. */
  __atomic_store_n(&s->cons->head, head + 1, __ATOMIC_RELEASE);
  return 0;
}

/** Pushes one 64-bit value into a ring of 8-byte slots. 0, RILL_EAGAIN when
 *  full, RILL_EINVAL when the slots are not 8 bytes. */
RILL_INLINE int rill_ring_spsc_push_u64(rill_ring_spsc_t *r, uint64_t v) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  if (RILL_UNLIKELY(s->slot_size != 8))
    return RILL_EINVAL;
  uint64_t tail = __atomic_load_n(&s->prod->tail, __ATOMIC_RELAXED);
  if (RILL_UNLIKELY(rill__ring_spsc_free(s, tail, 1) == 0))
    return RILL_EAGAIN;
  ((uint64_t *)(void *)s->data)[tail & s->mask] = v;
  /* Release: the value is visible before the consumer sees tail. */
  __atomic_store_n(&s->prod->tail, tail + 1, __ATOMIC_RELEASE);
  return 0;
}

/** Pops one 64-bit value from a ring of 8-byte slots. 0, RILL_EAGAIN when
 *  empty, RILL_EINVAL when the slots are not 8 bytes. */
RILL_INLINE int rill_ring_spsc_pop_u64(rill_ring_spsc_t *r, uint64_t *out) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  if (RILL_UNLIKELY(s->slot_size != 8))
    return RILL_EINVAL;
  uint64_t head = __atomic_load_n(&s->cons->head, __ATOMIC_RELAXED);
  if (RILL_UNLIKELY(rill__ring_spsc_avail(s, head, 1) == 0))
    return RILL_EAGAIN;
  *out = ((const uint64_t *)(const void *)s->data)[head & s->mask];
  /* Release: the read of the slot completes before the producer reuses it. */
  __atomic_store_n(&s->cons->head, head + 1, __ATOMIC_RELEASE);
  return 0;
}

/** Pushes up to n items (n * slot_size bytes at items) and returns how many
 *  it pushed: all of them, or as many as there was room for. One release
 *  store publishes the whole batch. */
RILL_INLINE size_t rill_ring_spsc_push_n(rill_ring_spsc_t *r, const void *items, size_t n) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  uint64_t tail = __atomic_load_n(&s->prod->tail, __ATOMIC_RELAXED);
  uint64_t k = rill__ring_spsc_free(s, tail, n);
  if (k > n)
    k = n;
  if (RILL_UNLIKELY(k == 0))
    return 0;
  uint64_t at = tail & s->mask, first = s->mask + 1 - at;
  if (first > k)
    first = k;
  memcpy(s->data + at * s->slot_size, items, first * s->slot_size);
  if (k > first)
    memcpy(s->data, (const uint8_t *)items + first * s->slot_size, (k - first) * s->slot_size);
  /* Release: every slot of the batch is visible before tail covers it. */
  __atomic_store_n(&s->prod->tail, tail + k, __ATOMIC_RELEASE);
  return k;
}

/** Pops up to n items into out and returns how many it popped. One release
 *  store gives the whole batch's slots back. */
RILL_INLINE size_t rill_ring_spsc_pop_n(rill_ring_spsc_t *r, void *out, size_t n) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  uint64_t head = __atomic_load_n(&s->cons->head, __ATOMIC_RELAXED);
  uint64_t k = rill__ring_spsc_avail(s, head, n);
  if (k > n)
    k = n;
  if (RILL_UNLIKELY(k == 0))
    return 0;
  uint64_t at = head & s->mask, first = s->mask + 1 - at;
  if (first > k)
    first = k;
  memcpy(out, s->data + at * s->slot_size, first * s->slot_size);
  if (k > first)
    memcpy((uint8_t *)out + first * s->slot_size, s->data, (k - first) * s->slot_size);
  /* Release: our reads of the batch complete before the producer reuses
   * its slots. */
  __atomic_store_n(&s->cons->head, head + k, __ATOMIC_RELEASE);
  return k;
}

/** Zero-copy push, part one: a pointer to up to n free, contiguous slots
 *  to write in place; *got says how many (fewer than n at the wrap or when
 *  the ring is fuller: the contiguous part only). NULL with *got == 0 when
 *  full. Nothing is visible to the consumer until commit. */
RILL_INLINE void *rill_ring_spsc_reserve(rill_ring_spsc_t *r, size_t n, size_t *got) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  uint64_t tail = __atomic_load_n(&s->prod->tail, __ATOMIC_RELAXED);
  uint64_t k = rill__ring_spsc_free(s, tail, n);
  uint64_t at = tail & s->mask, first = s->mask + 1 - at;
  if (k > first)
    k = first;
  if (k > n)
    k = n;
  *got = (size_t)k;
  return k ? s->data + at * s->slot_size : NULL;
}

/** Zero-copy push, part two: publishes the first n slots of what reserve
 *  returned. 0, or RILL_EINVAL when n exceeds the free slots (nothing is
 *  published then). */
RILL_INLINE int rill_ring_spsc_commit(rill_ring_spsc_t *r, size_t n) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  uint64_t tail = __atomic_load_n(&s->prod->tail, __ATOMIC_RELAXED);
  /* The cached head is at most as new as the real one: a check against it
   * never lets through more than is free. */
  if (RILL_UNLIKELY(n > s->mask + 1 - (tail - s->prod->head_cache)))
    return RILL_EINVAL;
  /* Release: the slots written in place are visible before tail covers
   * them. */
  __atomic_store_n(&s->prod->tail, tail + n, __ATOMIC_RELEASE);
  return 0;
}

/** Zero-copy pop, part one: a pointer to up to n filled, contiguous slots to
 *  read in place; *got says how many (the part before the wrap). NULL with
 *  *got == 0 when empty. The slots stay the consumer's until release. */
RILL_INLINE const void *rill_ring_spsc_peek(rill_ring_spsc_t *r, size_t n, size_t *got) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  uint64_t head = __atomic_load_n(&s->cons->head, __ATOMIC_RELAXED);
  uint64_t k = rill__ring_spsc_avail(s, head, n);
  uint64_t at = head & s->mask, first = s->mask + 1 - at;
  if (k > first)
    k = first;
  if (k > n)
    k = n;
  *got = (size_t)k;
  return k ? s->data + at * s->slot_size : NULL;
}

/** Zero-copy pop, part two: gives back the first n slots peek returned.
 *  0, or RILL_EINVAL when n exceeds the filled slots (nothing is released
 *  then). */
RILL_INLINE int rill_ring_spsc_release(rill_ring_spsc_t *r, size_t n) {
  struct rill__ring_spsc *s = (struct rill__ring_spsc *)r;
  uint64_t head = __atomic_load_n(&s->cons->head, __ATOMIC_RELAXED);
  /* The cached tail is at most as new as the real one. */
  if (RILL_UNLIKELY(n > s->cons->tail_cache - head))
    return RILL_EINVAL;
  /* Release: our reads of the slots complete before the producer reuses
   * them. */
  __atomic_store_n(&s->cons->head, head + n, __ATOMIC_RELEASE);
  return 0;
}

/* ---- MPSC: variable-length records, many producers -------------------- */

/*
 * Many producer threads (in any processes), one consumer. A record is an
 * 8-byte header {int32 length, int32 type} and its payload, padded to 8
 * bytes; length counts the header. A producer claims room with one CAS on
 * the tail (see claim), writes the payload in place and commits; the
 * consumer reads batches in place, zeroes what it consumed and releases the
 * room with one store per batch. Thread-safe: claim, commit, abort (any
 * number of producers). Consumer only: read, unblock.
 */
typedef struct rill_ring_mpsc rill_ring_mpsc_t;

/** Called by rill_ring_mpsc_read for each record, in place: data is valid
 *  only during the call. */
typedef void (*rill_ring_mpsc_read_cb)(void *ctx, int32_t type, const void *data, size_t len);

/** Bytes a ring of `capacity` data bytes needs, or 0 when capacity is not a
 *  power of two in 256..2^32. */
size_t rill_ring_mpsc_bytes(uint64_t capacity);

/** Formats mem (64-byte aligned, at least rill_ring_mpsc_bytes(capacity)
 *  bytes) as an empty ring. RILL_EINVAL for a bad capacity, size or
 *  alignment. */
int rill_ring_mpsc_format(rill_ring_mpsc_t **out, void *mem, size_t bytes, uint64_t capacity);

/** Checks a ring formatted at mem and returns a handle on it: RILL_EVERSION
 *  for a wrong magic or version, RILL_ECORRUPT for an inconsistent layout or
 *  indexes. */
int rill_ring_mpsc_attach(rill_ring_mpsc_t **out, void *mem, size_t bytes);

/** Allocates 64-byte aligned heap memory for a ring and formats it. */
int rill_ring_mpsc_create(rill_ring_mpsc_t **out, uint64_t capacity);

/** Frees the handle, and the memory too when _create made it. */
void rill_ring_mpsc_destroy(rill_ring_mpsc_t *r);

/** The largest payload a record may have: capacity / 8 - 8 bytes. */
size_t rill_ring_mpsc_max_payload(const rill_ring_mpsc_t *r);

/** Data bytes of the ring. */
uint64_t rill_ring_mpsc_capacity(const rill_ring_mpsc_t *r);

/** Bytes claimed and not yet consumed (a snapshot). */
uint64_t rill_ring_mpsc_used(const rill_ring_mpsc_t *r);

/** Claims room for a record of len payload bytes and the given type
 *  (0..INT32_MAX) and sets *out to where the payload goes (8-aligned). The
 *  record stays invisible to the consumer until commit or abort, which the
 *  caller must call exactly once. RILL_EAGAIN when the ring is full,
 *  RILL_EMSGSIZE when len exceeds the max payload, RILL_EINVAL for a
 *  negative type, RILL_ECANCELED when the consumer unblocked the claim
 *  before it was marked (see unblock; the room is lost, nothing to
 *  commit), RILL_ECORRUPT when the shared tail is not 8-aligned (a peer
 *  wrote over the counters). */
int rill_ring_mpsc_reserve(rill_ring_mpsc_t *r, size_t len, int32_t type, void **out);

/** Publishes a claimed record. 0; RILL_EFOREIGN when p is not a claimed,
 *  uncommitted record of this ring; RILL_ECANCELED when the consumer
 *  unblocked it first (it was turned into padding and is lost). */
int rill_ring_mpsc_commit(rill_ring_mpsc_t *r, void *p);

/** Gives a claimed record up: it becomes padding the consumer skips. Same
 *  returns as commit. */
int rill_ring_mpsc_cancel(rill_ring_mpsc_t *r, void *p);

/** Claims, copies len bytes from data and commits. */
int rill_ring_mpsc_write(rill_ring_mpsc_t *r, int32_t type, const void *data, size_t len);

/** Consumer: hands up to limit committed records, in order, to handler,
 *  then zeroes their bytes and releases them with one store. Stops at the
 *  first record not yet committed. Returns the count of records handed out
 *  (padding is skipped and not counted), or RILL_ECORRUPT when a record
 *  header is impossible (the records before it are still delivered and
 *  released; the ring stays stuck at the bad one). */
int rill_ring_mpsc_read(rill_ring_mpsc_t *r, rill_ring_mpsc_read_cb handler, void *ctx,
                        size_t limit);

/** Consumer: moves the ring past a producer that claimed room and never
 *  committed, for use when read has returned 0 for longer than the
 *  consumer's patience while used() stayed non-zero. If the record at head
 *  is claimed but uncommitted, it is turned into padding; if its header was
 *  never written (the producer died right after claiming), the zeroed gap
 *  up to the next written header is. Returns 1 when it padded something, 0
 *  when there was nothing to unblock (the ring is empty or the record at
 *  head is committed). A producer that is merely slow and later commits
 *  gets RILL_ECANCELED, but its payload writes may land in room already
 *  reused: call it only with a patience far above any claim-to-commit time.
 *  docs/FORMATS.md has the protocol. */
int rill_ring_mpsc_unblock(rill_ring_mpsc_t *r);

/* ---- bcast: one writer, many lapped readers ---------------------------- */

/*
 * One writer (in any process) that never waits, any number of readers that
 * never write to the ring. A record is a 16-byte header {int32 length,
 * int32 type, uint64 seq} and its payload, padded to 16 bytes. Each reader
 * keeps its cursor privately, copies a record out, then checks that the
 * writer had not begun to overwrite it meanwhile (a seqlock on the writer's
 * tail intent). A reader the writer laps gets RILL_ELAGGED, learns exactly
 * how many records and bytes it lost, and resumes at the oldest record
 * still whole. Writer only: write. Readers: their own reader object each.
 */
typedef struct rill_ring_bcast rill_ring_bcast_t;

/* A reader's private position. Embed it or put it on the stack; a reader
 * object is used by one thread at a time. */
typedef struct rill_ring_bcast_reader {
  uint64_t cursor;       /* byte position of the next record */
  uint64_t next_seq;     /* sequence number expected next */
  uint64_t lost_records; /* lost by the most recent RILL_ELAGGED */
  uint64_t lost_bytes;   /* the same, in bytes */
  uint64_t total_lost;   /* records lost since join */
  uint64_t laps;         /* RILL_ELAGGED returns since join */
} rill_ring_bcast_reader_t;

/** Bytes a ring of `capacity` data bytes needs, or 0 when capacity is not a
 *  power of two in 256..2^32. */
size_t rill_ring_bcast_bytes(uint64_t capacity);

/** Formats mem as an empty ring. RILL_EINVAL for a bad capacity, size or
 *  alignment. */
int rill_ring_bcast_format(rill_ring_bcast_t **out, void *mem, size_t bytes, uint64_t capacity);

/** Checks a ring formatted at mem and returns a handle on it: RILL_EVERSION
 *  for a wrong magic or version, RILL_ECORRUPT for an inconsistent layout or
 *  counters. */
int rill_ring_bcast_attach(rill_ring_bcast_t **out, void *mem, size_t bytes);

/** Allocates 64-byte aligned heap memory for a ring and formats it. */
int rill_ring_bcast_create(rill_ring_bcast_t **out, uint64_t capacity);

/** Frees the handle, and the memory too when _create made it. */
void rill_ring_bcast_destroy(rill_ring_bcast_t *r);

/** The largest payload a record may have: capacity / 8 - 16 bytes. */
size_t rill_ring_bcast_max_payload(const rill_ring_bcast_t *r);

/** Writer: appends a record, overwriting the oldest ones when needed; never
 *  waits. 0, RILL_EMSGSIZE when len exceeds the max payload, RILL_EINVAL
 *  for a negative type. */
int rill_ring_bcast_write(rill_ring_bcast_t *r, int32_t type, const void *data, size_t len);

/** Writer: rill_ring_bcast_write of the n parts' bytes one after another,
 *  as one record, without staging them: a header or prefix and a payload
 *  from elsewhere, say. RILL_EMSGSIZE when they add up to more than the
 *  max payload. */
int rill_ring_bcast_writev(rill_ring_bcast_t *r, int32_t type, const rill_iov_t *parts, size_t n);

/** Records written since init. */
uint64_t rill_ring_bcast_written(const rill_ring_bcast_t *r);

/** Makes rd a reader that will see the records written from now on. If
 *  the writer is mid-record, waits (a bounded number of tries) for it to
 *  finish. */
void rill_ring_bcast_join(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd);

/** Makes rd a reader that starts at the oldest record still in the ring. */
void rill_ring_bcast_join_oldest(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd);

/** Copies the next record into buf (cap bytes), with its payload length in
 *  *len and type in *type. 0 on success; RILL_EAGAIN when there is nothing
 *  new; RILL_ELAGGED when the writer overwrote the next record (rd moved to
 *  the oldest whole record, rd->lost_records and rd->lost_bytes say what
 *  was skipped; call again to read on); RILL_EMSGSIZE when cap is too small
 *  (*len says what is needed, the record stays next); RILL_ECORRUPT when a
 *  header the writer is not overwriting is impossible. A lapped reader
 *  whose oldest record is still being overwritten after a short wait (the
 *  writer was preempted mid-record, or died there) gets RILL_EAGAIN and
 *  stays where it is: the next call retries. */
int rill_ring_bcast_read(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd, void *buf,
                         size_t cap, size_t *len, int32_t *type);

/** rill_ring_bcast_read without moving on: copies the first min(cap, len)
 *  bytes of the next record's payload, with its full length in *len, and
 *  leaves rd on it (a merge looks at each ring's next record this way).
 *  Returns as read does, except that a short cap is not RILL_EMSGSIZE. A
 *  lapped reader still moves to the oldest record and gets RILL_ELAGGED. */
int rill_ring_bcast_peek(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd, void *buf,
                         size_t cap, size_t *len, int32_t *type);

#ifdef __cplusplus
}
#endif
#endif /* RILL_RING_H */
