/* The subcommands' shared helpers (tools.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rill/net.h"
#include "tools.h"

char **rill_tool_alloc_args(int argc) {
  char **v = calloc((size_t)argc + 1, sizeof *v);
  if (!v) {
    fprintf(stderr, "rill: out of memory\n");
    exit(1);
  }
  return v;
}

void *rill_tool_realloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q) {
    fprintf(stderr, "rill: out of memory\n");
    exit(1);
  }
  return q;
}

int rill_tool_bad(const char *why) {
  fprintf(stderr, "rill: %s\n", why);
  return -1;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0. */
static size_t utf8_len(const uint8_t *p, size_t left) {
  uint8_t c = p[0];
  size_t n = c < 0x80             ? 1
             : (c & 0xe0) == 0xc0 ? 2
             : (c & 0xf0) == 0xe0 ? 3
             : (c & 0xf8) == 0xf0 ? 4
                                  : 0;
  if (!n || n > left || (n == 2 && c < 0xc2))
    return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  if (n == 3) {
    uint32_t cp = (uint32_t)(c & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
    if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
  }
  if (n == 4) {
    uint32_t cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
                  (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
    if (cp < 0x10000 || cp > 0x10ffff)
      return 0;
  }
  return n;
}

void rill_tool_json_string(FILE *f, const void *data, size_t len) {
  const uint8_t *p = data;
  fputc('"', f);
  for (size_t i = 0; i < len;) {
    uint8_t c = p[i];
    size_t n = utf8_len(p + i, len - i);
    if (c == '"' || c == '\\') {
      fprintf(f, "\\%c", c);
      i++;
    } else if (c == '\n') {
      fputs("\\n", f), i++;
    } else if (c == '\t') {
      fputs("\\t", f), i++;
    } else if (c < 0x20 || c == 0x7f || n == 0) {
      fprintf(f, "\\u%04x", c);
      i++;
    } else {
      fwrite(p + i, 1, n, f);
      i += n;
    }
  }
  fputc('"', f);
}

void rill_tool_text(FILE *f, const void *data, size_t len) {
  const uint8_t *p = data;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_len(p + i, len - i);
    if (n > 1 || (n == 1 && p[i] >= 0x20 && p[i] < 0x7f)) {
      fwrite(p + i, 1, n, f); /* text, UTF-8 included */
      i += n;
    } else {
      fprintf(f, "\\x%02x", p[i]);
      i++;
    }
  }
}

void rill_tool_hex(FILE *f, const void *data, size_t len) {
  const uint8_t *p = data;
  for (size_t i = 0; i < len; i++)
    fprintf(f, "%02x", p[i]);
}

bool rill_tool_next_record(rill_tool_records_t *r, const char **rec, size_t *len) {
  if (r->nargs) {
    if (r->next == r->nargs)
      return false;
    *rec = r->args[r->next++];
    *len = strlen(*rec);
    return true;
  }
  ssize_t n = getline(&r->line, &r->cap, stdin);
  if (n < 0)
    return false;
  if (n && r->line[n - 1] == '\n')
    n--;
  *rec = r->line;
  *len = (size_t)n;
  return true;
}

void rill_tool_records_free(rill_tool_records_t *r) {
  free(r->line);
  r->line = NULL;
}

const char *rill_tool_parse_addr(const char *s, char *hbuf, size_t cap, const char **host,
                                 uint16_t *port) {
  const char *h = s, *colon = strrchr(s, ':');
  size_t hl;
  if (*s == '[') { /* [V6]:PORT or [V6] */
    const char *close = strchr(s, ']');
    if (!close || (close[1] && close[1] != ':'))
      return "a [ without its ] before the :PORT";
    h = s + 1;
    hl = (size_t)(close - h);
    colon = close[1] ? close + 1 : NULL;
    if (!hl)
      return "nothing between [ and ]";
  } else if (colon && strchr(s, ':') != colon) {
    h = s; /* two colons or more, no brackets: an IPv6 address without a port */
    hl = strlen(s);
    colon = NULL;
  } else {
    hl = colon ? (size_t)(colon - s) : strlen(s);
  }
  if (colon) {
    char *end;
    errno = 0;
    long p = colon[1] >= '0' && colon[1] <= '9' ? strtol(colon + 1, &end, 10) : 0;
    if (errno || !p || *end || p > 65535)
      return "the port is not 1..65535";
    *port = (uint16_t)p;
  }
  if (!hl)
    return colon ? NULL : "no host and no port";
  if (hl >= cap)
    return "the host name is too long";
  /* The name as given: librill resolves it at each dial (or at listen),
   * IPv4 and IPv6 alike, and names what fails. */
  memcpy(hbuf, h, hl);
  hbuf[hl] = 0;
  *host = hbuf;
  return NULL;
}

const char *rill_tool_fmt_addr(char *buf, size_t cap, const char *host, uint16_t port) {
  snprintf(buf, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
  return buf;
}

/* ---- options ---------------------------------------------------------------- */

rill_tool_opt_t *rill_tool_opt(rill_tool_opt_t *opts, const char *name) {
  for (rill_tool_opt_t *o = opts; o && o->name; o++)
    if (!strcmp(o->name, name))
      return o;
  return NULL;
}

bool rill_tool_is_help(const char *s) {
  return !strcmp(s, "-h") || !strcmp(s, "--help") || !strcmp(s, "help");
}

bool rill_tool_given(rill_tool_opt_t *opts, const char *name) {
  rill_tool_opt_t *o = rill_tool_opt(opts, name);
  return o && o->at;
}

void rill_tool_opts_pick(const rill_tool_optdef_t *defs, size_t n, unsigned cmd,
                         rill_tool_opt_t *opts, size_t *from) {
  size_t j = 0;
  for (size_t k = 0; k < n; k++)
    if (defs[k].cmds & cmd) {
      if (from)
        from[j] = k;
      opts[j++] = defs[k].opt;
    }
  opts[j] = (rill_tool_opt_t){0};
}

/* Checks and stores v for o; false after saying why. */
static bool opt_set(const char *who, rill_tool_opt_t *o, const char *v) {
  char *end;
  switch (o->kind) {
  case RILL_TOOL_FLAG: *(bool *)o->dst = true; return true;
  case RILL_TOOL_STR:
    if (!*v) {
      fprintf(stderr, "rill %s: %s wants %s, not an empty string\n", who, o->name, o->want);
      return false;
    }
    *(const char **)o->dst = v;
    return true;
  case RILL_TOOL_U64: {
    /* Digits only: strtoull would take " 5", "+5" and "-5" (as 2^64-5). */
    bool digits = *v >= '0' && *v <= '9';
    errno = 0;
    unsigned long long x = digits ? strtoull(v, &end, 10) : 0;
    if (!digits || errno || *end || x < o->min || x > o->max) {
      if (o->max == UINT64_MAX)
        fprintf(stderr, "rill %s: %s wants %s from %" PRIu64 ", not '%s'\n", who, o->name, o->want,
                o->min, v);
      else
        fprintf(stderr, "rill %s: %s wants %s from %" PRIu64 " to %" PRIu64 ", not '%s'\n", who,
                o->name, o->want, o->min, o->max, v);
      return false;
    }
    *(uint64_t *)o->dst = x;
    return true;
  }
  case RILL_TOOL_SECS: {
    bool digits = (*v >= '0' && *v <= '9') || *v == '.';
    double x = digits ? strtod(v, &end) : 0;
    if (!digits || *end || !(x > 0) || x > (double)o->max) {
      fprintf(stderr, "rill %s: %s wants %s, above 0 and at most %" PRIu64 ", not '%s'\n", who,
              o->name, o->want, o->max, v);
      return false;
    }
    *(double *)o->dst = x;
    return true;
  }
  case RILL_TOOL_FN:
    if (!o->fn(o->dst, v)) {
      fprintf(stderr, "rill %s: %s wants %s, not '%s'\n", who, o->name, o->want, v);
      return false;
    }
    return true;
  }
  return false;
}

int rill_tool_parse(const char *who, rill_tool_opt_t *opts, rill_tool_other_cb other, void *ctx,
                    int argc, char **argv, char **pos, int *npos) {
  *npos = 0;
  if (argc == 2 && !strcmp(argv[1], "help"))
    return 1;
  bool opts_done = false;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (opts_done || s[0] != '-' || !s[1]) { /* "-" alone: stdin, by custom */
      pos[(*npos)++] = argv[i];
      continue;
    }
    if (!strcmp(s, "--")) {
      opts_done = true;
      continue;
    }
    if (!strcmp(s, "--help") || !strcmp(s, "-h"))
      return 1;
    char name[128];
    const char *eq = s[1] == '-' ? strchr(s, '=') : NULL;
    size_t nl = eq ? (size_t)(eq - s) : strlen(s);
    snprintf(name, sizeof name, "%.*s", (int)(nl < sizeof name ? nl : sizeof name - 1), s);
    rill_tool_opt_t *o = nl < sizeof name ? rill_tool_opt(opts, name) : NULL;
    if (!o) {
      int used = other && s[1] == '-' ? other(ctx, name,
                                              eq             ? eq + 1
                                              : i + 1 < argc ? argv[i + 1]
                                                             : NULL,
                                              eq != NULL)
                                      : 0;
      if (used < 0)
        return -1;
      if (used) {
        i += used - 1;
        continue;
      }
      fprintf(stderr, "rill %s: %s is not an option of rill %s (rill %s --help)\n", who, name, who,
              who);
      return -1;
    }
    const char *v = NULL;
    if (o->kind == RILL_TOOL_FLAG) {
      if (eq) {
        fprintf(stderr, "rill %s: %s takes no value\n", who, name);
        return -1;
      }
    } else if (eq) {
      v = eq + 1;
    } else if (i + 1 < argc) {
      v = argv[++i]; /* even one starting with '-': --timeout -5 is refused as a value */
    } else {
      fprintf(stderr, "rill %s: %s wants a value (%s)\n", who, name, o->want);
      return -1;
    }
    if (!opt_set(who, o, v))
      return -1;
    o->at = i;
  }
  return 0;
}

int rill_tool_usage(int parsed, const char *usage) {
  fputs(usage, parsed > 0 ? stdout : stderr);
  return parsed > 0 ? 0 : 2;
}

/* ---- connecting ---------------------------------------------------------------- */

int rill_tool_token(const char *who, rill_tool_conn_t *c, const char **token) {
  if (c->token && c->token_file) {
    fprintf(stderr, "rill %s: --token and --token-file: one or the other\n", who);
    return -1;
  }
  *token = c->token;
  if (c->token_file) {
    FILE *f = fopen(c->token_file, "r");
    if (!f) {
      fprintf(stderr, "rill %s: --token-file %s: %s\n", who, c->token_file, strerror(errno));
      return -1;
    }
    free(c->token_buf);
    c->token_buf = NULL;
    size_t cap = 0;
    ssize_t n = getline(&c->token_buf, &cap, f);
    fclose(f);
    while (n > 0 && (c->token_buf[n - 1] == '\n' || c->token_buf[n - 1] == '\r'))
      c->token_buf[--n] = 0;
    if (n <= 0 || strlen(c->token_buf) != (size_t)n) {
      fprintf(stderr, "rill %s: --token-file %s: no token on its first line\n", who, c->token_file);
      return -1;
    }
    *token = c->token_buf;
  } else if (!c->token) {
    const char *env = getenv("RILL_TOKEN");
    *token = env && *env ? env : NULL;
  }
  if (*token && strlen(*token) > RILL_NET_MAX_TOKEN) {
    fprintf(stderr, "rill %s: the token is over %u bytes\n", who, RILL_NET_MAX_TOKEN);
    return -1;
  }
  return 0;
}

int rill_tool_conn_resolve(const char *who, rill_tool_conn_t *c, rill_client_opts_t *o) {
  const char *server = c->server;
  const char *from = "--server";
  if (!server) {
    const char *env = getenv("RILL_SERVER");
    if (env && *env)
      server = env, from = "RILL_SERVER";
  }
  const char *why =
      server ? rill_tool_parse_addr(server, c->host, sizeof c->host, &o->host, &o->port) : NULL;
  if (why) {
    fprintf(stderr, "rill %s: %s wants HOST:PORT, HOST or :PORT, not '%s': %s\n", who, from, server,
            why);
    return -1;
  }
  return rill_tool_token(who, c, &o->token);
}

void rill_tool_conn_free(rill_tool_conn_t *c) {
  free(c->token_buf);
  c->token_buf = NULL;
}

/* ---- exit status ------------------------------------------------------------------ */

volatile sig_atomic_t rill_tool_stop_sig;

static void on_stop(int sig) { rill_tool_stop_sig = sig; }

void rill_tool_catch_stop(void) {
  struct sigaction sa = {.sa_handler = on_stop};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int rill_tool_exit(int status) {
  int sig = rill_tool_stop_sig;
  if (!sig)
    return status;
  fflush(stdout);
  fflush(stderr);
  /* Die of it, as an uncaught signal would have: the shell sees 128 +
   * sig, and a shell script running us stops as it does for Ctrl-C. */
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  raise(sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  return 128 + sig;
}
