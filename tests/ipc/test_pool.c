/*
 * The route's chunk pool: messages over a slot's payload through shared
 * chunks, read in place; the edges of the sizes, chunks coming back, a
 * dead receiver's hold on a chunk ending when it is reaped, and the
 * segment checks of the pool's header fields.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rill/ipc.h"

/* Offsets in the segment, as docs/FORMATS.md gives them. */
#define OFF_FLAGS       20
#define OFF_MAX_MESSAGE 40
#define OFF_CLASSES     44
#define OFF_CLASS0      256 /* size, then chunks; 8 bytes a class */
#define PAGE            4096u

static char route[64];

static void init_name(void) {
  snprintf(route, sizeof route, "testpool.%d", (int)getpid());
  rill_ipc_route_unlink(route);
}
static void fini_name(void) { rill_ipc_route_unlink(route); }

TestSuite(ipc_pool, .init = init_name, .fini = fini_name);

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

/* Message i of len bytes: its number, then bytes that follow from both. */
static uint8_t *make(uint64_t i, uint32_t len) {
  uint8_t *b = malloc(len ? len : 1);
  cr_assert_not_null(b);
  for (uint32_t k = 0; k < len; k++)
    b[k] = (uint8_t)(i * 131 + k * 7 + (k >> 8));
  if (len >= 8)
    memcpy(b, &i, 8);
  return b;
}

static void send_msg(rill_ipc_route_t *s, uint64_t i, uint32_t len) {
  uint8_t *b = make(i, len);
  int rc = rill_ipc_route_send(s, b, len, 5000000000ull);
  free(b);
  cr_assert_eq(rc, 0, "send %llu (%u bytes): %s (%s)", (unsigned long long)i, len,
               rill_strerror(rc), rill_errmsg());
}

static void expect_msg(const rill_ipc_msg_t *m, uint64_t i, uint32_t len) {
  cr_assert_eq(m->seq, i, "seq %llu, expected %llu", (unsigned long long)m->seq,
               (unsigned long long)i);
  cr_assert_eq(m->len, len, "message %llu: %u bytes, expected %u", (unsigned long long)i, m->len,
               len);
  uint8_t *want = make(i, len);
  cr_assert_eq(memcmp(m->data, want, len), 0, "message %llu: content", (unsigned long long)i);
  free(want);
}

static void recv_msg(rill_ipc_route_t *r, uint64_t i, uint32_t len) {
  rill_ipc_msg_t m;
  int rc = rill_ipc_route_recv(r, &m, 5000000000ull, NULL);
  cr_assert_eq(rc, 0, "recv %llu: %s (%s)", (unsigned long long)i, rill_strerror(rc),
               rill_errmsg());
  expect_msg(&m, i, len);
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

Test(ipc_pool, layout_opts_and_mismatch) {
  rill_ipc_route_opts_t o = {
      .slots = 8, .slot_size = 128, .max_receivers = 4, .max_message = 300000, .pool_chunks = 4};
  rill_ipc_route_t *s = sender(&o);
  cr_expect_eq(rill_ipc_route_max_payload(s), 112);
  cr_expect_eq(rill_ipc_route_max_message(s), 300000);
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/rill.%s", route);
  struct stat sb;
  cr_assert_eq(stat(path, &sb), 0);
  uint64_t pool_off = align_up(4096 + 4096 + 8 * 128, PAGE);
  uint64_t stride = 64 + align_up(300000, 64);
  cr_expect_eq((uint64_t)sb.st_size, pool_off + 4 * stride, "size %lld", (long long)sb.st_size);
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.max_message, 300000);
  cr_expect_eq(info.pool_chunks, 4);
  rill_ipc_route_close(s);

  s = sender(NULL);
  cr_expect_eq(rill_ipc_route_max_message(s), 300000);
  rill_ipc_route_close(s);
  s = sender(&(rill_ipc_route_opts_t){.slots = 8, .max_message = 300000}); /* chunks unset: agree */
  rill_ipc_route_close(s);

  rill_ipc_route_opts_t bad[] = {
      {.slots = 8, .max_message = 300001},
      {.slots = 8, .max_message = 300000, .pool_chunks = 5},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s = (void *)1;
    int rc = rill_ipc_route_open(&s, route, &bad[i], RILL_IPC_SENDER);
    cr_expect_eq(rc, RILL_EINVAL, "mismatch %zu: %s", i, rill_strerror(rc));
    cr_expect_null(s);
    cr_expect_neq(strstr(rill_errmsg(), "max message 300000, 4 pool chunks"), NULL, "%s",
                  rill_errmsg());
  }
  rill_ipc_route_unlink(route);

  /* Opts no route may have. */
  rill_ipc_route_opts_t invalid[] = {
      {.slot_size = 128, .max_message = 112}, /* not over the slot payload */
      {.max_message = (1u << 30) + 1},        /* over 1 GiB */
      {.pool_chunks = 4},                     /* chunks, no max_message */
      {.max_message = 4096, .pool_chunks = (1u << 20) + 1},
  };
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    s = (void *)1;
    int rc = rill_ipc_route_open(&s, route, &invalid[i], RILL_IPC_SENDER);
    cr_expect_eq(rc, RILL_EINVAL, "invalid %zu: %s", i, rill_strerror(rc));
    cr_expect_null(s);
    cr_expect_eq(access(path, F_OK), -1, "invalid %zu left a segment", i);
  }
}

Test(ipc_pool, every_size_and_the_edges) {
  const uint32_t max = (1u << 20) + 4096 + 8;
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){
      .slots = 16, .slot_size = 128, .max_receivers = 2, .max_message = max, .pool_chunks = 3});
  rill_ipc_route_t *r1 = receiver(), *r2 = receiver();
  const uint32_t sizes[] = {0,     1,     112,      113,      4095, 4096, 4097, 65535,
                            65536, 65537, 1u << 20, max - 1,  max,  200,  113,  70000,
                            64,    9,     300000,   1u << 19, 112,  max};
  const size_t n = sizeof sizes / sizeof sizes[0];
  /* Two at a time ahead of the receivers: three chunks are enough. */
  for (size_t i = 0; i < n; i++) {
    send_msg(s, i, sizes[i]);
    if (i >= 1) {
      recv_msg(r1, i - 1, sizes[i - 1]);
      recv_msg(r2, i - 1, sizes[i - 1]);
    }
  }
  recv_msg(r1, n - 1, sizes[n - 1]);
  recv_msg(r2, n - 1, sizes[n - 1]);

  uint8_t *b = make(0, max + 1);
  cr_expect_eq(rill_ipc_route_send(s, b, max + 1, 0), RILL_EMSGSIZE);
  cr_expect_neq(strstr(rill_errmsg(), "over its max_message 1052680"), NULL, "%s", rill_errmsg());
  cr_expect_eq(rill_ipc_route_send(s, b, UINT32_MAX, 0), RILL_EMSGSIZE);
  rill_ipc_msg_t m;
  cr_expect_eq(rill_ipc_route_recv(r1, &m, 0, NULL), RILL_EAGAIN, "nothing was sent");
  rill_ipc_route_close(r1);
  rill_ipc_route_close(r2);
  rill_ipc_route_close(s);

  /* Without a pool the error says so. */
  rill_ipc_route_unlink(route);
  s = sender(&(rill_ipc_route_opts_t){.slots = 4, .slot_size = 128});
  cr_expect_eq(rill_ipc_route_max_message(s), 112);
  cr_expect_eq(rill_ipc_route_send(s, b, 113, 0), RILL_EMSGSIZE);
  cr_expect_neq(strstr(rill_errmsg(), "no pool"), NULL, "%s", rill_errmsg());
  free(b);
  rill_ipc_route_close(s);
}

/* A chunk is free once every receiver has moved past its message: with
 * RILL_IPC_FAIL a third large message finds both chunks held until the
 * receiver is past the first; and thousands of large messages go through
 * two chunks. */
Test(ipc_pool, chunks_come_back) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 64,
                                                        .max_receivers = 1,
                                                        .policy = RILL_IPC_FAIL,
                                                        .max_message = 70000,
                                                        .pool_chunks = 2});
  rill_ipc_route_t *r = receiver();
  send_msg(s, 0, 70000);
  send_msg(s, 1, 5000);
  uint8_t *b = make(2, 60000);
  cr_expect_eq(rill_ipc_route_send(s, b, 60000, 0), RILL_EFULL);
  cr_expect_neq(strstr(rill_errmsg(), "holds the pool chunk"), NULL, "%s", rill_errmsg());
  send_msg(s, 2, 100); /* inline messages still go */
  recv_msg(r, 0, 70000);
  /* Its view of message 0 is out: chunk 0 is still held. */
  cr_expect_eq(rill_ipc_route_send(s, b, 60000, 0), RILL_EFULL);
  recv_msg(r, 1, 5000);
  free(b);
  send_msg(s, 3, 60000);
  recv_msg(r, 2, 100);
  recv_msg(r, 3, 60000);
  for (uint64_t i = 4; i < 3000; i++) {
    uint32_t len = 113 + (uint32_t)(i * 7919 % (70000 - 112));
    send_msg(s, i, len);
    recv_msg(r, i, len);
  }
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

/* Under BLOCK, a sender process far ahead of the receiver waits for
 * chunks and is woken as they come back. */
Test(ipc_pool, block_waits_for_chunks) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){
      .slots = 256, .max_receivers = 1, .max_message = 65536, .pool_chunks = 4});
  rill_ipc_route_t *r = receiver();
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    for (uint64_t i = 0; i < 2000; i++) {
      uint32_t len = i % 3 ? 65536 - (uint32_t)(i % 1000) : 50;
      uint8_t *b = make(i, len);
      int rc = rill_ipc_route_send(s, b, len, 10000000000ull);
      free(b);
      if (rc)
        _exit(1);
    }
    _exit(0);
  }
  for (uint64_t i = 0; i < 2000; i++)
    recv_msg(r, i, i % 3 ? 65536 - (uint32_t)(i % 1000) : 50);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sender status 0x%x", st);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

/* A receiver killed while it holds a view of a chunk: the sender waiting
 * for that chunk reaps it and reuses the chunk. */
Test(ipc_pool, a_dead_receivers_chunk_comes_back) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){
      .slots = 64, .max_receivers = 2, .max_message = 10000, .pool_chunks = 2});
  int p[2];
  cr_assert_eq(pipe(p), 0);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    rill_ipc_route_t *r = NULL;
    if (rill_ipc_route_open(&r, route, NULL, RILL_IPC_RECEIVER))
      _exit(1);
    if (write(p[1], "a", 1) != 1)
      _exit(2);
    rill_ipc_msg_t m;
    if (rill_ipc_route_recv(r, &m, 5000000000ull, NULL) || m.len != 10000)
      _exit(3);
    if (write(p[1], "h", 1) != 1) /* holding the view of chunk 0 */
      _exit(4);
    pause();
    _exit(5);
  }
  char c;
  cr_assert_eq(read(p[0], &c, 1), 1);
  rill_ipc_route_t *r = receiver();
  send_msg(s, 0, 10000);
  send_msg(s, 1, 9000);
  cr_assert_eq(read(p[0], &c, 1), 1);
  cr_assert_eq(c, 'h');
  recv_msg(r, 0, 10000);
  recv_msg(r, 1, 9000);
  uint8_t *b = make(2, 8000);
  cr_expect_eq(rill_ipc_route_send(s, b, 8000, 0), RILL_ETIMEDOUT, "chunk 0 is held");
  free(b);
  kill(pid, SIGKILL);   /* left a zombie: dead, its place not freed */
  send_msg(s, 2, 8000); /* waits, reaps it, reuses chunk 0 */
  recv_msg(r, 2, 8000);
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.receivers, 1);
  for (uint64_t i = 3; i < 50; i++) {
    send_msg(s, i, 5000 + (uint32_t)i);
    recv_msg(r, i, 5000 + (uint32_t)i);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status 0x%x", st);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

/* Under RILL_IPC_OVERWRITE the sender reuses a chunk a receiver still
 * reads: the receiver is told (RILL_ELAGGED), never handed torn bytes. */
Test(ipc_pool, overwrite_reports_a_reused_chunk) {
  rill_ipc_route_t *s = sender(&(rill_ipc_route_opts_t){.slots = 16,
                                                        .max_receivers = 1,
                                                        .policy = RILL_IPC_OVERWRITE,
                                                        .max_message = 4096,
                                                        .pool_chunks = 2});
  rill_ipc_route_t *r = receiver();
  send_msg(s, 0, 4000);
  recv_msg(r, 0, 4000); /* held */
  send_msg(s, 1, 3000);
  send_msg(s, 2, 2000); /* chunk 0 again */
  rill_ipc_msg_t m;
  uint64_t lost = 0;
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 1);
  recv_msg(r, 1, 3000);
  recv_msg(r, 2, 2000);
  /* Message 4 reuses the chunk of 2 (whose view is still out), 5 that of 3,
   * not read yet: both lost, one report. */
  send_msg(s, 3, 1000);
  send_msg(s, 4, 1000);
  send_msg(s, 5, 1000);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, &lost), RILL_ELAGGED);
  cr_expect_eq(lost, 2);
  recv_msg(r, 4, 1000);
  recv_msg(r, 5, 1000);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

/* ---- corrupted segments ----------------------------------------------------- */

static void poke(off_t off, const void *bytes, size_t n) {
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/rill.%s", route);
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
  rill_ipc_route_info_t info;
  cr_expect_eq(rill_ipc_route_info(route, &info), code);
}

static const rill_ipc_route_opts_t corrupt_opts = {
    .slots = 8, .slot_size = 128, .max_receivers = 2, .max_message = 1000, .pool_chunks = 4};

static void fresh(void) {
  rill_ipc_route_unlink(route);
  rill_ipc_route_close(sender(&corrupt_opts));
}

Test(ipc_pool, corrupted_pool_fields_are_refused) {
  uint32_t v;
  fresh();
  v = 100;
  poke(OFF_MAX_MESSAGE, &v, 4);
  expect_refused(RILL_ECORRUPT, "max message 100, its largest class is 1000");

  fresh();
  v = 100;
  poke(OFF_CLASS0, &v, 4);
  poke(OFF_MAX_MESSAGE, &v, 4);
  expect_refused(RILL_ECORRUPT, "pool class 0 of 100 bytes, not over 112");

  fresh();
  v = (1u << 30) + 64;
  poke(OFF_MAX_MESSAGE, &v, 4);
  poke(OFF_CLASS0, &v, 4);
  expect_refused(RILL_ECORRUPT, "at most 1 GiB");

  fresh();
  v = 2000; /* valid on its own, but the layout no longer adds up */
  poke(OFF_MAX_MESSAGE, &v, 4);
  expect_refused(RILL_ECORRUPT, "max message 2000, its largest class is 1000");

  fresh();
  v = 0;
  poke(OFF_CLASS0 + 4, &v, 4);
  expect_refused(RILL_ECORRUPT, "class 0 has 0 chunks");

  fresh();
  v = 5;
  poke(OFF_CLASS0 + 4, &v, 4);
  expect_refused(RILL_ECORRUPT, "pool of 5 chunks in 1 classes");

  fresh();
  v = 0;
  poke(OFF_CLASSES, &v, 4);
  expect_refused(RILL_ECORRUPT, "0 pool classes");

  fresh();
  v = 9;
  poke(OFF_CLASSES, &v, 4);
  expect_refused(RILL_ECORRUPT, "9 pool classes");

  fresh();
  v = 2; /* a second class of size 0: not over the first */
  poke(OFF_CLASSES, &v, 4);
  expect_refused(RILL_ECORRUPT, "pool class 1 of 0 bytes, not over 1000");

  fresh();
  v = 999; /* the class no longer matches max_message */
  poke(OFF_CLASS0, &v, 4);
  expect_refused(RILL_ECORRUPT, "max message 1000, its largest class is 999");

  fresh();
  v = 0;
  poke(OFF_FLAGS, &v, 4);
  expect_refused(RILL_ECORRUPT, "without the pool flag");

  fresh();
  v = 3;
  poke(OFF_FLAGS, &v, 4);
  expect_refused(RILL_ECORRUPT, "unknown flags 0x3");

  /* A route without a pool with the pool flag set. */
  rill_ipc_route_unlink(route);
  rill_ipc_route_close(sender(&(rill_ipc_route_opts_t){.slots = 8, .max_receivers = 2}));
  v = 1;
  poke(OFF_FLAGS, &v, 4);
  expect_refused(RILL_ECORRUPT, "0 pool classes");
}

/* Slot 0 of the corrupt_opts route: header page, one table page. */
#define SLOT0 (4096 + 4096)

Test(ipc_pool, scribbled_descriptors_are_corrupt) {
  fresh();
  rill_ipc_route_t *s = sender(NULL);
  rill_ipc_route_t *r = receiver();
  rill_ipc_msg_t m;
  send_msg(s, 0, 500);
  uint32_t idx = 9;
  poke(SLOT0 + 16, &idx, 4);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_ECORRUPT);
  cr_expect_neq(strstr(rill_errmsg(), "names chunk 9 of class 0"), NULL, "%s", rill_errmsg());
  uint32_t cls = 1; /* a class the route does not have */
  idx = 0;
  poke(SLOT0 + 16, &idx, 4);
  poke(SLOT0 + 20, &cls, 4);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_ECORRUPT);
  cr_expect_neq(strstr(rill_errmsg(), "chunk 0 of class 1; there are 1 classes"), NULL, "%s",
                rill_errmsg());
  cls = 0;
  poke(SLOT0 + 20, &cls, 4);
  idx = 1; /* a chunk that holds no such message */
  poke(SLOT0 + 16, &idx, 4);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_ECORRUPT);
  cr_expect_neq(strstr(rill_errmsg(), "chunk 0:1 holds message -1, not 0"), NULL, "%s",
                rill_errmsg());
  idx = 0;
  poke(SLOT0 + 16, &idx, 4);
  uint32_t len = 1001;
  poke(SLOT0 + 8, &len, 4);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_ECORRUPT);
  cr_expect_neq(strstr(rill_errmsg(), "says 1001 bytes, its chunk holds 1000"), NULL, "%s",
                rill_errmsg());
  len = 500;
  poke(SLOT0 + 8, &len, 4);
  recv_msg(r, 0, 500);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

/* ---- size classes ------------------------------------------------------------ */

static const rill_ipc_route_opts_t class_opts = {
    .slots = 16,
    .slot_size = 128,
    .max_receivers = 2,
    .policy = RILL_IPC_FAIL,
    .pool = {{256, 2}, {4096, 2}, {65536, 1}},
};

Test(ipc_pool, each_message_takes_the_smallest_class_that_holds_it) {
  /* Two chunks in the largest class: the view held of one message keeps
   * its chunk, and two in a row take it. */
  rill_ipc_route_opts_t o = class_opts;
  o.pool[2].chunks = 2;
  rill_ipc_route_t *s = sender(&o);
  cr_expect_eq(rill_ipc_route_max_message(s), 65536);
  rill_ipc_route_info_t info;
  cr_assert_eq(rill_ipc_route_info(route, &info), 0);
  cr_expect_eq(info.pool_classes, 3);
  cr_expect_eq(info.pool_chunks, 6);
  cr_expect_eq(info.max_message, 65536);
  cr_expect_eq(info.pool[1].size, 4096);
  cr_expect_eq(info.pool[1].chunks, 2);
  rill_ipc_route_t *r = receiver();
  /* One of each class, then the edges of each. */
  uint32_t lens[] = {200, 3000, 60000, 113, 256, 257, 4096, 4097, 65536};
  for (uint64_t round = 0; round < 3; round++)
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
      uint64_t n = round * 9 + i;
      send_msg(s, n, lens[i]);
      recv_msg(r, n, lens[i]);
    }
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc_pool, a_busy_class_spills_into_a_larger_free_one) {
  rill_ipc_route_t *s = sender(&class_opts);
  rill_ipc_route_t *r = receiver();
  rill_ipc_msg_t m;
  /* The receiver reads nothing: class 0's 2 chunks, then class 1's 2, then
   * class 2's one, then nothing is left for a 200-byte message. */
  for (uint64_t i = 0; i < 5; i++)
    send_msg(s, i, 200);
  uint8_t b[200] = {0};
  cr_expect_eq(rill_ipc_route_send(s, b, sizeof b, 0), RILL_EFULL);
  cr_expect_neq(strstr(rill_errmsg(), "pool chunk"), NULL, "%s", rill_errmsg());
  /* A 4000-byte one cannot go below its class either. */
  uint8_t *big = make(99, 4000);
  cr_expect_eq(rill_ipc_route_send(s, big, 4000, 0), RILL_EFULL);
  free(big);
  /* Inline messages still go: the ring has room. */
  send_msg(s, 5, 100);
  for (uint64_t i = 0; i < 5; i++)
    recv_msg(r, i, 200);
  recv_msg(r, 5, 100);
  cr_assert_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_EAGAIN);
  /* Every chunk is free again. */
  send_msg(s, 6, 60000);
  send_msg(s, 7, 4000);
  send_msg(s, 8, 250);
  recv_msg(r, 6, 60000);
  recv_msg(r, 7, 4000);
  recv_msg(r, 8, 250);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc_pool, bad_classes_are_refused) {
  rill_ipc_route_t *s = NULL;
  struct {
    rill_ipc_route_opts_t o;
    const char *words;
  } bad[] = {
      {{.pool = {{4096, 2}, {1024, 2}}}, "not over 4096 (the class before"},
      {{.pool = {{100, 2}}}, "not over 112 (the slot payload)"},
      {{.pool = {{1024, 0}}}, "with 0 chunks"},
      {{.pool = {{1024, 2}, {(1u << 30) + 1, 1}}}, "at most 1 GiB"},
      {{.pool = {{1024, 2}}, .pool_chunks = 4}, "pool_chunks with pool classes"},
      {{.pool = {{1024, 2}, {2048, 1}}, .max_message = 1024}, "the largest pool class is 2048"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = rill_ipc_route_open(&s, route, &bad[i].o, RILL_IPC_SENDER);
    cr_expect_eq(rc, RILL_EINVAL, "case %zu: %s", i, rill_strerror(rc));
    cr_expect_null(s);
    cr_expect_neq(strstr(rill_errmsg(), bad[i].words), NULL, "case %zu: %s", i, rill_errmsg());
    if (s)
      rill_ipc_route_close(s);
    s = NULL;
  }
  /* A later sender must agree with the classes it gives. */
  rill_ipc_route_close(sender(&class_opts));
  rill_ipc_route_opts_t o = class_opts;
  o.pool[2].chunks = 2;
  cr_expect_eq(rill_ipc_route_open(&s, route, &o, RILL_IPC_SENDER), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "pool class 2 of 1 chunks of 65536 bytes"), NULL, "%s",
                rill_errmsg());
  o = class_opts;
  o.pool[3] = (rill_ipc_class_t){1 << 20, 1};
  cr_expect_eq(rill_ipc_route_open(&s, route, &o, RILL_IPC_SENDER), RILL_EINVAL);
  rill_ipc_route_close(sender(&class_opts));
  rill_ipc_route_close(
      sender(&(rill_ipc_route_opts_t){.policy = RILL_IPC_FAIL, .max_message = 65536}));
  cr_expect_eq(rill_ipc_route_open(
                   &s, route, &(rill_ipc_route_opts_t){.policy = RILL_IPC_FAIL, .pool_chunks = 5},
                   RILL_IPC_SENDER),
               RILL_EINVAL);
}

/* ---- reserve and commit ------------------------------------------------------- */

Test(ipc_pool, reserve_writes_the_message_in_place) {
  rill_ipc_route_t *s = sender(&class_opts);
  rill_ipc_route_t *r = receiver();
  uint32_t lens[] = {0, 64, 112, 113, 3000, 65536};
  for (uint64_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    void *buf = NULL;
    int rc = rill_ipc_route_reserve(s, lens[i], 0, &buf);
    cr_assert_eq(rc, 0, "reserve %u: %s (%s)", lens[i], rill_strerror(rc), rill_errmsg());
    cr_assert_not_null(buf);
    uint8_t *want = make(i, lens[i]);
    memcpy(buf, want, lens[i]);
    free(want);
    cr_assert_eq(rill_ipc_route_commit(s, lens[i]), 0, "%s", rill_errmsg());
    recv_msg(r, i, lens[i]);
  }
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc_pool, a_short_commit_moves_into_the_slot_and_frees_the_chunk) {
  rill_ipc_route_opts_t o = {.slots = 16,
                             .max_receivers = 2,
                             .policy = RILL_IPC_FAIL,
                             .max_message = 4096,
                             .pool_chunks = 1};
  rill_ipc_route_t *s = sender(&o);
  rill_ipc_route_t *r = receiver();
  void *buf;
  cr_assert_eq(rill_ipc_route_reserve(s, 4096, 0, &buf), 0);
  uint8_t *want = make(0, 50);
  memcpy(buf, want, 50);
  free(want);
  cr_assert_eq(rill_ipc_route_commit(s, 50), 0);
  /* The one chunk was not spent: a pooled message takes it, and then the
   * next finds it held by the unread receiver. */
  send_msg(s, 1, 3000);
  uint8_t *b = make(2, 3000);
  cr_expect_eq(rill_ipc_route_send(s, b, 3000, 0), RILL_EFULL);
  free(b);
  recv_msg(r, 0, 50);
  recv_msg(r, 1, 3000);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}

Test(ipc_pool, commit_needs_a_reservation_it_fits) {
  rill_ipc_route_t *s = sender(&class_opts);
  rill_ipc_route_t *r = receiver();
  rill_ipc_msg_t m;
  void *buf = (void *)1;
  cr_expect_eq(rill_ipc_route_commit(s, 10), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "without a reservation"), NULL, "%s", rill_errmsg());
  cr_expect_eq(rill_ipc_route_reserve(s, 65537, 0, &buf), RILL_EMSGSIZE);
  cr_expect_null(buf);
  cr_expect_eq(rill_ipc_route_reserve(NULL, 10, 0, &buf), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_reserve(s, 10, 0, NULL), RILL_EINVAL);
  cr_assert_eq(rill_ipc_route_reserve(s, 100, 0, &buf), 0);
  cr_expect_eq(rill_ipc_route_commit(s, 101), RILL_EINVAL);
  cr_expect_neq(strstr(rill_errmsg(), "101 bytes, 100 were reserved"), NULL, "%s", rill_errmsg());
  /* One reservation at a time, as on a channel: a send or a reserve with
   * one open is refused, and the reservation stays. */
  cr_expect_eq(rill_ipc_route_send(s, "x", 1, 0), RILL_EBUSY);
  cr_expect_eq(rill_ipc_route_reserve(s, 10, 0, &buf), RILL_EBUSY);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_EAGAIN);
  /* Cancel publishes nothing; the next send takes the same number. */
  cr_expect_eq(rill_ipc_route_cancel(s), 0);
  cr_expect_eq(rill_ipc_route_cancel(s), RILL_EINVAL);
  cr_expect_eq(rill_ipc_route_commit(s, 10), RILL_EINVAL);
  send_msg(s, 0, 30);
  recv_msg(r, 0, 30);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_EAGAIN);
  /* A cancelled pooled reservation leaves its chunk for the next. */
  cr_assert_eq(rill_ipc_route_reserve(s, 3000, 0, &buf), 0);
  cr_assert_eq(rill_ipc_route_cancel(s), 0);
  cr_assert_eq(rill_ipc_route_reserve(s, 20, 0, &buf), 0);
  uint8_t *want = make(1, 20);
  memcpy(buf, want, 20);
  free(want);
  cr_assert_eq(rill_ipc_route_commit(s, 20), 0);
  recv_msg(r, 1, 20);
  cr_expect_eq(rill_ipc_route_recv(r, &m, 0, NULL), RILL_EAGAIN);
  rill_ipc_route_close(r);
  rill_ipc_route_close(s);
}
