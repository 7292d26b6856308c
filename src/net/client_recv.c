/*
 * The receive path: frames decoded in place from the receive buffer (PINGs
 * answered here), and messages over max_body put together from their
 * pieces, so that nothing above read_frame ever sees a piece: one record
 * at a time per connection, and any number of asks and replies at once,
 * held together to ASM_BUDGET max_messages.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>

#include "net/client_internal.h"

/* Moves what a waiting send read into rx, after what rx holds: only
 * between frames handed out (the last one's body is let go). */
static int unspill(rill_client_t *c) {
  if (c->off) {
    memmove(c->rx, c->rx + c->off, c->have - c->off);
    c->have -= c->off;
    c->off = 0;
  }
  if (c->spill_len > c->cap - c->have) {
    uint8_t *n = rill__realloc(c->rx, c->have + c->spill_len);
    if (!n)
      return rill__err(RILL_ENOMEM, "client: no memory");
    c->rx = n;
    c->cap = c->have + c->spill_len;
  }
  memcpy(c->rx + c->have, c->spill, c->spill_len);
  c->have += c->spill_len;
  c->spill_len = 0;
  c->drained = false;
  if (c->spill_cap > 4 * RX_START) { /* a burst's worth is not kept for good */
    rill__free(c->spill);
    c->spill = NULL;
    c->spill_cap = 0;
  }
  return 0;
}

int rill__cli_protocol_broken(rill_client_t *c, const char *what) {
  char why[160];
  snprintf(why, sizeof why, "the server broke the protocol: %s", what);
  rill__cli_lost(c, why);
  return rill__err(RILL_EPROTO, "client: %s", why);
}

static struct asm_in **asm_slot(rill_client_t *c, uint8_t type, uint64_t id) {
  struct asm_in **pp = &c->asms;
  while (*pp && !((*pp)->type == type && (*pp)->id == id))
    pp = &(*pp)->next;
  return pp;
}

void rill__cli_asm_drop(rill_client_t *c, struct asm_in **pp) {
  struct asm_in *a = *pp;
  *pp = a->next;
  c->asm_bytes -= a->cap;
  rill__free(a->buf);
  rill__free(a);
}

/* An ask the server ended (CANCEL) or an ask of ours that failed (ERROR)
 * while its pieces were coming: what came is dropped, and the pieces that
 * still come find nothing and are dropped too. */
void rill__cli_asm_end(rill_client_t *c, uint8_t type, uint64_t id) {
  struct asm_in **pp = asm_slot(c, type, id);
  if (*pp)
    rill__cli_asm_drop(c, pp);
}

/* Appends a piece: 0, or RILL_EMSGSIZE when it would pass max_message,
 * RILL_ENOBUFS when the streams coming in at once would hold more than
 * ASM_BUDGET max_messages (each is bounded by max_message, but a server
 * could open any number of them), RILL_ENOMEM. No total length comes
 * first, so the buffer grows by doubling (bounded by max_message). */
static int asm_add(rill_client_t *c, struct asm_in *a, const uint8_t *p, uint32_t n) {
  if (n > c->o.max_message - a->len) /* a->len never passes max_message */
    return RILL_EMSGSIZE;
  if (n > a->cap - a->len) {
    size_t cap = a->cap ? a->cap : 65536;
    while (cap < a->len + n)
      cap *= 2;
    if (cap > c->o.max_message)
      cap = c->o.max_message; /* still room for this piece: checked above */
    if (cap - a->cap > ASM_BUDGET * c->o.max_message - c->asm_bytes)
      return RILL_ENOBUFS;
    uint8_t *b = rill__realloc(a->buf, cap);
    if (!b)
      return RILL_ENOMEM;
    c->asm_bytes += cap - a->cap;
    a->buf = b;
    a->cap = cap;
  }
  if (n) /* an empty first piece: no buffer yet, and NULL + 0 is undefined */
    memcpy(a->buf + a->len, p, n);
  a->len += n;
  return 0;
}

/* Whether anyone waits for the reply to ask id: the blocking ask waiting
 * now, or an async ask in the table. One nobody waits for (a blocking ask
 * that gave up) is not put together: its pieces are dropped as they come. */
static bool reply_wanted(const rill_client_t *c, uint64_t id) {
  uint32_t i = (uint32_t)id & SLOT_MASK;
  return id == c->ask_waiting || ((id & ASYNC_ID) && i < c->o.max_inflight && c->tab[i].id == id);
}

/* An ask or reply coming in that cannot be taken (code: RILL_EMSGSIZE, RILL_ENOBUFS or
 * RILL_ENOMEM), already dropped. The side waiting for it hears: an ask's
 * asker by an ERROR we send (the server forwards it), our own ask by the
 * ERROR *f now is (1). 0 when there is nothing to hand over, or an error. */
static int asm_refuse(rill_client_t *c, uint8_t type, uint64_t id, int code, rill_frame_t *f) {
  const char *what = type == RILL_F_ASK ? "ask" : "reply";
  int n;
  if (code == RILL_EMSGSIZE)
    n = snprintf(c->asm_msg, sizeof c->asm_msg, "a streamed %s over max_message (%llu bytes)", what,
                 (unsigned long long)c->o.max_message);
  else if (code == RILL_ENOBUFS)
    n = snprintf(c->asm_msg, sizeof c->asm_msg,
                 "streamed asks and replies coming in at once over %d x max_message", ASM_BUDGET);
  else
    n = snprintf(c->asm_msg, sizeof c->asm_msg, "no memory for a streamed %s", what);
  if (type == RILL_F_ASK)
    return send_frame(c, RILL_F_ERROR, 0, 0, id, (uint64_t)(int64_t)code, c->asm_msg, (uint32_t)n);
  if (!reply_wanted(c, id))
    return 0; /* an error for nobody would come back as somebody else's */
  *f = (rill_frame_t){.len = (uint32_t)n,
                      .type = RILL_F_ERROR,
                      .flags = LOCAL_ERR,
                      .id = id,
                      .arg = (uint64_t)(int64_t)code,
                      .body = (const uint8_t *)c->asm_msg};
  return 1;
}

/* A streamed ASK or REPLY, or one of their CHUNKs: 0 while pieces are
 * missing (or for pieces of one dropped), 1 when *f is the whole ask or
 * reply (its body in done_buf, valid until the next read), or an error. */
static int asm_in(rill_client_t *c, rill_frame_t *f) {
  uint8_t type = f->type == RILL_F_CHUNK ? (uint8_t)f->arg : f->type;
  struct asm_in **pp = asm_slot(c, type, f->id);
  if (f->type != RILL_F_CHUNK) {
    if (*pp)
      return rill__cli_protocol_broken(c, "a streamed ASK or REPLY under an id already streaming");
    if (type == RILL_F_REPLY && !reply_wanted(c, f->id))
      return 0;
    struct asm_in *a = rill__calloc(1, sizeof *a);
    if (!a)
      return asm_refuse(c, type, f->id, RILL_ENOMEM, f);
    *a = (struct asm_in){
        .next = c->asms, .type = type, .ch = f->channel, .id = f->id, .arg = f->arg};
    c->asms = a;
    pp = &c->asms;
  } else if (!*pp) {
    return 0; /* of an ask that ended, or one we refused: dropped quietly */
  }
  struct asm_in *a = *pp;
  int rc = asm_add(c, a, f->body, f->len);
  if (rc) {
    rill__cli_asm_drop(c, pp);
    return asm_refuse(c, type, f->id, rc, f);
  }
  if (f->type != RILL_F_CHUNK || (f->flags & RILL_FF_MORE))
    return 0;
  *pp = a->next;
  c->asm_bytes -= a->cap;
  rill__free(c->done_buf);
  c->done_buf = a->buf;
  *f = (rill_frame_t){.len = (uint32_t)a->len,
                      .type = a->type,
                      .channel = a->ch,
                      .id = a->id,
                      .arg = a->arg,
                      .body = a->buf ? a->buf : (const uint8_t *)""};
  rill__free(a);
  return 1;
}

/* A streamed record over max_message went by: its subscription moves past
 * it (a re-subscription does not fetch it again) and the next
 * rill_client_next or rill_client_poll says so. */
static void skip_record(rill_client_t *c) {
  c->in_skip = false;
  if (c->in_ch) {
    rill_frame_t f = {.type = RILL_F_DELIVER, .channel = c->in_ch, .arg = c->in_seq};
    note_delivery(c, &f);
    struct reg *r = reg_of(c, REG_SUB, c->in_ch);
    if (r && r->msg_cb)
      r->used++; /* its credit goes back with the next half-window */
  }
  if (!c->skipped) {
    c->skipped = RILL_EMSGSIZE;
    snprintf(c->skip_msg, sizeof c->skip_msg,
             "client: record %llu on subscription %u is %llu bytes, over max_message "
             "(%llu): skipped",
             (unsigned long long)c->in_seq, c->in_ch, (unsigned long long)c->in_len,
             (unsigned long long)c->o.max_message);
  }
}

/* A streamed DELIVER, ASK or REPLY or one of its CHUNKs: 0 while pieces
 * are missing, 1 when *f is now the whole message (a record's body in
 * in_buf, valid until the next stream starts), or an error. Readers above
 * never see pieces. */
int rill__cli_stream_in(rill_client_t *c, rill_frame_t *f) {
  if (f->type == RILL_F_ASK || f->type == RILL_F_REPLY ||
      (f->type == RILL_F_CHUNK && (f->arg == RILL_F_ASK || f->arg == RILL_F_REPLY)))
    return asm_in(c, f);
  if (f->type == RILL_F_DELIVER) {
    if (c->in_stream)
      return rill__cli_protocol_broken(c, "a streamed DELIVER inside another");
    if (f->id <= f->len || f->id > UINT32_MAX)
      return rill__cli_protocol_broken(
          c, "a streamed DELIVER whose length is not over its first piece");
    c->in_stream = true;
    c->in_ch = f->channel;
    c->in_seq = f->arg;
    c->in_len = f->id;
    c->in_got = f->len;
    /* Nothing is allocated on the server's word beyond max_message: a
     * record over it is passed over (its pieces still checked), and the
     * reader hears of it once the last piece went by. */
    c->in_skip = f->id > c->o.max_message;
    if (c->in_skip)
      return 0;
    if (f->id > c->in_cap) {
      uint8_t *n = rill__realloc(c->in_buf, f->id);
      if (!n)
        return rill__err(RILL_ENOMEM, "client: no memory for a %llu-byte record",
                         (unsigned long long)f->id);
      c->in_buf = n;
      c->in_cap = f->id;
    }
    memcpy(c->in_buf, f->body, f->len);
    return 0;
  }
  if (f->arg != RILL_F_DELIVER)
    return 0; /* pieces of a kind the server does not send a client: passed over */
  if (!c->in_stream || f->id != c->in_seq || f->channel != c->in_ch)
    return rill__cli_protocol_broken(c, "a CHUNK of no streamed record");
  if (f->len > c->in_len - c->in_got ||
      (!(f->flags & RILL_FF_MORE) && f->len != c->in_len - c->in_got))
    return rill__cli_protocol_broken(c, "CHUNKs that do not add up to the record's length");
  if (!c->in_skip)
    memcpy(c->in_buf + c->in_got, f->body, f->len);
  c->in_got += f->len;
  if (f->flags & RILL_FF_MORE)
    return 0;
  c->in_stream = false;
  if (c->in_skip) {
    skip_record(c);
    return 0;
  }
  *f = (rill_frame_t){.len = (uint32_t)c->in_len,
                      .type = RILL_F_DELIVER,
                      .channel = c->in_ch,
                      .id = c->in_ch ? 0 : 1, /* a FETCH's (channel 0): nobody's */
                      .arg = c->in_seq,
                      .body = c->in_buf};
  return 1;
}

/* The next frame, waiting up to timeout_ns (0: only what is there now);
 * its body stays valid until the next read. 1 (no frame) when skip_wake
 * is set and a record over max_message went by. */
int rill__cli_read_frame(rill_client_t *c, rill_frame_t *f, uint64_t timeout_ns) {
  uint64_t deadline = 0;
  if (RILL_UNLIKELY(c->done_buf != NULL)) { /* the last message put together: read */
    rill__free(c->done_buf);
    c->done_buf = NULL;
  }
  for (;;) {
    if (c->fd < 0)
      return rill__err(c->o.reconnect ? RILL_ECONNRESET : RILL_ECLOSED, "client: not connected");
    /* Nothing of rx is handed out here: the bytes a send waited over go
     * after it, before anything read now. */
    if (RILL_UNLIKELY(c->spill_len)) {
      int src = unspill(c);
      if (src)
        return src;
    }
    size_t used;
    int rc = rill__frame_decode(c->rx + c->off, c->have - c->off, c->max_body, f, &used);
    if (rc == 0) {
      c->off += used; /* the body stays where it is until the next call */
      if (RILL_UNLIKELY(f->type == RILL_F_PING)) {
        /* The server's keepalive (a connection it has not heard from):
         * answered here, whoever is reading. */
        if ((rc = send_frame(c, RILL_F_PONG, 0, 0, f->id, 0, NULL, 0)) != 0)
          return rc;
        continue;
      }
      /* STREAM comes from the server only on DELIVER, ASK and REPLY. */
      if (RILL_UNLIKELY(f->type == RILL_F_CHUNK || (f->flags & RILL_FF_STREAM))) {
        if ((rc = rill__cli_stream_in(c, f)) <= 0) {
          if (rc == 0 && c->skipped && c->skip_wake)
            return 1; /* a reader waits: it hears of the skipped record now */
          if (rc == 0)
            continue; /* more pieces to come */
          return rc;
        }
      }
      if (RILL_UNLIKELY(c->asms != NULL)) {
        if (f->type == RILL_F_CANCEL)
          rill__cli_asm_end(c, RILL_F_ASK, f->id);
        else if (f->type == RILL_F_ERROR && !(f->flags & LOCAL_ERR))
          rill__cli_asm_end(c, RILL_F_REPLY, f->id);
      }
      return 0;
    }
    if (rc != RILL_EAGAIN) {
      char why[160];
      snprintf(why, sizeof why, "the server broke the protocol: %s", rill_errmsg());
      rill__cli_lost(c, why);
      return rill__err(rc, "client: %s", why);
    }
    /* Frames of 16 KiB and more: room for four (once; bounded by the
     * largest frame and a read's room, as the server's), so that a read
     * takes several and the move below is rare (pub_64k's subscriber moved
     * a third of its bytes). Without the memory it goes on as it was. */
    size_t roomy = RILL_NET_HDR + (size_t)c->max_body + 4096;
    if (used >= (16u << 10) && c->cap / 4 < used && c->cap < roomy) {
      size_t cap = 4 * used < roomy ? 4 * used : roomy;
      uint8_t *n = rill__realloc(c->rx, cap);
      if (n) {
        c->rx = n;
        c->cap = cap;
      }
    }
    /* Room for the rest of the frame: move what is left to the front (only
     * now, not after every frame), then grow if that is not enough. */
    if (c->off && (c->cap - c->have < 4096 || used > c->cap - c->off)) {
      memmove(c->rx, c->rx + c->off, c->have - c->off);
      c->have -= c->off;
      c->off = 0;
    }
    if (used > c->cap) {
      uint8_t *n = rill__realloc(c->rx, used);
      if (!n)
        return rill__err(RILL_ENOMEM, "client: no memory");
      c->rx = n;
      c->cap = used;
    }
    /* Try the socket first and poll only when it has nothing; but a
     * socket the last read drained goes straight to poll when we may
     * wait: a recv that would fail is a syscall a pipelined pass saves. */
    ssize_t n;
    if (c->drained && timeout_ns) {
      n = -1;
      errno = EAGAIN;
      c->drained = false; /* poll says when there is more */
    } else {
      n = recv(c->fd, c->rx + c->have, c->cap - c->have, MSG_DONTWAIT);
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      uint64_t now = rill_time_ns();
      if (!deadline)
        deadline = rill__deadline(now, timeout_ns);
      if (now >= deadline) {
        c->drained = true;
        return rill__err(RILL_ETIMEDOUT, "client: no answer in time");
      }
      struct pollfd p = {c->fd, POLLIN, 0};
      if (poll(&p, 1, poll_ms(deadline, now)) < 0 && errno != EINTR)
        return rill__err_errno("client: poll");
      continue;
    }
    if (n == 0)
      return rill__cli_lost(c, "the server closed the connection");
    if (n < 0) {
      if (errno == EINTR)
        continue;
      char why[96];
      snprintf(why, sizeof why, "recv: %s", strerror(errno));
      return rill__cli_lost(c, why);
    }
    c->have += (size_t)n;
  }
}

/* An ERROR or BYE frame as a return code, its message as the errmsg. */
int rill__cli_as_error(const rill_frame_t *f) {
  int code = f->type == RILL_F_BYE ? RILL_ECLOSED : (int)(int64_t)f->arg;
  if (code >= 0)
    code = RILL_EPROTO;
  if (f->flags & LOCAL_ERR)
    return rill__err(code, "client: %.*s", (int)f->len, f->body);
  return rill__err(code, "server: %.*s", (int)(f->len < 200 ? f->len : 200), f->body);
}

int rill__cli_bye(rill_client_t *c, const rill_frame_t *f) {
  char why[240];
  snprintf(why, sizeof why, "the server said BYE: %.*s", (int)(f->len < 200 ? f->len : 200),
           f->body);
  return rill__cli_lost(c, why);
}

/* A BYE a reader (rill_client_next, rill_client_next_ask) met: the
 * connection goes. 0 when the reader goes on waiting (reconnect is on:
 * it dials again), else the BYE as its error. */
int rill__cli_reader_bye(rill_client_t *c, const rill_frame_t *f) {
  rill__cli_bye(c, f);
  return c->o.reconnect ? 0 : rill__cli_as_error(f);
}
