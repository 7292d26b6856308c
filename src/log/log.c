/*
 * The durable log: one topic's segments, index files, manifest and lock
 * (docs/FORMATS.md, "Log").
 *
 * Writing. Appends take `lock` (a mutex: appenders are any threads), copy
 * header and payload into the mapping of the last segment, store the index
 * entry, and publish with a store of `next`. A segment's file grows (rill__log_seg_grow)
 * before a record that needs the room is written, so writing through the
 * mapping never meets a full disk or the end of the file; a record that
 * does not fit the segment seals it (synced and checkpointed) and starts
 * the next. Both are where RILL_ENOSPC can come from, before any byte of
 * the record is written.
 *
 * Reading. Records below `next` are complete: next is stored with release
 * after the record and its index entry, and readers load it with acquire.
 * Readers find the segment under `segs_lock` (read side) and take a slice
 * of the segment's whole view before dropping it, so a segment that
 * retention or close lets go stays mapped as long as a slice lives (the
 * view's release callback unmaps it).
 *
 * Syncing. One syncer at a time leads a round (the `syncing` flag): it
 * notes how far records go (next), fdatasyncs the last segment (a roll
 * syncs the segment it seals, so only the last can hold unsynced
 * records) and stores `durable`. Group commit is that and nothing more:
 * an appender under RILL_LOG_SYNC_GROUP needs its own record durable;
 * while a round runs, the others sleep on `sync_word` and most find their
 * record covered when it ends. Index checkpoints are written at rolls,
 * open and close, after syncing the segment and its index.
 *
 * Waking. Tail waiters spin briefly (a futex wake costs more than the 2 µs
 * append-to-subscriber budget), then count themselves in `sleepers` and
 * sleep on `wake`. next and durable are stored seq_cst and sleepers loaded
 * seq_cst after them, against the waiters' seq_cst increment and reload:
 * with both sides sequentially consistent one always sees the other, so no
 * wakeup is lost (the cost is one locked store per append).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "log/format.h"
#include "log/log_internal.h"
#include "rill/log.h"

#define DEFAULT_SEGMENT ((uint64_t)128 << 20)
#define MIN_SEGMENT     ((uint64_t)64 << 10)
#define MAX_SEGMENT     ((uint64_t)2 << 30)

#define MAX_TOPIC 200u

/* ---- open, close ----------------------------------------------------------- */

static bool topic_ok(const char *t) { return rill__name_ok(t, strlen(t), MAX_TOPIC); }

static int check_opts(rill_log_opts_t *o) {
  if (!o->sync_every)
    o->sync_every = 1000;
  if (!o->sync_interval_ns)
    o->sync_interval_ns = 10000000;
  if (o->segment_bytes &&
      (o->segment_bytes % 4096 || o->segment_bytes < MIN_SEGMENT || o->segment_bytes > MAX_SEGMENT))
    return rill__err(RILL_EINVAL,
                     "log: segment_bytes %llu is not a multiple of 4096 in 64 KiB..2 GiB",
                     (unsigned long long)o->segment_bytes);
  if ((unsigned)o->sync > RILL_LOG_SYNC_GROUP)
    return rill__err(RILL_EINVAL, "log: unknown sync policy %d", (int)o->sync);
  if ((unsigned)o->on_corrupt > RILL_LOG_CORRUPT_SKIP)
    return rill__err(RILL_EINVAL, "log: unknown on_corrupt %d", (int)o->on_corrupt);
  return 0;
}

static void log_free(rill_log_t *l) {
  for (size_t i = 0; i < l->nsegs; i++)
    rill_buf_release(&l->segs[i]->whole);
  rill__free(l->segs);
  if (l->lock_fd >= 0)
    close(l->lock_fd); /* drops the OFD lock */
  if (l->dir_fd >= 0)
    close(l->dir_fd);
  pthread_mutex_destroy(&l->lock);
  pthread_mutex_destroy(&l->ckpt_lock);
  pthread_mutex_destroy(&l->retain_lock);
  pthread_rwlock_destroy(&l->segs_lock);
  rill__free(l->path);
  rill__free(l);
}

int rill_log_open(rill_log_t **out, const char *dir, const char *topic,
                  const rill_log_opts_t *opts) {
  if (!out || !dir || !topic)
    return rill__err(RILL_EINVAL, "log: NULL out, dir or topic");
  *out = NULL;
  rill_log_opts_t o = opts ? *opts : (rill_log_opts_t){0};
  int rc = check_opts(&o);
  if (rc)
    return rc;
  if (!topic_ok(topic))
    return rill__err(RILL_EINVAL,
                     "log: topic '%.40s' is not 1..200 of [A-Za-z0-9._-], not "
                     "starting with '.'",
                     topic);
  rill_log_t *l = rill__calloc(1, sizeof *l);
  if (!l)
    return rill__err(RILL_ENOMEM, "log: no memory");
  if (o.read_only)
    o.budget = NULL; /* it grows and deletes nothing */
  l->o = o;
  l->dir_fd = l->lock_fd = -1;
  pthread_mutex_init(&l->lock, NULL);
  pthread_mutex_init(&l->ckpt_lock, NULL);
  pthread_mutex_init(&l->retain_lock, NULL);
  pthread_rwlock_init(&l->segs_lock, NULL);
  size_t plen = strlen(dir) + 1 + strlen(topic) + 1;
  l->path = rill__malloc(plen);
  if (!l->path) {
    rc = rill__err(RILL_ENOMEM, "log: no memory");
    goto undo_l;
  }
  snprintf(l->path, plen, "%s/%s", dir, topic);
  if (!o.read_only && !o.no_create) {
    if (mkdir(dir, 0755) && errno != EEXIST) {
      rc = rill__err_errno("log: mkdir %s", dir);
      goto undo_l;
    }
    if (mkdir(l->path, 0755) && errno != EEXIST) {
      rc = rill__err_errno("log: mkdir %s", l->path);
      goto undo_l;
    }
  }
  l->dir_fd = open(l->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (l->dir_fd < 0) {
    rc = errno == ENOENT ? rill__err(RILL_ENOENT, "log: no topic %s", l->path)
                         : rill__err_errno("log: open %s", l->path);
    goto undo_l;
  }
  if (!o.read_only && (rc = rill__log_take_lock(l)) != 0)
    goto undo_l;
  uint64_t first = 0;
  rc = rill__log_manifest_read(l, &l->seg_bytes, &first);
  if (rc == RILL_ENOENT) {
    if (o.read_only || o.no_create) {
      rc = rill__err(RILL_ENOENT, "log: %s has no MANIFEST", l->path);
      goto undo_l;
    }
    l->seg_bytes = o.segment_bytes ? o.segment_bytes : DEFAULT_SEGMENT;
    if ((rc = rill__log_manifest_write(l, 0)) != 0)
      goto undo_l;
  } else if (rc) {
    goto undo_l;
  }
  if (!o.read_only)
    unlinkat(l->dir_fd, "MANIFEST.tmp", 0);
  l->recovering = true;
  rc = rill__log_recover(l, first);
  l->recovering = false;
  if (rc)
    goto undo_l;
  if (l->nsegs == 0) {
    if (o.read_only) {
      rc = rill__err(RILL_ENOENT, "log: %s has no segments", l->path);
      goto undo_l;
    }
    struct seg *g = NULL;
    if ((rc = rill__log_seg_create(l, first, &g)) != 0)
      goto undo_l;
    if ((rc = rill__log_seg_view(l, g)) != 0) {
      rill__log_seg_discard(l, g);
      goto undo_l;
    }
    if ((rc = rill__log_segs_push(l, g)) != 0) {
      rill_buf_release(&g->whole);
      goto undo_l;
    }
  }
  struct seg *last = l->segs[l->nsegs - 1];
  l->first = l->segs[0]->base > first ? l->segs[0]->base : first;
  l->next = last->base + last->count;
  l->durable = l->next;
  l->mono_at = rill_time_ns();
  l->wall_at = rill_time_wall_ns();
  l->last_sync_ns = rill_time_ns();
  *out = l;
  return 0;
undo_l:
  log_free(l);
  return rc;
}

int rill_log_close(rill_log_t *l) {
  if (!l)
    return 0;
  __atomic_store_n(&l->closing, 1, __ATOMIC_SEQ_CST);
  rill__futex_bump(&l->wake);
  int rc = 0;
  if (!l->o.read_only) {
    /* The checkpoint too, so the next open scans nothing. */
    rc = rill_log_sync(l);
    struct seg *g = l->segs[l->nsegs - 1];
    int e = rill__log_seg_sync(l, g, g->count, g->end);
    if (!rc)
      rc = e;
  }
  /* Waiters leave once they see closing; wait for them before freeing. */
  while (__atomic_load_n(&l->sleepers, __ATOMIC_ACQUIRE)) {
    rill__futex_bump(&l->wake);
    sched_yield();
  }
  log_free(l);
  return rc;
}

/* ---- appending --------------------------------------------------------------- */

uint32_t rill_log_max_payload(const rill_log_t *l) {
  uint64_t m = l->seg_bytes - LOG_HDR - LOG_REC_HDR;
  return m > UINT32_MAX ? UINT32_MAX : (uint32_t)m;
}

/* Seals the last segment (synced, checkpointed) and starts the next. */
static int roll(rill_log_t *l) {
  struct seg *g = l->segs[l->nsegs - 1];
  int rc = rill__log_seg_sync(l, g, g->count, g->end);
  if (rc)
    return rc;
  struct seg *n;
  if ((rc = rill__log_seg_create(l, g->base + g->count, &n)) != 0)
    return rc;
  if ((rc = rill__log_seg_view(l, n)) != 0) {
    rill__log_seg_discard(l, n);
    return rc;
  }
  pthread_rwlock_wrlock(&l->segs_lock);
  rc = rill__log_segs_push(l, n);
  pthread_rwlock_unlock(&l->segs_lock);
  if (rc)
    rill_buf_release(&n->whole);
  else if (l->o.retain_bytes || l->o.retain_count || l->o.retain_age_ns)
    __atomic_store_n(&l->retain_due, 1, __ATOMIC_RELAXED);
  return rc;
}

/* Room for a record of len payload bytes in the last segment (rolling if
 * needed) and for its index entry. Under lock. */
static int make_room(rill_log_t *l, uint32_t len, struct seg **out) {
  if (RILL_UNLIKELY(len > rill_log_max_payload(l)))
    return rill__err(RILL_EMSGSIZE, "log %s: a %u-byte record, segments take at most %u", l->path,
                     len, rill_log_max_payload(l));
  struct seg *g = l->segs[l->nsegs - 1];
  uint64_t need = LOG_REC_HDR + RILL__ALIGN_UP((uint64_t)len, 8u);
  if (RILL_UNLIKELY(g->end + need > l->seg_bytes)) {
    int rc = roll(l);
    if (rc)
      return rc;
    g = l->segs[l->nsegs - 1];
  }
  /* Both files usually have room already: the growth is a call only
   * when it is due, a few times per segment. */
  int rc;
  if (RILL_UNLIKELY(g->end + need > g->size) && (rc = rill__log_seg_grow(l, g, g->end + need)) != 0)
    return rc;
  if (RILL_UNLIKELY(LOG_HDR + 4 * ((uint64_t)g->count + 1) > g->idx_alloc) &&
      (rc = rill__log_idx_room(l, g, g->count)) != 0)
    return rc;
  *out = g;
  return 0;
}

#define WALL_ANCHOR_NS 1000000u /* how old the wall-clock reading under a timestamp may be */

/* The record's timestamp: CLOCK_REALTIME, as the format promises. Read
 * afresh at most every WALL_ANCHOR_NS, and in between moved on by the TSC
 * clock: a step of the wall clock shows in the timestamps within 1 ms, and
 * drift between the two clocks over 1 ms is under a microsecond. Measured
 * (ad hoc, this 2-vCPU VM, tsc clocksource): clock_gettime(CLOCK_REALTIME)
 * 21 ns a call, rill_time_ns 9-12 ns; 64-byte appends (best of 5 x 1M,
 * /tmp) took 82-83 ns with the old offset, 85-88 ns with this, 100-139 ns
 * reading the wall clock on each. (It was a TSC offset taken once at
 * open: days of drift, and blind to clock steps.) Under lock. */
static inline uint64_t rec_time(rill_log_t *l) {
  uint64_t now = rill_time_ns();
  if (RILL_UNLIKELY(now - l->mono_at >= WALL_ANCHOR_NS)) {
    l->mono_at = now;
    l->wall_at = rill_time_wall_ns();
    return l->wall_at;
  }
  return l->wall_at + (now - l->mono_at);
}

/* Writes the header of the record at g->end (payload already in place),
 * its index entry, and moves the segment on. Returns its seq. */
static uint64_t seal(rill_log_t *l, struct seg *g, uint32_t len) {
  uint64_t seq = g->base + g->count;
  uint8_t *rec = g->map + g->end;
  log_rec_seal(rec, len, seq, rec_time(l));
  uint32_t off = (uint32_t)g->end;
  memcpy(g->imap + LOG_HDR + 4 * g->count, &off, 4);
  g->end += LOG_REC_HDR + RILL__ALIGN_UP((uint64_t)len, 8u);
  g->count++;
  return seq;
}

static void publish(rill_log_t *l, uint64_t next) {
  /* seq_cst: pairs with the waiters' seq_cst increment of sleepers (see the
   * file comment); also a release, so the record is visible with next. */
  __atomic_store_n(&l->next, next, __ATOMIC_SEQ_CST);
  if (l->o.sync == RILL_LOG_SYNC_NEVER && __atomic_load_n(&l->sleepers, __ATOMIC_SEQ_CST))
    rill__futex_bump(&l->wake);
}

/* After an append (lock dropped): the sync the policy asks for. due is
 * what make_due said under the lock. */
static int apply_policy(rill_log_t *l, uint64_t seq, bool due) {
  retain_if_due(l);
  if (l->o.sync == RILL_LOG_SYNC_GROUP || due)
    return rill__log_sync_to(l, seq + 1);
  return 0;
}

/* Under lock, after `n` records: whether the policy wants a sync now. */
RILL_INLINE bool make_due(rill_log_t *l, uint64_t n) {
  switch (l->o.sync) {
  case RILL_LOG_SYNC_EVERY_N:
    l->appended_since_sync += n;
    if (l->appended_since_sync < l->o.sync_every)
      return false;
    l->appended_since_sync = 0;
    return true;
  case RILL_LOG_SYNC_INTERVAL: {
    uint64_t now = rill_time_ns();
    if (now - l->last_sync_ns < l->o.sync_interval_ns)
      return false;
    l->last_sync_ns = now;
    return true;
  }
  default: return false;
  }
}

int rill_log_appendv(rill_log_t *l, const rill_iov_t *iov, size_t n, uint64_t *seq) {
  if (RILL_UNLIKELY(l->o.read_only))
    return rill__err(RILL_EPERM, "log %s: opened read-only", l->path);
  uint64_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += iov[i].len;
  if (RILL_UNLIKELY(len > UINT32_MAX))
    return rill__err(RILL_EMSGSIZE, "log %s: a record of %llu bytes", l->path,
                     (unsigned long long)len);
  bool retried = false;
again:
  pthread_mutex_lock(&l->lock);
  struct seg *g = NULL;
  int rc = make_room(l, (uint32_t)len, &g);
  if (RILL_UNLIKELY(rc)) {
    pthread_mutex_unlock(&l->lock);
    if (rc == RILL_ENOSPC && !retried && rill__log_retain_for_room(l)) {
      retried = true;
      goto again;
    }
    return rc;
  }
  uint8_t *p = g->map + g->end + LOG_REC_HDR;
  for (size_t i = 0; i < n; i++) {
    if (iov[i].len) /* an empty piece may have no buffer */
      memcpy(p, iov[i].data, iov[i].len);
    p += iov[i].len;
  }
  uint64_t s = seal(l, g, (uint32_t)len);
  bool due = make_due(l, 1);
  publish(l, s + 1);
  pthread_mutex_unlock(&l->lock);
  if (seq)
    *seq = s;
  return apply_policy(l, s, due);
}

int rill_log_append(rill_log_t *l, const void *data, uint32_t len, uint64_t *seq) {
  rill_iov_t one = {data, len};
  return rill_log_appendv(l, &one, 1, seq);
}

int rill_log_append_batch(rill_log_t *l, const rill_iov_t *recs, size_t n, uint64_t *first,
                          size_t *done) {
  if (done)
    *done = 0;
  if (RILL_UNLIKELY(l->o.read_only))
    return rill__err(RILL_EPERM, "log %s: opened read-only", l->path);
  for (size_t i = 0; i < n; i++)
    if (recs[i].len > rill_log_max_payload(l))
      return rill__err(RILL_EMSGSIZE, "log %s: record %zu of the batch is %u bytes, over %u",
                       l->path, i, recs[i].len, rill_log_max_payload(l));
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += LOG_REC_HDR + RILL__ALIGN_UP((uint64_t)recs[i].len, 8u);
  bool retried = false;
again:
  pthread_mutex_lock(&l->lock);
  uint64_t s0 = l->next, s = s0;
  size_t i = 0;
  int rc = 0;
  /* All or nothing whenever the batch fits in one segment: one that would
   * straddle the end of this one starts the next, so no roll comes in the
   * middle, and a record refused room (a full disk or budget) takes the
   * ones before it back. Nothing is visible before publish, below. */
  struct seg *g0 = l->segs[l->nsegs - 1];
  if (g0->count && g0->end + total > l->seg_bytes && LOG_HDR + total <= l->seg_bytes)
    rc = roll(l);
  g0 = l->segs[l->nsegs - 1];
  uint64_t end0 = g0->end, count0 = g0->count;
  for (; !rc && i < n; i++) {
    struct seg *g = NULL;
    if ((rc = make_room(l, recs[i].len, &g)) != 0)
      break;
    if (recs[i].len)
      memcpy(g->map + g->end + LOG_REC_HDR, recs[i].data, recs[i].len);
    s = seal(l, g, recs[i].len);
  }
  if (rc && i && l->segs[l->nsegs - 1] == g0 && g0->synced <= count0) {
    /* Zeroed, so recovery finds no record there either (no checkpoint
     * covers them: a roll that failed after sealing g0 would have). */
    memset(g0->map + end0, 0, g0->end - end0);
    g0->end = end0;
    g0->count = count0;
    i = 0;
  }
  if (rc == RILL_ENOSPC && !i && !retried) {
    pthread_mutex_unlock(&l->lock);
    retried = true;
    if (rill__log_retain_for_room(l))
      goto again;
    if (first)
      *first = s0;
    return rc;
  }
  bool due = i && make_due(l, i);
  if (i)
    publish(l, s + 1);
  pthread_mutex_unlock(&l->lock);
  if (first)
    *first = s0;
  if (done)
    *done = i;
  if (rc)
    return rc;
  return n ? apply_policy(l, s, due) : 0;
}

int rill_log_reserve(rill_log_t *l, uint32_t len, void **data) {
  if (RILL_UNLIKELY(l->o.read_only))
    return rill__err(RILL_EPERM, "log %s: opened read-only", l->path);
  pthread_mutex_lock(&l->lock);
  struct seg *g = NULL;
  int rc = make_room(l, len, &g);
  if (rc) {
    pthread_mutex_unlock(&l->lock);
    return rc;
  }
  l->reserved = true;
  l->res_len = len;
  *data = g->map + g->end + LOG_REC_HDR;
  return 0; /* lock held until commit or abort */
}

int rill_log_commit(rill_log_t *l, uint64_t *seq) {
  if (!l->reserved)
    return rill__err(RILL_EINVAL, "log %s: commit without a reservation", l->path);
  struct seg *g = l->segs[l->nsegs - 1];
  uint64_t s = seal(l, g, l->res_len);
  l->reserved = false;
  bool due = make_due(l, 1);
  publish(l, s + 1);
  pthread_mutex_unlock(&l->lock);
  if (seq)
    *seq = s;
  return apply_policy(l, s, due);
}

void rill_log_cancel(rill_log_t *l) {
  if (!l->reserved)
    return;
  /* The payload bytes written stay past end: zero them, so recovery and
   * the next record never see them. */
  struct seg *g = l->segs[l->nsegs - 1];
  memset(g->map + g->end + LOG_REC_HDR, 0, l->res_len);
  l->reserved = false;
  pthread_mutex_unlock(&l->lock);
}

/* ---- stats ------------------------------------------------------------------------ */

void rill__log_count_skipped(rill_log_t *l, uint64_t n) {
  __atomic_fetch_add(&l->skipped, n, __ATOMIC_RELAXED);
}

void rill_log_stats(const rill_log_t *cl, rill_log_stats_t *st) {
  /* The lock is taken and given back: the log is the same after. */
  rill_log_t *l = (rill_log_t *)cl;
  memset(st, 0, sizeof *st);
  st->first = ld(&l->first);
  st->next = ld(&l->next);
  st->durable = ld(&l->durable);
  pthread_mutex_lock(&l->lock);
  st->segments = l->nsegs;
  for (size_t i = 0; i < l->nsegs; i++) {
    st->bytes += l->segs[i]->end - LOG_HDR;
    st->disk_bytes += seg_len(l->segs[i]) + l->segs[i]->idx_alloc;
  }
  pthread_mutex_unlock(&l->lock);
  st->syncs = __atomic_load_n(&l->syncs, __ATOMIC_RELAXED);
  st->skipped = __atomic_load_n(&l->skipped, __ATOMIC_RELAXED);
  st->recovered_torn = l->torn;
}
