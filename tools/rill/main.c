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
  fprintf(f,
          "usage: rill <command> [args]\n"
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
          "  help [COMMAND]                     this text, or a command's (rill COMMAND --help)\n"
          "\n"
          "Every command takes -h, --help or help; options before or after the other\n"
          "arguments, as --opt value or --opt=value; -- ends them. Client commands take\n"
          "--server (else $RILL_SERVER, else 127.0.0.1:7450) and --token or --token-file\n"
          "(else $RILL_TOKEN). --json on every command that prints data.\n"
          "\n"
          "exit status: 0 success; 1 a runtime failure (a server gone or refusing, damaged\n"
          "data, a timeout); 2 a usage error; 3 a partial success (rill log cat or tail\n"
          "--skip-corrupt passed over damaged records); a long-running command stopped by\n"
          "SIGINT or SIGTERM ends cleanly, then dies of that signal: 130 or 143.\n");
  return f == stdout ? 0 : 2;
}

/* The command named by argv[0], with its arguments after it. */
static int run(int argc, char **argv) {
  const char *cmd = argv[0];
  static char help[] = "--help";
  if (argc == 2 && !strcmp(argv[1], "help"))
    argv[1] = help; /* `rill bench help` too, whose parser is the suites' */
  if (!strcmp(cmd, "log"))
    return rill_log_main(argc, argv);
  if (!strcmp(cmd, "serve"))
    return rill_serve_main(argc, argv);
  if (!strcmp(cmd, "pub"))
    return rill_pub_main(argc, argv);
  if (!strcmp(cmd, "sub"))
    return rill_sub_main(argc, argv);
  if (!strcmp(cmd, "ask"))
    return rill_ask_main(argc, argv);
  if (!strcmp(cmd, "reply"))
    return rill_reply_main(argc, argv);
  if (!strcmp(cmd, "stat"))
    return rill_stat_main(argc, argv);
  if (!strcmp(cmd, "topic"))
    return rill_topic_main(argc, argv);
#ifdef RILL_WITH_BENCH
  /* `rill ipc bench [--json] [--quick] [--filter S]` is `rill bench ipc`:
   * one suite, two ways in; with a NAME it measures that route (ipc.c). */
  if (!strcmp(cmd, "ipc") && argc >= 2 && !strcmp(argv[1], "bench") &&
      rill_ipc_bench_is_suite(argc - 1, argv + 1)) {
    argv[0] = "bench";
    argv[1] = "ipc";
    return rill_bench_main(argc, argv);
  }
#endif
  if (!strcmp(cmd, "ipc"))
    return rill_ipc_main(argc, argv);
#ifdef RILL_WITH_BENCH
  if (!strcmp(cmd, "bench"))
    return rill_bench_main(argc, argv);
#endif
  fprintf(stderr, "rill: unknown command '%s'\n", cmd);
  return usage(stderr);
}

int main(int argc, char **argv) {
  if (argc < 2)
    return usage(stderr);
  const char *cmd = argv[1];
  if (rill_tool_is_help(cmd) && argc == 2)
    return usage(stdout);
  if (!strcmp(cmd, "help")) {
    /* rill help CMD [SUB]: CMD [SUB] --help. */
    char *args[4] = {argv[2], argc > 3 ? argv[3] : "--help", argc > 3 ? "--help" : NULL, NULL};
    if (argc > 4) {
      fprintf(stderr, "rill help: rill help COMMAND [SUBCOMMAND]\n");
      return 2;
    }
    if (!strcmp(argv[2], "version") || !strcmp(argv[2], "help"))
      return usage(stdout);
    return run(argc > 3 ? 3 : 2, args);
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    if (argc > 2 && strcmp(argv[2], "--help") && strcmp(argv[2], "-h") && strcmp(argv[2], "help")) {
      fprintf(stderr, "rill version: unexpected argument %s\n", argv[2]);
      return 2;
    }
    printf("rill %s\n", RILL_VERSION_STRING);
    return 0;
  }
  return rill_tool_exit(run(argc - 1, argv + 1));
}
