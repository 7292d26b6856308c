/*
 * The IPC route segment: its layout in shared memory, the check every
 * attach runs before trusting a byte of it, and the process liveness test
 * the reaping of dead participants rests on. docs/FORMATS.md ("IPC route
 * segment") gives every byte. Private to rill.
 */
#ifndef RILL_IPC_SEGMENT_H
#define RILL_IPC_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rill/ipc.h"

#define RILL__IPC_HDR_BYTES   4096u /* the header page */
#define RILL__IPC_PLACE_BYTES 64u   /* one participant, one cache line */
#define RILL__IPC_PAGE        4096u /* the table and the ring start on a page */
#define RILL__IPC_MIN_SLOTS   2u
#define RILL__IPC_MAX_SLOTS   (1u << 24)
#define RILL__IPC_MIN_SLOT    64u
#define RILL__IPC_MAX_SLOT    (1u << 20)

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
  uint32_t flags; /* 0 */
  uint64_t total; /* bytes of the segment */
  uint64_t spin_ns;
  uint8_t reserved0[24];

  uint64_t head; /* messages published; written by the sender (release) */
  uint8_t reserved1[56];

  uint32_t recv_futex;   /* bumped by the sender on publish when recv_waiters > 0 */
  uint32_t recv_waiters; /* receivers parked (or about to park) on recv_futex */
  uint32_t recv_want;    /* set by a receiver about to park, taken by the wake it gets */
  uint8_t reserved2[52];

  uint32_t send_futex;   /* bumped by a receiver that moves on while send_waiters > 0 */
  uint32_t send_waiters; /* senders parked (or about to park) on send_futex */
  uint32_t send_want;    /* set by a sender about to park, taken by the wake it gets */
  uint8_t reserved3[52];
};

/* A place in the participants table: index 0 is the sender's, 1..max
 * receivers the receivers'. */
struct rill__ipc_place {
  uint64_t state;  /* phase, generation and pid: see RILL__IPC_ST_* */
  uint64_t start;  /* the holder's start time (field 22 of /proc/<pid>/stat) */
  uint64_t cursor; /* a receiver's next message it has not finished with */
  uint32_t parked; /* 1 while the holder counts itself in its side's waiters */
  uint8_t reserved[36];
};

/* The state word: phase in bits 62..63, a generation bumped by every take
 * in bits 32..61 (so a reaper's CAS from what it saw cannot free a place
 * that was freed and taken again meanwhile), the holder's pid in 0..31. */
#define RILL__IPC_FREE     0u
#define RILL__IPC_CLAIMING 1u /* taken, start and cursor not written yet */
#define RILL__IPC_TAKEN    2u
#define RILL__IPC_ST(phase, gen, pid)                                                              \
  (((uint64_t)(phase) << 62) | (((uint64_t)(gen)&0x3fffffffu) << 32) | (uint32_t)(pid))
#define RILL__IPC_ST_PHASE(s) ((unsigned)((s) >> 62))
#define RILL__IPC_ST_GEN(s)   ((uint32_t)(((s) >> 32) & 0x3fffffffu))
#define RILL__IPC_ST_PID(s)   ((uint32_t)(s))

/* The slot header; the payload follows. */
struct rill__ipc_slot {
  uint64_t mark; /* seq + 1 of the message it holds, stored last (release); 0:
                  * never written, or being overwritten (RILL_IPC_OVERWRITE) */
  uint32_t len;
  uint32_t reserved;
};

/* A segment's geometry, as the check found it. Handles keep their own copy:
 * later writes to the shared header are never read again. */
struct rill__ipc_geom {
  uint32_t slots, slot_size, max_receivers;
  uint8_t policy, wait;
  uint64_t spin_ns;
  uint64_t table_off, ring_off, total;
};

/* Fills g's offsets from its slots, slot_size and max_receivers. */
void rill__ipc_layout(struct rill__ipc_geom *g);

/* Checks size bytes at mem (a segment, or anything) as a route segment:
 * 0 and the geometry in g, or RILL_EVERSION (magic, version) or
 * RILL_EPROTO (anything else) with a message naming what is wrong. Reads
 * the header bytes only, as plain bytes: safe on arbitrary memory. */
int rill__ipc_check(const char *name, const void *mem, size_t size, struct rill__ipc_geom *g);

/* Summarises a segment that passed the check (the counters may be anything:
 * they are only compared). Checks the liveness of the pids it holds; reaps
 * nothing. */
void rill__ipc_summary(const void *mem, const struct rill__ipc_geom *g, rill_ipc_info_t *info);

/* The start time of process pid (field 22 of /proc/<pid>/stat): 0, or
 * RILL_ENOENT when there is no such process or it is a zombie, or another
 * error when /proc cannot tell. */
int rill__ipc_proc_start(pid_t pid, uint64_t *start);

/* Whether the holder in state word st (with start time start) is a live
 * process. A claiming holder has not written its start time yet: its pid
 * alone decides. When /proc cannot tell, the holder is taken for alive. */
bool rill__ipc_holder_alive(uint64_t st, uint64_t start);

#endif
