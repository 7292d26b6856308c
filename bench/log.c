/*
 * rill bench log: the durable log against what a user would otherwise
 * keep records in, in the same process run: a plain write() loop on a file
 * (one syscall a record, no index, no checksum), the embedded stores a
 * user picks for a log inside the process (an mmap'd append file, SQLite
 * in WAL mode, LMDB: see peer_embed.h) and Redis Streams (the server a
 * user would pick). Every peer syncs as rill does in the same case, and
 * reads back what rill reads back.
 *
 * rill and the embedded stores are libraries called in the process; Redis
 * is a server reached over TCP on loopback, so its rows hold a round trip
 * (shared by 256 pipelined commands) and the server's own work on the
 * other CPU. That is the comparison a user makes when choosing between
 * them, not a like-for-like one of two engines.
 *
 * Everything rill writes goes to a fresh directory under $TMPDIR (or
 * /tmp), deleted at the end; topics take the library's defaults (128 MiB
 * segments, no CRC check on read) unless a case says otherwise. Logs and
 * files are created and filled outside every clock; segments roll over
 * inside it, as they would for a user.
 *
 * Redis: hiredis to a redis-server on 127.0.0.1:$RILL_REDIS_PORT (default
 * 6390, started by scripts/redis.sh, which `make test` and `make bench`
 * run). Its persistence is set per case to match rill's sync policy
 * (appendonly yes, and appendfsync no against RILL_LOG_SYNC_NEVER,
 * everysec against RILL_LOG_SYNC_INTERVAL at 1 s, always against
 * RILL_LOG_SYNC_GROUP), the settings found restored at the end (and on
 * exit). RDB snapshots keep the server's save rules, as a user's server
 * would; no MAXLEN trimming: streams are deleted outside the clock before
 * each timed run instead, so the server's memory stays small. When no
 * server answers, a note says so and the Redis rows are absent.
 *
 * SQLite and LMDB are optional at build time; a note says when their rows
 * are absent.
 *
 * Records are 64 bytes (4096 in append_4k) with a running counter, or a
 * timestamp, in their first 8 bytes; every reader adds those 8 bytes up,
 * so each peer touches what it read.
 *
 * - append_64, append_4k: rill_log_append under RILL_LOG_SYNC_NEVER;
 *   write_loop is write() of an 8-byte length and the record, one syscall
 *   a record, to an O_APPEND file; mmap_append a memcpy of the same frame
 *   into a shared mapping of a file grown 64 MiB at a time (ftruncate, its
 *   pages faulted in as they are first written), never msync'd;
 *   sqlite_off_txn256 one prepared INSERT a record, 256 a transaction,
 *   synchronous=OFF; lmdb_nosync_txn256 one mdb_put (MDB_APPEND, integer
 *   keys) a record, 256 a transaction, MDB_NOSYNC; the _txn1 rows commit
 *   every record, so each is readable when its append returns, as rill's
 *   is (batching trades that for throughput, and a user picks one or the
 *   other); redis_xadd_pre_p256 is XADD key * f <record> formatted once
 *   and pipelined 256 commands at a time (redis-benchmark -P 256),
 *   redis_xadd_fmt_p256 the same with hiredis's format string walked for
 *   every command, as most hiredis code is written. Pipelining, like the
 *   256-record transactions, buys throughput with latency: a record is
 *   acknowledged (or visible) only once its batch is, where rill's append
 *   returns with the record readable. append_4k's memcpy row
 *   is the machine's copy bandwidth (see memcpy_run).
 * - append_64_interval: the same under RILL_LOG_SYNC_INTERVAL with a 1 s
 *   interval (Redis's everysec, the interval it offers): the write loop
 *   fdatasync()s, the mmap file msync()s and LMDB (MDB_NOSYNC) calls
 *   mdb_env_sync() once a second has passed, looked at every 256 records;
 *   SQLite runs synchronous=NORMAL, which in WAL mode syncs at each
 *   checkpoint (every 1000 pages by default), not on a clock; Redis
 *   appendfsync everysec.
 * - read_seq: records appended beforehand read in order: rill_log_read_range
 *   256 at a time, each slice released; the write_loop file read with
 *   pread() 64 KiB at a time and its frames parsed; the mmap file's frames
 *   walked in a read-only mapping; SQLite a prepared SELECT ... WHERE seq
 *   > ? ORDER BY seq LIMIT 256 a call; LMDB a cursor (MDB_SET_RANGE, then
 *   MDB_NEXT) over 256 keys a read transaction, values read in place;
 *   XRANGE ... COUNT 256 from where the last reply ended, one round trip
 *   at a time.
 * - tail_lat, tail_lat_idle: one record in flight: the appender stamps
 *   rill_time_ns() into the record and appends it; a subscriber thread on
 *   the other CPU, in rill_log_wait (or XREAD BLOCK on its own
 *   connection), reads it and records now minus the stamp; the appender
 *   sends the next once that is done (tail_lat_idle: 200 µs later, so the
 *   subscriber has gone to sleep). The embedded stores cannot wake a
 *   reader, so they have no rows here.
 * - group_commit_N: N threads append under RILL_LOG_SYNC_GROUP, each
 *   append returning once durable; write_fsync is write() plus
 *   fdatasync() per record from N threads on one O_APPEND descriptor;
 *   sqlite_full one INSERT a transaction, synchronous=FULL (the WAL synced
 *   at every commit), on one connection the threads share under a lock;
 *   lmdb_sync one put a transaction with LMDB's synced commits (data, then
 *   the meta page, each fdatasync'd), writers taking turns on LMDB's own
 *   lock; redis_aof_always one connection per thread, XADD one at a time
 *   with appendfsync always, which fsyncs once per event-loop round before
 *   replying: Redis's own group commit. group_commit_N_lat times each
 *   append.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "peer_embed.h"
#include "peer_redis.h"
#include "rill/log.h"

#define REC     64u   /* record bytes */
#define BIG     4096u /* append_4k's record bytes */
#define BATCH   256u  /* records per read_range, per pipelined round, per XRANGE */
#define FRAME   8u    /* write_loop's length header */
#define MAX_THR 16
/* A log or file is started again (outside the clock) once it holds this
 * much, so a fast machine's long calibration cannot fill the disk. */
#define RESET_BYTES (1ull << 30)
/* memcpy's destination ring: far beyond any cache on the machine. */
#define RING_BYTES (256ull << 20)
/* read_seq's data: several times the last-level cache, so reads come from
 * memory as a tailing consumer's reads of recent records would. */
#define READ_RECS_FULL        (2u << 20)
#define READ_RECS_QUICK       (256u << 10)
#define REDIS_READ_RECS_FULL  200000u
#define REDIS_READ_RECS_QUICK 50000u
/* tail_lat_idle's pause between records: long past any spin a waiter
 * might do first (the log spins 50 µs), so the subscriber is asleep when
 * the record comes, as one on a quiet topic would be. */
#define IDLE_GAP_NS 200000u
/* append_64_interval's sync interval: Redis's appendfsync everysec, the
 * interval it offers, for rill and every peer alike. */
#define INTERVAL_NS 1000000000ull

#define KEY_APPEND "rill-bench-log:append"
#define KEY_FMT    "rill-bench-log:append-fmt"
#define KEY_READ   "rill-bench-log:read"
#define KEY_TAIL   "rill-bench-log:tail"
#define KEY_GROUP  "rill-bench-log:group"

/* ---- the suite's shared state -------------------------------------------------- */

static struct {
  char dir[PATH_MAX]; /* the temp dir: topics and the write_loop files */
  int port, ncpu;
  redisContext *rc; /* NULL when no server answered */
  /* appendonly and appendfsync as found, restored after group commit */
  char aof_was[16], fsync_was[16];
  bool aof_set;
  bool sqlite, lmdb; /* this build has them */
} S;

static void path_of(char *out, size_t cap, const char *name) {
  if ((size_t)snprintf(out, cap, "%s/%s", S.dir, name) >= cap)
    bench_die("path too long: %s/%s", S.dir, name);
}

static void rm_tree(const char *p) {
  if (bench_rm_tree(p) != 0)
    fprintf(stderr, "rill bench log: cannot remove %s: %s\n", p, strerror(errno));
}

/* A record: the 8 bytes that change, then filler. */
static void rec_fill(uint8_t *r, uint32_t len) { memset(r, 0x5a, len); }

static inline uint64_t rec_head(const void *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static void wait_step(unsigned *spins) {
  bench_relax();
  if (++*spins > 64 && S.ncpu < 2)
    sched_yield();
}

/* ---- rill ------------------------------------------------------------------------- */

static rill_log_t *log_open(const char *topic, rill_log_sync_t sync) {
  rill_log_t *l;
  rill_log_opts_t o = {.sync = sync};
  if (sync == RILL_LOG_SYNC_INTERVAL)
    o.sync_interval_ns = INTERVAL_NS;
  int rc = rill_log_open(&l, S.dir, topic, &o);
  if (rc != 0)
    bench_die("rill_log_open %s/%s: %s: %s", S.dir, topic, rill_strerror(rc), rill_errmsg());
  return l;
}

static void log_close(rill_log_t *l) {
  int rc = rill_log_close(l);
  if (rc != 0)
    bench_die("rill_log_close: %s: %s", rill_strerror(rc), rill_errmsg());
}

typedef struct rill_app {
  rill_log_t *l;
  rill_log_sync_t sync;
  const char *topic;
  uint32_t len;
  uint64_t bytes; /* appended since open, with headers */
  uint64_t ctr;
  uint8_t rec[BIG];
} rill_app_t;

static void rill_app_init(rill_app_t *a, const char *topic, uint32_t len, rill_log_sync_t sync) {
  memset(a, 0, sizeof *a);
  a->topic = topic;
  a->len = len;
  a->sync = sync;
  a->l = log_open(topic, sync);
  rec_fill(a->rec, len);
}

static void rill_app_fini(rill_app_t *a) {
  char p[PATH_MAX];
  log_close(a->l);
  path_of(p, sizeof p, a->topic);
  rm_tree(p);
}

static inline void rill_append1(rill_log_t *l, const void *rec, uint32_t len) {
  int rc = rill_log_append(l, rec, len, NULL);
  if (RILL_UNLIKELY(rc != 0))
    bench_die("rill_log_append: %s: %s", rill_strerror(rc), rill_errmsg());
}

static uint64_t rill_app_run(void *arg, uint64_t n) {
  rill_app_t *a = arg;
  if (a->bytes > RESET_BYTES) {
    rill_app_fini(a);
    a->l = log_open(a->topic, a->sync);
    a->bytes = 0;
  }
  uint64_t t0 = rill_time_ns();
  for (uint64_t i = 0; i < n; i++) {
    uint64_t v = a->ctr++;
    memcpy(a->rec, &v, 8);
    rill_append1(a->l, a->rec, a->len);
  }
  uint64_t t = rill_time_ns() - t0;
  a->bytes += n * (32 + ((a->len + 7) & ~7u));
  return t;
}

/* Whether an interval sync is due: a user's loop looks at the clock once
 * a batch of records, not once a record. */
static inline bool interval_due(uint64_t *last, uint64_t every_ns) {
  uint64_t now = rill_time_ns();
  if (now - *last < every_ns)
    return false;
  *last = now;
  return true;
}

/* ---- write_loop: the hand-written floor ---------------------------------------- */

typedef struct wl {
  int fd;
  char path[PATH_MAX];
  uint64_t sync_ns, synced_at; /* fdatasync once sync_ns passed; 0: never */
  uint32_t len;
  uint64_t bytes;
  uint64_t ctr;
  uint8_t frame[FRAME + BIG];
} wl_t;

static void wl_init(wl_t *w, const char *name, uint32_t len) {
  memset(w, 0, sizeof *w);
  path_of(w->path, sizeof w->path, name);
  w->fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (w->fd < 0)
    bench_die("open %s: %s", w->path, strerror(errno));
  w->len = len;
  w->synced_at = rill_time_ns();
  uint64_t l64 = len;
  memcpy(w->frame, &l64, FRAME);
  rec_fill(w->frame + FRAME, len);
}

/* Synced before it goes, so its pages are not written back under a later
 * case's clock. */
static void wl_fini(wl_t *w) {
  fdatasync(w->fd);
  close(w->fd);
  unlink(w->path);
}

static inline void wl_write(int fd, const uint8_t *frame, size_t n) {
  ssize_t got;
  while (RILL_UNLIKELY((got = write(fd, frame, n)) != (ssize_t)n))
    if (got >= 0 || errno != EINTR)
      bench_die("write: %s", got < 0 ? strerror(errno) : "short");
}

static uint64_t wl_run(void *arg, uint64_t n) {
  wl_t *w = arg;
  if (w->bytes > RESET_BYTES) {
    if (ftruncate(w->fd, 0) != 0)
      bench_die("ftruncate %s: %s", w->path, strerror(errno));
    w->bytes = 0;
  }
  size_t fl = FRAME + w->len;
  uint64_t t0 = rill_time_ns();
  for (uint64_t i = 0; i < n; i++) {
    uint64_t v = w->ctr++;
    memcpy(w->frame + FRAME, &v, 8);
    wl_write(w->fd, w->frame, fl);
    if (w->sync_ns && i % BATCH == BATCH - 1 && interval_due(&w->synced_at, w->sync_ns) &&
        fdatasync(w->fd) != 0)
      bench_die("fdatasync: %s", strerror(errno));
  }
  uint64_t t = rill_time_ns() - t0;
  w->bytes += n * fl;
  return t;
}

/* ---- the embedded stores: an mmap'd file, SQLite, LMDB ---------------------- */

typedef enum { E_MMAP, E_SQLITE, E_LMDB } ekind_t;

/* An append row of an embedded store, batched as its users batch: the
 * mmap file a record at a time (no transactions to batch), SQLite and
 * LMDB txn records a transaction: BATCH, as a loop that drains a queue of
 * records commits them, or 1, as an application that makes each record
 * readable before it goes on (what rill's append gives) commits them. */
typedef struct emb {
  ekind_t k;
  bench_embed_sync_t sync;
  uint64_t sync_ns, synced_at; /* the caller's interval sync (mmap, LMDB) */
  char path[PATH_MAX];
  uint32_t len;
  uint32_t txn; /* records a transaction (SQLite, LMDB) */
  uint64_t bytes, ctr;
  bench_mmap_log_t mm;
  bench_sqlite_t *sq;
  bench_lmdb_t *db;
  uint8_t rec[BIG];
} emb_t;

/* LMDB's map: room for RESET_BYTES of 4 KiB records, each two pages
 * (a value over a page goes to overflow pages, with a header). */
#define LMDB_MAP_BYTES (4ull << 30)

static void emb_open(emb_t *e) {
  if (e->k == E_MMAP)
    bench_mmap_open(&e->mm, e->path);
  else if (e->k == E_SQLITE)
    e->sq = bench_sqlite_open(e->path, e->sync);
  else
    e->db = bench_lmdb_open(e->path, e->sync, LMDB_MAP_BYTES);
}

static void emb_close(emb_t *e) {
  if (e->k == E_MMAP)
    bench_mmap_close(&e->mm, true);
  else if (e->k == E_SQLITE)
    bench_sqlite_close(e->sq, true);
  else
    bench_lmdb_close(e->db, true);
}

static void emb_init(emb_t *e, ekind_t k, bench_embed_sync_t sync, uint64_t sync_ns,
                     const char *name, uint32_t len) {
  memset(e, 0, sizeof *e);
  e->k = k;
  e->sync = sync;
  e->sync_ns = sync_ns;
  e->len = len;
  path_of(e->path, sizeof e->path, name);
  rec_fill(e->rec, len);
  emb_open(e);
  e->synced_at = rill_time_ns();
}

static uint64_t emb_run(void *arg, uint64_t n) {
  emb_t *e = arg;
  if (e->bytes > RESET_BYTES) {
    if (e->k == E_MMAP) {
      bench_mmap_reset(&e->mm);
    } else {
      emb_close(e);
      emb_open(e);
    }
    e->bytes = 0;
  }
  uint64_t t0 = rill_time_ns();
  if (e->k == E_MMAP) {
    for (uint64_t i = 0; i < n; i++) {
      uint64_t v = e->ctr++;
      memcpy(e->rec, &v, 8);
      bench_mmap_append(&e->mm, e->rec, e->len);
      if (e->sync_ns && i % BATCH == BATCH - 1 && interval_due(&e->synced_at, e->sync_ns))
        bench_mmap_sync(&e->mm);
    }
  } else {
    for (uint64_t i = 0; i < n;) {
      uint64_t k = n - i < e->txn ? n - i : e->txn;
      if (e->k == E_SQLITE) {
        bench_sqlite_begin(e->sq);
        for (uint64_t j = 0; j < k; j++) {
          uint64_t v = e->ctr++;
          memcpy(e->rec, &v, 8);
          bench_sqlite_insert(e->sq, e->rec, e->len);
        }
        bench_sqlite_commit(e->sq);
      } else {
        bench_lmdb_txn_t *t = bench_lmdb_begin(e->db);
        for (uint64_t j = 0; j < k; j++) {
          uint64_t v = e->ctr++;
          memcpy(e->rec, &v, 8);
          bench_lmdb_put(e->db, t, e->rec, e->len);
        }
        bench_lmdb_commit(e->db, t);
        if (e->sync_ns && interval_due(&e->synced_at, e->sync_ns))
          bench_lmdb_sync(e->db);
      }
      i += k;
    }
  }
  uint64_t t = rill_time_ns() - t0;
  e->bytes += n * (32 + ((e->len + 7) & ~7u));
  return t;
}

/* ---- memcpy: the copy bandwidth append_4k is held to ---------------------------- */

/* An append of 4 KiB copies the record into page-cache pages it has not
 * touched before (the segment's next bytes), so the honest yardstick is a
 * copy whose destination is not in any cache either: 4 KiB at a time
 * through a 256 MiB ring, from a source that stays hot, as the caller's
 * record does. The ring is written once before timing, so its pages are
 * mapped: the row is the bandwidth of the copy, and the page faults of
 * fresh segment pages, the header and the CRC are the part of rill's time
 * that the 70% allows for. */
typedef struct mc {
  uint8_t *ring;
  size_t off;
  uint64_t ctr;
  uint8_t src[BIG];
} mc_t;

static void memcpy_run(void *arg, uint64_t n) {
  mc_t *m = arg;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t v = m->ctr++;
    memcpy(m->src, &v, 8);
    memcpy(m->ring + m->off, m->src, BIG);
    m->off = m->off + BIG == RING_BYTES ? 0 : m->off + BIG;
  }
  bench_black_box(m->ring);
}

/* ---- redis ------------------------------------------------------------------------ */

typedef struct rx {
  redisContext *c;
  bool fmt; /* the format-string client rather than the pre-formatted one */
  const char *key;
  uint32_t len;
  uint64_t ctr;
  bench_redis_pre_t pre;
  uint8_t rec[BIG];
} rx_t;

static void rx_init(rx_t *x, bool fmt, uint32_t len) {
  *x = (rx_t){.c = S.rc, .fmt = fmt, .key = fmt ? KEY_FMT : KEY_APPEND, .len = len};
  rec_fill(x->rec, len);
  if (!fmt)
    bench_redis_pre_init(&x->pre, "XADD %s * f %b", x->key, x->rec, (size_t)len);
}

/* After the case, outside the clock: the stream's last entry must be the
 * last record sent, whole, or the row did not measure what it says. */
static void rx_check(rx_t *x) {
  if (x->ctr == 0)
    return;
  redisReply *r = bench_redis_cmd(x->c, "XREVRANGE %s + - COUNT 1", x->key);
  uint64_t want = x->ctr - 1;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
      r->element[0]->element[1]->element[1]->len != x->len ||
      rec_head(r->element[0]->element[1]->element[1]->str) != want)
    bench_die("redis: %s does not end with record %" PRIu64 " of %u bytes", x->key, want, x->len);
  freeReplyObject(r);
  bench_redis_do(x->c, "DEL %s", x->key);
}

static void rx_fini(rx_t *x) {
  rx_check(x);
  if (!x->fmt)
    bench_redis_pre_free(&x->pre);
}

/* XADD pipelined, BATCH commands written and then their BATCH replies
 * read, as a client that wants throughput from Redis does. The
 * pre-formatted client builds the command once and rewrites the record's
 * first 8 bytes in place (redis-benchmark -P 256); the format-string one
 * is redisAppendCommand("XADD %s * f %b") per record, as most hiredis code
 * is written, and pays for walking the format each time. */
static uint64_t redis_xadd_run(void *arg, uint64_t n) {
  rx_t *x = arg;
  bench_redis_do(x->c, "DEL %s", x->key);
  uint64_t t0 = rill_time_ns();
  if (!x->fmt) {
    bench_redis_pipeline(x->c, &x->pre, n, BATCH, &x->ctr, REDIS_REPLY_STRING);
    return rill_time_ns() - t0;
  }
  for (uint64_t i = 0; i < n;) {
    uint64_t k = n - i < BATCH ? n - i : BATCH;
    for (uint64_t j = 0; j < k; j++) {
      uint64_t v = x->ctr++;
      memcpy(x->rec, &v, 8);
      if (redisAppendCommand(x->c, "XADD %s * f %b", x->key, x->rec, (size_t)x->len) != REDIS_OK)
        bench_die("redis: %s", x->c->errstr);
    }
    for (uint64_t j = 0; j < k; j++) {
      redisReply *r = bench_redis_get(x->c);
      if (RILL_UNLIKELY(r->type != REDIS_REPLY_STRING))
        bench_die("redis: XADD replied type %d", r->type);
      freeReplyObject(r);
    }
    i += k;
  }
  return rill_time_ns() - t0;
}

/* ---- read_seq ------------------------------------------------------------------- */

typedef struct rr {
  rill_log_t *l;
  uint64_t first, next, pos;
  rill_log_record_t out[BATCH];
} rr_t;

static void rill_read_run(void *arg, uint64_t n) {
  rr_t *r = arg;
  uint64_t sum = 0;
  for (uint64_t left = n; left > 0;) {
    uint64_t k = left < BATCH ? left : BATCH;
    if (k > r->next - r->pos)
      k = r->next - r->pos;
    size_t got = 0;
    int rc = rill_log_read_range(r->l, r->pos, k, SIZE_MAX, r->out, &got);
    if (RILL_UNLIKELY(rc != 0 || got == 0))
      bench_die("rill_log_read_range at %" PRIu64 ": %s: %s (%zu records)", r->pos,
                rill_strerror(rc), rill_errmsg(), got);
    for (size_t j = 0; j < got; j++) {
      sum += rec_head(r->out[j].payload.data);
      rill_buf_release(&r->out[j].payload);
    }
    r->pos += got;
    left -= got;
    if (r->pos == r->next)
      r->pos = r->first;
  }
  bench_black_box((void *)(uintptr_t)sum);
}

/* The write_loop file read as a user's reader would: big pread()s into a
 * buffer, frames parsed out of it. */
typedef struct fr {
  int fd;
  off_t off;
  size_t at, end;
  uint8_t buf[64 << 10];
} fr_t;

static inline void fr_need(fr_t *f, size_t need) {
  while (f->end - f->at < need) {
    memmove(f->buf, f->buf + f->at, f->end - f->at);
    f->end -= f->at;
    f->at = 0;
    ssize_t got = pread(f->fd, f->buf + f->end, sizeof f->buf - f->end, f->off);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      bench_die("pread: %s", strerror(errno));
    if (got == 0) {
      /* Frames never straddle the end, so nothing is pending here: go
       * round again from the start. */
      if (f->end != 0)
        bench_die("write_loop file: a torn frame at its end");
      f->off = 0;
      continue;
    }
    f->off += got;
    f->end += (size_t)got;
  }
}

static void file_read_run(void *arg, uint64_t n) {
  fr_t *f = arg;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; i++) {
    fr_need(f, FRAME);
    uint64_t len = rec_head(f->buf + f->at);
    if (RILL_UNLIKELY(len < 8 || len > BIG))
      bench_die("write_loop file: a frame of %" PRIu64 " bytes", len);
    fr_need(f, FRAME + len);
    sum += rec_head(f->buf + f->at + FRAME);
    f->at += FRAME + len;
  }
  bench_black_box((void *)(uintptr_t)sum);
}

static void mmap_read_run(void *arg, uint64_t n) {
  uint64_t sum = 0;
  bench_mmap_read(arg, n, &sum);
  bench_black_box((void *)(uintptr_t)sum);
}

/* SQLite and LMDB read BATCH records a call (a prepared SELECT ... LIMIT,
 * a cursor in a read transaction), from where the last call ended, and
 * from the first record again at the end. */
typedef struct er {
  bench_sqlite_t *sq;
  bench_lmdb_t *db;
  uint64_t pos; /* SQLite: the last seq read; LMDB: the next key */
} er_t;

static void emb_read_run(void *arg, uint64_t n) {
  er_t *r = arg;
  uint64_t sum = 0;
  for (uint64_t left = n; left > 0;) {
    size_t k = left < BATCH ? (size_t)left : BATCH;
    size_t got = r->sq ? bench_sqlite_read(r->sq, &r->pos, k, &sum)
                       : bench_lmdb_read(r->db, &r->pos, k, &sum);
    if (got < k) {
      if (RILL_UNLIKELY(got == 0 && r->pos == 0))
        bench_die("read_seq: the %s store is empty", r->sq ? "SQLite" : "LMDB");
      r->pos = 0;
    }
    left -= got;
  }
  bench_black_box((void *)(uintptr_t)sum);
}

typedef struct xr {
  redisContext *c;
  char last[64]; /* the ID the last reply ended at; "" for the start */
} xr_t;

static void redis_xrange_run(void *arg, uint64_t n) {
  xr_t *x = arg;
  uint64_t sum = 0;
  for (uint64_t left = n; left > 0;) {
    unsigned k = left < BATCH ? (unsigned)left : BATCH;
    redisReply *r = x->last[0]
                        ? bench_redis_cmd(x->c, "XRANGE %s (%s + COUNT %u", KEY_READ, x->last, k)
                        : bench_redis_cmd(x->c, "XRANGE %s - + COUNT %u", KEY_READ, k);
    if (r->type != REDIS_REPLY_ARRAY)
      bench_die("redis: XRANGE replied type %d", r->type);
    for (size_t j = 0; j < r->elements; j++) {
      redisReply *e = r->element[j];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->elements != 2 ||
          e->element[1]->element[1]->len < 8)
        bench_die("redis: XRANGE: an entry of an unexpected shape");
      sum += rec_head(e->element[1]->element[1]->str);
      if (j + 1 == r->elements)
        snprintf(x->last, sizeof x->last, "%s", e->element[0]->str);
    }
    if (RILL_UNLIKELY(r->elements == 0 && !x->last[0]))
      bench_die("redis: XRANGE: the stream %s is empty", KEY_READ);
    left -= r->elements;
    /* Short: the end of the stream; the next round starts over. */
    if (r->elements < k)
      x->last[0] = 0;
    freeReplyObject(r);
  }
  bench_black_box((void *)(uintptr_t)sum);
}

/* ---- tail latency --------------------------------------------------------------- */

typedef enum { K_RILL, K_FILE, K_REDIS, K_SQLITE, K_LMDB } kind_t;

typedef struct tail {
  kind_t k;
  uint64_t gap_ns;
  rill_log_t *l;
  redisContext *pub, *sub;
} tail_t;

typedef struct tail_run {
  tail_t *t;
  uint64_t n;
  rill_hist_t *h;
  _Atomic uint64_t seen;
  atomic_bool ready;
} tail_run_t;

static void *tail_sub(void *arg) {
  tail_run_t *x = arg;
  tail_t *t = x->t;
  bench_pin_cpu(0);
  uint64_t pos = t->k == K_RILL ? rill_log_next(t->l) : 0;
  char last[64] = "0-0";
  atomic_store(&x->ready, true);
  for (uint64_t i = 0; i < x->n; i++) {
    uint64_t stamp, now;
    if (t->k == K_RILL) {
      int rc;
      while ((rc = rill_log_wait(t->l, pos, 1000000000ull)) == RILL_ETIMEDOUT)
        ;
      rill_log_record_t rec;
      if (rc == 0)
        rc = rill_log_read(t->l, pos, &rec);
      if (RILL_UNLIKELY(rc != 0))
        bench_die("tail at %" PRIu64 ": %s: %s", pos, rill_strerror(rc), rill_errmsg());
      now = rill_time_ns();
      stamp = rec_head(rec.payload.data);
      rill_buf_release(&rec.payload);
      pos++;
    } else {
      redisReply *r;
      for (;;) {
        r = bench_redis_cmd(t->sub, "XREAD BLOCK 1000 COUNT 1 STREAMS %s %s", KEY_TAIL, last);
        if (r->type != REDIS_REPLY_NIL)
          break;
        freeReplyObject(r);
      }
      now = rill_time_ns();
      /* [[key, [[id, [f, v]]]]] */
      redisReply *e = r->element[0]->element[1]->element[0];
      stamp = rec_head(e->element[1]->element[1]->str);
      snprintf(last, sizeof last, "%s", e->element[0]->str);
      freeReplyObject(r);
    }
    rill_hist_record(x->h, now - stamp);
    atomic_store_explicit(&x->seen, i + 1, memory_order_release);
  }
  return NULL;
}

static void tail_run(void *arg, uint64_t n, rill_hist_t *h) {
  tail_t *t = arg;
  bench_pin_cpu(1);
  tail_run_t x = {.t = t, .n = n, .h = h};
  atomic_init(&x.seen, 0);
  atomic_init(&x.ready, false);
  if (t->k == K_REDIS)
    bench_redis_do(t->pub, "DEL %s", KEY_TAIL);
  pthread_t th;
  if (pthread_create(&th, NULL, tail_sub, &x) != 0)
    bench_die("pthread_create failed");
  unsigned spins = 0;
  while (!atomic_load(&x.ready))
    wait_step(&spins);
  uint8_t rec[REC];
  rec_fill(rec, REC);
  bench_redis_pre_t pre = {0};
  if (t->k == K_REDIS)
    bench_redis_pre_init(&pre, "XADD %s * f %b", KEY_TAIL, rec, (size_t)REC);
  uint64_t done = rill_time_ns();
  for (uint64_t i = 0; i < n; i++) {
    /* One record in flight: the subscriber has the last one and is back
     * in its wait; the idle case leaves it there until it sleeps. */
    while (t->gap_ns && rill_time_ns() - done < t->gap_ns)
      bench_relax();
    uint64_t now = rill_time_ns();
    memcpy(rec, &now, 8);
    if (t->k == K_RILL) {
      rill_append1(t->l, rec, REC);
    } else {
      bench_redis_pipeline(t->pub, &pre, 1, 1, &now, REDIS_REPLY_STRING);
    }
    for (spins = 0; atomic_load_explicit(&x.seen, memory_order_acquire) <= i;)
      wait_step(&spins);
    done = rill_time_ns();
  }
  pthread_join(th, NULL);
  if (t->k == K_REDIS)
    bench_redis_pre_free(&pre);
}

/* ---- group commit ----------------------------------------------------------------- */

typedef struct gc {
  kind_t k;
  int threads;
  rill_log_t *l;
  int fd;
  redisContext **conn; /* one per thread */
  /* One connection the threads share under a lock, as SQLite's users
   * share one between threads: its writers take turns anyway, and its
   * busy handler would sleep a millisecond and more. */
  bench_sqlite_t *sq;
  pthread_mutex_t *sq_lock;
  bench_lmdb_t *db;
} gc_t;

typedef struct gc_thr {
  struct gc_run *x;
  int id;
  uint64_t n;
  rill_hist_t h;
} gc_thr_t;

typedef struct gc_run {
  gc_t *g;
  bool lat;
  _Atomic int ready;
  atomic_bool go;
  gc_thr_t thr[MAX_THR];
} gc_run_t;

static void *gc_worker(void *arg) {
  gc_thr_t *th = arg;
  gc_run_t *x = th->x;
  gc_t *g = x->g;
  bench_unpin();
  uint8_t frame[FRAME + REC];
  uint64_t l64 = REC;
  memcpy(frame, &l64, FRAME);
  rec_fill(frame + FRAME, REC);
  uint8_t *rec = frame + FRAME;
  bench_redis_pre_t pre = {0};
  if (g->k == K_REDIS)
    bench_redis_pre_init(&pre, "XADD %s * f %b", KEY_GROUP, rec, (size_t)REC);
  atomic_fetch_add(&x->ready, 1);
  for (unsigned spins = 0; !atomic_load(&x->go);)
    if (++spins > 64)
      sched_yield();
  for (uint64_t i = 0; i < th->n; i++) {
    uint64_t v = ((uint64_t)th->id << 48) | i;
    memcpy(rec, &v, 8);
    uint64_t t0 = x->lat ? rill_time_ns() : 0;
    if (g->k == K_RILL) {
      rill_append1(g->l, rec, REC);
    } else if (g->k == K_FILE) {
      wl_write(g->fd, frame, sizeof frame);
      if (RILL_UNLIKELY(fdatasync(g->fd) != 0))
        bench_die("fdatasync: %s", strerror(errno));
    } else if (g->k == K_SQLITE) {
      pthread_mutex_lock(g->sq_lock);
      bench_sqlite_insert(g->sq, rec, REC);
      pthread_mutex_unlock(g->sq_lock);
    } else if (g->k == K_LMDB) {
      bench_lmdb_txn_t *t = bench_lmdb_begin(g->db);
      bench_lmdb_put(g->db, t, rec, REC);
      bench_lmdb_commit(g->db, t);
    } else {
      bench_redis_pipeline(g->conn[th->id], &pre, 1, 1, &v, REDIS_REPLY_STRING);
    }
    if (x->lat)
      rill_hist_record(&th->h, rill_time_ns() - t0);
  }
  if (g->k == K_REDIS)
    bench_redis_pre_free(&pre);
  return NULL;
}

/* n appends in all, shared out over the threads; thread start and join
 * stay outside the clock, which runs from the go to the last join. */
static uint64_t gc_go(gc_t *g, uint64_t n, rill_hist_t *h) {
  gc_run_t *x = calloc(1, sizeof *x);
  if (!x)
    bench_die("out of memory");
  x->g = g;
  x->lat = h != NULL;
  atomic_init(&x->ready, 0);
  atomic_init(&x->go, false);
  pthread_t t[MAX_THR];
  for (int i = 0; i < g->threads; i++) {
    x->thr[i] = (gc_thr_t){
        .x = x, .id = i, .n = n / (uint64_t)g->threads + ((uint64_t)i < n % (uint64_t)g->threads)};
    rill_hist_init(&x->thr[i].h);
    if (pthread_create(&t[i], NULL, gc_worker, &x->thr[i]) != 0)
      bench_die("pthread_create failed");
  }
  while (atomic_load(&x->ready) < g->threads)
    sched_yield();
  uint64_t t0 = rill_time_ns();
  atomic_store(&x->go, true);
  for (int i = 0; i < g->threads; i++)
    pthread_join(t[i], NULL);
  uint64_t dt = rill_time_ns() - t0;
  for (int i = 0; h && i < g->threads; i++)
    rill_hist_merge(h, &x->thr[i].h);
  free(x);
  return dt;
}

static uint64_t gc_run(void *arg, uint64_t n) { return gc_go(arg, n, NULL); }
static void gc_lat(void *arg, uint64_t n, rill_hist_t *h) { gc_go(arg, n, h); }

/* Redis's persistence matched to the sync policy of rill in a case: the
 * AOF on, fsynced as appendfsync says ("no": left to the kernel, as rill's
 * RILL_LOG_SYNC_NEVER; "everysec", as RILL_LOG_SYNC_INTERVAL at 1 s;
 * "always", before every reply, as RILL_LOG_SYNC_GROUP, which Redis does
 * once per event-loop round: its own group commit). The settings found are
 * kept for redis_persist_restore; the rewrite that turning the AOF on
 * starts is waited out, so no case meets it. */
static void redis_persist(bench_ctx_t *b, const char *fsync, const char *cases) {
  if (!S.aof_set) {
    redisReply *r = bench_redis_cmd(S.rc, "CONFIG GET appendonly");
    snprintf(S.aof_was, sizeof S.aof_was, "%s", r->elements == 2 ? r->element[1]->str : "no");
    freeReplyObject(r);
    r = bench_redis_cmd(S.rc, "CONFIG GET appendfsync");
    snprintf(S.fsync_was, sizeof S.fsync_was, "%s",
             r->elements == 2 ? r->element[1]->str : "everysec");
    freeReplyObject(r);
    S.aof_set = true;
    bench_redis_do(S.rc, "CONFIG SET appendonly yes");
  }
  bench_redis_do(S.rc, "CONFIG SET appendfsync %s", fsync);
  for (int i = 0; i < 200; i++) {
    if (bench_redis_info_num(S.rc, "persistence", "aof_rewrite_in_progress") == 0 &&
        bench_redis_info_num(S.rc, "persistence", "aof_rewrite_scheduled") == 0 &&
        bench_redis_info_num(S.rc, "persistence", "rdb_bgsave_in_progress") == 0)
      break;
    usleep(50000);
  }
  bench_note(b, "redis: appendonly yes, appendfsync %s for %s (found %s, %s; restored after)",
             fsync, cases, S.aof_was, S.fsync_was);
}

static void redis_persist_restore(void) {
  if (!S.aof_set || !S.rc)
    return;
  S.aof_set = false;
  redisReply *r = redisCommand(S.rc, "CONFIG SET appendfsync %s", S.fsync_was);
  if (r)
    freeReplyObject(r);
  r = redisCommand(S.rc, "CONFIG SET appendonly %s", S.aof_was);
  if (r)
    freeReplyObject(r);
}

/* bench_die exits from inside a case: the server must not keep fsyncing
 * every write for whoever uses it next, nor the temp dir stay behind. */
static void at_exit(void) {
  redis_persist_restore();
  if (S.dir[0])
    rm_tree(S.dir);
}

/* ---- the cases ------------------------------------------------------------------- */

/* The embedded rows of an append case, synced as rill's: the mmap file,
 * and SQLite and LMDB when this build has them, BATCH records a
 * transaction and (where names has them) one a transaction, each record
 * readable once its append returns, as rill's are. names: mmap, SQLite,
 * LMDB, SQLite by one, LMDB by one; NULL leaves a row out. */
#define EMB_ROWS 5

static size_t emb_rows(bench_impl_t *im, emb_t *e, const char *const names[EMB_ROWS],
                       bench_embed_sync_t sync, uint64_t sync_ns, const char *file, uint32_t len) {
  static const ekind_t kinds[EMB_ROWS] = {E_MMAP, E_SQLITE, E_LMDB, E_SQLITE, E_LMDB};
  static const uint32_t txn[EMB_ROWS] = {1, BATCH, BATCH, 1, 1};
  static const char *const ext[EMB_ROWS] = {"mmap", "sqlite", "lmdb", "sqlite1", "lmdb1"};
  size_t n = 0;
  for (int i = 0; i < EMB_ROWS; i++) {
    e[i].path[0] = 0;
    if (!names[i] || (kinds[i] == E_SQLITE && !S.sqlite) || (kinds[i] == E_LMDB && !S.lmdb))
      continue;
    char name[64];
    snprintf(name, sizeof name, "%s.%s", file, ext[i]);
    /* SQLite's NORMAL is its interval: it syncs at checkpoints itself. */
    emb_init(&e[i], kinds[i], sync, kinds[i] == E_SQLITE ? 0 : sync_ns, name, len);
    e[i].txn = txn[i];
    im[n++] = (bench_impl_t){.name = names[i], .run_timed = emb_run, .arg = &e[i]};
  }
  return n;
}

/* After the case, outside the clock: the store's last record must be the
 * last one appended, or the row did not do what it says. */
static void emb_check(emb_t *e) {
  if (e->ctr == 0)
    return;
  uint64_t head = 0;
  bool found;
  if (e->k == E_MMAP) {
    found = e->mm.at >= 8 + e->len;
    if (found)
      head = rec_head(e->mm.map + e->mm.at - e->len);
  } else if (e->k == E_SQLITE) {
    found = bench_sqlite_last(e->sq, &head);
  } else {
    found = bench_lmdb_last(e->db, &head);
  }
  if (!found || head != e->ctr - 1)
    bench_die("%s: the last record is not %" PRIu64, e->path, e->ctr - 1);
}

static void emb_rows_fini(emb_t *e) {
  for (int i = 0; i < EMB_ROWS; i++)
    if (e[i].path[0]) {
      emb_check(&e[i]);
      emb_close(&e[i]);
    }
}

/* append_64 and append_64_interval: rill, a write() loop, the embedded
 * stores and Redis, every one syncing as the case says. */
typedef struct a64 {
  const char *name;
  rill_log_sync_t sync;
  bench_embed_sync_t esync;
  uint64_t sync_ns; /* the write loop's, the mmap file's and LMDB's interval */
  /* the write loop, then emb_rows's names */
  const char *rows[1 + EMB_ROWS];
  const char *aof_fsync, *why;
  bool fmt_row; /* the format-string Redis client as well */
} a64_t;

static void append_64_case(bench_ctx_t *b, const a64_t *c) {
  static rill_app_t ra;
  static wl_t wa;
  static rx_t xa, xf;
  static emb_t ea[EMB_ROWS];
  if (!bench_want(b, c->name))
    return;
  bool redis = S.rc != NULL;
  char file[64];
  snprintf(file, sizeof file, "%s.dat", c->name);
  rill_app_init(&ra, c->name, REC, c->sync);
  wl_init(&wa, file, REC);
  wa.sync_ns = c->sync_ns;
  bench_impl_t im[10] = {{.name = "rill_log", .run_timed = rill_app_run, .arg = &ra},
                         {.name = c->rows[0], .run_timed = wl_run, .arg = &wa}};
  size_t n = 2 + emb_rows(im + 2, ea, c->rows + 1, c->esync, c->sync_ns, c->name, REC);
  if (redis) {
    redis_persist(b, c->aof_fsync, c->why);
    rx_init(&xa, false, REC);
    im[n++] =
        (bench_impl_t){.name = "redis_xadd_pre_p256", .run_timed = redis_xadd_run, .arg = &xa};
    if (c->fmt_row) {
      rx_init(&xf, true, REC);
      im[n++] =
          (bench_impl_t){.name = "redis_xadd_fmt_p256", .run_timed = redis_xadd_run, .arg = &xf};
    }
  }
  bench_run(b, &(bench_case_t){c->name, REC, 1, im, n});
  rill_app_fini(&ra);
  wl_fini(&wa);
  emb_rows_fini(ea);
  if (redis) {
    rx_fini(&xa);
    if (c->fmt_row)
      rx_fini(&xf);
  }
}

static void case_append(bench_ctx_t *b) {
  static rill_app_t rb;
  static wl_t wb;
  static emb_t eb[EMB_ROWS];
  static mc_t mc;
  bench_impl_t im[8];
  size_t n;
  append_64_case(b, &(a64_t){.name = "append_64",
                             .sync = RILL_LOG_SYNC_NEVER,
                             .esync = BENCH_EMBED_SYNC_NEVER,
                             .rows = {"write_loop", "mmap_append", "sqlite_off_txn256",
                                      "lmdb_nosync_txn256", "sqlite_off_txn1", "lmdb_nosync_txn1"},
                             .aof_fsync = "no",
                             .why = "append_64 (rill syncs never)",
                             .fmt_row = true});
  append_64_case(b, &(a64_t){.name = "append_64_interval",
                             .sync = RILL_LOG_SYNC_INTERVAL,
                             .esync = BENCH_EMBED_SYNC_INTERVAL,
                             .sync_ns = INTERVAL_NS,
                             .rows = {"write_fdatasync_1s", "mmap_msync_1s", "sqlite_normal_txn256",
                                      "lmdb_envsync_1s_txn256"},
                             .aof_fsync = "everysec",
                             .why = "append_64_interval (rill syncs once a second)"});
  if (bench_want(b, "append_4k")) {
    rill_app_init(&rb, "append_4k", BIG, RILL_LOG_SYNC_NEVER);
    wl_init(&wb, "append_4k.dat", BIG);
    mc.ring = malloc(RING_BYTES);
    if (!mc.ring)
      bench_die("out of memory");
    memset(mc.ring, 1, RING_BYTES);
    rec_fill(mc.src, BIG);
    im[0] = (bench_impl_t){.name = "rill_log", .run_timed = rill_app_run, .arg = &rb};
    im[1] = (bench_impl_t){.name = "memcpy", .run = memcpy_run, .arg = &mc};
    im[2] = (bench_impl_t){.name = "write_loop", .run_timed = wl_run, .arg = &wb};
    n = 3 + emb_rows(im + 3, eb,
                     (const char *const[EMB_ROWS]){"mmap_append", "sqlite_off_txn256",
                                                   "lmdb_nosync_txn256"},
                     BENCH_EMBED_SYNC_NEVER, 0, "append_4k", BIG);
    bench_run(b, &(bench_case_t){"append_4k", BIG, 1, im, n});
    rill_app_fini(&rb);
    wl_fini(&wb);
    emb_rows_fini(eb);
    free(mc.ring);
    double r = bench_result(b, "append_4k", BIG, "rill_log");
    double m = bench_result(b, "append_4k", BIG, "memcpy");
    double w = bench_result(b, "append_4k", BIG, "write_loop");
    double a = bench_result(b, "append_4k", BIG, "mmap_append");
    bench_note(b,
               "append_4k bandwidth: rill_log %.2f GB/s, memcpy %.2f GB/s, write_loop %.2f GB/s, "
               "mmap_append %.2f GB/s",
               BIG / r, BIG / m, BIG / w, BIG / a);
  }
}

static void case_read(bench_ctx_t *b) {
  if (!bench_want(b, "read_seq"))
    return;
  static rr_t rr;
  static fr_t fr;
  static xr_t xr;
  static bench_mmap_reader_t mr;
  static er_t sr, lr;
  uint32_t n = bench_quick(b) ? READ_RECS_QUICK : READ_RECS_FULL;
  uint32_t nr = bench_quick(b) ? REDIS_READ_RECS_QUICK : REDIS_READ_RECS_FULL;
  uint8_t rec[REC];
  rec_fill(rec, REC);

  /* Filled and synced outside the clock, so no case after this one has
   * these pages written back under it. */
  rr.l = log_open("read_seq", RILL_LOG_SYNC_NEVER);
  for (uint64_t i = 0; i < n; i++) {
    memcpy(rec, &i, 8);
    rill_append1(rr.l, rec, REC);
  }
  int rc = rill_log_sync(rr.l);
  if (rc != 0)
    bench_die("rill_log_sync: %s: %s", rill_strerror(rc), rill_errmsg());
  rr.first = rr.pos = rill_log_first(rr.l);
  rr.next = rill_log_next(rr.l);

  char path[PATH_MAX];
  path_of(path, sizeof path, "read_seq.dat");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    bench_die("open %s: %s", path, strerror(errno));
  {
    static uint8_t chunk[4096 * (FRAME + REC)];
    for (uint64_t i = 0; i < n;) {
      size_t at = 0;
      for (; i < n && at < sizeof chunk; i++, at += FRAME + REC) {
        uint64_t l64 = REC;
        memcpy(chunk + at, &l64, FRAME);
        memcpy(chunk + at + FRAME, rec, REC);
        memcpy(chunk + at + FRAME, &i, 8);
      }
      wl_write(fd, chunk, at);
    }
    fdatasync(fd);
  }
  fr.fd = fd;
  fr.off = 0;
  fr.at = fr.end = 0;

  /* The embedded stores hold the same records, written as their append
   * rows write them (SQLite and LMDB a transaction of BATCH at a time),
   * and synced before the clock as the others are. */
  char mpath[PATH_MAX], spath[PATH_MAX], lpath[PATH_MAX];
  path_of(mpath, sizeof mpath, "read_seq.mmap");
  path_of(spath, sizeof spath, "read_seq.sqlite");
  path_of(lpath, sizeof lpath, "read_seq.lmdb");
  {
    bench_mmap_log_t m;
    bench_mmap_open(&m, mpath);
    for (uint64_t i = 0; i < n; i++) {
      memcpy(rec, &i, 8);
      bench_mmap_append(&m, rec, REC);
    }
    bench_mmap_sync(&m);
    bench_mmap_close(&m, false);
    bench_mmap_reader_open(&mr, mpath);
  }
  sr = (er_t){0};
  lr = (er_t){0};
  if (S.sqlite) {
    sr.sq = bench_sqlite_open(spath, BENCH_EMBED_SYNC_NEVER);
    for (uint64_t i = 0; i < n; i++) {
      if (i % BATCH == 0)
        bench_sqlite_begin(sr.sq);
      memcpy(rec, &i, 8);
      bench_sqlite_insert(sr.sq, rec, REC);
      if (i % BATCH == BATCH - 1 || i + 1 == n)
        bench_sqlite_commit(sr.sq);
    }
  }
  if (S.lmdb) {
    lr.db = bench_lmdb_open(lpath, BENCH_EMBED_SYNC_NEVER, LMDB_MAP_BYTES);
    bench_lmdb_txn_t *t = NULL;
    for (uint64_t i = 0; i < n; i++) {
      if (i % BATCH == 0)
        t = bench_lmdb_begin(lr.db);
      memcpy(rec, &i, 8);
      bench_lmdb_put(lr.db, t, rec, REC);
      if (i % BATCH == BATCH - 1 || i + 1 == n)
        bench_lmdb_commit(lr.db, t);
    }
    bench_lmdb_sync(lr.db);
  }

  bool redis = S.rc != NULL;
  if (redis) {
    bench_redis_do(S.rc, "DEL %s", KEY_READ);
    for (uint64_t i = 0; i < nr;) {
      uint64_t k = nr - i < BATCH ? nr - i : BATCH;
      for (uint64_t j = 0; j < k; j++) {
        uint64_t v = i + j;
        memcpy(rec, &v, 8);
        redisAppendCommand(S.rc, "XADD %s * f %b", KEY_READ, rec, (size_t)REC);
      }
      for (uint64_t j = 0; j < k; j++)
        freeReplyObject(bench_redis_get(S.rc));
      i += k;
    }
    xr = (xr_t){.c = S.rc};
  }
  char also[48] = "";
  if (redis)
    snprintf(also, sizeof also, ", redis a stream of %u", nr);
  bench_note(b,
             "read_seq: rill reads %u records (%.0f MiB of segment), write_loop's file %.0f MiB "
             "in pread()s of 64 KiB%s",
             n, n * (32.0 + REC) / (1 << 20), n * (double)(FRAME + REC) / (1 << 20), also);
  bench_impl_t im[6] = {{.name = "rill_log", .run = rill_read_run, .arg = &rr},
                        {.name = "file_pread", .run = file_read_run, .arg = &fr},
                        {.name = "mmap_read", .run = mmap_read_run, .arg = &mr}};
  size_t ni = 3;
  if (S.sqlite)
    im[ni++] = (bench_impl_t){.name = "sqlite_select256", .run = emb_read_run, .arg = &sr};
  if (S.lmdb)
    im[ni++] = (bench_impl_t){.name = "lmdb_cursor256", .run = emb_read_run, .arg = &lr};
  if (redis)
    im[ni++] = (bench_impl_t){.name = "redis_xrange", .run = redis_xrange_run, .arg = &xr};
  bench_run(b, &(bench_case_t){"read_seq", REC, 1, im, ni});

  log_close(rr.l);
  path_of(path, sizeof path, "read_seq");
  rm_tree(path);
  close(fd);
  path_of(path, sizeof path, "read_seq.dat");
  unlink(path);
  bench_mmap_reader_close(&mr);
  unlink(mpath);
  if (sr.sq)
    bench_sqlite_close(sr.sq, true);
  if (lr.db)
    bench_lmdb_close(lr.db, true);
  if (redis)
    bench_redis_do(S.rc, "DEL %s", KEY_READ);
}

static void case_tail(bench_ctx_t *b) {
  static tail_t rt, xt, rti, xti;
  bool redis = S.rc != NULL;
  bool busy = bench_want(b, "tail_lat"), idle = bench_want(b, "tail_lat_idle");
  if (!busy && !idle)
    return;
  rill_log_t *l = log_open("tail", RILL_LOG_SYNC_NEVER);
  redisContext *pub = NULL, *sub = NULL;
  if (redis && (!(pub = bench_redis_connect(S.port)) || !(sub = bench_redis_connect(S.port))))
    bench_die("redis: a second connection failed");
  if (redis)
    redis_persist(b, "no", "the tail cases (rill syncs never)");
  bench_note(b, "tail cases: SQLite, LMDB and a file cannot wake a reader when a record comes "
                "(a reader would poll): no embedded rows");
  rt = (tail_t){.k = K_RILL, .l = l};
  xt = (tail_t){.k = K_REDIS, .pub = pub, .sub = sub};
  rti = rt, xti = xt;
  rti.gap_ns = xti.gap_ns = IDLE_GAP_NS;
  const bench_impl_t im[] = {{.name = "rill_log", .run_lat = tail_run, .arg = &rt},
                             {.name = "redis_xread", .run_lat = tail_run, .arg = &xt}};
  const bench_impl_t imi[] = {{.name = "rill_log", .run_lat = tail_run, .arg = &rti},
                              {.name = "redis_xread", .run_lat = tail_run, .arg = &xti}};
  /* The appender on CPU 1 (tail_run), the subscriber on CPU 0 (tail_sub),
   * for rill and Redis alike; redis-server runs where it likes. */
  bench_set_pin(b, BENCH_PIN_OWN);
  bench_run(b, &(bench_case_t){"tail_lat", REC, 1, im, redis ? 2 : 1});
  bench_run(b, &(bench_case_t){"tail_lat_idle", REC, 1, imi, redis ? 2 : 1});
  bench_set_pin(b, BENCH_PIN_ONE);
  log_close(l);
  char p[PATH_MAX];
  path_of(p, sizeof p, "tail");
  rm_tree(p);
  if (redis) {
    bench_redis_do(pub, "DEL %s", KEY_TAIL);
    redisFree(pub);
    redisFree(sub);
  }
}

static void case_group(bench_ctx_t *b) {
  static const int threads[] = {1, 4, 16};
  static gc_t g[3][5];
  static const char *const rows[5] = {"rill_log", "write_fsync", "sqlite_full", "lmdb_sync",
                                      "redis_aof_always"};
  static pthread_mutex_t sq_lock = PTHREAD_MUTEX_INITIALIZER;
  static char names[3][2][24];
  bool any = false;
  for (int i = 0; i < 3; i++) {
    snprintf(names[i][0], sizeof names[i][0], "group_commit_%d", threads[i]);
    snprintf(names[i][1], sizeof names[i][1], "group_commit_%d_lat", threads[i]);
    any |= bench_want(b, names[i][0]) || bench_want(b, names[i][1]);
  }
  if (!any)
    return;
  bool redis = S.rc != NULL;
  rill_log_t *l = log_open("group", RILL_LOG_SYNC_GROUP);
  char path[PATH_MAX];
  path_of(path, sizeof path, "group.dat");
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    bench_die("open %s: %s", path, strerror(errno));
  redisContext *conn[MAX_THR] = {0};
  if (redis) {
    for (int i = 0; i < MAX_THR; i++)
      if (!(conn[i] = bench_redis_connect(S.port)))
        bench_die("redis: connection %d failed", i);
    redis_persist(b, "always", "group_commit (each append durable before it returns)");
  }
  char spath[PATH_MAX], lpath[PATH_MAX];
  path_of(spath, sizeof spath, "group.sqlite");
  path_of(lpath, sizeof lpath, "group.lmdb");
  bench_sqlite_t *sq = S.sqlite ? bench_sqlite_open(spath, BENCH_EMBED_SYNC_EACH) : NULL;
  bench_lmdb_t *db = S.lmdb ? bench_lmdb_open(lpath, BENCH_EMBED_SYNC_EACH, LMDB_MAP_BYTES) : NULL;
  for (int i = 0; i < 3; i++) {
    g[i][0] = (gc_t){.k = K_RILL, .threads = threads[i], .l = l};
    g[i][1] = (gc_t){.k = K_FILE, .threads = threads[i], .fd = fd};
    g[i][2] = (gc_t){.k = K_SQLITE, .threads = threads[i], .sq = sq, .sq_lock = &sq_lock};
    g[i][3] = (gc_t){.k = K_LMDB, .threads = threads[i], .db = db};
    g[i][4] = (gc_t){.k = K_REDIS, .threads = threads[i], .conn = conn};
    bench_impl_t im[5], iml[5];
    size_t n = 0;
    for (int j = 0; j < 5; j++) {
      if ((j == 2 && !sq) || (j == 3 && !db) || (j == 4 && !redis))
        continue;
      im[n] = (bench_impl_t){.name = rows[j], .run_timed = gc_run, .arg = &g[i][j]};
      iml[n++] = (bench_impl_t){.name = rows[j], .run_lat = gc_lat, .arg = &g[i][j]};
    }
    /* The appending threads run where the scheduler puts them (gc_worker
     * unpins), rill's and the peers' alike. */
    bench_set_pin(b, BENCH_PIN_NONE);
    bench_run(b, &(bench_case_t){names[i][0], REC, 1, im, n});
    bench_run(b, &(bench_case_t){names[i][1], REC, 1, iml, n});
    bench_set_pin(b, BENCH_PIN_ONE);
  }
  for (int i = 0; i < 3; i++) {
    if (!bench_want(b, names[i][0]))
      continue;
    char line[256];
    size_t at = 0;
    for (int j = 0; j < 5; j++) {
      double r = bench_rate_m(b, names[i][0], REC, rows[j]) * 1e6;
      if (!isnan(r) && at < sizeof line)
        at +=
            (size_t)snprintf(line + at, sizeof line - at, "%s%s %.0f", at ? ", " : "", rows[j], r);
    }
    bench_note(b, "%s: records/s: %s", names[i][0], line);
  }
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  bench_note(b, "group commit: rill made %" PRIu64 " fdatasync rounds for %" PRIu64 " records",
             st.syncs, st.next - st.first);
  log_close(l);
  path_of(path, sizeof path, "group");
  rm_tree(path);
  close(fd);
  path_of(path, sizeof path, "group.dat");
  unlink(path);
  if (sq)
    bench_sqlite_close(sq, true);
  if (db)
    bench_lmdb_close(db, true);
  if (redis) {
    bench_redis_do(S.rc, "DEL %s", KEY_GROUP);
    for (int i = 0; i < MAX_THR; i++)
      redisFree(conn[i]);
  }
}

/* ---- open after a crash ------------------------------------------------------- */

/* "Opening a 1 GiB log takes under 1 s": a child fills a topic with 4 KiB
 * records to 1 GiB (64 MiB with --quick) and is killed with SIGKILL, so
 * nothing was closed and the last segment has no checkpoint; the parent
 * times the open that recovers it. Once, not a harness case: a second
 * open would find it clean. The page cache is as the child left it
 * (warm); with root, /proc/sys/vm/drop_caches before the open gives the
 * cold figure, which this suite does not do on its own. */
static double open_ms = NAN;

static void case_open(bench_ctx_t *b) {
  if (!bench_want(b, "open_after_kill"))
    return;
  /* Just short of a whole number of 128 MiB segments, so the last one is
   * nearly full and all of it past any checkpoint: the most recovery
   * ever verifies record by record. */
  uint64_t bytes = (bench_quick(b) ? (uint64_t)64 << 20 : (uint64_t)1 << 30) - ((uint64_t)2 << 20);
  pid_t pid = fork();
  if (pid < 0)
    bench_die("fork: %s", strerror(errno));
  if (pid == 0) {
    rill_log_t *l;
    if (rill_log_open(&l, S.dir, "open", NULL))
      _exit(1);
    static uint8_t rec[BIG];
    memset(rec, 0x5a, sizeof rec);
    for (uint64_t done = 0; done < bytes; done += BIG + 32)
      if (rill_log_append(l, rec, BIG, NULL))
        _exit(1);
    kill(getpid(), SIGKILL);
    _exit(1);
  }
  int st;
  waitpid(pid, &st, 0);
  if (!WIFSIGNALED(st))
    bench_die("open_after_kill: the child did not fill the topic");
  uint64_t t0 = rill_time_ns();
  rill_log_t *l;
  int rc = rill_log_open(&l, S.dir, "open", NULL);
  uint64_t t1 = rill_time_ns();
  if (rc)
    bench_die("open_after_kill: %s", rill_errmsg());
  rill_log_stats_t ls;
  rill_log_stats(l, &ls);
  rill_log_close(l);
  open_ms = (double)(t1 - t0) / 1e6;
  bench_note(b,
             "open_after_kill: %.1f ms to open %.2f GiB (%" PRIu64 " records, %" PRIu64
             " segments) after SIGKILL, %" PRIu64 " torn bytes",
             open_ms, (double)ls.bytes / (1u << 30), ls.next - ls.first, ls.segments,
             ls.recovered_torn);
}

static void goals(bench_ctx_t *b) {
  if (bench_want(b, "append_64")) {
    bench_goal(b, "append 64 B, sync never", bench_rate_m(b, "append_64", REC, "rill_log"), true,
               10, "M/s");
    bench_goal(b, "append 64 B vs Redis XADD, pre-formatted, pipelined",
               bench_ratio(b, "append_64", REC, "redis_xadd_pre_p256", "rill_log"), true, 20, "x");
    /* Ahead of every embedded store a user might pick instead: the
     * fastest of them sets the ratio. */
    double lead = INFINITY;
    static const char *const emb[] = {"mmap_append", "sqlite_off_txn256", "lmdb_nosync_txn256",
                                      "sqlite_off_txn1", "lmdb_nosync_txn1"};
    for (size_t i = 0; i < sizeof emb / sizeof *emb; i++) {
      double r = bench_ratio(b, "append_64", REC, emb[i], "rill_log");
      if (!isnan(r) && r < lead)
        lead = r;
    }
    bench_goal(b, "append 64 B vs the fastest embedded store", isinf(lead) ? NAN : lead, true, 1,
               "x");
  }
  if (bench_want(b, "append_4k"))
    bench_goal(b, "append 4 KiB, bandwidth as a share of memcpy's",
               100 * bench_ratio(b, "append_4k", BIG, "memcpy", "rill_log"), true, 70, "%");
  if (bench_want(b, "read_seq"))
    bench_goal(b, "sequential zero-copy read, 64 B", bench_rate_m(b, "read_seq", REC, "rill_log"),
               true, 50, "M/s");
  if (bench_want(b, "tail_lat"))
    bench_goal(b, "append to subscriber p99, back to back",
               bench_result_q(b, "tail_lat", REC, "rill_log", 99), false, 2000, " ns");
  if (bench_want(b, "tail_lat_idle"))
    bench_goal(b, "append to subscriber p99, idle subscriber (tail_lat_idle)",
               bench_result_q(b, "tail_lat_idle", REC, "rill_log", 99), false, 2000, " ns");
  if (bench_want(b, "open_after_kill") && !bench_quick(b))
    bench_goal(b, "open 1 GiB after SIGKILL (warm page cache)", open_ms, false, 1000, " ms");
}

static int log_run(bench_ctx_t *b) {
  if (bench_tmp_dir(S.dir, sizeof S.dir, "log") != 0)
    return 1;
  atexit(at_exit);
  S.ncpu = bench_ncpu();
  S.port = bench_redis_port();
  S.rc = bench_redis_connect(S.port);
  if (S.rc) {
    char ver[32];
    bench_redis_version(S.rc, ver, sizeof ver);
    bench_note(b, "redis %s on 127.0.0.1:%d, hiredis %d.%d.%d; topics and files in %s", ver, S.port,
               HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, S.dir);
    bench_note(b, "redis rows: a server over loopback TCP against a library in the process (the "
                  "embedded rows are the like-for-like ones)");
  } else {
    bench_redis_absent(b, S.port);
  }
  S.sqlite = bench_sqlite_have();
  S.lmdb = bench_lmdb_have();
  if (S.sqlite && S.lmdb)
    bench_note(b, "embedded peers: SQLite %s (WAL), %s", bench_sqlite_version(),
               bench_lmdb_version());
  else
    bench_note(b,
               "embedded peers: %s%s%s missing from this build (scripts/deps.sh installs "
               "libsqlite3-dev and "
               "liblmdb-dev): those rows are absent",
               S.sqlite ? "" : "SQLite", !S.sqlite && !S.lmdb ? " and " : "", S.lmdb ? "" : "LMDB");
  case_append(b);
  case_read(b);
  case_tail(b);
  case_group(b);
  case_open(b);
  goals(b);
  redis_persist_restore();
  if (S.rc)
    redisFree(S.rc);
  S.rc = NULL;
  rm_tree(S.dir);
  S.dir[0] = 0;
  return 0;
}

const bench_suite_t bench_suite_log = {
    .name = "log",
    .about = "the durable log: appends, reads, tailing, group commit, vs write(), mmap, SQLite, "
             "LMDB (in the process) and Redis Streams (a server over TCP)",
    .run = log_run,
};
