/*
 * The dead on a channel (channel_internal.h gives the protocol): a
 * receiver that died is reaped (freed, or its place left an orphan under
 * RILL_IPC_QUEUE when it held a message), and a hole a dead sender's
 * claim left is aborted so that receivers go past it.
 */
#include <unistd.h>

#include "ipc/channel_internal.h"

/* Reaps receiver place p (state word st, loaded with acquire) if its
 * holder is dead: freed, or under RILL_IPC_QUEUE left ORPHAN when the
 * holder had taken a message (file comment). RILL__CHAN_REAP_FREED when the place is
 * free (or was seen free), RILL__CHAN_REAP_ORPHANED when we made it an orphan,
 * RILL__CHAN_REAP_NOTHING when its holder lives, it is an orphan already, or another
 * reaper or taker got there first. */
int rill__chan_reap_receiver(rill_ipc_chan_t *ch, struct rill__ipc_place *p, uint64_t st) {
  struct rill__chan_hdr *h = ch->hdr;
  unsigned phase = RILL__IPC_ST_PHASE(st);
  if (phase == RILL__IPC_FREE)
    return RILL__CHAN_REAP_FREED;
  if (phase == RILL__IPC_ORPHAN)
    return RILL__CHAN_REAP_NOTHING;
  if (ch->g.delivery != RILL_IPC_QUEUE)
    return rill__ipc_reap_if_dead(p, st, &h->recv_waiters) ? RILL__CHAN_REAP_FREED
                                                           : RILL__CHAN_REAP_NOTHING;
  /* Relaxed: st was loaded with acquire, after the holder's start. */
  if (rill__ipc_holder_alive(st, __atomic_load_n(&p->start, __ATOMIC_RELAXED)))
    return RILL__CHAN_REAP_NOTHING;
  uint32_t gen = RILL__IPC_ST_GEN(st) + 1;
  uint64_t ours = RILL__IPC_ST(RILL__IPC_CLAIMING, gen, (uint32_t)getpid());
  /* A CAS from exactly st, as rill__ipc_reap_if_dead: a place retaken
   * meanwhile is left alone. Claiming, the place still holds its cursor
   * for the scans. Acquire: pairs with the dead holder's last stores. */
  if (!__atomic_compare_exchange_n(&p->state, &st, ours, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    return RILL__CHAN_REAP_NOTHING;
  if (__atomic_exchange_n(&p->parked, 0, __ATOMIC_RELAXED))
    __atomic_fetch_sub(&h->recv_waiters, 1, __ATOMIC_RELAXED);
  /* Acquire: pairs with the receivers' CAS of consumed (release), the dead
   * holder's among them if it won: its hold stored before is visible. */
  uint64_t k = __atomic_load_n(&h->consumed, __ATOMIC_ACQUIRE);
  /* Relaxed: the holder is dead, its cursor is final. */
  uint64_t v = __atomic_load_n(&p->cursor, __ATOMIC_RELAXED);
  if (v < k) { /* a plain hold: NONE and TAKING holds are above any seq */
    /* Relaxed: counted before the ORPHAN word (release) that an adopter
     * sees with acquire, so its decrement comes after: never below the
     * number of orphans. */
    __atomic_fetch_add(&h->orphans, 1, __ATOMIC_RELAXED);
    /* Relaxed: stored again so that the release below publishes the hold
     * to adopters (the dead holder's store pairs with nothing of theirs). */
    __atomic_store_n(&p->cursor, v, __ATOMIC_RELAXED);
    /* Release: pairs with the adopters' and scans' acquire loads of the
     * state. */
    __atomic_store_n(&p->state, RILL__IPC_ST(RILL__IPC_ORPHAN, gen, 0), __ATOMIC_RELEASE);
    wake_receivers(ch); /* a parked receiver adopts it */
    return RILL__CHAN_REAP_ORPHANED;
  }
  /* Relaxed: published by the release below; a free queue place shows NONE. */
  __atomic_store_n(&p->cursor, RILL__CHAN_NONE, __ATOMIC_RELAXED);
  /* Release: pairs with a claimer's acquire load of the state. */
  __atomic_store_n(&p->state, RILL__IPC_ST(RILL__IPC_FREE, gen, 0), __ATOMIC_RELEASE);
  return RILL__CHAN_REAP_FREED;
}

/* Reaps the dead receivers that hold back seq c (limit: the room it
 * needs); true when one was. */
bool rill__chan_reap_laggards(rill_ipc_chan_t *ch, uint64_t c, uint64_t limit) {
  bool any = false;
  struct rill__ipc_place *rx = receivers(ch);
  for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
    /* Acquire: pairs with the holder's release store of TAKEN (its start). */
    uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
    unsigned phase = RILL__IPC_ST_PHASE(st);
    if (phase == RILL__IPC_FREE || phase == RILL__IPC_ORPHAN)
      continue; /* an orphan holds c back until a receiver adopts it */
    /* Relaxed: a hint for whom to check; the reap decides on its own loads. */
    uint64_t v = __atomic_load_n(&rx[i].cursor, __ATOMIC_RELAXED);
    if (v != RILL__CHAN_NONE)
      v &= ~RILL__CHAN_TAKING;
    if (phase == RILL__IPC_TAKEN && (v == RILL__CHAN_NONE || c - v < limit))
      continue;
    if (rill__chan_reap_receiver(ch, &rx[i], st) == RILL__CHAN_REAP_FREED)
      any = true;
  }
  return any;
}

/* Whether a live sender has claimed seq and not committed it yet. */
static bool claimer_alive(const rill_ipc_chan_t *ch, uint64_t seq) {
  for (uint32_t i = 0; i < ch->g.max_senders; i++) {
    struct rill__ipc_place *p = &ch->places[i];
    /* Acquire: pairs with the sender's release store of TAKEN (its start). */
    uint64_t st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_FREE)
      continue;
    /* Relaxed: our acquire load of claim made the pending of seq's claimer
     * visible (it was stored before the claim's release CAS). */
    if (__atomic_load_n(&p->cursor, __ATOMIC_RELAXED) != seq + 1)
      continue;
    if (rill__ipc_holder_alive(st, __atomic_load_n(&p->start, __ATOMIC_RELAXED)))
      return true;
  }
  return false;
}

/* Slot seq is claimed and its mark is `mark`, not seq + 1: aborts it when
 * its claimer is dead. True when the slot is aborted now (by us or
 * another receiver). */
bool rill__chan_abort_if_orphaned(rill_ipc_chan_t *ch, uint64_t seq, uint64_t mark) {
  uint64_t ms = rill_time_coarse_ms();
  if (ms - ch->checked_ms < CHECK_EVERY_MS)
    return false;
  ch->checked_ms = ms;
  if (claimer_alive(ch, seq))
    return false;
  struct rill__ipc_slot *sl = slot_at(ch, seq);
  /* Acquire: as every load of the mark. A commit that came meanwhile
   * fails our CAS below anyway. */
  if (__atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE) != mark)
    return false;
  /* Acquire on success: orders our later reads after the abort. */
  if (__atomic_compare_exchange_n(&sl->mark, &mark, RILL__CHAN_ABORTED | (seq + 1), false,
                                  __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    /* Relaxed: a counter for info. */
    __atomic_fetch_add(&ch->hdr->aborted, 1, __ATOMIC_RELAXED);
    return true;
  }
  return mark == (RILL__CHAN_ABORTED | (seq + 1));
}

/* Looks for dead receivers holding a message (at most once every
 * CHECK_EVERY_MS), so that it is handed out again even when no sender
 * waits for room. Each check reads /proc: with nothing to take (all) we
 * check every holder, else only the next one round the table, so that a
 * busy receiver reads /proc once a millisecond at most however many
 * receivers there are. True when an orphan was made. */
bool rill__chan_reap_holders(rill_ipc_chan_t *ch, bool all) {
  uint64_t ms = rill_time_coarse_ms();
  if (ms - ch->reaped_ms < CHECK_EVERY_MS)
    return false;
  ch->reaped_ms = ms;
  bool made = false;
  struct rill__ipc_place *rx = receivers(ch);
  const uint32_t n = ch->g.max_receivers;
  for (uint32_t j = 0; j < n; j++) {
    uint32_t i = (ch->reap_next + j) % n;
    if (&rx[i] == ch->me)
      continue;
    /* Acquire: pairs with the holder's release store of TAKEN (its start). */
    uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
    unsigned phase = RILL__IPC_ST_PHASE(st);
    if (phase != RILL__IPC_TAKEN && phase != RILL__IPC_CLAIMING)
      continue;
    /* Relaxed: a hint for whom to check; the reap decides on its own loads. */
    if (__atomic_load_n(&rx[i].cursor, __ATOMIC_RELAXED) >= RILL__CHAN_TAKING)
      continue; /* holds no message (or is taking one: its CAS decides) */
    made |= rill__chan_reap_receiver(ch, &rx[i], st) == RILL__CHAN_REAP_ORPHANED;
    if (!all) {
      ch->reap_next = (i + 1) % n;
      break;
    }
  }
  return made;
}

/* Open, queue receiver: frees place p if its holder is dead and held no
 * message (rill__chan_reap_receiver; a generic reap would lose it), for
 * rill__ipc_claim_place_with. */
bool rill__chan_reap_free(void *ch, struct rill__ipc_place *p, uint64_t st) {
  return rill__chan_reap_receiver(ch, p, st) == RILL__CHAN_REAP_FREED;
}
