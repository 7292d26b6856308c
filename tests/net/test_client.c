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
#include <unistd.h>

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

typedef struct {
  int id;
  int stop;       /* atomic */
  int silent;     /* take asks, answer none */
  uint64_t asked; /* atomic */
  pthread_t t;
  rill_client_t *c;
} provider_t;

static void *provide(void *arg) {
  provider_t *p = arg;
  while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
    rill_client_ask_t a;
    int rc = rill_client_next_ask(p->c, &a, 50000000);
    if (rc == RILL_ETIMEDOUT)
      continue;
    cr_assert_eq(rc, 0, "next_ask: %s", rill_errmsg());
    __atomic_fetch_add(&p->asked, 1, __ATOMIC_RELAXED);
    if (p->silent)
      continue;
    char out[300];
    int n = snprintf(out, sizeof out, "%d:%.*s", p->id, (int)a.len, (const char *)a.data);
    cr_assert_eq(rill_client_reply(p->c, a.id, out, (uint32_t)n), 0);
  }
  return NULL;
}

static void provider_start(provider_t *p, int id, bool silent) {
  *p = (provider_t){.id = id, .silent = silent};
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&p->c, &o), 0);
  cr_assert_eq(rill_client_serve(p->c, "echo", NULL), 0, "%s", rill_errmsg());
  cr_assert_eq(pthread_create(&p->t, NULL, provide, p), 0);
}

static void provider_stop(provider_t *p) {
  __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
  pthread_join(p->t, NULL);
  rill_client_close(p->c);
}

typedef struct {
  rill_client_t *c;
  pthread_t t;
  int rc;
} asker_t;

static void *ask_thread(void *arg) {
  asker_t *k = arg;
  const uint8_t *r;
  uint32_t rl;
  k->rc = rill_client_ask(k->c, "echo", "held", 4, 0, &r, &rl);
  return NULL;
}

/* Asks go to the providers of a name in turn and their replies come back
 * to the asker; no provider, a silent one past the deadline, and one that
 * goes away are each a clear error. */
Test(client, ask_and_reply) {
  rill_client_t *c;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&c, &o), 0);
  const uint8_t *r;
  uint32_t rl;
  cr_expect_eq(rill_client_ask(c, "echo", "x", 1, 0, &r, &rl), RILL_ENOENT);
  provider_t p1, p2;
  provider_start(&p1, 1, false);
  provider_start(&p2, 2, false);
  for (int i = 0; i < 100; i++) {
    char q[16];
    int n = snprintf(q, sizeof q, "q%d", i);
    cr_assert_eq(rill_client_ask(c, "echo", q, (uint32_t)n, 2000000000ull, &r, &rl), 0, "%s",
                 rill_errmsg());
    cr_assert_eq(rl, (uint32_t)n + 2);
    cr_assert(r[0] == '1' || r[0] == '2');
    cr_assert_eq(memcmp(r + 2, q, (size_t)n), 0);
  }
  cr_expect_eq(p1.asked + p2.asked, 100);
  cr_expect_eq(p1.asked, 50, "taken in turn");
  provider_stop(&p1);
  provider_stop(&p2);
  provider_t mute;
  provider_start(&mute, 3, true);
  cr_expect_eq(rill_client_ask(c, "echo", "late", 4, 200000000ull, &r, &rl), RILL_ETIMEDOUT);
  /* A provider that goes away holding an ask: the asker hears of it. */
  asker_t k = {.c = c};
  cr_assert_eq(pthread_create(&k.t, NULL, ask_thread, &k), 0);
  while (__atomic_load_n(&mute.asked, __ATOMIC_ACQUIRE) < 2)
    usleep(1000);
  provider_stop(&mute);
  pthread_join(k.t, NULL);
  cr_expect_eq(k.rc, RILL_ECONNRESET);
  cr_expect_eq(rill_client_ask(c, "echo", "x", 1, 0, &r, &rl), RILL_ENOENT,
               "the provider's going took its name with it");
  rill_client_close(c);
}
