/*
 * The rill server: one event loop per core (epoll, level triggered,
 * non-blocking sockets), each owning the connections it accepted. Every
 * loop has the listening socket in its epoll set with EPOLLEXCLUSIVE, so
 * the kernel hands each new connection to one of them.
 *
 * What a connection's loop does alone needs no lock: its receive buffer,
 * which frames are decoded from in place (a publish is appended to its
 * log straight from it), its send queue and its subscriptions. What
 * loops share is locked or atomic:
 *   - the registry of topics and services (`reg`, taken on BIND,
 *     SUBSCRIBE, FETCH, SERVE, ASK and when a connection goes);
 *   - the asks in flight (`asks_mu`), so a reply arriving on the
 *     provider's loop finds its asker on another; held over a run of
 *     asks and replies read together, and then taken before `reg`;
 *   - a connection's cross-loop send queue (`xlock`): a frame for a
 *     connection of another loop (an ask, a reply, a cancellation) goes
 *     there, and its loop moves it to its own queue when woken;
 *   - a topic's per-loop subscriber counts, so a loop that appended to a
 *     topic wakes only the loops with subscribers to it.
 * A loop is woken through an intrusive MPSC stack (pushing allocates
 * nothing: the nodes live in the topic and the connection) and, when it
 * may be asleep in epoll_wait, an eventfd write. Connections are
 * refcounted: an ask or a provider entry holds a reference, so another
 * loop can queue a frame on a connection that its own loop is closing;
 * the frame is then dropped, and the memory goes with the last reference.
 *
 * Flow control. A connection is read only while its send queue is under
 * half its limit, so a client that floods requests without reading the
 * answers is held back by TCP, not by our memory; one whose queue passes
 * the limit anyway is cut off with a reason. What a connection's
 * requests send to another (an ask to its provider) is held to that
 * one's room: past half its limit the asker is refused (EBUSY), so no
 * client can get another cut off; a reply that takes its asker's queue
 * past half stops the server reading the provider until the asker has
 * read (held_on). Subscriptions deliver only
 * as far as the credits their client granted, and only while the send
 * queue has room. Acknowledged publishes waiting for durability count
 * too: past RILL__ACKS_MAX waiting, the connection is not read.
 *
 * Durability without stalling. Under RILL_SERVER_SYNC_GROUP the server opens
 * the logs without a sync policy and runs one syncer thread: a loop that
 * appends marks the topic, the syncer fdatasyncs each marked topic (one
 * sync covers every append made before it, from every loop: group commit
 * across connections and loops) and wakes the loops whose acknowledged
 * publishes were waiting. No loop ever waits on the disk.
 *
 * Services: a SERVE registers the connection as a provider of a name; an
 * ASK goes to the providers in turn, under an id the server gives it, and
 * the provider's REPLY goes back under the asker's id. An ask ends with
 * its reply, its cancellation, its deadline (swept every 100 ms), or
 * either side going away; the other side is told.
 *
 * The server's files, one idea each (the shared structures are in
 * server_internal.h):
 *   server.c            create, run, stop, destroy: options and data_dir
 *   server_loop.c       the event loops: epoll, the inbox of wakeups, sweeps
 *   server_conn.c       connections: accept, HELLO, reading and decoding
 *                       frames, the channel tables, settling and closing
 *   server_sendq.c      the send queue: frames out, by copy or by reference,
 *                       and the cross-loop queue
 *   server_topic.c      the topic registry: index, references, open
 *   server_topic_dir.c  topics on disk: TOPICS, TOPIC_INFO, TOPIC_DELETE,
 *                       the disk budget's scan
 *   server_publish.c    BIND, PUBLISH, PUBLISH_BATCH and their ACKs
 *   server_stream.c     streamed PUBLISHes put together from CHUNKs
 *   server_deliver.c    SUBSCRIBE, CREDIT, FETCH: records out to clients
 *   server_sync.c       group commit: the syncer and the acks it releases
 *   server_ask.c        SERVE, ASK, REPLY, CANCEL: services and asks
 *   server_hold.c       the reply hold: a provider held to its asker's pace
 *   server_log.c        the log callback's lines, rate-limited by kind
 *   server_stats.c      counters, STATS and the metrics endpoint's text
 * and, shared with the client and the metrics endpoint, addr.c: host
 * names and addresses.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "net/addr.h"
#include "net/server_internal.h"

/* Makes data_dir the server's: created when missing, a directory the
 * server can write (a probe file is created and removed, so a read-only
 * or foreign directory fails here rather than at every publish), and no
 * other server's: its lock file stays flocked while the server lives (a
 * lock that goes with the process, however it ends), and holds the pid of
 * the server that has it, for the message of the next one. */
static int data_dir_take(rill_server_t *s) {
  const char *d = s->o.data_dir;
  struct stat st;
  if (mkdir(d, 0755) != 0 && errno != EEXIST)
    return rill__err_errno("server: cannot create the data directory %s", d);
  if (stat(d, &st) != 0)
    return rill__err_errno("server: data directory %s", d);
  if (!S_ISDIR(st.st_mode))
    return rill__err(RILL_EINVAL, "server: data directory %s is not a directory", d);
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/.rill-probe-%ld", d, (long)getpid()) >= (int)sizeof path)
    return rill__err(RILL_EINVAL, "server: data directory path too long");
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, "x", 1) != 1) {
    int rc = rill__err_errno("server: data directory %s is not writable", d);
    if (fd >= 0) {
      close(fd);
      unlink(path);
    }
    return rc;
  }
  close(fd);
  unlink(path);
  snprintf(path, sizeof path, "%s/.rill-server.lock", d);
  s->dir_lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->dir_lock < 0)
    return rill__err_errno("server: cannot open %s", path);
  if (flock(s->dir_lock, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char pid[24] = {0};
    ssize_t n = pread(s->dir_lock, pid, sizeof pid - 1, 0);
    close(s->dir_lock);
    s->dir_lock = -1;
    if (e != EWOULDBLOCK)
      return rill__err(-e, "server: cannot lock %s: %s", path, strerror(e));
    long p = n > 0 ? strtol(pid, NULL, 10) : 0;
    if (p > 0)
      return rill__err(RILL_EBUSY,
                       "server: data directory %s is in use by another server (pid %ld)", d, p);
    return rill__err(RILL_EBUSY, "server: data directory %s is in use by another server", d);
  }
  char pid[24];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(s->dir_lock, 0) != 0 || pwrite(s->dir_lock, pid, (size_t)n, 0) != n)
    return rill__err_errno("server: cannot write %s", path);
  return 0;
}

char *rill__srv_str_dup(const char *str) {
  size_t n = strlen(str) + 1;
  char *d = rill__malloc(n);
  return d ? memcpy(d, str, n) : NULL;
}

/* topic_opts and their match strings, the server's own. */
static int topic_opts_copy(rill_server_t *s, const rill_server_opts_t *o) {
  s->o.topic_opts = NULL;
  s->o.ntopic_opts = 0;
  if (!o->ntopic_opts)
    return 0;
  rill_server_topic_opts_t *t = rill__calloc(o->ntopic_opts, sizeof *t);
  if (!t)
    return rill__err(RILL_ENOMEM, "server: no memory");
  s->o.topic_opts = t;
  for (uint32_t i = 0; i < o->ntopic_opts; i++, s->o.ntopic_opts++) {
    t[i] = o->topic_opts[i];
    if (!(t[i].match = rill__srv_str_dup(o->topic_opts[i].match)))
      return rill__err(RILL_ENOMEM, "server: no memory");
  }
  return 0;
}

/* Every connection and every topic holds descriptors: with max_conns and
 * max_topics all in use the server must not run out, or accept fails
 * with EMFILE while clients wait. The soft RLIMIT_NOFILE is raised as far
 * as that needs (up to the hard limit); past the hard limit the
 * configuration is refused, naming both numbers. */
static int fd_budget(const rill_server_opts_t *o) {
  uint64_t need = (uint64_t)o->max_conns + (uint64_t)o->max_topics * FDS_PER_TOPIC +
                  (uint64_t)o->loops * 3 + FDS_FIXED; /* a loop: epoll, eventfd, spare */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return rill__err_errno("server: getrlimit(RLIMIT_NOFILE)");
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
    return 0;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
    return rill__err(RILL_EINVAL,
                     "server: max_conns (%u) and max_topics (%u, %u descriptors each) need %llu "
                     "file descriptors, but RLIMIT_NOFILE allows %llu (hard limit): lower them, or "
                     "raise the limit (ulimit -n)",
                     o->max_conns, o->max_topics, FDS_PER_TOPIC, (unsigned long long)need,
                     (unsigned long long)rl.rlim_max);
  rl.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    return rill__err_errno("server: raising RLIMIT_NOFILE to %llu for max_conns (%u) and "
                           "max_topics (%u)",
                           (unsigned long long)need, o->max_conns, o->max_topics);
  return 0;
}

int rill_server_create(rill_server_t **out, const rill_server_opts_t *opts) {
  if (!out || !opts || !opts->data_dir)
    return rill__err(RILL_EINVAL, "server: NULL out, opts or data_dir");
  *out = NULL;
  rill_server_opts_t o = *opts;
  if (!o.host)
    o.host = "127.0.0.1";
  if (!o.max_conns)
    o.max_conns = 1024;
  if (!o.max_body)
    o.max_body = RILL_NET_DEFAULT_BODY;
  if (!o.handshake_timeout_ns)
    o.handshake_timeout_ns = 5000000000ull;
  if (!o.idle_timeout_ns)
    o.idle_timeout_ns = 300000000000ull;
  if (!o.sub_credits_max)
    o.sub_credits_max = 65536;
  if (!o.tx_limit)
    o.tx_limit = (size_t)64 << 20;
  if (!o.max_topics)
    o.max_topics = 4096;
  if (!o.max_message)
    o.max_message = (uint64_t)64 << 20;
  if (!o.max_asks_per_conn)
    o.max_asks_per_conn = 4096;
  if (!o.max_asks)
    o.max_asks = 65536;
  if (!o.max_serves_per_conn)
    o.max_serves_per_conn = 1024;
  if (!o.max_serves)
    o.max_serves = 65536;
  if (!o.max_binds_per_conn)
    o.max_binds_per_conn = 4096;
  if (!o.max_binds)
    o.max_binds = 262144;
  if (!o.max_subs_per_conn)
    o.max_subs_per_conn = 4096;
  if (!o.max_subs)
    o.max_subs = 262144;
  if (!o.log_rate)
    o.log_rate = 10;
  if (!o.max_disk)
    o.max_disk = DEFAULT_MAX_DISK;
  if (!o.loops) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o.loops = n < 1 ? 1 : n > (long)MAX_LOOPS ? MAX_LOOPS : (uint32_t)n;
  }
  if (o.loops > MAX_LOOPS)
    return rill__err(RILL_EINVAL, "server: %u loops, at most %u", o.loops, MAX_LOOPS);
  if (o.max_body < 4096 || o.max_body > RILL_NET_MAX_BODY)
    return rill__err(RILL_EINVAL, "server: max_body %u not in 4 KiB..64 MiB", o.max_body);
  if (o.max_message < o.max_body || o.max_message > UINT32_MAX)
    return rill__err(RILL_EINVAL, "server: max_message not in max_body..4 GiB");
  uint64_t assembly_max = 4 * o.max_message;
  if (o.tx_limit < 4 * ((size_t)o.max_body + RILL_NET_HDR))
    return rill__err(RILL_EINVAL, "server: tx_limit under four frames of max_body");
  if (o.segment_bytes &&
      (o.segment_bytes % 4096 || o.segment_bytes < (64u << 10) || o.segment_bytes > (2ull << 30)))
    return rill__err(RILL_EINVAL, "server: segment_bytes not a multiple of 4 KiB in 64 KiB..2 GiB");
  if (o.retain_age_ns > MAX_AGE_NS)
    return rill__err(RILL_EINVAL, "server: retain_age over 100 years");
  if (o.ntopic_opts && !o.topic_opts)
    return rill__err(RILL_EINVAL, "server: ntopic_opts without topic_opts");
  for (uint32_t i = 0; i < o.ntopic_opts; i++) {
    const rill_server_topic_opts_t *e = &o.topic_opts[i];
    size_t ml = e->match ? strlen(e->match) : 0;
    bool prefix = ml && e->match[ml - 1] == '*';
    if (!ml ||
        (prefix ? ml > 1 && !rill_net_name_ok(e->match, ml - 1) : !rill_net_name_ok(e->match, ml)))
      return rill__err(RILL_EINVAL,
                       "server: topic_opts[%u]: match is a topic name, or its start "
                       "and '*'",
                       i);
    if (e->segment_bytes && (e->segment_bytes % 4096 || e->segment_bytes < (64u << 10) ||
                             e->segment_bytes > (2ull << 30)))
      return rill__err(RILL_EINVAL,
                       "server: topic_opts[%u] (%s): segment_bytes not a multiple "
                       "of 4 KiB in 64 KiB..2 GiB",
                       i, e->match);
    if (e->retain_age_ns > MAX_AGE_NS && e->retain_age_ns != RILL_SERVER_RETAIN_NONE)
      return rill__err(RILL_EINVAL, "server: topic_opts[%u] (%s): retain_age over 100 years", i,
                       e->match);
  }
  if (o.token && strlen(o.token) > RILL_NET_MAX_TOKEN)
    return rill__err(RILL_EINVAL, "server: token over %u bytes", RILL_NET_MAX_TOKEN);
  int rc = fd_budget(&o);
  if (rc)
    return rc;
  uint16_t port = o.any_port ? 0 : o.port ? o.port : RILL_NET_PORT;
  struct addrinfo *ai = NULL;
  if ((rc = rill__addr_resolve(o.host, port, true, "server", &ai)))
    return rc;
  rill_server_t *s = rill__calloc(1, sizeof *s);
  /* Aligned by hand: the loops' histograms are cache-line aligned. */
  void *mem = rill__calloc(1, o.loops * sizeof(struct loop) + RILL_CACHELINE);
  if (!s || !mem) {
    freeaddrinfo(ai);
    rill__free(s);
    rill__free(mem);
    return rill__err(RILL_ENOMEM, "server: no memory");
  }
  struct loop *loops =
      (struct loop *)(((uintptr_t)mem + RILL_CACHELINE - 1) & ~(uintptr_t)(RILL_CACHELINE - 1));
  s->loops_mem = mem;
  s->o = o;
  s->assembly_max = assembly_max;
  s->nloops = o.loops;
  s->loops = loops;
  s->lfd = s->stopfd = s->dir_lock = -1;
  for (uint32_t i = 0; i < s->nloops; i++)
    loops[i].ep = loops[i].wakefd = loops[i].spare = -1;
  pthread_mutex_init(&s->reg, NULL);
  pthread_cond_init(&s->opened, NULL);
  pthread_mutex_init(&s->asks_mu, NULL);
  pthread_mutex_init(&s->log_mu, NULL);
  /* The strings are the server's own: the caller's may be on its stack. */
  s->o.host = s->o.data_dir = s->o.token = s->o.metrics = NULL;
  s->o.topic_opts = NULL;
  s->o.ntopic_opts = 0;
  if (!(s->o.host = rill__srv_str_dup(o.host)) ||
      !(s->o.data_dir = rill__srv_str_dup(o.data_dir)) ||
      (o.token && !(s->o.token = rill__srv_str_dup(o.token))) ||
      (o.metrics && !(s->o.metrics = rill__srv_str_dup(o.metrics)))) {
    rc = rill__err(RILL_ENOMEM, "server: no memory");
    goto undo_s;
  }
  if ((rc = topic_opts_copy(s, &o)))
    goto undo_s;
  if ((rc = data_dir_take(s)))
    goto undo_s;
  rill__srv_deleted_dirs_remove(s->o.data_dir);
  s->disk = (rill_log_budget_t){.limit = o.max_disk == RILL_SERVER_DISK_UNLIMITED ? 0 : o.max_disk,
                                .what = "the server's max_disk"};
  rill__srv_disk_scan(s);
  /* The topic index: a bucket per topic there can be, to a power of two. */
  s->topic_mask = 255;
  while (s->topic_mask < o.max_topics - 1 && s->topic_mask < (1u << 20) - 1)
    s->topic_mask = s->topic_mask * 2 + 1;
  s->topic_idx = rill__calloc(s->topic_mask + 1, sizeof *s->topic_idx);
  if (!s->topic_idx) {
    rc = rill__err(RILL_ENOMEM, "server: no memory");
    goto undo_s;
  }
  if (getrandom(&s->server_id, sizeof s->server_id, GRND_NONBLOCK) != sizeof s->server_id)
    s->server_id = rill_time_wall_ns();
  if (getrandom(&s->chan_mul, sizeof s->chan_mul, GRND_NONBLOCK) != sizeof s->chan_mul)
    s->chan_mul = (uint32_t)(s->server_id >> 17) ^ 0x9e3779b9u;
  s->chan_mul |= 1; /* odd: multiplying permutes the keys */
  rc = rill__addr_listen(ai, 1024, SOCK_NONBLOCK, "server", &s->lfd, &s->port);
  freeaddrinfo(ai);
  ai = NULL;
  if (rc)
    goto undo_s;
  s->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->stopfd < 0) {
    rc = rill__err_errno("server: eventfd");
    goto undo_s;
  }
  for (uint32_t i = 0; i < s->nloops; i++)
    if ((rc = rill__srv_loop_init(s, &loops[i], i)))
      goto undo_s;
  /* As many first buffers as connections (pages are touched only when a
   * connection uses them). */
  if ((rc = rill_iopool_create(&s->rxpool,
                               &(rill_iopool_opts_t){.buf_size = RX_MIN, .count = o.max_conns})))
    goto undo_s;
  s->started_ns = rill_time_ns();
  if (o.metrics && (rc = rill__metrics_http_start(&s->metrics, s->o.metrics, rill__srv_render, s)))
    goto undo_s;
  *out = s;
  return 0;
undo_s:
  if (ai)
    freeaddrinfo(ai);
  rill_server_destroy(s);
  return rc;
}

uint16_t rill_server_port(const rill_server_t *s) { return s->port; }

uint16_t rill_server_metrics_port(const rill_server_t *s) {
  return s->metrics ? rill__metrics_http_port(s->metrics) : 0;
}

void rill_server_stop(rill_server_t *s) {
  uint64_t one = 1;
  ssize_t w = write(s->stopfd, &one, sizeof one);
  (void)w;
}

int rill_server_run(rill_server_t *s) {
  int rc = 0;
  /* Relaxed: the syncer starts after it, and pthread_create orders it. */
  __atomic_store_n(&s->stopping, false, __ATOMIC_RELAXED);
  if (s->o.sync == RILL_SERVER_SYNC_GROUP) {
    if ((rc = pthread_create(&s->syncer, NULL, rill__srv_syncer_main, s)))
      return rill__err(-rc, "server: cannot start the syncer");
    s->syncing = true;
  }
  uint32_t started = 1;
  for (; started < s->nloops; started++)
    if ((rc = pthread_create(&s->loops[started].th, NULL, rill__srv_loop_main,
                             &s->loops[started]))) {
      rc = rill__err(-rc, "server: cannot start loop %u", started);
      rill_server_stop(s);
      break;
    }
  rill__srv_loop_main(&s->loops[0]);
  for (uint32_t i = 1; i < started; i++)
    pthread_join(s->loops[i].th, NULL);
  if (s->syncing) {
    /* Release: the loops are joined; the syncer's acquire load pairs. */
    __atomic_store_n(&s->stopping, true, __ATOMIC_RELEASE);
    rill__futex_bump(&s->sync_word);
    pthread_join(s->syncer, NULL);
    s->syncing = false;
  }
  /* The logs flushed: what was acknowledged was already on disk; this
   * covers what was published without acknowledgement. */
  pthread_mutex_lock(&s->reg);
  for (struct topic *t = s->topics; t; t = t->next) {
    int e = rill_log_sync(t->log);
    if (e && !rc)
      rc = e;
  }
  pthread_mutex_unlock(&s->reg);
  return rc;
}

void rill_server_destroy(rill_server_t *s) {
  if (!s)
    return;
  rill__metrics_http_stop(s->metrics); /* its render reads what is freed below */
  for (uint32_t i = 0; i < s->nloops; i++) {
    struct loop *lp = &s->loops[i];
    /* Wakeups still queued hold connection references. */
    /* Acquire, pairing with the pushers' release: the nodes' links. */
    for (struct wake *w = __atomic_exchange_n(&lp->inbox, NULL, __ATOMIC_ACQUIRE), *n; w; w = n) {
      n = w->next;
      if (w->kind == W_CONN)
        conn_put((struct conn *)((char *)w - offsetof(struct conn, xw)));
    }
    while (lp->conns)
      rill__srv_conn_close(lp, lp->conns);
    rill__free(lp->acks);
    rill__prom_free(&lp->stats);
    if (lp->ep >= 0)
      close(lp->ep);
    if (lp->wakefd >= 0)
      close(lp->wakefd);
    if (lp->spare >= 0)
      close(lp->spare);
  }
  for (struct topic *t = s->topics, *n; t; t = n) {
    n = t->next;
    rill_log_close(t->log);
    rill__free(t);
  }
  for (uint32_t b = 0; b < SVC_BUCKETS; b++)
    for (struct service *v = s->services[b], *n; v; v = n) {
      n = v->next;
      rill__free(v);
    }
  for (struct topic *t = s->dead_topics, *n; t; t = n) {
    n = t->next;
    rill_log_close(t->log);
    rill__free(t);
  }
  while (s->free_asks) {
    struct ask *a = s->free_asks;
    s->free_asks = a->next;
    rill__free(a);
  }
  rill__free(s->asks_heap);
  if (s->rxpool)
    rill_iopool_destroy(s->rxpool);
  if (s->lfd >= 0)
    close(s->lfd);
  if (s->stopfd >= 0)
    close(s->stopfd);
  if (s->dir_lock >= 0)
    close(s->dir_lock); /* the lock goes with it; the file stays, as the topics do */
  pthread_mutex_destroy(&s->reg);
  pthread_cond_destroy(&s->opened);
  pthread_mutex_destroy(&s->asks_mu);
  rill__free(s->topic_idx);
  pthread_mutex_destroy(&s->log_mu);
  rill__free((char *)s->o.host);
  rill__free((char *)s->o.data_dir);
  rill__free((char *)s->o.token);
  rill__free((char *)s->o.metrics);
  for (uint32_t i = 0; i < s->o.ntopic_opts; i++)
    rill__free((char *)s->o.topic_opts[i].match);
  rill__free((void *)s->o.topic_opts);
  rill__free(s->loops_mem);
  rill__free(s);
}
