/* xxh3, compiled in from libxxhash's header rather than called in the
 * library: the same function and the same values, but the bus hashes
 * every event it publishes by key, and the call into libxxhash.so (its PLT
 * and its dispatch by length) was a large part of the hash of a 64-byte
 * event. Here the link-time optimizer can inline it into its callers. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "internal.h"

uint64_t rill_hash64(const void *data, size_t len) { return XXH3_64bits(data, len); }

uint64_t rill_hash64_seed(const void *data, size_t len, uint64_t seed) {
  return XXH3_64bits_withSeed(data, len, seed);
}
