/*
 * rill serve --config FILE: `key = value` lines into rill_server_opts_t
 * (tools.h). The same setter takes the command line's `--key value`
 * flags, so a file and flags accept exactly the same values, and flags
 * applied after the file override it.
 *
 * Syntax: blank lines; `#` comments, on a line of their own or after a
 * value (a `#` preceded by white space); a value may be double-quoted
 * (with \" and \\) to hold white space or `#`. A key given twice, an
 * unknown key or a bad value is an error naming the file, line and key.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rill/net.h"
#include "tools.h"

/* The defaults rill_server_create and rill_log apply to a 0, repeated
 * here so that --print-config shows what the server will really use. */
#define DEF_MAX_CONNS     1024u
#define DEF_HANDSHAKE_NS  UINT64_C(5000000000)
#define DEF_IDLE_NS       UINT64_C(300000000000)
#define DEF_CREDITS       65536u
#define DEF_TX_LIMIT      ((uint64_t)64 << 20)
#define DEF_MAX_MESSAGE   ((uint64_t)64 << 20)
#define DEF_SYNC_EVERY    1000u
#define DEF_SYNC_INTERVAL UINT64_C(10000000)
#define DEF_MAX_TOPICS    4096u
#define DEF_ASKS_PER_CONN 4096u
#define DEF_ASKS          65536u
#define DEF_SERVES_PER    1024u
#define DEF_SERVES        65536u
#define DEF_BINDS_PER     4096u
#define DEF_BINDS         262144u
#define DEF_SUBS_PER      4096u
#define DEF_SUBS          262144u
#define DEF_SEGMENT_BYTES ((uint64_t)128 << 20)
#define DEF_LOG_RATE      10u
#define DEF_MAX_DISK      ((uint64_t)64 << 30)
#define MAX_AGE_NS        (36500ull * 86400 * 1000000000) /* as the server takes */
#define MAX_LOOPS         64u                             /* as the server takes */
/* What a segment holds beyond a record's payload: its header and the
 * record's (src/log/format.h), so max_message <= segment_bytes - this. */
#define SEG_OVERHEAD 96u

enum {
  K_LISTEN,
  K_DATA,
  K_TOKEN,
  K_MAX_CONNS,
  K_MAX_BODY,
  K_MAX_MESSAGE,
  K_TX_LIMIT,
  K_SYNC,
  K_HANDSHAKE,
  K_IDLE,
  K_CREDITS,
  K_LOOPS,
  K_METRICS,
  K_MAX_TOPICS,
  K_MAX_ASKS_PER_CONN,
  K_MAX_ASKS,
  K_MAX_SERVES_PER_CONN,
  K_MAX_SERVES,
  K_MAX_BINDS_PER_CONN,
  K_MAX_BINDS,
  K_MAX_SUBS_PER_CONN,
  K_MAX_SUBS,
  K_SEGMENT_BYTES,
  K_RETAIN_BYTES,
  K_RETAIN_COUNT,
  K_RETAIN_AGE,
  K_LOG_RATE,
  K_MAX_DISK,
  K_COUNT
};

/* Every key: its name, what it takes (the value's form and range, as
 * set_key checks it) and what it is for. rill serve --help lists them
 * from here, with the defaults rill_serve_config_print shows, so the
 * help cannot drift from what is read. */
static const struct {
  const char *name, *takes, *what;
} keys[K_COUNT] = {
    [K_LISTEN] = {"listen", "HOST:PORT or [V6]:PORT (port 0: any)", "where clients connect"},
    [K_DATA] = {"data", "DIR", "the topics' logs, one directory each"},
    [K_TOKEN] = {"token", "1 to 256 bytes", "what every client must present"},
    [K_MAX_CONNS] = {"max_conns", "count from 1", "connections open at once"},
    [K_MAX_BODY] = {"max_body", "bytes, 4K to 64M, at most max_message",
                    "the largest frame body; a bigger message streams in chunks"},
    [K_MAX_MESSAGE] = {"max_message", "bytes, max_body to 4G-1, at most segment_bytes - 96",
                       "the largest message, ask or reply"},
    [K_TX_LIMIT] = {"tx_limit", "bytes, at least 4 x (max_body + 24)",
                    "what may wait to be sent to one connection before it is closed"},
    [K_SYNC] = {"sync", "never, group, every:N or interval:MS",
                "when appended records reach the disk (fdatasync)"},
    [K_HANDSHAKE] = {"handshake_timeout", "time, ms, s or m, 1ms to 24h",
                     "how long a new connection has to say hello"},
    [K_IDLE] = {"idle_timeout", "time, ms, s or m, 1ms to 24h",
                "how long a silent connection is kept"},
    [K_CREDITS] = {"sub_credits_max", "count from 1", "the most a subscriber may ask ahead"},
    [K_LOOPS] = {"loops", "count, 1 to 64", "event-loop threads (default: one a CPU, at most 64)"},
    [K_METRICS] = {"metrics", "HOST:PORT, [V6]:PORT or off", "where Prometheus scrapes /metrics"},
    [K_MAX_TOPICS] = {"max_topics", "count from 1", "topics the server holds"},
    [K_MAX_ASKS_PER_CONN] = {"max_asks_per_conn", "count from 1", "asks in flight per connection"},
    [K_MAX_ASKS] = {"max_asks", "count from 1", "asks in flight in all"},
    [K_MAX_SERVES_PER_CONN] = {"max_serves_per_conn", "count from 1",
                               "services one connection provides"},
    [K_MAX_SERVES] = {"max_serves", "count from 1", "service registrations in all"},
    [K_MAX_BINDS_PER_CONN] = {"max_binds_per_conn", "count from 1",
                              "topics one connection binds to publish"},
    [K_MAX_BINDS] = {"max_binds", "count from 1", "binds in all"},
    [K_MAX_SUBS_PER_CONN] = {"max_subs_per_conn", "count from 1", "subscriptions per connection"},
    [K_MAX_SUBS] = {"max_subs", "count from 1", "subscriptions in all"},
    [K_SEGMENT_BYTES] = {"segment_bytes", "bytes, 64K to 2G, a multiple of 4K",
                         "a topic's segment files (per topic: topic.MATCH.segment_bytes)"},
    [K_RETAIN_BYTES] = {"retain_bytes", "bytes (0: no limit)",
                        "a topic's records kept, by size (per topic too)"},
    [K_RETAIN_COUNT] = {"retain_count", "count (0: no limit)",
                        "a topic's records kept, by number (per topic too)"},
    [K_RETAIN_AGE] = {"retain_age", "time, ms, s, m, h or d, to 36500d (0: no limit)",
                      "a topic's records kept, by age (per topic too)"},
    [K_LOG_RATE] = {"log_rate", "count from 1", "log lines a second per kind, at most"},
    [K_MAX_DISK] = {"max_disk", "bytes from 1M, or unlimited",
                    "what all topics' files may take on disk"},
};

/* A key by name; '-' matches '_' so that flags read --max-conns. */
static int key_find(const char *name) {
  for (int k = 0; k < K_COUNT; k++) {
    const char *a = keys[k].name, *b = name;
    while (*a && (*a == *b || (*a == '_' && *b == '-')))
      a++, b++;
    if (!*a && !*b)
      return k;
  }
  return -1;
}

/* A decimal without sign, then nothing or one of the suffixes, each with
 * its multiplier; false for anything else, or more than max. */
typedef struct {
  const char *suffix;
  uint64_t mult;
} unit_t;

static bool parse_units(const char *s, const unit_t *units, uint64_t min, uint64_t max,
                        uint64_t *out) {
  if (!isdigit((unsigned char)*s))
    return false;
  errno = 0;
  char *end;
  uint64_t v = strtoull(s, &end, 10);
  if (errno)
    return false;
  for (const unit_t *u = units; u->suffix; u++) {
    if (strcmp(end, u->suffix))
      continue;
    if (v > max / u->mult)
      return false;
    v *= u->mult;
    if (v < min || v > max)
      return false;
    *out = v;
    return true;
  }
  return false;
}

static const unit_t count_units[] = {{"", 1}, {NULL, 0}};
static const unit_t size_units[] = {
    {"", 1},           {"K", 1u << 10},     {"k", 1u << 10},   {"KiB", 1u << 10},
    {"M", 1u << 20},   {"m", 1u << 20},     {"MiB", 1u << 20}, {"G", 1ull << 30},
    {"g", 1ull << 30}, {"GiB", 1ull << 30}, {NULL, 0}};
static const unit_t time_units[] = {
    {"ms", 1000000ull}, {"s", 1000000000ull}, {"m", 60000000000ull}, {NULL, 0}};
static const unit_t age_units[] = {{"ms", 1000000ull},       {"s", 1000000000ull},
                                   {"m", 60000000000ull},    {"h", 3600000000000ull},
                                   {"d", 86400000000000ull}, {NULL, 0}};

/* HOST:PORT or [V6]:PORT, port 0 allowed (any): the host as written
 * (without brackets), resolved by librill at listen, never here, so that
 * reading a config does no lookups. */
static bool parse_hostport(const char *s, char *host, size_t cap, uint16_t *port) {
  const char *colon = strrchr(s, ':'), *h = s;
  size_t hl;
  if (!colon)
    return false;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (!close || close + 1 != colon)
      return false;
    h = s + 1;
    hl = (size_t)(close - h);
  } else {
    if (memchr(s, ':', (size_t)(colon - s)))
      return false; /* a bare IPv6 address wants its brackets before :PORT */
    hl = (size_t)(colon - s);
  }
  if (!hl || hl >= cap)
    return false;
  memcpy(host, h, hl);
  host[hl] = 0;
  for (size_t i = 0; i < hl; i++)
    if ((unsigned char)host[i] <= ' ' || host[i] == '[' || host[i] == ']')
      return false;
  uint64_t p;
  if (!parse_units(colon + 1, count_units, 0, 65535, &p))
    return false;
  *port = (uint16_t)p;
  return true;
}

/* Replaces *slot with a copy of v. */
static int keep(char **slot, const char *v, char *why, size_t cap) {
  char *c = strdup(v);
  if (!c) {
    snprintf(why, cap, "out of memory");
    return RILL_ENOMEM;
  }
  free(*slot);
  *slot = c;
  return 0;
}

#define BAD(...) (snprintf(why, cap, __VA_ARGS__), RILL_EINVAL)

/* Sets key k from v; on error, why says what a good value looks like. */
static int set_key(rill_server_opts_t *o, rill_serve_config_t *cfg, int k, const char *v, char *why,
                   size_t cap) {
  uint64_t n;
  char host[256];
  uint16_t port;
  switch (k) {
  case K_LISTEN:
    if (!parse_hostport(v, host, sizeof host, &port))
      return BAD("wants HOST:PORT or [V6]:PORT (port 0 for any), not '%s'", v);
    if (keep(&cfg->host, host, why, cap))
      return RILL_ENOMEM;
    o->host = cfg->host;
    o->port = port;
    o->any_port = port == 0;
    return 0;
  case K_DATA:
    if (!*v)
      return BAD("wants a directory");
    if (keep(&cfg->data_dir, v, why, cap))
      return RILL_ENOMEM;
    o->data_dir = cfg->data_dir;
    return 0;
  case K_TOKEN:
    if (!*v || strlen(v) > RILL_NET_MAX_TOKEN)
      return BAD("wants 1 to %u bytes", RILL_NET_MAX_TOKEN);
    if (keep(&cfg->token, v, why, cap))
      return RILL_ENOMEM;
    o->token = cfg->token;
    return 0;
  case K_MAX_CONNS:
    if (!parse_units(v, count_units, 1, UINT32_MAX, &n))
      return BAD("wants a count from 1, not '%s'", v);
    o->max_conns = (uint32_t)n;
    return 0;
  case K_MAX_BODY:
    if (!parse_units(v, size_units, 4096, RILL_NET_MAX_BODY, &n))
      return BAD("wants bytes from 4K to 64M (K, M, G suffixes), not '%s'", v);
    o->max_body = (uint32_t)n;
    return 0;
  case K_MAX_MESSAGE:
    if (!parse_units(v, size_units, 4096, UINT32_MAX, &n))
      return BAD("wants bytes from 4K to 4G-1 (K, M, G suffixes), not '%s'", v);
    o->max_message = n;
    return 0;
  case K_TX_LIMIT:
    if (!parse_units(v, size_units, 65536, SIZE_MAX / 2, &n))
      return BAD("wants bytes from 64K (K, M, G suffixes), not '%s'", v);
    o->tx_limit = (size_t)n;
    return 0;
  case K_SYNC:
    if (!strcmp(v, "never")) {
      o->sync = RILL_SERVER_SYNC_NEVER;
    } else if (!strcmp(v, "group")) {
      o->sync = RILL_SERVER_SYNC_GROUP;
    } else if (!strncmp(v, "every:", 6) && parse_units(v + 6, count_units, 1, UINT32_MAX, &n)) {
      o->sync = RILL_SERVER_SYNC_EVERY_N;
      cfg->sync_every = n;
    } else if (!strncmp(v, "interval:", 9) && parse_units(v + 9, count_units, 1, 3600000, &n)) {
      o->sync = RILL_SERVER_SYNC_INTERVAL;
      cfg->sync_interval_ns = n * 1000000ull;
    } else {
      return BAD("wants never, group, every:N (records) or interval:MS, not '%s'", v);
    }
    return 0;
  case K_HANDSHAKE:
  case K_IDLE:
    if (!parse_units(v, time_units, 1000000ull, 24 * 3600 * 1000000000ull, &n))
      return BAD("wants a time with a unit, ms, s or m (1ms to 24 hours), not '%s'", v);
    *(k == K_HANDSHAKE ? &o->handshake_timeout_ns : &o->idle_timeout_ns) = n;
    return 0;
  case K_CREDITS:
    if (!parse_units(v, count_units, 1, UINT32_MAX, &n))
      return BAD("wants a count from 1, not '%s'", v);
    o->sub_credits_max = (uint32_t)n;
    return 0;
  case K_MAX_TOPICS:
  case K_MAX_ASKS_PER_CONN:
  case K_MAX_ASKS:
  case K_MAX_SERVES_PER_CONN:
  case K_MAX_SERVES:
  case K_MAX_BINDS_PER_CONN:
  case K_MAX_BINDS:
  case K_MAX_SUBS_PER_CONN:
  case K_MAX_SUBS:
    if (!parse_units(v, count_units, 1, UINT32_MAX, &n))
      return BAD("wants a count from 1, not '%s'", v);
    *(k == K_MAX_TOPICS            ? &o->max_topics
      : k == K_MAX_ASKS_PER_CONN   ? &o->max_asks_per_conn
      : k == K_MAX_ASKS            ? &o->max_asks
      : k == K_MAX_SERVES_PER_CONN ? &o->max_serves_per_conn
      : k == K_MAX_SERVES          ? &o->max_serves
      : k == K_MAX_BINDS_PER_CONN  ? &o->max_binds_per_conn
      : k == K_MAX_BINDS           ? &o->max_binds
      : k == K_MAX_SUBS_PER_CONN   ? &o->max_subs_per_conn
                                   : &o->max_subs) = (uint32_t)n;
    return 0;
  case K_SEGMENT_BYTES:
    if (!parse_units(v, size_units, 65536, 2ull << 30, &n) || n % 4096)
      return BAD("wants bytes from 64K to 2G, a multiple of 4K (K, M, G suffixes), not '%s'", v);
    o->segment_bytes = n;
    return 0;
  case K_RETAIN_BYTES:
    if (!parse_units(v, size_units, 0, UINT64_MAX, &n))
      return BAD("wants bytes (K, M, G suffixes; 0: no limit), not '%s'", v);
    o->retain_bytes = n;
    return 0;
  case K_RETAIN_COUNT:
    if (!parse_units(v, count_units, 0, UINT64_MAX, &n))
      return BAD("wants a count of records (0: no limit), not '%s'", v);
    o->retain_count = n;
    return 0;
  case K_RETAIN_AGE:
    if (!strcmp(v, "0")) {
      o->retain_age_ns = 0;
      return 0;
    }
    if (!parse_units(v, age_units, 1000000ull, MAX_AGE_NS, &n))
      return BAD("wants a time with a unit, ms, s, m, h or d, up to 36500d (0: no limit), not '%s'",
                 v);
    o->retain_age_ns = n;
    return 0;
  case K_MAX_DISK:
    if (!strcmp(v, "unlimited")) {
      o->max_disk = RILL_SERVER_DISK_UNLIMITED;
      return 0;
    }
    if (!parse_units(v, size_units, 1u << 20, UINT64_MAX - 1, &n))
      return BAD("wants bytes from 1M (K, M, G suffixes), or unlimited, not '%s'", v);
    o->max_disk = n;
    return 0;
  case K_LOG_RATE:
    if (!parse_units(v, count_units, 1, UINT32_MAX, &n))
      return BAD("wants a count of lines a second from 1, not '%s'", v);
    o->log_rate = (uint32_t)n;
    return 0;
  case K_LOOPS:
    if (!parse_units(v, count_units, 1, MAX_LOOPS, &n))
      return BAD("wants a count from 1 to %u, not '%s'", MAX_LOOPS, v);
    o->loops = (uint32_t)n;
    return 0;
  case K_METRICS:
    if (!strcmp(v, "off")) {
      o->metrics = NULL;
      return 0;
    }
    if (!parse_hostport(v, host, sizeof host, &port))
      return BAD("wants HOST:PORT or [V6]:PORT (port 0 for any) or off, not '%s'", v);
    if (keep(&cfg->metrics, v, why, cap))
      return RILL_ENOMEM;
    o->metrics = cfg->metrics;
    return 0;
  }
  return BAD("unknown key");
}

/* ---- topic.MATCH.KEY: options per topic ---------------------------------------- */

enum { T_SEGMENT_BYTES, T_RETAIN_BYTES, T_RETAIN_COUNT, T_RETAIN_AGE, T_COUNT };
static const char *const topic_keys[T_COUNT] = {"segment_bytes", "retain_bytes", "retain_count",
                                                "retain_age"};

static uint64_t *topic_field(rill_server_topic_opts_t *e, int f) {
  return f == T_SEGMENT_BYTES  ? &e->segment_bytes
         : f == T_RETAIN_BYTES ? &e->retain_bytes
         : f == T_RETAIN_COUNT ? &e->retain_count
                               : &e->retain_age_ns;
}

/* Splits "topic.MATCH.KEY" (KEY with '-' or '_') into match (into m, cap
 * bytes) and the key's index: -1 when key is not of that form. */
static int topic_key_find(const char *key, char *m, size_t cap) {
  if (strncmp(key, "topic.", 6))
    return -1;
  const char *dot = strrchr(key + 6, '.');
  if (!dot || dot == key + 6 || (size_t)(dot - key - 6) >= cap)
    return -1;
  for (int f = 0; f < T_COUNT; f++) {
    const char *a = topic_keys[f], *b = dot + 1;
    while (*a && (*a == *b || (*a == '_' && *b == '-')))
      a++, b++;
    if (!*a && !*b) {
      memcpy(m, key + 6, (size_t)(dot - key - 6));
      m[dot - key - 6] = 0;
      return f;
    }
  }
  return -1;
}

/* The entry for match, added at the end when new; NULL without memory. */
static rill_server_topic_opts_t *topic_entry(rill_serve_config_t *cfg, const char *match) {
  for (uint32_t i = 0; i < cfg->ntopics; i++)
    if (!strcmp(cfg->topics[i].match, match))
      return &cfg->topics[i];
  rill_server_topic_opts_t *n = realloc(cfg->topics, (cfg->ntopics + 1) * sizeof *n);
  if (!n)
    return NULL;
  cfg->topics = n;
  char *m = strdup(match);
  if (!m)
    return NULL;
  n[cfg->ntopics] = (rill_server_topic_opts_t){.match = m};
  return &n[cfg->ntopics++];
}

/* Sets field f of match's entry from v; *was gets what it held before. */
static int set_topic_key(rill_serve_config_t *cfg, const char *match, int f, const char *v,
                         uint64_t *was, char *why, size_t cap) {
  size_t ml = strlen(match);
  bool prefix = ml && match[ml - 1] == '*';
  if (prefix ? ml > 1 && !rill_net_name_ok(match, ml - 1) : !rill_net_name_ok(match, ml))
    return BAD("'%s' is neither a topic name nor the start of one and '*'", match);
  uint64_t n;
  if (f != T_SEGMENT_BYTES && !strcmp(v, "none")) {
    n = RILL_SERVER_RETAIN_NONE;
  } else if (f == T_SEGMENT_BYTES) {
    if (!parse_units(v, size_units, 65536, 2ull << 30, &n) || n % 4096)
      return BAD("wants bytes from 64K to 2G, a multiple of 4K (K, M, G suffixes), not '%s'", v);
  } else if (f == T_RETAIN_BYTES) {
    if (!parse_units(v, size_units, 1, UINT64_MAX - 1, &n))
      return BAD("wants bytes from 1 (K, M, G suffixes) or none, not '%s'", v);
  } else if (f == T_RETAIN_COUNT) {
    if (!parse_units(v, count_units, 1, UINT64_MAX - 1, &n))
      return BAD("wants a count of records from 1, or none, not '%s'", v);
  } else if (!parse_units(v, age_units, 1000000ull, MAX_AGE_NS, &n)) {
    return BAD("wants a time with a unit, ms, s, m, h or d, up to 36500d, or none, not '%s'", v);
  }
  rill_server_topic_opts_t *e = topic_entry(cfg, match);
  if (!e) {
    snprintf(why, cap, "out of memory");
    return RILL_ENOMEM;
  }
  *was = *topic_field(e, f);
  *topic_field(e, f) = n;
  return 0;
}

/* The value after '=': unquoted up to a " #" comment and trimmed, or
 * quoted. NULL with *why set when it is malformed. Edits line in place. */
static char *line_value(char *s, const char **why) {
  while (*s == ' ' || *s == '\t')
    s++;
  if (*s == '"') {
    char *w = s, *r = s + 1;
    for (; *r != '"'; r++) {
      if (!*r)
        return *why = "the quote is not closed", NULL;
      if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
        r++;
      *w++ = *r;
    }
    *w = 0;
    for (r++; *r == ' ' || *r == '\t'; r++)
      ;
    if (*r && *r != '#')
      return *why = "text after the closing quote", NULL;
    return s;
  }
  char *end = s;
  for (char *p = s; *p; p++) {
    if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t'))
      break;
    if (*p != ' ' && *p != '\t')
      end = p + 1;
  }
  *end = 0;
  return s;
}

int rill_serve_config_load(const char *path, rill_server_opts_t *o, rill_serve_config_t *cfg) {
  FILE *f = fopen(path, "r");
  if (!f) {
    int rc = -errno;
    fprintf(stderr, "rill serve: %s: %s\n", path, strerror(errno));
    return rc;
  }
  int rc = rill_serve_config_read(f, path, o, cfg);
  fclose(f);
  return rc;
}

int rill_serve_config_read(FILE *f, const char *path, rill_server_opts_t *o,
                           rill_serve_config_t *cfg) {
  char *line = NULL;
  size_t lcap = 0;
  ssize_t n;
  unsigned lineno = 0, seen[K_COUNT] = {0};
  int rc = 0;
  char why[256];
  while (rc == 0 && (n = getline(&line, &lcap, f)) >= 0) {
    lineno++;
    if (n && line[n - 1] == '\n')
      line[--n] = 0;
    if (n && line[n - 1] == '\r')
      line[--n] = 0;
    if (strlen(line) != (size_t)n) {
      fprintf(stderr, "rill serve: %s:%u: a NUL byte in the line\n", path, lineno);
      rc = RILL_EINVAL;
      break;
    }
    char *s = line;
    while (*s == ' ' || *s == '\t')
      s++;
    if (!*s || *s == '#')
      continue;
    char *eq = strchr(s, '=');
    char *ke = eq ? eq : s + strlen(s);
    while (ke > s && (ke[-1] == ' ' || ke[-1] == '\t'))
      ke--;
    char key[256], match[RILL_NET_MAX_NAME + 2];
    snprintf(key, sizeof key, "%.*s", (int)(ke - s), s);
    if (!eq) {
      fprintf(stderr, "rill serve: %s:%u: %s: not key = value\n", path, lineno, key);
      rc = RILL_EINVAL;
      break;
    }
    int k = -1, tf = topic_key_find(key, match, sizeof match);
    for (int i = 0; i < K_COUNT; i++)
      if (!strcmp(key, keys[i].name))
        k = i;
    if (tf >= 0) {
      const char *bad = NULL;
      char *v = line_value(eq + 1, &bad);
      uint64_t was = 0;
      if (!v) {
        fprintf(stderr, "rill serve: %s:%u: %s: %s\n", path, lineno, key, bad);
        rc = RILL_EINVAL;
      } else if ((rc = set_topic_key(cfg, match, tf, v, &was, why, sizeof why)) != 0) {
        fprintf(stderr, "rill serve: %s:%u: %s: %s\n", path, lineno, key, why);
      } else if (was) {
        fprintf(stderr, "rill serve: %s:%u: %s: given before\n", path, lineno, key);
        rc = RILL_EINVAL;
      }
      continue;
    }
    if (k < 0) {
      fprintf(stderr, "rill serve: %s:%u: %s: unknown key\n", path, lineno, key);
      rc = RILL_EINVAL;
      break;
    }
    if (seen[k]) {
      fprintf(stderr, "rill serve: %s:%u: %s: given before, on line %u\n", path, lineno, key,
              seen[k]);
      rc = RILL_EINVAL;
      break;
    }
    seen[k] = lineno;
    const char *bad = NULL;
    char *v = line_value(eq + 1, &bad);
    if (!v) {
      fprintf(stderr, "rill serve: %s:%u: %s: %s\n", path, lineno, key, bad);
      rc = RILL_EINVAL;
      break;
    }
    if ((rc = set_key(o, cfg, k, v, why, sizeof why)) != 0)
      fprintf(stderr, "rill serve: %s:%u: %s: %s\n", path, lineno, key, why);
  }
  if (rc == 0 && ferror(f)) {
    rc = -errno;
    fprintf(stderr, "rill serve: %s: read error\n", path);
  }
  free(line);
  return rc;
}

bool rill_serve_config_is_flag(const char *name) {
  char match[RILL_NET_MAX_NAME + 2];
  return !strncmp(name, "--", 2) &&
         (key_find(name + 2) >= 0 || topic_key_find(name + 2, match, sizeof match) >= 0);
}

int rill_serve_config_flag(rill_server_opts_t *o, rill_serve_config_t *cfg, const char *name,
                           const char *value) {
  int k = key_find(name + 2);
  char match[RILL_NET_MAX_NAME + 2], why[256];
  int tf = k < 0 ? topic_key_find(name + 2, match, sizeof match) : -1;
  uint64_t was;
  if (tf >= 0 ? set_topic_key(cfg, match, tf, value, &was, why, sizeof why)
              : set_key(o, cfg, k, value, why, sizeof why)) {
    fprintf(stderr, "rill serve: %s %s\n", name, why);
    return -1;
  }
  return 0;
}

/* The shortest exact spelling of n with one of the units. */
static void put_units(FILE *f, const char *key, uint64_t n, const unit_t *units) {
  const unit_t *best = NULL;
  for (const unit_t *u = units; u->suffix; u++)
    if (n % u->mult == 0 && (!best || u->mult > best->mult))
      best = u;
  if (best)
    fprintf(f, "%s = %" PRIu64 "%s\n", key, n / best->mult, best->suffix);
  else
    fprintf(f, "%s = %" PRIu64 "\n", key, n);
}

/* key = value, the value quoted when it would not read back as it is
 * unquoted (line_value trims it and stops at a " #"; the reader takes a
 * line's last '\r' for a CRLF ending): empty, spaces at either end, a
 * '#', a quote, a backslash or a control character. */
static void put_str(FILE *f, const char *key, const char *v) {
  size_t n = strlen(v);
  bool plain = n && strcspn(v, "#\"\\") == n && v[0] != ' ' && v[0] != '\t' && v[n - 1] != ' ' &&
               v[n - 1] != '\t';
  for (size_t i = 0; plain && i < n; i++)
    plain = (unsigned char)v[i] >= 0x20 && v[i] != 0x7f;
  if (plain) {
    fprintf(f, "%s = %s\n", key, v);
    return;
  }
  fprintf(f, "%s = \"", key);
  for (; *v; v++)
    fprintf(f, *v == '"' || *v == '\\' ? "\\%c" : "%c", *v);
  fputs("\"\n", f);
}

void rill_serve_config_print(FILE *f, const rill_server_opts_t *o, const rill_serve_config_t *cfg) {
  static const unit_t print_sizes[] = {
      {"", 1}, {"K", 1u << 10}, {"M", 1u << 20}, {"G", 1ull << 30}, {NULL, 0}};
  char addr[300];
  fprintf(f, "listen = %s\n",
          rill_tool_fmt_addr(addr, sizeof addr, o->host ? o->host : "127.0.0.1",
                             o->any_port ? 0
                             : o->port   ? o->port
                                         : RILL_NET_PORT));
  put_str(f, "data", o->data_dir ? o->data_dir : "");
  /* The token is a secret: say that there is one, in a comment, so the
   * output still reads back as a config file. */
  fprintf(f, o->token ? "# token = (set, not shown)\n" : "# token = (none)\n");
  fprintf(f, "max_conns = %u\n", o->max_conns ? o->max_conns : DEF_MAX_CONNS);
  put_units(f, "max_body", o->max_body ? o->max_body : RILL_NET_DEFAULT_BODY, print_sizes);
  put_units(f, "max_message", o->max_message ? o->max_message : DEF_MAX_MESSAGE, print_sizes);
  put_units(f, "tx_limit", o->tx_limit ? o->tx_limit : DEF_TX_LIMIT, print_sizes);
  switch (o->sync) {
  case RILL_SERVER_SYNC_NEVER: fprintf(f, "sync = never\n"); break;
  case RILL_SERVER_SYNC_GROUP: fprintf(f, "sync = group\n"); break;
  case RILL_SERVER_SYNC_EVERY_N:
    fprintf(f, "sync = every:%" PRIu64 "\n", cfg->sync_every ? cfg->sync_every : DEF_SYNC_EVERY);
    break;
  case RILL_SERVER_SYNC_INTERVAL:
    fprintf(f, "sync = interval:%" PRIu64 "\n",
            (cfg->sync_interval_ns ? cfg->sync_interval_ns : DEF_SYNC_INTERVAL) / 1000000u);
    break;
  }
  put_units(f, "handshake_timeout",
            o->handshake_timeout_ns ? o->handshake_timeout_ns : DEF_HANDSHAKE_NS, time_units);
  put_units(f, "idle_timeout", o->idle_timeout_ns ? o->idle_timeout_ns : DEF_IDLE_NS, time_units);
  fprintf(f, "sub_credits_max = %u\n", o->sub_credits_max ? o->sub_credits_max : DEF_CREDITS);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  fprintf(f, "loops = %u\n",
          o->loops           ? o->loops
          : cpus > MAX_LOOPS ? MAX_LOOPS
          : cpus > 0         ? (unsigned)cpus
                             : 1u);
  fprintf(f, "metrics = %s\n", o->metrics ? o->metrics : "off");
  fprintf(f, "max_topics = %u\n", o->max_topics ? o->max_topics : DEF_MAX_TOPICS);
  fprintf(f, "max_asks_per_conn = %u\n",
          o->max_asks_per_conn ? o->max_asks_per_conn : DEF_ASKS_PER_CONN);
  fprintf(f, "max_asks = %u\n", o->max_asks ? o->max_asks : DEF_ASKS);
  fprintf(f, "max_serves_per_conn = %u\n",
          o->max_serves_per_conn ? o->max_serves_per_conn : DEF_SERVES_PER);
  fprintf(f, "max_serves = %u\n", o->max_serves ? o->max_serves : DEF_SERVES);
  if (o->max_disk == RILL_SERVER_DISK_UNLIMITED)
    fprintf(f, "max_disk = unlimited\n");
  else
    put_units(f, "max_disk", o->max_disk ? o->max_disk : DEF_MAX_DISK, print_sizes);
  fprintf(f, "max_binds_per_conn = %u\n",
          o->max_binds_per_conn ? o->max_binds_per_conn : DEF_BINDS_PER);
  fprintf(f, "max_binds = %u\n", o->max_binds ? o->max_binds : DEF_BINDS);
  fprintf(f, "max_subs_per_conn = %u\n",
          o->max_subs_per_conn ? o->max_subs_per_conn : DEF_SUBS_PER);
  fprintf(f, "max_subs = %u\n", o->max_subs ? o->max_subs : DEF_SUBS);
  put_units(f, "segment_bytes", o->segment_bytes ? o->segment_bytes : DEF_SEGMENT_BYTES,
            print_sizes);
  /* 0 is no limit, printed as such rather than with a unit. */
  if (o->retain_bytes)
    put_units(f, "retain_bytes", o->retain_bytes, print_sizes);
  else
    fprintf(f, "retain_bytes = 0\n");
  fprintf(f, "retain_count = %" PRIu64 "\n", o->retain_count);
  if (o->retain_age_ns)
    put_units(f, "retain_age", o->retain_age_ns, age_units);
  else
    fprintf(f, "retain_age = 0\n");
  fprintf(f, "log_rate = %u\n", o->log_rate ? o->log_rate : DEF_LOG_RATE);
  for (uint32_t i = 0; i < cfg->ntopics; i++) {
    rill_server_topic_opts_t *e = &cfg->topics[i];
    char key[256];
    for (int t = 0; t < T_COUNT; t++) {
      uint64_t v = *topic_field(e, t);
      snprintf(key, sizeof key, "topic.%s.%s", e->match, topic_keys[t]);
      if (!v)
        continue;
      if (v == RILL_SERVER_RETAIN_NONE)
        fprintf(f, "%s = none\n", key);
      else if (t == T_RETAIN_COUNT)
        fprintf(f, "%s = %" PRIu64 "\n", key, v);
      else
        put_units(f, key, v, t == T_RETAIN_AGE ? age_units : print_sizes);
    }
  }
}

int rill_serve_config_check(const rill_server_opts_t *o, const rill_serve_config_t *cfg) {
  (void)cfg;
  /* The values in effect: what was set, else the server's default. */
  uint64_t body = o->max_body ? o->max_body : RILL_NET_DEFAULT_BODY;
  uint64_t msg = o->max_message ? o->max_message : DEF_MAX_MESSAGE;
  uint64_t tx = o->tx_limit ? o->tx_limit : DEF_TX_LIMIT;
  uint64_t seg = o->segment_bytes ? o->segment_bytes : DEF_SEGMENT_BYTES;
  if (body > msg) {
    fprintf(stderr,
            "rill serve: max_body (%" PRIu64 ") is over max_message (%" PRIu64
            "): a frame body is at most a message\n",
            body, msg);
    return RILL_EINVAL;
  }
  if (tx < 4 * (body + RILL_NET_HDR)) {
    fprintf(stderr,
            "rill serve: tx_limit (%" PRIu64 ") is under four frames of max_body (%" PRIu64
            "): at least %" PRIu64 "\n",
            tx, body, 4 * (body + RILL_NET_HDR));
    return RILL_EINVAL;
  }
  if (msg > seg - SEG_OVERHEAD) {
    fprintf(stderr,
            "rill serve: max_message (%" PRIu64
            ") is over what a segment of segment_bytes (%" PRIu64 ") holds: at most %" PRIu64 "\n",
            msg, seg, seg - SEG_OVERHEAD);
    return RILL_EINVAL;
  }
  return 0;
}

void rill_serve_config_help(FILE *f) {
  /* The defaults as --print-config shows them for an empty config. */
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (m) {
    rill_server_opts_t o = {.data_dir = "./rill-data"};
    rill_serve_config_t cfg = {0};
    rill_serve_config_print(m, &o, &cfg);
    fclose(m);
  }
  fprintf(f, "\nconfig keys: `key = value` lines of --config FILE, or flags (--max-conns 100,\n"
             "--max-conns=100); sizes take K, M or G (KiB, MiB, GiB), times their unit:\n");
  for (int k = 0; k < K_COUNT; k++) {
    char def[96] = "none";
    size_t nl = strlen(keys[k].name);
    for (const char *l = text; l && *l;) {
      const char *eol = strchr(l, '\n');
      size_t ll = eol ? (size_t)(eol - l) : strlen(l);
      if (ll > nl + 3 && !strncmp(l, keys[k].name, nl) && !strncmp(l + nl, " = ", 3))
        snprintf(def, sizeof def, "%.*s", (int)(ll - nl - 3), l + nl + 3);
      l += ll + (eol != NULL);
    }
    fprintf(f, "  %-19s %s; default %s\n  %-19s %s\n", keys[k].name, keys[k].takes, def, "",
            keys[k].what);
  }
  fprintf(f, "  topic.MATCH.KEY     per topic, MATCH a topic name or its start and '*':\n"
             "                      segment_bytes, retain_bytes, retain_count, retain_age\n"
             "                      (none: no limit over the default)\n");
  free(text);
}

void rill_serve_config_apply(rill_server_opts_t *o, const rill_serve_config_t *cfg) {
  o->topic_opts = cfg->topics;
  o->ntopic_opts = cfg->ntopics;
  o->sync_every = o->sync == RILL_SERVER_SYNC_EVERY_N ? cfg->sync_every : 0;
  o->sync_interval_ns = o->sync == RILL_SERVER_SYNC_INTERVAL ? cfg->sync_interval_ns : 0;
}

void rill_serve_config_free(rill_serve_config_t *cfg) {
  free(cfg->host);
  free(cfg->data_dir);
  free(cfg->token);
  free(cfg->metrics);
  for (uint32_t i = 0; i < cfg->ntopics; i++)
    free((char *)cfg->topics[i].match);
  free(cfg->topics);
  memset(cfg, 0, sizeof *cfg);
}
