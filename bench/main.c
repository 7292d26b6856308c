#include <stdio.h>

#include "bench.h"

int rill_bench_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "rill bench: no suites yet\n");
  return 2;
}
