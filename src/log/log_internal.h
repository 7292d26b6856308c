/*
 * What the log's files share besides the on-disk format (log/format.h):
 * the handle and its segments, and the helpers the hot paths inline.
 * Functions one file of src/log calls in another are named rill__log_*
 * (never exported: cmake/librill.map).
 */
#ifndef RILL_LOG_INTERNAL_H
#define RILL_LOG_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/internal.h"
#include "log/format.h"
#include "rill/log.h"

struct seg {
  rill_buf_t whole; /* the log's view of the mapping; slices keep it alive */
  uint64_t base;
  uint8_t *map;  /* the segment, seg_bytes */
  uint8_t *imap; /* the index file's mapping, header included */
  size_t imap_len;
  int fd, ifd;
  /* File bytes of the segment, allocated: every record lies below it, and
   * nothing at or past it is ever touched (a page of the mapping wholly
   * past the end of the file is SIGBUS). The writer grows it under lock
   * before writing into the room; readers bound their reads by it. A
   * relaxed atomic: a reader only reads records below next, which was
   * stored with release after the growth that made room for them. */
  uint64_t size;
  /* Writer only (and recovery). */
  uint64_t count;     /* records */
  uint64_t end;       /* offset past the last record */
  uint64_t idx_alloc; /* index bytes allocated (file size) */
  uint64_t synced;    /* records covered by the last checkpoint */
  /* Read-only opens: offsets of the records recovery found past the
   * checkpoint, which the index may not hold yet (the writer rewrites
   * them when it recovers; a reader may not write). */
  uint32_t *tail_off;
  uint64_t tail_from, tail_n, tail_cap;
  /* Records whose check is known to hold, so a read need not hash them
   * again: those from checked_from on (found by recovery's scan, which
   * verifies each, or sealed by this handle from the bytes in place), and
   * the first `checked` ones (read in order and verified by earlier reads;
   * a hint, moved with relaxed atomics: the record bytes themselves are
   * published by next, and a reader that sees a stale count only hashes a
   * record once more). */
  uint64_t checked_from;
  uint64_t checked;
};

struct rill_log {
  rill_log_opts_t o;
  char *path;
  int dir_fd, lock_fd;
  uint64_t seg_bytes;
  /* Record timestamps (under lock): the wall clock read at wall_at, when
   * rill_time_ns said mono_at; see rec_time (append.c). */
  uint64_t wall_at, mono_at;

  pthread_mutex_t lock; /* appends */
  pthread_rwlock_t segs_lock;
  struct seg **segs;
  size_t nsegs, cap;

  uint64_t first, next, durable; /* atomics */
  uint32_t wake, sleepers;       /* tail waiters */
  int closing;

  int syncing;                  /* a leader is syncing (atomic) */
  uint32_t sync_word;           /* futex: bumped when a sync round ends */
  pthread_mutex_t ckpt_lock;    /* checkpoint writes: a roll and a sync may meet */
  uint64_t appended_since_sync; /* under lock */
  uint64_t last_sync_ns;        /* under lock */

  pthread_mutex_t retain_lock; /* one retention pass at a time */
  int retain_due;              /* a roll happened: the appender that rolled retains */

  bool recovering; /* open: growth is charged to the budget whatever its limit */
  bool reserved;   /* a reservation holds lock */
  uint32_t res_len;

  uint64_t syncs, skipped, torn; /* stats */
};

static inline uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* The bytes of g's file that may be read (see seg.size). */
static inline uint64_t seg_len(const struct seg *g) {
  return __atomic_load_n(&g->size, __ATOMIC_RELAXED);
}

/* A segment's file name: its base, zero-padded, and ext. */
static inline void seg_name(char *buf, size_t n, uint64_t base, const char *ext) {
  snprintf(buf, n, "%020llu.%s", (unsigned long long)base, ext);
}

/* ---- log.c ---- */

/* Counts n damaged records passed over by a reader of l (the stats'
 * skipped): a subscriber that steps past one says so there. */
void rill__log_count_skipped(rill_log_t *l, uint64_t n);

/* ---- segment.c ---- */

/* Appends g to l's segment list (under segs_lock's write side once
 * readers may look). */
int rill__log_segs_push(rill_log_t *l, struct seg *g);
/* Room in g's index for entry i, and in g's file for `need` bytes: each
 * grows the file when due (the callers on the hot path test that first),
 * RILL_ENOSPC when the disk or the budget refuses. */
int rill__log_idx_room(rill_log_t *l, struct seg *g, uint64_t i);
int rill__log_seg_grow(rill_log_t *l, struct seg *g, uint64_t need);
/* Maps g's files, already open (read-write with rw). */
int rill__log_seg_map(rill_log_t *l, struct seg *g, bool rw);
struct seg *rill__log_seg_alloc(void);
/* Frees a segment that never got its view. */
void rill__log_seg_discard(rill_log_t *l, struct seg *g);
/* Wraps g's mapping in its view, whose last slice unmaps it. */
int rill__log_seg_view(rill_log_t *l, struct seg *g);
/* Creates segment base, its files synced and small. */
int rill__log_seg_create(rill_log_t *l, uint64_t base, struct seg **out);
/* Syncs g's files, then checkpoints count records ending at end. */
int rill__log_seg_sync(rill_log_t *l, struct seg *g, uint64_t count, uint64_t end);
/* Deletes segment base's files, giving their bytes back to the budget. */
int rill__log_seg_unlink(rill_log_t *l, uint64_t base);

/* ---- manifest.c ---- */

/* Replaces MANIFEST with one saying records start at first. */
int rill__log_manifest_write(rill_log_t *l, uint64_t first);
/* Reads MANIFEST: 0, RILL_ENOENT when there is none, or why it cannot be
 * trusted. */
int rill__log_manifest_read(rill_log_t *l, uint64_t *seg_bytes, uint64_t *first);
/* Takes the topic's writer lock: RILL_EBUSY when another writer has it. */
int rill__log_take_lock(rill_log_t *l);

/* ---- recover.c ---- */

/* Lists the segments, drops those retired below first, opens and checks
 * the rest, and zeroes the last one's torn tail. */
int rill__log_recover(rill_log_t *l, uint64_t first);

/* ---- sync.c ---- */

/* Makes records below target (at least) durable: leads a sync round or
 * waits for the one under way. */
int rill__log_sync_to(rill_log_t *l, uint64_t target);

/* ---- retain.c ---- */

/* After an append refused room (RILL_ENOSPC, lock not held): true when
 * retention dropped segments, so the append may try again. */
bool rill__log_retain_for_room(rill_log_t *l);

/* After an append, outside the append lock: the roll asked for retention. */
static inline void retain_if_due(rill_log_t *l) {
  if (RILL_UNLIKELY(__atomic_load_n(&l->retain_due, __ATOMIC_RELAXED)) &&
      __atomic_exchange_n(&l->retain_due, 0, __ATOMIC_RELAXED))
    rill_log_retain(l);
}

#endif
