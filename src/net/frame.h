/*
 * Frame decoding for the server's and client's receive paths, inline:
 * every frame goes through it, and the call cost a fifth of it
 * (rill_frame_decode, the public entry and what the fuzz targets drive,
 * is this same function). Refusals are formatted out of line.
 */
#ifndef RILL_NET_FRAME_H
#define RILL_NET_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "rill/net.h"

/* The flags each type takes; 0xff for a type that does not exist. */
static inline uint8_t rill__frame_flags(uint8_t type) {
  switch (type) {
  case RILL_F_HELLO:
  case RILL_F_WELCOME:
  case RILL_F_ERROR:
  case RILL_F_PING:
  case RILL_F_PONG:
  case RILL_F_BYE:
  case RILL_F_BIND:
  case RILL_F_ACK:
  case RILL_F_UNSUBSCRIBE:
  case RILL_F_CREDIT:
  case RILL_F_FETCH:
  case RILL_F_SERVE:
  case RILL_F_CANCEL:
  case RILL_F_STATS:
  case RILL_F_TOPIC_INFO:
  case RILL_F_TOPIC_DELETE: return 0;
  case RILL_F_SUBSCRIBE: return RILL_FF_CREATE;
  case RILL_F_TOPICS: return RILL_FF_MORE;
  case RILL_F_PUBLISH: return RILL_FF_ACK | RILL_FF_STREAM;
  case RILL_F_PUBLISH_BATCH: return RILL_FF_ACK;
  case RILL_F_DELIVER: return RILL_FF_STREAM | RILL_FF_END;
  case RILL_F_ASK:
  case RILL_F_REPLY: return RILL_FF_STREAM;
  case RILL_F_CHUNK: return RILL_FF_MORE;
  default: return 0xff;
  }
}

/* The error for a frame rill__frame_decode refuses (type, flags or a body
 * over max_body). */
int rill__frame_refuse(uint8_t type, uint8_t flags, uint32_t len, uint32_t max_body);

static inline int rill__frame_decode(const void *buf, size_t n, uint32_t max_body, rill_frame_t *f,
                                     size_t *used) {
  const uint8_t *p = buf;
  if (n < RILL_NET_HDR) {
    *used = RILL_NET_HDR;
    return RILL_EAGAIN;
  }
  uint32_t len = rill__get32(p);
  uint8_t type = p[4], flags = p[5];
  if (max_body > RILL_NET_MAX_BODY)
    max_body = RILL_NET_MAX_BODY;
  uint8_t ok = rill__frame_flags(type);
  if (RILL_UNLIKELY(ok == 0xff || (flags & ~ok) || len > max_body)) {
    /* What the compiler cannot see through the call: the refusal is
     * never 0 or RILL_EAGAIN, so *f and *used are not read after it. */
    *used = 0;
    int rc = rill__frame_refuse(type, flags, len, max_body);
    return rc ? rc : RILL_EPROTO;
  }
  *used = RILL_NET_HDR + (size_t)len;
  if (n < *used)
    return RILL_EAGAIN;
  *f = (rill_frame_t){.len = len,
                      .type = type,
                      .flags = flags,
                      .channel = rill__get16(p + 6),
                      .id = rill__get64(p + 8),
                      .arg = rill__get64(p + 16),
                      .body = p + RILL_NET_HDR};
  return 0;
}

#endif
