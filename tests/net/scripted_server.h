/*
 * A scripted server for the client's tests: a loopback listener whose
 * thread runs a script (a function that accepts, reads frames and answers
 * as the test wants, the wrong way included), and the raw frame I/O the
 * scripts speak, with no server library in between. Used by
 * test_client.c.
 */
#ifndef RILL_TEST_SCRIPTED_SERVER_H
#define RILL_TEST_SCRIPTED_SERVER_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rill/net.h"

typedef struct {
  int lfd;
  uint16_t port;
  pthread_t t;
  int verdict; /* what the script found, for the test to check */
} fake_t;

/* Listens on a loopback port (with socket buffers of buf bytes, 0: the
 * defaults) and runs the script fn on its thread; the client's port is
 * k->port. */
static inline void fake_start(fake_t *k, void *(*fn)(void *), int buf) {
  *k = (fake_t){.lfd = socket(AF_INET, SOCK_STREAM, 0)};
  cr_assert_geq(k->lfd, 0);
  if (buf) {
    setsockopt(k->lfd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(k->lfd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  }
  struct sockaddr_in sa = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  socklen_t sl = sizeof sa;
  cr_assert_eq(bind(k->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(listen(k->lfd, 4), 0);
  getsockname(k->lfd, (struct sockaddr *)&sa, &sl);
  k->port = ntohs(sa.sin_port);
  cr_assert_eq(pthread_create(&k->t, NULL, fn, k), 0);
}

/* fake_start, then a client connected to it with o (its port set). */
static inline rill_client_t *fake_connect(fake_t *k, void *(*fn)(void *), int buf,
                                          rill_client_opts_t o) {
  fake_start(k, fn, buf);
  o.port = k->port;
  rill_client_t *c = NULL;
  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  return c;
}

/* Waits for the script to end and closes the listener. */
static inline void fake_end(fake_t *k) {
  pthread_join(k->t, NULL);
  close(k->lfd);
}

/* A frame with a small body (up to 256 bytes), in one send. */
static inline void fake_send(int fd, uint8_t type, uint64_t id, uint64_t arg, const void *body,
                             uint32_t len) {
  uint8_t b[RILL_NET_HDR + 256];
  rill_frame_header(b, type, 0, 0, id, arg, len);
  memcpy(b + RILL_NET_HDR, body, len);
  cr_assert_eq(send(fd, b, RILL_NET_HDR + len, MSG_NOSIGNAL), (ssize_t)(RILL_NET_HDR + len));
}

/* A frame with every header field given and a body of any size: the
 * header, then the body as the socket takes it. */
static inline void raw_send(int fd, uint8_t type, uint8_t flags, uint16_t ch, uint64_t id,
                            uint64_t arg, const void *body, uint32_t len) {
  uint8_t h[RILL_NET_HDR];
  rill_frame_header(h, type, flags, ch, id, arg, len);
  cr_assert_eq(send(fd, h, sizeof h, MSG_NOSIGNAL), (ssize_t)sizeof h);
  for (uint32_t off = 0; off < len;) {
    ssize_t n = send(fd, (const uint8_t *)body + off, len - off, MSG_NOSIGNAL);
    cr_assert_gt(n, 0);
    off += (uint32_t)n;
  }
}

/* Reads one frame into b; its type, or 0 at the end. */
static inline uint8_t fake_recv(int fd, uint8_t *b, size_t cap, rill_frame_t *f) {
  size_t have = 0, used = RILL_NET_HDR;
  while (have < used) {
    ssize_t n = recv(fd, b + have, used - have, 0);
    if (n <= 0)
      return 0;
    have += (size_t)n;
    if (rill_frame_decode(b, have, (uint32_t)(cap - RILL_NET_HDR), f, &used) == 0)
      break;
  }
  return f->type;
}

/* Accepts a connection and answers its HELLO (decoded into *h, unless h
 * is NULL) with a WELCOME of max_body; b is a frame buffer of cap bytes.
 * The connection, or -1 when none came or it did not begin with a HELLO. */
static inline int script_accept(fake_t *k, uint8_t *b, size_t cap, rill_net_hello_t *h,
                                uint32_t max_body) {
  int fd = accept(k->lfd, NULL, NULL);
  if (fd < 0)
    return -1;
  rill_frame_t f;
  if (fake_recv(fd, b, cap, &f) != RILL_F_HELLO) {
    close(fd);
    return -1;
  }
  if (h)
    cr_assert_eq(rill_net_hello_decode(f.body, f.len, h), 0);
  uint8_t w[RILL_NET_WELCOME_SIZE];
  rill_net_welcome_encode(w, &(rill_net_welcome_t){RILL_NET_VERSION, max_body, 1, UINT32_MAX});
  fake_send(fd, RILL_F_WELCOME, 0, 0, w, sizeof w);
  return fd;
}

#endif
