/*
 * Sending on a channel (channel_internal.h gives the protocol): room for
 * the next seq (the scan of the receivers' cursors, waiting and reaping),
 * the claim, the commit that publishes it or the cancel that aborts it,
 * and a sender's wait for receivers to attach.
 */
#include <string.h>

#include "ipc/channel_internal.h"

/* The lowest seq still held or awaited by a receiver, bounded by c: the
 * sender may claim c when c - bound < slots. */
static uint64_t scan(rill_ipc_chan_t *ch, uint64_t c) {
  /* seq_cst: pairs with the fence a joining receiver makes (file comment). */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  const bool queue = ch->g.delivery == RILL_IPC_QUEUE;
  struct rill__chan_hdr *h = ch->hdr;
  struct rill__ipc_place *rx = receivers(ch);
  uint64_t min, moved = 0;
  do {
    min = c;
    if (queue) {
      /* Acquire: pairs with an adopter's release bump (rill__chan_try_adopt): the
       * hold it moved into its own place before is visible below. */
      moved = __atomic_load_n(&h->redelivered, __ATOMIC_ACQUIRE);
      /* Acquire: pairs with the receivers' CAS of consumed (release); the
       * cursor a receiver stored before its CAS is visible below. */
      uint64_t k = __atomic_load_n(&h->consumed, __ATOMIC_ACQUIRE);
      if (k < min)
        min = k;
    }
    for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
      /* Acquire: pairs with the receiver's release store of TAKEN (and a
       * reaper's of ORPHAN). */
      uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
      unsigned phase = RILL__IPC_ST_PHASE(st);
      /* Queue: a claiming or orphaned place's cursor holds too (file
       * comment); broadcast: a claiming place's cursor may be stale. */
      if (phase == RILL__IPC_FREE || (!queue && phase != RILL__IPC_TAKEN))
        continue;
      /* Acquire: pairs with the receiver's release stores of its cursor;
       * its reads of the slots below happen before we overwrite them. */
      uint64_t v = __atomic_load_n(&rx[i].cursor, __ATOMIC_ACQUIRE);
      if (v != RILL__CHAN_NONE)
        v &= ~RILL__CHAN_TAKING; /* a take in progress holds as a taken one */
      if (v < min)
        min = v; /* NONE (holds nothing) and cursors from the future are above c */
    }
    /* Acquire: as the first load; a hold moved during our look. */
  } while (queue && __atomic_load_n(&h->redelivered, __ATOMIC_ACQUIRE) != moved);
  ch->min_seen = min;
  return min;
}

/* The receivers a message claimed now would reach: places TAKEN whose
 * holder is ready (its cursor final), and, with live, whose holder is
 * alive (/proc is read for each). Stored as rx_seen. */
uint32_t rill__chan_count_ready(rill_ipc_chan_t *ch, bool live) {
  /* seq_cst: as the fence in scan(), pairs with a joining receiver's. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  struct rill__ipc_place *rx = receivers(ch);
  uint32_t n = 0;
  for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
    /* Acquire: pairs with the receiver's release store of TAKEN. */
    uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) != RILL__IPC_TAKEN)
      continue;
    /* Acquire: pairs with the receiver's release store of ready, made once
     * its cursor is final: whatever we claim from now on is at or past it. */
    if (__atomic_load_n(&rx[i].ready, __ATOMIC_ACQUIRE) != 1)
      continue;
    if (live && !rill__ipc_holder_alive(st, __atomic_load_n(&rx[i].start, __ATOMIC_RELAXED)))
      continue;
    n++;
  }
  ch->rx_seen = n;
  return n;
}

static int no_receiver(const rill_ipc_chan_t *ch) {
  return rill__err(RILL_EPIPE,
                   "ipc channel %s: no receiver attached; the message was not sent (broadcast)",
                   ch->name);
}

/* Waits for room for seq c (reaping dead receivers meanwhile): 0, or
 * RILL_EFULL / RILL_ETIMEDOUT. The caller loads claim again after. */
struct waiting {
  bool timed;
  uint64_t deadline, spin_until;
};

static int wait_room(rill_ipc_chan_t *ch, uint64_t c, uint64_t slots, struct waiting *wt,
                     uint64_t timeout_ns) {
  struct rill__chan_hdr *h = ch->hdr;
  if (c - scan(ch, c) < slots)
    return 0;
  if (RILL_UNLIKELY(removed(ch)))
    return rill__chan_closed_err(ch);
  uint64_t ms = rill_time_coarse_ms();
  if (ms - ch->checked_ms >= CHECK_EVERY_MS) {
    ch->checked_ms = ms; /* not at every look: /proc is read for each laggard */
    if (rill__chan_reap_laggards(ch, c, slots) && c - scan(ch, c) < slots)
      return 0;
  }
  if (ch->g.policy == RILL_IPC_FAIL)
    return rill__err(RILL_EFULL, "ipc channel %s: %llu messages not finished with", ch->name,
                     (unsigned long long)slots);
  uint64_t now = rill_time_mono_ns();
  if (!wt->timed) {
    wt->timed = true;
    wt->deadline = rill__deadline(now, timeout_ns);
    wt->spin_until = ch->g.wait == RILL_IPC_SPIN ? rill__deadline(now, ch->g.spin_ns) : now;
  }
  if (now >= wt->deadline)
    return rill__err(RILL_ETIMEDOUT, "ipc channel %s: %llu messages not finished with", ch->name,
                     (unsigned long long)slots);
  if (now < wt->spin_until) {
    rill__cpu_relax();
    return 1; /* look again */
  }
  /* Acquire: pairs with a receiver's release bump of the word. */
  uint32_t w = __atomic_load_n(&h->send_futex, __ATOMIC_ACQUIRE);
  /* seq_cst, then the fence in scan(): pairs with the fence a receiver
   * makes after moving on (advance). */
  __atomic_fetch_add(&h->send_waiters, 1, __ATOMIC_SEQ_CST);
  /* Relaxed: read only by a reaper after we are dead (as in the route). */
  __atomic_store_n(&ch->me->parked, 1, __ATOMIC_RELAXED);
  /* Relaxed: ordered before our scan by its fence; taken by a receiver
   * after its fence. */
  __atomic_store_n(&h->send_want, 1, __ATOMIC_RELAXED);
  if (c - scan(ch, c) >= slots) {
    uint64_t left = wt->deadline - now;
    rill__futex_wait_shared(&h->send_futex, w, left < PARK_SLICE ? left : PARK_SLICE);
  }
  __atomic_store_n(&ch->me->parked, 0, __ATOMIC_RELAXED);
  /* Relaxed: only a hint for wakers. */
  __atomic_fetch_sub(&h->send_waiters, 1, __ATOMIC_RELAXED);
  return 1;
}

/* Claims the next seq for a message of len bytes once there is room for
 * it (a slot, and a free chunk when it is pooled): the claim is ours in
 * ch->res, with where the message goes. *unwoken (send_batch: commits
 * whose wake was put off): the receivers are woken before any wait, as
 * they may be what we wait for. */
static int claim(rill_ipc_chan_t *ch, uint32_t len, uint64_t timeout_ns, bool *unwoken) {
  const struct rill__chan_geom *g = &ch->g;
  const bool pooled = len > g->slot_size - RILL_IPC_SLOT_HDR;
  uint64_t limit = g->slots;
  uint32_t cls = 0;
  const bool bcast = g->delivery == RILL_IPC_BROADCAST;
  /* Acquire: pairs with a leaving receiver's release of the word (after
   * freeing its place), and with the remover's. */
  uint32_t gone = __atomic_load_n(&ch->hdr->gone, __ATOMIC_ACQUIRE);
  if (RILL_UNLIKELY(gone & RILL__IPC_REMOVED))
    return rill__chan_closed_err(ch);
  if (bcast && RILL_UNLIKELY(gone != ch->gone_seen || !ch->rx_seen)) {
    ch->gone_seen = gone;
    if (!rill__chan_count_ready(ch, false))
      return no_receiver(ch);
  }
  if (RILL_UNLIKELY(pooled)) {
    if (len > g->max_message)
      return rill__err(RILL_EMSGSIZE,
                       g->nclasses ? "ipc channel %s: a message of %u bytes, over its largest "
                                     "pool class (%u)"
                                   : "ipc channel %s: a message of %u bytes, over the %u a slot "
                                     "holds (the channel has no pool)",
                       ch->name, len,
                       g->nclasses ? g->max_message : g->slot_size - RILL_IPC_SLOT_HDR);
    /* Message c takes chunk c % chunks of its class (pool file comment):
     * free once every receiver is past c - chunks. Room, then, is the
     * most chunks of a class that holds it. */
    cls = rill__ipc_class_of(g->cls, len);
    uint64_t most = 0;
    for (uint32_t d = cls; d < g->nclasses; d++)
      if (g->cls[d].chunks > most)
        most = g->cls[d].chunks;
    if (most < limit)
      limit = most;
  }
  struct rill__chan_hdr *h = ch->hdr;
  struct waiting wt = {0};
  /* Acquire: pairs with the other senders' CAS of claim. */
  uint64_t c = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
  for (;;) {
    if (c - ch->min_seen >= limit || c < ch->min_seen) {
      if (*unwoken) {
        *unwoken = false;
        wake_receivers(ch);
      }
      int rc = wait_room(ch, c, limit, &wt, timeout_ns);
      if (rc < 0)
        return rc;
      if (rc > 0) {
        c = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
        continue;
      }
      /* The wait may have reaped the last receiver (a dead one). */
      if (bcast && !rill__chan_count_ready(ch, false))
        return no_receiver(ch);
    }
    /* Relaxed: published by the CAS below (release). */
    __atomic_store_n(&ch->me->cursor, c + 1, __ATOMIC_RELAXED);
    /* Release: pairs with the receivers' acquire load of claim; our pending
     * is visible to a receiver that sees the claim. On failure c is the
     * claim now (acquire: as the load above). */
    if (__atomic_compare_exchange_n(&h->claim, &c, c + 1, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
      break;
    /* Relaxed: lost the race; a pending left at a seq another sender
     * claimed would make receivers take us for its claimer while we wait
     * for room, and never skip it if that one died. */
    __atomic_store_n(&ch->me->cursor, 0, __ATOMIC_RELAXED);
  }
  struct rill__ipc_slot *sl = slot_at(ch, c);
  ch->res.seq = c;
  ch->res.len = len;
  ch->res.cls = NO_CLASS;
  ch->res.buf = (uint8_t *)(sl + 1);
  if (RILL_UNLIKELY(pooled)) {
    /* The first class that holds it whose chunk for c is free: one is,
     * as c - min_seen < limit (and min_seen only lags the truth). */
    while (cls + 1 < g->nclasses && c - ch->min_seen >= g->cls[cls].chunks)
      cls++;
    ch->res.cls = cls;
    ch->res.idx = (uint32_t)(c % g->cls[cls].chunks);
    ch->res.buf = (uint8_t *)(rill__ipc_chunk_in(ch->base, &g->cls[cls], ch->res.idx) + 1);
  }
  ch->reserved = true;
  return 0;
}

/* Publishes the claimed message as len bytes (at most the claimed), and
 * wakes receivers unless wake is false (send_batch wakes once a batch). */
static int commit(rill_ipc_chan_t *ch, uint32_t len, bool wake) {
  const struct rill__chan_geom *g = &ch->g;
  const uint64_t c = ch->res.seq;
  struct rill__ipc_slot *sl = slot_at(ch, c);
  ch->reserved = false;
  /* Relaxed: the slot's last lap is finished with (room), so its mark is
   * stable until our commit or a receiver's abort. */
  uint64_t old = __atomic_load_n(&sl->mark, __ATOMIC_RELAXED);
  uint32_t flags = 0;
  if (ch->res.cls != NO_CLASS && len <= g->slot_size - RILL_IPC_SLOT_HDR) {
    memcpy(sl + 1, ch->res.buf, len); /* committed short: into the slot */
  } else if (ch->res.cls != NO_CLASS) {
    struct rill__ipc_chunk *ck = rill__ipc_chunk_in(ch->base, &g->cls[ch->res.cls], ch->res.idx);
    /* Relaxed: published with the slot by the mark's CAS (release). */
    __atomic_store_n(&ck->owner, c + 1, __ATOMIC_RELAXED);
    uint32_t desc[2] = {ch->res.idx, ch->res.cls};
    memcpy(sl + 1, desc, sizeof desc);
    flags = RILL__IPC_SLOT_POOL;
  }
  __atomic_store_n(&sl->len, len, __ATOMIC_RELAXED);
  /* Relaxed: published by the mark's CAS, as the length. */
  __atomic_store_n(&sl->flags, flags, __ATOMIC_RELAXED);
  /* Release: pairs with the receivers' acquire load of the mark; payload
   * and length are visible once it reads c + 1. The publication point. A
   * CAS, so that a receiver's abort (it took us for dead) is never undone. */
  if (!__atomic_compare_exchange_n(&sl->mark, &old, c + 1, false, __ATOMIC_RELEASE,
                                   __ATOMIC_RELAXED))
    return rill__err(RILL_ECANCELED, "ipc channel %s: message %llu was aborted before its commit",
                     ch->name, (unsigned long long)c);
  if (wake)
    wake_receivers(ch);
  return 0;
}

static int sender_ok(rill_ipc_chan_t *ch, const char *what) {
  if (RILL_UNLIKELY(!ch))
    return rill__err(RILL_EINVAL, "ipc channel %s: the channel is NULL", what);
  if (RILL_UNLIKELY(ch->role != RILL_IPC_SENDER))
    return rill__err(RILL_EINVAL, "ipc channel %s: %s on a receiver", ch->name, what);
  return 0;
}

/* A claim is a hole every receiver waits at until it is committed or
 * cancelled: a second one is refused rather than leave the first open. */
static int no_open_claim(rill_ipc_chan_t *ch, const char *what) {
  if (RILL_UNLIKELY(ch->reserved))
    return rill__err(RILL_EBUSY,
                     "ipc channel %s: %s with message %llu reserved: commit or cancel it first",
                     ch->name, what, (unsigned long long)ch->res.seq);
  return 0;
}

int rill_ipc_chan_send(rill_ipc_chan_t *ch, const void *data, uint32_t len, uint64_t timeout_ns) {
  int rc = sender_ok(ch, "send");
  if (RILL_UNLIKELY(rc))
    return rc;
  if (RILL_UNLIKELY(!data && len))
    return rill__err(RILL_EINVAL, "ipc channel %s: send: data is NULL", ch->name);
  bool unwoken = false;
  if (RILL_UNLIKELY((rc = no_open_claim(ch, "send")) ||
                    (rc = claim(ch, len, timeout_ns, &unwoken))))
    return rc;
  if (len)
    memcpy(ch->res.buf, data, len); /* the one copy */
  return commit(ch, len, true);
}

int rill_ipc_chan_send_batch(rill_ipc_chan_t *ch, const rill_iov_t *msgs, uint32_t n,
                             uint64_t timeout_ns, uint32_t *sent) {
  if (sent)
    *sent = 0;
  int rc = sender_ok(ch, "send_batch");
  if (RILL_UNLIKELY(rc))
    return rc;
  if (RILL_UNLIKELY(!msgs && n))
    return rill__err(RILL_EINVAL, "ipc channel %s: send_batch: msgs is NULL", ch->name);
  if (RILL_UNLIKELY(rc = no_open_claim(ch, "send_batch")))
    return rc;
  /* Each message claimed and committed as send does (a claim covers one
   * number: receivers tell a dead claimer's hole by it), the fence and
   * the wake check once for the batch, or before a wait for room. */
  bool unwoken = false;
  uint32_t i = 0;
  for (; i < n; i++) {
    const rill_iov_t *m = &msgs[i];
    if (RILL_UNLIKELY(!m->data && m->len)) {
      rc =
          rill__err(RILL_EINVAL, "ipc channel %s: send_batch: message %u has no data", ch->name, i);
      break;
    }
    if (RILL_UNLIKELY(rc = claim(ch, m->len, timeout_ns, &unwoken)))
      break;
    if (m->len)
      memcpy(ch->res.buf, m->data, m->len);
    if (RILL_UNLIKELY(rc = commit(ch, m->len, false)))
      break;
    unwoken = true;
    if (sent)
      *sent = i + 1;
  }
  if (unwoken)
    wake_receivers(ch);
  return rc;
}

int rill_ipc_chan_reserve(rill_ipc_chan_t *ch, uint32_t len, uint64_t timeout_ns, void **buf) {
  int rc = sender_ok(ch, "reserve");
  if (rc)
    return rc;
  if (!buf)
    return rill__err(RILL_EINVAL, "ipc channel %s: reserve: buf is NULL", ch->name);
  *buf = NULL;
  bool unwoken = false;
  if ((rc = no_open_claim(ch, "reserve")) || (rc = claim(ch, len, timeout_ns, &unwoken)))
    return rc;
  *buf = ch->res.buf;
  return 0;
}

int rill_ipc_chan_commit(rill_ipc_chan_t *ch, uint32_t len) {
  int rc = sender_ok(ch, "commit");
  if (rc)
    return rc;
  if (!ch->reserved)
    return rill__err(RILL_EINVAL, "ipc channel %s: commit without a reservation", ch->name);
  if (len > ch->res.len)
    return rill__err(RILL_EINVAL, "ipc channel %s: commit of %u bytes, %u were reserved", ch->name,
                     len, ch->res.len);
  return commit(ch, len, true);
}

/* Gives up our claim: its slot is marked aborted, as a dead sender's
 * would be, so receivers skip it at once. */
void rill__chan_cancel(rill_ipc_chan_t *ch) {
  const uint64_t c = ch->res.seq;
  struct rill__ipc_slot *sl = slot_at(ch, c);
  ch->reserved = false;
  uint64_t old = __atomic_load_n(&sl->mark, __ATOMIC_RELAXED);
  /* Release: as a commit's; a receiver's abort of it (it took us for
   * dead) leaves the same mark. */
  if (__atomic_compare_exchange_n(&sl->mark, &old, RILL__CHAN_ABORTED | (c + 1), false,
                                  __ATOMIC_RELEASE, __ATOMIC_RELAXED))
    /* Relaxed: a counter for info. */
    __atomic_fetch_add(&ch->hdr->aborted, 1, __ATOMIC_RELAXED);
  wake_receivers(ch);
}

int rill_ipc_chan_cancel(rill_ipc_chan_t *ch) {
  int rc = sender_ok(ch, "cancel");
  if (rc)
    return rc;
  if (!ch->reserved)
    return rill__err(RILL_EINVAL, "ipc channel %s: cancel without a reservation", ch->name);
  rill__chan_cancel(ch);
  return 0;
}

int rill_ipc_chan_wait_receivers(rill_ipc_chan_t *ch, uint32_t n, uint64_t timeout_ns) {
  if (RILL_UNLIKELY(!ch))
    return rill__err(RILL_EINVAL, "ipc chan_wait_receivers: the channel is NULL");
  if (ch->role != RILL_IPC_SENDER)
    return rill__err(RILL_EINVAL, "ipc channel %s: wait_receivers on a receiver", ch->name);
  if (n < 1 || n > ch->g.max_receivers)
    return rill__err(RILL_EINVAL, "ipc channel %s: waiting for %u receivers, not in 1..%u",
                     ch->name, n, ch->g.max_receivers);
  uint64_t deadline = rill__deadline(rill_time_mono_ns(), timeout_ns);
  for (;;) {
    /* Acquire: as in claim. */
    uint32_t gone = __atomic_load_n(&ch->hdr->gone, __ATOMIC_ACQUIRE);
    if (gone & RILL__IPC_REMOVED)
      return rill__chan_closed_err(ch);
    ch->gone_seen = gone;
    /* The dead are not counted (claim's count keeps them until reaped). */
    uint32_t have = rill__chan_count_ready(ch, true);
    if (have >= n)
      return 0;
    int rc = rill__ipc_wait_step(KIND, ch->name, deadline, timeout_ns, have, n);
    if (rc)
      return rc;
  }
}
