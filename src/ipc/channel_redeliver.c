/*
 * Redelivery on a queue channel (channel_internal.h, "Redelivery"): the
 * message a dead receiver held is adopted by a live one, at its next recv
 * or at its open, and handed out again with RILL_IPC_REDELIVERED.
 */
#include <unistd.h>

#include "ipc/channel_internal.h"

/* Hands out seq s again: our cursor holds it (TAKING | s or s), adopted
 * from a dead receiver that had taken it. Its slot has been held since
 * that take, so its mark is still s + 1 (or aborted, taken by the dead
 * receiver and not reported). */
int rill__chan_redeliver(rill_ipc_chan_t *ch, uint64_t s, rill_ipc_msg_t *m, uint64_t *lost) {
  struct rill__ipc_slot *sl = slot_at(ch, s);
  /* Acquire: pairs with the sender's release CAS of the mark. */
  uint64_t mark = __atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE);
  if (mark == s + 1) {
    /* Relaxed: the hold is confirmed ours (a reaper of ours hands s out
     * again); published with the bump below. */
    __atomic_store_n(&ch->me->cursor, s, __ATOMIC_RELAXED);
    /* Release: pairs with the scans' acquire loads before and after their
     * look (scan()): our hold is visible to one that saw the bump. */
    __atomic_fetch_add(&ch->hdr->redelivered, 1, __ATOMIC_RELEASE);
    int rc = deliver(ch, sl, s, m);
    if (rc == 0) {
      m->flags = RILL_IPC_REDELIVERED;
      return 0;
    }
    /* Release: as every cursor store. */
    __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
    return rc;
  }
  /* Release: as every cursor store; nothing of the slot was read. */
  __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
  if (mark == (RILL__CHAN_ABORTED | (s + 1)))
    return rill__chan_lost_one(ch, s, lost);
  return rill__err(RILL_ECORRUPT,
                   "ipc channel %s: message %llu, held by a dead receiver, has its slot marked "
                   "%llu",
                   ch->name, (unsigned long long)s, (unsigned long long)mark);
}

/* Adopts an orphan and hands its message out again (file comment):
 * RILL_EAGAIN when there is none to adopt. */
int rill__chan_try_adopt(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  struct rill__ipc_place *rx = receivers(ch);
  for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
    struct rill__ipc_place *p = &rx[i];
    /* Acquire: pairs with the reaper's release store of ORPHAN, after its
     * store of the cursor. */
    uint64_t st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) != RILL__IPC_ORPHAN)
      continue;
    uint64_t s = __atomic_load_n(&p->cursor, __ATOMIC_RELAXED);
    if (s >= RILL__CHAN_TAKING)
      continue; /* no plain hold: not an orphan we made; left to be seen */
    /* Relaxed: published by the bump of redelivered (release) if we win.
     * TAKING: should we die before confirming it, our reaper frees our
     * place, and the orphan's (claimed by a dead process, its cursor a
     * plain s) is made an orphan again: one holder of s either way. */
    __atomic_store_n(&ch->me->cursor, RILL__CHAN_TAKING | s, __ATOMIC_RELAXED);
    uint64_t ours = RILL__IPC_ST(RILL__IPC_CLAIMING, RILL__IPC_ST_GEN(st) + 1, (uint32_t)getpid());
    /* A CAS from exactly the orphan we saw: of two adopters one wins, and
     * a place freed and retaken meanwhile has another generation. Acquire:
     * as the load above. */
    if (!__atomic_compare_exchange_n(&p->state, &st, ours, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
      /* Release: as every cursor store; the slot was not read. */
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
      continue;
    }
    /* Relaxed: a hint to look, counted up before the ORPHAN word. */
    __atomic_fetch_sub(&ch->hdr->orphans, 1, __ATOMIC_RELAXED);
    int rc = rill__chan_redeliver(ch, s, m, lost);
    /* Release, both: the hold is ours (or given up) before the orphan
     * gives it up, after the bump a scan checks (file comment); a free
     * queue place shows NONE. */
    __atomic_store_n(&p->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
    __atomic_store_n(&p->state, RILL__IPC_ST(RILL__IPC_FREE, RILL__IPC_ST_GEN(ours), 0),
                     __ATOMIC_RELEASE);
    if (rc != RILL_EAGAIN)
      return rc;
  }
  return RILL_EAGAIN;
}

/* Open, queue receiver, no place free: takes orphan p with its hold; the
 * first recv hands the message out again. The cursor is never touched:
 * claiming, then taken, the place holds it throughout for the scans. */
bool rill__chan_adopt_place(rill_ipc_chan_t *ch, struct rill__ipc_place *p) {
  /* Acquire: pairs with the reaper's release store of ORPHAN. */
  uint64_t st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
  if (RILL__IPC_ST_PHASE(st) != RILL__IPC_ORPHAN)
    return false;
  uint64_t s = __atomic_load_n(&p->cursor, __ATOMIC_RELAXED);
  if (s >= RILL__CHAN_TAKING)
    return false;
  /* seq_cst: as rill__ipc_claim_place; from exactly the orphan seen (its
   * cursor s with it), as rill__chan_try_adopt. */
  if (!rill__ipc_claim_from(p, st, &ch->mine))
    return false;
  /* Relaxed: a hint to look, counted up before the ORPHAN word. */
  __atomic_fetch_sub(&ch->hdr->orphans, 1, __ATOMIC_RELAXED);
  ch->adopted = true;
  ch->adopted_seq = s;
  return true;
}

/* Close, queue receiver opened on an orphan whose message it never asked
 * for: the place goes back to ORPHAN (its cursor still holds the message)
 * for another receiver. */
void rill__chan_leave_orphan(rill_ipc_chan_t *ch) {
  struct rill__chan_hdr *h = ch->hdr;
  uint64_t mine = ch->mine;
  /* Relaxed: counted up before the ORPHAN word, as a reaper does. */
  __atomic_fetch_add(&h->orphans, 1, __ATOMIC_RELAXED);
  /* Release: pairs with the adopters' acquire loads of the state. */
  if (!__atomic_compare_exchange_n(&ch->me->state, &mine,
                                   RILL__IPC_ST(RILL__IPC_ORPHAN, RILL__IPC_ST_GEN(mine), 0), false,
                                   __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
    __atomic_fetch_sub(&h->orphans, 1, __ATOMIC_RELAXED); /* not ours: never, alive */
    return;
  }
  wake_receivers(ch);
}
