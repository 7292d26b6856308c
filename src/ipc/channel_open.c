/*
 * Opening and closing a channel (channel_internal.h gives the protocol):
 * the options checked against each other and against an existing segment,
 * a place taken in the table (a queue receiver takes an orphan when no
 * place is free), a broadcast receiver's join at the claim counter, and
 * the leave.
 */
#include <stdio.h>
#include <string.h>

#include "ipc/channel_internal.h"

static int opts_geom(const char *name, const rill_ipc_chan_opts_t *o, struct rill__chan_geom *g,
                     mode_t *mode) {
  rill_ipc_chan_opts_t d = {0};
  if (o)
    d = *o;
  g->slots = d.slots ? d.slots : 4096;
  g->slot_size = d.slot_size ? d.slot_size : 128;
  g->max_senders = d.max_senders ? d.max_senders : RILL_IPC_MAX_SENDERS;
  g->max_receivers = d.max_receivers ? d.max_receivers : RILL_IPC_MAX_RECEIVERS;
  g->spin_ns = d.spin_ns ? d.spin_ns : 50000;
  *mode = d.mode ? d.mode : 0600;
  if ((unsigned)d.policy > RILL_IPC_FAIL)
    return rill__err(RILL_EINVAL, "ipc channel %s: policy %d: a channel blocks or fails", name,
                     (int)d.policy);
  if ((unsigned)d.wait > RILL_IPC_SPIN)
    return rill__err(RILL_EINVAL, "ipc channel %s: unknown wait mode %d", name, (int)d.wait);
  if ((unsigned)d.delivery > RILL_IPC_QUEUE)
    return rill__err(RILL_EINVAL, "ipc channel %s: unknown delivery %d", name, (int)d.delivery);
  g->policy = (uint8_t)d.policy;
  g->wait = (uint8_t)d.wait;
  g->delivery = (uint8_t)d.delivery;
  int rc = rill__ipc_ring_check(RILL_EINVAL, KIND, name, g->slots, g->slot_size);
  if (rc)
    return rc;
  if ((rc = rill__ipc_places_check(RILL_EINVAL, KIND, name, "senders", g->max_senders,
                                   RILL_IPC_MAX_SENDERS)))
    return rc;
  if ((rc = rill__ipc_places_check(RILL_EINVAL, KIND, name, "receivers", g->max_receivers,
                                   RILL_IPC_MAX_RECEIVERS)))
    return rc;
  if (*mode & ~(mode_t)0777)
    return rill__err(RILL_EINVAL, "ipc channel %s: mode %o has bits beyond 0777", name,
                     (unsigned)*mode);
  rc = rill__ipc_classes_opts(KIND, name, d.pool, g->slot_size - RILL_IPC_SLOT_HDR, g->cls,
                              &g->nclasses);
  if (rc)
    return rc;
  rill__chan_layout(g);
  return 0;
}

static int opts_agree(const rill_ipc_chan_t *ch, const rill_ipc_chan_opts_t *o) {
  if (!o)
    return 0;
  const struct rill__chan_geom *g = &ch->g;
  int rc = rill__ipc_classes_agree(KIND, ch->name, o->pool, g->cls, g->nclasses);
  if (rc)
    return rc;
  if ((o->slots && o->slots != g->slots) || (o->slot_size && o->slot_size != g->slot_size) ||
      (o->max_senders && o->max_senders != g->max_senders) ||
      (o->max_receivers && o->max_receivers != g->max_receivers) ||
      (unsigned)o->policy != g->policy || (unsigned)o->delivery != g->delivery)
    return rill__err(RILL_EINVAL,
                     "ipc channel %s: exists with %u slots of %u bytes, %u senders, %u receivers, "
                     "policy %u, delivery %u; asked for %u, %u, %u, %u, %u, %u",
                     ch->name, g->slots, g->slot_size, g->max_senders, g->max_receivers,
                     (unsigned)g->policy, (unsigned)g->delivery, o->slots, o->slot_size,
                     o->max_senders, o->max_receivers, (unsigned)o->policy, (unsigned)o->delivery);
  return 0;
}

static void bind(rill_ipc_chan_t *ch) {
  ch->hdr = (struct rill__chan_hdr *)(void *)ch->base;
  ch->places = (struct rill__ipc_place *)(void *)(ch->base + ch->g.table_off);
  ch->ring = ch->base + ch->g.ring_off;
  ch->mask = (uint64_t)ch->g.slots - 1;
}

int rill__chan_closed_err(const rill_ipc_chan_t *ch) {
  return rill__err(RILL_ECLOSED, "ipc channel %s: removed (rill ipc rm) while in use", ch->name);
}

int rill_ipc_chan_open(rill_ipc_chan_t **out, const char *name, const rill_ipc_chan_opts_t *opts,
                       rill_ipc_role_t role) {
  if (!out)
    return rill__err(RILL_EINVAL, "ipc channel: out is NULL");
  *out = NULL;
  int rc = rill__ipc_name_check(KIND, name);
  if (rc)
    return rc;
  if (role != RILL_IPC_SENDER && role != RILL_IPC_RECEIVER)
    return rill__err(RILL_EINVAL, "ipc channel %s: unknown role %d", name, (int)role);
  struct rill__chan_geom g;
  mode_t mode;
  rc = opts_geom(name, opts, &g, &mode);
  if (rc)
    return rc;
  rill_ipc_chan_t *ch = rill__calloc(1, sizeof *ch);
  if (!ch)
    return rill__err(RILL_ENOMEM, "ipc channel %s: no memory for the handle", name);
  snprintf(ch->name, sizeof ch->name, "%s", name);
  ch->role = role;
  rc = rill__ipc_seg_open(KIND, name, &g, mode, &ch->g, &ch->base, &ch->size);
  if (rc == 0)
    bind(ch);
  if (rc)
    goto free_handle;
  rc = opts_agree(ch, opts);
  if (rc)
    goto unmap;
  struct rill__chan_hdr *h = ch->hdr;
  bool sender = role == RILL_IPC_SENDER;
  bool queue = ch->g.delivery == RILL_IPC_QUEUE;
  struct rill__ipc_place *pl = sender ? ch->places : receivers(ch);
  uint32_t n = sender ? ch->g.max_senders : ch->g.max_receivers;
  uint32_t *waiters = sender ? &h->send_waiters : &h->recv_waiters;
  if (!sender && queue) {
    /* A free place first; an orphan only when none is left. */
    for (uint32_t i = 0; i < n && !ch->me; i++)
      if (rill__ipc_claim_place_with(&pl[i], rill__chan_reap_free, ch, &ch->mine))
        ch->me = &pl[i];
    for (uint32_t i = 0; i < n && !ch->me; i++)
      if (rill__chan_adopt_place(ch, &pl[i]))
        ch->me = &pl[i];
  } else {
    for (uint32_t i = 0; i < n && !ch->me; i++)
      if (rill__ipc_claim_place(&pl[i], waiters, &ch->mine))
        ch->me = &pl[i];
  }
  if (!ch->me) {
    rc = rill__err(RILL_EBUSY, "ipc channel %s: its %u %s places are held by live processes", name,
                   n, sender ? "sender" : "receiver");
    goto unmap;
  }
  __atomic_store_n(&ch->me->start, rill__ipc_self_start(), __ATOMIC_RELAXED); /* by take */
  if (sender || queue) {
    /* A sender's pending claim, a queue receiver's hold: none (an adopted
     * orphan's hold stays). The delivery is the channel's: opts may be
     * NULL. A queue receiver gets whatever is queued: ready at once. */
    if (!ch->adopted)
      __atomic_store_n(&ch->me->cursor, sender ? 0 : RILL__CHAN_NONE, __ATOMIC_RELAXED);
    __atomic_store_n(&ch->me->ready, !sender, __ATOMIC_RELAXED); /* published by take */
    ch->mine = rill__ipc_take_place(ch->me, ch->mine);
    ch->min_seen = 0;
    ch->checked_ms = 0;
    *out = ch;
    return 0;
  }
  /* A broadcast receiver joins at claim. Acquire: pairs with the senders'
   * CAS of claim (release). */
  uint64_t c = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
  __atomic_store_n(&ch->me->cursor, c, __ATOMIC_RELAXED); /* published by take */
  __atomic_store_n(&ch->me->ready, 0, __ATOMIC_RELAXED);  /* a previous holder's */
  ch->mine = rill__ipc_take_place(ch->me, ch->mine);
  /* seq_cst: pairs with the fence in a sender's scan: it sees our place,
   * or we now see every claim it scanned under. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  uint64_t c2 = __atomic_load_n(&h->claim, __ATOMIC_ACQUIRE);
  if (c2 != c) {
    c = c2;
    /* Release: as every cursor store (advance). */
    __atomic_store_n(&ch->me->cursor, c, __ATOMIC_RELEASE);
  }
  ch->cur = c;
  /* Release: pairs with a sender's acquire in rill__chan_count_ready: a sender that
   * sees it claims at or past our cursor from then on. */
  __atomic_store_n(&ch->me->ready, 1, __ATOMIC_RELEASE);
  *out = ch;
  return 0;
unmap:
  rill__ipc_shm_unmap(ch->base, ch->size);
free_handle:
  rill__free(ch);
  return rc;
}

uint32_t rill_ipc_chan_max_message(const rill_ipc_chan_t *ch) {
  if (!ch)
    return 0;
  return ch->g.nclasses ? ch->g.max_message : ch->g.slot_size - RILL_IPC_SLOT_HDR;
}

uint32_t rill_ipc_chan_max_payload(const rill_ipc_chan_t *ch) {
  return ch ? ch->g.slot_size - RILL_IPC_SLOT_HDR : 0;
}

void rill_ipc_chan_close(rill_ipc_chan_t *ch) {
  if (!ch)
    return;
  struct rill__chan_hdr *h = ch->hdr;
  if (ch->reserved)
    rill__chan_cancel(ch); /* receivers skip it now, not after the dead-claimer check */
  if (ch->role == RILL_IPC_RECEIVER && ch->g.delivery == RILL_IPC_QUEUE && ch->adopted) {
    rill__chan_leave_orphan(ch);
  } else {
    if (ch->role == RILL_IPC_RECEIVER && ch->g.delivery == RILL_IPC_QUEUE)
      /* Relaxed: published by the leave's release; a free queue place
       * shows NONE (file comment). */
      __atomic_store_n(&ch->me->cursor, RILL__CHAN_NONE, __ATOMIC_RELAXED);
    rill__ipc_leave_place(ch->me, ch->mine);
  }
  if (ch->role == RILL_IPC_RECEIVER)
    rill__ipc_count_leave(&h->gone);
  /* seq_cst: as in advance(); a sender waiting for us stops waiting. */
  RILL__IPC_FENCE(__ATOMIC_SEQ_CST);
  if (ch->role == RILL_IPC_RECEIVER && __atomic_load_n(&h->send_waiters, __ATOMIC_RELAXED))
    rill__futex_bump_shared(&h->send_futex);
  rill__ipc_shm_unmap(ch->base, ch->size);
  rill__free(ch);
}
