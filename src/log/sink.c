/*
 * The bus's log sink: each delivered batch becomes one append_batch, so a
 * batch costs one lock and, under a sync policy, one sync.
 */
#include "core/internal.h"
#include "log/log_internal.h"
#include "rill/log.h"

#define CHUNK 64u

static void sink_batch(void *ctx, const rill_bus_event_t *ev, size_t n) {
  rill_bus_log_sink_t *s = ctx;
  for (size_t i = 0; i < n;) {
    rill_iov_t recs[CHUNK];
    size_t m = n - i < CHUNK ? n - i : CHUNK, done = 0;
    for (size_t k = 0; k < m; k++)
      recs[k] = (rill_iov_t){ev[i + k].data, ev[i + k].len};
    int rc = rill_log_append_batch(s->log, recs, m, NULL, &done);
    __atomic_fetch_add(&s->appended, done, __ATOMIC_RELAXED);
    if (rc) {
      /* A sync error leaves the records appended; anything else did not
       * append the rest of the chunk. */
      __atomic_fetch_add(&s->failed, m - done, __ATOMIC_RELAXED);
      __atomic_store_n(&s->last_error, rc, __ATOMIC_RELAXED);
    }
    i += m;
  }
}

static void sink_flush(void *ctx) {
  rill_bus_log_sink_t *s = ctx;
  int rc = rill_log_sync(s->log);
  if (rc)
    __atomic_store_n(&s->last_error, rc, __ATOMIC_RELAXED);
}

void rill_bus_sink_log(rill_bus_sink_t *sink, rill_bus_log_sink_t *s, rill_log_t *l) {
  *s = (rill_bus_log_sink_t){.log = l};
  *sink = (rill_bus_sink_t){sink_batch, sink_flush, NULL, s};
}

/* ---- subscribers --------------------------------------------------------- */

#include <pthread.h>

struct rill_log_sub {
  rill_log_t *log;
  rill_log_sub_cb cb;
  void *ctx;
  uint64_t next;
  int stop; /* atomic */
  pthread_t tid;
};

/* Waits in slices, so that unsubscribe is seen within one of them. */
#define SUB_WAIT_NS 50000000u

static void *sub_main(void *arg) {
  rill_log_sub_t *s = arg;
  rill_log_record_t recs[CHUNK];
  while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
    int rc = rill_log_wait(s->log, s->next, SUB_WAIT_NS);
    if (rc == RILL_ETIMEDOUT)
      continue;
    if (rc)
      break; /* closing */
    uint64_t lost = 0, first = rill_log_first(s->log);
    if (s->next < first) {
      lost = first - s->next;
      s->next = first;
    }
    size_t n = 0;
    rc = rill_log_read_range(s->log, s->next, CHUNK, SIZE_MAX, recs, &n);
    if (rc == RILL_ENOENT && !n) /* retention moved first meanwhile */
      continue;
    if (n || lost)
      s->cb(s->ctx, recs, n, lost);
    for (size_t k = 0; k < n; k++)
      rill_buf_release(&recs[k].payload);
    /* A damaged record under CORRUPT_STOP: hand over what came before it,
     * then (on the next round, when it is first) step past it rather than
     * spin on it, counted in the log's skipped: never delivered, never
     * passed over unsaid. */
    bool damaged = !n && rc == RILL_ECORRUPT;
    if (damaged)
      rill__log_count_skipped(s->log, 1);
    s->next = n ? recs[n - 1].seq + 1 : s->next + damaged;
  }
  return NULL;
}

int rill_log_subscribe(rill_log_sub_t **out, rill_log_t *l, uint64_t from, rill_log_sub_cb cb,
                       void *ctx) {
  if (!l || !cb || !out)
    return rill__err(RILL_EINVAL, "log subscribe: NULL log, callback or out");
  rill_log_sub_t *s = rill__calloc(1, sizeof *s);
  if (!s)
    return rill__err(RILL_ENOMEM, "log subscribe: no memory");
  *s = (rill_log_sub_t){.log = l, .cb = cb, .ctx = ctx, .next = from};
  int e = pthread_create(&s->tid, NULL, sub_main, s);
  if (e) {
    rill__free(s);
    return rill__err(-e, "log subscribe: pthread_create failed");
  }
  *out = s;
  return 0;
}

uint64_t rill_log_unsubscribe(rill_log_sub_t *s) {
  if (!s)
    return 0;
  __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
  pthread_join(s->tid, NULL);
  uint64_t next = s->next;
  rill__free(s);
  return next;
}
