/*
 * The memory sink: a retained window per shard that consumers read
 * through cursors (poll.c).
 *
 * Each shard's window is a bcast ring. Only the shard's worker calls
 * on_batch for it, so each ring has the one writer bcast wants, and the
 * writer never waits for a consumer: a slow consumer is lapped, and the
 * ring tells it exactly how many records it lost. A record is the event:
 * a 16-byte prefix {u64 seq, u64 ts_ns} and the payload. The record's
 * bcast sequence and the event's per-shard sequence are the same number
 * (the sink sees every event of its shard from 0); poll checks that they
 * agree, which is what turns a cursor pointing anywhere but at a record
 * into RILL_ECORRUPT rather than garbage events.
 *
 * A cursor is, per shard, a bcast reader (byte position, next sequence).
 * Poll copies events into the cursor's buffer, so what it returns stays
 * valid however far the writer moves on. Nothing is allocated per poll.
 */
#include <string.h>
#include <sys/random.h>

#include "bus/bus_internal.h"

#define WINDOW_DEFAULT ((uint64_t)1 << 20)
#define WINDOW_MIN     ((uint64_t)4096)
#define WINDOW_MAX     ((uint64_t)1 << 32)

/* ---- the sink ---------------------------------------------------------- */

static void memsink_batch(void *ctx, const rill_bus_event_t *ev, size_t n) {
  rill_bus_memsink_t *ms = ctx;
  rill_ring_bcast_t *r = ms->win[ev[0].shard]; /* a batch is one shard */
  uint64_t omitted = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t prefix[2] = {ev[i].seq, ev[i].ts_ns};
    rill_iov_t parts[2] = {{prefix, PREFIX}, {ev[i].data, ev[i].len}};
    bool fits = ev[i].len <= ms->max_payload;
    /* Cannot fail: the type is valid and the size checked. An omitted
     * event still takes a record, so sequences stay dense in the window. */
    rill_ring_bcast_writev(r, fits ? REC_EVENT : REC_OMITTED, parts, fits ? 2 : 1);
    omitted += !fits;
  }
  __atomic_fetch_add(&ms->retained, n - omitted, __ATOMIC_RELAXED);
  if (omitted)
    __atomic_fetch_add(&ms->omitted, omitted, __ATOMIC_RELAXED);
  if (ms->next.on_batch)
    ms->next.on_batch(ms->next.ctx, ev, n);
}

static void memsink_flush(void *ctx) {
  rill_bus_memsink_t *ms = ctx;
  if (ms->next.flush)
    ms->next.flush(ms->next.ctx);
}

static void memsink_close(void *ctx) {
  rill_bus_memsink_t *ms = ctx;
  if (ms->next.close)
    ms->next.close(ms->next.ctx);
}

int rill_bus_memsink_create(rill_bus_memsink_t **out, const rill_bus_memsink_opts_t *opts) {
  if (!out || !opts)
    return rill__err(RILL_EINVAL, "memsink: NULL out or opts");
  *out = NULL;
  uint64_t window = opts->window_bytes ? opts->window_bytes : WINDOW_DEFAULT;
  if (opts->shards < 1 || opts->shards > RILL_BUS_MAX_SHARDS)
    return rill__err(RILL_EINVAL, "memsink: shards %u not in 1..%u", opts->shards,
                     RILL_BUS_MAX_SHARDS);
  if (!RILL__IS_POW2(window) || window < WINDOW_MIN || window > WINDOW_MAX)
    return rill__err(RILL_EINVAL, "memsink: window_bytes %llu is not a power of two in 4096..2^32",
                     (unsigned long long)window);
  if (opts->next && !opts->next->on_batch)
    return rill__err(RILL_EINVAL, "memsink: next sink without on_batch");
  rill_bus_memsink_t *ms = rill__calloc(1, sizeof *ms);
  if (!ms)
    goto fail_nomem;
  ms->shards = opts->shards;
  ms->window = window;
  if (opts->next)
    ms->next = *opts->next;
  /* The identity only has to differ between sinks a consumer could
   * confuse; the clock stands in if getrandom is refused. */
  if (getrandom(&ms->id, sizeof ms->id, GRND_NONBLOCK) != sizeof ms->id)
    ms->id = rill_hash64_seed(&ms, sizeof ms, rill_time_wall_ns());
  ms->win = rill__calloc(ms->shards, sizeof *ms->win);
  if (!ms->win)
    goto undo_ms;
  for (uint32_t s = 0; s < ms->shards; s++) {
    int rc = rill_ring_bcast_create(&ms->win[s], window);
    if (rc) {
      rill_bus_memsink_destroy(ms);
      return rc;
    }
  }
  ms->max_payload = rill_ring_bcast_max_payload(ms->win[0]) - PREFIX;
  *out = ms;
  return 0;
undo_ms:
  rill__free(ms);
fail_nomem:
  return rill__err(RILL_ENOMEM, "memsink: no memory");
}

void rill_bus_sink_memsink(rill_bus_sink_t *sink, rill_bus_memsink_t *ms) {
  sink->on_batch = memsink_batch;
  sink->flush = memsink_flush;
  sink->close = memsink_close;
  sink->ctx = ms;
}

void rill_bus_memsink_destroy(rill_bus_memsink_t *ms) {
  if (!ms)
    return;
  if (ms->win)
    for (uint32_t s = 0; s < ms->shards; s++)
      rill_ring_bcast_destroy(ms->win[s]);
  rill__free(ms->win);
  rill__free(ms);
}

size_t rill_bus_memsink_max_payload(const rill_bus_memsink_t *ms) { return ms->max_payload; }

void rill_bus_memsink_stats(const rill_bus_memsink_t *ms, rill_bus_memsink_stats_t *out) {
  out->retained = __atomic_load_n(&ms->retained, __ATOMIC_RELAXED);
  out->omitted = __atomic_load_n(&ms->omitted, __ATOMIC_RELAXED);
}
