/*
 * The rill server's private structures and the functions its files share
 * (server.c says which file holds what). Nothing here is exported: the
 * functions are rill__srv_* and hidden. The helpers the hot paths call for
 * every frame or record (queue lengths, channel lookups, holds, wakeups)
 * are static inline here, as they were when the server was one file.
 */
#ifndef RILL_NET_SERVER_INTERNAL_H
#define RILL_NET_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "net/metrics.h"
#include "rill/log.h"
#include "rill/net.h"

#define RX_MIN        (64u << 10)
#define DELIVER_BATCH 64u
#define MAX_LOOPS     64u
#define ASK_BUCKETS   4096u
/* Acknowledged publishes one connection may have waiting. */
#define ACKS_MAX   65536u
#define MAX_AGE_NS (100ull * 365 * 86400 * 1000000000) /* retain_age: time plus it cannot wrap */
#define TX_REFS    64u   /* payloads one connection's queue holds by reference */
#define REF_MIN    2048u /* smaller payloads are copied: one iovec per frame costs more */
/* A streamed PUBLISH with no piece for this long goes. */
#define STREAM_STALL_NS  10000000000ull
#define DEFAULT_MAX_DISK ((uint64_t)64 << 30)
#define ASK_FREE_MAX     1024u /* asks kept for reuse; more are freed (a burst's memory goes back) */

/* A provider held back by its asker's queue (held_on) for this long has
 * the ask it was replying to ended: a held provider serves nobody else,
 * so an asker that never reads must not hold it for ever. */
#define HOLD_MAX_NS 10000000000ull
#define SVC_BUCKETS 4096u

/* Descriptors a topic holds at least: its directory, its lock, one
 * segment's data and index. */
#define FDS_PER_TOPIC 4u

/* Descriptors the server holds besides connections and topics: listener,
 * stop eventfd, the metrics endpoint's, stdio and some to spare. */
#define FDS_FIXED (32u + RILL__METRICS_MAX_CONNS)

struct loop;
struct conn;
struct topic;

/* A loop's counters: rill_server_stats_t's fields as an array of atomic
 * words, each written by its loop only. */
#define NSTATS     (sizeof(rill_server_stats_t) / sizeof(uint64_t))
#define STAT(name) (offsetof(rill_server_stats_t, name) / sizeof(uint64_t))

_Static_assert(sizeof(rill_server_stats_t) % sizeof(uint64_t) == 0, "stats: u64 fields only");

/* A wakeup pushed onto a loop's inbox by another thread. The nodes are
 * embedded in what they are about, so waking allocates nothing. */
enum { W_TOPIC, W_CONN, W_SYNC };

struct wake {
  struct wake *next;
  uint8_t kind;
};

/* A topic as one loop sees it: that loop's subscribers and its wakeup. */
struct tloop {
  struct topic *t;
  struct sub *subs; /* only this loop touches them */
  uint32_t nsubs;   /* read by loops deciding whom to wake (atomic) */
  bool notified;    /* a W_TOPIC is on this loop's inbox (atomic) */
  struct wake w;
  bool touched; /* appended to during this loop's current read */
  struct tloop *next_touched;
  uint32_t held; /* this loop's users of the topic (see hold); only this loop touches it */
  uint64_t appended, bytes; /* by this loop (its one writer), for the metrics (atomic) */
  char pad[48];             /* loops' entries on separate cache lines */
};

struct topic {
  char name[RILL_NET_MAX_NAME + 1];
  rill_log_t *log;
  struct topic *next;     /* in the registry */
  struct topic *next_idx; /* in its bucket of the registry's index */
  bool group;             /* acks wait for the syncer */
  uint64_t durable;       /* group: records below are synced (atomic) */
  uint64_t failed_upto;   /* group: a sync failed for records below (atomic) */
  int sync_err;           /* the failed sync's error (atomic) */
  bool sync_wanted;       /* on the syncer's queue (atomic) */
  struct topic *next_sync;
  uint32_t binders; /* channels bound to it, on every connection; under reg */
  bool deleted;     /* TOPIC_DELETE took it out of the registry; under reg */
  bool opening;     /* in the registry, its log being opened (log NULL); under reg */
  /* References: the registry's one while the topic is in it, one per loop
   * using it (tloop.held from 0), one per wakeup on another loop's inbox,
   * one while on the syncer's queue, and one for each request using it a
   * moment (topic_get's, TOPIC_INFO's, a metrics scrape's). The last one
   * closes the log and frees it (topic_put). Atomic. */
  uint32_t refs;
  struct tloop per[]; /* one per loop */
};

struct sub {
  struct conn *c;
  uint16_t ch;
  struct topic *t;
  uint64_t next;    /* sequence to deliver next */
  uint64_t credits; /* deliveries the client allows */
  /* Doubly linked (the address of what points here), so an UNSUBSCRIBE
   * unlinks at once however many subscriptions the lists hold. */
  struct sub *next_in_conn, **prev_in_conn;
  struct sub *next_in_topic, **prev_in_topic;
};

/* A connection's channels of one kind (its bound topics, its
 * subscriptions) by channel number: open addressing with linear probing,
 * at most half full, so a lookup (every PUBLISH and CREDIT) is a probe or
 * two and allocates nothing, however many channels the connection holds.
 * The hash multiplies by the server's secret odd chan_mul, so a client
 * cannot choose channels that all land in one run of slots. Loop only. */
struct chslot {
  uint32_t key; /* channel + 1; 0: empty */
  void *v;
};

struct chtab {
  struct chslot *slot; /* NULL until the first channel */
  uint32_t mask;       /* slots - 1 */
  uint32_t shift;      /* 32 - log2(slots): the hash's top bits index */
  uint32_t n;
  uint32_t mul; /* the server's chan_mul */
};

/* A service: the connections that serve it, taken in turn. Under reg. */
struct provider {
  struct conn *c; /* holds a reference */
  uint16_t ch;    /* the provider's channel for it */
  struct service *svc;
  struct provider *next_in_svc, *next_in_conn;
};

struct service {
  char name[RILL_NET_MAX_NAME + 1];
  struct provider *providers, *turn; /* turn: who gets the next ask */
  struct service *next;              /* in its bucket; freed with its last provider */
};

/* An ask's place in one of its connections' lists, and a list's ends. */
struct alink {
  struct ask *next, *prev;
};

struct alist {
  struct ask *head, *tail;
};

/* An ask in flight, by the id the server gave it. Under asks_mu; holds a
 * reference on both connections. */
struct ask {
  uint64_t sid;
  struct conn *asker, *provider;
  uint64_t cid;      /* the asker's id for it */
  uint64_t deadline; /* rill_time_ns, or 0 */
  uint64_t t0;       /* when the ASK was read, for the histogram */
  uint64_t bytes;    /* of the stream going through, to hold it to max_message */
  bool replying;     /* the provider's REPLY is streaming: its last CHUNK ends the ask */
  uint32_t heap_at;  /* its place in asks_heap plus one; 0: no deadline */
  /* In its asker's asks_made and its provider's asks_served, oldest
   * first: a connection that goes ends its own asks without a scan. */
  struct alink by_asker, by_provider;
  struct ask *next;     /* in its hash bucket, or in the free list */
  struct ask *next_cid; /* in its bucket by (asker, cid), for CANCEL */
};

/* A streamed PUBLISH being put together: its CHUNKs are copied in until
 * the last, then the whole is appended as one record. */
#define IN_STREAMS 4u

struct instream {
  uint64_t id; /* the PUBLISH's, which its CHUNKs carry */
  struct topic *t;
  uint8_t *buf; /* NULL: refused, its CHUNKs are dropped until the last */
  uint32_t len, got;
  uint64_t last_ns; /* its last piece: a stream that stalls is dropped */
  uint16_t ch;
  uint8_t flags; /* the PUBLISH's: ACK */
  bool on;
};

/* A record over max_body going out: a reference to its bytes in the log,
 * sent a chunk at a time as the send queue drains. One per connection;
 * what comes after it on the connection waits for it. */
struct outstream {
  bool on;
  bool fetch; /* ends a FETCH's answer: END follows the last chunk */
  uint16_t ch;
  uint64_t id; /* FETCH's id, or 0 */
  uint64_t seq;
  rill_buf_t data;
  size_t off;
};

/* An acknowledged publish waiting for its topic's sync. */
struct pack {
  struct conn *c; /* NULL once the connection went */
  struct topic *t;
  uint64_t id, first, last;
  uint64_t t0; /* when the PUBLISH was read */
  uint16_t ch;
};

struct conn {
  struct loop *lp; /* the loop that owns it */
  uint32_t refs;   /* atomic */
  int fd;
  bool ready;            /* HELLO accepted */
  bool closing;          /* send what is queued, then close */
  bool paused;           /* not reading: the send queue is over half full, or acks wait */
  uint8_t closing_ticks; /* sweeps since closing, with its queue not drained */
  bool pinged;           /* a keepalive PING went out since its last frame */
  uint32_t armed;        /* the events its epoll entry asks for, as last set */
  uint64_t born_ns;
  uint64_t last_ns;    /* the last whole frame: bytes dripped in do not count */
  uint64_t read_ns;    /* when the read being handled returned */
  uint64_t assembling; /* bytes of its streams being put together */
  uint8_t *rx;
  size_t rx_len, rx_cap;
  /* rx[rx_off, rx_len) is not decoded yet: a frame read in pieces stays
   * where it began while the rest of it fits after it (rx_need: its
   * whole size, once its header is in), rather than being moved to the
   * front after every read. */
  size_t rx_off, rx_need;
  bool rx_pooled; /* rx is one of the server's pool buffers (RX_MIN) */
  uint8_t *tx;
  size_t tx_off, tx_len, tx_cap;
  /* Payloads sent by reference (a record's bytes in the log), each after
   * tx byte `at`: written with the bytes around them by one sendmsg. A
   * ring, oldest at refs_head. */
  struct txref {
    size_t at;
    rill_buf_t b;
  } txrefs[TX_REFS];
  uint32_t refs_head, nrefs;
  bool refs_full;            /* a pump stopped at TX_REFS: settle pumps again once some went */
  size_t ref_bytes;          /* not yet sent */
  struct chtab binds;        /* channel -> struct topic */
  struct chtab subch;        /* channel -> struct sub */
  struct sub *subs;          /* the same subscriptions, to go through them */
  struct provider *provides; /* under reg */
  uint32_t nserves;          /* its providers; under reg */
  uint32_t nasks;            /* asks it made in flight; under asks_mu */
  uint32_t nasked;           /* asks in flight it provides for; under asks_mu */
  struct alist asks_made, asks_served; /* those asks; under asks_mu */
  uint32_t acks_waiting;
  struct instream in[IN_STREAMS];
  struct outstream out;
  /* Asks this connection is streaming: its id for each and the server's
   * (0 once the ask failed or ended: its CHUNKs are dropped). */
  struct {
    uint64_t cid, sid;
    bool on;
  } askout[IN_STREAMS];
  struct conn *prev, *next;
  bool dirty; /* frames queued by another connection's request: settle it */
  struct conn *next_dirty;
  /* Frames from other loops, under xlock. */
  pthread_mutex_t xlock;
  uint8_t *xtx;
  size_t xtx_len, xtx_cap;
  bool dead;   /* closed by its loop: drop what comes */
  bool cut;    /* xtx passed the limit: its loop closes it */
  bool xwoken; /* its W_CONN is on the loop's inbox */
  struct wake xw;
  bool xheld; /* xtx did not fit in tx: taken once tx drains (loop only) */
  /* queued() as of its loop's last settle: other loops forwarding an ask
   * read it (relaxed: an estimate, the hard limit is checked anyway). */
  size_t txq;
  /* xtx_len as of its last change (a relaxed store under xlock), for a
   * look without the lock: reply_hold's, which needs only an estimate. */
  size_t xtx_hint;
  /* A provider whose reply took its asker's queue past half tx_limit is
   * not read until that queue drains (hold_over): held_on is that asker
   * (a reference; loop only). The asker keeps the providers it holds in
   * `waiters` (each a reference, linked by next_waiter, under the
   * asker's xlock) and wakes them when its queue is under a quarter;
   * `waited` says the list may be non-empty without taking the lock. */
  struct conn *held_on;
  uint64_t held_since, held_sid; /* when the hold began; the ask whose reply made it */
  struct conn *waiters, *next_waiter;
  uint32_t nwaiters; /* on waiters; under xlock */
  bool waiting;      /* in its held_on's waiters; under that one's xlock */
  bool waited;       /* atomic */
};

struct loop {
  rill_server_t *s;
  uint32_t idx;
  pthread_t th;
  int ep, wakefd;
  struct wake *inbox; /* atomic */
  int sleeping;       /* in epoll_wait, or about to be: pushers write wakefd (atomic) */
  int spare;          /* a descriptor kept to accept-and-refuse when none is left */
  bool unlistened;    /* out of descriptors: the listener is off until the sweep */
  bool sync_woken;    /* its sync_w is on the inbox (atomic) */
  struct wake sync_w;
  struct conn *conns;
  struct conn *dirty;
  struct tloop *touched; /* topics appended to during this read */
  /* conn_decode holds asks_mu over a run of ASK and REPLY frames read
   * together (asks_run of them so far), rather than each taking it: the
   * lock order is then asks_mu before reg (on_ask's service lookup). Let
   * go before any other frame, so no log callback runs under it. */
  bool asks_held;
  uint32_t asks_run;
  struct pack *acks; /* waiting for durability, in arrival order */
  size_t cap_acks;
  size_t nacks; /* atomic */
  uint64_t last_sweep;
  uint64_t st[NSTATS];          /* this loop's share of rill_server_stats_t, by STAT() (atomic) */
  rill_hist_t publish_ack, ask; /* this loop's, one writer each */
  rill__prom_t stats;           /* the text of STATS answers, kept for the next */
  char pad[64];
};

struct rill_server {
  rill_server_opts_t o;
  int lfd, stopfd;
  uint16_t port;
  uint64_t server_id;
  uint32_t nloops;
  struct loop *loops; /* aligned to a cache line, in loops_mem */
  void *loops_mem;
  uint32_t nconns;     /* atomic */
  bool stopping;       /* atomic */
  uint64_t assembling; /* bytes of streamed publishes being put together (atomic) */
  uint64_t assembly_max;
  pthread_mutex_t reg;   /* topics and services */
  pthread_cond_t opened; /* a topic's open ended (with reg) */
  struct topic *topics;
  uint32_t ntopics;
  struct topic **topic_idx; /* by name hash, topic_mask + 1 buckets */
  uint64_t topic_mask;
  struct service *services[SVC_BUCKETS]; /* by name hash */
  uint32_t nserves;                      /* providers, all services */
  /* Channels bound and subscriptions, all connections: counts against
   * max_binds and max_subs, relaxed (they publish nothing), taken with an
   * RMW before the topic is looked up, as nconns is. */
  uint32_t nbinds, nsubs;
  uint32_t chan_mul; /* the connections' channel hash: secret, odd */
  /* Deleted topics some loop, wakeup or the syncer still uses: freed by
   * the last topic_put, or by destroy. Counted in ntopics meanwhile. */
  struct topic *dead_topics;
  uint64_t deletions; /* names the renamed directories apart */
  /* max_disk: every topic's log charges its files' growth here, and
   * retention and deletes credit it; what data_dir held at start was
   * charged then. */
  rill_log_budget_t disk;
  uint64_t started_ns;
  rill__metrics_http_t *metrics;
  rill_iopool_t *rxpool; /* connections' first receive buffers */
  pthread_mutex_t asks_mu;
  struct ask *asks[ASK_BUCKETS];     /* in flight, by sid % ASK_BUCKETS */
  struct ask *asks_cid[ASK_BUCKETS]; /* the same, by (asker, its id): CANCEL finds one at once */
  struct ask *free_asks;             /* reused: a steady stream allocates nothing */
  /* The asks with a deadline, a binary min-heap by deadline: the sweep
   * looks only at those past theirs, not at every ask in flight. Grown by
   * doubling, at most max_asks entries. */
  struct ask **asks_heap;
  uint32_t nheap, cap_heap;
  uint32_t nfree_asks; /* at most ASK_FREE_MAX */
  uint64_t next_sid, asks_open;
  int dir_lock; /* data_dir's lock file, flocked for the server's life */
  /* The log callback's lines, each kind held to log_rate a second. */
  pthread_mutex_t log_mu;
  struct logkind {
    uint64_t since; /* the start of this kind's current second */
    uint32_t lines; /* sent in it */
    uint64_t suppressed;
  } logk[8];
  /* The syncer (RILL_SERVER_SYNC_GROUP only). */
  bool syncing;
  pthread_t syncer;
  struct topic *sync_q; /* topics to sync, linked by next_sync (atomic) */
  uint32_t sync_word;
};

#define INC(lp, field, n) stat_add(&(lp)->st[STAT(field)], (n))

/* Kinds of log lines, each rate-limited on its own: a flood of refused
 * connections must not hide the one line saying the disk is full. */
enum {
  L_CONN_REFUSED, /* max_conns */
  L_TOPIC,        /* created, deleted, refused by max_topics */
  L_NOFILE,       /* EMFILE, ENFILE */
  L_NOSPC,        /* ENOSPC */
  L_IO,           /* other errors of the disk: EIO, a record that fails its checks, a sync */
  L_DROPPED,      /* connections closed by the server, and why */
  L_KINDS
};

_Static_assert(L_KINDS <= sizeof((rill_server_t *)0)->logk / sizeof(struct logkind),
               "a logk entry per kind");

/* What forwarding a frame to a connection came to. */
enum { SENT, GONE, BUSY };

/* rill_server_sync_t is the log's policies under the server's names:
 * the server passes a value on as it is. */
_Static_assert(RILL_SERVER_SYNC_NEVER == (int)RILL_LOG_SYNC_NEVER &&
                   RILL_SERVER_SYNC_EVERY_N == (int)RILL_LOG_SYNC_EVERY_N &&
                   RILL_SERVER_SYNC_INTERVAL == (int)RILL_LOG_SYNC_INTERVAL &&
                   RILL_SERVER_SYNC_GROUP == (int)RILL_LOG_SYNC_GROUP,
               "rill_server_sync_t and rill_log_sync_t differ");

#pragma GCC visibility push(hidden)

/* server.c: create, run, destroy */
char *rill__srv_str_dup(const char *str);

/* server_log.c: the log */
void rill__srv_log(rill_server_t *s, int kind, rill_server_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void rill__srv_log_flush(rill_server_t *s);
const char *rill__srv_peer_of(int fd, char *buf, size_t cap);
void rill__srv_log_answer(rill_server_t *s, int fd, int code, const char *msg);

/* server_sendq.c: the send queue */
void rill__srv_tx_drop(struct conn *c);
int rill__srv_conn_flush(struct loop *lp, struct conn *c);
bool rill__srv_send_frame(struct loop *lp, struct conn *c, uint8_t type, uint8_t flags, uint16_t ch,
                          uint64_t id, uint64_t arg, const void *body, uint32_t len);
bool rill__srv_send_frame_ref(struct loop *lp, struct conn *c, uint8_t type, uint8_t flags,
                              uint16_t ch, uint64_t id, uint64_t arg, const rill_buf_t *payload);
/* DELIVERs on channel ch of n records each under REF_MIN (copied), in
 * order: as n send_frame_ref calls would queue them. */
void rill__srv_send_delivers(struct loop *lp, struct conn *c, uint16_t ch,
                             const rill_log_record_t *recs, size_t n);
int rill__srv_xsend(struct loop *lp, struct conn *c, bool soft, uint8_t type, uint8_t flags,
                    uint16_t ch, uint64_t id, uint64_t arg, const void *body, uint32_t len);
bool rill__srv_error_to(struct loop *lp, struct conn *c, uint16_t ch, uint64_t id, int code,
                        const char *msg);
void rill__srv_send_error(struct loop *lp, struct conn *c, uint16_t ch, uint64_t id, int code,
                          const char *msg);
void rill__srv_fatal(struct loop *lp, struct conn *c, int code, const char *msg);
void rill__srv_conn_take_x(struct loop *lp, struct conn *c);

/* server_hold.c: the reply hold */
uint32_t rill__srv_waiters_take(struct conn *a, struct conn **out, uint32_t max);
void rill__srv_hold_release(struct conn *p);
bool rill__srv_hold_over(struct loop *lp, struct conn *p);
void rill__srv_reply_hold(struct loop *lp, struct conn *p, const struct ask *ask);
void rill__srv_waiters_wake(struct loop *lp, struct conn *a);

/* server_topic.c: the registry */
void rill__srv_topic_unlink(rill_server_t *s, struct topic *t);
void rill__srv_topic_log_opts(const rill_server_t *s, const char *name, size_t len,
                              rill_log_opts_t *lo);
void rill__srv_topic_free(rill_server_t *s, struct topic *t);
struct topic *rill__srv_topic_find_open(rill_server_t *s, const void *name, size_t len);
struct topic *rill__srv_topic_get(rill_server_t *s, const uint8_t *name, size_t len, bool create,
                                  int *rc);

/* server_topic_dir.c: topics on disk */
void rill__srv_deleted_dirs_remove(const char *data_dir);
void rill__srv_disk_scan(rill_server_t *s);
void rill__srv_on_topics(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_topic_info(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_topic_delete(struct loop *lp, struct conn *c, const rill_frame_t *f);

/* server_publish.c: publishing */
void rill__srv_on_bind(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_ack(struct loop *lp, struct conn *c, struct topic *t, const rill_frame_t *f,
                   uint64_t first, uint64_t last);
void rill__srv_on_publish(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_publish_batch(struct loop *lp, struct conn *c, const rill_frame_t *f);

/* asks_mu, unless conn_decode holds it over a run (asks_held). */
static inline void asks_lock(struct loop *lp) {
  if (!lp->asks_held)
    pthread_mutex_lock(&lp->s->asks_mu);
}
static inline void asks_unlock(struct loop *lp) {
  if (!lp->asks_held)
    pthread_mutex_unlock(&lp->s->asks_mu);
}

/* Unacknowledged PUBLISH frames read back to back for one topic, appended
 * together (one lock of the log, one store of its next) when the run ends:
 * at a frame of another kind or topic, or at the end of what was read.
 * Their bodies stay in rx until then. */
#define PUB_RUN 64u
struct pubrun {
  struct topic *t;
  uint32_t n;
  rill_frame_t f[PUB_RUN];
};
/* Whether f, a PUBLISH, joins r (r flushed first when it is full or of
 * another topic); false: f is not a plain unacknowledged publish to a
 * bound channel, and the caller flushes r (when r->n) and handles f
 * alone. */
bool rill__srv_pubrun_add(struct loop *lp, struct conn *c, struct pubrun *r, const rill_frame_t *f);
void rill__srv_pubrun_flush(struct loop *lp, struct conn *c, struct pubrun *r);

/* server_stream.c: streamed publishes */
void rill__srv_stream_open(struct loop *lp, struct conn *c, struct topic *t, const rill_frame_t *f);
void rill__srv_stream_drop(rill_server_t *s, struct conn *c, struct instream *in, bool keep);
void rill__srv_on_chunk(struct loop *lp, struct conn *c, const rill_frame_t *f);

/* server_deliver.c: delivery */
bool rill__srv_out_pump(struct loop *lp, struct conn *c);
void rill__srv_pump(struct loop *lp, struct sub *u);
void rill__srv_pump_topic(struct loop *lp, struct topic *t);
void rill__srv_pump_touched(struct loop *lp);
void rill__srv_sub_free(struct loop *lp, struct sub *u);
void rill__srv_on_subscribe(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_unsubscribe(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_credit(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_fetch(struct loop *lp, struct conn *c, const rill_frame_t *f);

/* server_sync.c: group commit */
void rill__srv_want_sync(rill_server_t *s, struct topic *t);
void rill__srv_durable_raise(struct topic *t, uint64_t upto);
void *rill__srv_syncer_main(void *arg);
void rill__srv_ack_later(struct loop *lp, struct conn *c, struct topic *t, uint16_t ch, uint64_t id,
                         uint64_t first, uint64_t last, uint64_t t0);
void rill__srv_acks_release(struct loop *lp);

/* server_ask.c: services and asks */
struct provider *rill__srv_serves_leave(rill_server_t *s, struct conn *c);
void rill__srv_providers_free(struct conn *c, struct provider *gone);
void rill__srv_on_serve(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_ask(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_ask_chunk(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_reply(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_client_error(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_on_cancel(struct loop *lp, struct conn *c, const rill_frame_t *f);
void rill__srv_asks_end(struct loop *lp, struct conn *gone);
void rill__srv_hold_expire(struct loop *lp, struct conn *p);
void rill__srv_asks_expire(struct loop *lp, uint64_t now);

/* server_conn.c: connections */
bool rill__srv_chtab_reserve(struct chtab *t);
void rill__srv_chtab_put(struct chtab *t, uint16_t ch, void *v);
void rill__srv_chtab_del(struct chtab *t, uint16_t ch);
bool rill__srv_limit_take(struct loop *lp, struct conn *c, const rill_frame_t *f, uint32_t n,
                          uint32_t per_conn, uint32_t *total, uint32_t max, size_t stat,
                          const char *req, const char *limit, const char *what);
void rill__srv_conn_close(struct loop *lp, struct conn *c);
void rill__srv_conn_read(struct loop *lp, struct conn *c);
void rill__srv_accept_resume(struct loop *lp);
struct conn *rill__srv_conn_open(struct loop *lp, int fd);
void rill__srv_conn_accept(struct loop *lp);
void rill__srv_conn_settle(struct loop *lp, struct conn *c);

/* server_loop.c: the loops */
void *rill__srv_loop_main(void *arg);
int rill__srv_loop_init(rill_server_t *s, struct loop *lp, uint32_t idx);

/* server_stats.c: counters and metrics */
int rill__srv_render(void *ctx, rill__prom_t *p);
void rill__srv_on_stats(struct loop *lp, struct conn *c, const rill_frame_t *f);

/* Frame bodies, as the handlers read them (and fuzz/fuzz_net_bodies.c
 * feeds them): each false for a body the request refuses. */

/* PUBLISH_BATCH: arg records (1..RILL_NET_MAX_BATCH), each a u32 length
 * and its bytes, filling the body exactly; recs[0..*n) point into it. */
bool rill__srv_batch_parse(const rill_frame_t *f, rill_iov_t recs[RILL_NET_MAX_BATCH], size_t *n);
/* FETCH: a u32 count, then a topic name. */
bool rill__srv_fetch_parse(const rill_frame_t *f, uint32_t *count);
/* ASK: a u16 name length, a service name, then the payload (the rest). */
bool rill__srv_ask_parse(const rill_frame_t *f, uint16_t *nl);

#pragma GCC visibility pop

/* Relaxed load and store, no locked instruction: the loop is the word's
 * one writer, and a scrape summing relaxed loads may miss the newest
 * increments but never sees a torn word. */
static inline void stat_add(uint64_t *w, uint64_t n) {
  __atomic_store_n(w, __atomic_load_n(w, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void conn_get(struct conn *c) { __atomic_fetch_add(&c->refs, 1, __ATOMIC_RELAXED); }

static inline void conn_put(struct conn *c) {
  if (__atomic_fetch_sub(&c->refs, 1, __ATOMIC_ACQ_REL) != 1)
    return;
  pthread_mutex_destroy(&c->xlock);
  rill__free(c->xtx);
  rill__free(c);
}

/* gcc 12 and later warn (-Wtsan) that ThreadSanitizer does not model a
 * standalone fence. The fence below and loop_main's orders a store before
 * a load on each side (Dekker's pattern), which TSan cannot see either
 * way: every word involved is atomic, so ignoring the fence can make TSan
 * report more, never hide a race (src/ipc/route.c says the same). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wtsan"
#endif

/* Pushes w onto lp's inbox; writes its eventfd only when it may sleep.
 * The seq_cst fence pairs with the one loop_main makes after it marks
 * itself sleeping and before it looks at its inbox (a store then a load
 * on each side, which only seq_cst fences order): either the loop sees
 * the push before it sleeps, or we see it sleeping and wake it. */
static inline void loop_wake(struct loop *lp, struct wake *w) {
  struct wake *h = __atomic_load_n(&lp->inbox, __ATOMIC_RELAXED);
  do
    w->next = h;
  while (!__atomic_compare_exchange_n(&lp->inbox, &h, w, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (__atomic_load_n(&lp->sleeping, __ATOMIC_RELAXED)) {
    uint64_t one = 1;
    ssize_t n = write(lp->wakefd, &one, sizeof one);
    (void)n;
  }
}

static inline struct txref *ref_at(struct conn *c, uint32_t i) {
  return &c->txrefs[(c->refs_head + i) % TX_REFS];
}

static inline size_t queued(const struct conn *c) { return c->tx_len - c->tx_off + c->ref_bytes; }

/* Room for need more bytes at the end of a queue of *len bytes: grows it
 * by doubling (the queue's limit bounds it). */
static inline bool room(uint8_t **buf, size_t *cap, size_t len, size_t need) {
  if (len + need <= *cap)
    return true;
  size_t ncap = *cap ? *cap : RX_MIN;
  while (ncap < len + need)
    ncap *= 2;
  uint8_t *n = rill__realloc(*buf, ncap);
  if (!n)
    return false;
  *buf = n;
  *cap = ncap;
  return true;
}

static inline void mark_dirty(struct loop *lp, struct conn *c) {
  if (!c->dirty) {
    c->dirty = true;
    c->next_dirty = lp->dirty;
    lp->dirty = c;
  }
}

static inline bool send_to(struct loop *lp, struct conn *c, uint8_t type, uint8_t flags,
                           uint16_t ch, uint64_t id, uint64_t arg, const void *body, uint32_t len) {
  if (c->lp == lp)
    return rill__srv_send_frame(lp, c, type, flags, ch, id, arg, body, len);
  return rill__srv_xsend(lp, c, false, type, flags, ch, id, arg, body, len) == SENT;
}

/* An ask or a piece of one, for its provider: BUSY when the provider's
 * queue is over half tx_limit, so an asker faster than the provider is
 * refused (RILL_EBUSY) instead of the provider being cut off. */
static inline int forward_to(struct loop *lp, struct conn *c, uint8_t type, uint8_t flags,
                             uint16_t ch, uint64_t id, uint64_t arg, const void *body,
                             uint32_t len) {
  if (c->lp != lp)
    return rill__srv_xsend(lp, c, true, type, flags, ch, id, arg, body, len);
  if (!c->closing && queued(c) + RILL_NET_HDR + len > lp->s->o.tx_limit / 2)
    return BUSY;
  return rill__srv_send_frame(lp, c, type, flags, ch, id, arg, body, len) ? SENT : GONE;
}

/* A reference more, from one already held. Relaxed: taking one orders
 * nothing; the holder it came from keeps the topic alive meanwhile. */
static inline void topic_ref(struct topic *t) { __atomic_fetch_add(&t->refs, 1, __ATOMIC_RELAXED); }

/* A use of t on this loop (a bound channel, a subscription, a stream, an
 * ack waiting, a pending pump): only this loop's count moves, and the
 * topic's shared reference with its first and last, so a steady
 * publisher's appends touch no shared word. The caller holds a reference
 * already (the count cannot take its first from nothing). */
static inline void hold(struct loop *lp, struct topic *t) {
  if (t->per[lp->idx].held++ == 0)
    topic_ref(t);
}

/* Drops a reference; the last one frees the topic (rill__srv_topic_free).
 * acq_rel: every use of the topic by a dropper happens before the free.
 * Not under reg, which the last one takes. */
static inline void topic_put(rill_server_t *s, struct topic *t) {
  if (__atomic_fetch_sub(&t->refs, 1, __ATOMIC_ACQ_REL) == 1)
    rill__srv_topic_free(s, t);
}

/* Ends a use taken with hold; may free t. */
static inline void unhold(struct loop *lp, struct topic *t) {
  if (--t->per[lp->idx].held == 0)
    topic_put(lp->s, t);
}

/* Marks t appended to by this loop (inline: once per PUBLISH). Subscribers are pumped once per
 * read, not once per publish: a read that brought a hundred publishes delivers them in one read of
 * the log and one run of DELIVER frames each. */
static inline void topic_touch(struct loop *lp, struct topic *t, uint64_t n, uint64_t bytes) {
  struct tloop *tl = &t->per[lp->idx];
  stat_add(&tl->appended, n); /* this loop's entry: it is the one writer */
  stat_add(&tl->bytes, bytes);
  if (!tl->touched) {
    tl->touched = true;
    tl->next_touched = lp->touched;
    lp->touched = tl;
    hold(lp, t); /* until pump_touched: the appender's bind may go first */
  }
}

static inline uint32_t chtab_home(const struct chtab *t, uint32_t key) {
  return (key * t->mul) >> t->shift;
}

/* The slot of channel ch, or NULL. */
static inline struct chslot *chtab_find(const struct chtab *t, uint16_t ch) {
  if (!t->slot)
    return NULL;
  uint32_t key = (uint32_t)ch + 1;
  for (uint32_t i = chtab_home(t, key);; i = (i + 1) & t->mask) {
    if (t->slot[i].key == key)
      return &t->slot[i];
    if (!t->slot[i].key)
      return NULL;
  }
}

static inline void *chtab_get(const struct chtab *t, uint16_t ch) {
  struct chslot *sl = chtab_find(t, ch);
  return sl ? sl->v : NULL;
}

static inline struct topic *bound(struct conn *c, uint16_t ch) { return chtab_get(&c->binds, ch); }

static inline struct sub *sub_of(struct conn *c, uint16_t ch) { return chtab_get(&c->subch, ch); }

/* Takes a place in a server-wide count held to max (nbinds, nsubs);
 * false when it is full. Relaxed: a count; the RMW keeps two loops from
 * both taking the last place. */
static inline bool count_take(uint32_t *n, uint32_t max) {
  if (__atomic_fetch_add(n, 1, __ATOMIC_RELAXED) < max)
    return true;
  __atomic_fetch_sub(n, 1, __ATOMIC_RELAXED);
  return false;
}

static inline void count_give(uint32_t *n, uint32_t k) {
  __atomic_fetch_sub(n, k, __ATOMIC_RELAXED); /* a count, as count_take */
}

/* A piece of len bytes of a streamed PUBLISH of total bytes, got of them
 * in: never past the total, and the last piece ends it exactly. */
static inline bool rill__srv_piece_fits(uint32_t total, uint32_t got, uint32_t len, bool last) {
  return len <= total - got && (!last || got + len == total);
}

#endif
