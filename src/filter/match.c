/*
 * Matching: one validating pass over the payload that also finds the
 * filter's first paths, then the node tree evaluated against the values
 * found (see filter_internal.h). The JSON validator lives here because it
 * is that pass: rill_filter_match's callees stay in this one file, where
 * the compiler can inline them. rill_filter_json_valid and the compiler use it too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter/filter_internal.h"

/* ---- validating --------------------------------------------------------- */

static const uint8_t *fail(jerr *er, const uint8_t *at, const char *why) {
  er->at = at;
  er->why = why;
  return NULL;
}

static int hexval(uint8_t c) {
  if (is_digit(c))
    return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Four hex digits at p (the caller checked there are four bytes). */
static int hex4(const uint8_t *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p[i]);
    if (h < 0)
      return -1;
    v = v << 4 | h;
  }
  return v;
}

/* Validates the escape at p (a backslash); returns the byte after it. */
static const uint8_t *v_escape(const uint8_t *p, const uint8_t *e, jerr *er) {
  if (e - p < 2)
    return fail(er, p, "unterminated escape in string");
  switch (p[1]) {
  case '"':
  case '\\':
  case '/':
  case 'b':
  case 'f':
  case 'n':
  case 'r':
  case 't': return p + 2;
  case 'u': break;
  default:
    return fail(er, p,
                "bad escape in string (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
  }
  if (e - p < 6)
    return fail(er, p, "truncated \\u escape in string");
  int cp = hex4(p + 2);
  if (cp < 0)
    return fail(er, p, "\\u escape needs four hex digits");
  if (cp >= 0xdc00 && cp <= 0xdfff)
    return fail(er, p, "lone low surrogate \\u escape in string");
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (e - p < 12 || p[6] != '\\' || p[7] != 'u')
      return fail(er, p, "high surrogate \\u escape not followed by a low surrogate");
    int lo = hex4(p + 8);
    if (lo < 0xdc00 || lo > 0xdfff)
      return fail(er, p, "high surrogate \\u escape not followed by a low surrogate");
    return p + 12;
  }
  return p + 6;
}

/* Validates one UTF-8 sequence of two to four bytes at p (*p >= 0x80). */
static const uint8_t *v_utf8(const uint8_t *p, const uint8_t *e, jerr *er) {
  uint8_t c = p[0];
  int n;
  uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0)
      lo = 0xa0; /* overlong */
    else if (c == 0xed)
      hi = 0x9f; /* UTF-16 surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0)
      lo = 0x90; /* overlong */
    else if (c == 0xf4)
      hi = 0x8f; /* above U+10FFFF */
  } else
    return fail(er, p, "invalid UTF-8 in string");
  if (e - p < n)
    return fail(er, p, "truncated UTF-8 sequence in string");
  if (p[1] < lo || p[1] > hi)
    return fail(er, p, "invalid UTF-8 in string");
  for (int i = 2; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return fail(er, p, "invalid UTF-8 in string");
  return p + n;
}

/* Bytes that may stand in a string as they are and need no further look:
 * printable ASCII other than '"' and '\'. */
static const uint8_t plain[256] = {
    [0x20 ... 0x21] = 1, /* '"' is 0x22 */
    [0x23 ... 0x5b] = 1, /* '\\' is 0x5c */
    [0x5d ... 0x7f] = 1,
};

/* The high bit of each byte of x that is not plain (a quote, a backslash,
 * below 0x20 or above 0x7f). Only the lowest flagged byte is exact (a
 * borrow may flag bytes above it), which is the one the caller wants. */
static inline uint64_t not_plain8(uint64_t x) {
  const uint64_t ones = 0x0101010101010101ull;
  uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
  return (((q - ones) & ~q) | ((b - ones) & ~b) | (x - ones * 0x20) | x) & (ones * 0x80);
}

/* Validates the string at p (its opening quote); *esc is set when it holds
 * an escape. Returns the byte after the closing quote. */
static const uint8_t *v_string(const uint8_t *p, const uint8_t *e, bool *esc, jerr *er) {
  const uint8_t *start = p;
  p++;
  for (;;) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Eight bytes at a time to the first that is not plain. */
    while (e - p >= 8) {
      uint64_t x;
      memcpy(&x, p, 8);
      uint64_t t = not_plain8(x);
      if (t) {
        p += __builtin_ctzll(t) >> 3;
        break;
      }
      p += 8;
    }
#endif
    while (p < e && plain[*p])
      p++;
    if (p >= e)
      return fail(er, start, "unterminated string");
    uint8_t c = *p;
    if (c == '"')
      return p + 1;
    if (c == '\\') {
      *esc = true;
      if (!(p = v_escape(p, e, er)))
        return NULL;
    } else if (c < 0x20) {
      return fail(er, p, "raw control character in string (it must be escaped)");
    } else if (!(p = v_utf8(p, e, er))) {
      return NULL;
    }
  }
}

static const uint8_t *v_number(const uint8_t *p, const uint8_t *e, jerr *er) {
  if (*p == '-')
    p++;
  if (p >= e || !is_digit(*p))
    return fail(er, p, "expected a digit");
  if (*p == '0') {
    p++;
    if (p < e && is_digit(*p))
      return fail(er, p - 1, "leading zero in number");
  } else {
    while (p < e && is_digit(*p))
      p++;
  }
  if (p < e && *p == '.') {
    p++;
    if (p >= e || !is_digit(*p))
      return fail(er, p, "expected a digit after the decimal point");
    while (p < e && is_digit(*p))
      p++;
  }
  if (p < e && (*p | 0x20) == 'e') {
    p++;
    if (p < e && (*p == '+' || *p == '-'))
      p++;
    if (p >= e || !is_digit(*p))
      return fail(er, p, "expected a digit in the exponent");
    while (p < e && is_digit(*p))
      p++;
  }
  return p;
}

static const uint8_t *v_literal(const uint8_t *p, const uint8_t *e, const char *lit, size_t n,
                                jerr *er) {
  if ((size_t)(e - p) < n || memcmp(p, lit, n) != 0)
    return fail(er, p, "expected a value (a literal must be true, false or null)");
  return p + n;
}

/* Validates a value that is not an array or an object. */
static inline const uint8_t *v_scalar(const uint8_t *p, const uint8_t *e, jerr *er) {
  if (p >= e)
    return fail(er, p, "unexpected end: expected a value");
  switch (*p) {
  case '"': {
    bool esc = false;
    return v_string(p, e, &esc, er);
  }
  case 't': return v_literal(p, e, "true", 4, er);
  case 'f': return v_literal(p, e, "false", 5, er);
  case 'n': return v_literal(p, e, "null", 4, er);
  default:
    if (*p == '-' || is_digit(*p))
      return v_number(p, e, er);
    return fail(er, p, "expected a value");
  }
}

/* The paths a validating pass looks for as it goes: bit i of a mask stands
 * for path i (i < CACHED_PATHS). A value at depth d is on path i when the
 * first d segments of the path led to it; when the path has exactly d
 * segments, the value is the path's. NULL when only validating. */
struct scan {
  const rill_filter_t *f;
  uint64_t found;
  const uint8_t **val;
};

static bool str_eq(const uint8_t *p, const uint8_t *e, const uint8_t *s, size_t n,
                   const uint8_t **after);

/* Paths among live whose segment at depth is the key of the string [k, q)
 * (validated; esc if it holds escapes). */
static uint64_t key_paths(const scan *sc, uint64_t live, uint32_t depth, const uint8_t *k,
                          const uint8_t *q, bool esc) {
  uint64_t hit = 0;
  for (uint64_t m = live; m; m &= m - 1) {
    uint32_t i = (uint32_t)__builtin_ctzll(m);
    const fseg *sg = &sc->f->segs[sc->f->paths[i].first + depth];
    if (sg->kind & SEG_INDEX)
      continue;
    const uint8_t *kb = sc->f->pool + sg->off;
    bool eq;
    if (!esc) {
      eq = (size_t)(q - k - 2) == sg->len && memcmp(k + 1, kb, sg->len) == 0;
    } else {
      const uint8_t *after;
      eq = str_eq(k, q, kb, sg->len, &after);
    }
    if (eq)
      hit |= m & -m;
  }
  return hit;
}

/* Paths among live whose segment at depth is index ix. */
static uint64_t index_paths(const scan *sc, uint64_t live, uint32_t depth, size_t ix) {
  if (ix >= SEG_INDEX)
    return 0; /* past the largest index a path can name (a payload of 4 GB and more) */
  uint64_t hit = 0;
  for (uint64_t m = live; m; m &= m - 1) {
    uint32_t i = (uint32_t)__builtin_ctzll(m);
    if (sc->f->segs[sc->f->paths[i].first + depth].kind == (SEG_INDEX | (uint32_t)ix))
      hit |= m & -m;
  }
  return hit;
}

/* Validates the value at p, nested depth levels deep; records the paths
 * among live that end here and follows the others into it. */
static const uint8_t *v_value(const uint8_t *p, const uint8_t *e, uint32_t depth, uint64_t live,
                              scan *sc, jerr *er);

/* The value of an object member or array element at depth: a scalar off
 * every path needs no call of v_value of its own. */
static inline const uint8_t *v_member(const uint8_t *p, const uint8_t *e, uint32_t depth,
                                      uint64_t sub, scan *sc, jerr *er) {
  if (!sub && p < e && *p != '{' && *p != '[')
    return v_scalar(p, e, er);
  return v_value(p, e, depth + 1, sub, sc, er);
}

/* After a member or element: 0 with *pp past the ',' and the blanks after
 * it (another follows); 1 with *pp past the closer (the container ends) or
 * NULL (anything else, with the message). */
static inline int v_next(const uint8_t **pp, const uint8_t *e, uint8_t closer, jerr *er) {
  const uint8_t *p = skip_ws(*pp, e);
  if (p < e && *p == ',') {
    *pp = skip_ws(p + 1, e);
    return 0;
  }
  if (p < e && *p == closer) {
    *pp = p + 1;
    return 1;
  }
  *pp =
      fail(er, p,
           closer == '}' ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array");
  return 1;
}

static const uint8_t *v_value(const uint8_t *p, const uint8_t *e, uint32_t depth, uint64_t live,
                              scan *sc, jerr *er) {
  if (p >= e)
    return fail(er, p, "unexpected end: expected a value");
  if (live) {
    for (uint64_t m = live; m; m &= m - 1) {
      uint32_t i = (uint32_t)__builtin_ctzll(m);
      if (sc->f->paths[i].n == depth) {
        sc->val[i] = p;
        sc->found |= m & -m;
        live &= ~(m & -m);
      }
    }
  }
  switch (*p) {
  case '{': {
    if (depth >= RILL_FILTER_MAX_DEPTH)
      return fail(er, p, "nesting deeper than 128");
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}')
      return p + 1;
    uint64_t claimed = 0; /* paths that met their key here: the first of duplicates wins */
    for (;;) {
      if (p >= e || *p != '"')
        return fail(er, p, "expected a string key");
      const uint8_t *k = p;
      bool esc = false;
      if (!(p = v_string(p, e, &esc, er)))
        return NULL;
      uint64_t sub = 0;
      if (live & ~claimed) {
        sub = key_paths(sc, live & ~claimed, depth, k, p, esc);
        claimed |= sub;
      }
      p = skip_ws(p, e);
      if (p >= e || *p != ':')
        return fail(er, p, "expected ':' after a key");
      p = v_member(skip_ws(p + 1, e), e, depth, sub, sc, er);
      if (!p || v_next(&p, e, '}', er))
        return p;
    }
  }
  case '[': {
    if (depth >= RILL_FILTER_MAX_DEPTH)
      return fail(er, p, "nesting deeper than 128");
    p = skip_ws(p + 1, e);
    if (p < e && *p == ']')
      return p + 1;
    for (size_t ix = 0;; ix++) {
      uint64_t sub = live ? index_paths(sc, live, depth, ix) : 0;
      p = v_member(p, e, depth, sub, sc, er);
      if (!p || v_next(&p, e, ']', er))
        return p;
    }
  }
  default: return v_scalar(p, e, er);
  }
}

/* Validates [p, e) as one JSON value; with live paths, records where each
 * one's value starts in sc. */
bool rill__filter_json_scan(const uint8_t *p, const uint8_t *e, uint64_t live, scan *sc, jerr *er) {
  p = v_value(skip_ws(p, e), e, 0, live, sc, er);
  if (!p)
    return false;
  p = skip_ws(p, e);
  if (p != e) {
    fail(er, p, "trailing characters after the JSON value");
    return false;
  }
  return true;
}

bool rill_filter_json_valid(const void *p, size_t len) {
  if (!p)
    return false;
  jerr er;
  return json_valid(p, (const uint8_t *)p + len, &er);
}

/* Decodes the (valid) escape at p into out (up to four UTF-8 bytes); sets
 * *n and returns the byte after the escape. */
const uint8_t *rill__filter_decode_escape(const uint8_t *p, uint8_t out[4], int *n) {
  uint32_t cp;
  switch (p[1]) {
  case 'b': cp = '\b'; break;
  case 'f': cp = '\f'; break;
  case 'n': cp = '\n'; break;
  case 'r': cp = '\r'; break;
  case 't': cp = '\t'; break;
  case 'u':
    cp = (uint32_t)hex4(p + 2);
    if (cp >= 0xd800 && cp <= 0xdbff) {
      cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)hex4(p + 8) - 0xdc00);
      p += 6;
    }
    p += 4;
    break;
  default: cp = p[1]; break; /* " \ / */
  }
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    *n = 1;
  } else if (cp < 0x800) {
    out[0] = (uint8_t)(0xc0 | cp >> 6);
    out[1] = (uint8_t)(0x80 | (cp & 0x3f));
    *n = 2;
  } else if (cp < 0x10000) {
    out[0] = (uint8_t)(0xe0 | cp >> 12);
    out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp & 0x3f));
    *n = 3;
  } else {
    out[0] = (uint8_t)(0xf0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    *n = 4;
  }
  return p + 2;
}

/* The byte after the value at p, for a payload already validated. */
static const uint8_t *skip_value(const uint8_t *p, const uint8_t *e) {
  if (p >= e)
    return e;
  uint8_t c = *p;
  if (c == '"')
    return skip_string(p, e);
  if (c == '{' || c == '[') {
    size_t depth = 0;
    while (p < e) {
      c = *p;
      if (c == '"') {
        p = skip_string(p, e);
        continue;
      }
      if (c == '{' || c == '[')
        depth++;
      else if ((c == '}' || c == ']') && --depth == 0)
        return p + 1;
      p++;
    }
    return e;
  }
  while (p < e && *p != ',' && *p != '}' && *p != ']' && !is_ws(*p))
    p++;
  return p;
}

/* ---- numbers --------------------------------------------------------------- */

static const double pow10_tab[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Significant digits kept for strtod: 767 decide the rounding of any double;
 * one more, a sticky 1 when anything non-zero was dropped, keeps the
 * rounding of longer inputs correct. */
#define NUM_DIGITS 768

/* The double nearest the (valid) JSON number at p, correctly rounded.
 * Exact integers up to 2^53 with a power of ten up to 22 take the fast
 * path (one exact operation, Clinger's); the rest go to strtod through a
 * buffer of digits and an exponent without a decimal point, so the locale's
 * decimal separator never matters. Returns the byte after the number. */
const uint8_t *rill__filter_num_parse(const uint8_t *p, const uint8_t *e, double *out) {
  bool neg = false;
  if (p < e && *p == '-') {
    neg = true;
    p++;
  }
  const uint8_t *digits = p;
  uint64_t m = 0;
  int sig = 0;      /* significant digits seen (leading zeros skipped) */
  int64_t frac = 0; /* digits after the point */
  bool seen_dot = false;
  for (; p < e; p++) {
    if (is_digit(*p)) {
      if (seen_dot)
        frac++;
      if (sig == 0 && *p == '0')
        continue;
      if (sig < 19)
        m = m * 10 + (uint64_t)(*p - '0');
      sig++;
    } else if (*p == '.' && !seen_dot) {
      seen_dot = true;
    } else {
      break;
    }
  }
  const uint8_t *mant_end = p;
  int64_t ex = 0;
  if (p < e && (*p | 0x20) == 'e') {
    p++;
    bool eneg = false;
    if (p < e && (*p == '+' || *p == '-'))
      eneg = *p++ == '-';
    for (; p < e && is_digit(*p); p++)
      if (ex < 1000000000)
        ex = ex * 10 + (*p - '0');
    if (eneg)
      ex = -ex;
  }
  if (sig == 0) {
    *out = neg ? -0.0 : 0.0;
    return p;
  }
  /* value = digits * 10^(ex - frac), digits the integer of all digits. */
  int64_t e10 = ex - frac;
  if (sig <= 19 && m <= ((uint64_t)1 << 53) && e10 >= -22 && e10 <= 22) {
    double d = (double)m;
    d = e10 < 0 ? d / pow10_tab[-e10] : d * pow10_tab[e10];
    *out = neg ? -d : d;
    return p;
  }
  char buf[NUM_DIGITS + 32];
  size_t n = 0;
  int kept = 0;
  bool dropped = false;
  if (neg)
    buf[n++] = '-';
  for (const uint8_t *q = digits; q < mant_end; q++) {
    if (*q == '.' || (kept == 0 && *q == '0'))
      continue;
    if (kept < NUM_DIGITS) {
      buf[n++] = (char)*q;
      kept++;
    } else {
      e10++; /* a dropped digit still scales what was kept */
      if (*q != '0')
        dropped = true;
    }
  }
  if (dropped) {
    buf[n++] = '1';
    e10--;
  }
  /* buf holds at most NUM_DIGITS + 1 digits: beyond these bounds the result
   * is already 0 or infinite, so clamping changes nothing. */
  if (e10 > 99999)
    e10 = 99999;
  if (e10 < -99999)
    e10 = -99999;
  snprintf(buf + n, sizeof buf - n, "e%d", (int)e10);
  *out = strtod(buf, NULL);
  return p;
}

/* ---- matching ---------------------------------------------------------------- */

/* Compares the payload string at p with the decoded bytes s[0..n); sets
 * *after to the byte after the string. */
static bool str_eq(const uint8_t *p, const uint8_t *e, const uint8_t *s, size_t n,
                   const uint8_t **after) {
  const uint8_t *q = p + 1;
  size_t j = 0;
  while (q < e) {
    uint8_t c = *q;
    if (c == '"') {
      *after = q + 1;
      return j == n;
    }
    if (c == '\\') {
      uint8_t u[4];
      int k;
      if (e - q < 2)
        break;
      if (q[1] == 'u' && (e - q < 6 || (hex4(q + 2) >= 0xd800 && e - q < 12)))
        break; /* cannot happen in a validated payload; never read past e */
      q = rill__filter_decode_escape(q, u, &k);
      if (n - j < (size_t)k || memcmp(s + j, u, (size_t)k) != 0)
        break;
      j += (size_t)k;
    } else {
      if (j == n || s[j] != c)
        break;
      j++;
      q++;
    }
  }
  *after = skip_string(p, e);
  return false;
}

typedef struct mstate {
  const uint8_t *base, *end;
  uint64_t done;                    /* bit i: path i looked up */
  const uint8_t *val[CACHED_PATHS]; /* where path i's value starts, or NULL */
} mstate;

/* Where the value at path pi starts in the (validated) payload, or NULL. */
static const uint8_t *find(const rill_filter_t *f, const mstate *m, uint32_t pi) {
  const uint8_t *e = m->end;
  const uint8_t *p = skip_ws(m->base, e);
  const fpath *path = &f->paths[pi];
  for (uint32_t si = 0; si < path->n; si++) {
    const fseg *sg = &f->segs[path->first + si];
    if (p >= e)
      return NULL;
    if (sg->kind & SEG_INDEX) {
      if (*p != '[')
        return NULL;
      p = skip_ws(p + 1, e);
      if (p >= e || *p == ']')
        return NULL;
      for (uint32_t i = sg->kind & ~SEG_INDEX; i > 0; i--) {
        p = skip_ws(skip_value(p, e), e);
        if (p >= e || *p != ',')
          return NULL;
        p = skip_ws(p + 1, e);
      }
    } else {
      if (*p != '{')
        return NULL;
      p = skip_ws(p + 1, e);
      for (;;) {
        if (p >= e || *p != '"')
          return NULL; /* '}': the key is not there */
        const uint8_t *after;
        bool hit = str_eq(p, e, f->pool + sg->off, sg->len, &after);
        p = skip_ws(after, e);
        if (p >= e || *p != ':')
          return NULL;
        p = skip_ws(p + 1, e);
        if (hit)
          break; /* the first of duplicate keys wins */
        p = skip_ws(skip_value(p, e), e);
        if (p >= e || *p != ',')
          return NULL;
        p = skip_ws(p + 1, e);
      }
    }
  }
  return p < e ? p : NULL;
}

static const uint8_t *lookup(const rill_filter_t *f, mstate *m, uint32_t pi) {
  if (pi >= CACHED_PATHS)
    return find(f, m, pi);
  uint64_t bit = (uint64_t)1 << pi;
  if (!(m->done & bit)) {
    m->val[pi] = find(f, m, pi);
    m->done |= bit;
  }
  return m->val[pi];
}

static bool cond_eq(const rill_filter_t *f, const fnode *nd, const uint8_t *v, const uint8_t *e) {
  if (!v)
    return false;
  switch (nd->ctype) {
  case C_STR: {
    const uint8_t *after;
    return *v == '"' && str_eq(v, e, f->pool + nd->s, nd->n, &after);
  }
  case C_NUM: {
    if (*v != '-' && !is_digit(*v))
      return false;
    double d;
    rill__filter_num_parse(v, e, &d);
    return d == nd->num;
  }
  case C_TRUE: return *v == 't';
  case C_FALSE: return *v == 'f';
  default: return *v == 'n';
  }
}

static bool eval(const rill_filter_t *f, mstate *m, uint32_t ni) {
  const fnode *nd = &f->nodes[ni];
  switch (nd->kind) {
  case N_AND:
    for (uint32_t i = 0; i < nd->n; i++)
      if (!eval(f, m, f->kids[nd->a + i]))
        return false;
    return true;
  case N_OR:
    for (uint32_t i = 0; i < nd->n; i++)
      if (eval(f, m, f->kids[nd->a + i]))
        return true;
    return false;
  case N_NOT: return !eval(f, m, nd->a);
  default: break;
  }
  const uint8_t *v = lookup(f, m, nd->a);
  switch (nd->op) {
  case OP_EQ: return cond_eq(f, nd, v, m->end);
  case OP_NE: return !cond_eq(f, nd, v, m->end);
  case OP_EXISTS: return (v != NULL) == (nd->ctype == C_TRUE);
  default: break;
  }
  if (!v || (*v != '-' && !is_digit(*v)))
    return false;
  double d;
  rill__filter_num_parse(v, m->end, &d);
  switch (nd->op) {
  case OP_LT: return d < nd->num;
  case OP_LTE: return d <= nd->num;
  case OP_GT: return d > nd->num;
  default: return d >= nd->num;
  }
}

bool rill_filter_match(const rill_filter_t *f, const void *payload, size_t len) {
  if (!f)
    return false;
  mstate m;
  m.done = 0;
  if (f->npaths) {
    if (!payload)
      return false;
    m.base = payload;
    m.end = m.base + len;
    /* One pass validates the payload and finds the first CACHED_PATHS
     * paths; lookup() finds any beyond those on demand. */
    uint32_t n = f->npaths < CACHED_PATHS ? f->npaths : CACHED_PATHS;
    uint64_t live = n == 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
    for (uint32_t i = 0; i < n; i++)
      m.val[i] = NULL;
    scan sc = {.f = f, .found = 0, .val = m.val};
    jerr er;
    if (!rill__filter_json_scan(m.base, m.end, live, &sc, &er))
      return false;
    m.done = live;
  } else {
    m.base = m.end = NULL; /* no COND node: the payload is never read */
  }
  return eval(f, &m, f->root);
}
