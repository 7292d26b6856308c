/*
 * rill topic ls|info|rm: a server's topics, listed, described and deleted
 * over the protocol (TOPICS, TOPIC_INFO, TOPIC_DELETE).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill/net.h"
#include "tools.h"

static int usage(FILE *f) {
  fprintf(f, "usage: rill topic ls [--server HOST:PORT] [--token T|--token-file F]\n"
             "       rill topic info [--server HOST:PORT] [--token T|--token-file F] TOPIC\n"
             "       rill topic rm [--server HOST:PORT] [--token T|--token-file F] TOPIC\n"
             "  ls: the server's topics, one a line; info: sequences, sizes, retention and\n"
             "  users; rm: deletes a topic and its records (refused while a client\n"
             "  subscribes to it or has it bound)\n" RILL_TOOL_CONN_HELP);
  return f == stdout ? 0 : 2;
}

static void print_name(void *ctx, const char *name) {
  (void)ctx;
  printf("%s\n", name);
}

static void print_limit(const char *what, uint64_t v, const char *unit) {
  if (v)
    printf("%-14s %" PRIu64 "%s\n", what, v, unit);
  else
    printf("%-14s none\n", what);
}

int rill_topic_main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
    return usage(argc < 2 ? stderr : stdout);
  const char *cmd = argv[1], *topic = NULL;
  bool ls = !strcmp(cmd, "ls"), info = !strcmp(cmd, "info"), rm = !strcmp(cmd, "rm");
  if (!ls && !info && !rm) {
    fprintf(stderr, "rill topic: unknown command '%s'\n", cmd);
    return usage(stderr);
  }
  rill_client_opts_t o = {.name = "topic"};
  rill_tool_conn_t conn = {0};
  rill_tool_opt_t opts[] = {RILL_TOOL_CONN_OPTS(&conn), {0}};
  char who[16], **pos = rill_tool_alloc_args(argc);
  snprintf(who, sizeof who, "topic %s", cmd);
  int npos, parsed = rill_tool_parse(who, opts, NULL, NULL, argc - 1, argv + 1, pos, &npos);
  if (!parsed && npos > (ls ? 0 : 1)) {
    fprintf(stderr, "rill %s: unexpected argument %s\n", who, pos[ls ? 0 : 1]);
    parsed = -1;
  } else if (!parsed && !ls && !npos) {
    fprintf(stderr, "rill %s: a topic is needed\n", who);
    parsed = -1;
  }
  if (!parsed && rill_tool_conn_resolve(who, &conn, &o))
    parsed = -1;
  topic = npos ? pos[0] : NULL;
  free(pos);
  if (parsed) {
    rill_tool_conn_free(&conn);
    return usage(parsed > 0 ? stdout : stderr);
  }
  rill_client_t *c;
  int rc = rill_client_connect(&c, &o);
  rill_tool_conn_free(&conn);
  if (rc) {
    fprintf(stderr, "rill topic %s: connect: %s (%s)\n", cmd, rill_strerror(rc), rill_errmsg());
    return 1;
  }
  rill_topic_info_t in;
  if (ls) {
    rc = rill_client_topics(c, print_name, NULL);
  } else if (rm) {
    rc = rill_client_topic_delete(c, topic);
  } else if (!(rc = rill_client_topic_info(c, topic, &in))) {
    printf("%-14s %s\n", "topic", topic);
    printf("%-14s %" PRIu64 "\n", "first", in.first);
    printf("%-14s %" PRIu64 "\n", "next", in.next);
    printf("%-14s %" PRIu64 "\n", "records", in.next - in.first);
    printf("%-14s %" PRIu64 "\n", "bytes", in.bytes);
    printf("%-14s %" PRIu64 "\n", "disk_bytes", in.disk_bytes);
    printf("%-14s %" PRIu64 "\n", "segment_bytes", in.segment_bytes);
    printf("%-14s %" PRIu64 "\n", "segments", in.segments);
    print_limit("retain_bytes", in.retain_bytes, "");
    print_limit("retain_count", in.retain_count, "");
    print_limit("retain_age", in.retain_age_ns / 1000000u, "ms");
    printf("%-14s %u\n", "subscribers", in.subscribers);
    printf("%-14s %u\n", "publishers", in.publishers);
  }
  if (rc)
    fprintf(stderr, "rill topic %s: %s (%s)\n", cmd, rill_strerror(rc), rill_errmsg());
  rill_client_close(c);
  return rc ? 1 : 0;
}
