/*
 * The embedded peers of `rill bench log` (see peer_embed.h): SQLite in WAL
 * mode, LMDB and an mmap'd append file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peer_embed.h"

#ifdef RILL_BENCH_SQLITE
#include <sqlite3.h>
#endif
#ifdef RILL_BENCH_LMDB
#include <lmdb.h>
#endif

static void unlink_suffixed(const char *path, const char *suffix) {
  char p[PATH_MAX + 16];
  snprintf(p, sizeof p, "%s%s", path, suffix);
  if (unlink(p) != 0 && errno != ENOENT)
    bench_die("unlink %s: %s", p, strerror(errno));
}

/* ---- SQLite ----------------------------------------------------------------------- */

#ifdef RILL_BENCH_SQLITE

struct bench_sqlite {
  sqlite3 *db;
  char path[PATH_MAX];
  sqlite3_stmt *ins, *begin, *commit, *sel;
};

bool bench_sqlite_have(void) { return true; }
const char *bench_sqlite_version(void) { return sqlite3_libversion(); }

static void sq_check(bench_sqlite_t *s, int rc, const char *what) {
  if (RILL_UNLIKELY(rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW))
    bench_die("sqlite: %s: %s", what, sqlite3_errmsg(s->db));
}

static sqlite3_stmt *sq_prepare(bench_sqlite_t *s, const char *sql) {
  sqlite3_stmt *st = NULL;
  sq_check(s, sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), sql);
  return st;
}

static void sq_exec(bench_sqlite_t *s, const char *sql) {
  sq_check(s, sqlite3_exec(s->db, sql, NULL, NULL, NULL), sql);
}

bench_sqlite_t *bench_sqlite_open(const char *path, bench_embed_sync_t sync) {
  bench_sqlite_t *s = calloc(1, sizeof *s);
  if (!s)
    bench_die("out of memory");
  snprintf(s->path, sizeof s->path, "%s", path);
  if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
    bench_die("sqlite: open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
  sq_exec(s, "PRAGMA journal_mode=WAL");
  sq_exec(s, sync == BENCH_EMBED_SYNC_NEVER      ? "PRAGMA synchronous=OFF"
             : sync == BENCH_EMBED_SYNC_INTERVAL ? "PRAGMA synchronous=NORMAL"
                                                 : "PRAGMA synchronous=FULL");
  sq_exec(s, "CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY, rec BLOB NOT NULL)");
  s->ins = sq_prepare(s, "INSERT INTO log(rec) VALUES(?1)");
  s->begin = sq_prepare(s, "BEGIN");
  s->commit = sq_prepare(s, "COMMIT");
  s->sel = sq_prepare(s, "SELECT seq, rec FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2");
  return s;
}

void bench_sqlite_close(bench_sqlite_t *s, bool remove) {
  sqlite3_finalize(s->ins);
  sqlite3_finalize(s->begin);
  sqlite3_finalize(s->commit);
  sqlite3_finalize(s->sel);
  if (sqlite3_close(s->db) != SQLITE_OK)
    bench_die("sqlite: close %s: %s", s->path, sqlite3_errmsg(s->db));
  if (remove) {
    unlink_suffixed(s->path, "");
    unlink_suffixed(s->path, "-wal");
    unlink_suffixed(s->path, "-shm");
  }
  free(s);
}

static inline void sq_step(bench_sqlite_t *s, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (RILL_UNLIKELY(rc != SQLITE_DONE))
    bench_die("sqlite: %s: %s", what, sqlite3_errmsg(s->db));
}

void bench_sqlite_begin(bench_sqlite_t *s) { sq_step(s, s->begin, "BEGIN"); }
void bench_sqlite_commit(bench_sqlite_t *s) { sq_step(s, s->commit, "COMMIT"); }

void bench_sqlite_insert(bench_sqlite_t *s, const void *rec, size_t len) {
  /* SQLITE_STATIC: the step copies the bytes, before the caller's next
   * write to rec. */
  sqlite3_bind_blob(s->ins, 1, rec, (int)len, SQLITE_STATIC);
  sq_step(s, s->ins, "INSERT");
}

size_t bench_sqlite_read(bench_sqlite_t *s, uint64_t *after, size_t max, uint64_t *sum) {
  sqlite3_bind_int64(s->sel, 1, (sqlite3_int64)*after);
  sqlite3_bind_int64(s->sel, 2, (sqlite3_int64)max);
  size_t got = 0;
  int rc;
  while ((rc = sqlite3_step(s->sel)) == SQLITE_ROW) {
    const void *rec = sqlite3_column_blob(s->sel, 1);
    if (RILL_UNLIKELY(sqlite3_column_bytes(s->sel, 1) < 8))
      bench_die("sqlite: a record under 8 bytes");
    uint64_t v;
    memcpy(&v, rec, 8);
    *sum += v;
    *after = (uint64_t)sqlite3_column_int64(s->sel, 0);
    got++;
  }
  sqlite3_reset(s->sel);
  if (RILL_UNLIKELY(rc != SQLITE_DONE))
    bench_die("sqlite: SELECT: %s", sqlite3_errmsg(s->db));
  return got;
}

bool bench_sqlite_last(bench_sqlite_t *s, uint64_t *head) {
  sqlite3_stmt *st = sq_prepare(s, "SELECT rec FROM log ORDER BY seq DESC LIMIT 1");
  int rc = sqlite3_step(st);
  bool found = rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) >= 8;
  if (found)
    memcpy(head, sqlite3_column_blob(st, 0), 8);
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    bench_die("sqlite: SELECT the last: %s", sqlite3_errmsg(s->db));
  return found;
}

#else

bool bench_sqlite_have(void) { return false; }
const char *bench_sqlite_version(void) { return NULL; }
bench_sqlite_t *bench_sqlite_open(const char *path, bench_embed_sync_t sync) {
  (void)sync;
  bench_die("sqlite: %s: this build has no SQLite", path);
}
void bench_sqlite_close(bench_sqlite_t *s, bool remove) { (void)s, (void)remove; }
void bench_sqlite_begin(bench_sqlite_t *s) { (void)s; }
void bench_sqlite_commit(bench_sqlite_t *s) { (void)s; }
void bench_sqlite_insert(bench_sqlite_t *s, const void *rec, size_t len) {
  (void)s, (void)rec, (void)len;
}
size_t bench_sqlite_read(bench_sqlite_t *s, uint64_t *after, size_t max, uint64_t *sum) {
  (void)s, (void)after, (void)max, (void)sum;
  return 0;
}
bool bench_sqlite_last(bench_sqlite_t *s, uint64_t *head) {
  (void)s, (void)head;
  return false;
}

#endif

/* ---- LMDB ------------------------------------------------------------------------- */

#ifdef RILL_BENCH_LMDB

struct bench_lmdb {
  MDB_env *env;
  MDB_dbi dbi;
  char path[PATH_MAX];
  /* The next key: read and moved only inside a write transaction, which
   * LMDB lets one thread hold at a time. */
  uint64_t next;
  /* The reader's transaction and cursor, reset between reads. */
  MDB_txn *rtxn;
  MDB_cursor *cur;
};

bool bench_lmdb_have(void) { return true; }
const char *bench_lmdb_version(void) { return mdb_version(NULL, NULL, NULL); }

static void mdb_check(int rc, const char *what) {
  if (RILL_UNLIKELY(rc != MDB_SUCCESS))
    bench_die("lmdb: %s: %s", what, mdb_strerror(rc));
}

bench_lmdb_t *bench_lmdb_open(const char *path, bench_embed_sync_t sync, size_t map_bytes) {
  bench_lmdb_t *l = calloc(1, sizeof *l);
  if (!l)
    bench_die("out of memory");
  snprintf(l->path, sizeof l->path, "%s", path);
  mdb_check(mdb_env_create(&l->env), "mdb_env_create");
  mdb_check(mdb_env_set_mapsize(l->env, map_bytes), "mdb_env_set_mapsize");
  unsigned flags = MDB_NOSUBDIR;
  if (sync != BENCH_EMBED_SYNC_EACH)
    flags |= MDB_NOSYNC;
  mdb_check(mdb_env_open(l->env, path, flags, 0644), path);
  MDB_txn *t;
  mdb_check(mdb_txn_begin(l->env, NULL, 0, &t), "mdb_txn_begin");
  mdb_check(mdb_dbi_open(t, NULL, MDB_INTEGERKEY, &l->dbi), "mdb_dbi_open");
  MDB_cursor *c;
  mdb_check(mdb_cursor_open(t, l->dbi, &c), "mdb_cursor_open");
  MDB_val k, v;
  int rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  if (rc == MDB_SUCCESS) {
    memcpy(&l->next, k.mv_data, sizeof l->next);
    l->next++;
  } else if (rc != MDB_NOTFOUND) {
    mdb_check(rc, "mdb_cursor_get");
  }
  mdb_cursor_close(c);
  mdb_check(mdb_txn_commit(t), "mdb_txn_commit");
  return l;
}

void bench_lmdb_close(bench_lmdb_t *l, bool remove) {
  if (l->cur)
    mdb_cursor_close(l->cur);
  if (l->rtxn)
    mdb_txn_abort(l->rtxn);
  mdb_env_close(l->env);
  if (remove) {
    unlink_suffixed(l->path, "");
    unlink_suffixed(l->path, "-lock");
  }
  free(l);
}

bench_lmdb_txn_t *bench_lmdb_begin(bench_lmdb_t *l) {
  MDB_txn *t;
  mdb_check(mdb_txn_begin(l->env, NULL, 0, &t), "mdb_txn_begin");
  return (bench_lmdb_txn_t *)t;
}

void bench_lmdb_put(bench_lmdb_t *l, bench_lmdb_txn_t *t, const void *rec, size_t len) {
  uint64_t key = l->next;
  MDB_val k = {sizeof key, &key}, v = {len, (void *)rec};
  mdb_check(mdb_put((MDB_txn *)t, l->dbi, &k, &v, MDB_APPEND), "mdb_put");
  l->next++;
}

void bench_lmdb_commit(bench_lmdb_t *l, bench_lmdb_txn_t *t) {
  (void)l;
  mdb_check(mdb_txn_commit((MDB_txn *)t), "mdb_txn_commit");
}

void bench_lmdb_sync(bench_lmdb_t *l) { mdb_check(mdb_env_sync(l->env, 1), "mdb_env_sync"); }

size_t bench_lmdb_read(bench_lmdb_t *l, uint64_t *from, size_t max, uint64_t *sum) {
  if (!l->rtxn) {
    mdb_check(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &l->rtxn), "mdb_txn_begin");
    mdb_check(mdb_cursor_open(l->rtxn, l->dbi, &l->cur), "mdb_cursor_open");
  } else {
    mdb_check(mdb_txn_renew(l->rtxn), "mdb_txn_renew");
    mdb_check(mdb_cursor_renew(l->rtxn, l->cur), "mdb_cursor_renew");
  }
  uint64_t key = *from;
  MDB_val k = {sizeof key, &key}, v;
  size_t got = 0;
  int rc = mdb_cursor_get(l->cur, &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS) {
    if (RILL_UNLIKELY(v.mv_size < 8))
      bench_die("lmdb: a record under 8 bytes");
    uint64_t x;
    memcpy(&x, v.mv_data, 8);
    *sum += x;
    memcpy(from, k.mv_data, sizeof *from);
    (*from)++;
    if (++got == max)
      break;
    rc = mdb_cursor_get(l->cur, &k, &v, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    mdb_check(rc, "mdb_cursor_get");
  mdb_txn_reset(l->rtxn);
  return got;
}

bool bench_lmdb_last(bench_lmdb_t *l, uint64_t *head) {
  MDB_txn *t;
  MDB_cursor *c;
  mdb_check(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &t), "mdb_txn_begin");
  mdb_check(mdb_cursor_open(t, l->dbi, &c), "mdb_cursor_open");
  MDB_val k, v;
  int rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  bool found = rc == MDB_SUCCESS && v.mv_size >= 8;
  if (found)
    memcpy(head, v.mv_data, 8);
  mdb_cursor_close(c);
  mdb_txn_abort(t);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    mdb_check(rc, "mdb_cursor_get");
  return found;
}

#else

bool bench_lmdb_have(void) { return false; }
const char *bench_lmdb_version(void) { return NULL; }
bench_lmdb_t *bench_lmdb_open(const char *path, bench_embed_sync_t sync, size_t map_bytes) {
  (void)sync, (void)map_bytes;
  bench_die("lmdb: %s: this build has no LMDB", path);
}
void bench_lmdb_close(bench_lmdb_t *l, bool remove) { (void)l, (void)remove; }
bench_lmdb_txn_t *bench_lmdb_begin(bench_lmdb_t *l) {
  (void)l;
  return NULL;
}
void bench_lmdb_put(bench_lmdb_t *l, bench_lmdb_txn_t *t, const void *rec, size_t len) {
  (void)l, (void)t, (void)rec, (void)len;
}
void bench_lmdb_commit(bench_lmdb_t *l, bench_lmdb_txn_t *t) { (void)l, (void)t; }
void bench_lmdb_sync(bench_lmdb_t *l) { (void)l; }
size_t bench_lmdb_read(bench_lmdb_t *l, uint64_t *from, size_t max, uint64_t *sum) {
  (void)l, (void)from, (void)max, (void)sum;
  return 0;
}
bool bench_lmdb_last(bench_lmdb_t *l, uint64_t *head) {
  (void)l, (void)head;
  return false;
}

#endif

/* ---- the mmap'd append file ------------------------------------------------------- */

static void mm_map(bench_mmap_log_t *m) {
  if (ftruncate(m->fd, (off_t)(m->base + BENCH_MMAP_CHUNK)) != 0)
    bench_die("ftruncate %s: %s", m->path, strerror(errno));
  m->map = mmap(NULL, BENCH_MMAP_CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, (off_t)m->base);
  if (m->map == MAP_FAILED)
    bench_die("mmap %s: %s", m->path, strerror(errno));
  m->at = 0;
}

void bench_mmap_open(bench_mmap_log_t *m, const char *path) {
  memset(m, 0, sizeof *m);
  snprintf(m->path, sizeof m->path, "%s", path);
  m->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (m->fd < 0)
    bench_die("open %s: %s", path, strerror(errno));
  mm_map(m);
}

/* The file is cut to what was written, so a reader's map ends there. */
void bench_mmap_close(bench_mmap_log_t *m, bool remove) {
  munmap(m->map, BENCH_MMAP_CHUNK);
  if (ftruncate(m->fd, (off_t)bench_mmap_bytes(m)) != 0)
    bench_die("ftruncate %s: %s", m->path, strerror(errno));
  close(m->fd);
  if (remove)
    unlink_suffixed(m->path, "");
}

void bench_mmap_reset(bench_mmap_log_t *m) {
  munmap(m->map, BENCH_MMAP_CHUNK);
  if (ftruncate(m->fd, 0) != 0)
    bench_die("ftruncate %s: %s", m->path, strerror(errno));
  m->base = m->synced = 0;
  mm_map(m);
}

void bench_mmap_sync(bench_mmap_log_t *m) {
  if (m->synced < m->base) {
    if (fdatasync(m->fd) != 0)
      bench_die("fdatasync %s: %s", m->path, strerror(errno));
  } else {
    /* msync wants a page-aligned start. */
    size_t from = (size_t)(m->synced - m->base) & ~(size_t)4095;
    if (m->at > from && msync(m->map + from, m->at - from, MS_SYNC) != 0)
      bench_die("msync %s: %s", m->path, strerror(errno));
  }
  m->synced = m->base + m->at;
}

void bench_mmap_next(bench_mmap_log_t *m) {
  munmap(m->map, BENCH_MMAP_CHUNK);
  m->base += BENCH_MMAP_CHUNK;
  mm_map(m);
}

void bench_mmap_reader_open(bench_mmap_reader_t *r, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0)
    bench_die("open %s: %s", path, strerror(errno));
  r->size = (size_t)st.st_size;
  r->at = 0;
  if (r->size < 16)
    bench_die("mmap file %s: empty", path);
  r->map = mmap(NULL, r->size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (r->map == MAP_FAILED)
    bench_die("mmap %s: %s", path, strerror(errno));
}

void bench_mmap_reader_close(bench_mmap_reader_t *r) { munmap((void *)r->map, r->size); }

void bench_mmap_read(bench_mmap_reader_t *r, uint64_t n, uint64_t *sum) {
  uint64_t s = 0;
  size_t at = r->at;
  for (uint64_t i = 0; i < n;) {
    uint64_t len;
    if (RILL_UNLIKELY(at + 8 > r->size)) {
      at = 0;
      continue;
    }
    memcpy(&len, r->map + at, 8);
    if (RILL_UNLIKELY(len == 0)) {
      /* The rest of this chunk is empty: the next frame opens the next. */
      at = (at / BENCH_MMAP_CHUNK + 1) * BENCH_MMAP_CHUNK;
      continue;
    }
    if (RILL_UNLIKELY(len < 8 || at + 8 + len > r->size))
      bench_die("mmap file: a frame of %llu bytes at %zu", (unsigned long long)len, at);
    uint64_t v;
    memcpy(&v, r->map + at + 8, 8);
    s += v;
    at += 8 + len;
    i++;
  }
  r->at = at;
  *sum += s;
}
