/*
 * The bench harness behind `rill bench <suite>`: suites, timing, output.
 * Internal to the rill command; not part of librill's API.
 */
#ifndef RILL_BENCH_H
#define RILL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Entry point: argv[0] is "bench", argv[1] the suite. Returns an exit code. */
int rill_bench_main(int argc, char **argv);

#endif
