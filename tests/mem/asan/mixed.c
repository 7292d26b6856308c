/*
 * An application built with ASan on a librill built without it (this
 * build's rill_static), the mix a sanitized binding or service meets in
 * practice. Poisoning must follow one rule for both sides: objects are
 * written freely while got, and poisoned once put. When the header's inline
 * paths poisoned by the application's flags and librill's slow paths by
 * the library's, the second round of gets handed out objects the inline put
 * had poisoned and only the library could have opened: a false report.
 */
#include <sanitizer/asan_interface.h>
#include <stdio.h>
#include <string.h>

#include "rill/mem.h"

#define N 300 /* past two batches of 64: the caches overflow to the depot */

/* No leak checking: it needs ptrace, which containers often refuse, and
 * says nothing about poisoning. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0:abort_on_error=1"; }

#define CHECK(c, ...)                                                                              \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

int main(void) {
  rill_slab_t *s = NULL;
  rill_slab_opts_t o = {.obj_size = 64, .flags = RILL_SLAB_UNCHECKED, .name = "mixed"};
  CHECK(rill_slab_create(&s, &o) == 0, "slab create: %s", rill_errmsg());
  static void *p[N];
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < N; i++) {
      CHECK(rill_slab_get(s, &p[i]) == 0, "get: %s", rill_errmsg());
      memset(p[i], round, 64); /* ASan stops here if the object is poisoned */
    }
    for (int i = 0; i < N; i++)
      CHECK(rill_slab_put(s, p[i]) == 0, "put: %s", rill_errmsg());
    for (int i = 0; i < N; i++)
      CHECK(__asan_address_is_poisoned(p[i]), "round %d: object %d is open after put", round, i);
  }
  rill_slab_destroy(s);

  rill_arena_t a;
  CHECK(rill_arena_init(&a, NULL) == 0, "arena init");
  for (int round = 0; round < 3; round++) {
    uint8_t *q = NULL;
    for (int i = 0; i < 100; i++) {
      CHECK(rill_arena_alloc(&a, 100, (void **)&q) == 0, "arena alloc");
      memset(q, i, 100);
    }
    CHECK(__asan_address_is_poisoned(q + 100),
          "arena: the space after the last allocation is open");
    rill_arena_reset(&a);
    CHECK(__asan_address_is_poisoned(q), "arena: memory taken back by reset is open");
  }
  rill_arena_fini(&a);
  puts("ok");
  return 0;
}
