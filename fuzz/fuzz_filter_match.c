/*
 * Matches a few fixed filters against arbitrary bytes. Also checks that
 * the matcher and the validator agree: a filter that matches any valid
 * payload (an $exists-false on a path nothing has) matches exactly the
 * payloads rill_json_valid() accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rill/bus.h"

static const char *filters[] = {
    "{\"zz\\\\.never\": {\"$exists\": false}}",
    "{\"a.b[2].c\": \"x\", \"n\": {\"$gte\": -2000, \"$lt\": 1e300}}",
    ("{\"$or\": [{\"s\": \"\\u00e9\\ud83d\\ude00\"}, {\"t\": true}, {\"z\": null}], "
     "\"$not\": {\"a\": {\"$ne\": 1}}}"),
    "{\"[0]\": 0, \"[1][1][0]\": 2, \"[3].a\": {\"$exists\": true}}",
    "{\"k\": 1e400, \"m\": 9007199254740992, \"e\": {\"$ne\": \"\xc3\xa9\"}}",
    "{}",
};

static rill_filter_t *compiled[sizeof filters / sizeof *filters];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!compiled[0]) {
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
      if (rill_filter_compile(&compiled[i], filters[i], strlen(filters[i])) != 0)
        abort();
  }
  uint8_t *p = malloc(size ? size : 1);
  if (!p)
    return 0;
  memcpy(p, data, size);
  bool valid = rill_json_valid(p, size);
  if (rill_filter_match(compiled[0], p, size) != valid)
    abort();
  for (size_t i = 1; i < sizeof filters / sizeof *filters; i++) {
    bool m = rill_filter_match(compiled[i], p, size);
    if (m && !valid && rill_filter_paths(compiled[i]) != 0)
      abort();
  }
  if (!rill_filter_match(compiled[sizeof filters / sizeof *filters - 1], p, size))
    abort();
  free(p);
  return 0;
}
