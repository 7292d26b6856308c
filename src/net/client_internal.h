/*
 * The rill client's private structures and the functions its files share
 * (client.c says which file holds what). Nothing here is exported: the
 * functions are rill__cli_* and hidden. What every publish, delivery or
 * reply goes through (the send buffer, a registration's lookup, the held
 * frames' FIFO) is static inline here, as it was when the client was one
 * file.
 */
#ifndef RILL_NET_CLIENT_INTERNAL_H
#define RILL_NET_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/internal.h"
#include "net/addr.h"
#include "net/frame.h"
#include "rill/net.h"

#define TX_BUF    (64u << 10)
#define RX_START  (256u << 10) /* a few 64 KiB frames per recv */
#define SPILL_MAX (64u << 20)  /* read while a send waits, at most (the server's tx_limit) */

/* On an ERROR frame the client made up itself (the wire never sets a flag
 * on ERROR): its message is the client's, not the server's. */
#define LOCAL_ERR 0x80u

/* Streams coming in at once may hold this many max_messages together. */
#define ASM_BUDGET 4

/* A frame read while nobody wanted it yet. */
struct held {
  struct held *next;
  bool for_cb;             /* dispatched by rill_client_poll, not by next/next_ask */
  rill_client_reply_cb cb; /* an async ask's answer: taken out of the table already */
  void *ctx;
  uint8_t type, flags;
  uint16_t ch;
  uint64_t id, arg;
  uint32_t len;
  uint8_t data[];
};

/* An ask or a reply coming in CHUNKs, put together here. Several may be
 * open at once (the server forwards pieces as they come, interleaved);
 * asks and replies are told apart by type, as their ids are the server's
 * and ours. */
struct asm_in {
  struct asm_in *next;
  uint8_t type; /* RILL_F_ASK or RILL_F_REPLY */
  uint16_t ch;
  uint64_t id, arg;
  uint8_t *buf;
  size_t len, cap;
};

/* REG_GONE: a subscription the server refused for good when it was made
 * again at a reconnect; it holds its channel until the reader is told. */
enum reg_kind { REG_BIND, REG_SUB, REG_SERVE, REG_GONE };

/* What the client registered with the server, to redo after a reconnect. */
struct reg {
  uint8_t kind;
  uint16_t ch;
  char name[RILL_NET_MAX_NAME + 1];
  rill_client_msg_cb msg_cb; /* REG_SUB with a callback */
  rill_client_ask_cb ask_cb; /* REG_SERVE with a callback */
  void *ctx;
  uint64_t next;         /* REG_SUB: the sequence to resume from */
  uint64_t credits;      /* REG_SUB: deliveries the server may still send */
  uint32_t window, used; /* callback subscriptions: credits granted back by halves */
  uint8_t flags;         /* REG_SUB: the SUBSCRIBE's flags (RILL_FF_CREATE), sent again */
  int gone;              /* REG_GONE: the server's refusal, told once by next or poll */
};

struct pend {
  uint64_t id; /* 0: free */
  rill_client_reply_cb cb;
  void *ctx;
  uint32_t next_free;
};

/* An async ask's id names its slot: ASYNC_ID, a sequence, and the slot in
 * the low SLOT_BITS. Lookups and removals are one index, whatever the
 * pattern of replies; the sequence keeps ids unique. */
#define ASYNC_ID  (1ull << 63)
#define SLOT_BITS 24u
#define SLOT_MASK ((1u << SLOT_BITS) - 1)

struct rill_client {
  rill_client_opts_t o; /* its strings point to the copies below */
  char host[RILL__HOST_MAX + 1], token[RILL_NET_MAX_TOKEN + 1], name[RILL_NET_MAX_NAME + 1];
  char where[RILL__ADDR_STR]; /* "HOST:PORT", for messages */
  int fd;                     /* -1 while disconnected */
  uint32_t max_body;
  uint64_t next_id;
  uint16_t next_ch;
  uint64_t live_ch[65536 / 64]; /* channels of registrations: never handed out again */
  uint8_t *rx;
  size_t have, cap, off; /* rx[off..have) is not decoded yet */
  uint8_t *tx;           /* frames not sent yet */
  size_t tx_len;
  struct held *head, *tail;
  uint32_t held_cb; /* how many held frames are for callbacks */
  uint8_t *cur;     /* the held frame next/next_ask handed out */
  int late;         /* an error for a request nobody waited for */
  char late_msg[200];
  struct reg *regs;
  size_t nregs, cap_regs;
  size_t ngone;     /* REG_GONE registrations: their readers are not told yet */
  struct pend *tab; /* async asks in flight: max_inflight slots */
  uint32_t inflight, free_slot;
  uint64_t ask_seq;
  struct pend *failed; /* asks the break ended, callbacks not run yet */
  uint32_t nfailed;
  int depth;    /* poll passes running: replies and credits are buffered */
  bool drained; /* the last recv found the socket empty */
  /* What came in while a send waited for room (wait_writable): read
   * there rather than into rx, where frames handed out still point, and
   * moved into rx by the next read. */
  uint8_t *spill;
  size_t spill_len, spill_cap;
  /* A record over max_body coming in CHUNKs (one at a time per connection). */
  bool in_stream;
  bool in_skip; /* the record in_stream is over max_message: its pieces are dropped */
  uint16_t in_ch;
  uint64_t in_seq;
  uint8_t *in_buf;
  size_t in_len, in_got, in_cap;
  struct asm_in *asms;  /* asks and replies coming in CHUNKs */
  size_t asm_bytes;     /* the buffers of asms together: at most ASM_BUDGET max_messages */
  uint8_t *done_buf;    /* the last one put together: freed by the next read */
  uint64_t ask_waiting; /* the blocking ask waiting for its reply now; 0: none */
  /* The last service name an ask passed the check with (ask_prefix):
   * asks repeat a name, and checking each of its bytes cost more than
   * putting the rest of the ask together. */
  char ask_name[RILL_NET_MAX_NAME];
  size_t ask_name_len; /* 0: none yet */
  char asm_msg[128];   /* the message of an ERROR made up for one over max_message */
  int skipped;         /* a delivery over max_message was dropped: told by next or poll */
  bool skip_wake;      /* read_frame returns 1 at a skip (next and poll wait on it) */
  char skip_msg[160];
  uint8_t *batch; /* a PUBLISH_BATCH too big for the send buffer is put together here */
  size_t batch_cap;
  /* reconnecting */
  bool down, gave_up;
  uint64_t down_ns, next_try_ns, backoff_ns, rng;
};

#pragma GCC visibility push(hidden)

/* client.c: the connection and reconnecting */
int rill__cli_lost(rill_client_t *c, const char *why);
int rill__cli_took_gone(rill_client_t *c, uint16_t only, uint16_t *sub);
int rill__cli_redial(rill_client_t *c, uint64_t deadline);

/* client_send.c: the send path */
int rill__cli_send_now(rill_client_t *c, const void *pre, size_t pre_len, const void *body,
                       uint32_t len);
int rill__cli_send_chunks(rill_client_t *c, uint8_t type, uint16_t ch, uint64_t id,
                          const uint8_t *p, uint32_t off, uint32_t len);

/* client_recv.c: the receive path */
int rill__cli_protocol_broken(rill_client_t *c, const char *what);
void rill__cli_asm_drop(rill_client_t *c, struct asm_in **pp);
/* Reassembly, as read_frame runs it on each frame it decodes (and
 * fuzz/fuzz_net_reassembly.c without a socket): a CHUNK or a STREAM frame
 * goes to rill__cli_stream_in, and while asks or replies are coming in
 * pieces, a CANCEL ends an ask's (rill__cli_asm_end(c, RILL_F_ASK, id))
 * and a server's ERROR a reply's (RILL_F_REPLY). */
int rill__cli_stream_in(rill_client_t *c, rill_frame_t *f);
void rill__cli_asm_end(rill_client_t *c, uint8_t type, uint64_t id);
int rill__cli_read_frame(rill_client_t *c, rill_frame_t *f, uint64_t timeout_ns);
int rill__cli_as_error(const rill_frame_t *f);
int rill__cli_bye(rill_client_t *c, const rill_frame_t *f);
int rill__cli_reader_bye(rill_client_t *c, const rill_frame_t *f);

/* client_held.c: held frames, waiting for an answer */
int rill__cli_hold(rill_client_t *c, const rill_frame_t *f, bool for_cb, const struct pend *p);
void rill__cli_drop_held_ask(rill_client_t *c, uint64_t id);
bool rill__cli_svc_has_cb(rill_client_t *c, uint16_t ch);
int rill__cli_absorb(rill_client_t *c, const rill_frame_t *f);
int rill__cli_await(rill_client_t *c, uint8_t type, uint64_t id, rill_frame_t *f,
                    uint64_t timeout_ns);

/* client_reg.c: registrations */
void rill__cli_reg_del(rill_client_t *c, struct reg *r);
int rill__cli_past_credits(rill_client_t *c);
int rill__cli_name_arg(const char *name, const char *what);
int rill__cli_register(rill_client_t *c, uint8_t kind, uint8_t flags, const char *name,
                       uint64_t arg, struct reg **r, rill_frame_t *f);

/* client_sub.c: subscriptions */
int rill__cli_took_skip(rill_client_t *c);

#pragma GCC visibility pop

/* Puts a frame (its header, pre_len bytes of pre, then body) into the
 * send buffer; one that does not fit goes out now, with the buffer ahead
 * of it, in one sendmsg. */
static inline int buffer_frame(rill_client_t *c, uint8_t type, uint8_t flags, uint16_t ch,
                               uint64_t id, uint64_t arg, const void *pre, size_t pre_len,
                               const void *body, uint32_t len) {
  size_t need = RILL_NET_HDR + pre_len + (size_t)len;
  uint8_t hdr[RILL_NET_HDR + 2 + RILL_NET_MAX_NAME];
  if (c->tx_len + need > TX_BUF) {
    rill_frame_header(hdr, type, flags, ch, id, arg, (uint32_t)(pre_len + len));
    if (pre_len)
      memcpy(hdr + RILL_NET_HDR, pre, pre_len);
    return rill__cli_send_now(c, hdr, RILL_NET_HDR + pre_len, body, len);
  }
  uint8_t *p = c->tx + c->tx_len;
  rill_frame_header(p, type, flags, ch, id, arg, (uint32_t)(pre_len + len));
  if (pre_len)
    memcpy(p + RILL_NET_HDR, pre, pre_len);
  if (len)
    memcpy(p + RILL_NET_HDR + pre_len, body, len);
  c->tx_len += need;
  return 0;
}

/* Sends a frame now, after anything buffered. */
static inline int send_frame(rill_client_t *c, uint8_t type, uint8_t flags, uint16_t ch,
                             uint64_t id, uint64_t arg, const void *body, uint32_t len) {
  uint8_t hdr[RILL_NET_HDR];
  rill_frame_header(hdr, type, flags, ch, id, arg, len);
  return rill__cli_send_now(c, hdr, sizeof hdr, body, len);
}

/* Runs the callbacks of asks a break ended. */
static inline int run_failed(rill_client_t *c, int status) {
  int n = 0;
  while (c->nfailed) {
    struct pend p = c->failed[--c->nfailed];
    p.cb(p.ctx, status, NULL, 0);
    n++;
  }
  return n;
}

static inline int tx_flush(rill_client_t *c) {
  return c->tx_len ? rill__cli_send_now(c, NULL, 0, NULL, 0) : 0;
}

/* The most a frame carries of a message that streams, and the size over
 * which one does: 8 KiB under max_body, so a piece and whatever prefix
 * its frame has (an ASK's service name) stay within the limit. */
static inline uint32_t piece_of(const rill_client_t *c) {
  return c->max_body > 16384 ? c->max_body - 8192 : c->max_body / 2;
}

static inline struct reg *reg_of(rill_client_t *c, uint8_t kind, uint16_t ch) {
  for (size_t i = 0; i < c->nregs; i++)
    if (c->regs[i].ch == ch && c->regs[i].kind == kind)
      return &c->regs[i];
  return NULL;
}

/* A delivery came off the wire: where the subscription resumes from.
 * false for one past the credits granted: a server that sent it could
 * make the client hold any number while a blocking call waits. */
static inline bool note_delivery(rill_client_t *c, const rill_frame_t *f) {
  struct reg *r = reg_of(c, REG_SUB, f->channel);
  if (!r)
    return true;
  if (!r->credits)
    return false;
  r->next = f->arg + 1;
  r->credits--;
  return true;
}

static inline void pend_free(rill_client_t *c, uint32_t i) {
  c->tab[i].id = 0;
  c->tab[i].next_free = c->free_slot;
  c->free_slot = i;
  c->inflight--;
}

/* Takes ask id out of the table: false when it is not there. */
static inline bool pend_take(rill_client_t *c, uint64_t id, struct pend *out) {
  uint32_t i = (uint32_t)id & SLOT_MASK;
  if (!(id & ASYNC_ID) || i >= c->o.max_inflight || c->tab[i].id != id)
    return false;
  *out = c->tab[i];
  pend_free(c, i);
  return true;
}

static inline void unlink_held(rill_client_t *c, struct held *prev, struct held *h) {
  if (prev)
    prev->next = h->next;
  else
    c->head = h->next;
  if (c->tail == h)
    c->tail = prev;
  c->held_cb -= h->for_cb;
}

/* The first held frame that `pick` accepts, unlinked (the caller frees it). */
static inline struct held *take(rill_client_t *c,
                                bool (*pick)(rill_client_t *, const struct held *)) {
  struct held *prev = NULL;
  for (struct held *h = c->head; h; prev = h, h = h->next)
    if (pick(c, h)) {
      unlink_held(c, prev, h);
      return h;
    }
  return NULL;
}

/* The next whole frame in rx when decoding is all rill__cli_read_frame
 * would do with it: connected, nothing spilled by a send, no message put
 * together, and a frame that is not a PING or a piece. Not consumed: the
 * caller that takes it moves off on by *used. False: read_frame's way. */
static inline bool rx_peek_plain(rill_client_t *c, rill_frame_t *f, size_t *used) {
  if (c->fd < 0 || c->spill_len || c->done_buf || c->asms)
    return false;
  return rill__frame_decode(c->rx + c->off, c->have - c->off, c->max_body, f, used) == 0 &&
         f->type != RILL_F_PING && f->type != RILL_F_CHUNK && !(f->flags & RILL_FF_STREAM);
}

/* The start of a reader's call (rill_client_next, rill_client_next_ask):
 * what it handed out last is let go. Returns the call's deadline. */
static inline uint64_t reader_begin(rill_client_t *c, uint64_t timeout_ns) {
  rill__free(c->cur);
  c->cur = NULL;
  return rill__deadline(rill_time_ns(), timeout_ns);
}

/* The connection, dialling again if it broke and reconnect is on: 0, or
 * RILL_ETIMEDOUT when deadline passes first, or RILL_ECLOSED (or the
 * server's refusal) when it is gone for good. The test inline: it is on
 * every publish and ask, and the call cost 22 instructions. */
static inline int rill__cli_ensure(rill_client_t *c, uint64_t deadline) {
  return c->fd >= 0 ? 0 : rill__cli_redial(c, deadline);
}

/* Blocking calls wait for the connection as long as reconnecting lasts. */
static inline int ready(rill_client_t *c) { return rill__cli_ensure(c, RILL_FOREVER); }

/* poll()'s timeout for a wait until deadline (at least now): whole
 * milliseconds rounded up, an hour at most (the caller loops), so that a
 * deadline of RILL_FOREVER neither wraps nor overflows an int. */
static inline int poll_ms(uint64_t deadline, uint64_t now) {
  uint64_t ns = deadline - now;
  return ns >= 3600000000000ull ? 3600000 : (int)((ns + 999999) / 1000000);
}

#endif
