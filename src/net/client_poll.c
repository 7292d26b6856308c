/*
 * rill_client_poll: one pass over what the connection brings, running the
 * callbacks of subscriptions, services and async asks; what callbacks send
 * is buffered and goes out at the end of the pass.
 */
#include <stdio.h>

#include "net/client_internal.h"

static bool pick_cb(rill_client_t *c, const struct held *h) {
  (void)c;
  return h->for_cb;
}

/* Runs what a frame asks for inside a poll pass: 1 when a callback ran, 0
 * when not, or an error. fresh: it just came off the wire (not held). */
static int dispatch(rill_client_t *c, const rill_frame_t *f, bool fresh, const struct held *h) {
  struct pend p;
  struct reg *r;
  switch (f->type) {
  case RILL_F_DELIVER:
    if (f->id)
      return 0;
    if (fresh && !note_delivery(c, f))
      return rill__cli_past_credits(c);
    r = reg_of(c, REG_SUB, f->channel);
    if (!r && !fresh)
      r = reg_of(c, REG_GONE, f->channel); /* held from before it was dropped: still its reader's */
    if (!r)
      return 0; /* an ended subscription's */
    if (!r->msg_cb)
      return fresh ? rill__cli_hold(c, f, false, NULL) : 0; /* for rill_client_next */
    {
      rill_client_msg_cb cb = r->msg_cb;
      void *ctx = r->ctx;
      /* Credits go back by halves, before the callback (which may move
       * the registrations by subscribing). */
      int rc = 0;
      if (r->kind == REG_SUB && (++r->used >= r->window / 2 || r->window < 2)) {
        uint32_t n = r->used;
        r->used = 0;
        r->credits += n;
        /* Sent at once, with whatever is buffered: a long pass must not
         * sit on the credits the server is waiting for. With the
         * connection down (a held delivery after a break) or broken by
         * this send, the re-subscription carries them (r->credits), and
         * the record is handed over all the same: the subscription
         * resumes after it, so dropping it here would be a gap. */
        if (c->fd >= 0)
          rc = send_frame(c, RILL_F_CREDIT, 0, r->ch, 0, n, NULL, 0);
      }
      rill_client_msg_t m = {f->channel, f->arg, f->body, f->len};
      cb(ctx, &m);
      if (rc)
        return rc;
    }
    return 1;
  case RILL_F_ASK:
    r = reg_of(c, REG_SERVE, f->channel);
    if (!r || !r->ask_cb)
      return fresh ? rill__cli_hold(c, f, false, NULL) : 0; /* for rill_client_next_ask */
    {
      rill_client_ask_t a = {f->channel, f->id, f->body, f->len, f->arg};
      r->ask_cb(r->ctx, &a);
    }
    return 1;
  case RILL_F_REPLY:
    if (h) {
      h->cb(h->ctx, 0, f->body, f->len);
      return 1;
    }
    if (!pend_take(c, f->id, &p))
      return 0; /* a blocking ask's that gave up, or cancelled */
    p.cb(p.ctx, 0, f->body, f->len);
    return 1;
  case RILL_F_ERROR:
    if (h || pend_take(c, f->id, &p)) {
      int code = rill__cli_as_error(f); /* the message goes with it, in rill_errmsg */
      if (h)
        h->cb(h->ctx, code, NULL, 0);
      else
        p.cb(p.ctx, code, NULL, 0);
      return 1;
    }
    if (f->id == 0)
      return rill__cli_as_error(f);
    if (!c->late) {
      c->late = rill__cli_as_error(f);
      snprintf(c->late_msg, sizeof c->late_msg, "%s", rill_errmsg());
    }
    return 0;
  case RILL_F_BYE: return rill__cli_bye(c, f);
  case RILL_F_CANCEL: rill__cli_drop_held_ask(c, f->id); return 0;
  default: return 0;
  }
}

/* Held frames for callbacks, in the order they came. */
static int run_held(rill_client_t *c) {
  int n = 0;
  while (c->held_cb) {
    struct held *h = take(c, pick_cb);
    rill_frame_t f = {.len = h->len,
                      .type = h->type,
                      .flags = h->flags,
                      .channel = h->ch,
                      .id = h->id,
                      .arg = h->arg,
                      .body = h->data};
    int k = dispatch(c, &f, false, h->cb ? h : NULL);
    rill__free(h);
    if (k < 0)
      return k;
    n += k;
  }
  return n;
}

int rill_client_poll(rill_client_t *c, uint64_t timeout_ns) {
  uint64_t now = rill_time_ns();
  uint64_t deadline = rill__deadline(now, timeout_ns);
  int st = c->o.reconnect && !c->gave_up ? RILL_ECONNRESET : RILL_ECLOSED;
  c->depth++; /* callbacks run inside: what they send is buffered */
  int n = run_failed(c, st);
  int rc = run_held(c);
  if (rc < 0)
    goto out;
  n += rc;
  rc = rill__cli_ensure(c, deadline);
  if (rc == RILL_ETIMEDOUT) {
    rc = 0; /* still reconnecting: nothing happened */
    goto out;
  }
  if (rc)
    goto out;
  if ((rc = tx_flush(c)) != 0)
    goto out;
  /* One pass: wait for the first frame, then take what is there without
   * waiting, up to a bound so that what callbacks buffered goes out. */
  for (uint32_t frames = 0; frames < 65536; frames++) {
    rill_frame_t f;
    size_t used;
    if (rx_peek_plain(c, &f, &used)) { /* what read_frame would return, without the call */
      c->off += used;
      rc = 0;
    } else {
      now = rill_time_ns();
      c->skip_wake = true;
      rc = rill__cli_read_frame(c, &f, n || now >= deadline ? 0 : deadline - now);
      c->skip_wake = false;
    }
    if (rc == RILL_ETIMEDOUT || rc == 1) { /* a skip: returned below */
      rc = 0;
      break;
    }
    if (rc)
      break;
    int k = dispatch(c, &f, true, NULL);
    if (k < 0) {
      rc = k;
      break;
    }
    n += k;
  }
  if (!rc)
    rc = tx_flush(c);
out:
  if (c->fd < 0 && c->o.reconnect && !c->gave_up && (rc == RILL_ECONNRESET || rc == 0))
    rc = 0; /* the break is reported to what was in flight; the next poll dials again */
  n += run_failed(c, st);
  c->depth--;
  if (rc < 0)
    return rc;
  if (c->skipped)
    return rill__cli_took_skip(c);
  if (c->ngone)
    return rill__cli_took_gone(c, 0, NULL);
  if (c->late) {
    rc = c->late;
    c->late = 0;
    return rill__err(rc, "an earlier request failed: %s", c->late_msg);
  }
  return n;
}
