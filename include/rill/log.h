/*
 * rill log: a durable append-only log per topic.
 *
 * A log directory holds topics; a topic is a directory of segment files
 * (named by the sequence number of their first record), one index file per
 * segment, a MANIFEST and a LOCK (docs/FORMATS.md has every byte). Segments
 * are mmap'd, their files allocated as they fill: an append copies the
 * record into the mapping under the topic's append lock, and readers in other threads read
 * it in place, handed out as rill_buf slices of the mapping, so a read
 * copies nothing and a segment stays mapped while any slice of it lives.
 *
 * Sequence numbers are dense, from 0, assigned by the log. A record is a
 * 32-byte header (length, check, sequence, timestamp, flags, marker) and
 * the payload, padded to 8 bytes; the check is XXH3-64 of the rest of the
 * header and the payload (the file headers use CRC32C).
 *
 * Durability is a policy per open topic: never (the page cache, and
 * rill_log_sync when you ask), every N records, every interval, or group
 * commit (appenders wait, one fdatasync covers all who wait). Records are
 * visible to readers as soon as they are appended; rill_log_durable says
 * how far they are on disk. Tailing waiters are woken for records that are
 * durable under the policy (all of them for never).
 *
 * One writer per topic: the open that writes holds an OFD lock on LOCK, so
 * a second writer, in this process or another, gets RILL_EBUSY. Opening
 * recovers: it trusts the index up to its last checkpoint (when the
 * checkpoint agrees with the files; its checksum alone is not enough),
 * verifies the records after it one by one and truncates a torn tail.
 */
#ifndef RILL_LOG_H
#define RILL_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Guarded: bus.h names it too, and C99 has no repeated typedef. */
#ifndef RILL__LOG_T
#define RILL__LOG_T
typedef struct rill_log rill_log_t;
#endif

/** When appends reach the disk. */
typedef enum rill_log_sync {
  /* Only rill_log_sync and close; a crash of the machine loses what the
   * page cache held (a crash of the process does not). */
  RILL_LOG_SYNC_NEVER = 0,
  /* The append that completes each sync_every records syncs. */
  RILL_LOG_SYNC_EVERY_N,
  /* An append syncs when sync_interval_ns passed since the last. */
  RILL_LOG_SYNC_INTERVAL,
  /* Every append returns once durable; concurrent appenders share one
   * fdatasync. */
  RILL_LOG_SYNC_GROUP,
} rill_log_sync_t;

/** What a read does with a record whose checksum or header fails. */
typedef enum rill_log_on_corrupt {
  RILL_LOG_CORRUPT_STOP = 0, /* the read returns RILL_ECORRUPT */
  RILL_LOG_CORRUPT_SKIP,     /* range reads and iterators skip it and count it */
} rill_log_on_corrupt_t;

/** A bound on the disk that the logs sharing it may take: their segment
 *  and index files, in bytes of file length. A log charges it when it
 *  grows a file (files grow by doubling, so this is rare: never on an
 *  append that fits the room already there) and credits it when it
 *  deletes a segment (retention, recovery); an append that would need
 *  growth past the limit fails with RILL_ENOSPC before writing anything,
 *  rill_errmsg naming the limit by `what`. A log does not charge what its
 *  files held when it opened, nor credit it at close: whoever shares the
 *  budget counts the files it did not grow (a server sums its data
 *  directory at start, and credits a deleted topic's files). `used` is
 *  changed and read with atomics only (rill_log_budget_used); set the
 *  other fields before any log takes it. */
typedef struct rill_log_budget {
  uint64_t limit;   /* bytes; 0: no limit, only counted */
  const char *what; /* the limit's name in messages ("the server's max_disk"); NULL:
                     * "the disk budget" */
  uint64_t used;    /* bytes charged; atomics only */
} rill_log_budget_t;

/** Bytes charged to b now (a relaxed load: a snapshot). */
uint64_t rill_log_budget_used(const rill_log_budget_t *b);

/** Adds n bytes to b whatever its limit (files a log did not grow, found
 *  on disk). */
void rill_log_budget_charge(rill_log_budget_t *b, uint64_t n);

/** Takes n bytes off b (files deleted), never below 0. */
void rill_log_budget_credit(rill_log_budget_t *b, uint64_t n);

/** Options; zero fields take the defaults. */
typedef struct rill_log_opts {
  uint64_t segment_bytes; /* a multiple of 4096 in 64 KiB..2 GiB; default 128 MiB; a new
                           * topic records it, an existing one keeps its own. The
                           * most a segment holds: its file starts at 64 KiB and
                           * grows as records come */
  rill_log_sync_t sync;
  uint64_t sync_every;       /* RILL_LOG_SYNC_EVERY_N; default 1000 */
  uint64_t sync_interval_ns; /* RILL_LOG_SYNC_INTERVAL; default 10 ms */
  rill_log_on_corrupt_t on_corrupt;
  bool read_only; /* no lock, no recovery writes: a reader beside a writer in
                   * another process sees what was there at open */
  bool no_create; /* RILL_ENOENT rather than creating a missing topic */
  /* Retention, whole segments at a time, never the one being written;
   * 0 keeps everything. A segment goes when what is left still holds at
   * least retain_bytes of records and retain_count records, or when its
   * newest record is older than retain_age_ns. Applied after each roll by
   * the appender that rolled (other appenders do not wait for it), by an
   * append refused room (RILL_ENOSPC: it tries once more if that dropped
   * a segment), and by rill_log_retain. */
  uint64_t retain_bytes;
  uint64_t retain_count;
  uint64_t retain_age_ns;
  /* Shared with other logs: the growth of this log's files is charged to
   * it (see rill_log_budget_t); NULL: no bound but the disk's. It must
   * outlive the log. Read-only opens never grow, and recovery at open
   * charges what it grows whatever the limit. */
  rill_log_budget_t *budget;
} rill_log_opts_t;

/** Opens (creating when missing, unless no_create) topic `topic` in
 *  directory `dir` (created too). The topic name is 1..200 bytes of
 *  [A-Za-z0-9._-], not starting with '.'. Recovers a topic that was not
 *  closed cleanly. RILL_EBUSY when another open holds the writer lock,
 *  RILL_EVERSION for files of an unknown format, RILL_ECORRUPT when
 *  recovery finds damage it cannot repair (rill_errmsg names the file and
 *  offset), RILL_EINVAL for bad options or names, or an errno. */
int rill_log_open(rill_log_t **out, const char *dir, const char *topic,
                  const rill_log_opts_t *opts);

/** Syncs (unless read_only), checkpoints the index, unmaps what no slice
 *  holds and frees the handle. Slices handed out stay valid. Returns the
 *  sync's error, if any; the handle is gone either way. NULL is a no-op. */
int rill_log_close(rill_log_t *l);

/* ---- appending (any thread; appends are serialised by the topic) ------- */

/** Largest payload a record may have for this topic: the segment size less
 *  the segment header and the record header. */
uint32_t rill_log_max_payload(const rill_log_t *l);

/** Appends one record; *seq (may be NULL) gets its sequence number. Under
 *  RILL_LOG_SYNC_GROUP returns once the record is durable; under EVERY_N
 *  and INTERVAL the append that is due syncs before returning. RILL_EMSGSIZE
 *  over the max payload, RILL_ENOSPC when the segment file cannot grow
 *  to hold it, a new segment cannot be created, or the growth would pass
 *  the options' budget (nothing of the record is written; appends work
 *  again once there is room),
 *  RILL_EPERM on a read-only open, or the sync's error (the record is
 *  appended, and readable, but not known durable). */
int rill_log_append(rill_log_t *l, const void *data, uint32_t len, uint64_t *seq);

/** Appends one record made of n pieces (a header and a body from separate
 *  buffers, say), copied straight into the segment. */
int rill_log_appendv(rill_log_t *l, const rill_iov_t *iov, size_t n, uint64_t *seq);

/** Appends n records under one lock and one sync; *first gets the first
 *  record's sequence number (the others follow densely). All or nothing
 *  for RILL_EMSGSIZE, and for RILL_ENOSPC when the batch fits in one
 *  segment (one that would straddle the end of the segment being written
 *  starts the next). A batch larger than a segment may be cut short by
 *  RILL_ENOSPC: the records before the one that did not fit are
 *  appended, and *done (may be NULL) says how many. */
int rill_log_append_batch(rill_log_t *l, const rill_iov_t *recs, size_t n, uint64_t *first,
                          size_t *done);

/** Reserves room for a record of len bytes and points *data at where its
 *  payload goes, in the segment: write it in place, then rill_log_commit.
 *  Holds the topic's append lock until commit or abort, so other appenders
 *  wait: keep it short. */
int rill_log_reserve(rill_log_t *l, uint32_t len, void **data);

/** Seals the reserved record (checksum, index, visible to readers) and
 *  applies the sync policy as append does. */
int rill_log_commit(rill_log_t *l, uint64_t *seq);

/** Gives the reservation up; nothing was appended. 0, or RILL_EINVAL
 *  without a reservation (as the ipc cancels). */
int rill_log_cancel(rill_log_t *l);

/** Applies the retention options now: drops whole segments from the
 *  front, moves rill_log_first, rewrites the MANIFEST, deletes the files.
 *  Slices of dropped segments stay valid. RILL_EPERM when read-only. */
int rill_log_retain(rill_log_t *l);

/** Makes every record appended so far durable: one fdatasync of the
 *  segment being written (shared with any sync already under way). */
int rill_log_sync(rill_log_t *l);

/* ---- reading (any thread, any number at once) -------------------------- */

/** A record handed out by a read: payload is a slice of the segment's
 *  mapping (release it with rill_buf_release; it keeps the segment mapped
 *  even after retention removed it). */
typedef struct rill_log_record {
  rill_buf_t payload;
  uint64_t seq;
  uint64_t ts_ns; /* wall clock (CLOCK_REALTIME) at append, read at most 1 ms
                   * before and moved on by the TSC since */
} rill_log_record_t;

/** Sequence number of the oldest record still held (after retention). */
uint64_t rill_log_first(const rill_log_t *l);

/** Sequence number the next append will get: records are [first, next). */
uint64_t rill_log_next(const rill_log_t *l);

/** Records below this are on disk (synced); up to next when nothing waits. */
uint64_t rill_log_durable(const rill_log_t *l);

/* Every read checks the record it hands out: its header (marker, sequence
 * number, length within the segment) each time, and its checksum the
 * first time this open reads it (records this handle appended, and those
 * recovery verified at open, are known good). A record that fails is
 * never handed out: RILL_ECORRUPT, with rill_errmsg naming its sequence
 * number, or under RILL_LOG_CORRUPT_SKIP passed over and counted. */

/** The record seq, in O(1) (the segment by binary search over the
 *  segments, then the index). RILL_ENOENT outside [first, next),
 *  RILL_ECORRUPT for a record that fails its checks (whatever on_corrupt
 *  says: one record has nothing to skip to). */
int rill_log_read(rill_log_t *l, uint64_t seq, rill_log_record_t *rec);

/** Reads records from `from` on into out: at most max_count records and
 *  no more than max_bytes of payload (the first record is returned even if
 *  it alone is larger, so a read always makes progress). *n gets the count;
 *  0 with RILL_ENOENT when from is at or past next, or below first. With
 *  RILL_LOG_CORRUPT_SKIP, records that fail their checks are passed over
 *  and counted in the stats. */
int rill_log_read_range(rill_log_t *l, uint64_t from, size_t max_count, size_t max_bytes,
                        rill_log_record_t *out, size_t *n);

/** A cursor over a topic: the next sequence number to read, and what it
 *  lost to retention. Embed it; any number per log, one thread each. */
typedef struct rill_log_iter {
  rill_log_t *log;
  uint64_t next;
  uint64_t lost; /* records retention removed before this cursor read them */
} rill_log_iter_t;

/** Points it at record `from` of l. */
void rill_log_iter_init(rill_log_iter_t *it, rill_log_t *l, uint64_t from);

/** The cursor's next record into *rec, and moves on: 0; RILL_EAGAIN at
 *  the end of the log (call again later, or rill_log_wait on it->next);
 *  RILL_ELAGGED when retention removed records the cursor had not read
 *  (it moves to the oldest held and adds them to it->lost; call again);
 *  RILL_ECORRUPT for a damaged record (under RILL_LOG_CORRUPT_SKIP it is
 *  passed over and counted instead, and the next one returned). */
int rill_log_iter_next(rill_log_iter_t *it, rill_log_record_t *rec);

/** Waits until records from `from` on are visible and durable under the
 *  topic's policy (any record >= from), or timeout_ns passes (0: checks
 *  once; RILL_FOREVER: no bound): 0, or
 *  RILL_ETIMEDOUT, or RILL_ECLOSED once the log is being closed. A
 *  subscriber that fell behind retention learns it from the next read
 *  (RILL_ENOENT below first), never by a silent skip. */
int rill_log_wait(rill_log_t *l, uint64_t from, uint64_t timeout_ns);

/** On a read-only open: takes in the records a writer (in this process or
 *  another) appended since open or the last refresh, following it into new
 *  segments; each is verified as recovery would, so a record still being
 *  written is left for the next call. 0 on a writer's handle, which is
 *  always current. rill_log_wait does not see a writer in another process:
 *  poll with refresh instead. */
int rill_log_refresh(rill_log_t *l);

/** A subscriber's callback: n records (their slices are released after it
 *  returns: clone what you keep), preceded by `lost` records that
 *  retention removed before the subscriber read them (it moves on to the
 *  oldest record held, and says so, rather than skipping silently). */
typedef void (*rill_log_sub_cb)(void *ctx, const rill_log_record_t *recs, size_t n, uint64_t lost);

typedef struct rill_log_sub rill_log_sub_t;

/** Starts a thread that calls cb with the records from `from` on as they
 *  become visible under the topic's policy (as rill_log_wait sees them),
 *  in order, up to 64 at a time. A damaged record is never delivered: the
 *  subscriber passes over it and counts it in the stats' skipped (under
 *  either on_corrupt). RILL_ENOMEM or pthread_create's error. */
int rill_log_subscribe(rill_log_sub_t **out, rill_log_t *l, uint64_t from, rill_log_sub_cb cb,
                       void *ctx);

/** Stops the subscriber (after the callback in progress) and frees it;
 *  returns the next sequence number it would have delivered. Call it
 *  before closing the log. NULL is a no-op returning 0. */
uint64_t rill_log_unsubscribe(rill_log_sub_t *s);

/* ---- stats ------------------------------------------------------------- */

/** A topic's figures, as rill_log_stats fills them. */
typedef struct rill_log_stats {
  uint64_t first, next, durable; /* as rill_log_first, _next, _durable */
  uint64_t segments;
  uint64_t bytes; /* of records in all segments */
  uint64_t syncs; /* fdatasync rounds */
  /* Damaged records passed over by reads (SKIP) and by subscribers. */
  uint64_t skipped;
  uint64_t recovered_torn; /* bytes of torn tail truncated at open */
  /* Bytes allocated to the segment and index files: they grow as records
   * come (by doubling, up to the segment size), so this, not segments
   * times segment_bytes, is what the topic takes on disk. */
  uint64_t disk_bytes;
} rill_log_stats_t;

/** A snapshot of the topic's figures. Takes the segment list's lock
 *  briefly: not for a hot path. */
void rill_log_stats(const rill_log_t *l, rill_log_stats_t *st);

#ifdef __cplusplus
}
#endif
#endif /* RILL_LOG_H */
