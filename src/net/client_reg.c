/*
 * Registrations: what the client bound, subscribed to and serves, each on
 * a channel of its own, recorded so that a reconnect restores them, and
 * the naming requests (BIND, SUBSCRIBE, SERVE) that make them.
 */
#include <stdio.h>

#include "net/client_internal.h"

/* Room for one more registration, made before its request goes: once the
 * server has accepted one, recording it cannot fail (there is no UNBIND
 * nor UNSERVE to take it back, and an unrecorded one would never be
 * restored nor routed). */
static int reg_room(rill_client_t *c) {
  if (c->nregs < c->cap_regs)
    return 0;
  size_t cap = c->cap_regs ? 2 * c->cap_regs : 8;
  struct reg *n = rill__realloc(c->regs, cap * sizeof *n);
  if (!n)
    return rill__err(RILL_ENOMEM, "client: no memory for a registration");
  c->regs = n;
  c->cap_regs = cap;
  return 0;
}

/* Records a registration the server accepted (reg_room made room). */
static struct reg *reg_add(rill_client_t *c, uint8_t kind, uint16_t ch, const char *name) {
  struct reg *r = &c->regs[c->nregs++];
  c->live_ch[ch / 64] |= 1ull << (ch % 64);
  memset(r, 0, sizeof *r);
  r->kind = kind;
  r->ch = ch;
  snprintf(r->name, sizeof r->name, "%s", name);
  return r;
}

void rill__cli_reg_del(rill_client_t *c, struct reg *r) {
  c->live_ch[r->ch / 64] &= ~(1ull << (r->ch % 64));
  *r = c->regs[--c->nregs];
}

int rill__cli_past_credits(rill_client_t *c) {
  return rill__cli_protocol_broken(c, "a DELIVER past the credits granted");
}

/* A channel number no registration holds, in turn from next_ch (a number
 * let go is not taken again at once: deliveries may still be on their
 * way to it). 0 means "none" on the wire, so there are 65,535. */
static int new_channel(rill_client_t *c, uint16_t *out) {
  for (uint32_t k = 0; k < 65535; k++) {
    uint16_t ch = c->next_ch++;
    if (!c->next_ch)
      c->next_ch = 1;
    if (!(c->live_ch[ch / 64] & (1ull << (ch % 64)))) {
      *out = ch;
      return 0;
    }
  }
  return rill__err(RILL_EFULL,
                   "client: all 65535 channels are in use (binds, subscriptions and services "
                   "together)");
}

/* Sends a naming request (BIND, SUBSCRIBE, SERVE) and waits for its ACK. */
static int name_request(rill_client_t *c, uint8_t type, uint8_t flags, const char *name,
                        uint16_t ch, uint64_t arg, rill_frame_t *f) {
  int rc = ready(c);
  if (rc)
    return rc;
  uint64_t id = c->next_id++;
  rc = send_frame(c, type, flags, ch, id, arg, name, (uint32_t)strlen(name));
  if (!rc)
    rc = rill__cli_await(c, RILL_F_ACK, id, f, c->o.timeout_ns);
  if (rc == RILL_ETIMEDOUT && c->fd >= 0) {
    /* The server may yet accept it, and nothing takes a BIND or a SERVE
     * back: a registration the client does not know of would hold its
     * channel on the server. The connection goes, and every registration
     * with it; a reconnect restores only those recorded. */
    rill__cli_lost(c, "a registration got no answer in time");
    return rill__err(RILL_ETIMEDOUT,
                     "client: no answer to %s '%s' in time: connection dropped (the server "
                     "may have taken it)",
                     type == RILL_F_BIND    ? "BIND"
                     : type == RILL_F_SERVE ? "SERVE"
                                            : "SUBSCRIBE",
                     name);
  }
  return rc;
}

/* A topic or service name given by the caller: 0, or RILL_EINVAL saying
 * what is wrong with it (NULL included). */
int rill__cli_name_arg(const char *name, const char *what) {
  if (!name)
    return rill__err(RILL_EINVAL, "client: a NULL %s name", what);
  if (!rill_net_name_ok(name, strnlen(name, RILL_NET_MAX_NAME + 1)))
    return rill__err(RILL_EINVAL, "client: '%.*s' is not a %s name", (int)RILL_NET_MAX_NAME, name,
                     what);
  return 0;
}

/* Registers name on a channel no registration holds: BIND (kind
 * REG_BIND), SUBSCRIBE (REG_SUB, with its flags and arg, where from) or
 * SERVE (REG_SERVE), recorded once the server accepted it. *r gets the
 * record, *f the ACK. */
int rill__cli_register(rill_client_t *c, uint8_t kind, uint8_t flags, const char *name,
                       uint64_t arg, struct reg **r, rill_frame_t *f) {
  int rc = rill__cli_name_arg(name, kind == REG_SERVE ? "service" : "topic");
  if (rc)
    return rc;
  uint8_t type = kind == REG_BIND ? RILL_F_BIND : kind == REG_SUB ? RILL_F_SUBSCRIBE : RILL_F_SERVE;
  uint16_t ch = 0;
  if ((rc = new_channel(c, &ch)) != 0 || (rc = reg_room(c)) != 0 ||
      (rc = name_request(c, type, flags, name, ch, arg, f)) != 0)
    return rc;
  *r = reg_add(c, kind, ch, name);
  return 0;
}
