/*
 * The send path: frames go out at once (after whatever is buffered) by one
 * sendmsg; a message over the piece size streams as a first frame and
 * CHUNKs. A send that finds the socket full waits, reading meanwhile into
 * the spill buffer, so a server whose queue to us backs up can drain it.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "net/client_internal.h"

/* Waits until the socket takes more, reading what the server sends
 * meanwhile into the spill buffer. A server whose queue to us backs up
 * stops reading us (and cuts us off past its tx_limit): a client that
 * only waited to write, say in a long streamed reply, would never let that
 * queue drain. */
static int wait_writable(rill_client_t *c) {
  /* The timeout counts from the last byte the socket took (send_now calls
   * again after each), so a long stream to a slow server goes on while a
   * server that stopped reading ends it. Reading alone is no progress: a
   * server may send (PINGs, deliveries) and never read. */
  uint64_t deadline = rill__deadline(rill_time_ns(), c->o.timeout_ns);
  for (;;) {
    bool room = c->spill_len < SPILL_MAX;
    struct pollfd p = {c->fd, (short)(POLLOUT | (room ? POLLIN : 0)), 0};
    uint64_t now = rill_time_ns();
    if (now >= deadline) {
      /* A frame may be half sent: the stream cannot go on, so the
       * connection goes (and reconnect, if on, dials again). */
      rill__cli_lost(c, "the server took nothing for the client's timeout");
      return rill__err(RILL_ETIMEDOUT,
                       "client: the server took no bytes for %llu ms (the client's timeout_ns): "
                       "connection dropped",
                       (unsigned long long)(c->o.timeout_ns / 1000000u));
    }
    int k = poll(&p, 1, poll_ms(deadline, now));
    if (k < 0) {
      if (errno == EINTR)
        continue;
      return rill__err_errno("client: poll");
    }
    if (p.revents & POLLIN) {
      if (c->spill_cap - c->spill_len < 65536) {
        size_t cap = c->spill_cap ? c->spill_cap * 2 : RX_START;
        uint8_t *b = rill__realloc(c->spill, cap);
        if (!b)
          return rill__err(RILL_ENOMEM, "client: no memory");
        c->spill = b;
        c->spill_cap = cap;
      }
      ssize_t n = recv(c->fd, c->spill + c->spill_len, c->spill_cap - c->spill_len, MSG_DONTWAIT);
      if (n == 0)
        return rill__cli_lost(c, "the server closed the connection");
      if (n > 0)
        c->spill_len += (size_t)n;
      else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return rill__cli_lost(c, "recv failed while a send waited");
    }
    if (p.revents & (POLLOUT | POLLERR | POLLHUP))
      return 0; /* the next sendmsg sends, or says what is wrong */
  }
}

/* Sends the send buffer, then pre and body, in one sendmsg where the
 * kernel takes it all (waiting for room, wait_writable). */
int rill__cli_send_now(rill_client_t *c, const void *pre, size_t pre_len, const void *body,
                       uint32_t len) {
  if (c->fd < 0)
    return rill__err(c->o.reconnect ? RILL_ECONNRESET : RILL_ECLOSED, "client: not connected");
  struct iovec iov[3] = {{c->tx, c->tx_len}, {(void *)pre, pre_len}, {(void *)body, len}};
  size_t left = c->tx_len + pre_len + len;
  struct iovec *v = iov;
  int n_iov = 3;
  while (n_iov && !v->iov_len) { /* sendmsg takes empty parts, but why walk them */
    v++;
    n_iov--;
  }
  c->tx_len = 0; /* sent below, or the connection is broken */
  while (left) {
    struct msghdr mh = {.msg_iov = v, .msg_iovlen = (size_t)n_iov};
    ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        int rc = wait_writable(c);
        if (rc)
          return rc;
        continue;
      }
      char why[96];
      snprintf(why, sizeof why, "send: %s", strerror(errno));
      return rill__cli_lost(c, why);
    }
    left -= (size_t)n;
    while (n_iov && (size_t)n >= v->iov_len) {
      n -= (ssize_t)v->iov_len;
      v++;
      n_iov--;
    }
    if (n_iov) {
      v->iov_base = (uint8_t *)v->iov_base + n;
      v->iov_len -= (size_t)n;
    }
  }
  return 0;
}

/* The rest of a streamed message after its first frame: CHUNKs with
 * arg = the first frame's type, straight from the caller's bytes, sent at
 * once (after anything buffered, which keeps the order). */
int rill__cli_send_chunks(rill_client_t *c, uint8_t type, uint16_t ch, uint64_t id,
                          const uint8_t *p, uint32_t off, uint32_t len) {
  uint32_t piece = piece_of(c);
  int rc = 0;
  while (!rc && off < len) {
    uint32_t n = len - off < piece ? len - off : piece;
    rc = send_frame(c, RILL_F_CHUNK, off + n < len ? RILL_FF_MORE : 0, ch, id, type, p + off, n);
    off += n;
  }
  return rc;
}
