/*
 * The client, first slice: one blocking socket, one thread. Requests wait
 * for their answer by id; deliveries that arrive meanwhile are kept in a
 * FIFO for rill_client_next. (Pipelined asks, callbacks and reconnecting
 * come with the rest of issue 5.)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/internal.h"
#include "rill/net.h"

struct held {
  struct held *next;
  uint8_t type;     /* DELIVER or ASK */
  uint64_t id, arg; /* ASK: the server's id and the deadline */
  rill_client_msg_t m;
  uint8_t data[];
};

struct rill_client {
  rill_client_opts_t o;
  int fd;
  uint32_t max_body;
  uint64_t next_id;
  uint16_t next_ch;
  uint8_t *rx;
  size_t have, cap, off; /* rx[off..have) is not decoded yet */
  uint8_t *tx;           /* unacknowledged publishes not sent yet */
  size_t tx_len;
  struct held *head, *tail; /* deliveries that came while waiting */
  uint8_t *cur;             /* the delivery rill_client_next handed out */
  int late;                 /* an error for a request nobody waited for */
  char late_msg[200];
};

static int write_frame(rill_client_t *c, uint8_t type, uint8_t flags, uint16_t ch, uint64_t id,
                       uint64_t arg, const void *body, uint32_t len) {
  uint8_t hdr[RILL_NET_HDR];
  rill_frame_header(hdr, type, flags, ch, id, arg, len);
  /* What the send buffer holds goes first, in the same writev. */
  struct iovec iov[3] = {{c->tx, c->tx_len}, {hdr, sizeof hdr}, {(void *)body, len}};
  size_t left = c->tx_len + sizeof hdr + len;
  int n_iov = len ? 3 : 2;
  struct iovec *v = iov;
  c->tx_len = 0; /* sent below, or the connection is broken */
  while (left) {
    ssize_t n = writev(c->fd, v, n_iov);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return rill__err_errno("client: send");
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

/* Sends a frame now, after anything buffered. */
static int send_frame(rill_client_t *c, uint8_t type, uint8_t flags, uint16_t ch, uint64_t id,
                      uint64_t arg, const void *body, uint32_t len) {
  return write_frame(c, type, flags, ch, id, arg, body, len);
}

/* Unacknowledged publishes are buffered (TX_BUF) and go out when the
 * buffer fills, with the next frame that is sent now, or at
 * rill_client_flush: one writev for many small messages. */
#define TX_BUF (64u << 10)

static int buffer_frame(rill_client_t *c, uint8_t type, uint8_t flags, uint16_t ch, uint64_t id,
                        uint64_t arg, const void *body, uint32_t len) {
  size_t need = RILL_NET_HDR + (size_t)len;
  if (!c->tx || c->tx_len + need > TX_BUF)
    return write_frame(c, type, flags, ch, id, arg, body, len);
  rill_frame_header(c->tx + c->tx_len, type, flags, ch, id, arg, len);
  if (len)
    memcpy(c->tx + c->tx_len + RILL_NET_HDR, body, len);
  c->tx_len += need;
  return 0;
}

int rill_client_flush(rill_client_t *c) {
  if (!c->tx_len)
    return 0;
  /* A PING carries the buffer out without waiting for its PONG, which the
   * reading calls pass over. */
  return write_frame(c, RILL_F_PING, 0, 0, 0, 0, NULL, 0);
}

/* The next frame, waiting up to timeout_ns; its body stays valid until the
 * next call. */
static int read_frame(rill_client_t *c, rill_frame_t *f, uint64_t timeout_ns) {
  uint64_t deadline = 0;
  for (;;) {
    size_t used;
    int rc = rill_frame_decode(c->rx + c->off, c->have - c->off, c->max_body, f, &used);
    if (rc == 0) {
      c->off += used; /* the body stays where it is until the next call */
      return 0;
    }
    if (rc != RILL_EAGAIN)
      return rc; /* the server broke the protocol */
    /* Room for the rest of the frame: move what is left to the front (only
     * now, not after every frame), then grow if that is not enough. */
    if (c->off && (c->cap - c->have < 4096 || used > c->cap - c->off)) {
      memmove(c->rx, c->rx + c->off, c->have - c->off);
      c->have -= c->off;
      c->off = 0;
    }
    if (used > c->cap) {
      uint8_t *n = rill__realloc(c->rx, used);
      if (!n)
        return rill__err(RILL_ENOMEM, "client: no memory");
      c->rx = n;
      c->cap = used;
    }
    /* Try the socket first; poll only when it has nothing. */
    ssize_t n = recv(c->fd, c->rx + c->have, c->cap - c->have, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      uint64_t now = rill_time_ns();
      if (!deadline)
        deadline = now + timeout_ns;
      if (now >= deadline)
        return rill__err(RILL_ETIMEDOUT, "client: no answer in time");
      struct pollfd p = {c->fd, POLLIN, 0};
      int ms = (int)((deadline - now + 999999) / 1000000);
      if (poll(&p, 1, ms) < 0 && errno != EINTR)
        return rill__err_errno("client: poll");
      continue;
    }
    if (n == 0)
      return rill__err(RILL_ECLOSED, "client: the server closed the connection");
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      return rill__err_errno("client: recv");
    }
    c->have += (size_t)n;
  }
}

static int hold(rill_client_t *c, const rill_frame_t *f) {
  struct held *h = rill__malloc(sizeof *h + f->len);
  if (!h)
    return rill__err(RILL_ENOMEM, "client: no memory");
  h->next = NULL;
  h->type = f->type;
  h->id = f->id;
  h->arg = f->arg;
  memcpy(h->data, f->body, f->len);
  h->m = (rill_client_msg_t){f->channel, f->arg, h->data, f->len};
  if (c->tail)
    c->tail->next = h;
  else
    c->head = h;
  c->tail = h;
  return 0;
}

/* An ERROR or BYE frame as a return code, its message as the errmsg. */
static int as_error(const rill_frame_t *f) {
  int code = f->type == RILL_F_BYE ? RILL_ECLOSED : (int)(int64_t)f->arg;
  if (code >= 0)
    code = RILL_EPROTO;
  return rill__err(code, "server: %.*s", (int)(f->len < 200 ? f->len : 200), f->body);
}

/* Waits for the answer of type `type` to request id; deliveries that come
 * first are held. */
static int await(rill_client_t *c, uint8_t type, uint64_t id, rill_frame_t *f) {
  for (;;) {
    int rc = read_frame(c, f, c->o.timeout_ns);
    if (rc)
      return rc;
    if ((f->type == RILL_F_DELIVER && f->id == 0) || f->type == RILL_F_ASK ||
        f->type == RILL_F_CANCEL) {
      if ((rc = hold(c, f)) != 0)
        return rc;
      continue;
    }
    if (f->type == RILL_F_BYE || (f->type == RILL_F_ERROR && (f->id == id || f->id == 0)))
      return as_error(f);
    if (f->type == RILL_F_ERROR && !c->late) {
      /* The error of an earlier request that did not wait (a publish
       * without ack): kept, and returned once this one is done. */
      c->late = as_error(f);
      snprintf(c->late_msg, sizeof c->late_msg, "%s", rill_errmsg());
      continue;
    }
    if (f->type == type && f->id == id) {
      if (!c->late)
        return 0;
      int late = c->late;
      c->late = 0;
      return rill__err(late, "an earlier request failed: %s", c->late_msg);
    }
  }
}

int rill_client_connect(rill_client_t **out, const rill_client_opts_t *opts) {
  if (!out)
    return rill__err(RILL_EINVAL, "client: NULL out");
  *out = NULL;
  rill_client_opts_t o = opts ? *opts : (rill_client_opts_t){0};
  if (!o.host)
    o.host = "127.0.0.1";
  if (!o.port)
    o.port = RILL_NET_PORT;
  if (!o.name)
    o.name = "rill";
  if (!o.timeout_ns)
    o.timeout_ns = 10000000000ull;
  size_t tl = o.token ? strlen(o.token) : 0, nl = strlen(o.name);
  if (tl > RILL_NET_MAX_TOKEN || nl > RILL_NET_MAX_NAME)
    return rill__err(RILL_EINVAL, "client: token or name too long");
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(o.port)};
  if (inet_pton(AF_INET, o.host, &sa.sin_addr) != 1)
    return rill__err(RILL_EINVAL, "client: '%s' is not an IPv4 address", o.host);
  rill_client_t *c = rill__calloc(1, sizeof *c);
  if (!c)
    return rill__err(RILL_ENOMEM, "client: no memory");
  c->o = o;
  c->next_id = 1;
  c->next_ch = 1;
  c->max_body = RILL_NET_MAX_BODY;
  c->cap = 64 << 10;
  c->rx = rill__malloc(c->cap);
  c->tx = rill__malloc(TX_BUF); /* without it, publishes are sent one by one */
  int rc;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (!c->rx || c->fd < 0) {
    rc = c->rx ? rill__err_errno("client: socket") : rill__err(RILL_ENOMEM, "client: no memory");
    goto undo_c;
  }
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    rc = rill__err_errno("client: connect to %s:%u", o.host, o.port);
    goto undo_c;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uint8_t hello[12 + RILL_NET_MAX_TOKEN + RILL_NET_MAX_NAME];
  rill_net_hello_encode(hello, o.token, tl, o.name, nl);
  if ((rc = send_frame(c, RILL_F_HELLO, 0, 0, 0, 0, hello,
                       (uint32_t)rill_net_hello_size(tl, nl))) != 0)
    goto undo_c;
  rill_frame_t f;
  if ((rc = await(c, RILL_F_WELCOME, 0, &f)) != 0)
    goto undo_c;
  rill_net_welcome_t w;
  if ((rc = rill_net_welcome_decode(f.body, f.len, &w)) != 0)
    goto undo_c;
  c->max_body = w.max_body;
  *out = c;
  return 0;
undo_c:
  rill_client_close(c);
  return rc;
}

void rill_client_close(rill_client_t *c) {
  if (!c)
    return;
  if (c->fd >= 0) {
    send_frame(c, RILL_F_BYE, 0, 0, 0, 0, NULL, 0);
    close(c->fd);
  }
  while (c->head) {
    struct held *h = c->head;
    c->head = h->next;
    rill__free(h);
  }
  rill__free(c->cur);
  rill__free(c->rx);
  rill__free(c->tx);
  rill__free(c);
}

int rill_client_bind(rill_client_t *c, const char *topic, uint16_t *channel) {
  size_t n = strlen(topic);
  if (!rill_net_name_ok(topic, n))
    return rill__err(RILL_EINVAL, "client: '%s' is not a topic name", topic);
  uint16_t ch = c->next_ch++;
  uint64_t id = c->next_id++;
  int rc = send_frame(c, RILL_F_BIND, 0, ch, id, 0, topic, (uint32_t)n);
  rill_frame_t f;
  if (!rc)
    rc = await(c, RILL_F_ACK, id, &f);
  if (!rc)
    *channel = ch;
  return rc;
}

int rill_client_publish(rill_client_t *c, uint16_t channel, const void *data, uint32_t len,
                        bool ack, uint64_t *seq) {
  if (len > c->max_body)
    return rill__err(RILL_EMSGSIZE, "client: %u bytes, the server takes %u", len, c->max_body);
  uint64_t id = c->next_id++;
  if (!ack)
    return buffer_frame(c, RILL_F_PUBLISH, 0, channel, id, 0, data, len);
  int rc = send_frame(c, RILL_F_PUBLISH, RILL_FF_ACK, channel, id, 0, data, len);
  if (rc)
    return rc;
  rill_frame_t f;
  rc = await(c, RILL_F_ACK, id, &f);
  if (!rc && seq)
    *seq = f.arg;
  return rc;
}

int rill_client_subscribe(rill_client_t *c, const char *topic, uint64_t from, uint32_t credits,
                          uint16_t *sub, uint64_t *start) {
  size_t n = strlen(topic);
  if (!rill_net_name_ok(topic, n))
    return rill__err(RILL_EINVAL, "client: '%s' is not a topic name", topic);
  uint16_t ch = c->next_ch++;
  uint64_t id = c->next_id++;
  int rc = send_frame(c, RILL_F_SUBSCRIBE, 0, ch, id, from, topic, (uint32_t)n);
  rill_frame_t f;
  if (!rc)
    rc = await(c, RILL_F_ACK, id, &f);
  if (rc)
    return rc;
  *sub = ch;
  if (start)
    *start = f.arg;
  return credits ? rill_client_credit(c, ch, credits) : 0;
}

int rill_client_credit(rill_client_t *c, uint16_t sub, uint32_t n) {
  return send_frame(c, RILL_F_CREDIT, 0, sub, 0, n, NULL, 0);
}

/* The first held frame of type t, unlinked (the caller owns it), or NULL. */
static struct held *take(rill_client_t *c, uint8_t t) {
  struct held *prev = NULL;
  for (struct held *h = c->head; h; prev = h, h = h->next)
    if (h->type == t) {
      if (prev)
        prev->next = h->next;
      else
        c->head = h->next;
      if (c->tail == h)
        c->tail = prev;
      return h;
    }
  return NULL;
}

int rill_client_next(rill_client_t *c, rill_client_msg_t *m, uint64_t timeout_ns) {
  rill__free(c->cur);
  c->cur = NULL;
  if (c->tx_len) { /* about to wait: what we buffered must not wait with us */
    int rc = rill_client_flush(c);
    if (rc)
      return rc;
  }
  struct held *h = take(c, RILL_F_DELIVER);
  if (h) {
    *m = h->m;
    c->cur = (uint8_t *)h; /* freed on the next call */
    return 0;
  }
  for (;;) {
    rill_frame_t f;
    int rc = read_frame(c, &f, timeout_ns);
    if (rc)
      return rc;
    if (f.type == RILL_F_DELIVER && f.id == 0) {
      *m = (rill_client_msg_t){f.channel, f.arg, f.body, f.len};
      return 0;
    }
    if (f.type == RILL_F_ASK || f.type == RILL_F_CANCEL) {
      if ((rc = hold(c, &f)) != 0)
        return rc;
      continue;
    }
    if (f.type == RILL_F_BYE || f.type == RILL_F_ERROR)
      return as_error(&f);
  }
}

/* ---- services ------------------------------------------------------------ */

int rill_client_serve(rill_client_t *c, const char *service, uint16_t *ch) {
  size_t n = strlen(service);
  if (!rill_net_name_ok(service, n))
    return rill__err(RILL_EINVAL, "client: '%s' is not a service name", service);
  uint16_t sch = c->next_ch++;
  uint64_t id = c->next_id++;
  int rc = send_frame(c, RILL_F_SERVE, 0, sch, id, 0, service, (uint32_t)n);
  rill_frame_t f;
  if (!rc)
    rc = await(c, RILL_F_ACK, id, &f);
  if (!rc && ch)
    *ch = sch;
  return rc;
}

int rill_client_next_ask(rill_client_t *c, rill_client_ask_t *a, uint64_t timeout_ns) {
  rill__free(c->cur);
  c->cur = NULL;
  if (c->tx_len) {
    int rc = rill_client_flush(c);
    if (rc)
      return rc;
  }
  for (;;) {
    struct held *h = take(c, RILL_F_ASK);
    if (h) {
      *a = (rill_client_ask_t){h->m.sub, h->id, h->data, h->m.len, h->arg};
      c->cur = (uint8_t *)h;
      return 0;
    }
    rill_frame_t f;
    int rc = read_frame(c, &f, timeout_ns);
    if (rc)
      return rc;
    if (f.type == RILL_F_ASK) {
      *a = (rill_client_ask_t){f.channel, f.id, f.body, f.len, f.arg};
      return 0;
    }
    if (f.type == RILL_F_DELIVER && f.id == 0) {
      if ((rc = hold(c, &f)) != 0)
        return rc;
      continue;
    }
    if (f.type == RILL_F_BYE || (f.type == RILL_F_ERROR && f.id == 0))
      return as_error(&f);
    /* A CANCEL of an ask not taken yet, or already answered: nothing to do
     * in this blocking client (the server drops a late reply). */
  }
}

int rill_client_reply(rill_client_t *c, uint64_t id, const void *data, uint32_t len) {
  if (len > c->max_body)
    return rill__err(RILL_EMSGSIZE, "client: %u bytes, the server takes %u", len, c->max_body);
  return send_frame(c, RILL_F_REPLY, 0, 0, id, 0, data, len);
}

int rill_client_ask(rill_client_t *c, const char *service, const void *req, uint32_t len,
                    uint64_t timeout_ns, const uint8_t **reply, uint32_t *reply_len) {
  size_t n = strlen(service);
  if (!rill_net_name_ok(service, n))
    return rill__err(RILL_EINVAL, "client: '%s' is not a service name", service);
  if (2 + n + len > c->max_body)
    return rill__err(RILL_EMSGSIZE, "client: an ask of %u bytes, the server takes %u", len,
                     c->max_body);
  uint64_t id = c->next_id++;
  uint8_t hdr[RILL_NET_HDR + 2 + RILL_NET_MAX_NAME];
  rill_frame_header(hdr, RILL_F_ASK, 0, 0, id, timeout_ns, (uint32_t)(2 + n + len));
  hdr[RILL_NET_HDR] = (uint8_t)n;
  hdr[RILL_NET_HDR + 1] = (uint8_t)(n >> 8);
  memcpy(hdr + RILL_NET_HDR + 2, service, n);
  struct iovec iov[2] = {{hdr, RILL_NET_HDR + 2 + n}, {(void *)req, len}};
  size_t want = RILL_NET_HDR + 2 + n + len;
  ssize_t w = writev(c->fd, iov, len ? 2 : 1);
  if (w != (ssize_t)want) /* a short write of a small frame: give up on the connection */
    return w < 0 ? rill__err_errno("client: send") : rill__err(RILL_EIO, "client: short send");
  rill_frame_t f;
  uint64_t saved = c->o.timeout_ns;
  if (timeout_ns)
    c->o.timeout_ns = timeout_ns + 1000000000ull; /* the server's deadline answers first */
  int rc = await(c, RILL_F_REPLY, id, &f);
  c->o.timeout_ns = saved;
  if (rc)
    return rc;
  *reply = f.body;
  *reply_len = f.len;
  return 0;
}

int rill_client_ping(rill_client_t *c, uint64_t *rtt_ns) {
  uint64_t id = c->next_id++, t0 = rill_time_ns();
  int rc = send_frame(c, RILL_F_PING, 0, 0, id, 0, NULL, 0);
  rill_frame_t f;
  if (!rc)
    rc = await(c, RILL_F_PONG, id, &f);
  if (!rc && rtt_ns)
    *rtt_ns = rill_time_ns() - t0;
  return rc;
}
