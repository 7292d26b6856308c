/*
 * What the server tests share (test_server.c, test_server_ops.c): a
 * temporary data directory, a server on its own thread on a free port,
 * and a raw client that speaks frames with no library in between.
 */
#ifndef RILL_TEST_SERVER_FIXTURE_H
#define RILL_TEST_SERVER_FIXTURE_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "rill/net.h"

static char dir[64];

/* Makes dir from a mkdtemp template ("/tmp/rill-test-...-XXXXXX"). */
static inline void dir_make(const char *tmpl) {
  snprintf(dir, sizeof dir, "%s", tmpl);
  cr_assert_not_null(mkdtemp(dir));
}

static inline void rm_tmp(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

typedef struct {
  rill_server_t *s;
  pthread_t t;
  int rc;
} srv_t;

static inline void *srv_main(void *arg) {
  srv_t *v = arg;
  v->rc = rill_server_run(v->s);
  return NULL;
}

/* A server on o, in dir unless o names another data directory. */
static inline void srv_start(srv_t *v, rill_server_opts_t o) {
  if (!o.data_dir)
    o.data_dir = dir;
  o.any_port = true;
  cr_assert_eq(rill_server_create(&v->s, &o), 0, "%s", rill_errmsg());
  cr_assert_eq(pthread_create(&v->t, NULL, srv_main, v), 0);
}

static inline void srv_stop(srv_t *v) {
  rill_server_stop(v->s);
  pthread_join(v->t, NULL);
  cr_expect_eq(v->rc, 0);
  rill_server_destroy(v->s);
}

/* ---- a raw client ---------------------------------------------------------- */

typedef struct {
  int fd;
  uint8_t rx[1 << 17];
  size_t have;
} cli_t;

static inline void cli_connect(cli_t *c, srv_t *v) {
  c->have = 0;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(c->fd, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(rill_server_port(v->s))};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  cr_assert_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
  struct timeval tv = {10, 0}; /* a hang fails the test instead of stalling it */
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static inline void cli_send(cli_t *c, uint8_t type, uint8_t flags, uint16_t ch, uint64_t id,
                            uint64_t arg, const void *body, uint32_t len) {
  uint8_t hdr[RILL_NET_HDR];
  rill_frame_header(hdr, type, flags, ch, id, arg, len);
  cr_assert_eq(send(c->fd, hdr, sizeof hdr, MSG_NOSIGNAL), (ssize_t)sizeof hdr);
  if (len)
    cr_assert_eq(send(c->fd, body, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* The next frame (body copied into out, up to 4 KiB), or -1 when the
 * server closed the connection. */
static inline int cli_recv(cli_t *c, rill_frame_t *f, uint8_t *out) {
  for (;;) {
    size_t used;
    int rc = rill_frame_decode(c->rx, c->have, RILL_NET_MAX_BODY, f, &used);
    if (rc == 0) {
      if (out)
        memcpy(out, f->body, f->len < 4096 ? f->len : 4096);
      memmove(c->rx, c->rx + used, c->have - used);
      c->have -= used;
      return 0;
    }
    cr_assert_eq(rc, RILL_EAGAIN, "the server sent a bad frame");
    ssize_t n = recv(c->fd, c->rx + c->have, sizeof c->rx - c->have, 0);
    if (n == 0)
      return -1;
    cr_assert_gt(n, 0, "recv: %s", strerror(errno));
    c->have += (size_t)n;
  }
}

#endif
