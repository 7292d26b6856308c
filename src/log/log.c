/*
 * The durable log: one topic's segments, index files, manifest and lock
 * (docs/FORMATS.md, "Log"). This file opens and closes a topic and counts
 * its stats; the rest is one idea a file, each opening with its design:
 *
 *   segment.c   a segment's files, their mappings and growth; the budget
 *   manifest.c  MANIFEST and the writer's LOCK
 *   recover.c   what open finds on disk, checked; a reader's refresh
 *   append.c    appends: room, seal, publish, batch, reserve/commit
 *   sync.c      sync rounds and group commit
 *   retain.c    retention
 *   read.c      reads, ranges, the iterator, waiting at the tail
 *   format.c    every on-disk byte, encoded and checked
 *   subscribe.c subscriber threads
 *
 * log_internal.h holds the handle and segment structs they share and the
 * helpers both hot paths inline.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log_internal.h"

#define DEFAULT_SEGMENT ((uint64_t)128 << 20)
#define MIN_SEGMENT     ((uint64_t)64 << 10)
#define MAX_SEGMENT     ((uint64_t)2 << 30)

#define MAX_TOPIC 200u

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
