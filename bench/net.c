/*
 * rill bench net: the rill server over loopback TCP, publish and subscribe
 * (128 bytes and 64 KiB) and asks (one at a time and pipelined), against
 * ZeroMQ over tcp:// (PUSH/PULL, REQ/REP, DEALER/ROUTER) and Redis
 * PUBLISH/SUBSCRIBE, in the same run, with the same messages, each peer
 * set up as its own perf tools run it (ZeroMQ's local_thr/remote_thr,
 * redis-benchmark); scripts/peer_check.sh runs those tools beside these
 * rows and fails when they disagree.
 *
 * rill: a server in this process (rill_server_create on a free port of
 * 127.0.0.1, topics in a fresh directory under $TMPDIR or /tmp,
 * RILL_SERVER_SYNC_NEVER), its loop in a thread of its own. The clients are
 * librill's blocking client, except where it has no call for the case.
 * Connections are opened once for the suite, outside every clock; so is
 * the subscription.
 *
 * - pub_128: one connection publishes N messages with rill_client_publish
 *   (unacknowledged: buffered by the client, flushed at the end of the run),
 *   no ack; another, subscribed from RILL_NET_FROM_LATEST, reads them in a
 *   thread with rill_client_next, granting credits as `rill sub` does (a
 *   window of 1024, half of it again each time half was used). The clock
 *   runs from the first publish until the subscriber holds all N: messages
 *   are counted where a user would see them.
 *   zmq_2proc: as local_thr/remote_thr, two processes with a context
 *   each (one I/O thread, the default high-water marks): a PUSH in a
 *   forked process (peer_zmq.c) sends zmq_msg_t messages to a PULL bound
 *   on tcp://127.0.0.1 here, received into one zmq_msg_t; the clock runs
 *   from the order to the forked PUSH until the PULL holds all N. No
 *   one-context variant: nobody serves both ends of a TCP link from one
 *   context.
 *   Redis: one hiredis connection SUBSCRIBEd, read by a thread with
 *   redisGetReply (reader->maxbuf = 0, as hiredis's README has a client
 *   after throughput do), the clock stopping when it has all N. Three
 *   publishers: redis_pre_p256 formats PUBLISH once (redisFormatCommand)
 *   and sends it with redisAppendFormattedCommand 256 at a time, reading
 *   the 256 replies before the next 256, as `redis-benchmark -c 1 -P 256`;
 *   redis_pre_c4_p64 does that on 4 connections with 64 each, one thread
 *   polling them, as `redis-benchmark -c 4 -P 64`; redis_hiredis_fmt
 *   formats every command with hiredis's format string, 256 pipelined, as
 *   printf-style hiredis users write it. Redis cuts off a subscriber whose
 *   output buffer passes 32 MiB (8 MiB for a minute), so the publishers
 *   wait while they are more than LAG messages ahead of the subscriber:
 *   the credit window of this peer.
 * - pub_ack_batch: PUBLISH_BATCH frames of 256 records with RILL_FF_ACK
 *   over a plain socket written here (rill_client_publish_batch waits for
 *   each ACK), WINDOW batches outstanding, the next sent as each ACK comes;
 *   the clock stops at the last ACK, so the rate is of acknowledged
 *   messages. Its topic has no subscriber. No peer: neither ZeroMQ nor
 *   Redis PUBLISH acknowledges anything a user could compare.
 *
 * - ask_pipelined: an asker keeps ASK_WINDOW asks of 128 bytes in flight
 *   with rill_client_ask_async, each reply's callback sending the next
 *   ask, and polls; a provider on another connection, in a thread, serves
 *   "pecho" with rill_client_serve_cb and answers with the same bytes from
 *   the callback (buffered, sent at the end of each poll pass). Rate:
 *   completed replies. zmq_dealer_2proc: a DEALER keeps the same window
 *   of requests to a ROUTER in a forked process, a context each side,
 *   that echoes each (zmq_msg_t, frame by frame); timed the same way.
 *   ask_rtt's zmq_reqrep_2proc: a REQ to a REP in a forked process, as
 *   local_lat/remote_lat.
 * - pub_64k: 64 KiB messages published without ack (each goes out in
 *   its own sendmsg, straight from the caller's buffer) to a subscriber
 *   on another connection with rill_client_subscribe_cb (BIG_WINDOW
 *   credits, granted back by halves), polling in a thread; the clock
 *   stops when it has all N. zmq_2proc: as pub_128's with 64 KiB
 *   messages (each copied into its zmq_msg_t, as rill's are sent from
 *   the caller's buffer). Every rill message is also
 *   appended to the server's log, which a run of the suite grows by a few
 *   hundred MB (removed at the end).
 *
 * CPUs: nothing is pinned (BENCH_PIN_NONE, printed with every case), as
 * users run servers: rill's server loops and clients, ZeroMQ's processes
 * and I/O threads, and redis-server all run where the kernel puts them,
 * and on a machine of two CPUs they take turns.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "bench.h"
#include "peer_redis.h"
#include "peer_zmq.h"
#include "rill/net.h"

#define MSG        128u  /* message bytes */
#define BATCH      256u  /* records per PUBLISH_BATCH, PUBLISHes per pipelined round */
#define WINDOW     4u    /* PUBLISH_BATCH frames awaiting their ACK */
#define SUB_WINDOW 1024u /* the subscriber's credits, as `rill sub` grants them */
/* Messages the Redis publisher may be ahead of its subscriber: 16384 of
 * about 170 bytes on the wire is under 3 MiB, far from the 8 MiB at which
 * Redis starts counting toward cutting a subscriber off. */
#define LAG 16384u
/* redis_pre_c4_p64: connections, and commands each keeps in flight, as
 * `redis-benchmark -c 4 -P 64` (the same 256 in flight as one connection
 * with -P 256). */
#define REDIS_CONNS  4
#define REDIS_C_PIPE 64u

#define ASK_WINDOW 256u        /* ask_pipelined: asks in flight, for rill and ZeroMQ alike */
#define BIG        (64u << 10) /* pub_64k's message bytes */
#define BIG_WINDOW 256u        /* pub_64k: the subscriber's credits */

#define TOPIC_PUB "pub_128"
#define TOPIC_BIG "pub_64k"
#define TOPIC_ACK "pub_ack_batch"

static struct {
  char dir[PATH_MAX];
  rill_server_t *srv;
  pthread_t srv_thread;
  int srv_rc;
  /* pub_128 */
  rill_client_t *pub, *sub;
  uint16_t pub_ch, sub_ch;
  uint64_t sub_next; /* the sequence the subscriber expects next */
  uint32_t sub_used; /* deliveries since credits were last granted */
  /* pub_ack_batch: a raw connection */
  int fd;
  uint16_t ack_ch;
  uint64_t ack_id;
  uint8_t *frame; /* a whole batch frame: header, then BATCH records */
  uint8_t rx[4096];
  size_t rx_have;
  /* ask_rtt: a provider of "echo" on its own connection, an asker */
  rill_client_t *provider, *asker;
  pthread_t provider_thread;
  atomic_bool provider_stop;
  /* ask_pipelined: a callback provider in a thread, an asker keeping a window */
  rill_client_t *pprov, *pasker;
  pthread_t pprov_thread;
  atomic_bool pprov_stop;
  void *dealer;
  /* pub_64k */
  rill_client_t *bpub, *bsub;
  uint16_t bpub_ch, bsub_ch;
  uint64_t big_next;
  void *big_ctx; /* the run_t in progress */
  uint8_t *big;
  void *bpull;
  /* zmq: this process's context, and the case's far end in a process of
   * its own */
  void *zctx, *pull;
  void *req; /* ask_rtt's peer: REQ to a REP */
  bench_zmq_far_t far;
  /* redis */
  int rport;
  redisContext *rpub[REDIS_CONNS], *rsub;
  /* rill-bench-net-<pid>: the Redis server may be shared, and another
   * run's subscriber on the channel would count in PUBLISH's reply */
  char chan[48];
  char *pubcmd; /* PUBLISH chan <message>, formatted once */
  int pubcmd_len;
} S = {.fd = -1};

/* ---- shared -------------------------------------------------------------------- */

typedef struct run {
  uint64_t n;
  atomic_bool ready;
  _Atomic uint64_t got; /* redis: messages the subscriber has read */
  uint64_t t0, t1;
} run_t;

static void wait_ready(run_t *x) {
  while (!atomic_load(&x->ready))
    sched_yield();
}

static void msg_fill(uint8_t *m) { memset(m, 0x5a, MSG); }

static void zmq_die(const char *what) { bench_die("%s: %s", what, zmq_strerror(zmq_errno())); }

/* ---- rill: pub_128 ---------------------------------------------------------------- */

static void *rill_sub_thread(void *arg) {
  run_t *x = arg;
  atomic_store(&x->ready, true);
  for (uint64_t i = 0; i < x->n; i++) {
    rill_client_msg_t m;
    int rc = rill_client_next(S.sub, &m, 10000000000ull);
    if (RILL_UNLIKELY(rc != 0))
      bench_die("rill subscriber: %s: %s", rill_strerror(rc), rill_errmsg());
    if (RILL_UNLIKELY(m.seq != S.sub_next || m.len != MSG))
      bench_die("rill subscriber: seq %" PRIu64 " of %u bytes, expected %" PRIu64 " of %u", m.seq,
                m.len, S.sub_next, MSG);
    S.sub_next++;
    if (++S.sub_used == SUB_WINDOW / 2) {
      if ((rc = rill_client_credit(S.sub, S.sub_ch, S.sub_used)) != 0)
        bench_die("rill_client_credit: %s", rill_strerror(rc));
      S.sub_used = 0;
    }
  }
  x->t1 = rill_time_ns();
  return NULL;
}

static uint64_t rill_pub_run(void *arg, uint64_t n) {
  (void)arg;
  run_t x = {.n = n};
  pthread_t t;
  if (pthread_create(&t, NULL, rill_sub_thread, &x) != 0)
    bench_die("pthread_create failed");
  wait_ready(&x);
  uint8_t m[MSG];
  msg_fill(m);
  x.t0 = rill_time_ns();
  for (uint64_t i = 0; i < n; i++) {
    int rc = rill_client_publish(S.pub, S.pub_ch, m, MSG, false, NULL);
    if (RILL_UNLIKELY(rc != 0))
      bench_die("rill_client_publish: %s: %s", rill_strerror(rc), rill_errmsg());
  }
  /* Unacknowledged publishes sit in the client's send buffer until it
   * fills: the tail of the run goes out now, inside the clock. */
  if (rill_client_flush(S.pub) != 0)
    bench_die("rill_client_flush: %s", rill_errmsg());
  pthread_join(t, NULL);
  return x.t1 - x.t0;
}

/* ---- rill: pub_ack_batch over a raw socket ------------------------------------------- */

static void raw_send(const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = send(S.fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      bench_die("rill raw client: send: %s", strerror(errno));
    b += w;
    n -= (size_t)w;
  }
}

/* The next frame from the server; its body stays in S.rx until the next
 * call. Only small frames come back on this connection (WELCOME, ACK). */
static void raw_recv(rill_frame_t *f) {
  static size_t consumed;
  memmove(S.rx, S.rx + consumed, S.rx_have - consumed);
  S.rx_have -= consumed;
  consumed = 0;
  for (;;) {
    size_t used;
    int rc = rill_frame_decode(S.rx, S.rx_have, sizeof S.rx - RILL_NET_HDR, f, &used);
    if (rc == 0) {
      consumed = used;
      if (f->type == RILL_F_ERROR || f->type == RILL_F_BYE)
        bench_die("rill raw client: the server says %" PRId64 ": %.*s", (int64_t)f->arg,
                  (int)f->len, (const char *)f->body);
      return;
    }
    if (rc != RILL_EAGAIN)
      bench_die("rill raw client: a bad frame: %s", rill_strerror(rc));
    ssize_t got = recv(S.fd, S.rx + S.rx_have, sizeof S.rx - S.rx_have, 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      bench_die("rill raw client: recv: %s", got ? strerror(errno) : "the server closed");
    S.rx_have += (size_t)got;
  }
}

static void raw_open(void) {
  S.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(rill_server_port(S.srv))};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (S.fd < 0 || connect(S.fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    bench_die("rill raw client: connect: %s", strerror(errno));
  int one = 1;
  setsockopt(S.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uint8_t b[RILL_NET_HDR + 64];
  size_t hl = rill_net_hello_size(0, 5);
  rill_net_hello_encode(b + RILL_NET_HDR, NULL, 0, "bench", 5);
  rill_frame_header(b, RILL_F_HELLO, 0, 0, 0, 0, (uint32_t)hl);
  raw_send(b, RILL_NET_HDR + hl);
  rill_frame_t f;
  raw_recv(&f);
  if (f.type != RILL_F_WELCOME)
    bench_die("rill raw client: frame type %u, not WELCOME", f.type);
  S.ack_ch = 1;
  rill_frame_header(b, RILL_F_BIND, 0, S.ack_ch, ++S.ack_id, 0, sizeof TOPIC_ACK - 1);
  memcpy(b + RILL_NET_HDR, TOPIC_ACK, sizeof TOPIC_ACK - 1);
  raw_send(b, RILL_NET_HDR + sizeof TOPIC_ACK - 1);
  raw_recv(&f);
  if (f.type != RILL_F_ACK || f.id != S.ack_id)
    bench_die("rill raw client: BIND answered by type %u", f.type);
  /* The records never change: only the header does, batch by batch. */
  S.frame = malloc(RILL_NET_HDR + BATCH * (4 + MSG));
  if (!S.frame)
    bench_die("out of memory");
  for (uint32_t i = 0; i < BATCH; i++) {
    uint8_t *r = S.frame + RILL_NET_HDR + i * (4 + MSG);
    uint32_t len = MSG;
    memcpy(r, &len, 4); /* little-endian, as the protocol is */
    msg_fill(r + 4);
  }
}

static void batch_send(uint32_t k) {
  rill_frame_header(S.frame, RILL_F_PUBLISH_BATCH, RILL_FF_ACK, S.ack_ch, ++S.ack_id, k,
                    k * (4 + MSG));
  raw_send(S.frame, RILL_NET_HDR + (size_t)k * (4 + MSG));
}

static void ack_recv(void) {
  rill_frame_t f;
  raw_recv(&f);
  if (RILL_UNLIKELY(f.type != RILL_F_ACK))
    bench_die("rill raw client: frame type %u, not ACK", f.type);
}

static uint64_t rill_ack_run(void *arg, uint64_t n) {
  (void)arg;
  uint64_t t0 = rill_time_ns(), sent = 0;
  uint32_t out = 0;
  while (sent < n || out) {
    if (sent < n && out < WINDOW) {
      uint32_t k = n - sent < BATCH ? (uint32_t)(n - sent) : BATCH;
      batch_send(k);
      sent += k;
      out++;
      continue;
    }
    ack_recv(); /* ACKs come in order: one connection, one loop */
    out--;
  }
  return rill_time_ns() - t0;
}

/* ---- zmq: the far end forked, the near end in this process ------------------------------ */

/* Receives n messages of size bytes, as local_thr does: into one
 * zmq_msg_t, reused. */
static void zmq_pull_n(void *pull, size_t size, uint64_t n) {
  zmq_msg_t m;
  zmq_msg_init(&m);
  for (uint64_t i = 0; i < n; i++) {
    while (RILL_UNLIKELY(zmq_msg_recv(&m, pull, 0) < 0))
      if (zmq_errno() != EINTR)
        zmq_die("zmq_msg_recv");
    if (RILL_UNLIKELY(zmq_msg_size(&m) != size))
      bench_die("zmq: a message of %zu bytes, not %zu", zmq_msg_size(&m), size);
  }
  zmq_msg_close(&m);
}

/* The clock runs from the order to the far end's PUSH until this process
 * holds all n messages: counted where a user would see them, as for rill.
 * The order costs one pipe write and a wake-up, some tens of microseconds
 * in a run of tens of milliseconds. */
static uint64_t zmq_pull_run(void *pull, size_t size, uint64_t n) {
  uint64_t t0 = rill_time_ns();
  bench_zmq_far_send(&S.far, n);
  zmq_pull_n(pull, size, n);
  uint64_t t = rill_time_ns() - t0;
  bench_zmq_far_sent(&S.far);
  return t;
}

static uint64_t zmq_run(void *arg, uint64_t n) {
  (void)arg;
  return zmq_pull_run(S.pull, MSG, n);
}

/* A PULL bound here, the far end's PUSH connected to it, and one message
 * through, so the connection is up before any clock starts. */
static void *zmq_pull_open(size_t size) {
  void *pull;
  char ep[256];
  size_t epl = sizeof ep;
  if (!(pull = zmq_socket(S.zctx, ZMQ_PULL)) || zmq_bind(pull, "tcp://127.0.0.1:*") != 0 ||
      zmq_getsockopt(pull, ZMQ_LAST_ENDPOINT, ep, &epl) != 0)
    zmq_die("zmq PULL");
  bench_zmq_far_push(&S.far, ep, size);
  zmq_pull_run(pull, size, 1);
  return pull;
}

/* Closes a socket without waiting for what is unsent (the suite has
 * counted what it needs). */
static void zmq_close_now(void *s) {
  int linger = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(s);
}

static void zmq_pull_shut(void *pull) {
  bench_zmq_far_end(&S.far);
  zmq_close_now(pull);
}

/* Tells a peer thread to stop and waits for it. */
static void stop_join(atomic_bool *stop, pthread_t t) {
  atomic_store(stop, true);
  pthread_join(t, NULL);
}

/* ---- redis ----------------------------------------------------------------------------- */

static redisContext *redis_connect(void) {
  redisContext *c = bench_redis_connect(S.rport);
  /* The connect timeout would also bound every read: a subscriber waits. */
  struct timeval none = {30, 0};
  if (c) {
    redisSetTimeout(c, none);
    /* hiredis frees its read buffer each time it is empty and over 16
     * KiB, and grows it again on the next read; its README has a client
     * after throughput keep it. */
    c->reader->maxbuf = 0;
  }
  return c;
}

static void *redis_sub_thread(void *arg) {
  run_t *x = arg;
  atomic_store(&x->ready, true);
  for (uint64_t i = 0; i < x->n; i++) {
    redisReply *r = bench_redis_get(S.rsub);
    if (RILL_UNLIKELY(r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
                      r->element[2]->len != MSG))
      bench_die("redis: the subscriber got something other than a %u-byte message", MSG);
    freeReplyObject(r);
    atomic_store_explicit(&x->got, i + 1, memory_order_release);
  }
  x->t1 = rill_time_ns();
  return NULL;
}

/* Redis cuts off a subscriber that falls too far behind: the publisher
 * waits while it is more than LAG messages ahead. */
static void redis_lag_wait(run_t *x, uint64_t sent) {
  while (sent - atomic_load_explicit(&x->got, memory_order_acquire) > LAG)
    sched_yield();
}

static void redis_pub_reply(redisReply *r) {
  if (RILL_UNLIKELY(r->type != REDIS_REPLY_INTEGER || r->integer != 1))
    bench_die("redis: PUBLISH reached %lld subscribers, not 1", r->integer);
  freeReplyObject(r);
}

/* Runs a publisher against the SUBSCRIBEd connection's thread; the clock
 * stops when the subscriber has all n. */
static uint64_t redis_timed(uint64_t n, void (*publish)(run_t *x)) {
  run_t x = {.n = n};
  pthread_t t;
  if (pthread_create(&t, NULL, redis_sub_thread, &x) != 0)
    bench_die("pthread_create failed");
  wait_ready(&x);
  x.t0 = rill_time_ns();
  publish(&x);
  pthread_join(t, NULL);
  return x.t1 - x.t0;
}

/* The publisher as hiredis's format string makes it: every command
 * formatted anew, 256 appended, then their 256 replies read. */
static void redis_fmt_publish(run_t *x) {
  uint8_t m[MSG];
  msg_fill(m);
  redisContext *c = S.rpub[0];
  for (uint64_t sent = 0; sent < x->n;) {
    redis_lag_wait(x, sent);
    uint64_t k = x->n - sent < BATCH ? x->n - sent : BATCH;
    for (uint64_t j = 0; j < k; j++)
      if (redisAppendCommand(c, "PUBLISH %s %b", S.chan, m, (size_t)MSG) != REDIS_OK)
        bench_die("redis: %s", c->errstr);
    for (uint64_t j = 0; j < k; j++)
      redis_pub_reply(bench_redis_get(c));
    sent += k;
  }
}

static void redis_flush(redisContext *c) {
  int done = 0;
  while (!done)
    if (redisBufferWrite(c, &done) != REDIS_OK)
      bench_die("redis: %s", c->errstr);
}

/* The publisher as `redis-benchmark -c conns -P pipe` runs one: the
 * command formatted once, each connection sending pipe of them and
 * sending more only when all their replies are in, one thread serving
 * every connection as they become readable. */
static void redis_pre_publish_on(run_t *x, int conns, uint32_t pipe) {
  uint32_t out[REDIS_CONNS] = {0};
  struct pollfd p[REDIS_CONNS];
  for (int i = 0; i < conns; i++)
    p[i] = (struct pollfd){.fd = S.rpub[i]->fd, .events = POLLIN};
  for (uint64_t sent = 0, done = 0; done < x->n;) {
    for (int i = 0; i < conns && sent < x->n; i++) {
      if (out[i])
        continue;
      redis_lag_wait(x, sent);
      uint32_t k = x->n - sent < pipe ? (uint32_t)(x->n - sent) : pipe;
      for (uint32_t j = 0; j < k; j++)
        if (redisAppendFormattedCommand(S.rpub[i], S.pubcmd, (size_t)S.pubcmd_len) != REDIS_OK)
          bench_die("redis: %s", S.rpub[i]->errstr);
      redis_flush(S.rpub[i]);
      out[i] = k;
      sent += k;
    }
    if (poll(p, (nfds_t)conns, -1) < 0) {
      if (errno == EINTR)
        continue;
      bench_die("redis: poll: %s", strerror(errno));
    }
    for (int i = 0; i < conns; i++) {
      if (!p[i].revents)
        continue;
      if (redisBufferRead(S.rpub[i]) != REDIS_OK)
        bench_die("redis: %s", S.rpub[i]->errstr);
      void *r;
      while (out[i] && redisGetReplyFromReader(S.rpub[i], &r) == REDIS_OK && r) {
        redis_pub_reply(r);
        out[i]--;
        done++;
      }
      if (S.rpub[i]->err)
        bench_die("redis: %s", S.rpub[i]->errstr);
    }
  }
}

static void redis_pre_publish(run_t *x) { redis_pre_publish_on(x, 1, BATCH); }
static void redis_pre_c_publish(run_t *x) { redis_pre_publish_on(x, REDIS_CONNS, REDIS_C_PIPE); }

static uint64_t redis_fmt_run(void *arg, uint64_t n) {
  (void)arg;
  return redis_timed(n, redis_fmt_publish);
}

static uint64_t redis_pre_run(void *arg, uint64_t n) {
  (void)arg;
  return redis_timed(n, redis_pre_publish);
}

static uint64_t redis_pre_c_run(void *arg, uint64_t n) {
  (void)arg;
  return redis_timed(n, redis_pre_c_publish);
}

/* The publishers' connections and a SUBSCRIBEd one; false when no server
 * answers. */
static bool redis_open(bench_ctx_t *b) {
  S.rport = bench_redis_port();
  snprintf(S.chan, sizeof S.chan, "rill-bench-net-%ld", (long)getpid());
  if (!(S.rpub[0] = redis_connect()))
    return false;
  for (int i = 1; i < REDIS_CONNS; i++)
    if (!(S.rpub[i] = redis_connect()))
      bench_die("redis: connection %d failed", i + 1);
  if (!(S.rsub = redis_connect()))
    bench_die("redis: the subscriber's connection failed");
  char ver[32];
  bench_redis_version(S.rpub[0], ver, sizeof ver);
  if (redisAppendCommand(S.rsub, "SUBSCRIBE %s", S.chan) != REDIS_OK)
    bench_die("redis: %s", S.rsub->errstr);
  freeReplyObject(bench_redis_get(S.rsub));
  uint8_t m[MSG];
  msg_fill(m);
  if ((S.pubcmd_len = redisFormatCommand(&S.pubcmd, "PUBLISH %s %b", S.chan, m, (size_t)MSG)) < 0)
    bench_die("redis: out of memory");
  bench_note(b,
             "redis %s on 127.0.0.1:%d, hiredis %d.%d.%d, PUBLISH/SUBSCRIBE on one channel, the "
             "subscriber reading with redisGetReply in a thread (reader->maxbuf = 0); "
             "redis_pre_p256: PUBLISH formatted once (redisFormatCommand), 256 pipelined on one "
             "connection (redis-benchmark -c 1 -P 256); redis_pre_c4_p64: %d connections, %u "
             "each, one thread (redis-benchmark -c %d -P %u); redis_hiredis_fmt: hiredis's "
             "format string for every command, 256 pipelined",
             ver, S.rport, HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, REDIS_CONNS, REDIS_C_PIPE,
             REDIS_CONNS, REDIS_C_PIPE);
  return true;
}

static void redis_shut(void) {
  for (int i = 0; i < REDIS_CONNS; i++)
    redisFree(S.rpub[i]);
  redisFree(S.rsub);
  redisFreeCommand(S.pubcmd);
}

/* ---- the rill server ------------------------------------------------------------------ */

static void *srv_main(void *arg) {
  (void)arg;
  S.srv_rc = rill_server_run(S.srv);
  return NULL;
}

static int rill_open(bench_ctx_t *b) {
  if (bench_tmp_dir(S.dir, sizeof S.dir, "net") != 0)
    return 1;
  rill_server_opts_t o = {.any_port = true, .data_dir = S.dir, .sync = RILL_SERVER_SYNC_NEVER};
  int rc = rill_server_create(&S.srv, &o);
  if (rc)
    bench_die("rill_server_create: %s: %s", rill_strerror(rc), rill_errmsg());
  if (pthread_create(&S.srv_thread, NULL, srv_main, NULL) != 0)
    bench_die("pthread_create failed");
  rill_client_opts_t co = {.port = rill_server_port(S.srv), .name = "bench"};
  if ((rc = rill_client_connect(&S.pub, &co)) != 0 || (rc = rill_client_connect(&S.sub, &co)) != 0)
    bench_die("rill_client_connect: %s: %s", rill_strerror(rc), rill_errmsg());
  if ((rc = rill_client_bind(S.pub, TOPIC_PUB, &S.pub_ch)) != 0 ||
      (rc = rill_client_subscribe(S.sub, TOPIC_PUB, RILL_NET_FROM_LATEST, SUB_WINDOW, &S.sub_ch,
                                  &S.sub_next)) != 0)
    bench_die("rill: bind or subscribe: %s: %s", rill_strerror(rc), rill_errmsg());
  raw_open();
  bench_note(
      b,
      "rill: server on 127.0.0.1:%u, topics in %s, RILL_SERVER_SYNC_NEVER; subscriber credits "
      "%u, granted by halves; batches of %u records, %u awaiting their ACK",
      rill_server_port(S.srv), S.dir, SUB_WINDOW, BATCH, WINDOW);
  return 0;
}

static void rill_shut(bench_ctx_t *b) {
  /* Unacknowledged publishes: a ping brings back the error of any that
   * failed before the figures are believed. */
  int rc = rill_client_ping(S.pub, NULL);
  if (rc)
    bench_die("rill publisher: %s: %s", rill_strerror(rc), rill_errmsg());
  rill_client_close(S.pub);
  rill_client_close(S.sub);
  if (S.fd >= 0)
    close(S.fd);
  free(S.frame);
  rill_server_stats_t st;
  rill_server_stats(S.srv, &st);
  rill_server_stop(S.srv);
  pthread_join(S.srv_thread, NULL);
  if (S.srv_rc)
    bench_die("rill_server_run: %s", rill_strerror(S.srv_rc));
  rill_server_destroy(S.srv);
  bench_note(b,
             "rill server: %" PRIu64 " published, %" PRIu64 " delivered, %" PRIu64
             " frames in, %" PRIu64 " out, %" PRIu64 " errors sent",
             st.published, st.delivered, st.frames_in, st.frames_out, st.errors_sent);
  bench_rm_tree(S.dir);
  S.dir[0] = 0;
}

/* ---- ask round trip ------------------------------------------------------------------- */

/* The provider answers each ask with its own bytes, as fast as it can. */
static void *provider_main(void *arg) {
  (void)arg;
  while (!atomic_load(&S.provider_stop)) {
    rill_client_ask_t a;
    int rc = rill_client_next_ask(S.provider, &a, 50000000);
    if (rc == RILL_ETIMEDOUT)
      continue;
    if (rc || rill_client_reply(S.provider, a.id, a.data, a.len) != 0)
      bench_die("rill provider: %s", rill_errmsg());
  }
  return NULL;
}

static void rill_ask_lat(void *arg, uint64_t iters, rill_hist_t *h) {
  (void)arg;
  uint8_t m[MSG];
  msg_fill(m);
  for (uint64_t i = 0; i < iters; i++) {
    const uint8_t *r;
    uint32_t rl;
    uint64_t t0 = rill_time_ns();
    int rc = rill_client_ask(S.asker, "echo", m, MSG, RILL_FOREVER, &r, &rl);
    rill_hist_record(h, rill_time_ns() - t0);
    if (RILL_UNLIKELY(rc || rl != MSG))
      bench_die("rill_client_ask: %s: %s", rill_strerror(rc), rill_errmsg());
  }
}

static void zmq_ask_lat(void *arg, uint64_t iters, rill_hist_t *h) {
  (void)arg;
  uint8_t m[MSG], buf[MSG * 2];
  msg_fill(m);
  for (uint64_t i = 0; i < iters; i++) {
    uint64_t t0 = rill_time_ns();
    if (zmq_send(S.req, m, MSG, 0) != (int)MSG || zmq_recv(S.req, buf, sizeof buf, 0) != (int)MSG)
      zmq_die("zmq REQ");
    rill_hist_record(h, rill_time_ns() - t0);
  }
}

static void ask_open(void) {
  rill_client_opts_t co = {.port = rill_server_port(S.srv), .name = "bench"};
  int rc;
  if ((rc = rill_client_connect(&S.provider, &co)) != 0 ||
      (rc = rill_client_connect(&S.asker, &co)) != 0 ||
      (rc = rill_client_serve(S.provider, "echo", NULL)) != 0)
    bench_die("rill: provider or asker: %s: %s", rill_strerror(rc), rill_errmsg());
  atomic_init(&S.provider_stop, false);
  if (pthread_create(&S.provider_thread, NULL, provider_main, NULL) != 0)
    bench_die("pthread_create failed");
  /* As local_lat/remote_lat: the REP echoes in a process of its own. */
  bench_zmq_far_echo(&S.far, ZMQ_REP);
  if (!(S.req = zmq_socket(S.zctx, ZMQ_REQ)) || zmq_connect(S.req, S.far.ep) != 0)
    zmq_die("zmq REQ");
}

static void ask_shut(void) {
  stop_join(&S.provider_stop, S.provider_thread);
  rill_client_close(S.provider);
  rill_client_close(S.asker);
  zmq_close_now(S.req);
  bench_zmq_far_end(&S.far);
}

/* ---- ask_pipelined: a window of async asks ------------------------------------------- */

typedef struct pipe_run {
  uint64_t n, sent, done;
  int status;
} pipe_run_t;

static void pipe_provider_ask(void *ctx, const rill_client_ask_t *a) {
  (void)ctx;
  int rc = rill_client_reply(S.pprov, a->id, a->data, a->len);
  if (RILL_UNLIKELY(rc != 0))
    bench_die("rill provider: reply: %s: %s", rill_strerror(rc), rill_errmsg());
}

static void *pipe_provider_main(void *arg) {
  (void)arg;
  while (!atomic_load(&S.pprov_stop)) {
    int rc = rill_client_poll(S.pprov, 20000000);
    if (RILL_UNLIKELY(rc < 0))
      bench_die("rill provider: poll: %s: %s", rill_strerror(rc), rill_errmsg());
  }
  return NULL;
}

static void pipe_reply(void *ctx, int status, const uint8_t *reply, uint32_t len);

static void pipe_ask(pipe_run_t *x) {
  static uint8_t m[MSG];
  int rc = rill_client_ask_async(S.pasker, "pecho", m, MSG, RILL_FOREVER, pipe_reply, x);
  if (RILL_UNLIKELY(rc != 0))
    bench_die("rill_client_ask_async: %s: %s", rill_strerror(rc), rill_errmsg());
  x->sent++;
}

/* Each reply makes room for the next ask, sent from the callback: the
 * window stays full without the caller doing anything. */
static void pipe_reply(void *ctx, int status, const uint8_t *reply, uint32_t len) {
  (void)reply;
  pipe_run_t *x = ctx;
  if (RILL_UNLIKELY(status != 0 || len != MSG))
    bench_die("rill ask_async: status %d (%s), %u bytes", status, rill_errmsg(), len);
  x->done++;
  if (x->sent < x->n)
    pipe_ask(x);
}

static uint64_t rill_pipe_run(void *arg, uint64_t n) {
  (void)arg;
  pipe_run_t x = {.n = n};
  uint64_t t0 = rill_time_ns();
  while (x.sent < n && x.sent < ASK_WINDOW)
    pipe_ask(&x);
  while (x.done < n) {
    int rc = rill_client_poll(S.pasker, 1000000000ull);
    if (RILL_UNLIKELY(rc < 0))
      bench_die("rill asker: poll: %s: %s", rill_strerror(rc), rill_errmsg());
  }
  return rill_time_ns() - t0;
}

/* ZeroMQ: a DEALER keeps the same window of requests to a ROUTER, in a
 * process of its own, that echoes each (routing frame, then the payload). */
static uint64_t zmq_pipe_run(void *arg, uint64_t n) {
  (void)arg;
  uint8_t m[MSG], buf[MSG * 2];
  msg_fill(m);
  uint64_t t0 = rill_time_ns(), sent = 0, done = 0;
  for (; sent < n && sent < ASK_WINDOW; sent++)
    if (zmq_send(S.dealer, m, MSG, 0) != (int)MSG)
      zmq_die("zmq DEALER send");
  while (done < n) {
    if (zmq_recv(S.dealer, buf, sizeof buf, 0) != (int)MSG)
      zmq_die("zmq DEALER recv");
    done++;
    if (sent < n) {
      if (zmq_send(S.dealer, m, MSG, 0) != (int)MSG)
        zmq_die("zmq DEALER send");
      sent++;
    }
  }
  return rill_time_ns() - t0;
}

static void pipe_open(void) {
  rill_client_opts_t co = {.port = rill_server_port(S.srv), .name = "bench"};
  int rc;
  if ((rc = rill_client_connect(&S.pprov, &co)) != 0 ||
      (rc = rill_client_connect(&S.pasker, &co)) != 0 ||
      (rc = rill_client_serve_cb(S.pprov, "pecho", pipe_provider_ask, NULL, NULL)) != 0)
    bench_die("rill: pipelined provider or asker: %s: %s", rill_strerror(rc), rill_errmsg());
  atomic_init(&S.pprov_stop, false);
  if (pthread_create(&S.pprov_thread, NULL, pipe_provider_main, NULL) != 0)
    bench_die("pthread_create failed");
  /* The default high-water marks (1000) hold the window of 256. */
  bench_zmq_far_echo(&S.far, ZMQ_ROUTER);
  if (!(S.dealer = zmq_socket(S.zctx, ZMQ_DEALER)) || zmq_connect(S.dealer, S.far.ep) != 0)
    zmq_die("zmq DEALER");
}

static void pipe_shut(void) {
  stop_join(&S.pprov_stop, S.pprov_thread);
  rill_client_close(S.pprov);
  rill_client_close(S.pasker);
  zmq_close_now(S.dealer);
  bench_zmq_far_end(&S.far);
}

/* ---- pub_64k: big messages, counted at the subscriber ------------------------------------ */

static void big_msg(void *ctx, const rill_client_msg_t *m) {
  run_t *x = ctx;
  if (RILL_UNLIKELY(m->seq != S.big_next || m->len != BIG))
    bench_die("rill subscriber: seq %" PRIu64 " of %u bytes, expected %" PRIu64 " of %u", m->seq,
              m->len, S.big_next, BIG);
  bench_black_box(m->data);
  S.big_next++;
  atomic_store_explicit(&x->got, atomic_load_explicit(&x->got, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

static void *big_sub_thread(void *arg) {
  run_t *x = arg;
  S.big_ctx = x;
  atomic_store(&x->ready, true);
  while (atomic_load_explicit(&x->got, memory_order_relaxed) < x->n) {
    int rc = rill_client_poll(S.bsub, 1000000000ull);
    if (RILL_UNLIKELY(rc < 0))
      bench_die("rill subscriber: poll: %s: %s", rill_strerror(rc), rill_errmsg());
  }
  x->t1 = rill_time_ns();
  return NULL;
}

/* The callback's context is fixed at subscribe time; it forwards to the
 * run in progress. */
static void big_msg_fwd(void *ctx, const rill_client_msg_t *m) {
  (void)ctx;
  big_msg(S.big_ctx, m);
}

static uint64_t rill_big_run(void *arg, uint64_t n) {
  (void)arg;
  run_t x = {.n = n};
  pthread_t t;
  if (pthread_create(&t, NULL, big_sub_thread, &x) != 0)
    bench_die("pthread_create failed");
  wait_ready(&x);
  x.t0 = rill_time_ns();
  for (uint64_t i = 0; i < n; i++) {
    int rc = rill_client_publish(S.bpub, S.bpub_ch, S.big, BIG, false, NULL);
    if (RILL_UNLIKELY(rc != 0))
      bench_die("rill_client_publish: %s: %s", rill_strerror(rc), rill_errmsg());
  }
  if (rill_client_flush(S.bpub) != 0)
    bench_die("rill_client_flush: %s", rill_errmsg());
  pthread_join(t, NULL);
  return x.t1 - x.t0;
}

static uint64_t zmq_big_run(void *arg, uint64_t n) {
  (void)arg;
  return zmq_pull_run(S.bpull, BIG, n);
}

static void big_open(void) {
  S.big = malloc(BIG);
  if (!S.big)
    bench_die("out of memory");
  memset(S.big, 0x5a, BIG);
  rill_client_opts_t co = {.port = rill_server_port(S.srv), .name = "bench"};
  int rc;
  if ((rc = rill_client_connect(&S.bpub, &co)) != 0 ||
      (rc = rill_client_connect(&S.bsub, &co)) != 0 ||
      (rc = rill_client_bind(S.bpub, TOPIC_BIG, &S.bpub_ch)) != 0 ||
      (rc = rill_client_subscribe_cb(S.bsub, TOPIC_BIG, RILL_NET_FROM_LATEST, BIG_WINDOW,
                                     big_msg_fwd, NULL, &S.bsub_ch, &S.big_next)) != 0)
    bench_die("rill: 64 KiB publisher or subscriber: %s: %s", rill_strerror(rc), rill_errmsg());
  S.bpull = zmq_pull_open(BIG);
}

static void big_shut(void) {
  int rc = rill_client_ping(S.bpub, NULL);
  if (rc)
    bench_die("rill 64 KiB publisher: %s: %s", rill_strerror(rc), rill_errmsg());
  rill_client_close(S.bpub);
  rill_client_close(S.bsub);
  zmq_pull_shut(S.bpull);
  free(S.big);
}

/* ---- the suite -------------------------------------------------------------------------- */

static int net_run(bench_ctx_t *b) {
  /* Servers and their clients run where the kernel puts them: rill's
   * loops and clients, ZeroMQ's processes and I/O threads and
   * redis-server alike. */
  bench_set_pin(b, BENCH_PIN_NONE);
  if (rill_open(b) != 0)
    return 1;
  if (!(S.zctx = zmq_ctx_new()))
    zmq_die("zmq_ctx_new");
  bool redis = redis_open(b);
  if (!redis)
    bench_redis_absent(b, S.rport);
  bench_note(b,
             "zmq %d.%d.%d over tcp://127.0.0.1 as its perf tools run it (*_2proc): the far end "
             "(PUSH, REP, ROUTER) in a forked process with a context of its own, the near end "
             "(PULL, REQ, DEALER) in a context of this process, one I/O thread each, default "
             "high-water marks (1000); PUSH sends zmq_msg_t messages, PULL receives into one",
             ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH);
  bench_note(b,
             "ask_rtt: one ask at a time to an echo provider on another connection (rill), REQ "
             "to a REP (zmq); ask_pipelined: %u asks in flight, rill_client_ask_async to a "
             "rill_client_serve_cb provider (rill), DEALER to a ROUTER echoing (zmq)",
             ASK_WINDOW);
  bench_note(b,
             "nothing is pinned (as users run servers): %d CPUs for rill's server loops and "
             "clients, ZeroMQ's processes and I/O threads, and redis-server alike",
             bench_ncpu());

  if (bench_want(b, "pub_128")) {
    S.pull = zmq_pull_open(MSG);
    const bench_impl_t pub[] = {{.name = "rill_net", .run_timed = rill_pub_run},
                                {.name = "zmq_2proc", .run_timed = zmq_run},
                                {.name = "redis_pre_p256", .run_timed = redis_pre_run},
                                {.name = "redis_pre_c4_p64", .run_timed = redis_pre_c_run},
                                {.name = "redis_hiredis_fmt", .run_timed = redis_fmt_run}};
    bench_run(b, &(bench_case_t){"pub_128", MSG, 1, pub, redis ? 5 : 2});
    zmq_pull_shut(S.pull);
  }
  const bench_impl_t ack[] = {{.name = "rill_net", .run_timed = rill_ack_run}};
  bench_run(b, &(bench_case_t){"pub_ack_batch", MSG, 1, ack, 1});
  if (bench_want(b, "ask_rtt")) {
    ask_open();
    const bench_impl_t ask[] = {{.name = "rill_net", .run_lat = rill_ask_lat},
                                {.name = "zmq_reqrep_2proc", .run_lat = zmq_ask_lat}};
    bench_run(b, &(bench_case_t){"ask_rtt", MSG, 1, ask, 2});
    ask_shut();
    bench_goal(b, "ask round trip p50", bench_result_q(b, "ask_rtt", MSG, "rill_net", 50) / 1e3,
               false, 25, " us");
  }

  if (bench_want(b, "ask_pipelined")) {
    pipe_open();
    const bench_impl_t pipe[] = {{.name = "rill_net", .run_timed = rill_pipe_run},
                                 {.name = "zmq_dealer_2proc", .run_timed = zmq_pipe_run}};
    bench_run(b, &(bench_case_t){"ask_pipelined", MSG, 1, pipe, 2});
    pipe_shut();
    bench_goal(b, "pipelined asks, 256 in flight",
               bench_rate_m(b, "ask_pipelined", MSG, "rill_net"), true, 1, "M/s");
    bench_goal(b, "pipelined asks vs zmq DEALER/ROUTER, 2 processes",
               bench_ratio(b, "ask_pipelined", MSG, "zmq_dealer_2proc", "rill_net"), true, 1.5,
               "x");
  }
  if (bench_want(b, "pub_64k")) {
    big_open();
    const bench_impl_t big[] = {{.name = "rill_net", .run_timed = rill_big_run},
                                {.name = "zmq_2proc", .run_timed = zmq_big_run}};
    bench_run(b, &(bench_case_t){"pub_64k", BIG, 1, big, 2});
    big_shut();
    bench_goal(b, "publish 64 KiB, no ack, at the subscriber",
               BIG / bench_result(b, "pub_64k", BIG, "rill_net"), true, 2, " GB/s");
    bench_goal(b, "publish 64 KiB vs zmq PUSH/PULL tcp, 2 processes",
               bench_ratio(b, "pub_64k", BIG, "zmq_2proc", "rill_net"), true, 1, "x");
  }

  if (bench_want(b, "pub_128")) {
    bench_goal(b, "publish 128 B, no ack, at the subscriber",
               bench_rate_m(b, "pub_128", MSG, "rill_net"), true, 5, "M/s");
    bench_goal(b, "publish 128 B vs zmq PUSH/PULL tcp, 2 processes",
               bench_ratio(b, "pub_128", MSG, "zmq_2proc", "rill_net"), true, 1.5, "x");
    /* Against the faster of the pre-formatted publishers. */
    if (redis)
      bench_goal(b, "publish 128 B vs Redis, pre-formatted publisher",
                 fmin(bench_ratio(b, "pub_128", MSG, "redis_pre_p256", "rill_net"),
                      bench_ratio(b, "pub_128", MSG, "redis_pre_c4_p64", "rill_net")),
                 true, 3, "x");
  }
  if (bench_want(b, "pub_ack_batch"))
    bench_goal(b, "publish 128 B in acknowledged batches of 256",
               bench_rate_m(b, "pub_ack_batch", MSG, "rill_net"), true, 2, "M/s");

  rill_shut(b);
  zmq_ctx_term(S.zctx);
  if (redis)
    redis_shut();
  return 0;
}

const bench_suite_t bench_suite_net = {
    .name = "net",
    .about = "the rill server over loopback TCP: publish to a subscriber (128 B, 64 KiB), "
             "acknowledged batches, asks one at a time and pipelined, vs ZeroMQ tcp (2 processes) "
             "and Redis PUBLISH/SUBSCRIBE (pre-formatted and format-string publishers)",
    .run = net_run,
};
