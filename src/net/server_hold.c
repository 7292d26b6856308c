/*
 * The reply hold: a provider whose replies fill its asker's send queue past
 * half tx_limit is not read until the asker has read its queue down, so a
 * provider faster than its asker is held back by TCP instead of the asker
 * being cut off. A held provider waits on its asker's `waiters` list and is
 * woken when that queue is under a quarter of tx_limit.
 */

#include "net/server_internal.h"

/* What is queued for a (its own queue and other loops' frames for it),
 * seen from lp. Under a's xlock. */
static size_t load_of(struct loop *lp, const struct conn *a) {
  return a->xtx_len + (a->lp == lp ? queued(a) : __atomic_load_n(&a->txq, __ATOMIC_RELAXED));
}

/* Under a's xlock: takes p off a's waiters, if it is on them; true when
 * it was (the caller puts the list's reference, after the unlock). */
static bool waiter_leave(struct conn *a, struct conn *p) {
  if (!p->waiting)
    return false;
  struct conn **pp = &a->waiters;
  while (*pp != p)
    pp = &(*pp)->next_waiter;
  *pp = p->next_waiter;
  p->waiting = false;
  a->nwaiters--;
  return true;
}

/* Under a's xlock: takes up to max providers off a's waiters (each with
 * the list's reference) into out. A provider taken may put itself on a
 * list again at once (its next_waiter is then its own), so they are
 * moved out before the lock goes, never walked after. */
uint32_t rill__srv_waiters_take(struct conn *a, struct conn **out, uint32_t max) {
  uint32_t n = 0;
  for (; n < max && a->waiters; n++) {
    struct conn *p = a->waiters;
    a->waiters = p->next_waiter;
    p->waiting = false;
    a->nwaiters--;
    out[n] = p;
  }
  if (!a->waiters) /* under xlock, as the list */
    __atomic_store_n(&a->waited, false, __ATOMIC_RELAXED);
  return n;
}

/* Provider p lets go of the asker that held it. */
void rill__srv_hold_release(struct conn *p) {
  struct conn *a = p->held_on;
  pthread_mutex_lock(&a->xlock);
  bool left = waiter_leave(a, p);
  pthread_mutex_unlock(&a->xlock);
  if (left)
    conn_put(p); /* the list's; the caller holds p */
  p->held_on = NULL;
  conn_put(a);
}

/* Is provider p's asker still over half its tx_limit? If so p stays
 * held and is on the asker's waiters list; if not (or the asker is gone)
 * p lets go of it. */
bool rill__srv_hold_over(struct loop *lp, struct conn *p) {
  struct conn *a = p->held_on;
  pthread_mutex_lock(&a->xlock);
  bool over = !a->dead && !a->cut && load_of(lp, a) > lp->s->o.tx_limit / 2;
  if (over && !p->waiting) {
    conn_get(p); /* the list's */
    p->waiting = true;
    p->next_waiter = a->waiters;
    a->waiters = p;
    a->nwaiters++;
    /* Relaxed: a hint for a's loop; the sweep checks held providers too. */
    __atomic_store_n(&a->waited, true, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&a->xlock);
  if (!over)
    rill__srv_hold_release(p);
  return over;
}

/* After a REPLY or a piece of one went from provider p to asker a: past
 * half a's tx_limit, p is not read any more until a has read enough, so
 * a provider faster than its asker is held back by TCP instead of the
 * asker being cut off for what it did not ask to be sent so fast. */
void rill__srv_reply_hold(struct loop *lp, struct conn *p, const struct ask *ask) {
  struct conn *a = ask->asker;
  if (a == p || p->held_on) /* its own queue pauses it (over) */
    return;
  /* Nearly every reply leaves its asker far under the mark: a look at its
   * queue without its lock (relaxed: the cross-loop part through its
   * hint, its own through txq, or queued() on this loop) decides without
   * a reference or a lock, which cost 60 ns a reply (pipelined asks,
   * 300 against 365 ns each). A stale look only moves the hold to a
   * later reply; the cut-off at tx_limit stays the backstop, as it was
   * for the asks an asker forwards. The ask holds a reference on a. */
  size_t est = __atomic_load_n(&a->xtx_hint, __ATOMIC_RELAXED) +
               (a->lp == lp ? queued(a) : __atomic_load_n(&a->txq, __ATOMIC_RELAXED));
  if (est <= lp->s->o.tx_limit / 2)
    return;
  conn_get(a);
  p->held_on = a;
  if (rill__srv_hold_over(lp, p)) {
    p->paused = true;
    p->held_since = rill_time_ns();
    p->held_sid = ask->sid;
    INC(lp, replies_held, 1);
  }
}

/* Wakes provider p, held by an asker of loop lp, to look again, and puts
 * the waiters list's reference. */
static void waiter_wake(struct loop *lp, struct conn *p) {
  pthread_mutex_lock(&p->xlock);
  bool wake = !p->dead && !p->xwoken;
  if (wake && p->lp != lp)
    p->xwoken = true;
  pthread_mutex_unlock(&p->xlock);
  if (wake && p->lp == lp) {
    mark_dirty(lp, p);
  } else if (wake) {
    conn_get(p); /* for the wakeup node; its loop puts it */
    loop_wake(p->lp, &p->xw);
  }
  conn_put(p); /* the list's */
}

/* The providers a holds back, woken once its queue is under a quarter
 * of tx_limit (a's loop, at its settle): each looks again (hold_over). */
void rill__srv_waiters_wake(struct loop *lp, struct conn *a) {
  struct conn *batch[32];
  pthread_mutex_lock(&a->xlock);
  uint32_t left = a->nwaiters; /* those on it now: one that comes back waits for the next */
  pthread_mutex_unlock(&a->xlock);
  for (uint32_t n = 32; n == 32 && left; left -= n) {
    pthread_mutex_lock(&a->xlock);
    n = rill__srv_waiters_take(a, batch, left < 32 ? left : 32);
    pthread_mutex_unlock(&a->xlock);
    for (uint32_t i = 0; i < n; i++)
      waiter_wake(lp, batch[i]);
  }
}
