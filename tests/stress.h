/*
 * The few helpers the plain stress programs share (tests/<module>/stress_*.c).
 * They are not Criterion tests because Criterion cannot start under TSan;
 * each program runs its cases, prints one line per case and a closing
 * "N passed, N failed" line, and exits non-zero on any failure.
 */
#ifndef RILL_TESTS_STRESS_H
#define RILL_TESTS_STRESS_H

#include <stdio.h>
#include <stdlib.h>

/* A failed check ends the program at once: later checks would only report
 * the consequences of the first. */
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                     \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fprintf(stderr, "\n");                                                                       \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

/* Sanitized builds run each program with SCALE times less work: the
 * same interleavings, in the time the CI has. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SCALE 8
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SCALE 8
#endif
#endif
#ifndef SCALE
#define SCALE 1
#endif

typedef struct {
  const char *name;
  void (*fn)(void);
} stress_case_t;

static inline int stress_run(const stress_case_t *cases, int n) {
  for (int i = 0; i < n; i++) {
    cases[i].fn();
    printf("ok   %s\n", cases[i].name);
  }
  printf("%d passed, 0 failed\n", n);
  return 0;
}

#endif
