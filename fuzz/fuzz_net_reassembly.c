/*
 * Arbitrary bytes as what a server sends a client, through the client's
 * reassembly of streamed messages: the frames read_frame hands to
 * rill__cli_stream_in (a CHUNK, or a DELIVER, ASK or REPLY with STREAM)
 * and the CANCELs and ERRORs that end an ask's or a reply's pieces, on a
 * client with no socket (what it would send goes nowhere; a protocol
 * error drops its streams as a broken connection does).
 *
 * Input: byte 0 picks max_message (1 KiB to 256 KiB), byte 1 the blocking
 * ask waiting for its reply (0: none); then frames, each
 *   type (1: % 6 of DELIVER, ASK, REPLY, CHUNK, CANCEL, ERROR),
 *   flags (1: bit 0 STREAM, bit 1 MORE), channel (1), id (u16; a streamed
 *   DELIVER's is its whole length), arg (u32; a CHUNK's is the type it
 *   continues, % 3 of DELIVER, ASK, REPLY unless bit 31), length (u16),
 * and that many body bytes (fewer at the end). What comes out whole must
 * be as long as its pieces said and within max_message, and the buffers
 * held must stay within their budget. Never a crash, a leak, or a read
 * outside what was put together.
 */
#include <stdint.h>
#include <string.h>

#include "net/client_internal.h"

static const uint8_t types[] = {RILL_F_DELIVER, RILL_F_ASK,    RILL_F_REPLY,
                                RILL_F_CHUNK,   RILL_F_CANCEL, RILL_F_ERROR};
static const uint8_t continued[] = {RILL_F_DELIVER, RILL_F_ASK, RILL_F_REPLY};

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size > (1u << 20))
    return 0;
  rill_client_t *c = rill__calloc(1, sizeof *c);
  if (!c)
    return 0;
  c->fd = -1;
  c->max_body = RILL_NET_MAX_BODY;
  c->o.max_message = 1024u * ((uint64_t)data[0] + 1);
  c->ask_waiting = data[1];
  size_t off = 2;
  while (size - off >= 11) {
    const uint8_t *h = data + off;
    rill_frame_t f = {
        .type = types[h[0] % 6],
        .flags = (uint8_t)((h[1] & 1 ? RILL_FF_STREAM : 0) | (h[1] & 2 ? RILL_FF_MORE : 0)),
        .channel = h[2],
        .id = rill__get16(h + 3),
        .arg = rill__get32(h + 5)};
    if (f.type == RILL_F_CHUNK && !(f.arg & 0x80000000u))
      f.arg = continued[f.arg % 3];
    uint32_t len = rill__get16(h + 9);
    off += 11;
    if (len > size - off)
      len = (uint32_t)(size - off);
    /* The body in a block of its own, as the receive buffer's bytes are
     * gone by the next read: reassembly must have copied what it keeps. */
    uint8_t *body = rill__malloc(len ? len : 1);
    if (!body)
      break;
    memcpy(body, data + off, len);
    off += len;
    f.body = body;
    f.len = len;
    /* What read_frame does at the start of each read. */
    rill__free(c->done_buf);
    c->done_buf = NULL;
    int rc = 1;
    bool pieced = f.type == RILL_F_CHUNK || (f.flags & RILL_FF_STREAM);
    if (pieced)
      rc = rill__cli_stream_in(c, &f);
    if (rc == 1 && c->asms) {
      if (f.type == RILL_F_CANCEL)
        rill__cli_asm_end(c, RILL_F_ASK, f.id);
      else if (f.type == RILL_F_ERROR && !(f.flags & LOCAL_ERR))
        rill__cli_asm_end(c, RILL_F_REPLY, f.id);
    }
    if (rc == 1) { /* handed out: whole, and what was put together within max_message */
      if (pieced && f.type != RILL_F_ERROR &&
          (f.type == RILL_F_CHUNK || (f.flags & RILL_FF_MORE) || f.len > c->o.max_message))
        __builtin_trap();
      if (f.len && !f.body)
        __builtin_trap();
      uint64_t s = 0;
      for (uint32_t i = 0; i < f.len; i++)
        s += f.body[i];
      sink += s;
    }
    if (c->asm_bytes > ASM_BUDGET * c->o.max_message || c->in_got > c->in_len)
      __builtin_trap();
    rill__free(body);
  }
  rill_client_close(c);
  return 0;
}
