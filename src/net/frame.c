/*
 * The protocol's bytes: frame headers and the handshake bodies, written
 * and checked field by field in little-endian order (docs/FORMATS.md,
 * "Protocol"). Everything a peer sends is checked here before the server
 * or client acts on it, so this is what the fuzz targets drive.
 */
#include <string.h>

#include "core/internal.h"
#include "net/frame.h"

int rill__frame_refuse(uint8_t type, uint8_t flags, uint32_t len, uint32_t max_body) {
  if (rill__frame_flags(type) == 0xff)
    return rill__err(RILL_EPROTO, "net: unknown frame type %u", type);
  if (flags & ~rill__frame_flags(type))
    return rill__err(RILL_EPROTO, "net: frame type %u with flags 0x%02x it does not take", type,
                     flags);
  return rill__err(RILL_EMSGSIZE, "net: a %u-byte frame body, the limit is %u", len, max_body);
}

int rill_frame_decode(const void *buf, size_t n, uint32_t max_body, rill_frame_t *f, size_t *used) {
  return rill__frame_decode(buf, n, max_body, f, used);
}

void rill_frame_header(void *hdr, uint8_t type, uint8_t flags, uint16_t channel, uint64_t id,
                       uint64_t arg, uint32_t len) {
  uint8_t *p = hdr;
  rill__put32(p, len);
  p[4] = type;
  p[5] = flags;
  rill__put16(p + 6, channel);
  rill__put64(p + 8, id);
  rill__put64(p + 16, arg);
}

int rill_frame_body_buf(const rill_frame_t *f, const rill_buf_t *rx, rill_buf_t *body) {
  const uint8_t *start = rx->data;
  if (f->body < start || f->body > start + rx->len || f->len > rx->len - (size_t)(f->body - start))
    return rill__err(RILL_EINVAL, "net: the frame's body is not in that buffer");
  return rill_buf_slice(body, rx, (size_t)(f->body - start), f->len);
}

/* ---- names ------------------------------------------------------------- */

bool rill_net_name_ok(const void *name, size_t len) {
  return rill__name_ok(name, len, RILL_NET_MAX_NAME);
}

/* ---- HELLO ------------------------------------------------------------- */

#define HELLO_FIXED 12u

size_t rill_net_hello_size(size_t token_len, size_t name_len) {
  return HELLO_FIXED + token_len + name_len;
}

int rill_net_hello_encode(void *out, const void *token, size_t token_len, const char *name,
                          size_t name_len) {
  if (token_len > RILL_NET_MAX_TOKEN || name_len > RILL_NET_MAX_NAME)
    return rill__err(RILL_EINVAL, "net: token of %zu or name of %zu bytes is too long", token_len,
                     name_len);
  uint8_t *p = out;
  rill__put32(p, RILL_NET_MAGIC);
  rill__put16(p + 4, RILL_NET_VERSION);
  rill__put16(p + 6, 0);
  rill__put16(p + 8, (uint16_t)token_len);
  rill__put16(p + 10, (uint16_t)name_len);
  if (token_len)
    memcpy(p + HELLO_FIXED, token, token_len);
  if (name_len)
    memcpy(p + HELLO_FIXED + token_len, name, name_len);
  return 0;
}

int rill_net_hello_decode(const void *body, size_t len, rill_net_hello_t *h) {
  const uint8_t *p = body;
  if (len < 4 || rill__get32(p) != RILL_NET_MAGIC)
    return rill__err(RILL_EVERSION, "net: the first frame is not a rill HELLO (no RILL magic)");
  if (len < HELLO_FIXED)
    return rill__err(RILL_EPROTO, "net: a %zu-byte HELLO", len);
  uint16_t version = rill__get16(p + 4);
  if (version != RILL_NET_VERSION)
    return rill__err(RILL_EVERSION, "net: protocol version %u, this server speaks %u", version,
                     RILL_NET_VERSION);
  if (rill__get16(p + 6) != 0)
    return rill__err(RILL_EPROTO, "net: HELLO flags 0x%04x are reserved", rill__get16(p + 6));
  uint16_t tl = rill__get16(p + 8), nl = rill__get16(p + 10);
  if (tl > RILL_NET_MAX_TOKEN || nl > RILL_NET_MAX_NAME || HELLO_FIXED + (size_t)tl + nl != len)
    return rill__err(RILL_EPROTO, "net: HELLO lengths (token %u, name %u) do not add up to %zu", tl,
                     nl, len);
  const uint8_t *name = p + HELLO_FIXED + tl;
  for (uint16_t i = 0; i < nl; i++)
    if (name[i] < 0x20 || name[i] > 0x7e)
      return rill__err(RILL_EINVAL, "net: the client name has a byte 0x%02x", name[i]);
  *h = (rill_net_hello_t){version, p + HELLO_FIXED, tl, name, nl};
  return 0;
}

/* ---- WELCOME ----------------------------------------------------------- */

void rill_net_welcome_encode(void *out, const rill_net_welcome_t *w) {
  uint8_t *p = out;
  memset(p, 0, RILL_NET_WELCOME_SIZE);
  rill__put16(p, w->version);
  rill__put32(p + 4, w->max_body);
  rill__put64(p + 8, w->server_id);
  rill__put32(p + 16, w->publish_credits);
}

int rill_net_welcome_decode(const void *body, size_t len, rill_net_welcome_t *w) {
  const uint8_t *p = body;
  if (len != RILL_NET_WELCOME_SIZE)
    return rill__err(RILL_EPROTO, "net: a %zu-byte WELCOME", len);
  uint16_t version = rill__get16(p);
  if (version != RILL_NET_VERSION)
    return rill__err(RILL_EVERSION, "net: the server speaks version %u, this client %u", version,
                     RILL_NET_VERSION);
  uint32_t max_body = rill__get32(p + 4);
  if (rill__get16(p + 2) || rill__get32(p + 20) || max_body < 4096 || max_body > RILL_NET_MAX_BODY)
    return rill__err(RILL_EPROTO, "net: WELCOME with reserved bytes set or max body %u", max_body);
  *w = (rill_net_welcome_t){version, max_body, rill__get64(p + 8), rill__get32(p + 16)};
  return 0;
}
