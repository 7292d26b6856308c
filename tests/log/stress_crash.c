/*
 * Crash test for the durable log (issue 4): a child process appends with
 * per-append durability and writes each acknowledged sequence number to a
 * pipe; the parent SIGKILLs it at a random moment, reopens the topic (which
 * recovers it) and checks that every acknowledged record is there with
 * exactly its bytes, that every record in [first, next) reads back with
 * its checksum verified as its sequence number implies (records appended but not
 * yet acknowledged may survive: they must be right too), and that the
 * sequence numbers stay dense. Then it appends a few records itself and
 * reads them back after another reopen.
 *
 * A record's bytes are a function of its sequence number alone, so any
 * record the log returns can be checked without remembering what was
 * written. Four topics take turns, so kills land on group commit and on
 * sync-every-1, on 64 KiB segments that roll under the knife, and on the
 * never policy (a process crash must not lose what the page cache holds).
 * Some rounds kill within the first few hundred microseconds, during open
 * and recovery; some kill a second child before the parent recovers, so the
 * second child is killed while it recovers; some start from a fresh topic,
 * so the kill lands while the topic and its first segment are created.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rill/log.h"
#include "stress.h"

#define ROUNDS     400
#define TOPICS     4
#define MAX_REC    4096
#define MAX_ACKS   (1u << 20)
#define PARENT_ADD 5 /* records the parent appends after each recovery */

static char dir[64];

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

/* Lengths 0, a few hundred bytes, or 1..4 KiB: large ones make the 64 KiB
 * segments roll every hundred records or so. */
static uint32_t rec_len(uint64_t seq) {
  uint64_t h = mix(seq);
  if (seq % 13 == 0)
    return 0;
  if (seq % 7 == 0)
    return (uint32_t)(1024 + h % (MAX_REC - 1024 + 1));
  return (uint32_t)(h % 300);
}

static void rec_fill(uint8_t *b, uint64_t seq) {
  uint64_t h = mix(seq ^ 0x5bd1e995u);
  uint32_t n = rec_len(seq);
  for (uint32_t k = 0; k < n; k++)
    b[k] = (uint8_t)((h >> (8 * (k % 8))) + k * 7u);
}

/* Whether r holds exactly what sequence seq implies. */
static bool rec_right(const rill_log_record_t *r, uint64_t seq) {
  uint8_t b[MAX_REC];
  rec_fill(b, seq);
  return r->seq == seq && r->payload.len == rec_len(seq) &&
         (r->payload.len == 0 || memcmp(r->payload.data, b, r->payload.len) == 0);
}

static uint64_t rng_state;

static uint64_t rnd(uint64_t n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return n ? rng_state % n : 0;
}

/* The topic's options: 0 group commit on default segments, 1 group commit
 * on 64 KiB, 2 sync every record on 64 KiB, 3 never on 64 KiB. */
static rill_log_opts_t topic_opts(int t) {
  rill_log_opts_t o = {0};
  o.sync = t == 3 ? RILL_LOG_SYNC_NEVER : t == 2 ? RILL_LOG_SYNC_EVERY_N : RILL_LOG_SYNC_GROUP;
  o.sync_every = 1;
  if (t != 0)
    o.segment_bytes = 64 << 10;
  return o;
}

static void topic_name(char *b, size_t n, int t) { snprintf(b, n, "t%d", t); }

static void ack(int fd, const uint64_t *seqs, size_t n) {
  size_t len = n * sizeof *seqs;
  if (write(fd, seqs, len) != (ssize_t)len)
    _exit(3);
}

/* The child: opens and appends until killed, in the forms the seed picks. */
static void child(int t, int fd, uint64_t seed) {
  rng_state = seed | 1;
  char name[16];
  topic_name(name, sizeof name, t);
  rill_log_opts_t o = topic_opts(t);
  rill_log_t *l;
  if (rill_log_open(&l, dir, name, &o) != 0) {
    fprintf(stderr, "child: open %s: %s\n", name, rill_errmsg());
    _exit(2);
  }
  uint8_t b[8][MAX_REC];
  int mode = (int)rnd(5); /* 4: a mix of all */
  for (;;) {
    uint64_t next = rill_log_next(l), seq;
    int m = mode == 4 ? (int)rnd(4) : mode;
    int rc;
    if (m == 0) {
      rec_fill(b[0], next);
      rc = rill_log_append(l, b[0], rec_len(next), &seq);
      if (rc == 0)
        ack(fd, &seq, 1);
    } else if (m == 1) {
      /* Three pieces, the middle one possibly empty. */
      rec_fill(b[0], next);
      uint32_t n = rec_len(next), a = (uint32_t)rnd(n + 1), c = (uint32_t)rnd(n - a + 1);
      rill_iov_t iov[3] = {{b[0], a}, {b[0] + a, c}, {b[0] + a + c, n - a - c}};
      rc = rill_log_appendv(l, iov, 3, &seq);
      if (rc == 0)
        ack(fd, &seq, 1);
    } else if (m == 2) {
      size_t n = 1 + rnd(8), done;
      rill_iov_t recs[8];
      for (size_t i = 0; i < n; i++) {
        rec_fill(b[i], next + i);
        recs[i] = (rill_iov_t){b[i], rec_len(next + i)};
      }
      rc = rill_log_append_batch(l, recs, n, &seq, &done);
      if (rc == 0) {
        uint64_t s[8];
        for (size_t i = 0; i < done; i++)
          s[i] = seq + i;
        ack(fd, s, done);
      }
    } else {
      void *p;
      rc = rill_log_reserve(l, rec_len(next), &p);
      if (rc == 0) {
        rec_fill(p, next);
        if (rnd(8) == 0) {
          /* Bytes left past the end by an abort must not become a record. */
          rc = rill_log_cancel(l);
          if (rc == 0)
            continue;
        } else {
          rc = rill_log_commit(l, &seq);
          if (rc == 0)
            ack(fd, &seq, 1);
        }
      }
    }
    if (rc != 0) {
      fprintf(stderr, "child: append mode %d at %llu: %s\n", m, (unsigned long long)next,
              rill_errmsg());
      _exit(4);
    }
  }
}

static uint64_t *acks;
static size_t nacks;
static size_t second_from; /* acks from here are the second child's (or nacks) */

/* Runs one child on topic t, kills it after delay_us, collects its acks. */
static void run_child(int t, uint64_t delay_us) {
  int p[2];
  CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
  fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
  uint64_t seed = rnd(UINT64_MAX);
  fflush(stdout);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    close(p[0]);
    child(t, p[1], seed);
    _exit(0);
  }
  close(p[1]);
  struct timespec ts = {(time_t)(delay_us / 1000000), (long)(delay_us % 1000000) * 1000};
  nanosleep(&ts, NULL);
  kill(pid, SIGKILL);
  int st;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child ended by itself, status 0x%x", st);
  for (;;) {
    CHECK(nacks < MAX_ACKS, "too many acks");
    ssize_t n = read(p[0], (uint8_t *)(acks + nacks), (MAX_ACKS - nacks) * sizeof *acks);
    if (n == 0)
      break;
    if (n < 0 && errno == EINTR)
      continue;
    CHECK(n > 0 && n % 8 == 0, "read of acks: %zd (%s)", n, strerror(errno));
    nacks += (size_t)n / 8;
  }
  close(p[0]);
}

static uint64_t torn_total, acks_checked, records_read;

/* Opens topic t as the writer (recovering it) and checks everything. The
 * acks of this round must continue densely from `expect`, the next the
 * parent saw last. Returns the new next. */
static uint64_t verify(int t, uint64_t expect) {
  char name[16];
  topic_name(name, sizeof name, t);
  rill_log_opts_t o = topic_opts(t);
  rill_log_t *l;
  CHECK(rill_log_open(&l, dir, name, &o) == 0, "reopen %s: %s", name, rill_errmsg());
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  torn_total += st.recovered_torn;
  uint64_t first = rill_log_first(l), next = rill_log_next(l);
  CHECK(first == 0, "first %llu", (unsigned long long)first);
  /* One thread appended in each child: its acks are dense, the first
   * child's from where the log was, the second's from past the first's
   * (records the first appended but did not acknowledge may lie between). */
  for (size_t i = 0; i < nacks; i++) {
    uint64_t want = i == 0 ? expect : acks[i - 1] + 1;
    if (i == second_from)
      CHECK(acks[i] >= want, "second child's first ack %llu is below %llu",
            (unsigned long long)acks[i], (unsigned long long)want);
    else
      CHECK(acks[i] == want, "ack %zu is %llu, expected %llu", i, (unsigned long long)acks[i],
            (unsigned long long)want);
  }
  if (nacks)
    CHECK(next >= acks[nacks - 1] + 1, "next %llu but %llu acknowledged", (unsigned long long)next,
          (unsigned long long)acks[nacks - 1]);
  CHECK(next >= expect, "next %llu went back from %llu", (unsigned long long)next,
        (unsigned long long)expect);
  for (size_t i = 0; i < nacks; i++) {
    rill_log_record_t r;
    int rc = rill_log_read(l, acks[i], &r);
    CHECK(rc == 0, "%s: acknowledged record %llu: %s", name, (unsigned long long)acks[i],
          rill_errmsg());
    CHECK(rec_right(&r, acks[i]), "%s: acknowledged record %llu has wrong bytes (%zu)", name,
          (unsigned long long)acks[i], r.payload.len);
    rill_buf_release(&r.payload);
    acks_checked++;
  }
  /* Everything held, densely, by range reads (which report a gap as a
   * record with the wrong seq) and by single reads near the end. */
  static rill_log_record_t out[256];
  for (uint64_t s = first; s < next;) {
    size_t n;
    int rc = rill_log_read_range(l, s, 256, 1 << 20, out, &n);
    CHECK(rc == 0 && n > 0, "%s: read_range %llu: %d %s", name, (unsigned long long)s, rc,
          rill_errmsg());
    for (size_t i = 0; i < n; i++) {
      CHECK(rec_right(&out[i], s + i), "%s: record %llu (seq %llu, %zu bytes) is wrong", name,
            (unsigned long long)(s + i), (unsigned long long)out[i].seq, out[i].payload.len);
      rill_buf_release(&out[i].payload);
    }
    s += n;
    records_read += n;
  }
  rill_log_record_t r;
  CHECK(rill_log_read(l, next, &r) == RILL_ENOENT, "a record at next %llu",
        (unsigned long long)next);
  /* Appends go on from next. */
  uint8_t b[MAX_REC];
  for (uint64_t s = next; s < next + PARENT_ADD; s++) {
    uint64_t got;
    rec_fill(b, s);
    CHECK(rill_log_append(l, b, rec_len(s), &got) == 0, "append after recovery: %s", rill_errmsg());
    CHECK(got == s, "append got %llu, expected %llu", (unsigned long long)got,
          (unsigned long long)s);
  }
  CHECK(rill_log_close(l) == 0, "close: %s", rill_errmsg());
  CHECK(rill_log_open(&l, dir, name, &o) == 0, "reopen %s: %s", name, rill_errmsg());
  CHECK(rill_log_next(l) == next + PARENT_ADD, "next %llu after reopen, expected %llu",
        (unsigned long long)rill_log_next(l), (unsigned long long)(next + PARENT_ADD));
  for (uint64_t s = next; s < next + PARENT_ADD; s++) {
    CHECK(rill_log_read(l, s, &r) == 0, "read %llu: %s", (unsigned long long)s, rill_errmsg());
    CHECK(rec_right(&r, s), "record %llu wrong after reopen", (unsigned long long)s);
    rill_buf_release(&r.payload);
  }
  CHECK(rill_log_close(l) == 0, "close: %s", rill_errmsg());
  return next + PARENT_ADD;
}

static void rm_topic(int t) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s/t%d'", dir, t);
  CHECK(system(cmd) == 0, "%s", cmd);
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL);
  rng_state = mix(seed) | 1;
  snprintf(dir, sizeof dir, "/tmp/rill-stress-crash-XXXXXX");
  CHECK(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
  acks = malloc(MAX_ACKS * sizeof *acks);
  CHECK(acks, "malloc");
  uint64_t next[TOPICS] = {0};
  unsigned early = 0, double_kills = 0, fresh = 0;
  for (int round = 0; round < ROUNDS; round++) {
    int t = round % TOPICS;
    nacks = 0;
    if (rnd(12) == 0) {
      rm_topic(t); /* the kill may land while the topic is created */
      next[t] = 0;
      fresh++;
    }
    /* Mostly 0..20 ms; one round in eight within the open. */
    uint64_t delay = rnd(8) == 0 ? (early++, rnd(400)) : rnd(20000);
    run_child(t, delay);
    second_from = nacks;
    if (rnd(6) == 0) {
      /* A second child recovers what the first left, and is killed early
       * (often mid-recovery); its acks follow the first's. */
      double_kills++;
      run_child(t, rnd(3000));
    }
    next[t] = verify(t, next[t]);
  }
  uint64_t total = 0;
  for (int t = 0; t < TOPICS; t++)
    total += next[t];
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0, "%s", cmd);
  free(acks);
  printf("crash: seed %llu: %d rounds (%u early kills, %u double kills, %u fresh topics), "
         "%llu acks checked, %llu records read, %llu records held, %llu torn bytes recovered\n",
         (unsigned long long)seed, ROUNDS, early, double_kills, fresh,
         (unsigned long long)acks_checked, (unsigned long long)records_read,
         (unsigned long long)total, (unsigned long long)torn_total);
  printf("1 passed, 0 failed\n");
  return 0;
}
