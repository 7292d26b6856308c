/*
 * Appending. Appends take `lock` (a mutex: appenders are any threads), copy
 * header and payload into the mapping of the last segment, store the index
 * entry, and publish with a store of `next`. A segment's file grows
 * (rill__log_seg_grow) before a record that needs the room is written, so
 * writing through the mapping never meets a full disk or the end of the
 * file; a record that does not fit the segment seals it (synced and
 * checkpointed) and starts the next. Both are where RILL_ENOSPC can come
 * from, before any byte of the record is written. What the sync policy asks
 * for follows, with the lock dropped (sync.c).
 */
#include <stdio.h>
#include <string.h>

#include "log/log_internal.h"

#define WALL_ANCHOR_NS 1000000u /* how old the wall-clock reading under a timestamp may be */

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

int rill_log_cancel(rill_log_t *l) {
  if (!l->reserved)
    return rill__err(RILL_EINVAL, "log %s: cancel without a reservation", l->path);
  /* The payload bytes written stay past end: zero them, so recovery and
   * the next record never see them. */
  struct seg *g = l->segs[l->nsegs - 1];
  memset(g->map + g->end + LOG_REC_HDR, 0, l->res_len);
  l->reserved = false;
  pthread_mutex_unlock(&l->lock);
  return 0;
}
