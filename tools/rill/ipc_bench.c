/*
 * rill ipc bench NAME: a route's or a channel's throughput, or one-way
 * latency, measured with child processes at the other end (ipc.c parses
 * the arguments; its usage text and README say how to run it).
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

#include "../../bench/fork_harness.h"
#include "ipc_tool.h"
#include "rill/core.h"
#include "tools.h"

/* ---- usage ------------------------------------------------------------------------- */

int ipc_bench_usage(FILE *f) {
  fprintf(f,
          "usage: rill ipc bench [--size B] [--count N] [--receivers K] [--latency] [--json]\n"
          "                      [--slots N] [--slot-size B] [--policy block|fail|overwrite]\n"
          "                      [--spin] [--pool SIZE:CHUNKS[,...]]\n"
          "                      [--channel|--queue [--senders S]] NAME\n"
          "       rill ipc bench [--json] [--quick] [--filter S]\n"
          "\n"
          "With NAME: measures that route (or channel, with --channel or --queue) as it\n"
          "is, or creates it with the layout options (as `rill ipc pub` takes them) and\n"
          "removes it afterwards; a route with a live sender is never measured.\n"
          "  --size B       message size (default 64; over a slot's payload through the\n"
          "                 pool)\n"
          "  --count N      messages (default 1000000), or round trips with --latency\n"
          "                 (default 100000)\n"
          "  --receivers K  receiver processes (default 1), each getting every message\n"
          "                 (a queue: each message to one of them)\n"
          "  --senders S    a channel's sender processes (default 1); a route's sender is\n"
          "                 this process\n"
          "  --latency      round trips to one echo process, back on a route NAME.back\n"
          "                 made for the run: one-way p50/p99/p999/max in ns (half a round\n"
          "                 trip)\n"
          "  --spin         a created route's waits spin before they park\n"
          "  --json         one JSON object instead of the text report\n"
          "Prints msg/s and MB/s per receiver (a queue's: all together).\n"
          "\n"
          "Without NAME: the built-in suite, `rill bench ipc`: rill's routes and\n"
          "channels between processes against Unix sockets (one write per message, a\n"
          "64 KiB buffered writer, sendmmsg/recvmmsg batches, busy-polling), a pipe and\n"
          "ZeroMQ; its notes say how each peer is run.\n"
          "  --quick        ~10x fewer iterations: a smoke run, figures are rough\n"
          "  --filter S     only the cases whose name contains S (lat_64_spin,\n"
          "                 lat_64_block, lat_64_load, thr_64, thr_64_4rx, thr_64k,\n"
          "                 thr_64k_pageword, thr_64k_4rx, chan_64, chan_64_queue)\n"
          "  --json         one JSON object per result line on stdout\n"
          "\n"
          "NAME: up to %u of [A-Za-z0-9._-], not starting with '.'\n",
          RILL_IPC_MAX_NAME);
  return f == stdout ? 0 : 2;
}

/* ---- bench ------------------------------------------------------------------------- */

/* rill ipc bench NAME: the user's own route or channel, measured. The
 * receivers (and a channel's senders) are child processes, kids of the
 * fork harness (bench/fork_harness.h); each reports on its own pipe. The
 * parent's word comes without a message on the route: it closes a kid's
 * order pipe, the senders' for "go", the receivers' for "the senders are
 * done", and the kid sees the EOF; it sees it too when the parent dies,
 * so no kid outlives it waiting. */

#define BENCH_SLICE_NS 20000000ull /* a receiver's wait: how late it sees the end */
#define BENCH_MAX_KIDS (RILL_IPC_MAX_RECEIVERS + RILL_IPC_MAX_SENDERS)
#define SEQ_BITS       56 /* a message's first 8 bytes: sender << 56 | its sequence number */
_Static_assert(BENCH_MAX_KIDS <= BENCH_KID_MAX, "every kid's reports are polled");

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
  int in, out;         /* in a kid: its order pipe and its report pipe */
  bench_kid_t kid[BENCH_MAX_KIDS];
  report_t res[BENCH_MAX_KIDS];
  uint32_t kids, ready, finished;
} bench_t;

static const char *kid_role(const bench_t *b, uint32_t i) {
  return i < b->receivers ? "receiver" : "sender";
}

static void put_report(bench_t *b, report_t r) {
  (void)bench_kid_put(b->out, &r, sizeof r); /* a parent gone: nobody to tell */
}

/* The parent's word (its EOF on the kid's order pipe): the senders are
 * done, or go. Kids end with _exit, leaving alone the parent's stdio
 * buffers and its route handles, which fork copied (closing those would
 * free the parent's place). */
static bool told(const bench_t *b) { return bench_kid_told(b->in); }

static void bench_receiver(bench_t *b, uint32_t idx) {
  args_t *a = b->a;
  end_t e = {0};
  int rc = a->chan ? rill_ipc_chan_open(&e.ch, a->name, NULL, RILL_IPC_RECEIVER)
                   : rill_ipc_route_open(&e.rx, a->name, NULL, RILL_IPC_RECEIVER);
  if (rc) {
    ipc_fail("bench", "a receiver", rc);
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
    if (ipc_stopping) {
      status = 1;
      break;
    }
    rill_ipc_msg_t m;
    uint64_t lost = 0;
    uint64_t slice = done ? 0 : BENCH_SLICE_NS;
    rc = e.ch ? rill_ipc_chan_recv(e.ch, &m, slice, &lost)
              : rill_ipc_route_recv(e.rx, &m, slice, &lost);
    if (rc == RILL_ETIMEDOUT || rc == RILL_EAGAIN) {
      if (done)
        break;
      done = told(b);
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
      status = ipc_fail("bench", "receive", rc);
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
  rill_ipc_route_close(e.rx);
  rill_ipc_chan_close(e.ch);
  _exit(status);
}

/* One message, as long as it takes: under the fail policy a full ring is
 * tried again, as a sender that must not lose messages would. */
static int bench_send(end_t *e, const void *p, uint32_t len) {
  for (;;) {
    int rc = ipc_send_one(e, p, len, false, 0);
    if (rc != RILL_EFULL)
      return rc;
    if (ipc_stopping)
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
    if (ipc_stopping || (watch && !(i & 0xffff) && i && !bench_check(b)))
      return 1;
    uint64_t v = (uint64_t)who << SEQ_BITS | i;
    memcpy(buf, &v, 8);
    int rc = bench_send(e, buf, b->size);
    if (rc == RILL_ECANCELED)
      return 1;
    if (rc)
      return ipc_fail("bench", "send", rc);
  }
  return 0;
}

static void bench_sender(bench_t *b, uint32_t idx, uint64_t n) {
  end_t e = {0};
  int rc = rill_ipc_chan_open(&e.ch, b->a->name, NULL, RILL_IPC_SENDER);
  if (rc) {
    ipc_fail("bench", "a sender", rc);
    _exit(1);
  }
  uint8_t *buf = calloc(1, b->size);
  if (!buf) {
    fprintf(stderr, "rill ipc bench: no memory for a %u-byte message\n", b->size);
    _exit(1);
  }
  put_report(b, (report_t){.kind = REPORT_READY, .idx = b->receivers + idx});
  while (!told(b)) {
    if (ipc_stopping)
      _exit(1);
    struct pollfd p = {.fd = b->in, .events = POLLIN};
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

typedef struct {
  bench_t *b;
  void (*fn)(bench_t *, uint32_t, uint64_t);
  uint32_t idx;
  uint64_t n;
} kid_arg_t;

static int kid_main(void *arg, int in, int out) {
  kid_arg_t *k = arg;
  k->b->in = in;
  k->b->out = out;
  k->fn(k->b, k->idx, k->n);
  return 0;
}

static int bench_fork(bench_t *b, void (*fn)(bench_t *, uint32_t, uint64_t), uint32_t idx,
                      uint64_t n) {
  kid_arg_t k = {b, fn, idx, n};
  int rc = bench_kid_fork(b->kid, b->kids, kid_main, &k, 0);
  if (rc) {
    fprintf(stderr, "rill ipc bench: fork: %s\n", strerror(-rc));
    return 1;
  }
  b->kids++;
  return 0;
}

/* The parent's word to kids lo..hi-1: their order pipes closed. */
static void bench_tell(bench_t *b, uint32_t lo, uint32_t hi) {
  for (uint32_t i = lo; i < hi; i++) {
    close(b->kid[i].to);
    b->kid[i].to = -1;
  }
}

static void receiver_fn(bench_t *b, uint32_t idx, uint64_t n) {
  (void)n;
  bench_receiver(b, idx);
}

static void sender_fn(bench_t *b, uint32_t idx, uint64_t n) { bench_sender(b, idx, n); }

/* Reads the reports waiting in the pipe, for up to ms. */
static void bench_read(bench_t *b, int ms) {
  report_t r;
  while (bench_kid_poll(b->kid, b->kids, ms, &r, sizeof r) >= 0) {
    if (r.idx >= b->kids)
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
    bench_kid_t *k = &b->kid[i];
    if (k->exited || !bench_kid_exited(k))
      continue;
    bench_read(b, 0); /* what it wrote before it exited */
    if (bench_kid_ok(k) && b->res[i].kind == REPORT_DONE)
      continue;
    char why[64];
    bench_kid_why(k, why, sizeof why);
    fprintf(stderr, "rill ipc bench: %s %u (pid %ld) %s\n", kid_role(b, i),
            i < b->receivers ? i : i - b->receivers, (long)k->pid, why);
    return false;
  }
  return !ipc_stopping;
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
    bench_kid_end(&b->kid[i], kill_them);
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
    rill_ipc_route_info_t ri;
    l->kind = "route";
    if (rill_ipc_route_info(a->name, &ri) == 0) {
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
         l->created ? "true" : "false", l->slots, l->slot_size, ipc_policy_name(l->policy));
  if (l->wait)
    printf("\"wait\":\"%s\",", l->wait);
  print_pool_json(l->pool, l->classes);
}

static void layout_text(const args_t *a, const layout_t *l) {
  printf("%s %s (%s): %u slots of %u bytes, %s", l->kind, a->name,
         l->created ? "created for the run" : "as it was", l->slots, l->slot_size,
         ipc_policy_name(l->policy));
  if (l->wait)
    printf(", %s", l->wait);
  for (uint32_t k = 0; k < l->classes; k++)
    printf("%s%ux%u", k ? "," : ", pool ", l->pool[k].size, l->pool[k].chunks);
  printf("\n");
}

static void bench_unlink(args_t *a, bool created) {
  if (created)
    a->chan ? rill_ipc_chan_unlink(a->name) : rill_ipc_route_unlink(a->name);
}

/* Opens (or creates) NAME for the run; for a channel, the open only checks
 * and creates it (the children open their own ends). 0 or 1. */
static int bench_open(args_t *a, end_t *e, bool *created, uint32_t *max) {
  memset(e, 0, sizeof *e);
  if (!a->chan) {
    bool existed;
    if (ipc_open_route_sender(a, &e->tx, &existed))
      return 1;
    *created = !existed;
    *max = rill_ipc_route_max_message(e->tx);
    return 0;
  }
  rill_ipc_chan_opts_t o;
  if (ipc_chan_opts(a, "bench", &o))
    return 1;
  /* --senders and --receivers count bench's processes here, not the
   * channel's places: a channel made for the run gets the defaults. */
  o.max_senders = o.max_receivers = 0;
  rill_ipc_chan_info_t ci;
  bool existed = rill_ipc_chan_info(a->name, &ci) == 0;
  int rc = rill_ipc_chan_open(&e->ch, a->name, &o, RILL_IPC_SENDER);
  if (rc)
    return ipc_fail("bench", a->name, rc);
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
                 : rill_ipc_route_reserve(e->tx, (uint32_t)a->size, 0, &p);
  ipc_fail("bench", a->name, rc ? rc : RILL_EMSGSIZE);
  fprintf(stderr,
          "rill ipc bench: --size %" PRIu64 " is over the %u bytes %s takes (--slot-size, or "
          "--pool, when creating it)\n",
          a->size, max, a->name);
  return 1;
}

static double secs(uint64_t ns) { return (double)ns / 1e9; }

/* The end of a run: the children stopped (killed if need be), their
 * pipes closed, the buffer freed. */
static void bench_end(bench_t *b, int status, uint8_t *buf) {
  if (status && ipc_stopping)
    fprintf(stderr, "rill ipc bench: interrupted\n");
  bench_reap(b, true);
  free(buf);
}

static int bench_throughput(args_t *a) {
  bench_t b = {.a = a,
               .size = (uint32_t)a->size,
               .receivers = a->receivers ? a->receivers : 1,
               .senders = a->chan && a->senders ? a->senders : 1,
               .count = a->count == UINT64_MAX ? 1000000 : a->count,
               .queue = a->chan && a->delivery == RILL_IPC_QUEUE};
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
  ipc_catch_stop();
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
    bench_tell(&b, b.receivers, b.receivers + b.senders);
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
  bench_tell(&b, 0, b.receivers);
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
  bench_end(&b, status, buf);
  rill_ipc_route_close(e.tx);
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
                   : rill_ipc_route_open(&in.rx, a->name, NULL, RILL_IPC_RECEIVER);
  if (rc || (rc = rill_ipc_route_open(&out.tx, b->back, NULL, RILL_IPC_SENDER)) != 0) {
    ipc_fail("bench", "the echo", rc);
    _exit(1);
  }
  put_report(b, (report_t){.kind = REPORT_READY, .idx = idx});
  uint64_t i = 0;
  int status = 0;
  while (i < n) {
    if (ipc_stopping) {
      status = 1;
      break;
    }
    rill_ipc_msg_t m;
    rc = in.ch ? rill_ipc_chan_recv(in.ch, &m, BENCH_SLICE_NS, NULL)
               : rill_ipc_route_recv(in.rx, &m, BENCH_SLICE_NS, NULL);
    if (rc == RILL_ETIMEDOUT || rc == RILL_EAGAIN) {
      /* The done pipe's EOF here: the parent gave up, or died. */
      if (told(b)) {
        status = 1;
        break;
      }
      continue;
    }
    if (rc == RILL_ELAGGED)
      continue;
    if (rc) {
      status = ipc_fail("bench", "the echo's receive", rc);
      break;
    }
    if ((rc = bench_send(&out, m.data, m.len)) != 0) {
      status = rc == RILL_ECANCELED ? 1 : ipc_fail("bench", "the echo's send", rc);
      break;
    }
    i++;
  }
  if (!status)
    put_report(b, (report_t){.kind = REPORT_DONE, .idx = idx, .count = i});
  rill_ipc_route_close(in.rx);
  rill_ipc_chan_close(in.ch);
  rill_ipc_route_close(out.tx);
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
  rill_ipc_route_info_t bi;
  rill_ipc_chan_info_t bci;
  if (rill_ipc_route_info(back, &bi) == 0 || rill_ipc_chan_info(back, &bci) == 0) {
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
               .count = a->count == UINT64_MAX ? 100000 : a->count};
  end_t e;
  bool created = false, back_created = false;
  uint32_t max = 0;
  if (bench_open(a, &e, &created, &max))
    return 1;
  layout_t l;
  layout_read(a, created, &l);
  int status = 1;
  uint8_t *buf = NULL;
  rill_ipc_route_t *rx = NULL;
  rill_hist_t h;
  rill_hist_init(&h);
  if (size_check(a, &e, max))
    goto out;
  /* NAME's layout, so that an echo fits wherever its ping did. */
  rill_ipc_route_opts_t bo = {.slots = l.slots, .slot_size = l.slot_size, .wait = a->o.wait};
  memcpy(bo.pool, l.pool, sizeof bo.pool);
  rill_ipc_route_t *tmp;
  int rc = rill_ipc_route_open(&tmp, back, &bo, RILL_IPC_SENDER);
  if (rc) {
    ipc_fail("bench", back, rc);
    goto out;
  }
  back_created = true;
  rill_ipc_route_close(tmp);
  if ((rc = rill_ipc_route_open(&rx, back, NULL, RILL_IPC_RECEIVER)) != 0) {
    ipc_fail("bench", back, rc);
    goto out;
  }
  if (!(buf = calloc(1, b.size))) {
    fprintf(stderr, "rill ipc bench: no memory for a %u-byte message\n", b.size);
    goto out;
  }
  ipc_catch_stop();
  signal(SIGPIPE, SIG_IGN);
  if (bench_fork(&b, echo_fn, 0, b.count) || !bench_wait(&b, &b.ready, 1))
    goto out;
  for (uint64_t i = 0; i < b.count; i++) {
    if (ipc_stopping)
      goto out;
    memcpy(buf, &i, 8);
    uint64_t t0 = rill_time_ns();
    if ((rc = bench_send(&e, buf, b.size)) != 0) {
      if (rc != RILL_ECANCELED)
        ipc_fail("bench", "send", rc);
      goto out;
    }
    rill_ipc_msg_t m;
    for (;;) {
      rc = rill_ipc_route_recv(rx, &m, SLICE_NS, NULL);
      if (rc == 0)
        break;
      if (rc == RILL_ETIMEDOUT || rc == RILL_EAGAIN) {
        /* No echo yet: a dead echo fails the run rather than hang it. */
        if (!bench_check(&b))
          goto out;
        continue;
      }
      if (rc != RILL_ELAGGED) {
        ipc_fail("bench", "receive", rc);
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
  bench_end(&b, status, buf);
  rill_ipc_route_close(rx);
  rill_ipc_route_close(e.tx);
  rill_ipc_chan_close(e.ch);
  if (back_created)
    rill_ipc_route_unlink(back);
  bench_unlink(a, created);
  return status;
}

int ipc_cmd_bench(args_t *a) { return a->latency ? bench_latency(a) : bench_throughput(a); }
