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
  fprintf(f,
          "usage: rill topic ls [--server HOST:PORT] [--token T|--token-file F] [--json]\n"
          "       rill topic info [--server HOST:PORT] [--token T|--token-file F] [--json] TOPIC\n"
          "       rill topic rm [--server HOST:PORT] [--token T|--token-file F] TOPIC\n"
          "  ls: the server's topics, one a line; info: sequences, sizes, retention and\n"
          "  users (--json: one object a line; a limit of none is null); rm: deletes a\n"
          "  topic and its records (refused while a client subscribes to it or has it\n"
          "  bound)\n" RILL_TOOL_CONN_HELP);
  return f == stdout ? 0 : 2;
}

static void print_name(void *ctx, const char *name) {
  if (*(bool *)ctx) {
    printf("{\"topic\":");
    rill_tool_json_string(stdout, name, strlen(name));
    printf("}\n");
  } else {
    printf("%s\n", name);
  }
}

/* One row of info: "what  value" or, for --json, ",\"what\":value";
 * none (a limit of 0) as the word or null. */
static void row(bool json, const char *what, uint64_t v, bool limit, const char *unit) {
  if (json && limit && !v)
    printf(",\"%s\":null", what);
  else if (json)
    printf(",\"%s\":%" PRIu64, what, v);
  else if (limit && !v)
    printf("%-14s none\n", what);
  else
    printf("%-14s %" PRIu64 "%s\n", what, v, unit);
}

int rill_topic_main(int argc, char **argv) {
  if (argc < 2 || rill_tool_is_help(argv[1]))
    return usage(argc < 2 ? stderr : stdout);
  const char *cmd = argv[1], *topic = NULL;
  bool ls = !strcmp(cmd, "ls"), info = !strcmp(cmd, "info"), rm = !strcmp(cmd, "rm");
  if (!ls && !info && !rm) {
    fprintf(stderr, "rill topic: unknown command '%s'\n", cmd);
    return usage(stderr);
  }
  rill_client_opts_t o = {.name = "topic"};
  rill_tool_conn_t conn = {0};
  bool json = false;
  rill_tool_opt_t opts[] = {
      RILL_TOOL_CONN_OPTS(&conn), {"--json", RILL_TOOL_FLAG, &json, 0, 0, NULL, NULL, 0}, {0}};
  if (rm)
    opts[3] = (rill_tool_opt_t){0}; /* rm prints nothing */
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
    rc = rill_client_topics(c, print_name, &json);
  } else if (rm) {
    rc = rill_client_topic_delete(c, topic);
  } else if (!(rc = rill_client_topic_info(c, topic, &in))) {
    if (json) {
      printf("{\"topic\":");
      rill_tool_json_string(stdout, topic, strlen(topic));
    } else {
      printf("%-14s %s\n", "topic", topic);
    }
    row(json, "first", in.first, false, "");
    row(json, "next", in.next, false, "");
    row(json, "records", in.next - in.first, false, "");
    row(json, "bytes", in.bytes, false, "");
    row(json, "disk_bytes", in.disk_bytes, false, "");
    row(json, "segment_bytes", in.segment_bytes, false, "");
    row(json, "segments", in.segments, false, "");
    row(json, "retain_bytes", in.retain_bytes, true, "");
    row(json, "retain_count", in.retain_count, true, "");
    row(json, json ? "retain_age_ms" : "retain_age", in.retain_age_ns / 1000000u, true, "ms");
    row(json, "subscribers", in.subscribers, false, "");
    row(json, "publishers", in.publishers, false, "");
    if (json)
      printf("}\n");
  }
  if (rc)
    fprintf(stderr, "rill topic %s: %s (%s)\n", cmd, rill_strerror(rc), rill_errmsg());
  rill_client_close(c);
  return rc ? 1 : 0;
}
