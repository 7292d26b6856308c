/*
 * Recovery: what open finds on disk made trustworthy again. The segments
 * are listed, those retention retired dropped, the rest opened and their
 * records found: the index is trusted up to a checkpoint the files can hold,
 * then each record past it is verified and its entry rewritten (a writer)
 * or its offset noted (a reader), and the last segment's torn tail zeroed.
 * A read-only handle does the same again for what its writer has added
 * since (rill_log_refresh).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log_internal.h"

/* Opens and maps an existing segment and checks its header. */
static int seg_open(rill_log_t *l, uint64_t base, struct seg **out) {
  char sname[32], iname[32];
  seg_name(sname, sizeof sname, base, "seg");
  seg_name(iname, sizeof iname, base, "idx");
  bool rw = !l->o.read_only;
  struct seg *g = rill__log_seg_alloc();
  if (!g)
    return rill__err(RILL_ENOMEM, "log: no memory for a segment");
  g->base = base;
  int rc;
  g->fd = openat(l->dir_fd, sname, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (g->fd < 0) {
    rc = rill__err_errno("log %s: open %s", l->path, sname);
    goto undo_g;
  }
  struct stat st;
  /* Files grow as records come, up to the segment size: any length from
   * a header to that is one a writer may leave. Whether a shorter one lost
   * records is for its checkpoint to say (seg_scan). */
  if (fstat(g->fd, &st) || (uint64_t)st.st_size < LOG_HDR || (uint64_t)st.st_size > l->seg_bytes) {
    rc = rill__err(RILL_ECORRUPT, "log %s: %s is %lld bytes, the topic's segments are 64..%llu",
                   l->path, sname, (long long)st.st_size, (unsigned long long)l->seg_bytes);
    goto undo_g;
  }
  g->size = (uint64_t)st.st_size;
  /* A missing index is rebuilt from the records (writer) or read around
   * (the reader scans instead). */
  g->ifd = openat(l->dir_fd, iname, (rw ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC, 0644);
  if (g->ifd < 0 && rw) {
    rc = rill__err_errno("log %s: open %s", l->path, iname);
    goto undo_g;
  }
  if (g->ifd >= 0) {
    if (fstat(g->ifd, &st)) {
      rc = rill__err_errno("log %s: stat %s", l->path, iname);
      goto undo_g;
    }
    g->idx_alloc = (uint64_t)st.st_size;
  }
  if (g->ifd < 0) {
    g->map = mmap(NULL, l->seg_bytes, PROT_READ, MAP_SHARED, g->fd, 0);
    if (g->map == MAP_FAILED) {
      g->map = NULL;
      rc = rill__err_errno("log %s: mmap %s", l->path, sname);
      goto undo_g;
    }
    rill__count_map(l->seg_bytes);
  } else if ((rc = rill__log_seg_map(l, g, rw)) != 0) {
    goto undo_g;
  }
  if ((rc = log_seg_hdr_check(g->map, base, l->seg_bytes, l->path)) != 0)
    goto undo_g;
  *out = g;
  return 0;
undo_g:
  rill__log_seg_discard(l, g);
  return rc;
}

/* Read-only opens: notes the offset of the next record past the
 * checkpoint, which the index may not hold (see tail_off). */
static int tail_note(struct seg *g, uint64_t off) {
  if (g->tail_n == g->tail_cap) {
    uint64_t cap = g->tail_cap ? 2 * g->tail_cap : 1024;
    uint32_t *n = rill__realloc(g->tail_off, cap * sizeof *n);
    if (!n)
      return rill__err(RILL_ENOMEM, "log: no memory");
    g->tail_off = n;
    g->tail_cap = cap;
  }
  g->tail_off[g->tail_n++] = (uint32_t)off;
  return 0;
}

/* Whether a checkpoint of c records ending at e, read from g's index with
 * its crc right, can be believed. The crc says only that these bytes were
 * written together; the count sizes every index access after it (an entry
 * store at 64 + 4 * count) and the end is where appends go on, so both are
 * held to what the files are: no more records than the segment could hold
 * (which also keeps 4 * c from wrapping), no more entries than the index
 * file and its mapping hold, an end inside the segment file with room for c
 * records, and the first and last entries must point at records whose
 * header (marker, sequence, length) puts the last one's end exactly at e.
 * The entries between are not walked (that is the scan the checkpoint
 * saves); each one is checked against its record when read. */
static bool ckpt_holds(rill_log_t *l, const struct seg *g, uint64_t c, uint64_t e) {
  if (c > (l->seg_bytes - LOG_HDR) / LOG_REC_HDR)
    return false;
  uint64_t idx_need = LOG_HDR + 4 * c;
  if (idx_need > g->imap_len || idx_need > g->idx_alloc)
    return false;
  if (e % 8 || e < LOG_HDR + LOG_REC_HDR * c || e > g->size)
    return false;
  if (c == 0)
    return e == LOG_HDR;
  uint32_t first, last, len;
  memcpy(&first, g->imap + LOG_HDR, 4);
  memcpy(&last, g->imap + LOG_HDR + 4 * (c - 1), 4);
  if (first != LOG_HDR || last >= e)
    return false;
  if (log_rec_check(g->map, g->size, last, g->base + c - 1, false, &len) != 0)
    return false;
  return last + LOG_REC_HDR + RILL__ALIGN_UP((uint64_t)len, 8u) == e;
}

/* The records of g: trusts the index up to a valid checkpoint, then
 * verifies record by record from there, rewriting their index entries (a
 * writer) or noting their offsets (a reader). Sets count and end; *stop
 * gets the offset where verification stopped. */
static int seg_scan(rill_log_t *l, struct seg *g, uint64_t *stop) {
  bool rw = !l->o.read_only;
  uint64_t count = 0, end = LOG_HDR;
  bool idx_ok =
      g->imap && g->idx_alloc >= LOG_HDR && log_idx_hdr_check(g->imap, g->base, l->path) == 0;
  if (idx_ok) {
    uint64_t c, e;
    /* A checkpoint whose crc holds but that the files cannot hold is not
     * trusted either: scan from the start. */
    if (log_idx_checkpoint_read(g->imap, g->base, &c, &e) == 0) {
      /* Records the checkpoint says were synced lie past the end of the
       * file: it was cut short, and what was cut may have been
       * acknowledged. That is for the user to know, not to guess. */
      if (e > g->size && e <= l->seg_bytes) {
        char sname[32];
        seg_name(sname, sizeof sname, g->base, "seg");
        return rill__err(RILL_ECORRUPT,
                         "log %s: %s is %llu bytes, its checkpoint says records reach %llu: the "
                         "file was cut short",
                         l->path, sname, (unsigned long long)g->size, (unsigned long long)e);
      }
      if (ckpt_holds(l, g, c, e))
        count = c, end = e;
    }
  } else if (rw) {
    int rc = rill__log_idx_room(l, g, 0);
    if (rc)
      return rc;
    log_idx_hdr_write(g->imap, g->base); /* rebuilt below from the records */
  }
  g->synced = count;
  g->tail_from = count;
  g->checked_from = count; /* the records below are the checkpoint's, not verified */
  for (;;) {
    uint32_t len;
    if (log_rec_check(g->map, g->size, end, g->base + count, true, &len) != 0)
      break;
    if (rw) {
      int rc = rill__log_idx_room(l, g, count);
      if (rc)
        return rc;
      uint32_t off = (uint32_t)end;
      memcpy(g->imap + LOG_HDR + 4 * count, &off, 4);
    } else {
      int rc = tail_note(g, end);
      if (rc)
        return rc;
    }
    end += LOG_REC_HDR + RILL__ALIGN_UP((uint64_t)len, 8u);
    count++;
  }
  g->count = count;
  g->end = end;
  *stop = end;
  return 0;
}

/* Zeroes a torn tail: from `from` until a whole page of zeros, which is as
 * far as one sequential writer's unfinished record can reach. */
static uint64_t zero_tail(struct seg *g, uint64_t from) {
  uint64_t p = from, last = from;
  while (p < g->size) {
    uint64_t page_end = RILL__ALIGN_UP(p + 1, (uint64_t)4096);
    if (page_end > g->size)
      page_end = g->size;
    bool nonzero = false;
    for (uint64_t q = p; q < page_end; q++)
      if (g->map[q]) {
        nonzero = true;
        last = q + 1;
      }
    if (!nonzero && p != from)
      break;
    p = page_end;
  }
  if (last > from)
    memset(g->map + from, 0, last - from);
  return last - from;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Whether segment base is one whose creation a crash cut short: a file
 * that is all zeros (or empty), as rill__log_seg_create leaves it between creating
 * the file and writing its header. Nothing was ever appended to it, so
 * recovery may drop it; failing the open instead would make a crash
 * during a roll (or while a topic is created) unrecoverable. A file with
 * any non-zero byte is not this and gets the usual checks. */
static bool seg_unborn(rill_log_t *l, uint64_t base) {
  char name[32];
  seg_name(name, sizeof name, base, "seg");
  int fd = openat(l->dir_fd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  struct stat st;
  bool zero = fstat(fd, &st) == 0 && (uint64_t)st.st_size <= l->seg_bytes;
  static const uint8_t zeros[LOG_HDR];
  uint8_t b[65536];
  for (off_t at = 0; zero && at < st.st_size;) {
    /* The header first: a real segment fails on its first 64 bytes. */
    size_t want = at == 0 ? LOG_HDR : sizeof b;
    ssize_t n = pread(fd, b, want, at);
    if (n <= 0) {
      zero = false;
      break;
    }
    for (ssize_t k = 0; zero && k < n; k += LOG_HDR)
      zero = memcmp(b + k, zeros, (size_t)(n - k < LOG_HDR ? n - k : LOG_HDR)) == 0;
    at += n;
  }
  close(fd);
  if (!zero)
    return false;
  /* A segment that held records and was then cut to nothing by damage
   * still has them named in its index: that is for open to report. */
  seg_name(name, sizeof name, base, "idx");
  fd = openat(l->dir_fd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return true;
  uint64_t c, e;
  uint32_t first_off = 0;
  bool used = pread(fd, b, LOG_HDR + 4, 0) == LOG_HDR + 4 &&
              ((log_idx_checkpoint_read(b, base, &c, &e) == 0 && c > 0) ||
               (memcpy(&first_off, b + LOG_HDR, 4), first_off != 0));
  close(fd);
  return !used;
}

/* Lists the segments, drops those retired, opens and checks the rest. */
int rill__log_recover(rill_log_t *l, uint64_t first) {
  int dfd = dup(l->dir_fd);
  DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
  if (!d) {
    if (dfd >= 0)
      close(dfd);
    return rill__err_errno("log %s: list", l->path);
  }
  uint64_t *bases = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char *endp;
    if (strlen(e->d_name) != 24 || strcmp(e->d_name + 20, ".seg"))
      continue;
    unsigned long long b = strtoull(e->d_name, &endp, 10);
    if (endp != e->d_name + 20)
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      uint64_t *nb = rill__realloc(bases, cap * sizeof *nb);
      if (!nb) {
        rc = rill__err(RILL_ENOMEM, "log: no memory");
        goto out;
      }
      bases = nb;
    }
    bases[n++] = b;
  }
  if (n)
    qsort(bases, n, sizeof *bases, cmp_u64);
  /* Dropped before the loop, so the segment before it is recovered as the
   * last one (its tail checked and zeroed) and appends go on there. The
   * directory is synced: a new segment is created at the same name. */
  if (n && seg_unborn(l, bases[n - 1])) {
    if (!l->o.read_only) {
      if ((rc = rill__log_seg_unlink(l, bases[n - 1])) != 0)
        goto out;
      if (fsync(l->dir_fd)) {
        rc = rill__err_errno("log %s: fsync after dropping segment %llu", l->path,
                             (unsigned long long)bases[n - 1]);
        goto out;
      }
    }
    n--;
  }
  /* Sequence numbers from names and the manifest are held to what the
   * files can be: no segment so high that its records' numbers would wrap,
   * and a first that is where a segment starts (retention writes it so,
   * before it deletes; a first beyond it would delete segments that hold
   * records). A first below the oldest segment is what files removed by
   * hand leave: the log starts at that segment. */
  bool first_found = n == 0 || first <= bases[0];
  for (size_t i = 0; i < n; i++) {
    if (bases[i] > UINT64_MAX - l->seg_bytes / LOG_REC_HDR) {
      rc = rill__err(RILL_ECORRUPT, "log %s: segment %llu: sequence numbers would wrap", l->path,
                     (unsigned long long)bases[i]);
      goto out;
    }
    first_found |= bases[i] == first;
  }
  if (!first_found) {
    rc = rill__err(RILL_ECORRUPT,
                   "log %s: MANIFEST says records start at %llu, where no segment starts "
                   "(segments %llu..%llu)",
                   l->path, (unsigned long long)first, (unsigned long long)bases[0],
                   (unsigned long long)bases[n - 1]);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    /* Wholly below first: retention got this far before a crash. Not
     * synced: a crash brings them back, and the next open deletes them. */
    if (i + 1 < n && bases[i + 1] <= first) {
      if (!l->o.read_only && (rc = rill__log_seg_unlink(l, bases[i])) != 0)
        goto out;
      continue;
    }
    struct seg *g = NULL;
    if ((rc = seg_open(l, bases[i], &g)) != 0)
      goto out;
    uint64_t stop = 0;
    if ((rc = seg_scan(l, g, &stop)) != 0 || (rc = rill__log_seg_view(l, g)) != 0) {
      rill__log_seg_discard(l, g);
      goto out;
    }
    if ((rc = rill__log_segs_push(l, g)) != 0) {
      rill_buf_release(&g->whole);
      goto out;
    }
    bool last = i + 1 == n;
    if (!last && g->base + g->count != bases[i + 1]) {
      rc = rill__err(RILL_ECORRUPT,
                     "log %s: segment %llu holds %llu good records, its successor starts at %llu: "
                     "records %llu.. are damaged",
                     l->path, (unsigned long long)g->base, (unsigned long long)g->count,
                     (unsigned long long)bases[i + 1], (unsigned long long)(g->base + g->count));
      goto out;
    }
    if (last && !l->o.read_only) {
      l->torn = zero_tail(g, stop);
      if ((rc = rill__log_seg_sync(l, g, g->count, g->end)) != 0)
        goto out;
    }
  }
out:
  rill__free(bases);
  closedir(d);
  return rc;
}

/* ---- following a writer from a read-only open ------------------------------------ */

/* Records the writer added to g since we looked, verified one by one as
 * recovery does (a record still being written fails its check and waits
 * for the next call). Under segs_lock (write side): tail_off may move. */
static int seg_follow(rill_log_t *l, struct seg *g) {
  /* The writer grows the file as it appends: look at how far it is now
   * (never past the segment size, whatever the file says). */
  struct stat st;
  if (fstat(g->fd, &st) == 0 && (uint64_t)st.st_size > g->size)
    __atomic_store_n(&g->size,
                     (uint64_t)st.st_size < l->seg_bytes ? (uint64_t)st.st_size : l->seg_bytes,
                     __ATOMIC_RELAXED);
  for (;;) {
    uint32_t len;
    if (log_rec_check(g->map, g->size, g->end, g->base + g->count, true, &len) != 0)
      return 0;
    int rc = tail_note(g, g->end);
    if (rc)
      return rc;
    g->end += LOG_REC_HDR + RILL__ALIGN_UP((uint64_t)len, 8u);
    g->count++;
  }
}

int rill_log_refresh(rill_log_t *l) {
  if (!l->o.read_only)
    return 0; /* a writer's handle is always current */
  int rc = 0;
  pthread_rwlock_wrlock(&l->segs_lock);
  for (;;) {
    struct seg *g = l->segs[l->nsegs - 1];
    if ((rc = seg_follow(l, g)) != 0)
      break;
    /* A successor means the writer sealed g: everything in g is found. */
    struct seg *n = NULL;
    char name[32];
    seg_name(name, sizeof name, g->base + g->count, "seg");
    if (faccessat(l->dir_fd, name, F_OK, 0) != 0)
      break;
    /* The writer is still creating it (the file is there, its header not
     * yet): not damage, look again next time. */
    if (seg_unborn(l, g->base + g->count))
      break;
    uint64_t stop = 0;
    if ((rc = seg_open(l, g->base + g->count, &n)) != 0)
      break;
    if ((rc = seg_scan(l, n, &stop)) != 0 || (rc = rill__log_seg_view(l, n)) != 0) {
      rill__log_seg_discard(l, n);
      break;
    }
    if ((rc = rill__log_segs_push(l, n)) != 0) {
      rill_buf_release(&n->whole);
      break;
    }
  }
  struct seg *last = l->segs[l->nsegs - 1];
  /* Release: the offsets noted above are visible to a reader that sees
   * the new next. */
  __atomic_store_n(&l->next, last->base + last->count, __ATOMIC_RELEASE);
  __atomic_store_n(&l->durable, last->base + last->count, __ATOMIC_RELEASE);
  pthread_rwlock_unlock(&l->segs_lock);
  return rc;
}
