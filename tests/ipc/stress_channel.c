/*
 * Channels between real processes (fork): three sender processes and three
 * receiver processes, broadcast and queue, with senders and receivers
 * SIGKILLed at random moments and replaced. What the survivors check:
 * broadcast: each receiver attached from the start gets every committed
 * message of every sender, each sender's in order, none twice; queue:
 * every committed message is received at least once over all receivers,
 * and exactly once but for the one the killed receiver held when it died,
 * handed out again (RILL_IPC_REDELIVERED) to another. Claims of killed
 * senders are skipped (RILL_ELAGGED), never wait for. Then the same
 * between threads of one process, where TSan sees the orderings: there
 * the receivers release every other message early, and a receiver process
 * that died holding a message leaves an orphan for the threads to adopt.
 * The process cases run again with batches (send_batch of 1..8,
 * recv_batch of up to 8). Plain C so that it runs under TSan (see
 * tests/stress.h).
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rill/ipc.h"
#include "stress.h"

#define COUNT    (150000u / SCALE) /* messages a sender that is not killed sends */
#define SENDERS  3
#define RECVS    3
#define KILLS    3 /* senders killed (and replaced) a run */
#define MAXGEN   (SENDERS + KILLS)
#define PATIENCE 10000000000ull

static char chan[64];
static int batched; /* send_batch and recv_batch of up to BATCH (the children inherit it) */
#define BATCH 8u
static int ready[2];

/* Shared between the processes (MAP_SHARED before the forks). */
struct tally {
  uint32_t sent[MAXGEN];             /* messages of each sender known committed */
  uint32_t stop;                     /* set once every sender is done */
  uint32_t lost;                     /* RILL_ELAGGED reports, all receivers */
  uint32_t count[RECVS + 2][MAXGEN]; /* broadcast: messages of each sender a receiver got */
  uint32_t redelivered;              /* queue: receptions flagged RILL_IPC_REDELIVERED */
  uint8_t got[MAXGEN][COUNT + 1];    /* queue: receptions of each message */
  uint8_t again[MAXGEN][COUNT + 1];  /* queue: of which flagged RILL_IPC_REDELIVERED */
};
static struct tally *T;

#define POOLMAX 4096u /* the largest message: the pool's last class */

/* Sender gen's message i: one in eight goes through the pool (over the
 * slot payload max). */
static uint32_t fill(uint8_t *buf, uint32_t gen, uint32_t i, uint32_t max) {
  uint32_t h = gen * 131u + i * 7u;
  uint32_t len =
      (i ^ gen) % 8 == 5 ? max + 1 + (h * 2654435761u >> 7) % (POOLMAX - max) : 8 + h % (max - 7);
  memcpy(buf, &gen, 4);
  memcpy(buf + 4, &i, 4);
  for (uint32_t k = 8; k < len; k++)
    buf[k] = (uint8_t)(gen * 17u + i * 31u + k);
  return len;
}

static int content_ok(const rill_ipc_msg_t *m, uint32_t *gen, uint32_t *i) {
  uint8_t want[POOLMAX];
  if (m->len < 8)
    return 0;
  memcpy(gen, m->data, 4);
  memcpy(i, m->data + 4, 4);
  if (*gen >= MAXGEN || *i > COUNT)
    return 0;
  uint32_t len = fill(want, *gen, *i, 128 - RILL_IPC_SLOT_HDR);
  return m->len == len && memcmp(m->data, want, len) == 0;
}

static uint64_t rnd_state;
static uint64_t rnd(void) {
  rnd_state ^= rnd_state << 13;
  rnd_state ^= rnd_state >> 7;
  rnd_state ^= rnd_state << 17;
  return rnd_state;
}

static void sleep_us(uint64_t us) {
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static pid_t fork_child(void) {
  fflush(stdout);
  fflush(stderr);
  return fork();
}

static rill_ipc_chan_opts_t opts(rill_ipc_delivery_t d) {
  return (rill_ipc_chan_opts_t){.slots = 256,
                                .slot_size = 128,
                                .max_senders = SENDERS + 1,
                                .max_receivers = RECVS + 1,
                                .delivery = d,
                                .pool = {{512, 8}, {POOLMAX, 32}}};
}

static rill_ipc_chan_t *open_retry(rill_ipc_delivery_t d, rill_ipc_role_t role) {
  rill_ipc_chan_opts_t o = opts(d);
  rill_ipc_chan_t *ch = NULL;
  int rc;
  for (int tries = 0; (rc = rill_ipc_chan_open(&ch, chan, &o, role)) != 0; tries++) {
    if (tries > 5000) {
      fprintf(stderr, "open: %s (%s)\n", rill_strerror(rc), rill_errmsg());
      _exit(20);
    }
    sleep_us(1000); /* a dead holder's place, reaped at the next try */
  }
  return ch;
}

/* A receiver process: slot q of the tally; late: joined after the
 * senders started (broadcast: each sender's first message may be any). */
static void receiver(rill_ipc_delivery_t d, int q, int late) {
  rill_ipc_chan_t *r = open_retry(d, RILL_IPC_RECEIVER);
  if (write(ready[1], "r", 1) != 1)
    _exit(17);
  int64_t last[MAXGEN];
  for (int g = 0; g < MAXGEN; g++)
    last[g] = -1;
  uint64_t idle = 0;
  rill_ipc_msg_t ms[BATCH];
  for (uint32_t got = 0, j = 0;;) {
    if (j == got) {
      uint64_t lost = 0;
      got = j = 0;
      uint32_t n = 1;
      /* Acquire: pairs with the parent's release; read before the call, so
       * a timeout after it means everything committed was taken. */
      int stop = __atomic_load_n(&T->stop, __ATOMIC_ACQUIRE);
      int rc = batched ? rill_ipc_chan_recv_batch(r, ms, BATCH, &n, 100000000ull, &lost)
                       : rill_ipc_chan_recv(r, ms, 100000000ull, &lost);
      if (rc == RILL_ETIMEDOUT && !stop && ++idle < PATIENCE / 100000000ull)
        continue;
      idle = 0;
      if (rc == RILL_ELAGGED) {
        __atomic_fetch_add(&T->lost, (uint32_t)lost, __ATOMIC_RELAXED);
        continue;
      }
      if (rc == RILL_ETIMEDOUT && stop)
        break;
      if (rc || n < 1 || n > BATCH) {
        fprintf(stderr, "receiver %d: recv: %s (%s), %u\n", q, rill_strerror(rc), rill_errmsg(), n);
        _exit(11);
      }
      got = n;
    }
    const rill_ipc_msg_t m = ms[j++];
    uint32_t gen, i;
    if (!content_ok(&m, &gen, &i)) {
      fprintf(stderr, "receiver %d: message %llu: bad content\n", q, (unsigned long long)m.seq);
      _exit(12);
    }
    if (d == RILL_IPC_QUEUE) {
      __atomic_fetch_add(&T->got[gen][i], 1, __ATOMIC_RELAXED);
      if (m.flags & RILL_IPC_REDELIVERED) {
        /* Out of order by nature: another receiver took it first. */
        __atomic_fetch_add(&T->again[gen][i], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&T->redelivered, 1, __ATOMIC_RELAXED);
        continue;
      }
      if ((int64_t)i <= last[gen]) {
        fprintf(stderr, "receiver %d: (%u, %u) after (%u, %lld)\n", q, gen, i, gen,
                (long long)last[gen]);
        _exit(13);
      }
    } else {
      int64_t want = last[gen] + 1;
      if ((int64_t)i != want && !(late && last[gen] < 0)) {
        fprintf(stderr, "receiver %d: (%u, %u), expected %lld\n", q, gen, i, (long long)want);
        _exit(14);
      }
      T->count[q][gen]++;
    }
    last[gen] = i;
    if (d == RILL_IPC_QUEUE && q == 0)
      sleep_us(50); /* the receiver to be killed dawdles: it dies holding one */
  }
  rill_ipc_chan_close(r);
  _exit(0);
}

/* Every third message written in place (reserve for the most it could be,
 * commit its length), the others copied by send. */
static int put(rill_ipc_chan_t *s, uint32_t gen, uint32_t i, uint8_t *buf) {
  if (i % 3 == 0) {
    void *room;
    int rc = rill_ipc_chan_reserve(s, POOLMAX, PATIENCE, &room);
    return rc ? rc : rill_ipc_chan_commit(s, fill(room, gen, i, rill_ipc_chan_max_payload(s)));
  }
  uint32_t len = fill(buf, gen, i, rill_ipc_chan_max_payload(s));
  return rill_ipc_chan_send(s, buf, len, PATIENCE);
}

static void sender(rill_ipc_delivery_t d, uint32_t gen, uint32_t count) {
  rill_ipc_chan_t *s = open_retry(d, RILL_IPC_SENDER);
  uint8_t buf[POOLMAX];
  if (batched) {
    static uint8_t bufs[BATCH][POOLMAX];
    rill_iov_t v[BATCH];
    for (uint32_t i = 0; i < count;) {
      uint32_t n = 1 + (uint32_t)(rnd() % BATCH), sent = 0;
      if (n > count - i)
        n = count - i;
      for (uint32_t k = 0; k < n; k++)
        v[k] = (rill_iov_t){bufs[k], fill(bufs[k], gen, i + k, rill_ipc_chan_max_payload(s))};
      int rc = rill_ipc_chan_send_batch(s, v, n, PATIENCE, &sent);
      if (rc || sent != n) {
        fprintf(stderr, "sender %u: send_batch at %u: %u of %u, %s (%s)\n", gen, i, sent, n,
                rill_strerror(rc), rill_errmsg());
        _exit(21);
      }
      i += n;
      /* Relaxed: as below; a sender killed in a batch may have committed
       * up to BATCH messages past what this says. */
      __atomic_store_n(&T->sent[gen], i, __ATOMIC_RELAXED);
    }
    rill_ipc_chan_close(s);
    _exit(0);
  }
  for (uint32_t i = 0; i < count; i++) {
    int rc = put(s, gen, i, buf);
    if (rc) {
      fprintf(stderr, "sender %u: send %u: %s (%s)\n", gen, i, rill_strerror(rc), rill_errmsg());
      _exit(21);
    }
    /* Relaxed: read by the parent after this process is gone. */
    __atomic_store_n(&T->sent[gen], i + 1, __ATOMIC_RELAXED);
  }
  rill_ipc_chan_close(s);
  _exit(0);
}

/* A sender that claims a message by the protocol (its place's pending,
 * then the CAS of claim, on the mapped segment) and is SIGKILLed before it
 * commits: the hole every receiver must get past. */
static void crasher(rill_ipc_delivery_t d) {
  rill_ipc_chan_t *s = open_retry(d, RILL_IPC_SENDER);
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/rill.%s", chan);
  int fd = open(path, O_RDWR);
  if (fd < 0)
    _exit(30);
  rill_ipc_chan_opts_t o = opts(d);
  size_t size = 4096 + 4096 + (size_t)o.slots * o.slot_size;
  uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED)
    _exit(31);
  uint64_t *claim = (uint64_t *)(void *)(base + 64), *place = NULL;
  for (uint32_t i = 0; i < o.max_senders; i++) {
    uint64_t *p = (uint64_t *)(void *)(base + 4096 + 64 * i);
    if ((uint32_t)__atomic_load_n(p, __ATOMIC_ACQUIRE) == (uint32_t)getpid())
      place = p;
  }
  if (!place)
    _exit(32);
  /* The sender's room rule (docs/FORMATS.md, "IPC channel segment"),
   * checked against the claim we then CAS from. */
  uint64_t *consumed = (uint64_t *)(void *)(base + 128);
  for (;;) {
    uint64_t c = __atomic_load_n(claim, __ATOMIC_ACQUIRE);
    uint64_t min = c;
    if (d == RILL_IPC_QUEUE && __atomic_load_n(consumed, __ATOMIC_ACQUIRE) < min)
      min = __atomic_load_n(consumed, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < o.max_receivers; i++) {
      uint64_t *p = (uint64_t *)(void *)(base + 4096 + 64 * (o.max_senders + i));
      if ((__atomic_load_n(p, __ATOMIC_ACQUIRE) >> 62) != 2)
        continue;
      uint64_t v = __atomic_load_n(&p[2], __ATOMIC_ACQUIRE);
      if (v < min)
        min = v;
    }
    if (c - min < o.slots / 2) {
      /* Relaxed, then release on the CAS: as rill_ipc_chan_send. */
      __atomic_store_n(&place[2], c + 1, __ATOMIC_RELAXED);
      if (__atomic_compare_exchange_n(claim, &c, c + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        break;
    }
    sleep_us(100);
  }
  (void)s;
  kill(getpid(), SIGKILL);
  _exit(33);
}

static pid_t spawn_receiver(rill_ipc_delivery_t d, int q, int late) {
  pid_t pid = fork_child();
  CHECK(pid >= 0, "fork");
  if (pid == 0)
    receiver(d, q, late);
  return pid;
}

static pid_t spawn_sender(rill_ipc_delivery_t d, uint32_t gen, uint32_t count) {
  pid_t pid = fork_child();
  CHECK(pid >= 0, "fork");
  if (pid == 0)
    sender(d, gen, count);
  return pid;
}

static void wait_attached(uint32_t n) {
  for (uint32_t got = 0; got < n;) {
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    CHECK(poll(&p, 1, 10000) == 1, "%u receivers did not attach", n - got);
    char c;
    CHECK(read(ready[0], &c, 1) == 1, "read");
    got++;
  }
}

static int status_of(pid_t pid) {
  int st;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
  return st;
}

static void reap_ok(pid_t pid, const char *who) {
  int st = status_of(pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s %d: status 0x%x", who, (int)pid, st);
}

/* Killed, or finished before the kill came. */
static void reap_killed(pid_t pid, const char *who) {
  int st = status_of(pid);
  CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) || (WIFEXITED(st) && WEXITSTATUS(st) == 0),
        "%s %d: status 0x%x", who, (int)pid, st);
}

static void run(rill_ipc_delivery_t d, const char *tag) {
  snprintf(chan, sizeof chan, "stress.%d.%s", (int)getpid(), tag);
  rill_ipc_chan_unlink(chan);
  memset(T, 0, sizeof *T);
  rill_ipc_chan_opts_t o = opts(d);
  rill_ipc_chan_t *c = NULL;
  CHECK(rill_ipc_chan_open(&c, chan, &o, RILL_IPC_SENDER) == 0, "create: %s", rill_errmsg());
  rill_ipc_chan_close(c);
  pid_t rx[RECVS + 1];
  for (int q = 0; q < RECVS; q++)
    rx[q] = spawn_receiver(d, q, 0);
  wait_attached(RECVS);
  pid_t tx[MAXGEN];
  for (uint32_t g = 0; g < SENDERS; g++)
    tx[g] = spawn_sender(d, g, COUNT);
  /* Kill a sender (replaced by a new one) KILLS times, and receiver 0
   * once, replaced by a late one. */
  int killed_rx = 0;
  uint32_t live[SENDERS] = {0, 1, 2};
  for (uint32_t k = 0; k < KILLS; k++) {
    sleep_us(3000 + rnd() % 30000);
    uint32_t which = (uint32_t)(rnd() % SENDERS);
    kill(tx[live[which]], SIGKILL);
    uint32_t gen = SENDERS + k;
    tx[gen] = spawn_sender(d, gen, COUNT);
    live[which] = gen;
    if (k == 0) {
      pid_t cr = fork_child();
      CHECK(cr >= 0, "fork");
      if (cr == 0)
        crasher(d);
      int st = status_of(cr);
      CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "crasher: status 0x%x", st);
    }
    if (k == 1) {
      kill(rx[0], SIGKILL);
      killed_rx = 1;
      reap_killed(rx[0], "killed receiver");
      rx[RECVS] = spawn_receiver(d, RECVS, 1);
      wait_attached(1);
    }
  }
  int killed[MAXGEN] = {0};
  for (uint32_t g = 0; g < MAXGEN; g++) {
    bool is_live = false;
    for (int w = 0; w < SENDERS; w++)
      is_live |= live[w] == g;
    if (is_live) {
      reap_ok(tx[g], "sender");
    } else {
      reap_killed(tx[g], "killed sender");
      killed[g] = 1;
    }
  }
  /* Release: pairs with the receivers' acquire load; every sender is done. */
  __atomic_store_n(&T->stop, 1, __ATOMIC_RELEASE);
  for (int q = 1; q <= RECVS; q++)
    reap_ok(rx[q], "receiver");
  rill_ipc_chan_info_t info;
  CHECK(rill_ipc_chan_info(chan, &info) == 0, "info: %s", rill_errmsg());
  CHECK(info.aborted >= 1 && info.aborted <= KILLS + 1, "%llu aborted, %d senders killed",
        (unsigned long long)info.aborted, KILLS + 1);
  if (d == RILL_IPC_QUEUE) {
    /* A hole the killed receiver had taken is reported by its adopter. */
    CHECK(T->lost <= info.aborted + (uint32_t)killed_rx &&
              T->lost + (uint32_t)killed_rx >= info.aborted,
          "%u reported lost, %llu aborted", T->lost, (unsigned long long)info.aborted);
    CHECK(info.orphaned == 0, "%u orphans left", info.orphaned);
    CHECK(T->redelivered <= info.redelivered &&
              info.redelivered <= T->redelivered + (uint64_t)killed_rx &&
              info.redelivered <= (uint64_t)killed_rx,
          "%u received redelivered, %llu redelivered, %d receivers killed", T->redelivered,
          (unsigned long long)info.redelivered, killed_rx);
  } else
    CHECK(T->lost >= info.aborted, "%u reported lost, %llu aborted", T->lost,
          (unsigned long long)info.aborted);
  uint64_t total = 0;
  for (uint32_t g = 0; g < MAXGEN; g++) {
    total += T->sent[g];
    CHECK(killed[g] || T->sent[g] == COUNT, "sender %u sent %u", g, T->sent[g]);
  }
  if (d == RILL_IPC_QUEUE) {
    /* At least once; more only by a redelivery, of what the killed
     * receiver held (it may have counted it before it died). */
    uint32_t missing = 0, extra = 0;
    for (uint32_t g = 0; g < MAXGEN; g++)
      for (uint32_t i = 0; i <= COUNT; i++) {
        CHECK(T->got[g][i] <= 1 + T->again[g][i], "(%u, %u) received %u times, %u redelivered", g,
              i, T->got[g][i], T->again[g][i]);
        if (T->got[g][i] > 1)
          extra += T->got[g][i] - 1u;
        if (i < T->sent[g] && T->got[g][i] == 0)
          missing++;
      }
    CHECK(missing == 0, "%u committed messages never received", missing);
    CHECK(extra <= (uint32_t)killed_rx, "%u receptions beyond one", extra);
  } else {
    for (int q = 1; q < RECVS; q++)
      for (uint32_t g = 0; g < MAXGEN; g++)
        CHECK(T->count[q][g] == T->sent[g] ||
                  (killed[g] && T->count[q][g] > T->sent[g] &&
                   T->count[q][g] <= T->sent[g] + (batched ? BATCH : 1)),
              "receiver %d got %u of sender %u's, %u committed", q, T->count[q][g], g, T->sent[g]);
  }
  printf("     %s: %llu messages committed, %u claims of killed senders skipped, %llu "
         "redelivered\n",
         tag, (unsigned long long)total, T->lost, (unsigned long long)info.redelivered);
  rill_ipc_chan_unlink(chan);
}

static void broadcast_procs(void) { run(RILL_IPC_BROADCAST, "bcast"); }
static void queue_procs(void) { run(RILL_IPC_QUEUE, "queue"); }

static void broadcast_procs_batches(void) {
  batched = 1;
  run(RILL_IPC_BROADCAST, "bcast-batches");
  batched = 0;
}

static void queue_procs_batches(void) {
  batched = 1;
  run(RILL_IPC_QUEUE, "queue-batches");
  batched = 0;
}

/* ---- threads ------------------------------------------------------------------ */

struct thr {
  rill_ipc_delivery_t d;
  uint32_t gen;
  int q;
  int ok;
};

static void *thread_sender(void *arg) {
  struct thr *t = arg;
  rill_ipc_chan_opts_t o = opts(t->d);
  rill_ipc_chan_t *s = NULL;
  CHECK(rill_ipc_chan_open(&s, chan, &o, RILL_IPC_SENDER) == 0, "sender: %s", rill_errmsg());
  uint8_t buf[POOLMAX];
  for (uint32_t i = 0; i < COUNT / 4; i++) {
    int rc = put(s, t->gen, i, buf);
    CHECK(rc == 0, "send: %s (%s)", rill_strerror(rc), rill_errmsg());
  }
  rill_ipc_chan_close(s);
  __atomic_store_n(&t->ok, 2, __ATOMIC_RELEASE);
  return NULL;
}

static uint32_t senders_done;

/* Before the threads (no fork among them): a receiver process takes a
 * message (gen SENDERS, 0) and dies holding it, for the threads to reap and
 * adopt. */
static void plant_orphan(void) {
  rill_ipc_chan_opts_t o = opts(RILL_IPC_QUEUE);
  rill_ipc_chan_t *s = NULL;
  CHECK(rill_ipc_chan_open(&s, chan, &o, RILL_IPC_SENDER) == 0, "sender: %s", rill_errmsg());
  uint8_t buf[POOLMAX];
  uint32_t len = fill(buf, SENDERS, 0, rill_ipc_chan_max_payload(s));
  CHECK(rill_ipc_chan_send(s, buf, len, PATIENCE) == 0, "send: %s", rill_errmsg());
  rill_ipc_chan_close(s);
  pid_t pid = fork_child();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    rill_ipc_chan_t *r = NULL;
    rill_ipc_msg_t m;
    if (rill_ipc_chan_open(&r, chan, &o, RILL_IPC_RECEIVER) || rill_ipc_chan_recv(r, &m, 0, NULL))
      _exit(1);
    kill(getpid(), SIGKILL);
    _exit(2);
  }
  int st = status_of(pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "orphan maker: status 0x%x", st);
}

static void *thread_receiver(void *arg) {
  struct thr *t = arg;
  rill_ipc_chan_opts_t o = opts(t->d);
  rill_ipc_chan_t *r = NULL;
  CHECK(rill_ipc_chan_open(&r, chan, &o, RILL_IPC_RECEIVER) == 0, "receiver: %s", rill_errmsg());
  __atomic_store_n(&t->ok, 1, __ATOMIC_RELEASE);
  int64_t last[SENDERS] = {-1, -1, -1};
  uint64_t idle = 0;
  for (;;) {
    rill_ipc_msg_t m;
    int done = __atomic_load_n(&senders_done, __ATOMIC_ACQUIRE);
    int rc = rill_ipc_chan_recv(r, &m, 100000000ull, NULL);
    if (rc == RILL_ETIMEDOUT && !done && ++idle < PATIENCE / 100000000ull)
      continue;
    idle = 0;
    if (rc == RILL_ETIMEDOUT && done)
      break;
    CHECK(rc == 0, "recv: %s (%s)", rill_strerror(rc), rill_errmsg());
    uint32_t gen, i;
    CHECK(content_ok(&m, &gen, &i), "content");
    if (m.flags & RILL_IPC_REDELIVERED) {
      /* Only the message the dead receiver process held (threads()). */
      CHECK(t->d == RILL_IPC_QUEUE && gen == SENDERS && i == 0, "(%u, %u) redelivered", gen, i);
      __atomic_fetch_add(&T->got[gen][i], 1, __ATOMIC_RELAXED);
      continue;
    }
    CHECK(gen < SENDERS, "content");
    if (t->d == RILL_IPC_QUEUE) {
      CHECK((int64_t)i > last[gen], "order");
      __atomic_fetch_add(&T->got[gen][i], 1, __ATOMIC_RELAXED);
    } else {
      CHECK((int64_t)i == last[gen] + 1, "(%u, %u) after %lld", gen, i, (long long)last[gen]);
      T->count[t->q][gen]++;
    }
    last[gen] = i;
    /* Every other message finished with early: its slot may be reused
     * before our next recv. */
    if (i % 2)
      CHECK(rill_ipc_chan_release(r) == 0, "release: %s", rill_errmsg());
  }
  rill_ipc_chan_close(r);
  __atomic_store_n(&t->ok, 2, __ATOMIC_RELEASE);
  return NULL;
}

static void threads(rill_ipc_delivery_t d, const char *tag) {
  snprintf(chan, sizeof chan, "stress.%d.%s", (int)getpid(), tag);
  rill_ipc_chan_unlink(chan);
  memset(T, 0, sizeof *T);
  __atomic_store_n(&senders_done, 0, __ATOMIC_RELAXED);
  if (d == RILL_IPC_QUEUE)
    plant_orphan();
  struct thr rt[RECVS], st[SENDERS];
  pthread_t rth[RECVS], sth[SENDERS];
  for (int q = 0; q < RECVS; q++) {
    rt[q] = (struct thr){d, 0, q, 0};
    CHECK(pthread_create(&rth[q], NULL, thread_receiver, &rt[q]) == 0, "thread");
    while (__atomic_load_n(&rt[q].ok, __ATOMIC_ACQUIRE) == 0)
      sleep_us(100); /* the first creates the channel */
  }
  for (uint32_t g = 0; g < SENDERS; g++) {
    st[g] = (struct thr){d, g, 0, 0};
    CHECK(pthread_create(&sth[g], NULL, thread_sender, &st[g]) == 0, "thread");
  }
  for (int g = 0; g < SENDERS; g++)
    pthread_join(sth[g], NULL);
  /* Release: pairs with the receivers' acquire load. */
  __atomic_store_n(&senders_done, 1, __ATOMIC_RELEASE);
  for (int q = 0; q < RECVS; q++) {
    pthread_join(rth[q], NULL);
    CHECK(rt[q].ok == 2, "receiver thread %d", q);
  }
  for (uint32_t g = 0; g < SENDERS; g++)
    for (uint32_t i = 0; i < COUNT / 4; i++) {
      if (d == RILL_IPC_QUEUE)
        CHECK(T->got[g][i] == 1, "(%u, %u) received %u times", g, i, T->got[g][i]);
    }
  if (d == RILL_IPC_QUEUE) {
    CHECK(T->got[SENDERS][0] == 1, "the orphan received %u times", T->got[SENDERS][0]);
    rill_ipc_chan_info_t info;
    CHECK(rill_ipc_chan_info(chan, &info) == 0, "info: %s", rill_errmsg());
    CHECK(info.redelivered == 1 && info.orphaned == 0, "%llu redelivered, %u orphans",
          (unsigned long long)info.redelivered, info.orphaned);
  }
  if (d == RILL_IPC_BROADCAST)
    for (int q = 0; q < RECVS; q++)
      for (uint32_t g = 0; g < SENDERS; g++)
        CHECK(T->count[q][g] == COUNT / 4, "receiver %d: %u of sender %u", q, T->count[q][g], g);
  rill_ipc_chan_unlink(chan);
}

static void broadcast_threads(void) { threads(RILL_IPC_BROADCAST, "tbcast"); }
static void queue_threads(void) { threads(RILL_IPC_QUEUE, "tqueue"); }

static pid_t main_pid;

static void unlink_chan(void) {
  if (getpid() == main_pid && chan[0])
    rill_ipc_chan_unlink(chan);
}

int main(void) {
  main_pid = getpid();
  CHECK(pipe(ready) == 0, "pipe");
  T = mmap(NULL, sizeof *T, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(T != MAP_FAILED, "mmap");
  atexit(unlink_chan);
  rnd_state = (uint64_t)time(NULL) * 2654435761u + (uint64_t)getpid();
  if (!rnd_state)
    rnd_state = 1;
  printf("     seed %llu\n", (unsigned long long)rnd_state);
  static const stress_case_t cases[] = {
      {"chan_broadcast_3x3_sigkill", broadcast_procs},
      {"chan_queue_3x3_sigkill", queue_procs},
      {"chan_broadcast_3x3_sigkill_batches", broadcast_procs_batches},
      {"chan_queue_3x3_sigkill_batches", queue_procs_batches},
      {"chan_threads_broadcast_3x3", broadcast_threads},
      {"chan_threads_queue_3x3", queue_threads},
  };
  return stress_run(cases, (int)(sizeof cases / sizeof cases[0]));
}
