/*
 * The server's operations side over real sockets: read errors reported
 * by FETCH, topics created only when asked and listed, described and
 * deleted, the data directory locked and checked at start, the server's
 * own log lines, and the options' strings copied at create. Ordering, not
 * timing: a PING's PONG comes after everything the server queued for that
 * connection before it.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "rill/net.h"
#include "scripted_server.h"
#include "server_fixture.h"

static void mkdir_tmp(void) { dir_make("/tmp/rill-test-ops-XXXXXX"); }

TestSuite(server_ops, .init = mkdir_tmp, .fini = rm_tmp);

static void expect_frame(cli_t *c, uint8_t type, uint64_t id, rill_frame_t *f, uint8_t *body) {
  uint8_t b[4096];
  if (!body)
    body = b;
  cr_assert_eq(cli_recv(c, f, body), 0, "closed while waiting for type %u", type);
  if (f->type == RILL_F_ERROR && type != RILL_F_ERROR)
    cr_assert_fail("ERROR %lld: %.*s", (long long)(int64_t)f->arg, (int)f->len, body);
  cr_assert_eq(f->type, type, "type %u (id %llu), not %u", f->type, (unsigned long long)f->id,
               type);
  cr_assert_eq(f->id, id);
}

static void handshake(cli_t *c, srv_t *v, const char *token) {
  cli_connect(c, v);
  uint8_t b[600];
  size_t tl = token ? strlen(token) : 0;
  cr_assert_eq(rill_net_hello_encode(b, token, tl, "test", 4), 0);
  cli_send(c, RILL_F_HELLO, 0, 0, 0, 0, b, (uint32_t)rill_net_hello_size(tl, 4));
  rill_frame_t f;
  expect_frame(c, RILL_F_WELCOME, 0, &f, NULL);
}

static void ping(cli_t *c, uint64_t id) {
  cli_send(c, RILL_F_PING, 0, 0, id, 0, NULL, 0);
  rill_frame_t f;
  expect_frame(c, RILL_F_PONG, id, &f, NULL);
}

static void bind_publish(cli_t *c, uint16_t ch, const char *topic, int n) {
  rill_frame_t f;
  cli_send(c, RILL_F_BIND, 0, ch, 1, 0, topic, (uint32_t)strlen(topic));
  expect_frame(c, RILL_F_ACK, 1, &f, NULL);
  for (int i = 0; i < n; i++) {
    char msg[32];
    snprintf(msg, sizeof msg, "record-%d", i); /* 8 bytes for i < 10 */
    cli_send(c, RILL_F_PUBLISH, RILL_FF_ACK, ch, 100 + (uint64_t)i, 0, msg, (uint32_t)strlen(msg));
    expect_frame(c, RILL_F_ACK, 100 + (uint64_t)i, &f, NULL);
  }
}

/* ---- FETCH and read errors ---------------------------------------------------- */

/* A damaged record ends a FETCH's answer with an ERROR that names it, not
 * with an END that sends the client back to it forever. */
Test(server_ops, fetch_reports_a_record_it_cannot_read) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  static cli_t a;
  handshake(&a, &v, NULL);
  bind_publish(&a, 1, "dmg", 5);
  /* Record 2's marker overwritten in the segment (mapped shared, so the
   * server sees it): 64-byte segment header, then 32-byte headers and
   * 8-byte payloads; the marker is a header's last 4 bytes. */
  char path[256];
  snprintf(path, sizeof path, "%s/dmg/%020d.seg", dir, 0);
  int fd = open(path, O_WRONLY);
  cr_assert_geq(fd, 0, "%s", path);
  cr_assert_eq(pwrite(fd, "XXXX", 4, 64 + 2 * 40 + 28), 4);
  close(fd);
  rill_frame_t f;
  uint8_t body[4096];
  uint8_t fetch[4 + 3] = {10, 0, 0, 0, 'd', 'm', 'g'};
  cli_send(&a, RILL_F_FETCH, 0, 0, 7, RILL_NET_FROM_EARLIEST, fetch, sizeof fetch);
  for (uint64_t i = 0; i < 2; i++) {
    expect_frame(&a, RILL_F_DELIVER, 7, &f, NULL);
    cr_assert_eq(f.arg, i);
    cr_assert_eq(f.flags, 0);
  }
  cr_assert_eq(cli_recv(&a, &f, body), 0);
  cr_assert_eq(f.type, RILL_F_ERROR, "type %u flags %u arg %llu: the damage went unsaid", f.type,
               f.flags, (unsigned long long)f.arg);
  cr_expect_eq(f.id, 7);
  cr_expect_eq((int64_t)f.arg, RILL_ECORRUPT, "code %lld", (long long)(int64_t)f.arg);
  body[f.len < 4095 ? f.len : 4095] = 0;
  cr_expect_not_null(strstr((char *)body, "record 2"), "%s", body);
  /* From the same record again: the same error, at once. */
  cli_send(&a, RILL_F_FETCH, 0, 0, 8, 2, fetch, sizeof fetch);
  cr_assert_eq(cli_recv(&a, &f, body), 0);
  cr_expect_eq(f.type, RILL_F_ERROR);
  cr_expect_eq(f.id, 8);
  /* Past it: the rest, then END. */
  cli_send(&a, RILL_F_FETCH, 0, 0, 9, 3, fetch, sizeof fetch);
  for (uint64_t i = 3; i < 5; i++) {
    expect_frame(&a, RILL_F_DELIVER, 9, &f, NULL);
    cr_assert_eq(f.arg, i);
  }
  expect_frame(&a, RILL_F_DELIVER, 9, &f, NULL);
  cr_expect_eq(f.flags, RILL_FF_END);
  cr_expect_eq(f.arg, 5);
  ping(&a, 10);
  close(a.fd);
  srv_stop(&v);
}

/* A subscriber is told of a record that cannot be read, by its sequence
 * number and topic, and the records after it still come: it is neither
 * delivered damaged nor passed over in silence. */
Test(server_ops, subscription_reports_a_record_it_cannot_read) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  static cli_t a;
  handshake(&a, &v, NULL);
  bind_publish(&a, 1, "sdmg", 5);
  close(a.fd);
  srv_stop(&v);
  /* Record 2's payload changed on disk while the server was down (the
   * records a server appended itself it knows good): its header holds,
   * its check does not. Record 2 is "record-2" at 64 + 2 * 40 + 32. */
  char path[256];
  snprintf(path, sizeof path, "%s/sdmg/%020d.seg", dir, 0);
  int fd = open(path, O_WRONLY);
  cr_assert_geq(fd, 0, "%s", path);
  cr_assert_eq(pwrite(fd, "X", 1, 64 + 2 * 40 + 32), 1);
  close(fd);
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  handshake(&a, &v, NULL);
  rill_frame_t f;
  uint8_t body[4096];
  cli_send(&a, RILL_F_SUBSCRIBE, 0, 2, 20, RILL_NET_FROM_EARLIEST, "sdmg", 4);
  expect_frame(&a, RILL_F_ACK, 20, &f, NULL);
  cli_send(&a, RILL_F_CREDIT, 0, 2, 0, 100, NULL, 0);
  bool told = false;
  uint64_t next = 0;
  while (next < 5) {
    cr_assert_eq(cli_recv(&a, &f, body), 0, "closed");
    cr_assert_eq(f.channel, 2);
    if (f.type == RILL_F_ERROR) {
      cr_expect_eq(next, 2, "an error before record %llu", (unsigned long long)next);
      cr_expect_eq((int64_t)f.arg, RILL_ECORRUPT, "code %lld", (long long)(int64_t)f.arg);
      body[f.len < 4095 ? f.len : 4095] = 0;
      cr_expect_not_null(strstr((char *)body, "record 2 of topic 'sdmg'"), "%s", body);
      told = true;
      next++;
      continue;
    }
    cr_assert_eq(f.type, RILL_F_DELIVER, "type %u", f.type);
    cr_assert_neq(f.arg, 2, "the damaged record was delivered");
    cr_assert_eq(f.arg, next);
    next++;
  }
  cr_expect(told, "the damaged record went unsaid");
  ping(&a, 21);
  close(a.fd);
  srv_stop(&v);
}

/* ---- options ------------------------------------------------------------------ */

/* The server keeps copies of the strings it was given: the caller's
 * buffers may be reused (or go out of scope) once create returns. */
Test(server_ops, strings_in_opts_are_copied) {
  char data[128], token[32], host[32];
  snprintf(data, sizeof data, "%s", dir);
  snprintf(token, sizeof token, "s3cret");
  snprintf(host, sizeof host, "127.0.0.1");
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.data_dir = data, .token = token, .host = host});
  memset(data, 0, sizeof data);
  snprintf(data, sizeof data, "/nonexistent/elsewhere");
  memset(token, 'x', sizeof token - 1);
  token[sizeof token - 1] = 0;
  memset(host, 0, sizeof host);
  static cli_t a;
  handshake(&a, &v, "s3cret");
  bind_publish(&a, 1, "copied", 3);
  char path[256];
  struct stat st;
  snprintf(path, sizeof path, "%s/copied", dir);
  cr_expect_eq(stat(path, &st), 0, "the topic is not under the data_dir given at create");
  close(a.fd);
  srv_stop(&v);
}

/* ---- the data directory ------------------------------------------------------- */

/* One server per data directory: a second one fails at create, naming
 * the first; once the first is gone the directory is free again. */
Test(server_ops, data_dir_is_locked) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  rill_server_t *two = NULL;
  int rc = rill_server_create(&two, &(rill_server_opts_t){.data_dir = dir, .any_port = true});
  cr_expect_eq(rc, RILL_EBUSY, "a second server on %s: %d", dir, rc);
  char want[64];
  snprintf(want, sizeof want, "(pid %ld)", (long)getpid());
  cr_expect_not_null(strstr(rill_errmsg(), want), "%s", rill_errmsg());
  cr_expect_not_null(strstr(rill_errmsg(), "in use by another server"), "%s", rill_errmsg());
  if (!rc)
    rill_server_destroy(two);
  srv_stop(&v);
  cr_assert_eq(rill_server_create(&two, &(rill_server_opts_t){.data_dir = dir, .any_port = true}),
               0, "%s", rill_errmsg());
  rill_server_destroy(two);
}

/* A data directory the server cannot use fails create, not every publish
 * after a "listening"; a missing one is created. */
Test(server_ops, data_dir_is_checked_at_create) {
  char path[128];
  snprintf(path, sizeof path, "%s/a-file", dir);
  int fd = open(path, O_WRONLY | O_CREAT, 0644);
  cr_assert_geq(fd, 0);
  close(fd);
  rill_server_t *s = NULL;
  int rc = rill_server_create(&s, &(rill_server_opts_t){.data_dir = path, .any_port = true});
  cr_expect_eq(rc, RILL_EINVAL, "a file as data_dir: %d", rc);
  cr_expect_not_null(strstr(rill_errmsg(), "not a directory"), "%s", rill_errmsg());
  if (!rc)
    rill_server_destroy(s);
  snprintf(path, sizeof path, "%s/a-file/below", dir);
  rc = rill_server_create(&s, &(rill_server_opts_t){.data_dir = path, .any_port = true});
  cr_expect_neq(rc, 0, "under a file");
  if (!rc)
    rill_server_destroy(s);
  snprintf(path, sizeof path, "%s/new", dir);
  cr_assert_eq(rill_server_create(&s, &(rill_server_opts_t){.data_dir = path, .any_port = true}), 0,
               "%s", rill_errmsg());
  rill_server_destroy(s);
  struct stat st;
  cr_expect(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "a missing data_dir is created");
  /* /proc: a directory nobody, root included, creates files in. */
  rc = rill_server_create(&s, &(rill_server_opts_t){.data_dir = "/proc", .any_port = true});
  cr_expect_neq(rc, 0, "/proc as data_dir");
  cr_expect_not_null(strstr(rill_errmsg(), "not writable"), "%s", rill_errmsg());
  if (!rc)
    rill_server_destroy(s);
  if (geteuid() != 0) { /* root writes anywhere else: the probe cannot fail for it */
    snprintf(path, sizeof path, "%s/ro", dir);
    cr_assert_eq(mkdir(path, 0555), 0);
    rc = rill_server_create(&s, &(rill_server_opts_t){.data_dir = path, .any_port = true});
    cr_expect_eq(rc, RILL_EACCES, "a read-only data_dir: %d", rc);
    if (!rc)
      rill_server_destroy(s);
  }
}

/* ---- topics: made only when asked, listed, described, deleted ------------------- */

static bool dir_has(const char *name) {
  char path[256];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return stat(path, &st) == 0;
}

/* A SUBSCRIBE to a name nobody publishes to is an error, not a new topic
 * with its preallocated segment; with CREATE it makes one. */
Test(server_ops, subscribe_creates_only_when_asked) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  static cli_t a;
  handshake(&a, &v, NULL);
  rill_frame_t f;
  uint8_t body[4096];
  cli_send(&a, RILL_F_SUBSCRIBE, 0, 3, 1, RILL_NET_FROM_EARLIEST, "mistyped", 8);
  expect_frame(&a, RILL_F_ERROR, 1, &f, body);
  cr_expect_eq((int64_t)f.arg, RILL_ENOENT);
  body[f.len] = 0;
  cr_expect_not_null(strstr((char *)body, "no topic 'mistyped'"), "%s", body);
  cr_expect(!dir_has("mistyped"), "a SUBSCRIBE made a topic");
  cli_send(&a, RILL_F_SUBSCRIBE, RILL_FF_CREATE, 3, 2, RILL_NET_FROM_EARLIEST, "wanted", 6);
  expect_frame(&a, RILL_F_ACK, 2, &f, NULL);
  cr_expect_eq(f.arg, 0);
  cr_expect(dir_has("wanted"));
  /* An existing topic needs no CREATE. */
  cli_send(&a, RILL_F_SUBSCRIBE, 0, 4, 3, RILL_NET_FROM_EARLIEST, "wanted", 6);
  expect_frame(&a, RILL_F_ACK, 3, &f, NULL);
  ping(&a, 4);
  close(a.fd);
  srv_stop(&v);
}

typedef struct {
  char names[128][RILL_NET_MAX_NAME + 1];
  int n;
} names_t;

static void collect(void *ctx, const char *name) {
  names_t *l = ctx;
  cr_assert_lt(l->n, 128);
  snprintf(l->names[l->n++], sizeof l->names[0], "%s", name);
}

Test(server_ops, topics_listed_described_deleted) {
  srv_t v;
  /* max_body 4 KiB: the list of 40 long names takes several TOPICS. */
  srv_start(&v, (rill_server_opts_t){.loops = 2,
                                     .max_body = 4096,
                                     .tx_limit = 1 << 20,
                                     .segment_bytes = 1 << 20,
                                     .retain_count = 1000});
  rill_client_opts_t o = {.port = rill_server_port(v.s), .name = "ops"};
  rill_client_t *pub, *adm;
  cr_assert_eq(rill_client_connect(&pub, &o), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_connect(&adm, &o), 0, "%s", rill_errmsg());
  uint16_t ch;
  cr_assert_eq(rill_client_bind(pub, "alpha", &ch), 0, "%s", rill_errmsg());
  for (int i = 0; i < 3; i++)
    cr_assert_eq(rill_client_publish(pub, ch, "abc", 3, true, NULL), 0, "%s", rill_errmsg());
  char name[RILL_NET_MAX_NAME + 1];
  for (int i = 0; i < 40; i++) {
    uint16_t c2;
    snprintf(name, sizeof name, "t%02d-%0150d", i, 0);
    cr_assert_eq(rill_client_bind(adm, name, &c2), 0, "%s", rill_errmsg());
  }
  /* Not a topic: a file, and a directory whose name no topic has. */
  char path[256];
  snprintf(path, sizeof path, "%s/stray", dir);
  close(open(path, O_WRONLY | O_CREAT, 0644));
  snprintf(path, sizeof path, "%s/.hidden", dir);
  mkdir(path, 0755);
  static names_t l;
  l.n = 0;
  cr_assert_eq(rill_client_topics(adm, collect, &l), 0, "%s", rill_errmsg());
  cr_assert_eq(l.n, 41, "%d topics listed", l.n);
  cr_expect_str_eq(l.names[0], "alpha");
  for (int i = 0; i < 40; i++) {
    snprintf(name, sizeof name, "t%02d-%0150d", i, 0);
    cr_expect_str_eq(l.names[1 + i], name, "in order, each once");
  }
  rill_topic_info_t in;
  cr_assert_eq(rill_client_topic_info(adm, "alpha", &in), 0, "%s", rill_errmsg());
  cr_expect_eq(in.first, 0);
  cr_expect_eq(in.next, 3);
  cr_expect_eq(in.segment_bytes, 1 << 20, "%llu", (unsigned long long)in.segment_bytes);
  cr_expect_eq(in.segments, 1);
  cr_expect_eq(in.retain_count, 1000);
  cr_expect_eq(in.publishers, 1);
  cr_expect_eq(in.subscribers, 0);
  cr_expect_geq(in.bytes, 3 * 3);
  cr_expect_geq(in.disk_bytes, in.bytes);
  cr_expect_eq(rill_client_topic_info(adm, "nothing", &in), RILL_ENOENT);
  cr_expect(!dir_has("nothing"), "TOPIC_INFO made a topic");
  /* Busy while bound or subscribed: refused, and the records stay. */
  cr_expect_eq(rill_client_topic_delete(adm, "alpha"), RILL_EBUSY);
  cr_expect_not_null(strstr(rill_errmsg(), "1 bound publishers"), "%s", rill_errmsg());
  uint16_t sub;
  cr_assert_eq(rill_client_subscribe(adm, "alpha", RILL_NET_FROM_EARLIEST, 0, &sub, NULL), 0);
  rill_client_close(pub);
  cr_assert_eq(rill_client_ping(adm, NULL), 0);
  /* The publisher's close is handled on its own loop: wait for it. */
  for (int i = 0; i < 1000; i++) {
    cr_assert_eq(rill_client_topic_info(adm, "alpha", &in), 0, "%s", rill_errmsg());
    if (!in.publishers)
      break;
    usleep(1000);
  }
  cr_expect_eq(in.publishers, 0);
  cr_expect_eq(in.subscribers, 1);
  cr_expect_eq(rill_client_topic_delete(adm, "alpha"), RILL_EBUSY);
  cr_expect_not_null(strstr(rill_errmsg(), "1 subscribers"), "%s", rill_errmsg());
  cr_assert_eq(rill_client_unsubscribe(adm, sub), 0);
  cr_expect_eq(rill_client_topic_delete(adm, "alpha"), 0, "%s", rill_errmsg());
  cr_expect(!dir_has("alpha"), "the files stay");
  cr_expect_eq(rill_client_topic_info(adm, "alpha", &in), RILL_ENOENT);
  cr_expect_eq(rill_client_topic_delete(adm, "alpha"), RILL_ENOENT);
  l.n = 0;
  cr_assert_eq(rill_client_topics(adm, collect, &l), 0, "%s", rill_errmsg());
  cr_expect_eq(l.n, 40);
  /* The name is free again: a new topic, from 0. */
  cr_assert_eq(rill_client_bind(adm, "alpha", &ch), 0, "%s", rill_errmsg());
  uint64_t seq = 99;
  cr_assert_eq(rill_client_publish(adm, ch, "new", 3, true, &seq), 0, "%s", rill_errmsg());
  cr_expect_eq(seq, 0);
  /* A topic on disk that this server never opened is deleted too. */
  rill_client_close(adm);
  srv_stop(&v);
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  o.port = rill_server_port(v.s);
  cr_assert_eq(rill_client_connect(&adm, &o), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_topic_info(adm, "alpha", &in), 0, "%s", rill_errmsg());
  cr_expect_eq(in.next, 1);
  cr_expect_eq(in.publishers, 0);
  cr_expect_eq(rill_client_topic_delete(adm, "alpha"), 0, "%s", rill_errmsg());
  cr_expect(!dir_has("alpha"));
  rill_client_close(adm);
  srv_stop(&v);
}

/* Names that are not topic names are refused, and nothing is made. */
Test(server_ops, topic_requests_check_their_names) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  static cli_t a;
  handshake(&a, &v, NULL);
  rill_frame_t f;
  uint8_t types[] = {RILL_F_TOPICS, RILL_F_TOPIC_INFO, RILL_F_TOPIC_DELETE};
  for (int k = 0; k < 3; k++) {
    cli_send(&a, types[k], 0, 0, 10 + (uint64_t)k, 0, "../x", 4);
    expect_frame(&a, RILL_F_ERROR, 10 + (uint64_t)k, &f, NULL);
    cr_expect_eq((int64_t)f.arg, RILL_EINVAL, "type %u", types[k]);
  }
  cli_send(&a, RILL_F_TOPIC_INFO, 0, 0, 20, 0, NULL, 0);
  expect_frame(&a, RILL_F_ERROR, 20, &f, NULL);
  cli_send(&a, RILL_F_TOPICS, 0, 0, 21, 0, NULL, 0);
  expect_frame(&a, RILL_F_TOPICS, 21, &f, NULL);
  cr_expect_eq(f.arg, 0, "an empty data directory");
  cr_expect_eq(f.len, 0);
  cr_expect_eq(f.flags, 0);
  ping(&a, 22);
  close(a.fd);
  srv_stop(&v);
}

/* ---- the server's log ------------------------------------------------------------ */

typedef struct {
  pthread_mutex_t mu;
  char text[1 << 16];
  size_t len;
  int lines;
} logbuf_t;

static void log_to(void *ctx, rill_server_log_level_t level, const char *msg) {
  logbuf_t *b = ctx;
  pthread_mutex_lock(&b->mu);
  int n = snprintf(b->text + b->len, sizeof b->text - b->len, "%d %s\n", (int)level, msg);
  if (n > 0 && (size_t)n < sizeof b->text - b->len)
    b->len += (size_t)n;
  b->lines++;
  pthread_mutex_unlock(&b->mu);
}

/* Waits (up to 10 s) for a line holding want; counts those holding it. */
static int log_has(logbuf_t *b, const char *want, bool wait) {
  for (int tries = 0;; tries++) {
    pthread_mutex_lock(&b->mu);
    int n = 0;
    for (const char *p = b->text; (p = strstr(p, want)); p++)
      n++;
    pthread_mutex_unlock(&b->mu);
    if (n || !wait || tries == 1000)
      return n;
    usleep(10000);
  }
}

/* Topic creation, refused connections and protocol errors are logged
 * through the callback, a kind at most log_rate lines a second, with the
 * rest counted. */
Test(server_ops, the_log_callback) {
  static logbuf_t b = {.mu = PTHREAD_MUTEX_INITIALIZER};
  srv_t v;
  srv_start(&v, (rill_server_opts_t){
                    .loops = 1, .max_conns = 1, .log = log_to, .log_ctx = &b, .log_rate = 2});
  static cli_t a, r;
  handshake(&a, &v, NULL);
  bind_publish(&a, 1, "logged", 1);
  cr_expect_eq(log_has(&b, "topic 'logged' created", false), 1, "%s", b.text);
  cr_expect_eq(log_has(&b, "created", false), 1, "a second BIND is no creation: %s", b.text);
  /* Five refused connections: two lines, then the others counted. */
  for (int i = 0; i < 5; i++) {
    cli_connect(&r, &v);
    rill_frame_t f;
    cr_assert_eq(cli_recv(&r, &f, NULL), 0);
    cr_assert_eq(f.type, RILL_F_ERROR);
    close(r.fd);
  }
  cr_expect_eq(log_has(&b, "refused a connection from 127.0.0.1:", false), 2, "%s", b.text);
  cr_expect_eq(log_has(&b, "max_conns (1)", false), 2, "%s", b.text);
  cr_expect_eq(log_has(&b, "refused connection: suppressed 3 similar lines", true), 1, "%s",
               b.text);
  /* A protocol error closes its connection, with the reason logged. */
  cli_send(&a, 99, 0, 0, 0, 0, NULL, 0);
  rill_frame_t f;
  cr_assert_eq(cli_recv(&a, &f, NULL), 0);
  cr_expect_eq(f.type, RILL_F_ERROR);
  close(a.fd);
  cr_expect_eq(log_has(&b, "closing the connection from 127.0.0.1:", true), 1, "%s", b.text);
  cr_expect_eq(log_has(&b, "unknown frame type 99", false), 1, "%s", b.text);
  srv_stop(&v);
}

/* ---- the client's topic calls against a lying server ------------------------------ */

/* What the lying server answers each TOPICS with, in turn. */
static const struct {
  uint8_t flags;
  uint64_t arg;
  uint32_t len;
  const char *body;
} lies[] = {
    {0, 1, 3,
     "\x05"
     "ab"}, /* a name longer than the body */
    {0, 2, 4,
     "\x01"
     "b\x01"
     "a"},                    /* out of order */
    {RILL_FF_MORE, 0, 0, ""}, /* more, but nothing to go on after */
    {0, 2, 2,
     "\x01"
     "a"}, /* fewer names than arg says */
    {0, 1, 4,
     "\x03"
     "a/b"}, /* not a topic name */
    {RILL_FF_MORE, 1, 2,
     "\x01"
     "a"}, /* fine, but then... */
    {0, 1, 2,
     "\x01"
     "a"}, /* ...the same name again: no progress */
};

static void *liar_main(void *arg) {
  fake_t *k = arg;
  uint8_t b[4096];
  int fd = script_accept(k, b, sizeof b, NULL, 1 << 20);
  cr_assert_geq(fd, 0);
  rill_frame_t f;
  size_t n = 0;
  while (fake_recv(fd, b, sizeof b, &f)) {
    if (f.type == RILL_F_TOPICS && n < sizeof lies / sizeof lies[0]) {
      raw_send(fd, RILL_F_TOPICS, lies[n].flags, 0, f.id, lies[n].arg, lies[n].body, lies[n].len);
      n++;
    } else if (f.type == RILL_F_TOPIC_INFO) {
      raw_send(fd, RILL_F_TOPIC_INFO, 0, 0, f.id, 0, b, RILL_NET_TOPIC_INFO_SIZE - 1);
    } else if (f.type == RILL_F_PING) {
      raw_send(fd, RILL_F_PONG, 0, 0, f.id, 0, NULL, 0);
    }
  }
  close(fd);
  return NULL;
}

static void count_names(void *ctx, const char *name) {
  (void)name;
  (*(int *)ctx)++;
}

/* Answers that do not decode are RILL_EPROTO, before any of their names
 * reaches the callback, and never a loop without end. */
Test(server_ops, client_topic_calls_trust_no_answer) {
  fake_t k;
  rill_client_t *c = fake_connect(&k, liar_main, 0, (rill_client_opts_t){0});
  for (int i = 0; i < 6; i++) {
    int names = 0;
    cr_expect_eq(rill_client_topics(c, count_names, &names), RILL_EPROTO, "lie %d", i);
    /* The last: one good answer's name, then the lie after it. */
    cr_expect_eq(names, i == 5, "lie %d: %d names reached the callback", i, names);
  }
  rill_topic_info_t in;
  cr_expect_eq(rill_client_topic_info(c, "x", &in), RILL_EPROTO);
  cr_expect_eq(rill_client_ping(c, NULL), 0, "the connection goes on: %s", rill_errmsg());
  rill_client_close(c);
  fake_end(&k);
}

/* Segment size and retention per topic: the first topic_opts entry that
 * matches a name goes over the server's own, field by field. */
Test(server_ops, options_per_topic) {
  rill_server_topic_opts_t per[] = {
      {.match = "small-*", .segment_bytes = 64 << 10},
      {.match = "keep", .retain_count = RILL_SERVER_RETAIN_NONE},
      {.match = "small-big", .segment_bytes = 1 << 20}, /* after small-*: never used */
  };
  char match[16];
  snprintf(match, sizeof match, "small-*");
  per[0].match = match;
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1,
                                     .segment_bytes = 1 << 20,
                                     .retain_count = 1000,
                                     .retain_age_ns = 3600000000000ull,
                                     .topic_opts = per,
                                     .ntopic_opts = 3});
  memset(match, 0, sizeof match); /* copied at create */
  rill_client_opts_t o = {.port = rill_server_port(v.s), .name = "per"};
  rill_client_t *c;
  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  const char *names[] = {"small-big", "keep", "other"};
  uint64_t seg[] = {64 << 10, 1 << 20, 1 << 20}, count[] = {1000, 0, 1000};
  for (int i = 0; i < 3; i++) {
    uint16_t ch;
    cr_assert_eq(rill_client_bind(c, names[i], &ch), 0, "%s", rill_errmsg());
    rill_topic_info_t in;
    cr_assert_eq(rill_client_topic_info(c, names[i], &in), 0, "%s", rill_errmsg());
    cr_expect_eq(in.segment_bytes, seg[i], "%s: segment %llu", names[i],
                 (unsigned long long)in.segment_bytes);
    cr_expect_eq(in.retain_count, count[i], "%s: retain_count %llu", names[i],
                 (unsigned long long)in.retain_count);
    cr_expect_eq(in.retain_age_ns, 3600000000000ull, "%s", names[i]);
  }
  rill_client_close(c);
  srv_stop(&v);
  /* Entries that cannot be right fail create. */
  rill_server_topic_opts_t bad[] = {{.match = "a/b*"},
                                    {.match = ""},
                                    {.match = "x", .segment_bytes = 5000},
                                    {.match = "y", .retain_age_ns = UINT64_MAX - 1}};
  for (int i = 0; i < 4; i++) {
    rill_server_t *s = NULL;
    int rc = rill_server_create(
        &s, &(rill_server_opts_t){
                .data_dir = dir, .any_port = true, .topic_opts = &bad[i], .ntopic_opts = 1});
    cr_expect_eq(rc, RILL_EINVAL, "bad entry %d", i);
    if (!rc)
      rill_server_destroy(s);
  }
}

/* Whether this process maps a file of a deleted topic (the server runs in
 * it): a log still open on one holds its blocks. */
static bool maps_deleted_topic(void) {
  FILE *m = fopen("/proc/self/maps", "r");
  cr_assert_not_null(m);
  char line[1024];
  bool found = false;
  while (!found && fgets(line, sizeof line, m))
    found = strstr(line, "/.deleted-") != NULL;
  fclose(m);
  return found;
}

/* A deleted topic that was open is let go with its last user: its log is
 * closed (its files' blocks come back, nothing maps them) and it no
 * longer counts toward max_topics, so making and deleting topics in a
 * loop never meets the limit, and never piles up open logs. */
Test(server_ops, deleted_topics_are_freed_with_their_last_user) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1, .max_topics = 3});
  rill_client_opts_t o = {.port = rill_server_port(v.s), .name = "churn"};
  rill_client_t *c;
  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  uint16_t ch;
  cr_assert_eq(rill_client_bind(c, "keep1", &ch), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_bind(c, "keep2", &ch), 0, "%s", rill_errmsg());
  rill_client_close(c);
  int made = 0, rc = 0;
  for (; made < 10; made++) {
    cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
    if ((rc = rill_client_bind(c, "churn", &ch)) != 0)
      break;
    cr_assert_eq(rill_client_publish(c, ch, "x", 1, true, NULL), 0, "%s", rill_errmsg());
    rill_client_close(c); /* unbinds */
    cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
    for (int i = 0; i < 1000 && (rc = rill_client_topic_delete(c, "churn")) == RILL_EBUSY; i++)
      usleep(1000); /* the close is handled on the server's loop */
    cr_assert_eq(rc, 0, "delete %d: %s", made, rill_errmsg());
    /* One loop: the delete, after the publisher's close, drops the last
     * use, before its ACK. */
    cr_expect(!maps_deleted_topic(), "delete %d: its log is still open", made);
    rill_client_close(c);
  }
  cr_expect_eq(made, 10, "%d made before: %s", made, rill_errmsg());
  srv_stop(&v);
}

/* The same with every kind of user across loops: acknowledged publishes
 * waiting for the group syncer, subscribers on other loops woken by the
 * appends, FETCHes. Once they are all gone and the topic deleted, its log
 * closes and its place under max_topics is free. */
Test(server_ops, deleted_topic_freed_after_its_users_on_every_loop) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 3, .max_topics = 2, .sync = RILL_SERVER_SYNC_GROUP});
  rill_client_opts_t o = {.port = rill_server_port(v.s), .name = "users"};
  rill_client_t *c[4];
  for (int i = 0; i < 4; i++)
    cr_assert_eq(rill_client_connect(&c[i], &o), 0, "%s", rill_errmsg());
  uint16_t ch, sub[3];
  cr_assert_eq(rill_client_bind(c[0], "busy", &ch), 0, "%s", rill_errmsg());
  for (int i = 1; i < 4; i++)
    cr_assert_eq(
        rill_client_subscribe(c[i], "busy", RILL_NET_FROM_EARLIEST, 1000, &sub[i - 1], NULL), 0,
        "%s", rill_errmsg());
  for (int k = 0; k < 300; k++)
    cr_assert_eq(rill_client_publish(c[0], ch, "abcdefgh", 8, k % 3 == 0, NULL), 0, "%s",
                 rill_errmsg());
  cr_assert_eq(rill_client_publish(c[0], ch, "last", 4, true, NULL), 0, "%s", rill_errmsg());
  for (int i = 1; i < 4; i++) {
    for (int k = 0; k < 301; k++) {
      rill_client_msg_t m;
      cr_assert_eq(rill_client_next(c[i], &m, 5000000000ull), 0, "%s", rill_errmsg());
      cr_assert_eq(m.seq, (uint64_t)k);
    }
    cr_assert_eq(rill_client_unsubscribe(c[i], sub[i - 1]), 0, "%s", rill_errmsg());
  }
  rill_client_close(c[0]);
  int rc;
  for (int i = 0; i < 1000 && (rc = rill_client_topic_delete(c[1], "busy")) == RILL_EBUSY; i++)
    usleep(1000); /* the close is handled on the publisher's loop */
  cr_assert_eq(rc, 0, "%s", rill_errmsg());
  /* The last user may be on another loop, or the syncer: wait for it. */
  for (int i = 0; i < 2000 && maps_deleted_topic(); i++)
    usleep(1000);
  cr_expect(!maps_deleted_topic(), "the deleted topic's log is still open");
  cr_expect_eq(rill_client_bind(c[1], "one", &ch), 0, "%s", rill_errmsg());
  cr_expect_eq(rill_client_bind(c[1], "two", &ch), 0, "%s", rill_errmsg());
  for (int i = 1; i < 4; i++)
    rill_client_close(c[i]);
  srv_stop(&v);
}

typedef struct {
  char (*names)[RILL_NET_MAX_NAME + 1];
  int n, cap;
} many_t;

static void collect_many(void *ctx, const char *name) {
  many_t *l = ctx;
  cr_assert_lt(l->n, l->cap, "more names than topics");
  snprintf(l->names[l->n++], sizeof l->names[0], "%s", name);
}

static int str_cmp(const void *a, const void *b) { return strcmp(a, b); }

/* TOPICS over a directory of many topics, of every name length, made in
 * no order: the pages (each held to max_body, the server keeping only the
 * page's names) give every name once, in byte order. */
Test(server_ops, topics_pages_over_many_topics) {
  enum { N = 3000 };
  static char want[N][RILL_NET_MAX_NAME + 1];
  char path[512];
  for (int i = 0; i < N; i++) {
    /* A scrambled order, lengths 1..200: i * 7919 % N visits every i. */
    int k = (int)((long)i * 7919 % N);
    int len = 1 + k % 200;
    snprintf(want[i], sizeof want[i], "%d", k);
    size_t have = strlen(want[i]);
    memset(want[i] + have, 'a' + k % 26, (size_t)len > have ? (size_t)len - have : 0);
    want[i][len > (int)have ? len : (int)have] = 0;
    snprintf(path, sizeof path, "%s/%s", dir, want[i]);
    cr_assert_eq(mkdir(path, 0755), 0, "%s", path);
  }
  qsort(want, N, sizeof want[0], str_cmp);
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 2, .max_body = 4096});
  rill_client_opts_t o = {.port = rill_server_port(v.s), .name = "many"};
  rill_client_t *c;
  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  static char got[N + 1][RILL_NET_MAX_NAME + 1];
  many_t l = {got, 0, N + 1};
  cr_assert_eq(rill_client_topics(c, collect_many, &l), 0, "%s", rill_errmsg());
  cr_assert_eq(l.n, N, "%d names listed", l.n);
  for (int i = 0; i < N; i++)
    cr_assert_str_eq(got[i], want[i], "name %d", i);
  rill_client_close(c);
  srv_stop(&v);
}

/* ---- max_disk ------------------------------------------------------------------ */

/* The sum of the lengths of the segment and index files under dir. */
static uint64_t files_bytes(void) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "find '%s' -name '*.seg' -o -name '*.idx' | xargs -r stat -c %%s", dir);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  uint64_t sum = 0;
  unsigned long long n;
  while (fscanf(p, "%llu", &n) == 1)
    sum += n;
  pclose(p);
  return sum;
}

/* One client cannot fill the disk: publishes that need the topics' files
 * to grow past max_disk are refused with ENOSPC naming it, nothing is
 * written past it, what was acknowledged stays readable, and a deleted
 * topic gives its room back. The budget counts what data_dir holds at
 * start, and the metrics show it. */
Test(server_ops, max_disk_bounds_the_topics) {
  srv_t v;
  const uint64_t max = 1 << 20;
  srv_start(&v, (rill_server_opts_t){.loops = 2, .max_disk = max, .segment_bytes = 64 << 10});
  rill_client_opts_t o = {.port = rill_server_port(v.s), .name = "disk"};
  rill_client_t *pub, *adm;
  cr_assert_eq(rill_client_connect(&pub, &o), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_connect(&adm, &o), 0, "%s", rill_errmsg());
  static char rec[1000];
  /* Many topics, each growing: together they meet the bound. */
  uint64_t acked[8] = {0};
  uint16_t ch[8];
  int rc = 0, refused = -1;
  for (int t = 0; t < 8 && refused < 0; t++) {
    char name[16];
    snprintf(name, sizeof name, "fill%d", t);
    cr_assert_eq(rill_client_bind(pub, name, &ch[t]), 0, "%s", rill_errmsg());
    for (int i = 0; i < 400; i++) {
      memset(rec, 'a' + (i % 26), sizeof rec);
      if ((rc = rill_client_publish(pub, ch[t], rec, sizeof rec, true, NULL)) != 0) {
        refused = t;
        break;
      }
      acked[t]++;
    }
  }
  cr_assert_eq(rc, RILL_ENOSPC, "%d: %s", rc, rill_errmsg());
  char want[96];
  snprintf(want, sizeof want, "the server's max_disk (%llu bytes) is reached",
           (unsigned long long)max);
  cr_expect_not_null(strstr(rill_errmsg(), want), "%s", rill_errmsg());
  rill_server_stats_t st;
  rill_server_stats(v.s, &st);
  cr_expect_eq(st.disk_max, max);
  cr_expect_leq(st.disk_bytes, max);
  cr_expect_eq(st.disk_bytes, files_bytes(), "the budget says %llu, the files hold %llu",
               (unsigned long long)st.disk_bytes, (unsigned long long)files_bytes());
  cr_expect_leq(files_bytes(), max, "nothing written past max_disk");
  /* Refused again, not written: the topic's end does not move. */
  rill_topic_info_t in;
  char name[16];
  snprintf(name, sizeof name, "fill%d", refused);
  cr_expect_eq(rill_client_publish(pub, ch[refused], rec, sizeof rec, true, NULL), RILL_ENOSPC);
  cr_assert_eq(rill_client_topic_info(adm, name, &in), 0, "%s", rill_errmsg());
  cr_expect_eq(in.next, acked[refused]);
  /* Every acknowledged record is there and whole. */
  for (int t = 0; t <= refused; t++) {
    snprintf(name, sizeof name, "fill%d", t);
    uint16_t sub;
    cr_assert_eq(rill_client_subscribe(adm, name, RILL_NET_FROM_EARLIEST, 1000, &sub, NULL), 0,
                 "%s", rill_errmsg());
    for (uint64_t i = 0; i < acked[t]; i++) {
      rill_client_msg_t m;
      cr_assert_eq(rill_client_next(adm, &m, 5000000000ull), 0, "%s", rill_errmsg());
      cr_assert_eq(m.seq, i);
      cr_assert_eq(m.len, sizeof rec);
      cr_assert_eq(((const char *)m.data)[0], 'a' + (int)(i % 26));
    }
    cr_assert_eq(rill_client_unsubscribe(adm, sub), 0);
  }
  /* The metrics show the bytes held and the limit. */
  static char text[1 << 16];
  size_t len = 0;
  cr_assert_eq(rill_client_server_stats_text(adm, text, sizeof text - 1, &len), 0, "%s",
               rill_errmsg());
  text[len] = 0;
  snprintf(want, sizeof want, "rill_disk_max_bytes %llu", (unsigned long long)max);
  cr_expect_not_null(strstr(text, want), "no '%s'", want);
  cr_expect_not_null(strstr(text, "rill_disk_bytes "));
  /* A deleted topic gives its room back: publishing works again. */
  rill_client_close(pub);
  for (int i = 0; i < 1000; i++) {
    cr_assert_eq(rill_client_topic_info(adm, "fill0", &in), 0, "%s", rill_errmsg());
    if (!in.publishers)
      break;
    usleep(1000);
  }
  uint64_t before = st.disk_bytes;
  cr_assert_eq(rill_client_topic_delete(adm, "fill0"), 0, "%s", rill_errmsg());
  rill_server_stats(v.s, &st);
  cr_expect_lt(st.disk_bytes, before, "no credit for the deleted topic");
  uint16_t c2;
  cr_assert_eq(rill_client_bind(adm, "after", &c2), 0, "%s", rill_errmsg());
  for (int i = 0; i < 20; i++)
    cr_assert_eq(rill_client_publish(adm, c2, rec, sizeof rec, true, NULL), 0, "%s", rill_errmsg());
  rill_client_close(adm);
  srv_stop(&v);
  /* A new server counts what the directory holds from the start. */
  uint64_t held = files_bytes();
  srv_start(&v, (rill_server_opts_t){.loops = 1, .max_disk = max});
  rill_server_stats(v.s, &st);
  cr_expect_eq(st.disk_bytes, held, "%llu counted at start, %llu held",
               (unsigned long long)st.disk_bytes, (unsigned long long)held);
  srv_stop(&v);
}

/* A batch larger than a segment that max_disk cuts short: the records
 * stored are said (how many, from which sequence) and reach subscribers;
 * one that fits in a segment is stored whole or not at all. */
Test(server_ops, batch_cut_short_by_max_disk_says_what_was_stored) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 2, .max_disk = 100 << 10, .segment_bytes = 64 << 10});
  rill_client_opts_t o = {.port = rill_server_port(v.s), .name = "batch"};
  rill_client_t *pub, *sub;
  cr_assert_eq(rill_client_connect(&pub, &o), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_connect(&sub, &o), 0, "%s", rill_errmsg());
  uint16_t ch, sc;
  cr_assert_eq(rill_client_bind(pub, "b", &ch), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_subscribe(sub, "b", RILL_NET_FROM_EARLIEST, 1000, &sc, NULL), 0, "%s",
               rill_errmsg());
  static const char rec[1000];
  rill_iov_t batch[100];
  for (int i = 0; i < 100; i++)
    batch[i] = (rill_iov_t){rec, sizeof rec};
  uint64_t first = 0;
  /* 100 KB: more than a 64 KiB segment, whose successor max_disk refuses. */
  cr_assert_eq(rill_client_publish_batch(pub, ch, batch, 100, true, &first), RILL_ENOSPC, "%s",
               rill_errmsg());
  unsigned stored = 0;
  cr_assert_eq(sscanf(strstr(rill_errmsg(), "PUBLISH_BATCH: ")
                          ? strstr(rill_errmsg(), "PUBLISH_BATCH: ")
                          : "",
                      "PUBLISH_BATCH: %u of 100 records stored (from 0)", &stored),
               1, "%s", rill_errmsg());
  cr_expect_gt(stored, 0);
  cr_expect_lt(stored, 100);
  cr_expect_not_null(strstr(rill_errmsg(), "max_disk"), "%s", rill_errmsg());
  for (unsigned k = 0; k < stored; k++) {
    rill_client_msg_t m;
    cr_assert_eq(rill_client_next(sub, &m, 5000000000ull), 0, "record %u: %s", k, rill_errmsg());
    cr_assert_eq(m.seq, k);
  }
  /* A small one that no longer fits: refused whole. */
  rill_topic_info_t in;
  cr_assert_eq(rill_client_topic_info(sub, "b", &in), 0, "%s", rill_errmsg());
  cr_expect_eq(in.next, stored);
  cr_expect_eq(rill_client_publish_batch(pub, ch, batch, 10, true, &first), RILL_ENOSPC);
  cr_expect_null(strstr(rill_errmsg(), "records stored"), "%s", rill_errmsg());
  cr_assert_eq(rill_client_topic_info(sub, "b", &in), 0, "%s", rill_errmsg());
  cr_expect_eq(in.next, stored, "a refused batch left records");
  rill_client_close(pub);
  rill_client_close(sub);
  srv_stop(&v);
}

/* Unacknowledged publishes read together are appended in runs, one per
 * topic: publishes to two topics interleaved in runs of every length up
 * to past a run's size, sent in one stream, each land in their own topic
 * in the order sent, none lost or doubled where one run ends and the next
 * begins. */
Test(server_ops, interleaved_unacked_publishes_keep_their_topics_and_order) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1});
  rill_client_opts_t o = {.port = rill_server_port(v.s), .name = "runs"};
  rill_client_t *pub, *sub;
  cr_assert_eq(rill_client_connect(&pub, &o), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_connect(&sub, &o), 0, "%s", rill_errmsg());
  uint16_t ch[2];
  cr_assert_eq(rill_client_bind(pub, "ra", &ch[0]), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_bind(pub, "rb", &ch[1]), 0, "%s", rill_errmsg());
  uint32_t sent[2] = {0, 0};
  for (uint32_t len = 1, t = 0; len <= 70; len += 3, t ^= 1)
    for (uint32_t i = 0; i < len; i++) {
      uint32_t rec[2] = {t, sent[t]++};
      cr_assert_eq(rill_client_publish(pub, ch[t], rec, sizeof rec, false, NULL), 0, "%s",
                   rill_errmsg());
    }
  for (int t = 0; t < 2; t++) { /* acknowledged: everything before it is in */
    uint32_t rec[2] = {(uint32_t)t, sent[t]++};
    cr_assert_eq(rill_client_publish(pub, ch[t], rec, sizeof rec, true, NULL), 0, "%s",
                 rill_errmsg());
  }
  for (uint32_t t = 0; t < 2; t++) {
    uint16_t sc;
    cr_assert_eq(
        rill_client_subscribe(sub, t ? "rb" : "ra", RILL_NET_FROM_EARLIEST, 10000, &sc, NULL), 0,
        "%s", rill_errmsg());
    for (uint32_t i = 0; i < sent[t]; i++) {
      rill_client_msg_t m;
      uint32_t rec[2];
      cr_assert_eq(rill_client_next(sub, &m, 5000000000ull), 0, "%s", rill_errmsg());
      cr_assert_eq(m.len, sizeof rec);
      memcpy(rec, m.data, sizeof rec);
      cr_assert_eq(m.seq, i);
      cr_assert_eq(rec[0], t, "topic %u record %u came from topic %u", t, i, rec[0]);
      cr_assert_eq(rec[1], i, "topic %u record %u is its record %u", t, i, rec[1]);
    }
    rill_topic_info_t in;
    cr_assert_eq(rill_client_topic_info(sub, t ? "rb" : "ra", &in), 0, "%s", rill_errmsg());
    cr_expect_eq(in.next, sent[t]);
    cr_assert_eq(rill_client_unsubscribe(sub, sc), 0);
  }
  rill_server_stats_t st;
  rill_server_stats(v.s, &st);
  cr_expect_eq(st.published, sent[0] + sent[1]);
  rill_client_close(pub);
  rill_client_close(sub);
  srv_stop(&v);
}

/* Many clients on several loops bind and publish to one new topic at
 * once: its log is opened outside the registry's lock, once, and every
 * other BIND waits for that open rather than opening it again (a second
 * writer would be refused) or making a topic of its own. */
typedef struct {
  uint16_t port;
  uint64_t seqs[50];
  int rc;
} binder_t;

static void *bind_and_publish(void *arg) {
  binder_t *b = arg;
  rill_client_opts_t o = {.port = b->port, .name = "race"};
  rill_client_t *c;
  if ((b->rc = rill_client_connect(&c, &o)) != 0)
    return NULL;
  uint16_t ch;
  b->rc = rill_client_bind(c, "raced", &ch);
  for (int i = 0; !b->rc && i < 50; i++)
    b->rc = rill_client_publish(c, ch, "r", 1, true, &b->seqs[i]);
  rill_client_close(c);
  return NULL;
}

static int u64_cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

Test(server_ops, one_new_topic_bound_by_many_at_once) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 4});
  enum { K = 16 };
  static binder_t b[K];
  pthread_t th[K];
  for (int i = 0; i < K; i++) {
    b[i] = (binder_t){.port = rill_server_port(v.s)};
    cr_assert_eq(pthread_create(&th[i], NULL, bind_and_publish, &b[i]), 0);
  }
  static uint64_t all[K * 50];
  for (int i = 0; i < K; i++) {
    pthread_join(th[i], NULL);
    cr_expect_eq(b[i].rc, 0, "client %d: %d", i, b[i].rc);
    memcpy(all + i * 50, b[i].seqs, sizeof b[i].seqs);
  }
  qsort(all, K * 50, sizeof all[0], u64_cmp);
  for (uint64_t i = 0; i < K * 50; i++)
    cr_assert_eq(all[i], i, "one topic, every sequence once");
  srv_stop(&v);
}

/* At max_topics, a name that is not there is still "no topic", not the
 * limit: the open of a topic checks the limit first, then the disk. */
Test(server_ops, missing_topic_at_max_topics_is_enoent) {
  srv_t v;
  srv_start(&v, (rill_server_opts_t){.loops = 1, .max_topics = 1});
  rill_client_opts_t o = {.port = rill_server_port(v.s), .name = "full"};
  rill_client_t *c;
  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s", rill_errmsg());
  uint16_t ch;
  cr_assert_eq(rill_client_bind(c, "only", &ch), 0, "%s", rill_errmsg());
  cr_expect_eq(rill_client_subscribe(c, "missing", RILL_NET_FROM_EARLIEST, 1, &ch, NULL),
               RILL_ENOENT, "%s", rill_errmsg());
  cr_expect_eq(rill_client_bind(c, "another", &ch), RILL_EBUSY);
  cr_expect_not_null(strstr(rill_errmsg(), "max_topics"), "%s", rill_errmsg());
  rill_client_close(c);
  srv_stop(&v);
}
