/*
 * rill stat's parser of the Prometheus text a server answers STATS with
 * (the text its HTTP endpoint serves): sample lines into a list, each
 * with its name, topic label, other labels and bucket bound. Private to
 * the rill command; fuzz/fuzz_stat.c drives it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"
#include "rill/core.h"
#include "tools.h"

/* ---- samples --------------------------------------------------------- */

void rill_prom_free(rill_prom_samples_t *ss) {
  for (size_t i = 0; i < ss->n; i++) {
    free(ss->s[i].name);
    free(ss->s[i].topic);
    free(ss->s[i].labels);
  }
  free(ss->s);
  memset(ss, 0, sizeof *ss);
}

static char *xstrndup(const char *s, size_t n) {
  char *c = rill_tool_realloc(NULL, n + 1);
  memcpy(c, s, n);
  c[n] = 0;
  return c;
}

static bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

/* One sample line (without its newline) into *s. false: malformed. */
static bool parse_line(const char *p, const char *end, rill_prom_sample_t *s) {
  memset(s, 0, sizeof *s); /* first: a line refused here is freed by the caller */
  const char *n0 = p;
  while (p < end && name_char(*p, p == n0))
    p++;
  if (p == n0)
    return false;
  s->le = NAN;
  s->name = xstrndup(n0, (size_t)(p - n0));
  size_t lcap = 64, llen = 0;
  s->labels = rill_tool_realloc(NULL, lcap);
  s->labels[0] = 0;
  if (p < end && *p == '{') {
    p++;
    for (;;) {
      while (p < end && (*p == ' ' || *p == ','))
        p++;
      if (p < end && *p == '}') {
        p++;
        break;
      }
      const char *k0 = p;
      while (p < end && name_char(*p, p == k0))
        p++;
      size_t kl = (size_t)(p - k0);
      if (!kl || p + 1 >= end || p[0] != '=' || p[1] != '"')
        return false;
      p += 2;
      /* The value, unescaped: \\, \" and \n are the format's escapes. */
      char *v = rill_tool_realloc(NULL, (size_t)(end - p) + 1);
      size_t vl = 0;
      for (;; p++) {
        if (p >= end) {
          free(v);
          return false;
        }
        if (*p == '"')
          break;
        if (*p == '\\' && p + 1 < end) {
          p++;
          v[vl++] = *p == 'n' ? '\n' : *p;
        } else {
          v[vl++] = *p;
        }
      }
      p++;
      v[vl] = 0;
      if (kl == 2 && !memcmp(k0, "le", 2)) {
        char *e;
        s->le = !strcmp(v, "+Inf") ? INFINITY : strtod(v, &e);
        bool ok = !strcmp(v, "+Inf") || (e != v && !*e);
        free(v);
        if (!ok)
          return false;
      } else if (kl == 5 && !memcmp(k0, "topic", 5) && !s->topic) {
        s->topic = v;
      } else {
        size_t need = llen + kl + vl + 3;
        if (need > lcap)
          s->labels = rill_tool_realloc(s->labels, lcap = need * 2);
        llen += (size_t)sprintf(s->labels + llen, "%.*s=%s,", (int)kl, k0, v);
        free(v);
      }
    }
  }
  if (p >= end || (*p != ' ' && *p != '\t'))
    return false;
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  /* The value, then an optional timestamp, which is ignored. */
  char num[64];
  size_t nl = 0;
  while (p < end && *p != ' ' && *p != '\t' && nl < sizeof num - 1)
    num[nl++] = *p++;
  num[nl] = 0;
  char *e;
  s->v = strtod(num, &e);
  if (!nl || *e)
    return false;
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  /* The timestamp: [-]digits, read within the line (strtoll would read
   * past the text, which need not end in a NUL: fuzz_stat found it). */
  if (p == end)
    return true;
  if (*p == '-')
    p++;
  const char *d0 = p;
  while (p < end && *p >= '0' && *p <= '9')
    p++;
  return p == end && p > d0;
}

/* Parses text; a line that is neither a comment nor a sample is an
 * error naming it. */
int rill_prom_parse(const char *text, size_t len, rill_prom_samples_t *ss, const char *src) {
  const char *p = text, *end = text + len;
  unsigned lineno = 0;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      eol = end;
    lineno++;
    const char *q = p;
    while (q < eol && (*q == ' ' || *q == '\t'))
      q++;
    const char *le = eol;
    if (le > q && le[-1] == '\r')
      le--;
    if (q < le && *q != '#') {
      if (ss->n == ss->cap)
        ss->s = rill_tool_realloc(ss->s, (ss->cap = ss->cap ? ss->cap * 2 : 256) * sizeof *ss->s);
      rill_prom_sample_t *s = &ss->s[ss->n];
      if (!parse_line(q, le, s)) {
        free(s->name);
        free(s->topic);
        free(s->labels);
        fprintf(stderr, "rill stat: %s, line %u: not a Prometheus sample: %.*s\n", src, lineno,
                (int)(le - q > 120 ? 120 : le - q), q);
        return RILL_EPROTO;
      }
      ss->n++;
    }
    p = eol + 1;
  }
  return 0;
}
