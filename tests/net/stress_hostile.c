/*
 * Hostile clients against one in-process server (issue 5, "Reliability and
 * security"), while a well-behaved publisher does acknowledged publishes
 * and a subscriber receives them, all the way through:
 *
 *   malformed   every kind of bad frame, before and after HELLO, and
 *               streamed PUBLISHes whose pieces do not add up: ERROR with
 *               the reason's code, then EOF, nothing answered after it
 *   truncated   headers and bodies cut short, then closed, or then held
 *               open: the handshake or idle timeout closes those
 *   random      seeded random bytes, raw and after a valid HELLO, and valid
 *               frames with mutated headers: each connection ends
 *   slowloris   200 connections sending a HELLO one byte per 100 ms: all
 *               cut off by the handshake timeout, none welcomed
 *   cycles      10,000 connect/close cycles (half of them mid-frame, half
 *               ended by a reset): conns_open back to where it was, the
 *               accepts counted, no file descriptor leaked
 *   token       wrong, missing, off-by-one-byte, too long: an ERROR and EOF,
 *               and the BIND/PUBLISH sent behind the HELLO made no topic
 *   never_reads clients that ask for gigabytes (FETCHes of a big topic,
 *               subscriptions with unbounded credits) and read nothing:
 *               the process's memory stays bounded
 *   table_fill  10,000 unanswered asks on one connection, 10,000 SERVEs
 *               on another: refused past the per-connection limits with
 *               EBUSY naming them, nobody cut off, all let go on close
 *   chan_fill   10,000 BINDs on one connection, 10,000 SUBSCRIBEs to the
 *               good topic on another that grants credits and never reads:
 *               refused past the per-connection limits with EBUSY naming
 *               them, the good clients progressing meanwhile
 *   out_of_fds  RLIMIT_NOFILE lowered until the server's accept fails
 *               with EMFILE: each client after is turned away with EBUSY
 *               (not left waiting while the server spins), and the
 *               listener works again once descriptors are back
 *
 * Each phase must see the good clients make progress; at the end every
 * acknowledged message has been delivered exactly once, in order, and the
 * server stops cleanly. Only the public API and the wire protocol are
 * used: nothing here depends on which of the server's threads does what.
 * No timing assertions: deadlines are 30 s guards that turn a hang into a
 * failure.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rill/net.h"
#include "stress.h"

#define TOKEN        "hostile-test-token-0123456789abcdef"
#define HANDSHAKE_NS 1000000000ull /* short, so slowloris and silent clients end soon */
#define IDLE_NS      4000000000ull /* the good clients never go quiet this long */
#define MAX_BODY     (64u << 10)
#define TX_LIMIT     ((size_t)4 << 20)
#define GUARD_NS     30000000000ull /* a hang becomes a failure, never a pass */
#define MIN_PROGRESS 50u            /* acks and deliveries each phase must see */

static char dir[64];
static rill_server_t *srv;
static pthread_t srv_thread;
static int srv_rc = -1;
static uint16_t port;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t guard(void) { return now_ns() + GUARD_NS; }

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* A seeded PRNG (xorshift64*): the same bytes every run, so a failure
 * replays. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  CHECK(d, "opendir /proc/self/fd: %s", strerror(errno));
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1; /* the DIR's own */
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  CHECK(f, "fopen /proc/self/status");
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
      break;
  fclose(f);
  CHECK(kib > 0, "no VmRSS in /proc/self/status");
  return kib;
}

static bool topic_dir_exists(const char *topic) {
  char p[160];
  snprintf(p, sizeof p, "%s/%s", dir, topic);
  struct stat st;
  return stat(p, &st) == 0;
}

/* Seconds since the last call: how long each phase took, for the log. */
static uint64_t t_last;
static double phase_secs(void) {
  uint64_t t = now_ns(), d = t - t_last;
  t_last = t;
  return (double)d / 1e9;
}

static rill_server_stats_t stats(void) {
  rill_server_stats_t st;
  rill_server_stats(srv, &st);
  return st;
}

/* Waits for the server to count n open connections: the hostile ones
 * of a phase are all gone (it closes them on its own time). */
static void await_conns(uint64_t n, const char *phase) {
  uint64_t end = guard();
  while (stats().conns_open != n) {
    CHECK(now_ns() < end, "%s: %llu connections still open after 30 s, %llu expected", phase,
          (unsigned long long)stats().conns_open, (unsigned long long)n);
    sleep_ms(5);
  }
}

/* ---- the good clients ------------------------------------------------------------ */

static _Atomic uint64_t g_acked, g_delivered;
static _Atomic uint64_t g_final = UINT64_MAX; /* what was acked when the publisher stopped */
static atomic_bool g_stop;
static pthread_t pub_thread, sub_thread;

static _Atomic uint64_t g_max_gap; /* the longest wait for an ack this phase, ns */

static uint64_t value_of(uint64_t n) { return n * 0x9e3779b97f4a7c15ull + 7; }

static rill_client_t *connect_good(const char *name) {
  rill_client_t *c;
  int rc =
      rill_client_connect(&c, &(rill_client_opts_t){.port = port, .token = TOKEN, .name = name});
  CHECK(rc == 0, "%s: connect: %s", name, rill_errmsg());
  return c;
}

/* Acknowledged publishes, one after the other, as fast as they come back:
 * the acks prove the server kept serving. */
static void *publisher(void *arg) {
  (void)arg;
  rill_client_t *c = connect_good("good-pub");
  uint16_t ch;
  CHECK(rill_client_bind(c, "good", &ch) == 0, "bind: %s", rill_errmsg());
  uint64_t n = 0;
  while (!atomic_load(&g_stop)) {
    uint64_t v = value_of(n), seq, t0 = now_ns();
    int rc = rill_client_publish(c, ch, &v, sizeof v, true, &seq);
    uint64_t gap = now_ns() - t0;
    if (gap > atomic_load(&g_max_gap))
      atomic_store(&g_max_gap, gap); /* only this thread raises it */
    CHECK(rc == 0, "the good publisher's publish %llu: %s", (unsigned long long)n, rill_errmsg());
    CHECK(seq == n, "ack with sequence %llu where %llu was due", (unsigned long long)seq,
          (unsigned long long)n);
    atomic_store(&g_acked, ++n);
  }
  rill_client_close(c);
  return NULL;
}

/* Receives everything from the start, checks each record is the next one
 * in order with the value published, and keeps its credits topped up. */
static void *subscriber(void *arg) {
  (void)arg;
  rill_client_t *c = connect_good("good-sub");
  uint16_t sub;
  uint64_t start, granted = 4096, n = 0;
  /* CREATE: the publisher's BIND may come after this. */
  CHECK(rill_client_subscribe_ex(c, "good", RILL_NET_FROM_EARLIEST, (uint32_t)granted,
                                 RILL_CLIENT_SUB_CREATE, &sub, &start) == 0,
        "subscribe: %s", rill_errmsg());
  CHECK(start == 0, "the subscription starts at %llu", (unsigned long long)start);
  while (n < atomic_load(&g_final)) {
    rill_client_msg_t m;
    int rc = rill_client_next(c, &m, 100000000ull);
    if (rc == RILL_ETIMEDOUT) {
      /* Nothing for 100 ms: a PING keeps the idle timeout away (the
       * publisher may be waiting on a slow phase). */
      uint64_t rtt;
      CHECK(rill_client_ping(c, &rtt) == 0, "the subscriber's ping: %s", rill_errmsg());
      continue;
    }
    CHECK(rc == 0, "the good subscriber, at %llu: %s", (unsigned long long)n, rill_errmsg());
    CHECK(m.sub == sub, "a delivery for subscription %u", m.sub);
    CHECK(m.seq == n, "sequence %llu delivered where %llu was due (lost, repeated or reordered)",
          (unsigned long long)m.seq, (unsigned long long)n);
    uint64_t v;
    CHECK(m.len == sizeof v, "record %llu has %u bytes", (unsigned long long)n, m.len);
    memcpy(&v, m.data, sizeof v);
    CHECK(v == value_of(n), "record %llu holds another message", (unsigned long long)n);
    atomic_store(&g_delivered, ++n);
    if (granted - n <= 2048) {
      CHECK(rill_client_credit(c, sub, 2048) == 0, "credit: %s", rill_errmsg());
      granted += 2048;
    }
  }
  /* Every acked message came once; nothing may follow the last. */
  rill_client_msg_t m;
  int rc = rill_client_next(c, &m, 300000000ull);
  CHECK(rc == RILL_ETIMEDOUT, "a delivery past the last acked message (rc %d, seq %llu)", rc,
        rc == 0 ? (unsigned long long)m.seq : 0ull);
  rill_client_close(c);
  return NULL;
}

typedef struct {
  uint64_t acked, delivered;
} mark_t;

static mark_t mark_now(void) { return (mark_t){atomic_load(&g_acked), atomic_load(&g_delivered)}; }

/* A phase starts: where the good clients are, and a fresh longest wait. */
static mark_t phase_begin(void) {
  atomic_store(&g_max_gap, 0);
  return mark_now();
}

/* The longest the good publisher waited for an ack since phase_begin, in
 * ms: printed, not asserted (no timing assertions), for the reader. */
static double slowest_ack_ms(void) { return (double)atomic_load(&g_max_gap) / 1e6; }

/* How far the good clients went since m. */
static mark_t since(mark_t m) {
  mark_t p = mark_now();
  return (mark_t){p.acked - m.acked, p.delivered - m.delivered};
}

/* Waits until the good clients have each moved MIN_PROGRESS past m: the
 * hostile phase did not stall them. */
static void await_progress(const char *phase, mark_t m) {
  uint64_t end = guard();
  for (;;) {
    mark_t p = mark_now();
    if (p.acked >= m.acked + MIN_PROGRESS && p.delivered >= m.delivered + MIN_PROGRESS)
      return;
    CHECK(now_ns() < end, "%s: the good clients stalled: %llu acked, %llu delivered in 30 s", phase,
          (unsigned long long)(p.acked - m.acked), (unsigned long long)(p.delivered - m.delivered));
    sleep_ms(1);
  }
}

/* ---- a raw client: bytes as we choose them ---------------------------------------- */

typedef struct {
  uint8_t *b;
  size_t n, cap;
} out_t;

static void out_put(out_t *o, const void *p, size_t n) {
  if (o->n + n > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->n + n)
      cap *= 2;
    o->b = realloc(o->b, cap);
    CHECK(o->b, "realloc");
    o->cap = cap;
  }
  if (n)
    memcpy(o->b + o->n, p, n);
  o->n += n;
}

/* A header that claims len body bytes (which may never follow). */
static void out_hdr(out_t *o, uint8_t type, uint8_t flags, uint16_t ch, uint64_t id, uint64_t arg,
                    uint32_t len) {
  uint8_t h[RILL_NET_HDR];
  rill_frame_header(h, type, flags, ch, id, arg, len);
  out_put(o, h, sizeof h);
}

static void out_frame(out_t *o, uint8_t type, uint8_t flags, uint16_t ch, uint64_t id, uint64_t arg,
                      const void *body, uint32_t len) {
  out_hdr(o, type, flags, ch, id, arg, len);
  out_put(o, body, len);
}

static void out_hello(out_t *o, const void *token, size_t tl, const char *name) {
  uint8_t b[12 + RILL_NET_MAX_TOKEN + RILL_NET_MAX_NAME];
  CHECK(rill_net_hello_encode(b, token, tl, name, strlen(name)) == 0, "hello_encode");
  out_frame(o, RILL_F_HELLO, 0, 0, 0, 0, b, (uint32_t)rill_net_hello_size(tl, strlen(name)));
}

/* A FETCH body: u32 most records, then the topic. */
static void out_fetch(out_t *o, uint64_t id, uint64_t from, uint32_t most, const char *topic) {
  uint8_t b[4 + RILL_NET_MAX_NAME];
  put32(b, most);
  memcpy(b + 4, topic, strlen(topic));
  out_frame(o, RILL_F_FETCH, 0, 0, id, from, b, (uint32_t)(4 + strlen(topic)));
}

typedef struct {
  int fd;
  uint8_t *rx;
  size_t cap, have, off; /* rx[off..have) not yet handed out */
} raw_t;

static void raw_open(raw_t *r, size_t cap) {
  *r = (raw_t){.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), .cap = cap};
  CHECK(r->fd >= 0, "socket: %s", strerror(errno));
  r->rx = malloc(cap);
  CHECK(r->rx, "malloc");
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  CHECK(connect(r->fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s", strerror(errno));
}

static void raw_close(raw_t *r) {
  close(r->fd);
  free(r->rx);
  r->rx = NULL;
}

/* Sends all of it unless the server closed first (a hostile client's bytes
 * may well arrive after it was thrown out): false then. */
static bool raw_send(raw_t *r, const void *p, size_t n) {
  const uint8_t *b = p;
  uint64_t end = guard();
  while (n) {
    ssize_t w = send(r->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      b += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
      return false;
    CHECK(w < 0 && (errno == EAGAIN || errno == EINTR), "send: %s", strerror(errno));
    CHECK(now_ns() < end, "the server took none of %zu bytes in 30 s", n);
    struct pollfd pf = {r->fd, POLLOUT, 0};
    poll(&pf, 1, 10);
  }
  return true;
}

/* One look without waiting: 1 a frame (body valid until the next call),
 * 2 nothing yet, 0 EOF, -1 reset by the server. */
static int raw_try(raw_t *r, rill_frame_t *f) {
  if (r->off) {
    memmove(r->rx, r->rx + r->off, r->have - r->off);
    r->have -= r->off;
    r->off = 0;
  }
  for (;;) {
    size_t used;
    int rc = rill_frame_decode(r->rx, r->have, RILL_NET_MAX_BODY, f, &used);
    if (rc == 0) {
      r->off = used;
      return 1;
    }
    CHECK(rc == RILL_EAGAIN, "the server sent bytes that are not a frame: %s", rill_errmsg());
    CHECK(used <= r->cap, "a %zu-byte frame from the server, more than this client expects", used);
    ssize_t n = recv(r->fd, r->rx + r->have, r->cap - r->have, MSG_DONTWAIT);
    if (n > 0) {
      r->have += (size_t)n;
      continue;
    }
    if (n == 0)
      return 0;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 2;
    if (errno == ECONNRESET)
      return -1;
    CHECK(0, "recv: %s", strerror(errno));
  }
}

/* The next frame, EOF (0) or reset (-1), within the guard. */
static int raw_next(raw_t *r, rill_frame_t *f, uint64_t end, const char *what) {
  for (;;) {
    int k = raw_try(r, f);
    if (k != 2)
      return k;
    uint64_t t = now_ns();
    CHECK(t < end, "%s: the server neither answered nor closed within 30 s", what);
    struct pollfd pf = {r->fd, POLLIN, 0};
    poll(&pf, 1, (int)((end - t) / 1000000 + 1));
  }
}

static void raw_handshake(raw_t *r, const char *name) {
  out_t o = {0};
  out_hello(&o, TOKEN, strlen(TOKEN), name);
  CHECK(raw_send(r, o.b, o.n), "%s: the server closed before HELLO", name);
  free(o.b);
  rill_frame_t f;
  CHECK(raw_next(r, &f, guard(), name) == 1, "%s: closed instead of WELCOME", name);
  CHECK(f.type == RILL_F_WELCOME, "%s: type %u instead of WELCOME (code %lld)", name, f.type,
        (long long)(int64_t)f.arg);
  rill_net_welcome_t w;
  CHECK(rill_net_welcome_decode(f.body, f.len, &w) == 0, "%s: a bad WELCOME", name);
  CHECK(w.max_body == MAX_BODY, "%s: WELCOME says max body %u", name, w.max_body);
}

/* An ERROR with code, then the end of the connection: nothing else, not
 * even an answer to what was sent after the offence. */
static void expect_refused(raw_t *r, int code, const char *what) {
  rill_frame_t f;
  int k = raw_next(r, &f, guard(), what);
  /* The server's keepalive, to a connection quiet for half the idle
   * timeout: unanswered here, which is what ends it. */
  while (k == 1 && f.type == RILL_F_PING && f.id == 0)
    k = raw_next(r, &f, guard(), what);
  CHECK(k == 1, "%s: the connection ended without an ERROR (%s)", what, k ? "reset" : "EOF");
  CHECK(f.type == RILL_F_ERROR, "%s: a frame of type %u where an ERROR was due", what, f.type);
  CHECK((int64_t)f.arg == code, "%s: ERROR %lld (%.*s) where %d was due", what,
        (long long)(int64_t)f.arg, (int)f.len, (const char *)f.body, code);
  k = raw_next(r, &f, guard(), what);
  CHECK(k != 1, "%s: a frame of type %u after the ERROR", what, f.type);
  CHECK(r->have == 0, "%s: %zu stray bytes after the ERROR", what, r->have);
}

/* ---- malformed frames ------------------------------------------------------------- */

static int n_offenders;

/* Where an offence is committed: before HELLO, after it, or with a topic
 * ("trunc", which must stay empty) bound on channel 1. */
enum { PRE, WELCOMED, BOUND };

/* One connection that sends bad at the given stage, and a PING behind it
 * in the same write: the PING must go unanswered. */
static void offend(const char *what, int stage, const out_t *bad, int code) {
  raw_t r;
  raw_open(&r, 8192);
  if (stage >= WELCOMED)
    raw_handshake(&r, what);
  out_t o = {0};
  if (stage == BOUND) {
    out_frame(&o, RILL_F_BIND, 0, 1, 1, 0, "trunc", 5);
    CHECK(raw_send(&r, o.b, o.n), "%s: bind", what);
    rill_frame_t f;
    CHECK(raw_next(&r, &f, guard(), what) == 1 && f.type == RILL_F_ACK && f.id == 1,
          "%s: BIND not acked", what);
    o.n = 0;
  }
  out_put(&o, bad->b, bad->n);
  out_frame(&o, RILL_F_PING, 0, 0, 4242, 0, NULL, 0);
  raw_send(&r, o.b, o.n);
  free(o.b);
  expect_refused(&r, code, what);
  raw_close(&r);
  n_offenders++;
}

/* A HELLO body with the fixed fields as given and body_len bytes in all:
 * after the 12 fixed ones, the real token when tl says its length, and
 * printable filler otherwise. */
static size_t hello_craft(uint8_t *hb, uint32_t magic, uint16_t version, uint16_t flags,
                          uint16_t tl, uint16_t nl, size_t body_len) {
  memset(hb, 'a', body_len);
  uint8_t fixed[12];
  put32(fixed, magic);
  put16(fixed + 4, version);
  put16(fixed + 6, flags);
  put16(fixed + 8, tl);
  put16(fixed + 10, nl);
  memcpy(hb, fixed, body_len < 12 ? body_len : 12);
  if (tl == strlen(TOKEN) && body_len >= 12 + (size_t)tl)
    memcpy(hb + 12, TOKEN, tl);
  return body_len;
}

#define OFFEND(what, stage, code, ...)                                                             \
  do {                                                                                             \
    b.n = 0;                                                                                       \
    __VA_ARGS__;                                                                                   \
    offend(what, stage, &b, code);                                                                 \
  } while (0)

static void malformed(void) {
  mark_t m = phase_begin();
  out_t b = {0};
  uint8_t hb[1024];
  const uint16_t tl = (uint16_t)strlen(TOKEN);
  char what[96];
  memset(hb, 0, sizeof hb);

  /* Before HELLO. */
  OFFEND("PING before HELLO", PRE, RILL_EPROTO, out_frame(&b, RILL_F_PING, 0, 0, 1, 0, NULL, 0));
  OFFEND("CREDIT before HELLO", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_CREDIT, 0, 1, 0, 100, NULL, 0));
  OFFEND("PUBLISH before HELLO", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_PUBLISH, RILL_FF_ACK, 1, 1, 0, "x", 1));
  OFFEND("BIND before HELLO", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_BIND, 0, 1, 1, 0, "stolen-prehello", 15));
  CHECK(!topic_dir_exists("stolen-prehello"), "a BIND before HELLO made its topic");
  OFFEND("WELCOME from a client, first", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_WELCOME, 0, 0, 0, 0, hb, RILL_NET_WELCOME_SIZE));
  OFFEND("unknown type 0, first", PRE, RILL_EPROTO, out_hdr(&b, 0, 0, 0, 0, 0, 0));
  OFFEND("unknown type 200, first", PRE, RILL_EPROTO, out_hdr(&b, 200, 0, 0, 0, 0, 0));
  OFFEND("HELLO with the ACK flag", PRE, RILL_EPROTO, out_hello(&b, TOKEN, tl, "x");
         b.b[5] = RILL_FF_ACK);
  OFFEND("HELLO over max_body", PRE, RILL_EMSGSIZE,
         out_hdr(&b, RILL_F_HELLO, 0, 0, 0, 0, MAX_BODY + 1));
  OFFEND("HELLO of 4 GiB - 1", PRE, RILL_EMSGSIZE,
         out_hdr(&b, RILL_F_HELLO, 0, 0, 0, 0, UINT32_MAX));
  OFFEND("HELLO with a bad magic", PRE, RILL_EVERSION,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                   (uint32_t)hello_craft(hb, 0x4c4c4953u, 1, 0, tl, 0, 12u + tl)));
  OFFEND("HELLO with an empty body", PRE, RILL_EVERSION,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, NULL, 0));
  OFFEND("HELLO with 3 bytes of magic", PRE, RILL_EVERSION,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, "RIL", 3));
  const uint16_t bad_versions[] = {0, 2, 0xffff};
  for (int i = 0; i < 3; i++) {
    snprintf(what, sizeof what, "HELLO version %u", bad_versions[i]);
    OFFEND(
        what, PRE, RILL_EVERSION,
        out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                  (uint32_t)hello_craft(hb, RILL_NET_MAGIC, bad_versions[i], 0, tl, 0, 12u + tl)));
  }
  OFFEND("HELLO with 8 bytes", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                   (uint32_t)hello_craft(hb, RILL_NET_MAGIC, 1, 0, 0, 0, 8)));
  OFFEND("HELLO with reserved flags", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                   (uint32_t)hello_craft(hb, RILL_NET_MAGIC, 1, 0x8000, tl, 0, 12u + tl)));
  OFFEND("HELLO whose token length runs past the body", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                   (uint32_t)hello_craft(hb, RILL_NET_MAGIC, 1, 0, 200, 0, 12u + 100)));
  OFFEND("HELLO whose name length runs past the body", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                   (uint32_t)hello_craft(hb, RILL_NET_MAGIC, 1, 0, tl, 50, 12u + tl + 10)));
  OFFEND("HELLO with bytes beyond its lengths", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                   (uint32_t)hello_craft(hb, RILL_NET_MAGIC, 1, 0, tl, 4, 12u + tl + 4 + 9)));
  OFFEND("HELLO with lengths that wrap a u16 sum", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                   (uint32_t)hello_craft(hb, RILL_NET_MAGIC, 1, 0, 0xffff, 13, 12u + 12)));
  OFFEND("HELLO with a 201-byte name", PRE, RILL_EPROTO,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                   (uint32_t)hello_craft(hb, RILL_NET_MAGIC, 1, 0, tl, 201, 12u + tl + 201)));
  OFFEND("HELLO with a control byte in its name", PRE, RILL_EINVAL,
         out_frame(&b, RILL_F_HELLO, 0, 0, 0, 0, hb,
                   (uint32_t)hello_craft(hb, RILL_NET_MAGIC, 1, 0, tl, 3, 12u + tl + 3));
         b.b[b.n - 2] = 0x01);

  /* After a good HELLO: unknown types. (64..67, STATS and the topics'
   * requests, are a client's frames.) */
  const uint8_t unknown[] = {0, 7, 8, 15, 25, 31, 36, 47, 49, 63, 68, 128, 255};
  for (size_t i = 0; i < sizeof unknown; i++) {
    snprintf(what, sizeof what, "unknown type %u", unknown[i]);
    OFFEND(what, WELCOMED, RILL_EPROTO, out_hdr(&b, unknown[i], 0, 0, 1, 0, 0));
  }
  /* Flags a type does not take. */
  const struct {
    uint8_t type, flags;
  } bad_flags[] = {
      {RILL_F_PING, RILL_FF_ACK},
      {RILL_F_PONG, RILL_FF_STREAM},
      {RILL_F_BYE, RILL_FF_MORE},
      {RILL_F_BIND, RILL_FF_ACK},
      {RILL_F_PUBLISH, RILL_FF_MORE},
      {RILL_F_PUBLISH, RILL_FF_END},
      {RILL_F_PUBLISH, 0x10},
      {RILL_F_PUBLISH, 0x80},
      {RILL_F_PUBLISH_BATCH, RILL_FF_STREAM},
      {RILL_F_SUBSCRIBE, RILL_FF_ACK},
      {RILL_F_UNSUBSCRIBE, RILL_FF_END},
      {RILL_F_CREDIT, RILL_FF_ACK},
      {RILL_F_FETCH, RILL_FF_STREAM},
      {RILL_F_SERVE, RILL_FF_ACK},
      {RILL_F_ASK, RILL_FF_ACK},
      {RILL_F_REPLY, RILL_FF_MORE},
      {RILL_F_CANCEL, RILL_FF_STREAM},
      {RILL_F_CHUNK, RILL_FF_ACK},
      {RILL_F_CHUNK, RILL_FF_STREAM},
      {RILL_F_STATS, RILL_FF_ACK},
      {RILL_F_SUBSCRIBE, 0x20},
      {RILL_F_TOPICS, RILL_FF_ACK},
      {RILL_F_TOPIC_INFO, RILL_FF_MORE},
      {RILL_F_TOPIC_DELETE, RILL_FF_CREATE},
  };
  for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
    snprintf(what, sizeof what, "type %u with flags 0x%02x", bad_flags[i].type, bad_flags[i].flags);
    OFFEND(what, WELCOMED, RILL_EPROTO,
           out_frame(&b, bad_flags[i].type, bad_flags[i].flags, 1, 1, 0, "xy", 2));
  }
  /* Lengths over the limit: refused on the header, before any body. */
  const struct {
    uint8_t type;
    uint32_t len;
  } big[] = {
      {RILL_F_PUBLISH, MAX_BODY + 1},
      {RILL_F_BIND, RILL_NET_MAX_BODY},
      {RILL_F_PUBLISH, RILL_NET_MAX_BODY + 1},
      {RILL_F_PUBLISH_BATCH, UINT32_MAX},
      {RILL_F_PING, 1u << 31},
  };
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
    snprintf(what, sizeof what, "type %u claiming %u body bytes", big[i].type, big[i].len);
    OFFEND(what, WELCOMED, RILL_EMSGSIZE, out_hdr(&b, big[i].type, 0, 1, 1, 0, big[i].len));
  }
  /* What only a server sends, and a second HELLO. */
  memset(hb, 0, sizeof hb);
  OFFEND("WELCOME from a client", WELCOMED, RILL_EPROTO,
         out_frame(&b, RILL_F_WELCOME, 0, 0, 0, 0, hb, RILL_NET_WELCOME_SIZE));
  OFFEND("ACK from a client", WELCOMED, RILL_EPROTO,
         out_frame(&b, RILL_F_ACK, 0, 1, 1, 5, NULL, 0));
  OFFEND("DELIVER from a client", WELCOMED, RILL_EPROTO,
         out_frame(&b, RILL_F_DELIVER, 0, 1, 0, 5, "x", 1));
  OFFEND("DELIVER END from a client", WELCOMED, RILL_EPROTO,
         out_frame(&b, RILL_F_DELIVER, RILL_FF_END, 0, 1, 5, NULL, 0));
  OFFEND("a second HELLO", WELCOMED, RILL_EPROTO, out_hello(&b, TOKEN, tl, "again"));
  /* Streamed PUBLISHes whose CHUNKs do not add up to the whole length. */
  uint8_t piece[100] = {0};
  OFFEND("a stream's CHUNK past its length", BOUND, RILL_EPROTO,
         out_frame(&b, RILL_F_PUBLISH, RILL_FF_STREAM | RILL_FF_ACK, 1, 5, 100, piece, 10);
         out_frame(&b, RILL_F_CHUNK, RILL_FF_MORE, 1, 5, RILL_F_PUBLISH, piece, 100));
  OFFEND("a stream's last CHUNK short of its length", BOUND, RILL_EPROTO,
         out_frame(&b, RILL_F_PUBLISH, RILL_FF_STREAM | RILL_FF_ACK, 1, 5, 100, piece, 10);
         out_frame(&b, RILL_F_CHUNK, 0, 1, 5, RILL_F_PUBLISH, piece, 50));
  free(b.b);
  await_progress("malformed", m);
  mark_t p = since(m);
  printf("     malformed (%.1f s): %d offenders, each answered ERROR with its code, then EOF; "
         "good clients +%llu acked, +%llu delivered; slowest ack %.1f ms\n",
         phase_secs(), n_offenders, (unsigned long long)p.acked, (unsigned long long)p.delivered,
         slowest_ack_ms());
}

/* ---- truncated frames ------------------------------------------------------------- */

#define TRUNC_KINDS 5

/* Sends the k-th kind of cut-short frame on a fresh connection. */
static void truncate_one(raw_t *r, int k) {
  out_t o = {0};
  raw_open(r, 8192);
  switch (k) {
  case 0: /* a header cut short, before HELLO */
    out_hello(&o, TOKEN, strlen(TOKEN), "cut");
    o.n = 10;
    break;
  case 1: /* a HELLO body cut short */
    out_hello(&o, TOKEN, strlen(TOKEN), "cut");
    o.n = RILL_NET_HDR + 5;
    break;
  case 2: /* a header cut short, after HELLO */
    raw_handshake(r, "cut-hdr");
    out_hdr(&o, RILL_F_PING, 0, 0, 1, 0, 0);
    o.n = 12;
    break;
  case 3: /* a BIND body cut short */
    raw_handshake(r, "cut-bind");
    out_hdr(&o, RILL_F_BIND, 0, 1, 1, 0, 5);
    out_put(&o, "tru", 3);
    break;
  default: { /* a PUBLISH body cut short: half a record must not reach the log */
    raw_handshake(r, "cut-pub");
    out_t bind = {0};
    out_frame(&bind, RILL_F_BIND, 0, 1, 1, 0, "trunc", 5);
    CHECK(raw_send(r, bind.b, bind.n), "bind trunc");
    free(bind.b);
    rill_frame_t f;
    CHECK(raw_next(r, &f, guard(), "bind trunc") == 1 && f.type == RILL_F_ACK,
          "BIND trunc not acked");
    static uint8_t half[500];
    out_hdr(&o, RILL_F_PUBLISH, RILL_FF_ACK, 1, 2, 0, 1000);
    out_put(&o, half, sizeof half);
  }
  }
  raw_send(r, o.b, o.n);
  free(o.b);
}

static void truncated(void) {
  mark_t m = phase_begin();
  /* Cut short, then closed: the server must let go of each. */
  int closed = 0;
  for (int rep = 0; rep < 10; rep++)
    for (int k = 0; k < TRUNC_KINDS; k++) {
      raw_t r;
      truncate_one(&r, k);
      raw_close(&r);
      closed++;
    }
  await_conns(2, "truncated, closed");
  /* Cut short, then held open without a byte more: the handshake timeout
   * ends the first two kinds, the idle timeout the others, each with an
   * ERROR that says so. The good clients go on meanwhile. */
  raw_t held[TRUNC_KINDS * 4];
  for (int i = 0; i < TRUNC_KINDS * 4; i++)
    truncate_one(&held[i], i % TRUNC_KINDS);
  await_progress("truncated, held", m);
  for (int i = 0; i < TRUNC_KINDS * 4; i++) {
    char what[64];
    snprintf(what, sizeof what, "truncated kind %d, held open", i % TRUNC_KINDS);
    expect_refused(&held[i], RILL_ETIMEDOUT, what);
    raw_close(&held[i]);
  }
  /* The cut-short PUBLISHes appended nothing (nor did the broken streams
   * of the malformed phase). */
  raw_t r;
  raw_open(&r, 8192);
  raw_handshake(&r, "trunc-check");
  out_t o = {0};
  out_fetch(&o, 9, RILL_NET_FROM_EARLIEST, 10, "trunc");
  CHECK(raw_send(&r, o.b, o.n), "fetch");
  free(o.b);
  rill_frame_t f;
  CHECK(raw_next(&r, &f, guard(), "fetch trunc") == 1, "no answer to FETCH");
  CHECK(f.type == RILL_F_DELIVER && f.id == 9 && f.flags == RILL_FF_END && f.arg == 0,
        "topic trunc holds a record (type %u, flags 0x%x, seq %llu): a cut-short PUBLISH or a "
        "broken stream was appended",
        f.type, f.flags, (unsigned long long)f.arg);
  raw_close(&r);
  await_conns(2, "truncated");
  mark_t p = since(m);
  printf(
      "     truncated (%.1f s): %d cut short and closed, %d held open until the server's timeout "
      "(ERROR RILL_ETIMEDOUT, EOF); good clients +%llu acked, +%llu delivered; slowest ack %.1f "
      "ms\n",
      phase_secs(), closed, TRUNC_KINDS * 4, (unsigned long long)p.acked,
      (unsigned long long)p.delivered, slowest_ack_ms());
}

/* ---- random bytes ----------------------------------------------------------------- */

#define RANDOM_CONNS (2400 / SCALE)
#define RANDOM_BATCH 16

/* Valid frames on topic "j", after a HELLO, with a few header bytes
 * mutated. Bodies hold bytes no topic name may hold (and lengths stay
 * under '-'), so a mutated frame cannot name a new topic: each would cost
 * a preallocated log segment on disk. */
static void random_mutated(out_t *o) {
  size_t heads[20];
  int nh = 0;
#define F(...) (heads[nh++] = o->n, out_frame(o, __VA_ARGS__))
  uint8_t batch[12] = {2, 0, 0, 0, ' ', 'a', 2, 0, 0, 0, ' ', 'b'};
  uint8_t ask[6] = {1, 0, 'j', ' ', 'q', ' '};
  uint8_t fetch[5] = {5, 0, 0, 0, 'j'};
  F(RILL_F_BIND, 0, 1, 1, 0, "j", 1);
  F(RILL_F_PUBLISH, RILL_FF_ACK, 1, 2, 0, "{ x }", 5);
  F(RILL_F_PUBLISH_BATCH, RILL_FF_ACK, 1, 3, 2, batch, sizeof batch);
  F(RILL_F_SUBSCRIBE, 0, 2, 4, RILL_NET_FROM_EARLIEST, "j", 1);
  F(RILL_F_CREDIT, 0, 2, 0, 10, NULL, 0);
  F(RILL_F_FETCH, 0, 0, 5, RILL_NET_FROM_EARLIEST, fetch, sizeof fetch);
  F(RILL_F_PING, 0, 0, 6, 0, NULL, 0);
  F(RILL_F_SERVE, 0, 3, 7, 0, "j", 1);
  F(RILL_F_ASK, 0, 0, 8, 0, ask, sizeof ask);
  F(RILL_F_REPLY, 0, 0, 1, 0, " r", 2);
  F(RILL_F_CANCEL, 0, 0, 8, 0, NULL, 0);
  F(RILL_F_CHUNK, 0, 0, 9, 0, " c", 2);
  F(RILL_F_UNSUBSCRIBE, 0, 2, 10, 0, NULL, 0);
  F(RILL_F_PONG, 0, 0, 11, 0, NULL, 0);
#undef F
  int flips = 1 + (int)(rng() % 4);
  for (int i = 0; i < flips; i++) {
    size_t at = heads[rng() % (uint64_t)nh] + rng() % RILL_NET_HDR;
    o->b[at] ^= (uint8_t)(1 + rng() % 255);
  }
}

static void random_bytes(void) {
  mark_t m = phase_begin();
  uint64_t seed = rng_state;
  int errors = 0, welcomes = 0, frames = 0, resets = 0, silent = 0, kinds[3] = {0};
  static raw_t c[RANDOM_BATCH];
  for (int done = 0; done < RANDOM_CONNS; done += RANDOM_BATCH) {
    int kind[RANDOM_BATCH];
    for (int j = 0; j < RANDOM_BATCH; j++) {
      out_t o = {0};
      kind[j] = (done + j) % 3;
      kinds[kind[j]]++;
      if (kind[j])
        out_hello(&o, TOKEN, strlen(TOKEN), "random");
      if (kind[j] == 2) {
        random_mutated(&o);
      } else {
        /* Lengths spread from 1 byte (less than a header) to 16 KiB. */
        size_t n = 1 + rng() % ((uint64_t)1 << (rng() % 15));
        for (size_t i = 0; i < n; i++) {
          uint8_t byte = (uint8_t)rng();
          out_put(&o, &byte, 1);
        }
      }
      raw_open(&c[j], MAX_BODY + 2 * RILL_NET_HDR);
      raw_send(&c[j], o.b, o.n);
      free(o.b);
    }
    for (int j = 0; j < RANDOM_BATCH; j++) {
      rill_frame_t f;
      int k, first = 1;
      if (kind[j]) {
        /* A valid HELLO is answered whatever follows it. Its WELCOME is
         * awaited before our EOF, which lets the server drop what it has
         * not sent yet. */
        CHECK(raw_next(&c[j], &f, guard(), "random") == 1, "a valid HELLO went unanswered");
        CHECK(f.type == RILL_F_WELCOME, "a valid HELLO answered with type %u", f.type);
        welcomes++;
        first = 0;
        frames++;
      }
      /* Our end is done: a frame the server waits to complete ends too. */
      shutdown(c[j].fd, SHUT_WR);
      while ((k = raw_next(&c[j], &f, guard(), "random")) == 1) {
        if (first) {
          CHECK(f.type == RILL_F_ERROR, "random bytes, no HELLO, answered with type %u", f.type);
          errors++;
        }
        first = 0;
        frames++;
      }
      if (k < 0)
        resets++;
      if (first)
        silent++;
      raw_close(&c[j]);
    }
  }
  CHECK(welcomes == kinds[1] + kinds[2], "%d WELCOMEs for %d valid HELLOs", welcomes,
        kinds[1] + kinds[2]);
  await_conns(2, "random");
  await_progress("random", m);
  mark_t p = since(m);
  printf("     random (%.1f s): %d connections (seed %llx): %d raw (%d answered ERROR), %d random "
         "after a "
         "HELLO, %d mutated frames; %d frames back, %d resets, %d closed silently; good clients "
         "+%llu acked, +%llu delivered; slowest ack %.1f ms\n",
         phase_secs(), kinds[0] + kinds[1] + kinds[2], (unsigned long long)seed, kinds[0], errors,
         kinds[1], kinds[2], frames, resets, silent, (unsigned long long)p.acked,
         (unsigned long long)p.delivered, slowest_ack_ms());
}

/* ---- slowloris -------------------------------------------------------------------- */

#define LORIS 200

static void slowloris(void) {
  mark_t m = phase_begin();
  out_t hello = {0};
  out_hello(&hello, TOKEN, strlen(TOKEN), "slowloris");
  raw_t *c = calloc(LORIS, sizeof *c);
  size_t *sent = calloc(LORIS, sizeof *sent);
  int *state = calloc(LORIS, sizeof *state); /* 0 open, 1 ERROR seen, 2 ended */
  CHECK(c && sent && state, "calloc");
  for (int i = 0; i < LORIS; i++)
    raw_open(&c[i], 4096);
  int open = LORIS, errors = 0, resets = 0;
  uint64_t end = guard();
  size_t most = 0;
  mark_t during = {0};
  while (open) {
    CHECK(now_ns() < end, "slowloris: %d connections still open after 30 s", open);
    for (int i = 0; i < LORIS; i++) {
      if (state[i] == 2)
        continue;
      rill_frame_t f;
      int k;
      while ((k = raw_try(&c[i], &f)) == 1) {
        CHECK(f.type == RILL_F_ERROR,
              "slowloris %d: a frame of type %u (a WELCOME: its HELLO went through)", i, f.type);
        CHECK((int64_t)f.arg == RILL_ETIMEDOUT, "slowloris %d: ERROR %lld where ETIMEDOUT was due",
              i, (long long)(int64_t)f.arg);
        CHECK(state[i] == 0, "slowloris %d: a second ERROR", i);
        state[i] = 1;
        errors++;
      }
      if (k <= 0) {
        resets += k < 0;
        state[i] = 2;
        open--;
        continue;
      }
      if (state[i] == 1)
        continue; /* told: the EOF follows */
      CHECK(sent[i] < hello.n,
            "slowloris %d sent its whole HELLO a byte at a time and was never cut off", i);
      ssize_t w = send(c[i].fd, hello.b + sent[i], 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w == 1)
        sent[i]++;
      else
        CHECK(errno == EPIPE || errno == ECONNRESET || errno == EAGAIN, "send: %s",
              strerror(errno));
      if (sent[i] > most)
        most = sent[i];
    }
    if (open == LORIS)
      during = mark_now(); /* progress while every one of them was still open */
    sleep_ms(100);
  }
  for (int i = 0; i < LORIS; i++)
    raw_close(&c[i]);
  free(c);
  free(sent);
  free(state);
  free(hello.b);
  await_conns(2, "slowloris");
  await_progress("slowloris", m);
  mark_t p = since(m);
  printf("     slowloris (%.1f s): %d connections dripping a %zu-byte HELLO, cut off after at most "
         "%zu "
         "bytes (%d ERROR RILL_ETIMEDOUT, %d resets); good clients +%llu acked while all were "
         "open, +%llu acked, +%llu delivered in all; slowest ack %.1f ms\n",
         phase_secs(), LORIS, hello.n, most, errors, resets,
         (unsigned long long)(during.acked - m.acked), (unsigned long long)p.acked,
         (unsigned long long)p.delivered, slowest_ack_ms());
}

/* ---- connect/disconnect cycles ----------------------------------------------------- */

#define CYCLES 10000

static void connect_cycles(void) {
  await_conns(2, "cycles, before");
  int fds0 = count_fds();
  rill_server_stats_t s0 = stats();
  mark_t m = phase_begin();
  out_t o = {0};
  out_hello(&o, TOKEN, strlen(TOKEN), "cycle");
  out_hdr(&o, RILL_F_PUBLISH, RILL_FF_ACK, 1, 1, 0, 100);
  size_t mid = o.n - 11; /* a HELLO, then a PUBLISH header cut short */
  uint64_t end = guard();
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  for (int i = 0; i < CYCLES; i++) {
    /* Stay at most 256 connections ahead of the server's accepts, and
     * under half its max_conns: a connect past the listen backlog waits
     * for SYN retries, and one past max_conns is refused at once, neither
     * of which is the path under test. */
    for (;;) {
      rill_server_stats_t st = stats();
      if (i - (int64_t)(st.conns_accepted - s0.conns_accepted) <= 256 && st.conns_open < 512)
        break;
      CHECK(now_ns() < end, "cycles: the server stopped accepting at %d", i);
      sleep_ms(1);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect %d: %s", i,
          strerror(errno));
    if (i & 1) {
      ssize_t w = send(fd, o.b, mid, MSG_NOSIGNAL);
      (void)w; /* were it refused, the cycle is a plain connect/close: no matter */
    }
    if (i % 4 >= 2) { /* half of each kind ends with a reset instead of a FIN */
      struct linger l = {1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(fd);
  }
  free(o.b);
  /* The listen backlog is FIFO: once a last connection is welcomed, every
   * cycle before it has been taken by accept, and what follows is only
   * the server closing them. */
  raw_t last;
  raw_open(&last, 4096);
  raw_handshake(&last, "cycles-last");
  raw_close(&last);
  await_conns(2, "cycles");
  rill_server_stats_t s1 = stats();
  int fds1 = count_fds();
  /* Every connection closed with a FIN is accepted (it is established
   * and waits in the backlog); one reset before the server took it may be
   * dropped by the kernel, so those count at most once. */
  uint64_t accepted = s1.conns_accepted - s0.conns_accepted - 1;
  CHECK(accepted >= CYCLES / 2 && accepted <= CYCLES, "%llu accepts counted for %d connections",
        (unsigned long long)accepted, CYCLES);
  CHECK(fds1 == fds0, "%d file descriptors before %d connect/close cycles, %d after", fds0, CYCLES,
        fds1);
  CHECK(s1.conns_refused == s0.conns_refused,
        "%llu connections refused: more than max_conns were open at once",
        (unsigned long long)(s1.conns_refused - s0.conns_refused));
  await_progress("cycles", m);
  mark_t p = since(m);
  printf("     cycles (%.1f s): %d connect/close (half mid-frame, half reset), %llu accepted, %llu "
         "refused, conns_open back to 2, %d fds before and after; good clients +%llu acked, "
         "+%llu delivered; slowest ack %.1f ms\n",
         phase_secs(), CYCLES, (unsigned long long)accepted,
         (unsigned long long)(s1.conns_refused - s0.conns_refused), fds0,
         (unsigned long long)p.acked, (unsigned long long)p.delivered, slowest_ack_ms());
}

/* ---- the token -------------------------------------------------------------------- */

static void bad_tokens(void) {
  mark_t m = phase_begin();
  const size_t tl = strlen(TOKEN);
  static uint8_t tok[RILL_NET_MAX_TOKEN + 2];
  struct {
    const char *what;
    size_t len;
    int code;
  } cases[] = {
      {"a wrong token", 0, RILL_EACCES},
      {"no token", 0, RILL_EACCES},
      {"the token with its first byte off", tl, RILL_EACCES},
      {"the token with a middle byte off", tl, RILL_EACCES},
      {"the token with its last byte off", tl, RILL_EACCES},
      {"the token less its last byte", tl - 1, RILL_EACCES},
      {"the token and one byte more", tl + 1, RILL_EACCES},
      {"a 256-byte token", RILL_NET_MAX_TOKEN, RILL_EACCES},
      {"a 257-byte token", RILL_NET_MAX_TOKEN + 1, RILL_EPROTO},
  };
  int n = (int)(sizeof cases / sizeof cases[0]);
  for (int k = 0; k < n; k++) {
    memset(tok, 'z', sizeof tok);
    memcpy(tok, TOKEN, tl);
    size_t len = cases[k].len;
    if (k == 0) {
      memcpy(tok, "not-the-token", 13);
      len = 13;
    }
    if (k == 2)
      tok[0] ^= 1;
    if (k == 3)
      tok[tl / 2] ^= 0x20;
    if (k == 4)
      tok[tl - 1] ^= 0x80;
    /* The HELLO, then at once what only a welcome client may do: bind a
     * topic and publish to it, subscribe, fetch. */
    uint8_t hb[12 + RILL_NET_MAX_TOKEN + 1 + 8];
    put32(hb, RILL_NET_MAGIC);
    put16(hb + 4, 1);
    put16(hb + 6, 0);
    put16(hb + 8, (uint16_t)len);
    put16(hb + 10, 8);
    memcpy(hb + 12, tok, len);
    memcpy(hb + 12 + len, "intruder", 8);
    char topic[32];
    snprintf(topic, sizeof topic, "stolen-%d", k);
    out_t o = {0};
    out_frame(&o, RILL_F_HELLO, 0, 0, 0, 0, hb, (uint32_t)(12 + len + 8));
    out_frame(&o, RILL_F_BIND, 0, 1, 1, 0, topic, (uint32_t)strlen(topic));
    out_frame(&o, RILL_F_PUBLISH, RILL_FF_ACK, 1, 2, 0, "loot", 4);
    out_frame(&o, RILL_F_SUBSCRIBE, 0, 2, 3, RILL_NET_FROM_EARLIEST, "good", 4);
    out_frame(&o, RILL_F_CREDIT, 0, 2, 0, 1000, NULL, 0);
    out_fetch(&o, 4, RILL_NET_FROM_EARLIEST, 100, "good");
    raw_t r;
    raw_open(&r, 8192);
    raw_send(&r, o.b, o.n);
    free(o.b);
    expect_refused(&r, cases[k].code, cases[k].what);
    raw_close(&r);
    /* The server has closed it, so nothing more of its bytes will be
     * handled: a BIND it honoured would have made the topic by now. */
    CHECK(!topic_dir_exists(topic), "%s: its BIND made topic %s", cases[k].what, topic);
  }
  await_conns(2, "token");
  await_progress("token", m);
  mark_t p = since(m);
  printf("     token (%.1f s): %d bad HELLOs, each with BIND/PUBLISH/SUBSCRIBE/FETCH behind it: "
         "only an "
         "ERROR and EOF, no topic made; good clients +%llu acked, +%llu delivered; slowest ack "
         "%.1f ms\n",
         phase_secs(), n, (unsigned long long)p.acked, (unsigned long long)p.delivered,
         slowest_ack_ms());
}

/* ---- clients that never read ------------------------------------------------------- */

#define BIG_RECS    1024u
#define BIG_REC     4096u
#define FLOODERS    4
#define FETCHES     2000
#define SUBS_PER    64
#define RSS_BOUND_K (512L << 10) /* KiB: 16x less than a single flooder asks for */

static void never_reads(void) {
  /* A topic worth asking for: 4 MiB, so each FETCH (capped at 1024
   * records) is a 4 MiB answer. */
  rill_client_t *w = connect_good("big-writer");
  uint16_t ch;
  CHECK(rill_client_bind(w, "big", &ch) == 0, "bind big: %s", rill_errmsg());
  static uint8_t rec[BIG_REC];
  for (uint32_t i = 0; i < BIG_RECS; i++) {
    memset(rec, (int)(i & 0xff), sizeof rec);
    uint64_t seq;
    CHECK(rill_client_publish(w, ch, rec, sizeof rec, i == BIG_RECS - 1, &seq) == 0,
          "publish big: %s", rill_errmsg());
  }
  rill_client_close(w);
  await_conns(2, "never_reads, before");

  long rss0 = rss_kib(), peak = rss0;
  mark_t m = phase_begin();
  raw_t f[2 * FLOODERS];
  double asked = 0;
  for (int i = 0; i < 2 * FLOODERS; i++) {
    raw_open(&f[i], 2 * BIG_REC);
    out_t o = {0};
    out_hello(&o, TOKEN, strlen(TOKEN), "never-reads");
    size_t hello = o.n, per;
    if (i < FLOODERS) { /* FETCH after FETCH of all of it */
      for (int k = 0; k < FETCHES; k++)
        out_fetch(&o, (uint64_t)k + 1, RILL_NET_FROM_EARLIEST, 1024, "big");
      per = (o.n - hello) / FETCHES;
    } else { /* subscriptions to all of it, with every credit there is */
      for (uint16_t k = 1; k <= SUBS_PER; k++) {
        out_frame(&o, RILL_F_SUBSCRIBE, 0, k, k, RILL_NET_FROM_EARLIEST, "big", 3);
        out_frame(&o, RILL_F_CREDIT, 0, k, 0, UINT64_MAX, NULL, 0);
        out_frame(&o, RILL_F_CREDIT, 0, k, 0, UINT64_MAX, NULL, 0);
      }
      per = (o.n - hello) / SUBS_PER;
    }
    /* As much as the server takes without our reading: TCP may hold the
     * rest back, which is fine. */
    size_t off = 0;
    uint64_t stuck = 0;
    while (off < o.n) {
      ssize_t n = send(f[i].fd, o.b + off, o.n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        off += (size_t)n;
        stuck = 0;
        continue;
      }
      if (n < 0 && errno != EAGAIN)
        break; /* cut off already */
      if (!stuck)
        stuck = now_ns();
      if (now_ns() - stuck > 200000000ull)
        break;
      sleep_ms(1);
    }
    asked += off > hello ? (double)((off - hello) / per) * BIG_RECS * BIG_REC : 0;
    free(o.b);
  }
  /* Watch the process's memory until the server has let every flooder go
   * (cut off for its queue or for its silence), and the good clients made
   * progress meanwhile. */
  uint64_t end = guard(), open_at_progress = 0;
  bool progressed = false;
  mark_t p = {0};
  for (;;) {
    long rss = rss_kib();
    if (rss > peak)
      peak = rss;
    mark_t q = mark_now();
    if (!progressed && q.acked >= m.acked + MIN_PROGRESS &&
        q.delivered >= m.delivered + MIN_PROGRESS) {
      progressed = true;
      open_at_progress = stats().conns_open - 2;
      p = (mark_t){q.acked - m.acked, q.delivered - m.delivered};
    }
    if (progressed && stats().conns_open == 2)
      break;
    CHECK(now_ns() < end, "never_reads: after 30 s, %llu flooders still connected, good clients %s",
          (unsigned long long)(stats().conns_open - 2), progressed ? "progressing" : "stalled");
    sleep_ms(10);
  }
  /* What reached each before the end, for the log: the server may say
   * why it let go, though a client that reads nothing need not hear it. */
  uint64_t got = 0;
  int told = 0;
  int64_t code = 0;
  for (int i = 0; i < 2 * FLOODERS; i++) {
    rill_frame_t fr;
    while (raw_next(&f[i], &fr, guard(), "never_reads, drain") == 1) {
      got += RILL_NET_HDR + fr.len;
      if (fr.type == RILL_F_ERROR) {
        told++;
        code = (int64_t)fr.arg;
      }
    }
    raw_close(&f[i]);
  }
  CHECK(peak - rss0 < RSS_BOUND_K,
        "never_reads: the process grew by %ld MiB while %d clients asked for %.1f GiB "
        "and read nothing",
        (peak - rss0) >> 10, 2 * FLOODERS, asked / (1 << 30));
  printf("     never_reads (%.1f s): %d clients asked for %.1f GiB and read nothing: memory grew "
         "by at "
         "most %ld MiB; %llu cut off for their queue, %d told why (last code %lld), %.1f MiB "
         "reached them in all; %llu were still connected when the good clients had +%llu acked, "
         "+%llu delivered; slowest ack %.1f ms\n",
         phase_secs(), 2 * FLOODERS, asked / (1 << 30), (peak - rss0) >> 10,
         (unsigned long long)stats().conns_dropped, told, (long long)code, (double)got / (1 << 20),
         (unsigned long long)open_at_progress, (unsigned long long)p.acked,
         (unsigned long long)p.delivered, slowest_ack_ms());
}

/* ---- tables a client fills ----------------------------------------------------------- */

#define FILL_N          10000
#define ASKS_PER_CONN   4096 /* the server's defaults */
#define SERVES_PER_CONN 1024

/* Reads r's answers until the PONG with id pong: counts ACKs, and ERRORs
 * with code whose message names what; any other ERROR fails. */
static void count_answers(raw_t *r, uint64_t pong, int code, const char *what, int *acks, int *errs,
                          const char *phase) {
  uint64_t end = guard();
  for (;;) {
    rill_frame_t f;
    CHECK(raw_next(r, &f, end, phase) == 1, "%s: closed before its PONG", phase);
    if (f.type == RILL_F_PONG && f.id == pong)
      return;
    if (f.type == RILL_F_ACK) {
      (*acks)++;
      continue;
    }
    CHECK(f.type == RILL_F_ERROR && (int64_t)f.arg == code, "%s: type %u, code %lld: %.*s", phase,
          f.type, (long long)(int64_t)f.arg, (int)f.len, (const char *)f.body);
    CHECK(f.len >= strlen(what) && memmem(f.body, f.len, what, strlen(what)),
          "%s: '%.*s' does not name %s", phase, (int)f.len, (const char *)f.body, what);
    (*errs)++;
  }
}

/* 10,000 unanswered asks on one connection and 10,000 SERVEs on another
 * (each cost the server memory until its connection goes): past the
 * per-connection limits each is refused with EBUSY naming the limit, the
 * provider that never reads is not cut off, and all of it is let go when
 * the connections close. */
static void table_fill(void) {
  mark_t m = phase_begin();
  rill_server_stats_t s0 = stats();
  raw_t p, a, v;
  raw_open(&p, 1 << 16);
  raw_handshake(&p, "hole-provider");
  raw_open(&a, 1 << 16);
  raw_handshake(&a, "hole-asker");
  raw_open(&v, 1 << 16);
  raw_handshake(&v, "serve-filler");
  out_t o = {0};
  out_frame(&o, RILL_F_SERVE, 0, 1, 1, 0, "hole", 4);
  out_frame(&o, RILL_F_PING, 0, 0, 2, 0, NULL, 0);
  CHECK(raw_send(&p, o.b, o.n), "table_fill: the provider was closed");
  int acks = 0, errs = 0;
  count_answers(&p, 2, 0, "", &acks, &errs, "table_fill provider");
  CHECK(acks == 1, "table_fill: SERVE not acknowledged");
  /* The asks, and nobody answers them. */
  o.n = 0;
  uint8_t ask[] = {4, 0, 'h', 'o', 'l', 'e', '?'};
  for (int i = 0; i < FILL_N; i++)
    out_frame(&o, RILL_F_ASK, 0, 0, (uint64_t)i + 1, 0, ask, sizeof ask);
  out_frame(&o, RILL_F_PING, 0, 0, FILL_N + 1, 0, NULL, 0);
  CHECK(raw_send(&a, o.b, o.n), "table_fill: the asker was closed");
  acks = errs = 0;
  count_answers(&a, FILL_N + 1, RILL_EBUSY, "max_asks_per_conn", &acks, &errs, "table_fill asks");
  CHECK(errs == FILL_N - ASKS_PER_CONN, "table_fill: %d of %d asks refused, %d expected", errs,
        FILL_N, FILL_N - ASKS_PER_CONN);
  int asks_refused = errs;
  /* The registrations, each under a name of its own. */
  o.n = 0;
  for (int i = 0; i < FILL_N; i++) {
    char name[32];
    int nl = snprintf(name, sizeof name, "svc-%d", i);
    out_frame(&o, RILL_F_SERVE, 0, (uint16_t)(i + 1), (uint64_t)i + 1, 0, name, (uint32_t)nl);
  }
  out_frame(&o, RILL_F_PING, 0, 0, FILL_N + 1, 0, NULL, 0);
  CHECK(raw_send(&v, o.b, o.n), "table_fill: the registrar was closed");
  acks = errs = 0;
  count_answers(&v, FILL_N + 1, RILL_EBUSY, "max_serves_per_conn", &acks, &errs,
                "table_fill serves");
  CHECK(acks == SERVES_PER_CONN && errs == FILL_N - SERVES_PER_CONN,
        "table_fill: %d SERVEs acknowledged, %d refused", acks, errs);
  free(o.b);
  /* The provider was not cut off for the asks it did not read. */
  o = (out_t){0};
  out_frame(&o, RILL_F_PING, 0, 0, 3, 0, NULL, 0);
  CHECK(raw_send(&p, o.b, o.n), "table_fill: the provider was closed");
  free(o.b);
  int asked = 0;
  for (uint64_t end = guard();;) {
    rill_frame_t f;
    CHECK(raw_next(&p, &f, end, "table_fill") == 1, "table_fill: the provider was cut off");
    if (f.type == RILL_F_PONG)
      break;
    CHECK(f.type == RILL_F_ASK, "table_fill: the provider got type %u", f.type);
    asked++;
  }
  CHECK(asked == ASKS_PER_CONN, "table_fill: the provider got %d asks", asked);
  rill_server_stats_t s1 = stats();
  CHECK(s1.asks_refused - s0.asks_refused == (uint64_t)asks_refused &&
            s1.serves_refused - s0.serves_refused == (uint64_t)errs,
        "table_fill: the server counted %llu asks and %llu SERVEs refused",
        (unsigned long long)(s1.asks_refused - s0.asks_refused),
        (unsigned long long)(s1.serves_refused - s0.serves_refused));
  CHECK(s1.conns_dropped == s0.conns_dropped, "table_fill: a connection was cut off");
  raw_close(&a);
  raw_close(&v);
  raw_close(&p);
  await_conns(2, "table_fill");
  await_progress("table_fill", m);
  mark_t d = since(m);
  printf("     table_fill (%.1f s): %d asks unanswered on one connection, %d SERVEs on another: "
         "%d asks and %d SERVEs refused with EBUSY naming their limit, nobody cut off; good "
         "clients +%llu acked, +%llu delivered\n",
         phase_secs(), FILL_N, FILL_N, asks_refused, errs, (unsigned long long)d.acked,
         (unsigned long long)d.delivered);
}

/* ---- channels a client fills ---------------------------------------------------------- */

#define BINDS_PER_CONN 4096 /* the server's defaults */
#define SUBS_PER_CONN  4096

/* One connection binds 10,000 channels and publishes on the last it got;
 * another subscribes 10,000 channels to the good clients' topic, grants
 * each of its subscriptions credits and reads nothing. Past the
 * per-connection limits each is refused with EBUSY naming the limit; the
 * good publisher's every append now has thousands more subscriptions to
 * look at, and the good clients must still progress. */
static void chan_fill(void) {
  mark_t m = phase_begin();
  rill_server_stats_t s0 = stats();
  raw_t b, u;
  raw_open(&b, 1 << 16);
  raw_handshake(&b, "bind-filler");
  raw_open(&u, 1 << 16);
  raw_handshake(&u, "sub-filler");
  out_t o = {0};
  for (int i = 0; i < FILL_N; i++)
    out_frame(&o, RILL_F_BIND, 0, (uint16_t)(i + 1), (uint64_t)i + 1, 0, "chan-fill", 9);
  out_frame(&o, RILL_F_PUBLISH, RILL_FF_ACK, BINDS_PER_CONN, FILL_N + 1, 0, "x", 1);
  out_frame(&o, RILL_F_PING, 0, 0, FILL_N + 2, 0, NULL, 0);
  CHECK(raw_send(&b, o.b, o.n), "chan_fill: the binder was closed");
  int acks = 0, errs = 0;
  count_answers(&b, FILL_N + 2, RILL_EBUSY, "max_binds_per_conn", &acks, &errs, "chan_fill binds");
  CHECK(acks == BINDS_PER_CONN + 1 && errs == FILL_N - BINDS_PER_CONN,
        "chan_fill: %d BINDs and publishes acknowledged, %d refused", acks, errs);
  int binds_refused = errs;
  o.n = 0;
  for (int i = 0; i < FILL_N; i++)
    out_frame(&o, RILL_F_SUBSCRIBE, 0, (uint16_t)(i + 1), (uint64_t)i + 1, RILL_NET_FROM_LATEST,
              "good", 4);
  out_frame(&o, RILL_F_PING, 0, 0, FILL_N + 1, 0, NULL, 0);
  CHECK(raw_send(&u, o.b, o.n), "chan_fill: the subscriber was closed");
  acks = errs = 0;
  count_answers(&u, FILL_N + 1, RILL_EBUSY, "max_subs_per_conn", &acks, &errs, "chan_fill subs");
  CHECK(acks == SUBS_PER_CONN && errs == FILL_N - SUBS_PER_CONN,
        "chan_fill: %d SUBSCRIBEs acknowledged, %d refused", acks, errs);
  /* Credits for every subscription it got, and then it reads nothing. */
  o.n = 0;
  for (int i = 0; i < SUBS_PER_CONN; i++)
    out_frame(&o, RILL_F_CREDIT, 0, (uint16_t)(i + 1), 0, 1u << 20, NULL, 0);
  CHECK(raw_send(&u, o.b, o.n), "chan_fill: the subscriber was closed");
  free(o.b);
  await_progress("chan_fill", m);
  rill_server_stats_t s1 = stats();
  CHECK(s1.binds_refused - s0.binds_refused == (uint64_t)binds_refused &&
            s1.subs_refused - s0.subs_refused == (uint64_t)errs,
        "chan_fill: the server counted %llu BINDs and %llu SUBSCRIBEs refused",
        (unsigned long long)(s1.binds_refused - s0.binds_refused),
        (unsigned long long)(s1.subs_refused - s0.subs_refused));
  raw_close(&b);
  raw_close(&u);
  await_conns(2, "chan_fill");
  await_progress("chan_fill", m);
  mark_t d = since(m);
  printf("     chan_fill (%.1f s): %d BINDs on one connection, %d SUBSCRIBEs with credits and no "
         "reads on another: %d and %d refused with EBUSY naming their limit; good clients +%llu "
         "acked, +%llu delivered; slowest ack %.1f ms\n",
         phase_secs(), FILL_N, FILL_N, binds_refused, errs, (unsigned long long)d.acked,
         (unsigned long long)d.delivered, slowest_ack_ms());
}

/* ---- out of file descriptors ------------------------------------------------------- */

#define FD_CLIENTS 60

/* The process runs out of descriptors (RLIMIT_NOFILE lowered under what
 * it holds plus 41): clients keep coming, one at a time. Each is either
 * welcomed or turned away with an ERROR (EBUSY) and EOF; none is left
 * waiting with its connection in the listener's queue (the server took
 * a spare descriptor to accept and refuse it, instead of spinning on a
 * listener it cannot accept from). */
static void out_of_fds(void) {
  mark_t m = phase_begin();
  struct rlimit rl0, rl;
  CHECK(getrlimit(RLIMIT_NOFILE, &rl0) == 0, "getrlimit: %s", strerror(errno));
  rl = rl0;
  /* Odd: a client's socket and the server's end take two, so the
   * server's accept is the one that finds none left. */
  rl.rlim_cur = (rlim_t)count_fds() + 41;
  CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit: %s", strerror(errno));
  raw_t r[FD_CLIENTS];
  int n = 0, welcomed = 0, refused = 0, bumps = 0;
  for (; n < FD_CLIENTS; n++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      /* This side took the last one: one more, and the server's accept
       * is the one to run short. */
      CHECK(errno == EMFILE && bumps++ < 4, "socket: %s", strerror(errno));
      rl.rlim_cur++;
      CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit: %s", strerror(errno));
      n--;
      continue;
    }
    close(fd);
    raw_open(&r[n], 4096);
    out_t o = {0};
    out_hello(&o, TOKEN, strlen(TOKEN), "fd-starved");
    bool sent = raw_send(&r[n], o.b, o.n);
    free(o.b);
    rill_frame_t f;
    int k = raw_next(&r[n], &f, guard(), "out_of_fds");
    if (k == 1 && f.type == RILL_F_WELCOME) {
      CHECK(sent, "out_of_fds: welcomed, but the HELLO was not taken");
      welcomed++;
      continue;
    }
    CHECK(k == 1 && f.type == RILL_F_ERROR && (int64_t)f.arg == RILL_EBUSY,
          "out_of_fds: client %d got %s (type %u, code %lld) instead of WELCOME or EBUSY", n,
          k == 1 ? "a frame" : "no frame", k == 1 ? f.type : 0,
          k == 1 ? (long long)(int64_t)f.arg : 0LL);
    CHECK(raw_next(&r[n], &f, guard(), "out_of_fds") != 1, "out_of_fds: a frame after EBUSY");
    refused++;
    raw_close(&r[n--]); /* its descriptor is the next client's */
    if (refused >= 20)
      break;
  }
  CHECK(setrlimit(RLIMIT_NOFILE, &rl0) == 0, "setrlimit: %s", strerror(errno));
  CHECK(welcomed > 0 && refused > 0, "out_of_fds: %d welcomed, %d refused", welcomed, refused);
  for (int i = 0; i < welcomed; i++)
    raw_close(&r[i]);
  await_conns(2, "out_of_fds");
  /* The listener still takes connections once descriptors are back. */
  raw_t again;
  raw_open(&again, 4096);
  raw_handshake(&again, "fd-after");
  raw_close(&again);
  await_progress("out_of_fds", m);
  mark_t p = since(m);
  printf("     out_of_fds (%.1f s): %d welcomed, then %d turned away with EBUSY, one at a time, "
         "none left waiting; good clients +%llu acked, +%llu delivered\n",
         phase_secs(), welcomed, refused, (unsigned long long)p.acked,
         (unsigned long long)p.delivered);
}

/* ---- start and stop ---------------------------------------------------------------- */

static int fds_at_start;

static void *srv_main(void *arg) {
  (void)arg;
  srv_rc = rill_server_run(srv);
  return NULL;
}

static void start(void) {
  int rc = rill_server_create(&srv, &(rill_server_opts_t){.any_port = true,
                                                          .data_dir = dir,
                                                          .token = TOKEN,
                                                          .max_body = MAX_BODY,
                                                          .tx_limit = TX_LIMIT,
                                                          .handshake_timeout_ns = HANDSHAKE_NS,
                                                          .idle_timeout_ns = IDLE_NS});
  CHECK(rc == 0, "server: %s", rill_errmsg());
  port = rill_server_port(srv);
  CHECK(pthread_create(&srv_thread, NULL, srv_main, NULL) == 0, "pthread_create");
  CHECK(pthread_create(&sub_thread, NULL, subscriber, NULL) == 0, "pthread_create");
  CHECK(pthread_create(&pub_thread, NULL, publisher, NULL) == 0, "pthread_create");
  await_progress("start", (mark_t){0, 0});
  await_conns(2, "start");
  phase_secs();
}

/* Every acked message delivered once, in order (the subscriber checks
 * each); then the server stops, every thread is joined, and nothing is
 * left open. */
static void clean_stop(void) {
  atomic_store(&g_stop, true);
  pthread_join(pub_thread, NULL);
  uint64_t final = atomic_load(&g_acked);
  atomic_store(&g_final, final);
  uint64_t end = guard();
  while (atomic_load(&g_delivered) < final) {
    CHECK(now_ns() < end, "%llu of %llu acked messages delivered after 30 s",
          (unsigned long long)atomic_load(&g_delivered), (unsigned long long) final);
    sleep_ms(1);
  }
  pthread_join(sub_thread, NULL);
  CHECK(atomic_load(&g_delivered) == final, "%llu delivered, %llu acked",
        (unsigned long long)atomic_load(&g_delivered), (unsigned long long) final);
  await_conns(0, "stop");
  rill_server_stats_t st = stats();
  rill_server_stop(srv);
  pthread_join(srv_thread, NULL);
  CHECK(srv_rc == 0, "rill_server_run returned %d: %s", srv_rc, rill_errmsg());
  rill_server_destroy(srv);
  int fds = count_fds();
  CHECK(fds == fds_at_start, "%d file descriptors open at the start, %d at the end", fds_at_start,
        fds);
  printf("     stop (%.1f s): %llu acked, all delivered once and in order; server: %llu accepted, "
         "%llu "
         "errors sent, %llu dropped; %d fds, as at the start\n",
         phase_secs(), (unsigned long long) final, (unsigned long long)st.conns_accepted,
         (unsigned long long)st.errors_sent, (unsigned long long)st.conns_dropped, fds);
}

/* Also on a failed CHECK (exit): the topics preallocate their segments,
 * and a failing run should not leave hundreds of MiB in /tmp. */
static void rm_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  fds_at_start = count_fds();
  snprintf(dir, sizeof dir, "/tmp/rill-stress-hostile-XXXXXX");
  CHECK(mkdtemp(dir), "mkdtemp");
  atexit(rm_dir);
  start();
  const stress_case_t cases[] = {
      {"malformed", malformed},           {"truncated", truncated},
      {"random_bytes", random_bytes},     {"slowloris", slowloris},
      {"connect_cycles", connect_cycles}, {"bad_tokens", bad_tokens},
      {"never_reads", never_reads},       {"table_fill", table_fill},
      {"chan_fill", chan_fill},           {"out_of_fds", out_of_fds},
      {"clean_stop", clean_stop},
  };
  return stress_run(cases, (int)(sizeof cases / sizeof cases[0]));
}
