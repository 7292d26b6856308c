/*
 * Frames read while nobody wanted them yet (a blocking call reads until its
 * own answer comes): copied into a FIFO for rill_client_next,
 * rill_client_next_ask or the callbacks of rill_client_poll, or dropped
 * when nobody will want them.
 */
#include <stdio.h>

#include "net/client_internal.h"

int rill__cli_hold(rill_client_t *c, const rill_frame_t *f, bool for_cb, const struct pend *p) {
  struct held *h = rill__malloc(sizeof *h + f->len);
  if (!h)
    return rill__err(RILL_ENOMEM, "client: no memory");
  *h = (struct held){.for_cb = for_cb,
                     .cb = p ? p->cb : NULL,
                     .ctx = p ? p->ctx : NULL,
                     .type = f->type,
                     .flags = f->flags,
                     .ch = f->channel,
                     .id = f->id,
                     .arg = f->arg,
                     .len = f->len};
  memcpy(h->data, f->body, f->len);
  if (c->tail)
    c->tail->next = h;
  else
    c->head = h;
  c->tail = h;
  c->held_cb += for_cb;
  return 0;
}

/* A CANCEL for an ask still held: it never reaches its taker. */
void rill__cli_drop_held_ask(rill_client_t *c, uint64_t id) {
  struct held *prev = NULL;
  for (struct held *h = c->head; h; prev = h, h = h->next)
    if (h->type == RILL_F_ASK && h->id == id) {
      unlink_held(c, prev, h);
      rill__free(h);
      return;
    }
}

static bool sub_has_cb(rill_client_t *c, uint16_t ch) {
  struct reg *r = reg_of(c, REG_SUB, ch);
  return r && r->msg_cb;
}

bool rill__cli_svc_has_cb(rill_client_t *c, uint16_t ch) {
  struct reg *r = reg_of(c, REG_SERVE, ch);
  return r && r->ask_cb;
}

/* A frame a blocking call read that is not its answer: kept for whoever
 * wants it, or dropped when nobody will. */
int rill__cli_absorb(rill_client_t *c, const rill_frame_t *f) {
  struct pend p;
  switch (f->type) {
  case RILL_F_DELIVER:
    if (f->id || !reg_of(c, REG_SUB, f->channel))
      return 0; /* a FETCH's (this client makes none), or an ended subscription's */
    if (!note_delivery(c, f))
      return rill__cli_past_credits(c);
    return rill__cli_hold(c, f, sub_has_cb(c, f->channel), NULL);
  case RILL_F_ASK: return rill__cli_hold(c, f, rill__cli_svc_has_cb(c, f->channel), NULL);
  case RILL_F_CANCEL: rill__cli_drop_held_ask(c, f->id); return 0;
  case RILL_F_REPLY: return pend_take(c, f->id, &p) ? rill__cli_hold(c, f, true, &p) : 0;
  case RILL_F_ERROR:
    if (pend_take(c, f->id, &p))
      return rill__cli_hold(c, f, true, &p);
    if (!c->late) {
      /* The error of an earlier request that did not wait (a publish
       * without ack): kept, and returned once this one is done. */
      c->late = rill__cli_as_error(f);
      snprintf(c->late_msg, sizeof c->late_msg, "%s", rill_errmsg());
    }
    return 0;
  default: return 0; /* PONG of a flush, ... */
  }
}

/* Waits for the answer of type `type` to request id; what comes first is
 * absorbed. The timeout is one deadline for the whole wait: frames that
 * keep coming (asks, deliveries, errors of others) do not extend it. */
int rill__cli_await(rill_client_t *c, uint8_t type, uint64_t id, rill_frame_t *f,
                    uint64_t timeout_ns) {
  uint64_t deadline = rill__deadline(rill_time_ns(), timeout_ns);
  for (;;) {
    uint64_t now = rill_time_ns();
    int rc = rill__cli_read_frame(c, f, deadline > now ? deadline - now : 0);
    if (rc)
      return rc;
    if (f->type == type && f->id == id) {
      if (!c->late)
        return 0;
      int late = c->late;
      c->late = 0;
      return rill__err(late, "an earlier request failed: %s", c->late_msg);
    }
    if (f->type == RILL_F_BYE)
      return rill__cli_bye(c, f);
    if (f->type == RILL_F_ERROR && (f->id == id || f->id == 0))
      return rill__cli_as_error(f);
    if ((rc = rill__cli_absorb(c, f)) != 0)
      return rc;
  }
}
