/*
 * Matches a few fixed filters against arbitrary bytes. Also checks that
 * the matcher and the validator agree: a filter that tests a path but
 * holds for every valid payload ($exists false or $exists true) matches
 * exactly the payloads rill_filter_json_valid() accepts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/filter.h"

static const char *filters[] = {
    "{\"$or\": [{\"a.b\": {\"$exists\": false}}, {\"a.b\": {\"$exists\": true}}]}",
    "{\"a.b[2].c\": \"x\", \"n\": {\"$gte\": -2000, \"$lt\": 1e300}}",
    ("{\"$or\": [{\"s\": \"\\u00e9\\ud83d\\ude00\"}, {\"t\": true}, {\"z\": null}], "
     "\"$not\": {\"a\": {\"$ne\": 1}}}"),
    "{\"[0]\": 0, \"[1][1][0]\": 2, \"[3].a\": {\"$exists\": true}}",
    "{\"k\": 1e400, \"m\": 9007199254740992, \"e\": {\"$ne\": \"\xc3\xa9\"}}",
    "{}",
};

static rill_filter_t *compiled[sizeof filters / sizeof *filters];

/* Each test alone (its paths found by the validating pass) and behind 64
 * other paths (found by a scan of their own): the two must agree. */
static const char *pairs[] = {
    "{\"a.b[1]\": {\"$exists\": true}}",
    "{\"a.c\": \"x\\u0079\"}",
    "{\"[0].a\": {\"$gt\": 0}}",
    "{\"a.a.a\": null}",
    "{\"a\": {\"$ne\": 1}}",
};
static rill_filter_t *alone[sizeof pairs / sizeof *pairs];
static rill_filter_t *behind[sizeof pairs / sizeof *pairs];

static rill_filter_t *compile_behind(const char *test) {
  /* {"$or": [{"$and": [{"d0": {"$exists": true}}, {"d0": {"$exists": false}}, ...]}, test]}:
   * the $and is false on every valid payload and takes path indexes 0-63. */
  static char buf[8192];
  size_t n = (size_t)snprintf(buf, sizeof buf, "{\"$or\": [{\"$and\": [");
  for (int i = 0; i < 64; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n,
                          "%s{\"d%d\": {\"$exists\": true}}, {\"d%d\": {\"$exists\": false}}",
                          i ? ", " : "", i, i);
  n += (size_t)snprintf(buf + n, sizeof buf - n, "]}, %s]}", test);
  rill_filter_t *f = NULL;
  if (rill_filter_compile(&f, buf, n) != 0 || rill_filter_paths(f) <= 64)
    abort();
  return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!compiled[0]) {
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
      if (rill_filter_compile(&compiled[i], filters[i], strlen(filters[i])) != 0)
        abort();
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
      if (rill_filter_compile(&alone[i], pairs[i], strlen(pairs[i])) != 0)
        abort();
      behind[i] = compile_behind(pairs[i]);
    }
  }
  uint8_t *p = malloc(size ? size : 1);
  if (!p)
    return 0;
  memcpy(p, data, size);
  bool valid = rill_filter_json_valid(p, size);
  if (rill_filter_match(compiled[0], p, size) != valid)
    abort();
  for (size_t i = 1; i < sizeof filters / sizeof *filters; i++) {
    bool m = rill_filter_match(compiled[i], p, size);
    if (m && !valid && rill_filter_paths(compiled[i]) != 0)
      abort();
  }
  if (!rill_filter_match(compiled[sizeof filters / sizeof *filters - 1], p, size))
    abort();
  for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++)
    if (rill_filter_match(alone[i], p, size) != rill_filter_match(behind[i], p, size))
      abort();
  free(p);
  return 0;
}
