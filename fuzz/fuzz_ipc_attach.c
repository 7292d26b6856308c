/*
 * The route segment against hostile bytes, two ways, chosen by the
 * input's first byte.
 *
 * Raw: the attach-time check on arbitrary bytes (half the time with the
 * magic and version stamped on, so that the geometry checks are reached);
 * what it accepts, summary reads as info and list do.
 *
 * Live: a real route is made in /dev/shm with a geometry the input picks
 * (a pool of 0..2 classes, every policy and wait mode), two receivers
 * attach and a sender publishes a few messages, inline and pooled. Then
 * the input's patches are written over the segment, anywhere (header,
 * head, futex words, the participants table, slot marks, lengths, flags
 * and descriptors, chunk owners), as a buggy or hostile peer could at any
 * time, and the handles go on: the receivers receive and release, info
 * reads, the sender sends, a new sender takes the route over, a new
 * receiver attaches. Never a crash, a hang or a read outside the mapping:
 * every message returned lies in mapped memory (msync checks) and is read
 * whole, and it is no longer than the route's largest message.
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
  uint8_t *mem = fuzz_ipc_copy(data, size, RILL_IPC_MAGIC, RILL_IPC_VERSION);
  if (!mem)
    return;
  struct rill__ipc_geom g;
  if (rill__ipc_check("fuzz", mem, size, &g) == 0) {
    rill_ipc_route_info_t info;
    rill__ipc_summary(mem, &g, &info);
    if (info.receivers > g.max_receivers || g.total != size)
      abort();
  }
  free(mem);
}

static void drain(rill_ipc_route_t *r, uint32_t max, uint8_t how) {
  for (int i = 0; r && i < 24; i++) {
    rill_ipc_msg_t m[4];
    uint64_t lost;
    uint32_t got = 1;
    /* Every third look a batch: its own loop over the slots. */
    int rc = i % 3 == 2 ? rill_ipc_route_recv_batch(r, m, 4, &got, 0, &lost)
                        : rill_ipc_route_recv(r, m, 0, &lost);
    if (rc == 0) {
      if (got < 1 || got > 4)
        abort();
      for (uint32_t j = 0; j < got; j++)
        fuzz_ipc_check_msg(&m[j], max);
      if ((how >> (i % 8)) & 1)
        rill_ipc_route_release(r);
    } else if (rc != RILL_ELAGGED) {
      break;
    }
  }
}

static void sends(rill_ipc_route_t *s, const uint8_t *lens, size_t n, uint32_t max) {
  static uint8_t buf[1 << 16];
  for (size_t i = 0; s && i < n; i++) {
    uint32_t len = fuzz_ipc_fill(buf, sizeof buf, lens[i], i, max);
    if (lens[i] % 5 == 0) {
      void *room;
      if (rill_ipc_route_reserve(s, len, 0, &room) == 0) {
        memcpy(room, buf, len);
        rill_ipc_route_commit(s, len);
      }
    } else if (lens[i] % 7 == 3) {
      /* A batch of this one and the next few, with lengths of their own. */
      rill_iov_t v[4];
      rill_ipc_route_send_batch(s, v, fuzz_ipc_batch(v, buf, len, lens[i], i, max), 0, NULL);
    } else {
      rill_ipc_route_send(s, buf, len, 0);
    }
  }
}

static void live(const uint8_t *data, size_t size) {
  if (size < 8)
    return;
  char name[64];
  snprintf(name, sizeof name, "fuzz.attach.%d", (int)getpid());
  rill_ipc_route_unlink(name);
  rill_ipc_route_opts_t o = {.slots = 2u << (data[1] % 4),
                             .slot_size = 64u * (1 + data[2] % 4),
                             .max_receivers = 1 + data[3] % 4,
                             .policy = (rill_ipc_policy_t)(data[4] % 3),
                             .wait = (rill_ipc_wait_t)((data[4] >> 2) % 2),
                             .spin_ns = 1000};
  fuzz_ipc_pool(o.pool, o.slot_size, data);
  rill_ipc_route_t *s = NULL, *s2 = NULL;
  rill_ipc_route_t *r1 = NULL, *r2 = NULL, *r3 = NULL;
  if (rill_ipc_route_open(&s, name, &o, RILL_IPC_SENDER))
    return;
  uint32_t max = rill_ipc_route_max_message(s);
  rill_ipc_route_open(&r1, name, NULL, RILL_IPC_RECEIVER);
  if (o.max_receivers > 1)
    rill_ipc_route_open(&r2, name, NULL, RILL_IPC_RECEIVER);
  sends(s, data + 8, data[6] % 12 < size - 8 ? data[6] % 12 : size - 8, max);
  drain(r2, max, 0xff);

  rill_ipc_route_info_t info;
  size_t total;
  uint8_t *seg = fuzz_ipc_patch(name, data, size, 8 + data[6] % 12, RILL_IPC_MAGIC, &total);

  drain(r1, max, data[7]);
  drain(r2, max, (uint8_t)~data[7]);
  if (rill_ipc_route_info(name, &info) == 0 && info.receivers > info.max_receivers)
    abort();
  sends(s, data + 8, 4 < size - 8 ? 4 : size - 8, max);
  drain(r1, max, 0);
  rill_ipc_route_wait_receivers(s, 1, 0);
  rill_ipc_route_close(s);
  /* Another sender takes the patched route over; another receiver joins. */
  if (rill_ipc_route_open(&s2, name, NULL, RILL_IPC_SENDER) == 0) {
    rill_ipc_route_open(&r3, name, NULL, RILL_IPC_RECEIVER);
    sends(s2, data + 8, 6 < size - 8 ? 6 : size - 8, rill_ipc_route_max_message(s2));
    drain(r3, rill_ipc_route_max_message(s2), data[7]);
    drain(r1, max, data[7]);
  }
  rill_ipc_route_close(r3);
  rill_ipc_route_close(s2);
  rill_ipc_route_close(r2);
  rill_ipc_route_close(r1);
  if (seg != MAP_FAILED)
    munmap(seg, total);
  rill_ipc_route_unlink(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size && data[0] % 2)
    live(data, size);
  else
    raw(data, size);
  return 0;
}
