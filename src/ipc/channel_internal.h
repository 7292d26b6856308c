/*
 * The channel's private structures and the functions its files share.
 * Nothing here is exported (rill__chan_*, hidden). The helpers every send
 * or receive calls (slot_at, the wakes, deliver) are static inline here,
 * as they were when the channel was one file: the files are channel_open.c,
 * channel_send.c (reserve, commit, cancel), channel_recv.c (recv, release,
 * the wait), channel_redeliver.c (queue redelivery), channel_reap.c (dead
 * peers) and channel_info.c (unlink, info, list).
 *
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
#ifndef RILL_IPC_CHANNEL_INTERNAL_H
#define RILL_IPC_CHANNEL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
  rill_ipc_role_t role;
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

/* Whether the channel was removed (rill_ipc_chan_unlink). Acquire: pairs
 * with the remover's release. */
static inline bool removed(const rill_ipc_chan_t *ch) {
  return __atomic_load_n(&ch->hdr->gone, __ATOMIC_ACQUIRE) & RILL__IPC_REMOVED;
}

/* After a commit (or an orphan made): wakes a receiver parked for one. */
static inline void wake_receivers(rill_ipc_chan_t *ch) {
  struct rill__chan_hdr *h = ch->hdr;
  /* seq_cst: pairs with the fence a receiver makes after counting itself
   * a waiter: it sees the mark (the orphan), or we see its count. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  rill__ipc_wake(&h->recv_waiters, &h->recv_want, &h->recv_futex);
}

/* After our cursor moved: wakes a sender parked for room. */
static inline void wake_senders(rill_ipc_chan_t *ch) {
  struct rill__chan_hdr *h = ch->hdr;
  /* seq_cst: pairs with the fence a sender makes after counting itself a
   * waiter: it sees our cursor, or we see its count. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  rill__ipc_wake(&h->send_waiters, &h->send_want, &h->send_futex);
}

enum { RILL__CHAN_REAP_NOTHING, RILL__CHAN_REAP_FREED, RILL__CHAN_REAP_ORPHANED };

/* channel_open.c */
int rill__chan_closed_err(const rill_ipc_chan_t *ch);

/* channel_send.c */
uint32_t rill__chan_count_ready(rill_ipc_chan_t *ch, bool live);
void rill__chan_cancel(rill_ipc_chan_t *ch);

/* channel_recv.c */
int rill__chan_lost_one(rill_ipc_chan_t *ch, uint64_t seq, uint64_t *lost);
int rill__chan_pooled_view(rill_ipc_chan_t *ch, struct rill__ipc_slot *sl, uint64_t seq,
                           uint32_t len, const uint8_t **data);

/* channel_reap.c */
int rill__chan_reap_receiver(rill_ipc_chan_t *ch, struct rill__ipc_place *p, uint64_t st);
bool rill__chan_reap_laggards(rill_ipc_chan_t *ch, uint64_t c, uint64_t limit);
bool rill__chan_abort_if_orphaned(rill_ipc_chan_t *ch, uint64_t seq, uint64_t mark);
bool rill__chan_reap_holders(rill_ipc_chan_t *ch, bool all);
bool rill__chan_reap_free(void *ch, struct rill__ipc_place *p, uint64_t st);

/* channel_redeliver.c */
int rill__chan_redeliver(rill_ipc_chan_t *ch, uint64_t s, rill_ipc_msg_t *m, uint64_t *lost);
int rill__chan_try_adopt(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t *lost);
bool rill__chan_adopt_place(rill_ipc_chan_t *ch, struct rill__ipc_place *p);
void rill__chan_leave_orphan(rill_ipc_chan_t *ch);

/* The view of message seq in slot sl, whose mark was seen as seq + 1. */
static inline int deliver(rill_ipc_chan_t *ch, struct rill__ipc_slot *sl, uint64_t seq,
                          rill_ipc_msg_t *m) {
  uint32_t len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
  /* Relaxed: ordered by the mark's acquire load, as the length. */
  uint32_t flags = __atomic_load_n(&sl->flags, __ATOMIC_RELAXED);
  const uint8_t *data = (const uint8_t *)(sl + 1);
  if (RILL_UNLIKELY(flags & RILL__IPC_SLOT_POOL)) {
    int rc = rill__chan_pooled_view(ch, sl, seq, len, &data);
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

#endif
