/*
 * rill: the command. Subcommands are added by the modules' issues; each is
 * one function taking the arguments after its name.
 */
#include <stdio.h>
#include <string.h>

#include "rill/rill.h"
#include "tools.h"

#ifdef RILL_WITH_BENCH
#include "bench.h"
#endif

static int usage(FILE *f) {
  fprintf(f, "usage: rill <command> [args]\n"
             "\n"
             "commands:\n"
             "  bench <suite> [--json] [--quick]   run a benchmark suite (rill bench list)\n"
             "  log <command> DIR TOPIC ...        the durable log: append, cat, tail, stat,\n"
             "                                     verify, dump (rill log help)\n"
             "  serve [--listen H:P] [--data DIR]  the rill server (rill serve --help)\n"
             "  pub [--ack] TOPIC [MESSAGE...]     publish to a server (stdin lines without args)\n"
             "  sub [--from earliest] TOPIC        print what a server delivers\n"
             "  ask SERVICE [REQUEST]              ask a service, print the reply (stdin without)\n"
             "  reply SERVICE                      serve SERVICE, echoing each ask back\n"
             "  stat [--server H:P] [--count N]    a server's metrics: rates, topics, latency\n"
             "  topic ls|info|rm [TOPIC]           a server's topics: list, describe, delete\n"
             "  ipc pub|sub|ls|rm|bench ...        shared-memory routes between processes\n"
             "                                     (rill ipc help)\n"
             "  version                            print the version\n"
             "  help                               this text\n");
  return f == stdout ? 0 : 2;
}

int main(int argc, char **argv) {
  if (argc < 2)
    return usage(stderr);
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
    return usage(stdout);
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("rill %s\n", RILL_VERSION_STRING);
    return 0;
  }
  if (!strcmp(cmd, "log"))
    return rill_log_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "serve"))
    return rill_serve_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "pub"))
    return rill_pub_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "sub"))
    return rill_sub_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "ask"))
    return rill_ask_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "reply"))
    return rill_reply_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "stat"))
    return rill_stat_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "topic"))
    return rill_topic_main(argc - 1, argv + 1);
#ifdef RILL_WITH_BENCH
  /* `rill ipc bench [--json] [--quick] [--filter S]` is `rill bench ipc`:
   * one suite, two ways in; with a NAME it measures that route (ipc.c). */
  if (!strcmp(cmd, "ipc") && argc >= 3 && !strcmp(argv[2], "bench") &&
      rill_ipc_bench_is_suite(argc - 2, argv + 2)) {
    argv[1] = "bench";
    argv[2] = "ipc";
    return rill_bench_main(argc - 1, argv + 1);
  }
#endif
  if (!strcmp(cmd, "ipc"))
    return rill_ipc_main(argc - 1, argv + 1);
#ifdef RILL_WITH_BENCH
  if (!strcmp(cmd, "bench"))
    return rill_bench_main(argc - 1, argv + 1);
#endif
  fprintf(stderr, "rill: unknown command '%s'\n", cmd);
  return usage(stderr);
}
