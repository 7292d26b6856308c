/*
 * Host names and IPv6: the address helpers on their own, then a server
 * listening on "::1", on "localhost", and refused hosts; the client
 * dialling the same. The IPv6 cases skip on a machine without an IPv6
 * loopback.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/addr.h"
#include "server_fixture.h"

/* Whether ::1 can be bound here (a container may have no IPv6 at all). */
static bool have_ipv6_loopback(void) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0)
    return false;
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  close(fd);
  return ok;
}

#define NEED_IPV6()                                                                                \
  do {                                                                                             \
    if (!have_ipv6_loopback())                                                                     \
      cr_skip_test("no IPv6 loopback on this machine");                                            \
  } while (0)

/* ---- the helpers ----------------------------------------------------------------- */

Test(addr, split) {
  char host[RILL__HOST_MAX + 1];
  uint16_t port = 1;
  cr_assert_eq(rill__addr_split("127.0.0.1:7450", host, &port, "t"), 0, "%s", rill_errmsg());
  cr_expect_str_eq(host, "127.0.0.1");
  cr_expect_eq(port, 7450);
  cr_assert_eq(rill__addr_split("[::1]:9450", host, &port, "t"), 0, "%s", rill_errmsg());
  cr_expect_str_eq(host, "::1", "the brackets are not the host's");
  cr_expect_eq(port, 9450);
  cr_assert_eq(rill__addr_split("localhost:0", host, &port, "t"), 0, "%s", rill_errmsg());
  cr_expect_str_eq(host, "localhost");
  cr_expect_eq(port, 0);
  const char *bad[] = {"127.0.0.1", ":80",      "127.0.0.1:", "h:65536",   "h:-1",
                       "h:+1",      "h:80x",    "::1:9450",   "[::1]",     "[::1:80",
                       "[]:80",     "[::1]x80", "[::1]:",     "[::1]:1e3", NULL};
  for (int i = 0; bad[i]; i++) {
    cr_expect_eq(rill__addr_split(bad[i], host, &port, "t"), RILL_EINVAL, "%s", bad[i]);
    cr_expect_neq(strstr(rill_errmsg(), "t: "), NULL, "%s: %s", bad[i], rill_errmsg());
  }
  cr_expect_eq(rill__addr_split(NULL, host, &port, "t"), RILL_EINVAL);
  char longer[RILL__HOST_MAX + 8];
  memset(longer, 'a', RILL__HOST_MAX + 1);
  snprintf(longer + RILL__HOST_MAX + 1, 6, ":80");
  cr_expect_eq(rill__addr_split(longer, host, &port, "t"), RILL_EINVAL, "a host over 255");
}

Test(addr, join_and_str) {
  char b[RILL__ADDR_STR];
  cr_expect_str_eq(rill__addr_join("::1", 7450, b, sizeof b), "[::1]:7450");
  cr_expect_str_eq(rill__addr_join("[::1]", 7450, b, sizeof b), "[::1]:7450");
  cr_expect_str_eq(rill__addr_join("localhost", 1, b, sizeof b), "localhost:1");
  cr_expect_str_eq(rill__addr_join("10.0.0.1", 80, b, sizeof b), "10.0.0.1:80");
  struct sockaddr_in6 a6 = {
      .sin6_family = AF_INET6, .sin6_port = htons(9), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  cr_expect_str_eq(rill__addr_str((struct sockaddr *)&a6, b, sizeof b), "[::1]:9");
  struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(80)};
  inet_pton(AF_INET, "192.0.2.7", &a4.sin_addr);
  cr_expect_str_eq(rill__addr_str((struct sockaddr *)&a4, b, sizeof b), "192.0.2.7:80");
  struct sockaddr other = {.sa_family = AF_UNIX};
  cr_expect_str_eq(rill__addr_str(&other, b, sizeof b), "(unknown)");
}

Test(addr, resolve) {
  struct addrinfo *ai;
  cr_assert_eq(rill__addr_resolve("127.0.0.1", 80, false, "t", &ai), 0, "%s", rill_errmsg());
  cr_expect_eq(ai->ai_family, AF_INET);
  cr_expect_eq(ntohs(((struct sockaddr_in *)ai->ai_addr)->sin_port), 80);
  freeaddrinfo(ai);
  cr_assert_eq(rill__addr_resolve("localhost", 80, false, "t", &ai), 0, "%s", rill_errmsg());
  freeaddrinfo(ai);
  cr_assert_eq(rill__addr_resolve("[::1]", 80, true, "t", &ai), 0, "%s", rill_errmsg());
  cr_expect_eq(ai->ai_family, AF_INET6, "brackets taken off, the literal parsed");
  freeaddrinfo(ai);
  /* inet_aton's shorthands are not addresses here; a name with a space
   * is refused by the resolver without asking DNS. */
  const char *bad[] = {"1.2.3", "10", "256.1.1.1", "1.2.3.4.", "no such host!", "", "[]", NULL};
  for (int i = 0; bad[i]; i++) {
    ai = (void *)1;
    cr_expect_eq(rill__addr_resolve(bad[i], 80, false, "t", &ai), RILL_EINVAL, "%s", bad[i]);
    cr_expect_null(ai);
  }
  cr_expect_eq(rill__addr_resolve(NULL, 80, false, "t", &ai), RILL_EINVAL);
}

/* ---- a server and a client on them ------------------------------------------------ */

static srv_t v;
static bool serving;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[4096];

static void log_line(void *ctx, rill_server_log_level_t level, const char *line) {
  (void)ctx;
  (void)level;
  pthread_mutex_lock(&log_mu);
  size_t n = strlen(log_text);
  snprintf(log_text + n, sizeof log_text - n, "%s\n", line);
  pthread_mutex_unlock(&log_mu);
}

static void setup(void) { dir_make("/tmp/rill-test-addr-XXXXXX"); }

static void teardown(void) {
  if (serving)
    srv_stop(&v);
  rm_tmp();
}

TestSuite(addr_net, .init = setup, .fini = teardown);

static void serve_on(const char *host, const char *metrics) {
  srv_start(&v, (rill_server_opts_t){.host = host, .metrics = metrics, .log = log_line});
  serving = true;
}

/* A client on host publishes and reads back what it published. */
static void round_trip(const char *host) {
  rill_client_t *c;
  rill_client_opts_t o = {.host = host, .port = rill_server_port(v.s)};
  cr_assert_eq(rill_client_connect(&c, &o), 0, "%s: %s", host, rill_errmsg());
  uint16_t ch, sub;
  uint64_t seq = 0, start = 0;
  cr_assert_eq(rill_client_bind(c, "t", &ch), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_publish(c, ch, "hello", 5, true, &seq), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_client_subscribe(c, "t", seq, 1, &sub, &start), 0, "%s", rill_errmsg());
  rill_client_msg_t m;
  cr_assert_eq(rill_client_next(c, &m, 5000000000ull), 0, "%s", rill_errmsg());
  cr_expect_eq(m.seq, seq);
  cr_expect_eq(m.len, 5);
  cr_expect_eq(memcmp(m.data, "hello", 5), 0);
  rill_client_close(c);
}

Test(addr_net, server_on_ipv6_loopback) {
  NEED_IPV6();
  serve_on("::1", NULL);
  round_trip("::1");
  round_trip("[::1]");
  /* The server's log names an IPv6 peer as [ADDRESS]:PORT: a frame it
   * cannot decode closes the connection, with a line saying from where. */
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
                            .sin6_port = htons(rill_server_port(v.s)),
                            .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  uint8_t junk[RILL_NET_HDR];
  memset(junk, 0xff, sizeof junk);
  cr_assert_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
  char b[256];
  while (read(fd, b, sizeof b) > 0) /* its ERROR, then the close: logged before both */
    ;
  close(fd);
  pthread_mutex_lock(&log_mu);
  bool named = strstr(log_text, "from [::1]:") != NULL;
  pthread_mutex_unlock(&log_mu);
  cr_expect(named, "log: %s", log_text);
}

Test(addr_net, server_on_bracketed_ipv6) {
  NEED_IPV6();
  serve_on("[::1]", NULL);
  round_trip("::1");
}

/* An IPv4 client cannot reach a server on ::1 alone: it listens where it
 * was told, not on every address. */
Test(addr_net, ipv6_server_is_not_on_ipv4) {
  NEED_IPV6();
  serve_on("::1", NULL);
  rill_client_t *c = NULL;
  rill_client_opts_t o = {
      .host = "127.0.0.1", .port = rill_server_port(v.s), .timeout_ns = 2000000000ull};
  cr_expect_lt(rill_client_connect(&c, &o), 0);
  cr_expect_null(c);
}

/* A name: the server takes the first of its addresses that binds, and
 * the client tries each of its addresses until one answers. */
Test(addr_net, localhost) {
  serve_on("localhost", NULL);
  round_trip("localhost");
}

Test(addr_net, server_refuses_bad_hosts) {
  const char *bad[] = {"no such host!", "1.2.3", "", "[::1", NULL};
  for (int i = 0; bad[i]; i++) {
    rill_server_t *s = (void *)1;
    rill_server_opts_t o = {.data_dir = dir, .host = bad[i], .any_port = true};
    cr_expect_eq(rill_server_create(&s, &o), RILL_EINVAL, "%s: %s", bad[i], rill_errmsg());
    cr_expect_null(s);
  }
}

Test(addr_net, client_refuses_bad_hosts) {
  char longer[RILL__HOST_MAX + 2];
  memset(longer, 'a', sizeof longer - 1);
  longer[sizeof longer - 1] = 0;
  const char *bad[] = {"no such host!", "1.2.3", "", longer, NULL};
  for (int i = 0; bad[i]; i++) {
    rill_client_t *c = (void *)1;
    rill_client_opts_t o = {.host = bad[i], .port = 1};
    cr_expect_eq(rill_client_connect(&c, &o), RILL_EINVAL, "%.20s: %s", bad[i], rill_errmsg());
    cr_expect_null(c);
  }
}

/* The metrics endpoint takes "[::1]:PORT" and answers there. */
Test(addr_net, metrics_on_ipv6) {
  NEED_IPV6();
  serve_on("127.0.0.1", "[::1]:0");
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
                            .sin6_port = htons(rill_server_metrics_port(v.s)),
                            .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  cr_assert_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
  char b[512];
  ssize_t n = read(fd, b, sizeof b - 1);
  cr_assert_gt(n, 0);
  b[n] = 0;
  cr_expect_eq(strncmp(b, "HTTP/1.1 200", 12), 0, "%s", b);
  close(fd);
}
