/*
 * Publishing: BIND a channel to a topic, then PUBLISH on it (buffered when
 * no ack is wanted, streamed in CHUNKs over the piece size) or
 * PUBLISH_BATCH several records in one frame.
 */
#include <errno.h>

#include "net/client_internal.h"

/* After a publish went (rc: how its send went): its ACK, when one is
 * wanted; *seq (may be NULL) gets the sequence of its first record. */
static int acked(rill_client_t *c, int rc, bool ack, uint64_t id, uint64_t *seq) {
  if (rc || !ack)
    return rc;
  rill_frame_t f;
  rc = rill__cli_await(c, RILL_F_ACK, id, &f, c->o.timeout_ns);
  if (!rc && seq)
    *seq = f.arg;
  return rc;
}

int rill_client_bind(rill_client_t *c, const char *topic, uint16_t *channel) {
  struct reg *r;
  rill_frame_t f;
  int rc = rill__cli_register(c, REG_BIND, 0, topic, 0, &r, &f);
  if (rc)
    return rc;
  *channel = r->ch;
  return 0;
}

int rill_client_publish(rill_client_t *c, uint16_t channel, const void *data, uint32_t len,
                        bool ack, uint64_t *seq) {
  int rc = ready(c);
  if (rc)
    return rc;
  uint64_t id = c->next_id++;
  uint8_t hdr[RILL_NET_HDR];
  uint8_t flags = ack ? RILL_FF_ACK : 0;
  uint32_t piece = piece_of(c);
  if (len > piece) {
    /* Streamed: the first piece with STREAM and the whole length, then
     * CHUNKs, straight from the caller's bytes; the server appends the
     * record when the last arrives (and refuses one over its max_message
     * with EMSGSIZE). */
    rill_frame_header(hdr, RILL_F_PUBLISH, flags | RILL_FF_STREAM, channel, id, len, piece);
    rc = rill__cli_send_now(c, hdr, sizeof hdr, data, piece);
    if (!rc)
      rc = rill__cli_send_chunks(c, RILL_F_PUBLISH, channel, id, data, piece, len);
  } else if (!ack) {
    return buffer_frame(c, RILL_F_PUBLISH, 0, channel, id, 0, NULL, 0, data, len);
  } else {
    rill_frame_header(hdr, RILL_F_PUBLISH, flags, channel, id, 0, len);
    rc = rill__cli_send_now(c, hdr, sizeof hdr, data, len);
  }
  return acked(c, rc, ack, id, seq);
}

int rill_client_publish_batch(rill_client_t *c, uint16_t channel, const rill_iov_t *recs, size_t n,
                              bool ack, uint64_t *first) {
  if (!recs || !n || n > RILL_NET_MAX_BATCH)
    return rill__err(RILL_EINVAL, "client: a batch is 1..%u records, not %zu", RILL_NET_MAX_BATCH,
                     n);
  int rc = ready(c);
  if (rc)
    return rc;
  size_t body = 0;
  for (size_t i = 0; i < n; i++)
    body += 4 + (size_t)recs[i].len;
  if (body > c->max_body)
    return rill__err(RILL_EMSGSIZE, "client: a batch of %zu bytes, the server takes %u", body,
                     c->max_body);
  size_t need = RILL_NET_HDR + body;
  if (c->tx_len + need > TX_BUF && need <= TX_BUF && (rc = tx_flush(c)) != 0)
    return rc;
  bool in_tx = c->tx_len + need <= TX_BUF;
  uint8_t *p = c->tx + c->tx_len;
  if (!in_tx) {
    if (need > c->batch_cap) {
      uint8_t *nb = rill__realloc(c->batch, need);
      if (!nb)
        return rill__err(RILL_ENOMEM, "client: no memory");
      c->batch = nb;
      c->batch_cap = need;
    }
    p = c->batch;
  }
  uint64_t id = c->next_id++;
  rill_frame_header(p, RILL_F_PUBLISH_BATCH, ack ? RILL_FF_ACK : 0, channel, id, n, (uint32_t)body);
  uint8_t *w = p + RILL_NET_HDR;
  for (size_t i = 0; i < n; i++) {
    rill__put32(w, recs[i].len);
    if (recs[i].len)
      memcpy(w + 4, recs[i].data, recs[i].len);
    w += 4 + (size_t)recs[i].len;
  }
  if (in_tx) {
    c->tx_len += need;
    rc = ack ? tx_flush(c) : 0;
  } else {
    rc = rill__cli_send_now(c, p, need, NULL, 0);
  }
  return acked(c, rc, ack, id, first);
}

uint32_t rill_client_max_body(const rill_client_t *c) { return c->max_body; }

int rill_client_flush(rill_client_t *c) {
  int rc = c->tx_len ? ready(c) : 0;
  return rc ? rc : tx_flush(c);
}
