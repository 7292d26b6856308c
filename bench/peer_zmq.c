/*
 * ZeroMQ's far end in a process of its own (see peer_zmq.h). The forked
 * process runs one of two bodies: a PUSH that sends what it is told to,
 * or an echo. Orders are a uint64_t (messages to send) on the kid's order
 * pipe, and its EOF says stop; reports are one far_report_t each.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bench.h"
#include "peer_zmq.h"

typedef struct far_args {
  int type;
  size_t size;
  const char *ep;
} far_args_t;

/* 0 and the endpoint bound, or a negative errno and what failed. */
typedef struct far_report {
  int32_t rc;
  char text[120];
} far_report_t;

static int far_fail(int out, const char *what) {
  int e = zmq_errno();
  far_report_t r = {.rc = e ? -e : -1};
  snprintf(r.text, sizeof r.text, "%s: %s", what, zmq_strerror(e));
  bench_kid_put(out, &r, sizeof r);
  return 1;
}

/* Closes the socket without waiting for what is unsent: the parent has
 * counted what it needs, or is gone. */
static int far_close(void *ctx, void *s, int rc) {
  int linger = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return rc;
}

static int push_main(void *arg, int in, int out) {
  const far_args_t *a = arg;
  void *ctx = zmq_ctx_new(), *s = ctx ? zmq_socket(ctx, ZMQ_PUSH) : NULL;
  uint8_t *payload = malloc(a->size);
  if (!s || !payload || zmq_connect(s, a->ep) != 0)
    return far_fail(out, "PUSH");
  memset(payload, 0x5a, a->size);
  far_report_t ok = {0};
  if (bench_kid_put(out, &ok, sizeof ok) != 0)
    return 1;
  uint64_t n;
  while (bench_kid_get(in, &n, sizeof n) == 1) {
    for (uint64_t i = 0; i < n; i++) {
      zmq_msg_t m;
      if (zmq_msg_init_size(&m, a->size) != 0)
        return far_fail(out, "zmq_msg_init_size");
      memcpy(zmq_msg_data(&m), payload, a->size);
      while (zmq_msg_send(&m, s, 0) < 0)
        if (zmq_errno() != EINTR)
          return far_fail(out, "zmq_msg_send");
    }
    if (bench_kid_put(out, &ok, sizeof ok) != 0)
      return 1;
  }
  free(payload);
  return far_close(ctx, s, 0);
}

/* Receives and sends back without waiting while messages are there; only
 * when none is does it poll, on the socket and on the order pipe, whose
 * EOF ends it. */
static int echo_main(void *arg, int in, int out) {
  const far_args_t *a = arg;
  void *ctx = zmq_ctx_new(), *s = ctx ? zmq_socket(ctx, a->type) : NULL;
  far_report_t r = {0};
  size_t len = sizeof r.text;
  if (!s || zmq_bind(s, "tcp://127.0.0.1:*") != 0 ||
      zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, r.text, &len) != 0)
    return far_fail(out, "echo bind");
  if (bench_kid_put(out, &r, sizeof r) != 0)
    return 1;
  zmq_msg_t m;
  zmq_msg_init(&m);
  for (;;) {
    if (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) >= 0) {
      if (zmq_msg_send(&m, s, zmq_msg_more(&m) ? ZMQ_SNDMORE : 0) < 0)
        return far_fail(out, "echo send");
      continue;
    }
    if (zmq_errno() != EAGAIN && zmq_errno() != EINTR)
      return far_fail(out, "echo recv");
    zmq_pollitem_t it[2] = {{s, 0, ZMQ_POLLIN, 0}, {NULL, in, ZMQ_POLLIN, 0}};
    if (zmq_poll(it, 2, -1) < 0 && zmq_errno() != EINTR)
      return far_fail(out, "echo poll");
    if (it[1].revents)
      break;
  }
  zmq_msg_close(&m);
  return far_close(ctx, s, 0);
}

/* The far end's next report; dies on a failure it reports, or on its
 * death. */
static void far_report(bench_zmq_far_t *f, char *ep, size_t cap) {
  far_report_t r;
  int rc = bench_kid_get(f->kid.from, &r, sizeof r);
  if (rc != 1) {
    bench_kid_end(&f->kid, true);
    bench_die("zmq far end: %s", rc == 0 ? "exited" : strerror(-rc));
  }
  r.text[sizeof r.text - 1] = 0;
  if (r.rc != 0)
    bench_die("zmq far end: %s", r.text);
  if (ep)
    snprintf(ep, cap, "%s", r.text);
}

static void far_start(bench_zmq_far_t *f, bench_kid_main_t body, far_args_t *a) {
  *f = (bench_zmq_far_t){.kid = {.to = -1, .from = -1}};
  int rc = bench_kid_fork(&f->kid, 0, body, a, BENCH_KID_DIE_WITH_PARENT);
  if (rc)
    bench_die("zmq far end: fork: %s", strerror(-rc));
  far_report(f, f->ep, sizeof f->ep);
}

void bench_zmq_far_push(bench_zmq_far_t *f, const char *ep, size_t size) {
  far_args_t a = {.type = ZMQ_PUSH, .size = size, .ep = ep};
  far_start(f, push_main, &a);
}

void bench_zmq_far_send(bench_zmq_far_t *f, uint64_t n) {
  int rc = bench_kid_put(f->kid.to, &n, sizeof n);
  if (rc)
    bench_die("zmq far end: order: %s", strerror(-rc));
}

void bench_zmq_far_sent(bench_zmq_far_t *f) { far_report(f, NULL, 0); }

void bench_zmq_far_echo(bench_zmq_far_t *f, int type) {
  far_args_t a = {.type = type};
  far_start(f, echo_main, &a);
}

void bench_zmq_far_end(bench_zmq_far_t *f) {
  bench_kid_end(&f->kid, false);
  if (!bench_kid_ok(&f->kid)) {
    char why[64];
    bench_kid_why(&f->kid, why, sizeof why);
    bench_die("zmq far end %s", why);
  }
}
