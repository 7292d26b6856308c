/*
 * Publish: the producer side. An event goes into the next slot of its
 * shard's ring, inline or by buf reference; a full ring applies the bus's
 * policy (DROP_OLDEST and BLOCK wait as "Drop-oldest" and "Sleeping" in
 * bus_internal.h describe). Batch publish groups events by shard.
 */
#include <string.h>

#include "bus/bus_internal.h"

/* Longest a DROP_OLDEST producer sleeps waiting for a batch in flight
 * before it looks again (the worker's wakeup is the normal way out). */
#define OLDEST_SLEEP_NS 1000000u

/* After a publish to shard: wakes its worker if it sleeps. Relaxed and
 * without a fence on purpose (see "Sleeping" in bus_internal.h): a miss costs at
 * most IDLE_SLEEP_NS. The exchange lets one producer make the syscall. */
static inline void doorbell_ring(rill_bus_t *bus, uint32_t shard) {
  struct doorbell *d = bus->bell[shard];
  if (RILL_UNLIKELY(__atomic_load_n(&d->sleeping, __ATOMIC_RELAXED)) &&
      __atomic_exchange_n(&d->sleeping, 0, __ATOMIC_RELAXED))
    rill__futex_bump(&d->ring);
}

/* A producer about to sleep: raises its flag and returns the wake word to
 * sleep on. The caller then checks its condition again and either sleeps
 * (producer_sleep) or lowers the flag (producer_unarm). */
static uint32_t producer_arm(rill_bus_producer_t *p) {
  /* Acquire: pairs with futex_bump, so a bump we see comes with the room
   * (or stop) it announced. Loaded before the condition is checked, so a
   * bump after the check changes the word and the futex does not sleep. */
  uint32_t w0 = __atomic_load_n(&p->wt.wake, __ATOMIC_ACQUIRE);
  /* seq_cst: our flag store and the caller's next seq_cst load of head (or
   * claim) against the worker's seq_cst give-back and its seq_cst load of
   * the flag (worker_wake_producers): of the two, one sees the other.
   * Either we find the room, or it finds the flag and wakes us. */
  (void)__atomic_exchange_n(&p->wt.waiting, 1, __ATOMIC_SEQ_CST);
  return w0;
}

static void producer_unarm(rill_bus_producer_t *p) {
  __atomic_store_n(&p->wt.waiting, 0, __ATOMIC_RELAXED);
}

static void producer_sleep(rill_bus_producer_t *p, uint32_t w0, uint64_t ns) {
  rill__futex_wait(&p->wt.wake, w0, ns);
  producer_unarm(p);
}

static inline void cnt_inc(uint64_t *c) {
  __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

/* The slow path: the ring for the shard is full, or under pressure for
 * SAMPLE. Applies the policy. */
static int publish_full(rill_bus_producer_t *p, uint32_t shard, const struct item *it);

/* A payload into its slot. From 8 to 64 bytes, the usual event, with
 * two overlapping moves of 8, 16 or 32 bytes inline (the largest class
 * tested first, one compare for the 64-byte event): a call to memcpy
 * costs as much as the copy at that size, and the registers the caller
 * spills around it as much again. */
static inline void copy_payload(uint8_t *d, const uint8_t *s, uint32_t len) {
  if (RILL_LIKELY(len - 33u < 32u)) {
    __builtin_memcpy(d, s, 32);
    __builtin_memcpy(d + len - 32, s + len - 32, 32);
  } else if (len - 17u < 16u) {
    __builtin_memcpy(d, s, 16);
    __builtin_memcpy(d + len - 16, s + len - 16, 16);
  } else if (len - 8u < 9u) {
    __builtin_memcpy(d, s, 8);
    __builtin_memcpy(d + len - 8, s + len - 8, 8);
  } else if (len) {
    memcpy(d, s, len);
  }
}

/* An event into a reserved slot: its header, then its payload inline. */
static inline void write_slot(uint8_t *sl, uint64_t ts, const void *data, uint32_t len) {
  struct slot_hdr h = {ts, len, 0};
  memcpy(sl, &h, sizeof h);
  copy_payload(sl + SLOT_HDR, data, len);
}

/* One event into the next slot of the shard's ring, and the doorbell.
 * RILL_EAGAIN when full; the error of rill_buf_clone (nothing pushed). */
static inline int push_slot(rill_bus_producer_t *p, uint32_t shard, const struct item *it) {
  rill_ring_spsc_t *r = p->rings[shard];
  size_t got;
  uint8_t *sl = rill_ring_spsc_reserve(r, 1, &got);
  if (RILL_UNLIKELY(!got))
    return RILL_EAGAIN;
  if (RILL_LIKELY(!it->ref)) {
    write_slot(sl, rill_time_ns(), it->data, it->len);
  } else {
    /* The slot holds a reference of its own, released by whoever takes
     * the slot last (slot_release). */
    rill_buf_t v;
    int rc = rill_buf_clone(&v, it->ref);
    if (RILL_UNLIKELY(rc))
      return rc;
    struct slot_hdr h = {rill_time_ns(), it->len, SLOT_REF};
    memcpy(sl, &h, sizeof h);
    memcpy(sl + SLOT_HDR, &v, sizeof v);
  }
  rill_ring_spsc_commit(r, 1);
  doorbell_ring(p->bus, shard);
  return 0;
}

/* Publishes one event (inline, or by reference when it->ref) to shard. */
static int publish_item(rill_bus_producer_t *p, uint32_t shard, const struct item *it) {
  rill_bus_t *bus = p->bus;
  /* Relaxed: a flag that only stops ingest; close documents that
   * publishes must not race with it. */
  if (RILL_UNLIKELY(__atomic_load_n(&bus->stop, __ATOMIC_RELAXED)))
    return rill__err(RILL_ECLOSED, "bus: publish after shutdown");
  rill_ring_spsc_t *r = p->rings[shard];
  if (RILL_UNLIKELY(bus->o.policy == RILL_BUS_SAMPLE)) {
    uint64_t q = rill__ring_spsc_slots(r) / 4;
    if (!rill__ring_spsc_has_room(r, q ? q : 1))
      return publish_full(p, shard, it);
    p->c.sample_ctr = 0;
  }
  int rc = push_slot(p, shard, it);
  if (RILL_LIKELY(rc == 0)) {
    cnt_inc(&p->c.ingested);
    return 0;
  }
  if (RILL_UNLIKELY(rc != RILL_EAGAIN))
    return rc;
  return publish_full(p, shard, it);
}

/* publish_to for every case: inline up to slot_payload, else copied into
 * a new buf (an allocation) sent by reference, up to max_payload. */
static __attribute__((noinline)) int publish_slow(rill_bus_producer_t *p, uint32_t shard,
                                                  const void *data, uint32_t len) {
  rill_bus_t *bus = p->bus;
  if (RILL_LIKELY(len <= bus->o.slot_payload))
    return publish_item(p, shard, &(struct item){data, len, NULL});
  if (len > bus->o.max_payload)
    return rill__err(RILL_EMSGSIZE, "bus: payload %u over max_payload %u", len, bus->o.max_payload);
  if (__atomic_load_n(&bus->stop, __ATOMIC_RELAXED)) /* spare the copy */
    return rill__err(RILL_ECLOSED, "bus: publish after shutdown");
  rill_buf_t b;
  int rc = rill_buf_copy(&b, data, len);
  if (rc)
    return rc;
  rc = publish_item(p, shard, &(struct item){NULL, len, &b});
  rill_buf_release(&b); /* the slot has its own reference, if it got in */
  return rc;
}

/* Publishes len bytes at data to shard. The usual event (inline, its
 * ring not full, the bus neither sampling nor shut down) is written here;
 * everything else goes to publish_slow, which checks it all again. Apart
 * so that the usual event saves few registers and pays no stack canary
 * for the item and buf the others take the address of (callgrind, bench
 * bus e2e_1p: the producer thread's loop, the hash aside, went from 153
 * to 88 instructions an event). */
static inline int publish_to(rill_bus_producer_t *p, uint32_t shard, const void *data,
                             uint32_t len) {
  rill_bus_t *bus = p->bus;
  /* Relaxed stop: as publish_item's. */
  if (RILL_LIKELY(len <= bus->o.slot_payload && bus->o.policy != RILL_BUS_SAMPLE &&
                  !__atomic_load_n(&bus->stop, __ATOMIC_RELAXED))) {
    rill_ring_spsc_t *r = p->rings[shard];
    uint64_t tail;
    uint8_t *sl = rill__ring_spsc_next(r, &tail);
    if (RILL_LIKELY(sl != NULL)) {
      write_slot(sl, rill_time_ns(), data, len);
      rill__ring_spsc_publish(r, tail);
      doorbell_ring(bus, shard);
      cnt_inc(&p->c.ingested);
      return 0;
    }
  }
  return publish_slow(p, shard, data, len);
}

/* One push of a publish that waits for room (DROP_OLDEST, BLOCK): 0 once
 * the item is in (counted), RILL_EAGAIN while the ring is full, or the
 * error; RILL_ECLOSED, saying what we were doing, once the bus shuts down. */
static inline int push_or_stop(rill_bus_producer_t *p, uint32_t shard, const struct item *it,
                               const char *doing) {
  int rc = push_slot(p, shard, it);
  if (rc == 0) {
    cnt_inc(&p->c.ingested);
    return 0;
  }
  if (rc != RILL_EAGAIN)
    return rc;
  /* Acquire: pairs with close's release; close then wakes us. */
  if (__atomic_load_n(&p->bus->stop, __ATOMIC_ACQUIRE))
    return rill__err(RILL_ECLOSED, "bus: shut down while %s", doing);
  return RILL_EAGAIN;
}

/* DROP_OLDEST with the ring full: discards the oldest slot not taken by
 * the worker (see "Drop-oldest" in bus_internal.h), then pushes. */
static int publish_drop_oldest(rill_bus_producer_t *p, uint32_t shard, const struct item *it) {
  rill_bus_t *bus = p->bus;
  rill_ring_spsc_t *r = p->rings[shard];
  struct claim *cl = &p->claim[shard];
  for (unsigned spins = 0;; spins++) {
    int rc = push_or_stop(p, shard, it, "dropping the oldest");
    if (rc != RILL_EAGAIN)
      return rc;
    /* Relaxed: our own index. Acquire on head: pairs with the worker's
     * release (fetch_add), so its reads of the slots it gave back are done
     * before we reuse one. */
    uint64_t tail = rill__ring_spsc_tail(r, __ATOMIC_RELAXED);
    uint64_t h = rill__ring_spsc_head(r, __ATOMIC_ACQUIRE);
    if (!rill__ring_spsc_full(r, h, tail))
      continue; /* the worker gave slots back meanwhile: push again */
    uint64_t c = h;
    /* Acquire: pairs with the worker's release store when it undoes a
     * held claim, so its reads of slot h are done before we reuse it.
     * Release: pairs with the worker's acquire load of claim, so the tail
     * it loads next is at least ours (tail >= claim). */
    if (__atomic_compare_exchange_n(&cl->v, &c, h + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      /* Slot h is ours alone now: the worker's next take starts at h + 1.
       * Its buf reference, if any, goes with it. Release: as for the
       * worker's give-back, so the head a later acquire load sees covers
       * everything done to slot h. */
      slot_release(rill__ring_spsc_slot(r, h));
      rill__ring_spsc_head_add(r, 1, __ATOMIC_RELEASE);
      cnt_inc(&p->c.dropped_oldest);
      spins = 0;
      continue; /* one slot is free: the push succeeds */
    }
    /* c != h: the worker is delivering a batch from this ring. Wait for it
     * to give the slots back (at most one on_batch call): spin a little,
     * then sleep until the worker wakes us (worker_wake_producers). */
    if (spins < 128) {
      rill__cpu_relax();
      continue;
    }
    uint32_t w0 = producer_arm(p);
    /* seq_cst: loaded after the flag went up, in producer_arm's pattern
     * (and acquire, as above). */
    h = rill__ring_spsc_head(r, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&cl->v, __ATOMIC_SEQ_CST) != h &&
        !__atomic_load_n(&bus->stop, __ATOMIC_ACQUIRE))
      producer_sleep(p, w0, OLDEST_SLEEP_NS); /* bounded: see the constant */
    else
      producer_unarm(p);
  }
}

static int publish_full(rill_bus_producer_t *p, uint32_t shard, const struct item *it) {
  rill_bus_t *bus = p->bus;
  rill_ring_spsc_t *r = p->rings[shard];
  switch (bus->o.policy) {
  case RILL_BUS_DROP_OLDEST: return publish_drop_oldest(p, shard, it);
  case RILL_BUS_DROP_NEWEST:
    cnt_inc(&p->c.ingested);
    cnt_inc(&p->c.dropped_newest);
    return 0;
  case RILL_BUS_FAIL:
    cnt_inc(&p->c.ingested);
    cnt_inc(&p->c.failed_full);
    return rill__err(RILL_EFULL, "bus: ring full");
  case RILL_BUS_SAMPLE: {
    if (p->c.sample_ctr++ % bus->o.sample_n != 0) {
      cnt_inc(&p->c.ingested);
      cnt_inc(&p->c.dropped_sampled);
      return 0;
    }
    int rc = push_slot(p, shard, it);
    if (rc && rc != RILL_EAGAIN)
      return rc; /* not ingested: the buf refused another reference */
    cnt_inc(&p->c.ingested);
    if (rc)
      cnt_inc(&p->c.dropped_newest);
    return 0;
  }
  case RILL_BUS_BLOCK:
  default: {
    uint64_t deadline = rill__deadline(rill_time_ns(), bus->o.block_timeout_ns);
    for (unsigned spins = 0;; spins++) {
      int rc = push_or_stop(p, shard, it, "blocked");
      if (rc != RILL_EAGAIN)
        return rc;
      if (spins < 128) {
        rill__cpu_relax();
        continue;
      }
      uint64_t now = rill_time_ns();
      if (now >= deadline) {
        cnt_inc(&p->c.ingested);
        cnt_inc(&p->c.blocked_timeouts);
        return rill__err(RILL_ETIMEDOUT, "bus: blocked past the timeout");
      }
      /* Sleep until the worker gives slots of this ring back, close, or
       * the deadline. */
      uint32_t w0 = producer_arm(p);
      /* seq_cst: head loaded after the flag went up, in producer_arm's
       * pattern (and acquire, as the ring's own load: the room we see was
       * read out by the worker). Relaxed tail: ours. */
      uint64_t head = rill__ring_spsc_head(r, __ATOMIC_SEQ_CST);
      uint64_t tail = rill__ring_spsc_tail(r, __ATOMIC_RELAXED);
      if (rill__ring_spsc_full(r, head, tail) && !__atomic_load_n(&bus->stop, __ATOMIC_ACQUIRE))
        producer_sleep(p, w0, deadline - now);
      else
        producer_unarm(p);
    }
  }
  }
}

/* The shard of a payload by its hash. One over max_payload is not read
 * (publish_to refuses it, RILL_EMSGSIZE): shard 0. */
static inline uint32_t shard_of(const rill_bus_t *bus, const void *data, size_t len) {
  if (RILL_UNLIKELY(len > bus->o.max_payload))
    return 0;
  return rill_hash_reduce(rill_hash64(data, len), bus->o.shards);
}

int rill_bus_publish(rill_bus_producer_t *p, const void *data, uint32_t len) {
  return publish_to(p, shard_of(p->bus, data, len), data, len);
}

int rill_bus_publish_key(rill_bus_producer_t *p, uint64_t key, const void *data, uint32_t len) {
  return publish_to(p, (uint32_t)(key % p->bus->o.shards), data, len);
}

int rill_bus_publish_buf(rill_bus_producer_t *p, const rill_buf_t *b) {
  if (!p || !b)
    return rill__err(RILL_EINVAL, "bus: NULL producer or buf");
  return rill_bus_publish_buf_key(p, shard_of(p->bus, b->data, b->len), b);
}

int rill_bus_publish_buf_key(rill_bus_producer_t *p, uint64_t key, const rill_buf_t *b) {
  if (!p || !b)
    return rill__err(RILL_EINVAL, "bus: NULL producer or buf");
  rill_bus_t *bus = p->bus;
  if (b->len > bus->o.max_payload)
    return rill__err(RILL_EMSGSIZE, "bus: buf of %zu bytes over max_payload %u", b->len,
                     bus->o.max_payload);
  return publish_item(p, (uint32_t)(key % bus->o.shards),
                      &(struct item){NULL, (uint32_t)b->len, b});
}

/* Shards one pass of a batch publish writes to at most (the runs it keeps
 * on the stack); a batch spread wider takes another pass. */
#define PASS_SHARDS 64u

/* Why a pass stopped before the end of the batch. */
enum pass_stop {
  PASS_DONE,  /* every event is in */
  PASS_ONE,   /* event *k goes alone (over slot_payload, or its ring is full) */
  PASS_AGAIN, /* event *k needs a shard past PASS_SHARDS: another pass */
};

/* One pass of a batch publish: each event, in order, straight into the
 * next free slot of its shard's ring (hashed, or shard `fixed` when keyed),
 * then one release store of tail and one doorbell per ring written, and
 * one counter store. Events keep their order within each shard, the only
 * order the bus promises, and what went in is a prefix of the batch
 * (*k events), so `done` stays a prefix whatever stops the pass. Writing
 * past tail needs no ordering: those slots are ours until the tail store.
 * *shard gets the shard of event *k when the pass stops early. */
RILL_INLINE enum pass_stop publish_pass(rill_bus_producer_t *p, const rill_iov_t *iov, size_t n,
                                        uint64_t ts, bool keyed, uint32_t fixed, size_t *k,
                                        uint32_t *shard) {
  rill_bus_t *bus = p->bus;
  rill__ring_spsc_writer_t run[PASS_SHARDS];
  uint32_t shard_of_run[PASS_SHARDS];
  uint32_t nsh = bus->o.shards, max = bus->o.slot_payload, nrun = 0;
  enum pass_stop why = PASS_DONE;
  size_t i = 0;
  uint32_t last = fixed;
  if (keyed) {
    /* One ring: its free slots taken a contiguous span at a time, each
     * slot the last one plus the slot size. */
    rill__ring_spsc_writer_t *w = &run[0];
    rill__ring_spsc_writer_begin(w, p->rings[fixed]);
    shard_of_run[nrun++] = fixed;
    while (i < n && why == PASS_DONE) {
      uint8_t *sl;
      size_t from = i, end = i + rill__ring_spsc_writer_span(w, n - i, &sl);
      if (RILL_UNLIKELY(end == i))
        why = PASS_ONE; /* full */
      for (; i < end; i++, sl += w->size) {
        if (RILL_UNLIKELY(iov[i].len > max)) {
          why = PASS_ONE;
          break;
        }
        write_slot(sl, ts, iov[i].data, iov[i].len);
      }
      rill__ring_spsc_writer_advance(w, i - from);
    }
  }
  uint16_t *group = p->group; /* a local: the stores into slots could alias p */
  for (; !keyed && i < n; i++) {
    uint32_t len = iov[i].len;
    last = nsh > 1 ? rill_hash_reduce(rill_hash64(iov[i].data, len), nsh) : 0;
    uint32_t g = group[last];
    if (RILL_UNLIKELY(len > max)) {
      why = PASS_ONE;
      break;
    }
    if (RILL_UNLIKELY(g == GROUP_NONE)) {
      if (nrun == PASS_SHARDS) {
        why = PASS_AGAIN;
        break;
      }
      g = nrun++;
      group[last] = (uint16_t)g;
      shard_of_run[g] = last;
      rill__ring_spsc_writer_begin(&run[g], p->rings[last]);
    }
    uint8_t *sl = rill__ring_spsc_writer_take(&run[g]);
    if (RILL_UNLIKELY(!sl)) {
      why = PASS_ONE;
      break;
    }
    write_slot(sl, ts, iov[i].data, len);
  }
  *shard = last;
  for (uint32_t g = 0; g < nrun; g++) {
    if (!keyed)
      p->group[shard_of_run[g]] = GROUP_NONE;
    rill__ring_spsc_writer_publish(&run[g]);
    doorbell_ring(bus, shard_of_run[g]);
  }
  __atomic_store_n(&p->c.ingested, p->c.ingested + i, __ATOMIC_RELAXED);
  *k = i;
  return why;
}

/* rill_bus_publish_batch and rill_bus_publish_batch_key: passes of
 * publish_pass, and between them the events a pass left to go alone
 * through publish_to and its policy. SAMPLE takes publish_to for every
 * event: its pressure test is per event. */
RILL_INLINE int publish_many(rill_bus_producer_t *p, const rill_iov_t *iov, size_t n, size_t *done,
                             bool keyed, uint32_t fixed) {
  rill_bus_t *bus = p->bus;
  size_t i = 0;
  int rc = 0;
  if (RILL_UNLIKELY(__atomic_load_n(&bus->stop, __ATOMIC_RELAXED))) {
    rc = rill__err(RILL_ECLOSED, "bus: publish after shutdown");
    goto out;
  }
  uint64_t ts = rill_time_ns();
  bool sample = bus->o.policy == RILL_BUS_SAMPLE;
  while (i < n) {
    size_t k = 0;
    uint32_t shard = fixed;
    enum pass_stop why = PASS_ONE;
    if (!sample)
      why = publish_pass(p, iov + i, n - i, ts, keyed, fixed, &k, &shard);
    else if (!keyed)
      shard = rill_hash_reduce(rill_hash64(iov[i].data, iov[i].len), bus->o.shards);
    i += k;
    if (why == PASS_ONE) {
      rc = publish_to(p, shard, iov[i].data, iov[i].len);
      if (rc)
        goto out;
      i++;
    }
  }
out:
  if (done)
    *done = i;
  return rc;
}

int rill_bus_publish_batch(rill_bus_producer_t *p, const rill_iov_t *iov, size_t n, size_t *done) {
  return publish_many(p, iov, n, done, false, 0);
}

int rill_bus_publish_batch_key(rill_bus_producer_t *p, uint64_t key, const rill_iov_t *iov,
                               size_t n, size_t *done) {
  return publish_many(p, iov, n, done, true, (uint32_t)(key % p->bus->o.shards));
}
