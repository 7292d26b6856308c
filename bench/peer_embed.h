/*
 * The embedded stores a user picks when a log lives inside the process, as
 * peers of `rill bench log`: SQLite in WAL mode, LMDB, and a plain mmap'd
 * append file. Each is driven as its experienced users drive it: SQLite
 * with one prepared INSERT, bound and reset, inside transactions the
 * caller batches; LMDB with integer keys put in order (MDB_APPEND), inside
 * write transactions the caller batches; the file with a memcpy of a
 * length and the record into a shared mapping. Internal to `rill bench`.
 *
 * SQLite (libsqlite3-dev) and LMDB (liblmdb-dev) are optional at build
 * time: without one, bench_sqlite_have or bench_lmdb_have is false and the
 * suite leaves its rows out; the mmap file needs nothing.
 *
 * Every failure dies (bench_die): these run inside timed loops.
 */
#ifndef RILL_BENCH_PEER_EMBED_H
#define RILL_BENCH_PEER_EMBED_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bench.h"

/* When a store's writes reach the disk, matched to one of rill's sync
 * policies. */
typedef enum bench_embed_sync {
  /* Never by the store (rill's RILL_LOG_SYNC_NEVER): SQLite synchronous=OFF,
   * LMDB MDB_NOSYNC, the mmap file never msync'd. */
  BENCH_EMBED_SYNC_NEVER,
  /* Now and then (rill's RILL_LOG_SYNC_INTERVAL): SQLite synchronous=NORMAL,
   * which in WAL mode syncs the WAL at each checkpoint, not at commits;
   * LMDB MDB_NOSYNC and the mmap file synced when the caller calls
   * bench_lmdb_sync / bench_mmap_sync on its interval. */
  BENCH_EMBED_SYNC_INTERVAL,
  /* Every commit durable before it returns (rill's RILL_LOG_SYNC_GROUP):
   * SQLite synchronous=FULL, LMDB's default synced commits. */
  BENCH_EMBED_SYNC_EACH,
} bench_embed_sync_t;

/* ---- SQLite: table log(seq INTEGER PRIMARY KEY, rec BLOB), WAL mode ---- */

typedef struct bench_sqlite bench_sqlite_t;

/** Whether this build has SQLite. */
bool bench_sqlite_have(void);

/** "3.40.1", or NULL without SQLite. */
const char *bench_sqlite_version(void);

/** Creates (or opens) the database file at path in WAL mode with sync's
 *  synchronous setting, the default page size and checkpoints. One
 *  connection: a user's threads share it under their own lock, since
 *  SQLite's writers take turns anyway and its busy handler sleeps in
 *  milliseconds. */
bench_sqlite_t *bench_sqlite_open(const char *path, bench_embed_sync_t sync);

/** Closes it; with remove, deletes the database and its -wal and -shm. */
void bench_sqlite_close(bench_sqlite_t *s, bool remove);

/** BEGIN and COMMIT, prepared once. Without them each insert is its own
 *  transaction. */
void bench_sqlite_begin(bench_sqlite_t *s);
void bench_sqlite_commit(bench_sqlite_t *s);

/** Inserts one record as the next seq. */
void bench_sqlite_insert(bench_sqlite_t *s, const void *rec, size_t len);

/** Reads up to max records with seq > *after in order, each record's
 *  first 8 bytes added to *sum, *after moved to the last seq read (one
 *  prepared SELECT ... WHERE seq > ? ORDER BY seq LIMIT ?). Returns how
 *  many; 0 at the end. */
size_t bench_sqlite_read(bench_sqlite_t *s, uint64_t *after, size_t max, uint64_t *sum);

/** The last record's first 8 bytes into *head: false when the table is
 *  empty. */
bool bench_sqlite_last(bench_sqlite_t *s, uint64_t *head);

/* ---- LMDB: one unnamed database, 8-byte integer keys from 0 ---- */

typedef struct bench_lmdb bench_lmdb_t;
typedef struct bench_lmdb_txn bench_lmdb_txn_t;

/** Whether this build has LMDB. */
bool bench_lmdb_have(void);

/** "LMDB 0.9.24: ...", or NULL without LMDB. */
const char *bench_lmdb_version(void);

/** Creates the environment as the one file at path (MDB_NOSUBDIR, its
 *  -lock beside it), room for map_bytes, flags from sync. Opened on an
 *  existing file, puts carry on after its last key. */
bench_lmdb_t *bench_lmdb_open(const char *path, bench_embed_sync_t sync, size_t map_bytes);

/** Closes it; with remove, deletes the file and its lock file. */
void bench_lmdb_close(bench_lmdb_t *l, bool remove);

/** A write transaction: begin, puts, commit, all on one thread. LMDB lets
 *  one writer in at a time: a second thread's begin waits for the first's
 *  commit. */
bench_lmdb_txn_t *bench_lmdb_begin(bench_lmdb_t *l);
void bench_lmdb_put(bench_lmdb_t *l, bench_lmdb_txn_t *t, const void *rec, size_t len);
void bench_lmdb_commit(bench_lmdb_t *l, bench_lmdb_txn_t *t);

/** mdb_env_sync(force): the interval sync of an MDB_NOSYNC environment. */
void bench_lmdb_sync(bench_lmdb_t *l);

/** Reads up to max records from key *from in order through one cursor of
 *  a read transaction (reset and renewed between calls, as a reader that
 *  polls does), each value's first 8 bytes added to *sum (values are read
 *  in place, from the map), *from moved past the last. Returns how many;
 *  0 at the end. */
size_t bench_lmdb_read(bench_lmdb_t *l, uint64_t *from, size_t max, uint64_t *sum);

/** The last record's first 8 bytes into *head: false when the database is
 *  empty. */
bool bench_lmdb_last(bench_lmdb_t *l, uint64_t *head);

/* ---- the mmap'd append file ---- */

/* Frames are an 8-byte length and the record, as the write() loop's file;
 * the file grows a chunk at a time, one chunk mapped. A frame that would
 * not fit what is left of a chunk goes to the next, and the length 0 left
 * behind it (the file's zeros) says so to a reader. */
#define BENCH_MMAP_CHUNK (64u << 20)

typedef struct bench_mmap_log {
  int fd;
  char path[PATH_MAX];
  uint8_t *map;    /* the chunk being written */
  uint64_t base;   /* its offset in the file */
  size_t at;       /* the next frame's offset in it */
  uint64_t synced; /* the file offset bench_mmap_sync synced up to */
} bench_mmap_log_t;

/** Creates the file at path (truncated) and maps its first chunk. Nothing
 *  is synced but by bench_mmap_sync. */
void bench_mmap_open(bench_mmap_log_t *m, const char *path);

/** Unmaps and closes; with remove, deletes the file. */
void bench_mmap_close(bench_mmap_log_t *m, bool remove);

/** Empties the file and starts again at its first chunk. */
void bench_mmap_reset(bench_mmap_log_t *m);

/** Unmaps the chunk and maps the next (its pages stay in the page cache,
 *  dirty, for the next bench_mmap_sync). */
void bench_mmap_next(bench_mmap_log_t *m);

/** Makes what was appended since the last call durable: msync(MS_SYNC) of
 *  the chunk's new part, or fdatasync() of the file when earlier chunks,
 *  no longer mapped, hold some of it. */
void bench_mmap_sync(bench_mmap_log_t *m);

/** Bytes written so far, padding included. */
static inline uint64_t bench_mmap_bytes(const bench_mmap_log_t *m) { return m->base + m->at; }

static inline void bench_mmap_append(bench_mmap_log_t *m, const void *rec, uint32_t len) {
  if (RILL_UNLIKELY(m->at + 8 + len > BENCH_MMAP_CHUNK))
    bench_mmap_next(m);
  uint64_t l64 = len;
  memcpy(m->map + m->at, &l64, 8);
  memcpy(m->map + m->at + 8, rec, len);
  m->at += 8 + len;
}

/* The file read back: mapped whole, read-only, frames walked in order,
 * from the start again at its end. */
typedef struct bench_mmap_reader {
  const uint8_t *map;
  size_t size, at;
} bench_mmap_reader_t;

/** Maps the file at path (appended to beforehand, with the writer closed). */
void bench_mmap_reader_open(bench_mmap_reader_t *r, const char *path);
void bench_mmap_reader_close(bench_mmap_reader_t *r);

/** Reads n records, each one's first 8 bytes added to *sum. */
void bench_mmap_read(bench_mmap_reader_t *r, uint64_t n, uint64_t *sum);

#endif
