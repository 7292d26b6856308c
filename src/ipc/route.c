/*
 * The route: one sender, up to 64 receivers, every receiver getting every
 * message, inline in the slots of a ring in a named shared-memory segment
 * (docs/FORMATS.md, "IPC route segment").
 *
 * Publication is the slot's mark: the sender writes payload and length,
 * stores mark = seq + 1 with release, then head = seq + 1 with release
 * (send_batch: each slot's mark, then head once for the run). A receiver
 * trusts a slot only when its acquire load of the mark gives the seq it
 * expects. So a sender killed anywhere leaves each slot either published
 * or not; head can lag published slots behind (one, or a batch's run:
 * killed between the marks and head), and a sender taking over moves
 * head past them first.
 *
 * Room: a receiver's cursor is the oldest message it has not finished
 * with (the view it holds, or the next one); the sender may write seq only
 * when every live receiver's cursor is above seq - slots. It keeps the
 * lowest cursor it last saw and scans the table again only when that is
 * not enough, so a send in steady state reads no receiver's line.
 *
 * A receiver joining sets its cursor to head, marks its place taken, then
 * a seq_cst fence and reads head again: the sender scans after a seq_cst
 * fence too (after storing head), so either the scan sees the new place,
 * or the joiner's second read sees every head the scan was made under,
 * and the sender only overwrites what is below that.
 *
 * Large messages go into the chunk pool (pool.c): the slot holds the chunk's
 * index, the chunk is filled before the mark's release store, and the
 * sender reuses a chunk under the same rule as a slot, with a tighter
 * bound: every live cursor past the message the chunk last held.
 *
 * Parking, both ways: the waiter reads the futex word, counts itself in
 * the waiter count (seq_cst), fences, checks its condition again and only
 * then sleeps; the other side stores what it publishes, fences, and makes
 * the wake syscall only when the count is non-zero. One side's fence or
 * the other's is first, so either the waiter sees the change or the waker
 * sees the waiter: no lost wakeup, and no syscall when nobody sleeps.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "ipc/segment.h"
#include "rill/ipc.h"

#define KIND          "route"
#define PARK_SLICE    10000000ull /* a blocked sender re-checks for dead receivers this often */
#define REAP_EVERY_MS 1           /* a sender checks liveness at most this often */

/* n bytes from src to dst: up to 64 (the common small message) with two
 * fixed-size copies that overlap, inline, rather than a call. */
static inline __attribute__((always_inline)) void copy_small(void *dst, const void *src,
                                                             uint32_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  if (n >= 16 && n <= 32) {
    memcpy(d, s, 16);
    memcpy(d + n - 16, s + n - 16, 16);
  } else if (n > 32 && n <= 64) {
    memcpy(d, s, 32);
    memcpy(d + n - 32, s + n - 32, 32);
  } else if (n) {
    memcpy(d, s, n);
  }
}

/* Payload bytes in a slot's first cache line (slots are 64-byte aligned). */
#define FIRST_LINE (64u - RILL_IPC_SLOT_HDR)

/* A message's bytes into slot sl, those past its first cache line first.
 * A waiting receiver polls that line (the mark's): written first, it was
 * taken back by the receiver's poll while the stores to the next line
 * waited for theirs, and the length and mark stores then waited for the
 * line again, one more trip between the cores a message. Now every store
 * to the first line comes last, together, with the mark's. */
static inline __attribute__((always_inline)) void copy_in(struct rill__ipc_slot *sl,
                                                          const void *src, uint32_t n) {
  uint8_t *d = (uint8_t *)(sl + 1);
  const uint8_t *s = src;
  if (n <= FIRST_LINE) {
    copy_small(d, s, n);
    return;
  }
  copy_small(d + FIRST_LINE, s + FIRST_LINE, n - FIRST_LINE);
  /* The order of the two copies is the point: the compiler keeps it. */
  __asm__ volatile("" ::: "memory");
  memcpy(d, s, FIRST_LINE);
}

/* A mapped segment and the geometry it was checked with. */
struct seg {
  uint8_t *base;
  size_t size;
  struct rill__ipc_hdr *hdr;
  struct rill__ipc_place *places;
  uint8_t *ring;
  struct rill__ipc_geom g;
  uint64_t mask;
  char name[RILL_IPC_MAX_NAME + 1];
};

/* A sender's or a receiver's handle: the role picks the fields it uses.
 * In a receiver's, rx_seen stays 0 and reserved false: the sender's hot
 * paths test them already, so a receiver's handle falls to their slow
 * paths, which check the role, and a send costs no test of its own. A
 * sender's handle holds no view (held 0): release checks the role
 * where it refuses that; recv alone pays for a test. */
struct rill_ipc_route {
  struct seg s;
  rill_ipc_role_t role;
  uint64_t mine; /* our state word (a sender's in place 0) */

  /* The sender's. */
  uint64_t seq;       /* the next message's seq (head, as only we write it) */
  uint64_t min_seen;  /* the lowest live cursor at the last scan */
  uint32_t rx_seen;   /* ready receivers at the last scan */
  uint32_t gone_seen; /* the header's gone word at the last scan */
  uint64_t reaped_ms; /* when we last checked the laggards' liveness */
  /* Pooled messages sent in each class (the header's, as only we write it). */
  uint64_t pool_next[RILL_IPC_MAX_CLASSES];
  /* The room the last reserve took for message seq, until its commit. */
  bool reserved;
  uint32_t res_len;   /* the bytes reserved */
  uint32_t res_class; /* the chunk's class, NO_CLASS: the slot */
  uint32_t res_idx;   /* the chunk's index in its class */
  uint8_t *res_buf;   /* where the message goes */

  /* A receiver's. */
  struct rill__ipc_place *me;
  uint64_t cur;     /* the next message to return */
  uint64_t checked; /* our cursor when we last looked for a parked sender */
  uint32_t held;    /* views of cur - held .. cur - 1 are out (recv_batch: more than one) */
};

#define NO_CLASS UINT32_MAX

static inline struct rill__ipc_slot *slot_at(const struct seg *s, uint64_t seq) {
  return (struct rill__ipc_slot *)(void *)(s->ring + (seq & s->mask) * s->g.slot_size);
}

static void seg_unmap(struct seg *s) {
  rill__ipc_shm_unmap(s->base, s->size);
  s->base = NULL;
}

static void seg_bind(struct seg *s) {
  s->hdr = (struct rill__ipc_hdr *)(void *)s->base;
  s->places = (struct rill__ipc_place *)(void *)(s->base + s->g.table_off);
  s->ring = s->base + s->g.ring_off;
  s->mask = (uint64_t)s->g.slots - 1;
}

/* Maps an existing segment and checks it (rill__ipc_seg_attach). */
static int seg_attach(struct seg *s) {
  int rc = rill__ipc_seg_attach(KIND, s->name, &s->g, &s->base, &s->size);
  if (rc == 0)
    seg_bind(s);
  return rc;
}

/* The waiter count a holder of place idx counts itself in while parked:
 * the sender's (place 0) or the receivers'. A reaper takes a holder that
 * died parked out of it (rill__ipc_reap_if_dead). */
static uint32_t *waiters_of(const struct seg *s, uint32_t idx) {
  return idx == 0 ? &s->hdr->send_waiters : &s->hdr->recv_waiters;
}

/* ---- opts ------------------------------------------------------------------ */

static int opts_geom(const char *name, const rill_ipc_route_opts_t *o, struct rill__ipc_geom *g,
                     mode_t *mode) {
  rill_ipc_route_opts_t d = {0};
  if (o)
    d = *o;
  g->slots = d.slots ? d.slots : 4096;
  g->slot_size = d.slot_size ? d.slot_size : 128;
  g->max_receivers = d.max_receivers ? d.max_receivers : RILL_IPC_MAX_RECEIVERS;
  g->spin_ns = d.spin_ns ? d.spin_ns : 50000;
  *mode = d.mode ? d.mode : 0600;
  if ((unsigned)d.policy > RILL_IPC_OVERWRITE)
    return rill__err(RILL_EINVAL, "ipc route %s: unknown policy %d", name, (int)d.policy);
  if ((unsigned)d.wait > RILL_IPC_SPIN)
    return rill__err(RILL_EINVAL, "ipc route %s: unknown wait mode %d", name, (int)d.wait);
  g->policy = (uint8_t)d.policy;
  g->wait = (uint8_t)d.wait;
  int rc = rill__ipc_ring_check(RILL_EINVAL, KIND, name, g->slots, g->slot_size);
  if (rc)
    return rc;
  if ((rc = rill__ipc_places_check(RILL_EINVAL, KIND, name, "receivers", g->max_receivers,
                                   RILL_IPC_MAX_RECEIVERS)))
    return rc;
  if (*mode & ~(mode_t)0777)
    return rill__err(RILL_EINVAL, "ipc route %s: mode %o has bits beyond 0777", name,
                     (unsigned)*mode);
  uint32_t inline_max = g->slot_size - RILL_IPC_SLOT_HDR;
  g->nclasses = 0;
  if (d.pool[0].size || d.pool[0].chunks) {
    if (d.pool_chunks)
      return rill__err(RILL_EINVAL, "ipc route %s: pool_chunks with pool classes (give either)",
                       name);
    rc = rill__ipc_classes_opts(KIND, name, d.pool, inline_max, g->cls, &g->nclasses);
    if (rc)
      return rc;
    if (d.max_message && d.max_message != g->cls[g->nclasses - 1].size)
      return rill__err(RILL_EINVAL,
                       "ipc route %s: max_message %u, but the largest pool class is %u", name,
                       d.max_message, g->cls[g->nclasses - 1].size);
  } else if (d.max_message) {
    if (d.max_message <= inline_max || d.max_message > RILL__IPC_MAX_MESSAGE)
      return rill__err(
          RILL_EINVAL,
          "ipc route %s: max_message %u, not over the slot payload %u and at most 1 GiB", name,
          d.max_message, inline_max);
    g->nclasses = 1;
    g->cls[0].size = d.max_message;
    g->cls[0].chunks = d.pool_chunks ? d.pool_chunks : 64;
    if (g->cls[0].chunks > RILL__IPC_MAX_CHUNKS)
      return rill__err(RILL_EINVAL, "ipc route %s: %u pool chunks, not in 1..2^20", name,
                       g->cls[0].chunks);
  } else if (d.pool_chunks) {
    return rill__err(RILL_EINVAL, "ipc route %s: %u pool chunks but no max_message", name,
                     d.pool_chunks);
  }
  rill__ipc_layout(g);
  return 0;
}

/* An existing route against the opts a sender gave: the fields it set, and
 * the policy, must agree. */
static int opts_agree(const struct seg *s, const rill_ipc_route_opts_t *o) {
  if (!o)
    return 0;
  const struct rill__ipc_geom *g = &s->g;
  /* One class given as max_message and pool_chunks is compared field by
   * field below. */
  int rc = rill__ipc_classes_agree(KIND, s->name, o->pool, g->cls, g->nclasses);
  if (rc)
    return rc;
  uint32_t chunks0 = g->nclasses ? g->cls[0].chunks : 0;
  if ((o->slots && o->slots != g->slots) || (o->slot_size && o->slot_size != g->slot_size) ||
      (o->max_receivers && o->max_receivers != g->max_receivers) ||
      (unsigned)o->policy != g->policy || (o->max_message && o->max_message != g->max_message) ||
      (o->pool_chunks && (g->nclasses != 1 || o->pool_chunks != chunks0)))
    return rill__err(RILL_EINVAL,
                     "ipc route %s: exists with %u slots of %u bytes, %u receivers, policy %u, "
                     "max message %u, %u pool chunks in %u classes; asked for %u, %u, %u, %u, %u, "
                     "%u",
                     s->name, g->slots, g->slot_size, g->max_receivers, (unsigned)g->policy,
                     g->max_message, g->pool_chunks, g->nclasses, o->slots, o->slot_size,
                     o->max_receivers, (unsigned)o->policy, o->max_message, o->pool_chunks);
  return 0;
}

/* ---- sender ------------------------------------------------------------------ */

static uint64_t scan(rill_ipc_route_t *s, uint64_t seq);
static bool reap_laggards(rill_ipc_route_t *s, uint64_t seq, uint64_t limit);
static int closed_err(const struct seg *s);

/* Opens the route as its sender, creating it as want (opts checked) when
 * there is none. */
static int open_sender(rill_ipc_route_t **out, const char *name, const rill_ipc_route_opts_t *opts,
                       const struct rill__ipc_geom *want, mode_t mode) {
  rill_ipc_route_t *x = rill__calloc(1, sizeof *x);
  if (!x)
    return rill__err(RILL_ENOMEM, "ipc route %s: no memory for the sender", name);
  snprintf(x->s.name, sizeof x->s.name, "%s", name);
  x->role = RILL_IPC_SENDER;
  int rc = rill__ipc_seg_open(KIND, name, want, mode, &x->s.g, &x->s.base, &x->s.size);
  if (rc == 0)
    seg_bind(&x->s);
  if (rc)
    goto free_sender;
  rc = opts_agree(&x->s, opts);
  if (rc)
    goto unmap;
  struct rill__ipc_place *p = &x->s.places[0];
  if (!rill__ipc_claim_place(&x->s.places[0], waiters_of(&x->s, 0), &x->mine)) {
    uint64_t st = __atomic_load_n(&p->state, __ATOMIC_RELAXED);
    rc =
        rill__err(RILL_EBUSY, "ipc route %s: process %u is its sender", name, RILL__IPC_ST_PID(st));
    goto unmap;
  }
  __atomic_store_n(&p->start, rill__ipc_self_start(), __ATOMIC_RELAXED); /* published by the take */
  __atomic_store_n(&p->cursor, 0, __ATOMIC_RELAXED);
  x->mine = rill__ipc_take_place(p, x->mine);
  /* A dead sender may have stored slots' marks and not head: one slot's
   * (send), or up to a ring of them (send_batch stores head once a run).
   * They are published (receivers go by the mark), so go on after the
   * last. Acquire: pairs with the release stores of head and of the marks
   * by the previous sender. */
  const uint64_t head0 = __atomic_load_n(&x->s.hdr->head, __ATOMIC_ACQUIRE);
  uint64_t head = head0;
  while (head - head0 < x->s.g.slots &&
         __atomic_load_n(&slot_at(&x->s, head)->mark, __ATOMIC_ACQUIRE) == head + 1)
    head++;
  if (head != head0)
    /* Release: as in send. */
    __atomic_store_n(&x->s.hdr->head, head, __ATOMIC_RELEASE);
  x->seq = head;
  /* Relaxed: written by the previous sender before its head, which we
   * acquired; a stale value only makes us wait for a chunk (pool.c). */
  for (uint32_t c = 0; c < x->s.g.nclasses; c++)
    x->pool_next[c] = __atomic_load_n(&x->s.hdr->pool_next[c], __ATOMIC_RELAXED);
  x->min_seen = head - x->s.g.slots; /* forces a scan at the first send */
  x->rx_seen = 0;                    /* and a count of the receivers with it */
  *out = x;
  return 0;
unmap:
  seg_unmap(&x->s);
free_sender:
  rill__free(x);
  return rc;
}

/* Opens route name as a receiver: it must exist (a route is made by its
 * sender); opts, when given, must agree with it. */
static int open_receiver(rill_ipc_route_t **out, const char *name,
                         const rill_ipc_route_opts_t *opts);

int rill_ipc_route_open(rill_ipc_route_t **out, const char *name, const rill_ipc_route_opts_t *opts,
                        rill_ipc_role_t role) {
  if (!out)
    return rill__err(RILL_EINVAL, "ipc route: out is NULL");
  *out = NULL;
  int rc = rill__ipc_name_check(KIND, name);
  if (rc)
    return rc;
  if (role != RILL_IPC_SENDER && role != RILL_IPC_RECEIVER)
    return rill__err(RILL_EINVAL, "ipc route %s: unknown role %d", name, (int)role);
  /* Checked in either role, as a channel's: a receiver's are compared with
   * the route's once attached. */
  struct rill__ipc_geom g;
  mode_t mode;
  rc = opts_geom(name, opts, &g, &mode);
  if (rc)
    return rc;
  return role == RILL_IPC_SENDER ? open_sender(out, name, opts, &g, mode)
                                 : open_receiver(out, name, opts);
}

/* A sender's call on a receiver's handle, or the reverse: RILL_EINVAL. */
static int wrong_role(const rill_ipc_route_t *rt, const char *what) {
  return rill__err(RILL_EINVAL, "ipc route %s: %s on a %s", rt->s.name, what,
                   rt->role == RILL_IPC_SENDER ? "sender" : "receiver");
}

int rill_ipc_route_wait_receivers(rill_ipc_route_t *s, uint32_t n, uint64_t timeout_ns) {
  if (RILL_UNLIKELY(!s))
    return rill__err(RILL_EINVAL, "ipc route wait_receivers: the route is NULL");
  if (RILL_UNLIKELY(s->role != RILL_IPC_SENDER))
    return wrong_role(s, "wait_receivers");
  if (n < 1 || n > s->s.g.max_receivers)
    return rill__err(RILL_EINVAL, "ipc route %s: waiting for %u receivers, not in 1..%u", s->s.name,
                     n, s->s.g.max_receivers);
  uint64_t deadline = rill__deadline(rill_time_mono_ns(), timeout_ns);
  for (;;) {
    /* Acquire: as in reserve. */
    uint32_t gone = __atomic_load_n(&s->s.hdr->gone, __ATOMIC_ACQUIRE);
    if (gone & RILL__IPC_REMOVED)
      return closed_err(&s->s);
    s->gone_seen = gone;
    /* A limit of 0 holds nobody back: every receiver that is not free is
     * looked at, and the dead are reaped, so that they are not counted. */
    reap_laggards(s, s->seq, 0);
    scan(s, s->seq);
    if (s->rx_seen >= n)
      return 0;
    int rc = rill__ipc_wait_step(KIND, s->s.name, deadline, timeout_ns, s->rx_seen, n);
    if (rc)
      return rc;
  }
}

uint32_t rill_ipc_route_max_payload(const rill_ipc_route_t *s) {
  return s ? s->s.g.slot_size - RILL_IPC_SLOT_HDR : 0;
}

uint32_t rill_ipc_route_max_message(const rill_ipc_route_t *s) {
  if (!s)
    return 0;
  return s->s.g.max_message ? s->s.g.max_message : s->s.g.slot_size - RILL_IPC_SLOT_HDR;
}

static void close_receiver(rill_ipc_route_t *r);

void rill_ipc_route_close(rill_ipc_route_t *s) {
  if (!s)
    return;
  if (s->role == RILL_IPC_RECEIVER) {
    close_receiver(s);
    return;
  }
  /* A reservation holds nothing shared: it goes with the handle. */
  rill__ipc_leave_place(&s->s.places[0], s->mine);
  seg_unmap(&s->s);
  rill__free(s);
}

/* The lowest cursor of the receivers that hold a place (seq when none). */
static uint64_t scan(rill_ipc_route_t *s, uint64_t seq) {
  /* seq_cst: pairs with the fence a joining receiver makes after taking its
   * place (file comment): we see it, or it sees our head. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  uint64_t min = seq;
  uint32_t ready = 0;
  for (uint32_t i = 1; i <= s->s.g.max_receivers; i++) {
    struct rill__ipc_place *p = &s->s.places[i];
    /* Acquire: pairs with the receiver's release store of TAKEN, so its
     * first cursor is visible. */
    uint64_t st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) != RILL__IPC_TAKEN)
      continue;
    /* Acquire: pairs with the receiver's release store of ready, made once
     * its cursor is final: every message we publish from now on is at or
     * past it. */
    ready += __atomic_load_n(&p->ready, __ATOMIC_ACQUIRE) == 1;
    /* Acquire: pairs with the receiver's release store of its cursor; its
     * reads of the slots below happen before we overwrite them. */
    uint64_t c = __atomic_load_n(&p->cursor, __ATOMIC_ACQUIRE);
    if (c > seq)
      c = seq; /* a cursor from the future: a corrupt one cannot widen our room */
    if (c < min)
      min = c;
  }
  s->min_seen = min;
  s->rx_seen = ready;
  return min;
}

/* Whether the route was removed (rill_ipc_route_unlink): its participants stop
 * with RILL_ECLOSED. Acquire: pairs with the remover's release. */
static inline bool removed(const struct seg *s) {
  return __atomic_load_n(&s->hdr->gone, __ATOMIC_ACQUIRE) & RILL__IPC_REMOVED;
}

static int closed_err(const struct seg *s) {
  return rill__err(RILL_ECLOSED, "ipc route %s: removed (rill ipc rm) while in use", s->name);
}

/* Counts the ready receivers again, when the last count was none or a
 * receiver left since (the gone word moved): RILL_ECLOSED when the route
 * was removed, RILL_EPIPE when nobody would receive the next message. */
static int recount(rill_ipc_route_t *s, uint32_t gone) {
  /* A receiver's handle comes here at each send or reserve (rx_seen 0). */
  if (RILL_UNLIKELY(s->role != RILL_IPC_SENDER))
    return wrong_role(s, "send or reserve");
  if (gone & RILL__IPC_REMOVED)
    return closed_err(&s->s);
  s->gone_seen = gone;
  scan(s, s->seq);
  if (!s->rx_seen)
    return rill__err(RILL_EPIPE, "ipc route %s: no receiver attached; the message was not sent",
                     s->s.name);
  return 0;
}

/* Reaps the receivers that hold back seq (cursor + limit <= seq) and are
 * dead; true when one was. */
static bool reap_laggards(rill_ipc_route_t *s, uint64_t seq, uint64_t limit) {
  bool any = false;
  for (uint32_t i = 1; i <= s->s.g.max_receivers; i++) {
    struct rill__ipc_place *p = &s->s.places[i];
    uint64_t st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_FREE)
      continue;
    uint64_t c = __atomic_load_n(&p->cursor, __ATOMIC_RELAXED);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_TAKEN && seq - c < limit)
      continue;
    if (rill__ipc_reap_if_dead(p, st, waiters_of(&s->s, i)))
      any = true;
  }
  return any;
}

/* Waits until every live cursor is within limit of seq (limit: the slots,
 * or less when the chunk a pooled message takes is still held). */
static int wait_room(rill_ipc_route_t *s, uint64_t seq, uint64_t slots, uint64_t timeout_ns) {
  struct rill__ipc_hdr *h = s->s.hdr;
  uint64_t now = 0, deadline = 0, spin_until = 0;
  bool timed = false;
  for (;;) {
    if (seq - scan(s, seq) < slots)
      return 0;
    if (RILL_UNLIKELY(removed(&s->s)))
      return closed_err(&s->s);
    if (s->s.g.policy == RILL_IPC_FAIL) {
      uint64_t ms = rill_time_coarse_ms();
      if (ms - s->reaped_ms >= REAP_EVERY_MS) {
        s->reaped_ms = ms;
        if (reap_laggards(s, seq, slots) && seq - scan(s, seq) < slots)
          return 0;
      }
      return rill__err(RILL_EFULL, "ipc route %s: a receiver is %llu messages behind%s", s->s.name,
                       (unsigned long long)slots,
                       slots < s->s.g.slots ? " (it holds the pool chunk this message needs)" : "");
    }
    now = rill_time_mono_ns();
    if (!timed) {
      timed = true;
      deadline = rill__deadline(now, timeout_ns);
      spin_until = s->s.g.wait == RILL_IPC_SPIN ? rill__deadline(now, s->s.g.spin_ns) : now;
      if (spin_until > deadline)
        spin_until = deadline;
    }
    if (now < spin_until) {
      rill__cpu_relax();
      continue;
    }
    uint64_t ms = rill_time_coarse_ms();
    if (ms - s->reaped_ms >= REAP_EVERY_MS) {
      /* Not at every wakeup: /proc is read for each laggard. */
      s->reaped_ms = ms;
      if (reap_laggards(s, seq, slots))
        continue;
    }
    if (now >= deadline)
      return rill__err(RILL_ETIMEDOUT, "ipc route %s: a receiver is %llu messages behind%s",
                       s->s.name, (unsigned long long)slots,
                       slots < s->s.g.slots ? " (it holds the pool chunk this message needs)" : "");
    /* Acquire: pairs with a receiver's release bump of the word. */
    uint32_t w = __atomic_load_n(&h->send_futex, __ATOMIC_ACQUIRE);
    /* seq_cst, then the fence in scan(): pairs with the fence a receiver
     * makes after moving its cursor (file comment). */
    __atomic_fetch_add(&h->send_waiters, 1, __ATOMIC_SEQ_CST);
    /* Relaxed: read only by a reaper after we are dead. Set after the
     * count and cleared before it, so dying between leaks a count of one
     * (a wake syscall for nobody), never takes one from a live waiter. */
    __atomic_store_n(&s->s.places[0].parked, 1, __ATOMIC_RELAXED);
    /* Relaxed, both: ordered before our scan by its fence; read by a
     * receiver after its fence (advance). Only a receiver whose cursor
     * crosses need wakes us: the others moving on would not give us room. */
    __atomic_store_n(&h->send_need, seq - slots + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->send_want, 1, __ATOMIC_RELAXED);
    if (seq - scan(s, seq) >= slots) {
      uint64_t left = deadline - now;
      rill__futex_wait_shared(&h->send_futex, w, left < PARK_SLICE ? left : PARK_SLICE);
    }
    __atomic_store_n(&s->s.places[0].parked, 0, __ATOMIC_RELAXED);
    /* Relaxed: only a hint for wakers. */
    __atomic_fetch_sub(&h->send_waiters, 1, __ATOMIC_RELAXED);
  }
}

/* A pooled message of len bytes, to be published as seq: the smallest
 * class that holds it, or a larger one whose next chunk is free already
 * when that class's is not. Sets *c, *idx, *old and *limit (the room the
 * send needs, pool_pick). */
static void pick_chunk(rill_ipc_route_t *s, uint32_t len, uint64_t seq, uint32_t *c, uint32_t *idx,
                       uint64_t *limit, uint64_t *old) {
  const struct rill__ipc_geom *g = &s->s.g;
  *c = rill__ipc_class_for(g, len);
  *idx = rill__ipc_pool_pick(s->s.base, g, *c, s->pool_next[*c], seq, limit, old);
  if (g->policy == RILL_IPC_OVERWRITE || seq - s->min_seen < *limit || *c + 1 == g->nclasses)
    return;
  /* The class is busy by what we last saw: look at the cursors now, and
   * only then spend a larger chunk. */
  if (seq - scan(s, seq) < *limit)
    return;
  for (uint32_t d = *c + 1; d < g->nclasses; d++) {
    uint64_t l2 = g->slots, o2 = 0;
    uint32_t i2 = rill__ipc_pool_pick(s->s.base, g, d, s->pool_next[d], seq, &l2, &o2);
    if (seq - s->min_seen < l2) {
      *c = d, *idx = i2, *limit = l2, *old = o2;
      return;
    }
  }
}

/* Takes the room for the next message, len bytes: its slot, and a chunk
 * when it does not fit the slot, waiting under the policy. */
static int reserve(rill_ipc_route_t *s, uint32_t len, uint64_t timeout_ns) {
  const struct rill__ipc_geom *g = &s->s.g;
  const bool pooled = len > g->slot_size - RILL_IPC_SLOT_HDR;
  /* As a channel's: one reservation at a time, ended by commit or cancel,
   * so that a forgotten one is an error rather than a silent drop. */
  if (RILL_UNLIKELY(s->reserved))
    return rill__err(RILL_EBUSY,
                     "ipc route %s: a message of %u bytes is reserved: commit or cancel it first",
                     s->s.name, s->res_len);
  if (RILL_UNLIKELY(pooled && len > g->max_message)) {
    if (s->role != RILL_IPC_SENDER)
      return wrong_role(s, "send or reserve");
    if (!g->max_message)
      return rill__err(RILL_EMSGSIZE,
                       "ipc route %s: a message of %u bytes, over the %u a slot holds (the route "
                       "has no pool: max_message is 0)",
                       s->s.name, len, g->slot_size - RILL_IPC_SLOT_HDR);
    return rill__err(RILL_EMSGSIZE, "ipc route %s: a message of %u bytes, over its max_message %u",
                     s->s.name, len, g->max_message);
  }
  /* Acquire: pairs with a leaving receiver's release of the word (after
   * freeing its place), so the scan recount makes sees the place free. */
  uint32_t gone = __atomic_load_n(&s->s.hdr->gone, __ATOMIC_ACQUIRE);
  if (RILL_UNLIKELY(gone != s->gone_seen || !s->rx_seen)) {
    int rc = recount(s, gone);
    if (rc)
      return rc;
  }
  uint64_t seq = s->seq, limit = g->slots, old = 0;
  uint32_t c = NO_CLASS, idx = 0;
  if (pooled)
    pick_chunk(s, len, seq, &c, &idx, &limit, &old);
  if (g->policy != RILL_IPC_OVERWRITE && seq - s->min_seen >= limit) {
    int rc = wait_room(s, seq, limit, timeout_ns);
    if (rc)
      return rc;
    /* The wait may have reaped the last receiver (a dead one). */
    if (RILL_UNLIKELY(!s->rx_seen))
      return rill__err(RILL_EPIPE,
                       "ipc route %s: no receiver attached (the last one died); the message was "
                       "not sent",
                       s->s.name);
  }
  struct rill__ipc_slot *sl = slot_at(&s->s, seq);
  if (g->policy == RILL_IPC_OVERWRITE) {
    /* A receiver may be reading the message this slot holds: unmark it
     * first, and the release fence orders that before the payload stores,
     * so a reader that checks the mark again after its copy (acquire fence,
     * then the mark) sees the change. The same for the message the chunk
     * held, if its slot still holds it (only we write marks). */
    __atomic_store_n(&sl->mark, 0, __ATOMIC_RELAXED);
    if (old && __atomic_load_n(&slot_at(&s->s, old - 1)->mark, __ATOMIC_RELAXED) == old)
      __atomic_store_n(&slot_at(&s->s, old - 1)->mark, 0, __ATOMIC_RELAXED);
    RILL__IPC_FENCE(__ATOMIC_RELEASE);
  }
  s->res_len = len;
  s->res_class = c;
  s->res_idx = idx;
  s->res_buf =
      pooled ? (uint8_t *)(rill__ipc_chunk_at(s->s.base, g, c, idx) + 1) : (uint8_t *)(sl + 1);
  s->reserved = true;
  return 0;
}

static inline __attribute__((always_inline)) void publish_head(rill_ipc_route_t *s);

/* Publishes the reserved message as len bytes (at most the reserved). */
static inline __attribute__((always_inline)) void publish(rill_ipc_route_t *s, uint32_t len) {
  const struct rill__ipc_geom *g = &s->s.g;
  const uint64_t seq = s->seq;
  struct rill__ipc_slot *sl = slot_at(&s->s, seq);
  uint32_t flags = 0, c = s->res_class;
  s->reserved = false;
  if (c != NO_CLASS && len <= g->slot_size - RILL_IPC_SLOT_HDR) {
    memcpy(sl + 1, s->res_buf, len); /* committed short: the chunk stays free */
  } else if (c != NO_CLASS) {
    struct rill__ipc_chunk *ck = rill__ipc_chunk_at(s->s.base, g, c, s->res_idx);
    /* Relaxed: published with the slot by the mark's release below. */
    __atomic_store_n(&ck->owner, seq + 1, __ATOMIC_RELAXED);
    uint32_t desc[2] = {s->res_idx, c};
    memcpy(sl + 1, desc, sizeof desc);
    flags = RILL__IPC_SLOT_POOL;
  }
  __atomic_store_n(&sl->len, len, __ATOMIC_RELAXED);
  /* Relaxed: published by the mark's release below, as the length. */
  __atomic_store_n(&sl->flags, flags, __ATOMIC_RELAXED);
  /* Release: pairs with the receiver's acquire load of the mark; payload
   * and length are visible once it sees seq + 1. The publication point. */
  __atomic_store_n(&sl->mark, seq + 1, __ATOMIC_RELEASE);
  s->seq = seq + 1;
  if (flags) {
    s->pool_next[c]++;
    /* Relaxed: read only by a sender taking the route over (open). */
    __atomic_store_n(&s->s.hdr->pool_next[c], s->pool_next[c], __ATOMIC_RELAXED);
  }
  publish_head(s);
}

/* Ends a publish of one message or of a run of them (send_batch): head
 * once, the fence once, the wake check once. */
static inline __attribute__((always_inline)) void publish_head(rill_ipc_route_t *s) {
  /* Release: pairs with the acquire loads of head by receivers (joining,
   * or telling "not yet" from "lapped") and by a sender taking over. */
  __atomic_store_n(&s->s.hdr->head, s->seq, __ATOMIC_RELEASE);
  /* seq_cst: pairs with the fence a receiver makes after counting itself a
   * waiter: it sees the mark, or we see its count. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  /* One wake a park, not one a message: a receiver woken but not yet
   * running stays counted, and with more receivers than CPUs one nearly
   * always is, which made a futex syscall of every send. recv_want is
   * set by each receiver about to park and taken here; a receiver that
   * sets it after our exchange sees this message (store-buffer pattern
   * with the two seq_cst fences), so no wakeup is lost. */
  rill__ipc_wake(&s->s.hdr->recv_waiters, &s->s.hdr->recv_want, &s->s.hdr->recv_futex);
}

int rill_ipc_route_send(rill_ipc_route_t *s, const void *data, uint32_t len, uint64_t timeout_ns) {
  if (RILL_UNLIKELY(!s || (!data && len)))
    return rill__err(RILL_EINVAL, "ipc route send: %s is NULL", s ? "data" : "the route");
  const struct rill__ipc_geom *g = &s->s.g;
  /* The common case without reserve's bookkeeping: inline, and room by
   * what we last saw of the cursors. */
  /* Acquire on gone: as in reserve. */
  if (RILL_LIKELY(len <= g->slot_size - RILL_IPC_SLOT_HDR && g->policy != RILL_IPC_OVERWRITE &&
                  s->seq - s->min_seen < g->slots && s->rx_seen && !s->reserved &&
                  __atomic_load_n(&s->s.hdr->gone, __ATOMIC_ACQUIRE) == s->gone_seen)) {
    if (len)
      copy_in(slot_at(&s->s, s->seq), data, len);
    s->res_class = NO_CLASS;
    publish(s, len);
    return 0;
  }
  int rc = reserve(s, len, timeout_ns);
  if (RILL_UNLIKELY(rc))
    return rc;
  if (len)
    memcpy(s->res_buf, data, len); /* the one copy; data may be NULL when len is 0 */
  publish(s, len);
  return 0;
}

/* The inline messages of msgs[0..n) that fit the room we last saw, written
 * and marked one by one, published together by the caller's publish_head:
 * how many. Stops at the first message a slot does not hold, or without
 * data (the caller's slow path takes it). */
static uint32_t write_run(rill_ipc_route_t *s, const rill_iov_t *msgs, uint32_t n) {
  const struct rill__ipc_geom *g = &s->s.g;
  const uint32_t inline_max = g->slot_size - RILL_IPC_SLOT_HDR;
  /* The fast path's conditions, as send's: room by what we last saw. */
  if (RILL_UNLIKELY(g->policy == RILL_IPC_OVERWRITE || !s->rx_seen || s->reserved ||
                    __atomic_load_n(&s->s.hdr->gone, __ATOMIC_ACQUIRE) != s->gone_seen))
    return 0;
  uint64_t seq = s->seq;
  const uint64_t used = seq - s->min_seen;
  uint64_t room = used < g->slots ? g->slots - used : 0;
  uint32_t k = 0;
  for (; k < n && k < room; k++) {
    uint32_t len = msgs[k].len;
    if (RILL_UNLIKELY(len > inline_max || (len && !msgs[k].data)))
      break;
    struct rill__ipc_slot *sl = slot_at(&s->s, seq + k);
    copy_in(sl, msgs[k].data, len);
    __atomic_store_n(&sl->len, len, __ATOMIC_RELAXED);
    /* Relaxed: published by the mark's release below, as the length. */
    __atomic_store_n(&sl->flags, 0, __ATOMIC_RELAXED);
    /* Release: as publish's; each message is readable from its mark on,
     * before head moves (receivers go by the mark). */
    __atomic_store_n(&sl->mark, seq + k + 1, __ATOMIC_RELEASE);
  }
  s->seq = seq + k;
  return k;
}

int rill_ipc_route_send_batch(rill_ipc_route_t *s, const rill_iov_t *msgs, uint32_t n,
                              uint64_t timeout_ns, uint32_t *sent) {
  if (sent)
    *sent = 0;
  if (RILL_UNLIKELY(!s || (!msgs && n)))
    return rill__err(RILL_EINVAL, "ipc route send_batch: %s is NULL", s ? "msgs" : "the route");
  uint32_t i = 0;
  while (i < n) {
    uint32_t k = write_run(s, msgs + i, n - i);
    if (k) {
      publish_head(s);
      i += k;
      if (sent)
        *sent = i;
      continue;
    }
    /* One message the slow way: no room by what we saw (reserve scans the
     * cursors, waits or fails as send does), a pooled one, OVERWRITE, a
     * recount, or an error. Then runs again, with the room the scan saw. */
    const rill_iov_t *m = &msgs[i];
    if (RILL_UNLIKELY(!m->data && m->len))
      return rill__err(RILL_EINVAL, "ipc route %s: send_batch: message %u has no data", s->s.name,
                       i);
    int rc = reserve(s, m->len, timeout_ns);
    if (RILL_UNLIKELY(rc))
      return rc;
    if (m->len)
      memcpy(s->res_buf, m->data, m->len);
    publish(s, m->len);
    i++;
    if (sent)
      *sent = i;
  }
  return 0;
}

int rill_ipc_route_reserve(rill_ipc_route_t *s, uint32_t len, uint64_t timeout_ns, void **buf) {
  if (RILL_UNLIKELY(!s || !buf))
    return rill__err(RILL_EINVAL, "ipc route reserve: %s is NULL", s ? "buf" : "the route");
  *buf = NULL;
  int rc = reserve(s, len, timeout_ns);
  if (rc == 0)
    *buf = s->res_buf;
  return rc;
}

int rill_ipc_route_commit(rill_ipc_route_t *s, uint32_t len) {
  if (RILL_UNLIKELY(!s))
    return rill__err(RILL_EINVAL, "ipc route commit: the route is NULL");
  if (RILL_UNLIKELY(!s->reserved)) {
    if (s->role != RILL_IPC_SENDER)
      return wrong_role(s, "commit");
    return rill__err(RILL_EINVAL, "ipc route %s: commit without a reservation", s->s.name);
  }
  if (RILL_UNLIKELY(len > s->res_len))
    return rill__err(RILL_EINVAL, "ipc route %s: commit of %u bytes, %u were reserved", s->s.name,
                     len, s->res_len);
  publish(s, len);
  return 0;
}

int rill_ipc_route_cancel(rill_ipc_route_t *s) {
  if (RILL_UNLIKELY(!s))
    return rill__err(RILL_EINVAL, "ipc route cancel: the route is NULL");
  if (RILL_UNLIKELY(!s->reserved)) {
    if (s->role != RILL_IPC_SENDER)
      return wrong_role(s, "cancel");
    return rill__err(RILL_EINVAL, "ipc route %s: cancel without a reservation", s->s.name);
  }
  /* Nothing was published: the message number and its room are the next
   * reserve's or send's (under RILL_IPC_OVERWRITE the message the room
   * held stays gone). */
  s->reserved = false;
  return 0;
}

/* ---- receiver ---------------------------------------------------------------- */

static int open_receiver(rill_ipc_route_t **out, const char *name,
                         const rill_ipc_route_opts_t *opts) {
  rill_ipc_route_t *r = rill__calloc(1, sizeof *r);
  if (!r)
    return rill__err(RILL_ENOMEM, "ipc route %s: no memory for the receiver", name);
  snprintf(r->s.name, sizeof r->s.name, "%s", name);
  r->role = RILL_IPC_RECEIVER;
  int rc = seg_attach(&r->s);
  if (rc)
    goto free_receiver;
  rc = opts_agree(&r->s, opts);
  if (rc)
    goto unmap;
  for (uint32_t i = 1; i <= r->s.g.max_receivers && !r->me; i++)
    if (rill__ipc_claim_place(&r->s.places[i], waiters_of(&r->s, i), &r->mine))
      r->me = &r->s.places[i];
  if (!r->me) {
    rc = rill__err(RILL_EBUSY, "ipc route %s: its %u receiver places are held by live processes",
                   name, r->s.g.max_receivers);
    goto unmap;
  }
  struct rill__ipc_hdr *h = r->s.hdr;
  __atomic_store_n(&r->me->start, rill__ipc_self_start(),
                   __ATOMIC_RELAXED); /* published by the take */
  /* Acquire: pairs with the sender's release of head. */
  uint64_t head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
  __atomic_store_n(&r->me->cursor, head, __ATOMIC_RELAXED); /* published by the take */
  __atomic_store_n(&r->me->ready, 0, __ATOMIC_RELAXED);     /* a previous holder's */
  r->mine = rill__ipc_take_place(r->me, r->mine);
  /* seq_cst: pairs with the fence in the sender's scan (file comment): it
   * sees our place, or we now see every head it scanned under. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  uint64_t head2 = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
  if (head2 != head) {
    head = head2;
    /* Release: as every cursor store (rill_ipc_route_recv). */
    __atomic_store_n(&r->me->cursor, head, __ATOMIC_RELEASE);
  }
  r->cur = head;
  r->checked = head;
  /* Release: pairs with the sender's acquire in scan: a sender that sees
   * it publishes at or past our cursor from then on (rill_ipc_route_wait_receivers). */
  __atomic_store_n(&r->me->ready, 1, __ATOMIC_RELEASE);
  *out = r;
  return 0;
unmap:
  seg_unmap(&r->s);
free_receiver:
  rill__free(r);
  return rc;
}

/* Wakes a sender parked for room if our cursor crossed what it needs
 * since the last look (the cursor we stored before). */
static void wake_sender(rill_ipc_route_t *r) {
  struct rill__ipc_hdr *h = r->s.hdr;
  uint64_t was = r->checked;
  r->checked = r->cur;
  /* seq_cst: pairs with the fence the sender makes after counting itself a
   * waiter and storing its need: it sees every cursor we stored before
   * this fence, or we see its count and its need. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  if (RILL_LIKELY(!__atomic_load_n(&h->send_waiters, __ATOMIC_RELAXED)))
    return;
  /* Only a receiver that held the sender back wakes it, when it crosses
   * what the sender needs: a fast receiver's move gives no room. */
  uint64_t need = __atomic_load_n(&h->send_need, __ATOMIC_RELAXED);
  if ((int64_t)(was - need) >= 0 || (int64_t)(r->cur - need) < 0)
    return;
  /* One wake a park, as for receivers (rill_ipc_route_send). */
  if (__atomic_exchange_n(&h->send_want, 0, __ATOMIC_RELAXED))
    rill__futex_bump_shared(&h->send_futex);
}

/* Moves our shared cursor to r->cur, and wakes a sender we held back.
 * (Making the fence once every 32 messages, and whenever nothing is left
 * to read, was tried: 46.6-50.0 ns a 64-byte message against 48.5-52.7,
 * alternated 6 times on a quiet machine; too little for a wake that
 * comes up to 32 messages late.) */
static inline void advance(rill_ipc_route_t *r) {
  /* Release: pairs with the sender's acquire load of our cursor in its
   * scan; our reads of the slots below happen before it overwrites them. */
  __atomic_store_n(&r->me->cursor, r->cur, __ATOMIC_RELEASE);
  wake_sender(r);
}

/* One look at the next message: 0 with *m, RILL_EAGAIN (nothing yet),
 * RILL_ELAGGED (lapped: the cursor moved, *lost says how far). With more
 * (recv_batch's messages after its first), a slot not marked for us is
 * RILL_EAGAIN at once: the batch ends there, and the next call looks
 * into why. */
static inline __attribute__((always_inline)) int try_recv(rill_ipc_route_t *r, rill_ipc_msg_t *m,
                                                          uint64_t *lost, bool more) {
  const uint64_t c = r->cur, slots = r->s.g.slots;
  struct rill__ipc_slot *sl = slot_at(&r->s, c);
  /* Acquire: pairs with the sender's release store of the mark; the
   * payload and length are visible when it is ours. */
  uint64_t mark = __atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE);
  if (mark != c + 1) {
    if (more)
      return RILL_EAGAIN;
    /* Acquire: pairs with the sender's release of head, which follows its
     * mark store: a head past c means the mark was written, so look again. */
    uint64_t head = __atomic_load_n(&r->s.hdr->head, __ATOMIC_ACQUIRE);
    mark = __atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE);
    if (mark != c + 1) {
      if (head <= c && (mark == 0 || mark <= c + 1))
        return RILL_UNLIKELY(removed(&r->s)) ? closed_err(&r->s) : RILL_EAGAIN;
      /* The slot holds a later message, or is being overwritten: lapped.
       * Go on from the oldest message a slot may still hold. */
      uint64_t next = head > slots && head - slots > c + 1 ? head - slots : c + 1;
      if (lost)
        *lost = next - c;
      r->cur = next;
      advance(r);
      return rill__err(RILL_ELAGGED,
                       "ipc route %s: %llu messages overwritten before they were read", r->s.name,
                       (unsigned long long)(next - c));
    }
  }
  uint32_t len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
  /* Relaxed: ordered by the mark's acquire above, as the length. */
  uint32_t flags = __atomic_load_n(&sl->flags, __ATOMIC_RELAXED);
  const uint8_t *data = (const uint8_t *)(sl + 1);
  uint32_t desc[2] = {0, 0}; /* chunk index, class */
  uint64_t owner = 0;
  if (flags & RILL__IPC_SLOT_POOL) {
    memcpy(desc, sl + 1, sizeof desc);
    if (desc[1] < r->s.g.nclasses && desc[0] < r->s.g.cls[desc[1]].chunks) {
      struct rill__ipc_chunk *ck = rill__ipc_chunk_at(r->s.base, &r->s.g, desc[1], desc[0]);
      data = (const uint8_t *)(ck + 1);
      /* Relaxed: ordered by the mark's acquire above (the sender stored it
       * before the mark's release). */
      owner = __atomic_load_n(&ck->owner, __ATOMIC_RELAXED);
    }
  }
  if (r->s.g.policy == RILL_IPC_OVERWRITE) {
    /* Acquire: orders the length, descriptor and owner loads before the
     * mark's second load; a sender that began to overwrite the slot, or the
     * chunk, unmarked the slot first. */
    RILL__IPC_FENCE(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&sl->mark, __ATOMIC_RELAXED) != c + 1)
      return RILL_EAGAIN; /* the next look finds it lapped */
  }
  if (flags & RILL__IPC_SLOT_POOL) {
    int rc = rill__ipc_pool_check(KIND, r->s.name, r->s.g.cls, r->s.g.nclasses, c, desc[1], desc[0],
                                  len, owner);
    if (RILL_UNLIKELY(rc))
      return rc;
  } else if (RILL_UNLIKELY(len > r->s.g.slot_size - RILL_IPC_SLOT_HDR)) {
    return rill__err(RILL_ECORRUPT, "ipc route %s: message %llu says %u bytes, a slot holds %u",
                     r->s.name, (unsigned long long)c, len, r->s.g.slot_size - RILL_IPC_SLOT_HDR);
  }
  m->data = data;
  m->len = len;
  m->flags = 0;
  m->seq = c;
  r->cur = c + 1;
  r->held++;
  return 0;
}

/* Gives back the views held (of cur - held .. cur - 1), moving the cursor
 * once: how many of them, under OVERWRITE, were overwritten while held.
 * The sender overwrites in order, so those are the oldest ones: counted
 * from the oldest to the first intact. */
static uint32_t give_back(rill_ipc_route_t *r) {
  const uint32_t n = r->held;
  r->held = 0;
  uint32_t torn = 0;
  if (r->s.g.policy == RILL_IPC_OVERWRITE) {
    /* Acquire: the caller's reads of the views come before these loads; a
     * sender that began to overwrite a slot had unmarked it. */
    RILL__IPC_FENCE(__ATOMIC_ACQUIRE);
    for (uint64_t was = r->cur - n; torn < n; was++, torn++)
      if (__atomic_load_n(&slot_at(&r->s, was)->mark, __ATOMIC_RELAXED) == was + 1)
        break;
  }
  advance(r);
  return torn;
}

/* rill__ipc_recv_wait's look: one try. */
typedef struct recv_look {
  rill_ipc_route_t *r;
  rill_ipc_msg_t *m;
  uint64_t *lost;
} recv_look_t;

static int recv_look(void *arg) {
  recv_look_t *x = arg;
  return try_recv(x->r, x->m, x->lost, false);
}

int rill_ipc_route_recv(rill_ipc_route_t *r, rill_ipc_msg_t *m, uint64_t timeout_ns,
                        uint64_t *lost) {
  if (RILL_UNLIKELY(!r || !m || r->role != RILL_IPC_RECEIVER)) {
    if (r && r->role != RILL_IPC_RECEIVER)
      return wrong_role(r, "recv");
    return rill__err(RILL_EINVAL, "ipc route recv: %s is NULL", r ? "the message" : "the route");
  }
  m->flags = 0;
  if (lost)
    *lost = 0;
  if (r->held) {
    uint64_t was = r->cur - r->held;
    uint32_t torn = give_back(r);
    if (torn) {
      /* Counted as lost, with whatever was lapped after them: one report. */
      uint64_t more = 0;
      int rc = try_recv(r, m, &more, false);
      if (rc == 0) {
        r->cur--; /* not returned now: the next call returns it */
        r->held = 0;
      }
      if (lost)
        *lost = torn + (rc == RILL_ELAGGED ? more : 0);
      return rill__err(RILL_ELAGGED,
                       "ipc route %s: message %llu was overwritten while it was read%s", r->s.name,
                       (unsigned long long)was, rc == RILL_ELAGGED ? ", and more after it" : "");
    }
  }
  int rc = try_recv(r, m, lost, false);
  if (rc != RILL_EAGAIN || timeout_ns == 0)
    return rc;
  struct rill__ipc_hdr *h = r->s.hdr;
  uint64_t now = rill_time_mono_ns();
  const rill__ipc_recv_wait_t w = {.futex = &h->recv_futex,
                                   .waiters = &h->recv_waiters,
                                   .want = &h->recv_want,
                                   .parked = &r->me->parked,
                                   .spin = r->s.g.wait == RILL_IPC_SPIN,
                                   .spin_ns = r->s.g.spin_ns,
                                   .slice = UINT64_MAX};
  rc = rill__ipc_recv_wait(&w, now, rill__deadline(now, timeout_ns), recv_look,
                           &(recv_look_t){r, m, lost});
  if (rc == RILL_EAGAIN)
    return rill__err(RILL_ETIMEDOUT, "ipc route %s: no message in %llu ns", r->s.name,
                     (unsigned long long)timeout_ns);
  return rc;
}

int rill_ipc_route_recv_batch(rill_ipc_route_t *r, rill_ipc_msg_t *msgs, uint32_t max,
                              uint32_t *got, uint64_t timeout_ns, uint64_t *lost) {
  if (got)
    *got = 0;
  if (RILL_UNLIKELY(!got || !max)) {
    if (lost)
      *lost = 0;
    return rill__err(RILL_EINVAL, "ipc route recv_batch: %s", got ? "max is 0" : "got is NULL");
  }
  /* The first as recv takes it: the views held given back, the wait. */
  int rc = rill_ipc_route_recv(r, msgs, timeout_ns, lost);
  if (rc)
    return rc;
  /* Then whatever else is marked already, without waiting; the cursor
   * moves once for all, at the next call (or release). Inline messages in
   * a loop of their own; a pooled one, one with other flags or a length
   * over the slot (scribbled), and OVERWRITE's second look at the mark
   * go through try_recv. */
  uint32_t k = 1;
  if (r->s.g.policy != RILL_IPC_OVERWRITE) {
    const uint32_t inline_max = r->s.g.slot_size - RILL_IPC_SLOT_HDR;
    uint64_t c = r->cur;
    for (; k < max; k++, c++) {
      struct rill__ipc_slot *sl = slot_at(&r->s, c);
      /* Acquire: as try_recv's. */
      if (__atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE) != c + 1)
        break;
      /* Relaxed, both: ordered by the mark's acquire. */
      uint32_t len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
      if (RILL_UNLIKELY(__atomic_load_n(&sl->flags, __ATOMIC_RELAXED) || len > inline_max))
        break;
      msgs[k] = (rill_ipc_msg_t){.data = (const uint8_t *)(sl + 1), .len = len, .seq = c};
    }
    r->held += (uint32_t)(c - r->cur);
    r->cur = c;
  }
  while (k < max && try_recv(r, &msgs[k], NULL, true) == 0)
    k++;
  *got = k;
  return 0;
}

int rill_ipc_route_release(rill_ipc_route_t *r) {
  if (RILL_UNLIKELY(!r))
    return rill__err(RILL_EINVAL, "ipc route release: the route is NULL");
  if (RILL_UNLIKELY(!r->held)) {
    if (r->role != RILL_IPC_RECEIVER)
      return wrong_role(r, "release");
    return rill__err(RILL_EINVAL, "ipc route %s: release with no message held", r->s.name);
  }
  uint64_t was = r->cur - r->held;
  if (give_back(r))
    return rill__err(RILL_ELAGGED, "ipc route %s: message %llu was overwritten while it was read",
                     r->s.name, (unsigned long long)was);
  return 0;
}

static void close_receiver(rill_ipc_route_t *r) {
  struct rill__ipc_hdr *h = r->s.hdr;
  rill__ipc_leave_place(r->me, r->mine);
  rill__ipc_count_leave(&h->gone);
  /* seq_cst: as in advance(); a sender waiting for us stops. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  if (__atomic_load_n(&h->send_waiters, __ATOMIC_RELAXED))
    rill__futex_bump_shared(&h->send_futex);
  seg_unmap(&r->s);
  rill__free(r);
}

/* ---- the rest ------------------------------------------------------------------ */

int rill_ipc_route_unlink(const char *name) { return rill__ipc_shm_unlink(KIND, name); }

int rill_ipc_route_info(const char *name, rill_ipc_route_info_t *info) {
  if (!info)
    return rill__err(RILL_EINVAL, "ipc route info: info is NULL");
  return rill__ipc_info(KIND, name, info);
}

struct lister {
  rill_ipc_route_list_cb fn;
  void *ctx;
  rill_ipc_route_info_t info; /* the segment of the call */
};

static int list_one(void *arg) {
  struct lister *l = arg;
  return l->fn(l->ctx, &l->info);
}

int rill_ipc_route_list(rill_ipc_route_list_cb fn, void *ctx) {
  if (!fn)
    return rill__err(RILL_EINVAL, "ipc route list: fn is NULL");
  struct lister l = {.fn = fn, .ctx = ctx};
  return rill__ipc_list(KIND, "ipc route list", &l.info, list_one, &l);
}
