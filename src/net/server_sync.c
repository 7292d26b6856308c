/*
 * Durability without stalling (RILL_SERVER_SYNC_GROUP): a loop that appends
 * queues the topic for the syncer thread, whose one fdatasync covers every
 * append before it from every loop; acknowledged publishes wait on their
 * loop until their records are durable. No loop ever waits on the disk.
 */

#include "net/server_internal.h"

/* Queues t for the syncer, once until it syncs it. */
void rill__srv_want_sync(rill_server_t *s, struct topic *t) {
  if (__atomic_exchange_n(&t->sync_wanted, true, __ATOMIC_ACQ_REL))
    return;
  topic_ref(t); /* the queue's, dropped by the syncer */
  struct topic *h = __atomic_load_n(&s->sync_q, __ATOMIC_RELAXED);
  do
    t->next_sync = h;
  while (!__atomic_compare_exchange_n(&s->sync_q, &h, t, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
  rill__futex_bump(&s->sync_word);
}

/* Moves t's durable mark up to upto, never down (the syncer and a
 * stopping loop may both sync). */
void rill__srv_durable_raise(struct topic *t, uint64_t upto) {
  uint64_t d = __atomic_load_n(&t->durable, __ATOMIC_RELAXED);
  while (d < upto && !__atomic_compare_exchange_n(&t->durable, &d, upto, true, __ATOMIC_RELEASE,
                                                  __ATOMIC_RELAXED))
    ;
}

/* The syncer: one fdatasync per queued topic covers every record appended
 * to it before, by any loop; then the loops with acks waiting are woken. */
void *rill__srv_syncer_main(void *arg) {
  rill_server_t *s = arg;
  pthread_setname_np(pthread_self(), "rill-sync");
  for (;;) {
    /* The futex word is a plain u32 (the futex calls take one): read
     * before the queue, acquire pairing with rill__futex_bump's release,
     * so a push after the exchange below changes it and the wait returns. */
    uint32_t w = __atomic_load_n(&s->sync_word, __ATOMIC_ACQUIRE);
    struct topic *q = __atomic_exchange_n(&s->sync_q, NULL, __ATOMIC_ACQUIRE);
    if (!q) {
      /* Acquire, pairing with run's release store made after every loop
       * was joined. Topics queued after the exchange above are synced by
       * run itself. */
      if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
        return NULL;
      rill__futex_wait(&s->sync_word, w, 100000000ull);
      continue;
    }
    while (q) {
      struct topic *t = q;
      q = t->next_sync;
      /* Cleared before the sync: an append after this queues it again.
       * seq_cst: this store must not pass the load of the log's end below
       * (a store then a load), or an append in between would find the
       * flag still set, not queue the topic, and miss this sync. */
      __atomic_store_n(&t->sync_wanted, false, __ATOMIC_SEQ_CST);
      uint64_t upto = rill_log_next(t->log);
      int rc = rill_log_sync(t->log);
      if (rc) {
        rill__srv_log(s, rc == RILL_ENOSPC ? L_NOSPC : L_IO, RILL_SERVER_LOG_ERROR,
                      "topic '%s': sync failed: %s", t->name, rill_errmsg());
        /* Relaxed: the release store of failed_upto publishes it. */
        __atomic_store_n(&t->sync_err, rc, __ATOMIC_RELAXED);
        __atomic_store_n(&t->failed_upto, upto, __ATOMIC_RELEASE);
      } else {
        rill__srv_durable_raise(t, upto);
      }
      topic_put(s, t);
    }
    for (uint32_t i = 0; i < s->nloops; i++) {
      struct loop *lp = &s->loops[i];
      if (__atomic_load_n(&lp->nacks, __ATOMIC_RELAXED) &&
          !__atomic_exchange_n(&lp->sync_woken, true, __ATOMIC_ACQ_REL))
        loop_wake(lp, &lp->sync_w);
    }
  }
}

/* Parks an acknowledged publish until its records are synced. */
void rill__srv_ack_later(struct loop *lp, struct conn *c, struct topic *t, uint16_t ch, uint64_t id,
                         uint64_t first, uint64_t last, uint64_t t0) {
  size_t n = __atomic_load_n(&lp->nacks, __ATOMIC_RELAXED);
  if (n == lp->cap_acks) {
    size_t cap = n ? 2 * n : 256;
    struct pack *a = rill__realloc(lp->acks, cap * sizeof *a);
    if (!a) {
      rill__srv_send_error(lp, c, ch, id, RILL_ENOMEM,
                           "PUBLISH: appended, but no memory to wait for its sync");
      return;
    }
    lp->acks = a;
    lp->cap_acks = cap;
  }
  lp->acks[n] = (struct pack){c, t, id, first, last, t0, ch};
  hold(lp, t);
  __atomic_store_n(&lp->nacks, n + 1, __ATOMIC_RELAXED);
  c->acks_waiting++;
}

/* Sends the ACKs whose records are now durable (or the sync's error). */
void rill__srv_acks_release(struct loop *lp) {
  size_t n = __atomic_load_n(&lp->nacks, __ATOMIC_RELAXED), keep = 0;
  for (size_t i = 0; i < n; i++) {
    struct pack *a = &lp->acks[i];
    if (!a->c) {
      unhold(lp, a->t);
      continue;
    }
    uint64_t durable = __atomic_load_n(&a->t->durable, __ATOMIC_ACQUIRE);
    uint64_t failed = __atomic_load_n(&a->t->failed_upto, __ATOMIC_ACQUIRE);
    if (a->last < durable) {
      rill__srv_send_frame(lp, a->c, RILL_F_ACK, 0, a->ch, a->id, a->first, NULL, 0);
      rill_hist_record(&lp->publish_ack, rill_time_ns() - a->t0);
    } else if (a->last < failed)
      rill__srv_send_error(lp, a->c, a->ch, a->id,
                           /* after the acquire load of failed_upto, which publishes it */
                           __atomic_load_n(&a->t->sync_err, __ATOMIC_RELAXED),
                           "PUBLISH: appended, but the sync failed");
    else {
      lp->acks[keep++] = *a;
      continue;
    }
    a->c->acks_waiting--;
    unhold(lp, a->t);
  }
  __atomic_store_n(&lp->nacks, keep, __ATOMIC_RELAXED);
}
