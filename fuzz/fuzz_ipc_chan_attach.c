/*
 * The channel segment against hostile bytes, two ways, chosen by the
 * input's first byte, as fuzz_ipc_attach does for routes.
 *
 * Raw: the attach-time check on arbitrary bytes (half the time with the
 * magic and version stamped on); what it accepts, summary reads as info
 * and list do.
 *
 * Live: a real channel (broadcast or queue, a pool of 0..2 classes) with
 * two receivers and a sender that sent a few messages; the input's
 * patches are written over the segment anywhere (claim and consumed
 * counters, orphan count, the participants table and its cursors, slot
 * marks, lengths, descriptors, chunk owners), and the handles go on:
 * receive and release, info, send, reserve and cancel, a second sender
 * and a third receiver open. Never a crash, a hang or a read outside the
 * mapping: every message returned is mapped (msync checks), read whole,
 * and no longer than the channel's largest message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_ipc.h"
#include "ipc/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void raw(const uint8_t *data, size_t size) {
  uint8_t *mem = fuzz_ipc_copy(data, size, RILL_IPC_CHAN_MAGIC, RILL_IPC_CHAN_VERSION);
  if (!mem)
    return;
  struct rill__chan_geom g;
  if (rill__chan_check("fuzz", mem, size, &g) == 0) {
    rill_ipc_chan_info_t info;
    rill__chan_summary(mem, &g, &info);
    if (info.senders > g.max_senders || info.receivers > g.max_receivers || g.total != size)
      abort();
  }
  free(mem);
}

static void drain(rill_ipc_chan_t *r, uint8_t how) {
  if (!r)
    return;
  uint32_t max = rill_ipc_chan_max_message(r);
  for (int i = 0; i < 24; i++) {
    rill_ipc_msg_t m[4];
    uint64_t lost;
    uint32_t got = 1;
    /* Every third look a batch: its own loop over the slots. */
    int rc = i % 3 == 2 ? rill_ipc_chan_recv_batch(r, m, 4, &got, 0, &lost)
                        : rill_ipc_chan_recv(r, m, 0, &lost);
    if (rc == 0) {
      if (got < 1 || got > 4)
        abort();
      for (uint32_t j = 0; j < got; j++)
        fuzz_ipc_check_msg(&m[j], max);
      if ((how >> (i % 8)) & 1)
        rill_ipc_chan_release(r);
    } else if (rc != RILL_ELAGGED) {
      break;
    }
  }
}

static void sends(rill_ipc_chan_t *s, const uint8_t *lens, size_t n) {
  static uint8_t buf[1 << 16];
  if (!s)
    return;
  uint32_t max = rill_ipc_chan_max_message(s);
  for (size_t i = 0; i < n; i++) {
    uint32_t len = fuzz_ipc_fill(buf, sizeof buf, lens[i], i, max);
    void *room;
    if (lens[i] % 7 == 0) {
      if (rill_ipc_chan_reserve(s, len, 0, &room) == 0)
        rill_ipc_chan_cancel(s);
    } else if (lens[i] % 5 == 0) {
      if (rill_ipc_chan_reserve(s, len, 0, &room) == 0) {
        memcpy(room, buf, len);
        rill_ipc_chan_commit(s, len);
      }
    } else if (lens[i] % 7 == 3) {
      /* A batch of this one and the next few, with lengths of their own. */
      rill_iov_t v[4];
      rill_ipc_chan_send_batch(s, v, fuzz_ipc_batch(v, buf, len, lens[i], i, max), 0, NULL);
    } else {
      rill_ipc_chan_send(s, buf, len, 0);
    }
  }
}

static void live(const uint8_t *data, size_t size) {
  if (size < 8)
    return;
  char name[64];
  snprintf(name, sizeof name, "fuzz.chan.%d", (int)getpid());
  rill_ipc_chan_unlink(name);
  rill_ipc_chan_opts_t o = {.slots = 2u << (data[1] % 4),
                            .slot_size = 64u * (1 + data[2] % 4),
                            .max_senders = 1 + data[3] % 3,
                            .max_receivers = 1 + (data[3] >> 2) % 4,
                            .delivery = (rill_ipc_delivery_t)(data[4] % 2),
                            .policy = (rill_ipc_policy_t)((data[4] >> 1) % 2),
                            .wait = (rill_ipc_wait_t)((data[4] >> 2) % 2),
                            .spin_ns = 1000};
  fuzz_ipc_pool(o.pool, o.slot_size, data);
  rill_ipc_chan_t *s = NULL, *s2 = NULL, *r1 = NULL, *r2 = NULL, *r3 = NULL;
  if (rill_ipc_chan_open(&r1, name, &o, RILL_IPC_RECEIVER))
    return;
  if (o.max_receivers > 1)
    rill_ipc_chan_open(&r2, name, NULL, RILL_IPC_RECEIVER);
  rill_ipc_chan_open(&s, name, NULL, RILL_IPC_SENDER);
  size_t nsend = data[6] % 12 < size - 8 ? data[6] % 12 : size - 8;
  sends(s, data + 8, nsend);
  drain(r2, 0xff);

  size_t total;
  uint8_t *seg = fuzz_ipc_patch(name, data, size, 8 + nsend, RILL_IPC_CHAN_MAGIC, &total);

  drain(r1, data[7]);
  drain(r2, (uint8_t)~data[7]);
  rill_ipc_chan_info_t info;
  if (rill_ipc_chan_info(name, &info) == 0 &&
      (info.senders > info.max_senders || info.receivers > info.max_receivers))
    abort();
  sends(s, data + 8, 4 < size - 8 ? 4 : size - 8);
  rill_ipc_chan_open(&s2, name, NULL, RILL_IPC_SENDER);
  rill_ipc_chan_open(&r3, name, NULL, RILL_IPC_RECEIVER);
  sends(s2, data + 8, 6 < size - 8 ? 6 : size - 8);
  drain(r3, data[7]);
  drain(r1, 0);
  rill_ipc_chan_close(r3);
  rill_ipc_chan_close(s2);
  rill_ipc_chan_close(s);
  rill_ipc_chan_close(r2);
  rill_ipc_chan_close(r1);
  if (seg != MAP_FAILED)
    munmap(seg, total);
  rill_ipc_chan_unlink(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size && data[0] % 2)
    live(data, size);
  else
    raw(data, size);
  return 0;
}
