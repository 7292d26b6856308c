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
 * Joining (broadcast) and parking follow the route's protocol (route.c's
 * file comment): seq_cst fences on both sides, one wake a park.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/internal.h"
#include "ipc/segment.h"
#include "rill/ipc.h"

/* As in route.c: under TSan a seq_cst exchange stands in for a fence. */
#if defined(__SANITIZE_THREAD__)
#define CHAN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHAN_TSAN 1
#endif
#endif
#ifdef CHAN_TSAN
static uint32_t tsan_fence_word;
#define FENCE(order) ((void)__atomic_exchange_n(&tsan_fence_word, 0, __ATOMIC_SEQ_CST))
#else
#define FENCE(order) __atomic_thread_fence(order)
#endif

#define KIND           "channel"
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
  uint64_t mine;     /* our state word */
  uint64_t min_seen; /* sender: the lowest bound of the last scan */
  uint64_t cur;      /* broadcast receiver: the next seq to return */
  bool held;         /* receiver: a view is out */
  uint64_t checked_ms;
  char name[RILL_IPC_MAX_NAME + 1];
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static inline struct rill__ipc_slot *slot_at(const rill_ipc_chan_t *ch, uint64_t seq) {
  return (struct rill__ipc_slot *)(void *)(ch->ring + (seq & ch->mask) * ch->g.slot_size);
}

static uint64_t deadline_after(uint64_t now, uint64_t ns) {
  return ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
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
  if (!RILL__IS_POW2(g->slots) || g->slots < RILL__IPC_MIN_SLOTS || g->slots > RILL__IPC_MAX_SLOTS)
    return rill__err(RILL_EINVAL, "ipc channel %s: %u slots, not a power of two in 2..2^24", name,
                     g->slots);
  if (g->slot_size % 64 || g->slot_size < RILL__IPC_MIN_SLOT || g->slot_size > RILL__IPC_MAX_SLOT)
    return rill__err(RILL_EINVAL, "ipc channel %s: slot size %u, not a multiple of 64 in 64..1 MiB",
                     name, g->slot_size);
  if (g->max_senders > RILL_IPC_MAX_SENDERS)
    return rill__err(RILL_EINVAL, "ipc channel %s: max senders %u, not in 1..%u", name,
                     g->max_senders, RILL_IPC_MAX_SENDERS);
  if (g->max_receivers > RILL_IPC_MAX_RECEIVERS)
    return rill__err(RILL_EINVAL, "ipc channel %s: max receivers %u, not in 1..%u", name,
                     g->max_receivers, RILL_IPC_MAX_RECEIVERS);
  if (*mode & ~(mode_t)0777)
    return rill__err(RILL_EINVAL, "ipc channel %s: mode %o has bits beyond 0777", name,
                     (unsigned)*mode);
  rill__chan_layout(g);
  return 0;
}

static int opts_agree(const rill_ipc_chan_t *ch, const rill_ipc_chan_opts_t *o) {
  if (!o)
    return 0;
  const struct rill__chan_geom *g = &ch->g;
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

static int create(rill_ipc_chan_t *ch, const struct rill__chan_geom *g, mode_t mode) {
  int rc = rill__ipc_shm_create(KIND, ch->name, g->total, mode, &ch->base);
  if (rc)
    return rc;
  ch->size = (size_t)g->total;
  ch->g = *g;
  bind(ch);
  /* ftruncate gave zeros: counters, places and marks all start at 0. */
  struct rill__chan_hdr *h = ch->hdr;
  h->version = RILL_IPC_CHAN_VERSION;
  h->policy = g->policy;
  h->wait = g->wait;
  h->slots = g->slots;
  h->slot_size = g->slot_size;
  h->max_senders = g->max_senders;
  h->max_receivers = g->max_receivers;
  h->total = g->total;
  h->spin_ns = g->spin_ns;
  h->delivery = g->delivery;
  for (uint32_t i = 0; i < g->max_receivers; i++)
    receivers(ch)[i].cursor = RILL__CHAN_NONE;
  /* Release: pairs with the attacher's acquire load of the magic; the
   * header above is complete before anyone trusts it. */
  __atomic_store_n(&h->magic, RILL_IPC_CHAN_MAGIC, __ATOMIC_RELEASE);
  return 0;
}

static int attach(rill_ipc_chan_t *ch) {
  int rc = rill__ipc_shm_attach(KIND, ch->name, true, true, &ch->base, &ch->size);
  if (rc)
    return rc;
  rc = rill__chan_check(ch->name, ch->base, ch->size, &ch->g);
  if (rc) {
    rill__ipc_shm_unmap(ch->base, ch->size);
    ch->base = NULL;
    return rc;
  }
  bind(ch);
  return 0;
}

/* ---- open and close ---------------------------------------------------------- */

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
  /* Create, or attach to what a racing creator made; a channel unlinked
   * between the two gets a few more tries. */
  for (int tries = 0;; tries++) {
    rc = create(ch, &g, mode);
    if (rc != RILL_EEXIST)
      break;
    rc = attach(ch);
    if (rc != RILL_ENOENT || tries == 8)
      break;
  }
  if (rc)
    goto free_handle;
  rc = opts_agree(ch, opts);
  if (rc)
    goto unmap;
  struct rill__chan_hdr *h = ch->hdr;
  bool sender = role == RILL_IPC_SENDER;
  struct rill__ipc_place *pl = sender ? ch->places : receivers(ch);
  uint32_t n = sender ? ch->g.max_senders : ch->g.max_receivers;
  uint32_t *waiters = sender ? &h->send_waiters : &h->recv_waiters;
  for (uint32_t i = 0; i < n && !ch->me; i++)
    if (rill__ipc_claim_place(&pl[i], waiters, &ch->mine))
      ch->me = &pl[i];
  if (!ch->me) {
    rc = rill__err(RILL_EBUSY, "ipc channel %s: its %u %s places are held by live processes", name,
                   n, sender ? "sender" : "receiver");
    goto unmap;
  }
  __atomic_store_n(&ch->me->start, rill__ipc_self_start(), __ATOMIC_RELAXED); /* by take */
  if (sender || g.delivery == RILL_IPC_QUEUE) {
    /* A sender's pending claim, a queue receiver's hold: none. */
    __atomic_store_n(&ch->me->cursor, sender ? 0 : RILL__CHAN_NONE, __ATOMIC_RELAXED);
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
  ch->mine = rill__ipc_take_place(ch->me, ch->mine);
  /* seq_cst: pairs with the fence in a sender's scan: it sees our place,
   * or we now see every claim it scanned under. */
  FENCE(__ATOMIC_SEQ_CST);
  uint64_t c2 = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
  if (c2 != c) {
    c = c2;
    /* Release: as every cursor store (advance). */
    __atomic_store_n(&ch->me->cursor, c, __ATOMIC_RELEASE);
  }
  ch->cur = c;
  *out = ch;
  return 0;
unmap:
  rill__ipc_shm_unmap(ch->base, ch->size);
free_handle:
  rill__free(ch);
  return rc;
}

uint32_t rill_ipc_chan_max_payload(const rill_ipc_chan_t *ch) {
  return ch ? ch->g.slot_size - RILL_IPC_SLOT_HDR : 0;
}

void rill_ipc_chan_close(rill_ipc_chan_t *ch) {
  if (!ch)
    return;
  struct rill__chan_hdr *h = ch->hdr;
  rill__ipc_leave_place(ch->me, ch->mine);
  /* seq_cst: as in advance(); a sender waiting for us stops waiting. */
  FENCE(__ATOMIC_SEQ_CST);
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
  FENCE(__ATOMIC_SEQ_CST);
  uint64_t min = c;
  if (ch->g.delivery == RILL_IPC_QUEUE) {
    /* Acquire: pairs with the receivers' CAS of consumed (release); the
     * cursor a receiver stored before its CAS is visible below. */
    uint64_t k = __atomic_load_n(&ch->hdr->consumed, __ATOMIC_ACQUIRE);
    if (k < min)
      min = k;
  }
  struct rill__ipc_place *rx = receivers(ch);
  for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
    /* Acquire: pairs with the receiver's release store of TAKEN. */
    uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) != RILL__IPC_TAKEN)
      continue;
    /* Acquire: pairs with the receiver's release stores of its cursor; its
     * reads of the slots below happen before we overwrite them. */
    uint64_t v = __atomic_load_n(&rx[i].cursor, __ATOMIC_ACQUIRE);
    if (v < min)
      min = v; /* NONE (holds nothing) and cursors from the future are above c */
  }
  ch->min_seen = min;
  return min;
}

/* Reaps the dead receivers that hold back seq c; true when one was. */
static bool reap_laggards(rill_ipc_chan_t *ch, uint64_t c) {
  bool any = false;
  struct rill__ipc_place *rx = receivers(ch);
  for (uint32_t i = 0; i < ch->g.max_receivers; i++) {
    uint64_t st = __atomic_load_n(&rx[i].state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_FREE)
      continue;
    uint64_t v = __atomic_load_n(&rx[i].cursor, __ATOMIC_RELAXED);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_TAKEN && (v == RILL__CHAN_NONE || c - v < ch->g.slots))
      continue;
    if (rill__ipc_reap_if_dead(&rx[i], st, &ch->hdr->recv_waiters))
      any = true;
  }
  return any;
}

/* Waits for room for seq c (reaping dead receivers meanwhile): 0, or
 * RILL_EFULL / RILL_ETIMEDOUT. The caller loads claim again after. */
struct waiting {
  bool timed;
  uint64_t deadline, spin_until;
};

static int wait_room(rill_ipc_chan_t *ch, uint64_t c, struct waiting *wt, uint64_t timeout_ns) {
  const uint64_t slots = ch->g.slots;
  struct rill__chan_hdr *h = ch->hdr;
  if (c - scan(ch, c) < slots)
    return 0;
  uint64_t ms = rill_time_coarse_ms();
  if (ms - ch->checked_ms >= CHECK_EVERY_MS) {
    ch->checked_ms = ms; /* not at every look: /proc is read for each laggard */
    if (reap_laggards(ch, c) && c - scan(ch, c) < slots)
      return 0;
  }
  if (ch->g.policy == RILL_IPC_FAIL)
    return rill__err(RILL_EFULL, "ipc channel %s: %llu messages not finished with", ch->name,
                     (unsigned long long)slots);
  uint64_t now = rill_time_mono_ns();
  if (!wt->timed) {
    wt->timed = true;
    wt->deadline = deadline_after(now, timeout_ns);
    wt->spin_until = ch->g.wait == RILL_IPC_SPIN ? deadline_after(now, ch->g.spin_ns) : now;
  }
  if (now >= wt->deadline)
    return rill__err(RILL_ETIMEDOUT, "ipc channel %s: %llu messages not finished with", ch->name,
                     (unsigned long long)slots);
  if (now < wt->spin_until) {
    cpu_relax();
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

int rill_ipc_chan_send(rill_ipc_chan_t *ch, const void *data, uint32_t len, uint64_t timeout_ns) {
  if (RILL_UNLIKELY(!ch || (!data && len)))
    return rill__err(RILL_EINVAL, "ipc channel send: %s is NULL", ch ? "data" : "the channel");
  if (RILL_UNLIKELY(ch->role != RILL_IPC_SENDER))
    return rill__err(RILL_EINVAL, "ipc channel %s: send on a receiver", ch->name);
  if (RILL_UNLIKELY(len > ch->g.slot_size - RILL_IPC_SLOT_HDR))
    return rill__err(RILL_EMSGSIZE,
                     "ipc channel %s: a message of %u bytes, over the %u a slot holds", ch->name,
                     len, ch->g.slot_size - RILL_IPC_SLOT_HDR);
  struct rill__chan_hdr *h = ch->hdr;
  struct waiting wt = {0};
  /* Acquire: pairs with the other senders' CAS of claim. */
  uint64_t c = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
  for (;;) {
    if (c - ch->min_seen >= ch->g.slots || c < ch->min_seen) {
      int rc = wait_room(ch, c, &wt, timeout_ns);
      if (rc < 0)
        return rc;
      if (rc > 0) {
        c = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
        continue;
      }
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
  /* Relaxed: the slot's last lap is finished with (room), so its mark is
   * stable until our commit or a receiver's abort. */
  uint64_t old = __atomic_load_n(&sl->mark, __ATOMIC_RELAXED);
  if (len)
    memcpy(sl + 1, data, len);
  __atomic_store_n(&sl->len, len, __ATOMIC_RELAXED);
  /* Release: pairs with the receivers' acquire load of the mark; payload
   * and length are visible once it reads c + 1. The publication point. A
   * CAS, so that a receiver's abort (it took us for dead) is never undone. */
  if (!__atomic_compare_exchange_n(&sl->mark, &old, c + 1, false, __ATOMIC_RELEASE,
                                   __ATOMIC_RELAXED))
    return rill__err(RILL_EPROTO, "ipc channel %s: message %llu was aborted before its commit",
                     ch->name, (unsigned long long)c);
  /* seq_cst: pairs with the fence a receiver makes after counting itself
   * a waiter: it sees the mark, or we see its count. */
  FENCE(__ATOMIC_SEQ_CST);
  if (RILL_UNLIKELY(__atomic_load_n(&h->recv_waiters, __ATOMIC_RELAXED)) &&
      __atomic_exchange_n(&h->recv_want, 0, __ATOMIC_RELAXED))
    rill__futex_bump_shared(&h->recv_futex);
  return 0;
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

static int deliver(rill_ipc_chan_t *ch, struct rill__ipc_slot *sl, uint64_t seq,
                   rill_ipc_msg_t *m) {
  uint32_t len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
  if (RILL_UNLIKELY(len > ch->g.slot_size - RILL_IPC_SLOT_HDR))
    return rill__err(RILL_ECORRUPT, "ipc channel %s: message %llu says %u bytes, a slot holds %u",
                     ch->name, (unsigned long long)seq, len, ch->g.slot_size - RILL_IPC_SLOT_HDR);
  m->data = (const uint8_t *)(sl + 1);
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

static int try_queue(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
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
     * consumed past c sees our hold of c. */
    __atomic_store_n(&ch->me->cursor, c, __ATOMIC_RELAXED);
    held = true;
    if (!__atomic_compare_exchange_n(&h->consumed, &c, c + 1, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
      continue;
    if (aborted) {
      /* Release: as every cursor store; nothing of the slot was read. */
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
      return lost_one(ch, c, lost);
    }
    int rc = deliver(ch, sl, c, m);
    if (rc)
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELEASE);
    return rc;
  }
}

static int try_recv(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost) {
  return ch->g.delivery == RILL_IPC_QUEUE ? try_queue(ch, m, lost) : try_broadcast(ch, m, lost);
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
  FENCE(__ATOMIC_SEQ_CST);
  if (RILL_UNLIKELY(__atomic_load_n(&h->send_waiters, __ATOMIC_RELAXED)) &&
      __atomic_exchange_n(&h->send_want, 0, __ATOMIC_RELAXED))
    rill__futex_bump_shared(&h->send_futex);
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
  if (ch->held) {
    ch->held = false;
    advance(ch);
  }
  int rc = try_recv(ch, m, lost);
  if (rc != RILL_EAGAIN || timeout_ns == 0)
    return rc;
  struct rill__chan_hdr *h = ch->hdr;
  uint64_t now = rill_time_mono_ns();
  uint64_t deadline = deadline_after(now, timeout_ns);
  if (ch->g.wait == RILL_IPC_SPIN) {
    uint64_t spin_until = deadline_after(now, ch->g.spin_ns);
    while (now < spin_until && now < deadline) {
      for (int i = 0; i < 64; i++) {
        cpu_relax();
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
    FENCE(__ATOMIC_SEQ_CST);
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

/* ---- the rest ------------------------------------------------------------------ */

int rill_ipc_chan_unlink(const char *name) { return rill__ipc_shm_unlink(KIND, name); }

int rill_ipc_chan_info(const char *name, rill_ipc_chan_info_t *info) {
  if (!info)
    return rill__err(RILL_EINVAL, "ipc channel info: info is NULL");
  int rc = rill__ipc_name_check(KIND, name);
  if (rc)
    return rc;
  uint8_t *base;
  size_t size;
  rc = rill__ipc_shm_attach(KIND, name, false, false, &base, &size);
  if (rc)
    return rc;
  struct rill__chan_geom g;
  rc = rill__chan_check(name, base, size, &g);
  if (rc == 0) {
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", name);
    rill__chan_summary(base, &g, info);
  }
  rill__ipc_shm_unmap(base, size);
  return rc;
}

struct lister {
  int (*fn)(void *ctx, const rill_ipc_chan_info_t *info);
  void *ctx;
};

static int list_one(void *arg, const char *name) {
  struct lister *l = arg;
  rill_ipc_chan_info_t info;
  /* Not a channel (a route, a foreign segment), or gone meanwhile: skipped. */
  return rill_ipc_chan_info(name, &info) ? 0 : l->fn(l->ctx, &info);
}

int rill_ipc_chan_list(int (*fn)(void *ctx, const rill_ipc_chan_info_t *info), void *ctx) {
  if (!fn)
    return rill__err(RILL_EINVAL, "ipc channel list: fn is NULL");
  return rill__ipc_scan("ipc channel list", list_one, &(struct lister){fn, ctx});
}
