/*
 * The route and channel segments: their layouts and attach-time checks,
 * their making, attaching, describing, listing and removal, the places
 * both kinds' participants hold, and the liveness test behind reaping.
 * See docs/FORMATS.md ("IPC route segment", "IPC channel segment").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "ipc/segment.h"

_Static_assert(sizeof(struct rill__ipc_hdr) == 384, "header lines");
_Static_assert(offsetof(struct rill__ipc_hdr, max_message) == 40, "pool geometry");
_Static_assert(offsetof(struct rill__ipc_hdr, head) == 64, "head on its own line");
_Static_assert(offsetof(struct rill__ipc_hdr, send_need) == 208, "the parked sender's need");
_Static_assert(offsetof(struct rill__ipc_hdr, pool) == 256, "the class table");
_Static_assert(offsetof(struct rill__ipc_hdr, pool_next) == 320, "the sender's pool counters");
_Static_assert(sizeof(struct rill__ipc_chunk) == RILL__IPC_CHUNK_HDR, "chunk header");
_Static_assert(offsetof(struct rill__ipc_hdr, recv_futex) == 128, "receivers' futex line");
_Static_assert(offsetof(struct rill__ipc_hdr, send_futex) == 192, "sender's futex line");
_Static_assert(sizeof(struct rill__ipc_place) == RILL__IPC_PLACE_BYTES, "a place is a line");
_Static_assert(offsetof(struct rill__ipc_hdr, gone) == 72, "the receivers' leave count");
_Static_assert(offsetof(struct rill__ipc_place, ready) == 28, "a receiver's ready word");
_Static_assert(sizeof(struct rill__ipc_slot) == RILL_IPC_SLOT_HDR, "slot header");

/* ---- what the two kinds' checks share ------------------------------------------ */

/* The first checks of either kind: a header, the kind's magic (tag: its
 * letters) and version, and a whole header page. */
static int check_head(const char *kind, const char *name, const uint8_t *p, size_t size,
                      uint32_t magic, const char *tag, uint16_t version) {
  if (size < 8)
    return rill__err(RILL_ECORRUPT, "ipc %s %s: a segment of %zu bytes has no header", kind, name,
                     size);
  uint32_t m = rill__get32(p);
  if (m != magic)
    return rill__err(RILL_EVERSION, "ipc %s %s: magic 0x%08x, not 0x%08x (\"%s\")", kind, name, m,
                     magic, tag);
  uint16_t v = rill__get16(p + 4);
  if (v != version)
    return rill__err(RILL_EVERSION, "ipc %s %s: version %u, this build knows %u", kind, name,
                     (unsigned)v, (unsigned)version);
  if (size < RILL__IPC_HDR_BYTES)
    return rill__err(RILL_ECORRUPT,
                     "ipc %s %s: a segment of %zu bytes, shorter than its %u-byte header", kind,
                     name, size, RILL__IPC_HDR_BYTES);
  return 0;
}

int rill__ipc_ring_check(int code, const char *kind, const char *name, uint32_t slots,
                         uint32_t slot_size) {
  if (!RILL__IS_POW2(slots) || slots < RILL__IPC_MIN_SLOTS || slots > RILL__IPC_MAX_SLOTS)
    return rill__err(code, "ipc %s %s: %u slots, not a power of two in 2..2^24", kind, name, slots);
  if (slot_size % 64 || slot_size < RILL__IPC_MIN_SLOT || slot_size > RILL__IPC_MAX_SLOT)
    return rill__err(code, "ipc %s %s: slot size %u, not a multiple of 64 in 64..1 MiB", kind, name,
                     slot_size);
  return 0;
}

int rill__ipc_places_check(int code, const char *kind, const char *name, const char *who,
                           uint32_t n, uint32_t max) {
  if (n < 1 || n > max)
    return rill__err(code, "ipc %s %s: max %s %u, not in 1..%u", kind, name, who, n, max);
  return 0;
}

/* The pool fields of a header: none, or the flag and n classes in the
 * table at tbl that rill__ipc_classes_check accepts (into cls). */
static int check_pool(const char *kind, const char *name, const uint8_t *tbl, uint32_t flags,
                      uint32_t max_message, uint32_t n, uint32_t slot_size,
                      struct rill__ipc_class *cls) {
  if (!max_message && !n && !flags)
    return 0;
  if (!(flags & RILL__IPC_F_POOL))
    return rill__err(RILL_ECORRUPT,
                     "ipc %s %s: max message %u and %u pool classes without the pool flag", kind,
                     name, max_message, n);
  return rill__ipc_classes_check(kind, name, tbl, n, slot_size - RILL_IPC_SLOT_HDR, max_message,
                                 cls);
}

/* The total the header says (said) and the segment's size against the
 * layout's total, the rest of the layout naming the parts in a message. */
static int check_total(const char *kind, const char *name, uint64_t said, size_t size,
                       uint64_t total, uint64_t table, uint32_t slots, uint32_t slot_size,
                       uint32_t chunks, uint32_t n) {
  if (said != total)
    return rill__err(RILL_ECORRUPT,
                     "ipc %s %s: the header says %llu bytes, its layout needs %llu (header %u + "
                     "table %llu + ring %u x %u + pool of %u chunks in %u classes)",
                     kind, name, (unsigned long long)said, (unsigned long long)total,
                     RILL__IPC_HDR_BYTES, (unsigned long long)table, slots, slot_size, chunks, n);
  if ((uint64_t)size != total)
    return rill__err(RILL_ECORRUPT,
                     "ipc %s %s: the segment is %zu bytes, its layout needs %llu (header %u + "
                     "table %llu + ring %u x %u + pool of %u chunks in %u classes)",
                     kind, name, size, (unsigned long long)total, RILL__IPC_HDR_BYTES,
                     (unsigned long long)table, slots, slot_size, chunks, n);
  return 0;
}

/* The header page, a table of nplaces places from the next page, the ring
 * of slots x slot_size from the page after, then the pool. */
static void layout(uint32_t nplaces, uint32_t slots, uint32_t slot_size, uint64_t *table_off,
                   uint64_t *ring_off, uint64_t *total) {
  uint64_t table = (uint64_t)nplaces * RILL__IPC_PLACE_BYTES;
  *table_off = RILL__IPC_HDR_BYTES;
  *ring_off = *table_off + RILL__ALIGN_UP(table, (uint64_t)RILL__IPC_PAGE);
  *total = *ring_off + (uint64_t)slots * slot_size;
}

void rill__ipc_layout(struct rill__ipc_geom *g) {
  layout(1 + g->max_receivers, g->slots, g->slot_size, &g->table_off, &g->ring_off, &g->total);
  rill__ipc_pool_layout(g->cls, g->nclasses, &g->total, &g->max_message, &g->pool_chunks);
}

int rill__ipc_check(const char *name, const void *mem, size_t size, struct rill__ipc_geom *g) {
  const uint8_t *p = mem;
  if (!name)
    name = "?";
  int rc = check_head("route", name, p, size, RILL_IPC_MAGIC, "RLIP", RILL_IPC_VERSION);
  if (rc)
    return rc;
  struct rill__ipc_geom x = {0};
  x.policy = p[6];
  x.wait = p[7];
  x.slots = rill__get32(p + 8);
  x.slot_size = rill__get32(p + 12);
  x.max_receivers = rill__get32(p + 16);
  uint32_t flags = rill__get32(p + 20);
  uint64_t total = rill__get64(p + 24);
  x.spin_ns = rill__get64(p + 32);
  uint32_t max_message = rill__get32(p + 40);
  x.nclasses = rill__get32(p + 44);
  if (x.policy > RILL_IPC_OVERWRITE)
    return rill__err(RILL_ECORRUPT, "ipc route %s: unknown policy %u", name, (unsigned)x.policy);
  if (x.wait > RILL_IPC_SPIN)
    return rill__err(RILL_ECORRUPT, "ipc route %s: unknown wait mode %u", name, (unsigned)x.wait);
  if (flags & ~RILL__IPC_F_POOL)
    return rill__err(RILL_ECORRUPT, "ipc route %s: unknown flags 0x%x", name, flags);
  if ((rc = rill__ipc_ring_check(RILL_ECORRUPT, "route", name, x.slots, x.slot_size)))
    return rc;
  if ((rc = rill__ipc_places_check(RILL_ECORRUPT, "route", name, "receivers", x.max_receivers,
                                   RILL_IPC_MAX_RECEIVERS)))
    return rc;
  if ((rc = check_pool("route", name, p + 256, flags, max_message, x.nclasses, x.slot_size, x.cls)))
    return rc;
  rill__ipc_layout(&x);
  if ((rc = check_total("route", name, total, size, x.total, x.ring_off - x.table_off, x.slots,
                        x.slot_size, x.pool_chunks, x.nclasses)))
    return rc;
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

void rill__ipc_summary(const void *mem, const struct rill__ipc_geom *g,
                       rill_ipc_route_info_t *info) {
  const uint8_t *base = mem;
  const struct rill__ipc_hdr *h = mem;
  const struct rill__ipc_place *pl = (const void *)(base + g->table_off);
  info->slots = g->slots;
  info->slot_size = g->slot_size;
  info->max_receivers = g->max_receivers;
  info->policy = (rill_ipc_policy_t)g->policy;
  info->max_message = g->max_message;
  info->pool_chunks = g->pool_chunks;
  info->pool_classes = g->nclasses;
  for (uint32_t c = 0; c < g->nclasses; c++)
    info->pool[c] = (rill_ipc_class_t){g->cls[c].size, g->cls[c].chunks};
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
  info->receivers = info->receivers_dead = 0;
  uint64_t slowest = info->head;
  for (uint32_t i = 1; i <= g->max_receivers; i++) {
    st = __atomic_load_n(&pl[i].state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_FREE)
      continue;
    info->receivers++;
    if (!rill__ipc_holder_alive(st, __atomic_load_n(&pl[i].start, __ATOMIC_RELAXED))) {
      info->receivers_dead++;
      continue;
    }
    /* Relaxed: a snapshot for display, nothing is read through it. */
    uint64_t c = __atomic_load_n(&pl[i].cursor, __ATOMIC_RELAXED);
    if (RILL__IPC_ST_PHASE(st) == RILL__IPC_TAKEN && c < slowest)
      slowest = c;
  }
  info->slowest = slowest;
}

/* ---- shared by the route and the channel -------------------------------------- */

#define SHM_PATIENCE 200000000ull /* ns a header may take to appear */

int rill__ipc_name_check(const char *kind, const char *name) {
  if (!name)
    return rill__err(RILL_EINVAL, "ipc: the %s name is NULL", kind);
  size_t n = strnlen(name, RILL_IPC_MAX_NAME + 1);
  if (!rill__name_ok(name, n, RILL_IPC_MAX_NAME))
    return rill__err(RILL_EINVAL,
                     "ipc: %s name \"%.*s\" is not 1..%u bytes of [A-Za-z0-9._-] not starting "
                     "with '.'",
                     kind, (int)(n > 64 ? 64 : n), name, RILL_IPC_MAX_NAME);
  return 0;
}

static void shm_name(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "/rill.%s", name);
}

/* Marks the segment at path removed (its gone word) and wakes its
 * waiters, when it is a valid segment of the kind being removed (route or
 * not: a channel). A valid segment of the other kind is left alone: 1.
 * Best effort: a segment we may not write, or that does not validate, is
 * only unlinked (nothing in it is trusted, so nothing is written to it). */
static int mark_removed(const char *path, const char *name, bool route) {
  int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  struct stat sb;
  void *p = MAP_FAILED;
  size_t n = 0;
  if (fstat(fd, &sb) == 0 && sb.st_size >= (off_t)RILL__IPC_HDR_BYTES) {
    n = (size_t)sb.st_size;
    p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  close(fd);
  if (p == MAP_FAILED)
    return 0;
  rill__count_map(n);
  uint32_t *word = NULL, *futexes[2] = {NULL, NULL};
  int other = 0;
  if (rill__ipc_check(name, p, n, NULL) == 0) {
    struct rill__ipc_hdr *h = p;
    word = &h->gone;
    futexes[0] = &h->recv_futex;
    futexes[1] = &h->send_futex;
    other = !route;
  } else if (rill__chan_check(name, p, n, NULL) == 0) {
    struct rill__chan_hdr *h = p;
    word = &h->gone;
    futexes[0] = &h->recv_futex;
    futexes[1] = &h->send_futex;
    other = route;
  }
  if (word && !other) {
    /* Release: then each bump (a release RMW of the futex word) orders it
     * before a waiter's acquire load of that word: a waiter that parks on
     * an older word value returns at once and sees the mark. */
    __atomic_fetch_or(word, RILL__IPC_REMOVED, __ATOMIC_RELEASE);
    rill__futex_bump_shared(futexes[0]);
    rill__futex_bump_shared(futexes[1]);
  }
  rill_errmsg_clear(); /* a failed check here is no failure of the removal */
  rill__ipc_shm_unmap(p, n);
  return other;
}

int rill__ipc_shm_unlink(const char *kind, const char *name) {
  int rc = rill__ipc_name_check(kind, name);
  if (rc)
    return rc;
  char path[RILL_IPC_MAX_NAME + 16];
  shm_name(path, sizeof path, name);
  /* A route's unlink never removes a valid channel, nor the reverse. A
   * segment that is neither (foreign, damaged, or half made by a creator
   * that died) is removed by either, as `rill ipc rm` needs. */
  bool route = !strcmp(kind, "route");
  if (mark_removed(path, name, route))
    return rill__err(RILL_EINVAL, "ipc %s %s: the segment is a %s; rill_ipc_%s_unlink removes it",
                     kind, name, route ? "channel" : "route", route ? "chan" : "route");
  if (shm_unlink(path) < 0) {
    if (errno == ENOENT)
      return rill__err(RILL_ENOENT, "ipc %s %s: no such %s", kind, name, kind);
    return rill__err_errno("ipc %s %s: shm_unlink", kind, name);
  }
  return 0;
}

int rill__ipc_scan(const char *what, int (*each)(void *ctx, const char *name), void *ctx) {
  DIR *d = opendir("/dev/shm");
  if (!d)
    return rill__err_errno("%s: opendir /dev/shm", what);
  int rc = 0;
  struct dirent *e;
  while (!rc && (e = readdir(d))) {
    const char *name = e->d_name + 5;
    if (!strncmp(e->d_name, "rill.", 5) && rill__name_ok(name, strlen(name), RILL_IPC_MAX_NAME))
      rc = each(ctx, name);
  }
  closedir(d);
  if (rc == 0)
    rill_errmsg_clear(); /* the segments each skipped are no failure of the call */
  return rc;
}

int rill__ipc_info(const char *kind, const char *name, void *info) {
  int rc = rill__ipc_name_check(kind, name);
  if (rc)
    return rc;
  uint8_t *base;
  size_t size;
  rc = rill__ipc_shm_attach(kind, name, false, false, &base, &size);
  if (rc)
    return rc;
  if (!strcmp(kind, "route")) {
    rill_ipc_route_info_t *ri = info;
    struct rill__ipc_geom g;
    rc = rill__ipc_check(name, base, size, &g);
    if (rc == 0) {
      memset(ri, 0, sizeof *ri);
      snprintf(ri->name, sizeof ri->name, "%s", name);
      rill__ipc_summary(base, &g, ri);
    }
  } else {
    rill_ipc_chan_info_t *ci = info;
    struct rill__chan_geom g;
    rc = rill__chan_check(name, base, size, &g);
    if (rc == 0) {
      memset(ci, 0, sizeof *ci);
      snprintf(ci->name, sizeof ci->name, "%s", name);
      rill__chan_summary(base, &g, ci);
    }
  }
  rill__ipc_shm_unmap(base, size);
  return rc;
}

struct lister {
  const char *kind;
  void *info;
  int (*each)(void *ctx);
  void *ctx;
};

static int list_one(void *arg, const char *name) {
  struct lister *l = arg;
  /* Not of this kind (the other kind, a foreign segment), or gone
   * meanwhile: skipped. */
  return rill__ipc_info(l->kind, name, l->info) ? 0 : l->each(l->ctx);
}

int rill__ipc_list(const char *kind, const char *what, void *info, int (*each)(void *ctx),
                   void *ctx) {
  return rill__ipc_scan(what, list_one, &(struct lister){kind, info, each, ctx});
}

void rill__ipc_shm_unmap(uint8_t *base, size_t size) {
  if (base) {
    munmap(base, size);
    rill__count_unmap(size);
  }
}

static int shm_map(const char *kind, const char *name, int fd, size_t size, bool writable,
                   uint8_t **base) {
  void *p = mmap(NULL, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return rill__err_errno("ipc %s %s: mmap of %zu bytes", kind, name, size);
  rill__count_map(size);
  *base = p;
  return 0;
}

int rill__ipc_shm_create(const char *kind, const char *name, uint64_t total, mode_t mode,
                         uint8_t **base) {
  char path[RILL_IPC_MAX_NAME + 16];
  shm_name(path, sizeof path, name);
  int fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST)
      return RILL_EEXIST;
    return rill__err_errno("ipc %s %s: shm_open(O_CREAT)", kind, name);
  }
  int rc;
  /* The umask must not narrow what the creator asked for. */
  if (fchmod(fd, mode) < 0) {
    rc = rill__err_errno("ipc %s %s: fchmod %o", kind, name, (unsigned)mode);
    goto unlink;
  }
  if (ftruncate(fd, (off_t)total) < 0) {
    rc = rill__err_errno("ipc %s %s: ftruncate to %llu bytes", kind, name,
                         (unsigned long long)total);
    goto unlink;
  }
  rc = shm_map(kind, name, fd, (size_t)total, true, base);
  if (rc)
    goto unlink;
  close(fd);
  return 0;
unlink:
  shm_unlink(path);
  close(fd);
  return rc;
}

int rill__ipc_shm_attach(const char *kind, const char *name, bool writable, bool patient,
                         uint8_t **base, size_t *size) {
  char path[RILL_IPC_MAX_NAME + 16];
  shm_name(path, sizeof path, name);
  int fd = shm_open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
  if (fd < 0) {
    if (errno == ENOENT)
      return rill__err(RILL_ENOENT, "ipc %s %s: no such %s (/dev/shm%s)", kind, name, kind, path);
    return rill__err_errno("ipc %s %s: shm_open", kind, name);
  }
  int rc;
  uint64_t t0 = rill_time_mono_ns();
  for (;;) {
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
      rc = rill__err_errno("ipc %s %s: fstat", kind, name);
      goto close_fd;
    }
    size_t n = (size_t)sb.st_size;
    if (n >= sizeof(uint32_t)) {
      uint8_t *p = NULL;
      rc = shm_map(kind, name, fd, n, writable, &p);
      if (rc)
        goto close_fd;
      /* Acquire: pairs with the creator's release store of the magic, its
       * last, so the whole header it wrote is visible once we see it. */
      if (__atomic_load_n((uint32_t *)(void *)p, __ATOMIC_ACQUIRE) != 0) {
        *base = p;
        *size = n;
        close(fd);
        return 0;
      }
      rill__ipc_shm_unmap(p, n);
    }
    if (!patient || rill_time_mono_ns() - t0 > SHM_PATIENCE) {
      rc = rill__err(RILL_ECORRUPT,
                     "ipc %s %s: a segment of %zu bytes with no header (its creator died making "
                     "it?); `rill ipc rm %s` removes it",
                     kind, name, n, name);
      goto close_fd;
    }
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
close_fd:
  close(fd);
  return rc;
}

/* ---- making and attaching, either kind ------------------------------------------ */

static bool is_route(const char *kind) { return !strcmp(kind, "route"); }

/* ftruncate gave zeros: counters, places and marks all start at 0. */
static void route_write(uint8_t *base, const struct rill__ipc_geom *g) {
  struct rill__ipc_hdr *h = (struct rill__ipc_hdr *)(void *)base;
  h->version = RILL_IPC_VERSION;
  h->policy = g->policy;
  h->wait = g->wait;
  h->slots = g->slots;
  h->slot_size = g->slot_size;
  h->max_receivers = g->max_receivers;
  h->flags = g->nclasses ? RILL__IPC_F_POOL : 0;
  h->total = g->total;
  h->spin_ns = g->spin_ns;
  h->max_message = g->max_message;
  h->pool_classes = g->nclasses;
  for (uint32_t c = 0; c < g->nclasses; c++) {
    h->pool[c].size = g->cls[c].size;
    h->pool[c].chunks = g->cls[c].chunks;
  }
  /* Release: pairs with the attacher's acquire load of the magic; the
   * header above is complete before anyone trusts it. */
  __atomic_store_n(&h->magic, RILL_IPC_MAGIC, __ATOMIC_RELEASE);
}

/* As route_write; a free queue receiver place shows NONE. */
static void chan_write(uint8_t *base, const struct rill__chan_geom *g) {
  struct rill__chan_hdr *h = (struct rill__chan_hdr *)(void *)base;
  struct rill__ipc_place *rx = (struct rill__ipc_place *)(void *)(base + g->table_off);
  h->version = RILL_IPC_CHAN_VERSION;
  h->policy = g->policy;
  h->wait = g->wait;
  h->slots = g->slots;
  h->slot_size = g->slot_size;
  h->max_senders = g->max_senders;
  h->max_receivers = g->max_receivers;
  h->total = g->total;
  h->spin_ns = g->spin_ns;
  h->delivery = g->delivery;
  h->flags = g->nclasses ? RILL__IPC_F_POOL : 0;
  h->max_message = g->max_message;
  h->pool_classes = g->nclasses;
  for (uint32_t c = 0; c < g->nclasses; c++) {
    h->pool[c].size = g->cls[c].size;
    h->pool[c].chunks = g->cls[c].chunks;
  }
  for (uint32_t i = 0; i < g->max_receivers; i++)
    rx[g->max_senders + i].cursor = RILL__CHAN_NONE;
  /* Release: as route_write's. */
  __atomic_store_n(&h->magic, RILL_IPC_CHAN_MAGIC, __ATOMIC_RELEASE);
}

int rill__ipc_seg_attach(const char *kind, const char *name, void *g, uint8_t **base,
                         size_t *size) {
  int rc = rill__ipc_shm_attach(kind, name, true, true, base, size);
  if (rc)
    return rc;
  const uint32_t *gone;
  if (is_route(kind)) {
    rc = rill__ipc_check(name, *base, *size, g);
    gone = &((const struct rill__ipc_hdr *)(void *)*base)->gone;
  } else {
    rc = rill__chan_check(name, *base, *size, g);
    gone = &((const struct rill__chan_hdr *)(void *)*base)->gone;
  }
  /* Acquire: pairs with the remover's release; a segment being removed is
   * as good as gone (its name is about to be unlinked). */
  if (rc == 0 && (__atomic_load_n(gone, __ATOMIC_ACQUIRE) & RILL__IPC_REMOVED))
    rc = rill__err(RILL_ENOENT, "ipc %s %s: being removed", kind, name);
  if (rc) {
    rill__ipc_shm_unmap(*base, *size);
    *base = NULL;
  }
  return rc;
}

int rill__ipc_seg_open(const char *kind, const char *name, const void *want, mode_t mode, void *g,
                       uint8_t **base, size_t *size) {
  const bool route = is_route(kind);
  const uint64_t total = route ? ((const struct rill__ipc_geom *)want)->total
                               : ((const struct rill__chan_geom *)want)->total;
  /* Create, or attach to what a racing creator made; a segment unlinked
   * between the two gets a few more tries. */
  for (int tries = 0;; tries++) {
    int rc = rill__ipc_shm_create(kind, name, total, mode, base);
    if (rc == 0) {
      *size = (size_t)total;
      if (route) {
        *(struct rill__ipc_geom *)g = *(const struct rill__ipc_geom *)want;
        route_write(*base, g);
      } else {
        *(struct rill__chan_geom *)g = *(const struct rill__chan_geom *)want;
        chan_write(*base, g);
      }
      return 0;
    }
    if (rc != RILL_EEXIST)
      return rc;
    rc = rill__ipc_seg_attach(kind, name, g, base, size);
    if (rc != RILL_ENOENT || tries == 8)
      return rc;
    /* Removed meanwhile, or being removed: its remover unlinks it soon. */
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

void rill__ipc_count_leave(uint32_t *gone) {
  /* Release: pairs with the senders' acquire of the word; the leaver's
   * place is free before they see the new count. */
  uint32_t g = __atomic_load_n(gone, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(gone, &g,
                                      (g & RILL__IPC_REMOVED) | ((g + 1) & ~RILL__IPC_REMOVED),
                                      false, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
    ;
}

uint64_t rill__ipc_self_start(void) {
  uint64_t st = 0;
  (void)rill__ipc_proc_start(getpid(), &st); /* our own /proc entry: always there */
  return st;
}

/* A CAS from exactly st, so a place freed and taken again meanwhile is left
 * alone. The CAS claims the place for us first, so that we alone take the
 * dead holder out of the waiter count if it died parked (else every
 * publish would make a wake syscall for nobody). */
bool rill__ipc_reap_if_dead(struct rill__ipc_place *p, uint64_t st, uint32_t *waiters) {
  if (RILL__IPC_ST_PHASE(st) == RILL__IPC_FREE)
    return true;
  /* Relaxed: the caller loaded st with acquire, which orders this load
   * after the holder's store of its start time. */
  if (rill__ipc_holder_alive(st, __atomic_load_n(&p->start, __ATOMIC_RELAXED)))
    return false;
  uint32_t gen = RILL__IPC_ST_GEN(st) + 1;
  uint64_t ours = RILL__IPC_ST(RILL__IPC_CLAIMING, gen, (uint32_t)getpid());
  /* Acquire: pairs with the dead holder's last stores (its parked flag). */
  if (!__atomic_compare_exchange_n(&p->state, &st, ours, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    return true; /* someone else reaped or took it; look again */
  if (__atomic_exchange_n(&p->parked, 0, __ATOMIC_RELAXED))
    __atomic_fetch_sub(waiters, 1, __ATOMIC_RELAXED);
  /* Release: pairs with a claimer's acquire load of the state; the parked
   * flag is clear before the place is free. */
  __atomic_store_n(&p->state, RILL__IPC_ST(RILL__IPC_FREE, gen, 0), __ATOMIC_RELEASE);
  return true;
}

bool rill__ipc_claim_from(struct rill__ipc_place *p, uint64_t st, uint64_t *mine) {
  uint64_t want = RILL__IPC_ST(RILL__IPC_CLAIMING, RILL__IPC_ST_GEN(st) + 1, (uint32_t)getpid());
  /* seq_cst: the take is ordered with the join fences (channel_open.c, route.c). */
  if (!__atomic_compare_exchange_n(&p->state, &st, want, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
    return false;
  *mine = want;
  return true;
}

bool rill__ipc_claim_place_with(struct rill__ipc_place *p,
                                bool (*reap)(void *ctx, struct rill__ipc_place *p, uint64_t st),
                                void *ctx, uint64_t *mine) {
  /* Acquire: pairs with the holder's release store of TAKEN, or a
   * leaver's or reaper's of FREE (a queue place's NONE stored before). */
  uint64_t st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
  if (RILL__IPC_ST_PHASE(st) != RILL__IPC_FREE) {
    if (!reap(ctx, p, st))
      return false;
    st = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE);
    if (RILL__IPC_ST_PHASE(st) != RILL__IPC_FREE)
      return false;
  }
  return rill__ipc_claim_from(p, st, mine);
}

static bool reap_waiter(void *waiters, struct rill__ipc_place *p, uint64_t st) {
  return rill__ipc_reap_if_dead(p, st, waiters);
}

bool rill__ipc_claim_place(struct rill__ipc_place *p, uint32_t *waiters, uint64_t *mine) {
  return rill__ipc_claim_place_with(p, reap_waiter, waiters, mine);
}

uint64_t rill__ipc_take_place(struct rill__ipc_place *p, uint64_t claiming) {
  uint64_t taken =
      RILL__IPC_ST(RILL__IPC_TAKEN, RILL__IPC_ST_GEN(claiming), RILL__IPC_ST_PID(claiming));
  /* Release: pairs with the acquire loads of the state by scans, reapers
   * and info: start and cursor are visible with TAKEN. */
  __atomic_store_n(&p->state, taken, __ATOMIC_RELEASE);
  return taken;
}

void rill__ipc_leave_place(struct rill__ipc_place *p, uint64_t mine) {
  uint64_t freed = RILL__IPC_ST(RILL__IPC_FREE, RILL__IPC_ST_GEN(mine), 0);
  /* Release: pairs with the acquire loads of the state by scans; what we
   * did in the ring is done before we stop counting. */
  __atomic_compare_exchange_n(&p->state, &mine, freed, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

/* ---- the channel segment ------------------------------------------------------ */

_Static_assert(sizeof(struct rill__chan_hdr) == 448, "channel header lines");
_Static_assert(offsetof(struct rill__chan_hdr, max_message) == 48, "channel pool geometry");
_Static_assert(offsetof(struct rill__chan_hdr, pool) == 384, "channel class table");
_Static_assert(offsetof(struct rill__chan_hdr, claim) == 64, "claim on its own line");
_Static_assert(offsetof(struct rill__chan_hdr, consumed) == 128, "consumed on its own line");
_Static_assert(offsetof(struct rill__chan_hdr, recv_futex) == 192, "receivers' futex line");
_Static_assert(offsetof(struct rill__chan_hdr, send_futex) == 256, "senders' futex line");
_Static_assert(offsetof(struct rill__chan_hdr, aborted) == 320, "aborted count line");
_Static_assert(offsetof(struct rill__chan_hdr, redelivered) == 328, "redelivered count");
_Static_assert(offsetof(struct rill__chan_hdr, orphans) == 336, "orphan count");
_Static_assert(offsetof(struct rill__chan_hdr, gone) == 72, "the channel's gone word");

void rill__chan_layout(struct rill__chan_geom *g) {
  layout(g->max_senders + g->max_receivers, g->slots, g->slot_size, &g->table_off, &g->ring_off,
         &g->total);
  rill__ipc_pool_layout(g->cls, g->nclasses, &g->total, &g->max_message, &g->pool_chunks);
}

int rill__chan_check(const char *name, const void *mem, size_t size, struct rill__chan_geom *g) {
  const uint8_t *p = mem;
  if (!name)
    name = "?";
  int rc = check_head("channel", name, p, size, RILL_IPC_CHAN_MAGIC, "RLIC", RILL_IPC_CHAN_VERSION);
  if (rc)
    return rc;
  struct rill__chan_geom x = {0};
  x.policy = p[6];
  x.wait = p[7];
  x.slots = rill__get32(p + 8);
  x.slot_size = rill__get32(p + 12);
  x.max_senders = rill__get32(p + 16);
  x.max_receivers = rill__get32(p + 20);
  uint64_t total = rill__get64(p + 24);
  x.spin_ns = rill__get64(p + 32);
  x.delivery = p[40];
  uint32_t flags = rill__get32(p + 44);
  if (x.policy > RILL_IPC_FAIL)
    return rill__err(RILL_ECORRUPT, "ipc channel %s: unknown policy %u", name, (unsigned)x.policy);
  if (x.wait > RILL_IPC_SPIN)
    return rill__err(RILL_ECORRUPT, "ipc channel %s: unknown wait mode %u", name, (unsigned)x.wait);
  if (x.delivery > RILL_IPC_QUEUE)
    return rill__err(RILL_ECORRUPT, "ipc channel %s: unknown delivery %u", name,
                     (unsigned)x.delivery);
  if (flags & ~RILL__IPC_F_POOL)
    return rill__err(RILL_ECORRUPT, "ipc channel %s: unknown flags 0x%x", name, flags);
  if ((rc = rill__ipc_ring_check(RILL_ECORRUPT, "channel", name, x.slots, x.slot_size)))
    return rc;
  if ((rc = rill__ipc_places_check(RILL_ECORRUPT, "channel", name, "senders", x.max_senders,
                                   RILL_IPC_MAX_SENDERS)))
    return rc;
  if ((rc = rill__ipc_places_check(RILL_ECORRUPT, "channel", name, "receivers", x.max_receivers,
                                   RILL_IPC_MAX_RECEIVERS)))
    return rc;
  uint32_t max_message = rill__get32(p + 48);
  x.nclasses = rill__get32(p + 52);
  if ((rc = check_pool("channel", name, p + 384, flags, max_message, x.nclasses, x.slot_size,
                       x.cls)))
    return rc;
  rill__chan_layout(&x);
  if ((rc = check_total("channel", name, total, size, x.total, x.ring_off - x.table_off, x.slots,
                        x.slot_size, x.pool_chunks, x.nclasses)))
    return rc;
  if (g)
    *g = x;
  return 0;
}

void rill__chan_summary(const void *mem, const struct rill__chan_geom *g,
                        rill_ipc_chan_info_t *info) {
  const uint8_t *base = mem;
  const struct rill__chan_hdr *h = mem;
  const struct rill__ipc_place *pl = (const void *)(base + g->table_off);
  info->slots = g->slots;
  info->slot_size = g->slot_size;
  info->max_senders = g->max_senders;
  info->max_receivers = g->max_receivers;
  info->delivery = (rill_ipc_delivery_t)g->delivery;
  info->policy = (rill_ipc_policy_t)g->policy;
  info->max_message = g->max_message;
  info->pool_chunks = g->pool_chunks;
  info->pool_classes = g->nclasses;
  for (uint32_t c = 0; c < g->nclasses; c++)
    info->pool[c] = (rill_ipc_class_t){g->cls[c].size, g->cls[c].chunks};
  /* Relaxed, all of them: a snapshot for display, nothing is read
   * through the counters. */
  info->claimed = __atomic_load_n(&h->claim, __ATOMIC_RELAXED);
  info->consumed = __atomic_load_n(&h->consumed, __ATOMIC_RELAXED);
  info->aborted = __atomic_load_n(&h->aborted, __ATOMIC_RELAXED);
  info->redelivered = __atomic_load_n(&h->redelivered, __ATOMIC_RELAXED);
  info->senders = info->senders_dead = info->receivers = info->receivers_dead = 0;
  info->orphaned = 0;
  uint64_t slowest = g->delivery == RILL_IPC_QUEUE ? info->consumed : info->claimed;
  uint32_t n = g->max_senders + g->max_receivers;
  for (uint32_t i = 0; i < n; i++) {
    /* Acquire: pairs with the holder's release store of TAKEN, so its
     * start time is the one it wrote (and with the reaper's of ORPHAN). */
    uint64_t st = __atomic_load_n(&pl[i].state, __ATOMIC_ACQUIRE);
    unsigned phase = RILL__IPC_ST_PHASE(st);
    if (phase == RILL__IPC_FREE)
      continue;
    uint64_t c = __atomic_load_n(&pl[i].cursor, __ATOMIC_RELAXED);
    if (phase == RILL__IPC_ORPHAN && i >= g->max_senders && g->delivery == RILL_IPC_QUEUE) {
      /* Not a participant: a message waiting to be handed out again,
       * holding its slot meanwhile. */
      info->orphaned++;
      if (c < slowest)
        slowest = c;
      continue;
    }
    bool alive = rill__ipc_holder_alive(st, __atomic_load_n(&pl[i].start, __ATOMIC_RELAXED));
    if (i < g->max_senders) {
      info->senders++;
      info->senders_dead += !alive;
      continue;
    }
    info->receivers++;
    info->receivers_dead += !alive;
    if (c != RILL__CHAN_NONE)
      c &= ~RILL__CHAN_TAKING; /* a take in progress */
    if (alive && phase == RILL__IPC_TAKEN && c < slowest)
      slowest = c;
  }
  info->slowest = slowest;
}

int rill__ipc_wait_step(const char *kind, const char *name, uint64_t deadline, uint64_t timeout_ns,
                        uint32_t have, uint32_t want) {
  uint64_t now = rill_time_mono_ns();
  if (now >= deadline) {
    if (!timeout_ns)
      return RILL_EAGAIN;
    return rill__err(RILL_ETIMEDOUT, "ipc %s %s: %u of %u receivers attached after %llu ns", kind,
                     name, have, want, (unsigned long long)timeout_ns);
  }
  uint64_t left = deadline - now < 1000000 ? deadline - now : 1000000;
  struct timespec ts = {0, (long)left};
  nanosleep(&ts, NULL);
  return 0;
}
