/*
 * ASan poisoning of the memory rill hands out and takes back: free slab
 * objects, arena space not yet allocated, free I/O pool buffers.
 *
 * Whether to poison is librill's decision, made where the library runs,
 * never by the header an application includes. The inline fast paths in
 * rill/mem.h used to poison according to the includer's
 * __SANITIZE_ADDRESS__, while librill's slow paths followed the library's
 * own build: an ASan application on a plain librill poisoned objects in its
 * inline put that the library's slow get then handed out still poisoned (a
 * false report on the next write), and a plain application on an ASan
 * librill unpoisoned nothing the library had poisoned.
 *
 * Now the header never poisons. Poisoning is on when the ASan runtime is
 * in the process, whichever side brought it (an ASan build of librill
 * needs it; an ASan application loads it): its entry points are weak
 * references here, null without it. When it is on, librill keeps the inline
 * paths out of the way (a slab's head names the always-empty cache 0, an
 * arena's end stays NULL), so every get, put and allocation goes through
 * the library, which poisons and unpoisons consistently. Without ASan the
 * inline paths are exactly what they were.
 */
#include "core/internal.h"

extern void __asan_poison_memory_region(void const volatile *addr, size_t size)
    __attribute__((weak));
extern void __asan_unpoison_memory_region(void const volatile *addr, size_t size)
    __attribute__((weak));

bool rill__poisoning(void) { return __asan_poison_memory_region && __asan_unpoison_memory_region; }

void rill__poison(const void *p, size_t n) {
  if (rill__poisoning())
    __asan_poison_memory_region(p, n);
}

void rill__unpoison(const void *p, size_t n) {
  if (rill__poisoning())
    __asan_unpoison_memory_region(p, n);
}
