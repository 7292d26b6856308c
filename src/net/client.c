/*
 * The client: one blocking socket, used by one thread at a time.
 *
 * Receiving. Frames are decoded in place from one receive buffer. A
 * blocking call reads until its answer comes by id; anything else it reads
 * is kept (copied into a FIFO: with messages streamed in CHUNKs, the only
 * allocation on the receive side) for whoever wants it: rill_client_next,
 * rill_client_next_ask, or the callbacks rill_client_poll runs. A record,
 * an ask or a reply over max_body comes in pieces that read_frame puts
 * together, so that nothing above it ever sees a piece. Callbacks never
 * run inside a blocking call, so a callback may itself make blocking
 * calls without finding itself re-entered.
 *
 * Sending. Small frames without an answer to wait for go into a 64 KiB
 * send buffer, which leaves in one sendmsg with the next frame sent at
 * once, when full, at the end of a poll pass, or on rill_client_flush.
 * The socket stays blocking: a send waits for the kernel, never for our
 * memory.
 *
 * Async asks are kept in a table of opts.max_inflight slots allocated
 * once, with a free list; an async ask's id names its slot, so a reply is
 * matched with one index and pipelined asks allocate nothing.
 *
 * Reconnect. A break closes the socket at once (lost()); what was in
 * flight is failed, what is registered (binds, subscriptions, services) is
 * kept, and the next call that needs the connection dials again (ensure())
 * and restores those registrations before doing its own work. A
 * subscription the server refuses for good then (its topic deleted) is
 * dropped alone (sub_gone) and told to its reader once (took_gone).
 *
 * The client's files, one idea each (the shared structures are in
 * client_internal.h):
 *   client.c          connect, close, and reconnecting after a break
 *   client_send.c     the send path: the send buffer, sendmsg, streaming out
 *   client_recv.c     the receive path: frames, streamed messages put together
 *   client_held.c     frames read before anyone wanted them, and await
 *   client_reg.c      registrations (binds, subscriptions, services), channels
 *   client_publish.c  BIND, PUBLISH, PUBLISH_BATCH
 *   client_sub.c      subscriptions, credits, rill_client_next
 *   client_ask.c      asks and serves: blocking, async, replies
 *   client_poll.c     rill_client_poll and the callbacks it runs
 *   client_call.c     requests answered at once: PING, STATS, topics
 * and, shared with the server, addr.c: host names and addresses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/client_internal.h"

/* A break: the socket is closed, asks in flight are failed (their
 * callbacks run at the next poll), and what is buffered is dropped. */
int rill__cli_lost(rill_client_t *c, const char *why) {
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  if (!c->down) {
    c->down = true;
    c->down_ns = c->next_try_ns = rill_time_ns();
    c->backoff_ns = 0;
  }
  c->tx_len = 0; /* unacknowledged publishes in it: at most once */
  c->have = c->off = 0;
  c->spill_len = 0;
  c->in_stream = false; /* a record half received is received again */
  c->in_skip = false;
  while (c->asms) /* their asks ended with the connection */
    rill__cli_asm_drop(c, &c->asms);
  for (uint32_t i = 0; c->inflight && i < c->o.max_inflight; i++)
    if (c->tab[i].id) {
      c->failed[c->nfailed++] = c->tab[i];
      pend_free(c, i);
    }
  /* Asks we were given on the old connection: the server cancelled them. */
  for (struct held *prev = NULL, *h = c->head, *n; h; h = n) {
    n = h->next;
    if (h->type == RILL_F_ASK) {
      unlink_held(c, prev, h);
      rill__free(h);
    } else {
      prev = h;
    }
  }
  return rill__err(c->o.reconnect ? RILL_ECONNRESET : RILL_ECLOSED, "client: connection lost: %s",
                   why);
}

/* A request and its ACK, on a connection being set up. true in *refused
 * when the server answered it with an ERROR (an error of its own, not of
 * the connection, which goes on). */
static int request(rill_client_t *c, uint8_t type, uint8_t flags, uint16_t ch, uint64_t arg,
                   const char *name, rill_frame_t *f, bool *refused) {
  uint64_t id = c->next_id++;
  f->type = 0;
  int rc = send_frame(c, type, flags, ch, id, arg, name, (uint32_t)strlen(name));
  if (!rc)
    rc = rill__cli_await(c, RILL_F_ACK, id, f, c->o.timeout_ns);
  *refused = rc && c->fd >= 0 && f->type == RILL_F_ERROR && f->id == id;
  return rc;
}

static bool for_good(int rc);

/* A re-subscription's refusal that no redialling will change: its topic
 * is gone (deleted while the client was away, and it was not made with
 * CREATE), or the server will not have it at all. Anything else (no
 * memory, max_topics, a disk error) may pass, so the client dials again. */
static bool sub_refused_for_good(int rc) { return rc == RILL_ENOENT || for_good(rc); }

/* Drops a subscription the server refused for good at a reconnect, so
 * that the connection and the other registrations go on without it. Its
 * channel stays taken until its reader is told (took_gone). */
static void sub_gone(rill_client_t *c, struct reg *r, int code) {
  r->kind = REG_GONE;
  r->gone = code;
  r->credits = 0;
  c->ngone++;
}

/* The first subscription sub_gone dropped (on channel `only`, 0: any), as
 * its reader's error, once: it is forgotten and its channel let go. *sub
 * (may be NULL) gets its channel. 0 when there is none. */
int rill__cli_took_gone(rill_client_t *c, uint16_t only, uint16_t *sub) {
  for (size_t i = 0; c->ngone && i < c->nregs; i++) {
    struct reg *r = &c->regs[i];
    if (r->kind != REG_GONE || (only && r->ch != only))
      continue;
    int code = r->gone;
    uint16_t ch = r->ch;
    char name[RILL_NET_MAX_NAME + 1];
    snprintf(name, sizeof name, "%s", r->name);
    rill__cli_reg_del(c, r);
    c->ngone--;
    if (sub)
      *sub = ch;
    return rill__err(code,
                     "client: subscription %u to topic '%s' dropped: the server refused it when "
                     "the client reconnected (%s)",
                     ch, name,
                     code == RILL_ENOENT ? "the topic no longer exists" : rill_strerror(code));
  }
  return 0;
}

/* The socket, connected to the first of the host's addresses that takes
 * it, in getaddrinfo's order. The host is resolved at every dial: a name
 * may point elsewhere by the time the client reconnects. */
static int dial_socket(rill_client_t *c) {
  struct addrinfo *ai;
  int rc = rill__addr_resolve(c->o.host, c->o.port, false, "client", &ai);
  if (rc)
    /* Reconnecting, a name the resolver refuses now may resolve later:
     * dialled again until reconnect_limit, not given up as a bad option. */
    return rc == RILL_EINVAL && c->down ? RILL_EAGAIN : rc;
  /* connect() gives up after SO_SNDTIMEO: an unreachable address costs
   * one request timeout, not the kernel's minutes (with RILL_FOREVER, a
   * zero timeval: the kernel's own). */
  struct timeval tv = {0, 0};
  if (c->o.timeout_ns != RILL_FOREVER)
    tv = (struct timeval){(time_t)(c->o.timeout_ns / 1000000000u),
                          (suseconds_t)(c->o.timeout_ns % 1000000000u / 1000u)};
  for (struct addrinfo *a = ai; a; a = a->ai_next) {
    c->fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
      rc = rill__err_errno("client: socket");
      continue;
    }
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(c->fd, a->ai_addr, a->ai_addrlen) == 0) {
      rc = 0;
      break;
    }
    char where[RILL__ADDR_STR];
    rc = rill__err_errno("client: connect to %s", rill__addr_str(a->ai_addr, where, sizeof where));
    close(c->fd);
    c->fd = -1;
  }
  freeaddrinfo(ai);
  return rc;
}

/* Opens the socket, shakes hands, and restores every registration. */
static int dial(rill_client_t *c) {
  int rc = dial_socket(c);
  if (rc)
    return rc;
  struct timeval none = {0, 0}; /* sends wait for the kernel as long as it takes */
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->have = c->off = 0;
  c->spill_len = 0;
  c->drained = false;
  size_t tl = c->o.token ? strlen(c->o.token) : 0, nl = strlen(c->o.name);
  uint8_t hello[12 + RILL_NET_MAX_TOKEN + RILL_NET_MAX_NAME];
  rill_net_hello_encode(hello, c->o.token, tl, c->o.name, nl);
  rc = send_frame(c, RILL_F_HELLO, 0, 0, 0, 0, hello, (uint32_t)rill_net_hello_size(tl, nl));
  rill_frame_t f;
  if (!rc)
    rc = rill__cli_await(c, RILL_F_WELCOME, 0, &f, c->o.timeout_ns);
  rill_net_welcome_t w;
  if (!rc)
    rc = rill_net_welcome_decode(f.body, f.len, &w);
  if (rc)
    return rc;
  c->max_body = w.max_body;
  bool refused;
  for (size_t i = 0; i < c->nregs && !rc; i++) {
    struct reg *r = &c->regs[i];
    if (r->kind == REG_BIND) {
      rc = request(c, RILL_F_BIND, 0, r->ch, 0, r->name, &f, &refused);
    } else if (r->kind == REG_SERVE) {
      rc = request(c, RILL_F_SERVE, 0, r->ch, 0, r->name, &f, &refused);
    } else if (r->kind == REG_SUB) {
      /* From where it stopped, with the flags it was made with and the
       * credits it had left: deliveries the old connection had on the
       * way are simply sent again. */
      rc = request(c, RILL_F_SUBSCRIBE, r->flags, r->ch, r->next, r->name, &f, &refused);
      r = &c->regs[i]; /* absorbing may not move regs, but be plain about it */
      if (rc && refused && sub_refused_for_good(rc)) {
        sub_gone(c, r, rc);
        rc = 0;
      } else if (!rc && r->credits) {
        rc = send_frame(c, RILL_F_CREDIT, 0, r->ch, 0, r->credits, NULL, 0);
      }
    }
  }
  return rc;
}

/* Refusals that dialling again will not change. */
static bool for_good(int rc) {
  return rc == RILL_EACCES || rc == RILL_EVERSION || rc == RILL_EPROTO || rc == RILL_EINVAL;
}

static uint64_t jitter(rill_client_t *c, uint64_t b) {
  c->rng ^= c->rng << 13; /* xorshift64 */
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  return b / 2 + c->rng % (b / 2 + 1); /* half to all of it: clients do not dial in step */
}

/* rill__cli_ensure's way when the connection is down. */
int rill__cli_redial(rill_client_t *c, uint64_t deadline) {
  if (!c->o.reconnect || c->gave_up)
    return rill__err(RILL_ECLOSED, "client: the connection to %s is closed", c->where);
  for (;;) {
    uint64_t now = rill_time_ns();
    if (now - c->down_ns > c->o.reconnect_limit_ns) {
      c->gave_up = true;
      return rill__err(RILL_ECLOSED, "client: no connection to %s for %.1f s: giving up", c->where,
                       (double)(now - c->down_ns) / 1e9);
    }
    if (now < c->next_try_ns) {
      if (now >= deadline)
        return rill__err(RILL_ETIMEDOUT, "client: reconnecting to %s", c->where);
      uint64_t until = c->next_try_ns < deadline ? c->next_try_ns : deadline;
      struct timespec ts = {(time_t)((until - now) / 1000000000u),
                            (long)((until - now) % 1000000000u)};
      nanosleep(&ts, NULL);
      continue;
    }
    int rc = dial(c);
    if (rc == 0) {
      c->down = false;
      return 0;
    }
    if (c->fd >= 0) {
      close(c->fd);
      c->fd = -1;
    }
    if (for_good(rc)) {
      c->gave_up = true;
      return rc;
    }
    uint64_t b = !c->backoff_ns                   ? c->o.backoff_min_ns
                 : c->backoff_ns > UINT64_MAX / 2 ? UINT64_MAX
                                                  : 2 * c->backoff_ns;
    c->backoff_ns = b > c->o.backoff_max_ns ? c->o.backoff_max_ns : b;
    c->next_try_ns = rill__deadline(rill_time_ns(), jitter(c, c->backoff_ns));
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
  if (!o.max_inflight)
    o.max_inflight = 4096;
  if (!o.backoff_min_ns)
    o.backoff_min_ns = 10000000ull;
  if (!o.backoff_max_ns)
    o.backoff_max_ns = 2000000000ull;
  if (!o.reconnect_limit_ns)
    o.reconnect_limit_ns = 30000000000ull;
  if (!o.max_message)
    o.max_message = 64u << 20;
  size_t tl = o.token ? strlen(o.token) : 0, nl = strlen(o.name);
  if (tl > RILL_NET_MAX_TOKEN || nl > RILL_NET_MAX_NAME)
    return rill__err(RILL_EINVAL, "client: token or name too long");
  if (o.max_inflight > (1u << 24) || o.backoff_min_ns > o.backoff_max_ns)
    return rill__err(RILL_EINVAL, "client: max_inflight over 2^24 or backoff_min over backoff_max");
  if (o.max_message > UINT32_MAX) /* lengths are u32 in the API */
    return rill__err(RILL_EINVAL, "client: max_message over 4 GiB - 1");
  if (strlen(o.host) > RILL__HOST_MAX) /* resolved at every dial, from the client's copy */
    return rill__err(RILL_EINVAL, "client: a host over %u characters", RILL__HOST_MAX);
  rill_client_t *c = rill__calloc(1, sizeof *c);
  if (!c)
    return rill__err(RILL_ENOMEM, "client: no memory");
  /* The caller's strings may not outlive this call; a reconnect needs
   * them later. Their lengths were checked above. */
  c->o = o;
  c->o.host = c->host;
  c->o.name = c->name;
  snprintf(c->host, sizeof c->host, "%s", o.host);
  rill__addr_join(c->host, o.port, c->where, sizeof c->where);
  snprintf(c->name, sizeof c->name, "%s", o.name);
  if (o.token) {
    memcpy(c->token, o.token, tl + 1);
    c->o.token = c->token;
  }
  c->fd = -1;
  c->next_id = 1;
  c->next_ch = 1;
  c->max_body = RILL_NET_MAX_BODY;
  c->cap = RX_START;
  c->rx = rill__malloc(c->cap);
  c->tx = rill__malloc(TX_BUF);
  c->tab = rill__calloc(o.max_inflight, sizeof *c->tab);
  c->failed = rill__malloc(o.max_inflight * sizeof *c->failed);
  if (getrandom(&c->rng, sizeof c->rng, GRND_NONBLOCK) != sizeof c->rng || !c->rng)
    c->rng = rill_time_ns() | 1;
  int rc;
  if (!c->rx || !c->tx || !c->tab || !c->failed) {
    rc = rill__err(RILL_ENOMEM, "client: no memory");
    goto undo_c;
  }
  for (uint32_t i = 0; i < o.max_inflight; i++)
    c->tab[i].next_free = i + 1; /* the last points past the end: never taken */
  if ((rc = dial(c)) != 0)
    goto undo_c;
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
    c->fd = -1;
  }
  /* Every async ask hears how it ended, so its context can be freed; a
   * callback that calls the client now finds it closed for good. */
  c->gave_up = true;
  c->o.reconnect = false;
  c->depth++;
  for (uint32_t i = 0; c->tab && c->inflight && i < c->o.max_inflight; i++)
    if (c->tab[i].id) {
      struct pend p = c->tab[i];
      pend_free(c, i);
      p.cb(p.ctx, RILL_ECLOSED, NULL, 0);
    }
  if (c->failed)
    run_failed(c, RILL_ECLOSED);
  while (c->head) {
    struct held *h = c->head;
    c->head = h->next;
    if (h->cb && h->type == RILL_F_REPLY) /* answered already: it gets its answer */
      h->cb(h->ctx, 0, h->data, h->len);
    else if (h->cb)
      h->cb(h->ctx, (int64_t)h->arg < 0 ? (int)(int64_t)h->arg : RILL_EPROTO, NULL, 0);
    rill__free(h);
  }
  rill__free(c->cur);
  rill__free(c->rx);
  rill__free(c->spill);
  rill__free(c->tx);
  rill__free(c->tab);
  rill__free(c->failed);
  rill__free(c->regs);
  rill__free(c->in_buf);
  while (c->asms)
    rill__cli_asm_drop(c, &c->asms);
  rill__free(c->done_buf);
  rill__free(c->batch);
  rill__free(c);
}
