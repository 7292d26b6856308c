#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rill/mem.h"

/* Process-wide totals are relaxed atomics: they are read as a snapshot and
 * order nothing. Per-thread totals are plain: only their thread writes. */
static struct { uint64_t allocs, frees, reallocs, bytes, maps, unmaps, bytes_mapped; } g;
static __thread rill_mem_counters_t t;
static bool used;

static void *aligned_default(size_t align, size_t size) {
  void *p = NULL;
  return posix_memalign(&p, align, size) == 0 ? p : NULL;
}

static rill_allocator_t A = {malloc, realloc, aligned_default, free};

#define BUMP(field, v)                                                                             \
  do {                                                                                             \
    __atomic_fetch_add(&g.field, (v), __ATOMIC_RELAXED);                                           \
    t.field += (v);                                                                                \
  } while (0)

int rill_mem_set_allocator(const rill_allocator_t *a) {
  if (!a || !a->malloc_fn || !a->realloc_fn || !a->aligned_fn || !a->free_fn)
    return rill__err(RILL_EINVAL, "mem: allocator needs all four functions");
  if (__atomic_load_n(&used, __ATOMIC_SEQ_CST))
    return rill__err(RILL_EBUSY, "mem: rill has allocated already; set the allocator first");
  A = *a;
  return 0;
}

static void *counted(void *p, size_t size) {
  if (p) {
    BUMP(allocs, 1);
    BUMP(bytes, size);
  }
  return p;
}

void *rill__malloc(size_t size) {
  __atomic_store_n(&used, true, __ATOMIC_RELAXED);
  return counted(A.malloc_fn(size ? size : 1), size);
}

void *rill__calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total))
    return NULL;
  void *p = rill__malloc(total);
  if (p)
    memset(p, 0, total);
  return p;
}

void *rill__aligned(size_t align, size_t size) {
  __atomic_store_n(&used, true, __ATOMIC_RELAXED);
  if (align < sizeof(void *))
    align = sizeof(void *);
  return counted(A.aligned_fn(align, size ? size : 1), size);
}

void *rill__realloc(void *p, size_t size) {
  if (!p)
    return rill__malloc(size);
  void *q = A.realloc_fn(p, size ? size : 1);
  if (q) {
    BUMP(reallocs, 1);
    BUMP(bytes, size);
  }
  return q;
}

void rill__free(void *p) {
  if (!p)
    return;
  BUMP(frees, 1);
  A.free_fn(p);
}

void rill__count_map(size_t bytes) {
  BUMP(maps, 1);
  BUMP(bytes_mapped, bytes);
}

void rill__count_unmap(size_t bytes) {
  (void)bytes;
  BUMP(unmaps, 1);
}

void rill_mem_counters(rill_mem_counters_t *out) {
  out->allocs = __atomic_load_n(&g.allocs, __ATOMIC_RELAXED);
  out->frees = __atomic_load_n(&g.frees, __ATOMIC_RELAXED);
  out->reallocs = __atomic_load_n(&g.reallocs, __ATOMIC_RELAXED);
  out->bytes = __atomic_load_n(&g.bytes, __ATOMIC_RELAXED);
  out->maps = __atomic_load_n(&g.maps, __ATOMIC_RELAXED);
  out->unmaps = __atomic_load_n(&g.unmaps, __ATOMIC_RELAXED);
  out->bytes_mapped = __atomic_load_n(&g.bytes_mapped, __ATOMIC_RELAXED);
}

void rill_mem_counters_thread(rill_mem_counters_t *out) { *out = t; }

uint64_t rill_mem_allocs_thread(void) { return t.allocs + t.reallocs + t.maps; }
