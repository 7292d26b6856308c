/*
 * What the rill ipc commands (ipc.c) and rill ipc bench NAME
 * (ipc_bench.c) share: the parsed arguments, an end of a route or a
 * channel, and the helpers both use. Private to the rill command.
 */
#ifndef RILL_TOOL_IPC_H
#define RILL_TOOL_IPC_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rill/ipc.h"

#define SLICE_NS 100000000ull /* 100 ms: how long a wait goes before checking for a signal */

typedef struct {
  const char *cmd, *name;
  rill_ipc_route_opts_t o;
  bool has_slots, has_slot_size, has_policy, has_spin, has_timeout, has_pool, json;
  bool chan; /* --channel or --queue: NAME is a channel */
  rill_ipc_delivery_t delivery;
  uint32_t senders, receivers; /* --senders, --receivers; 0: not given */
  const char *chan_only;       /* the first option given that only a channel takes */
  uint64_t count, timeout_ms;
  uint64_t size; /* bench --size */
  bool latency;  /* bench --latency */
  bool raw;      /* sub --raw */
  bool force;    /* rm --force */
  char **rest;
  int nrest;
} args_t;

/* A route's sender or a channel's: pub and sub do the same on either. */
typedef struct {
  rill_ipc_route_t *tx;
  rill_ipc_route_t *rx;
  rill_ipc_chan_t *ch;
} end_t;

/* Set by SIGINT and SIGTERM once ipc_catch_stop ran. */
extern volatile sig_atomic_t ipc_stopping;

/* Catches SIGINT and SIGTERM without SA_RESTART: a futex wait or a read of
 * stdin returns at once. */
void ipc_catch_stop(void);

/* Prints "rill ipc WHO: WHAT: error (detail)"; returns 1. */
int ipc_fail(const char *who, const char *what, int rc);

const char *ipc_policy_name(rill_ipc_policy_t p);

/* One message, waiting in slices; timeout_ns 0 means no limit. */
int ipc_send_one(end_t *e, const void *p, uint32_t len, bool bounded, uint64_t timeout_ns);

/* Opens route a->name as its sender with a's layout, taking what is not
 * given from an existing route; *existed says whether it was there. 0, or
 * 1 after printing why. */
int ipc_open_route_sender(args_t *a, rill_ipc_route_t **s, bool *existed);

/* A channel's opts from a's flags and an existing channel's layout: 0, or
 * 1 after printing why (who names the command). */
int ipc_chan_opts(args_t *a, const char *who, rill_ipc_chan_opts_t *o);

/* rill ipc bench NAME (ipc_bench.c). */
int ipc_cmd_bench(args_t *a);

/* rill ipc bench --help: both forms, NAME and the suite. 0 on stdout, 2
 * otherwise (a usage error). */
int ipc_bench_usage(FILE *f);

#endif
