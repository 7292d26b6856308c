/*
 * rill stat: a running server's metrics for people. The server answers a
 * STATS request with the same Prometheus text its HTTP endpoint serves;
 * this parses it and prints totals, rates between two samples, each
 * topic, every other series by its name, and latency quantiles from the
 * histograms' cumulative buckets (the way Prometheus's histogram_quantile
 * reads them).
 *
 * --from-file FILE (given once or twice, a hidden option) reads the text
 * from files instead of a server, so the parser and the printing are
 * tested on canned text: with two files, the rates are the second minus
 * the first over --interval seconds.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prom.h"
#include "rill/net.h"
#include "tools.h"

/* The value of name with that topic (NULL: no topic label) and no other
 * label; NAN when absent. */
static double get(const rill_prom_samples_t *ss, const char *name, const char *topic) {
  if (!ss)
    return NAN;
  for (size_t i = 0; i < ss->n; i++) {
    const rill_prom_sample_t *s = &ss->s[i];
    if (!strcmp(s->name, name) && !s->labels[0] && isnan(s->le) &&
        (topic ? s->topic && !strcmp(s->topic, topic) : !s->topic))
      return s->v;
  }
  return NAN;
}

/* ---- histograms ---------------------------------------------------------------------- */

typedef struct {
  double le, cum;
} bucket_t;

static int cmp_bucket(const void *a, const void *b) {
  double x = ((const bucket_t *)a)->le, y = ((const bucket_t *)b)->le;
  return x < y ? -1 : x > y;
}

/* The buckets of base{topic, labels} sorted by bound; n of them. */
static bucket_t *hist_buckets(const rill_prom_samples_t *ss, const char *bucket_name,
                              const rill_prom_sample_t *key, size_t *n) {
  *n = 0;
  if (!ss)
    return NULL;
  bucket_t *b = NULL;
  for (size_t i = 0; i < ss->n; i++) {
    const rill_prom_sample_t *s = &ss->s[i];
    if (isnan(s->le) || strcmp(s->name, bucket_name) || strcmp(s->labels, key->labels) ||
        !s->topic != !key->topic || (s->topic && strcmp(s->topic, key->topic)))
      continue;
    b = rill_tool_realloc(b, (*n + 1) * sizeof *b);
    b[(*n)++] = (bucket_t){s->le, s->v};
  }
  if (*n)
    qsort(b, *n, sizeof *b, cmp_bucket);
  return b;
}

/* The quantile q of cumulative buckets, interpolated linearly within the
 * bucket that holds it; *over is set when it falls in +Inf (the answer is
 * then the largest finite bound). NAN for no observations. */
static double bucket_quantile(const bucket_t *b, size_t n, double q, bool *over) {
  *over = false;
  if (!n || b[n - 1].cum <= 0)
    return NAN;
  double rank = q * b[n - 1].cum;
  for (size_t i = 0; i < n; i++) {
    if (b[i].cum < rank)
      continue;
    if (isinf(b[i].le)) {
      *over = true;
      return i ? b[i - 1].le : 0;
    }
    double lo = i ? b[i - 1].le : 0, clo = i ? b[i - 1].cum : 0;
    if (b[i].cum <= clo)
      return b[i].le;
    return lo + (b[i].le - lo) * (rank - clo) / (b[i].cum - clo);
  }
  return b[n - 1].le;
}

/* ---- printing ------------------------------------------------------------------------ */

static void put_bytes(char *out, size_t cap, double v, const char *per) {
  static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int i = 0;
  while (fabs(v) >= 1024 && i < 5)
    v /= 1024, i++;
  if (i == 0)
    snprintf(out, cap, "%.0f %s%s", v, u[i], per);
  else
    snprintf(out, cap, "%.1f %s%s", v, u[i], per);
}

static void put_secs(char *out, size_t cap, double s) {
  if (isnan(s))
    snprintf(out, cap, "-");
  else if (s < 1e-6)
    snprintf(out, cap, "%.0fns", s * 1e9);
  else if (s < 1e-3)
    snprintf(out, cap, "%.3gus", s * 1e6);
  else if (s < 1)
    snprintf(out, cap, "%.3gms", s * 1e3);
  else
    snprintf(out, cap, "%.3gs", s);
}

static void put_count(char *out, size_t cap, double v) {
  if (isnan(v))
    snprintf(out, cap, "-");
  else
    snprintf(out, cap, "%.0f", v);
}

/* (cur - prev) / dt, or NAN when there is no earlier sample or a counter
 * went back (the server restarted). */
static double rate(double cur, double prev, double dt) {
  if (isnan(cur) || isnan(prev) || dt <= 0 || cur < prev)
    return NAN;
  return (cur - prev) / dt;
}

static void put_rate(char *out, size_t cap, double r, bool bytes) {
  if (isnan(r))
    snprintf(out, cap, "-");
  else if (bytes)
    put_bytes(out, cap, r, "/s");
  else
    snprintf(out, cap, "%.1f/s", r);
}

static void put_uptime(FILE *f, double s) {
  if (isnan(s))
    return;
  uint64_t t = (uint64_t)s;
  fprintf(f, "  up ");
  if (t >= 86400)
    fprintf(f, "%" PRIu64 "d", t / 86400);
  if (t >= 3600)
    fprintf(f, "%" PRIu64 "h", t / 3600 % 24);
  if (t >= 60)
    fprintf(f, "%" PRIu64 "m", t / 60 % 60);
  fprintf(f, "%" PRIu64 "s", t % 60);
}

/* The samples report() prints in rows of its own; any other goes to the
 * rows of other_rows, so a counter a newer server adds is shown too. */
static const char *const known[] = {
    "rill_uptime_seconds",
    "rill_loops",
    "rill_connections_open",
    "rill_connections_accepted_total",
    "rill_connections_refused_total",
    "rill_connections_dropped_total",
    "rill_frames_in_total",
    "rill_frames_out_total",
    "rill_bytes_in_total",
    "rill_bytes_out_total",
    "rill_messages_published_total",
    "rill_messages_delivered_total",
    "rill_errors_sent_total",
    "rill_asks_refused_total",
    "rill_serves_refused_total",
    "rill_asks_in_flight",
    "rill_serve_registrations",
    "rill_topic_appended_total",
    "rill_topic_appended_bytes_total",
    "rill_topic_next_sequence",
    "rill_topic_subscribers",
};

static bool same_series(const rill_prom_sample_t *a, const rill_prom_sample_t *b) {
  return !strcmp(a->name, b->name) && !strcmp(a->labels, b->labels) && !a->topic == !b->topic &&
         (!a->topic || !strcmp(a->topic, b->topic)) && isnan(a->le) == isnan(b->le);
}

/* A histogram's _sum or _count: printed with its buckets. */
static bool hist_part(const rill_prom_samples_t *ss, const char *name) {
  size_t nl = strlen(name), sl = nl >= 4 && !strcmp(name + nl - 4, "_sum")     ? 4
                                 : nl >= 6 && !strcmp(name + nl - 6, "_count") ? 6
                                                                               : 0;
  if (!sl)
    return false;
  for (size_t i = 0; i < ss->n; i++) {
    const char *b = ss->s[i].name;
    if (!isnan(ss->s[i].le) && !strncmp(b, name, nl - sl) && !strcmp(b + nl - sl, "_bucket"))
      return true;
  }
  return false;
}

/* Every series report() has no row of its own for, by the name without
 * rill_ and _total, with its labels: the value, and for a counter (_total)
 * its rate. */
static void other_rows(FILE *f, const rill_prom_samples_t *cur, const rill_prom_samples_t *prev,
                       double dt) {
  for (size_t i = 0; i < cur->n; i++) {
    const rill_prom_sample_t *s = &cur->s[i];
    if (!isnan(s->le) || hist_part(cur, s->name))
      continue;
    bool seen = false;
    for (size_t k = 0; k < sizeof known / sizeof known[0] && !seen; k++)
      seen = !strcmp(s->name, known[k]) && !s->labels[0];
    for (size_t j = 0; j < i && !seen; j++)
      seen = same_series(&cur->s[j], s);
    if (seen)
      continue;
    const char *nm = s->name;
    size_t nl = strlen(nm);
    bool counter = nl > 6 && !strcmp(nm + nl - 6, "_total");
    if (counter)
      nl -= 6;
    if (nl > 5 && !strncmp(nm, "rill_", 5))
      nm += 5, nl -= 5;
    char label[256];
    int ll = snprintf(label, sizeof label, "%.*s", (int)nl, nm);
    if (s->topic || s->labels[0])
      snprintf(label + ll, sizeof label - (size_t)ll, "{%s%s%s%.*s}", s->topic ? "topic=" : "",
               s->topic ? s->topic : "", s->topic && s->labels[0] ? "," : "",
               s->labels[0] ? (int)strlen(s->labels) - 1 : 0, s->labels);
    double p = NAN;
    for (size_t j = 0; prev && counter && j < prev->n && isnan(p); j++)
      if (same_series(&prev->s[j], s))
        p = prev->s[j].v;
    char a[64], b[64];
    put_count(a, sizeof a, s->v);
    size_t tl = strlen(label);
    rill_tool_text(f, label, tl); /* the server's names and labels: escaped */
    fprintf(f, "%*s %14s", tl < 16 ? (int)(16 - tl) : 0, "", a);
    if (counter) {
      put_rate(b, sizeof b, rate(s->v, p, dt), false);
      fprintf(f, " %14s", b);
    }
    fputc('\n', f);
  }
}

/* The topics the server listed (TOPICS): with no traffic since it
 * started, a topic has no series, and would be missing from the report. */
typedef struct {
  char **v;
  size_t n;
} names_t;

static void add_name(void *ctx, const char *name) {
  names_t *l = ctx;
  l->v = rill_tool_realloc(l->v, (l->n + 1) * sizeof *l->v);
  size_t len = strlen(name);
  l->v[l->n] = memcpy(rill_tool_realloc(NULL, len + 1), name, len + 1);
  l->n++;
}

static void names_free(names_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

/* Every value of the topic label of the rill_topic_* series, in the
 * order first seen, then those of listed not among them (*n in all; the
 * caller frees the array). */
static const char **topics_of(const rill_prom_samples_t *cur, const names_t *listed, size_t *n) {
  const char **topics = NULL;
  size_t nt = 0, nl = listed ? listed->n : 0;
  for (size_t i = 0; i < cur->n + nl; i++) {
    const char *t = i < cur->n ? cur->s[i].topic : listed->v[i - cur->n];
    if (!t || (i < cur->n && strncmp(cur->s[i].name, "rill_topic_", 11)))
      continue;
    size_t j = 0;
    while (j < nt && strcmp(topics[j], t))
      j++;
    if (j == nt) {
      topics = rill_tool_realloc(topics, (nt + 1) * sizeof *topics);
      topics[nt++] = t;
    }
  }
  *n = nt;
  return topics;
}

/* A topic's series; a listed topic without any has had no traffic since
 * the server started: 0 appended and 0 subscribers, not "unknown" (its
 * next sequence number is unknown). */
static double topic_get(const rill_prom_samples_t *ss, const char *name, const char *topic) {
  double v = get(ss, name, topic);
  if (!ss || !isnan(v) || !strcmp(name, "rill_topic_next_sequence"))
    return v;
  for (size_t i = 0; i < ss->n; i++)
    if (ss->s[i].topic && !strcmp(ss->s[i].topic, topic))
      return v;
  return 0;
}

/* A latency histogram's row: its label (publish_ack{...}), observations
 * and p50, p99, p99.9 in seconds (over: in +Inf), over the interval when
 * it saw observations (window), else since the start. */
typedef struct {
  char label[160];
  double count, q[3];
  bool over[3], window;
} hist_row_t;

/* The row of the histogram whose first bucket is cur->s[i]; false when
 * cur->s[i] is not a group's first bucket. */
static bool hist_row(const rill_prom_samples_t *cur, const rill_prom_samples_t *prev, size_t i,
                     hist_row_t *r) {
  const rill_prom_sample_t *s = &cur->s[i];
  size_t nl = strlen(s->name);
  if (isnan(s->le) || nl < 8 || strcmp(s->name + nl - 7, "_bucket"))
    return false;
  for (size_t j = 0; j < i; j++) {
    const rill_prom_sample_t *o = &cur->s[j];
    if (!isnan(o->le) && !strcmp(o->name, s->name) && !strcmp(o->labels, s->labels) &&
        !o->topic == !s->topic && (!s->topic || !strcmp(o->topic, s->topic)))
      return false;
  }
  size_t n, pn;
  bucket_t *bk = hist_buckets(cur, s->name, s, &n);
  bucket_t *pb = hist_buckets(prev, s->name, s, &pn);
  r->window = false;
  if (pb && pn == n && n && bk[n - 1].cum > pb[n - 1].cum) {
    r->window = true;
    for (size_t k = 0; k < n; k++) {
      if (bk[k].le != pb[k].le || bk[k].cum < pb[k].cum)
        r->window = false;
    }
    for (size_t k = 0; r->window && k < n; k++)
      bk[k].cum -= pb[k].cum;
  }
  /* rill_publish_ack_seconds{...} as publish_ack{...}. */
  const char *nm = s->name;
  size_t bl = nl - 7;
  if (!strncmp(nm, "rill_", 5))
    nm += 5, bl -= 5;
  if (bl > 8 && !strncmp(nm + bl - 8, "_seconds", 8))
    bl -= 8;
  int ll = snprintf(r->label, sizeof r->label, "%.*s", (int)bl, nm);
  if (s->topic || s->labels[0])
    snprintf(r->label + ll, sizeof r->label - (size_t)ll, "{%s%s%.*s}", s->topic ? "topic=" : "",
             s->topic ? s->topic : "", s->labels[0] ? (int)strlen(s->labels) - 1 : 0, s->labels);
  r->count = n ? bk[n - 1].cum : 0.0;
  static const double qs[] = {0.5, 0.99, 0.999};
  for (size_t k = 0; k < 3; k++)
    r->q[k] = bucket_quantile(bk, n, qs[k], &r->over[k]);
  free(bk);
  free(pb);
  return true;
}

static void report(FILE *f, const char *who, const names_t *listed, const rill_prom_samples_t *cur,
                   const rill_prom_samples_t *prev, double dt) {
  char a[64], b[64];
  fprintf(f, "rill stat %s", who);
  put_uptime(f, get(cur, "rill_uptime_seconds", NULL));
  double loops = get(cur, "rill_loops", NULL);
  if (!isnan(loops))
    fprintf(f, "  %.0f loop%s", loops, loops == 1 ? "" : "s");
  if (prev)
    fprintf(f, "  (rates over %.2f s)", dt);
  fputc('\n', f);

  static const char *const conns[][2] = {{"open", "rill_connections_open"},
                                         {"accepted", "rill_connections_accepted_total"},
                                         {"refused", "rill_connections_refused_total"},
                                         {"dropped", "rill_connections_dropped_total"}};
  fprintf(f, "connections ");
  for (size_t i = 0; i < 4; i++) {
    put_count(a, sizeof a, get(cur, conns[i][1], NULL));
    fprintf(f, "  %s %s", conns[i][0], a);
  }
  fprintf(f, "\n\n%-16s %14s %14s\n", "", "total", "per second");
  static const struct {
    const char *label, *name;
    bool bytes;
  } rows[] = {
      {"frames in", "rill_frames_in_total", false},
      {"frames out", "rill_frames_out_total", false},
      {"bytes in", "rill_bytes_in_total", true},
      {"bytes out", "rill_bytes_out_total", true},
      {"published", "rill_messages_published_total", false},
      {"delivered", "rill_messages_delivered_total", false},
      {"errors sent", "rill_errors_sent_total", false},
      {"asks refused", "rill_asks_refused_total", false},
      {"serves refused", "rill_serves_refused_total", false},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    double v = get(cur, rows[i].name, NULL);
    if (rows[i].bytes && !isnan(v))
      put_bytes(a, sizeof a, v, "");
    else
      put_count(a, sizeof a, v);
    put_rate(b, sizeof b, rate(v, get(prev, rows[i].name, NULL), dt), rows[i].bytes);
    fprintf(f, "%-16s %14s %14s\n", rows[i].label, a, b);
  }
  put_count(a, sizeof a, get(cur, "rill_asks_in_flight", NULL));
  fprintf(f, "%-16s %14s\n", "asks in flight", a);
  put_count(a, sizeof a, get(cur, "rill_serve_registrations", NULL));
  fprintf(f, "%-16s %14s\n", "serves held", a);
  other_rows(f, cur, prev, dt);

  size_t nt;
  const char **topics = topics_of(cur, listed, &nt);
  if (nt) {
    fprintf(f, "\n%-24s %12s %12s %12s %14s %12s %11s\n", "topic", "appended", "per second",
            "bytes", "bytes/s", "next seq", "subscribers");
    for (size_t j = 0; j < nt; j++) {
      const char *t = topics[j];
      char c[64], d[64], e[64], g[64];
      double n = topic_get(cur, "rill_topic_appended_total", t);
      double by = topic_get(cur, "rill_topic_appended_bytes_total", t);
      put_count(a, sizeof a, n);
      put_rate(b, sizeof b, rate(n, topic_get(prev, "rill_topic_appended_total", t), dt), false);
      if (isnan(by))
        snprintf(c, sizeof c, "-");
      else
        put_bytes(c, sizeof c, by, "");
      put_rate(d, sizeof d, rate(by, topic_get(prev, "rill_topic_appended_bytes_total", t), dt),
               true);
      put_count(e, sizeof e, topic_get(cur, "rill_topic_next_sequence", t));
      put_count(g, sizeof g, topic_get(cur, "rill_topic_subscribers", t));
      /* A topic name is [A-Za-z0-9._-] on a good server; escape anything
       * else rather than let it move the cursor. */
      size_t tl = strlen(t);
      rill_tool_text(f, t, tl);
      fprintf(f, "%*s %12s %12s %12s %14s %12s %11s\n", tl < 24 ? (int)(24 - tl) : 0, "", a, b, c,
              d, e, g);
    }
  }
  free(topics);

  bool header = false;
  for (size_t i = 0; i < cur->n; i++) {
    hist_row_t r;
    if (!hist_row(cur, prev, i, &r))
      continue;
    if (!header) {
      fprintf(f, "\n%-24s %12s %9s %9s %9s  %s\n", "latency", "count", "p50", "p99", "p99.9",
              "over");
      header = true;
    }
    fprintf(f, "%-24s %12.0f", r.label, r.count);
    for (size_t k = 0; k < 3; k++) {
      put_secs(a, sizeof a, r.q[k]);
      snprintf(b, sizeof b, "%s%.32s", r.over[k] ? ">" : "", a);
      fprintf(f, " %9s", b);
    }
    fprintf(f, "  %s\n", r.window ? "interval" : "all time");
  }
}

/* A number for JSON: null for NAN (absent, or no rate yet). */
static void json_num(FILE *f, double v) {
  if (isnan(v) || isinf(v))
    fputs("null", f);
  else if (v == floor(v) && fabs(v) < 1e15)
    fprintf(f, "%.0f", v);
  else
    fprintf(f, "%.9g", v);
}

/* The same as report, as one JSON object: every series by name (with its
 * rate when it is a counter), every topic, every latency histogram. */
static void report_json(FILE *f, const char *who, const names_t *listed,
                        const rill_prom_samples_t *cur, const rill_prom_samples_t *prev,
                        double dt) {
  fputs("{\"server\":", f);
  rill_tool_json_string(f, who, strlen(who));
  fputs(",\"interval_s\":", f);
  json_num(f, prev ? dt : NAN);
  fputs(",\"metrics\":[", f);
  bool first = true;
  for (size_t i = 0; i < cur->n; i++) {
    const rill_prom_sample_t *s = &cur->s[i];
    if (!isnan(s->le))
      continue;
    size_t nl = strlen(s->name);
    bool counter = nl > 6 && !strcmp(s->name + nl - 6, "_total");
    double p = NAN;
    for (size_t j = 0; prev && counter && j < prev->n && isnan(p); j++)
      if (same_series(&prev->s[j], s))
        p = prev->s[j].v;
    fprintf(f, "%s{\"name\":", first ? "" : ",");
    first = false;
    rill_tool_json_string(f, s->name, nl);
    if (s->topic) {
      fputs(",\"topic\":", f);
      rill_tool_json_string(f, s->topic, strlen(s->topic));
    }
    if (s->labels[0]) {
      fputs(",\"labels\":", f); /* k=v,k=v as the server wrote them */
      rill_tool_json_string(f, s->labels, strlen(s->labels) - 1);
    }
    fputs(",\"value\":", f);
    json_num(f, s->v);
    if (counter) {
      fputs(",\"rate\":", f);
      json_num(f, rate(s->v, p, dt));
    }
    fputc('}', f);
  }
  fputs("],\"topics\":[", f);
  size_t nt;
  const char **topics = topics_of(cur, listed, &nt);
  for (size_t j = 0; j < nt; j++) {
    const char *t = topics[j];
    double n = topic_get(cur, "rill_topic_appended_total", t);
    double by = topic_get(cur, "rill_topic_appended_bytes_total", t);
    fprintf(f, "%s{\"topic\":", j ? "," : "");
    rill_tool_json_string(f, t, strlen(t));
    fputs(",\"appended\":", f);
    json_num(f, n);
    fputs(",\"appended_rate\":", f);
    json_num(f, rate(n, topic_get(prev, "rill_topic_appended_total", t), dt));
    fputs(",\"bytes\":", f);
    json_num(f, by);
    fputs(",\"bytes_rate\":", f);
    json_num(f, rate(by, topic_get(prev, "rill_topic_appended_bytes_total", t), dt));
    fputs(",\"next_seq\":", f);
    json_num(f, topic_get(cur, "rill_topic_next_sequence", t));
    fputs(",\"subscribers\":", f);
    json_num(f, topic_get(cur, "rill_topic_subscribers", t));
    fputc('}', f);
  }
  free(topics);
  fputs("],\"latency\":[", f);
  first = true;
  for (size_t i = 0; i < cur->n; i++) {
    hist_row_t r;
    if (!hist_row(cur, prev, i, &r))
      continue;
    fprintf(f, "%s{\"name\":", first ? "" : ",");
    first = false;
    rill_tool_json_string(f, r.label, strlen(r.label));
    fputs(",\"count\":", f);
    json_num(f, r.count);
    static const char *const qn[] = {"p50_s", "p99_s", "p999_s"};
    for (size_t k = 0; k < 3; k++) {
      fprintf(f, ",\"%s\":", qn[k]);
      json_num(f, r.q[k]);
    }
    fprintf(f, ",\"over\":%s,\"window\":\"%s\"}", r.over[2] ? "true" : "false",
            r.window ? "interval" : "all time");
  }
  fputs("]}\n", f);
}

/* ---- getting the text ---------------------------------------------------------------- */

typedef struct {
  rill_client_t *c;
  char *buf;
  size_t cap, len;
} src_t;

static int fetch(src_t *s) {
  for (int tries = 0; tries < 3; tries++) {
    size_t len = 0;
    int rc = rill_client_server_stats_text(s->c, s->buf, s->cap, &len);
    if (rc == 0) {
      s->len = len;
      return 0;
    }
    if (rc == RILL_ENOBUFS && len >= s->cap) {
      s->buf = rill_tool_realloc(s->buf, s->cap = len + 1); /* and the NUL */
      continue;
    }
    fprintf(stderr, "rill stat: stats: %s (%s)\n", rill_strerror(rc), rill_errmsg());
    return rc;
  }
  fprintf(stderr, "rill stat: the metrics text kept growing\n");
  return RILL_EMSGSIZE;
}

static int read_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "rill stat: %s: %s\n", path, strerror(errno));
    return -errno;
  }
  size_t cap = 1 << 16, n = 0, r;
  char *b = rill_tool_realloc(NULL, cap);
  while ((r = fread(b + n, 1, cap - n, f)) > 0)
    if ((n += r) == cap)
      b = rill_tool_realloc(b, cap *= 2);
  fclose(f);
  *out = b;
  *len = n;
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) && errno == EINTR && !rill_tool_stop_sig)
    ;
}

static const char stat_usage[] =
    "usage: rill stat [--server HOST:PORT] [--token T|--token-file F] [--interval SEC]\n"
    "                 [--count N] [--prom|--json]\n"
    "  totals and rates over --interval (default 1 s) (asks and serves refused,\n"
    "  serves held among them), each topic, latency quantiles; a metric it has no\n"
    "  row for (a newer server's) is shown by its name;\n"
    "  --count N repeats, --prom prints the server's Prometheus text as is; --json: one\n"
    "  object a sample, {server, interval_s, metrics: [{name, topic, labels, value,\n"
    "  rate}], topics: [{topic, appended, ...}], latency: [{name, count, p50_s, "
    "...}]}\n" RILL_TOOL_CONN_HELP;

/* --from-file, at most twice. */
typedef struct {
  const char *files[2];
  int n;
} files_t;

static bool add_file(void *dst, const char *v) {
  files_t *f = dst;
  if (f->n == 2)
    return false;
  f->files[f->n++] = v;
  return true;
}

int rill_stat_main(int argc, char **argv) {
  rill_client_opts_t o = {.name = "stat"};
  rill_tool_conn_t conn = {0};
  double interval = 1.0;
  uint64_t count = 1;
  bool prom = false, json = false;
  files_t ff = {{NULL, NULL}, 0};
  rill_tool_opt_t opts[] = {
      RILL_TOOL_CONN_OPTS(&conn),
      {"--interval", RILL_TOOL_SECS, &interval, 0, 86400, "seconds", NULL, 0},
      {"--count", RILL_TOOL_U64, &count, 1, UINT32_MAX, "a number", NULL, 0},
      {"--prom", RILL_TOOL_FLAG, &prom, 0, 0, NULL, NULL, 0},
      {"--json", RILL_TOOL_FLAG, &json, 0, 0, NULL, NULL, 0},
      {"--from-file", RILL_TOOL_FN, &ff, 0, 0, "a file (at most twice)", add_file, 0},
      {0},
  };
  char **pos = rill_tool_alloc_args(argc);
  int npos, parsed = rill_tool_parse("stat", opts, NULL, NULL, argc, argv, pos, &npos);
  if (!parsed && npos) {
    fprintf(stderr, "rill stat: unexpected argument %s\n", pos[0]);
    parsed = -1;
  }
  free(pos);
  if (!parsed && rill_tool_conn_resolve("stat", &conn, &o))
    parsed = -1;
  if (parsed) {
    rill_tool_conn_free(&conn);
    return rill_tool_usage(parsed, stat_usage);
  }
  const char **files = ff.files;
  int nfiles = ff.n;
  /* What the report names: the server as given, or where it connects. */
  char who[300];
  snprintf(who, sizeof who, "%s:%u", o.host ? o.host : "127.0.0.1",
           o.port ? o.port : RILL_NET_PORT);

  rill_prom_samples_t cur = {0}, prev = {0};
  int status = 0;
  if (nfiles) {
    char *text[2] = {NULL, NULL};
    size_t len[2];
    for (int k = 0; k < nfiles; k++)
      if (read_file(files[k], &text[k], &len[k]))
        status = 1;
    if (!status && prom)
      fwrite(text[nfiles - 1], 1, len[nfiles - 1], stdout);
    else if (!status && nfiles == 2 &&
             (rill_prom_parse(text[0], len[0], &prev, files[0]) ||
              rill_prom_parse(text[1], len[1], &cur, files[1])))
      status = 1;
    else if (!status && nfiles == 1 && rill_prom_parse(text[0], len[0], &cur, files[0]))
      status = 1;
    else if (!status)
      (json ? report_json : report)(stdout, files[nfiles - 1], NULL, &cur,
                                    nfiles == 2 ? &prev : NULL, interval);
    free(text[0]);
    free(text[1]);
    rill_prom_free(&cur);
    rill_prom_free(&prev);
    rill_tool_conn_free(&conn);
    return status;
  }

  src_t s = {.cap = 1 << 16};
  s.buf = rill_tool_realloc(NULL, s.cap);
  int rc = rill_client_connect(&s.c, &o);
  rill_tool_conn_free(&conn);
  if (rc) {
    fprintf(stderr, "rill stat: connect: %s (%s)\n", rill_strerror(rc), rill_errmsg());
    free(s.buf);
    return 1;
  }
  double t_prev = 0;
  rill_tool_catch_stop(); /* a sleep between samples ends at once, and so does stat */
  if (!prom) {
    if (fetch(&s) || rill_prom_parse(s.buf, s.len, &prev, who)) {
      status = 1;
      goto close;
    }
    t_prev = now_s();
  }
  for (uint64_t k = 0; k < count && !rill_tool_stop_sig; k++) {
    if (prom) {
      if (k)
        sleep_s(interval);
      if (rill_tool_stop_sig)
        break;
      if (fetch(&s)) {
        status = 1;
        break;
      }
      fwrite(s.buf, 1, s.len, stdout);
      fflush(stdout);
      continue;
    }
    sleep_s(interval);
    if (rill_tool_stop_sig)
      break;
    if (fetch(&s) || rill_prom_parse(s.buf, s.len, &cur, who)) {
      status = 1;
      break;
    }
    double t = now_s();
    if (k && !json)
      putchar('\n');
    /* Every topic, those without traffic since a restart too. */
    names_t listed = {NULL, 0};
    if ((rc = rill_client_topics(s.c, add_name, &listed)) != 0) {
      fprintf(stderr, "rill stat: topics: %s (%s)\n", rill_strerror(rc), rill_errmsg());
      names_free(&listed);
      status = 1;
      break;
    }
    (json ? report_json : report)(stdout, who, &listed, &cur, &prev, t - t_prev);
    names_free(&listed);
    fflush(stdout);
    rill_prom_free(&prev);
    prev = cur;
    memset(&cur, 0, sizeof cur);
    t_prev = t;
  }
close:
  rill_prom_free(&cur);
  rill_prom_free(&prev);
  rill_client_close(s.c);
  free(s.buf);
  return status;
}
