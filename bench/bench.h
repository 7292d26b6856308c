/*
 * The bench harness behind `rill bench <suite>`: suites, timing, output.
 * Internal to the rill command; not part of librill's API.
 *
 * A suite measures cases. A case is a name and a size, run for several
 * implementations: rill's own (names starting "rill") and the peers a user
 * would otherwise pick. The harness runs a case's implementations
 * interleaved, repetition by repetition, in one process, so that the noise
 * of a small shared machine lands on all of them alike; it reports each
 * one's median ns/op and every peer's time as a multiple of rill's.
 *
 * Pinning is decided per case, the same for rill and its peers, and
 * printed with the case (a line above its rows; "pin" in its --json rows):
 * see bench_set_pin.
 */
#ifndef RILL_BENCH_H
#define RILL_BENCH_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/core.h"

/** Entry point: argv[0] is "bench", argv[1] the suite. Returns an exit code. */
int rill_bench_main(int argc, char **argv);

typedef struct bench_ctx bench_ctx_t;

typedef struct bench_suite {
  const char *name;
  const char *about;
  int (*run)(bench_ctx_t *b); /* 0, or non-zero when the suite could not run */
} bench_suite_t;

/* Every suite, in the order `rill bench all` runs them. A new suite adds
 * X(name) here and defines `const bench_suite_t bench_suite_<name>`. An
 * explicit list rather than constructors: the suites live in a static
 * library, and the linker drops members nothing refers to. */
#define BENCH_SUITES(X) X(mem) X(ring) X(bus) X(log) X(net) X(ipc)

#define BENCH__DECLARE(n) extern const bench_suite_t bench_suite_##n;
BENCH_SUITES(BENCH__DECLARE)
#undef BENCH__DECLARE

/* ---- cases ------------------------------------------------------------- */

/* One implementation of a case. Set exactly one of the three run functions;
 * each does `iters` iterations of the case (an iteration is ops_per_iter
 * operations). */
typedef struct bench_impl {
  const char *name; /* "rill_slab", "glibc", ...: rill's own start with "rill" */
  /* Timed by the harness around the call. */
  void (*run)(void *arg, uint64_t iters);
  /* Times itself and returns the nanoseconds that count (cases with threads,
   * where the clock starts in one thread and stops in another). */
  uint64_t (*run_timed)(void *arg, uint64_t iters);
  /* A latency case: records one sample (ns) per operation into h. The row's
   * ns/op is the median of the runs' means; p50/p99/p999 are over all runs. */
  void (*run_lat)(void *arg, uint64_t iters, rill_hist_t *h);
  void *arg;
} bench_impl_t;

typedef struct bench_case {
  const char *name;      /* "get_put_hot" */
  size_t size;           /* bytes, or 0 when the case has no size */
  uint64_t ops_per_iter; /* 0 means 1 */
  const bench_impl_t *impl;
  size_t n_impl;
} bench_case_t;

/* Where a case's runs execute. The harness applies it around every run of
 * the case (calibration included) and puts the mask the process started
 * with back after each, so that nothing a suite does between cases (its
 * server threads, its peers' processes) inherits a pin. */
typedef enum bench_pin {
  /* The thread that runs the case is pinned to one CPU (the last the
   * process may use: interrupts favour CPU 0), so that a migration does
   * not cost one implementation its warm caches mid-run. For
   * single-threaded cases: a thread the case starts inherits the pin. */
  BENCH_PIN_ONE = 0,
  /* Nothing is pinned: the case's threads and processes, rill's and the
   * peers', run on every CPU the process may use, as users run servers. */
  BENCH_PIN_NONE,
  /* The case pins its own threads (the suite's notes say where); the
   * harness leaves the mask alone. */
  BENCH_PIN_OWN,
} bench_pin_t;

/** How the cases the suite runs from now on are pinned, until it says
 *  otherwise; BENCH_PIN_ONE when a suite starts. */
void bench_set_pin(bench_ctx_t *b, bench_pin_t pin);

/** Runs a case (unless --filter excludes it) and prints its rows. The first
 *  implementation whose name starts with "rill" is the one the others are
 *  compared with. */
void bench_run(bench_ctx_t *b, const bench_case_t *c);

/** Runs several cases as one: every implementation of every case,
 *  interleaved run by run. For cases a suite compares with each other
 *  (the same code with 1 and with 100,000 objects held, say), so that
 *  ratio too is measured side by side. Rows print case by case. */
void bench_run_set(bench_ctx_t *b, const bench_case_t *cases, size_t n_cases);

/** Whether --filter lets a case run: lets a suite skip costly setup. */
bool bench_want(const bench_ctx_t *b, const char *case_name);

/** The median ns/op measured for a case, size and implementation in this
 *  suite, or NAN when it was not run. */
double bench_result(const bench_ctx_t *b, const char *case_name, size_t size, const char *impl);

/** A latency case's quantile over all its kept runs, as the row prints it:
 *  q is 50, 99 or 999 (p99.9). NAN when not run or not a latency case. */
double bench_result_q(const bench_ctx_t *b, const char *case_name, size_t size, const char *impl,
                      int q);

/** Prints one of the suite's goals with the figure measured for it: passes
 *  when value >= limit (at_least) or value <= limit (!at_least); NAN
 *  (not measured) is neither pass nor fail. unit follows both numbers. */
void bench_goal(bench_ctx_t *b, const char *what, double value, bool at_least, double limit,
                const char *unit);

/** A line for the reader (a peer that could not load, say): on stdout in
 *  the table, on stderr with --json so stdout stays one object per line. */
void bench_note(bench_ctx_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Prints the message and exits 1: for a failure inside a timed loop. */
_Noreturn void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

bool bench_quick(const bench_ctx_t *b);

/* ---- helpers ----------------------------------------------------------- */

/** Pins the calling thread to one CPU. 0, or a negative errno when the CPU
 *  is not ours to use; a bench carries on unpinned then. */
int bench_pin_cpu(int cpu);

/** CPUs online. */
int bench_ncpu(void);

/** Lets the calling thread run on every CPU the process started with
 *  again: a case that pinned itself undoes it with this. */
void bench_unpin(void);

/** A case's rate in millions of operations a second, from its median
 *  ns/op (NAN when it was not run): what the "M/s" goals compare. */
double bench_rate_m(const bench_ctx_t *b, const char *case_name, size_t size, const char *impl);

/** The peer's median ns/op over impl's for one case and size: above 1,
 *  impl is the faster (NAN when either was not run). */
double bench_ratio(const bench_ctx_t *b, const char *case_name, size_t size, const char *peer,
                   const char *impl);

/** Makes a temp dir for a suite, $TMPDIR/rill-bench-<suite>-XXXXXX
 *  (/tmp without TMPDIR), into out. 0, or -1 after saying why on stderr
 *  (out is then ""). */
int bench_tmp_dir(char *out, size_t cap, const char *suite);

/** Removes a directory and everything below it (a suite's temp dir). 0,
 *  or -1 with errno set; a path already gone is not an error. */
int bench_rm_tree(const char *path);

/* Makes the compiler believe p is used and any memory may have been read
 * or written, so work on it is neither folded away nor hoisted out of the
 * loop. Costs no instruction. */
static inline __attribute__((always_inline)) void bench_black_box(const void *p) {
  __asm__ volatile("" : : "r"(p) : "memory");
}

/* Spin-wait hint. */
static inline __attribute__((always_inline)) void bench_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield" ::: "memory");
#endif
}

/** A start barrier for threaded cases: each thread pins itself and waits
 *  until all nthreads are there, so the clock starts with everyone
 *  running. share says some threads share a CPU: waiters then yield after
 *  a short spin instead of spinning the other off its CPU. */
typedef struct bench_barrier {
  int nthreads;
  _Atomic int ready;
  atomic_bool share;
} bench_barrier_t;

static inline void bench_barrier_init(bench_barrier_t *b, int nthreads, bool share) {
  b->nthreads = nthreads;
  atomic_init(&b->ready, 0);
  atomic_init(&b->share, share);
}

/** One step of a wait loop (for the barrier, or for data): spin, and yield
 *  when the CPU is shared. */
static inline void bench_wait_step(bench_barrier_t *b, unsigned *spins) {
  bench_relax();
  if (++*spins > 64 && atomic_load_explicit(&b->share, memory_order_relaxed))
    sched_yield();
}

/** Pins the caller to cpu (marking the CPU shared if it cannot) and waits
 *  for the others. */
static inline void bench_barrier_wait(bench_barrier_t *b, int cpu) {
  if (bench_pin_cpu(cpu) != 0)
    atomic_store(&b->share, true);
  atomic_fetch_add(&b->ready, 1);
  for (unsigned spins = 0; atomic_load(&b->ready) < b->nthreads;)
    bench_wait_step(b, &spins);
}

#endif
