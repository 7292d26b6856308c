/*
 * The route segment's layout and its attach-time check, and the liveness
 * test behind reaping. See docs/FORMATS.md ("IPC route segment").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "ipc/segment.h"

_Static_assert(sizeof(struct rill__ipc_hdr) == 256, "header lines");
_Static_assert(offsetof(struct rill__ipc_hdr, head) == 64, "head on its own line");
_Static_assert(offsetof(struct rill__ipc_hdr, recv_futex) == 128, "receivers' futex line");
_Static_assert(offsetof(struct rill__ipc_hdr, send_futex) == 192, "sender's futex line");
_Static_assert(sizeof(struct rill__ipc_place) == RILL__IPC_PLACE_BYTES, "a place is a line");
_Static_assert(sizeof(struct rill__ipc_slot) == RILL_IPC_SLOT_HDR, "slot header");

void rill__ipc_layout(struct rill__ipc_geom *g) {
  uint64_t table = (uint64_t)(1 + g->max_receivers) * RILL__IPC_PLACE_BYTES;
  g->table_off = RILL__IPC_HDR_BYTES;
  g->ring_off = g->table_off + RILL__ALIGN_UP(table, (uint64_t)RILL__IPC_PAGE);
  g->total = g->ring_off + (uint64_t)g->slots * g->slot_size;
}

int rill__ipc_check(const char *name, const void *mem, size_t size, struct rill__ipc_geom *g) {
  const uint8_t *p = mem;
  if (!name)
    name = "?";
  if (size < 8)
    return rill__err(RILL_EPROTO, "ipc route %s: a segment of %zu bytes has no header", name, size);
  uint32_t magic = rill__get32(p);
  if (magic != RILL_IPC_MAGIC)
    return rill__err(RILL_EVERSION, "ipc route %s: magic 0x%08x, not 0x%08x (\"RLIP\")", name,
                     magic, RILL_IPC_MAGIC);
  uint16_t version = rill__get16(p + 4);
  if (version != RILL_IPC_VERSION)
    return rill__err(RILL_EVERSION, "ipc route %s: version %u, this build knows %u", name,
                     (unsigned)version, RILL_IPC_VERSION);
  if (size < RILL__IPC_HDR_BYTES)
    return rill__err(RILL_EPROTO,
                     "ipc route %s: a segment of %zu bytes, shorter than its %u-byte header", name,
                     size, RILL__IPC_HDR_BYTES);
  struct rill__ipc_geom x = {0};
  x.policy = p[6];
  x.wait = p[7];
  x.slots = rill__get32(p + 8);
  x.slot_size = rill__get32(p + 12);
  x.max_receivers = rill__get32(p + 16);
  uint32_t flags = rill__get32(p + 20);
  uint64_t total = rill__get64(p + 24);
  x.spin_ns = rill__get64(p + 32);
  if (x.policy > RILL_IPC_OVERWRITE)
    return rill__err(RILL_EPROTO, "ipc route %s: unknown policy %u", name, (unsigned)x.policy);
  if (x.wait > RILL_IPC_SPIN)
    return rill__err(RILL_EPROTO, "ipc route %s: unknown wait mode %u", name, (unsigned)x.wait);
  if (flags)
    return rill__err(RILL_EPROTO, "ipc route %s: unknown flags 0x%x", name, flags);
  if (!RILL__IS_POW2(x.slots) || x.slots < RILL__IPC_MIN_SLOTS || x.slots > RILL__IPC_MAX_SLOTS)
    return rill__err(RILL_EPROTO, "ipc route %s: %u slots, not a power of two in 2..2^24", name,
                     x.slots);
  if (x.slot_size % 64 || x.slot_size < RILL__IPC_MIN_SLOT || x.slot_size > RILL__IPC_MAX_SLOT)
    return rill__err(RILL_EPROTO, "ipc route %s: slot size %u, not a multiple of 64 in 64..1 MiB",
                     name, x.slot_size);
  if (x.max_receivers < 1 || x.max_receivers > RILL_IPC_MAX_RECEIVERS)
    return rill__err(RILL_EPROTO, "ipc route %s: max receivers %u, not in 1..%u", name,
                     x.max_receivers, RILL_IPC_MAX_RECEIVERS);
  rill__ipc_layout(&x);
  if (total != x.total)
    return rill__err(RILL_EPROTO,
                     "ipc route %s: the header says %llu bytes, its layout needs %llu (header %u + "
                     "table %llu + ring %u x %u)",
                     name, (unsigned long long)total, (unsigned long long)x.total,
                     RILL__IPC_HDR_BYTES, (unsigned long long)(x.ring_off - x.table_off), x.slots,
                     x.slot_size);
  if ((uint64_t)size != x.total)
    return rill__err(RILL_EPROTO,
                     "ipc route %s: the segment is %zu bytes, its layout needs %llu (header %u + "
                     "table %llu + ring %u x %u)",
                     name, size, (unsigned long long)x.total, RILL__IPC_HDR_BYTES,
                     (unsigned long long)(x.ring_off - x.table_off), x.slots, x.slot_size);
  if (g)
    *g = x;
  return 0;
}

int rill__ipc_proc_start(pid_t pid, uint64_t *start) {
  if (pid <= 0)
    return RILL_ENOENT;
  char path[32], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT || errno == ESRCH ? RILL_ENOENT : -errno;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int e = errno;
  close(fd);
  if (n < 0)
    return e == ESRCH ? RILL_ENOENT : -e;
  buf[n] = '\0';
  /* comm (field 2) may hold spaces and parentheses: fields resume after
   * the last ')'. */
  char *s = strrchr(buf, ')');
  if (!s || s[1] != ' ')
    return RILL_EPROTO;
  s += 2;
  char state = *s;
  if (state == 'Z' || state == 'X' || state == 'x')
    return RILL_ENOENT; /* dead, waiting to be reaped by its parent */
  for (int field = 3; field < 22; field++) {
    s = strchr(s, ' ');
    if (!s)
      return RILL_EPROTO;
    s++;
  }
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s)
    return RILL_EPROTO;
  *start = v;
  return 0;
}

bool rill__ipc_holder_alive(uint64_t st, uint64_t start) {
  uint64_t now;
  int rc = rill__ipc_proc_start((pid_t)RILL__IPC_ST_PID(st), &now);
  if (rc == RILL_ENOENT)
    return false;
  if (rc < 0)
    return true; /* /proc cannot tell: never free a place that may be in use */
  if (RILL__IPC_ST_PHASE(st) == RILL__IPC_TAKEN)
    return now == start; /* another start time: the pid was reused */
  return true;
}

void rill__ipc_summary(const void *mem, const struct rill__ipc_geom *g, rill_ipc_info_t *info) {
  const uint8_t *base = mem;
  const struct rill__ipc_hdr *h = mem;
  const struct rill__ipc_place *pl = (const void *)(base + g->table_off);
  info->slots = g->slots;
  info->slot_size = g->slot_size;
  info->max_receivers = g->max_receivers;
  info->policy = (rill_ipc_policy_t)g->policy;
  /* Acquire: pairs with the sender's release of head; only a snapshot. */
  info->head = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
  /* Acquire on each state word: pairs with the holder's release store of
   * TAKEN, so its start time and cursor are the ones it wrote. */
  uint64_t st = __atomic_load_n(&pl[0].state, __ATOMIC_ACQUIRE);
  info->sender = 0;
  info->sender_alive = false;
  if (RILL__IPC_ST_PHASE(st) != RILL__IPC_FREE) {
    info->sender = (pid_t)RILL__IPC_ST_PID(st);
    info->sender_alive =
        rill__ipc_holder_alive(st, __atomic_load_n(&pl[0].start, __ATOMIC_RELAXED));
  }
  info->receivers = info->dead = 0;
  uint64_t slowest = info->head;
  for (uint32_t i = 1; i <= g->max_receivers; i++) {
    st = __atomic_load_n(&pl[i].state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_FREE)
      continue;
    info->receivers++;
    if (!rill__ipc_holder_alive(st, __atomic_load_n(&pl[i].start, __ATOMIC_RELAXED))) {
      info->dead++;
      continue;
    }
    /* Relaxed: a snapshot for display, nothing is read through it. */
    uint64_t c = __atomic_load_n(&pl[i].cursor, __ATOMIC_RELAXED);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_TAKEN && c < slowest)
      slowest = c;
  }
  info->slowest = slowest;
}
