/*
 * What the rill command's subcommands share: one option parser, the
 * options and environment that name a server and its token, one
 * exit-status convention, printing bytes for people (text as it is,
 * other bytes escaped; hex) and for scripts (JSON), and rill serve's
 * config file.
 */
#ifndef RILL_TOOLS_H
#define RILL_TOOLS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** Room for argc argument pointers; exits on no memory. */
char **rill_tool_alloc_args(int argc);

/** realloc, or exit(1) saying so on no memory. */
void *rill_tool_realloc(void *p, size_t n);

/** Prints "rill: <why>" to stderr and returns -1 (a usage error). */
int rill_tool_bad(const char *why);

/** Writes len bytes as a JSON string (quotes included): UTF-8 as is where
 *  valid, anything else as \u00XX escapes of its bytes. */
void rill_tool_json_string(FILE *f, const void *p, size_t len);

/** Writes len bytes for a terminal: printable text (ASCII and valid
 *  UTF-8) as is, unaltered, backslashes included, and any other byte as
 *  a \xHH escape, so a record never moves the cursor or rings the bell.
 *  Exact only for text; --json and --raw are exact for any bytes. */
void rill_tool_text(FILE *f, const void *p, size_t len);

/** Writes len bytes as hex pairs. */
void rill_tool_hex(FILE *f, const void *p, size_t len);

/** "HOST:PORT", "HOST", ":PORT", "[IPV6]:PORT", "[IPV6]" or a bare IPv6
 *  address (--server, --listen): the port (1..65535) into *port when one
 *  is given; the host as given (a name, IPv4 or IPv6, without brackets;
 *  librill resolves it) into hbuf (cap bytes) and *host pointed at it
 *  when one is given. NULL, or why not. */
const char *rill_tool_parse_addr(const char *s, char *hbuf, size_t cap, const char **host,
                                 uint16_t *port);

/** host and port as a user writes them back: "[V6]:PORT" for an IPv6
 *  address, "HOST:PORT" otherwise. Returns buf. */
const char *rill_tool_fmt_addr(char *buf, size_t cap, const char *host, uint16_t port);

/* ---- options ----------------------------------------------------------------
 * One parser for every subcommand, so that each takes its options the same
 * way: anywhere among its positional arguments, as `--opt value` or
 * `--opt=value`; `--` ends them (a name or message may then start with
 * '-'); `-h`, `--help`, or `help` as the only argument asks for help. An
 * option a command does not list is an error naming it, and a numeric
 * option is checked here, against the range its entry gives, so every
 * command refuses the same bad values with the same words. */

typedef enum {
  RILL_TOOL_FLAG, /* bool *dst = true; takes no value */
  RILL_TOOL_STR,  /* const char **dst = the value */
  RILL_TOOL_U64,  /* uint64_t *dst: a decimal in min..max */
  RILL_TOOL_SECS, /* double *dst: seconds, decimals allowed, above 0 and at most max */
  RILL_TOOL_FN,   /* fn(dst, value) checks and stores it */
} rill_tool_kind_t;

typedef struct rill_tool_opt {
  const char *name; /* "--timeout" */
  rill_tool_kind_t kind;
  void *dst;
  /* U64: the range; SECS: max only. */
  uint64_t min, max;
  /* What the value is, for messages: "milliseconds", "a number";
   * FN: the whole phrase, "block, fail or overwrite". */
  const char *want;
  bool (*fn)(void *dst, const char *value);
  /* Set by the parser: argv's index where it was given last (0: not
   * given), so a command can tell given from default, and which came
   * first. */
  int at;
} rill_tool_opt_t;

/** Called for an option not in the table (name without "=value"; value:
 *  the inline value, else the next argument, NULL at the end): 2 when it
 *  took the next argument as its value, 1 when it took the inline one,
 *  0 when it is not an option either, -1 for a bad value (said on
 *  stderr). */
typedef int (*rill_tool_other_cb)(void *ctx, const char *name, const char *value,
                                  bool inline_value);

/** Parses argv[1..argc) against opts (ended by an entry with a NULL name)
 *  and other (may be NULL): the positional arguments, in order, into pos
 *  (room for argc) and *npos. 0; 1 for help (-h, --help, or `help` alone);
 *  -1 for a usage error, said on stderr as "rill WHO: why". */
int rill_tool_parse(const char *who, rill_tool_opt_t *opts, rill_tool_other_cb other, void *ctx,
                    int argc, char **argv, char **pos, int *npos);

/** Whether s asks for help: -h, --help or help. */
bool rill_tool_is_help(const char *s);

/** The entry named name (given or not), or NULL. */
rill_tool_opt_t *rill_tool_opt(rill_tool_opt_t *opts, const char *name);

/** Whether the option named name is in opts and was given. */
bool rill_tool_given(rill_tool_opt_t *opts, const char *name);

/** An option of a family of commands (rill log's, rill ipc's...): the
 *  commands that take it as bits, and bits of the family's own. */
typedef struct rill_tool_optdef {
  unsigned cmds, flags;
  rill_tool_opt_t opt;
} rill_tool_optdef_t;

/** Copies the entries of defs[0..n) that cmd selects into opts (room for
 *  n + 1), ended by one with a NULL name; from[j] (from may be NULL) gets
 *  the index in defs of opts[j]. */
void rill_tool_opts_pick(const rill_tool_optdef_t *defs, size_t n, unsigned cmd,
                         rill_tool_opt_t *opts, size_t *from);

/** The exit status of a parse that did not go on: usage to stdout and 0
 *  for help, usage to stderr and 2 for an error. */
int rill_tool_usage(int parsed, const char *usage);

/* ---- connecting to a server ---------------------------------------------------
 * --server, --token and --token-file, the same for every client command.
 * Each falls back on the environment, then the default: --server on
 * RILL_SERVER, then 127.0.0.1:7450; the token on --token, --token-file
 * (its first line), RILL_TOKEN, then none. A file or the environment
 * keeps the token out of `ps`. */
typedef struct rill_tool_conn {
  const char *server, *token, *token_file; /* as given */
  char host[256];                          /* the resolved host: opts.host points here */
  char *token_buf;                         /* a token read from a file */
} rill_tool_conn_t;

/* The client commands' help on them. */
#define RILL_TOOL_CONN_HELP                                                                        \
  "  --server HOST:PORT: default $RILL_SERVER, else 127.0.0.1:7450 (HOST alone: port 7450)\n"      \
  "  --token T, --token-file FILE (its first line): default $RILL_TOKEN, else none; a\n"           \
  "  file or the environment keeps the token out of ps. A flag wins over the environment.\n"

#define RILL_TOOL_CONN_OPTS(c)                                                                     \
  {"--server", RILL_TOOL_STR, &(c)->server, 0, 0, "HOST:PORT", NULL, 0},                           \
      {"--token", RILL_TOOL_STR, &(c)->token, 0, 0, "a token", NULL, 0}, {                         \
    "--token-file", RILL_TOOL_STR, &(c)->token_file, 0, 0, "a file", NULL, 0                       \
  }

/* --timeout: milliseconds, the same name and check everywhere; min is 0
 * where 0 has a meaning (do not wait), else 1. */
#define RILL_TOOL_MAX_MS (UINT64_MAX / 2000000)
#define RILL_TOOL_TIMEOUT(dst, min)                                                                \
  { "--timeout", RILL_TOOL_U64, dst, min, RILL_TOOL_MAX_MS, "milliseconds", NULL, 0 }

struct rill_client_opts;
/** Fills o's host, port and token from c, the environment and the
 *  defaults; 0, or -1 after saying why on stderr (a usage error). */
int rill_tool_conn_resolve(const char *who, rill_tool_conn_t *c, struct rill_client_opts *o);

/** The token of --token, --token-file or RILL_TOKEN (NULL for none) into
 *  *token (the string lives in c); 0 or -1 after saying why. */
int rill_tool_token(const char *who, rill_tool_conn_t *c, const char **token);

/** Frees what c read. */
void rill_tool_conn_free(rill_tool_conn_t *c);

/* ---- exit status ----------------------------------------------------------------
 * One convention for every command (rill --help says it): 0 success; 1 a
 * runtime failure (the server gone or refusing, damaged data, a timeout
 * that ends a wait for what was asked); 2 a usage error; 3 a partial
 * success (rill log cat or tail --skip-corrupt passed over damaged
 * records); a long-running command stopped by SIGINT or SIGTERM finishes
 * cleanly, then dies of that signal, so its status is 130 or 143 and its
 * parent (a shell, systemd) sees why it ended. */
#define RILL_TOOL_EXIT_OK      0
#define RILL_TOOL_EXIT_FAIL    1
#define RILL_TOOL_EXIT_USAGE   2
#define RILL_TOOL_EXIT_PARTIAL 3

/** The signal (SIGINT or SIGTERM) that asked the command to stop; 0
 *  while none did. */
extern volatile sig_atomic_t rill_tool_stop_sig;

/** Catches SIGINT and SIGTERM into rill_tool_stop_sig, without
 *  SA_RESTART: a blocking read or sleep returns at once with EINTR. */
void rill_tool_catch_stop(void);

/** The command's exit: status, or when a signal asked it to stop, death
 *  by that signal (after flushing stdout), 128 + the signal for a parent. */
int rill_tool_exit(int status);

/** Records to send, one per argument, or when there are none one per line
 *  of stdin (without its newline). Zero-initialise with args and nargs. */
typedef struct rill_tool_records {
  char **args;
  int nargs, next;
  char *line;
  size_t cap;
} rill_tool_records_t;

/** The next record into *rec and *len; false at the end. */
bool rill_tool_next_record(rill_tool_records_t *r, const char **rec, size_t *len);

/** Frees the line buffer. */
void rill_tool_records_free(rill_tool_records_t *r);

/* rill serve's config file and its flags (config.c). The strings the
 * options point to after a load or a flag live here. */
struct rill_server_opts;
struct rill_server_topic_opts;
typedef struct rill_serve_config {
  char *host, *data_dir, *token, *metrics;
  struct rill_server_topic_opts *topics; /* topic.MATCH.KEY, in the order first named */
  uint32_t ntopics;
  uint64_t sync_every;       /* sync = every:N (no rill_server_opts_t field yet) */
  uint64_t sync_interval_ns; /* sync = interval:MS (likewise) */
} rill_serve_config_t;

/** Sets o's fields from the `key = value` lines of path (fields it does
 *  not name keep their values). 0, or a negative RILL_E* code after
 *  printing "FILE:LINE: key: why" to stderr. */
int rill_serve_config_load(const char *path, struct rill_server_opts *o, rill_serve_config_t *cfg);

/** The same from an open file (path names it in messages). */
int rill_serve_config_read(FILE *f, const char *path, struct rill_server_opts *o,
                           rill_serve_config_t *cfg);

/** Whether name ("--max-conns", '-' or '_') is a config key's flag. */
bool rill_serve_config_is_flag(const char *name);

/** Sets the config key of flag name (rill_serve_config_is_flag) to value:
 *  0, or -1 after printing why. */
int rill_serve_config_flag(struct rill_server_opts *o, rill_serve_config_t *cfg, const char *name,
                           const char *value);

/** The options in effect, defaults filled in, as a config file. */
void rill_serve_config_print(FILE *f, const struct rill_server_opts *o,
                             const rill_serve_config_t *cfg);

/** Checks the limits that bind keys together, on the values in effect
 *  (defaults filled in): max_body within max_message, tx_limit over four
 *  frames of max_body, max_message within a segment. 0, or RILL_EINVAL
 *  after printing which keys and why. */
int rill_serve_config_check(const struct rill_server_opts *o, const rill_serve_config_t *cfg);

/** Every config key with what it takes, its default and what it is for. */
void rill_serve_config_help(FILE *f);

/** Hands the server what cfg holds beyond o (just before
 *  rill_server_create). */
void rill_serve_config_apply(struct rill_server_opts *o, const rill_serve_config_t *cfg);

void rill_serve_config_free(rill_serve_config_t *cfg);

/* The subcommands. */
int rill_log_main(int argc, char **argv);
int rill_serve_main(int argc, char **argv);
int rill_pub_main(int argc, char **argv);
int rill_sub_main(int argc, char **argv);
int rill_ask_main(int argc, char **argv);
int rill_reply_main(int argc, char **argv);
int rill_stat_main(int argc, char **argv);
int rill_topic_main(int argc, char **argv);
int rill_ipc_main(int argc, char **argv);
/** argv[0] is "bench": true when `rill ipc bench` is to run the suite
 *  `rill bench ipc` (no NAME, only the suite's flags). */
bool rill_ipc_bench_is_suite(int argc, char **argv);

#endif
