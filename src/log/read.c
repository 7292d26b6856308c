/*
 * Reading and waiting at the tail. Records below `next` are complete: next
 * is stored with release after the record and its index entry, and readers
 * load it with acquire. Readers find the segment under `segs_lock` (read
 * side) and take a slice of the segment's whole view before dropping it, so
 * a segment that retention or close lets go stays mapped as long as a slice
 * lives (the view's release callback unmaps it).
 *
 * Waking. Tail waiters spin briefly (a futex wake costs more than the 2 µs
 * append-to-subscriber budget), then count themselves in `sleepers` and
 * sleep on `wake`. next and durable are stored seq_cst and sleepers loaded
 * seq_cst after them, against the waiters' seq_cst increment and reload:
 * with both sides sequentially consistent one always sees the other, so no
 * wakeup is lost (the cost is one locked store per append).
 */
#include <string.h>

#include "log/log_internal.h"

#define SPIN_WAIT_NS 50000u /* a tail waiter spins this long first */

/* The segment holding seq, or NULL, and where it sits in the list (*at);
 * under segs_lock. */
static struct seg *seg_find(rill_log_t *l, uint64_t seq, size_t *at) {
  size_t lo = 0, hi = l->nsegs;
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (l->segs[mid]->base <= seq)
      lo = mid;
    else
      hi = mid;
  }
  *at = lo;
  return l->nsegs && l->segs[lo]->base <= seq ? l->segs[lo] : NULL;
}

uint64_t rill_log_first(const rill_log_t *l) { return ld(&l->first); }
uint64_t rill_log_next(const rill_log_t *l) { return ld(&l->next); }
uint64_t rill_log_durable(const rill_log_t *l) { return ld(&l->durable); }

/* Finds and checks record seq of g: *rec gets all but a reference (its
 * payload view is filled in without taking one). Inline: it runs once
 * for each record read, and its call was a quarter of it. */
RILL_INLINE int rec_find(rill_log_t *l, struct seg *g, uint64_t seq, rill_log_record_t *rec) {
  uint64_t i = seq - g->base;
  uint32_t off;
  if (i >= g->tail_from && i - g->tail_from < g->tail_n)
    off = g->tail_off[i - g->tail_from];
  else if (g->imap && LOG_HDR + 4 * (i + 1) <= g->imap_len)
    memcpy(&off, g->imap + LOG_HDR + 4 * i, 4);
  else
    return rill__err(RILL_ECORRUPT, "log %s: record %llu has no index entry", l->path,
                     (unsigned long long)seq);
  /* Every record handed out has had its check verified in this open: a
   * byte flipped on disk is RILL_ECORRUPT, never delivered. Once per
   * record, though (see checked). Measured (read_range, 256 at a time,
   * one 1 GiB segment in /dev/shm, this 2-vCPU VM, ad hoc, noisy): 64-byte
   * records read 27 ns each known good, 43 ns hashed (first read after
   * open); 64 KiB records 0.08-0.24 us known good, 1.8 us on first touch
   * of the mapping without hashing, 12-14 us hashed (XXH3 at ~6 GB/s over
   * memory). Hashing on every read would put those costs on every re-read
   * and on tailing what this handle appends (it sealed them). */
  uint64_t done = __atomic_load_n(&g->checked, __ATOMIC_RELAXED);
  bool verify = i < g->checked_from && i >= done;
  uint32_t len;
  if (log_rec_check(g->map, seg_len(g), off, seq, verify, &len) != 0)
    return rill__err(RILL_ECORRUPT, "log %s: record %llu at offset %u of segment %llu is damaged",
                     l->path, (unsigned long long)seq, off, (unsigned long long)g->base);
  if (verify && i == done) /* the next in order: the known-good prefix grows */
    __atomic_compare_exchange_n(&g->checked, &done, i + 1, false, __ATOMIC_RELAXED,
                                __ATOMIC_RELAXED);
  rec->payload = (rill_buf_t){g->whole.store, g->map + off + LOG_REC_HDR, len};
  rec->seq = seq;
  memcpy(&rec->ts_ns, g->map + off + 16, 8);
  return 0;
}

/* Takes k references on g's storage for k views rec_find filled in, with
 * one atomic add (the views are released one by one, like any). Relaxed,
 * as rill_buf_clone's increment: the caller already holds the segment
 * (under segs_lock), so no release can free it meanwhile. */
static void seg_ref(struct seg *g, uint32_t k) {
  if (k)
    __atomic_fetch_add(&g->whole.store->refs, k, __ATOMIC_RELAXED);
}

static int rec_get(rill_log_t *l, struct seg *g, uint64_t seq, rill_log_record_t *rec) {
  int rc = rec_find(l, g, seq, rec);
  if (!rc)
    seg_ref(g, 1);
  return rc;
}

int rill_log_read(rill_log_t *l, uint64_t seq, rill_log_record_t *rec) {
  uint64_t next = ld(&l->next);
  if (seq >= next || seq < ld(&l->first))
    return rill__err(RILL_ENOENT, "log %s: no record %llu (held: %llu..%llu)", l->path,
                     (unsigned long long)seq, (unsigned long long)ld(&l->first),
                     (unsigned long long)next);
  pthread_rwlock_rdlock(&l->segs_lock);
  size_t gi;
  struct seg *g = seg_find(l, seq, &gi);
  int rc =
      g ? rec_get(l, g, seq, rec)
        : rill__err(RILL_ENOENT, "log %s: no segment holds %llu", l->path, (unsigned long long)seq);
  pthread_rwlock_unlock(&l->segs_lock);
  return rc;
}

static inline uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* A stretch of a run (see seg_read_run) whose offsets are offs[i - obase..lim - obase):
 * each record's framing checked, its checksum too when hash says some
 * may need it and it is not known good; filled in at *out. Stops at lim
 * (*why 0), before a record past max_bytes (1) or at one that fails
 * (2). Returns where it stopped. Inlined with hash and max_bytes
 * constant where they can be, so the usual stretch (all known good, no
 * budget: SIZE_MAX) tests neither. */
RILL_INLINE uint64_t take(const uint8_t *map, uint64_t size, const uint32_t *offs, uint64_t obase,
                          uint64_t base, uint64_t i, uint64_t lim, bool hash, uint64_t known_from,
                          uint64_t *done, size_t *bytes, size_t max_bytes, bool *any,
                          rill__buf_store_t *store, rill_log_record_t **out, int *why) {
  rill_log_record_t *r = *out;
  size_t b = *bytes;
  bool a = *any;
  *why = 0;
  for (; i < lim; i++) {
    uint32_t off = offs[i - obase], len;
    bool verify = hash && i < known_from && i >= *done;
    if (RILL_UNLIKELY(log_rec_check(map, size, off, base + i, verify, &len) != 0)) {
      *why = 2;
      break;
    }
    if (verify && i == *done)
      *done = i + 1;
    if (max_bytes != SIZE_MAX && a && b + len > max_bytes) {
      *why = 1;
      break;
    }
    a = true;
    b += len;
    r->payload = (rill_buf_t){store, (uint8_t *)map + off + LOG_REC_HDR, len};
    r->seq = base + i;
    memcpy(&r->ts_ns, map + off + 16, 8);
    r++;
  }
  *out = r;
  *bytes = b;
  *any = a;
  return i;
}

/* rec_find for a run of records of one segment, read in order: what is
 * the same for every record (the mapping, its bounds, the index, the
 * tail, how far records are known good) is loaded once, and the known-
 * good prefix moves once per run. Every record is still checked as
 * rec_find checks it: its framing always, its checksum unless known good.
 * Fills out[0..) with records seq.. below end, stopping before one that
 * would take *bytes past max_bytes (unless *any is false: the read's
 * first record always goes); a record that fails any check is handed to
 * rec_find, which says why in *rc (0, with the record, if it holds now),
 * and the run stops there. Returns the records filled, no references
 * taken. */
static size_t seg_read_run(rill_log_t *l, struct seg *g, uint64_t seq, uint64_t end,
                           size_t max_bytes, size_t *bytes, bool *any, rill_log_record_t *out,
                           int *rc) {
  const uint8_t *map = g->map;
  const uint64_t size = seg_len(g), base = g->base;
  rill__buf_store_t *store = g->whole.store;
  /* The index's entries as uint32s: the mapping is page-aligned and its
   * header 64 bytes. */
  const uint32_t *idx = g->imap ? (const uint32_t *)(const void *)(g->imap + LOG_HDR) : NULL;
  const uint64_t idx_n = g->imap ? (g->imap_len - LOG_HDR) / 4 : 0;
  const uint64_t tail_from = g->tail_from, tail_n = g->tail_n, known_from = g->checked_from;
  uint64_t done0 = __atomic_load_n(&g->checked, __ATOMIC_RELAXED), done = done0;
  rill_log_record_t *o = out;
  *rc = 0;
  for (uint64_t i = seq - base, iend = end - base; i < iend;) {
    const uint32_t *offs;
    uint64_t lim = iend, obase = 0;
    if (i - tail_from < tail_n) {
      offs = g->tail_off;
      obase = tail_from;
      lim = min64(lim, tail_from + tail_n);
    } else if (i < idx_n) {
      offs = idx;
      lim = min64(lim, idx_n);
      if (i < tail_from)
        lim = min64(lim, tail_from);
    } else {
      *rc = rec_find(l, g, base + i, o); /* says there is no entry */
      break;
    }
    int why;
    if (i < known_from && lim > done)
      i = take(map, size, offs, obase, base, i, lim, true, known_from, &done, bytes, max_bytes, any,
               store, &o, &why);
    else if (max_bytes == SIZE_MAX) /* no budget: nothing to weigh */
      i = take(map, size, offs, obase, base, i, lim, false, known_from, &done, bytes, SIZE_MAX, any,
               store, &o, &why);
    else
      i = take(map, size, offs, obase, base, i, lim, false, known_from, &done, bytes, max_bytes,
               any, store, &o, &why);
    if (why == 1)
      break;
    if (why == 2) {
      if ((*rc = rec_find(l, g, base + i, o)) != 0)
        break;
      if (*any && *bytes + o->payload.len > max_bytes) /* held after all */
        break;
      *any = true;
      *bytes += o++->payload.len;
      i++;
    }
  }
  if (done > done0) /* the known-good prefix grew; a hint, so one try */
    __atomic_compare_exchange_n(&g->checked, &done0, done, false, __ATOMIC_RELAXED,
                                __ATOMIC_RELAXED);
  return (size_t)(o - out);
}

int rill_log_read_range(rill_log_t *l, uint64_t from, size_t max_count, size_t max_bytes,
                        rill_log_record_t *out, size_t *n) {
  *n = 0;
  uint64_t next = ld(&l->next);
  if (from >= next || from < ld(&l->first))
    return rill__err(RILL_ENOENT, "log %s: no record %llu (held: %llu..%llu)", l->path,
                     (unsigned long long)from, (unsigned long long)ld(&l->first),
                     (unsigned long long)next);
  int rc = 0;
  size_t bytes = 0;
  bool any = false;
  pthread_rwlock_rdlock(&l->segs_lock);
  size_t gi;
  struct seg *g = seg_find(l, from, &gi);
  /* A run of records in one segment at a time, its references taken with
   * one atomic add before the lock is dropped: a read of 256 small records
   * would otherwise spend more on its atomics than on everything else. */
  uint64_t seq = from;
  while (g && seq < next && *n < max_count) {
    uint64_t end = next;
    if (gi + 1 < l->nsegs && l->segs[gi + 1]->base < end)
      end = l->segs[gi + 1]->base;
    if (end - seq > max_count - *n)
      end = seq + (max_count - *n);
    size_t got = seg_read_run(l, g, seq, end, max_bytes, &bytes, &any, out + *n, &rc);
    seg_ref(g, (uint32_t)got);
    *n += got;
    seq += got;
    if (rc) {
      if (l->o.on_corrupt != RILL_LOG_CORRUPT_SKIP)
        break;
      __atomic_fetch_add(&l->skipped, 1, __ATOMIC_RELAXED);
      rc = 0;
      seq++;
    } else if (seq < end) {
      break; /* max_bytes */
    }
    if (seq == end && gi + 1 < l->nsegs && seq >= l->segs[gi + 1]->base)
      g = l->segs[++gi];
  }
  pthread_rwlock_unlock(&l->segs_lock);
  return rc;
}

void rill_log_iter_init(rill_log_iter_t *it, rill_log_t *l, uint64_t from) {
  *it = (rill_log_iter_t){.log = l, .next = from};
}

int rill_log_iter_next(rill_log_iter_t *it, rill_log_record_t *rec) {
  rill_log_t *l = it->log;
  uint64_t first = ld(&l->first);
  if (it->next < first) {
    uint64_t lost = first - it->next;
    it->lost += lost;
    it->next = first;
    return rill__err(RILL_ELAGGED, "log %s: retention removed %llu records before the cursor",
                     l->path, (unsigned long long)lost);
  }
  uint64_t end = ld(&l->next);
  if (it->next >= end)
    return RILL_EAGAIN;
  size_t n = 0;
  int rc = rill_log_read_range(l, it->next, 1, SIZE_MAX, rec, &n);
  if (n) {
    it->next = rec->seq + 1; /* past any record SKIP passed over */
    return 0;
  }
  if (!rc) { /* SKIP passed over every record up to end */
    it->next = end;
    return RILL_EAGAIN;
  }
  if (rc == RILL_ENOENT) /* retention moved first meanwhile, or SKIP reached the end */
    return it->next < ld(&l->first) ? rill_log_iter_next(it, rec) : RILL_EAGAIN;
  if (rc == RILL_ECORRUPT)
    it->next++; /* reported once; the next call goes on past it */
  return rc;
}

int rill_log_wait(rill_log_t *l, uint64_t from, uint64_t timeout_ns) {
  const uint64_t *vis = l->o.sync == RILL_LOG_SYNC_NEVER ? &l->next : &l->durable;
  uint64_t start = rill_time_ns();
  /* Spin first: waking a sleeper costs more than the latency we promise. */
  while (__atomic_load_n(vis, __ATOMIC_ACQUIRE) <= from) {
    if (__atomic_load_n(&l->closing, __ATOMIC_ACQUIRE))
      return rill__err(RILL_ECLOSED, "log %s: closing", l->path);
    uint64_t spent = rill_time_ns() - start;
    if (spent >= timeout_ns)
      return RILL_ETIMEDOUT;
    if (spent >= SPIN_WAIT_NS)
      break;
    rill__cpu_relax();
  }
  int rc = 0;
  __atomic_fetch_add(&l->sleepers, 1, __ATOMIC_SEQ_CST);
  for (;;) {
    uint32_t w0 = __atomic_load_n(&l->wake, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(vis, __ATOMIC_SEQ_CST) > from)
      break;
    if (__atomic_load_n(&l->closing, __ATOMIC_SEQ_CST)) {
      rc = rill__err(RILL_ECLOSED, "log %s: closing", l->path);
      break;
    }
    uint64_t spent = rill_time_ns() - start;
    if (spent >= timeout_ns) {
      rc = RILL_ETIMEDOUT;
      break;
    }
    rill__futex_wait(&l->wake, w0, timeout_ns - spent);
  }
  __atomic_fetch_sub(&l->sleepers, 1, __ATOMIC_RELEASE);
  return rc;
}
