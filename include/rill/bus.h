/*
 * rill bus: the sharded in-process event bus.
 *
 * Producers publish events without a lock into per-shard SPSC rings they
 * own; worker threads drain the rings into batches for a sink: the
 * counting sink, the log sink (into a rill_log_t), or the memory sink,
 * whose window consumers poll through cursors, optionally through a
 * filter (rill/filter.h).
 */
#ifndef RILL_BUS_H
#define RILL_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "filter.h"
#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the bus: lock-free ingest, sharded workers, sinks ----------------- */

/*
 * A bus has `shards` shards. Each producer handle owns one SPSC ring per
 * shard, so publishing is the inline SPSC push and shares nothing with
 * other producers. Worker threads each own a fixed set of shards (shard s
 * belongs to worker s % workers) and drain every producer's ring for those
 * shards into batches for the sink.
 *
 * Order: events of one producer to one shard reach the sink in the order
 * they were published; across producers, order within a shard is the
 * order the worker drained them. Each event gets a per-shard sequence
 * number (dense, from 0) when its batch is delivered.
 *
 * Events are delivered in place: rill_bus_event_t.data points into the ring
 * slot, valid only during on_batch. Payloads up to slot_payload travel
 * inline in the slot; a rill_buf_t (rill_bus_publish_buf) and any payload
 * over slot_payload (copied into a new buf: one allocation) travel as a
 * reference held by the slot, up to max_payload. Then data points at the
 * buf's bytes (no copy), and the bus releases the reference after on_batch
 * returns, or when the event is dropped (DROP_OLDEST) or left undelivered
 * (a shutdown that timed out; released by rill_bus_destroy).
 *
 * Sleeping: a RILL_BUS_BLOCK producer waiting for room sleeps on a futex
 * that the worker signals when it gives slots of that ring back; an idle
 * worker sleeps on a futex doorbell that a publish rings. The publish side
 * checks the doorbell without a fence (a fence per publish costs more than
 * the wakeup is worth), so a wakeup can rarely be missed; an idle worker
 * therefore never sleeps longer than 500 us at a time. rill_bus_shutdown
 * wakes every worker and every blocked producer.
 */

#define RILL_BUS_MAX_SHARDS 1024u

/** What a producer does when its ring for the event's shard is full. */
typedef enum rill_bus_policy {
  /* Drop the event, count it, return 0. */
  RILL_BUS_DROP_NEWEST = 0,
  /* Return RILL_EFULL, count it. */
  RILL_BUS_FAIL,
  /* Wait (asleep) for room up to block_timeout_ns, then RILL_ETIMEDOUT;
   * RILL_ECLOSED at once when the bus shuts down. */
  RILL_BUS_BLOCK,
  /* Under pressure (under 1/4 of the ring free) keep 1 in sample_n. */
  RILL_BUS_SAMPLE,
  /* Discard the oldest event the worker has not taken, count it, publish
   * the new one, return 0 (see below). */
  RILL_BUS_DROP_OLDEST,
} rill_bus_policy_t;

/*
 * RILL_BUS_DROP_OLDEST never waits for the ring to drain, with one
 * exception: when the worker is delivering a batch from that very ring at
 * that moment (its slots are read in place), the producer waits for that
 * batch to be given back, a wait bounded by one on_batch call, and then
 * drops. A sink that never returns from on_batch stalls such a producer.
 */

/** One delivered event. */
typedef struct rill_bus_event {
  const void *data; /* the payload, in the slot or the buf: valid during on_batch */
  uint32_t len;     /* payload bytes */
  uint32_t shard;   /* 0..shards-1 */
  uint64_t seq;     /* per shard, dense from 0, assigned by the worker */
  uint64_t ts_ns;   /* rill_time_ns() when it was published */
} rill_bus_event_t;

/** Where a bus delivers. on_batch is called by worker threads, possibly by
 *  several at once for different shards; each call holds 1..batch_max
 *  events of one shard. flush and then close are called once, by
 *  rill_bus_shutdown, after the workers are stopped. flush and close may be
 *  NULL. */
typedef struct rill_bus_sink {
  void (*on_batch)(void *ctx, const rill_bus_event_t *ev, size_t n);
  void (*flush)(void *ctx);
  void (*close)(void *ctx);
  void *ctx;
} rill_bus_sink_t;

/** Bus options; zero fields take the defaults. */
typedef struct rill_bus_opts {
  uint32_t shards;           /* 1..RILL_BUS_MAX_SHARDS; default 4 */
  uint32_t ring_slots;       /* per producer per shard, a power of two >= 2; default 4096 */
  uint32_t slot_payload;     /* largest inline payload, 1..65520; default 120 */
  rill_bus_policy_t policy;  /* default RILL_BUS_DROP_NEWEST */
  uint64_t block_timeout_ns; /* RILL_BUS_BLOCK; default 1 s; RILL_FOREVER: no bound */
  uint32_t sample_n;         /* RILL_BUS_SAMPLE: keep 1 in sample_n; default 10 */
  uint32_t workers;          /* threads, 1..shards; default 1 */
  rill_bus_sink_t *sink;     /* required; copied at create */
  uint32_t batch_min;        /* default 1 */
  uint32_t batch_max;        /* >= batch_min; default 256 */
  uint64_t max_delay_ns;     /* how long a batch under batch_min may wait; default 1 ms */
  /* Largest payload, sent by reference over slot_payload; >= slot_payload;
   * default 16 MiB. */
  uint32_t max_payload;
  /* A worker whose pass over its shards delivered fewer than batch_max / 8
   * events waits this long before the next pass, so the producers fill
   * its next batches: a worker that keeps up one event at a time pulls
   * every slot's cache line across the cores while it is being written,
   * which halves end-to-end throughput. It adds up to linger_ns to the
   * delivery of events that arrive meanwhile; publish is not affected.
   * Default 2 us; RILL_BUS_LINGER_NONE for none. */
  uint64_t linger_ns;
} rill_bus_opts_t;

#define RILL_BUS_LINGER_NONE UINT64_MAX

/** Totals since create. Pass shard_fill (an array of `shards` entries) to
 *  get each shard's fill summed over the producers' rings, or NULL. */
typedef struct rill_bus_stats {
  uint64_t ingested; /* publishes that reached a ring or a counted drop */
  uint64_t delivered;
  uint64_t dropped_newest;
  uint64_t dropped_sampled;
  uint64_t failed_full;
  uint64_t blocked_timeouts;
  uint64_t dropped_oldest; /* published, then discarded for a newer one */
  uint64_t batches;
  uint64_t *shard_fill; /* in: NULL or shards entries; out: filled */
} rill_bus_stats_t;

typedef struct rill_bus rill_bus_t;
typedef struct rill_bus_producer rill_bus_producer_t;

/** Creates a bus and starts its workers. RILL_EINVAL (with rill_errmsg)
 *  for options out of range or a missing sink; RILL_ENOMEM; or the error of
 *  pthread_create. */
int rill_bus_create(rill_bus_t **out, const rill_bus_opts_t *opts);

/** Stops ingest (later publishes get RILL_ECLOSED), lets the workers drain
 *  every ring into the sink, joins them and calls the sink's flush and
 *  close. It wakes sleeping workers and producers blocked in a BLOCK or
 *  DROP_OLDEST wait at once; those return RILL_ECLOSED (not counted).
 *  When timeout_ns passes first (RILL_FOREVER: never), the workers stop after their
 *  current batch and *left (may be NULL) says how many published events
 *  were not delivered; 0 otherwise. Publishes must not run concurrently
 *  with shutdown: one that does is delivered, counted in *left, or
 *  refused with RILL_ECLOSED. A sink that never returns from on_batch
 *  blocks shutdown. RILL_ETIMEDOUT when events were left, RILL_ECLOSED on
 *  a second call. */
int rill_bus_shutdown(rill_bus_t *bus, uint64_t timeout_ns, uint64_t *left);

/** Frees the bus (shutting it down first with a 1 s timeout if needed) and every
 *  producer still open: their handles become invalid. NULL is a no-op. */
void rill_bus_destroy(rill_bus_t *bus);

/** Opens a producer: one SPSC ring per shard, used by one thread at a time.
 *  May be called while the workers run. RILL_ECLOSED after shutdown. */
int rill_bus_producer_create(rill_bus_producer_t **out, rill_bus_t *bus);

/** Destroys a producer. Its events already published are still delivered:
 *  the workers drain its rings and then free them. The handle is invalid
 *  afterwards. NULL is a no-op. */
void rill_bus_producer_destroy(rill_bus_producer_t *p);

/** Publishes len bytes (0..max_payload) to the shard
 *  rill_hash_reduce(rill_hash64(data, len), shards). Up to slot_payload,
 *  copies them into the ring, takes no lock and allocates nothing; over
 *  it, copies them into a new rill_buf_t (one allocation, fine for big
 *  events) sent by reference. 0 when published or dropped by policy
 *  (DROP_NEWEST, SAMPLE, DROP_OLDEST); RILL_EFULL (FAIL), RILL_ETIMEDOUT
 *  (BLOCK), RILL_EMSGSIZE over max_payload, RILL_ENOMEM for the copy,
 *  RILL_ECLOSED after shutdown (or when it shuts down while BLOCK waits). */
int rill_bus_publish(rill_bus_producer_t *p, const void *data, uint32_t len);

/** rill_bus_publish to shard key % shards: events of one key keep their
 *  order. */
int rill_bus_publish_key(rill_bus_producer_t *p, uint64_t key, const void *data, uint32_t len);

/** Publishes b's bytes without copying them, whatever their size (up to
 *  max_payload), to the shard rill_hash_reduce(rill_hash64(b->data,
 *  b->len), shards) as rill_bus_publish would. The slot takes a reference
 *  of its own (rill_buf_clone: no allocation); the caller keeps b and may
 *  release it at once. The sink sees rill_bus_event_t.data == b->data; the bus
 *  drops its reference after on_batch returns, or when the event is
 *  dropped or left undelivered. Returns as rill_bus_publish does;
 *  RILL_EINVAL for a NULL p or b, RILL_ERANGE when b has 2^31 views. */
int rill_bus_publish_buf(rill_bus_producer_t *p, const rill_buf_t *b);

/** rill_bus_publish_buf to shard key % shards. */
int rill_bus_publish_buf_key(rill_bus_producer_t *p, uint64_t key, const rill_buf_t *b);

/** Publishes n events, each to its hashed shard as rill_bus_publish does,
 *  copying each into its ring's next free slot and publishing each ring
 *  once per call (one store of its tail, one doorbell), with one timestamp
 *  for the whole call; an event over slot_payload goes alone, by
 *  reference, as rill_bus_publish sends it. Events that do not fit take
 *  the policy one by one, as do all of them on a RILL_BUS_SAMPLE bus.
 *  Allocates nothing for events up to slot_payload. Stops at the first
 *  error (RILL_EFULL, RILL_ETIMEDOUT, RILL_EMSGSIZE over max_payload,
 *  RILL_ENOMEM, RILL_ECLOSED) and returns it; *done (may be NULL) says how
 *  many events were handled before it (published or dropped by policy).
 *  0 when all were handled. */
int rill_bus_publish_batch(rill_bus_producer_t *p, const rill_iov_t *iov, size_t n, size_t *done);

/** rill_bus_publish_batch with every event to shard key % shards, in
 *  order: no hash per event, one ring. For a batch whose events share a
 *  key (one stream, one device, one connection). Returns as
 *  rill_bus_publish_batch does. */
int rill_bus_publish_batch_key(rill_bus_producer_t *p, uint64_t key, const rill_iov_t *iov,
                               size_t n, size_t *done);

/** Snapshot of the totals (producers' counters summed, including destroyed
 *  ones). Takes the producer-list lock; not for the hot path. */
void rill_bus_stats(const rill_bus_t *bus, rill_bus_stats_t *st);

/** Per-shard and total counts kept by the counting sink. Updated with
 *  relaxed atomic adds; read them with __atomic loads while the bus runs,
 *  or plainly after rill_bus_shutdown. */
typedef struct rill_bus_counters {
  uint64_t events;
  uint64_t bytes;
  uint64_t batches;
  uint64_t flushes;
  uint64_t closes;
  uint64_t shard_events[RILL_BUS_MAX_SHARDS];
  uint64_t shard_bytes[RILL_BUS_MAX_SHARDS];
} rill_bus_counters_t;

/** Fills *sink with the built-in counting sink, which adds into *c (zeroed
 *  here). c must outlive the bus. */
void rill_bus_sink_counting(rill_bus_sink_t *sink, rill_bus_counters_t *c);

/* ---- log sink: a bus that appends to a log ----------------------------- */

/* The log sink lives with the bus, so that a log user does not pull the
 * bus in; a bus user who wants it includes rill/log.h for the log. */
/* Guarded as in log.h: C99 has no repeated typedef. */
#ifndef RILL__LOG_T
#define RILL__LOG_T
typedef struct rill_log rill_log_t;
#endif

/** What the log sink did: appended and failed events, and the error of the
 *  last failure (0 if none). Added with relaxed atomics by the bus's
 *  workers; read them after rill_bus_shutdown, or with __atomic loads. */
typedef struct rill_bus_log_sink {
  rill_log_t *log;
  uint64_t appended;
  uint64_t failed;
  int last_error;
} rill_bus_log_sink_t;

/** Fills *sink so that a bus appends every event it delivers to l, one
 *  record per event (the payload; the record gets the log's own sequence
 *  number and time), a batch per rill_log_append_batch; flush syncs the
 *  log. A batch that cannot be appended (RILL_ENOSPC, say) is counted in
 *  s->failed, not retried: a sink cannot push back on a bus. l must
 *  outlive the bus; several workers may append at once. Consumers read the
 *  events back with rill_log_read_range, from any thread or process. */
void rill_bus_sink_log(rill_bus_sink_t *sink, rill_bus_log_sink_t *s, rill_log_t *l);

/* ---- memory sink and poll: a retained window consumers read ------------ */

/*
 * The memory sink keeps, per shard, the most recent events in a window of
 * window_bytes (a bcast ring: the shard's worker writes, any number of
 * consumers read and are never waited for). Consumers read it with
 * rill_bus_poll through a cursor: per shard, the position and sequence
 * number of the next event. A cursor serialises to a few bytes
 * (docs/FORMATS.md) and loads back, so a consumer that restarts resumes at
 * exactly the next event it had not seen, provided the window still holds
 * it; events the window dropped first are counted as lost, never silently
 * skipped.
 *
 * Each retained event costs 32 bytes of headers plus its payload rounded
 * up to 16; an event larger than the window's max payload (window_bytes /
 * 8 - 32) is counted as omitted and not retained.
 */
typedef struct rill_bus_memsink rill_bus_memsink_t;
typedef struct rill_bus_cursor rill_bus_cursor_t;

typedef struct rill_bus_memsink_opts {
  uint32_t shards;       /* the bus's shard count, 1..RILL_BUS_MAX_SHARDS; required */
  uint64_t window_bytes; /* per shard, a power of two in 4096..2^32; default 1 MiB */
  rill_bus_sink_t *next; /* NULL, or a sink that also gets every batch (after the window) */
} rill_bus_memsink_opts_t;

/** Creates a memory sink. RILL_EINVAL for options out of range, RILL_ENOMEM. */
int rill_bus_memsink_create(rill_bus_memsink_t **out, const rill_bus_memsink_opts_t *opts);

/** Fills *sink so that a bus delivers into ms (pass it as opts.sink). One
 *  bus per memory sink. */
void rill_bus_sink_memsink(rill_bus_sink_t *sink, rill_bus_memsink_t *ms);

/** Frees the sink. Its cursors must be destroyed first, and the bus
 *  delivering into it shut down first. NULL is a no-op. */
void rill_bus_memsink_destroy(rill_bus_memsink_t *ms);

/** Largest payload the window retains (window_bytes / 8 - 32). */
size_t rill_bus_memsink_max_payload(const rill_bus_memsink_t *ms);

/** A memory sink's totals since create (relaxed loads: a snapshot). */
typedef struct rill_bus_memsink_stats {
  uint64_t retained; /* events written into a window */
  uint64_t omitted;  /* events larger than the window's max payload, not retained */
} rill_bus_memsink_stats_t;

/** A snapshot of the sink's totals, from any thread. */
void rill_bus_memsink_stats(const rill_bus_memsink_t *ms, rill_bus_memsink_stats_t *out);

/** Where a new cursor starts. */
typedef enum rill_bus_from {
  RILL_BUS_FROM_OLDEST = 0, /* the oldest event each shard's window still holds */
  RILL_BUS_FROM_NOW,        /* the next event delivered from now on */
} rill_bus_from_t;

/** Order of the events one rill_bus_poll returns. */
typedef enum rill_bus_order {
  /* Each shard's events in sequence order; shards taken in turn, starting
   * one further each call, so no shard starves. */
  RILL_BUS_ORDER_SHARD = 0,
  /* Merged across shards by publish timestamp: each event returned is the
   * earliest of the shards' next events (ties by shard). Within a shard
   * events stay in sequence order, which is timestamp order for one
   * producer; events of two producers on one shard are in the order the
   * worker drained them, so their timestamps may interleave. An event
   * delivered after a poll may carry an earlier timestamp than one that
   * poll returned. */
  RILL_BUS_ORDER_TIME,
} rill_bus_order_t;

/** Opens a cursor on ms, with a private buffer for the events poll
 *  returns. RILL_EINVAL, RILL_ENOMEM. A cursor is used by one thread at a
 *  time; any number of cursors may poll one sink at once. */
int rill_bus_cursor_create(rill_bus_cursor_t **out, rill_bus_memsink_t *ms, rill_bus_from_t from);

/** Frees a cursor. NULL is a no-op. */
void rill_bus_cursor_destroy(rill_bus_cursor_t *c);

/** Bytes rill_bus_cursor_save writes for this cursor: 32 + 16 per shard. */
size_t rill_bus_cursor_size(const rill_bus_cursor_t *c);

/** Serialises the cursor's position (docs/FORMATS.md) into buf. *len (may
 *  be NULL) gets the size. RILL_ENOBUFS when cap is smaller. */
int rill_bus_cursor_save(const rill_bus_cursor_t *c, void *buf, size_t cap, size_t *len);

/** A cursor at the position saved in buf, for the same memory sink (which
 *  has to be the one the position was saved from: a sink gets a random
 *  identity at create). RILL_EVERSION for a wrong magic or version,
 *  RILL_ECORRUPT for a wrong length, checksum or an impossible position,
 *  RILL_EINVAL for a position saved from another sink or shard count. */
int rill_bus_cursor_load(rill_bus_cursor_t **out, rill_bus_memsink_t *ms, const void *buf,
                         size_t len);

/** Events this cursor lost because a window dropped them before it read
 *  them, since it was opened or loaded. */
uint64_t rill_bus_cursor_lost(const rill_bus_cursor_t *c);

/** The sequence number of the next event the cursor will read from shard. */
uint64_t rill_bus_cursor_next_seq(const rill_bus_cursor_t *c, uint32_t shard);

/** Reads up to limit events past the cursor into ev and moves the cursor
 *  past them, and past the events the filter rejects (f NULL takes every
 *  event). ev[i].data points into the cursor's buffer: valid until the
 *  next poll or destroy of this cursor. *n gets the count, 0 when nothing is
 *  new. Allocates nothing and never waits for the writer. Returns 0;
 *  RILL_ELAGGED when the cursor was lapped on some shard (the lost events
 *  are added to rill_bus_cursor_lost; the *n events returned are valid and
 *  the next poll goes on from the oldest event held); RILL_ECORRUPT when a
 *  window holds a record that cannot be (the cursor does not point at
 *  one); RILL_EINVAL for a bad order. */
int rill_bus_poll(rill_bus_cursor_t *c, const rill_filter_t *f, rill_bus_order_t order,
                  rill_bus_event_t *ev, size_t limit, size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* RILL_BUS_H */
