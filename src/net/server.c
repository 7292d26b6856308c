/*
 * The rill server, first slice: one event-loop thread on epoll, level
 * triggered, non-blocking sockets. Each connection has a receive buffer
 * that frames are decoded from in place (a publish is appended to its log
 * straight from it) and a send queue with a hard limit.
 *
 * Flow control. A connection is read only while its send queue is under
 * half its limit, so a client that floods requests without reading the
 * answers is held back by TCP, not by our memory; one whose queue passes
 * the limit anyway is cut off with a reason. Subscriptions deliver only
 * as far as the credits their client granted, and only while the send
 * queue has room: a slow subscriber is held back, never buffered without
 * bound. Publishes are appended as they are decoded, so they need no
 * queue of their own: WELCOME grants unlimited publish credits and TCP
 * does the pacing.
 *
 * Services: a SERVE registers the connection as a provider of a name;
 * an ASK goes to the providers in turn, under an id the server gives it,
 * and the provider's REPLY goes back under the asker's id. An ask ends
 * with its reply, its cancellation, its deadline (swept every 100 ms), or
 * either side going away; the other side is told.
 *
 * Not yet built (issue 5 goes on): streamed bodies (CHUNK), one loop per core, acknowledgements
 * that wait for group commit without stalling the loop, metrics over HTTP.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/internal.h"
#include "rill/net.h"

#define RX_MIN        (64u << 10)
#define DELIVER_BATCH 64u

struct topic {
  char name[RILL_NET_MAX_NAME + 1];
  rill_log_t *log;
  struct sub *subs; /* every connection's subscriptions to it */
  struct topic *next;
  bool fresh; /* published to since its subscribers were pumped */
  struct topic *next_fresh;
};

struct conn;

struct sub {
  struct conn *c;
  uint16_t ch;
  struct topic *t;
  uint64_t next;    /* sequence to deliver next */
  uint64_t credits; /* deliveries the client allows */
  struct sub *next_in_conn, *next_in_topic;
};

struct bind {
  uint16_t ch;
  struct topic *t;
};

/* A service: the connections that serve it, taken in turn. */
struct provider {
  struct conn *c;
  uint16_t ch; /* the provider's channel for it */
  struct service *svc;
  struct provider *next_in_svc, *next_in_conn;
};

struct service {
  char name[RILL_NET_MAX_NAME + 1];
  struct provider *providers, *turn; /* turn: who gets the next ask */
  struct service *next;
};

/* An ask in flight, by the id the server gave it (what the provider sees). */
struct ask {
  uint64_t sid;
  struct conn *asker, *provider;
  uint64_t cid;      /* the asker's id for it */
  uint64_t deadline; /* rill_time_ns, or 0 */
  struct ask *next;  /* in its hash bucket, or in the free list */
};

#define ASK_BUCKETS 4096u

struct conn {
  int fd;
  bool ready;   /* HELLO accepted */
  bool closing; /* send what is queued, then close */
  bool paused;  /* not reading: the send queue is over half full */
  uint64_t born_ns, last_ns;
  uint8_t *rx;
  size_t rx_len, rx_cap;
  uint8_t *tx;
  size_t tx_off, tx_len, tx_cap;
  struct bind *binds;
  size_t nbinds, cap_binds;
  struct sub *subs;
  struct provider *provides;
  struct conn *prev, *next;
  bool dirty; /* queued by another connection's request: settle it */
  struct conn *next_dirty;
};

struct rill_server {
  rill_server_opts_t o;
  int lfd, ep, stopfd;
  uint16_t port;
  uint64_t server_id;
  struct conn *conns;
  uint32_t nconns;
  struct topic *topics;
  struct topic *fresh; /* topics published to during this read */
  struct service *services;
  struct ask *asks[ASK_BUCKETS]; /* in flight, by sid % ASK_BUCKETS */
  struct ask *free_asks;         /* reused: a steady stream allocates nothing */
  uint64_t next_sid, asks_open;
  struct conn *dirty;     /* connections a request queued frames on, besides its own */
  rill_server_stats_t st; /* written by the loop, read with relaxed loads */
};

#define INC(s, field, n) __atomic_store_n(&(s)->st.field, (s)->st.field + (n), __ATOMIC_RELAXED)

/* ---- sending ------------------------------------------------------------- */

static void conn_close(rill_server_t *s, struct conn *c);

/* Writes what the send queue holds, as far as the socket takes it. */
static int conn_flush(rill_server_t *s, struct conn *c) {
  while (c->tx_off < c->tx_len) {
    ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      if (errno == EINTR)
        continue;
      return -1;
    }
    c->tx_off += (size_t)n;
    INC(s, bytes_out, (uint64_t)n);
  }
  if (c->tx_off == c->tx_len)
    c->tx_off = c->tx_len = 0;
  return 0;
}

static size_t queued(const struct conn *c) { return c->tx_len - c->tx_off; }

/* Appends a frame to the send queue; false when the connection is over its
 * limit (it is then closing). */
static bool send_frame(rill_server_t *s, struct conn *c, uint8_t type, uint8_t flags, uint16_t ch,
                       uint64_t id, uint64_t arg, const void *body, uint32_t len) {
  if (c->closing)
    return false;
  size_t need = RILL_NET_HDR + (size_t)len;
  if (queued(c) + need > s->o.tx_limit) {
    INC(s, conns_dropped, 1);
    c->closing = true; /* not reading what it asked for: cut off */
    c->tx_off = c->tx_len = 0;
    return false;
  }
  if (c->tx_len + need > c->tx_cap) {
    if (c->tx_off) { /* compact first */
      memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
      c->tx_len -= c->tx_off;
      c->tx_off = 0;
    }
    if (c->tx_len + need > c->tx_cap) {
      size_t cap = c->tx_cap ? c->tx_cap : RX_MIN;
      while (cap < c->tx_len + need)
        cap *= 2;
      uint8_t *n = rill__realloc(c->tx, cap);
      if (!n) {
        c->closing = true;
        return false;
      }
      c->tx = n;
      c->tx_cap = cap;
    }
  }
  if (!c->dirty) {
    c->dirty = true;
    c->next_dirty = s->dirty;
    s->dirty = c;
  }
  rill_frame_header(c->tx + c->tx_len, type, flags, ch, id, arg, len);
  if (len)
    memcpy(c->tx + c->tx_len + RILL_NET_HDR, body, len);
  c->tx_len += need;
  INC(s, frames_out, 1);
  return true;
}

static void send_error(rill_server_t *s, struct conn *c, uint16_t ch, uint64_t id, int code,
                       const char *msg) {
  INC(s, errors_sent, 1);
  send_frame(s, c, RILL_F_ERROR, 0, ch, id, (uint64_t)(int64_t)code, msg, (uint32_t)strlen(msg));
}

/* An error the connection does not survive: said, then closed. */
static void fatal(rill_server_t *s, struct conn *c, int code, const char *msg) {
  send_error(s, c, 0, 0, code, msg);
  c->closing = true;
}

/* ---- topics and subscriptions ---------------------------------------------- */

static struct topic *topic_get(rill_server_t *s, const uint8_t *name, size_t len, int *rc) {
  for (struct topic *t = s->topics; t; t = t->next)
    if (strlen(t->name) == len && !memcmp(t->name, name, len))
      return t;
  struct topic *t = rill__calloc(1, sizeof *t);
  if (!t) {
    *rc = RILL_ENOMEM;
    return NULL;
  }
  memcpy(t->name, name, len);
  *rc = rill_log_open(&t->log, s->o.data_dir, t->name, &(rill_log_opts_t){.sync = s->o.sync});
  if (*rc) {
    rill__free(t);
    return NULL;
  }
  t->next = s->topics;
  s->topics = t;
  return t;
}

static struct topic *bound(struct conn *c, uint16_t ch) {
  for (size_t i = 0; i < c->nbinds; i++)
    if (c->binds[i].ch == ch)
      return c->binds[i].t;
  return NULL;
}

static struct sub *sub_of(struct conn *c, uint16_t ch) {
  for (struct sub *u = c->subs; u; u = u->next_in_conn)
    if (u->ch == ch)
      return u;
  return NULL;
}

/* Delivers what u's credits and the send queue allow. */
static void pump(rill_server_t *s, struct sub *u) {
  struct conn *c = u->c;
  while (u->credits && !c->closing && queued(c) < s->o.tx_limit / 2) {
    uint64_t first = rill_log_first(u->t->log);
    if (u->next < first)
      u->next = first; /* retention passed it: the client sees the gap in sequences */
    if (u->next >= rill_log_next(u->t->log))
      return;
    rill_log_record_t recs[DELIVER_BATCH];
    size_t n = 0, want = u->credits < DELIVER_BATCH ? (size_t)u->credits : DELIVER_BATCH;
    int rc = rill_log_read_range(u->t->log, u->next, want, s->o.tx_limit / 4, recs, &n);
    for (size_t k = 0; k < n; k++) {
      send_frame(s, c, RILL_F_DELIVER, 0, u->ch, 0, recs[k].seq, recs[k].payload.data,
                 (uint32_t)recs[k].payload.len);
      u->next = recs[k].seq + 1;
      rill_buf_release(&recs[k].payload);
    }
    u->credits -= n;
    INC(s, delivered, n);
    if (rc && !n) {
      send_error(s, c, u->ch, 0, rc, "subscription: a record cannot be read");
      u->next++;
    }
  }
}

static void pump_topic(rill_server_t *s, struct topic *t) {
  for (struct sub *u = t->subs; u; u = u->next_in_topic)
    pump(s, u);
}

/* Subscribers are pumped once per read, not once per publish: a read
 * that brought a hundred publishes delivers them in one read of the log
 * and one run of DELIVER frames per subscriber. */
static void topic_fresh(rill_server_t *s, struct topic *t) {
  if (!t->fresh && t->subs) {
    t->fresh = true;
    t->next_fresh = s->fresh;
    s->fresh = t;
  }
}

static void pump_fresh(rill_server_t *s) {
  while (s->fresh) {
    struct topic *t = s->fresh;
    s->fresh = t->next_fresh;
    t->fresh = false;
    pump_topic(s, t);
  }
}

static void sub_free(rill_server_t *s, struct sub *u) {
  (void)s;
  struct sub **pp = &u->t->subs;
  while (*pp != u)
    pp = &(*pp)->next_in_topic;
  *pp = u->next_in_topic;
  pp = &u->c->subs;
  while (*pp != u)
    pp = &(*pp)->next_in_conn;
  *pp = u->next_in_conn;
  rill__free(u);
}

/* ---- requests ------------------------------------------------------------------- */

static void on_hello(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  rill_net_hello_t h;
  if (f->type != RILL_F_HELLO) {
    fatal(s, c, RILL_EPROTO, "the first frame must be HELLO");
    return;
  }
  int rc = rill_net_hello_decode(f->body, f->len, &h);
  if (rc) {
    fatal(s, c, rc, rill_errmsg());
    return;
  }
  if (s->o.token) {
    /* Constant time in the token's bytes: no early exit on a mismatch. */
    size_t tl = strlen(s->o.token);
    uint8_t diff = (uint8_t)(h.token_len != tl);
    for (size_t i = 0; i < h.token_len; i++)
      diff |= (uint8_t)(h.token[i] ^ (uint8_t)s->o.token[i < tl ? i : 0]);
    if (diff) {
      fatal(s, c, RILL_EACCES, "wrong or missing token");
      return;
    }
  }
  uint8_t w[RILL_NET_WELCOME_SIZE];
  rill_net_welcome_encode(
      w, &(rill_net_welcome_t){RILL_NET_VERSION, s->o.max_body, s->server_id, UINT32_MAX});
  send_frame(s, c, RILL_F_WELCOME, 0, 0, 0, 0, w, sizeof w);
  c->ready = true;
}

static void on_bind(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  if (!rill_net_name_ok(f->body, f->len)) {
    send_error(s, c, f->channel, f->id, RILL_EINVAL, "BIND: not a topic name");
    return;
  }
  int rc = 0;
  struct topic *t = topic_get(s, f->body, f->len, &rc);
  if (!t) {
    send_error(s, c, f->channel, f->id, rc, rill_errmsg());
    return;
  }
  for (size_t i = 0; i < c->nbinds; i++)
    if (c->binds[i].ch == f->channel) {
      c->binds[i].t = t; /* rebinding a channel is allowed */
      goto ack;
    }
  if (c->nbinds == c->cap_binds) {
    size_t cap = c->cap_binds ? 2 * c->cap_binds : 8;
    struct bind *n = rill__realloc(c->binds, cap * sizeof *n);
    if (!n) {
      send_error(s, c, f->channel, f->id, RILL_ENOMEM, "BIND: no memory");
      return;
    }
    c->binds = n;
    c->cap_binds = cap;
  }
  c->binds[c->nbinds++] = (struct bind){f->channel, t};
ack:
  send_frame(s, c, RILL_F_ACK, 0, f->channel, f->id, rill_log_next(t->log), NULL, 0);
}

static void on_publish(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  struct topic *t = bound(c, f->channel);
  if (!t) {
    send_error(s, c, f->channel, f->id, RILL_EINVAL, "PUBLISH: channel not bound");
    return;
  }
  if (f->flags & RILL_FF_STREAM) {
    send_error(s, c, f->channel, f->id, RILL_ENOTSUP, "PUBLISH: streamed bodies are not built yet");
    return;
  }
  uint64_t seq;
  int rc = rill_log_append(t->log, f->body, f->len, &seq);
  if (rc) {
    send_error(s, c, f->channel, f->id, rc, rill_errmsg());
    return;
  }
  INC(s, published, 1);
  if (f->flags & RILL_FF_ACK)
    send_frame(s, c, RILL_F_ACK, 0, f->channel, f->id, seq, NULL, 0);
  topic_fresh(s, t);
}

static void on_publish_batch(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  struct topic *t = bound(c, f->channel);
  if (!t) {
    send_error(s, c, f->channel, f->id, RILL_EINVAL, "PUBLISH_BATCH: channel not bound");
    return;
  }
  /* Every record's length is checked before anything is appended: the
   * batch goes in whole or not at all. */
  rill_log_iov_t recs[256];
  size_t n = 0, off = 0;
  while (off < f->len) {
    if (f->len - off < 4 || n == 256)
      break;
    uint32_t len = (uint32_t)f->body[off] | (uint32_t)f->body[off + 1] << 8 |
                   (uint32_t)f->body[off + 2] << 16 | (uint32_t)f->body[off + 3] << 24;
    if (len > f->len - off - 4)
      break;
    recs[n++] = (rill_log_iov_t){f->body + off + 4, len};
    off += 4 + (size_t)len;
  }
  if (off != f->len || n != f->arg || n == 0) {
    send_error(s, c, f->channel, f->id, RILL_EPROTO,
               "PUBLISH_BATCH: 1..256 records whose lengths add up to the body, as many as arg");
    return;
  }
  uint64_t first;
  size_t done = 0;
  int rc = rill_log_append_batch(t->log, recs, n, &first, &done);
  if (rc) {
    send_error(s, c, f->channel, f->id, rc, rill_errmsg());
    return;
  }
  INC(s, published, n);
  if (f->flags & RILL_FF_ACK)
    send_frame(s, c, RILL_F_ACK, 0, f->channel, f->id, first, NULL, 0);
  topic_fresh(s, t);
}

/* The start a SUBSCRIBE or FETCH asks for, in the log's terms. */
static uint64_t start_of(rill_log_t *log, uint64_t from) {
  if (from == RILL_NET_FROM_EARLIEST)
    return rill_log_first(log);
  if (from == RILL_NET_FROM_LATEST)
    return rill_log_next(log);
  return from < rill_log_first(log) ? rill_log_first(log) : from;
}

static void on_subscribe(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  if (!rill_net_name_ok(f->body, f->len)) {
    send_error(s, c, f->channel, f->id, RILL_EINVAL, "SUBSCRIBE: not a topic name");
    return;
  }
  if (sub_of(c, f->channel)) {
    send_error(s, c, f->channel, f->id, RILL_EEXIST, "SUBSCRIBE: channel already subscribed");
    return;
  }
  int rc = 0;
  struct topic *t = topic_get(s, f->body, f->len, &rc);
  struct sub *u = t ? rill__calloc(1, sizeof *u) : NULL;
  if (!u) {
    send_error(s, c, f->channel, f->id, t ? RILL_ENOMEM : rc, t ? "no memory" : rill_errmsg());
    return;
  }
  *u = (struct sub){.c = c, .ch = f->channel, .t = t, .next = start_of(t->log, f->arg)};
  u->next_in_conn = c->subs;
  c->subs = u;
  u->next_in_topic = t->subs;
  t->subs = u;
  send_frame(s, c, RILL_F_ACK, 0, f->channel, f->id, u->next, NULL, 0);
}

static void on_unsubscribe(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  struct sub *u = sub_of(c, f->channel);
  if (!u) {
    send_error(s, c, f->channel, f->id, RILL_ENOENT, "UNSUBSCRIBE: no such subscription");
    return;
  }
  uint64_t next = u->next;
  sub_free(s, u);
  send_frame(s, c, RILL_F_ACK, 0, f->channel, f->id, next, NULL, 0);
}

static void on_credit(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  if (f->channel == 0)
    return; /* publish credits flow the other way */
  struct sub *u = sub_of(c, f->channel);
  if (!u) {
    send_error(s, c, f->channel, f->id, RILL_ENOENT, "CREDIT: no such subscription");
    return;
  }
  uint64_t max = s->o.sub_credits_max;
  u->credits = f->arg > max - u->credits ? max : u->credits + f->arg;
  pump(s, u);
}

static void on_fetch(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  if (f->len < 4 || !rill_net_name_ok(f->body + 4, f->len - 4)) {
    send_error(s, c, 0, f->id, RILL_EINVAL, "FETCH: a u32 count, then a topic name");
    return;
  }
  uint32_t count = (uint32_t)f->body[0] | (uint32_t)f->body[1] << 8 | (uint32_t)f->body[2] << 16 |
                   (uint32_t)f->body[3] << 24;
  if (count > DELIVER_BATCH * 16)
    count = DELIVER_BATCH * 16;
  int rc = 0;
  struct topic *t = topic_get(s, f->body + 4, f->len - 4, &rc);
  if (!t) {
    send_error(s, c, 0, f->id, rc, rill_errmsg());
    return;
  }
  uint64_t seq = start_of(t->log, f->arg);
  while (count) {
    rill_log_record_t recs[DELIVER_BATCH];
    size_t n = 0;
    rc = rill_log_read_range(t->log, seq, count < DELIVER_BATCH ? count : DELIVER_BATCH,
                             s->o.tx_limit / 4, recs, &n);
    for (size_t k = 0; k < n; k++) {
      send_frame(s, c, RILL_F_DELIVER, 0, 0, f->id, recs[k].seq, recs[k].payload.data,
                 (uint32_t)recs[k].payload.len);
      seq = recs[k].seq + 1;
      rill_buf_release(&recs[k].payload);
    }
    count -= (uint32_t)n;
    if (!n || queued(c) > s->o.tx_limit / 2)
      break;
  }
  /* END: arg is where a next FETCH would start. */
  send_frame(s, c, RILL_F_DELIVER, RILL_FF_END, 0, f->id, seq, NULL, 0);
}

/* ---- services ------------------------------------------------------------------- */

static void on_serve(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  if (!rill_net_name_ok(f->body, f->len)) {
    send_error(s, c, f->channel, f->id, RILL_EINVAL, "SERVE: not a service name");
    return;
  }
  struct service *v = s->services;
  while (v && !(strlen(v->name) == f->len && !memcmp(v->name, f->body, f->len)))
    v = v->next;
  if (!v) {
    if (!(v = rill__calloc(1, sizeof *v))) {
      send_error(s, c, f->channel, f->id, RILL_ENOMEM, "no memory");
      return;
    }
    memcpy(v->name, f->body, f->len);
    v->next = s->services;
    s->services = v;
  }
  struct provider *p = rill__calloc(1, sizeof *p);
  if (!p) {
    send_error(s, c, f->channel, f->id, RILL_ENOMEM, "no memory");
    return;
  }
  *p = (struct provider){.c = c, .ch = f->channel, .svc = v};
  p->next_in_svc = v->providers;
  v->providers = p;
  p->next_in_conn = c->provides;
  c->provides = p;
  send_frame(s, c, RILL_F_ACK, 0, f->channel, f->id, 0, NULL, 0);
}

static struct ask **ask_slot(rill_server_t *s, uint64_t sid) {
  struct ask **pp = &s->asks[sid % ASK_BUCKETS];
  while (*pp && (*pp)->sid != sid)
    pp = &(*pp)->next;
  return pp;
}

static void ask_done(rill_server_t *s, struct ask **pp) {
  struct ask *a = *pp;
  *pp = a->next;
  a->next = s->free_asks;
  s->free_asks = a;
  s->asks_open--;
}

static void on_ask(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  if (f->flags & RILL_FF_STREAM) {
    send_error(s, c, 0, f->id, RILL_ENOTSUP, "ASK: streamed bodies are not built yet");
    return;
  }
  uint16_t nl = f->len >= 2 ? (uint16_t)(f->body[0] | f->body[1] << 8) : 0;
  if (f->len < 2 || (size_t)nl + 2 > f->len || !rill_net_name_ok(f->body + 2, nl)) {
    send_error(s, c, 0, f->id, RILL_EINVAL, "ASK: a u16 name length, a service name, a payload");
    return;
  }
  struct service *v = s->services;
  while (v && !(strlen(v->name) == nl && !memcmp(v->name, f->body + 2, nl)))
    v = v->next;
  if (!v || !v->providers) {
    send_error(s, c, 0, f->id, RILL_ENOENT, "ASK: nobody serves that name");
    return;
  }
  struct provider *p = v->turn && v->turn->svc == v ? v->turn : v->providers;
  v->turn = p->next_in_svc; /* the next ask goes to the next provider */
  struct ask *a = s->free_asks;
  if (a)
    s->free_asks = a->next;
  else if (!(a = rill__malloc(sizeof *a))) {
    send_error(s, c, 0, f->id, RILL_ENOMEM, "no memory");
    return;
  }
  uint64_t now = rill_time_ns();
  *a = (struct ask){.sid = ++s->next_sid,
                    .asker = c,
                    .provider = p->c,
                    .cid = f->id,
                    .deadline = f->arg ? now + f->arg : 0};
  struct ask **slot = &s->asks[a->sid % ASK_BUCKETS];
  a->next = *slot;
  *slot = a;
  s->asks_open++;
  send_frame(s, p->c, RILL_F_ASK, 0, p->ch, a->sid, f->arg, f->body + 2 + nl, f->len - 2 - nl);
}

static void on_reply(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  if (f->flags & RILL_FF_STREAM) {
    send_error(s, c, 0, f->id, RILL_ENOTSUP, "REPLY: streamed bodies are not built yet");
    return;
  }
  struct ask **pp = ask_slot(s, f->id);
  if (!*pp || (*pp)->provider != c)
    return; /* cancelled or timed out meanwhile: the answer has no one to go to */
  struct ask *a = *pp;
  send_frame(s, a->asker, RILL_F_REPLY, 0, 0, a->cid, 0, f->body, f->len);
  ask_done(s, pp);
}

static void on_cancel(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  for (uint32_t b = 0; b < ASK_BUCKETS; b++)
    for (struct ask **pp = &s->asks[b]; *pp; pp = &(*pp)->next)
      if ((*pp)->asker == c && (*pp)->cid == f->id) {
        send_frame(s, (*pp)->provider, RILL_F_CANCEL, 0, 0, (*pp)->sid, 0, NULL, 0);
        send_error(s, c, 0, f->id, RILL_ECANCELED, "ASK cancelled");
        ask_done(s, pp);
        return;
      }
}

/* Asks of a connection that goes, or past their deadline, end here: the
 * asker is told (unless it is the one going), the provider cancelled. */
static void asks_end(rill_server_t *s, struct conn *gone, uint64_t now) {
  if (!s->asks_open)
    return;
  for (uint32_t b = 0; b < ASK_BUCKETS; b++)
    for (struct ask **pp = &s->asks[b]; *pp;) {
      struct ask *a = *pp;
      bool late = !gone && a->deadline && now > a->deadline;
      if (!late && a->asker != gone && a->provider != gone) {
        pp = &a->next;
        continue;
      }
      if (a->asker != gone)
        send_error(s, a->asker, 0, a->cid, late ? RILL_ETIMEDOUT : RILL_ECONNRESET,
                   late ? "ASK: past its deadline" : "ASK: the provider went away");
      if (a->provider != gone)
        send_frame(s, a->provider, RILL_F_CANCEL, 0, 0, a->sid, 0, NULL, 0);
      ask_done(s, pp);
    }
}

static void provider_free(rill_server_t *s, struct provider *p) {
  (void)s;
  struct service *v = p->svc;
  if (v->turn == p)
    v->turn = p->next_in_svc;
  struct provider **pp = &v->providers;
  while (*pp != p)
    pp = &(*pp)->next_in_svc;
  *pp = p->next_in_svc;
  rill__free(p);
}

static void on_frame(rill_server_t *s, struct conn *c, const rill_frame_t *f) {
  INC(s, frames_in, 1);
  if (!c->ready) {
    on_hello(s, c, f);
    return;
  }
  switch (f->type) {
  case RILL_F_PING: send_frame(s, c, RILL_F_PONG, 0, 0, f->id, 0, NULL, 0); break;
  case RILL_F_PONG: break;
  case RILL_F_BYE: c->closing = true; break;
  case RILL_F_BIND: on_bind(s, c, f); break;
  case RILL_F_PUBLISH: on_publish(s, c, f); break;
  case RILL_F_PUBLISH_BATCH: on_publish_batch(s, c, f); break;
  case RILL_F_SUBSCRIBE: on_subscribe(s, c, f); break;
  case RILL_F_UNSUBSCRIBE: on_unsubscribe(s, c, f); break;
  case RILL_F_CREDIT: on_credit(s, c, f); break;
  case RILL_F_FETCH: on_fetch(s, c, f); break;
  case RILL_F_SERVE: on_serve(s, c, f); break;
  case RILL_F_ASK: on_ask(s, c, f); break;
  case RILL_F_REPLY: on_reply(s, c, f); break;
  case RILL_F_CANCEL: on_cancel(s, c, f); break;
  case RILL_F_CHUNK:
    send_error(s, c, f->channel, f->id, RILL_ENOTSUP, "streamed bodies are not built yet");
    break;
  default: /* HELLO again, or what only a server sends */
    fatal(s, c, RILL_EPROTO, "a frame a client does not send");
  }
}

/* ---- connections ----------------------------------------------------------------- */

static void conn_watch(rill_server_t *s, struct conn *c) {
  struct epoll_event ev = {.events =
                               (c->paused || c->closing ? 0 : EPOLLIN) | (queued(c) ? EPOLLOUT : 0),
                           .data.ptr = c};
  epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(rill_server_t *s, struct conn *c) {
  if (c->dirty) {
    struct conn **pp = &s->dirty;
    while (*pp != c)
      pp = &(*pp)->next_dirty;
    *pp = c->next_dirty;
  }
  while (c->subs)
    sub_free(s, c->subs);
  while (c->provides) {
    struct provider *p = c->provides;
    c->provides = p->next_in_conn;
    provider_free(s, p);
  }
  asks_end(s, c, 0);
  epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  INC(s, conns_open, (uint64_t)-1);
  rill__free(c->rx);
  rill__free(c->tx);
  rill__free(c->binds);
  rill__free(c);
}

/* Reads what the socket has, decodes and handles every whole frame. */
static void conn_read(rill_server_t *s, struct conn *c) {
  for (int rounds = 0; rounds < 16 && !c->closing && !c->paused; rounds++) {
    if (c->rx_cap - c->rx_len < 4096) {
      size_t cap = c->rx_cap * 2;
      size_t most = RILL_NET_HDR + (size_t)s->o.max_body;
      if (cap > most)
        cap = most;
      if (cap <= c->rx_cap) {
        fatal(s, c, RILL_EMSGSIZE, "receive buffer full");
        return;
      }
      uint8_t *n = rill__realloc(c->rx, cap);
      if (!n) {
        fatal(s, c, RILL_ENOMEM, "no memory");
        return;
      }
      c->rx = n;
      c->rx_cap = cap;
    }
    ssize_t got = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
    if (got == 0) {
      c->closing = true; /* the peer closed: answer nothing more */
      c->tx_off = c->tx_len = 0;
      return;
    }
    if (got < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        c->closing = true;
        c->tx_off = c->tx_len = 0;
      }
      return;
    }
    c->rx_len += (size_t)got;
    c->last_ns = rill_time_ns();
    INC(s, bytes_in, (uint64_t)got);
    size_t off = 0;
    while (!c->closing) {
      rill_frame_t f;
      size_t used;
      int rc = rill_frame_decode(c->rx + off, c->rx_len - off, s->o.max_body, &f, &used);
      if (rc == RILL_EAGAIN)
        break;
      if (rc) {
        fatal(s, c, rc, rill_errmsg());
        break;
      }
      on_frame(s, c, &f);
      off += used;
      if (queued(c) > s->o.tx_limit / 2) {
        c->paused = true; /* answers pile up: stop reading until they drain */
        break;
      }
    }
    pump_fresh(s);
    memmove(c->rx, c->rx + off, c->rx_len - off);
    c->rx_len -= off;
  }
}

static void conn_accept(rill_server_t *s) {
  for (;;) {
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return; /* EAGAIN, or a transient error: the next readiness retries */
    INC(s, conns_accepted, 1);
    if (s->nconns >= s->o.max_conns) {
      /* Told why, best effort, and closed: the socket is fresh and empty. */
      uint8_t b[RILL_NET_HDR + 64];
      const char *msg = "too many connections";
      rill_frame_header(b, RILL_F_ERROR, 0, 0, 0, (uint64_t)(int64_t)RILL_EBUSY,
                        (uint32_t)strlen(msg));
      memcpy(b + RILL_NET_HDR, msg, strlen(msg));
      ssize_t w = send(fd, b, RILL_NET_HDR + strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)w;
      close(fd);
      INC(s, conns_refused, 1);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = rill__calloc(1, sizeof *c);
    uint8_t *rx = rill__malloc(RX_MIN);
    if (!c || !rx) {
      rill__free(c);
      rill__free(rx);
      close(fd);
      continue;
    }
    c->fd = fd;
    c->rx = rx;
    c->rx_cap = RX_MIN;
    c->born_ns = c->last_ns = rill_time_ns();
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      rill__free(rx);
      rill__free(c);
      close(fd);
      continue;
    }
    c->next = s->conns;
    if (s->conns)
      s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    INC(s, conns_open, 1);
  }
}

/* After a connection's events: send, resume reading, close, or re-arm. */
static void conn_settle(rill_server_t *s, struct conn *c) {
  if (conn_flush(s, c) != 0) {
    conn_close(s, c);
    return;
  }
  if (c->paused && queued(c) < s->o.tx_limit / 4) {
    c->paused = false;
    for (struct sub *u = c->subs; u; u = u->next_in_conn)
      pump(s, u);
    conn_flush(s, c);
  }
  if (c->closing && !queued(c)) {
    conn_close(s, c);
    return;
  }
  conn_watch(s, c);
}

/* Handshake and idle timeouts, once per loop tick. */
static void sweep(rill_server_t *s) {
  uint64_t now = rill_time_ns();
  asks_end(s, NULL, now);
  for (struct conn *c = s->conns, *n; c; c = n) {
    n = c->next;
    if (!c->ready && now - c->born_ns > s->o.handshake_timeout_ns) {
      fatal(s, c, RILL_ETIMEDOUT, "no HELLO in time");
      conn_settle(s, c);
    } else if (now - c->last_ns > s->o.idle_timeout_ns) {
      fatal(s, c, RILL_ETIMEDOUT, "idle too long");
      conn_settle(s, c);
    } else if (c->closing) {
      conn_close(s, c); /* could not flush its last words in a whole tick */
    }
  }
}

/* ---- create, run, stop -------------------------------------------------------------- */

int rill_server_create(rill_server_t **out, const rill_server_opts_t *opts) {
  if (!out || !opts || !opts->data_dir)
    return rill__err(RILL_EINVAL, "server: NULL out, opts or data_dir");
  *out = NULL;
  rill_server_opts_t o = *opts;
  if (!o.host)
    o.host = "127.0.0.1";
  if (!o.max_conns)
    o.max_conns = 1024;
  if (!o.max_body)
    o.max_body = RILL_NET_DEFAULT_BODY;
  if (!o.handshake_timeout_ns)
    o.handshake_timeout_ns = 5000000000ull;
  if (!o.idle_timeout_ns)
    o.idle_timeout_ns = 300000000000ull;
  if (!o.sub_credits_max)
    o.sub_credits_max = 65536;
  if (!o.tx_limit)
    o.tx_limit = (size_t)64 << 20;
  if (o.max_body < 4096 || o.max_body > RILL_NET_MAX_BODY)
    return rill__err(RILL_EINVAL, "server: max_body %u not in 4 KiB..64 MiB", o.max_body);
  if (o.tx_limit < 4 * ((size_t)o.max_body + RILL_NET_HDR))
    return rill__err(RILL_EINVAL, "server: tx_limit under four frames of max_body");
  if (o.token && strlen(o.token) > RILL_NET_MAX_TOKEN)
    return rill__err(RILL_EINVAL, "server: token over %u bytes", RILL_NET_MAX_TOKEN);
  uint16_t port = o.any_port ? 0 : o.port ? o.port : RILL_NET_PORT;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, o.host, &sa.sin_addr) != 1)
    return rill__err(RILL_EINVAL, "server: '%s' is not an IPv4 address", o.host);
  rill_server_t *s = rill__calloc(1, sizeof *s);
  if (!s)
    return rill__err(RILL_ENOMEM, "server: no memory");
  s->o = o;
  s->lfd = s->ep = s->stopfd = -1;
  int rc;
  if (getrandom(&s->server_id, sizeof s->server_id, GRND_NONBLOCK) != sizeof s->server_id)
    s->server_id = rill_time_wall_ns();
  s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
      bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) || listen(s->lfd, 1024)) {
    rc = rill__err_errno("server: listen on %s:%u", o.host, ntohs(sa.sin_port));
    goto undo_s;
  }
  socklen_t sl = sizeof sa;
  getsockname(s->lfd, (struct sockaddr *)&sa, &sl);
  s->port = ntohs(sa.sin_port);
  s->ep = epoll_create1(EPOLL_CLOEXEC);
  s->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->ep < 0 || s->stopfd < 0) {
    rc = rill__err_errno("server: epoll or eventfd");
    goto undo_s;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
  struct epoll_event evs = {.events = EPOLLIN, .data.ptr = &s->stopfd};
  if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev) ||
      epoll_ctl(s->ep, EPOLL_CTL_ADD, s->stopfd, &evs)) {
    rc = rill__err_errno("server: epoll_ctl");
    goto undo_s;
  }
  *out = s;
  return 0;
undo_s:
  rill_server_destroy(s);
  return rc;
}

uint16_t rill_server_port(const rill_server_t *s) { return s->port; }

void rill_server_stop(rill_server_t *s) {
  uint64_t one = 1;
  ssize_t w = write(s->stopfd, &one, sizeof one);
  (void)w;
}

int rill_server_run(rill_server_t *s) {
  struct epoll_event evs[64];
  uint64_t last_sweep = rill_time_ns();
  for (;;) {
    int n = epoll_wait(s->ep, evs, 64, 200);
    if (n < 0 && errno != EINTR)
      return rill__err_errno("server: epoll_wait");
    bool stop = false;
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == s) {
        conn_accept(s);
        continue;
      }
      if (p == &s->stopfd) {
        stop = true;
        continue;
      }
      struct conn *c = p;
      if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
        conn_close(s, c);
        continue;
      }
      if (evs[i].events & EPOLLIN)
        conn_read(s, c);
      conn_settle(s, c);
    }
    /* Frames queued on connections other than the one whose request made
     * them (deliveries to subscribers of a topic just published to). */
    while (s->dirty) {
      struct conn *c = s->dirty;
      s->dirty = c->next_dirty;
      c->dirty = false;
      conn_settle(s, c);
    }
    if (stop)
      break;
    if (rill_time_ns() - last_sweep > 100000000ull) {
      sweep(s);
      last_sweep = rill_time_ns();
    }
  }
  /* Stop: tell everyone, give them what is queued, flush the logs. */
  for (struct conn *c = s->conns; c; c = c->next) {
    send_frame(s, c, RILL_F_BYE, 0, 0, 0, (uint64_t)(int64_t)RILL_ECLOSED, "server stopping", 15);
    conn_flush(s, c);
  }
  int rc = 0;
  for (struct topic *t = s->topics; t; t = t->next) {
    int e = rill_log_sync(t->log);
    if (e && !rc)
      rc = e;
  }
  return rc;
}

void rill_server_destroy(rill_server_t *s) {
  if (!s)
    return;
  while (s->conns)
    conn_close(s, s->conns);
  for (struct topic *t = s->topics, *n; t; t = n) {
    n = t->next;
    rill_log_close(t->log);
    rill__free(t);
  }
  for (struct service *v = s->services, *n; v; v = n) {
    n = v->next;
    rill__free(v);
  }
  for (uint32_t b = 0; b < ASK_BUCKETS; b++)
    while (s->asks[b])
      ask_done(s, &s->asks[b]);
  while (s->free_asks) {
    struct ask *a = s->free_asks;
    s->free_asks = a->next;
    rill__free(a);
  }
  if (s->lfd >= 0)
    close(s->lfd);
  if (s->ep >= 0)
    close(s->ep);
  if (s->stopfd >= 0)
    close(s->stopfd);
  rill__free(s);
}

void rill_server_stats(const rill_server_t *s, rill_server_stats_t *st) {
  const uint64_t *src = (const uint64_t *)&s->st;
  uint64_t *dst = (uint64_t *)st;
  for (size_t i = 0; i < sizeof *st / sizeof(uint64_t); i++)
    dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
