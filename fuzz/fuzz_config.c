/*
 * rill serve's config file parser (tools/rill/config.c) on arbitrary
 * bytes: what reads is checked across keys, printed back as a config
 * file, and that text must read again to the same options (the printer
 * and the parser agree); everything is freed. A bad file must be a
 * negative RILL_E* code, never a crash. What it says on stderr goes to
 * /dev/null: the stderr FILE is swapped, not fd 2, so a sanitizer's
 * report and libFuzzer's own output still show.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/net.h"
#include "tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static FILE *quiet;
  if (!quiet)
    quiet = fopen("/dev/null", "w");
  FILE *f = fmemopen((void *)data, size, "r");
  if (!f || !quiet) {
    if (f)
      fclose(f);
    return 0;
  }
  FILE *err = stderr;
  stderr = quiet;
  rill_server_opts_t o = {.data_dir = "./rill-data"};
  rill_serve_config_t cfg = {0};
  int rc = rill_serve_config_read(f, "fuzz", &o, &cfg);
  fclose(f);
  if (rc > 0)
    abort();
  if (rc == 0 && rill_serve_config_check(&o, &cfg) == 0) {
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (m) {
      rill_serve_config_print(m, &o, &cfg);
      fclose(m);
      /* What was printed reads back, to the same limits. */
      FILE *back = fmemopen(text, len, "r");
      rill_server_opts_t o2 = {.data_dir = "./rill-data"};
      rill_serve_config_t cfg2 = {0};
      if (back && rill_serve_config_read(back, "printed", &o2, &cfg2) != 0)
        abort();
      if (back && (o2.max_body != (o.max_body ? o.max_body : RILL_NET_DEFAULT_BODY) ||
                   (o.max_conns && o2.max_conns != o.max_conns) || o2.sync != o.sync))
        abort();
      if (back)
        fclose(back);
      rill_serve_config_free(&cfg2);
      free(text);
    }
  }
  rill_serve_config_apply(&o, &cfg);
  rill_serve_config_free(&cfg);
  stderr = err;
  return 0;
}
