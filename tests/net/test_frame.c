/*
 * The protocol's codec: headers round trip for every type and the flags it
 * takes, partial input asks for exactly what is missing, a stream split
 * anywhere decodes the same, hostile headers and handshake bodies are
 * clean errors, bodies slice the receive buffer without a copy, and
 * decoding allocates nothing.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rill/mem.h"
#include "rill/net.h"

/* A user of the protocol, the server or the client does not get the log
 * or the bus with it. */
#if defined(RILL_LOG_H) || defined(RILL_BUS_H)
#error "rill/net.h includes rill/log.h or rill/bus.h"
#endif

static const struct {
  uint8_t type, flags;
} kinds[] = {
    {RILL_F_HELLO, 0},
    {RILL_F_WELCOME, 0},
    {RILL_F_ERROR, 0},
    {RILL_F_PING, 0},
    {RILL_F_PONG, 0},
    {RILL_F_BYE, 0},
    {RILL_F_BIND, 0},
    {RILL_F_PUBLISH, RILL_FF_ACK | RILL_FF_STREAM},
    {RILL_F_PUBLISH_BATCH, RILL_FF_ACK},
    {RILL_F_ACK, 0},
    {RILL_F_SUBSCRIBE, RILL_FF_CREATE},
    {RILL_F_UNSUBSCRIBE, 0},
    {RILL_F_DELIVER, RILL_FF_STREAM | RILL_FF_END},
    {RILL_F_CREDIT, 0},
    {RILL_F_FETCH, 0},
    {RILL_F_SERVE, 0},
    {RILL_F_ASK, RILL_FF_STREAM},
    {RILL_F_REPLY, RILL_FF_STREAM},
    {RILL_F_CANCEL, 0},
    {RILL_F_CHUNK, RILL_FF_MORE},
    {RILL_F_STATS, 0},
    {RILL_F_TOPICS, RILL_FF_MORE},
    {RILL_F_TOPIC_INFO, 0},
    {RILL_F_TOPIC_DELETE, 0},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

Test(frame, header_round_trip_for_every_type) {
  uint8_t b[RILL_NET_HDR + 5];
  memcpy(b + RILL_NET_HDR, "hello", 5);
  for (size_t k = 0; k < NKINDS; k++) {
    rill_frame_header(b, kinds[k].type, kinds[k].flags, 0xbeef, 0x0102030405060708ull,
                      UINT64_MAX - k, 5);
    rill_frame_t f;
    size_t used = 0;
    cr_assert_eq(rill_frame_decode(b, sizeof b, 1 << 20, &f, &used), 0, "type %u: %s",
                 kinds[k].type, rill_errmsg());
    cr_expect_eq(used, sizeof b);
    cr_expect_eq(f.type, kinds[k].type);
    cr_expect_eq(f.flags, kinds[k].flags);
    cr_expect_eq(f.channel, 0xbeef);
    cr_expect_eq(f.id, 0x0102030405060708ull);
    cr_expect_eq(f.arg, UINT64_MAX - k);
    cr_expect_eq(f.len, 5);
    cr_expect_eq(f.body, b + RILL_NET_HDR, "the body is where it was: no copy");
  }
  /* Little-endian on the wire, whatever the host. */
  rill_frame_header(b, RILL_F_PUBLISH, RILL_FF_ACK, 0x0203, 0x11, 0x22, 0x01020304);
  static const uint8_t want[8] = {4, 3, 2, 1, RILL_F_PUBLISH, RILL_FF_ACK, 3, 2};
  cr_expect_eq(memcmp(b, want, 8), 0);
  cr_expect_eq(b[8], 0x11);
  cr_expect_eq(b[16], 0x22);
}

Test(frame, hostile_headers) {
  uint8_t b[RILL_NET_HDR] = {0};
  rill_frame_t f;
  size_t used;
  for (unsigned t = 0; t < 256; t++) {
    bool known = false;
    for (size_t k = 0; k < NKINDS; k++)
      known |= kinds[k].type == t;
    rill_frame_header(b, (uint8_t)t, 0, 0, 0, 0, 0);
    int rc = rill_frame_decode(b, sizeof b, 1024, &f, &used);
    cr_expect_eq(rc, known ? 0 : RILL_EPROTO, "type %u", t);
  }
  for (size_t k = 0; k < NKINDS; k++)
    for (unsigned fl = 0; fl < 256; fl++) {
      rill_frame_header(b, kinds[k].type, (uint8_t)fl, 0, 0, 0, 0);
      int rc = rill_frame_decode(b, sizeof b, 1024, &f, &used);
      cr_expect_eq(rc, (fl & ~kinds[k].flags) ? RILL_EPROTO : 0, "type %u flags %x", kinds[k].type,
                   fl);
    }
  rill_frame_header(b, RILL_F_PUBLISH, 0, 0, 0, 0, 1025);
  cr_expect_eq(rill_frame_decode(b, sizeof b, 1024, &f, &used), RILL_EMSGSIZE);
  rill_frame_header(b, RILL_F_PUBLISH, 0, 0, 0, 0, UINT32_MAX);
  cr_expect_eq(rill_frame_decode(b, sizeof b, UINT32_MAX, &f, &used), RILL_EMSGSIZE,
               "the connection's limit never passes RILL_NET_MAX_BODY");
}

Test(frame, partial_input_asks_for_what_is_missing) {
  uint8_t b[RILL_NET_HDR + 100];
  memset(b, 7, sizeof b);
  rill_frame_header(b, RILL_F_DELIVER, RILL_FF_END, 1, 2, 3, 100);
  rill_frame_t f;
  size_t used;
  for (size_t n = 0; n < RILL_NET_HDR; n++) {
    cr_assert_eq(rill_frame_decode(b, n, 1024, &f, &used), RILL_EAGAIN);
    cr_expect_eq(used, RILL_NET_HDR);
  }
  for (size_t n = RILL_NET_HDR; n < sizeof b; n++) {
    cr_assert_eq(rill_frame_decode(b, n, 1024, &f, &used), RILL_EAGAIN);
    cr_expect_eq(used, sizeof b);
  }
  cr_expect_eq(rill_frame_decode(b, sizeof b, 1024, &f, &used), 0);
}

/* A stream of frames fed in pieces of every size decodes to the same
 * frames as fed whole. */
Test(frame, a_stream_split_anywhere_decodes_the_same) {
  uint8_t stream[4096];
  size_t n = 0, count = 0;
  srand(9);
  while (n + RILL_NET_HDR + 64 < sizeof stream) {
    uint32_t len = (uint32_t)(rand() % 64);
    size_t k = (size_t)rand() % NKINDS;
    rill_frame_header(stream + n, kinds[k].type, kinds[k].flags, (uint16_t)count, count, ~count,
                      len);
    for (uint32_t i = 0; i < len; i++)
      stream[n + RILL_NET_HDR + i] = (uint8_t)(count + i);
    n += RILL_NET_HDR + len;
    count++;
  }
  for (size_t piece = 1; piece <= 97; piece += 8) {
    uint8_t rx[4096];
    size_t have = 0, fed = 0, got = 0;
    while (got < count) {
      rill_frame_t f;
      size_t used;
      int rc = rill_frame_decode(rx, have, 1024, &f, &used);
      if (rc == RILL_EAGAIN) {
        size_t take = piece < n - fed ? piece : n - fed;
        cr_assert_gt(take, 0, "ran out of input with %zu of %zu frames", got, count);
        memcpy(rx + have, stream + fed, take);
        have += take;
        fed += take;
        continue;
      }
      cr_assert_eq(rc, 0);
      cr_assert_eq(f.id, got);
      cr_assert_eq(f.channel, (uint16_t)got);
      for (uint32_t i = 0; i < f.len; i++)
        cr_assert_eq(f.body[i], (uint8_t)(got + i));
      memmove(rx, rx + used, have - used);
      have -= used;
      got++;
    }
    cr_expect_eq(fed, n);
  }
}

Test(frame, hello_and_welcome) {
  uint8_t b[600];
  size_t sz = rill_net_hello_size(6, 7);
  cr_assert_eq(rill_net_hello_encode(b, "secret", 6, "client1", 7), 0);
  rill_net_hello_t h;
  cr_assert_eq(rill_net_hello_decode(b, sz, &h), 0, "%s", rill_errmsg());
  cr_expect_eq(h.version, RILL_NET_VERSION);
  cr_expect_eq(h.token_len, 6);
  cr_expect_eq(memcmp(h.token, "secret", 6), 0);
  cr_expect_eq(h.name_len, 7);
  cr_expect_eq(memcmp(h.name, "client1", 7), 0);
  cr_expect_eq(rill_net_hello_decode(b, sz - 1, &h), RILL_EPROTO, "short");
  cr_expect_eq(rill_net_hello_decode(b, sz + 1, &h), RILL_EPROTO, "long");
  cr_expect_eq(rill_net_hello_decode(b, 3, &h), RILL_EVERSION);
  cr_expect_eq(rill_net_hello_decode("GET / HTTP/1.1\r\n", 16, &h), RILL_EVERSION, "not rill");
  b[4] = 2;
  cr_expect_eq(rill_net_hello_decode(b, sz, &h), RILL_EVERSION, "version 2");
  b[4] = 1;
  b[6] = 1;
  cr_expect_eq(rill_net_hello_decode(b, sz, &h), RILL_EPROTO, "reserved flags");
  b[6] = 0;
  b[12 + 6] = '\n';
  cr_expect_eq(rill_net_hello_decode(b, sz, &h), RILL_EINVAL, "a control byte in the name");
  static uint8_t big[RILL_NET_MAX_TOKEN + 1];
  cr_expect_eq(rill_net_hello_encode(b, big, sizeof big, "x", 1), RILL_EINVAL);
  cr_assert_eq(rill_net_hello_encode(b, NULL, 0, NULL, 0), 0);
  cr_expect_eq(rill_net_hello_decode(b, rill_net_hello_size(0, 0), &h), 0);

  rill_net_welcome_t w = {RILL_NET_VERSION, 1 << 20, 0xfeedull, 1000}, v;
  rill_net_welcome_encode(b, &w);
  cr_assert_eq(rill_net_welcome_decode(b, RILL_NET_WELCOME_SIZE, &v), 0);
  cr_expect_eq(v.max_body, 1u << 20);
  cr_expect_eq(v.server_id, 0xfeedull);
  cr_expect_eq(v.publish_credits, 1000);
  cr_expect_eq(rill_net_welcome_decode(b, RILL_NET_WELCOME_SIZE - 1, &v), RILL_EPROTO);
  w.max_body = 100;
  rill_net_welcome_encode(b, &w);
  cr_expect_eq(rill_net_welcome_decode(b, RILL_NET_WELCOME_SIZE, &v), RILL_EPROTO);
  w = (rill_net_welcome_t){9, 1 << 20, 0, 0};
  rill_net_welcome_encode(b, &w);
  cr_expect_eq(rill_net_welcome_decode(b, RILL_NET_WELCOME_SIZE, &v), RILL_EVERSION);
}

Test(frame, names) {
  cr_expect(rill_net_name_ok("orders", 6));
  cr_expect(rill_net_name_ok("a.b_c-9", 7));
  cr_expect(!rill_net_name_ok("", 0));
  cr_expect(!rill_net_name_ok(".x", 2));
  cr_expect(!rill_net_name_ok("a/b", 3));
  cr_expect(!rill_net_name_ok("a b", 3));
  cr_expect(!rill_net_name_ok("a\0b", 3));
  static char long_name[RILL_NET_MAX_NAME + 1];
  memset(long_name, 'a', sizeof long_name);
  cr_expect(rill_net_name_ok(long_name, RILL_NET_MAX_NAME));
  cr_expect(!rill_net_name_ok(long_name, RILL_NET_MAX_NAME + 1));
}

Test(frame, bodies_slice_the_receive_buffer) {
  rill_buf_t rx;
  cr_assert_eq(rill_buf_alloc(&rx, 256), 0);
  rill_frame_header(rx.data, RILL_F_PUBLISH, 0, 1, 2, 3, 10);
  memcpy(rx.data + RILL_NET_HDR, "0123456789", 10);
  rill_frame_t f;
  size_t used;
  cr_assert_eq(rill_frame_decode(rx.data, rx.len, 1024, &f, &used), 0);
  rill_buf_t body;
  cr_assert_eq(rill_frame_body_buf(&f, &rx, &body), 0);
  cr_expect_eq(body.data, rx.data + RILL_NET_HDR);
  cr_expect_eq(body.len, 10);
  cr_expect_eq(rill_buf_refs(&rx), 2);
  rill_buf_release(&rx); /* the body keeps the bytes */
  cr_expect_eq(memcmp(body.data, "0123456789", 10), 0);
  rill_buf_t other;
  cr_assert_eq(rill_buf_alloc(&other, 8), 0);
  rill_buf_t bad;
  cr_expect_eq(rill_frame_body_buf(&f, &other, &bad), RILL_EINVAL);
  rill_buf_release(&other);
  rill_buf_release(&body);
}

Test(frame, decoding_allocates_nothing) {
  uint8_t b[RILL_NET_HDR + 8] = {0};
  rill_frame_header(b, RILL_F_PUBLISH, 0, 0, 0, 0, 8);
  rill_frame_t f;
  size_t used;
  uint64_t before = rill_mem_allocs_thread();
  for (int i = 0; i < 100000; i++)
    cr_assert_eq(rill_frame_decode(b, sizeof b, 1024, &f, &used), 0);
  cr_expect_eq(rill_mem_allocs_thread(), before);
}
