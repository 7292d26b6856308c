/*
 * rill net: the rill server's TCP protocol. This first part is
 * the wire format: frames with a fixed 24-byte header, the handshake, and
 * the decoders the server and client share (docs/FORMATS.md, "Protocol",
 * has every byte). The server, the client and the tools build on it.
 *
 * A frame is its header and `len` body bytes. Decoding checks the header
 * (known type, known flags, length within the connection's maximum) and
 * points into the bytes it was given, copying nothing: a body can then be
 * appended to a log or sliced as a rill_buf straight from the receive
 * buffer. Bad input is an error code, never a crash or a read outside the
 * bytes given.
 *
 * The header follows docs/DESIGN.md's API convention (a NULL handle is
 * undefined; rill_server_destroy and rill_client_close take NULL), with
 * two departures: the encoders (rill_frame_header, rill_net_*_encode)
 * take the buffer they write first, as memcpy does, and the readers
 * (rill_client_next, rill_client_next_ask) take the message they fill
 * before their timeout, as rill_ipc_route_recv does.
 */
#ifndef RILL_NET_H
#define RILL_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "mem.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RILL_NET_MAGIC        0x4c4c4952u /* "RILL", the HELLO body's first bytes */
#define RILL_NET_VERSION      1u
#define RILL_NET_HDR          24u         /* frame header bytes */
#define RILL_NET_PORT         7450u       /* rill serve's default */
#define RILL_NET_MAX_BODY     (64u << 20) /* the most any frame body may be */
#define RILL_NET_DEFAULT_BODY (1u << 20)  /* bodies above stream in chunks */
#define RILL_NET_MAX_TOKEN    256u
#define RILL_NET_MAX_NAME     200u /* topic, service and client names */

/** Frame types. Requests carry the client's id, echoed by the answer. */
typedef enum rill_frame_type {
  RILL_F_HELLO = 1, /* c->s, first frame: magic, version, token, client name */
  RILL_F_WELCOME,   /* s->c: version, limits, server id, initial credits */
  RILL_F_ERROR,     /* either way: arg = the RILL_E* code, body = message; id = the request */
  RILL_F_PING,      /* either way: answered by PONG with the same id */
  RILL_F_PONG,      /* */
  RILL_F_BYE,       /* either way: closing, no more requests (arg = RILL_E* reason) */
  RILL_F_BIND = 16, /* c->s: topic name (body) -> channel; answered by ACK */
  RILL_F_PUBLISH,   /* c->s: channel = bound topic, body = payload; ACK flag: ack once durable */
  RILL_F_PUBLISH_BATCH, /* c->s: channel, body = records, each u32 length then bytes */
  RILL_F_ACK,           /* s->c: id = the request, arg = sequence (of the first record) */
  RILL_F_SUBSCRIBE,     /* c->s: channel = subscription (client's), body = topic, arg = from */
  RILL_F_UNSUBSCRIBE,   /* c->s: channel = subscription */
  RILL_F_DELIVER,       /* s->c: channel = subscription, arg = sequence, body = payload */
  RILL_F_CREDIT,        /* either way: channel = subscription (0: publishing), arg = count */
  RILL_F_FETCH,         /* c->s: body = topic, arg = from, id = request; DELIVERs, then END */
  RILL_F_SERVE = 32,    /* c->s: channel = service (client's), body = service name */
  RILL_F_ASK,           /* c->s->provider: id = request, body = u16 name length, name, payload */
  RILL_F_REPLY,         /* provider->s->c: id = request, body = payload */
  RILL_F_CANCEL,        /* c->s->provider: id = request */
  RILL_F_CHUNK = 48,    /* either way: id = stream, body = the next piece; MORE until the last */
  RILL_F_STATS = 64,    /* c->s: id = request, no body; s->c: the metrics, Prometheus text */
  RILL_F_TOPICS,        /* c->s: body = list after this name; s->c: arg = count, names; MORE */
  RILL_F_TOPIC_INFO,    /* c->s: body = topic; s->c: RILL_NET_TOPIC_INFO_SIZE bytes */
  RILL_F_TOPIC_DELETE,  /* c->s: body = topic; answered by ACK */
} rill_frame_type_t;

/* Frame flags. A type accepts only the flags that mean something for it. */
#define RILL_FF_ACK 0x01u /* PUBLISH, PUBLISH_BATCH: answer with ACK once durable */
/* PUBLISH, ASK, REPLY, DELIVER: the body is the first chunk; arg (DELIVER:
 * id) carries the whole length, CHUNKs follow. */
#define RILL_FF_STREAM 0x02u
#define RILL_FF_MORE   0x04u /* CHUNK: more chunks follow */
#define RILL_FF_END    0x08u /* DELIVER: the last record a FETCH returns (body may be empty) */
#define RILL_FF_CREATE                                                                             \
  0x10u /* SUBSCRIBE: create the topic when it does not exist (without: RILL_ENOENT) */

/* SUBSCRIBE and FETCH `from` values besides a sequence number. */
#define RILL_NET_FROM_EARLIEST UINT64_MAX
#define RILL_NET_FROM_LATEST   (UINT64_MAX - 1)

/** A decoded frame header and where its body is. */
typedef struct rill_frame {
  uint32_t len; /* body bytes */
  uint8_t type; /* rill_frame_type_t */
  uint8_t flags;
  uint16_t channel;
  uint64_t id;
  uint64_t arg;
  const uint8_t *body; /* into the decoded bytes */
} rill_frame_t;

/** Decodes the frame at the start of the n bytes at buf. 0 with *f (body
 *  pointing into buf) and *used = RILL_NET_HDR + len. RILL_EAGAIN when
 *  the bytes hold only part of it: *used then says how many the whole
 *  frame needs (RILL_NET_HDR while the header itself is short).
 *  RILL_EMSGSIZE for a length over max_body (the connection's limit,
 *  at most RILL_NET_MAX_BODY), RILL_EPROTO for an unknown type or a flag
 *  the type does not take. Reads nothing outside [buf, buf + n). */
int rill_frame_decode(const void *buf, size_t n, uint32_t max_body, rill_frame_t *f, size_t *used);

/** Writes a frame header for a body of len bytes into hdr (RILL_NET_HDR
 *  bytes). */
void rill_frame_header(void *hdr, uint8_t type, uint8_t flags, uint16_t channel, uint64_t id,
                       uint64_t arg, uint32_t len);

/** The frame's body as a slice of the receive buffer rx that holds it
 *  (f->body must point into rx): a reference, no copy. */
int rill_frame_body_buf(const rill_frame_t *f, const rill_buf_t *rx, rill_buf_t *body);

/** The HELLO body: what a client says first. */
typedef struct rill_net_hello {
  uint16_t version;
  const uint8_t *token; /* token_len bytes, into the decoded body */
  uint16_t token_len;
  const uint8_t *name; /* the client's name, for the server's logs and stats */
  uint16_t name_len;
} rill_net_hello_t;

/** Bytes rill_net_hello_encode writes. */
size_t rill_net_hello_size(size_t token_len, size_t name_len);

/** Encodes a HELLO body into out (rill_net_hello_size bytes). RILL_EINVAL
 *  for a token over RILL_NET_MAX_TOKEN or a name over RILL_NET_MAX_NAME. */
int rill_net_hello_encode(void *out, const void *token, size_t token_len, const char *name,
                          size_t name_len);

/** Decodes a HELLO body: RILL_EVERSION for a wrong magic or an unknown
 *  version, RILL_EPROTO for lengths that do not add up or reserved bits
 *  set, RILL_EINVAL for a name that is not printable ASCII. */
int rill_net_hello_decode(const void *body, size_t len, rill_net_hello_t *h);

/** The WELCOME body: the server's answer to a HELLO it accepts. */
typedef struct rill_net_welcome {
  uint16_t version;
  uint32_t max_body;        /* the largest frame body the server takes */
  uint64_t server_id;       /* random per server start */
  uint32_t publish_credits; /* publishes the client may send before a CREDIT */
} rill_net_welcome_t;

#define RILL_NET_WELCOME_SIZE 24u

#define RILL_NET_TOPIC_INFO_SIZE 80u /* a TOPIC_INFO answer's body (FORMATS.md) */

void rill_net_welcome_encode(void *out, const rill_net_welcome_t *w);

/** RILL_EVERSION for an unknown version, RILL_EPROTO for a wrong size,
 *  reserved bytes set, or a max_body outside 4 KiB..RILL_NET_MAX_BODY. */
int rill_net_welcome_decode(const void *body, size_t len, rill_net_welcome_t *w);

/** A topic or service name's bytes: 1..RILL_NET_MAX_NAME of
 *  [A-Za-z0-9._-], not starting with '.' (the log's topic rule). */
bool rill_net_name_ok(const void *name, size_t len);

/* ---- the server ------------------------------------------------------- */

/*
 * rill serve's engine: one event loop per core (epoll, non-blocking
 * sockets) speaking the protocol above; each topic is an embedded log
 * under data_dir. Publishes are appended as they are decoded (under
 * RILL_SERVER_SYNC_GROUP their ACKs wait for a syncer thread, never the
 * loop); subscribers get what their credits allow; asks go to a
 * service's providers in turn; messages over max_body stream in CHUNKs up
 * to max_message. A frame that breaks the protocol gets an ERROR and its
 * connection is closed, and nobody else notices. Metrics: STATS over the
 * protocol, and Prometheus text over HTTP when opts.metrics is set.
 */
typedef struct rill_server rill_server_t;

/** When the topics' appends reach the disk (rill_server_opts_t.sync): the
 *  log's policies (rill_log_sync_t in rill/log.h, with the same values),
 *  named here so that a user of the server need not include the log. */
typedef enum rill_server_sync {
  /* At close only: a crash of the machine loses what the page cache held
   * (a crash of the server does not). */
  RILL_SERVER_SYNC_NEVER = 0,
  RILL_SERVER_SYNC_EVERY_N,  /* the append that completes each sync_every records syncs */
  RILL_SERVER_SYNC_INTERVAL, /* an append syncs when sync_interval_ns passed since the last */
  /* A publish is acknowledged once durable; the syncer thread's one
   * fdatasync covers every append made before it, from every loop. */
  RILL_SERVER_SYNC_GROUP,
} rill_server_sync_t;

/** Levels of the server's log lines. */
typedef enum rill_server_log_level {
  RILL_SERVER_LOG_ERROR = 0, /* the server cannot do what it should: no space, no descriptors */
  RILL_SERVER_LOG_WARN,      /* a limit refused something: max_conns, max_topics */
  RILL_SERVER_LOG_INFO,      /* topics created and deleted, connections closed and why */
} rill_server_log_level_t;

/** Receives the server's log lines (the library never prints). Called
 *  from the server's threads, one call at a time (the server serialises
 *  them), so it must be quick and must not call the server; msg is one
 *  line without its newline, valid during the call. Each kind of line is
 *  rate-limited to opts.log_rate a second; the lines a second dropped are
 *  counted in a line of their own ("... suppressed N similar lines"). */
typedef void (*rill_server_log_cb)(void *ctx, rill_server_log_level_t level, const char *msg);

/** The log options of the topics whose names match, over the server's
 *  (rill_server_opts_t.topic_opts). A field of 0 takes the server's
 *  value; RILL_SERVER_RETAIN_NONE for a retention field means no limit of
 *  that kind for these topics, whatever the server's. */
typedef struct rill_server_topic_opts {
  const char *match;      /* a topic name, or a name's start and '*' ("logs-*", "*": all) */
  uint64_t segment_bytes; /* for topics created from now on; 64 KiB..2 GiB, a multiple of 4 KiB */
  uint64_t retain_bytes, retain_count, retain_age_ns;
} rill_server_topic_opts_t;

#define RILL_SERVER_RETAIN_NONE UINT64_MAX

/** rill_server_opts_t.max_disk: the topics' files are bounded only by the
 *  filesystem. */
#define RILL_SERVER_DISK_UNLIMITED UINT64_MAX

/* The strings (host, data_dir, token, metrics) and topic_opts are copied
 * by rill_server_create: the caller's may go once it returns. */
typedef struct rill_server_opts {
  /* A name or an IPv4 or IPv6 address ("::1" or "[::1]") to listen on, at
   * the first of its addresses that binds; default "127.0.0.1" (loopback). */
  const char *host;
  uint16_t port;                 /* default RILL_NET_PORT */
  bool any_port;                 /* listen on a free port instead (rill_server_port says which) */
  const char *data_dir;          /* where the topics' logs live; required */
  const char *token;             /* clients must present it in HELLO; NULL: none */
  uint32_t max_conns;            /* default 1024 */
  uint32_t max_body;             /* largest frame body taken, 4 KiB..64 MiB; default 1 MiB */
  uint64_t handshake_timeout_ns; /* HELLO must arrive within; default 5 s; RILL_FOREVER: no bound */
  /* A silent connection is PINGed after half of it and closed after it;
   * default 5 min; RILL_FOREVER: never (and no PINGs). */
  uint64_t idle_timeout_ns;
  uint32_t sub_credits_max; /* credits a subscription may hold; default 65536 */
  size_t tx_limit; /* bytes queued for one connection before it is cut off; default 64 MiB */
  rill_server_sync_t sync;   /* the topics' sync policy; default RILL_SERVER_SYNC_NEVER */
  uint64_t sync_every;       /* RILL_SERVER_SYNC_EVERY_N: records; the log's default when 0 */
  uint64_t sync_interval_ns; /* RILL_SERVER_SYNC_INTERVAL; the log's default when 0 */
  uint32_t loops;            /* event-loop threads; default one per online CPU */
  /* "HOST:PORT" ("[::1]:PORT" for IPv6) to serve Prometheus text over
   * HTTP on; NULL: none. */
  const char *metrics;
  uint64_t max_message; /* largest message streamed in CHUNKs, max_body..4 GiB; default 64 MiB */
  uint32_t max_topics;  /* topics the server creates at most (BIND, SUBSCRIBE); default 4096 */
  uint32_t max_asks_per_conn;   /* asks one connection may have in flight; default 4096 */
  uint32_t max_asks;            /* asks in flight on the server; default 65536 */
  uint32_t max_serves_per_conn; /* SERVE registrations one connection may hold; default 1024 */
  uint32_t max_serves;          /* SERVE registrations on the server; default 65536 */
  /* Bytes the topics' segment and index files may take in total, the
   * files found in data_dir at start included; default 64 GiB;
   * RILL_SERVER_DISK_UNLIMITED: no bound but the filesystem's. A publish
   * whose record needs a file to grow past it is refused with
   * RILL_ENOSPC naming it; deleting topics and retention give room back. */
  uint64_t max_disk;
  uint32_t max_binds_per_conn; /* channels one connection may have bound; default 4096 */
  uint32_t max_binds;          /* channels bound on the server; default 262144 */
  uint32_t max_subs_per_conn;  /* subscriptions one connection may hold; default 4096 */
  uint32_t max_subs;           /* subscriptions on the server; default 262144 */
  /* The topics' log options (rill_log_opts_t; 0: the log's defaults).
   * segment_bytes applies to topics created from now on (an existing
   * topic keeps its own); retention applies to every topic opened.
   * retain_age_ns at most 100 years. */
  uint64_t segment_bytes;
  uint64_t retain_bytes, retain_count, retain_age_ns;
  /* Per topic, over those: the first entry whose match fits a topic's
   * name gives its options (copied at create, match strings included). */
  const rill_server_topic_opts_t *topic_opts;
  uint32_t ntopic_opts;
  rill_server_log_cb log; /* NULL: the server logs nothing */
  void *log_ctx;          /* log's first argument */
  uint32_t log_rate;      /* lines of one kind a second at most; default 10 */
} rill_server_opts_t;

/** Opens data_dir and starts listening (nothing is served until
 *  rill_server_run). data_dir is created when missing and must be a
 *  directory the server can write (RILL_EINVAL when it is not a
 *  directory, the errno of a failed probe file, RILL_EACCES say, when it
 *  cannot write there); it is locked for the server's life (flock on
 *  data_dir/.rill-server.lock), so a second server on it fails with
 *  RILL_EBUSY naming the first one's pid. RILL_EINVAL for options out of
 *  range, or for max_conns and max_topics that need more file descriptors
 *  than RLIMIT_NOFILE's hard limit allows (the soft limit is raised as far
 *  as they need), or the socket's errno negated (-EADDRINUSE for a
 *  port in use, say). */
int rill_server_create(rill_server_t **out, const rill_server_opts_t *opts);

/** The port it listens on (the one picked when opts.port was 0). */
uint16_t rill_server_port(const rill_server_t *s);

/** The port of its Prometheus endpoint (opts.metrics), 0 when it has none. */
uint16_t rill_server_metrics_port(const rill_server_t *s);

/** Serves until rill_server_stop: then tells every client BYE, flushes
 *  the logs, and returns 0 (or the first error that stopped it). */
int rill_server_run(rill_server_t *s);

/** Asks a running server to stop. Async-signal-safe (one write to an
 *  eventfd), so a SIGTERM handler may call it. */
void rill_server_stop(rill_server_t *s);

/** Frees a server that is not running: closes the logs and sockets.
 *  NULL is a no-op. */
void rill_server_destroy(rill_server_t *s);

/** Counters since create (read while it runs with relaxed atomics). */
typedef struct rill_server_stats {
  uint64_t conns_accepted, conns_open, conns_refused, conns_dropped;
  uint64_t frames_in, frames_out, bytes_in, bytes_out;
  uint64_t published, delivered, errors_sent;
  uint64_t asks_refused;   /* over max_asks_per_conn, max_asks, or a provider's full queue */
  uint64_t serves_refused; /* over max_serves_per_conn or max_serves */
  uint64_t disk_bytes;     /* the topics' segment and index files now (a gauge) */
  uint64_t disk_max;       /* max_disk; 0 when unlimited */
  uint64_t binds_refused;  /* over max_binds_per_conn or max_binds */
  uint64_t subs_refused;   /* over max_subs_per_conn or max_subs */
  uint64_t replies_held;   /* providers not read while their asker's queue was over half tx_limit */
} rill_server_stats_t;

/** A snapshot of the server's counters, from any thread. */
void rill_server_stats(const rill_server_t *s, rill_server_stats_t *st);

/* ---- the client ----------------------------------------------------------- */

/*
 * One connection to a rill server, used from one thread at a time (share
 * it between threads only under a lock of your own). Two styles mix on it:
 *
 * - Blocking calls (bind, publish with ack, subscribe, serve, ask, ping,
 *   stats) send their request and read until its answer comes back by id.
 * - Callbacks (rill_client_ask_async, rill_client_subscribe_cb,
 *   rill_client_serve_cb) run only inside rill_client_poll (and inside
 *   rill_client_ask_async when it waits for a free slot), never inside a
 *   blocking call: what a blocking call reads for a callback is kept, in
 *   order, and dispatched by the next poll.
 *
 * Small frames (unacknowledged publishes, async asks, replies and credits
 * made inside a poll pass) are coalesced in a 64 KiB send buffer that goes
 * out when it fills, with the next frame sent at once, at the end of each
 * poll pass, or on rill_client_flush. Steady-state pipelined asks,
 * callback subscriptions and callback services allocate nothing.
 *
 * Reconnect (opts.reconnect): when the connection breaks (a send or
 * receive error, end of stream, BYE from a stopping server) the next call
 * that needs it dials again with exponential backoff and jitter, redoes
 * HELLO (a blocking call waits for that up to reconnect_limit_ns after
 * the break; poll, next and next_ask only within their own timeout),
 * re-binds bound channels under the same numbers, re-subscribes
 * each subscription from one past the last sequence it received (or its
 * first start) with the credits it had left and the flags it was made
 * with (RILL_CLIENT_SUB_CREATE makes its topic again), so a subscriber
 * sees neither a gap nor a duplicate, and re-serves services. A
 * re-subscription the server refuses for good (RILL_ENOENT: its topic was
 * deleted meanwhile and it was made without CREATE; RILL_EACCES,
 * RILL_EINVAL, ...) is dropped, and only it: the connection and the other
 * registrations go on, and its reader is told once, by the next
 * rill_client_next or rill_client_poll (or rill_client_credit on it),
 * which returns the refusal with a message naming the topic and the
 * channel (rill_client_next also puts the channel in m->sub); its
 * channel is free from then on. What was in flight at the
 * break fails with RILL_ECONNRESET: blocking calls return it (the caller
 * may retry; the first call after a break nobody noticed yet is the one
 * that finds it, and an acknowledged publish that got it may or may not
 * have been appended, so retrying it is at least once), async asks get
 * it in their callback, asks a provider had
 * taken are void (the server cancelled them). Unacknowledged publishes
 * still in the send buffer, or sent but not yet appended, are lost: they
 * are at most once; use acknowledged publishes for at least once. Without
 * reconnect a broken connection is RILL_ECLOSED from then on.
 */
typedef struct rill_client rill_client_t;

typedef struct rill_client_opts {
  /* A name or an IPv4 or IPv6 address, resolved at every dial, its
   * addresses tried in turn; default "127.0.0.1". The strings are copied
   * at connect. */
  const char *host;
  uint16_t port;     /* default RILL_NET_PORT */
  const char *token; /* NULL: none */
  const char *name;  /* shown in the server's logs; default "rill" */
  /* Per request, and the longest a send waits for the server to take a
   * byte (past it the connection is dropped: RILL_ETIMEDOUT); default 10 s
   * (0), RILL_FOREVER: no bound. */
  uint64_t timeout_ns;
  uint32_t max_inflight;   /* async asks in flight at once; default 4096 */
  bool reconnect;          /* dial again when the connection breaks (see above) */
  uint64_t backoff_min_ns; /* first wait between attempts; default 10 ms */
  uint64_t backoff_max_ns; /* the wait doubles up to this; default 2 s */
  /* Give up (RILL_ECLOSED) after this long down; default 30 s;
   * RILL_FOREVER: never. */
  uint64_t reconnect_limit_ns;
  /* Largest ask, reply or delivery sent or taken in CHUNKs; default 64
   * MiB. A delivery over it is skipped (RILL_EMSGSIZE from next or poll).
   * Asks and replies coming in at once may hold 4 max_messages together:
   * one past that fails with RILL_ENOBUFS. */
  uint64_t max_message;
} rill_client_opts_t;

/** Connects and shakes hands. The server's refusal comes back as its code
 *  (RILL_EACCES for a wrong token, ...) with its message in rill_errmsg;
 *  a socket error as -errno; RILL_ETIMEDOUT. The first connection is not
 *  retried, even with opts.reconnect. */
int rill_client_connect(rill_client_t **out, const rill_client_opts_t *opts);

/** Says BYE (sending what is buffered with it, waiting at most
 *  opts.timeout_ns for the server to take it) and closes. Async asks
 *  whose callback has not run get it first: with the answer if it had
 *  come, RILL_ECLOSED if not (the client is closed for good by then).
 *  NULL is a no-op. */
void rill_client_close(rill_client_t *c);

/** Binds topic to a channel for publishing (channels are numbered by the
 *  client from 1). Binds, subscriptions and services share 65,535
 *  channels: with all of them live, RILL_EFULL. When the server's answer
 *  does not come within opts.timeout_ns (here, on subscribe and serve),
 *  RILL_ETIMEDOUT, and the connection is dropped: the server may have
 *  taken it, and only a new connection says for sure that it did not. */
int rill_client_bind(rill_client_t *c, const char *topic, uint16_t *channel);

/** Publishes to a bound channel. With ack, waits for the server's ACK and
 *  puts the record's sequence number in *seq. Without, the frame goes into
 *  the send buffer (see above); the server's error, if any, is returned by
 *  the next call that waits for an answer (after doing its own work) or by
 *  rill_client_poll. A message near or over the server's max_body (within
 *  8 KiB of it) is sent at once in CHUNKs, straight from data (the server
 *  takes up to its max_message, EMSGSIZE beyond). */
int rill_client_publish(rill_client_t *c, uint16_t channel, const void *data, uint32_t len,
                        bool ack, uint64_t *seq);

/** The largest frame body the server takes (its WELCOME's max_body, of the
 *  connection now or the last one): a PUBLISH_BATCH's records with their
 *  4-byte lengths must fit in it, and a message within 8 KiB of it or over
 *  streams. */
uint32_t rill_client_max_body(const rill_client_t *c);

#define RILL_NET_MAX_BATCH 256u /* records in one PUBLISH_BATCH */

/** Publishes n records (1..RILL_NET_MAX_BATCH) in one PUBLISH_BATCH:
 *  appended together and in order, or not at all (but for a batch larger
 *  than one of the topic's segments that the disk or the server's
 *  max_disk cuts short: its RILL_ENOSPC message says how many records
 *  were stored, from which sequence). With ack, waits and
 *  puts the first record's sequence in *first (the others follow it);
 *  without, buffered like rill_client_publish. The records with a 4-byte
 *  length each must fit in max_body (RILL_EMSGSIZE). */
int rill_client_publish_batch(rill_client_t *c, uint16_t channel, const rill_iov_t *recs, size_t n,
                              bool ack, uint64_t *first);

/** Subscribes to topic from `from` (a sequence, RILL_NET_FROM_EARLIEST or
 *  RILL_NET_FROM_LATEST) with credits deliveries allowed; *sub gets the
 *  subscription's channel and *start (may be NULL) where it starts. Its
 *  deliveries are read with rill_client_next, and the caller grants more
 *  credits with rill_client_credit. */
int rill_client_subscribe(rill_client_t *c, const char *topic, uint64_t from, uint32_t credits,
                          uint16_t *sub, uint64_t *start);

/** Grants a subscription n more deliveries. For one a reconnect dropped
 *  (see above), its refusal instead, once (as next or poll would say it). */
int rill_client_credit(rill_client_t *c, uint16_t sub, uint32_t n);

/** A delivered message: its subscription, sequence and payload (valid
 *  until the next call on this client; in a callback, until it returns).
 *  A record the server streams in CHUNKs (over max_body) is put together
 *  first: callers only ever see whole messages. */
typedef struct rill_client_msg {
  uint16_t sub;
  uint64_t seq;
  const uint8_t *data;
  uint32_t len;
} rill_client_msg_t;

/** Called from rill_client_poll for each delivery of a callback
 *  subscription, in sequence order. */
typedef void (*rill_client_msg_cb)(void *ctx, const rill_client_msg_t *m);

/** Subscribes like rill_client_subscribe, but deliveries go to cb from
 *  rill_client_poll, and credits are managed here: `window` deliveries
 *  (0: 1024) are granted at first, and each time half of them were
 *  handed to cb that half is granted again, so the subscriber never
 *  stalls and the server never holds more than the window for it. */
int rill_client_subscribe_cb(rill_client_t *c, const char *topic, uint64_t from, uint32_t window,
                             rill_client_msg_cb cb, void *ctx, uint16_t *sub, uint64_t *start);

/** Ends a subscription (either kind); deliveries already on the way are
 *  dropped. */
int rill_client_unsubscribe(rill_client_t *c, uint16_t sub);

/** Waits up to timeout_ns for the next delivery of a polling
 *  subscription (0: takes what has come and does not wait; RILL_FOREVER:
 *  no bound): 0, RILL_ETIMEDOUT when none came (at once for 0), or the
 *  error the server sent
 *  (RILL_ECLOSED when it said BYE or went away and the client does not
 *  reconnect; with reconnect it dials again within the timeout and goes
 *  on). RILL_EMSGSIZE, once, for a record over opts.max_message, which
 *  is skipped: the next call goes on after it. A subscription a reconnect
 *  dropped (see above) is its refusal, once, with m->sub its channel
 *  (after the deliveries it had received before), and the next call goes
 *  on with the others. */
int rill_client_next(rill_client_t *c, rill_client_msg_t *m, uint64_t timeout_ns);

/** Serves `service`: asks to that name may now come to this client (the
 *  server takes the providers of a name in turn), read with
 *  rill_client_next_ask. *ch (may be NULL) gets the channel asks for it
 *  arrive on. */
int rill_client_serve(rill_client_t *c, const char *service, uint16_t *ch);

/** An ask to a service this client serves. */
typedef struct rill_client_ask {
  uint16_t service; /* the channel rill_client_serve gave */
  uint64_t id;      /* reply with it */
  const uint8_t
      *data; /* valid until the next call on this client (in a callback: until it returns) */
  uint32_t len;
  uint64_t deadline_ns; /* the time the asker gave it, from when it was sent; 0: none */
} rill_client_ask_t;

/* Asks and replies near or over max_body (within 8 KiB of it, as for
 * publishes) travel in CHUNKs: the sender streams them straight from the
 * caller's bytes, and the receiver puts them together (allocating for
 * them, up to opts.max_message) and hands over one whole ask or reply,
 * exactly as for a small one. One over max_message is refused before
 * anything is sent (RILL_EMSGSIZE); one coming in over it is dropped: an
 * ask is answered with an ERROR of RILL_EMSGSIZE, and an ask whose reply
 * it was fails with RILL_EMSGSIZE. */

/** Called from rill_client_poll for each ask to a callback service. It
 *  may answer at once with rill_client_reply (buffered, sent at the end
 *  of the poll pass) or later, from anywhere, with a copy of a->id. */
typedef void (*rill_client_ask_cb)(void *ctx, const rill_client_ask_t *a);

/** Serves `service` with a callback run from rill_client_poll. */
int rill_client_serve_cb(rill_client_t *c, const char *service, rill_client_ask_cb cb, void *ctx,
                         uint16_t *ch);

/** Waits up to timeout_ns (0: not at all; RILL_FOREVER: no bound) for
 *  the next ask to a service served without a callback: 0, RILL_ETIMEDOUT
 *  when none came, or the server's connection-level error. */
int rill_client_next_ask(rill_client_t *c, rill_client_ask_t *a, uint64_t timeout_ns);

/** Answers ask id. Inside rill_client_poll (a callback) the reply is
 *  buffered and sent at the end of the pass; elsewhere, or when it streams
 *  (near or over max_body), it is sent at once. RILL_EMSGSIZE over
 *  opts.max_message.
 *  A reply to an ask that was cancelled or timed out meanwhile is dropped
 *  by the server. */
int rill_client_reply(rill_client_t *c, uint64_t id, const void *data, uint32_t len);

/** Fails ask id instead of answering it (an ERROR frame the server passes
 *  on): the asker's ask fails with code, a negative RILL_E* code (RILL_EINVAL
 *  for any other), and msg (NULL: none; cut at 1 KiB) in its rill_errmsg.
 *  Buffered or sent like rill_client_reply. */
int rill_client_reply_error(rill_client_t *c, uint64_t id, int code, const char *msg);

/** Asks `service` and waits for the reply: *reply points at it (valid
 *  until the next call on this client). timeout_ns is the deadline the
 *  server enforces: RILL_FOREVER for none (as long as the provider
 *  takes); 0 tries once without waiting, and as no reply is there before
 *  an ask is sent, it is RILL_ETIMEDOUT at once with nothing sent.
 *  RILL_ETIMEDOUT when the deadline passes,
 *  RILL_ENOENT when nobody serves the name, RILL_ECONNRESET when the
 *  provider went away (or the connection broke, with reconnect),
 *  RILL_EMSGSIZE for an ask or a reply over max_message (the client's or
 *  the server's), or the code the provider failed it with
 *  (rill_client_reply_error). */
int rill_client_ask(rill_client_t *c, const char *service, const void *req, uint32_t len,
                    uint64_t timeout_ns, const uint8_t **reply, uint32_t *reply_len);

/** How an async ask ended: status 0 with the reply (valid until the
 *  callback returns), or the error (RILL_ETIMEDOUT, RILL_ENOENT,
 *  RILL_ECONNRESET, RILL_ECLOSED when the client closes, ...) with
 *  reply NULL. */
typedef void (*rill_client_reply_cb)(void *ctx, int status, const uint8_t *reply, uint32_t len);

/** Asks without waiting: the ASK goes into the send buffer and cb runs
 *  exactly once, from rill_client_poll, when the reply or an error comes.
 *  At most opts.max_inflight asks are in flight; when that many are, this
 *  drives the connection (polls, running callbacks) until one ends, or
 *  returns RILL_ETIMEDOUT after opts.timeout_ns without one (RILL_EFULL
 *  when called from a callback, which must not wait). timeout_ns as in
 *  rill_client_ask (0: RILL_ETIMEDOUT at once, nothing sent), but the
 *  client adds no deadline of its own: an ask with RILL_FOREVER whose
 *  provider never answers stays in flight until the provider or the
 *  connection goes. A non-zero return means cb will not run. */
int rill_client_ask_async(rill_client_t *c, const char *service, const void *req, uint32_t len,
                          uint64_t timeout_ns, rill_client_reply_cb cb, void *ctx);

/** Sends what is buffered, waits up to timeout_ns (0: not at all;
 *  RILL_FOREVER: until something comes) for input, and dispatches everything that has arrived:
 * reply callbacks, subscription callbacks, service callbacks, then sends what they buffered.
 * Returns the number of callbacks run, or a negative error (a connection-level error from the
 * server, an earlier unacknowledged publish's error, a subscription a reconnect dropped (once, see
 * above), RILL_ECLOSED when the connection is gone for good); callbacks may have run before an
 * error. With reconnect, a broken connection is dialled again within the timeout and is not an
 * error. */
int rill_client_poll(rill_client_t *c, uint64_t timeout_ns);

/** Sends what the send buffer holds now. */
int rill_client_flush(rill_client_t *c);

/** Round trip of a PING, in ns. */
int rill_client_ping(rill_client_t *c, uint64_t *rtt_ns);

/** The server's metrics as text (a STATS request; named for what it
 *  gives, as it is no stats getter of the one shape: it asks the server,
 *  so it waits and can fail): the Prometheus text goes into
 *  buf, NUL-terminated, and *len gets its length. RILL_ENOBUFS when cap
 *  is not more than that length (*len still says it), or the server's
 *  error (a server without metrics answers ERROR). */
int rill_client_server_stats_text(rill_client_t *c, char *buf, size_t cap, size_t *len);

/* ---- topics ------------------------------------------------------------------ */

/* Topics are made by a BIND (publishing) and by a subscription that asks
 * for it; a subscription without the ask, a FETCH and the calls below
 * never make one. An older server (before these frame types) answers
 * them with a protocol ERROR and closes the connection. */

#define RILL_CLIENT_SUB_CREATE 0x1u /* rill_client_subscribe_ex: create a missing topic */

/** rill_client_subscribe with flags: RILL_CLIENT_SUB_CREATE creates the
 *  topic when it does not exist. Without it (and from rill_client_subscribe)
 *  a topic that does not exist is RILL_ENOENT, "no topic 'NAME'". RILL_EINVAL
 *  for an unknown flag. A subscription made again on reconnect has the
 *  same flags: with CREATE it makes its topic again if it was deleted
 *  meanwhile, without it is dropped (see the reconnect paragraph above). */
int rill_client_subscribe_ex(rill_client_t *c, const char *topic, uint64_t from, uint32_t credits,
                             uint32_t flags, uint16_t *sub, uint64_t *start);

/** rill_client_subscribe_cb with flags, as rill_client_subscribe_ex takes
 *  them (RILL_CLIENT_SUB_CREATE), kept for its re-subscriptions too. */
int rill_client_subscribe_cb_ex(rill_client_t *c, const char *topic, uint64_t from, uint32_t window,
                                uint32_t flags, rill_client_msg_cb cb, void *ctx, uint16_t *sub,
                                uint64_t *start);

/** Called by rill_client_topics with each name, NUL-terminated (valid
 *  until it returns), in byte order. */
typedef void (*rill_client_topic_cb)(void *ctx, const char *name);

/** Lists the server's topics (every one in its data directory, open or
 *  not), calling cb for each; as many TOPICS requests as it takes. 0, or
 *  the server's error, or RILL_EPROTO for an answer that does not decode. */
int rill_client_topics(rill_client_t *c, rill_client_topic_cb cb, void *ctx);

/** What rill_client_topic_info tells about a topic. */
typedef struct rill_topic_info {
  uint64_t first, next;   /* records held are [first, next) */
  uint64_t bytes;         /* of records (headers included) */
  uint64_t disk_bytes;    /* the topic's files' blocks on disk (what fallocate reserved counts) */
  uint64_t segment_bytes; /* its segment size */
  uint64_t segments;      /* segment files */
  uint64_t retain_bytes;  /* the server's retention for it; 0: none */
  uint64_t retain_count;  /* likewise, records */
  uint64_t retain_age_ns; /* likewise, age */
  uint32_t subscribers;   /* subscriptions to it now, on every connection */
  uint32_t publishers;    /* channels bound to it now */
} rill_topic_info_t;

/** Describes topic: RILL_ENOENT when there is none (it is not created). */
int rill_client_topic_info(rill_client_t *c, const char *topic, rill_topic_info_t *info);

/** Deletes topic and its records from the server's disk: RILL_ENOENT when
 *  there is none, RILL_EBUSY while a connection subscribes to it or has a
 *  channel bound to it (the message says how many; they must go first). */
int rill_client_topic_delete(rill_client_t *c, const char *topic);

#ifdef __cplusplus
}
#endif
#endif /* RILL_NET_H */
