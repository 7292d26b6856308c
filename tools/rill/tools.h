/*
 * What the rill command's subcommands share: argument scratch, errors, and
 * printing bytes for people (escaped text, hex) and for scripts (JSON).
 */
#ifndef RILL_TOOLS_H
#define RILL_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** Room for argc argument pointers; exits on no memory. */
char **rill_tool_alloc_args(int argc);

/** Prints "rill: <why>" to stderr and returns -1 (a usage error). */
int rill_tool_bad(const char *why);

/** Writes len bytes as a JSON string (quotes included): UTF-8 as is where
 *  valid, anything else as \u00XX escapes of its bytes. */
void rill_tool_json_string(FILE *f, const void *p, size_t len);

/** Writes len bytes for a terminal: printable ASCII as is, the rest as
 *  \xHH escapes, so a record never moves the cursor or rings the bell. */
void rill_tool_text(FILE *f, const void *p, size_t len);

/** Writes len bytes as hex pairs. */
void rill_tool_hex(FILE *f, const void *p, size_t len);

/** "HOST:PORT", "HOST" or ":PORT" (--server, --listen): the host into
 *  hbuf (cap bytes), *host pointed at it when one is given, and *port when
 *  one is given. False when the host does not fit or the port is not
 *  1..65535. */
bool rill_tool_parse_addr(const char *s, char *hbuf, size_t cap, const char **host, uint16_t *port);

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

/** argv[0] as `--key value` of a config key (`-` or `_` in the key):
 *  2 (arguments used) when it is one and its value is good, 0 when it is
 *  not a config key, -1 for a bad value (printed). */
int rill_serve_config_flag(struct rill_server_opts *o, rill_serve_config_t *cfg, int argc,
                           char **argv);

/** The options in effect, defaults filled in, as a config file. */
void rill_serve_config_print(FILE *f, const struct rill_server_opts *o,
                             const rill_serve_config_t *cfg);

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
