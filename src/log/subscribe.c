/*
 * Log subscribers: a thread per subscriber that waits on the log and hands
 * the callback what became visible, up to CHUNK records at a time.
 */
#include <pthread.h>

#include "core/internal.h"
#include "log/log_internal.h"
#include "rill/log.h"

#define CHUNK 64u

struct rill_log_sub {
  rill_log_t *log;
  rill_log_sub_cb cb;
  void *ctx;
  uint64_t next;
  int stop; /* atomic */
  pthread_t tid;
};

/* Releases recs[0..n), one atomic subtraction a run of records of one
 * segment (read_range took their references that way): all but the run's
 * last view go at once, which cannot reach zero while that one is held,
 * and the last goes through rill_buf_release, which frees the segment's
 * mapping when it was the last. Release ordering, as every release. */
static void release_recs(rill_log_record_t *recs, size_t n) {
  for (size_t k = 0; k < n;) {
    rill__buf_store_t *st = recs[k].payload.store;
    size_t e = k + 1;
    while (e < n && recs[e].payload.store == st)
      e++;
    if (st && e - k > 1)
      __atomic_fetch_sub(&st->refs, (uint32_t)(e - k - 1), __ATOMIC_RELEASE);
    for (; k < e - 1; k++)
      recs[k].payload = RILL_BUF_EMPTY;
    rill_buf_release(&recs[k++].payload);
  }
}

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
    release_recs(recs, n);
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
