/*
 * The IPC route and channel segments: their layout in shared memory, the
 * check every attach runs before trusting a byte of them, what the two
 * kinds share (names, shared memory, places, the pool), and the process
 * liveness test the reaping of dead participants rests on.
 * docs/FORMATS.md ("IPC route segment", "IPC channel segment") gives every
 * byte. Private to rill.
 */
#ifndef RILL_IPC_SEGMENT_H
#define RILL_IPC_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/internal.h"
#include "rill/ipc.h"

/* The fences of routes and channels: the same in every build. gcc 12 and
 * later warn (-Wtsan) that ThreadSanitizer does not model standalone
 * fences; under TSan they still run as fences, TSan just draws no
 * happens-before from them. Nothing between threads relies on that: the
 * data they order across processes is invisible to TSan anyway, and
 * between threads every slot is published by the mark's release and
 * acquire, which TSan sees. A fence TSan ignores can only make it report
 * more, never hide a race (the seq_cst exchange of one dummy word that
 * stood in for them did: every pair of threads passing one synchronized
 * through it). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wtsan"
#endif
#define RILL__IPC_FENCE(order) __atomic_thread_fence(order)

#define RILL__IPC_HDR_BYTES   4096u /* the header page */
#define RILL__IPC_PLACE_BYTES 64u   /* one participant, one cache line */
#define RILL__IPC_PAGE        4096u /* the table and the ring start on a page */
#define RILL__IPC_MIN_SLOTS   2u
#define RILL__IPC_MAX_SLOTS   (1u << 24)
#define RILL__IPC_MIN_SLOT    64u
#define RILL__IPC_MAX_SLOT    (1u << 20)
#define RILL__IPC_MAX_MESSAGE (1u << 30) /* the largest max_message */
#define RILL__IPC_MAX_CHUNKS  (1u << 20) /* in one class */
#define RILL__IPC_CHUNK_HDR   64u        /* bytes of each chunk before its payload */
#define RILL__IPC_F_POOL      1u         /* header flag: the segment has a chunk pool */
#define RILL__IPC_SLOT_POOL   1u         /* slot flag: the payload is a descriptor of a chunk */
#define RILL__IPC_DESC_BYTES  8u         /* the descriptor: chunk index, class (u32 each) */
#define RILL__IPC_REMOVED     (1u << 31) /* the gone word's bit: the segment was removed */

/* The header page. The first line is written once by the creator (magic
 * last, with release); each of the next three lines has one writer side. */
struct rill__ipc_hdr {
  uint32_t magic;   /* RILL_IPC_MAGIC; 0 while the creator is still writing */
  uint16_t version; /* RILL_IPC_VERSION */
  uint8_t policy;   /* rill_ipc_policy_t */
  uint8_t wait;     /* rill_ipc_wait_t */
  uint32_t slots;
  uint32_t slot_size;
  uint32_t max_receivers;
  uint32_t flags; /* RILL__IPC_F_POOL when pool_chunks > 0, else 0 */
  uint64_t total; /* bytes of the segment */
  uint64_t spin_ns;
  uint32_t max_message;  /* the largest class's size; 0: no pool, a slot's payload */
  uint32_t pool_classes; /* size classes in the pool, 0..RILL_IPC_MAX_CLASSES */
  uint8_t reserved0[16];

  uint64_t head; /* messages published; written by the sender (release) */
  /* On head's line, which the sender writes at every publish and so has
   * at hand when it loads this at every send: on the receivers' futex
   * line, which parking receivers write, that load cost a 1-to-4 spinning
   * route 60% (250-310 against 430-500 ns a message).
   * Bits 0..30: receivers that closed their handle (wrapping);
   * RILL__IPC_REMOVED: the route was removed (rill_ipc_route_unlink). */
  uint32_t gone;
  uint8_t reserved1[52];

  uint32_t recv_futex;   /* bumped by the sender on publish when recv_waiters > 0 */
  uint32_t recv_waiters; /* receivers parked (or about to park) on recv_futex */
  uint32_t recv_want;    /* set by a receiver about to park, taken by the wake it gets */
  uint8_t reserved2[52];

  uint32_t send_futex;   /* bumped by a receiver that moves on while send_waiters > 0 */
  uint32_t send_waiters; /* senders parked (or about to park) on send_futex */
  uint32_t send_want;    /* set by a sender about to park, taken by the wake it gets */
  uint32_t reserved3a;
  /* The cursor every live receiver must reach for the parked sender to go
   * on: only a receiver crossing it wakes it. */
  uint64_t send_need;
  uint8_t reserved3[40];

  /* The pool's classes, in ascending sizes; the first pool_classes used. */
  struct {
    uint32_t size;   /* the largest message a chunk of the class holds */
    uint32_t chunks; /* chunks in the class */
  } pool[RILL_IPC_MAX_CLASSES];

  /* Pooled messages sent in each class: the next takes chunk
   * pool_next % chunks. The sender's alone. */
  uint64_t pool_next[RILL_IPC_MAX_CLASSES];
};

/* A place in the participants table: index 0 is the sender's, 1..max
 * receivers the receivers'. */
struct rill__ipc_place {
  uint64_t state;  /* phase, generation and pid: see RILL__IPC_ST_* */
  uint64_t start;  /* the holder's start time (field 22 of /proc/<pid>/stat) */
  uint64_t cursor; /* a receiver's next message it has not finished with */
  uint32_t parked; /* 1 while the holder counts itself in its side's waiters */
  /* Receivers: 1 once the cursor is final (the open returns), so that every
   * message published (claimed) after a sender sees it is received; 0 from
   * the claim on. Senders: 0. */
  uint32_t ready;
  uint8_t reserved[32];
};

/* The state word: phase in bits 62..63, a generation bumped by every take
 * in bits 32..61 (so a reaper's CAS from what it saw cannot free a place
 * that was freed and taken again meanwhile), the holder's pid in 0..31. */
#define RILL__IPC_FREE     0u
#define RILL__IPC_CLAIMING 1u /* taken, start and cursor not written yet */
#define RILL__IPC_TAKEN    2u
/* Channel queue receiver places only (a route reads 3 as claiming): the
 * holder died with a message; the place keeps its cursor (that seq) until
 * a live receiver adopts it. No holder: pid 0. */
#define RILL__IPC_ORPHAN 3u
#define RILL__IPC_ST(phase, gen, pid)                                                              \
  (((uint64_t)(phase) << 62) | ((0x3fffffffu & (uint64_t)(gen)) << 32) | (uint32_t)(pid))
#define RILL__IPC_ST_PHASE(s) ((unsigned)((s) >> 62))
#define RILL__IPC_ST_GEN(s)   ((uint32_t)(((s) >> 32) & 0x3fffffffu))
#define RILL__IPC_ST_PID(s)   ((uint32_t)(s))

/* The slot header; the payload follows. */
struct rill__ipc_slot {
  uint64_t mark;  /* seq + 1 of the message it holds, stored last (release); 0:
                   * never written, or being overwritten (RILL_IPC_OVERWRITE) */
  uint32_t len;   /* the message's length (in the pool or inline) */
  uint32_t flags; /* RILL__IPC_SLOT_POOL: the payload's first 4 bytes are the
                   * index of the chunk holding the message */
};

/* A chunk of the pool's header; the payload follows. */
struct rill__ipc_chunk {
  uint64_t owner; /* seq + 1 of the message it holds or last held; 0: never
                   * used. Written by the sender before the slot's mark. */
  uint8_t reserved[56];
};

/* A pool size class's geometry. */
struct rill__ipc_class {
  uint32_t size, chunks;
  uint64_t stride; /* RILL__IPC_CHUNK_HDR + size rounded up to 64 */
  uint64_t off;    /* the class's first chunk, from the segment's base (a page) */
};

/* A segment's geometry, as the check found it. Handles keep their own copy:
 * later writes to the shared header are never read again. */
struct rill__ipc_geom {
  uint32_t slots, slot_size, max_receivers;
  uint8_t policy, wait;
  uint64_t spin_ns;
  uint32_t max_message; /* the largest class's size, 0 without a pool */
  uint32_t pool_chunks; /* in every class together */
  uint32_t nclasses;
  struct rill__ipc_class cls[RILL_IPC_MAX_CLASSES];
  uint64_t table_off, ring_off, total;
};

/* The pool (pool.c), shared by routes and channels. Chunk idx (< chunks)
 * of class k of the segment at base. */
static inline struct rill__ipc_chunk *
rill__ipc_chunk_in(uint8_t *base, const struct rill__ipc_class *k, uint32_t idx) {
  return (struct rill__ipc_chunk *)(void *)(base + k->off + (uint64_t)idx * k->stride);
}

static inline struct rill__ipc_chunk *
rill__ipc_chunk_at(uint8_t *base, const struct rill__ipc_geom *g, uint32_t c, uint32_t idx) {
  return rill__ipc_chunk_in(base, &g->cls[c], idx);
}

/* Places n classes one after another from *end, each on a page: fills
 * their stride and offset and moves *end past the last; *max_message is
 * the largest size (0 without classes), *chunks the chunks of all. */
void rill__ipc_pool_layout(struct rill__ipc_class *cls, uint32_t n, uint64_t *end,
                           uint32_t *max_message, uint32_t *chunks);

/* The classes a caller gave (pool, ended by the first {0, 0}): each over
 * the one before (the first over inline_max), at most 1 GiB, with 1..2^20
 * chunks. 0 with the sizes and counts in cls and their number in *n, or
 * RILL_EINVAL naming what is wrong (kind: "route" or "channel"). */
int rill__ipc_classes_opts(const char *kind, const char *name, const rill_ipc_class_t *pool,
                           uint32_t inline_max, struct rill__ipc_class *cls, uint32_t *n);

/* The classes an opener gave (pool; none: 0) against a segment's n
 * classes: all of them must be the same, or RILL_EINVAL. */
int rill__ipc_classes_agree(const char *kind, const char *name, const rill_ipc_class_t *pool,
                            const struct rill__ipc_class *cls, uint32_t n);

/* The same rules on n classes read from a segment's class table at tbl
 * (size, then chunks, 8 bytes a class), and max_message equal to the
 * last size: 0 with cls filled, or RILL_EPROTO. */
int rill__ipc_classes_check(const char *kind, const char *name, const uint8_t *tbl, uint32_t n,
                            uint32_t inline_max, uint32_t max_message, struct rill__ipc_class *cls);

/* The smallest of n classes holding len bytes (len at most the last size). */
static inline uint32_t rill__ipc_class_of(const struct rill__ipc_class *cls, uint32_t len) {
  uint32_t c = 0;
  while (cls[c].size < len)
    c++;
  return c;
}

/* The chunk the sender gives its pooled message number k in class c
 * (pool_next[c]), to be published as seq: its index, and in *limit (which
 * comes in as the ring's bound, slots) the room a send needs so that every
 * live receiver is past the chunk's previous message (seq - lowest cursor <
 * *limit); *old is that message's seq + 1, 0 when the chunk holds none below
 * seq. */
uint32_t rill__ipc_pool_pick(uint8_t *base, const struct rill__ipc_geom *g, uint32_t c, uint64_t k,
                             uint64_t seq, uint64_t *limit, uint64_t *old);

static inline uint32_t rill__ipc_class_for(const struct rill__ipc_geom *g, uint32_t len) {
  return rill__ipc_class_of(g->cls, len);
}

/* Checks a received slot's pool descriptor (class c, chunk idx, len bytes,
 * the chunk's owner as loaded) for message seq against n classes: 0, or
 * RILL_ECORRUPT with a message. */
int rill__ipc_pool_check(const char *kind, const char *name, const struct rill__ipc_class *cls,
                         uint32_t n, uint64_t seq, uint32_t c, uint32_t idx, uint32_t len,
                         uint64_t owner);

/* A ring of slots x slot_size, as opts give it (code: RILL_EINVAL) or a
 * header says (RILL_ECORRUPT): slots a power of two in 2..2^24, slot_size
 * a multiple of 64 in 64..1 MiB. 0, or code with a message. */
int rill__ipc_ring_check(int code, const char *kind, const char *name, uint32_t slots,
                         uint32_t slot_size);

/* The max senders or receivers (who) of a segment, n, in 1..max: 0, or
 * code (RILL_EINVAL for opts, RILL_ECORRUPT for a header) with a message. */
int rill__ipc_places_check(int code, const char *kind, const char *name, const char *who,
                           uint32_t n, uint32_t max);

/* Fills g's offsets, strides, max_message and pool_chunks from its slots,
 * slot_size, max_receivers and classes (nclasses, and each size and
 * chunks). */
void rill__ipc_layout(struct rill__ipc_geom *g);

/* Checks size bytes at mem (a segment, or anything) as a route segment:
 * 0 and the geometry in g, or RILL_EVERSION (magic, version) or
 * RILL_EPROTO (anything else) with a message naming what is wrong. Reads
 * the header bytes only, as plain bytes: safe on arbitrary memory. */
int rill__ipc_check(const char *name, const void *mem, size_t size, struct rill__ipc_geom *g);

/* Summarises a segment that passed the check (the counters may be anything:
 * they are only compared). Checks the liveness of the pids it holds; reaps
 * nothing. */
void rill__ipc_summary(const void *mem, const struct rill__ipc_geom *g,
                       rill_ipc_route_info_t *info);

/* The start time of process pid (field 22 of /proc/<pid>/stat): 0, or
 * RILL_ENOENT when there is no such process or it is a zombie, or another
 * error when /proc cannot tell. */
int rill__ipc_proc_start(pid_t pid, uint64_t *start);

/* Whether the holder in state word st (with start time start) is a live
 * process. A claiming holder has not written its start time yet: its pid
 * alone decides. When /proc cannot tell, the holder is taken for alive. */
bool rill__ipc_holder_alive(uint64_t st, uint64_t start);

/* ---- shared by the channel (and open to the route) ------------------------- */

/* name as a route or channel name: 0, or RILL_EINVAL naming what (kind). */
int rill__ipc_name_check(const char *kind, const char *name);

/* One round of a sender's wait for `want` receivers, `have` attached now
 * (rill_ipc_route_wait_receivers, rill_ipc_chan_wait_receivers): a joiner wakes
 * nobody, so the wait polls. 0 after sleeping up to 1 ms toward deadline;
 * at the deadline RILL_EAGAIN when timeout_ns was 0 (look once), else
 * RILL_ETIMEDOUT naming how many came. */
int rill__ipc_wait_step(const char *kind, const char *name, uint64_t deadline, uint64_t timeout_ns,
                        uint32_t have, uint32_t want);

/* Creates /rill.<name> with O_EXCL, mode set exactly, total bytes of zeros,
 * mapped read-write at *base: 0, RILL_EEXIST when it was there (attach
 * instead), or an error. The caller writes the header, magic last. */
int rill__ipc_shm_create(const char *kind, const char *name, uint64_t total, mode_t mode,
                         uint8_t **base);

/* Maps an existing /rill.<name> once its first 4 bytes (the magic) are not
 * 0, waiting up to 200 ms for a creator still writing its header: 0 with
 * *base and *size (the caller checks the bytes), RILL_ENOENT, or
 * RILL_EPROTO for a segment whose header never came. */
int rill__ipc_shm_attach(const char *kind, const char *name, bool writable, bool patient,
                         uint8_t **base, size_t *size);

void rill__ipc_shm_unmap(uint8_t *base, size_t size);

/* One wake a park (route.c's file comment), made by the caller after its
 * seq_cst fence: the side parked on futex is woken when it counts waiters
 * and one of them asked (want) since the last wake. Inline: every publish
 * and every give-back ends here. */
static inline void rill__ipc_wake(uint32_t *waiters, uint32_t *want, uint32_t *futex) {
  if (RILL_UNLIKELY(__atomic_load_n(waiters, __ATOMIC_RELAXED)) &&
      __atomic_exchange_n(want, 0, __ATOMIC_RELAXED))
    rill__futex_bump_shared(futex);
}

/* A receiver's wait for a message, routes and channels alike: spin first
 * when the segment says RILL_IPC_SPIN, then park (route.c's file comment)
 * until look() returns anything but RILL_EAGAIN or the deadline passes
 * (RILL_EAGAIN then: the caller names the timeout). slice bounds one sleep,
 * for a channel whose claimer may die without waking anyone. look is a
 * static function of the caller's file and this is inline, so the spin
 * loop makes no indirect call. */
typedef struct rill__ipc_recv_wait {
  uint32_t *futex, *waiters, *want; /* the header's recv_* words */
  uint32_t *parked;                 /* the receiver's place */
  bool spin;
  uint64_t spin_ns, slice;
} rill__ipc_recv_wait_t;

static inline int rill__ipc_recv_wait(const rill__ipc_recv_wait_t *w, uint64_t now,
                                      uint64_t deadline, int (*look)(void *), void *ctx) {
  int rc;
  if (w->spin) {
    uint64_t spin_until = rill__deadline(now, w->spin_ns);
    while (now < spin_until && now < deadline) {
      for (int i = 0; i < 64; i++) {
        rill__cpu_relax();
        if ((rc = look(ctx)) != RILL_EAGAIN)
          return rc;
      }
      now = rill_time_mono_ns();
    }
  }
  for (;;) {
    now = rill_time_mono_ns();
    if (now >= deadline)
      return RILL_EAGAIN;
    /* Acquire: pairs with the sender's release bump. */
    uint32_t f = __atomic_load_n(w->futex, __ATOMIC_ACQUIRE);
    __atomic_fetch_add(w->waiters, 1, __ATOMIC_SEQ_CST);
    /* Relaxed: read only by a reaper after we are dead, which then takes
     * us out of the waiter count. */
    __atomic_store_n(w->parked, 1, __ATOMIC_RELAXED);
    /* Relaxed: ordered before our look by the fence below; the sender
     * takes it after its fence (rill__ipc_wake). */
    __atomic_store_n(w->want, 1, __ATOMIC_RELAXED);
    /* seq_cst: pairs with the sender's fence after it publishes: we see
     * its mark, or it sees our count. */
    RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
    rc = look(ctx);
    if (rc == RILL_EAGAIN) {
      uint64_t left = deadline - now;
      rill__futex_wait_shared(w->futex, f, left < w->slice ? left : w->slice);
    }
    __atomic_store_n(w->parked, 0, __ATOMIC_RELAXED);
    /* Relaxed: only a hint for wakers. */
    __atomic_fetch_sub(w->waiters, 1, __ATOMIC_RELAXED);
    if (rc != RILL_EAGAIN || (rc = look(ctx)) != RILL_EAGAIN)
      return rc;
  }
}

/* Maps an existing /rill.<name> read-write (rill__ipc_shm_attach, patient)
 * and checks it as a segment of kind ("route": g is a struct
 * rill__ipc_geom; "channel": a struct rill__chan_geom): 0 with the
 * geometry in g, RILL_ENOENT when it is being removed, or the error. */
int rill__ipc_seg_attach(const char *kind, const char *name, void *g, uint8_t **base, size_t *size);

/* Creates /rill.<name> with geometry want (as g, by kind) and writes its
 * header, or attaches to the one a racing creator made (rill__ipc_seg_attach;
 * a segment unlinked between the two gets a few more tries): 0 with the
 * segment's geometry in g, *base and *size, or the error. The caller checks
 * an attached segment against what it asked for. */
int rill__ipc_seg_open(const char *kind, const char *name, const void *want, mode_t mode, void *g,
                       uint8_t **base, size_t *size);

/* Removes /rill.<name>: 0, RILL_ENOENT ("no such <kind>"), RILL_EINVAL
 * when the segment is a valid one of the other kind (kind is "route" or
 * "channel"), or the error. A route or channel segment that validates is
 * marked removed first (its gone word) and its waiters woken, so that its
 * participants learn it (RILL_ECLOSED) rather than wait on a name nobody
 * can open. */
int rill__ipc_shm_unlink(const char *kind, const char *name);

/* Calls each(ctx, name) for every /dev/shm/rill.<name> with a valid name,
 * whatever it holds (each tells its own kind by its check); stops at the
 * first non-zero return and returns it. `what` names the caller in an
 * error. */
int rill__ipc_scan(const char *what, int (*each)(void *ctx, const char *name), void *ctx);

/* Describes /rill.<name> as a segment of kind ("route": info is a
 * rill_ipc_route_info_t; "channel": a rill_ipc_chan_info_t), read-only:
 * 0, or the error of the attach or of the kind's check. */
int rill__ipc_info(const char *kind, const char *name, void *info);

/* For each segment that describes as kind (rill__ipc_info; the others are
 * skipped): info filled, then each(ctx); stops at the first non-zero
 * return and returns it. `what` names the caller in an error. */
int rill__ipc_list(const char *kind, const char *what, void *info, int (*each)(void *ctx),
                   void *ctx);

/* A receiver's close: counts the leave in the gone word's low bits (the
 * removed bit kept), so that a sender that counted it recounts. */
void rill__ipc_count_leave(uint32_t *gone);

/* The calling process's start time (field 22 of /proc/self/stat). */
uint64_t rill__ipc_self_start(void);

/* Frees place p if its holder (state word st) is dead, by a CAS from
 * exactly st; a holder that died parked is taken out of *waiters. True
 * when the place is free afterwards. Phase 3 is read as claiming: a
 * channel queue receiver place (where it means ORPHAN) never comes here. */
bool rill__ipc_reap_if_dead(struct rill__ipc_place *p, uint64_t st, uint32_t *waiters);

/* Takes place p (free, or reaped from a dead holder): true with *mine the
 * CLAIMING word now in it. */
bool rill__ipc_claim_place(struct rill__ipc_place *p, uint32_t *waiters, uint64_t *mine);

/* Takes place p if it is still in state st (free, or an orphan being
 * adopted), by a CAS from exactly st (seq_cst): true with *mine the
 * CLAIMING word now in it. */
bool rill__ipc_claim_from(struct rill__ipc_place *p, uint64_t st, uint64_t *mine);

/* As rill__ipc_claim_place, with the reaping of a holder that is not free
 * done by reap(ctx, p, st) (st loaded with acquire): true when the place
 * is free afterwards, or was seen free. */
bool rill__ipc_claim_place_with(struct rill__ipc_place *p,
                                bool (*reap)(void *ctx, struct rill__ipc_place *p, uint64_t st),
                                void *ctx, uint64_t *mine);

/* Publishes a claimed place as TAKEN (release); returns the new word. */
uint64_t rill__ipc_take_place(struct rill__ipc_place *p, uint64_t claiming);

/* Frees our place if it is still ours (release). */
void rill__ipc_leave_place(struct rill__ipc_place *p, uint64_t mine);

/* ---- the channel segment (docs/FORMATS.md, "IPC channel segment") ---------- */

#define RILL__CHAN_ABORTED (1ull << 63) /* mark flag: the claim was abandoned */
#define RILL__CHAN_NONE    UINT64_MAX   /* a queue receiver's cursor: holds nothing */
/* A queue receiver's cursor flag: TAKING | c holds c while the receiver
 * does not know yet that its CAS of consumed for c won. */
#define RILL__CHAN_TAKING (1ull << 62)

struct rill__chan_hdr {
  uint32_t magic;   /* RILL_IPC_CHAN_MAGIC; 0 while the creator is still writing */
  uint16_t version; /* RILL_IPC_CHAN_VERSION */
  uint8_t policy;   /* RILL_IPC_BLOCK or RILL_IPC_FAIL */
  uint8_t wait;     /* rill_ipc_wait_t */
  uint32_t slots;
  uint32_t slot_size;
  uint32_t max_senders;
  uint32_t max_receivers;
  uint64_t total;
  uint64_t spin_ns;
  uint8_t delivery; /* rill_ipc_delivery_t */
  uint8_t reserved0[3];
  uint32_t flags;        /* RILL__IPC_F_POOL when pool_classes > 0, else 0 */
  uint32_t max_message;  /* the largest class's size; 0: no pool */
  uint32_t pool_classes; /* 0..RILL_IPC_MAX_CLASSES */
  uint8_t reserved1[8];

  uint64_t claim; /* the next seq a sender claims (CAS by senders) */
  /* On claim's line, which every send takes, as the route keeps its gone
   * word on head's: not on the receivers' futex line. */
  uint32_t gone; /* as the route's: receivers that closed (bits 0..30), RILL__IPC_REMOVED */
  uint8_t reserved2[52];

  uint64_t consumed; /* RILL_IPC_QUEUE: the next seq a receiver claims (CAS) */
  uint8_t reserved3[56];

  uint32_t recv_futex, recv_waiters, recv_want;
  uint8_t reserved4[52];

  uint32_t send_futex, send_waiters, send_want;
  uint8_t reserved5[52];

  uint64_t aborted;     /* claims abandoned by dead senders and skipped */
  uint64_t redelivered; /* RILL_IPC_QUEUE: messages of dead receivers handed out again */
  /* RILL_IPC_QUEUE: places in ORPHAN now (or about to be, or just adopted):
   * never below their number. */
  uint32_t orphans;
  uint8_t reserved6[44];

  /* As the route's; the first pool_classes used. */
  struct {
    uint32_t size, chunks;
  } pool[RILL_IPC_MAX_CLASSES];
};

struct rill__chan_geom {
  uint32_t slots, slot_size, max_senders, max_receivers;
  uint8_t policy, wait, delivery;
  uint64_t spin_ns;
  uint32_t max_message, pool_chunks, nclasses; /* the pool: 0, 0, 0 without one */
  struct rill__ipc_class cls[RILL_IPC_MAX_CLASSES];
  uint64_t table_off, ring_off, total;
};

void rill__chan_layout(struct rill__chan_geom *g);

/* As rill__ipc_check, for a channel segment. */
int rill__chan_check(const char *name, const void *mem, size_t size, struct rill__chan_geom *g);

/* Summarises a channel segment that passed the check; reaps nothing. */
void rill__chan_summary(const void *mem, const struct rill__chan_geom *g,
                        rill_ipc_chan_info_t *info);

#endif
