/*
 * Slab: fixed-size objects from one reserved range of address space.
 *
 * Three layers, after Bonwick's magazines:
 *  - per-thread caches (rill__slab_tc_t): a stack of free object pointers,
 *    touched only by their thread, so the inline get/put in mem.h is a few
 *    instructions on one cache line;
 *  - a per-slab depot: a stack of free pointers under a mutex; a cache that
 *    runs dry takes a batch, a cache that overflows gives its coldest batch
 *    back, so the lock is taken once per batch, never per object;
 *  - chunks: the reserved range is committed (mprotect) a chunk at a time
 *    when the depot is empty too.
 * A put from another thread simply lands in that thread's cache; the
 * batches flow back through the depot, which is what makes the
 * producer-gets / consumer-puts pattern cheap.
 *
 * Locks: reg.lock (ids, thread tables, cache lists) before a slab's depot
 * lock, never the other way round.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/internal.h"
#include "rill/mem.h"

typedef struct tc_priv {
  struct tc_priv *next, *prev; /* in the slab's list of caches */
  rill_slab_t *slab;
  rill__slab_tc_t ***tabp; /* &rill__slab_tls of the owner thread */
  rill__slab_tc_t pub;     /* last: its objects follow it */
} tc_priv;

struct rill_slab {
  struct rill__slab_head h; /* first: the inline paths cast to it */
  uint32_t tid;             /* index in the thread tables (h.id hides it when checked) */
  uint32_t batch;           /* objects moved per depot transfer */
  size_t obj_size;
  size_t reserve;   /* bytes of address space reserved at h.base */
  size_t committed; /* bytes made writable */
  size_t chunk_bytes;
  size_t max_objects;
  size_t capacity; /* objects carved so far */
  size_t chunks;
  uint64_t refills, flushes;
  uint64_t *live; /* RILL_SLAB_CHECKED: one bit per object, set while out */
  size_t live_bytes;
  tc_priv *caches;      /* under reg.lock */
  pthread_mutex_t lock; /* the depot and the fields above it that grow */
  void **depot;
  size_t depot_n, depot_cap;
  char name[32];
};

/* The empty cache every unused table entry points at: n == cap == 0 sends
 * both inline paths to the slow path. Never written. */
static rill__slab_tc_t null_tc;
/* The table of a thread that has no cache yet. Never written either: a
 * thread gets a table of its own before its first cache. */
static rill__slab_tc_t *null_tab[RILL__SLAB_IDS] = {[0 ... RILL__SLAB_IDS - 1] = &null_tc};
/* Default TLS model, not initial-exec: see mem.h. */
__thread rill__slab_tc_t **rill__slab_tls = null_tab;

static struct {
  pthread_mutex_t lock;
  rill_slab_t *ids[RILL__SLAB_IDS]; /* live slab per id, NULL where free; 0 stays free */
  pthread_key_t exit_key;
  pthread_once_t once;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

static size_t page_size(void) {
  static size_t ps;
  if (!ps)
    ps = (size_t)sysconf(_SC_PAGESIZE);
  return ps;
}

/* ---- depot --------------------------------------------------------------- */

/* Commits the next chunk and pushes its objects on the depot. Depot lock
 * held. */
static int grow(rill_slab_t *s) {
  if (s->capacity >= s->max_objects)
    return rill__err(RILL_ENOMEM, "slab '%s': cap of %zu objects reached", s->name, s->max_objects);
  size_t stride = s->h.stride;
  size_t objs = s->chunk_bytes / stride;
  if (objs > s->max_objects - s->capacity)
    objs = s->max_objects - s->capacity;
  size_t end = (s->capacity + objs) * stride;
  size_t want = RILL__ALIGN_UP(end, page_size());
  if (want > s->reserve)
    want = s->reserve;
  if (want > s->committed) {
    if (mprotect((void *)(s->h.base + s->committed), want - s->committed, PROT_READ | PROT_WRITE) !=
        0) {
      rill__err_errno("slab '%s': committing %zu bytes", s->name, want - s->committed);
      return RILL_ENOMEM;
    }
    rill__count_map(want - s->committed);
    RILL__POISON((void *)(s->h.base + s->committed), want - s->committed);
    s->committed = want;
  }
  if (s->depot_cap < s->capacity + objs) {
    size_t cap = s->depot_cap ? s->depot_cap : 64;
    while (cap < s->capacity + objs)
      cap *= 2;
    void **d = rill__realloc(s->depot, cap * sizeof *d);
    if (!d)
      return rill__err(RILL_ENOMEM, "slab '%s': depot of %zu entries", s->name, cap);
    s->depot = d;
    s->depot_cap = cap;
  }
  /* Highest address first, so the lowest comes out first: a fresh slab
   * hands out ascending addresses, which prefetchers like. */
  for (size_t i = objs; i-- > 0;)
    s->depot[s->depot_n++] = (void *)(s->h.base + (s->capacity + i) * stride);
  s->capacity += objs;
  s->chunks++;
  /* Relaxed: a thread can only put an object it obtained through the depot
   * lock or its own synchronisation, both of which order this store first. */
  __atomic_store_n(&s->h.limit, s->capacity * stride, __ATOMIC_RELAXED);
  return 0;
}

/* Takes up to `want` objects from the depot (growing if it is empty) into
 * dst. Returns how many, or a negative code when none could be had. */
static int depot_take(rill_slab_t *s, void **dst, uint32_t want) {
  pthread_mutex_lock(&s->lock);
  if (s->depot_n == 0) {
    int rc = grow(s);
    if (rc < 0) {
      pthread_mutex_unlock(&s->lock);
      return rc;
    }
  }
  uint32_t k = s->depot_n < want ? (uint32_t)s->depot_n : want;
  s->depot_n -= k;
  memcpy(dst, s->depot + s->depot_n, k * sizeof *dst);
  s->refills++;
  pthread_mutex_unlock(&s->lock);
  return (int)k;
}

/* Room for every object ever carved was made in grow(), so this cannot
 * overflow. */
static void depot_give(rill_slab_t *s, void *const *src, uint32_t k) {
  pthread_mutex_lock(&s->lock);
  memcpy(s->depot + s->depot_n, src, k * sizeof *src);
  s->depot_n += k;
  s->flushes++;
  pthread_mutex_unlock(&s->lock);
}

/* ---- thread caches ---------------------------------------------------------- */

static void cache_unlink(tc_priv *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    c->slab->caches = c->next;
  if (c->next)
    c->next->prev = c->prev;
}

/* At thread exit every cache goes back to its depot, so objects freed by a
 * thread that ends are not stranded. */
static void thread_exit(void *unused) {
  (void)unused;
  pthread_mutex_lock(&reg.lock);
  rill__slab_tc_t **t = rill__slab_tls;
  for (uint32_t i = 1; t != null_tab && i < RILL__SLAB_IDS; i++) {
    if (t[i] == &null_tc)
      continue;
    tc_priv *c = (tc_priv *)((char *)t[i] - offsetof(tc_priv, pub));
    if (c->pub.n)
      depot_give(c->slab, rill__slab_tc_obj(&c->pub), c->pub.n);
    cache_unlink(c);
    rill__free(c);
  }
  if (t != null_tab)
    rill__free(t);
  rill__slab_tls = null_tab;
  pthread_mutex_unlock(&reg.lock);
}

static void reg_init(void) { pthread_key_create(&reg.exit_key, thread_exit); }

/* The calling thread's cache for s, made on first use. NULL (with the
 * error detail set) only when memory for it cannot be had; callers then
 * go straight to the depot. */
static rill__slab_tc_t *my_cache(rill_slab_t *s) {
  if (s->tid == 0)
    return NULL;
  rill__slab_tc_t **t = rill__slab_tls;
  rill__slab_tc_t *have = __atomic_load_n(&t[s->tid], __ATOMIC_RELAXED);
  if (have != &null_tc)
    return have;
  pthread_once(&reg.once, reg_init);
  pthread_mutex_lock(&reg.lock);
  if (t == null_tab) {
    t = rill__malloc(sizeof null_tab);
    if (!t)
      goto fail_unlock;
    memcpy(t, null_tab, sizeof null_tab);
    rill__slab_tls = t;
  }
  uint32_t cap = 2 * s->batch;
  tc_priv *c = rill__malloc(sizeof *c + cap * sizeof(void *));
  if (!c)
    goto fail_unlock;
  c->slab = s;
  c->tabp = &rill__slab_tls;
  c->pub.n = 0;
  c->pub.cap = cap;
  c->prev = NULL;
  c->next = s->caches;
  if (s->caches)
    s->caches->prev = c;
  s->caches = c;
  __atomic_store_n(&t[s->tid], &c->pub, __ATOMIC_RELAXED);
  pthread_setspecific(reg.exit_key, (void *)1);
  pthread_mutex_unlock(&reg.lock);
  return &c->pub;
fail_unlock:
  pthread_mutex_unlock(&reg.lock);
  rill__err(RILL_ENOMEM, "slab '%s': no memory for a thread cache", s->name);
  return NULL;
}

/* ---- checked mode ------------------------------------------------------------- */

static int mark_live(rill_slab_t *s, void *p, int live) {
  size_t i = ((uintptr_t)p - s->h.base) / s->h.stride;
  uint64_t bit = (uint64_t)1 << (i & 63);
  uint64_t *w = &s->live[i >> 6];
  if (live) {
    /* Relaxed: the bit guards against misuse, it does not publish data. */
    __atomic_fetch_or(w, bit, __ATOMIC_RELAXED);
    return 0;
  }
  uint64_t old = __atomic_fetch_and(w, ~bit, __ATOMIC_RELAXED);
  if (!(old & bit))
    return rill__err(RILL_EDOUBLE, "slab '%s': object %p put twice, or never got", s->name, p);
  return 0;
}

/* ---- get and put ------------------------------------------------------------- */

int rill__slab_get_slow(rill_slab_t *s, void **obj) {
  rill__slab_tc_t *c = my_cache(s);
  void *p;
  if (c) {
    if (c->n == 0) {
      int k = depot_take(s, rill__slab_tc_obj(c), s->batch);
      if (k < 0)
        return k;
      __atomic_store_n(&c->n, (uint32_t)k, __ATOMIC_RELAXED);
    }
    uint32_t n = c->n - 1;
    p = rill__slab_tc_obj(c)[n];
    __atomic_store_n(&c->n, n, __ATOMIC_RELAXED);
  } else {
    int k = depot_take(s, &p, 1);
    if (k < 0)
      return k;
  }
  if (s->live)
    mark_live(s, p, 1);
  RILL__UNPOISON(p, s->h.stride);
  *obj = p;
  return 0;
}

int rill__slab_put_slow(rill_slab_t *s, void *p) {
  uintptr_t off = (uintptr_t)p - s->h.base;
  if (off >= __atomic_load_n(&s->h.limit, __ATOMIC_RELAXED) || off % s->h.stride != 0)
    return rill__err(RILL_EFOREIGN, "slab '%s': %p is not an object of this slab", s->name, p);
  if (s->live) {
    int rc = mark_live(s, p, 0);
    if (rc < 0)
      return rc;
  }
  RILL__POISON(p, s->h.stride);
  rill__slab_tc_t *c = my_cache(s);
  if (!c) {
    depot_give(s, &p, 1);
    return 0;
  }
  uint32_t n = c->n;
  if (n == c->cap) {
    /* Give back the bottom half, the objects freed longest ago; the top
     * half is what this thread touched last and is still in its cache. */
    depot_give(s, rill__slab_tc_obj(c), s->batch);
    n -= s->batch;
    memmove(rill__slab_tc_obj(c), rill__slab_tc_obj(c) + s->batch, n * sizeof(void *));
  }
  rill__slab_tc_obj(c)[n] = p;
  __atomic_store_n(&c->n, n + 1, __ATOMIC_RELAXED);
  return 0;
}

/* ---- lifecycle ----------------------------------------------------------------- */

/* The lowest free id, or 0 when all are taken: such a slab works without
 * thread caches, through the depot lock. */
static void alloc_id(rill_slab_t *s) {
  uint32_t id = 1;
  while (id < RILL__SLAB_IDS && reg.ids[id])
    id++;
  if (id == RILL__SLAB_IDS)
    id = 0;
  else
    reg.ids[id] = s;
  s->tid = id;
}

int rill_slab_create(rill_slab_t **out, const rill_slab_opts_t *o) {
  int rc;
  if (!out || !o)
    return rill__err(RILL_EINVAL, "slab: out and opts are required");
  *out = NULL;
  if (o->obj_size == 0 || o->obj_size > RILL_SLAB_MAX_OBJ)
    return rill__err(RILL_EINVAL, "slab: obj_size %zu is outside 1..%zu", o->obj_size,
                     RILL_SLAB_MAX_OBJ);
  size_t align = o->align ? o->align : (o->obj_size < 16 ? 8 : 16);
  if (!RILL__IS_POW2(align) || align < 8 || align > 4096)
    return rill__err(RILL_EINVAL, "slab: align %zu is not a power of two in 8..4096", o->align);
  if (o->flags & ~(RILL_SLAB_CHECKED | RILL_SLAB_UNCHECKED))
    return rill__err(RILL_EINVAL, "slab: unknown flags 0x%x", o->flags);
  size_t stride = RILL__ALIGN_UP(o->obj_size, align);
  size_t fit = RILL_SLAB_MAX_BYTES / stride;
  if (o->max_objects > fit)
    return rill__err(RILL_EINVAL, "slab: max_objects %zu of %zu bytes passes the %zu-byte limit",
                     o->max_objects, stride, RILL_SLAB_MAX_BYTES);
  if (o->chunk_bytes > RILL_SLAB_MAX_BYTES)
    return rill__err(RILL_EINVAL, "slab: chunk_bytes %zu is over %zu", o->chunk_bytes,
                     RILL_SLAB_MAX_BYTES);

  rill_slab_t *s = rill__calloc(1, sizeof *s);
  if (!s)
    return rill__err(RILL_ENOMEM, "slab: no memory for the slab");
  snprintf(s->name, sizeof s->name, "%s", o->name ? o->name : "anon");
  s->obj_size = o->obj_size;
  s->h.stride = stride;
  s->h.div = UINT64_MAX / stride + 1;
  s->max_objects = o->max_objects ? o->max_objects : fit;
  s->reserve = RILL__ALIGN_UP(s->max_objects * stride, page_size());
  size_t chunk = o->chunk_bytes ? o->chunk_bytes : 256 * 1024;
  if (chunk < 16 * stride && !o->chunk_bytes)
    chunk = 16 * stride;
  if (chunk < stride)
    chunk = stride;
  s->chunk_bytes = chunk;
  /* Batches of up to 256 KiB, 4 to 64 objects: the depot lock is taken once
   * a batch on each side of a producer/consumer pair, so batches are as big
   * as they can be (64 objects up to 4 KiB: 16-object batches made 4 KiB
   * cross-thread frees 3x slower) while a thread's cache, two batches,
   * stays at most 512 KiB for large objects. */
  size_t batch = (256 * 1024) / stride;
  s->batch = batch > 64 ? 64 : batch < 4 ? 4 : (uint32_t)batch;
  int checked = (o->flags & RILL_SLAB_CHECKED) != 0;
#ifndef NDEBUG
  checked = checked || !(o->flags & RILL_SLAB_UNCHECKED);
#endif
  pthread_mutex_init(&s->lock, NULL);

  void *base =
      mmap(NULL, s->reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    rill__err_errno("slab '%s': reserving %zu bytes of address space", s->name, s->reserve);
    rc = RILL_ENOMEM;
    goto free_slab;
  }
  s->h.base = (uintptr_t)base;
  if (checked) {
    s->live_bytes = RILL__ALIGN_UP((s->max_objects + 63) / 64 * 8, page_size());
    void *bits = mmap(NULL, s->live_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (bits == MAP_FAILED) {
      rill__err_errno("slab '%s': mapping the checking bitmap", s->name);
      rc = RILL_ENOMEM;
      goto unmap_reserve;
    }
    s->live = bits;
  }

  pthread_mutex_lock(&reg.lock);
  alloc_id(s);
  pthread_mutex_unlock(&reg.lock);
  /* A checked slab shows the inline paths entry 0, which is always empty,
   * so every get and put goes through the slow path that checks; so does a
   * slab under ASan, so that only librill poisons (see mem/poison.c). */
  s->h.id = checked || rill__poisoning() ? 0 : s->tid;
  s->h.flags = checked ? RILL_SLAB_CHECKED : 0;
  *out = s;
  return 0;

unmap_reserve:
  munmap(base, s->reserve);
free_slab:
  pthread_mutex_destroy(&s->lock);
  rill__free(s);
  return rc;
}

void rill_slab_destroy(rill_slab_t *s) {
  if (!s)
    return;
  pthread_mutex_lock(&reg.lock);
  /* Clear the slot in each owner thread's table, so a slab created later
   * with this id never finds this slab's cache there. */
  for (tc_priv *c = s->caches, *next; c; c = next) {
    next = c->next;
    __atomic_store_n(&(*c->tabp)[s->tid], &null_tc, __ATOMIC_RELAXED);
    rill__free(c);
  }
  if (s->tid)
    reg.ids[s->tid] = NULL;
  pthread_mutex_unlock(&reg.lock);
  if (s->committed)
    rill__count_unmap(s->committed);
  /* ASan keeps shadow state past munmap: clear what was poisoned, so a
   * later mapping at these addresses starts clean (as the iopool does). */
  RILL__UNPOISON((void *)s->h.base, s->committed);
  munmap((void *)s->h.base, s->reserve);
  if (s->live)
    munmap((void *)s->live, s->live_bytes);
  rill__free(s->depot);
  pthread_mutex_destroy(&s->lock);
  rill__free(s);
}

void rill_slab_flush(rill_slab_t *s) {
  rill__slab_tc_t *c = rill__slab_tls[s->tid];
  if (s->tid == 0 || c->n == 0)
    return;
  depot_give(s, rill__slab_tc_obj(c), c->n);
  __atomic_store_n(&c->n, 0, __ATOMIC_RELAXED);
}

bool rill_slab_owns(const rill_slab_t *s, const void *p) {
  uintptr_t off = (uintptr_t)p - s->h.base;
  return off < __atomic_load_n(&s->h.limit, __ATOMIC_RELAXED) && off % s->h.stride == 0;
}

void rill_slab_stats(const rill_slab_t *cs, rill_slab_stats_t *st) {
  /* The locks are taken and given back: the slab is the same after. */
  rill_slab_t *s = (rill_slab_t *)cs;
  memset(st, 0, sizeof *st);
  pthread_mutex_lock(&reg.lock);
  for (tc_priv *c = s->caches; c; c = c->next)
    st->cached += __atomic_load_n(&c->pub.n, __ATOMIC_RELAXED);
  pthread_mutex_lock(&s->lock);
  st->obj_size = s->obj_size;
  st->stride = s->h.stride;
  st->capacity = s->capacity;
  st->max_objects = s->max_objects;
  st->depot = s->depot_n;
  st->chunks = s->chunks;
  st->bytes = s->committed;
  st->refills = s->refills;
  st->flushes = s->flushes;
  pthread_mutex_unlock(&s->lock);
  pthread_mutex_unlock(&reg.lock);
  size_t free_objs = st->cached + st->depot;
  st->in_use = st->capacity > free_objs ? st->capacity - free_objs : 0;
}
