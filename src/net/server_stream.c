/*
 * Streamed PUBLISHes: a record over max_body comes as a PUBLISH with
 * STREAM (arg: the whole length) and CHUNKs; its pieces are copied into
 * one buffer, held to max_message per connection and to assembly_max on the
 * server, and appended as one record with the last.
 */

#include "net/server_internal.h"

/* A streamed PUBLISH's first frame: arg is the whole length. A refused
 * stream keeps its slot, without a buffer, so its CHUNKs are dropped
 * rather than taken for a protocol error. */
void rill__srv_stream_open(struct loop *lp, struct conn *c, struct topic *t,
                           const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  struct instream *in = NULL;
  for (uint32_t i = 0; i < IN_STREAMS; i++) {
    if (c->in[i].on && c->in[i].id == f->id) {
      rill__srv_fatal(lp, c, RILL_EPROTO, "PUBLISH: a stream with that id is open");
      return;
    }
    if (!c->in[i].on && !in)
      in = &c->in[i];
  }
  if (!in) {
    rill__srv_fatal(lp, c, RILL_EPROTO, "PUBLISH: more than 4 streams open on one connection");
    return;
  }
  *in = (struct instream){.on = true, .id = f->id, .t = t, .ch = f->channel, .flags = f->flags};
  if (t)
    hold(lp, t); /* its bind may go before its last CHUNK */
  const char *why = NULL;
  int code = RILL_EMSGSIZE;
  if (!t) {
    why = "PUBLISH: channel not bound";
    code = RILL_EINVAL;
  } else if (f->arg <= f->len || f->arg > s->o.max_message) {
    why = f->arg <= f->len ? "PUBLISH: a stream no longer than its first chunk"
                           : "PUBLISH: a stream over the server's max_message";
    code = f->arg <= f->len ? RILL_EPROTO : RILL_EMSGSIZE;
  } else if (c->assembling + f->arg > s->o.max_message) {
    why = "PUBLISH: this connection's streams in flight would pass max_message";
    code = RILL_EBUSY;
  } else if (__atomic_fetch_add(&s->assembling, f->arg, __ATOMIC_RELAXED) + f->arg >
             s->assembly_max) {
    /* Relaxed: a count of bytes, nothing is published through it. */
    __atomic_fetch_sub(&s->assembling, f->arg, __ATOMIC_RELAXED);
    why = "PUBLISH: too many streamed bytes in flight on the server; try again";
    code = RILL_EBUSY;
  } else if (!(in->buf = rill__malloc(f->arg))) {
    __atomic_fetch_sub(&s->assembling, f->arg, __ATOMIC_RELAXED);
    why = "PUBLISH: no memory for the stream";
    code = RILL_ENOMEM;
  }
  if (why) {
    rill__srv_send_error(lp, c, f->channel, f->id, code, why);
    return;
  }
  in->len = (uint32_t)f->arg;
  memcpy(in->buf, f->body, f->len);
  in->got = f->len;
  in->last_ns = c->read_ns;
  c->assembling += in->len;
}

/* Frees a stream's buffer; with `keep`, its slot stays to drop the CHUNKs
 * still coming. */
void rill__srv_stream_drop(rill_server_t *s, struct conn *c, struct instream *in, bool keep) {
  if (in->buf) {
    rill__free(in->buf);
    in->buf = NULL;
    __atomic_fetch_sub(&s->assembling, in->len, __ATOMIC_RELAXED); /* a count */
    c->assembling -= in->len;
  }
  if (!keep) {
    if (in->t)
      unhold(c->lp, in->t);
    *in = (struct instream){0};
  }
}

void rill__srv_on_chunk(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  if (f->arg == RILL_F_ASK || f->arg == RILL_F_REPLY) {
    rill__srv_on_ask_chunk(lp, c, f);
    return;
  }
  if (f->arg != RILL_F_PUBLISH) {
    rill__srv_fatal(lp, c, RILL_EPROTO,
                    "CHUNK: arg must be the type it continues: PUBLISH, ASK or REPLY");
    return;
  }
  struct instream *in = NULL;
  for (uint32_t i = 0; i < IN_STREAMS && !in; i++)
    if (c->in[i].on && c->in[i].id == f->id)
      in = &c->in[i];
  if (!in) {
    rill__srv_fatal(lp, c, RILL_EPROTO, "CHUNK: no stream with that id");
    return;
  }
  bool last = !(f->flags & RILL_FF_MORE);
  if (in->buf) {
    if (!rill__srv_piece_fits(in->len, in->got, f->len, last)) {
      rill__srv_fatal(lp, c, RILL_EPROTO, "CHUNK: the pieces do not add up to the stream's length");
      return;
    }
    memcpy(in->buf + in->got, f->body, f->len);
    in->got += f->len;
    in->last_ns = c->read_ns;
  }
  if (!last)
    return;
  if (in->buf) {
    uint64_t seq;
    int rc = rill_log_append(in->t->log, in->buf, in->len, &seq);
    rill_frame_t first = {.flags = in->flags, .channel = in->ch, .id = in->id};
    if (rc) {
      rill__srv_send_error(lp, c, in->ch, in->id, rc, rill_errmsg());
    } else {
      INC(lp, published, 1);
      topic_touch(lp, in->t, 1, in->len);
      rill__srv_ack(lp, c, in->t, &first, seq, seq);
    }
  }
  rill__srv_stream_drop(lp->s, c, in, false);
}
