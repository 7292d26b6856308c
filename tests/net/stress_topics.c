/*
 * Topics made, used and deleted at once, across loops: publishers (plain,
 * acknowledged under group commit, streamed, batched), subscribers,
 * fetchers and TOPIC_INFO on a few names while a deleter removes them as
 * soon as nobody is bound or subscribed, and a scraper renders the
 * metrics, all under a small max_disk. A deleted topic is freed by its
 * last user, wherever that is (a loop, a wakeup, the syncer, a scrape):
 * this is where those references are raced. Afterwards every topic the
 * server had open is let go but the live ones, and the disk budget is
 * what the files hold. Run under TSan and ASan too.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill/net.h"
#include "stress.h"

#define NAMES   3
#define USERS   6
#define ROUNDS  (400 / SCALE)
#define DELETES (300 / SCALE)

static uint16_t port;
static rill_server_t *srv;
static atomic_int users_left;
static atomic_int deleted;

static const char *name_of(int i) {
  static const char *const names[NAMES] = {"churn-a", "churn-b", "churn-c"};
  return names[i % NAMES];
}

static rill_client_t *connect_to(const char *who) {
  rill_client_t *c;
  CHECK(rill_client_connect(&c, &(rill_client_opts_t){.port = port, .name = who}) == 0,
        "connect: %s", rill_errmsg());
  return c;
}

static void *server_main(void *arg) {
  CHECK(rill_server_run(arg) == 0, "run: %s", rill_errmsg());
  return NULL;
}

/* What a topic that may be deleted under us, or refused room, may answer. */
static bool expected(int rc) {
  return rc == 0 || rc == RILL_ENOENT || rc == RILL_EBUSY || rc == RILL_ENOSPC;
}

static void *user_main(void *arg) {
  int me = (int)(intptr_t)arg;
  static const char big[3000];
  for (int r = 0; r < ROUNDS; r++) {
    rill_client_t *c = connect_to("user");
    const char *t = name_of(me + r);
    uint16_t ch;
    int rc;
    switch ((me + r) % 4) {
    case 0: /* publish, some acknowledged, a batch, then go */
      if ((rc = rill_client_bind(c, t, &ch)) == 0) {
        for (int k = 0; k < 8 && expected(rc); k++)
          rc = rill_client_publish(c, ch, "abcdefgh", 8, k % 2 == 0, NULL);
        rill_iov_t b[4] = {{"1", 1}, {"22", 2}, {"333", 3}, {"4444", 4}};
        if (expected(rc))
          rc = rill_client_publish_batch(c, ch, b, 4, true, NULL);
      }
      CHECK(expected(rc), "publish: %d %s", rc, rill_errmsg());
      break;
    case 1: /* a record over max_body: streamed in CHUNKs */
      if ((rc = rill_client_bind(c, t, &ch)) == 0)
        rc = rill_client_publish(c, ch, big, sizeof big, r % 2 == 0, NULL);
      CHECK(expected(rc), "stream: %d %s", rc, rill_errmsg());
      break;
    case 2: { /* subscribe, take what comes for a moment, go */
      uint16_t sub;
      rc = rill_client_subscribe_ex(c, t, RILL_NET_FROM_EARLIEST, 64, RILL_CLIENT_SUB_CREATE, &sub,
                                    NULL);
      CHECK(expected(rc), "subscribe: %d %s", rc, rill_errmsg());
      for (int k = 0; rc == 0 && k < 4; k++) {
        rill_client_msg_t m;
        rc = rill_client_next(c, &m, 2000000ull);
      }
      break;
    }
    default: { /* describe it */
      rill_topic_info_t in;
      rc = rill_client_topic_info(c, t, &in);
      CHECK(expected(rc), "info: %d %s", rc, rill_errmsg());
      break;
    }
    }
    rill_client_close(c);
  }
  atomic_fetch_sub(&users_left, 1);
  return NULL;
}

static void *deleter_main(void *arg) {
  (void)arg;
  rill_client_t *c = connect_to("deleter");
  for (int i = 0; atomic_load(&users_left) > 0 || i < DELETES; i++) {
    int rc = rill_client_topic_delete(c, name_of(i));
    CHECK(rc == 0 || rc == RILL_EBUSY || rc == RILL_ENOENT, "delete: %d %s", rc, rill_errmsg());
    if (rc == 0)
      atomic_fetch_add(&deleted, 1);
    if (i % 16 == 0) {
      char buf[1 << 14];
      size_t len;
      rc = rill_client_server_stats_text(c, buf, sizeof buf, &len); /* renders the topics too */
      CHECK(rc == 0 || rc == RILL_EMSGSIZE, "stats: %d %s", rc, rill_errmsg());
    }
    if (i >= DELETES && atomic_load(&users_left) == 0)
      break;
  }
  rill_client_close(c);
  return NULL;
}

/* The lengths of the *.seg and *.idx files under dir. */
static uint64_t files_bytes(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "find '%s' -name '*.seg' -o -name '*.idx' | xargs -r stat -c %%s", dir);
  FILE *p = popen(cmd, "r");
  CHECK(p, "popen");
  uint64_t sum = 0;
  unsigned long long n;
  while (fscanf(p, "%llu", &n) == 1)
    sum += n;
  pclose(p);
  return sum;
}

static void topics_churn(void) {
  char dir[] = "/tmp/rill-stress-topics-XXXXXX";
  CHECK(mkdtemp(dir), "mkdtemp");
  CHECK(rill_server_create(&srv, &(rill_server_opts_t){.data_dir = dir,
                                                       .any_port = true,
                                                       .loops = 3,
                                                       .max_body = 4096,
                                                       .max_topics = 8,
                                                       .max_disk = 2 << 20,
                                                       .segment_bytes = 64 << 10,
                                                       .sync = RILL_SERVER_SYNC_GROUP}) == 0,
        "create: %s", rill_errmsg());
  port = rill_server_port(srv);
  pthread_t s, u[USERS], d;
  CHECK(pthread_create(&s, NULL, server_main, srv) == 0, "thread");
  atomic_store(&users_left, USERS);
  for (int i = 0; i < USERS; i++)
    CHECK(pthread_create(&u[i], NULL, user_main, (void *)(intptr_t)i) == 0, "thread");
  CHECK(pthread_create(&d, NULL, deleter_main, NULL) == 0, "thread");
  for (int i = 0; i < USERS; i++)
    pthread_join(u[i], NULL);
  pthread_join(d, NULL);
  /* Everyone gone: once the loops have seen the closes, every name can
   * be deleted, and a max_topics of new names made (none is held by a
   * deleted topic some user forgot to let go). */
  rill_client_t *c = connect_to("check");
  for (int i = 0; i < NAMES; i++) {
    int rc = RILL_EBUSY;
    for (int k = 0; k < 2000 && rc == RILL_EBUSY; k++)
      if ((rc = rill_client_topic_delete(c, name_of(i))) == RILL_EBUSY)
        usleep(1000);
    CHECK(rc == 0 || rc == RILL_ENOENT, "final delete of %s: %d %s", name_of(i), rc, rill_errmsg());
  }
  for (int i = 0; i < 8; i++) {
    char name[16];
    snprintf(name, sizeof name, "fresh%d", i);
    uint16_t ch;
    int rc = RILL_EBUSY;
    /* The last user of a deleted topic may be the syncer or a wakeup. */
    for (int k = 0; k < 2000 && rc == RILL_EBUSY; k++)
      if ((rc = rill_client_bind(c, name, &ch)) == RILL_EBUSY)
        usleep(1000);
    CHECK(rc == 0, "bind %s: %d %s", name, rc, rill_errmsg());
  }
  rill_server_stats_t st;
  rill_server_stats(srv, &st);
  CHECK(st.disk_bytes == files_bytes(dir), "the budget says %llu, the files hold %llu",
        (unsigned long long)st.disk_bytes, (unsigned long long)files_bytes(dir));
  CHECK(st.disk_bytes <= st.disk_max, "%llu over max_disk", (unsigned long long)st.disk_bytes);
  rill_client_close(c);
  rill_server_stop(srv);
  pthread_join(s, NULL);
  rill_server_destroy(srv);
  printf("     %d deletes raced %d users\n", atomic_load(&deleted), USERS);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "rm");
}

int main(void) {
  static const stress_case_t cases[] = {{"topics_churn", topics_churn}};
  return stress_run(cases, 1);
}
