/*
 * Services and asks. SERVE registers a connection as a provider of a name;
 * an ASK goes to the providers in turn, under an id the server gives it
 * (the asks in flight, under asks_mu, by that id and by the asker's), and
 * the REPLY goes back under the asker's id. An ask ends with its reply, its
 * cancellation, its deadline (a min-heap, swept every 100 ms) or either
 * side going away (each connection's own lists of its asks).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include "net/server_internal.h"

static struct service **svc_bucket(rill_server_t *s, const void *name, size_t len) {
  return &s->services[rill_hash64(name, len) % SVC_BUCKETS];
}

/* Under reg. len is at most RILL_NET_MAX_NAME (a checked name), so
 * name[len] is in the array: equal bytes then the end there is the same
 * name, without a strlen of each on every ask. */
static struct service *svc_find(rill_server_t *s, const void *name, size_t len) {
  struct service *v = *svc_bucket(s, name, len);
  while (v && !(!memcmp(v->name, name, len) && v->name[len] == 0))
    v = v->next;
  return v;
}

void rill__srv_on_serve(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  if (!rill_net_name_ok(f->body, f->len)) {
    rill__srv_send_error(lp, c, f->channel, f->id, RILL_EINVAL, "SERVE: not a service name");
    return;
  }
  char why[128];
  int code = RILL_EBUSY;
  why[0] = 0;
  pthread_mutex_lock(&s->reg);
  /* Each registration is memory until its connection goes: held to a
   * count per connection and on the server. */
  if (c->nserves >= s->o.max_serves_per_conn)
    snprintf(why, sizeof why, "SERVE: this connection holds max_serves_per_conn (%u) already",
             s->o.max_serves_per_conn);
  else if (s->nserves >= s->o.max_serves)
    snprintf(why, sizeof why, "SERVE: the server holds max_serves (%u) registrations already",
             s->o.max_serves);
  struct service *v = why[0] ? NULL : svc_find(s, f->body, f->len);
  if (!why[0] && !v && (v = rill__calloc(1, sizeof *v))) {
    memcpy(v->name, f->body, f->len);
    struct service **b = svc_bucket(s, f->body, f->len);
    v->next = *b;
    *b = v;
  }
  struct provider *p = v ? rill__calloc(1, sizeof *p) : NULL;
  if (p) {
    *p = (struct provider){.c = c, .ch = f->channel, .svc = v};
    conn_get(c);
    p->next_in_svc = v->providers;
    v->providers = p;
    p->next_in_conn = c->provides;
    c->provides = p;
    c->nserves++;
    s->nserves++;
  } else if (!why[0]) {
    snprintf(why, sizeof why, "SERVE: no memory");
    code = RILL_ENOMEM;
  }
  pthread_mutex_unlock(&s->reg);
  if (!p) {
    if (code == RILL_EBUSY)
      INC(lp, serves_refused, 1);
    rill__srv_send_error(lp, c, f->channel, f->id, code, why);
    return;
  }
  rill__srv_send_frame(lp, c, RILL_F_ACK, 0, f->channel, f->id, 0, NULL, 0);
}

/* Under reg: c's providers leave their services (a service nobody serves
 * any more goes, a name no longer held), and the server's count. Returns
 * them, for rill__srv_providers_free once reg is let go. */
struct provider *rill__srv_serves_leave(rill_server_t *s, struct conn *c) {
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
      struct service **vp = svc_bucket(s, v->name, strlen(v->name));
      while (*vp != v)
        vp = &(*vp)->next;
      *vp = v->next;
      rill__free(v);
    }
  }
  s->nserves -= c->nserves;
  c->nserves = 0;
  return gone;
}

/* Frees what rill__srv_serves_leave returned, each with its reference on c. */
void rill__srv_providers_free(struct conn *c, struct provider *gone) {
  while (gone) {
    struct provider *p = gone;
    gone = p->next_in_conn;
    conn_put(c);
    rill__free(p);
  }
}

static struct ask **ask_slot(rill_server_t *s, uint64_t sid) {
  struct ask **pp = &s->asks[sid % ASK_BUCKETS];
  while (*pp && (*pp)->sid != sid)
    pp = &(*pp)->next;
  return pp;
}

/* The bucket of asks_cid an ask of asker's with the asker's id cid is in. */
static struct ask **ask_cid_bucket(rill_server_t *s, const struct conn *asker, uint64_t cid) {
  uint64_t h = (uint64_t)(uintptr_t)asker * 0x9e3779b97f4a7c15ull ^ cid * 0xc2b2ae3d27d4eb4full;
  return &s->asks_cid[(h ^ h >> 29) % ASK_BUCKETS];
}

static void heap_set(rill_server_t *s, uint32_t i, struct ask *a) {
  s->asks_heap[i] = a;
  a->heap_at = i + 1;
}

/* Moves the entry at i up or down to where its deadline belongs. */
static void heap_fix(rill_server_t *s, uint32_t i) {
  struct ask *a = s->asks_heap[i];
  while (i && s->asks_heap[(i - 1) / 2]->deadline > a->deadline) {
    heap_set(s, i, s->asks_heap[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  for (;;) {
    uint32_t k = 2 * i + 1;
    if (k >= s->nheap)
      break;
    if (k + 1 < s->nheap && s->asks_heap[k + 1]->deadline < s->asks_heap[k]->deadline)
      k++;
    if (s->asks_heap[k]->deadline >= a->deadline)
      break;
    heap_set(s, i, s->asks_heap[k]);
    i = k;
  }
  heap_set(s, i, a);
}

/* Room for one more deadline; false: no memory. */
static bool heap_room(rill_server_t *s) {
  if (s->nheap < s->cap_heap)
    return true;
  uint32_t cap = s->cap_heap ? 2 * s->cap_heap : 256;
  struct ask **h = rill__realloc(s->asks_heap, (size_t)cap * sizeof *h);
  if (!h)
    return false;
  s->asks_heap = h;
  s->cap_heap = cap;
  return true;
}

static void heap_push(rill_server_t *s, struct ask *a) {
  heap_set(s, s->nheap++, a);
  heap_fix(s, s->nheap - 1);
}

static void heap_remove(rill_server_t *s, struct ask *a) {
  uint32_t i = a->heap_at - 1;
  a->heap_at = 0;
  struct ask *last = s->asks_heap[--s->nheap];
  if (i < s->nheap) {
    heap_set(s, i, last);
    heap_fix(s, i);
  }
}

static struct alink *alink_of(struct ask *a, bool asker) {
  return asker ? &a->by_asker : &a->by_provider;
}

/* Appends a to l, through its asker's link or its provider's. */
static void alist_add(struct alist *l, struct ask *a, bool asker) {
  *alink_of(a, asker) = (struct alink){NULL, l->tail};
  if (l->tail)
    alink_of(l->tail, asker)->next = a;
  else
    l->head = a;
  l->tail = a;
}

static void alist_del(struct alist *l, struct ask *a, bool asker) {
  struct alink *k = alink_of(a, asker);
  if (k->prev)
    alink_of(k->prev, asker)->next = k->next;
  else
    l->head = k->next;
  if (k->next)
    alink_of(k->next, asker)->prev = k->prev;
  else
    l->tail = k->prev;
}

/* Under asks_mu. */
static void ask_done(rill_server_t *s, struct ask **pp) {
  struct ask *a = *pp;
  *pp = a->next;
  struct ask **cp = ask_cid_bucket(s, a->asker, a->cid);
  while (*cp != a)
    cp = &(*cp)->next_cid;
  *cp = a->next_cid;
  if (a->heap_at)
    heap_remove(s, a);
  alist_del(&a->asker->asks_made, a, true);
  alist_del(&a->provider->asks_served, a, false);
  a->asker->nasks--;
  a->provider->nasked--;
  conn_put(a->asker);
  conn_put(a->provider);
  s->asks_open--;
  if (s->nfree_asks < ASK_FREE_MAX) {
    a->next = s->free_asks;
    s->free_asks = a;
    s->nfree_asks++;
  } else {
    rill__free(a);
  }
}

bool rill__srv_ask_parse(const rill_frame_t *f, uint16_t *nl) {
  *nl = f->len >= 2 ? rill__get16(f->body) : 0;
  return f->len >= 2 && (size_t)*nl + 2 <= f->len && rill_net_name_ok(f->body + 2, *nl);
}

void rill__srv_on_ask(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  uint8_t stream = f->flags & RILL_FF_STREAM;
  int out = -1; /* the askout slot of a streamed ask, taken before anything can fail */
  if (stream) {
    for (int i = 0; i < (int)IN_STREAMS; i++) {
      if (c->askout[i].on && c->askout[i].cid == f->id) {
        rill__srv_fatal(lp, c, RILL_EPROTO, "ASK: a stream with that id is open");
        return;
      }
      if (!c->askout[i].on && out < 0)
        out = i;
    }
    if (out < 0) {
      rill__srv_fatal(lp, c, RILL_EPROTO, "ASK: more than 4 streams open on one connection");
      return;
    }
    c->askout[out].on = true;
    c->askout[out].cid = f->id;
    c->askout[out].sid = 0;
  }
  uint16_t nl;
  if (!rill__srv_ask_parse(f, &nl)) {
    rill__srv_send_error(lp, c, 0, f->id, RILL_EINVAL,
                         "ASK: a u16 name length, a service name, a payload");
    return;
  }
  pthread_mutex_lock(&s->reg);
  struct service *v = svc_find(s, f->body + 2, nl);
  struct provider *p = NULL;
  if (v && v->providers) {
    p = v->turn ? v->turn : v->providers;
    v->turn = p->next_in_svc; /* the next ask goes to the next provider */
    conn_get(p->c);           /* the ask's reference */
  }
  struct conn *pc = p ? p->c : NULL;
  uint16_t pch = p ? p->ch : 0;
  pthread_mutex_unlock(&s->reg);
  if (!pc) {
    rill__srv_send_error(lp, c, 0, f->id, RILL_ENOENT, "ASK: nobody serves that name");
    return;
  }
  asks_lock(lp);
  /* Every ask in flight is memory and a table entry until it ends: held
   * to a count per asker and on the server. */
  char why[128];
  why[0] = 0; /* not the whole of it: this is on every ask */
  if (c->nasks >= s->o.max_asks_per_conn)
    snprintf(why, sizeof why, "ASK: this connection has max_asks_per_conn (%u) asks in flight",
             s->o.max_asks_per_conn);
  else if (s->asks_open >= s->o.max_asks)
    snprintf(why, sizeof why, "ASK: the server has max_asks (%u) asks in flight", s->o.max_asks);
  bool room = why[0] || !f->arg || heap_room(s);
  struct ask *a = why[0] || !room ? NULL : s->free_asks;
  if (a) {
    s->free_asks = a->next;
    s->nfree_asks--;
  } else if (why[0] || !room || !(a = rill__malloc(sizeof *a))) {
    asks_unlock(lp);
    conn_put(pc);
    if (why[0])
      INC(lp, asks_refused, 1);
    rill__srv_send_error(lp, c, 0, f->id, why[0] ? RILL_EBUSY : RILL_ENOMEM,
                         why[0] ? why : "no memory");
    return;
  }
  conn_get(c);
  /* arg is the client's (0: none): a deadline past 2^64 ns is none in
   * practice, not one that wrapped into the past. */
  uint64_t deadline = f->arg ? rill__deadline(rill_time_ns(), f->arg) : 0;
  *a = (struct ask){.sid = ++s->next_sid,
                    .asker = c,
                    .provider = pc,
                    .cid = f->id,
                    .deadline = deadline,
                    .t0 = c->read_ns,
                    .bytes = f->len - 2u - nl};
  struct ask **slot = &s->asks[a->sid % ASK_BUCKETS];
  a->next = *slot;
  *slot = a;
  slot = ask_cid_bucket(s, c, a->cid);
  a->next_cid = *slot;
  *slot = a;
  if (deadline)
    heap_push(s, a);
  alist_add(&c->asks_made, a, true);
  alist_add(&pc->asks_served, a, false);
  c->nasks++;
  pc->nasked++;
  s->asks_open++;
  /* Sent under asks_mu, so the ask (and its reference) cannot end before
   * the frame is queued. A provider that went meanwhile ends it now, and
   * one whose queue is full refuses it: the asker waits, not the
   * provider's other askers. */
  int sent = forward_to(lp, pc, RILL_F_ASK, stream, pch, a->sid, f->arg, f->body + 2 + nl,
                        f->len - 2 - nl);
  if (sent == BUSY) {
    INC(lp, asks_refused, 1);
    rill__srv_send_error(lp, c, 0, f->id, RILL_EBUSY,
                         "ASK: the provider's send queue is over half its tx_limit; try again");
    ask_done(s, ask_slot(s, a->sid));
  } else if (sent == GONE) {
    rill__srv_send_error(lp, c, 0, f->id, RILL_ECONNRESET, "ASK: the provider went away");
    ask_done(s, ask_slot(s, a->sid));
  } else if (stream) {
    c->askout[out].sid = a->sid;
  }
  asks_unlock(lp);
}

/* Under asks_mu: a streamed ask that would pass max_message ends. */
static bool ask_too_big(struct loop *lp, struct ask **pp, uint32_t more) {
  struct ask *a = *pp;
  a->bytes += more;
  if (a->bytes <= lp->s->o.max_message)
    return false;
  rill__srv_error_to(lp, a->asker, 0, a->cid, RILL_EMSGSIZE,
                     "ASK: a streamed body over max_message");
  send_to(lp, a->provider, RILL_F_CANCEL, 0, 0, a->sid, 0, NULL, 0);
  ask_done(lp->s, pp);
  return true;
}

/* The next piece of a streamed ASK (from its asker) or REPLY (from its
 * provider): passed on as it comes, under the other side's id. Pieces of
 * an ask that ended meanwhile are dropped. */
void rill__srv_on_ask_chunk(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  bool last = !(f->flags & RILL_FF_MORE);
  uint64_t sid = f->id;
  int out = -1;
  if (f->arg == RILL_F_ASK) {
    for (int i = 0; i < (int)IN_STREAMS && out < 0; i++)
      if (c->askout[i].on && c->askout[i].cid == f->id)
        out = i;
    if (out < 0) {
      rill__srv_fatal(lp, c, RILL_EPROTO, "CHUNK: no ASK stream with that id");
      return;
    }
    sid = c->askout[out].sid;
    if (last)
      c->askout[out].on = false;
  }
  pthread_mutex_lock(&s->asks_mu);
  struct ask **pp = sid ? ask_slot(s, sid) : NULL;
  struct ask *a = pp ? *pp : NULL;
  if (f->arg == RILL_F_ASK && a && a->asker == c) {
    if (!ask_too_big(lp, pp, f->len) && forward_to(lp, a->provider, RILL_F_CHUNK, f->flags, 0,
                                                   a->sid, RILL_F_ASK, f->body, f->len) == BUSY) {
      /* The provider cannot take more now: the ask ends, its later
       * pieces are dropped. */
      INC(lp, asks_refused, 1);
      rill__srv_error_to(lp, a->asker, 0, a->cid, RILL_EBUSY,
                         "ASK: the provider's send queue is over half its tx_limit; try again");
      send_to(lp, a->provider, RILL_F_CANCEL, 0, 0, a->sid, 0, NULL, 0);
      ask_done(s, pp);
    }
  } else if (f->arg == RILL_F_REPLY && a && a->provider == c && a->replying) {
    if (!ask_too_big(lp, pp, f->len)) {
      send_to(lp, a->asker, RILL_F_CHUNK, f->flags, 0, a->cid, RILL_F_REPLY, f->body, f->len);
      rill__srv_reply_hold(lp, c, a);
      if (last) {
        rill_hist_record(&lp->ask, rill_time_ns() - a->t0);
        ask_done(s, pp);
      }
    }
  }
  pthread_mutex_unlock(&s->asks_mu);
}

void rill__srv_on_reply(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  asks_lock(lp);
  struct ask **pp = ask_slot(s, f->id);
  if (*pp && (*pp)->provider == c && !(*pp)->replying) {
    struct ask *a = *pp;
    send_to(lp, a->asker, RILL_F_REPLY, f->flags & RILL_FF_STREAM, 0, a->cid, 0, f->body, f->len);
    rill__srv_reply_hold(lp, c, a);
    if (f->flags & RILL_FF_STREAM) { /* ends with its last CHUNK */
      a->replying = true;
      a->bytes = f->len;
    } else {
      rill_hist_record(&lp->ask, rill_time_ns() - a->t0);
      ask_done(s, pp);
    }
  } /* else cancelled or timed out meanwhile: the answer has no one to go to */
  asks_unlock(lp);
}

/* An ERROR from a client: a provider failing an ask (id = the ask's) has
 * it passed to the asker, code and message; any other is ignored. */
void rill__srv_on_client_error(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  pthread_mutex_lock(&s->asks_mu);
  struct ask **pp = ask_slot(s, f->id);
  if (*pp && (*pp)->provider == c) {
    INC(lp, errors_sent, 1);
    send_to(lp, (*pp)->asker, RILL_F_ERROR, 0, 0, (*pp)->cid, f->arg, f->body, f->len);
    ask_done(s, pp);
  }
  pthread_mutex_unlock(&s->asks_mu);
}

void rill__srv_on_cancel(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  pthread_mutex_lock(&s->asks_mu);
  struct ask *a = *ask_cid_bucket(s, c, f->id);
  while (a && !(a->asker == c && a->cid == f->id))
    a = a->next_cid;
  if (a) {
    send_to(lp, a->provider, RILL_F_CANCEL, 0, 0, a->sid, 0, NULL, 0);
    rill__srv_send_error(lp, c, 0, f->id, RILL_ECANCELED, "ASK cancelled");
    ask_done(s, ask_slot(s, a->sid));
  }
  pthread_mutex_unlock(&s->asks_mu);
}

/* Asks of a connection that goes end here, oldest first, found through
 * its own lists (no scan of the table, however many asks others have in
 * flight): the asker is told (unless it is the one going), the provider
 * cancelled. */
void rill__srv_asks_end(struct loop *lp, struct conn *gone) {
  rill_server_t *s = lp->s;
  pthread_mutex_lock(&s->asks_mu);
  for (struct ask *a; (a = gone->asks_made.head);) {
    if (a->provider != gone)
      send_to(lp, a->provider, RILL_F_CANCEL, 0, 0, a->sid, 0, NULL, 0);
    ask_done(s, ask_slot(s, a->sid));
  }
  for (struct ask *a; (a = gone->asks_served.head);) {
    rill__srv_error_to(lp, a->asker, 0, a->cid, RILL_ECONNRESET, "ASK: the provider went away");
    ask_done(s, ask_slot(s, a->sid));
  }
  pthread_mutex_unlock(&s->asks_mu);
}

/* A provider held by its asker for HOLD_MAX_NS (the sweep): the ask whose
 * reply held it ends, the asker told (naming tx_limit), the provider
 * cancelled, and the provider is read again. */
void rill__srv_hold_expire(struct loop *lp, struct conn *p) {
  rill_server_t *s = lp->s;
  pthread_mutex_lock(&s->asks_mu);
  struct ask **pp = ask_slot(s, p->held_sid);
  if (*pp && (*pp)->provider == p) {
    struct ask *a = *pp;
    rill__srv_error_to(
        lp, a->asker, 0, a->cid, RILL_ENOBUFS,
        "ASK: the reply waited 10 s for the asker to read its send queue down from over "
        "half its tx_limit; the ask ended");
    send_to(lp, p, RILL_F_CANCEL, 0, 0, a->sid, 0, NULL, 0);
    ask_done(s, pp);
  }
  pthread_mutex_unlock(&s->asks_mu);
  rill__srv_hold_release(p);
}

/* Asks past their deadline end here (loop 0's sweep): the asker is told,
 * the provider cancelled. Only the asks that expire are looked at, the
 * earliest deadline first, so the sweep costs nothing while none is due,
 * however many asks are in flight. */
void rill__srv_asks_expire(struct loop *lp, uint64_t now) {
  rill_server_t *s = lp->s;
  pthread_mutex_lock(&s->asks_mu);
  while (s->nheap && now > s->asks_heap[0]->deadline) {
    struct ask *a = s->asks_heap[0];
    rill__srv_error_to(lp, a->asker, 0, a->cid, RILL_ETIMEDOUT, "ASK: past its deadline");
    send_to(lp, a->provider, RILL_F_CANCEL, 0, 0, a->sid, 0, NULL, 0);
    ask_done(s, ask_slot(s, a->sid));
  }
  pthread_mutex_unlock(&s->asks_mu);
}
