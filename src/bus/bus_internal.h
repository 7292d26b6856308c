#ifndef RILL_BUS_INTERNAL_H
#define RILL_BUS_INTERNAL_H

/*
 * The bus: lock-free ingest into per-producer SPSC rings, sharded workers
 * draining them into batches for a sink. This header holds what the bus's
 * files share: the structs and the design they follow. The files:
 *  - bus.c: options, create, shutdown and destroy;
 *  - producer.c: producers opened and retired;
 *  - publish.c: the producer side, its policies (DROP_OLDEST, BLOCK, ...)
 *    and batch publish;
 *  - worker.c: the workers that drain the rings and call the sink;
 *  - stats.c: the counters summed;
 *  - countsink.c, memsink.c, logsink.c: the sinks;
 *  - poll.c: cursors and poll, which read the memory sink.
 *
 * A slot is a 16-byte header {u64 ts_ns, u32 len, u32 0} and the payload
 * inline, padded to 8 bytes. The worker hands the sink pointers into the
 * slots (peek) and gives them back (release) only after on_batch returns,
 * so nothing is copied between publish and the sink.
 *
 * Producer publication (who the workers drain). The bus keeps a list of
 * producers under `lock`, touched only by open, close-after-shutdown,
 * stats and the worker that frees a drained producer. Open appends with a
 * sequence number and then bumps `gen` with a release store. Each worker
 * keeps its own array of producers and the last gen it saw; its hot loop
 * does one acquire load of gen, and only when it changed takes the lock
 * and adds the producers with a sequence above the highest it has. The
 * release/acquire pair on gen makes the appended node (and its rings)
 * visible to the worker before it reads them; the lock covers the list
 * walk itself.
 *
 * Retirement. rill_bus_producer_destroy stores `closed` with release after
 * the producer's last push, so a worker that loads it with acquire and
 * then finds the producer's rings for its shards empty has seen every
 * event: it drops the producer from its array and decrements
 * `workers_left` (acq_rel). The worker that takes it to zero is the last
 * one that can hold a pointer to the producer, so it unlinks it under the
 * lock, folds its counters into the bus's retired totals and frees it.
 * Workers never re-add it: it is below their highest sequence.
 *
 * Counters are single-writer: the producer (its padded block) or the worker
 * (its own), stored with relaxed atomics so stats may read them meanwhile.
 *
 * Drop-oldest. An SPSC ring's head belongs to its consumer, and the worker
 * delivers slots in place, so a producer that wants to discard the oldest
 * event must never take a slot the worker is reading. A DROP_OLDEST bus
 * keeps, per producer per shard, a 64-bit `claim` beside the ring: the
 * first slot nobody has taken. The worker takes a batch from claim c to
 * c + got (got <= tail - c), reads [c, c + got) in place, and gives them
 * back with a fetch_add of head (not the ring's plain store, since the
 * producer adds to head too). The ring module gives these moves
 * (src/ring/spsc_shared.h: head and tail loads, slots by position, a take
 * from a claim's position, an add to head); the claim and the protocol
 * are the bus's. A producer whose ring is full loads head h
 * and claim c; only when c == h (no batch in flight) it CASes claim from h
 * to h + 1, discards slot h (releasing its buf reference), adds 1 to head
 * and counts dropped_oldest; then it writes at tail as usual. When c != h
 * the worker is delivering from this ring: the producer waits until the
 * batch is given back (at most one on_batch call) and tries again.
 *
 * The worker does not CAS the claim from c to c + got: a producer dropping
 * at full speed moves the claim between the worker's load and its CAS, and
 * the stress test saw a worker starve that way (16 batches in 2 s). It
 * sets a busy bit with fetch_or instead, which always succeeds, works out
 * got from the claim it returned, and stores c + got. A busy claim is
 * never equal to a head, so producers treat it as a batch in flight.
 *
 * Why it is safe. Every step of claim (by either side) is followed by the
 * same step of head by the same side, so head <= claim, and the ranges
 * taken are disjoint and consecutive because only the busy worker or a
 * producer CAS that found the claim idle moves it. While the worker holds
 * [c, c + got), claim is c + got and head <= c; the producer's CAS needs
 * claim == head, so it cannot take anything until the worker adds got;
 * head therefore stays <= c, the producer writes only below head + slots
 * <= c + slots, and no slot of [c, c + got) is overwritten. Counts are
 * exact because a slot is either in one worker range (delivered once) or
 * in one producer range (dropped once), never both: whichever moved the
 * claim past it decided. No ABA: claim only grows, except for the worker's
 * undo of a batch it decided to hold (claim back to c, which it may store
 * plainly: claim != head meanwhile, so no producer CAS can succeed). And a
 * producer CAS from h that succeeds is safe whatever claim did in between:
 * head only grows and was h, and head <= claim == h, so head == claim at
 * that instant, which means no batch is in flight.
 *
 * Sleeping. Nobody naps on a timer any more; both sides sleep on futexes.
 *
 * A producer that must wait (BLOCK with its ring full, DROP_OLDEST with a
 * batch in flight) spins a little, then raises `waiting` in its own line
 * with a seq_cst exchange, loads head (and claim) again with seq_cst and
 * sleeps on its `wake` word up to its deadline. On such a bus the worker
 * gives slots back (head, or the claim it undoes) with seq_cst
 * read-modify-writes or stores and then loads the flags of the producers it
 * took from with seq_cst, and bumps `wake` for those that wait. All four
 * accesses of this store-then-load pattern are seq_cst, so in their single
 * total order one side always sees the other and no wakeup is lost. There
 * are no standalone fences: ThreadSanitizer does not model them, and with
 * the accesses themselves seq_cst it checks the code that ships. On x86
 * the exchange and the read-modify-write are the locked instructions a
 * fence would have cost, and a seq_cst load is a plain load; the worker
 * pays one locked add per ring it gives back to instead of a plain store
 * plus one mfence per batch.
 *
 * An idle worker spins 64 passes, then raises `sleeping` in its doorbell
 * with a seq_cst exchange (a full barrier on x86, as the fence it replaces
 * was), makes one more pass and sleeps on the doorbell's `ring` word. A
 * publish loads its shard's `sleeping` after committing and, when it is
 * up, bumps `ring`. Exact wakeups would need a seq_cst fence in every
 * publish between the tail store and that load. Measured (release build,
 * 2-core VM, publish of 64 bytes in a loop against a draining worker,
 * alternating 200k-publish chunks with and without a seq_cst fence plus
 * the flag load), the best chunks went from 6.5 to 6.8 ns when most
 * events were dropped and from 25.9 to 26.6 and 30.3 to 31.8 ns when every
 * event was written (BLOCK), and chunk means rose by 2 to 14 ns on this
 * noisy box: at or over the 1 to 2 ns we allow the hot path.
 * So the producer's load is relaxed and unfenced, and the worker's sleep
 * is bounded (IDLE_SLEEP_NS, 500 us): a wakeup lost in the store buffer's
 * window, rare, costs at most that much latency. Close bumps every
 * worker's and every producer's word after setting stop, so a closing bus
 * wakes everyone at once.
 */
#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "rill/bus.h"
#include "rill/mem.h"
#include "rill/ring.h"
#include "ring/spsc_shared.h"

#define SLOT_HDR 16u

struct slot_hdr {
  uint64_t ts;
  uint32_t len;
  uint32_t flags; /* SLOT_REF */
};

/* The slot holds a rill_buf_t (a reference of its own) after the header
 * instead of the payload: events over slot_payload and rill_buf_t ingest.
 * Slots are at least that big whatever slot_payload says. */
#define SLOT_REF 1u

/* What a producer publishes: bytes to copy inline, or (ref != NULL) a buf
 * to reference; len is the payload's length either way. */
struct item {
  const void *data;
  uint32_t len;
  const rill_buf_t *ref;
};

/* Drops the buf reference a slot may hold. Called by whoever discards the
 * slot: the worker after on_batch, a producer dropping the oldest, and
 * producer_free for what was never delivered. */
static inline void slot_release(uint8_t *sl) {
  struct slot_hdr h;
  memcpy(&h, sl, sizeof h);
  if (h.flags & SLOT_REF) {
    rill_buf_t b;
    memcpy(&b, sl + SLOT_HDR, sizeof b);
    rill_buf_release(&b);
  }
}

struct prod_counters {
  uint64_t ingested;
  uint64_t dropped_newest;
  uint64_t dropped_sampled;
  uint64_t failed_full;
  uint64_t blocked_timeouts;
  uint64_t dropped_oldest;
  uint64_t sample_ctr; /* events seen in the current stretch of pressure */
} __attribute__((aligned(64)));

/* A blocked producer's wakeup, on its own line: the worker reads `waiting`
 * after each batch it gives back, and must not pull the producer's hot
 * counters line for it. */
struct prod_wait {
  uint32_t waiting; /* the producer is about to sleep, or sleeps, on wake */
  uint32_t wake;    /* futex word: bumped to wake it */
} __attribute__((aligned(64)));

/* An idle worker's doorbell, on its own line: producers read `sleeping`
 * after every publish. */
struct doorbell {
  uint32_t sleeping; /* the worker is about to sleep, or sleeps, on ring */
  uint32_t ring;     /* futex word: bumped to wake it */
} __attribute__((aligned(64)));

/* DROP_OLDEST: the first slot of a ring not yet taken by the worker (see
 * "Drop-oldest" above). Written by the worker (fetch_or and store per
 * batch) and by the producer (CAS per drop), so each sits on its own line
 * away from the producer's hot counters. */
struct claim {
  uint64_t v;
} __attribute__((aligned(64)));

/* Set in a claim while the worker works out its take (indexes never reach
 * 2^63). */
#define CLAIM_BUSY ((uint64_t)1 << 63)

struct rill_bus_producer {
  struct prod_counters c; /* first: the producer's hot line */
  struct prod_wait wt;
  rill_bus_t *bus;
  rill_ring_spsc_t **rings; /* one per shard */
  struct claim *claim;      /* DROP_OLDEST only: one per shard, else NULL */
  uint16_t *group;       /* batch publish: shard -> its run in a pass, GROUP_NONE between passes */
  uint64_t seq;          /* open order, from 1 */
  int closed;            /* release by close, acquire by workers */
  uint32_t workers_left; /* workers that have not retired it yet */
  struct rill_bus_producer *next, *prev;
};

struct worker {
  rill_bus_t *bus;
  uint32_t idx;
  pthread_t tid;
  bool started;
  /* Written only by this worker. */
  uint64_t delivered __attribute__((aligned(64)));
  uint64_t batches;
  /* Private to the worker thread. */
  rill_bus_producer_t **prods;
  size_t *take;
  uint64_t *from; /* DROP_OLDEST: where each take starts (its claim) */
  bool *closed_seen;
  size_t nprods, cap;
  uint64_t gen_seen, max_seq;
  rill_bus_event_t *ev;
  uint8_t **refs;      /* the batch's slots that hold a buf reference */
  uint64_t hold_until; /* a held batch is due then; UINT64_MAX for none */
  struct doorbell bell;
};

struct rill_bus {
  rill_bus_opts_t o;
  rill_bus_sink_t sink;
  uint32_t slot_size;
  uint64_t *shard_seq; /* next seq per shard; written by its worker only */
  struct worker *w;
  struct doorbell **bell; /* per shard: its worker's doorbell */
  bool wake_producers;    /* BLOCK or DROP_OLDEST: producers may sleep */
  /* Shutdown flags: release by close, acquire by workers and producers. */
  int stop;  /* ingest closed; workers drain and exit */
  int abort; /* workers exit after the current batch */
  int closed_done;
  uint64_t gen; /* bumped (release) after each open */
  pthread_mutex_t lock;
  rill_bus_producer_t *head; /* open producers and closed ones not yet freed */
  uint64_t next_seq;
  bool joined;
  struct prod_counters retired; /* counters of freed producers */
};

/* In rill_bus_producer.group: the shard has no run in this pass (batch publish). */
#define GROUP_NONE UINT16_MAX

/* The worker thread (worker.c); arg is its struct worker. */
void *rill__bus_worker_main(void *arg);

/* Under bus->lock: unlinks p, keeps its counters, frees it (producer.c). */
void rill__bus_producer_retire_locked(rill_bus_t *bus, rill_bus_producer_t *p);

/* ---- the memory sink (memsink.c) and its readers (poll.c) ------------ */

#define REC_EVENT   0 /* prefix and payload */
#define REC_OMITTED 1 /* prefix only: the event was larger than the window takes */
#define PREFIX      16u

struct rill_bus_memsink {
  uint32_t shards;
  uint64_t window;
  size_t max_payload;
  uint64_t id; /* random at create: a saved cursor names the sink it came from */
  rill_ring_bcast_t **win;
  rill_bus_sink_t next;
  /* Added with relaxed atomics: workers of different shards run at once. */
  uint64_t retained, omitted;
};

/* The next event of a shard, for the time merge. */
struct head {
  uint64_t ts;
  uint32_t shard;
};

struct rill_bus_cursor {
  rill_bus_memsink_t *ms;
  uint32_t rr; /* first shard of the next RILL_BUS_ORDER_SHARD poll */
  uint64_t lost;
  rill_ring_bcast_reader_t *rd; /* one per shard */
  struct head *heap;            /* RILL_BUS_ORDER_TIME: a min-heap of shards' next events */
  uint8_t *buf;                 /* what poll returns points in here */
  size_t cap;
};

#endif
