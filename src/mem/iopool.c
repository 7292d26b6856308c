/*
 * I/O buffer pool: one mapping cut into equal buffers, and a lock-free
 * stack of the free ones.
 *
 * The free stack is a Treiber stack of buffer indexes. Links live in a side
 * array (next[]) rather than in the buffers, so the pool never writes into
 * a buffer: its bytes are only ever touched by whoever holds it, and under
 * ASan a free buffer can stay poisoned whole. The head is
 * {tag:32, index:32} in one 64-bit word; the tag changes on every push and
 * pop, so a pop that read head A and next[A] cannot succeed after A was
 * popped and pushed back in between (ABA) unless the tag wrapped 2^32
 * times meanwhile.
 */
#include <assert.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"
#include "rill/mem.h"

#define PAGE         ((size_t)4096)
#define HUGE_PAGE    ((size_t)2 << 20)
#define MAX_COUNT    ((uint32_t)1 << 24)
#define DEFAULT_SIZE ((size_t)64 << 10)
#define DEFAULT_CNT  64u
#define KNOWN_FLAGS  (RILL_IOPOOL_HUGE | RILL_IOPOOL_HUGE_REQUIRED | RILL_IOPOOL_LOCKED)
#define NIL          UINT32_MAX
/* Half the 47-bit user address space of x86-64: past it a pool is a
 * mistake, not a request the kernel might grant. */
#define MAX_BYTES ((size_t)1 << 46)

/* Per-buffer state: free buffers are the only ones put accepts back, so a
 * second put of one buffer is caught even when both race. */
enum { ST_FREE = 0, ST_OUT = 1, ST_VIEW = 2 /* out as rill_buf_t views */ };

struct rill_iopool {
  uint8_t *base;
  size_t bytes;
  size_t buf_size;
  uint32_t count;
  bool huge;
  uint32_t *next;            /* free-stack links, by index; atomic */
  uint8_t *state;            /* ST_*, by index; atomic */
  rill__buf_store_t *stores; /* one header per buffer, for get_buf */
  /* Written by every get and put: each on its own line, away from the
   * read-mostly fields above. */
  _Alignas(RILL_CACHELINE) uint64_t head;
  _Alignas(RILL_CACHELINE) uint32_t nfree;
};

static inline uint64_t pack(uint32_t tag, uint32_t idx) { return (uint64_t)tag << 32 | idx; }

static bool pop(rill_iopool_t *p, uint32_t *out) {
  /* Acquire pairs with the release CAS of the push that published the
   * index: the pusher's write of next[i], and its last writes into the
   * buffer, happen before we read them. */
  uint64_t h = __atomic_load_n(&p->head, __ATOMIC_ACQUIRE);
  for (;;) {
    uint32_t i = (uint32_t)h;
    if (i == NIL)
      return false;
    /* May be stale if i was popped meanwhile; the tag then fails the CAS.
     * Atomic because a thread that popped i may be rewriting it. */
    uint32_t nx = __atomic_load_n(&p->next[i], __ATOMIC_RELAXED);
    if (__atomic_compare_exchange_n(&p->head, &h, pack((uint32_t)(h >> 32) + 1, nx), true,
                                    __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) {
      *out = i;
      return true;
    }
  }
}

static void push(rill_iopool_t *p, uint32_t i) {
  uint64_t h = __atomic_load_n(&p->head, __ATOMIC_RELAXED);
  do {
    __atomic_store_n(&p->next[i], (uint32_t)h, __ATOMIC_RELAXED);
    /* Release: next[i] and the caller's use of the buffer happen before
     * any pop that sees i at the head. */
  } while (!__atomic_compare_exchange_n(&p->head, &h, pack((uint32_t)(h >> 32) + 1, i), true,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

static void view_release(void *ctx, void *data, size_t len);

static int map_pool(rill_iopool_t *p, uint32_t flags) {
  const int prot = PROT_READ | PROT_WRITE, anon = MAP_PRIVATE | MAP_ANONYMOUS;
  void *m = MAP_FAILED;
  /* MAP_HUGETLB lengths are whole huge pages; a pool that is not is mapped
   * with normal pages (plain HUGE) or refused earlier (HUGE_REQUIRED). */
  if ((flags & (RILL_IOPOOL_HUGE | RILL_IOPOOL_HUGE_REQUIRED)) && p->bytes % HUGE_PAGE == 0) {
    m = mmap(NULL, p->bytes, prot, anon | MAP_HUGETLB, -1, 0);
    if (m == MAP_FAILED && (flags & RILL_IOPOOL_HUGE_REQUIRED)) {
      int e = errno;
      return rill__err(RILL_ENOMEM, "iopool: no %zu bytes of huge pages (mmap: %s)", p->bytes,
                       strerror(e));
    }
    p->huge = m != MAP_FAILED;
  }
  if (m == MAP_FAILED && (flags & RILL_IOPOOL_HUGE) && p->bytes >= HUGE_PAGE) {
    /* Transparent huge pages need 2 MiB-aligned ranges: map a huge page
     * more than needed and trim to the first aligned address. */
    size_t span = p->bytes + HUGE_PAGE;
    uint8_t *raw = mmap(NULL, span, prot, anon, -1, 0);
    if (raw != MAP_FAILED) {
      uint8_t *al = (uint8_t *)RILL__ALIGN_UP((uintptr_t)raw, HUGE_PAGE);
      if (al > raw)
        munmap(raw, (size_t)(al - raw));
      if (al + p->bytes < raw + span)
        munmap(al + p->bytes, (size_t)(raw + span - (al + p->bytes)));
      m = al;
      /* Advice only: the pool works, on small pages, if THP is off. */
      (void)madvise(m, p->bytes, MADV_HUGEPAGE);
    }
  }
  if (m == MAP_FAILED)
    m = mmap(NULL, p->bytes, prot, anon, -1, 0);
  if (m == MAP_FAILED) {
    int e = errno;
    return rill__err(RILL_ENOMEM, "iopool: cannot map %zu bytes: %s", p->bytes, strerror(e));
  }
  p->base = m;
  rill__count_map(p->bytes);
  return 0;
}

static void unmap_pool(rill_iopool_t *p) {
  /* ASan keeps shadow state for the range past munmap; clear what put
   * poisoned so a later mapping there starts clean. */
  RILL__UNPOISON(p->base, p->bytes);
  munmap(p->base, p->bytes);
  rill__count_unmap(p->bytes);
}

int rill_iopool_create(rill_iopool_t **out, const rill_iopool_opts_t *opts) {
  if (!out)
    return rill__err(RILL_EINVAL, "iopool: NULL out pointer");
  *out = NULL;
  size_t buf_size = opts && opts->buf_size ? opts->buf_size : DEFAULT_SIZE;
  uint32_t count = opts && opts->count ? opts->count : DEFAULT_CNT;
  uint32_t flags = opts ? opts->flags : 0;
  if (flags & ~KNOWN_FLAGS)
    return rill__err(RILL_EINVAL, "iopool: unknown flags 0x%x", flags & ~KNOWN_FLAGS);
  if (count > MAX_COUNT)
    return rill__err(RILL_EINVAL, "iopool: count %u is above %u", count, MAX_COUNT);
  size_t unit = flags & RILL_IOPOOL_HUGE_REQUIRED ? HUGE_PAGE : PAGE;
  if (buf_size % unit)
    return rill__err(RILL_EINVAL, "iopool: buf_size %zu is not a multiple of %zu", buf_size, unit);
  size_t bytes;
  if (__builtin_mul_overflow(buf_size, (size_t)count, &bytes) || bytes > MAX_BYTES)
    return rill__err(RILL_EINVAL, "iopool: %u buffers of %zu bytes do not fit in memory", count,
                     buf_size);

  int rc;
  rill_iopool_t *p = rill__aligned(RILL_CACHELINE, sizeof *p);
  if (!p)
    return rill__err(RILL_ENOMEM, "iopool: cannot allocate the pool");
  memset(p, 0, sizeof *p);
  p->bytes = bytes;
  p->buf_size = buf_size;
  p->count = count;
  p->next = rill__malloc(count * sizeof *p->next);
  p->state = rill__calloc(count, sizeof *p->state);
  p->stores = rill__calloc(count, sizeof *p->stores);
  if (!p->next || !p->state || !p->stores) {
    rc = rill__err(RILL_ENOMEM, "iopool: cannot allocate the tables for %u buffers", count);
    goto free_tables;
  }
  rc = map_pool(p, flags);
  if (rc)
    goto free_tables;
  if ((flags & RILL_IOPOOL_LOCKED) && mlock(p->base, bytes) != 0) {
    int e = errno;
    rc = e == EPERM ? RILL_EPERM : e == ENOMEM || e == EAGAIN ? RILL_ENOMEM : -e;
    rill__err(rc, "iopool: mlock of %zu bytes refused (%s; see RLIMIT_MEMLOCK)", bytes,
              strerror(e));
    goto unmap;
  }

  for (uint32_t i = 0; i < count; i++) {
    p->next[i] = i + 1 < count ? i + 1 : NIL;
    p->stores[i] = (rill__buf_store_t){
        .release = view_release, .ctx = p, .data = p->base + (size_t)i * buf_size, .len = buf_size};
  }
  p->head = pack(0, 0);
  p->nfree = count;
  RILL__POISON(p->base, bytes);
  *out = p;
  return 0;

unmap:
  unmap_pool(p);
free_tables:
  rill__free(p->stores);
  rill__free(p->state);
  rill__free(p->next);
  rill__free(p);
  return rc;
}

int rill_iopool_destroy(rill_iopool_t *p) {
  if (!p)
    return 0;
  uint32_t nfree = __atomic_load_n(&p->nfree, __ATOMIC_ACQUIRE);
  if (nfree != p->count)
    return rill__err(RILL_EBUSY, "iopool: %u of %u buffers are still out", p->count - nfree,
                     p->count);
  unmap_pool(p);
  rill__free(p->stores);
  rill__free(p->state);
  rill__free(p->next);
  rill__free(p);
  return 0;
}

static int take(rill_iopool_t *p, uint8_t st, uint32_t *idx) {
  uint32_t i = 0;
  if (!pop(p, &i))
    return rill__err(RILL_EAGAIN, "iopool: all %u buffers are out", p->count);
  __atomic_store_n(&p->state[i], st, __ATOMIC_RELAXED);
  /* After the pop, so the count never drops below the buffers in the
   * stack (put counts before it pushes). */
  __atomic_fetch_sub(&p->nfree, 1, __ATOMIC_RELAXED);
  RILL__UNPOISON(p->base + (size_t)i * p->buf_size, p->buf_size);
  *idx = i;
  return 0;
}

static void give(rill_iopool_t *p, uint32_t i) {
  RILL__POISON(p->base + (size_t)i * p->buf_size, p->buf_size);
  __atomic_fetch_add(&p->nfree, 1, __ATOMIC_RELAXED);
  push(p, i);
}

int rill_iopool_get(rill_iopool_t *p, void **buf, uint32_t *index) {
  if (!p || !buf)
    return rill__err(RILL_EINVAL, "iopool: NULL pool or buffer pointer");
  uint32_t i = 0;
  int rc = take(p, ST_OUT, &i);
  if (rc)
    return rc;
  *buf = p->base + (size_t)i * p->buf_size;
  if (index)
    *index = i;
  return 0;
}

int rill_iopool_index(const rill_iopool_t *p, const void *buf) {
  if (!p)
    return rill__err(RILL_EINVAL, "iopool: NULL pool");
  uintptr_t off = (uintptr_t)buf - (uintptr_t)p->base;
  if (off >= p->bytes || off % p->buf_size)
    return rill__err(RILL_EFOREIGN, "iopool: %p is not the start of one of the pool's buffers",
                     buf);
  return (int)(off / p->buf_size);
}

int rill_iopool_put(rill_iopool_t *p, void *buf) {
  int i = rill_iopool_index(p, buf);
  if (i < 0)
    return i;
  /* The CAS makes the state the arbiter: of two puts of one buffer, only
   * one finds it out. */
  uint8_t st = ST_OUT;
  if (!__atomic_compare_exchange_n(&p->state[i], &st, ST_FREE, false, __ATOMIC_RELAXED,
                                   __ATOMIC_RELAXED)) {
    if (st == ST_VIEW)
      return rill__err(RILL_EBUSY, "iopool: buffer %d is held by rill_buf views; release them", i);
    return rill__err(RILL_EDOUBLE, "iopool: buffer %d was put but is not out", i);
  }
  give(p, (uint32_t)i);
  return 0;
}

static void view_release(void *ctx, void *data, size_t len) {
  rill_iopool_t *p = ctx;
  (void)len;
  uint32_t i = (uint32_t)(((uint8_t *)data - p->base) / p->buf_size);
  uint8_t st = ST_VIEW;
  /* Only this callback moves a buffer out of ST_VIEW, once per get_buf. */
  bool ok = __atomic_compare_exchange_n(&p->state[i], &st, ST_FREE, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED);
  (void)ok;
  assert(ok);
  give(p, i);
}

int rill_iopool_get_buf(rill_iopool_t *p, rill_buf_t *b) {
  if (!p || !b)
    return rill__err(RILL_EINVAL, "iopool: NULL pool or view");
  *b = RILL_BUF_EMPTY;
  uint32_t i = 0;
  int rc = take(p, ST_VIEW, &i);
  if (rc)
    return rc;
  /* The header's count is 0 whenever its buffer is free: view_release runs
   * after the count reached 0, and only then frees the buffer. */
  rc = rill_buf_wrap_store(b, &p->stores[i], 0, p->buf_size);
  assert(rc == 0);
  return rc;
}

void *rill_iopool_base(const rill_iopool_t *p) { return p ? p->base : NULL; }
size_t rill_iopool_bytes(const rill_iopool_t *p) { return p ? p->bytes : 0; }
size_t rill_iopool_buf_size(const rill_iopool_t *p) { return p ? p->buf_size : 0; }

void rill_iopool_stats(const rill_iopool_t *p, rill_iopool_stats_t *st) {
  memset(st, 0, sizeof *st);
  if (!p)
    return;
  st->buf_size = p->buf_size;
  st->count = p->count;
  st->free = __atomic_load_n(&p->nfree, __ATOMIC_RELAXED);
  st->huge = p->huge;
  st->bytes = p->bytes;
}
