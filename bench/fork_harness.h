/*
 * Child processes at the other end of an ipc bench: what `rill bench ipc`
 * (bench/ipc.c) and `rill ipc bench NAME` (tools/rill/ipc_bench.c) share.
 *
 * A kid is a forked process with two pipes of its own: orders from the
 * parent (its `to`, the kid's `in`) and reports back (the kid's `out`, its
 * `from`). Records on them are fixed-size structs the caller defines; a
 * record under PIPE_BUF is written in one piece, so it is never seen
 * half-written. Closing a kid's order pipe is a word too: the kid sees
 * EOF, at once, and sees it as well when the parent dies, so no kid
 * outlives the parent waiting for an order. For that EOF to come, a kid
 * closes the parent's ends of every kid forked before it (fork copied
 * them); nothing else of the parent's is closed (the parent's route
 * handles and stdio buffers are left alone: a kid ends with _exit).
 *
 * Header-only: the rill command builds `rill ipc bench` without the bench
 * suites (RILL_BENCH=OFF), and both include this file. Not part of
 * librill's API.
 */
#ifndef RILL_BENCH_FORK_HARNESS_H
#define RILL_BENCH_FORK_HARNESS_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct bench_kid {
  pid_t pid;   /* 0: not forked */
  int to;      /* the parent's end of the order pipe; -1 once closed */
  int from;    /* the parent's end of the report pipe; -1 once closed or at EOF */
  bool exited; /* reaped: status is waitpid's */
  int status;
} bench_kid_t;

/* The most kids bench_kid_poll watches. */
#define BENCH_KID_MAX 256

/* The kid is killed when the parent dies, rather than left to see EOF. */
#define BENCH_KID_DIE_WITH_PARENT 1

/** A kid's body: in is its order pipe, out its report pipe; the kid
 *  _exits with what it returns (it may also _exit itself). */
typedef int (*bench_kid_main_t)(void *arg, int in, int out);

/** Forks kids[i] (kids[0..i-1] forked before it, or zeroed with to and
 *  from at -1) running body(arg, in, out). 0, or a negative errno (pipe or
 *  fork failed; kids[i] is left unforked with nothing open). */
static inline int bench_kid_fork(bench_kid_t *kids, size_t i, bench_kid_main_t body, void *arg,
                                 int flags) {
  int ord[2], rep[2];
  if (pipe(ord) != 0)
    return -errno;
  if (pipe(rep) != 0) {
    int e = -errno;
    close(ord[0]);
    close(ord[1]);
    return e;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    int e = -errno;
    close(ord[0]), close(ord[1]), close(rep[0]), close(rep[1]);
    return e;
  }
  if (pid == 0) {
    if (flags & BENCH_KID_DIE_WITH_PARENT)
      prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(ord[1]);
    close(rep[0]);
    for (size_t j = 0; j < i; j++) {
      if (kids[j].to >= 0)
        close(kids[j].to);
      if (kids[j].from >= 0)
        close(kids[j].from);
    }
    _exit(body(arg, ord[0], rep[1]));
  }
  close(ord[0]);
  close(rep[1]);
  kids[i] = (bench_kid_t){.pid = pid, .to = ord[1], .from = rep[0]};
  return 0;
}

/** Writes all n bytes to fd (a record to or from a kid). 0, or a negative
 *  errno. */
static inline int bench_kid_put(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return w < 0 ? -errno : -EIO;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

/** Reads n bytes from fd. 1, 0 at end of file (the other side closed or
 *  died), or a negative errno. */
static inline int bench_kid_get(int fd, void *p, size_t n) {
  uint8_t *b = p;
  while (n) {
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0)
      return 0;
    b += r;
    n -= (size_t)r;
  }
  return 1;
}

/** Whether fd has something to read or is at EOF, without waiting: a kid
 *  asks whether its order pipe was closed. */
static inline bool bench_kid_told(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, 0) > 0;
}

/** Reads one record of size bytes from whichever of kids[0..n-1] (n at
 *  most BENCH_KID_MAX) has one, waiting up to ms. The kid's index, or -1
 *  when none came (or a signal did). A kid's report pipe at EOF, or
 *  holding a short record, is closed and not read again. */
static inline int bench_kid_poll(bench_kid_t *kids, size_t n, int ms, void *rec, size_t size) {
  struct pollfd p[BENCH_KID_MAX];
  if (n > sizeof p / sizeof p[0])
    n = sizeof p / sizeof p[0];
  for (size_t i = 0; i < n; i++)
    p[i] = (struct pollfd){.fd = kids[i].from, .events = POLLIN};
  if (poll(p, (nfds_t)n, ms) <= 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
      continue;
    ssize_t r = read(kids[i].from, rec, size);
    if (r == (ssize_t)size)
      return (int)i;
    if (r < 0 && errno == EINTR)
      return -1;
    close(kids[i].from);
    kids[i].from = -1;
  }
  return -1;
}

/** Whether the kid has exited (reaped now or before; its status kept). */
static inline bool bench_kid_exited(bench_kid_t *k) {
  if (!k->exited && k->pid > 0 && waitpid(k->pid, &k->status, WNOHANG) == k->pid)
    k->exited = true;
  return k->exited;
}

/** Whether an exited kid ended well (exit status 0). */
static inline bool bench_kid_ok(const bench_kid_t *k) {
  return k->exited && WIFEXITED(k->status) && WEXITSTATUS(k->status) == 0;
}

/** How an exited kid ended, for a message: "was killed by signal 9",
 *  "failed (exit status 1)". */
static inline void bench_kid_why(const bench_kid_t *k, char *out, size_t cap) {
  if (WIFSIGNALED(k->status))
    snprintf(out, cap, "was killed by signal %d", WTERMSIG(k->status));
  else
    snprintf(out, cap, "failed (exit status %d)",
             WIFEXITED(k->status) ? WEXITSTATUS(k->status) : -1);
}

/** Ends a kid: closes its order pipe (its EOF), kills it first when
 *  kill_it, waits for it unless it was reaped, and closes its report
 *  pipe. A kid never forked is left alone. */
static inline void bench_kid_end(bench_kid_t *k, bool kill_it) {
  if (k->pid <= 0)
    return;
  if (k->to >= 0)
    close(k->to);
  k->to = -1;
  if (!k->exited) {
    if (kill_it)
      kill(k->pid, SIGTERM);
    waitpid(k->pid, &k->status, 0);
    k->exited = true;
  }
  if (k->from >= 0)
    close(k->from);
  k->from = -1;
}

#endif
