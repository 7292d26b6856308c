/*
 * Asks and serves: SERVE a name, take asks (rill_client_next_ask or a
 * callback) and REPLY; ASK blocking, or async with a callback, the asks in
 * flight in a table of max_inflight slots allocated once.
 */

#include "net/client_internal.h"

/* A free slot for an ask (there is one: callers check inflight first),
 * and the id that names it. */
static uint64_t pend_put(rill_client_t *c, rill_client_reply_cb cb, void *ctx) {
  uint32_t i = c->free_slot;
  c->free_slot = c->tab[i].next_free;
  uint64_t id = ASYNC_ID | (++c->ask_seq << SLOT_BITS) | i;
  c->tab[i] = (struct pend){id, cb, ctx, 0};
  c->inflight++;
  return id;
}

static bool pick_ask(rill_client_t *c, const struct held *h) {
  (void)c;
  return h->type == RILL_F_ASK && !h->for_cb;
}

static int serve(rill_client_t *c, const char *service, rill_client_ask_cb cb, void *ctx,
                 uint16_t *ch) {
  struct reg *r;
  rill_frame_t f;
  int rc = rill__cli_register(c, REG_SERVE, 0, service, 0, &r, &f);
  if (rc)
    return rc;
  uint16_t sch = r->ch;
  r->ask_cb = cb;
  r->ctx = ctx;
  if (ch)
    *ch = sch;
  return 0;
}

int rill_client_serve(rill_client_t *c, const char *service, uint16_t *ch) {
  return serve(c, service, NULL, NULL, ch);
}

int rill_client_serve_cb(rill_client_t *c, const char *service, rill_client_ask_cb cb, void *ctx,
                         uint16_t *ch) {
  if (!cb)
    return rill__err(RILL_EINVAL, "client: serve_cb without a callback");
  return serve(c, service, cb, ctx, ch);
}

int rill_client_next_ask(rill_client_t *c, rill_client_ask_t *a, uint64_t timeout_ns) {
  uint64_t now, deadline = reader_begin(c, timeout_ns);
  for (;;) {
    struct held *h = take(c, pick_ask);
    if (h) {
      *a = (rill_client_ask_t){h->ch, h->id, h->data, h->len, h->arg};
      c->cur = (uint8_t *)h;
      return 0;
    }
    int rc = rill__cli_ensure(c, deadline);
    if (!rc)
      rc = tx_flush(c);
    rill_frame_t f;
    if (!rc) {
      now = rill_time_ns();
      rc = rill__cli_read_frame(c, &f, deadline > now ? deadline - now : 0);
    }
    if (rc) {
      if (c->fd < 0 && c->o.reconnect && !c->gave_up && rill_time_ns() < deadline)
        continue;
      return rc;
    }
    if (f.type == RILL_F_ASK && !rill__cli_svc_has_cb(c, f.channel)) {
      *a = (rill_client_ask_t){f.channel, f.id, f.body, f.len, f.arg};
      return 0;
    }
    if (f.type == RILL_F_BYE && (rc = rill__cli_reader_bye(c, &f)) != 0)
      return rc;
    if (f.type == RILL_F_BYE)
      continue; /* dial again, and go on waiting */
    if (f.type == RILL_F_ERROR && f.id == 0)
      return rill__cli_as_error(&f);
    if ((rc = rill__cli_absorb(c, &f)) != 0)
      return rc;
  }
}

int rill_client_reply(rill_client_t *c, uint64_t id, const void *data, uint32_t len) {
  if (len > c->o.max_message)
    return rill__err(RILL_EMSGSIZE, "client: a reply of %u bytes, max_message is %llu", len,
                     (unsigned long long)c->o.max_message);
  if (c->fd < 0) /* the ask died with the connection it came on */
    return rill__err(c->o.reconnect && !c->gave_up ? RILL_ECONNRESET : RILL_ECLOSED,
                     "client: the connection the ask came on is gone");
  uint32_t piece = piece_of(c);
  if (len > piece) {
    /* Streamed, at once even inside a poll pass: buffering megabytes
     * would only copy them. No total length: the asker grows its buffer. */
    int rc = send_frame(c, RILL_F_REPLY, RILL_FF_STREAM, 0, id, 0, data, piece);
    return rc ? rc : rill__cli_send_chunks(c, RILL_F_REPLY, 0, id, data, piece, len);
  }
  if (c->depth)
    return buffer_frame(c, RILL_F_REPLY, 0, 0, id, 0, NULL, 0, data, len);
  return send_frame(c, RILL_F_REPLY, 0, 0, id, 0, data, len);
}

int rill_client_reply_error(rill_client_t *c, uint64_t id, int code, const char *msg) {
  if (code >= 0)
    return rill__err(RILL_EINVAL, "client: reply_error wants a negative RILL_E* code, not %d",
                     code);
  uint32_t n = msg ? (uint32_t)strnlen(msg, 1024) : 0; /* max_body is at least 4 KiB */
  if (c->fd < 0)
    return rill__err(c->o.reconnect && !c->gave_up ? RILL_ECONNRESET : RILL_ECLOSED,
                     "client: the connection the ask came on is gone");
  uint64_t arg = (uint64_t)(int64_t)code;
  if (c->depth)
    return buffer_frame(c, RILL_F_ERROR, 0, 0, id, arg, NULL, 0, msg, n);
  return send_frame(c, RILL_F_ERROR, 0, 0, id, arg, msg, n);
}

/* An ASK's name, ready to go before its payload. Over max_body it streams
 * (ask_stream), so only max_message bounds it. */
static int ask_prefix(rill_client_t *c, const char *service, uint32_t len, uint8_t *pre,
                      size_t *pre_len) {
  size_t n = service ? strnlen(service, RILL_NET_MAX_NAME + 1) : 0;
  if (!n || n != c->ask_name_len || memcmp(service, c->ask_name, n) != 0) {
    int bad = rill__cli_name_arg(service, "service");
    if (bad)
      return bad;
    memcpy(c->ask_name, service, n); /* a valid name is at most RILL_NET_MAX_NAME */
    c->ask_name_len = n;
  }
  if (len > c->o.max_message)
    return rill__err(RILL_EMSGSIZE, "client: an ask of %u bytes, max_message is %llu", len,
                     (unsigned long long)c->o.max_message);
  pre[0] = (uint8_t)n;
  pre[1] = (uint8_t)(n >> 8);
  memcpy(pre + 2, service, n);
  *pre_len = 2 + n;
  return 0;
}

/* Sends an ASK over the threshold at once: STREAM with the name and the
 * first piece (the whole frame within a piece), then CHUNKs with arg = ASK
 * and no total length; the server forwards the pieces as they come. */
/* The ASK's arg, the deadline the server enforces: 0 says none. */
static uint64_t wire_deadline(uint64_t timeout_ns) {
  return timeout_ns == RILL_FOREVER ? 0 : timeout_ns;
}

/* timeout 0 tries once without waiting, and no reply is there before
 * the ask is sent: the ask would only reach a provider to be cancelled. */
static int ask_now(void) {
  return rill__err(RILL_ETIMEDOUT, "client: an ask with a timeout of 0 cannot be answered: "
                                   "RILL_FOREVER waits for the reply without a bound");
}

static int ask_stream(rill_client_t *c, uint64_t id, uint64_t timeout_ns, const uint8_t *pre,
                      size_t pl, const uint8_t *req, uint32_t len) {
  uint8_t hdr[RILL_NET_HDR + 2 + RILL_NET_MAX_NAME];
  uint32_t first = piece_of(c) - (uint32_t)pl; /* pieces are >= 2 KiB, names <= 202 bytes */
  rill_frame_header(hdr, RILL_F_ASK, RILL_FF_STREAM, 0, id, wire_deadline(timeout_ns),
                    (uint32_t)pl + first);
  memcpy(hdr + RILL_NET_HDR, pre, pl);
  int rc = rill__cli_send_now(c, hdr, RILL_NET_HDR + pl, req, first);
  return rc ? rc : rill__cli_send_chunks(c, RILL_F_ASK, 0, id, req, first, len);
}

int rill_client_ask(rill_client_t *c, const char *service, const void *req, uint32_t len,
                    uint64_t timeout_ns, const uint8_t **reply, uint32_t *reply_len) {
  uint8_t hdr[RILL_NET_HDR + 2 + RILL_NET_MAX_NAME];
  size_t pl = 0;
  int rc = ask_prefix(c, service, len, hdr + RILL_NET_HDR, &pl);
  if (!rc && !timeout_ns)
    rc = ask_now();
  if (rc || (rc = ready(c)) != 0)
    return rc;
  uint64_t id = c->next_id++;
  if (pl + len > piece_of(c)) {
    rc = ask_stream(c, id, timeout_ns, hdr + RILL_NET_HDR, pl, req, len);
  } else {
    rill_frame_header(hdr, RILL_F_ASK, 0, 0, id, wire_deadline(timeout_ns), (uint32_t)(pl + len));
    rc = rill__cli_send_now(c, hdr, RILL_NET_HDR + pl, req, len);
  }
  if (rc)
    return rc;
  rill_frame_t f;
  /* The server's deadline answers first; ours, a second later, is only
   * for a server that stopped answering altogether (a saturating sum:
   * RILL_FOREVER stays no bound). */
  c->ask_waiting = id;
  rc = rill__cli_await(c, RILL_F_REPLY, id, &f, rill__deadline(1000000000ull, timeout_ns));
  c->ask_waiting = 0;
  if (rc)
    return rc;
  *reply = f.body;
  *reply_len = f.len;
  return 0;
}

int rill_client_ask_async(rill_client_t *c, const char *service, const void *req, uint32_t len,
                          uint64_t timeout_ns, rill_client_reply_cb cb, void *ctx) {
  if (!cb)
    return rill__err(RILL_EINVAL, "client: ask_async without a callback");
  uint8_t pre[2 + RILL_NET_MAX_NAME];
  size_t pl = 0;
  int rc = ask_prefix(c, service, len, pre, &pl);
  if (!rc && !timeout_ns)
    rc = ask_now();
  if (rc || (rc = ready(c)) != 0)
    return rc;
  /* Bounded: a full table is emptied by driving the connection, never
   * grown. Asks a break failed count until their callbacks ran. */
  while (c->inflight + c->nfailed >= c->o.max_inflight) {
    if (c->depth)
      return rill__err(RILL_EFULL, "client: %u asks in flight, and a callback cannot wait",
                       c->o.max_inflight);
    if ((rc = rill_client_poll(c, c->o.timeout_ns)) < 0)
      return rc;
    if (rc == 0 && c->inflight + c->nfailed >= c->o.max_inflight)
      return rill__err(RILL_ETIMEDOUT, "client: no ask of %u in flight ended in time",
                       c->o.max_inflight);
  }
  if ((rc = ready(c)) != 0)
    return rc;
  uint64_t id = pend_put(c, cb, ctx);
  if (pl + len > piece_of(c))
    rc = ask_stream(c, id, timeout_ns, pre, pl, req, len);
  else
    rc = buffer_frame(c, RILL_F_ASK, 0, 0, id, wire_deadline(timeout_ns), pre, pl, req, len);
  if (rc != 0) {
    /* The connection broke: this ask never went, and its callback must
     * not run, so it leaves the table or the failed ones lost() made. */
    uint32_t i = (uint32_t)id & SLOT_MASK;
    if (c->tab[i].id == id)
      pend_free(c, i);
    for (uint32_t k = 0; k < c->nfailed; k++)
      if (c->failed[k].id == id)
        c->failed[k] = c->failed[--c->nfailed];
    return rc;
  }
  return 0;
}
