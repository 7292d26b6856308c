/*
 * Cursors and poll: the readers of a memory sink's windows (see memsink.c
 * for the records and how a lapped cursor learns what it lost). A cursor
 * can be saved and loaded in the format of docs/FORMATS.md.
 */
#include <string.h>

#include "bus/bus_internal.h"

/* Serialised cursor (docs/FORMATS.md): "RLCU", version, shard count, the
 * sink's identity, {position, next seq} per shard, then an xxh3 of it all. */
#define CURSOR_MAGIC   0x55434c52u /* "RLCU" read as a little-endian u32 */
#define CURSOR_VERSION 1u
#define CURSOR_HDR     24u
#define CURSOR_SHARD   16u
#define CURSOR_TRAILER 8u

/* ---- cursors ----------------------------------------------------------- */

static int cursor_alloc(rill_bus_memsink_t *ms, rill_bus_cursor_t **out) {
  rill_bus_cursor_t *c = rill__calloc(1, sizeof *c);
  if (!c)
    goto fail;
  c->ms = ms;
  /* One record of the largest size always fits, so poll can always make
   * progress; beyond that, room for a good batch of small events. */
  c->cap = ms->max_payload + PREFIX + 16;
  if (c->cap < 64 * 1024)
    c->cap = 64 * 1024;
  c->rd = rill__calloc(ms->shards, sizeof *c->rd);
  c->heap = rill__calloc(ms->shards, sizeof *c->heap);
  c->buf = rill__aligned(64, RILL__ALIGN_UP(c->cap, (size_t)64));
  if (!c->rd || !c->heap || !c->buf)
    goto undo_c;
  *out = c;
  return 0;
undo_c:
  rill_bus_cursor_destroy(c);
fail:
  return rill__err(RILL_ENOMEM, "bus cursor: no memory");
}

int rill_bus_cursor_create(rill_bus_cursor_t **out, rill_bus_memsink_t *ms, rill_bus_from_t from) {
  if (!ms || !out)
    return rill__err(RILL_EINVAL, "bus cursor: NULL sink or out");
  *out = NULL;
  if ((unsigned)from > RILL_BUS_FROM_NOW)
    return rill__err(RILL_EINVAL, "bus cursor: unknown start %d", (int)from);
  rill_bus_cursor_t *c = NULL;
  int rc = cursor_alloc(ms, &c);
  if (rc)
    return rc;
  for (uint32_t s = 0; s < ms->shards; s++) {
    if (from == RILL_BUS_FROM_OLDEST)
      rill_ring_bcast_join_oldest(ms->win[s], &c->rd[s]);
    else
      rill_ring_bcast_join(ms->win[s], &c->rd[s]);
  }
  *out = c;
  return 0;
}

void rill_bus_cursor_destroy(rill_bus_cursor_t *c) {
  if (!c)
    return;
  rill__free(c->rd);
  rill__free(c->heap);
  rill__free(c->buf);
  rill__free(c);
}

size_t rill_bus_cursor_size(const rill_bus_cursor_t *c) {
  return CURSOR_HDR + (size_t)c->ms->shards * CURSOR_SHARD + CURSOR_TRAILER;
}

int rill_bus_cursor_save(const rill_bus_cursor_t *c, void *buf, size_t cap, size_t *len) {
  if (!c || (!buf && cap))
    return rill__err(RILL_EINVAL, "bus cursor: NULL cursor or buffer");
  size_t need = rill_bus_cursor_size(c);
  if (len)
    *len = need;
  if (cap < need)
    return rill__err(RILL_ENOBUFS, "bus cursor: %zu bytes needed, %zu given", need, cap);
  uint8_t *p = buf;
  rill__put32(p, CURSOR_MAGIC);
  p[4] = CURSOR_VERSION;
  p[5] = p[6] = p[7] = 0;
  rill__put32(p + 8, c->ms->shards);
  rill__put32(p + 12, 0);
  rill__put64(p + 16, c->ms->id);
  for (uint32_t s = 0; s < c->ms->shards; s++) {
    rill__put64(p + CURSOR_HDR + s * CURSOR_SHARD, c->rd[s].cursor);
    rill__put64(p + CURSOR_HDR + s * CURSOR_SHARD + 8, c->rd[s].next_seq);
  }
  rill__put64(p + need - CURSOR_TRAILER, rill_hash64(p, need - CURSOR_TRAILER));
  return 0;
}

int rill_bus_cursor_load(rill_bus_cursor_t **out, rill_bus_memsink_t *ms, const void *buf,
                         size_t len) {
  if (!ms || !out || (!buf && len))
    return rill__err(RILL_EINVAL, "bus cursor: NULL sink, buffer or out");
  *out = NULL;
  const uint8_t *p = buf;
  if (len < CURSOR_HDR + CURSOR_TRAILER || rill__get32(p) != CURSOR_MAGIC)
    return rill__err(RILL_EVERSION, "bus cursor: not a saved cursor (no RLCU magic)");
  if (p[4] != CURSOR_VERSION)
    return rill__err(RILL_EVERSION, "bus cursor: version %u, this build reads %u", p[4],
                     CURSOR_VERSION);
  uint32_t shards = rill__get32(p + 8);
  if (shards < 1 || shards > RILL_BUS_MAX_SHARDS ||
      len != CURSOR_HDR + (size_t)shards * CURSOR_SHARD + CURSOR_TRAILER)
    return rill__err(RILL_ECORRUPT, "bus cursor: %zu bytes cannot hold %u shards", len, shards);
  if (rill__get64(p + len - CURSOR_TRAILER) != rill_hash64(p, len - CURSOR_TRAILER))
    return rill__err(RILL_ECORRUPT, "bus cursor: checksum mismatch");
  if (p[5] || p[6] || p[7] || rill__get32(p + 12))
    return rill__err(RILL_ECORRUPT, "bus cursor: reserved bytes are not zero");
  if (shards != ms->shards)
    return rill__err(RILL_EINVAL, "bus cursor: saved for %u shards, the sink has %u", shards,
                     ms->shards);
  if (rill__get64(p + 16) != ms->id)
    return rill__err(RILL_EINVAL, "bus cursor: saved from another memory sink");
  for (uint32_t s = 0; s < shards; s++) {
    uint64_t pos = rill__get64(p + CURSOR_HDR + s * CURSOR_SHARD);
    uint64_t seq = rill__get64(p + CURSOR_HDR + s * CURSOR_SHARD + 8);
    /* A position or seq the writer has not reached, a position off the
     * record grid, or one with fewer bytes left before the end than the
     * records its seq leaves there take (each at least 16), never came
     * from this sink: the checksum only says the bytes were saved
     * together, not by whom.
     *
     * The writer moves on meanwhile, and a join gives up waiting for a
     * busy writer after a few tries, so its position and seq need not be
     * one pair. The bounds are taken so that a genuine cursor always
     * passes: `written` first (acquire), then the join's tail (acquire,
     * after it): the writer stores tail for record k before it stores
     * next_seq = k + 2, so at least written - 1 records end by that tail.
     * The join's seq, loaded after its tail, is at least the records that
     * end there. Subtractions cannot wrap: pos and seq are known not past
     * the end first. */
    uint64_t written = rill_ring_bcast_written(ms->win[s]);
    rill_ring_bcast_reader_t end;
    rill_ring_bcast_join(ms->win[s], &end);
    if (pos % 16 || pos > end.cursor || seq > end.next_seq ||
        (seq + 1 < written && written - 1 - seq > (end.cursor - pos) / 16))
      return rill__err(RILL_ECORRUPT,
                       "bus cursor: shard %u position %llu, seq %llu cannot be (the window is "
                       "written to %llu, seq %llu)",
                       s, (unsigned long long)pos, (unsigned long long)seq,
                       (unsigned long long)end.cursor, (unsigned long long)end.next_seq);
  }
  rill_bus_cursor_t *c = NULL;
  int rc = cursor_alloc(ms, &c);
  if (rc)
    return rc;
  for (uint32_t s = 0; s < shards; s++) {
    c->rd[s].cursor = rill__get64(p + CURSOR_HDR + s * CURSOR_SHARD);
    c->rd[s].next_seq = rill__get64(p + CURSOR_HDR + s * CURSOR_SHARD + 8);
  }
  *out = c;
  return 0;
}

uint64_t rill_bus_cursor_lost(const rill_bus_cursor_t *c) { return c->lost; }

uint64_t rill_bus_cursor_next_seq(const rill_bus_cursor_t *c, uint32_t shard) {
  return shard < c->ms->shards ? c->rd[shard].next_seq : 0;
}

/* ---- poll -------------------------------------------------------------- */

enum { EMPTY = 0, GOT, NO_ROOM, SKIPPED };

/* Reads shard s's next event that the filter takes into the buffer at
 * *used, skipping omitted records and rejected events (their room is
 * reused). GOT (with *e, and *used moved past it), EMPTY, NO_ROOM (the
 * buffer cannot take the record: it stays next), or an error. With one,
 * reads a single record: SKIPPED when it was not an event to return (or
 * the cursor was lapped to the oldest record instead). */
static int read_event(rill_bus_cursor_t *c, uint32_t s, const rill_filter_t *f, bool one,
                      size_t *used, rill_bus_event_t *e, bool *lagged) {
  rill_ring_bcast_t *r = c->ms->win[s];
  rill_ring_bcast_reader_t *rd = &c->rd[s];
  size_t off = RILL__ALIGN_UP(*used, (size_t)16);
  for (;;) {
    if (off >= c->cap)
      return NO_ROOM;
    uint64_t want = rd->next_seq;
    size_t len;
    int32_t type;
    int rc = rill_ring_bcast_read(r, rd, c->buf + off, c->cap - off, &len, &type);
    if (rc == RILL_EAGAIN)
      return EMPTY;
    if (rc == RILL_EMSGSIZE)
      return NO_ROOM;
    if (rc == RILL_ELAGGED) {
      c->lost += rd->lost_records;
      *lagged = true;
      if (one)
        return SKIPPED;
      continue;
    }
    if (rc)
      return rc;
    uint64_t seq, ts;
    if (len >= PREFIX) {
      memcpy(&seq, c->buf + off, 8);
      memcpy(&ts, c->buf + off + 8, 8);
    }
    if (len < PREFIX || seq != want || (type != REC_EVENT && type != REC_OMITTED))
      return rill__err(RILL_ECORRUPT,
                       "bus poll: shard %u, the record for seq %llu is not an event of this sink",
                       s, (unsigned long long)want);
    const uint8_t *data = c->buf + off + PREFIX;
    uint32_t n = (uint32_t)(len - PREFIX);
    if (type == REC_OMITTED || (f && !rill_filter_match(f, data, n))) {
      if (one)
        return SKIPPED;
      continue;
    }
    *e = (rill_bus_event_t){data, n, s, seq, ts};
    *used = off + len;
    return GOT;
  }
}

static int poll_shard_order(rill_bus_cursor_t *c, const rill_filter_t *f, rill_bus_event_t *ev,
                            size_t limit, size_t *n, bool *lagged) {
  uint32_t shards = c->ms->shards, start = c->rr;
  c->rr = (c->rr + 1) % shards;
  size_t used = 0;
  /* Passes over the shards, each taking a share of what is left, until
   * the limit, the buffer, or every shard runs out. */
  for (bool more = true; more && *n < limit;) {
    more = false;
    size_t share = (limit - *n + shards - 1) / shards;
    for (uint32_t i = 0; i < shards && *n < limit; i++) {
      uint32_t s = (start + i) % shards;
      for (size_t k = 0; k < share && *n < limit; k++) {
        int rc = read_event(c, s, f, false, &used, &ev[*n], lagged);
        if (rc < 0)
          return rc;
        if (rc == NO_ROOM)
          return 0;
        if (rc == EMPTY)
          break;
        ++*n;
        more = true;
      }
    }
  }
  return 0;
}

static bool head_less(struct head a, struct head b) {
  return a.ts < b.ts || (a.ts == b.ts && a.shard < b.shard);
}

static void heap_down(struct head *h, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    if (l < n && head_less(h[l], h[m]))
      m = l;
    if (l + 1 < n && head_less(h[l + 1], h[m]))
      m = l + 1;
    if (m == i)
      return;
    struct head t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
}

/* The timestamp of shard s's next record, without taking it: EMPTY or GOT. */
static int peek_ts(rill_bus_cursor_t *c, uint32_t s, uint64_t *ts, bool *lagged) {
  for (;;) {
    uint8_t prefix[PREFIX];
    size_t len;
    int32_t type;
    int rc = rill_ring_bcast_peek(c->ms->win[s], &c->rd[s], prefix, sizeof prefix, &len, &type);
    if (rc == RILL_EAGAIN)
      return EMPTY;
    if (rc == RILL_ELAGGED) {
      c->lost += c->rd[s].lost_records;
      *lagged = true;
      continue;
    }
    if (rc)
      return rc;
    if (len < PREFIX)
      return rill__err(RILL_ECORRUPT, "bus poll: shard %u holds a %zu-byte record", s, len);
    memcpy(ts, prefix + 8, 8);
    return GOT;
  }
}

/* A k-way merge on peeked timestamps: only the event taken is copied, so
 * the buffer needs room for what poll returns, not for every shard's
 * next event. The merge reads one record at a time: one the filter
 * rejects, or a lap between peek and read, sends the shard back to be
 * peeked again, so an event is only ever returned while it is the
 * earliest head. */
static int poll_time_order(rill_bus_cursor_t *c, const rill_filter_t *f, rill_bus_event_t *ev,
                           size_t limit, size_t *n, bool *lagged) {
  struct head *h = c->heap;
  size_t nh = 0, used = 0;
  for (uint32_t s = 0; s < c->ms->shards; s++) {
    uint64_t ts;
    int rc = peek_ts(c, s, &ts, lagged);
    if (rc < 0)
      return rc;
    if (rc == GOT)
      h[nh++] = (struct head){ts, s};
  }
  for (size_t i = nh / 2; i-- > 0;)
    heap_down(h, nh, i);
  while (nh && *n < limit) {
    uint32_t s = h[0].shard;
    int rc = read_event(c, s, f, true, &used, &ev[*n], lagged);
    if (rc < 0)
      return rc;
    if (rc == NO_ROOM)
      return 0;
    if (rc == GOT)
      ++*n;
    uint64_t ts;
    rc = peek_ts(c, s, &ts, lagged);
    if (rc < 0)
      return rc;
    if (rc == GOT)
      h[0].ts = ts;
    else
      h[0] = h[--nh];
    heap_down(h, nh, 0);
  }
  return 0;
}

int rill_bus_poll(rill_bus_cursor_t *c, const rill_filter_t *f, rill_bus_order_t order,
                  rill_bus_event_t *ev, size_t limit, size_t *n) {
  if (n)
    *n = 0;
  if (!c || !n || (!ev && limit))
    return rill__err(RILL_EINVAL, "bus poll: NULL cursor, events or count");
  bool lagged = false;
  int rc;
  if (order == RILL_BUS_ORDER_SHARD)
    rc = poll_shard_order(c, f, ev, limit, n, &lagged);
  else if (order == RILL_BUS_ORDER_TIME)
    rc = poll_time_order(c, f, ev, limit, n, &lagged);
  else
    return rill__err(RILL_EINVAL, "bus poll: unknown order %d", (int)order);
  if (rc)
    return rc;
  if (lagged)
    return rill__err(RILL_ELAGGED, "bus poll: lapped; %llu events lost since the cursor began",
                     (unsigned long long)c->lost);
  return 0;
}
