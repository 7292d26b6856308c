/*
 * Arbitrary bytes as what a peer sends: decoded as a stream of frames,
 * once whole and once fed in pieces whose sizes the input picks, which
 * must agree frame for frame. HELLO and WELCOME bodies go through their
 * decoders, every body is touched byte by byte (ASan checks the bounds),
 * and a decode error ends the stream as the server would end the
 * connection. Never a crash, never a read outside the input.
 */
#include <stdint.h>
#include <string.h>

#include "rill/net.h"

#define MAX_FRAMES 256

typedef struct {
  uint8_t type, flags;
  uint16_t channel;
  uint32_t len;
  uint64_t id, arg, sum;
} seen_t;

static uint64_t touch(const rill_frame_t *f) {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < f->len; i++)
    sum += f->body[i];
  rill_net_hello_t h;
  rill_net_welcome_t w;
  if (f->type == RILL_F_HELLO && rill_net_hello_decode(f->body, f->len, &h) == 0) {
    for (uint16_t i = 0; i < h.token_len; i++)
      sum += h.token[i];
    for (uint16_t i = 0; i < h.name_len; i++)
      sum += h.name[i];
  }
  if (f->type == RILL_F_WELCOME && rill_net_welcome_decode(f->body, f->len, &w) == 0)
    sum += w.max_body;
  if (f->type == RILL_F_BIND || f->type == RILL_F_SUBSCRIBE || f->type == RILL_F_SERVE)
    sum += rill_net_name_ok(f->body, f->len);
  return sum;
}

/* Decodes data[0..n) whole: the frames, and the error that ended it. */
static size_t decode_whole(const uint8_t *data, size_t n, seen_t *out, int *end) {
  size_t off = 0, k = 0;
  *end = 0;
  while (k < MAX_FRAMES) {
    rill_frame_t f;
    size_t used;
    int rc = rill_frame_decode(data + off, n - off, 4096, &f, &used);
    if (rc) {
      *end = rc;
      break;
    }
    out[k++] = (seen_t){f.type, f.flags, f.channel, f.len, f.id, f.arg, touch(&f)};
    off += used;
  }
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 65536)
    return 0;
  /* The first byte picks the piece size of the second pass. */
  size_t piece = (size_t)data[0] % 64 + 1;
  data++, size--;
  static seen_t whole[MAX_FRAMES], split[MAX_FRAMES];
  int end_whole, end_split = 0;
  size_t nw = decode_whole(data, size, whole, &end_whole);
  /* Again, as a server reading the socket: a buffer filled piece by piece,
   * frames taken off its front as they complete. */
  static uint8_t rx[65536];
  size_t have = 0, fed = 0, ns = 0;
  while (ns < MAX_FRAMES) {
    rill_frame_t f;
    size_t used;
    int rc = rill_frame_decode(rx, have, 4096, &f, &used);
    if (rc == RILL_EAGAIN && fed < size) {
      size_t take = piece < size - fed ? piece : size - fed;
      memcpy(rx + have, data + fed, take);
      have += take;
      fed += take;
      continue;
    }
    if (rc) {
      end_split = rc;
      break;
    }
    split[ns++] = (seen_t){f.type, f.flags, f.channel, f.len, f.id, f.arg, touch(&f)};
    memmove(rx, rx + used, have - used);
    have -= used;
  }
  if (ns != nw || end_split != end_whole || memcmp(whole, split, nw * sizeof *whole) != 0)
    __builtin_trap(); /* the two ways of reading disagree */
  return 0;
}
