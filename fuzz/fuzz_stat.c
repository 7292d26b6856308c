/*
 * rill stat's parser of a server's Prometheus text (tools/rill/prom.c)
 * on arbitrary bytes, as a hostile or broken server could send them:
 * a malformed line is RILL_EPROTO, anything else parses into samples
 * whose strings are NUL-terminated and whose labels end with ','. What
 * it says of a refused line goes to /dev/null (the stderr FILE swapped,
 * not fd 2: a sanitizer's report still shows).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"
#include "rill/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A copy of exactly size bytes, so reading past the end is caught. */
  char *text = malloc(size ? size : 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  static FILE *quiet;
  if (!quiet && !(quiet = fopen("/dev/null", "w"))) {
    free(text);
    return 0;
  }
  rill_prom_samples_t ss = {0};
  FILE *err = stderr;
  stderr = quiet;
  int rc = rill_prom_parse(text, size, &ss, "fuzz");
  stderr = err;
  if (rc != 0 && rc != RILL_EPROTO)
    abort();
  for (size_t i = 0; i < ss.n; i++) {
    const rill_prom_sample_t *s = &ss.s[i];
    size_t ll = strlen(s->labels);
    if (!s->name[0] || (ll && s->labels[ll - 1] != ','))
      abort();
    if (s->topic)
      (void)strlen(s->topic);
  }
  rill_prom_free(&ss);
  free(text);
  return 0;
}
