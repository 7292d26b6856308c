/*
 * The send queue. A connection's frames go into its own buffer (tx), with
 * large records held by reference to their bytes in the log between them,
 * and are written by one sendmsg a round. Frames from other loops go into
 * its cross-loop queue (xtx, under xlock), which its loop moves to tx when
 * woken. A connection whose queue passes tx_limit is cut off with a reason.
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "net/server_internal.h"

/* Empties the send queue (the connection is cut off or gone). */
void rill__srv_tx_drop(struct conn *c) {
  c->tx_off = c->tx_len = 0;
  for (; c->nrefs; c->nrefs--, c->refs_head = (c->refs_head + 1) % TX_REFS)
    rill_buf_release(&ref_at(c, 0)->b);
  c->ref_bytes = 0;
}

/* Writes what the send queue holds, as far as the socket takes it: the
 * queued bytes and the payloads held by reference between them, in one
 * sendmsg a round. */
int rill__srv_conn_flush(struct loop *lp, struct conn *c) {
  while (c->tx_off < c->tx_len || c->nrefs) {
    struct iovec iov[2 * TX_REFS + 1];
    int n_iov = 0;
    size_t pos = c->tx_off;
    for (uint32_t i = 0; i < c->nrefs; i++) {
      struct txref *r = ref_at(c, i);
      if (r->at > pos)
        iov[n_iov++] = (struct iovec){c->tx + pos, r->at - pos};
      iov[n_iov++] = (struct iovec){r->b.data, r->b.len};
      pos = r->at;
    }
    if (c->tx_len > pos)
      iov[n_iov++] = (struct iovec){c->tx + pos, c->tx_len - pos};
    ssize_t n =
        sendmsg(c->fd, &(struct msghdr){.msg_iov = iov, .msg_iovlen = (size_t)n_iov}, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      if (errno == EINTR)
        continue;
      return -1;
    }
    INC(lp, bytes_out, (uint64_t)n);
    /* Consume n bytes in the same order. */
    for (size_t left = (size_t)n; left;) {
      struct txref *r = c->nrefs ? ref_at(c, 0) : NULL;
      size_t bytes = (r ? r->at : c->tx_len) - c->tx_off;
      if (bytes) {
        size_t k = left < bytes ? left : bytes;
        c->tx_off += k;
        left -= k;
        continue;
      }
      size_t k = left < r->b.len ? left : r->b.len;
      rill_buf_slice(&r->b, &r->b, k, r->b.len - k); /* narrowed in place */
      c->ref_bytes -= k;
      left -= k;
      if (!r->b.len) {
        rill_buf_release(&r->b);
        c->refs_head = (c->refs_head + 1) % TX_REFS;
        c->nrefs--;
      }
    }
  }
  if (c->tx_off == c->tx_len && !c->nrefs)
    c->tx_off = c->tx_len = 0;
  return 0;
}

/* A connection that cannot be sent to any more (its queue passed
 * tx_limit: it does not read what it asked for; or no memory): what is
 * queued goes, and an ERROR naming the reason takes its place (it fits:
 * tx_limit holds four frames of max_body), then it closes. */
static void cut_off(struct loop *lp, struct conn *c, int code, const char *why) {
  INC(lp, conns_dropped, 1);
  rill__srv_tx_drop(c);
  INC(lp, errors_sent, 1);
  rill__srv_send_frame(lp, c, RILL_F_ERROR, 0, 0, 0, (uint64_t)(int64_t)code, why,
                       (uint32_t)strlen(why));
  c->closing = true;
}

/* Appends a frame to the send queue of a connection of this loop; false
 * when the connection is over its limit (it is then closing). */
bool rill__srv_send_frame(struct loop *lp, struct conn *c, uint8_t type, uint8_t flags, uint16_t ch,
                          uint64_t id, uint64_t arg, const void *body, uint32_t len) {
  rill_server_t *s = lp->s;
  if (c->closing)
    return false;
  size_t need = RILL_NET_HDR + (size_t)len;
  if (queued(c) + need > s->o.tx_limit) {
    char peer[64];
    rill__srv_log(s, L_DROPPED, RILL_SERVER_LOG_INFO,
                  "cut off the connection from %s: its send queue passed tx_limit (%zu bytes)",
                  rill__srv_peer_of(c->fd, peer, sizeof peer), s->o.tx_limit);
    cut_off(lp, c, RILL_ENOBUFS, "send queue over tx_limit: the client does not read its answers");
    return false;
  }
  if (c->tx_len + need > c->tx_cap && c->tx_off) { /* compact first */
    memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
    for (uint32_t i = 0; i < c->nrefs; i++)
      ref_at(c, i)->at -= c->tx_off;
    c->tx_len -= c->tx_off;
    c->tx_off = 0;
  }
  if (!room(&c->tx, &c->tx_cap, c->tx_len, need)) {
    if (c->tx_len) /* an empty queue that cannot grow cannot carry the reason either */
      cut_off(lp, c, RILL_ENOMEM, "no memory for the send queue");
    c->closing = true;
    return false;
  }
  mark_dirty(lp, c);
  rill_frame_header(c->tx + c->tx_len, type, flags, ch, id, arg, len);
  if (len)
    memcpy(c->tx + c->tx_len + RILL_NET_HDR, body, len);
  c->tx_len += need;
  INC(lp, frames_out, 1);
  return true;
}

/* A frame whose payload is sent from where it is (a record in the log):
 * the header is queued, the payload held by a new reference to it. */
bool rill__srv_send_frame_ref(struct loop *lp, struct conn *c, uint8_t type, uint8_t flags,
                              uint16_t ch, uint64_t id, uint64_t arg, const rill_buf_t *payload) {
  if (payload->len < REF_MIN || c->nrefs == TX_REFS || c->closing ||
      queued(c) + RILL_NET_HDR + payload->len > lp->s->o.tx_limit)
    return rill__srv_send_frame(lp, c, type, flags, ch, id, arg, payload->data,
                                (uint32_t)payload->len);
  rill_buf_t ref;
  if (!rill__srv_send_frame(lp, c, type, flags, ch, id, arg, NULL, 0))
    return false;
  if (rill_buf_slice(&ref, payload, 0, payload->len) != 0) {
    /* The header is queued without its body: the stream cannot go on. */
    cut_off(lp, c, RILL_ENOMEM, "no memory to send a record");
    return false;
  }
  rill__put32(c->tx + c->tx_len - RILL_NET_HDR, (uint32_t)payload->len); /* the real length */
  *ref_at(c, c->nrefs++) = (struct txref){c->tx_len, ref};
  c->ref_bytes += ref.len;
  return true;
}

/* A subscriber keeping up gets its deliveries in runs of small records:
 * the limit, the room and the dirty mark are seen to once a run, not once
 * a frame (what send_frame does for each, 40-odd instructions of a
 * 128-byte delivery). Where a run does not fit as it is, or the
 * connection is closing, each goes the way it went alone. */
void rill__srv_send_delivers(struct loop *lp, struct conn *c, uint16_t ch,
                             const rill_log_record_t *recs, size_t n) {
  size_t need = 0;
  for (size_t k = 0; k < n; k++)
    need += RILL_NET_HDR + recs[k].payload.len;
  if (c->closing || queued(c) + need > lp->s->o.tx_limit || c->tx_len + need > c->tx_cap) {
    for (size_t k = 0; k < n; k++)
      rill__srv_send_frame_ref(lp, c, RILL_F_DELIVER, 0, ch, 0, recs[k].seq, &recs[k].payload);
    return;
  }
  mark_dirty(lp, c);
  uint8_t *p = c->tx + c->tx_len;
  for (size_t k = 0; k < n; k++) {
    uint32_t len = (uint32_t)recs[k].payload.len;
    rill_frame_header(p, RILL_F_DELIVER, 0, ch, 0, recs[k].seq, len);
    memcpy(p + RILL_NET_HDR, recs[k].payload.data, len);
    p += RILL_NET_HDR + len;
  }
  c->tx_len += need;
  INC(lp, frames_out, n);
}

/* A frame for a connection of another loop: into its cross-loop queue,
 * and its loop woken to move it on. With soft, a frame that would take
 * both its queues past half tx_limit is not queued (BUSY): the one who
 * sent it is refused, and c is not cut off for what others send it. */
int rill__srv_xsend(struct loop *lp, struct conn *c, bool soft, uint8_t type, uint8_t flags,
                    uint16_t ch, uint64_t id, uint64_t arg, const void *body, uint32_t len) {
  size_t need = RILL_NET_HDR + (size_t)len;
  pthread_mutex_lock(&c->xlock);
  if (c->dead || c->cut) {
    pthread_mutex_unlock(&c->xlock);
    return GONE;
  }
  if (soft &&
      c->xtx_len + __atomic_load_n(&c->txq, __ATOMIC_RELAXED) + need > lp->s->o.tx_limit / 2) {
    pthread_mutex_unlock(&c->xlock);
    return BUSY;
  }
  bool ok = c->xtx_len + need <= lp->s->o.tx_limit && room(&c->xtx, &c->xtx_cap, c->xtx_len, need);
  if (ok) {
    rill_frame_header(c->xtx + c->xtx_len, type, flags, ch, id, arg, len);
    if (len)
      memcpy(c->xtx + c->xtx_len + RILL_NET_HDR, body, len);
    c->xtx_len += need;
    __atomic_store_n(&c->xtx_hint, c->xtx_len, __ATOMIC_RELAXED);
  } else {
    c->cut = true; /* its loop closes it when woken */
  }
  bool wake = !c->xwoken;
  c->xwoken = true;
  pthread_mutex_unlock(&c->xlock);
  if (wake) {
    conn_get(c); /* for the wakeup node; its loop puts it */
    loop_wake(c->lp, &c->xw);
  }
  if (ok)
    INC(lp, frames_out, 1);
  return ok ? SENT : GONE;
}

bool rill__srv_error_to(struct loop *lp, struct conn *c, uint16_t ch, uint64_t id, int code,
                        const char *msg) {
  INC(lp, errors_sent, 1);
  return send_to(lp, c, RILL_F_ERROR, 0, ch, id, (uint64_t)(int64_t)code, msg,
                 (uint32_t)strlen(msg));
}

void rill__srv_send_error(struct loop *lp, struct conn *c, uint16_t ch, uint64_t id, int code,
                          const char *msg) {
  rill__srv_log_answer(lp->s, c->fd, code, msg);
  rill__srv_error_to(lp, c, ch, id, code, msg);
}

/* An error the connection does not survive: said, then closed. */
void rill__srv_fatal(struct loop *lp, struct conn *c, int code, const char *msg) {
  char peer[64];
  if (!c->closing)
    rill__srv_log(lp->s, L_DROPPED, RILL_SERVER_LOG_INFO, "closing the connection from %s: %s (%s)",
                  rill__srv_peer_of(c->fd, peer, sizeof peer), msg, rill_strerror(code));
  rill__srv_send_error(lp, c, 0, 0, code, msg);
  c->closing = true;
}

/* What other loops queued for c: moved to its own queue, or, when that
 * is too full to take it, left for when it drains (xheld). */
void rill__srv_conn_take_x(struct loop *lp, struct conn *c) {
  pthread_mutex_lock(&c->xlock);
  c->xwoken = false;
  c->xheld = false;
  bool cut = c->cut;
  if (!c->dead && !cut && c->xtx_len) {
    if (!queued(c) && c->xtx_cap >= c->tx_cap) { /* swap rather than copy */
      uint8_t *t = c->tx;
      size_t cap = c->tx_cap;
      c->tx = c->xtx;
      c->tx_cap = c->xtx_cap;
      c->tx_off = 0;
      c->tx_len = c->xtx_len;
      c->xtx = t;
      c->xtx_cap = cap;
      c->xtx_len = 0;
      __atomic_store_n(&c->xtx_hint, 0, __ATOMIC_RELAXED);
    } else if (queued(c) + c->xtx_len > lp->s->o.tx_limit) {
      c->xheld = true; /* xsend bounds xtx; tx drains as the client reads */
    } else if (room(&c->tx, &c->tx_cap, c->tx_len, c->xtx_len)) {
      memcpy(c->tx + c->tx_len, c->xtx, c->xtx_len);
      c->tx_len += c->xtx_len;
      c->xtx_len = 0;
      __atomic_store_n(&c->xtx_hint, 0, __ATOMIC_RELAXED);
    } else {
      cut = true;
    }
  }
  bool dead = c->dead;
  pthread_mutex_unlock(&c->xlock);
  if (dead)
    return;
  if (cut && !c->closing)
    cut_off(lp, c, RILL_ENOBUFS,
            "send queue over tx_limit: the client does not read what it is sent");
  if (!c->xheld) /* held: its EPOLLOUT settles it, which takes xtx again */
    mark_dirty(lp, c);
}
