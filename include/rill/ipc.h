/*
 * rill ipc: shared-memory channels between processes, of two kinds: the
 * `route` (one sender, up to 64 receivers, every receiver getting every
 * message) and, below, the `channel` (many senders; broadcast or a work
 * queue). Small messages travel inline in a ring's slots, large ones in a
 * chunk pool of up to 8 size classes; receivers read both in place.
 *
 * The route. A route is a named POSIX shared-memory segment
 * (/dev/shm/rill.<name>) holding a header (magic, version, layout), a
 * table of participants (the sender and each receiver, each with its pid
 * and start time, so a dead one is told from a live one whose pid was
 * reused) and a ring of fixed slots. Nothing goes through the kernel on
 * the way: the sender writes a slot and publishes it with one release
 * store; a receiver reads it in place.
 *
 * Waiting: by default a waiter parks on a futex in the segment (no
 * spinning); RILL_IPC_SPIN spins spin_ns first, for the lowest latency.
 *
 * Crashes: a receiver killed at any moment is reaped by the sender as
 * soon as the sender would wait for it (its slot in the table is freed);
 * a sender killed between writing a slot and publishing it leaves
 * nothing half-published (receivers see only published slots), and a
 * new sender process takes the route over where it stopped; a restarted
 * receiver attaches to a free slot at once. No reboot, no manual
 * cleanup: `rill ipc rm NAME` removes a route nobody uses.
 *
 * Attaching checks the magic, the version and that the layout adds up
 * to the segment's size; a foreign or corrupted segment is refused with
 * RILL_EVERSION or RILL_ECORRUPT and a message, never trusted. A segment
 * whose creator died before finishing its header is RILL_ECORRUPT (after
 * waiting 200 ms for it), until `rill ipc rm` removes it. Liveness is read
 * from /proc (pid, start time; a zombie is dead): the processes of one
 * route must share a pid namespace.
 *
 * Timeouts: every timeout_ns below is a bound in nanoseconds; 0 tries
 * once without waiting, RILL_FOREVER waits with no bound.
 *
 * Handles: a route and a channel are opened alike, with one handle type
 * each (rill_ipc_route_t, rill_ipc_chan_t) and a role chosen at open
 * (RILL_IPC_SENDER or RILL_IPC_RECEIVER); the calls of the other role
 * return RILL_EINVAL. Both send, reserve / commit / cancel, recv / release,
 * send_batch / recv_batch, wait_receivers, unlink, info and list with the
 * same signatures and the same return codes, each as its header says (a
 * channel queue's recv_batch takes one message a call).
 *
 * Threads: a handle is used by one thread at a time; handles are
 * independent of each other, in one process or several.
 * docs/FORMATS.md ("IPC route segment") gives every byte and the protocol.
 *
 * Large messages (opts.max_message or opts.pool): a message over a slot's
 * payload goes into a chunk of a pool in the same segment (the one copy,
 * from the sender's buffer, or none with rill_ipc_route_reserve); its slot holds
 * the chunk's class and index, and receivers read
 * the chunk in place. A chunk is free again once every live receiver has
 * moved past its message: no refcount, and a dead receiver's hold ends
 * when it is reaped.
 *
 * The pool has up to 8 size classes (opts.pool), and rill_ipc_route_reserve /
 * rill_ipc_route_commit let a sender write a message in place, in its slot or
 * chunk: then no byte is copied from sender to receivers.
 */
#ifndef RILL_IPC_H
#define RILL_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RILL_IPC_MAGIC         0x50494c52u /* "RLIP", the segment's first bytes */
#define RILL_IPC_VERSION       3u
#define RILL_IPC_MAX_RECEIVERS 64u
#define RILL_IPC_MAX_NAME      100u /* [A-Za-z0-9._-], not starting with '.' */
#define RILL_IPC_SLOT_HDR      16u  /* bytes of each slot before its payload */
#define RILL_IPC_MAX_CLASSES   8u   /* size classes in a route's chunk pool */

/** What a sender does when the slowest live receiver is a whole ring
 *  behind. */
typedef enum rill_ipc_policy {
  RILL_IPC_BLOCK = 0, /* wait (up to the send's timeout) for room */
  RILL_IPC_FAIL,      /* return RILL_EFULL at once */
  RILL_IPC_OVERWRITE, /* never wait: the oldest slot is overwritten; a
                       * lapped receiver gets RILL_ELAGGED and the count lost */
} rill_ipc_policy_t;

/** The role a handle is opened in, on a route or a channel. */
typedef enum rill_ipc_role {
  RILL_IPC_SENDER = 1,
  RILL_IPC_RECEIVER,
} rill_ipc_role_t;

/** How a waiter waits. */
typedef enum rill_ipc_wait {
  RILL_IPC_PARK = 0, /* a futex in the segment: no CPU while waiting */
  RILL_IPC_SPIN,     /* spin spin_ns, then park */
} rill_ipc_wait_t;

/** A size class of a route's or channel's chunk pool: `chunks` chunks of
 *  up to `size` bytes each. */
typedef struct rill_ipc_class {
  uint32_t size;   /* over the slot payload, at most 1 GiB */
  uint32_t chunks; /* 1..2^20 */
} rill_ipc_class_t;

/** A route's layout and behaviour, fixed when it is created (the sender
 *  that creates it decides; later openers, in either role, must agree or
 *  get RILL_EINVAL: each of slots, slot_size, max_receivers, max_message
 *  and pool_chunks they set (non-zero), the pool classes when they give
 *  any, and the policy). wait, spin_ns and mode are the creator's, kept in
 *  the segment for every participant; a later opener's are ignored. */
typedef struct rill_ipc_opts {
  uint32_t slots;         /* ring slots, a power of two, 2..2^24; default 4096 */
  uint32_t slot_size;     /* bytes a slot takes, header included, a multiple of 64
                           * from 64 to 1 MiB; default 128 */
  uint32_t max_receivers; /* 1..64; default 64 */
  rill_ipc_policy_t policy;
  rill_ipc_wait_t wait;
  uint64_t spin_ns; /* RILL_IPC_SPIN: how long before parking; default 50 us */
  mode_t mode;      /* the segment's permissions when created (0..0777, set
                     * exactly: the umask does not apply); default 0600 */
  /* The chunk pool, for messages larger than a slot's payload: such a
   * message is written once into a chunk of shared memory (by send's copy,
   * or in place through rill_ipc_route_reserve) and receivers read it there. A
   * chunk is free again once every live receiver has moved past its
   * message (a dead one is reaped), so no refcount is kept. A message
   * takes a chunk of the smallest class that holds it, or of a larger one
   * whose next chunk is free when that class's is still held. Either
   * max_message (one class of pool_chunks chunks) or pool[] (classes). */
  /* One class of chunks this large (over the slot payload, at most 1 GiB);
   * default 0: no pool, messages inline only. With pool[]: 0, or its
   * largest size. */
  uint32_t max_message;
  /* Chunks of that class, 1..2^20; default 64 (when max_message is set);
   * 0 with pool[]. */
  uint32_t pool_chunks;
  /* Up to 8 classes in ascending size, the first {0, 0} ends them; the
   * largest is the route's max_message. */
  rill_ipc_class_t pool[RILL_IPC_MAX_CLASSES];
} rill_ipc_route_opts_t;

typedef struct rill_ipc_route rill_ipc_route_t;

/** Opens route `name` in a role. RILL_IPC_SENDER: creates it with opts if
 *  it does not exist (opts may be NULL for the defaults); RILL_EBUSY when
 *  a live process is its sender; a dead sender's place is taken over, and
 *  the route goes on from the last message it published.
 *  RILL_IPC_RECEIVER: attaches to it in a free place of its table (places
 *  of dead receivers are reaped first): RILL_ENOENT when there is no such
 *  route (a route is made by its sender: the receiver joins at its head,
 *  what the sender publishes from now on), RILL_EBUSY when max_receivers
 *  live ones are attached. Either role: an existing route must have the
 *  layout opts give (RILL_EINVAL otherwise; NULL opts take it as it is);
 *  RILL_EVERSION / RILL_ECORRUPT for a segment that is not a rill route
 *  of this version or whose layout does not add up. */
int rill_ipc_route_open(rill_ipc_route_t **out, const char *name, const rill_ipc_route_opts_t *opts,
                        rill_ipc_role_t role);

/** Sends len bytes (at most rill_ipc_route_max_message: RILL_EMSGSIZE beyond)
 *  to every receiver attached when it is published: inline in a slot up
 *  to rill_ipc_route_max_payload bytes, else through a chunk of the pool. Under
 *  RILL_IPC_BLOCK, waits up to timeout_ns (0: not at all) for the
 *  slowest live receiver (to free a slot, or the chunk a pooled message
 *  takes): RILL_ETIMEDOUT; RILL_IPC_FAIL: RILL_EFULL. Receivers that died
 *  are reaped while it would wait.
 *  RILL_EPIPE when no receiver is attached (none whose
 *  rill_ipc_route_open has returned): nothing is published, as nobody
 *  would get it (a receiver that died is counted until it is reaped: when
 *  the send would wait for it, or by rill_ipc_route_wait_receivers). To send
 *  once someone listens, rill_ipc_route_wait_receivers first. RILL_ECLOSED when
 *  the route was removed (rill_ipc_route_unlink): close the sender.
 *  RILL_EINVAL on a receiver. */
int rill_ipc_route_send(rill_ipc_route_t *rt, const void *data, uint32_t len, uint64_t timeout_ns);

/** Sends msgs[0..n) in order, as n rill_ipc_route_send would, but each run
 *  of inline messages that fits the room the sender last saw is published
 *  together: one store of head, one fence and one wake check for the run
 *  (each message is still readable from its own slot's mark on, so a
 *  receiver may start on the first before the last is written). Pooled
 *  messages, RILL_IPC_OVERWRITE and a full ring take the one-at-a-time
 *  path message by message; each wait for room is bounded by timeout_ns
 *  (0: none) as send's. *sent (may be NULL) is the number published,
 *  from the first, whatever the return: 0 when all n were (n may be 0),
 *  else the error that stopped the message msgs[*sent] (send's codes;
 *  RILL_EINVAL for one with len and no data), as sendmmsg reports
 *  partial progress. */
int rill_ipc_route_send_batch(rill_ipc_route_t *rt, const rill_iov_t *msgs, uint32_t n,
                              uint64_t timeout_ns, uint32_t *sent);

/** Waits up to timeout_ns (0: not at all) until at least n receivers
 *  (1..max_receivers) are attached, reaping dead ones so that they do not
 *  count: 0, and every message sent from then on reaches each of them.
 *  RILL_ETIMEDOUT (RILL_EAGAIN when timeout_ns is 0), RILL_ECLOSED when the
 *  route was removed, RILL_EINVAL (on a receiver too). Polls every
 *  millisecond. */
int rill_ipc_route_wait_receivers(rill_ipc_route_t *rt, uint32_t n, uint64_t timeout_ns);

/** Zero-copy send: reserves room for a message of up to len bytes (as
 *  rill_ipc_route_send would take it: inline when it fits a slot, else a
 *  chunk of the pool, waiting or failing as send does) and points *buf at
 *  it. Write the message there, then rill_ipc_route_commit publishes it,
 *  or rill_ipc_route_cancel gives it up (nothing is published). One
 *  reservation at a time: send or reserve with one open is RILL_EBUSY;
 *  close cancels it. Under RILL_IPC_OVERWRITE, the message the room held
 *  is gone from the reserve on. */
int rill_ipc_route_reserve(rill_ipc_route_t *rt, uint32_t len, uint64_t timeout_ns, void **buf);

/** Publishes the reserved message with its length, len (at most the
 *  reserved length: RILL_EINVAL beyond, and without a reservation). A
 *  reserved chunk committed with a length a slot holds is moved into the
 *  slot (the chunk stays free). */
int rill_ipc_route_commit(rill_ipc_route_t *rt, uint32_t len);

/** Gives the reservation up: nothing is published, and the next send or
 *  reserve takes the same message number (receivers never see a gap).
 *  RILL_EINVAL without a reservation. */
int rill_ipc_route_cancel(rill_ipc_route_t *rt);

/** The largest message a slot holds inline: slot_size - RILL_IPC_SLOT_HDR. */
uint32_t rill_ipc_route_max_payload(const rill_ipc_route_t *rt);

/** The largest message the route takes: max_message when it has a pool,
 *  else rill_ipc_route_max_payload. */
uint32_t rill_ipc_route_max_message(const rill_ipc_route_t *rt);

/** Leaves the route: the place is free for another process (a
 *  reservation is cancelled); a receiver's sender waits for it no more.
 *  The segment stays. NULL is a no-op. */
void rill_ipc_route_close(rill_ipc_route_t *rt);

/** A received message: a view of its bytes in the ring, or in a chunk of
 *  the pool for a large one (no copy either way), valid until the next
 *  rill_ipc_route_recv, rill_ipc_route_release or close on this receiver; until then the sender
 * does not reuse its slot or chunk (under RILL_IPC_OVERWRITE it may: the next call then reports
 * RILL_ELAGGED). */
typedef struct rill_ipc_msg {
  const uint8_t *data;
  uint32_t len;
  uint32_t flags; /* RILL_IPC_REDELIVERED, or 0 (always 0 from a route) */
  uint64_t seq;   /* the route's (or channel's) message number, from 0 */
} rill_ipc_msg_t;

/* rill_ipc_msg_t flags: a channel queue message handed out before to a
 * receiver that died holding it (it may have been partly processed). */
#define RILL_IPC_REDELIVERED 1u

/** Waits up to timeout_ns (0: not at all) for the next message: 0,
 *  RILL_ETIMEDOUT (RILL_EAGAIN when timeout_ns is 0), or RILL_ELAGGED
 *  with *lost (may be NULL) set to the messages overwritten before they
 *  were read (the receiver then goes on from the oldest still there; a
 *  view the previous call returned that was overwritten while held counts
 *  as one of them). No message is returned with RILL_ELAGGED: call again.
 *  RILL_ECORRUPT for a slot whose length is over the slot, or a pool
 *  descriptor naming no chunk or the wrong one (a scribbled segment).
 *  RILL_ECLOSED once everything published before the route was removed
 *  (rill_ipc_route_unlink) was read: nothing more can come; close the receiver.
 *  RILL_EINVAL on a sender. */
int rill_ipc_route_recv(rill_ipc_route_t *rt, rill_ipc_msg_t *m, uint64_t timeout_ns,
                        uint64_t *lost);

/** Finishes with the message the last rill_ipc_route_recv returned before the
 *  next one: its view becomes invalid, and the sender may reuse its slot
 *  (and chunk) at once, instead of at the next receive. 0; RILL_EINVAL
 *  on a sender or when no message is held; under RILL_IPC_OVERWRITE, RILL_ELAGGED when the
 *  message was overwritten while it was held (what was read of it may be
 *  torn; it is not counted again by the next receive). */
int rill_ipc_route_release(rill_ipc_route_t *rt);

/** Receives up to max messages in one call: gives back the views held
 *  (as rill_ipc_route_recv does), waits up to timeout_ns for the first
 *  message exactly as rill_ipc_route_recv (same returns, *lost the same;
 *  *got 0 on an error), then takes whatever else is published already,
 *  without waiting, up to max (as recvmmsg with MSG_WAITFORONE): 0 with
 *  *got in 1..max and msgs[0..*got) views in place, in order, all valid
 *  until the next recv, recv_batch, release or close on this receiver
 *  (release gives them all back). The cursor moves once for the whole
 *  batch, at that next call: until then the sender does not reuse their
 *  slots. A message that cannot be taken after the first (lapped,
 *  scribbled) ends the batch; the next call reports it. Under
 *  RILL_IPC_OVERWRITE, views overwritten while held are counted as
 *  rill_ipc_route_recv counts one (RILL_ELAGGED, *lost the number of
 *  them). RILL_EINVAL for max 0 or a NULL got, and on a sender. */
int rill_ipc_route_recv_batch(rill_ipc_route_t *rt, rill_ipc_msg_t *msgs, uint32_t max,
                              uint32_t *got, uint64_t timeout_ns, uint64_t *lost);

/** Removes route `name` (its shared-memory name; processes attached keep
 *  their mapping). RILL_ENOENT when there is none, RILL_EINVAL when the
 *  segment of that name is a valid channel (one that is neither a valid
 *  route nor a valid channel, foreign, damaged or half made, is removed). Whoever is attached is
 *  told: the segment is marked removed first and its waiters woken, so
 *  that its receivers get RILL_ECLOSED once they have read what was
 *  published, and its sender RILL_ECLOSED at its next send (a later
 *  rill_ipc_route_open of a sender makes a new route under the name). It does not
 *  ask who is attached: rill_ipc_route_info tells (`rill ipc rm` refuses a route
 *  in use without --force). */
int rill_ipc_route_unlink(const char *name);

/** A route as `rill ipc ls` shows it. */
typedef struct rill_ipc_route_info {
  char name[RILL_IPC_MAX_NAME + 1];
  uint32_t slots, slot_size, max_receivers;
  rill_ipc_policy_t policy;
  uint64_t head;      /* messages published */
  pid_t sender;       /* 0: none attached */
  bool sender_alive;  /* the pid is the process that attached (start time checked) */
  uint32_t receivers; /* places taken */
  /* Of which held by a process that is gone (reaped at the next wait);
   * named as the channel's. */
  uint32_t receivers_dead;
  uint64_t slowest;                  /* the slowest live receiver's next message (head when none) */
  uint32_t max_message, pool_chunks; /* the largest class, every class's chunks; 0, 0: no pool */
  uint32_t pool_classes;
  rill_ipc_class_t pool[RILL_IPC_MAX_CLASSES];
} rill_ipc_route_info_t;

/** Describes route `name` without attaching to it. */
int rill_ipc_route_info(const char *name, rill_ipc_route_info_t *info);

/** Called by rill_ipc_route_list for each route; non-zero stops the listing. */
typedef int (*rill_ipc_route_list_cb)(void *ctx, const rill_ipc_route_info_t *info);

/** Calls cb for each route in /dev/shm (those whose segment validates);
 *  stops early when cb returns non-zero, and returns that. */
int rill_ipc_route_list(rill_ipc_route_list_cb cb, void *ctx);

/* ---- channels: many senders, many receivers ------------------------------
 * A channel is a segment of its own (/dev/shm/rill.<name>, magic "RLIC"):
 * up to 64 senders, each claiming the next message number with a CAS on a
 * shared counter once there is room for it, writing its slot and
 * committing it (the slot's mark, stored last); receivers read in number
 * order. RILL_IPC_BROADCAST: every receiver gets every message, each with
 * its own cursor (as a route's). RILL_IPC_QUEUE: receivers share one
 * cursor and each message goes to exactly one of them (a work queue).
 *
 * Crashes: a sender killed between its claim and its commit would leave a
 * hole every receiver waits at; a receiver that finds the claimer dead
 * (pid and start time) marks the slot aborted and goes on, reporting
 * RILL_ELAGGED with *lost = 1 (and the header counts it). A receiver that
 * died is reaped by the senders that would wait for it (and, under
 * RILL_IPC_QUEUE, by idle receivers). Under RILL_IPC_QUEUE delivery is at
 * least once: a message a dead receiver had received and not finished
 * with (rill_ipc_chan_release, or its next recv) is handed out again to
 * another receiver, before newer ones, with RILL_IPC_REDELIVERED in its
 * flags. The windows left are a few instructions wide: a receiver killed
 * just as it takes a message loses it, one killed while adopting a dead
 * receiver's message gets it handed out twice.
 * Policies: RILL_IPC_BLOCK or RILL_IPC_FAIL
 * (RILL_IPC_OVERWRITE is refused). docs/FORMATS.md ("IPC channel
 * segment") gives every byte and the protocol.
 *
 * Threads: a handle is used by one thread at a time; handles are
 * independent, in one process or several. */

#define RILL_IPC_CHAN_MAGIC   0x43494c52u /* "RLIC" */
#define RILL_IPC_CHAN_VERSION 3u
#define RILL_IPC_MAX_SENDERS  64u

typedef enum rill_ipc_delivery {
  RILL_IPC_BROADCAST = 0, /* every receiver gets every message */
  RILL_IPC_QUEUE,         /* each message goes to exactly one receiver */
} rill_ipc_delivery_t;

/** A channel's layout and behaviour, fixed by whoever creates it (either
 *  role); later openers must agree on each of slots, slot_size,
 *  max_senders, max_receivers they set (non-zero), and on delivery and
 *  policy (RILL_EINVAL otherwise). NULL opts: the defaults when creating,
 *  the channel as it is when it exists. */
typedef struct rill_ipc_chan_opts {
  uint32_t slots;         /* a power of two, 2..2^24; default 4096 */
  uint32_t slot_size;     /* a multiple of 64, 64..1 MiB, header included; default 128 */
  uint32_t max_senders;   /* 1..64; default 64 */
  uint32_t max_receivers; /* 1..64; default 64 */
  rill_ipc_delivery_t delivery;
  rill_ipc_policy_t policy; /* RILL_IPC_BLOCK or RILL_IPC_FAIL */
  rill_ipc_wait_t wait;
  uint64_t spin_ns; /* RILL_IPC_SPIN: how long before parking; default 50 us */
  mode_t mode;      /* permissions when created, exactly; default 0600 */
  /* A chunk pool for messages over a slot's payload, as a route's
   * (rill_ipc_route_opts_t.pool): up to 8 classes in ascending size, the first
   * {0, 0} ends them; none by default. Message seq takes chunk seq % chunks
   * of the first class that holds it and has one free, so a class of n
   * chunks carries a pooled message only while the slowest receiver is
   * fewer than n messages behind; later openers must give the same
   * classes, or none. */
  rill_ipc_class_t pool[RILL_IPC_MAX_CLASSES];
} rill_ipc_chan_opts_t;

typedef struct rill_ipc_chan rill_ipc_chan_t;

/** Opens channel `name` in a role, creating it with opts if it does not
 *  exist. RILL_EBUSY when every place of that role is held by a live
 *  process (dead holders' places are reaped first); RILL_EVERSION /
 *  RILL_ECORRUPT for a segment that is not a channel of this version or
 *  whose layout does not add up. A receiver gets what is claimed from
 *  now on (broadcast) or the queue's next message (queue). A queue
 *  receiver finding every place held by a live process or orphaned takes
 *  an orphaned one: its first recv hands out the message that place
 *  held (RILL_IPC_REDELIVERED). */
int rill_ipc_chan_open(rill_ipc_chan_t **out, const char *name, const rill_ipc_chan_opts_t *opts,
                       rill_ipc_role_t role);

/** Sends len bytes (at most rill_ipc_chan_max_message: RILL_EMSGSIZE
 *  beyond; over rill_ipc_chan_max_payload, through a chunk of the pool,
 *  read in place by receivers). No room (broadcast: the slowest live receiver a ring behind;
 *  queue: a ring of messages not yet finished with): RILL_IPC_BLOCK waits
 *  up to timeout_ns (RILL_ETIMEDOUT), RILL_IPC_FAIL returns RILL_EFULL.
 *  Messages of one sender keep their order. RILL_EINVAL on a receiver.
 *  RILL_IPC_BROADCAST with no receiver attached: RILL_EPIPE, nothing sent
 *  (as rill_ipc_route_send; a queue keeps its messages for receivers to come).
 *  RILL_ECLOSED once the channel was removed. */
int rill_ipc_chan_send(rill_ipc_chan_t *ch, const void *data, uint32_t len, uint64_t timeout_ns);

/** Sends msgs[0..n) in order as n rill_ipc_chan_send would (each message
 *  claims its own number: the claim of a dead sender is told by the one
 *  number it holds), with the fence and the wake check of receivers once
 *  for the batch (and before any wait for room). *sent (may be NULL) is
 *  the number committed, from the first, whatever the return: 0 when all
 *  n were, else send's error for msgs[*sent] (RILL_EINVAL for one with
 *  len and no data), as sendmmsg reports partial progress. Each wait for
 *  room is bounded by timeout_ns (0: none). */
int rill_ipc_chan_send_batch(rill_ipc_chan_t *ch, const rill_iov_t *msgs, uint32_t n,
                             uint64_t timeout_ns, uint32_t *sent);

/** A sender waits up to timeout_ns (0: not at all) until at least n live
 *  receivers (1..max_receivers) are attached: 0, and (broadcast) every
 *  message claimed from then on reaches each of them. RILL_ETIMEDOUT
 *  (RILL_EAGAIN when timeout_ns is 0), RILL_ECLOSED, RILL_EINVAL (on a
 *  receiver too). Polls every millisecond. */
int rill_ipc_chan_wait_receivers(rill_ipc_chan_t *ch, uint32_t n, uint64_t timeout_ns);

/** Zero-copy send on a channel: claims the next message number for up to
 *  len bytes (waiting for room as send does) and points *buf at its slot
 *  or chunk; write the message there and rill_ipc_chan_commit it, or
 *  rill_ipc_chan_cancel. Until then every receiver waits at that number
 *  (messages are delivered in number order): keep it short. One
 *  reservation at a time: send or reserve with one open is RILL_EBUSY;
 *  close cancels it. */
int rill_ipc_chan_reserve(rill_ipc_chan_t *ch, uint32_t len, uint64_t timeout_ns, void **buf);

/** Publishes the reserved message with len bytes (at most the reserved:
 *  RILL_EINVAL beyond, and without a reservation). A reserved chunk
 *  committed with a length a slot holds is moved into the slot.
 *  RILL_ECANCELED when a receiver took this sender for dead and skipped
 *  the message meanwhile (nothing is published; receivers counted it
 *  lost). */
int rill_ipc_chan_commit(rill_ipc_chan_t *ch, uint32_t len);

/** Gives the reservation up: its number is marked aborted, and receivers
 *  skip it as they skip a dead sender's claim (RILL_ELAGGED, one lost).
 *  RILL_EINVAL without a reservation. */
int rill_ipc_chan_cancel(rill_ipc_chan_t *ch);

/** Waits up to timeout_ns (0: not at all) for the next message: 0 with a
 *  view in place valid until the next recv, release or close (m->flags:
 *  RILL_IPC_REDELIVERED for a queue message handed out again), RILL_ETIMEDOUT
 *  (RILL_EAGAIN when timeout_ns is 0), or RILL_ELAGGED with *lost (may be
 *  NULL) the messages skipped because their sender died before committing
 *  them (no message: call again). RILL_ECORRUPT for a scribbled slot.
 *  RILL_EINVAL on a sender. */
int rill_ipc_chan_recv(rill_ipc_chan_t *ch, rill_ipc_msg_t *m, uint64_t timeout_ns, uint64_t *lost);

/** Finishes with the message the last recv returned, before the next
 *  recv: its view is invalid from now on, its slot may be reused (senders
 *  waiting for room are woken), and under RILL_IPC_QUEUE it is no longer
 *  handed out again should this receiver die. 0, or RILL_EINVAL on a
 *  sender or when no message is held. */
int rill_ipc_chan_release(rill_ipc_chan_t *ch);

/** Receives up to max messages in one call, as rill_ipc_route_recv_batch:
 *  the views held given back, the first message waited for exactly as
 *  rill_ipc_chan_recv (same returns; *got 0 on an error), then, under
 *  RILL_IPC_BROADCAST, whatever else is committed already, in number
 *  order, up to max (a claim not committed yet, an aborted one or a
 *  scribbled slot ends the batch; the next call reports it): 0 with *got
 *  in 1..max, views in place valid until the next recv, recv_batch,
 *  release or close, the cursor moved once for them all. Under
 *  RILL_IPC_QUEUE a receiver's place holds one message for redelivery
 *  should it die, so *got is 1: the queue's delivery claims one message
 *  at a time. RILL_EINVAL for max 0, a NULL got, and on a sender. */
int rill_ipc_chan_recv_batch(rill_ipc_chan_t *ch, rill_ipc_msg_t *msgs, uint32_t max, uint32_t *got,
                             uint64_t timeout_ns, uint64_t *lost);

/** slot_size - RILL_IPC_SLOT_HDR. */
uint32_t rill_ipc_chan_max_payload(const rill_ipc_chan_t *ch);

/** The largest message the channel takes: its largest pool class, else
 *  rill_ipc_chan_max_payload. */
uint32_t rill_ipc_chan_max_message(const rill_ipc_chan_t *ch);

/** Leaves the channel (the place is freed; the segment stays). NULL is a
 *  no-op. */
void rill_ipc_chan_close(rill_ipc_chan_t *ch);

/** Removes channel `name` (RILL_ENOENT when there is none, RILL_EINVAL
 *  when it is a valid route, as rill_ipc_route_unlink refuses a channel), telling
 *  whoever is attached as rill_ipc_route_unlink does: sends and reserves return
 *  RILL_ECLOSED, receives too once nothing is left to read. */
int rill_ipc_chan_unlink(const char *name);

/** A channel as `rill ipc ls` shows it. */
typedef struct rill_ipc_chan_info {
  char name[RILL_IPC_MAX_NAME + 1];
  uint32_t slots, slot_size, max_senders, max_receivers;
  rill_ipc_delivery_t delivery;
  rill_ipc_policy_t policy;
  uint64_t claimed;  /* messages claimed by senders (committed or not) */
  uint64_t consumed; /* RILL_IPC_QUEUE: messages taken by receivers */
  uint64_t aborted;  /* claims of dead senders skipped */
  uint64_t slowest;  /* the lowest seq a live receiver (or an orphan) holds or awaits */
  uint32_t senders, senders_dead, receivers, receivers_dead; /* places taken, of which dead */
  uint32_t max_message, pool_chunks, pool_classes;           /* the pool: 0, 0, 0 without one */
  rill_ipc_class_t pool[RILL_IPC_MAX_CLASSES];
  uint32_t orphaned;    /* RILL_IPC_QUEUE: messages of dead receivers awaiting redelivery */
  uint64_t redelivered; /* RILL_IPC_QUEUE: messages handed out again so far */
} rill_ipc_chan_info_t;

/** Describes channel `name` without attaching to it. */
int rill_ipc_chan_info(const char *name, rill_ipc_chan_info_t *info);

/** Called by rill_ipc_chan_list for each channel; non-zero stops the listing. */
typedef int (*rill_ipc_chan_list_cb)(void *ctx, const rill_ipc_chan_info_t *info);

/** Calls cb for each channel in /dev/shm (those whose segment validates);
 *  stops early when cb returns non-zero, and returns that. */
int rill_ipc_chan_list(rill_ipc_chan_list_cb cb, void *ctx);

#ifdef __cplusplus
}
#endif
#endif /* RILL_IPC_H */
