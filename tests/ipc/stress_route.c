/*
 * Routes between real processes (fork): one sender and three receivers
 * exchanging messages under BLOCK, each receiver checking order and
 * content; a receiver SIGKILLed at a random moment (the sender reaps it
 * and goes on, the others get everything, a restarted one receives at
 * once); senders SIGKILLed at random moments and replaced (the receivers
 * see every published message once, in order, then the new sender's);
 * and the same protocol between threads of one process, where TSan can
 * see it. One message in eight is large (over a slot's payload, up to
 * 8 KiB): it goes through the route's chunk pool, 16 chunks for 256 slots,
 * so chunks are reused far more often than slots and the pool's bound is
 * what the sender mostly waits for. The block and kill-the-senders cases
 * run again with batches (send_batch of 1..16, recv_batch of up to 16):
 * a sender killed between a run's marks and its head leaves several
 * published slots for the next to go on after. Plain C so that it runs
 * under TSan (see tests/stress.h).
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rill/ipc.h"
#include "stress.h"

#define N         (2000000u / SCALE)
#define RECEIVERS 3
#define END       0xffffffffu /* i of the message that ends a run */
#define PATIENCE  10000000000ull

static char route[64];
static int batched;  /* send_batch and recv_batch (the children inherit it) */
static int ready[2]; /* a receiver process writes a byte here once attached */
#define MAXMSG 8192u
/* Three size classes, few chunks each: messages spill into larger classes
 * when the receivers hold the smaller one's. */
static rill_ipc_route_opts_t opts = {.slots = 256,
                                     .slot_size = 128,
                                     .max_receivers = RECEIVERS,
                                     .pool = {{512, 4}, {2048, 4}, {MAXMSG, 8}}};

/* A message: its sender's generation, its number in that generation, then
 * bytes that follow from both; one in eight over the slot payload max. */
static uint32_t fill(uint8_t *buf, uint32_t gen, uint32_t i, uint32_t max) {
  uint32_t h = gen * 131u + i * 7u;
  uint32_t len =
      (i ^ gen) % 8 == 5 ? max + 1 + (h * 2654435761u >> 7) % (MAXMSG - max) : 8 + h % (max - 7);
  memcpy(buf, &gen, 4);
  memcpy(buf + 4, &i, 4);
  for (uint32_t k = 8; k < len; k++)
    buf[k] = (uint8_t)(gen * 17u + i * 31u + k);
  return len;
}

static int content_ok(const rill_ipc_msg_t *m, uint32_t *gen, uint32_t *i) {
  static _Thread_local uint8_t want[MAXMSG];
  if (m->len < 8)
    return 0;
  memcpy(gen, m->data, 4);
  memcpy(i, m->data + 4, 4);
  uint32_t len = fill(want, *gen, *i, opts.slot_size - RILL_IPC_SLOT_HDR);
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

/* ---- a receiver process --------------------------------------------------- */

/* Receives until the END message: every message the next seq, its content
 * whole, its (gen, i) after the last one's (the same sender's next, or a
 * later sender's first). Exits 0, or with a code saying what broke. With
 * want_gen0 the first message must be (0, 0) and the last generation's
 * count `count`. */
static void receive_until_end(int want_gen0, uint32_t count) {
  rill_ipc_route_t *r = NULL;
  for (int tries = 0; rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER) != 0; tries++) {
    if (tries > 5000)
      _exit(10);
    sleep_us(1000);
  }
  if (write(ready[1], "r", 1) != 1)
    _exit(17);
  uint64_t expect = 0;
  uint32_t last_gen = 0, last_i = 0;
  int first = 1;
  for (uint32_t got = 0, j = 0;; j++) {
    static rill_ipc_msg_t ms[16];
    if (j == got) {
      j = 0;
      got = 1;
      int rc = batched ? rill_ipc_route_recv_batch(r, ms, 16, &got, PATIENCE, NULL)
                       : rill_ipc_route_recv(r, ms, PATIENCE, NULL);
      if (rc || got < 1 || got > 16) {
        fprintf(stderr, "receiver %d: recv: %s (%s), %u\n", (int)getpid(), rill_strerror(rc),
                rill_errmsg(), got);
        _exit(11);
      }
    }
    const rill_ipc_msg_t m = ms[j];
    uint32_t gen, i;
    if (!content_ok(&m, &gen, &i)) {
      fprintf(stderr, "receiver %d: message %llu: bad content\n", (int)getpid(),
              (unsigned long long)m.seq);
      _exit(12);
    }
    if (first) {
      if (want_gen0 && (m.seq != 0 || gen != 0 || i != 0))
        _exit(13);
      first = 0;
    } else {
      if (m.seq != expect) {
        fprintf(stderr, "receiver %d: seq %llu, expected %llu\n", (int)getpid(),
                (unsigned long long)m.seq, (unsigned long long)expect);
        _exit(14);
      }
      int next = (gen == last_gen && i == last_i + 1) || (gen > last_gen && (i == 0 || i == END));
      if (i == END && gen == last_gen)
        next = 1;
      if (!next) {
        fprintf(stderr, "receiver %d: (%u, %u) after (%u, %u)\n", (int)getpid(), gen, i, last_gen,
                last_i);
        _exit(15);
      }
    }
    expect = m.seq + 1;
    if (i == END) {
      if (count && (gen != last_gen || last_i + 1 != count))
        _exit(16);
      break;
    }
    last_gen = gen;
    last_i = i;
  }
  rill_ipc_route_close(r);
  _exit(0);
}

/* What stdout holds must not be printed again by a child (TSan's _exit
 * flushes stdio). */
static pid_t fork_child(void) {
  fflush(stdout);
  fflush(stderr);
  return fork();
}

static pid_t spawn_receiver(int want_gen0, uint32_t count) {
  pid_t pid = fork_child();
  CHECK(pid >= 0, "fork");
  if (pid == 0)
    receive_until_end(want_gen0, count);
  return pid;
}

/* Waits for n receiver processes to say they are attached (info would
 * show a place taken a moment before its cursor is final). */
static void wait_attached(uint32_t n) {
  for (uint32_t got = 0; got < n;) {
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    CHECK(poll(&p, 1, 10000) == 1, "%u receivers did not attach", n - got);
    char c;
    CHECK(read(ready[0], &c, 1) == 1, "read");
    got++;
  }
}

static void reap_ok(pid_t pid, const char *who) {
  int st;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid %s", who);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s %d: status 0x%x", who, (int)pid, st);
}

/* A process we SIGKILLed must have died of it, not of a failed check
 * before. */
static void reap_killed(pid_t pid, const char *who) {
  int st;
  CHECK(waitpid(pid, &st, 0) == pid, "waitpid %s", who);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s %d: status 0x%x", who, (int)pid, st);
}

/* Every third message is written in place (reserve for the most it could
 * be, commit its length), the others copied by send. */
static void send_one(rill_ipc_route_t *s, uint32_t gen, uint32_t i) {
  static _Thread_local uint8_t buf[MAXMSG];
  uint32_t len;
  int rc;
  if (i % 3 == 0 && i != END) {
    void *room;
    rc = rill_ipc_route_reserve(s, MAXMSG, PATIENCE, &room);
    CHECK(rc == 0, "reserve (%u, %u): %s (%s)", gen, i, rill_strerror(rc), rill_errmsg());
    len = fill(room, gen, i, rill_ipc_route_max_payload(s));
    rc = rill_ipc_route_commit(s, len);
  } else {
    len = fill(buf, gen, i, rill_ipc_route_max_payload(s));
    rc = rill_ipc_route_send(s, buf, len, PATIENCE);
  }
  CHECK(rc == 0, "send (%u, %u): %s (%s)", gen, i, rill_strerror(rc), rill_errmsg());
}

/* (gen, i) and the next up to n - 1 (n <= 16) in one send_batch, END
 * taking the place of i == end; returns the i after the batch. */
static uint32_t send_run(rill_ipc_route_t *s, uint32_t gen, uint32_t i, uint32_t n, uint32_t end) {
  static _Thread_local uint8_t bufs[16][MAXMSG];
  rill_iov_t v[16];
  uint32_t k = 0;
  for (; k < n && (k == 0 || i + k - 1 != end); k++) {
    uint32_t at = i + k == end ? END : i + k;
    v[k] = (rill_iov_t){bufs[k], fill(bufs[k], gen, at, rill_ipc_route_max_payload(s))};
  }
  uint32_t sent = 0;
  int rc = rill_ipc_route_send_batch(s, v, k, PATIENCE, &sent);
  CHECK(rc == 0 && sent == k, "send_batch (%u, %u) of %u: %u sent, %s (%s)", gen, i, k, sent,
        rill_strerror(rc), rill_errmsg());
  return i + k;
}

/* (gen, 0) up to (gen, count - 1), then END (count 0: forever), one at a
 * time or in batches. */
static void send_all(rill_ipc_route_t *s, uint32_t gen, uint32_t count) {
  if (!batched) {
    for (uint32_t i = 0; count == 0 || i < count; i++)
      send_one(s, gen, i);
    send_one(s, gen, END);
    return;
  }
  /* The END is message number count; forever: never. */
  uint32_t end = count ? count : UINT32_MAX;
  for (uint32_t i = 0; i <= count || count == 0;)
    i = send_run(s, gen, i, 1 + (uint32_t)(rnd() % 16), end);
}

/* ---- cases ------------------------------------------------------------------ */

static void fresh_route(const char *tag) {
  snprintf(route, sizeof route, "stress.%d.%s", (int)getpid(), tag);
  rill_ipc_route_unlink(route);
}

/* One sender, three receivers, N messages under BLOCK. */
static void block_1_to_3(void) {
  fresh_route("block");
  rill_ipc_route_t *s = NULL;
  CHECK(rill_ipc_route_open(&s, route, &opts, RILL_IPC_SENDER) == 0, "open: %s", rill_errmsg());
  pid_t rx[RECEIVERS];
  for (int k = 0; k < RECEIVERS; k++)
    rx[k] = spawn_receiver(1, N);
  wait_attached(RECEIVERS);
  send_all(s, 0, N);
  for (int k = 0; k < RECEIVERS; k++)
    reap_ok(rx[k], "receiver");
  rill_ipc_route_close(s);
  rill_ipc_route_unlink(route);
}

/* A receiver SIGKILLed at a random moment: the sender reaps it when it
 * would wait for it; the other two get all N; a receiver started in its
 * place attaches (to the dead one's place, there being three) and gets
 * everything from then on at once. */
static void kill_a_receiver(void) {
  fresh_route("killrx");
  rill_ipc_route_t *s = NULL;
  CHECK(rill_ipc_route_open(&s, route, &opts, RILL_IPC_SENDER) == 0, "open: %s", rill_errmsg());
  pid_t rx[RECEIVERS];
  for (int k = 0; k < RECEIVERS; k++)
    rx[k] = spawn_receiver(1, N);
  wait_attached(RECEIVERS);
  uint32_t kill_at = N / 4 + (uint32_t)(rnd() % (N / 2));
  uint32_t restart_at = kill_at + (uint32_t)(rnd() % (N / 8));
  pid_t restarted = -1, zombie = -1;
  for (uint32_t i = 0; i < N; i++) {
    if (i == kill_at) {
      CHECK(kill(rx[0], SIGKILL) == 0, "kill");
      if (rnd() % 2)
        reap_killed(rx[0], "killed receiver");
      else
        zombie = rx[0]; /* stays a zombie until its place is taken */
    }
    if (i == restart_at) {
      restarted = spawn_receiver(0, 0);
      wait_attached(1);
      if (zombie > 0)
        reap_killed(zombie, "killed receiver");
    }
    send_one(s, 0, i);
  }
  send_one(s, 0, END);
  for (int k = 1; k < RECEIVERS; k++)
    reap_ok(rx[k], "receiver");
  reap_ok(restarted, "restarted receiver");
  rill_ipc_route_close(s);
  rill_ipc_route_unlink(route);
}

/* A sender process that sends (gen, 0), (gen, 1), ... up to count, then
 * END and exits; with count 0, forever, until it is killed. */
static pid_t spawn_sender(uint32_t gen, uint32_t count) {
  pid_t pid = fork_child();
  CHECK(pid >= 0, "fork");
  if (pid)
    return pid;
  rill_ipc_route_t *s = NULL;
  int rc;
  for (int tries = 0; (rc = rill_ipc_route_open(&s, route, &opts, RILL_IPC_SENDER)) != 0; tries++) {
    if (tries > 5000) {
      fprintf(stderr, "sender %u: %s (%s)\n", gen, rill_strerror(rc), rill_errmsg());
      _exit(20);
    }
    sleep_us(1000);
  }
  send_all(s, gen, count);
  rill_ipc_route_close(s);
  _exit(0);
}

/* Senders SIGKILLed at random moments (sending, or parked for room) and
 * replaced by new processes: the receivers see each published message once
 * and in order (seq and (gen, i) both without a gap), then the last
 * sender's N / 4 and its END. */
static void kill_senders(void) {
  fresh_route("killtx");
  rill_ipc_route_t *s = NULL;
  CHECK(rill_ipc_route_open(&s, route, &opts, RILL_IPC_SENDER) == 0, "create: %s", rill_errmsg());
  rill_ipc_route_close(s);
  pid_t rx[RECEIVERS];
  for (int k = 0; k < RECEIVERS; k++)
    rx[k] = spawn_receiver(0, N / 4);
  wait_attached(RECEIVERS);
  enum { KILLED = 6 };
  pid_t zombies[KILLED];
  int nz = 0;
  for (uint32_t gen = 0; gen < KILLED; gen++) {
    pid_t tx = spawn_sender(gen, 0);
    sleep_us(2000 + rnd() % 40000);
    CHECK(kill(tx, SIGKILL) == 0, "kill");
    if (gen % 2)
      reap_killed(tx, "killed sender");
    else
      zombies[nz++] = tx; /* the next sender finds a zombie in its place */
  }
  reap_ok(spawn_sender(KILLED, N / 4), "last sender");
  for (int k = 0; k < RECEIVERS; k++)
    reap_ok(rx[k], "receiver");
  for (int k = 0; k < nz; k++)
    reap_killed(zombies[k], "killed sender");
  rill_ipc_route_unlink(route);
}

/* The same protocol between threads, so TSan sees the orderings. */
struct thr {
  uint32_t count;
  int ok;
};

static void *thread_receiver(void *arg) {
  struct thr *t = arg;
  rill_ipc_route_t *r = NULL;
  CHECK(rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER) == 0, "receiver: %s",
        rill_errmsg());
  __atomic_store_n(&t->ok, 1, __ATOMIC_RELEASE);
  for (uint32_t i = 0; i < t->count;) {
    rill_ipc_msg_t m[16];
    uint32_t got = 1;
    int rc = batched ? rill_ipc_route_recv_batch(r, m, 16, &got, PATIENCE, NULL)
                     : rill_ipc_route_recv(r, m, PATIENCE, NULL);
    CHECK(rc == 0, "recv %u: %s (%s)", i, rill_strerror(rc), rill_errmsg());
    for (uint32_t k = 0; k < got; k++, i++) {
      uint32_t gen, j;
      CHECK(content_ok(&m[k], &gen, &j) && gen == 0 && j == i && m[k].seq == i, "message %u", i);
    }
  }
  rill_ipc_route_close(r);
  __atomic_store_n(&t->ok, 2, __ATOMIC_RELEASE);
  return NULL;
}

static void threads_1_to_3(void) {
  fresh_route("threads");
  rill_ipc_route_opts_t o = opts;
  o.slots = 64;
  rill_ipc_route_t *s = NULL;
  CHECK(rill_ipc_route_open(&s, route, &o, RILL_IPC_SENDER) == 0, "open: %s", rill_errmsg());
  struct thr t[RECEIVERS];
  pthread_t th[RECEIVERS];
  for (int k = 0; k < RECEIVERS; k++) {
    t[k] = (struct thr){N / 4, 0};
    CHECK(pthread_create(&th[k], NULL, thread_receiver, &t[k]) == 0, "thread");
  }
  for (int k = 0; k < RECEIVERS; k++)
    while (__atomic_load_n(&t[k].ok, __ATOMIC_ACQUIRE) == 0)
      sleep_us(100);
  if (batched)
    /* N / 4 messages: the END, number N / 4, is never sent. */
    for (uint32_t i = 0; i < N / 4;) {
      uint32_t n = 1 + (uint32_t)(rnd() % 16);
      i = send_run(s, 0, i, n < N / 4 - i ? n : N / 4 - i, UINT32_MAX);
    }
  else
    for (uint32_t i = 0; i < N / 4; i++)
      send_one(s, 0, i);
  for (int k = 0; k < RECEIVERS; k++) {
    pthread_join(th[k], NULL);
    CHECK(t[k].ok == 2, "receiver thread %d", k);
  }
  rill_ipc_route_close(s);
  rill_ipc_route_unlink(route);
}

static void block_1_to_3_batches(void) {
  batched = 1;
  block_1_to_3();
  batched = 0;
}

static void threads_1_to_3_batches(void) {
  batched = 1;
  threads_1_to_3();
  batched = 0;
}

static void kill_senders_batches(void) {
  batched = 1;
  kill_senders();
  batched = 0;
}

static pid_t main_pid;

/* A failed check exits: the route it ran on goes too. */
static void unlink_route(void) {
  if (getpid() == main_pid && route[0])
    rill_ipc_route_unlink(route);
}

int main(void) {
  main_pid = getpid();
  CHECK(pipe(ready) == 0, "pipe");
  atexit(unlink_route);
  rnd_state = (uint64_t)time(NULL) * 2654435761u + (uint64_t)getpid();
  if (!rnd_state)
    rnd_state = 1;
  printf("     seed %llu\n", (unsigned long long)rnd_state);
  static const stress_case_t cases[] = {
      {"ipc_block_1_sender_3_receivers", block_1_to_3},
      {"ipc_sigkill_a_receiver", kill_a_receiver},
      {"ipc_sigkill_senders", kill_senders},
      {"ipc_batches_1_sender_3_receivers", block_1_to_3_batches},
      {"ipc_batches_sigkill_senders", kill_senders_batches},
      {"ipc_threads_1_sender_3_receivers", threads_1_to_3},
      {"ipc_threads_batches", threads_1_to_3_batches},
  };
  return stress_run(cases, (int)(sizeof cases / sizeof cases[0]));
}
