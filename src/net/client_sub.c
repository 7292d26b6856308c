/*
 * Subscriptions: SUBSCRIBE, the credits that let the server deliver,
 * UNSUBSCRIBE, and rill_client_next, the blocking reader of deliveries.
 */

#include "net/client_internal.h"

static bool pick_delivery(rill_client_t *c, const struct held *h) {
  (void)c;
  return h->type == RILL_F_DELIVER && !h->for_cb;
}

static int subscribe(rill_client_t *c, const char *topic, uint64_t from, uint32_t credits,
                     uint8_t flags, rill_client_msg_cb cb, void *ctx, uint16_t *sub,
                     uint64_t *start) {
  struct reg *r;
  rill_frame_t f;
  int rc = rill__cli_register(c, REG_SUB, flags, topic, from, &r, &f);
  if (rc)
    return rc;
  uint16_t ch = r->ch;
  r->next = f.arg;
  r->flags = flags;
  r->msg_cb = cb;
  r->ctx = ctx;
  r->window = credits;
  *sub = ch;
  if (start)
    *start = f.arg;
  return credits ? rill_client_credit(c, ch, credits) : 0;
}

int rill_client_subscribe(rill_client_t *c, const char *topic, uint64_t from, uint32_t credits,
                          uint16_t *sub, uint64_t *start) {
  return subscribe(c, topic, from, credits, 0, NULL, NULL, sub, start);
}

/* The wire flags of rill_client_subscribe_ex's and _cb_ex's flags. */
static int sub_flags(uint32_t flags, uint8_t *wire) {
  if (flags & ~RILL_CLIENT_SUB_CREATE)
    return rill__err(RILL_EINVAL, "client: unknown subscribe flags 0x%x", flags);
  *wire = flags & RILL_CLIENT_SUB_CREATE ? RILL_FF_CREATE : 0;
  return 0;
}

int rill_client_subscribe_cb(rill_client_t *c, const char *topic, uint64_t from, uint32_t window,
                             rill_client_msg_cb cb, void *ctx, uint16_t *sub, uint64_t *start) {
  return rill_client_subscribe_cb_ex(c, topic, from, window, 0, cb, ctx, sub, start);
}

int rill_client_subscribe_cb_ex(rill_client_t *c, const char *topic, uint64_t from, uint32_t window,
                                uint32_t flags, rill_client_msg_cb cb, void *ctx, uint16_t *sub,
                                uint64_t *start) {
  if (!cb)
    return rill__err(RILL_EINVAL, "client: subscribe_cb without a callback");
  uint8_t wire = 0;
  int rc = sub_flags(flags, &wire);
  return rc ? rc : subscribe(c, topic, from, window ? window : 1024, wire, cb, ctx, sub, start);
}

int rill_client_credit(rill_client_t *c, uint16_t sub, uint32_t n) {
  if (c->ngone && reg_of(c, REG_GONE, sub))
    return rill__cli_took_gone(c, sub, NULL); /* the server no longer has it: nothing to grant */
  struct reg *r = reg_of(c, REG_SUB, sub);
  if (r)
    r->credits += n; /* what a re-subscription grants again */
  if (c->fd < 0)
    return ready(c); /* the re-subscription carries them */
  if (c->depth)
    return buffer_frame(c, RILL_F_CREDIT, 0, sub, 0, n, NULL, 0, NULL, 0);
  return send_frame(c, RILL_F_CREDIT, 0, sub, 0, n, NULL, 0);
}

int rill_client_unsubscribe(rill_client_t *c, uint16_t sub) {
  struct reg *r = reg_of(c, REG_SUB, sub);
  struct reg *gone = r ? NULL : reg_of(c, REG_GONE, sub);
  if (!r && !gone)
    return rill__err(RILL_ENOENT, "client: no subscription on channel %u", sub);
  if (gone) {
    c->ngone--; /* ended by its reader: no refusal left to tell */
    r = gone;
  }
  rill__cli_reg_del(c, r); /* gone whatever the server says: nothing to restore */
  for (struct held *prev = NULL, *h = c->head, *n; h; h = n) {
    n = h->next;
    if (h->type == RILL_F_DELIVER && h->ch == sub) {
      unlink_held(c, prev, h);
      rill__free(h);
    } else {
      prev = h;
    }
  }
  if (gone)
    return 0; /* the server holds none */
  int rc = ready(c);
  if (rc)
    return rc;
  uint64_t id = c->next_id++;
  rill_frame_t f;
  rc = send_frame(c, RILL_F_UNSUBSCRIBE, 0, sub, id, 0, NULL, 0);
  return rc ? rc : rill__cli_await(c, RILL_F_ACK, id, &f, c->o.timeout_ns);
}

/* The record skip_record passed over, as the reader's error (once). */
int rill__cli_took_skip(rill_client_t *c) {
  int rc = c->skipped;
  c->skipped = 0;
  return rill__err(rc, "%s", c->skip_msg);
}

/* A subscriber keeping up: the next frame rx holds is a delivery for a
 * subscription read here, with nothing held, skipped, dropped, pieced
 * together or waiting to be sent. Taken straight from rx (rx_peek_plain)
 * and counted against the same credits as below,
 * without the deadline, the connection check and the read call, which
 * were half the cost of a delivery. Anything else: false, and the full
 * path decodes it again. */
static bool next_in_rx(rill_client_t *c, rill_client_msg_t *m) {
  if (c->head || c->skipped || c->ngone || c->tx_len)
    return false;
  rill_frame_t f;
  size_t used;
  if (!rx_peek_plain(c, &f, &used) || f.type != RILL_F_DELIVER || f.id != 0)
    return false;
  struct reg *r = reg_of(c, REG_SUB, f.channel);
  if (!r || r->msg_cb || !r->credits)
    return false;
  c->off += used; /* the body stays where it is until the next read */
  r->next = f.arg + 1;
  r->credits--;
  *m = (rill_client_msg_t){f.channel, f.arg, f.body, f.len};
  return true;
}

int rill_client_next(rill_client_t *c, rill_client_msg_t *m, uint64_t timeout_ns) {
  rill__free(c->cur);
  c->cur = NULL;
  if (next_in_rx(c, m))
    return 0;
  uint64_t now, deadline = reader_begin(c, timeout_ns);
  for (;;) {
    struct held *h = take(c, pick_delivery);
    if (h) {
      *m = (rill_client_msg_t){h->ch, h->arg, h->data, h->len};
      c->cur = (uint8_t *)h; /* freed on the next call */
      return 0;
    }
    if (c->skipped)
      return rill__cli_took_skip(c);
    if (c->ngone) { /* after the deliveries it had before it was dropped */
      *m = (rill_client_msg_t){0};
      return rill__cli_took_gone(c, 0, &m->sub);
    }
    int rc = rill__cli_ensure(c, deadline);
    if (!rc && c->ngone)
      continue; /* the reconnect dropped a subscription: say so first */
    if (!rc)
      rc = tx_flush(c); /* about to wait: what we buffered must not wait with us */
    rill_frame_t f;
    if (!rc) {
      now = rill_time_ns();
      c->skip_wake = true;
      rc = rill__cli_read_frame(c, &f, deadline > now ? deadline - now : 0);
      c->skip_wake = false;
    }
    if (rc) {
      if (c->skipped)
        return rill__cli_took_skip(c); /* it came before the error */
      if (c->fd < 0 && c->o.reconnect && !c->gave_up && rill_time_ns() < deadline)
        continue; /* dial again, and go on waiting */
      return rc;
    }
    struct reg *r = f.type == RILL_F_DELIVER && f.id == 0 ? reg_of(c, REG_SUB, f.channel) : NULL;
    if (r && !r->msg_cb) {
      if (!note_delivery(c, &f))
        return rill__cli_past_credits(c);
      if (c->skipped) /* the record skipped came first: this one waits its turn */
        return (rc = rill__cli_hold(c, &f, false, NULL)) != 0 ? rc : rill__cli_took_skip(c);
      *m = (rill_client_msg_t){f.channel, f.arg, f.body, f.len};
      return 0;
    }
    if (f.type == RILL_F_BYE && (rc = rill__cli_reader_bye(c, &f)) != 0)
      return rc;
    if (f.type == RILL_F_BYE)
      continue; /* dial again, and go on waiting */
    struct pend p;
    if (f.type == RILL_F_ERROR && !pend_take(c, f.id, &p))
      return rill__cli_as_error(&f);
    if (f.type == RILL_F_ERROR)
      rc = rill__cli_hold(c, &f, true, &p);
    else
      rc = rill__cli_absorb(c, &f);
    if (rc)
      return rc;
  }
}

int rill_client_subscribe_ex(rill_client_t *c, const char *topic, uint64_t from, uint32_t credits,
                             uint32_t flags, uint16_t *sub, uint64_t *start) {
  uint8_t wire = 0;
  int rc = sub_flags(flags, &wire);
  return rc ? rc : subscribe(c, topic, from, credits, wire, NULL, NULL, sub, start);
}
