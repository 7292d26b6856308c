/*
 * Connections: accepted (or refused, past max_conns or out of
 * descriptors), held to a HELLO first, read and decoded frame by frame into
 * the request handlers, paused while their answers pile up, settled after
 * their events, and closed. Also each connection's channel tables.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "net/frame.h"
#include "net/server_internal.h"

/* Room for one more channel (the table grown when it would pass half
 * full), so the chtab_put after it cannot fail. False: no memory. */
bool rill__srv_chtab_reserve(struct chtab *t) {
  uint32_t slots = t->slot ? t->mask + 1 : 0;
  if (2 * (t->n + 1) <= slots)
    return true;
  uint32_t ns = slots ? 2 * slots : 8, shift = 32;
  for (uint32_t v = ns; v > 1; v >>= 1)
    shift--;
  struct chslot *n = rill__calloc(ns, sizeof *n), *old = t->slot;
  if (!n)
    return false;
  t->slot = n;
  t->mask = ns - 1;
  t->shift = shift;
  for (uint32_t i = 0; i < slots; i++)
    if (old[i].key) {
      uint32_t j = chtab_home(t, old[i].key);
      while (n[j].key)
        j = (j + 1) & t->mask;
      n[j] = old[i];
    }
  rill__free(old);
  return true;
}

/* Adds channel ch (not in t; room reserved). */
void rill__srv_chtab_put(struct chtab *t, uint16_t ch, void *v) {
  uint32_t key = (uint32_t)ch + 1, i = chtab_home(t, key);
  while (t->slot[i].key)
    i = (i + 1) & t->mask;
  t->slot[i] = (struct chslot){key, v};
  t->n++;
}

/* Takes channel ch out, moving back the entries after it that probed
 * past its slot, so no tombstone is left and lookups stay short. */
void rill__srv_chtab_del(struct chtab *t, uint16_t ch) {
  struct chslot *sl = chtab_find(t, ch);
  if (!sl)
    return;
  uint32_t hole = (uint32_t)(sl - t->slot);
  for (uint32_t i = (hole + 1) & t->mask; t->slot[i].key; i = (i + 1) & t->mask) {
    uint32_t home = chtab_home(t, t->slot[i].key);
    /* Movable when its home is not in (hole, i], cyclically. */
    if (((i - home) & t->mask) >= ((i - hole) & t->mask)) {
      t->slot[hole] = t->slot[i];
      hole = i;
    }
  }
  t->slot[hole] = (struct chslot){0};
  t->n--;
}

static void chtab_free(struct chtab *t) {
  rill__free(t->slot);
  t->slot = NULL;
  t->n = 0;
}

static void on_hello(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  rill_net_hello_t h;
  if (f->type != RILL_F_HELLO) {
    rill__srv_fatal(lp, c, RILL_EPROTO, "the first frame must be HELLO");
    return;
  }
  int rc = rill_net_hello_decode(f->body, f->len, &h);
  if (rc) {
    rill__srv_fatal(lp, c, rc, rill_errmsg());
    return;
  }
  if (s->o.token) {
    /* Constant time in the token's bytes: no early exit on a mismatch. */
    size_t tl = strlen(s->o.token);
    uint8_t diff = (uint8_t)(h.token_len != tl);
    for (size_t i = 0; i < h.token_len; i++)
      diff |= (uint8_t)(h.token[i] ^ (uint8_t)s->o.token[i < tl ? i : 0]);
    if (diff) {
      rill__srv_fatal(lp, c, RILL_EACCES, "wrong or missing token");
      return;
    }
  }
  uint8_t w[RILL_NET_WELCOME_SIZE];
  rill_net_welcome_encode(
      w, &(rill_net_welcome_t){RILL_NET_VERSION, s->o.max_body, s->server_id, UINT32_MAX});
  rill__srv_send_frame(lp, c, RILL_F_WELCOME, 0, 0, 0, 0, w, sizeof w);
  c->ready = true;
}

static void on_frame(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  INC(lp, frames_in, 1);
  if (!c->ready) {
    on_hello(lp, c, f);
    return;
  }
  switch (f->type) {
  case RILL_F_PING: rill__srv_send_frame(lp, c, RILL_F_PONG, 0, 0, f->id, 0, NULL, 0); break;
  case RILL_F_PONG: break;
  case RILL_F_BYE: c->closing = true; break;
  case RILL_F_BIND: rill__srv_on_bind(lp, c, f); break;
  case RILL_F_PUBLISH: rill__srv_on_publish(lp, c, f); break;
  case RILL_F_PUBLISH_BATCH: rill__srv_on_publish_batch(lp, c, f); break;
  case RILL_F_SUBSCRIBE: rill__srv_on_subscribe(lp, c, f); break;
  case RILL_F_UNSUBSCRIBE: rill__srv_on_unsubscribe(lp, c, f); break;
  case RILL_F_CREDIT: rill__srv_on_credit(lp, c, f); break;
  case RILL_F_FETCH: rill__srv_on_fetch(lp, c, f); break;
  case RILL_F_SERVE: rill__srv_on_serve(lp, c, f); break;
  case RILL_F_ASK: rill__srv_on_ask(lp, c, f); break;
  case RILL_F_REPLY: rill__srv_on_reply(lp, c, f); break;
  case RILL_F_CANCEL: rill__srv_on_cancel(lp, c, f); break;
  case RILL_F_ERROR: rill__srv_on_client_error(lp, c, f); break;
  case RILL_F_CHUNK: rill__srv_on_chunk(lp, c, f); break;
  case RILL_F_STATS: rill__srv_on_stats(lp, c, f); break;
  case RILL_F_TOPICS: rill__srv_on_topics(lp, c, f); break;
  case RILL_F_TOPIC_INFO: rill__srv_on_topic_info(lp, c, f); break;
  case RILL_F_TOPIC_DELETE: rill__srv_on_topic_delete(lp, c, f); break;
  default: /* HELLO again, or what only a server sends */
    rill__srv_fatal(lp, c, RILL_EPROTO, "a frame a client does not send");
  }
}

/* A connection's first receive buffer comes from the server's pool (no
 * allocation to accept one); past the pool, or for a frame over RX_MIN,
 * from the heap. */
static uint8_t *rx_take(rill_server_t *s, bool *pooled) {
  void *b;
  *pooled = s->rxpool && rill_iopool_get(s->rxpool, &b, NULL) == 0;
  return *pooled ? b : rill__malloc(RX_MIN);
}

static void rx_give(rill_server_t *s, uint8_t *b, bool pooled) {
  if (pooled)
    rill_iopool_put(s->rxpool, b);
  else
    rill__free(b);
}

/* False when epoll refused (ENOMEM): the connection could no longer be
 * woken for what it is waiting for, so the caller closes it. */
static bool conn_watch(struct loop *lp, struct conn *c) {
  uint32_t want = (c->paused || c->closing ? 0 : EPOLLIN) | (queued(c) ? EPOLLOUT : 0);
  /* Level-triggered: an entry that already asks for these events needs no
   * call. Asking each settle was two epoll_ctl for every epoll_wait under
   * pipelined asks (0.016 a round trip, a fifth of their system calls). */
  if (want == c->armed)
    return true;
  struct epoll_event ev = {.events = want, .data.ptr = c};
  if (epoll_ctl(lp->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
    return false;
  c->armed = want;
  return true;
}

/* Takes a place in a connection's count of a kind (n of its per_conn)
 * and in the server's (*total of max), before the request makes anything;
 * false when either is full: the request is refused (EBUSY) naming the
 * limit (max_<limit>_per_conn or max_<limit>), and counted in stat. */
bool rill__srv_limit_take(struct loop *lp, struct conn *c, const rill_frame_t *f, uint32_t n,
                          uint32_t per_conn, uint32_t *total, uint32_t max, size_t stat,
                          const char *req, const char *limit, const char *what) {
  if (n < per_conn && count_take(total, max))
    return true;
  char why[128];
  stat_add(&lp->st[stat], 1);
  if (n >= per_conn)
    snprintf(why, sizeof why, "%s: this connection has max_%s_per_conn (%u) %s", req, limit,
             per_conn, what);
  else
    snprintf(why, sizeof why, "%s: the server has max_%s (%u) %s", req, limit, max, what);
  rill__srv_send_error(lp, c, f->channel, f->id, RILL_EBUSY, why);
  return false;
}

void rill__srv_conn_close(struct loop *lp, struct conn *c) {
  rill_server_t *s = lp->s;
  if (c->dirty) {
    struct conn **pp = &lp->dirty;
    while (*pp != c)
      pp = &(*pp)->next_dirty;
    *pp = c->next_dirty;
  }
  uint32_t nsubs = c->subch.n;
  while (c->subs)
    rill__srv_sub_free(lp, c->subs);
  count_give(&s->nsubs, nsubs);
  count_give(&s->nbinds, c->binds.n);
  pthread_mutex_lock(&s->reg);
  for (uint32_t i = 0; c->binds.slot && i <= c->binds.mask; i++)
    if (c->binds.slot[i].key)
      ((struct topic *)c->binds.slot[i].v)->binders--;
  struct provider *gone = rill__srv_serves_leave(s, c);
  pthread_mutex_unlock(&s->reg);
  for (uint32_t i = 0; c->binds.slot && i <= c->binds.mask; i++)
    if (c->binds.slot[i].key)
      unhold(lp, c->binds.slot[i].v); /* not under reg, which a last one takes */
  rill__srv_providers_free(c, gone);
  rill__srv_asks_end(lp, c);
  size_t nacks = __atomic_load_n(&lp->nacks, __ATOMIC_RELAXED);
  for (size_t i = 0; c->acks_waiting && i < nacks; i++)
    if (lp->acks[i].c == c) {
      lp->acks[i].c = NULL;
      c->acks_waiting--;
    }
  epoll_ctl(lp->ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  pthread_mutex_lock(&c->xlock);
  c->dead = true; /* what other loops send from now on is dropped */
  /* Providers it held: let go here, each released by its own sweep
   * (hold_over finds this one dead), not woken from a closing loop. */
  struct conn *batch[32];
  for (uint32_t n = 32; n == 32;) {
    n = rill__srv_waiters_take(c, batch, 32);
    pthread_mutex_unlock(&c->xlock);
    for (uint32_t i = 0; i < n; i++)
      conn_put(batch[i]);
    pthread_mutex_lock(&c->xlock);
  }
  pthread_mutex_unlock(&c->xlock);
  if (c->held_on)
    rill__srv_hold_release(c);
  if (c->prev)
    c->prev->next = c->next;
  else
    lp->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  __atomic_fetch_sub(&s->nconns, 1, __ATOMIC_RELAXED); /* a count: publishes nothing */
  for (uint32_t i = 0; i < IN_STREAMS; i++)
    rill__srv_stream_drop(s, c, &c->in[i], false);
  rill_buf_release(&c->out.data);
  rill__srv_tx_drop(c);
  rx_give(s, c->rx, c->rx_pooled);
  rill__free(c->tx);
  chtab_free(&c->binds);
  chtab_free(&c->subch);
  c->rx = c->tx = NULL;
  conn_put(c); /* the loop's reference */
}

static bool over(const struct loop *lp, const struct conn *c) {
  return queued(c) > lp->s->o.tx_limit / 2 || c->acks_waiting >= ACKS_MAX;
}

/* The largest frame body a connection may send before its HELLO is
 * accepted: a HELLO with the longest token and name. Nothing bigger is
 * buffered for a client that has not shown its token. */
static uint32_t hello_max(void) {
  return (uint32_t)rill_net_hello_size(RILL_NET_MAX_TOKEN, RILL_NET_MAX_NAME);
}

/* Ends conn_decode's hold of asks_mu (see loop.asks_held). */
static void asks_let_go(struct loop *lp) {
  if (lp->asks_held) {
    lp->asks_held = false;
    pthread_mutex_unlock(&lp->s->asks_mu);
  }
}

/* Asks and replies read together take asks_mu once, up to ASKS_RUN of
 * them (others loops wait no longer than that for it): pipelined asks
 * took it twice an ask, a tenth of the server's cost of one. Streamed
 * asks are left out: their refusals are fatal, and the log callback
 * must not run under the lock. */
#define ASKS_RUN 64u
static void asks_hold(struct loop *lp, const rill_frame_t *f) {
  bool run = f->type == RILL_F_REPLY || (f->type == RILL_F_ASK && !(f->flags & RILL_FF_STREAM));
  if (!run || lp->asks_run >= ASKS_RUN)
    asks_let_go(lp);
  if (run && !lp->asks_held) {
    pthread_mutex_lock(&lp->s->asks_mu);
    lp->asks_held = true;
    lp->asks_run = 0;
  }
  lp->asks_run++;
}

/* Handles every whole frame in rx, until the connection pauses. What a
 * pause leaves is handled when it resumes, before anything is read. */
static void conn_decode(struct loop *lp, struct conn *c) {
  size_t off = c->rx_off, need = 0;
  struct pubrun run;
  run.n = 0;
  while (!c->closing && !c->paused) {
    rill_frame_t f;
    size_t used;
    int rc = rill__frame_decode(c->rx + off, c->rx_len - off,
                                c->ready ? lp->s->o.max_body : hello_max(), &f, &used);
    if (rc == RILL_EAGAIN) {
      need = used;
      break;
    }
    if (rc) {
      asks_let_go(lp);
      if (run.n)
        rill__srv_pubrun_flush(lp, c, &run);
      rill__srv_fatal(lp, c, rc, rill_errmsg());
      break;
    }
    /* A run of publishes queues nothing to send (no ACK asked, and an
     * error only where one alone would have had it), so the pause below
     * sees what it would have seen frame by frame. */
    bool pub = f.type == RILL_F_PUBLISH && c->ready;
    if (pub)
      asks_let_go(lp); /* before the run's appends: a refusal may be logged */
    if (pub && rill__srv_pubrun_add(lp, c, &run, &f)) {
      INC(lp, frames_in, 1);
    } else {
      if (run.n)
        rill__srv_pubrun_flush(lp, c, &run);
      if (c->ready)
        asks_hold(lp, &f);
      if (!c->closing) /* a publish of the run refused, and the connection cut off */
        on_frame(lp, c, &f);
    }
    off += used;
    c->last_ns = c->read_ns;
    c->pinged = false;
    if (over(lp, c))
      c->paused = true; /* answers pile up: stop reading until they drain */
  }
  asks_let_go(lp);
  if (run.n)
    rill__srv_pubrun_flush(lp, c, &run);
  rill__srv_pump_touched(lp);
  if (off == c->rx_len) {
    off = c->rx_len = 0;
  } else if (need && off + need > c->rx_cap) { /* the rest of the frame does not fit after it */
    memmove(c->rx, c->rx + off, c->rx_len - off);
    c->rx_len -= off;
    off = 0;
  }
  c->rx_off = off;
  c->rx_need = need;
}

/* Room to read into c->rx: what is decoded goes when the room at the end
 * is short, and the buffer grows when that is not enough, or to four
 * frames when frames are big (16 KiB and more), so that one read in
 * pieces is rarely moved (pub_64k moved most of each record once).
 * False when it cannot grow (the connection is then closing). */
#define RX_BIG_FRAME (16u << 10)
static bool rx_room(rill_server_t *s, struct loop *lp, struct conn *c) {
  if (c->rx_off && (c->rx_cap - c->rx_len < 4096 || c->rx_off + c->rx_need > c->rx_cap)) {
    memmove(c->rx, c->rx + c->rx_off, c->rx_len - c->rx_off);
    c->rx_len -= c->rx_off;
    c->rx_off = 0;
  }
  /* A whole frame of max_body and room to read on: what stays in rx
   * after decoding is one partial frame, so this never fills. */
  size_t most = RILL_NET_HDR + (size_t)s->o.max_body + 4096;
  bool full = c->rx_cap - c->rx_len < 4096;
  if (!full && (c->rx_need < RX_BIG_FRAME || c->rx_cap / 4 >= c->rx_need || c->rx_cap >= most))
    return true;
  size_t cap = c->rx_cap * 2;
  if (cap > most)
    cap = most;
  if (cap <= c->rx_cap) {
    rill__srv_fatal(lp, c, RILL_EMSGSIZE, "receive buffer full");
    return false;
  }
  uint8_t *n = c->rx_pooled ? rill__malloc(cap) : rill__realloc(c->rx, cap);
  if (n && c->rx_pooled) { /* past the pool's size: to the heap */
    memcpy(n, c->rx, c->rx_len);
    rx_give(s, c->rx, true);
    c->rx_pooled = false;
  }
  if (!n) {
    if (!full)
      return true; /* room enough to go on, if not as much as wished */
    rill__srv_fatal(lp, c, RILL_ENOMEM, "no memory");
    return false;
  }
  c->rx = n;
  c->rx_cap = cap;
  return true;
}

/* Reads what the socket has, decodes and handles every whole frame. */
void rill__srv_conn_read(struct loop *lp, struct conn *c) {
  rill_server_t *s = lp->s;
  if (c->rx_len > c->rx_off)
    conn_decode(lp, c);
  for (int rounds = 0; rounds < 16 && !c->closing && !c->paused; rounds++) {
    if (!rx_room(s, lp, c))
      return;
    /* Before the HELLO is accepted, no more than a HELLO is read: only
     * the first page of the buffer is touched (a pooled buffer's pages
     * are committed as they are written). */
    size_t want = c->rx_cap - c->rx_len, pre = RILL_NET_HDR + hello_max();
    if (!c->ready && want > pre)
      want = pre;
    ssize_t got = recv(c->fd, c->rx + c->rx_len, want, 0);
    if (got == 0) {
      /* The peer is done sending; it may still read (a half close):
       * what is queued goes, then the connection closes. */
      c->closing = true;
      return;
    }
    if (got < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        char peer[64];
        rill__srv_log(s, L_DROPPED, RILL_SERVER_LOG_INFO, "the connection from %s failed: %s",
                      rill__srv_peer_of(c->fd, peer, sizeof peer), strerror(errno));
        c->closing = true;
        rill__srv_tx_drop(c);
      }
      return;
    }
    c->rx_len += (size_t)got;
    c->read_ns = rill_time_ns();
    INC(lp, bytes_in, (uint64_t)got);
    conn_decode(lp, c);
  }
}

/* A connection turned away: told why, best effort, and closed (the
 * socket is fresh and empty, so the ERROR fits). */
static void refuse(struct loop *lp, int fd, const char *msg) {
  uint8_t b[RILL_NET_HDR + 96];
  size_t len = strlen(msg) < 96 ? strlen(msg) : 96;
  rill_frame_header(b, RILL_F_ERROR, 0, 0, 0, (uint64_t)(int64_t)RILL_EBUSY, (uint32_t)len);
  memcpy(b + RILL_NET_HDR, msg, len);
  ssize_t w = send(fd, b, RILL_NET_HDR + len, MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)w;
  close(fd);
  INC(lp, conns_refused, 1);
}

/* The process is out of descriptors, so the connection waiting cannot be
 * accepted, and the listener stays readable: the spare descriptor is let
 * go to accept it and turn it away, then taken again. Without a spare
 * (another thread took the number meanwhile), the listener is off for
 * this loop until its next sweep, rather than polled in a busy loop. */
static void accept_starved(struct loop *lp) {
  rill_server_t *s = lp->s;
  rill__srv_log(s, L_NOFILE, RILL_SERVER_LOG_ERROR,
                "accept: %s: out of file descriptors (raise ulimit -n, or lower max_conns)",
                strerror(errno));
  if (lp->spare >= 0) {
    close(lp->spare);
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      INC(lp, conns_accepted, 1);
      refuse(lp, fd, "out of file descriptors (RLIMIT_NOFILE): try again later");
    }
    lp->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (lp->spare >= 0)
      return;
  }
  if (!lp->unlistened && epoll_ctl(lp->ep, EPOLL_CTL_DEL, s->lfd, NULL) == 0)
    lp->unlistened = true;
}

/* At the sweep: a loop that gave up its listener for want of
 * descriptors takes its spare and its listener back. */
void rill__srv_accept_resume(struct loop *lp) {
  if (lp->spare < 0)
    lp->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (!lp->unlistened || lp->spare < 0)
    return;
  struct epoll_event el = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = lp->s};
  if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->s->lfd, &el) == 0)
    lp->unlistened = false;
}

/* A connection on fd, new to this loop (counted in nconns already): its
 * first receive buffer, its place in the loop's epoll set and list. NULL
 * when there is no memory for it (fd is then the caller's still). */
struct conn *rill__srv_conn_open(struct loop *lp, int fd) {
  rill_server_t *s = lp->s;
  struct conn *c = rill__calloc(1, sizeof *c);
  bool pooled = false;
  uint8_t *rx = rx_take(s, &pooled);
  if (!c || !rx)
    goto undo_conn;
  c->rx_pooled = pooled;
  c->lp = lp;
  c->refs = 1; /* plain: no other thread sees c yet */
  c->fd = fd;
  c->rx = rx;
  c->rx_cap = RX_MIN;
  c->born_ns = c->last_ns = rill_time_ns();
  c->xw.kind = W_CONN;
  c->binds.mul = c->subch.mul = s->chan_mul;
  pthread_mutex_init(&c->xlock, NULL);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  c->armed = EPOLLIN;
  if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    pthread_mutex_destroy(&c->xlock);
    goto undo_conn;
  }
  c->next = lp->conns;
  if (lp->conns)
    lp->conns->prev = c;
  lp->conns = c;
  return c;
undo_conn:
  rill__free(c);
  if (rx)
    rx_give(s, rx, pooled);
  return NULL;
}

void rill__srv_conn_accept(struct loop *lp) {
  rill_server_t *s = lp->s;
  for (;;) {
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE)
        accept_starved(lp);
      return; /* EAGAIN, another loop took it, or a transient error */
    }
    INC(lp, conns_accepted, 1);
    /* Relaxed: a count against max_conns; the RMW keeps loops that
     * accept at once from both taking the last place. */
    if (__atomic_fetch_add(&s->nconns, 1, __ATOMIC_RELAXED) >= s->o.max_conns) {
      __atomic_fetch_sub(&s->nconns, 1, __ATOMIC_RELAXED);
      char peer[64];
      rill__srv_log(s, L_CONN_REFUSED, RILL_SERVER_LOG_WARN,
                    "refused a connection from %s: max_conns (%u) connections are open",
                    rill__srv_peer_of(fd, peer, sizeof peer), s->o.max_conns);
      refuse(lp, fd, "too many connections (max_conns)");
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rill__srv_conn_open(lp, fd))
      continue;
    refuse(lp, fd, "no memory for a connection: try again later");
    __atomic_fetch_sub(&s->nconns, 1, __ATOMIC_RELAXED);
  }
}

/* After a connection's events: send, resume reading, close, or re-arm. */
void rill__srv_conn_settle(struct loop *lp, struct conn *c) {
  size_t limit = lp->s->o.tx_limit;
  if (rill__srv_conn_flush(lp, c) != 0) {
    rill__srv_conn_close(lp, c);
    return;
  }
  if (c->out.on &&
      rill__srv_out_pump(lp, c)) { /* the record in chunks is out: the rest may follow */
    for (struct sub *u = c->subs; u; u = u->next_in_conn)
      rill__srv_pump(lp, u);
    rill__srv_conn_flush(lp, c);
  }
  if (c->refs_full && c->nrefs < TX_REFS && !c->out.on) {
    c->refs_full = false;
    for (struct sub *u = c->subs; u; u = u->next_in_conn)
      rill__srv_pump(lp, u);
    rill__srv_conn_flush(lp, c);
  }
  if (c->paused && queued(c) < limit / 4 && c->acks_waiting < ACKS_MAX / 2 &&
      !(c->held_on && rill__srv_hold_over(lp, c))) {
    c->paused = false;
    if (c->rx_len > c->rx_off) /* frames read before the pause, which no EPOLLIN will announce */
      conn_decode(lp, c);
    for (struct sub *u = c->subs; u; u = u->next_in_conn)
      rill__srv_pump(lp, u);
    rill__srv_conn_flush(lp, c);
  }
  if (c->xheld)
    rill__srv_conn_take_x(lp, c);
  if (c->closing && !queued(c)) {
    rill__srv_conn_close(lp, c);
    return;
  }
  __atomic_store_n(&c->txq, queued(c), __ATOMIC_RELAXED); /* an estimate: see xsend_ */
  if (__atomic_load_n(&c->waited, __ATOMIC_RELAXED) && queued(c) < limit / 4)
    rill__srv_waiters_wake(lp, c);
  if (!conn_watch(lp, c)) {
    INC(lp, conns_dropped, 1);
    rill__srv_conn_close(lp, c);
  }
}
