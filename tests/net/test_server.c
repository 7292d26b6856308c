/*
 * The server over real sockets, driven by a raw client that writes frames
 * with the codec: the handshake and its token, publish with acks, batches,
 * subscriptions held to their credits, fetch, restart with the data kept,
 * connection limits, and hostile bytes that close only their sender.
 * Ordering, not timing: a PING's PONG comes after everything the server
 * queued for that connection before it.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "rill/log.h"
#include "rill/net.h"
#include "server_fixture.h"

static void mkdir_tmp(void) { dir_make("/tmp/rill-test-net-XXXXXX"); }

TestSuite(server, .init = mkdir_tmp, .fini = rm_tmp);

static void expect_frame(cli_t *c, uint8_t type, uint64_t id, rill_frame_t *f) {
  uint8_t body[4096];
  cr_assert_eq(cli_recv(c, f, body), 0, "closed while waiting for type %u", type);
  if (f->type == RILL_F_ERROR && type != RILL_F_ERROR)
    cr_assert_fail("ERROR %lld: %.*s", (long long)(int64_t)f->arg, (int)f->len, body);
  cr_assert_eq(f->type, type, "type %u (id %llu), not %u", f->type, (unsigned long long)f->id,
               type);
  cr_assert_eq(f->id, id);
}

static void hello(cli_t *c, const char *token) {
  uint8_t b[600];
  size_t tl = token ? strlen(token) : 0;
  cr_assert_eq(rill_net_hello_encode(b, token, tl, "test", 4), 0);
  cli_send(c, RILL_F_HELLO, 0, 0, 0, 0, b, (uint32_t)rill_net_hello_size(tl, 4));
}

static void handshake(cli_t *c, srv_t *v) {
  cli_connect(c, v);
  hello(c, NULL);
  rill_frame_t f;
  uint8_t body[64];
  cr_assert_eq(cli_recv(c, &f, body), 0);
  cr_assert_eq(f.type, RILL_F_WELCOME);
  rill_net_welcome_t w;
  cr_assert_eq(rill_net_welcome_decode(body, f.len, &w), 0);
  cr_expect_geq(w.max_body, 4096);
}

/* Expects an ERROR with code, then the connection closed. */
static void expect_refused(cli_t *c, int code) {
  rill_frame_t f;
  uint8_t body[4096];
  cr_assert_eq(cli_recv(c, &f, body), 0, "closed without a word");
  cr_assert_eq(f.type, RILL_F_ERROR, "type %u", f.type);
  cr_expect_eq((int64_t)f.arg, code, "code %lld: %.*s", (long long)(int64_t)f.arg, (int)f.len,
               body);
  cr_expect_eq(cli_recv(c, &f, NULL), -1, "still open after the error");
  close(c->fd);
}

static void ping(cli_t *c, uint64_t id) {
  cli_send(c, RILL_F_PING, 0, 0, id, 0, NULL, 0);
  rill_frame_t f;
  expect_frame(c, RILL_F_PONG, id, &f);
}

/* ---- tests ----------------------------------------------------------------- */

Test(server, handshake_ping_and_token) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.token = "s3cret"});
  static cli_t c;
  cli_connect(&c, &v);
  hello(&c, "wrong!");
  expect_refused(&c, RILL_EACCES);
  cli_connect(&c, &v);
  hello(&c, NULL);
  expect_refused(&c, RILL_EACCES);
  cli_connect(&c, &v);
  hello(&c, "s3cret0");
  expect_refused(&c, RILL_EACCES);
  cli_connect(&c, &v);
  cli_send(&c, RILL_F_PING, 0, 0, 1, 0, NULL, 0);
  expect_refused(&c, RILL_EPROTO); /* the first frame must be HELLO */
  cli_connect(&c, &v);
  hello(&c, "s3cret");
  rill_frame_t f;
  expect_frame(&c, RILL_F_WELCOME, 0, &f);
  ping(&c, 42);
  ping(&c, 43);
  close(c.fd);
  srv_stop(&v);
}

Test(server, publish_subscribe_credits_fetch) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){0});
  static cli_t a, b;
  handshake(&a, &v);
  handshake(&b, &v);
  rill_frame_t f;
  cli_send(&a, RILL_F_BIND, 0, 1, 100, 0, "orders", 6);
  expect_frame(&a, RILL_F_ACK, 100, &f);
  for (uint64_t i = 0; i < 100; i++) {
    char msg[32];
    int n = snprintf(msg, sizeof msg, "order-%llu", (unsigned long long)i);
    cli_send(&a, RILL_F_PUBLISH, RILL_FF_ACK, 1, 1000 + i, 0, msg, (uint32_t)n);
    expect_frame(&a, RILL_F_ACK, 1000 + i, &f);
    cr_assert_eq(f.arg, i, "the sequence the log gave");
  }
  /* A subscription gets nothing until it grants credits, then exactly as
   * many as it granted. */
  cli_send(&b, RILL_F_SUBSCRIBE, 0, 5, 7, RILL_NET_FROM_EARLIEST, "orders", 6);
  expect_frame(&b, RILL_F_ACK, 7, &f);
  cr_expect_eq(f.arg, 0);
  ping(&b, 1);
  cli_send(&b, RILL_F_CREDIT, 0, 5, 0, 10, NULL, 0);
  uint8_t body[4096];
  for (uint64_t i = 0; i < 10; i++) {
    cr_assert_eq(cli_recv(&b, &f, body), 0);
    cr_assert_eq(f.type, RILL_F_DELIVER);
    cr_assert_eq(f.channel, 5);
    cr_assert_eq(f.arg, i);
    char want[32];
    int n = snprintf(want, sizeof want, "order-%llu", (unsigned long long)i);
    cr_assert_eq(f.len, (uint32_t)n);
    cr_assert_eq(memcmp(body, want, (size_t)n), 0);
  }
  ping(&b, 2); /* nothing more was queued: the credits ran out */
  cli_send(&b, RILL_F_CREDIT, 0, 5, 0, 1000, NULL, 0);
  for (uint64_t i = 10; i < 100; i++) {
    cr_assert_eq(cli_recv(&b, &f, NULL), 0);
    cr_assert_eq(f.type, RILL_F_DELIVER);
    cr_assert_eq(f.arg, i);
  }
  ping(&b, 3);
  /* Live: new publishes reach the subscriber, which still has credits. */
  for (uint64_t i = 100; i < 105; i++) {
    cli_send(&a, RILL_F_PUBLISH, 0, 1, 0, 0, "live", 4);
  }
  ping(&a, 4); /* the publishes are handled (and delivered) before the PONG */
  for (uint64_t i = 100; i < 105; i++) {
    cr_assert_eq(cli_recv(&b, &f, body), 0);
    cr_assert_eq(f.type, RILL_F_DELIVER);
    cr_assert_eq(f.arg, i);
    cr_assert_eq(memcmp(body, "live", 4), 0);
  }
  /* FETCH: up to 10 from 98, then END with where to go on. */
  uint8_t fetch[4 + 6] = {10, 0, 0, 0, 'o', 'r', 'd', 'e', 'r', 's'};
  cli_send(&a, RILL_F_FETCH, 0, 0, 77, 98, fetch, sizeof fetch);
  for (uint64_t i = 98; i < 105; i++) {
    expect_frame(&a, RILL_F_DELIVER, 77, &f);
    cr_assert_eq(f.arg, i);
    cr_assert_eq(f.flags, 0);
  }
  expect_frame(&a, RILL_F_DELIVER, 77, &f);
  cr_expect_eq(f.flags, RILL_FF_END);
  cr_expect_eq(f.arg, 105);
  cr_expect_eq(f.len, 0);
  /* UNSUBSCRIBE: no more deliveries. */
  cli_send(&b, RILL_F_UNSUBSCRIBE, 0, 5, 8, 0, NULL, 0);
  expect_frame(&b, RILL_F_ACK, 8, &f);
  cli_send(&a, RILL_F_PUBLISH, RILL_FF_ACK, 1, 9, 0, "after", 5);
  expect_frame(&a, RILL_F_ACK, 9, &f);
  ping(&b, 5);
  rill_server_stats_t st;
  rill_server_stats(v.s, &st);
  cr_expect_eq(st.published, 106);
  cr_expect_eq(st.delivered, 105);
  close(a.fd);
  close(b.fd);
  srv_stop(&v);
}

Test(server, batches_and_request_errors_keep_the_connection) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){0});
  static cli_t a;
  handshake(&a, &v);
  rill_frame_t f;
  uint8_t body[4096];
  cli_send(&a, RILL_F_PUBLISH, RILL_FF_ACK, 3, 1, 0, "x", 1);
  cr_assert_eq(cli_recv(&a, &f, body), 0);
  cr_expect_eq(f.type, RILL_F_ERROR, "publish on an unbound channel");
  cr_expect_eq((int64_t)f.arg, RILL_EINVAL);
  cli_send(&a, RILL_F_BIND, 0, 3, 2, 0, "bad/name", 8);
  cr_assert_eq(cli_recv(&a, &f, body), 0);
  cr_expect_eq(f.type, RILL_F_ERROR);
  cli_send(&a, RILL_F_BIND, 0, 3, 3, 0, "events", 6);
  expect_frame(&a, RILL_F_ACK, 3, &f);
  uint8_t batch[] = {3,   0,   0, 0, 'o', 'n', 'e', 3,   0,   0,   0,  't',
                     'w', 'o', 5, 0, 0,   0,   't', 'h', 'r', 'e', 'e'};
  cli_send(&a, RILL_F_PUBLISH_BATCH, RILL_FF_ACK, 3, 4, 3, batch, sizeof batch);
  expect_frame(&a, RILL_F_ACK, 4, &f);
  cr_expect_eq(f.arg, 0);
  /* Well framed, a body refused: the request's RILL_EINVAL (DESIGN, Bad bytes). */
  cli_send(&a, RILL_F_PUBLISH_BATCH, RILL_FF_ACK, 3, 5, 4, batch, sizeof batch); /* count lies */
  cr_assert_eq(cli_recv(&a, &f, body), 0);
  cr_expect_eq(f.type, RILL_F_ERROR);
  cr_expect_eq((int64_t)f.arg, RILL_EINVAL);
  cli_send(&a, RILL_F_PUBLISH_BATCH, RILL_FF_ACK, 3, 6, 3, batch, sizeof batch - 1); /* short */
  cr_assert_eq(cli_recv(&a, &f, body), 0);
  cr_expect_eq(f.type, RILL_F_ERROR);
  cr_expect_eq((int64_t)f.arg, RILL_EINVAL);
  cli_send(&a, RILL_F_ASK, 0, 0, 7, 0, NULL, 0);
  cr_assert_eq(cli_recv(&a, &f, body), 0);
  cr_expect_eq((int64_t)f.arg, RILL_EINVAL, "an ASK without a service name");
  ping(&a, 8); /* all of that was the request's error, not the connection's */
  uint8_t fetch[4 + 6] = {10, 0, 0, 0, 'e', 'v', 'e', 'n', 't', 's'};
  cli_send(&a, RILL_F_FETCH, 0, 0, 9, RILL_NET_FROM_EARLIEST, fetch, sizeof fetch);
  const char *want[] = {"one", "two", "three"};
  for (int i = 0; i < 3; i++) {
    expect_frame(&a, RILL_F_DELIVER, 9, &f);
    cr_assert_eq(f.len, strlen(want[i]));
  }
  expect_frame(&a, RILL_F_DELIVER, 9, &f);
  cr_expect_eq(f.flags, RILL_FF_END);
  close(a.fd);
  srv_stop(&v);
}

/* Hostile bytes close their sender with an error; everyone else goes on. */
Test(server, hostile_clients_close_only_themselves) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.max_body = 4096, .tx_limit = 1 << 20});
  static cli_t good, bad;
  handshake(&good, &v);
  struct {
    const char *what;
    uint8_t type, flags;
    uint32_t len;
    int code;
  } cases[] = {
      {"unknown type", 99, 0, 0, RILL_EPROTO},
      {"bad flags", RILL_F_PING, RILL_FF_MORE, 0, RILL_EPROTO},
      {"over max_body", RILL_F_PUBLISH, 0, 4097, RILL_EMSGSIZE},
      {"a second HELLO", RILL_F_HELLO, 0, 0, RILL_EPROTO},
  };
  for (int k = 0; k < 4; k++) {
    handshake(&bad, &v);
    uint8_t hdr[RILL_NET_HDR];
    rill_frame_header(hdr, cases[k].type, cases[k].flags, 0, 0, 0, cases[k].len);
    cr_assert_eq(send(bad.fd, hdr, RILL_NET_HDR, MSG_NOSIGNAL), RILL_NET_HDR, "%s", cases[k].what);
    expect_refused(&bad, cases[k].code);
    ping(&good, (uint64_t)k);
  }
  /* Random bytes before the handshake. */
  srand(4);
  for (int k = 0; k < 20; k++) {
    cli_connect(&bad, &v);
    uint8_t junk[256];
    for (size_t i = 0; i < sizeof junk; i++)
      junk[i] = (uint8_t)rand();
    ssize_t w = send(bad.fd, junk, sizeof junk, MSG_NOSIGNAL);
    (void)w;
    rill_frame_t f;
    int r = cli_recv(&bad, &f, NULL);
    if (r == 0)
      cr_expect_eq(f.type, RILL_F_ERROR);
    close(bad.fd);
    ping(&good, 100 + (uint64_t)k);
  }
  /* Connect and go, many times. */
  for (int k = 0; k < 500; k++) {
    cli_connect(&bad, &v);
    close(bad.fd);
  }
  ping(&good, 1000);
  close(good.fd);
  srv_stop(&v);
}

Test(server, connection_limit) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.max_conns = 2});
  static cli_t a, b, c;
  handshake(&a, &v);
  handshake(&b, &v);
  cli_connect(&c, &v);
  expect_refused(&c, RILL_EBUSY);
  ping(&a, 1);
  close(b.fd);
  /* Once the server has seen b go, c is welcomed. A PING on a does not
   * say when that is (b's end and a's PING may be handled in either
   * order), so c tries again while it is refused. */
  bool welcomed = false;
  for (int i = 0; i < 100 && !welcomed; i++) {
    cli_connect(&c, &v);
    uint8_t hb[64];
    cr_assert_eq(rill_net_hello_encode(hb, NULL, 0, "test", 4), 0);
    uint8_t fr[RILL_NET_HDR + 64];
    size_t hl = rill_net_hello_size(0, 4);
    rill_frame_header(fr, RILL_F_HELLO, 0, 0, 0, 0, (uint32_t)hl);
    memcpy(fr + RILL_NET_HDR, hb, hl);
    (void)!send(c.fd, fr, RILL_NET_HDR + hl, MSG_NOSIGNAL); /* refused: may be reset */
    rill_frame_t f;
    welcomed = cli_recv(&c, &f, NULL) == 0 && f.type == RILL_F_WELCOME;
    if (!welcomed) {
      close(c.fd);
      usleep(10000);
    }
  }
  cr_assert(welcomed, "c refused after b went");
  ping(&c, 3);
  close(a.fd);
  close(c.fd);
  srv_stop(&v);
}

/* What was acknowledged is there after a restart on the same data. */
Test(server, restart_keeps_the_topics) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){0});
  static cli_t a;
  handshake(&a, &v);
  rill_frame_t f;
  cli_send(&a, RILL_F_BIND, 0, 1, 1, 0, "kept", 4);
  expect_frame(&a, RILL_F_ACK, 1, &f);
  for (uint64_t i = 0; i < 50; i++) {
    cli_send(&a, RILL_F_PUBLISH, RILL_FF_ACK, 1, 10 + i, 0, &i, sizeof i);
    expect_frame(&a, RILL_F_ACK, 10 + i, &f);
  }
  close(a.fd);
  srv_stop(&v);
  srv_start(&v, (rill_server_opts_t){0});
  handshake(&a, &v);
  uint8_t fetch[4 + 4] = {100, 0, 0, 0, 'k', 'e', 'p', 't'};
  cli_send(&a, RILL_F_FETCH, 0, 0, 5, 0, fetch, sizeof fetch);
  uint8_t body[4096];
  for (uint64_t i = 0; i < 50; i++) {
    cr_assert_eq(cli_recv(&a, &f, body), 0);
    cr_assert_eq(f.type, RILL_F_DELIVER);
    cr_assert_eq(f.arg, i);
    uint64_t got;
    memcpy(&got, body, 8);
    cr_assert_eq(got, i);
  }
  expect_frame(&a, RILL_F_DELIVER, 5, &f);
  cr_expect_eq(f.flags, RILL_FF_END);
  close(a.fd);
  srv_stop(&v);
}

/* The next frame with up to cap body bytes copied into out. */
static void recv_into(cli_t *c, rill_frame_t *f, uint8_t *out, size_t cap) {
  for (;;) {
    size_t used;
    int rc = rill_frame_decode(c->rx, c->have, RILL_NET_MAX_BODY, f, &used);
    if (rc == 0) {
      cr_assert_leq(f->len, cap, "a %u-byte body", f->len);
      memcpy(out, f->body, f->len);
      memmove(c->rx, c->rx + used, c->have - used);
      c->have -= used;
      return;
    }
    cr_assert_eq(rc, RILL_EAGAIN);
    ssize_t n = recv(c->fd, c->rx + c->have, sizeof c->rx - c->have, 0);
    cr_assert_gt(n, 0, "closed or failed");
    c->have += (size_t)n;
  }
}

/* A record over max_body, as the server sends it: DELIVER with STREAM
 * (id = the whole length), then CHUNKs on the same channel, MORE on all
 * but the last. */
static void expect_streamed(cli_t *c, uint16_t ch, uint64_t seq, const uint8_t *want, size_t len) {
  static uint8_t got[1 << 18];
  rill_frame_t f;
  recv_into(c, &f, got, sizeof got);
  cr_assert_eq(f.type, RILL_F_DELIVER);
  cr_assert_eq(f.flags, RILL_FF_STREAM);
  cr_assert_eq(f.channel, ch);
  cr_assert_eq(f.id, len, "the whole length");
  cr_assert_eq(f.arg, seq);
  size_t have = f.len;
  for (bool more = true; more;) {
    recv_into(c, &f, got + have, sizeof got - have);
    cr_assert_eq(f.type, RILL_F_CHUNK);
    cr_assert_eq(f.channel, ch);
    cr_assert_eq(f.id, seq);
    cr_assert_eq(f.arg, RILL_F_DELIVER);
    have += f.len;
    more = f.flags & RILL_FF_MORE;
  }
  cr_assert_eq(have, len);
  cr_assert(!memcmp(got, want, len), "the bytes came back changed");
}

/* Sends len bytes as a streamed PUBLISH: the first piece, then CHUNKs. */
static void publish_streamed(cli_t *c, uint16_t ch, uint64_t id, const uint8_t *m, size_t len,
                             size_t piece) {
  cli_send(c, RILL_F_PUBLISH, RILL_FF_STREAM | RILL_FF_ACK, ch, id, len, m, (uint32_t)piece);
  for (size_t off = piece; off < len; off += piece) {
    size_t n = len - off < piece ? len - off : piece;
    cli_send(c, RILL_F_CHUNK, off + n < len ? RILL_FF_MORE : 0, ch, id, RILL_F_PUBLISH, m + off,
             (uint32_t)n);
  }
}

Test(server, streamed_messages_over_max_body) {
  srv_t v;
  /* A send queue of four frames: the record goes out a chunk or two at a
   * time, as the subscriber reads. */
  srv_start(&v, (rill_server_opts_t){
                    .max_body = 16384, .max_message = 200000, .tx_limit = 4 * (16384 + 24)});
  static uint8_t m[150001];
  for (size_t i = 0; i < sizeof m; i++)
    m[i] = (uint8_t)(i * 7 + i / 251);
  cli_t *pub = calloc(1, sizeof *pub), *sub = calloc(1, sizeof *sub), *fe = calloc(1, sizeof *fe);
  handshake(pub, &v);
  handshake(sub, &v);
  handshake(fe, &v);
  rill_frame_t f;
  cli_send(sub, RILL_F_SUBSCRIBE, RILL_FF_CREATE, 5, 1, RILL_NET_FROM_EARLIEST, "big", 3);
  expect_frame(sub, RILL_F_ACK, 1, &f);
  cli_send(sub, RILL_F_CREDIT, 0, 5, 0, 10, NULL, 0);
  cli_send(pub, RILL_F_BIND, 0, 1, 2, 0, "big", 3);
  expect_frame(pub, RILL_F_ACK, 2, &f);

  /* In, whole, acknowledged once the last piece is in; out, in pieces of
   * max_body, to a subscriber; then a small one after it. */
  publish_streamed(pub, 1, 3, m, sizeof m, 10000);
  expect_frame(pub, RILL_F_ACK, 3, &f);
  cr_expect_eq(f.arg, 0);
  cli_send(pub, RILL_F_PUBLISH, RILL_FF_ACK, 1, 4, 0, "small", 5);
  expect_frame(pub, RILL_F_ACK, 4, &f);
  expect_streamed(sub, 5, 0, m, sizeof m);
  uint8_t body[64];
  recv_into(sub, &f, body, sizeof body);
  cr_assert_eq(f.type, RILL_F_DELIVER);
  cr_assert_eq(f.arg, 1);
  cr_assert_eq(f.len, 5);

  /* A FETCH's answer ends with the streamed record; the next picks up. */
  uint8_t req[16] = {10, 0, 0, 0, 'b', 'i', 'g'};
  cli_send(fe, RILL_F_FETCH, 0, 0, 9, RILL_NET_FROM_EARLIEST, req, 7);
  expect_streamed(fe, 0, 0, m, sizeof m);
  expect_frame(fe, RILL_F_DELIVER, 9, &f);
  cr_assert_eq(f.flags, RILL_FF_END);
  cr_assert_eq(f.arg, 1);
  cli_send(fe, RILL_F_FETCH, 0, 0, 10, 1, req, 7);
  recv_into(fe, &f, body, sizeof body);
  cr_assert_eq(f.arg, 1);
  cr_assert_eq(f.len, 5);
  expect_frame(fe, RILL_F_DELIVER, 10, &f);
  cr_assert_eq(f.flags, RILL_FF_END);

  /* Over max_message: refused by its first frame, its pieces dropped,
   * the connection goes on. */
  static uint8_t huge[250000];
  publish_streamed(pub, 1, 11, huge, sizeof huge, 16384);
  expect_frame(pub, RILL_F_ERROR, 11, &f);
  cr_expect_eq((int64_t)f.arg, RILL_EMSGSIZE);
  ping(pub, 12);

  /* Pieces that overrun the announced length, and a CHUNK of no stream:
   * protocol errors, the connection closed. */
  cli_send(pub, RILL_F_PUBLISH, RILL_FF_STREAM, 1, 13, 20000, m, 16000);
  cli_send(pub, RILL_F_CHUNK, 0, 1, 13, RILL_F_PUBLISH, m, 16000);
  expect_refused(pub, RILL_EPROTO);
  cli_send(fe, RILL_F_CHUNK, RILL_FF_MORE, 0, 99, RILL_F_PUBLISH, m, 100);
  expect_refused(fe, RILL_EPROTO);
  close(sub->fd);
  free(pub);
  free(sub);
  free(fe);
  srv_stop(&v);
}

/* The whole answer to GET path on port, or an empty string. */
static void http_get(uint16_t port, const char *path, char *out, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  char req[128];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
  cr_assert_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
  size_t have = 0;
  for (ssize_t got; have < cap - 1 && (got = recv(fd, out + have, cap - 1 - have, 0)) > 0;)
    have += (size_t)got;
  out[have] = 0;
  close(fd);
}

Test(server, metrics_over_http_and_stats) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.metrics = "127.0.0.1:0", .sync = RILL_SERVER_SYNC_GROUP});
  uint16_t mport = rill_server_metrics_port(v.s);
  cr_assert_gt(mport, 0);
  cli_t *c = calloc(1, sizeof *c);
  handshake(c, &v);
  rill_frame_t f;
  cli_send(c, RILL_F_BIND, 0, 1, 1, 0, "m", 1);
  expect_frame(c, RILL_F_ACK, 1, &f);
  for (uint64_t id = 2; id < 5; id++) {
    cli_send(c, RILL_F_PUBLISH, RILL_FF_ACK, 1, id, 0, "hello", 5);
    expect_frame(c, RILL_F_ACK, id, &f); /* after the syncer's fdatasync */
  }
  static char text[1 << 16];
  http_get(mport, "/metrics", text, sizeof text);
  cr_assert(!strncmp(text, "HTTP/1.1 200", 12), "%.40s", text);
  cr_expect(strstr(text, "\nrill_messages_published_total 3\n"), "published");
  cr_expect(strstr(text, "\nrill_topic_appended_total{topic=\"m\"} 3\n"), "per topic");
  cr_expect(strstr(text, "\nrill_topic_appended_bytes_total{topic=\"m\"} 15\n"), "bytes");
  cr_expect(strstr(text, "\nrill_publish_ack_seconds_count 3\n"), "ack latencies");
  cr_expect(strstr(text, "\nrill_connections_open 1\n"), "connections");
  http_get(mport, "/nope", text, sizeof text);
  cr_expect(!strncmp(text, "HTTP/1.1 404", 12), "%.40s", text);

  /* The same text over the protocol, for rill stat. */
  cli_send(c, RILL_F_STATS, 0, 0, 7, 0, NULL, 0);
  recv_into(c, &f, (uint8_t *)text, sizeof text - 1);
  cr_assert_eq(f.type, RILL_F_STATS);
  cr_assert_eq(f.id, 7);
  text[f.len] = 0;
  cr_expect(strstr(text, "rill_topic_next_sequence{topic=\"m\"} 3\n"), "%s", text);
  close(c->fd);
  free(c);
  srv_stop(&v);
}

static bool dir_has(const char *name) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

Test(server, limits_on_what_one_client_may_hold) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.max_topics = 2,
                                     .max_body = 16384,
                                     .max_message = 100000,
                                     .idle_timeout_ns = 1000000000ull});
  cli_t *c = calloc(1, sizeof *c), *d = calloc(1, sizeof *d);
  handshake(c, &v);
  rill_frame_t f;
  /* Reading a topic that does not exist creates nothing. */
  uint8_t req[16] = {10, 0, 0, 0, 'n', 'o', 'n', 'e'};
  cli_send(c, RILL_F_FETCH, 0, 0, 1, RILL_NET_FROM_EARLIEST, req, 8);
  expect_frame(c, RILL_F_ERROR, 1, &f);
  cr_expect_eq((int64_t)f.arg, RILL_ENOENT);
  cr_expect(!dir_has("none"), "a FETCH made a topic");
  /* At most max_topics topics. */
  cli_send(c, RILL_F_BIND, 0, 1, 2, 0, "t1", 2);
  expect_frame(c, RILL_F_ACK, 2, &f);
  cli_send(c, RILL_F_SUBSCRIBE, RILL_FF_CREATE, 9, 3, 0, "t2", 2);
  expect_frame(c, RILL_F_ACK, 3, &f);
  cli_send(c, RILL_F_BIND, 0, 2, 4, 0, "t3", 2);
  expect_frame(c, RILL_F_ERROR, 4, &f);
  cr_expect_eq((int64_t)f.arg, RILL_EBUSY);
  cr_expect(!dir_has("t3"));
  /* One connection's streams in flight stay under max_message. */
  static uint8_t m[16000];
  cli_send(c, RILL_F_PUBLISH, RILL_FF_STREAM, 1, 5, 60000, m, sizeof m);
  cli_send(c, RILL_F_PUBLISH, RILL_FF_STREAM, 1, 6, 60000, m, sizeof m);
  expect_frame(c, RILL_F_ERROR, 6, &f);
  cr_expect_eq((int64_t)f.arg, RILL_EBUSY);
  ping(c, 7);
  /* A client that drips a frame a byte at a time is idle: the bytes of a
   * frame that never completes do not keep it alive. */
  handshake(d, &v);
  uint8_t hdr[RILL_NET_HDR];
  rill_frame_header(hdr, RILL_F_PUBLISH, 0, 1, 1, 0, 1000);
  int got = 0;
  for (size_t i = 0; i < sizeof hdr && got == 0; i++) {
    if (send(d->fd, hdr + i, 1, MSG_NOSIGNAL) != 1)
      break;
    usleep(300000);
    got = recv(d->fd, d->rx, sizeof d->rx, MSG_DONTWAIT) > 0;
  }
  cr_expect(got, "still open after %zu bytes at 300 ms each", sizeof hdr);
  close(d->fd);
  close(c->fd);
  free(c);
  free(d);
  srv_stop(&v);
}

Test(server, half_close_and_provider_errors) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){0});
  cli_t *p = calloc(1, sizeof *p), *a = calloc(1, sizeof *a), *h = calloc(1, sizeof *h);
  handshake(p, &v);
  handshake(a, &v);
  rill_frame_t f;
  uint8_t body[256];
  cli_send(p, RILL_F_SERVE, 0, 3, 1, 0, "svc", 3);
  expect_frame(p, RILL_F_ACK, 1, &f);
  uint8_t ask[] = {3, 0, 's', 'v', 'c', 'q'};
  cli_send(a, RILL_F_ASK, 0, 0, 42, 0, ask, sizeof ask);
  cr_assert_eq(cli_recv(p, &f, body), 0);
  cr_assert_eq(f.type, RILL_F_ASK);
  /* The provider fails it: the asker gets the code and the message. */
  cli_send(p, RILL_F_ERROR, 0, 0, f.id, (uint64_t)(int64_t)RILL_EINVAL, "bad question", 12);
  recv_into(a, &f, body, sizeof body);
  cr_assert_eq(f.type, RILL_F_ERROR);
  cr_expect_eq((int64_t)f.arg, RILL_EINVAL);
  cr_expect_eq(f.id, 42);
  cr_expect(f.len == 12 && !memcmp(body, "bad question", 12));
  /* A client that sends, then shuts its side, still gets its answers. */
  handshake(h, &v);
  cli_send(h, RILL_F_PING, 0, 0, 77, 0, NULL, 0);
  shutdown(h->fd, SHUT_WR);
  expect_frame(h, RILL_F_PONG, 77, &f);
  cr_expect_eq(cli_recv(h, &f, NULL), -1, "closed after the answers");
  close(h->fd);
  close(p->fd);
  close(a->fd);
  free(p);
  free(a);
  free(h);
  srv_stop(&v);
}

/* Expects frame type with flags and arg, its body equal to want. */
static void expect_piece(cli_t *c, uint8_t type, uint8_t flags, uint64_t id, uint64_t arg,
                         const void *want, uint32_t len) {
  static uint8_t got[1 << 16];
  rill_frame_t f;
  recv_into(c, &f, got, sizeof got);
  cr_assert_eq(f.type, type, "type %u, not %u", f.type, type);
  cr_assert_eq(f.flags, flags);
  cr_assert_eq(f.id, id);
  cr_assert_eq(f.arg, arg);
  cr_assert_eq(f.len, len);
  cr_assert(!memcmp(got, want, len));
}

Test(server, asks_and_replies_stream_through) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.max_body = 16384, .max_message = 40000});
  cli_t *p = calloc(1, sizeof *p), *a = calloc(1, sizeof *a);
  handshake(p, &v);
  handshake(a, &v);
  rill_frame_t f;
  cli_send(p, RILL_F_SERVE, 0, 3, 1, 0, "big", 3);
  expect_frame(p, RILL_F_ACK, 1, &f);
  static uint8_t m[20000];
  for (size_t i = 0; i < sizeof m; i++)
    m[i] = (uint8_t)(i % 251);
  /* The asker's pieces go to the provider as they come, under the ask's id. */
  uint8_t first[5 + 10000] = {3, 0, 'b', 'i', 'g'};
  memcpy(first + 5, m, 10000);
  cli_send(a, RILL_F_ASK, RILL_FF_STREAM, 0, 50, 0, first, sizeof first);
  cli_send(a, RILL_F_CHUNK, RILL_FF_MORE, 0, 50, RILL_F_ASK, m + 10000, 6000);
  cli_send(a, RILL_F_CHUNK, 0, 0, 50, RILL_F_ASK, m + 16000, 4000);
  recv_into(p, &f, first, sizeof first);
  cr_assert_eq(f.type, RILL_F_ASK);
  cr_assert_eq(f.flags, RILL_FF_STREAM);
  cr_assert_eq(f.channel, 3);
  cr_assert(f.len == 10000 && !memcmp(first, m, 10000));
  uint64_t sid = f.id;
  expect_piece(p, RILL_F_CHUNK, RILL_FF_MORE, sid, RILL_F_ASK, m + 10000, 6000);
  expect_piece(p, RILL_F_CHUNK, 0, sid, RILL_F_ASK, m + 16000, 4000);
  /* The reply comes back the same way, under the asker's id; its last
   * piece ends the ask. */
  cli_send(p, RILL_F_REPLY, RILL_FF_STREAM, 0, sid, 0, m, 12000);
  cli_send(p, RILL_F_CHUNK, 0, 0, sid, RILL_F_REPLY, m + 12000, 8000);
  expect_piece(a, RILL_F_REPLY, RILL_FF_STREAM, 50, 0, m, 12000);
  expect_piece(a, RILL_F_CHUNK, 0, 50, RILL_F_REPLY, m + 12000, 8000);
  cli_send(p, RILL_F_CHUNK, 0, 0, sid, RILL_F_REPLY, m, 10); /* ended: dropped */
  ping(p, 2);
  /* Over max_message on the way: the asker is told, the provider
   * cancelled, the pieces still coming dropped. */
  memcpy(first, "\3\0big", 5); /* first held what the provider got */
  memcpy(first + 5, m, 10000);
  cli_send(a, RILL_F_ASK, RILL_FF_STREAM, 0, 51, 0, first, sizeof first);
  for (int i = 0; i < 4; i++)
    cli_send(a, RILL_F_CHUNK, i < 3 ? RILL_FF_MORE : 0, 0, 51, RILL_F_ASK, m, 10000);
  uint8_t why[256];
  recv_into(a, &f, why, sizeof why);
  cr_assert_eq(f.type, RILL_F_ERROR);
  cr_assert_eq(f.id, 51);
  cr_expect_eq((int64_t)f.arg, RILL_EMSGSIZE, "%lld %.*s", (long long)f.arg, (int)f.len, why);
  ping(a, 52);
  recv_into(p, &f, first, sizeof first);
  cr_assert_eq(f.type, RILL_F_ASK);
  sid = f.id;
  for (int i = 0; i < 3; i++) /* 40000 bytes, max_message; the next piece passes it */
    expect_piece(p, RILL_F_CHUNK, RILL_FF_MORE, sid, RILL_F_ASK, m, 10000);
  expect_frame(p, RILL_F_CANCEL, sid, &f);
  ping(p, 3);
  /* A CHUNK that names no stream, or a type that does not stream. */
  cli_send(a, RILL_F_CHUNK, 0, 0, 99, RILL_F_ASK, m, 10);
  expect_refused(a, RILL_EPROTO);
  cli_send(p, RILL_F_CHUNK, 0, 0, 1, RILL_F_BIND, m, 10);
  expect_refused(p, RILL_EPROTO);
  free(p);
  free(a);
  srv_stop(&v);
}

/* Stopping under group commit: every acknowledged publish the server
 * appended is answered before the BYE (its topic synced by the stopping
 * loop if the syncer had not got to it), and is in the log after. */
Test(server, stop_answers_the_acks_it_owes) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.sync = RILL_SERVER_SYNC_GROUP, .loops = 1});
  cli_t *c = calloc(1, sizeof *c);
  handshake(c, &v);
  rill_frame_t f;
  cli_send(c, RILL_F_BIND, 0, 1, 1, 0, "owed", 4);
  expect_frame(c, RILL_F_ACK, 1, &f);
  /* Many acknowledged publishes in one write, then the stop at once. */
  enum { N = 4000 };
  static uint8_t frames[N * (RILL_NET_HDR + 8)];
  for (uint64_t i = 0; i < N; i++) {
    uint8_t *p = frames + i * (RILL_NET_HDR + 8);
    rill_frame_header(p, RILL_F_PUBLISH, RILL_FF_ACK, 1, 100 + i, 0, 8);
    memcpy(p + RILL_NET_HDR, &i, 8);
  }
  cr_assert_eq(send(c->fd, frames, sizeof frames, MSG_NOSIGNAL), (ssize_t)sizeof frames);
  /* The PONG says the server has read them all; some ACKs may come
   * before it, the syncer being quick. */
  cli_send(c, RILL_F_PING, 0, 0, 2, 0, NULL, 0);
  uint64_t acks = 0;
  bool bye = false;
  for (;;) {
    cr_assert_eq(cli_recv(c, &f, NULL), 0);
    if (f.type == RILL_F_PONG)
      break;
    cr_assert_eq(f.type, RILL_F_ACK);
    cr_assert_eq(f.id, 100 + acks, "ACKs in order");
    acks++;
  }
  rill_server_stop(v.s);
  pthread_join(v.t, NULL);
  rill_server_destroy(v.s); /* closes the connection after what was queued */
  while (cli_recv(c, &f, NULL) == 0) {
    if (f.type == RILL_F_ACK) {
      cr_assert_eq(f.id, 100 + acks, "ACKs in order");
      acks++;
    } else {
      cr_assert_eq(f.type, RILL_F_BYE, "type %u", f.type);
      bye = true;
    }
  }
  cr_expect(bye, "no BYE");
  cr_expect_eq(acks, N, "%llu of %d acks before the BYE", (unsigned long long)acks, N);
  rill_log_t *log;
  cr_assert_eq(rill_log_open(&log, dir, "owed", &(rill_log_opts_t){.read_only = true}), 0);
  cr_expect_eq(rill_log_next(log), N);
  rill_log_close(log);
  close(c->fd);
  free(c);
}

/* ---- limits against hostile clients ------------------------------------------ */

/* An ASK with the service name and a payload of len bytes (all 'q'). */
static void send_ask(cli_t *c, uint64_t id, uint64_t deadline, const char *svc, uint32_t len) {
  static uint8_t b[2 + RILL_NET_MAX_NAME + 65536];
  size_t nl = strlen(svc);
  b[0] = (uint8_t)nl;
  b[1] = 0;
  memcpy(b + 2, svc, nl);
  memset(b + 2 + nl, 'q', len);
  cli_send(c, RILL_F_ASK, 0, 0, id, deadline, b, (uint32_t)(2 + nl + len));
}

static void serve(cli_t *c, uint16_t ch, uint64_t id, const char *svc) {
  rill_frame_t f;
  cli_send(c, RILL_F_SERVE, 0, ch, id, 0, svc, (uint32_t)strlen(svc));
  expect_frame(c, RILL_F_ACK, id, &f);
}

/* An ERROR with id and code whose message names what. */
static void expect_error(cli_t *c, uint64_t id, int code, const char *what) {
  rill_frame_t f;
  uint8_t body[4096];
  cr_assert_eq(cli_recv(c, &f, body), 0, "closed while waiting for an ERROR");
  cr_assert_eq(f.type, RILL_F_ERROR, "type %u where an ERROR was due", f.type);
  cr_expect_eq(f.id, id);
  cr_expect_eq((int64_t)f.arg, code, "code %lld: %.*s", (long long)(int64_t)f.arg, (int)f.len,
               body);
  body[f.len < sizeof body ? f.len : sizeof body - 1] = 0;
  if (what)
    cr_expect(strstr((char *)body, what), "'%s' does not name %s", body, what);
}

/* A deadline near 2^64 ns from now is as good as none: it does not wrap
 * into the past and end the ask at the next sweep. */
Test(server, a_far_ask_deadline_does_not_wrap) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  cli_t *p = calloc(1, sizeof *p), *a = calloc(1, sizeof *a);
  handshake(p, &v);
  handshake(a, &v);
  rill_frame_t f;
  serve(p, 3, 1, "far");
  send_ask(a, 7, UINT64_MAX - 5, "far", 4);
  expect_frame(p, RILL_F_ASK, 1, &f); /* the server's first ask id */
  uint64_t sid = f.id;
  usleep(350000); /* three sweeps of the deadlines */
  cli_send(p, RILL_F_REPLY, 0, 0, sid, 0, "ok", 2);
  expect_frame(a, RILL_F_REPLY, 7, &f);
  ping(p, 2); /* no CANCEL came before */
  close(p->fd);
  close(a->fd);
  free(p);
  free(a);
  srv_stop(&v);
}

/* A streamed PUBLISH refused at its first frame (here: an unbound
 * channel) has its CHUNKs dropped, not taken for a protocol error; the
 * refused streams still count against the four a connection may have. */
Test(server, a_refused_stream_has_its_chunks_dropped) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.max_body = 16384, .max_message = 100000});
  cli_t *c = calloc(1, sizeof *c);
  handshake(c, &v);
  static uint8_t m[16000];
  cli_send(c, RILL_F_PUBLISH, RILL_FF_STREAM, 5, 10, 40000, m, sizeof m);
  cli_send(c, RILL_F_CHUNK, RILL_FF_MORE, 0, 10, RILL_F_PUBLISH, m, sizeof m);
  cli_send(c, RILL_F_CHUNK, 0, 0, 10, RILL_F_PUBLISH, m, 8000);
  expect_error(c, 10, RILL_EINVAL, "not bound");
  ping(c, 11);
  /* Four refused and left open; a fifth is one too many. */
  for (uint64_t i = 0; i < 4; i++) {
    cli_send(c, RILL_F_PUBLISH, RILL_FF_STREAM, 5, 20 + i, 40000, m, 100);
    expect_error(c, 20 + i, RILL_EINVAL, "not bound");
  }
  cli_send(c, RILL_F_PUBLISH, RILL_FF_STREAM, 5, 30, 40000, m, 100);
  expect_refused(c, RILL_EPROTO);
  free(c);
  srv_stop(&v);
}

typedef struct {
  cli_t *a;
  srv_t *v;
  int n;
  uint32_t len;
} flood_t;

/* Connects (all the askers at once: while one loop is busy accepting,
 * the kernel hands connections to the others), then floods. */
static void *ask_flood(void *arg) {
  flood_t *fl = arg;
  handshake(fl->a, fl->v);
  for (int i = 0; i < fl->n; i++)
    send_ask(fl->a, 1000 + (uint64_t)i, 0, "slow", fl->len);
  return NULL;
}

/* An asker faster than its provider is refused (EBUSY naming the
 * provider's queue) instead of the provider being cut off. With more
 * than one loop, several askers make it likely that some are on another
 * loop than the provider (its cross-loop queue then fills). */
static void asker_flood(uint32_t loops, int naskers) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = loops, .max_body = 16384, .tx_limit = 131072});
  cli_t *p = calloc(1, sizeof *p), *a[8];
  handshake(p, &v);
  serve(p, 3, 1, "slow");
  /* 600 asks of 16000 bytes in all: more than the kernel's buffers and
   * the provider's queue hold, while the provider reads nothing. The
   * refusals are small: the askers' kernel buffers hold them unread. */
  flood_t fl[8];
  pthread_t t[8];
  for (int i = 0; i < naskers; i++) {
    a[i] = calloc(1, sizeof *a[i]);
    fl[i] = (flood_t){a[i], &v, 600 / naskers, 16000};
  }
  for (int i = 0; i < naskers; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, ask_flood, &fl[i]), 0);
  int busy = 0, got = 0;
  rill_frame_t f;
  uint8_t body[4096];
  for (int i = 0; i < naskers; i++) {
    pthread_join(t[i], NULL);
    /* Its refusals, then its PONG: the server has handled all its asks. */
    cli_send(a[i], RILL_F_PING, 0, 0, 78, 0, NULL, 0);
    for (;;) {
      cr_assert_eq(cli_recv(a[i], &f, body), 0, "an asker was closed");
      if (f.type == RILL_F_PONG)
        break;
      cr_assert_eq(f.type, RILL_F_ERROR, "type %u", f.type);
      cr_assert_eq((int64_t)f.arg, RILL_EBUSY, "code %lld: %.*s", (long long)(int64_t)f.arg,
                   (int)f.len, body);
      body[f.len < sizeof body ? f.len : 0] = 0;
      cr_assert(strstr((char *)body, "tx_limit"), "'%s' names no limit", body);
      busy++;
    }
  }
  cr_expect_gt(busy, 0, "no ask refused");
  /* The provider was not cut off: it reads every ask not refused, and the
   * PONG to its PING. The PONG may come before asks forwarded from
   * another loop (nothing orders the two loops' frames), so it ends
   * nothing; a lost ask fails at the receive timeout. */
  cli_send(p, RILL_F_PING, 0, 0, 77, 0, NULL, 0);
  bool ponged = false;
  while (!ponged || busy + got < 600) {
    cr_assert_eq(cli_recv(p, &f, body), 0, "the provider was cut off after %d asks (%d refused)",
                 got, busy);
    if (f.type == RILL_F_PONG && !ponged) {
      ponged = true;
      continue;
    }
    cr_assert_eq(f.type, RILL_F_ASK, "type %u: %.*s", f.type,
                 f.type == RILL_F_ERROR ? (int)f.len : 0, body);
    got++;
  }
  cr_expect_gt(got, 0);
  cr_expect_eq(busy + got, 600, "%d refused, %d asked, of 600", busy, got);
  rill_server_stats_t st;
  rill_server_stats(v.s, &st);
  cr_expect_eq(st.asks_refused, (uint64_t)busy);
  cr_expect_eq(st.conns_dropped, 0);
  close(p->fd);
  free(p);
  for (int i = 0; i < naskers; i++) {
    close(a[i]->fd);
    free(a[i]);
  }
  srv_stop(&v);
}

Test(server, an_asker_cannot_cut_off_its_provider) { asker_flood(1, 1); }
Test(server, an_asker_cannot_cut_off_its_provider_across_loops) { asker_flood(2, 8); }

/* Asks in flight are held to max_asks_per_conn and max_asks; a CANCEL
 * finds its ask; an asker that goes gives its asks back. */
Test(server, asks_in_flight_are_limited) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1, .max_asks_per_conn = 100, .max_asks = 150});
  cli_t *p = calloc(1, sizeof *p), *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
  handshake(p, &v);
  handshake(a, &v);
  handshake(b, &v);
  serve(p, 3, 1, "svc");
  for (uint64_t i = 1; i <= 100; i++)
    send_ask(a, i, 0, "svc", 1);
  send_ask(a, 101, 0, "svc", 1);
  expect_error(a, 101, RILL_EBUSY, "max_asks_per_conn (100)");
  for (uint64_t i = 1; i <= 50; i++)
    send_ask(b, i, 0, "svc", 1);
  send_ask(b, 51, 0, "svc", 1);
  expect_error(b, 51, RILL_EBUSY, "max_asks (150)");
  rill_frame_t f;
  for (int i = 0; i < 150; i++)
    expect_frame(p, RILL_F_ASK, (uint64_t)i + 1, &f);
  /* A CANCEL ends its own ask, and frees its place. */
  cli_send(a, RILL_F_CANCEL, 0, 0, 42, 0, NULL, 0);
  expect_error(a, 42, RILL_ECANCELED, NULL);
  expect_frame(p, RILL_F_CANCEL, 42, &f);
  cli_send(b, RILL_F_CANCEL, 0, 0, 99, 0, NULL, 0); /* b has no 99 */
  ping(b, 60);
  send_ask(b, 61, 0, "svc", 1);
  expect_frame(p, RILL_F_ASK, 151, &f);
  /* The asker goes: its asks end (the provider is told), and their
   * places are free again. */
  close(a->fd);
  for (int i = 0; i < 99; i++)
    expect_frame(p, RILL_F_CANCEL, (uint64_t)i + 1 + (i >= 41), &f);
  for (uint64_t i = 0; i < 49; i++) /* b's own limit, now that a's are gone */
    send_ask(b, 100 + i, 0, "svc", 1);
  for (uint64_t i = 0; i < 49; i++)
    expect_frame(p, RILL_F_ASK, 152 + i, &f);
  ping(b, 62);
  rill_server_stats_t st;
  rill_server_stats(v.s, &st);
  cr_expect_eq(st.asks_refused, 2);
  close(p->fd);
  close(b->fd);
  free(p);
  free(a);
  free(b);
  srv_stop(&v);
}

/* SERVE registrations are held to max_serves_per_conn and max_serves,
 * and given back when their connection goes. */
Test(server, serve_registrations_are_limited) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1, .max_serves_per_conn = 3, .max_serves = 4});
  cli_t *c = calloc(1, sizeof *c), *d = calloc(1, sizeof *d);
  handshake(c, &v);
  handshake(d, &v);
  serve(c, 1, 1, "a");
  serve(c, 2, 2, "a"); /* the same name again counts too */
  serve(c, 3, 3, "b");
  cli_send(c, RILL_F_SERVE, 0, 4, 4, 0, "c", 1);
  expect_error(c, 4, RILL_EBUSY, "max_serves_per_conn (3)");
  serve(d, 1, 1, "d");
  cli_send(d, RILL_F_SERVE, 0, 2, 2, 0, "e", 1);
  expect_error(d, 2, RILL_EBUSY, "max_serves (4)");
  close(c->fd);
  /* Its registrations go with it: d may serve again (once the server has
   * seen c go, which the retries wait for). */
  rill_frame_t f;
  bool acked = false;
  for (uint64_t id = 3; id < 300 && !acked; id++) {
    cli_send(d, RILL_F_SERVE, 0, 2, id, 0, "e", 1);
    cr_assert_eq(cli_recv(d, &f, NULL), 0);
    acked = f.type == RILL_F_ACK;
    if (!acked)
      usleep(10000);
  }
  cr_expect(acked, "the closed connection's registrations were not given back");
  /* A service nobody serves any more is gone. */
  uint8_t ask[] = {1, 0, 'a', 'x'};
  cli_send(d, RILL_F_ASK, 0, 0, 500, 0, ask, sizeof ask);
  expect_error(d, 500, RILL_ENOENT, NULL);
  rill_server_stats_t st;
  rill_server_stats(v.s, &st);
  cr_expect_geq(st.serves_refused, 2);
  close(d->fd);
  free(c);
  free(d);
  srv_stop(&v);
}

/* Before its HELLO is accepted a connection may send no frame larger
 * than a HELLO can be: a bigger one is refused at once, not buffered. */
Test(server, nothing_larger_than_a_hello_before_it) {
  static char token[RILL_NET_MAX_TOKEN + 1];
  memset(token, 't', RILL_NET_MAX_TOKEN);
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.token = token, .handshake_timeout_ns = 3000000000ull});
  cli_t *c = calloc(1, sizeof *c);
  cli_connect(c, &v);
  uint8_t hdr[RILL_NET_HDR];
  rill_frame_header(hdr, RILL_F_HELLO, 0, 0, 0, 0, 100000);
  cr_assert_eq(send(c->fd, hdr, sizeof hdr, MSG_NOSIGNAL), (ssize_t)sizeof hdr);
  expect_refused(c, RILL_EMSGSIZE);
  /* The largest HELLO there is still goes through. */
  cli_connect(c, &v);
  static uint8_t b[RILL_NET_HDR + 1024];
  char name[RILL_NET_MAX_NAME + 1];
  memset(name, 'n', RILL_NET_MAX_NAME);
  size_t len = rill_net_hello_size(RILL_NET_MAX_TOKEN, RILL_NET_MAX_NAME);
  cr_assert_eq(rill_net_hello_encode(b, token, RILL_NET_MAX_TOKEN, name, RILL_NET_MAX_NAME), 0);
  cli_send(c, RILL_F_HELLO, 0, 0, 0, 0, b, (uint32_t)len);
  rill_frame_t f;
  expect_frame(c, RILL_F_WELCOME, 0, &f);
  ping(c, 1);
  close(c->fd);
  free(c);
  srv_stop(&v);
}

/* max_conns and max_topics that need more descriptors than the hard
 * RLIMIT_NOFILE allows are refused, naming both numbers; under it, the
 * soft limit is raised as far as they need. (Criterion runs each test in
 * its own process: lowering the hard limit stays here.) */
Test(server, descriptors_checked_against_rlimit_nofile) {
  struct rlimit rl = {1100, 3000};
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "%s", strerror(errno));
  rill_server_t *s = NULL;
  int rc = rill_server_create(
      &s, &(rill_server_opts_t){
              .data_dir = dir, .any_port = true, .max_conns = 5000, .max_topics = 10});
  cr_assert_eq(rc, RILL_EINVAL);
  cr_expect(strstr(rill_errmsg(), "5000") && strstr(rill_errmsg(), "3000"), "%s", rill_errmsg());
  rc = rill_server_create(
      &s, &(rill_server_opts_t){
              .data_dir = dir, .any_port = true, .max_conns = 1500, .max_topics = 100});
  cr_assert_eq(rc, 0, "%s", rill_errmsg());
  cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
  cr_expect_geq(rl.rlim_cur, 1500 + 400, "soft limit %llu", (unsigned long long)rl.rlim_cur);
  rill_server_destroy(s);
}

/* Channels bound and subscriptions are held to max_binds_per_conn,
 * max_binds, max_subs_per_conn and max_subs, refused with EBUSY naming
 * the limit; rebinding a channel takes nothing more, an UNSUBSCRIBE or a
 * connection that goes gives its places back. */
Test(server, binds_and_subscriptions_are_limited) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1,
                                     .max_binds_per_conn = 5,
                                     .max_binds = 7,
                                     .max_subs_per_conn = 4,
                                     .max_subs = 6});
  cli_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
  handshake(a, &v);
  handshake(b, &v);
  rill_frame_t f;
  for (uint16_t ch = 1; ch <= 5; ch++) {
    cli_send(a, RILL_F_BIND, 0, ch, ch, 0, "lim", 3);
    expect_frame(a, RILL_F_ACK, ch, &f);
  }
  cli_send(a, RILL_F_BIND, 0, 6, 6, 0, "lim", 3);
  expect_error(a, 6, RILL_EBUSY, "max_binds_per_conn (5)");
  cli_send(a, RILL_F_BIND, 0, 3, 7, 0, "lim2", 4); /* a rebind: allowed */
  expect_frame(a, RILL_F_ACK, 7, &f);
  cli_send(a, RILL_F_PUBLISH, RILL_FF_ACK, 3, 8, 0, "x", 1);
  expect_frame(a, RILL_F_ACK, 8, &f);
  cr_expect_eq(f.arg, 0, "the rebound channel publishes to lim2");
  cli_send(a, RILL_F_PUBLISH, RILL_FF_ACK, 1, 8, 0, "y", 1);
  expect_frame(a, RILL_F_ACK, 8, &f);
  cli_send(a, RILL_F_PUBLISH, RILL_FF_ACK, 6, 9, 0, "x", 1); /* refused: not bound */
  expect_error(a, 9, RILL_EINVAL, "not bound");
  /* A refused BIND made no topic. */
  cli_send(b, RILL_F_BIND, 0, 1, 1, 0, "b1", 2);
  expect_frame(b, RILL_F_ACK, 1, &f);
  cli_send(b, RILL_F_BIND, 0, 2, 2, 0, "b2", 2);
  expect_frame(b, RILL_F_ACK, 2, &f);
  cli_send(b, RILL_F_BIND, 0, 3, 3, 0, "never", 5);
  expect_error(b, 3, RILL_EBUSY, "max_binds (7)");
  /* Subscriptions. */
  for (uint16_t ch = 10; ch < 14; ch++) {
    cli_send(a, RILL_F_SUBSCRIBE, 0, ch, ch, RILL_NET_FROM_EARLIEST, "lim", 3);
    expect_frame(a, RILL_F_ACK, ch, &f);
  }
  cli_send(a, RILL_F_SUBSCRIBE, 0, 14, 14, RILL_NET_FROM_EARLIEST, "lim", 3);
  expect_error(a, 14, RILL_EBUSY, "max_subs_per_conn (4)");
  cli_send(b, RILL_F_SUBSCRIBE, 0, 10, 10, RILL_NET_FROM_EARLIEST, "lim", 3);
  expect_frame(b, RILL_F_ACK, 10, &f);
  cli_send(b, RILL_F_SUBSCRIBE, 0, 11, 11, RILL_NET_FROM_EARLIEST, "lim", 3);
  expect_frame(b, RILL_F_ACK, 11, &f);
  cli_send(b, RILL_F_SUBSCRIBE, RILL_FF_CREATE, 12, 12, RILL_NET_FROM_EARLIEST, "nope", 4);
  expect_error(b, 12, RILL_EBUSY, "max_subs (6)");
  /* An UNSUBSCRIBE gives its place back, and the others still work. */
  cli_send(a, RILL_F_UNSUBSCRIBE, 0, 11, 15, 0, NULL, 0);
  expect_frame(a, RILL_F_ACK, 15, &f);
  cli_send(a, RILL_F_SUBSCRIBE, 0, 14, 16, RILL_NET_FROM_EARLIEST, "lim", 3);
  expect_frame(a, RILL_F_ACK, 16, &f);
  cli_send(a, RILL_F_CREDIT, 0, 11, 17, 1, NULL, 0); /* no longer subscribed */
  expect_error(a, 17, RILL_ENOENT, NULL);
  cli_send(a, RILL_F_CREDIT, 0, 14, 18, 1, NULL, 0);
  expect_frame(a, RILL_F_DELIVER, 0, &f);
  cr_expect_eq(f.channel, 14);
  ping(a, 19);
  rill_server_stats_t st;
  rill_server_stats(v.s, &st);
  cr_expect_eq(st.binds_refused, 2);
  cr_expect_eq(st.subs_refused, 2);
  /* a goes: its binds and subscriptions are given back. */
  close(a->fd);
  bool acked = false;
  for (uint64_t id = 100; id < 400 && !acked; id++) {
    cli_send(b, RILL_F_BIND, 0, 3, id, 0, "b3", 2);
    cr_assert_eq(cli_recv(b, &f, NULL), 0);
    acked = f.type == RILL_F_ACK;
    if (!acked)
      usleep(10000);
  }
  cr_expect(acked, "the closed connection's binds were not given back");
  cli_send(b, RILL_F_SUBSCRIBE, 0, 12, 500, RILL_NET_FROM_EARLIEST, "lim", 3);
  expect_frame(b, RILL_F_ACK, 500, &f);
  close(b->fd);
  free(a);
  free(b);
  char p[128];
  snprintf(p, sizeof p, "%s/never", dir);
  cr_expect_neq(access(p, F_OK), 0, "a refused BIND made its topic");
  srv_stop(&v);
}

/* Thousands of channels on one connection, bound and subscribed in an
 * order that is not the channels' and with subscriptions dropped in
 * between: each PUBLISH and CREDIT still finds its own channel. */
Test(server, many_channels_each_find_their_own) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  cli_t *a = calloc(1, sizeof *a);
  handshake(a, &v);
  int one = 1; /* thousands of round trips: none waits for a delayed ACK */
  setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  rill_frame_t f;
  enum { N = 3000 };
  char name[16];
  for (uint32_t i = 0; i < N; i++) {
    uint16_t ch = (uint16_t)(i * 7919u % 65536u); /* channel 0 too */
    int nl = snprintf(name, sizeof name, "m%u", i % 5);
    cli_send(a, RILL_F_BIND, 0, ch, i + 1, 0, name, (uint32_t)nl);
    expect_frame(a, RILL_F_ACK, i + 1, &f);
    cli_send(a, RILL_F_SUBSCRIBE, 0, ch, i + 1, RILL_NET_FROM_LATEST, name, (uint32_t)nl);
    expect_frame(a, RILL_F_ACK, i + 1, &f);
    if (i % 3 == 2) { /* every third one dropped again: the table moves entries back */
      cli_send(a, RILL_F_UNSUBSCRIBE, 0, ch, i + 1, 0, NULL, 0);
      expect_frame(a, RILL_F_ACK, i + 1, &f);
    }
  }
  uint64_t published[5] = {0};
  for (uint32_t i = 0; i < N; i += 37) {
    uint16_t ch = (uint16_t)(i * 7919u % 65536u);
    cli_send(a, RILL_F_PUBLISH, RILL_FF_ACK, ch, 100000 + i, 0, "p", 1);
    expect_frame(a, RILL_F_ACK, 100000 + i, &f);
    cr_expect_eq(f.arg, published[i % 5]++, "channel %u published to another topic", ch);
  }
  for (uint32_t i = 0; i < N; i += 41) {
    uint16_t ch = (uint16_t)(i * 7919u % 65536u);
    cli_send(a, RILL_F_CREDIT, 0, ch, 200000 + i, 1, NULL, 0);
    if (i % 3 == 2) {
      expect_error(a, 200000 + i, RILL_ENOENT, "no such subscription");
      continue;
    }
    /* Subscribed from the latest: a record of its topic published after
     * it subscribed is delivered, on its channel, or nothing. */
    cli_send(a, RILL_F_PING, 0, 0, 300000 + i, 0, NULL, 0);
    for (;;) {
      cr_assert_eq(cli_recv(a, &f, NULL), 0);
      if (f.type == RILL_F_PONG)
        break;
      cr_assert_eq(f.type, RILL_F_DELIVER, "type %u", f.type);
      cr_assert_eq(f.channel, ch, "a delivery on channel %u for %u", f.channel, ch);
    }
  }
  close(a->fd);
  free(a);
  srv_stop(&v);
}

/* Asks with deadlines mixed (soon, an hour away, none) from two askers:
 * the ones whose deadline passed end (ETIMEDOUT to their asker, CANCEL to
 * the provider), every other one stays and gets its reply. */
Test(server, only_the_asks_past_their_deadline_end) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  cli_t *p = calloc(1, sizeof *p), *a[2] = {calloc(1, sizeof(cli_t)), calloc(1, sizeof(cli_t))};
  handshake(p, &v);
  handshake(a[0], &v);
  handshake(a[1], &v);
  serve(p, 3, 1, "mix");
  enum { N = 600 };
  /* Ask i comes from a[i % 2]; its deadline is
   * 200 ms plus i µs when i % 3 == 0 (in no order the heap is given), an
   * hour when 1, none when 2. */
  for (uint64_t i = 0; i < N; i++) {
    uint64_t dl = i % 3 == 0   ? 200000000ull + (i * 7919 % N) * 1000
                  : i % 3 == 1 ? 3600000000000ull
                               : 0;
    send_ask(a[i % 2], 1000 + i, dl, "mix", 1);
  }
  /* The provider's asks come in the order the server read them (the
   * askers' interleaved as it happened); their arg is the deadline. */
  rill_frame_t f;
  static bool soon[N + 1], told[N], cancelled[N + 1];
  for (uint64_t i = 0; i < N; i++) {
    expect_frame(p, RILL_F_ASK, i + 1, &f);
    soon[f.id] = f.arg && f.arg < 1000000000ull;
  }
  /* Each expired ask ends once, with its asker and with the provider. */
  uint8_t body[4096];
  for (int side = 0; side < 2; side++)
    for (int k = 0; k < N / 6; k++) {
      cr_assert_eq(cli_recv(a[side], &f, body), 0);
      cr_assert_eq(f.type, RILL_F_ERROR, "type %u", f.type);
      cr_assert_eq((int64_t)f.arg, RILL_ETIMEDOUT, "code %lld", (long long)(int64_t)f.arg);
      uint64_t i = f.id - 1000;
      cr_assert(i < N && i % 3 == 0 && i % 2 == (uint64_t)side && !told[i],
                "ask %llu ended by its deadline", (unsigned long long)i);
      told[i] = true;
    }
  for (int k = 0; k < N / 3; k++) {
    cr_assert_eq(cli_recv(p, &f, NULL), 0);
    cr_assert_eq(f.type, RILL_F_CANCEL, "type %u", f.type);
    cr_assert(f.id >= 1 && f.id <= N && soon[f.id] && !cancelled[f.id],
              "ask %llu (the server's id) cancelled", (unsigned long long)f.id);
    cancelled[f.id] = true;
  }
  /* The provider answers every ask: only the living ones' replies come
   * back, each to its asker under its id, then the PONG. */
  for (uint64_t i = 0; i < N; i++)
    cli_send(p, RILL_F_REPLY, 0, 0, i + 1, 0, "r", 1);
  ping(p, 2);
  for (int side = 0; side < 2; side++) {
    cli_send(a[side], RILL_F_PING, 0, 0, 7, 0, NULL, 0);
    int replies = 0;
    for (;;) {
      cr_assert_eq(cli_recv(a[side], &f, NULL), 0);
      if (f.type == RILL_F_PONG)
        break;
      cr_assert_eq(f.type, RILL_F_REPLY, "type %u", f.type);
      uint64_t i = f.id - 1000;
      cr_assert(i < N && i % 3 != 0 && i % 2 == (uint64_t)side, "a reply to ask %llu",
                (unsigned long long)i);
      replies++;
    }
    cr_expect_eq(replies, N / 3, "%d replies to a[%d]", replies, side);
  }
  for (int i = 0; i < 2; i++) {
    close(a[i]->fd);
    free(a[i]);
  }
  close(p->fd);
  free(p);
  srv_stop(&v);
}

typedef struct {
  cli_t *p;
  uint64_t sid;
  int pieces;
} streamer_t;

#define PIECE 16000u

static uint8_t piece_byte(uint64_t off) { return (uint8_t)(off * 131 % 251); }

/* Streams a REPLY of pieces * PIECE bytes as fast as the socket takes it. */
static void *reply_streamer(void *arg) {
  streamer_t *st = arg;
  static uint8_t b[PIECE];
  for (int k = 0; k < st->pieces; k++) {
    for (uint32_t j = 0; j < PIECE; j++)
      b[j] = piece_byte((uint64_t)k * PIECE + j);
    if (k == 0)
      cli_send(st->p, RILL_F_REPLY, RILL_FF_STREAM, 0, st->sid, 0, b, PIECE);
    else
      cli_send(st->p, RILL_F_CHUNK, k + 1 < st->pieces ? RILL_FF_MORE : 0, 0, st->sid, RILL_F_REPLY,
               b, PIECE);
  }
  return NULL;
}

/* A provider streams a reply far bigger than its asker's tx_limit (and
 * the kernel's buffers) while the asker reads nothing: the provider is
 * held back, not the asker cut off; once the asker reads, the whole
 * reply comes, in order, and both are still connected. */
static void slow_asker(uint32_t loops) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = loops, .max_body = 16384, .tx_limit = 131072});
  cli_t *p = calloc(1, sizeof *p), *a = calloc(1, sizeof *a);
  handshake(p, &v);
  handshake(a, &v);
  int small = 16384; /* the asker's kernel takes little before the server's queue fills */
  setsockopt(a->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  serve(p, 3, 1, "big");
  send_ask(a, 9, 0, "big", 1);
  rill_frame_t f;
  expect_frame(p, RILL_F_ASK, 1, &f);
  streamer_t st = {p, f.id, 640}; /* 10 MB */
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, reply_streamer, &st), 0);
  /* Wait (30 s at most) for the server to hold the provider back, or to
   * cut someone off. */
  rill_server_stats_t s;
  for (int i = 0; i < 3000; i++) {
    rill_server_stats(v.s, &s);
    if (s.replies_held || s.conns_dropped)
      break;
    usleep(10000);
  }
  cr_expect_gt(s.replies_held, 0, "the provider was never held back");
  uint64_t got = 0;
  bool last = false;
  uint8_t body[4096];
  uint8_t piece[sizeof body];
  while (!last) {
    cr_assert_eq(cli_recv(a, &f, body), 0, "the asker was cut off after %llu bytes",
                 (unsigned long long)got);
    if (f.type == RILL_F_ERROR)
      cr_assert_fail("ERROR %lld after %llu bytes: %.*s", (long long)(int64_t)f.arg,
                     (unsigned long long)got, (int)f.len, body);
    cr_assert_eq(f.id, 9);
    cr_assert(got ? f.type == RILL_F_CHUNK && f.arg == RILL_F_REPLY
                  : f.type == RILL_F_REPLY && (f.flags & RILL_FF_STREAM),
              "type %u at %llu", f.type, (unsigned long long)got);
    cr_assert_eq(f.len, PIECE);
    for (uint32_t j = 0; j < sizeof body; j++) /* what cli_recv kept of it */
      piece[j] = piece_byte(got + j);
    cr_assert_eq(memcmp(body, piece, sizeof body), 0, "the piece at %llu", (unsigned long long)got);
    got += f.len;
    last = f.type == RILL_F_CHUNK && !(f.flags & RILL_FF_MORE);
  }
  cr_expect_eq(got, (uint64_t)st.pieces * PIECE);
  pthread_join(t, NULL);
  ping(p, 20); /* the provider is still there, read again */
  ping(a, 21);
  rill_server_stats(v.s, &s);
  cr_expect_eq(s.conns_dropped, 0);
  close(p->fd);
  close(a->fd);
  free(p);
  free(a);
  srv_stop(&v);
}

Test(server, a_provider_is_held_back_by_a_slow_asker) { slow_asker(1); }
Test(server, a_provider_is_held_back_by_a_slow_asker_across_loops) { slow_asker(2); }

/* An asker that never reads holds its provider back 10 s at most: then
 * the ask ends (ENOBUFS naming tx_limit to the asker, CANCEL to the
 * provider), the rest of the reply is dropped, and the provider is read
 * again. */
Test(server, a_held_reply_ends_when_its_asker_never_reads, .timeout = 60) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1, .max_body = 16384, .tx_limit = 131072});
  cli_t *p = calloc(1, sizeof *p), *a = calloc(1, sizeof *a);
  handshake(p, &v);
  handshake(a, &v);
  int small = 16384;
  setsockopt(a->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  serve(p, 3, 1, "big");
  send_ask(a, 9, 0, "big", 1);
  rill_frame_t f;
  expect_frame(p, RILL_F_ASK, 1, &f);
  streamer_t st = {p, f.id, 640};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, reply_streamer, &st), 0);
  pthread_join(t, NULL); /* the provider's thread gets it all out once the ask ended */
  /* The provider: CANCEL of the ask, and it answers again. */
  cli_send(p, RILL_F_PING, 0, 0, 20, 0, NULL, 0);
  expect_frame(p, RILL_F_CANCEL, st.sid, &f);
  expect_frame(p, RILL_F_PONG, 20, &f);
  /* The asker: part of the reply, then the ERROR naming the limit. */
  uint8_t body[4096];
  uint64_t got = 0;
  for (;;) {
    cr_assert_eq(cli_recv(a, &f, body), 0, "the asker was cut off");
    if (f.type == RILL_F_ERROR)
      break;
    cr_assert(f.type == RILL_F_REPLY || f.type == RILL_F_CHUNK, "type %u", f.type);
    got += f.len;
  }
  cr_expect_eq((int64_t)f.arg, RILL_ENOBUFS);
  body[f.len < sizeof body ? f.len : sizeof body - 1] = 0;
  cr_expect(strstr((char *)body, "tx_limit"), "'%s' names no limit", body);
  cr_expect_lt(got, (uint64_t)st.pieces * PIECE);
  ping(a, 21);
  rill_server_stats_t s;
  rill_server_stats(v.s, &s);
  cr_expect_eq(s.conns_dropped, 0);
  close(p->fd);
  close(a->fd);
  free(p);
  free(a);
  srv_stop(&v);
}
