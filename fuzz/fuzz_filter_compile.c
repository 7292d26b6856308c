/*
 * Compiles arbitrary bytes as a filter; whatever compiles is matched
 * against a few fixed payloads (valid, invalid, deep) and freed. A failed
 * compile must be RILL_EINVAL with a message naming a byte offset.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rill/filter.h"

static const char *payloads[] = {
    ("{\"a\":{\"b\":[1,2,{\"c\":\"x\"}]},\"n\":-1.5e3,\"s\":\"\\u00e9\\ud83d\\ude00\",\"t\":true,"
     "\"z\":null,\"a.b\":[[]],\"\":0}"),
    "[0,[1,[2]],\"a\",{\"a\":1,\"a\":2}]",
    "{\"a\":1,}",
    "\"\\ud800\"",
    "{\"k\":1e400,\"m\":9007199254740993,\"e\":\"\xc3\xa9\"}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A copy of exactly size bytes, so reading past the end is caught. */
  char *text = malloc(size ? size : 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  rill_filter_t *f = NULL;
  int rc = rill_filter_compile(&f, text, size);
  if (rc == 0) {
    for (size_t i = 0; i < sizeof payloads / sizeof *payloads; i++)
      (void)rill_filter_match(f, payloads[i], strlen(payloads[i]));
    (void)rill_filter_paths(f);
    rill_filter_destroy(f);
  } else if (rc != RILL_EINVAL || f != NULL || strstr(rill_errmsg(), "byte ") == NULL) {
    abort();
  }
  free(text);
  return 0;
}
