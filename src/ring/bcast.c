/*
 * Broadcast ring: one writer that never waits, readers that may be lapped.
 *
 * A record is {int32 length, int32 type, uint64 seq} and the payload,
 * 16-aligned; length counts the 16-byte header; records never cross the end
 * of the data (padding fills it, carrying the next record's seq). Every
 * shared word is read and written with 8-byte atomics, because a reader
 * may copy a record while the writer overwrites it: the copy is then torn,
 * and the seqlock below is what tells.
 *
 * The writer's line holds four counters: tail (bytes published), intent
 * (where tail will be once the record in progress is written), oldest (the
 * start of the oldest record not touched by the write up to intent) and
 * next_seq. Before writing a record the writer moves oldest past every
 * record the write will cover (reading back its own headers) and stores
 * intent and oldest; it then stores every word of the record with release
 * order, so a reader whose acquire load of any word sees the new value
 * also sees the new intent. A reader copies a record at cursor with
 * acquire loads and then loads intent: if intent - cursor > capacity, the
 * writer had begun to overwrite the record and the copy is thrown away. A
 * lapped reader moves to oldest; the seq of the record there, less the seq
 * it expected, is how many records it lost.
 *
 * Why per-word release/acquire and not relaxed words between two fences
 * (the textbook seqlock): ThreadSanitizer does not model standalone fences,
 * so the fenced form could only be checked by running a different
 * algorithm under TSan. This one is the same code in every build, and on
 * x86-64 it costs the same: release stores and acquire loads are plain
 * movs there, as the relaxed ones were, and the fences were compiler
 * barriers only. (On a weakly ordered CPU each word would pay a
 * load-acquire or store-release instead of one fence per record.)
 */
#include <sched.h>
#include <string.h>

#include "core/internal.h"
#include "ring/layout.h"

struct rill__ring_bcast_w {
  uint64_t intent;   /* where tail will be after the write in progress */
  uint64_t tail;     /* bytes published */
  uint64_t oldest;   /* start of the oldest whole record */
  uint64_t next_seq; /* seq of the next record */
};

struct rill_ring_bcast {
  struct rill__ring_bcast_w *w;
  uint64_t *data; /* as words */
  uint64_t cap, mask;
  size_t max_payload;
  void *mem;
  bool owned;
};

#define HDR 16u

/* Record words: release stores by the writer, acquire loads by readers
 * (see the top of the file). */
#define WORD_LOAD  __ATOMIC_ACQUIRE
#define WORD_STORE __ATOMIC_RELEASE

/* Records are 16-aligned, so that the room left before the end is never
 * smaller than a header: padding carries a seq like any record. */
#define ALIGN16(x) (((x) + 15u) & ~(uint64_t)15u)

/* The first header word: length in the low half, type in the high half
 * (little-endian: length at byte 0, type at byte 4). */
static inline uint64_t word0(int32_t len, int32_t type) {
  return (uint64_t)(uint32_t)len | (uint64_t)(uint32_t)type << 32;
}

static inline uint64_t load_w(const rill_ring_bcast_t *r, uint64_t off) {
  return __atomic_load_n(&r->data[off / 8], WORD_LOAD);
}

static inline void store_w(rill_ring_bcast_t *r, uint64_t off, uint64_t v) {
  __atomic_store_n(&r->data[off / 8], v, WORD_STORE);
}

size_t rill_ring_bcast_bytes(uint64_t capacity) { return rill__ring_record_bytes(capacity); }

/* owned: mem came from _create, and is freed here if the handle cannot be
 * made. */
static int make_handle(rill_ring_bcast_t **out, void *mem, uint64_t cap, bool owned) {
  rill_ring_bcast_t *r = rill__malloc(sizeof *r);
  if (!r) {
    if (owned)
      rill__free(mem);
    return rill__err(RILL_ENOMEM, "ring bcast: no memory for the handle");
  }
  uint8_t *base = mem;
  r->w = (void *)(base + RILL_RING_PROD_OFF);
  r->data = (void *)(base + RILL_RING_DATA_OFF);
  r->cap = cap;
  r->mask = cap - 1;
  r->max_payload = (size_t)(cap / 8 - HDR);
  r->mem = mem;
  r->owned = owned;
  *out = r;
  return 0;
}

int rill_ring_bcast_format(rill_ring_bcast_t **out, void *mem, size_t bytes, uint64_t capacity) {
  if (!out)
    return rill__err(RILL_EINVAL, "ring bcast: out is NULL");
  *out = NULL;
  int rc = rill__ring_init_records("bcast", RILL_RING_BCAST_MAGIC, HDR, mem, bytes, capacity);
  if (rc)
    return rc;
  return make_handle(out, mem, capacity, false);
}

int rill_ring_bcast_attach(rill_ring_bcast_t **out, void *mem, size_t bytes) {
  if (!out)
    return rill__err(RILL_EINVAL, "ring bcast: out is NULL");
  *out = NULL;
  struct rill__ring_hdr h;
  int rc = rill__ring_read_records_hdr("bcast", RILL_RING_BCAST_MAGIC, HDR, mem, bytes, &h);
  if (rc)
    return rc;
  /* Counters of a live ring, read oldest, tail, intent: each read later
   * than the one it is compared with, and all three only grow, so
   * oldest <= tail <= intent holds whatever the writer does meanwhile.
   * With the writer idle (tail == intent) the span is at most a ring. */
  const struct rill__ring_bcast_w *w = (const void *)((uint8_t *)mem + RILL_RING_PROD_OFF);
  uint64_t o = __atomic_load_n(&w->oldest, __ATOMIC_ACQUIRE);
  uint64_t t = __atomic_load_n(&w->tail, __ATOMIC_ACQUIRE);
  uint64_t i = __atomic_load_n(&w->intent, __ATOMIC_ACQUIRE);
  if (o > t || t > i || (o | t | i) % 16 || (t == i && t - o > h.capacity))
    return rill__err(RILL_ECORRUPT, "ring bcast: oldest %llu, tail %llu, intent %llu cannot be",
                     (unsigned long long)o, (unsigned long long)t, (unsigned long long)i);
  return make_handle(out, mem, h.capacity, false);
}

int rill_ring_bcast_create(rill_ring_bcast_t **out, uint64_t capacity) {
  if (!out)
    return rill__err(RILL_EINVAL, "ring bcast: out is NULL");
  *out = NULL;
  void *mem;
  int rc = rill__ring_create_records("bcast", RILL_RING_BCAST_MAGIC, HDR, capacity, &mem);
  if (rc)
    return rc;
  return make_handle(out, mem, capacity, true);
}

void rill_ring_bcast_destroy(rill_ring_bcast_t *r) {
  if (!r)
    return;
  if (r->owned)
    rill__free(r->mem);
  rill__free(r);
}

size_t rill_ring_bcast_max_payload(const rill_ring_bcast_t *r) { return r->max_payload; }

uint64_t rill_ring_bcast_written(const rill_ring_bcast_t *r) {
  /* Acquire: pairs with the writer's release store of next_seq, so a
   * caller that reads the ring's tail after this sees the tail of every
   * record but the last one counted (a plain mov on x86-64). */
  return __atomic_load_n(&r->w->next_seq, __ATOMIC_ACQUIRE);
}

/* Stores the parts' bytes as consecutive words from off, the last word
 * zero-padded. Whole words go straight from a part; only the bytes that
 * straddle two parts gather in acc. */
static void store_parts(rill_ring_bcast_t *r, uint64_t off, const rill_iov_t *parts, size_t n) {
  uint64_t acc = 0;
  size_t have = 0; /* bytes in acc */
  for (size_t p = 0; p < n; p++) {
    const uint8_t *src = parts[p].data;
    size_t len = parts[p].len, i = 0;
    while (have && i < len) {
      acc |= (uint64_t)src[i++] << (8 * have);
      if (++have == 8) {
        store_w(r, off, acc);
        off += 8;
        acc = 0;
        have = 0;
      }
    }
    for (; i + 8 <= len; i += 8, off += 8) {
      uint64_t v;
      memcpy(&v, src + i, 8);
      store_w(r, off, v);
    }
    for (; i < len; i++)
      acc |= (uint64_t)src[i] << (8 * have++);
  }
  if (have)
    store_w(r, off, acc);
}

int rill_ring_bcast_write(rill_ring_bcast_t *r, int32_t type, const void *data, size_t len) {
  if (RILL_UNLIKELY(len > UINT32_MAX))
    return rill__err(RILL_EMSGSIZE, "ring bcast: %zu bytes, the ring takes at most %zu", len,
                     r->max_payload);
  rill_iov_t part = {data, (uint32_t)len};
  return rill_ring_bcast_writev(r, type, &part, 1);
}

int rill_ring_bcast_writev(rill_ring_bcast_t *r, int32_t type, const rill_iov_t *parts,
                           size_t nparts) {
  if (RILL_UNLIKELY(type < 0))
    return rill__err(RILL_EINVAL, "ring bcast: record type %d is reserved", (int)type);
  size_t len = 0;
  for (size_t p = 0; p < nparts; p++) {
    len += parts[p].len;
    if (RILL_UNLIKELY(len < parts[p].len || len > r->max_payload))
      return rill__err(RILL_EMSGSIZE, "ring bcast: %zu bytes or more, the ring takes at most %zu",
                       len, r->max_payload);
  }
  struct rill__ring_bcast_w *w = r->w;
  const uint64_t cap = r->cap;
  /* Relaxed: the writer reads back its own counters. */
  uint64_t tail = __atomic_load_n(&w->tail, __ATOMIC_RELAXED);
  uint64_t seq = __atomic_load_n(&w->next_seq, __ATOMIC_RELAXED);
  uint64_t oldest = __atomic_load_n(&w->oldest, __ATOMIC_RELAXED);
  uint64_t rec = ALIGN16(len + HDR);
  uint64_t off = tail & r->mask, to_end = cap - off;
  uint64_t pad = rec > to_end ? to_end : 0;
  uint64_t end = tail + pad + rec;
  /* Move oldest past the records this write covers, reading our own
   * headers back. A header that cannot be (another process scribbled on
   * the ring) ends the walk at end - cap: readers then see the damage as
   * RILL_ECORRUPT. */
  if (end - oldest > 2 * cap)
    oldest = end - cap;
  while (end - oldest > cap) {
    uint64_t o = oldest & r->mask;
    int64_t l = (int32_t)(uint32_t)load_w(r, o);
    if (l < (int64_t)HDR || ALIGN16((uint64_t)l) > cap - o) {
      oldest = end - cap;
      break;
    }
    oldest += ALIGN16((uint64_t)l);
  }
  /* Relaxed: each record word below is a release store, which orders these
   * two before it, so a reader whose copy saw one of those words (acquire)
   * sees the new intent and throws the copy away. */
  __atomic_store_n(&w->intent, end, __ATOMIC_RELAXED);
  __atomic_store_n(&w->oldest, oldest, __ATOMIC_RELAXED);
  if (pad) {
    store_w(r, off, word0((int32_t)pad, RILL_RING_PADDING));
    store_w(r, off + 8, seq);
    off = 0;
  }
  store_w(r, off, word0((int32_t)(len + HDR), type));
  store_w(r, off + 8, seq);
  store_parts(r, off + HDR, parts, nparts);
  /* Release: as for the record words; join_at relies on it. */
  __atomic_store_n(&w->next_seq, seq + 1, WORD_STORE);
  /* Release: the record (and next_seq) are visible before readers, which
   * acquire tail, see it. */
  __atomic_store_n(&w->tail, end, __ATOMIC_RELEASE);
  return 0;
}

/* The seq stored at a record start, if the header there is whole and the
 * writer had not begun to overwrite it: 0 and *seq, or -1 to retry. */
static int seq_at(const rill_ring_bcast_t *r, uint64_t pos, uint64_t *seq) {
  /* Acquire (load_w): orders the header load before the intent load, and
   * a header the writer had begun to overwrite comes with its intent. */
  uint64_t s = load_w(r, (pos & r->mask) + 8);
  /* Relaxed: ordered by the acquire load above. */
  uint64_t intent = __atomic_load_n(&r->w->intent, __ATOMIC_RELAXED);
  if (intent - pos > r->cap)
    return -1;
  *seq = s;
  return 0;
}

/* Retries of a seqlock read before giving up: a live writer moves on in
 * nanoseconds, so running out means a writer that died mid-record or
 * counters that were never a writer's. */
#define TRIES 1000

static void join_at(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd, bool at_oldest) {
  memset(rd, 0, sizeof *rd);
  for (int tries = 0;; tries++) {
    /* Acquire: pairs with the writer's release of tail. */
    uint64_t tail = __atomic_load_n(&r->w->tail, __ATOMIC_ACQUIRE);
    uint64_t pos = at_oldest ? __atomic_load_n(&r->w->oldest, __ATOMIC_ACQUIRE) : tail;
    /* Acquire: pairs with the writer's release store of next_seq. */
    uint64_t seq = __atomic_load_n(&r->w->next_seq, WORD_LOAD);
    if (tries >= TRIES) {
      /* Dead or broken writer: start at tail; reads report what is wrong. */
      rd->cursor = tail;
      rd->next_seq = seq;
      return;
    }
    if (pos != tail) {
      if (seq_at(r, pos, &seq) != 0)
        continue; /* overwritten meanwhile */
    } else {
      /* next_seq belongs with tail if the writer had not begun the next
       * record: that write stores intent before its release store of
       * next_seq, so having seen a newer next_seq (acquire, above) means
       * seeing a newer intent here. Relaxed: ordered by that load. */
      if (__atomic_load_n(&r->w->intent, __ATOMIC_RELAXED) != tail)
        continue;
    }
    rd->cursor = pos;
    rd->next_seq = seq;
    return;
  }
}

void rill_ring_bcast_join(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd) {
  join_at(r, rd, false);
}

void rill_ring_bcast_join_oldest(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd) {
  join_at(r, rd, true);
}

/* Spins before a lapped reader starts yielding the CPU to the writer. */
#define SPINS 64

/* The reader was lapped: move it to the oldest whole record, count what it
 * skipped, and say RILL_ELAGGED. The writer claims room (intent) before it
 * moves oldest past what it overwrites, so a writer preempted between the
 * two leaves oldest pointing at a record being overwritten, for as long as
 * the scheduler keeps it off the CPU: the reader yields to it, and after
 * TRIES says RILL_EAGAIN without moving, so that a slow writer is never
 * mistaken for corruption (on a 2-core machine, spinning alone made the
 * stress test fail one run in six). */
static int lapped(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd) {
  for (int tries = 0;; tries++) {
    uint64_t o = __atomic_load_n(&r->w->oldest, __ATOMIC_ACQUIRE);
    uint64_t seq;
    if (tries >= TRIES)
      return rill__err(RILL_EAGAIN, "ring bcast: lapped, and oldest %llu is being overwritten",
                       (unsigned long long)o);
    if (seq_at(r, o, &seq) != 0) {
      if (tries >= SPINS)
        sched_yield();
      continue;
    }
    uint64_t bytes = o - rd->cursor, recs = seq - rd->next_seq;
    if (o < rd->cursor) /* a cursor that never was: count nothing */
      bytes = 0;
    if (seq < rd->next_seq)
      recs = 0;
    rd->lost_bytes = bytes;
    rd->lost_records = recs;
    rd->total_lost += recs;
    rd->laps++;
    rd->cursor = o;
    rd->next_seq = seq;
    return rill__err(RILL_ELAGGED, "ring bcast: lapped, %llu records (%llu bytes) lost",
                     (unsigned long long)recs, (unsigned long long)bytes);
  }
}

/* read, or with peek: copy at most cap bytes of the payload and leave the
 * cursor on the record (it still moves past padding, and to the oldest
 * record when lapped: neither is a record the reader could have read). */
static int read_rec(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd, void *buf, size_t cap,
                    size_t *len, int32_t *type, bool peek) {
  for (;;) {
    uint64_t cursor = rd->cursor;
    /* Acquire: pairs with the writer's release of tail: the records before
     * it are visible. */
    uint64_t tail = __atomic_load_n(&r->w->tail, __ATOMIC_ACQUIRE);
    if (cursor == tail)
      return RILL_EAGAIN;
    if (tail - cursor > r->cap)
      return lapped(r, rd);
    uint64_t off = cursor & r->mask;
    uint64_t h0 = load_w(r, off), seq = load_w(r, off + 8);
    int64_t l = (int32_t)(uint32_t)h0;
    int32_t t = (int32_t)(uint32_t)(h0 >> 32);
    bool pad = t == RILL_RING_PADDING;
    bool valid = l >= (int64_t)HDR && ALIGN16((uint64_t)l) <= r->cap - off &&
                 (pad || (t >= 0 && (uint64_t)l - HDR <= r->max_payload));
    size_t n = valid ? (size_t)l - HDR : 0;
    bool fits = !pad && (peek || n <= cap);
    if (valid && fits) {
      uint8_t *dst = buf;
      size_t want = n < cap ? n : cap, i = 0;
      for (; i + 8 <= want; i += 8) {
        uint64_t v = load_w(r, off + HDR + i);
        memcpy(dst + i, &v, 8);
      }
      if (i < want) {
        uint64_t v = load_w(r, off + HDR + i);
        memcpy(dst + i, &v, want - i);
      }
    }
    /* Relaxed: the copy's acquire loads (load_w) order it after them. If
     * the writer's overwrite reached any word we copied, the release store
     * of that word carried its intent, and we see it. */
    uint64_t intent = __atomic_load_n(&r->w->intent, __ATOMIC_RELAXED);
    if (intent - cursor > r->cap)
      return lapped(r, rd);
    if (!valid)
      return rill__err(RILL_ECORRUPT, "ring bcast: record at %llu has length %lld, type %d",
                       (unsigned long long)cursor, (long long)l, (int)t);
    if (pad) {
      rd->cursor = cursor + ALIGN16((uint64_t)l);
      continue;
    }
    *len = n;
    if (!fits)
      return rill__err(RILL_EMSGSIZE, "ring bcast: a %zu-byte record, a %zu-byte buffer", n, cap);
    *type = t;
    if (!peek) {
      rd->cursor = cursor + ALIGN16((uint64_t)l);
      rd->next_seq = seq + 1;
    }
    return 0;
  }
}

int rill_ring_bcast_read(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd, void *buf,
                         size_t cap, size_t *len, int32_t *type) {
  return read_rec(r, rd, buf, cap, len, type, false);
}

int rill_ring_bcast_peek(const rill_ring_bcast_t *r, rill_ring_bcast_reader_t *rd, void *buf,
                         size_t cap, size_t *len, int32_t *type) {
  return read_rec(r, rd, buf, cap, len, type, true);
}
