/*
 * Redis as a peer of the log and net suites (see peer_redis.h): the one
 * hiredis client both drive Redis with, so the two suites connect and
 * fail alike.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_redis.h"

#define REDIS_PORT 6390

int bench_redis_port(void) {
  const char *port = getenv("RILL_REDIS_PORT");
  return port && *port ? atoi(port) : REDIS_PORT;
}

redisContext *bench_redis_connect(int port) {
  struct timeval tv = {1, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (!c || c->err) {
    if (c)
      redisFree(c);
    return NULL;
  }
  return c;
}

static redisReply *checked(redisContext *c, redisReply *r) {
  if (!r)
    bench_die("redis: %s", c->errstr);
  if (r->type == REDIS_REPLY_ERROR)
    bench_die("redis: %s", r->str);
  return r;
}

redisReply *bench_redis_cmd(redisContext *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  return checked(c, r);
}

void bench_redis_do(redisContext *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  freeReplyObject(checked(c, r));
}

redisReply *bench_redis_get(redisContext *c) {
  void *r = NULL;
  if (redisGetReply(c, &r) != REDIS_OK || !r)
    bench_die("redis: %s", c->errstr);
  return checked(c, r);
}

void bench_redis_version(redisContext *c, char *out, size_t cap) {
  redisReply *r = redisCommand(c, "INFO server");
  const char *v = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "redis_version:") : NULL;
  char ver[32] = "?";
  if (v)
    sscanf(v + 14, "%31[0-9.]", ver);
  snprintf(out, cap, "%s", ver);
  if (r)
    freeReplyObject(r);
}

long bench_redis_info_num(redisContext *c, const char *section, const char *field) {
  redisReply *r = bench_redis_cmd(c, "INFO %s", section);
  long v = -1;
  size_t fl = strlen(field);
  for (const char *p = r->str; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (!strncmp(p, field, fl) && p[fl] == ':') {
      v = strtol(p + fl + 1, NULL, 10);
      break;
    }
  freeReplyObject(r);
  return v;
}

void bench_redis_absent(bench_ctx_t *b, int port) {
  bench_note(b,
             "no redis-server answers on 127.0.0.1:%d (scripts/redis.sh starts one): the redis "
             "rows are absent",
             port);
}

void bench_redis_pre_init(bench_redis_pre_t *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *cmd = NULL;
  int len = redisvFormatCommand(&cmd, fmt, ap);
  va_end(ap);
  if (len < 0 || !cmd)
    bench_die("redis: cannot format \"%s\"", fmt);
  /* "*N\r\n" then N times "$L\r\n<L bytes>\r\n": walk to the last. */
  char *at = cmd, *end = cmd + len;
  long argc = strtol(at + 1, &at, 10);
  size_t last = 0;
  uint8_t *data = NULL;
  for (long i = 0; i < argc; i++) {
    if (end - at < 4 || at[0] != '\r' || at[2] != '$')
      bench_die("redis: \"%s\" formatted into an unexpected shape", fmt);
    last = strtoul(at + 3, &at, 10);
    data = (uint8_t *)at + 2;
    at = (char *)data + last;
  }
  if (last < 8 || (char *)data + last + 2 != end)
    bench_die("redis: \"%s\": its last argument is not a payload of 8 bytes or more", fmt);
  *p = (bench_redis_pre_t){.cmd = cmd, .len = (size_t)len, .payload = data, .payload_len = last};
}

void bench_redis_pre_free(bench_redis_pre_t *p) {
  redisFreeCommand(p->cmd);
  *p = (bench_redis_pre_t){0};
}

void bench_redis_pipeline(redisContext *c, bench_redis_pre_t *p, uint64_t n, unsigned window,
                          uint64_t *ctr, int want) {
  for (uint64_t i = 0; i < n;) {
    uint64_t k = n - i < window ? n - i : window;
    for (uint64_t j = 0; j < k; j++) {
      uint64_t v = (*ctr)++;
      memcpy(p->payload, &v, 8);
      if (redisAppendFormattedCommand(c, p->cmd, p->len) != REDIS_OK)
        bench_die("redis: %s", c->errstr);
    }
    for (uint64_t j = 0; j < k; j++) {
      redisReply *r = bench_redis_get(c);
      if (r->type != want)
        bench_die("redis: a pipelined reply of type %d, not %d", r->type, want);
      freeReplyObject(r);
    }
    i += k;
  }
}
