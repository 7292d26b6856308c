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

  /* The bus, with a window consumers poll. */
  rill_bus_memsink_t *window;
  if (rill_bus_memsink_create(&window, &(rill_bus_memsink_opts_t){.shards = 4}) != 0)
    return 1;
  rill_bus_sink_t sink;
  rill_bus_sink_memsink(&sink, window);
  rill_bus_t *bus;
  if (rill_bus_create(
          &bus, &(rill_bus_opts_t){.shards = 4, .sink = &sink, .policy = RILL_BUS_BLOCK}) != 0)
    return 1;
  rill_bus_producer_t *p;
  if (rill_bus_producer_create(&p, bus) != 0)
    return 1;
  if (rill_bus_publish(p, "{\"user\":\"ada\",\"n\":3}", 20) != 0 ||
      rill_bus_publish(p, "{\"user\":\"bob\",\"n\":1}", 20) != 0)
    return 1;
  rill_bus_shutdown(bus, 1000000000, NULL); /* delivers everything published */
  rill_filter_t *f;
  if (rill_filter_compile(&f, "{\"n\":{\"$gte\":2}}", 16) != 0)
    return 1;
  rill_bus_cursor_t *cur;
  if (rill_bus_cursor_create(&cur, window, RILL_BUS_FROM_OLDEST) != 0)
    return 1;
  rill_bus_event_t ev[64];
  size_t n;
  if (rill_bus_poll(cur, f, RILL_BUS_ORDER_TIME, ev, 64, &n) != 0)
    return 1;
  printf("poll: %zu event(s) with n >= 2: %.*s\n", n, n ? (int)ev[0].len : 0,
         n ? (const char *)ev[0].data : "");
  ok = ok && n == 1 && ev[0].len == 20 && memcmp(ev[0].data, "{\"user\":\"ada\"", 13) == 0;
  rill_bus_cursor_destroy(cur);
  rill_filter_destroy(f);
  rill_bus_destroy(bus);
  rill_bus_memsink_destroy(window);
  return ok ? 0 : 1;
}
