/*
 * The metrics pieces on their own: histogram quantiles against the exact
 * answer of a known distribution, merging, Prometheus text checked by a
 * small parser of the format, and the HTTP endpoint over real sockets,
 * including clients that ask a byte at a time or send junk.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "net/metrics.h"

/* ---- histogram ------------------------------------------------------------------ */

/* The server's histograms are core's rill_hist_t (tests/core has their
 * buckets); what is the server's is the `le` edges it writes: 64 ns, then
 * four per power of two to 68.7 s, each counting exactly the values at or
 * under it. */
Test(hist, edges_count_exactly) {
  static rill_hist_t h;
  rill_hist_init(&h);
  const uint64_t at[] = {64, 65, 80, 81, 1ull << 36, (1ull << 36) + 1};
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
    rill_hist_record(&h, at[i]);
  rill__prom_t p;
  rill__prom_init(&p);
  rill__prom_hist(&p, "x_seconds", NULL, &h);
  cr_assert_eq(rill__prom_status(&p), 0);
  cr_expect_not_null(strstr(p.buf, "x_seconds_bucket{le=\"0.000000064\"} 1\n"), "%s", p.buf);
  cr_expect_not_null(strstr(p.buf, "x_seconds_bucket{le=\"0.00000008\"} 3\n"), "%s", p.buf);
  cr_expect_not_null(strstr(p.buf, "x_seconds_bucket{le=\"0.000000096\"} 4\n"), "%s", p.buf);
  cr_expect_not_null(strstr(p.buf, "x_seconds_bucket{le=\"68.719476736\"} 5\n"), "%s", p.buf);
  cr_expect_not_null(strstr(p.buf, "x_seconds_bucket{le=\"+Inf\"} 6\n"), "%s", p.buf);
  cr_expect_not_null(strstr(p.buf, "x_seconds_count 6\n"), "%s", p.buf);
  rill__prom_free(&p);
}

/* ---- a parser of the Prometheus text format ------------------------------------------- */

typedef struct {
  char name[128];
  char labels[512]; /* unescaped "k=v," pairs, le excluded */
  char le[32];
  double v;
} psample_t;

typedef struct {
  psample_t s[4096];
  int n;
  char families[64][128];
  char types[64][16];
  int nfam;
} ptext_t;

/* Parses text into t; fails the test at the first line that is not a
 * comment or a well-formed sample, or at HELP/TYPE repeated for a family. */
static void prom_parse(const char *text, ptext_t *t) {
  memset(t, 0, sizeof *t);
  const char *line = text;
  int lineno = 0;
  int helps = 0, typesn = 0;
  char help_names[64][128];
  while (*line) {
    lineno++;
    const char *eol = strchr(line, '\n');
    cr_assert_not_null(eol, "line %d has no newline", lineno);
    char buf[1024];
    size_t len = (size_t)(eol - line);
    cr_assert_lt(len, sizeof buf);
    memcpy(buf, line, len);
    buf[len] = 0;
    line = eol + 1;
    if (buf[0] == '#') {
      char name[128], rest[256];
      if (sscanf(buf, "# HELP %127s %255[^\n]", name, rest) >= 1 && !strncmp(buf, "# HELP ", 7)) {
        for (int i = 0; i < helps; i++)
          cr_assert_str_neq(help_names[i], name, "HELP twice for %s", name);
        cr_assert_lt(helps, 64);
        strcpy(help_names[helps++], name);
      } else if (sscanf(buf, "# TYPE %127s %255s", name, rest) == 2) {
        for (int i = 0; i < typesn; i++)
          cr_assert_str_neq(t->families[i], name, "TYPE twice for %s", name);
        cr_assert(!strcmp(rest, "counter") || !strcmp(rest, "gauge") || !strcmp(rest, "histogram"),
                  "type %s", rest);
        strcpy(t->families[typesn], name);
        strcpy(t->types[typesn++], rest);
        t->nfam = typesn;
      }
      continue;
    }
    cr_assert_neq(buf[0], 0, "empty line %d", lineno);
    psample_t *s = &t->s[t->n++];
    const char *p = buf;
    size_t nl = 0;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':' ||
           (nl && *p >= '0' && *p <= '9'))
      s->name[nl++] = *p++;
    cr_assert_gt(nl, 0, "line %d: no name: %s", lineno, buf);
    if (*p == '{') {
      p++;
      while (*p != '}') {
        char k[64], v[256];
        size_t kl = 0, vl = 0;
        while (*p && *p != '=')
          k[kl++] = *p++;
        k[kl] = 0;
        cr_assert_eq(*p, '=', "line %d: label", lineno);
        p++;
        cr_assert_eq(*p, '"', "line %d: label value quote", lineno);
        p++;
        while (*p != '"') {
          cr_assert_neq(*p, 0, "line %d: label value ends", lineno);
          if (*p == '\\') {
            p++;
            cr_assert(*p == '\\' || *p == '"' || *p == 'n', "line %d: escape", lineno);
            v[vl++] = *p == 'n' ? '\n' : *p;
            p++;
          } else {
            v[vl++] = *p++;
          }
        }
        v[vl] = 0;
        p++;
        if (!strcmp(k, "le"))
          snprintf(s->le, sizeof s->le, "%.31s", v);
        else {
          size_t at = strlen(s->labels);
          snprintf(s->labels + at, sizeof s->labels - at, "%s=%s,", k, v);
        }
        if (*p == ',')
          p++;
      }
      p++;
    }
    cr_assert_eq(*p, ' ', "line %d: space before the value: %s", lineno, buf);
    char *end;
    s->v = strtod(p + 1, &end);
    cr_assert(end != p + 1 && *end == 0, "line %d: value: %s", lineno, buf);
  }
}

static const psample_t *find(const ptext_t *t, const char *name, const char *labels) {
  for (int i = 0; i < t->n; i++)
    if (!strcmp(t->s[i].name, name) && !strcmp(t->s[i].labels, labels))
      return &t->s[i];
  return NULL;
}

/* Buckets cumulative, ending with +Inf equal to _count. */
static void check_hist(const ptext_t *t, const char *name, const char *labels, double count) {
  char b[160], c[160];
  snprintf(b, sizeof b, "%s_bucket", name);
  snprintf(c, sizeof c, "%s_count", name);
  double prev = 0, prev_le = -1;
  int nb = 0;
  bool inf = false;
  for (int i = 0; i < t->n; i++) {
    const psample_t *s = &t->s[i];
    if (strcmp(s->name, b) || strcmp(s->labels, labels))
      continue;
    cr_assert(!inf, "a bucket after +Inf");
    cr_assert_geq(s->v, prev, "%s: not cumulative at le %s", name, s->le);
    prev = s->v;
    nb++;
    if (!strcmp(s->le, "+Inf")) {
      inf = true;
      continue;
    }
    double le = strtod(s->le, NULL);
    cr_assert_gt(le, prev_le, "le in order");
    prev_le = le;
  }
  cr_assert(inf, "%s has no +Inf bucket", name);
  cr_assert_gt(nb, 10);
  const psample_t *cs = find(t, c, labels);
  cr_assert_not_null(cs);
  cr_assert_eq(cs->v, prev, "+Inf %g against _count %g", prev, cs->v);
  cr_assert_eq(cs->v, count);
}

static int test_render(void *ctx, rill__prom_t *p) {
  const rill_hist_t *h = ctx;
  rill__prom_counter(p, "rill_frames_in_total", "Frames read.", 42);
  rill__prom_gauge(p, "rill_connections_open", "Connections open now.", 3);
  const char *topics[] = {"orders", "we\"ird\\to\npic", "orders"};
  for (int i = 0; i < 2; i++) {
    rill__prom_family(p, "rill_topic_appended_total", "counter", "Records appended, by topic.");
    rill__prom_sample(p, "rill_topic_appended_total",
                      (rill__prom_label_t[]){{"topic", topics[i]}, {NULL, NULL}},
                      (uint64_t)(10 * (i + 1)));
  }
  rill__prom_family(p, "rill_publish_ack_seconds", "histogram",
                    "From a publish read to its ACK queued.");
  rill__prom_hist(p, "rill_publish_ack_seconds", NULL, h);
  rill__prom_family(p, "rill_ask_seconds", "histogram", "Ask to reply, by loop.");
  for (int i = 0; i < 2; i++)
    rill__prom_hist(p, "rill_ask_seconds",
                    (rill__prom_label_t[]){{"loop", i ? "1" : "0"}, {NULL, NULL}}, h);
  rill__prom_gauge(p, "rill_odd", "Not a number\\ with a\nnewline.", NAN);
  return 0;
}

Test(prom, text_parses) {
  static rill_hist_t h;
  rill_hist_init(&h);
  for (uint64_t ns = 50; ns < 100000000000ull; ns = ns * 3 / 2 + 1)
    rill_hist_record(&h, ns);
  rill__prom_t p;
  rill__prom_init(&p);
  cr_assert_eq(test_render(&h, &p), 0);
  cr_assert_eq(rill__prom_status(&p), 0);
  static ptext_t t;
  prom_parse(p.buf, &t);
  cr_assert_eq(t.nfam, 6);
  cr_assert_eq(find(&t, "rill_frames_in_total", "")->v, 42);
  cr_assert_eq(find(&t, "rill_topic_appended_total", "topic=orders,")->v, 10);
  cr_assert_eq(find(&t, "rill_topic_appended_total", "topic=we\"ird\\to\npic,")->v, 20);
  cr_assert(isnan(find(&t, "rill_odd", "")->v));
  double n = (double)h.count;
  check_hist(&t, "rill_publish_ack_seconds", "", n);
  check_hist(&t, "rill_ask_seconds", "loop=0,", n);
  check_hist(&t, "rill_ask_seconds", "loop=1,", n);
  const psample_t *sum = find(&t, "rill_publish_ack_seconds_sum", "");
  cr_assert_not_null(sum);
  cr_assert_lt(fabs(sum->v - (double)h.sum / 1e9), 1e-6 * sum->v);
  /* Exact edges: 64 ns, and a count equal to what lies at or under it. */
  cr_assert_not_null(strstr(p.buf, "rill_publish_ack_seconds_bucket{le=\"0.000000064\"} 1\n"));
  cr_assert_not_null(strstr(p.buf, "# HELP rill_odd Not a number\\\\ with a\\nnewline.\n"));
  rill__prom_free(&p);
}

Test(prom, server_families) {
  static rill__metrics_snap_t s;
  s.st = (rill_server_stats_t){.conns_accepted = 1,
                               .conns_open = 2,
                               .conns_refused = 3,
                               .conns_dropped = 4,
                               .frames_in = 5,
                               .frames_out = 6,
                               .bytes_in = 7,
                               .bytes_out = 8,
                               .published = 9,
                               .delivered = 10,
                               .errors_sent = 11,
                               .asks_refused = 15,
                               .serves_refused = 16,
                               .binds_refused = 18,
                               .subs_refused = 19,
                               .replies_held = 22,
                               .disk_bytes = 23,
                               .disk_max = 24};
  s.asks_in_flight = 12;
  s.serves = 17;
  s.binds = 20;
  s.subs = 21;
  s.uptime_s = 13.5;
  s.loops = 14;
  rill_hist_record(&s.publish_ack, 1000);
  rill_hist_record(&s.ask, 2000);
  rill_hist_record(&s.ask, 3000);
  rill__metrics_topic_t topics[] = {{"orders", 100, 1000, 100, 2}, {"audit", 5, 50, 7, 0}};
  s.topics = topics;
  s.ntopics = 2;
  rill__prom_t p;
  rill__prom_init(&p);
  rill__metrics_render_server(&p, &s);
  cr_assert_eq(rill__prom_status(&p), 0);
  static ptext_t t;
  prom_parse(p.buf, &t);
  const struct {
    const char *name, *labels;
    double v;
  } want[] = {
      {"rill_connections_accepted_total", "", 1},
      {"rill_connections_open", "", 2},
      {"rill_connections_refused_total", "", 3},
      {"rill_connections_dropped_total", "", 4},
      {"rill_frames_in_total", "", 5},
      {"rill_frames_out_total", "", 6},
      {"rill_bytes_in_total", "", 7},
      {"rill_bytes_out_total", "", 8},
      {"rill_messages_published_total", "", 9},
      {"rill_messages_delivered_total", "", 10},
      {"rill_errors_sent_total", "", 11},
      {"rill_asks_in_flight", "", 12},
      {"rill_uptime_seconds", "", 13.5},
      {"rill_loops", "", 14},
      {"rill_asks_refused_total", "", 15},
      {"rill_serves_refused_total", "", 16},
      {"rill_serve_registrations", "", 17},
      {"rill_binds_refused_total", "", 18},
      {"rill_subscribes_refused_total", "", 19},
      {"rill_channels_bound", "", 20},
      {"rill_subscriptions", "", 21},
      {"rill_replies_held_total", "", 22},
      {"rill_disk_bytes", "", 23},
      {"rill_disk_max_bytes", "", 24},
      {"rill_topic_appended_total", "topic=orders,", 100},
      {"rill_topic_appended_bytes_total", "topic=orders,", 1000},
      {"rill_topic_next_sequence", "topic=orders,", 100},
      {"rill_topic_subscribers", "topic=orders,", 2},
      {"rill_topic_appended_total", "topic=audit,", 5},
      {"rill_topic_next_sequence", "topic=audit,", 7},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const psample_t *f = find(&t, want[i].name, want[i].labels);
    cr_assert_not_null(f, "%s{%s}", want[i].name, want[i].labels);
    cr_assert_eq(f->v, want[i].v, "%s", want[i].name);
  }
  check_hist(&t, "rill_publish_ack_seconds", "", 1);
  check_hist(&t, "rill_ask_seconds", "", 2);
  cr_assert_eq(t.nfam, 30);
  rill__prom_free(&p);
}

Test(prom, reset_keeps_nothing) {
  rill__prom_t p;
  rill__prom_init(&p);
  rill__prom_counter(&p, "a_total", "A.", 1);
  rill__prom_reset(&p);
  rill__prom_counter(&p, "a_total", "A.", 2);
  cr_assert_str_eq(p.buf, "# HELP a_total A.\n# TYPE a_total counter\na_total 2\n");
  rill__prom_free(&p);
}

/* ---- the HTTP endpoint ------------------------------------------------------------ */

static int dial(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(fd, 0);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  return fd;
}

/* Sends req and reads the answer until the server closes. */
static char *fetch(uint16_t port, const char *req) {
  int fd = dial(port);
  cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
  size_t cap = 1 << 16, len = 0;
  char *out = malloc(cap);
  ssize_t n;
  while ((n = read(fd, out + len, cap - 1 - len)) > 0)
    len += (size_t)n;
  cr_assert_eq(n, 0, "read until the close");
  out[len] = 0;
  close(fd);
  return out;
}

static int small_render(void *ctx, rill__prom_t *p) {
  (void)ctx;
  rill__prom_counter(p, "rill_connections_accepted_total", "Accepted.", 7);
  return 0;
}

static int failing_render(void *ctx, rill__prom_t *p) {
  (void)ctx;
  (void)p;
  return RILL_EIO;
}

Test(http, serves_metrics) {
  rill__metrics_http_t *m;
  cr_assert_eq(rill__metrics_http_start(&m, "127.0.0.1:0", small_render, NULL), 0, "%s",
               rill_errmsg());
  uint16_t port = rill__metrics_http_port(m);
  cr_assert_neq(port, 0);
  const char *body = "# HELP rill_connections_accepted_total Accepted.\n"
                     "# TYPE rill_connections_accepted_total counter\n"
                     "rill_connections_accepted_total 7\n";
  char *r = fetch(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
  cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
  cr_assert_not_null(strstr(r, "\r\nContent-Type: text/plain; version=0.0.4"));
  char cl[64];
  snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", strlen(body));
  cr_assert_not_null(strstr(r, cl), "%s", r);
  cr_assert_not_null(strstr(r, "\r\nConnection: close\r\n"));
  char *b = strstr(r, "\r\n\r\n");
  cr_assert_not_null(b);
  cr_assert_str_eq(b + 4, body);
  free(r);
  /* HTTP/1.0 with bare newlines and a query string. */
  r = fetch(port, "GET /metrics?x=1 HTTP/1.0\n\n");
  cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
  free(r);
  r = fetch(port, "GET /other HTTP/1.1\r\n\r\n");
  cr_assert(!strncmp(r, "HTTP/1.1 404 ", 13), "%s", r);
  free(r);
  r = fetch(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  cr_assert(!strncmp(r, "HTTP/1.1 405 ", 13), "%s", r);
  free(r);
  r = fetch(port, "\x16\x03\x01 junk\r\n\r\n");
  cr_assert(!strncmp(r, "HTTP/1.1 400 ", 13), "%s", r);
  free(r);
  r = fetch(port, "GET /metrics HTTP/9.9\r\n\r\n");
  cr_assert(!strncmp(r, "HTTP/1.1 400 ", 13), "%s", r);
  free(r);
  /* A request that never ends is cut short at the size bound. */
  char big[RILL__METRICS_MAX_REQUEST + 1]; /* exactly the bound: nothing left unread */
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = 0;
  memcpy(big, "GET /", 5);
  r = fetch(port, big);
  cr_assert(!strncmp(r, "HTTP/1.1 431 ", 13), "%s", r);
  free(r);
  rill__metrics_http_stop(m);
}

Test(http, render_failure_is_500) {
  rill__metrics_http_t *m;
  cr_assert_eq(rill__metrics_http_start(&m, "127.0.0.1:0", failing_render, NULL), 0);
  char *r = fetch(rill__metrics_http_port(m), "GET /metrics HTTP/1.1\r\n\r\n");
  cr_assert(!strncmp(r, "HTTP/1.1 500 ", 13), "%s", r);
  free(r);
  rill__metrics_http_stop(m);
}

Test(http, slow_client_does_not_block_others) {
  rill__metrics_http_t *m;
  cr_assert_eq(rill__metrics_http_start(&m, "127.0.0.1:0", small_render, NULL), 0);
  uint16_t port = rill__metrics_http_port(m);
  int slow = dial(port);
  cr_assert_eq(write(slow, "G", 1), 1);
  char *r = fetch(port, "GET /metrics HTTP/1.1\r\n\r\n");
  cr_assert(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
  free(r);
  /* The slow one is dropped at its deadline, with no answer. */
  char c;
  cr_assert_eq(read(slow, &c, 1), 0);
  close(slow);
  rill__metrics_http_stop(m);
}

Test(http, connections_over_the_bound_are_refused) {
  rill__metrics_http_t *m;
  cr_assert_eq(rill__metrics_http_start(&m, "127.0.0.1:0", small_render, NULL), 0);
  uint16_t port = rill__metrics_http_port(m);
  int idle[RILL__METRICS_MAX_CONNS];
  for (int i = 0; i < RILL__METRICS_MAX_CONNS; i++)
    idle[i] = dial(port);
  /* Nothing written: the refusal may close before a request arrives. */
  int fd = dial(port);
  char r[256];
  ssize_t n = read(fd, r, sizeof r - 1);
  cr_assert_gt(n, 0);
  r[n] = 0;
  cr_assert(!strncmp(r, "HTTP/1.1 503 ", 13), "%s", r);
  close(fd);
  for (int i = 0; i < RILL__METRICS_MAX_CONNS; i++)
    close(idle[i]);
  rill__metrics_http_stop(m);
}

Test(http, stop_with_clients_connected) {
  rill__metrics_http_t *m;
  cr_assert_eq(rill__metrics_http_start(&m, "127.0.0.1:0", small_render, NULL), 0);
  int fd = dial(rill__metrics_http_port(m));
  cr_assert_eq(write(fd, "GET", 3), 3);
  rill__metrics_http_stop(m);
  char c;
  cr_assert_leq(read(fd, &c, 1), 0);
  close(fd);
  rill__metrics_http_stop(NULL);
}

Test(http, bad_hostport) {
  rill__metrics_http_t *m = (void *)1;
  const char *bad[] = {"127.0.0.1",    ":9100",    "127.0.0.1:", "127.0.0.1:65536",
                       "127.0.0.1:-1", "::1:9100", "1.2.3:80",   "127.0.0.1:80x",
                       "[::1]",        "[::1:80",  NULL};
  for (int i = 0; bad[i]; i++) {
    cr_assert_eq(rill__metrics_http_start(&m, bad[i], small_render, NULL), RILL_EINVAL, "%s",
                 bad[i]);
    cr_assert_null(m);
    cr_assert_neq(rill_errmsg()[0], 0);
  }
  cr_assert_eq(rill__metrics_http_start(&m, NULL, small_render, NULL), RILL_EINVAL);
}

/* A host name, and an IPv6 address in brackets. */
Test(http, good_hostports) {
  const char *good[] = {"localhost:0", "[::1]:0", NULL};
  for (int i = 0; good[i]; i++) {
    rill__metrics_http_t *m = NULL;
    int rc = rill__metrics_http_start(&m, good[i], small_render, NULL);
    if (rc == -EADDRNOTAVAIL && good[i][0] == '[')
      continue; /* no IPv6 loopback here */
    cr_assert_eq(rc, 0, "%s: %s", good[i], rill_errmsg());
    cr_expect_gt(rill__metrics_http_port(m), 0);
    rill__metrics_http_stop(m);
  }
}
