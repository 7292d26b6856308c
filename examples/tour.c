/*
 * The README's tour as a program. CI builds it against an installed rill
 * through pkg-config, so the tour and the install both stay true.
 */
#include <stdio.h>
#include <string.h>

#include <rill/rill.h>

int main(void) {
  rill_slab_t *slab;
  rill_slab_opts_t o = {.obj_size = 64, .max_objects = 1 << 20};
  int rc = rill_slab_create(&slab, &o);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", rill_strerror(rc), rill_errmsg());
    return 1;
  }
  void *msg;
  if (rill_slab_get(slab, &msg) != 0 || rill_slab_put(slab, msg) != 0)
    return 1;
  rc = rill_slab_put(slab, (char *)msg + 1);
  printf("a bad put: %s (%s)\n", rill_strerror(rc), rill_errmsg());
  rill_slab_destroy(slab);

  rill_buf_t whole, part;
  if (rill_buf_copy(&whole, "header:body", 11) != 0)
    return 1;
  if (rill_buf_slice(&part, &whole, 7, 4) != 0)
    return 1;
  rill_buf_release(&whole);
  printf("slice: %.*s, refs %u\n", (int)part.len, (const char *)part.data, rill_buf_refs(&part));
  int ok = part.len == 4 && memcmp(part.data, "body", 4) == 0;
  rill_buf_release(&part);
  return ok ? 0 : 1;
}
