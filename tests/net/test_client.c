/*
 * The client library against a real server: handshake and token, bind and
 * acknowledged publish, subscription with credits, deliveries that arrive
 * while the client waits for an ACK kept for later, ping, and the
 * server's errors coming back as codes with their message.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/net.h"

static char cdir[64];
static rill_server_t *srv;
static pthread_t srv_t;

static void *run(void *arg) {
  (void)arg;
  rill_server_run(srv);
  return NULL;
}

static void up(void) {
  snprintf(cdir, sizeof cdir, "/tmp/rill-test-client-XXXXXX");
  cr_assert_not_null(mkdtemp(cdir));
  cr_assert_eq(rill_server_create(
                   &srv, &(rill_server_opts_t){.data_dir = cdir, .any_port = true, .token = "tok"}),
               0, "%s", rill_errmsg());
  cr_assert_eq(pthread_create(&srv_t, NULL, run, NULL), 0);
}

static void down(void) {
  rill_server_stop(srv);
  pthread_join(srv_t, NULL);
  rill_server_destroy(srv);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cdir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(client, .init = up, .fini = down);

static rill_client_opts_t opts(const char *token) {
  return (rill_client_opts_t){.port = rill_server_port(srv), .token = token, .name = "t"};
}

Test(client, token) {
  rill_client_t *c = NULL;
  rill_client_opts_t o = opts("nope");
  cr_expect_eq(rill_client_connect(&c, &o), RILL_EACCES);
  cr_expect_null(c);
  cr_expect_neq(strstr(rill_errmsg(), "token"), NULL, "the server's reason: %s", rill_errmsg());
  o = opts(NULL);
  cr_expect_eq(rill_client_connect(&c, &o), RILL_EACCES);
  o = opts("tok");
  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  uint64_t rtt;
  cr_assert_eq(rill_client_ping(c, &rtt), 0);
  cr_expect_gt(rtt, 0);
  rill_client_close(c);
}

Test(client, publish_and_subscribe) {
  rill_client_t *pub, *sub;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&pub, &o), 0);
  cr_assert_eq(rill_client_connect(&sub, &o), 0);
  uint16_t ch;
  cr_assert_eq(rill_client_bind(pub, "ticks", &ch), 0);
  cr_expect_eq(rill_client_bind(pub, "no/t", &ch), RILL_EINVAL);
  for (uint64_t i = 0; i < 100; i++) {
    uint64_t seq;
    cr_assert_eq(rill_client_publish(pub, ch, &i, sizeof i, true, &seq), 0);
    cr_assert_eq(seq, i);
  }
  uint16_t s;
  uint64_t start;
  cr_assert_eq(rill_client_subscribe(sub, "ticks", RILL_NET_FROM_EARLIEST, 60, &s, &start), 0);
  cr_expect_eq(start, 0);
  rill_client_msg_t m;
  for (uint64_t i = 0; i < 60; i++) {
    cr_assert_eq(rill_client_next(sub, &m, 5000000000ull), 0, "%s", rill_errmsg());
    cr_assert_eq(m.sub, s);
    cr_assert_eq(m.seq, i);
    uint64_t v;
    memcpy(&v, m.data, 8);
    cr_assert_eq(v, i);
  }
  cr_expect_eq(rill_client_next(sub, &m, 50000000), RILL_ETIMEDOUT, "credits spent");
  /* The subscriber publishes too: deliveries that come while it waits for
   * its ACK are kept, in order. */
  uint16_t ch2;
  cr_assert_eq(rill_client_bind(sub, "ticks", &ch2), 0);
  cr_assert_eq(rill_client_credit(sub, s, 1000), 0);
  uint64_t seq;
  uint64_t v = 1000;
  cr_assert_eq(rill_client_publish(sub, ch2, &v, sizeof v, true, &seq), 0);
  cr_expect_eq(seq, 100);
  for (uint64_t i = 60; i <= 100; i++) {
    cr_assert_eq(rill_client_next(sub, &m, 5000000000ull), 0);
    cr_assert_eq(m.seq, i);
  }
  /* Unacknowledged publishes: the server's error comes on a later call. */
  cr_assert_eq(rill_client_publish(pub, 77, "x", 1, false, NULL), 0);
  cr_expect_eq(rill_client_ping(pub, NULL), RILL_EINVAL, "publish on an unbound channel");
  rill_client_close(pub);
  rill_client_close(sub);
}
