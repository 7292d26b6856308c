/*
 * zmq_local_thr: the receiving half of a ZeroMQ throughput test in the
 * manner of libzmq's perf/local_thr (written for rill, not copied): a
 * context of its own with the default settings, a PULL bound to the
 * endpoint given, every message received into one zmq_msg_t. The clock
 * starts when the first message arrives (so the connection's set-up is
 * not in it) and stops at the last. scripts/peer_check.sh runs it beside
 * `rill bench net`'s ZeroMQ rows.
 *
 *   zmq_local_thr <bind-to> <message-size> <message-count>
 *
 * Prints the count, the size, messages a second and the last line,
 * "ns per message: X", which the script reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zmq.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int fail(const char *what) {
  fprintf(stderr, "zmq_local_thr: %s: %s\n", what, zmq_strerror(zmq_errno()));
  return 1;
}

static int recv_sized(void *s, zmq_msg_t *m, size_t size) {
  if (zmq_msg_recv(m, s, 0) < 0)
    return fail("zmq_msg_recv");
  if (zmq_msg_size(m) != size) {
    fprintf(stderr, "zmq_local_thr: a message of %zu bytes, not %zu\n", zmq_msg_size(m), size);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: zmq_local_thr <bind-to> <message-size> <message-count>\n");
    return 2;
  }
  size_t size = strtoull(argv[2], NULL, 10);
  long long count = strtoll(argv[3], NULL, 10);
  if (count < 2) {
    fprintf(stderr, "zmq_local_thr: the count must be at least 2\n");
    return 2;
  }
  void *ctx = zmq_ctx_new();
  void *s = ctx ? zmq_socket(ctx, ZMQ_PULL) : NULL;
  if (!s || zmq_bind(s, argv[1]) != 0)
    return fail("bind");
  zmq_msg_t m;
  zmq_msg_init(&m);
  if (recv_sized(s, &m, size))
    return 1;
  double t0 = now_ns();
  for (long long i = 1; i < count; i++)
    if (recv_sized(s, &m, size))
      return 1;
  double ns = (now_ns() - t0) / (double)(count - 1);
  zmq_msg_close(&m);
  zmq_close(s);
  zmq_ctx_term(ctx);
  printf("message size: %zu [B]\nmessage count: %lld\nmean throughput: %.0f [msg/s]\n", size, count,
         1e9 / ns);
  printf("ns per message: %.2f\n", ns);
  return 0;
}
