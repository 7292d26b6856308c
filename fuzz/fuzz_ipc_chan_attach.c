/*
 * The channel segment's attach-time check on arbitrary bytes. What it
 * accepts, summary reads (counters, the participants table, cursors) as
 * info and list do: never a crash, never a read outside the bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20))
    return 0;
  uint8_t *mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
  if (!mem)
    return 0;
  memcpy(mem, data, size);
  /* Half the time the magic and version are stamped on, so the fuzzer
   * reaches the geometry checks without guessing them. */
  if (size >= 8 && data[size - 1] % 2 == 0) {
    uint32_t magic = RILL_IPC_CHAN_MAGIC;
    uint16_t version = RILL_IPC_CHAN_VERSION;
    memcpy(mem, &magic, 4);
    memcpy(mem + 4, &version, 2);
  }
  struct rill__chan_geom g;
  if (rill__chan_check("fuzz", mem, size, &g) == 0) {
    rill_ipc_chan_info_t info;
    rill__chan_summary(mem, &g, &info);
    if (info.senders > g.max_senders || info.receivers > g.max_receivers || g.total != size)
      abort();
  }
  free(mem);
  return 0;
}
