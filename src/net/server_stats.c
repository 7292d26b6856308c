/*
 * The server's counters and metrics: summed over the loops for
 * rill_server_stats, rendered as Prometheus text for STATS and the HTTP
 * endpoint.
 */

#include "net/server_internal.h"

/* The server's metrics as Prometheus text: the loops' counters summed and
 * their histograms merged (relaxed loads: a scrape may miss the newest
 * few values, never tear one), and the topics under reg. Runs on the
 * metrics thread, or on a loop for STATS. */
int rill__srv_render(void *ctx, rill__prom_t *p) {
  rill_server_t *s = ctx;
  rill__metrics_snap_t snap_ = {0}, *snap = &snap_; /* on the stack: aligned for its histograms */
  rill_server_stats(s, &snap->st);
  pthread_mutex_lock(&s->asks_mu);
  snap->asks_in_flight = s->asks_open;
  pthread_mutex_unlock(&s->asks_mu);
  snap->uptime_s = (double)(rill_time_ns() - s->started_ns) / 1e9;
  snap->loops = s->nloops;
  for (uint32_t i = 0; i < s->nloops; i++) {
    rill_hist_merge(&snap->publish_ack, &s->loops[i].publish_ack);
    rill_hist_merge(&snap->ask, &s->loops[i].ask);
  }
  int rc = 0;
  pthread_mutex_lock(&s->reg);
  snap->serves = s->nserves;
  snap->binds = __atomic_load_n(&s->nbinds, __ATOMIC_RELAXED); /* counts */
  snap->subs = __atomic_load_n(&s->nsubs, __ATOMIC_RELAXED);
  size_t n = 0;
  for (struct topic *t = s->topics; t; t = t->next)
    n++;
  rill__metrics_topic_t *topics = n ? rill__calloc(n, sizeof *topics) : NULL;
  struct topic **held = n ? rill__calloc(n, sizeof *held) : NULL;
  if (n && (!topics || !held)) {
    rc = rill__err(RILL_ENOMEM, "metrics: no memory");
    n = 0; /* no reference taken */
    goto unlock_reg;
  }
  n = 0;
  for (struct topic *t = s->topics; t; t = t->next) {
    if (t->opening)
      continue; /* no log yet */
    /* A reference until rendered: a delete may otherwise free the name. */
    topic_ref(t);
    held[n] = t;
    rill__metrics_topic_t *m = &topics[n++];
    m->name = t->name;
    m->next_seq = rill_log_next(t->log);
    for (uint32_t i = 0; i < s->nloops; i++) {
      const struct tloop *tl = &t->per[i];
      m->appended += __atomic_load_n(&tl->appended, __ATOMIC_RELAXED);
      m->appended_bytes += __atomic_load_n(&tl->bytes, __ATOMIC_RELAXED);
      m->subscribers += __atomic_load_n(&tl->nsubs, __ATOMIC_RELAXED);
    }
  }
unlock_reg:
  pthread_mutex_unlock(&s->reg);
  if (!rc) {
    snap->topics = topics;
    snap->ntopics = n;
    rill__metrics_render_server(p, snap);
    rc = rill__prom_status(p);
  }
  for (size_t i = 0; i < n; i++)
    topic_put(s, held[i]);
  rill__free(held);
  rill__free(topics);
  return rc;
}

void rill__srv_on_stats(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill__prom_reset(&lp->stats);
  int rc = rill__srv_render(lp->s, &lp->stats);
  if (rc)
    rill__srv_send_error(lp, c, 0, f->id, rc, rill_errmsg());
  else if (lp->stats.len > lp->s->o.max_body)
    rill__srv_send_error(
        lp, c, 0, f->id, RILL_EMSGSIZE,
        "STATS: the metrics are over max_body; scrape the HTTP endpoint (--metrics)");
  else
    rill__srv_send_frame(lp, c, RILL_F_STATS, 0, 0, f->id, 0, lp->stats.buf,
                         (uint32_t)lp->stats.len);
}

void rill_server_stats(const rill_server_t *s, rill_server_stats_t *st) {
  uint64_t sum[NSTATS] = {0};
  for (uint32_t i = 0; i < s->nloops; i++)
    for (size_t k = 0; k < NSTATS; k++)
      sum[k] += __atomic_load_n(&s->loops[i].st[k], __ATOMIC_RELAXED); /* see stat_add */
  memcpy(st, sum, sizeof *st);
  st->conns_open = __atomic_load_n(&s->nconns, __ATOMIC_RELAXED);
  st->disk_bytes = rill_log_budget_used(&s->disk);
  st->disk_max = s->disk.limit;
}
