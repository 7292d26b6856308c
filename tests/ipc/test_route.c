#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rill/ipc.h"

/* Offsets in the segment, as docs/FORMATS.md gives them. */
#define OFF_VERSION 4
#define OFF_SLOTS   8
#define OFF_TOTAL   24
#define OFF_HEAD    64

/* Every test its own route (Criterion runs each in a process of its own),
 * removed at the end whatever happened. */
static char route[64];

/* Each kind's unlink removes only its own: a test may leave either. */
static void unlink_any(void) {
  rill_ipc_route_unlink(route);
  rill_ipc_chan_unlink(route);
}
static void init_name(void) {
  snprintf(route, sizeof route, "test.%d", (int)getpid());
  unlink_any();
}
static void fini_name(void) { unlink_any(); }

TestSuite(ipc, .init = init_name, .fini = fini_name);

static void shm_file(char *buf, size_t cap) { snprintf(buf, cap, "/dev/shm/rill.%s", route); }

static rill_ipc_route_t *sender(const rill_ipc_route_opts_t *o) {
  rill_ipc_route_t *s = NULL;
  int rc = rill_ipc_route_open(&s, route, o, RILL_IPC_SENDER);
  cr_assert_eq(rc, 0, "open as a sender: %s (%s)", rill_strerror(rc), rill_errmsg());
  return s;
}

static rill_ipc_route_t *receiver(void) {
  rill_ipc_route_t *r = NULL;
  int rc = rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER);
  cr_assert_eq(rc, 0, "open as a receiver: %s (%s)", rill_strerror(rc), rill_errmsg());
  return r;
}

/* A message's bytes follow from its number, so content is checked too. */
static uint32_t fill(uint8_t *buf, uint64_t i, uint32_t max) {
  uint32_t len = (uint32_t)(8 + (i * 7) % (max - 7));
  memcpy(buf, &i, 8);
  for (uint32_t k = 8; k < len; k++)
    buf[k] = (uint8_t)(i * 31 + k);
  return len;
}

static void expect_msg(const rill_ipc_msg_t *m, uint64_t i, uint32_t max) {
  uint8_t want[1 << 12];
  uint32_t len = fill(want, i, max);
  cr_assert_eq(m->seq, i, "seq %llu, expected %llu", (unsigned long long)m->seq,
               (unsigned long long)i);
  cr_assert_eq(m->len, len, "message %llu: %u bytes, expected %u", (unsigned long long)i, m->len,
               len);
  cr_assert_eq(memcmp(m->data, want, len), 0, "message %llu: content", (unsigned long long)i);
}

static void send_n(rill_ipc_route_t *s, uint64_t from, uint64_t n) {
  uint8_t buf[1 << 12];
  for (uint64_t i = from; i < from + n; i++) {
    uint32_t len = fill(buf, i, rill_ipc_route_max_payload(s));
    int rc = rill_ipc_route_send(s, buf, len, 0);
    cr_assert_eq(rc, 0, "send %llu: %s (%s)", (unsigned long long)i, rill_strerror(rc),
                 rill_errmsg());
  }
}

static void recv_n(rill_ipc_route_t *r, uint64_t from, uint64_t n, uint32_t max) {
  for (uint64_t i = from; i < from + n; i++) {
    rill_ipc_msg_t m;
    int rc = rill_ipc_route_recv(r, &m, 1000000000ull, NULL);
    cr_assert_eq(rc, 0, "recv %llu: %s (%s)", (unsigned long long)i, rill_strerror(rc),
                 rill_errmsg());
    expect_msg(&m, i, max);
  }
}

Test(ipc, create_attach_and_layout_mismatch) {
  rill_ipc_route_opts_t o = {.slots = 8, .slot_size = 128, .max_receivers = 4};
  rill_ipc_route_t *s = sender(&o);
  cr_expect_eq(rill_ipc_route_max_payload(s), 128 - RILL_IPC_SLOT_HDR);
  char path[128];
  shm_file(path, sizeof path);
  struct stat sb;
  cr_assert_eq(stat(path, &sb), 0);
  cr_expect_eq(sb.st_mode & 0777, 0600, "mode %o", (unsigned)(sb.st_mode & 0777));
  cr_expect_eq(sb.st_size, 4096 + 4096 + 8 * 128, "size %lld", (long long)sb.st_size);
  rill_ipc_route_close(s);

  s = sender(NULL); /* no opts: the route as it is */
  cr_expect_eq(rill_ipc_route_max_payload(s), 112);
  rill_ipc_route_close(s);
  s = sender(&o);
  rill_ipc_route_close(s);

  rill_ipc_route_opts_t bad[] = {
      {.slots = 16, .slot_size = 128, .max_receivers = 4},
      {.slots = 8, .slot_size = 192, .max_receivers = 4},
      {.slots = 8, .slot_size = 128, .max_receivers = 5},
      {.slots = 8, .slot_size = 128, .max_receivers = 4, .policy = RILL_IPC_OVERWRITE},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s = (void *)1;
    int rc = rill_ipc_route_open(&s, route, &bad[i], RILL_IPC_SENDER);
    cr_expect_eq(rc, RILL_EINVAL, "mismatch %zu: %s", i, rill_strerror(rc));
    cr_expect_null(s);
    cr_expect_neq(strstr(rill_errmsg(), "exists with"), NULL, "%s", rill_errmsg());
  }

  /* Opts no route may have. */
  rill_ipc_route_opts_t invalid[] = {
      {.slots = 12},           {.slots = 1u << 25},   {.slot_size = 100},
      {.slot_size = 2u << 20}, {.max_receivers = 65}, {.policy = (rill_ipc_policy_t)7},
      {.mode = 01777},
  };
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
    cr_expect_eq(rill_ipc_route_open(&s, "test.never", &invalid[i], RILL_IPC_SENDER), RILL_EINVAL,
                 "opts %zu", i);
  cr_expect_eq(access("/dev/shm/rill.test.never", F_OK), -1, "nothing created");

  const char *names[] = {"", ".hidden", "a/b", "sp ace", NULL};
  rill_ipc_route_t *r;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    cr_expect_eq(rill_ipc_route_open(&s, names[i], NULL, RILL_IPC_SENDER), RILL_EINVAL, "name %zu",
                 i);
    cr_expect_eq(rill_ipc_route_open(&r, names[i], NULL, RILL_IPC_RECEIVER), RILL_EINVAL,
                 "name %zu", i);
  }
  char longname[RILL_IPC_MAX_NAME + 2];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  cr_expect_eq(rill_ipc_route_open(&r, longname, NULL, RILL_IPC_RECEIVER), RILL_EINVAL);

  cr_expect_eq(rill_ipc_route_open(&r, "test.no-such-route", NULL, RILL_IPC_RECEIVER), RILL_ENOENT);
  cr_expect_eq(rill_ipc_route_unlink(route), 0);
  cr_expect_eq(rill_ipc_route_unlink(route), RILL_ENOENT);
  cr_expect_eq(rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER), RILL_ENOENT);
}

/* One handle type, two roles, as a channel's: each role's calls on the
 * other are refused, and a receiver's opts are checked as a sender's. */
Test(ipc, one_handle_type_opened_in_a_role) {
  rill_ipc_route_opts_t o = {.slots = 8, .slot_size = 128, .max_receivers = 4};
  rill_ipc_route_t *x = (void *)1;
  cr_expect_eq(rill_ipc_route_open(&x, route, &o, (rill_ipc_role_t)9), RILL_EINVAL);
  cr_expect_null(x);
  cr_expect_eq(rill_ipc_route_open(&x, route, &o, RILL_IPC_RECEIVER), RILL_ENOENT,
               "a receiver does not create the route");
  rill_ipc_route_t *s = sender(&o);
  rill_ipc_route_opts_t other = {.slots = 16};
  cr_expect_eq(rill_ipc_route_open(&x, route, &other, RILL_IPC_RECEIVER), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "exists with"), NULL, "%s", rill_errmsg());
  rill_ipc_route_opts_t invalid = {.slots = 12};
  cr_expect_eq(rill_ipc_route_open(&x, route, &invalid, RILL_IPC_RECEIVER), RILL_EINVAL);
  rill_ipc_route_t *r = NULL;
  cr_assert_eq(rill_ipc_route_open(&r, route, &o, RILL_IPC_RECEIVER), 0);
  cr_expect_eq(rill_ipc_route_max_payload(r), rill_ipc_route_max_payload(s));
  cr_expect_eq(rill_ipc_route_max_message(r), rill_ipc_route_max_message(s));

  rill_ipc_msg_t m;
  void *buf;
  cr_expect_eq(rill_ipc_route_send(r, "x", 1, 0), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "on a receiver"), NULL, "%s", rill_errmsg());
  cr_expect_eq(rill_ipc_route_reserve(r, 1, 0, &buf), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_reserve(r, 1u << 20, 0, &buf), RILL_EINVAL, "not EMSGSIZE");
  cr_expect_eq(rill_ipc_route_send(r, route, 1u << 20, 0), RILL_EINVAL, "not EMSGSIZE");
  cr_expect_eq(rill_ipc_route_commit(r, 1), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_cancel(r), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_wait_receivers(r, 1, 0), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_recv(s, &m, 0, NULL), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "recv on a sender"), NULL, "%s", rill_errmsg());
  cr_expect_eq(rill_ipc_route_release(s), RILL_EINVAL);

  /* The roles still work after the refusals. */
  cr_expect_eq(rill_ipc_route_send(s, "x", 1, 0), 0);
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.len, 1);
  cr_expect_eq(rill_ipc_route_release(r), 0);
  /* A reservation ends with the handle, as a channel's. */
  cr_assert_eq(rill_ipc_route_reserve(s, 1, 0, &buf), 0);
  rill_ipc_route_close(s);
  s = sender(NULL);
  cr_expect_eq(rill_ipc_route_send(s, "y", 1, 0), 0);
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.seq, 1, "the cancelled reservation took no number");
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
  rill_ipc_route_close(NULL);
}

Test(ipc, mode_is_the_creators) {
  mode_t old = umask(077);
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4, .mode = 0640});
  umask(old);
  char path[128];
  shm_file(path, sizeof path);
  struct stat sb;
  cr_assert_eq(stat(path, &sb), 0);
  cr_expect_eq(sb.st_mode & 0777, 0640, "mode %o", (unsigned)(sb.st_mode & 0777));
  rill_ipc_route_close(s);
}

Test(ipc, second_live_sender_is_busy) {
  rill_ipc_route_t *s = sender(NULL), *s2 = (void *)1;
  cr_expect_eq(rill_ipc_route_open(&s2, route, NULL, RILL_IPC_SENDER), RILL_EBUSY);
  cr_expect_null(s2);
  cr_expect_neq(strstr(rill_errmsg(), "is its sender"), NULL, "%s", rill_errmsg());
  rill_ipc_route_close(s);
  s2 = sender(NULL);
  rill_ipc_route_close(s2);
}

Test(ipc, in_order_to_several_receivers) {
  rill_ipc_route_opts_t o = {.slots = 16, .slot_size = 256, .max_receivers = 4};
  rill_ipc_route_t *s = sender(&o);
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r[3] = {receiver(), receiver(), receiver()};
  rill_ipc_msg_t m;
  cr_expect_eq(rill_ipc_route_recv(r[0], &m, 0, NULL), RILL_EAGAIN, "empty");
  for (uint64_t round = 0; round < 20; round++) {
    send_n(s, round * 10, 10);
    for (int k = 0; k < 3; k++)
      recv_n(r[k], round * 10, 10, max);
  }
  /* A receiver that joins now gets what is published from now on. */
  rill_ipc_route_t *late = receiver();
  cr_expect_eq(rill_ipc_route_recv(late, &m, 0, NULL), RILL_EAGAIN);
  send_n(s, 200, 15); /* the others hold message 199's view: 15 slots free */
  recv_n(late, 200, 15, max);
  for (int k = 0; k < 3; k++)
    recv_n(r[k], 200, 15, max);
  cr_expect_eq(rill_ipc_route_recv(r[1], &m, 1000000, NULL), RILL_ETIMEDOUT);
  /* A fifth receiver has no place. */
  rill_ipc_route_t *fifth = (void *)1;
  cr_expect_eq(rill_ipc_route_open(&fifth, route, NULL, RILL_IPC_RECEIVER), RILL_EBUSY);
  cr_expect_null(fifth);
  rill_ipc_route_close(late);
  fifth = receiver(); /* the place late left */
  rill_ipc_route_close(fifth);
  for (int k = 0; k < 3; k++)
    rill_ipc_route_close(r[k]);
  rill_ipc_route_close(s);
}

Test(ipc, max_payload_and_msgsize) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4, .slot_size = 128});
  rill_ipc_route_t *r = receiver();
  uint8_t big[200];
  for (int i = 0; i < 200; i++)
    big[i] = (uint8_t)i;
  cr_expect_eq(rill_ipc_route_send(s, big, 113, 0), RILL_EMSGSIZE);
  cr_expect_neq(strstr(rill_errmsg(), "112"), NULL, "%s", rill_errmsg());
  cr_assert_eq(rill_ipc_route_send(s, big, 112, 0), 0);
  cr_assert_eq(rill_ipc_route_send(s, NULL, 0, 0), 0);
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.len, 112);
  cr_expect_eq(memcmp(m.data, big, 112), 0);
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(m.len, 0);
  cr_expect_eq(m.seq, 1);
  cr_expect_eq(rill_ipc_route_send(NULL, big, 1, 0), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_recv(r, NULL, 0, NULL), RILL_EINVAL);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
  rill_ipc_route_close(NULL);
  rill_ipc_route_close(NULL);
}

Test(ipc, fail_policy_is_full_a_ring_behind) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4, .policy = RILL_IPC_FAIL});
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *fast = receiver(), *slow = receiver();
  send_n(s, 0, 4);
  recv_n(fast, 0, 4, max);
  uint8_t b[8] = {0};
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 1000000000ull), RILL_EFULL,
               "the slow one is a ring behind");
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_route_recv(slow, &m, 0, NULL), 0);
  expect_msg(&m, 0, max);
  /* It still holds message 0's view: slot 0 is not free yet. */
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_EFULL);
  cr_assert_eq(rill_ipc_route_recv(slow, &m, 0, NULL), 0);
  expect_msg(&m, 1, max);
  send_n(s, 4, 1);
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_EFULL);
  rill_ipc_route_close(slow); /* the sender waits for it no more */
  send_n(s, 5, 2);            /* fast holds message 3's view */
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_EFULL);
  recv_n(fast, 4, 3, max);
  send_n(s, 7, 3);
  rill_ipc_route_close(fast);
  rill_ipc_route_close(s);
}

Test(ipc, release_gives_the_slot_back_before_the_next_receive) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4, .policy = RILL_IPC_FAIL});
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r = receiver();
  rill_ipc_msg_t m;
  cr_expect_eq(rill_ipc_route_release(r), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "no message held"), NULL, "%s", rill_errmsg());
  cr_expect_eq(rill_ipc_route_release(NULL), RILL_EINVAL);
  send_n(s, 0, 4);
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0);
  expect_msg(&m, 0, max);
  uint8_t b[8] = {0};
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_EFULL, "the view of 0 holds its slot");
  cr_expect_eq(rill_ipc_route_release(r), 0);
  cr_expect_eq(rill_ipc_route_release(r), RILL_EINVAL, "released already");
  send_n(s, 4, 1); /* slot 0 is free now */
  recv_n(r, 1, 4, max);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc, release_of_an_overwritten_view_says_so) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4, .policy = RILL_IPC_OVERWRITE});
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r = receiver();
  rill_ipc_msg_t m;
  uint64_t lost = 99;
  send_n(s, 0, 1);
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0);
  send_n(s, 1, 4); /* the fifth message overwrites the held view's slot */
  cr_expect_eq(rill_ipc_route_release(r), RILL_ELAGGED);
  cr_expect_neq(strstr(rill_errmsg(), "message 0 was overwritten"), NULL, "%s", rill_errmsg());
  /* Not counted again: the next receive goes on from 1. */
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, &lost), 0);
  cr_expect_eq(lost, 0);
  expect_msg(&m, 1, max);
  recv_n(r, 2, 3, max);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc, overwrite_reports_the_exact_loss) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 8, .policy = RILL_IPC_OVERWRITE});
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r = receiver();
  send_n(s, 0, 13); /* never waits: 0..4 are overwritten */
  rill_ipc_msg_t m;
  uint64_t lost = 99;
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 5, "lost %llu", (unsigned long long)lost);
  recv_n(r, 5, 8, max);
  /* Message 12's view is held while 8 more overwrite its slot: the next
   * call says so, then goes on. */
  send_n(s, 13, 8);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 1, "lost %llu", (unsigned long long)lost);
  recv_n(r, 13, 8, max);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, &lost), RILL_EAGAIN);
  cr_expect_eq(lost, 0);
  /* Lapped several times over (the call above gave message 20's view
   * back). */
  send_n(s, 21, 100);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 92, "lost %llu", (unsigned long long)lost);
  recv_n(r, 113, 8, max);
  /* Message 120's view overwritten and 121..212 lapped: one report. */
  send_n(s, 121, 100);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 93, "lost %llu", (unsigned long long)lost);
  recv_n(r, 213, 8, max);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc, block_times_out) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4});
  rill_ipc_route_t *r = receiver();
  send_n(s, 0, 4);
  uint8_t b[8] = {0};
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 20000000), RILL_ETIMEDOUT);
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_ETIMEDOUT);
  rill_ipc_msg_t m;
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0);
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0); /* gives message 0's slot back */
  send_n(s, 4, 1);
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 1000000), RILL_ETIMEDOUT);
  rill_ipc_route_close(r);
  /* Nobody to wait for, and nobody to get it: not sent, and said so. */
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_EPIPE);
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 1000000000ull), RILL_EPIPE, "no wait for nobody");
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.head, 5, "nothing published");
  rill_ipc_route_close(s);
}

Test(ipc, spin_mode_block_times_out) {
  rill_ipc_route_t *s =
      sender(&(rill_ipc_route_opts_t){.slots = 2, .wait = RILL_IPC_SPIN, .spin_ns = 1000000});
  rill_ipc_route_t *r = receiver();
  send_n(s, 0, 2);
  uint8_t b[8] = {0};
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 5000000), RILL_ETIMEDOUT);
  rill_ipc_msg_t m;
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), 0);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 3000000, NULL), RILL_ETIMEDOUT);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

/* A child that attaches as a receiver and dies without closing. The parent
 * does not wait for it before sending: a zombie is dead too. */
static pid_t dead_receiver(void) {
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    rill_ipc_route_t *r;
    _exit(rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER) == 0 ? 0 : 1);
  }
  /* Wait for its attach through info rather than waitpid, to keep it a
   * zombie. */
  for (int i = 0; i < 5000; i++) {
    rill_ipc_route_info_t info;
    if (rill_ipc_route_info(route, &info) == 0 && info.receivers == 1 && info.receivers_dead == 1)
      return pid;
    usleep(1000);
  }
  cr_assert_fail("the child receiver did not attach");
  return pid;
}

Test(ipc, block_reaps_a_dead_receiver) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4, .max_receivers = 1});
  uint32_t max = rill_ipc_route_max_payload(s);
  pid_t pid = dead_receiver();
  /* Its place is taken; the only one. */
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.receivers, 1);
  cr_expect_eq(info.receivers_dead, 1);
  send_n(s, 0, 4); /* counted until it is reaped */
  uint8_t b[8] = {0};
  /* The wait reaps it, and then nobody is there: not sent. */
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 5000000000ull), RILL_EPIPE, "reaped: %s",
               rill_errmsg());
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.receivers, 0);
  cr_expect_eq(info.head, 4);
  rill_ipc_route_t *r = receiver();
  send_n(s, 4, 3);
  recv_n(r, 4, 3, max);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
  waitpid(pid, NULL, 0);
}

Test(ipc, receiver_reaps_a_dead_place) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4, .max_receivers = 1});
  pid_t pid = dead_receiver();
  rill_ipc_route_t *r = receiver(); /* the dead one's place */
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.receivers, 1);
  cr_expect_eq(info.receivers_dead, 0);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
  waitpid(pid, NULL, 0);
}

Test(ipc, a_new_sender_takes_over_from_a_dead_one) {
  rill_ipc_route_opts_t o = {.slots = 8};
  rill_ipc_route_t *s = sender(&o);
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_close(s);
  rill_ipc_route_t *r = receiver();
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    rill_ipc_route_t *c;
    if (rill_ipc_route_open(&c, route, &o, RILL_IPC_SENDER))
      _exit(1);
    uint8_t buf[256];
    for (uint64_t i = 0; i < 3; i++)
      if (rill_ipc_route_send(c, buf, fill(buf, i, max), 0))
        _exit(2);
    _exit(0); /* without closing */
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.sender, pid);
  cr_expect(!info.sender_alive);
  cr_expect_eq(info.head, 3);

  /* As if it had died between the mark of message 2 and head: the mark
   * published it, and the new sender goes on after it. */
  char path[128];
  shm_file(path, sizeof path);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  uint64_t head = 2;
  cr_assert_eq(pwrite(fd, &head, 8, OFF_HEAD), 8);
  close(fd);

  s = sender(&o);
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.sender, getpid());
  cr_expect(info.sender_alive);
  cr_expect_eq(info.head, 3);
  send_n(s, 3, 2);
  recv_n(r, 0, 5, max);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

/* ---- corrupted segments ------------------------------------------------------ */

static void poke(off_t off, const void *bytes, size_t n) {
  char path[128];
  shm_file(path, sizeof path);
  int fd = open(path, O_RDWR);
  cr_assert_geq(fd, 0);
  cr_assert_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
  close(fd);
}

static void expect_refused(int code, const char *words) {
  rill_ipc_route_t *r = (void *)1;
  int rc = rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER);
  cr_expect_eq(rc, code, "receiver: %s (%s)", rill_strerror(rc), rill_errmsg());
  cr_expect_null(r);
  cr_expect_neq(strstr(rill_errmsg(), words), NULL, "\"%s\" lacks \"%s\"", rill_errmsg(), words);
  rill_ipc_route_t *s = (void *)1;
  rc = rill_ipc_route_open(&s, route, NULL, RILL_IPC_SENDER);
  cr_expect_eq(rc, code, "sender: %s (%s)", rill_strerror(rc), rill_errmsg());
  cr_expect_null(s);
  rill_ipc_route_info_t info;
  cr_expect_eq(rill_ipc_route_info(route, &info), code);
}

static void fresh(void) {
  rill_ipc_route_unlink(route);
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 8, .max_receivers = 2});
  rill_ipc_route_close(s);
}

Test(ipc, corrupted_segments_are_refused) {
  fresh();
  poke(0, "XLIP", 4);
  expect_refused(RILL_EVERSION, "magic");

  fresh();
  uint16_t v = RILL_IPC_VERSION + 1;
  poke(OFF_VERSION, &v, 2);
  expect_refused(RILL_EVERSION, "this build knows");

  fresh();
  uint32_t slots = 12;
  poke(OFF_SLOTS, &slots, 4);
  expect_refused(RILL_ECORRUPT, "not a power of two");

  fresh();
  uint64_t total = 4096;
  poke(OFF_TOTAL, &total, 8);
  expect_refused(RILL_ECORRUPT, "header says 4096 bytes");

  fresh();
  char path[128];
  shm_file(path, sizeof path);
  cr_assert_eq(truncate(path, 4096 * 2 + 8 * 128 + 64), 0);
  expect_refused(RILL_ECORRUPT, "the segment is 9280 bytes");

  /* A creator that died before its header: no magic, however long. */
  rill_ipc_route_unlink(route);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  cr_assert_geq(fd, 0);
  close(fd);
  expect_refused(RILL_ECORRUPT, "no header");
  cr_assert_eq(truncate(path, 4096 * 2 + 8 * 128), 0);
  expect_refused(RILL_ECORRUPT, "no header");
}

/* ---- info and list ------------------------------------------------------------- */

struct seen {
  bool found;
  rill_ipc_route_info_t info;
};

static int on_route(void *ctx, const rill_ipc_route_info_t *info) {
  struct seen *x = ctx;
  if (strcmp(info->name, route) == 0) {
    x->found = true;
    x->info = *info;
  }
  return 0;
}

static int stop_at_first(void *ctx, const rill_ipc_route_info_t *info) {
  (void)info;
  ++*(int *)ctx;
  return 7;
}

Test(ipc, info_and_list) {
  rill_ipc_route_t *s =
      sender(&(rill_ipc_route_opts_t){.slots = 16, .max_receivers = 8, .policy = RILL_IPC_FAIL});
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *a = receiver(), *b = receiver();
  send_n(s, 0, 5);
  recv_n(a, 0, 5, max);
  recv_n(b, 0, 2, max);
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_str_eq(info.name, route);
  cr_expect_eq(info.slots, 16);
  cr_expect_eq(info.slot_size, 128);
  cr_expect_eq(info.max_receivers, 8);
  cr_expect_eq(info.policy, RILL_IPC_FAIL);
  cr_expect_eq(info.head, 5);
  cr_expect_eq(info.sender, getpid());
  cr_expect(info.sender_alive);
  cr_expect_eq(info.receivers, 2);
  cr_expect_eq(info.receivers_dead, 0);
  cr_expect_eq(info.slowest, 1, "b holds message 1: %llu", (unsigned long long)info.slowest);

  struct seen x = {0};
  cr_assert_eq(rill_ipc_route_list(on_route, &x), 0);
  cr_expect(x.found);
  cr_expect_eq(x.info.head, 5);
  int calls = 0;
  cr_expect_eq(rill_ipc_route_list(stop_at_first, &calls), 7);
  cr_expect_eq(calls, 1);

  rill_ipc_route_close(a);
  rill_ipc_route_close(b);
  rill_ipc_route_close(s);
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.sender, 0);
  cr_expect_eq(info.receivers, 0);
  cr_expect_eq(info.slowest, 5);

  cr_expect_eq(rill_ipc_route_unlink(route), 0);
  x.found = false;
  cr_assert_eq(rill_ipc_route_list(on_route, &x), 0);
  cr_expect(!x.found);
  cr_expect_eq(rill_ipc_route_info(route, &info), RILL_ENOENT);
}

/* ---- the create race ----------------------------------------------------------- */

/* Processes opening one route at once, over and over, while it is created
 * and removed: every open ends in a route whose header is whole (or in
 * EBUSY, ENOENT), never in one taken half-made (ECORRUPT, EVERSION). */
static int race(int as_sender, int rounds) {
  rill_ipc_route_opts_t o = {.slots = 64, .max_receivers = 8};
  for (int i = 0; i < rounds; i++) {
    int rc;
    if (as_sender) {
      rill_ipc_route_t *s;
      rc = rill_ipc_route_open(&s, route, &o, RILL_IPC_SENDER);
      if (rc == 0) {
        if (rill_ipc_route_max_payload(s) != 112)
          return 100;
        rill_ipc_route_close(s);
      }
    } else {
      rill_ipc_route_t *r;
      rc = rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER);
      if (rc == 0)
        rill_ipc_route_close(r);
    }
    if (rc != 0 && rc != RILL_EBUSY && rc != RILL_ENOENT) {
      fprintf(stderr, "race: %s (%s)\n", rill_strerror(rc), rill_errmsg());
      return 1;
    }
    if (i % 16 == 15)
      rill_ipc_route_unlink(route);
  }
  return 0;
}

Test(ipc, create_race) {
  pid_t kids[4];
  for (int k = 0; k < 4; k++) {
    kids[k] = fork();
    cr_assert_geq(kids[k], 0);
    if (kids[k] == 0)
      _exit(race(k < 2, 2000));
  }
  for (int k = 0; k < 4; k++) {
    int st;
    cr_assert_eq(waitpid(kids[k], &st, 0), kids[k]);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status 0x%x", k, st);
  }
}

/* ---- nobody to receive, and a route removed under its users ---------------- */

Test(ipc, a_send_nobody_can_receive_is_epipe) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 8});
  uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_EPIPE);
  cr_expect_neq(strstr(rill_errmsg(), "no receiver"), NULL, "%s", rill_errmsg());
  void *buf = (void *)1;
  cr_expect_eq(rill_ipc_route_reserve(s, 8, 0, &buf), RILL_EPIPE);
  cr_expect_null(buf);
  cr_expect_eq(rill_ipc_route_wait_receivers(s, 1, 0), RILL_EAGAIN);
  cr_expect_eq(rill_ipc_route_wait_receivers(s, 1, 2000000), RILL_ETIMEDOUT);
  cr_expect_eq(rill_ipc_route_wait_receivers(s, 0, 0), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_wait_receivers(s, 65, 0), RILL_EINVAL);
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.head, 0, "nothing was published");

  rill_ipc_route_t *r = receiver();
  cr_expect_eq(rill_ipc_route_wait_receivers(s, 1, 0), 0);
  send_n(s, 0, 3);
  recv_n(r, 0, 3, rill_ipc_route_max_payload(s));
  rill_ipc_route_close(r);
  /* The sender counted it: its leave is seen at the next send. */
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_EPIPE);
  rill_ipc_route_close(s);
}

/* The README's demo, in one process pair: a receiver that attaches while
 * the sender waits for it gets the first message sent after the wait. */
Test(ipc, a_message_sent_once_a_receiver_is_attached_reaches_it) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 8});
  uint32_t max = rill_ipc_route_max_payload(s);
  for (int round = 0; round < 20; round++) {
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
      rill_ipc_route_t *r;
      if (rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER))
        _exit(2);
      rill_ipc_msg_t m;
      int rc = rill_ipc_route_recv(r, &m, 10000000000ull, NULL);
      _exit(rc == 0 && m.len == 8 && !memcmp(m.data, &round, sizeof round) ? 0 : 1);
    }
    int rc = rill_ipc_route_wait_receivers(s, 1, 10000000000ull);
    cr_assert_eq(rc, 0, "round %d: %s", round, rill_errmsg());
    uint8_t b[8] = {0};
    memcpy(b, &round, sizeof round);
    cr_assert_eq(rill_ipc_route_send(s, b, 8, 0), 0, "round %d: %s", round, rill_errmsg());
    int st = -1;
    waitpid(pid, &st, 0);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: the receiver got %d", round, st);
    /* Reaped (it exited without closing): the next round waits again. */
  }
  (void)max;
  rill_ipc_route_close(s);
}

/* Each kind's unlink removes only its own kind: a channel is not removed
 * (nor told it was) by rill_ipc_route_unlink, a route not by
 * rill_ipc_chan_unlink; a segment that is neither is removed by either. */
Test(ipc, unlink_checks_the_kind) {
  rill_ipc_chan_t *ch;
  cr_assert_eq(rill_ipc_chan_open(&ch, route, NULL, RILL_IPC_SENDER), 0, "%s", rill_errmsg());
  cr_expect_eq(rill_ipc_route_unlink(route), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "is a channel"), NULL, "%s", rill_errmsg());
  rill_ipc_chan_info_t ci;
  cr_expect_eq(rill_ipc_chan_info(route, &ci), 0, "the channel is still there");
  cr_expect_neq(rill_ipc_chan_send(ch, "x", 1, 0), RILL_ECLOSED, "and not told it was removed");
  rill_ipc_chan_close(ch);
  cr_expect_eq(rill_ipc_chan_unlink(route), 0);

  rill_ipc_route_t *s = sender(NULL);
  cr_expect_eq(rill_ipc_chan_unlink(route), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "is a route"), NULL, "%s", rill_errmsg());
  rill_ipc_route_info_t ri;
  cr_expect_eq(rill_ipc_route_info(route, &ri), 0, "the route is still there");
  rill_ipc_route_close(s);
  cr_expect_eq(rill_ipc_route_unlink(route), 0);

  /* Neither: bytes of no rill kind under the name. */
  char path[128];
  shm_file(path, sizeof path);
  int fd = open(path, O_CREAT | O_RDWR | O_EXCL, 0600);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, "not rill", 8), 8);
  close(fd);
  cr_expect_eq(rill_ipc_chan_unlink(route), 0);
  cr_expect_eq(rill_ipc_route_unlink(route), RILL_ENOENT);
}

Test(ipc, unlink_tells_the_sender_and_receivers) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 8});
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r = receiver();
  /* A receiver parked in another process is woken by the removal. */
  int ready[2];
  cr_assert_eq(pipe(ready), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    rill_ipc_route_t *r2;
    if (rill_ipc_route_open(&r2, route, NULL, RILL_IPC_RECEIVER))
      _exit(2);
    if (write(ready[1], "r", 1) != 1)
      _exit(3);
    rill_ipc_msg_t m;
    int rc;
    do
      rc = rill_ipc_route_recv(r2, &m, 30000000000ull, NULL);
    while (rc == 0);
    _exit(rc == RILL_ECLOSED ? 0 : 1);
  }
  char c;
  cr_assert_eq(read(ready[0], &c, 1), 1);
  send_n(s, 0, 2);
  cr_expect_eq(rill_ipc_route_unlink(route), 0);
  int st = -1;
  waitpid(pid, &st, 0);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the parked receiver ended with %d", st);
  /* What was published before is still read; then ECLOSED, every time. */
  recv_n(r, 0, 2, max);
  rill_ipc_msg_t m;
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_ECLOSED);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 1000000, NULL), RILL_ECLOSED);
  cr_expect_neq(strstr(rill_errmsg(), "removed"), NULL, "%s", rill_errmsg());
  uint8_t b[8] = {0};
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_ECLOSED);
  cr_expect_eq(rill_ipc_route_wait_receivers(s, 1, 0), RILL_ECLOSED);
  /* A new route under the name is another route: the old handles still
   * see theirs removed. */
  rill_ipc_route_t *s2 = sender(&(rill_ipc_route_opts_t){.slots = 8});
  rill_ipc_route_t *r2 = receiver();
  send_n(s2, 0, 1);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_ECLOSED);
  recv_n(r2, 0, 1, max);
  rill_ipc_route_close(r2);
  rill_ipc_route_close(s2);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
  close(ready[0]);
  close(ready[1]);
}

/* The words the receiver count and removal rest on, forged: a removed bit
 * keeps opens out, a ready word on a free place counts nobody, and a
 * scribbled leave count only makes the sender count again. */
Test(ipc, forged_gone_and_ready_words) {
  fresh();
  uint32_t removed = 1u << 31;
  poke(72, &removed, 4);
  rill_ipc_route_t *r = (void *)1;
  cr_expect_eq(rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER), RILL_ENOENT);
  cr_expect_neq(strstr(rill_errmsg(), "being removed"), NULL, "%s", rill_errmsg());
  rill_ipc_route_t *s = (void *)1;
  cr_expect_eq(rill_ipc_route_open(&s, route, NULL, RILL_IPC_SENDER), RILL_ENOENT);

  fresh();
  uint32_t one = 1;
  poke(4096 + 64 * 1 + 28, &one, 4); /* receiver place 1: free, but "ready" */
  s = sender(NULL);
  uint8_t b[8] = {0};
  cr_expect_eq(rill_ipc_route_send(s, b, 8, 0), RILL_EPIPE, "a free place is nobody");
  r = receiver();
  send_n(s, 0, 2);
  uint32_t leaves = 12345;
  poke(72, &leaves, 4);
  send_n(s, 2, 2); /* recounted: the receiver is still there */
  recv_n(r, 0, 4, rill_ipc_route_max_payload(s));
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

/* ---- batches ------------------------------------------------------------------ */

/* n messages from number `from`, as fill makes them, in bufs (iov into it). */
static void fill_batch(rill_iov_t *iov, uint8_t (*bufs)[256], uint64_t from, uint32_t n,
                       uint32_t max) {
  for (uint32_t k = 0; k < n; k++)
    iov[k] = (rill_iov_t){bufs[k], fill(bufs[k], from + k, max)};
}

static void expect_batch(const rill_ipc_msg_t *m, uint32_t got, uint64_t from, uint32_t n,
                         uint32_t max) {
  cr_assert_eq(got, n, "got %u, expected %u", got, n);
  for (uint32_t k = 0; k < n; k++) {
    expect_msg(&m[k], from + k, max);
    cr_expect_eq(m[k].flags, 0);
  }
}

Test(ipc, batches_partial_full_and_wrapped) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 8, .policy = RILL_IPC_FAIL});
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r = receiver();
  static uint8_t bufs[16][256];
  rill_iov_t iov[16];
  rill_ipc_msg_t m[16];
  uint32_t sent = 99, got = 99;
  fill_batch(iov, bufs, 0, 5, max);
  cr_assert_eq(rill_ipc_route_send_batch(s, iov, 5, 0, &sent), 0);
  cr_expect_eq(sent, 5);
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.head, 5, "head moved for the run");
  /* Fewer ready than asked: what is there, at once. */
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 5, max);
  /* The 5 views hold their slots: 3 of 10 fit, and the ring is full. */
  fill_batch(iov, bufs, 5, 10, max);
  cr_expect_eq(rill_ipc_route_send_batch(s, iov, 10, 0, &sent), RILL_EFULL);
  cr_expect_eq(sent, 3, "sent %u", sent);
  /* Held views are still intact while the sender waits. */
  expect_batch(m, 5, 0, 5, max);
  /* A batch of at most max. */
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 2, &got, 0, NULL), 0);
  expect_batch(m, got, 5, 2, max);
  /* The 5 given back: the next 5 go out, wrapping around the ring. */
  cr_expect_eq(rill_ipc_route_send_batch(s, iov + 3, 7, 0, &sent), RILL_EFULL);
  cr_expect_eq(sent, 5, "sent %u", sent);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 7, 6, max);
  cr_expect_eq(rill_ipc_route_release(r), 0, "release gives the whole batch back");
  cr_expect_eq(rill_ipc_route_send_batch(s, iov + 8, 2, 0, &sent), 0);
  cr_expect_eq(sent, 2);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 13, 2, max);
  /* One at a time and batches mix. */
  send_n(s, 15, 1);
  recv_n(r, 15, 1, max);
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.head, 16);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc, batch_arguments_roles_and_timeouts) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4});
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r = receiver();
  rill_ipc_msg_t m[4];
  uint32_t sent = 99, got = 99;
  uint64_t lost = 99;
  cr_expect_eq(rill_ipc_route_send_batch(s, NULL, 0, 0, &sent), 0, "nothing to send");
  cr_expect_eq(sent, 0);
  cr_expect_eq(rill_ipc_route_send_batch(s, NULL, 1, 0, &sent), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_send_batch(NULL, NULL, 0, 0, &sent), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_recv_batch(r, m, 0, &got, 0, NULL), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_recv_batch(r, m, 4, NULL, 0, NULL), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_recv_batch(s, m, 4, &got, 0, NULL), RILL_EINVAL, "on a sender");
  cr_expect_eq(got, 0);
  static uint8_t bufs[8][256];
  rill_iov_t iov[8];
  fill_batch(iov, bufs, 0, 3, max);
  cr_expect_eq(rill_ipc_route_send_batch(r, iov, 3, 0, &sent), RILL_EINVAL, "on a receiver");
  cr_expect_eq(sent, 0);
  /* Data missing in the middle: what came before it goes out. */
  iov[1].data = NULL;
  cr_expect_eq(rill_ipc_route_send_batch(s, iov, 3, 0, &sent), RILL_EINVAL);
  cr_expect_eq(sent, 1);
  cr_expect_neq(strstr(rill_errmsg(), "message 1 has no data"), NULL, "%s", rill_errmsg());
  /* An empty message is a message. */
  iov[1] = (rill_iov_t){NULL, 0};
  cr_expect_eq(rill_ipc_route_send_batch(s, iov + 1, 1, 0, &sent), 0);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 4, &got, 0, &lost), 0);
  cr_expect_eq(got, 2);
  cr_expect_eq(lost, 0);
  expect_msg(&m[0], 0, max);
  cr_expect_eq(m[1].len, 0);
  cr_expect_eq(m[1].seq, 1);
  /* 0 looks once; a bound waits, then times out; spin or park alike. */
  cr_expect_eq(rill_ipc_route_recv_batch(r, m, 4, &got, 0, NULL), RILL_EAGAIN);
  cr_expect_eq(got, 0);
  cr_expect_eq(rill_ipc_route_recv_batch(r, m, 4, &got, 2000000, NULL), RILL_ETIMEDOUT);
  fill_batch(iov, bufs, 2, 6, max);
  /* A full ring under block: what fits, then the wait times out. */
  cr_expect_eq(rill_ipc_route_send_batch(s, iov, 6, 2000000, &sent), RILL_ETIMEDOUT);
  cr_expect_eq(sent, 4, "sent %u", sent);
  cr_expect_eq(rill_ipc_route_send_batch(s, iov + 4, 2, 0, &sent), RILL_ETIMEDOUT);
  cr_expect_eq(sent, 0);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 4, &got, 0, NULL), 0);
  expect_batch(m, got, 2, 4, max);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc, batch_mixes_inline_and_pooled) {
  rill_ipc_route_t *s =
      sender(&(rill_ipc_route_opts_t){.slots = 8, .max_message = 4000, .pool_chunks = 2});
  rill_ipc_route_t *r = receiver();
  static uint8_t big[3][4000];
  rill_iov_t iov[6];
  for (int k = 0; k < 3; k++)
    memset(big[k], 'a' + k, sizeof big[k]);
  uint8_t small[8] = "inline!";
  iov[0] = (rill_iov_t){small, 8};
  iov[1] = (rill_iov_t){big[0], 4000};
  iov[2] = (rill_iov_t){small, 8};
  iov[3] = (rill_iov_t){big[1], 3000};
  iov[4] = (rill_iov_t){big[2], 200}; /* over a slot's 112: a chunk */
  iov[5] = (rill_iov_t){small, 4};
  uint32_t sent = 0, got = 0;
  /* Two chunks: the third pooled message waits for a receiver. */
  cr_expect_eq(rill_ipc_route_send_batch(s, iov, 6, 0, &sent), RILL_ETIMEDOUT);
  cr_expect_eq(sent, 4, "sent %u", sent);
  rill_ipc_msg_t m[8];
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 8, &got, 0, NULL), 0);
  cr_assert_eq(got, 4);
  uint32_t want_len[4] = {8, 4000, 8, 3000};
  for (uint32_t k = 0; k < 4; k++) {
    cr_expect_eq(m[k].len, want_len[k]);
    cr_expect_eq(m[k].seq, k);
    cr_expect_eq(memcmp(m[k].data, iov[k].data, want_len[k]), 0, "message %u", k);
  }
  cr_expect_eq(rill_ipc_route_release(r), 0);
  cr_expect_eq(rill_ipc_route_send_batch(s, iov + 4, 2, 0, &sent), 0);
  cr_expect_eq(sent, 2);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 8, &got, 0, NULL), 0);
  cr_assert_eq(got, 2);
  cr_expect_eq(m[0].len, 200);
  cr_expect_eq(memcmp(m[0].data, big[2], 200), 0);
  cr_expect_eq(m[1].len, 4);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc, batch_views_overwritten_are_counted) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 8, .policy = RILL_IPC_OVERWRITE});
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r = receiver();
  static uint8_t bufs[16][256];
  rill_iov_t iov[16];
  rill_ipc_msg_t m[16];
  uint32_t sent = 0, got = 0;
  uint64_t lost = 99;
  fill_batch(iov, bufs, 0, 4, max);
  cr_assert_eq(rill_ipc_route_send_batch(s, iov, 4, 0, &sent), 0);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 16, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 4, max);
  /* Message 8 overwrites the slot of 0, one of the 4 views held. */
  fill_batch(iov, bufs, 4, 5, max);
  cr_assert_eq(rill_ipc_route_send_batch(s, iov, 5, 0, &sent), 0);
  cr_expect_eq(rill_ipc_route_recv_batch(r, m, 16, &got, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 1, "lost %llu", (unsigned long long)lost);
  cr_expect_eq(got, 0);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 16, &got, 0, &lost), 0);
  cr_expect_eq(lost, 0);
  expect_batch(m, got, 4, 5, max);
  /* All 5 views held overwritten (4..8, by 12..16), then 9..10 lapped by
   * 17..18: one report of 7. */
  fill_batch(iov, bufs, 9, 10, max);
  cr_assert_eq(rill_ipc_route_send_batch(s, iov, 10, 0, &sent), 0);
  cr_expect_eq(rill_ipc_route_recv_batch(r, m, 16, &got, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 7, "lost %llu", (unsigned long long)lost);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 16, &got, 0, &lost), 0);
  expect_batch(m, got, 11, 8, max);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc, batch_send_reaps_a_dead_receiver) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 4, .max_receivers = 1});
  uint32_t max = rill_ipc_route_max_payload(s);
  pid_t pid = dead_receiver();
  static uint8_t bufs[8][256];
  rill_iov_t iov[8];
  fill_batch(iov, bufs, 0, 6, max);
  uint32_t sent = 0;
  /* 4 fit; the wait for the 5th reaps it, and nobody is left. */
  cr_expect_eq(rill_ipc_route_send_batch(s, iov, 6, 5000000000ull, &sent), RILL_EPIPE, "%s",
               rill_errmsg());
  cr_expect_eq(sent, 4, "sent %u", sent);
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.receivers, 0);
  cr_expect_eq(info.head, 4);
  rill_ipc_route_close(s);
  waitpid(pid, NULL, 0);
}

/* The slots of fresh()'s route: 8 of 128 bytes after the header and the
 * table's page. */
#define RING_OFF (4096 * 2)

Test(ipc, batch_stops_before_a_scribbled_slot) {
  fresh();
  rill_ipc_route_t *s = sender(NULL);
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r = receiver();
  send_n(s, 0, 4);
  uint32_t huge = 100000;
  poke(RING_OFF + 2 * 128 + 8, &huge, 4); /* message 2's length */
  rill_ipc_msg_t m[8];
  uint32_t got = 0;
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 8, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 2, max);
  cr_expect_eq(rill_ipc_route_recv_batch(r, m, 8, &got, 0, NULL), RILL_ECORRUPT);
  cr_expect_eq(got, 0);
  cr_expect_neq(strstr(rill_errmsg(), "says 100000 bytes"), NULL, "%s", rill_errmsg());
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);

  /* A mark from the future in the middle of a batch: the batch ends before
   * it; a later look takes it for a lap, never for a message. */
  fresh();
  s = sender(NULL);
  r = receiver();
  send_n(s, 0, 3);
  uint64_t future = 1000;
  poke(RING_OFF + 1 * 128, &future, 8);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 8, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 1, max);
  uint64_t lost = 0;
  int rc = rill_ipc_route_recv_batch(r, m, 8, &got, 0, &lost);
  cr_expect_eq(rc, RILL_ELAGGED, "%s", rill_strerror(rc));
  cr_expect_eq(lost, 1);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 8, &got, 0, NULL), 0);
  expect_batch(m, got, 2, 1, max);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc, a_new_sender_takes_over_after_a_batch_head_never_covered) {
  rill_ipc_route_opts_t o = {.slots = 8};
  rill_ipc_route_t *s = sender(&o);
  uint32_t max = rill_ipc_route_max_payload(s);
  rill_ipc_route_t *r = receiver();
  static uint8_t bufs[8][256];
  rill_iov_t iov[8];
  fill_batch(iov, bufs, 0, 5, max);
  uint32_t sent = 0;
  cr_assert_eq(rill_ipc_route_send_batch(s, iov, 5, 0, &sent), 0);
  /* As if it had died after the run's marks and before its head: all 5
   * are published, and the receiver may have read some already. */
  uint64_t head = 1;
  poke(OFF_HEAD, &head, 8);
  rill_ipc_msg_t m[8];
  uint32_t got = 0;
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 3, &got, 0, NULL), 0);
  expect_batch(m, got, 0, 3, max);
  rill_ipc_route_close(s);
  s = sender(&o);
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.head, 5, "head %llu", (unsigned long long)info.head);
  send_n(s, 5, 2);
  cr_assert_eq(rill_ipc_route_recv_batch(r, m, 8, &got, 0, NULL), 0);
  expect_batch(m, got, 3, 4, max);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}
