/*
 * rill ipc: shared-memory routes and channels from the shell
 * (include/rill/ipc.h).
 *
 * pub sends its arguments, or the lines of stdin, as a route's sender
 * (creating the route with the given layout when there is none); sub
 * attaches as a receiver and prints what is published from then on; ls
 * lists the routes and channels in /dev/shm with their participants; rm
 * removes one (a route or a channel: they share /dev/shm/rill.NAME). With
 * --channel or --queue, pub and sub open a channel instead (many senders;
 * broadcast or a work queue), which either of them creates when it is
 * absent, so that a sub started first need not poll for it as it does for
 * a route: a broadcast receiver gets what is sent after it attached, a
 * queue's receiver what is still queued. bench NAME measures a route or a
 * channel with child processes at the other end (its section below); bench
 * without NAME is the suite `rill bench ipc` (main.c).
 *
 * Waits (a blocked send, a receive) are cut into short slices so that
 * Ctrl-C or SIGTERM closes the route cleanly: a receiver that leaves
 * through rill_ipc_receiver_close frees its place at once, where a killed
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

#include "rill/ipc.h"
#include "tools.h"

#define SLICE_NS 100000000ull /* 100 ms: how long a wait goes before checking for a signal */

static int ipc_usage(FILE *f) {
  fprintf(f,
          "usage: rill ipc <command> ...\n"
          "\n"
          "  pub [--slots N] [--slot-size B] [--policy block|fail|overwrite] [--spin]\n"
          "      [--pool SIZE:CHUNKS[,SIZE:CHUNKS...]] [--timeout MS] NAME [MESSAGE...]\n"
          "        sends each MESSAGE, or each line of stdin when there are none; creates\n"
          "        the route with that layout if it does not exist (defaults: 4096 slots of\n"
          "        128 bytes, block, no pool); --pool: up to 8 size classes of chunks for\n"
          "        messages over a slot, e.g. 4096:64,65536:16; --timeout bounds each\n"
          "        blocked send (default: none)\n"
          "  sub [--count N] [--timeout MS] [--json] NAME\n"
          "        prints each message published from now on, one per line; waits for\n"
          "        the route to be created; --timeout: stop after MS ms without a message\n"
          "  pub|sub --channel|--queue [--slots N] [--slot-size B] [--policy block|fail]\n"
          "      [--spin] [--senders N] [--receivers N] [--pool ...] ...\n"
          "        the same on a channel: many senders, each message to every receiver\n"
          "        (--channel) or to exactly one of them (--queue); pub or sub creates it\n"
          "        with that layout if it does not exist (defaults: 4096 slots of 128\n"
          "        bytes, block, 64 senders, 64 receivers); no overwrite policy\n"
          "  ls [--json]     every route: layout, policy, head, sender, receivers, lag;\n"
          "                  then every channel\n"
          "  rm NAME         removes a route or a channel\n"
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

static int fail(const char *who, const char *what, int rc) {
  fprintf(stderr, "rill ipc %s: %s: %s (%s)\n", who, what, rill_strerror(rc), rill_errmsg());
  return 1;
}

static volatile sig_atomic_t stopping;

static void on_stop(int sig) {
  (void)sig;
  stopping = 1;
}

/* No SA_RESTART: a futex wait or a read of stdin returns at once. */
static void catch_stop(void) {
  struct sigaction sa = {.sa_handler = on_stop};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static bool parse_u64(const char *s, uint64_t *v) {
  char *end;
  if (!*s || *s == '-' || *s == '+' || *s == ' ')
    return false;
  *v = strtoull(s, &end, 10);
  return !*end;
}

static bool parse_u32(const char *s, uint32_t *v) {
  uint64_t x;
  if (!parse_u64(s, &x) || x > UINT32_MAX)
    return false;
  *v = (uint32_t)x;
  return true;
}

static const char *policy_name(rill_ipc_policy_t p) {
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

typedef struct {
  const char *cmd, *name;
  rill_ipc_opts_t o;
  bool has_slots, has_slot_size, has_policy, has_spin, has_timeout, has_pool, json;
  bool chan; /* --channel or --queue: NAME is a channel */
  rill_ipc_delivery_t delivery;
  uint32_t senders, receivers; /* --senders, --receivers; 0: not given */
  const char *chan_only;       /* the first option given that only a channel takes */
  uint64_t count, timeout_ms;
  uint64_t size; /* bench --size */
  bool latency;  /* bench --latency */
  char **rest;
  int nrest;
} args_t;

/* argv[0] is the subcommand. -1 after printing why on a bad argument. */
static int parse(int argc, char **argv, args_t *a) {
  memset(a, 0, sizeof *a);
  a->cmd = argv[0];
  a->count = UINT64_MAX;
  a->rest = rill_tool_alloc_args(argc);
  bool pub = !strcmp(a->cmd, "pub"), sub = !strcmp(a->cmd, "sub"), bench = !strcmp(a->cmd, "bench");
  a->size = 64;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    bool more = i + 1 < argc;
    /* sub takes the layout options only for a channel, which it may create;
     * whether it is one is known once every option is read. */
    bool layout = pub || sub || bench;
    if (sub && !a->chan_only &&
        (((!strcmp(s, "--slots") || !strcmp(s, "--slot-size") || !strcmp(s, "--policy") ||
           !strcmp(s, "--pool")) &&
          more) ||
         !strcmp(s, "--spin")))
      a->chan_only = s;
    if ((pub || sub || bench) && (!strcmp(s, "--channel") || !strcmp(s, "--queue"))) {
      rill_ipc_delivery_t d = !strcmp(s, "--queue") ? RILL_IPC_QUEUE : RILL_IPC_BROADCAST;
      if (a->chan && a->delivery != d)
        return rill_tool_bad("--channel and --queue: one or the other");
      a->chan = true;
      a->delivery = d;
    } else if ((pub || sub || bench) && (!strcmp(s, "--senders") || !strcmp(s, "--receivers")) &&
               more) {
      bool tx = !strcmp(s, "--senders");
      uint32_t *v = tx ? &a->senders : &a->receivers;
      if (!parse_u32(argv[++i], v) || !*v ||
          *v > (tx ? RILL_IPC_MAX_SENDERS : RILL_IPC_MAX_RECEIVERS))
        return rill_tool_bad(tx ? "--senders wants a number from 1 to 64"
                                : "--receivers wants a number from 1 to 64");
      /* bench's --receivers counts its receiver processes, on a route too. */
      if (!a->chan_only && !(bench && !tx))
        a->chan_only = s;
    } else if (layout && !strcmp(s, "--slots") && more) {
      /* 0 would mean "the default" to the library: not what was typed. */
      if (!parse_u32(argv[++i], &a->o.slots) || !a->o.slots)
        return rill_tool_bad("--slots wants a number (a power of two, 2 to 2^24)");
      a->has_slots = true;
    } else if (layout && !strcmp(s, "--slot-size") && more) {
      if (!parse_u32(argv[++i], &a->o.slot_size) || !a->o.slot_size)
        return rill_tool_bad("--slot-size wants bytes (a multiple of 64, 64 to 1 MiB)");
      a->has_slot_size = true;
    } else if (layout && !strcmp(s, "--policy") && more) {
      const char *p = argv[++i];
      if (!strcmp(p, "block"))
        a->o.policy = RILL_IPC_BLOCK;
      else if (!strcmp(p, "fail"))
        a->o.policy = RILL_IPC_FAIL;
      else if (!strcmp(p, "overwrite"))
        a->o.policy = RILL_IPC_OVERWRITE;
      else
        return rill_tool_bad("--policy wants block, fail or overwrite");
      a->has_policy = true;
    } else if (layout && !strcmp(s, "--pool") && more) {
      /* SIZE:CHUNKS[,SIZE:CHUNKS...]: the route's pool classes. */
      const char *p = argv[++i];
      uint32_t n = 0;
      while (*p) {
        char *end;
        unsigned long long size = strtoull(p, &end, 10), chunks = 0;
        if (end != p && *end == ':' && end[1] >= '0' && end[1] <= '9')
          chunks = strtoull(end + 1, &end, 10);
        if (!size || !chunks || size > UINT32_MAX || chunks > UINT32_MAX || (*end && *end != ',') ||
            n == RILL_IPC_MAX_CLASSES)
          return rill_tool_bad("--pool wants SIZE:CHUNKS[,SIZE:CHUNKS...], up to 8 classes in "
                               "ascending size");
        a->o.pool[n++] = (rill_ipc_class_t){(uint32_t)size, (uint32_t)chunks};
        p = *end ? end + 1 : end;
      }
      if (!n)
        return rill_tool_bad("--pool wants SIZE:CHUNKS[,SIZE:CHUNKS...]");
      a->has_pool = true;
    } else if (layout && !strcmp(s, "--spin")) {
      a->o.wait = RILL_IPC_SPIN;
      a->has_spin = true;
    } else if ((pub || sub) && !strcmp(s, "--timeout") && more) {
      if (!parse_u64(argv[++i], &a->timeout_ms) || a->timeout_ms > UINT64_MAX / 1000000)
        return rill_tool_bad("--timeout wants milliseconds");
      a->has_timeout = true;
    } else if ((sub || bench) && !strcmp(s, "--count") && more) {
      if (!parse_u64(argv[++i], &a->count) || (bench && !a->count))
        return rill_tool_bad("--count wants a number");
    } else if (bench && !strcmp(s, "--size") && more) {
      /* The first 8 bytes carry the sequence number the receivers check. */
      if (!parse_u64(argv[++i], &a->size) || a->size < 8 || a->size > (1ull << 30))
        return rill_tool_bad("--size wants bytes, from 8 to 1 GiB");
    } else if (bench && !strcmp(s, "--latency")) {
      a->latency = true;
    } else if ((sub || bench || !strcmp(a->cmd, "ls")) && !strcmp(s, "--json")) {
      a->json = true;
    } else if (s[0] == '-' && s[1] == '-') {
      fprintf(stderr, "rill ipc %s: unknown option %s%s\n", a->cmd, s,
              more ? "" : " (or its value is missing)");
      return -1;
    } else if (!a->name) {
      a->name = s;
    } else {
      a->rest[a->nrest++] = argv[i];
    }
  }
  if (a->chan_only && !a->chan) {
    /* Without --channel or --queue, as before channels existed: sub knows
     * no layout option, and pub no --senders or --receivers. */
    if (sub && strcmp(a->chan_only, "--senders") && strcmp(a->chan_only, "--receivers")) {
      fprintf(stderr, "rill ipc %s: unknown option %s\n", a->cmd, a->chan_only);
      return -1;
    }
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

/* A route's sender or a channel's: pub and sub do the same on either. */
typedef struct {
  rill_ipc_sender_t *tx;
  rill_ipc_receiver_t *rx;
  rill_ipc_chan_t *ch;
} end_t;

/* One message, waiting in slices (see the top); timeout_ns 0 means no limit. */
static int send_one(end_t *e, const void *p, uint32_t len, bool bounded, uint64_t timeout_ns) {
  uint64_t waited = 0;
  for (;;) {
    uint64_t slice = bounded && timeout_ns - waited < SLICE_NS ? timeout_ns - waited : SLICE_NS;
    int rc = e->ch ? rill_ipc_chan_send(e->ch, p, len, slice) : rill_ipc_send(e->tx, p, len, slice);
    if (rc != RILL_ETIMEDOUT)
      return rc;
    waited += slice;
    if (stopping)
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
static int open_route_sender(args_t *a, rill_ipc_sender_t **s, bool *existed) {
  rill_ipc_info_t info;
  *existed = rill_ipc_info(a->name, &info) == 0;
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
  int rc = rill_ipc_sender_open(s, a->name, &a->o);
  if (rc == RILL_EINVAL && *existed && !a->has_spin) {
    /* The wait mode is part of a route but not of its info: a route made
     * with --spin is opened with --spin. */
    a->o.wait = RILL_IPC_SPIN;
    rc = rill_ipc_sender_open(s, a->name, &a->o);
  }
  if (rc == RILL_EBUSY && *existed && info.sender && info.sender_alive) {
    /* Only a pub that is to share the route with its live sender would
     * want it; say whose it is rather than just EBUSY. */
    fprintf(stderr, "rill ipc %s: route %s has a live sender (pid %ld); not taking it over\n",
            a->cmd, a->name, (long)info.sender);
    return 1;
  }
  if (rc) {
    fail(a->cmd, a->name, rc);
    chan_hint(a->cmd, a->name);
    return 1;
  }
  return 0;
}

static int cmd_pub(args_t *a) {
  rill_ipc_sender_t *s;
  bool existed;
  if (open_route_sender(a, &s, &existed))
    return 1;
  end_t e = {.tx = s};
  return pub_loop(a, &e, rill_ipc_max_message(s), "route");
}

/* A channel's layout, for opening it: what was given, and for what was
 * not, what an existing channel has (zero, or its policy), so that
 * `--channel NAME` opens any broadcast channel. */
static int chan_opts(args_t *a, const char *who, rill_ipc_chan_opts_t *o) {
  *o = (rill_ipc_chan_opts_t){.slots = a->has_slots ? a->o.slots : 0,
                              .slot_size = a->has_slot_size ? a->o.slot_size : 0,
                              .max_senders = a->senders,
                              .max_receivers = a->receivers,
                              .delivery = a->delivery,
                              .policy = a->has_policy ? a->o.policy : RILL_IPC_BLOCK,
                              .wait = a->o.wait};
  if (a->has_pool)
    memcpy(o->pool, a->o.pool, sizeof o->pool);
  rill_ipc_info_t ri;
  if (rill_ipc_info(a->name, &ri) == 0) {
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
  if (chan_opts(a, "pub", &o))
    return 1;
  rill_ipc_chan_t *ch;
  int rc = rill_ipc_chan_open(&ch, a->name, &o, RILL_IPC_SENDER);
  if (rc)
    return fail("pub", a->name, rc);
  end_t e = {.ch = ch};
  return pub_loop(a, &e, rill_ipc_chan_max_message(ch), "channel");
}

/* Sends the records and closes e. kind names it in messages. */
static int pub_loop(args_t *a, end_t *e, uint32_t max, const char *kind) {
  catch_stop();
  int rc;
  rill_tool_records_t in = {.args = a->rest, .nargs = a->nrest};
  const char *msg;
  size_t len;
  int status = 0;
  uint64_t sent = 0;
  while (!status && !stopping && rill_tool_next_record(&in, &msg, &len)) {
    if (len > max) {
      fprintf(stderr,
              "rill ipc pub: message %" PRIu64 " is %zu bytes; the %s takes at most %u "
              "(--slot-size, or --pool, when creating it)\n",
              sent, len, kind, max);
      status = 1;
    } else if ((rc = send_one(e, msg, (uint32_t)len, a->has_timeout, a->timeout_ms * 1000000ull)) !=
               0) {
      status = rc == RILL_ECANCELED ? 1 : fail("pub", "send", rc);
    } else {
      sent++;
    }
  }
  rill_tool_records_free(&in);
  rill_ipc_sender_close(e->tx);
  rill_ipc_chan_close(e->ch);
  return status;
}

/* ---- sub --------------------------------------------------------------------------- */

static int sub_loop(args_t *a, end_t *e);

static int cmd_sub(args_t *a) {
  catch_stop();
  uint64_t limit = a->timeout_ms * 1000000ull, idle = 0;
  rill_ipc_receiver_t *r = NULL;
  bool told = false;
  /* A route not created yet is waited for: sub may start before pub. */
  for (;;) {
    int rc = rill_ipc_receiver_open(&r, a->name);
    if (rc == 0)
      break;
    if (rc != RILL_ENOENT) {
      fail("sub", a->name, rc);
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
    if (stopping || (a->has_timeout && idle >= limit)) {
      if (!stopping)
        fprintf(stderr, "rill ipc sub: no route %s after %" PRIu64 " ms\n", a->name, a->timeout_ms);
      return 1;
    }
  }
  end_t e = {.rx = r};
  return sub_loop(a, &e);
}

/* A channel exists once a sub opens it: created here when absent. */
static int cmd_sub_chan(args_t *a) {
  catch_stop();
  rill_ipc_chan_opts_t o;
  if (chan_opts(a, "sub", &o))
    return 1;
  rill_ipc_chan_t *ch;
  int rc = rill_ipc_chan_open(&ch, a->name, &o, RILL_IPC_RECEIVER);
  if (rc)
    return fail("sub", a->name, rc);
  end_t e = {.ch = ch};
  return sub_loop(a, &e);
}

/* Prints what e receives and closes it. */
static int sub_loop(args_t *a, end_t *e) {
  uint64_t limit = a->timeout_ms * 1000000ull, idle = 0;
  signal(SIGPIPE, SIG_DFL);
  int status = 0;
  uint64_t n = 0;
  while (n < a->count && !stopping) {
    uint64_t slice = a->has_timeout && limit - idle < SLICE_NS ? limit - idle : SLICE_NS;
    rill_ipc_msg_t m;
    uint64_t lost = 0;
    int rc = e->ch ? rill_ipc_chan_recv(e->ch, &m, slice, &lost)
                   : rill_ipc_recv(e->rx, &m, slice, &lost);
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
    if (rc) {
      status = fail("sub", "receive", rc);
      break;
    }
    idle = 0;
    if (a->json) {
      printf("{\"seq\":%" PRIu64 ",\"len\":%u,\"data\":", m.seq, m.len);
      rill_tool_json_string(stdout, m.data, m.len);
      printf("}\n");
    } else {
      rill_tool_text(stdout, m.data, m.len);
      putchar('\n');
    }
    fflush(stdout);
    n++;
  }
  rill_ipc_receiver_close(e->rx);
  rill_ipc_chan_close(e->ch);
  return status;
}

/* ---- bench ------------------------------------------------------------------------- */

/* rill ipc bench NAME: the user's own route or channel, measured. The
 * receivers (and a channel's senders) are child processes; they report
 * through one pipe (a report is one write, under PIPE_BUF, so reports do
 * not interleave). Two more pipes carry the parent's word without a
 * message on the route: the children never write to them, the parent
 * closes its end, and the EOF is seen by every child at once; it is seen
 * too when the parent dies, so no child outlives it waiting. */

#define BENCH_SLICE_NS 20000000ull /* a receiver's wait: how late it sees the end */
#define BENCH_MAX_KIDS (RILL_IPC_MAX_RECEIVERS + RILL_IPC_MAX_SENDERS)
#define SEQ_BITS       56 /* a message's first 8 bytes: sender << 56 | its sequence number */

enum { REPORT_READY = 1, REPORT_DONE };

typedef struct {
  uint32_t kind, idx;
  uint64_t count, lost, bad;
  uint64_t t_last; /* rill_time_mono_ns of the last message received or sent */
} report_t;

typedef struct {
  args_t *a;
  const char *back;                  /* --latency: the route the echoes come back on */
  uint32_t size, receivers, senders; /* processes */
  uint64_t count;
  bool queue, gaps_ok; /* gaps_ok: the overwrite policy, where lapped messages are lost */
  int up[2], go[2], done[2];
  pid_t pid[BENCH_MAX_KIDS];
  bool exited[BENCH_MAX_KIDS];
  report_t res[BENCH_MAX_KIDS];
  uint32_t kids, ready, finished;
} bench_t;

static const char *kid_role(const bench_t *b, uint32_t i) {
  return i < b->receivers ? "receiver" : "sender";
}

static void put_report(bench_t *b, report_t r) {
  ssize_t w = write(b->up[1], &r, sizeof r);
  (void)w; /* a parent gone: nobody to tell */
}

/* The parent's word on fd (its EOF): the senders are done, or go. */
static bool told(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, 0) > 0;
}

/* A child keeps none of the parent's pipe ends it does not use: the EOFs
 * the parent gives by closing its own would never come otherwise. Children
 * end with _exit, leaving alone the parent's stdio buffers and its route
 * handles, which fork copied (closing those would free the parent's place). */
static void kid_start(bench_t *b) {
  close(b->up[0]);
  close(b->go[1]);
  close(b->done[1]);
}

static void bench_receiver(bench_t *b, uint32_t idx) {
  args_t *a = b->a;
  end_t e = {0};
  int rc = a->chan ? rill_ipc_chan_open(&e.ch, a->name, NULL, RILL_IPC_RECEIVER)
                   : rill_ipc_receiver_open(&e.rx, a->name);
  if (rc) {
    fail("bench", "a receiver", rc);
    _exit(1);
  }
  put_report(b, (report_t){.kind = REPORT_READY, .idx = idx});
  report_t r = {.kind = REPORT_DONE, .idx = idx};
  uint64_t next[RILL_IPC_MAX_SENDERS] = {0};
  bool done = false;
  int status = 0;
  /* Broadcast: every message is this receiver's, so it knows when it has
   * them all; a queue's receiver runs until the queue is empty once the
   * senders are done. */
  while (b->queue || r.count + r.lost < b->count) {
    if (stopping) {
      status = 1;
      break;
    }
    rill_ipc_msg_t m;
    uint64_t lost = 0;
    uint64_t slice = done ? 0 : BENCH_SLICE_NS;
    rc = e.ch ? rill_ipc_chan_recv(e.ch, &m, slice, &lost) : rill_ipc_recv(e.rx, &m, slice, &lost);
    if (rc == RILL_ETIMEDOUT || rc == RILL_EAGAIN) {
      if (done)
        break;
      done = told(b->done[0]);
      continue;
    }
    if (rc == RILL_ELAGGED) {
      /* Overwritten messages show as a gap in the numbers (counted there);
       * a channel's skipped claim of a dead sender is lost outright. */
      if (e.ch)
        r.lost += lost;
      continue;
    }
    if (rc) {
      status = fail("bench", "receive", rc);
      break;
    }
    r.t_last = rill_time_mono_ns();
    r.count++;
    uint64_t v = 0;
    memcpy(&v, m.data, m.len < 8 ? m.len : 8);
    uint64_t who = v >> SEQ_BITS, n = v & ((1ull << SEQ_BITS) - 1);
    if (m.len != b->size || who >= b->senders || (m.flags & RILL_IPC_REDELIVERED) ||
        n < next[who] || (!b->queue && !b->gaps_ok && n != next[who])) {
      r.bad++;
      continue;
    }
    if (!b->queue)
      r.lost += n - next[who];
    next[who] = n + 1;
  }
  if (!status)
    put_report(b, r);
  rill_ipc_receiver_close(e.rx);
  rill_ipc_chan_close(e.ch);
  _exit(status);
}

/* One message, as long as it takes: under the fail policy a full ring is
 * tried again, as a sender that must not lose messages would. */
static int bench_send(end_t *e, const void *p, uint32_t len) {
  for (;;) {
    int rc = send_one(e, p, len, false, 0);
    if (rc != RILL_EFULL)
      return rc;
    if (stopping)
      return RILL_ECANCELED;
    sched_yield();
  }
}

static bool bench_check(bench_t *b);

/* Sends messages [0, n) of sender who; 0, or 1 after printing why. The
 * parent (watch) looks at its children now and then: a dead receiver is
 * reaped by the route and no longer holds the sender back, but the run
 * has failed and need not go on. */
static int bench_send_all(bench_t *b, end_t *e, uint32_t who, uint64_t n, uint8_t *buf,
                          bool watch) {
  for (uint64_t i = 0; i < n; i++) {
    if (stopping || (watch && !(i & 0xffff) && i && !bench_check(b)))
      return 1;
    uint64_t v = (uint64_t)who << SEQ_BITS | i;
    memcpy(buf, &v, 8);
    int rc = bench_send(e, buf, b->size);
    if (rc == RILL_ECANCELED)
      return 1;
    if (rc)
      return fail("bench", "send", rc);
  }
  return 0;
}

static void bench_sender(bench_t *b, uint32_t idx, uint64_t n) {
  end_t e = {0};
  int rc = rill_ipc_chan_open(&e.ch, b->a->name, NULL, RILL_IPC_SENDER);
  if (rc) {
    fail("bench", "a sender", rc);
    _exit(1);
  }
  uint8_t *buf = calloc(1, b->size);
  if (!buf) {
    fprintf(stderr, "rill ipc bench: no memory for a %u-byte message\n", b->size);
    _exit(1);
  }
  put_report(b, (report_t){.kind = REPORT_READY, .idx = b->receivers + idx});
  while (!told(b->go[0])) {
    if (stopping)
      _exit(1);
    struct pollfd p = {.fd = b->go[0], .events = POLLIN};
    poll(&p, 1, 100);
  }
  int status = bench_send_all(b, &e, idx, n, buf, false);
  if (!status)
    put_report(b, (report_t){.kind = REPORT_DONE,
                             .idx = b->receivers + idx,
                             .count = n,
                             .t_last = rill_time_mono_ns()});
  rill_ipc_chan_close(e.ch);
  _exit(status);
}

static int bench_fork(bench_t *b, void (*fn)(bench_t *, uint32_t, uint64_t), uint32_t idx,
                      uint64_t n) {
  fflush(NULL);
  pid_t p = fork();
  if (p < 0) {
    fprintf(stderr, "rill ipc bench: fork: %s\n", strerror(errno));
    return 1;
  }
  if (p == 0) {
    kid_start(b);
    fn(b, idx, n);
    _exit(0);
  }
  b->pid[b->kids++] = p;
  return 0;
}

static void receiver_fn(bench_t *b, uint32_t idx, uint64_t n) {
  (void)n;
  bench_receiver(b, idx);
}

static void sender_fn(bench_t *b, uint32_t idx, uint64_t n) { bench_sender(b, idx, n); }

/* Reads the reports waiting in the pipe, for up to ms. */
static void bench_read(bench_t *b, int ms) {
  struct pollfd p = {.fd = b->up[0], .events = POLLIN};
  while (poll(&p, 1, ms) > 0 && (p.revents & POLLIN)) {
    report_t r;
    if (read(b->up[0], &r, sizeof r) != (ssize_t)sizeof r || r.idx >= b->kids)
      return;
    if (r.kind == REPORT_READY) {
      b->ready++;
    } else {
      b->res[r.idx] = r;
      b->finished++;
    }
    ms = 0;
  }
}

/* false when a child died before its report (said why), or on a signal. */
static bool bench_check(bench_t *b) {
  for (uint32_t i = 0; i < b->kids; i++) {
    int st;
    if (b->exited[i] || waitpid(b->pid[i], &st, WNOHANG) != b->pid[i])
      continue;
    b->exited[i] = true;
    bench_read(b, 0); /* what it wrote before it exited */
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && b->res[i].kind == REPORT_DONE)
      continue;
    if (WIFSIGNALED(st))
      fprintf(stderr, "rill ipc bench: %s %u (pid %ld) was killed by signal %d\n", kid_role(b, i),
              i < b->receivers ? i : i - b->receivers, (long)b->pid[i], WTERMSIG(st));
    else
      fprintf(stderr, "rill ipc bench: %s %u (pid %ld) failed (exit status %d)\n", kid_role(b, i),
              i < b->receivers ? i : i - b->receivers, (long)b->pid[i],
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return false;
  }
  return !stopping;
}

/* Waits for *counter to reach want; false as bench_check. */
static bool bench_wait(bench_t *b, uint32_t *counter, uint32_t want) {
  while (*counter < want) {
    bench_read(b, 100);
    if (!bench_check(b))
      return false;
  }
  return true;
}

/* Ends the children still running (a failed or interrupted run). */
static void bench_reap(bench_t *b, bool kill_them) {
  for (uint32_t i = 0; i < b->kids; i++)
    if (!b->exited[i]) {
      if (kill_them)
        kill(b->pid[i], SIGTERM);
      waitpid(b->pid[i], NULL, 0);
      b->exited[i] = true;
    }
}

static void print_pool_json(const rill_ipc_class_t *pool, uint32_t n) {
  printf("\"pool\":[");
  for (uint32_t k = 0; k < n; k++)
    printf("%s{\"size\":%u,\"chunks\":%u}", k ? "," : "", pool[k].size, pool[k].chunks);
  printf("]");
}

/* What the run was on, for the report: the layout as it is in the segment. */
typedef struct {
  const char *kind; /* "route", "channel" or "queue" */
  bool created;
  uint32_t slots, slot_size, classes;
  rill_ipc_policy_t policy;
  const char *wait; /* NULL when not known (a channel found, not made) */
  rill_ipc_class_t pool[RILL_IPC_MAX_CLASSES];
} layout_t;

static void layout_read(args_t *a, bool created, layout_t *l) {
  memset(l, 0, sizeof *l);
  l->created = created;
  if (a->chan) {
    rill_ipc_chan_info_t ci;
    l->kind = a->delivery == RILL_IPC_QUEUE ? "queue" : "channel";
    if (rill_ipc_chan_info(a->name, &ci) == 0) {
      l->slots = ci.slots, l->slot_size = ci.slot_size, l->policy = ci.policy;
      l->classes = ci.pool_classes;
      memcpy(l->pool, ci.pool, sizeof l->pool);
    }
    /* A channel does not say how it waits; only its creator knows. */
    if (created)
      l->wait = a->o.wait == RILL_IPC_SPIN ? "spin" : "park";
  } else {
    rill_ipc_info_t ri;
    l->kind = "route";
    if (rill_ipc_info(a->name, &ri) == 0) {
      l->slots = ri.slots, l->slot_size = ri.slot_size, l->policy = ri.policy;
      l->classes = ri.pool_classes;
      memcpy(l->pool, ri.pool, sizeof l->pool);
    }
    l->wait = a->o.wait == RILL_IPC_SPIN ? "spin" : "park";
  }
}

static void layout_json(const args_t *a, const layout_t *l) {
  printf("\"kind\":\"%s\",\"name\":", l->kind);
  rill_tool_json_string(stdout, a->name, strlen(a->name));
  printf(",\"created\":%s,\"slots\":%u,\"slot_size\":%u,\"policy\":\"%s\",",
         l->created ? "true" : "false", l->slots, l->slot_size, policy_name(l->policy));
  if (l->wait)
    printf("\"wait\":\"%s\",", l->wait);
  print_pool_json(l->pool, l->classes);
}

static void layout_text(const args_t *a, const layout_t *l) {
  printf("%s %s (%s): %u slots of %u bytes, %s", l->kind, a->name,
         l->created ? "created for the run" : "as it was", l->slots, l->slot_size,
         policy_name(l->policy));
  if (l->wait)
    printf(", %s", l->wait);
  for (uint32_t k = 0; k < l->classes; k++)
    printf("%s%ux%u", k ? "," : ", pool ", l->pool[k].size, l->pool[k].chunks);
  printf("\n");
}

static void bench_unlink(args_t *a, bool created) {
  if (created)
    a->chan ? rill_ipc_chan_unlink(a->name) : rill_ipc_unlink(a->name);
}

/* Opens (or creates) NAME for the run; for a channel, the open only checks
 * and creates it (the children open their own ends). 0 or 1. */
static int bench_open(args_t *a, end_t *e, bool *created, uint32_t *max) {
  memset(e, 0, sizeof *e);
  if (!a->chan) {
    bool existed;
    if (open_route_sender(a, &e->tx, &existed))
      return 1;
    *created = !existed;
    *max = rill_ipc_max_message(e->tx);
    return 0;
  }
  rill_ipc_chan_opts_t o;
  if (chan_opts(a, "bench", &o))
    return 1;
  /* --senders and --receivers count bench's processes here, not the
   * channel's places: a channel made for the run gets the defaults. */
  o.max_senders = o.max_receivers = 0;
  rill_ipc_chan_info_t ci;
  bool existed = rill_ipc_chan_info(a->name, &ci) == 0;
  int rc = rill_ipc_chan_open(&e->ch, a->name, &o, RILL_IPC_SENDER);
  if (rc)
    return fail("bench", a->name, rc);
  *created = !existed;
  *max = rill_ipc_chan_max_message(e->ch);
  return 0;
}

/* A --size over what NAME takes is refused with the library's own words:
 * asked to send it, the library checks the length before anything else,
 * so nothing is sent (nor is the dummy pointer read). */
static int size_check(args_t *a, end_t *e, uint32_t max) {
  if (a->size <= max)
    return 0;
  void *p;
  int rc = e->ch ? rill_ipc_chan_send(e->ch, &max, (uint32_t)a->size, 0)
                 : rill_ipc_reserve(e->tx, (uint32_t)a->size, 0, &p);
  fail("bench", a->name, rc ? rc : RILL_EMSGSIZE);
  fprintf(stderr,
          "rill ipc bench: --size %" PRIu64 " is over the %u bytes %s takes (--slot-size, or "
          "--pool, when creating it)\n",
          a->size, max, a->name);
  return 1;
}

static double secs(uint64_t ns) { return (double)ns / 1e9; }

static int bench_throughput(args_t *a) {
  bench_t b = {.a = a,
               .size = (uint32_t)a->size,
               .receivers = a->receivers ? a->receivers : 1,
               .senders = a->chan && a->senders ? a->senders : 1,
               .count = a->count == UINT64_MAX ? 1000000 : a->count,
               .queue = a->chan && a->delivery == RILL_IPC_QUEUE,
               .up = {-1, -1},
               .go = {-1, -1},
               .done = {-1, -1}};
  end_t e;
  bool created = false;
  uint32_t max = 0;
  if (bench_open(a, &e, &created, &max))
    return 1;
  layout_t l;
  layout_read(a, created, &l);
  b.gaps_ok = !a->chan && l.policy == RILL_IPC_OVERWRITE;
  int status = 1;
  uint8_t *buf = NULL;
  uint64_t t0 = 0, t_sent = 0;
  int sized = size_check(a, &e, max);
  /* The channel's own end was to create it and check the layout. */
  rill_ipc_chan_close(e.ch);
  e.ch = NULL;
  if (sized)
    goto out;
  if (pipe(b.up) || pipe(b.go) || pipe(b.done)) {
    fprintf(stderr, "rill ipc bench: pipe: %s\n", strerror(errno));
    goto out;
  }
  catch_stop();
  signal(SIGPIPE, SIG_IGN);
  for (uint32_t i = 0; i < b.receivers; i++)
    if (bench_fork(&b, receiver_fn, i, 0))
      goto out;
  if (!bench_wait(&b, &b.ready, b.receivers))
    goto out;
  if (a->chan) {
    for (uint32_t i = 0; i < b.senders; i++)
      if (bench_fork(&b, sender_fn, i, b.count / b.senders + (i < b.count % b.senders)))
        goto out;
    if (!bench_wait(&b, &b.ready, b.receivers + b.senders))
      goto out;
    t0 = rill_time_mono_ns();
    close(b.go[1]);
    b.go[1] = -1;
    if (!bench_wait(&b, &b.finished, b.senders))
      goto out;
    for (uint32_t i = 0; i < b.senders; i++)
      if (b.res[b.receivers + i].t_last > t_sent)
        t_sent = b.res[b.receivers + i].t_last;
  } else {
    if (!(buf = calloc(1, b.size))) {
      fprintf(stderr, "rill ipc bench: no memory for a %u-byte message\n", b.size);
      goto out;
    }
    t0 = rill_time_mono_ns();
    if (bench_send_all(&b, &e, 0, b.count, buf, true))
      goto out;
    t_sent = rill_time_mono_ns();
  }
  close(b.done[1]);
  b.done[1] = -1;
  if (!bench_wait(&b, &b.finished, b.receivers + (a->chan ? b.senders : 0)))
    goto out;
  bench_reap(&b, false);

  /* Receivers' figures, from the clock's start to the last message each got
   * (CLOCK_MONOTONIC is one clock for every process). */
  uint64_t got = 0, bad = 0, lost = 0, t_end = t0;
  for (uint32_t i = 0; i < b.receivers; i++) {
    got += b.res[i].count, bad += b.res[i].bad, lost += b.res[i].lost;
    if (b.res[i].t_last > t_end)
      t_end = b.res[i].t_last;
  }
  status = 0;
  if (bad) {
    fprintf(stderr,
            "rill ipc bench: %" PRIu64 " messages out of order or not the bench's (another "
            "sender on %s?)\n",
            bad, a->name);
    status = 1;
  }
  if (b.queue && got != b.count) {
    fprintf(stderr, "rill ipc bench: the receivers got %" PRIu64 " of %" PRIu64 " messages\n", got,
            b.count);
    status = 1;
  }
  if (!b.queue && !b.gaps_ok && got != b.count * b.receivers) {
    fprintf(stderr, "rill ipc bench: the receivers got %" PRIu64 " of %" PRIu64 " messages\n", got,
            b.count * b.receivers);
    status = 1;
  }
  double per_s = 0, mb_s = 0;
  if (a->json) {
    printf("{\"mode\":\"throughput\",");
    layout_json(a, &l);
    printf(",\"delivery\":\"%s\",\"size\":%u,\"count\":%" PRIu64 ",\"senders\":%u,"
           "\"receivers\":%u,\"send_s\":%.6f",
           b.queue ? "queue" : "broadcast", b.size, b.count, b.senders, b.receivers,
           secs(t_sent - t0));
  } else {
    layout_text(a, &l);
    printf("%" PRIu64 " messages of %u bytes, %u sender%s, %u receiver%s (%s); sent in %.3f s\n",
           b.count, b.size, b.senders, b.senders == 1 ? "" : "s", b.receivers,
           b.receivers == 1 ? "" : "s", b.queue ? "a queue: each message to one" : "each gets all",
           secs(t_sent - t0));
  }
  if (b.queue) {
    /* A queue's figure is the whole: every receiver's share together. */
    double el = secs(t_end - t0);
    per_s = el > 0 ? (double)got / el : 0;
    mb_s = per_s * b.size / 1e6;
    if (a->json)
      printf(",\"messages\":%" PRIu64 ",\"elapsed_s\":%.6f,\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f",
             got, el, per_s, mb_s);
    else
      printf("received %" PRIu64 " messages in %.3f s: %.0f msg/s, %.1f MB/s\n", got, el, per_s,
             mb_s);
  }
  if (a->json)
    printf(",\"per_receiver\":[");
  for (uint32_t i = 0; i < b.receivers; i++) {
    report_t *r = &b.res[i];
    double el = secs(r->t_last > t0 ? r->t_last - t0 : 0);
    double rs = el > 0 ? (double)r->count / el : 0, rmb = rs * b.size / 1e6;
    if (a->json)
      printf("%s{\"messages\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"elapsed_s\":%.6f,"
             "\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f}",
             i ? "," : "", r->count, r->lost, el, rs, rmb);
    else if (b.queue)
      printf("  receiver %u: %" PRIu64 " messages\n", i, r->count);
    else
      printf("receiver %u: %" PRIu64 " messages in %.3f s: %.0f msg/s, %.1f MB/s\n", i, r->count,
             el, rs, rmb);
    if (!a->json && r->lost)
      printf("  receiver %u: %" PRIu64 " messages lost (overwritten or a dead sender's)\n", i,
             r->lost);
  }
  if (a->json)
    printf("],\"ok\":%s}\n", status ? "false" : "true");
out:
  if (status && stopping)
    fprintf(stderr, "rill ipc bench: interrupted\n");
  bench_reap(&b, true);
  for (int k = 0; k < 2; k++) {
    int *fds[] = {b.up, b.go, b.done};
    for (int j = 0; j < 3; j++)
      if (fds[j][k] >= 0)
        close(fds[j][k]);
  }
  free(buf);
  rill_ipc_sender_close(e.tx);
  bench_unlink(a, created);
  return status;
}

/* ---- bench --latency ---------------------------------------------------------------- */

/* The other end of the ping-pong: each ping received on NAME is sent back
 * as it is on NAME.back, from its place in NAME's ring. */
static void echo_fn(bench_t *b, uint32_t idx, uint64_t n) {
  args_t *a = b->a;
  end_t in = {0}, out = {0};
  int rc = a->chan ? rill_ipc_chan_open(&in.ch, a->name, NULL, RILL_IPC_RECEIVER)
                   : rill_ipc_receiver_open(&in.rx, a->name);
  if (rc || (rc = rill_ipc_sender_open(&out.tx, b->back, NULL)) != 0) {
    fail("bench", "the echo", rc);
    _exit(1);
  }
  put_report(b, (report_t){.kind = REPORT_READY, .idx = idx});
  uint64_t i = 0;
  int status = 0;
  while (i < n) {
    if (stopping) {
      status = 1;
      break;
    }
    rill_ipc_msg_t m;
    rc = in.ch ? rill_ipc_chan_recv(in.ch, &m, BENCH_SLICE_NS, NULL)
               : rill_ipc_recv(in.rx, &m, BENCH_SLICE_NS, NULL);
    if (rc == RILL_ETIMEDOUT || rc == RILL_EAGAIN) {
      /* The done pipe's EOF here: the parent gave up, or died. */
      if (told(b->done[0])) {
        status = 1;
        break;
      }
      continue;
    }
    if (rc == RILL_ELAGGED)
      continue;
    if (rc) {
      status = fail("bench", "the echo's receive", rc);
      break;
    }
    if ((rc = bench_send(&out, m.data, m.len)) != 0) {
      status = rc == RILL_ECANCELED ? 1 : fail("bench", "the echo's send", rc);
      break;
    }
    i++;
  }
  if (!status)
    put_report(b, (report_t){.kind = REPORT_DONE, .idx = idx, .count = i});
  rill_ipc_receiver_close(in.rx);
  rill_ipc_chan_close(in.ch);
  rill_ipc_sender_close(out.tx);
  _exit(status);
}

static int bench_latency(args_t *a) {
  char back[RILL_IPC_MAX_NAME + 8];
  snprintf(back, sizeof back, "%s.back", a->name);
  if (strlen(back) > RILL_IPC_MAX_NAME) {
    fprintf(stderr, "rill ipc bench: --latency needs a route %s.back: a name of at most %u bytes\n",
            a->name, RILL_IPC_MAX_NAME - 5);
    return 2;
  }
  rill_ipc_info_t bi;
  rill_ipc_chan_info_t bci;
  if (rill_ipc_info(back, &bi) == 0 || rill_ipc_chan_info(back, &bci) == 0) {
    /* It is the run's own, made and removed by it: one that exists is
     * someone else's, or a killed run's (rill ipc rm removes it). */
    fprintf(stderr, "rill ipc bench: %s exists; --latency makes it for the run (rill ipc rm %s)\n",
            back, back);
    return 1;
  }
  bench_t b = {.a = a,
               .back = back,
               .size = (uint32_t)a->size,
               .receivers = 1,
               .senders = 1,
               .count = a->count == UINT64_MAX ? 100000 : a->count,
               .up = {-1, -1},
               .go = {-1, -1},
               .done = {-1, -1}};
  end_t e;
  bool created = false, back_created = false;
  uint32_t max = 0;
  if (bench_open(a, &e, &created, &max))
    return 1;
  layout_t l;
  layout_read(a, created, &l);
  int status = 1;
  uint8_t *buf = NULL;
  rill_ipc_receiver_t *rx = NULL;
  rill_hist_t h;
  rill_hist_init(&h);
  if (size_check(a, &e, max))
    goto out;
  /* NAME's layout, so that an echo fits wherever its ping did. */
  rill_ipc_opts_t bo = {.slots = l.slots, .slot_size = l.slot_size, .wait = a->o.wait};
  memcpy(bo.pool, l.pool, sizeof bo.pool);
  rill_ipc_sender_t *tmp;
  int rc = rill_ipc_sender_open(&tmp, back, &bo);
  if (rc) {
    fail("bench", back, rc);
    goto out;
  }
  back_created = true;
  rill_ipc_sender_close(tmp);
  if ((rc = rill_ipc_receiver_open(&rx, back)) != 0) {
    fail("bench", back, rc);
    goto out;
  }
  if (!(buf = calloc(1, b.size))) {
    fprintf(stderr, "rill ipc bench: no memory for a %u-byte message\n", b.size);
    goto out;
  }
  if (pipe(b.up) || pipe(b.go) || pipe(b.done)) {
    fprintf(stderr, "rill ipc bench: pipe: %s\n", strerror(errno));
    goto out;
  }
  catch_stop();
  signal(SIGPIPE, SIG_IGN);
  if (bench_fork(&b, echo_fn, 0, b.count) || !bench_wait(&b, &b.ready, 1))
    goto out;
  for (uint64_t i = 0; i < b.count; i++) {
    if (stopping)
      goto out;
    memcpy(buf, &i, 8);
    uint64_t t0 = rill_time_ns();
    if ((rc = bench_send(&e, buf, b.size)) != 0) {
      if (rc != RILL_ECANCELED)
        fail("bench", "send", rc);
      goto out;
    }
    rill_ipc_msg_t m;
    for (;;) {
      rc = rill_ipc_recv(rx, &m, SLICE_NS, NULL);
      if (rc == 0)
        break;
      if (rc == RILL_ETIMEDOUT || rc == RILL_EAGAIN) {
        /* No echo yet: a dead echo fails the run rather than hang it. */
        if (!bench_check(&b))
          goto out;
        continue;
      }
      if (rc != RILL_ELAGGED) {
        fail("bench", "receive", rc);
        goto out;
      }
    }
    uint64_t t1 = rill_time_ns(), v = 0;
    memcpy(&v, m.data, m.len < 8 ? m.len : 8);
    if (m.len != b.size || v != i) {
      fprintf(stderr,
              "rill ipc bench: round trip %" PRIu64 ": an echo of %u bytes numbered %" PRIu64
              " (another sender or receiver on %s?)\n",
              i, m.len, v, a->name);
      goto out;
    }
    rill_hist_record(&h, (t1 - t0) / 2);
  }
  if (!bench_wait(&b, &b.finished, 1))
    goto out;
  bench_reap(&b, false);
  status = 0;
  if (a->json) {
    printf("{\"mode\":\"latency\",");
    layout_json(a, &l);
    printf(",\"back\":");
    rill_tool_json_string(stdout, back, strlen(back));
    printf(",\"size\":%u,\"round_trips\":%" PRIu64 ",\"p50_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64
           ",\"p999_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64 ",\"min_ns\":%" PRIu64
           ",\"mean_ns\":%.0f}\n",
           b.size, h.count, rill_hist_quantile(&h, 0.5), rill_hist_quantile(&h, 0.99),
           rill_hist_quantile(&h, 0.999), h.max, h.min, rill_hist_mean(&h));
  } else {
    layout_text(a, &l);
    printf("%" PRIu64 " round trips of %u bytes, back on route %s; one-way latency (half a round "
           "trip):\n  p50 %" PRIu64 " ns, p99 %" PRIu64 " ns, p999 %" PRIu64 " ns, max %" PRIu64
           " ns\n",
           h.count, b.size, back, rill_hist_quantile(&h, 0.5), rill_hist_quantile(&h, 0.99),
           rill_hist_quantile(&h, 0.999), h.max);
  }
out:
  if (status && stopping)
    fprintf(stderr, "rill ipc bench: interrupted\n");
  bench_reap(&b, true);
  for (int k = 0; k < 2; k++) {
    int *fds[] = {b.up, b.go, b.done};
    for (int j = 0; j < 3; j++)
      if (fds[j][k] >= 0)
        close(fds[j][k]);
  }
  free(buf);
  rill_ipc_receiver_close(rx);
  rill_ipc_sender_close(e.tx);
  rill_ipc_chan_close(e.ch);
  if (back_created)
    rill_ipc_unlink(back);
  bench_unlink(a, created);
  return status;
}

static int cmd_bench(args_t *a) { return a->latency ? bench_latency(a) : bench_throughput(a); }

/* ---- ls and rm ------------------------------------------------------------------------ */

typedef struct {
  bool json;
  unsigned n;
} ls_ctx_t;

static int ls_one(void *ctx, const rill_ipc_info_t *i) {
  ls_ctx_t *c = ctx;
  /* slowest is the slowest live receiver's next message, head with none. */
  uint64_t lag = i->head >= i->slowest ? i->head - i->slowest : 0;
  if (c->json) {
    printf("{\"name\":");
    rill_tool_json_string(stdout, i->name, strlen(i->name));
    printf(",\"slots\":%u,\"slot_size\":%u,\"max_receivers\":%u,\"policy\":\"%s\","
           "\"head\":%" PRIu64 ",\"sender\":%ld,\"sender_alive\":%s,\"receivers\":%u,"
           "\"dead\":%u,\"lag\":%" PRIu64 ",\"pool\":[",
           i->slots, i->slot_size, i->max_receivers, policy_name(i->policy), i->head,
           (long)i->sender, i->sender && i->sender_alive ? "true" : "false", i->receivers, i->dead,
           lag);
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
           policy_name(i->policy), i->head, sender, i->receivers, i->max_receivers, i->dead, lag);
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
           i->slots, i->slot_size, delivery, policy_name(i->policy), i->claimed, i->aborted,
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
           policy_name(i->policy), i->claimed, senders, receivers, lag);
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
  int rc = rill_ipc_list(ls_one, &c);
  if (rc < 0)
    return fail("ls", "/dev/shm", rc);
  if (!c.n && !a->json)
    printf("no routes\n");
  ls_ctx_t cc = {.json = a->json};
  if (!a->json)
    putchar('\n');
  if ((rc = rill_ipc_chan_list(ls_chan_one, &cc)) < 0)
    return fail("ls", "/dev/shm", rc);
  if (!cc.n && !a->json)
    printf("no channels\n");
  return 0;
}

static int cmd_rm(args_t *a) {
  int rc = rill_ipc_unlink(a->name);
  if (rc == RILL_ENOENT) {
    fprintf(stderr, "rill ipc rm: no route %s\n", a->name);
    return 1;
  }
  return rc ? fail("rm", a->name, rc) : 0;
}

/* Without a NAME, and with nothing but the suite's own flags, `rill ipc
 * bench` is the built-in suite, as it was before it took a NAME. */
bool rill_ipc_bench_is_suite(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (!strcmp(s, "--filter") && i + 1 < argc)
      i++;
    else if (strcmp(s, "--json") && strcmp(s, "--quick") && strncmp(s, "--filter=", 9) &&
             strcmp(s, "--help") && strcmp(s, "-h"))
      return false;
  }
  return true;
}

int rill_ipc_main(int argc, char **argv) {
  if (argc < 2)
    return ipc_usage(stderr);
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
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
  if (parse(argc - 1, argv + 1, &a) != 0) {
    free(a.rest);
    return ipc_usage(stderr);
  }
  int rc = !strcmp(cmd, "pub")     ? (a.chan ? cmd_pub_chan(&a) : cmd_pub(&a))
           : !strcmp(cmd, "sub")   ? (a.chan ? cmd_sub_chan(&a) : cmd_sub(&a))
           : !strcmp(cmd, "ls")    ? cmd_ls(&a)
           : !strcmp(cmd, "bench") ? cmd_bench(&a)
                                   : cmd_rm(&a);
  free(a.rest);
  return rc;
}
