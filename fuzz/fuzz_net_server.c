/*
 * Arbitrary bytes as what a client sends the server, through its real
 * request path: one server (one loop, its data directory in /tmp, small
 * limits) lives for the whole run, and each input is a connection on one
 * end of a socket pair, opened with rill__srv_conn_open as an accepted
 * one is, read, decoded, answered and settled as the loop would, while
 * the other end takes the input (after a HELLO, unless the first byte is
 * odd) and drains the answers. Topics, subscriptions, streams, asks to
 * itself and the topics' requests all run against the same registry and
 * disk the whole time. Never a crash, a leak, or a read outside a buffer.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/server_internal.h"

static rill_server_t *srv;
static struct loop *lp;
static char data_dir[] = "/tmp/rill-fuzz-server-XXXXXX";

static void remove_data_dir(void) {
  char cmd[64];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "fuzz_net_server: could not remove %s\n", data_dir);
}

static void setup(void) {
  if (!mkdtemp(data_dir))
    abort();
  atexit(remove_data_dir);
  rill_server_opts_t o = {.data_dir = data_dir,
                          .any_port = true,
                          .loops = 1,
                          .max_conns = 8,
                          .max_body = 65536,
                          .max_message = 1u << 20,
                          .tx_limit = 4u << 20,
                          .max_topics = 16,
                          .segment_bytes = 64u << 10,
                          .max_disk = 64u << 20};
  if (rill_server_create(&srv, &o) != 0) {
    fprintf(stderr, "fuzz_net_server: %s\n", rill_errmsg());
    abort();
  }
  lp = &srv->loops[0];
}

/* Whether c is still open: the loop's only connection, at the head of
 * its list (its memory may be gone: compared, never read). */
static bool open_still(const struct conn *c) { return lp->conns == c; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!srv)
    setup();
  if (size < 1 || size > (1u << 16))
    return 0;
  bool raw = data[0] & 1;
  data++, size--;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    return 0;
  __atomic_fetch_add(&srv->nconns, 1, __ATOMIC_RELAXED); /* as accept counts it */
  struct conn *c = rill__srv_conn_open(lp, sv[0]);
  if (!c) {
    __atomic_fetch_sub(&srv->nconns, 1, __ATOMIC_RELAXED);
    close(sv[0]);
    close(sv[1]);
    return 0;
  }
  if (!raw) {
    uint8_t hello[RILL_NET_HDR + 16];
    rill_net_hello_encode(hello + RILL_NET_HDR, NULL, 0, "fuzz", 4);
    rill_frame_header(hello, RILL_F_HELLO, 0, 0, 0, 0, (uint32_t)rill_net_hello_size(0, 4));
    if (write(sv[1], hello, RILL_NET_HDR + rill_net_hello_size(0, 4)) < 0)
      abort();
  }
  size_t off = 0;
  bool shut = false;
  static uint8_t drain[1 << 16];
  /* As the loop would: read, then settle what the requests made dirty,
   * then the connection itself; the peer writes more and reads answers
   * in between. The end of the input is a half close, which closes the
   * connection once its answers are out. */
  for (int round = 0; round < 256 && open_still(c); round++) {
    if (off < size) {
      ssize_t n = write(sv[1], data + off, size - off);
      if (n > 0)
        off += (size_t)n;
    } else if (!shut) {
      shutdown(sv[1], SHUT_WR);
      shut = true;
    }
    rill__srv_conn_read(lp, c);
    while (lp->dirty && open_still(c)) {
      struct conn *d = lp->dirty;
      lp->dirty = d->next_dirty;
      d->dirty = false;
      rill__srv_conn_settle(lp, d);
    }
    if (open_still(c))
      rill__srv_conn_settle(lp, c);
    while (read(sv[1], drain, sizeof drain) > 0)
      ;
  }
  if (open_still(c))
    rill__srv_conn_close(lp, c);
  close(sv[1]);
  return 0;
}
