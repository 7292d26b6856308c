/*
 * What the rill command's subcommands share: argument scratch, errors, and
 * printing bytes for people (escaped text, hex) and for scripts (JSON).
 */
#ifndef RILL_TOOLS_H
#define RILL_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
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

/* The subcommands. */
int rill_log_main(int argc, char **argv);
int rill_serve_main(int argc, char **argv);
int rill_pub_main(int argc, char **argv);
int rill_sub_main(int argc, char **argv);

#endif
