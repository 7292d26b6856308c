/*
 * Publishing: BIND gives a channel a topic, PUBLISH and PUBLISH_BATCH
 * append to its log straight from the receive buffer, and the ACK goes now
 * or, under group commit, once the syncer has the records on disk.
 */
#include <stdio.h>

#include "net/server_internal.h"

/* A channel moves from topic `from` (NULL: a new one) to `to`: the
 * binders counts that TOPIC_DELETE reads. False when `to` was deleted
 * since topic_get found it. */
static bool bind_count(rill_server_t *s, struct topic *from, struct topic *to) {
  pthread_mutex_lock(&s->reg);
  bool ok = !to->deleted;
  if (ok && from != to) {
    if (from)
      from->binders--;
    to->binders++;
  }
  pthread_mutex_unlock(&s->reg);
  return ok;
}

void rill__srv_on_bind(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  if (!rill_net_name_ok(f->body, f->len)) {
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_EINVAL, "BIND: not a topic name");
    return;
  }
  /* A bound channel is memory and a slot until its connection goes: held
   * to a count per connection and on the server, both taken before
   * topic_get, so a refused BIND makes no topic. Rebinding a channel
   * takes nothing more. */
  struct chslot *sl = chtab_find(&c->binds, f->channel);
  if (!sl &&
      !rill__srv_limit_take(lp, c, f, c->binds.n, s->o.max_binds_per_conn, &s->nbinds,
                            s->o.max_binds, STAT(binds_refused), "BIND", "binds", "channels bound"))
    return;
  int rc = 0;
  struct topic *t = NULL;
  const char *msg = NULL;
  if (!sl && !rill__srv_chtab_reserve(&c->binds)) {
    rc = RILL_ENOMEM;
    msg = "BIND: no memory";
  } else if (!(t = rill__srv_topic_get(s, f->body, f->len, true, &rc))) {
    msg = rill_errmsg();
  } else if (!bind_count(s, sl ? sl->v : NULL, t)) {
    rc = RILL_ENOENT;
    msg = "BIND: the topic was deleted meanwhile";
  }
  if (rc) {
    if (!sl)
      count_give(&s->nbinds, 1);
    rill__srv_send_error(lp, c, f->channel, f->id, rc, msg);
    if (t)
      topic_put(s, t); /* topic_get's, of a topic deleted meanwhile */
    return;
  }
  /* The channel's use of t is this loop's hold; topic_get's reference
   * goes once that is taken (and the hold of the topic it was bound to
   * before, when a channel is rebound). */
  hold(lp, t);
  topic_put(s, t);
  if (sl) {
    unhold(lp, sl->v);
    sl->v = t; /* rebinding a channel is allowed */
  } else {
    rill__srv_chtab_put(&c->binds, f->channel, t);
  }
  rill__srv_send_frame(lp, c, RILL_F_ACK, 0, f->channel, f->id, rill_log_next(t->log), NULL, 0);
}

/* The answer to an acknowledged publish of records first..last: now,
 * or once the syncer has them on disk. */
void rill__srv_ack(struct loop *lp, struct conn *c, struct topic *t, const rill_frame_t *f,
                   uint64_t first, uint64_t last) {
  if (!(f->flags & RILL_FF_ACK))
    return;
  if (t->group) {
    rill__srv_ack_later(lp, c, t, f->channel, f->id, first, last, c->read_ns);
  } else {
    rill__srv_send_frame(lp, c, RILL_F_ACK, 0, f->channel, f->id, first, NULL, 0);
    rill_hist_record(&lp->publish_ack, rill_time_ns() - c->read_ns);
  }
}

void rill__srv_on_publish(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  struct topic *t = bound(c, f->channel);
  if (f->flags & RILL_FF_STREAM) { /* refused without a topic, its CHUNKs then dropped */
    rill__srv_stream_open(lp, c, t, f);
    return;
  }
  if (!t) {
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_EINVAL, "PUBLISH: channel not bound");
    return;
  }
  uint64_t seq;
  int rc = rill_log_append(t->log, f->body, f->len, &seq);
  if (rc) {
    rill__srv_send_error(lp, c, f->channel, f->id, rc, rill_errmsg());
    return;
  }
  INC(lp, published, 1);
  topic_touch(lp, t, 1, f->len);
  rill__srv_ack(lp, c, t, f, seq, seq);
}

void rill__srv_pubrun_flush(struct loop *lp, struct conn *c, struct pubrun *r) {
  uint32_t n = r->n;
  r->n = 0;
  if (n == 1) {
    rill__srv_on_publish(lp, c, &r->f[0]);
    return;
  }
  if (!n)
    return;
  rill_iov_t recs[PUB_RUN];
  uint64_t bytes = 0, first;
  for (uint32_t k = 0; k < n; k++) {
    recs[k] = (rill_iov_t){r->f[k].body, r->f[k].len};
    bytes += r->f[k].len;
  }
  size_t done = 0;
  int rc = rill_log_append_batch(r->t->log, recs, n, &first, &done);
  if (done < n)
    for (size_t k = bytes = 0; k < done; k++)
      bytes += recs[k].len;
  if (done) {
    INC(lp, published, done);
    topic_touch(lp, r->t, done, bytes);
  }
  if (rc && done == n) { /* stored, but the sync the policy asked for failed: said once */
    rill__srv_send_error(lp, c, r->f[n - 1].channel, r->f[n - 1].id, rc, rill_errmsg());
    return;
  }
  /* What the batch did not store (too big, no room) goes one at a time,
   * as it came: each frame gets the answer it would have had alone. */
  for (size_t k = done; rc && k < n && !c->closing; k++)
    rill__srv_on_publish(lp, c, &r->f[k]);
}

bool rill__srv_pubrun_add(struct loop *lp, struct conn *c, struct pubrun *r,
                          const rill_frame_t *f) {
  if (f->flags & (RILL_FF_ACK | RILL_FF_STREAM))
    return false;
  struct topic *t = bound(c, f->channel);
  if (!t)
    return false;
  if (r->n && (r->t != t || r->n == PUB_RUN))
    rill__srv_pubrun_flush(lp, c, r);
  r->t = t;
  r->f[r->n++] = *f;
  return true;
}

bool rill__srv_batch_parse(const rill_frame_t *f, rill_iov_t recs[RILL_NET_MAX_BATCH], size_t *n) {
  size_t k = 0, off = 0;
  while (off < f->len) {
    if (f->len - off < 4 || k == RILL_NET_MAX_BATCH)
      break;
    uint32_t len = rill__get32(f->body + off);
    if (len > f->len - off - 4)
      break;
    recs[k++] = (rill_iov_t){f->body + off + 4, len};
    off += 4 + (size_t)len;
  }
  *n = k;
  return off == f->len && k == f->arg && k != 0;
}

void rill__srv_on_publish_batch(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  struct topic *t = bound(c, f->channel);
  if (!t) {
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_EINVAL, "PUBLISH_BATCH: channel not bound");
    return;
  }
  /* Every record's length is checked before anything is appended: the
   * batch goes in whole or not at all. */
  rill_iov_t recs[RILL_NET_MAX_BATCH];
  size_t n = 0;
  if (!rill__srv_batch_parse(f, recs, &n)) {
    rill__srv_send_error(
        lp, c, f->channel, f->id, RILL_EINVAL,
        "PUBLISH_BATCH: 1..256 records whose lengths add up to the body, as many as arg");
    return;
  }
  uint64_t first;
  size_t done = 0;
  int rc = rill_log_append_batch(t->log, recs, n, &first, &done);
  if (rc) {
    /* A batch cut short (the disk or max_disk full at record `done`) keeps
     * the records before it: subscribers get them, and the publisher is
     * told which, so it can resend the rest and not the whole. */
    char msg[512];
    if (done) {
      uint64_t bytes = 0;
      for (size_t k = 0; k < done; k++)
        bytes += recs[k].len;
      INC(lp, published, done);
      topic_touch(lp, t, done, bytes);
      snprintf(msg, sizeof msg, "PUBLISH_BATCH: %zu of %zu records stored (from %llu): %s", done, n,
               (unsigned long long)first, rill_errmsg());
    }
    rill__srv_send_error(lp, c, f->channel, f->id, rc, done ? msg : rill_errmsg());
    return;
  }
  INC(lp, published, n);
  topic_touch(lp, t, n, f->len - 4 * n);
  rill__srv_ack(lp, c, t, f, first, first + n - 1);
}
