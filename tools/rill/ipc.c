/*
 * rill ipc: shared-memory routes and channels from the shell
 * (include/rill/ipc.h).
 *
 * pub sends its arguments, or the lines of stdin, as a route's sender
 * (creating the route with the given layout when there is none), once a
 * receiver is attached: a route's message reaches the receivers attached
 * when it is sent, so a pub that sent into an empty route would lose it
 * (the library refuses such a send: RILL_EPIPE). sub attaches as a
 * receiver and prints what is published from then on; ls lists the routes
 * and channels in /dev/shm with their participants; rm removes one (a
 * route or a channel: they share /dev/shm/rill.NAME), refusing one in use
 * unless --force, and then its participants are told (RILL_ECLOSED). With
 * --channel or --queue, pub and sub open a channel instead (many senders;
 * broadcast or a work queue), which either of them creates when it is
 * absent, so that a sub started first need not poll for it as it does for
 * a route: a broadcast receiver gets what is sent after it attached, a
 * queue's receiver what is still queued. bench NAME measures a route or a
 * channel with child processes at the other end (ipc_bench.c); bench
 * without NAME is the suite `rill bench ipc` (main.c).
 *
 * Waits (a blocked send, a receive) are cut into short slices so that
 * Ctrl-C or SIGTERM closes the route cleanly: a receiver that leaves
 * through rill_ipc_route_close frees its place at once, where a killed
 * one is only reaped when the sender next waits for it.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ipc_tool.h"
#include "rill/ipc.h"
#include "tools.h"

static int ipc_usage(FILE *f) {
  fprintf(f,
          "usage: rill ipc <command> ...\n"
          "\n"
          "  pub [--slots N] [--slot-size B] [--policy block|fail|overwrite] [--spin]\n"
          "      [--pool SIZE:CHUNKS[,SIZE:CHUNKS...]] [--timeout MS] NAME [MESSAGE...]\n"
          "        sends each MESSAGE, or each line of stdin when there are none; creates\n"
          "        the route with that layout if it does not exist (defaults: 4096 slots of\n"
          "        128 bytes, block, no pool); --pool: up to 8 size classes of chunks for\n"
          "        messages over a slot, e.g. 4096:64,65536:16. Waits until a receiver\n"
          "        is attached before sending (a route's messages reach only receivers\n"
          "        attached when they are sent), again if all leave; --timeout MS bounds\n"
          "        that wait and each blocked send (default: none; 0: do not wait):\n"
          "        then it says what was not sent and exits 1 (a broadcast channel's\n"
          "        pub waits too; a queue keeps its lines for receivers to come)\n"
          "  sub [--count N] [--timeout MS] [--json|--raw] NAME\n"
          "        prints each message published from now on, one per line (text as is,\n"
          "        other bytes as \\xHH; --raw: the bytes exactly; --json: {seq,len,data});\n"
          "        waits for\n"
          "        the route to be created; --timeout: stop after MS ms without a message;\n"
          "        exits 1 if the route is removed under it\n"
          "  pub|sub --channel|--queue [--slots N] [--slot-size B] [--policy block|fail]\n"
          "      [--spin] [--senders N] [--receivers N] [--pool ...] ...\n"
          "        the same on a channel: many senders, each message to every receiver\n"
          "        (--channel) or to exactly one of them (--queue); pub or sub creates it\n"
          "        with that layout if it does not exist (defaults: 4096 slots of 128\n"
          "        bytes, block, 64 senders, 64 receivers); no overwrite policy\n"
          "  ls [--json]     every route: layout, policy, head, sender, receivers, lag;\n"
          "                  then every channel\n"
          "  rm [--force] NAME  removes a route or a channel; one with live participants\n"
          "                  only with --force (they are told it was removed)\n"
          "  bench [--size B] [--count N] [--receivers K] [--latency] [--json]\n"
          "      [layout options as pub's] [--channel|--queue [--senders S]] NAME\n"
          "        measures NAME as it is, or creates it with those options and removes\n"
          "        it afterwards (never a route with a live sender): K receiver\n"
          "        processes (default 1) get N messages (default 1000000) of B bytes\n"
          "        (default 64; over a slot's payload through the pool) from this\n"
          "        process, or from S sender processes on a channel; prints msg/s and\n"
          "        MB/s per receiver (a queue's: all together). --latency: N round\n"
          "        trips (default 100000) to one echo process, back on a route\n"
          "        NAME.back made for the run: one-way p50/p99/p999/max in ns\n"
          "  bench [--json] [--quick] [--filter S]   without NAME: `rill bench ipc`\n"
          "\n"
          "  NAME: up to %u of [A-Za-z0-9._-], not starting with '.'; the segment is\n"
          "  /dev/shm/rill.NAME\n",
          RILL_IPC_MAX_NAME);
  return f == stdout ? 0 : 2;
}

int ipc_fail(const char *who, const char *what, int rc) {
  fprintf(stderr, "rill ipc %s: %s: %s (%s)\n", who, what, rill_strerror(rc), rill_errmsg());
  return 1;
}

volatile sig_atomic_t ipc_stopping;

static void on_stop(int sig) {
  ipc_stopping = 1;
  rill_tool_stop_sig = sig; /* how rill exits (tools.h) */
}

/* No SA_RESTART: a futex wait or a read of stdin returns at once. */
void ipc_catch_stop(void) {
  struct sigaction sa = {.sa_handler = on_stop};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

const char *ipc_policy_name(rill_ipc_policy_t p) {
  switch (p) {
  case RILL_IPC_BLOCK: return "block";
  case RILL_IPC_FAIL: return "fail";
  case RILL_IPC_OVERWRITE: return "overwrite";
  }
  return "?";
}

static bool name_ok(const char *n) {
  size_t len = strlen(n);
  if (!len || len > RILL_IPC_MAX_NAME || n[0] == '.')
    return false;
  for (const char *c = n; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
          *c == '.' || *c == '_' || *c == '-'))
      return false;
  return true;
}

static bool parse_policy(void *dst, const char *p) {
  rill_ipc_policy_t *policy = dst;
  if (!strcmp(p, "block"))
    *policy = RILL_IPC_BLOCK;
  else if (!strcmp(p, "fail"))
    *policy = RILL_IPC_FAIL;
  else if (!strcmp(p, "overwrite"))
    *policy = RILL_IPC_OVERWRITE;
  else
    return false;
  return true;
}

/* SIZE:CHUNKS[,SIZE:CHUNKS...]: the route's pool classes. */
static bool parse_pool(void *dst, const char *p) {
  rill_ipc_route_opts_t *o = dst;
  uint32_t n = 0;
  while (*p) {
    char *end;
    unsigned long long size = *p >= '0' && *p <= '9' ? strtoull(p, &end, 10) : 0, chunks = 0;
    if (size && *end == ':' && end[1] >= '0' && end[1] <= '9')
      chunks = strtoull(end + 1, &end, 10);
    if (!size || !chunks || size > UINT32_MAX || chunks > UINT32_MAX || (*end && *end != ',') ||
        n == RILL_IPC_MAX_CLASSES)
      return false;
    o->pool[n++] = (rill_ipc_class_t){(uint32_t)size, (uint32_t)chunks};
    p = *end ? end + 1 : end;
  }
  return n > 0;
}

/* Which commands take an option, and whether it is for a channel only
 * (sub's layout options: a sub creates a channel, never a route). */
enum { C_PUB = 1, C_SUB = 2, C_BENCH = 4, C_LS = 8, C_RM = 16 };

/* argv[0] is the subcommand. 0, 1 for help, -1 after printing why. */
static int parse(int argc, char **argv, args_t *a) {
  memset(a, 0, sizeof *a);
  a->cmd = argv[0];
  a->count = UINT64_MAX;
  a->rest = rill_tool_alloc_args(argc);
  bool pub = !strcmp(a->cmd, "pub"), sub = !strcmp(a->cmd, "sub"), bench = !strcmp(a->cmd, "bench");
  unsigned cmd = pub ? C_PUB : sub ? C_SUB : bench ? C_BENCH : !strcmp(a->cmd, "ls") ? C_LS : C_RM;
  a->size = 64;
  bool channel = false, queue = false, raw = false;
  uint64_t senders = 0, receivers = 0, slots = 0, slot_size = 0;
  /* flags: the commands for which it needs --channel or --queue. */
  const rill_tool_optdef_t all[] = {
      {C_PUB | C_SUB | C_BENCH, 0, {"--channel", RILL_TOOL_FLAG, &channel, 0, 0, NULL, NULL, 0}},
      {C_PUB | C_SUB | C_BENCH, 0, {"--queue", RILL_TOOL_FLAG, &queue, 0, 0, NULL, NULL, 0}},
      {C_PUB | C_SUB | C_BENCH,
       C_PUB | C_SUB | C_BENCH,
       {"--senders", RILL_TOOL_U64, &senders, 1, RILL_IPC_MAX_SENDERS, "a number", NULL, 0}},
      /* bench's --receivers counts its receiver processes, on a route too. */
      {C_PUB | C_SUB | C_BENCH,
       C_PUB | C_SUB,
       {"--receivers", RILL_TOOL_U64, &receivers, 1, RILL_IPC_MAX_RECEIVERS, "a number", NULL, 0}},
      /* 0 would mean "the default" to the library: not what was typed. */
      {C_PUB | C_SUB | C_BENCH,
       C_SUB,
       {"--slots", RILL_TOOL_U64, &slots, 1, UINT32_MAX, "a number (a power of two, 2 to 2^24)",
        NULL, 0}},
      {C_PUB | C_SUB | C_BENCH,
       C_SUB,
       {"--slot-size", RILL_TOOL_U64, &slot_size, 1, UINT32_MAX,
        "bytes (a multiple of 64, 64 to 1 MiB)", NULL, 0}},
      {C_PUB | C_SUB | C_BENCH,
       C_SUB,
       {"--policy", RILL_TOOL_FN, &a->o.policy, 0, 0, "block, fail or overwrite", parse_policy, 0}},
      {C_PUB | C_SUB | C_BENCH,
       C_SUB,
       {"--pool", RILL_TOOL_FN, &a->o, 0, 0,
        "SIZE:CHUNKS[,SIZE:CHUNKS...], up to 8 classes in ascending size", parse_pool, 0}},
      {C_PUB | C_SUB | C_BENCH,
       C_SUB,
       {"--spin", RILL_TOOL_FLAG, &a->has_spin, 0, 0, NULL, NULL, 0}},
      {C_PUB | C_SUB, 0, RILL_TOOL_TIMEOUT(&a->timeout_ms, 0)},
      {C_SUB, 0, {"--count", RILL_TOOL_U64, &a->count, 0, UINT64_MAX, "a number", NULL, 0}},
      {C_BENCH, 0, {"--count", RILL_TOOL_U64, &a->count, 1, UINT64_MAX, "a number", NULL, 0}},
      /* The first 8 bytes carry the sequence number the receivers check. */
      {C_BENCH, 0, {"--size", RILL_TOOL_U64, &a->size, 8, 1ull << 30, "bytes", NULL, 0}},
      {C_BENCH, 0, {"--latency", RILL_TOOL_FLAG, &a->latency, 0, 0, NULL, NULL, 0}},
      {C_SUB | C_BENCH | C_LS, 0, {"--json", RILL_TOOL_FLAG, &a->json, 0, 0, NULL, NULL, 0}},
      {C_SUB, 0, {"--raw", RILL_TOOL_FLAG, &raw, 0, 0, NULL, NULL, 0}},
      {C_RM, 0, {"--force", RILL_TOOL_FLAG, &a->force, 0, 0, NULL, NULL, 0}},
  };
  enum { N = sizeof all / sizeof all[0] };
  rill_tool_opt_t opts[N + 1];
  size_t idx[N];
  rill_tool_opts_pick(all, N, cmd, opts, idx);
  char who[16];
  snprintf(who, sizeof who, "ipc %s", a->cmd);
  int npos, rc = rill_tool_parse(who, opts, NULL, NULL, argc, argv, a->rest, &npos);
  if (rc)
    return rc;
  if (channel && queue)
    return rill_tool_bad("--channel and --queue: one or the other");
  if (raw && a->json)
    return rill_tool_bad("--json and --raw: one or the other");
  a->raw = raw;
  a->chan = channel || queue;
  a->delivery = queue ? RILL_IPC_QUEUE : RILL_IPC_BROADCAST;
  a->senders = (uint32_t)senders;
  a->receivers = (uint32_t)receivers;
  a->o.slots = (uint32_t)slots;
  a->o.slot_size = (uint32_t)slot_size;
  int first = 0; /* the first option given that only a channel takes */
  for (size_t j = 0; opts[j].name; j++) {
    const char *nm = opts[j].name;
    a->has_slots |= opts[j].at && !strcmp(nm, "--slots");
    a->has_slot_size |= opts[j].at && !strcmp(nm, "--slot-size");
    a->has_policy |= opts[j].at && !strcmp(nm, "--policy");
    a->has_pool |= opts[j].at && !strcmp(nm, "--pool");
    a->has_timeout |= opts[j].at && !strcmp(nm, "--timeout");
    if (opts[j].at && (all[idx[j]].flags & cmd) && (!first || opts[j].at < first)) {
      first = opts[j].at;
      a->chan_only = all[idx[j]].opt.name;
    }
  }
  if (a->has_spin)
    a->o.wait = RILL_IPC_SPIN;
  if (npos) {
    a->name = a->rest[0];
    a->nrest = npos - 1;
    memmove(a->rest, a->rest + 1, (size_t)a->nrest * sizeof *a->rest);
  }
  if (a->chan_only && !a->chan) {
    /* Without --channel or --queue, as before channels existed: sub knows
     * no layout option, and pub no --senders or --receivers. */
    fprintf(stderr, "rill ipc %s: %s is for a channel: add --channel or --queue\n", a->cmd,
            a->chan_only);
    return -1;
  }
  if (a->chan && a->has_policy && a->o.policy == RILL_IPC_OVERWRITE)
    return rill_tool_bad("--policy overwrite is for routes: a channel blocks or fails when full");
  if (bench && a->latency && (a->senders > 1 || a->receivers > 1))
    return rill_tool_bad("--latency is one sender and one receiver: no --senders or --receivers "
                         "over 1");
  bool named = pub || sub || bench || !strcmp(a->cmd, "rm");
  if (named && !a->name)
    return rill_tool_bad(a->chan ? "a channel name is needed" : "a route name is needed");
  if (named && !name_ok(a->name)) {
    /* Checked here too, not only by the library: sub waits for a route
     * that does not exist yet, and must not wait for one that never can. */
    fprintf(stderr,
            "rill ipc %s: bad %s name '%s': 1 to %u of [A-Za-z0-9._-], not starting "
            "with '.'\n",
            a->cmd, a->chan ? "channel" : "route", a->name, RILL_IPC_MAX_NAME);
    return -1;
  }
  if (!named && a->name) {
    fprintf(stderr, "rill ipc %s: unexpected argument %s\n", a->cmd, a->name);
    return -1;
  }
  if (!pub && a->nrest) {
    fprintf(stderr, "rill ipc %s: unexpected argument %s\n", a->cmd, a->rest[0]);
    return -1;
  }
  return 0;
}

/* ---- pub --------------------------------------------------------------------------- */

/* One message, waiting in slices (see the top); timeout_ns 0 means no limit. */
int ipc_send_one(end_t *e, const void *p, uint32_t len, bool bounded, uint64_t timeout_ns) {
  uint64_t waited = 0;
  for (;;) {
    uint64_t slice = bounded && timeout_ns - waited < SLICE_NS ? timeout_ns - waited : SLICE_NS;
    int rc = e->ch ? rill_ipc_chan_send(e->ch, p, len, slice)
                   : rill_ipc_route_send(e->tx, p, len, slice);
    if (rc != RILL_ETIMEDOUT)
      return rc;
    waited += slice;
    if (ipc_stopping)
      return RILL_ECANCELED;
    if (bounded && waited >= timeout_ns)
      return rc;
  }
}

static int pub_loop(args_t *a, end_t *e, uint32_t max, const char *kind);

/* After a route failed to open: the name may be a channel's. */
static void chan_hint(const char *who, const char *name) {
  rill_ipc_chan_info_t ci;
  if (rill_ipc_chan_info(name, &ci) == 0)
    fprintf(stderr, "rill ipc %s: %s is a channel: add %s\n", who, name,
            ci.delivery == RILL_IPC_QUEUE ? "--queue" : "--channel");
}

/* Opens a's route as its sender, creating it with a's layout when there is
 * none. A route that exists keeps its layout: the options not given are
 * taken from it, so `rill ipc pub NAME` works on any route. *existed says
 * whether it was there before. 0, or 1 after printing why. */
int ipc_open_route_sender(args_t *a, rill_ipc_route_t **s, bool *existed) {
  rill_ipc_route_info_t info;
  *existed = rill_ipc_route_info(a->name, &info) == 0;
  if (*existed) {
    if (!a->has_slots)
      a->o.slots = info.slots;
    if (!a->has_slot_size)
      a->o.slot_size = info.slot_size;
    if (!a->has_policy)
      a->o.policy = info.policy;
    if (!a->has_pool)
      for (uint32_t c = 0; c < info.pool_classes; c++)
        a->o.pool[c] = info.pool[c];
    a->o.max_receivers = info.max_receivers;
  }
  int rc = rill_ipc_route_open(s, a->name, &a->o, RILL_IPC_SENDER);
  if (rc == RILL_EINVAL && *existed && !a->has_spin) {
    /* The wait mode is part of a route but not of its info: a route made
     * with --spin is opened with --spin. */
    a->o.wait = RILL_IPC_SPIN;
    rc = rill_ipc_route_open(s, a->name, &a->o, RILL_IPC_SENDER);
  }
  if (rc == RILL_EBUSY && *existed && info.sender && info.sender_alive) {
    /* Only a pub that is to share the route with its live sender would
     * want it; say whose it is rather than just EBUSY. */
    fprintf(stderr, "rill ipc %s: route %s has a live sender (pid %ld); not taking it over\n",
            a->cmd, a->name, (long)info.sender);
    return 1;
  }
  if (rc) {
    ipc_fail(a->cmd, a->name, rc);
    chan_hint(a->cmd, a->name);
    return 1;
  }
  return 0;
}

static int cmd_pub(args_t *a) {
  rill_ipc_route_t *s;
  bool existed;
  if (ipc_open_route_sender(a, &s, &existed))
    return 1;
  end_t e = {.tx = s};
  return pub_loop(a, &e, rill_ipc_route_max_message(s), "route");
}

/* A channel's layout, for opening it: what was given, and for what was
 * not, what an existing channel has (zero, or its policy), so that
 * `--channel NAME` opens any broadcast channel. */
int ipc_chan_opts(args_t *a, const char *who, rill_ipc_chan_opts_t *o) {
  *o = (rill_ipc_chan_opts_t){.slots = a->has_slots ? a->o.slots : 0,
                              .slot_size = a->has_slot_size ? a->o.slot_size : 0,
                              .max_senders = a->senders,
                              .max_receivers = a->receivers,
                              .delivery = a->delivery,
                              .policy = a->has_policy ? a->o.policy : RILL_IPC_BLOCK,
                              .wait = a->o.wait};
  if (a->has_pool)
    memcpy(o->pool, a->o.pool, sizeof o->pool);
  rill_ipc_route_info_t ri;
  if (rill_ipc_route_info(a->name, &ri) == 0) {
    fprintf(stderr, "rill ipc %s: %s is a route, not a channel (drop --channel/--queue)\n", who,
            a->name);
    return 1;
  }
  rill_ipc_chan_info_t ci;
  if (rill_ipc_chan_info(a->name, &ci) != 0)
    return 0;
  if (ci.delivery != a->delivery) {
    fprintf(stderr, "rill ipc %s: channel %s is a %s: use %s\n", who, a->name,
            ci.delivery == RILL_IPC_QUEUE ? "work queue" : "broadcast channel",
            ci.delivery == RILL_IPC_QUEUE ? "--queue" : "--channel");
    return 1;
  }
  if (!a->has_policy)
    o->policy = ci.policy;
  return 0;
}

static int cmd_pub_chan(args_t *a) {
  rill_ipc_chan_opts_t o;
  if (ipc_chan_opts(a, "pub", &o))
    return 1;
  rill_ipc_chan_t *ch;
  int rc = rill_ipc_chan_open(&ch, a->name, &o, RILL_IPC_SENDER);
  if (rc)
    return ipc_fail("pub", a->name, rc);
  end_t e = {.ch = ch};
  return pub_loop(a, &e, rill_ipc_chan_max_message(ch), "channel");
}

/* A receiver attached to e's route or broadcast channel, within timeout_ns. */
static int wait_rx(end_t *e, uint64_t timeout_ns) {
  return e->ch ? rill_ipc_chan_wait_receivers(e->ch, 1, timeout_ns)
               : rill_ipc_route_wait_receivers(e->tx, 1, timeout_ns);
}

/* Waits until a receiver is attached to the route (or broadcast channel),
 * bounded by --timeout (0: a look only) and cut into slices for signals.
 * 0, or 1 after saying why nothing (more) is sent: sent messages went out
 * before. */
static int pub_wait_receiver(args_t *a, end_t *e, uint64_t sent, bool again) {
  const char *kind = e->ch ? "channel" : "route";
  int rc = wait_rx(e, 0);
  if (rc == RILL_EAGAIN) {
    if (!a->has_timeout || a->timeout_ms)
      fprintf(stderr, "rill ipc pub: %s on %s %s; waiting for one%s\n",
              again ? "the receivers left" : "no receiver", kind, a->name,
              a->has_timeout ? "" : " (--timeout MS bounds the wait)");
    uint64_t limit = a->timeout_ms * 1000000ull, waited = 0;
    for (;;) {
      uint64_t slice = a->has_timeout && limit - waited < SLICE_NS ? limit - waited : SLICE_NS;
      if (a->has_timeout && !slice)
        break;
      rc = wait_rx(e, slice);
      if (rc != RILL_ETIMEDOUT)
        break;
      waited += slice;
      if (ipc_stopping)
        break;
    }
  }
  if (rc == 0)
    return 0;
  if (rc == RILL_ECLOSED)
    fprintf(stderr, "rill ipc pub: %s %s was removed (rill ipc rm); %" PRIu64 " messages sent\n",
            kind, a->name, sent);
  else if (rc == RILL_ETIMEDOUT || rc == RILL_EAGAIN || rc == RILL_ECANCELED || ipc_stopping)
    fprintf(stderr,
            "rill ipc pub: no receiver on %s %s%s; %" PRIu64 " messages sent, the rest not\n", kind,
            a->name, ipc_stopping ? "" : " in time (--timeout)", sent);
  else
    ipc_fail("pub", a->name, rc);
  return 1;
}

/* Sends the records and closes e. kind names it in messages. */
static int pub_loop(args_t *a, end_t *e, uint32_t max, const char *kind) {
  ipc_catch_stop();
  int rc;
  rill_tool_records_t in = {.args = a->rest, .nargs = a->nrest};
  const char *msg;
  size_t len;
  int status = 0;
  uint64_t sent = 0;
  /* A work queue keeps what it is sent for receivers to come. */
  bool waited = e->ch && a->delivery == RILL_IPC_QUEUE;
  while (!status && !ipc_stopping && rill_tool_next_record(&in, &msg, &len)) {
    if (len > max) {
      fprintf(stderr,
              "rill ipc pub: message %" PRIu64 " is %zu bytes; the %s takes at most %u "
              "(--slot-size, or --pool, when creating it)\n",
              sent, len, kind, max);
      status = 1;
      break;
    }
    if (!waited) {
      waited = true;
      if ((status = pub_wait_receiver(a, e, sent, false)) != 0)
        break;
    }
    rc = ipc_send_one(e, msg, (uint32_t)len, a->has_timeout, a->timeout_ms * 1000000ull);
    if (rc == RILL_EPIPE) {
      /* Every receiver left (or died) since: nothing was sent; wait for
       * one and send the same message again. */
      waited = false;
      if ((status = pub_wait_receiver(a, e, sent, true)) != 0)
        break;
      rc = ipc_send_one(e, msg, (uint32_t)len, a->has_timeout, a->timeout_ms * 1000000ull);
    }
    if (rc == RILL_ECLOSED) {
      fprintf(stderr, "rill ipc pub: %s %s was removed (rill ipc rm); %" PRIu64 " messages sent\n",
              kind, a->name, sent);
      status = 1;
    } else if (rc) {
      status = rc == RILL_ECANCELED ? 1 : ipc_fail("pub", "send", rc);
    } else {
      sent++;
    }
  }
  rill_tool_records_free(&in);
  rill_ipc_route_close(e->tx);
  rill_ipc_chan_close(e->ch);
  return status;
}

/* ---- sub --------------------------------------------------------------------------- */

static int sub_loop(args_t *a, end_t *e);

static int cmd_sub(args_t *a) {
  ipc_catch_stop();
  uint64_t limit = a->timeout_ms * 1000000ull, idle = 0;
  rill_ipc_route_t *r = NULL;
  bool told = false;
  /* A route not created yet is waited for: sub may start before pub. */
  for (;;) {
    int rc = rill_ipc_route_open(&r, a->name, NULL, RILL_IPC_RECEIVER);
    if (rc == 0)
      break;
    if (rc != RILL_ENOENT) {
      ipc_fail("sub", a->name, rc);
      chan_hint("sub", a->name);
      return 1;
    }
    if (!told) {
      fprintf(stderr, "rill ipc sub: no route %s yet; waiting for it\n", a->name);
      told = true;
    }
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    idle += 20000000;
    if (ipc_stopping || (a->has_timeout && idle >= limit)) {
      if (!ipc_stopping)
        fprintf(stderr, "rill ipc sub: no route %s after %" PRIu64 " ms\n", a->name, a->timeout_ms);
      return 1;
    }
  }
  end_t e = {.rx = r};
  return sub_loop(a, &e);
}

/* A channel exists once a sub opens it: created here when absent. */
static int cmd_sub_chan(args_t *a) {
  ipc_catch_stop();
  rill_ipc_chan_opts_t o;
  if (ipc_chan_opts(a, "sub", &o))
    return 1;
  rill_ipc_chan_t *ch;
  int rc = rill_ipc_chan_open(&ch, a->name, &o, RILL_IPC_RECEIVER);
  if (rc)
    return ipc_fail("sub", a->name, rc);
  end_t e = {.ch = ch};
  return sub_loop(a, &e);
}

/* Prints what e receives and closes it. */
static int sub_loop(args_t *a, end_t *e) {
  uint64_t limit = a->timeout_ms * 1000000ull, idle = 0;
  signal(SIGPIPE, SIG_DFL);
  int status = 0;
  uint64_t n = 0;
  while (n < a->count && !ipc_stopping) {
    uint64_t slice = a->has_timeout && limit - idle < SLICE_NS ? limit - idle : SLICE_NS;
    rill_ipc_msg_t m;
    uint64_t lost = 0;
    int rc = e->ch ? rill_ipc_chan_recv(e->ch, &m, slice, &lost)
                   : rill_ipc_route_recv(e->rx, &m, slice, &lost);
    if (rc == RILL_ETIMEDOUT || rc == RILL_EAGAIN) {
      idle += slice;
      if (a->has_timeout && idle >= limit) {
        /* Asked for N and got fewer: a failure; otherwise the end of a drain. */
        if (a->count != UINT64_MAX) {
          fprintf(stderr, "rill ipc sub: %" PRIu64 " of %" PRIu64 " messages in time\n", n,
                  a->count);
          status = 1;
        }
        break;
      }
      continue;
    }
    if (rc == RILL_ELAGGED && e->ch) {
      /* A sender died between claiming a message and committing it. */
      fprintf(stderr,
              "rill ipc sub: %" PRIu64 " messages skipped: their sender died before "
              "sending them\n",
              lost);
      continue;
    }
    if (rc == RILL_ELAGGED) {
      /* Under the overwrite policy: say so, and go on from the oldest kept. */
      fprintf(stderr, "rill ipc sub: %" PRIu64 " messages overwritten before they were read\n",
              lost);
      continue;
    }
    if (rc == RILL_ECLOSED) {
      fprintf(stderr,
              "rill ipc sub: %s %s was removed (rill ipc rm); %" PRIu64 " messages received\n",
              e->ch ? "channel" : "route", a->name, n);
      status = 1;
      break;
    }
    if (rc) {
      status = ipc_fail("sub", "receive", rc);
      break;
    }
    idle = 0;
    if (a->json) {
      printf("{\"seq\":%" PRIu64 ",\"len\":%u,\"data\":", m.seq, m.len);
      rill_tool_json_string(stdout, m.data, m.len);
      printf("}\n");
    } else if (a->raw) {
      fwrite(m.data, 1, m.len, stdout);
      putchar('\n');
    } else {
      rill_tool_text(stdout, m.data, m.len);
      putchar('\n');
    }
    fflush(stdout);
    n++;
  }
  rill_ipc_route_close(e->rx);
  rill_ipc_chan_close(e->ch);
  return status;
}

/* ---- ls and rm ------------------------------------------------------------------------ */

typedef struct {
  bool json;
  unsigned n;
} ls_ctx_t;

static int ls_one(void *ctx, const rill_ipc_route_info_t *i) {
  ls_ctx_t *c = ctx;
  /* slowest is the slowest live receiver's next message, head with none. */
  uint64_t lag = i->head >= i->slowest ? i->head - i->slowest : 0;
  if (c->json) {
    printf("{\"name\":");
    rill_tool_json_string(stdout, i->name, strlen(i->name));
    printf(",\"slots\":%u,\"slot_size\":%u,\"max_receivers\":%u,\"policy\":\"%s\","
           "\"head\":%" PRIu64 ",\"sender\":%ld,\"sender_alive\":%s,\"receivers\":%u,"
           "\"dead\":%u,\"lag\":%" PRIu64 ",\"pool\":[",
           i->slots, i->slot_size, i->max_receivers, ipc_policy_name(i->policy), i->head,
           (long)i->sender, i->sender && i->sender_alive ? "true" : "false", i->receivers,
           i->receivers_dead, lag);
    for (uint32_t k = 0; k < i->pool_classes; k++)
      printf("%s{\"size\":%u,\"chunks\":%u}", k ? "," : "", i->pool[k].size, i->pool[k].chunks);
    printf("]}\n");
  } else {
    if (!c->n)
      printf("%-24s %-12s %-9s %12s  %-14s %9s %5s %10s\n", "name", "layout", "policy", "head",
             "sender", "receivers", "dead", "lag");
    char layout[32], sender[32];
    snprintf(layout, sizeof layout, "%ux%u", i->slots, i->slot_size);
    if (i->sender)
      snprintf(sender, sizeof sender, "%ld %s", (long)i->sender,
               i->sender_alive ? "alive" : "dead");
    else
      snprintf(sender, sizeof sender, "none");
    printf("%-24s %-12s %-9s %12" PRIu64 "  %-14s %5u/%-3u %5u %10" PRIu64, i->name, layout,
           ipc_policy_name(i->policy), i->head, sender, i->receivers, i->max_receivers,
           i->receivers_dead, lag);
    /* The pool, when there is one, after the columns: SIZExCHUNKS a class. */
    for (uint32_t k = 0; k < i->pool_classes; k++)
      printf("%s%ux%u", k ? "," : "  pool ", i->pool[k].size, i->pool[k].chunks);
    printf("\n");
  }
  c->n++;
  return 0;
}

/* A channel: many senders; lag is how far the slowest receiver is behind
 * what was claimed. */
static int ls_chan_one(void *ctx, const rill_ipc_chan_info_t *i) {
  ls_ctx_t *c = ctx;
  uint64_t lag = i->claimed >= i->slowest ? i->claimed - i->slowest : 0;
  const char *delivery = i->delivery == RILL_IPC_QUEUE ? "queue" : "broadcast";
  if (c->json) {
    printf("{\"channel\":");
    rill_tool_json_string(stdout, i->name, strlen(i->name));
    printf(",\"slots\":%u,\"slot_size\":%u,\"delivery\":\"%s\",\"policy\":\"%s\","
           "\"claimed\":%" PRIu64 ",\"aborted\":%" PRIu64 ",\"senders\":%u,\"senders_dead\":%u,"
           "\"receivers\":%u,\"receivers_dead\":%u,\"lag\":%" PRIu64 ",\"orphaned\":%u,"
           "\"redelivered\":%" PRIu64 ",\"pool\":[",
           i->slots, i->slot_size, delivery, ipc_policy_name(i->policy), i->claimed, i->aborted,
           i->senders, i->senders_dead, i->receivers, i->receivers_dead, lag, i->orphaned,
           i->redelivered);
    for (uint32_t k = 0; k < i->pool_classes; k++)
      printf("%s{\"size\":%u,\"chunks\":%u}", k ? "," : "", i->pool[k].size, i->pool[k].chunks);
    printf("]}\n");
  } else {
    if (!c->n)
      printf("%-24s %-12s %-9s %-9s %12s %9s %9s %10s\n", "channel", "layout", "delivery", "policy",
             "claimed", "senders", "receivers", "lag");
    char layout[32], senders[24], receivers[24];
    snprintf(layout, sizeof layout, "%ux%u", i->slots, i->slot_size);
    snprintf(senders, sizeof senders, "%u/%u", i->senders, i->max_senders);
    snprintf(receivers, sizeof receivers, "%u/%u", i->receivers, i->max_receivers);
    printf("%-24s %-12s %-9s %-9s %12" PRIu64 " %9s %9s %10" PRIu64, i->name, layout, delivery,
           ipc_policy_name(i->policy), i->claimed, senders, receivers, lag);
    for (uint32_t k = 0; k < i->pool_classes; k++)
      printf("%s%ux%u", k ? "," : "  pool ", i->pool[k].size, i->pool[k].chunks);
    if (i->orphaned || i->redelivered)
      printf("  orphaned %u, redelivered %" PRIu64, i->orphaned, i->redelivered);
    printf("\n");
  }
  c->n++;
  return 0;
}

static int cmd_ls(args_t *a) {
  ls_ctx_t c = {.json = a->json};
  int rc = rill_ipc_route_list(ls_one, &c);
  if (rc < 0)
    return ipc_fail("ls", "/dev/shm", rc);
  if (!c.n && !a->json)
    printf("no routes\n");
  ls_ctx_t cc = {.json = a->json};
  if (!a->json)
    putchar('\n');
  if ((rc = rill_ipc_chan_list(ls_chan_one, &cc)) < 0)
    return ipc_fail("ls", "/dev/shm", rc);
  if (!cc.n && !a->json)
    printf("no channels\n");
  return 0;
}

/* Refuses to remove a route or channel whose participants live, unless
 * --force: 0 to go on, or 1 after saying who is there. */
static int rm_in_use(args_t *a) {
  if (a->force)
    return 0;
  rill_ipc_route_info_t ri;
  rill_ipc_chan_info_t ci;
  char who[160];
  if (rill_ipc_route_info(a->name, &ri) == 0) {
    uint32_t live = ri.receivers - ri.receivers_dead;
    bool tx = ri.sender && ri.sender_alive;
    if (!live && !tx)
      return 0;
    if (tx)
      snprintf(who, sizeof who, "its sender (pid %ld) and %u live receivers", (long)ri.sender,
               live);
    else
      snprintf(who, sizeof who, "%u live receivers", live);
    fprintf(stderr,
            "rill ipc rm: route %s is in use: %s; --force removes it anyway (they are told)\n",
            a->name, who);
    return 1;
  }
  if (rill_ipc_chan_info(a->name, &ci) == 0) {
    uint32_t tx = ci.senders - ci.senders_dead, rx = ci.receivers - ci.receivers_dead;
    if (!tx && !rx)
      return 0;
    fprintf(stderr,
            "rill ipc rm: channel %s is in use: %u live senders and %u live receivers; --force "
            "removes it anyway (they are told)\n",
            a->name, tx, rx);
    return 1;
  }
  return 0; /* none, or not one of ours: rm says so, or removes it */
}

static int cmd_rm(args_t *a) {
  if (rm_in_use(a))
    return 1;
  /* Each kind's unlink refuses the other's segment. */
  int rc = rill_ipc_route_unlink(a->name);
  if (rc == RILL_EINVAL)
    rc = rill_ipc_chan_unlink(a->name);
  if (rc == RILL_ENOENT) {
    fprintf(stderr, "rill ipc rm: no route or channel %s\n", a->name);
    return 1;
  }
  return rc ? ipc_fail("rm", a->name, rc) : 0;
}

/* Without a NAME, and with nothing but the suite's own flags, `rill ipc
 * bench` is the built-in suite, as it was before it took a NAME. --help is
 * bench's own, which tells of both. */
bool rill_ipc_bench_is_suite(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (!strcmp(s, "--filter") && i + 1 < argc)
      i++;
    else if (strcmp(s, "--json") && strcmp(s, "--quick") && strncmp(s, "--filter=", 9))
      return false;
  }
  return true;
}

int rill_ipc_main(int argc, char **argv) {
  if (argc < 2)
    return ipc_usage(stderr);
  const char *cmd = argv[1];
  if (rill_tool_is_help(cmd))
    return ipc_usage(stdout);
  if (!strcmp(cmd, "bench") && rill_ipc_bench_is_suite(argc - 1, argv + 1)) {
    /* With the benches built, main.c hands these to `rill bench ipc`. */
    fprintf(stderr, "rill ipc bench: this rill was built without the benchmarks (RILL_BENCH=OFF); "
                    "the suite is `rill bench ipc` (`rill ipc bench NAME` measures a route)\n");
    return 2;
  }
  if (strcmp(cmd, "pub") && strcmp(cmd, "sub") && strcmp(cmd, "ls") && strcmp(cmd, "rm") &&
      strcmp(cmd, "bench")) {
    fprintf(stderr, "rill ipc: unknown command '%s'\n", cmd);
    return ipc_usage(stderr);
  }
  args_t a;
  int parsed = parse(argc - 1, argv + 1, &a);
  if (parsed) {
    free(a.rest);
    FILE *f = parsed > 0 ? stdout : stderr;
    return !strcmp(cmd, "bench") ? ipc_bench_usage(f) : ipc_usage(f);
  }
  int rc = !strcmp(cmd, "pub")     ? (a.chan ? cmd_pub_chan(&a) : cmd_pub(&a))
           : !strcmp(cmd, "sub")   ? (a.chan ? cmd_sub_chan(&a) : cmd_sub(&a))
           : !strcmp(cmd, "ls")    ? cmd_ls(&a)
           : !strcmp(cmd, "bench") ? ipc_cmd_bench(&a)
                                   : cmd_rm(&a);
  free(a.rest);
  return rc;
}
