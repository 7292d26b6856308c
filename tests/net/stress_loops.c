/*
 * The server's event loops side by side: a server with more loops than
 * cores, under group commit, and clients on threads whose connections
 * land on different loops. Asks cross loops to providers and back,
 * acknowledged publishes wait for the syncer, subscribers on every loop
 * get every message once and in each publisher's order, and asks whose
 * asker or provider goes away, or whose deadline passes, end cleanly.
 * Run under TSan too: this is where the loops' shared state is raced.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rill/net.h"
#include "stress.h"

#define ASKERS      3
#define ASKS        (4000 / SCALE)
#define PUBLISHERS  2
#define PUBLISHES   (6000 / SCALE)
#define SUBSCRIBERS 3
#define CHURN       (40 / SCALE)

static uint16_t port;
static atomic_bool providers_done;
static atomic_int serving;

static rill_client_t *connect_to(const char *name) {
  rill_client_t *c;
  CHECK(rill_client_connect(&c, &(rill_client_opts_t){.port = port, .name = name}) == 0,
        "connect: %s", rill_errmsg());
  return c;
}

static void *server_main(void *arg) {
  CHECK(rill_server_run(arg) == 0, "run: %s", rill_errmsg());
  return NULL;
}

/* Echoes every ask back, prefixed with its own number, until told. */
static void *provider_main(void *arg) {
  int me = (int)(intptr_t)arg;
  rill_client_t *c = connect_to("provider");
  CHECK(rill_client_serve(c, "echo", NULL) == 0, "serve: %s", rill_errmsg());
  atomic_fetch_add(&serving, 1);
  while (!atomic_load(&providers_done)) {
    rill_client_ask_t a;
    int rc = rill_client_next_ask(c, &a, 20000000ull);
    if (rc == RILL_ETIMEDOUT)
      continue;
    CHECK(rc == 0, "next_ask: %s", rill_errmsg());
    uint8_t out[300];
    CHECK(a.len < sizeof out - 1, "ask of %u bytes", a.len);
    out[0] = (uint8_t)me;
    memcpy(out + 1, a.data, a.len);
    CHECK(rill_client_reply(c, a.id, out, a.len + 1) == 0, "reply: %s", rill_errmsg());
  }
  rill_client_close(c);
  return NULL;
}

static atomic_int answered_by[2];

static void *asker_main(void *arg) {
  int me = (int)(intptr_t)arg;
  rill_client_t *c = connect_to("asker");
  for (int i = 0; i < ASKS; i++) {
    char req[64];
    int n = snprintf(req, sizeof req, "asker %d ask %d", me, i);
    const uint8_t *rep;
    uint32_t len;
    int rc = rill_client_ask(c, "echo", req, (uint32_t)n, 5000000000ull, &rep, &len);
    CHECK(rc == 0, "ask %d: %s", i, rill_errmsg());
    CHECK(len == (uint32_t)n + 1 && !memcmp(rep + 1, req, (size_t)n), "reply to %s", req);
    CHECK(rep[0] < 2, "provider %u", rep[0]);
    atomic_fetch_add(&answered_by[rep[0]], 1);
  }
  rill_client_close(c);
  return NULL;
}

static void *publisher_main(void *arg) {
  int me = (int)(intptr_t)arg;
  rill_client_t *c = connect_to("publisher");
  uint16_t ch;
  CHECK(rill_client_bind(c, "loops", &ch) == 0, "bind: %s", rill_errmsg());
  for (int i = 0; i < PUBLISHES; i++) {
    uint32_t v[2] = {(uint32_t)me, (uint32_t)i};
    uint64_t seq;
    /* Every 8th acknowledged: those wait for the syncer, the rest not. */
    CHECK(rill_client_publish(c, ch, v, sizeof v, i % 8 == 7, &seq) == 0, "publish: %s",
          rill_errmsg());
  }
  uint64_t seq;
  CHECK(rill_client_publish(c, ch, "end", 3, true, &seq) == 0, "publish: %s", rill_errmsg());
  rill_client_close(c);
  return NULL;
}

static void *subscriber_main(void *arg) {
  (void)arg;
  rill_client_t *c = connect_to("subscriber");
  uint16_t sub;
  CHECK(rill_client_subscribe_ex(c, "loops", RILL_NET_FROM_EARLIEST, 1024, RILL_CLIENT_SUB_CREATE,
                                 &sub, NULL) == 0,
        "subscribe: %s", rill_errmsg());
  uint32_t next[PUBLISHERS] = {0};
  int ends = 0, since_credit = 0;
  uint64_t last_seq = 0;
  bool first = true;
  while (ends < PUBLISHERS) {
    rill_client_msg_t m;
    int rc = rill_client_next(c, &m, 10000000000ull);
    CHECK(rc == 0, "next: %s after %d ends", rill_errmsg(), ends);
    CHECK(first || m.seq == last_seq + 1, "sequence %llu after %llu", (unsigned long long)m.seq,
          (unsigned long long)last_seq);
    first = false;
    last_seq = m.seq;
    if (m.len == 3) {
      ends++;
    } else {
      CHECK(m.len == 8, "a message of %u bytes", m.len);
      uint32_t v[2];
      memcpy(v, m.data, sizeof v);
      CHECK(v[0] < PUBLISHERS && v[1] == next[v[0]], "publisher %u message %u, expected %u", v[0],
            v[1], v[0] < PUBLISHERS ? next[v[0]] : 0);
      next[v[0]]++;
    }
    if (++since_credit == 512) {
      CHECK(rill_client_credit(c, sub, 512) == 0, "credit: %s", rill_errmsg());
      since_credit = 0;
    }
  }
  for (int p = 0; p < PUBLISHERS; p++)
    CHECK(next[p] == PUBLISHES, "publisher %d: %u of %d", p, next[p], PUBLISHES);
  rill_client_close(c);
  return NULL;
}

/* Asks that end without a reply: to a provider that never answers, with a
 * deadline, cancelled by the asker going, or by the provider going. */
static void *churn_main(void *arg) {
  (void)arg;
  for (int i = 0; i < CHURN; i++) {
    rill_client_t *p = connect_to("mute");
    CHECK(rill_client_serve(p, "mute", NULL) == 0, "serve: %s", rill_errmsg());
    rill_client_t *a = connect_to("churn");
    const uint8_t *rep;
    uint32_t len;
    int rc = rill_client_ask(a, "mute", "x", 1, 1000000ull, &rep, &len);
    CHECK(rc == RILL_ETIMEDOUT, "ask past its deadline: %d %s", rc, rill_errmsg());
    if (i % 2) {
      rill_client_close(p); /* the provider goes: askers see ECONNRESET or ENOENT */
      rc = rill_client_ask(a, "mute", "x", 1, RILL_FOREVER, &rep, &len);
      CHECK(rc == RILL_ENOENT || rc == RILL_ECONNRESET, "ask of a gone provider: %d", rc);
      rill_client_close(a);
    } else {
      rill_client_close(a); /* the asker goes with an ask in flight */
      rill_client_close(p);
    }
  }
  return NULL;
}

/* Scrapes the metrics endpoint while everything runs: the render reads
 * every loop's counters, histograms and the topics from its own thread. */
static uint16_t metrics_port;
static atomic_bool scraping = true;
static atomic_int scrapes;

static void *scraper_main(void *arg) {
  (void)arg;
  static char text[1 << 17];
  while (atomic_load(&scraping)) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(metrics_port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect to metrics");
    const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    CHECK(send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)sizeof req - 1, "send");
    size_t have = 0;
    for (ssize_t n;
         have < sizeof text - 1 && (n = recv(fd, text + have, sizeof text - 1 - have, 0)) > 0;)
      have += (size_t)n;
    text[have] = 0;
    close(fd);
    CHECK(strstr(text, "rill_loops 4"), "a scrape without rill_loops: %.100s", text);
    atomic_fetch_add(&scrapes, 1);
    usleep(20000);
  }
  return NULL;
}

static void loops_side_by_side(void) {
  char dir[] = "/tmp/rill-stress-loops-XXXXXX";
  CHECK(mkdtemp(dir), "mkdtemp");
  rill_server_t *s;
  CHECK(rill_server_create(&s, &(rill_server_opts_t){.data_dir = dir,
                                                     .any_port = true,
                                                     .loops = 4,
                                                     .metrics = "127.0.0.1:0",
                                                     .sync = RILL_SERVER_SYNC_GROUP}) == 0,
        "create: %s", rill_errmsg());
  port = rill_server_port(s);
  metrics_port = rill_server_metrics_port(s);
  pthread_t scraper;
  CHECK(pthread_create(&scraper, NULL, scraper_main, NULL) == 0, "thread");
  pthread_t srv, prov[2], ask[ASKERS], pub[PUBLISHERS], sub[SUBSCRIBERS], churn;
  CHECK(pthread_create(&srv, NULL, server_main, s) == 0, "thread");
  for (int i = 0; i < 2; i++)
    pthread_create(&prov[i], NULL, provider_main, (void *)(intptr_t)i);
  while (atomic_load(&serving) < 2)
    usleep(1000);
  for (int i = 0; i < SUBSCRIBERS; i++)
    pthread_create(&sub[i], NULL, subscriber_main, NULL);
  for (int i = 0; i < ASKERS; i++)
    pthread_create(&ask[i], NULL, asker_main, (void *)(intptr_t)i);
  for (int i = 0; i < PUBLISHERS; i++)
    pthread_create(&pub[i], NULL, publisher_main, (void *)(intptr_t)i);
  pthread_create(&churn, NULL, churn_main, NULL);
  for (int i = 0; i < ASKERS; i++)
    pthread_join(ask[i], NULL);
  for (int i = 0; i < PUBLISHERS; i++)
    pthread_join(pub[i], NULL);
  for (int i = 0; i < SUBSCRIBERS; i++)
    pthread_join(sub[i], NULL);
  pthread_join(churn, NULL);
  atomic_store(&providers_done, true);
  for (int i = 0; i < 2; i++)
    pthread_join(prov[i], NULL);
  atomic_store(&scraping, false);
  pthread_join(scraper, NULL);
  CHECK(atomic_load(&scrapes) > 0, "no scrape");
  /* Both providers took their turns. */
  CHECK(answered_by[0] + answered_by[1] == ASKERS * ASKS, "%d + %d answers", answered_by[0],
        answered_by[1]);
  CHECK(answered_by[0] > 0 && answered_by[1] > 0, "one provider answered all");
  /* Every connection is gone: the loops let go of all of them. */
  rill_server_stats_t st;
  for (int i = 0; i < 500; i++) {
    rill_server_stats(s, &st);
    if (st.conns_open == 0)
      break;
    usleep(10000);
  }
  CHECK(st.conns_open == 0, "%llu connections still open", (unsigned long long)st.conns_open);
  CHECK(st.published == (uint64_t)PUBLISHERS * (PUBLISHES + 1), "published %llu",
        (unsigned long long)st.published);
  rill_server_stop(s);
  pthread_join(srv, NULL);
  rill_server_destroy(s);
  printf("     %d asks answered (%d/%d by each provider), %d publishes to %d subscribers\n",
         ASKERS * ASKS, answered_by[0], answered_by[1], PUBLISHERS * PUBLISHES, SUBSCRIBERS);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "rm");
}

int main(void) {
  static const stress_case_t cases[] = {{"loops_side_by_side", loops_side_by_side}};
  return stress_run(cases, 1);
}
