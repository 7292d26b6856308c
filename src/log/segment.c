/*
 * A segment's two files (records, index), their mappings and their growth,
 * and the disk budget growth is charged to. Files grow by doubling,
 * before any byte that needs the room is written (rill__log_seg_grow,
 * rill__log_idx_room), so a full disk or budget is RILL_ENOSPC from here
 * and never a SIGBUS on a store through the mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log_internal.h"

#define SEG_START ((uint64_t)64 << 10) /* a new segment file's first allocation */
#define IDX_START ((uint64_t)4 << 10)  /* a new index file's */

/* Unmaps, closes and frees g, whose records' mapping is map_len bytes:
 * the view's release, or a segment that never got its view. */
static void seg_free(struct seg *g, size_t map_len) {
  if (g->map) {
    munmap(g->map, map_len);
    rill__count_unmap(map_len);
  }
  if (g->imap) {
    munmap(g->imap, g->imap_len);
    rill__count_unmap(g->imap_len);
  }
  if (g->fd >= 0)
    close(g->fd);
  if (g->ifd >= 0)
    close(g->ifd);
  rill__free(g->tail_off);
  rill__free(g);
}

/* The view's release: the last slice of a segment unmaps and closes it. */
static void seg_unmap(void *ctx, void *data, size_t len) {
  struct seg *g = ctx;
  g->map = data;
  seg_free(g, len);
}

int rill__log_segs_push(rill_log_t *l, struct seg *g) {
  if (l->nsegs == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    struct seg **n = rill__realloc(l->segs, cap * sizeof *n);
    if (!n)
      return rill__err(RILL_ENOMEM, "log: no memory for the segment list");
    l->segs = n;
    l->cap = cap;
  }
  l->segs[l->nsegs++] = g;
  return 0;
}

/* ---- the disk budget ----------------------------------------------------- */

/* The budget's counter orders nothing (it is a count of bytes; the files
 * are what they are), so relaxed atomics throughout. A growth takes its
 * bytes with a compare-and-swap that checks the limit against the value
 * it replaces, so two logs racing for the last room cannot both have it,
 * and a refused growth leaves no transient over-count that could refuse
 * another. Growth is rare (doubling), so the loop costs nothing measurable. */
uint64_t rill_log_budget_used(const rill_log_budget_t *b) {
  return __atomic_load_n(&b->used, __ATOMIC_RELAXED);
}

void rill_log_budget_charge(rill_log_budget_t *b, uint64_t n) {
  __atomic_fetch_add(&b->used, n, __ATOMIC_RELAXED);
}

void rill_log_budget_credit(rill_log_budget_t *b, uint64_t n) {
  uint64_t was = __atomic_load_n(&b->used, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(&b->used, &was, was > n ? was - n : 0, true, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED))
    ;
}

/* Takes n bytes of growth from l's budget: false when that would pass its
 * limit (recovery at open takes them whatever the limit: what it grows
 * rebuilds what was there). */
static bool budget_take(rill_log_t *l, uint64_t n) {
  rill_log_budget_t *b = l->o.budget;
  if (!b || !n)
    return true;
  uint64_t was = __atomic_load_n(&b->used, __ATOMIC_RELAXED);
  do {
    if (b->limit && !l->recovering && (was > b->limit || n > b->limit - was))
      return false;
  } while (!__atomic_compare_exchange_n(&b->used, &was, was + n, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
  return true;
}

static void budget_give(rill_log_t *l, uint64_t n) {
  if (l->o.budget && n)
    rill_log_budget_credit(l->o.budget, n);
}

/* The error of a growth the budget refused: it names the limit. */
static int budget_full(rill_log_t *l, const char *file, uint64_t base, uint64_t more) {
  const rill_log_budget_t *b = l->o.budget;
  return rill__err(RILL_ENOSPC,
                   "%s (%llu bytes) is reached: log %s: %s %llu cannot grow by %llu bytes",
                   b->what ? b->what : "the disk budget", (unsigned long long)b->limit, l->path,
                   file, (unsigned long long)base, (unsigned long long)more);
}

/* ---- files ------------------------------------------------------------- */

/* Makes sure the index file has room for entry i: grows it with
 * fallocate, doubling from IDX_START up to its mapping, so an entry store
 * never meets a full disk and an index costs little until it is used. */
int rill__log_idx_room(rill_log_t *l, struct seg *g, uint64_t i) {
  uint64_t need = LOG_HDR + 4 * (i + 1);
  if (need <= g->idx_alloc)
    return 0;
  /* The mapping has room for the most records a segment can hold; a count
   * past that came from somewhere recovery should have refused. */
  if (RILL_UNLIKELY(need > g->imap_len))
    return rill__err(RILL_ECORRUPT, "log %s: segment %llu: entry %llu is past its index", l->path,
                     (unsigned long long)g->base, (unsigned long long)i);
  uint64_t to = RILL__ALIGN_UP(need, (uint64_t)4096);
  if (to < 2 * g->idx_alloc)
    to = 2 * g->idx_alloc;
  if (to < IDX_START)
    to = IDX_START;
  if (to > g->imap_len)
    to = g->imap_len;
  bool took = budget_take(l, to - g->idx_alloc);
  if (!took && need < to)
    took = budget_take(l, (to = need) - g->idx_alloc);
  if (!took)
    return budget_full(l, "index of segment", g->base, need - g->idx_alloc);
  int e = posix_fallocate(g->ifd, 0, (off_t)to);
  if (e == ENOSPC && need < to) { /* as rill__log_seg_grow: take what fits */
    budget_give(l, to - need);
    e = posix_fallocate(g->ifd, 0, (off_t)(to = need));
  }
  if (e) {
    budget_give(l, to - g->idx_alloc);
    return rill__err(-e, "log %s: index of segment %llu cannot grow to %llu bytes: %s", l->path,
                     (unsigned long long)g->base, (unsigned long long)to, strerror(e));
  }
  g->idx_alloc = to;
  return 0;
}

/* Makes sure g's file holds `need` bytes: grows it with fallocate,
 * doubling up to the segment size, before any byte of what needs the room
 * is written, so a full disk is RILL_ENOSPC here, never a SIGBUS on a
 * store through the mapping. Under lock (or while creating g). */
int rill__log_seg_grow(rill_log_t *l, struct seg *g, uint64_t need) {
  uint64_t size = g->size;
  if (RILL_LIKELY(need <= size))
    return 0;
  uint64_t to = RILL__ALIGN_UP(need, (uint64_t)4096);
  if (to < 2 * size)
    to = 2 * size;
  if (to < SEG_START)
    to = SEG_START;
  if (to > l->seg_bytes)
    to = l->seg_bytes;
  /* Short of room for the doubling (on the disk or in the budget): the
   * room this record needs may still be there, and a nearly full disk
   * should take what fits. */
  uint64_t least = RILL__ALIGN_UP(need, (uint64_t)4096);
  bool took = budget_take(l, to - size);
  if (!took && least < to)
    took = budget_take(l, (to = least) - size);
  if (!took)
    return budget_full(l, "segment", g->base, least - size);
  int e = posix_fallocate(g->fd, 0, (off_t)to);
  if (e == ENOSPC && least < to) {
    budget_give(l, to - least);
    to = least;
    e = posix_fallocate(g->fd, 0, (off_t)to);
  }
  if (e) {
    budget_give(l, to - size);
    return rill__err(-e, "log %s: segment %llu cannot grow to %llu bytes: %s", l->path,
                     (unsigned long long)g->base, (unsigned long long)to, strerror(e));
  }
  __atomic_store_n(&g->size, to, __ATOMIC_RELAXED);
  return 0;
}

/* Maps seg and idx files already open; validates nothing. */
int rill__log_seg_map(rill_log_t *l, struct seg *g, bool rw) {
  int prot = rw ? PROT_READ | PROT_WRITE : PROT_READ;
  g->map = mmap(NULL, l->seg_bytes, prot, MAP_SHARED, g->fd, 0);
  if (g->map == MAP_FAILED) {
    g->map = NULL;
    return rill__err_errno("log %s: mmap of segment %llu", l->path, (unsigned long long)g->base);
  }
  rill__count_map(l->seg_bytes);
  /* Room for the most entries a segment can have: the file behind it grows
   * as entries are written, and nothing past its end is touched. */
  g->imap_len = LOG_HDR + 4 * (l->seg_bytes / LOG_REC_HDR);
  g->imap = mmap(NULL, g->imap_len, prot, MAP_SHARED, g->ifd, 0);
  if (g->imap == MAP_FAILED) {
    g->imap = NULL;
    return rill__err_errno("log %s: mmap of index %llu", l->path, (unsigned long long)g->base);
  }
  rill__count_map(g->imap_len);
  return 0;
}

struct seg *rill__log_seg_alloc(void) {
  struct seg *g = rill__calloc(1, sizeof *g);
  if (g)
    g->fd = g->ifd = -1;
  return g;
}

/* Frees a segment that never got its view (a failed open or create). */
void rill__log_seg_discard(rill_log_t *l, struct seg *g) { seg_free(g, l->seg_bytes); }

int rill__log_seg_view(rill_log_t *l, struct seg *g) {
  int rc = rill_buf_wrap(&g->whole, g->map, l->seg_bytes, l->o.read_only ? RILL_BUF_RDONLY : 0,
                         seg_unmap, g);
  return rc;
}

/* Creates segment `base`: both files, small (they grow as records come),
 * headers written and synced, the directory synced. RILL_ENOSPC (nothing
 * left behind) when the disk cannot hold it. */
int rill__log_seg_create(rill_log_t *l, uint64_t base, struct seg **out) {
  char sname[32], iname[32];
  seg_name(sname, sizeof sname, base, "seg");
  seg_name(iname, sizeof iname, base, "idx");
  struct seg *g = rill__log_seg_alloc();
  if (!g)
    return rill__err(RILL_ENOMEM, "log: no memory for a segment");
  g->base = base;
  int rc;
  g->fd = openat(l->dir_fd, sname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (g->fd < 0) {
    rc = rill__err_errno("log %s: create %s", l->path, sname);
    goto undo_g;
  }
  g->ifd = openat(l->dir_fd, iname, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (g->ifd < 0) {
    rc = rill__err_errno("log %s: create %s", l->path, iname);
    goto undo_files;
  }
  if ((rc = rill__log_seg_grow(l, g, LOG_HDR)) != 0)
    goto undo_files;
  if ((rc = rill__log_seg_map(l, g, true)) != 0)
    goto undo_files;
  if ((rc = rill__log_idx_room(l, g, 0)) != 0)
    goto undo_files;
  log_seg_hdr_write(g->map, base, l->seg_bytes, rill_time_wall_ns());
  log_idx_hdr_write(g->imap, base);
  g->end = LOG_HDR;
  if (fdatasync(g->fd) || fdatasync(g->ifd) || fsync(l->dir_fd)) {
    rc = rill__err_errno("log %s: sync of new segment %s", l->path, sname);
    goto undo_files;
  }
  *out = g;
  return 0;
undo_files:
  unlinkat(l->dir_fd, sname, 0);
  unlinkat(l->dir_fd, iname, 0);
  budget_give(l, g->size + g->idx_alloc); /* what growing them took */
undo_g:
  rill__log_seg_discard(l, g);
  return rc;
}

/* fdatasyncs the segment and its index, then checkpoints `count` records
 * ending at `end`: a checkpoint only ever covers what is on disk. */
int rill__log_seg_sync(rill_log_t *l, struct seg *g, uint64_t count, uint64_t end) {
  if (fdatasync(g->fd) || fdatasync(g->ifd))
    return rill__err_errno("log %s: fdatasync of segment %llu", l->path,
                           (unsigned long long)g->base);
  pthread_mutex_lock(&l->ckpt_lock);
  if (count > g->synced) {
    log_idx_checkpoint(g->imap, g->base, count, end);
    g->synced = count;
  }
  pthread_mutex_unlock(&l->ckpt_lock);
  return 0;
}

/* Deletes one of segment base's files; its length goes back to the
 * budget. */
static int file_unlink(rill_log_t *l, uint64_t base, const char *ext) {
  char name[32];
  seg_name(name, sizeof name, base, ext);
  struct stat st;
  uint64_t len = l->o.budget && fstatat(l->dir_fd, name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
  if (unlinkat(l->dir_fd, name, 0)) {
    if (errno != ENOENT)
      return rill__err_errno("log %s: delete %s", l->path, name);
    return 0;
  }
  budget_give(l, len);
  return 0;
}

/* Deletes segment base's files (a missing index is fine: it may never
 * have been made). */
int rill__log_seg_unlink(rill_log_t *l, uint64_t base) {
  int rc = file_unlink(l, base, "seg");
  return rc ? rc : file_unlink(l, base, "idx");
}
