/*
 * The server's metrics (private): a Prometheus text builder
 * (format 0.0.4), and a small HTTP endpoint that serves that text on a
 * thread of its own.
 *
 * Threading: a latency histogram is core's rill_hist_t: one writer
 * (rill_hist_record); any thread may read it (rill_hist_merge into a
 * private copy) while it is written.
 * A rill__prom_t belongs to one thread. The HTTP endpoint calls render on
 * its own thread, so render must read the server's state with atomics.
 */
#ifndef RILL_NET_METRICS_H
#define RILL_NET_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/core.h"
#include "rill/net.h"

/* ---- Prometheus text ---------------------------------------------------------- */

/* Text exposition format 0.0.4, built in a growable buffer. A failed
 * allocation is remembered and every later call does nothing, so a
 * renderer writes everything and checks once (rill__prom_status). */
typedef struct rill__prom {
  char *buf;
  size_t len, cap;
  bool oom;
  char family[128]; /* the family whose HELP and TYPE were written last */
} rill__prom_t;

/* A label: name (a valid label name, rill's own) and value (any bytes of
 * a C string, escaped here). Lists of them end at the first with a NULL
 * name, or are NULL. */
typedef struct rill__prom_label {
  const char *name;
  const char *value;
} rill__prom_label_t;

void rill__prom_init(rill__prom_t *p);
void rill__prom_free(rill__prom_t *p);

/** Forgets the text, keeps the buffer. */
void rill__prom_reset(rill__prom_t *p);

/** 0, or RILL_ENOMEM when an append failed. */
int rill__prom_status(const rill__prom_t *p);

/** Starts a family: its HELP and TYPE lines ("counter", "gauge",
 *  "histogram"), written once however often it is started in a row, so
 *  a loop over topics may start it for each sample. */
void rill__prom_family(rill__prom_t *p, const char *name, const char *type, const char *help);

/** One sample line: name{labels} value. */
void rill__prom_sample(rill__prom_t *p, const char *name, const rill__prom_label_t *labels,
                       uint64_t v);
void rill__prom_sample_f(rill__prom_t *p, const char *name, const rill__prom_label_t *labels,
                         double v);

/** A whole family with one unlabelled sample. */
void rill__prom_counter(rill__prom_t *p, const char *name, const char *help, uint64_t v);
void rill__prom_gauge(rill__prom_t *p, const char *name, const char *help, double v);

/** A histogram's samples (after rill__prom_family(..., "histogram", ...)):
 *  name_bucket{labels,le="..."} cumulative at every bucket edge of h
 *  (four per power of two, 64 ns to 68.7 s, 121 bounds, written in exact
 *  decimal seconds so the counts are exact) and +Inf, then name_sum in
 *  seconds and name_count (equal to +Inf). h should be a private copy
 *  (rill_hist_merge). */
void rill__prom_hist(rill__prom_t *p, const char *name, const rill__prom_label_t *labels,
                     const rill_hist_t *h);

/* ---- the server's families ------------------------------------------------------ */

/* What the server's render function gathers (loops summed, histograms
 * merged), so the metric names and their help live in one place and
 * `rill stat` reads what is written. */
typedef struct rill__metrics_topic {
  const char *name;
  uint64_t appended, appended_bytes; /* records and payload bytes appended since start */
  uint64_t next_seq;                 /* the sequence the next record gets */
  uint64_t subscribers;
} rill__metrics_topic_t;

typedef struct rill__metrics_snap {
  rill_server_stats_t st; /* counters and conns_open, summed over the loops */
  uint64_t asks_in_flight;
  uint64_t serves; /* SERVE registrations held */
  uint64_t binds;  /* channels bound */
  uint64_t subs;   /* subscriptions */
  double uptime_s;
  uint32_t loops;
  rill_hist_t publish_ack; /* an acknowledged publish: frame read to ACK queued */
  rill_hist_t ask;         /* an ask: ASK read to REPLY forwarded */
  const rill__metrics_topic_t *topics;
  size_t ntopics;
} rill__metrics_snap_t;

/** Writes every family of the server's metrics from s. */
void rill__metrics_render_server(rill__prom_t *p, const rill__metrics_snap_t *s);

/* ---- the HTTP endpoint ----------------------------------------------------------- */

#define RILL__METRICS_MAX_CONNS   16            /* served at once; more are refused */
#define RILL__METRICS_MAX_REQUEST 4096          /* request line and headers */
#define RILL__METRICS_DEADLINE_NS 2000000000ull /* to read a request and send the answer */

typedef struct rill__metrics_http rill__metrics_http_t;

/** Renders the text for one scrape into p (empty at each call). Runs on
 *  the endpoint's thread. 0, or a negative code: the scrape gets a 500. */
typedef int (*rill__metrics_render_fn)(void *ctx, rill__prom_t *p);

/** Listens on hostport ("A.B.C.D:PORT", PORT 0 for any free one) and
 *  serves GET /metrics with render's text from a thread of its own.
 *  RILL_EINVAL for a bad hostport, the socket's errno (-errno) when it
 *  cannot listen. */
int rill__metrics_http_start(rill__metrics_http_t **out, const char *hostport,
                             rill__metrics_render_fn render, void *ctx);

/** The port it listens on. */
uint16_t rill__metrics_http_port(const rill__metrics_http_t *m);

/** Stops the thread (waits for it: render is not running after this) and
 *  closes every socket. NULL is a no-op. */
void rill__metrics_http_stop(rill__metrics_http_t *m);

#endif
