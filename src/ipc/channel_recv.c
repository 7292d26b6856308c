/*
 * Receiving from a channel (channel_internal.h gives the protocol): the
 * next message of a broadcast receiver's own cursor or of the queue's
 * shared counter, read in place, the view given back (release, or the
 * next recv), and the wait (spin, then park).
 */
#include <string.h>

#include "ipc/channel_internal.h"

int rill__chan_lost_one(rill_ipc_chan_t *ch, uint64_t seq, uint64_t *lost) {
  wake_senders(ch); /* the cursor moved past the hole */
  if (lost)
    *lost = 1;
  return rill__err(RILL_ELAGGED,
                   "ipc channel %s: message %llu was lost: its sender died before committing it",
                   ch->name, (unsigned long long)seq);
}

/* A pooled message's view: its chunk's payload, once the descriptor
 * checks out (the chunk c % chunks of a class the channel has, holding c). */
int rill__chan_pooled_view(rill_ipc_chan_t *ch, struct rill__ipc_slot *sl, uint64_t seq,
                           uint32_t len, const uint8_t **data) {
  const struct rill__chan_geom *g = &ch->g;
  uint32_t desc[2]; /* chunk index, class */
  memcpy(desc, sl + 1, sizeof desc);
  uint64_t owner = 0;
  struct rill__ipc_chunk *ck = NULL;
  if (desc[1] < g->nclasses && desc[0] < g->cls[desc[1]].chunks) {
    if (desc[0] != seq % g->cls[desc[1]].chunks)
      return rill__err(RILL_ECORRUPT, "ipc channel %s: message %llu names chunk %u of class %u",
                       ch->name, (unsigned long long)seq, desc[0], desc[1]);
    ck = rill__ipc_chunk_in(ch->base, &g->cls[desc[1]], desc[0]);
    /* Relaxed: ordered by the mark's acquire load (the sender stored it
     * before the mark's release CAS). */
    owner = __atomic_load_n(&ck->owner, __ATOMIC_RELAXED);
  }
  int rc =
      rill__ipc_pool_check(KIND, ch->name, g->cls, g->nclasses, seq, desc[1], desc[0], len, owner);
  if (rc == 0)
    *data = (const uint8_t *)(ck + 1);
  return rc;
}

static int try_broadcast(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  const uint64_t c = ch->cur;
  struct rill__ipc_slot *sl = slot_at(ch, c);
  /* Acquire: pairs with the sender's release CAS of the mark. */
  uint64_t mark = __atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE);
  if (mark == c + 1) {
    int rc = deliver(ch, sl, c, m);
    if (rc == 0)
      ch->cur = c + 1;
    return rc;
  }
  if (mark != (RILL__CHAN_ABORTED | (c + 1))) {
    if ((mark & ~RILL__CHAN_ABORTED) > c + 1)
      return rill__err(RILL_ECORRUPT, "ipc channel %s: slot of message %llu marked %llu", ch->name,
                       (unsigned long long)c, (unsigned long long)mark);
    /* Acquire: pairs with the senders' CAS of claim (their pending). */
    if (__atomic_load_n(&ch->hdr->claim, __ATOMIC_ACQUIRE) <= c)
      return RILL_EAGAIN;
    if (!rill__chan_abort_if_orphaned(ch, c, mark))
      return RILL_EAGAIN;
  }
  ch->cur = c + 1;
  /* Release: as in advance; nothing of the slot was read. */
  __atomic_store_n(&ch->me->cursor, ch->cur, __ATOMIC_RELEASE);
  return rill__chan_lost_one(ch, c, lost);
}

/* A hold stored for a CAS that failed must not stay: a stale cursor would
 * hold the senders back while we park. */
static int drop_hold(rill_ipc_chan_t *ch, bool held) {
  if (held)
    /* Release: as every cursor store. */
    __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
  return RILL_EAGAIN;
}

/* The next message off the shared counter. */
static int take_next(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  struct rill__chan_hdr *h = ch->hdr;
  bool held = false;
  for (;;) {
    /* Acquire, both: pair with the receivers' and senders' CASes. */
    uint64_t c = __atomic_load_n(&h->consumed, __ATOMIC_ACQUIRE);
    if (c >= __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE))
      return drop_hold(ch, held);
    struct rill__ipc_slot *sl = slot_at(ch, c);
    /* Acquire: pairs with the sender's release CAS of the mark. */
    uint64_t mark = __atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE);
    bool aborted = mark == (RILL__CHAN_ABORTED | (c + 1));
    if (mark != c + 1 && !aborted) {
      if (__atomic_load_n(&h->consumed, __ATOMIC_ACQUIRE) != c)
        continue; /* taken meanwhile: the slot may hold a later lap */
      if (!rill__chan_abort_if_orphaned(ch, c, mark))
        return drop_hold(ch, held);
      aborted = true;
    }
    /* Relaxed: published by the CAS below (release): a sender that sees
     * consumed past c sees our hold of c. TAKING until we know the CAS
     * won: a reaper must not take it for a message we had (file comment). */
    __atomic_store_n(&ch->me->cursor, RILL__CHAN_TAKING | c, __ATOMIC_RELAXED);
    held = true;
    if (!__atomic_compare_exchange_n(&h->consumed, &c, c + 1, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
      continue;
    if (aborted) {
      /* Release: as every cursor store; nothing of the slot was read. */
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
      return rill__chan_lost_one(ch, c, lost);
    }
    /* Relaxed: the same hold for the scans; only a reaper of ours (we are
     * dead then) tells the two apart. */
    __atomic_store_n(&ch->me->cursor, c, __ATOMIC_RELAXED);
    int rc = deliver(ch, sl, c, m);
    if (rc)
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
    return rc;
  }
}

static int try_queue(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  if (RILL_UNLIKELY(ch->adopted)) {
    ch->adopted = false; /* opened on an orphan: its message first */
    return rill__chan_redeliver(ch, ch->adopted_seq, m, lost);
  }
  /* The clock every 64th call: it costs as much as the rest of a take. */
  if (RILL_UNLIKELY((ch->takes++ & 63) == 0))
    rill__chan_reap_holders(ch, false);
  /* Relaxed: a hint; rill__chan_try_adopt loads each state with acquire. Orphans
   * before new messages. */
  if (RILL_UNLIKELY(__atomic_load_n(&ch->hdr->orphans, __ATOMIC_RELAXED))) {
    int rc = rill__chan_try_adopt(ch, m, lost);
    if (rc != RILL_EAGAIN)
      return rc;
  }
  int rc = take_next(ch, m, lost);
  if (rc == RILL_EAGAIN && rill__chan_reap_holders(ch, true))
    rc = rill__chan_try_adopt(ch, m, lost);
  return rc;
}

static int try_recv(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  int rc = ch->g.delivery == RILL_IPC_QUEUE ? try_queue(ch, m, lost) : try_broadcast(ch, m, lost);
  /* Nothing left to read of a removed channel: nothing more can come. */
  if (RILL_UNLIKELY(rc == RILL_EAGAIN) && removed(ch))
    return rill__chan_closed_err(ch);
  return rc;
}

/* rill__ipc_recv_wait's look: one try. */
typedef struct look {
  rill_ipc_chan_t *ch;
  rill_ipc_msg_t *m;
  uint64_t *lost;
} look_t;

static int look(void *arg) {
  look_t *x = arg;
  return try_recv(x->ch, x->m, x->lost);
}

/* Gives back the view held: the cursor moves on, a sender waiting for
 * room is woken. */
static void advance(rill_ipc_chan_t *ch) {
  uint64_t v = ch->g.delivery == RILL_IPC_QUEUE ? RILL__CHAN_NONE : ch->cur;
  /* Release: pairs with the senders' acquire load of our cursor in their
   * scan; our reads of the slot happen before it is overwritten. */
  __atomic_store_n(&ch->me->cursor, v, __ATOMIC_RELEASE);
  wake_senders(ch);
}

int rill_ipc_chan_recv(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t timeout_ns,
                       uint64_t *lost) {
  if (RILL_UNLIKELY(!ch || !m))
    return rill__err(RILL_EINVAL, "ipc channel recv: %s is NULL",
                     ch ? "the message" : "the channel");
  if (RILL_UNLIKELY(ch->role != RILL_IPC_RECEIVER))
    return rill__err(RILL_EINVAL, "ipc channel %s: recv on a sender", ch->name);
  if (lost)
    *lost = 0;
  m->flags = 0;
  if (ch->held) {
    ch->held = false;
    advance(ch);
  }
  int rc = try_recv(ch, m, lost);
  if (rc != RILL_EAGAIN || timeout_ns == 0)
    return rc;
  struct rill__chan_hdr *h = ch->hdr;
  uint64_t now = rill_time_mono_ns();
  /* A slice at a time: a claimer may die without waking anyone. */
  const rill__ipc_recv_wait_t w = {.futex = &h->recv_futex,
                                   .waiters = &h->recv_waiters,
                                   .want = &h->recv_want,
                                   .parked = &ch->me->parked,
                                   .spin = ch->g.wait == RILL_IPC_SPIN,
                                   .spin_ns = ch->g.spin_ns,
                                   .slice = PARK_SLICE};
  rc = rill__ipc_recv_wait(&w, now, rill__deadline(now, timeout_ns), look, &(look_t){ch, m, lost});
  if (rc == RILL_EAGAIN)
    return rill__err(RILL_ETIMEDOUT, "ipc channel %s: no message in %llu ns", ch->name,
                     (unsigned long long)timeout_ns);
  return rc;
}

int rill_ipc_chan_recv_batch(rill_ipc_chan_t *ch, rill_ipc_msg_t *msgs, uint32_t max, uint32_t *got,
                             uint64_t timeout_ns, uint64_t *lost) {
  if (got)
    *got = 0;
  if (RILL_UNLIKELY(!got || !max)) {
    if (lost)
      *lost = 0;
    return rill__err(RILL_EINVAL, "ipc channel recv_batch: %s", got ? "max is 0" : "got is NULL");
  }
  /* The first as recv takes it: the views held given back, the wait. */
  int rc = rill_ipc_chan_recv(ch, msgs, timeout_ns, lost);
  if (rc)
    return rc;
  uint32_t k = 1;
  /* A queue receiver's place holds one message for redelivery should it
   * die (FORMATS): it takes one at a time. A broadcast receiver takes what
   * else is committed, in order, its cursor moved once for all at the
   * next call; a hole (a claim not committed, or aborted) or a scribbled
   * slot ends the batch, and the next call looks into it. */
  if (ch->g.delivery == RILL_IPC_BROADCAST) {
    for (; k < max; k++) {
      const uint64_t c = ch->cur;
      struct rill__ipc_slot *sl = slot_at(ch, c);
      /* Acquire: pairs with the sender's release CAS of the mark. */
      if (__atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE) != c + 1)
        break;
      msgs[k].flags = 0;
      if (deliver(ch, sl, c, &msgs[k]) != 0)
        break;
      ch->cur = c + 1;
    }
  }
  *got = k;
  return 0;
}

int rill_ipc_chan_release(rill_ipc_chan_t *ch) {
  if (RILL_UNLIKELY(!ch))
    return rill__err(RILL_EINVAL, "ipc channel release: the channel is NULL");
  if (RILL_UNLIKELY(ch->role != RILL_IPC_RECEIVER))
    return rill__err(RILL_EINVAL, "ipc channel %s: release on a sender", ch->name);
  if (!ch->held)
    return rill__err(RILL_EINVAL, "ipc channel %s: release with no message held", ch->name);
  ch->held = false;
  advance(ch);
  return 0;
}
