/*
 * Records out to clients: subscriptions (SUBSCRIBE, UNSUBSCRIBE, CREDIT)
 * pumped once per read of the topics appended to, FETCH, and records over
 * max_body sent in chunks as the send queue drains.
 */
#include <errno.h>
#include <stdio.h>

#include "net/server_internal.h"

/* Sends the next pieces of the record going out in chunks, as far as the
 * send queue allows: DELIVER with STREAM (id = the whole length) and the
 * first max_body bytes, then CHUNKs. True when none is left going out. */
bool rill__srv_out_pump(struct loop *lp, struct conn *c) {
  struct outstream *o = &c->out;
  size_t limit = lp->s->o.tx_limit, piece = lp->s->o.max_body;
  while (o->on && !c->closing && queued(c) < limit / 2) {
    size_t n = o->data.len - o->off < piece ? o->data.len - o->off : piece;
    rill_buf_t view = {o->data.store, o->data.data + o->off, n}; /* of the record's bytes */
    bool more = o->off + n < o->data.len;
    if (o->off == 0)
      rill__srv_send_frame_ref(lp, c, RILL_F_DELIVER, RILL_FF_STREAM, o->ch, o->data.len, o->seq,
                               &view);
    else
      rill__srv_send_frame_ref(lp, c, RILL_F_CHUNK, more ? RILL_FF_MORE : 0, o->ch, o->seq,
                               RILL_F_DELIVER, &view);
    o->off += n;
    if (!more) {
      o->on = false;
      if (o->fetch) /* END: where a next FETCH would start */
        rill__srv_send_frame(lp, c, RILL_F_DELIVER, RILL_FF_END, 0, o->id, o->seq + 1, NULL, 0);
    }
  }
  if (!o->on || c->closing) {
    rill_buf_release(&o->data);
    o->on = false;
  }
  return !o->on;
}

/* Starts sending rec, a record over max_body, in chunks; it keeps the
 * reference to the record's bytes until the last chunk is queued. */
static void out_start(struct loop *lp, struct conn *c, uint16_t ch, uint64_t fetch_id, bool fetch,
                      rill_log_record_t *rec) {
  c->out = (struct outstream){
      .on = true, .fetch = fetch, .ch = ch, .id = fetch_id, .seq = rec->seq, .data = rec->payload};
  rec->payload = RILL_BUF_EMPTY;
  rill__srv_out_pump(lp, c);
}

/* Delivers what u's credits and the send queue allow. */
void rill__srv_pump(struct loop *lp, struct sub *u) {
  struct conn *c = u->c;
  size_t limit = lp->s->o.tx_limit;
  if (!rill__srv_out_pump(lp, c))
    return; /* a record in chunks goes first */
  while (u->credits && !c->closing && !c->out.on && queued(c) < limit / 2) {
    if (c->nrefs == TX_REFS) {
      /* Every slot for a record sent by reference is taken: more would
       * be copied into the queue (a 64 KiB record copied once more).
       * They wait for the socket to take some; settle pumps again. */
      c->refs_full = true;
      return;
    }
    uint64_t first = rill_log_first(u->t->log);
    if (u->next < first)
      u->next = first; /* retention passed it: the client sees the gap in sequences */
    if (u->next >= rill_log_next(u->t->log))
      return;
    rill_log_record_t recs[DELIVER_BATCH];
    size_t n = 0, want = u->credits < DELIVER_BATCH ? (size_t)u->credits : DELIVER_BATCH;
    if (want > TX_REFS - c->nrefs)
      want = TX_REFS - c->nrefs; /* each may take a slot */
    int rc = rill_log_read_range(u->t->log, u->next, want, limit / 4, recs, &n);
    size_t sent = 0;
    for (size_t k = 0; k < n; k++) {
      if (c->out.on) {
        rill_buf_release(&recs[k].payload); /* read again once the chunks are out */
        continue;
      }
      size_t run = 0; /* small ones from k on, copied into the queue together */
      while (k + run < n && recs[k + run].payload.len < REF_MIN)
        run++;
      if (run) {
        rill__srv_send_delivers(lp, c, u->ch, recs + k, run);
        sent += run;
        u->next = recs[k + run - 1].seq + 1;
        for (size_t i = 0; i < run; i++)
          rill_buf_release(&recs[k + i].payload);
        k += run - 1;
        continue;
      }
      sent++;
      u->next = recs[k].seq + 1;
      if (recs[k].payload.len > lp->s->o.max_body)
        out_start(lp, c, u->ch, 0, false, &recs[k]);
      else
        rill__srv_send_frame_ref(lp, c, RILL_F_DELIVER, 0, u->ch, 0, recs[k].seq, &recs[k].payload);
      rill_buf_release(&recs[k].payload);
    }
    u->credits -= sent;
    INC(lp, delivered, sent);
    if (rc && !n) {
      /* Named, as FETCH does: the subscriber learns which record it will
       * never get, and goes on past it. */
      char msg[512];
      snprintf(msg, sizeof msg, "subscription: record %llu of topic '%s' cannot be read: %s",
               (unsigned long long)u->next, u->t->name, rill_errmsg());
      rill__srv_send_error(lp, c, u->ch, 0, rc, msg);
      u->next++;
    }
  }
}

void rill__srv_pump_topic(struct loop *lp, struct topic *t) {
  for (struct sub *u = t->per[lp->idx].subs; u; u = u->next_in_topic)
    rill__srv_pump(lp, u);
}

/* After a read: pump this loop's subscribers of the topics it appended
 * to, wake the other loops that have some, and queue the group syncs. */
void rill__srv_pump_touched(struct loop *lp) {
  rill_server_t *s = lp->s;
  while (lp->touched) {
    struct tloop *tl = lp->touched;
    lp->touched = tl->next_touched;
    tl->touched = false;
    struct topic *t = tl->t;
    if (t->group)
      rill__srv_want_sync(s, t);
    if (tl->subs)
      rill__srv_pump_topic(lp, t);
    for (uint32_t i = 0; i < s->nloops; i++) {
      struct tloop *o = &t->per[i];
      if (i != lp->idx && __atomic_load_n(&o->nsubs, __ATOMIC_RELAXED) &&
          !__atomic_exchange_n(&o->notified, true, __ATOMIC_ACQ_REL)) {
        topic_ref(t); /* the wakeup's, dropped by the loop it wakes */
        loop_wake(&s->loops[i], &o->w);
      }
    }
    unhold(lp, t); /* touch's */
  }
}

/* Frees a subscription; the server's count of them is the caller's to
 * lower. */
void rill__srv_sub_free(struct loop *lp, struct sub *u) {
  struct tloop *tl = &u->t->per[lp->idx];
  *u->prev_in_topic = u->next_in_topic;
  if (u->next_in_topic)
    u->next_in_topic->prev_in_topic = u->prev_in_topic;
  /* Only this loop writes its count; others read it relaxed to decide
   * whom to wake (a stale count costs one needless wakeup). */
  __atomic_store_n(&tl->nsubs, __atomic_load_n(&tl->nsubs, __ATOMIC_RELAXED) - 1, __ATOMIC_RELAXED);
  *u->prev_in_conn = u->next_in_conn;
  if (u->next_in_conn)
    u->next_in_conn->prev_in_conn = u->prev_in_conn;
  rill__srv_chtab_del(&u->c->subch, u->ch);
  struct topic *t = u->t;
  rill__free(u);
  unhold(lp, t);
}

/* The start a SUBSCRIBE or FETCH asks for, in the log's terms. */
static uint64_t start_of(rill_log_t *log, uint64_t from) {
  if (from == RILL_NET_FROM_EARLIEST)
    return rill_log_first(log);
  if (from == RILL_NET_FROM_LATEST)
    return rill_log_next(log);
  return from < rill_log_first(log) ? rill_log_first(log) : from;
}

void rill__srv_on_subscribe(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  if (!rill_net_name_ok(f->body, f->len)) {
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_EINVAL, "SUBSCRIBE: not a topic name");
    return;
  }
  if (sub_of(c, f->channel)) {
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_EEXIST,
                         "SUBSCRIBE: channel already subscribed");
    return;
  }
  rill_server_t *s = lp->s;
  /* A subscription is memory, a slot and a turn in its topic's pump until
   * it goes: held to a count per connection and on the server, both taken
   * before topic_get, so a refused SUBSCRIBE makes no topic. */
  if (!rill__srv_limit_take(lp, c, f, c->subch.n, s->o.max_subs_per_conn, &s->nsubs, s->o.max_subs,
                            STAT(subs_refused), "SUBSCRIBE", "subs", "subscriptions"))
    return;
  if (!rill__srv_chtab_reserve(&c->subch)) {
    count_give(&s->nsubs, 1);
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_ENOMEM, "SUBSCRIBE: no memory");
    return;
  }
  int rc = 0;
  /* A topic only when asked: a mistyped name must not make one. */
  struct topic *t = rill__srv_topic_get(lp->s, f->body, f->len, f->flags & RILL_FF_CREATE, &rc);
  if (!t)
    count_give(&s->nsubs, 1);
  if (!t && rc == RILL_ENOENT) {
    char msg[320];
    snprintf(msg, sizeof msg, "SUBSCRIBE: no topic '%.*s' (subscribe with CREATE to make it)",
             (int)f->len, (const char *)f->body);
    rill__srv_send_error(lp, c, f->channel, f->id, rc, msg);
    return;
  }
  struct sub *u = t ? rill__calloc(1, sizeof *u) : NULL;
  if (t && !u)
    count_give(&s->nsubs, 1);
  if (!u) {
    rill__srv_send_error(lp, c, f->channel, f->id, t ? RILL_ENOMEM : rc,
                         t ? "no memory" : rill_errmsg());
    if (t)
      topic_put(lp->s, t);
    return;
  }
  struct tloop *tl = &t->per[lp->idx];
  /* Counted under reg, where TOPIC_DELETE looks, and before the ACK
   * goes: from here on, appends by other loops wake this one. One
   * appended just before is caught by the first CREDIT's pump, which
   * reads the log, not the wakeups. */
  pthread_mutex_lock(&s->reg);
  bool deleted = t->deleted;
  if (!deleted)
    __atomic_store_n(&tl->nsubs, __atomic_load_n(&tl->nsubs, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&s->reg);
  if (deleted) {
    rill__free(u);
    count_give(&s->nsubs, 1);
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_ENOENT,
                         "SUBSCRIBE: the topic was deleted meanwhile");
    topic_put(lp->s, t);
    return;
  }
  hold(lp, t); /* the subscription's, until sub_free */
  topic_put(lp->s, t);
  *u = (struct sub){.c = c, .ch = f->channel, .t = t, .next = start_of(t->log, f->arg)};
  u->next_in_conn = c->subs;
  u->prev_in_conn = &c->subs;
  if (c->subs)
    c->subs->prev_in_conn = &u->next_in_conn;
  c->subs = u;
  u->next_in_topic = tl->subs;
  u->prev_in_topic = &tl->subs;
  if (tl->subs)
    tl->subs->prev_in_topic = &u->next_in_topic;
  tl->subs = u;
  rill__srv_chtab_put(&c->subch, f->channel, u);
  rill__srv_send_frame(lp, c, RILL_F_ACK, 0, f->channel, f->id, u->next, NULL, 0);
}

void rill__srv_on_unsubscribe(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  struct sub *u = sub_of(c, f->channel);
  if (!u) {
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_ENOENT,
                         "UNSUBSCRIBE: no such subscription");
    return;
  }
  uint64_t next = u->next;
  rill__srv_sub_free(lp, u);
  count_give(&lp->s->nsubs, 1);
  rill__srv_send_frame(lp, c, RILL_F_ACK, 0, f->channel, f->id, next, NULL, 0);
}

void rill__srv_on_credit(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  if (f->channel == 0)
    return; /* publish credits flow the other way */
  struct sub *u = sub_of(c, f->channel);
  if (!u) {
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_ENOENT, "CREDIT: no such subscription");
    return;
  }
  uint64_t max = lp->s->o.sub_credits_max;
  u->credits = f->arg > max - u->credits ? max : u->credits + f->arg;
  rill__srv_pump(lp, u);
}

/* A FETCH whose next record cannot be read (damaged on disk, say) ends
 * with an ERROR naming it instead of END: an END would send a client that
 * goes on from its sequence back to the same record forever. The records
 * before it were delivered; the client may skip it with a FETCH from
 * seq + 1. */
static void fetch_failed(struct loop *lp, struct conn *c, struct topic *t, uint64_t id,
                         uint64_t seq, int rc) {
  char msg[512];
  snprintf(msg, sizeof msg, "FETCH: record %llu of topic '%s' cannot be read: %s",
           (unsigned long long)seq, t->name, rill_errmsg());
  rill__srv_send_error(lp, c, 0, id, rc, msg);
}

bool rill__srv_fetch_parse(const rill_frame_t *f, uint32_t *count) {
  if (f->len < 4 || !rill_net_name_ok(f->body + 4, f->len - 4))
    return false;
  *count = rill__get32(f->body);
  return true;
}

void rill__srv_on_fetch(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  uint32_t count;
  if (!rill__srv_fetch_parse(f, &count)) {
    rill__srv_send_error(lp, c, 0, f->id, RILL_EINVAL, "FETCH: a u32 count, then a topic name");
    return;
  }
  if (count > DELIVER_BATCH * 16)
    count = DELIVER_BATCH * 16;
  int rc = 0;
  struct topic *t = rill__srv_topic_get(lp->s, f->body + 4, f->len - 4, false, &rc);
  if (!t) {
    rill__srv_send_error(lp, c, 0, f->id, rc, rill_errmsg());
    return;
  }
  size_t limit = lp->s->o.tx_limit;
  uint64_t seq = start_of(t->log, f->arg);
  bool streamed = false;
  while (count) {
    rill_log_record_t recs[DELIVER_BATCH];
    size_t n = 0;
    rc = rill_log_read_range(t->log, seq, count < DELIVER_BATCH ? count : DELIVER_BATCH, limit / 4,
                             recs, &n);
    for (size_t k = 0; k < n; k++) {
      if (c->out.on || streamed) { /* the answer ends with a streamed record */
        rill_buf_release(&recs[k].payload);
        continue;
      }
      seq = recs[k].seq + 1;
      if (recs[k].payload.len > lp->s->o.max_body) {
        out_start(lp, c, 0, f->id, true, &recs[k]); /* the answer ends with it */
        streamed = true;
      } else
        rill__srv_send_frame_ref(lp, c, RILL_F_DELIVER, 0, 0, f->id, recs[k].seq, &recs[k].payload);
      rill_buf_release(&recs[k].payload);
    }
    count -= (uint32_t)n;
    if (rc && rc != RILL_ENOENT && !c->out.on && !streamed) {
      fetch_failed(lp, c, t, f->id, seq, rc);
      topic_put(lp->s, t);
      return;
    }
    if (!n || c->out.on || streamed || queued(c) > limit / 2)
      break;
  }
  /* END: arg is where a next FETCH would start (after the chunks, if a
   * record goes out in chunks). */
  if (!streamed)
    rill__srv_send_frame(lp, c, RILL_F_DELIVER, RILL_FF_END, 0, f->id, seq, NULL, 0);
  topic_put(lp->s, t);
}
