/*
 * Loads arbitrary bytes as a saved bus cursor and polls with what loads.
 * load must refuse what it cannot trust; a cursor it accepts may point
 * anywhere a well-formed save can name, and poll must then answer
 * RILL_ECORRUPT, RILL_ELAGGED or events, never crash or hang.
 */
#include <stdint.h>
#include <string.h>

#include "rill/bus.h"

#define SHARDS 4

static rill_bus_memsink_t *ms;
static uint64_t ms_id;

/* A sink with a few hundred events in each shard's window, some of them
 * lapped already, written through the sink as a bus's worker would. */
static void setup(void) {
  rill_bus_memsink_create(&ms, &(rill_bus_memsink_opts_t){.shards = SHARDS, .window_bytes = 8192});
  rill_bus_sink_t sink;
  rill_bus_sink_memsink(&sink, ms);
  for (uint32_t s = 0; s < SHARDS; s++)
    for (uint64_t seq = 0; seq < 300; seq++) {
      char p[40];
      size_t n = (size_t)(seq % 37);
      memset(p, '0' + (int)(seq % 10), n);
      rill_bus_event_t ev = {p, (uint32_t)n, s, seq, 1000 + seq * SHARDS + s};
      sink.on_batch(sink.ctx, &ev, 1);
    }
  /* The sink's identity, from a save of a fresh cursor. */
  rill_bus_cursor_t *c;
  rill_bus_cursor_create(&c, ms, RILL_BUS_FROM_OLDEST);
  uint8_t b[32 + 16 * SHARDS];
  rill_bus_cursor_save(c, b, sizeof b, NULL);
  memcpy(&ms_id, b + 16, 8);
  rill_bus_cursor_destroy(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ms)
    setup();
  if (size > 4096)
    return 0;
  uint8_t b[4096];
  memcpy(b, data, size);
  /* Half the time, make the input a well-formed save of its positions:
   * magic, version, this sink's shape and identity, a right checksum. So
   * the fuzzer spends its time on positions, not on guessing a hash. */
  size_t want = 32 + 16 * SHARDS;
  if (size == want && data[size - 1] % 2) {
    static const uint8_t hdr[16] = {'R', 'L', 'C', 'U', 1, 0, 0, 0, SHARDS, 0, 0, 0, 0, 0, 0, 0};
    memcpy(b, hdr, sizeof hdr);
    memcpy(b + 16, &ms_id, 8);
    uint64_t sum = rill_hash64(b, want - 8);
    memcpy(b + want - 8, &sum, 8);
  }
  rill_bus_cursor_t *c = NULL;
  if (rill_bus_cursor_load(&c, ms, b, size) != 0)
    return 0;
  rill_bus_event_t ev[16];
  size_t n;
  uint64_t sum = 0;
  for (int i = 0; i < 8; i++) {
    int rc = rill_bus_poll(c, NULL, i % 2 ? RILL_BUS_ORDER_TIME : RILL_BUS_ORDER_SHARD, ev, 16, &n);
    for (size_t k = 0; k < n; k++)
      for (uint32_t j = 0; j < ev[k].len; j++) /* touch every byte: ASan checks the bounds */
        sum += ((const uint8_t *)ev[k].data)[j];
    if (rc != 0 && rc != RILL_ELAGGED)
      break;
  }
  rill_bus_cursor_destroy(c);
  return (int)(sum & 0); /* 0; keeps sum live */
}
