/*
 * Redis as a peer of the log and net suites: hiredis to a redis-server on
 * 127.0.0.1:$RILL_REDIS_PORT (default 6390, the port scripts/redis.sh
 * starts one on). Internal to `rill bench`.
 */
#ifndef RILL_BENCH_PEER_REDIS_H
#define RILL_BENCH_PEER_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"

/** The port: $RILL_REDIS_PORT when set, else 6390. */
int bench_redis_port(void);

/** A connection to 127.0.0.1:port with a 1 s connect timeout, or NULL when
 *  no server answers. hiredis keeps that timeout for every read as well; a
 *  connection that waits longer (a subscriber) sets its own with
 *  redisSetTimeout. */
redisContext *bench_redis_connect(int port);

/** Runs a command and returns its reply (the caller frees it); dies on a
 *  lost connection or an error reply. */
redisReply *bench_redis_cmd(redisContext *c, const char *fmt, ...);

/** Runs a command whose reply is not needed; dies as bench_redis_cmd. */
void bench_redis_do(redisContext *c, const char *fmt, ...);

/** The next reply to a pipelined command (the caller frees it); dies as
 *  bench_redis_cmd. */
redisReply *bench_redis_get(redisContext *c);

/** The server's version from INFO server into out ("?" when it does not
 *  say). */
void bench_redis_version(redisContext *c, char *out, size_t cap);

/** A numeric field of INFO section's text ("aof_rewrite_in_progress"),
 *  or -1 when absent. */
long bench_redis_info_num(redisContext *c, const char *section, const char *field);

/** The note a suite prints when no server answered, its Redis rows
 *  absent. */
void bench_redis_absent(bench_ctx_t *b, int port);

/* A command formatted once, as redis-benchmark does, and sent many times:
 * the client then costs what a tuned client costs (a copy into the output
 * buffer and a reply parsed), not a format string walked per command. Its
 * last argument is the payload, rewritten in place between sends. */
typedef struct bench_redis_pre {
  char *cmd; /* the whole command, in the protocol (redisFormatCommand's) */
  size_t len;
  uint8_t *payload; /* the last argument's bytes, inside cmd */
  size_t payload_len;
} bench_redis_pre_t;

/** Formats the command (hiredis's format: "XADD %s * f %b") into p; the
 *  last argument is the payload, which must be at least 8 bytes. Dies when
 *  the format does not parse. */
void bench_redis_pre_init(bench_redis_pre_t *p, const char *fmt, ...);

void bench_redis_pre_free(bench_redis_pre_t *p);

/** Sends p n times, window commands appended (redisAppendFormattedCommand)
 *  and then their window replies read, as `redis-benchmark -P window`
 *  does. Before each send the payload's first 8 bytes get *ctr, which
 *  then counts up. Every reply must be of type want (REDIS_REPLY_STRING
 *  for XADD, REDIS_REPLY_INTEGER for PUBLISH); dies on another, or on a
 *  lost connection. */
void bench_redis_pipeline(redisContext *c, bench_redis_pre_t *p, uint64_t n, unsigned window,
                          uint64_t *ctr, int want);

#endif
