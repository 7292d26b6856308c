/*
 * rill bench ipc: rill's shared-memory route (include/rill/ipc.h) between
 * two processes, against a Unix domain socket (SOCK_STREAM and
 * SOCK_SEQPACKET), a pipe and ZeroMQ over ipc://, in the same run, with
 * the same 64-byte messages and the same processes.
 *
 * Every implementation gets its own peer processes, forked once when its
 * case starts (after the route, socket pair or pipe is set up) and kept
 * until the case ends: the parent is the sender, each child a receiver.
 * A child takes orders on a pipe ("receive N", "echo N", "quit") and
 * answers on another one, so no fork and no handshake is inside a clock.
 * On two CPUs or more the parent runs on CPU 0 and a lone child on CPU 1:
 * every 1:1 case crosses cores. Routes: 4096 slots of 128 bytes (a 64-byte
 * message and the slot header), RILL_IPC_BLOCK.
 *
 * - lat_64_spin, lat_64_block: ping-pong, the parent sends a message and
 *   the child sends it back (rill: over a second route the other way; the
 *   child sends the bytes it received straight from the ring, no copy);
 *   each sample is the round trip halved, so it needs no clock shared by
 *   the processes. Like against like: in lat_64_spin both ends busy-poll
 *   (rill_spin: RILL_IPC_SPIN, spin up to 50 us, then park;
 *   unix_stream_spin: recv(MSG_DONTWAIT) in a loop, what a spinning user
 *   of a Unix socket writes, SO_BUSY_POLL being for NAPI devices); in
 *   lat_64_block both ends sleep in the kernel (rill_park: the futex at
 *   once; the sockets and the pipe block in read; zmq: PAIR over ipc://).
 * - lat_64_load: the price in latency of each way of sending. The parent
 *   hands over a message every PACE_NS (a fixed offered load, caught up
 *   after a preemption), stamped at the handover; the child records, for
 *   each, the time from the stamp to holding it. A buffered writer holds
 *   a message until its WBUF buffer is full, a sendmmsg sender until its
 *   batch of BATCH is: runs are whole buffers (batches), so every message
 *   leaves a full one, as in a steady stream.
 * - thr_64: the parent sends N messages; the clock runs from the moment
 *   the child says it is ready until the child holds all N (its own
 *   rill_time_ns(): the TSC calibration is inherited through fork, so the
 *   two processes read the same clock). Every receiver checks each
 *   message's sequence number, so none can skip the reads. Each peer one
 *   message at a time (*_permsg: one write or send per message, a sender
 *   that publishes them as they come; the stream and the pipe read 64 KiB
 *   at a time, the way a reader of a byte stream would) and batched as
 *   users who care about throughput run it: unix_stream_buf64k, a
 *   user-space buffered writer (one write per 64 KiB, flushed when full
 *   and at the end), and unix_seqpkt_mmsg64 / unix_dgram_mmsg64, sendmmsg
 *   of 64 and recvmmsg of up to 64 (MSG_WAITFORONE); zmq: PUSH/PULL over
 *   ipc://, high-water marks of 8192 as in `rill bench net` (zmq batches
 *   in its I/O thread by itself). rill batched meets them batched:
 *   rill_spin_batch64 / rill_park_batch64 hold 64 messages as the mmsg
 *   sender does and publish them with one rill_ipc_route_send_batch; the
 *   receiver takes up to 64 a rill_ipc_route_recv_batch (the first
 *   waited for, the rest what is there), reading them in place.
 * - thr_64_4rx: one sender, four receiver processes, every message to
 *   every receiver (the route's broadcast; the socket and the pipe: one
 *   write to each of four, the buffered writer its buffer to each;
 *   rill_park_batch64 its batch once, to all four). ns/op
 *   is per message sent, the clock stopping when the last receiver holds
 *   all N. Five processes on a small machine take turns, so nothing is
 *   pinned, and the route is measured parked (the reference row) and
 *   spinning.
 * - thr_64k, thr_64k_4rx: the same with 64 KiB messages, 1 and 4
 *   receivers. The route has a chunk pool (max_message 64 KiB, 64 chunks):
 *   the sender copies each message once into a chunk and every receiver
 *   reads it there in place. Each receiver, rill or not, checks the
 *   message's number in its first and last 8 bytes and reads every byte
 *   (sums all 8192 words): what a receiver that consumes the message pays.
 *   unix_stream and pipe: one 64 KiB write per message (to each receiver),
 *   read 64 KiB at a time. GB/s is the bytes one receiver gets (65536 / ns
 *   per message): with 4 receivers, 4 times as many bytes are delivered.
 *   thr_64k_pageword: 1 receiver reading one 8-byte word of each 4 KiB
 *   page (16 words): it touches every page, not every byte.
 * - chan_64: a channel (many senders), broadcast: two sender processes
 *   forked as well (the parent only gives orders), each sending N
 *   messages, one receiving process counting all 2N; ns/op is per
 *   message received, the clock running from the first sender's start to
 *   the receiver holding the last. The receiver checks each sender's
 *   numbers in order. Peers, many writers to one reader as their users
 *   set them up: one SOCK_SEQPACKET or SOCK_DGRAM socket pair whose one
 *   end both writers share (the reader's receive queue is where their
 *   messages meet, as with clients of a bound datagram socket); zmq: two
 *   PUSH sockets connected to one PULL.
 * - chan_64_queue: a work queue: the parent sends N messages, two
 *   receiving processes take them, each message to exactly one. Neither
 *   knows how many it will get: after the N messages the parent sends a
 *   stop to each (zmq: until each has one, as PUSH may hand a stopped
 *   receiver two), and checks that the counts add up to N and the
 *   numbers to N(N-1)/2. Peers: one socket pair end read by both
 *   processes (the kernel hands each datagram to one reader); zmq: PUSH to
 *   two PULLs, round-robin.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "bench.h"
#include "fork_harness.h"
#include "rill/ipc.h"

#define MSG      64u
#define MAX_RX   4
#define MAX_TX   2 /* sender processes of a channel case */
#define MAX_KIDS (MAX_RX + MAX_TX)
#define STOP     UINT64_MAX /* chan_64_queue: a message's number that tells a receiver to stop */
#define SLOTS    4096u
#define SLOT     128u           /* 64 bytes of payload and the 16-byte slot header */
#define WAIT_NS  10000000000ull /* any single wait longer than 10 s is a hang */
#define STREAM_B (64u << 10)    /* a stream reader's buffer */
#define ZMQ_HWM  8192
#define BIG      (64u << 10) /* thr_64k's messages */
#define CHUNKS   64u
#define WBUF     (64u << 10) /* the buffered writer's buffer: 1024 messages of 64 bytes */
#define BATCH    64u         /* sendmmsg/recvmmsg: messages a call */
#define PACE_NS  10000u      /* lat_64_load: one message every 10 us */

typedef enum { K_RILL, K_CHAN, K_UNIX, K_SEQ, K_DGRAM, K_PIPE, K_ZMQ } kind_t;
typedef enum { OP_QUIT, OP_RECV, OP_ECHO, OP_SEND, OP_TAKE, OP_DELAY } op_t;

typedef struct cmd {
  uint32_t op;
  uint64_t n;
} cmd_t;

typedef struct res {
  int32_t rc;        /* 0, or the child failed (it printed why) */
  uint64_t t1;       /* when it finished; in the "awake" answer, when it starts */
  uint64_t got, sum; /* OP_TAKE: messages taken, and their numbers added up */
} res_t;

/* One implementation of one case, and its peer processes. */
typedef struct peer {
  const char *impl;
  kind_t kind;
  bool spin, lat;
  bool big;     /* 64 KiB messages through the chunk pool */
  bool readall; /* the receiver reads every byte of a big message */
  bool wbuf;    /* unix_stream: the sender buffers WBUF bytes in user space, one write when full */
  bool mmsg;    /* datagram sockets: sendmmsg/recvmmsg, BATCH messages a call */
  bool rbatch;  /* rill: send_batch of BATCH held messages, recv_batch of up to BATCH */
  bool delay;   /* lat_64_load: paced sends, each message's one-way delay recorded */
  int nrx;
  int ntx;    /* channel cases: sender processes (children nrx..); 0: the parent sends */
  bool queue; /* each message to exactly one receiver (OP_TAKE) */
  bool up;
  uint64_t epoch;            /* chan_64_queue: the run, in its stops (zmq may leave stale ones) */
  bench_kid_t kid[MAX_KIDS]; /* orders to each child, answers from it */
  int fd[MAX_RX];            /* the parent's end toward each child (-1: none) */
  int back;                  /* pipe ping-pong: the way back */
  rill_ipc_route_t *tx;
  rill_ipc_route_t *rx;
  rill_ipc_chan_t *ch; /* chan_64_queue: the parent's sender */
  char fwd[64], bwd[64], ep[128];
  void *zctx, *zsock;
  uint8_t *wb; /* wbuf, mmsg, rbatch: the messages held back, wlen bytes of them */
  size_t wlen;
} peer_t;

static pid_t owner;
static char made[16][64]; /* routes this run created, removed at exit even after bench_die */
static int n_made;

static void unlink_made(void) {
  if (getpid() != owner)
    return; /* a child's exit leaves the parent's routes alone */
  for (int i = 0; i < n_made; i++)
    rill_ipc_route_unlink(made[i]);
  n_made = 0;
}

static void remember(const char *name) {
  if (n_made < (int)(sizeof made / sizeof made[0]))
    snprintf(made[n_made++], sizeof made[0], "%s", name);
}

/* ---- plumbing ------------------------------------------------------------------ */

static void write_full(int fd, const void *p, size_t n) {
  int rc = bench_kid_put(fd, p, n);
  if (RILL_UNLIKELY(rc != 0))
    bench_die("ipc: write: %s", strerror(-rc));
}

/* false at end of file. */
static bool read_full(int fd, void *p, size_t n) {
  int rc = bench_kid_get(fd, p, n);
  if (RILL_UNLIKELY(rc < 0))
    bench_die("ipc: read: %s", strerror(-rc));
  return rc > 0;
}

static void zmq_die(const char *what) { bench_die("ipc: %s: %s", what, zmq_strerror(zmq_errno())); }

static inline void msg_set(uint8_t *m, uint64_t seq) { memcpy(m, &seq, 8); }

static inline void msg_check(const char *who, const uint8_t *m, size_t len, uint64_t want) {
  uint64_t seq;
  memcpy(&seq, m, 8);
  if (RILL_UNLIKELY(len != MSG || seq != want))
    bench_die("ipc %s: message %" PRIu64 " arrived as %" PRIu64 " of %zu bytes", who, want, seq,
              len);
}

static uint64_t big_sink; /* what the reads of big messages add up to, so they stay */

/* A 64 KiB message: its number in the first and the last 8 bytes, and one
 * word of each 4 KiB page read (or every word, with all). */
static inline void big_check(const char *who, const uint8_t *m, size_t len, uint64_t want,
                             bool all) {
  uint64_t first, last, sum = 0;
  if (RILL_UNLIKELY(len != BIG))
    bench_die("ipc %s: message %" PRIu64 " of %zu bytes", who, want, len);
  memcpy(&first, m, 8);
  memcpy(&last, m + BIG - 8, 8);
  if (RILL_UNLIKELY(first != want || last != want))
    bench_die("ipc %s: message %" PRIu64 " arrived as %" PRIu64 "/%" PRIu64, who, want, first,
              last);
  const size_t step = all ? 8 : 4096;
  for (size_t off = 64; off < BIG; off += step) {
    uint64_t w;
    memcpy(&w, m + off, 8);
    sum += w;
  }
  big_sink += sum;
}

static rill_ipc_route_opts_t route_opts(const peer_t *p) {
  return (rill_ipc_route_opts_t){.slots = SLOTS,
                                 .slot_size = SLOT,
                                 .max_receivers = MAX_RX,
                                 .policy = RILL_IPC_BLOCK,
                                 .wait = p->spin ? RILL_IPC_SPIN : RILL_IPC_PARK,
                                 .max_message = p->big ? BIG : 0,
                                 .pool_chunks = p->big ? CHUNKS : 0};
}

/* Channel cases put every process on one socket pair, not one per child. */
static bool shared(const peer_t *p) { return p->ntx > 0 || p->queue; }

static rill_ipc_chan_opts_t chan_opts(const peer_t *p) {
  return (rill_ipc_chan_opts_t){.slots = SLOTS,
                                .slot_size = SLOT,
                                .max_senders = MAX_TX,
                                .max_receivers = MAX_RX,
                                .delivery = p->queue ? RILL_IPC_QUEUE : RILL_IPC_BROADCAST,
                                .policy = RILL_IPC_BLOCK,
                                .wait = p->spin ? RILL_IPC_SPIN : RILL_IPC_PARK};
}

static void rill_check(const char *what, int rc) {
  if (RILL_UNLIKELY(rc != 0))
    bench_die("ipc: %s: %s (%s)", what, rill_strerror(rc), rill_errmsg());
}

/* ---- the child ----------------------------------------------------------------- */

typedef struct child_end {
  int fd, back; /* sockets: fd both ways; pipes: fd in, back out */
  int tx_id;    /* channel cases: which sender this child is; -1: a receiver */
  rill_ipc_route_t *rx;
  rill_ipc_route_t *tx;
  rill_ipc_chan_t *ch;
  void *zctx, *zsock;
} child_end_t;

/* ---- channel cases: one message each way, whatever carries it ---------------------- */

/* A channel case's message: its number, then the sender's id (or, for a
 * stop, the run's epoch). */
static inline void chan_msg_set(uint8_t *m, uint64_t seq, uint64_t tag) {
  memcpy(m, &seq, 8);
  memcpy(m + 8, &tag, 8);
}

static inline void chan_send(kind_t k, rill_ipc_chan_t *ch, int fd, void *zsock, const uint8_t *m,
                             const char *who) {
  switch (k) {
  case K_CHAN: {
    int rc = rill_ipc_chan_send(ch, m, MSG, WAIT_NS);
    if (RILL_UNLIKELY(rc != 0))
      rill_check("channel send", rc);
    break;
  }
  case K_SEQ:
  case K_DGRAM:
    while (send(fd, m, MSG, MSG_NOSIGNAL) != (ssize_t)MSG)
      if (errno != EINTR)
        bench_die("ipc %s: send: %s", who, strerror(errno));
    break;
  case K_ZMQ:
    while (zmq_send(zsock, m, MSG, 0) != (int)MSG)
      if (zmq_errno() != EINTR)
        zmq_die("zmq_send");
    break;
  default: bench_die("ipc %s: not a channel peer", who);
  }
}

/* The next message of a channel case: in place (rill) or copied into buf. */
static inline void chan_recv(const peer_t *p, child_end_t *e, uint8_t *buf, size_t cap,
                             uint64_t *seq, uint64_t *tag) {
  const uint8_t *d = buf;
  ssize_t len;
  switch (p->kind) {
  case K_CHAN: {
    rill_ipc_msg_t m;
    rill_check("child channel recv", rill_ipc_chan_recv(e->ch, &m, WAIT_NS, NULL));
    d = m.data;
    len = m.len;
    break;
  }
  case K_SEQ:
  case K_DGRAM:
    while ((len = recv(e->fd, buf, cap, 0)) < 0)
      if (errno != EINTR)
        bench_die("ipc %s child: recv: %s", p->impl, strerror(errno));
    break;
  case K_ZMQ:
    while ((len = zmq_recv(e->zsock, buf, cap, 0)) < 0)
      if (zmq_errno() != EINTR)
        zmq_die("child zmq_recv");
    break;
  default: bench_die("ipc %s: not a channel peer", p->impl);
  }
  if (RILL_UNLIKELY(len != MSG))
    bench_die("ipc %s: a message of %zd bytes", p->impl, len);
  memcpy(seq, d, 8);
  memcpy(tag, d + 8, 8);
}

/* chan_64's receiver: n messages from ntx senders, each sender's in order. */
static void child_recv_many(const peer_t *p, child_end_t *e, uint64_t n) {
  uint8_t buf[MSG * 2];
  uint64_t next[MAX_TX] = {0};
  for (uint64_t i = 0; i < n; i++) {
    uint64_t seq, id;
    chan_recv(p, e, buf, sizeof buf, &seq, &id);
    if (RILL_UNLIKELY(id >= (uint64_t)p->ntx || seq != next[id]))
      bench_die("ipc %s: message %" PRIu64 " of sender %" PRIu64 " arrived as %" PRIu64, p->impl,
                id < MAX_TX ? next[id] : 0, id, seq);
    next[id]++;
  }
}

/* chan_64_queue's receivers: what comes, until this run's stop. Numbers
 * rise (each receiver gets an ordered part of the stream); the parent
 * checks that the parts add up. */
static void child_take(const peer_t *p, child_end_t *e, uint64_t epoch, res_t *r) {
  uint8_t buf[MSG * 2];
  uint64_t got = 0, sum = 0, last = 0;
  for (;;) {
    uint64_t seq, tag;
    chan_recv(p, e, buf, sizeof buf, &seq, &tag);
    if (seq == STOP) {
      if (tag == epoch)
        break;
      continue; /* left over from an earlier run (zmq) */
    }
    if (RILL_UNLIKELY(tag != 0 || (got && seq <= last)))
      bench_die("ipc %s: message %" PRIu64 " after %" PRIu64, p->impl, seq, last);
    last = seq;
    got++;
    sum += seq;
  }
  r->got = got;
  r->sum = sum;
}

/* A sender process of chan_64. */
static void child_send(const peer_t *p, child_end_t *e, uint64_t n) {
  uint8_t m[MSG];
  memset(m, 0x5a, sizeof m);
  for (uint64_t i = 0; i < n; i++) {
    chan_msg_set(m, i, (uint64_t)e->tx_id);
    chan_send(p->kind, e->ch, e->fd, e->zsock, m, p->impl);
  }
}

/* lat_64_load: a message's one-way delay, from the stamp the sender put in
 * bytes 8-15 when it handed the message over (before any buffering) to
 * now, when the receiver holds it (the TSC calibration is inherited
 * through fork: one clock). */
static inline void delay_record(rill_hist_t *dh, const uint8_t *m) {
  if (!dh)
    return;
  uint64_t t0, now = rill_time_ns();
  memcpy(&t0, m + 8, 8);
  rill_hist_record(dh, now > t0 ? now - t0 : 0);
}

/* n datagrams, BATCH a recvmmsg: MSG_WAITFORONE blocks for the first and
 * takes what else is queued, as a batching reader does. */
static void child_recv_mmsg(const peer_t *p, child_end_t *e, uint64_t n, rill_hist_t *dh) {
  static uint8_t buf[BATCH][MSG * 2]; /* room over MSG: a longer datagram shows as one */
  struct mmsghdr v[BATCH];
  struct iovec io[BATCH];
  for (uint32_t j = 0; j < BATCH; j++) {
    io[j] = (struct iovec){.iov_base = buf[j], .iov_len = sizeof buf[j]};
    v[j] = (struct mmsghdr){.msg_hdr = {.msg_iov = &io[j], .msg_iovlen = 1}};
  }
  for (uint64_t i = 0; i < n;) {
    unsigned want = n - i < BATCH ? (unsigned)(n - i) : BATCH;
    int r = recvmmsg(e->fd, v, want, MSG_WAITFORONE, NULL);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      bench_die("ipc %s child: recvmmsg: %s", p->impl, r ? strerror(errno) : "nothing");
    for (int j = 0; j < r; j++) {
      msg_check(p->impl, buf[j], v[j].msg_len, i + (uint64_t)j);
      delay_record(dh, buf[j]);
    }
    i += (uint64_t)r;
  }
}

/* n messages off a route, up to BATCH a recv_batch: it waits for the first
 * and takes what else is published, views in place (as recvmmsg with
 * MSG_WAITFORONE, without the copy). */
static void child_recv_batch(const peer_t *p, child_end_t *e, uint64_t n, rill_hist_t *dh) {
  rill_ipc_msg_t m[BATCH];
  for (uint64_t i = 0; i < n;) {
    uint32_t want = n - i < BATCH ? (uint32_t)(n - i) : BATCH, got = 0;
    rill_check("child recv_batch", rill_ipc_route_recv_batch(e->rx, m, want, &got, WAIT_NS, NULL));
    for (uint32_t j = 0; j < got; j++) {
      msg_check(p->impl, m[j].data, m[j].len, i + j);
      delay_record(dh, m[j].data);
    }
    i += got;
  }
}

/* n messages to the child: counted, checked and (dh) timed. */
static void child_recv(const peer_t *p, child_end_t *e, uint64_t n, rill_hist_t *dh) {
  static uint8_t buf[STREAM_B];
  switch (p->kind) {
  case K_CHAN: bench_die("ipc %s: a channel has its own cases", p->impl);
  case K_RILL:
    if (p->rbatch) {
      child_recv_batch(p, e, n, dh);
      break;
    }
    for (uint64_t i = 0; i < n; i++) {
      rill_ipc_msg_t m;
      rill_check("child recv", rill_ipc_route_recv(e->rx, &m, WAIT_NS, NULL));
      if (p->big) {
        big_check(p->impl, m.data, m.len, i, p->readall); /* in place, in the chunk */
      } else {
        msg_check(p->impl, m.data, m.len, i);
        delay_record(dh, m.data);
      }
    }
    break;
  case K_UNIX:
  case K_PIPE: {
    /* A byte stream: whole messages out of each read, the tail kept. */
    const size_t msz = p->big ? BIG : MSG;
    size_t have = 0;
    for (uint64_t i = 0; i < n;) {
      ssize_t r = read(e->fd, buf + have, sizeof buf - have);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        bench_die("ipc %s child: read: %s", p->impl, r ? strerror(errno) : "end of stream");
      have += (size_t)r;
      size_t k = have / msz;
      for (size_t j = 0; j < k; j++) {
        if (p->big) {
          big_check(p->impl, buf + j * msz, msz, i + j, p->readall);
        } else {
          msg_check(p->impl, buf + j * msz, msz, i + j);
          delay_record(dh, buf + j * msz);
        }
      }
      i += k;
      memmove(buf, buf + k * msz, have - k * msz);
      have -= k * msz;
    }
    break;
  }
  case K_SEQ:
  case K_DGRAM:
    if (p->mmsg) {
      child_recv_mmsg(p, e, n, dh);
      break;
    }
    for (uint64_t i = 0; i < n; i++) {
      ssize_t r = recv(e->fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EINTR) {
        i--;
        continue;
      }
      if (r < 0)
        bench_die("ipc %s child: recv: %s", p->impl, strerror(errno));
      msg_check(p->impl, buf, (size_t)r, i);
      delay_record(dh, buf);
    }
    break;
  case K_ZMQ:
    for (uint64_t i = 0; i < n; i++) {
      int r;
      while ((r = zmq_recv(e->zsock, buf, sizeof buf, 0)) < 0)
        if (zmq_errno() != EINTR)
          zmq_die("child zmq_recv");
      msg_check(p->impl, buf, (size_t)r, i);
      delay_record(dh, buf);
    }
    break;
  }
}

/* n bytes of a stream socket, busy-polling: recv with MSG_DONTWAIT in a
 * loop, never sleeping in the kernel, as a spinning reader of a socket
 * does (SO_BUSY_POLL is for NAPI network devices; a Unix socket has no
 * device queue to poll). false at end of stream. */
static bool read_spin(int fd, uint8_t *b, size_t n) {
  while (n) {
    ssize_t r = recv(fd, b, n, MSG_DONTWAIT);
    if (r > 0) {
      b += r;
      n -= (size_t)r;
    } else if (r == 0) {
      return false;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      bench_relax();
    } else {
      bench_die("ipc: recv: %s", strerror(errno));
    }
  }
  return true;
}

/* One 64-byte message of a ping-pong over a socket or a pipe: blocking,
 * or busy-polling (unix_stream_spin). */
static bool read_msg(const peer_t *p, int fd, uint8_t *buf) {
  return p->spin && p->kind == K_UNIX ? read_spin(fd, buf, MSG) : read_full(fd, buf, MSG);
}

/* Ping-pong's far end: each message straight back. */
static void child_echo(const peer_t *p, child_end_t *e, uint64_t n) {
  uint8_t buf[MSG * 2];
  for (uint64_t i = 0; i < n; i++) {
    switch (p->kind) {
    case K_CHAN: bench_die("ipc %s: a channel has its own cases", p->impl);
    case K_RILL: {
      rill_ipc_msg_t m;
      rill_check("child recv", rill_ipc_route_recv(e->rx, &m, WAIT_NS, NULL));
      /* From the ring to the ring: the view stays valid until the next recv. */
      rill_check("child send", rill_ipc_route_send(e->tx, m.data, m.len, WAIT_NS));
      break;
    }
    case K_UNIX:
    case K_SEQ:
    case K_DGRAM:
    case K_PIPE:
      if (!read_msg(p, e->fd, buf))
        bench_die("ipc %s child: end of stream", p->impl);
      write_full(p->kind == K_PIPE ? e->back : e->fd, buf, MSG);
      break;
    case K_ZMQ:
      if (zmq_recv(e->zsock, buf, sizeof buf, 0) != (int)MSG ||
          zmq_send(e->zsock, buf, MSG, 0) != (int)MSG)
        zmq_die("child zmq PAIR");
      break;
    }
  }
}

static _Noreturn void child_main(const peer_t *p, child_end_t *e, int ctl, int resfd) {
  if (p->kind == K_CHAN) {
    rill_check("child channel open",
               rill_ipc_chan_open(&e->ch, p->fwd, NULL,
                                  e->tx_id >= 0 ? RILL_IPC_SENDER : RILL_IPC_RECEIVER));
  } else if (p->kind == K_ZMQ && p->ntx > 0) {
    /* Many to one: the receiver binds a PULL, each sender connects a PUSH. */
    int hwm = ZMQ_HWM;
    bool tx = e->tx_id >= 0;
    if (!(e->zctx = zmq_ctx_new()) || !(e->zsock = zmq_socket(e->zctx, tx ? ZMQ_PUSH : ZMQ_PULL)) ||
        zmq_setsockopt(e->zsock, tx ? ZMQ_SNDHWM : ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        (tx ? zmq_connect(e->zsock, p->ep) : zmq_bind(e->zsock, p->ep)) != 0)
      zmq_die("child zmq PUSH/PULL");
  } else if (p->kind == K_RILL) {
    rill_check("child attach", rill_ipc_route_open(&e->rx, p->fwd, NULL, RILL_IPC_RECEIVER));
    if (p->lat) {
      rill_ipc_route_opts_t o = route_opts(p);
      rill_check("child sender", rill_ipc_route_open(&e->tx, p->bwd, &o, RILL_IPC_SENDER));
    }
  } else if (p->kind == K_ZMQ) {
    int hwm = ZMQ_HWM;
    if (!(e->zctx = zmq_ctx_new()) ||
        !(e->zsock = zmq_socket(e->zctx, p->lat ? ZMQ_PAIR : ZMQ_PULL)) ||
        zmq_setsockopt(e->zsock, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        zmq_connect(e->zsock, p->ep) != 0)
      zmq_die("child zmq_connect");
  }
  res_t r = {0};
  write_full(resfd, &r, sizeof r); /* attached: the parent may go on */
  static rill_hist_t dh;           /* OP_DELAY's samples, sent after the answer */
  cmd_t c;
  while (read_full(ctl, &c, sizeof c) && c.op != OP_QUIT) {
    rill_hist_init(&dh);
    r = (res_t){.t1 = rill_time_ns()};
    write_full(resfd, &r, sizeof r); /* awake and about to start */
    if (c.op == OP_RECV && p->ntx > 0)
      child_recv_many(p, e, c.n);
    else if (c.op == OP_RECV || c.op == OP_DELAY)
      child_recv(p, e, c.n, c.op == OP_DELAY ? &dh : NULL);
    else if (c.op == OP_SEND)
      child_send(p, e, c.n);
    else if (c.op == OP_TAKE)
      child_take(p, e, c.n, &r);
    else
      child_echo(p, e, c.n);
    r.t1 = rill_time_ns();
    write_full(resfd, &r, sizeof r);
    if (c.op == OP_DELAY)
      write_full(resfd, &dh, sizeof dh);
  }
  if (p->kind == K_RILL) {
    rill_ipc_route_close(e->tx);
    rill_ipc_route_close(e->rx);
  } else if (p->kind == K_CHAN) {
    rill_ipc_chan_close(e->ch);
  } else if (p->kind == K_ZMQ) {
    int linger = 0;
    zmq_setsockopt(e->zsock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(e->zsock);
    zmq_ctx_term(e->zctx);
  }
  fflush(NULL);
  _exit(0);
}

/* ---- the parent: set up, run, tear down ------------------------------------------- */

static uint64_t chan_run(peer_t *p, uint64_t n);
static uint64_t thr_run(void *arg, uint64_t n);

/* What a child is forked with: its place, and the data ends to keep. */
typedef struct kid_arg {
  const peer_t *p;
  int i;
  bool pin;
  int one[2], sv[2], bk[2];
} kid_arg_t;

static int kid_main(void *arg, int ctl, int resfd) {
  const kid_arg_t *k = arg;
  const peer_t *p = k->p;
  if (k->pin)
    bench_pin_cpu(1);
  else
    bench_unpin();
  child_end_t e = {.fd = -1, .back = -1, .tx_id = k->i >= p->nrx ? k->i - p->nrx : -1};
  if (k->one[0] >= 0) {
    /* Senders write one end, receivers read the other. */
    close(k->one[e.tx_id >= 0 ? 1 : 0]);
    e.fd = k->one[e.tx_id >= 0 ? 0 : 1];
  } else if (p->kind == K_UNIX || p->kind == K_SEQ || p->kind == K_DGRAM) {
    close(k->sv[0]);
    e.fd = k->sv[1];
  } else if (p->kind == K_PIPE) {
    close(k->sv[1]);
    e.fd = k->sv[0];
    if (p->lat) {
      close(k->bk[0]);
      e.back = k->bk[1];
    }
  }
  child_main(p, &e, ctl, resfd);
}

static void peer_open(peer_t *p) {
  static unsigned seq;
  unsigned id = seq++;
  p->back = -1;
  p->wlen = 0;
  if ((p->wbuf || p->mmsg || p->rbatch) && !(p->wb = malloc(WBUF)))
    bench_die("ipc: out of memory");
  for (int i = 0; i < MAX_RX; i++)
    p->fd[i] = -1;
  int one[2] = {-1, -1}; /* shared(): the socket pair every process uses */
  if (shared(p) && (p->kind == K_SEQ || p->kind == K_DGRAM) &&
      socketpair(AF_UNIX, p->kind == K_SEQ ? SOCK_SEQPACKET : SOCK_DGRAM, 0, one))
    bench_die("ipc: socketpair: %s", strerror(errno));
  if (p->kind == K_CHAN) {
    snprintf(p->fwd, sizeof p->fwd, "rill-bench-%d-%u-chan", (int)getpid(), id);
    rill_ipc_chan_opts_t o = chan_opts(p);
    /* The parent creates it; it stays a sender only when it sends. */
    rill_check("channel open", rill_ipc_chan_open(&p->ch, p->fwd, &o, RILL_IPC_SENDER));
    remember(p->fwd);
    if (p->ntx > 0) {
      rill_ipc_chan_close(p->ch);
      p->ch = NULL;
    }
  } else if (p->kind == K_RILL) {
    snprintf(p->fwd, sizeof p->fwd, "rill-bench-%d-%u-fwd", (int)getpid(), id);
    snprintf(p->bwd, sizeof p->bwd, "rill-bench-%d-%u-back", (int)getpid(), id);
    rill_ipc_route_opts_t o = route_opts(p);
    rill_check("sender_open", rill_ipc_route_open(&p->tx, p->fwd, &o, RILL_IPC_SENDER));
    remember(p->fwd);
    if (p->lat)
      remember(p->bwd);
  } else if (p->kind == K_ZMQ) {
    snprintf(p->ep, sizeof p->ep, "ipc:///tmp/rill-bench-%d-%u.zmq", (int)getpid(), id);
  }
  bool pin = p->nrx == 1 && p->ntx == 0 && bench_ncpu() >= 2;
  for (int i = 0; i < p->nrx + p->ntx; i++) {
    int sv[2] = {-1, -1}, bk[2] = {-1, -1};
    if (i == p->nrx && p->ntx > 0) {
      /* The receivers are attached (zmq: bound) before a sender starts. */
      for (int j = 0; j < p->nrx; j++) {
        res_t r;
        if (!read_full(p->kid[j].from, &r, sizeof r))
          bench_die("ipc %s: a peer process died while attaching", p->impl);
      }
    }
    if (shared(p)) {
      /* one[] serves every child. */
    } else if (p->kind == K_UNIX || p->kind == K_SEQ || p->kind == K_DGRAM) {
      int type = p->kind == K_UNIX ? SOCK_STREAM : p->kind == K_SEQ ? SOCK_SEQPACKET : SOCK_DGRAM;
      if (socketpair(AF_UNIX, type, 0, sv))
        bench_die("ipc: socketpair: %s", strerror(errno));
    } else if (p->kind == K_PIPE) {
      if (pipe(sv) || (p->lat && pipe(bk)))
        bench_die("ipc: pipe: %s", strerror(errno));
    }
    /* A child never outlives a parent that died. */
    kid_arg_t k = {.p = p,
                   .i = i,
                   .pin = pin,
                   .one = {one[0], one[1]},
                   .sv = {sv[0], sv[1]},
                   .bk = {bk[0], bk[1]}};
    int rc = bench_kid_fork(p->kid, (size_t)i, kid_main, &k, BENCH_KID_DIE_WITH_PARENT);
    if (rc)
      bench_die("ipc: fork: %s", strerror(-rc));
    if (shared(p)) {
    } else if (p->kind == K_UNIX || p->kind == K_SEQ || p->kind == K_DGRAM) {
      close(sv[1]);
      p->fd[i] = sv[0];
    } else if (p->kind == K_PIPE) {
      close(sv[0]);
      p->fd[i] = sv[1];
      if (p->lat) {
        close(bk[1]);
        p->back = bk[0];
      }
    }
  }
  if (one[0] >= 0) {
    /* The parent keeps the sending end when it is the sender. */
    if (p->ntx == 0)
      p->fd[0] = one[0];
    else
      close(one[0]);
    close(one[1]);
  }
  if (pin)
    bench_pin_cpu(0);
  else
    bench_unpin();
  if (p->kind == K_ZMQ && p->ntx == 0) {
    int hwm = ZMQ_HWM;
    if (!(p->zctx = zmq_ctx_new()) ||
        !(p->zsock = zmq_socket(p->zctx, p->lat ? ZMQ_PAIR : ZMQ_PUSH)) ||
        zmq_setsockopt(p->zsock, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_bind(p->zsock, p->ep) != 0)
      zmq_die("zmq_bind");
  }
  for (int i = p->ntx > 0 ? p->nrx : 0; i < p->nrx + p->ntx; i++) {
    res_t r;
    if (!read_full(p->kid[i].from, &r, sizeof r))
      bench_die("ipc %s: a peer process died while attaching", p->impl);
  }
  /* The way back exists now: the child created it. */
  if (p->kind == K_RILL && p->lat)
    rill_check("receiver_open (back)",
               rill_ipc_route_open(&p->rx, p->bwd, NULL, RILL_IPC_RECEIVER));
  p->up = true;
  /* The PULLs connected before the PUSH was bound, and zmq retries only
   * 100 ms later: one untimed run, which ends once both got a stop, so
   * both are connected before the harness calibrates on the first run. */
  if (p->kind == K_ZMQ && p->queue)
    chan_run(p, 1);
  /* The same for the other zmq peers whose receivers connect before the
   * parent binds (thr_*, chan_64 is bound by its receiver): without it, a
   * first run that waited out the retry made the harness calibrate on one
   * iteration, and the row read 140-300 us a message. */
  else if (p->kind == K_ZMQ && !p->lat && !shared(p))
    thr_run(p, 1);
}

static void peer_close(peer_t *p) {
  if (!p->up)
    return;
  cmd_t q = {OP_QUIT, 0};
  for (int i = 0; i < p->nrx + p->ntx; i++) {
    write_full(p->kid[i].to, &q, sizeof q);
    bench_kid_end(&p->kid[i], false);
  }
  for (int i = 0; i < MAX_RX; i++)
    if (p->fd[i] >= 0)
      close(p->fd[i]);
  if (p->back >= 0)
    close(p->back);
  free(p->wb);
  p->wb = NULL;
  if (p->kind == K_RILL) {
    rill_ipc_route_close(p->tx);
    rill_ipc_route_close(p->rx);
    rill_ipc_route_unlink(p->fwd);
    if (p->lat)
      rill_ipc_route_unlink(p->bwd);
  } else if (p->kind == K_CHAN) {
    rill_ipc_chan_close(p->ch);
    rill_ipc_chan_unlink(p->fwd);
  } else if (p->kind == K_ZMQ) {
    if (p->zsock) { /* chan_64: the parent has no zmq socket */
      int linger = 0;
      zmq_setsockopt(p->zsock, ZMQ_LINGER, &linger, sizeof linger);
      zmq_close(p->zsock);
      zmq_ctx_term(p->zctx);
    }
    unlink(p->ep + strlen("ipc://"));
  }
  p->up = false;
}

/* Orders children lo..hi-1 and waits until each is awake; returns the
 * earliest time one of them started. */
static uint64_t order_some(peer_t *p, int lo, int hi, op_t op, uint64_t n) {
  cmd_t c = {op, n};
  uint64_t t0 = UINT64_MAX;
  for (int i = lo; i < hi; i++)
    write_full(p->kid[i].to, &c, sizeof c);
  for (int i = lo; i < hi; i++) {
    res_t r;
    if (!read_full(p->kid[i].from, &r, sizeof r))
      bench_die("ipc %s: a peer process died", p->impl);
    if (r.t1 < t0)
      t0 = r.t1;
  }
  return t0;
}

/* Orders every receiving child. */
static void order(peer_t *p, op_t op, uint64_t n) { order_some(p, 0, p->nrx, op, n); }

/* The latest time a child finished at. */
static uint64_t finish(peer_t *p) {
  uint64_t t1 = 0;
  for (int i = 0; i < p->nrx + p->ntx; i++) {
    res_t r;
    if (!read_full(p->kid[i].from, &r, sizeof r) || r.rc)
      bench_die("ipc %s: a peer process failed", p->impl);
    if (r.t1 > t1)
      t1 = r.t1;
  }
  return t1;
}

/* BATCH datagrams (or fewer) in as few sendmmsg calls as the socket takes. */
static void send_mmsg(const peer_t *p, int fd, uint8_t *b, size_t n) {
  struct mmsghdr v[BATCH];
  struct iovec io[BATCH];
  for (size_t j = 0; j < n; j++) {
    io[j] = (struct iovec){.iov_base = b + j * MSG, .iov_len = MSG};
    v[j] = (struct mmsghdr){.msg_hdr = {.msg_iov = &io[j], .msg_iovlen = 1}};
  }
  for (size_t done = 0; done < n;) {
    int r = sendmmsg(fd, v + done, (unsigned)(n - done), MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      bench_die("ipc %s: sendmmsg: %s", p->impl, r ? strerror(errno) : "nothing sent");
    done += (size_t)r;
  }
}

/* The held messages out: the buffer in one write, or the batch in one
 * sendmmsg, to each receiver. */
static void flush_held(peer_t *p) {
  if (!p->wlen)
    return;
  if (p->rbatch) {
    /* One route to every receiver: the batch once. */
    rill_iov_t v[BATCH];
    uint32_t n = (uint32_t)(p->wlen / MSG);
    for (uint32_t j = 0; j < n; j++)
      v[j] = (rill_iov_t){p->wb + j * MSG, MSG};
    rill_check("send_batch", rill_ipc_route_send_batch(p->tx, v, n, WAIT_NS, NULL));
    p->wlen = 0;
    return;
  }
  for (int i = 0; i < p->nrx; i++) {
    if (p->mmsg)
      send_mmsg(p, p->fd[i], p->wb, p->wlen / MSG);
    else
      write_full(p->fd[i], p->wb, p->wlen);
  }
  p->wlen = 0;
}

/* A buffered writer's send: the message waits in user space until the
 * buffer (or the batch) is full, or until the run ends. */
static inline void hold(peer_t *p, const uint8_t *m, size_t len) {
  memcpy(p->wb + p->wlen, m, len);
  p->wlen += len;
  if (p->wlen + len > (p->mmsg || p->rbatch ? BATCH * MSG : WBUF))
    flush_held(p);
}

static inline void send_one(peer_t *p, const uint8_t *m) {
  const uint32_t msz = p->big ? BIG : MSG;
  switch (p->kind) {
  case K_CHAN: bench_die("ipc %s: a channel has its own cases", p->impl);
  case K_RILL: {
    if (p->rbatch) {
      hold(p, m, msz);
      break;
    }
    int rc = rill_ipc_route_send(p->tx, m, msz, WAIT_NS);
    if (RILL_UNLIKELY(rc != 0))
      rill_check("send", rc);
    break;
  }
  case K_UNIX:
  case K_PIPE:
    if (p->wbuf) {
      hold(p, m, msz);
      break;
    }
    for (int i = 0; i < p->nrx; i++)
      write_full(p->fd[i], m, msz);
    break;
  case K_SEQ:
  case K_DGRAM:
    if (p->mmsg) {
      hold(p, m, msz);
      break;
    }
    for (int i = 0; i < p->nrx; i++)
      while (send(p->fd[i], m, MSG, MSG_NOSIGNAL) != (ssize_t)MSG)
        if (errno != EINTR)
          bench_die("ipc %s: send: %s", p->impl, strerror(errno));
    break;
  case K_ZMQ:
    while (zmq_send(p->zsock, m, MSG, 0) != (int)MSG)
      if (zmq_errno() != EINTR)
        zmq_die("zmq_send");
    break;
  }
}

/* chan_64_queue after the N messages: a stop for each receiver, then
 * their answers. PUSH may give two stops to one receiver, which reads only
 * the first: while one is still taking, another stop is sent every 50 us. */
static uint64_t queue_finish(peer_t *p, uint64_t n) {
  uint8_t m[MSG];
  memset(m, 0x5a, sizeof m);
  chan_msg_set(m, STOP, p->epoch);
  for (int i = 0; i < p->nrx; i++)
    chan_send(p->kind, p->ch, p->fd[0], p->zsock, m, p->impl);
  bool done[MAX_RX] = {false};
  uint64_t t1 = 0, got = 0, sum = 0;
  for (int left = p->nrx; left > 0;) {
    struct pollfd pf[MAX_RX];
    int who[MAX_RX], k = 0;
    for (int i = 0; i < p->nrx; i++)
      if (!done[i]) {
        pf[k] = (struct pollfd){.fd = p->kid[i].from, .events = POLLIN};
        who[k++] = i;
      }
    struct timespec tick = {0, 50000};
    int ready = ppoll(pf, (nfds_t)k, p->kind == K_ZMQ ? &tick : NULL, NULL);
    if (ready < 0 && errno != EINTR)
      bench_die("ipc: ppoll: %s", strerror(errno));
    if (ready == 0 && zmq_send(p->zsock, m, MSG, ZMQ_DONTWAIT) < 0 && zmq_errno() != EAGAIN)
      zmq_die("zmq_send (stop)");
    for (int j = 0; ready > 0 && j < k; j++) {
      if (!pf[j].revents)
        continue;
      res_t r;
      if (!read_full(p->kid[who[j]].from, &r, sizeof r) || r.rc)
        bench_die("ipc %s: a peer process failed", p->impl);
      done[who[j]] = true;
      left--;
      got += r.got;
      sum += r.sum;
      if (r.t1 > t1)
        t1 = r.t1;
    }
  }
  /* Each message once: as many as were sent, and their numbers add up
   * (modulo 2^64, on both sides). */
  if (got != n || sum != (n % 2 ? n * ((n - 1) / 2) : (n / 2) * (n - 1)))
    bench_die("ipc %s: the receivers took %" PRIu64 " messages of %" PRIu64
              ", numbers adding up to %" PRIu64,
              p->impl, got, n, sum);
  return t1;
}

static uint64_t chan_run(peer_t *p, uint64_t n) {
  if (p->ntx > 0) {
    /* Many to one: the receiver first, then the senders; the clock starts
     * when the first sender does. */
    order_some(p, 0, p->nrx, OP_RECV, n * (uint64_t)p->ntx);
    uint64_t t0 = order_some(p, p->nrx, p->nrx + p->ntx, OP_SEND, n);
    return finish(p) - t0;
  }
  uint8_t m[MSG];
  memset(m, 0x5a, sizeof m);
  order(p, OP_TAKE, ++p->epoch);
  uint64_t t0 = rill_time_ns();
  for (uint64_t i = 0; i < n; i++) {
    chan_msg_set(m, i, 0);
    chan_send(p->kind, p->ch, p->fd[0], p->zsock, m, p->impl);
  }
  return queue_finish(p, n) - t0;
}

static uint64_t thr_run(void *arg, uint64_t n) {
  peer_t *p = arg;
  if (p->ntx > 0 || p->queue)
    return chan_run(p, n);
  static uint8_t m[BIG];
  memset(m, 0x5a, sizeof m);
  order(p, OP_RECV, n);
  uint64_t t0 = rill_time_ns();
  for (uint64_t i = 0; i < n; i++) {
    msg_set(m, i);
    if (p->big)
      memcpy(m + BIG - 8, &i, 8);
    send_one(p, m);
  }
  flush_held(p);
  return finish(p) - t0;
}

/* lat_64_load: the sender hands over a message every PACE_NS, as a
 * producer with work between messages does, and the receiver records
 * each one's delay: the wake-up a blocked receiver pays, and how long a
 * buffered writer or a batch holds a message back. */
static void delay_run(void *arg, uint64_t iters, rill_hist_t *h) {
  peer_t *p = arg;
  uint8_t m[MSG];
  memset(m, 0x5a, sizeof m);
  /* Whole buffers (batches): every message leaves a full one, as in a
   * steady stream, not an early flush at the end of a run. The row's
   * figure is the mean of the samples, so the extra messages change no
   * rate. */
  const uint64_t held = p->wbuf ? WBUF / MSG : p->mmsg || p->rbatch ? BATCH : 1;
  const uint64_t n = (iters + held - 1) / held * held;
  order(p, OP_DELAY, n);
  uint64_t next = rill_time_ns();
  for (uint64_t i = 0; i < n; i++) {
    uint64_t now;
    while ((now = rill_time_ns()) < next)
      bench_relax();
    /* A fixed offered load: a sender that was preempted catches up, so
     * a buffer still fills in WBUF / MSG * PACE_NS. */
    next += PACE_NS;
    msg_set(m, i);
    memcpy(m + 8, &now, 8);
    send_one(p, m);
  }
  flush_held(p);
  finish(p);
  static rill_hist_t dh;
  if (!read_full(p->kid[0].from, &dh, sizeof dh))
    bench_die("ipc %s: a peer process died", p->impl);
  rill_hist_merge(h, &dh);
}

/* The reply to message i. */
static inline void recv_back(peer_t *p, uint64_t i) {
  uint8_t buf[MSG * 2];
  switch (p->kind) {
  case K_CHAN: bench_die("ipc %s: a channel has its own cases", p->impl);
  case K_RILL: {
    rill_ipc_msg_t mm;
    rill_check("recv (back)", rill_ipc_route_recv(p->rx, &mm, WAIT_NS, NULL));
    msg_check(p->impl, mm.data, mm.len, i);
    return;
  }
  case K_UNIX:
  case K_SEQ:
  case K_DGRAM:
  case K_PIPE:
    if (!read_msg(p, p->kind == K_PIPE ? p->back : p->fd[0], buf))
      bench_die("ipc %s: the echo stopped", p->impl);
    msg_check(p->impl, buf, MSG, i);
    return;
  case K_ZMQ: {
    int r = zmq_recv(p->zsock, buf, sizeof buf, 0);
    if (r < 0)
      zmq_die("zmq_recv");
    msg_check(p->impl, buf, (size_t)r, i);
    return;
  }
  }
}

static void lat_run(void *arg, uint64_t iters, rill_hist_t *h) {
  peer_t *p = arg;
  uint8_t m[MSG];
  memset(m, 0x5a, sizeof m);
  order(p, OP_ECHO, iters + 1);
  /* One round trip untimed: the child is up and in its loop. */
  msg_set(m, 0);
  send_one(p, m);
  recv_back(p, 0);
  for (uint64_t i = 1; i <= iters; i++) {
    msg_set(m, i);
    uint64_t t0 = rill_time_ns();
    send_one(p, m);
    recv_back(p, i);
    uint64_t t1 = rill_time_ns();
    rill_hist_record(h, (t1 - t0) / 2);
  }
  finish(p);
}

/* ---- the suite ----------------------------------------------------------------------- */

/* How many datagrams a Unix datagram socket queues before its sender
 * blocks: the sysctl, read as the kernel will apply it (-1: unknown). */
static int dgram_qlen(void) {
  FILE *f = fopen("/proc/sys/net/unix/max_dgram_qlen", "r");
  int q = -1;
  if (f) {
    if (fscanf(f, "%d", &q) != 1)
      q = -1;
    fclose(f);
  }
  return q;
}

static void run_case(bench_ctx_t *b, const char *name, peer_t *peers, size_t n, bool lat) {
  if (!bench_want(b, name))
    return;
  bench_impl_t im[12];
  if (n > sizeof im / sizeof im[0])
    bench_die("ipc %s: %zu implementations", name, n);
  for (size_t i = 0; i < n; i++) {
    peer_open(&peers[i]);
    void (*run_lat)(void *, uint64_t, rill_hist_t *) = peers[i].delay ? delay_run : lat_run;
    im[i] = lat ? (bench_impl_t){.name = peers[i].impl, .run_lat = run_lat, .arg = &peers[i]}
                : (bench_impl_t){.name = peers[i].impl, .run_timed = thr_run, .arg = &peers[i]};
  }
  /* Many senders: an iteration is one message from each. */
  uint64_t ops = peers[0].ntx > 0 ? (uint64_t)peers[0].ntx : 1;
  bench_run(b, &(bench_case_t){name, peers[0].big ? BIG : MSG, ops, im, n});
  for (size_t i = 0; i < n; i++)
    peer_close(&peers[i]);
}

static int ipc_run(bench_ctx_t *b) {
  owner = getpid();
  static bool registered;
  if (!registered && atexit(unlink_made) == 0)
    registered = true;
  /* A peer that died shows as an error of the next read, not a signal. */
  void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
  /* Each case pins its processes at set-up (one receiver: the parent on
   * CPU 0, the child on CPU 1; otherwise nothing), rill and the peers
   * alike. The harness's default would pin the parent to the last CPU
   * around every run, onto the child's CPU: a spinning ping-pong then
   * waits for the scheduler (54 us one way, both sides alike). */
  bench_set_pin(b, BENCH_PIN_OWN);

  if (bench_ncpu() < 2)
    bench_note(b, "one CPU: sender and receiver take turns on it");
  else
    bench_note(b, "1:1 cases: the sender on CPU 0, the receiving process on CPU 1");
  bench_note(b,
             "rill routes: %u slots of %u bytes (a 64-byte message and the %u-byte slot "
             "header), policy block",
             SLOTS, SLOT, RILL_IPC_SLOT_HDR);
  bench_note(b, "lat_64_spin, lat_64_block: ping-pong between two processes, each sample the "
                "round trip halved, like against like: lat_64_spin, both ends busy-poll "
                "(rill_spin spins up to 50 us before parking; unix_stream_spin: recv with "
                "MSG_DONTWAIT in a loop, as SO_BUSY_POLL does not apply to Unix sockets); "
                "lat_64_block, both ends sleep in the kernel (rill_park: the futex at once; the "
                "peers block in read/recv; zmq_pair: PAIR over ipc://)");
  bench_note(b,
             "lat_64_load: one-way delay of each message (stamped when the sender hands it over, "
             "read when the receiver holds it) while the sender hands over one every %u us: "
             "the price of each way of sending; unix_stream_buf%uk holds a message until its "
             "%u KiB buffer is full (%u messages, ~%u ms at this pace); unix_seqpkt_mmsg%u until "
             "its batch of %u is (~%u us), as rill_park_batch%u does",
             PACE_NS / 1000, WBUF >> 10, WBUF >> 10, WBUF / MSG, WBUF / MSG * PACE_NS / 1000000,
             BATCH, BATCH, BATCH * PACE_NS / 1000, BATCH);
  bench_note(
      b,
      "thr_64: messages counted at the receiving process; *_permsg: one write/send per message "
      "(a sender that publishes messages one at a time, read 64 KiB at a time by a stream "
      "reader, one recv a message by a datagram one); unix_stream_buf%uk: a user-space buffered "
      "writer, one write per %u KiB (flushed when full and at the end of the run), read 64 KiB "
      "at a time, the messages walked in the buffer; unix_seqpkt_mmsg%u (SOCK_SEQPACKET), "
      "unix_dgram_mmsg%u (SOCK_DGRAM, the receive queue capped at %d datagrams by "
      "net.unix.max_dgram_qlen): sendmmsg of %u messages, recvmmsg of up to %u (MSG_WAITFORONE); "
      "rill_spin_batch%u, rill_park_batch%u: the route's send_batch of %u held messages, "
      "recv_batch of up to %u (the first waited for, the rest what is published), read in "
      "place; batched rows trade latency for throughput (lat_64_load); zmq %d.%d.%d PUSH/PULL "
      "over ipc://, HWM %d",
      WBUF >> 10, WBUF >> 10, BATCH, BATCH, dgram_qlen(), BATCH, BATCH, BATCH, BATCH, BATCH, BATCH,
      ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH, ZMQ_HWM);
  bench_note(b,
             "thr_64_4rx: ns per message sent, each delivered to 4 receiving processes "
             "(unix_stream_permsg and pipe_permsg: one write to each of 4; unix_stream_buf%uk: "
             "the buffer written to each of 4; rill_park_batch%u: one send_batch of %u for all "
             "4); zmq absent (PUB/SUB drops what a slow subscriber cannot take, so it is not the "
             "same service)",
             WBUF >> 10, BATCH, BATCH);
  bench_note(b,
             "thr_64k, thr_64k_4rx: 64 KiB messages, every receiver reads every byte (sums all "
             "8192 words) and checks the number in the first and last 8; rill through the "
             "route's chunk pool (%u chunks), read in place; unix_stream and pipe: one 64 KiB "
             "write per message and receiver, read 64 KiB at a time; GB/s is what one receiver "
             "gets. thr_64k_pageword: the same but each receiver reads one word a 4 KiB page "
             "(touches every page, not every byte): what a receiver that looks at a part of "
             "the message pays",
             CHUNKS);
  bench_note(b,
             "rill channels: %u slots of %u bytes, policy block, at most %d senders and %d "
             "receivers; nothing pinned in the chan cases (three processes)",
             SLOTS, SLOT, MAX_TX, MAX_RX);
  bench_note(b,
             "chan_64: 2 sender processes into 1 broadcast channel, 1 receiving process; ns "
             "per message received (2N), from the first sender's start to the receiver "
             "holding all; unix_seqpkt, unix_dgram: both writers share one end of one "
             "SOCK_SEQPACKET / SOCK_DGRAM socket pair, one send per message; zmq: 2 PUSH "
             "connected to 1 PULL over ipc://, HWM %d",
             ZMQ_HWM);
  bench_note(b,
             "chan_64_queue: the parent sends N messages into a work queue, 2 receiving "
             "processes take them, each message to one; ns per message sent, until both "
             "have stopped (a stop message each after the N); unix_seqpkt, unix_dgram: both "
             "readers recv from one shared socket end (the kernel gives each datagram to "
             "one); zmq: PUSH to 2 PULL, round-robin, HWM %d",
             ZMQ_HWM);

  peer_t lat_spin[] = {
      {.impl = "rill_spin", .kind = K_RILL, .spin = true, .lat = true, .nrx = 1},
      {.impl = "unix_stream_spin", .kind = K_UNIX, .spin = true, .lat = true, .nrx = 1},
  };
  peer_t lat_block[] = {
      {.impl = "rill_park", .kind = K_RILL, .lat = true, .nrx = 1},
      {.impl = "unix_stream_block", .kind = K_UNIX, .lat = true, .nrx = 1},
      {.impl = "unix_seqpkt_block", .kind = K_SEQ, .lat = true, .nrx = 1},
      {.impl = "pipe_block", .kind = K_PIPE, .lat = true, .nrx = 1},
      {.impl = "zmq_pair", .kind = K_ZMQ, .lat = true, .nrx = 1},
  };
  peer_t lat_load[] = {
      /* rill_park first: the peers' ratios are to the receiver that sleeps as theirs do. */
      {.impl = "rill_park", .kind = K_RILL, .delay = true, .nrx = 1},
      {.impl = "rill_spin", .kind = K_RILL, .spin = true, .delay = true, .nrx = 1},
      {.impl = "rill_park_batch64", .kind = K_RILL, .rbatch = true, .delay = true, .nrx = 1},
      {.impl = "unix_stream_permsg", .kind = K_UNIX, .delay = true, .nrx = 1},
      {.impl = "unix_stream_buf64k", .kind = K_UNIX, .wbuf = true, .delay = true, .nrx = 1},
      {.impl = "unix_seqpkt_mmsg64", .kind = K_SEQ, .mmsg = true, .delay = true, .nrx = 1},
  };
  peer_t thr[] = {
      {.impl = "rill_spin", .kind = K_RILL, .spin = true, .nrx = 1},
      {.impl = "rill_park", .kind = K_RILL, .nrx = 1},
      {.impl = "rill_spin_batch64", .kind = K_RILL, .spin = true, .rbatch = true, .nrx = 1},
      {.impl = "rill_park_batch64", .kind = K_RILL, .rbatch = true, .nrx = 1},
      {.impl = "unix_stream_permsg", .kind = K_UNIX, .nrx = 1},
      {.impl = "unix_stream_buf64k", .kind = K_UNIX, .wbuf = true, .nrx = 1},
      {.impl = "unix_seqpkt_permsg", .kind = K_SEQ, .nrx = 1},
      {.impl = "unix_seqpkt_mmsg64", .kind = K_SEQ, .mmsg = true, .nrx = 1},
      {.impl = "unix_dgram_mmsg64", .kind = K_DGRAM, .mmsg = true, .nrx = 1},
      {.impl = "pipe_permsg", .kind = K_PIPE, .nrx = 1},
      {.impl = "zmq_pushpull", .kind = K_ZMQ, .nrx = 1},
  };
  peer_t thr4[] = {
      {.impl = "rill_park", .kind = K_RILL, .nrx = 4},
      {.impl = "rill_spin", .kind = K_RILL, .spin = true, .nrx = 4},
      {.impl = "rill_park_batch64", .kind = K_RILL, .rbatch = true, .nrx = 4},
      {.impl = "unix_stream_permsg", .kind = K_UNIX, .nrx = 4},
      {.impl = "unix_stream_buf64k", .kind = K_UNIX, .wbuf = true, .nrx = 4},
      {.impl = "pipe_permsg", .kind = K_PIPE, .nrx = 4},
  };
  run_case(b, "lat_64_spin", lat_spin, sizeof lat_spin / sizeof lat_spin[0], true);
  run_case(b, "lat_64_block", lat_block, sizeof lat_block / sizeof lat_block[0], true);
  run_case(b, "lat_64_load", lat_load, sizeof lat_load / sizeof lat_load[0], true);
  run_case(b, "thr_64", thr, sizeof thr / sizeof thr[0], false);
  run_case(b, "thr_64_4rx", thr4, sizeof thr4 / sizeof thr4[0], false);
  peer_t thrk[] = {
      {.impl = "rill_spin", .kind = K_RILL, .spin = true, .big = true, .readall = true, .nrx = 1},
      {.impl = "rill_park", .kind = K_RILL, .big = true, .readall = true, .nrx = 1},
      {.impl = "unix_stream", .kind = K_UNIX, .big = true, .readall = true, .nrx = 1},
      {.impl = "pipe", .kind = K_PIPE, .big = true, .readall = true, .nrx = 1},
  };
  peer_t thrk_page[] = {
      {.impl = "rill_spin", .kind = K_RILL, .spin = true, .big = true, .nrx = 1},
      {.impl = "rill_park", .kind = K_RILL, .big = true, .nrx = 1},
      {.impl = "unix_stream", .kind = K_UNIX, .big = true, .nrx = 1},
      {.impl = "pipe", .kind = K_PIPE, .big = true, .nrx = 1},
  };
  peer_t thrk4[] = {
      {.impl = "rill_park", .kind = K_RILL, .big = true, .readall = true, .nrx = 4},
      {.impl = "rill_spin", .kind = K_RILL, .spin = true, .big = true, .readall = true, .nrx = 4},
      {.impl = "unix_stream", .kind = K_UNIX, .big = true, .readall = true, .nrx = 4},
      {.impl = "pipe", .kind = K_PIPE, .big = true, .readall = true, .nrx = 4},
  };
  run_case(b, "thr_64k", thrk, sizeof thrk / sizeof thrk[0], false);
  run_case(b, "thr_64k_pageword", thrk_page, sizeof thrk_page / sizeof thrk_page[0], false);
  run_case(b, "thr_64k_4rx", thrk4, sizeof thrk4 / sizeof thrk4[0], false);
  peer_t chan[] = {
      {.impl = "rill_park", .kind = K_CHAN, .nrx = 1, .ntx = 2},
      {.impl = "rill_spin", .kind = K_CHAN, .spin = true, .nrx = 1, .ntx = 2},
      {.impl = "unix_seqpkt", .kind = K_SEQ, .nrx = 1, .ntx = 2},
      {.impl = "unix_dgram", .kind = K_DGRAM, .nrx = 1, .ntx = 2},
      {.impl = "zmq_pushpull", .kind = K_ZMQ, .nrx = 1, .ntx = 2},
  };
  peer_t chanq[] = {
      {.impl = "rill_park", .kind = K_CHAN, .queue = true, .nrx = 2},
      {.impl = "rill_spin", .kind = K_CHAN, .spin = true, .queue = true, .nrx = 2},
      {.impl = "unix_seqpkt", .kind = K_SEQ, .queue = true, .nrx = 2},
      {.impl = "unix_dgram", .kind = K_DGRAM, .queue = true, .nrx = 2},
      {.impl = "zmq_pushpull", .kind = K_ZMQ, .queue = true, .nrx = 2},
  };
  run_case(b, "chan_64", chan, sizeof chan / sizeof chan[0], false);
  run_case(b, "chan_64_queue", chanq, sizeof chanq / sizeof chanq[0], false);
  bench_unpin();

  if (bench_want(b, "lat_64_spin")) {
    bench_goal(b, "one-way 64 B, spin, p50", bench_result_q(b, "lat_64_spin", MSG, "rill_spin", 50),
               false, 200, " ns");
    bench_goal(b, "one-way 64 B, spin, p99", bench_result_q(b, "lat_64_spin", MSG, "rill_spin", 99),
               false, 1000, " ns");
    bench_goal(b, "64 B spin latency vs a busy-polling Unix stream",
               bench_ratio(b, "lat_64_spin", MSG, "unix_stream_spin", "rill_spin"), true, 20, "x");
  }
  if (bench_want(b, "thr_64")) {
    bench_goal(b, "64 B messages, 1 sender, 1 receiver",
               bench_rate_m(b, "thr_64", MSG, "rill_spin"), true, 20, "M/s");
    /* Batched against batched, and a receiver that sleeps when there is
     * nothing, as the stream's reader does in read(). */
    bench_goal(b, "64 B messages, batched, vs a buffered Unix stream",
               bench_ratio(b, "thr_64", MSG, "unix_stream_buf64k", "rill_park_batch64"), true, 3,
               "x");
  }
  if (bench_want(b, "thr_64_4rx"))
    bench_goal(b, "64 B messages, 1 sender, 4 receivers",
               bench_rate_m(b, "thr_64_4rx", MSG, "rill_park"), true, 20, "M/s");
  /* GB/s a receiver gets: 65536 bytes per message over ns per message. */
  if (bench_want(b, "thr_64k")) {
    bench_goal(b, "64 KiB via the chunk pool, 1 receiver",
               BIG / bench_result(b, "thr_64k", BIG, "rill_spin"), true, 8, " GB/s");
    bench_goal(b, "64 KiB, every byte read, vs Unix stream socket",
               bench_ratio(b, "thr_64k", BIG, "unix_stream", "rill_spin"), true, 1, "x");
  }
  if (bench_want(b, "thr_64k_4rx"))
    bench_goal(b, "64 KiB via the chunk pool, 4 receivers (each)",
               BIG / bench_result(b, "thr_64k_4rx", BIG, "rill_park"), true, 8, " GB/s");

  unlink_made();
  signal(SIGPIPE, old_pipe);
  return 0;
}

const bench_suite_t bench_suite_ipc = {
    .name = "ipc",
    .about = "shared-memory routes between two processes: 64 B one-way latency and throughput "
             "(1 and 4 receivers), 64 KiB throughput through the chunk pool; channels: 2 senders "
             "to 1 receiver and a 2-receiver work queue; vs Unix sockets, a pipe and ZeroMQ "
             "ipc://",
    .run = ipc_run,
};
