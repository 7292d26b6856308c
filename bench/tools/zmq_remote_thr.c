/*
 * zmq_remote_thr: the sending half of a ZeroMQ throughput test in the
 * manner of libzmq's perf/remote_thr (written for rill, not copied): a
 * context of its own with the default settings, a PUSH connected to the
 * endpoint given, each message a zmq_msg_t of the size given with the
 * payload copied in (as a user's data must be, and as `rill bench net`'s
 * forked PUSH does), then sent. Closing waits until all are out.
 *
 *   zmq_remote_thr <connect-to> <message-size> <message-count>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static int fail(const char *what) {
  fprintf(stderr, "zmq_remote_thr: %s: %s\n", what, zmq_strerror(zmq_errno()));
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: zmq_remote_thr <connect-to> <message-size> <message-count>\n");
    return 2;
  }
  size_t size = strtoull(argv[2], NULL, 10);
  long long count = strtoll(argv[3], NULL, 10);
  unsigned char *payload = malloc(size ? size : 1);
  void *ctx = zmq_ctx_new();
  void *s = ctx ? zmq_socket(ctx, ZMQ_PUSH) : NULL;
  if (!payload || !s || zmq_connect(s, argv[1]) != 0)
    return fail("connect");
  memset(payload, 0x5a, size);
  for (long long i = 0; i < count; i++) {
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, size) != 0)
      return fail("zmq_msg_init_size");
    memcpy(zmq_msg_data(&m), payload, size);
    if (zmq_msg_send(&m, s, 0) < 0)
      return fail("zmq_msg_send");
  }
  zmq_close(s);
  zmq_ctx_term(ctx);
  free(payload);
  return 0;
}
