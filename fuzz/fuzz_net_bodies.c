/*
 * Arbitrary bytes as the body of each request a client sends the server,
 * through the parser its handler uses: the first byte picks the request,
 * the next eight are the frame's arg, the rest its body. What a parser
 * accepts must be what FORMATS.md says the body is (checked here
 * independently), and everything it points at must lie in the body (ASan
 * checks the bytes are touched). A streamed PUBLISH is played as its
 * pieces come, each admitted or refused as the server's CHUNK handler
 * does. Never a crash, never a read outside the input.
 */
#include <stdint.h>
#include <string.h>

#include "net/server_internal.h"

enum { K_BATCH, K_FETCH, K_ASK, K_NAME, K_TOPICS, K_STREAM, K_HELLO, K_KINDS };

static volatile uint64_t sink; /* the bytes touched, so the reads stay */

static void touch(const uint8_t *p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++)
    s += p[i];
  sink += s;
}

static void batch(const rill_frame_t *f) {
  rill_iov_t recs[RILL_NET_MAX_BATCH];
  size_t n = 0;
  if (!rill__srv_batch_parse(f, recs, &n))
    return;
  if (n == 0 || n > RILL_NET_MAX_BATCH || n != f->arg)
    __builtin_trap();
  /* Accepted: the records, each after its u32 length, tile the body. */
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    if (f->len - off < 4 || rill__get32(f->body + off) != recs[i].len ||
        (const uint8_t *)recs[i].data != f->body + off + 4 || recs[i].len > f->len - off - 4)
      __builtin_trap();
    touch(recs[i].data, recs[i].len);
    off += 4 + (size_t)recs[i].len;
  }
  if (off != f->len)
    __builtin_trap();
}

static void fetch(const rill_frame_t *f) {
  uint32_t count;
  if (!rill__srv_fetch_parse(f, &count))
    return;
  if (f->len < 5 || count != rill__get32(f->body) || f->len - 4 > RILL_NET_MAX_NAME)
    __builtin_trap();
  touch(f->body + 4, f->len - 4);
}

static void ask(const rill_frame_t *f) {
  uint16_t nl;
  if (!rill__srv_ask_parse(f, &nl))
    return;
  if (f->len < 2 || nl == 0 || nl > RILL_NET_MAX_NAME || (size_t)nl + 2 > f->len ||
      nl != rill__get16(f->body) || !rill_net_name_ok(f->body + 2, nl))
    __builtin_trap();
  touch(f->body + 2, nl);                    /* the service */
  touch(f->body + 2 + nl, f->len - 2u - nl); /* the payload */
}

/* BIND, SUBSCRIBE, SERVE, TOPIC_INFO, TOPIC_DELETE: the body is a name. */
static void name(const rill_frame_t *f) {
  if (!rill_net_name_ok(f->body, f->len))
    return;
  if (f->len == 0 || f->len > RILL_NET_MAX_NAME || memchr(f->body, 0, f->len) ||
      memchr(f->body, '/', f->len))
    __builtin_trap();
  touch(f->body, f->len);
}

/* TOPICS: empty (from the first) or the name to list after. */
static void topics(const rill_frame_t *f) {
  if (f->len && rill_net_name_ok(f->body, f->len))
    touch(f->body, f->len);
}

/* A streamed PUBLISH of arg bytes (at most 1 MiB here), its pieces in
 * the body: each a u16 length (bit 15: the last) then its bytes. Admitted
 * or refused as the CHUNK handler does; what was admitted never passes
 * the total, and a last piece admitted ends it exactly. */
static void stream(const rill_frame_t *f) {
  uint32_t total = (uint32_t)(f->arg % ((1u << 20) + 1)), got = 0;
  for (uint32_t off = 0; off + 2 <= f->len;) {
    uint16_t h = rill__get16(f->body + off);
    uint32_t len = h & 0x7fffu;
    bool last = h & 0x8000u;
    off += 2;
    if (len > f->len - off)
      len = f->len - off;
    if (!rill__srv_piece_fits(total, got, len, last))
      return; /* the server closes the connection: the stream ends here */
    touch(f->body + off, len);
    got += len;
    off += len;
    if (got > total || (last && got != total))
      __builtin_trap();
    if (last)
      return;
  }
}

static void hello(const rill_frame_t *f) {
  rill_net_hello_t h;
  if (rill_net_hello_decode(f->body, f->len, &h) != 0)
    return;
  if (h.token_len > RILL_NET_MAX_TOKEN || h.name_len > RILL_NET_MAX_NAME)
    __builtin_trap();
  touch(h.token, h.token_len);
  touch(h.name, h.name_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 9 || size - 9 > RILL_NET_DEFAULT_BODY)
    return 0;
  int kind = data[0] % K_KINDS;
  rill_frame_t f = {.arg = rill__get64(data + 1), .len = (uint32_t)(size - 9)};
  /* A copy of its own, exactly as long as the body: a read past the end
   * is ASan's to see, not the fuzzer's input's next bytes. */
  uint8_t *body = rill__malloc(f.len ? f.len : 1);
  if (!body)
    return 0;
  memcpy(body, data + 9, f.len);
  f.body = body;
  switch (kind) {
  case K_BATCH: batch(&f); break;
  case K_FETCH: fetch(&f); break;
  case K_ASK: ask(&f); break;
  case K_NAME: name(&f); break;
  case K_TOPICS: topics(&f); break;
  case K_STREAM: stream(&f); break;
  default: hello(&f); break;
  }
  rill__free(body);
  return 0;
}
