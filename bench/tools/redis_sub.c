/*
 * redis_sub: a Redis subscriber as a hiredis user writes one, for
 * scripts/peer_check.sh to run beside redis-benchmark's PUBLISHes, so
 * that the tool's messages reach a subscriber that reads and parses them
 * as `rill bench net`'s does (SUBSCRIBE, then redisGetReply in a loop,
 * the reader's buffer kept: reader->maxbuf = 0, as hiredis's README has
 * a client after throughput do).
 *
 *   redis_sub <port> <channel>
 *
 * Prints "subscribed" once the server has confirmed, then reads until the
 * connection ends (saying how many messages it read) or it is killed.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: redis_sub <port> <channel>\n");
    return 2;
  }
  redisContext *c = redisConnect("127.0.0.1", atoi(argv[1]));
  if (!c || c->err) {
    fprintf(stderr, "redis_sub: connect: %s\n", c ? c->errstr : "out of memory");
    return 1;
  }
  c->reader->maxbuf = 0;
  redisReply *r = redisCommand(c, "SUBSCRIBE %s", argv[2]);
  if (!r || r->type != REDIS_REPLY_ARRAY) {
    fprintf(stderr, "redis_sub: SUBSCRIBE: %s\n", r ? r->str : c->errstr);
    return 1;
  }
  freeReplyObject(r);
  printf("subscribed\n");
  fflush(stdout);
  unsigned long long n = 0;
  void *m;
  while (redisGetReply(c, &m) == REDIS_OK) {
    freeReplyObject(m);
    n++;
  }
  fprintf(stderr, "redis_sub: %llu messages\n", n);
  redisFree(c);
  return 0;
}
