/*
 * Retention: whole segments dropped from the front, never the one being
 * written, while what is left still meets each limit (bytes, count, age).
 * It runs after a roll (the appender that rolled) or when asked, and when
 * an append is refused room. The manifest is rewritten before the files go,
 * so a crash between leaves files below first, which open deletes.
 */
#include <stdio.h>
#include <string.h>

#include "log/log_internal.h"

/* Bytes of records in g, and the timestamp of its last record (0 if none). */
static uint64_t seg_bytes_used(const struct seg *g) { return g->end - LOG_HDR; }

/* The entry is checked against its record like any read: the index is
 * bytes from disk (0 if it does not hold, which keeps the segment). */
static uint64_t seg_last_ts(const struct seg *g) {
  if (!g->count)
    return 0;
  uint32_t off, len;
  memcpy(&off, g->imap + LOG_HDR + 4 * (g->count - 1), 4);
  if (log_rec_check(g->map, seg_len(g), off, g->base + g->count - 1, false, &len) != 0)
    return 0;
  uint64_t ts;
  memcpy(&ts, g->map + off + 16, 8);
  return ts;
}

int rill_log_retain(rill_log_t *l) {
  if (l->o.read_only)
    return rill__err(RILL_EPERM, "log %s: opened read-only", l->path);
  pthread_mutex_lock(&l->retain_lock);
  /* Decide under the append lock, which keeps the segments' counts still;
   * whole segments only, never the one being written; and keep at least
   * what each limit asks (a segment goes only if what is left still
   * meets the limit), as Kafka's retention does. */
  pthread_mutex_lock(&l->lock);
  uint64_t total = 0, now = rill_time_wall_ns();
  for (size_t i = 0; i < l->nsegs; i++)
    total += seg_bytes_used(l->segs[i]);
  size_t drop = 0;
  for (; drop + 1 < l->nsegs; drop++) {
    struct seg *g = l->segs[drop];
    uint64_t left_recs = l->next - l->segs[drop + 1]->base;
    uint64_t left_bytes = total - seg_bytes_used(g);
    bool by_count = l->o.retain_count && left_recs >= l->o.retain_count;
    bool by_bytes = l->o.retain_bytes && left_bytes >= l->o.retain_bytes;
    uint64_t ts = seg_last_ts(g);
    bool by_age = l->o.retain_age_ns && ts && ts < now && now - ts > l->o.retain_age_ns;
    if (!by_count && !by_bytes && !by_age)
      break;
    total = left_bytes;
  }
  if (!drop) {
    pthread_mutex_unlock(&l->lock);
    pthread_mutex_unlock(&l->retain_lock);
    return 0;
  }
  struct seg *gone[64];
  size_t ng = drop < 64 ? drop : 64; /* the rest go on the next pass */
  pthread_rwlock_wrlock(&l->segs_lock);
  memcpy(gone, l->segs, ng * sizeof *gone);
  memmove(l->segs, l->segs + ng, (l->nsegs - ng) * sizeof *l->segs);
  l->nsegs -= ng;
  uint64_t first = l->segs[0]->base;
  /* Release: readers that see the new first no longer look below it. */
  __atomic_store_n(&l->first, first, __ATOMIC_RELEASE);
  pthread_rwlock_unlock(&l->segs_lock);
  pthread_mutex_unlock(&l->lock);
  /* The manifest first, then the files: a crash between leaves files below
   * first, which open deletes. Readers' slices keep the mappings. */
  int rc = rill__log_manifest_write(l, first), mrc = rc;
  for (size_t k = 0; k < ng; k++) {
    /* A file that cannot be deleted now is below first: the next open
     * deletes it. The first such error is returned. */
    if (!mrc) {
      int e = rill__log_seg_unlink(l, gone[k]->base);
      if (!rc)
        rc = e;
    }
    rill_buf_release(&gone[k]->whole);
  }
  pthread_mutex_unlock(&l->retain_lock);
  return rc;
}

/* An append refused room (RILL_ENOSPC): retention, when the topic has
 * any, may drop old segments now. It runs after a roll, and a roll
 * refused for want of room never comes, so without this a topic whose
 * budget or disk is full would keep its old segments, and stay full,
 * forever. True when it dropped some (try again); otherwise the refusal's
 * message stays. The lock is not held. */
bool rill__log_retain_for_room(rill_log_t *l) {
  if (!l->o.retain_bytes && !l->o.retain_count && !l->o.retain_age_ns)
    return false;
  char msg[512];
  snprintf(msg, sizeof msg, "%s", rill_errmsg());
  uint64_t first = ld(&l->first);
  rill_log_retain(l); /* its own error, if any, matters less than the refusal */
  if (ld(&l->first) != first)
    return true;
  rill__err(RILL_ENOSPC, "%s", msg);
  return false;
}
