/*
 * The server's metrics: histogram, Prometheus text and the HTTP endpoint
 * (metrics.h). The endpoint is deliberately small: one thread, poll()
 * over a bounded set of non-blocking sockets, a deadline per connection,
 * one request per connection. Nothing a scraper (or an attacker) does can
 * hold the thread: a request that comes a byte at a time only keeps its
 * own slot until its deadline, and a client that never reads loses its
 * connection at the same deadline.
 */
#include "net/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/internal.h"
#include "net/addr.h"
#include "net/metrics_http.h"

/* ---- histogram edges ------------------------------------------------------------ */

/* The `le` bounds written for a latency histogram: 64 ns, then four per
 * power of two up to 2^36 ns (68.7 s). Each is the inclusive upper bound
 * of a rill_hist_t bucket (they hold (low, high] with round highs), so the
 * count at or under it is exact. */
#define EDGE_MIN_LOG 6
#define EDGE_MAX_LOG 36
#define EDGE_SUB     4
#define EDGES        ((EDGE_MAX_LOG - EDGE_MIN_LOG) * EDGE_SUB + 1)

static uint64_t edge(uint32_t i) {
  if (i == 0)
    return 1ull << EDGE_MIN_LOG;
  uint32_t k = EDGE_MIN_LOG + (i - 1) / EDGE_SUB;
  uint64_t j = (i - 1) % EDGE_SUB + 1;
  return (1ull << k) + (j << (k - 2));
}

/* ---- Prometheus text ---------------------------------------------------------- */

void rill__prom_init(rill__prom_t *p) { memset(p, 0, sizeof *p); }

void rill__prom_free(rill__prom_t *p) {
  rill__free(p->buf);
  memset(p, 0, sizeof *p);
}

void rill__prom_reset(rill__prom_t *p) {
  p->len = 0;
  p->oom = false;
  p->family[0] = 0;
}

int rill__prom_status(const rill__prom_t *p) {
  return p->oom ? rill__err(RILL_ENOMEM, "metrics: no memory for the text") : 0;
}

static bool prom_room(rill__prom_t *p, size_t n) {
  if (p->oom)
    return false;
  if (p->len + n + 1 <= p->cap)
    return true;
  size_t cap = p->cap ? p->cap : 4096;
  while (cap < p->len + n + 1)
    cap *= 2;
  char *b = rill__realloc(p->buf, cap);
  if (!b) {
    p->oom = true;
    return false;
  }
  p->buf = b;
  p->cap = cap;
  return true;
}

static void prom_put(rill__prom_t *p, const char *s, size_t n) {
  if (!prom_room(p, n))
    return;
  memcpy(p->buf + p->len, s, n);
  p->len += n;
  p->buf[p->len] = 0;
}

static void prom_str(rill__prom_t *p, const char *s) { prom_put(p, s, strlen(s)); }

static void prom_fmt(rill__prom_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prom_fmt(rill__prom_t *p, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof tmp) {
    prom_put(p, tmp, (size_t)n);
    return;
  }
  /* Longer than the usual line: straight into the buffer. */
  if (!prom_room(p, (size_t)n))
    return;
  va_start(ap, fmt);
  vsnprintf(p->buf + p->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  p->len += (size_t)n;
}

/* Backslash and newline always; the double quote too inside a label
 * value (HELP text keeps it as is, per the format). */
static void prom_escaped(rill__prom_t *p, const char *s, bool quote) {
  for (const char *run = s;; s++) {
    const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;
    if (!esc && *s)
      continue;
    prom_put(p, run, (size_t)(s - run));
    if (!*s)
      return;
    prom_str(p, esc);
    run = s + 1;
  }
}

void rill__prom_family(rill__prom_t *p, const char *name, const char *type, const char *help) {
  if (!strncmp(p->family, name, sizeof p->family))
    return;
  snprintf(p->family, sizeof p->family, "%s", name);
  prom_fmt(p, "# HELP %s ", name);
  prom_escaped(p, help ? help : "", false);
  prom_fmt(p, "\n# TYPE %s %s\n", name, type);
}

/* name{labels[,extra="extra_v"]}, the part of a sample line before its
 * value. */
static void prom_series(rill__prom_t *p, const char *name, const char *suffix,
                        const rill__prom_label_t *labels, const char *extra, const char *extra_v) {
  prom_str(p, name);
  prom_str(p, suffix);
  bool any = false;
  for (const rill__prom_label_t *l = labels; l && l->name; l++) {
    prom_str(p, any ? "," : "{");
    prom_str(p, l->name);
    prom_str(p, "=\"");
    prom_escaped(p, l->value ? l->value : "", true);
    prom_str(p, "\"");
    any = true;
  }
  if (extra) {
    prom_fmt(p, "%s%s=\"%s\"", any ? "," : "{", extra, extra_v);
    any = true;
  }
  if (any)
    prom_str(p, "}");
}

void rill__prom_sample(rill__prom_t *p, const char *name, const rill__prom_label_t *labels,
                       uint64_t v) {
  prom_series(p, name, "", labels, NULL, NULL);
  prom_fmt(p, " %" PRIu64 "\n", v);
}

static void prom_double(rill__prom_t *p, double v) {
  if (isnan(v))
    prom_str(p, " NaN\n");
  else if (isinf(v))
    prom_str(p, v > 0 ? " +Inf\n" : " -Inf\n");
  else
    prom_fmt(p, " %.17g\n", v);
}

void rill__prom_sample_f(rill__prom_t *p, const char *name, const rill__prom_label_t *labels,
                         double v) {
  prom_series(p, name, "", labels, NULL, NULL);
  prom_double(p, v);
}

void rill__prom_counter(rill__prom_t *p, const char *name, const char *help, uint64_t v) {
  rill__prom_family(p, name, "counter", help);
  rill__prom_sample(p, name, NULL, v);
}

void rill__prom_gauge(rill__prom_t *p, const char *name, const char *help, double v) {
  rill__prom_family(p, name, "gauge", help);
  rill__prom_sample_f(p, name, NULL, v);
}

/* ns as exact decimal seconds: every bucket edge is a whole number of ns,
 * and a float could print 6.4e-08 as 6.4000000000000004e-08. */
static void ns_seconds(char *out, size_t cap, uint64_t ns) {
  int n = snprintf(out, cap, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
  while (n > 2 && out[n - 1] == '0' && out[n - 2] != '.')
    out[--n] = 0;
}

void rill__prom_hist(rill__prom_t *p, const char *name, const rill__prom_label_t *labels,
                     const rill_hist_t *h) {
  uint64_t cum = 0;
  uint32_t b = 0;
  char le[32];
  for (uint32_t i = 0; i < EDGES; i++) {
    uint64_t e = edge(i);
    for (; b < RILL_HIST_BUCKETS && rill_hist_bucket_high(b) <= e; b++)
      cum += h->bucket[b];
    /* Every edge, not a subset: with two per power of two, a p99 read
     * back from the buckets (rill stat, histogram_quantile) was 40% off
     * for a narrow distribution; with all four, a bucket's 25% at most. */
    ns_seconds(le, sizeof le, e);
    prom_series(p, name, "_bucket", labels, "le", le);
    prom_fmt(p, " %" PRIu64 "\n", cum);
  }
  for (; b < RILL_HIST_BUCKETS; b++)
    cum += h->bucket[b];
  prom_series(p, name, "_bucket", labels, "le", "+Inf");
  prom_fmt(p, " %" PRIu64 "\n", cum);
  ns_seconds(le, sizeof le, h->sum);
  prom_series(p, name, "_sum", labels, NULL, NULL);
  prom_fmt(p, " %s\n", le);
  prom_series(p, name, "_count", labels, NULL, NULL);
  prom_fmt(p, " %" PRIu64 "\n", cum);
}

/* ---- the server's families ------------------------------------------------------ */

void rill__metrics_render_server(rill__prom_t *p, const rill__metrics_snap_t *s) {
  const rill_server_stats_t *st = &s->st;
  static const struct {
    const char *name, *help;
    size_t off;
  } counters[] = {
      {"rill_connections_accepted_total", "Connections accepted.",
       offsetof(rill_server_stats_t, conns_accepted)},
      {"rill_connections_refused_total",
       "Connections refused (over max_conns, or out of file descriptors).",
       offsetof(rill_server_stats_t, conns_refused)},
      {"rill_connections_dropped_total",
       "Connections the server closed: protocol errors, timeouts, a full send queue.",
       offsetof(rill_server_stats_t, conns_dropped)},
      {"rill_frames_in_total", "Frames read.", offsetof(rill_server_stats_t, frames_in)},
      {"rill_frames_out_total", "Frames queued to send.",
       offsetof(rill_server_stats_t, frames_out)},
      {"rill_bytes_in_total", "Bytes read from clients.", offsetof(rill_server_stats_t, bytes_in)},
      {"rill_bytes_out_total", "Bytes sent to clients.", offsetof(rill_server_stats_t, bytes_out)},
      {"rill_messages_published_total", "Records published (appended to a topic).",
       offsetof(rill_server_stats_t, published)},
      {"rill_messages_delivered_total", "Records delivered to subscribers and fetches.",
       offsetof(rill_server_stats_t, delivered)},
      {"rill_errors_sent_total", "ERROR frames sent.", offsetof(rill_server_stats_t, errors_sent)},
      {"rill_asks_refused_total",
       "Asks refused with EBUSY: over max_asks_per_conn or max_asks, or their provider's send "
       "queue over half its tx_limit.",
       offsetof(rill_server_stats_t, asks_refused)},
      {"rill_serves_refused_total", "SERVEs refused: over max_serves_per_conn or max_serves.",
       offsetof(rill_server_stats_t, serves_refused)},
      {"rill_binds_refused_total", "BINDs refused: over max_binds_per_conn or max_binds.",
       offsetof(rill_server_stats_t, binds_refused)},
      {"rill_subscribes_refused_total", "SUBSCRIBEs refused: over max_subs_per_conn or max_subs.",
       offsetof(rill_server_stats_t, subs_refused)},
      {"rill_replies_held_total",
       "Times a provider was not read because its asker's send queue was over half its "
       "tx_limit.",
       offsetof(rill_server_stats_t, replies_held)},
  };
  for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
    uint64_t v;
    memcpy(&v, (const char *)st + counters[i].off, sizeof v);
    rill__prom_counter(p, counters[i].name, counters[i].help, v);
  }
  rill__prom_gauge(p, "rill_connections_open", "Connections open now.", (double)st->conns_open);
  rill__prom_gauge(p, "rill_asks_in_flight", "Asks waiting for their reply.",
                   (double)s->asks_in_flight);
  rill__prom_gauge(p, "rill_serve_registrations", "SERVE registrations held (max_serves).",
                   (double)s->serves);
  rill__prom_gauge(p, "rill_disk_bytes",
                   "Bytes the topics' segment and index files take now (max_disk bounds them).",
                   (double)st->disk_bytes);
  rill__prom_gauge(p, "rill_disk_max_bytes", "The server's max_disk; 0: unlimited.",
                   (double)st->disk_max);
  rill__prom_gauge(p, "rill_channels_bound", "Publishing channels bound (max_binds).",
                   (double)s->binds);
  rill__prom_gauge(p, "rill_subscriptions", "Subscriptions held (max_subs).", (double)s->subs);
  rill__prom_gauge(p, "rill_uptime_seconds", "Seconds since the server started.", s->uptime_s);
  rill__prom_gauge(p, "rill_loops", "Event-loop threads.", (double)s->loops);

  static const struct {
    const char *name, *type, *help;
    size_t off;
  } topic_families[] = {
      {"rill_topic_appended_total", "counter", "Records appended to the topic since start.",
       offsetof(rill__metrics_topic_t, appended)},
      {"rill_topic_appended_bytes_total", "counter",
       "Payload bytes appended to the topic since start.",
       offsetof(rill__metrics_topic_t, appended_bytes)},
      {"rill_topic_next_sequence", "gauge", "The sequence number the topic's next record gets.",
       offsetof(rill__metrics_topic_t, next_seq)},
      {"rill_topic_subscribers", "gauge", "Subscriptions to the topic.",
       offsetof(rill__metrics_topic_t, subscribers)},
  };
  for (size_t f = 0; s->ntopics && f < sizeof topic_families / sizeof topic_families[0]; f++) {
    rill__prom_family(p, topic_families[f].name, topic_families[f].type, topic_families[f].help);
    for (size_t t = 0; t < s->ntopics; t++) {
      uint64_t v;
      memcpy(&v, (const char *)&s->topics[t] + topic_families[f].off, sizeof v);
      rill__prom_sample(p, topic_families[f].name,
                        (rill__prom_label_t[]){{"topic", s->topics[t].name}, {NULL, NULL}}, v);
    }
  }

  rill__prom_family(p, "rill_publish_ack_seconds", "histogram",
                    "Acknowledged publishes, from the frame read to its ACK queued "
                    "(the durability wait included).");
  rill__prom_hist(p, "rill_publish_ack_seconds", NULL, &s->publish_ack);
  rill__prom_family(p, "rill_ask_seconds", "histogram",
                    "Asks, from the ASK read to the REPLY forwarded.");
  rill__prom_hist(p, "rill_ask_seconds", NULL, &s->ask);
}

/* ---- the HTTP endpoint ----------------------------------------------------------- */

typedef struct mconn {
  int fd; /* -1: a free slot */
  uint64_t deadline_ns;
  size_t in_len;
  bool answering; /* the answer is composed: writing it now */
  char hdr[256];
  size_t hdr_len;
  rill__prom_t body; /* its buffer is kept across connections */
  size_t body_len;   /* 0 for answers without a body (errors have theirs in hdr) */
  size_t sent;       /* of hdr_len + body_len */
  char in[RILL__METRICS_MAX_REQUEST];
} mconn_t;

struct rill__metrics_http {
  int lfd, stopfd;
  uint16_t port;
  rill__metrics_render_fn render;
  void *ctx;
  pthread_t thread;
  uint64_t accept_paused_until; /* out of descriptors: stop polling lfd for a while */
  mconn_t conn[RILL__METRICS_MAX_CONNS];
};

static const char busy_answer[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                  "Content-Type: text/plain\r\nContent-Length: 5\r\n"
                                  "Connection: close\r\n\r\nbusy\n";

static void conn_free(mconn_t *c) {
  if (c->fd < 0)
    return;
  /* Read what the client sent past its request, so that close() does not
   * turn into a reset that could destroy the answer still in flight. */
  char junk[512];
  while (recv(c->fd, junk, sizeof junk, MSG_DONTWAIT) > 0)
    ;
  close(c->fd);
  c->fd = -1;
}

/* An answer with a short text body of its own. 0, for `return answer_error(...)`. */
static int answer_error(mconn_t *c, int status, const char *reason, const char *extra) {
  int n = snprintf(c->hdr, sizeof c->hdr,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s"
                   "Connection: close\r\n\r\n%s\n",
                   status, reason, strlen(reason) + 1, extra ? extra : "", reason);
  c->hdr_len = (size_t)n < sizeof c->hdr ? (size_t)n : sizeof c->hdr - 1;
  c->body_len = 0;
  c->answering = true;
  c->sent = 0;
  return 0;
}

/* A token of the request line: ends at a space; NULL when it does not. */
static char *request_token(char **s) {
  char *t = *s, *sp = strchr(t, ' ');
  if (!sp || sp == t)
    return NULL;
  *sp = 0;
  *s = sp + 1;
  return t;
}

size_t rill__metrics_http_end(const char *in, size_t from, size_t len) {
  for (size_t i = from; i < len; i++)
    if (in[i] == '\n' &&
        ((i >= 1 && in[i - 1] == '\n') || (i >= 2 && in[i - 1] == '\r' && in[i - 2] == '\n')))
      return i + 1;
  return 0;
}

int rill__metrics_http_parse(char *in, size_t len, bool *head) {
  char *eol = memchr(in, '\n', len);
  if (!eol)
    return 400;
  if (eol > in && eol[-1] == '\r')
    eol--;
  *eol = 0;
  char *s = in;
  if (memchr(in, 0, (size_t)(eol - in)))
    return 400;
  char *method = request_token(&s);
  char *target = method ? request_token(&s) : NULL;
  char *version = s;
  if (!target || (strcmp(version, "HTTP/1.0") && strcmp(version, "HTTP/1.1")))
    return 400;
  for (const char *t = method; *t; t++)
    if (*t < 'A' || *t > 'Z')
      return 400;
  *head = !strcmp(method, "HEAD");
  if (strcmp(method, "GET") && !*head)
    return 405;
  size_t tl = strcspn(target, "?");
  if (tl != 8 || memcmp(target, "/metrics", 8))
    return 404;
  return 200;
}

/* The request in c->in is whole (headers ended): compose the answer. */
static int answer(rill__metrics_http_t *m, mconn_t *c) {
  bool head = false;
  switch (rill__metrics_http_parse(c->in, c->in_len, &head)) {
  case 200: break;
  case 404: return answer_error(c, 404, "Not Found", NULL);
  case 405: return answer_error(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
  default: return answer_error(c, 400, "Bad Request", NULL);
  }
  rill__prom_reset(&c->body);
  int rc = m->render(m->ctx, &c->body);
  if (rc == 0)
    rc = rill__prom_status(&c->body);
  if (rc < 0)
    return answer_error(c, 500, "Internal Server Error", NULL);
  int n = snprintf(c->hdr, sizeof c->hdr,
                   "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   c->body.len);
  c->hdr_len = (size_t)n;
  c->body_len = head ? 0 : c->body.len;
  c->answering = true;
  c->sent = 0;
  return 0;
}

/* Reads what is there. false: the connection is done with (closed by the
 * client or broken). */
static bool conn_read(rill__metrics_http_t *m, mconn_t *c) {
  while (!c->answering) {
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
    if (n < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (n == 0)
      return false; /* gone before asking anything whole */
    size_t from = c->in_len > 3 ? c->in_len - 3 : 0;
    c->in_len += (size_t)n;
    if (rill__metrics_http_end(c->in, from, c->in_len)) {
      answer(m, c);
      return true;
    }
    if (c->in_len == sizeof c->in) {
      answer_error(c, 431, "Request Header Fields Too Large", NULL);
      return true;
    }
  }
  return true;
}

/* Sends what the socket takes. false: finished or broken either way. */
static bool conn_write(mconn_t *c) {
  size_t total = c->hdr_len + c->body_len;
  while (c->sent < total) {
    struct iovec iov[2];
    int n = 0;
    if (c->sent < c->hdr_len)
      iov[n++] = (struct iovec){c->hdr + c->sent, c->hdr_len - c->sent};
    size_t bo = c->sent > c->hdr_len ? c->sent - c->hdr_len : 0;
    if (c->body_len > bo)
      iov[n++] = (struct iovec){c->body.buf + bo, c->body_len - bo};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    c->sent += (size_t)w;
  }
  return false;
}

static void accept_all(rill__metrics_http_t *m, uint64_t now) {
  for (;;) {
    int fd = accept4(m->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        m->accept_paused_until = now + 100000000ull; /* else poll() would spin on it */
      return;
    }
    mconn_t *c = NULL;
    for (int i = 0; i < RILL__METRICS_MAX_CONNS && !c; i++)
      if (m->conn[i].fd < 0)
        c = &m->conn[i];
    if (!c) {
      /* Full: a word of explanation if the socket takes it, never a wait. */
      ssize_t w = send(fd, busy_answer, sizeof busy_answer - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
      (void)w;
      close(fd);
      continue;
    }
    c->fd = fd;
    c->deadline_ns = now + RILL__METRICS_DEADLINE_NS;
    c->in_len = 0;
    c->answering = false;
  }
}

static void *http_main(void *arg) {
  rill__metrics_http_t *m = arg;
  struct pollfd pf[RILL__METRICS_MAX_CONNS + 2];
  int who[RILL__METRICS_MAX_CONNS + 2];
  for (;;) {
    uint64_t now = rill_time_mono_ns();
    int n = 0;
    pf[n++] = (struct pollfd){.fd = m->stopfd, .events = POLLIN};
    if (now >= m->accept_paused_until)
      pf[n++] = (struct pollfd){.fd = m->lfd, .events = POLLIN};
    uint64_t next = now + 1000000000ull;
    if (m->accept_paused_until > now && m->accept_paused_until < next)
      next = m->accept_paused_until;
    for (int i = 0; i < RILL__METRICS_MAX_CONNS; i++) {
      mconn_t *c = &m->conn[i];
      if (c->fd < 0)
        continue;
      who[n] = i;
      pf[n++] = (struct pollfd){.fd = c->fd, .events = c->answering ? POLLOUT : POLLIN};
      if (c->deadline_ns < next)
        next = c->deadline_ns;
    }
    int wait_ms = next > now ? (int)((next - now + 999999) / 1000000) : 0;
    int r = poll(pf, (nfds_t)n, wait_ms);
    if (r < 0 && errno != EINTR)
      break;
    if (pf[0].revents)
      break; /* stop */
    now = rill_time_mono_ns();
    for (int k = 1; r > 0 && k < n; k++) {
      if (!pf[k].revents)
        continue;
      if (pf[k].fd == m->lfd) {
        accept_all(m, now);
        continue;
      }
      mconn_t *c = &m->conn[who[k]];
      bool keep = c->answering ? conn_write(c) : conn_read(m, c);
      /* An answer composed just now is tried at once: it usually fits. */
      if (keep && c->answering && !(pf[k].events & POLLOUT))
        keep = conn_write(c);
      if (!keep)
        conn_free(c);
    }
    for (int i = 0; i < RILL__METRICS_MAX_CONNS; i++)
      if (m->conn[i].fd >= 0 && m->conn[i].deadline_ns <= now)
        conn_free(&m->conn[i]); /* too slow to ask, or to take the answer */
  }
  return NULL;
}

int rill__metrics_http_start(rill__metrics_http_t **out, const char *hostport,
                             rill__metrics_render_fn render, void *ctx) {
  if (!out || !render)
    return rill__err(RILL_EINVAL, "metrics: NULL out or render");
  *out = NULL;
  char host[RILL__HOST_MAX + 1];
  uint16_t port;
  struct addrinfo *ai;
  int rc = rill__addr_split(hostport, host, &port, "metrics");
  if (rc || (rc = rill__addr_resolve(host, port, true, "metrics", &ai)))
    return rc;
  rill__metrics_http_t *m = rill__calloc(1, sizeof *m);
  if (!m) {
    freeaddrinfo(ai);
    return rill__err(RILL_ENOMEM, "metrics: no memory");
  }
  m->render = render;
  m->ctx = ctx;
  for (int i = 0; i < RILL__METRICS_MAX_CONNS; i++)
    m->conn[i].fd = -1;
  m->lfd = -1;
  rc = rill__addr_listen(ai, 64, SOCK_NONBLOCK, "metrics", &m->lfd, &m->port);
  freeaddrinfo(ai);
  if (rc)
    goto close_lfd;
  m->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (m->stopfd < 0) {
    rc = rill__err_errno("metrics: eventfd");
    goto close_lfd;
  }
  /* The thread takes no signals (it inherits this mask): they go to the
   * server's threads, whose handlers expect them. */
  sigset_t all, was;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &was);
  rc = pthread_create(&m->thread, NULL, http_main, m);
  pthread_sigmask(SIG_SETMASK, &was, NULL);
  if (rc != 0) {
    rc = rill__err(-rc, "metrics: cannot start its thread");
    goto close_stopfd;
  }
  *out = m;
  return 0;
close_stopfd:
  close(m->stopfd);
close_lfd:
  if (m->lfd >= 0)
    close(m->lfd);
  rill__free(m);
  return rc;
}

uint16_t rill__metrics_http_port(const rill__metrics_http_t *m) { return m->port; }

void rill__metrics_http_stop(rill__metrics_http_t *m) {
  if (!m)
    return;
  uint64_t one = 1;
  while (write(m->stopfd, &one, sizeof one) < 0 && errno == EINTR)
    ;
  pthread_join(m->thread, NULL);
  for (int i = 0; i < RILL__METRICS_MAX_CONNS; i++) {
    conn_free(&m->conn[i]);
    rill__prom_free(&m->conn[i].body);
  }
  close(m->stopfd);
  close(m->lfd);
  rill__free(m);
}
