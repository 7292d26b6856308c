/*
 * rill log: the durable log for people. Human output by default, --json
 * for scripts (one object per line). Readers open the topic read-only, so
 * they run beside a writer in another process; `tail` follows it with
 * rill_log_refresh.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rill/log.h"
#include "tools.h"

static int log_usage(FILE *f) {
  fprintf(f, "usage: rill log <command> [options] DIR TOPIC (options anywhere; -- ends them)\n"
             "\n"
             "  append DIR TOPIC [--sync never|group|every:N|interval:MS] [RECORD...]\n"
             "        appends each RECORD argument, or each line of stdin when there are none\n"
             "  cat DIR TOPIC [--from SEQ] [--count N]     prints records\n"
             "  tail DIR TOPIC [--from SEQ] [--count N]    prints records as they are appended\n"
             "        a damaged record stops cat and tail with exit status 1, naming it;\n"
             "        with --skip-corrupt each one is named on stderr and passed over, and\n"
             "        the exit status is 3 if any was\n"
             "  stat DIR TOPIC                             first, next, segments, bytes, disk\n"
             "  verify DIR TOPIC                           checks every record's checksum\n"
             "  dump DIR TOPIC [--from SEQ] [--count N]    the records one a line, damaged ones\n"
             "        marked DAMAGED (--json: \"ok\":false) and named on stderr\n"
             "\n"
             "  --json   one JSON object per line\n"
             "\n"
             "exit status: 0 done, no damage met; 1 a damaged record (cat and tail stop at\n"
             "the first; verify and dump go on and name every one) or an error (a log that\n"
             "does not open, a damaged file header, a failed read or append); 2 bad usage\n"
             "or options; 3 cat or tail --skip-corrupt passed over damaged records. append\n"
             "and stat do not read the records, so they do not look for damage: verify does.\n");
  return f == stdout ? 0 : 2;
}

typedef struct {
  const char *cmd, *dir, *topic;
  bool json;
  bool skip_corrupt;
  uint64_t skipped; /* damaged records passed over under --skip-corrupt */
  uint64_t from, count;
  bool has_from;
  rill_log_opts_t o;
  char **rest;
  int nrest;
} args_t;

static int fail(const char *what, int rc) {
  fprintf(stderr, "rill log: %s: %s (%s)\n", what, rill_strerror(rc), rill_errmsg());
  return 1;
}

static bool parse_u64(const char *s, uint64_t *v) {
  char *end;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] < '0' || s[0] > '9')
    return false;
  *v = x;
  return true;
}

static bool parse_sync(void *dst, const char *s) {
  rill_log_opts_t *o = dst;
  uint64_t n;
  if (!strcmp(s, "never"))
    o->sync = RILL_LOG_SYNC_NEVER;
  else if (!strcmp(s, "group"))
    o->sync = RILL_LOG_SYNC_GROUP;
  else if (!strncmp(s, "every:", 6) && parse_u64(s + 6, &n) && n)
    o->sync = RILL_LOG_SYNC_EVERY_N, o->sync_every = n;
  else if (!strncmp(s, "interval:", 9) && parse_u64(s + 9, &n) && n && n <= UINT64_MAX / 1000000)
    o->sync = RILL_LOG_SYNC_INTERVAL, o->sync_interval_ns = n * 1000000;
  else
    return false;
  return true;
}

/* The options each command takes (the table's order). */
enum { L_JSON = 1, L_SKIP = 2, L_FROM = 4, L_COUNT = 8, L_SYNC = 16 };

static const struct {
  const char *cmd;
  unsigned opts;
  bool records; /* RECORD arguments after DIR TOPIC */
} cmds[] = {
    {"append", L_JSON | L_SYNC, true},
    {"cat", L_JSON | L_SKIP | L_FROM | L_COUNT, false},
    {"tail", L_JSON | L_SKIP | L_FROM | L_COUNT, false},
    {"stat", L_JSON, false},
    {"verify", L_JSON, false},
    {"dump", L_JSON | L_FROM | L_COUNT, false},
};

/* argv[0] is the command. 0, 1 for help, -1 after saying why. */
static int parse(int argc, char **argv, args_t *a) {
  memset(a, 0, sizeof *a);
  a->count = UINT64_MAX;
  a->cmd = argv[0];
  a->rest = rill_tool_alloc_args(argc);
  size_t c = 0;
  while (c < sizeof cmds / sizeof cmds[0] && strcmp(cmds[c].cmd, a->cmd))
    c++;
  if (c == sizeof cmds / sizeof cmds[0]) {
    fprintf(stderr, "rill log: unknown command '%s'\n", a->cmd);
    return -1;
  }
  const rill_tool_optdef_t all[] = {
      {L_JSON, 0, {"--json", RILL_TOOL_FLAG, &a->json, 0, 0, NULL, NULL, 0}},
      {L_SKIP, 0, {"--skip-corrupt", RILL_TOOL_FLAG, &a->skip_corrupt, 0, 0, NULL, NULL, 0}},
      {L_FROM, 0, {"--from", RILL_TOOL_U64, &a->from, 0, UINT64_MAX, "a sequence number", NULL, 0}},
      {L_COUNT, 0, {"--count", RILL_TOOL_U64, &a->count, 0, UINT64_MAX, "a number", NULL, 0}},
      {L_SYNC,
       0,
       {"--sync", RILL_TOOL_FN, &a->o, 0, 0, "never, group, every:N or interval:MS", parse_sync,
        0}},
  };
  rill_tool_opt_t opts[sizeof all / sizeof all[0] + 1];
  rill_tool_opts_pick(all, sizeof all / sizeof all[0], cmds[c].opts, opts, NULL);
  char who[32];
  snprintf(who, sizeof who, "log %s", a->cmd);
  int npos, rc = rill_tool_parse(who, opts, NULL, NULL, argc, argv, a->rest, &npos);
  if (rc)
    return rc;
  a->has_from = rill_tool_given(opts, "--from");
  if (npos < 2) {
    fprintf(stderr, "rill %s: DIR and TOPIC are needed\n", who);
    return -1;
  }
  if (npos > 2 && !cmds[c].records) {
    fprintf(stderr, "rill %s: unexpected argument %s\n", who, a->rest[2]);
    return -1;
  }
  a->dir = a->rest[0];
  a->topic = a->rest[1];
  a->nrest = npos - 2;
  memmove(a->rest, a->rest + 2, (size_t)a->nrest * sizeof *a->rest);
  return 0;
}

/* ---- append -------------------------------------------------------------- */

static int cmd_append(args_t *a) {
  rill_log_t *l;
  int rc = rill_log_open(&l, a->dir, a->topic, &a->o);
  if (rc)
    return fail("open", rc);
  int status = 0;
  rill_tool_records_t in = {.args = a->rest, .nargs = a->nrest};
  const char *rec;
  size_t len;
  while (rill_tool_next_record(&in, &rec, &len)) {
    uint64_t seq;
    if (len > UINT32_MAX || (rc = rill_log_append(l, rec, (uint32_t)len, &seq)) != 0) {
      status = fail("append", len > UINT32_MAX ? RILL_EMSGSIZE : rc);
      break;
    }
    if (a->json)
      printf("{\"seq\":%" PRIu64 ",\"len\":%zu,\"durable\":%s}\n", seq, len,
             rill_log_durable(l) > seq ? "true" : "false");
    else
      printf("%" PRIu64 "\n", seq);
  }
  rill_tool_records_free(&in);
  rc = rill_log_close(l);
  if (rc && !status)
    status = fail("close", rc);
  return status;
}

/* Opens a's log read-only, beside any writer: 0, or 1 said. */
static int open_reader(args_t *a, rill_log_t **l) {
  a->o.read_only = true;
  int rc = rill_log_open(l, a->dir, a->topic, &a->o);
  return rc ? fail("open", rc) : 0;
}

/* ---- cat and tail -------------------------------------------------------- */

static void print_record(const args_t *a, const rill_log_record_t *r) {
  if (a->json) {
    printf("{\"seq\":%" PRIu64 ",\"ts_ns\":%" PRIu64 ",\"len\":%zu,\"data\":", r->seq, r->ts_ns,
           r->payload.len);
    rill_tool_json_string(stdout, r->payload.data, r->payload.len);
    printf("}\n");
    return;
  }
  char when[32];
  time_t secs = (time_t)(r->ts_ns / 1000000000u);
  struct tm tm;
  gmtime_r(&secs, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  printf("%" PRIu64 " %s.%06uZ %zu ", r->seq, when, (unsigned)(r->ts_ns % 1000000000u / 1000),
         r->payload.len);
  rill_tool_text(stdout, r->payload.data, r->payload.len);
  putchar('\n');
}

/* Prints records from *seq on; returns how many, or -1 after an error. A
 * damaged record (the read stops there, so *seq is it) is an error, or
 * under --skip-corrupt named, counted and passed over. */
static int64_t print_from(rill_log_t *l, args_t *a, uint64_t *seq, uint64_t *left) {
  rill_log_record_t recs[64];
  int64_t printed = 0;
  while (*left && *seq < rill_log_next(l)) {
    size_t n, want = *left < 64 ? (size_t)*left : 64;
    int rc = rill_log_read_range(l, *seq, want, SIZE_MAX, recs, &n);
    for (size_t k = 0; k < n; k++) {
      print_record(a, &recs[k]);
      *seq = recs[k].seq + 1;
      rill_buf_release(&recs[k].payload);
    }
    printed += (int64_t)n;
    *left -= n;
    if (rc == RILL_ECORRUPT && a->skip_corrupt) {
      fprintf(stderr, "rill log: record %" PRIu64 " is damaged, skipped (%s)\n", *seq,
              rill_errmsg());
      a->skipped++;
      (*seq)++;
      continue;
    }
    if (rc == RILL_ECORRUPT) {
      fprintf(stderr,
              "rill log: record %" PRIu64 " is damaged: %s (%s); stopping "
              "(--skip-corrupt passes over damaged records)\n",
              *seq, rill_strerror(rc), rill_errmsg());
      return -1;
    }
    if (rc) {
      fail("read", rc);
      return -1;
    }
  }
  fflush(stdout);
  return printed;
}

static int cmd_cat(args_t *a, bool follow) {
  rill_log_t *l;
  int rc = open_reader(a, &l);
  if (rc)
    return rc;
  /* cat starts at the oldest record, tail at the next one to come. */
  uint64_t seq = a->has_from ? a->from : follow ? rill_log_next(l) : rill_log_first(l);
  uint64_t left = a->count;
  if (seq < rill_log_first(l)) {
    fprintf(stderr, "rill log: records before %" PRIu64 " were retired; starting there\n",
            rill_log_first(l));
    seq = rill_log_first(l);
  }
  int status = print_from(l, a, &seq, &left) < 0;
  if (follow) {
    /* No SA_RESTART: the sleep below ends at once. */
    rill_tool_catch_stop();
    /* Another process's writer cannot wake us: look again every ms. */
    while (!status && left && !rill_tool_stop_sig) {
      if ((rc = rill_log_refresh(l)) != 0) {
        status = fail("refresh", rc);
        break;
      }
      int64_t n = print_from(l, a, &seq, &left);
      if (n < 0)
        status = 1;
      else if (n == 0)
        usleep(1000);
    }
  }
  rill_log_close(l);
  if (a->skipped) {
    fprintf(stderr, "rill log: %" PRIu64 " damaged record(s) skipped\n", a->skipped);
    if (!status)
      status = 3;
  }
  return status;
}

/* ---- stat, verify -------------------------------------------------------- */

static int cmd_stat(args_t *a) {
  rill_log_t *l;
  int rc = open_reader(a, &l);
  if (rc)
    return rc;
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  if (a->json)
    printf("{\"topic\":\"%s\",\"first\":%" PRIu64 ",\"next\":%" PRIu64 ",\"records\":%" PRIu64
           ",\"segments\":%" PRIu64 ",\"bytes\":%" PRIu64
           ",\"max_payload\":%u,\"disk_bytes\":%" PRIu64 "}\n",
           a->topic, st.first, st.next, st.next - st.first, st.segments, st.bytes,
           rill_log_max_payload(l), st.disk_bytes);
  else
    printf("topic     %s/%s\nrecords   %" PRIu64 " (%" PRIu64 "..%" PRIu64 ")\nsegments  %" PRIu64
           "\nbytes     %" PRIu64 "\nmax rec   %u bytes\non disk   %" PRIu64 " bytes\n",
           a->dir, a->topic, st.next - st.first, st.first, st.next, st.segments, st.bytes,
           rill_log_max_payload(l), st.disk_bytes);
  rill_log_close(l);
  return 0;
}

static int cmd_verify(args_t *a) {
  rill_log_t *l;
  int rc = open_reader(a, &l);
  if (rc)
    return rc;
  uint64_t ok = 0, bad = 0, next = rill_log_next(l);
  for (uint64_t seq = rill_log_first(l); seq < next; seq++) {
    rill_log_record_t r;
    rc = rill_log_read(l, seq, &r);
    if (rc == 0) {
      ok++;
      rill_buf_release(&r.payload);
      continue;
    }
    bad++;
    if (a->json)
      printf("{\"seq\":%" PRIu64 ",\"error\":\"%s\"}\n", seq, rill_strerror(rc));
    else
      printf("record %" PRIu64 ": %s (%s)\n", seq, rill_strerror(rc), rill_errmsg());
  }
  if (a->json)
    printf("{\"records\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"damaged\":%" PRIu64 "}\n", ok + bad, ok,
           bad);
  else
    printf("%" PRIu64 " records, %" PRIu64 " ok, %" PRIu64 " damaged\n", ok + bad, ok, bad);
  rill_log_close(l);
  return bad ? 1 : 0;
}

/* ---- dump ---------------------------------------------------------------- */

static int cmd_dump(args_t *a) {
  rill_log_t *l;
  int rc = open_reader(a, &l);
  if (rc)
    return rc;
  rill_log_stats_t st;
  rill_log_stats(l, &st);
  if (!a->json)
    printf("# %s/%s: %" PRIu64 " segment(s), records %" PRIu64 "..%" PRIu64 "\n", a->dir, a->topic,
           st.segments, st.first, st.next);
  uint64_t next = rill_log_next(l), left = a->count, bad = 0;
  uint64_t seq = a->has_from ? a->from : rill_log_first(l);
  if (seq < rill_log_first(l)) { /* as cat: a retired record is not a damaged one */
    fprintf(stderr, "rill log: records before %" PRIu64 " were retired; starting there\n",
            rill_log_first(l));
    seq = rill_log_first(l);
  }
  for (; seq < next && left; seq++, left--) {
    rill_log_record_t r;
    rc = rill_log_read(l, seq, &r);
    if (rc) {
      /* Named on stderr as cat names the one it stops at, and in the
       * exit status, as verify does: a dump that looks through damage
       * must not pass for a clean one in a script. */
      bad++;
      fprintf(stderr, "rill log: record %" PRIu64 " is damaged: %s (%s)\n", seq, rill_strerror(rc),
              rill_errmsg());
    }
    if (a->json) {
      printf("{\"seq\":%" PRIu64 ",\"ok\":%s", seq, rc ? "false" : "true");
      if (rc)
        printf(",\"error\":\"%s\"", rill_strerror(rc));
      else
        printf(",\"ts_ns\":%" PRIu64 ",\"len\":%zu", r.ts_ns, r.payload.len);
      printf("}\n");
    } else if (rc) {
      printf("%10" PRIu64 "  DAMAGED  %s\n", seq, rill_errmsg());
    } else {
      printf("%10" PRIu64 "  %19" PRIu64 "  %8zu  ", seq, r.ts_ns, r.payload.len);
      rill_tool_hex(stdout, r.payload.data, r.payload.len < 16 ? r.payload.len : 16);
      putchar('\n');
    }
    if (!rc)
      rill_buf_release(&r.payload);
  }
  rill_log_close(l);
  if (bad)
    fprintf(stderr, "rill log: %" PRIu64 " damaged record(s)\n", bad);
  return bad ? 1 : 0;
}

int rill_log_main(int argc, char **argv) {
  if (argc < 2)
    return log_usage(stderr);
  if (rill_tool_is_help(argv[1]))
    return log_usage(stdout);
  args_t a;
  int parsed = parse(argc - 1, argv + 1, &a);
  if (parsed) {
    free(a.rest);
    return log_usage(parsed > 0 ? stdout : stderr);
  }
  int rc;
  if (!strcmp(a.cmd, "append"))
    rc = cmd_append(&a);
  else if (!strcmp(a.cmd, "cat"))
    rc = cmd_cat(&a, false);
  else if (!strcmp(a.cmd, "tail"))
    rc = cmd_cat(&a, true);
  else if (!strcmp(a.cmd, "stat"))
    rc = cmd_stat(&a);
  else if (!strcmp(a.cmd, "verify"))
    rc = cmd_verify(&a);
  else
    rc = cmd_dump(&a);
  free(a.rest);
  return rc;
}
