/*
 * The channel: up to 64 senders and up to 64 receivers on one ring in a
 * named shared-memory segment (docs/FORMATS.md, "IPC channel segment"),
 * delivering every message to every receiver (RILL_IPC_BROADCAST) or each
 * to exactly one (RILL_IPC_QUEUE).
 *
 * Claim, then commit. A sender loads claim = c, checks there is room for
 * seq c (every receiver, or the queue, past c - slots), stores pending =
 * c + 1 in its place, and CASes claim from c to c + 1 (release: pending is
 * visible to whoever sees the new claim). It writes payload and length,
 * then CASes the slot's mark from what it held to c + 1 (release): the
 * publication point. Receivers read in seq order; slot c is readable when
 * its mark is c + 1.
 *
 * A hole: a receiver at c that finds claim > c and the mark not c + 1
 * looks (at most once a millisecond, as it reads /proc) for a sender place
 * whose pending is c + 1 and whose holder is alive. Its acquire load of
 * claim saw the claimer's CAS, so the claimer's pending is visible (c + 1,
 * or later if it has committed c and moved on: hence the mark is loaded
 * again after the scan). No live claimer: the receiver CASes the mark from
 * what it saw to ABORTED | (c + 1) and skips it; a late commit's CAS then
 * fails (a dead process does not commit; the CAS makes sure). The slot's
 * claimer is recorded in the place table rather than in the slot: between
 * its claim and a store into the slot a sender could die, and the slot
 * would name the previous lap's sender.
 *
 * Room. Broadcast: a receiver's cursor is the oldest seq it has not
 * finished with, as in a route; a sender may claim c when every live
 * cursor is above c - slots. Queue: receivers share `consumed`, the next
 * seq to hand out; a receiver stores its cursor = c (the seq it is about
 * to take) before its CAS of consumed from c to c + 1 (release), and keeps
 * it until its next recv; a receiver holding nothing shows RILL__CHAN_NONE.
 * A sender loads consumed (acquire) and then the cursors: a receiver whose
 * CAS it saw has its cursor visible, so min(consumed, cursors) is never
 * above a slot being read.
 *
 * Redelivery (queue). A receiver's hold is TAKING | c from its store
 * before its CAS of consumed until it knows the CAS won, then c. A dead
 * receiver showing a plain c had taken c (c < consumed); one showing
 * TAKING | c may have lost its CAS to another receiver (and its hold may
 * be stale: stored after the slot was given to a later lap), so it is
 * freed as one holding nothing: a receiver killed between the two stores
 * of a won take loses that message, rather than have a copy of another's
 * or a torn slot handed out. The reaper of a dead holder of a message (a
 * sender waiting for room, a receiver with nothing to take, a receiver
 * opening) moves its place to ORPHAN, keeping the cursor: scans count it
 * as any hold, and the header's `orphans`, counted up before the ORPHAN
 * word is stored (release), tells receivers to look. An adopter stores its
 * cursor TAKING | h, then CASes the orphan's state from what it saw to
 * CLAIMING: of two adopters one wins, the loser stores NONE back (a scan
 * that saw its hold only waited more); a place freed and retaken meanwhile
 * has another generation, so a stale adopter's CAS fails. The winner
 * confirms its cursor h, bumps `redelivered` (release), then clears the
 * orphan's cursor and frees it: h is held throughout by one place or the
 * other. A scan reads the places one by one, so it could read our cursor
 * before the move and the orphan's after it; it loads `redelivered` before
 * and after (acquire) and scans again when it moved: having seen the
 * orphan given up, it sees the bump, and a first load that saw the bump
 * makes our hold visible. An adopter killed after confirming and before
 * clearing leaves two orphans of h: h is handed out twice (at least once).
 * A queue place is CLAIMING with a hold only when taken from an orphan
 * (whoever frees a queue place stores NONE in it first), so scans count
 * every queue place that is not free.
 *
 * The pool. A message over a slot's payload goes into a chunk: message c
 * takes chunk c % chunks of the first class that holds it whose chunk is
 * free, i.e. whose previous message (c - chunks or before) every receiver
 * has finished with, the bound the room already rests on. Senders claim
 * seqs out of order of their writes, so a chunk is tied to the seq, not
 * taken in turn as in a route: two seqs in flight never share a chunk of
 * a class, and a sender that dies after its claim leaves a chunk that is
 * free again once the aborted seq is passed. The cost: a pooled message
 * needs the slowest receiver within the class's chunks of it, counting
 * inline messages between.
 *
 * Joining (broadcast) and parking follow the route's protocol (route.c's
 * file comment): seq_cst fences on both sides, one wake a park.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "ipc/segment.h"
#include "rill/ipc.h"

#define KIND           "channel"
#define NO_CLASS       UINT32_MAX
#define PARK_SLICE     10000000ull /* a waiter re-checks for dead peers this often */
#define CHECK_EVERY_MS 1           /* liveness is read from /proc at most this often */

struct rill_ipc_chan {
  uint8_t *base;
  size_t size;
  struct rill__chan_hdr *hdr;
  struct rill__ipc_place *places; /* senders 0..max_senders-1, then the receivers */
  uint8_t *ring;
  struct rill__chan_geom g;
  uint64_t mask;
  rill_ipc_chan_role_t role;
  struct rill__ipc_place *me;
  uint64_t mine;      /* our state word */
  uint64_t min_seen;  /* sender: the lowest bound of the last scan */
  uint32_t rx_seen;   /* broadcast sender: ready receivers at the last count */
  uint32_t gone_seen; /* broadcast sender: the header's gone word at that count */
  uint64_t cur;       /* broadcast receiver: the next seq to return */
  bool held;          /* receiver: a view is out */
  bool reserved;      /* sender: res holds a claim not committed yet */
  struct {
    uint64_t seq;
    uint32_t len, cls, idx; /* cls NO_CLASS: the slot */
    uint8_t *buf;           /* where the message goes */
  } res;
  bool adopted; /* queue receiver: opened on an orphan, adopted_seq not handed out yet */
  uint64_t adopted_seq;
  uint64_t checked_ms;
  uint64_t reaped_ms; /* queue receiver: the last look for dead holders of a message */
  uint32_t reap_next; /* queue receiver: the place a look with messages to take starts at */
  uint32_t takes;     /* queue receiver: recvs, to look at the clock every 64th */
  char name[RILL_IPC_MAX_NAME + 1];
};

static inline struct rill__ipc_slot *slot_at(const rill_ipc_chan_t *ch, uint64_t seq) {
  return (struct rill__ipc_slot *)(void *)(ch->ring + (seq & ch->mask) * ch->g.slot_size);
}

static inline struct rill__ipc_place *receivers(const rill_ipc_chan_t *ch) {
  return ch->places + ch->g.max_senders;
}

/* ---- opts ------------------------------------------------------------------ */

static int opts_geom(const char *name, const rill_ipc_chan_opts_t *o, struct rill__chan_geom *g,
                     mode_t *mode) {
  rill_ipc_chan_opts_t d = {0};
  if (o)
    d = *o;
  g->slots = d.slots ? d.slots : 4096;
  g->slot_size = d.slot_size ? d.slot_size : 128;
  g->max_senders = d.max_senders ? d.max_senders : RILL_IPC_MAX_SENDERS;
  g->max_receivers = d.max_receivers ? d.max_receivers : RILL_IPC_MAX_RECEIVERS;
  g->spin_ns = d.spin_ns ? d.spin_ns : 50000;
  *mode = d.mode ? d.mode : 0600;
  if ((unsigned)d.policy > RILL_IPC_FAIL)
    return rill__err(RILL_EINVAL, "ipc channel %s: policy %d: a channel blocks or fails", name,
                     (int)d.policy);
  if ((unsigned)d.wait > RILL_IPC_SPIN)
    return rill__err(RILL_EINVAL, "ipc channel %s: unknown wait mode %d", name, (int)d.wait);
  if ((unsigned)d.delivery > RILL_IPC_QUEUE)
    return rill__err(RILL_EINVAL, "ipc channel %s: unknown delivery %d", name, (int)d.delivery);
  g->policy = (uint8_t)d.policy;
  g->wait = (uint8_t)d.wait;
  g->delivery = (uint8_t)d.delivery;
  int rc = rill__ipc_ring_check(RILL_EINVAL, KIND, name, g->slots, g->slot_size);
  if (rc)
    return rc;
  if ((rc = rill__ipc_places_check(RILL_EINVAL, KIND, name, "senders", g->max_senders,
                                   RILL_IPC_MAX_SENDERS)))
    return rc;
  if ((rc = rill__ipc_places_check(RILL_EINVAL, KIND, name, "receivers", g->max_receivers,
                                   RILL_IPC_MAX_RECEIVERS)))
    return rc;
  if (*mode & ~(mode_t)0777)
    return rill__err(RILL_EINVAL, "ipc channel %s: mode %o has bits beyond 0777", name,
                     (unsigned)*mode);
  rc = rill__ipc_classes_opts(KIND, name, d.pool, g->slot_size - RILL_IPC_SLOT_HDR, g->cls,
                              &g->nclasses);
  if (rc)
    return rc;
  rill__chan_layout(g);
  return 0;
}

static int opts_agree(const rill_ipc_chan_t *ch, const rill_ipc_chan_opts_t *o) {
  if (!o)
    return 0;
  const struct rill__chan_geom *g = &ch->g;
  int rc = rill__ipc_classes_agree(KIND, ch->name, o->pool, g->cls, g->nclasses);
  if (rc)
    return rc;
  if ((o->slots && o->slots != g->slots) || (o->slot_size && o->slot_size != g->slot_size) ||
      (o->max_senders && o->max_senders != g->max_senders) ||
      (o->max_receivers && o->max_receivers != g->max_receivers) ||
      (unsigned)o->policy != g->policy || (unsigned)o->delivery != g->delivery)
    return rill__err(RILL_EINVAL,
                     "ipc channel %s: exists with %u slots of %u bytes, %u senders, %u receivers, "
                     "policy %u, delivery %u; asked for %u, %u, %u, %u, %u, %u",
                     ch->name, g->slots, g->slot_size, g->max_senders, g->max_receivers,
                     (unsigned)g->policy, (unsigned)g->delivery, o->slots, o->slot_size,
                     o->max_senders, o->max_receivers, (unsigned)o->policy, (unsigned)o->delivery);
  return 0;
}

static void bind(rill_ipc_chan_t *ch) {
  ch->hdr = (struct rill__chan_hdr *)(void *)ch->base;
  ch->places = (struct rill__ipc_place *)(void *)(ch->base + ch->g.table_off);
  ch->ring = ch->base + ch->g.ring_off;
  ch->mask = (uint64_t)ch->g.slots - 1;
}

/* Whether the channel was removed (rill_ipc_chan_unlink). Acquire: pairs
 * with the remover's release. */
static inline bool removed(const rill_ipc_chan_t *ch) {
  return __atomic_load_n(&ch->hdr->gone, __ATOMIC_ACQUIRE) & RILL__IPC_REMOVED;
}

static int closed_err(const rill_ipc_chan_t *ch) {
  return rill__err(RILL_ECLOSED, "ipc channel %s: removed (rill ipc rm) while in use", ch->name);
}

/* ---- open and close ---------------------------------------------------------- */

static bool reap_free(void *ch, struct rill__ipc_place *p, uint64_t st);
static bool adopt_place(rill_ipc_chan_t *ch, struct rill__ipc_place *p);
static void leave_orphan(rill_ipc_chan_t *ch);
static uint32_t count_ready(rill_ipc_chan_t *ch, bool live);

int rill_ipc_chan_open(rill_ipc_chan_t **out, const char *name, const rill_ipc_chan_opts_t *opts,
                       rill_ipc_chan_role_t role) {
  if (!out)
    return rill__err(RILL_EINVAL, "ipc channel: out is NULL");
  *out = NULL;
  int rc = rill__ipc_name_check(KIND, name);
  if (rc)
    return rc;
  if (role != RILL_IPC_SENDER && role != RILL_IPC_RECEIVER)
    return rill__err(RILL_EINVAL, "ipc channel %s: unknown role %d", name, (int)role);
  struct rill__chan_geom g;
  mode_t mode;
  rc = opts_geom(name, opts, &g, &mode);
  if (rc)
    return rc;
  rill_ipc_chan_t *ch = rill__calloc(1, sizeof *ch);
  if (!ch)
    return rill__err(RILL_ENOMEM, "ipc channel %s: no memory for the handle", name);
  snprintf(ch->name, sizeof ch->name, "%s", name);
  ch->role = role;
  rc = rill__ipc_seg_open(KIND, name, &g, mode, &ch->g, &ch->base, &ch->size);
  if (rc == 0)
    bind(ch);
  if (rc)
    goto free_handle;
  rc = opts_agree(ch, opts);
  if (rc)
    goto unmap;
  struct rill__chan_hdr *h = ch->hdr;
  bool sender = role == RILL_IPC_SENDER;
  bool queue = ch->g.delivery == RILL_IPC_QUEUE;
  struct rill__ipc_place *pl = sender ? ch->places : receivers(ch);
  uint32_t n = sender ? ch->g.max_senders : ch->g.max_receivers;
  uint32_t *waiters = sender ? &h->send_waiters : &h->recv_waiters;
  if (!sender && queue) {
    /* A free place first; an orphan only when none is left. */
    for (uint32_t i = 0; i < n && !ch->me; i++)
      if (rill__ipc_claim_place_with(&pl[i], reap_free, ch, &ch->mine))
        ch->me = &pl[i];
    for (uint32_t i = 0; i < n && !ch->me; i++)
      if (adopt_place(ch, &pl[i]))
        ch->me = &pl[i];
  } else {
    for (uint32_t i = 0; i < n && !ch->me; i++)
      if (rill__ipc_claim_place(&pl[i], waiters, &ch->mine))
        ch->me = &pl[i];
  }
  if (!ch->me) {
    rc = rill__err(RILL_EBUSY, "ipc channel %s: its %u %s places are held by live processes", name,
                   n, sender ? "sender" : "receiver");
    goto unmap;
  }
  __atomic_store_n(&ch->me->start, rill__ipc_self_start(), __ATOMIC_RELAXED); /* by take */
  if (sender || queue) {
    /* A sender's pending claim, a queue receiver's hold: none (an adopted
     * orphan's hold stays). The delivery is the channel's: opts may be
     * NULL. A queue receiver gets whatever is queued: ready at once. */
    if (!ch->adopted)
      __atomic_store_n(&ch->me->cursor, sender ? 0 : RILL__CHAN_NONE, __ATOMIC_RELAXED);
    __atomic_store_n(&ch->me->ready, !sender, __ATOMIC_RELAXED); /* published by take */
    ch->mine = rill__ipc_take_place(ch->me, ch->mine);
    ch->min_seen = 0;
    ch->checked_ms = 0;
    *out = ch;
    return 0;
  }
  /* A broadcast receiver joins at claim. Acquire: pairs with the senders'
   * CAS of claim (release). */
  uint64_t c = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
  __atomic_store_n(&ch->me->cursor, c, __ATOMIC_RELAXED); /* published by take */
  __atomic_store_n(&ch->me->ready, 0, __ATOMIC_RELAXED);  /* a previous holder's */
  ch->mine = rill__ipc_take_place(ch->me, ch->mine);
  /* seq_cst: pairs with the fence in a sender's scan: it sees our place,
   * or we now see every claim it scanned under. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  uint64_t c2 = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
  if (c2 != c) {
    c = c2;
    /* Release: as every cursor store (advance). */
    __atomic_store_n(&ch->me->cursor, c, __ATOMIC_RELEASE);
  }
  ch->cur = c;
  /* Release: pairs with a sender's acquire in count_ready: a sender that
   * sees it claims at or past our cursor from then on. */
  __atomic_store_n(&ch->me->ready, 1, __ATOMIC_RELEASE);
  *out = ch;
  return 0;
unmap:
  rill__ipc_shm_unmap(ch->base, ch->size);
free_handle:
  rill__free(ch);
  return rc;
}

int rill_ipc_chan_wait_receivers(rill_ipc_chan_t *ch, uint32_t n, uint64_t timeout_ns) {
  if (RILL_UNLIKELY(!ch))
    return rill__err(RILL_EINVAL, "ipc chan_wait_receivers: the channel is NULL");
  if (ch->role != RILL_IPC_SENDER)
    return rill__err(RILL_EINVAL, "ipc channel %s: wait_receivers on a receiver", ch->name);
  if (n < 1 || n > ch->g.max_receivers)
    return rill__err(RILL_EINVAL, "ipc channel %s: waiting for %u receivers, not in 1..%u",
                     ch->name, n, ch->g.max_receivers);
  uint64_t deadline = rill__deadline(rill_time_mono_ns(), timeout_ns);
  for (;;) {
    /* Acquire: as in claim. */
    uint32_t gone = __atomic_load_n(&ch->hdr->gone, __ATOMIC_ACQUIRE);
    if (gone & RILL__IPC_REMOVED)
      return closed_err(ch);
    ch->gone_seen = gone;
    /* The dead are not counted (claim's count keeps them until reaped). */
    uint32_t have = count_ready(ch, true);
    if (have >= n)
      return 0;
    int rc = rill__ipc_wait_step(KIND, ch->name, deadline, timeout_ns, have, n);
    if (rc)
      return rc;
  }
}

uint32_t rill_ipc_chan_max_message(const rill_ipc_chan_t *ch) {
  if (!ch)
    return 0;
  return ch->g.nclasses ? ch->g.max_message : ch->g.slot_size - RILL_IPC_SLOT_HDR;
}

uint32_t rill_ipc_chan_max_payload(const rill_ipc_chan_t *ch) {
  return ch ? ch->g.slot_size - RILL_IPC_SLOT_HDR : 0;
}

static void cancel(rill_ipc_chan_t *ch);

void rill_ipc_chan_close(rill_ipc_chan_t *ch) {
  if (!ch)
    return;
  struct rill__chan_hdr *h = ch->hdr;
  if (ch->reserved)
    cancel(ch); /* receivers skip it now, not after the dead-claimer check */
  if (ch->role == RILL_IPC_RECEIVER && ch->g.delivery == RILL_IPC_QUEUE && ch->adopted) {
    leave_orphan(ch);
  } else {
    if (ch->role == RILL_IPC_RECEIVER && ch->g.delivery == RILL_IPC_QUEUE)
      /* Relaxed: published by the leave's release; a free queue place
       * shows NONE (file comment). */
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELAXED);
    rill__ipc_leave_place(ch->me, ch->mine);
  }
  if (ch->role == RILL_IPC_RECEIVER)
    rill__ipc_count_leave(&h->gone);
  /* seq_cst: as in advance(); a sender waiting for us stops waiting. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  if (ch->role == RILL_IPC_RECEIVER && __atomic_load_n(&h->send_waiters, __ATOMIC_RELAXED))
    rill__futex_bump_shared(&h->send_futex);
  rill__ipc_shm_unmap(ch->base, ch->size);
  rill__free(ch);
}

/* ---- send -------------------------------------------------------------------- */

/* The lowest seq still held or awaited by a receiver, bounded by c: the
 * sender may claim c when c - bound < slots. */
static uint64_t scan(rill_ipc_chan_t *ch, uint64_t c) {
  /* seq_cst: pairs with the fence a joining receiver makes (file comment). */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  const bool queue = ch->g.delivery == RILL_IPC_QUEUE;
  struct rill__chan_hdr *h = ch->hdr;
  struct rill__ipc_place *rx = receivers(ch);
  uint64_t min, moved = 0;
  do {
    min = c;
    if (queue) {
      /* Acquire: pairs with an adopter's release bump (try_adopt): the
       * hold it moved into its own place before is visible below. */
      moved = __atomic_load_n(&h->redelivered, __ATOMIC_ACQUIRE);
      /* Acquire: pairs with the receivers' CAS of consumed (release); the
       * cursor a receiver stored before its CAS is visible below. */
      uint64_t k = __atomic_load_n(&h->consumed, __ATOMIC_ACQUIRE);
      if (k < min)
        min = k;
    }
    for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
      /* Acquire: pairs with the receiver's release store of TAKEN (and a
       * reaper's of ORPHAN). */
      uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
      unsigned phase = RILL__IPC_ST_PHASE(st);
      /* Queue: a claiming or orphaned place's cursor holds too (file
       * comment); broadcast: a claiming place's cursor may be stale. */
      if (phase == RILL__IPC_FREE || (!queue && phase != RILL__IPC_TAKEN))
        continue;
      /* Acquire: pairs with the receiver's release stores of its cursor;
       * its reads of the slots below happen before we overwrite them. */
      uint64_t v = __atomic_load_n(&rx[i].cursor, __ATOMIC_ACQUIRE);
      if (v != RILL__CHAN_NONE)
        v &= ~RILL__CHAN_TAKING; /* a take in progress holds as a taken one */
      if (v < min)
        min = v; /* NONE (holds nothing) and cursors from the future are above c */
    }
    /* Acquire: as the first load; a hold moved during our look. */
  } while (queue && __atomic_load_n(&h->redelivered, __ATOMIC_ACQUIRE) != moved);
  ch->min_seen = min;
  return min;
}

static void wake_receivers(rill_ipc_chan_t *ch);

enum { REAP_NOTHING, REAP_FREED, REAP_ORPHANED };

/* Reaps receiver place p (state word st, loaded with acquire) if its
 * holder is dead: freed, or under RILL_IPC_QUEUE left ORPHAN when the
 * holder had taken a message (file comment). REAP_FREED when the place is
 * free (or was seen free), REAP_ORPHANED when we made it an orphan,
 * REAP_NOTHING when its holder lives, it is an orphan already, or another
 * reaper or taker got there first. */
static int reap_receiver(rill_ipc_chan_t *ch, struct rill__ipc_place *p, uint64_t st) {
  struct rill__chan_hdr *h = ch->hdr;
  unsigned phase = RILL__IPC_ST_PHASE(st);
  if (phase == RILL__IPC_FREE)
    return REAP_FREED;
  if (phase == RILL__IPC_ORPHAN)
    return REAP_NOTHING;
  if (ch->g.delivery != RILL_IPC_QUEUE)
    return rill__ipc_reap_if_dead(p, st, &h->recv_waiters) ? REAP_FREED : REAP_NOTHING;
  /* Relaxed: st was loaded with acquire, after the holder's start. */
  if (rill__ipc_holder_alive(st, __atomic_load_n(&p->start, __ATOMIC_RELAXED)))
    return REAP_NOTHING;
  uint32_t gen = RILL__IPC_ST_GEN(st) + 1;
  uint64_t ours = RILL__IPC_ST(RILL__IPC_CLAIMING, gen, (uint32_t)getpid());
  /* A CAS from exactly st, as rill__ipc_reap_if_dead: a place retaken
   * meanwhile is left alone. Claiming, the place still holds its cursor
   * for the scans. Acquire: pairs with the dead holder's last stores. */
  if (!__atomic_compare_exchange_n(&p->state, &st, ours, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    return REAP_NOTHING;
  if (__atomic_exchange_n(&p->parked, 0, __ATOMIC_RELAXED))
    __atomic_fetch_sub(&h->recv_waiters, 1, __ATOMIC_RELAXED);
  /* Acquire: pairs with the receivers' CAS of consumed (release), the dead
   * holder's among them if it won: its hold stored before is visible. */
  uint64_t k = __atomic_load_n(&h->consumed, __ATOMIC_ACQUIRE);
  /* Relaxed: the holder is dead, its cursor is final. */
  uint64_t v = __atomic_load_n(&p->cursor, __ATOMIC_RELAXED);
  if (v < k) { /* a plain hold: NONE and TAKING holds are above any seq */
    /* Relaxed: counted before the ORPHAN word (release) that an adopter
     * sees with acquire, so its decrement comes after: never below the
     * number of orphans. */
    __atomic_fetch_add(&h->orphans, 1, __ATOMIC_RELAXED);
    /* Relaxed: stored again so that the release below publishes the hold
     * to adopters (the dead holder's store pairs with nothing of theirs). */
    __atomic_store_n(&p->cursor, v, __ATOMIC_RELAXED);
    /* Release: pairs with the adopters' and scans' acquire loads of the
     * state. */
    __atomic_store_n(&p->state, RILL__IPC_ST(RILL__IPC_ORPHAN, gen, 0), __ATOMIC_RELEASE);
    wake_receivers(ch); /* a parked receiver adopts it */
    return REAP_ORPHANED;
  }
  /* Relaxed: published by the release below; a free queue place shows NONE. */
  __atomic_store_n(&p->cursor, RILL__CHAN_NONE, __ATOMIC_RELAXED);
  /* Release: pairs with a claimer's acquire load of the state. */
  __atomic_store_n(&p->state, RILL__IPC_ST(RILL__IPC_FREE, gen, 0), __ATOMIC_RELEASE);
  return REAP_FREED;
}

/* Reaps the dead receivers that hold back seq c (limit: the room it
 * needs); true when one was. */
static bool reap_laggards(rill_ipc_chan_t *ch, uint64_t c, uint64_t limit) {
  bool any = false;
  struct rill__ipc_place *rx = receivers(ch);
  for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
    /* Acquire: pairs with the holder's release store of TAKEN (its start). */
    uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
    unsigned phase = RILL__IPC_ST_PHASE(st);
    if (phase == RILL__IPC_FREE || phase == RILL__IPC_ORPHAN)
      continue; /* an orphan holds c back until a receiver adopts it */
    /* Relaxed: a hint for whom to check; the reap decides on its own loads. */
    uint64_t v = __atomic_load_n(&rx[i].cursor, __ATOMIC_RELAXED);
    if (v != RILL__CHAN_NONE)
      v &= ~RILL__CHAN_TAKING;
    if (phase == RILL__IPC_TAKEN && (v == RILL__CHAN_NONE || c - v < limit))
      continue;
    if (reap_receiver(ch, &rx[i], st) == REAP_FREED)
      any = true;
  }
  return any;
}

/* The receivers a message claimed now would reach: places TAKEN whose
 * holder is ready (its cursor final), and, with live, whose holder is
 * alive (/proc is read for each). Stored as rx_seen. */
static uint32_t count_ready(rill_ipc_chan_t *ch, bool live) {
  /* seq_cst: as the fence in scan(), pairs with a joining receiver's. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  struct rill__ipc_place *rx = receivers(ch);
  uint32_t n = 0;
  for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
    /* Acquire: pairs with the receiver's release store of TAKEN. */
    uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) != RILL__IPC_TAKEN)
      continue;
    /* Acquire: pairs with the receiver's release store of ready, made once
     * its cursor is final: whatever we claim from now on is at or past it. */
    if (__atomic_load_n(&rx[i].ready, __ATOMIC_ACQUIRE) != 1)
      continue;
    if (live && !rill__ipc_holder_alive(st, __atomic_load_n(&rx[i].start, __ATOMIC_RELAXED)))
      continue;
    n++;
  }
  ch->rx_seen = n;
  return n;
}

static int no_receiver(const rill_ipc_chan_t *ch) {
  return rill__err(RILL_EPIPE,
                   "ipc channel %s: no receiver attached; the message was not sent (broadcast)",
                   ch->name);
}

/* Waits for room for seq c (reaping dead receivers meanwhile): 0, or
 * RILL_EFULL / RILL_ETIMEDOUT. The caller loads claim again after. */
struct waiting {
  bool timed;
  uint64_t deadline, spin_until;
};

static int wait_room(rill_ipc_chan_t *ch, uint64_t c, uint64_t slots, struct waiting *wt,
                     uint64_t timeout_ns) {
  struct rill__chan_hdr *h = ch->hdr;
  if (c - scan(ch, c) < slots)
    return 0;
  if (RILL_UNLIKELY(removed(ch)))
    return closed_err(ch);
  uint64_t ms = rill_time_coarse_ms();
  if (ms - ch->checked_ms >= CHECK_EVERY_MS) {
    ch->checked_ms = ms; /* not at every look: /proc is read for each laggard */
    if (reap_laggards(ch, c, slots) && c - scan(ch, c) < slots)
      return 0;
  }
  if (ch->g.policy == RILL_IPC_FAIL)
    return rill__err(RILL_EFULL, "ipc channel %s: %llu messages not finished with", ch->name,
                     (unsigned long long)slots);
  uint64_t now = rill_time_mono_ns();
  if (!wt->timed) {
    wt->timed = true;
    wt->deadline = rill__deadline(now, timeout_ns);
    wt->spin_until = ch->g.wait == RILL_IPC_SPIN ? rill__deadline(now, ch->g.spin_ns) : now;
  }
  if (now >= wt->deadline)
    return rill__err(RILL_ETIMEDOUT, "ipc channel %s: %llu messages not finished with", ch->name,
                     (unsigned long long)slots);
  if (now < wt->spin_until) {
    rill__cpu_relax();
    return 1; /* look again */
  }
  /* Acquire: pairs with a receiver's release bump of the word. */
  uint32_t w = __atomic_load_n(&h->send_futex, __ATOMIC_ACQUIRE);
  /* seq_cst, then the fence in scan(): pairs with the fence a receiver
   * makes after moving on (advance). */
  __atomic_fetch_add(&h->send_waiters, 1, __ATOMIC_SEQ_CST);
  /* Relaxed: read only by a reaper after we are dead (as in the route). */
  __atomic_store_n(&ch->me->parked, 1, __ATOMIC_RELAXED);
  /* Relaxed: ordered before our scan by its fence; taken by a receiver
   * after its fence. */
  __atomic_store_n(&h->send_want, 1, __ATOMIC_RELAXED);
  if (c - scan(ch, c) >= slots) {
    uint64_t left = wt->deadline - now;
    rill__futex_wait_shared(&h->send_futex, w, left < PARK_SLICE ? left : PARK_SLICE);
  }
  __atomic_store_n(&ch->me->parked, 0, __ATOMIC_RELAXED);
  /* Relaxed: only a hint for wakers. */
  __atomic_fetch_sub(&h->send_waiters, 1, __ATOMIC_RELAXED);
  return 1;
}

/* Claims the next seq for a message of len bytes once there is room for
 * it (a slot, and a free chunk when it is pooled): the claim is ours in
 * ch->res, with where the message goes. */
static int claim(rill_ipc_chan_t *ch, uint32_t len, uint64_t timeout_ns) {
  const struct rill__chan_geom *g = &ch->g;
  const bool pooled = len > g->slot_size - RILL_IPC_SLOT_HDR;
  uint64_t limit = g->slots;
  uint32_t cls = 0;
  const bool bcast = g->delivery == RILL_IPC_BROADCAST;
  /* Acquire: pairs with a leaving receiver's release of the word (after
   * freeing its place), and with the remover's. */
  uint32_t gone = __atomic_load_n(&ch->hdr->gone, __ATOMIC_ACQUIRE);
  if (RILL_UNLIKELY(gone & RILL__IPC_REMOVED))
    return closed_err(ch);
  if (bcast && RILL_UNLIKELY(gone != ch->gone_seen || !ch->rx_seen)) {
    ch->gone_seen = gone;
    if (!count_ready(ch, false))
      return no_receiver(ch);
  }
  if (RILL_UNLIKELY(pooled)) {
    if (len > g->max_message)
      return rill__err(RILL_EMSGSIZE,
                       g->nclasses ? "ipc channel %s: a message of %u bytes, over its largest "
                                     "pool class (%u)"
                                   : "ipc channel %s: a message of %u bytes, over the %u a slot "
                                     "holds (the channel has no pool)",
                       ch->name, len,
                       g->nclasses ? g->max_message : g->slot_size - RILL_IPC_SLOT_HDR);
    /* Message c takes chunk c % chunks of its class (pool file comment):
     * free once every receiver is past c - chunks. Room, then, is the
     * most chunks of a class that holds it. */
    cls = rill__ipc_class_of(g->cls, len);
    uint64_t most = 0;
    for (uint32_t d = cls; d < g->nclasses; d++)
      if (g->cls[d].chunks > most)
        most = g->cls[d].chunks;
    if (most < limit)
      limit = most;
  }
  struct rill__chan_hdr *h = ch->hdr;
  struct waiting wt = {0};
  /* Acquire: pairs with the other senders' CAS of claim. */
  uint64_t c = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
  for (;;) {
    if (c - ch->min_seen >= limit || c < ch->min_seen) {
      int rc = wait_room(ch, c, limit, &wt, timeout_ns);
      if (rc < 0)
        return rc;
      if (rc > 0) {
        c = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
        continue;
      }
      /* The wait may have reaped the last receiver (a dead one). */
      if (bcast && !count_ready(ch, false))
        return no_receiver(ch);
    }
    /* Relaxed: published by the CAS below (release). */
    __atomic_store_n(&ch->me->cursor, c + 1, __ATOMIC_RELAXED);
    /* Release: pairs with the receivers' acquire load of claim; our pending
     * is visible to a receiver that sees the claim. On failure c is the
     * claim now (acquire: as the load above). */
    if (__atomic_compare_exchange_n(&h->claim, &c, c + 1, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
      break;
    /* Relaxed: lost the race; a pending left at a seq another sender
     * claimed would make receivers take us for its claimer while we wait
     * for room, and never skip it if that one died. */
    __atomic_store_n(&ch->me->cursor, 0, __ATOMIC_RELAXED);
  }
  struct rill__ipc_slot *sl = slot_at(ch, c);
  ch->res.seq = c;
  ch->res.len = len;
  ch->res.cls = NO_CLASS;
  ch->res.buf = (uint8_t *)(sl + 1);
  if (RILL_UNLIKELY(pooled)) {
    /* The first class that holds it whose chunk for c is free: one is,
     * as c - min_seen < limit (and min_seen only lags the truth). */
    while (cls + 1 < g->nclasses && c - ch->min_seen >= g->cls[cls].chunks)
      cls++;
    ch->res.cls = cls;
    ch->res.idx = (uint32_t)(c % g->cls[cls].chunks);
    ch->res.buf = (uint8_t *)(rill__ipc_chunk_in(ch->base, &g->cls[cls], ch->res.idx) + 1);
  }
  ch->reserved = true;
  return 0;
}

/* Publishes the claimed message as len bytes (at most the claimed). */
static int commit(rill_ipc_chan_t *ch, uint32_t len) {
  const struct rill__chan_geom *g = &ch->g;
  const uint64_t c = ch->res.seq;
  struct rill__ipc_slot *sl = slot_at(ch, c);
  ch->reserved = false;
  /* Relaxed: the slot's last lap is finished with (room), so its mark is
   * stable until our commit or a receiver's abort. */
  uint64_t old = __atomic_load_n(&sl->mark, __ATOMIC_RELAXED);
  uint32_t flags = 0;
  if (ch->res.cls != NO_CLASS && len <= g->slot_size - RILL_IPC_SLOT_HDR) {
    memcpy(sl + 1, ch->res.buf, len); /* committed short: into the slot */
  } else if (ch->res.cls != NO_CLASS) {
    struct rill__ipc_chunk *ck = rill__ipc_chunk_in(ch->base, &g->cls[ch->res.cls], ch->res.idx);
    /* Relaxed: published with the slot by the mark's CAS (release). */
    __atomic_store_n(&ck->owner, c + 1, __ATOMIC_RELAXED);
    uint32_t desc[2] = {ch->res.idx, ch->res.cls};
    memcpy(sl + 1, desc, sizeof desc);
    flags = RILL__IPC_SLOT_POOL;
  }
  __atomic_store_n(&sl->len, len, __ATOMIC_RELAXED);
  /* Relaxed: published by the mark's CAS, as the length. */
  __atomic_store_n(&sl->flags, flags, __ATOMIC_RELAXED);
  /* Release: pairs with the receivers' acquire load of the mark; payload
   * and length are visible once it reads c + 1. The publication point. A
   * CAS, so that a receiver's abort (it took us for dead) is never undone. */
  if (!__atomic_compare_exchange_n(&sl->mark, &old, c + 1, false, __ATOMIC_RELEASE,
                                   __ATOMIC_RELAXED))
    return rill__err(RILL_ECANCELED, "ipc channel %s: message %llu was aborted before its commit",
                     ch->name, (unsigned long long)c);
  wake_receivers(ch);
  return 0;
}

static int sender_ok(rill_ipc_chan_t *ch, const char *what) {
  if (RILL_UNLIKELY(!ch))
    return rill__err(RILL_EINVAL, "ipc channel %s: the channel is NULL", what);
  if (RILL_UNLIKELY(ch->role != RILL_IPC_SENDER))
    return rill__err(RILL_EINVAL, "ipc channel %s: %s on a receiver", ch->name, what);
  return 0;
}

/* A claim is a hole every receiver waits at until it is committed or
 * cancelled: a second one is refused rather than leave the first open. */
static int no_open_claim(rill_ipc_chan_t *ch, const char *what) {
  if (RILL_UNLIKELY(ch->reserved))
    return rill__err(RILL_EBUSY,
                     "ipc channel %s: %s with message %llu reserved: commit or cancel it first",
                     ch->name, what, (unsigned long long)ch->res.seq);
  return 0;
}

int rill_ipc_chan_send(rill_ipc_chan_t *ch, const void *data, uint32_t len, uint64_t timeout_ns) {
  int rc = sender_ok(ch, "send");
  if (RILL_UNLIKELY(rc))
    return rc;
  if (RILL_UNLIKELY(!data && len))
    return rill__err(RILL_EINVAL, "ipc channel %s: send: data is NULL", ch->name);
  if (RILL_UNLIKELY((rc = no_open_claim(ch, "send")) || (rc = claim(ch, len, timeout_ns))))
    return rc;
  if (len)
    memcpy(ch->res.buf, data, len); /* the one copy */
  return commit(ch, len);
}

int rill_ipc_chan_reserve(rill_ipc_chan_t *ch, uint32_t len, uint64_t timeout_ns, void **buf) {
  int rc = sender_ok(ch, "reserve");
  if (rc)
    return rc;
  if (!buf)
    return rill__err(RILL_EINVAL, "ipc channel %s: reserve: buf is NULL", ch->name);
  *buf = NULL;
  if ((rc = no_open_claim(ch, "reserve")) || (rc = claim(ch, len, timeout_ns)))
    return rc;
  *buf = ch->res.buf;
  return 0;
}

int rill_ipc_chan_commit(rill_ipc_chan_t *ch, uint32_t len) {
  int rc = sender_ok(ch, "commit");
  if (rc)
    return rc;
  if (!ch->reserved)
    return rill__err(RILL_EINVAL, "ipc channel %s: commit without a reservation", ch->name);
  if (len > ch->res.len)
    return rill__err(RILL_EINVAL, "ipc channel %s: commit of %u bytes, %u were reserved", ch->name,
                     len, ch->res.len);
  return commit(ch, len);
}

/* Gives up our claim: its slot is marked aborted, as a dead sender's
 * would be, so receivers skip it at once. */
static void cancel(rill_ipc_chan_t *ch) {
  const uint64_t c = ch->res.seq;
  struct rill__ipc_slot *sl = slot_at(ch, c);
  ch->reserved = false;
  uint64_t old = __atomic_load_n(&sl->mark, __ATOMIC_RELAXED);
  /* Release: as a commit's; a receiver's abort of it (it took us for
   * dead) leaves the same mark. */
  if (__atomic_compare_exchange_n(&sl->mark, &old, RILL__CHAN_ABORTED | (c + 1), false,
                                  __ATOMIC_RELEASE, __ATOMIC_RELAXED))
    /* Relaxed: a counter for info. */
    __atomic_fetch_add(&ch->hdr->aborted, 1, __ATOMIC_RELAXED);
  wake_receivers(ch);
}

int rill_ipc_chan_cancel(rill_ipc_chan_t *ch) {
  int rc = sender_ok(ch, "cancel");
  if (rc)
    return rc;
  if (!ch->reserved)
    return rill__err(RILL_EINVAL, "ipc channel %s: cancel without a reservation", ch->name);
  cancel(ch);
  return 0;
}

/* After a commit (or an orphan made): wakes a receiver parked for one. */
static void wake_receivers(rill_ipc_chan_t *ch) {
  struct rill__chan_hdr *h = ch->hdr;
  /* seq_cst: pairs with the fence a receiver makes after counting itself
   * a waiter: it sees the mark (the orphan), or we see its count. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  rill__ipc_wake(&h->recv_waiters, &h->recv_want, &h->recv_futex);
}

/* ---- receive ------------------------------------------------------------------ */

/* Whether a live sender has claimed seq and not committed it yet. */
static bool claimer_alive(const rill_ipc_chan_t *ch, uint64_t seq) {
  for (uint32_t i = 0; i < ch->g.max_senders; i++) {
    struct rill__ipc_place *p = &ch->places[i];
    /* Acquire: pairs with the sender's release store of TAKEN (its start). */
    uint64_t st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_FREE)
      continue;
    /* Relaxed: our acquire load of claim made the pending of seq's claimer
     * visible (it was stored before the claim's release CAS). */
    if (__atomic_load_n(&p->cursor, __ATOMIC_RELAXED) != seq + 1)
      continue;
    if (rill__ipc_holder_alive(st, __atomic_load_n(&p->start, __ATOMIC_RELAXED)))
      return true;
  }
  return false;
}

/* Slot seq is claimed and its mark is `mark`, not seq + 1: aborts it when
 * its claimer is dead. True when the slot is aborted now (by us or
 * another receiver). */
static bool abort_if_orphaned(rill_ipc_chan_t *ch, uint64_t seq, uint64_t mark) {
  uint64_t ms = rill_time_coarse_ms();
  if (ms - ch->checked_ms < CHECK_EVERY_MS)
    return false;
  ch->checked_ms = ms;
  if (claimer_alive(ch, seq))
    return false;
  struct rill__ipc_slot *sl = slot_at(ch, seq);
  /* Acquire: as every load of the mark. A commit that came meanwhile
   * fails our CAS below anyway. */
  if (__atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE) != mark)
    return false;
  /* Acquire on success: orders our later reads after the abort. */
  if (__atomic_compare_exchange_n(&sl->mark, &mark, RILL__CHAN_ABORTED | (seq + 1), false,
                                  __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    /* Relaxed: a counter for info. */
    __atomic_fetch_add(&ch->hdr->aborted, 1, __ATOMIC_RELAXED);
    return true;
  }
  return mark == (RILL__CHAN_ABORTED | (seq + 1));
}

static void wake_senders(rill_ipc_chan_t *ch);

static int lost_one(rill_ipc_chan_t *ch, uint64_t seq, uint64_t *lost) {
  wake_senders(ch); /* the cursor moved past the hole */
  if (lost)
    *lost = 1;
  return rill__err(RILL_ELAGGED,
                   "ipc channel %s: message %llu was lost: its sender died before committing it",
                   ch->name, (unsigned long long)seq);
}

/* A pooled message's view: its chunk's payload, once the descriptor
 * checks out (the chunk c % chunks of a class the channel has, holding c). */
static int pooled_view(rill_ipc_chan_t *ch, struct rill__ipc_slot *sl, uint64_t seq, uint32_t len,
                       const uint8_t **data) {
  const struct rill__chan_geom *g = &ch->g;
  uint32_t desc[2]; /* chunk index, class */
  memcpy(desc, sl + 1, sizeof desc);
  uint64_t owner = 0;
  struct rill__ipc_chunk *ck = NULL;
  if (desc[1] < g->nclasses && desc[0] < g->cls[desc[1]].chunks) {
    if (desc[0] != seq % g->cls[desc[1]].chunks)
      return rill__err(RILL_ECORRUPT, "ipc channel %s: message %llu names chunk %u of class %u",
                       ch->name, (unsigned long long)seq, desc[0], desc[1]);
    ck = rill__ipc_chunk_in(ch->base, &g->cls[desc[1]], desc[0]);
    /* Relaxed: ordered by the mark's acquire load (the sender stored it
     * before the mark's release CAS). */
    owner = __atomic_load_n(&ck->owner, __ATOMIC_RELAXED);
  }
  int rc =
      rill__ipc_pool_check(KIND, ch->name, g->cls, g->nclasses, seq, desc[1], desc[0], len, owner);
  if (rc == 0)
    *data = (const uint8_t *)(ck + 1);
  return rc;
}

static int deliver(rill_ipc_chan_t *ch, struct rill__ipc_slot *sl, uint64_t seq,
                   rill_ipc_msg_t *m) {
  uint32_t len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
  /* Relaxed: ordered by the mark's acquire load, as the length. */
  uint32_t flags = __atomic_load_n(&sl->flags, __ATOMIC_RELAXED);
  const uint8_t *data = (const uint8_t *)(sl + 1);
  if (RILL_UNLIKELY(flags & RILL__IPC_SLOT_POOL)) {
    int rc = pooled_view(ch, sl, seq, len, &data);
    if (rc)
      return rc;
  } else if (RILL_UNLIKELY(len > ch->g.slot_size - RILL_IPC_SLOT_HDR)) {
    return rill__err(RILL_ECORRUPT, "ipc channel %s: message %llu says %u bytes, a slot holds %u",
                     ch->name, (unsigned long long)seq, len, ch->g.slot_size - RILL_IPC_SLOT_HDR);
  }
  m->data = data;
  m->len = len;
  m->seq = seq;
  ch->held = true;
  return 0;
}

static int try_broadcast(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  const uint64_t c = ch->cur;
  struct rill__ipc_slot *sl = slot_at(ch, c);
  /* Acquire: pairs with the sender's release CAS of the mark. */
  uint64_t mark = __atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE);
  if (mark == c + 1) {
    int rc = deliver(ch, sl, c, m);
    if (rc == 0)
      ch->cur = c + 1;
    return rc;
  }
  if (mark != (RILL__CHAN_ABORTED | (c + 1))) {
    if ((mark & ~RILL__CHAN_ABORTED) > c + 1)
      return rill__err(RILL_ECORRUPT, "ipc channel %s: slot of message %llu marked %llu", ch->name,
                       (unsigned long long)c, (unsigned long long)mark);
    /* Acquire: pairs with the senders' CAS of claim (their pending). */
    if (__atomic_load_n(&ch->hdr->claim, __ATOMIC_ACQUIRE) <= c)
      return RILL_EAGAIN;
    if (!abort_if_orphaned(ch, c, mark))
      return RILL_EAGAIN;
  }
  ch->cur = c + 1;
  /* Release: as in advance; nothing of the slot was read. */
  __atomic_store_n(&ch->me->cursor, ch->cur, __ATOMIC_RELEASE);
  return lost_one(ch, c, lost);
}

/* A hold stored for a CAS that failed must not stay: a stale cursor would
 * hold the senders back while we park. */
static int drop_hold(rill_ipc_chan_t *ch, bool held) {
  if (held)
    /* Release: as every cursor store. */
    __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
  return RILL_EAGAIN;
}

/* The next message off the shared counter. */
static int take_next(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  struct rill__chan_hdr *h = ch->hdr;
  bool held = false;
  for (;;) {
    /* Acquire, both: pair with the receivers' and senders' CASes. */
    uint64_t c = __atomic_load_n(&h->consumed, __ATOMIC_ACQUIRE);
    if (c >= __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE))
      return drop_hold(ch, held);
    struct rill__ipc_slot *sl = slot_at(ch, c);
    /* Acquire: pairs with the sender's release CAS of the mark. */
    uint64_t mark = __atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE);
    bool aborted = mark == (RILL__CHAN_ABORTED | (c + 1));
    if (mark != c + 1 && !aborted) {
      if (__atomic_load_n(&h->consumed, __ATOMIC_ACQUIRE) != c)
        continue; /* taken meanwhile: the slot may hold a later lap */
      if (!abort_if_orphaned(ch, c, mark))
        return drop_hold(ch, held);
      aborted = true;
    }
    /* Relaxed: published by the CAS below (release): a sender that sees
     * consumed past c sees our hold of c. TAKING until we know the CAS
     * won: a reaper must not take it for a message we had (file comment). */
    __atomic_store_n(&ch->me->cursor, RILL__CHAN_TAKING | c, __ATOMIC_RELAXED);
    held = true;
    if (!__atomic_compare_exchange_n(&h->consumed, &c, c + 1, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
      continue;
    if (aborted) {
      /* Release: as every cursor store; nothing of the slot was read. */
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
      return lost_one(ch, c, lost);
    }
    /* Relaxed: the same hold for the scans; only a reaper of ours (we are
     * dead then) tells the two apart. */
    __atomic_store_n(&ch->me->cursor, c, __ATOMIC_RELAXED);
    int rc = deliver(ch, sl, c, m);
    if (rc)
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
    return rc;
  }
}

/* Hands out seq s again: our cursor holds it (TAKING | s or s), adopted
 * from a dead receiver that had taken it. Its slot has been held since
 * that take, so its mark is still s + 1 (or aborted, taken by the dead
 * receiver and not reported). */
static int redeliver(rill_ipc_chan_t *ch, uint64_t s, rill_ipc_msg_t *m, uint64_t *lost) {
  struct rill__ipc_slot *sl = slot_at(ch, s);
  /* Acquire: pairs with the sender's release CAS of the mark. */
  uint64_t mark = __atomic_load_n(&sl->mark, __ATOMIC_ACQUIRE);
  if (mark == s + 1) {
    /* Relaxed: the hold is confirmed ours (a reaper of ours hands s out
     * again); published with the bump below. */
    __atomic_store_n(&ch->me->cursor, s, __ATOMIC_RELAXED);
    /* Release: pairs with the scans' acquire loads before and after their
     * look (scan()): our hold is visible to one that saw the bump. */
    __atomic_fetch_add(&ch->hdr->redelivered, 1, __ATOMIC_RELEASE);
    int rc = deliver(ch, sl, s, m);
    if (rc == 0) {
      m->flags = RILL_IPC_REDELIVERED;
      return 0;
    }
    /* Release: as every cursor store. */
    __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
    return rc;
  }
  /* Release: as every cursor store; nothing of the slot was read. */
  __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
  if (mark == (RILL__CHAN_ABORTED | (s + 1)))
    return lost_one(ch, s, lost);
  return rill__err(RILL_ECORRUPT,
                   "ipc channel %s: message %llu, held by a dead receiver, has its slot marked "
                   "%llu",
                   ch->name, (unsigned long long)s, (unsigned long long)mark);
}

/* Adopts an orphan and hands its message out again (file comment):
 * RILL_EAGAIN when there is none to adopt. */
static int try_adopt(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  struct rill__ipc_place *rx = receivers(ch);
  for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
    struct rill__ipc_place *p = &rx[i];
    /* Acquire: pairs with the reaper's release store of ORPHAN, after its
     * store of the cursor. */
    uint64_t st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) != RILL__IPC_ORPHAN)
      continue;
    uint64_t s = __atomic_load_n(&p->cursor, __ATOMIC_RELAXED);
    if (s >= RILL__CHAN_TAKING)
      continue; /* no plain hold: not an orphan we made; left to be seen */
    /* Relaxed: published by the bump of redelivered (release) if we win.
     * TAKING: should we die before confirming it, our reaper frees our
     * place, and the orphan's (claimed by a dead process, its cursor a
     * plain s) is made an orphan again: one holder of s either way. */
    __atomic_store_n(&ch->me->cursor, RILL__CHAN_TAKING | s, __ATOMIC_RELAXED);
    uint64_t ours = RILL__IPC_ST(RILL__IPC_CLAIMING, RILL__IPC_ST_GEN(st) + 1, (uint32_t)getpid());
    /* A CAS from exactly the orphan we saw: of two adopters one wins, and
     * a place freed and retaken meanwhile has another generation. Acquire:
     * as the load above. */
    if (!__atomic_compare_exchange_n(&p->state, &st, ours, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
      /* Release: as every cursor store; the slot was not read. */
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
      continue;
    }
    /* Relaxed: a hint to look, counted up before the ORPHAN word. */
    __atomic_fetch_sub(&ch->hdr->orphans, 1, __ATOMIC_RELAXED);
    int rc = redeliver(ch, s, m, lost);
    /* Release, both: the hold is ours (or given up) before the orphan
     * gives it up, after the bump a scan checks (file comment); a free
     * queue place shows NONE. */
    __atomic_store_n(&p->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
    __atomic_store_n(&p->state, RILL__IPC_ST(RILL__IPC_FREE, RILL__IPC_ST_GEN(ours), 0),
                     __ATOMIC_RELEASE);
    if (rc != RILL_EAGAIN)
      return rc;
  }
  return RILL_EAGAIN;
}

/* Looks for dead receivers holding a message (at most once every
 * CHECK_EVERY_MS), so that it is handed out again even when no sender
 * waits for room. Each check reads /proc: with nothing to take (all) we
 * check every holder, else only the next one round the table, so that a
 * busy receiver reads /proc once a millisecond at most however many
 * receivers there are. True when an orphan was made. */
static bool reap_holders(rill_ipc_chan_t *ch, bool all) {
  uint64_t ms = rill_time_coarse_ms();
  if (ms - ch->reaped_ms < CHECK_EVERY_MS)
    return false;
  ch->reaped_ms = ms;
  bool made = false;
  struct rill__ipc_place *rx = receivers(ch);
  const uint32_t n = ch->g.max_receivers;
  for (uint32_t j = 0; j < n; j++) {
    uint32_t i = (ch->reap_next + j) % n;
    if (&rx[i] == ch->me)
      continue;
    /* Acquire: pairs with the holder's release store of TAKEN (its start). */
    uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
    unsigned phase = RILL__IPC_ST_PHASE(st);
    if (phase != RILL__IPC_TAKEN && phase != RILL__IPC_CLAIMING)
      continue;
    /* Relaxed: a hint for whom to check; the reap decides on its own loads. */
    if (__atomic_load_n(&rx[i].cursor, __ATOMIC_RELAXED) >= RILL__CHAN_TAKING)
      continue; /* holds no message (or is taking one: its CAS decides) */
    made |= reap_receiver(ch, &rx[i], st) == REAP_ORPHANED;
    if (!all) {
      ch->reap_next = (i + 1) % n;
      break;
    }
  }
  return made;
}

static int try_queue(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  if (RILL_UNLIKELY(ch->adopted)) {
    ch->adopted = false; /* opened on an orphan: its message first */
    return redeliver(ch, ch->adopted_seq, m, lost);
  }
  /* The clock every 64th call: it costs as much as the rest of a take. */
  if (RILL_UNLIKELY((ch->takes++ & 63) == 0))
    reap_holders(ch, false);
  /* Relaxed: a hint; try_adopt loads each state with acquire. Orphans
   * before new messages. */
  if (RILL_UNLIKELY(__atomic_load_n(&ch->hdr->orphans, __ATOMIC_RELAXED))) {
    int rc = try_adopt(ch, m, lost);
    if (rc != RILL_EAGAIN)
      return rc;
  }
  int rc = take_next(ch, m, lost);
  if (rc == RILL_EAGAIN && reap_holders(ch, true))
    rc = try_adopt(ch, m, lost);
  return rc;
}

/* Open, queue receiver: frees place p if its holder is dead and held no
 * message (reap_receiver; a generic reap would lose it), for
 * rill__ipc_claim_place_with. */
static bool reap_free(void *ch, struct rill__ipc_place *p, uint64_t st) {
  return reap_receiver(ch, p, st) == REAP_FREED;
}

/* Open, queue receiver, no place free: takes orphan p with its hold; the
 * first recv hands the message out again. The cursor is never touched:
 * claiming, then taken, the place holds it throughout for the scans. */
static bool adopt_place(rill_ipc_chan_t *ch, struct rill__ipc_place *p) {
  /* Acquire: pairs with the reaper's release store of ORPHAN. */
  uint64_t st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
  if (RILL__IPC_ST_PHASE(st) != RILL__IPC_ORPHAN)
    return false;
  uint64_t s = __atomic_load_n(&p->cursor, __ATOMIC_RELAXED);
  if (s >= RILL__CHAN_TAKING)
    return false;
  /* seq_cst: as rill__ipc_claim_place; from exactly the orphan seen (its
   * cursor s with it), as try_adopt. */
  if (!rill__ipc_claim_from(p, st, &ch->mine))
    return false;
  /* Relaxed: a hint to look, counted up before the ORPHAN word. */
  __atomic_fetch_sub(&ch->hdr->orphans, 1, __ATOMIC_RELAXED);
  ch->adopted = true;
  ch->adopted_seq = s;
  return true;
}

/* Close, queue receiver opened on an orphan whose message it never asked
 * for: the place goes back to ORPHAN (its cursor still holds the message)
 * for another receiver. */
static void leave_orphan(rill_ipc_chan_t *ch) {
  struct rill__chan_hdr *h = ch->hdr;
  uint64_t mine = ch->mine;
  /* Relaxed: counted up before the ORPHAN word, as a reaper does. */
  __atomic_fetch_add(&h->orphans, 1, __ATOMIC_RELAXED);
  /* Release: pairs with the adopters' acquire loads of the state. */
  if (!__atomic_compare_exchange_n(&ch->me->state, &mine,
                                   RILL__IPC_ST(RILL__IPC_ORPHAN, RILL__IPC_ST_GEN(mine), 0), false,
                                   __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
    __atomic_fetch_sub(&h->orphans, 1, __ATOMIC_RELAXED); /* not ours: never, alive */
    return;
  }
  wake_receivers(ch);
}

static int try_recv(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  int rc = ch->g.delivery == RILL_IPC_QUEUE ? try_queue(ch, m, lost) : try_broadcast(ch, m, lost);
  /* Nothing left to read of a removed channel: nothing more can come. */
  if (RILL_UNLIKELY(rc == RILL_EAGAIN) && removed(ch))
    return closed_err(ch);
  return rc;
}

/* Gives back the view held: the cursor moves on, a sender waiting for
 * room is woken. */
static void advance(rill_ipc_chan_t *ch) {
  uint64_t v = ch->g.delivery == RILL_IPC_QUEUE ? RILL__CHAN_NONE : ch->cur;
  /* Release: pairs with the senders' acquire load of our cursor in their
   * scan; our reads of the slot happen before it is overwritten. */
  __atomic_store_n(&ch->me->cursor, v, __ATOMIC_RELEASE);
  wake_senders(ch);
}

/* After our cursor moved: wakes a sender parked for room. */
static void wake_senders(rill_ipc_chan_t *ch) {
  struct rill__chan_hdr *h = ch->hdr;
  /* seq_cst: pairs with the fence a sender makes after counting itself a
   * waiter: it sees our cursor, or we see its count. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  rill__ipc_wake(&h->send_waiters, &h->send_want, &h->send_futex);
}

int rill_ipc_chan_recv(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t timeout_ns,
                       uint64_t *lost) {
  if (RILL_UNLIKELY(!ch || !m))
    return rill__err(RILL_EINVAL, "ipc channel recv: %s is NULL",
                     ch ? "the message" : "the channel");
  if (RILL_UNLIKELY(ch->role != RILL_IPC_RECEIVER))
    return rill__err(RILL_EINVAL, "ipc channel %s: recv on a sender", ch->name);
  if (lost)
    *lost = 0;
  m->flags = 0;
  if (ch->held) {
    ch->held = false;
    advance(ch);
  }
  int rc = try_recv(ch, m, lost);
  if (rc != RILL_EAGAIN || timeout_ns == 0)
    return rc;
  struct rill__chan_hdr *h = ch->hdr;
  uint64_t now = rill_time_mono_ns();
  uint64_t deadline = rill__deadline(now, timeout_ns);
  if (ch->g.wait == RILL_IPC_SPIN) {
    uint64_t spin_until = rill__deadline(now, ch->g.spin_ns);
    while (now < spin_until && now < deadline) {
      for (int i = 0; i < 64; i++) {
        rill__cpu_relax();
        rc = try_recv(ch, m, lost);
        if (rc != RILL_EAGAIN)
          return rc;
      }
      now = rill_time_mono_ns();
    }
  }
  for (;;) {
    now = rill_time_mono_ns();
    if (now >= deadline)
      return rill__err(RILL_ETIMEDOUT, "ipc channel %s: no message in %llu ns", ch->name,
                       (unsigned long long)timeout_ns);
    /* Acquire: pairs with the sender's release bump. */
    uint32_t w = __atomic_load_n(&h->recv_futex, __ATOMIC_ACQUIRE);
    __atomic_fetch_add(&h->recv_waiters, 1, __ATOMIC_SEQ_CST);
    /* Relaxed: read only by a reaper after we are dead. */
    __atomic_store_n(&ch->me->parked, 1, __ATOMIC_RELAXED);
    /* Relaxed: ordered before our look by the fence below. */
    __atomic_store_n(&h->recv_want, 1, __ATOMIC_RELAXED);
    /* seq_cst: pairs with the sender's fence after its commit: we see its
     * mark, or it sees our count. */
    RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
    rc = try_recv(ch, m, lost);
    if (rc == RILL_EAGAIN) {
      /* A slice at a time: a claimer may die without waking anyone. */
      uint64_t left = deadline - now;
      rill__futex_wait_shared(&h->recv_futex, w, left < PARK_SLICE ? left : PARK_SLICE);
    }
    __atomic_store_n(&ch->me->parked, 0, __ATOMIC_RELAXED);
    /* Relaxed: only a hint for wakers. */
    __atomic_fetch_sub(&h->recv_waiters, 1, __ATOMIC_RELAXED);
    if (rc != RILL_EAGAIN)
      return rc;
    rc = try_recv(ch, m, lost);
    if (rc != RILL_EAGAIN)
      return rc;
  }
}

int rill_ipc_chan_release(rill_ipc_chan_t *ch) {
  if (RILL_UNLIKELY(!ch))
    return rill__err(RILL_EINVAL, "ipc channel release: the channel is NULL");
  if (RILL_UNLIKELY(ch->role != RILL_IPC_RECEIVER))
    return rill__err(RILL_EINVAL, "ipc channel %s: release on a sender", ch->name);
  if (!ch->held)
    return rill__err(RILL_EINVAL, "ipc channel %s: release with no message held", ch->name);
  ch->held = false;
  advance(ch);
  return 0;
}

/* ---- the rest ------------------------------------------------------------------ */

int rill_ipc_chan_unlink(const char *name) { return rill__ipc_shm_unlink(KIND, name); }

int rill_ipc_chan_info(const char *name, rill_ipc_chan_info_t *info) {
  if (!info)
    return rill__err(RILL_EINVAL, "ipc channel info: info is NULL");
  return rill__ipc_info(KIND, name, info);
}

struct lister {
  rill_ipc_chan_list_cb fn;
  void *ctx;
  rill_ipc_chan_info_t info; /* the segment of the call */
};

static int list_one(void *arg) {
  struct lister *l = arg;
  return l->fn(l->ctx, &l->info);
}

int rill_ipc_chan_list(rill_ipc_chan_list_cb fn, void *ctx) {
  if (!fn)
    return rill__err(RILL_EINVAL, "ipc channel list: fn is NULL");
  struct lister l = {.fn = fn, .ctx = ctx};
  return rill__ipc_list(KIND, "ipc channel list", &l.info, list_one, &l);
}
