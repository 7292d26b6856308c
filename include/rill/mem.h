/*
 * rill mem: allocation counters, slab pools, bump arenas, refcounted
 * zero-copy buffers and page-aligned I/O buffer pools.
 *
 * Every byte rill allocates goes through one internal allocator that counts,
 * so a test can say "this path made 0 allocations for 1,000,000 messages"
 * with rill_mem_counters_thread() before and after.
 */
#ifndef RILL_MEM_H
#define RILL_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- allocation counters ---------------------------------------------- */

typedef struct rill_mem_counters {
  uint64_t allocs;       /* malloc, calloc, aligned and realloc-from-NULL calls */
  uint64_t frees;        /* free calls on non-NULL pointers */
  uint64_t reallocs;     /* realloc calls that resized an existing block */
  uint64_t bytes;        /* bytes requested by allocs and reallocs */
  uint64_t maps;         /* mmap'd or newly committed regions */
  uint64_t unmaps;       /* regions given back */
  uint64_t bytes_mapped; /* bytes mapped or committed */
} rill_mem_counters_t;

/** Process-wide totals since the process started. */
void rill_mem_counters(rill_mem_counters_t *out);

/** The calling thread's totals since it started: what a test compares
 *  before and after a path, unaffected by other threads. */
void rill_mem_counters_thread(rill_mem_counters_t *out);

/** Times the calling thread has taken memory (allocs + reallocs + maps).
 *  The one number most zero-allocation assertions need. */
uint64_t rill_mem_allocs_thread(void);

typedef struct rill_allocator {
  void *(*malloc_fn)(size_t size);
  void *(*realloc_fn)(void *p, size_t size);
  void *(*aligned_fn)(size_t align, size_t size);
  void (*free_fn)(void *p);
} rill_allocator_t;

/** Replaces the allocator under rill's counting layer (glibc's by default).
 *  All four functions are required. Call it before rill allocates anything:
 *  memory is always freed by the allocator that gave it. RILL_EBUSY if rill
 *  has already allocated, RILL_EINVAL if a function is missing. */
int rill_mem_set_allocator(const rill_allocator_t *a);

/* ---- slab: fixed-size object pool -------------------------------------- */

/*
 * A slab hands out objects of one size. Each thread keeps a small cache of
 * free objects per slab, so get and put are a few instructions that touch
 * only that thread's cache line; caches exchange batches with a shared
 * depot under a lock, once per batch. An object may be put by any thread,
 * not only the one that got it. Memory is one reserved range of address
 * space committed chunk by chunk, which is what makes the foreign-pointer
 * check on put a subtraction, a comparison and a multiplication.
 *
 * Objects are never written by the slab while they are free (the caches
 * hold pointers beside them), so a freed object is whole and, under ASan,
 * poisoned: a use after put is reported. Poisoning is librill's business,
 * on whenever the ASan runtime is in the process, however the library and
 * the application were each built: the inline paths below never poison,
 * and librill sends every call to its own functions while ASan is on.
 */
typedef struct rill_slab rill_slab_t;

/* Track each object's state so a double put, or a put of an object that
 * was never handed out, is RILL_EDOUBLE instead of silent corruption.
 * Costs an atomic bit operation per get and put. On by default in debug
 * builds of librill. */
#define RILL_SLAB_CHECKED 0x1u
/* Never check, even in debug builds (for benchmarks of debug builds). */
#define RILL_SLAB_UNCHECKED 0x2u

/* The largest object a slab takes, and the most memory one slab may span:
 * offsets within a slab fit in 32 bits. */
#define RILL_SLAB_MAX_OBJ   ((size_t)1 << 24)
#define RILL_SLAB_MAX_BYTES ((size_t)1 << 32)

typedef struct rill_slab_opts {
  size_t obj_size;    /* required: 1 .. RILL_SLAB_MAX_OBJ */
  size_t align;       /* power of two, 8 .. 4096; 0 means 16 (8 below 16 bytes) */
  size_t chunk_bytes; /* growth step; 0 means 256 KiB or 16 objects, the larger */
  size_t max_objects; /* hard cap: past it get says RILL_ENOMEM; 0 means as
                         many as RILL_SLAB_MAX_BYTES holds */
  uint32_t flags;     /* RILL_SLAB_* */
  const char *name;   /* for stats and error messages; copied */
} rill_slab_opts_t;

typedef struct rill_slab_stats {
  size_t obj_size;    /* as asked */
  size_t stride;      /* bytes per object after alignment */
  size_t capacity;    /* objects in committed chunks */
  size_t max_objects; /* the cap in force */
  size_t in_use;      /* got and not yet put (a snapshot while threads run) */
  size_t cached;      /* free, in threads' caches */
  size_t depot;       /* free, in the shared depot */
  size_t chunks;      /* growth steps taken */
  size_t bytes;       /* bytes committed */
  uint64_t refills;   /* batches a cache took from the depot */
  uint64_t flushes;   /* batches a cache gave back */
} rill_slab_stats_t;

/** Creates a slab. RILL_EINVAL for a bad size, alignment or cap (with
 *  rill_errmsg() saying which); RILL_ENOMEM when address space cannot be
 *  reserved. No object memory is committed until the first get. */
int rill_slab_create(rill_slab_t **out, const rill_slab_opts_t *opts);

/** Frees the slab and all its memory, including objects still out. No
 *  thread may use the slab, or an object from it, during or after. */
void rill_slab_destroy(rill_slab_t *s);

/** Gives the calling thread's cached objects back to the depot, so another
 *  thread can have them (a thread's caches are flushed when it exits). */
void rill_slab_flush(rill_slab_t *s);

/** A snapshot of the slab: geometry, objects cached, in the depot and in
 *  use. Takes the slab's locks: not for a hot path. */
void rill_slab_stats(const rill_slab_t *s, rill_slab_stats_t *st);

/** True when p is the start of an object inside this slab's committed
 *  memory (whether got or free). */
bool rill_slab_owns(const rill_slab_t *s, const void *p);

/* The slow paths behind the inline get and put. */
int rill__slab_get_slow(rill_slab_t *s, void **obj);
int rill__slab_put_slow(rill_slab_t *s, void *obj);

/* Private: what the inline paths read. Layout may change between versions. */
typedef struct rill__slab_tc {
  uint32_t n;   /* free objects held; written by the owner thread only */
  uint32_t cap; /* room for objects after the struct */
} rill__slab_tc_t;

/* The cache's stack of free objects: cap pointers right after the struct,
 * where a flexible array member would put them (C++ has none). */
RILL_INLINE void **rill__slab_tc_obj(rill__slab_tc_t *c) { return (void **)(void *)(c + 1); }

/* Slabs alive at once that get per-thread caches; slab 4096 and beyond
 * work, through the depot lock on every call. */
#define RILL__SLAB_IDS 4096

/* The calling thread's caches, indexed by slab id: RILL__SLAB_IDS entries,
 * none NULL (an unused entry points at an empty cache of capacity 0), so
 * the inline paths need neither a bounds check nor a NULL check. Entry 0
 * stays empty for good: slabs that must always take the slow path use it.
 *
 * The TLS model is the compiler's default, never initial-exec: that would
 * mark librill.so STATIC_TLS, and dlopen() of it (a language binding) fails
 * once the loader's small static TLS reserve is used up. The default costs
 * nothing where it matters: in an executable the compiler accesses it
 * directly (a %fs-relative load), and the linker relaxes librill's own
 * accesses the same way when the static library is linked in; only code in
 * a shared object (librill.so's slow paths, a PIC binding) goes through
 * __tls_get_addr. */
extern __thread rill__slab_tc_t **rill__slab_tls;

struct rill__slab_head {
  uint32_t id;    /* index into rill__slab_tls; 0 (every call takes the
                     slow path) when checked or under ASan */
  uint32_t flags; /* RILL_SLAB_CHECKED */
  uintptr_t base; /* start of the reserved range */
  size_t stride;  /* object size after alignment */
  uint64_t div;   /* ceil(2^64 / stride): a 32-bit off is a multiple of
                   stride iff off * div < div (mod 2^64; Lemire et al.) */
  size_t limit;   /* committed bytes; grows under the depot lock */
};

/** Gets an object: 0 and *obj set, or RILL_ENOMEM when the cap is reached
 *  or memory cannot be committed. The object's bytes are whatever they were
 *  (not zeroed). */
RILL_INLINE int rill_slab_get(rill_slab_t *s, void **obj) {
  const struct rill__slab_head *h = (const struct rill__slab_head *)(const void *)s;
  rill__slab_tc_t *c = __atomic_load_n(&rill__slab_tls[h->id], __ATOMIC_RELAXED);
  uint32_t n = __atomic_load_n(&c->n, __ATOMIC_RELAXED);
  if (RILL_LIKELY(n != 0)) {
    void *p = rill__slab_tc_obj(c)[n - 1];
    /* Relaxed: only this thread writes n; stats read it as a snapshot. */
    __atomic_store_n(&c->n, n - 1, __ATOMIC_RELAXED);
    *obj = p;
    return 0;
  }
  return rill__slab_get_slow(s, obj);
}

/** Puts an object back; any thread may put. RILL_EFOREIGN if p is not an
 *  object of this slab (NULL included); RILL_EDOUBLE, when checking is on,
 *  if it is already free. Bad input never corrupts the slab. */
RILL_INLINE int rill_slab_put(rill_slab_t *s, void *p) {
  const struct rill__slab_head *h = (const struct rill__slab_head *)(const void *)s;
  uintptr_t off = (uintptr_t)p - h->base;
  if (RILL_LIKELY(off < __atomic_load_n(&h->limit, __ATOMIC_RELAXED) &&
                  (uint64_t)(uint32_t)off * h->div < h->div)) {
    rill__slab_tc_t *c = __atomic_load_n(&rill__slab_tls[h->id], __ATOMIC_RELAXED);
    uint32_t n = __atomic_load_n(&c->n, __ATOMIC_RELAXED);
    if (RILL_LIKELY(n < c->cap)) {
      rill__slab_tc_obj(c)[n] = p;
      __atomic_store_n(&c->n, n + 1, __ATOMIC_RELAXED);
      return 0;
    }
  }
  return rill__slab_put_slow(s, p);
}

/* ---- arena: bump allocation -------------------------------------------- */

/*
 * An arena hands out memory by moving a pointer and takes it back all at
 * once (reset) or back to a mark (rewind). Chunks it grew are kept for
 * reuse until rill_arena_fini() or rill_arena_trim(). Not thread-safe:
 * one arena per thread or per request.
 */
struct rill__arena_chunk;

typedef struct rill_arena {
  uint8_t *cur;                    /* next free byte in the current chunk */
  uint8_t *end;                    /* end of the current chunk; NULL under ASan,
                                      so every allocation is librill's */
  struct rill__arena_chunk *chunk; /* current chunk; earlier ones behind it */
  struct rill__arena_chunk *spare; /* chunks kept after reset or rewind */
  size_t chunk_bytes;              /* growth step */
  size_t max_bytes;                /* cap on chunk memory held; 0 = none */
  size_t held;                     /* chunk memory held, in use or spare */
} rill_arena_t;

typedef struct rill_arena_opts {
  size_t chunk_bytes; /* 0 means 64 KiB; larger allocations get a chunk of their own */
  size_t max_bytes;   /* 0 means no cap; past it alloc says RILL_ENOMEM */
} rill_arena_opts_t;

typedef struct rill_arena_mark {
  struct rill__arena_chunk *chunk;
  uint8_t *cur;
} rill_arena_mark_t;

/** An arena's figures, as rill_arena_stats fills them. */
typedef struct rill_arena_stats {
  size_t used;   /* bytes handed out since the last reset, with padding */
  size_t held;   /* chunk memory held */
  size_t chunks; /* chunks held, in use and spare */
} rill_arena_stats_t;

/** Prepares an arena (opts may be NULL). Allocates nothing until the first
 *  alloc. RILL_EINVAL for an absurd chunk size. */
int rill_arena_init(rill_arena_t *a, const rill_arena_opts_t *opts);

/** Frees every chunk. The arena may be initialised again. */
void rill_arena_fini(rill_arena_t *a);

/** Takes everything back; keeps the chunks for reuse. */
void rill_arena_reset(rill_arena_t *a);

/** Frees the spare chunks. */
void rill_arena_trim(rill_arena_t *a);

/** Where the arena stands now, for rill_arena_rewind(). */
RILL_INLINE rill_arena_mark_t rill_arena_mark(const rill_arena_t *a) {
  rill_arena_mark_t m = {a->chunk, a->cur};
  return m;
}

/** Takes back everything allocated since the mark. RILL_EINVAL if the mark
 *  does not belong to this arena's current chain (it came from another
 *  arena, or a reset or an earlier rewind passed it). */
int rill_arena_rewind(rill_arena_t *a, rill_arena_mark_t m);

/** A snapshot of what the arena hands out and holds. */
void rill_arena_stats(const rill_arena_t *a, rill_arena_stats_t *st);

int rill__arena_alloc_slow(rill_arena_t *a, size_t size, size_t align, void **out);

/** Allocates size bytes aligned to align (a power of two up to 4096).
 *  RILL_EINVAL for a bad alignment or a zero size, RILL_ENOMEM past the
 *  cap. The memory is not zeroed. */
RILL_INLINE int rill_arena_alloc_aligned(rill_arena_t *a, size_t size, size_t align, void **out) {
  uintptr_t cur = (uintptr_t)a->cur;
  uintptr_t p = (cur + (align - 1)) & ~(uintptr_t)(align - 1);
  /* The alignment test folds away when align is a constant. */
  if (RILL_LIKELY((align & (align - 1)) == 0 && align <= 4096 && size != 0 && p >= cur &&
                  size <= (uintptr_t)a->end - p && p <= (uintptr_t)a->end)) {
    a->cur = (uint8_t *)(p + size);
    *out = (void *)p;
    return 0;
  }
  return rill__arena_alloc_slow(a, size, align, out);
}

/** rill_arena_alloc_aligned() with 16-byte alignment. */
RILL_INLINE int rill_arena_alloc(rill_arena_t *a, size_t size, void **out) {
  return rill_arena_alloc_aligned(a, size, 16, out);
}

/* ---- buf: refcounted bytes with zero-copy slices ----------------------- */

/*
 * A rill_buf_t is a view (pointer, length) onto shared storage that counts
 * its references. Slicing and cloning bump the count and copy nothing;
 * the storage goes when the last view is released. Storage is either
 * rill's own (rill_buf_alloc) or memory of yours with a callback that
 * rill calls once, when the last view goes (rill_buf_wrap): the log hands
 * out slices of mmap'd segments that way, the I/O pool its buffers.
 *
 * A view is a small value: copy the struct only through rill_buf_clone(),
 * and release every view you own exactly once. Views of one storage may be
 * cloned and released from any threads.
 */
typedef void (*rill_buf_release_cb)(void *ctx, void *data, size_t len);

typedef struct rill__buf_store {
  uint32_t refs;  /* atomic */
  uint32_t flags; /* RILL_BUF_* */
  rill_buf_release_cb release;
  void *ctx;
  uint8_t *data; /* start of the whole storage */
  size_t len;    /* length of the whole storage */
} rill__buf_store_t;

typedef struct rill_buf {
  rill__buf_store_t *store; /* NULL for the empty view */
  uint8_t *data;
  size_t len;
} rill_buf_t;

#define RILL_BUF_EMPTY ((rill_buf_t){NULL, NULL, 0})

/* Storage that must never be written through a view (an mmap'd read-only
 * segment, say): rill_buf_try_mut() refuses it. */
#define RILL_BUF_RDONLY 0x1u

/** New storage of len bytes (not zeroed), one allocation for header and
 *  data. len may be 0. RILL_ENOMEM. */
int rill_buf_alloc(rill_buf_t *b, size_t len);

/** New storage holding a copy of len bytes from p. */
int rill_buf_copy(rill_buf_t *b, const void *p, size_t len);

/** Views memory of yours. release (may be NULL) runs once, with ctx, data
 *  and len, when the last view is released. flags: RILL_BUF_RDONLY.
 *  RILL_EINVAL if data is NULL with len > 0 or flags are unknown. */
int rill_buf_wrap(rill_buf_t *b, void *data, size_t len, uint32_t flags,
                  rill_buf_release_cb release, void *ctx);

/** Views storage whose header you provide and keep alive (pools use this to
 *  hand out bufs without allocating). store->refs must be 0; it becomes 1.
 *  RILL_EBUSY if the header still has views. */
int rill_buf_wrap_store(rill_buf_t *b, rill__buf_store_t *store, size_t off, size_t len);

/** A second view of the same bytes. RILL_ERANGE if the count would pass
 *  2^31; RILL_EINVAL if dst is src. An empty src gives an empty dst. */
int rill_buf_clone(rill_buf_t *dst, const rill_buf_t *src);

/** A view of len bytes at off within src. RILL_ERANGE if off + len passes
 *  src's end. dst may be src (narrowing in place, no count change). */
int rill_buf_slice(rill_buf_t *dst, const rill_buf_t *src, size_t off, size_t len);

/** Releases a view and empties it; frees the storage with the last view.
 *  Releasing an empty view does nothing. */
void rill_buf_release(rill_buf_t *b);

/** *data = b->data, writable, when b is the only view of its storage and
 *  the storage is writable: 0. RILL_EBUSY while other views exist,
 *  RILL_EPERM for read-only storage, RILL_EINVAL for an empty view. */
int rill_buf_try_mut(rill_buf_t *b, uint8_t **data);

/** Views of b's storage alive now (0 for an empty view). */
uint32_t rill_buf_refs(const rill_buf_t *b);

/* ---- iopool: page-aligned buffers for I/O ------------------------------ */

/*
 * A fixed set of equal, page-aligned buffers in one mapping, so the whole
 * pool can be registered with io_uring once (base and size) and each
 * buffer named by its index. Get and put are lock-free and any thread may
 * put. Buffers can be handed out as rill_buf_t views that return to the
 * pool with their last release, without allocating.
 */
typedef struct rill_iopool rill_iopool_t;

#define RILL_IOPOOL_HUGE          0x1u /* try MAP_HUGETLB, else ask for THP */
#define RILL_IOPOOL_HUGE_REQUIRED 0x2u /* MAP_HUGETLB or fail with RILL_ENOMEM */
#define RILL_IOPOOL_LOCKED        0x4u /* mlock the pool; RILL_EPERM if not allowed */

typedef struct rill_iopool_opts {
  size_t buf_size; /* a multiple of 4096 (of 2 MiB with huge pages); 0 = 64 KiB */
  uint32_t count;  /* buffers, 1 .. 2^24; 0 = 64 */
  uint32_t flags;  /* RILL_IOPOOL_* */
} rill_iopool_opts_t;

typedef struct rill_iopool_stats {
  size_t buf_size;
  uint32_t count;
  uint32_t free; /* a snapshot */
  bool huge;     /* backed by MAP_HUGETLB pages */
  size_t bytes;  /* mapping size */
} rill_iopool_stats_t;

/** Maps the pool. RILL_EINVAL for bad sizes or flags, RILL_ENOMEM when the
 *  mapping (or the required huge pages) cannot be had. */
int rill_iopool_create(rill_iopool_t **out, const rill_iopool_opts_t *opts);

/** Unmaps the pool. RILL_EBUSY, and nothing freed, while buffers are out. */
int rill_iopool_destroy(rill_iopool_t *p);

/** Takes a buffer: *buf and, if index is not NULL, its index. RILL_EAGAIN
 *  when every buffer is out. */
int rill_iopool_get(rill_iopool_t *p, void **buf, uint32_t *index);

/** Gives a buffer back. RILL_EFOREIGN for a pointer that is not the start
 *  of one of the pool's buffers, RILL_EDOUBLE for one that is not out,
 *  RILL_EBUSY for one handed out as a view (its last release returns it). */
int rill_iopool_put(rill_iopool_t *p, void *buf);

/** Takes a buffer as a view of its whole size that returns to the pool
 *  when its last view is released. RILL_EAGAIN when all are out. */
int rill_iopool_get_buf(rill_iopool_t *p, rill_buf_t *b);

/** Start of the pool's one mapping, for io_uring_register_buffers():
 *  buffer i is at base + i * rill_iopool_buf_size. */
void *rill_iopool_base(const rill_iopool_t *p);

/** Length of the mapping in bytes: count * buf_size. */
size_t rill_iopool_bytes(const rill_iopool_t *p);

/** Size of each buffer in bytes. */
size_t rill_iopool_buf_size(const rill_iopool_t *p);

/** Index of a buffer, or RILL_EFOREIGN. */
int rill_iopool_index(const rill_iopool_t *p, const void *buf);

/** A snapshot of the pool's geometry and how many buffers are free. */
void rill_iopool_stats(const rill_iopool_t *p, rill_iopool_stats_t *st);

#ifdef __cplusplus
}
#endif
#endif /* RILL_MEM_H */
