/*
 * librill.so loaded with dlopen(), as a language binding loads it. A library
 * whose TLS uses the initial-exec model is marked STATIC_TLS: the loader
 * must then fit its thread-locals into the few hundred bytes of static TLS
 * left over at start-up, and dlopen() fails once they are gone. The slab's
 * per-thread table is the one thread-local the inline paths reach.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>

#include "rill/mem.h"

#ifndef RILL_SHARED_LIB
#error "RILL_SHARED_LIB: the path of librill.so, set by CMakeLists.txt"
#endif

typedef int (*create_fn)(rill_slab_t **, const rill_slab_opts_t *);
typedef int (*getput_fn)(rill_slab_t *, void **);
typedef int (*put_fn)(rill_slab_t *, void *);
typedef void (*destroy_fn)(rill_slab_t *);

struct lib {
  void *h;
  create_fn create;
  getput_fn get;
  put_fn put;
  destroy_fn destroy;
};

static struct lib open_lib(void) {
  struct lib l = {0};
  l.h = dlopen(RILL_SHARED_LIB, RTLD_NOW | RTLD_LOCAL);
  cr_assert_not_null(l.h, "dlopen: %s", dlerror());
  l.create = (create_fn)dlsym(l.h, "rill_slab_create");
  l.get = (getput_fn)dlsym(l.h, "rill__slab_get_slow");
  l.put = (put_fn)dlsym(l.h, "rill__slab_put_slow");
  l.destroy = (destroy_fn)dlsym(l.h, "rill_slab_destroy");
  cr_assert(l.create && l.get && l.put && l.destroy, "dlsym: %s", dlerror());
  return l;
}

Test(dlopen, library_needs_no_static_tls) {
  struct lib l = open_lib();
  struct link_map *lm = NULL;
  cr_assert_eq(dlinfo(l.h, RTLD_DI_LINKMAP, &lm), 0, "dlinfo: %s", dlerror());
  uint64_t flags = 0;
  for (const ElfW(Dyn) *d = lm->l_ld; d->d_tag != DT_NULL; d++)
    if (d->d_tag == DT_FLAGS)
      flags = d->d_un.d_val;
  cr_expect_eq(flags & DF_STATIC_TLS, 0,
               "librill.so is marked STATIC_TLS (initial-exec TLS): dlopen can fail");
  dlclose(l.h);
}

/* Gets and puts through the slow paths, which use the per-thread table
 * (the caches fill, overflow to the depot and refill). */
static void churn(const struct lib *l, rill_slab_t *s) {
  enum { N = 300 };
  static __thread void *held[N];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++)
      cr_assert_eq(l->get(s, &held[i]), 0);
    for (int i = 0; i < N; i++) {
      memset(held[i], i, 64);
      cr_assert_eq(l->put(s, held[i]), 0);
    }
  }
}

struct churn_arg {
  const struct lib *l;
  rill_slab_t *s;
};

static void *churn_thread(void *p) {
  struct churn_arg *a = p;
  churn(a->l, a->s);
  return NULL;
}

Test(dlopen, slab_get_and_put_in_a_dlopened_library) {
  struct lib l = open_lib();
  rill_slab_t *s = NULL;
  rill_slab_opts_t o = {.obj_size = 64, .flags = RILL_SLAB_UNCHECKED, .name = "dl"};
  cr_assert_eq(l.create(&s, &o), 0);
  churn(&l, s);
  /* A thread started after the dlopen gets the library's TLS dynamically. */
  pthread_t t;
  struct churn_arg a = {&l, s};
  cr_assert_eq(pthread_create(&t, NULL, churn_thread, &a), 0);
  pthread_join(t, NULL);
  l.destroy(s);
  dlclose(l.h);
}

/* Loading the library runs none of its clock calibration (2 ms of
 * spinning, once a constructor): the first reader of the fast clock pays. */
Test(dlopen, loading_does_not_calibrate_the_clock) {
  struct lib l = open_lib();
  unsigned (*calibrations)(void) = (unsigned (*)(void))dlsym(l.h, "rill__time_calibrations");
  uint64_t (*now)(void) = (uint64_t(*)(void))dlsym(l.h, "rill__time_ns_slow");
  cr_assert(calibrations && now, "dlsym: %s", dlerror());
  cr_expect_eq(calibrations(), 0, "dlopen calibrated the TSC");
  (void)now();
  cr_expect_eq(calibrations(), 1);
  dlclose(l.h);
}
