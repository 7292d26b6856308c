/*
 * The bench harness: argument parsing, the suite registry, the timing loop
 * and the two output formats. See bench.h for the model.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define BENCH__REF(n) &bench_suite_##n,
static const bench_suite_t *const suites[] = {BENCH_SUITES(BENCH__REF)};
#undef BENCH__REF
#define N_SUITES (sizeof suites / sizeof suites[0])

/* Repetitions per implementation and the wall time each should take. Nine
 * gives a median that one preempted run cannot move; --quick is for smoke
 * runs, where the figures only need to exist. */
#define REPS_FULL        9
#define TARGET_NS_FULL   20000000u
#define REPS_QUICK       3
#define TARGET_NS_QUICK  5000000u
#define MAX_REPS         16
#define BENCH_TUNABLE    "glibc.rtld.optional_static_tls"
#define BENCH_TUNABLE_KV BENCH_TUNABLE "=65536"

typedef struct bench_row {
  const char *case_name;
  size_t size;
  const char *impl;
  double ns;
  bool lat;
  uint64_t p50, p99, p999;
  bench_pin_t pin;
} bench_row_t;

struct bench_ctx {
  const bench_suite_t *suite;
  bool json, quick;
  bench_pin_t pin;
  const char *filter;
  int reps;
  uint64_t target_ns;
  bench_row_t *rows;
  size_t n_rows, cap_rows;
  bool header_done, goals_started;
  const char *last_case;
};

/* ---- small helpers ----------------------------------------------------- */

_Noreturn void bench_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("rill bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* The CPUs the process was given when it started, before any pin: what
 * bench_unpin and every unpinned case go back to (a `taskset` around
 * `rill bench` is kept). pin_one is the CPU of BENCH_PIN_ONE, the last of
 * them, or -1 when there is no mask to pin within. */
static cpu_set_t start_mask;
static bool have_start_mask;
static int pin_one = -1;

static void start_mask_init(void) {
  have_start_mask = pthread_getaffinity_np(pthread_self(), sizeof start_mask, &start_mask) == 0 &&
                    CPU_COUNT(&start_mask) > 0;
  for (int cpu = CPU_SETSIZE - 1; have_start_mask && cpu >= 0 && pin_one < 0; cpu--)
    if (CPU_ISSET(cpu, &start_mask))
      pin_one = cpu;
}

/* The start mask as a list of ranges, "0-1" or "0,2-3". */
static void start_cpus(char *out, size_t cap) {
  size_t at = 0;
  out[0] = 0;
  if (!have_start_mask) {
    snprintf(out, cap, "0-%d", bench_ncpu() - 1);
    return;
  }
  for (int c = 0; c < CPU_SETSIZE && at < cap; c++) {
    if (!CPU_ISSET(c, &start_mask))
      continue;
    int e = c;
    while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, &start_mask))
      e++;
    int w = e > c ? snprintf(out + at, cap - at, "%s%d-%d", at ? "," : "", c, e)
                  : snprintf(out + at, cap - at, "%s%d", at ? "," : "", c);
    at += w > 0 ? (size_t)w : 0;
    c = e;
  }
}

int bench_pin_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu < 0 || cpu >= CPU_SETSIZE)
    return -EINVAL;
  CPU_SET(cpu, &set);
  return -pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int bench_ncpu(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

void bench_unpin(void) {
  if (have_start_mask) {
    pthread_setaffinity_np(pthread_self(), sizeof start_mask, &start_mask);
    return;
  }
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c = 0; c < bench_ncpu() && c < CPU_SETSIZE; c++)
    CPU_SET(c, &all);
  pthread_setaffinity_np(pthread_self(), sizeof all, &all);
}

void bench_set_pin(bench_ctx_t *b, bench_pin_t pin) { b->pin = pin; }

/* What a case's rows say about their pin: BENCH_PIN_ONE without a CPU to
 * pin to runs unpinned, and says so. */
static bench_pin_t pin_effective(bench_pin_t pin) {
  return pin == BENCH_PIN_ONE && pin_one < 0 ? BENCH_PIN_NONE : pin;
}

/* Around every run of a case: a pinned case's thread goes to its CPU, an
 * unpinned one is let go on every CPU (whatever ran before it), and a
 * case that pins itself is left alone. */
static void pin_enter(bench_pin_t pin) {
  if (pin_effective(pin) == BENCH_PIN_ONE)
    bench_pin_cpu(pin_one);
  else if (pin == BENCH_PIN_NONE)
    bench_unpin();
}

/* After every run: nothing the suite does next inherits the pin. */
static void pin_leave(bench_pin_t pin) {
  if (pin_effective(pin) == BENCH_PIN_ONE)
    bench_unpin();
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p) == 0 || errno == ENOENT ? 0 : -1;
}

int bench_tmp_dir(char *out, size_t cap, const char *suite) {
  const char *tmp = getenv("TMPDIR");
  snprintf(out, cap, "%s/rill-bench-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", suite);
  if (!mkdtemp(out)) {
    fprintf(stderr, "rill bench %s: mkdtemp %s: %s\n", suite, out, strerror(errno));
    if (cap)
      out[0] = 0;
    return -1;
  }
  return 0;
}

int bench_rm_tree(const char *path) {
  return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT ? -1 : 0;
}

bool bench_quick(const bench_ctx_t *b) { return b->quick; }

bool bench_want(const bench_ctx_t *b, const char *case_name) {
  return !b->filter || strstr(case_name, b->filter) != NULL;
}

static FILE *text_out(const bench_ctx_t *b) { return b->json ? stderr : stdout; }

void bench_note(bench_ctx_t *b, const char *fmt, ...) {
  FILE *f = text_out(b);
  va_list ap;
  va_start(ap, fmt);
  fputs("note: ", f);
  vfprintf(f, fmt, ap);
  fputc('\n', f);
  va_end(ap);
  fflush(f);
}

static bool is_rill(const char *impl) { return strncmp(impl, "rill", 4) == 0; }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* What two back-to-back clock reads cost: it is inside every latency
 * sample, so the table says how much. */
static double timer_cost_ns(void) {
  double v[15];
  for (int r = 0; r < 15; r++) {
    uint64_t t0 = rill_time_ns(), t1 = t0;
    for (int i = 0; i < 1000; i++)
      t1 = rill_time_ns();
    v[r] = (double)(t1 - t0) / 1000;
  }
  return median(v, 15);
}

/* ---- output ------------------------------------------------------------ */

static void print_header(bench_ctx_t *b) {
  if (b->header_done || b->json)
    return;
  b->header_done = true;
  /* The first read calibrates the TSC, so the line below names the clock
   * the rows use. */
  (void)rill_time_ns();
  printf("rill bench %s: %d CPUs, median of %d runs of ~%.0f ms per row, clock %s (%.1f ns a "
         "read, inside latency samples)\n",
         b->suite->name, bench_ncpu(), b->reps, (double)b->target_ns / 1e6,
         rill__tsc.usable ? "TSC" : "CLOCK_MONOTONIC", timer_cost_ns());
  printf("vs rill: the peer's ns/op divided by rill's for the same case and size (above 1: rill "
         "is faster)\n\n");
  printf("%-20s %6s  %-16s %10s %9s %8s %8s %8s\n", "case", "size", "impl", "ns/op", "vs rill",
         "p50", "p99", "p999");
}

/* The line that heads a case's rows in the table: how it was pinned. */
static void print_case_head(const bench_row_t *r) {
  char cpus[64];
  switch (pin_effective(r->pin)) {
  case BENCH_PIN_ONE:
    printf("%s: pinned to CPU %d (the thread that runs it, and threads it starts), rill and the "
           "peers alike\n",
           r->case_name, pin_one);
    break;
  case BENCH_PIN_NONE:
    start_cpus(cpus, sizeof cpus);
    printf("%s: not pinned: every thread and process, rill's and the peers', may run on CPUs %s\n",
           r->case_name, cpus);
    break;
  case BENCH_PIN_OWN:
    printf("%s: pinned by the case itself, rill and the peers alike (the suite's notes say how)\n",
           r->case_name);
    break;
  }
}

/* The "pin" field of a --json row: "cpu1", "none" or "own". */
static void json_pin(const bench_row_t *r) {
  switch (pin_effective(r->pin)) {
  case BENCH_PIN_ONE: printf(",\"pin\":\"cpu%d\"", pin_one); break;
  case BENCH_PIN_NONE: printf(",\"pin\":\"none\""); break;
  case BENCH_PIN_OWN: printf(",\"pin\":\"own\""); break;
  }
}

static void json_str(const char *key, const char *s) {
  printf("\"%s\":\"", key);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      putchar('\\');
    if ((unsigned char)*s >= 0x20)
      putchar(*s);
  }
  putchar('"');
}

static void print_row(bench_ctx_t *b, const bench_row_t *r, double ratio) {
  if (b->json) {
    putchar('{');
    json_str("suite", b->suite->name);
    putchar(',');
    json_str("case", r->case_name);
    putchar(',');
    json_str("impl", r->impl);
    printf(",\"size\":%zu,\"ns_per_op\":%.2f", r->size, r->ns);
    if (r->lat)
      printf(",\"p50_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64 ",\"p999_ns\":%" PRIu64, r->p50, r->p99,
             r->p999);
    if (!isnan(ratio))
      printf(",\"ratio_vs_rill\":%.2f", ratio);
    json_pin(r);
    printf("}\n");
  } else {
    if (!b->last_case || strcmp(b->last_case, r->case_name) != 0) {
      if (b->last_case)
        putchar('\n');
      print_case_head(r);
    }
    b->last_case = r->case_name;
    char ratio_s[32] = "", p[3][24] = {"", "", ""};
    if (!isnan(ratio))
      snprintf(ratio_s, sizeof ratio_s, "%.2fx", ratio);
    if (r->lat) {
      snprintf(p[0], sizeof p[0], "%" PRIu64, r->p50);
      snprintf(p[1], sizeof p[1], "%" PRIu64, r->p99);
      snprintf(p[2], sizeof p[2], "%" PRIu64, r->p999);
    }
    printf("%-20s %6zu  %-16s %10.2f %9s %8s %8s %8s\n", r->case_name, r->size, r->impl, r->ns,
           ratio_s, p[0], p[1], p[2]);
  }
  fflush(stdout);
}

static void add_row(bench_ctx_t *b, const bench_row_t *r) {
  if (b->n_rows == b->cap_rows) {
    size_t cap = b->cap_rows ? b->cap_rows * 2 : 64;
    bench_row_t *n = realloc(b->rows, cap * sizeof *n);
    if (!n)
      bench_die("out of memory");
    b->rows = n;
    b->cap_rows = cap;
  }
  b->rows[b->n_rows++] = *r;
}

static const bench_row_t *find_row(const bench_ctx_t *b, const char *case_name, size_t size,
                                   const char *impl) {
  for (size_t i = 0; i < b->n_rows; i++) {
    const bench_row_t *r = &b->rows[i];
    if (r->size == size && !strcmp(r->case_name, case_name) && !strcmp(r->impl, impl))
      return r;
  }
  return NULL;
}

double bench_result(const bench_ctx_t *b, const char *case_name, size_t size, const char *impl) {
  const bench_row_t *r = find_row(b, case_name, size, impl);
  return r ? r->ns : NAN;
}

double bench_rate_m(const bench_ctx_t *b, const char *case_name, size_t size, const char *impl) {
  return 1e3 / bench_result(b, case_name, size, impl);
}

double bench_ratio(const bench_ctx_t *b, const char *case_name, size_t size, const char *peer,
                   const char *impl) {
  return bench_result(b, case_name, size, peer) / bench_result(b, case_name, size, impl);
}

double bench_result_q(const bench_ctx_t *b, const char *case_name, size_t size, const char *impl,
                      int q) {
  const bench_row_t *r = find_row(b, case_name, size, impl);
  if (!r || !r->lat)
    return NAN;
  return (double)(q == 50 ? r->p50 : q == 99 ? r->p99 : q == 999 ? r->p999 : 0);
}

void bench_goal(bench_ctx_t *b, const char *what, double value, bool at_least, double limit,
                const char *unit) {
  FILE *f = text_out(b);
  if (!b->goals_started) {
    b->goals_started = true;
    fprintf(f, "\ngoals (%s):\n", b->suite->name);
  }
  const char *verdict = isnan(value)                                   ? "n/a "
                        : (at_least ? value >= limit : value <= limit) ? "PASS"
                                                                       : "FAIL";
  char got[32] = "not measured";
  if (!isnan(value))
    snprintf(got, sizeof got, "%.2f%s", value, unit);
  fprintf(f, "  %s  %-52s %14s   (goal %s %g%s)\n", verdict, what, got,
          at_least ? ">=" : "<=", limit, unit);
  fflush(f);
}

/* ---- timing ------------------------------------------------------------ */

static uint64_t run_once(const bench_impl_t *im, uint64_t iters, rill_hist_t *h, bench_pin_t pin) {
  uint64_t t;
  pin_enter(pin);
  if (im->run_timed) {
    t = im->run_timed(im->arg, iters);
  } else {
    uint64_t t0 = rill_time_ns();
    if (im->run_lat)
      im->run_lat(im->arg, iters, h);
    else
      im->run(im->arg, iters);
    t = rill_time_ns() - t0;
  }
  pin_leave(pin);
  return t;
}

/* Grows the iteration count until one run takes a good part of the target
 * time, then scales it to the target. The runs on the way there are the
 * warm-up: caches, branch predictors, page faults and lazily built
 * allocator state all settle before anything is kept. */
static uint64_t calibrate(const bench_ctx_t *b, const bench_impl_t *im, rill_hist_t *scratch) {
  uint64_t n = 1, t;
  for (;;) {
    rill_hist_init(scratch);
    t = run_once(im, n, scratch, b->pin);
    /* A stall of a few ms (a preemption on a loaded machine, a peer's
     * slow wake-up) can make a short run look long enough, and leave the
     * case at a handful of iterations whose fixed costs (a thread started,
     * an order to a peer process) then count per operation: the shorter
     * of two runs decides. Not for an operation slower than the target. */
    if (t >= b->target_ns / 4 && t < b->target_ns * 4) {
      rill_hist_init(scratch);
      uint64_t again = run_once(im, n, scratch, b->pin);
      t = again < t ? again : t;
    }
    if (t >= b->target_ns / 4 || n >= ((uint64_t)1 << 40))
      break;
    uint64_t grow = t ? (b->target_ns / 2) / t : 1000;
    n *= grow < 2 ? 2 : grow > 1000 ? 1000 : grow;
  }
  uint64_t iters = (uint64_t)((double)n * (double)b->target_ns / (double)(t ? t : 1));
  if (iters < 1)
    iters = 1;
  /* One more run at the final count, so the first kept one is not the
   * first at that count; not needed when one iteration already filled the
   * target (a peer that takes a second per round, say). */
  if (iters != n) {
    rill_hist_init(scratch);
    run_once(im, iters, scratch, b->pin);
  }
  return iters;
}

/* One implementation of one case, as the runner sees it. */
typedef struct slot {
  const bench_case_t *c;
  const bench_impl_t *im;
  uint64_t iters;
  double ns[MAX_REPS];
  rill_hist_t hist;
} slot_t;

void bench_run_set(bench_ctx_t *b, const bench_case_t *cases, size_t n_cases) {
  size_t n = 0;
  for (size_t k = 0; k < n_cases; k++)
    if (bench_want(b, cases[k].name))
      n += cases[k].n_impl;
  if (n == 0)
    return;
  print_header(b);
  slot_t *slot = malloc(n * sizeof *slot);
  rill_hist_t *scratch = malloc(sizeof *scratch);
  if (!slot || !scratch)
    bench_die("out of memory");
  n = 0;
  for (size_t k = 0; k < n_cases; k++)
    for (size_t i = 0; bench_want(b, cases[k].name) && i < cases[k].n_impl; i++)
      slot[n++] = (slot_t){.c = &cases[k], .im = &cases[k].impl[i]};

  for (size_t i = 0; i < n; i++) {
    slot[i].iters = calibrate(b, slot[i].im, scratch);
    rill_hist_init(&slot[i].hist);
  }
  for (int r = 0; r < b->reps; r++) {
    for (size_t i = 0; i < n; i++) {
      slot_t *sl = &slot[i];
      uint64_t ops = sl->c->ops_per_iter ? sl->c->ops_per_iter : 1;
      rill_hist_init(scratch);
      uint64_t t = run_once(sl->im, sl->iters, scratch, b->pin);
      sl->ns[r] = (double)t / (double)(sl->iters * ops);
      /* A latency row's ns/op is the samples' mean, taken per run and
       * then the median of the runs: one preemption of a few ms inside
       * a run moves a mean, not the median. */
      if (sl->im->run_lat) {
        sl->ns[r] = rill_hist_mean(scratch);
        rill_hist_merge(&sl->hist, scratch);
      }
    }
  }

  for (size_t i = 0; i < n;) {
    const bench_case_t *c = slot[i].c;
    size_t end = i;
    double ref = NAN;
    for (; end < n && slot[end].c == c; end++) {
      slot_t *sl = &slot[end];
      bench_row_t row = {
          .case_name = c->name, .size = c->size, .impl = sl->im->name, .pin = b->pin};
      row.ns = median(sl->ns, b->reps);
      if (sl->im->run_lat) {
        row.lat = true;
        row.p50 = rill_hist_quantile(&sl->hist, 0.50);
        row.p99 = rill_hist_quantile(&sl->hist, 0.99);
        row.p999 = rill_hist_quantile(&sl->hist, 0.999);
      }
      if (isnan(ref) && is_rill(row.impl))
        ref = row.ns;
      add_row(b, &row);
    }
    for (; i < end; i++) {
      const bench_row_t *row = &b->rows[b->n_rows - (end - i)];
      print_row(b, row, is_rill(row->impl) || !(ref > 0) ? NAN : row->ns / ref);
    }
  }
  free(scratch);
  free(slot);
}

void bench_run(bench_ctx_t *b, const bench_case_t *c) { bench_run_set(b, c, 1); }

/* ---- running suites ---------------------------------------------------- */

/* jemalloc, dlopen'd as a peer, needs more static TLS than glibc keeps
 * spare for libraries loaded after startup, and that reserve is fixed
 * when the process starts. So `rill bench` asks for it and starts itself
 * again. The marker stops a loop where the variable does not survive
 * exec (setuid, say). */
static void ensure_static_tls(int argc, char **argv) {
  const char *t = getenv("GLIBC_TUNABLES");
  if ((t && strstr(t, BENCH_TUNABLE)) || getenv("RILL_BENCH_REEXEC"))
    return;
  size_t len = (t ? strlen(t) + 1 : 0) + sizeof BENCH_TUNABLE_KV;
  char *v = malloc(len);
  char **nargv = calloc((size_t)argc + 2, sizeof *nargv);
  if (!v || !nargv)
    bench_die("out of memory");
  snprintf(v, len, "%s%s%s", t ? t : "", t && *t ? ":" : "", BENCH_TUNABLE_KV);
  setenv("GLIBC_TUNABLES", v, 1);
  setenv("RILL_BENCH_REEXEC", "1", 1);
  nargv[0] = program_invocation_name;
  for (int i = 0; i < argc; i++)
    nargv[i + 1] = argv[i];
  fflush(NULL);
  execv("/proc/self/exe", nargv);
  fprintf(stderr, "rill bench: cannot restart with %s (%s); jemalloc may not load\n",
          BENCH_TUNABLE_KV, strerror(errno));
  free(v);
  free(nargv);
}

static int run_suite(bench_ctx_t *base, const bench_suite_t *s) {
  bench_ctx_t b = *base;
  b.suite = s;
  b.pin = BENCH_PIN_ONE;
  /* Pins are the cases' (bench_set_pin): the suite itself, its set-up and
   * the threads and processes that start there, runs on every CPU. */
  bench_unpin();
  int rc = s->run(&b);
  bench_unpin();
  if (!b.json && b.header_done)
    putchar('\n');
  free(b.rows);
  fflush(NULL);
  return rc;
}

static int usage(FILE *f) {
  fprintf(f, "usage: rill bench list\n"
             "       rill bench <suite>|all [--json] [--quick] [--filter SUBSTR]\n"
             "\n"
             "  --json           one JSON object per result line on stdout\n"
             "  --quick          ~10x fewer iterations: a smoke run, figures are rough\n"
             "  --filter SUBSTR  only the cases whose name contains SUBSTR\n");
  return f == stdout ? 0 : 2;
}

static void list(void) {
  for (size_t i = 0; i < N_SUITES; i++)
    printf("%-8s %s\n", suites[i]->name, suites[i]->about);
}

int rill_bench_main(int argc, char **argv) {
  bench_ctx_t b = {0};
  const char *name = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--json"))
      b.json = true;
    else if (!strcmp(a, "--quick"))
      b.quick = true;
    else if (!strcmp(a, "--filter") && i + 1 < argc)
      b.filter = argv[++i];
    else if (!strncmp(a, "--filter=", 9))
      b.filter = a + 9;
    else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
      return usage(stdout);
    else if (a[0] == '-' || name) {
      fprintf(stderr, "rill bench: unexpected argument '%s'\n", a);
      return usage(stderr);
    } else
      name = a;
  }
  if (!name)
    return usage(stderr);
  if (!strcmp(name, "list")) {
    list();
    return 0;
  }

  const bench_suite_t *one = NULL;
  if (strcmp(name, "all") != 0) {
    for (size_t i = 0; i < N_SUITES; i++)
      if (!strcmp(suites[i]->name, name))
        one = suites[i];
    if (!one) {
      fprintf(stderr, "rill bench: no suite '%s'; the suites are:\n", name);
      for (size_t i = 0; i < N_SUITES; i++)
        fprintf(stderr, "  %s\n", suites[i]->name);
      return 2;
    }
  }

  ensure_static_tls(argc, argv);
  start_mask_init();
  b.reps = b.quick ? REPS_QUICK : REPS_FULL;
  b.target_ns = b.quick ? TARGET_NS_QUICK : TARGET_NS_FULL;
  _Static_assert(REPS_FULL <= MAX_REPS && REPS_QUICK <= MAX_REPS, "reps");

  int rc = 0;
  for (size_t i = 0; i < N_SUITES; i++) {
    if (one && suites[i] != one)
      continue;
    if (run_suite(&b, suites[i]) != 0) {
      fprintf(stderr, "rill bench: suite %s failed\n", suites[i]->name);
      rc = 1;
    }
  }
  return rc;
}
