/*
 * Bump arena. The inline fast path in rill/mem.h moves a->cur; everything
 * here runs once per chunk: taking a spare chunk or growing, and giving
 * memory back by reset or rewind.
 *
 * Chunks in use form a chain from the current chunk back to the first
 * (a->chunk, then ->next). Chunks taken back sit on a->spare in the order
 * they were first used, so replaying the same allocations after a reset
 * meets the same chunks and allocates nothing.
 *
 * a->end is only the inline path's copy of chunk_end(a->chunk): code here
 * uses the chunk's. Under ASan it stays NULL, which fails the inline test
 * for every size, so every allocation comes here and librill alone
 * unpoisons (see mem/poison.c).
 */
#include <string.h>

#include "core/internal.h"
#include "rill/mem.h"

struct rill__arena_chunk {
  struct rill__arena_chunk *next; /* older chunk on the chain, or next spare */
  size_t size;                    /* bytes, this header included */
  uint8_t *top;                   /* where allocation stopped when the arena moved on; only
                                     meaningful for chain chunks other than the current one */
};

/* Data starts 16-aligned (what rill__malloc gives), so alignments up to 16
 * cost no padding at the start of a chunk. */
#define HDR RILL__ALIGN_UP(sizeof(struct rill__arena_chunk), (size_t)16)

#define DEFAULT_CHUNK ((size_t)64 << 10)
#define MIN_CHUNK     ((size_t)256)
/* Far past any sane arena, and below what sanitizer allocators abort on
 * instead of failing, so an absurd size is an error code everywhere. */
#define MAX_CHUNK ((size_t)1 << 40)
#define MAX_ALIGN ((size_t)4096)

static inline uint8_t *chunk_data(struct rill__arena_chunk *c) { return (uint8_t *)c + HDR; }
static inline uint8_t *chunk_end(struct rill__arena_chunk *c) { return (uint8_t *)c + c->size; }

/* What the inline path may use as the end of the current chunk c. */
static inline uint8_t *inline_end(struct rill__arena_chunk *c) {
  return rill__poisoning() ? NULL : chunk_end(c);
}

int rill_arena_init(rill_arena_t *a, const rill_arena_opts_t *opts) {
  if (!a)
    return rill__err(RILL_EINVAL, "arena: NULL arena");
  size_t chunk = opts && opts->chunk_bytes ? opts->chunk_bytes : DEFAULT_CHUNK;
  if (chunk < MIN_CHUNK || chunk > MAX_CHUNK)
    return rill__err(RILL_EINVAL, "arena: chunk_bytes %zu is outside %zu .. %zu", chunk, MIN_CHUNK,
                     MAX_CHUNK);
  memset(a, 0, sizeof *a);
  a->chunk_bytes = chunk;
  a->max_bytes = opts ? opts->max_bytes : 0;
  return 0;
}

static void free_list(rill_arena_t *a, struct rill__arena_chunk *c) {
  while (c) {
    struct rill__arena_chunk *next = c->next;
    a->held -= c->size;
    /* Reopen what reset or rewind poisoned, so the heap gets the block back
     * in the state it handed it out. */
    RILL__UNPOISON(chunk_data(c), c->size - HDR);
    rill__free(c);
    c = next;
  }
}

void rill_arena_fini(rill_arena_t *a) {
  if (!a)
    return;
  free_list(a, a->chunk);
  free_list(a, a->spare);
  memset(a, 0, sizeof *a);
}

void rill_arena_trim(rill_arena_t *a) {
  if (!a)
    return;
  free_list(a, a->spare);
  a->spare = NULL;
}

/* Moves the chain from a->chunk down to (not including) stop onto the spare
 * list. The chain runs newest first, so pushing as we walk leaves the
 * oldest chunk at the head of the spare list: spares are reused in the
 * order they were first used. */
static void chain_to_spare(rill_arena_t *a, struct rill__arena_chunk *stop) {
  struct rill__arena_chunk *c = a->chunk;
  while (c != stop) {
    struct rill__arena_chunk *next = c->next;
    RILL__POISON(chunk_data(c), c->size - HDR);
    c->next = a->spare;
    a->spare = c;
    c = next;
  }
  a->chunk = stop;
}

void rill_arena_reset(rill_arena_t *a) {
  if (!a || !a->chunk)
    return;
  struct rill__arena_chunk *first = a->chunk;
  while (first->next)
    first = first->next;
  chain_to_spare(a, first);
  /* The first chunk stays current, so the next allocation is a fast one. */
  RILL__POISON(chunk_data(first), first->size - HDR);
  a->cur = chunk_data(first);
  a->end = inline_end(first);
}

int rill_arena_rewind(rill_arena_t *a, rill_arena_mark_t m) {
  if (!a)
    return rill__err(RILL_EINVAL, "arena: NULL arena");
  if (!m.chunk) {
    /* A mark taken before the first allocation: the start of the arena. */
    if (m.cur)
      return rill__err(RILL_EINVAL, "arena: mark has a position but no chunk");
    rill_arena_reset(a);
    return 0;
  }
  struct rill__arena_chunk *c = a->chunk;
  while (c && c != m.chunk)
    c = c->next;
  if (!c)
    return rill__err(RILL_EINVAL, "arena: mark's chunk %p is not on this arena's chain",
                     (void *)m.chunk);
  /* A mark on the current chunk must not lie ahead of the arena (a reset or
   * an earlier rewind passed it); one on an older chunk, not past where
   * allocation in that chunk stopped. */
  uint8_t *limit = c == a->chunk ? a->cur : c->top;
  if (m.cur < chunk_data(c) || m.cur > limit)
    return rill__err(RILL_EINVAL, "arena: mark %p is outside what its chunk has handed out",
                     (void *)m.cur);
  chain_to_spare(a, c);
  RILL__POISON(m.cur, (size_t)(chunk_end(c) - m.cur));
  a->cur = m.cur;
  a->end = inline_end(c);
  return 0;
}

void rill_arena_stats(const rill_arena_t *a, rill_arena_stats_t *st) {
  memset(st, 0, sizeof *st);
  if (!a)
    return;
  st->held = a->held;
  for (struct rill__arena_chunk *c = a->chunk; c; c = c->next) {
    uint8_t *top = c == a->chunk ? a->cur : c->top;
    st->used += (size_t)(top - chunk_data(c));
    st->chunks++;
  }
  for (struct rill__arena_chunk *c = a->spare; c; c = c->next)
    st->chunks++;
}

/* Where an allocation of size at align would start in [from, end), or NULL
 * if it does not fit. Same arithmetic as the fast path, overflow checked. */
static uint8_t *fit(uint8_t *from, uint8_t *end, size_t size, size_t align) {
  uintptr_t cur = (uintptr_t)from;
  uintptr_t p = (cur + (align - 1)) & ~(uintptr_t)(align - 1);
  if (p < cur || p > (uintptr_t)end || size > (uintptr_t)end - p)
    return NULL;
  return (uint8_t *)p;
}

/* First spare chunk that holds the allocation, unlinked. Spares that are
 * too small stay for later allocations. */
static struct rill__arena_chunk *take_spare(rill_arena_t *a, size_t size, size_t align) {
  for (struct rill__arena_chunk **pp = &a->spare; *pp; pp = &(*pp)->next) {
    struct rill__arena_chunk *c = *pp;
    if (fit(chunk_data(c), chunk_end(c), size, align)) {
      *pp = c->next;
      return c;
    }
  }
  return NULL;
}

static int grow(rill_arena_t *a, size_t size, size_t align, struct rill__arena_chunk **out) {
  size_t need;
  if (__builtin_add_overflow(size, align + HDR, &need) || need > MAX_CHUNK)
    return rill__err(RILL_ENOMEM, "arena: %zu bytes is more than one allocation may take", size);
  size_t want = need > a->chunk_bytes ? need : a->chunk_bytes;
  if (a->max_bytes) {
    size_t room = a->max_bytes > a->held ? a->max_bytes - a->held : 0;
    if (need > room && a->spare) {
      /* None of the spares fit this allocation; giving them up is better
       * than refusing it while the arena holds memory it is not using. */
      rill_arena_trim(a);
      room = a->max_bytes > a->held ? a->max_bytes - a->held : 0;
    }
    if (need > room)
      return rill__err(RILL_ENOMEM, "arena: %zu bytes would pass the cap of %zu (%zu held)", size,
                       a->max_bytes, a->held);
    if (want > room)
      want = room;
  }
  struct rill__arena_chunk *c = rill__malloc(want);
  if (!c)
    return rill__err(RILL_ENOMEM, "arena: cannot allocate a chunk of %zu bytes", want);
  c->next = NULL;
  c->size = want;
  c->top = chunk_data(c);
  RILL__POISON(chunk_data(c), want - HDR);
  a->held += want;
  *out = c;
  return 0;
}

int rill__arena_alloc_slow(rill_arena_t *a, size_t size, size_t align, void **out) {
  if (!RILL__IS_POW2(align) || align > MAX_ALIGN)
    return rill__err(RILL_EINVAL, "arena: alignment %zu is not a power of two up to %zu", align,
                     MAX_ALIGN);
  if (size == 0)
    return rill__err(RILL_EINVAL, "arena: size is 0");
  uint8_t *p = a->chunk ? fit(a->cur, chunk_end(a->chunk), size, align) : NULL;
  if (!p) {
    struct rill__arena_chunk *c = take_spare(a, size, align);
    if (!c) {
      int rc = grow(a, size, align, &c);
      if (rc)
        return rc;
    }
    if (a->chunk)
      a->chunk->top = a->cur;
    c->next = a->chunk;
    a->chunk = c;
    a->end = inline_end(c);
    p = fit(chunk_data(c), chunk_end(c), size, align);
  }
  a->cur = p + size;
  RILL__UNPOISON(p, size);
  *out = p;
  return 0;
}
