/*
 * The bus: options, create, shutdown and destroy. The design and what the
 * files share are in bus_internal.h.
 */
#include <string.h>
#include <time.h>

#include "bus/bus_internal.h"

/* ---- helpers ----------------------------------------------------------- */

static void nap(long ns) {
  struct timespec ts = {0, ns};
  nanosleep(&ts, NULL);
}

/* Wakes every worker (close: stop or abort was just set). */
static void wake_workers(rill_bus_t *bus) {
  for (uint32_t i = 0; i < bus->o.workers; i++)
    rill__futex_bump(&bus->w[i].bell.ring);
}

/* Wakes every producer (close: stop was just set). Under bus->lock, so
 * none is freed meanwhile. Unconditional: close is not a hot path, and it
 * needs no fence then (the bump after stop is enough, see producer_arm). */
static void wake_producers_locked(rill_bus_t *bus) {
  for (rill_bus_producer_t *p = bus->head; p; p = p->next)
    rill__futex_bump(&p->wt.wake);
}

/* ---- create, close, destroy -------------------------------------------- */

static int check_opts(rill_bus_opts_t *o) {
  if (!o->shards)
    o->shards = 4;
  if (!o->ring_slots)
    o->ring_slots = 4096;
  if (!o->slot_payload)
    o->slot_payload = 120;
  if (!o->block_timeout_ns)
    o->block_timeout_ns = 1000000000ull;
  if (!o->sample_n)
    o->sample_n = 10;
  if (!o->workers)
    o->workers = 1;
  if (!o->batch_min)
    o->batch_min = 1;
  if (!o->batch_max)
    o->batch_max = o->batch_min > 256 ? o->batch_min : 256;
  if (!o->max_delay_ns)
    o->max_delay_ns = 1000000;
  if (!o->linger_ns)
    o->linger_ns = 2000;
  if (!o->max_payload)
    o->max_payload = 16u << 20;
  if (o->shards > RILL_BUS_MAX_SHARDS)
    return rill__err(RILL_EINVAL, "bus: shards %u not in 1..%u", o->shards, RILL_BUS_MAX_SHARDS);
  if (!RILL__IS_POW2(o->ring_slots) || o->ring_slots < 2)
    return rill__err(RILL_EINVAL, "bus: ring_slots %u is not a power of two >= 2", o->ring_slots);
  if (o->slot_payload > RILL_RING_SPSC_MAX_SLOT_SIZE - SLOT_HDR)
    return rill__err(RILL_EINVAL, "bus: slot_payload %u over %u", o->slot_payload,
                     RILL_RING_SPSC_MAX_SLOT_SIZE - SLOT_HDR);
  if (o->max_payload < o->slot_payload)
    return rill__err(RILL_EINVAL, "bus: max_payload %u below slot_payload %u", o->max_payload,
                     o->slot_payload);
  if ((unsigned)o->policy > RILL_BUS_DROP_OLDEST)
    return rill__err(RILL_EINVAL, "bus: unknown policy %d", (int)o->policy);
  if (o->workers > o->shards)
    return rill__err(RILL_EINVAL, "bus: workers %u not in 1..shards (%u)", o->workers, o->shards);
  if (!o->sink || !o->sink->on_batch)
    return rill__err(RILL_EINVAL, "bus: no sink or no on_batch");
  if (o->batch_max < o->batch_min)
    return rill__err(RILL_EINVAL, "bus: batch_max %u below batch_min %u", o->batch_max,
                     o->batch_min);
  return 0;
}

/* Frees the n workers' arrays and the workers (create's undo, destroy). */
static void workers_free(rill_bus_t *bus, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    rill__free(bus->w[i].ev);
    rill__free(bus->w[i].refs);
    rill__free(bus->w[i].prods);
    rill__free(bus->w[i].take);
    rill__free(bus->w[i].from);
    rill__free(bus->w[i].closed_seen);
  }
  rill__free(bus->w);
}

int rill_bus_create(rill_bus_t **out, const rill_bus_opts_t *opts) {
  if (!out || !opts)
    return rill__err(RILL_EINVAL, "bus: NULL out or opts");
  rill_bus_opts_t o = *opts;
  int rc = check_opts(&o);
  if (rc)
    return rc;
  rill_bus_t *bus = rill__calloc(1, sizeof *bus);
  if (!bus)
    return rill__err(RILL_ENOMEM, "bus: no memory for the bus");
  bus->o = o;
  bus->sink = *o.sink;
  bus->o.sink = &bus->sink;
  /* Room for a buf reference however small slot_payload is. */
  uint32_t inline_max = o.slot_payload > sizeof(rill_buf_t) ? o.slot_payload : sizeof(rill_buf_t);
  bus->slot_size = SLOT_HDR + RILL__ALIGN_UP(inline_max, 8u);
  bus->wake_producers = o.policy == RILL_BUS_BLOCK || o.policy == RILL_BUS_DROP_OLDEST;
  rc = RILL_ENOMEM;
  bus->shard_seq = rill__calloc(o.shards, sizeof *bus->shard_seq);
  if (!bus->shard_seq)
    goto undo_bus;
  bus->bell = rill__calloc(o.shards, sizeof *bus->bell);
  if (!bus->bell)
    goto undo_seq;
  bus->w = rill__aligned(64, RILL__ALIGN_UP(o.workers * sizeof *bus->w, (size_t)64));
  if (!bus->w)
    goto undo_bell;
  memset(bus->w, 0, o.workers * sizeof *bus->w);
  for (uint32_t s = 0; s < o.shards; s++)
    bus->bell[s] = &bus->w[s % o.workers].bell;
  for (uint32_t i = 0; i < o.workers; i++) {
    bus->w[i].bus = bus;
    bus->w[i].idx = i;
    bus->w[i].ev = rill__malloc(o.batch_max * sizeof(rill_bus_event_t));
    if (!bus->w[i].ev)
      goto undo_workers;
    bus->w[i].refs = rill__malloc(o.batch_max * sizeof(uint8_t *));
    if (!bus->w[i].refs)
      goto undo_workers;
  }
  pthread_mutex_init(&bus->lock, NULL);
  for (uint32_t i = 0; i < o.workers; i++) {
    int e = pthread_create(&bus->w[i].tid, NULL, rill__bus_worker_main, &bus->w[i]);
    if (e) {
      rc = rill__err(-e, "bus: pthread_create failed");
      goto undo_threads;
    }
    bus->w[i].started = true;
  }
  *out = bus;
  return 0;
undo_threads:
  __atomic_store_n(&bus->abort, 1, __ATOMIC_RELEASE);
  wake_workers(bus);
  for (uint32_t i = 0; i < o.workers; i++)
    if (bus->w[i].started)
      pthread_join(bus->w[i].tid, NULL);
  pthread_mutex_destroy(&bus->lock);
undo_workers:
  workers_free(bus, o.workers);
undo_bell:
  rill__free(bus->bell);
undo_seq:
  rill__free(bus->shard_seq);
undo_bus:
  rill__free(bus);
  if (rc == RILL_ENOMEM)
    rill__err(rc, "bus: no memory");
  return rc;
}

static uint64_t undelivered_locked(rill_bus_t *bus) {
  uint64_t left = 0;
  for (rill_bus_producer_t *p = bus->head; p; p = p->next)
    for (uint32_t s = 0; s < bus->o.shards; s++)
      left += rill_ring_spsc_size(p->rings[s]);
  return left;
}

int rill_bus_shutdown(rill_bus_t *bus, uint64_t timeout_ns, uint64_t *left) {
  if (left)
    *left = 0;
  if (!bus)
    return rill__err(RILL_EINVAL, "bus: NULL bus");
  if (__atomic_exchange_n(&bus->closed_done, 1, __ATOMIC_ACQ_REL))
    return rill__err(RILL_ECLOSED, "bus: shut down twice");
  /* Release: pairs with the workers' acquire; see rill__bus_worker_main. */
  __atomic_store_n(&bus->stop, 1, __ATOMIC_RELEASE);
  /* Sleeping workers drain now, blocked producers return RILL_ECLOSED. */
  wake_workers(bus);
  pthread_mutex_lock(&bus->lock);
  wake_producers_locked(bus);
  pthread_mutex_unlock(&bus->lock);
  uint64_t deadline = rill__deadline(rill_time_ns(), timeout_ns);
  /* Wait for the workers to finish draining, up to the deadline; then tell
   * the rest to stop after their current batch. */
  for (uint32_t i = 0; i < bus->o.workers; i++) {
    if (!bus->w[i].started)
      continue;
    bool done = false;
    while (!done && !__atomic_load_n(&bus->abort, __ATOMIC_RELAXED)) {
      done = pthread_tryjoin_np(bus->w[i].tid, NULL) == 0;
      if (!done && rill_time_ns() >= deadline) {
        __atomic_store_n(&bus->abort, 1, __ATOMIC_RELEASE);
        wake_workers(bus);
      } else if (!done)
        nap(100000);
    }
    if (!done)
      pthread_join(bus->w[i].tid, NULL);
    bus->w[i].started = false;
  }
  pthread_mutex_lock(&bus->lock);
  __atomic_store_n(&bus->joined, true, __ATOMIC_RELAXED);
  uint64_t n = undelivered_locked(bus);
  pthread_mutex_unlock(&bus->lock);
  if (bus->sink.flush)
    bus->sink.flush(bus->sink.ctx);
  if (bus->sink.close)
    bus->sink.close(bus->sink.ctx);
  if (left)
    *left = n;
  if (n)
    return rill__err(RILL_ETIMEDOUT, "bus: shutdown left %llu events undelivered",
                     (unsigned long long)n);
  return 0;
}

void rill_bus_destroy(rill_bus_t *bus) {
  if (!bus)
    return;
  if (!__atomic_load_n(&bus->closed_done, __ATOMIC_ACQUIRE))
    rill_bus_shutdown(bus, 1000000000ull, NULL);
  while (bus->head)
    rill__bus_producer_retire_locked(bus, bus->head);
  pthread_mutex_destroy(&bus->lock);
  workers_free(bus, bus->o.workers);
  rill__free(bus->bell);
  rill__free(bus->shard_seq);
  rill__free(bus);
}
