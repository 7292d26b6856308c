/*
 * The client library against a real server: handshake and token, bind and
 * acknowledged publish, subscription with credits, deliveries that arrive
 * while the client waits for an ACK kept for later, ping, and the
 * server's errors coming back as codes with their message. Then the
 * callback half: pipelined asks (bounded, allocation-free, errors to the
 * callback), callback services and subscriptions, batches and messages
 * over max_body, STATS against a scripted server, and reconnecting to a
 * server restarted on the same port and data. Last, asks and replies over
 * max_body streamed in CHUNKs both ways (either side going away in the
 * middle, max_message), and a provider failing an ask with an ERROR.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rill/net.h"
#include "scripted_server.h"

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
  /* The teardown verbs take NULL, as every teardown in rill does. */
  rill_client_close(NULL);
  rill_server_destroy(NULL);
}

/* Bad names are the caller's error, said before anything is sent: NULL
 * included. */
Test(client, bad_names) {
  rill_client_t *c;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  uint16_t ch;
  const uint8_t *rep;
  uint32_t len;
  cr_expect_eq(rill_client_bind(c, NULL, &ch), RILL_EINVAL);
  cr_expect(strstr(rill_errmsg(), "NULL"), "%s", rill_errmsg());
  cr_expect_eq(rill_client_bind(c, ".hidden", &ch), RILL_EINVAL);
  cr_expect_eq(rill_client_subscribe(c, NULL, RILL_NET_FROM_LATEST, 1, &ch, NULL), RILL_EINVAL);
  cr_expect_eq(rill_client_serve(c, "a b", &ch), RILL_EINVAL);
  cr_expect_eq(rill_client_ask(c, NULL, "x", 1, RILL_FOREVER, &rep, &len), RILL_EINVAL);
  /* A good service name is checked once and remembered: names that
   * differ from it, by a byte or in length, are still checked. */
  cr_expect_eq(rill_client_ask(c, "svc-a", "x", 1, RILL_FOREVER, &rep, &len), RILL_ENOENT, "%s",
               rill_errmsg());
  cr_expect_eq(rill_client_ask(c, "svc-a b", "x", 1, RILL_FOREVER, &rep, &len), RILL_EINVAL);
  cr_expect_eq(rill_client_ask(c, "svc a", "x", 1, RILL_FOREVER, &rep, &len), RILL_EINVAL);
  cr_expect_eq(rill_client_ask(c, "", "x", 1, RILL_FOREVER, &rep, &len), RILL_EINVAL);
  cr_expect_eq(rill_client_ask(c, NULL, "x", 1, RILL_FOREVER, &rep, &len), RILL_EINVAL);
  cr_expect_eq(rill_client_ask(c, "svc-a", "x", 1, RILL_FOREVER, &rep, &len), RILL_ENOENT);
  uint64_t rtt;
  cr_expect_eq(rill_client_ping(c, &rtt), 0, "the connection goes on");
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
  k->rc = rill_client_ask(k->c, "echo", "held", 4, RILL_FOREVER, &r, &rl);
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
  cr_expect_eq(rill_client_ask(c, "echo", "x", 1, RILL_FOREVER, &r, &rl), RILL_ENOENT);
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
  cr_expect_eq(rill_client_ask(c, "echo", "x", 1, RILL_FOREVER, &r, &rl), RILL_ENOENT,
               "the provider's going took its name with it");
  rill_client_close(c);
}

/* ---- callbacks: pipelined asks, callback services and subscriptions ---------- */

typedef struct {
  int calls, ok, errs, last_status;
  uint32_t seen[2048]; /* per ask index: how many times its callback ran */
} replies_t;

typedef struct {
  replies_t *r;
  uint32_t i;
} ask_ctx_t;

static void on_reply(void *ctx, int status, const uint8_t *reply, uint32_t len) {
  ask_ctx_t *k = ctx;
  replies_t *r = k->r;
  r->calls++;
  r->seen[k->i]++;
  r->last_status = status;
  if (status) {
    r->errs++;
    cr_assert_null(reply);
    return;
  }
  /* The echo service answers "e:" and the request, which is the index. */
  uint32_t v;
  cr_assert_eq(len, 2 + sizeof v);
  cr_assert_eq(memcmp(reply, "e:", 2), 0);
  memcpy(&v, reply + 2, sizeof v);
  cr_assert_eq(v, k->i, "the reply of ask %u came to ask %u's callback", v, k->i);
  r->ok++;
}

typedef struct {
  rill_client_t *c;
  int asked;
  bool silent;
} echo_t;

static void on_ask(void *ctx, const rill_client_ask_t *a) {
  echo_t *e = ctx;
  e->asked++;
  if (e->silent)
    return;
  uint8_t out[300];
  memcpy(out, "e:", 2);
  memcpy(out + 2, a->data, a->len);
  cr_assert_eq(rill_client_reply(e->c, a->id, out, a->len + 2), 0, "%s", rill_errmsg());
}

/* Polls each client in turn until done() holds (or about 5 s pass). */
static void pump2(rill_client_t *a, rill_client_t *b, bool (*done)(void *), void *arg) {
  for (int i = 0; i < 5000 && !done(arg); i++) {
    cr_assert_geq(rill_client_poll(a, 1000000), 0, "%s", rill_errmsg());
    if (b)
      cr_assert_geq(rill_client_poll(b, 1000000), 0, "%s", rill_errmsg());
  }
}

typedef struct {
  replies_t *r;
  int want;
} want_t;

static bool enough(void *arg) {
  want_t *w = arg;
  return w->r->calls >= w->want;
}

/* Many asks in flight at once, each callback run exactly once with its
 * own reply; a callback service answers them from poll. */
Test(client, ask_async_pipelined) {
  rill_client_t *asker, *prov;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&asker, &o), 0);
  cr_assert_eq(rill_client_connect(&prov, &o), 0);
  echo_t e = {.c = prov};
  uint16_t ch;
  cr_assert_eq(rill_client_serve_cb(prov, "echo", on_ask, &e, &ch), 0, "%s", rill_errmsg());
  static replies_t r;
  static ask_ctx_t k[2048];
  for (uint32_t i = 0; i < 2048; i++) {
    k[i] = (ask_ctx_t){&r, i};
    cr_assert_eq(rill_client_ask_async(asker, "echo", &i, sizeof i, RILL_FOREVER, on_reply, &k[i]),
                 0, "%s", rill_errmsg());
  }
  cr_expect_eq(r.calls, 0, "callbacks run from poll only");
  want_t w = {&r, 2048};
  pump2(asker, prov, enough, &w);
  cr_expect_eq(r.ok, 2048);
  cr_expect_eq(e.asked, 2048);
  for (uint32_t i = 0; i < 2048; i++)
    cr_assert_eq(r.seen[i], 1, "ask %u: %u callbacks", i, r.seen[i]);
  /* Steady state allocates nothing on either side. */
  uint64_t before = rill_mem_allocs_thread();
  memset(&r, 0, sizeof r);
  for (uint32_t i = 0; i < 1024; i++)
    cr_assert_eq(rill_client_ask_async(asker, "echo", &i, sizeof i, RILL_FOREVER, on_reply, &k[i]),
                 0);
  w.want = 1024;
  pump2(asker, prov, enough, &w);
  cr_expect_eq(r.ok, 1024);
  cr_expect_eq(rill_mem_allocs_thread(), before, "pipelined asks allocated");
  rill_client_close(prov);
  rill_client_close(asker);
}

typedef struct {
  rill_client_t *c;
  echo_t e;
  int stop; /* atomic */
  pthread_t t;
} poller_t;

static void *poll_thread(void *arg) {
  poller_t *p = arg;
  while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE))
    cr_assert_geq(rill_client_poll(p->c, 20000000), 0, "%s", rill_errmsg());
  return NULL;
}

static void poller_start(poller_t *p, bool silent) {
  *p = (poller_t){.e = {.silent = silent}};
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&p->c, &o), 0);
  p->e.c = p->c;
  cr_assert_eq(rill_client_serve_cb(p->c, "echo", on_ask, &p->e, NULL), 0);
  cr_assert_eq(pthread_create(&p->t, NULL, poll_thread, p), 0);
}

static void poller_stop(poller_t *p) {
  __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
  pthread_join(p->t, NULL);
  rill_client_close(p->c);
}

/* A full table is emptied by driving the connection, never grown; errors
 * come to the callback; a blocking ask in between keeps async replies for
 * the next poll. */
Test(client, ask_async_bounded_and_errors) {
  rill_client_t *c;
  rill_client_opts_t o = opts("tok");
  o.max_inflight = 8;
  cr_assert_eq(rill_client_connect(&c, &o), 0);
  static replies_t r;
  static ask_ctx_t k[2048];
  for (uint32_t i = 0; i < 2048; i++)
    k[i] = (ask_ctx_t){&r, i};
  /* Nobody serves it: the error comes to the callback. */
  cr_assert_eq(rill_client_ask_async(c, "echo", &k[0].i, 4, RILL_FOREVER, on_reply, &k[0]), 0);
  want_t w = {&r, 1};
  pump2(c, NULL, enough, &w);
  cr_expect_eq(r.last_status, RILL_ENOENT);
  poller_t p;
  poller_start(&p, false);
  memset(&r, 0, sizeof r);
  for (uint32_t i = 0; i < 500; i++)
    cr_assert_eq(rill_client_ask_async(c, "echo", &i, sizeof i, RILL_FOREVER, on_reply, &k[i]), 0,
                 "%s", rill_errmsg());
  cr_expect_geq(r.calls, 500 - 8, "at most 8 in flight: the rest had to finish first");
  w.want = 500;
  pump2(c, NULL, enough, &w);
  cr_expect_eq(r.ok, 500);
  /* Async asks out, then a blocking one: their replies wait for poll. */
  memset(&r, 0, sizeof r);
  for (uint32_t i = 0; i < 4; i++)
    cr_assert_eq(rill_client_ask_async(c, "echo", &i, sizeof i, RILL_FOREVER, on_reply, &k[i]), 0);
  const uint8_t *rep;
  uint32_t rl;
  uint32_t v = 7;
  cr_assert_eq(rill_client_ask(c, "echo", &v, sizeof v, RILL_FOREVER, &rep, &rl), 0, "%s",
               rill_errmsg());
  cr_expect_eq(rl, 6);
  cr_expect_eq(r.calls, 0, "no callback inside a blocking call");
  w.want = 4;
  pump2(c, NULL, enough, &w);
  cr_expect_eq(r.ok, 4);
  poller_stop(&p);
  /* A provider that never answers: the deadline comes to the callback. */
  poller_t mute;
  poller_start(&mute, true);
  memset(&r, 0, sizeof r);
  cr_assert_eq(rill_client_ask_async(c, "echo", &v, sizeof v, 100000000ull, on_reply, &k[0]), 0);
  w.want = 1;
  pump2(c, NULL, enough, &w);
  cr_expect_eq(r.last_status, RILL_ETIMEDOUT);
  /* Close tells the asks still in flight. */
  memset(&r, 0, sizeof r);
  cr_assert_eq(rill_client_ask_async(c, "echo", &v, sizeof v, RILL_FOREVER, on_reply, &k[1]), 0);
  cr_assert_eq(rill_client_flush(c), 0);
  rill_client_close(c);
  cr_expect_eq(r.calls, 1);
  cr_expect_eq(r.last_status, RILL_ECLOSED);
  poller_stop(&mute);
}

typedef struct {
  uint64_t next, got;
  uint16_t sub;
} subseen_t;

static void on_msg(void *ctx, const rill_client_msg_t *m) {
  subseen_t *s = ctx;
  cr_assert_eq(m->sub, s->sub);
  cr_assert_eq(m->seq, s->next, "seq %llu, expected %llu", (unsigned long long)m->seq,
               (unsigned long long)s->next);
  uint64_t v;
  cr_assert_eq(m->len, sizeof v);
  memcpy(&v, m->data, sizeof v);
  cr_assert_eq(v, m->seq);
  s->next++;
  s->got++;
}

static bool sub_done(void *arg) {
  subseen_t *s = arg;
  return s->got >= 5000;
}

/* A callback subscription with a small window gets every message, in
 * order: its credits come back by themselves. */
Test(client, subscribe_cb) {
  rill_client_t *pub, *sub;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&pub, &o), 0);
  cr_assert_eq(rill_client_connect(&sub, &o), 0);
  uint16_t ch;
  cr_assert_eq(rill_client_bind(pub, "cbt", &ch), 0);
  subseen_t s = {0};
  uint64_t start = 99;
  cr_assert_eq(
      rill_client_subscribe_cb(sub, "cbt", RILL_NET_FROM_EARLIEST, 16, on_msg, &s, &s.sub, &start),
      0, "%s", rill_errmsg());
  cr_expect_eq(start, 0);
  for (uint64_t i = 0; i < 5000; i++)
    cr_assert_eq(rill_client_publish(pub, ch, &i, sizeof i, false, NULL), 0);
  cr_assert_eq(rill_client_ping(pub, NULL), 0);
  pump2(sub, NULL, sub_done, &s);
  cr_expect_eq(s.got, 5000);
  /* A blocking call on the subscriber keeps deliveries for the next poll. */
  uint64_t v = 5000;
  uint64_t seq;
  cr_assert_eq(rill_client_bind(sub, "cbt", &ch), 0);
  cr_assert_eq(rill_client_publish(sub, ch, &v, sizeof v, true, &seq), 0);
  cr_expect_eq(seq, 5000);
  cr_assert_geq(rill_client_poll(sub, 1000000000ull), 0);
  for (int i = 0; i < 100 && s.got < 5001; i++)
    cr_assert_geq(rill_client_poll(sub, 10000000), 0);
  cr_expect_eq(s.got, 5001);
  cr_assert_eq(rill_client_unsubscribe(sub, s.sub), 0, "%s", rill_errmsg());
  cr_expect_eq(rill_client_unsubscribe(sub, s.sub), RILL_ENOENT);
  rill_client_close(pub);
  rill_client_close(sub);
}

/* Another client's thread that publishes to ch, or asks "slow", after a
 * short delay, while the test waits for it with RILL_FOREVER. */
typedef struct {
  rill_client_t *c;
  uint16_t ch;
  bool ask;
  pthread_t t;
  int rc;
  char reply[16];
} later_t;

static void *do_later(void *arg) {
  later_t *l = arg;
  if (l->ask) {
    const uint8_t *r;
    uint32_t rl;
    l->rc = rill_client_ask(l->c, "slow", "q", 1, RILL_FOREVER, &r, &rl);
    if (!l->rc)
      snprintf(l->reply, sizeof l->reply, "%.*s", (int)rl, (const char *)r);
    return NULL;
  }
  usleep(100000);
  l->rc = rill_client_publish(l->c, l->ch, "late", 4, true, NULL);
  return NULL;
}

static void on_count(void *ctx, const rill_client_msg_t *m) {
  (void)m;
  (*(int *)ctx)++;
}

static void on_count_reply(void *ctx, int status, const uint8_t *reply, uint32_t len) {
  (void)status, (void)reply, (void)len;
  (*(int *)ctx)++;
}

/* Timeouts as everywhere in rill: 0 tries once and says "not now"
 * (RILL_ETIMEDOUT) at once when nothing is there, an ask with 0 included,
 * which sends nothing; RILL_FOREVER waits with no bound, beyond the
 * client's own opts.timeout_ns, for what comes later. */
Test(client, timeouts_zero_and_forever) {
  alarm(60); /* a wait that never ends is a failure (SIGALRM), not a stuck suite */
  rill_client_opts_t o = opts("tok");
  /* The asker's own bound, which its RILL_FOREVER ask below must outlast;
   * the others keep the default, so that a slow machine (a sanitizer
   * build beside other work) never fails their requests. The provider
   * answers 400 ms after this bound has passed. */
  rill_client_opts_t oa = o;
  oa.timeout_ns = 500000000ull;
  rill_client_t *pub, *sub, *cb, *prov, *asker;
  cr_assert_eq(rill_client_connect(&pub, &o), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_connect(&sub, &o), 0);
  cr_assert_eq(rill_client_connect(&cb, &o), 0);
  cr_assert_eq(rill_client_connect(&prov, &o), 0);
  cr_assert_eq(rill_client_connect(&asker, &oa), 0, "%s", rill_errmsg());
  uint16_t ch, s, s2;
  cr_assert_eq(rill_client_bind(pub, "waits", &ch), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_subscribe(sub, "waits", RILL_NET_FROM_LATEST, 10, &s, NULL), 0);
  int got = 0;
  cr_assert_eq(
      rill_client_subscribe_cb(cb, "waits", RILL_NET_FROM_LATEST, 16, on_count, &got, &s2, NULL),
      0);
  cr_assert_eq(rill_client_serve(prov, "slow", NULL), 0, "%s", rill_errmsg());

  /* 0: nothing there, so "not now" at once. */
  rill_client_msg_t m;
  rill_client_ask_t a;
  cr_expect_eq(rill_client_next(sub, &m, 0), RILL_ETIMEDOUT);
  cr_expect_eq(rill_client_next_ask(prov, &a, 0), RILL_ETIMEDOUT);
  cr_expect_eq(rill_client_poll(cb, 0), 0, "no callback ran");
  const uint8_t *r;
  uint32_t rl;
  cr_expect_eq(rill_client_ask(asker, "slow", "0", 1, 0, &r, &rl), RILL_ETIMEDOUT);
  cr_expect_neq(strstr(rill_errmsg(), "RILL_FOREVER"), NULL, "%s", rill_errmsg());
  int replies = 0;
  cr_expect_eq(rill_client_ask_async(asker, "slow", "0", 1, 0, on_count_reply, &replies),
               RILL_ETIMEDOUT);
  cr_expect_eq(rill_client_poll(asker, 0), 0);
  cr_expect_eq(replies, 0, "a refused ask_async runs no callback");

  /* RILL_FOREVER: a record published 100 ms later comes to next, then to
   * poll. */
  later_t l = {.c = pub, .ch = ch};
  cr_assert_eq(pthread_create(&l.t, NULL, do_later, &l), 0);
  cr_assert_eq(rill_client_next(sub, &m, RILL_FOREVER), 0, "%s", rill_errmsg());
  cr_expect(m.len == 4 && !memcmp(m.data, "late", 4));
  pthread_join(l.t, NULL);
  cr_expect_eq(l.rc, 0);
  int n = 0;
  while (n == 0)
    cr_assert_geq(n = rill_client_poll(cb, RILL_FOREVER), 0, "%s", rill_errmsg());
  cr_expect_eq(got, 1);

  /* An ask with RILL_FOREVER, answered after the asker's opts.timeout_ns
   * has passed: the reply, not RILL_ETIMEDOUT. The ask with 0 above sent
   * nothing: this is the first ask the provider sees. */
  later_t k = {.c = asker, .ask = true};
  cr_assert_eq(pthread_create(&k.t, NULL, do_later, &k), 0);
  cr_assert_eq(rill_client_next_ask(prov, &a, RILL_FOREVER), 0, "%s", rill_errmsg());
  cr_expect(a.len == 1 && a.data[0] == 'q', "the first ask is the FOREVER one");
  cr_expect_eq(a.deadline_ns, 0, "RILL_FOREVER is no deadline on the wire");
  usleep((useconds_t)(oa.timeout_ns / 1000) + 400000); /* past the asker's bound */
  cr_assert_eq(rill_client_reply(prov, a.id, "done", 4), 0);
  pthread_join(k.t, NULL);
  cr_expect_eq(k.rc, 0, "%d", k.rc);
  cr_expect_str_eq(k.reply, "done");
  rill_client_close(asker);
  rill_client_close(prov);
  rill_client_close(cb);
  rill_client_close(sub);
  rill_client_close(pub);
}

/* Against today's server, STATS is either answered with text or refused
 * with an error code; never a crash or a hang. */
Test(client, stats_live) {
  rill_client_t *c;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&c, &o), 0);
  char buf[1 << 16];
  size_t len = 0;
  int rc = rill_client_server_stats_text(c, buf, sizeof buf, &len);
  if (rc == 0) {
    cr_expect_eq(strlen(buf), len);
    cr_expect_gt(len, 0);
  } else {
    cr_expect_lt(rc, 0);
  }
  rill_client_close(c);
}

/* ---- STATS against a scripted server ---------------------------------------------- */

/* WELCOME, then: the first STATS gets text, the second an ERROR. */
static void *fake_main(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fd = script_accept(k, b, sizeof b, NULL, 1u << 20);
  cr_assert_geq(fd, 0);
  rill_frame_t f;
  const char *text = "# TYPE rill_up gauge\nrill_up 1\n";
  for (int n = 0; fake_recv(fd, b, sizeof b, &f);) {
    if (f.type != RILL_F_STATS)
      continue;
    if (n++ < 2)
      fake_send(fd, RILL_F_STATS, f.id, 0, text, (uint32_t)strlen(text));
    else
      fake_send(fd, RILL_F_ERROR, f.id, (uint64_t)(int64_t)RILL_ENOTSUP, "no metrics", 10);
  }
  close(fd);
  return NULL;
}

Test(client_stats, scripted_server) {
  fake_t k;
  rill_client_t *c = fake_connect(&k, fake_main, 0, (rill_client_opts_t){0});
  char buf[256];
  size_t len = 0;
  cr_assert_eq(rill_client_server_stats_text(c, buf, sizeof buf, &len), 0, "%s", rill_errmsg());
  cr_expect_str_eq(buf, "# TYPE rill_up gauge\nrill_up 1\n");
  cr_expect_eq(len, strlen(buf));
  char small[8];
  cr_expect_eq(rill_client_server_stats_text(c, small, sizeof small, &len), RILL_ENOBUFS);
  cr_expect_eq(len, strlen(buf), "says the size it needs");
  cr_expect_eq(rill_client_server_stats_text(c, buf, sizeof buf, &len), RILL_ENOTSUP);
  cr_expect_neq(strstr(rill_errmsg(), "no metrics"), NULL, "%s", rill_errmsg());
  rill_client_close(c);
  fake_end(&k);
}

/* ---- streamed replies in total ------------------------------------------------------ */

#define PIECE (60u << 10)

static void fake_piece(int fd, uint8_t type, uint8_t flags, uint64_t id, uint64_t arg,
                       uint32_t len) {
  static uint8_t b[RILL_NET_HDR + PIECE];
  rill_frame_header(b, type, flags, 0, id, arg, len);
  memset(b + RILL_NET_HDR, (int)(id & 0x7f), len);
  size_t left = RILL_NET_HDR + len, off = 0;
  while (left) {
    ssize_t n = send(fd, b + off, left, MSG_NOSIGNAL);
    cr_assert_gt(n, 0);
    off += (size_t)n, left -= (size_t)n;
  }
}

/* WELCOME with a 64 KiB max_body; then five ASKs, answered by five
 * streamed REPLYs of 241 KiB whose pieces come interleaved, so that all
 * five are being put together at once. */
static void *fake_streams(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fd = script_accept(k, b, sizeof b, NULL, 64u << 10);
  cr_assert_geq(fd, 0);
  rill_frame_t f;
  uint64_t ids[5];
  for (int i = 0; i < 5;)
    if (fake_recv(fd, b, sizeof b, &f) == RILL_F_ASK)
      ids[i++] = f.id;
    else
      cr_assert_neq(f.type, 0, "the client went away");
  for (int i = 0; i < 5; i++)
    fake_piece(fd, RILL_F_REPLY, RILL_FF_STREAM, ids[i], 0, PIECE);
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < 5; i++)
      fake_piece(fd, RILL_F_CHUNK, RILL_FF_MORE, ids[i], RILL_F_REPLY, PIECE);
  for (int i = 0; i < 5; i++)
    fake_piece(fd, RILL_F_CHUNK, 0, ids[i], RILL_F_REPLY, 1024);
  while (fake_recv(fd, b, sizeof b, &f))
    ;
  close(fd);
  return NULL;
}

struct got {
  int status;
  uint32_t len;
  char msg[200];
};

static void got_reply(void *ctx, int status, const uint8_t *reply, uint32_t len) {
  struct got *g = ctx;
  g->status = status;
  g->len = len;
  if (status)
    snprintf(g->msg, sizeof g->msg, "%s", rill_errmsg());
  (void)reply;
}

/* Each stream is bounded by max_message; together they are bounded by 4
 * max_messages, so a server cannot make the client hold any number of
 * them. Five at 256 KiB each pass 1 MiB: one is refused, the others come
 * whole. */
Test(client_stats, streams_coming_in_at_once_are_bounded_in_total) {
  fake_t k;
  rill_client_t *c =
      fake_connect(&k, fake_streams, 0, (rill_client_opts_t){.max_message = 256u << 10});
  struct got g[5] = {0};
  for (int i = 0; i < 5; i++) {
    g[i].status = 1;
    cr_assert_eq(rill_client_ask_async(c, "svc", "q", 1, RILL_FOREVER, got_reply, &g[i]), 0, "%s",
                 rill_errmsg());
  }
  int done = 0, refused = 0;
  for (int tries = 0; done < 5 && tries < 500; tries++) {
    cr_assert_geq(rill_client_poll(c, 20000000ull), 0, "%s", rill_errmsg());
    done = 0;
    for (int i = 0; i < 5; i++)
      done += g[i].status != 1;
  }
  cr_assert_eq(done, 5, "every ask ended");
  for (int i = 0; i < 5; i++) {
    if (g[i].status == 0) {
      cr_expect_eq(g[i].len, 4 * PIECE + 1024);
    } else {
      refused++;
      cr_expect_eq(g[i].status, RILL_ENOBUFS, "%s", rill_strerror(g[i].status));
      cr_expect_neq(strstr(g[i].msg, "over 4 x max_message"), NULL, "%s", g[i].msg);
    }
  }
  cr_expect_eq(refused, 1, "exactly the one that passed the budget");
  rill_client_close(c);
  fake_end(&k);
}

/* ---- a send that waits reads meanwhile ------------------------------------------------ */

#define PINGS 40000 /* 960 KB of PING frames: far more than the socket buffers hold */

/* Writes n bytes, giving up (false) when the peer takes nothing for 3 s:
 * a client that does not read while it sends would hold both sides here. */
static bool write_patient(int fd, const uint8_t *b, size_t n) {
  while (n) {
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 3000) <= 0)
      return false;
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno != EAGAIN)
      return false;
    if (w > 0)
      b += w, n -= (size_t)w;
  }
  return true;
}

/* WELCOME; then, reading nothing, PINGs until they are all written; then
 * the client's streamed ask, answered with a REPLY; then whatever comes
 * (the PONGs) until the client goes. Small buffers, so that neither side
 * can park much in the kernel. */
static void *fake_pinger(void *arg) {
  fake_t *k = arg;
  uint8_t *b = malloc(2u << 20);
  cr_assert_not_null(b);
  int fd = script_accept(k, b, 4096, NULL, 64u << 10);
  cr_assert_geq(fd, 0);
  rill_frame_t f;
  for (int i = 0; i < PINGS; i++)
    rill_frame_header(b + (size_t)i * RILL_NET_HDR, RILL_F_PING, 0, 0, (uint64_t)i + 1, 0, 0);
  bool wrote = write_patient(fd, b, (size_t)PINGS * RILL_NET_HDR);
  __atomic_store_n(&k->verdict, wrote ? 1 : 2, __ATOMIC_RELEASE);
  uint64_t ask = 0;
  size_t got = 0;
  for (uint8_t t; wrote && (t = fake_recv(fd, b, 2u << 20, &f));) {
    if (t == RILL_F_ASK) {
      ask = f.id;
      got += f.len;
    } else if (t == RILL_F_CHUNK) {
      got += f.len;
      if (!(f.flags & RILL_FF_MORE))
        fake_send(fd, RILL_F_REPLY, ask, 0, "done", 4);
    }
  }
  (void)got;
  free(b);
  close(fd);
  return NULL;
}

Test(client_stats, a_send_that_waits_reads_what_the_server_sends) {
  fake_t k;
  rill_client_t *c = fake_connect(&k, fake_pinger, 16384, (rill_client_opts_t){0});
  /* 8 MiB streamed in 64 KiB CHUNKs while the server writes PINGs and
   * reads nothing until they are all out. */
  size_t n = 8u << 20;
  uint8_t *req = calloc(1, n);
  cr_assert_not_null(req);
  const uint8_t *reply = NULL;
  uint32_t len = 0;
  int rc = rill_client_ask(c, "svc", req, (uint32_t)n, RILL_FOREVER, &reply, &len);
  free(req);
  cr_expect_eq(__atomic_load_n(&k.verdict, __ATOMIC_ACQUIRE), 1,
               "the server could not write its PINGs: the client did not read while it sent");
  cr_expect_eq(rc, 0, "ask: %s (%s)", rill_strerror(rc), rill_errmsg());
  if (rc == 0) {
    cr_expect_eq(len, 4);
    cr_expect_eq(memcmp(reply, "done", 4), 0);
  }
  rill_client_close(c);
  fake_end(&k);
}

/* ---- reconnect ------------------------------------------------------------------- */

static void *run_server(void *arg) {
  rill_server_run(arg);
  return NULL;
}

static rill_server_t *server_at(const char *dir, uint16_t port, pthread_t *t) {
  rill_server_t *s;
  rill_server_opts_t so = {.data_dir = dir, .port = port, .any_port = port == 0};
  cr_assert_eq(rill_server_create(&s, &so), 0, "%s", rill_errmsg());
  cr_assert_eq(pthread_create(t, NULL, run_server, s), 0);
  return s;
}

static void server_end(rill_server_t *s, pthread_t t) {
  rill_server_stop(s);
  pthread_join(t, NULL);
  rill_server_destroy(s);
}

typedef struct {
  rill_client_t *a, *b;
  replies_t *r;
  int want;
  echo_t *e;
  int asked;
} recon_t;

static bool asked_enough(void *arg) {
  recon_t *x = arg;
  return x->e->asked >= x->asked;
}

static bool sub_at(void *arg) {
  subseen_t *s = arg;
  return s->got >= 100;
}

/* The server stops and another starts on the same port and data: acked
 * publishing goes on where it was, a callback subscriber and a polling
 * one resume exactly where they were (no gap, no duplicate), a service is
 * served again, and the ask in flight at the break hears of it. */
static char rdir[64];

/* The data directory goes even when an assertion ended the test early. */
static void rdown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", rdir);
  if (rdir[0] && system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", rdir);
}

TestSuite(reconnect, .fini = rdown);

Test(reconnect, resumes_where_it_was) {
  char *dir = rdir;
  snprintf(rdir, sizeof rdir, "/tmp/rill-test-reconnect-XXXXXX");
  cr_assert_not_null(mkdtemp(rdir));
  pthread_t t;
  rill_server_t *srv_a = server_at(dir, 0, &t);
  uint16_t port = rill_server_port(srv_a);
  rill_client_opts_t o = {.port = port,
                          .name = "t",
                          .reconnect = true,
                          .backoff_min_ns = 5000000,
                          .backoff_max_ns = 50000000,
                          .reconnect_limit_ns = 5000000000ull};
  rill_client_t *pub, *sub, *psub, *prov, *asker;
  cr_assert_eq(rill_client_connect(&pub, &o), 0);
  cr_assert_eq(rill_client_connect(&sub, &o), 0);
  cr_assert_eq(rill_client_connect(&psub, &o), 0);
  cr_assert_eq(rill_client_connect(&prov, &o), 0);
  cr_assert_eq(rill_client_connect(&asker, &o), 0);
  uint16_t ch;
  cr_assert_eq(rill_client_bind(pub, "rt", &ch), 0);
  for (uint64_t i = 0; i < 50; i++) {
    uint64_t seq;
    cr_assert_eq(rill_client_publish(pub, ch, &i, sizeof i, true, &seq), 0);
    cr_assert_eq(seq, i);
  }
  subseen_t s = {0};
  cr_assert_eq(
      rill_client_subscribe_cb(sub, "rt", RILL_NET_FROM_EARLIEST, 8, on_msg, &s, &s.sub, NULL), 0);
  uint16_t ps;
  cr_assert_eq(rill_client_subscribe(psub, "rt", RILL_NET_FROM_EARLIEST, 1000, &ps, NULL), 0);
  for (int i = 0; i < 5000 && s.got < 50; i++)
    cr_assert_geq(rill_client_poll(sub, 1000000), 0, "%s", rill_errmsg());
  cr_assert_eq(s.got, 50);
  rill_client_msg_t m;
  for (uint64_t i = 0; i < 50; i++) {
    cr_assert_eq(rill_client_next(psub, &m, 2000000000ull), 0, "%s", rill_errmsg());
    cr_assert_eq(m.seq, i);
  }
  echo_t e = {.c = prov, .silent = true};
  cr_assert_eq(rill_client_serve_cb(prov, "svc", on_ask, &e, NULL), 0);
  static replies_t r;
  static ask_ctx_t k[2];
  k[0] = (ask_ctx_t){&r, 0};
  k[1] = (ask_ctx_t){&r, 1};
  uint32_t v0 = 0, v1 = 1;
  cr_assert_eq(rill_client_ask_async(asker, "svc", &v0, sizeof v0, RILL_FOREVER, on_reply, &k[0]),
               0);
  recon_t x = {.e = &e, .asked = 1};
  pump2(asker, prov, asked_enough, &x);
  cr_assert_eq(e.asked, 1);

  server_end(srv_a, t);
  want_t w = {&r, 1};
  pump2(asker, NULL, enough, &w);
  cr_expect_eq(r.calls, 1);
  cr_expect_eq(r.last_status, RILL_ECONNRESET, "the ask in flight at the break");

  rill_server_t *srv_b = server_at(dir, port, &t);
  for (uint64_t i = 50; i < 100; i++) {
    uint64_t seq;
    int rc;
    while ((rc = rill_client_publish(pub, ch, &i, sizeof i, true, &seq)) == RILL_ECONNRESET)
      ;
    cr_assert_eq(rc, 0, "%s", rill_errmsg());
    cr_assert_eq(seq, i);
  }
  pump2(sub, NULL, sub_at, &s);
  cr_expect_eq(s.got, 100);
  cr_expect_eq(s.next, 100);
  for (uint64_t i = 50; i < 100; i++) {
    cr_assert_eq(rill_client_next(psub, &m, 2000000000ull), 0, "%s", rill_errmsg());
    cr_assert_eq(m.seq, i);
  }
  cr_expect_eq(rill_client_next(psub, &m, 50000000), RILL_ETIMEDOUT, "no duplicate");
  for (int i = 0; i < 10; i++)
    cr_assert_geq(rill_client_poll(sub, 1000000), 0);
  cr_expect_eq(s.got, 100, "no duplicate");
  /* The provider is serving again, once it has dialled. */
  int rc;
  while ((rc = rill_client_ping(prov, NULL)) == RILL_ECONNRESET)
    ; /* it learns of the break from its ping, the first call after it */
  cr_assert_eq(rc, 0, "%s", rill_errmsg());
  e.silent = false;
  memset(&r, 0, sizeof r);
  cr_assert_eq(rill_client_ask_async(asker, "svc", &v1, sizeof v1, RILL_FOREVER, on_reply, &k[1]),
               0);
  pump2(asker, prov, enough, &w);
  cr_expect_eq(r.ok, 1, "status %d", r.last_status);

  rill_client_close(pub);
  rill_client_close(sub);
  rill_client_close(psub);
  rill_client_close(prov);
  rill_client_close(asker);
  /* With nobody to dial, a client gives up after its limit. */
  o.reconnect_limit_ns = 100000000;
  rill_client_t *lone;
  cr_assert_eq(rill_client_connect(&lone, &o), 0);
  server_end(srv_b, t);
  rc = 0;
  for (int i = 0; i < 1000 && rc >= 0; i++)
    rc = rill_client_poll(lone, 10000000);
  cr_expect_eq(rc, RILL_ECLOSED, "%s", rill_errmsg());
  cr_expect_eq(rill_client_publish(lone, 1, "x", 1, false, NULL), RILL_ECLOSED);
  rill_client_close(lone);
}

/* ---- batches and messages over max_body ---------------------------------------- */

typedef struct {
  uint64_t got, seq;
  uint32_t len;
  bool same;
  const uint8_t *want;
} bigseen_t;

static void on_big(void *ctx, const rill_client_msg_t *m) {
  bigseen_t *b = ctx;
  b->got++;
  b->seq = m->seq;
  b->len = m->len;
  b->same = m->len == (3u << 20) + 5 && !memcmp(m->data, b->want, m->len);
}

/* A batch is appended in order under consecutive sequences; a message
 * three times max_body goes out in CHUNKs and comes back whole, to a
 * callback subscriber and to a polling one. */
Test(client, batch_and_streamed) {
  rill_client_t *pub, *sub;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&pub, &o), 0);
  cr_assert_eq(rill_client_connect(&sub, &o), 0);
  uint16_t ch;
  cr_assert_eq(rill_client_bind(pub, "big", &ch), 0);
  rill_iov_t recs[3] = {{"a", 1}, {"bb", 2}, {"", 0}};
  uint64_t first = 99;
  cr_assert_eq(rill_client_publish_batch(pub, ch, recs, 3, true, &first), 0, "%s", rill_errmsg());
  cr_expect_eq(first, 0);
  cr_expect_eq(rill_client_publish_batch(pub, ch, recs, 0, true, &first), RILL_EINVAL);
  cr_assert_eq(rill_client_publish_batch(pub, ch, recs, 2, false, NULL), 0);
  uint32_t len = (3u << 20) + 5;
  uint8_t *m = malloc(len);
  cr_assert_not_null(m);
  for (uint32_t i = 0; i < len; i++)
    m[i] = (uint8_t)(i * 7 + (i >> 12));
  uint64_t seq;
  cr_assert_eq(rill_client_publish(pub, ch, m, len, true, &seq), 0, "%s", rill_errmsg());
  cr_expect_eq(seq, 5);
  int rc = rill_client_publish(pub, ch, m, len, false, NULL);
  cr_assert_eq(rc, 0, "%d %s", rc, rill_errmsg());
  cr_assert_eq(rill_client_ping(pub, NULL), 0, "%s", rill_errmsg());

  uint16_t ps;
  cr_assert_eq(rill_client_subscribe(sub, "big", RILL_NET_FROM_EARLIEST, 100, &ps, NULL), 0);
  rill_client_msg_t d;
  const char *want[5] = {"a", "bb", "", "a", "bb"};
  for (uint64_t i = 0; i < 5; i++) {
    cr_assert_eq(rill_client_next(sub, &d, 2000000000ull), 0, "%s", rill_errmsg());
    cr_assert_eq(d.seq, i);
    cr_assert_eq(d.len, strlen(want[i]));
    cr_assert_eq(memcmp(d.data, want[i], d.len), 0);
  }
  for (uint64_t i = 5; i < 7; i++) {
    cr_assert_eq(rill_client_next(sub, &d, 5000000000ull), 0, "%s", rill_errmsg());
    cr_assert_eq(d.seq, i);
    cr_assert_eq(d.len, len);
    cr_assert_eq(memcmp(d.data, m, len), 0, "the streamed record came back whole");
  }
  bigseen_t b = {.want = m};
  uint16_t cs;
  cr_assert_eq(rill_client_subscribe_cb(sub, "big", 5, 4, on_big, &b, &cs, NULL), 0);
  for (int i = 0; i < 2000 && b.got < 2; i++)
    cr_assert_geq(rill_client_poll(sub, 5000000), 0, "%s", rill_errmsg());
  cr_expect_eq(b.got, 2);
  cr_expect_eq(b.seq, 6);
  cr_expect(b.same, "the callback saw the whole record");
  free(m);
  rill_client_close(pub);
  rill_client_close(sub);
}

static void on_ask_pinging(void *ctx, const rill_client_ask_t *a) {
  echo_t *e = ctx;
  uint8_t out[300];
  memcpy(out, "e:", 2);
  memcpy(out + 2, a->data, a->len);
  uint32_t len = a->len + 2;
  uint64_t id = a->id;
  /* A blocking call inside a callback: asks it reads meanwhile are kept
   * for the next poll, and a->data is not used after it. */
  cr_assert_eq(rill_client_ping(e->c, NULL), 0, "%s", rill_errmsg());
  e->asked++;
  cr_assert_eq(rill_client_reply(e->c, id, out, len), 0);
}

Test(client, blocking_call_inside_a_callback) {
  rill_client_t *asker, *prov;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&asker, &o), 0);
  cr_assert_eq(rill_client_connect(&prov, &o), 0);
  echo_t e = {.c = prov};
  cr_assert_eq(rill_client_serve_cb(prov, "echo", on_ask_pinging, &e, NULL), 0);
  static replies_t r;
  static ask_ctx_t k[300];
  for (uint32_t i = 0; i < 300; i++) {
    k[i] = (ask_ctx_t){&r, i};
    cr_assert_eq(rill_client_ask_async(asker, "echo", &i, sizeof i, RILL_FOREVER, on_reply, &k[i]),
                 0);
  }
  want_t w = {&r, 300};
  pump2(asker, prov, enough, &w);
  cr_expect_eq(r.ok, 300);
  cr_expect_eq(e.asked, 300);
  rill_client_close(prov);
  rill_client_close(asker);
}

/* ---- asks and replies over max_body, streamed in CHUNKs ---------------------------- */

#define BIG_ASK   ((3u << 20) + 11)
#define BIG_REPLY ((5u << 20) + 3)

static uint8_t *pattern(uint32_t len, uint32_t seed) {
  uint8_t *p = malloc(len);
  cr_assert_not_null(p);
  for (uint32_t i = 0; i < len; i++)
    p[i] = (uint8_t)(i * seed + (i >> 11));
  return p;
}

static bool is_pattern(const uint8_t *p, uint32_t len, uint32_t seed) {
  for (uint32_t i = 0; i < len; i++)
    if (p[i] != (uint8_t)(i * seed + (i >> 11)))
      return false;
  return true;
}

/* What the "big" service answers: the 3 MiB ask, or "B", with the 5 MiB
 * reply; "s" with "ok"; anything else with an ERROR. A reply the client
 * refuses (over its max_message) becomes an ERROR too. */
static void big_answer(rill_client_t *c, const rill_client_ask_t *a, const uint8_t *reply) {
  int rc;
  if ((a->len == BIG_ASK && is_pattern(a->data, a->len, 7)) || (a->len == 1 && a->data[0] == 'B'))
    rc = rill_client_reply(c, a->id, reply, BIG_REPLY);
  else if (a->len == 1 && a->data[0] == 's')
    rc = rill_client_reply(c, a->id, "ok", 2);
  else
    rc = rill_client_reply_error(c, a->id, RILL_EINVAL, "not an ask the big service takes");
  if (rc)
    cr_assert_eq(rill_client_reply_error(c, a->id, rc, rill_errmsg()), 0, "%s", rill_errmsg());
}

typedef struct {
  rill_client_t *c;
  uint8_t *reply;
  int stop;  /* atomic */
  int asked; /* atomic */
  int whole; /* atomic: asks that came as the whole 3 MiB */
  pthread_t t;
} bigprov_t;

static void big_note(bigprov_t *p, const rill_client_ask_t *a) {
  if (a->len == BIG_ASK && is_pattern(a->data, a->len, 7))
    __atomic_fetch_add(&p->whole, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&p->asked, 1, __ATOMIC_RELEASE);
}

static void *big_provide(void *arg) {
  bigprov_t *p = arg;
  while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
    rill_client_ask_t a;
    int rc = rill_client_next_ask(p->c, &a, 20000000);
    if (rc == RILL_ETIMEDOUT)
      continue;
    cr_assert_eq(rc, 0, "next_ask: %s", rill_errmsg());
    big_note(p, &a);
    big_answer(p->c, &a, p->reply);
  }
  return NULL;
}

static void on_big_ask(void *ctx, const rill_client_ask_t *a) {
  bigprov_t *p = ctx;
  big_note(p, a);
  big_answer(p->c, a, p->reply);
}

static void *big_poll(void *arg) {
  bigprov_t *p = arg;
  while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE))
    cr_assert_geq(rill_client_poll(p->c, 20000000), 0, "%s", rill_errmsg());
  return NULL;
}

/* A provider of "big": by next_ask in a thread, or (cb) by a serve
 * callback run from polls in a thread. */
static void bigprov_start(bigprov_t *p, bool cb, uint64_t max_message) {
  *p = (bigprov_t){.reply = pattern(BIG_REPLY, 13)};
  rill_client_opts_t o = opts("tok");
  o.max_message = max_message;
  cr_assert_eq(rill_client_connect(&p->c, &o), 0, "%s", rill_errmsg());
  if (cb)
    cr_assert_eq(rill_client_serve_cb(p->c, "big", on_big_ask, p, NULL), 0, "%s", rill_errmsg());
  else
    cr_assert_eq(rill_client_serve(p->c, "big", NULL), 0, "%s", rill_errmsg());
  cr_assert_eq(pthread_create(&p->t, NULL, cb ? big_poll : big_provide, p), 0);
}

static void bigprov_stop(bigprov_t *p) {
  __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
  pthread_join(p->t, NULL);
  rill_client_close(p->c);
  free(p->reply);
}

typedef struct {
  int calls, status;
  uint32_t len;
  bool whole; /* the 5 MiB reply, every byte */
  char msg[256];
} bigrep_t;

static void on_big_reply(void *ctx, int status, const uint8_t *reply, uint32_t len) {
  bigrep_t *b = ctx;
  b->calls++;
  b->status = status;
  b->len = len;
  b->whole = reply && len == BIG_REPLY && is_pattern(reply, len, 13);
  snprintf(b->msg, sizeof b->msg, "%s", status ? rill_errmsg() : "");
}

static bool big_done(void *arg) {
  bigrep_t *b = arg;
  return b[0].calls && b[1].calls;
}

/* A 3 MiB ask answered with a 5 MiB reply, both in CHUNKs: the provider
 * sees the whole ask once, the asker the whole reply, blocking and async. */
static void ask_big_both_ways(bool cb) {
  rill_client_t *c;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&c, &o), 0);
  bigprov_t p;
  bigprov_start(&p, cb, 0);
  uint8_t *req = pattern(BIG_ASK, 7);
  const uint8_t *r;
  uint32_t rl;
  cr_assert_eq(rill_client_ask(c, "big", req, BIG_ASK, RILL_FOREVER, &r, &rl), 0, "%s",
               rill_errmsg());
  cr_assert_eq(rl, BIG_REPLY);
  cr_assert(is_pattern(r, rl, 13), "the reply came whole");
  cr_assert_eq(rill_client_ask(c, "big", req, BIG_ASK, 5000000000ull, &r, &rl), 0, "%s",
               rill_errmsg());
  cr_assert_eq(rl, BIG_REPLY);
  cr_assert(is_pattern(r, rl, 13));
  /* Two async ones in flight at once, and small asks between them. */
  bigrep_t b[2] = {0};
  cr_assert_eq(rill_client_ask_async(c, "big", req, BIG_ASK, RILL_FOREVER, on_big_reply, &b[0]), 0,
               "%s", rill_errmsg());
  cr_assert_eq(rill_client_ask_async(c, "big", "B", 1, RILL_FOREVER, on_big_reply, &b[1]), 0, "%s",
               rill_errmsg());
  cr_assert_eq(rill_client_ask(c, "big", "s", 1, RILL_FOREVER, &r, &rl), 0, "%s", rill_errmsg());
  cr_expect_eq(rl, 2);
  cr_expect_eq(memcmp(r, "ok", 2), 0);
  pump2(c, NULL, big_done, b);
  for (int i = 0; i < 2; i++) {
    cr_expect_eq(b[i].calls, 1, "ask %d: %d callbacks", i, b[i].calls);
    cr_expect_eq(b[i].status, 0, "ask %d: %s", i, b[i].msg);
    cr_expect(b[i].whole, "ask %d: the reply came whole (%u bytes)", i, b[i].len);
  }
  cr_expect_eq(__atomic_load_n(&p.whole, __ATOMIC_ACQUIRE), 3, "the provider saw 3 whole asks");
  cr_expect_eq(__atomic_load_n(&p.asked, __ATOMIC_ACQUIRE), 5);
  free(req);
  bigprov_stop(&p);
  rill_client_close(c);
}

Test(client, ask_streamed_next_ask) { ask_big_both_ways(false); }

Test(client, ask_streamed_serve_cb) { ask_big_both_ways(true); }

/* ---- a provider that speaks the protocol by hand ---- */

#define RAW_CAP (RILL_NET_HDR + RILL_NET_DEFAULT_BODY)

/* Connects and shakes hands; b is a frame buffer of RAW_CAP bytes. */
static int raw_connect(uint8_t *b) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(rill_server_port(srv))};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  uint8_t hello[64];
  cr_assert_eq(rill_net_hello_encode(hello, "tok", 3, "raw", 3), 0);
  raw_send(fd, RILL_F_HELLO, 0, 0, 0, 0, hello, (uint32_t)rill_net_hello_size(3, 3));
  rill_frame_t f;
  cr_assert_eq(fake_recv(fd, b, RAW_CAP, &f), RILL_F_WELCOME);
  return fd;
}

/* Connects and serves "big" on channel 1. */
static int raw_provider(uint8_t *b) {
  int fd = raw_connect(b);
  rill_frame_t f;
  raw_send(fd, RILL_F_SERVE, 0, 1, 1, 0, "big", 3);
  cr_assert_eq(fake_recv(fd, b, RAW_CAP, &f), RILL_F_ACK);
  return fd;
}

typedef struct {
  rill_client_t *c;
  const uint8_t *req;
  uint32_t len;
  int rc;
  pthread_t t;
} bigask_t;

static void *big_ask_thread(void *arg) {
  bigask_t *k = arg;
  const uint8_t *r;
  uint32_t rl;
  k->rc = rill_client_ask(k->c, "big", k->req, k->len, RILL_FOREVER, &r, &rl);
  return NULL;
}

/* A provider that goes away in the middle of a streamed ask, or of its
 * streamed reply: the ask fails (no hang), and what still comes of it is
 * dropped quietly, with no error left over for the next call. */
Test(client, ask_streamed_provider_gone) {
  rill_client_t *c;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&c, &o), 0);
  uint8_t *b = malloc(RAW_CAP);
  cr_assert_not_null(b);
  uint8_t *req = pattern(BIG_ASK, 7);
  rill_frame_t f;

  /* Gone after the first piece of the ask. */
  int fd = raw_provider(b);
  bigask_t k = {.c = c, .req = req, .len = BIG_ASK};
  cr_assert_eq(pthread_create(&k.t, NULL, big_ask_thread, &k), 0);
  cr_assert_eq(fake_recv(fd, b, RAW_CAP, &f), RILL_F_ASK);
  cr_expect(f.flags & RILL_FF_STREAM, "a 3 MiB ask comes in pieces");
  close(fd);
  pthread_join(k.t, NULL);
  cr_expect_eq(k.rc, RILL_ECONNRESET, "%d: %s", k.rc, rill_errmsg());
  const uint8_t *r;
  uint32_t rl;
  cr_expect_eq(rill_client_ask(c, "big", "s", 1, RILL_FOREVER, &r, &rl), RILL_ENOENT, "%s",
               rill_errmsg());

  /* Gone after the first piece of the reply. */
  fd = raw_provider(b);
  k = (bigask_t){.c = c, .req = (const uint8_t *)"B", .len = 1};
  cr_assert_eq(pthread_create(&k.t, NULL, big_ask_thread, &k), 0);
  cr_assert_eq(fake_recv(fd, b, RAW_CAP, &f), RILL_F_ASK);
  cr_expect_eq(f.len, 1);
  uint8_t *piece = pattern(100000, 13);
  raw_send(fd, RILL_F_REPLY, RILL_FF_STREAM, 0, f.id, 0, piece, 100000);
  raw_send(fd, RILL_F_CHUNK, RILL_FF_MORE, 0, f.id, RILL_F_REPLY, piece, 100000);
  close(fd);
  pthread_join(k.t, NULL);
  cr_expect_eq(k.rc, RILL_ECONNRESET, "%d: %s", k.rc, rill_errmsg());
  cr_expect_eq(rill_client_ask(c, "big", "s", 1, RILL_FOREVER, &r, &rl), RILL_ENOENT, "%s",
               rill_errmsg());
  cr_expect_eq(rill_client_ping(c, NULL), 0, "%s", rill_errmsg());
  free(piece);
  free(req);
  free(b);
  rill_client_close(c);
}

/* An asker that goes away in the middle of its streamed ask: the provider
 * is never handed a piece of it (the server cancels it), and answers the
 * next one whole. */
Test(client, ask_streamed_asker_gone) {
  bigprov_t p;
  bigprov_start(&p, false, 0);
  uint8_t *b = malloc(RAW_CAP);
  cr_assert_not_null(b);
  int fd = raw_connect(b);
  uint8_t *req = pattern(BIG_ASK, 7);
  uint32_t piece = 500000;
  b[0] = 3; /* the name's length, u16 */
  b[1] = 0;
  memcpy(b + 2, "big", 3);
  memcpy(b + 5, req, piece);
  raw_send(fd, RILL_F_ASK, RILL_FF_STREAM, 0, 9, 0, b, piece + 5);
  raw_send(fd, RILL_F_CHUNK, RILL_FF_MORE, 0, 9, RILL_F_ASK, req + piece, piece);
  close(fd);
  rill_client_t *c;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&c, &o), 0);
  const uint8_t *r;
  uint32_t rl;
  cr_assert_eq(rill_client_ask(c, "big", req, BIG_ASK, 5000000000ull, &r, &rl), 0, "%s",
               rill_errmsg());
  cr_expect_eq(rl, BIG_REPLY);
  cr_expect(is_pattern(r, rl, 13));
  cr_expect_eq(__atomic_load_n(&p.asked, __ATOMIC_ACQUIRE), 1, "the broken ask never got there");
  cr_expect_eq(__atomic_load_n(&p.whole, __ATOMIC_ACQUIRE), 1);
  rill_client_close(c);
  free(req);
  free(b);
  bigprov_stop(&p);
}

/* max_message: a streamed ask or reply over it is refused before a byte
 * is sent; one coming in over it is dropped, and its ask fails with
 * RILL_EMSGSIZE on the asker's side either way. */
Test(client, ask_max_message) {
  rill_client_t *c;
  rill_client_opts_t o = opts("tok");
  o.max_message = 2u << 20;
  cr_assert_eq(rill_client_connect(&c, &o), 0);
  uint8_t *req = pattern(BIG_ASK, 7);
  const uint8_t *r;
  uint32_t rl;
  cr_expect_eq(rill_client_ask(c, "big", req, BIG_ASK, RILL_FOREVER, &r, &rl), RILL_EMSGSIZE,
               "refused before the name is even looked up");
  bigrep_t b[2] = {0};
  cr_expect_eq(rill_client_ask_async(c, "big", req, BIG_ASK, RILL_FOREVER, on_big_reply, &b[0]),
               RILL_EMSGSIZE);
  cr_expect_eq(rill_client_reply(c, 12345, req, BIG_ASK), RILL_EMSGSIZE);
  cr_expect_eq(rill_client_poll(c, 0), 0, "no callback, no error from the server");
  cr_expect_eq(b[0].calls, 0);
  cr_expect_eq(rill_client_ping(c, NULL), 0, "%s", rill_errmsg());
  o.max_message = 1ull << 32;
  rill_client_t *bad = NULL;
  cr_expect_eq(rill_client_connect(&bad, &o), RILL_EINVAL);

  /* Coming in: a 5 MiB reply to an asker that takes 2 MiB. */
  bigprov_t p;
  bigprov_start(&p, false, 0);
  cr_expect_eq(rill_client_ask(c, "big", "B", 1, RILL_FOREVER, &r, &rl), RILL_EMSGSIZE, "%s",
               rill_errmsg());
  cr_expect_neq(strstr(rill_errmsg(), "max_message"), NULL, "%s", rill_errmsg());
  cr_assert_eq(rill_client_ask_async(c, "big", "B", 1, RILL_FOREVER, on_big_reply, &b[0]), 0);
  cr_assert_eq(rill_client_ask_async(c, "big", "s", 1, RILL_FOREVER, on_big_reply, &b[1]), 0);
  pump2(c, NULL, big_done, b);
  cr_expect_eq(b[0].calls, 1);
  cr_expect_eq(b[0].status, RILL_EMSGSIZE, "%s", b[0].msg);
  cr_expect_eq(b[1].status, 0, "%s", b[1].msg);
  cr_expect_eq(b[1].len, 2);
  cr_expect_eq(rill_client_ask(c, "big", "s", 1, RILL_FOREVER, &r, &rl), 0, "%s", rill_errmsg());
  cr_expect_eq(rill_client_ping(c, NULL), 0, "nothing left over: %s", rill_errmsg());
  bigprov_stop(&p);

  /* Coming in: a 3 MiB ask to a provider that takes 2 MiB. */
  bigprov_start(&p, true, 2u << 20);
  rill_client_t *big;
  o = opts("tok");
  cr_assert_eq(rill_client_connect(&big, &o), 0);
  cr_expect_eq(rill_client_ask(big, "big", req, BIG_ASK, RILL_FOREVER, &r, &rl), RILL_EMSGSIZE,
               "%s", rill_errmsg());
  cr_expect_neq(strstr(rill_errmsg(), "max_message"), NULL, "%s", rill_errmsg());
  cr_expect_eq(rill_client_ask(big, "big", "s", 1, RILL_FOREVER, &r, &rl), 0, "%s", rill_errmsg());
  cr_expect_eq(__atomic_load_n(&p.asked, __ATOMIC_ACQUIRE), 1, "only the small ask got there");
  bigprov_stop(&p);
  rill_client_close(big);
  free(req);
  rill_client_close(c);
}

/* ---- a provider failing an ask ---- */

static void on_ask_refusing(void *ctx, const rill_client_ask_t *a) {
  echo_t *e = ctx;
  e->asked++;
  cr_assert_eq(rill_client_reply_error(e->c, a->id, RILL_EPERM, "not for you"), 0, "%s",
               rill_errmsg());
}

static void on_refused(void *ctx, int status, const uint8_t *reply, uint32_t len) {
  bigrep_t *b = ctx;
  on_big_reply(ctx, status, reply, len);
  b->whole = strstr(rill_errmsg(), "not for you") != NULL;
}

static bool refused_done(void *arg) { return ((bigrep_t *)arg)->calls > 0; }

Test(client, reply_error) {
  rill_client_t *asker, *prov;
  rill_client_opts_t o = opts("tok");
  cr_assert_eq(rill_client_connect(&asker, &o), 0);
  cr_assert_eq(rill_client_connect(&prov, &o), 0);
  echo_t e = {.c = prov};
  cr_assert_eq(rill_client_serve_cb(prov, "no", on_ask_refusing, &e, NULL), 0);
  cr_expect_eq(rill_client_reply_error(prov, 1, 0, "x"), RILL_EINVAL, "not an error code");
  bigrep_t b = {0};
  cr_assert_eq(rill_client_ask_async(asker, "no", "x", 1, RILL_FOREVER, on_refused, &b), 0);
  pump2(asker, prov, refused_done, &b);
  cr_expect_eq(b.calls, 1);
  cr_expect_eq(b.status, RILL_EPERM);
  cr_expect(b.whole, "the provider's message came with it: %s", b.msg);
  /* Blocking, with the provider polled from a thread. */
  poller_t p = {.c = prov, .e = e};
  p.e.asked = 0;
  cr_assert_eq(rill_client_serve_cb(prov, "no2", on_ask_refusing, &p.e, NULL), 0);
  cr_assert_eq(pthread_create(&p.t, NULL, poll_thread, &p), 0);
  const uint8_t *r;
  uint32_t rl;
  cr_expect_eq(rill_client_ask(asker, "no2", "x", 1, 2000000000ull, &r, &rl), RILL_EPERM);
  cr_expect_neq(strstr(rill_errmsg(), "not for you"), NULL, "%s", rill_errmsg());
  cr_expect_eq(rill_client_ping(asker, NULL), 0, "nothing left over: %s", rill_errmsg());
  __atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
  pthread_join(p.t, NULL);
  cr_expect_eq(p.e.asked, 1);
  rill_client_close(prov);
  rill_client_close(asker);
}

/* ---- keepalive ------------------------------------------------------------------------ */

static char kdir[64];

static void kdown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", kdir);
  if (kdir[0] && system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", kdir);
}

TestSuite(keepalive, .fini = kdown);

/* A subscriber waiting on a quiet topic longer than the server's idle
 * timeout keeps its connection: the server pings it at half the timeout
 * and the client answers from whatever call is reading. */
Test(keepalive, a_waiting_subscriber_stays) {
  snprintf(kdir, sizeof kdir, "/tmp/rill-test-keep-XXXXXX");
  cr_assert_not_null(mkdtemp(kdir));
  rill_server_t *s;
  pthread_t t;
  cr_assert_eq(rill_server_create(&s, &(rill_server_opts_t){.data_dir = kdir,
                                                            .any_port = true,
                                                            .idle_timeout_ns = 600000000ull}),
               0, "%s", rill_errmsg());
  cr_assert_eq(pthread_create(&t, NULL, run_server, s), 0);
  rill_client_opts_t o = {.port = rill_server_port(s), .name = "k"};
  rill_client_t *sub, *pub;
  cr_assert_eq(rill_client_connect(&sub, &o), 0, "%s", rill_errmsg());
  uint16_t ch;
  cr_assert_eq(rill_client_subscribe_ex(sub, "quiet", RILL_NET_FROM_LATEST, 16,
                                        RILL_CLIENT_SUB_CREATE, &ch, NULL),
               0);
  rill_client_msg_t m;
  /* Three idle timeouts of nothing. */
  cr_assert_eq(rill_client_next(sub, &m, 1800000000ull), RILL_ETIMEDOUT, "%s", rill_errmsg());
  cr_assert_eq(rill_client_connect(&pub, &o), 0, "%s", rill_errmsg());
  uint16_t pch;
  uint64_t seq;
  cr_assert_eq(rill_client_bind(pub, "quiet", &pch), 0);
  cr_assert_eq(rill_client_publish(pub, pch, "at last", 7, true, &seq), 0);
  cr_assert_eq(rill_client_next(sub, &m, 5000000000ull), 0, "%s", rill_errmsg());
  cr_expect(m.len == 7 && !memcmp(m.data, "at last", 7));
  rill_client_close(pub);
  rill_client_close(sub);
  server_end(s, t);
}

/* ---- what a server cannot make the client do ------------------------------------------ */

/* Accepts and shakes hands, then reads nothing, ever; the connections stay
 * open until the listener is shut down. */
static void *script_deaf(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fds[8], n = 0;
  for (int fd; n < 8 && (fd = script_accept(k, b, sizeof b, NULL, 64u << 10)) >= 0;)
    fds[n++] = fd;
  while (n)
    close(fds[--n]);
  return NULL;
}

/* The client's socket to port: the descriptor whose peer it is. */
static int client_fd_to(uint16_t port) {
  for (int fd = 3; fd < 1024; fd++) {
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    if (getpeername(fd, (struct sockaddr *)&sa, &sl) == 0 && sa.sin_family == AF_INET &&
        ntohs(sa.sin_port) == port)
      return fd;
  }
  return -1;
}

/* A server that stops reading: a publish, an ask and a close each give
 * up after the client's timeout (the connection is dropped), rather than
 * waiting forever for room in the socket. */
Test(client_limits, sends_time_out) {
  alarm(60); /* a hang is a failure (SIGALRM), not a stuck suite */
  fake_t k;
  fake_start(&k, script_deaf, 16384);
  rill_client_opts_t o = {.port = k.port, .timeout_ns = 300000000ull};
  size_t n = 16u << 20;
  uint8_t *big = calloc(1, n);
  cr_assert_not_null(big);
  rill_client_t *c;

  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  cr_expect_eq(rill_client_publish(c, 1, big, (uint32_t)n, false, NULL), RILL_ETIMEDOUT);
  cr_expect_neq(strstr(rill_errmsg(), "timeout"), NULL, "%s", rill_errmsg());
  cr_expect_eq(rill_client_ping(c, NULL), RILL_ECLOSED, "the connection was dropped");
  rill_client_close(c);

  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  const uint8_t *rep;
  uint32_t rl;
  cr_expect_eq(rill_client_ask(c, "svc", big, (uint32_t)n, RILL_FOREVER, &rep, &rl), RILL_ETIMEDOUT,
               "%s", rill_errmsg());
  rill_client_close(c);

  /* close: the kernel's buffers full behind a publish still buffered. */
  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  int fd = client_fd_to(k.port);
  cr_assert_geq(fd, 0);
  while (send(fd, big, 65536, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
    ;
  cr_assert_eq(rill_client_publish(c, 1, "x", 1, false, NULL), 0, "buffered");
  rill_client_close(c); /* returns: that is the test */

  free(big);
  shutdown(k.lfd, SHUT_RDWR);
  fake_end(&k);
}

/* SUBSCRIBE acked; then a streamed delivery of 2 MiB (over the client's
 * max_message of 1 MiB) in 64 KiB pieces, and a small one after it. */
static void *script_big_delivery(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fd = script_accept(k, b, sizeof b, NULL, 64u << 10);
  cr_assert_geq(fd, 0);
  rill_frame_t f;
  while (fake_recv(fd, b, sizeof b, &f) != RILL_F_SUBSCRIBE)
    cr_assert_neq(f.type, 0);
  uint16_t ch = f.channel;
  raw_send(fd, RILL_F_ACK, 0, ch, f.id, 0, NULL, 0);
  const uint32_t total = 2u << 20, piece = 60u << 10;
  uint8_t *p = calloc(1, piece);
  cr_assert_not_null(p);
  raw_send(fd, RILL_F_DELIVER, RILL_FF_STREAM, ch, total, 0, p, piece);
  for (uint32_t off = piece; off < total; off += piece) {
    uint32_t len = total - off < piece ? total - off : piece;
    raw_send(fd, RILL_F_CHUNK, off + len < total ? RILL_FF_MORE : 0, ch, 0, RILL_F_DELIVER, p, len);
  }
  raw_send(fd, RILL_F_DELIVER, 0, ch, 0, 1, "small", 5);
  free(p);
  while (fake_recv(fd, b, sizeof b, &f))
    ;
  close(fd);
  return NULL;
}

/* A delivery is bounded by max_message like an ask or a reply: the
 * client does not allocate what the server claims beyond it. The record
 * is passed over with an error naming the limit, and the next one comes. */
Test(client_limits, a_delivery_over_max_message_is_skipped) {
  alarm(60); /* a hang is a failure (SIGALRM), not a stuck suite */
  fake_t k;
  rill_client_t *c =
      fake_connect(&k, script_big_delivery, 0, (rill_client_opts_t){.max_message = 1u << 20});
  uint16_t s;
  cr_assert_eq(rill_client_subscribe(c, "t", RILL_NET_FROM_EARLIEST, 10, &s, NULL), 0, "%s",
               rill_errmsg());
  rill_client_msg_t m;
  int rc = rill_client_next(c, &m, 10000000000ull);
  cr_expect_eq(rc, RILL_EMSGSIZE, "%s (%s)", rill_strerror(rc), rill_errmsg());
  cr_expect_neq(strstr(rill_errmsg(), "max_message"), NULL, "%s", rill_errmsg());
  cr_assert_eq(rill_client_next(c, &m, 10000000000ull), 0, "%s", rill_errmsg());
  cr_expect_eq(m.seq, 1);
  cr_expect(m.len == 5 && !memcmp(m.data, "small", 5));
  rill_client_close(c);
  fake_end(&k);
}

/* ACKs every BIND, SUBSCRIBE, SERVE and UNSUBSCRIBE. */
static void *script_acker(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fd = script_accept(k, b, sizeof b, NULL, 64u << 10);
  cr_assert_geq(fd, 0);
  rill_frame_t f;
  for (uint8_t t; (t = fake_recv(fd, b, sizeof b, &f)) != 0;)
    if (t == RILL_F_BIND || t == RILL_F_SUBSCRIBE || t == RILL_F_SERVE || t == RILL_F_UNSUBSCRIBE)
      raw_send(fd, RILL_F_ACK, 0, f.channel, f.id, 0, NULL, 0);
  close(fd);
  return NULL;
}

/* 65,535 channels live at once: the next bind is refused with the limit
 * named, rather than handed a live channel again; one let go is free. */
Test(client_limits, channels_never_wrap_onto_live_ones) {
  alarm(120); /* a hang is a failure (SIGALRM), not a stuck suite */
  fake_t k;
  rill_client_t *c = fake_connect(&k, script_acker, 0, (rill_client_opts_t){0});
  uint16_t sub, ch, srv_ch;
  cr_assert_eq(rill_client_subscribe(c, "s", RILL_NET_FROM_LATEST, 0, &sub, NULL), 0);
  cr_assert_eq(rill_client_serve(c, "svc", &srv_ch), 0);
  cr_expect_neq(sub, srv_ch);
  for (uint32_t i = 0; i < 65533; i++) {
    cr_assert_eq(rill_client_bind(c, "t", &ch), 0, "bind %u: %s", i, rill_errmsg());
    cr_assert(ch != 0 && ch != sub && ch != srv_ch, "bind %u got channel %u", i, ch);
  }
  int rc = rill_client_bind(c, "t", &ch);
  cr_expect_eq(rc, RILL_EFULL, "the 65,536th channel: %s, channel %u", rill_strerror(rc), ch);
  cr_expect_neq(strstr(rill_errmsg(), "65535"), NULL, "%s", rill_errmsg());
  cr_assert_eq(rill_client_unsubscribe(c, sub), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_bind(c, "t", &ch), 0, "%s", rill_errmsg());
  cr_expect_eq(ch, sub, "the channel let go");
  rill_client_close(c);
  fake_end(&k);
}

/* The HELLO of each connection: token "secret" and name "nm" in both
 * (verdict counts those that had them); the first connection is closed
 * after its WELCOME, so the client dials again. */
static void *script_hello_twice(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  rill_frame_t f;
  for (int i = 0; i < 2; i++) {
    rill_net_hello_t h;
    int fd = script_accept(k, b, sizeof b, &h, 64u << 10);
    cr_assert_geq(fd, 0);
    if (h.token_len == 6 && !memcmp(h.token, "secret", 6) && h.name_len == 2 &&
        !memcmp(h.name, "nm", 2))
      __atomic_add_fetch(&k->verdict, 1, __ATOMIC_ACQ_REL);
    if (i == 0) {
      close(fd);
      continue;
    }
    for (uint8_t t; (t = fake_recv(fd, b, sizeof b, &f)) != 0;)
      if (t == RILL_F_PING)
        fake_send(fd, RILL_F_PONG, f.id, 0, "", 0);
    close(fd);
  }
  return NULL;
}

/* The caller's strings are copied at connect: overwritten right after,
 * the reconnect still says the token and name it was given. */
Test(client_limits, opts_strings_are_copied) {
  fake_t k;
  fake_start(&k, script_hello_twice, 0);
  char host[16] = "127.0.0.1", token[16] = "secret", name[8] = "nm";
  rill_client_t *c;
  cr_assert_eq(rill_client_connect(&c, &(rill_client_opts_t){.host = host,
                                                             .port = k.port,
                                                             .token = token,
                                                             .name = name,
                                                             .reconnect = true}),
               0, "%s", rill_errmsg());
  memset(host, 'X', sizeof host - 1);
  memset(token, 'X', sizeof token - 1);
  memset(name, 'X', sizeof name - 1);
  int rc = RILL_ECONNRESET;
  for (int i = 0; i < 5 && rc; i++)
    rc = rill_client_ping(c, NULL); /* the first finds the break, the next dials again */
  cr_expect_eq(rc, 0, "%s", rill_errmsg());
  cr_expect_eq(__atomic_load_n(&k.verdict, __ATOMIC_ACQUIRE), 2, "both HELLOs as given");
  rill_client_close(c);
  fake_end(&k);
}

/* ---- a registration the client cannot record ------------------------------------------- */

static _Atomic bool starve; /* every allocation fails while set */

static void *starve_malloc(size_t n) { return starve ? NULL : malloc(n); }
static void *starve_realloc(void *p, size_t n) { return starve ? NULL : realloc(p, n); }
static void *starve_aligned(size_t a, size_t n) {
  void *p = NULL;
  return starve || posix_memalign(&p, a, n) ? NULL : p;
}

/* ACKs SUBSCRIBE, UNSUBSCRIBE and SERVE, answers PING; verdict: the
 * subscriptions and services the client holds on this server. */
static void *script_registry(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fd = script_accept(k, b, sizeof b, NULL, 64u << 10);
  cr_assert_geq(fd, 0);
  rill_frame_t f;
  for (uint8_t t; (t = fake_recv(fd, b, sizeof b, &f)) != 0;) {
    if (t == RILL_F_SUBSCRIBE || t == RILL_F_SERVE || t == RILL_F_UNSUBSCRIBE) {
      __atomic_add_fetch(&k->verdict, t == RILL_F_UNSUBSCRIBE ? -1 : 1, __ATOMIC_ACQ_REL);
      raw_send(fd, RILL_F_ACK, 0, f.channel, f.id, 0, NULL, 0);
    } else if (t == RILL_F_PING) {
      fake_send(fd, RILL_F_PONG, f.id, 0, "", 0);
    }
  }
  close(fd);
  return NULL;
}

/* With no memory to record a subscription or a service, the call fails
 * and the server holds nothing for it: the room is made before the
 * request goes, so an accepted one is never left behind unrecorded. */
Test(client_alloc, no_memory_leaves_no_registration_on_the_server) {
  rill_allocator_t a = {starve_malloc, starve_realloc, starve_aligned, free};
  cr_assert_eq(rill_mem_set_allocator(&a), 0, "%s", rill_errmsg());
  fake_t k;
  rill_client_t *c = fake_connect(&k, script_registry, 0, (rill_client_opts_t){0});
  uint16_t ch;
  starve = true;
  cr_expect_eq(rill_client_subscribe(c, "t", RILL_NET_FROM_LATEST, 0, &ch, NULL), RILL_ENOMEM);
  cr_expect_eq(rill_client_serve(c, "svc", &ch), RILL_ENOMEM);
  starve = false;
  cr_assert_eq(rill_client_ping(c, NULL), 0, "%s", rill_errmsg());
  cr_expect_eq(__atomic_load_n(&k.verdict, __ATOMIC_ACQUIRE), 0,
               "registrations left on the server that the client does not know");
  rill_client_close(c);
  fake_end(&k);
}

/* SUBSCRIBE acked, then three deliveries whatever the credits. */
static void *script_flood(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fd = script_accept(k, b, sizeof b, NULL, 64u << 10);
  cr_assert_geq(fd, 0);
  rill_frame_t f;
  while (fake_recv(fd, b, sizeof b, &f) != RILL_F_SUBSCRIBE)
    cr_assert_neq(f.type, 0);
  raw_send(fd, RILL_F_ACK, 0, f.channel, f.id, 0, NULL, 0);
  for (uint64_t seq = 0; seq < 3; seq++)
    raw_send(fd, RILL_F_DELIVER, 0, f.channel, 0, seq, "r", 1);
  while (fake_recv(fd, b, sizeof b, &f))
    ;
  close(fd);
  return NULL;
}

/* Deliveries are held (while a blocking call waits) only up to the
 * credits granted: one past them is the server breaking the protocol,
 * not memory the client gives. */
Test(client_limits, a_delivery_past_the_credits_is_refused) {
  fake_t k;
  rill_client_t *c = fake_connect(&k, script_flood, 0, (rill_client_opts_t){0});
  uint16_t s;
  cr_assert_eq(rill_client_subscribe(c, "t", RILL_NET_FROM_EARLIEST, 2, &s, NULL), 0, "%s",
               rill_errmsg());
  rill_client_msg_t m;
  cr_assert_eq(rill_client_next(c, &m, 5000000000ull), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_next(c, &m, 5000000000ull), 0, "%s", rill_errmsg());
  int rc = rill_client_next(c, &m, 5000000000ull);
  cr_expect_eq(rc, RILL_EPROTO, "%s (%s)", rill_strerror(rc), rill_errmsg());
  cr_expect_neq(strstr(rill_errmsg(), "credits"), NULL, "%s", rill_errmsg());
  rill_client_close(c);
  fake_end(&k);
}

/* Never answers; sends a CANCEL of no ask every 20 ms until the client
 * goes. */
static void *script_chatter(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fd = script_accept(k, b, sizeof b, NULL, 64u << 10);
  cr_assert_geq(fd, 0);
  uint8_t h[RILL_NET_HDR];
  rill_frame_header(h, RILL_F_CANCEL, 0, 0, 12345, 0, 0);
  while (send(fd, h, sizeof h, MSG_NOSIGNAL) == (ssize_t)sizeof h)
    usleep(20000);
  close(fd);
  return NULL;
}

/* A request's timeout is one deadline: frames that keep coming while it
 * waits, none of them its answer, do not push it back. */
Test(client_limits, the_timeout_is_one_deadline) {
  alarm(30); /* a hang is a failure (SIGALRM), not a stuck suite */
  fake_t k;
  rill_client_t *c =
      fake_connect(&k, script_chatter, 0, (rill_client_opts_t){.timeout_ns = 300000000ull});
  cr_expect_eq(rill_client_ping(c, NULL), RILL_ETIMEDOUT, "%s", rill_errmsg());
  rill_client_close(c);
  fake_end(&k);
}

/* Never answers SUBSCRIBE; verdict 1 when the client then closes the
 * connection (EOF within 5 s). */
static void *script_mute(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fd = script_accept(k, b, sizeof b, NULL, 64u << 10);
  cr_assert_geq(fd, 0);
  rill_frame_t f;
  while (fake_recv(fd, b, sizeof b, &f) != RILL_F_SUBSCRIBE)
    cr_assert_neq(f.type, 0);
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 5000) == 1 && recv(fd, b, sizeof b, 0) == 0)
    __atomic_store_n(&k->verdict, 1, __ATOMIC_RELEASE);
  close(fd);
  return NULL;
}

/* A SUBSCRIBE (or BIND, SERVE) with no answer in time may still be taken
 * by the server: the client drops the connection, so nothing it does not
 * know of stays registered there. */
Test(client_limits, a_registration_timed_out_drops_the_connection) {
  alarm(30); /* a hang is a failure (SIGALRM), not a stuck suite */
  fake_t k;
  rill_client_t *c =
      fake_connect(&k, script_mute, 0, (rill_client_opts_t){.timeout_ns = 200000000ull});
  uint16_t s;
  cr_expect_eq(rill_client_subscribe(c, "t", RILL_NET_FROM_LATEST, 1, &s, NULL), RILL_ETIMEDOUT);
  cr_expect_neq(strstr(rill_errmsg(), "connection dropped"), NULL, "%s", rill_errmsg());
  pthread_join(k.t, NULL);
  cr_expect_eq(k.verdict, 1, "the connection was closed");
  rill_client_close(c);
  close(k.lfd);
}

/* ---- a re-subscription the server refuses for good ---------------------------------- */

static _Atomic int resub_accepts;     /* connections the client made */
static _Atomic int resub_flags_ok;    /* re-SUBSCRIBEs with the flags they were made with */
static _Atomic int resub_flags_bad;   /* ... and without */
static _Atomic int resub_gone_credit; /* CREDITs for a subscription the server refused */

static void try_send(int fd, uint8_t type, uint8_t flags, uint16_t ch, uint64_t id, uint64_t arg,
                     const void *body, uint32_t len) {
  uint8_t b[RILL_NET_HDR + 256];
  rill_frame_header(b, type, flags, ch, id, arg, len);
  if (len) /* body may be NULL then */
    memcpy(b + RILL_NET_HDR, body, len);
  (void)!send(fd, b, RILL_NET_HDR + len, MSG_NOSIGNAL); /* the client may have gone: so be it */
}

static bool name_is(const rill_frame_t *f, const char *name) {
  return f->len == strlen(name) && !memcmp(f->body, name, f->len);
}

/* The first connection ACKs every SUBSCRIBE and closes at the first PING.
 * Every later one answers a SUBSCRIBE to "gone" or "gonecb" with ERROR
 * ENOENT (as a server does for a topic deleted meanwhile), ACKs the others
 * (checking that "made" and "cbmade" come with CREATE, and only they),
 * delivers record 7 on "keep" once it is subscribed, and answers PINGs
 * and UNSUBSCRIBEs. */
static void *script_resub(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  for (int conn = 0, fd; (fd = script_accept(k, b, sizeof b, NULL, 64u << 10)) >= 0; conn++) {
    resub_accepts++;
    rill_frame_t f;
    uint16_t gone[2] = {0, 0};
    for (uint8_t t; (t = fake_recv(fd, b, sizeof b, &f)) != 0;) {
      if (t == RILL_F_PING) {
        if (conn == 0)
          break;
        try_send(fd, RILL_F_PONG, 0, 0, f.id, 0, NULL, 0);
      } else if (t == RILL_F_UNSUBSCRIBE) {
        try_send(fd, RILL_F_ACK, 0, f.channel, f.id, 0, NULL, 0);
      } else if (t == RILL_F_CREDIT) {
        if (conn > 0 && f.channel && (f.channel == gone[0] || f.channel == gone[1]))
          resub_gone_credit++;
      } else if (t == RILL_F_SUBSCRIBE) {
        bool create = name_is(&f, "made") || name_is(&f, "cbmade");
        if (conn > 0 && (f.flags & RILL_FF_CREATE) == (create ? RILL_FF_CREATE : 0))
          resub_flags_ok++;
        else if (conn > 0)
          resub_flags_bad++;
        if (conn > 0 && (name_is(&f, "gone") || name_is(&f, "gonecb"))) {
          gone[name_is(&f, "gonecb")] = f.channel;
          const char *msg = "SUBSCRIBE: no topic";
          try_send(fd, RILL_F_ERROR, 0, f.channel, f.id, (uint64_t)(int64_t)RILL_ENOENT, msg,
                   (uint32_t)strlen(msg));
          continue;
        }
        try_send(fd, RILL_F_ACK, 0, f.channel, f.id, f.arg == RILL_NET_FROM_LATEST ? 0 : f.arg,
                 NULL, 0);
        if (conn > 0 && name_is(&f, "keep"))
          try_send(fd, RILL_F_DELIVER, 0, f.channel, 0, 7, "seven", 5);
      }
    }
    close(fd);
  }
  return NULL;
}

static void on_any(void *ctx, const rill_client_msg_t *m) {
  (void)m;
  (*(int *)ctx)++;
}

/* A subscription whose topic was deleted while the client was away is
 * refused for good at the reconnect: the client drops it alone (no
 * redialling until reconnect_limit), tells its reader once with the topic
 * named, and the other subscriptions go on, each made again with the
 * flags it was made with. */
Test(reconnect, a_refused_resubscription_is_dropped_alone) {
  alarm(60); /* a hang is a failure (SIGALRM), not a stuck suite */
  fake_t k;
  rill_client_t *c = fake_connect(&k, script_resub, 0,
                                  (rill_client_opts_t){.reconnect = true,
                                                       .backoff_min_ns = 1000000,
                                                       .backoff_max_ns = 10000000,
                                                       .reconnect_limit_ns = 3000000000ull});
  uint16_t gone, gonecb, made, cbmade, keep;
  int calls = 0;
  const uint64_t L = RILL_NET_FROM_LATEST;
  cr_assert_eq(rill_client_subscribe(c, "gone", L, 10, &gone, NULL), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_subscribe_cb(c, "gonecb", L, 4, on_any, &calls, &gonecb, NULL), 0);
  cr_assert_eq(rill_client_subscribe_ex(c, "made", L, 10, RILL_CLIENT_SUB_CREATE, &made, NULL), 0);
  cr_assert_eq(rill_client_subscribe_cb_ex(c, "cbmade", L, 4, RILL_CLIENT_SUB_CREATE, on_any,
                                           &calls, &cbmade, NULL),
               0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_subscribe(c, "keep", L, 10, &keep, NULL), 0, "%s", rill_errmsg());
  cr_expect_eq(rill_client_subscribe_cb_ex(c, "x", L, 4, 0x100, on_any, &calls, &keep, NULL),
               RILL_EINVAL, "an unknown flag");
  cr_expect_eq(rill_client_ping(c, NULL), RILL_ECONNRESET, "the server closed at the PING");

  /* next dials again: "gone" and "gonecb" are refused, the others taken. */
  rill_client_msg_t m;
  int rc = rill_client_next(c, &m, 10000000000ull);
  cr_expect_eq(rc, RILL_ENOENT, "%s: %s", rill_strerror(rc), rill_errmsg());
  cr_expect(m.sub == gone || m.sub == gonecb, "the dropped subscription's channel: %u", m.sub);
  cr_expect_neq(strstr(rill_errmsg(), m.sub == gone ? "'gone'" : "'gonecb'"), NULL, "%s",
                rill_errmsg());
  uint16_t first = m.sub;
  /* poll tells the other one, once (and keeps the delivery for next). */
  rc = rill_client_poll(c, 0);
  cr_expect_eq(rc, RILL_ENOENT, "%s: %s", rill_strerror(rc), rill_errmsg());
  cr_expect_neq(strstr(rill_errmsg(), first == gone ? "'gonecb'" : "'gone'"), NULL, "%s",
                rill_errmsg());
  cr_assert_eq(rill_client_next(c, &m, 10000000000ull), 0, "%s", rill_errmsg());
  cr_expect_eq(m.sub, keep);
  cr_expect_eq(m.seq, 7);
  cr_expect_eq(rill_client_ping(c, NULL), 0, "the connection goes on: %s", rill_errmsg());
  cr_expect_eq(rill_client_unsubscribe(c, gone), RILL_ENOENT, "told, and forgotten");
  cr_expect_eq(rill_client_unsubscribe(c, made), 0, "%s", rill_errmsg());
  rill_client_close(c);
  shutdown(k.lfd, SHUT_RDWR);
  fake_end(&k);
  cr_expect_eq(resub_accepts, 2, "no dialling again after a refusal for good");
  cr_expect_eq(resub_flags_ok, 5, "every re-SUBSCRIBE with its flags (%d without)",
               (int)resub_flags_bad);
  cr_expect_eq(resub_flags_bad, 0);
  cr_expect_eq(resub_gone_credit, 0, "no CREDIT for a subscription the server refused");
}

/* ---- a callback's delivery held across a break -------------------------------------- */

static _Atomic uint64_t held_resub_from = UINT64_MAX; /* where the re-SUBSCRIBE resumed */

/* The first connection ACKs the SUBSCRIBE, delivers record 0 and closes at
 * the first PING (unanswered); the second ACKs the re-SUBSCRIBE, notes its
 * `from`, and delivers from there. */
static void *script_held_cb(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  for (int conn = 0, fd; (fd = script_accept(k, b, sizeof b, NULL, 64u << 10)) >= 0; conn++) {
    rill_frame_t f;
    for (uint8_t t; (t = fake_recv(fd, b, sizeof b, &f)) != 0;) {
      if (t == RILL_F_PING && conn == 0)
        break;
      if (t == RILL_F_PING)
        try_send(fd, RILL_F_PONG, 0, 0, f.id, 0, NULL, 0);
      if (t != RILL_F_SUBSCRIBE)
        continue;
      uint64_t from = conn ? f.arg : 0;
      if (conn)
        held_resub_from = from;
      try_send(fd, RILL_F_ACK, 0, f.channel, f.id, from, NULL, 0);
      try_send(fd, RILL_F_DELIVER, 0, f.channel, 0, from, "r", 1);
    }
    close(fd);
  }
  return NULL;
}

struct seen {
  int calls;
  uint64_t first;
};

static void on_seen(void *ctx, const rill_client_msg_t *m) {
  struct seen *s = ctx;
  if (!s->calls++)
    s->first = m->seq;
}

/* A delivery a blocking call read for a callback subscription, held when
 * the connection broke: the next poll still hands it to the callback (its
 * credit rides on the re-subscription), and the re-subscription resumes
 * after it, so it is neither lost nor sent again. */
Test(reconnect, a_held_callback_delivery_survives_a_break) {
  alarm(60); /* a hang is a failure (SIGALRM), not a stuck suite */
  fake_t k;
  rill_client_t *c =
      fake_connect(&k, script_held_cb, 0,
                   (rill_client_opts_t){
                       .reconnect = true, .backoff_min_ns = 1000000, .backoff_max_ns = 10000000});
  struct seen s = {0};
  uint16_t ch;
  cr_assert_eq(rill_client_subscribe_cb(c, "t", RILL_NET_FROM_EARLIEST, 1, on_seen, &s, &ch, NULL),
               0, "%s", rill_errmsg());
  /* The PING reads record 0 (held for the callback), then the break. */
  cr_expect_eq(rill_client_ping(c, NULL), RILL_ECONNRESET, "%s", rill_errmsg());
  for (int i = 0; i < 200 && s.calls < 2; i++)
    cr_assert_geq(rill_client_poll(c, 10000000), 0, "%s", rill_errmsg());
  cr_expect_eq(s.calls, 2, "record 0 and the one after the reconnect");
  cr_expect_eq(s.first, 0, "the held record first");
  cr_expect_eq(held_resub_from, 1, "resumed after the record held");
  rill_client_close(c);
  shutdown(k.lfd, SHUT_RDWR);
  fake_end(&k);
}
