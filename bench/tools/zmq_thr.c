/*
 * zmq_thr: a ZeroMQ throughput test in the manner of libzmq's
 * perf/local_thr and perf/remote_thr (written for rill, not copied), its
 * two halves run as two processes, each with a context of its own and the
 * default settings (one I/O thread, high-water marks of 1000), over the
 * endpoint given. scripts/peer_check.sh runs it beside `rill bench net`'s
 * ZeroMQ rows.
 *
 *   zmq_thr local  <bind-to>    <message-size> <message-count>
 *   zmq_thr remote <connect-to> <message-size> <message-count>
 *
 * local: a PULL bound to the endpoint, every message received into one
 * zmq_msg_t; the clock starts when the first message arrives (so the
 * connection's set-up is not in it) and stops at the last. It prints the
 * size, the count, messages a second and last "ns per message: X", which
 * the script reads.
 * remote: a PUSH connected to the endpoint, each message a zmq_msg_t of
 * the size given with the payload copied in (as a user's data must be,
 * and as `rill bench net`'s forked PUSH does), then sent; closing waits
 * until all are out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int fail(const char *what) {
  fprintf(stderr, "zmq_thr: %s: %s\n", what, zmq_strerror(zmq_errno()));
  return 1;
}

static int recv_sized(void *s, zmq_msg_t *m, size_t size) {
  if (zmq_msg_recv(m, s, 0) < 0)
    return fail("zmq_msg_recv");
  if (zmq_msg_size(m) != size) {
    fprintf(stderr, "zmq_thr: a message of %zu bytes, not %zu\n", zmq_msg_size(m), size);
    return 1;
  }
  return 0;
}

static int local(void *s, size_t size, long long count) {
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
  printf("message size: %zu [B]\nmessage count: %lld\nmean throughput: %.0f [msg/s]\n", size, count,
         1e9 / ns);
  printf("ns per message: %.2f\n", ns);
  return 0;
}

static int remote(void *s, size_t size, long long count) {
  unsigned char *payload = malloc(size ? size : 1);
  if (!payload)
    return fail("malloc");
  memset(payload, 0x5a, size);
  for (long long i = 0; i < count; i++) {
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, size) != 0)
      return fail("zmq_msg_init_size");
    memcpy(zmq_msg_data(&m), payload, size);
    if (zmq_msg_send(&m, s, 0) < 0)
      return fail("zmq_msg_send");
  }
  free(payload);
  return 0;
}

int main(int argc, char **argv) {
  int is_local = argc == 5 && !strcmp(argv[1], "local");
  if (argc != 5 || (!is_local && strcmp(argv[1], "remote") != 0)) {
    fprintf(stderr, "usage: zmq_thr local|remote <endpoint> <message-size> <message-count>\n");
    return 2;
  }
  size_t size = strtoull(argv[3], NULL, 10);
  long long count = strtoll(argv[4], NULL, 10);
  if (count < 2) {
    fprintf(stderr, "zmq_thr: the count must be at least 2\n");
    return 2;
  }
  void *ctx = zmq_ctx_new();
  void *s = ctx ? zmq_socket(ctx, is_local ? ZMQ_PULL : ZMQ_PUSH) : NULL;
  if (!s || (is_local ? zmq_bind(s, argv[2]) : zmq_connect(s, argv[2])) != 0)
    return fail(is_local ? "bind" : "connect");
  int rc = is_local ? local(s, size, count) : remote(s, size, count);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return rc;
}
