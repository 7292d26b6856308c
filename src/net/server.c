/*
 * The rill server: one event loop per core (epoll, level triggered,
 * non-blocking sockets), each owning the connections it accepted. Every
 * loop has the listening socket in its epoll set with EPOLLEXCLUSIVE, so
 * the kernel hands each new connection to one of them.
 *
 * What a connection's loop does alone needs no lock: its receive buffer,
 * which frames are decoded from in place (a publish is appended to its
 * log straight from it), its send queue and its subscriptions. What
 * loops share is locked or atomic:
 *   - the registry of topics and services (`reg`, taken on BIND,
 *     SUBSCRIBE, FETCH, SERVE, ASK and when a connection goes);
 *   - the asks in flight (`asks_mu`), so a reply arriving on the
 *     provider's loop finds its asker on another;
 *   - a connection's cross-loop send queue (`xlock`): a frame for a
 *     connection of another loop (an ask, a reply, a cancellation) goes
 *     there, and its loop moves it to its own queue when woken;
 *   - a topic's per-loop subscriber counts, so a loop that appended to a
 *     topic wakes only the loops with subscribers to it.
 * A loop is woken through an intrusive MPSC stack (pushing allocates
 * nothing: the nodes live in the topic and the connection) and, when it
 * may be asleep in epoll_wait, an eventfd write. Connections are
 * refcounted: an ask or a provider entry holds a reference, so another
 * loop can queue a frame on a connection that its own loop is closing;
 * the frame is then dropped, and the memory goes with the last reference.
 *
 * Flow control. A connection is read only while its send queue is under
 * half its limit, so a client that floods requests without reading the
 * answers is held back by TCP, not by our memory; one whose queue passes
 * the limit anyway is cut off with a reason. What a connection's
 * requests send to another (an ask to its provider) is held to that
 * one's room: past half its limit the asker is refused (EBUSY), so no
 * client can get another cut off; a reply that takes its asker's queue
 * past half stops the server reading the provider until the asker has
 * read (held_on). Subscriptions deliver only
 * as far as the credits their client granted, and only while the send
 * queue has room. Acknowledged publishes waiting for durability count
 * too: past RILL__ACKS_MAX waiting, the connection is not read.
 *
 * Durability without stalling. Under RILL_LOG_SYNC_GROUP the server opens
 * the logs without a sync policy and runs one syncer thread: a loop that
 * appends marks the topic, the syncer fdatasyncs each marked topic (one
 * sync covers every append made before it, from every loop: group commit
 * across connections and loops) and wakes the loops whose acknowledged
 * publishes were waiting. No loop ever waits on the disk.
 *
 * Services: a SERVE registers the connection as a provider of a name; an
 * ASK goes to the providers in turn, under an id the server gives it, and
 * the provider's REPLY goes back under the asker's id. An ask ends with
 * its reply, its cancellation, its deadline (swept every 100 ms), or
 * either side going away; the other side is told.
 *
 * The server's files, one idea each (the shared structures are in
 * server_internal.h):
 *   server.c            create, run, stop, destroy: options and data_dir
 *   server_loop.c       the event loops: epoll, the inbox of wakeups, sweeps
 *   server_conn.c       connections: accept, HELLO, reading and decoding
 *                       frames, the channel tables, settling and closing
 *   server_sendq.c      the send queue: frames out, by copy or by reference,
 *                       and the cross-loop queue
 *   server_topic.c      the topic registry: index, references, open
 *   server_topic_dir.c  topics on disk: TOPICS, TOPIC_INFO, TOPIC_DELETE,
 *                       the disk budget's scan
 *   server_publish.c    BIND, PUBLISH, PUBLISH_BATCH and their ACKs
 *   server_stream.c     streamed PUBLISHes put together from CHUNKs
 *   server_deliver.c    SUBSCRIBE, CREDIT, FETCH: records out to clients
 *   server_sync.c       group commit: the syncer and the acks it releases
 *   server_ask.c        SERVE, ASK, REPLY, CANCEL: services and asks
 *   server_hold.c       the reply hold: a provider held to its asker's pace
 *   server_log.c        the log callback's lines, rate-limited by kind
 *   server_stats.c      counters, STATS and the metrics endpoint's text
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

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

/* The server's metrics as Prometheus text: the loops' counters summed and
 * their histograms merged (relaxed loads: a scrape may miss the newest
 * few values, never tear one), and the topics under reg. Runs on the
 * metrics thread, or on a loop for STATS. */
int rill__srv_render(void *ctx, rill__prom_t *p) {
  rill_server_t *s = ctx;
  rill__metrics_snap_t snap_ = {0}, *snap = &snap_; /* on the stack: aligned for its histograms */
  rill_server_stats(s, &snap->st);
  pthread_mutex_lock(&s->asks_mu);
  snap->asks_in_flight = s->asks_open;
  pthread_mutex_unlock(&s->asks_mu);
  snap->uptime_s = (double)(rill_time_ns() - s->started_ns) / 1e9;
  snap->loops = s->nloops;
  for (uint32_t i = 0; i < s->nloops; i++) {
    rill__hist_merge(&snap->publish_ack, &s->loops[i].publish_ack);
    rill__hist_merge(&snap->ask, &s->loops[i].ask);
  }
  int rc = 0;
  pthread_mutex_lock(&s->reg);
  snap->serves = s->nserves;
  snap->binds = atomic_load_explicit(&s->nbinds, memory_order_relaxed); /* counts */
  snap->subs = atomic_load_explicit(&s->nsubs, memory_order_relaxed);
  size_t n = 0;
  for (struct topic *t = s->topics; t; t = t->next)
    n++;
  rill__metrics_topic_t *topics = n ? rill__calloc(n, sizeof *topics) : NULL;
  struct topic **held = n ? rill__calloc(n, sizeof *held) : NULL;
  if (n && (!topics || !held)) {
    rc = rill__err(RILL_ENOMEM, "metrics: no memory");
    n = 0; /* no reference taken */
    goto unlock_reg;
  }
  n = 0;
  for (struct topic *t = s->topics; t; t = t->next) {
    if (t->opening)
      continue; /* no log yet */
    /* A reference until rendered: a delete may otherwise free the name. */
    topic_ref(t);
    held[n] = t;
    rill__metrics_topic_t *m = &topics[n++];
    m->name = t->name;
    m->next_seq = rill_log_next(t->log);
    for (uint32_t i = 0; i < s->nloops; i++) {
      const struct tloop *tl = &t->per[i];
      m->appended += atomic_load_explicit(&tl->appended, memory_order_relaxed);
      m->appended_bytes += atomic_load_explicit(&tl->bytes, memory_order_relaxed);
      m->subscribers += atomic_load_explicit(&tl->nsubs, memory_order_relaxed);
    }
  }
unlock_reg:
  pthread_mutex_unlock(&s->reg);
  if (!rc) {
    snap->topics = topics;
    snap->ntopics = n;
    rill__metrics_render_server(p, snap);
    rc = rill__prom_status(p);
  }
  for (size_t i = 0; i < n; i++)
    rill__srv_topic_put(s, held[i]);
  rill__free(held);
  rill__free(topics);
  return rc;
}

void rill__srv_on_stats(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill__prom_reset(&lp->stats);
  int rc = rill__srv_render(lp->s, &lp->stats);
  if (rc)
    rill__srv_send_error(lp, c, 0, f->id, rc, rill_errmsg());
  else if (lp->stats.len > lp->s->o.max_body)
    rill__srv_send_error(
        lp, c, 0, f->id, RILL_EMSGSIZE,
        "STATS: the metrics are over max_body; scrape the HTTP endpoint (--metrics)");
  else
    rill__srv_send_frame(lp, c, RILL_F_STATS, 0, 0, f->id, 0, lp->stats.buf,
                         (uint32_t)lp->stats.len);
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
  struct epoll_event ev = {.events =
                               (c->paused || c->closing ? 0 : EPOLLIN) | (queued(c) ? EPOLLOUT : 0),
                           .data.ptr = c};
  return epoll_ctl(lp->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0;
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
  struct provider *gone = c->provides;
  c->provides = NULL;
  for (struct provider *p = gone; p; p = p->next_in_conn) {
    struct service *v = p->svc;
    if (v->turn == p)
      v->turn = p->next_in_svc;
    struct provider **pp = &v->providers;
    while (*pp != p)
      pp = &(*pp)->next_in_svc;
    *pp = p->next_in_svc;
    if (!v->providers) { /* nobody serves it: a name no longer held */
      struct service **vp = rill__srv_svc_bucket(s, v->name, strlen(v->name));
      while (*vp != v)
        vp = &(*vp)->next;
      *vp = v->next;
      rill__free(v);
    }
  }
  s->nserves -= c->nserves;
  c->nserves = 0;
  pthread_mutex_unlock(&s->reg);
  for (uint32_t i = 0; c->binds.slot && i <= c->binds.mask; i++)
    if (c->binds.slot[i].key)
      unhold(lp, c->binds.slot[i].v); /* not under reg, which a last one takes */
  while (gone) {
    struct provider *p = gone;
    gone = p->next_in_conn;
    conn_put(c);
    rill__free(p);
  }
  rill__srv_asks_end(lp, c);
  size_t nacks = atomic_load_explicit(&lp->nacks, memory_order_relaxed);
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
  atomic_fetch_sub_explicit(&s->nconns, 1, memory_order_relaxed); /* a count: publishes nothing */
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

/* Handles every whole frame in rx, until the connection pauses. What a
 * pause leaves is handled when it resumes, before anything is read. */
static void conn_decode(struct loop *lp, struct conn *c) {
  size_t off = 0;
  while (!c->closing && !c->paused) {
    rill_frame_t f;
    size_t used;
    int rc = rill_frame_decode(c->rx + off, c->rx_len - off,
                               c->ready ? lp->s->o.max_body : hello_max(), &f, &used);
    if (rc == RILL_EAGAIN)
      break;
    if (rc) {
      rill__srv_fatal(lp, c, rc, rill_errmsg());
      break;
    }
    on_frame(lp, c, &f);
    off += used;
    c->last_ns = c->read_ns;
    c->pinged = false;
    if (over(lp, c))
      c->paused = true; /* answers pile up: stop reading until they drain */
  }
  rill__srv_pump_touched(lp);
  memmove(c->rx, c->rx + off, c->rx_len - off);
  c->rx_len -= off;
}

/* Reads what the socket has, decodes and handles every whole frame. */
void rill__srv_conn_read(struct loop *lp, struct conn *c) {
  rill_server_t *s = lp->s;
  if (c->rx_len)
    conn_decode(lp, c);
  for (int rounds = 0; rounds < 16 && !c->closing && !c->paused; rounds++) {
    if (c->rx_cap - c->rx_len < 4096) {
      size_t cap = c->rx_cap * 2;
      /* A whole frame of max_body and room to read on: what stays in rx
       * after decoding is one partial frame, so this never fills. */
      size_t most = RILL_NET_HDR + (size_t)s->o.max_body + 4096;
      if (cap > most)
        cap = most;
      if (cap <= c->rx_cap) {
        rill__srv_fatal(lp, c, RILL_EMSGSIZE, "receive buffer full");
        return;
      }
      uint8_t *n = c->rx_pooled ? rill__malloc(cap) : rill__realloc(c->rx, cap);
      if (n && c->rx_pooled) { /* past the pool's size: to the heap */
        memcpy(n, c->rx, c->rx_len);
        rx_give(s, c->rx, true);
        c->rx_pooled = false;
      }
      if (!n) {
        rill__srv_fatal(lp, c, RILL_ENOMEM, "no memory");
        return;
      }
      c->rx = n;
      c->rx_cap = cap;
    }
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
    if (atomic_fetch_add_explicit(&s->nconns, 1, memory_order_relaxed) >= s->o.max_conns) {
      atomic_fetch_sub_explicit(&s->nconns, 1, memory_order_relaxed);
      char peer[64];
      rill__srv_log(s, L_CONN_REFUSED, RILL_SERVER_LOG_WARN,
                    "refused a connection from %s: max_conns (%u) connections are open",
                    rill__srv_peer_of(fd, peer, sizeof peer), s->o.max_conns);
      refuse(lp, fd, "too many connections (max_conns)");
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = rill__calloc(1, sizeof *c);
    bool pooled = false;
    uint8_t *rx = rx_take(s, &pooled);
    if (!c || !rx)
      goto undo_conn;
    c->rx_pooled = pooled;
    c->lp = lp;
    atomic_init(&c->refs, 1);
    c->fd = fd;
    c->rx = rx;
    c->rx_cap = RX_MIN;
    c->born_ns = c->last_ns = rill_time_ns();
    c->xw.kind = W_CONN;
    c->binds.mul = c->subch.mul = s->chan_mul;
    pthread_mutex_init(&c->xlock, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      pthread_mutex_destroy(&c->xlock);
      goto undo_conn;
    }
    c->next = lp->conns;
    if (lp->conns)
      lp->conns->prev = c;
    lp->conns = c;
    continue;
  undo_conn:
    rill__free(c);
    if (rx)
      rx_give(s, rx, pooled);
    refuse(lp, fd, "no memory for a connection: try again later");
    atomic_fetch_sub_explicit(&s->nconns, 1, memory_order_relaxed);
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
  if (c->paused && queued(c) < limit / 4 && c->acks_waiting < ACKS_MAX / 2 &&
      !(c->held_on && rill__srv_hold_over(lp, c))) {
    c->paused = false;
    if (c->rx_len) /* frames read before the pause, which no EPOLLIN will announce */
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
  atomic_store_explicit(&c->txq, queued(c), memory_order_relaxed); /* an estimate: see xsend_ */
  if (atomic_load_explicit(&c->waited, memory_order_relaxed) && queued(c) < limit / 4)
    rill__srv_waiters_wake(lp, c);
  if (!conn_watch(lp, c)) {
    INC(lp, conns_dropped, 1);
    rill__srv_conn_close(lp, c);
  }
}

/* Handshake and idle timeouts of this loop's connections; ask deadlines
 * by loop 0. Every 100 ms. */
static void sweep(struct loop *lp) {
  rill_server_t *s = lp->s;
  uint64_t now = rill_time_ns();
  rill__srv_accept_resume(lp);
  if (lp->idx == 0)
    rill__srv_asks_expire(lp, now);
  if (lp->idx == 0)
    rill__srv_log_flush(s);
  for (struct conn *c = lp->conns, *n; c; c = n) {
    n = c->next;
    if (c->closing) {
      /* Its last words have had a second to go (a peer that does not
       * read them would hold the connection forever). */
      if (++c->closing_ticks >= 10)
        rill__srv_conn_close(lp, c);
    } else if (!c->ready && now - c->born_ns > s->o.handshake_timeout_ns) {
      rill__srv_fatal(lp, c, RILL_ETIMEDOUT, "no HELLO in time");
      rill__srv_conn_settle(lp, c);
    } else if (now - c->last_ns > s->o.idle_timeout_ns) {
      rill__srv_fatal(lp, c, RILL_ETIMEDOUT, "idle too long");
      rill__srv_conn_settle(lp, c);
    } else if (c->ready && !c->pinged && now - c->last_ns > s->o.idle_timeout_ns / 2) {
      /* Quiet for half the timeout: asked for a sign of life, so a
       * subscriber waiting on a quiet topic stays while a dead peer goes. */
      c->pinged = true;
      rill__srv_send_frame(lp, c, RILL_F_PING, 0, 0, 0, 0, NULL, 0);
      rill__srv_conn_settle(lp, c);
    } else {
      /* A stream that stalls holds memory others may need: dropped, the
       * publisher told, its later pieces ignored. */
      bool told = false;
      for (uint32_t i = 0; i < IN_STREAMS; i++) {
        struct instream *in = &c->in[i];
        if (in->buf && now - in->last_ns > STREAM_STALL_NS) {
          rill__srv_send_error(lp, c, in->ch, in->id, RILL_ETIMEDOUT,
                               "PUBLISH: no piece of the stream for 10 s; dropped");
          rill__srv_stream_drop(s, c, in, true);
          told = true;
        }
      }
      /* A provider held by its asker looks again: a backstop for a
       * wakeup its asker's loop missed or did not send (it closed). One
       * held too long lets go of the ask that held it. */
      bool held = c->held_on;
      if (held && now - c->held_since > HOLD_MAX_NS)
        rill__srv_hold_expire(lp, c);
      if (told || held)
        rill__srv_conn_settle(lp, c);
    }
  }
}

/* What other threads pushed: topics appended to, frames for connections,
 * syncs done. */
static void loop_inbox(struct loop *lp) {
  struct wake *w = atomic_exchange_explicit(&lp->inbox, NULL, memory_order_acquire);
  while (w) {
    struct wake *next = w->next;
    if (w->kind == W_TOPIC) {
      struct tloop *tl = (struct tloop *)((char *)w - offsetof(struct tloop, w));
      /* Before the pump: a later append wakes again. seq_cst: the store
       * must not pass the pump's loads of the log (a store then a load),
       * or an append in between would find the flag set and not wake us. */
      atomic_store_explicit(&tl->notified, false, memory_order_seq_cst);
      struct topic *t = tl->t;
      rill__srv_pump_topic(lp, t);
      rill__srv_topic_put(lp->s, t); /* the wakeup's */
    } else if (w->kind == W_CONN) {
      struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, xw));
      rill__srv_conn_take_x(lp, c);
      conn_put(c);
    } else {
      /* seq_cst, as for notified: not past acks_release's loads of the
       * durable marks, or a sync in between would not wake us. */
      atomic_store_explicit(&lp->sync_woken, false, memory_order_seq_cst);
      rill__srv_acks_release(lp);
    }
    w = next;
  }
}

void *rill__srv_loop_main(void *arg) {
  struct loop *lp = arg;
  rill_server_t *s = lp->s;
  if (lp->idx) { /* loop 0 runs on the caller's thread: its name stays */
    char name[16];
    snprintf(name, sizeof name, "rill-loop%u", lp->idx % MAX_LOOPS);
    pthread_setname_np(pthread_self(), name);
  }
  struct epoll_event evs[64];
  lp->last_sweep = rill_time_ns();
  for (bool stop = false; !stop;) {
    /* Relaxed store, ordered before the inbox load by the seq_cst fence
     * that pairs with loop_wake's. */
    atomic_store_explicit(&lp->sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    int timeout = atomic_load_explicit(&lp->inbox, memory_order_relaxed) ? 0 : 100;
    int n = epoll_wait(lp->ep, evs, 64, timeout);
    atomic_store_explicit(&lp->sleeping, 0, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == s) {
        rill__srv_conn_accept(lp);
        continue;
      }
      if (p == &s->stopfd) {
        stop = true;
        continue;
      }
      if (p == lp) {
        uint64_t v;
        ssize_t r = read(lp->wakefd, &v, sizeof v);
        (void)r;
        continue;
      }
      struct conn *c = p;
      if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
        rill__srv_conn_close(lp, c);
        continue;
      }
      if (evs[i].events & EPOLLIN)
        rill__srv_conn_read(lp, c);
      rill__srv_conn_settle(lp, c);
    }
    loop_inbox(lp);
    /* Frames queued on connections other than the one whose request made
     * them (deliveries to subscribers of a topic just published to). */
    while (lp->dirty) {
      struct conn *c = lp->dirty;
      lp->dirty = c->next_dirty;
      c->dirty = false;
      rill__srv_conn_settle(lp, c);
    }
    if (rill_time_ns() - lp->last_sweep > 100000000ull) {
      sweep(lp);
      lp->last_sweep = rill_time_ns();
    }
  }
  /* Stop. Acks still waiting for the syncer: their topics synced here
   * and answered, so a publisher hears about what is on disk. */
  size_t nacks = atomic_load_explicit(&lp->nacks, memory_order_relaxed);
  for (size_t i = 0; i < nacks; i++) {
    struct pack *a = &lp->acks[i];
    if (a->c && a->last >= atomic_load_explicit(&a->t->durable, memory_order_acquire)) {
      uint64_t upto = rill_log_next(a->t->log);
      if (rill_log_sync(a->t->log) == 0)
        rill__srv_durable_raise(a->t, upto);
    }
  }
  rill__srv_acks_release(lp);
  /* Then tell everyone, and give them what is queued. */
  for (struct conn *c = lp->conns; c; c = c->next) {
    rill__srv_send_frame(lp, c, RILL_F_BYE, 0, 0, 0, (uint64_t)(int64_t)RILL_ECLOSED,
                         "server stopping", 15);
    rill__srv_conn_flush(lp, c);
  }
  return NULL;
}

/* Makes data_dir the server's: created when missing, a directory the
 * server can write (a probe file is created and removed, so a read-only
 * or foreign directory fails here rather than at every publish), and no
 * other server's: its lock file stays flocked while the server lives (a
 * lock that goes with the process, however it ends), and holds the pid of
 * the server that has it, for the message of the next one. */
static int data_dir_take(rill_server_t *s) {
  const char *d = s->o.data_dir;
  struct stat st;
  if (mkdir(d, 0755) != 0 && errno != EEXIST)
    return rill__err_errno("server: cannot create the data directory %s", d);
  if (stat(d, &st) != 0)
    return rill__err_errno("server: data directory %s", d);
  if (!S_ISDIR(st.st_mode))
    return rill__err(RILL_EINVAL, "server: data directory %s is not a directory", d);
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/.rill-probe-%ld", d, (long)getpid()) >= (int)sizeof path)
    return rill__err(RILL_EINVAL, "server: data directory path too long");
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, "x", 1) != 1) {
    int rc = rill__err_errno("server: data directory %s is not writable", d);
    if (fd >= 0) {
      close(fd);
      unlink(path);
    }
    return rc;
  }
  close(fd);
  unlink(path);
  snprintf(path, sizeof path, "%s/.rill-server.lock", d);
  s->dir_lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->dir_lock < 0)
    return rill__err_errno("server: cannot open %s", path);
  if (flock(s->dir_lock, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char pid[24] = {0};
    ssize_t n = pread(s->dir_lock, pid, sizeof pid - 1, 0);
    close(s->dir_lock);
    s->dir_lock = -1;
    if (e != EWOULDBLOCK)
      return rill__err(-e, "server: cannot lock %s: %s", path, strerror(e));
    long p = n > 0 ? strtol(pid, NULL, 10) : 0;
    if (p > 0)
      return rill__err(RILL_EBUSY,
                       "server: data directory %s is in use by another server (pid %ld)", d, p);
    return rill__err(RILL_EBUSY, "server: data directory %s is in use by another server", d);
  }
  char pid[24];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(s->dir_lock, 0) != 0 || pwrite(s->dir_lock, pid, (size_t)n, 0) != n)
    return rill__err_errno("server: cannot write %s", path);
  return 0;
}

char *rill__srv_str_dup(const char *str) {
  size_t n = strlen(str) + 1;
  char *d = rill__malloc(n);
  return d ? memcpy(d, str, n) : NULL;
}

/* topic_opts and their match strings, the server's own. */
static int topic_opts_copy(rill_server_t *s, const rill_server_opts_t *o) {
  s->o.topic_opts = NULL;
  s->o.ntopic_opts = 0;
  if (!o->ntopic_opts)
    return 0;
  rill_server_topic_opts_t *t = rill__calloc(o->ntopic_opts, sizeof *t);
  if (!t)
    return rill__err(RILL_ENOMEM, "server: no memory");
  s->o.topic_opts = t;
  for (uint32_t i = 0; i < o->ntopic_opts; i++, s->o.ntopic_opts++) {
    t[i] = o->topic_opts[i];
    if (!(t[i].match = rill__srv_str_dup(o->topic_opts[i].match)))
      return rill__err(RILL_ENOMEM, "server: no memory");
  }
  return 0;
}

int rill__srv_loop_init(rill_server_t *s, struct loop *lp, uint32_t idx) {
  lp->s = s;
  lp->idx = idx;
  lp->sync_w.kind = W_SYNC;
  rill__prom_init(&lp->stats);
  lp->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (lp->spare < 0)
    return rill__err_errno("server: open /dev/null (a spare descriptor)");
  lp->ep = epoll_create1(EPOLL_CLOEXEC);
  lp->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (lp->ep < 0 || lp->wakefd < 0)
    return rill__err_errno("server: epoll or eventfd");
  /* EPOLLEXCLUSIVE: a new connection wakes one loop, not all of them. */
  struct epoll_event el = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = s};
  struct epoll_event es = {.events = EPOLLIN, .data.ptr = &s->stopfd};
  struct epoll_event ew = {.events = EPOLLIN, .data.ptr = lp};
  if (epoll_ctl(lp->ep, EPOLL_CTL_ADD, s->lfd, &el) ||
      epoll_ctl(lp->ep, EPOLL_CTL_ADD, s->stopfd, &es) ||
      epoll_ctl(lp->ep, EPOLL_CTL_ADD, lp->wakefd, &ew))
    return rill__err_errno("server: epoll_ctl");
  return 0;
}

/* Every connection and every topic holds descriptors: with max_conns and
 * max_topics all in use the server must not run out, or accept fails
 * with EMFILE while clients wait. The soft RLIMIT_NOFILE is raised as far
 * as that needs (up to the hard limit); past the hard limit the
 * configuration is refused, naming both numbers. */
static int fd_budget(const rill_server_opts_t *o) {
  uint64_t need = (uint64_t)o->max_conns + (uint64_t)o->max_topics * FDS_PER_TOPIC +
                  (uint64_t)o->loops * 3 + FDS_FIXED; /* a loop: epoll, eventfd, spare */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return rill__err_errno("server: getrlimit(RLIMIT_NOFILE)");
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
    return 0;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
    return rill__err(RILL_EINVAL,
                     "server: max_conns (%u) and max_topics (%u, %u descriptors each) need %llu "
                     "file descriptors, but RLIMIT_NOFILE allows %llu (hard limit): lower them, or "
                     "raise the limit (ulimit -n)",
                     o->max_conns, o->max_topics, FDS_PER_TOPIC, (unsigned long long)need,
                     (unsigned long long)rl.rlim_max);
  rl.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    return rill__err_errno("server: raising RLIMIT_NOFILE to %llu for max_conns (%u) and "
                           "max_topics (%u)",
                           (unsigned long long)need, o->max_conns, o->max_topics);
  return 0;
}

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
  if (!o.max_topics)
    o.max_topics = 4096;
  if (!o.max_message)
    o.max_message = (uint64_t)64 << 20;
  if (!o.max_asks_per_conn)
    o.max_asks_per_conn = 4096;
  if (!o.max_asks)
    o.max_asks = 65536;
  if (!o.max_serves_per_conn)
    o.max_serves_per_conn = 1024;
  if (!o.max_serves)
    o.max_serves = 65536;
  if (!o.max_binds_per_conn)
    o.max_binds_per_conn = 4096;
  if (!o.max_binds)
    o.max_binds = 262144;
  if (!o.max_subs_per_conn)
    o.max_subs_per_conn = 4096;
  if (!o.max_subs)
    o.max_subs = 262144;
  if (!o.log_rate)
    o.log_rate = 10;
  if (!o.max_disk)
    o.max_disk = DEFAULT_MAX_DISK;
  if (!o.loops) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o.loops = n < 1 ? 1 : n > (long)MAX_LOOPS ? MAX_LOOPS : (uint32_t)n;
  }
  if (o.loops > MAX_LOOPS)
    return rill__err(RILL_EINVAL, "server: %u loops, at most %u", o.loops, MAX_LOOPS);
  if (o.max_body < 4096 || o.max_body > RILL_NET_MAX_BODY)
    return rill__err(RILL_EINVAL, "server: max_body %u not in 4 KiB..64 MiB", o.max_body);
  if (o.max_message < o.max_body || o.max_message > UINT32_MAX)
    return rill__err(RILL_EINVAL, "server: max_message not in max_body..4 GiB");
  uint64_t assembly_max = 4 * o.max_message;
  if (o.tx_limit < 4 * ((size_t)o.max_body + RILL_NET_HDR))
    return rill__err(RILL_EINVAL, "server: tx_limit under four frames of max_body");
  if (o.segment_bytes &&
      (o.segment_bytes % 4096 || o.segment_bytes < (64u << 10) || o.segment_bytes > (2ull << 30)))
    return rill__err(RILL_EINVAL, "server: segment_bytes not a multiple of 4 KiB in 64 KiB..2 GiB");
  if (o.retain_age_ns > MAX_AGE_NS)
    return rill__err(RILL_EINVAL, "server: retain_age over 100 years");
  if (o.ntopic_opts && !o.topic_opts)
    return rill__err(RILL_EINVAL, "server: ntopic_opts without topic_opts");
  for (uint32_t i = 0; i < o.ntopic_opts; i++) {
    const rill_server_topic_opts_t *e = &o.topic_opts[i];
    size_t ml = e->match ? strlen(e->match) : 0;
    bool prefix = ml && e->match[ml - 1] == '*';
    if (!ml ||
        (prefix ? ml > 1 && !rill_net_name_ok(e->match, ml - 1) : !rill_net_name_ok(e->match, ml)))
      return rill__err(RILL_EINVAL,
                       "server: topic_opts[%u]: match is a topic name, or its start "
                       "and '*'",
                       i);
    if (e->segment_bytes && (e->segment_bytes % 4096 || e->segment_bytes < (64u << 10) ||
                             e->segment_bytes > (2ull << 30)))
      return rill__err(RILL_EINVAL,
                       "server: topic_opts[%u] (%s): segment_bytes not a multiple "
                       "of 4 KiB in 64 KiB..2 GiB",
                       i, e->match);
    if (e->retain_age_ns > MAX_AGE_NS && e->retain_age_ns != RILL_SERVER_RETAIN_NONE)
      return rill__err(RILL_EINVAL, "server: topic_opts[%u] (%s): retain_age over 100 years", i,
                       e->match);
  }
  if (o.token && strlen(o.token) > RILL_NET_MAX_TOKEN)
    return rill__err(RILL_EINVAL, "server: token over %u bytes", RILL_NET_MAX_TOKEN);
  int rc = fd_budget(&o);
  if (rc)
    return rc;
  uint16_t port = o.any_port ? 0 : o.port ? o.port : RILL_NET_PORT;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, o.host, &sa.sin_addr) != 1)
    return rill__err(RILL_EINVAL, "server: '%s' is not an IPv4 address", o.host);
  rill_server_t *s = rill__calloc(1, sizeof *s);
  /* Aligned by hand: the loops' histograms are cache-line aligned. */
  void *mem = rill__calloc(1, o.loops * sizeof(struct loop) + RILL_CACHELINE);
  if (!s || !mem) {
    rill__free(s);
    rill__free(mem);
    return rill__err(RILL_ENOMEM, "server: no memory");
  }
  struct loop *loops =
      (struct loop *)(((uintptr_t)mem + RILL_CACHELINE - 1) & ~(uintptr_t)(RILL_CACHELINE - 1));
  s->loops_mem = mem;
  s->o = o;
  s->assembly_max = assembly_max;
  s->nloops = o.loops;
  s->loops = loops;
  s->lfd = s->stopfd = s->dir_lock = -1;
  for (uint32_t i = 0; i < s->nloops; i++)
    loops[i].ep = loops[i].wakefd = loops[i].spare = -1;
  pthread_mutex_init(&s->reg, NULL);
  pthread_cond_init(&s->opened, NULL);
  pthread_mutex_init(&s->asks_mu, NULL);
  pthread_mutex_init(&s->log_mu, NULL);
  /* The strings are the server's own: the caller's may be on its stack. */
  s->o.host = s->o.data_dir = s->o.token = s->o.metrics = NULL;
  s->o.topic_opts = NULL;
  s->o.ntopic_opts = 0;
  if (!(s->o.host = rill__srv_str_dup(o.host)) ||
      !(s->o.data_dir = rill__srv_str_dup(o.data_dir)) ||
      (o.token && !(s->o.token = rill__srv_str_dup(o.token))) ||
      (o.metrics && !(s->o.metrics = rill__srv_str_dup(o.metrics)))) {
    rc = rill__err(RILL_ENOMEM, "server: no memory");
    goto undo_s;
  }
  if ((rc = topic_opts_copy(s, &o)))
    goto undo_s;
  if ((rc = data_dir_take(s)))
    goto undo_s;
  rill__srv_deleted_dirs_remove(s->o.data_dir);
  s->disk = (rill_log_budget_t){.limit = o.max_disk == RILL_SERVER_DISK_UNLIMITED ? 0 : o.max_disk,
                                .what = "the server's max_disk"};
  rill__srv_disk_scan(s);
  /* The topic index: a bucket per topic there can be, to a power of two. */
  s->topic_mask = 255;
  while (s->topic_mask < o.max_topics - 1 && s->topic_mask < (1u << 20) - 1)
    s->topic_mask = s->topic_mask * 2 + 1;
  s->topic_idx = rill__calloc(s->topic_mask + 1, sizeof *s->topic_idx);
  if (!s->topic_idx) {
    rc = rill__err(RILL_ENOMEM, "server: no memory");
    goto undo_s;
  }
  if (getrandom(&s->server_id, sizeof s->server_id, GRND_NONBLOCK) != sizeof s->server_id)
    s->server_id = rill_time_wall_ns();
  if (getrandom(&s->chan_mul, sizeof s->chan_mul, GRND_NONBLOCK) != sizeof s->chan_mul)
    s->chan_mul = (uint32_t)(s->server_id >> 17) ^ 0x9e3779b9u;
  s->chan_mul |= 1; /* odd: multiplying permutes the keys */
  s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
      bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) || listen(s->lfd, 1024)) {
    rc = rill__err_errno("server: listen on %s:%u", o.host, ntohs(sa.sin_port));
    goto undo_s;
  }
  socklen_t sl = sizeof sa;
  if (getsockname(s->lfd, (struct sockaddr *)&sa, &sl) != 0) {
    rc = rill__err_errno("server: getsockname");
    goto undo_s;
  }
  s->port = ntohs(sa.sin_port);
  s->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->stopfd < 0) {
    rc = rill__err_errno("server: eventfd");
    goto undo_s;
  }
  for (uint32_t i = 0; i < s->nloops; i++)
    if ((rc = rill__srv_loop_init(s, &loops[i], i)))
      goto undo_s;
  /* As many first buffers as connections (pages are touched only when a
   * connection uses them). */
  if ((rc = rill_iopool_create(&s->rxpool,
                               &(rill_iopool_opts_t){.buf_size = RX_MIN, .count = o.max_conns})))
    goto undo_s;
  s->started_ns = rill_time_ns();
  if (o.metrics && (rc = rill__metrics_http_start(&s->metrics, s->o.metrics, rill__srv_render, s)))
    goto undo_s;
  *out = s;
  return 0;
undo_s:
  rill_server_destroy(s);
  return rc;
}

uint16_t rill_server_port(const rill_server_t *s) { return s->port; }

uint16_t rill_server_metrics_port(const rill_server_t *s) {
  return s->metrics ? rill__metrics_http_port(s->metrics) : 0;
}

void rill_server_stop(rill_server_t *s) {
  uint64_t one = 1;
  ssize_t w = write(s->stopfd, &one, sizeof one);
  (void)w;
}

int rill_server_run(rill_server_t *s) {
  int rc = 0;
  /* Relaxed: the syncer starts after it, and pthread_create orders it. */
  atomic_store_explicit(&s->stopping, false, memory_order_relaxed);
  if (s->o.sync == RILL_LOG_SYNC_GROUP) {
    if ((rc = pthread_create(&s->syncer, NULL, rill__srv_syncer_main, s)))
      return rill__err(-rc, "server: cannot start the syncer");
    s->syncing = true;
  }
  uint32_t started = 1;
  for (; started < s->nloops; started++)
    if ((rc = pthread_create(&s->loops[started].th, NULL, rill__srv_loop_main,
                             &s->loops[started]))) {
      rc = rill__err(-rc, "server: cannot start loop %u", started);
      rill_server_stop(s);
      break;
    }
  rill__srv_loop_main(&s->loops[0]);
  for (uint32_t i = 1; i < started; i++)
    pthread_join(s->loops[i].th, NULL);
  if (s->syncing) {
    /* Release: the loops are joined; the syncer's acquire load pairs. */
    atomic_store_explicit(&s->stopping, true, memory_order_release);
    rill__futex_bump(&s->sync_word);
    pthread_join(s->syncer, NULL);
    s->syncing = false;
  }
  /* The logs flushed: what was acknowledged was already on disk; this
   * covers what was published without acknowledgement. */
  pthread_mutex_lock(&s->reg);
  for (struct topic *t = s->topics; t; t = t->next) {
    int e = rill_log_sync(t->log);
    if (e && !rc)
      rc = e;
  }
  pthread_mutex_unlock(&s->reg);
  return rc;
}

void rill_server_destroy(rill_server_t *s) {
  if (!s)
    return;
  rill__metrics_http_stop(s->metrics); /* its render reads what is freed below */
  for (uint32_t i = 0; i < s->nloops; i++) {
    struct loop *lp = &s->loops[i];
    /* Wakeups still queued hold connection references. */
    /* Acquire, pairing with the pushers' release: the nodes' links. */
    for (struct wake *w = atomic_exchange_explicit(&lp->inbox, NULL, memory_order_acquire), *n; w;
         w = n) {
      n = w->next;
      if (w->kind == W_CONN)
        conn_put((struct conn *)((char *)w - offsetof(struct conn, xw)));
    }
    while (lp->conns)
      rill__srv_conn_close(lp, lp->conns);
    rill__free(lp->acks);
    rill__prom_free(&lp->stats);
    if (lp->ep >= 0)
      close(lp->ep);
    if (lp->wakefd >= 0)
      close(lp->wakefd);
    if (lp->spare >= 0)
      close(lp->spare);
  }
  for (struct topic *t = s->topics, *n; t; t = n) {
    n = t->next;
    rill_log_close(t->log);
    rill__free(t);
  }
  for (uint32_t b = 0; b < SVC_BUCKETS; b++)
    for (struct service *v = s->services[b], *n; v; v = n) {
      n = v->next;
      rill__free(v);
    }
  for (struct topic *t = s->dead_topics, *n; t; t = n) {
    n = t->next;
    rill_log_close(t->log);
    rill__free(t);
  }
  while (s->free_asks) {
    struct ask *a = s->free_asks;
    s->free_asks = a->next;
    rill__free(a);
  }
  rill__free(s->asks_heap);
  if (s->rxpool)
    rill_iopool_destroy(s->rxpool);
  if (s->lfd >= 0)
    close(s->lfd);
  if (s->stopfd >= 0)
    close(s->stopfd);
  if (s->dir_lock >= 0)
    close(s->dir_lock); /* the lock goes with it; the file stays, as the topics do */
  pthread_mutex_destroy(&s->reg);
  pthread_cond_destroy(&s->opened);
  pthread_mutex_destroy(&s->asks_mu);
  rill__free(s->topic_idx);
  pthread_mutex_destroy(&s->log_mu);
  rill__free((char *)s->o.host);
  rill__free((char *)s->o.data_dir);
  rill__free((char *)s->o.token);
  rill__free((char *)s->o.metrics);
  for (uint32_t i = 0; i < s->o.ntopic_opts; i++)
    rill__free((char *)s->o.topic_opts[i].match);
  rill__free((void *)s->o.topic_opts);
  rill__free(s->loops_mem);
  rill__free(s);
}

void rill_server_stats(const rill_server_t *s, rill_server_stats_t *st) {
  uint64_t sum[NSTATS] = {0};
  for (uint32_t i = 0; i < s->nloops; i++)
    for (size_t k = 0; k < NSTATS; k++)
      sum[k] += atomic_load_explicit(&s->loops[i].st[k], memory_order_relaxed); /* see stat_add */
  memcpy(st, sum, sizeof *st);
  st->conns_open = atomic_load_explicit(&s->nconns, memory_order_relaxed);
  st->disk_bytes = rill_log_budget_used(&s->disk);
  st->disk_max = s->disk.limit;
}
