/*
 * rill serve, pub, sub, ask and reply: the server and its simplest clients.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "rill/log.h"
#include "rill/net.h"
#include "tools.h"

static int fail(const char *who, const char *what, int rc) {
  fprintf(stderr, "rill %s: %s: %s (%s)\n", who, what, rill_strerror(rc), rill_errmsg());
  return 1;
}

/* "HOST:PORT", "HOST" or ":PORT" into host (static storage) and port. */
static bool parse_addr(const char *s, const char **host, uint16_t *port) {
  static char h[64];
  const char *colon = strrchr(s, ':');
  size_t hl = colon ? (size_t)(colon - s) : strlen(s);
  if (hl >= sizeof h)
    return false;
  memcpy(h, s, hl);
  h[hl] = 0;
  if (hl)
    *host = h;
  if (colon) {
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535)
      return false;
    *port = (uint16_t)p;
  }
  return true;
}

/* ---- serve ----------------------------------------------------------------- */

static rill_server_t *serving;

/* The server's log lines on stderr, each with its UTC time. */
static void log_line(void *ctx, rill_server_log_level_t level, const char *msg) {
  (void)ctx;
  static const char *const names[] = {"error", "warn", "info"};
  struct timespec ts;
  struct tm tm;
  char when[32];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "%s.%03ldZ rill serve: %s: %s\n", when, ts.tv_nsec / 1000000,
          (unsigned)level < 3 ? names[level] : "?", msg);
}

static void on_stop(int sig) {
  (void)sig;
  if (serving)
    rill_server_stop(serving); /* one write to an eventfd: signal-safe */
}

int rill_serve_main(int argc, char **argv) {
  rill_server_opts_t o = {.data_dir = "./rill-data"};
  rill_serve_config_t cfg = {0};
  bool print_config = false;
  /* The file first, wherever --config stands, so that every flag overrides it. */
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--config") && rill_serve_config_load(argv[++i], &o, &cfg))
      return rill_serve_config_free(&cfg), 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int used;
    if (!strcmp(a, "--listen") && i + 1 < argc) {
      if (!parse_addr(argv[++i], &o.host, &o.port))
        return rill_tool_bad("--listen wants HOST:PORT"), 2;
      o.any_port = false; /* over a file's port 0 */
    } else if (!strcmp(a, "--data") && i + 1 < argc) {
      o.data_dir = argv[++i];
    } else if (!strcmp(a, "--token") && i + 1 < argc) {
      o.token = argv[++i];
    } else if (!strcmp(a, "--config") && i + 1 < argc) {
      i++; /* loaded above */
    } else if (!strcmp(a, "--print-config")) {
      print_config = true;
    } else if ((used = rill_serve_config_flag(&o, &cfg, argc - i, argv + i)) != 0) {
      if (used < 0)
        return rill_serve_config_free(&cfg), 2;
      i += used - 1; /* --sync, --metrics, --loops, ...: any config key as --key VALUE */
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      printf("usage: rill serve [--listen HOST:PORT] [--data DIR] [--token TOKEN] "
             "[--sync never|group|every:N|interval:MS]\n"
             "                  [--metrics HOST:PORT] [--loops N] [--config FILE] "
             "[--print-config]\n"
             "  defaults: --listen 127.0.0.1:%u --data ./rill-data, no token, --sync never\n"
             "  every key of the config file is also a flag (--max-conns 100); flags override "
             "the file\n"
             "  per topic: topic.NAME.KEY or topic.PREFIX*.KEY for segment_bytes, retain_bytes,\n"
             "  retain_count, retain_age (--topic.logs-*.retain-age 7d; none: no limit)\n"
             "  logs to stderr: topics made and deleted, refused and closed connections, disk "
             "errors\n",
             RILL_NET_PORT);
      return 0;
    } else {
      fprintf(stderr, "rill serve: unknown argument %s (rill serve --help)\n", a);
      return 2;
    }
  }
  if (print_config) {
    rill_serve_config_print(stdout, &o, &cfg);
    rill_serve_config_free(&cfg);
    return 0;
  }
  rill_serve_config_apply(&o, &cfg);
  o.log = log_line;
  if (mkdir(o.data_dir, 0755) && errno != EEXIST) {
    fprintf(stderr, "rill serve: mkdir %s: %s\n", o.data_dir, strerror(errno));
    return 1;
  }
  int rc = rill_server_create(&serving, &o);
  if (rc)
    return fail("serve", "start", rc);
  struct sigaction sa = {.sa_handler = on_stop};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  printf("rill serve: listening on %s:%u, topics in %s%s\n", o.host ? o.host : "127.0.0.1",
         rill_server_port(serving), o.data_dir, o.token ? ", token required" : "");
  if (rill_server_metrics_port(serving))
    printf("rill serve: metrics on http://%.*s:%u/metrics\n",
           (int)(strrchr(o.metrics, ':') - o.metrics), o.metrics,
           rill_server_metrics_port(serving));
  fflush(stdout);
  rc = rill_server_run(serving);
  rill_server_stats_t st;
  rill_server_stats(serving, &st);
  rill_server_destroy(serving);
  serving = NULL;
  rill_serve_config_free(&cfg);
  printf("rill serve: stopped; %" PRIu64 " connections, %" PRIu64 " published, %" PRIu64
         " delivered\n",
         st.conns_accepted, st.published, st.delivered);
  return rc ? fail("serve", "run", rc) : 0;
}

/* ---- pub and sub ------------------------------------------------------------- */

typedef struct {
  rill_client_opts_t o;
  const char *topic;
  bool ack, json, has_from, create;
  uint64_t from, count, timeout_ms;
  char **rest;
  int nrest;
} cargs_t;

static int cparse(const char *who, int argc, char **argv, cargs_t *a) {
  memset(a, 0, sizeof *a);
  a->count = UINT64_MAX;
  a->o.name = who;
  a->rest = rill_tool_alloc_args(argc);
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (!strcmp(s, "--server") && i + 1 < argc) {
      if (!parse_addr(argv[++i], &a->o.host, &a->o.port))
        return rill_tool_bad("--server wants HOST:PORT");
    } else if (!strcmp(s, "--token") && i + 1 < argc) {
      a->o.token = argv[++i];
    } else if (!strcmp(s, "--ack")) {
      a->ack = true;
    } else if (!strcmp(s, "--json")) {
      a->json = true;
    } else if (!strcmp(s, "--create") && !strcmp(who, "sub")) {
      a->create = true;
    } else if (!strcmp(s, "--from") && i + 1 < argc) {
      const char *f = argv[++i];
      char *end;
      a->has_from = true;
      if (!strcmp(f, "earliest"))
        a->from = RILL_NET_FROM_EARLIEST;
      else if (!strcmp(f, "latest"))
        a->from = RILL_NET_FROM_LATEST;
      else if ((a->from = strtoull(f, &end, 10), *end || f[0] == '-'))
        return rill_tool_bad("--from wants earliest, latest or a sequence number");
    } else if (!strcmp(s, "--timeout") && i + 1 < argc) {
      char *end;
      a->timeout_ms = strtoull(argv[++i], &end, 10);
      if (*end)
        return rill_tool_bad("--timeout wants milliseconds");
    } else if (!strcmp(s, "--count") && i + 1 < argc) {
      char *end;
      a->count = strtoull(argv[++i], &end, 10);
      if (*end)
        return rill_tool_bad("--count wants a number");
    } else if (s[0] == '-' && s[1] == '-') {
      fprintf(stderr, "rill %s: unknown option %s\n", who, s);
      return -1;
    } else if (!a->topic) {
      a->topic = s;
    } else {
      a->rest[a->nrest++] = argv[i];
    }
  }
  if (!a->topic)
    return rill_tool_bad(strcmp(who, "ask") && strcmp(who, "reply") ? "a topic is needed"
                                                                    : "a service is needed");
  return 0;
}

int rill_pub_main(int argc, char **argv) {
  cargs_t a;
  if (cparse("pub", argc, argv, &a) != 0) {
    fprintf(stderr, "usage: rill pub [--server HOST:PORT] [--token T] [--ack] TOPIC [MESSAGE...]\n"
                    "  messages from the arguments, or one per line of stdin\n");
    free(a.rest);
    return 2;
  }
  rill_client_t *c;
  int rc = rill_client_connect(&c, &a.o);
  if (rc) {
    free(a.rest);
    return fail("pub", "connect", rc);
  }
  uint16_t ch;
  int status = 0;
  if ((rc = rill_client_bind(c, a.topic, &ch)) != 0)
    status = fail("pub", "bind", rc);
  rill_tool_records_t in = {.args = a.rest, .nargs = a.nrest};
  const char *msg;
  size_t len;
  while (!status && rill_tool_next_record(&in, &msg, &len)) {
    uint64_t seq;
    if (len > UINT32_MAX)
      status = fail("pub", "publish", RILL_EMSGSIZE);
    else if ((rc = rill_client_publish(c, ch, msg, (uint32_t)len, a.ack, &seq)) != 0)
      status = fail("pub", "publish", rc);
    else if (a.ack)
      printf("%" PRIu64 "\n", seq);
  }
  /* Unacknowledged publishes: a ping makes sure they arrived (and brings
   * back the error of any that did not). */
  if (!status && (rc = rill_client_ping(c, NULL)) != 0)
    status = fail("pub", "publish", rc);
  rill_tool_records_free(&in);
  free(a.rest);
  rill_client_close(c);
  return status;
}

int rill_sub_main(int argc, char **argv) {
  cargs_t a;
  if (cparse("sub", argc, argv, &a) != 0) {
    fprintf(stderr, "usage: rill sub [--server HOST:PORT] [--token T] [--from earliest|latest|SEQ] "
                    "[--count N] [--json] [--create] TOPIC\n"
                    "  --create: make the topic when it does not exist (without: an error)\n");
    free(a.rest);
    return 2;
  }
  free(a.rest);
  rill_client_t *c;
  int rc = rill_client_connect(&c, &a.o);
  if (rc)
    return fail("sub", "connect", rc);
  /* Credits in windows: a new half-window each time half was used, so the
   * server never holds more for us than the window. */
  const uint32_t window = 1024;
  uint16_t s;
  if ((rc = rill_client_subscribe_ex(c, a.topic, a.has_from ? a.from : RILL_NET_FROM_LATEST, window,
                                     a.create ? RILL_CLIENT_SUB_CREATE : 0, &s, NULL)) != 0) {
    rill_client_close(c);
    return fail("sub", "subscribe", rc);
  }
  signal(SIGPIPE, SIG_DFL);
  uint32_t used = 0;
  int status = 0;
  for (uint64_t n = 0; n < a.count; n++) {
    rill_client_msg_t m;
    rc = rill_client_next(c, &m, UINT64_MAX / 2);
    if (rc) {
      status = rc == RILL_ECLOSED ? 0 : fail("sub", "receive", rc);
      break;
    }
    if (a.json) {
      printf("{\"seq\":%" PRIu64 ",\"len\":%u,\"data\":", m.seq, m.len);
      rill_tool_json_string(stdout, m.data, m.len);
      printf("}\n");
    } else {
      printf("%" PRIu64 " ", m.seq);
      rill_tool_text(stdout, m.data, m.len);
      putchar('\n');
    }
    fflush(stdout);
    if (++used == window / 2) {
      rill_client_credit(c, s, used);
      used = 0;
    }
  }
  rill_client_close(c);
  return status;
}

/* ---- ask and reply ------------------------------------------------------------ */

/* The whole of stdin, for an ask without a request argument. */
static char *read_all(FILE *f, size_t *len) {
  size_t cap = 4096, n = 0;
  char *b = malloc(cap);
  while (b) {
    n += fread(b + n, 1, cap - n, f);
    if (n < cap)
      break;
    char *nb = realloc(b, cap *= 2);
    if (!nb)
      free(b);
    b = nb;
  }
  *len = n;
  return b;
}

int rill_ask_main(int argc, char **argv) {
  cargs_t a;
  if (cparse("ask", argc, argv, &a) != 0 || a.nrest > 1) {
    fprintf(stderr, "usage: rill ask [--server HOST:PORT] [--token T] [--timeout MS] SERVICE "
                    "[REQUEST]\n"
                    "  the request from stdin without REQUEST; prints the reply\n");
    free(a.rest);
    return 2;
  }
  size_t len;
  char *req = a.nrest ? strdup(a.rest[0]) : read_all(stdin, &len);
  if (a.nrest && req)
    len = strlen(req);
  free(a.rest);
  if (!req || len > UINT32_MAX) {
    free(req);
    return fail("ask", "request", req ? RILL_EMSGSIZE : RILL_ENOMEM);
  }
  rill_client_t *c;
  int rc = rill_client_connect(&c, &a.o);
  if (rc) {
    free(req);
    return fail("ask", "connect", rc);
  }
  const uint8_t *reply;
  uint32_t rl;
  int status = 0;
  rc = rill_client_ask(c, a.topic, req, (uint32_t)len, a.timeout_ms * 1000000ull, &reply, &rl);
  if (rc) {
    status = fail("ask", a.topic, rc);
  } else {
    /* The reply's bytes as they are, and a newline unless it ends with one. */
    fwrite(reply, 1, rl, stdout);
    if (!rl || reply[rl - 1] != '\n')
      putchar('\n');
  }
  free(req);
  rill_client_close(c);
  return status;
}

static volatile sig_atomic_t replying = 1;

static void on_reply_stop(int sig) {
  (void)sig;
  replying = 0;
}

typedef struct {
  rill_client_t *c;
  int rc;
} replier_t;

static void echo_ask(void *ctx, const rill_client_ask_t *q) {
  replier_t *r = ctx;
  int rc = rill_client_reply(r->c, q->id, q->data, q->len);
  if (rc && !r->rc)
    r->rc = rc;
}

int rill_reply_main(int argc, char **argv) {
  cargs_t a;
  if (cparse("reply", argc, argv, &a) != 0 || a.nrest) {
    fprintf(stderr, "usage: rill reply [--server HOST:PORT] [--token T] SERVICE\n"
                    "  serves SERVICE, answering each ask with its own bytes, until Ctrl-C\n");
    free(a.rest);
    return 2;
  }
  free(a.rest);
  a.o.reconnect = true; /* a provider outlives a server restart */
  rill_client_t *c;
  int rc = rill_client_connect(&c, &a.o);
  if (rc)
    return fail("reply", "connect", rc);
  replier_t r = {c, 0};
  if ((rc = rill_client_serve_cb(c, a.topic, echo_ask, &r, NULL)) != 0) {
    rill_client_close(c);
    return fail("reply", "serve", rc);
  }
  struct sigaction sa = {.sa_handler = on_reply_stop};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  printf("rill reply: serving %s\n", a.topic);
  fflush(stdout);
  int status = 0;
  while (replying && !r.rc) {
    if ((rc = rill_client_poll(c, 100000000ull)) < 0) {
      status = fail("reply", "poll", rc);
      break;
    }
  }
  if (r.rc)
    status = fail("reply", "reply", r.rc);
  rill_client_close(c);
  return status;
}
