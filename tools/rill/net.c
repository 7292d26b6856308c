/*
 * rill serve, pub, sub, ask and reply: the server and its simplest clients.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rill/log.h"
#include "rill/net.h"
#include "tools.h"

static int fail(const char *who, const char *what, int rc) {
  fprintf(stderr, "rill %s: %s: %s (%s)\n", who, what, rill_strerror(rc), rill_errmsg());
  return 1;
}

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

/* Set before the stopper is sent its own SIGTERM to end it. Atomic: the
 * stopper reads it from its thread when a real signal came meanwhile. */
static int serve_done;

/* SIGINT and SIGTERM are blocked in every thread (the server's threads
 * inherit the mask) and taken here by sigwait: no handler can run while
 * the server is destroyed, which a handler holding a pointer to it could. */
static void *stop_on_signal(void *arg) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig;
  sigwait(&set, &sig);
  if (!__atomic_load_n(&serve_done, __ATOMIC_ACQUIRE)) /* not the SIGTERM that ends it */
    rill_tool_stop_sig = sig;
  rill_server_stop(arg); /* the server outlives this thread: joined before destroy */
  return NULL;
}

/* The config keys given as flags, kept until the file is loaded, so that
 * they override it wherever --config stands. */
typedef struct {
  char **names;
  const char **values;
  int n;
} serve_flags_t;

static int serve_other(void *ctx, const char *name, const char *value, bool inline_value) {
  serve_flags_t *f = ctx;
  if (!rill_serve_config_is_flag(name))
    return 0;
  if (!value) {
    fprintf(stderr, "rill serve: %s wants a value\n", name);
    return -1;
  }
  if (!(f->names[f->n] = strdup(name))) {
    fprintf(stderr, "rill serve: out of memory\n");
    return -1;
  }
  f->values[f->n++] = value;
  return inline_value ? 1 : 2;
}

static const char serve_usage[] =
    "usage: rill serve [--listen HOST:PORT] [--data DIR] [--token T|--token-file F]\n"
    "                  [--config FILE] [--print-config] [--KEY VALUE...]\n"
    "  the rill server, until SIGINT or SIGTERM. Every key of the config file is also a\n"
    "  flag (--max-conns 100, --max-conns=100); flags override the file, which overrides\n"
    "  the defaults. The token: --token or --token-file (its first line), else the\n"
    "  file's token, else $RILL_TOKEN, else none. --print-config prints the options in\n"
    "  effect as a config file and exits. Logs to stderr: topics made and deleted,\n"
    "  refused and closed connections, disk errors.\n";

int rill_serve_main(int argc, char **argv) {
  rill_server_opts_t o = {.data_dir = "./rill-data"};
  rill_serve_config_t cfg = {0};
  bool print_config = false;
  char listen_host[256]; /* --listen's host: o.host points here */
  const char *listen = NULL, *data = NULL, *config = NULL;
  rill_tool_conn_t conn = {0};
  serve_flags_t flags = {calloc((size_t)argc, sizeof(char *)), calloc((size_t)argc, sizeof(char *)),
                         0};
  char **pos = rill_tool_alloc_args(argc);
  rill_tool_opt_t opts[] = {
      {"--listen", RILL_TOOL_STR, &listen, 0, 0, "HOST:PORT", NULL, 0},
      {"--data", RILL_TOOL_STR, &data, 0, 0, "a directory", NULL, 0},
      {"--token", RILL_TOOL_STR, &conn.token, 0, 0, "a token", NULL, 0},
      {"--token-file", RILL_TOOL_STR, &conn.token_file, 0, 0, "a file", NULL, 0},
      {"--config", RILL_TOOL_STR, &config, 0, 0, "a file", NULL, 0},
      {"--print-config", RILL_TOOL_FLAG, &print_config, 0, 0, NULL, NULL, 0},
      {0},
  };
  int npos = 0, status = -1;
  int parsed = flags.names && flags.values
                   ? rill_tool_parse("serve", opts, serve_other, &flags, argc, argv, pos, &npos)
                   : (fprintf(stderr, "rill serve: out of memory\n"), -1);
  if (parsed > 0) {
    fputs(serve_usage, stdout);
    rill_serve_config_help(stdout);
    status = 0;
  } else if (parsed < 0) {
    fputs(serve_usage, stderr);
    status = 2;
  } else if (npos) {
    fprintf(stderr, "rill serve: unexpected argument %s (rill serve --help)\n", pos[0]);
    status = 2;
  } else if (config && rill_serve_config_load(config, &o, &cfg)) {
    status = 2;
  }
  for (int i = 0; status < 0 && i < flags.n; i++)
    if (rill_serve_config_flag(&o, &cfg, flags.names[i], flags.values[i]))
      status = 2;
  if (status < 0 && listen) {
    const char *why =
        rill_tool_parse_addr(listen, listen_host, sizeof listen_host, &o.host, &o.port);
    if (why) {
      fprintf(stderr, "rill serve: --listen wants HOST:PORT, HOST or :PORT, not '%s': %s\n", listen,
              why);
      status = 2;
    }
    o.any_port = false; /* over a file's port 0 */
  }
  if (status < 0 && data)
    o.data_dir = data;
  if (status < 0 && (conn.token || conn.token_file || !o.token) &&
      rill_tool_token("serve", &conn, &o.token))
    status = 2;
  if (status < 0 && rill_serve_config_check(&o, &cfg))
    status = 2;
  for (int i = 0; i < flags.n; i++)
    free(flags.names[i]);
  free(flags.names);
  free(flags.values);
  free(pos);
  if (status >= 0) {
    rill_tool_conn_free(&conn);
    rill_serve_config_free(&cfg);
    return status;
  }
  if (print_config) {
    rill_serve_config_print(stdout, &o, &cfg);
    rill_serve_config_free(&cfg);
    rill_tool_conn_free(&conn);
    return 0;
  }
  rill_serve_config_apply(&o, &cfg);
  o.log = log_line;
  if (mkdir(o.data_dir, 0755) && errno != EEXIST) {
    fprintf(stderr, "rill serve: mkdir %s: %s\n", o.data_dir, strerror(errno));
    rill_serve_config_free(&cfg);
    rill_tool_conn_free(&conn);
    return 1;
  }
  sigset_t stops;
  sigemptyset(&stops);
  sigaddset(&stops, SIGINT);
  sigaddset(&stops, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stops, NULL); /* before any thread exists */
  rill_server_t *serving;
  int rc = rill_server_create(&serving, &o);
  bool token = o.token != NULL;
  rill_tool_conn_free(&conn); /* the server keeps a copy of the token */
  o.token = NULL;
  if (rc)
    return rill_serve_config_free(&cfg), fail("serve", "start", rc);
  pthread_t stopper;
  if ((rc = pthread_create(&stopper, NULL, stop_on_signal, serving)) != 0) {
    rill_server_destroy(serving);
    rill_serve_config_free(&cfg);
    fprintf(stderr, "rill serve: a thread for signals: %s\n", strerror(rc));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  char addr[300];
  printf("rill serve: listening on %s, topics in %s%s\n",
         rill_tool_fmt_addr(addr, sizeof addr, o.host ? o.host : "127.0.0.1",
                            rill_server_port(serving)),
         o.data_dir, token ? ", token required" : "");
  if (rill_server_metrics_port(serving))
    printf("rill serve: metrics on http://%.*s:%u/metrics\n",
           (int)(strrchr(o.metrics, ':') - o.metrics), o.metrics,
           rill_server_metrics_port(serving));
  fflush(stdout);
  rc = rill_server_run(serving);
  rill_server_stats_t st;
  rill_server_stats(serving, &st);
  __atomic_store_n(&serve_done, 1, __ATOMIC_RELEASE);
  pthread_kill(stopper, SIGTERM); /* still waiting when the server stopped by itself */
  pthread_join(stopper, NULL);
  rill_server_destroy(serving);
  rill_serve_config_free(&cfg);
  printf("rill serve: stopped; %" PRIu64 " connections, %" PRIu64 " published, %" PRIu64
         " delivered\n",
         st.conns_accepted, st.published, st.delivered);
  return rc ? fail("serve", "run", rc) : 0;
}

/* ---- pub and sub ------------------------------------------------------------- */

/* The options of the client commands; each command takes only those it
 * uses (rill_tool_parse refuses any other, naming it). */
enum {
  O_SERVER = 1 << 0, /* --server, --token, --token-file */
  O_ACK = 1 << 1,
  O_JSON = 1 << 2,
  O_FROM = 1 << 3,
  O_TIMEOUT = 1 << 4,
  O_COUNT = 1 << 5,
  O_CREATE = 1 << 6,
  O_RAW = 1 << 7,
};

typedef struct {
  rill_client_opts_t o;
  rill_tool_conn_t conn;
  const char *topic;
  bool ack, json, raw, has_from, has_timeout, create;
  uint64_t from, count, timeout_ms;
  char **rest;
  int nrest;
} cargs_t;

/* --from: earliest, latest or a sequence number. */
static bool parse_from(void *dst, const char *v) {
  uint64_t *from = dst;
  char *end;
  if (!strcmp(v, "earliest"))
    *from = RILL_NET_FROM_EARLIEST;
  else if (!strcmp(v, "latest"))
    *from = RILL_NET_FROM_LATEST;
  else if (*v < '0' || *v > '9' || (errno = 0, *from = strtoull(v, &end, 10), errno || *end))
    return false;
  return true;
}

/* 0, 1 for help, -1 for a bad argument (said on stderr). Options may
 * stand anywhere; after `--` everything is a name or a message, so one
 * may begin with '-'. */
static int cparse(const char *who, unsigned allowed, int argc, char **argv, cargs_t *a) {
  memset(a, 0, sizeof *a);
  a->count = UINT64_MAX;
  a->o.name = who;
  a->rest = rill_tool_alloc_args(argc);
  const rill_tool_optdef_t all[] = {
      {O_SERVER, 0, {"--server", RILL_TOOL_STR, &a->conn.server, 0, 0, "HOST:PORT", NULL, 0}},
      {O_SERVER, 0, {"--token", RILL_TOOL_STR, &a->conn.token, 0, 0, "a token", NULL, 0}},
      {O_SERVER, 0, {"--token-file", RILL_TOOL_STR, &a->conn.token_file, 0, 0, "a file", NULL, 0}},
      {O_ACK, 0, {"--ack", RILL_TOOL_FLAG, &a->ack, 0, 0, NULL, NULL, 0}},
      {O_JSON, 0, {"--json", RILL_TOOL_FLAG, &a->json, 0, 0, NULL, NULL, 0}},
      {O_RAW, 0, {"--raw", RILL_TOOL_FLAG, &a->raw, 0, 0, NULL, NULL, 0}},
      {O_CREATE, 0, {"--create", RILL_TOOL_FLAG, &a->create, 0, 0, NULL, NULL, 0}},
      {O_FROM,
       0,
       {"--from", RILL_TOOL_FN, &a->from, 0, 0, "earliest, latest or a sequence number", parse_from,
        0}},
      {O_TIMEOUT, 0, RILL_TOOL_TIMEOUT(&a->timeout_ms, 1)},
      {O_COUNT, 0, {"--count", RILL_TOOL_U64, &a->count, 0, UINT64_MAX, "a number", NULL, 0}},
  };
  rill_tool_opt_t opts[sizeof all / sizeof all[0] + 1];
  rill_tool_opts_pick(all, sizeof all / sizeof all[0], allowed, opts, NULL);
  int npos, rc = rill_tool_parse(who, opts, NULL, NULL, argc, argv, a->rest, &npos);
  if (rc)
    return rc;
  a->has_from = rill_tool_given(opts, "--from");
  a->has_timeout = rill_tool_given(opts, "--timeout");
  if (a->json && a->raw) {
    fprintf(stderr, "rill %s: --json and --raw: one or the other\n", who);
    return -1;
  }
  if (rill_tool_conn_resolve(who, &a->conn, &a->o))
    return -1;
  if (!npos) {
    fprintf(stderr, "rill %s: %s\n", who,
            strcmp(who, "ask") && strcmp(who, "reply") ? "a topic is needed"
                                                       : "a service is needed");
    return -1;
  }
  a->topic = a->rest[0];
  a->nrest = npos - 1;
  memmove(a->rest, a->rest + 1, (size_t)a->nrest * sizeof *a->rest);
  return 0;
}

/* The exit status of a parse that did not go on: usage on stdout and 0 for
 * --help, on stderr and 2 for a bad argument. */
static int cusage(int parsed, cargs_t *a, const char *usage) {
  free(a->rest);
  rill_tool_conn_free(&a->conn);
  return rill_tool_usage(parsed, usage);
}

static const char pub_usage[] =
    "usage: rill pub [--server HOST:PORT] [--token T|--token-file F] [--ack] [--json]\n"
    "                [--timeout MS] TOPIC [MESSAGE...]\n"
    "  messages from the arguments, or one per line of stdin, sent as they come (the lines\n"
    "  already waiting go together, appended all or none); each group is stored before\n"
    "  more is read, so a failure stops there: it names the line, says how many were\n"
    "  stored before it, and nothing after it was sent (exit 1). Ctrl-C (SIGTERM) sends\n"
    "  the lines read so far, says so and exits 130 (143). --ack prints each record's\n"
    "  sequence number, --json as {\"seq\":N}.\n"
    "  --timeout: how long to wait for the server (default 10000). -- ends the "
    "options.\n" RILL_TOOL_CONN_HELP;

typedef struct {
  rill_client_t *c;
  uint16_t ch;
  bool ack, json;
  const char *noun; /* "line" or "message" */
  uint64_t no;      /* the number of the next record to add, from 1 */
  uint64_t stored;  /* records the server said it stored */
  size_t n, body;   /* the group being put together: recs[0..n), body bytes */
  rill_iov_t recs[RILL_NET_MAX_BATCH];
} pub_t;

/* A stored record's sequence number, for --ack or --json. */
static void pub_print_seq(const pub_t *p, uint64_t seq) {
  if (p->json)
    printf("{\"seq\":%" PRIu64 "}\n", seq);
  else
    printf("%" PRIu64 "\n", seq);
}

/* Whether the server may have stored what it did not answer for. */
static bool answer_lost(int rc) {
  return rc == RILL_ETIMEDOUT || rc == RILL_ECLOSED || rc == RILL_ECONNRESET;
}

/* Says which records failed (why: the reason, or NULL for rc's) and what
 * is stored: 1. */
static int pub_failed(pub_t *p, uint64_t first, uint64_t last, size_t len, int rc,
                      const char *why) {
  char msg[320];
  snprintf(msg, sizeof msg, "%s (%s)", rill_strerror(rc), rill_errmsg());
  if (first == last)
    fprintf(stderr, "rill pub: %s %" PRIu64 " (%zu bytes) was not published: %s\n", p->noun, first,
            len, why ? why : msg);
  else
    fprintf(stderr, "rill pub: %ss %" PRIu64 "-%" PRIu64 " were not published: %s\n", p->noun,
            first, last, why ? why : msg);
  if (answer_lost(rc))
    fprintf(stderr,
            "rill pub: no answer came, so the server may or may not have stored %s %" PRIu64 "%s\n",
            first == last ? "it:" : "them: from", first,
            first == last ? "" : " on, check before resending");
  fprintf(stderr,
          "rill pub: %" PRIu64 " %s%s stored before it; nothing after %s %" PRIu64
          " was sent: resume from %s %" PRIu64 "\n",
          p->stored, p->noun, p->stored == 1 ? " was" : "s were", p->noun, last, p->noun, first);
  return 1;
}

/* Publishes the group with one acknowledged batch (one round trip); a
 * batch is stored whole or not at all, so when the server refuses it its
 * records go again one by one to find the one it refuses. 0, or 1 said. */
static int pub_flush(pub_t *p) {
  size_t n = p->n;
  if (!n)
    return 0;
  p->n = p->body = 0;
  uint64_t first_no = p->no - n, seq;
  int rc = rill_client_publish_batch(p->c, p->ch, p->recs, n, true, &seq);
  if (rc == 0) {
    for (size_t i = 0; p->ack && i < n; i++)
      pub_print_seq(p, seq + i);
    if (p->ack)
      fflush(stdout); /* as they are stored, for a pipe too */
    p->stored += n;
    return 0;
  }
  if (answer_lost(rc) || n == 1)
    return pub_failed(p, first_no, first_no + n - 1, p->recs[0].len, rc, NULL);
  for (size_t i = 0; i < n; i++) {
    if ((rc = rill_client_publish(p->c, p->ch, p->recs[i].data, p->recs[i].len, true, &seq)))
      return pub_failed(p, first_no + i, first_no + i, p->recs[i].len, rc, NULL);
    if (p->ack)
      pub_print_seq(p, seq);
    p->stored++;
  }
  return 0;
}

/* Adds a record to the group (which goes out by pub_flush, or when it is
 * full); one too big for a batch goes alone, after the group (in CHUNKs
 * over max_body). The bytes must stay until pub_flush. 0, or 1 said. */
static int pub_add(pub_t *p, const void *data, size_t len) {
  uint32_t max_body = rill_client_max_body(p->c);
  bool alone = len > max_body - 4;
  if (alone || p->n == RILL_NET_MAX_BATCH || p->body + 4 + len > max_body) {
    int st = pub_flush(p);
    if (st)
      return st;
  }
  uint64_t no = p->no++;
  if (!alone) {
    p->recs[p->n++] = (rill_iov_t){data, (uint32_t)len};
    p->body += 4 + len;
    return 0;
  }
  if (len > UINT32_MAX)
    return pub_failed(p, no, no, len, RILL_EMSGSIZE, "a record is at most 4 GiB - 1 bytes");
  uint64_t seq;
  int rc = rill_client_publish(p->c, p->ch, data, (uint32_t)len, true, &seq);
  if (rc)
    return pub_failed(p, no, no, len, rc, NULL);
  if (p->ack)
    pub_print_seq(p, seq);
  p->stored++;
  return 0;
}

/* Lines of stdin, each group published as soon as it is read: a read
 * takes what is waiting (up to the buffer), its whole lines go out, and
 * only then is more read. SIGINT and SIGTERM are blocked but while
 * waiting for input (ppoll), so a signal never cuts a publish short and
 * is never missed between a check and a wait. 0, or 1 said. */
static int pub_stdin(pub_t *p) {
  sigset_t stops, waiting;
  sigemptyset(&stops);
  sigaddset(&stops, SIGINT);
  sigaddset(&stops, SIGTERM);
  rill_tool_catch_stop();
  sigprocmask(SIG_BLOCK, &stops, &waiting);
  size_t cap = 256u << 10, have = 0;
  char *buf = malloc(cap);
  int status = buf ? 0 : (fprintf(stderr, "rill pub: out of memory\n"), 1);
  bool eof = false;
  while (!status && !eof && !rill_tool_stop_sig) {
    struct pollfd pf = {0, POLLIN, 0};
    if (ppoll(&pf, 1, NULL, &waiting) < 0) {
      if (errno != EINTR)
        status = (fprintf(stderr, "rill pub: poll stdin: %s\n", strerror(errno)), 1);
      continue;
    }
    if (have == cap) { /* a line longer than the buffer: it grows */
      char *nb = cap <= ((size_t)UINT32_MAX + 1) / 2 ? realloc(buf, cap * 2) : NULL;
      if (!nb) {
        status = pub_failed(p, p->no, p->no, have, RILL_ENOMEM,
                            "a line this long does not fit in memory (or passes 4 GiB)");
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t n = read(0, buf + have, cap - have);
    if (n < 0) {
      if (errno != EINTR && errno != EAGAIN)
        status = (fprintf(stderr, "rill pub: read stdin: %s\n", strerror(errno)), 1);
      continue;
    }
    if (n == 0) {
      eof = true;
      break;
    }
    size_t from = have, start = 0;
    have += (size_t)n;
    for (char *nl; !status && (nl = memchr(buf + from, '\n', have - from)) != NULL;) {
      size_t end = (size_t)(nl - buf);
      status = pub_add(p, buf + start, end - start);
      start = from = end + 1;
    }
    if (!status)
      status = pub_flush(p);
    memmove(buf, buf + start, have - start);
    have -= start;
  }
  if (!status && eof && have) /* the last line, without its newline */
    status = pub_add(p, buf, have) ? 1 : pub_flush(p);
  if (!status && rill_tool_stop_sig) {
    fprintf(stderr, "rill pub: %s: the %" PRIu64 " %s%s read were published",
            strsignal(rill_tool_stop_sig), p->stored, p->noun, p->stored == 1 ? "" : "s");
    if (have)
      fprintf(stderr, "; an unfinished line of %zu bytes was not", have);
    fputc('\n', stderr);
    status = 128 + rill_tool_stop_sig;
  }
  free(buf);
  sigprocmask(SIG_SETMASK, &waiting, NULL);
  return status;
}

int rill_pub_main(int argc, char **argv) {
  cargs_t a;
  int parsed = cparse("pub", O_SERVER | O_ACK | O_JSON | O_TIMEOUT, argc, argv, &a);
  if (parsed)
    return cusage(parsed, &a, pub_usage);
  if (a.has_timeout)
    a.o.timeout_ns = a.timeout_ms * 1000000ull;
  rill_client_t *c;
  int rc = rill_client_connect(&c, &a.o);
  rill_tool_conn_free(&a.conn); /* the client keeps a copy of the token */
  if (rc) {
    free(a.rest);
    return fail("pub", "connect", rc);
  }
  pub_t *p = calloc(1, sizeof *p);
  int status = p ? 0 : (fprintf(stderr, "rill pub: out of memory\n"), 1);
  if (!status && (rc = rill_client_bind(c, a.topic, &p->ch)) != 0)
    status = fail("pub", "bind", rc);
  if (!status) {
    p->c = c;
    p->ack = a.ack || a.json;
    p->json = a.json;
    p->no = 1;
    p->noun = a.nrest ? "message" : "line";
    for (int i = 0; !status && i < a.nrest; i++)
      status = pub_add(p, a.rest[i], strlen(a.rest[i]));
    if (!status)
      status = a.nrest ? pub_flush(p) : pub_stdin(p);
  }
  fflush(stdout);
  free(p);
  free(a.rest);
  rill_client_close(c);
  return status;
}

static const char sub_usage[] =
    "usage: rill sub [--server HOST:PORT] [--token T|--token-file F] [--from earliest|latest|SEQ]\n"
    "                [--count N] [--timeout MS] [--json|--raw] [--create] TOPIC\n"
    "  prints each record as it comes, from the latest by default: SEQ PAYLOAD a line,\n"
    "  the payload unaltered when it is text (other bytes as \\xHH); --json: one object\n"
    "  a line, {\"seq\":N,\"len\":N,\"data\":\"...\"}, the payload a JSON string, exact for any\n"
    "  bytes; --raw: each payload's bytes exactly as published, then a newline (one\n"
    "  holding a newline reads as two lines: --json is exact for those).\n"
    "  exits 0 once --count records came, and 1 saying why when it ends before: the\n"
    "  server closed the connection, or (--timeout) no record came for MS.\n"
    "  a topic that does not exist is an error; --create makes it.\n" RILL_TOOL_CONN_HELP;

int rill_sub_main(int argc, char **argv) {
  cargs_t a;
  int parsed = cparse("sub", O_SERVER | O_FROM | O_COUNT | O_JSON | O_RAW | O_TIMEOUT | O_CREATE,
                      argc, argv, &a);
  if (parsed)
    return cusage(parsed, &a, sub_usage);
  free(a.rest);
  rill_client_t *c;
  int rc = rill_client_connect(&c, &a.o);
  rill_tool_conn_free(&a.conn);
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
  uint64_t wait_ns = a.timeout_ms * 1000000ull, idle = 0;
  /* Waits in slices, so that SIGINT or SIGTERM (caught even where the
   * shell had them ignored, as every long-running command does) ends it. */
  const uint64_t slice_ns = 100000000ull;
  rill_tool_catch_stop();
  for (uint64_t n = 0; n < a.count && !rill_tool_stop_sig; n++) {
    rill_client_msg_t m;
    uint64_t slice = a.has_timeout && wait_ns - idle < slice_ns ? wait_ns - idle : slice_ns;
    rc = rill_client_next(c, &m, slice);
    if (rill_tool_stop_sig)
      break;
    if (rc == RILL_ETIMEDOUT && (!a.has_timeout || (idle += slice) < wait_ns)) {
      n--; /* no record yet: wait on */
      continue;
    }
    idle = 0;
    if (rc == RILL_ETIMEDOUT && a.has_timeout) {
      fprintf(stderr,
              "rill sub: no record for %" PRIu64 " ms (--timeout): stopping after %" PRIu64
              " record%s\n",
              a.timeout_ms, n, n == 1 ? "" : "s");
      status = 1;
      break;
    }
    if (rc == RILL_ECLOSED) {
      fprintf(stderr,
              "rill sub: the server ended the subscription after %" PRIu64 " record%s: %s\n", n,
              n == 1 ? "" : "s", rill_errmsg());
      status = 1;
      break;
    }
    if (rc) {
      status = fail("sub", "receive", rc);
      break;
    }
    if (a.json) {
      printf("{\"seq\":%" PRIu64 ",\"len\":%u,\"data\":", m.seq, m.len);
      rill_tool_json_string(stdout, m.data, m.len);
      printf("}\n");
    } else if (a.raw) {
      fwrite(m.data, 1, m.len, stdout);
      putchar('\n');
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
  static const char usage[] =
      "usage: rill ask [--server HOST:PORT] [--token T|--token-file F] [--timeout MS] [--json]\n"
      "                SERVICE [REQUEST]\n"
      "  the request from stdin without REQUEST; prints the reply's bytes as they are\n"
      "  (--json: {\"len\":N,\"data\":\"...\"}). --timeout: the ask's\n"
      "  deadline (default none: as long as the provider takes). -- ends the "
      "options.\n" RILL_TOOL_CONN_HELP;
  cargs_t a;
  int parsed = cparse("ask", O_SERVER | O_TIMEOUT | O_JSON, argc, argv, &a);
  if (parsed || a.nrest > 1)
    return cusage(parsed ? parsed : -1, &a, usage);
  size_t len;
  char *req = a.nrest ? strdup(a.rest[0]) : read_all(stdin, &len);
  if (a.nrest && req)
    len = strlen(req);
  free(a.rest);
  if (!req || len > UINT32_MAX) {
    free(req);
    rill_tool_conn_free(&a.conn);
    return fail("ask", "request", req ? RILL_EMSGSIZE : RILL_ENOMEM);
  }
  rill_client_t *c;
  int rc = rill_client_connect(&c, &a.o);
  rill_tool_conn_free(&a.conn);
  if (rc) {
    free(req);
    return fail("ask", "connect", rc);
  }
  const uint8_t *reply;
  uint32_t rl;
  int status = 0;
  /* Without --timeout no deadline: the provider takes as long as it takes. */
  uint64_t t = a.has_timeout ? a.timeout_ms * 1000000ull : RILL_FOREVER;
  rc = rill_client_ask(c, a.topic, req, (uint32_t)len, t, &reply, &rl);
  if (rc) {
    status = fail("ask", a.topic, rc);
  } else if (a.json) {
    printf("{\"len\":%u,\"data\":", rl);
    rill_tool_json_string(stdout, reply, rl);
    printf("}\n");
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
  static const char usage[] =
      "usage: rill reply [--server HOST:PORT] [--token T|--token-file F] SERVICE\n"
      "  serves SERVICE, answering each ask with its own bytes, until Ctrl-C\n" RILL_TOOL_CONN_HELP;
  cargs_t a;
  int parsed = cparse("reply", O_SERVER, argc, argv, &a);
  if (parsed || a.nrest)
    return cusage(parsed ? parsed : -1, &a, usage);
  free(a.rest);
  a.o.reconnect = true; /* a provider outlives a server restart */
  rill_client_t *c;
  int rc = rill_client_connect(&c, &a.o);
  rill_tool_conn_free(&a.conn);
  if (rc)
    return fail("reply", "connect", rc);
  replier_t r = {c, 0};
  if ((rc = rill_client_serve_cb(c, a.topic, echo_ask, &r, NULL)) != 0) {
    rill_client_close(c);
    return fail("reply", "serve", rc);
  }
  rill_tool_catch_stop();
  printf("rill reply: serving %s\n", a.topic);
  fflush(stdout);
  int status = 0;
  while (!rill_tool_stop_sig && !r.rc) {
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
