/*
 * Refcounted views. The count lives in the storage header; a view is a
 * plain (store, data, len) value, so slicing and cloning touch one atomic
 * and allocate nothing.
 */
#include <string.h>

#include "core/internal.h"
#include "rill/mem.h"

/* Private flag bits: who owns the header, hence what the last release
 * frees. Neither set means the caller's header (rill_buf_wrap_store). */
#define OWNED   0x80000000u /* header and data in one rill__malloc block */
#define HEAPHDR 0x40000000u /* header from rill__malloc, data the caller's */
#define PUBLIC  RILL_BUF_RDONLY

/* A clone past this is refused: far beyond any real use, and it leaves
 * 2^31 of headroom for increments that are undone after the check. */
#define MAX_REFS ((uint32_t)1 << 31)

/* As in arena.c: an error code rather than a sanitizer abort for absurd
 * sizes. */
#define MAX_LEN ((size_t)1 << 40)

#define HDR RILL__ALIGN_UP(sizeof(rill__buf_store_t), (size_t)16)

/* p + off, where p may be NULL for empty storage (off is then 0): NULL + 0
 * is undefined in C, and UBSan says so. */
static inline uint8_t *at(uint8_t *p, size_t off) { return off ? p + off : p; }

int rill_buf_alloc(rill_buf_t *b, size_t len) {
  if (!b)
    return rill__err(RILL_EINVAL, "buf: NULL view");
  *b = RILL_BUF_EMPTY;
  if (len > MAX_LEN)
    return rill__err(RILL_ENOMEM, "buf: %zu bytes is more than one buffer may hold", len);
  rill__buf_store_t *s = rill__malloc(HDR + len);
  if (!s)
    return rill__err(RILL_ENOMEM, "buf: cannot allocate %zu bytes", len);
  s->refs = 1;
  s->flags = OWNED;
  s->release = NULL;
  s->ctx = NULL;
  s->data = (uint8_t *)s + HDR;
  s->len = len;
  *b = (rill_buf_t){s, s->data, len};
  return 0;
}

int rill_buf_copy(rill_buf_t *b, const void *p, size_t len) {
  if (!b)
    return rill__err(RILL_EINVAL, "buf: NULL view");
  if (!p && len) {
    *b = RILL_BUF_EMPTY;
    return rill__err(RILL_EINVAL, "buf: copy of %zu bytes from NULL", len);
  }
  int rc = rill_buf_alloc(b, len);
  if (rc)
    return rc;
  if (len)
    memcpy(b->data, p, len);
  return 0;
}

int rill_buf_wrap(rill_buf_t *b, void *data, size_t len, uint32_t flags,
                  rill_buf_release_cb release, void *ctx) {
  if (!b)
    return rill__err(RILL_EINVAL, "buf: NULL view");
  *b = RILL_BUF_EMPTY;
  if (!data && len)
    return rill__err(RILL_EINVAL, "buf: wrap of %zu bytes at NULL", len);
  if (flags & ~PUBLIC)
    return rill__err(RILL_EINVAL, "buf: unknown flags 0x%x", flags & ~PUBLIC);
  rill__buf_store_t *s = rill__malloc(sizeof *s);
  if (!s)
    return rill__err(RILL_ENOMEM, "buf: cannot allocate a storage header");
  s->refs = 1;
  s->flags = flags | HEAPHDR;
  s->release = release;
  s->ctx = ctx;
  s->data = data;
  s->len = len;
  *b = (rill_buf_t){s, data, len};
  return 0;
}

int rill_buf_wrap_store(rill_buf_t *b, rill__buf_store_t *store, size_t off, size_t len) {
  if (!b)
    return rill__err(RILL_EINVAL, "buf: NULL view");
  *b = RILL_BUF_EMPTY;
  if (!store)
    return rill__err(RILL_EINVAL, "buf: NULL storage header");
  if (store->flags & ~PUBLIC)
    return rill__err(RILL_EINVAL, "buf: unknown flags 0x%x in storage header",
                     store->flags & ~PUBLIC);
  if (!store->data && store->len)
    return rill__err(RILL_EINVAL, "buf: storage of %zu bytes at NULL", store->len);
  if (off > store->len || len > store->len - off)
    return rill__err(RILL_ERANGE, "buf: view %zu+%zu passes the storage's %zu bytes", off, len,
                     store->len);
  /* A CAS rather than a store: two threads wrapping one header cannot both
   * win. Acquire pairs with the release of the last view of the header's
   * previous life, so its accesses happen before ours. */
  uint32_t zero = 0;
  if (!__atomic_compare_exchange_n(&store->refs, &zero, 1, false, __ATOMIC_ACQUIRE,
                                   __ATOMIC_RELAXED))
    return rill__err(RILL_EBUSY, "buf: storage header already has %u views", zero);
  *b = (rill_buf_t){store, at(store->data, off), len};
  return 0;
}

/* Takes one more reference on s. Relaxed suffices: the caller holds a
 * reference, so s cannot be freed under us, and the increment publishes
 * nothing; whatever hands the new view to another thread orders the
 * accesses through it. */
static int ref(rill__buf_store_t *s) {
  uint32_t old = __atomic_fetch_add(&s->refs, 1, __ATOMIC_RELAXED);
  if (RILL_UNLIKELY(old >= MAX_REFS)) {
    __atomic_fetch_sub(&s->refs, 1, __ATOMIC_RELAXED);
    return rill__err(RILL_ERANGE, "buf: storage already has %u views", old);
  }
  return 0;
}

/* dst becomes a new view, of len bytes at data, of src's storage. */
static int new_view(rill_buf_t *dst, const rill_buf_t *src, uint8_t *data, size_t len) {
  if (!src->store) {
    *dst = RILL_BUF_EMPTY;
    return 0;
  }
  int rc = ref(src->store);
  if (rc) {
    *dst = RILL_BUF_EMPTY;
    return rc;
  }
  *dst = (rill_buf_t){src->store, data, len};
  return 0;
}

int rill_buf_clone(rill_buf_t *dst, const rill_buf_t *src) {
  if (!dst || !src)
    return rill__err(RILL_EINVAL, "buf: NULL view");
  /* Cloning onto the source would leave one view holding two references. */
  if (dst == src)
    return rill__err(RILL_EINVAL, "buf: clone onto its own source");
  return new_view(dst, src, src->data, src->len);
}

int rill_buf_slice(rill_buf_t *dst, const rill_buf_t *src, size_t off, size_t len) {
  if (!dst || !src)
    return rill__err(RILL_EINVAL, "buf: NULL view");
  if (off > src->len || len > src->len - off) {
    if (dst != src)
      *dst = RILL_BUF_EMPTY;
    return rill__err(RILL_ERANGE, "buf: slice %zu+%zu passes the view's %zu bytes", off, len,
                     src->len);
  }
  if (dst == src) {
    /* Narrowing in place: still one view, still one reference. */
    dst->data = at(dst->data, off);
    dst->len = len;
    return 0;
  }
  return new_view(dst, src, at(src->data, off), len);
}

void rill_buf_release(rill_buf_t *b) {
  if (!b || !b->store)
    return;
  rill__buf_store_t *s = b->store;
  *b = RILL_BUF_EMPTY;
  /*
   * Every decrement is a release, so each thread's reads and writes through
   * its view happen before its decrement. The thread that takes the count
   * to zero needs acquire ordering so that all those accesses, by every
   * thread, happen before it frees the storage or hands the memory back to
   * a pool. Only the last releaser pays for the acquire, hence an acquire
   * load after the test instead of acq_rel on every decrement: it reads the
   * 0 our decrement stored, which ends the release sequence of every
   * earlier decrement (each is a read-modify-write), so it synchronizes
   * with all of them. Not an acquire fence: ThreadSanitizer does not model
   * fences, and this way it checks the code that ships. On x86-64 both are
   * free (a plain load of a line we own, and a compiler barrier).
   */
  if (__atomic_fetch_sub(&s->refs, 1, __ATOMIC_RELEASE) != 1)
    return;
  /* Acquire: see above. */
  (void)__atomic_load_n(&s->refs, __ATOMIC_ACQUIRE);
  if (s->flags & OWNED) {
    rill__free(s);
  } else if (s->flags & HEAPHDR) {
    rill_buf_release_cb fn = s->release;
    void *ctx = s->ctx, *data = s->data;
    size_t len = s->len;
    rill__free(s);
    if (fn)
      fn(ctx, data, len);
  } else if (s->release) {
    /* The caller's header: never freed here. The callback may hand the
     * header straight to another thread, so s is not touched after it. */
    s->release(s->ctx, s->data, s->len);
  }
}

int rill_buf_try_mut(rill_buf_t *b, uint8_t **data) {
  if (!b || !b->store)
    return rill__err(RILL_EINVAL, "buf: empty view");
  if (!data)
    return rill__err(RILL_EINVAL, "buf: NULL data pointer");
  if (b->store->flags & RILL_BUF_RDONLY)
    return rill__err(RILL_EPERM, "buf: storage is read-only");
  /* Acquire pairs with other views' release decrements: whatever they did
   * through their views happens before we write. */
  uint32_t refs = __atomic_load_n(&b->store->refs, __ATOMIC_ACQUIRE);
  if (refs != 1)
    return rill__err(RILL_EBUSY, "buf: storage has %u views", refs);
  *data = b->data;
  return 0;
}

uint32_t rill_buf_refs(const rill_buf_t *b) {
  if (!b || !b->store)
    return 0;
  return __atomic_load_n(&b->store->refs, __ATOMIC_RELAXED);
}
