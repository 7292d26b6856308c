#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rill/ipc.h"

/* Offsets in the segment, as docs/FORMATS.md ("IPC channel segment")
 * gives them. */
#define OFF_VERSION 4
#define OFF_SLOTS   8
#define OFF_TOTAL   24
#define OFF_CLAIM   64
#define TABLE       4096
#define PLACE       64

static char chan[64];

/* Each kind's unlink removes only its own: a test may leave either. */
static void unlink_any(void) {
  rill_ipc_chan_unlink(chan);
  rill_ipc_route_unlink(chan);
}
static void init_name(void) {
  snprintf(chan, sizeof chan, "chtest.%d", (int)getpid());
  unlink_any();
}
static void fini_name(void) { unlink_any(); }

TestSuite(chan, .init = init_name, .fini = fini_name);

static rill_ipc_chan_t *open_as(const rill_ipc_chan_opts_t *o, rill_ipc_role_t role) {
  rill_ipc_chan_t *ch = NULL;
  int rc = rill_ipc_chan_open(&ch, chan, o, role);
  cr_assert_eq(rc, 0, "open: %s (%s)", rill_strerror(rc), rill_errmsg());
  return ch;
}

/* A message: sender k's i-th, with bytes that follow from both. */
static uint32_t fill(uint8_t *buf, uint32_t k, uint32_t i, uint32_t max) {
  uint32_t len = 8 + (k * 13u + i * 7u) % (max - 7);
  memcpy(buf, &k, 4);
  memcpy(buf + 4, &i, 4);
  for (uint32_t b = 8; b < len; b++)
    buf[b] = (uint8_t)(k * 17u + i * 31u + b);
  return len;
}

static void parse(const rill_ipc_msg_t *m, uint32_t max, uint32_t *k, uint32_t *i) {
  uint8_t want[4096];
  cr_assert_geq(m->len, 8);
  memcpy(k, m->data, 4);
  memcpy(i, m->data + 4, 4);
  uint32_t len = fill(want, *k, *i, max);
  cr_assert_eq(m->len, len, "(%u, %u): %u bytes, expected %u", *k, *i, m->len, len);
  cr_assert_eq(memcmp(m->data, want, len), 0, "(%u, %u): content", *k, *i);
}

static void send_one(rill_ipc_chan_t *s, uint32_t k, uint32_t i) {
  uint8_t buf[4096];
  uint32_t len = fill(buf, k, i, rill_ipc_chan_max_payload(s));
  int rc = rill_ipc_chan_send(s, buf, len, 1000000000ull);
  cr_assert_eq(rc, 0, "send (%u, %u): %s (%s)", k, i, rill_strerror(rc), rill_errmsg());
}

Test(chan, layout_mismatch_and_bad_opts) {
  rill_ipc_chan_opts_t o = {.slots = 8, .max_senders = 4, .max_receivers = 2};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/rill.%s", chan);
  struct stat sb;
  cr_assert_eq(stat(path, &sb), 0);
  cr_expect_eq(sb.st_mode & 0777, 0600);
  cr_expect_eq(sb.st_size, 4096 + 4096 + 8 * 128);
  rill_ipc_chan_t *r = open_as(NULL, RILL_IPC_RECEIVER);
  rill_ipc_chan_opts_t bad[] = {
      {.slots = 16, .max_senders = 4, .max_receivers = 2},
      {.slots = 8, .max_senders = 3, .max_receivers = 2},
      {.slots = 8, .max_senders = 4, .max_receivers = 2, .delivery = RILL_IPC_QUEUE},
      {.slots = 8, .max_senders = 4, .max_receivers = 2, .policy = RILL_IPC_FAIL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rill_ipc_chan_t *x = (void *)1;
    cr_expect_eq(rill_ipc_chan_open(&x, chan, &bad[i], RILL_IPC_SENDER), RILL_EINVAL, "bad %zu", i);
    cr_expect_null(x);
    cr_expect_neq(strstr(rill_errmsg(), "exists with"), NULL, "%s", rill_errmsg());
  }
  rill_ipc_chan_opts_t invalid[] = {
      {.slots = 12},
      {.slot_size = 100},
      {.max_senders = 65},
      {.max_receivers = 65},
      {.policy = RILL_IPC_OVERWRITE},
      {.delivery = (rill_ipc_delivery_t)5},
      {.mode = 01777},
  };
  rill_ipc_chan_t *x;
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
    cr_expect_eq(rill_ipc_chan_open(&x, "chtest.never", &invalid[i], RILL_IPC_SENDER), RILL_EINVAL,
                 "opts %zu", i);
  cr_expect_eq(access("/dev/shm/rill.chtest.never", F_OK), -1);
  cr_expect_eq(rill_ipc_chan_open(&x, chan, NULL, (rill_ipc_role_t)9), RILL_EINVAL);
  cr_expect_eq(rill_ipc_chan_open(&x, "a/b", NULL, RILL_IPC_SENDER), RILL_EINVAL);
  cr_expect_eq(rill_ipc_chan_open(&x, NULL, NULL, RILL_IPC_SENDER), RILL_EINVAL);
  /* Role errors, sizes. */
  rill_ipc_msg_t m;
  uint8_t big[200] = {0};
  cr_expect_eq(rill_ipc_chan_recv(s, &m, 0, NULL), RILL_EINVAL);
  cr_expect_eq(rill_ipc_chan_send(r, big, 1, 0), RILL_EINVAL);
  cr_expect_eq(rill_ipc_chan_send(s, big, 113, 0), RILL_EMSGSIZE);
  cr_expect_eq(rill_ipc_chan_send(s, NULL, 0, 0), 0);
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.len, 0);
  /* A route of the same name space is not a channel, and the other way. */
  rill_ipc_route_t *rr = (void *)1;
  cr_expect_eq(rill_ipc_route_open(&rr, chan, NULL, RILL_IPC_RECEIVER), RILL_EVERSION);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
  rill_ipc_chan_close(NULL);
}

/* Three senders interleaved, three broadcast receivers: every receiver gets
 * every message, each sender's in its order. */
Test(chan, broadcast_every_message_to_every_receiver) {
  rill_ipc_chan_opts_t o = {.slots = 16, .slot_size = 256, .max_senders = 3, .max_receivers = 3};
  rill_ipc_chan_t *s[3], *r[3];
  for (int k = 0; k < 3; k++)
    s[k] = open_as(&o, RILL_IPC_SENDER);
  rill_ipc_chan_t *extra = (void *)1;
  cr_expect_eq(rill_ipc_chan_open(&extra, chan, &o, RILL_IPC_SENDER), RILL_EBUSY);
  for (int k = 0; k < 3; k++)
    r[k] = open_as(&o, RILL_IPC_RECEIVER);
  uint32_t max = rill_ipc_chan_max_payload(s[0]);
  uint32_t next[3][3] = {{0}};
  uint32_t sent[3] = {0};
  for (int round = 0; round < 50; round++) {
    for (int j = 0; j < 15; j++) {
      int k = (round + j * 7) % 3;
      send_one(s[k], (uint32_t)k, sent[k]++);
    }
    for (int q = 0; q < 3; q++)
      for (int j = 0; j < 15; j++) {
        rill_ipc_msg_t m;
        int rc = rill_ipc_chan_recv(r[q], &m, 0, NULL);
        cr_assert_eq(rc, 0, "recv: %s (%s)", rill_strerror(rc), rill_errmsg());
        cr_expect_eq(m.seq, (uint64_t)round * 15 + (uint64_t)j);
        uint32_t k, i;
        parse(&m, max, &k, &i);
        cr_assert_lt(k, 3);
        cr_assert_eq(i, next[q][k], "receiver %d: sender %u's %u, expected %u", q, k, i,
                     next[q][k]);
        next[q][k]++;
      }
  }
  rill_ipc_msg_t m;
  cr_expect_eq(rill_ipc_chan_recv(r[0], &m, 1000000, NULL), RILL_ETIMEDOUT);
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.claimed, 750);
  cr_expect_eq(info.senders, 3);
  cr_expect_eq(info.receivers, 3);
  cr_expect_eq(info.aborted, 0);
  cr_expect_eq(info.delivery, RILL_IPC_BROADCAST);
  for (int k = 0; k < 3; k++) {
    rill_ipc_chan_close(r[k]);
    rill_ipc_chan_close(s[k]);
  }
}

/* Queue: each message to exactly one receiver. */
Test(chan, queue_each_message_once) {
  rill_ipc_chan_opts_t o = {
      .slots = 8, .max_senders = 2, .max_receivers = 3, .delivery = RILL_IPC_QUEUE};
  rill_ipc_chan_t *s[2] = {open_as(&o, RILL_IPC_SENDER), open_as(&o, RILL_IPC_SENDER)};
  rill_ipc_chan_t *r[3];
  for (int q = 0; q < 3; q++)
    r[q] = open_as(&o, RILL_IPC_RECEIVER);
  uint32_t max = rill_ipc_chan_max_payload(s[0]);
  enum { TOTAL = 400 };
  static uint8_t seen[2][TOTAL];
  uint32_t sent[2] = {0}, got = 0, per[3] = {0};
  while (got < 2 * TOTAL) {
    for (int k = 0; k < 2; k++)
      for (int j = 0; j < 3 && sent[k] < TOTAL; j++) {
        uint8_t buf[256];
        uint32_t len = fill(buf, (uint32_t)k, sent[k], max);
        int rc = rill_ipc_chan_send(s[k], buf, len, 0);
        if (rc == RILL_ETIMEDOUT)
          break; /* full: the receivers first */
        cr_assert_eq(rc, 0, "send: %s (%s)", rill_strerror(rc), rill_errmsg());
        sent[k]++;
      }
    for (int q = 0; q < 3; q++)
      for (int j = 0; j <= q; j++) {
        rill_ipc_msg_t m;
        int rc = rill_ipc_chan_recv(r[q], &m, 0, NULL);
        if (rc == RILL_EAGAIN)
          break;
        cr_assert_eq(rc, 0, "recv: %s (%s)", rill_strerror(rc), rill_errmsg());
        uint32_t k, i;
        parse(&m, max, &k, &i);
        cr_assert(k < 2 && i < TOTAL);
        cr_assert_eq(seen[k][i], 0, "(%u, %u) twice", k, i);
        seen[k][i] = 1;
        got++;
        per[q]++;
      }
  }
  for (int q = 0; q < 3; q++)
    cr_expect_gt(per[q], 0, "receiver %d got nothing", q);
  rill_ipc_msg_t m;
  for (int q = 0; q < 3; q++)
    cr_expect_eq(rill_ipc_chan_recv(r[q], &m, 0, NULL), RILL_EAGAIN);
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.claimed, 2 * TOTAL);
  cr_expect_eq(info.consumed, 2 * TOTAL);
  for (int q = 0; q < 3; q++)
    rill_ipc_chan_close(r[q]);
  rill_ipc_chan_close(s[0]);
  rill_ipc_chan_close(s[1]);
}

Test(chan, full_under_block_and_fail) {
  rill_ipc_chan_opts_t o = {.slots = 4, .max_senders = 2, .max_receivers = 2};
  rill_ipc_chan_t *a = open_as(&o, RILL_IPC_SENDER), *b = open_as(&o, RILL_IPC_SENDER);
  rill_ipc_chan_t *r = open_as(&o, RILL_IPC_RECEIVER);
  for (uint32_t i = 0; i < 4; i++)
    send_one(i % 2 ? b : a, i % 2, i);
  uint8_t x[8] = {0};
  cr_expect_eq(rill_ipc_chan_send(a, x, 8, 20000000), RILL_ETIMEDOUT);
  cr_expect_eq(rill_ipc_chan_send(b, x, 8, 0), RILL_ETIMEDOUT);
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(rill_ipc_chan_send(a, x, 8, 0), RILL_ETIMEDOUT, "message 0's view is held");
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(rill_ipc_chan_send(b, x, 8, 0), 0);
  rill_ipc_chan_close(r); /* nobody to wait for, and nobody to get it */
  for (int i = 0; i < 20; i++)
    cr_expect_eq(rill_ipc_chan_send(a, x, 8, 0), RILL_EPIPE);
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.claimed, 5, "nothing claimed without a receiver");
  rill_ipc_chan_close(a);
  rill_ipc_chan_close(b);

  rill_ipc_chan_unlink(chan);
  o.policy = RILL_IPC_FAIL;
  o.delivery = RILL_IPC_QUEUE;
  a = open_as(&o, RILL_IPC_SENDER);
  /* A queue with no receiver keeps its messages: full after a ring. */
  for (int i = 0; i < 4; i++)
    cr_expect_eq(rill_ipc_chan_send(a, x, 8, 0), 0);
  cr_expect_eq(rill_ipc_chan_send(a, x, 8, 0), RILL_EFULL);
  r = open_as(&o, RILL_IPC_RECEIVER);
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.seq, 0);
  cr_expect_eq(rill_ipc_chan_send(a, x, 8, 0), RILL_EFULL, "message 0 is held");
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(rill_ipc_chan_send(a, x, 8, 0), 0);
  cr_expect_eq(rill_ipc_chan_send(a, x, 8, 0), RILL_EFULL);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(a);
}

/* A sender that claims a message and dies before committing it: the
 * receivers find the claimer dead, skip the message (RILL_ELAGGED, lost
 * 1) and get the ones after it. */
static void dead_claim(rill_ipc_delivery_t delivery) {
  rill_ipc_chan_opts_t o = {.slots = 8, .max_senders = 2, .max_receivers = 2, .delivery = delivery};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  rill_ipc_chan_t *r[2] = {open_as(&o, RILL_IPC_RECEIVER), open_as(&o, RILL_IPC_RECEIVER)};
  uint32_t max = rill_ipc_chan_max_payload(s);
  send_one(s, 0, 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    /* Claim seq 1 as the protocol does and die before the commit: our
     * place's pending is seq + 1, claim is bumped, the mark never comes. */
    rill_ipc_chan_t *c;
    if (rill_ipc_chan_open(&c, chan, &o, RILL_IPC_SENDER))
      _exit(1);
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/rill.%s", chan);
    int fd = open(path, O_RDWR);
    uint64_t pending = 2, claim = 2;
    /* Place 1 (the second sender place): pending at offset 16 of it. */
    if (fd < 0 || pwrite(fd, &pending, 8, TABLE + PLACE * 1 + 16) != 8 ||
        pwrite(fd, &claim, 8, OFF_CLAIM) != 8)
      _exit(2);
    _exit(0);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child 0x%x", st);
  send_one(s, 0, 1); /* seq 2 */
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.senders, 2);
  cr_expect_eq(info.senders_dead, 1);
  uint32_t got[2] = {0}, lost_total = 0;
  for (int q = 0; q < 2; q++) {
    for (int tries = 0; tries < 3; tries++) {
      rill_ipc_msg_t m;
      uint64_t lost = 0;
      int rc = rill_ipc_chan_recv(r[q], &m, 200000000ull, &lost);
      if (rc == RILL_ELAGGED) {
        cr_expect_eq(lost, 1);
        lost_total++;
        continue;
      }
      if (rc == RILL_ETIMEDOUT || rc == RILL_EAGAIN)
        break;
      cr_assert_eq(rc, 0, "recv: %s (%s)", rill_strerror(rc), rill_errmsg());
      uint32_t k, i;
      parse(&m, max, &k, &i);
      cr_expect_eq(i, got[q] + (delivery == RILL_IPC_QUEUE ? 0 : 0));
      got[q]++;
    }
  }
  if (delivery == RILL_IPC_BROADCAST) {
    cr_expect_eq(got[0], 2);
    cr_expect_eq(got[1], 2);
    cr_expect_eq(lost_total, 2, "each receiver reports the hole");
  } else {
    cr_expect_eq(got[0] + got[1], 2);
    cr_expect_eq(lost_total, 1, "the hole goes to one receiver");
  }
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.aborted, 1);
  /* The dead sender's place is taken over; the channel goes on. */
  rill_ipc_chan_t *s2 = open_as(&o, RILL_IPC_SENDER);
  send_one(s2, 1, 0);
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_chan_recv(r[0], &m, 1000000000ull, NULL), 0);
  cr_expect_eq(m.seq, 3);
  rill_ipc_chan_close(s2);
  rill_ipc_chan_close(r[0]);
  rill_ipc_chan_close(r[1]);
  rill_ipc_chan_close(s);
}

Test(chan, dead_sender_between_claim_and_commit_broadcast) { dead_claim(RILL_IPC_BROADCAST); }
Test(chan, dead_sender_between_claim_and_commit_queue) { dead_claim(RILL_IPC_QUEUE); }

/* A receiver that died holding a queue message: its place is the only
 * one, so the next receiver opens on it and gets the message again. */
Test(chan, dead_receiver_is_reaped) {
  rill_ipc_chan_opts_t o = {
      .slots = 4, .max_senders = 1, .max_receivers = 1, .delivery = RILL_IPC_QUEUE};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  for (uint32_t i = 0; i < 4; i++)
    send_one(s, 0, i);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    rill_ipc_chan_t *r;
    rill_ipc_msg_t m;
    if (rill_ipc_chan_open(&r, chan, &o, RILL_IPC_RECEIVER) || rill_ipc_chan_recv(r, &m, 0, NULL))
      _exit(1);
    _exit(0); /* holding message 0 */
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  uint8_t x[8] = {0};
  cr_expect_eq(rill_ipc_chan_send(s, x, 8, 0), RILL_ETIMEDOUT, "message 0 is still held");
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.orphaned, 1, "the sender's reap orphaned it");
  cr_expect_eq(info.receivers, 0);
  rill_ipc_chan_t *r = open_as(&o, RILL_IPC_RECEIVER);
  uint32_t max = rill_ipc_chan_max_payload(s), k, i;
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.seq, 0);
  cr_expect_eq(m.flags, RILL_IPC_REDELIVERED);
  parse(&m, max, &k, &i);
  cr_expect_eq(i, 0);
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.seq, 1);
  cr_expect_eq(m.flags, 0);
  send_one(s, 0, 4); /* message 0's slot: free once it is finished with */
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
}

/* A queue receiver process that takes one message (and releases it when
 * asked), tells its seq, and waits to be SIGKILLed (kill_holder). */
static pid_t spawn_holder(const rill_ipc_chan_opts_t *o, bool release, uint64_t *seq) {
  int fd[2];
  cr_assert_eq(pipe(fd), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    close(fd[0]);
    rill_ipc_chan_t *r;
    rill_ipc_msg_t m;
    if (rill_ipc_chan_open(&r, chan, o, RILL_IPC_RECEIVER) ||
        rill_ipc_chan_recv(r, &m, 1000000000ull, NULL))
      _exit(1);
    if (release && rill_ipc_chan_release(r))
      _exit(2);
    if (write(fd[1], &m.seq, sizeof m.seq) != (ssize_t)sizeof m.seq)
      _exit(3);
    for (;;)
      pause();
  }
  close(fd[1]);
  *seq = UINT64_MAX;
  ssize_t n = read(fd[0], seq, sizeof *seq);
  close(fd[0]);
  cr_assert_eq(n, (ssize_t)sizeof *seq, "the holder failed");
  return pid;
}

static void kill_holder(pid_t pid) {
  int st;
  cr_assert_eq(kill(pid, SIGKILL), 0);
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "holder 0x%x", st);
}

/* The message a SIGKILLed receiver held goes to a surviving receiver, before
 * newer ones, flagged; every other message exactly once. */
Test(chan, queue_killed_receivers_message_is_redelivered) {
  rill_ipc_chan_opts_t o = {
      .slots = 8, .max_senders = 1, .max_receivers = 2, .delivery = RILL_IPC_QUEUE};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER), *r = open_as(&o, RILL_IPC_RECEIVER);
  uint32_t max = rill_ipc_chan_max_payload(s), k, i;
  for (uint32_t j = 0; j < 3; j++)
    send_one(s, 0, j);
  uint64_t seq;
  kill_holder(spawn_holder(&o, false, &seq));
  cr_assert_eq(seq, 0);
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.receivers, 2);
  cr_expect_eq(info.receivers_dead, 1);
  cr_expect_eq(info.orphaned, 0, "not reaped yet");
  cr_expect_eq(info.slowest, 1, "a dead holder is not counted until it is orphaned");
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0, "%s", rill_errmsg());
  cr_expect_eq(m.seq, 0, "the orphan before message %llu", (unsigned long long)m.seq);
  cr_expect_eq(m.flags, RILL_IPC_REDELIVERED);
  parse(&m, max, &k, &i);
  cr_expect_eq(i, 0);
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.receivers, 1);
  cr_expect_eq(info.orphaned, 0);
  cr_expect_eq(info.redelivered, 1);
  /* The rest once each, in order, unflagged, over two laps of the ring. */
  uint32_t next = 1;
  for (uint32_t j = 3; j < 20; j++) {
    send_one(s, 0, j);
    while (rill_ipc_chan_recv(r, &m, 0, NULL) == 0) {
      cr_expect_eq(m.seq, next);
      cr_expect_eq(m.flags, 0);
      parse(&m, max, &k, &i);
      cr_expect_eq(i, next);
      next++;
    }
  }
  cr_expect_eq(next, 20);
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 20000000, NULL), RILL_ETIMEDOUT);
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.redelivered, 1);
  cr_expect_eq(info.consumed, 20);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
}

/* Released before the kill: finished with, never handed out again. */
Test(chan, queue_released_message_is_not_redelivered) {
  rill_ipc_chan_opts_t o = {.slots = 4,
                            .max_senders = 1,
                            .max_receivers = 2,
                            .delivery = RILL_IPC_QUEUE,
                            .policy = RILL_IPC_FAIL};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER), *r = open_as(&o, RILL_IPC_RECEIVER);
  cr_expect_eq(rill_ipc_chan_release(s), RILL_EINVAL);
  cr_expect_eq(rill_ipc_chan_release(r), RILL_EINVAL, "nothing held");
  cr_expect_eq(rill_ipc_chan_release(NULL), RILL_EINVAL);
  send_one(s, 0, 0);
  send_one(s, 0, 1);
  uint64_t seq;
  kill_holder(spawn_holder(&o, true, &seq));
  cr_assert_eq(seq, 0);
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.seq, 1);
  cr_expect_eq(m.flags, 0);
  cr_expect_eq(rill_ipc_chan_release(r), 0);
  cr_expect_eq(rill_ipc_chan_release(r), RILL_EINVAL, "released already");
  /* Nothing held by anyone: a full ring of room. */
  for (uint32_t j = 2; j < 6; j++)
    send_one(s, 0, j);
  uint8_t x[8] = {0};
  cr_expect_eq(rill_ipc_chan_send(s, x, 8, 0), RILL_EFULL);
  for (uint64_t j = 2; j < 6; j++) {
    cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
    cr_expect_eq(m.seq, j);
    cr_expect_eq(m.flags, 0);
  }
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 20000000, NULL), RILL_ETIMEDOUT);
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.redelivered, 0);
  cr_expect_eq(info.orphaned, 0);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
}

/* Broadcast: release moves the cursor on now, giving the sender room. */
Test(chan, broadcast_release_gives_room) {
  rill_ipc_chan_opts_t o = {
      .slots = 2, .max_senders = 1, .max_receivers = 1, .policy = RILL_IPC_FAIL};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER), *r = open_as(&o, RILL_IPC_RECEIVER);
  send_one(s, 0, 0);
  send_one(s, 0, 1);
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.flags, 0);
  uint8_t x[8] = {0};
  cr_expect_eq(rill_ipc_chan_send(s, x, 8, 0), RILL_EFULL, "message 0's view is held");
  cr_expect_eq(rill_ipc_chan_release(r), 0);
  cr_expect_eq(rill_ipc_chan_send(s, x, 8, 0), 0);
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.seq, 1);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
}

/* Every receiver place orphaned: a new receiver still gets in, on an
 * orphan, and hands out both messages again before the rest. One that
 * closes before asking puts its orphan back. */
Test(chan, queue_all_places_orphaned_can_be_joined) {
  rill_ipc_chan_opts_t o = {
      .slots = 8, .max_senders = 1, .max_receivers = 2, .delivery = RILL_IPC_QUEUE};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  uint32_t max = rill_ipc_chan_max_payload(s), k, i;
  for (uint32_t j = 0; j < 4; j++)
    send_one(s, 0, j);
  uint64_t sa, sb;
  pid_t a = spawn_holder(&o, false, &sa), b = spawn_holder(&o, false, &sb);
  cr_assert_eq(sa, 0);
  cr_assert_eq(sb, 1);
  rill_ipc_chan_t *x = (void *)1;
  cr_expect_eq(rill_ipc_chan_open(&x, chan, &o, RILL_IPC_RECEIVER), RILL_EBUSY, "both alive");
  kill_holder(a);
  kill_holder(b);
  rill_ipc_chan_t *r = open_as(&o, RILL_IPC_RECEIVER);
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.orphaned, 1, "one orphan adopted by the open");
  cr_expect_eq(info.receivers, 1);
  rill_ipc_chan_close(r); /* never asked: back to an orphan */
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.orphaned, 2);
  cr_expect_eq(info.receivers, 0);
  cr_expect_eq(info.redelivered, 0);
  r = open_as(&o, RILL_IPC_RECEIVER);
  bool got[2] = {false, false};
  for (int j = 0; j < 2; j++) {
    rill_ipc_msg_t m;
    cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0, "%s", rill_errmsg());
    cr_assert_lt(m.seq, 2, "orphans first: got %llu", (unsigned long long)m.seq);
    cr_expect_eq(m.flags, RILL_IPC_REDELIVERED);
    parse(&m, max, &k, &i);
    cr_expect_eq(i, m.seq);
    cr_expect_not(got[m.seq], "message %llu twice", (unsigned long long)m.seq);
    got[m.seq] = true;
  }
  /* The adopted place is free now: a second receiver gets in. */
  rill_ipc_chan_t *r2 = open_as(&o, RILL_IPC_RECEIVER);
  for (uint64_t j = 2; j < 4; j++) {
    rill_ipc_msg_t m;
    cr_assert_eq(rill_ipc_chan_recv(j == 2 ? r : r2, &m, 0, NULL), 0);
    cr_expect_eq(m.seq, j);
    cr_expect_eq(m.flags, 0);
  }
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.orphaned, 0);
  cr_expect_eq(info.redelivered, 2);
  cr_expect_eq(info.receivers, 2);
  rill_ipc_chan_close(r2);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
}

/* Two receivers in threads race for one orphan, round after round: exactly
 * one gets it. Both spin on recv without waiting, so that both look at the
 * orphan the moment one of them has reaped its dead holder. */
struct racer {
  rill_ipc_chan_t *r;
  pthread_barrier_t *go;
  int rc;
  rill_ipc_msg_t m;
};

static void *race(void *arg) {
  struct racer *a = arg;
  pthread_barrier_wait(a->go);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    a->rc = rill_ipc_chan_recv(a->r, &a->m, 0, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while (a->rc == RILL_EAGAIN &&
           (t.tv_sec - t0.tv_sec) * 1000000000ll + (t.tv_nsec - t0.tv_nsec) < 30000000ll);
  return NULL;
}

Test(chan, queue_two_receivers_race_for_an_orphan) {
  rill_ipc_chan_opts_t o = {
      .slots = 8, .max_senders = 1, .max_receivers = 3, .delivery = RILL_IPC_QUEUE};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  struct racer a[2] = {{.r = open_as(&o, RILL_IPC_RECEIVER)},
                       {.r = open_as(&o, RILL_IPC_RECEIVER)}};
  enum { ROUNDS = 40 };
  for (uint32_t round = 0; round < ROUNDS; round++) {
    send_one(s, 0, round);
    uint64_t seq;
    kill_holder(spawn_holder(&o, false, &seq));
    cr_assert_eq(seq, round);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    pthread_t th[2];
    for (int q = 0; q < 2; q++) {
      a[q].go = &go;
      cr_assert_eq(pthread_create(&th[q], NULL, race, &a[q]), 0);
    }
    for (int q = 0; q < 2; q++)
      pthread_join(th[q], NULL);
    pthread_barrier_destroy(&go);
    int winners = 0;
    for (int q = 0; q < 2; q++) {
      if (a[q].rc == 0) {
        winners++;
        cr_expect_eq(a[q].m.seq, round);
        cr_expect_eq(a[q].m.flags, RILL_IPC_REDELIVERED);
        cr_expect_eq(rill_ipc_chan_release(a[q].r), 0);
      } else {
        cr_expect_eq(a[q].rc, RILL_EAGAIN, "round %u: %s", round, rill_strerror(a[q].rc));
      }
    }
    cr_assert_eq(winners, 1, "round %u: %d receivers got the orphan", round, winners);
  }
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.redelivered, ROUNDS);
  cr_expect_eq(info.orphaned, 0);
  cr_expect_eq(info.consumed, ROUNDS);
  for (int q = 0; q < 2; q++)
    rill_ipc_chan_close(a[q].r);
  rill_ipc_chan_close(s);
}

static void poke(off_t off, const void *bytes, size_t n) {
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/rill.%s", chan);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  cr_assert_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
  close(fd);
}

static void fresh(void) {
  rill_ipc_chan_unlink(chan);
  rill_ipc_chan_close(open_as(
      &(rill_ipc_chan_opts_t){.slots = 8, .max_senders = 2, .max_receivers = 2}, RILL_IPC_SENDER));
}

static void expect_refused(int code, const char *words) {
  rill_ipc_chan_t *x = (void *)1;
  int rc = rill_ipc_chan_open(&x, chan, NULL, RILL_IPC_RECEIVER);
  cr_expect_eq(rc, code, "%s (%s)", rill_strerror(rc), rill_errmsg());
  cr_expect_null(x);
  cr_expect_neq(strstr(rill_errmsg(), words), NULL, "\"%s\" lacks \"%s\"", rill_errmsg(), words);
  rill_ipc_chan_info_t info;
  cr_expect_eq(rill_ipc_chan_info(chan, &info), code);
}

Test(chan, corrupted_segments_are_refused) {
  fresh();
  poke(0, "RLIP", 4);
  expect_refused(RILL_EVERSION, "magic");
  fresh();
  uint16_t v = 1;
  poke(OFF_VERSION, &v, 2);
  expect_refused(RILL_EVERSION, "version 1");
  fresh();
  uint32_t slots = 12;
  poke(OFF_SLOTS, &slots, 4);
  expect_refused(RILL_ECORRUPT, "not a power of two");
  fresh();
  uint32_t senders = 0;
  poke(16, &senders, 4);
  expect_refused(RILL_ECORRUPT, "max senders");
  fresh();
  uint64_t total = 4096;
  poke(OFF_TOTAL, &total, 8);
  expect_refused(RILL_ECORRUPT, "header says 4096 bytes");
  fresh();
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/rill.%s", chan);
  cr_assert_eq(truncate(path, 4096 * 2 + 8 * 128 + 64), 0);
  expect_refused(RILL_ECORRUPT, "the segment is");
  /* A route is not a channel. */
  rill_ipc_chan_unlink(chan);
  rill_ipc_route_t *rs;
  cr_assert_eq(rill_ipc_route_open(&rs, chan, NULL, RILL_IPC_SENDER), 0);
  expect_refused(RILL_EVERSION, "RLIC");
  rill_ipc_route_close(rs);
}

struct seen {
  bool found;
  rill_ipc_chan_info_t info;
};

static int on_chan(void *ctx, const rill_ipc_chan_info_t *info) {
  struct seen *x = ctx;
  if (strcmp(info->name, chan) == 0) {
    x->found = true;
    x->info = *info;
  }
  return 0;
}

Test(chan, info_and_list) {
  rill_ipc_chan_opts_t o = {
      .slots = 16, .max_senders = 2, .max_receivers = 4, .delivery = RILL_IPC_QUEUE};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER), *r = open_as(&o, RILL_IPC_RECEIVER);
  for (uint32_t i = 0; i < 5; i++)
    send_one(s, 0, i);
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  struct seen x = {0};
  cr_assert_eq(rill_ipc_chan_list(on_chan, &x), 0);
  cr_assert(x.found);
  cr_expect_eq(x.info.claimed, 5);
  cr_expect_eq(x.info.consumed, 2);
  cr_expect_eq(x.info.slowest, 1, "r holds message 1");
  cr_expect_eq(x.info.max_senders, 2);
  cr_expect_eq(x.info.senders, 1);
  cr_expect_eq(x.info.receivers, 1);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
  cr_expect_eq(rill_ipc_chan_unlink(chan), 0);
  cr_expect_eq(rill_ipc_chan_unlink(chan), RILL_ENOENT);
}

Test(chan, spin_mode_waits_and_times_out) {
  rill_ipc_chan_opts_t o = {
      .slots = 2, .max_senders = 2, .max_receivers = 1, .wait = RILL_IPC_SPIN, .spin_ns = 1000000};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER), *r = open_as(&o, RILL_IPC_RECEIVER);
  send_one(s, 0, 0);
  send_one(s, 0, 1);
  uint8_t x[8] = {0};
  cr_expect_eq(rill_ipc_chan_send(s, x, 8, 5000000), RILL_ETIMEDOUT);
  rill_ipc_msg_t m;
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.seq, 1);
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 3000000, NULL), RILL_ETIMEDOUT);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
}

/* Receivers in threads, parked, woken by senders in other threads. */
struct rx_arg {
  rill_ipc_chan_t *r;
  uint32_t got;
};

static void *rx_thread(void *arg) {
  struct rx_arg *a = arg;
  rill_ipc_msg_t m;
  while (rill_ipc_chan_recv(a->r, &m, 200000000ull, NULL) == 0)
    a->got++;
  return NULL;
}

Test(chan, queue_parked_receivers_in_threads) {
  rill_ipc_chan_opts_t o = {
      .slots = 8, .max_senders = 2, .max_receivers = 2, .delivery = RILL_IPC_QUEUE};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  struct rx_arg a[2] = {{open_as(&o, RILL_IPC_RECEIVER), 0}, {open_as(&o, RILL_IPC_RECEIVER), 0}};
  pthread_t th[2];
  for (int q = 0; q < 2; q++)
    cr_assert_eq(pthread_create(&th[q], NULL, rx_thread, &a[q]), 0);
  for (uint32_t i = 0; i < 2000; i++)
    send_one(s, 0, i);
  for (int q = 0; q < 2; q++) {
    pthread_join(th[q], NULL);
    rill_ipc_chan_close(a[q].r);
  }
  cr_expect_eq(a[0].got + a[1].got, 2000);
  rill_ipc_chan_close(s);
}

/* ---- the pool ---------------------------------------------------------------- */

/* Message i of len bytes for the pool tests: its number, then bytes that
 * follow from both. */
static void big_fill(uint8_t *b, uint32_t i, uint32_t len) {
  for (uint32_t k = 0; k < len; k++)
    b[k] = (uint8_t)(i * 131u + k * 7u + (k >> 8));
  memcpy(b, &i, 4);
}

static void big_send(rill_ipc_chan_t *s, uint32_t i, uint32_t len, int want) {
  static uint8_t b[70000];
  big_fill(b, i, len);
  int rc = rill_ipc_chan_send(s, b, len, 0);
  cr_assert_eq(rc, want, "send %u (%u bytes): %s (%s)", i, len, rill_strerror(rc), rill_errmsg());
}

static void big_recv(rill_ipc_chan_t *r, uint32_t i, uint32_t len) {
  static uint8_t b[70000];
  rill_ipc_msg_t m;
  int rc = rill_ipc_chan_recv(r, &m, 1000000000ull, NULL);
  cr_assert_eq(rc, 0, "recv %u: %s (%s)", i, rill_strerror(rc), rill_errmsg());
  cr_assert_eq(m.len, len, "message %u: %u bytes, expected %u", i, m.len, len);
  big_fill(b, i, len);
  cr_assert_eq(memcmp(m.data, b, len), 0, "message %u: content", i);
}

static const rill_ipc_chan_opts_t pool_opts = {.slots = 16,
                                               .max_senders = 2,
                                               .max_receivers = 2,
                                               .policy = RILL_IPC_FAIL,
                                               .pool = {{256, 2}, {4096, 4}, {65536, 2}}};

Test(chan, pool_messages_are_read_in_place_by_every_receiver) {
  rill_ipc_chan_t *s = open_as(&pool_opts, RILL_IPC_SENDER);
  rill_ipc_chan_t *s2 = open_as(NULL, RILL_IPC_SENDER);
  rill_ipc_chan_t *r1 = open_as(NULL, RILL_IPC_RECEIVER);
  rill_ipc_chan_t *r2 = open_as(NULL, RILL_IPC_RECEIVER);
  cr_expect_eq(rill_ipc_chan_max_message(s), 65536);
  cr_expect_eq(rill_ipc_chan_max_payload(s), 112);
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.pool_classes, 3);
  cr_expect_eq(info.pool_chunks, 8);
  cr_expect_eq(info.max_message, 65536);
  cr_expect_eq(info.pool[2].size, 65536);
  uint32_t lens[] = {200, 3000, 60000, 100, 256, 257, 4096, 4097, 65536, 113};
  for (uint32_t round = 0; round < 4; round++)
    for (uint32_t j = 0; j < 10; j++) {
      uint32_t i = round * 10 + j;
      big_send(i % 2 ? s2 : s, i, lens[j], 0);
      big_recv(r1, i, lens[j]);
      big_recv(r2, i, lens[j]);
    }
  big_send(s, 99, 65537, RILL_EMSGSIZE);
  cr_expect_neq(strstr(rill_errmsg(), "over its largest pool class (65536)"), NULL, "%s",
                rill_errmsg());
  rill_ipc_chan_close(r1);
  rill_ipc_chan_close(r2);
  rill_ipc_chan_close(s2);
  rill_ipc_chan_close(s);
}

Test(chan, pool_chunks_bound_how_far_behind_a_receiver_may_be) {
  rill_ipc_chan_t *s = open_as(&pool_opts, RILL_IPC_SENDER);
  rill_ipc_chan_t *r = open_as(NULL, RILL_IPC_RECEIVER);
  rill_ipc_msg_t m;
  /* The receiver reads nothing. Messages 0 and 1 take class 0's chunks;
   * 2 and 3 find class 0's chunk held (2 - 0 >= 2 chunks) and take class
   * 1's, 4 has no class with a free chunk: it waits, or here fails. */
  for (uint32_t i = 0; i < 4; i++)
    big_send(s, i, 200, 0);
  big_send(s, 4, 200, RILL_EFULL);
  /* An inline message needs only a slot. */
  big_send(s, 4, 100, 0);
  for (uint32_t i = 0; i < 4; i++)
    big_recv(r, i, 200);
  big_recv(r, 4, 100);
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), RILL_EAGAIN);
  big_send(s, 5, 60000, 0);
  big_recv(r, 5, 60000);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
}

Test(chan, pool_work_queue_and_classes_must_agree) {
  rill_ipc_chan_opts_t o = pool_opts;
  o.delivery = RILL_IPC_QUEUE;
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  rill_ipc_chan_t *r1 = open_as(NULL, RILL_IPC_RECEIVER);
  rill_ipc_chan_t *r2 = open_as(NULL, RILL_IPC_RECEIVER);
  for (uint32_t i = 0; i < 40; i++) {
    big_send(s, i, 3000 + i, 0);
    big_recv(i % 2 ? r2 : r1, i, 3000 + i);
  }
  rill_ipc_chan_t *x = NULL;
  o.pool[1].chunks = 5;
  cr_expect_eq(rill_ipc_chan_open(&x, chan, &o, RILL_IPC_SENDER), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "pool class 1 of 4 chunks of 4096 bytes"), NULL, "%s",
                rill_errmsg());
  cr_expect_null(x);
  rill_ipc_chan_opts_t bad = {.pool = {{1024, 2}, {512, 2}}};
  rill_ipc_chan_unlink("chtest-bad");
  cr_expect_eq(rill_ipc_chan_open(&x, "chtest-bad", &bad, RILL_IPC_SENDER), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "not over 1024 (the class before"), NULL, "%s",
                rill_errmsg());
  rill_ipc_chan_close(r1);
  rill_ipc_chan_close(r2);
  rill_ipc_chan_close(s);
}

/* Slot 0 of the pool_opts channel: header page, one table page. */
#define CH_SLOT0 (4096 + 4096)

Test(chan, pool_scribbles_are_refused_or_corrupt) {
  rill_ipc_chan_t *s = open_as(&pool_opts, RILL_IPC_SENDER);
  rill_ipc_chan_t *r = open_as(NULL, RILL_IPC_RECEIVER);
  rill_ipc_msg_t m;
  big_send(s, 0, 3000, 0); /* class 1, chunk 0 */
  uint32_t v = 1;
  poke(CH_SLOT0 + 16, &v, 4); /* chunk 1: not message 0's */
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 0, NULL), RILL_ECORRUPT);
  cr_expect_neq(strstr(rill_errmsg(), "names chunk 1 of class 1"), NULL, "%s", rill_errmsg());
  v = 0;
  poke(CH_SLOT0 + 16, &v, 4);
  v = 7;
  poke(CH_SLOT0 + 20, &v, 4);
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 0, NULL), RILL_ECORRUPT);
  cr_expect_neq(strstr(rill_errmsg(), "class 7; there are 3 classes"), NULL, "%s", rill_errmsg());
  v = 1;
  poke(CH_SLOT0 + 20, &v, 4);
  v = 5000;
  poke(CH_SLOT0 + 8, &v, 4);
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 0, NULL), RILL_ECORRUPT);
  cr_expect_neq(strstr(rill_errmsg(), "says 5000 bytes, its chunk holds 4096"), NULL, "%s",
                rill_errmsg());
  v = 3000;
  poke(CH_SLOT0 + 8, &v, 4);
  big_recv(r, 0, 3000);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
  /* The header's class table, checked at attach. */
  v = 100;
  poke(384, &v, 4);
  expect_refused(RILL_ECORRUPT, "pool class 0 of 100 bytes, not over 112");
  v = 256;
  poke(384, &v, 4);
  v = 9;
  poke(52, &v, 4);
  expect_refused(RILL_ECORRUPT, "9 pool classes");
  v = 3;
  poke(52, &v, 4);
  v = 0;
  poke(44, &v, 4);
  expect_refused(RILL_ECORRUPT, "without the pool flag");
}

/* ---- reserve, commit, cancel --------------------------------------------------- */

Test(chan, reserve_writes_in_place_and_cancel_is_skipped) {
  rill_ipc_chan_t *s = open_as(&pool_opts, RILL_IPC_SENDER);
  rill_ipc_chan_t *s2 = open_as(NULL, RILL_IPC_SENDER);
  rill_ipc_chan_t *r = open_as(NULL, RILL_IPC_RECEIVER);
  rill_ipc_msg_t m;
  uint64_t lost = 0;
  void *buf = (void *)1;
  cr_expect_eq(rill_ipc_chan_commit(s, 1), RILL_EINVAL);
  cr_expect_eq(rill_ipc_chan_cancel(s), RILL_EINVAL);
  cr_expect_eq(rill_ipc_chan_reserve(r, 10, 0, &buf), RILL_EINVAL, "a receiver");
  cr_expect_eq(rill_ipc_chan_reserve(s, 65537, 0, &buf), RILL_EMSGSIZE);
  cr_expect_null(buf);
  /* In place, inline and pooled; a pooled reservation committed short. */
  uint32_t lens[] = {64, 3000, 60000};
  for (uint32_t i = 0; i < 3; i++) {
    cr_assert_eq(rill_ipc_chan_reserve(s, lens[i], 0, &buf), 0, "%s", rill_errmsg());
    big_fill(buf, i, lens[i]);
    cr_assert_eq(rill_ipc_chan_commit(s, lens[i]), 0, "%s", rill_errmsg());
    big_recv(r, i, lens[i]);
  }
  cr_assert_eq(rill_ipc_chan_reserve(s, 3000, 0, &buf), 0);
  big_fill(buf, 3, 50);
  cr_expect_eq(rill_ipc_chan_commit(s, 3001), RILL_EINVAL);
  cr_assert_eq(rill_ipc_chan_commit(s, 50), 0);
  big_recv(r, 3, 50);
  /* One open reservation at a time; the other sender goes on meanwhile,
   * and the receiver waits at the reserved number. */
  cr_assert_eq(rill_ipc_chan_reserve(s, 100, 0, &buf), 0);
  cr_expect_eq(rill_ipc_chan_reserve(s, 100, 0, &buf), RILL_EBUSY);
  cr_expect_eq(rill_ipc_chan_send(s, "x", 1, 0), RILL_EBUSY);
  big_send(s2, 5, 100, 0);
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 0, NULL), RILL_EAGAIN, "held at the reservation");
  cr_assert_eq(rill_ipc_chan_cancel(s), 0);
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 1);
  big_recv(r, 5, 100);
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.aborted, 1);
  /* Close cancels an open reservation: the receiver skips it at once. */
  cr_assert_eq(rill_ipc_chan_reserve(s, 100, 0, &buf), 0);
  rill_ipc_chan_close(s);
  big_send(s2, 7, 100, 0);
  cr_expect_eq(rill_ipc_chan_recv(r, &m, 0, &lost), RILL_ELAGGED);
  big_recv(r, 7, 100);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s2);
}

/* Removing a channel tells whoever is attached: receivers read what is
 * there, then RILL_ECLOSED; senders RILL_ECLOSED; a queue's too. */
Test(chan, unlink_tells_the_senders_and_receivers) {
  for (int q = 0; q < 2; q++) {
    rill_ipc_chan_opts_t o = {.slots = 8, .delivery = q ? RILL_IPC_QUEUE : RILL_IPC_BROADCAST};
    rill_ipc_chan_t *r = open_as(&o, RILL_IPC_RECEIVER);
    rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
    send_one(s, 0, 0);
    cr_assert_eq(rill_ipc_chan_unlink(chan), 0);
    rill_ipc_msg_t m;
    uint32_t k, i;
    cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0, "%s: %s", q ? "queue" : "broadcast",
                 rill_errmsg());
    parse(&m, rill_ipc_chan_max_payload(r), &k, &i);
    cr_expect_eq(rill_ipc_chan_recv(r, &m, 0, NULL), RILL_ECLOSED);
    cr_expect_eq(rill_ipc_chan_recv(r, &m, 1000000, NULL), RILL_ECLOSED);
    uint8_t b[8] = {0};
    cr_expect_eq(rill_ipc_chan_send(s, b, 8, 0), RILL_ECLOSED);
    void *buf;
    cr_expect_eq(rill_ipc_chan_reserve(s, 8, 0, &buf), RILL_ECLOSED);
    rill_ipc_chan_close(s);
    rill_ipc_chan_close(r);
  }
}

/* A broadcast send nobody can receive is EPIPE, nothing claimed; a queue
 * keeps its messages. wait_receivers waits for a receiver that will get
 * what is sent next. */
Test(chan, a_broadcast_send_nobody_can_receive_is_epipe) {
  rill_ipc_chan_opts_t o = {.slots = 8};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  uint8_t x[8] = {0};
  cr_expect_eq(rill_ipc_chan_send(s, x, 8, 0), RILL_EPIPE);
  void *buf;
  cr_expect_eq(rill_ipc_chan_reserve(s, 8, 0, &buf), RILL_EPIPE);
  cr_expect_eq(rill_ipc_chan_wait_receivers(s, 1, 0), RILL_EAGAIN);
  cr_expect_eq(rill_ipc_chan_wait_receivers(s, 1, 1000000), RILL_ETIMEDOUT);
  cr_expect_eq(rill_ipc_chan_wait_receivers(s, 0, 0), RILL_EINVAL);
  rill_ipc_chan_info_t info;
  cr_assert_eq(rill_ipc_chan_info(chan, &info), 0);
  cr_expect_eq(info.claimed, 0);
  rill_ipc_chan_t *r = open_as(&o, RILL_IPC_RECEIVER);
  cr_expect_eq(rill_ipc_chan_wait_receivers(r, 1, 0), RILL_EINVAL, "on a receiver");
  cr_expect_eq(rill_ipc_chan_wait_receivers(s, 1, 0), 0);
  send_one(s, 0, 0);
  rill_ipc_msg_t m;
  uint32_t k, i;
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  parse(&m, rill_ipc_chan_max_payload(r), &k, &i);
  cr_expect_eq(m.seq, 0);
  rill_ipc_chan_close(r);
  cr_expect_eq(rill_ipc_chan_send(s, x, 8, 0), RILL_EPIPE, "its leave is seen");
  rill_ipc_chan_close(s);
  rill_ipc_chan_unlink(chan);

  o.delivery = RILL_IPC_QUEUE;
  s = open_as(&o, RILL_IPC_SENDER);
  send_one(s, 0, 0); /* kept for a receiver to come */
  r = open_as(&o, RILL_IPC_RECEIVER);
  cr_assert_eq(rill_ipc_chan_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.seq, 0);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
}

/* ---- batches ------------------------------------------------------------------ */

/* n messages of sender k from i, as fill makes them, in bufs (iov into it). */
static void fill_batch(rill_iov_t *iov, uint8_t (*bufs)[256], uint32_t k, uint32_t i, uint32_t n,
                       uint32_t max) {
  for (uint32_t j = 0; j < n; j++)
    iov[j] = (rill_iov_t){bufs[j], fill(bufs[j], k, i + j, max)};
}

static void expect_batch(const rill_ipc_msg_t *m, uint32_t got, uint32_t k, uint32_t i, uint32_t n,
                         uint32_t max) {
  cr_assert_eq(got, n, "got %u, expected %u", got, n);
  for (uint32_t j = 0; j < n; j++) {
    uint32_t kk, ii;
    parse(&m[j], max, &kk, &ii);
    cr_expect_eq(kk, k);
    cr_expect_eq(ii, i + j, "message %u: %u, expected %u", j, ii, i + j);
    cr_expect_eq(m[j].flags, 0);
  }
}

Test(chan, broadcast_batches_partial_full_and_wrapped) {
  rill_ipc_chan_opts_t o = {
      .slots = 8, .max_senders = 2, .max_receivers = 2, .policy = RILL_IPC_FAIL};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  rill_ipc_chan_t *r = open_as(&o, RILL_IPC_RECEIVER), *r2 = open_as(&o, RILL_IPC_RECEIVER);
  uint32_t max = rill_ipc_chan_max_payload(s);
  static uint8_t bufs[16][256];
  rill_iov_t iov[16];
  rill_ipc_msg_t m[16];
  uint32_t sent = 99, got = 99;
  fill_batch(iov, bufs, 0, 0, 5, max);
  cr_assert_eq(rill_ipc_chan_send_batch(s, iov, 5, 0, &sent), 0);
  cr_expect_eq(sent, 5);
  cr_assert_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 0, 5, max);
  cr_assert_eq(rill_ipc_chan_recv_batch(r2, m, 3, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 0, 3, max);
  /* r holds 0..4 and r2 0..2: 3 of 10 fit, then the ring is full. */
  fill_batch(iov, bufs, 0, 5, 10, max);
  cr_expect_eq(rill_ipc_chan_send_batch(s, iov, 10, 0, &sent), RILL_EFULL);
  cr_expect_eq(sent, 3, "sent %u", sent);
  cr_assert_eq(rill_ipc_chan_recv_batch(r2, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 3, 5, max);
  cr_assert_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 5, 3, max);
  cr_expect_eq(rill_ipc_chan_release(r2), 0, "release gives the whole batch back");
  /* r2 released 3..7, r holds 5..7: 5 more, wrapping around the ring. */
  cr_expect_eq(rill_ipc_chan_send_batch(s, iov + 3, 7, 0, &sent), RILL_EFULL);
  cr_expect_eq(sent, 5, "sent %u", sent);
  cr_assert_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 8, 5, max);
  cr_assert_eq(rill_ipc_chan_recv_batch(r2, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 8, 5, max);
  /* 0 looks once, a bound waits and times out. */
  cr_expect_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 0, NULL), RILL_EAGAIN);
  cr_expect_eq(got, 0);
  cr_expect_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 2000000, NULL), RILL_ETIMEDOUT);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(r2);
  rill_ipc_chan_close(s);
}

Test(chan, batch_arguments_roles_and_holes) {
  rill_ipc_chan_opts_t o = {.slots = 8, .max_senders = 2, .max_receivers = 2};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER), *s2 = open_as(&o, RILL_IPC_SENDER);
  rill_ipc_chan_t *r = open_as(&o, RILL_IPC_RECEIVER);
  uint32_t max = rill_ipc_chan_max_payload(s);
  static uint8_t bufs[16][256];
  rill_iov_t iov[16];
  rill_ipc_msg_t m[16];
  uint32_t sent = 99, got = 99;
  uint64_t lost = 99;
  cr_expect_eq(rill_ipc_chan_send_batch(s, NULL, 0, 0, &sent), 0);
  cr_expect_eq(sent, 0);
  cr_expect_eq(rill_ipc_chan_send_batch(s, NULL, 2, 0, &sent), RILL_EINVAL);
  cr_expect_eq(rill_ipc_chan_send_batch(NULL, NULL, 0, 0, &sent), RILL_EINVAL);
  fill_batch(iov, bufs, 0, 0, 3, max);
  cr_expect_eq(rill_ipc_chan_send_batch(r, iov, 3, 0, &sent), RILL_EINVAL, "on a receiver");
  cr_expect_eq(rill_ipc_chan_recv_batch(s, m, 4, &got, 0, NULL), RILL_EINVAL, "on a sender");
  cr_expect_eq(rill_ipc_chan_recv_batch(r, m, 0, &got, 0, NULL), RILL_EINVAL);
  cr_expect_eq(rill_ipc_chan_recv_batch(r, m, 4, NULL, 0, NULL), RILL_EINVAL);
  iov[1].data = NULL;
  cr_expect_eq(rill_ipc_chan_send_batch(s, iov, 3, 0, &sent), RILL_EINVAL);
  cr_expect_eq(sent, 1);
  cr_expect_neq(strstr(rill_errmsg(), "message 1 has no data"), NULL, "%s", rill_errmsg());
  /* A reservation open: a batch is refused as a send is. */
  void *buf;
  cr_assert_eq(rill_ipc_chan_reserve(s, 8, 0, &buf), 0);
  cr_expect_eq(rill_ipc_chan_send_batch(s, iov, 1, 0, &sent), RILL_EBUSY);
  /* s2's batch lands behind the reservation: the batch ends at the hole. */
  fill_batch(iov, bufs, 1, 0, 3, max);
  cr_assert_eq(rill_ipc_chan_send_batch(s2, iov, 3, 0, &sent), 0);
  cr_assert_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 0, 1, max);
  cr_expect_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 0, NULL), RILL_EAGAIN, "the hole");
  cr_assert_eq(rill_ipc_chan_cancel(s), 0);
  cr_expect_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 1);
  cr_expect_eq(got, 0);
  cr_assert_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 0, &lost), 0);
  cr_expect_eq(lost, 0);
  expect_batch(m, got, 1, 0, 3, max);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s2);
  rill_ipc_chan_close(s);
}

Test(chan, queue_batch_takes_one_at_a_time) {
  rill_ipc_chan_opts_t o = {
      .slots = 8, .max_senders = 1, .max_receivers = 2, .delivery = RILL_IPC_QUEUE};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  rill_ipc_chan_t *r = open_as(&o, RILL_IPC_RECEIVER), *r2 = open_as(&o, RILL_IPC_RECEIVER);
  uint32_t max = rill_ipc_chan_max_payload(s);
  static uint8_t bufs[16][256];
  rill_iov_t iov[16];
  rill_ipc_msg_t m[16];
  uint32_t sent = 0, got = 0;
  fill_batch(iov, bufs, 0, 0, 8, max);
  cr_assert_eq(rill_ipc_chan_send_batch(s, iov, 8, 0, &sent), 0);
  cr_expect_eq(sent, 8);
  /* A full queue under block: the wait times out, nothing more claimed. */
  cr_expect_eq(rill_ipc_chan_send_batch(s, iov, 2, 1000000, &sent), RILL_ETIMEDOUT);
  cr_expect_eq(sent, 0);
  for (uint32_t i = 0; i < 8; i++) {
    rill_ipc_chan_t *who = i % 2 ? r2 : r;
    cr_assert_eq(rill_ipc_chan_recv_batch(who, m, 16, &got, 0, NULL), 0);
    expect_batch(m, got, 0, i, 1, max);
  }
  cr_expect_eq(rill_ipc_chan_recv_batch(r, m, 16, &got, 0, NULL), RILL_EAGAIN);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(r2);
  rill_ipc_chan_close(s);
}

/* A slot scribbled in the middle of a batch: the batch ends before it,
 * and the next call says what is wrong. */
Test(chan, batch_stops_before_a_scribbled_slot) {
  rill_ipc_chan_opts_t o = {.slots = 8, .max_senders = 1, .max_receivers = 1};
  rill_ipc_chan_t *s = open_as(&o, RILL_IPC_SENDER);
  rill_ipc_chan_t *r = open_as(&o, RILL_IPC_RECEIVER);
  uint32_t max = rill_ipc_chan_max_payload(s);
  for (uint32_t i = 0; i < 4; i++)
    send_one(s, 0, i);
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/rill.%s", chan);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  uint32_t huge = 100000;
  /* The ring follows the header page and the table's (2 places). */
  cr_assert_eq(pwrite(fd, &huge, 4, 4096 * 2 + 2 * 128 + 8), 4);
  close(fd);
  rill_ipc_msg_t m[8];
  uint32_t got = 0;
  cr_assert_eq(rill_ipc_chan_recv_batch(r, m, 8, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 0, 2, max);
  cr_expect_eq(rill_ipc_chan_recv_batch(r, m, 8, &got, 0, NULL), RILL_ECORRUPT);
  cr_expect_eq(got, 0);
  rill_ipc_chan_close(r);
  rill_ipc_chan_close(s);
}
