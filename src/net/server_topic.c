/*
 * The topic registry: topics by name (a hash index under reg), their log
 * options (the server's, with topic_opts over them), their references, and
 * opening or creating one outside reg while it is marked `opening`.
 */
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "net/server_internal.h"

static struct topic **topic_bucket(rill_server_t *s, const void *name, size_t len) {
  return &s->topic_idx[rill_hash64(name, len) & s->topic_mask];
}

/* Under reg. */
static struct topic *topic_find(rill_server_t *s, const void *name, size_t len) {
  struct topic *t = *topic_bucket(s, name, len);
  while (t && !(strlen(t->name) == len && !memcmp(t->name, name, len)))
    t = t->next_idx;
  return t;
}

/* Under reg: takes t out of the registry's list and its index. */
void rill__srv_topic_unlink(rill_server_t *s, struct topic *t) {
  struct topic **pp = &s->topics;
  while (*pp != t)
    pp = &(*pp)->next;
  *pp = t->next;
  for (pp = topic_bucket(s, t->name, strlen(t->name)); *pp != t; pp = &(*pp)->next_idx)
    ;
  *pp = t->next_idx;
}

/* The first topic_opts entry whose match fits name, or NULL. */
static const rill_server_topic_opts_t *topic_opts_of(const rill_server_t *s, const char *name,
                                                     size_t len) {
  for (uint32_t i = 0; i < s->o.ntopic_opts; i++) {
    const rill_server_topic_opts_t *e = &s->o.topic_opts[i];
    size_t ml = strlen(e->match);
    bool prefix = ml && e->match[ml - 1] == '*';
    if (prefix ? len >= ml - 1 && !memcmp(name, e->match, ml - 1)
               : len == ml && !memcmp(name, e->match, len))
      return e;
  }
  return NULL;
}

/* A per-topic field over the server's: 0 takes the server's, NONE is no
 * limit (0 to the log). */
static uint64_t topic_over(uint64_t server, uint64_t topic) {
  return topic == RILL_SERVER_RETAIN_NONE ? 0 : topic ? topic : server;
}

/* The log options of topic name: the server's, with its topic_opts entry
 * over them. */
void rill__srv_topic_log_opts(const rill_server_t *s, const char *name, size_t len,
                              rill_log_opts_t *lo) {
  const rill_server_topic_opts_t *e = topic_opts_of(s, name, len);
  rill_server_topic_opts_t none = {0};
  if (!e)
    e = &none;
  lo->segment_bytes = e->segment_bytes ? e->segment_bytes : s->o.segment_bytes;
  lo->retain_bytes = topic_over(s->o.retain_bytes, e->retain_bytes);
  lo->retain_count = topic_over(s->o.retain_count, e->retain_count);
  lo->retain_age_ns = topic_over(s->o.retain_age_ns, e->retain_age_ns);
}

/* What topic_put does with the last reference: the topic (deleted: the
 * registry's is gone) leaves the dead list, its log closes, whose files
 * then give their blocks back, and it no longer counts toward
 * max_topics. Not under reg, which this takes. */
void rill__srv_topic_free(rill_server_t *s, struct topic *t) {
  pthread_mutex_lock(&s->reg);
  struct topic **pp = &s->dead_topics;
  while (*pp != t)
    pp = &(*pp)->next;
  *pp = t->next;
  s->ntopics--;
  pthread_mutex_unlock(&s->reg);
  rill_log_close(t->log);
  rill__free(t);
}

/* Under reg: the topic called name, once no open of it is under way (one
 * that is waits for it: the open, outside reg, broadcasts `opened`). */
struct topic *rill__srv_topic_find_open(rill_server_t *s, const void *name, size_t len) {
  struct topic *t;
  while ((t = topic_find(s, name, len)) && t->opening)
    pthread_cond_wait(&s->opened, &s->reg);
  return t;
}

/* The topic called name: open already, or opened from data_dir, or (with
 * create) a new one. Every topic costs a directory, a segment and
 * descriptors until it is deleted or the server stops, so only a publisher's
 * BIND and a SUBSCRIBE create one, and at most max_topics exist. A found
 * topic comes with a reference for the caller (topic_put it). The disk is
 * touched outside reg (an open may recover a topic, a creation syncs three
 * times): the topic is in the registry meanwhile, marked `opening`, so it
 * counts toward max_topics, a second open of the name waits for this one,
 * and a delete is refused. */
struct topic *rill__srv_topic_get(rill_server_t *s, const uint8_t *name, size_t len, bool create,
                                  int *rc) {
  pthread_mutex_lock(&s->reg);
  struct topic *t = rill__srv_topic_find_open(s, name, len);
  if (t) {
    topic_ref(t); /* under reg: delete drops the registry's only after */
    pthread_mutex_unlock(&s->reg);
    return t;
  }
  if (s->ntopics >= s->o.max_topics) {
    pthread_mutex_unlock(&s->reg);
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%.*s", s->o.data_dir, (int)len, (const char *)name);
    if (!create && stat(path, &st) != 0) { /* a name that is not there is that, full or not */
      *rc = rill__err(RILL_ENOENT, "no topic '%.*s'", (int)len, (const char *)name);
      return NULL;
    }
    *rc = rill__err(RILL_EBUSY, "the server holds max_topics (%u) topics already", s->o.max_topics);
    rill__srv_log(s, L_TOPIC, RILL_SERVER_LOG_WARN,
                  "refused to open topic '%.*s': max_topics (%u) reached", (int)len,
                  (const char *)name, s->o.max_topics);
    return NULL;
  }
  t = rill__calloc(1, sizeof *t + s->nloops * sizeof t->per[0]);
  if (!t) {
    pthread_mutex_unlock(&s->reg);
    *rc = rill__err(RILL_ENOMEM, "topic: no memory");
    return NULL;
  }
  memcpy(t->name, name, len);
  t->opening = true;
  for (uint32_t i = 0; i < s->nloops; i++)
    t->per[i] = (struct tloop){.t = t, .w.kind = W_TOPIC};
  /* The registry's and the caller's. Plain: no other thread sees t
   * before it is in the registry, under reg. */
  t->refs = 2;
  t->next = s->topics;
  s->topics = t;
  struct topic **b = topic_bucket(s, t->name, len);
  t->next_idx = *b;
  *b = t;
  s->ntopics++;
  pthread_mutex_unlock(&s->reg);

  char path[PATH_MAX];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", s->o.data_dir, t->name);
  bool existed = stat(path, &st) == 0;
  if (!create && !existed) {
    *rc = rill__err(RILL_ENOENT, "no topic '%s'", t->name);
  } else {
    /* Group commit is the syncer's job: the log itself never waits. */
    t->group = s->o.sync == RILL_SERVER_SYNC_GROUP;
    rill_log_sync_t sync = t->group ? RILL_LOG_SYNC_NEVER : (rill_log_sync_t)s->o.sync;
    rill_log_opts_t lo = {.sync = sync,
                          .sync_every = s->o.sync_every,
                          .sync_interval_ns = s->o.sync_interval_ns,
                          .budget = &s->disk};
    rill__srv_topic_log_opts(s, t->name, len, &lo);
    *rc = rill_log_open(&t->log, s->o.data_dir, t->name, &lo);
  }
  if (!*rc) {
    if (!existed)
      rill__srv_log(s, L_TOPIC, RILL_SERVER_LOG_INFO, "topic '%s' created", t->name);
    /* What open recovered is on disk. Relaxed: other loops find the topic
     * only through the registry, under reg, whose unlock publishes this. */
    __atomic_store_n(&t->durable, rill_log_next(t->log), __ATOMIC_RELAXED);
  }
  pthread_mutex_lock(&s->reg);
  t->opening = false;
  if (*rc) {
    rill__srv_topic_unlink(s, t);
    s->ntopics--;
  }
  pthread_cond_broadcast(&s->opened);
  pthread_mutex_unlock(&s->reg);
  if (*rc) {
    rill__free(t);
    return NULL;
  }
  return t;
}
