/*
 * The event loops: one per core, each with its epoll set, its inbox of
 * wakeups pushed by other threads, and a sweep every 100 ms for timeouts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "net/server_internal.h"

/* Handshake and idle timeouts of this loop's connections; ask deadlines
 * by loop 0. Every 100 ms. */
static void sweep(struct loop *lp) {
  rill_server_t *s = lp->s;
  uint64_t now = rill_time_ns();
  rill__srv_accept_resume(lp);
  if (lp->idx == 0)
    rill__srv_asks_expire(lp, now);
  if (lp->idx == 0)
    rill__srv_log_flush(s);
  for (struct conn *c = lp->conns, *n; c; c = n) {
    n = c->next;
    if (c->closing) {
      /* Its last words have had a second to go (a peer that does not
       * read them would hold the connection forever). */
      if (++c->closing_ticks >= 10)
        rill__srv_conn_close(lp, c);
    } else if (!c->ready && now - c->born_ns > s->o.handshake_timeout_ns) {
      rill__srv_fatal(lp, c, RILL_ETIMEDOUT, "no HELLO in time");
      rill__srv_conn_settle(lp, c);
    } else if (now - c->last_ns > s->o.idle_timeout_ns) {
      rill__srv_fatal(lp, c, RILL_ETIMEDOUT, "idle too long");
      rill__srv_conn_settle(lp, c);
    } else if (c->ready && !c->pinged && now - c->last_ns > s->o.idle_timeout_ns / 2) {
      /* Quiet for half the timeout: asked for a sign of life, so a
       * subscriber waiting on a quiet topic stays while a dead peer goes. */
      c->pinged = true;
      rill__srv_send_frame(lp, c, RILL_F_PING, 0, 0, 0, 0, NULL, 0);
      rill__srv_conn_settle(lp, c);
    } else {
      /* A stream that stalls holds memory others may need: dropped, the
       * publisher told, its later pieces ignored. */
      bool told = false;
      for (uint32_t i = 0; i < IN_STREAMS; i++) {
        struct instream *in = &c->in[i];
        if (in->buf && now - in->last_ns > STREAM_STALL_NS) {
          rill__srv_send_error(lp, c, in->ch, in->id, RILL_ETIMEDOUT,
                               "PUBLISH: no piece of the stream for 10 s; dropped");
          rill__srv_stream_drop(s, c, in, true);
          told = true;
        }
      }
      /* A provider held by its asker looks again: a backstop for a
       * wakeup its asker's loop missed or did not send (it closed). One
       * held too long lets go of the ask that held it. */
      bool held = c->held_on;
      if (held && now - c->held_since > HOLD_MAX_NS)
        rill__srv_hold_expire(lp, c);
      if (told || held)
        rill__srv_conn_settle(lp, c);
    }
  }
}

/* What other threads pushed: topics appended to, frames for connections,
 * syncs done. */
static void loop_inbox(struct loop *lp) {
  struct wake *w = __atomic_exchange_n(&lp->inbox, NULL, __ATOMIC_ACQUIRE);
  while (w) {
    struct wake *next = w->next;
    if (w->kind == W_TOPIC) {
      struct tloop *tl = (struct tloop *)((char *)w - offsetof(struct tloop, w));
      /* Before the pump: a later append wakes again. seq_cst: the store
       * must not pass the pump's loads of the log (a store then a load),
       * or an append in between would find the flag set and not wake us. */
      __atomic_store_n(&tl->notified, false, __ATOMIC_SEQ_CST);
      struct topic *t = tl->t;
      rill__srv_pump_topic(lp, t);
      topic_put(lp->s, t); /* the wakeup's */
    } else if (w->kind == W_CONN) {
      struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, xw));
      rill__srv_conn_take_x(lp, c);
      conn_put(c);
    } else {
      /* seq_cst, as for notified: not past acks_release's loads of the
       * durable marks, or a sync in between would not wake us. */
      __atomic_store_n(&lp->sync_woken, false, __ATOMIC_SEQ_CST);
      rill__srv_acks_release(lp);
    }
    w = next;
  }
}

void *rill__srv_loop_main(void *arg) {
  struct loop *lp = arg;
  rill_server_t *s = lp->s;
  if (lp->idx) { /* loop 0 runs on the caller's thread: its name stays */
    char name[16];
    snprintf(name, sizeof name, "rill-loop%u", lp->idx % MAX_LOOPS);
    pthread_setname_np(pthread_self(), name);
  }
  struct epoll_event evs[64];
  lp->last_sweep = rill_time_ns();
  for (bool stop = false; !stop;) {
    /* Relaxed store, ordered before the inbox load by the seq_cst fence
     * that pairs with loop_wake's. */
    __atomic_store_n(&lp->sleeping, 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int timeout = __atomic_load_n(&lp->inbox, __ATOMIC_RELAXED) ? 0 : 100;
    int n = epoll_wait(lp->ep, evs, 64, timeout);
    __atomic_store_n(&lp->sleeping, 0, __ATOMIC_RELAXED);
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == s) {
        rill__srv_conn_accept(lp);
        continue;
      }
      if (p == &s->stopfd) {
        stop = true;
        continue;
      }
      if (p == lp) {
        uint64_t v;
        ssize_t r = read(lp->wakefd, &v, sizeof v);
        (void)r;
        continue;
      }
      struct conn *c = p;
      if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
        rill__srv_conn_close(lp, c);
        continue;
      }
      if (evs[i].events & EPOLLIN)
        rill__srv_conn_read(lp, c);
      rill__srv_conn_settle(lp, c);
    }
    loop_inbox(lp);
    /* Frames queued on connections other than the one whose request made
     * them (deliveries to subscribers of a topic just published to). */
    while (lp->dirty) {
      struct conn *c = lp->dirty;
      lp->dirty = c->next_dirty;
      c->dirty = false;
      rill__srv_conn_settle(lp, c);
    }
    if (rill_time_ns() - lp->last_sweep > 100000000ull) {
      sweep(lp);
      lp->last_sweep = rill_time_ns();
    }
  }
  /* Stop. Acks still waiting for the syncer: their topics synced here
   * and answered, so a publisher hears about what is on disk. */
  size_t nacks = __atomic_load_n(&lp->nacks, __ATOMIC_RELAXED);
  for (size_t i = 0; i < nacks; i++) {
    struct pack *a = &lp->acks[i];
    if (a->c && a->last >= __atomic_load_n(&a->t->durable, __ATOMIC_ACQUIRE)) {
      uint64_t upto = rill_log_next(a->t->log);
      if (rill_log_sync(a->t->log) == 0)
        rill__srv_durable_raise(a->t, upto);
    }
  }
  rill__srv_acks_release(lp);
  /* Then tell everyone, and give them what is queued. */
  for (struct conn *c = lp->conns; c; c = c->next) {
    rill__srv_send_frame(lp, c, RILL_F_BYE, 0, 0, 0, (uint64_t)(int64_t)RILL_ECLOSED,
                         "server stopping", 15);
    rill__srv_conn_flush(lp, c);
  }
  return NULL;
}

int rill__srv_loop_init(rill_server_t *s, struct loop *lp, uint32_t idx) {
  lp->s = s;
  lp->idx = idx;
  lp->sync_w.kind = W_SYNC;
  rill__prom_init(&lp->stats);
  lp->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (lp->spare < 0)
    return rill__err_errno("server: open /dev/null (a spare descriptor)");
  lp->ep = epoll_create1(EPOLL_CLOEXEC);
  lp->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (lp->ep < 0 || lp->wakefd < 0)
    return rill__err_errno("server: epoll or eventfd");
  /* EPOLLEXCLUSIVE: a new connection wakes one loop, not all of them. */
  struct epoll_event el = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = s};
  struct epoll_event es = {.events = EPOLLIN, .data.ptr = &s->stopfd};
  struct epoll_event ew = {.events = EPOLLIN, .data.ptr = lp};
  if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, s->lfd, &el) ||
      epoll_ctl(lp->ep, EPOLL_CTL_ADD, s->stopfd, &es) ||
      epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->wakefd, &ew))
    return rill__err_errno("server: epoll_ctl");
  return 0;
}
